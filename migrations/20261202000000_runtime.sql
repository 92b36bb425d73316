-- Runtime under several worker replicas: a global rate limiter and cron ticks.

-- One row per limiter key (GCRA): `tat` is the theoretical arrival time of the next request.
-- Every acquisition is one INSERT .. ON CONFLICT DO UPDATE on its row, serialised by the row
-- lock, so replicas share the limit exactly. `seen_at` is the one clock reading the last
-- statement used (taken after the lock); `granted` tells try_acquire's caller whether that
-- statement took a slot (the new `tat` alone cannot say).
create table rate_limits (
    key     text primary key,
    tat     timestamptz not null,
    seen_at timestamptz not null,
    granted boolean not null default true
) with (fillfactor = 50);

-- A cron tick is enqueued by the replica whose INSERT wins (schedule, tick_at); the others
-- find the row and do nothing. Pruned with finished jobs.
create table cron_ticks (
    schedule   text not null,
    tick_at    timestamptz not null,
    job_id     text,
    created_at timestamptz not null default now(),
    primary key (schedule, tick_at)
);

-- A session of our role left idle inside a transaction (a leaked connection) is ended by the
-- server, whatever client opened it. Set on the role in this database only; the pool also sets
-- it per connection and checks every released connection (shared::db).
do $$
begin
    execute format('alter role %I in database %I set idle_in_transaction_session_timeout = %L',
                   current_user, current_database(), '60s');
exception when insufficient_privilege then
    raise notice 'idle_in_transaction_session_timeout not set on the role (no privilege)';
end $$;

-- job_events rows are written by the ledger triggers for rows that exist by construction; the
-- foreign key's per-row check cost ~15 % of queue throughput (benchmark in the README).
-- prune_jobs deletes a job's events together with the job.
alter table job_events drop constraint job_events_job_id_fkey;

-- Queue engine tuning (our boundary over apalis-postgres; see jobs::engine):
-- apalis notifies once per inserted row; our listener only needs the kind, so one notification
-- per kind per INSERT statement replaces it (20,000 jobs in one batch: 1 notification, not
-- 20,000 for every listening worker to read).
drop trigger if exists notify_workers on apalis.jobs;
create function engine_notify_inserted() returns trigger language plpgsql as $$
begin
    perform pg_notify('apalis::job::insert', json_build_object('job_type', k.job_type)::text)
    from (select distinct job_type from new_rows where run_at <= now()) k;
    return null;
end $$;
create trigger notify_workers_per_statement after insert on apalis.jobs
    referencing new table as new_rows
    for each statement execute function engine_notify_inserted();
-- Duplicates of apalis.jobs_pkey and idx_apalis_jobs_lock_by left by older apalis migrations:
-- every claim and outcome rewrote them for nothing.
drop index if exists apalis.lidx;
drop index if exists apalis.unique_job_id;

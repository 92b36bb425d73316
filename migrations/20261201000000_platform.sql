-- Platform: users, the job ledger (job_runs), its event log (job_events) and job artifacts.
-- The queue engine's own tables live in the `apalis` schema and are migrated by the engine.

create table users (
    id            uuid primary key default gen_random_uuid(),
    email         text not null,
    password_hash text not null,
    role          text not null,
    active        boolean not null default true,
    created_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now(),
    constraint users_role_valid check (role in ('admin', 'manager', 'teacher')),
    constraint users_email_not_blank check (length(trim(email)) > 0)
);
create unique index users_email_unique on users (lower(email));

-- One row per job, written in the enqueue transaction and updated by the worker runtime.
create table job_runs (
    id               text primary key,               -- ULID, same id as the engine row
    kind             text not null,
    state            text not null default 'queued',
    attempts         integer not null default 0,
    max_attempts     integer not null,
    progress_percent smallint not null default 0,
    progress_message text,
    result           jsonb,
    error            text,
    requested_by     uuid references users (id) on delete set null,
    request_id       text,
    dedup_key        text,
    cancel_requested boolean not null default false,
    run_after        timestamptz,                    -- next attempt not before (retry backoff)
    created_at       timestamptz not null default now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    updated_at       timestamptz not null default now(),
    constraint job_runs_state_valid
        check (state in ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    constraint job_runs_progress_range check (progress_percent between 0 and 100)
);
-- The same work asked twice while the first is still pending is the same job.
create unique index job_runs_dedup_active on job_runs (kind, dedup_key)
    where dedup_key is not null and state in ('queued', 'running');
create index job_runs_requested_by_created on job_runs (requested_by, created_at desc);
create index job_runs_open_by_kind on job_runs (kind, created_at) where state in ('queued', 'running');
create index job_runs_finished on job_runs (finished_at) where finished_at is not null;

-- Every state or progress change of a job, in order: what the SSE stream replays, so a
-- subscriber sees each transition even when several happen between two reads.
create table job_events (
    id               bigint generated always as identity primary key,
    job_id           text not null references job_runs (id) on delete cascade,
    state            text not null,
    attempts         integer not null,
    progress_percent smallint not null,
    progress_message text,
    error            text,
    at               timestamptz not null default clock_timestamp()
);
create index job_events_job on job_events (job_id, id);

create function job_runs_record_insert() returns trigger language plpgsql as $$
begin
    insert into job_events (job_id, state, attempts, progress_percent, progress_message, error)
    select n.id, n.state, n.attempts, n.progress_percent, n.progress_message, n.error from new_rows n;
    return null;
end $$;

create function job_runs_record_update() returns trigger language plpgsql as $$
begin
    insert into job_events (job_id, state, attempts, progress_percent, progress_message, error)
    select n.id, n.state, n.attempts, n.progress_percent, n.progress_message, n.error
    from new_rows n join old_rows o on o.id = n.id
    where n.state is distinct from o.state
       or n.attempts is distinct from o.attempts
       or n.progress_percent is distinct from o.progress_percent
       or n.progress_message is distinct from o.progress_message;
    return null;
end $$;

create trigger job_runs_events_insert after insert on job_runs
    referencing new table as new_rows
    for each statement execute function job_runs_record_insert();
create trigger job_runs_events_update after update on job_runs
    referencing old table as old_rows new table as new_rows
    for each statement execute function job_runs_record_update();

-- Files produced by jobs (exports), served by the api; removed with their job.
create table artifacts (
    id           uuid primary key default gen_random_uuid(),
    job_id       text not null references job_runs (id) on delete cascade,
    file_name    text not null,
    content_type text not null,
    bytes        bytea not null,
    created_at   timestamptz not null default now(),
    constraint artifacts_one_per_job unique (job_id)
);

-- What the ops dashboard shows that nothing recorded before.

-- How many times an admin put a failed job back in the queue (`POST /api/admin/jobs/{id}/retry`):
-- each retry is one more attempt of the same job, counted here and in `attempts`.
alter table job_runs add column manual_retries integer not null default 0;

-- Each worker replica writes the cron schedules it drives (name, expression, next tick) at start
-- and after every tick; the last tick is `cron_ticks`' latest row. The api reads both.
create table cron_schedules (
    name         text primary key,
    expr         text not null,
    next_tick_at timestamptz,
    updated_by   text,
    updated_at   timestamptz not null default now()
);

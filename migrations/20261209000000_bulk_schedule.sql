-- Bulk scheduling (issue 6). A plan's lessons carry the plan id and an occurrence key
-- (`entry:date`), unique together: a retried or re-run job inserts nothing twice.
alter table lessons add column plan_id uuid, add column occurrence_key text;
create unique index lessons_plan_occurrence on lessons (plan_id, occurrence_key)
    where plan_id is not null;

-- Who is expected at a lesson: the group's active members when the lesson was scheduled.
-- No foreign keys, on purpose: a year of lessons for 100 groups is ~185,000 rows written by
-- one INSERT … SELECT, and PostgreSQL checks a foreign key with a trigger per row — measured
-- ~1 s per key for that insert (3.0 s with both, 0.8 s with none). Rows come only from
-- `lessons` and `group_members` (both with their keys) in the same transaction, and lessons
-- and clients are never deleted (cancelled, archived), so the keys would guard nothing real.
create table lesson_enrolments (
    lesson_id  uuid not null,
    client_id  uuid not null,
    created_at timestamptz not null default now(),
    primary key (lesson_id, client_id)
);

-- CRM core, part 3: lessons, and everything else that occupies a room (rental bookings have
-- kind 'rental'), so ONE pair of exclusion constraints forbids every double booking.
create extension if not exists btree_gist;

create table lessons (
    id          uuid primary key default gen_random_uuid(),
    kind        text not null default 'lesson',
    group_id    uuid references study_groups (id),
    room_id     uuid not null references rooms (id),
    teacher_id  uuid references teachers (id),
    starts_at   timestamptz not null,
    ends_at     timestamptz not null,
    status      text not null default 'scheduled',
    topic       text,
    created_at  timestamptz not null default now(),
    updated_at  timestamptz not null default now(),
    constraint lessons_kind_valid check (kind in ('lesson', 'rental')),
    constraint lessons_status_valid check (status in ('scheduled', 'held', 'cancelled')),
    constraint lessons_time_order check (ends_at > starts_at and ends_at - starts_at <= interval '24 hours'),
    constraint lessons_lesson_has_group_and_teacher
        check (kind <> 'lesson' or (group_id is not null and teacher_id is not null)),
    -- Half-open ranges: back-to-back is allowed. Cancelled rows free their slot.
    constraint lessons_room_no_overlap exclude using gist
        (room_id with =, tstzrange(starts_at, ends_at, '[)') with &&) where (status <> 'cancelled'),
    constraint lessons_teacher_no_overlap exclude using gist
        (teacher_id with =, tstzrange(starts_at, ends_at, '[)') with &&) where (status <> 'cancelled')
);
create index lessons_starts_at on lessons (starts_at);
create index lessons_group_starts_at on lessons (group_id, starts_at);

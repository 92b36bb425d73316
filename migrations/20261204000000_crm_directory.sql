-- CRM core, part 2: teachers, rooms, study groups and their members.
create table teachers (
    id         uuid primary key default gen_random_uuid(),
    user_id    uuid references users (id) on delete set null,   -- the teacher's login
    full_name  text not null,
    phone      text,
    email      text,
    active     boolean not null default true,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    constraint teachers_name_not_blank check (length(trim(full_name)) > 0),
    constraint teachers_phone_e164 check (phone ~ '^\+[1-9][0-9]{7,14}$')
);
create unique index teachers_user_unique on teachers (user_id) where user_id is not null;

create table rooms (
    id         uuid primary key default gen_random_uuid(),
    name       text not null,
    capacity   integer not null,
    status     text not null default 'active',
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    constraint rooms_name_not_blank check (length(trim(name)) > 0),
    constraint rooms_capacity_positive check (capacity between 1 and 10000),
    constraint rooms_status_valid check (status in ('active', 'archived'))
);
create unique index rooms_name_unique on rooms (lower(name));

create table study_groups (
    id              uuid primary key default gen_random_uuid(),
    name            text not null,
    teacher_id      uuid not null references teachers (id),
    room_id         uuid references rooms (id),                 -- default room of its lessons
    capacity        integer not null,
    status          text not null default 'open',
    -- Which absences charge a visit: none, unexcused only, or every absence.
    absence_charge  text not null default 'none',
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now(),
    constraint study_groups_name_not_blank check (length(trim(name)) > 0),
    constraint study_groups_capacity_positive check (capacity between 1 and 1000),
    constraint study_groups_status_valid check (status in ('open', 'closed', 'archived')),
    constraint study_groups_absence_charge_valid check (absence_charge in ('none', 'unexcused', 'all'))
);
create index study_groups_teacher on study_groups (teacher_id);

-- A client's membership of a group. `active` members count against capacity; `waitlist` rows
-- wait in `created_at` order and are promoted when a seat frees; `left` rows keep history.
create table group_members (
    id         uuid primary key default gen_random_uuid(),
    group_id   uuid not null references study_groups (id) on delete cascade,
    client_id  uuid not null references clients (id),
    status     text not null,
    joined_on  date,
    left_on    date,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    constraint group_members_status_valid check (status in ('active', 'waitlist', 'left')),
    constraint group_members_dates check (left_on is null or joined_on is null or left_on >= joined_on)
);
create unique index group_members_current on group_members (group_id, client_id)
    where status in ('active', 'waitlist');
create index group_members_client on group_members (client_id);

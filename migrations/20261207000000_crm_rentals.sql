-- CRM core, part 5: room rental applications. An approved application books its room for
-- each day of its period as `lessons` rows of kind 'rental', under the same exclusion
-- constraint as lessons.
create table rental_applications (
    id            uuid primary key default gen_random_uuid(),
    organisation  text not null,
    contact_name  text not null,
    contact_phone text,
    contact_email text,
    room_id       uuid not null references rooms (id),
    date_from     date not null,
    date_to       date not null,
    time_from     time not null,                -- daily window, Moscow wall-clock time
    time_to       time not null,
    status        text not null default 'new',
    comment       text,
    decided_by    uuid references users (id) on delete set null,
    decided_at    timestamptz,
    created_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now(),
    constraint rental_applications_period check (date_to >= date_from and date_to - date_from < 366),
    constraint rental_applications_window check (time_to > time_from),
    constraint rental_applications_status_valid check (status in ('new', 'approved', 'rejected')),
    constraint rental_applications_phone_e164 check (contact_phone ~ '^\+[1-9][0-9]{7,14}$')
);
create index rental_applications_status on rental_applications (status, created_at);

alter table lessons
    add column rental_application_id uuid references rental_applications (id) on delete cascade,
    add constraint lessons_rental_has_application
        check (kind <> 'rental' or rental_application_id is not null);
create index lessons_rental_application on lessons (rental_application_id)
    where rental_application_id is not null;

-- CRM core, part 4: season tickets (plans, subscriptions), invoices, payments, attendance.
create table subscription_plans (
    id              uuid primary key default gen_random_uuid(),
    name            text not null,
    visits          integer,                         -- null = unlimited
    validity_days   integer not null,
    price           numeric(12, 2) not null,
    max_freeze_days integer not null default 0,
    active          boolean not null default true,
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now(),
    constraint subscription_plans_name_not_blank check (length(trim(name)) > 0),
    constraint subscription_plans_visits_range check (visits is null or visits between 1 and 365),
    constraint subscription_plans_validity_range check (validity_days between 1 and 730),
    constraint subscription_plans_price_range check (price >= 0),
    constraint subscription_plans_freeze_range check (max_freeze_days between 0 and 365)
);

-- The groups a plan's subscriptions pay for.
create table plan_groups (
    plan_id  uuid not null references subscription_plans (id) on delete cascade,
    group_id uuid not null references study_groups (id),
    primary key (plan_id, group_id)
);
create index plan_groups_group on plan_groups (group_id);

-- A client's season ticket. `inactive` until its invoice is paid; `ended` when its period is
-- over (left-over visits burn). Frozen is a state in time: `freeze_from`..`freeze_to`.
create table subscriptions (
    id           uuid primary key default gen_random_uuid(),
    client_id    uuid not null references clients (id),
    plan_id      uuid not null references subscription_plans (id),
    visits_total integer,                            -- null = unlimited
    visits_used  integer not null default 0,
    visits_burned integer not null default 0,
    begins_on    date not null,
    ends_on      date not null,
    freeze_from  date,
    freeze_to    date,
    status       text not null default 'inactive',
    price        numeric(12, 2) not null,
    ended_at     timestamptz,
    created_at   timestamptz not null default now(),
    updated_at   timestamptz not null default now(),
    constraint subscriptions_status_valid check (status in ('inactive', 'active', 'ended')),
    constraint subscriptions_visits_range
        check (visits_used >= 0 and (visits_total is null or visits_used <= visits_total)),
    constraint subscriptions_period check (ends_on >= begins_on),
    constraint subscriptions_freeze check ((freeze_from is null) = (freeze_to is null)
                                           and (freeze_to is null or freeze_to >= freeze_from))
);
create index subscriptions_client on subscriptions (client_id, ends_on);
create index subscriptions_open_ends on subscriptions (ends_on) where status = 'active';

create table invoices (
    id              uuid primary key default gen_random_uuid(),
    client_id       uuid not null references clients (id),
    subscription_id uuid references subscriptions (id),
    amount          numeric(12, 2) not null,
    status          text not null default 'open',
    created_at      timestamptz not null default now(),
    paid_at         timestamptz,
    constraint invoices_amount_range check (amount >= 0),
    constraint invoices_status_valid check (status in ('open', 'paid', 'cancelled'))
);
create index invoices_client on invoices (client_id, created_at desc);
create unique index invoices_one_per_subscription on invoices (subscription_id)
    where subscription_id is not null;

create table payments (
    id         uuid primary key default gen_random_uuid(),
    invoice_id uuid not null references invoices (id),
    amount     numeric(12, 2) not null,
    method     text not null,
    created_by uuid references users (id) on delete set null,
    paid_at    timestamptz not null default now(),
    constraint payments_amount_positive check (amount > 0),
    constraint payments_method_valid check (method in ('cash', 'card', 'transfer'))
);
create index payments_invoice on payments (invoice_id);

-- One mark per client per lesson (re-sending a mark updates it). `subscription_id` is the
-- subscription charged one visit for it, null when the mark charges nothing or nothing valid
-- could pay (an unpaid visit).
create table attendance (
    lesson_id       uuid not null references lessons (id) on delete cascade,
    client_id       uuid not null references clients (id),
    mark            text not null,
    subscription_id uuid references subscriptions (id),
    marked_by       uuid references users (id) on delete set null,
    marked_at       timestamptz not null default now(),
    primary key (lesson_id, client_id),
    constraint attendance_mark_valid check (mark in ('present', 'absent', 'excused', 'free', 'trial'))
);
create index attendance_client on attendance (client_id);
create index attendance_subscription on attendance (subscription_id) where subscription_id is not null;

-- Notices for the notifications worker (a later issue delivers them): one row per notice.
create table notification_outbox (
    id           uuid primary key default gen_random_uuid(),
    kind         text not null,
    client_id    uuid not null references clients (id),
    subject_id   uuid not null,                    -- e.g. the subscription
    payload      jsonb not null default '{}',
    created_at   timestamptz not null default now(),
    delivered_at timestamptz,
    constraint notification_outbox_once unique (kind, subject_id)
);

-- Today in the centre's time zone (subscription dates are Moscow calendar dates).
create function current_date_msk() returns date language sql stable
    as $$ select (now() at time zone 'Europe/Moscow')::date $$;

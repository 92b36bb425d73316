-- Imports as jobs (issue 12): Timepad events, orders and tickets by their Timepad ids; Pyrus
-- tasks as rental applications by task id; the cursor of a running import; tokens shared by
-- replicas; contacts an import could not attribute to one client.

create table timepad_events (
    id          bigint primary key,               -- Timepad's event id
    name        text not null,
    starts_at   timestamptz,
    ends_at     timestamptz,
    url         text,
    access      text,
    hash        text not null,                    -- of what we store: unchanged data writes nothing
    imported_at timestamptz not null default now(),
    updated_at  timestamptz not null default now()
);
create index timepad_events_starts on timepad_events (starts_at desc, id);

create table timepad_orders (
    id           bigint primary key,              -- Timepad's order id
    event_id     bigint not null references timepad_events (id),
    status       text not null,                   -- paid, ok, booked, returned, …
    status_title text,
    -- Paid statuses (paid, ok, paid_offline, paid_ur) make the buyer a participant; a refund
    -- or any other status withdraws them.
    participant  boolean not null,
    email        text,
    phone        text,                            -- as typed by the buyer
    surname      text,
    name         text,
    amount       numeric(12, 2),
    ordered_at   timestamptz,
    client_id    uuid references clients (id),
    tickets      integer not null default 0,
    hash         text not null,
    imported_at  timestamptz not null default now(),
    updated_at   timestamptz not null default now()
);
create index timepad_orders_event on timepad_orders (event_id, id);
create index timepad_orders_client on timepad_orders (client_id) where client_id is not null;

create table timepad_tickets (
    id            bigint primary key,             -- Timepad's ticket id
    order_id      bigint not null references timepad_orders (id),
    number        text,
    ticket_type   text,
    price_nominal numeric(12, 2)
);
create index timepad_tickets_order on timepad_tickets (order_id);

-- A buyer or applicant whose e-mail and phone point at different clients (or at several the
-- name cannot tell apart): recorded for a person, never guessed.
create table import_conflicts (
    id          uuid primary key default gen_random_uuid(),
    source      text not null,                    -- timepad_order, pyrus_task
    external_id text not null,
    contact     jsonb not null,
    candidates  uuid[] not null,
    created_at  timestamptz not null default now(),
    resolved_at timestamptz,
    constraint import_conflicts_once unique (source, external_id)
);

-- Where a running import stands, saved in the transaction that writes each page: a retry or a
-- crash continues from the next page. One row per job; removed when the job ends.
create table import_cursors (
    job_id     text primary key,
    cursor     jsonb not null,
    updated_at timestamptz not null default now()
);

-- Provider tokens shared by every replica (Pyrus: cached, refreshed once on 401).
create table integration_tokens (
    service    text primary key,
    token      text not null,
    api_url    text,
    updated_at timestamptz not null default now()
);

alter table rental_applications add column pyrus_task_id bigint;
create unique index rental_applications_pyrus_task on rental_applications (pyrus_task_id)
    where pyrus_task_id is not null;

-- CRM core, part 1: clients (the centre's visitors; children linked to a guardian).
create extension if not exists pg_trgm;

create table clients (
    id               uuid primary key default gen_random_uuid(),
    last_name        text not null,
    first_name       text not null,
    middle_name      text,
    phone            text,                 -- E.164, e.g. +79161234567
    email            text,
    birth_date       date,
    guardian_id      uuid references clients (id) on delete set null,
    telegram_chat_id bigint,
    notify_telegram  boolean not null default true,   -- false = opted out of the channel
    notify_email     boolean not null default true,
    comment          text,
    archived_at      timestamptz,
    created_at       timestamptz not null default now(),
    updated_at       timestamptz not null default now(),
    -- What the list search matches: names, phone digits and e-mail, lower-cased.
    search_text      text generated always as (
        lower(last_name || ' ' || first_name || ' ' || coalesce(middle_name, '') || ' '
              || coalesce(phone, '') || ' ' || coalesce(email, ''))
    ) stored,
    constraint clients_names_not_blank check (length(trim(last_name)) > 0 and length(trim(first_name)) > 0),
    constraint clients_phone_e164 check (phone ~ '^\+[1-9][0-9]{7,14}$'),
    constraint clients_not_own_guardian check (guardian_id <> id)
);
-- Substring search (name fragment, phone fragment) in any position: trigram GIN.
create index clients_search_trgm on clients using gin (search_text gin_trgm_ops);
create index clients_name_order on clients (last_name, first_name, id);
create index clients_guardian on clients (guardian_id) where guardian_id is not null;

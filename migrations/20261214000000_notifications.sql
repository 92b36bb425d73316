-- Notifications (issue 14): a durable outbox. Every notice is a row, created in the transaction
-- of the business change that causes it together with its delivery job; the `notification`
-- job moves its state: queued → sending (committed before the provider is asked) → sent |
-- failed | skipped (opted out, no address, blocked bot, too late). The dedup key makes each
-- notice once (a reminder per lesson and member, a notice per payment…).
create table notifications (
    id                  uuid primary key,
    client_id           uuid references clients (id),
    user_id             uuid references users (id),
    channel             text not null,
    template            text not null,
    params              jsonb not null default '{}',
    dedup_key           text not null,
    state               text not null default 'queued',
    attempts            integer not null default 0,   -- times a send began
    address             text,                         -- the chat id or e-mail it went to
    provider_message_id text,                         -- Telegram's message_id, the Message-ID
    error               text,
    job_id              text,
    not_after           timestamptz,                  -- not delivered by then → skipped
    created_at          timestamptz not null default now(),
    sending_at          timestamptz,
    finished_at         timestamptz,
    updated_at          timestamptz not null default now(),
    constraint notifications_once unique (dedup_key),
    constraint notifications_one_recipient check (num_nonnulls(client_id, user_id) = 1),
    constraint notifications_channel_valid check (channel in ('telegram', 'email')),
    constraint notifications_state_valid
        check (state in ('queued', 'sending', 'sent', 'failed', 'skipped'))
);
create index notifications_client on notifications (client_id, created_at desc)
    where client_id is not null;
create index notifications_created on notifications (created_at desc, id);
create index notifications_open on notifications (state) where state in ('queued', 'sending');

-- What delivery learns about a client's addresses: a chat that blocked the bot (not tried
-- again until the client links a chat), a mailbox the relay refused (5.1.x: that address is
-- not tried again; a new e-mail is).
alter table clients
    add column telegram_blocked_at timestamptz,
    add column email_bad_at timestamptz,
    add column email_bad_address text,
    add column email_bad_reason text;

-- One-time codes linking a Telegram chat to a client (`/start <code>` to the bot).
create table telegram_link_codes (
    code       text primary key,
    client_id  uuid not null references clients (id),
    created_at timestamptz not null default now(),
    expires_at timestamptz not null,
    used_at    timestamptz,
    chat_id    bigint
);
create index telegram_link_codes_client on telegram_link_codes (client_id);

-- A circuit breaker per channel, shared by every replica: `failures` consecutive transient
-- failures open it until `open_until`; then one run holds the probe (`probe_until`) and its
-- outcome closes or re-opens it.
create table circuit_breakers (
    key         text primary key,
    state       text not null default 'closed',
    failures    integer not null default 0,
    opened_at   timestamptz,
    open_until  timestamptz,
    probe_until timestamptz,
    updated_at  timestamptz not null default now(),
    constraint circuit_breakers_state_valid check (state in ('closed', 'open', 'half_open'))
);

-- The "ending soon" rows of the first schema had no deliverer; notices are notifications now
-- (the daily job re-creates those still due: their window is three days).
drop table notification_outbox;

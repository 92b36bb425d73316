-- Click-to-call (issue 13): a user's PBX extension, and every call request as a row whose state
-- the `call` job moves: queued → dialling (committed before Novofon is asked) → placed | failed
-- | unknown (may have been placed: never dialled again) | cancelled (too late to ring).
alter table users add column extension text
    constraint users_extension_digits check (extension ~ '^[0-9]{3,5}$');

create table call_requests (
    id               uuid primary key,
    client_id        uuid not null references clients (id),
    user_id          uuid not null references users (id),
    extension        text not null,
    number           text not null,                -- E.164, as dialled
    state            text not null default 'queued',
    job_id           text not null,
    provider_call_id bigint,                       -- Novofon's call_session_id
    error            text,
    created_at       timestamptz not null default now(),
    dialling_at      timestamptz,
    finished_at      timestamptz,
    updated_at       timestamptz not null default now(),
    constraint call_requests_state_valid
        check (state in ('queued', 'dialling', 'placed', 'failed', 'unknown', 'cancelled'))
);
create index call_requests_client on call_requests (client_id, created_at desc);
create index call_requests_user on call_requests (user_id, created_at desc);
create index call_requests_open on call_requests (state) where state in ('queued', 'dialling');

-- A retried or doubled POST (Idempotency-Key, or the same caller and number within 30 s)
-- returns the call already requested instead of ringing again.
alter table call_requests add column idempotency_key text;
create unique index call_requests_idempotency on call_requests (user_id, idempotency_key)
    where idempotency_key is not null;
create index call_requests_recent on call_requests (user_id, number, created_at desc);

-- Every token (bearer, page session, signed job link) carries the user's token version; a
-- password change or a deactivation raises it, so tokens issued before stop working at once.
alter table users add column token_version integer not null default 0;

#!/bin/sh
# Runs once, when the data volume is new (postgres image's /docker-entrypoint-initdb.d).
# The application connects as `artsvao`: not a superuser, cannot create roles or databases;
# it owns the `artsvao` database, so its migrations can create the schema, the `apalis`
# schema and the trusted extensions they need (pg_trgm, btree_gist).
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
     -v app_password="$APP_DB_PASSWORD" <<'SQL'
create role artsvao login nosuperuser nocreatedb nocreaterole noreplication
    password :'app_password';
create database artsvao owner artsvao;
revoke all on database artsvao from public;
SQL
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname artsvao <<'SQL'
alter schema public owner to artsvao;
SQL

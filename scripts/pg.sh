# Sourced by scripts/dev and scripts/test: exports DATABASE_URL_BASE (a server URL without a
# database name). Uses $DATABASE_URL when set, else PostgreSQL on 127.0.0.1:5432, else starts a
# private cluster under .pgdata/ (git-ignored) when PostgreSQL is installed.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
pg_bin() {
  local d
  for d in /usr/lib/postgresql/*/bin /usr/local/pgsql/bin; do
    [ -x "$d/initdb" ] && { echo "$d"; return 0; }
  done
  command -v initdb >/dev/null 2>&1 && { dirname "$(command -v initdb)"; return 0; }
  return 1
}
answers() { # host port
  if command -v pg_isready >/dev/null 2>&1; then pg_isready -q -h "$1" -p "$2"; else (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; fi
}
as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
start_private_cluster() {
  local bin port=55432 data="$root/.pgdata"
  bin="$(pg_bin)" || { echo "no PostgreSQL answers on 127.0.0.1:5432 and none is installed" >&2; return 1; }
  if ! answers 127.0.0.1 "$port"; then
    if [ ! -f "$data/PG_VERSION" ]; then
      mkdir -p "$data"
      [ "$(id -u)" = 0 ] && chown postgres:postgres "$data"
      as_postgres "$bin/initdb" -D "$data" -U postgres --auth=trust >/dev/null
    fi
    as_postgres "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w \
      -o "-p $port -k /tmp -c listen_addresses=127.0.0.1 -c max_connections=300" start >/dev/null
  fi
  DATABASE_URL_BASE="postgres://postgres@127.0.0.1:$port"
}
if [ -n "${DATABASE_URL:-}" ]; then
  DATABASE_URL_BASE="${DATABASE_URL%/*}"
elif answers 127.0.0.1 5432; then
  DATABASE_URL_BASE="postgres://postgres@127.0.0.1:5432"
else
  start_private_cluster || exit 1
fi
export DATABASE_URL_BASE

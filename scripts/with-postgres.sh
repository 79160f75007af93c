#!/usr/bin/env bash
# with-postgres.sh CMD...: starts a throwaway PostgreSQL cluster (initdb in a
# temporary folder, as the unprivileged `postgres` user when run as root: root
# cannot run PostgreSQL) on 127.0.0.1:${SYNCSTORE_TEST_PG_PORT:-55432}, exports
# SYNCSTORE_TEST_PG_URL (a superuser URL of its `postgres` database), runs
# CMD, then stops the cluster and removes its folder whatever CMD's result.
set -uo pipefail
port=${SYNCSTORE_TEST_PG_PORT:-55432}
bin=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)}
[ -x "$bin/initdb" ] || { echo "with-postgres: no PostgreSQL found (run scripts/setup.sh)" >&2; exit 1; }
dir=$(mktemp -d /tmp/syncstore-pg.XXXXXX)
chmod 755 "$dir"
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
if [ "$(id -u)" -eq 0 ]; then chown postgres "$dir"; fi
stop() {
  as_pg "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1
  rm -rf "$dir"
}
trap stop EXIT
trap 'exit 130' INT TERM
as_pg "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 ||
  { echo "with-postgres: initdb failed:" >&2; cat "$dir/initdb.log" >&2; exit 1; }
# Throwaway data: no fsync (speed) unless SYNCSTORE_PG_DURABLE=1 (benchmarks);
# sockets in the temp folder only.
opts="-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=600"
[ "${SYNCSTORE_PG_DURABLE:-0}" = 1 ] || opts="$opts -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start -o "$opts" \
  >/dev/null ||
  { echo "with-postgres: PostgreSQL did not start on port $port:" >&2; cat "$dir/server.log" >&2; exit 1; }
export SYNCSTORE_TEST_PG_URL="postgres://postgres@127.0.0.1:$port/postgres"
echo "with-postgres: PostgreSQL on 127.0.0.1:$port"
"$@"

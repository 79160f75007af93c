#!/usr/bin/env bash
# with-server.sh CMD...: starts the sync server (debug build, in-memory
# SQLite, dev token) on 127.0.0.1:${SYNCSTORE_TEST_PORT:-18787}, runs CMD,
# and stops the server whatever CMD's result.
set -uo pipefail
cd "$(dirname "$0")/.."
port=${SYNCSTORE_TEST_PORT:-18787}
cargo build -q -p syncstore-server || exit 1
log=$(mktemp)
./target/debug/syncstore-server --listen "127.0.0.1:$port" --db :memory: --dev >"$log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -f "$log"' EXIT
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  kill -0 "$pid" 2>/dev/null || { echo "sync server failed to start:"; cat "$log"; exit 1; }
  sleep 0.1
done
export SYNCSTORE_TEST_SERVER="http://127.0.0.1:$port"
"$@"

#!/usr/bin/env bash
# with-server.sh CMD...: starts the sync server (debug build, SQLite in a
# temporary folder, dev token) behind scripts/testctl.mjs, which the tests
# use to stop, restart and cut it; runs CMD; stops both whatever CMD's result.
#   proxy (what clients use): 127.0.0.1:${SYNCSTORE_TEST_PORT:-18787}
#   control API:              127.0.0.1:${SYNCSTORE_TEST_CTL_PORT:-18786}
set -uo pipefail
cd "$(dirname "$0")/.."
port=${SYNCSTORE_TEST_PORT:-18787}
ctl=${SYNCSTORE_TEST_CTL_PORT:-18786}
cargo build -q -p syncstore-server || exit 1
log=$(mktemp)
node scripts/testctl.mjs --server-bin ./target/debug/syncstore-server \
  --port "$port" --ctl-port "$ctl" >"$log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -f "$log"' EXIT
for _ in $(seq 150); do
  grep -q '^testctl: proxy' "$log" && break
  kill -0 "$pid" 2>/dev/null || { echo "testctl failed to start:"; cat "$log"; exit 1; }
  sleep 0.1
done
grep -q '^testctl: proxy' "$log" || { echo "testctl did not start in 15 s:"; cat "$log"; exit 1; }
export SYNCSTORE_TEST_SERVER="http://127.0.0.1:$port"
export SYNCSTORE_TEST_CTL="http://127.0.0.1:$ctl"
"$@"

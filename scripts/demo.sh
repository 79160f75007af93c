#!/usr/bin/env bash
# Starts the sync server (dev token, SQLite under data/) and the static
# server for www/, prints the demo URL, and stops both on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
web_port=${1:-8080}
sync_port=${2:-8787}
mkdir -p data
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM
./target/release/syncstore-server --listen "127.0.0.1:$sync_port" --db data/demo.sqlite --dev &
pids+=($!)
node scripts/serve.mjs --port "$web_port" >/dev/null &
pids+=($!)
for _ in $(seq 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$web_port") 2>/dev/null && break
  sleep 0.1
done
# The page talks to the sync server on port 8787 of its own host unless told.
url="http://127.0.0.1:$web_port/"
[ "$sync_port" = 8787 ] || url="${url}?server=http://127.0.0.1:$sync_port"
echo
echo "syncstore demo: $url"
echo "(sync server on http://127.0.0.1:$sync_port, dev token: dev-token; Ctrl-C stops both)"
wait

#!/usr/bin/env bash
# bench/pg.sh: the sync server on PostgreSQL (issue 17), under bench/loadgen:
# 1,000 WebSocket clients spread over the nodes, 16 pushers (HTTP, 10 inserts
# per push) for BENCH_LOAD_SECONDS (20) s: mutations/s and fan-out latency,
# for 1 node and for 3 nodes on one throwaway PostgreSQL cluster
# (scripts/with-postgres.sh, fsync on: commits as durable as SQLite's), and SQLite (1 node) on the same machine for
# reference. Prints one JSON line per setup; `make bench` runs it with row 10
# (bench/sync.mjs) and reports it beside SQLite.
#
# One 2-core machine runs the database, every node and the load generator:
# it shows that nodes share one database correctly and what the fan-out
# costs, not how far N machines would scale (3 nodes here split the same 2
# cores that 1 node had).
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
seconds=${BENCH_LOAD_SECONDS:-20}
clients=${BENCH_LOAD_CLIENTS:-1000}
cargo build --release -q -p syncstore-server
cargo build -q -p syncstore-loadgen --profile loadgen \
  --config 'profile.loadgen.inherits="release"' --config profile.loadgen.opt-level=3 \
  --config 'profile.loadgen.lto="thin"' --config 'profile.loadgen.panic="unwind"'
server=target/release/syncstore-server
loadgen=target/loadgen/syncstore-loadgen

# run_nodes LABEL N DB: starts N nodes on DB, runs the load, stops them.
run_nodes() {
  local label=$1 n=$2 db=$3 urls=() pids=() logs=()
  for _ in $(seq "$n"); do
    local log
    log=$(mktemp)
    "$server" --listen 127.0.0.1:0 --db "$db" --dev \
      --max-connections-per-namespace 5000 --pushes-per-second 100000 \
      >"$log" 2>/dev/null &
    pids+=("$!")
    logs+=("$log")
    for _ in $(seq 100); do grep -q listening "$log" && break; sleep 0.1; done
    urls+=("$(sed -n 's/.*listening on \(http[^ ]*\).*/\1/p' "$log" | head -n1)")
  done
  local list
  list=$(IFS=,; echo "${urls[*]}")
  local out
  out=$("$loadgen" --url "$list" --clients "$clients" --pushers 16 --batch 10 \
    --seconds "$seconds" --server-pid "${pids[0]}" 2>/dev/null | tail -n1) || true
  kill "${pids[@]}" 2>/dev/null
  wait "${pids[@]}" 2>/dev/null || true
  rm -f "${logs[@]}"
  echo "{\"setup\":\"$label\",\"nodes\":$n,\"report\":${out:-null}}"
}

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
run_nodes sqlite 1 "$dir/bench.sqlite"
export -f run_nodes
export server loadgen seconds clients
SYNCSTORE_PG_DURABLE=1 SYNCSTORE_TEST_PG_PORT=${SYNCSTORE_TEST_PG_PORT:-55439} bash scripts/with-postgres.sh bash -c '
  psql -q "$SYNCSTORE_TEST_PG_URL" -c "CREATE DATABASE one" -c "CREATE DATABASE three" >/dev/null
  base=${SYNCSTORE_TEST_PG_URL%/postgres}
  run_nodes postgres 1 "$base/one"
  run_nodes postgres 3 "$base/three"
' | grep '^{'

#!/usr/bin/env bash
# make bench: the benchmarks of issues 7, 13 and 17 (not part of make test; ~13 minutes).
#   rows 1-7  local workloads: syncstore (local only, and with sync on
#             against the release server) against Dexie and raw IndexedDB
#             in headless Chromium (bench/pages/, playwright-core); the
#             "sync on / local" ratio is issue 13's (<= 1.15x; p99 of row 7
#             <= 2x)
#   rows 8-11 sync (bench/sync.mjs) against the real server, the release
#             build of server/ started on 127.0.0.1 (a free port, a fresh
#             SQLite file per row, token dev-token) and stopped after:
#             8  write on store A -> subscription on store B (two pages, two
#                databases): over the WebSocket, and polling (pollMs 100)
#             9  initial sync of 100,000 documents seeded over POST /v1/push:
#                time to all rows, peak JS heap, wasm memory; the same for
#                10,000 documents (a second server); for reference, Dexie
#                bulkPut of the same 100,000 documents in pages of 1,000
#                (same indexes, same page type) and raw IndexedDB writes
#             10 bench/loadgen (crate syncstore-loadgen): 1,000 WebSocket
#                clients, pushers for 30 s: mutations/s, fan-out latency;
#                then bench/pg.sh: the same on PostgreSQL (1 node and 3
#                nodes on one throwaway cluster) beside SQLite, 20 s each
#             11 10,000 inserts queued while offline (goOffline, 10 batch
#                calls; push rate limit raised), then goOnline() until
#                status().pending is 0: mutations/s end to end; the server
#                is checked for all of them
# Then the module's size (bench/size.mjs, as `make size`: gzipped pkg/ and
# twiggy's top items of a build with names; installs twiggy on first use).
# Writes bench/results/latest.json and docs/benchmarks.md; prints the tables.
#
# Run one part (the other part's figures are kept from the last
# results/latest.json):
#   BENCH_ONLY=sync make bench      (or: bash bench/run.sh --sync)
#   BENCH_ONLY=local make bench     (or: bash bench/run.sh --local)
# Knobs: BENCH_REPS (5), BENCH_LIBS (syncstore,syncstoreSync,dexie,raw), BENCH_DIAG=0 (skip the profiles and
# diagnostic runs), BENCH_SYNC_ROWS=8,9,10,11, BENCH_SYNC_SAMPLES (200),
# BENCH_INITIAL_DOCS (100000), BENCH_INITIAL_SMALL_DOCS (10000), BENCH_INITIAL_REPS (2),
# BENCH_PUSH_DOCS (10000, row 11), BENCH_LOAD_CLIENTS (1000),
# BENCH_LOAD_PUSHERS (16), BENCH_LOAD_BATCH (10), BENCH_LOAD_SECONDS (30),
# BENCH_LOAD_VIA (http | ws), BENCH_SERVER_LOG (RUST_LOG of the server, info).
# `node bench/run.mjs --report` re-renders docs/benchmarks.md from latest.json.
# Expects pkg/ built (make bench runs make pkg first).
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -d node_modules/dexie ] || [ ! -d node_modules/playwright-core ] || [ ! -d node_modules/esbuild ]; then
  npm ci --no-audit --no-fund
fi
[ -f ../pkg/syncstore_bg.wasm ] || { echo "bench: pkg/ is missing; run make pkg" >&2; exit 1; }
# Row 10 holds ~1,000 sockets in the load generator and as many in the
# server (each process inherits this limit).
want=4096
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$want" ]; then
  hard=$(ulimit -Hn)
  if [ "$hard" = unlimited ] || [ "$hard" -ge "$want" ]; then ulimit -n "$want"; else ulimit -n "$hard"; fi
  echo "bench: raised ulimit -n to $(ulimit -n)"
fi
exec node run.mjs "$@"

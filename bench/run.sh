#!/usr/bin/env bash
# make bench: syncstore against Dexie and raw IndexedDB in headless Chromium.
# Expects pkg/ built (make bench runs make pkg first). Not part of make test.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -d node_modules/dexie ] || [ ! -d node_modules/playwright-core ]; then
  npm ci --no-audit --no-fund
fi
[ -f ../pkg/syncstore_bg.wasm ] || { echo "bench: pkg/ is missing; run make pkg" >&2; exit 1; }
exec node run.mjs "$@"

#!/usr/bin/env bash
# wasm-opt.sh IN [OUT] [EXTRA_FLAGS...]: optimizes a wasm-bindgen output with
# npm's binaryen (scripts/package.json, installed by scripts/setup.sh), in
# place when OUT is omitted or "-". Run by `make pkg` on pkg/syncstore_bg.wasm
# and by scripts/size-names.sh (with -g, to keep the names twiggy reports).
#
# The flags measured best on the gzipped (-9) size (docs/architecture.md,
# "Dependencies"): -Os with one-caller inlining off. binaryen's -Oz/-Os inline
# every function that has one caller, which saves raw bytes but costs gzipped
# ones (-Oz alone: 8% larger gzipped than no wasm-opt); without it -Os is 3%
# smaller gzipped. The features are rustc's defaults for wasm32-unknown-unknown
# (the release build is stripped, so there is no target_features section to
# detect them from).
set -euo pipefail
cd "$(dirname "$0")/.."
in=${1:?usage: wasm-opt.sh IN [OUT] [EXTRA_FLAGS...]}
out=${2:--}
[ "$out" = "-" ] && out=$in
shift $(($# < 2 ? $# : 2))
bin=scripts/node_modules/.bin/wasm-opt
[ -x "$bin" ] || {
  echo "wasm-opt.sh: $bin is missing: run scripts/setup.sh (npm ci in scripts/)" >&2
  exit 1
}
FEATURES=(--enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext
  --enable-mutable-globals --enable-reference-types --enable-multivalue)
FLAGS=(-Os --one-caller-inline-max-function-size 0 --converge --strip-producers)
tmp=$(mktemp --suffix .wasm)
trap 'rm -f "$tmp"' EXIT
"$bin" "${FEATURES[@]}" "${FLAGS[@]}" "$@" "$in" -o "$tmp"
cat "$tmp" >"$out"

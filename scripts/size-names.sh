#!/usr/bin/env bash
# size-names.sh: the module of `make pkg` with function names kept, for
# twiggy (`make size`, bench/size.mjs). The release build strips names, so
# this builds the same code with the `size` profile (release, not stripped),
# runs wasm-bindgen and scripts/wasm-opt.sh with -g (names kept through the
# passes) and prints the path of the result: target/size/syncstore_bg.wasm.
# Its code is the shipped module's; wasm-bindgen keeps its helpers' export
# names where it shortens them in a stripped build (~1 KB raw).
# Installs twiggy on first use (not part of `make test`).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v twiggy >/dev/null; then
  echo "size-names: cargo install twiggy" >&2
  cargo install --locked twiggy >&2 || cargo install twiggy >&2
fi
cargo build -q --lib -p syncstore --target wasm32-unknown-unknown --profile size >&2
out=target/size
rm -rf "$out" && mkdir -p "$out"
# Without these two sections, as in the stripped release build: wasm-bindgen
# would otherwise see the target features and emit multi-value glue.
node scripts/wasm-drop-sections.mjs target/wasm32-unknown-unknown/size/syncstore.wasm \
  "$out/syncstore.wasm" target_features producers
wasm-bindgen --target web --out-dir "$out" --out-name syncstore "$out/syncstore.wasm" >&2
bash scripts/wasm-opt.sh "$out/syncstore_bg.wasm" - -g >&2
echo "$out/syncstore_bg.wasm"

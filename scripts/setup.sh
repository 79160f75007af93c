#!/usr/bin/env bash
# Installs what `make demo`, `make test` and `make bench` need and is missing.
# Idempotent: a tool already present at the right version is left alone.
# Runs as root on Debian 12; uses only crates.io, npm and Debian's packages.
set -euo pipefail
cd "$(dirname "$0")/.."

WASM_BINDGEN_VERSION=$(grep -A1 '^name = "wasm-bindgen"$' Cargo.lock | sed -n 's/^version = "\(.*\)"/\1/p' | head -n1)
: "${WASM_BINDGEN_VERSION:?wasm-bindgen not found in Cargo.lock}"
export PATH="$HOME/.cargo/bin:$PATH"

log() { echo "setup: $*"; }
die() {
  echo "setup: $*" >&2
  exit 1
}

# Prerequisites this script does not install (README, "Prerequisites"):
# a rustup-managed Rust toolchain and Node.js with npm.
RUST_MIN=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
NODE_MIN=20
# version_ge A B: A >= B, both dotted numbers.
version_ge() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]; }
missing=()
if ! command -v rustup >/dev/null || ! command -v cargo >/dev/null; then
  missing+=("a Rust toolchain installed with rustup (https://rustup.rs), Rust $RUST_MIN or later")
else
  rust_v=$(rustc --version | awk '{print $2}')
  version_ge "${rust_v%%-*}" "$RUST_MIN" ||
    missing+=("Rust $RUST_MIN or later (found $rust_v; run: rustup update stable)")
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  missing+=("Node.js $NODE_MIN or later with npm (Debian 12's nodejs is 18: use NodeSource or nvm)")
else
  node_v=$(node --version | sed 's/^v//')
  version_ge "$node_v" "$NODE_MIN" ||
    missing+=("Node.js $NODE_MIN or later (found $node_v; Debian 12's nodejs is 18: use NodeSource or nvm)")
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: missing prerequisites:" >&2
  for m in "${missing[@]}"; do echo "  - $m" >&2; done
  die "install them, then run make again"
fi

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  log "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi
for c in rustfmt clippy; do
  rustup component list --installed | grep -q "^$c" || rustup component add "$c"
done

apt_pkgs=()
# Building the server (bundled SQLite) and cargo-installed tools needs a C
# toolchain; the tools fetch over HTTPS.
command -v cc >/dev/null || apt_pkgs+=(build-essential)
command -v pkg-config >/dev/null || apt_pkgs+=(pkg-config)
command -v curl >/dev/null || apt_pkgs+=(curl)
dpkg -s libssl-dev >/dev/null 2>&1 || apt_pkgs+=(libssl-dev)
command -v chromium >/dev/null || apt_pkgs+=(chromium)
command -v chromedriver >/dev/null || apt_pkgs+=(chromium-driver)
command -v firefox-esr >/dev/null || apt_pkgs+=(firefox-esr)
command -v sqlite3 >/dev/null || apt_pkgs+=(sqlite3)
# The server's PostgreSQL store is tested against a real server
# (scripts/with-postgres.sh starts a throwaway cluster with initdb/pg_ctl).
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || apt_pkgs+=(postgresql)
if [ ${#apt_pkgs[@]} -gt 0 ]; then
  log "apt-get install ${apt_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${apt_pkgs[@]}" >/dev/null
fi

if ! wasm-bindgen --version 2>/dev/null | grep -q " $WASM_BINDGEN_VERSION\$"; then
  log "cargo install wasm-bindgen-cli $WASM_BINDGEN_VERSION"
  # --locked can fail when a pinned transitive crate was yanked; fall back.
  cargo install --locked --force wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" ||
    cargo install --force wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION"
fi
if ! command -v wasm-pack >/dev/null; then
  log "cargo install wasm-pack"
  cargo install --locked wasm-pack || cargo install wasm-pack
fi
if ! command -v geckodriver >/dev/null; then
  log "cargo install geckodriver"
  cargo install --locked geckodriver || cargo install geckodriver
fi

# npm ci when node_modules is missing or older than the lock file (a pull
# that added a package must not leave a stale install behind). scripts/:
# the build's tools (binaryen's wasm-opt, which runs under Node: Debian's
# binaryen 108 is too old; playwright-core for scripts/smoke-pkg.mjs).
for dir in scripts tests/e2e tests/package; do
  [ -f "$dir/package-lock.json" ] || continue
  stamp="$dir/node_modules/.package-lock.json"
  if [ ! -f "$stamp" ] || [ "$dir/package-lock.json" -nt "$stamp" ]; then
    log "npm ci in $dir"
    (cd "$dir" && npm ci --no-audit --no-fund)
  fi
done
log "ok"

# syncstore: `make demo` and `make test` are all a fresh Debian 12 machine
# needs (as root); both install what is missing first (scripts/setup.sh).
SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)
CHROMEDRIVER ?= /usr/bin/chromedriver
GECKODRIVER ?= $(HOME)/.cargo/bin/geckodriver
DEMO_PORT ?= 8080
SERVER_PORT ?= 8787

.PHONY: setup pkg demo test lint test-native test-browser test-e2e server bench clean

setup:
	bash scripts/setup.sh

# The wasm package (wasm-bindgen output) in pkg/, optimized by npm binaryen's
# wasm-opt (scripts/wasm-opt.sh); fails unless the optimized module loads,
# inserts and queries in headless Chromium and Firefox (scripts/smoke-pkg.mjs).
pkg: setup
	wasm-pack build --release --target web --out-dir pkg --out-name syncstore
	@gzip -9 -c pkg/syncstore_bg.wasm | wc -c | awk '{print "wasm gzipped before wasm-opt: " $$1 " bytes"}'
	bash scripts/wasm-opt.sh pkg/syncstore_bg.wasm
	GECKODRIVER=$(GECKODRIVER) node scripts/smoke-pkg.mjs pkg
	@ls -l pkg/syncstore_bg.wasm | awk '{print "wasm: " $$5 " bytes"}'
	@gzip -9 -c pkg/syncstore_bg.wasm | wc -c | awk '{print "wasm gzipped: " $$1 " bytes"}'

# The shipped size (gzip -9, wasm + JS glue, as `make package` counts it),
# the peer comparison (syncstore, Dexie, RxDB, PouchDB bundled by esbuild,
# minified, gzipped: bench/size.mjs) and twiggy's top 25 items of the same
# module built with names, written to bench/results/latest.json and
# docs/benchmarks.md (its Size section). Installs bench/'s npm packages and
# twiggy on first use.
.PHONY: size
size: pkg
	cd bench && { [ -d node_modules/esbuild ] || npm ci --no-audit --no-fund; }
	node bench/size.mjs --write

server: setup
	cargo build --release -p syncstore-server

# Builds everything, starts the sync server and the demo page, prints the URL.
demo: pkg server
	bash scripts/demo.sh $(DEMO_PORT) $(SERVER_PORT)

# Every test tier; fails if any fails or runs no test.
test: setup lint test-native test-browser test-e2e test-package
	@echo "make test: all tiers passed"

# fmt, clippy (native and wasm32) and no import circle among the modules
# of src/ (scripts/check-layers.mjs).
lint:
	node scripts/check-layers.mjs
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy -p syncstore --target wasm32-unknown-unknown --all-targets -- -D warnings

# The wasm crate's tests run in the browser tier; natively it has only the
# unit tests of its plain data (the tab messages' JSON: native-binding).
# The server's suite runs again on PostgreSQL (a throwaway cluster), with
# the tests that need it (tests/scale.rs: several nodes, the commit-order race).
PG_TESTS = cargo test -p syncstore-server --test '*'
test-native:
	bash scripts/run-tier.sh native cargo test --workspace --exclude syncstore
	bash scripts/run-tier.sh native-binding cargo test -p syncstore --lib
	SYNCSTORE_TEST_STORE=postgres bash scripts/run-tier.sh native-postgres bash scripts/with-postgres.sh $(PG_TESTS)

# Browser suites in Chromium and Firefox; tests/net.rs talks to a real server.
# The runner's time limit covers a whole suite (its default, 20 s, is too
# short for the sync scenarios on a busy 2-core machine).
export WASM_BINDGEN_TEST_TIMEOUT ?= 300
BROWSER_TESTS = cargo test --target wasm32-unknown-unknown --test browser --test net
test-browser:
	CHROMEDRIVER=$(CHROMEDRIVER) bash scripts/run-tier.sh chromium bash scripts/with-server.sh $(BROWSER_TESTS)
	GECKODRIVER=$(GECKODRIVER) bash scripts/run-tier.sh firefox bash scripts/with-server.sh $(BROWSER_TESTS)

# node --test with per-file counts for scripts/run-tier.sh.
NODE_TEST = node --test --test-concurrency=1 --test-reporter=spec --test-reporter-destination=stdout \
	--test-reporter=./scripts/suite-counts.mjs --test-reporter-destination=stdout

# Page-level tests (playwright-core, Chromium); the tab tests sync with the real server.
test-e2e: pkg
	bash scripts/run-tier.sh e2e bash scripts/with-server.sh $(NODE_TEST) tests/e2e/

# The npm package: dist/package/ and dist/syncstore-<version>.tgz, with its sizes.
.PHONY: package test-package
package: pkg
	bash scripts/package.sh

# The package as users install it (tests/package/): a Vite app with React,
# Vue 3 and Svelte 5 components, a no-build page (headless Chromium), React
# and Vue server renders, a webpack 5 app, TypeScript, React and Vue types.
test-package: package
	bash scripts/run-tier.sh package $(NODE_TEST) --test-timeout=170000 tests/package/

# Benchmarks against Dexie and raw IndexedDB, and of sync with the real server
# (not part of `make test`; ~10 min; BENCH_ONLY=sync|local runs one part).
bench: pkg
	bash bench/run.sh

clean:
	rm -rf pkg target tests/e2e/out

#!/usr/bin/env bash
# package.sh: the npm package. Assembles dist/package/ from pkg-template/ and
# the wasm-bindgen output in pkg/ (`make pkg`), packs it into
# dist/syncstore-<version>.tgz (the version of Cargo.toml's [package]) and
# prints the sizes a web app pays. Run by `make package`.
set -euo pipefail
cd "$(dirname "$0")/.."

die() {
  echo "package: $*" >&2
  exit 1
}

version=$(sed -n '/^\[package\]/,/^\[/ s/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
[ -n "$version" ] || die "no version in the [package] section of Cargo.toml"
for f in syncstore.js syncstore.d.ts syncstore_bg.wasm; do
  [ -f "pkg/$f" ] || die "pkg/$f is missing: run make pkg"
done

# The JS helpers module (src/js/glue.js): the one path syncstore.js imports
# under snippets/, whose directory name carries a hash.
glue=$(grep -oE "['\"]\./snippets/[^'\"]+['\"]" pkg/syncstore.js | tr -d "'\"" | sort -u)
[ -n "$glue" ] || die "pkg/syncstore.js imports no snippet"
[ "$(printf '%s\n' "$glue" | wc -l)" -eq 1 ] || die "pkg/syncstore.js imports several snippets: $glue"
[ -f "pkg/$glue" ] || die "pkg/$glue (imported by pkg/syncstore.js) is missing"
grep -q '^export class SyncStoreError ' "pkg/$glue" || die "pkg/$glue does not export the SyncStoreError class"

out=dist/package
rm -rf "$out" dist/syncstore-*.tgz
mkdir -p "$out/$(dirname "$glue")"
cp pkg/syncstore.js pkg/syncstore.d.ts pkg/syncstore_bg.wasm "$out/"
cp "pkg/$glue" "$out/$glue"
cp pkg-template/README.md pkg-template/LICENSE pkg-template/index.d.ts \
  pkg-template/react.js pkg-template/react.d.ts pkg-template/vue.js pkg-template/vue.d.ts "$out/"
sed "s|@SYNCSTORE_GLUE_JS@|$glue|" pkg-template/index.js >"$out/index.js"
grep -q "@SYNCSTORE_GLUE_JS@" "$out/index.js" && die "index.js: the glue path was not filled in"
VERSION=$version node -e '
  const fs = require("fs");
  const pkg = JSON.parse(fs.readFileSync("pkg-template/package.json", "utf8"));
  pkg.version = process.env.VERSION;
  fs.writeFileSync(process.argv[1], JSON.stringify(pkg, null, 2) + "\n");
' "$out/package.json"

# Every file the package lists must be there (npm pack skips missing ones).
node -e '
  const fs = require("fs");
  const dir = process.argv[1];
  const pkg = JSON.parse(fs.readFileSync(dir + "/package.json", "utf8"));
  for (const f of pkg.files) if (!fs.existsSync(dir + "/" + f)) throw new Error("files: " + f + " is missing");
' "$out"

err=$(mktemp)
trap 'rm -f "$err"' EXIT
if ! tgz=$(cd "$out" && npm pack --ignore-scripts --pack-destination .. --silent 2>"$err" | tail -n1); then
  cat "$err" >&2
  die "npm pack failed"
fi
[ "$tgz" = "syncstore-$version.tgz" ] && [ -f "dist/$tgz" ] || die "npm pack did not write dist/syncstore-$version.tgz (got '$tgz')"

raw() { wc -c <"$1" | tr -d ' '; }
gz() { gzip -9 -c "$1" | wc -c | tr -d ' '; }
glue_files=("$out/syncstore.js" "$out/$glue" "$out/index.js")
glue_raw=0
glue_gz=0
for f in "${glue_files[@]}"; do
  glue_raw=$((glue_raw + $(raw "$f")))
  glue_gz=$((glue_gz + $(gz "$f")))
done
wasm_raw=$(raw "$out/syncstore_bg.wasm")
wasm_gz=$(gz "$out/syncstore_bg.wasm")
echo "package: dist/$tgz ($(raw "dist/$tgz") bytes)"
printf 'package: %-44s %9s bytes raw %9s bytes gzipped\n' \
  "wasm (syncstore_bg.wasm)" "$wasm_raw" "$wasm_gz" \
  "JS glue (syncstore.js + snippets + index.js)" "$glue_raw" "$glue_gz" \
  "react.js (only with syncstore/react)" "$(raw "$out/react.js")" "$(gz "$out/react.js")" \
  "vue.js (only with syncstore/vue)" "$(raw "$out/vue.js")" "$(gz "$out/vue.js")"
echo "package: total gzipped (wasm + JS glue): $((wasm_gz + glue_gz)) bytes"

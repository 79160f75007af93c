// The size a web app downloads, and where it goes. `make size` runs
// `node bench/size.mjs --write`; `make bench` (run.mjs) calls sizes() too.
//   - gzip -9 of pkg/ as `make package` counts it: syncstore_bg.wasm, and the
//     JS glue: syncstore.js, the glue snippet (src/js/glue.js) and the
//     package's index.js (pkg-template/index.js);
//   - the top items of `twiggy top` on the same module built with names
//     (scripts/size-names.sh: release code, names kept, the same wasm-opt).
// --write stores them in bench/results/latest.json (`sizes`) and replaces the
// size part of docs/benchmarks.md (between its size markers), leaving the
// rest of the report as it is.
import { readFile, writeFile } from "node:fs/promises";
import { statSync, mkdtempSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { execFileSync } from "node:child_process";
import { join, resolve, dirname, relative, basename } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "..");
export const TOP = 25;

// `gzip -9 -c FILE` itself, as scripts/package.sh counts (node's zlib differs
// by ~1%; gzip's header holds the file's name, hence a file of the same name).
const gzDir = mkdtempSync(join(tmpdir(), "syncstore-size-"));
process.on("exit", () => rmSync(gzDir, { recursive: true, force: true }));
const gz = (b, name) => {
  const f = join(gzDir, basename(name));
  writeFileSync(f, b);
  return execFileSync("gzip", ["-9", "-c", f], { maxBuffer: 64 << 20 }).length;
};

// The names section (twiggy lists its subsections) exists only in this build.
const isNames = (name) => /^"name" section|^"[a-z ]+" subsection$/.test(name);
// Build hashes and crate disambiguators change with every build.
const tidy = (name) => name.replace(/::h[0-9a-f]{16}$/, "").replace(/\[[0-9a-f]{16}\]/g, "");

/** The crate an item is counted under: a generic's instances under the crate that defines it. */
export function crateOf(name) {
  if (/^data segment/.test(name)) return "(data segments)";
  if (/^import /.test(name)) return "(imports)";
  if (/^export /.test(name)) return "(exports)";
  const crate = (s) => s.replace(/^(<|&|mut |dyn |\(|\[)+/, "").match(/^([A-Za-z_]\w*)(\[[0-9a-f]+\])?::/)?.[1];
  // `<f64 as core::fmt::Display>::fmt`: a primitive's impl counts under the trait's crate.
  return crate(name) || crate(name.match(/ as ([^<>]+)/)?.[1] || "") || "(other)";
}

/** twiggy's top items of the module built with names (installs twiggy once). */
export function twiggyTop(n = TOP) {
  const env = { ...process.env, PATH: `${process.env.HOME}/.cargo/bin:${process.env.PATH}` };
  const wasm = execFileSync("bash", [join(root, "scripts", "size-names.sh")], { cwd: root, env, encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] }).trim().split("\n").pop();
  const all = JSON.parse(execFileSync("twiggy", ["top", "-f", "json", join(root, wasm)], { env, encoding: "utf8", maxBuffer: 256 << 20 }));
  const items = all.filter((i) => !isNames(i.name));
  const code = items.reduce((t, i) => t + i.shallow_size, 0);
  const pct = (bytes) => Math.round((bytes / code) * 10000) / 100;
  const byCrate = {};
  for (const i of items) {
    const c = crateOf(i.name);
    byCrate[c] = (byCrate[c] || 0) + i.shallow_size;
  }
  return {
    module: relative(root, join(root, wasm)),
    namedRaw: statSync(join(root, wasm)).size,
    bytes: code,
    items: items.slice(0, n).map((i) => ({ name: tidy(i.name), bytes: i.shallow_size, percent: pct(i.shallow_size) })),
    byCrate: Object.entries(byCrate).sort((x, y) => y[1] - x[1]).slice(0, 15).map(([crate, bytes]) => ({ crate, bytes, percent: pct(bytes) })),
  };
}

/**
 * The peer comparison (issue 19): what an app downloads for each library,
 * measured the same way. An entry that imports the library's API the way an
 * app would is bundled by esbuild (bench/node_modules: ESM, minified, for the
 * browser, `process.env.NODE_ENV` "production"), then gzip -9; syncstore adds
 * its .wasm, which the bundle fetches beside itself. Each entry keeps what it
 * imports (assigned to a global), so tree shaking leaves the API an app uses.
 */
export const PEERS = [
  {
    name: "syncstore",
    what: "`SyncStore` (store, queries, live queries, sync engine, tabs): the package's index.js bundled, plus syncstore_bg.wasm",
    code: `import { SyncStore, SyncStoreError } from "./syncstore/index.js"; globalThis.lib = [SyncStore, SyncStoreError];`,
  },
  { name: "Dexie", pkg: "dexie", what: "`Dexie` (local only: no sync)", code: `import Dexie from "dexie"; globalThis.lib = Dexie;` },
  {
    name: "Dexie + Dexie Cloud",
    pkg: "dexie-cloud-addon",
    what: "`Dexie` with the `dexie-cloud-addon` sync add-on",
    code: `import Dexie from "dexie"; import dexieCloud from "dexie-cloud-addon"; globalThis.lib = [Dexie, dexieCloud];`,
  },
  {
    name: "RxDB",
    pkg: "rxdb",
    what: "`createRxDatabase`, the free IndexedDB storage (`rxdb/plugins/storage-dexie`) and replication (`rxdb/plugins/replication`)",
    code:
      `import { createRxDatabase } from "rxdb"; import { getRxStorageDexie } from "rxdb/plugins/storage-dexie"; ` +
      `import { replicateRxCollection } from "rxdb/plugins/replication"; globalThis.lib = [createRxDatabase, getRxStorageDexie, replicateRxCollection];`,
  },
  { name: "PouchDB", pkg: "pouchdb-browser", what: "`PouchDB` (pouchdb-browser: IndexedDB adapter, HTTP adapter, replication; with the `events` package, which it imports and a bundler does not provide)", code: `import PouchDB from "pouchdb-browser"; globalThis.lib = PouchDB;` },
];

/** The bundled and gzipped size of syncstore (from pkg/) and of each peer in PEERS. */
export async function peerSizes() {
  let build;
  try {
    ({ build } = await import("esbuild"));
  } catch {
    throw new Error("esbuild is missing: run `npm ci` in bench/ (make size and make bench do)");
  }
  // Inside bench/, so that the entries' bare imports resolve to bench/node_modules.
  const dir = mkdtempSync(join(here, ".peers-"));
  try {
    // The package's layout (scripts/package.sh): pkg/ plus index.js with the glue's path.
    const pkg = join(root, "pkg");
    const js = await readFile(join(pkg, "syncstore.js"), "utf8");
    const glue = js.match(/['"](\.\/snippets\/[^'"]+)['"]/)?.[1];
    if (!glue) throw new Error("pkg/syncstore.js imports no snippet");
    const lib = join(dir, "syncstore");
    mkdirSync(join(lib, dirname(glue)), { recursive: true });
    writeFileSync(join(lib, "syncstore.js"), js);
    writeFileSync(join(lib, glue), await readFile(join(pkg, glue)));
    writeFileSync(join(lib, "index.js"), (await readFile(join(root, "pkg-template", "index.js"), "utf8")).replace("@SYNCSTORE_GLUE_JS@", glue));
    const wasmGz = gz(await readFile(join(pkg, "syncstore_bg.wasm")), "syncstore_bg.wasm");
    const out = [];
    for (const p of PEERS) {
      const entry = join(dir, `entry-${out.length}.js`);
      writeFileSync(entry, p.code + "\n");
      const r = await build({
        entryPoints: [entry],
        bundle: true,
        minify: true,
        format: "esm",
        platform: "browser",
        define: { "process.env.NODE_ENV": '"production"' },
        write: false,
        logLevel: "silent",
      });
      const bundle = Buffer.from(r.outputFiles[0].contents);
      const jsGz = gz(bundle, "bundle.js");
      const version = p.pkg ? JSON.parse(await readFile(join(here, "node_modules", p.pkg, "package.json"), "utf8")).version : undefined;
      const wasm = p.pkg ? 0 : wasmGz;
      out.push({ name: p.name, pkg: p.pkg, version, what: p.what, jsRaw: bundle.length, jsGz, wasmGz: wasm, totalGz: jsGz + wasm });
    }
    return out;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Raw and gzipped sizes of pkg/, and twiggy's top items unless `twiggy: false`;
 * with `strict: false` (make bench) a twiggy failure is a warning, not the
 * loss of a whole run.
 */
export async function sizes({ twiggy = true, strict = true } = {}) {
  const pkg = join(root, "pkg");
  const wasm = await readFile(join(pkg, "syncstore_bg.wasm"));
  const js = await readFile(join(pkg, "syncstore.js"));
  // The one snippet syncstore.js imports (src/js/glue.js; package.sh checks
  // there is one) and index.js with its path filled in, as package.sh does.
  const glue = js.toString().match(/['"](\.\/snippets\/[^'"]+)['"]/)?.[1];
  if (!glue) throw new Error("pkg/syncstore.js imports no snippet");
  const snip = await readFile(join(pkg, glue));
  const index = Buffer.from((await readFile(join(root, "pkg-template", "index.js"), "utf8")).replace("@SYNCSTORE_GLUE_JS@", glue));
  const out = {
    wasm: wasm.length, wasmGz: gz(wasm, "syncstore_bg.wasm"),
    glueJs: js.length, glueJsGz: gz(js, "syncstore.js"),
    snippetsJs: snip.length, snippetsJsGz: gz(snip, glue),
    indexJs: index.length, indexJsGz: gz(index, "index.js"),
  };
  out.totalGz = out.wasmGz + out.glueJsGz + out.snippetsJsGz + out.indexJsGz;
  out.date = new Date().toISOString();
  try {
    out.commit = execFileSync("git", ["-C", root, "rev-parse", "--short", "HEAD"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
  } catch {}
  try {
    out.peers = await peerSizes();
  } catch (e) {
    if (strict) throw e;
    console.warn(`size: WARNING no peer comparison (${e.message.split("\n")[0]}); run make size`);
  }
  if (twiggy) {
    try {
      out.twiggy = twiggyTop();
    } catch (e) {
      if (strict) throw e;
      console.warn(`size: WARNING no twiggy report (${e.message.split("\n")[0]}); run make size`);
    }
  }
  return out;
}

// `node bench/size.mjs [--write]`
if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { sizeSection, SIZE_START, SIZE_END } = await import("./report.mjs");
  const z = await sizes();
  const md = sizeSection(z).join("\n");
  console.log(md);
  if (process.argv.includes("--write")) {
    const latest = join(here, "results", "latest.json");
    const r = JSON.parse(await readFile(latest, "utf8"));
    r.sizes = z;
    await writeFile(latest, JSON.stringify(r, null, 2) + "\n");
    const docPath = join(root, "docs", "benchmarks.md");
    const doc = await readFile(docPath, "utf8");
    const a = doc.indexOf(SIZE_START), b = doc.indexOf(SIZE_END);
    let next;
    if (a >= 0 && b > a) next = doc.slice(0, a) + md + doc.slice(b + SIZE_END.length);
    else {
      // A report written before the size markers: render it again from latest.json.
      const { report } = await import("./report.mjs");
      next = await report(r, join(here, "findings.md"));
    }
    await writeFile(docPath, next);
    console.log("size: wrote the sizes to bench/results/latest.json and docs/benchmarks.md");
  }
}

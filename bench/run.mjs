// Drives the bench pages in Debian's headless Chromium, one page load per
// library (rows 1-7), then the sync rows against the real server (8-11,
// sync.mjs), and writes results/latest.json and ../docs/benchmarks.md.
// `--local` / `--sync` (or BENCH_ONLY=local|sync) run one part and keep the
// other part's figures from the previous results/latest.json.
import { chromium } from "playwright-core";
import { mkdtemp, rm, readFile, writeFile, mkdir } from "node:fs/promises";
import { execFileSync } from "node:child_process";
import { tmpdir, cpus, totalmem } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { serve } from "./serve.mjs";
import { ARGS, categorize } from "./chromium.mjs";
import { report } from "./report.mjs";
import { sizes } from "./size.mjs";
import { runSync, build, startServer, LOAD_FLAGS } from "./sync.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "..");
const REPS = Number(process.env.BENCH_REPS || 5);
const LIBS = (process.env.BENCH_LIBS || "syncstore,syncstoreSync,dexie,raw").split(",");
const ONLY = process.argv.includes("--sync") ? "sync" : process.argv.includes("--local") ? "local" : process.env.BENCH_ONLY || "";
if (!["", "sync", "local"].includes(ONLY)) throw new Error(`BENCH_ONLY must be sync or local, not ${ONLY}`);
const RUN_LOCAL = ONLY !== "sync", RUN_SYNC = ONLY !== "local";
const sh = (cmd, args) => {
  try {
    return execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
  } catch {
    return "unknown";
  }
};

function machine(chromiumVersion) {
  const info = sh("cat", ["/proc/cpuinfo"]);
  const model = (info.match(/^model name\s*:\s*(.*)$/m) || [])[1] || cpus()[0]?.model || "unknown";
  return {
    nproc: Number(sh("nproc", [])) || cpus().length,
    cpu: model.trim(),
    chromium: chromiumVersion,
    node: process.version,
    commit: sh("git", ["-C", root, "rev-parse", "--short", "HEAD"]),
    dexie: JSON.parse(sh("cat", [join(here, "node_modules", "dexie", "package.json")])).version,
    memGb: Math.round(totalmem() / 2 ** 30),
    disk: `temporary files (server SQLite, browser profile) in ${tmpdir()}: ${sh("df", ["--output=fstype,source", tmpdir()]).split("\n").pop().trim().replace(/\s+/, " on ")}`,
  };
}

// `node run.mjs --report`: re-render docs/benchmarks.md from latest.json
// (e.g. after editing findings.md) without measuring again.
if (process.argv.includes("--report")) {
  const r = JSON.parse(await readFile(join(here, "results", "latest.json"), "utf8"));
  await writeFile(join(root, "docs", "benchmarks.md"), await report(r, join(here, "findings.md")));
  console.log("bench: re-rendered docs/benchmarks.md from bench/results/latest.json");
  process.exit(0);
}

const started = Date.now();
const server = await serve();
const base = `http://127.0.0.1:${server.address().port}/`;
const profile = await mkdtemp(join(tmpdir(), "syncstore-bench-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ARGS,
});
const results = {};
let chromiumVersion = "unknown";
let diagnostics = null;
let sync = null;
const previous = await readFile(join(here, "results", "latest.json"), "utf8").then(JSON.parse).catch(() => null);
if (ONLY && !previous) console.warn(`bench: no previous results/latest.json: the ${ONLY === "sync" ? "local" : "sync"} section will be empty`);

async function openPage(query = "") {
  const page = await context.newPage();
  page.errors = [];
  page.on("pageerror", (e) => page.errors.push(e.message));
  page.on("console", (m) => m.type() === "error" && page.errors.push(m.text()));
  await page.goto(base + query);
  await page.waitForFunction(() => window.benchReady === true, null, { timeout: 20000 });
  return page;
}


async function profileOne(lib, kind) {
  const page = await openPage();
  const cdp = await context.newCDPSession(page);
  await cdp.send("Profiler.enable");
  await cdp.send("Profiler.setSamplingInterval", { interval: 200 });
  await page.evaluate(([lib, kind]) => window.diag.prep(lib, kind), [lib, kind]);
  await cdp.send("Profiler.start");
  const ran = await page.evaluate((kind) => window.diag.run(kind), kind);
  const { profile } = await cdp.send("Profiler.stop");
  await page.evaluate(() => window.diag.finish());
  await page.close();
  const out = categorize(profile);
  if (Array.isArray(ran)) {
    const s = [...ran].sort((a, b) => a - b);
    out.p50 = s[s.length >> 1];
  } else out.wallMs = Math.round(ran);
  return out;
}

async function diagnose() {
  process.stdout.write("bench: diagnostics (syncstore's layout in plain JS, spans, CPU profiles)... ");
  const t = Date.now();
  const page = await openPage();
  const layout = await page.evaluate((reps) => window.runBench("rawLayout", reps), REPS);
  const spans = await page.evaluate(() => window.diag.spans());
  if (page.errors.length) throw new Error(`diagnostics page errors: ${page.errors.join("; ")}`);
  await page.close();
  const profiles = {};
  for (const [lib, kind] of [["syncstore", "insertBulk"], ["rawLayout", "insertBulk"], ["syncstore", "insertEach"], ["syncstore", "updateEach"], ["syncstore", "readAll"], ["syncstore", "live"], ["dexie", "live"]]) {
    profiles[`${lib} ${kind}`] = await profileOne(lib, kind);
  }
  console.log(`${((Date.now() - t) / 1000).toFixed(1)} s`);
  return { rawLayout: layout.medians, rawLayoutRuns: layout.runs, spans, profiles };
}
try {
  if (RUN_LOCAL) {
    // "syncstoreSync": the same store with sync on, against the release
    // server on 127.0.0.1 (one token, i.e. one namespace, per database the
    // workloads open: two per repetition; push rate limit raised). The
    // libraries take turns within each repetition, each in a fresh page, so
    // that what drifts during the run (the machine's load, IndexedDB's
    // compaction of the databases deleted before) falls on all of them
    // alike; before, each ran its repetitions in one block.
    let syncServer = null;
    if (LIBS.includes("syncstoreSync")) {
      const bins = build(root);
      const tokens = Array.from({ length: 2 * REPS + 2 }, (_, i) => ["--token", `bench-${i}:bench${i}`]).flat();
      syncServer = await startServer(bins.server, [...LOAD_FLAGS, ...tokens]);
    }
    const runs = Object.fromEntries(LIBS.map((lib) => [lib, []]));
    const secs = Object.fromEntries(LIBS.map((lib) => [lib, 0]));
    try {
      for (let r = 0; r < REPS; r++) {
        for (const lib of LIBS) {
          const query = lib === "syncstoreSync" ? `?server=${encodeURIComponent(syncServer.url)}&tokenBase=${2 * r}` : "";
          const page = await openPage(query);
          const errors = page.errors;
          chromiumVersion = await page.evaluate(() => navigator.userAgent.match(/Chrome\/([\d.]+)/)?.[1] || "unknown");
          const t = Date.now();
          process.stdout.write(`bench: ${lib} ${r + 1}/${REPS}... `);
          runs[lib].push(await page.evaluate(([lib, r]) => window.runRep(lib, r), [lib, r]));
          secs[lib] += (Date.now() - t) / 1000;
          console.log(`${((Date.now() - t) / 1000).toFixed(1)} s`);
          if (errors.length) throw new Error(`${lib} page errors: ${errors.join("; ")}`);
          await page.close();
        }
      }
    } finally {
      if (syncServer) await syncServer.stop();
    }
    const median = (xs) => {
      const s = [...xs].sort((a, b) => a - b);
      return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
    };
    for (const lib of LIBS) {
      const keys = Object.keys(runs[lib][0].out);
      const medians = Object.fromEntries(keys.map((k) => [k, median(runs[lib].map((x) => x.out[k]))]));
      results[lib] = { lib, medians, runs: runs[lib] };
    }
  }
  if (RUN_LOCAL && process.env.BENCH_DIAG !== "0") diagnostics = await diagnose();
  if (RUN_SYNC) {
    const page = await openPage();
    chromiumVersion = await page.evaluate(() => navigator.userAgent.match(/Chrome\/([\d.]+)/)?.[1] || "unknown");
    await page.close();
    sync = await runSync({ context, base, root, diag: process.env.BENCH_DIAG !== "0", categorize });
  }
} finally {
  await context.close();
  server.close();
  await rm(profile, { recursive: true, force: true });
}

// The libraries must have returned the same results.
const checks = {};
for (const lib of RUN_LOCAL ? LIBS : []) for (const run of results[lib].runs) for (const [k, v] of Object.entries(run.check)) (checks[k] ||= new Set()).add(String(v));
const mismatched = Object.entries(checks).filter(([k, s]) => s.size > 1 && k !== "live").map(([k, s]) => `${k}: ${[...s].join(" / ")}`);
if (mismatched.length) console.warn(`bench: WARNING results differ between libraries: ${mismatched.join("; ")}`);

const seconds = Math.round((Date.now() - started) / 1000);
const out = {
  date: new Date().toISOString(),
  machine: machine(chromiumVersion),
  reps: REPS,
  seconds,
  sizes: await sizes({ strict: false }),
  medians: Object.fromEntries(LIBS.filter((l) => results[l]).map((l) => [l, results[l].medians])),
  runs: Object.fromEntries(LIBS.filter((l) => results[l]).map((l) => [l, results[l].runs])),
  checksAgree: mismatched.length === 0,
  diagnostics,
  sync,
};
if (!RUN_LOCAL && previous) {
  // Keep the local rows (and their date and machine) from the last run.
  for (const k of ["reps", "medians", "runs", "checksAgree", "diagnostics"]) out[k] = previous[k];
  out.localFrom = { date: previous.localFrom?.date ?? previous.date, seconds: previous.localFrom?.seconds ?? previous.seconds, machine: previous.localFrom?.machine ?? previous.machine };
}
if (!RUN_SYNC && previous) out.sync = previous.sync ?? null;
out.only = ONLY || undefined;
await mkdir(join(here, "results"), { recursive: true });
await writeFile(join(here, "results", "latest.json"), JSON.stringify(out, null, 2) + "\n");
const md = await report(out, join(here, "findings.md"));
await writeFile(join(root, "docs", "benchmarks.md"), md);
for (const part of md.split("<!-- table:start -->").slice(1)) console.log("\n" + part.split("<!-- table:end -->")[0].trim());
console.log(`\nbench: wrote bench/results/latest.json and docs/benchmarks.md (${out.seconds} s)`);

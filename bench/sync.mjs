// The sync rows of issues 7 and 13 (8, 9, 10, 11) against the real sync server (the
// release binary, started here on 127.0.0.1 with a free port and a fresh
// SQLite file per row, stopped after). Called by run.mjs with the browser
// context and the URL of the bench's static server.
import { spawn, execFileSync } from "node:child_process";
import { mkdtemp, rm, readFile } from "node:fs/promises";
import { openSync, closeSync } from "node:fs";
import { tmpdir, loadavg } from "node:os";
import { join } from "node:path";
import { makeDocs } from "./pages/docs.js";

export const SYNC = {
  samples: Number(process.env.BENCH_SYNC_SAMPLES || 200),
  warmup: 5,
  pollMs: 100,
  gapMs: 100, // writes are spaced by a random pause of 0 to gapMs
  initialDocs: Number(process.env.BENCH_INITIAL_DOCS || 100_000),
  // Row 9's second, smaller initial sync (issue 13: wasm memory must not
  // grow with the dataset), against a server seeded with this many.
  initialSmallDocs: Number(process.env.BENCH_INITIAL_SMALL_DOCS || 10_000),
  // Row 9 runs the initial sync and its Dexie reference this many times,
  // alternating, and compares the fastest of each (one run of each moved
  // the ratio by 0.1 between runs of the bench on this 2-core machine).
  initialReps: Math.max(1, Number(process.env.BENCH_INITIAL_REPS || 2)),
  // Row 11: inserts queued while offline, then pushed; `batch` calls of pushPer.
  pushDocs: Number(process.env.BENCH_PUSH_DOCS || 10_000),
  pushPer: 1000,
  seedBatch: 1000,
  load: {
    clients: Number(process.env.BENCH_LOAD_CLIENTS || 1000),
    pushers: Number(process.env.BENCH_LOAD_PUSHERS || 16),
    batch: Number(process.env.BENCH_LOAD_BATCH || 10),
    seconds: Number(process.env.BENCH_LOAD_SECONDS || 30),
    via: process.env.BENCH_LOAD_VIA || "http",
  },
};
// Row 10 raises these server limits (defaults: 256 connections per
// namespace, 20 pushes per second per client).
export const LOAD_FLAGS = ["--max-connections-per-namespace", "2000", "--pushes-per-second", "100000"];

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const pct = (xs, p) => {
  const s = xs.filter((x) => x !== null && x !== undefined && !Number.isNaN(x)).sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] : null;
};
const loadavg1 = () => Math.round(loadavg()[0] * 100) / 100;
const round = (x, d = 2) => (x === null || x === undefined ? null : Math.round(x * 10 ** d) / 10 ** d);

/** Builds the release server and the load generator (opt-level 3, its own profile dir). */
export function build(root) {
  const run = (args) => execFileSync("cargo", args, { cwd: root, stdio: ["ignore", "inherit", "inherit"] });
  run(["build", "--release", "-q", "-p", "syncstore-server"]);
  // The workspace's release profile is tuned for the wasm module (opt-level
  // "z", panic = "abort"); the load generator should not be the bottleneck,
  // so it gets a profile of its own, defined here, in target/loadgen/.
  run([
    "build", "-q", "-p", "syncstore-loadgen", "--profile", "loadgen",
    "--config", 'profile.loadgen.inherits="release"', "--config", "profile.loadgen.opt-level=3",
    "--config", 'profile.loadgen.lto="thin"', "--config", 'profile.loadgen.panic="unwind"',
  ]);
  return {
    server: join(root, "target", "release", "syncstore-server"),
    loadgen: join(root, "target", "loadgen", "syncstore-loadgen"),
  };
}

/** Starts the server on a free port with a fresh database; resolves once it listens. */
export async function startServer(bin, flags = []) {
  const dir = await mkdtemp(join(tmpdir(), "syncstore-bench-server-"));
  const log = join(dir, "server.log");
  const fd = openSync(log, "w");
  const args = ["--listen", "127.0.0.1:0", "--db", join(dir, "bench.sqlite"), "--dev", ...flags];
  const proc = spawn(bin, args, { stdio: ["ignore", "pipe", fd], env: { ...process.env, RUST_LOG: process.env.BENCH_SERVER_LOG || "info" } });
  closeSync(fd);
  let out = "";
  const url = await new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error("the sync server did not start within 20 s")), 20000);
    proc.stdout.on("data", (b) => {
      out += b;
      const m = out.match(/listening on (http:\/\/\S+)/);
      if (m) {
        clearTimeout(timer);
        ok(m[1]);
      }
    });
    proc.on("exit", async (code) => {
      clearTimeout(timer);
      fail(new Error(`the sync server exited (${code}): ${await readFile(log, "utf8").catch(() => "")}`));
    });
  });
  const exited = new Promise((r) => proc.once("exit", r));
  return {
    url,
    pid: proc.pid,
    args: ["syncstore-server", ...args].join(" "),
    async stop() {
      proc.kill("SIGTERM");
      if ((await Promise.race([exited.then(() => true), sleep(10000)])) !== true) proc.kill("SIGKILL");
      await exited;
      await rm(dir, { recursive: true, force: true });
    },
  };
}

async function openSyncPage(context, url) {
  const page = await context.newPage();
  page.errors = [];
  page.on("pageerror", (e) => page.errors.push(e.message));
  page.on("console", (m) => m.type() === "error" && page.errors.push(m.text()));
  await page.goto(url);
  await page.waitForFunction(() => window.syncReady === true, null, { timeout: 20000 });
  return page;
}

// One latency series: writes on `writer`, waits for `reader`'s subscription.
async function series(writer, reader, k0) {
  const rows = [];
  for (let i = -SYNC.warmup; i < SYNC.samples; i++) {
    await sleep(Math.random() * SYNC.gapMs);
    const w = await writer.evaluate((k) => window.syncBench.insert(k), k0 + i + SYNC.warmup);
    const r = await reader.evaluate((id) => window.syncBench.seenAt(id), w.id);
    let p = null;
    for (let t = 0; t < 100 && !p; t++) {
      p = await writer.evaluate((id) => window.syncBench.pushOf(id), w.id);
      if (!p) await sleep(20);
    }
    if (i >= 0) {
      rows.push({
        total: r.t - w.t0,
        commit: w.committed - w.t0,
        toPush: p ? p.start - w.committed : null,
        push: p ? p.end - p.start : null,
        toArrive: p && r.arrived ? r.arrived - p.start : null,
        apply: r.arrived ? r.t - r.arrived : null,
        via: r.via,
      });
    }
    if (i % 20 === 0) {
      await writer.evaluate(() => window.syncBench.trimLog());
      await reader.evaluate(() => window.syncBench.trimLog());
    }
  }
  const col = (k) => rows.map((x) => x[k]);
  return {
    samples: rows.length,
    p50: pct(col("total"), 50),
    p95: pct(col("total"), 95),
    p99: pct(col("total"), 99),
    max: pct(col("total"), 100),
    // Medians of the parts (ms): local commit on the writer; commit to the
    // push request; the push round trip; push start to the change reaching
    // the reader (frame or pull answer); that to the subscription callback.
    parts: Object.fromEntries(["commit", "toPush", "push", "toArrive", "apply"].map((k) => [k, round(pct(col(k), 50))])),
    via: [...new Set(col("via"))],
    all: col("total").map((x) => round(x)),
  };
}

async function latency(context, base, bin, log) {
  const server = await startServer(bin);
  const stamp = Date.now();
  const loadavgBefore = loadavg1();
  const pages = [];
  try {
    const url = `${base}sync.html?server=${encodeURIComponent(server.url)}&trace=1`;
    const A = await openSyncPage(context, url);
    const B = await openSyncPage(context, url);
    pages.push(A, B);
    const visibility = [await A.evaluate(() => window.syncBench.visibility()), await B.evaluate(() => window.syncBench.visibility())];
    await A.evaluate((n) => window.syncBench.open(n, true), `sync-a-${stamp}`);
    await B.evaluate((n) => window.syncBench.open(n, true), `sync-b-${stamp}`);
    await A.evaluate(() => window.syncBench.waitConnection("websocket"));
    await B.evaluate(() => window.syncBench.waitConnection("websocket"));
    await B.evaluate(() => window.syncBench.subscribeNewest());
    log("websocket");
    const websocket = await series(A, B, 200_000);

    // Polling: a third store (another database) without a socket.
    const C = await openSyncPage(context, url);
    pages.push(C);
    await C.evaluate(([n, p]) => window.syncBench.open(n, false, p), [`sync-c-${stamp}`, SYNC.pollMs]);
    await C.evaluate(() => window.syncBench.waitConnection("polling"));
    await C.evaluate((n) => window.syncBench.waitCount(n), SYNC.samples + SYNC.warmup);
    await C.evaluate(() => window.syncBench.subscribeNewest());
    log("polling");
    const polling = await series(A, C, 300_000);
    for (const p of pages) if (p.errors.length) throw new Error(`sync page errors: ${p.errors.join("; ")}`);
    return { websocket, polling: { ...polling, pollMs: SYNC.pollMs }, visibility, loadavgBefore, server: server.args };
  } finally {
    for (const p of pages) {
      await p.evaluate(() => window.syncBench.close()).catch(() => {});
      await p.close().catch(() => {});
    }
    await server.stop();
  }
}

/** Seeds `n` bench documents over POST /v1/push, `SYNC.seedBatch` per request. */
async function seed(url, n) {
  const t = Date.now();
  for (let from = 0, b = 0; from < n; from += SYNC.seedBatch, b++) {
    const docs = makeDocs(Math.min(SYNC.seedBatch, n - from), from);
    const body = JSON.stringify({
      clientId: `bench-seed-${b}`,
      mutations: docs.map((doc, i) => ({ mid: i + 1, coll: "todos", op: "insert", id: doc.id, doc, base: null })),
    });
    for (let attempt = 0; ; attempt++) {
      const res = await fetch(`${url}/v1/push`, {
        method: "POST",
        headers: { authorization: "Bearer dev-token", "content-type": "application/json" },
        body,
      });
      if (res.status === 429 && attempt < 20) {
        await sleep(1000 * Number(res.headers.get("retry-after") || 1));
        continue;
      }
      if (res.status !== 200) throw new Error(`seed push: HTTP ${res.status}: ${await res.text()}`);
      const r = await res.json();
      const bad = r.results.filter((x) => x.status !== "applied");
      if (bad.length) throw new Error(`seed push: ${bad.length} not applied: ${JSON.stringify(bad[0])}`);
      break;
    }
  }
  return (Date.now() - t) / 1000;
}

// What raw IndexedDB needs to write the same documents in pages of 1,000
// (no wasm, no network): the floor for row 9 on this machine.
async function rawFloor(context, base, server) {
  const page = await openSyncPage(context, `${base}sync.html?server=${encodeURIComponent(server.url)}`);
  try {
    return await page.evaluate(([n, c]) => window.syncBench.rawFloor(n, c), [`floor-${Date.now()}`, SYNC.initialDocs]);
  } finally {
    await page.close().catch(() => {});
  }
}

// One initial sync in a fresh page and database; peak JS heap from CDP
// Performance.getMetrics, sampled every 50 ms; a CPU profile if asked.
async function initialOnce(context, base, server, { websocket, trace, count, profile, categorize, docs = SYNC.initialDocs }) {
  const url = `${base}sync.html?server=${encodeURIComponent(server.url)}${trace ? "&trace=1" : ""}${count ? "&count=1" : ""}`;
  const page = await openSyncPage(context, url);
  try {
    const cdp = await context.newCDPSession(page);
    await cdp.send("Performance.enable");
    await cdp.send("HeapProfiler.collectGarbage");
    const heap = async () => {
      const { metrics } = await cdp.send("Performance.getMetrics");
      return metrics.find((m) => m.name === "JSHeapUsedSize")?.value ?? 0;
    };
    const before = await heap();
    let peak = before, done = false;
    const sampler = (async () => {
      while (!done) {
        peak = Math.max(peak, await heap().catch(() => 0));
        await sleep(50);
      }
    })();
    if (profile) {
      await cdp.send("Profiler.enable");
      await cdp.send("Profiler.setSamplingInterval", { interval: 500 });
      await cdp.send("Profiler.start");
    }
    const name = `initial-${websocket ? "ws" : "http"}-${Date.now()}`;
    let r;
    try {
      r = await page.evaluate(([n, e, w]) => window.syncBench.initialSync(n, e, w), [name, docs, websocket]);
    } finally {
      done = true;
      await sampler;
    }
    if (profile) r.profile = categorize((await cdp.send("Profiler.stop")).profile);
    r.heapBeforeBytes = before;
    r.heapPeakBytes = peak;
    r.websocket = websocket;
    r.docs = docs;
    if (page.errors.length) throw new Error(`initial sync page errors: ${page.errors.join("; ")}`);
    await page.evaluate(() => window.syncBench.close());
    await page.evaluate((n) => new Promise((ok) => {
      const q = indexedDB.deleteDatabase(n);
      q.onsuccess = q.onerror = q.onblocked = () => ok();
    }), name);
    return r;
  } finally {
    await page.close().catch(() => {});
  }
}

// Row 9's reference (issue 13): Dexie `bulkPut` of the same documents in
// pages of 1,000, with the indexes the row's store declares, in a fresh
// page of the same type.
async function dexieReference(context, base, server) {
  const page = await openSyncPage(context, `${base}sync.html?server=${encodeURIComponent(server.url)}`);
  try {
    const r = await page.evaluate(([n, c]) => window.syncBench.dexieBulkPut(n, c), [`dexie-${Date.now()}`, SYNC.initialDocs]);
    if (r.stored !== r.docs) throw new Error(`Dexie reference: ${r.stored} of ${r.docs} documents stored`);
    if (page.errors.length) throw new Error(`Dexie reference page errors: ${page.errors.join("; ")}`);
    return r;
  } finally {
    await page.close().catch(() => {});
  }
}

// Row 9's smaller initial sync (issue 13): its own server, seeded with
// SYNC.initialSmallDocs, the same timed run in a fresh page (a fresh wasm
// instance, so its memory is this sync's alone).
async function initialSmall(context, base, bin, log) {
  const server = await startServer(bin);
  try {
    log(`seeding ${SYNC.initialSmallDocs.toLocaleString("en-US")} documents (the smaller initial sync)`);
    const seedSeconds = await seed(server.url, SYNC.initialSmallDocs);
    log(`seeded in ${seedSeconds.toFixed(1)} s; initial sync of ${SYNC.initialSmallDocs.toLocaleString("en-US")}`);
    const run = await initialOnce(context, base, server, { websocket: true, docs: SYNC.initialSmallDocs });
    return { docs: SYNC.initialSmallDocs, seedSeconds, run };
  } finally {
    await server.stop();
  }
}

async function initial(context, base, bin, log, { diag, categorize }) {
  const server = await startServer(bin);
  let out;
  try {
    log(`seeding ${SYNC.initialDocs.toLocaleString("en-US")} documents`);
    const seedSeconds = await seed(server.url, SYNC.initialDocs);
    log(`seeded in ${seedSeconds.toFixed(1)} s; initial sync`);
    out = { docs: SYNC.initialDocs, seedSeconds, loadavgBefore: loadavg1(), server: server.args };
    out.runs = [];
    out.dexieRuns = [];
    for (let r = 0; r < SYNC.initialReps; r++) {
      const run = await initialOnce(context, base, server, { websocket: true });
      out.runs.push(run);
      log(`initial sync ${r + 1}/${SYNC.initialReps}: ${(run.countMs / 1000).toFixed(2)} s, wasm memory ${(run.wasmAfterCountBytes / 1e6).toFixed(1)} MB; Dexie bulkPut of the same documents (the reference)`);
      const dx = await dexieReference(context, base, server);
      out.dexieRuns.push(dx);
      log(`Dexie bulkPut ${r + 1}/${SYNC.initialReps}: ${(dx.ms / 1000).toFixed(2)} s`);
    }
    // The fastest of each; the wasm memory is the largest any run reached.
    out.run = out.runs.reduce((a, b) => (b.countMs < a.countMs ? b : a));
    out.dexie = out.dexieRuns.reduce((a, b) => (b.ms < a.ms ? b : a));
    out.wasmPeakBytes = Math.max(...out.runs.map((x) => x.wasmAfterCountBytes ?? x.wasmMemoryBytes));
    log("raw IndexedDB writing the same documents (the floor)");
    out.rawFloor = await rawFloor(context, base, server);
    if (diag) {
      // Where the time goes: the same sync traced (pull and frame times) and
      // profiled; and once without the WebSocket (HTTP pulls only).
      log("initial sync, traced and profiled");
      out.profiled = await initialOnce(context, base, server, { websocket: true, trace: true, profile: true, categorize });
      log("initial sync without WebSocket, traced, IndexedDB calls counted");
      out.httpOnly = await initialOnce(context, base, server, { websocket: false, trace: true, count: true });
    }
  } finally {
    await server.stop();
  }
  out.small = await initialSmall(context, base, bin, log);
  log(`initial sync of ${out.small.docs.toLocaleString("en-US")}: ${(out.small.run.countMs / 1000).toFixed(2)} s, wasm memory ${(out.small.run.wasmAfterCountBytes / 1e6).toFixed(1)} MB`);
  return out;
}

// Every document of the server's namespace (token dev-token), by pulling
// from the start in pages of 5,000 (the server's largest).
async function serverIds(url) {
  const ids = new Set();
  let cursor = null;
  for (let i = 0; i < 10_000; i++) {
    const q = new URLSearchParams({ limit: "5000" });
    if (cursor) q.set("cursor", cursor);
    const res = await fetch(`${url}/v1/pull?${q}`, { headers: { authorization: "Bearer dev-token" } });
    if (res.status !== 200) throw new Error(`pull: HTTP ${res.status}: ${await res.text()}`);
    const r = await res.json();
    for (const c of r.changes) if (c.op !== "delete" && c.doc) ids.add(`${c.coll}/${c.id}`);
    cursor = r.cursor;
    if (!r.more) return ids;
  }
  throw new Error("pull: no end after 10,000 pages");
}

// Row 11 (issue 13): SYNC.pushDocs inserts queued while the store is cut
// off, then pushed end to end; the server is asked afterwards whether all
// of them arrived. The server's push rate limit (20 pushes/s per client by
// default) is raised, as for the sync-on column: the row measures the
// client, not the server's abuse limit.
async function pushQueued(context, base, bin, log) {
  const flags = ["--pushes-per-second", "100000"];
  const server = await startServer(bin, flags);
  const page = await openSyncPage(context, `${base}sync.html?server=${encodeURIComponent(server.url)}&pushes=1`);
  const name = `push-${Date.now()}`;
  try {
    const loadavgBefore = loadavg1();
    log(`row 11: ${SYNC.pushDocs.toLocaleString("en-US")} inserts queued offline (batches of ${SYNC.pushPer}), then goOnline()`);
    const r = await page.evaluate(([n, c, p]) => window.syncBench.pushQueued(n, c, p), [name, SYNC.pushDocs, SYNC.pushPer]);
    if (page.errors.length) throw new Error(`row 11 page errors: ${page.errors.join("; ")}`);
    const ids = await serverIds(server.url);
    const expected = makeDocs(SYNC.pushDocs).map((d) => `todos/${d.id}`);
    r.onServer = expected.filter((k) => ids.has(k)).length;
    r.serverDocs = ids.size;
    r.loadavgBefore = loadavgBefore;
    r.server = server.args;
    r.serverFlagsRaised = flags.join(" ");
    log(`row 11: ${(r.ms / 1000).toFixed(2)} s, ${Math.round(r.mutationsPerSec)} mutations/s; ${r.onServer} of ${SYNC.pushDocs} on the server`);
    if (r.onServer !== SYNC.pushDocs) throw new Error(`row 11: only ${r.onServer} of ${SYNC.pushDocs} inserts reached the server`);
    return r;
  } finally {
    await page.evaluate(() => window.syncBench.close()).catch(() => {});
    await page.evaluate((n) => new Promise((ok) => {
      const q = indexedDB.deleteDatabase(n);
      q.onsuccess = q.onerror = q.onblocked = () => ok();
    }), name).catch(() => {});
    await page.close().catch(() => {});
    await server.stop();
  }
}

async function loadgenRun(bin, loadgen, log, { clients, seconds }) {
  const server = await startServer(bin, LOAD_FLAGS);
  try {
    const L = SYNC.load;
    const args = [
      "--url", server.url, "--clients", String(clients), "--pushers", String(L.pushers),
      "--batch", String(L.batch), "--seconds", String(seconds), "--push-via", L.via,
      "--server-pid", String(server.pid),
    ];
    log(`syncstore-loadgen ${args.join(" ")}`);
    const loadavg = loadavg1();
    const proc = spawn(loadgen, args, { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    proc.stdout.on("data", (b) => (out += b));
    const code = await new Promise((r) => proc.on("exit", r));
    const line = out.trim().split("\n").pop();
    let r;
    try {
      r = JSON.parse(line);
    } catch {
      throw new Error(`syncstore-loadgen failed (exit ${code}): ${out}`);
    }
    if (code !== 0) r.exitCode = code;
    return { ...r, loadavgBefore: loadavg, server: server.args };
  } finally {
    await server.stop();
  }
}

// Row 10, and the same pushers with 10 clients (what the commits alone cost).
async function load(bin, loadgen, log) {
  log(`row 10: server limits raised: ${LOAD_FLAGS.join(" ")} (defaults 256 connections per namespace, 20 pushes/s per client)`);
  const main = await loadgenRun(bin, loadgen, log, { clients: SYNC.load.clients, seconds: SYNC.load.seconds });
  const reference = await loadgenRun(bin, loadgen, log, { clients: Math.max(SYNC.load.pushers, 10), seconds: 10 });
  return { ...main, reference, serverFlagsRaised: LOAD_FLAGS.join(" ") };
}

// Row 10 on PostgreSQL (issue 17): bench/pg.sh runs the same load generator
// against SQLite (1 node), then PostgreSQL with 1 and 3 nodes on one
// throwaway cluster, and prints one JSON line per setup.
function loadOnPostgres(root, log) {
  log("row 10 on PostgreSQL: bash bench/pg.sh (SQLite 1 node, PostgreSQL 1 and 3 nodes)");
  const out = execFileSync("bash", [join(root, "bench", "pg.sh")], {
    cwd: root,
    encoding: "utf8",
    env: { ...process.env, BENCH_LOAD_CLIENTS: String(SYNC.load.clients) },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const runs = out.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));
  return { runs, loadSeconds: Number(process.env.BENCH_LOAD_SECONDS || 20) };
}

/** Rows 8-11 (BENCH_SYNC_ROWS=8,9,10,11 picks some, for quicker iterations). */
export async function runSync({ context, base, root, diag, categorize }) {
  const rows = (process.env.BENCH_SYNC_ROWS || "8,9,10,11").split(",").map(Number);
  const log = (m) => console.log(`bench: sync: ${m}`);
  const t0 = Date.now();
  const ulimit = Number(execFileSync("bash", ["-c", "ulimit -n"], { encoding: "utf8" }).trim());
  if (ulimit < SYNC.load.clients + 200) throw new Error(`ulimit -n is ${ulimit}: too low for ${SYNC.load.clients} clients (run through bench/run.sh, which raises it)`);
  log("building the release server and the load generator");
  const bins = build(root);
  const stamp = (t) => `${((Date.now() - t) / 1000).toFixed(1)} s`;
  const out = {};
  const row = async (n, key, f) => {
    if (!rows.includes(n)) return;
    const t = Date.now();
    out[key] = await f();
    out[key].seconds = Math.round((Date.now() - t) / 1000);
    log(`row ${n} done in ${stamp(t)}`);
  };
  await row(8, "latency", () => {
    log(`row 8: ${SYNC.samples} writes on A, seen on B (WebSocket, then polling every ${SYNC.pollMs} ms)`);
    return latency(context, base, bins.server, log);
  });
  await row(9, "initial", () => initial(context, base, bins.server, log, { diag, categorize }));
  await row(10, "load", () => load(bins.server, bins.loadgen, log));
  await row(10, "pg", async () => loadOnPostgres(root, log));
  await row(11, "push", () => pushQueued(context, base, bins.server, log));
  return {
    ...out,
    ulimit,
    seconds: Math.round((Date.now() - t0) / 1000),
  };
}

// Row 6 diagnostics (not part of make bench): 1,000 awaited updates of
// documents a 10,000-document batch inserted (and, with sync on, pushed and
// settled), one page per library and repetition, in headless Chromium:
// the loop's total, per-write latency percentiles, writes over 5 ms, and every
// IndexedDB transaction started during the loop by mode and scope (count,
// summed lifetime, longest). Expects pkg/ (make pkg) and the release server
// (cargo build --release -p syncstore-server).
//   node bench/row6-diag.mjs        REPS (3), N (1000), LIBS (syncstore,syncstoreSync),
//                                   PROF=1: each page's CPU profile by where the time goes,
//                                   WORKLOAD=insert: row 2 instead (N awaited inserts
//                                   into an empty store); WORKLOAD=get: row 4 (N awaited
//                                   gets of the batch's documents); WAIT (300): ms between
//                                   the settled batch and the loop; OFFLINE=1: sync on
//                                   goes offline (goOffline) before the loop; GC=1: a full
//                                   garbage collection (--expose-gc) right before the loop
// bench/findings-sync.md, session 12, has what it showed.
import { chromium } from "playwright-core";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { serve } from "./serve.mjs";
import { startServer, LOAD_FLAGS } from "./sync.mjs";
import { ARGS, categorize } from "./chromium.mjs";
const root = join(fileURLToPath(new URL(".", import.meta.url)), "..");
const REPS = Number(process.env.REPS || 3);
const N = Number(process.env.N || 1000);
const srv = await serve();
const base = `http://127.0.0.1:${srv.address().port}/`;
const tokens = Array.from({ length: 40 }, (_, i) => ["--token", `bench-${i}:bench${i}`]).flat();
const sync = await startServer(join(root, "target", "release", "syncstore-server"), [...LOAD_FLAGS, ...tokens]);
const ctx = await chromium.launchPersistentContext(await mkdtemp(join(tmpdir(), "r6-")), {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium", headless: true, args: process.env.GC ? [...ARGS, "--js-flags=--expose-gc"] : ARGS,
});
await ctx.addInitScript(() => {
  const log = (window.__tx = []);
  const orig = IDBDatabase.prototype.transaction;
  IDBDatabase.prototype.transaction = function (names, mode, opts) {
    const tx = orig.call(this, names, mode, opts);
    const e = { t0: performance.now(), mode: mode || "readonly", s: [].concat(names).join(","), t1: null };
    log.push(e);
    const end = () => (e.t1 = performance.now());
    tx.addEventListener("complete", end); tx.addEventListener("abort", end); tx.addEventListener("error", end);
    return tx;
  };
});
const out = [];
for (let r = 0; r < REPS; r++) {
  for (const lib of (process.env.LIBS || "syncstore,syncstoreSync").split(",")) {
    const page = await ctx.newPage();
    page.on("pageerror", (e) => console.log("pageerror", e.message));
    const q = lib === "syncstoreSync" ? `?server=${encodeURIComponent(sync.url)}&tokenBase=${2 * r}` : "";
    await page.goto(base + q);
    await page.waitForFunction(() => window.benchReady === true);
    let cdp = null;
    if (process.env.PROF) {
      cdp = await ctx.newCDPSession(page);
      await cdp.send("Profiler.enable");
      await cdp.send("Profiler.setSamplingInterval", { interval: 200 });
      await page.exposeFunction("__profStart", () => cdp.send("Profiler.start"));
      await page.exposeFunction("__profStop", async () => { globalThis.__prof = (await cdp.send("Profiler.stop")).profile; });
    }
    const res = await page.evaluate(async ([lib, r, N, WORKLOAD, WAIT, OFFLINE]) => {
      const INSERTS = WORKLOAD === "insert";
      const A = (await import(`./lib-${lib}.js`)).default;
      const { makeDocs } = await import("./docs.js");
      const docs = makeDocs(10000);
      const db = await A.open(`r6-${lib}-${Date.now()}-${r}`);
      if (!INSERTS) await db.insertMany(docs);
      await db.settle?.();
      const fresh = makeDocs(N, 10000);
      if (OFFLINE && lib === "syncstoreSync") db.store.goOffline();
      await new Promise((x) => setTimeout(x, WAIT));
      let s = 1; const rnd = () => ((s = (s * 16807) % 2147483647) / 2147483647);
      const ids = Array.from({ length: N }, () => docs[(rnd() * 10000) | 0].id);
      window.__tx.length = 0;
      const lat = [];
      if (window.gc) { window.gc(); await new Promise((x) => setTimeout(x, 100)); }
      if (window.__profStart) await window.__profStart();
      const T0 = performance.now();
      for (let i = 0; i < N; i++) {
        const t = performance.now();
        if (INSERTS) await db.insert(fresh[i]);
        else if (WORKLOAD === "get") await db.get(ids[i]);
        else await db.update(ids[i], { done: i % 2 === 0, priority: (i * 3) % 5 });
        lat.push(performance.now() - t);
      }
      const T1 = performance.now();
      if (window.__profStop) await window.__profStop();
      if (OFFLINE && lib === "syncstoreSync") db.store.goOnline();
      const txs = window.__tx.filter((e) => e.t0 < T1).map((e) => ({ ...e, d: (e.t1 ?? T1) - e.t0 }));
      await db.settle?.();
      await db.destroy();
      const sorted = [...lat].sort((a, b) => a - b);
      const p = (q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
      const kinds = {};
      for (const e of txs) {
        const k = `${e.mode} ${e.s}`;
        const o = (kinds[k] ||= { n: 0, ms: 0, max: 0 });
        o.n++; o.ms += e.d; o.max = Math.max(o.max, e.d);
      }
      return { total: T1 - T0, p50: p(0.5), p90: p(0.9), p99: p(0.99), max: sorted.at(-1), over5: lat.filter((x) => x > 5).length, sumOver5: lat.filter((x) => x > 5).reduce((a, b) => a + b, 0), kinds };
    }, [lib, r, N, process.env.WORKLOAD || "update", Number(process.env.WAIT || 300), !!process.env.OFFLINE]);
    if (globalThis.__prof) {
      console.log("   profile:", JSON.stringify(categorize(globalThis.__prof)));
      globalThis.__prof = null;
    }
    await page.close();
    console.log(lib, r, JSON.stringify({ ...res, kinds: undefined }));
    for (const [k, v] of Object.entries(res.kinds)) console.log("   ", k.padEnd(70), v.n, v.ms.toFixed(0), v.max.toFixed(1));
  }
}
await ctx.close(); await sync.stop(); srv.close();

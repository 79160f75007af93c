// The local workloads of issue 7, run in the page against one library.
// Every adapter exposes the same calls; the workloads time them with
// performance.now(). One page load per library; each repetition uses a
// fresh database that is deleted afterwards.
import { makeDocs, rng } from "./docs.js";
export { makeDocs };

const N_BULK = 10_000;
const N_SINGLE = 1_000;
const N_LIVE = 200;
const Q_RANGE_RUNS = 10;
const Q_TOP_RUNS = 100;

const now = () => performance.now();
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
};
const tick = () => new Promise((r) => setTimeout(r, 0));

// One repetition of workloads 1-7; returns times in ms and checks
// (result sizes) that run.mjs compares across libraries.
async function rep(lib, r) {
  const A = (await import(`./lib-${lib}.js`)).default;
  const out = {}, check = {};
  const docs = makeDocs(N_BULK);
  const extra = makeDocs(N_SINGLE, N_BULK);
  const tag = `${lib}-${Date.now()}-${r}`;

  // 2. 1,000 inserts, one call each, awaited (own fresh database, so that
  // the reads below see exactly 10,000 documents).
  let db = await A.open(`bench-${tag}-single`);
  await tick();
  let t = now();
  for (const d of extra) await db.insert(d);
  out.insertEach = now() - t;
  await db.settle?.();
  check.insertEach = (await db.all()).length;
  await db.destroy();

  db = await A.open(`bench-${tag}`);
  await tick();
  // 1. 10,000 inserts in one call.
  t = now();
  await db.insertMany(docs);
  out.insertBulk = now() - t;
  await db.settle?.();
  await tick();

  // 3. read all.
  t = now();
  const all = await db.all();
  out.readAll = now() - t;
  check.readAll = all.length + ":" + all[0].id + ":" + all[all.length - 1].id;

  // 4. 1,000 gets by id (awaited each).
  const ids = [];
  const pick = rng(99);
  for (let i = 0; i < N_SINGLE; i++) ids.push(docs[(pick() * N_BULK) | 0].id);
  let found = 0;
  t = now();
  for (const id of ids) if ((await db.get(id)) !== undefined) found++;
  out.getById = now() - t;
  check.getById = found;

  // 5. indexed range query priority >= 3 (ordered by priority, then id),
  // and the newest 20 by createdAt; per query, averaged over several runs.
  let rows;
  t = now();
  for (let i = 0; i < Q_RANGE_RUNS; i++) rows = await db.priorityAtLeast(3);
  out.queryRange = (now() - t) / Q_RANGE_RUNS;
  check.queryRange = rows.length + ":" + rows[0].id + ":" + rows[rows.length - 1].id;
  t = now();
  for (let i = 0; i < Q_TOP_RUNS; i++) rows = await db.newest(20);
  out.queryNewest = (now() - t) / Q_TOP_RUNS;
  check.queryNewest = rows.length + ":" + rows[0].id + ":" + rows[19].id;

  // 6. 1,000 single-document updates, awaited each.
  t = now();
  for (let i = 0; i < N_SINGLE; i++) await db.update(ids[i], { done: i % 2 === 0, priority: (i * 3) % 5 });
  out.updateEach = now() - t;
  await db.settle?.();
  check.updateEach = (await db.get(ids[N_SINGLE - 1])).priority;

  // 7. live query: newest 20 by createdAt; 200 single inserts, each timed
  // from the write call to the callback whose rows show it.
  if (A.live) {
    const lat = await live(db, A);
    out.liveP50 = pct(lat, 50);
    out.liveP95 = pct(lat, 95);
    out.liveP99 = pct(lat, 99);
    check.live = lat.length;
  }
  await db.destroy();
  return { out, check };
}

async function live(db, A) {
  let waiting = null; // { id, t0, resolve }
  let first;
  const ready = new Promise((r) => (first = r));
  const stop = db.subscribeNewest(20, (rows) => {
    first();
    if (waiting && rows.length && rows[0].id === waiting.id) {
      const w = waiting;
      waiting = null;
      w.resolve(now() - w.t0);
    }
  });
  await ready;
  const fresh = makeDocs(N_LIVE, 2 * N_BULK);
  const lat = [];
  for (const d of fresh) {
    const seen = new Promise((resolve) => (waiting = { id: d.id, t0: now(), resolve }));
    const wrote = db.insert(d);
    lat.push(await seen);
    await wrote;
    await tick();
  }
  stop();
  return lat;
}

window.runBench = async (lib, reps) => {
  const runs = [];
  for (let r = 0; r < reps; r++) runs.push(await rep(lib, r));
  const keys = Object.keys(runs[0].out);
  const medians = Object.fromEntries(keys.map((k) => [k, median(runs.map((x) => x.out[k]))]));
  return { lib, medians, runs };
};
// One repetition of every workload (run.mjs runs each in a fresh page,
// the libraries interleaved).
window.runRep = (lib, r) => rep(lib, r);
window.benchReady = true;

// Diagnostics for the findings: one workload at a time, so that run.mjs
// can wrap it in a CPU profile, and JS-side spans of syncstore's pipeline.
let diagDb = null, diagLib = null;
window.diag = {
  async prep(lib, kind) {
    diagLib = (await import(`./lib-${lib}.js`)).default;
    diagDb = await diagLib.open(`diag-${lib}-${kind}-${Date.now()}`);
    if (kind !== "insertBulk" && kind !== "insertEach") await diagDb.insertMany(makeDocs(N_BULK));
    await tick();
  },
  async run(kind) {
    const t = now();
    if (kind === "insertBulk") await diagDb.insertMany(makeDocs(N_BULK));
    else if (kind === "insertEach") for (const d of makeDocs(N_SINGLE, N_BULK)) await diagDb.insert(d);
    else if (kind === "updateEach") for (let i = 0; i < N_SINGLE; i++) await diagDb.update("t" + String(i * 7).padStart(6, "0"), { done: true, priority: i % 5 });
    else if (kind === "readAll") for (let i = 0; i < 5; i++) await diagDb.all();
    else if (kind === "live") return await live(diagDb, diagLib);
    return now() - t;
  },
  async finish() {
    await diagDb.destroy();
  },
  // What syncstore's write path does in JS for 10,000 inserts, reproduced
  // on the same strings: the ops to JSON text (glue.js encodeJson), and the
  // JSON.parse of the records and outbox texts that Rust builds (idb.rs
  // to_js). Also the read path: joining record texts and one JSON.parse.
  spans() {
    const docs = makeDocs(N_BULK);
    const ops = docs.map((doc) => ({ op: "insert", coll: "todos", doc }));
    const span = (f, n = 5) => {
      const ts = [];
      let r;
      for (let i = 0; i < n; i++) {
        const t = now();
        r = f();
        ts.push(now() - t);
      }
      return [median(ts), r];
    };
    const [stringifyOps, opsText] = span(() => JSON.stringify(ops));
    const rec = (d) => ({ id: d.id, d: JSON.stringify(d), v: null, x646f6e65: [1, +d.done], x7072696f72697479: [2, d.priority], x637265617465644174: [2, d.createdAt] });
    const recordsText = JSON.stringify(docs.map(rec));
    const outboxText = JSON.stringify(docs.map((doc) => ({ coll: "todos", op: "insert", id: doc.id, doc, base: null })));
    const [parseRecords] = span(() => JSON.parse(recordsText));
    const [parseOutbox] = span(() => JSON.parse(outboxText));
    const recs = JSON.parse(recordsText);
    const [joinAndParse] = span(() => JSON.parse("[" + recs.map((r) => r.d).join(",") + "]"));
    return {
      docBytes: Math.round(docs.reduce((n, d) => n + JSON.stringify(d).length, 0) / docs.length),
      opsTextBytes: opsText.length,
      recordsTextBytes: recordsText.length,
      outboxTextBytes: outboxText.length,
      stringifyOps, parseRecords, parseOutbox, joinAndParse,
    };
  },
};

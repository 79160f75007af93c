// The sync rows of issues 7 and 13 (8, 9 with its Dexie reference, 11), one
// store per page: run.mjs opens pages (one database each) against the real
// sync server, whose URL comes in the `server` query parameter, and drives
// them through window.syncBench.
//
// Times are `performance.timeOrigin + performance.now()`, comparable across
// the pages of one browser. The page also wraps `fetch` and `WebSocket`
// (before the store exists) to timestamp the store's pushes, pulls and
// incoming frames: the breakdown in docs/benchmarks.md comes from these.
import init, { SyncStore } from "/pkg/syncstore.js";
import { makeDocs } from "./docs.js";

const wasm = await init();
const SERVER = new URLSearchParams(location.search).get("server");
const abs = () => performance.timeOrigin + performance.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Network log (`?trace=1`): pushes, pulls and WebSocket frames with their
// times; with `keepBodies` also their text, to find which one carried a
// document. Off for the timed initial sync (row 9).
const TRACE = new URLSearchParams(location.search).get("trace") === "1";
const net = { pushes: [], pulls: [], frames: [], idb: {}, keepBodies: false, pushStatus: {} };
if (TRACE) {
  const realFetch = window.fetch.bind(window);
  window.fetch = async (url, init) => {
    const u = String(url);
    const kind = u.includes("/v1/push") ? "pushes" : u.includes("/v1/pull") ? "pulls" : null;
    const start = abs();
    const res = await realFetch(url, init);
    if (kind === "pushes") net.pushStatus[res.status] = (net.pushStatus[res.status] || 0) + 1;
    if (!kind) return res;
    // Read the body here to time its arrival, then hand the store a copy.
    const text = await res.text();
    const e = { start, end: abs(), bytes: text.length };
    if (net.keepBodies) e.text = kind === "pulls" ? text : String(init?.body ?? "");
    net[kind].push(e);
    return new Response(text, { status: res.status, statusText: res.statusText, headers: res.headers });
  };
  class TimedWebSocket extends WebSocket {
    set onmessage(f) {
      super.onmessage = f
        ? (ev) => {
            const data = typeof ev.data === "string" ? ev.data : "";
            const e = { at: abs(), bytes: data.length, changes: data.startsWith('{"type":"changes"') };
            if (net.keepBodies) e.text = data;
            net.frames.push(e);
            return f(ev);
          }
        : null;
    }
    get onmessage() {
      return super.onmessage;
    }
  }
  window.WebSocket = TimedWebSocket;
}
// `?pushes=1` (without trace): only the HTTP status of each push request,
// counted, with no copy of any body (row 11: were pushes throttled?).
else if (new URLSearchParams(location.search).get("pushes") === "1") {
  const realFetch = window.fetch.bind(window);
  window.fetch = async (url, init) => {
    const res = await realFetch(url, init);
    if (String(url).includes("/v1/push")) net.pushStatus[res.status] = (net.pushStatus[res.status] || 0) + 1;
    return res;
  };
}
// `?count=1`: IndexedDB requests by store, and transactions by mode (a
// wrapper on every call: not in the timed or profiled runs).
if (new URLSearchParams(location.search).get("count") === "1") {
  for (const m of ["put", "add", "delete", "clear"]) {
    const real = IDBObjectStore.prototype[m];
    IDBObjectStore.prototype[m] = function (...args) {
      const k = `${this.name}.${m}`;
      net.idb[k] = (net.idb[k] || 0) + 1;
      return real.apply(this, args);
    };
  }
  const realTx = IDBDatabase.prototype.transaction;
  IDBDatabase.prototype.transaction = function (stores, mode, ...rest) {
    const k = `transaction ${mode || "readonly"}`;
    net.idb[k] = (net.idb[k] || 0) + 1;
    return realTx.call(this, stores, mode, ...rest);
  };
}

let db = null;
let stopSub = null;
const seen = new Map(); // id -> time the subscription first showed it
const waiting = new Map(); // id -> resolve

// The collection rows 8, 9 and 11 declare; row 9's Dexie reference
// declares the same indexes (`id` is the key).
const INDEXES = ["createdAt"];

function open(name, websocket, pollMs) {
  return SyncStore.open({
    name,
    collections: { todos: { indexes: INDEXES } },
    sync: { url: SERVER, token: "dev-token", websocket, pollMs },
  });
}

async function until(what, f, ms, every = 20) {
  const end = performance.now() + ms;
  for (;;) {
    if (await f()) return;
    if (performance.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(every);
  }
}

window.syncBench = {
  visibility: () => ({ state: document.visibilityState, focus: document.hasFocus() }),
  async open(name, websocket = true, pollMs = 5000) {
    net.keepBodies = true;
    db = await open(name, websocket, pollMs);
  },
  status: () => db.status(),
  async waitConnection(kind, ms = 20000) {
    await until(`connection ${kind}`, () => db.status().connection === kind, ms);
  },
  count: () => db.count("todos"),
  async waitCount(n, ms = 60000) {
    await until(`${n} documents`, async () => (await db.count("todos")) >= n, ms, 50);
  },
  // Newest 20 by createdAt; records when each id first shows.
  async subscribeNewest() {
    let first;
    const ready = new Promise((r) => (first = r));
    stopSub = db.subscribe("todos", { orderBy: "createdAt", desc: true, limit: 20 }, (rows) => {
      const t = abs();
      for (const r of rows) {
        if (seen.has(r.id)) continue;
        seen.set(r.id, t);
        waiting.get(r.id)?.(t);
        waiting.delete(r.id);
      }
      first();
    });
    await ready;
  },
  // Inserts bench document number k; resolves with its id, the time of the
  // call and the time the local commit resolved.
  async insert(k) {
    const [doc] = makeDocs(1, k);
    const t0 = abs();
    await db.insert("todos", doc);
    return { id: doc.id, t0, committed: abs() };
  },
  // When the subscription showed `id` (waits for it), plus where the
  // change came in: the WebSocket frame or the pull answer that carried it.
  async seenAt(id, ms = 20000) {
    let t = seen.get(id);
    if (t === undefined) {
      t = await Promise.race([
        new Promise((r) => waiting.set(id, r)),
        sleep(ms).then(() => {
          throw new Error(`${id} did not show within ${ms} ms`);
        }),
      ]);
    }
    const needle = `"${id}"`;
    const frame = net.frames.find((f) => f.text?.includes(needle));
    const pull = net.pulls.find((p) => p.text?.includes(needle));
    return { t, arrived: frame?.at ?? pull?.end ?? null, via: frame ? "websocket" : pull ? "pull" : null };
  },
  // The push request that carried `id`, as seen by the writing page.
  pushOf(id) {
    const needle = `"${id}"`;
    const p = net.pushes.find((x) => x.text?.includes(needle));
    return p ? { start: p.start, end: p.end } : null;
  },
  // Forget the logged bodies (keeps memory flat over 200 samples).
  trimLog() {
    for (const k of ["pushes", "pulls", "frames"]) net[k] = net[k].slice(-50);
  },
  close() {
    stopSub?.();
    db?.close();
  },
  // Row 9: open an empty store and wait until all `expect` documents are
  // queryable. Times are ms from the open call.
  async initialSync(name, expect, websocket = true, pollMs = 5000) {
    net.pulls.length = net.frames.length = 0;
    net.idb = {};
    net.keepBodies = false;
    const t0 = abs();
    db = await open(name, websocket, pollMs);
    const opened = abs() - t0;
    // Done when `count("todos")` reaches `expect`. The count is asked when
    // a `status` event says the sync from the start has ended or has
    // received every document (an event follows every committed page: what
    // an app's progress bar draws from), and once a second besides; not
    // every 50 ms: a count walks the whole store in IndexedDB's backend,
    // and 35 counts during 100,000 writes made those writes 20-27% slower
    // in a throwaway page (bench/findings-sync.md, session 11), a cost the
    // Dexie reference does not pay.
    let polls = 0;
    let woken = 0;
    let wake = () => {};
    const off = db.on("status", (s) => {
      if (!s.progress || s.progress.received >= expect) wake(true);
    });
    const end = abs() + 600000;
    try {
      for (;;) {
        polls++;
        if ((await db.count("todos")) >= expect) break;
        if (abs() > end) throw new Error(`timed out after 600000 ms waiting for ${expect} documents`);
        if (await new Promise((r) => ((wake = r), setTimeout(() => r(false), 1000)))) woken++;
      }
    } finally {
      off();
    }
    const counted = abs() - t0;
    // wasm memory never shrinks: its size here is the peak of the sync
    // itself; `wasmMemoryBytes` below also covers the query of every row.
    const wasmAfterCount = wasm.memory.buffer.byteLength;
    const rows = await db.query("todos");
    const queried = abs() - t0;
    const pulls = net.pulls.map((p) => ({ start: p.start - t0, end: p.end - t0, bytes: p.bytes }));
    const frames = net.frames.filter((f) => f.changes);
    const netMs = pulls.reduce((n, p) => n + (p.end - p.start), 0);
    return {
      openMs: opened,
      countMs: counted,
      queryMs: queried,
      rows: rows.length,
      countPolls: polls,
      countsWoken: woken,
      pulls: pulls.length,
      pullBytes: pulls.reduce((n, p) => n + p.bytes, 0),
      pullWaitMs: netMs,
      firstPullEndMs: pulls[0]?.end ?? null,
      lastPullEndMs: pulls.at(-1)?.end ?? null,
      wsChangeFrames: frames.length,
      wsChangeBytes: frames.reduce((n, f) => n + f.bytes, 0),
      wsFirstMs: frames[0] ? frames[0].at - t0 : null,
      wsLastMs: frames.length ? frames.at(-1).at - t0 : null,
      wasmAfterCountBytes: wasmAfterCount,
      wasmMemoryBytes: wasm.memory.buffer.byteLength,
      connection: db.status().connection,
      traced: TRACE,
      idb: Object.keys(net.idb).length ? net.idb : undefined,
    };
  },
  wasmMemoryBytes: () => wasm.memory.buffer.byteLength,
  // Row 9's floor: raw IndexedDB (no wasm, no network, no sync) writing the
  // same `n` documents as plain objects, with the same two indexes, in
  // transactions of `per` (the pull page size). Ms of the writes alone.
  async rawFloor(name, n, per = 1000) {
    const docs = makeDocs(n);
    const db = await new Promise((resolve, reject) => {
      const req = indexedDB.open(name, 1);
      req.onupgradeneeded = () => {
        const s = req.result.createObjectStore("todos", { keyPath: "id" });
        s.createIndex("priority", "priority");
        s.createIndex("createdAt", "createdAt");
      };
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
    const t0 = abs();
    for (let i = 0; i < n; i += per) {
      const tx = db.transaction("todos", "readwrite");
      const s = tx.objectStore("todos");
      for (let j = i; j < Math.min(n, i + per); j++) s.put(docs[j]);
      await new Promise((resolve, reject) => {
        tx.oncomplete = resolve;
        tx.onabort = () => reject(tx.error);
      });
    }
    const ms = abs() - t0;
    db.close();
    await new Promise((ok) => {
      const q = indexedDB.deleteDatabase(name);
      q.onsuccess = q.onerror = q.onblocked = () => ok();
    });
    return { ms, per, docs: n };
  },
};
// Row 9's reference (issue 13): what an app without syncstore pays to
// store the same `n` documents: Dexie `bulkPut` in pages of `per` (the
// pull page size), one call (one transaction) per page, with the indexes
// row 9's store declares. Ms of the writes alone (documents made before).
window.syncBench.dexieBulkPut = async function (name, n, per = 1000) {
  const { default: Dexie } = await import("/dexie/dexie.mjs");
  const docs = makeDocs(n);
  const dx = new Dexie(name);
  dx.version(1).stores({ todos: ["id", ...INDEXES].join(", ") });
  await dx.open();
  const t0 = abs();
  for (let i = 0; i < n; i += per) await dx.todos.bulkPut(docs.slice(i, i + per));
  const ms = abs() - t0;
  const stored = await dx.todos.count();
  dx.close();
  await Dexie.delete(name);
  return { ms, per, docs: n, stored, schema: ["id", ...INDEXES].join(", "), dexie: Dexie.semVer };
};

// Row 11 (issue 13): open a syncing store, cut it off (`goOffline()`),
// queue `n` inserts (`batch` calls of `per`), then `goOnline()` and time
// until the outbox is empty: `status().pending` is 0 (a `status` event or
// a 20 ms poll) and `pendingCount()` (the stored outbox) agrees.
window.syncBench.pushQueued = async function (name, n, per = 1000, from = 0) {
  net.pushStatus = {};
  db = await open(name, true);
  db.goOffline();
  const docs = makeDocs(n, from);
  const tw = abs();
  for (let i = 0; i < n; i += per) await db.batch(docs.slice(i, i + per).map((doc) => ({ op: "insert", coll: "todos", doc })));
  const writeMs = abs() - tw;
  // The engine may take the queued writes in while offline; wait (up to
  // 30 s) until it counts them, so that `pending` 0 below means pushed.
  let ingested = true;
  await until(`${n} pending`, () => db.status().pending >= n, 30000, 20).catch(() => (ingested = false));
  const before = { pending: db.status().pending, pendingCount: await db.pendingCount(), connection: db.status().connection };
  let wake = () => {};
  const off = db.on("status", (s) => s.pending === 0 && wake());
  const t0 = abs();
  db.goOnline();
  let statusZeroMs = null;
  for (;;) {
    if (db.status().pending === 0) {
      statusZeroMs ??= abs() - t0;
      if ((await db.pendingCount()) === 0) break;
    }
    if (abs() - t0 > 600000) throw new Error(`push of ${n} queued inserts: not done after 600 s: ${JSON.stringify(db.status())}`);
    await Promise.race([new Promise((r) => (wake = r)), sleep(20)]);
  }
  const ms = abs() - t0;
  off();
  return {
    docs: n, per, batches: Math.ceil(n / per), writeMs, ms, statusZeroMs,
    mutationsPerSec: n / (ms / 1000),
    ingestedOffline: ingested, before,
    pushStatus: net.pushStatus,
    lastPushAt: db.status().lastPushAt,
    wasmMemoryBytes: wasm.memory.buffer.byteLength,
    connection: db.status().connection,
  };
};
window.syncReady = true;

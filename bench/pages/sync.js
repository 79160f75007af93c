// The sync rows of issue 7 (8 and 9), one store per page: run.mjs opens
// two pages (two databases) against the real sync server, whose URL comes
// in the `server` query parameter, and drives them through window.syncBench.
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
const net = { pushes: [], pulls: [], frames: [], idb: {}, keepBodies: false };
if (TRACE) {
  const realFetch = window.fetch.bind(window);
  window.fetch = async (url, init) => {
    const u = String(url);
    const kind = u.includes("/v1/push") ? "pushes" : u.includes("/v1/pull") ? "pulls" : null;
    const start = abs();
    const res = await realFetch(url, init);
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

function open(name, websocket, pollMs) {
  return SyncStore.open({
    name,
    collections: { todos: { indexes: ["createdAt"] } },
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
    let polls = 0;
    await until(`${expect} documents`, async () => (polls++, (await db.count("todos")) >= expect), 600000, 50);
    const counted = abs() - t0;
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
      pulls: pulls.length,
      pullBytes: pulls.reduce((n, p) => n + p.bytes, 0),
      pullWaitMs: netMs,
      firstPullEndMs: pulls[0]?.end ?? null,
      lastPullEndMs: pulls.at(-1)?.end ?? null,
      wsChangeFrames: frames.length,
      wsChangeBytes: frames.reduce((n, f) => n + f.bytes, 0),
      wsFirstMs: frames[0] ? frames[0].at - t0 : null,
      wsLastMs: frames.length ? frames.at(-1).at - t0 : null,
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
window.syncReady = true;

// The small JavaScript side of the browser module: what is cheaper or only
// possible in JS. Rust drives; these helpers run in one call per batch.

/** The error every syncstore API rejects with. `code` is stable. */
export class SyncStoreError extends Error {
  constructor(code, message, retryable = false, cause) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = "SyncStoreError";
    this.code = code;
    this.retryable = retryable;
  }
}

export function errorClass() {
  return SyncStoreError;
}

export function makeError(code, message, retryable) {
  return new SyncStoreError(code, message, retryable);
}

// DOMException names from IndexedDB mapped to stable codes.
const DOM_CODES = {
  QuotaExceededError: ["QUOTA_EXCEEDED", false],
  ConstraintError: ["ALREADY_EXISTS", false],
  AbortError: ["TRANSACTION_ABORTED", true],
  TransactionInactiveError: ["TRANSACTION_ABORTED", true],
  InvalidStateError: ["STORAGE_CLOSED", true],
  VersionError: ["STORAGE_VERSION", true],
  UnknownError: ["STORAGE", true],
  DataError: ["STORAGE", false],
};

/** Wraps anything IndexedDB threw into a SyncStoreError. */
export function storageError(e, what) {
  if (e instanceof SyncStoreError) return e;
  const name = (e && e.name) || "Error";
  const [code, retryable] = DOM_CODES[name] || ["STORAGE", true];
  const msg = `${what}: ${name}${e && e.message ? ": " + e.message : ""}`;
  return new SyncStoreError(code, msg, retryable, e);
}

function describe(v) {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  if (typeof v === "object") {
    const c = Object.getPrototypeOf(v);
    return (c && c.constructor && c.constructor.name) || "object";
  }
  return typeof v;
}

function invalid(code, path, why) {
  return new SyncStoreError(code, `${path}: ${why}`, false);
}

/** True for a `Date` (also of another realm, e.g. an iframe). */
function isDate(v) {
  return v instanceof Date || Object.prototype.toString.call(v) === "[object Date]";
}

// Set by `check` when the value holds a Date: only then does `encodeJson`
// pay for a replacer (the hot path of documents without Dates stays a
// plain `JSON.stringify`).
let sawDate = false;

// Throws unless `v` is plain JSON data or a valid Date: no functions,
// symbols, BigInt, undefined in arrays, non-finite numbers, other class
// instances, cycles, or objects with the reserved key "$date".
function check(v, path, stack, code) {
  switch (typeof v) {
    case "string":
    case "boolean":
      return;
    case "number":
      if (!Number.isFinite(v)) throw invalid(code, path, `${v} is not a JSON number`);
      return;
    case "object":
      break;
    default:
      throw invalid(code, path, `a ${typeof v} is not JSON`);
  }
  if (v === null) return;
  if (stack.includes(v)) throw invalid(code, path, "cyclic reference");
  stack.push(v);
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) {
      if (v[i] === undefined) throw invalid(code, `${path}[${i}]`, "undefined is not JSON");
      check(v[i], `${path}[${i}]`, stack, code);
    }
  } else {
    const proto = Object.getPrototypeOf(v);
    if (proto !== Object.prototype && proto !== null) {
      if (isDate(v)) {
        if (!Number.isFinite(v.getTime())) throw invalid(code, path, "an invalid Date (its time is NaN)");
        sawDate = true;
        stack.pop();
        return;
      }
      throw invalid(code, path, `a ${describe(v)} is not a plain object (only Dates are stored besides JSON)`);
    }
    if (v.$date !== undefined) {
      throw invalid(code, `${path}.$date`, 'the key "$date" is reserved (a Date is stored as {"$date": ms})');
    }
    for (const k in v) {
      const x = v[k];
      if (x !== undefined) check(x, `${path}.${k}`, stack, code);
    }
  }
  stack.pop();
}

/**
 * Validates a JSON value and returns its text: the one crossing into Rust.
 * `path` names the argument in error messages.
 */
export function encodeJson(value, path, code) {
  if (value !== null && typeof value === "object" && isDate(value)) {
    throw invalid(code, path, "a Date alone is not a document or a query");
  }
  sawDate = false;
  check(value, path, [], code);
  return sawDate ? JSON.stringify(value, dateReplacer) : JSON.stringify(value);
}

// `this[key]` is the value before its `toJSON` (a Date's gives a string).
function dateReplacer(key, value) {
  const v = this[key];
  return v instanceof Date || (v !== null && typeof v === "object" && isDate(v)) ? { $date: v.getTime() } : value;
}

// `{"$date": ms}` (that key alone, a number) back to a Date.
function dateReviver(key, v) {
  if (v === null || typeof v !== "object" || typeof v.$date !== "number") return v;
  for (const k in v) if (k !== "$date") return v;
  return new Date(v.$date);
}

/**
 * JSON text of documents to JS values, with Dates revived. The reviver
 * runs only on text that holds "$date": a scan for a rare first character
 * costs ~0.1-1% of the parse (not `"$date"`, whose `"` is everywhere in
 * JSON: that scan cost ~10%), and the reviver ~3x the parse.
 */
function parse(text) {
  return text.includes("$date") ? JSON.parse(text, dateReviver) : JSON.parse(text);
}

/** A JSON-like value as the app sees it: dates as Dates (conflict entries). */
export function revive(value) {
  return value === undefined ? undefined : parse(JSON.stringify(value));
}

/** A record's document text; one with an unresolved conflict gets `"$conflict": true`. */
function docText(r) {
  return r.c ? `${r.d.slice(0, -1)},"$conflict":true}` : r.d;
}

/** The JSON text of the documents of `records` (all, or those at `picks`). */
export function docsText(records, picks) {
  let s = "[";
  const n = picks ? picks.length : records.length;
  for (let i = 0; i < n; i++) {
    if (i) s += ",";
    s += docText(records[picks ? picks[i] : i]);
  }
  return s + "]";
}

/** True if the record may be pending: a settle marker in `_server` may say otherwise. */
function mayBePending(r) {
  return !r.c && (!!r.s || r.v == null);
}

/**
 * `docsText` with each document's sync state (`{ syncState: true }`, src/syncstate.rs),
 * read from its record: `"$sync":"conflict"` (marker `c`), `"pending"`
 * (marker `s`: outbox entries over a server version; or no server version
 * yet: a queued insert) unless its `_server` entry in `server` is a settle
 * marker, nothing once settled. The entries are read only for the rows
 * whose record says pending, in a readonly transaction of `db` opened only
 * if there is any. Resolves with the text.
 */
export async function syncDocsText(db, server, coll, records, picks) {
  const n = picks ? picks.length : records.length;
  const rows = [];
  for (let i = 0; i < n; i++) rows.push(records[picks ? picks[i] : i]);
  const maybe = rows.filter(mayBePending);
  const settled = new Set();
  if (maybe.length) {
    const store = db.transaction(server, "readonly").objectStore(server);
    const got = await requests(maybe.map((r) => store.get([coll, r.id])));
    got.forEach((e, i) => e && e.m && settled.add(maybe[i].id));
  }
  let s = "[";
  rows.forEach((r, i) => {
    if (i) s += ",";
    const state = r.c ? "conflict" : mayBePending(r) && !settled.has(r.id) ? "pending" : null;
    const t = docText(r);
    s += state ? `${t.slice(0, -1)},"$sync":"${state}"}` : t;
  });
  return s + "]";
}

export function parseDoc(record) {
  return record === undefined ? undefined : parse(docText(record));
}

/** `parseDoc` of each record: `undefined` where a record is missing. */
export function parseDocs(records) {
  return records.map(parseDoc);
}

/** The records of several lists, each id once, in the order first seen. */
export function unionRecords(lists) {
  const seen = new Set();
  const out = [];
  for (const list of lists) {
    for (const r of list) {
      if (seen.has(r.id)) continue;
      seen.add(r.id);
      out.push(r);
    }
  }
  return out;
}

/** Resolves with the request's result; rejects with its error. */
export function request(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    // The error also reaches the transaction, which aborts.
    req.onerror = () => reject(req.error);
  });
}

/**
 * Resolves with the results of several requests of one transaction. A
 * transaction runs its requests in order, so the last one's success means
 * every one is done: one promise for the lot, not one per request (a sync
 * step reads two requests per document of a page).
 */
export function requests(reqs) {
  if (reqs.length === 0) return Promise.resolve([]);
  return new Promise((resolve, reject) => {
    for (const r of reqs) r.onerror = () => reject(r.error);
    reqs[reqs.length - 1].onsuccess = () => resolve(reqs.map((r) => r.result));
  });
}

/** Resolves when the transaction commits; rejects with why it aborted. */
export function done(tx) {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onabort = () => reject(tx.error || new DOMException("transaction aborted", "AbortError"));
  });
}

/**
 * The server state of documents for the sync engine (src/sync/mod.rs `load`),
 * read in `tx`: for each `[coll, id]` of `keys`, its `_server` entry (a
 * tombstone, or the server's copy of a document with local edits) if there
 * is one; for a settle marker there (`m`), the record's document at the
 * marker's version; else its record if that has a version and no marker
 * `s` (it is the server's document). Resolves with JSON text: per key,
 * `[state | null, copied]` with `state` = `{doc, version, gen}`; documents
 * cross as the records' text, unparsed. A key `[coll, id, 1]` names a
 * document whose record cannot be the server's (written since the last
 * step: src/sync/step.rs `step`): only `_server` is read for it.
 */
export async function loadStates(tx, server, keys) {
  const store = storesOf(tx);
  const n = keys.length;
  const fresh = keys.map((k) => k[2] === 1);
  // Which keys can hold anything at all: for a collection's many keys, one
  // `getAllKeys` over their id range (and one over `_server`'s) first,
  // bounded in count; then `get` only the keys that exist. A new store's
  // first sync then reads nothing but those probes. Few keys, or a range
  // crowded with other records, fall back to a `get` per key.
  const maybeCopy = new Array(n).fill(true);
  const maybeRecord = fresh.map((f) => !f);
  const groups = new Map();
  keys.forEach(([coll, id], i) => {
    let g = groups.get(coll);
    if (!g) groups.set(coll, (g = []));
    g.push(i);
  });
  const probes = [];
  for (const [coll, idx] of groups) {
    if (idx.length < PROBE_MIN) continue;
    const records = idx.some((i) => !fresh[i]);
    const { limit, recs, copies } = probeIds(store, server, coll, idx.map((i) => keys[i][1]), records);
    probes.push([coll, idx, limit, recs, copies]);
  }
  if (probes.length) {
    await requests(probes.flatMap((p) => (p[3] ? [p[3], p[4]] : [p[4]])));
    for (const [, idx, limit, recs, copies] of probes) {
      if (recs && recs.result.length < limit) {
        const have = new Set(recs.result);
        for (const i of idx) maybeRecord[i] = maybeRecord[i] && have.has(keys[i][1]);
      }
      if (copies.result.length < limit) {
        const have = new Set(copies.result.map((k) => k[1]));
        for (const i of idx) maybeCopy[i] = have.has(keys[i][1]);
      }
    }
  }
  const reqs = [];
  const at = keys.map(([coll, id], i) => {
    const c = maybeCopy[i] ? reqs.push(store(server).get([coll, id])) - 1 : -1;
    const r = maybeRecord[i] ? reqs.push(store(coll).get(id)) - 1 : -1;
    return [c, r];
  });
  const got = await requests(reqs);
  // A settle marker names the record's document: read the records that
  // were not (a fresh key's, which an edit has replaced the marker of as a
  // rule: plan.rs `settle_marker`).
  const late = [];
  for (let i = 0; i < n; i++) {
    const c = at[i][0] >= 0 ? got[at[i][0]] : undefined;
    // (A step without the collections in its scope reads none.)
    if (c && c.m && at[i][1] < 0 && tx.objectStoreNames.contains(keys[i][0])) late.push(i);
  }
  if (late.length) {
    const more = await requests(late.map((i) => store(keys[i][0]).get(keys[i][1])));
    late.forEach((i, k) => (at[i][1] = got.push(more[k]) - 1));
  }
  let s = "[";
  for (let i = 0; i < n; i++) {
    const c = at[i][0] >= 0 ? got[at[i][0]] : undefined;
    const r = at[i][1] >= 0 ? got[at[i][1]] : undefined;
    let state = "null";
    if (c && c.m) {
      if (r) state = `{"doc":${r.d},"version":${c.version},"gen":${c.g || 0}}`;
    } else if (c) {
      // The document as text (`d`), or, written before, as `doc`.
      const doc = c.d !== undefined ? c.d : JSON.stringify(c.doc ?? null);
      state = `{"doc":${doc},"version":${c.version},"gen":${c.g || 0}}`;
    } else if (r && typeof r.v === "number" && !r.s) {
      state = `{"doc":${r.d},"version":${r.v},"gen":${r.g || 0}}`;
    }
    s += `${i ? "," : ""}[${state},${c ? "true" : "false"}]`;
  }
  return s + "]";
}

/**
 * Probes which of a collection's `ids` can exist: one `getAllKeys` over
 * their id range in the collection (if `records`) and one over `server`'s,
 * each bounded to `limit` keys (a range crowded with other keys is not
 * read whole). For `loadStates` and `applyIfAbsent`.
 */
function probeIds(store, server, coll, ids, records) {
  let lo = ids[0];
  let hi = lo;
  for (const id of ids) {
    if (before(id, lo)) lo = id;
    if (before(hi, id)) hi = id;
  }
  const limit = PROBE_FACTOR * ids.length + 1;
  return {
    limit,
    recs: records ? store(coll).getAllKeys(IDBKeyRange.bound(lo, hi), limit) : null,
    copies: store(server).getAllKeys(IDBKeyRange.bound([coll, lo], [coll, hi]), limit),
  };
}

/**
 * IndexedDB's key order for ids: strings compare by UTF-16 code units, as
 * JS `<` does (`indexedDB.cmp` per id cost 129 ms of an initial sync of
 * 100,000 documents, a call into the browser each).
 */
function before(a, b) {
  return typeof a === "string" && typeof b === "string" ? a < b : indexedDB.cmp(a, b) < 0;
}

/** `loadStates` probes a collection's ids when it has at least this many. */
const PROBE_MIN = 32;
/** A probe that finds more keys than this many per id gives up (per-key gets). */
const PROBE_FACTOR = 4;

/**
 * The sweep that completes a resync (src/sync/step.rs, the planner's sweep): in each store of
 * `colls`, deletes the records that stand for a server document (a
 * version) of another generation than `gen`, except those of `keep`
 * (`"coll\u0000id"`: documents with outbox entries); in `server`, every
 * entry of another generation. Pushes `[coll, id]` of each deleted record
 * to `out` as it goes (complete when the transaction commits).
 */
function sweep(store, o, out) {
  const keep = new Set(o.keep);
  const visit = (s, f, then) => {
    const req = s.openCursor();
    req.onsuccess = () => {
      const c = req.result;
      if (!c) return then && then();
      f(c);
      c.continue();
    };
  };
  // `_server` first: a settle marker (`m`) gives its record's generation,
  // whatever the record's own `g` says (plan.rs `settle_marker`).
  const marks = new Map();
  visit(
    store(o.server),
    (c) => {
      const e = c.value;
      if (e.m) marks.set(`${e.coll}\u0000${e.id}`, e.g || 0);
      if ((e.g || 0) !== o.gen) c.delete();
    },
    () => {
      for (const coll of o.colls) {
        visit(store(coll), (c) => {
          const r = c.value;
          const key = `${coll}\u0000${r.id}`;
          const mark = marks.get(key);
          const gen = mark !== undefined ? mark : typeof r.v === "number" ? r.g || 0 : o.gen;
          if (gen !== o.gen && !keep.has(key)) {
            c.delete();
            out.push([coll, r.id]);
          }
        });
      }
    },
  );
}

/** `name => tx.objectStore(name)`, each store looked up once. */
function storesOf(tx) {
  const stores = new Map();
  return (name) => {
    let s = stores.get(name);
    if (!s) {
      s = tx.objectStore(name);
      stores.set(name, s);
    }
    return s;
  };
}

/**
 * Issues the requests of one write (src/store.rs `PlanJs`) in `tx` without
 * awaiting each: `plan.w` holds `[kind, coll, id]` per write (0 add, 1 put,
 * 2 delete), `plan.r` the records of the adds and puts in order, `plan.o`
 * the outbox entries, `plan.c` the server copies. Returns the add requests.
 */
export function writePlan(tx, plan) {
  const store = storesOf(tx);
  const adds = [];
  let next = 0;
  for (const [kind, coll, id] of plan.w) {
    const s = store(coll);
    if (kind === 2) s.delete(id);
    else if (kind === 0) adds.push(s.add(plan.r[next++]));
    else s.put(plan.r[next++]);
  }
  // The outbox request's key, once committed, is the first entry's mid.
  if (plan.o.length) adds.outbox = addEntries(store(plan.outbox), plan.o);
  if (plan.c.length) {
    const server = store(plan.server);
    for (const c of plan.c) server.put(c);
  }
  return adds;
}

/** After `writePlan`'s transaction committed: the mid of its first outbox entry (-1: none). */
export function firstMid(adds) {
  return adds.outbox ? adds.outbox.result : -1;
}

/**
 * Adds the outbox entries of one write: a single one as its own record; n
 * of them as one record `{mid, n, batch}` (one request and one structured
 * clone instead of n), whose entries have the mids `mid` ... `mid + n - 1`
 * (src/sync/step.rs `outbox_entries`). Once its key is known, a put and a delete
 * of `mid + n - 1` move the key generator past those mids.
 */
function addEntries(store, entries) {
  const n = entries.length;
  if (n === 1) return store.add(entries[0]);
  const req = store.add({ n, batch: entries });
  req.onsuccess = () => {
    const last = req.result + n - 1;
    store.put({ mid: last });
    store.delete(last);
  };
  return req;
}

/** Resolves with the number of mutations in `_outbox` (a batch record holds `n`). */
export function countOutbox(store) {
  return new Promise((resolve, reject) => {
    const all = store.count();
    let extra = 0;
    const batches = store.index("n").openKeyCursor();
    batches.onerror = () => reject(batches.error);
    batches.onsuccess = () => {
      const c = batches.result;
      if (!c) return resolve(all.result + extra);
      extra += c.key - 1;
      c.continue();
    };
  });
}

/** The first request that failed with a constraint error, or -1. */
export function failedRequest(reqs) {
  for (let i = 0; i < reqs.length; i++) {
    try {
      const e = reqs[i].error;
      if (e && e.name === "ConstraintError") return i;
    } catch (_) {
      /* still pending */
    }
  }
  return -1;
}

/**
 * Reads values in `direction` from `source` (store or index) over `range`,
 * skipping `offset` and stopping after `limit` (or -1 for no limit).
 */
export function cursorValues(source, range, direction, offset, limit) {
  return new Promise((resolve, reject) => {
    const out = [];
    const req = source.openCursor(range, direction);
    let skipped = offset === 0;
    req.onerror = () => reject(req.error);
    req.onsuccess = () => {
      const c = req.result;
      if (!c) return resolve(out);
      if (!skipped) {
        skipped = true;
        c.advance(offset);
        return;
      }
      out.push(c.value);
      if (limit >= 0 && out.length >= limit) return resolve(out);
      c.continue();
    };
  });
}

/**
 * Reads values like `cursorValues`, in one request where the browser has
 * IndexedDB 3's `getAll({query, count, direction})` (Chromium; detected on
 * each call by its companion `getAllRecords`); `undefined` where it has
 * not, or where the cursor costs less: `advance` skips an offset without
 * cloning its values, so only an offset up to the limit (or 100) is read.
 * Both give the same rows: the spec orders `prev` by index key, then
 * primary key, both descending, exactly the reverse of `next`.
 */
export function getAllOrdered(source, range, direction, offset, limit) {
  if (!("getAllRecords" in source)) return undefined;
  if (offset > 0 && (limit < 0 || offset > Math.max(limit, 100))) return undefined;
  if (limit === 0) return Promise.resolve([]); // a count of 0 means no limit
  const count = limit < 0 ? undefined : Math.min(offset + limit, 2 ** 32 - 1);
  const req = source.getAll({ query: range === undefined ? null : range, count, direction });
  return offset ? request(req).then((rows) => rows.slice(offset)) : request(req);
}

function openReq(name, version) {
  return version === undefined ? indexedDB.open(name) : indexedDB.open(name, version);
}

function matches(db, layout) {
  const names = db.objectStoreNames;
  for (const s of layout) if (!names.contains(s.name)) return false;
  const tx = db.transaction(layout.map((s) => s.name), "readonly");
  for (const s of layout) {
    const have = tx.objectStore(s.name).indexNames;
    if (have.length !== s.indexes.length) return false;
    for (const ix of s.indexes) if (!have.contains(ix.name)) return false;
  }
  return true;
}

/**
 * Opens database `name` with the object stores and indexes in `layout`
 * (`[{name, keyPath, autoIncrement, indexes: [{name, keyPath}], rekey}]`),
 * upgrading it in place when a store or index is missing. Records of a
 * store whose indexes changed are re-keyed by `rekey(storeName, records)`,
 * which returns them with their index keys recomputed. Data is never
 * dropped: stores that are no longer declared are kept.
 */
export async function openDb(name, layout, rekey, onLost) {
  for (let attempt = 0; attempt < 5; attempt++) {
    let db = await request(openReq(name));
    if (matches(db, layout)) return watch(db, onLost);
    const version = db.version + 1;
    db.close();
    const req = openReq(name, version);
    req.onupgradeneeded = () => upgrade(req.result, req.transaction, layout, rekey);
    req.onblocked = () => {};
    try {
      db = await request(req);
    } catch (e) {
      // Another tab upgraded first: look again.
      if (e && e.name === "VersionError") continue;
      throw e;
    }
    return watch(db, onLost);
  }
  throw new SyncStoreError("STORAGE_VERSION", `could not upgrade database ${name}`, true);
}

function watch(db, onLost) {
  // Another instance upgrades (or deletes) the database: step aside at once,
  // never block it (src/faults.rs).
  db.onversionchange = (e) => {
    db.close();
    onLost(e.newVersion === null ? "deleted" : "upgraded", e.oldVersion, e.newVersion);
  };
  // The browser closed the connection (storage cleared, Safari backgrounding).
  db.onclose = () => onLost("closed", undefined, undefined);
  return db;
}

/** `open({ persist: true })`: asks for persistent storage, not awaited (Firefox may ask the user). */
export function persist() {
  try {
    const s = typeof navigator !== "undefined" && navigator.storage;
    if (s && typeof s.persist === "function") s.persist().catch(() => {});
  } catch (_) {
    /* not offered here */
  }
}

function upgrade(db, tx, layout, rekey) {
  for (const s of layout) {
    let store;
    let changed = false;
    if (db.objectStoreNames.contains(s.name)) {
      store = tx.objectStore(s.name);
    } else {
      store = db.createObjectStore(s.name, { keyPath: s.keyPath, autoIncrement: !!s.autoIncrement });
    }
    const want = new Set(s.indexes.map((ix) => ix.name));
    for (const have of Array.from(store.indexNames)) {
      if (!want.has(have)) {
        store.deleteIndex(have);
        changed = true;
      }
    }
    for (const ix of s.indexes) {
      if (!store.indexNames.contains(ix.name)) {
        store.createIndex(ix.name, ix.keyPath, { unique: false });
        changed = true;
      }
    }
    if (changed && s.rekey) {
      const all = store.getAll();
      all.onsuccess = () => {
        const records = rekey(s.name, all.result);
        for (const r of records) store.put(r);
      };
    }
  }
}

// A MessageChannel message is a new task without setTimeout's clamping
// (up to 4 ms once timers nest), which live-query latency would pay.
const tasks = [];
let channel = null;
function runTasks() {
  const ready = tasks.splice(0);
  for (const resolve of ready) resolve();
}

/** A promise that resolves in a later task: lets same-tick writes coalesce. */
export function nextTask() {
  return new Promise((resolve) => {
    if (typeof MessageChannel !== "function") return setTimeout(resolve, 0);
    if (!channel) {
      channel = new MessageChannel();
      channel.port1.onmessage = runTasks;
    }
    tasks.push(resolve);
    if (tasks.length === 1) channel.port2.postMessage(null);
  });
}

/** Calls a listener; an exception is rethrown asynchronously, never into the store. */
export function callListener(fn, arg) {
  try {
    fn(arg);
  } catch (e) {
    setTimeout(() => {
      throw e;
    }, 0);
  }
}

/** An unsubscribe function that calls `release(id)` once. */
export function unsubscriber(release, id) {
  let live = true;
  return () => {
    if (live) {
      live = false;
      release(id);
    }
  };
}

export function randomSeed() {
  const a = new Uint32Array(4);
  crypto.getRandomValues(a);
  return Array.from(a);
}

/** JSON.parse on a JS string (Dates revived), without copying it through wasm memory. */
export function parseJson(text) {
  return parse(text);
}

/**
 * One HTTP exchange with the sync server. Never rejects: a network failure
 * is `{ status: 0, text: why }`, so Rust decides what is retryable.
 */
export async function http(method, url, token, clientId, body) {
  const headers = { authorization: `Bearer ${token}` };
  if (clientId) headers["x-client-id"] = clientId;
  if (body !== undefined) headers["content-type"] = "application/json";
  let res;
  try {
    res = await fetch(url, { method, headers, body, cache: "no-store" });
  } catch (e) {
    return { status: 0, text: String((e && e.message) || e), retryAfter: null };
  }
  let text = "";
  try {
    text = await res.text();
  } catch (e) {
    return { status: 0, text: String((e && e.message) || e), retryAfter: null };
  }
  return { status: res.status, text, retryAfter: res.headers.get("retry-after") };
}

/**
 * The sync loop's alarm clock: `wait(ms)` resolves after `ms`, or at once
 * when `wake()` is called (also if it was called since the last wait).
 */
export class Waker {
  constructor() {
    this.woken = false;
    this.resolve = null;
  }
  wake() {
    this.woken = true;
    const r = this.resolve;
    if (r) r();
  }
  wait(ms) {
    if (this.woken) {
      this.woken = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const timer = setTimeout(done, Math.max(0, Math.min(ms, 2 ** 31 - 1)));
      const self = this;
      function done() {
        clearTimeout(timer);
        self.resolve = null;
        self.woken = false;
        resolve();
      }
      this.resolve = done;
    });
  }
}

/**
 * Issues the requests of one sync step in `tx` without awaiting each:
 * `{s: store, put: record}`, `{s, del: key}`, `{s, delRange: [first, last]}`
 * (keys first to last), `{s, clear: true}` or
 * `{sweep: {colls, server, gen, keep}}` (see `sweep`). Returns the
 * `[coll, id]` of the records a sweep deletes (filled as it runs).
 */
export function applyOps(tx, ops) {
  const storeOf = storesOf(tx);
  const swept = [];
  for (const o of ops) {
    if (o.sweep !== undefined) {
      sweep(storeOf, o.sweep, swept);
      continue;
    }
    const store = storeOf(o.s);
    if (o.clear) store.clear();
    else if (o.del !== undefined) store.delete(o.del);
    else if (o.delRange !== undefined) store.delete(IDBKeyRange.bound(o.delRange[0], o.delRange[1]));
    else store.put(o.put);
  }
  return swept;
}

/**
 * A page planned ahead (src/sync/ahead.rs): issues `ops` (as `applyOps`)
 * in `tx` behind reads that check what the plan assumed: no outbox entry
 * above `c.lastMid` in `c.outbox`, the leader term in `c.meta` is
 * `c.term`, and neither a record nor a `c.server` entry for any id of
 * `c.keys` (`[[coll, [id, ...]], ...]`; one bounded `getAllKeys` over each
 * collection's id range, as `loadStates` probes). The reads run before
 * the writes (requests run in order), so the writes need not wait for
 * their answers: if one finds something, the transaction is aborted and
 * nothing is written. Resolves true if the checks held (the transaction
 * goes on to commit), false if it was aborted; a range crowded with other
 * records counts as found.
 */
export function applyIfAbsent(tx, c, ops) {
  const store = storesOf(tx);
  return new Promise((resolve, reject) => {
    let waiting = 0;
    let ok = true;
    const ask = (req, check) => {
      waiting++;
      // A failed request aborts the transaction (its default action).
      req.onerror = () => reject(req.error);
      req.onsuccess = () => {
        if (ok && !check(req.result)) ok = false;
        if (--waiting > 0) return;
        if (!ok) tx.abort();
        resolve(ok);
      };
    };
    ask(store(c.outbox).count(IDBKeyRange.lowerBound(c.lastMid, true)), (n) => n === 0);
    ask(store(c.meta).get("leader"), (r) => !!r && r.v === c.term);
    for (const [coll, ids] of c.keys) {
      if (!ids.length) continue;
      const { limit, recs, copies } = probeIds(store, c.server, coll, ids, true);
      const absent = (idOf) => (found) => {
        if (found.length >= limit) return false;
        const want = new Set(ids);
        return !found.some((k) => want.has(idOf(k)));
      };
      ask(recs, absent((k) => k));
      ask(copies, absent((k) => k[1]));
    }
    applyOps(tx, ops);
  });
}

/** Calls `cb(online)` on the browser's online/offline events; returns a stop function. */
export function watchOnline(cb) {
  if (typeof addEventListener !== "function") return () => {};
  const on = () => cb(true);
  const off = () => cb(false);
  addEventListener("online", on);
  addEventListener("offline", off);
  return () => {
    removeEventListener("online", on);
    removeEventListener("offline", off);
  };
}

export function isOnline() {
  return typeof navigator === "undefined" || navigator.onLine !== false;
}

/**
 * The sync leader lock of one database (Web Locks API): exactly one store
 * instance per database and origin holds it. `onGranted()` runs when this
 * instance gets it, `onLost()` when another instance stole it (this one
 * then queues for it again). The browser releases it when a tab closes or
 * crashes. Without Web Locks, every instance is granted at once.
 */
export class LeaderLock {
  constructor(name, onGranted, onLost) {
    this.name = `syncstore-leader:${name}`;
    this.onGranted = onGranted;
    this.onLost = onLost;
    this.closed = false;
    this.holder = null; // the token of the request that holds the lock
    this.release = null;
    this.queued = null; // the AbortController of a queued request
    this.request(false);
  }
  get held() {
    return this.holder !== null;
  }
  request(steal) {
    if (this.closed) return;
    if (typeof navigator === "undefined" || !navigator.locks) {
      if (!steal) {
        this.holder = {};
        queueMicrotask(() => this.closed || this.onGranted());
      }
      return;
    }
    if (this.queued) {
      this.queued.abort();
      this.queued = null;
    }
    const token = {};
    const opts = {};
    if (steal) {
      opts.steal = true;
    } else {
      this.queued = new AbortController();
      opts.signal = this.queued.signal;
    }
    const settled = () => {
      if (this.holder !== token) return; // an aborted queued request
      this.holder = null;
      this.release = null;
      if (!this.closed) {
        this.onLost();
        this.request(false);
      }
    };
    navigator.locks
      .request(this.name, opts, () => {
        if (!steal) this.queued = null;
        if (this.closed) return undefined;
        this.holder = token;
        const held = new Promise((resolve) => (this.release = resolve));
        this.onGranted();
        return held;
      })
      .then(settled, settled);
  }
  /** Takes the lock from a holder that stopped answering. */
  steal() {
    if (!this.held) this.request(true);
  }
  close() {
    this.closed = true;
    if (this.queued) this.queued.abort();
    if (this.release) this.release();
    this.holder = null;
  }
}

/** Calls `cb` every `ms`; returns a function that stops it. */
export function every(ms, cb) {
  const id = setInterval(cb, ms);
  return () => clearInterval(id);
}

export function isVisible() {
  return typeof document === "undefined" || document.visibilityState !== "hidden";
}

/**
 * Takes the resolver functions out of the open options (`conflicts` given as
 * a function), so the rest can be checked as JSON: `[options, {coll: fn}]`,
 * the options with `"custom"` in each function's place; and likewise
 * `sync.getToken` (`true` in its place): `[options, {coll: fn}, getToken]`.
 */
export function takeResolvers(options) {
  const resolvers = {};
  let getToken;
  if (options && typeof options === "object") {
    const sync = options.sync;
    if (sync && typeof sync === "object" && typeof sync.getToken === "function") {
      getToken = sync.getToken;
      options = { ...options, sync: { ...sync, getToken: true } };
    }
  }
  const colls = options && typeof options === "object" ? options.collections : undefined;
  if (!colls || typeof colls !== "object") return [options, resolvers, getToken];
  const collections = {};
  for (const [name, spec] of Object.entries(colls)) {
    if (spec && typeof spec === "object" && typeof spec.conflicts === "function") {
      resolvers[name] = spec.conflicts;
      collections[name] = { ...spec, conflicts: "custom" };
    } else {
      collections[name] = spec;
    }
  }
  return [{ ...options, collections }, resolvers, getToken];
}

/**
 * Asks the app's `sync.getToken` for a token: resolves with a non-empty
 * string, rejects (with a message) if it throws, rejects or answers
 * anything else.
 */
export async function callGetToken(fn) {
  let token;
  try {
    token = await fn();
  } catch (e) {
    throw String((e && e.message) || e);
  }
  if (typeof token !== "string" || token === "") {
    throw `it must resolve to a non-empty string, not ${token === "" ? "\"\"" : typeof token}`;
  }
  return token;
}

/**
 * Calls an `update(coll, id, fn)` function on the current document (inside
 * the write's transaction): `[false, patch JSON]` for a returned patch,
 * `[true, document JSON]` when it returned nothing (`doc` changed in place).
 * Throws a SyncStoreError: `UPDATER_FAILED` if it threw (the `cause`),
 * `INVALID_PATCH` for a promise or anything not JSON.
 */
export function callModifier(fn, doc) {
  let out;
  try {
    out = fn(doc);
  } catch (e) {
    throw new SyncStoreError("UPDATER_FAILED", `the update function threw: ${(e && e.message) || e}`, false, e);
  }
  if (out !== null && typeof out === "object" && typeof out.then === "function") {
    throw invalid("INVALID_PATCH", "patch", "an update function must be synchronous (it runs inside the write's transaction), it returned a promise");
  }
  if (out === undefined) return [true, encodeJson(doc, "doc", "INVALID_PATCH")];
  return [false, encodeJson(out, "patch", "INVALID_PATCH")];
}

/** Calls an app's conflict resolver: `{ ok: result }` or `{ error }`, never throws. */
export function callResolver(fn, ctx) {
  try {
    return { ok: fn(ctx) };
  } catch (e) {
    return { error: String((e && e.message) || e) };
  }
}

// The interop key of Observables (`rxjs.from`, TC39 proposal): the
// well-known symbol where the runtime has one, and the string form always.
const OBSERVABLE = (typeof Symbol === "function" && Symbol.observable) || "@@observable";

/** `db.live(coll, query)` or `db.live(fn)` (src/store.rs `live`). */
export function liveQuery(handle, what, query) {
  return new LiveQuery(handle, what, query);
}

/**
 * An Observable of a live query. Each `subscribe` starts its own run: the
 * `coll, query` form through the store's `subscribe` (rows patched or
 * re-queried, delivered when they change), the function form by running
 * the function and running it again after each committed change to a
 * collection it read (while it runs, such a change runs it once more
 * after). Values arrive in order; an error ends the subscription.
 */
export class LiveQuery {
  constructor(handle, what, query) {
    this._h = handle;
    this._what = what;
    this._query = query;
  }
  subscribe(observer, error, complete) {
    const o = observer !== null && typeof observer === "object" ? observer : { next: observer, error, complete };
    const sub = new LiveSubscription(this, o);
    sub._start();
    return sub;
  }
  [OBSERVABLE]() {
    return this;
  }
  "@@observable"() {
    return this;
  }
}

class LiveSubscription {
  constructor(q, o) {
    this.closed = false;
    this._q = q;
    this._o = o;
    this._stops = [];
    this._read = new Set(); // collections the last run read
    this._reading = new Set(); // those the run in progress has read so far
    this._running = false;
    this._queued = false;
    this._dirty = false;
  }
  _start() {
    const { _h: h, _what: what, _query: query } = this._q;
    try {
      if (typeof what === "function") {
        this._stops.push(h.__watch((colls) => this._changed(colls)));
        this._schedule();
      } else {
        this._stops.push(h.subscribe(what, query, (rows) => this._next(rows), (e) => this._error(e)));
      }
    } catch (e) {
      this._error(e);
    }
  }
  _changed(colls) {
    if (this.closed) return;
    if (colls.some((c) => this._read.has(c) || this._reading.has(c))) this._schedule();
  }
  _schedule() {
    if (this._running) {
      this._dirty = true;
      return;
    }
    if (this._queued) return;
    this._queued = true;
    // A later task: the writes of one tick give one run.
    nextTask().then(() => this._run());
  }
  async _run() {
    this._queued = false;
    if (this.closed) return;
    this._running = true;
    this._dirty = false;
    const reading = new Set();
    this._reading = reading;
    const h = this._q._h;
    const read = (name) => (coll, ...args) => {
      reading.add(coll);
      return h[name](coll, ...args);
    };
    const tx = { get: read("get"), getMany: read("getMany"), query: read("query"), count: read("count") };
    let value;
    let failed = null;
    try {
      value = await this._q._what(tx);
    } catch (e) {
      failed = { e };
    }
    this._running = false;
    this._read = reading;
    this._reading = new Set();
    if (this.closed) return;
    if (failed) return this._error(failed.e);
    this._next(value);
    if (this._dirty) this._schedule();
  }
  _next(value) {
    if (this.closed || typeof this._o.next !== "function") return;
    callListener((v) => this._o.next(v), value);
  }
  _error(e) {
    if (this.closed) return;
    this.unsubscribe();
    if (typeof this._o.error === "function") callListener((x) => this._o.error(x), e);
    else setTimeout(() => {
      throw e;
    }, 0);
  }
  unsubscribe() {
    if (this.closed) return;
    this.closed = true;
    for (const stop of this._stops.splice(0)) stop();
  }
}

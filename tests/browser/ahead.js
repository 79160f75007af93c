// The check that guards a page planned ahead (src/js/glue.js
// `applyIfAbsent`, src/sync/ahead.rs), against real IndexedDB: the planned
// writes land only if nothing the plan assumed absent is stored (no record
// and no `_server` entry of its documents, no new outbox entry, the same
// leader term); otherwise the transaction is aborted and nothing of the
// page is written, so a page never lands over a local edit it did not read.

// wasm-bindgen copies src/js/glue.js beside this file's copy (the same
// crate's snippets), so this is the module the store itself uses.
import { applyIfAbsent } from "../../src/js/glue.js";
import { dbName, eq } from "./suite.js";

function openDb(name) {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(name, 1);
    req.onupgradeneeded = () => {
      const db = req.result;
      db.createObjectStore("todos", { keyPath: "id" });
      db.createObjectStore("_outbox", { keyPath: "mid", autoIncrement: true });
      db.createObjectStore("_meta", { keyPath: "k" });
      db.createObjectStore("_server", { keyPath: ["coll", "id"] });
    };
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

const STORES = ["todos", "_outbox", "_meta", "_server"];

function done(tx) {
  return new Promise((resolve) => {
    tx.oncomplete = () => resolve("committed");
    tx.onabort = () => resolve("aborted");
  });
}

/** Writes `puts` ([store, value]) in one transaction. */
async function seed(db, puts) {
  const tx = db.transaction(STORES, "readwrite");
  for (const [s, v] of puts) tx.objectStore(s).put(v);
  eq(await done(tx), "committed", "seeded");
}

/** Runs applyIfAbsent for `ids` (a planned page writing their records and the meta). */
async function page(db, ids, { lastMid = 0, term = 7 } = {}) {
  const tx = db.transaction(STORES, "readwrite");
  const end = done(tx);
  const check = { outbox: "_outbox", meta: "_meta", server: "_server", term, lastMid, keys: [["todos", ids]] };
  const ops = ids.map((id) => ({ s: "todos", put: { id, d: `{"id":"${id}","from":"page"}`, v: 9 } }));
  ops.push({ s: "_meta", put: { k: "sync", v: { cursor: `after-${ids.join("-")}` } } });
  const wrote = await applyIfAbsent(tx, check, ops);
  return [wrote, await end];
}

function read(db, store, key) {
  return new Promise((resolve, reject) => {
    const req = db.transaction(store).objectStore(store).get(key);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

export async function aheadCheck() {
  const db = await openDb(dbName("ahead"));
  try {
    await seed(db, [["_meta", { k: "leader", v: 7 }]]);
    // Nothing stored: the page is written.
    eq(await page(db, ["a", "b"]), [true, "committed"], "a page over nothing is written");
    eq((await read(db, "todos", "b"))?.d, '{"id":"b","from":"page"}', "its records");
    eq((await read(db, "_meta", "sync"))?.v.cursor, "after-a-b", "and its meta");
    // A record of one of its documents (a local edit): nothing is written.
    await seed(db, [["todos", { id: "c", d: '{"id":"c","mine":1}', v: null }]]);
    eq(await page(db, ["c", "d"]), [false, "aborted"], "a page over a record is not written");
    eq((await read(db, "todos", "c"))?.d, '{"id":"c","mine":1}', "the local edit stays");
    eq(await read(db, "todos", "d"), undefined, "and no other record of the page lands");
    eq((await read(db, "_meta", "sync"))?.v.cursor, "after-a-b", "nor its meta");
    // A `_server` entry (a tombstone or a copy kept beside an edit).
    await seed(db, [["_server", { coll: "todos", id: "e", doc: null, version: 3 }]]);
    eq(await page(db, ["e", "f"]), [false, "aborted"], "a page over a _server entry is not written");
    eq(await read(db, "todos", "f"), undefined, "nothing of it");
    // An outbox entry the plan did not see (a write since it was made).
    await seed(db, [["_outbox", { mid: 5, coll: "todos", id: "z" }]]);
    eq(await page(db, ["g"], { lastMid: 4 }), [false, "aborted"], "a new outbox entry stops the page");
    eq(await page(db, ["g"], { lastMid: 5 }), [true, "committed"], "entries the plan saw do not");
    // Another leader's term.
    eq(await page(db, ["h"], { lastMid: 5, term: 8 }), [false, "aborted"], "another leader term stops the page");
    eq(await read(db, "todos", "h"), undefined, "nothing of it");
    // A range crowded with other records counts as found (no per-id reads).
    await seed(db, Array.from({ length: 20 }, (_, i) => ["todos", { id: `m${String(i).padStart(2, "0")}`, d: "{}", v: 1 }]));
    eq(await page(db, ["m", "mz"], { lastMid: 5 }), [false, "aborted"], "a crowded range stops the page");
    eq(await page(db, ["n1", "n2"], { lastMid: 5 }), [true, "committed"], "ids beside it do not");
  } finally {
    db.close();
  }
}

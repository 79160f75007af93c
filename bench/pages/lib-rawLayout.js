// Diagnostic only (not a column of the table): syncstore's storage design
// written in plain JS over raw IndexedDB. Records { id, d: JSON text, v,
// x<hex>: tagged index key } plus the outbox entry of each write (one
// record for a batch) in the same transaction, as src/store.rs does. The gap between this and syncstore
// is the cost of getting there through wasm; the gap between this and raw
// is the cost of the design (text documents, outbox, tagged keys).
import { openDb, done, result, HAS_IDB3 } from "./lib-raw.js";
import { deleteDb } from "./idb-util.js";

const hex = (s) => "x" + [...new TextEncoder().encode(s)].map((b) => b.toString(16).padStart(2, "0")).join("");
const X_DONE = hex("done"), X_PRIO = hex("priority"), X_AT = hex("createdAt");
const enc = (v) =>
  v === undefined || v === null ? [0] : typeof v === "boolean" ? [1, +v] : typeof v === "number" ? [2, v] : typeof v === "string" ? [3, v] : [4];
const record = (doc, v = null) => ({ id: doc.id, d: JSON.stringify(doc), v, [X_DONE]: enc(doc.done), [X_PRIO]: enc(doc.priority), [X_AT]: enc(doc.createdAt) });
const parseAll = (recs) => JSON.parse("[" + recs.map((r) => r.d).join(",") + "]");

export default {
  live: false,
  async open(name) {
    const db = await openDb(name, (db) => {
      const s = db.createObjectStore("todos", { keyPath: "id" });
      for (const x of [X_DONE, X_PRIO, X_AT]) s.createIndex(x, x);
      db.createObjectStore("_outbox", { keyPath: "mid", autoIncrement: true });
      db.createObjectStore("_meta", { keyPath: "k" });
    });
    const rw = () => db.transaction(["todos", "_outbox"], "readwrite");
    const todos = () => db.transaction("todos", "readonly").objectStore("todos");
    return {
      async insert(doc) {
        const tx = rw();
        tx.objectStore("todos").add(record(doc));
        tx.objectStore("_outbox").add({ coll: "todos", op: "insert", id: doc.id, doc, base: null });
        await done(tx);
      },
      async insertMany(docs) {
        const tx = rw();
        const t = tx.objectStore("todos"), o = tx.objectStore("_outbox");
        for (const doc of docs) t.add(record(doc));
        // One outbox record for the batch, as src/store.rs writes it.
        o.add({ n: docs.length, batch: docs.map((doc) => ({ coll: "todos", op: "insert", id: doc.id, doc, base: null })) });
        await done(tx);
      },
      all: async () => parseAll(await result(todos().getAll())),
      get: async (id) => {
        const r = await result(todos().get(id));
        return r && JSON.parse(r.d);
      },
      priorityAtLeast: async (p) => parseAll(await result(todos().index(X_PRIO).getAll(IDBKeyRange.bound([2, p], [2, Infinity])))),
      newest: async (n) => {
        const ix = todos().index(X_AT);
        if (HAS_IDB3) return parseAll(await result(ix.getAll({ query: null, count: n, direction: "prev" })));
        return parseAll((await result(ix.getAll())).slice(-n).reverse());
      },
      async update(id, patch) {
        const tx = rw();
        const t = tx.objectStore("todos");
        const r = await result(t.get(id));
        const doc = JSON.parse(r.d);
        for (const [k, v] of Object.entries(patch)) if (v === null) delete doc[k]; else doc[k] = v;
        t.put(record(doc, r.v));
        tx.objectStore("_outbox").add({ coll: "todos", op: "update", id, patch, base: r.v });
        await done(tx);
      },
      async destroy() {
        db.close();
        await deleteDb(name);
      },
    };
  },
};

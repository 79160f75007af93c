// Raw IndexedDB, no wrapper: one transaction per call or batch, documents
// stored as they are, indexes on priority and createdAt.
import { deleteDb } from "./idb-util.js";

export function openDb(name, upgrade) {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(name, 1);
    req.onupgradeneeded = () => upgrade(req.result);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}
export const done = (tx) =>
  new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onabort = tx.onerror = () => reject(tx.error);
  });
export const result = (req) =>
  new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });

export const HAS_IDB3 = typeof IDBObjectStore !== "undefined" && "getAllRecords" in IDBObjectStore.prototype;

export default {
  live: false,
  async open(name) {
    const db = await openDb(name, (db) => {
      const s = db.createObjectStore("todos", { keyPath: "id" });
      s.createIndex("priority", "priority");
      s.createIndex("createdAt", "createdAt");
    });
    const store = (mode) => db.transaction("todos", mode).objectStore("todos");
    return {
      async insert(d) {
        const s = store("readwrite");
        s.add(d);
        await done(s.transaction);
      },
      async insertMany(docs) {
        const s = store("readwrite");
        for (const d of docs) s.add(d);
        await done(s.transaction);
      },
      all: () => result(store("readonly").getAll()),
      get: (id) => result(store("readonly").get(id)),
      priorityAtLeast: (p) => result(store("readonly").index("priority").getAll(IDBKeyRange.lowerBound(p))),
      // Newest first: getAll with a direction where the browser has it
      // (IndexedDB 3, as Dexie uses), a cursor otherwise.
      newest(n) {
        const ix = store("readonly").index("createdAt");
        if (HAS_IDB3) return result(ix.getAll({ query: null, count: n, direction: "prev" }));
        return new Promise((resolve, reject) => {
          const rows = [];
          const req = ix.openCursor(null, "prev");
          req.onsuccess = () => {
            const c = req.result;
            if (c && rows.length < n) {
              rows.push(c.value);
              c.continue();
            } else resolve(rows);
          };
          req.onerror = () => reject(req.error);
        });
      },
      async update(id, patch) {
        const s = store("readwrite");
        const doc = await result(s.get(id));
        s.put({ ...doc, ...patch });
        await done(s.transaction);
      },
      async destroy() {
        db.close();
        await deleteDb(name);
      },
    };
  },
};

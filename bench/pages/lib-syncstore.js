// syncstore, local only (no sync client running; its writes still queue
// outbox entries in the same transaction, as in production).
import init, { SyncStore } from "/pkg/syncstore.js";
import { deleteDb } from "./idb-util.js";
await init();

const Q_RANGE = { where: { priority: { $gte: 3 } }, orderBy: "priority" };

export default {
  live: true,
  async open(name) {
    const s = await SyncStore.open({ name, collections: { todos: { indexes: ["done", "priority", "createdAt"] } } });
    return {
      store: s,
      insert: (d) => s.insert("todos", d),
      insertMany: (docs) => s.batch(docs.map((doc) => ({ op: "insert", coll: "todos", doc }))),
      all: () => s.query("todos"),
      get: (id) => s.get("todos", id),
      priorityAtLeast: (p) => s.query("todos", { ...Q_RANGE, where: { priority: { $gte: p } } }),
      newest: (n) => s.query("todos", { orderBy: "createdAt", desc: true, limit: n }),
      update: (id, patch) => s.update("todos", id, patch),
      subscribeNewest: (n, cb) => s.subscribe("todos", { orderBy: "createdAt", desc: true, limit: n }, cb),
      async destroy() {
        s.close();
        await deleteDb(name);
      },
    };
  },
};

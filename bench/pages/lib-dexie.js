// Dexie 4.x with the same indexes (IndexedDB skips boolean keys, so its
// `done` index stays empty; the workloads do not query it).
import Dexie, { liveQuery } from "/dexie/dexie.mjs";

export default {
  live: true,
  async open(name) {
    const db = new Dexie(name);
    db.version(1).stores({ todos: "id, done, priority, createdAt" });
    await db.open();
    const t = db.todos;
    return {
      insert: (d) => t.add(d),
      insertMany: (docs) => t.bulkAdd(docs),
      all: () => t.toArray(),
      get: (id) => t.get(id),
      priorityAtLeast: (p) => t.where("priority").aboveOrEqual(p).toArray(),
      newest: (n) => t.orderBy("createdAt").reverse().limit(n).toArray(),
      update: (id, patch) => t.update(id, patch),
      subscribeNewest(n, cb) {
        const sub = liveQuery(() => t.orderBy("createdAt").reverse().limit(n).toArray()).subscribe({ next: cb });
        return () => sub.unsubscribe();
      },
      async destroy() {
        db.close();
        await Dexie.delete(name);
      },
    };
  },
};

// syncstore with sync on: the store of lib-syncstore.js opened with `sync`
// against the real server (URL in the page's `server` query parameter; run.mjs
// starts it with one token per database, so each database starts from an
// empty namespace). The timed calls are the same local calls; the sync loop
// ingests and pushes the writes meanwhile. `settle` (untimed, between
// workloads) waits until everything is pushed, so that one workload's
// pushes do not run into the next one's timing.
import init, { SyncStore } from "/pkg/syncstore.js";
import { deleteDb } from "./idb-util.js";
await init();

const SERVER = new URLSearchParams(location.search).get("server");
// run.mjs opens a fresh page per repetition: each starts its tokens here.
const TOKEN_BASE = Number(new URLSearchParams(location.search).get("tokenBase") || 0);
const Q_RANGE = { where: { priority: { $gte: 3 } }, orderBy: "priority" };
let opened = TOKEN_BASE;

export default {
  live: true,
  async open(name) {
    if (!SERVER) throw new Error("lib-syncstoreSync needs ?server=");
    const s = await SyncStore.open({
      name,
      collections: { todos: { indexes: ["done", "priority", "createdAt"] } },
      sync: { url: SERVER, token: `bench-${opened++}` },
    });
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
      async settle() {
        for (let i = 0; i < 100 && s.status().pending > 0; i++) await s.sync().catch(() => {});
        if (s.status().pending > 0) throw new Error(`sync did not settle: ${JSON.stringify(s.status())}`);
      },
      async destroy() {
        s.close();
        await deleteDb(name);
      },
    };
  },
};

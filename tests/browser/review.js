// What the app can see of its data's flow (issue 14): change events with
// their op and document, per-document sync state, rejected writes kept for
// review, the data-flow trace, storage faults. Devices sync through the
// real server (`scripts/with-server.sh`); `tests/browser.rs` runs each
// scenario in Chromium and Firefox.

import { eq, ok } from "./suite.js";
import { until, ctl, collName, device } from "./sync.js";

/** Another instance (tab) of `db`'s database, with the same options. */
async function sibling(env, db, coll, sync = {}) {
  const other = await env.open({
    name: db.name,
    collections: { [coll]: { indexes: ["n"] } },
    sync: { url: env.server, token: "dev-token", pollMs: 200, ...sync },
  });
  env.opened.push(other);
  return other;
}

/** The entries of the change events of `events` from `origin`, as [op, id, doc]. */
function entries(events, origin) {
  return events
    .filter((e) => e.origin === origin)
    .flatMap((e) => e.changes.map((c) => [c.op, c.id, c.doc === undefined ? null : c.doc]));
}

const scenarios = {
  async change_events_carry_the_op_and_the_document(env) {
    // One database open twice (two tabs: a writes, a2 listens) and a second
    // device b: every write shows in each as insert, update, delete with the
    // new document (none for a delete), marked local, tab or remote.
    const coll = collName("chg");
    const a = await device(env, coll);
    const a2 = await sibling(env, a, coll);
    const b = await device(env, coll);
    const seen = { a: [], a2: [], b: [] };
    a.on("change", (e) => seen.a.push(e));
    a2.on("change", (e) => seen.a2.push(e));
    b.on("change", (e) => seen.b.push(e));
    // a2's wish to hear changes reaches a through the channel.
    await until("a knows a2 listens", async () => {
      await a.insert(coll, { id: "probe", n: 0 });
      await a.delete(coll, "probe");
      return entries(seen.a2, "tab").length > 0;
    });
    await a.sync();
    const mark = { a: seen.a.length, a2: seen.a2.length, b: seen.b.length };
    const after = (k) => seen[k].slice(mark[k]);
    const bGot = (op) => until(`b's ${op} event`, () => entries(after("b"), "remote").some((c) => c[1] === "x1" && c[0] === op));
    await a.insert(coll, { id: "x1", n: 1 });
    await bGot("insert");
    await a.update(coll, "x1", { n: 2 });
    await bGot("update");
    await a.delete(coll, "x1");
    await bGot("delete");
    const expected = [
      ["insert", "x1", { id: "x1", n: 1 }],
      ["update", "x1", { id: "x1", n: 2 }],
      ["delete", "x1", null],
    ];
    eq(entries(after("a"), "local"), expected, "a's own writes, origin local");
    await until("a2 heard all three", () => entries(after("a2"), "tab").length === 3);
    eq(entries(after("a2"), "tab"), expected, "the other tab's writes, origin tab");
    eq(entries(after("b"), "remote").filter((c) => c[1] === "x1"), expected, "the other device's, origin remote");
    ok(after("a").every((e) => e.origin !== "remote"), "a's own writes coming back are no remote changes");
    ok(after("b").flatMap((e) => e.changes).every((c) => c.deleted === (c.op === "delete")), "deleted kept for older listeners");
    // A batch: one event, its entries in order; an insert of a new id is an insert.
    const n = after("a").length;
    await a.batch([
      { op: "insert", coll, doc: { id: "y1", n: 1 } },
      { op: "replace", coll, id: "y1", doc: { n: 5 } },
    ]);
    eq(after("a").length, n + 1, "one event per write call");
    eq(entries(after("a").slice(n), "local"), [["insert", "y1", { id: "y1", n: 1 }], ["update", "y1", { id: "y1", n: 5 }]], "a batch's entries in order");
  },

  async status_pending_equals_the_outbox_once_a_write_resolved(env) {
    // The sync loop takes committed writes in a step after the write
    // resolved; until then status().pending left them out (2 vs 5 after a
    // batch). Cut off, nothing settles, so both counts only grow.
    const coll = collName("pend");
    const db = await device(env, coll);
    await db.sync();
    db.goOffline();
    let n = 0;
    for (let i = 0; i < 6; i++) {
      const size = 1 + (i % 3) * 2;
      const ops = Array.from({ length: size }, (_, k) => ({ op: "insert", coll, doc: { id: `p${i}_${k}`, n: k } }));
      if (size === 1) await db.insert(coll, ops[0].doc);
      else await db.batch(ops);
      n += size;
      const status = db.status().pending;
      const count = await db.pendingCount();
      eq([status, count], [n, n], `after write ${i} (${size} entries)`);
    }
    await db.update(coll, "p0_0", { n: 9 });
    eq(db.status().pending, n + 1, "an update too");
    db.goOnline();
    await db.sync();
    eq([db.status().pending, await db.pendingCount()], [0, 0], "all settled");
  },
};

export const reviewNames = Object.keys(scenarios);

export function reviewScenario(name, open, SyncStoreError, server, ctlUrl) {
  const run = scenarios[name];
  if (!run) throw new Error(`no review scenario ${name}`);
  const env = { open, SyncStoreError, server, ctl: ctlUrl, opened: [] };
  return (async () => {
    try {
      await run(env);
    } finally {
      for (const db of env.opened) db.close();
      await ctl(env, "/unblock-ws").catch(() => {});
      await ctl(env, "/heal-http").catch(() => {});
      await ctl(env, "/start").catch(() => {});
    }
  })();
}

// What the app can see of its data's flow (issue 14): change events with
// their op and document, per-document sync state, rejected writes kept for
// review, the data-flow trace, storage faults. Devices sync through the
// real server (`scripts/with-server.sh`); `tests/browser.rs` runs each
// scenario in Chromium and Firefox.

import { dbName, eq, ok, rejects } from "./suite.js";
import { until, ctl, collName, device, mint, runScenario } from "./sync.js";

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

/** Fails instead of hanging: `p`, or an error after `ms`. */
function guard(p, what, ms = 15000) {
  let t;
  const timeout = new Promise((_, reject) => {
    t = setTimeout(() => reject(new Error(`${what}: still pending after ${ms} ms (a hang)`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(t));
}

/**
 * Records the IndexedDB connections opened to database `name` (the store's
 * own, which a page cannot otherwise reach), so a test can close one under
 * the store as the browser does. `failing(true)` makes opening fail.
 */
function connections(name) {
  const original = indexedDB.open;
  const conns = [];
  let fail = false;
  indexedDB.open = function (n, ...rest) {
    if (n === name && fail) throw new DOMException("opening refused (test)", "UnknownError");
    const req = original.call(this, n, ...rest);
    if (n === name) req.addEventListener("success", () => conns.push(req.result));
    return req;
  };
  return {
    conns,
    failing(on) {
      fail = on;
    },
    /** Closes the newest connection and fires its `close` event, as the browser does. */
    closeLatest() {
      const c = conns[conns.length - 1];
      c.close();
      c.dispatchEvent(new Event("close"));
    },
    restore() {
      delete indexedDB.open;
      if (indexedDB.open !== original) indexedDB.open = original;
    },
  };
}

/** The outbox as comparable data: mid, coll, id, op, document or patch. */
async function outboxOf(db) {
  return (await db.outbox()).map((e) => [e.mid, e.coll, e.id, e.op, e.doc || e.patch || null]);
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

  async sync_state_rows_follow_a_push_and_a_manual_conflict(env) {
    // A live query with { syncState: true }: a row with queued writes is
    // `$sync: "pending"`, one with an unresolved conflict "conflict", and
    // the marker goes once settled; every change of state is a callback.
    const coll = collName("st");
    const spec = { conflicts: "manual" };
    const a = await device(env, coll, { spec });
    const b = await device(env, coll, { spec });
    await a.insert(coll, { id: "m1", text: "seed" });
    await a.sync();
    await until("b has m1", () => b.get(coll, "m1"));
    const track = (db) => {
      const states = {};
      db.subscribe(coll, { syncState: true }, (rows) => {
        for (const r of rows) {
          const seq = (states[r.id] ||= []);
          const st = r.$sync || "settled";
          if (seq[seq.length - 1] !== st) seq.push(st);
        }
      });
      return states;
    };
    const sa = track(a);
    const sb = track(b);
    await until("the first results", () => sa.m1 && sb.m1);
    eq([sa.m1, sb.m1], [["settled"], ["settled"]], "a synced row has no $sync");
    // pending -> absent across a push (an insert and an edit of a synced row).
    a.goOffline();
    await a.insert(coll, { id: "p1", text: "new" });
    await a.update(coll, "m1", { n: 1 });
    await until("both pending", () => sa.p1 && sa.m1.length === 2);
    const q = await a.query(coll, { syncState: true });
    eq(q.map((r) => [r.id, r.$sync]), [["m1", "pending"], ["p1", "pending"]], "query() shows the state too");
    ok((await a.query(coll, {})).every((r) => !("$sync" in r)), "not without the option");
    eq(await a.get(coll, "p1"), { id: "p1", text: "new" }, "nor in get()");
    a.goOnline();
    await a.sync();
    await until("a's rows settle", () => sa.p1.length === 2 && sa.m1.length === 3);
    eq(sa.p1, ["pending", "settled"], "an insert: pending, then settled by the push");
    eq(sa.m1, ["settled", "pending", "settled"], "an edit of a synced row: the same");
    // pending -> conflict -> absent across a manual conflict and its resolution.
    await until("b has m1's edit", async () => (await b.get(coll, "m1")).n === 1);
    b.goOffline();
    a.goOffline();
    await a.update(coll, "m1", { text: "a" });
    await b.update(coll, "m1", { text: "b" });
    a.goOnline();
    await a.sync();
    b.goOnline();
    await b.sync();
    await until("b's conflict", () => sb.m1[sb.m1.length - 1] === "conflict");
    eq((await b.conflicts(coll)).map((c) => c.id), ["m1"], "kept for the app");
    await b.resolveConflict(coll, "m1", { keep: "remote" });
    await until("settled after the resolution", () => sb.m1[sb.m1.length - 1] === "settled");
    eq(sb.m1, ["settled", "pending", "conflict", "settled"], "pending -> conflict -> absent");
    // Keeping the local side queues a write: conflict -> pending -> absent.
    b.goOffline();
    a.goOffline();
    await a.update(coll, "p1", { text: "a" });
    await b.update(coll, "p1", { text: "b" });
    a.goOnline();
    await a.sync();
    await until("b has p1", () => sb.p1);
    b.goOnline();
    await b.sync();
    await until("p1 in conflict", () => sb.p1[sb.p1.length - 1] === "conflict");
    await b.resolveConflict(coll, "p1", { keep: "local" });
    await b.sync();
    await until("p1 settles", () => sb.p1[sb.p1.length - 1] === "settled" && sb.p1.length > 3);
    eq(sb.p1.slice(-3), ["conflict", "pending", "settled"], "keep local: the resolving write is pending until pushed");
    await a.sync();
    await until("a has b's text", async () => (await a.get(coll, "p1")).text === "b");
    await rejects(a.query(coll, { syncState: "yes" }), "INVALID_QUERY", env, "syncState must be a boolean");
  },

  async rejected_writes_are_kept_until_dismissed_across_a_reload(env) {
    // A read-only user's writes are refused (FORBIDDEN) and rolled back;
    // each is kept in IndexedDB with the document as written, the reason
    // and the time, listed by rejected() in a new instance too, until
    // dismissRejected().
    const coll = collName("rej");
    const a = await device(env, coll);
    await a.insert(coll, { id: "r1", text: "small" });
    await a.insert(coll, { id: "r3", text: "three" });
    await a.sync();
    const token = await mint(env, `reader_${coll}`, { ro: true });
    const opts = (name) => ({
      name,
      collections: { [coll]: { indexes: ["n"] } },
      sync: { url: env.server, token, pollMs: 200 },
    });
    const name = dbName("rej");
    let reader = await env.open(opts(name));
    env.opened.push(reader);
    await until("the reader has the data", async () => (await reader.get(coll, "r3")) !== undefined);
    const seen = [];
    reader.on("rejected", async (e) => seen.push([e.id, (await reader.rejected()).some((r) => r.mid === e.mid)]));
    const before = Date.now();
    await reader.update(coll, "r1", { text: "edited" });
    await reader.insert(coll, { id: "r2", text: "new" });
    await reader.delete(coll, "r3");
    await reader.sync();
    await until("three rejected events", () => seen.length === 3);
    eq(seen.map((s) => s[1]), [true, true, true], "listed by rejected() when its event fires");
    const list = await reader.rejected();
    eq(list.map((r) => [r.coll, r.id, r.op, r.doc === undefined ? null : r.doc, r.code]), [
      [coll, "r1", "update", { id: "r1", text: "edited" }, "FORBIDDEN"],
      [coll, "r2", "insert", { id: "r2", text: "new" }, "FORBIDDEN"],
      [coll, "r3", "delete", null, "FORBIDDEN"],
    ], "each with its op, the document as written and the reason");
    ok(list.every((r) => typeof r.message === "string" && r.message.length > 0), "with a message");
    ok(list.every((r) => r.at >= before - 1000 && r.at <= Date.now() + 1000), "and the time");
    ok(list[0].mid < list[1].mid && list[1].mid < list[2].mid, "oldest first");
    eq(await reader.pendingCount(), 0, "the outbox holds none of them");
    eq(await reader.get(coll, "r3"), { id: "r3", text: "three" }, "rolled back meanwhile");
    // A reload: a new instance on the same database.
    reader.close();
    reader = await env.open(opts(name));
    env.opened.push(reader);
    eq(await reader.rejected(), list, "kept across a reload");
    await rejects(reader.dismissRejected("r1"), "INVALID_ARGUMENT", env, "a bad mid");
    await rejects(reader.dismissRejected([list[0].mid, 0.5]), "INVALID_ARGUMENT", env, "one bad mid of several");
    eq(await reader.rejected(), list, "a bad dismissal dismisses nothing");
    await reader.dismissRejected(list[1].mid);
    reader.close();
    reader = await env.open(opts(name));
    env.opened.push(reader);
    eq(await reader.rejected(), [list[0], list[2]], "one dismissed, the others kept after another reload");
    await reader.dismissRejected([list[0].mid]);
    eq((await reader.rejected()).map((r) => r.id), ["r3"], "an array of mids");
    await reader.dismissRejected();
    eq(await reader.rejected(), [], "all dismissed");
    reader.close();
    await rejects(reader.rejected(), "CLOSED", env, "rejected() of a closed store");
  },

  async the_trace_shows_an_insert_queued_pushed_applied_settled(env) {
    // on("trace") hears one insert's life in order, with timestamps, and
    // the pages of server changes; outbox() lists what is queued.
    const coll = collName("tr");
    const a = await device(env, coll, { sync: { websocket: false } });
    const b = await device(env, coll);
    await until("b's socket", () => b.status().connection === "websocket");
    const ta = [];
    const tb = [];
    const offA = a.on("trace", (e) => ta.push(e));
    b.on("trace", (e) => tb.push(e));
    a.goOffline();
    const tmp = await a.insert(coll, { text: "milk" });
    await a.update(coll, tmp, { n: 1 });
    const queued = await a.outbox();
    eq(queued.map((e) => [e.coll, e.id, e.op, e.state]), [[coll, tmp, "insert", "pending"], [coll, tmp, "update", "pending"]], "outbox() lists both writes");
    eq(queued[0].doc, { id: tmp, text: "milk" }, "with the document");
    eq(queued[1].patch, { n: 1 }, "and the patch");
    ok(queued[0].mid < queued[1].mid, "in mid order");
    eq(ta.filter((e) => e.type === "queued").map((e) => [e.mid, e.op]), queued.map((e) => [e.mid, e.op]), "queued, with the outbox's mids");
    a.goOnline();
    await a.sync();
    const mid = queued[0].mid;
    await until("the insert settles", () => ta.some((e) => e.type === "settled" && e.mid === mid));
    const life = ta.filter((e) => e.mid === mid).map((e) => e.type);
    eq(life, ["queued", "pushed", "applied", "settled"], "one insert: queued -> pushed -> applied -> settled");
    const times = ta.map((e) => e.at);
    ok(times.every((t, i) => typeof t === "number" && (i === 0 || t >= times[i - 1])), "timestamps, in order");
    const canonical = a.resolveId(tmp);
    ok(ta.some((e) => e.type === "remapped" && e.tmp === tmp && e.id === canonical), "the temporary id's remap");
    ok(ta.some((e) => e.type === "pull" && typeof e.changes === "number" && typeof e.ms === "number" && e.more === false), "a pull page");
    eq(await a.outbox(), [], "nothing queued once settled");
    await until("b's socket brings it", () => tb.some((e) => e.type === "frames" && e.changes > 0));
    // A listener removed hears nothing.
    const n = ta.length;
    offA();
    await a.insert(coll, { id: "quiet", n: 2 });
    await a.sync();
    eq(ta.length, n, "no trace after the listener is removed");
  },

  async a_database_closed_by_the_browser_is_reopened_or_fails_fast(env) {
    // The browser closes the connection (the close event): the store says
    // so (error STORAGE_CLOSED) and reopens on the next call; while it
    // cannot reopen, calls reject with STORAGE_CLOSED instead of hanging;
    // the outbox is the same before and after.
    const coll = collName("cls");
    const name = dbName("cls");
    const ctlr = connections(name);
    try {
      const db = await env.open({ name, collections: { [coll]: {} }, sync: { url: env.server, token: "dev-token", pollMs: 200 } });
      env.opened.push(db);
      const errors = [];
      db.on("error", (e) => errors.push(e));
      db.goOffline();
      await db.insert(coll, { id: "k1", n: 1 });
      await db.batch([{ op: "insert", coll, doc: { id: "k2", n: 2 } }, { op: "update", coll, id: "k1", patch: { n: 3 } }]);
      const before = await outboxOf(db);
      eq(before.length, 3, "three queued");
      const opened = ctlr.conns.length;
      ctlr.closeLatest();
      await until("an error event", () => errors.some((e) => e.code === "STORAGE_CLOSED"));
      ok(errors[0] instanceof env.SyncStoreError && errors[0].retryable === true, "a retryable SyncStoreError");
      eq(await guard(db.get(coll, "k1"), "get after the close"), { id: "k1", n: 3 }, "the next call reopens");
      ok(ctlr.conns.length > opened, "on a new connection");
      eq(await outboxOf(db), before, "the outbox is intact");
      // Closed again, and the database cannot be opened for a while.
      ctlr.failing(true);
      ctlr.closeLatest();
      const n = errors.length;
      await rejects(guard(db.get(coll, "k1"), "get while it cannot reopen"), "STORAGE_CLOSED", env, "a read");
      await rejects(guard(db.insert(coll, { id: "k3" }), "insert while it cannot reopen"), "STORAGE_CLOSED", env, "a write");
      await rejects(guard(db.outbox(), "outbox while it cannot reopen"), "STORAGE_CLOSED", env, "outbox()");
      ok(errors.length > n && errors.slice(n).every((e) => e.code === "STORAGE_CLOSED"), `error events say so: ${JSON.stringify(errors.slice(n).map((e) => [e.code, e.message]))}`);
      ctlr.failing(false);
      eq(await guard(db.get(coll, "k2"), "get once it can reopen"), { id: "k2", n: 2 }, "works again once it can reopen");
      eq(await outboxOf(db), before, "nothing lost, nothing half-written");
      db.goOnline();
      await db.sync();
      eq(await db.outbox(), [], "then it all syncs");
      const server = (await ctl(env, `/docs?coll=${coll}`, "GET")).rows.map((r) => r.doc).sort((x, y) => (x.id < y.id ? -1 : 1));
      eq(server, [{ id: "k1", n: 3 }, { id: "k2", n: 2 }], "the server has both, once");
    } finally {
      ctlr.restore();
    }
  },

  async calls_made_together_after_a_close_reopen_one_connection(env) {
    // After the browser closed the connection, calls made together (here
    // four, as a page's components do) reopen it once. Each reopening its
    // own connection left all but one open and unused, each replaced
    // connection's close watcher was dropped, and a later close of the one
    // in use could go unnoticed: every call then failed for good.
    const name = dbName("cc");
    const ctlr = connections(name);
    try {
      const db = await env.open({ name, collections: { t: {} } });
      env.opened.push(db);
      await db.insert("t", { id: "a", n: 1 });
      const errors = [];
      db.on("error", (e) => errors.push(e));
      for (let round = 1; round <= 2; round++) {
        const opened = ctlr.conns.length;
        const n = errors.length;
        ctlr.closeLatest();
        eq(errors.slice(n).map((e) => e.code), ["STORAGE_CLOSED"], `round ${round}: the close is reported`);
        const [one, some, many] = await guard(
          Promise.all([db.get("t", "a"), db.query("t", {}), db.getMany("t", ["a"]), db.insert("t", { id: `b${round}` })]),
          `round ${round}: calls made together after the close`,
        );
        eq([one, some.length, many], [{ id: "a", n: 1 }, round, [{ id: "a", n: 1 }]], `round ${round}: the calls are answered`);
        eq(ctlr.conns.length, opened + 1, `round ${round}: on one new connection`);
      }
    } finally {
      ctlr.restore();
    }
  },

  async a_newer_schema_in_another_tab_closes_this_instance_cleanly(env) {
    // Another instance opens the database with more indexes: its upgrade is
    // not blocked; this one closes, fires versionchange, and its calls
    // reject with STORAGE_VERSION; the outbox survives for the new one.
    const coll = collName("ver");
    const name = dbName("ver");
    const old = await env.open({ name, collections: { [coll]: {} }, sync: { url: env.server, token: "dev-token", pollMs: 200 } });
    env.opened.push(old);
    const heard = [];
    old.on("versionchange", (e) => heard.push(e));
    old.goOffline();
    await old.insert(coll, { id: "v1", n: 1 });
    await old.update(coll, "v1", { n: 2 });
    const before = await outboxOf(old);
    const newer = await guard(env.open({ name, collections: { [coll]: { indexes: ["n"] }, extra: {} } }), "opening the newer schema");
    env.opened.push(newer);
    eq(heard.length, 1, "one versionchange event");
    ok(heard[0].newVersion > heard[0].oldVersion, `from the old version to the new: ${JSON.stringify(heard[0])}`);
    await rejects(guard(old.get(coll, "v1"), "a call of the closed instance"), "STORAGE_VERSION", env, "the old instance's calls");
    await rejects(guard(old.insert(coll, { id: "v2" }), "a write of the closed instance"), "STORAGE_VERSION", env, "its writes");
    eq(await outboxOf(newer), before, "the outbox, unchanged, in the new instance");
    eq(await newer.query(coll, { where: { n: 2 } }), [{ id: "v1", n: 2 }], "the data, with the new index");
    newer.close();
    const synced = await env.open({ name, collections: { [coll]: { indexes: ["n"] }, extra: {} }, sync: { url: env.server, token: "dev-token", pollMs: 200 } });
    env.opened.push(synced);
    await synced.sync();
    eq(await synced.outbox(), [], "it syncs from the new instance");
    eq((await ctl(env, `/docs?coll=${coll}`, "GET")).rows.map((r) => r.doc), [{ id: "v1", n: 2 }], "once");
  },

  async a_quota_error_during_a_pull_keeps_the_cursor_and_retries(env) {
    // The step that stores a pull page fails as a full disk makes it fail:
    // its transaction aborts with QuotaExceededError (injected: a page
    // cannot lower its own quota in either browser). Nothing of the page
    // is stored, the cursor stays, an error event says QUOTA_EXCEEDED, the
    // outbox is untouched, and a later poll brings the page in.
    const coll = collName("quo");
    const a = await device(env, coll, { sync: { websocket: false }, more: { notes: { sync: "manual" } } });
    const b = await device(env, coll);
    await b.insert(coll, { id: "q0", n: 0 });
    await b.sync();
    await until("a has q0", async () => (await a.get(coll, "q0")) !== undefined);
    await a.insert("notes", { id: "kept", text: "parked until push(notes)" });
    const before = await outboxOf(a);
    eq(before.length, 1, "a's queued write");
    const cursor = a.status().cursor;
    const errors = [];
    const cursorAtErrors = [];
    a.on("error", (e) => {
      errors.push(e);
      cursorAtErrors.push(a.status().cursor);
    });
    const put = IDBObjectStore.prototype.put;
    let faults = 3;
    IDBObjectStore.prototype.put = function (...args) {
      const req = put.apply(this, args);
      if (this.name === coll && this.transaction.db.name === a.name && faults > 0) {
        faults--;
        // As the browser does: the requests were issued, the transaction
        // then fails with QuotaExceededError.
        const tx = this.transaction;
        req.addEventListener("success", () => {
          Object.defineProperty(tx, "error", { value: new DOMException("quota (test)", "QuotaExceededError"), configurable: true });
          tx.abort();
        });
      }
      return req;
    };
    try {
      for (let i = 1; i <= 5; i++) await b.insert(coll, { id: `q${i}`, n: i });
      await b.sync();
      await until("a quota error event", () => errors.some((e) => e.code === "QUOTA_EXCEEDED"));
      eq(a.status().cursor, cursor, "the cursor stays");
      eq(await a.get(coll, "q1"), undefined, "nothing of the page is stored");
      eq(await outboxOf(a), before, "the outbox is untouched");
      await until("the faults are used up", () => faults === 0);
    } finally {
      IDBObjectStore.prototype.put = put;
    }
    await until("a later poll brings the page", async () => (await a.query(coll, {})).length === 6);
    ok(a.status().cursor !== cursor, "the cursor moves on then");
    ok(cursorAtErrors.length > 0 && cursorAtErrors.every((c) => c === cursor), "and had not moved at any error");
    eq(await outboxOf(a), before, "the outbox, still untouched");
    ok(errors.every((e) => e instanceof env.SyncStoreError), "typed errors");
    await until("the error clears", () => a.status().lastError === null);
  },

  async open_with_persist_asks_for_persistent_storage(env) {
    const calls = [];
    const storage = navigator.storage;
    const original = storage.persist;
    storage.persist = function () {
      calls.push(Date.now());
      return Promise.resolve(false); // as a browser that declines
    };
    try {
      const db = await env.open({ name: dbName("per"), collections: { t: {} }, persist: true });
      env.opened.push(db);
      eq(calls.length, 1, "navigator.storage.persist() asked once");
      await db.insert("t", { id: "x" });
      eq(await db.get("t", "x"), { id: "x" }, "the store works whatever the answer");
      const plain = await env.open({ name: dbName("per"), collections: { t: {} } });
      env.opened.push(plain);
      eq(calls.length, 1, "not asked without persist: true");
      await rejects(env.open({ name: dbName("per"), collections: { t: {} }, persist: "yes" }), "INVALID_OPTIONS", env, "persist must be a boolean");
    } finally {
      delete storage.persist;
      if (storage.persist !== original) storage.persist = original;
    }
  },
};

export const reviewNames = Object.keys(scenarios);

export function reviewScenario(name, open, SyncStoreError, server, ctlUrl) {
  return runScenario(scenarios, name, open, SyncStoreError, server, ctlUrl);
}

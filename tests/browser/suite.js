// Browser scenarios, written against the public JS API exactly as an app
// uses it. `tests/browser.rs` runs each one in Chromium and Firefox.

// wasm-bindgen copies src/js/glue.js beside this file's copy (the same
// crate's snippets), so this is the module the store itself uses.
import { applyIfAbsent } from "../../src/js/glue.js";

let counter = 0;
function dbName(tag) {
  counter += 1;
  return `t-${tag}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}-${counter}`;
}

function fail(msg) {
  throw new Error(msg);
}

function eq(actual, expected, what) {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) fail(`${what}: expected ${e}, got ${a}`);
}

function ok(cond, what) {
  if (!cond) fail(what);
}

async function rejects(promiseOrFn, code, env, what) {
  let err;
  try {
    await (typeof promiseOrFn === "function" ? promiseOrFn() : promiseOrFn);
  } catch (e) {
    err = e;
  }
  ok(err !== undefined, `${what}: expected ${code}, but it succeeded`);
  ok(err instanceof env.SyncStoreError, `${what}: not a SyncStoreError: ${err}`);
  ok(err instanceof Error, `${what}: not an Error`);
  eq(err.code, code, `${what}: code (${err.message})`);
  eq(err.name, "SyncStoreError", `${what}: name`);
  ok(typeof err.message === "string" && err.message.length > 0, `${what}: message`);
  return err;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Waits until `pred()` holds, polling, at most `ms`. */
async function until(pred, ms, what) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await pred()) return;
    await sleep(10);
  }
  fail(`timed out waiting for ${what}`);
}

const TODOS = {
  todos: { indexes: ["done", "createdAt", "priority", "meta.owner", ["listId", "createdAt"]] },
  lists: {},
  drafts: { sync: "local" },
};

async function openTodos(env, name = dbName("todos"), collections = TODOS) {
  return env.open({ name, collections });
}

function sampleTodos(n) {
  const out = [];
  for (let i = 0; i < n; i++) {
    const doc = {
      id: `t${String(i).padStart(3, "0")}`,
      text: `todo ${i}`,
      done: i % 3 === 0,
      createdAt: 1000 + ((i * 37) % 101),
      priority: i % 5,
      listId: `l${i % 4}`,
      meta: { owner: ["ann", "bob", "cy"][i % 3], tags: i % 2 ? ["x"] : [] },
    };
    if (i % 13 === 0) delete doc.priority;
    if (i % 17 === 0) doc.priority = "high";
    if (i % 19 === 0) doc.done = null;
    out.push(doc);
  }
  return out;
}

const scenarios = {
  async insert_get_update_replace_delete(env) {
    const db = await openTodos(env);
    const id = await db.insert("todos", { id: "a", text: "milk", done: false, meta: { owner: "ann", n: 1 } });
    eq(id, "a", "insert returns the given id");
    eq(await db.get("todos", "a"), { id: "a", text: "milk", done: false, meta: { owner: "ann", n: 1 } }, "get");
    await db.update("todos", "a", { done: true, meta: { n: null, k: 2 }, text: null });
    eq(await db.get("todos", "a"), { id: "a", done: true, meta: { owner: "ann", k: 2 } }, "merge patch");
    await db.replace("todos", "a", { text: "eggs" });
    eq(await db.get("todos", "a"), { id: "a", text: "eggs" }, "replace");
    await db.delete("todos", "a");
    eq(await db.get("todos", "a"), undefined, "deleted");
    await db.delete("todos", "a"); // a no-op, like Dexie
    await rejects(db.update("todos", "a", { x: 1 }), "NOT_FOUND", env, "update of a missing doc");
    await rejects(db.replace("todos", "a", { x: 1 }), "NOT_FOUND", env, "replace of a missing doc");
    await db.insert("todos", { id: "b", n: 1 });
    await rejects(db.insert("todos", { id: "b", n: 2 }), "ALREADY_EXISTS", env, "duplicate insert");
    eq(await db.get("todos", "b"), { id: "b", n: 1 }, "duplicate left the original");
    eq(await db.pendingCount(), 5, "outbox: insert, update, replace, delete, insert");
    db.close();
  },

  async temp_ids_are_unique_and_marked(env) {
    const db = await openTodos(env);
    const ids = await db.batch(Array.from({ length: 200 }, (_, i) => ({ op: "insert", coll: "todos", doc: { i } })));
    ok(ids.every((id) => id.startsWith("tmp_")), "temporary ids start with tmp_");
    eq(new Set(ids).size, 200, "distinct");
    const one = await db.insert("todos", { text: "x" });
    ok(one.startsWith("tmp_") && !ids.includes(one), "single insert gets a fresh temp id");
    eq((await db.get("todos", one)).id, one, "the document carries its id");
    const other = await openTodos(env);
    const theirs = await other.insert("todos", {});
    ok(theirs !== one, "another store instance makes other ids");
    await rejects(db.insert("todos", { id: "tmp_mine" }), "INVALID_ID", env, "tmp_ ids are reserved");
    db.close();
    other.close();
  },

  async batch_is_atomic_across_collections(env) {
    const db = await openTodos(env);
    await db.insert("lists", { id: "l1", count: 0 });
    const ids = await db.batch([
      { op: "insert", coll: "todos", doc: { id: "t1", text: "a" } },
      { op: "update", coll: "lists", id: "l1", patch: { count: 1 } },
      { op: "insert", coll: "todos", doc: { text: "b" } },
      { op: "update", coll: "todos", id: "t1", patch: { done: true } },
    ]);
    eq(ids.length, 4, "one id per op");
    eq(ids[0], "t1", "first id");
    eq(await db.get("todos", "t1"), { id: "t1", text: "a", done: true }, "later op sees earlier op");
    eq((await db.get("lists", "l1")).count, 1, "other collection");
    const before = await db.pendingCount();
    const bad = [
      [{ op: "insert", coll: "todos", doc: { id: "n1" } }, { op: "insert", coll: "nope", doc: {} }, "UNKNOWN_COLLECTION"],
      [{ op: "insert", coll: "todos", doc: { id: "n1" } }, { op: "update", coll: "todos", id: "missing", patch: {} }, "NOT_FOUND"],
      [{ op: "insert", coll: "todos", doc: { id: "n1" } }, { op: "insert", coll: "todos", doc: { f: () => 1 } }, "INVALID_DOCUMENT"],
      [{ op: "update", coll: "lists", id: "l1", patch: { count: 9 } }, { op: "frobnicate", coll: "todos" }, "INVALID_DOCUMENT"],
    ];
    for (const [good, wrong, code] of bad) {
      const err = await rejects(db.batch([good, wrong]), code, env, `batch with ${wrong.op}`);
      ok(err.message.includes("ops[1]"), `message names the op: ${err.message}`);
    }
    eq(await db.get("todos", "n1"), undefined, "nothing of a failed batch is stored");
    eq((await db.get("lists", "l1")).count, 1, "nor changed");
    eq(await db.pendingCount(), before, "nor queued");
    await db.insert("todos", { id: "n1" });
    eq((await db.get("todos", "n1")).id, "n1", "store keeps working");
    db.close();
  },

  async batch_with_duplicate_id_writes_nothing(env) {
    // The duplicate is found by IndexedDB's unique key, mid-transaction.
    const db = await openTodos(env);
    await db.insert("todos", { id: "dup", v: 1 });
    const before = await db.pendingCount();
    const ops = [];
    for (let i = 0; i < 50; i++) ops.push({ op: "insert", coll: "todos", doc: { id: `x${i}` } });
    ops.push({ op: "insert", coll: "todos", doc: { id: "dup", v: 2 } });
    const err = await rejects(db.batch(ops), "ALREADY_EXISTS", env, "duplicate in batch");
    ok(err.message.includes("dup") && err.message.includes("ops[50]"), `names the id and op: ${err.message}`);
    eq(await db.count("todos"), 1, "no insert of the batch landed");
    eq(await db.pendingCount(), before, "outbox unchanged");
    eq(await db.get("todos", "dup"), { id: "dup", v: 1 }, "original intact");
    db.close();
  },

  async outbox_counts_pending_mutations(env) {
    const db = await openTodos(env);
    eq(await db.pendingCount(), 0, "empty");
    await db.insert("todos", { id: "a" });
    await db.insert("drafts", { id: "d", body: "never synced" });
    await db.update("drafts", "d", { body: "still local" });
    eq(await db.pendingCount(), 1, "local collections queue nothing");
    await db.batch([{ op: "update", coll: "todos", id: "a", patch: { x: 1 } }, { op: "delete", coll: "todos", id: "a" }]);
    eq(await db.pendingCount(), 3, "each op of a batch is queued");
    db.close();
    const again = await openTodos(env, db.name);
    eq(await again.pendingCount(), 3, "the outbox is durable across reopen");
    again.close();
  },

  async query_operators_and_nested_paths(env) {
    const db = await openTodos(env);
    await db.batch(sampleTodos(40).map((doc) => ({ op: "insert", coll: "todos", doc })));
    const ids = (rows) => rows.map((r) => r.id);
    const all = sampleTodos(40);
    const expect = (pred) => all.filter(pred).map((d) => d.id);
    eq(ids(await db.query("todos", { where: { done: true } })), expect((d) => d.done === true), "equality on a boolean");
    eq(ids(await db.query("todos", { where: { done: null } })), expect((d) => d.done == null), "null matches null");
    eq(ids(await db.query("todos", { where: { priority: { $gte: 3 } } })), expect((d) => typeof d.priority === "number" && d.priority >= 3), "$gte stays within numbers");
    eq(ids(await db.query("todos", { where: { priority: { $gt: 1, $lt: 4 } } })), expect((d) => typeof d.priority === "number" && d.priority > 1 && d.priority < 4), "$gt and $lt");
    eq(ids(await db.query("todos", { where: { priority: { $lte: 1 } } })), expect((d) => typeof d.priority === "number" && d.priority <= 1), "$lte");
    eq(ids(await db.query("todos", { where: { priority: { $ne: 2 } } })), expect((d) => d.priority !== 2), "$ne includes missing and other types");
    eq(ids(await db.query("todos", { where: { priority: { $in: [0, "high"] } } })), expect((d) => d.priority === 0 || d.priority === "high"), "$in");
    eq(ids(await db.query("todos", { where: { "meta.owner": "bob" } })), expect((d) => d.meta.owner === "bob"), "nested path");
    eq(ids(await db.query("todos", { where: { "meta.tags": ["x"] } })), expect((d) => d.meta.tags.length === 1), "deep equality on arrays");
    eq(ids(await db.query("todos", { where: { "meta.owner": "ann", done: true, listId: { $in: ["l0", "l3"] } } })),
      expect((d) => d.meta.owner === "ann" && d.done === true && (d.listId === "l0" || d.listId === "l3")), "AND of conditions");
    eq(ids(await db.query("todos", { where: { priority: { $gt: 3, $lt: 1 } } })), [], "an empty range");
    eq(ids(await db.query("todos", { where: { nothing: { $eq: 1 } } })), [], "$eq on a missing field");
    eq((await db.query("todos")).length, 40, "no query: everything");
    eq(ids(await db.query("todos", { limit: 3 })), ["t000", "t001", "t002"], "default order is by id");
    db.close();
  },

  async indexed_and_scanned_queries_agree(env) {
    // The same documents in a store with indexes and one without.
    const indexed = await openTodos(env);
    const plain = await openTodos(env, dbName("plain"), { todos: {}, lists: {}, drafts: {} });
    const docs = sampleTodos(120);
    for (const db of [indexed, plain]) await db.batch(docs.map((doc) => ({ op: "insert", coll: "todos", doc })));
    const queries = [
      { where: { done: false } },
      { where: { done: true }, orderBy: "createdAt", desc: true, limit: 7 },
      { where: { priority: { $gte: 3 } } },
      { where: { priority: { $gt: 0, $lte: 2 } }, orderBy: "priority", desc: true },
      { where: { priority: { $lt: "z" } } },
      { where: { priority: null } },
      { orderBy: "createdAt", desc: true, limit: 20 },
      { orderBy: "createdAt", limit: 10, offset: 5 },
      { orderBy: "priority", desc: true, offset: 100 },
      { where: { "meta.owner": "cy" }, orderBy: "createdAt" },
      { where: { listId: "l2" }, orderBy: "createdAt", desc: true, limit: 5, offset: 2 },
      { where: { listId: "l1", createdAt: { $gte: 1030, $lt: 1080 } } },
      { where: { listId: "l1", createdAt: { $gt: 1030 } }, orderBy: "createdAt", limit: 4 },
      { where: { listId: { $ne: "l1" }, done: false }, orderBy: "text" },
      { where: { done: false, priority: 4 } },
    ];
    for (const q of queries) {
      const a = await indexed.query("todos", q);
      const b = await plain.query("todos", q);
      eq(a, b, `index vs scan for ${JSON.stringify(q)}`);
      eq(await indexed.count("todos", q.where), await plain.count("todos", q.where), `count ${JSON.stringify(q.where)}`);
    }
    // A few against a hand-computed answer, so both cannot be wrong alike.
    const newest = docs.slice().sort((x, y) => y.createdAt - x.createdAt || (x.id < y.id ? 1 : -1)).slice(0, 20).map((d) => d.id);
    eq((await indexed.query("todos", { orderBy: "createdAt", desc: true, limit: 20 })).map((d) => d.id), newest, "newest 20");
    indexed.close();
    plain.close();
  },

  async or_prefix_exists_nin_indexed_and_scanned(env) {
    // Each new operator in a store with indexes and one without, both
    // against an answer computed here by hand.
    const indexes = ["done", "createdAt", "priority", "meta.owner", "text", ["listId", "text"]];
    const indexed = await openTodos(env, dbName("ops"), { todos: { indexes }, lists: {}, drafts: {} });
    const plain = await openTodos(env, dbName("ops-plain"), { todos: {}, lists: {}, drafts: {} });
    const docs = sampleTodos(90);
    // Strings that test prefix ranges at their edges (UTF-16 order).
    const odd = ["todo", "todo 1", "tod", "todo\uffff", "todo\uffff\uffff", "todo\u{10000}", "\uffff", "Todo 1"];
    odd.forEach((text, i) => docs.push({ id: `o${i}`, text, listId: "l1", createdAt: 900 + i }));
    docs.push({ id: "o-num", text: 7, listId: "l1" });
    docs.push({ id: "o-none", listId: "l2" });
    for (const db of [indexed, plain]) await db.batch(docs.map((doc) => ({ op: "insert", coll: "todos", doc })));
    const byId = (a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
    const has = (d, path) => path.split(".").reduce((o, k) => (o !== null && typeof o === "object" && k in o ? o[k] : undefined), d) !== undefined;
    const starts = (v, p) => typeof v === "string" && v.startsWith(p);
    const num = (v) => (typeof v === "number" ? v : undefined);
    const cases = [
      [{ where: { text: { $startsWith: "todo 1" } } }, (d) => starts(d.text, "todo 1")],
      [{ where: { text: { $startsWith: "todo" } }, orderBy: "text", limit: 12 }, (d) => starts(d.text, "todo"), "text", 12],
      [{ where: { text: { $startsWith: "todo\uffff" } } }, (d) => starts(d.text, "todo\uffff")],
      [{ where: { text: { $startsWith: "\uffff" } } }, (d) => starts(d.text, "\uffff")],
      [{ where: { text: { $startsWith: "" } } }, (d) => typeof d.text === "string"],
      [{ where: { listId: "l1", text: { $startsWith: "todo 2" } } }, (d) => d.listId === "l1" && starts(d.text, "todo 2")],
      [{ where: { priority: { $exists: false } } }, (d) => !has(d, "priority")],
      [{ where: { "meta.owner": { $exists: true }, done: true } }, (d) => has(d, "meta.owner") && d.done === true],
      [{ where: { priority: { $nin: [0, 1, "high"] } } }, (d) => ![0, 1, "high"].includes(d.priority)],
      [{ where: { $or: [{ priority: 4 }, { "meta.owner": "cy" }] } }, (d) => d.priority === 4 || d.meta?.owner === "cy"],
      [{ where: { $or: [{ priority: 4 }, { "meta.owner": "cy" }] }, orderBy: "createdAt", desc: true, limit: 8, offset: 3 },
        (d) => d.priority === 4 || d.meta?.owner === "cy", "createdAt", 8, 3, true],
      [{ where: { $or: [{ text: { $startsWith: "todo 3" } }, { createdAt: { $gte: 1095 } }, { priority: 2 }] } },
        (d) => starts(d.text, "todo 3") || (num(d.createdAt) ?? -1) >= 1095 || d.priority === 2],
      [{ where: { done: false, $or: [{ priority: 1 }, { priority: 3 }] } }, (d) => d.done === false && (d.priority === 1 || d.priority === 3)],
      [{ where: { $or: [{ priority: 1 }, { listId: "l2" }] } }, (d) => d.priority === 1 || d.listId === "l2"],
      [{ where: { $or: [{ priority: { $gt: 9, $lt: 1 } }, { priority: 0 }] } }, (d) => d.priority === 0],
    ];
    const cmp = (path) => (a, b) => {
      const rank = (v) => (v === undefined || v === null ? 0 : typeof v === "boolean" ? 1 : typeof v === "number" ? 2 : typeof v === "string" ? 3 : 4);
      const x = a[path];
      const y = b[path];
      if (rank(x) !== rank(y)) return rank(x) - rank(y);
      if (rank(x) === 2 || rank(x) === 3) return x < y ? -1 : x > y ? 1 : 0;
      return 0;
    };
    for (const [q, pred, orderBy, limit, offset = 0, desc = false] of cases) {
      let want = docs.filter(pred).sort(byId);
      if (orderBy) want.sort((a, b) => cmp(orderBy)(a, b) || byId(a, b));
      if (desc) want.reverse();
      want = want.slice(offset, limit === undefined ? undefined : offset + limit).map((d) => d.id);
      const what = JSON.stringify(q);
      eq((await indexed.query("todos", q)).map((d) => d.id), want, `indexed ${what}`);
      eq((await plain.query("todos", q)).map((d) => d.id), want, `scanned ${what}`);
      ok(want.length > 0 || q.where.$or, `${what} matches something`);
      const all = docs.filter(pred).length;
      eq(await indexed.count("todos", q.where), all, `indexed count ${what}`);
      eq(await plain.count("todos", q.where), all, `scanned count ${what}`);
    }
    // Operators still refused, and the new ones' arguments checked.
    await rejects(indexed.query("todos", { where: { $and: [{ done: true }] } }), "UNKNOWN_OPERATOR", env, "$and");
    await rejects(indexed.query("todos", { where: { $or: [{ done: { $regex: "x" } }] } }), "UNKNOWN_OPERATOR", env, "inside $or");
    await rejects(indexed.query("todos", { where: { $or: [] } }), "INVALID_QUERY", env, "empty $or");
    await rejects(indexed.query("todos", { where: { text: { $startsWith: 1 } } }), "INVALID_QUERY", env, "$startsWith 1");
    await rejects(indexed.query("todos", { where: { text: { $exists: "yes" } } }), "INVALID_QUERY", env, "$exists yes");
    await rejects(indexed.query("todos", { where: { text: { $nin: "a" } } }), "INVALID_QUERY", env, "$nin a");
    indexed.close();
    plain.close();
  },

  async live_queries_follow_the_new_operators(env) {
    const db = await openTodos(env);
    const other = await openTodos(env, db.name);
    const seen = [];
    const stop = db.subscribe(
      "todos",
      { where: { $or: [{ text: { $startsWith: "buy" } }, { priority: { $exists: false }, done: { $nin: [true] } }] }, orderBy: "createdAt" },
      (rows) => seen.push(rows.map((r) => r.id)),
    );
    await until(() => seen.length === 1, 5000, "first result");
    eq(seen[0], [], "empty at first");
    await db.insert("todos", { id: "a", text: "buy milk", priority: 1, createdAt: 3 });
    await until(() => seen.length === 2, 5000, "insert matching $startsWith");
    eq(seen[1], ["a"], "a matches");
    await db.insert("todos", { id: "b", text: "call", createdAt: 1 });
    await until(() => seen.length === 3, 5000, "insert matching the other branch");
    eq(seen[2], ["b", "a"], "b by $exists/$nin");
    await db.update("todos", "b", { done: true });
    await until(() => seen.length === 4, 5000, "update leaving the branch");
    eq(seen[3], ["a"], "b left");
    await other.insert("todos", { id: "c", text: "buy bread", createdAt: 2 });
    await until(() => seen.length === 5, 5000, "another instance's write");
    eq(seen[4], ["c", "a"], "c from the other instance");
    // A non-matching write, then a matching one (once another subscription
    // has seen the first): one call, for the second.
    let everything = [];
    const stopAll = db.subscribe("todos", {}, (rows) => (everything = rows.map((r) => r.id)));
    await db.insert("todos", { id: "d", text: "sell", priority: 2, createdAt: 0 });
    await until(() => everything.includes("d"), 5000, "the non-matching write, seen by a subscription it matches");
    await db.insert("todos", { id: "e", text: "buy eggs", priority: 1, createdAt: 4 });
    await until(() => seen.length >= 6, 5000, "the matching write after it");
    eq(seen.slice(5), [["c", "a", "e"]], "a non-matching write calls nothing: the next call is the matching write's");
    stopAll();
    stop();
    db.close();
    other.close();
  },

  async get_many_reads_ids_in_order(env) {
    const db = await openTodos(env);
    await db.batch(sampleTodos(10).map((doc) => ({ op: "insert", coll: "todos", doc })));
    const tmp = await db.insert("todos", { text: "new" });
    const got = await db.getMany("todos", ["t005", "nope", "t001", tmp, "t005"]);
    eq(got.length, 5, "one entry per id");
    eq(got.map((d) => d && d.id), ["t005", undefined, "t001", tmp, "t005"], "in the order asked, undefined where missing");
    ok(got[1] === undefined, "missing is undefined");
    eq(got[0], sampleTodos(10)[5], "whole documents");
    eq(await db.getMany("todos", []), [], "no ids");
    await rejects(db.getMany("todos", "t001"), "INVALID_ID", env, "not an array");
    await rejects(db.getMany("todos", ["t001", 5]), "INVALID_ID", env, "not a string");
    await rejects(db.getMany("nope", ["t001"]), "UNKNOWN_COLLECTION", env, "unknown collection");
    db.close();
    await rejects(db.getMany("todos", ["t001"]), "CLOSED", env, "closed");
  },

  async update_functions_read_and_write_in_one_transaction(env) {
    // Two instances of one database (as two tabs) each increment one
    // counter 100 times: no increment may be lost between read and write.
    const a = await openTodos(env);
    const b = await openTodos(env, a.name);
    await a.insert("lists", { id: "c", n: 0 });
    const inc = (doc) => ({ n: doc.n + 1 });
    const run = async (db) => {
      for (let i = 0; i < 100; i++) await db.update("lists", "c", inc);
    };
    await Promise.all([run(a), run(b)]);
    eq((await a.get("lists", "c")).n, 200, "200 increments, none lost");
    eq((await b.get("lists", "c")).n, 200, "the other instance sees the same");
    eq(await a.pendingCount(), 201, "one outbox entry per update");
    // Changing the document in place and returning nothing: the new
    // document, removed fields included.
    await a.insert("todos", { id: "t", text: "x", tags: ["a"], meta: { k: 1, gone: 2 }, old: true });
    await a.update("todos", "t", (doc) => {
      doc.tags.push("b");
      delete doc.old;
      delete doc.meta.gone;
      doc.done = true;
    });
    eq(await a.get("todos", "t"), { id: "t", text: "x", tags: ["a", "b"], meta: { k: 1 }, done: true }, "changed in place");
    const before = await a.pendingCount();
    // A function that throws: a typed error, its cause, nothing written.
    const boom = new Error("boom");
    const err = await rejects(a.update("todos", "t", () => { throw boom; }), "UPDATER_FAILED", env, "throwing function");
    ok(err.cause === boom && err.message.includes("boom"), `the cause is what was thrown: ${err.message}`);
    await rejects(a.update("todos", "t", (doc) => { doc.text = "changed"; throw boom; }), "UPDATER_FAILED", env, "throws after changing");
    await rejects(a.update("todos", "t", async (doc) => ({ n: 1 })), "INVALID_PATCH", env, "an async function");
    await rejects(a.update("todos", "t", () => 5), "INVALID_PATCH", env, "a number");
    await rejects(a.update("todos", "t", () => ({ f: () => 1 })), "INVALID_PATCH", env, "not JSON");
    await rejects(a.update("todos", "t", () => ({ id: "other" })), "INVALID_PATCH", env, "changes the id");
    await rejects(a.update("todos", "t", (doc) => { delete doc.id; }), "INVALID_PATCH", env, "removes the id");
    await rejects(a.update("todos", "missing", inc), "NOT_FOUND", env, "a missing document");
    let called = 0;
    await rejects(a.update("todos", "missing", () => { called += 1; }), "NOT_FOUND", env, "missing: the function is not called");
    eq(called, 0, "not called without a document");
    eq(await a.get("todos", "t"), { id: "t", text: "x", tags: ["a", "b"], meta: { k: 1 }, done: true }, "nothing written");
    eq(await a.pendingCount(), before, "nothing queued");
    a.close();
    b.close();
  },

  async dates_round_trip_and_compare_as_instants(env) {
    const collections = { sessions: { indexes: ["startedAt", ["user", "startedAt"]] } };
    const indexed = await env.open({ name: dbName("dates"), collections });
    const plain = await env.open({ name: dbName("dates-plain"), collections: { sessions: {} } });
    const t0 = Date.UTC(2026, 0, 1);
    const docs = [];
    for (let i = 0; i < 40; i++) {
      const doc = {
        id: `s${String(i).padStart(2, "0")}`,
        user: ["ann", "bob"][i % 2],
        startedAt: new Date(t0 + ((i * 7) % 40) * 3600_000),
        pauses: [{ at: new Date(t0 + i), note: "p" }],
        meta: { updated: new Date(t0 - i * 1000) },
      };
      if (i % 10 === 3) doc.startedAt = t0; // a number: another type, not an instant
      if (i % 10 === 7) doc.startedAt = new Date(t0).toISOString(); // a string
      if (i % 10 === 9) delete doc.startedAt;
      docs.push(doc);
    }
    for (const db of [indexed, plain]) await db.batch(docs.map((doc) => ({ op: "insert", coll: "sessions", doc })));
    // Back as Dates, everywhere a document comes out.
    const s01 = await indexed.get("sessions", "s01");
    ok(s01.startedAt instanceof Date && s01.startedAt.getTime() === docs[1].startedAt.getTime(), "get: a Date with the same instant");
    ok(s01.pauses[0].at instanceof Date && s01.meta.updated instanceof Date, "nested Dates too");
    eq(s01.meta.updated.getTime(), t0 - 1000, "nested instant");
    const [many] = await indexed.getMany("sessions", ["s02"]);
    ok(many.startedAt instanceof Date, "getMany");
    const rows = await indexed.query("sessions", { where: { user: "ann" } });
    ok(rows.every((r) => r.pauses[0].at instanceof Date), "query");
    const s03 = await indexed.get("sessions", "s03");
    eq(typeof s03.startedAt, "number", "a number stays a number");
    eq(typeof (await indexed.get("sessions", "s07")).startedAt, "string", "a string stays a string");
    // Range queries and orderBy on a Date field: through the index, by a
    // scan, and by hand.
    const isDate = (v) => v instanceof Date;
    const at = (d) => d.startedAt.getTime();
    const from = new Date(t0 + 10 * 3600_000);
    const to = new Date(t0 + 30 * 3600_000);
    const byTime = (a, b) => at(a) - at(b) || (a.id < b.id ? -1 : 1);
    const cases = [
      [{ where: { startedAt: { $gte: from, $lt: to } } }, docs.filter((d) => isDate(d.startedAt) && at(d) >= from.getTime() && at(d) < to.getTime()).map((d) => d.id)],
      [{ where: { startedAt: { $gt: from } }, orderBy: "startedAt", limit: 5 }, docs.filter((d) => isDate(d.startedAt) && at(d) > from.getTime()).sort(byTime).slice(0, 5).map((d) => d.id)],
      [{ where: { startedAt: { $lte: from } }, orderBy: "startedAt", desc: true }, docs.filter((d) => isDate(d.startedAt) && at(d) <= from.getTime()).sort(byTime).reverse().map((d) => d.id)],
      [{ where: { user: "bob", startedAt: { $gte: from } }, orderBy: "startedAt" }, docs.filter((d) => d.user === "bob" && isDate(d.startedAt) && at(d) >= from.getTime()).sort(byTime).map((d) => d.id)],
      [{ where: { startedAt: new Date(docs[5].startedAt.getTime()) } }, docs.filter((d) => isDate(d.startedAt) && at(d) === at(docs[5])).map((d) => d.id)],
      [{ where: { startedAt: { $gte: 0 } } }, ["s03", "s13", "s23", "s33"]],
    ];
    for (const [q, want] of cases) {
      const what = JSON.stringify(q);
      ok(want.length > 0, `${what}: the case matches something`);
      eq((await indexed.query("sessions", q)).map((d) => d.id), want, `indexed ${what}`);
      eq((await plain.query("sessions", q)).map((d) => d.id), want, `scanned ${what}`);
    }
    // orderBy over mixed types: missing, numbers, Dates (by instant), strings.
    const ordered = (await indexed.query("sessions", { orderBy: "startedAt" })).map((d) => d.id);
    eq(ordered, (await plain.query("sessions", { orderBy: "startedAt" })).map((d) => d.id), "orderBy indexed = scanned");
    const kind = (v) => (v === undefined ? 0 : typeof v === "number" ? 1 : isDate(v) ? 2 : 3);
    const want = docs.slice().sort((a, b) => kind(a.startedAt) - kind(b.startedAt) || (kind(a.startedAt) === 2 ? at(a) - at(b) : 0) || (a.id < b.id ? -1 : 1));
    eq(ordered, want.map((d) => d.id), "orderBy by hand");
    // Patches, update functions and live queries carry Dates.
    const later = new Date(t0 + 99 * 3600_000);
    const seen = [];
    const stop = indexed.subscribe("sessions", { where: { startedAt: { $gte: later } } }, (r) => seen.push(r));
    await until(() => seen.length === 1, 5000, "first result");
    await indexed.update("sessions", "s00", { startedAt: later });
    await until(() => seen.length === 2, 5000, "a Date patch in a live query");
    ok(seen[1][0].startedAt instanceof Date && seen[1][0].startedAt.getTime() === later.getTime(), "the live row holds a Date");
    await indexed.update("sessions", "s00", (doc) => {
      ok(doc.startedAt instanceof Date, "an update function gets Dates");
      return { endedAt: new Date(doc.startedAt.getTime() + 60_000) };
    });
    eq((await indexed.get("sessions", "s00")).endedAt.getTime(), later.getTime() + 60_000, "a Date from an update function");
    stop();
    await rejects(indexed.query("sessions", { where: { startedAt: { $gt: new Date(NaN) } } }), "INVALID_QUERY", env, "an invalid Date in a query");
    indexed.close();
    plain.close();
  },

  async live_functions_rerun_on_writes_to_what_they_read(env) {
    const db = await openTodos(env);
    const other = await openTodos(env, db.name); // another tab
    await db.insert("lists", { id: "l1", name: "home" });
    let runs = 0;
    const values = [];
    const errors = [];
    const q = db.live(async (tx) => {
      runs += 1;
      const list = await tx.get("lists", "l1");
      const n = await tx.count("todos", { listId: "l1" });
      const [first] = await tx.getMany("todos", ["a"]);
      return { name: list && list.name, n, first: first && first.text };
    });
    const sub = q.subscribe({ next: (v) => values.push(v), error: (e) => errors.push(e) });
    await until(() => values.length === 1, 5000, "the first run");
    eq(values[0], { name: "home", n: 0 }, "first value");
    await db.update("lists", "l1", { name: "work" });
    await until(() => values.length === 2, 5000, "a write to one collection read, this tab");
    eq(values[1].name, "work", "re-run");
    await other.insert("todos", { id: "a", listId: "l1", text: "milk" });
    await until(() => values.length === 3, 5000, "a write to the other collection read, another tab");
    eq(values[2], { name: "work", n: 1, first: "milk" }, "re-run after the other tab's write");
    await db.batch([
      { op: "insert", coll: "todos", doc: { listId: "l1" } },
      { op: "insert", coll: "todos", doc: { listId: "l1" } },
      { op: "update", coll: "lists", id: "l1", patch: { name: "both" } },
    ]);
    await until(() => values.length === 4, 5000, "a batch");
    eq(values[3], { name: "both", n: 3, first: "milk" }, "one run for one batch");
    // Writes to collections it did not read, then one to a collection it
    // read (once another subscription has seen them): one run, for that one.
    const before = runs;
    let drafts = 0;
    const stopDrafts = db.subscribe("drafts", {}, (rows) => (drafts = rows.length));
    await db.insert("drafts", { text: "unrelated" });
    await other.insert("drafts", { text: "unrelated too" });
    await until(() => drafts === 2, 5000, "the unrelated writes, seen by a subscription to them");
    await db.update("lists", "l1", { name: "both again" });
    await until(() => values.length === 5, 5000, "the related write after them");
    eq(runs, before + 1, "writes to collections it did not read run nothing");
    eq(values[4].name, "both again", "the related write's run");
    eq(errors, [], "no error");
    sub.unsubscribe();
    ok(sub.closed, "closed after unsubscribe");
    // A write it would see, then a positive event after it: a subscription
    // to the same collection hears of it.
    let lists = [];
    const stopLists = db.subscribe("lists", {}, (rows) => (lists = rows.map((r) => r.name)));
    await db.update("lists", "l1", { name: "after" });
    await until(() => lists.includes("after"), 5000, "the write, seen by another subscription");
    eq(values.length, 5, "nothing after unsubscribe");
    eq(runs, before + 1, "no run after unsubscribe");
    stopDrafts();
    stopLists();

    // Errors reach `error` and end the subscription.
    const boom = new Error("boom");
    const failed = [];
    const s2 = db.live(async (tx) => {
      await tx.get("lists", "l1");
      throw boom;
    }).subscribe({ next: () => failed.push("next"), error: (e) => failed.push(e) });
    await until(() => failed.length === 1, 5000, "the error");
    ok(failed[0] === boom && s2.closed, "the thrown error, and closed");
    const bad = [];
    db.live(async (tx) => tx.query("nope")).subscribe({ error: (e) => bad.push(e) });
    db.live("todos", { where: { $and: [] } }).subscribe(null, (e) => bad.push(e));
    db.live("nope").subscribe({ error: (e) => bad.push(e) });
    await until(() => bad.length === 3, 5000, "three errors");
    eq(bad.map((e) => e.code).sort(), ["UNKNOWN_COLLECTION", "UNKNOWN_COLLECTION", "UNKNOWN_OPERATOR"], "typed errors");

    // The collection form, the Svelte store contract and the interop key.
    const rows = [];
    const store = db.live("todos", { where: { listId: "l1" }, orderBy: "id" });
    const unsub = store.subscribe((r) => rows.push(r.length)); // what Svelte calls
    ok(typeof unsub.unsubscribe === "function", "Svelte: an object with unsubscribe");
    ok(store["@@observable"]() === store, "the Observable interop key");
    if (typeof Symbol.observable === "symbol") ok(store[Symbol.observable]() === store, "Symbol.observable");
    await until(() => rows.length === 1, 5000, "rows");
    await other.insert("todos", { listId: "l1" });
    await until(() => rows.length === 2, 5000, "rows after another tab's write");
    eq(rows, [3, 4], "the rows' counts");
    unsub.unsubscribe();
    db.close();
    other.close();
  },

  async compound_index_order_limit_offset(env) {
    const db = await openTodos(env);
    const docs = sampleTodos(60);
    await db.batch(docs.map((doc) => ({ op: "insert", coll: "todos", doc })));
    const l3 = docs.filter((d) => d.listId === "l3").sort((a, b) => a.createdAt - b.createdAt || (a.id < b.id ? -1 : 1));
    eq((await db.query("todos", { where: { listId: "l3" }, orderBy: "createdAt" })).map((d) => d.id), l3.map((d) => d.id), "equality prefix + order");
    eq((await db.query("todos", { where: { listId: "l3" }, orderBy: "createdAt", desc: true, limit: 3, offset: 1 })).map((d) => d.id),
      l3.slice().reverse().slice(1, 4).map((d) => d.id), "desc with limit and offset");
    const ranged = l3.filter((d) => d.createdAt > 1040 && d.createdAt <= 1090);
    eq((await db.query("todos", { where: { listId: "l3", createdAt: { $gt: 1040, $lte: 1090 } } , orderBy: "createdAt" })).map((d) => d.id),
      ranged.map((d) => d.id), "equality prefix + range");
    db.close();
  },

  async count_matches_query(env) {
    const db = await openTodos(env);
    await db.batch(sampleTodos(30).map((doc) => ({ op: "insert", coll: "todos", doc })));
    eq(await db.count("todos"), 30, "all");
    eq(await db.count("todos", { done: true }), (await db.query("todos", { where: { done: true } })).length, "indexed");
    eq(await db.count("todos", { text: { $gte: "todo 2" } }), (await db.query("todos", { where: { text: { $gte: "todo 2" } } })).length, "scanned");
    await rejects(db.count("todos", { done: { $like: 1 } }), "UNKNOWN_OPERATOR", env, "count validates");
    db.close();
  },

  async subscribe_delivers_initial_and_changes(env) {
    const db = await openTodos(env);
    await db.insert("todos", { id: "a", done: false, createdAt: 1 });
    const seen = [];
    const stop = db.subscribe("todos", { where: { done: false }, orderBy: "createdAt" }, (rows) => seen.push(rows.map((r) => r.id)));
    ok(typeof stop === "function", "subscribe returns a function");
    await until(() => seen.length === 1, 2000, "initial result");
    eq(seen[0], ["a"], "initial result");
    await db.insert("todos", { id: "b", done: false, createdAt: 2 });
    await until(() => seen.length === 2, 2000, "insert delivered");
    eq(seen[1], ["a", "b"], "after insert");
    await db.update("todos", "a", { done: true });
    await until(() => seen.length === 3, 2000, "update delivered");
    eq(seen[2], ["b"], "after update");
    await db.delete("todos", "b");
    await until(() => seen.length === 4, 2000, "delete delivered");
    eq(seen[3], [], "after delete");
    stop();
    stop(); // twice is harmless
    // A live subscription on the same query sees the next write: by then the
    // stopped one would have been called too (both are patched in one pass).
    const probe = [];
    db.subscribe("todos", { where: { done: false }, orderBy: "createdAt" }, (rows) => probe.push(rows.map((r) => r.id)));
    await db.insert("todos", { id: "c", done: false });
    await until(() => probe.some((ids) => ids.includes("c")), 2000, "the write reached a live subscription");
    eq(seen.length, 4, "no callback after unsubscribe");
    db.close();
  },

  async subscribe_ignores_unrelated_writes(env) {
    const db = await openTodos(env);
    await db.insert("todos", { id: "a", done: false });
    const seen = [];
    db.subscribe("todos", { where: { done: false } }, (rows) => seen.push(rows.map((r) => r.id)));
    await until(() => seen.length === 1, 2000, "initial result");
    await db.insert("lists", { id: "l" });
    await db.insert("todos", { id: "z", done: true });
    await db.update("todos", "z", { text: "still done" });
    // A subscription delivers in order: the relevant write's callback comes
    // after any the unrelated ones caused.
    await db.insert("todos", { id: "y", done: false });
    await until(() => seen.some((ids) => ids.includes("y")), 2000, "a relevant write");
    eq(seen, [["a"], ["a", "y"]], "writes that do not change the result are not delivered");
    db.close();
  },

  async subscribe_coalesces_one_tick(env) {
    const db = await openTodos(env);
    const seen = [];
    db.subscribe("todos", {}, (rows) => seen.push(rows.length));
    await until(() => seen.length === 1, 2000, "initial result");
    await Promise.all([
      db.insert("todos", { id: "1" }),
      db.insert("todos", { id: "2" }),
      db.insert("todos", { id: "3" }),
    ]);
    await until(() => seen.includes(3), 2000, "the three writes");
    // A later write: its callback comes after any the three caused.
    await db.insert("todos", { id: "4" });
    await until(() => seen.includes(4), 2000, "the later write");
    eq(seen, [0, 3, 4], "three writes in one tick, one callback");
    db.close();
  },

  async subscribe_across_instances_via_broadcast_channel(env) {
    // Two store objects on one database, as two tabs would have.
    const name = dbName("bc");
    const a = await openTodos(env, name);
    const b = await openTodos(env, name);
    const seen = [];
    b.subscribe("todos", { where: { done: false } }, (rows) => seen.push(rows.map((r) => r.id)));
    await until(() => seen.length === 1, 2000, "initial");
    await a.insert("todos", { id: "from-a", done: false });
    await until(() => seen.length === 2, 3000, "write from the other instance");
    eq(seen[1], ["from-a"], "other instance's write reached this subscription");
    a.close();
    b.close();
  },

  async throwing_listener_does_not_break_store(env) {
    const db = await openTodos(env);
    // The error is rethrown asynchronously (docs/architecture.md); caught
    // here so that it does not fail the test page.
    const thrown = [];
    const swallow = (ev) => {
      if (ev.error && ev.error.message === "listener bug") {
        thrown.push(ev.error);
        ev.preventDefault();
      }
    };
    self.addEventListener("error", swallow);
    let good = 0;
    let bad = 0;
    db.subscribe("todos", {}, () => {
      bad += 1;
      throw new Error("listener bug");
    });
    db.subscribe("todos", {}, () => good++);
    await until(() => good === 1, 2000, "initial");
    await db.insert("todos", { id: "a" });
    await until(() => good === 2, 2000, "second listener still called");
    eq((await db.get("todos", "a")).id, "a", "store works");
    await until(() => bad === 2 && thrown.length === 2, 2000, "the listener's error rethrown for each call");
    ok(thrown.every((e) => e instanceof Error), "the listener's own Error object");
    self.removeEventListener("error", swallow);
    db.close();
  },

  async desc_queries_agree_with_and_without_get_all_options(env) {
    // Ties on the index key: IndexedDB orders them by primary key (`prev`
    // reverses both), as the core orders ties by id.
    const db = await openTodos(env);
    const plain = await openTodos(env, dbName("plain"), { todos: {}, lists: {}, drafts: {} });
    const docs = [];
    for (let i = 0; i < 300; i++) {
      docs.push({ id: `d${String((i * 7919) % 1000).padStart(3, "0")}`, createdAt: 100 + (i % 9), listId: `l${i % 2}`, done: i % 4 === 0 });
    }
    for (const s of [db, plain]) await s.batch(docs.map((doc) => ({ op: "insert", coll: "todos", doc })));
    const byAt = (a, b) => a.createdAt - b.createdAt || (a.id < b.id ? -1 : 1);
    const newest = docs.slice().sort(byAt).reverse();
    const l1 = docs.filter((d) => d.listId === "l1").sort(byAt);
    const queries = [
      [{ orderBy: "createdAt", desc: true, limit: 20 }, newest.slice(0, 20)],
      [{ orderBy: "createdAt", desc: true, limit: 20, offset: 7 }, newest.slice(7, 27)],
      [{ orderBy: "createdAt", desc: true, limit: 5, offset: 250 }, newest.slice(250, 255)],
      [{ orderBy: "createdAt", desc: true, offset: 290 }, newest.slice(290)],
      [{ orderBy: "createdAt", desc: true, offset: 30 }, newest.slice(30)],
      [{ orderBy: "createdAt", desc: true }, newest],
      [{ orderBy: "createdAt", desc: true, limit: 0 }, []],
      [{ orderBy: "createdAt", limit: 0 }, []],
      [{ orderBy: "createdAt", limit: 10, offset: 3 }, docs.slice().sort(byAt).slice(3, 13)],
      [{ where: { createdAt: { $gte: 104 } }, orderBy: "createdAt", desc: true, limit: 40, offset: 1 }, newest.filter((d) => d.createdAt >= 104).slice(1, 41)],
      [{ where: { listId: "l1" }, orderBy: "createdAt", desc: true, limit: 12, offset: 2 }, l1.slice().reverse().slice(2, 14)],
      [{ desc: true, limit: 15, offset: 4 }, docs.slice().sort((a, b) => (a.id < b.id ? 1 : -1)).slice(4, 19)],
      [{ where: { done: true }, desc: true, limit: 6 }, docs.filter((d) => d.done).sort((a, b) => (a.id < b.id ? 1 : -1)).slice(0, 6)],
    ];
    const run = async () => {
      const out = [];
      for (const [q] of queries) out.push(await db.query("todos", q));
      return out;
    };
    const fast = await run();
    // Firefox's way (no IndexedDB 3 getAll options): the cursor.
    const saved = [];
    for (const P of [IDBObjectStore.prototype, IDBIndex.prototype]) {
      const d = Object.getOwnPropertyDescriptor(P, "getAllRecords");
      if (d) {
        saved.push([P, d]);
        delete P.getAllRecords;
      }
    }
    let slow;
    try {
      slow = await run();
    } finally {
      for (const [P, d] of saved) Object.defineProperty(P, "getAllRecords", d);
    }
    for (let i = 0; i < queries.length; i++) {
      const [q, want] = queries[i];
      const what = JSON.stringify(q);
      eq(fast[i].map((d) => d.id), want.map((d) => d.id), `getAll options: ${what}`);
      eq(slow[i], fast[i], `cursor: ${what}`);
      eq(await plain.query("todos", q), fast[i], `scan: ${what}`);
    }
    db.close();
    plain.close();
  },

  async live_limited_window_follows_every_kind_of_write(env) {
    const db = await openTodos(env);
    const docs = [];
    for (let i = 0; i < 12; i++) docs.push({ id: `d${String(i).padStart(2, "0")}`, createdAt: 100 + (i >> 1), done: i % 3 === 0 });
    await db.batch(docs.map((doc) => ({ op: "insert", coll: "todos", doc })));
    const queries = [
      { orderBy: "createdAt", desc: true, limit: 4 },
      { where: { done: false }, orderBy: "createdAt", limit: 3 },
      { where: { done: false } },
      { orderBy: "createdAt", desc: true, limit: 3, offset: 2 },
    ];
    const seen = queries.map(() => []);
    queries.forEach((q, i) => db.subscribe("todos", q, (rows) => seen[i].push(rows)));
    await until(() => seen.every((s) => s.length === 1), 2000, "initial results");
    // A fence: two writes in one batch that change every query's result (the
    // newest and the oldest open todo), then their removal. A subscription
    // delivers in order, so the callbacks before the first result holding
    // them are all that the writes before the fence caused.
    let fences = 0;
    const fence = async (what) => {
      fences += 1;
      const hi = `zhi${fences}`;
      const lo = `alo${fences}`;
      const before = seen.map((s) => s.length);
      const results = async () => {
        const out = [];
        for (const q of queries) out.push(JSON.stringify(await db.query("todos", q)));
        return out;
      };
      const unfenced = await results();
      await db.batch([
        { op: "insert", coll: "todos", doc: { id: hi, createdAt: 10000, done: false } },
        { op: "insert", coll: "todos", doc: { id: lo, createdAt: -1000, done: false } },
      ]);
      const fenced = await results();
      fenced.forEach((f, i) => ok(f !== unfenced[i], `${what}: the fence changes query ${i}`));
      const shows = (want) => seen.every((s, i) => JSON.stringify(s[s.length - 1]) === want[i]);
      await until(() => shows(fenced), 2000, `${what}: the fence`);
      const first = seen.map((s, i) => s.findIndex((rows, k) => k >= before[i] && JSON.stringify(rows) === fenced[i]));
      await db.batch([{ op: "delete", coll: "todos", id: hi }, { op: "delete", coll: "todos", id: lo }]);
      await until(() => shows(unfenced), 2000, `${what}: the fence removed`);
      return first;
    };
    // After each step: every subscription shows what a query shows now, and
    // called back exactly when its result changed.
    const step = async (what, write, writes = 1) => {
      const before = seen.map((s) => s.length);
      const prev = seen.map((s) => JSON.stringify(s[s.length - 1]));
      await write();
      const want = [];
      for (const q of queries) want.push(await db.query("todos", q));
      const changed = want.map((w, i) => JSON.stringify(w) !== prev[i]);
      const shows = (i) => JSON.stringify(seen[i][seen[i].length - 1]) === JSON.stringify(want[i]);
      await until(() => seen.every((s, i) => shows(i)), 2000, `${what}: callbacks`);
      const upto = await fence(what);
      seen.forEach((s, i) => {
        const calls = upto[i] - before[i];
        // Awaited writes one after the other may each call back.
        ok(changed[i] ? calls >= 1 && calls <= writes : calls === 0, `${what}: query ${i} called back ${calls} times (changed: ${changed[i]})`);
        eq(s[upto[i] - 1], want[i], `${what}: query ${i}`);
      });
    };
    await step("insert the newest", () => db.insert("todos", { id: "n1", createdAt: 200, done: false }));
    await step("insert an old one", () => db.insert("todos", { id: "o1", createdAt: 1, done: true }));
    await step("insert a tie with the window's last", () => db.insert("todos", { id: "d09z", createdAt: 104, done: false }));
    await step("update inside the window, staying", () => db.update("todos", "n1", { text: "x" }));
    await step("update moving a row out of the window", () => db.update("todos", "n1", { createdAt: 50 }));
    await step("update moving a row into the window", () => db.update("todos", "d00", { createdAt: 300 }));
    await step("update crossing the filter", () => db.update("todos", "d03", { done: false }));
    await step("delete inside the window", () => db.delete("todos", "d00"));
    await step("delete outside every window", () => db.delete("todos", "o1"));
    await step("update without a visible change", () => db.update("todos", "d11", { createdAt: 105 }));
    await step("a batch in and out of the window", () =>
      db.batch([
        { op: "insert", coll: "todos", doc: { id: "b1", createdAt: 400, done: false } },
        { op: "insert", coll: "todos", doc: { id: "b2", createdAt: 401, done: true } },
        { op: "update", coll: "todos", id: "b1", patch: { createdAt: 2 } },
        { op: "delete", coll: "todos", id: "d10" },
        { op: "replace", coll: "todos", id: "d08", doc: { createdAt: 402, done: false } },
      ]));
    await step("writes in one tick", () =>
      Promise.all([
        db.insert("todos", { id: "t1", createdAt: 500, done: false }),
        db.update("todos", "t1", { createdAt: 3 }),
        db.insert("todos", { id: "t2", createdAt: 501 }),
      ]));
    await step("sequential writes", async () => {
      for (let i = 0; i < 5; i++) await db.insert("todos", { id: `s${i}`, createdAt: 600 + i, done: i % 2 === 0 });
    }, 5);
    // Writes that fail are rolled back and never show.
    const counts = seen.map((s) => s.length);
    await rejects(
      db.batch([
        { op: "insert", coll: "todos", doc: { id: "ghost", createdAt: 999, done: false } },
        { op: "insert", coll: "todos", doc: { id: "d01", createdAt: 998 } },
      ]),
      "ALREADY_EXISTS", env, "a batch with a duplicate id");
    await rejects(db.update("todos", "nobody", { createdAt: 997 }), "NOT_FOUND", env, "update of a missing document");
    await rejects(db.insert("todos", { id: "s0", createdAt: 996 }), "ALREADY_EXISTS", env, "a duplicate insert");
    eq(await fence("failed writes"), counts, "failed writes: no callback before the next write's");
    eq(await db.get("todos", "ghost"), undefined, "rolled back");
    await step("a write after the failed ones", () => db.insert("todos", { id: "after", createdAt: 700, done: false }));
    db.close();
  },

  async live_window_with_other_instances_and_throwing_listeners(env) {
    // Another instance's writes re-query; this one's are patched; both show.
    const name = dbName("live2");
    const a = await openTodos(env, name);
    const b = await openTodos(env, name);
    const thrown = [];
    const swallow = (ev) => {
      if (ev.error && ev.error.message === "listener bug") {
        thrown.push(ev.error);
        ev.preventDefault();
      }
    };
    self.addEventListener("error", swallow);
    const q = { orderBy: "createdAt", desc: true, limit: 2 };
    const seen = [];
    let bad = 0;
    a.subscribe("todos", q, () => {
      bad += 1;
      throw new Error("listener bug");
    });
    a.subscribe("todos", q, (rows) => seen.push(rows.map((r) => r.id)));
    await until(() => seen.length === 1, 2000, "initial");
    await a.insert("todos", { id: "x1", createdAt: 1 });
    await until(() => seen.length === 2, 2000, "own write");
    await b.insert("todos", { id: "x2", createdAt: 2 });
    await until(() => seen.length === 3, 3000, "other instance's write");
    await b.delete("todos", "x2");
    await until(() => seen.length === 4, 3000, "other instance's delete");
    await a.insert("todos", { id: "x3", createdAt: 3 });
    await until(() => seen.length === 5, 2000, "own write after theirs");
    eq(seen, [[], ["x1"], ["x2", "x1"], ["x1"], ["x3", "x1"]], "results in order");
    await until(() => bad === 5 && thrown.length === 5, 2000, "the listener's error rethrown for each of its 5 calls");
    self.removeEventListener("error", swallow);
    a.close();
    b.close();
  },

  async schema_upgrade_keeps_data_and_backfills_indexes(env) {
    const name = dbName("upgrade");
    const v1 = await env.open({ name, collections: { todos: { indexes: ["done"] } } });
    await v1.batch(sampleTodos(25).map((doc) => ({ op: "insert", coll: "todos", doc })));
    const pending = await v1.pendingCount();
    v1.close();
    const v2 = await env.open({ name, collections: { todos: { indexes: ["done", "priority", ["listId", "createdAt"]] }, notes: { indexes: ["at"] } } });
    eq(await v2.count("todos"), 25, "documents survive the upgrade");
    eq(await v2.pendingCount(), pending, "the outbox survives the upgrade");
    const expected = sampleTodos(25).filter((d) => typeof d.priority === "number" && d.priority >= 3).map((d) => d.id);
    eq((await v2.query("todos", { where: { priority: { $gte: 3 } } })).map((d) => d.id), expected, "a new index is filled for old documents");
    await v2.insert("notes", { id: "n", at: 1 });
    eq(await v2.count("notes", { at: 1 }), 1, "new collection works");
    v2.close();
    // Reopening with an older schema keeps the newer collection's data.
    const v3 = await env.open({ name, collections: { todos: { indexes: ["done"] } } });
    eq(await v3.count("todos", { done: true }), sampleTodos(25).filter((d) => d.done === true).length, "index still serves");
    v3.close();
    const v4 = await env.open({ name, collections: { todos: {}, notes: {} } });
    eq(await v4.count("notes"), 1, "undeclared collection was kept");
    v4.close();
  },

  async bad_documents_are_rejected_and_nothing_written(env) {
    const db = await env.open({ name: dbName("bad"), collections: { todos: { indexes: ["done"] } }, maxDocBytes: 1000 });
    await db.insert("todos", { id: "keep", done: false });
    const cyclic = { a: 1 };
    cyclic.self = cyclic;
    const cases = [
      ["a number", 5, "INVALID_DOCUMENT"],
      ["a string", "doc", "INVALID_DOCUMENT"],
      ["null", null, "INVALID_DOCUMENT"],
      ["an array", [1, 2], "INVALID_DOCUMENT"],
      ["a function", { f() {} }, "INVALID_DOCUMENT"],
      ["a symbol", { s: Symbol("x") }, "INVALID_DOCUMENT"],
      ["a BigInt", { n: 10n }, "INVALID_DOCUMENT"],
      ["a cycle", cyclic, "INVALID_DOCUMENT"],
      ["NaN", { n: NaN }, "INVALID_DOCUMENT"],
      ["Infinity", { n: [1, Infinity] }, "INVALID_DOCUMENT"],
      ["an invalid Date", { at: new Date(NaN) }, "INVALID_DOCUMENT"],
      ["a Date alone", new Date(), "INVALID_DOCUMENT"],
      ["the reserved key $date", { at: { $date: 5 } }, "INVALID_DOCUMENT"],
      ["a Map", { m: new Map() }, "INVALID_DOCUMENT"],
      ["a RegExp", { m: /x/ }, "INVALID_DOCUMENT"],
      ["undefined in an array", { a: [1, undefined] }, "INVALID_DOCUMENT"],
      ["a numeric id", { id: 7 }, "INVALID_ID"],
      ["an empty id", { id: "" }, "INVALID_ID"],
      ["too large", { text: "x".repeat(2000) }, "DOC_TOO_LARGE"],
    ];
    for (const [what, doc, code] of cases) {
      await rejects(db.insert("todos", doc), code, env, `insert of ${what}`);
    }
    const nested = await rejects(db.insert("todos", { a: { b: [0, { c: () => 0 }] } }), "INVALID_DOCUMENT", env, "nested function");
    ok(nested.message.includes("doc.a.b[1].c"), `the message names the path: ${nested.message}`);
    await rejects(db.update("todos", "keep", { f: Symbol("s") }), "INVALID_PATCH", env, "patch with a symbol");
    await rejects(db.update("todos", "keep", [1]), "INVALID_PATCH", env, "patch that is an array");
    await rejects(db.update("todos", "keep", { id: "other" }), "INVALID_PATCH", env, "patch changing the id");
    await rejects(db.update("todos", "keep", { text: "y".repeat(2000) }), "DOC_TOO_LARGE", env, "patch making it too large");
    await rejects(db.replace("todos", "keep", { id: "other" }), "INVALID_DOCUMENT", env, "replace with another id");
    eq(await db.count("todos"), 1, "nothing written");
    eq(await db.pendingCount(), 1, "nothing queued");
    eq(await db.get("todos", "keep"), { id: "keep", done: false }, "existing doc intact");
    await db.insert("todos", { id: "after", done: true, skip: undefined });
    eq(await db.get("todos", "after"), { id: "after", done: true }, "the store keeps working; undefined fields are dropped");
    db.close();
  },

  async bad_arguments_are_typed_errors(env) {
    const db = await openTodos(env);
    await rejects(db.insert("nope", {}), "UNKNOWN_COLLECTION", env, "unknown collection");
    await rejects(db.insert(42, {}), "UNKNOWN_COLLECTION", env, "non-string collection");
    await rejects(db.get("nope", "a"), "UNKNOWN_COLLECTION", env, "get from unknown collection");
    await rejects(db.query("nope", {}), "UNKNOWN_COLLECTION", env, "query unknown collection");
    await rejects(db.get("todos", 5), "INVALID_ID", env, "numeric id");
    await rejects(db.update("todos", { id: "a" }, {}), "INVALID_ID", env, "object id");
    await rejects(db.delete("todos", null), "INVALID_ID", env, "null id");
    await rejects(db.query("todos", { where: { done: { $regex: "x" } } }), "UNKNOWN_OPERATOR", env, "unknown operator");
    await rejects(db.query("todos", { where: { done: { $gt: {} } } }), "INVALID_QUERY", env, "range on an object");
    await rejects(db.query("todos", { limit: -1 }), "INVALID_QUERY", env, "negative limit");
    await rejects(db.query("todos", { sort: "x" }), "INVALID_QUERY", env, "unknown option");
    await rejects(db.query("todos", { where: { "a..b": 1 } }), "INVALID_QUERY", env, "bad path");
    await rejects(db.query("todos", { where: { f: () => 1 } }), "INVALID_QUERY", env, "non-JSON query value");
    await rejects(db.batch("nope"), "INVALID_DOCUMENT", env, "batch of a string");
    await rejects(db.batch([{ op: "insert", coll: "todos", doc: {}, extra: 1 }]), "INVALID_DOCUMENT", env, "unknown op field");
    await rejects(() => db.subscribe("todos", { where: { x: { $near: 1 } } }, () => {}), "UNKNOWN_OPERATOR", env, "subscribe validates");
    await rejects(() => db.subscribe("nope", {}, () => {}), "UNKNOWN_COLLECTION", env, "subscribe to unknown collection");
    eq(await db.count("todos"), 0, "nothing written");
    eq(await db.pendingCount(), 0, "nothing queued");
    db.close();
  },

  async where_keys_starting_with_dollar_must_be_known_operators(env) {
    // Taken as field names, these would match nothing and raise no error.
    const db = await openTodos(env);
    await db.batch(sampleTodos(12).map((doc) => ({ op: "insert", coll: "todos", doc })));
    const refused = [
      { $or: [{ done: true }, { $and: [{ priority: 1 }] }] },
      { $and: [{ done: true }] },
      { $not: { done: true } },
      { done: true, $nor: [] },
      { "meta.$or": 1 },
      { priority: { $gte: 1, $lte: 3, $lt3: 1 } },
      { priority: { $GT: 1 } },
      { priority: { $not: { $eq: 1 } } },
      { meta: { owner: { $in: ["ann"] } } },
      { meta: { $or: [{ owner: "ann" }] } },
      { priority: { $in: [1, { $gt: 2 }] } },
    ];
    for (const where of refused) {
      const what = JSON.stringify(where);
      const e = await rejects(db.query("todos", { where }), "UNKNOWN_OPERATOR", env, `query ${what}`);
      ok(e.message.includes("$"), `the message names the key: ${e.message}`);
      eq(e.retryable, false, `${what}: not retryable`);
      await rejects(db.count("todos", where), "UNKNOWN_OPERATOR", env, `count ${what}`);
      await rejects(() => db.subscribe("todos", { where }, () => {}), "UNKNOWN_OPERATOR", env, `subscribe ${what}`);
    }
    // Known operators (including $eq) and values with "$" in strings still work.
    eq((await db.query("todos", { where: { priority: { $eq: 1 } } })).map((d) => d.id), ["t001", "t006", "t011"], "$eq");
    eq(await db.count("todos", { text: "$or" }), 0, "a string value starting with $ is a value");
    db.close();
  },

  async bad_schemas_are_rejected(env) {
    const bad = [
      [{ name: dbName("s"), collections: { t: { indexes: [5] } } }, "INVALID_SCHEMA"],
      [{ name: dbName("s"), collections: { t: { indexes: [[]] } } }, "INVALID_SCHEMA"],
      [{ name: dbName("s"), collections: { t: { indexes: ["a..b"] } } }, "INVALID_SCHEMA"],
      [{ name: dbName("s"), collections: { t: { indexes: "done" } } }, "INVALID_SCHEMA"],
      [{ name: dbName("s"), collections: { _outbox: {} } }, "INVALID_SCHEMA"],
      [{ name: dbName("s"), collections: { t: { sync: "sometimes" } } }, "INVALID_SCHEMA"],
      [{ name: dbName("s") }, "INVALID_SCHEMA"],
      [{ collections: {} }, "INVALID_OPTIONS"],
      [{ name: "", collections: {} }, "INVALID_OPTIONS"],
      [{ name: dbName("s"), collections: {}, maxDocBytes: -1 }, "INVALID_OPTIONS"],
      [null, "INVALID_OPTIONS"],
    ];
    for (const [opts, code] of bad) {
      await rejects(env.open(opts), code, env, `open ${JSON.stringify(opts)}`);
    }
  },

  async corrupt_records_are_storage_errors(env) {
    // A record that is not a document (written behind the store's back, as
    // a bug or another program would) fails the read with STORAGE, typed.
    const db = await openTodos(env);
    await db.insert("todos", { id: "a", text: "fine" });
    const idb = await new Promise((res, rej) => {
      const r = indexedDB.open(db.name);
      r.onsuccess = () => res(r.result);
      r.onerror = () => rej(r.error);
    });
    await new Promise((res, rej) => {
      const tx = idb.transaction("todos", "readwrite");
      tx.objectStore("todos").put({ id: "bad", d: "{not json" });
      tx.oncomplete = res;
      tx.onerror = () => rej(tx.error);
    });
    idb.close();
    const e = await rejects(db.query("todos", { where: { text: "fine" } }), "STORAGE", env, "a scan over a corrupt record");
    ok(e.message.includes("todos"), `the message names the collection: ${e.message}`);
    eq(e.retryable, false, "a corrupt record does not heal by retrying");
    db.close();
  },

  async a_write_whose_transaction_is_aborted_is_transaction_aborted(env) {
    // The browser aborts a write's transaction under it (what a forced
    // close or a failing disk does; injected here: a page cannot make its
    // own browser do that): the call rejects with TRANSACTION_ABORTED
    // (retryable), nothing of it is stored or queued, no listener hears of
    // it, and the same write retried succeeds.
    const db = await openTodos(env);
    await db.insert("todos", { id: "a", text: "kept" });
    const pending = await db.pendingCount();
    const snapshots = [];
    db.subscribe("todos", {}, (rows) => snapshots.push(rows.map((r) => `${r.id}:${r.text}`)));
    const changes = [];
    db.on("change", (e) => changes.push(...e.changes.map((c) => `${c.op}:${c.id}`)));
    await until(() => snapshots.length === 1, 5000, "the subscription's first answer");
    const writeOf = { add: IDBObjectStore.prototype.add, put: IDBObjectStore.prototype.put };
    let aborts = 0;
    for (const [method, original] of Object.entries(writeOf)) {
      IDBObjectStore.prototype[method] = function (...args) {
        const req = original.apply(this, args);
        if (aborts > 0 && this.name === "todos" && this.transaction.db.name === db.name) {
          aborts--;
          // Once the record is written, the transaction is aborted
          // before it commits: everything it did is undone.
          const tx = this.transaction;
          req.addEventListener("success", () => tx.abort());
        }
        return req;
      };
    }
    try {
      aborts = 1;
      const e = await rejects(db.insert("todos", { id: "b", text: "lost" }), "TRANSACTION_ABORTED", env, "an insert");
      eq(e.retryable, true, "retryable");
      aborts = 1;
      await rejects(db.update("todos", "a", { text: "lost" }), "TRANSACTION_ABORTED", env, "an update");
      aborts = 1;
      await rejects(
        db.batch([
          { op: "insert", coll: "lists", doc: { id: "l1" } },
          { op: "insert", coll: "todos", doc: { id: "c", text: "lost" } },
        ]),
        "TRANSACTION_ABORTED",
        env,
        "a batch",
      );
      eq(aborts, 0, "each write met its abort");
    } finally {
      Object.assign(IDBObjectStore.prototype, writeOf);
    }
    eq(await db.get("todos", "b"), undefined, "the aborted insert is not stored");
    eq((await db.get("todos", "a")).text, "kept", "the aborted update is not stored");
    eq(await db.get("lists", "l1"), undefined, "no part of the aborted batch is stored");
    eq(await db.pendingCount(), pending, "nothing aborted is queued");
    eq(db.status().pending, pending, "status() agrees");
    // The positive event the checks of silence are tied to.
    await db.insert("todos", { id: "b", text: "retried" });
    await until(() => snapshots.some((s) => s.includes("b:retried")), 5000, "the retried insert reaches the subscription");
    ok(snapshots.every((s) => !s.some((r) => r.endsWith(":lost"))), `no subscriber saw an aborted write: ${JSON.stringify(snapshots)}`);
    eq(changes, ["insert:b"], "change events: the retried insert alone");
    eq(await db.pendingCount(), pending + 1, "the retried insert is queued once");
    db.close();
  },

  async closed_store_rejects_calls(env) {
    const db = await openTodos(env);
    await db.insert("todos", { id: "a" });
    db.close();
    db.close(); // twice is harmless
    await rejects(db.get("todos", "a"), "CLOSED", env, "get");
    await rejects(db.insert("todos", {}), "CLOSED", env, "insert");
    await rejects(db.query("todos", {}), "CLOSED", env, "query");
    await rejects(db.pendingCount(), "CLOSED", env, "pendingCount");
    await rejects(() => db.subscribe("todos", {}, () => {}), "CLOSED", env, "subscribe");
    // These two answer from memory (README: close()).
    eq([db.status().connection, db.status().pending, db.status().leader], ["offline", 1, false], "status() after close");
    eq(db.resolveId("a"), "a", "resolveId() after close");
    const again = await openTodos(env, db.name);
    eq((await again.get("todos", "a")).id, "a", "data is still there");
    again.close();
  },
};

export function scenario(name, open, SyncStoreError) {
  const run = scenarios[name];
  if (!run) throw new Error(`no scenario ${name}`);
  return run({ open, SyncStoreError });
}

export const names = Object.keys(scenarios);

// Shared with the sync scenarios (sync.js).
export { dbName, fail, eq, ok, rejects, sleep, until };

// aheadCheck: the check that guards a page planned ahead (src/js/glue.js
// `applyIfAbsent`, src/sync/ahead.rs), against real IndexedDB: the planned
// writes land only if nothing the plan assumed absent is stored (no record
// and no `_server` entry of its documents, no new outbox entry, the same
// leader term); otherwise the transaction is aborted and nothing of the
// page is written, so a page never lands over a local edit it did not read.

function aheadDb(name) {
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

const AHEAD_STORES = ["todos", "_outbox", "_meta", "_server"];

function aheadDone(tx) {
  return new Promise((resolve) => {
    tx.oncomplete = () => resolve("committed");
    tx.onabort = () => resolve("aborted");
  });
}

/** Writes `puts` ([store, value]) in one transaction. */
async function aheadSeed(db, puts) {
  const tx = db.transaction(AHEAD_STORES, "readwrite");
  for (const [s, v] of puts) tx.objectStore(s).put(v);
  eq(await aheadDone(tx), "committed", "seeded");
}

/** Runs applyIfAbsent for `ids` (a planned page writing their records and the meta). */
async function aheadPage(db, ids, { lastMid = 0, term = 7 } = {}) {
  const tx = db.transaction(AHEAD_STORES, "readwrite");
  const end = aheadDone(tx);
  const check = { outbox: "_outbox", meta: "_meta", server: "_server", term, lastMid, keys: [["todos", ids]] };
  const ops = ids.map((id) => ({ s: "todos", put: { id, d: `{"id":"${id}","from":"page"}`, v: 9 } }));
  ops.push({ s: "_meta", put: { k: "sync", v: { cursor: `after-${ids.join("-")}` } } });
  const wrote = await applyIfAbsent(tx, check, ops);
  return [wrote, await end];
}

function aheadRead(db, store, key) {
  return new Promise((resolve, reject) => {
    const req = db.transaction(store).objectStore(store).get(key);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

export async function aheadCheck() {
  const db = await aheadDb(dbName("ahead"));
  try {
    await aheadSeed(db, [["_meta", { k: "leader", v: 7 }]]);
    // Nothing stored: the page is written.
    eq(await aheadPage(db, ["a", "b"]), [true, "committed"], "a page over nothing is written");
    eq((await aheadRead(db, "todos", "b"))?.d, '{"id":"b","from":"page"}', "its records");
    eq((await aheadRead(db, "_meta", "sync"))?.v.cursor, "after-a-b", "and its meta");
    // A record of one of its documents (a local edit): nothing is written.
    await aheadSeed(db, [["todos", { id: "c", d: '{"id":"c","mine":1}', v: null }]]);
    eq(await aheadPage(db, ["c", "d"]), [false, "aborted"], "a page over a record is not written");
    eq((await aheadRead(db, "todos", "c"))?.d, '{"id":"c","mine":1}', "the local edit stays");
    eq(await aheadRead(db, "todos", "d"), undefined, "and no other record of the page lands");
    eq((await aheadRead(db, "_meta", "sync"))?.v.cursor, "after-a-b", "nor its meta");
    // A `_server` entry (a tombstone or a copy kept beside an edit).
    await aheadSeed(db, [["_server", { coll: "todos", id: "e", doc: null, version: 3 }]]);
    eq(await aheadPage(db, ["e", "f"]), [false, "aborted"], "a page over a _server entry is not written");
    eq(await aheadRead(db, "todos", "f"), undefined, "nothing of it");
    // An outbox entry the plan did not see (a write since it was made).
    await aheadSeed(db, [["_outbox", { mid: 5, coll: "todos", id: "z" }]]);
    eq(await aheadPage(db, ["g"], { lastMid: 4 }), [false, "aborted"], "a new outbox entry stops the page");
    eq(await aheadPage(db, ["g"], { lastMid: 5 }), [true, "committed"], "entries the plan saw do not");
    // Another leader's term.
    eq(await aheadPage(db, ["h"], { lastMid: 5, term: 8 }), [false, "aborted"], "another leader term stops the page");
    eq(await aheadRead(db, "todos", "h"), undefined, "nothing of it");
    // A range crowded with other records counts as found (no per-id reads).
    await aheadSeed(db, Array.from({ length: 20 }, (_, i) => ["todos", { id: `m${String(i).padStart(2, "0")}`, d: "{}", v: 1 }]));
    eq(await aheadPage(db, ["m", "mz"], { lastMid: 5 }), [false, "aborted"], "a crowded range stops the page");
    eq(await aheadPage(db, ["n1", "n2"], { lastMid: 5 }), [true, "committed"], "ids beside it do not");
  } finally {
    db.close();
  }
}

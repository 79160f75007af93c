// Sync scenarios: two or more stores with different database names act as
// devices against the real sync server, which `scripts/with-server.sh` runs
// behind `scripts/testctl.mjs`: the scenarios stop, restart and cut it
// through the control API, and read the server's SQLite database through it.
// `tests/browser.rs` runs each one in Chromium and Firefox.

import { dbName, eq, ok, rejects, sleep } from "./suite.js";

/**
 * Waits until `fn()` returns something truthy, at most `ms` (a hang guard,
 * not a measurement), a call of `fn` that never settles included. An error
 * thrown by `fn` fails at once.
 */
async function until(what, fn, ms = 20000) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    last = await bounded(what, fn(), Math.max(1, end - Date.now()));
    if (last) return last;
    await sleep(20);
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}; last: ${JSON.stringify(last)}`);
}

/** Awaits `promise`, at most `ms` (a hang guard for one call). */
async function bounded(what, promise, ms) {
  let timer;
  const late = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

async function ctl(env, path, method = "POST") {
  const r = await fetch(env.ctl + path, { method });
  if (!r.ok) throw new Error(`testctl ${path}: HTTP ${r.status}`);
  return r.json();
}

/** The server's rows of `coll` (deleted ones included), by version. */
async function serverRows(env, coll) {
  return (await ctl(env, `/docs?coll=${coll}`, "GET")).rows;
}

const live = (rows) => rows.filter((r) => !r.deleted);

/** Documents compare by content, not field order. */
function eqDocs(actual, expected, what) {
  eq(actual.map(canon), expected.map(canon), what);
}

/** JSON with keys sorted: documents compare by content, not field order. */
function canon(v) {
  if (Array.isArray(v)) return `[${v.map(canon).join(",")}]`;
  if (v && typeof v === "object") {
    return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canon(v[k])}`).join(",")}}`;
  }
  return JSON.stringify(v);
}

function collName(tag) {
  return `${tag}_${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;
}

/** The database `name` opened directly, for a scenario to read or change what a store left there. */
function rawDb(name) {
  return new Promise((resolve, reject) => {
    const r = indexedDB.open(name);
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}

/** Open options a scenario reopens its store with: one collection `coll` in database `name`, syncing. */
function reopenable(env, tag) {
  const coll = collName(tag);
  const name = dbName(tag);
  const opts = {
    name,
    collections: { [coll]: { indexes: ["n"] } },
    sync: { url: env.server, token: "dev-token", pollMs: 200 },
  };
  return { coll, name, opts };
}

/** Opens a device: its own database, syncing `coll` (and `more`). */
async function device(env, coll, { sync = {}, more = {}, spec = {} } = {}) {
  const db = await env.open({
    name: dbName("dev"),
    collections: { [coll]: { indexes: ["n"], ...spec }, ...more },
    sync: { url: env.server, token: "dev-token", pollMs: 200, ...sync },
  });
  env.opened.push(db);
  return db;
}

/**
 * An HS256 JWT the test server accepts (testctl `/mint`): user `sub` in
 * namespace `dev` (the dev token's), expiring `ttl` seconds from now.
 */
async function mint(env, sub, { ttl = 3600, ro = false } = {}) {
  return (await ctl(env, `/mint?sub=${sub}&ttl=${ttl}${ro ? "&ro=1" : ""}`, "GET")).token;
}

/** `db.sync()`, which must succeed: the server is up. */
async function synced(db) {
  await db.sync();
}

/**
 * After the scenario made the server unavailable (stopped, wiped, killed):
 * `db.sync()` until it succeeds, retrying only `NETWORK` failures (the sync
 * loop's request in flight may still meet the outage). Any other error
 * (PROTOCOL, storage) fails at once.
 */
async function syncedAfterOutage(env, db) {
  const end = Date.now() + 20000;
  for (;;) {
    try {
      await db.sync();
      return;
    } catch (e) {
      if (!(e instanceof env.SyncStoreError) || e.code !== "NETWORK" || Date.now() > end) throw e;
    }
    await sleep(50);
  }
}

/**
 * A push of its own straight to the server (through the test proxy, which
 * counts pushes): the positive event that a "nothing was sent" check waits
 * for. A push the store started before it would have reached the proxy first.
 */
async function markerPush(env, coll) {
  const id = `marker-${Math.random().toString(36).slice(2)}`;
  const r = await fetch(`${env.server}/v1/push`, {
    method: "POST",
    headers: { Authorization: "Bearer dev-token", "Content-Type": "application/json" },
    body: JSON.stringify({ clientId: id, mutations: [{ mid: 1, coll, op: "insert", id, doc: { id } }] }),
  });
  ok(r.ok, `the marker push: HTTP ${r.status}`);
}

/** Pushes the proxy saw since `before` (a `/state` answer), the marker's included. */
async function pushesSince(env, before) {
  return (await ctl(env, "/state", "GET")).pushes - before.pushes;
}

const all = (db, coll) => db.query(coll, {});
const byId = (rows) => rows.map((r) => r.id).sort();

/** Waits until every device holds exactly the server's live documents. */
async function converged(env, coll, devices) {
  return until(`${devices.length} devices to converge on ${coll}`, async () => {
    const server = live(await serverRows(env, coll))
      .map((r) => canon(r.doc))
      .sort();
    for (const db of devices) {
      const mine = (await all(db, coll)).map(canon).sort();
      if (JSON.stringify(mine) !== JSON.stringify(server)) return false;
    }
    return server.map((t) => JSON.parse(t));
  });
}

/**
 * Two devices with `spec` on one collection make a conflict: both hold
 * `seed`, both edit it while cut off (b later), a syncs first, then b.
 * Returns the converged documents, b's conflict events and both devices'
 * error events.
 */
async function conflict(env, spec, seed, editA, editB) {
  const coll = collName("cf");
  const a = await device(env, coll, { spec });
  const b = await device(env, coll, { spec });
  const events = [];
  b.on("conflict", (e) => events.push(e));
  const errors = [];
  a.on("error", (e) => errors.push(e));
  b.on("error", (e) => errors.push(e));
  await a.insert(coll, seed);
  await a.sync();
  await until("b has the document", () => b.get(coll, seed.id));
  a.goOffline();
  b.goOffline();
  await editA(a, coll);
  await sleep(5);
  await editB(b, coll);
  a.goOnline();
  await synced(a);
  b.goOnline();
  await synced(b);
  await synced(a);
  const docs = await converged(env, coll, [a, b]);
  return { docs, events, errors, coll };
}

const scenarios = {
  async sync_options_status_and_events_are_checked(env) {
    const coll = collName("opts");
    const base = { name: dbName("opts"), collections: { [coll]: {} } };
    const bad = [
      [{ url: "ftp://x", token: "t" }, "url"],
      [{ url: env.server }, "token"],
      [{ url: env.server, token: "dev-token", pollMs: 1 }, "pollMs"],
      [{ url: env.server, token: "dev-token", websocket: "yes" }, "websocket"],
      [{ url: env.server, token: "dev-token", keepAliveMs: 10 }, "keepAliveMs"],
      [{ url: env.server, token: "dev-token", keepAliveMs: "1s" }, "keepAliveMs type"],
      [{ url: env.server, token: "dev-token", colour: 1 }, "unknown field"],
      [{ url: env.server, getToken: "dev-token" }, "getToken not a function"],
      ["http://x", "not an object"],
    ];
    for (const [sync, what] of bad) {
      const e = await rejects(env.open({ ...base, sync }), "INVALID_OPTIONS", env, `sync options: ${what}`);
      ok(e.message.includes("options.sync"), `the message names options.sync: ${e.message}`);
    }
    const local = await env.open(base);
    env.opened.push(local);
    await local.insert(coll, { id: "a" });
    eq(local.status().connection, "offline", "a store without sync is offline");
    eq(local.status().pending, 1, "and counts its queued writes");
    await rejects(local.sync(), "SYNC_DISABLED", env, "sync() without sync options");
    await rejects(() => local.goOffline(), "SYNC_DISABLED", env, "goOffline() without sync options");
    await rejects(() => local.on("nope", () => {}), "INVALID_EVENT", env, "unknown event type");
    const schema = (conflicts) => ({ name: dbName("bad"), collections: { [coll]: { conflicts } } });
    await rejects(env.open(schema("custom")), "INVALID_SCHEMA", env, "\"custom\" without a function");
    await rejects(env.open(schema("newest")), "INVALID_SCHEMA", env, "an unknown policy");

    const db = await device(env, coll);
    const statuses = [];
    const stop = db.on("status", (s) => statuses.push(s));
    eq(db.status().connection, "connecting", "a store that starts to sync is connecting, not offline");
    await until("the WebSocket", () => db.status().connection === "websocket");
    const seen = statuses.map((x) => x.connection);
    eq(seen[0], "connecting", `the first status event: ${seen}`);
    ok(!seen.includes("offline") && !seen.includes("polling"), `a healthy start: connecting -> websocket: ${seen}`);
    await db.insert(coll, { id: "s1", n: 1 });
    await db.sync();
    const s = db.status();
    eq(Object.keys(s).sort(), ["connection", "cursor", "lastError", "lastPullAt", "lastPushAt", "leader", "pending", "progress"], "status fields");
    eq(s.progress, null, "no sync from the start in progress");
    ok(s.leader, "the only instance leads");
    eq(s.pending, 0, "nothing pending after sync");
    ok(typeof s.lastPushAt === "number" && typeof s.lastPullAt === "number", "push and pull times");
    ok(typeof s.cursor === "string", "a cursor");
    ok(statuses.some((x) => x.connection === "websocket"), "status events report the connection");
    stop();
    const n = statuses.length;
    await db.insert(coll, { id: "s2", n: 2 });
    await db.sync();
    eq(statuses.length, n, "no status events after unsubscribing");
  },

  async devices_converge_after_interleaved_writes(env) {
    const coll = collName("conv");
    const a = await device(env, coll);
    const b = await device(env, coll);
    const c = await device(env, coll, { sync: { websocket: false, pollMs: 100 } });
    // Live: a write on one device shows in another's subscription.
    let seen = [];
    b.subscribe(coll, { where: { n: { $gte: 0 } } }, (rows) => (seen = rows));
    await a.insert(coll, { id: "first", n: 0, text: "from a" });
    await until("a's write in b's live query", () => seen.some((d) => d.id === "first"));
    // Interleaved: each device writes its own documents, then edits the
    // others' while those are still in flight.
    const writes = [];
    for (let i = 0; i < 12; i++) {
      const db = [a, b, c][i % 3];
      writes.push(db.insert(coll, { id: `d${i}`, n: i, by: i % 3 }));
    }
    await Promise.all(writes);
    await converged(env, coll, [a, b, c]);
    await Promise.all([
      a.update(coll, "d1", { a: 1 }),
      b.update(coll, "d0", { b: 1 }),
      c.update(coll, "d1", { c: 1 }),
      a.update(coll, "d4", { x: "a" }),
      b.update(coll, "d4", { y: "b" }),
      c.delete(coll, "d3"),
      b.insert(coll, { id: "late", n: 99 }),
    ]);
    await Promise.all([a.sync(), b.sync(), c.sync()]);
    const docs = await converged(env, coll, [a, b, c]);
    const d = Object.fromEntries(docs.map((x) => [x.id, x]));
    eq(docs.length, 13, "12 + first + late - d3");
    ok(!d.d3, "the delete reached everyone");
    eq([d.d4.x, d.d4.y], ["a", "b"], "edits of different fields both survive");
    eq([d.d1.a, d.d1.c, d.d0.b], [1, 1, 1], "edits of others' documents");
    ok(seen.some((x) => x.id === "late"), "the live query followed");
  },

  async a_burst_of_awaited_writes_is_pushed_while_it_lasts_and_settles_after(env) {
    // An app writing back to back (each insert awaited, the next issued at
    // once): its writes reach the server while the loop still runs (the
    // loop takes new entries in between writes and pushes them), no entry
    // is stored twice (each keeps its write's clock stamp), and once the
    // writes stop everything settles without sync(); another device gets
    // every document. The same for a burst of first edits.
    const coll = collName("burst");
    const a = await device(env, coll);
    const b = await device(env, coll);
    await synced(a);
    await synced(b);
    const trace = [];
    const off = a.on("trace", (e) => trace.push(e));
    // Entries stored again as pending by a step (until they settled: the
    // step that takes the last ones in may come after the writes end).
    const put = IDBObjectStore.prototype.put;
    let outboxPuts = 0;
    const counting = function (...args) {
      if (this.name === "_outbox" && args[0] && args[0].state === "pending") outboxPuts += 1;
      return put.apply(this, args);
    };
    IDBObjectStore.prototype.put = counting;
    let n = 0;
    try {
      // Until a push of the loop's own writes went out, then 100 more
      // (bounded: 20,000 writes or 60 s).
      const end = Date.now() + 60000;
      let more = 100;
      for (; n < 20000 && more > 0 && Date.now() < end; n++) {
        await a.insert(coll, { id: `w${n}`, n });
        if (trace.some((e) => e.type === "pushed")) more -= 1;
      }
      ok(trace.some((e) => e.type === "pushed"), `a push went out while ${n} writes were made back to back`);
      await until("everything settles without sync()", async () => a.status().pending === 0 && (await a.outbox()).length === 0);
    } finally {
      IDBObjectStore.prototype.put = put;
    }
    eq(outboxPuts, 0, "outbox entries stored again");
    off();
    eq(live(await serverRows(env, coll)).length, n, "the server has every write, once");
    await until("b has every write", async () => (await b.count(coll)) === n);
    // Then a burst of first edits of those (now server) documents: each
    // entry carries its base document as the engine would, so none is
    // stored twice either.
    const edits = Math.min(n, 200);
    IDBObjectStore.prototype.put = counting;
    try {
      for (let i = 0; i < edits; i++) await a.update(coll, `w${i}`, { n: -i });
      await synced(a);
    } finally {
      IDBObjectStore.prototype.put = put;
    }
    eq(outboxPuts, 0, "outbox entries of first edits stored again");
    const rows = live(await serverRows(env, coll));
    eq(rows.filter((r) => Number(r.id.slice(1)) < edits && r.doc.n === -Number(r.id.slice(1))).length, edits, "the server has every edit");
  },

  async taking_in_a_lone_write_holds_no_collection(env) {
    // The step that takes a new entry in writes no record (the write path
    // wrote it), so its transaction leaves the collections out: the app's
    // reads and live-query refreshes of them are not queued behind it. And
    // it writes nothing at all (the engine's meta waits for the next step
    // that writes): it reads in a readonly transaction, which the app's
    // next write waits for only while it reads. Storing the push answer
    // is a step of its own, and it writes a settle marker and an outbox
    // delete, no record: it leaves the collections out too.
    const coll = collName("lone");
    const a = await device(env, coll);
    await synced(a);
    const tx = IDBDatabase.prototype.transaction;
    const steps = [];
    IDBDatabase.prototype.transaction = function (names, mode, ...rest) {
      const list = [].concat(names);
      if (list.includes("_meta")) steps.push({ list, mode: mode || "readonly" });
      return tx.call(this, names, mode, ...rest);
    };
    try {
      for (let i = 0; i < 5; i++) {
        await a.insert(coll, { id: `l${i}`, n: i });
        await until(`write ${i} settled`, () => a.status().pending === 0);
      }
    } finally {
      IDBDatabase.prototype.transaction = tx;
    }
    const narrow = steps.filter((s) => !s.list.includes(coll));
    ok(narrow.length >= 5, `a step without the collection per lone write: ${narrow.length} of ${steps.length} steps`);
    const peeks = narrow.filter((s) => s.mode === "readonly");
    ok(peeks.length >= 5, `readonly: ${peeks.length} of the ${narrow.length} steps without the collection`);
    // The write handed its entry over as committed: the step reads no
    // outbox, so the app's next write (over the collection and the
    // outbox) does not wait for it at all.
    const blind = peeks.filter((s) => !s.list.includes("_outbox"));
    ok(blind.length >= 5, `without the outbox: ${blind.length} of the ${peeks.length} readonly steps`);
    const answers = narrow.filter((s) => s.mode === "readwrite");
    ok(answers.length >= 5, `readwrite without the collection (the answers): ${answers.length} of ${steps.length} steps`);
    eq((await a.query(coll)).length, 5, "the writes show");
    eq(live(await serverRows(env, coll)).length, 5, "and reached the server");
  },

  async a_follow_up_edit_is_not_stored_twice(env) {
    // An edit of a document whose earlier edit has not settled carries no
    // base, as the engine gives it (it is based on that edit), so the step
    // that takes it in leaves the entry as written: no second put, and no
    // readonly take-in that must start again over the outbox (it reloaded
    // the engine: every follow-up edit cost a read of the whole queue).
    const coll = collName("follow");
    const a = await device(env, coll);
    await synced(a);
    const n = 20;
    await a.batch(Array.from({ length: n }, (_, i) => ({ op: "insert", coll, doc: { id: `f${i}`, n: i } })));
    await synced(a);
    const put = IDBObjectStore.prototype.put;
    let again = 0;
    IDBObjectStore.prototype.put = function (...args) {
      if (this.name === "_outbox" && args[0] && args[0].state === "pending") again += 1;
      return put.apply(this, args);
    };
    try {
      a.goOffline(); // the first edits stay unsettled
      for (let i = 0; i < n; i++) await a.update(coll, `f${i}`, { n: 100 + i });
      for (let i = 0; i < n; i++) await a.update(coll, `f${i}`, { n: 200 + i });
      a.goOnline();
      await synced(a);
    } finally {
      IDBObjectStore.prototype.put = put;
    }
    eq(again, 0, "outbox entries stored again by the step");
    const rows = live(await serverRows(env, coll));
    eq(rows.filter((r) => r.doc.n === 200 + Number(r.id.slice(1))).length, n, "the server has the last edits");
  },

  async an_edit_after_a_no_op_edit_settled_is_based_on_the_server_version(env) {
    // A patch the document already satisfies is applied by the server as
    // a no-op: no new version, nothing streamed. Its entry leaves on the
    // answer, and the first edit's `_server` copy must go with it (a
    // settle marker in its place): a copy left behind made the write path
    // take the next edit for the follow-up of an unsettled one (no base)
    // while the engine based it on the server version, so the step stored
    // the entry again (and a readwrite step ran beside the app's writes).
    const coll = collName("noop");
    const a = await device(env, coll);
    await synced(a);
    const n = 10;
    await a.batch(Array.from({ length: n }, (_, i) => ({ op: "insert", coll, doc: { id: `z${i}`, n: i } })));
    await synced(a);
    await until("the inserts settled", () => a.status().pending === 0);
    const before = live(await serverRows(env, coll));
    const put = IDBObjectStore.prototype.put;
    const add = IDBObjectStore.prototype.add;
    let again = 0;
    const entries = [];
    IDBObjectStore.prototype.put = function (...args) {
      if (this.name === "_outbox" && args[0] && args[0].state === "pending") again += 1;
      return put.apply(this, args);
    };
    IDBObjectStore.prototype.add = function (...args) {
      if (this.name === "_outbox") entries.push(args[0]);
      return add.apply(this, args);
    };
    try {
      for (let i = 0; i < n; i++) await a.update(coll, `z${i}`, { n: i });
      await synced(a);
      await until("the no-op edits settled", () => a.status().pending === 0);
      eq(live(await serverRows(env, coll)).map((r) => r.version), before.map((r) => r.version), "no new versions");
      entries.length = 0;
      a.goOffline();
      for (let i = 0; i < n; i++) await a.update(coll, `z${i}`, { n: 100 + i });
      const version = (id) => before.find((r) => r.id === id).version;
      eq(entries.map((e) => e.base), entries.map((e) => version(e.id)), "the edits' bases: the settled versions");
      a.goOnline();
      await synced(a);
      await until("the edits settled", () => a.status().pending === 0);
    } finally {
      IDBObjectStore.prototype.put = put;
      IDBObjectStore.prototype.add = add;
    }
    eq(again, 0, "outbox entries stored again by the step");
    const rows = live(await serverRows(env, coll));
    eq(rows.filter((r) => r.doc.n === 100 + Number(r.id.slice(1))).length, n, "the server has the edits");
  },

  async a_streak_of_writes_is_taken_in_a_few_steps(env) {
    // An app that awaits each write and its live-query callback before
    // the next leaves a gap of a few ms between writes: the loop counts
    // that as writing still, and takes the new entries in at most every
    // busy-step gap (250 ms) or once the writes pause, not one step (a
    // transaction, a push) per write in the app's way.
    const coll = collName("streak");
    const a = await device(env, coll);
    await synced(a);
    // Resolved by the callback that shows `want` rows.
    let waiting = null;
    const stop = a.subscribe(coll, {}, (rows) => {
      if (waiting && rows.length >= waiting.want) waiting.resolve();
    });
    const shown = (want) =>
      new Promise((resolve, reject) => {
        const guard = setTimeout(() => reject(new Error(`no callback showed ${want} rows`)), 20000);
        waiting = {
          want,
          resolve: () => {
            clearTimeout(guard);
            waiting = null;
            resolve();
          },
        };
      });
    const tx = IDBDatabase.prototype.transaction;
    let steps = 0;
    IDBDatabase.prototype.transaction = function (names, mode, ...rest) {
      if ([].concat(names).includes("_meta")) steps += 1;
      return tx.call(this, names, mode, ...rest);
    };
    const n = 60;
    const start = performance.now();
    let elapsed = 0;
    try {
      for (let i = 0; i < n; i++) {
        const seen = shown(i + 1);
        await a.insert(coll, { id: `s${i}`, n: i });
        await seen;
        await sleep(0);
      }
      elapsed = performance.now() - start;
    } finally {
      IDBDatabase.prototype.transaction = tx;
      stop();
    }
    // One at the start, one per 250 ms, and slack for a gap a loaded
    // machine stretches past the write gap (16 ms): not one per write.
    const bound = Math.floor(elapsed / 250) + 3;
    ok(steps <= bound, `sync steps during ${n} writes in ${Math.round(elapsed)} ms: ${steps} (at most ${bound})`);
    await synced(a);
    eq(live(await serverRows(env, coll)).length, n, "every write reached the server");
  },

  async a_settled_write_re_runs_only_live_queries_that_show_sync_state(env) {
    // Storing a push answer changes only the document's server version (a
    // settle marker): a live query without { syncState: true } shows
    // nothing new and does not re-run (its read would make the app's next
    // write wait); one with it does, and drops the row's `$sync`.
    const coll = collName("restamp");
    const a = await device(env, coll);
    await synced(a);
    let seen = 0;
    const stop = a.subscribe(coll, {}, (rows) => {
      if (rows.some((r) => r.id === "r1")) seen += 1;
    });
    const states = [];
    const stopState = a.subscribe(coll, { syncState: true }, (rows) => {
      const r = rows.find((x) => x.id === "r1");
      if (r) states.push(r.$sync || "settled");
    });
    const tx = IDBDatabase.prototype.transaction;
    let reads = 0;
    let counting = false;
    IDBDatabase.prototype.transaction = function (names, mode, ...rest) {
      const list = [].concat(names);
      if (counting && mode !== "readwrite" && list.length === 1 && list[0] === coll) reads += 1;
      return tx.call(this, names, mode, ...rest);
    };
    try {
      // Offline until both queries showed the write, so that its settle
      // comes after the count starts.
      a.goOffline();
      await a.insert(coll, { id: "r1", n: 1 });
      await until("the plain query shows it", () => seen > 0);
      await until("the sync-state query shows it pending", () => states.includes("pending"));
      counting = true;
      a.goOnline();
      await until("it settles", () => states[states.length - 1] === "settled");
      await sleep(300);
    } finally {
      IDBDatabase.prototype.transaction = tx;
      stop();
      stopState();
    }
    eq(reads, 1, "live-query reads of the collection after the write showed: the sync-state query's re-run only");
    eq(seen, 1, "the plain query's callbacks");
  },

  async a_settled_write_is_not_written_again(env) {
    // A write that settles leaves its record as the write path wrote it:
    // the step puts a settle marker into `_server` (plan.rs
    // `settle_marker`) instead of the record again, which cost a put of
    // the document and every index entry. What the record no longer says, the
    // marker does: the next edit is based on the settled version, and the
    // sync state shows the settled document without `$sync`.
    const coll = collName("settle");
    const a = await device(env, coll);
    await synced(a);
    const put = IDBObjectStore.prototype.put;
    const add = IDBObjectStore.prototype.add;
    let recordPuts = 0;
    const entries = [];
    IDBObjectStore.prototype.put = function (v, ...rest) {
      if (this.name === coll) recordPuts += 1;
      return put.call(this, v, ...rest);
    };
    IDBObjectStore.prototype.add = function (v, ...rest) {
      if (this.name === "_outbox") entries.push(v);
      return add.call(this, v, ...rest);
    };
    const states = async () =>
      (await a.query(coll, { syncState: true })).map((r) => `${r.id}:${r.$sync || "settled"}`).sort();
    const settled = async (what) => {
      a.goOnline();
      await a.sync();
      await until(what, () => a.status().pending === 0);
    };
    try {
      a.goOffline();
      await a.insert(coll, { id: "k1", n: 1 });
      await a.insert(coll, { id: "k2", n: 2 });
      eq(await states(), ["k1:pending", "k2:pending"], "queued inserts");
      await settled("the inserts settled");
      eq(recordPuts, 0, "records written again when the inserts settled");
      eq(await states(), ["k1:settled", "k2:settled"], "both settled");
      const version = (id, rows) => rows.find((r) => r.id === id).version;
      const v1 = version("k1", await serverRows(env, coll));
      a.goOffline();
      await a.update(coll, "k1", { n: 10 });
      eq(entries[entries.length - 1].base, v1, "the edit's base: the version k1 settled at");
      eq(await states(), ["k1:pending", "k2:settled"], "the edit is pending");
      await settled("the edit settled");
      eq(recordPuts, 1, "record puts: the update's own");
      eq(await states(), ["k1:settled", "k2:settled"], "both settled again");
      const rows = await serverRows(env, coll);
      eq(rows.find((r) => r.id === "k1").doc.n, 10, "the edit landed");
      ok(version("k1", rows) > v1, "at a new version");
    } finally {
      IDBObjectStore.prototype.put = put;
      IDBObjectStore.prototype.add = add;
    }
  },

  async a_server_copy_stored_by_an_earlier_version_is_still_read(env) {
    // `_server` copies hold the document as JSON text (`d`) now; a database
    // written before holds it as an object (`doc`). An edit waiting under
    // such a copy is taken in after a reload with the copy's document as
    // the server's: when the server refuses the edit (a read-only token),
    // the document rolls back to it.
    const { coll, name, opts } = reopenable(env, "oldcopy");
    let a = await env.open(opts);
    env.opened.push(a);
    await a.insert(coll, { id: "o1", n: 1 });
    await a.sync();
    await until("settled", () => a.status().pending === 0);
    a.goOffline();
    await a.update(coll, "o1", { n: 2 });
    a.close();
    const raw = await rawDb(name);
    const copy = await new Promise((resolve, reject) => {
      const tx = raw.transaction("_server", "readwrite");
      const store = tx.objectStore("_server");
      const got = store.get([coll, "o1"]);
      got.onsuccess = () => {
        const c = got.result;
        ok(c && typeof c.d === "string", `the edit saved a copy as text: ${JSON.stringify(c)}`);
        const old = { coll, id: "o1", doc: JSON.parse(c.d), version: c.version };
        store.put(old);
        resolve(old);
      };
      tx.onerror = () => reject(tx.error);
    });
    raw.close();
    eq(copy.doc, { id: "o1", n: 1 }, "the copy is the settled document");
    const token = await mint(env, "reader", { ro: true });
    a = await env.open({ ...opts, sync: { ...opts.sync, token } });
    env.opened.push(a);
    const rejected = [];
    a.on("rejected", (e) => rejected.push(e));
    eq((await a.get(coll, "o1")).n, 2, "the edit shows after the reload");
    await until("the edit is refused", () => rejected.length === 1 && a.status().pending === 0);
    eq(await a.get(coll, "o1"), { id: "o1", n: 1 }, "rolled back to the copy's document");
    const rows = await serverRows(env, coll);
    eq(rows.map((r) => [r.doc.n, r.version]), [[1, copy.version]], "the server's is unchanged");
  },

  async a_malformed_outbox_entry_is_dropped_and_the_rest_is_pushed(env) {
    // An outbox entry that cannot be read (here: an unknown op, as a bug
    // or another version could leave it) is dropped, with a warning; the
    // entries around it are pushed, nothing waits on it for ever, and
    // `status().pending` comes down to 0.
    const { coll, name, opts } = reopenable(env, "badentry");
    let a = await env.open(opts);
    env.opened.push(a);
    a.goOffline();
    for (const id of ["b1", "b2", "b3"]) await a.insert(coll, { id, n: 1 });
    a.close();
    const raw = await rawDb(name);
    const spoiled = await new Promise((resolve, reject) => {
      const tx = raw.transaction("_outbox", "readwrite");
      const store = tx.objectStore("_outbox");
      const all = store.getAll();
      all.onsuccess = () => {
        const entries = all.result;
        eq(entries.map((e) => e.id), ["b1", "b2", "b3"], "three queued inserts");
        const bad = { ...entries[1], op: "upsert" };
        store.put(bad);
        resolve(bad);
      };
      tx.onerror = () => reject(tx.error);
    });
    raw.close();
    a = await env.open(opts);
    env.opened.push(a);
    await until("the readable entries pushed and nothing pending", async () => {
      const ids = live(await serverRows(env, coll)).map((r) => r.id).sort();
      return JSON.stringify(ids) === JSON.stringify(["b1", "b3"]) && a.status().pending === 0;
    });
    await a.sync();
    const after = await rawDb(name);
    const left = await new Promise((resolve, reject) => {
      const req = after.transaction("_outbox").objectStore("_outbox").getAll();
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
    after.close();
    eq(left.filter((e) => e.mid === spoiled.mid), [], "the malformed entry is gone from the outbox");
    eq(live(await serverRows(env, coll)).map((r) => r.id).sort(), ["b1", "b3"], "the server never saw it");
  },

  async offline_writes_arrive_once_after_the_server_returns(env) {
    const coll = collName("off");
    const a = await device(env, coll);
    const b = await device(env, coll);
    await a.insert(coll, { id: "before", n: 0 });
    await a.sync();
    const errors = [];
    a.on("error", (e) => errors.push(e));
    await ctl(env, "/stop");
    const ids = [];
    for (let i = 1; i <= 20; i++) ids.push(await a.insert(coll, { n: i, text: `offline ${i}` }));
    await a.update(coll, ids[0], { text: "edited offline" });
    await a.update(coll, "before", { n: 100 });
    await a.delete(coll, ids[1]);
    eq((await a.get(coll, ids[0])).text, "edited offline", "offline writes show at once");
    await rejects(a.sync(), "NETWORK", env, "sync() while the server is down");
    await until("status offline", () => a.status().connection === "offline");
    eq(a.status().pending, 23, "every write is queued: 20 inserts, 2 updates, 1 delete");
    ok(a.status().lastError && a.status().lastError.code === "NETWORK", "lastError says why");
    await until("an error event", () => errors.some((e) => e.code === "NETWORK" && e instanceof env.SyncStoreError));
    await ctl(env, "/start");
    await syncedAfterOutage(env, a);
    eq(a.status().lastError, null, "lastError clears once the server answers");
    eq(a.status().pending, 0, "the outbox drained");
    const rows = await serverRows(env, coll);
    eq(rows.length, 21, "each insert reached the server once");
    eq(live(rows).length, 20, "one deleted");
    const docs = await converged(env, coll, [a, b]);
    ok(docs.every((d) => !d.id.startsWith("tmp_")), "every id is canonical");
    ok(docs.some((d) => d.text === "edited offline"), "the offline edit arrived");
    eq(docs.find((d) => d.id === "before").n, 100, "the edit of a synced document arrived");
  },

  async server_killed_in_the_middle_of_a_push_loses_and_duplicates_nothing(env) {
    const coll = collName("kill");
    const a = await device(env, coll);
    const b = await device(env, coll);
    await a.sync();
    // The socket's `synced` frame brought the server's limits: pushes of
    // its maxMutationsPerPush (1,000) from now on.
    await until("a's socket is live", () => a.status().connection === "websocket");
    const before = await ctl(env, "/state", "GET");
    await ctl(env, "/kill-on-push");
    const n = 1050; // two pushes (1,000 + 50): the first commits, its answer is lost
    const ops = Array.from({ length: n }, (_, i) => ({ op: "insert", coll, doc: { n: i } }));
    await a.batch(ops);
    await until("the server killed mid-push", async () => (await ctl(env, "/state", "GET")).killedOnPush > before.killedOnPush);
    const st = await ctl(env, "/state", "GET");
    ok(!st.running, "the server is down");
    eq(st.pushes, before.pushes + 1, "one push reached the server before it died");
    const committed = (await serverRows(env, coll)).length;
    eq(committed, 1000, "the lost push was committed: one full batch of 1,000 mutations");
    eq(a.status().pending, n, "nothing left the outbox without an answer");
    await ctl(env, "/start");
    await syncedAfterOutage(env, a);
    const pushes = (await ctl(env, "/state", "GET")).pushes - st.pushes;
    ok(pushes >= 2, `after the restart the 1,000 were resent and the other 50 pushed: ${pushes} pushes`);
    const rows = await serverRows(env, coll);
    eq(rows.length, n, "every mutation applied exactly once");
    eq(new Set(rows.map((r) => r.doc.n)).size, n, "no duplicate");
    const docs = await converged(env, coll, [a, b]);
    eq(docs.length, n, "both devices hold all");
    ok(docs.every((d) => !d.id.startsWith("tmp_")), "every id is canonical");
  },

  async temporary_ids_are_remapped_with_queued_updates_and_deletes(env) {
    const coll = collName("ids");
    const a = await device(env, coll);
    const b = await device(env, coll);
    await a.sync();
    const maps = [];
    a.on("idmap", (e) => maps.push(e));
    let rows = [];
    a.subscribe(coll, {}, (r) => (rows = r));
    await ctl(env, "/stop"); // keep everything queued under temporary ids
    const x = await a.insert(coll, { text: "x", n: 1 });
    const y = await a.insert(coll, { text: "y", n: 2 });
    await a.update(coll, x, { n: 10 });
    await a.delete(coll, y);
    const z = await a.insert(coll, { text: "z", n: 3, parent: x });
    ok([x, y, z].every((id) => id.startsWith("tmp_")), "temporary ids");
    await ctl(env, "/start");
    await syncedAfterOutage(env, a);
    const X = a.resolveId(x);
    const Z = a.resolveId(z);
    ok(X !== x && !X.startsWith("tmp_"), `x mapped: ${X}`);
    ok(Z !== z && !Z.startsWith("tmp_"), `z mapped: ${Z}`);
    eq(a.resolveId("plain"), "plain", "other ids resolve to themselves");
    ok(maps.some((m) => m.tmp === x && m.id === X), "an idmap event for x");
    ok(maps.some((m) => m.tmp === z && m.id === Z), "an idmap event for z");
    const gx = await a.get(coll, x);
    eq([gx.id, gx.n], [X, 10], "the temporary id still reaches the document, updated");
    eq(await a.get(coll, y), undefined, "the queued delete applied");
    eq((await a.get(coll, Z)).parent, X, "a reference to the temporary id was rewritten");
    await until("live results with canonical ids", () =>
      rows.length === 2 && rows.every((d) => !d.id.startsWith("tmp_")) && byId(rows).join() === [X, Z].sort().join());
    const server = await serverRows(env, coll);
    const sx = server.find((r) => r.id === X);
    eq(sx.doc.n, 10, "the server has the queued update");
    ok(!server.some((r) => r.id.startsWith("tmp_")), "no temporary id reached the server's keys");
    ok(server.filter((r) => !r.deleted).length === 2, "y is gone on the server");
    // The alias keeps working after the mapping.
    await a.update(coll, x, { n: 11 });
    await a.delete(coll, z);
    await a.sync();
    const after = await serverRows(env, coll);
    eq(after.find((r) => r.id === X).doc.n, 11, "update through the alias");
    ok(after.find((r) => r.id === Z).deleted, "delete through the alias");
    await converged(env, coll, [a, b]);
  },

  async websocket_dropped_and_restored_misses_no_change(env) {
    const coll = collName("ws");
    const a = await device(env, coll);
    const b = await device(env, coll);
    await until("b on the WebSocket", () => b.status().connection === "websocket");
    await ctl(env, "/block-ws");
    await ctl(env, "/drop-ws");
    await until("b falls back to polling", () => b.status().connection === "polling");
    for (let i = 0; i < 5; i++) await a.insert(coll, { id: `p${i}`, n: i });
    await a.sync();
    await until("b polls the changes", async () => (await all(b, coll)).length === 5);
    await ctl(env, "/unblock-ws");
    await until("b back on the WebSocket", () => b.status().connection === "websocket", 45000);
    for (let i = 5; i < 10; i++) await a.insert(coll, { id: `p${i}`, n: i });
    await a.update(coll, "p0", { n: 50 });
    const docs = await converged(env, coll, [a, b]);
    eq(docs.length, 10, "every change arrived");
    eq(docs.find((d) => d.id === "p0").n, 50, "the later edit too");
  },

  async a_half_open_websocket_is_detected_by_the_keep_alive(env) {
    // The proxy stops forwarding b's socket in both directions without
    // closing it (what a NAT that lost the connection does): b must notice
    // by its keep-alive, poll, and reconnect.
    // Not timed: without the keep-alive, b's socket would stay "live"
    // forever and b would never poll, so the change would never arrive.
    const coll = collName("half");
    // Generous for a loaded machine: a pong later than this after its ping
    // would drop the healthy socket.
    const keepAliveMs = 1000;
    const pollMs = 500;
    const a = await device(env, coll, { sync: { websocket: false } });
    const b = await device(env, coll, { sync: { keepAliveMs, pollMs } });
    await until("b on the WebSocket", () => b.status().connection === "websocket");
    // A healthy quiet socket stays: the pings are answered.
    const before = await ctl(env, "/state", "GET");
    await sleep(4 * keepAliveMs);
    eq(b.status().connection, "websocket", "a quiet healthy socket stays up");
    eq((await ctl(env, "/state", "GET")).wsTotal, before.wsTotal, "and is not reopened");
    const seen = [];
    b.on("status", (s) => seen.push(s.connection));
    const { stalled } = await ctl(env, "/stall-ws");
    eq(stalled, 1, "b's socket is half-open");
    await a.insert(coll, { id: "h1", n: 1 });
    await a.sync();
    await until("the change reaches b", async () => (await b.get(coll, "h1")) !== undefined);
    await until("b back on the WebSocket", () => b.status().connection === "websocket" && seen.length > 1);
    ok((await ctl(env, "/state", "GET")).wsTotal > before.wsTotal, "a new socket was opened");
    const down = seen.findIndex((c) => c !== "websocket");
    ok(down >= 0 && ["polling", "connecting"].includes(seen[down]), `websocket -> polling: ${seen}`);
    ok(seen.slice(down).includes("websocket"), `-> websocket: ${seen}`);
    ok(!seen.includes("offline"), `never offline: ${seen}`);
    // The new socket streams.
    await a.insert(coll, { id: "h2", n: 2 });
    await until("b gets the next change", async () => (await b.get(coll, "h2")) !== undefined);
    eq(b.status().connection, "websocket", "over the new socket");
  },

  async an_outage_of_503s_ends_with_the_first_answer_of_the_server(env) {
    // The server answers 503 to HTTP for a while; a's socket stays healthy
    // (and is pinged every keepAliveMs). Each answer of the server (a pong)
    // ends the push backoff, so the loop keeps trying at the pace of the
    // pongs instead of ever more slowly; sync() calls during the outage do
    // not lengthen it. Once HTTP recovers, the queued write lands.
    // Counted, not timed: without the pongs ending it, the backoff's waits
    // before the loop's tenth try would add up to a minute at least
    // (125-250 ms doubling to 15-30 s), far past the 20 s hang guard of the
    // ten tries awaited below; with them, tries resume after each pong.
    const coll = collName("outage");
    // Generous for a loaded machine: a pong later than this after its ping
    // would drop the healthy socket this scenario is about.
    const keepAliveMs = 1500;
    const a = await device(env, coll, { sync: { keepAliveMs } });
    const errors = [];
    a.on("error", (e) => errors.push(e));
    await until("a on the WebSocket", () => a.status().connection === "websocket");
    const seen = [];
    a.on("status", (s) => seen.push(s.connection));
    const failed = async () => (await ctl(env, "/state", "GET")).failedHttp;
    const before = await failed();
    await ctl(env, "/fail-http");
    await a.insert(coll, { id: "w1", n: 1 });
    await until("a's push meets the outage", async () => (await failed()) > before);
    for (let i = 0; i < 8; i++) await rejects(a.sync(), "SERVER", env, "sync() during the outage");
    await until("an error event", () => errors.some((e) => e.code === "SERVER"));
    eq(a.status().lastError.code, "SERVER", "lastError says why");
    const afterSyncs = await failed();
    await until("ten more tries of the loop's own during the outage", async () => (await failed()) - afterSyncs >= 10);
    eq(a.status().pending, 1, "the write waits");
    eq(await serverRows(env, coll), [], "nothing landed");
    await ctl(env, "/heal-http");
    await until("the write lands", async () => (await serverRows(env, coll)).length === 1);
    await until("settled", () => a.status().pending === 0);
    eq(a.status().lastError, null, "lastError clears");
    eq((await serverRows(env, coll)).length, 1, "once");
    ok(seen.every((c) => c === "websocket"), `the socket stayed healthy: ${seen}`);
  },

  async resync_after_the_server_lost_its_data_keeps_pending_writes(env) {
    const coll = collName("resync");
    const a = await device(env, coll);
    const b = await device(env, coll);
    await a.insert(coll, { id: "s1", n: 1 });
    await a.insert(coll, { id: "s2", n: 2 });
    await a.sync();
    await converged(env, coll, [a, b]);
    await ctl(env, "/stop");
    await a.insert(coll, { id: "p1", n: 3 });
    await a.update(coll, "s1", { n: 10 }); // an edit of a document the server will no longer have
    await ctl(env, "/wipe"); // a new database: every cursor answers resync
    await syncedAfterOutage(env, a);
    eq(a.status().pending, 0, "pending writes survived the resync and were pushed");
    const docs = await converged(env, coll, [a, b]);
    eq(byId(docs), ["p1"], "documents the server lost are gone, the pending insert is there");
    eq(await a.get(coll, "s2"), undefined, "a's copy of a lost document is gone");
  },

  async browser_offline_and_online_events_pause_and_resume_sync(env) {
    const coll = collName("net");
    const a = await device(env, coll);
    await until("the WebSocket", () => a.status().connection === "websocket");
    const markers = collName("marker");
    dispatchEvent(new Event("offline"));
    await until("offline", () => a.status().connection === "offline");
    let before = await ctl(env, "/state", "GET");
    await a.insert(coll, { id: "o1", n: 1 });
    await markerPush(env, markers);
    eq(await pushesSince(env, before), 1, "only the marker's push: nothing is sent while the browser is offline");
    eq(await serverRows(env, coll), [], "and nothing arrived");
    eq(a.status().pending, 1, "the write waits");
    dispatchEvent(new Event("online"));
    await until("the write arrives after online", async () => (await serverRows(env, coll)).length === 1);
    await until("back on the WebSocket", () => a.status().connection === "websocket");
    // The app's own switch does the same.
    a.goOffline();
    await until("offline by goOffline()", () => a.status().connection === "offline");
    before = await ctl(env, "/state", "GET");
    await a.insert(coll, { id: "o2", n: 2 });
    await markerPush(env, markers);
    eq(await pushesSince(env, before), 1, "only the marker's push: nothing is sent while cut off");
    eq((await serverRows(env, coll)).length, 1, "and nothing arrived");
    a.goOnline();
    await until("the write arrives after goOnline()", async () => (await serverRows(env, coll)).length === 2);
    await until("back on the WebSocket again", () => a.status().connection === "websocket");
  },

  async go_offline_while_the_sync_loop_starts_holds(env) {
    // An app calls goOffline() right after open(), while this instance is
    // still becoming the leader: the loop then starting must start cut off
    // (it started online, the call lost, when it came while the loop read
    // its state). The call is made in that window on purpose: when the
    // loop creates its first read (a readonly transaction over the outbox,
    // the server copies and the id map: seen by wrapping
    // IDBDatabase.prototype.transaction), the page first starts a readwrite
    // transaction on `_server` and keeps it busy, so that the read waits
    // until goOffline() was called.
    const coll = collName("offstart");
    const name = dbName("offstart");
    const collections = { [coll]: {} };
    const plain = await env.open({ name, collections });
    plain.close();
    const raw = await rawDb(name);
    let holding = false;
    let held = null;
    const holdServer = () => {
      holding = true;
      const tx = raw.transaction("_server", "readwrite");
      const spin = () => {
        if (holding) tx.objectStore("_server").count().onsuccess = spin;
      };
      spin();
      held = new Promise((resolve, reject) => {
        tx.oncomplete = resolve;
        tx.onerror = () => reject(tx.error);
      });
    };
    const transaction = IDBDatabase.prototype.transaction;
    IDBDatabase.prototype.transaction = function (stores, mode, ...rest) {
      const list = typeof stores === "string" ? [stores] : [...stores];
      const loads = ["_outbox", "_server", "_ids"].every((s) => list.includes(s)) && !list.includes("_held");
      if (this !== raw && this.name === name && (mode ?? "readonly") === "readonly" && loads && !held) holdServer();
      return transaction.call(this, stores, mode, ...rest);
    };
    let db;
    try {
      db = await env.open({ name, collections, sync: { url: env.server, token: "dev-token", pollMs: 200 } });
      env.opened.push(db);
      await until("the loop reads its state", () => held !== null);
      eq(db.status().leader, false, "not leading yet");
      db.goOffline();
    } finally {
      IDBDatabase.prototype.transaction = transaction;
      holding = false;
    }
    await held;
    raw.close();
    await until("the loop starts", () => db.status().leader);
    eq(db.status().connection, "offline", "the loop started cut off");
    const before = await ctl(env, "/state", "GET");
    await db.insert(coll, { id: "x", n: 1 });
    await markerPush(env, collName("marker"));
    eq(await pushesSince(env, before), 1, "only the marker's push: nothing is sent while cut off");
    eq((await ctl(env, "/state", "GET")).wsTotal, before.wsTotal, "no WebSocket opened");
    eq(db.status().pending, 1, "the write waits");
    db.goOnline();
    await until("the write arrives after goOnline()", async () => (await serverRows(env, coll)).length === 1);
  },

  async a_sync_loop_whose_start_failed_is_started_again(env) {
    // The instance holding the lead fails to start its loop: IndexedDB
    // refuses the loop's first read (injected: the first such transaction
    // throws, as on a connection closing under it). It must not hold the
    // lead with no loop (its own and every other tab's sync() would wait
    // forever): it tries again and syncs.
    const coll = collName("restart");
    const name = dbName("restart");
    const collections = { [coll]: {} };
    const plain = await env.open({ name, collections });
    plain.close();
    const transaction = IDBDatabase.prototype.transaction;
    let refused = 0;
    IDBDatabase.prototype.transaction = function (stores, mode, ...rest) {
      const list = typeof stores === "string" ? [stores] : [...stores];
      const loads = ["_outbox", "_server", "_ids"].every((s) => list.includes(s)) && !list.includes("_held");
      if (this.name === name && (mode ?? "readonly") === "readonly" && loads && refused === 0) {
        refused++;
        throw new DOMException("the connection is closing (test)", "InvalidStateError");
      }
      return transaction.call(this, stores, mode, ...rest);
    };
    let db;
    try {
      db = await env.open({ name, collections, sync: { url: env.server, token: "dev-token", websocket: false, pollMs: 200 } });
      env.opened.push(db);
      await until("the loop's first read is refused", () => refused === 1);
    } finally {
      IDBDatabase.prototype.transaction = transaction;
    }
    await until("a leads after all", () => db.status().leader);
    await db.insert(coll, { id: "r1", n: 1 });
    await synced(db);
    eqDocs(live(await serverRows(env, coll)).map((r) => r.doc), [{ id: "r1", n: 1 }], "and syncs");
  },

  async polling_only_mode_never_opens_a_websocket(env) {
    const coll = collName("poll");
    const before = (await ctl(env, "/state", "GET")).wsTotal;
    const opts = { sync: { websocket: false, pollMs: 100 } };
    const a = await device(env, coll, opts);
    const b = await device(env, coll, opts);
    let seen = [];
    b.subscribe(coll, {}, (rows) => (seen = rows));
    await a.insert(coll, { id: "p", n: 1 });
    await until("the write polled into b's live query", () => seen.some((d) => d.id === "p"));
    eq(b.status().connection, "polling", "b is polling");
    await converged(env, coll, [a, b]);
    eq((await ctl(env, "/state", "GET")).wsTotal, before, "no WebSocket was opened");
  },

  async local_collections_never_reach_the_server(env) {
    const coll = collName("shared");
    const drafts = collName("drafts");
    const a = await device(env, coll, { more: { [drafts]: { sync: "local" } } });
    await a.insert(drafts, { id: "secret", text: "stays here" });
    await a.update(drafts, "secret", { more: 1 });
    await a.insert(coll, { id: "public", n: 1 });
    await a.sync();
    eq(await a.pendingCount(), 0, "nothing pending");
    eq((await serverRows(env, coll)).length, 1, "the synced collection arrived");
    eq(await serverRows(env, drafts), [], "the local collection is not in the server's database");
    eq((await a.get(drafts, "secret")).more, 1, "local data stays local");
  },

  async manual_collections_sync_only_on_demand(env) {
    const coll = collName("auto");
    const notes = collName("manual");
    const drafts = collName("local");
    const more = { [notes]: { sync: "manual" }, [drafts]: { sync: "local" } };
    const a = await device(env, coll, { more });
    const b = await device(env, coll, { more });
    await a.insert(notes, { id: "n1", text: "draft" });
    await a.insert(coll, { id: "t1", n: 1 });
    await a.sync();
    eq(await serverRows(env, notes), [], "manual writes wait for push(coll)");
    eq((await serverRows(env, coll)).length, 1, "auto writes do not");
    eq(await a.divergence(notes), { local: 1, remote: 0 }, "one local change not exchanged");
    const rejected = [];
    a.on("rejected", (e) => rejected.push(e));
    await a.push(notes);
    eq((await serverRows(env, notes)).length, 1, "pushed on demand");
    eq(rejected, [], "under a mid the server accepts, although later writes were pushed first");
    await until("a's own write settles", async () => a.status().pending === 0);
    eq(await a.divergence(notes), { local: 0, remote: 0 }, "its own write is not a remote change");
    await until("b has the auto collection's write", () => b.get(coll, "t1"));
    await b.sync();
    eq(await b.get(notes, "n1"), undefined, "a manual collection's server changes wait for pull(coll)");
    eq(await b.divergence(notes), { local: 0, remote: 1 }, "one remote change not exchanged");
    await b.pull(notes);
    eq((await b.get(notes, "n1")).text, "draft", "pulled on demand");
    eq(await b.divergence(notes), { local: 0, remote: 0 }, "nothing left to exchange");
    await rejects(a.push(drafts), "SYNC_DISABLED", env, "push of a local collection");
    await rejects(a.divergence("nope"), "UNKNOWN_COLLECTION", env, "divergence of an unknown collection");
  },

  async one_leader_per_database_followers_write_and_forward(env) {
    const coll = collName("tabs");
    const name = dbName("shared");
    const open = async () => {
      const db = await env.open({
        name,
        collections: { [coll]: { indexes: ["n"] } },
        sync: { url: env.server, token: "dev-token", pollMs: 200 },
      });
      env.opened.push(db);
      return db;
    };
    const tabs = [await open(), await open(), await open()];
    await until("one leader", () => tabs.filter((t) => t.status().leader).length === 1);
    await until("every instance sees the leader's WebSocket", () =>
      tabs.every((t) => t.status().connection === "websocket"));
    await until("one WebSocket for the three", async () => (await ctl(env, "/state", "GET")).wsOpen === 1);
    const follower = tabs.find((t) => !t.status().leader);
    const maps = [];
    follower.on("idmap", (e) => maps.push(e));
    const ids = [];
    await Promise.all(tabs.map(async (t, i) => {
      for (let k = 0; k < 5; k++) ids.push(await t.insert(coll, { n: i * 10 + k }));
    }));
    await follower.sync(); // forwarded to the leader, answered over the channel
    eq(follower.status().pending, 0, "the follower shows the leader's pending count");
    eq((await serverRows(env, coll)).length, 15, "every instance's writes were pushed once");
    await until("idmap events reach followers", () => maps.length === 15);
    ok(ids.every((id) => follower.resolveId(id) !== id), "followers resolve every temporary id");
    // The leader closes: another instance takes over and syncs.
    const leader = tabs.find((t) => t.status().leader);
    leader.close();
    const rest = tabs.filter((t) => t !== leader);
    await until("a new leader", () => rest.filter((t) => t.status().leader).length === 1, 5000);
    await rest[0].insert(coll, { id: "after", n: 99 });
    await rest[1].sync();
    const rows = await serverRows(env, coll);
    eq(rows.length, 16, "the write after the hand-over arrived once");
    await until("still one WebSocket", async () => (await ctl(env, "/state", "GET")).wsOpen === 1);
    await converged(env, coll, rest);
  },

  async conflicts_server_wins_by_default(env) {
    const { docs, events, errors } = await conflict(
      env,
      {},
      { id: "t", text: "milk", n: 1 },
      (a, c) => a.update(c, "t", { text: "a" }),
      (b, c) => b.update(c, "t", { text: "b" }),
    );
    eqDocs(docs, [{ id: "t", text: "a", n: 1 }], "the first write to reach the server stands");
    eq(events.length, 1, "one conflict event");
    eq([events[0].id, events[0].resolution, events[0].policy], ["t", "remote", "serverWins"], "reported");
    eq(events[0].local.text, "b", "with the local view");
    eq(events[0].remote.text, "a", "and the server's");
    eq(errors.map((e) => `${e.code}: ${e.message}`), [], "no error event");
  },

  async conflicts_last_write_wins(env) {
    const { docs, events, errors } = await conflict(
      env,
      { conflicts: "lastWriteWins" },
      { id: "t", text: "milk", n: 1 },
      (a, c) => a.update(c, "t", { text: "a" }),
      (b, c) => b.update(c, "t", { text: "b", n: 2 }),
    );
    eqDocs(docs, [{ id: "t", text: "b", n: 2 }], "the later write wins, although it reached the server last");
    eq([events[0].resolution, events[0].policy], ["write", "lastWriteWins"], "reported");
    eq(errors.map((e) => `${e.code}: ${e.message}`), [], "no error event");
  },

  async conflicts_field_merge_nested_and_by_id(env) {
    const seed = {
      id: "t", text: "milk", done: false, meta: { owner: "ann", n: 1 },
      pauses: [{ id: 1, start: 10, end: 20 }, { id: 2, start: 30, end: 40 }],
    };
    const { docs, events, errors } = await conflict(
      env,
      { conflicts: "fieldMerge", fallback: "lastWriteWins", mergeById: { pauses: "start" } },
      seed,
      (a, c) => a.replace(c, "t", {
        ...seed, text: "oat milk", meta: { owner: "ann", n: 2 },
        pauses: [{ id: 1, start: 10, end: 25 }, { id: 2, start: 30, end: 40 }, { id: 4, start: 5, end: 6 }],
      }),
      (b, c) => b.replace(c, "t", {
        ...seed, done: true, meta: { owner: "bob", n: 1 }, text: "soy milk",
        pauses: [{ id: 1, start: 10, end: 20 }, { id: 3, start: 50, end: 60 }],
      }),
    );
    const d = docs[0];
    eq([d.done, d.meta.owner, d.meta.n], [true, "bob", 2], "fields changed on one side each survive, nested too");
    eq(d.text, "soy milk", "the same field: the fallback (last write) decides");
    eq(d.pauses.map((p) => [p.id, p.end]), [[4, 6], [1, 25], [3, 60]], "pauses merged by id, ordered by start");
    eq([events[0].resolution, events[0].policy], ["write", "fieldMerge"], "reported");
    eq(errors.map((e) => `${e.code}: ${e.message}`), [], "no error event");
  },

  async conflicts_custom_resolver(env) {
    const seen = [];
    const { docs, events, errors } = await conflict(
      env,
      {
        conflicts: (ctx) => {
          seen.push(ctx);
          return { text: `${ctx.remote.text}+${ctx.local.text}`, n: ctx.base.n + 10 };
        },
      },
      { id: "t", text: "milk", n: 1 },
      (a, c) => a.update(c, "t", { text: "a" }),
      (b, c) => b.update(c, "t", { text: "b" }),
    );
    eqDocs(docs, [{ id: "t", text: "a+b", n: 11 }], "the resolver's document");
    eq(seen.length, 1, "called once");
    eq([seen[0].id, seen[0].base.text, seen[0].remote.text, seen[0].local.text], ["t", "milk", "a", "b"], "with base, remote and local");
    ok(seen[0].collection.startsWith("cf_"), "and the collection");
    eq([events[0].resolution, events[0].policy], ["write", "custom"], "reported");
    eq(errors.map((e) => `${e.code}: ${e.message}`), [], "no error event");
  },

  async conflicts_resolver_that_throws_falls_back_to_the_server(env) {
    const { docs, events, errors } = await conflict(
      env,
      { conflicts: () => { throw new Error("resolver bug"); } },
      { id: "t", text: "milk" },
      (a, c) => a.update(c, "t", { text: "a" }),
      (b, c) => b.update(c, "t", { text: "b" }),
    );
    eqDocs(docs, [{ id: "t", text: "a" }], "the server's document stands");
    eq(events[0].resolution, "remote", "reported as such");
    await until("an error event", () => errors.some((e) => e.code === "RESOLVER_FAILED"));
    eq(errors.map((e) => e.code), ["RESOLVER_FAILED"], "one error event, and no other");
    ok(errors[0] instanceof env.SyncStoreError, "a SyncStoreError");
    ok(errors[0].message.includes("resolver bug"), `saying why: ${errors[0].message}`);
  },

  async conflicts_keep_both(env) {
    const { docs, events, errors } = await conflict(
      env,
      { conflicts: () => ({ keep: "both" }) },
      { id: "t", text: "milk", n: 1 },
      (a, c) => a.update(c, "t", { text: "a" }),
      (b, c) => b.update(c, "t", { text: "b" }),
    );
    eq(docs.length, 2, "both documents exist on every device");
    eq(docs.map((d) => d.text).sort(), ["a", "b"], "the server's and the local one");
    const copy = docs.find((d) => d.id !== "t");
    ok(!copy.id.startsWith("tmp_"), "the copy has a canonical id");
    eq(copy.n, 1, "the copy is the local document");
    eq(events[0].resolution, "both", "reported");
    eq(errors.map((e) => `${e.code}: ${e.message}`), [], "no error event");
  },

  async conflicts_manual_resolution(env) {
    const coll = collName("man");
    const spec = { conflicts: "manual" };
    const a = await device(env, coll, { spec });
    const b = await device(env, coll, { spec });
    const events = [];
    b.on("conflict", (e) => events.push(e));
    const errors = [];
    a.on("error", (e) => errors.push(e));
    b.on("error", (e) => errors.push(e));
    for (const id of ["x", "y", "z"]) await a.insert(coll, { id, text: "milk" });
    await a.sync();
    await until("b has them", async () => (await all(b, coll)).length === 3);
    a.goOffline();
    b.goOffline();
    for (const id of ["x", "y", "z"]) await a.update(coll, id, { text: "a" });
    for (const id of ["x", "y", "z"]) await b.update(coll, id, { text: "b" });
    a.goOnline();
    await synced(a);
    b.goOnline();
    await synced(b);
    const open = await b.conflicts(coll);
    eq(open.map((c) => [c.id, c.local.text, c.remote.text]).sort(), [["x", "b", "a"], ["y", "b", "a"], ["z", "b", "a"]], "three conflicts kept");
    eq(events.map((e) => [e.policy, e.resolution]), [["manual", "remote"], ["manual", "remote"], ["manual", "remote"]], "reported");
    const x = await b.get(coll, "x");
    eq([x.text, x.$conflict], ["a", true], "the server's document shows, marked");
    ok((await b.query(coll, {})).every((d) => d.$conflict === true), "queries show the marker too");
    eq(await b.pendingCount(), 0, "nothing pending meanwhile");
    await rejects(b.resolveConflict(coll, "y", { keep: "sideways" }), "INVALID_DOCUMENT", env, "a bad resolution");
    await rejects(b.resolveConflict(coll, "y", 42), "INVALID_DOCUMENT", env, "not a document");
    eq((await b.conflicts(coll)).length, 3, "a bad resolution changes nothing");
    await b.update(coll, "x", { n: 5 }); // an edit of another field after the conflict
    await b.resolveConflict(coll, "x", { keep: "local" });
    await b.resolveConflict(coll, "y", { keep: "remote" });
    await b.resolveConflict(coll, "z", { keep: "both" });
    await rejects(b.resolveConflict(coll, "x", { keep: "local" }), "NOT_FOUND", env, "a resolved conflict");
    eq(await b.conflicts(coll), [], "no conflict left");
    eq((await b.get(coll, "y")).$conflict, undefined, "the marker is gone");
    await synced(b);
    await synced(a);
    const docs = await converged(env, coll, [a, b]);
    const text = Object.fromEntries(docs.map((d) => [d.id, d.text]));
    eq([text.x, text.y, text.z], ["b", "a", "a"], "keep local, keep remote, keep both");
    eq(docs.find((d) => d.id === "x").n, 5, "keep local kept the later edit of another field");
    eq(docs.length, 4, "keep both added the local document");
    ok(docs.some((d) => !["x", "y", "z"].includes(d.id) && d.text === "b"), "as a new document");
    eq(errors.map((e) => `${e.code}: ${e.message}`), [], "no error event");
  },

  async pulled_documents_are_stored_once_and_edits_keep_the_server_state(env) {
    // A document this client never edited lives in its record alone; the
    // first local edit saves the server's copy in `_server`, in the same
    // transaction: also when the store runs without sync (or the tab closes
    // before the sync loop saw the edit), the reopened engine still knows
    // the server's document, so a field merge keeps both sides.
    const coll = collName("once");
    const spec = { indexes: ["n"], conflicts: "fieldMerge" };
    const name = dbName("once");
    const open = async (sync) => {
      const db = await env.open({
        name,
        collections: { [coll]: spec },
        ...(sync ? { sync: { url: env.server, token: "dev-token", pollMs: 200 } } : {}),
      });
      env.opened.push(db);
      return db;
    };
    const b = await device(env, coll, { spec });
    for (let i = 0; i < 20; i++) await b.insert(coll, { id: `p${i}`, n: i, a: 1, b: 1 });
    await b.sync();
    let a = await open(true);
    await until("a pulled the 20 documents", async () => (await a.count(coll, {})) === 20);
    await synced(a);
    const copies = async () => {
      const idb = await new Promise((res, rej) => {
        const r = indexedDB.open(name);
        r.onsuccess = () => res(r.result);
        r.onerror = () => rej(r.error);
      });
      try {
        return await new Promise((res, rej) => {
          const r = idb.transaction("_server").objectStore("_server").getAllKeys();
          r.onsuccess = () => res(r.result.map((k) => k[1]).sort());
          r.onerror = () => rej(r.error);
        });
      } finally {
        idb.close();
      }
    };
    eq(await copies(), [], "pulled documents have no second copy");
    a.close();
    // Edited without sync: the record shows the edit, `_server` keeps the server's document.
    const local = await open(false);
    await local.update(coll, "p1", { a: 2 });
    await local.delete(coll, "p2");
    eq(await copies(), ["p1", "p2"], "the first edits saved the server's copies");
    local.close();
    await b.update(coll, "p1", { b: 2 });
    await b.update(coll, "p3", { b: 3 });
    await b.sync();
    a = await open(true);
    await synced(a);
    await synced(b);
    await synced(a);
    const docs = await converged(env, coll, [a, b]);
    const p1 = docs.find((d) => d.id === "p1");
    eq([p1.a, p1.b], [2, 2], "the field merge kept both edits (its base was the server's copy)");
    eq(docs.length, 19, "the offline delete arrived");
    eq((await a.get(coll, "p3")).b, 3, "a document without a copy took the server's change");
    // Reopened once more: the engine restores the same state from the records.
    a.close();
    a = await open(true);
    await b.update(coll, "p4", { b: 4 });
    await a.update(coll, "p5", { a: 5 });
    await synced(b);
    await synced(a);
    const again = await converged(env, coll, [a, b]);
    eq([again.find((d) => d.id === "p4").b, again.find((d) => d.id === "p5").a], [4, 5], "edits both ways after the reopen");
  },

  async batched_writes_queue_as_one_record_in_mid_order(env) {
    // A batch's outbox entries are one record (their mids follow its key);
    // single writes after it must get later mids, counted and pushed in
    // order, also after a reopen and when written without sync.
    const coll = collName("bat");
    const name = dbName("bat");
    const open = async (sync) => {
      const db = await env.open({
        name,
        collections: { [coll]: { indexes: ["n"] } },
        ...(sync ? { sync: { url: env.server, token: "dev-token", pollMs: 200 } } : {}),
      });
      env.opened.push(db);
      return db;
    };
    let a = await open(false);
    await a.batch([0, 1, 2].map((n) => ({ op: "insert", coll, doc: { id: `b${n}`, n } })));
    await a.insert(coll, { id: "s1", n: 3 });
    await a.batch([
      { op: "update", coll, id: "b0", patch: { n: 10 } },
      { op: "insert", coll, doc: { id: "b3", n: 4 } },
      { op: "delete", coll, id: "b1" },
    ]);
    await a.insert(coll, { id: "s2", n: 5 });
    eq(await a.pendingCount(), 8, "every mutation counted, batched or not");
    a.close();
    a = await open(true);
    eq(await a.pendingCount(), 8, "the same after a reopen");
    await synced(a);
    eq(await a.pendingCount(), 0, "all pushed");
    const rows = await serverRows(env, coll);
    eq(rows.length, 6, "one server row per document (b1 deleted)");
    const byId = (a, b) => (a.id < b.id ? -1 : 1);
    eqDocs(live(rows).map((r) => r.doc).sort(byId), [
      { id: "b0", n: 10 }, { id: "b2", n: 2 }, { id: "b3", n: 4 }, { id: "s1", n: 3 }, { id: "s2", n: 5 },
    ], "applied in write order (the update after its insert, the delete after none)");
    await a.batch([{ op: "insert", coll, doc: { id: "c1", n: 6 } }, { op: "update", coll, id: "c1", patch: { n: 7 } }]);
    await synced(a);
    eq(live(await serverRows(env, coll)).find((r) => r.doc.id === "c1").doc.n, 7, "a batch written while syncing");
  },

  async a_refused_token_is_unauthorized_through_the_store(env) {
    const coll = collName("auth");
    const db = await device(env, coll, { sync: { token: "not-a-token" } });
    const errors = [];
    db.on("error", (e) => errors.push(e));
    await db.insert(coll, { id: "u1", n: 1 });
    const e = await rejects(db.sync(), "UNAUTHORIZED", env, "sync() with a token the server refuses");
    eq(e.retryable, false, "not retryable");
    await until("lastError", () => db.status().lastError && db.status().lastError.code === "UNAUTHORIZED");
    await until("an error event", () => errors.some((x) => x.code === "UNAUTHORIZED" && x instanceof env.SyncStoreError));
    eq(db.status().pending, 1, "the write stays queued");
    eq(await serverRows(env, coll), [], "nothing reached the server");
  },

  async a_read_only_user_sees_the_data_and_its_writes_are_rejected(env) {
    // A read-only JWT (`ro: true`): it pulls and streams like any other, and
    // the server answers its pushes 403 FORBIDDEN: its writes show, then
    // roll back with `rejected` events (like any rejection), and the store
    // keeps pulling.
    const coll = collName("ro");
    const a = await device(env, coll);
    await a.insert(coll, { id: "r1", text: "small" });
    await a.sync();
    const token = await mint(env, `reader_${coll}`, { ro: true });
    const reader = await device(env, coll, { sync: { token } });
    await until("the reader sees the data", async () => (await reader.get(coll, "r1")) !== undefined);
    const rejected = [];
    reader.on("rejected", (e) => rejected.push(e));
    let rows = [];
    reader.subscribe(coll, {}, (r) => (rows = r));
    await reader.update(coll, "r1", { text: "edited by the reader" });
    await reader.insert(coll, { id: "r2", text: "new" });
    eq((await reader.get(coll, "r1")).text, "edited by the reader", "the optimistic update shows");
    await reader.sync();
    await until("two rejected events", () => rejected.length === 2);
    eq(rejected.map((e) => [e.id, e.code]).sort(), [["r1", "FORBIDDEN"], ["r2", "FORBIDDEN"]], "rejections");
    ok(rejected.every((e) => typeof e.message === "string" && e.message.length > 0), "with a reason");
    eq((await reader.get(coll, "r1")).text, "small", "the update rolled back to the server's state");
    eq(await reader.get(coll, "r2"), undefined, "the insert rolled back");
    await until("the live query shows the rollback", () => rows.length === 1 && rows[0].text === "small");
    eq(await reader.pendingCount(), 0, "rejected entries left the outbox");
    eq(reader.status().lastError, null, "a rejection is no sync error");
    await a.update(coll, "r1", { text: "later" });
    await a.sync();
    await until("the reader keeps pulling", async () => (await reader.get(coll, "r1")).text === "later");
    eqDocs(live(await serverRows(env, coll)).map((r) => r.doc), [{ id: "r1", text: "later" }], "nothing of the reader reached the server");
    await converged(env, coll, [a, reader]);
  },

  async a_document_over_the_server_limit_is_refused_locally(env) {
    // The test server refuses documents over 256 KiB. A store's default
    // limit is the same; a store allowing more locally (maxDocBytes 1 MiB)
    // learns the server's limit (from the socket's synced frame, or
    // GET /v1/config without a socket) and refuses larger writes to synced
    // collections at write time: nothing shows, nothing is queued.
    const big = "x".repeat(300 * 1024);
    const plain = await env.open({ name: dbName("lim"), collections: { docs: {} } });
    env.opened.push(plain);
    await rejects(plain.insert("docs", { id: "b", text: big }), "DOC_TOO_LARGE", env, "the default limit is the server's");
    for (const websocket of [true, false]) {
      const coll = collName(websocket ? "limws" : "limhttp");
      const db = await env.open({
        name: dbName("lim"),
        collections: { [coll]: {}, drafts: { sync: "local" } },
        maxDocBytes: 1 << 20,
        sync: { url: env.server, token: "dev-token", pollMs: 200, websocket },
      });
      env.opened.push(db);
      if (websocket) await until("the WebSocket", () => db.status().connection === "websocket");
      await db.insert(coll, { id: "small", text: "small" });
      await db.sync();
      let rows = [];
      db.subscribe(coll, {}, (r) => (rows = r));
      const e = await rejects(db.insert(coll, { id: "b1", text: big }), "DOC_TOO_LARGE", env, `an insert over the server's limit (websocket ${websocket})`);
      ok(e.message.length > 0, "with a reason");
      await rejects(db.update(coll, "small", { text: big }), "DOC_TOO_LARGE", env, "an update making it too large");
      eq(await db.get(coll, "b1"), undefined, "the insert never showed");
      eq((await db.get(coll, "small")).text, "small", "the update never showed");
      eq(await db.pendingCount(), 0, "nothing queued");
      await db.insert("drafts", { id: "d", text: big });
      eq((await db.get("drafts", "d")).text.length, big.length, "a local collection keeps the local limit");
      const fits = "y".repeat(200 * 1024);
      await db.insert(coll, { id: "fits", text: fits });
      await db.sync();
      await until("the live query", () => rows.length === 2);
      eq(live(await serverRows(env, coll)).map((r) => r.id).sort(), ["fits", "small"], "what fits reached the server");
    }
  },

  async get_token_refreshes_a_token_expiring_mid_session(env) {
    // The first token lives 2 s (a JWT, no leeway): the server closes the
    // WebSocket with 4401 at its expiry and answers HTTP requests 401 after
    // it; the store asks getToken for a new one and goes on, with no write
    // lost or applied twice, and no error. Later tokens live an hour: one
    // expiry mid-session, not a new one every 2 s racing each request on a
    // slow machine.
    for (const websocket of [true, false]) {
      const coll = collName(websocket ? "jwtws" : "jwthttp");
      const user = `user_${coll}`;
      let calls = 0;
      const getToken = async () => {
        calls += 1;
        return mint(env, user, { ttl: calls === 1 ? 2 : 3600 });
      };
      const db = await device(env, coll, { sync: { token: undefined, getToken, websocket } });
      const errors = [];
      db.on("error", (e) => errors.push(e));
      if (websocket) await until("the WebSocket", () => db.status().connection === "websocket");
      for (let i = 0; i < 5; i++) await db.insert(coll, { id: `w${i}`, n: i });
      await db.sync();
      ok(calls >= 1, "getToken gave the first token");
      await sleep(2300); // the first token expired (if a slow start had not replaced it yet)
      if (websocket) {
        await until("a new token", () => calls > 1);
        await until("the WebSocket again", () => db.status().connection === "websocket");
      }
      for (let i = 5; i < 10; i++) await db.insert(coll, { id: `w${i}`, n: i });
      await db.update(coll, "w0", { n: 100 });
      await db.sync();
      ok(calls > 1, `getToken was asked again (${calls} calls)`);
      eq(db.status().pending, 0, "nothing left queued");
      eq(db.status().lastError, null, "no error");
      const rows = await serverRows(env, coll);
      eq(rows.length, 10, "each insert reached the server once");
      eqDocs(
        rows.map((r) => r.doc).sort((x, y) => x.id.localeCompare(y.id, "en", { numeric: true })),
        Array.from({ length: 10 }, (_, i) => ({ id: `w${i}`, n: i === 0 ? 100 : i })),
        "the server has every write",
      );
      eq(errors.filter((e) => e.code === "UNAUTHORIZED"), [], `no UNAUTHORIZED error events (websocket ${websocket})`);
    }
  },

  async get_token_failures_are_unauthorized_and_lose_nothing(env) {
    const coll = collName("gettok");
    let mode = "throw";
    const getToken = () => {
      if (mode === "throw") throw new Error("signed out");
      if (mode === "reject") return Promise.reject(new Error("no session"));
      if (mode === "number") return Promise.resolve(42);
      return mint(env, `user_${coll}`);
    };
    const db = await device(env, coll, { sync: { token: undefined, getToken, websocket: false } });
    await db.insert(coll, { id: "q1", n: 1 });
    const e = await rejects(db.sync(), "UNAUTHORIZED", env, "sync() while getToken throws");
    ok(e.message.includes("signed out"), `the message says why: ${e.message}`);
    await until("lastError", () => db.status().lastError && db.status().lastError.code === "UNAUTHORIZED");
    const errors = [];
    db.on("error", (x) => errors.push(x));
    mode = "reject";
    await db.insert(coll, { id: "q2", n: 2 });
    await rejects(db.sync(), "UNAUTHORIZED", env, "sync() while getToken rejects");
    await until("an error event", () => errors.some((x) => x.code === "UNAUTHORIZED" && x.message.includes("no session") && x instanceof env.SyncStoreError));
    mode = "number";
    const e2 = await rejects(db.sync(), "UNAUTHORIZED", env, "sync() while getToken answers a number");
    ok(e2.message.includes("string"), `the message says why: ${e2.message}`);
    eq(db.status().pending, 2, "the writes stay queued");
    eq(await serverRows(env, coll), [], "nothing reached the server");
    mode = "ok";
    await syncedAfterOutage(env, db);
    eq(db.status().pending, 0, "the outbox drained");
    eq(db.status().lastError, null, "lastError clears");
    eq(live(await serverRows(env, coll)).map((r) => r.id).sort(), ["q1", "q2"], "every write arrived once");
  },

  async update_functions_sync_their_result(env) {
    // What an update function wrote reaches the server and other devices
    // as an ordinary change.
    const coll = collName("fn");
    const a = await device(env, coll);
    const b = await device(env, coll);
    await a.insert(coll, { id: "c", n: 0, gone: true, tags: ["x"] });
    await synced(a);
    await Promise.all(
      Array.from({ length: 10 }, () => a.update(coll, "c", (doc) => ({ n: doc.n + 1 }))),
    );
    await a.update(coll, "c", (doc) => {
      delete doc.gone;
      doc.tags.push("y");
    });
    await synced(a);
    await synced(b);
    const docs = await converged(env, coll, [a, b]);
    eqDocs(docs, [{ id: "c", n: 10, tags: ["x", "y"] }], "the functions' result everywhere");
    eqDocs([await b.get(coll, "c")], docs, "on the other device");
  },

  async dates_written_on_one_device_come_back_as_dates_on_another(env) {
    const coll = collName("date");
    const spec = { indexes: ["n", "at"] };
    const a = await device(env, coll, { spec });
    const b = await device(env, coll, { spec });
    const t0 = Date.UTC(2026, 5, 1, 12);
    for (let i = 0; i < 10; i++) {
      await a.insert(coll, { id: `d${i}`, n: i, at: new Date(t0 + i * 60_000), log: [{ when: new Date(t0 - i) }] });
    }
    await synced(a);
    // The wire form, kept by the server as sent (docs/protocol.md, "Dates").
    const rows = live(await serverRows(env, coll));
    if (rows.length !== 10) {
      const why = { status: a.status(), outbox: (await a.outbox()).length, rejected: await a.rejected(), count: await a.count(coll) };
      ok(false, `all on the server: expected 10, got ${rows.length}; ${JSON.stringify(why)}`);
    }
    const d3 = rows.find((r) => r.doc.id === "d3").doc;
    eq(d3.at, { $date: t0 + 3 * 60_000 }, "a Date on the wire");
    eq(d3.log, [{ when: { $date: t0 - 3 } }], "nested");
    await until("b to receive them", async () => (await b.count(coll)) === 10);
    const got = await b.get(coll, "d3");
    ok(got.at instanceof Date && got.at.getTime() === t0 + 3 * 60_000, "a Date on the other device");
    ok(got.log[0].when instanceof Date && got.log[0].when.getTime() === t0 - 3, "nested");
    const range = await b.query(coll, { where: { at: { $gte: new Date(t0 + 4 * 60_000), $lt: new Date(t0 + 7 * 60_000) } }, orderBy: "at", desc: true });
    eq(range.map((d) => d.id), ["d6", "d5", "d4"], "a range query on the Date index");
    // An edit on b (an update function) comes back to a as Dates too.
    await b.update(coll, "d3", (doc) => ({ at: new Date(doc.at.getTime() + 3600_000) }));
    await synced(b);
    await until("a to see b's edit", async () => (await a.get(coll, "d3")).at.getTime() === t0 + 3 * 60_000 + 3600_000);
    ok((await a.get(coll, "d3")).at instanceof Date, "still a Date");
  },

  async first_sync_reports_its_progress_page_by_page(env) {
    // More than one pull page (1,000 changes) of documents: a new store's
    // first sync shows how far it is in `status().progress` and a status
    // event per page, and none once it is complete.
    const coll = collName("first");
    const a = await device(env, coll);
    const n = 1200;
    await a.batch(Array.from({ length: n }, (_, i) => ({ op: "insert", coll, doc: { id: `f${i}`, n: i } })));
    await synced(a);
    eq(await a.pendingCount(), 0, "all pushed");
    const b = await device(env, coll, { sync: { websocket: false } });
    const seen = [];
    b.on("status", (s) => s.progress && seen.push(s.progress));
    await until("b has every document", async () => (await b.count(coll, {})) === n);
    await until("the first sync completed", () => b.status().progress === null);
    ok(seen.length >= 1, `progress reported before completion (${JSON.stringify(seen)})`);
    const first = seen[0];
    ok(first.received >= 1000, "the first page counted");
    ok(typeof first.total === "number" && first.total >= n, "the server told the total on the first page");
    ok(seen.every((p) => p.received <= p.total), "received never passes the total");
    for (let i = 1; i < seen.length; i++) ok(seen[i].received >= seen[i - 1].received, "received only grows");
    // A store that already has everything: no progress on later pulls.
    await a.insert(coll, { id: "later", n: -1 });
    await synced(a);
    await until("b pulls the later write", async () => (await b.get(coll, "later")) !== undefined);
    eq(b.status().progress, null, "an incremental pull is no first sync");
  },

  async a_first_sync_planned_ahead_keeps_writes_made_while_it_streams(env) {
    // A first sync of several steps (3,600 documents of ~1 KB; a step takes
    // ~768 KiB of frames) plans each page while the one before commits and
    // writes it only if IndexedDB holds nothing of its documents
    // (src/sync/ahead.rs). The app's edits made on the new device while the
    // pages stream in must all survive, including one of a document that a
    // later page changes again on the server (fieldMerge keeps both sides).
    // Then the fallback: a catch-up whose pages planned ahead meet records
    // (below).
    const coll = collName("ahead");
    const spec = { conflicts: "fieldMerge", fallback: "lastWriteWins" };
    const a = await device(env, coll, { spec });
    const n = 3600;
    const pad = "x".repeat(1000);
    const id = (i) => `p${String(i).padStart(4, "0")}`;
    for (let from = 0; from < n; from += 600) {
      await bounded(`a's batch from ${id(from)}`, a.batch(Array.from({ length: 600 }, (_, i) => ({ op: "insert", coll, doc: { id: id(from + i), n: from + i, pad } }))), 30000);
    }
    await bounded("a's edit of p0000", a.update(coll, id(0), { fromA: 1 }), 30000); // the stream's last change
    await bounded("a's sync", synced(a), 30000);
    const b = await device(env, coll, { spec });
    // Pages planned ahead, as the trace tells them (bounded).
    const planned = [];
    const offTrace = b.on("trace", (e) => {
      if (e.type === "planned" && planned.length < 1000) planned.push(e);
    });
    await until("b has the first page", async () => (await b.get(coll, id(0))) !== undefined);
    await b.update(coll, id(0), { fromB: 1 });
    const edited = [];
    for (let k = 1; k <= 40; k++) {
      const i = (k * 59) % n;
      if (await b.get(coll, id(i))) {
        await b.update(coll, id(i), { fromB: k });
        edited.push([i, k]);
      }
    }
    await until("b has every document", async () => (await b.count(coll, {})) === n, 60000);
    await until("b pushed its edits", async () => (await b.sync(), b.status().pending === 0), 60000);
    await until("b has the server's p0000", async () => (await b.get(coll, id(0)))?.fromA === 1, 30000);
    const p0 = await b.get(coll, id(0));
    eq([p0.fromA, p0.fromB, p0.n], [1, 1, 0], "both edits of p0000 survive");
    for (const [i, k] of edited) eq((await b.get(coll, id(i)))?.fromB, k, `b's edit of ${id(i)} stays`);
    const rows = live(await serverRows(env, coll));
    eq(rows.length, n, "the server has every document once");
    const byId = new Map(rows.map((r) => [r.id, r.doc]));
    eq([byId.get(id(0)).fromA, byId.get(id(0)).fromB], [1, 1], "the server has both edits of p0000");
    for (const [i, k] of edited) eq(byId.get(id(i)).fromB, k, `the server has b's edit of ${id(i)}`);
    eq(await b.count(coll, {}), n, "b has every document once");
    // b, cut off, misses a second burst: 3,000 new documents, then 3,000
    // more with an edit of a document b holds after every 250 (a page is ~750
    // changes, so each page of that part has one). Its catch-up's pages are
    // planned ahead while the page before commits; a page with such an edit
    // finds the document's record, applyIfAbsent aborts it (nothing of it
    // written: trace "planned", written false, reason "stored"), and the
    // same frames go through an ordinary step. Nothing lost, nothing written
    // twice, no edit lost.
    b.goOffline();
    const burst = async (from, to, edit) => {
      for (let i = from; i < to; i += 250) {
        await bounded(`a's batch from ${id(i)}`, a.batch(Array.from({ length: 250 }, (_, k) => ({ op: "insert", coll, doc: { id: id(i + k), n: i + k, pad } }))), 30000);
        if (edit) await bounded(`a's edit after ${id(i)}`, edit(), 30000);
      }
    };
    const late = [];
    await burst(n, n + 3000);
    await burst(n + 3000, n + 6000, () => {
      const k = late.length + 1;
      const i = k === 12 ? 0 : k; // p0000 last: it holds a's and b's edits already
      late.push([i, k]);
      return a.update(coll, id(i), { late: k });
    });
    eq(late.length, 12, "12 edits of documents b holds");
    await bounded("a's sync", synced(a), 30000);
    b.goOnline();
    const total = n + 6000;
    await until("b has the second burst", async () => (await b.count(coll, {})) === total, 90000);
    await until("b has the last late edit", async () => (await b.get(coll, id(0)))?.late === 12, 30000);
    offTrace();
    for (const [i, k] of late) eq((await b.get(coll, id(i)))?.late, k, `a's late edit of ${id(i)}`);
    const q0 = await b.get(coll, id(0));
    eq([q0.fromA, q0.fromB, q0.late, q0.n], [1, 1, 12, 0], "p0000 keeps every edit");
    for (const [i, k] of edited) eq((await b.get(coll, id(i)))?.fromB, k, `b's edit of ${id(i)} stays`);
    eq(await b.count(coll, {}), total, "b has every document once");
    eq((await b.get(coll, id(total - 1)))?.n, total - 1, "the burst's last document");
    eq(b.status().pending, 0, "b wrote nothing more");
    // Both paths ran (a page planned ahead written, one that fell back), or
    // this proved nothing.
    const seen = JSON.stringify(planned);
    ok(planned.some((e) => e.written), `a page planned ahead was written (${seen})`);
    ok(planned.some((e) => !e.written && e.reason === "stored" && e.changes > 0), `a page planned ahead found records and fell back (${seen})`);
  },

  async rate_limited_through_the_store_and_its_retry_after_is_honoured(env) {
    // The server answers a push 429 with Retry-After: 2 (testctl /answer):
    // the store reports RATE_LIMITED (error event, lastError), keeps the
    // write, and does not push again before the 2 s are over (times from
    // the proxy's clock: a lower bound, which a slow machine only widens).
    const coll = collName("rate");
    const a = await device(env, coll, { sync: { websocket: false, pollMs: 60000 } });
    await synced(a);
    const errors = [];
    a.on("error", (e) => errors.push(e));
    const body = JSON.stringify({ error: { code: "RATE_LIMITED", message: "testctl: slow down" } });
    await ctl(env, `/answer?method=POST&path=/v1/push&status=429&retryAfter=2&body=${encodeURIComponent(body)}`);
    await a.insert(coll, { id: "r1", n: 1 });
    await until("a RATE_LIMITED error event", () => errors.some((e) => e.code === "RATE_LIMITED"));
    const e = errors.find((x) => x.code === "RATE_LIMITED");
    ok(e instanceof env.SyncStoreError, "a SyncStoreError");
    eq(e.retryable, true, "retryable");
    eq(a.status().lastError.code, "RATE_LIMITED", "lastError says why");
    eq(a.status().pending, 1, "the write waits");
    await until("the write lands after the wait", async () => (await serverRows(env, coll)).length === 1);
    const pushes = (await ctl(env, "/requests", "GET")).requests.filter((r) => r.method === "POST" && r.path === "/v1/push");
    const refused = pushes.findIndex((r) => r.canned && r.status === 429);
    ok(refused >= 0, "the 429 was given");
    const next = pushes[refused + 1];
    ok(next !== undefined, "a push followed it");
    ok(next.at - pushes[refused].at >= 2000, `the next push waited for Retry-After: ${next.at - pushes[refused].at} ms`);
    await until("settled", () => a.status().pending === 0);
    eq(a.status().lastError, null, "lastError clears");
    eq(errors.map((x) => x.code), ["RATE_LIMITED"], "no other error");
  },

  async a_503_with_retry_after_is_server_and_its_wait_is_honoured(env) {
    // What the server answers while it shuts down or is overloaded: 503
    // with Retry-After (testctl /answer gives one of 2 s). The store
    // reports SERVER, keeps the write, and neither pushes again nor polls
    // again before the 2 s are over, though polls answer meanwhile (times
    // from the proxy's clock: a lower bound, which a slow machine only
    // widens).
    const coll = collName("r503");
    const a = await device(env, coll, { sync: { websocket: false } });
    await synced(a);
    const errors = [];
    a.on("error", (e) => errors.push(e));
    const refuse = (method, path, code) => {
      const body = JSON.stringify({ error: { code, message: `testctl: ${code}` } });
      return ctl(env, `/answer?method=${method}&path=${path}&status=503&retryAfter=2&body=${encodeURIComponent(body)}`);
    };
    /** The requests `method path` from the canned 503 on: the refused one, then the next. */
    const after503 = async (method, path) => {
      const log = (await ctl(env, "/requests", "GET")).requests.filter((r) => r.method === method && r.path === path);
      const i = log.findIndex((r) => r.canned && r.status === 503);
      return i < 0 ? [] : log.slice(i, i + 2);
    };
    await refuse("POST", "/v1/push", "SHUTTING_DOWN");
    await a.insert(coll, { id: "s1", n: 1 });
    await until("a SERVER error event", () => errors.some((e) => e.code === "SERVER"));
    const e = errors.find((x) => x.code === "SERVER");
    ok(e instanceof env.SyncStoreError && e.retryable === true, "a retryable SyncStoreError");
    ok(e.message.includes("SHUTTING_DOWN"), `the message says why: ${e.message}`);
    eq(a.status().pending, 1, "the write waits");
    await until("the write lands", async () => (await serverRows(env, coll)).length === 1);
    const [refused, next] = await after503("POST", "/v1/push");
    ok(refused && next, "a push followed the refused one");
    ok(next.at - refused.at >= 2000, `the next push waited for Retry-After: ${next.at - refused.at} ms`);
    await until("settled", () => a.status().pending === 0);
    // A refused poll: the next poll waits too (pollMs is 200).
    await refuse("GET", "/v1/pull", "OVERLOADED");
    await until("the next poll after the refused one", async () => (await after503("GET", "/v1/pull")).length === 2);
    const [refusedPull, nextPull] = await after503("GET", "/v1/pull");
    ok(nextPull.at - refusedPull.at >= 2000, `the next poll waited for Retry-After: ${nextPull.at - refusedPull.at} ms`);
    await until("lastError clears", () => a.status().lastError === null);
    eq([...new Set(errors.map((x) => x.code))], ["SERVER"], "no other error");
  },

  async another_user_on_the_same_database_is_client_id_taken(env) {
    // A database synced by one user (its clientId is theirs on the server)
    // opened with another user's token, as after a sign-out and sign-in on
    // one device without a database per user: the server refuses its
    // pushes (403 CLIENT_ID_TAKEN) and applies nothing; sync() rejects
    // with that code (not retryable), an error event says so, and the
    // write stays queued.
    const coll = collName("cid");
    const name = dbName("cid");
    const open = async (user) => {
      const db = await env.open({
        name,
        collections: { [coll]: {} },
        sync: { url: env.server, token: await mint(env, `${user}_${coll}`), websocket: false, pollMs: 60000 },
      });
      env.opened.push(db);
      return db;
    };
    const alice = await open("alice");
    await alice.insert(coll, { id: "a1", by: "alice" });
    await synced(alice);
    alice.close();
    const bob = await open("bob");
    const errors = [];
    bob.on("error", (e) => errors.push(e));
    await bob.insert(coll, { id: "b1", by: "bob" });
    const e = await rejects(bob.sync(), "CLIENT_ID_TAKEN", env, "sync() of another user's database");
    eq(e.retryable, false, "not retryable");
    await until("an error event", () => errors.some((x) => x.code === "CLIENT_ID_TAKEN" && x instanceof env.SyncStoreError));
    eq(bob.status().lastError.code, "CLIENT_ID_TAKEN", "lastError says why");
    eq(await bob.pendingCount(), 1, "the write stays queued");
    eqDocs(live(await serverRows(env, coll)).map((r) => r.doc), [{ id: "a1", by: "alice" }], "nothing of bob's was applied");
  },

  async a_malformed_answer_is_protocol_through_the_store(env) {
    // A pull answered 200 with a body that is not a pull page: sync()
    // rejects PROTOCOL, which also shows in lastError and an error event;
    // nothing is lost and the next sync works.
    const coll = collName("proto");
    const a = await device(env, coll, { sync: { websocket: false, pollMs: 60000 } });
    const b = await device(env, coll);
    await synced(a);
    const errors = [];
    a.on("error", (e) => errors.push(e));
    await a.insert(coll, { id: "p1", n: 1 });
    await ctl(env, `/answer?method=GET&path=/v1/pull&status=200&body=${encodeURIComponent("<html>not a pull page</html>")}`);
    const e = await rejects(a.sync(), "PROTOCOL", env, "sync() meeting a malformed pull answer");
    eq(e.retryable, false, "not retryable");
    eq(a.status().lastError.code, "PROTOCOL", "lastError says why");
    await until("an error event", () => errors.some((x) => x.code === "PROTOCOL" && x instanceof env.SyncStoreError));
    await b.insert(coll, { id: "p2", n: 2 });
    await synced(b);
    await synced(a);
    eq(a.status().lastError, null, "lastError clears");
    eqDocs(await converged(env, coll, [a, b]), [{ id: "p1", n: 1 }, { id: "p2", n: 2 }], "nothing lost");
  },

  async change_events_reach_a_listener_registered_at_run_time(env) {
    // `on("change")` registered while the store syncs gets the server's
    // changes from then on; after its unsubscribe it gets none (checked
    // against a listener registered later, which must see the change).
    const coll = collName("chg");
    const a = await device(env, coll);
    const b = await device(env, coll);
    await b.insert(coll, { id: "c1", n: 1 });
    await synced(b);
    await until("a has c1", () => a.get(coll, "c1"));
    const first = [];
    const stop = a.on("change", (e) => first.push(e));
    ok(typeof stop === "function", "on() returns an unsubscribe function");
    await b.update(coll, "c1", { n: 2 });
    await b.insert(coll, { id: "c2", n: 3 });
    await synced(b);
    const ids = () => first.flatMap((e) => e.changes.map((c) => `${c.coll}/${c.id}/${c.deleted}`));
    await until("change events for c1 and c2", () => ids().includes(`${coll}/c1/false`) && ids().includes(`${coll}/c2/false`));
    stop();
    const before = first.length;
    const second = [];
    a.on("change", (e) => second.push(e));
    await b.delete(coll, "c1");
    await synced(b);
    await until("the later listener sees the delete", () => second.some((e) => e.changes.some((c) => c.id === "c1" && c.deleted)));
    eq(first.length, before, "nothing after the unsubscribe");
  },

  async conflict_resolvers_returning_promises_keeps_and_bad_documents(env) {
    // One resolver function, five conflicts: a promise of a document, keep
    // local, keep remote, a document with another id and one too large
    // (the last two: RESOLVER_FAILED, the server's document stands).
    const coll = collName("rv");
    const ids = ["p", "l", "r", "d", "o"];
    const resolver = async (ctx) => {
      switch (ctx.id) {
        case "p":
          await sleep(5);
          return { text: `promised ${ctx.remote.text}+${ctx.local.text}` };
        case "l":
          return { keep: "local" };
        case "r":
          return { keep: "remote" };
        case "d":
          return { id: "elsewhere", text: "x" };
        default:
          return { text: "x".repeat(300 * 1024) };
      }
    };
    const spec = { conflicts: resolver };
    const a = await device(env, coll, { spec });
    const b = await device(env, coll, { spec });
    const events = [];
    b.on("conflict", (e) => events.push(e));
    const errors = [];
    a.on("error", (e) => errors.push(e));
    b.on("error", (e) => errors.push(e));
    for (const id of ids) await a.insert(coll, { id, text: "milk" });
    await synced(a);
    await until("b has them", async () => (await all(b, coll)).length === ids.length);
    a.goOffline();
    b.goOffline();
    for (const id of ids) await a.update(coll, id, { text: "a" });
    for (const id of ids) await b.update(coll, id, { text: "b" });
    a.goOnline();
    await synced(a);
    b.goOnline();
    await synced(b);
    await until("five conflict events", () => events.length === ids.length);
    await synced(b);
    await synced(a);
    const docs = await converged(env, coll, [a, b]);
    const text = Object.fromEntries(docs.map((d) => [d.id, d.text]));
    eq(ids.map((id) => text[id]), ["promised a+b", "b", "a", "a", "a"], "promise, keep local, keep remote, bad id, too large");
    eq(docs.length, ids.length, "no document added");
    const res = Object.fromEntries(events.map((e) => [e.id, e.resolution]));
    eq(ids.map((id) => res[id]), ["write", "write", "remote", "remote", "remote"], "reported");
    await until("two RESOLVER_FAILED events", () => errors.length >= 2);
    eq(errors.map((e) => e.code), ["RESOLVER_FAILED", "RESOLVER_FAILED"], "one per unusable answer, no other error");
    ok(errors.every((e) => e instanceof env.SyncStoreError), "SyncStoreErrors");
  },

  async a_manual_conflict_resolved_with_a_document(env) {
    const coll = collName("mandoc");
    const spec = { conflicts: "manual" };
    const a = await device(env, coll, { spec });
    const b = await device(env, coll, { spec });
    await a.insert(coll, { id: "x", text: "milk", n: 1 });
    await synced(a);
    await until("b has it", () => b.get(coll, "x"));
    a.goOffline();
    b.goOffline();
    await a.update(coll, "x", { text: "a" });
    await b.update(coll, "x", { text: "b" });
    a.goOnline();
    await synced(a);
    b.goOnline();
    await synced(b);
    eq((await b.conflicts(coll)).map((c) => c.id), ["x"], "the conflict is kept");
    await b.resolveConflict(coll, "x", { text: "a and b", n: 2 });
    eq(await b.conflicts(coll), [], "resolved");
    const x = await b.get(coll, "x");
    eq([x.text, x.n, x.$conflict], ["a and b", 2, undefined], "the document shows, unmarked");
    await synced(b);
    await synced(a);
    eqDocs(await converged(env, coll, [a, b]), [{ id: "x", text: "a and b", n: 2 }], "the resolving document is everyone's");
  },

  async a_loop_fenced_off_by_a_newer_leader_term_stops_quietly_and_leads_again(env) {
    // What a tab that takes over does first (a new leader term in `_meta`,
    // as tabs.rs `bump_term`), done here through IndexedDB from the page:
    // the running loop's next step writes nothing and the loop stops (its
    // internal LEADERSHIP_LOST is not an error the app sees); this
    // instance still holds the lock, so it starts a newer term, answers
    // the sync() and pushes the write once.
    const coll = collName("fence");
    const name = dbName("fence");
    const a = await env.open({
      name,
      collections: { [coll]: {} },
      sync: { url: env.server, token: "dev-token", pollMs: 200 },
    });
    env.opened.push(a);
    await until("a leads", () => a.status().leader);
    await synced(a);
    const errors = [];
    a.on("error", (e) => errors.push(e));
    const raw = await rawDb(name);
    const meta = (write) =>
      new Promise((resolve, reject) => {
        const tx = raw.transaction("_meta", write ? "readwrite" : "readonly");
        const store = tx.objectStore("_meta");
        const got = store.get("leader");
        let term;
        got.onsuccess = () => {
          term = got.result.v;
          if (write) store.put({ k: "leader", v: term + 1 });
        };
        tx.oncomplete = () => resolve(write ? term + 1 : term);
        tx.onerror = () => reject(tx.error);
      });
    const taken = await meta(true);
    await a.insert(coll, { id: "f1", n: 1 });
    await synced(a);
    await until("the write lands", async () => (await serverRows(env, coll)).length === 1);
    await until("a newer term than the one that fenced the loop off", async () => (await meta(false)) > taken);
    raw.close();
    ok(a.status().leader, "a leads again");
    await until("settled", () => a.status().pending === 0);
    await synced(a);
    eq((await serverRows(env, coll)).length, 1, "the write landed once");
    eq(errors.map((e) => e.code), [], "fencing is no error for the app");
  },

  async a_pull_whose_own_step_meets_a_take_over_is_leadership_lost(env) {
    // pull(coll) of a manual collection: the leader pulls, then releases
    // the collection's held changes in a step of its own. Another tab takes
    // the lead in between (a new term in `_meta`, as tabs.rs `bump_term`,
    // written here from the page at the moment the pull's page is stored:
    // its status event). The release step finds the newer term and writes
    // nothing: pull(coll) rejects LEADERSHIP_LOST (retryable), no error
    // event; this instance still holds the lock, leads again in a newer
    // term, and the same pull(coll) then brings the change.
    const notes = collName("ll");
    const name = dbName("ll");
    const a = await env.open({
      name,
      collections: { [notes]: { sync: "manual" } },
      sync: { url: env.server, token: "dev-token", websocket: false, pollMs: 60000 },
    });
    env.opened.push(a);
    await until("a leads", () => a.status().leader);
    await synced(a);
    const b = await device(env, collName("unused"), { more: { [notes]: {} } });
    await b.insert(notes, { id: "n1", text: "from b" });
    await synced(b);
    const raw = await rawDb(name);
    const terms = [];
    const readTerm = () =>
      new Promise((resolve, reject) => {
        const got = raw.transaction("_meta").objectStore("_meta").get("leader");
        got.onsuccess = () => resolve(got.result.v);
        got.onerror = () => reject(got.error);
      });
    const errors = [];
    a.on("error", (e) => errors.push(e));
    const cursor = a.status().cursor;
    let bumped = null;
    a.on("status", (s) => {
      if (bumped || s.cursor === cursor) return;
      // The pull's page is stored (the cursor moved); the release step is
      // next. A readwrite transaction on `_meta` created now runs before it.
      const tx = raw.transaction("_meta", "readwrite");
      const store = tx.objectStore("_meta");
      const got = store.get("leader");
      got.onsuccess = () => {
        terms.push(got.result.v);
        store.put({ k: "leader", v: got.result.v + 1 });
      };
      bumped = new Promise((resolve, reject) => {
        tx.oncomplete = resolve;
        tx.onerror = () => reject(tx.error);
      });
    });
    const e = await rejects(a.pull(notes), "LEADERSHIP_LOST", env, "pull(coll) meeting a take-over");
    eq(e.retryable, true, "retryable");
    ok(bumped !== null, "the term was taken while the pull waited");
    await bumped;
    eq(await a.get(notes, "n1"), undefined, "the release step wrote nothing");
    await until("a leads again in a newer term", async () => a.status().leader && (await readTerm()) > terms[0] + 1);
    await a.pull(notes);
    eq((await a.get(notes, "n1")).text, "from b", "the same pull(coll), retried, brings the change");
    raw.close();
    eq(errors.map((x) => x.code), [], "no error event: only the caller whose step met the take-over hears of it");
  },

  async followers_forward_push_and_pull_of_manual_collections(env) {
    // Two instances of one database: the follower's push(coll) and
    // pull(coll) are carried out by the leader.
    const notes = collName("fwd");
    const name = dbName("fwd");
    const open = async () => {
      const db = await env.open({
        name,
        collections: { [notes]: { sync: "manual" } },
        sync: { url: env.server, token: "dev-token", pollMs: 200 },
      });
      env.opened.push(db);
      return db;
    };
    const tabs = [await open(), await open()];
    await until("one leader", () => tabs.filter((t) => t.status().leader).length === 1);
    const follower = tabs.find((t) => !t.status().leader);
    await follower.insert(notes, { id: "n1", text: "from the follower" });
    await synced(follower);
    eq(await serverRows(env, notes), [], "a manual collection waits for push(coll)");
    await follower.push(notes);
    eqDocs(live(await serverRows(env, notes)).map((r) => r.doc), [{ id: "n1", text: "from the follower" }], "pushed through the leader");
    const other = await device(env, collName("unused"), { more: { [notes]: { sync: "manual" } } });
    await other.pull(notes);
    await other.insert(notes, { id: "n2", text: "from another device" });
    await other.push(notes);
    await synced(follower);
    eq(await follower.get(notes, "n2"), undefined, "a manual collection waits for pull(coll)");
    await follower.pull(notes);
    eq((await follower.get(notes, "n2")).text, "from another device", "pulled through the leader");
    await until("the leader has it too", async () => (await tabs.find((t) => t.status().leader).get(notes, "n2")) !== undefined);
  },

  async prefix_answers_are_followed_by_the_rest_in_order(env) {
    // The server restarted with the smallest work budget (testctl
    // /push-work): every mutation here reads and writes a ~1.5 KB document,
    // so each push is answered for its first mutation only (a prefix). The
    // store pushes the rest, in mid order, until the outbox is empty.
    const coll = collName("pre");
    await ctl(env, "/push-work?bytes=1024");
    try {
      const a = await device(env, coll, { sync: { websocket: false, pollMs: 60000 } });
      const errors = [];
      a.on("error", (e) => errors.push(e));
      // Written while offline: one batch of 13 mutations (one push without
      // a budget).
      a.goOffline();
      await a.insert(coll, { id: "p", n: 0, big: "x".repeat(1500) });
      const updates = 12;
      for (let i = 1; i <= updates; i++) await a.update(coll, "p", { n: i, [`f${i}`]: i });
      eq(await a.pendingCount(), updates + 1, "all queued");
      const before = await ctl(env, "/state", "GET");
      a.goOnline();
      await syncedAfterOutage(env, a);
      await until("the outbox drained", () => a.status().pending === 0);
      const rows = await serverRows(env, coll);
      eq(rows.length, 1, "one document");
      const doc = rows[0].doc;
      eq(doc.n, updates, "the last update is the last applied");
      for (let i = 1; i <= updates; i++) eq(doc[`f${i}`], i, `update ${i} arrived`);
      const pushes = await pushesSince(env, before);
      ok(pushes >= updates + 1, `one push per mutation (each answer a prefix of one): ${pushes}`);
      eq(errors.map((x) => x.code), [], "no error");
      eq((await a.get(coll, "p")).n, updates, "the local document agrees");
    } finally {
      await ctl(env, "/push-work");
    }
  },
};

export const syncNames = Object.keys(scenarios);

export function syncScenario(name, open, SyncStoreError, server, ctlUrl) {
  return runScenario(scenarios, name, open, SyncStoreError, server, ctlUrl);
}

/** Runs `scenarios[name]` against the server, then closes its stores and heals the server. */
function runScenario(scenarios, name, open, SyncStoreError, server, ctlUrl) {
  const run = scenarios[name];
  if (!run) throw new Error(`no sync scenario ${name}`);
  const env = { open, SyncStoreError, server, ctl: ctlUrl, opened: [] };
  return (async () => {
    try {
      await run(env);
    } finally {
      for (const db of env.opened) db.close();
      // A scenario that failed with the server stopped must not break the next.
      await ctl(env, "/unblock-ws").catch(() => {});
      await ctl(env, "/heal-http").catch(() => {});
      await ctl(env, "/clear-answers").catch(() => {});
      await ctl(env, "/start").catch(() => {});
    }
  })();
}

export { until, ctl, serverRows, live, canon, collName, device, all, markerPush, mint, runScenario };

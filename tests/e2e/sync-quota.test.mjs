// A real storage quota met by sync: in a browser of its own (quota.test.mjs
// says why). The page's origin is limited through CDP while another device
// pushes more than fits; the syncing store's step that stores those changes
// must abort whole, report QUOTA_EXCEEDED, and bring everything in by itself
// once space is back.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { launch, SERVER, serverRows, until } from "./lib.mjs";

// A browser per scenario: Chromium applied an override set before the
// origin's storage was first used, and a raised one, but ignored one lowered
// later (navigator.storage.estimate() reports none of them).
const QUOTA = 512 * 1024;
const browsers = [];
after(async () => {
  for (const b of browsers) await b.close();
});

/** Another device's push of `docs`, straight to the server. */
async function push(clientId, from, docs) {
  const r = await fetch(`${SERVER}/v1/push`, {
    method: "POST",
    headers: { Authorization: "Bearer dev-token", "Content-Type": "application/json" },
    body: JSON.stringify({ clientId, mutations: docs.map((doc, i) => ({ mid: from + i, coll: doc.coll, op: "insert", id: doc.id, doc: doc.doc })) }),
  });
  assert.ok(r.ok, `push: HTTP ${r.status}`);
  const body = await r.json();
  assert.equal(body.results.length, docs.length, "every mutation answered");
  assert.ok(body.results.every((x) => x.status === "applied"), JSON.stringify(body.results.filter((x) => x.status !== "applied")));
}

async function runScenario(t, websocket) {
  const tag = `${Date.now().toString(36)}${websocket ? "w" : "p"}`;
  const coll = `big_${tag}`;
  const b = await launch();
  browsers.push(b);
  const page = await b.page();
  const cdp = await b.context.newCDPSession(page);
  await page.evaluate(() => navigator.storage.estimate());
  await cdp.send("Storage.overrideQuotaForOrigin", { origin: b.base, quotaSize: QUOTA });
  await page.evaluate(() => navigator.storage.estimate());
  await page.evaluate(
    async ({ name, coll, server, websocket }) => {
      window.db = await SyncStore.open({
        name,
        collections: { [coll]: {}, notes: { sync: "manual" } },
        sync: { url: server, token: "dev-token", websocket, pollMs: 500 },
      });
      window.errors = [];
      window.cursorAtErrors = [];
      // Each attempt at storing the other device's changes (a pull page or
      // socket frames, traced before their step runs).
      window.attempts = 0;
      db.on("trace", (e) => {
        if ((e.type === "pull" || e.type === "frames") && e.changes >= 14) attempts++;
      });
      db.on("error", (e) => {
        errors.push({ code: e.code, retryable: e.retryable, typed: e instanceof SyncStoreError, message: e.message });
        cursorAtErrors.push(db.status().cursor);
      });
      await db.insert(coll, { id: "before", n: 0 });
      // Parked until push("notes"): it must stay queued through the fault.
      await db.insert("notes", { id: "kept", text: "queued" });
      await db.sync();
    },
    { name: `squota-${tag}`, coll, server: SERVER, websocket },
  );
  const want = websocket ? "websocket" : "polling";
  await until(`connection ${want}`, async () => (await page.evaluate(() => db.status().connection)) === want);
  const before = await page.evaluate(async () => ({ outbox: await db.outbox(), cursor: db.status().cursor, pending: await db.pendingCount() }));
  assert.equal(before.outbox.length, 1, "the parked write is queued");

  // The other device sends more than the origin's quota holds.
  const docs = Array.from({ length: 14 }, (_, i) => ({ coll, id: `big${i}`, doc: { id: `big${i}`, n: i + 1, big: randomBytes(48 * 1024).toString("base64") } }));
  const other = `other-${tag}`;
  // One push (within the server's work budget per push): one server
  // commit, so one change frame or pull page.
  await push(other, 1, docs);
  assert.equal((await serverRows(coll)).length, 15);

  const failedAt = Date.now();
  await until("a QUOTA_EXCEEDED error event", () => page.evaluate(() => errors.some((e) => e.code === "QUOTA_EXCEEDED")));
  const during = await page.evaluate(async (coll) => ({
    status: db.status(),
    count: await db.count(coll),
    outbox: await db.outbox(),
    pending: await db.pendingCount(),
  }), coll);
  assert.equal(during.status.lastError?.code, "QUOTA_EXCEEDED", JSON.stringify(during.status.lastError));
  // Retrying the same write would fail the same way: not retryable for the
  // app, though the loop tries the step again itself.
  assert.equal(during.status.lastError.retryable, false);
  assert.equal(during.status.cursor, before.cursor, "the cursor stays");
  assert.equal(during.count, 1, "nothing of the other device's changes is stored");
  assert.deepEqual(during.outbox, before.outbox, "the outbox is intact");
  assert.equal(during.pending, before.pending);
  // The loop tries again by itself while the disk is full (no sync()):
  // still nothing stored, the error stands, reported once.
  await until("three attempts at the changes", () => page.evaluate(() => attempts >= 3));
  const still = await page.evaluate(async (coll) => ({
    cursor: db.status().cursor,
    count: await db.count(coll),
    outbox: await db.outbox(),
    code: db.status().lastError?.code,
    events: errors.filter((e) => e.code === "QUOTA_EXCEEDED").length,
  }), coll);
  assert.deepEqual(still, { cursor: before.cursor, count: 1, outbox: before.outbox, code: "QUOTA_EXCEEDED", events: 1 });

  // Space again: the loop brings everything in without a sync() call.
  await cdp.send("Storage.overrideQuotaForOrigin", { origin: b.base, quotaSize: 1 << 30 });
  await page.evaluate(() => navigator.storage.estimate());
  const freedAt = Date.now();
  await until("every document stored", async () => (await page.evaluate((coll) => db.count(coll), coll)) === 15, 30000);
  t.diagnostic(`${websocket ? "websocket" : "polling"}: quota error ${freedAt - failedAt} ms before the release; all documents ${Date.now() - freedAt} ms after it`);
  const after = await page.evaluate(async (coll) => ({
    docs: await db.query(coll, { orderBy: "id" }),
    outbox: await db.outbox(),
    errors,
    cursorAtErrors,
  }), coll);
  for (const d of docs) {
    const got = after.docs.find((x) => x.id === d.id);
    assert.ok(got && got.big === d.doc.big && got.n === d.doc.n, `${d.id} stored whole`);
  }
  assert.deepEqual(after.outbox, before.outbox, "the outbox, still intact");
  const quota = after.errors.filter((e) => e.code === "QUOTA_EXCEEDED");
  assert.ok(quota.length === 1 && quota.every((e) => e.typed), JSON.stringify(after.errors));
  assert.ok(after.cursorAtErrors.every((c) => c === before.cursor), "the cursor had not moved at any error");
  await until("the error clears", async () => (await page.evaluate(() => db.status().lastError)) === null);
  assert.notEqual(await page.evaluate(() => db.status().cursor), before.cursor, "the cursor moved on");
  await page.evaluate(() => db.close());
  await page.close();
}

test("a pull over the WebSocket meets a full disk: nothing half-written, QUOTA_EXCEEDED, then everything by itself", async (t) => {
  await runScenario(t, true);
});

test("a polled pull meets a full disk: the same", async (t) => {
  await runScenario(t, false);
});

test("no page error or console error", () => {
  assert.deepEqual(browsers.flatMap((b) => b.errors), []);
});

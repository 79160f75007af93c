// Storage quota: in a browser of its own, because Chromium applied the quota
// override only to an origin whose storage no earlier page had used.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { launch } from "./lib.mjs";

let b;
before(async () => {
  b = await launch();
});
after(async () => {
  await b?.close();
});

test("a full disk is QUOTA_EXCEEDED, writes nothing, and the store goes on", async () => {
  const page = await b.page();
  const cdp = await b.context.newCDPSession(page);
  // Round trips to the storage service before and after the override, so
  // that it is in force (without the first one, Chromium ignored it).
  await page.evaluate(() => navigator.storage.estimate());
  await cdp.send("Storage.overrideQuotaForOrigin", { origin: b.base, quotaSize: 2 * 1024 * 1024 });
  await page.evaluate(() => navigator.storage.estimate());
  const r = await page.evaluate(async () => {
    const db = await SyncStore.open({ name: "quota", collections: { notes: {} } });
    await db.insert("notes", { id: "small", text: "hi" });
    const before = [await db.count("notes"), await db.pendingCount()];
    // Random text: Chromium compresses stored values, so repetition would fit.
    const noise = () => {
      const bytes = crypto.getRandomValues(new Uint8Array(48 * 1024));
      let s = "";
      for (let i = 0; i < 8; i++) s += btoa(String.fromCharCode(...bytes.subarray(i * 6144, (i + 1) * 6144)));
      return s;
    };
    let err;
    try {
      await db.batch(Array.from({ length: 60 }, (_, i) => ({ op: "insert", coll: "notes", doc: { id: `big${i}`, big: noise() } })));
    } catch (e) {
      err = { code: e.code, isErr: e instanceof SyncStoreError, retryable: e.retryable, message: e.message };
    }
    const after = [await db.count("notes"), await db.pendingCount()];
    await db.insert("notes", { id: "small2", text: "still works" });
    return { err, before, after, later: await db.count("notes") };
  });
  await cdp.send("Storage.overrideQuotaForOrigin", { origin: b.base });
  assert.equal(r.err?.code, "QUOTA_EXCEEDED", JSON.stringify(r.err));
  assert.ok(r.err.isErr);
  assert.deepEqual(r.after, r.before, "no partial write, no outbox entry");
  assert.equal(r.later, 2);
  await page.close();
});

test("no page error or console error", () => {
  assert.deepEqual(b.errors, []);
});

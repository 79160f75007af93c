// Page-level tests of the store: the README example and two tabs. Run by `make test` (tests/e2e/run.sh).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { launch, root } from "./lib.mjs";

let b;
before(async () => {
  b = await launch();
});
after(async () => {
  await b?.close();
});

/** The README's usage example, as the README shows it. */
async function readmeExample() {
  const readme = await readFile(join(root, "README.md"), "utf8");
  const m = readme.match(/<!-- example:start -->\s*```js\n([\s\S]*?)```\s*<!-- example:end -->/);
  assert.ok(m, "README has a marked example");
  return m[1];
}

test("the README example runs as written", async () => {
  const code = await readmeExample();
  assert.ok(code.split("\n").length <= 20, "the example is short");
  const page = await b.page("/e2e/blank.html");
  const logs = [];
  page.on("console", (msg) => logs.push(msg.text()));
  const src = code.replace(`from "./pkg/syncstore.js"`, `from "/pkg/syncstore.js"`) + "\nwindow.exampleDone = true;\n";
  assert.notEqual(src, code + "\nwindow.exampleDone = true;\n", "the example imports the built package");
  await page.addScriptTag({ type: "module", content: src });
  await page.waitForFunction(() => window.exampleDone === true, null, { timeout: 15000 });
  assert.deepEqual(logs, ['["bread"]', "1 open", "3"], "the example prints what the README says");
  await page.close();
});

test("a write in one tab reaches another tab's subscription", async () => {
  const a = await b.page();
  const c = await b.page();
  const opts = { name: "two-tabs", collections: { todos: { indexes: ["done"] } } };
  await c.evaluate(async (opts) => {
    window.db = await SyncStore.open(opts);
    window.seen = [];
    window.db.subscribe("todos", { where: { done: false } }, (rows) => window.seen.push(rows.map((r) => r.id)));
  }, opts);
  await c.waitForFunction(() => window.seen.length === 1);
  await a.evaluate(async (opts) => {
    const db = await SyncStore.open(opts);
    await db.insert("todos", { id: "from-a", done: false });
    await db.insert("todos", { id: "done-in-a", done: true });
  }, opts);
  await c.waitForFunction(() => window.seen.some((ids) => ids.includes("from-a")), null, { timeout: 5000 });
  const seen = await c.evaluate(() => window.seen);
  assert.deepEqual(seen.at(-1), ["from-a"]);
  await a.close();
  await c.close();
});

test("no page error or console error in these tests", () => {
  assert.deepEqual(b.errors, []);
});

// The package in a Vite app (no wasm plugin): `vite build`, then the built
// pages in headless Chromium: the README's quick start, the entry point's
// checks, the React hooks, and db.live(...) through rxjs.from.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { bin, browser, copyFixture, makeApp, openAndWait, pinned, quickStart, run, serve } from "./lib.mjs";
import { CHECKS, checkQuickStart } from "./expected.mjs";

let app, server, b;
before(async () => {
  const code = await quickStart();
  assert.match(code, /from "syncstore";/, "the quick start imports the package");
  app = await makeApp("vite", { "main.js": `${code}\nwindow.done = true;\n` }, await pinned("react", "react-dom", "rxjs"));
  for (const f of ["index.html", "checks.html", "react.html", "react-app.js", "rxjs.html", "rxjs-app.js", "vite.config.js"]) await copyFixture(`vite/${f}`, app.dir, f);
  await copyFixture("checks.js", app.dir);
  // vite from this folder's node_modules (the version package.json pins),
  // building the app in the temp dir with its own node_modules.
  await run(bin("vite"), ["build"], { cwd: app.dir, timeout: 90_000 });
  server = await serve(join(app.dir, "dist"));
  b = await browser();
});
after(async () => {
  await b?.close();
  await server?.close();
  await app?.remove();
});

test("vite build emits the wasm module as an asset, with no plugin", async () => {
  const assets = await readdir(join(app.dir, "dist", "assets"));
  const wasm = assets.filter((f) => /^syncstore_bg-.*\.wasm$/.test(f));
  assert.equal(wasm.length, 1, `one wasm asset: ${assets}`);
  const config = await readFile(join(app.dir, "vite.config.js"), "utf8");
  assert.doesNotMatch(config, /plugins/, "the app uses no Vite plugin");
});

test("the README quick start runs as written in the built app", async () => {
  const { page, logs } = await openAndWait(b, `${server.base}/index.html`);
  await checkQuickStart(logs);
  await page.close();
});

test("lazy and explicit init, SyncStoreError, the API", async () => {
  const { page } = await openAndWait(b, `${server.base}/checks.html`);
  assert.deepEqual(await page.evaluate(() => window.checks), CHECKS);
  await page.close();
});

test("rxjs.from(db.live(...)) gives the live values and errors", async () => {
  const { page } = await openAndWait(b, `${server.base}/rxjs.html`);
  assert.deepEqual(await page.evaluate(() => window.rxjsResult), {
    rows: ["a", "b"],
    total: 4,
    error: "UNKNOWN_COLLECTION",
    thrown: "boom",
  });
  await page.close();
});

test("useQuery and useStatus render, follow changes and clean up", async () => {
  const { page } = await openAndWait(b, `${server.base}/react.html`);
  const text = (id) => page.locator(`#${id}`).textContent({ timeout: 5000 });
  const until = async (id, want) => {
    await page.waitForFunction(([id, want]) => document.getElementById(id)?.textContent === want, [id, want], { timeout: 5000 }).catch(async (e) => {
      e.message += `\n#${id} is ${JSON.stringify(await text(id))}, want ${JSON.stringify(want)}`;
      throw e;
    });
  };
  const live = () => page.evaluate(() => {
    const { renders, ...held } = window.app.live;
    return held;
  });

  await until("rows", "[]");
  assert.equal(await text("status"), "offline 0");
  assert.deepEqual(await live(), { subscribeCalls: 1, subscriptions: 1, statusListeners: 1 });

  await page.evaluate(() =>
    window.app.db.batch([
      { op: "insert", coll: "todos", doc: { id: "1", text: "b", done: false } },
      { op: "insert", coll: "todos", doc: { id: "2", text: "a", done: false } },
      { op: "insert", coll: "todos", doc: { id: "3", text: "c", done: true } },
    ]),
  );
  await until("rows", '["a","b"]');
  await page.evaluate(() => window.app.db.update("todos", "1", { done: true }));
  await until("rows", '["a"]');
  // Re-renders with an equal query (a new object each render) keep the subscription.
  assert.deepEqual(await live(), { subscribeCalls: 1, subscriptions: 1, statusListeners: 1 });

  await page.evaluate(() => window.app.setDone(true));
  await until("rows", '["b","c"]');
  assert.deepEqual(await live(), { subscribeCalls: 2, subscriptions: 1, statusListeners: 1 });

  const emit = () =>
    page.evaluate(() =>
      window.app.emitStatus({ connection: "polling", pending: 7, lastPushAt: null, lastPullAt: null, cursor: null, lastError: null, leader: true }),
    );
  await emit();
  await until("status", "polling 7");
  // An equal status again (the sync loop repeats it while offline) does not re-render.
  const renders = await page.evaluate(() => window.app.live.renders);
  await emit();
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(await page.evaluate(() => window.app.live.renders), renders, "an equal status re-renders nothing");

  await page.evaluate(() => window.app.unmount());
  assert.deepEqual(await live(), { subscribeCalls: 2, subscriptions: 0, statusListeners: 0 });
  await page.close();
});

test("no page error, console error or warning, or failed request", () => {
  assert.deepEqual(b.problems, []);
});

// The package in a Vite app (no wasm plugin): `vite build`, then the built
// pages in headless Chromium: the README's quick start, the entry point's
// checks, db.live(...) through rxjs.from, and components over it: React
// (syncstore/react), Vue 3 (syncstore/vue) and Svelte 5 (db.live as a store);
// and a React server render in node.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { browser, copyFixture, makeApp, openAndWait, pinned, quickStart, readmeExample, run, serve } from "./lib.mjs";
import { CHECKS, checkQuickStart } from "./expected.mjs";

const FILES = [
  "index.html", "checks.html", "react.html", "react-app.js", "rxjs.html", "rxjs-app.js", "vite.config.js",
  "db.js", "vue.html", "vue-app.js", "Todos.vue", "svelte.html", "svelte-app.js", "Todos.svelte", "ssr.mjs",
  "readme-vue.html", "readme-vue.js", "readme-svelte.html", "readme-svelte.js",
];

let app, server, b, buildOutput;
before(async () => {
  const code = await quickStart();
  assert.match(code, /from "syncstore";/, "the quick start imports the package");
  const deps = ["react", "react-dom", "rxjs", "vue", "svelte", "vite", "@vitejs/plugin-vue", "@sveltejs/vite-plugin-svelte"];
  app = await makeApp("vite", { "main.js": `${code}\nwindow.done = true;\n` }, await pinned(...deps));
  for (const f of FILES) await copyFixture(`vite/${f}`, app.dir, f);
  await copyFixture("checks.js", app.dir);
  // The README's Vue and Svelte examples, as written, as components.
  for (const [name, file] of [["vue", "ReadmeTodos.vue"], ["svelte", "ReadmeTodos.svelte"]]) {
    const { lang, code } = await readmeExample(name);
    assert.equal(lang, name);
    await writeFile(join(app.dir, file), code);
  }
  // The app's own vite (the version package.json pins, which the plugins
  // it installed import too).
  buildOutput = await run(join(app.dir, "node_modules", ".bin", "vite"), ["build"], { cwd: app.dir, timeout: 120_000 });
  // React's development build too (StrictMode mounts twice, dev checks on).
  await run(join(app.dir, "node_modules", ".bin", "vite"), ["build", "--mode", "development", "--outDir", "dist/dev", "--base", "/dev/"], {
    cwd: app.dir,
    timeout: 120_000,
    env: { NODE_ENV: "development" },
  });
  server = await serve(join(app.dir, "dist"));
  b = await browser();
});
after(async () => {
  await b?.close();
  await server?.close();
  await app?.remove();
});

test("vite build emits the wasm module as an asset, with no wasm plugin", async () => {
  const assets = await readdir(join(app.dir, "dist", "assets"));
  const wasm = assets.filter((f) => /^syncstore_bg-.*\.wasm$/.test(f));
  assert.equal(wasm.length, 1, `one wasm asset: ${assets}`);
  // The only plugins are Vue's and Svelte's (for .vue and .svelte files).
  const config = (await import(pathToFileURL(join(app.dir, "vite.config.js")))).default;
  const names = config.plugins.flat().map((p) => p.name);
  assert.ok(names.length > 0 && names.every((n) => n === "vite:vue" || n.startsWith("vite-plugin-svelte")), `plugins: ${names}`);
});

test("vite build (logLevel warn) prints nothing: no warning from the package, the components or the README's examples", () => {
  assert.equal(buildOutput.trim(), "");
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

/** Reads and waits on the text of elements of `page` by id. */
function texts(page) {
  const text = (id) => page.locator(`#${id}`).textContent({ timeout: 5000 });
  const until = async (id, want) => {
    await page.waitForFunction(([id, want]) => document.getElementById(id)?.textContent.trim() === want, [id, want], { timeout: 5000 }).catch(async (e) => {
      e.message += `\n#${id} is ${JSON.stringify(await text(id).catch(() => "missing"))}, want ${JSON.stringify(want)}`;
      throw e;
    });
  };
  return { text, until };
}

/** Three todos (two open; by text and by createdAt: a, b, c). */
const WRITE_TODOS = () =>
  window.app.db.batch([
    { op: "insert", coll: "todos", doc: { id: "1", text: "b", done: false, createdAt: 2 } },
    { op: "insert", coll: "todos", doc: { id: "2", text: "a", done: false, createdAt: 1 } },
    { op: "insert", coll: "todos", doc: { id: "3", text: "c", done: true, createdAt: 3 } },
  ]);

/** The texts of the `li`s under `sel`, joined by commas; `until` waits for a value. */
function listItems(page, sel) {
  const read = () => page.evaluate((sel) => [...document.querySelectorAll(`${sel} li`)].map((li) => li.textContent.trim()).join(), sel);
  const until = async (want) => {
    await page.waitForFunction(([sel, want]) => document.querySelector(sel) && [...document.querySelectorAll(`${sel} li`)].map((li) => li.textContent.trim()).join() === want, [sel, want], { timeout: 5000 }).catch(async (e) => {
      e.message += `\nitems are ${JSON.stringify(await read())}, want ${JSON.stringify(want)}`;
      throw e;
    });
  };
  return { read, until };
}

test("React: useLive (both forms), useQuery and useStatus render, follow changes and clean up", async () => {
  const { page } = await openAndWait(b, `${server.base}/react.html`);
  const { text, until } = texts(page);
  const live = () => page.evaluate(() => {
    const { renders, ...held } = window.app.live;
    return held;
  });

  await until("rows", "[]");
  await until("legacy", "[]");
  await until("counts", "0 todos, 0 lists");
  assert.equal(await text("status"), "offline 0");
  // A failing live query reached the error boundary (and only it).
  await until("broken", "caught UNKNOWN_COLLECTION");
  assert.deepEqual(await page.evaluate(() => window.app.caught), ["UNKNOWN_COLLECTION"]);
  await until("dated", "");
  // rows, legacy, counts, dated and the failed one (released with its component).
  assert.deepEqual(await live(), { subscribeCalls: 5, subscriptions: 4, statusListeners: 1 });

  await page.evaluate(WRITE_TODOS);
  await until("rows", '["a","b"]');
  await until("legacy", '["a","b"]');
  await until("counts", "3 todos, 0 lists");
  await page.evaluate(() => window.app.db.insert("lists", { id: "l" }));
  await until("counts", "3 todos, 1 lists");
  await page.evaluate(() => window.app.db.update("todos", "1", { done: true }));
  await until("rows", '["a"]');
  await until("legacy", '["a"]');
  await page.evaluate(() =>
    window.app.db.batch([
      { op: "insert", coll: "events", doc: { id: "e0", at: new Date(100) } },
      { op: "insert", coll: "events", doc: { id: "e2", at: new Date(2000) } },
      { op: "insert", coll: "events", doc: { id: "e1", at: new Date(1000) } },
    ]),
  );
  await until("dated", "1000,2000");
  // Re-renders with an equal query (a new object each render) keep the subscriptions.
  assert.deepEqual(await live(), { subscribeCalls: 5, subscriptions: 4, statusListeners: 1 });

  await page.evaluate(() => window.app.setDone(true));
  await until("rows", '["b","c"]');
  await until("legacy", '["b","c"]');
  // A new query: rows and legacy subscribe again; the function form (deps []) does not.
  assert.deepEqual(await live(), { subscribeCalls: 7, subscriptions: 4, statusListeners: 1 });

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
  assert.deepEqual(await live(), { subscribeCalls: 7, subscriptions: 0, statusListeners: 0 });
  await page.close();
});

test("React development build (StrictMode: effects run twice, React's checks on): the hooks render, follow changes and clean up", async () => {
  const { page } = await openAndWait(b, `${server.base}/dev/react.html`);
  const { until } = texts(page);
  const dev = await page.evaluate(() => window.app.live);
  assert.ok(dev.renders >= 2, "a development build renders twice under StrictMode");
  await until("rows", "[]");
  await until("counts", "0 todos, 0 lists");
  await until("broken", "caught UNKNOWN_COLLECTION");
  await page.evaluate(WRITE_TODOS);
  await until("rows", '["a","b"]');
  await until("legacy", '["a","b"]');
  await until("counts", "3 todos, 0 lists");
  await page.evaluate(() => window.app.setDone(true));
  await until("rows", '["c"]');
  const { subscriptions, statusListeners } = await page.evaluate(() => window.app.live);
  assert.deepEqual({ subscriptions, statusListeners }, { subscriptions: 4, statusListeners: 1 });
  await page.evaluate(() => window.app.unmount());
  const after = await page.evaluate(() => window.app.live);
  assert.deepEqual([after.subscriptions, after.statusListeners], [0, 0], "nothing held after unmount");
  await page.close();
});

test("Vue 3: useLive (both forms, onError) and useStatus render, follow changes and clean up", async () => {
  const { page } = await openAndWait(b, `${server.base}/vue.html`);
  const { text, until } = texts(page);
  const held = () => page.evaluate(() => ({ ...window.app.held }));

  await until("rows", "[]");
  await until("counts", "0 todos, 0 lists");
  assert.equal(await text("status"), "offline 0");
  await until("failed", "UNKNOWN_COLLECTION");
  // rows, counts, and the failed one (held until unmount).
  assert.deepEqual(await held(), { subscribeCalls: 3, subscriptions: 3 });

  await page.evaluate(WRITE_TODOS);
  await until("rows", '["a","b"]');
  await until("counts", "3 todos, 0 lists");
  await page.evaluate(() => window.app.db.insert("lists", { id: "l" }));
  await until("counts", "3 todos, 1 lists");
  await page.evaluate(() => window.app.db.update("todos", "1", { done: true }));
  await until("rows", '["a"]');
  assert.deepEqual(await held(), { subscribeCalls: 3, subscriptions: 3 });

  // The query is a getter over a ref: changing the ref subscribes again.
  await page.evaluate(() => window.app.setDone(true));
  await until("rows", '["b","c"]');
  assert.deepEqual(await held(), { subscribeCalls: 4, subscriptions: 3 });

  await page.evaluate(() => window.app.unmount());
  assert.deepEqual(await held(), { subscribeCalls: 4, subscriptions: 0 });
  await page.close();
});

test("Svelte 5: db.live(...) as a store ($todos) renders, follows changes and unsubscribes", async () => {
  const { page } = await openAndWait(b, `${server.base}/svelte.html`);
  const { until } = texts(page);
  const { until: itemsUntil } = listItems(page, "ul#rows");
  const held = () => page.evaluate(() => ({ ...window.app.held }));

  await until("counts", "0 todos, 0 lists");
  await itemsUntil("");
  await page.evaluate(WRITE_TODOS);
  await until("counts", "3 todos, 0 lists");
  await itemsUntil("a,b");
  await page.evaluate(() => window.app.db.update("todos", "1", { done: true }));
  await itemsUntil("a");
  await page.evaluate(() => window.app.db.insert("lists", { id: "l" }));
  await until("counts", "3 todos, 1 lists");
  assert.deepEqual(await held(), { subscribeCalls: 2, subscriptions: 2 });

  await page.evaluate(() => window.app.unmount());
  assert.deepEqual(await held(), { subscribeCalls: 2, subscriptions: 0 });
  await page.close();
});

test("the README's Vue example renders, follows writes and its query's ref, and cleans up", async () => {
  const { page } = await openAndWait(b, `${server.base}/readme-vue.html`);
  const items = listItems(page, "ul");
  const line = () => page.locator("p").first().textContent({ timeout: 5000 });
  await items.until("");
  await page.evaluate(WRITE_TODOS);
  await items.until("a,b");
  await page.waitForFunction(() => document.querySelector("p")?.textContent === "offline, 0 pending, 2 open", null, { timeout: 5000 }).catch(async (e) => {
    e.message += `\nthe status line is ${JSON.stringify(await line())}`;
    throw e;
  });
  await page.click("button");
  await items.until("c");
  await page.evaluate(() => window.app.db.update("todos", "1", { done: true }));
  await items.until("b,c");
  assert.equal(await line(), "offline, 0 pending, 1 open");
  await page.evaluate(() => window.app.unmount());
  assert.equal((await page.evaluate(() => window.app.held)).subscriptions, 0);
  await page.close();
});

test("the README's Svelte example renders, follows writes, and unsubscribes", async () => {
  const { page } = await openAndWait(b, `${server.base}/readme-svelte.html`);
  const items = listItems(page, "ul");
  await items.until("");
  await page.evaluate(WRITE_TODOS);
  await items.until("a,b");
  await page.waitForFunction(() => document.querySelector("p")?.textContent === "2 open", null, { timeout: 5000 });
  await page.evaluate(() => window.app.db.update("todos", "1", { done: true }));
  await items.until("a");
  await page.waitForFunction(() => document.querySelector("p")?.textContent === "1 open", null, { timeout: 5000 });
  assert.deepEqual(await page.evaluate(() => ({ ...window.app.held })), { subscribeCalls: 2, subscriptions: 2 });
  await page.evaluate(() => window.app.unmount());
  assert.deepEqual(await page.evaluate(() => ({ ...window.app.held })), { subscribeCalls: 2, subscriptions: 0 });
  await page.close();
});

test("server renders (React, Vue): the hooks render the empty state, without IndexedDB or reading the store", async () => {
  // The frameworks' development builds (NODE_ENV): their warnings would print too.
  const out = await run(process.execPath, ["ssr.mjs"], { cwd: app.dir, timeout: 30_000, env: { NODE_ENV: "development" } });
  const lines = out.trim().split("\n");
  assert.equal(lines.length, 1, `only the result is printed: ${out}`);
  const { react, vue, open } = JSON.parse(lines[0]);
  assert.equal(open, "function", "syncstore imports on the server");
  const empty = ["<p>loading|loading|loading|offline</p>", "<p>loading|loading|loading|no status</p>"];
  // The live hooks never read the store; useStatus reads its in-memory status.
  assert.deepEqual(react, { html: empty, touched: ["db.status"] });
  assert.deepEqual(vue, { html: empty, touched: ["db.status"] });
});

test("no page error, console error or warning, or failed request", () => {
  assert.deepEqual(b.problems, []);
});

// The package in a webpack 5 app (no plugin, no loader, no wasm experiment):
// `webpack build`, then the built page in headless Chromium runs the
// README's quick start. pkg-template/README.md says webpack 5 needs no
// plugin; this is what holds it to that.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { bin, browser, copyFixture, makeApp, openAndWait, quickStart, run, serve } from "./lib.mjs";
import { checkQuickStart } from "./expected.mjs";

let app, server, b;
before(async () => {
  const code = await quickStart();
  assert.match(code, /from "syncstore";/, "the quick start imports the package");
  app = await makeApp("webpack", { "main.js": `${code}\nwindow.done = true;\n` });
  await copyFixture("webpack/webpack.config.mjs", app.dir, "webpack.config.mjs");
  // webpack from this folder's node_modules (the version package.json pins).
  await run(bin("webpack"), ["build", "--config", "webpack.config.mjs"], { cwd: app.dir, timeout: 90_000 });
  await copyFixture("webpack/index.html", app.dir, "dist/index.html");
  server = await serve(join(app.dir, "dist"));
  b = await browser();
});
after(async () => {
  await b?.close();
  await server?.close();
  await app?.remove();
});

test("webpack 5 emits the wasm module as an asset, with no plugin", async () => {
  const files = await readdir(join(app.dir, "dist"), { recursive: true });
  const wasm = files.filter((f) => f.endsWith(".wasm"));
  assert.equal(wasm.length, 1, `one wasm asset: ${files}`);
  const config = await readFile(join(app.dir, "webpack.config.mjs"), "utf8");
  assert.doesNotMatch(config, /plugins|module:|experiments/, "the app uses no plugin, loader rule or experiment");
});

test("the README quick start runs as written in the webpack build", async () => {
  const { page, logs } = await openAndWait(b, `${server.base}/index.html`);
  await checkQuickStart(logs);
  await page.close();
});

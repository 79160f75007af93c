// The package with no build step: a folder whose index.html imports
// ./node_modules/syncstore/index.js from <script type="module">, served as
// it is, in headless Chromium.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { browser, copyFixture, makeApp, openAndWait, quickStart, serve } from "./lib.mjs";
import { CHECKS, checkQuickStart } from "./expected.mjs";

const ENTRY = "./node_modules/syncstore/index.js";
let app, server, b;
before(async () => {
  const code = await quickStart();
  const inPage = code.replace(`from "syncstore";`, `from "${ENTRY}";`);
  assert.notEqual(inPage, code, "the quick start imports the package");
  const html = `<!doctype html>
<html>
  <head><meta charset="utf-8"><link rel="icon" href="data:,"><title>syncstore without a build</title></head>
  <body>
    <script type="module">
${inPage}
window.done = true;
    </script>
  </body>
</html>
`;
  app = await makeApp("nobuild", { "index.html": html });
  await copyFixture("nobuild/checks.html", app.dir, "checks.html");
  await copyFixture("checks.js", app.dir);
  server = await serve(app.dir);
  b = await browser();
});
after(async () => {
  await b?.close();
  await server?.close();
  await app?.remove();
});

test("the README quick start runs as written from node_modules", async () => {
  const { page, logs } = await openAndWait(b, `${server.base}/`);
  await checkQuickStart(logs);
  await page.close();
});

test("lazy and explicit init, SyncStoreError, the API", async () => {
  const { page } = await openAndWait(b, `${server.base}/checks.html`);
  assert.deepEqual(await page.evaluate(() => window.checks), CHECKS);
  await page.close();
});

test("no page error, console error or warning, or failed request", () => {
  assert.deepEqual(b.problems, []);
});

// Shared set-up of the page-level tests: the demo's static server and a
// headless Debian Chromium driven by playwright-core.
import { chromium } from "playwright-core";
import { mkdtemp, rm, mkdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";
import { startServer } from "../../scripts/serve.mjs";

export const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const outDir = join(root, "tests", "e2e", "out");

const ARGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];

/** Starts the static server and a browser; `close()` stops both. */
export async function launch() {
  const server = await startServer({ port: 0 });
  const base = `http://127.0.0.1:${server.address().port}`;
  const profile = await mkdtemp(join(tmpdir(), "syncstore-e2e-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ARGS,
  });
  await mkdir(outDir, { recursive: true });
  const errors = [];
  context.on("page", (p) => watch(p, errors));
  for (const p of context.pages()) watch(p, errors);
  return {
    base,
    context,
    errors,
    async page(path = "/e2e/harness.html") {
      const page = await context.newPage();
      await page.goto(base + path);
      if (path.startsWith("/e2e/harness")) await page.waitForFunction(() => window.ready === true, null, { timeout: 15000 });
      return page;
    },
    async close() {
      await context.close();
      await new Promise((r) => server.close(r));
      await rm(profile, { recursive: true, force: true });
    },
  };
}

function watch(page, errors) {
  page.on("pageerror", (e) => errors.push(`pageerror: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(`console.error: ${m.text()}`);
  });
}

// The sync server of the tier (scripts/with-server.sh) and its control API
// (scripts/testctl.mjs).
export const SERVER = process.env.SYNCSTORE_TEST_SERVER || "http://127.0.0.1:18787";
export const CTL = process.env.SYNCSTORE_TEST_CTL || "http://127.0.0.1:18786";

export async function ctl(path, method = "GET") {
  const r = await fetch(CTL + path, { method });
  assert.ok(r.ok, `testctl ${path}: HTTP ${r.status}`);
  return r.json();
}

/** The server's rows of `coll` (deleted ones included), by version. */
export const serverRows = async (coll) => (await ctl(`/docs?coll=${coll}`)).rows;

/**
 * Waits until `fn()` returns something truthy, at most `ms` (a hang guard,
 * not a measurement). An error thrown by `fn` (a store call that rejected,
 * testctl failing) fails at once: it is never taken for "not yet".
 */
export async function until(what, fn, ms = 20000) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    last = await fn();
    if (last) return last;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}; last: ${JSON.stringify(last)}`);
}

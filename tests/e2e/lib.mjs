// Shared set-up of the page-level tests: the demo's static server and a
// headless Debian Chromium driven by playwright-core.
import { chromium } from "playwright-core";
import { mkdtemp, rm, mkdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
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

// Shared set-up of the package tests: the packed tarball, throwaway apps in a
// temp dir that install it with npm, a static server on 127.0.0.1 and a
// headless Debian Chromium (playwright-core), as in tests/e2e/lib.mjs.
import { chromium } from "playwright-core";
import { execFile } from "node:child_process";
import { createServer } from "node:http";
import { mkdtemp, readFile, rm, stat, writeFile, cp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, extname, join, normalize, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";

export const here = dirname(fileURLToPath(import.meta.url));
export const root = resolve(here, "../..");
export const fixtures = join(here, "fixtures");

/** The version of Cargo.toml's [package]: the package's. */
export async function version() {
  const lines = (await readFile(join(root, "Cargo.toml"), "utf8")).split("\n");
  const start = lines.indexOf("[package]");
  const end = lines.findIndex((l, i) => i > start && l.startsWith("["));
  const v = lines.slice(start, end < 0 ? undefined : end).map((l) => l.match(/^version = "(.*)"$/)?.[1]).find(Boolean);
  if (start < 0 || !v) throw new Error("no [package] version in Cargo.toml");
  return v;
}

/** dist/syncstore-<version>.tgz, written by `make package`. */
export async function tarball() {
  const file = join(root, "dist", `syncstore-${await version()}.tgz`);
  try {
    await stat(file);
  } catch {
    throw new Error(`${file} is missing: run make package`);
  }
  return file;
}

/** The versions this folder's package.json pins (installed here by `npm ci`). */
export async function pinned(...names) {
  const pkg = JSON.parse(await readFile(join(here, "package.json"), "utf8"));
  return names.map((n) => {
    const v = pkg.devDependencies[n];
    if (!v) throw new Error(`tests/package/package.json pins no ${n}`);
    return `${n}@${v}`;
  });
}

/** Runs a command; resolves with its output, rejects (with it) on failure or timeout. */
export function run(cmd, args, { cwd, timeout = 120_000, env } = {}) {
  return new Promise((ok, fail) => {
    execFile(cmd, args, { cwd, timeout, env: { ...process.env, ...env }, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      const out = `${stdout}${stderr}`;
      if (err) {
        err.output = out;
        err.message += `\n${out}`;
        fail(err);
      } else ok(out);
    });
  });
}

/** tests/package/node_modules/.bin/NAME. */
export const bin = (name) => join(here, "node_modules", ".bin", name);

/**
 * A throwaway app: a temp dir with `files` (name -> text) that installs the
 * tarball and `deps` ("name@version") from the npm registry (the cache
 * `npm ci` here filled first). `remove()` deletes it.
 */
export async function makeApp(prefix, files, deps = []) {
  const dir = await mkdtemp(join(tmpdir(), `syncstore-${prefix}-`));
  const remove = () => rm(dir, { recursive: true, force: true });
  try {
    await writeFile(join(dir, "package.json"), JSON.stringify({ name: `app-${prefix}`, private: true, type: "module" }, null, 2));
    for (const [name, text] of Object.entries(files)) await writeFile(join(dir, name), text);
    await run("npm", ["install", "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error", await tarball(), ...deps], {
      cwd: dir,
      timeout: 150_000,
    });
  } catch (e) {
    await remove();
    throw e;
  }
  return { dir, remove };
}

/** Copies fixtures/NAME to DIR/NAME (or TO). */
export async function copyFixture(name, dir, to = name) {
  await cp(join(fixtures, name), join(dir, to), { recursive: true });
}

/** The README's quick start (between the quickstart markers), as written. */
export async function quickStart() {
  const readme = await readFile(join(root, "pkg-template", "README.md"), "utf8");
  const m = readme.match(/<!-- quickstart:start -->\s*```js\n([\s\S]*?)```\s*<!-- quickstart:end -->/);
  if (!m) throw new Error("pkg-template/README.md has no marked quick start");
  return m[1];
}

/** What the quick start prints: the query's line, and the subscription's last line. */
export const QUICKSTART_QUERY = '["bread"]';
export const QUICKSTART_LIVE = "open: bread";

const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json",
  ".wasm": "application/wasm",
};

/** Serves `dir` on 127.0.0.1 (a free port); resolves with `{ base, close }`. */
export async function serve(dir) {
  const top = resolve(dir);
  const server = createServer(async (req, res) => {
    let file = normalize(join(top, decodeURIComponent(new URL(req.url, "http://x").pathname)));
    if (file !== top && !file.startsWith(top + sep)) return res.writeHead(403).end();
    try {
      if ((await stat(file)).isDirectory()) file = join(file, "index.html");
      const body = await readFile(file);
      res.writeHead(200, { "content-type": TYPES[extname(file)] || "application/octet-stream", "cache-control": "no-store" });
      res.end(body);
    } catch {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found");
    }
  });
  await new Promise((ok, fail) => {
    server.once("error", fail);
    server.listen(0, "127.0.0.1", ok);
  });
  return {
    base: `http://127.0.0.1:${server.address().port}`,
    close: () => new Promise((r) => server.close(r)),
  };
}

const ARGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];

/**
 * Headless Chromium with a fresh profile. `problems` collects page errors,
 * console errors and warnings, and failed requests; `close()` ends it.
 */
export async function browser() {
  const profile = await mkdtemp(join(tmpdir(), "syncstore-package-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ARGS,
    timeout: 30_000,
  });
  context.setDefaultTimeout(15_000);
  const problems = [];
  const watch = (page) => {
    page.on("pageerror", (e) => problems.push(`pageerror: ${e.message}`));
    page.on("console", (m) => {
      if (m.type() === "error" || m.type() === "warning") problems.push(`console.${m.type()}: ${m.text()}`);
    });
    page.on("requestfailed", (r) => problems.push(`request failed: ${r.url()}`));
  };
  context.on("page", watch);
  for (const p of context.pages()) watch(p);
  return {
    context,
    problems,
    async close() {
      await context.close();
      await rm(profile, { recursive: true, force: true });
    },
  };
}

/**
 * Opens `url`, collecting console.log lines, and waits until the page sets
 * `window.done` (or throws with what it printed and the problems seen).
 */
export async function openAndWait(b, url, { timeout = 15_000 } = {}) {
  const page = await b.context.newPage();
  const logs = [];
  page.on("console", (m) => {
    if (m.type() === "log") logs.push(m.text());
  });
  await page.goto(url);
  try {
    await page.waitForFunction(() => window.done === true, null, { timeout });
  } catch (e) {
    e.message += `\nlogs: ${JSON.stringify(logs)}\nproblems: ${JSON.stringify(b.problems)}`;
    throw e;
  }
  return { page, logs };
}

/**
 * A marked example of pkg-template/README.md (or of `readme`, a path from
 * the repository root): `<!-- example:NAME -->` before a fenced block, as
 * written: `{ lang, code }`.
 */
export async function readmeExample(name, readme = "pkg-template/README.md") {
  const text = await readFile(join(root, readme), "utf8");
  const m = text.match(new RegExp(`<!-- example:${name} -->\\s*\`\`\`(\\w+)\\n([\\s\\S]*?)\`\`\``));
  if (!m) throw new Error(`${readme} has no example marked ${name}`);
  return { lang: m[1], code: m[2] };
}

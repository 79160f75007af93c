// smoke-pkg.mjs: the load check of `make pkg` after wasm-opt. Serves pkg/
// on 127.0.0.1 and, in headless Chromium (playwright-core, Debian's
// /usr/bin/chromium) and headless Firefox ESR (geckodriver's WebDriver HTTP
// API: playwright cannot drive Debian's Firefox), loads the module, opens a
// store, inserts, updates, queries and checks the result and the code of a
// typed error. Exits non-zero if either browser fails, so an optimizer that
// breaks the module fails the build. Kills what it starts.
//   node scripts/smoke-pkg.mjs [pkgDir]
import { createServer } from "node:http";
import { spawn } from "node:child_process";
import { readFile, mkdtemp, rm } from "node:fs/promises";
import { tmpdir, homedir } from "node:os";
import { join, normalize, resolve, dirname, extname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const pkg = resolve(process.argv[2] || join(root, "pkg"));
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const FIREFOX = process.env.FIREFOX || "/usr/bin/firefox-esr";
const GECKODRIVER = process.env.GECKODRIVER || join(homedir(), ".cargo", "bin", "geckodriver");
const LIMIT_MS = 60000; // a hang guard per browser, not a measurement

// What the page computes; `expected` is what a working module returns.
const PAGE = `<!doctype html><meta charset="utf-8"><link rel="icon" href="data:,">
<script type="module">
  try {
    const { default: init, SyncStore } = await import("/pkg/syncstore.js");
    await init();
    const db = await SyncStore.open({
      name: "smoke-" + Date.now(),
      collections: { todos: { indexes: ["done", "createdAt"] } },
    });
    const id = await db.insert("todos", { text: "milk", done: false, createdAt: 1 });
    await db.update("todos", id, { done: true });
    await db.insert("todos", { text: "bread", done: false, createdAt: 2 });
    const open = await db.query("todos", { where: { done: false }, orderBy: "createdAt" });
    const milk = await db.get("todos", id);
    let code = "no error";
    try {
      await db.insert("nope", { text: "x" });
    } catch (e) {
      code = (e instanceof Error ? "" : "not an Error: ") + e.code;
    }
    db.close();
    window.smoke = { ok: true, result: { idType: typeof id, open: open.map((t) => t.text), milkDone: milk && milk.done, code } };
  } catch (e) {
    window.smoke = { ok: false, error: String(e) + " " + ((e && e.stack) || "") };
  }
</script>`;
const expected = { idType: "string", open: ["bread"], milkDone: true, code: "UNKNOWN_COLLECTION" };

const TYPES = { ".js": "text/javascript; charset=utf-8", ".wasm": "application/wasm", ".ts": "text/plain" };
function serve() {
  const server = createServer(async (req, res) => {
    const path = decodeURIComponent(new URL(req.url, "http://x").pathname);
    if (path === "/") return res.writeHead(200, { "content-type": "text/html; charset=utf-8" }).end(PAGE);
    const file = normalize(join(pkg, path.slice("/pkg/".length)));
    if (!path.startsWith("/pkg/") || !file.startsWith(pkg)) return res.writeHead(404).end();
    try {
      const body = await readFile(file);
      res.writeHead(200, { "content-type": TYPES[extname(file)] || "application/octet-stream", "cache-control": "no-store" }).end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  return new Promise((ok, fail) => {
    server.once("error", fail);
    server.listen(0, "127.0.0.1", () => ok(server));
  });
}

function check(browser, smoke) {
  if (!smoke) throw new Error(`${browser}: the page set no result`);
  if (!smoke.ok) throw new Error(`${browser}: the page failed: ${smoke.error}`);
  // Key order as in `expected` (WebDriver returns objects with sorted keys).
  const got = JSON.stringify(smoke.result, Object.keys(expected)), want = JSON.stringify(expected);
  if (got !== want) throw new Error(`${browser}: got ${got}, expected ${want}`);
}

async function inChromium(url) {
  const profile = await mkdtemp(join(tmpdir(), "syncstore-smoke-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  try {
    const page = await context.newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(url);
    await page.waitForFunction(() => window.smoke !== undefined, null, { timeout: LIMIT_MS });
    if (errors.length) throw new Error(`chromium: page errors: ${errors.join("; ")}`);
    check("chromium", await page.evaluate(() => window.smoke));
  } finally {
    await context.close();
    await rm(profile, { recursive: true, force: true });
  }
}

// geckodriver on a free port (--port 0, read from its log), one session.
async function inFirefox(url) {
  const profileRoot = await mkdtemp(join(tmpdir(), "syncstore-smoke-firefox-"));
  const gd = spawn(GECKODRIVER, ["--host", "127.0.0.1", "--port", "0", "--websocket-port", "0", "--profile-root", profileRoot], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let log = "";
  const exited = new Promise((r) => gd.once("exit", r));
  try {
    const base = await new Promise((ok, fail) => {
      const timer = setTimeout(() => fail(new Error(`firefox: geckodriver did not start: ${log}`)), 15000);
      const onData = (d) => {
        log += d;
        const m = log.match(/Listening on (127\.0\.0\.1:\d+)/);
        if (m) {
          clearTimeout(timer);
          ok(`http://${m[1]}`);
        }
      };
      gd.stdout.on("data", onData);
      gd.stderr.on("data", onData);
      gd.once("error", (e) => (clearTimeout(timer), fail(e)));
      gd.once("exit", (c) => (clearTimeout(timer), fail(new Error(`firefox: geckodriver exited (${c}): ${log}`))));
    });
    const wd = async (method, path, body) => {
      const r = await fetch(base + path, { method, headers: { "content-type": "application/json" }, body: body && JSON.stringify(body) });
      const j = await r.json();
      if (!r.ok) throw new Error(`firefox: ${method} ${path}: HTTP ${r.status} ${JSON.stringify(j.value)}`);
      return j.value;
    };
    const { sessionId } = await wd("POST", "/session", {
      capabilities: {
        alwaysMatch: {
          browserName: "firefox",
          "moz:firefoxOptions": {
            binary: FIREFOX,
            args: ["-headless"],
            prefs: { "app.update.enabled": false, "browser.shell.checkDefaultBrowser": false },
          },
        },
      },
    });
    try {
      await wd("POST", `/session/${sessionId}/timeouts`, { script: LIMIT_MS, pageLoad: LIMIT_MS });
      await wd("POST", `/session/${sessionId}/url`, { url });
      const smoke = await wd("POST", `/session/${sessionId}/execute/async`, {
        script: `const done = arguments[arguments.length - 1];
          (function poll() { if (window.smoke !== undefined) done(window.smoke); else setTimeout(poll, 20); })();`,
        args: [],
      });
      check("firefox", smoke);
    } finally {
      await wd("DELETE", `/session/${sessionId}`).catch(() => {});
    }
  } finally {
    gd.kill("SIGTERM");
    const killer = setTimeout(() => gd.kill("SIGKILL"), 5000);
    await exited;
    clearTimeout(killer);
    await rm(profileRoot, { recursive: true, force: true });
  }
}

const server = await serve();
const url = `http://127.0.0.1:${server.address().port}/`;
const started = Date.now();
const results = await Promise.allSettled([inChromium(url), inFirefox(url)]);
server.close();
const failed = results.filter((r) => r.status === "rejected").map((r) => r.reason?.message || String(r.reason));
if (failed.length) {
  for (const f of failed) console.error(`smoke-pkg: ${f}`);
  console.error(`smoke-pkg: FAILED: ${pkg} does not load and work in both browsers`);
  process.exit(1);
}
console.log(`smoke-pkg: ${pkg} loads, inserts and queries in Chromium and Firefox (${((Date.now() - started) / 1000).toFixed(1)} s)`);

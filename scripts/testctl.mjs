#!/usr/bin/env node
// testctl.mjs: a controllable sync server for browser tests.
//
// Browser tests (wasm-bindgen-test in headless Chromium/Firefox, on another
// origin) need a real sync server they can stop, restart, kill in the middle
// of a push, and whose WebSocket connections they can cut. This script owns
// the server process, puts a TCP/HTTP proxy in front of it (the tests only
// ever talk to the proxy, so connections can be cut and faults injected), and
// exposes a small control API over HTTP. Node 20+, node: builtins only.
//
//   node scripts/testctl.mjs --server-bin ./target/debug/syncstore-server \
//        --port 18787 --ctl-port 18786 [--data DIR]
//
// The server runs as
//   <bin> --listen 127.0.0.1:<internal> --db <DIR>/sync.sqlite --dev
//         --jwt-alg HS256 --jwt-key-file <DIR>/jwt-secret --jwt-leeway-s 0
// (a random secret generated at start: /mint signs tokens with it; the
// dev token keeps working beside JWTs)
// with its output appended to <DIR>/server.log. DIR defaults to a fresh
// temporary directory, removed on exit. <internal> is a free port picked
// once, so every restart reuses the same address and the same database.
//
// Proxy, 127.0.0.1:<port>:
//   - HTTP requests are forwarded as is (streamed both ways); CORS headers
//     come from the server.
//   - WebSocket upgrades are piped byte for byte to the server.
//   - While the server is down, every connection is destroyed without an
//     answer, like a dead server: fetch() rejects, WebSocket closes with 1006.
//
// Control API, 127.0.0.1:<ctl-port> (JSON answers, CORS open to any origin):
//   POST /stop         SIGKILL the server, wait for its exit, cut all proxied
//                      connections.                          -> {ok:true}
//   POST /start        start it again (same DB, same port); answers once it
//                      accepts connections; no-op if running.  -> {ok:true}
//   POST /wipe         stop the server, delete its database, start it on a
//                      fresh one (clients' cursors then answer resync).
//                                                                -> {ok:true}
//   POST /push-work?bytes=N
//                      restart the server (same database) with
//                      `--max-push-work-bytes N` (its per-push work budget),
//                      kept across /start and /wipe; without `bytes`, the
//                      server's default again.                   -> {ok:true}
//   POST /drop-ws      cut all proxied WebSockets (both sides).  -> {dropped:n}
//   POST /stall-ws     make the open proxied WebSockets half-open: their bytes
//                      stop flowing in both directions, but neither side is
//                      closed (a NAT or middlebox that lost the connection).
//                      Later sockets are not affected.      -> {stalled:n}
//   POST /fail-http    answer every proxied HTTP request (but CORS preflights)
//                      with 503 SERVICE_UNAVAILABLE without forwarding it;
//   POST /heal-http    WebSockets are not affected.           -> {ok:true}
//                      A 503 answer counts in `failedHttp` of /state.
//   POST /block-ws     refuse WebSocket upgrades (socket destroyed); plain
//   POST /unblock-ws   HTTP still passes.                        -> {ok:true}
//   POST /kill-on-push one-shot: the next POST /v1/push* is forwarded in full;
//                      when the server's response head arrives the server is
//                      SIGKILLed and the client socket destroyed, so the push
//                      is committed but the client never learns it.
//                                                                -> {armed:true}
//   POST /answer?method=M&path=P&status=S[&body=TEXT][&retryAfter=SECONDS][&times=N]
//                      canned answers: the next N (default 1) proxied
//                      requests `M P` (default POST; path without query) get
//                      status S with body TEXT (default empty) and, if
//                      given, `Retry-After` (exposed to pages by CORS),
//                      without reaching the server. For answers the server
//                      never gives: a 429 of a chosen length, a malformed
//                      200.                                   -> {ok:true}
//   POST /clear-answers drop the canned answers not used yet.  -> {ok:true}
//   GET  /requests     {requests:[{at, method, path, status, canned}]}: the
//                      last 500 proxied requests but CORS preflights, with
//                      the time (ms since the epoch) each reached the proxy.
//   GET  /state        {running, wsOpen, wsTotal, pushes, killedOnPush,
//                       failedHttp, blocked, armed, failing}
//   GET  /docs[?coll=NAME]  {rows:[{coll,id,doc,deleted,version}]} from the
//                      server's SQLite (via the sqlite3 CLI), by version.
//   GET  /clients      {rows:[{client_id,last_mid}]}
//   GET  /mint?sub=S&ns=N&ttl=SECONDS[&ro=1]
//                      {token}: an HS256 JWT the server accepts, for user S
//                      in namespace N (default dev), expiring `ttl` seconds
//                      from now (default 3600; fractions allowed; no leeway),
//                      read-only with ro=1.
//
// "Push" means a POST whose path starts with /v1/push: the CORS preflight
// (OPTIONS) a browser sends first neither counts nor triggers kill-on-push.
//
// On SIGTERM/SIGINT, parent exit, or an uncaught exception the server is
// killed and everything closed; the server process is never left behind.
// Parent exit is noticed by re-parenting (ppid change), so start testctl from
// a process that lives as long as the tests (e.g. `node testctl.mjs ... &`
// in the test script), not detached with `( ... & )`. Only a SIGKILL of
// testctl itself cannot be handled; the server would then stay up.

import { spawn, execFile } from "node:child_process";
import crypto from "node:crypto";
import { once } from "node:events";
import fs from "node:fs";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";

const HOST = "127.0.0.1";
const READY_TIMEOUT_MS = 10_000; // server start -> accepting connections
const EXIT_TIMEOUT_MS = 5_000; // SIGKILL -> exit event
const SQLITE_TIMEOUT_MS = 5_000; // one sqlite3 query
const POLL_MS = 50;

// ---------------------------------------------------------------- arguments

function usage(msg) {
  if (msg) console.error(`testctl: ${msg}`);
  console.error(
    "usage: node scripts/testctl.mjs --server-bin BIN --port N --ctl-port N [--data DIR]",
  );
  process.exit(2);
}

let args;
try {
  ({ values: args } = parseArgs({
    options: {
      "server-bin": { type: "string" },
      port: { type: "string" },
      "ctl-port": { type: "string" },
      data: { type: "string" },
    },
    strict: true,
  }));
} catch (e) {
  usage(e.message);
}
const parsePort = (v, name) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 65535) usage(`--${name} must be a port number`);
  return n;
};
if (!args["server-bin"]) usage("--server-bin is required");
const SERVER_BIN = args["server-bin"];
const PORT = parsePort(args.port, "port");
const CTL_PORT = parsePort(args["ctl-port"], "ctl-port");
// A bare name is looked up in PATH by spawn; a path is checked up front so a
// missing build gives a clear message instead of a spawn error later.
if (SERVER_BIN.includes("/")) {
  try {
    fs.accessSync(SERVER_BIN, fs.constants.X_OK);
  } catch {
    usage(`server binary not found or not executable: ${SERVER_BIN}`);
  }
}

const OWN_DATA_DIR = !args.data; // a temp dir we created is ours to remove
const DATA_DIR = path.resolve(
  args.data ?? fs.mkdtempSync(path.join(os.tmpdir(), "syncstore-testctl-")),
);
fs.mkdirSync(DATA_DIR, { recursive: true });
const DB_PATH = path.join(DATA_DIR, "sync.sqlite");
const LOG_PATH = path.join(DATA_DIR, "server.log");
const JWT_SECRET = crypto.randomBytes(32).toString("hex");
const JWT_SECRET_PATH = path.join(DATA_DIR, "jwt-secret");
fs.writeFileSync(JWT_SECRET_PATH, JWT_SECRET, { mode: 0o600 });

/** An HS256 JWT signed with the server's secret. */
function mintJwt(claims) {
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString("base64url");
  const body = `${b64({ alg: "HS256", typ: "JWT" })}.${b64(claims)}`;
  const sig = crypto.createHmac("sha256", JWT_SECRET).update(body).digest("base64url");
  return `${body}.${sig}`;
}

// -------------------------------------------------------------------- state

let internalPort = 0; // picked once in main()
let child = null; // the server ChildProcess, or null
let running = false; // server started and accepting; false as soon as we kill it
let blocked = false; // /block-ws
let armed = false; // /kill-on-push
let failing = false; // /fail-http
const stats = { wsTotal: 0, pushes: 0, killedOnPush: 0, failedHttp: 0 };
let pushWorkArgs = []; // /push-work: ["--max-push-work-bytes", N] or none
const canned = []; // /answer: {method, path, status, body, retryAfter, times}
const requestLog = []; // /requests, the last REQUEST_LOG_MAX
const REQUEST_LOG_MAX = 500;

/** Records a proxied request (not a CORS preflight) for /requests. */
function logRequest(req, status, isCanned) {
  if (req.method === "OPTIONS") return;
  requestLog.push({ at: Date.now(), method: req.method, path: req.url.split("?")[0], status, canned: isCanned });
  if (requestLog.length > REQUEST_LOG_MAX) requestLog.shift();
}

/** The canned answer for `req`, if one is armed (it is used up). */
function takeCanned(req) {
  if (req.method === "OPTIONS") return null;
  const path = req.url.split("?")[0];
  const i = canned.findIndex((c) => c.method === req.method && c.path === path);
  if (i < 0) return null;
  const c = canned[i];
  if (--c.times <= 0) canned.splice(i, 1);
  return c;
}

const clientSockets = new Set(); // every socket accepted by the proxy
const upstreamRequests = new Set(); // in-flight proxied HTTP requests to the server
const wsPairs = new Set(); // {client, upstream} for each proxied WebSocket

// Start/stop run one at a time, so concurrent /start and /stop calls (or a
// kill-on-push racing a /start) cannot interleave half-way.
let lifecycle = Promise.resolve();
function serialized(fn) {
  const p = lifecycle.then(fn, fn);
  lifecycle = p.catch(() => {});
  return p;
}

// ------------------------------------------------------------------- server

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A free port on 127.0.0.1: bind port 0, read it, release it. */
async function pickFreePort() {
  const s = net.createServer();
  s.listen(0, HOST);
  await once(s, "listening");
  const { port } = s.address();
  s.close();
  await once(s, "close");
  return port;
}

/** One TCP connect attempt to the server, bounded by `ms`. */
function canConnect(port, ms = 500) {
  return new Promise((resolve) => {
    const sock = net.connect({ host: HOST, port });
    const done = (ok) => {
      clearTimeout(timer);
      sock.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), ms);
    sock.once("connect", () => done(true));
    sock.once("error", () => done(false));
  });
}

function logTail(max = 4000) {
  try {
    const text = fs.readFileSync(LOG_PATH, "utf8");
    return text.length > max ? text.slice(-max) : text;
  } catch {
    return "";
  }
}

const isAlive = (c) => !!c && c.pid !== undefined && c.exitCode === null && c.signalCode === null;

/** Resolves once `c` has exited, or rejects after EXIT_TIMEOUT_MS. */
async function waitExit(c) {
  if (!c || !isAlive(c)) return;
  let timer;
  await Promise.race([
    once(c, "exit"),
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error("server did not exit after SIGKILL")), EXIT_TIMEOUT_MS);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** Sends SIGKILL right now (synchronous, usable from exit paths). */
function killNow() {
  running = false;
  if (isAlive(child)) {
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
  }
}

/** Destroys every proxied connection: what a dead server does to its peers. */
function cutAllConnections() {
  for (const { client, upstream } of wsPairs) {
    client.destroy();
    upstream.destroy();
  }
  wsPairs.clear();
  for (const r of upstreamRequests) r.destroy();
  upstreamRequests.clear();
  for (const s of clientSockets) s.destroy();
  clientSockets.clear();
}

async function startServer() {
  if (running && isAlive(child)) return;
  // A server that died on its own (crash) is reaped before restarting.
  if (child) {
    killNow();
    await waitExit(child);
    child = null;
  }
  const logFd = fs.openSync(LOG_PATH, "a");
  let c;
  try {
    fs.writeSync(logFd, `\n--- testctl: starting server ${new Date().toISOString()}\n`);
    c = spawn(
      SERVER_BIN,
      [
        "--listen", `${HOST}:${internalPort}`, "--db", DB_PATH, "--dev",
        "--jwt-alg", "HS256", "--jwt-key-file", JWT_SECRET_PATH, "--jwt-leeway-s", "0",
        ...pushWorkArgs,
      ],
      { stdio: ["ignore", logFd, logFd] },
    );
  } finally {
    fs.closeSync(logFd); // the child holds its own copy
  }
  child = c;
  let spawnError = null;
  c.once("error", (e) => {
    spawnError = e;
  });
  c.once("exit", (code, signal) => {
    if (child === c) running = false;
    if (!shuttingDown && signal !== "SIGKILL") {
      console.error(`testctl: server exited unexpectedly (code ${code}, signal ${signal})`);
    }
  });

  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (spawnError || !isAlive(c)) break;
    if (await canConnect(internalPort)) {
      running = true;
      return;
    }
    await sleep(POLL_MS);
  }
  // Not ready: make sure it is gone, then fail loudly with its output.
  const why = spawnError
    ? `cannot run ${SERVER_BIN}: ${spawnError.message}`
    : isAlive(c)
      ? `server not accepting connections on ${HOST}:${internalPort} after ${READY_TIMEOUT_MS} ms`
      : `server exited during startup (code ${c.exitCode}, signal ${c.signalCode})`;
  if (isAlive(c)) c.kill("SIGKILL");
  await waitExit(c).catch(() => {});
  const err = new Error(why);
  err.log = logTail();
  throw err;
}

async function stopServer() {
  const c = child;
  killNow();
  await waitExit(c);
  cutAllConnections();
}

// -------------------------------------------------------------------- proxy

// Hop-by-hop headers describe one connection, not the message; the proxy has
// its own connections on each side. `expect` is dropped because Node's server
// already answered the 100-continue.
const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "te",
  "trailer",
  "upgrade",
  "expect",
]);
function endToEnd(headers) {
  const out = {};
  for (const [k, v] of Object.entries(headers)) if (!HOP_BY_HOP.has(k)) out[k] = v;
  return out;
}

const proxy = http.createServer();

proxy.on("connection", (sock) => {
  // A dead server refuses: no HTTP answer at all.
  if (!running) {
    sock.destroy();
    return;
  }
  clientSockets.add(sock);
  sock.once("close", () => clientSockets.delete(sock));
});

// Malformed requests or sockets dying mid-request: just drop the socket.
proxy.on("clientError", (_err, sock) => sock.destroy());

proxy.on("request", (req, res) => {
  if (!running) {
    req.socket.destroy();
    return;
  }
  // Only the POST counts: a cross-origin push is preceded by an OPTIONS
  // preflight, which must neither count nor trigger the fault.
  const isPush = req.method === "POST" && req.url.startsWith("/v1/push");
  if (isPush) stats.pushes++;
  if (failing && req.method !== "OPTIONS") {
    stats.failedHttp++;
    req.resume();
    res.writeHead(503, {
      "access-control-allow-origin": "*",
      "content-type": "application/json",
      "cache-control": "no-store",
    });
    res.end(JSON.stringify({ error: { code: "UNAVAILABLE", message: "testctl: /fail-http" } }));
    return;
  }
  const answer = takeCanned(req);
  if (answer) {
    logRequest(req, answer.status, true);
    req.resume();
    const headers = {
      "access-control-allow-origin": "*",
      "access-control-expose-headers": "retry-after",
      "content-type": "application/json",
      "cache-control": "no-store",
    };
    if (answer.retryAfter !== null) headers["retry-after"] = answer.retryAfter;
    res.writeHead(answer.status, headers);
    res.end(answer.body);
    return;
  }
  logRequest(req, null, false);
  const killThis = isPush && armed;
  if (killThis) armed = false; // one-shot

  // agent:false -> one fresh upstream connection per request, nothing pooled
  // that could outlive a server restart.
  const up = http.request({
    host: HOST,
    port: internalPort,
    method: req.method,
    path: req.url,
    headers: endToEnd(req.headers),
    agent: false,
  });
  upstreamRequests.add(up);
  up.once("close", () => upstreamRequests.delete(up));

  up.on("response", (upRes) => {
    if (killThis) {
      // The push is committed (the server answered); kill before the client
      // can see anything, then drop the client without a byte of answer.
      stats.killedOnPush++;
      killNow();
      req.socket.destroy();
      upRes.destroy();
      // Reap the process and cut the rest, as /stop does.
      serialized(stopServer).catch((e) => console.error(`testctl: kill-on-push: ${e.message}`));
      return;
    }
    res.writeHead(upRes.statusCode, upRes.statusMessage, endToEnd(upRes.headers));
    upRes.pipe(res);
    upRes.once("error", () => req.socket.destroy());
    upRes.once("aborted", () => req.socket.destroy());
  });
  // Server unreachable or died mid-request: the client sees a dead server too.
  up.on("error", () => req.socket.destroy());
  // Client went away: stop the upstream request.
  res.once("close", () => {
    if (!res.writableFinished) up.destroy();
  });
  req.pipe(up);
});

proxy.on("upgrade", (req, client, head) => {
  if (!running || blocked) {
    client.destroy();
    return;
  }
  stats.wsTotal++;
  const upstream = net.connect({ host: HOST, port: internalPort });
  const pair = { client, upstream, stalled: false };
  wsPairs.add(pair);
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    wsPairs.delete(pair);
    client.destroy();
    upstream.destroy();
  };
  client.on("error", close);
  client.on("close", close);
  upstream.on("error", close);
  upstream.on("close", close);
  upstream.once("connect", () => {
    // Replay the request exactly as received (raw header names and order),
    // then whatever bytes already followed it, then pipe both ways.
    let head0 = `${req.method} ${req.url} HTTP/${req.httpVersion}\r\n`;
    for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) {
      head0 += `${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}\r\n`;
    }
    upstream.write(head0 + "\r\n");
    if (head && head.length) upstream.write(head);
    upstream.setNoDelay(true);
    client.setNoDelay(true);
    if (pair.stalled) return;
    upstream.pipe(client);
    client.pipe(upstream);
  });
});

// ------------------------------------------------------------- control API

const CORS = {
  "access-control-allow-origin": "*",
  "access-control-allow-methods": "GET, POST, OPTIONS",
  "access-control-allow-headers": "content-type",
  "access-control-max-age": "600",
};

function sendJson(res, status, body) {
  res.writeHead(status, { ...CORS, "content-type": "application/json", "cache-control": "no-store" });
  res.end(JSON.stringify(body));
}

/** Runs one query with the sqlite3 CLI; resolves to the parsed rows. */
function sqliteRows(sql) {
  if (!fs.existsSync(DB_PATH)) return Promise.resolve([]);
  return new Promise((resolve, reject) => {
    // .timeout: wait (bounded) instead of failing while the server writes.
    execFile(
      "sqlite3",
      ["-json", "-cmd", ".timeout 2000", DB_PATH, sql],
      { timeout: SQLITE_TIMEOUT_MS, maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) => {
        if (err) {
          // The server creates the schema on open; before that: no rows.
          if (/no such table/.test(stderr)) return resolve([]);
          return reject(new Error(`sqlite3: ${(stderr || err.message).trim()}`));
        }
        // sqlite3 -json prints nothing at all for an empty result.
        const text = stdout.trim();
        if (!text) return resolve([]);
        try {
          resolve(JSON.parse(text));
        } catch (e) {
          reject(new Error(`sqlite3 output is not JSON: ${e.message}`));
        }
      },
    );
  });
}

const SAFE_NAME = /^[\w.-]+$/; // so the name can be quoted into SQL as is

const routes = {
  "POST /stop": async () => {
    await serialized(stopServer);
    return [200, { ok: true }];
  },
  "POST /start": async () => {
    await serialized(startServer);
    return [200, { ok: true }];
  },
  "POST /wipe": async () => {
    // The server loses its data: a new database, hence a new cursor epoch,
    // so every client's cursor answers resync.
    await serialized(async () => {
      await stopServer();
      for (const f of [DB_PATH, `${DB_PATH}-wal`, `${DB_PATH}-shm`]) fs.rmSync(f, { force: true });
      await startServer();
    });
    return [200, { ok: true }];
  },
  "POST /push-work": async (url) => {
    const bytes = url.searchParams.get("bytes");
    if (bytes !== null && !/^[1-9][0-9]*$/.test(bytes)) return [400, { error: "bytes: a positive integer" }];
    await serialized(async () => {
      await stopServer();
      pushWorkArgs = bytes === null ? [] : ["--max-push-work-bytes", bytes];
      await startServer();
    });
    return [200, { ok: true }];
  },
  "POST /drop-ws": async () => {
    const dropped = wsPairs.size;
    for (const { client, upstream } of [...wsPairs]) {
      client.destroy();
      upstream.destroy();
    }
    wsPairs.clear();
    return [200, { dropped }];
  },
  "POST /stall-ws": async () => {
    let stalled = 0;
    for (const pair of wsPairs) {
      if (pair.stalled) continue;
      pair.stalled = true;
      stalled++;
      const { client, upstream } = pair;
      upstream.unpipe(client);
      client.unpipe(upstream);
      // Read nothing more (what arrives stays in the kernel's buffers).
      client.pause();
      upstream.pause();
    }
    return [200, { stalled }];
  },
  "POST /fail-http": async () => {
    failing = true;
    return [200, { ok: true }];
  },
  "POST /heal-http": async () => {
    failing = false;
    return [200, { ok: true }];
  },
  "POST /block-ws": async () => {
    blocked = true;
    return [200, { ok: true }];
  },
  "POST /unblock-ws": async () => {
    blocked = false;
    return [200, { ok: true }];
  },
  "POST /kill-on-push": async () => {
    armed = true;
    return [200, { armed: true }];
  },
  "POST /answer": async (url) => {
    const q = url.searchParams;
    const status = Number(q.get("status"));
    const times = Number(q.get("times") ?? 1);
    if (!q.get("path") || !Number.isInteger(status) || status < 100 || status > 599 || !(times >= 1)) {
      return [400, { error: "path, a status 100-599 and times >= 1 are required" }];
    }
    canned.push({
      method: q.get("method") ?? "POST",
      path: q.get("path"),
      status,
      body: q.get("body") ?? "",
      retryAfter: q.get("retryAfter"),
      times,
    });
    return [200, { ok: true }];
  },
  "POST /clear-answers": async () => {
    canned.length = 0;
    return [200, { ok: true }];
  },
  "GET /requests": async () => [200, { requests: requestLog }],
  "GET /state": async () => [
    200,
    {
      running: running && isAlive(child),
      wsOpen: wsPairs.size,
      wsTotal: stats.wsTotal,
      pushes: stats.pushes,
      killedOnPush: stats.killedOnPush,
      failedHttp: stats.failedHttp,
      failing,
      blocked,
      armed,
    },
  ],
  "GET /docs": async (url) => {
    const coll = url.searchParams.get("coll");
    if (coll !== null && !SAFE_NAME.test(coll)) {
      return [400, { error: "coll must match /^[\\w.-]+$/" }];
    }
    const where = coll !== null ? ` where coll = '${coll}'` : "";
    const rows = await sqliteRows(
      `select coll, id, doc, deleted, version from docs${where} order by version`,
    );
    for (const r of rows) {
      if (typeof r.doc === "string") {
        try {
          r.doc = JSON.parse(r.doc);
        } catch {
          // leave non-JSON text as is
        }
      }
    }
    return [200, { rows }];
  },
  "GET /mint": async (url) => {
    const q = url.searchParams;
    const ttl = Number(q.get("ttl") ?? 3600);
    if (!q.get("sub") || !Number.isFinite(ttl)) return [400, { error: "sub and a numeric ttl are required" }];
    const claims = { sub: q.get("sub"), ns: q.get("ns") ?? "dev", exp: Date.now() / 1000 + ttl };
    if (q.get("ro") === "1") claims.ro = true;
    return [200, { token: mintJwt(claims) }];
  },
  "GET /clients": async () => [
    200,
    { rows: await sqliteRows("select client_id, last_mid from clients") },
  ],
};

const ctl = http.createServer(async (req, res) => {
  req.resume(); // bodies are ignored
  if (req.method === "OPTIONS") {
    res.writeHead(204, { ...CORS, "access-control-allow-private-network": "true" });
    res.end();
    return;
  }
  const url = new URL(req.url, `http://${HOST}`);
  const handler = routes[`${req.method} ${url.pathname}`];
  if (!handler) {
    sendJson(res, 404, { error: `no route ${req.method} ${url.pathname}` });
    return;
  }
  try {
    const [status, body] = await handler(url);
    sendJson(res, status, body);
  } catch (e) {
    sendJson(res, 500, { error: e.message, ...(e.log !== undefined ? { log: e.log } : {}) });
  }
});

// ---------------------------------------------------------------- lifecycle

let shuttingDown = false;

function removeDataDir() {
  if (!OWN_DATA_DIR) return;
  try {
    fs.rmSync(DATA_DIR, { recursive: true, force: true });
  } catch {
    // best effort
  }
}

/** Orderly exit: kill the server, close everything, exit with `code`. */
async function shutdown(code = 0) {
  if (shuttingDown) return;
  shuttingDown = true;
  const c = child;
  killNow();
  proxy.close();
  ctl.close();
  cutAllConnections();
  ctl.closeAllConnections?.();
  await waitExit(c).catch(() => {});
  removeDataDir();
  process.exit(code);
}

process.on("SIGTERM", () => shutdown(0));
process.on("SIGINT", () => shutdown(0));
process.on("SIGHUP", () => shutdown(0));
// Last resort on any exit path (including process.exit from elsewhere):
// synchronous, so only the kill is done here.
process.on("exit", () => killNow());
process.on("uncaughtException", (e) => {
  console.error("testctl: uncaught exception:", e);
  killNow();
  removeDataDir();
  process.exit(1);
});
process.on("unhandledRejection", (e) => {
  console.error("testctl: unhandled rejection:", e);
  killNow();
  removeDataDir();
  process.exit(1);
});

// Parent exit: when the parent dies we are re-parented, so our ppid changes.
// (Also covers an IPC channel when started with fork().)
const initialPpid = process.ppid;
setInterval(() => {
  if (process.ppid !== initialPpid) shutdown(0);
}, 500).unref();
process.on("disconnect", () => shutdown(0));

function listen(server, port) {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, HOST, () => {
      server.off("error", reject);
      resolve();
    });
  });
}

async function main() {
  // Our ports first: a busy port fails before any server is started.
  await listen(ctl, CTL_PORT);
  await listen(proxy, PORT);
  internalPort = await pickFreePort();
  try {
    await serialized(startServer);
  } catch (e) {
    console.error(`testctl: ${e.message}`);
    if (e.log) console.error(`--- ${LOG_PATH}:\n${e.log}`);
    await shutdown(1);
    return;
  }
  console.log(
    `testctl: proxy ${HOST}:${PORT} -> server ${HOST}:${internalPort}, control ${HOST}:${CTL_PORT}, data ${DATA_DIR}`,
  );
}

main().catch(async (e) => {
  console.error(`testctl: ${e.message}`);
  await shutdown(1);
});

// One device of the demo: a todo app with lists on its own syncstore
// database, synced with the sync server. Everything on screen comes from live
// queries (`subscribe`) and sync events; nothing re-renders by hand after a
// write. Embedded in index.html, it posts its events and its height to the
// parent page; opened on its own, it works the same without them.
//
// Query parameters: name (IndexedDB database), label (shown), server (sync
// server base URL), token (bearer token; the dev server's is "dev-token").
import init, { SyncStore } from "/pkg/syncstore.js";

const params = new URLSearchParams(location.search);
const NAME = params.get("name") || "demo-device";
const LABEL = params.get("label") || "Device";
const SERVER = params.get("server") || `${location.protocol}//${location.hostname}:8787`;
const TOKEN = params.get("token") || "dev-token";
const EMBEDDED = window.parent !== window;

const $ = (id) => document.getElementById(id);
let db = null;
let filter = "all";
let listId = ""; // "" = all lists
let stopTodos = null;
let todos = [];
let lists = new Map(); // id -> name
const todoTexts = new Map(); // id -> text of every todo this device has shown, for the event log
let lastStatus = null;
let initialStatus = null;
let errorIsSync = false;
let lastSyncError = null; // the sync failure last reported

// ------------------------------------------------------------ the parent page

function post(msg) {
  if (EMBEDDED) window.parent.postMessage({ app: "syncstore-demo", device: LABEL, name: NAME, ...msg }, location.origin);
}

/** Adds an entry to the event log of the parent page. */
function logEvent(kind, text) {
  post({ type: "event", kind, text, at: Date.now() });
}

function reportSize() {
  post({ type: "size", height: Math.ceil(document.documentElement.getBoundingClientRect().height) });
}
new ResizeObserver(reportSize).observe(document.documentElement);

// ------------------------------------------------------------------- errors

function describeError(e) {
  if (e && typeof e === "object" && "message" in e) return `${e.code || e.name || "Error"}: ${e.message}`;
  return String(e);
}

function showError(e, { sync = false } = {}) {
  const text = describeError(e);
  $("error-text").textContent = sync ? `Sync: ${text}. Changes are kept on this device and sent when the server answers again.` : text;
  $("error").hidden = false;
  errorIsSync = sync;
  if (!sync) logEvent("error", text);
}

function clearError() {
  $("error").hidden = true;
  errorIsSync = false;
}

$("error-close").addEventListener("click", clearError);
window.addEventListener("unhandledrejection", (ev) => {
  ev.preventDefault();
  showError(ev.reason);
});
window.addEventListener("error", (ev) => {
  ev.preventDefault();
  showError(ev.error || ev.message);
});

/** Runs a store call from a UI handler; a failure shows, never throws. */
function attempt(fn) {
  Promise.resolve()
    .then(fn)
    .catch((e) => showError(e));
}

// ----------------------------------------------------------- sync indicator

const CONNECTION_LABELS = { websocket: "Live (WebSocket)", polling: "Polling", offline: "Offline" };

function renderStatus(s) {
  const conn = $("connection");
  conn.dataset.state = s.connection;
  let label = CONNECTION_LABELS[s.connection] || s.connection;
  if (s.connection === "offline" && !$("offline").checked && lastSyncError) label = "Offline (server unreachable)";
  conn.querySelector(".label").textContent = label;
  conn.title = s.lastError ? `Last error: ${s.lastError.code}: ${s.lastError.message}` : "";
  setPending(s.pending);
  const at = Math.max(s.lastPullAt || 0, s.lastPushAt || 0);
  $("synced").dataset.at = at ? String(at) : "";
  renderSynced();
  // Before the first status event the store has not settled who leads yet.
  if (lastStatus && lastStatus !== initialStatus) $("role").textContent = s.leader ? "" : "sync runs in another tab of this database";
  if (errorIsSync && s.connection !== "offline") clearError();
}

function setPending(n) {
  $("pending").dataset.count = String(n);
  $("pending").textContent = `${n} pending`;
  $("pending").classList.toggle("has-pending", n > 0);
}

function renderSynced() {
  const el = $("synced");
  const at = Number(el.dataset.at);
  if (!at) {
    el.textContent = "not synced yet";
    return;
  }
  const s = Math.round((Date.now() - at) / 1000);
  const ago = s < 5 ? "just now" : s < 60 ? `${s} s ago` : s < 3600 ? `${Math.floor(s / 60)} min ago` : new Date(at).toLocaleTimeString();
  el.textContent = `synced ${ago}`;
  el.title = `Last exchange with the sync server: ${new Date(at).toLocaleString()}`;
}
setInterval(renderSynced, 1000);

function onStatus(s) {
  const prev = lastStatus;
  if (prev && prev.connection !== s.connection) logEvent("connection", `${prev.connection} → ${s.connection}`);
  lastStatus = s;
  // The status carries the failure that keeps the device offline, also when
  // no `error` event reported it. (Its lastError stays after recovery, so
  // only a new one, or one that just cut the connection, counts.)
  if (s.connection !== "offline") {
    lastSyncError = null;
  } else if (s.lastError && !$("offline").checked) {
    const fresh = !prev || prev.connection !== "offline" || JSON.stringify(prev.lastError) !== JSON.stringify(s.lastError);
    if (fresh) onSyncError(s.lastError);
  }
  renderStatus(s);
}

/** A sync failure (an `error` event, or the status's lastError): logged and shown once per code until back online. */
function onSyncError(e) {
  const key = e.code || describeError(e);
  if (key === lastSyncError) return;
  lastSyncError = key;
  logEvent("error", describeError(e));
  showError(e, { sync: true });
  if (lastStatus) renderStatus(lastStatus);
}

// ---------------------------------------------------------- event log texts

const short = (id) => (id && id.length > 14 ? `${id.slice(0, 12)}…` : id);

const docLabel = (coll, doc) => (doc ? (coll === "lists" ? `list “${doc.name}”` : `todo “${doc.text}”`) : null);

/** "todo “milk”" or "list “Work”" for an id, as far as this device knows it. */
async function describeDoc(coll, id) {
  for (const c of coll ? [coll] : ["todos", "lists"]) {
    const doc = await db.get(c, id).catch(() => undefined);
    if (doc) return docLabel(c, doc);
    const known = c === "todos" ? todoTexts.get(id) ?? todoTexts.get(db.resolveId(id)) : lists.get(id);
    if (known !== undefined) return docLabel(c, c === "todos" ? { text: known } : { name: known });
  }
  return `${coll ? coll.replace(/s$/, "") : "document"} ${short(id)}`;
}

function wireEvents() {
  db.on("status", onStatus);
  db.on("idmap", ({ tmp, id }) => {
    if (listId === tmp) {
      listId = id;
      $("list-select").value = id;
      watchTodos();
    }
    describeDoc(null, id).then((what) => logEvent("idmap", `${what}: ${short(tmp)} → ${short(id)}`));
  });
  db.on("conflict", async ({ coll, id, local, remote, resolution }) => {
    const what = docLabel(coll, remote) || docLabel(coll, local) || (await describeDoc(coll, id));
    const why = remote ? "changed on the server too" : "deleted on the server";
    const outcome =
      {
        remote: remote ? "the server's version was kept" : "the local edit was dropped",
        serverWins: remote ? "the server's version was kept" : "the local edit was dropped",
        write: "a resolving write was queued",
        both: "the server's version was kept and the local one added as a new document",
      }[resolution] || `resolution: ${resolution}`;
    logEvent("conflict", `${what}: ${why}; ${outcome}`);
  });
  db.on("rejected", async ({ coll, id, code, message }) => {
    logEvent("rejected", `${await describeDoc(coll, id)} refused by the server (${code}: ${message}); rolled back`);
  });
  db.on("error", onSyncError);
}

// -------------------------------------------------------------------- lists

function renderLists(rows) {
  lists = new Map(rows.map((l) => [l.id, l.name]));
  if (listId && !lists.has(listId) && lists.has(db.resolveId(listId))) {
    listId = db.resolveId(listId); // the selected list got its canonical id
    watchTodos();
  }
  const select = $("list-select");
  select.replaceChildren(new Option("All lists", ""), ...rows.map((l) => new Option(l.name, l.id)));
  select.value = listId;
  renderTodos(todos);
}

$("list-select").addEventListener("change", () => {
  listId = $("list-select").value;
  watchTodos();
});

$("add-list").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const name = $("list-name").value.trim();
  if (!name || !db) return;
  attempt(async () => {
    const id = await db.insert("lists", { name, createdAt: Date.now() });
    $("list-name").value = "";
    listId = id;
    $("list-select").value = id;
    watchTodos();
  });
});

// -------------------------------------------------------------------- todos

function listName(id) {
  if (!id) return null;
  return lists.get(id) ?? lists.get(db.resolveId(id)) ?? null;
}

function renderTodos(rows) {
  todos = rows;
  $("todos").replaceChildren(
    ...rows.map((t) => {
      const li = document.createElement("li");
      li.dataset.id = t.id;
      li.dataset.done = String(!!t.done);
      li.className = t.done ? "done" : "";
      const box = document.createElement("input");
      box.type = "checkbox";
      box.checked = !!t.done;
      box.setAttribute("aria-label", `Done: ${t.text}`);
      box.addEventListener("change", () => attempt(() => db.update("todos", t.id, { done: box.checked })));
      const text = document.createElement("span");
      text.className = "text";
      text.textContent = t.text;
      li.append(box, text);
      const name = listId ? null : listName(t.listId);
      if (name) {
        const tag = document.createElement("span");
        tag.className = "tag";
        tag.textContent = name;
        li.append(tag);
      }
      const del = document.createElement("button");
      del.type = "button";
      del.className = "delete";
      del.textContent = "×";
      del.title = "Delete";
      del.setAttribute("aria-label", `Delete ${t.text}`);
      del.addEventListener("click", () => attempt(() => db.delete("todos", t.id)));
      li.append(del);
      return li;
    }),
  );
  $("count").textContent = `${rows.length} item${rows.length === 1 ? "" : "s"}`;
  $("empty").hidden = rows.length > 0;
  $("empty").textContent = filter === "all" ? "Nothing here yet." : `No ${filter} todos.`;
}

let watching = 0;
function watchTodos() {
  if (stopTodos) stopTodos();
  const where = {};
  if (filter !== "all") where.done = filter === "done";
  if (listId) where.listId = listId;
  const mine = ++watching; // a delivery of a query since replaced is dropped
  stopTodos = db.subscribe("todos", { where, orderBy: "createdAt" }, (rows) => {
    if (mine === watching) renderTodos(rows);
  });
}

$("add").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const text = $("text").value.trim();
  if (!text || !db) return;
  $("text").value = "";
  attempt(() => db.insert("todos", { text, done: false, listId: listId || null, createdAt: Date.now() }));
});

for (const b of document.querySelectorAll("[data-filter]")) {
  b.addEventListener("click", () => {
    filter = b.dataset.filter;
    for (const o of document.querySelectorAll("[data-filter]")) {
      o.classList.toggle("active", o === b);
      o.setAttribute("aria-pressed", String(o === b));
    }
    if (db) watchTodos();
  });
}

// ------------------------------------------------------------ offline switch

// The indicator follows from the status events that the switch causes.
$("offline").addEventListener("change", () => {
  const box = $("offline");
  const off = box.checked;
  try {
    if (off) db.goOffline();
    else db.goOnline();
    logEvent("action", off ? "switched offline: writes queue on this device" : "switched online: sending queued writes");
  } catch (e) {
    box.checked = !off;
    showError(e);
  }
});

// --------------------------------------------------------------------- open

async function main() {
  document.title = `${LABEL} · syncstore`;
  document.body.classList.toggle("standalone", !EMBEDDED);
  $("device-label").textContent = LABEL;
  $("dbname").textContent = NAME;
  $("offline").checked = false; // a reload starts online
  await init();
  db = await SyncStore.open({
    name: NAME,
    collections: { todos: { indexes: ["done", "createdAt", "listId"] }, lists: { indexes: ["createdAt"] } },
    sync: { url: SERVER, token: TOKEN, websocket: true, pollMs: 2000 },
  });
  wireEvents();
  logEvent("open", `opened database “${NAME}”, syncing with ${SERVER}`);
  initialStatus = db.status();
  onStatus(initialStatus);
  db.subscribe("lists", { orderBy: "createdAt" }, renderLists);
  // Every todo, unfiltered: the names the event log uses for documents gone by then.
  db.subscribe("todos", {}, (rows) => rows.forEach((t) => todoTexts.set(t.id, t.text)));
  watchTodos();
  $("offline").disabled = false;
  document.body.dataset.ready = "true";
}

main().catch((e) => {
  showError(e);
  document.body.dataset.ready = "error";
});

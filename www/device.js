// One device of the demo: a todo app with lists on its own syncstore
// database, synced with the sync server. Everything on screen comes from live
// queries (`subscribe`) and sync events; nothing re-renders by hand after a
// write. Embedded in index.html, it posts its events and its height to the
// parent page; opened on its own, it works the same without them.
//
// Query parameters: name (IndexedDB database), label (shown), server (sync
// server base URL), token (bearer token; the dev server's is "dev-token"),
// conflicts (the todos' conflict policy: "manual", the default, where a todo
// edited on both sides shows both versions until the user picks one,
// "lastWriteWins" or "serverWins").
import init, { SyncStore } from "/pkg/syncstore.js";

const params = new URLSearchParams(location.search);
const NAME = params.get("name") || "demo-device";
const LABEL = params.get("label") || "Device";
const SERVER = params.get("server") || `${location.protocol}//${location.hostname}:8787`;
const TOKEN = params.get("token") || "dev-token";
const EMBEDDED = window.parent !== window;
const POLICIES = { manual: "you choose", lastWriteWins: "last write wins", serverWins: "server wins" };
const POLICY = Object.hasOwn(POLICIES, params.get("conflicts")) ? params.get("conflicts") : "manual";

const $ = (id) => document.getElementById(id);
let db = null;
let filter = "all";
let listId = ""; // "" = all lists
let stopTodos = null;
let todos = [];
let lists = new Map(); // id -> name
const todoTexts = new Map(); // id -> text of every todo this device has shown, for the event log
let allTodos = new Map(); // canonical id -> every todo as it is now, unfiltered
let lastStatus = null;
let initialStatus = null;
let errorIsSync = false;
let lastSyncError = null; // the sync failure last reported
let conflicts = new Map(); // canonical todo id -> its unresolved conflict ({ id, local, remote, at, … })
const resolving = new Set(); // todo ids whose resolution is being written
let editing = null; // { id, input, original } while a todo is being renamed
let rendering = false;

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

const CONNECTION_LABELS = { websocket: "Live (WebSocket)", connecting: "Connecting…", polling: "Polling", offline: "Offline" };

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
  db.on("conflict", async ({ coll, id, local, remote, policy, resolution }) => {
    const what = docLabel(coll, remote) || docLabel(coll, local) || (await describeDoc(coll, id));
    if (coll === "todos") refreshConflicts();
    // Both versions named, when they differ in name.
    const renamed = coll === "todos" && local && remote && local.text !== remote.text;
    const mine = renamed ? ` (here: “${local.text}”)` : "";
    if (policy === "manual") {
      const why = !remote ? "deleted on the server, edited here" : !local ? "deleted here, changed on the server" : `changed here${renamed ? ` (to “${local.text}”)` : ""} and on the server`;
      const shows = remote ? "the server's version shows, marked," : "it stays deleted";
      logEvent("conflict", `${what}: ${why}; ${shows} until you choose: keep mine, theirs${local && remote ? " or both" : ""}`);
      return;
    }
    const why = remote ? `changed on the server too${mine}` : "deleted on the server";
    const outcome =
      {
        remote: remote ? "the server's version was kept" : "the local edit was dropped",
        serverWins: remote ? "the server's version was kept" : "the local edit was dropped",
        write: policy === "lastWriteWins" ? "the local edit is later, so it was sent again and wins" : "a resolving write was queued",
        both: "the server's version was kept and the local one added as a new document",
      }[resolution] || `resolution: ${resolution}`;
    const later = policy === "lastWriteWins" && resolution === "remote" ? " (it is the later write)" : "";
    logEvent("conflict", `${what}: ${why}; ${outcome}${later}`);
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

// ---------------------------------------------------------------- conflicts

/** Reloads the unresolved conflicts of the todos (`conflicts: "manual"`) and redraws. */
let refreshes = 0;
async function refreshConflicts() {
  const mine = ++refreshes;
  const rows = await db.conflicts("todos").catch((e) => (showError(e), null));
  if (!rows || mine !== refreshes) return;
  conflicts = new Map(rows.map((c) => [db.resolveId(c.id), c]));
  const n = conflicts.size;
  $("conflict-count").hidden = n === 0;
  $("conflict-count").dataset.count = String(n);
  $("conflict-count").textContent = `${n} conflict${n === 1 ? "" : "s"}`;
  renderTodos(todos);
}

const KEEP_LABELS = { local: "Keep mine", remote: "Keep theirs", both: "Keep both" };

/** One side of a conflict: its text, and what else differs from the other side. */
function version(cls, title, doc, other) {
  const box = document.createElement("div");
  box.className = `version ${cls}`;
  const dt = document.createElement("dt");
  dt.textContent = title;
  const dd = document.createElement("dd");
  if (!doc) {
    dd.className = "gone";
    dd.textContent = "deleted";
  } else {
    const text = document.createElement("span");
    text.className = "version-text";
    text.textContent = doc.text;
    dd.append(text);
    const notes = [];
    if (other && !!doc.done !== !!other.done) notes.push(doc.done ? "done" : "not done");
    if (other && (doc.listId ?? null) !== (other.listId ?? null)) notes.push(listName(doc.listId) ? `in ${listName(doc.listId)}` : "no list");
    if (notes.length) {
      const note = document.createElement("span");
      note.className = "version-note";
      note.textContent = notes.join(", ");
      dd.append(note);
    }
  }
  box.append(dt, dd);
  return box;
}

/** A todo's content, to compare two versions. */
const content = (doc) => doc && JSON.stringify(Object.entries(doc).filter(([k]) => k !== "id" && k !== "$conflict").sort(([a], [b]) => (a < b ? -1 : 1)));

/**
 * The two versions of a conflicted todo and the buttons that settle it.
 * "Mine" is the write the server refused; "theirs" is the todo as it shows
 * now (the server's version, with any edit made here since), which is what
 * Keep theirs keeps.
 */
function conflictPanel(c) {
  const theirs = theirsOf(c);
  const panel = document.createElement("div");
  panel.className = "conflict-panel";
  panel.setAttribute("role", "group");
  const title = document.createElement("p");
  title.className = "conflict-title";
  title.textContent = !theirs
    ? "Deleted on the other device, edited here"
    : !c.local
      ? "Deleted here, changed on the other device"
      : content(c.local) === content(theirs)
        ? "Changed the same way on both devices"
        : "Changed on both devices";
  panel.setAttribute("aria-label", `Conflict: ${title.textContent}`);
  const versions = document.createElement("dl");
  versions.className = "versions";
  versions.append(version("mine", "Mine", c.local, theirs), version("theirs", "Theirs", theirs, c.local));
  const choices = document.createElement("div");
  choices.className = "choices";
  // Keep both only means something when both sides still have the todo.
  for (const keep of c.local && theirs ? ["local", "remote", "both"] : ["local", "remote"]) {
    const btn = document.createElement("button");
    btn.type = "button";
    btn.dataset.keep = keep;
    btn.textContent = KEEP_LABELS[keep];
    btn.disabled = resolving.has(db.resolveId(c.id));
    btn.addEventListener("click", () => resolve(c, keep));
    choices.append(btn);
  }
  panel.append(title, versions, choices);
  return panel;
}

/** The other side of a conflict as it is now: the todo shown, or null if deleted. */
const theirsOf = (c) => allTodos.get(db.resolveId(c.id)) ?? null;

function resolve(c, keep) {
  const id = db.resolveId(c.id);
  if (resolving.has(id)) return;
  resolving.add(id);
  renderTodos(todos);
  const theirs = theirsOf(c);
  const label = (doc) => `“${doc.text}”`;
  const outcome = {
    local: !c.local ? "kept mine: deleted" : theirs ? `kept mine, ${label(c.local)}` : `kept mine: ${label(c.local)} is back`,
    remote: theirs ? `kept theirs, ${label(theirs)}` : "kept theirs: stays deleted",
    both: c.local && theirs ? `kept both, ${label(theirs)} and ${label(c.local)} as a new todo` : "kept both",
  }[keep];
  attempt(async () => {
    try {
      await db.resolveConflict("todos", id, { keep });
      logEvent("resolved", `${docLabel("todos", theirs || c.local)}: ${outcome}`);
    } finally {
      resolving.delete(id);
      await refreshConflicts();
    }
  });
}

// -------------------------------------------------------------------- todos

function listName(id) {
  if (!id) return null;
  return lists.get(id) ?? lists.get(db.resolveId(id)) ?? null;
}

function renderTodos(rows) {
  todos = rows;
  if (!db) return;
  const shown = new Set();
  const edited = editing && rows.find((t) => db.resolveId(t.id) === db.resolveId(editing.id));
  if (editing && !edited) editing = null; // the todo went away meanwhile
  const focused = editing && document.activeElement === editing.input;
  const caret = focused && [editing.input.selectionStart, editing.input.selectionEnd];
  rendering = true;
  $("todos").replaceChildren(
    ...rows.map((t) => {
      const id = db.resolveId(t.id);
      const conflict = t.$conflict ? conflicts.get(id) : undefined;
      if (conflict) shown.add(id);
      const li = document.createElement("li");
      li.dataset.id = t.id;
      li.dataset.done = String(!!t.done);
      li.className = t.done ? "done" : "";
      li.classList.toggle("conflict", !!t.$conflict);
      if (t.$conflict) li.dataset.conflict = "true";
      const box = document.createElement("input");
      box.type = "checkbox";
      box.checked = !!t.done;
      box.setAttribute("aria-label", `Done: ${t.text}`);
      box.addEventListener("change", () => attempt(() => db.update("todos", t.id, { done: box.checked })));
      let text;
      if (t === edited) {
        text = editing.input;
      } else {
        text = document.createElement("span");
        text.className = "text";
        text.textContent = t.text;
        text.title = "Double-click to rename";
        text.addEventListener("dblclick", () => startEdit(t));
      }
      li.append(box, text);
      const name = listId ? null : listName(t.listId);
      if (name) {
        const tag = document.createElement("span");
        tag.className = "tag";
        tag.textContent = name;
        li.append(tag);
      }
      if (t.$conflict) {
        const badge = document.createElement("span");
        badge.className = "conflict-badge";
        badge.textContent = "conflict";
        li.append(badge);
      }
      if (t !== edited) {
        const edit = document.createElement("button");
        edit.type = "button";
        edit.className = "edit";
        edit.textContent = "✎";
        edit.title = "Rename";
        edit.setAttribute("aria-label", `Rename ${t.text}`);
        edit.addEventListener("click", () => startEdit(t));
        li.append(edit);
      }
      const del = document.createElement("button");
      del.type = "button";
      del.className = "delete";
      del.textContent = "×";
      del.title = "Delete";
      del.setAttribute("aria-label", `Delete ${t.text}`);
      del.addEventListener("click", () => attempt(() => db.delete("todos", t.id)));
      li.append(del);
      if (conflict) li.append(conflictPanel(conflict));
      return li;
    }),
  );
  if (focused) {
    editing.input.focus();
    editing.input.setSelectionRange(...caret);
  }
  rendering = false;
  // Conflicts whose todo is not in the list: deleted on the server, or hidden by the list or filter.
  const others = [...conflicts].filter(([id]) => !shown.has(id));
  $("other-conflicts").hidden = others.length === 0;
  $("other-conflicts").querySelector("ul").replaceChildren(
    ...others.map(([id, c]) => {
      const li = document.createElement("li");
      li.dataset.id = id;
      li.className = "conflict";
      const text = document.createElement("span");
      text.className = "text";
      text.textContent = (theirsOf(c) || c.local || c.remote)?.text ?? short(id);
      li.append(text, conflictPanel(c));
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

// ------------------------------------------------------------ inline rename

function startEdit(t) {
  if (editing) finishEdit(true);
  const input = document.createElement("input");
  input.type = "text";
  input.className = "text-edit";
  input.value = t.text;
  input.maxLength = 200;
  input.setAttribute("aria-label", `New text for ${t.text}`);
  input.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter") finishEdit(true);
    else if (ev.key === "Escape") finishEdit(false);
  });
  input.addEventListener("blur", () => {
    if (!rendering) finishEdit(true);
  });
  editing = { id: t.id, input, original: t.text };
  renderTodos(todos);
  input.focus();
  input.select();
}

function finishEdit(save) {
  if (!editing) return;
  const { id, input, original } = editing;
  editing = null;
  const text = input.value.trim();
  if (save && text && text !== original) attempt(() => db.update("todos", id, { text }));
  renderTodos(todos);
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
  $("policy").textContent = `conflicts: ${POLICIES[POLICY]}`;
  document.body.dataset.conflicts = POLICY;
  $("offline").checked = false; // a reload starts online
  await init();
  db = await SyncStore.open({
    name: NAME,
    collections: {
      todos: { indexes: ["done", "createdAt", "listId"], conflicts: POLICY },
      lists: { indexes: ["createdAt"] },
    },
    sync: { url: SERVER, token: TOKEN, websocket: true, pollMs: 2000 },
  });
  wireEvents();
  logEvent("open", `opened database “${NAME}”, syncing with ${SERVER}; conflicts: ${POLICIES[POLICY]}`);
  initialStatus = db.status();
  onStatus(initialStatus);
  db.subscribe("lists", { orderBy: "createdAt" }, renderLists);
  // Every todo, unfiltered: the names the event log uses for documents gone by then.
  // Every todo, unfiltered: the names the event log uses for documents gone by
  // then; and a change to any may be a conflict marker set or cleared.
  db.subscribe("todos", {}, (rows) => {
    rows.forEach((t) => todoTexts.set(t.id, t.text));
    allTodos = new Map(rows.map((t) => [db.resolveId(t.id), t]));
    refreshConflicts();
  });
  watchTodos();
  $("offline").disabled = false;
  document.body.dataset.ready = "true";
}

main().catch((e) => {
  showError(e);
  document.body.dataset.ready = "error";
});

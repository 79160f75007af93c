// The demo: a todo list on the local store. Writes show at once through a
// live query; nothing here re-renders by hand after a write.
import init, { SyncStore } from "/pkg/syncstore.js";

await init();
const params = new URLSearchParams(location.search);
const db = await SyncStore.open({
  name: params.get("db") || "syncstore-demo",
  collections: { todos: { indexes: ["done", "createdAt"] } },
});

const $ = (id) => document.getElementById(id);
let filter = "all";
let stop = null;

function showError(e) {
  $("error").hidden = false;
  $("error").textContent = `${e.code || "ERROR"}: ${e.message}`;
}

async function refreshPending() {
  const n = await db.pendingCount();
  $("pending").textContent = `${n} pending`;
}

function render(rows) {
  const list = $("list");
  list.replaceChildren(
    ...rows.map((t) => {
      const li = document.createElement("li");
      li.dataset.id = t.id;
      li.className = t.done ? "done" : "";
      const box = document.createElement("input");
      box.type = "checkbox";
      box.checked = !!t.done;
      box.setAttribute("aria-label", `Done: ${t.text}`);
      box.addEventListener("change", () => db.update("todos", t.id, { done: box.checked }).catch(showError));
      const label = document.createElement("span");
      label.className = "text";
      label.textContent = t.text;
      const del = document.createElement("button");
      del.className = "delete";
      del.textContent = "×";
      del.setAttribute("aria-label", `Delete ${t.text}`);
      del.addEventListener("click", () => db.delete("todos", t.id).catch(showError));
      li.append(box, label, del);
      return li;
    }),
  );
  $("count").textContent = `${rows.length} item${rows.length === 1 ? "" : "s"}`;
  refreshPending().catch(showError);
}

function watch() {
  if (stop) stop();
  const where = filter === "all" ? {} : { done: filter === "done" };
  stop = db.subscribe("todos", { where, orderBy: "createdAt" }, render);
}

$("add").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const text = $("text").value.trim();
  if (!text) return;
  $("text").value = "";
  try {
    await db.insert("todos", { text, done: false, createdAt: Date.now() });
  } catch (e) {
    showError(e);
  }
});

for (const b of document.querySelectorAll("[data-filter]")) {
  b.addEventListener("click", () => {
    filter = b.dataset.filter;
    for (const o of document.querySelectorAll("[data-filter]")) o.classList.toggle("active", o === b);
    watch();
  });
}

watch();
document.body.dataset.ready = "true";

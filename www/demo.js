// The two-device demo page: two iframes of device.html, each on its own
// database (so they behave like two devices), and a combined event log fed
// by the devices' postMessage calls.
//
// Query parameters: server (sync server base URL), a and b (database names),
// conflicts (the todos' conflict policy of both devices: "manual", the
// default, "lastWriteWins" or "serverWins").
const params = new URLSearchParams(location.search);
const SERVER = params.get("server") || `${location.protocol}//${location.hostname}:8787`;
const OUTCOMES = {
  manual: "B, which syncs second, shows the server's version marked as a conflict, with both texts: Keep mine, Keep theirs or Keep both. The choice syncs to A.",
  lastWriteWins: "The rename made last wins on both devices, whichever device syncs first.",
  serverWins: "A's rename reaches the server first and stands; B's is dropped.",
};
let policy = Object.hasOwn(OUTCOMES, params.get("conflicts")) ? params.get("conflicts") : "manual";
const DEVICES = [
  { frame: "device-a", label: "Device A", name: params.get("a") || "demo-device-a" },
  { frame: "device-b", label: "Device B", name: params.get("b") || "demo-device-b" },
];
const MAX_LOG = 200;

const $ = (id) => document.getElementById(id);
$("server").textContent = SERVER;

const frames = new Map(); // contentWindow -> device
const log = $("log");

function stamp(at) {
  const d = new Date(at);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

function addEntry(device, { kind, text, at }) {
  const li = document.createElement("li");
  li.dataset.kind = String(kind);
  li.dataset.device = device.frame;
  const time = document.createElement("time");
  time.dateTime = new Date(at).toISOString();
  time.textContent = stamp(at);
  const who = document.createElement("span");
  who.className = `who ${device.frame}`;
  who.textContent = device.label.replace(/^Device /, "");
  who.title = `${device.label} (${device.name})`;
  const what = document.createElement("span");
  what.className = `kind kind-${kind}`;
  what.textContent = kind;
  const msg = document.createElement("span");
  msg.className = "msg";
  msg.textContent = String(text);
  li.append(time, who, what, msg);
  li.dataset.at = String(at);
  // Newest first; entries of the two devices may arrive a little out of order.
  let next = log.firstElementChild;
  while (next && Number(next.dataset.at) > at) next = next.nextElementSibling;
  log.insertBefore(li, next);
  while (log.children.length > MAX_LOG) log.lastElementChild.remove();
  $("log-empty").hidden = true;
}

window.addEventListener("message", (ev) => {
  if (ev.origin !== location.origin) return;
  const device = frames.get(ev.source);
  const msg = ev.data;
  if (!device || !msg || msg.app !== "syncstore-demo") return;
  if (msg.type === "event") addEntry(device, msg);
  else if (msg.type === "size" && Number.isFinite(msg.height)) $(device.frame).style.height = `${Math.max(msg.height, 200)}px`;
});

$("log-clear").addEventListener("click", () => {
  log.replaceChildren();
  $("log-empty").hidden = false;
});

// The iframes load once the listener is in place, so no event is missed.
function loadDevices() {
  $("policy").value = policy;
  $("hint-outcome").textContent = OUTCOMES[policy];
  for (const d of DEVICES) {
    const q = new URLSearchParams({ name: d.name, label: d.label, server: SERVER, conflicts: policy });
    const iframe = $(d.frame);
    frames.set(iframe.contentWindow, d);
    iframe.src = `/device.html?${q}`;
  }
}

// A new policy applies at open: both devices reload with it (and the page's
// address keeps it, for a reload of the page).
$("policy").addEventListener("change", () => {
  policy = $("policy").value;
  const url = new URL(location.href);
  url.searchParams.set("conflicts", policy);
  history.replaceState(null, "", url);
  loadDevices();
});

loadDevices();

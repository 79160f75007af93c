// What the bench's scripts share about headless Chromium: its command line
// and how a V8 CPU profile is summed up (run.mjs, sync.mjs through run.mjs,
// row6-diag.mjs).

// Chromium's flags: no sandbox (the bench runs as root), nothing that
// reaches the network.
export const ARGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];

// Self time of a V8 CPU profile by where the code lives.
export function categorize(profile) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map();
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i];
    self.set(id, (self.get(id) || 0) + (profile.timeDeltas[i] || 0) / 1000);
  }
  const cats = {}, natives = {}, fns = {};
  let total = 0;
  for (const [id, t] of self) {
    const { functionName: fn, url } = byId.get(id).callFrame;
    const where = `${fn || "(anonymous)"}${url ? ` ${url.split("/").pop()}` : ""}`;
    fns[where] = (fns[where] || 0) + t;
    let cat;
    if (fn === "(idle)") cat = "idle (waiting on IndexedDB)";
    else if (fn === "(garbage collector)") cat = "garbage collection";
    else if (fn === "(program)") cat = "(program): browser internals";
    else if (url.endsWith(".wasm") || url.startsWith("wasm://") || /^(\$|wasm-function)/.test(fn)) cat = "wasm";
    else if (url.includes("/pkg/snippets/")) cat = "syncstore JS helpers (src/js/glue.js)";
    else if (url.includes("/pkg/")) cat = "wasm-bindgen glue (pkg/syncstore.js)";
    else if (url.includes("/dexie/")) cat = "Dexie JS";
    else if (url) cat = "bench page JS";
    else {
      cat = "native calls (IndexedDB API, JSON, builtins)";
      natives[fn || "(anonymous)"] = (natives[fn || "(anonymous)"] || 0) + t;
    }
    cats[cat] = (cats[cat] || 0) + t;
    total += t;
  }
  const round = (o) => Object.fromEntries(Object.entries(o).sort((a, b) => b[1] - a[1]).map(([k, v]) => [k, Math.round(v)]));
  return {
    totalMs: Math.round(total),
    categories: round(cats),
    topNatives: Object.fromEntries(Object.entries(round(natives)).slice(0, 6)),
    topFunctions: Object.fromEntries(Object.entries(round(fns)).slice(0, 12)),
  };
}

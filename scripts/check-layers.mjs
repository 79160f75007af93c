// Fails when the modules of the wasm binding (src/) import each other in a
// circle. A module is a top-level `crate::x` (src/x.rs, or src/x/ with its
// files); its dependencies are the `crate::y` it names in code (`use
// crate::y`, `use crate::{y, z}`, `crate::y::f()`), comments left out.
// `node scripts/check-layers.mjs [--graph]` (--graph: print every module's
// dependencies). No dependencies beyond node.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative, sep } from "node:path";

const root = new URL("../src/", import.meta.url).pathname;

function files(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return files(path);
    return name.endsWith(".rs") ? [path] : [];
  });
}

/// The module a file belongs to: `src/x.rs` and `src/x/**` are `x`.
function moduleOf(path) {
  const first = relative(root, path).split(sep)[0];
  return first.replace(/\.rs$/, "");
}

/// Code without comments (line and block) and string literals.
function code(text) {
  return text
    .replace(/\/\*[\s\S]*?\*\//g, " ")
    .replace(/r#*"[\s\S]*?"#*/g, '""')
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\/\/.*$/gm, "");
}

/// The top-level modules a file's code names through `crate::`.
function uses(text) {
  const out = new Set();
  const src = code(text);
  for (const m of src.matchAll(/\bcrate::([a-z_][a-z0-9_]*)/g)) out.add(m[1]);
  // `use crate::{a, b::c, d::{e, f}}`: the first segment of each path.
  for (const m of src.matchAll(/\bcrate::\{/g)) {
    let depth = 0;
    let body = "";
    for (let at = m.index + m[0].length - 1; at < src.length; at++) {
      const c = src[at];
      if (c === "{") depth++;
      else if (c === "}" && --depth === 0) break;
      else if (depth === 1) body += c;
    }
    for (const part of body.split(",")) {
      const name = part.trim().match(/^([a-z_][a-z0-9_]*)/);
      if (name && name[1] !== "self") out.add(name[1]);
    }
  }
  return out;
}

const graph = new Map();
for (const path of files(root)) {
  const mod = moduleOf(path);
  if (mod === "lib") continue; // the crate root declares the modules
  const deps = graph.get(mod) ?? new Set();
  for (const dep of uses(readFileSync(path, "utf8"))) {
    if (dep !== mod) deps.add(dep);
  }
  graph.set(mod, deps);
}
for (const deps of graph.values()) {
  for (const d of [...deps]) if (!graph.has(d)) deps.delete(d); // `crate::SyncStore` etc.
}

if (process.argv.includes("--graph")) {
  for (const [mod, deps] of [...graph].sort()) {
    console.log(`${mod}: ${[...deps].sort().join(", ") || "-"}`);
  }
}

// Tarjan's strongly connected components: each one of more than one module
// is a circle.
let index = 0;
const stack = [];
const info = new Map();
const circles = [];
function visit(v) {
  info.set(v, { index, low: index, on: true });
  index++;
  stack.push(v);
  for (const w of graph.get(v)) {
    if (!info.has(w)) {
      visit(w);
      info.get(v).low = Math.min(info.get(v).low, info.get(w).low);
    } else if (info.get(w).on) {
      info.get(v).low = Math.min(info.get(v).low, info.get(w).index);
    }
  }
  if (info.get(v).low === info.get(v).index) {
    const scc = [];
    let w;
    do {
      w = stack.pop();
      info.get(w).on = false;
      scc.push(w);
    } while (w !== v);
    if (scc.length > 1) circles.push(scc);
  }
}
for (const v of [...graph.keys()].sort()) if (!info.has(v)) visit(v);

/// One shortest circle through `start` inside `scc` (breadth first).
function circle(start, scc) {
  const inside = new Set(scc);
  const prev = new Map([[start, null]]);
  const queue = [start];
  while (queue.length) {
    const v = queue.shift();
    for (const w of [...graph.get(v)].sort()) {
      if (!inside.has(w)) continue;
      if (w === start) {
        const path = [v];
        for (let p = prev.get(v); p !== null; p = prev.get(p)) path.unshift(p);
        return [...path, start];
      }
      if (!prev.has(w)) {
        prev.set(w, v);
        queue.push(w);
      }
    }
  }
  return [start];
}

if (circles.length) {
  for (const scc of circles) {
    scc.sort();
    console.error(`import circle among src/ modules: ${scc.join(", ")}`);
    for (const m of scc) console.error(`  ${circle(m, scc).join(" -> ")}`);
  }
  process.exit(1);
}
console.log(`src/: ${graph.size} modules, no import circle`);

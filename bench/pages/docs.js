// The bench documents (about 200 bytes of JSON each), shared by the local
// workloads (workloads.js), the sync page (sync.js) and run.mjs, which seeds
// the sync server with them for the initial-sync row.
const T0 = 1_700_000_000_000;

// Deterministic documents of about 200 bytes of JSON.
export function rng(seed) {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0) / 2 ** 32);
}
const WORDS = "buy milk call mom fix bug write docs plan trip pay rent walk dog read book clean desk ship release review code book flight".split(" ");
const TAGS = ["home", "work", "errand", "urgent", "later", "family"];
export function makeDocs(n, from = 0, seed = 7) {
  const r = rng(seed + from);
  const docs = new Array(n);
  for (let i = 0; i < n; i++) {
    const k = from + i;
    let text = "";
    while (text.length < 70) text += (text ? " " : "") + WORDS[(r() * WORDS.length) | 0];
    docs[i] = {
      id: "t" + String(k).padStart(6, "0"),
      text,
      done: r() < 0.3,
      priority: k % 5,
      createdAt: T0 + k * 1000,
      tags: [TAGS[k % 6], TAGS[(k * 7 + 1) % 6]],
      note: "x".repeat(20 + (k % 10)),
    };
  }
  return docs;
}

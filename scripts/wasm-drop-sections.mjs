// wasm-drop-sections.mjs IN OUT NAME...: copies a wasm module without the
// custom sections of these names (scripts/size-names.sh drops
// `target_features` and `producers`, which the stripped release build has
// not, so wasm-bindgen emits the same glue for both).
import { readFileSync, writeFileSync } from "node:fs";

const [input, output, ...drop] = process.argv.slice(2);
if (!input || !output) throw new Error("usage: wasm-drop-sections.mjs IN OUT NAME...");
const b = readFileSync(input);
if (b.readUInt32LE(0) !== 0x6d736100) throw new Error(`${input}: not a wasm module`);
const leb = (i) => {
  let r = 0, s = 0, c;
  do {
    c = b[i++];
    r += (c & 0x7f) * 2 ** s;
    s += 7;
  } while (c & 0x80);
  return [r, i];
};
const kept = [b.subarray(0, 8)];
for (let i = 8; i < b.length; ) {
  const start = i, id = b[i];
  const [size, body] = leb(i + 1);
  const end = body + size;
  if (end > b.length) throw new Error(`${input}: section at ${start} runs past the end`);
  let keep = true;
  if (id === 0) {
    const [n, p] = leb(body);
    keep = !drop.includes(b.subarray(p, p + n).toString());
  }
  if (keep) kept.push(b.subarray(start, end));
  i = end;
}
writeFileSync(output, Buffer.concat(kept));

// The packed tarball itself: its files, package.json and README.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { root, run, tarball, version } from "./lib.mjs";

const list = async () => (await run("tar", ["tzf", await tarball()])).split("\n").filter(Boolean).sort();
const read = async (path) => run("tar", ["xzOf", await tarball(), `package/${path}`]);

test("the tarball holds the package's files and nothing else", async () => {
  const files = await list();
  const snippets = files.filter((f) => f.startsWith("package/snippets/"));
  assert.equal(snippets.length, 1, `one snippet module: ${snippets}`);
  assert.match(snippets[0], /^package\/snippets\/syncstore-[0-9a-f]+\/src\/js\/glue\.js$/);
  const rest = files.filter((f) => !f.startsWith("package/snippets/"));
  assert.deepEqual(
    rest,
    ["LICENSE", "README.md", "index.d.ts", "index.js", "package.json", "react.d.ts", "react.js", "syncstore.d.ts", "syncstore.js", "syncstore_bg.wasm", "vue.d.ts", "vue.js"].map(
      (f) => `package/${f}`,
    ),
  );
  const index = await read("index.js");
  const glue = snippets[0].slice("package/".length);
  assert.ok(index.includes(`export { SyncStoreError } from "./${glue}";`), "index.js exports SyncStoreError from the snippet module");
  assert.doesNotMatch(index, /@SYNCSTORE_GLUE_JS@/);
  assert.ok((await read("syncstore.js")).includes(`'./${glue}'`), "syncstore.js imports the same snippet module");
});

test("package.json: name, Cargo's version, exports, peer dependency", async () => {
  const pkg = JSON.parse(await read("package.json"));
  assert.equal(pkg.name, "syncstore");
  assert.equal(pkg.version, await version());
  assert.equal(pkg.type, "module");
  assert.equal(pkg.license, "MIT OR Apache-2.0");
  assert.equal(pkg.sideEffects, false);
  assert.deepEqual(pkg.exports["."], { types: "./index.d.ts", default: "./index.js" });
  assert.deepEqual(pkg.exports["./react"], { types: "./react.d.ts", default: "./react.js" });
  assert.deepEqual(pkg.exports["./vue"], { types: "./vue.d.ts", default: "./vue.js" });
  assert.equal(pkg.exports["./package.json"], "./package.json");
  assert.deepEqual(pkg.peerDependencies, { react: ">=18", vue: ">=3.3" });
  assert.deepEqual(pkg.peerDependenciesMeta, { react: { optional: true }, vue: { optional: true } });
  assert.equal(pkg.dependencies, undefined, "no runtime dependency");
  const files = await list();
  const targets = Object.values(pkg.exports).flatMap((e) => (typeof e === "string" ? [e] : Object.values(e)));
  for (const t of targets) assert.ok(files.includes(`package/${t.slice(2)}`), `exports target ${t} is packed`);
});

test("README and LICENSE: quick start, API summary, both licenses", async () => {
  const readme = await read("README.md");
  assert.equal(readme, await readFile(join(root, "pkg-template", "README.md"), "utf8"));
  assert.match(readme, /npm install syncstore/);
  assert.match(readme, /<!-- quickstart:start -->[\s\S]*<!-- quickstart:end -->/);
  const calls = "open insert update replace delete batch get query count subscribe status on sync push pull divergence resolveId goOffline goOnline conflicts resolveConflict close";
  for (const call of calls.split(" ")) assert.match(readme, new RegExp("`(SyncStore\\.)?" + call + "\\("), `the API summary covers ${call}`);
  for (const word of ["SyncStoreError", "useLive", "useQuery", "useStatus", "syncstore/react", "syncstore/vue", "Svelte", "docs/protocol.md"]) assert.ok(readme.includes(word), `README mentions ${word}`);
  const license = await read("LICENSE");
  assert.match(license, /MIT License/);
  assert.match(license, /Apache License, Version 2\.0/);
});

test("the repository README shows the package's quick start", async () => {
  const block = (text) => text.match(/<!-- quickstart:start -->\s*```js\n([\s\S]*?)```\s*<!-- quickstart:end -->/)?.[1];
  const mine = block(await readFile(join(root, "README.md"), "utf8"));
  assert.ok(mine, "README.md has a marked quick start");
  assert.equal(mine, block(await readFile(join(root, "pkg-template", "README.md"), "utf8")));
});

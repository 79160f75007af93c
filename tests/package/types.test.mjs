// The package's TypeScript types, as a TypeScript user gets them: the
// tarball, react, @types/react and vue installed in a throwaway project, checked
// with tsc --strict --noEmit (skipLibCheck off, so the package's own .d.ts
// files are checked too).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { bin, copyFixture, makeApp, pinned, readmeExample, run } from "./lib.mjs";

// The generated syncstore.d.ts declares `[Symbol.dispose]()` (wasm-bindgen),
// which needs the esnext.disposable lib (or skipLibCheck).
const LIB = ["es2022", "dom", "dom.iterable", "esnext.disposable"];
const CONFIGS = {
  bundler: { module: "esnext", moduleResolution: "bundler", lib: LIB, skipLibCheck: false },
  nodenext: { module: "nodenext", moduleResolution: "nodenext", lib: LIB, skipLibCheck: false },
  // What Vite's react-ts template sets.
  // JavaScript checked against the package's types (checkJs).
  js: { module: "esnext", moduleResolution: "bundler", lib: LIB, skipLibCheck: false, allowJs: true, checkJs: true, noImplicitAny: false },
  "vite-template": { module: "esnext", moduleResolution: "bundler", lib: ["es2022", "dom", "dom.iterable"], skipLibCheck: true, verbatimModuleSyntax: true, noUnusedParameters: true },
};

let app;
before(async () => {
  app = await makeApp("types", {}, await pinned("react", "@types/react", "vue"));
  for (const f of ["api.ts", "component.tsx", "negative.ts", "typed.ts", "typed-negative.ts", "vue.ts", "plain.js"]) {
    await copyFixture(`types/${f}`, app.dir, f);
  }
  // The README's React and TypeScript examples, as written.
  for (const [name, file, lang] of [["react", "readme-react.tsx", "tsx"], ["typescript", "readme-typescript.ts", "ts"]]) {
    const example = await readmeExample(name);
    assert.equal(example.lang, lang);
    await writeFile(join(app.dir, file), example.code);
  }
  const repo = await readmeExample("react", "README.md");
  assert.equal(repo.lang, "jsx");
  await writeFile(join(app.dir, "readme-repo.jsx"), repo.code);
});
after(async () => {
  await app?.remove();
});

/** Runs tsc --strict --noEmit on `files` with config `name`: `{ code, output }`. */
async function tsc(name, files) {
  const config = { compilerOptions: { target: "es2022", jsx: "react-jsx", types: [], ...CONFIGS[name] }, files };
  const file = `tsconfig.${name}.json`;
  await writeFile(join(app.dir, file), JSON.stringify(config, null, 2));
  try {
    return { code: 0, output: await run(bin("tsc"), ["-p", file, "--strict", "--noEmit"], { cwd: app.dir, timeout: 60_000 }) };
  } catch (e) {
    if (typeof e.code !== "number") throw e; // a timeout or a missing tsc
    return { code: e.code, output: e.output };
  }
}

test("JavaScript (checkJs): the repository README's React example and a store of type any", async () => {
  const { code, output } = await tsc("js", ["readme-repo.jsx", "plain.js"]);
  assert.equal(code, 0, output);
  assert.equal(output.trim(), "");
});

for (const name of ["bundler", "nodenext", "vite-template"]) {
  test(`the whole API, the typed API, React components, the Vue composables and the README's examples type-check (${name})`, async () => {
    const { code, output } = await tsc(name, ["api.ts", "component.tsx", "typed.ts", "vue.ts", "readme-react.tsx", "readme-typescript.ts"]);
    assert.equal(code, 0, output);
    assert.equal(output.trim(), "");
  });
}

for (const file of ["negative.ts", "typed-negative.ts"]) {
  test(`misuse fails to compile, with the expected error on each marked line (${file})`, async () => {
    const source = await readFile(join(app.dir, file), "utf8");
    const want = source
      .split("\n")
      .map((l, i) => [i + 1, l.match(/\/\/ error (TS\d+)$/)?.[1]])
      .filter(([, code]) => code)
      .map(([line, code]) => `${line} ${code}`);
    assert.ok(want.length >= 5, `${file} marks its errors`);
    const { code, output } = await tsc("bundler", [file]);
    assert.notEqual(code, 0, "tsc fails");
    const at = new RegExp(`^${file.replace(".", "\\.")}\\((\\d+),\\d+\\): error (TS\\d+):`, "gm");
    const got = [...output.matchAll(at)].map((m) => `${m[1]} ${m[2]}`);
    assert.deepEqual(got, want, output);
    assert.doesNotMatch(output, /node_modules/, "no error in the package's own types");
  });
}

// suite-counts.mjs: a node --test reporter that prints, per test file, how
// many top-level tests passed, failed and were skipped, as lines
//   # suite <file> passed <n> failed <n> skipped <n>
// scripts/run-tier.sh reads them to fail a tier in which one file runs no
// test (node itself reports a file without tests as one passing "test").
export default async function* suiteCounts(source) {
  const files = new Map();
  const of = (file) => {
    if (!files.has(file)) files.set(file, { passed: 0, failed: 0, skipped: 0 });
    return files.get(file);
  };
  for await (const { type, data } of source) {
    if ((type !== "test:pass" && type !== "test:fail") || data.nesting !== 0 || !data.file) continue;
    const f = of(data.file);
    // A file with no test at all is reported as a test named after the
    // file (failing if the file itself failed to load or run).
    if (data.name === data.file) {
      if (type === "test:fail") f.failed += 1;
      continue;
    }
    if (data.skip || data.todo) f.skipped += 1;
    else if (type === "test:pass") f.passed += 1;
    else f.failed += 1;
  }
  for (const [file, c] of files) {
    yield `# suite ${file} passed ${c.passed} failed ${c.failed} skipped ${c.skipped}\n`;
  }
}

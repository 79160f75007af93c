// The demo page, served by the same code `make demo` uses.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { launch, outDir } from "./lib.mjs";

let b;
before(async () => {
  b = await launch();
});
after(async () => {
  await b?.close();
});

const items = (page) => page.$$eval("#list li .text", (els) => els.map((e) => e.textContent));

test("the local todo list: add, toggle, filter, delete, reload", async () => {
  const page = await b.page("/?db=demo-e2e");
  await page.waitForSelector("body[data-ready=true]");
  for (const t of ["milk", "bread", "eggs"]) {
    await page.fill("#text", t);
    await page.click("#add button[type=submit]");
    await page.waitForFunction((t) => [...document.querySelectorAll("#list .text")].some((e) => e.textContent === t), t);
  }
  assert.deepEqual(await items(page), ["milk", "bread", "eggs"]);
  await page.screenshot({ path: join(outDir, "demo-1-added.png") });
  await page.check('#list li:has-text("bread") input[type=checkbox]');
  await page.waitForSelector('#list li.done:has-text("bread")');
  await page.click("[data-filter=open]");
  await page.waitForFunction(() => document.querySelectorAll("#list li").length === 2);
  assert.deepEqual(await items(page), ["milk", "eggs"]);
  await page.click("[data-filter=done]");
  await page.waitForFunction(() => document.querySelectorAll("#list li").length === 1);
  assert.deepEqual(await items(page), ["bread"]);
  await page.screenshot({ path: join(outDir, "demo-2-filtered.png") });
  await page.click("[data-filter=all]");
  await page.click('#list li:has-text("milk") .delete');
  await page.waitForFunction(() => document.querySelectorAll("#list li").length === 2);
  await page.waitForFunction(() => document.querySelector("#pending").textContent === "5 pending");
  await page.reload();
  await page.waitForSelector("body[data-ready=true]");
  await page.waitForFunction(() => document.querySelectorAll("#list li").length === 2);
  assert.deepEqual(await items(page), ["bread", "eggs"], "data survives a reload");
  await page.setViewportSize({ width: 390, height: 700 });
  await page.screenshot({ path: join(outDir, "demo-3-phone.png") });
  assert.deepEqual(b.errors, [], "no console errors");
  await page.close();
});

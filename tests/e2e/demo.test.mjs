// The two-device demo page (www/index.html: two iframes of www/device.html,
// each on its own database, plus the event log), served by the same code
// `make demo` uses, against the real sync server that scripts/with-server.sh
// starts behind scripts/testctl.mjs. Every test starts from a wiped server
// (the dev token's namespace is shared by every device of the run) and fresh
// database names, and saves a screenshot of each step as
// tests/e2e/out/demo-<test>-<step>-<what>.png.
import { test, before, beforeEach, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { launch, outDir, SERVER, ctl, serverRows, until } from "./lib.mjs";

const WAIT = 20000; // the bound of every wait

let b;
before(async () => {
  b = await launch();
});
after(async () => {
  await b?.close();
});
beforeEach(async () => {
  await ctl("/wipe", "POST");
});



let n = 0;
/** Opens the demo page on fresh databases; `A` and `B` are the devices' frame locators. */
async function openDemo(t, label, { width = 1366, height = 900, conflicts } = {}) {
  n += 1;
  const tag = `${Date.now().toString(36)}${n}`;
  const names = { a: `demo-a-${tag}`, b: `demo-b-${tag}` };
  const page = await b.context.newPage();
  t.after(() => page.close()); // before the next test wipes the server
  await page.setViewportSize({ width, height });
  const q = new URLSearchParams({ server: SERVER, ...names, ...(conflicts ? { conflicts } : {}) });
  await page.goto(`${b.base}/?${q}`);
  const A = page.frameLocator("#device-a");
  const B = page.frameLocator("#device-b");
  await ready(A);
  await ready(B);
  let step = 0;
  const shot = async (name) => {
    step += 1;
    await page.screenshot({ path: join(outDir, `demo-${label}-${step}-${name}.png`), fullPage: true });
  };
  return { page, A, B, names, shot };
}

/** Waits until the device has its store open; on a timeout, says what the device shows. */
async function ready(dev) {
  try {
    await dev.locator("body[data-ready=true]").waitFor({ timeout: WAIT });
  } catch (e) {
    const state = await dev
      .locator("body")
      .evaluate((body) => `data-ready=${body.dataset.ready}; error: ${document.getElementById("error")?.textContent}; connection: ${document.getElementById("connection")?.textContent}`, null, { timeout: 2000 })
      .catch((e2) => `(unreadable: ${e2.message.split("\n")[0]})`);
    throw new Error(`the device did not open in ${WAIT} ms: ${state}`, { cause: e });
  }
}

/** The visible todos of a device, in order: "text" or "text ✓" when done. */
const visible = (dev) =>
  dev.locator("#todos li").evaluateAll((lis) =>
    lis.map((li) => li.querySelector(".text").textContent + (li.querySelector("input[type=checkbox]").checked ? " ✓" : "")),
  );
const texts = (dev) => dev.locator("#todos li .text").allTextContents();
const connection = (dev) => dev.locator("#connection").getAttribute("data-state");
const pending = async (dev) => Number(await dev.locator("#pending").getAttribute("data-count"));
const todo = (dev, text) => dev.locator("#todos li").filter({ has: dev.locator(".text", { hasText: new RegExp(`^${text}$`) }) });

async function addTodo(dev, text) {
  await dev.locator("#text").fill(text);
  await dev.locator("#add button[type=submit]").click();
  await until(`“${text}” shown on the device that added it`, async () => (await texts(dev)).includes(text), 5000);
}

async function addList(dev, name) {
  await dev.locator("#list-name").fill(name);
  await dev.locator("#add-list button[type=submit]").click();
  await until(`list “${name}” selected`, async () => (await selectedList(dev)) === name, 5000);
}
const selectedList = (dev) => dev.locator("#list-select").evaluate((s) => s.selectedOptions[0]?.textContent);
const listOptions = (dev) => dev.locator("#list-select option").allTextContents();

/** Waits until the device is live on the WebSocket with nothing queued, for 300 ms in a row
 * (so that a write just made has had the time to show in the pending count). */
async function settled(dev, what) {
  let since = null;
  await until(`${what}: websocket and 0 pending`, async () => {
    const ok = (await connection(dev)) === "websocket" && (await dev.locator("#pending").textContent()) === "0 pending";
    since = ok ? since ?? Date.now() : null;
    return ok && Date.now() - since >= 300;
  });
}

/** Renames a todo inline: its ✎ button, the new text, Enter. */
async function rename(dev, from, to) {
  await todo(dev, from).locator("button.edit").click();
  const input = dev.locator("#todos li input.text-edit");
  await input.fill(to);
  await input.press("Enter");
  await until(`“${from}” renamed “${to}”`, async () => (await texts(dev)).includes(to) && !(await texts(dev)).includes(from), 5000);
}

/** The conflicts a device shows: per todo its text, Mine and Theirs, and the buttons offered. */
const shownConflicts = (dev) =>
  dev.locator("li:has(> .conflict-panel)").evaluateAll((lis) =>
    lis.map((li) => ({
      text: li.querySelector(".text").textContent,
      inline: li.parentElement.id === "todos",
      mine: li.querySelector(".version.mine dd").textContent,
      theirs: li.querySelector(".version.theirs dd").textContent,
      buttons: [...li.querySelectorAll(".choices button")].map((b) => b.textContent),
    })),
  );
const conflictRow = (dev, text) => dev.locator("li:has(> .conflict-panel)").filter({ has: dev.locator(":scope > .text", { hasText: new RegExp(`^${text}$`) }) });

async function setOffline(dev, off) {
  if (off) await dev.locator("#offline").check();
  else await dev.locator("#offline").uncheck();
  if (off) await until("the device shows offline", async () => (await connection(dev)) === "offline", 5000);
}

test("a todo added on A shows live on B; both settle on the WebSocket with nothing pending", async (t) => {
  const { A, B, shot } = await openDemo(t, "live");
  await settled(A, "A");
  await settled(B, "B");
  await shot("opened");
  await addTodo(A, "Buy milk");
  await until("B shows A's todo", async () => (await texts(B)).includes("Buy milk"));
  await settled(A, "A");
  await settled(B, "B");
  assert.deepEqual(await visible(A), ["Buy milk"]);
  assert.deepEqual(await visible(B), ["Buy milk"]);
  // B edits, A follows.
  await todo(B, "Buy milk").locator("input[type=checkbox]").check();
  await until("A shows B's edit", async () => (await visible(A)).join() === "Buy milk ✓");
  await settled(B, "B");
  assert.match(await A.locator("#synced").textContent(), /^synced /);
  assert.equal(await A.locator("#connection").textContent(), "Live (WebSocket)");
  await shot("synced");
});

test("A offline: edits on both devices converge once A is back online", async (t) => {
  const { A, B, shot } = await openDemo(t, "offline");
  for (const text of ["alpha", "beta", "gamma"]) await addTodo(A, text);
  await until("B has A's three todos", async () => (await texts(B)).length === 3);
  await settled(A, "A");
  await settled(B, "B");

  await setOffline(A, true);
  await todo(A, "alpha").locator("input[type=checkbox]").check();
  await addTodo(A, "written offline");
  const offlineA = ["alpha ✓", "beta", "gamma", "written offline"];
  await until("A's edits show at once on A", async () => (await visible(A)).join("|") === offlineA.join("|"), 5000);
  await until("A counts its queued writes", async () => (await pending(A)) >= 2, 5000);
  assert.equal(await connection(A), "offline");
  assert.match(await A.locator("#pending").textContent(), /^\d+ pending$/);

  // B, still online, edits another todo and deletes a third.
  await todo(B, "beta").locator("input[type=checkbox]").check();
  await todo(B, "gamma").locator(".delete").click();
  await until("B shows its edits", async () => (await visible(B)).join("|") === "alpha|beta ✓", 5000);
  await until("B's edits reach the server", async () => (await serverRows("todos")).some((r) => r.deleted));
  await settled(B, "B");
  assert.deepEqual(await visible(B), ["alpha", "beta ✓"], "B has not seen A's offline edits");
  assert.deepEqual(await visible(A), offlineA, "A has not seen B's edits");
  assert.equal((await serverRows("todos")).filter((r) => r.doc?.text === "written offline").length, 0, "nothing left A while offline");
  await shot("a-offline");

  await setOffline(A, false);
  const want = ["alpha ✓", "beta ✓", "written offline"];
  await until("A and B converge", async () => {
    const [a, bb] = [await visible(A), await visible(B)];
    return a.join("|") === want.join("|") && bb.join("|") === want.join("|");
  });
  await settled(A, "A");
  await settled(B, "B");
  assert.deepEqual(await visible(A), await visible(B), "both devices show the same list");
  await shot("converged");
});

test("writes made offline survive a reload of A and reach B", async (t) => {
  const { page, A, B, names, shot } = await openDemo(t, "reload");
  for (const text of ["keep", "toggle me", "delete me"]) await addTodo(A, text);
  await until("B has A's todos", async () => (await texts(B)).length === 3);
  await settled(A, "A");

  await setOffline(A, true);
  await addTodo(A, "offline one");
  await addTodo(A, "offline two");
  await todo(A, "toggle me").locator("input[type=checkbox]").check();
  await todo(A, "delete me").locator(".delete").click();
  const want = ["keep", "toggle me ✓", "offline one", "offline two"];
  await until("A shows its offline writes", async () => (await visible(A)).join("|") === want.join("|"), 5000);
  await until("A counts its queued writes", async () => (await pending(A)) > 0, 5000);
  await shot("a-offline-writes");

  // Reload A's iframe before anything was sent.
  const frame = page.frames().find((f) => f.url().includes(`name=${names.a}`));
  assert.ok(frame, "A's frame");
  assert.deepEqual(await visible(B), ["keep", "toggle me", "delete me"], "B has none of them yet");
  await frame.goto(frame.url());
  await ready(A);
  assert.equal(await A.locator("#offline").isChecked(), false, "A starts online after the reload");
  await until("the writes reach B", async () => (await visible(B)).join("|") === want.join("|"));
  await settled(A, "A");
  await settled(B, "B");
  assert.deepEqual(await visible(A), want, "A still shows them after the reload");
  const rows = (await serverRows("todos")).filter((r) => !r.deleted).map((r) => r.doc.text).sort();
  assert.deepEqual(rows, ["keep", "offline one", "offline two", "toggle me"], "each write reached the server once");
  await shot("after-reload");
});

test("event log, lists and filters", async (t) => {
  const { page, A, B, shot } = await openDemo(t, "lists");
  const log = page.locator("#log li");

  // Lists: a todo in "Work" is hidden when "Home" is selected.
  await addList(A, "Work");
  await addTodo(A, "Write report");
  await addList(A, "Home");
  await addTodo(A, "Water plants");
  await settled(A, "A");
  // The selected list keeps its view when the server maps its temporary id.
  await until("A still shows Home's todo", async () => (await selectedList(A)) === "Home" && (await texts(A)).join() === "Water plants", 5000);
  assert.ok(!(await A.locator("#list-select").inputValue()).startsWith("tmp_"), "the selection follows the canonical id");
  await A.locator("#list-select").selectOption({ label: "All lists" });
  await addTodo(A, "No list");
  await A.locator("#list-select").selectOption({ label: "Work" });
  await until("A shows Work only", async () => (await texts(A)).join() === "Write report", 5000);
  await addTodo(A, "Prepare slides");
  await until("B has both lists", async () => (await listOptions(B)).join() === "All lists,Work,Home");
  await until("B has every todo", async () => (await texts(B)).length === 4);
  assert.deepEqual(
    await B.locator("#todos li .tag").allTextContents(),
    ["Work", "Home", "Work"],
    "All lists tags each todo with its list",
  );
  await B.locator("#list-select").selectOption({ label: "Home" });
  await until("B shows Home only", async () => (await texts(B)).join() === "Water plants", 5000);
  assert.ok(!(await texts(B)).includes("Write report"), "a Work todo is hidden under Home");
  await shot("home-list");
  await B.locator("#list-select").selectOption({ label: "Work" });
  await until("B shows Work only", async () => (await texts(B)).join() === "Write report,Prepare slides", 5000);

  // Open / Done filters.
  await B.locator("#list-select").selectOption({ label: "All lists" });
  await todo(B, "Water plants").locator("input[type=checkbox]").check();
  await A.locator("#list-select").selectOption({ label: "All lists" });
  await until("A shows all four, one done", async () => (await visible(A)).join("|") === "Write report|Water plants ✓|No list|Prepare slides");
  await A.locator("[data-filter=open]").click();
  await until("Open filter", async () => (await texts(A)).join() === "Write report,No list,Prepare slides", 5000);
  await A.locator("[data-filter=done]").click();
  await until("Done filter", async () => (await texts(A)).join() === "Water plants", 5000);
  await A.locator("[data-filter=done]").click();
  await A.locator("#list-select").selectOption({ label: "Home" });
  await until("Done and Home", async () => (await texts(A)).join() === "Water plants", 5000);
  await A.locator("#list-select").selectOption({ label: "Work" });
  await until("Done and Work: nothing", async () => (await texts(A)).length === 0, 5000);
  assert.equal(await A.locator("#empty").isVisible(), true, "an empty view says so");
  await shot("filters");

  // The event log: connection changes of B going offline and back, id remaps of A.
  await setOffline(B, true);
  await setOffline(B, false);
  await settled(B, "B");
  await until("B's connection changes in the log", async () => {
    const entries = await page.locator('#log li[data-kind=connection][data-device=device-b] .msg').allTextContents();
    return entries.some((t) => t.endsWith("→ offline")) && entries.some((t) => t.startsWith("offline →"));
  });
  await until("A's id remaps in the log", async () => {
    const entries = await page.locator('#log li[data-kind=idmap][data-device=device-a] .msg').allTextContents();
    return ["list “Work”", "todo “Write report”", "todo “Prepare slides”"].every((w) => entries.some((t) => t.startsWith(`${w}: tmp_`)));
  });
  const times = await page.locator("#log li time").evaluateAll((ts) => ts.map((t) => Date.parse(t.dateTime)));
  assert.ok(times.length >= 5 && times.length <= 200, `${times.length} entries`);
  assert.ok(times.every((t, i) => i === 0 || t <= times[i - 1]), "newest first");
  assert.match(await log.first().locator("time").textContent(), /^\d\d:\d\d:\d\d\.\d{3}$/, "timestamped");
  assert.equal(await page.locator("#log li[data-kind=error]").count(), 0, "no errors logged");
  await shot("event-log");
  // Bounded: 250 more entries leave the newest 200.
  await A.locator("body").evaluate(() => {
    for (let i = 0; i < 250; i++) parent.postMessage({ app: "syncstore-demo", type: "event", kind: "test", text: `entry ${i}`, at: Date.now() }, location.origin);
  });
  await until("the log trimmed to 200", async () => (await log.count()) === 200 && (await log.first().locator(".msg").textContent()) === "entry 249", 5000);
});

test("a conflicting edit: server wins, both devices converge, the log shows the conflict", async (t) => {
  const { page, A, B, shot } = await openDemo(t, "conflict", { conflicts: "serverWins" });
  await addTodo(A, "contested");
  await addTodo(A, "other");
  await until("B has both", async () => (await texts(B)).length === 2);
  await settled(A, "A");
  await setOffline(A, true);
  await todo(A, "contested").locator("input[type=checkbox]").check();
  await until("A counts its edit", async () => (await pending(A)) === 1, 5000);
  await todo(B, "contested").locator(".delete").click();
  await until("B's delete reaches the server", async () => (await serverRows("todos")).some((r) => r.deleted));
  await setOffline(A, false);
  await until("both converge on B's delete", async () => (await visible(A)).join() === "other" && (await visible(B)).join() === "other");
  await until("the conflict in the log", async () => (await page.locator("#log li[data-kind=conflict][data-device=device-a]").count()) === 1);
  assert.match(await page.locator("#log li[data-kind=conflict] .msg").textContent(), /^todo “contested”: deleted on the server; the local edit was dropped$/);
  await settled(A, "A");
  await shot("conflict");
});

test("manual conflicts: the same todos renamed on both devices offline; keep mine, keep theirs, keep both", async (t) => {
  const { page, A, B, shot } = await openDemo(t, "manual");
  for (const dev of [A, B]) assert.equal(await dev.locator("body").getAttribute("data-conflicts"), "manual", "manual is the demo's default");
  assert.equal(await page.locator("#policy").inputValue(), "manual");
  const start = ["milk", "bread", "eggs", "tea"];
  for (const text of start) await addTodo(A, text);
  await until("B has A's todos", async () => (await texts(B)).join() === start.join());
  await settled(A, "A");
  await settled(B, "B");

  // Inline rename: double-click opens it, Escape leaves the text as it was.
  await todo(A, "tea").locator(".text").dblclick();
  await A.locator("#todos li input.text-edit").fill("not this");
  await A.locator("#todos li input.text-edit").press("Escape");
  assert.equal(await A.locator("#todos li input.text-edit").count(), 0);
  assert.deepEqual(await texts(A), start);

  // Both offline: each renames the same three todos its own way; A deletes "tea", which B renames.
  await setOffline(A, true);
  await setOffline(B, true);
  await rename(A, "milk", "oat milk");
  await rename(A, "bread", "rye bread");
  await rename(A, "eggs", "brown eggs");
  await todo(A, "tea").locator(".delete").click();
  await rename(B, "milk", "soy milk");
  await rename(B, "bread", "white bread");
  await rename(B, "eggs", "free-range eggs");
  await rename(B, "tea", "green tea");
  const atA = ["oat milk", "rye bread", "brown eggs"];
  assert.deepEqual(await texts(A), atA);
  assert.deepEqual(await texts(B), ["soy milk", "white bread", "free-range eggs", "green tea"]);
  await until("both count their queued writes", async () => (await pending(A)) === 4 && (await pending(B)) === 4, 5000);
  await shot("both-offline");

  // A syncs first: its writes stand on the server.
  await setOffline(A, false);
  await settled(A, "A");
  await until("A's writes on the server", async () => {
    const rows = (await serverRows("todos")).filter((r) => !r.deleted).map((r) => r.doc.text);
    return rows.sort().join() === [...atA].sort().join();
  });
  assert.deepEqual(await texts(A), atA);

  // B syncs second: each of its four writes conflicts and waits for a choice;
  // meanwhile B shows the server's versions, marked.
  await setOffline(B, false);
  await settled(B, "B");
  await until("B shows four conflicts", async () => (await B.locator("#conflict-count").textContent()) === "4 conflicts");
  await until("B shows the server's texts, marked", async () => (await texts(B)).join() === atA.join() && (await B.locator("#todos li.conflict").count()) === 3);
  const keepAll = ["Keep mine", "Keep theirs", "Keep both"];
  assert.deepEqual(await shownConflicts(B), [
    // Deleted on the server: not in the list, shown above it; keeping both means nothing there.
    { text: "green tea", inline: false, mine: "green tea", theirs: "deleted", buttons: ["Keep mine", "Keep theirs"] },
    { text: "oat milk", inline: true, mine: "soy milk", theirs: "oat milk", buttons: keepAll },
    { text: "rye bread", inline: true, mine: "white bread", theirs: "rye bread", buttons: keepAll },
    { text: "brown eggs", inline: true, mine: "free-range eggs", theirs: "brown eggs", buttons: keepAll },
  ]);
  assert.equal(await B.locator("#other-conflicts").isVisible(), true);
  assert.deepEqual(await B.locator("#todos li.conflict .conflict-badge").allTextContents(), ["conflict", "conflict", "conflict"]);
  // A, which synced first, has no conflict and still shows its own versions.
  assert.equal(await A.locator("#conflict-count").isVisible(), false);
  assert.equal(await A.locator(".conflict-panel").count(), 0);
  assert.deepEqual(await texts(A), atA);
  await until("B's conflicts in the log", async () => (await page.locator("#log li[data-kind=conflict][data-device=device-b]").count()) === 4);
  const logged = await page.locator("#log li[data-kind=conflict][data-device=device-b] .msg").allTextContents();
  assert.ok(
    logged.includes("todo “oat milk”: changed here (to “soy milk”) and on the server; the server's version shows, marked, until you choose: keep mine, theirs or both"),
    logged.join("\n"),
  );
  assert.ok(logged.includes("todo “green tea”: deleted on the server, edited here; it stays deleted until you choose: keep mine, theirs"), logged.join("\n"));
  assert.equal(await page.locator("#log li[data-kind=conflict][data-device=device-a]").count(), 0);
  await B.locator("#todos li.conflict").first().scrollIntoViewIfNeeded();
  await shot("conflicts-on-b");

  // The four choices, one per todo.
  await conflictRow(B, "oat milk").getByRole("button", { name: "Keep mine" }).click();
  await until("B keeps its milk", async () => (await texts(B)).includes("soy milk"), 5000);
  await conflictRow(B, "rye bread").getByRole("button", { name: "Keep theirs" }).click();
  await until("B's bread conflict gone", async () => (await conflictRow(B, "rye bread").count()) === 0, 5000);
  await conflictRow(B, "brown eggs").getByRole("button", { name: "Keep both" }).click();
  await until("B has both eggs", async () => (await texts(B)).includes("free-range eggs"), 5000);
  await shot("three-resolved");
  await conflictRow(B, "green tea").getByRole("button", { name: "Keep mine" }).click();

  const want = ["soy milk", "rye bread", "brown eggs", "free-range eggs", "green tea"];
  const same = (a, b) => [...a].sort().join("|") === [...b].sort().join("|");
  await until("A and B converge", async () => same(await texts(A), want) && same(await texts(B), want));
  await settled(A, "A");
  await settled(B, "B");
  assert.deepEqual(await texts(A), await texts(B), "both show the same list in the same order");
  // The copy kept by "both" has the original's createdAt, so it sits next to it.
  const order = await texts(B);
  assert.equal(Math.abs(order.indexOf("brown eggs") - order.indexOf("free-range eggs")), 1, order.join());
  for (const dev of [A, B]) {
    assert.equal(await dev.locator("#todos li.conflict").count(), 0, "no todo marked any more");
    assert.equal(await dev.locator(".conflict-panel").count(), 0, "no choice left");
    assert.equal(await dev.locator("#conflict-count").isVisible(), false);
    assert.equal(await dev.locator("#other-conflicts").isVisible(), false);
  }
  const rows = (await serverRows("todos")).filter((r) => !r.deleted);
  assert.ok(same(rows.map((r) => r.doc.text), want), JSON.stringify(rows));
  assert.ok(rows.every((r) => !("$conflict" in r.doc)), "the marker never reaches the server");
  const resolved = await page.locator("#log li[data-kind=resolved][data-device=device-b] .msg").allTextContents();
  assert.deepEqual(resolved.reverse(), [
    "todo “oat milk”: kept mine, “soy milk”",
    "todo “rye bread”: kept theirs, “rye bread”",
    "todo “brown eggs”: kept both, “brown eggs” and “free-range eggs” as a new todo",
    "todo “green tea”: kept mine: “green tea” is back",
  ]);
  assert.equal(await page.locator("#log li[data-kind=error]").count(), 0, "no errors logged");
  await shot("converged");
});

test("the conflict policy selector: last write wins reloads both devices, and the later rename wins", async (t) => {
  const { page, A, B, shot } = await openDemo(t, "lww");
  await addTodo(A, "plan trip");
  await addTodo(A, "book hotel");
  await until("B has A's todos", async () => (await texts(B)).length === 2);
  await settled(A, "A");
  await settled(B, "B");
  await page.locator("#policy").selectOption("lastWriteWins");
  for (const dev of [A, B]) await dev.locator("body[data-conflicts=lastWriteWins][data-ready=true]").waitFor({ timeout: WAIT });
  assert.match(page.url(), /[?&]conflicts=lastWriteWins(&|$)/, "the page's address keeps the policy");
  assert.equal(await A.locator("#policy").textContent(), "conflicts: last write wins");
  assert.match(await page.locator("#hint-outcome").textContent(), /last wins/);
  await settled(A, "A");
  await settled(B, "B");
  assert.deepEqual(await texts(B), ["plan trip", "book hotel"], "the reload kept the data");

  // A renames first, B later; A syncs first, yet B's later rename wins on both.
  await setOffline(A, true);
  await setOffline(B, true);
  await rename(A, "plan trip", "plan trip to Rome");
  await new Promise((r) => setTimeout(r, 50));
  await rename(B, "plan trip", "plan trip to Oslo");
  await setOffline(A, false);
  await settled(A, "A");
  await setOffline(B, false);
  await until("both end with B's later rename", async () =>
    (await texts(A)).join("|") === "plan trip to Oslo|book hotel" && (await texts(B)).join("|") === "plan trip to Oslo|book hotel",
  );
  await settled(A, "A");
  await settled(B, "B");
  assert.equal(await B.locator(".conflict-panel").count(), 0, "nothing left to choose");
  await until("the conflict in the log", async () => (await page.locator("#log li[data-kind=conflict][data-device=device-b]").count()) === 1);
  assert.equal(
    await page.locator("#log li[data-kind=conflict][data-device=device-b] .msg").textContent(),
    "todo “plan trip to Rome”: changed on the server too (here: “plan trip to Oslo”); the local edit is later, so it was sent again and wins",
  );
  await shot("converged");
});

test("the server goes down: both devices say so, keep working, and converge when it is back", async (t) => {
  const { page, A, B, shot } = await openDemo(t, "outage");
  await addTodo(A, "before the outage");
  await until("B has it", async () => (await texts(B)).includes("before the outage"));
  await settled(A, "A");
  await settled(B, "B");
  const firstError = b.errors.length;
  await ctl("/stop", "POST");
  t.after(() => ctl("/start", "POST"));
  for (const [dev, what] of [[A, "A"], [B, "B"]]) {
    await until(`${what} shows the server unreachable`, async () => (await connection(dev)) === "offline" && (await dev.locator("#error").isVisible()));
    assert.match(await dev.locator("#connection").textContent(), /unreachable/);
    assert.match(await dev.locator("#error").textContent(), /NETWORK/);
  }
  await addTodo(A, "during the outage");
  await until("A counts it", async () => (await pending(A)) > 0, 5000);
  await until("the errors in the log", async () => (await page.locator("#log li[data-kind=error]").count()) >= 2);
  assert.match(await page.locator("#log li[data-kind=error] .msg").first().textContent(), /^NETWORK: /);
  await shot("server-down");
  await ctl("/start", "POST");
  await until("B gets A's write", async () => (await texts(B)).includes("during the outage"));
  await settled(A, "A");
  await settled(B, "B");
  assert.deepEqual(await visible(A), await visible(B));
  assert.equal(await A.locator("#error").isVisible(), false, "the sync error clears once the server answers");
  await shot("server-back");
  // While the server was down Chromium logged its failed requests; nothing else.
  const outage = b.errors.splice(firstError);
  const unexpected = outage.filter((e) => !/net::ERR_CONNECTION_(REFUSED|RESET|CLOSED)|net::ERR_EMPTY_RESPONSE|net::ERR_SOCKET_NOT_CONNECTED|WebSocket connection to .* failed/.test(e));
  assert.deepEqual(unexpected, [], "only failed requests were logged during the outage");
});

test("phone width: the devices stack; no console error or page error anywhere", async (t) => {
  const { page, A, B, shot } = await openDemo(t, "phone", { width: 390, height: 800 });
  await addList(A, "Errands");
  await addTodo(A, "Pick up parcel");
  await until("B shows it", async () => (await texts(B)).includes("Pick up parcel"));
  await settled(A, "A");
  await settled(B, "B");
  const box = async (sel) => page.locator(sel).boundingBox();
  const [a, bb, logBox] = [await box("#device-a"), await box("#device-b"), await box(".log-pane")];
  assert.ok(a.y + a.height <= bb.y && bb.y + bb.height <= logBox.y, "A, B and the log are stacked");
  assert.ok(a.width > 330 && a.x >= 0 && a.x + a.width <= 390, `A fills the width (${JSON.stringify(a)})`);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(overflow <= 390, `no horizontal scrolling (${overflow})`);
  const inner = await A.locator("html").evaluate((h) => h.scrollWidth <= h.clientWidth);
  assert.ok(inner, "nothing overflows inside a device");
  await shot("phone");
  await page.close();
  assert.deepEqual(b.errors, [], "no console errors and no page errors");
});

// What the pages of the Vite app and of the no-build page must report.
import assert from "node:assert/strict";
import { QUICKSTART_LIVE, QUICKSTART_QUERY } from "./lib.mjs";

const error = (code, retryable = false) => ({ instance: true, error: true, name: "SyncStoreError", code, retryable });

export const CHECKS = {
  failedInit: "offline",
  init: undefined,
  initAgain: undefined,
  defaultIsInit: true,
  sameErrorClass: true,
  invalidOptions: error("INVALID_OPTIONS"),
  isStore: true,
  unknownCollection: error("UNKNOWN_COLLECTION"),
  invalidDocument: error("INVALID_DOCUMENT"),
  invalidEvent: error("INVALID_EVENT"),
  docs: [
    "a",
    { id: "b", text: "b2", done: true },
    1,
    [
      { id: "a", text: "a", done: false },
      { id: "b", text: "b2", done: true },
    ],
  ],
  status: "offline",
  syncDisabled: error("SYNC_DISABLED"),
  closed: error("CLOSED"),
};

/**
 * Checks what the quick start printed: the query's line once, and the
 * subscription's lines, the last one (waited for, bounded) the final state.
 */
export async function checkQuickStart(logs) {
  const deadline = Date.now() + 5000;
  const last = () => logs.filter((l) => l.startsWith("open:")).at(-1);
  while (last() !== QUICKSTART_LIVE && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(logs.filter((l) => !l.startsWith("open:")), [QUICKSTART_QUERY], `the query prints ${QUICKSTART_QUERY}: ${JSON.stringify(logs)}`);
  const live = logs.filter((l) => l.startsWith("open:"));
  assert.ok(live.length >= 1, `the subscription printed: ${JSON.stringify(logs)}`);
  assert.equal(live.at(-1), QUICKSTART_LIVE, `the subscription's last call: ${JSON.stringify(logs)}`);
}

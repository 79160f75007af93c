// React hooks for syncstore (`syncstore/react`); `react` is an optional peer
// dependency of the package, needed only by this module. Every hook reads
// through `useSyncExternalStore`: a render never sees a value torn between
// two results, rendering has no side effect (the live query starts when
// React subscribes, after commit), and a server render gets the empty state
// (`undefined`) without calling the store, so without IndexedDB.
import { useMemo, useSyncExternalStore } from "react";

const EMPTY = { value: undefined };
const empty = () => EMPTY;
const noSubscribe = () => () => {};

/**
 * A live value as an external store: starts `open()` (a `db.live(...)`
 * Observable) when the first component subscribes and ends it when the
 * last one leaves. The snapshot `{ value }` or `{ error }` changes only
 * when the Observable emits.
 */
function liveStore(open) {
  let snapshot = EMPTY;
  let sub = null;
  const listeners = new Set();
  const emit = (next) => {
    snapshot = next;
    for (const l of [...listeners]) l();
  };
  return {
    subscribe(listener) {
      listeners.add(listener);
      if (sub === null) {
        sub = open().subscribe({
          next: (value) => emit({ value }),
          error: (error) => emit({ error }),
        });
      }
      return () => {
        listeners.delete(listener);
        if (listeners.size === 0 && sub !== null) {
          sub.unsubscribe();
          sub = null;
        }
      };
    },
    getSnapshot: () => snapshot,
  };
}

/**
 * A key of a query that tells Dates from strings, so an equal query passed
 * as a new object each render keeps its subscription.
 */
function queryKey(query) {
  if (query === undefined) return undefined;
  return JSON.stringify(query, function (k, v) {
    const raw = this[k];
    return raw instanceof Date ? { "\u0000date": raw.getTime() } : v;
  });
}

function useStore(store) {
  const snap = useSyncExternalStore(store === null ? noSubscribe : store.subscribe, store === null ? empty : store.getSnapshot, empty);
  // A failed live query ends; its error goes to the nearest error boundary.
  if ("error" in snap) throw snap.error;
  return snap.value;
}

/**
 * A live query: `undefined` until its first result (and always in a server
 * render), then the current result after every change that alters it.
 *
 * - `useLive(db, coll, query?)`: the rows of `db.live(coll, query)`;
 *   subscribes again when `db`, `coll` or the value of `query` change.
 * - `useLive(db, async (tx) => ..., deps?)`: what the function returns
 *   (`db.live(fn)`), run again after each write to a collection it read;
 *   subscribes again when `db` or an item of `deps` changes.
 *
 * A `db` that is `null` or `undefined` (still opening) gives `undefined`.
 * A failing query or a throwing function throws from the hook, to the
 * nearest error boundary.
 */
export function useLive(db, what, arg) {
  const fn = typeof what === "function";
  // The function form keys on `deps` (the function of the render that
  // changed them runs), the collection form on the collection and query.
  const deps = fn ? [db, fn, ...(arg ?? [])] : [db, fn, what, queryKey(arg)];
  const store = useMemo(() => (db === null || db === undefined ? null : liveStore(() => db.live(what, fn ? undefined : arg))), deps);
  return useStore(store);
}

/**
 * The rows of a live query: `useLive(db, coll, query)`, the form of the
 * first versions of this module.
 */
export function useQuery(db, coll, query) {
  return useLive(db, coll, query);
}

/**
 * `db.status()`, updated on every `status` event that changes it (a `db`
 * that is `null` or `undefined` gives `undefined`).
 */
export function useStatus(db) {
  const store = useMemo(() => (db === null || db === undefined ? null : statusStore(db)), [db]);
  return useSyncExternalStore(
    store === null ? noSubscribe : store.subscribe,
    store === null ? undefinedValue : store.getSnapshot,
    store === null ? undefinedValue : store.getSnapshot,
  );
}

const undefinedValue = () => undefined;

function statusStore(db) {
  let status;
  let text;
  // An equal status (the sync loop repeats it while offline) keeps the
  // snapshot, so it re-renders nothing.
  const set = (next) => {
    const t = JSON.stringify(next);
    if (t === text) return false;
    text = t;
    status = next;
    return true;
  };
  return {
    subscribe(listener) {
      // The status may have changed between the render and the subscription.
      if (set(db.status())) listener();
      return db.on("status", (s) => {
        if (set(s)) listener();
      });
    },
    getSnapshot() {
      if (status === undefined) set(db.status());
      return status;
    },
  };
}

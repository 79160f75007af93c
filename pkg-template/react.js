// React hooks for syncstore (`syncstore/react`); `react` is an optional peer
// dependency of the package, needed only by this module.
import { useEffect, useState } from "react";

/**
 * The rows of a live query: `undefined` until its first result, then the
 * current result after every change that alters it. Subscribes again when
 * `db`, `coll` or the JSON of `query` change, and stops on unmount. A `db`
 * that is `null` or `undefined` (still opening) gives `undefined`.
 */
export function useQuery(db, coll, query) {
  const key = query === undefined ? undefined : JSON.stringify(query);
  const [state, setState] = useState(null);
  useEffect(() => {
    if (db === null || db === undefined) return undefined;
    let live = true;
    const stop = db.subscribe(coll, key === undefined ? undefined : JSON.parse(key), (rows) => {
      if (live) setState({ db, coll, key, rows });
    });
    return () => {
      live = false;
      stop();
    };
  }, [db, coll, key]);
  // A result of an earlier db, collection or query never shows for this one.
  if (state === null || state.db !== db || state.coll !== coll || state.key !== key) return undefined;
  return state.rows;
}

/**
 * `db.status()`, updated on every `status` event that changes it (a `db`
 * that is `null` or `undefined` gives `undefined`).
 */
export function useStatus(db) {
  const [state, setState] = useState(null);
  useEffect(() => {
    if (db === null || db === undefined) return undefined;
    let live = true;
    // An equal status (the sync loop repeats it while offline) re-renders nothing.
    let last;
    const update = (status) => {
      const text = JSON.stringify(status);
      if (text === last) return;
      last = text;
      setState({ db, status });
    };
    // The status may have changed between the render and this effect.
    update(db.status());
    const off = db.on("status", (status) => {
      if (live) update(status);
    });
    return () => {
      live = false;
      off();
    };
  }, [db]);
  if (db === null || db === undefined) return undefined;
  return state !== null && state.db === db ? state.status : db.status();
}

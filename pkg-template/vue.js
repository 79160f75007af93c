// Vue 3 composables for syncstore (`syncstore/vue`); `vue` (3.3 or later)
// is an optional peer dependency of the package, needed only by this module.
// In a component they subscribe once it is mounted, so a server render
// (where nothing mounts) gets the empty state without calling the store.
// Each returns a readonly ref (a computed ref over a shallow ref: rows are
// not made deeply reactive) fed by the store; the subscription follows the
// reactive arguments and ends with the component (or effect scope).
import { computed, getCurrentInstance, getCurrentScope, onMounted, onScopeDispose, shallowRef, toValue, watch } from "vue";

/** Stops `stop` when the current component or effect scope ends. */
function onEnd(stop) {
  if (getCurrentScope()) onScopeDispose(stop);
}

/**
 * Runs `start` once the current component is mounted (never on the
 * server), or now outside a component (an effect scope, a store). A watch
 * it creates belongs to the component and stops with it.
 */
function whenMounted(start) {
  if (getCurrentInstance()) onMounted(start);
  else start();
}

/** A query's value as a key that tells Dates from strings. */
function queryKey(query) {
  if (query === undefined || query === null) return undefined;
  return JSON.stringify(query, function (k, v) {
    const raw = this[k];
    return raw instanceof Date ? { "\u0000date": raw.getTime() } : v;
  });
}

/**
 * A live query as a readonly ref: `undefined` until the first result, then
 * the current one after every change that alters it.
 *
 * - `useLive(db, coll, query?)`: the rows of `db.live(coll, query)`; `db`
 *   and `query` may be refs or getters, `coll` a ref (a function there is
 *   the function form), and a change of their value subscribes again.
 * - `useLive(db, async (tx) => ..., { deps })`: what the function returns
 *   (`db.live(fn)`), run again after each write to a collection it read, and
 *   when `db` or a source of `deps` (refs or getters) changes.
 *
 * A `db` whose value is `null` or `undefined` (still opening) gives
 * `undefined`. A failing query or a throwing function goes to `onError`
 * (the last argument's option; by default it is thrown asynchronously,
 * an uncaught error) and ends the subscription.
 */
export function useLive(db, what, arg, options) {
  const fn = typeof what === "function";
  const opts = (fn ? arg : options) ?? {};
  const value = shallowRef(undefined);
  let sub = null;
  const stop = () => {
    if (sub !== null) sub.unsubscribe();
    sub = null;
  };
  const source = fn
    ? () => [toValue(db), ...(opts.deps ?? []).map((d) => toValue(d))]
    : () => [toValue(db), toValue(what), queryKey(toValue(arg))];
  const run = () =>
    watch(
      source,
      ([store], old) => {
        // A result of the previous db never shows for this one.
        if (old !== undefined && old[0] !== store) value.value = undefined;
        stop();
        if (store === null || store === undefined) return;
        const live = fn ? store.live(what) : store.live(toValue(what), toValue(arg) ?? undefined);
        sub = live.subscribe({
          next: (v) => {
            value.value = v;
          },
          error: (e) => {
            if (typeof opts.onError === "function") opts.onError(e);
            else
              setTimeout(() => {
                throw e;
              }, 0);
          },
        });
      },
      { immediate: true },
    );
  whenMounted(run);
  onEnd(stop);
  return computed(() => value.value);
}

/** The rows of a live query: `useLive(db, coll, query)`. */
export function useQuery(db, coll, query, options) {
  return useLive(db, coll, query, options);
}

/**
 * `db.status()` as a readonly ref, updated on every `status` event that
 * changes it (`undefined` while `db`, which may be a ref or a getter, is
 * `null` or `undefined`).
 */
export function useStatus(db) {
  const status = shallowRef(undefined);
  let off = null;
  let text;
  const set = (s) => {
    // An equal status (the sync loop repeats it while offline) triggers nothing.
    const t = JSON.stringify(s);
    if (t === text) return;
    text = t;
    status.value = s;
  };
  const stop = () => {
    if (off !== null) off();
    off = null;
  };
  // The status now (held in memory: no IndexedDB read, also on the
  // server); its events once mounted.
  const initial = toValue(db);
  if (initial !== null && initial !== undefined) set(initial.status());
  whenMounted(() =>
    watch(
      () => toValue(db),
      (store) => {
        stop();
        text = undefined;
        if (store === null || store === undefined) {
          status.value = undefined;
          return;
        }
        set(store.status());
        off = store.on("status", set);
      },
      { immediate: true },
    ),
  );
  onEnd(stop);
  return computed(() => status.value);
}

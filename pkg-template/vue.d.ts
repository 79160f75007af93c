// Types of `syncstore/vue`: Vue 3 composables over a SyncStore.
import type { ComputedRef, MaybeRef, MaybeRefOrGetter, Ref, WatchSource } from "vue";
import type {
  Doc,
  LiveReader,
  Query,
  Schema,
  SyncStatus,
  SyncStore,
  TypedDoc,
  TypedLiveReader,
  TypedQuery,
  TypedSyncStore,
} from "./index.js";

/** The store a store, ref or getter `R` holds. */
export type StoreOf<R> = R extends (...args: never[]) => infer X ? X : R extends Ref<infer X> ? X : R;
/**
 * `R`, unless it holds a store typed by a schema (`SyncStore.open<S>`),
 * which takes the typed overloads only: an unknown collection of a typed
 * store must not compile through the untyped ones.
 */
export type Untyped<R> = R &
  (0 extends 1 & StoreOf<R> // any (from JavaScript): the untyped overloads
    ? unknown
    : [NonNullable<StoreOf<R>>] extends [never]
      ? unknown
      : [NonNullable<StoreOf<R>>] extends [TypedSyncStore<any>]
        ? never
        : unknown);

/** Options of `useLive` and `useQuery`. */
export interface LiveOptions {
  /**
   * Called with the error of a failing query or a throwing function (the
   * subscription has ended); without it the error is thrown
   * asynchronously (an uncaught error).
   */
  onError?: (error: unknown) => void;
}
/** Options of the function form of `useLive`. */
export interface LiveFnOptions extends LiveOptions {
  /** Refs or getters: a change of one subscribes again (runs `fn` anew). */
  deps?: WatchSource[];
}

// The untyped overloads come first, so that a store of type `any` (in
// JavaScript) takes them; `Untyped` keeps typed stores out of them.
/**
 * The rows of `db.live(coll, query)` as a readonly ref: `undefined` until
 * the first result, then the current one after every change that alters
 * it. `db` and `query` may be refs or getters, `coll` a ref (a function
 * there is the function form below); a change of their value subscribes
 * again. In a component it subscribes once mounted (never on the server)
 * and ends with it; outside one, at once and with the effect scope.
 *
 * @example
 * const done = ref(false);
 * const todos = useLive(db, "todos", () => ({ where: { done: done.value }, orderBy: "createdAt" }));
 */
export declare function useLive<R extends MaybeRefOrGetter<SyncStore | null | undefined>>(
  db: Untyped<R>,
  coll: MaybeRef<string>,
  query?: MaybeRefOrGetter<Query | undefined>,
  options?: LiveOptions,
): ComputedRef<Doc[] | undefined>;
/**
 * The rows of `db.live(coll, query)` as a readonly ref: `undefined` until
 * the first result, then the current one after every change that alters
 * it. `db` and `query` may be refs or getters, `coll` a ref (a function
 * there is the function form below); a change of their value subscribes
 * again. In a component it subscribes once mounted (never on the server)
 * and ends with it; outside one, at once and with the effect scope.
 *
 * @example
 * const done = ref(false);
 * const todos = useLive(db, "todos", () => ({ where: { done: done.value }, orderBy: "createdAt" }));
 */
export declare function useLive<S extends Schema, C extends keyof S & string>(
  db: MaybeRefOrGetter<TypedSyncStore<S> | null | undefined>,
  coll: MaybeRef<C>,
  query?: MaybeRefOrGetter<TypedQuery<S[C]> | undefined>,
  options?: LiveOptions,
): ComputedRef<TypedDoc<S[C]>[] | undefined>;
/**
 * What `fn` returns (`db.live(fn)`) as a readonly ref: `undefined` until the
 * first result, then the new result after each write to a collection `fn`
 * read through `tx`, and after a change of `db` or of a source in `deps`.
 *
 * @example
 * const open = useLive(db, async (tx) => tx.count("todos", { done: false }));
 */
export declare function useLive<T, R extends MaybeRefOrGetter<SyncStore | null | undefined> = SyncStore>(
  db: Untyped<R>,
  fn: (tx: LiveReader) => Promise<T> | T,
  options?: LiveFnOptions,
): ComputedRef<T | undefined>;
/**
 * What `fn` returns (`db.live(fn)`) as a readonly ref: `undefined` until the
 * first result, then the new result after each write to a collection `fn`
 * read through `tx`, and after a change of `db` or of a source in `deps`.
 *
 * @example
 * const open = useLive(db, async (tx) => tx.count("todos", { done: false }));
 */
export declare function useLive<S extends Schema, T>(
  db: MaybeRefOrGetter<TypedSyncStore<S> | null | undefined>,
  fn: (tx: TypedLiveReader<S>) => Promise<T> | T,
  options?: LiveFnOptions,
): ComputedRef<T | undefined>;

/** The rows of a live query: the same as `useLive(db, coll, query, options)`. */
export declare function useQuery<R extends MaybeRefOrGetter<SyncStore | null | undefined>>(
  db: Untyped<R>,
  coll: MaybeRef<string>,
  query?: MaybeRefOrGetter<Query | undefined>,
  options?: LiveOptions,
): ComputedRef<Doc[] | undefined>;
export declare function useQuery<S extends Schema, C extends keyof S & string>(
  db: MaybeRefOrGetter<TypedSyncStore<S> | null | undefined>,
  coll: MaybeRef<C>,
  query?: MaybeRefOrGetter<TypedQuery<S[C]> | undefined>,
  options?: LiveOptions,
): ComputedRef<TypedDoc<S[C]>[] | undefined>;

/**
 * `db.status()` as a readonly ref, updated on every `status` event that
 * changes it; `undefined` while `db` (a store, a ref or a getter) is `null`
 * or `undefined`.
 *
 * @example
 * const status = useStatus(db);
 * const label = computed(() => `${status.value?.connection}, ${status.value?.pending} pending`);
 */
export declare function useStatus(db: SyncStore): ComputedRef<SyncStatus>;
export declare function useStatus(db: MaybeRefOrGetter<SyncStore | null | undefined>): ComputedRef<SyncStatus | undefined>;

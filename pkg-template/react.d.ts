// Types of `syncstore/react`: React hooks over a SyncStore.
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

/**
 * `D`, unless it is a store typed by a schema (`SyncStore.open<S>`), which
 * takes the typed overloads only: an unknown collection of a typed store
 * must not compile through the untyped ones.
 */
export type Untyped<D> = D &
  (0 extends 1 & D // any (from JavaScript): the untyped overloads
    ? unknown
    : [NonNullable<D>] extends [never]
      ? unknown
      : [NonNullable<D>] extends [TypedSyncStore<any>]
        ? never
        : unknown);

// The untyped overloads come first, so that a store of type `any` (in
// JavaScript) takes them; `Untyped` keeps typed stores out of them.
/**
 * The rows of `db.live(coll, query)`: `undefined` until the first result
 * (and in a server render, which never calls the store), then the current
 * result after every change that alters it. Subscribes again when `db`,
 * `coll` or the value of `query` change (a new but equal query object each
 * render keeps the subscription). A `db` that is `null` or `undefined`
 * (still opening) gives `undefined`. A failing query throws from the hook,
 * to the nearest error boundary.
 *
 * @example
 * const open = useLive(db, "todos", { where: { done: false }, orderBy: "createdAt" });
 * if (open === undefined) return <p>Loading…</p>;
 */
export declare function useLive<D extends SyncStore | null | undefined>(
  db: Untyped<D>,
  coll: string,
  query?: Query,
): Doc[] | undefined;
/**
 * The rows of `db.live(coll, query)`: `undefined` until the first result
 * (and in a server render, which never calls the store), then the current
 * result after every change that alters it. Subscribes again when `db`,
 * `coll` or the value of `query` change (a new but equal query object each
 * render keeps the subscription). A `db` that is `null` or `undefined`
 * (still opening) gives `undefined`. A failing query throws from the hook,
 * to the nearest error boundary.
 *
 * @example
 * const open = useLive(db, "todos", { where: { done: false }, orderBy: "createdAt" });
 * if (open === undefined) return <p>Loading…</p>;
 */
export declare function useLive<S extends Schema, C extends keyof S & string>(
  db: TypedSyncStore<S> | null | undefined,
  coll: C,
  query?: TypedQuery<S[C]>,
): TypedDoc<S[C]>[] | undefined;
/**
 * What `fn` returns (`db.live(fn)`): `undefined` until the first result,
 * then the new result after each write to a collection `fn` read through
 * `tx`. Subscribes again (with the `fn` of that render) when `db` or an
 * item of `deps` changes. A throwing `fn` throws from the hook.
 *
 * @example
 * const list = useLive(db, async (tx) => {
 *   const l = await tx.get("lists", listId);
 *   return { title: l?.title, open: await tx.count("todos", { listId, done: false }) };
 * }, [listId]);
 */
export declare function useLive<T, D extends SyncStore | null | undefined = SyncStore>(
  db: Untyped<D>,
  fn: (tx: LiveReader) => Promise<T> | T,
  deps?: readonly unknown[],
): T | undefined;

/**
 * What `fn` returns (`db.live(fn)`): `undefined` until the first result,
 * then the new result after each write to a collection `fn` read through
 * `tx`. Subscribes again (with the `fn` of that render) when `db` or an
 * item of `deps` changes. A throwing `fn` throws from the hook.
 *
 * @example
 * const list = useLive(db, async (tx) => {
 *   const l = await tx.get("lists", listId);
 *   return { title: l?.title, open: await tx.count("todos", { listId, done: false }) };
 * }, [listId]);
 */
export declare function useLive<S extends Schema, T>(
  db: TypedSyncStore<S> | null | undefined,
  fn: (tx: TypedLiveReader<S>) => Promise<T> | T,
  deps?: readonly unknown[],
): T | undefined;
/**
 * The rows of a live query: the same as `useLive(db, coll, query)`.
 *
 * @example
 * const open = useQuery(db, "todos", { where: { done: false }, orderBy: "createdAt" });
 * if (open === undefined) return <p>Loading…</p>;
 */
export declare function useQuery<D extends SyncStore | null | undefined>(
  db: Untyped<D>,
  coll: string,
  query?: Query,
): Doc[] | undefined;
export declare function useQuery<S extends Schema, C extends keyof S & string>(
  db: TypedSyncStore<S> | null | undefined,
  coll: C,
  query?: TypedQuery<S[C]>,
): TypedDoc<S[C]>[] | undefined;

/**
 * `db.status()`, updated on every `status` event that changes it.
 *
 * @example
 * const { connection, pending } = useStatus(db);
 */
export declare function useStatus(db: SyncStore): SyncStatus;
export declare function useStatus(db: SyncStore | null | undefined): SyncStatus | undefined;

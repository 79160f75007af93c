// Types of `syncstore/react`: React hooks over a SyncStore.
import type { Doc, Query, Schema, SyncStatus, SyncStore, TypedDoc, TypedQuery, TypedSyncStore } from "./index.js";

/**
 * The rows of a live query (`db.subscribe`): `undefined` until its first
 * result, then the current result after every change that alters it.
 * Subscribes again when `db`, `coll` or the JSON of `query` change, and stops
 * on unmount. A `db` that is `null` or `undefined` (still opening) gives
 * `undefined`.
 *
 * @example
 * const open = useQuery(db, "todos", { where: { done: false }, orderBy: "createdAt" });
 * if (open === undefined) return <p>Loading…</p>;
 */
export declare function useQuery<S extends Schema, C extends keyof S & string>(
  db: TypedSyncStore<S> | null | undefined,
  coll: C,
  query?: TypedQuery<S[C]>,
): TypedDoc<S[C]>[] | undefined;
export declare function useQuery(
  db: SyncStore | null | undefined,
  coll: string,
  query?: Query,
): Doc[] | undefined;

/**
 * `db.status()`, updated on every `status` event that changes it.
 *
 * @example
 * const { connection, pending } = useStatus(db);
 */
export declare function useStatus(db: SyncStore): SyncStatus;
export declare function useStatus(db: SyncStore | null | undefined): SyncStatus | undefined;

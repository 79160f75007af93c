//! TypeScript types of the public API, emitted into the generated `.d.ts`.

use wasm_bindgen::prelude::*;

#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &'static str = r#"
/** Any JSON value, or a `Date` (stored and compared as an instant, returned as a `Date`). */
export type JsonValue = null | boolean | number | string | Date | JsonValue[] | { [key: string]: JsonValue };
/** A stored document: JSON fields plus its string id. */
export interface Doc { id: string; [field: string]: JsonValue; }
/** A document to insert or replace: `id` is optional on insert. */
export interface NewDoc { id?: string; [field: string]: JsonValue | undefined; }
/** A JSON merge patch: nested objects merge, `null` removes a field. */
export type Patch = { [field: string]: JsonValue | undefined };
/** A field path (`"done"`, `"meta.owner"`) or a compound index (`["listId", "createdAt"]`). */
export type IndexSpec = string | string[];
export interface CollectionOptions {
  /** Indexes to declare; queries they can serve read key ranges instead of scanning. */
  indexes?: IndexSpec[];
  /** "auto" (default) syncs; "manual" syncs on demand; "local" never leaves the device. */
  sync?: "auto" | "manual" | "local";
  /** How sync conflicts resolve (docs/conflicts.md); default "serverWins". */
  conflicts?: "serverWins" | "lastWriteWins" | "fieldMerge" | "manual" | ConflictResolver;
  /** Same-field edits under "fieldMerge": "serverWins" (default) or "lastWriteWins". */
  fallback?: "serverWins" | "lastWriteWins";
  /** Arrays of objects with an `id` merged by id: field paths, or field paths to the field that orders the result. */
  mergeById?: string[] | { [path: string]: string | null };
}
/** An unresolved conflict of a `conflicts: "manual"` collection (`db.conflicts(coll)`). */
export interface Conflict {
  coll: string;
  id: string;
  /** The local view the server refused (null: a local delete). */
  local: Doc | null;
  /** The server's document when the conflict arose (it shows meanwhile, with `$conflict: true`). */
  remote: Doc | null;
  mid: number;
  /** When (ms since the epoch). */
  at: number;
}
/** What a resolver sees. */
export interface ConflictContext {
  collection: string;
  id: string;
  /** The local view (with the refused write). */
  local: Doc | null;
  /** The server's document (null if deleted). */
  remote: Doc | null;
  /** The server's document the local write was based on, if known. */
  base: Doc | null;
}
/** Decides a conflict: a document replaces the server's, or keep one side, or both (the local one as a new document). */
export type ConflictResolver = (ctx: ConflictContext) =>
  | NewDoc | { keep: "local" | "remote" | "both" }
  | Promise<NewDoc | { keep: "local" | "remote" | "both" }>;
/** `sync` of the open options: a static `token`, a `getToken` function, or both. */
export type SyncOptions = SyncOptionsCommon & (
  | {
      /** Bearer token the server maps to a namespace (and user). */
      token: string;
      /** Asked for a new token when the server refuses `token` (it expired). */
      getToken?: () => Promise<string>;
    }
  | {
      /** Bearer token to start with; without it, `getToken` gives the first. */
      token?: string;
      /**
       * Gives a current token (e.g. a short-lived JWT from the identity
       * provider): called at start and whenever the server refuses the
       * token in use (HTTP 401, WebSocket close 4401); the request is then
       * retried once with the new token. If it throws, rejects or gives no
       * non-empty string, sync reports `UNAUTHORIZED` (`status().lastError`
       * and an `error` event) and tries again later; queued writes wait.
       *
       * @example
       * const db = await SyncStore.open({ name: "app", collections: { todos: {} },
       *   sync: { url: "https://sync.example.com", getToken: () => auth.getAccessToken() } });
       */
      getToken: () => Promise<string>;
    }
);
export interface SyncOptionsCommon {
  /** The sync server's base URL, `http://` or `https://`. */
  url: string;
  /** Receive changes over a WebSocket (default true); polling is the fallback. */
  websocket?: boolean;
  /** Polling interval in ms while no WebSocket is live (default 5000, 50 to 86400000). */
  pollMs?: number;
  /**
   * A protocol ping after this many ms without a frame on the WebSocket
   * (default 15000, 100 to 3600000); a socket silent for twice this is
   * closed as dead (half-open), polled past and reopened.
   */
  keepAliveMs?: number;
}
export interface OpenOptions {
  /** The IndexedDB database name. */
  name: string;
  collections: { [name: string]: CollectionOptions };
  /**
   * The largest document accepted, in bytes of JSON (default 256 KiB, the
   * reference server's default). Once the sync server's own limit is known,
   * documents of synced collections are also held to it.
   */
  maxDocBytes?: number;
  /** Sync with a server; without it the store is local only. */
  sync?: SyncOptions;
  /** Ask `navigator.storage.persist()` at open (not awaited). */
  persist?: boolean;
}
/** What `status()` returns and the `status` event carries. */
export interface SyncStatus {
  /**
   * "websocket": live changes stream; "connecting": the first socket (or the
   * first after a live one dropped, or after coming back online) is being set
   * up, and nothing has failed yet; "polling": the server answers HTTP;
   * "offline": it does not, the browser is offline (or no sync).
   */
  connection: "websocket" | "connecting" | "polling" | "offline";
  /**
   * Mutations not yet settled by the server; counts a write of this tab as
   * soon as it resolves, in every tab, so it equals `pendingCount()` then;
   * except that another tab's writes count once the leader took them in,
   * and a follower tab hears of entries the leader settled by a message
   * posted right after the leader's commit (until it arrives, `pending`
   * still counts them).
   */
  pending: number;
  /**
   * While a sync from the start runs (a new store's first sync, or a resync):
   * changes received so far, and how many the whole sync brings when the
   * server said so (a pull from the start tells it; a WebSocket catch-up
   * does not). `null` otherwise. A `status` event follows every page.
   */
  progress: { received: number; total: number | null } | null;
  /** When the last push was answered (ms since the epoch), or null. */
  lastPushAt: number | null;
  /** When server changes last arrived (pull or WebSocket), or null. */
  lastPullAt: number | null;
  /** The pull cursor (opaque), or null before the first pull. */
  cursor: string | null;
  /** The last sync error, or null. */
  lastError: { code: ErrorCode; message: string; retryable: boolean } | null;
  /** True in the one instance (tab) that runs sync for this database; the others show its status. */
  leader: boolean;
}
/** One changed document of a `change` event. */
export interface DocChange {
  coll: string;
  id: string;
  op: "insert" | "update" | "delete";
  /** The new document (absent for deletes). */
  doc?: Doc;
  /** `op === "delete"`. */
  deleted: boolean;
}
/**
 * Documents changed by a committed write: this instance's (`"local"`, one
 * event per call, in op order), another instance's on the same database
 * (`"tab"`) or the server's (`"remote"`).
 */
export interface ChangeEvent { origin: "local" | "tab" | "remote"; changes: DocChange[] }
/** The server assigned the canonical id `id` to the temporary id `tmp`. */
export interface IdmapEvent { type: "idmap"; tmp: string; id: string }
/** The server refused a mutation for good; its optimistic effect was rolled back (and it is kept: `db.rejected()`). */
export interface RejectedEvent {
  type: "rejected"; mid: number; coll: string; id: string; code: string; message: string;
  op: "insert" | "update" | "replace" | "delete";
  /** The document as the write left it (absent for a delete). */
  doc?: Doc;
}
/** A refused write kept for review until `dismissRejected` (`db.rejected()`). */
export interface RejectedWrite {
  mid: number; coll: string; id: string;
  op: "insert" | "update" | "replace" | "delete";
  /** The document as the write left it (absent for a delete). */
  doc?: Doc;
  code: string; message: string;
  /** When it was refused (ms since the epoch). */
  at: number;
}
/** The server did not apply a mutation because the document changed there. */
export interface ConflictEvent {
  type: "conflict"; mid: number; coll: string; id: string;
  local: Doc | null; remote: Doc | null;
  /** "remote": the server's document stands; "write": a resolving write was pushed; "both": the local one was added as a new document. */
  resolution: "remote" | "write" | "both";
  policy: "serverWins" | "lastWriteWins" | "fieldMerge" | "custom" | "manual";
}
/** One step of the data flow (`on("trace", cb)`); `at` is ms since the epoch. */
export type TraceEvent =
  | { type: "queued"; mid: number; coll: string; id: string; op: string; at: number }
  | { type: "pushed"; mid: number; coll: string; id: string; at: number }
  | { type: "applied"; mid: number; id: string; version: number; ms: number; at: number }
  | { type: "settled"; mid: number; at: number }
  | { type: "rejected"; mid: number; coll: string; id: string; code: string; at: number }
  | { type: "conflicted"; mid: number; coll: string; id: string; resolution: string; at: number }
  | { type: "remapped"; tmp: string; id: string; at: number }
  | { type: "pull"; changes: number; more: boolean; resync: boolean; cursor: string; ms: number; at: number }
  | { type: "frames"; frames: number; changes: number; at: number }
  /** Frames planned while the step before committed: written as planned, or not ("stale": another step ran, a new write waits or an answer is held since; "stored": IndexedDB held something the plan assumed absent) and taken in by an ordinary step. */
  | { type: "planned"; changes: number; written: boolean; reason?: "stale" | "stored"; at: number };
/** A queued mutation (`db.outbox()`). */
export interface OutboxEntry {
  mid: number; coll: string; id: string;
  op: "insert" | "update" | "replace" | "delete";
  doc?: Doc; patch?: Patch; base?: number | null;
  state: "pending" | "parked" | "acked" | "applied";
  /** With state "applied": the server version it made. */
  version?: number;
}
export interface SyncEvents {
  status: SyncStatus;
  change: ChangeEvent;
  idmap: IdmapEvent;
  rejected: RejectedEvent;
  conflict: ConflictEvent;
  error: SyncStoreError;
  trace: TraceEvent;
  /** Another instance upgraded (newVersion) or deleted (null) the database: this one closed itself; reload. */
  versionchange: { oldVersion: number; newVersion: number | null; message: string };
}
export type SyncEventType = keyof SyncEvents;
/** What an Observable subscriber gives: any of the three callbacks. */
export interface LiveObserver<T> {
  next?(value: T): void;
  /** The read or the function failed; the subscription has ended. */
  error?(error: unknown): void;
  /** Never called: a live query does not complete (unsubscribe ends it). */
  complete?(): void;
}
export interface LiveSubscription {
  unsubscribe(): void;
  readonly closed: boolean;
}
/**
 * `db.live(...)`: an Observable (`subscribe` with an observer or callbacks,
 * `Symbol.observable` for `rxjs.from`) and a Svelte store (`$value`, which
 * is `undefined` until the first result).
 */
export interface LiveQuery<T> {
  subscribe(observer: LiveObserver<T>): LiveSubscription;
  subscribe(next?: (value: T) => void, error?: (error: unknown) => void, complete?: () => void): LiveSubscription;
  "@@observable"(): LiveQuery<T>;
}
/** The reads a `live(fn)` function makes through `tx`; what they read is watched. */
export interface LiveReader {
  get(coll: string, id: string): Promise<Doc | undefined>;
  getMany(coll: string, ids: string[]): Promise<(Doc | undefined)[]>;
  query(coll: string, query?: Query): Promise<Doc[]>;
  count(coll: string, where?: Where): Promise<number>;
}
/** Overloads the generated class declaration cannot express (merged into it). */
export interface SyncStore {
  /** `subscribe` without an error listener: a failed run is warned on the console. */
  subscribe(coll: string, query: Query | undefined, callback: (rows: Doc[]) => void): () => void;
  /** The rows of `query`, live (as `subscribe`), as an Observable. */
  live(coll: string, query?: Query): LiveQuery<Doc[]>;
  /** What `fn` returns, run again after each write to a collection it read. */
  live<T>(fn: (tx: LiveReader) => Promise<T> | T): LiveQuery<T>;
  /** `on("status", (s) => s.connection)`: the listener gets the event type's payload. */
  on<K extends SyncEventType>(type: K, callback: (event: SyncEvents[K]) => void): () => void;
  /** All documents, in id order. */
  query(coll: string): Promise<Doc[]>;
  /** How many documents the collection holds. */
  count(coll: string): Promise<number>;
}
export type Scalar = string | number | boolean | Date;
export interface Operators {
  $eq?: JsonValue; $ne?: JsonValue; $in?: JsonValue[]; $nin?: JsonValue[];
  $gt?: Scalar; $gte?: Scalar; $lt?: Scalar; $lte?: Scalar;
  /** A string starting with this (UTF-16 code units); never another type. */
  $startsWith?: string;
  /** `true`: the field is present (also when `null`); `false`: absent. */
  $exists?: boolean;
}
/**
 * Field paths to equality values or operator objects; all must hold, and
 * of `$or` at least one branch.
 */
export interface Where {
  [path: string]: JsonValue | Operators | Where[] | undefined;
  $or?: Where[];
}
export interface Query {
  where?: Where;
  /** A field path; ties are ordered by id. */
  orderBy?: string;
  desc?: boolean;
  limit?: number;
  offset?: number;
  /**
   * Rows of a synced collection carry `$sync`: `"pending"` while they have
   * queued writes, `"conflict"` while a manual conflict is unresolved,
   * absent once settled. A subscription is called when a row's state changes.
   */
  syncState?: boolean;
}
/**
 * A schema type for `SyncStore.open<Schema>(...)` (npm package): each
 * collection's name to its documents' type (without `id`, or with
 * `id: string`). Field values are JSON values or `Date`s.
 *
 * @example
 * interface Todo { text: string; done: boolean; createdAt: Date; meta?: { owner: string } }
 * const db = await SyncStore.open<{ todos: Todo }>({ name: "app", collections: { todos: {} } });
 * const open: TypedDoc<Todo>[] = await db.query("todos", { where: { done: false } });
 */
export type Schema = { [coll: string]: object };
/** A stored document of type `T`: its fields and its string `id`. */
export type TypedDoc<T> = Omit<T, "id"> & { id: string };
/** A document of type `T` to insert or replace: `id` optional. */
export type TypedNewDoc<T> = Omit<T, "id"> & { id?: string };
/** A merge patch of `T`: any fields, nested objects partly, `null` removes an optional (or nullable) field. */
export type TypedPatch<T> = {
  [K in keyof T as K extends "id" ? never : K]?:
    | (NonNullable<T[K]> extends Date | readonly unknown[]
        ? NonNullable<T[K]>
        : NonNullable<T[K]> extends object
          ? TypedPatch<NonNullable<T[K]>>
          : NonNullable<T[K]>)
    | (undefined extends T[K] ? null : null extends T[K] ? null : never);
};
/** The operators a field of type `V` takes. */
export type TypedOperators<V> = {
  $eq?: V | null; $ne?: V | null; $in?: (V | null)[]; $nin?: (V | null)[]; $exists?: boolean;
} & (NonNullable<V> extends Scalar ? { $gt?: NonNullable<V>; $gte?: NonNullable<V>; $lt?: NonNullable<V>; $lte?: NonNullable<V> } : {})
  & (NonNullable<V> extends string ? { $startsWith?: string } : {});
/** A `where` over documents of type `T`: its fields typed; dotted paths (`"meta.owner"`) as in `Where`. */
export type TypedWhere<T> = {
  [K in keyof T & string]?: T[K] | null | TypedOperators<T[K]>;
} & {
  id?: string | TypedOperators<string>;
  $or?: TypedWhere<T>[];
} & { [path: `${string}.${string}`]: JsonValue | Operators | undefined };
/** A query over documents of type `T`. */
export interface TypedQuery<T> {
  where?: TypedWhere<T>;
  /** A field of `T`, `"id"` or a dotted path. */
  orderBy?: (keyof T & string) | "id" | `${string}.${string}`;
  desc?: boolean;
  limit?: number;
  offset?: number;
}
/** An op of `batch` on a store typed by `S`. */
export type TypedOp<S extends Schema> = {
  [C in keyof S & string]:
    | { op: "insert"; coll: C; doc: TypedNewDoc<S[C]> }
    | { op: "update"; coll: C; id: string; patch: TypedPatch<S[C]> }
    | { op: "replace"; coll: C; id: string; doc: TypedNewDoc<S[C]> }
    | { op: "delete"; coll: C; id: string };
}[keyof S & string];
/** What `SyncStore.open<S>(options)` takes: every collection of `S` declared, no other. */
export type TypedOpenOptions<S extends Schema> = Omit<OpenOptions, "collections"> & {
  collections: { [C in keyof S]: CollectionOptions };
};
/** The methods that name a collection, typed by `S` (the others as on `SyncStore`). */
export interface TypedCollections<S extends Schema> {
  insert<C extends keyof S & string>(coll: C, doc: TypedNewDoc<S[C]>): Promise<string>;
  update<C extends keyof S & string>(
    coll: C,
    id: string,
    patch: TypedPatch<S[C]> | ((doc: TypedDoc<S[C]>) => TypedPatch<S[C]> | void),
  ): Promise<void>;
  replace<C extends keyof S & string>(coll: C, id: string, doc: TypedNewDoc<S[C]>): Promise<void>;
  delete(coll: keyof S & string, id: string): Promise<void>;
  batch(ops: TypedOp<S>[]): Promise<string[]>;
  get<C extends keyof S & string>(coll: C, id: string): Promise<TypedDoc<S[C]> | undefined>;
  getMany<C extends keyof S & string>(coll: C, ids: string[]): Promise<(TypedDoc<S[C]> | undefined)[]>;
  query<C extends keyof S & string>(coll: C, query?: TypedQuery<S[C]>): Promise<TypedDoc<S[C]>[]>;
  count<C extends keyof S & string>(coll: C, where?: TypedWhere<S[C]>): Promise<number>;
  subscribe<C extends keyof S & string>(
    coll: C,
    query: TypedQuery<S[C]> | undefined,
    callback: (rows: TypedDoc<S[C]>[]) => void,
    onError?: (error: SyncStoreError) => void,
  ): () => void;
  push(coll: keyof S & string): Promise<void>;
  pull(coll: keyof S & string): Promise<void>;
  divergence(coll: keyof S & string): Promise<{ local: number; remote: number }>;
  conflicts(coll: keyof S & string): Promise<Conflict[]>;
  live<C extends keyof S & string>(coll: C, query?: TypedQuery<S[C]>): LiveQuery<TypedDoc<S[C]>[]>;
  live<T>(fn: (tx: TypedLiveReader<S>) => Promise<T> | T): LiveQuery<T>;
  resolveConflict<C extends keyof S & string>(
    coll: C,
    id: string,
    resolution: TypedNewDoc<S[C]> | { keep: "local" | "remote" | "both" },
  ): Promise<void>;
}
/** `LiveReader` of a store typed by `S`. */
export interface TypedLiveReader<S extends Schema> {
  get<C extends keyof S & string>(coll: C, id: string): Promise<TypedDoc<S[C]> | undefined>;
  getMany<C extends keyof S & string>(coll: C, ids: string[]): Promise<(TypedDoc<S[C]> | undefined)[]>;
  query<C extends keyof S & string>(coll: C, query?: TypedQuery<S[C]>): Promise<TypedDoc<S[C]>[]>;
  count<C extends keyof S & string>(coll: C, where?: TypedWhere<S[C]>): Promise<number>;
}
/** Type-only: which schema a `TypedSyncStore` has (no such property exists). */
declare const SCHEMA: unique symbol;
/** A `SyncStore` typed by the schema `S` (`SyncStore.open<S>(...)`). */
export type TypedSyncStore<S extends Schema> = Omit<SyncStore, keyof TypedCollections<S>> &
  TypedCollections<S> & { readonly [SCHEMA]: S };
/** A row of a query with `syncState: true`. */
export type SyncedDoc = Doc & { $sync?: "pending" | "conflict" };
export type Op =
  | { op: "insert"; coll: string; doc: NewDoc }
  | { op: "update"; coll: string; id: string; patch: Patch }
  | { op: "replace"; coll: string; id: string; doc: NewDoc }
  | { op: "delete"; coll: string; id: string };
/** Stable error codes of `SyncStoreError`. */
export type ErrorCode =
  | "INVALID_OPTIONS" | "INVALID_SCHEMA" | "INVALID_DOCUMENT" | "INVALID_ID" | "INVALID_PATCH"
  | "INVALID_QUERY" | "UNKNOWN_OPERATOR" | "UNKNOWN_COLLECTION" | "DOC_TOO_LARGE" | "NOT_FOUND"
  | "ALREADY_EXISTS" | "QUOTA_EXCEEDED" | "CLOSED" | "TRANSACTION_ABORTED" | "STORAGE_CLOSED"
  | "STORAGE_VERSION" | "STORAGE" | "INVALID_EVENT" | "INVALID_ARGUMENT" | "SYNC_DISABLED"
  | "NETWORK" | "UNAUTHORIZED" | "FORBIDDEN" | "CLIENT_ID_TAKEN" | "RATE_LIMITED" | "SERVER" | "PROTOCOL"
  | "RESOLVER_FAILED" | "LEADERSHIP_LOST" | "UPDATER_FAILED";
/** The error every syncstore call rejects with. */
export declare class SyncStoreError extends Error {
  readonly name: "SyncStoreError";
  readonly code: ErrorCode;
  /** Whether trying again later may succeed. */
  readonly retryable: boolean;
}
"#;

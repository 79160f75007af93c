// Types of the syncstore npm package: everything of the generated module
// (./syncstore.d.ts: SyncStore, SyncStoreError, Doc, Query, SyncStatus, ...)
// plus `initSyncStore`.
import type {
  Doc,
  InitInput,
  OpenOptions,
  Schema,
  SyncEvents,
  SyncEventType,
  SyncStore as GeneratedSyncStore,
  TypedOpenOptions,
  TypedSyncStore,
} from "./syncstore.js";

export * from "./syncstore.js";

/** A store (`SyncStore.open` resolves with one). */
export type SyncStore = GeneratedSyncStore;
/** `SyncStore` as a value: `open`, untyped or typed by a schema, and `instanceof`. */
export interface SyncStoreConstructor {
  readonly prototype: GeneratedSyncStore;
  /** `db instanceof SyncStore`, typed or not. */
  [Symbol.hasInstance](value: unknown): value is GeneratedSyncStore;
  /**
   * Opens (creating or upgrading) the store.
   *
   * @example
   * const db = await SyncStore.open({ name: "app", collections: { todos: { indexes: ["done"] } } });
   */
  open(options: OpenOptions): Promise<GeneratedSyncStore>;
  /**
   * Opens the store typed by `S` (collection name -> document type): the
   * methods naming a collection take and return its documents' type, and
   * an unknown collection or a wrong field type does not compile.
   *
   * @example
   * interface Todo { text: string; done: boolean; createdAt: Date }
   * const db = await SyncStore.open<{ todos: Todo }>({ name: "app", collections: { todos: { indexes: ["done"] } } });
   * const open = await db.query("todos", { where: { done: false }, orderBy: "createdAt" }); // TypedDoc<Todo>[]
   */
  open<S extends Schema>(options: TypedOpenOptions<S>): Promise<TypedSyncStore<S>>;
}
export declare const SyncStore: SyncStoreConstructor;

/**
 * Loads and instantiates the WebAssembly module, once. `SyncStore.open` calls
 * it, so calling it first is optional: to start the download early, or to
 * load the module from elsewhere (a URL, a `Response`, bytes or a compiled
 * `WebAssembly.Module`). Only the first call's `input` counts; a failed load
 * may be retried.
 *
 * @example
 * import { initSyncStore } from "syncstore";
 * await initSyncStore(new URL("/assets/syncstore_bg.wasm", location.href));
 */
export declare function initSyncStore(input?: InitInput | Promise<InitInput>): Promise<void>;
export default initSyncStore;

declare module "./syncstore.js" {
  // Sharper signatures than the generated ones: listeners typed by event
  // type, and the optional query of `query` and `count`.
  interface SyncStore {
    /**
     * Calls `callback` on each event of `type`; returns a function that
     * removes the listener.
     *
     * @example
     * const off = db.on("status", (s) => console.log(s.connection, s.pending));
     */
    on<K extends SyncEventType>(type: K, callback: (event: SyncEvents[K]) => void): () => void;
    /** All documents of the collection, ordered by id. */
    query(coll: string): Promise<Doc[]>;
    /** How many documents the collection holds. */
    count(coll: string): Promise<number>;
  }
}

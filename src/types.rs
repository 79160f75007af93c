//! TypeScript types of the public API, emitted into the generated `.d.ts`.

use wasm_bindgen::prelude::*;

#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &'static str = r#"
/** Any JSON value. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };
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
}
export interface OpenOptions {
  /** The IndexedDB database name. */
  name: string;
  collections: { [name: string]: CollectionOptions };
  /** The largest document accepted, in bytes of JSON (default 1 MiB). */
  maxDocBytes?: number;
}
export type Scalar = string | number | boolean;
export interface Operators {
  $eq?: JsonValue; $ne?: JsonValue; $in?: JsonValue[];
  $gt?: Scalar; $gte?: Scalar; $lt?: Scalar; $lte?: Scalar;
}
/** Field paths to equality values or operator objects; all must hold. */
export type Where = { [path: string]: JsonValue | Operators };
export interface Query {
  where?: Where;
  /** A field path; ties are ordered by id. */
  orderBy?: string;
  desc?: boolean;
  limit?: number;
  offset?: number;
}
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
  | "STORAGE_VERSION" | "STORAGE";
/** The error every syncstore call rejects with. */
export declare class SyncStoreError extends Error {
  readonly name: "SyncStoreError";
  readonly code: ErrorCode;
  /** Whether trying again later may succeed. */
  readonly retryable: boolean;
}
"#;

//! Per-document sync state: a query or subscription with
//! `{ syncState: true }` gets `$sync: "pending"` on rows with queued
//! mutations and `$sync: "conflict"` on rows with an unresolved conflict
//! (absent once settled). The state is read from the records the query
//! read anyway (their server version `v` and markers `s` and `c`, kept by
//! the write path and the sync step), so it costs no extra read, and a
//! subscription re-runs whenever a step rewrites a row's record. Without the
//! option nothing of this runs.

use crate::error::JsResult;
use crate::glue;
use js_sys::{Array, JsString};
use serde_json::Value;
use syncstore_core::schema::{Schema, SyncMode};

/// Takes `syncState` out of a query's JSON (the core's query parser does
/// not know it): true if asked for on a collection that syncs.
pub fn take(query: &mut Value, schema: &Schema, coll: &str) -> JsResult<bool> {
    let Some(v) = query.as_object_mut().and_then(|q| q.remove("syncState")) else {
        return Ok(false);
    };
    let Value::Bool(on) = v else {
        return Err(glue::make_error(
            "INVALID_QUERY",
            "query.syncState: expected a boolean",
            false,
        ));
    };
    let synced = schema
        .collections
        .get(coll)
        .is_some_and(|s| s.sync != SyncMode::Local);
    Ok(on && synced)
}

/// The result's JSON text, with the rows' sync state when `on`.
pub fn text(records: &Array, picks: Option<Vec<u32>>, on: bool) -> JsString {
    if on {
        glue::sync_docs_text(records, picks)
    } else {
        glue::docs_text(records, picks)
    }
}

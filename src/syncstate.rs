//! Per-document sync state: a query or subscription with
//! `{ syncState: true }` gets `$sync: "pending"` on rows with queued
//! mutations and `$sync: "conflict"` on rows with an unresolved conflict
//! (absent once settled). The state is read from the records the query
//! read anyway (their server version `v` and markers `s` and `c`, kept by
//! the write path and the sync step) and, for the rows whose record says
//! pending, their `_server` entries: a write that settled left its record
//! as written and put a settle marker there (plan.rs `settle_marker`), read
//! in a readonly transaction of its own after the query's. A subscription
//! re-runs whenever a step settles a write of its collection. Without the
//! option nothing of this runs.

use std::rc::Rc;

use crate::ctx::Ctx;
use crate::error::{storage, JsResult};
use crate::glue;
use crate::idb::SERVER;
use js_sys::{Array, JsString};
use serde_json::Value;
use syncstore_core::schema::{Schema, SyncMode};
use wasm_bindgen_futures::JsFuture;

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
pub async fn text(
    inner: &Rc<Ctx>,
    coll: &str,
    records: &Array,
    picks: Option<Vec<u32>>,
    on: bool,
) -> JsResult<JsString> {
    if !on {
        return Ok(glue::docs_text(records, picks));
    }
    let db = inner.db().await?;
    JsFuture::from(glue::sync_docs_text(&db, SERVER, coll, records, picks))
        .await
        .map(JsString::from)
        .map_err(|e| storage(e, "read sync state"))
}

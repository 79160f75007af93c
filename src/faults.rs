//! Storage faults: the database connection lost under the store.
//!
//! - The browser closed it (the IndexedDB `close` event: site data
//!   cleared, storage pressure, a backgrounded tab on some browsers): an
//!   `error` event `STORAGE_CLOSED` (retryable) tells the app, and the next
//!   call reopens it. If it cannot be reopened, calls reject with
//!   `STORAGE_CLOSED` (and an `error` event says so once per loss) until it
//!   can: nothing waits on a dead connection.
//! - Another instance upgrades the schema (or deletes the database): the
//!   `versionchange` is not blocked: this instance closes its connection
//!   and itself, fires `versionchange` (`{ oldVersion, newVersion }`,
//!   `newVersion` null for a delete) so the app can reload, and later calls
//!   reject with `STORAGE_VERSION`.
//!
//! A quota error while a sync step writes aborts the step's transaction:
//! nothing of it is stored (the cursor stays), the engine is rebuilt from
//! IndexedDB and the loop reports the error and tries again later (src/sync/).

use crate::db::Db;
use crate::events::Events;
use crate::glue;
use serde_json::json;
use wasm_bindgen::JsValue;

/// What `openDb`'s watcher reports (glue.js `watch`, through `Db::on_lost`).
/// True if the store must close itself (the caller closes it: store.rs).
pub fn lost(conn: &Db, events: &Events, why: &str, old: &JsValue, new: &JsValue) -> bool {
    conn.drop_connection();
    if conn.closed.get() {
        return false;
    }
    if why == "closed" {
        conn.lost.set(true);
        report(
            events,
            "the browser closed the database connection; it is reopened on next use",
        );
        return false;
    }
    let message = if why == "deleted" {
        "another instance deleted the database: reload"
    } else {
        "another instance upgraded the database schema: reload"
    };
    *conn.closed_by.borrow_mut() = Some(glue::make_error("STORAGE_VERSION", message, false));
    events.emit(
        "versionchange",
        &crate::idb::to_js(&json!({
            "oldVersion": old.as_f64(),
            "newVersion": new.as_f64(),
            "message": message,
        })),
    );
    true
}

/// A call could not reopen a connection the browser closed: `STORAGE_CLOSED`.
pub fn reopen_failed(conn: &Db, events: &Events, e: &JsValue) -> JsValue {
    let why = js_sys::Reflect::get(e, &"message".into())
        .ok()
        .and_then(|m| m.as_string())
        .unwrap_or_default();
    let message = format!("the database connection was closed and cannot be reopened: {why}");
    if conn.lost.replace(false) {
        report(events, &message);
    }
    glue::make_error("STORAGE_CLOSED", &message, true)
}

fn report(events: &Events, message: &str) {
    events.emit_value(
        "error",
        &json!({"code": "STORAGE_CLOSED", "message": message, "retryable": true}),
    );
}

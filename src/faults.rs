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

use crate::glue;
use crate::store::Inner;
use serde_json::json;
use std::rc::Rc;
use wasm_bindgen::JsValue;

/// What `openDb`'s watcher reports (glue.js `watch`).
pub fn lost(inner: &Rc<Inner>, why: &str, old: &JsValue, new: &JsValue) {
    inner.drop_connection();
    if inner.closed.get() {
        return;
    }
    if why == "closed" {
        inner.lost.set(true);
        report(
            inner,
            "the browser closed the database connection; it is reopened on next use",
        );
        return;
    }
    let message = if why == "deleted" {
        "another instance deleted the database: reload"
    } else {
        "another instance upgraded the database schema: reload"
    };
    *inner.closed_by.borrow_mut() = Some(glue::make_error("STORAGE_VERSION", message, false));
    inner.events.emit(
        "versionchange",
        &crate::idb::to_js(&json!({
            "oldVersion": old.as_f64(),
            "newVersion": new.as_f64(),
            "message": message,
        })),
    );
    inner.shut();
}

/// A call could not reopen a connection the browser closed: `STORAGE_CLOSED`.
pub fn reopen_failed(inner: &Inner, e: &JsValue) -> JsValue {
    let why = js_sys::Reflect::get(e, &"message".into())
        .ok()
        .and_then(|m| m.as_string())
        .unwrap_or_default();
    let message = format!("the database connection was closed and cannot be reopened: {why}");
    if inner.lost.replace(false) {
        report(inner, &message);
    }
    glue::make_error("STORAGE_CLOSED", &message, true)
}

fn report(inner: &Inner, message: &str) {
    inner.events.emit_value(
        "error",
        &json!({"code": "STORAGE_CLOSED", "message": message, "retryable": true}),
    );
}

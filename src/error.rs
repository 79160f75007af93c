//! Errors as JS sees them: a `SyncStoreError` (an `Error` subclass) with a
//! stable `code`, a message and `retryable`.

use crate::glue;
use js_sys::Promise;
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use syncstore_core::CoreError;
use wasm_bindgen::JsValue;

/// Every binding error is a JS `SyncStoreError` value.
pub type JsResult<T> = Result<T, JsValue>;

/// A future the crate turns into a promise, boxed: every promise it makes
/// goes through [`promise`], so `future_to_promise` has one instance (its
/// state machine is otherwise built again for each future type, ~1.6 KB of
/// wasm each, issue 19); `future_to_promise` boxes its task anyway, this
/// adds one allocation per call.
pub type BoxedJob = Pin<Box<dyn Future<Output = JsResult<JsValue>>>>;

/// `f` run as a promise: it resolves with `f`'s value or rejects with its error.
pub fn promise(f: BoxedJob) -> Promise {
    wasm_bindgen_futures::future_to_promise(f)
}

pub fn core(e: CoreError) -> JsValue {
    glue::make_error(e.code(), &e.to_string(), false)
}

pub fn closed() -> JsValue {
    glue::make_error("CLOSED", "the store is closed", false)
}

pub fn storage(e: JsValue, what: &str) -> JsValue {
    glue::storage_error(&e, what)
}

/// The `SyncStoreError` an error value stands for.
pub fn error_js(v: &Value) -> JsValue {
    glue::make_error(
        v.get("code").and_then(Value::as_str).unwrap_or("STORAGE"),
        v.get("message").and_then(Value::as_str).unwrap_or(""),
        v.get("retryable").and_then(Value::as_bool).unwrap_or(true),
    )
}

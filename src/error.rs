//! Errors as JS sees them: a `SyncStoreError` (an `Error` subclass) with a
//! stable `code`, a message and `retryable`.

use crate::glue;
use serde_json::Value;
use syncstore_core::CoreError;
use wasm_bindgen::JsValue;

/// Every binding error is a JS `SyncStoreError` value.
pub type JsResult<T> = Result<T, JsValue>;

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

//! Errors as JS sees them: a `SyncStoreError` (an `Error` subclass) with a
//! stable `code`, a message and `retryable`.

use crate::glue;
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

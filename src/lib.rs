//! syncstore: a local-first data layer for the web.
//!
//! The browser module: a thin `#[wasm_bindgen]` API over the sans-IO engine
//! in `syncstore-core`. Its modules depend on each other one way (no import
//! circle: `scripts/check-layers.mjs`, docs/architecture.md "Layers of the
//! binding"):
//!
//! - [`store`]: the `SyncStore` JS API (where a call's input is validated)
//!   and the wiring of the parts below.
//! - services: `writes` (the write path, one transaction per call),
//!   `query` (the query path), [`sync`] (the sync loop: engine, transports
//!   ([`net`]) and IndexedDB), [`tabs`] (one sync leader per database across
//!   tabs), [`syncstate`] (rows' `$sync` state, `{ syncState: true }`),
//!   [`rejected`] (rejected writes kept for review), [`changes`] (`change`
//!   events), [`trace`] (the data-flow trace, `on("trace")`), [`faults`]
//!   (the database connection lost under the store).
//! - `ctx`: what the services share (`Ctx`).
//! - storage and channel: `db` (the connection), [`idb`] (the IndexedDB
//!   adapter: layout, key ranges, requests), [`live`] (subscriptions and the
//!   cross-tab channel), [`events`] (`db.on(...)` listeners).
//! - [`error`]: `SyncStoreError` with stable codes; `glue`: the JS helpers.

pub mod changes;
mod ctx;
mod db;
pub mod error;
pub mod events;
pub mod faults;
mod glue;
pub mod idb;
pub mod live;
pub mod net;
mod query;
pub mod rejected;
pub mod store;
pub mod sync;
pub mod syncstate;
pub mod tabs;
pub mod trace;
mod types;
mod writes;

pub use store::SyncStore;
use wasm_bindgen::prelude::*;

#[wasm_bindgen(start)]
fn start() {
    console_error_panic_hook::set_once();
}

/// The `SyncStoreError` class, for `instanceof` checks.
#[wasm_bindgen(js_name = SyncStoreErrorClass, unchecked_return_type = "typeof SyncStoreError")]
pub fn sync_store_error_class() -> JsValue {
    glue::error_class()
}

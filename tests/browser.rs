//! Browser tests: the scenarios in `tests/browser/suite.js` run against the
//! real API and real IndexedDB in headless Chromium and Firefox
//! (`make test-browser`). Each Rust test runs one scenario.
#![cfg(target_arch = "wasm32")]

use syncstore::SyncStore;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{future_to_promise, JsFuture};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen(module = "/tests/browser/suite.js")]
extern "C" {
    #[wasm_bindgen(catch)]
    fn scenario(
        name: &str,
        open: &js_sys::Function,
        error_class: &JsValue,
    ) -> Result<js_sys::Promise, JsValue>;
}

async fn run(name: &str) {
    let open = Closure::<dyn Fn(JsValue) -> js_sys::Promise>::new(|opts: JsValue| {
        future_to_promise(async move { SyncStore::open(opts).await.map(JsValue::from) })
    });
    let p = scenario(
        name,
        open.as_ref().unchecked_ref(),
        &syncstore::sync_store_error_class(),
    )
    .expect("scenario exists");
    if let Err(e) = JsFuture::from(p).await {
        let msg = js_sys::Reflect::get(&e, &"stack".into())
            .ok()
            .and_then(|s| s.as_string())
            .unwrap_or_else(|| format!("{e:?}"));
        panic!("scenario {name} failed: {msg}");
    }
}

macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {
        $(
            #[wasm_bindgen_test]
            async fn $name() {
                run(stringify!($name)).await;
            }
        )*
    };
}

scenarios!(
    insert_get_update_replace_delete,
    temp_ids_are_unique_and_marked,
    batch_is_atomic_across_collections,
    batch_with_duplicate_id_writes_nothing,
    outbox_counts_pending_mutations,
    query_operators_and_nested_paths,
    indexed_and_scanned_queries_agree,
    compound_index_order_limit_offset,
    count_matches_query,
    subscribe_delivers_initial_and_changes,
    subscribe_ignores_unrelated_writes,
    subscribe_coalesces_one_tick,
    subscribe_across_instances_via_broadcast_channel,
    throwing_listener_does_not_break_store,
    schema_upgrade_keeps_data_and_backfills_indexes,
    bad_documents_are_rejected_and_nothing_written,
    bad_arguments_are_typed_errors,
    bad_schemas_are_rejected,
    closed_store_rejects_calls,
);

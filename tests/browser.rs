//! Browser tests: the scenarios in `tests/browser/suite.js` (the local
//! store) and `tests/browser/sync.js` (devices syncing through the real
//! server) run against the real API and real IndexedDB in headless Chromium
//! and Firefox (`make test-browser`). Each Rust test runs one scenario.
#![cfg(target_arch = "wasm32")]

use syncstore::SyncStore;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{future_to_promise, JsFuture};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen(module = "/tests/browser/suite.js")]
extern "C" {
    /// Every scenario `suite.js` defines.
    #[wasm_bindgen(thread_local_v2, js_name = names)]
    static SUITE_NAMES: js_sys::Array;

    #[wasm_bindgen(catch)]
    fn scenario(
        name: &str,
        open: &js_sys::Function,
        error_class: &JsValue,
    ) -> Result<js_sys::Promise, JsValue>;
}

#[wasm_bindgen(module = "/tests/browser/sync.js")]
extern "C" {
    /// Every scenario `sync.js` defines.
    #[wasm_bindgen(thread_local_v2, js_name = syncNames)]
    static SYNC_NAMES: js_sys::Array;

    #[wasm_bindgen(catch, js_name = syncScenario)]
    fn sync_scenario(
        name: &str,
        open: &js_sys::Function,
        error_class: &JsValue,
        server: &str,
        ctl: &str,
    ) -> Result<js_sys::Promise, JsValue>;
}

#[wasm_bindgen(module = "/tests/browser/review.js")]
extern "C" {
    /// Every scenario `review.js` defines.
    #[wasm_bindgen(thread_local_v2, js_name = reviewNames)]
    static REVIEW_NAMES: js_sys::Array;

    #[wasm_bindgen(catch, js_name = reviewScenario)]
    fn review_scenario(
        name: &str,
        open: &js_sys::Function,
        error_class: &JsValue,
        server: &str,
        ctl: &str,
    ) -> Result<js_sys::Promise, JsValue>;
}

// No JS module of its own: each `module = ...` file is one more snippet the
// page fetches in parallel from the runner's server (tiny_http 0.12), whose
// task pool can leave a fifth connection's request unserved while its four
// threads sit on idle keep-alive connections (a lost wake-up in
// `TaskPool::spawn`); the page then stays at "Loading scripts...", and the
// runner, blocked in WebDriver's navigation, never reaches its own timeout.
// The crate has four (glue.js, suite.js, sync.js, review.js): keep it so.
#[wasm_bindgen(module = "/tests/browser/suite.js")]
extern "C" {
    #[wasm_bindgen(catch, js_name = aheadCheck)]
    fn ahead_check() -> Result<js_sys::Promise, JsValue>;
}

/// The check that guards a page planned ahead (glue.js `applyIfAbsent`,
/// which `suite.js` imports from the crate's own copy of glue.js) writes a
/// page only over nothing.
#[wasm_bindgen_test]
async fn a_page_planned_ahead_is_written_only_over_nothing() {
    settle(
        "a_page_planned_ahead_is_written_only_over_nothing",
        ahead_check(),
    )
    .await;
}

/// The sync server's proxy and its control API (`scripts/with-server.sh`).
const SERVER: &str = match option_env!("SYNCSTORE_TEST_SERVER") {
    Some(s) => s,
    None => "http://127.0.0.1:18787",
};
const CTL: &str = match option_env!("SYNCSTORE_TEST_CTL") {
    Some(s) => s,
    None => "http://127.0.0.1:18786",
};

fn opener() -> Closure<dyn Fn(JsValue) -> js_sys::Promise> {
    Closure::new(|opts: JsValue| {
        future_to_promise(async move { SyncStore::open(opts).await.map(JsValue::from) })
    })
}

async fn settle(name: &str, p: Result<js_sys::Promise, JsValue>) {
    let p = p.expect("scenario exists");
    if let Err(e) = JsFuture::from(p).await {
        // Firefox's `stack` leaves the message out.
        let field = |k: &str| {
            js_sys::Reflect::get(&e, &k.into())
                .ok()
                .and_then(|s| s.as_string())
        };
        let msg = match (field("message"), field("stack")) {
            (Some(m), Some(s)) if !s.contains(&m) => format!("{m}\n{s}"),
            (_, Some(s)) => s,
            (Some(m), None) => m,
            (None, None) => format!("{e:?}"),
        };
        panic!("scenario {name} failed: {msg}");
    }
}

type ServerScenario =
    fn(&str, &js_sys::Function, &JsValue, &str, &str) -> Result<js_sys::Promise, JsValue>;

/// Runs a scenario of a suite that talks to the test server.
async fn run_with_server(name: &str, scenario: ServerScenario) {
    let open = opener();
    let class = syncstore::sync_store_error_class();
    settle(
        name,
        scenario(name, open.as_ref().unchecked_ref(), &class, SERVER, CTL),
    )
    .await;
}

async fn run_sync(name: &str) {
    run_with_server(name, sync_scenario).await;
}

async fn run_review(name: &str) {
    run_with_server(name, review_scenario).await;
}

async fn run(name: &str) {
    let open = opener();
    let class = syncstore::sync_store_error_class();
    settle(name, scenario(name, open.as_ref().unchecked_ref(), &class)).await;
}

macro_rules! scenarios {
    ($runner:ident, $list:ident: $($name:ident),* $(,)?) => {
        const $list: &[&str] = &[$(stringify!($name)),*];
        $(
            #[wasm_bindgen_test]
            async fn $name() {
                $runner(stringify!($name)).await;
            }
        )*
    };
}

/// A scenario written in JS but missing from the lists below would never
/// run: the lists and the JS suites must name the same scenarios.
fn same_scenarios(file: &str, js: &js_sys::Array, rust: &[&str]) {
    let mut js: Vec<String> = js.iter().map(|v| v.as_string().unwrap()).collect();
    let mut rust: Vec<String> = rust.iter().map(|s| s.to_string()).collect();
    js.sort();
    rust.sort();
    let missing: Vec<_> = js.iter().filter(|n| !rust.contains(n)).collect();
    let unknown: Vec<_> = rust.iter().filter(|n| !js.contains(n)).collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "{file}: scenarios not registered in tests/browser.rs: {missing:?}; \
         registered but not in {file}: {unknown:?}"
    );
}

#[wasm_bindgen_test]
fn every_js_scenario_is_registered() {
    SUITE_NAMES.with(|js| same_scenarios("suite.js", js, LOCAL));
    SYNC_NAMES.with(|js| same_scenarios("sync.js", js, SYNC));
    REVIEW_NAMES.with(|js| same_scenarios("review.js", js, REVIEW));
}

scenarios!(run, LOCAL:
    insert_get_update_replace_delete,
    temp_ids_are_unique_and_marked,
    batch_is_atomic_across_collections,
    batch_with_duplicate_id_writes_nothing,
    outbox_counts_pending_mutations,
    query_operators_and_nested_paths,
    indexed_and_scanned_queries_agree,
    compound_index_order_limit_offset,
    or_prefix_exists_nin_indexed_and_scanned,
    live_queries_follow_the_new_operators,
    get_many_reads_ids_in_order,
    update_functions_read_and_write_in_one_transaction,
    dates_round_trip_and_compare_as_instants,
    live_functions_rerun_on_writes_to_what_they_read,
    count_matches_query,
    subscribe_delivers_initial_and_changes,
    subscribe_ignores_unrelated_writes,
    subscribe_coalesces_one_tick,
    subscribe_across_instances_via_broadcast_channel,
    throwing_listener_does_not_break_store,
    desc_queries_agree_with_and_without_get_all_options,
    live_limited_window_follows_every_kind_of_write,
    live_window_with_other_instances_and_throwing_listeners,
    schema_upgrade_keeps_data_and_backfills_indexes,
    bad_documents_are_rejected_and_nothing_written,
    bad_arguments_are_typed_errors,
    where_keys_starting_with_dollar_must_be_known_operators,
    bad_schemas_are_rejected,
    corrupt_records_are_storage_errors,
    a_write_whose_transaction_is_aborted_is_transaction_aborted,
    closed_store_rejects_calls,
);

// Two or more stores as devices against the real server (tests/browser/sync.js).
scenarios!(run_sync, SYNC:
    sync_options_status_and_events_are_checked,
    devices_converge_after_interleaved_writes,
    a_burst_of_awaited_writes_is_pushed_while_it_lasts_and_settles_after,
    taking_in_a_lone_write_holds_no_collection,
    a_follow_up_edit_is_not_stored_twice,
    an_edit_after_a_no_op_edit_settled_is_based_on_the_server_version,
    a_streak_of_writes_is_taken_in_a_few_steps,
    a_settled_write_re_runs_only_live_queries_that_show_sync_state,
    offline_writes_arrive_once_after_the_server_returns,
    server_killed_in_the_middle_of_a_push_loses_and_duplicates_nothing,
    temporary_ids_are_remapped_with_queued_updates_and_deletes,
    websocket_dropped_and_restored_misses_no_change,
    a_half_open_websocket_is_detected_by_the_keep_alive,
    an_outage_of_503s_ends_with_the_first_answer_of_the_server,
    resync_after_the_server_lost_its_data_keeps_pending_writes,
    a_settled_write_is_not_written_again,
    a_server_copy_stored_by_an_earlier_version_is_still_read,
    a_malformed_outbox_entry_is_dropped_and_the_rest_is_pushed,
    browser_offline_and_online_events_pause_and_resume_sync,
    go_offline_while_the_sync_loop_starts_holds,
    a_sync_loop_whose_start_failed_is_started_again,
    polling_only_mode_never_opens_a_websocket,
    local_collections_never_reach_the_server,
    manual_collections_sync_only_on_demand,
    one_leader_per_database_followers_write_and_forward,
    a_read_only_user_sees_the_data_and_its_writes_are_rejected,
    a_document_over_the_server_limit_is_refused_locally,
    get_token_refreshes_a_token_expiring_mid_session,
    get_token_failures_are_unauthorized_and_lose_nothing,
    a_refused_token_is_unauthorized_through_the_store,
    pulled_documents_are_stored_once_and_edits_keep_the_server_state,
    batched_writes_queue_as_one_record_in_mid_order,
    conflicts_server_wins_by_default,
    conflicts_last_write_wins,
    conflicts_field_merge_nested_and_by_id,
    conflicts_custom_resolver,
    conflicts_resolver_that_throws_falls_back_to_the_server,
    conflicts_keep_both,
    conflicts_manual_resolution,
    first_sync_reports_its_progress_page_by_page,
    a_first_sync_planned_ahead_keeps_writes_made_while_it_streams,
    rate_limited_through_the_store_and_its_retry_after_is_honoured,
    a_503_with_retry_after_is_server_and_its_wait_is_honoured,
    another_user_on_the_same_database_is_client_id_taken,
    a_malformed_answer_is_protocol_through_the_store,
    change_events_reach_a_listener_registered_at_run_time,
    conflict_resolvers_returning_promises_keeps_and_bad_documents,
    a_manual_conflict_resolved_with_a_document,
    followers_forward_push_and_pull_of_manual_collections,
    a_pull_whose_own_step_meets_a_take_over_is_leadership_lost,
    a_loop_fenced_off_by_a_newer_leader_term_stops_quietly_and_leads_again,
    prefix_answers_are_followed_by_the_rest_in_order,
    update_functions_sync_their_result,
    dates_written_on_one_device_come_back_as_dates_on_another,
);

// Issue 14: change events, sync state, rejected writes, trace, storage faults (tests/browser/review.js).
scenarios!(run_review, REVIEW:
    change_events_carry_the_op_and_the_document,
    status_pending_equals_the_outbox_once_a_write_resolved,
    sync_state_rows_follow_a_push_and_a_manual_conflict,
    rejected_writes_are_kept_until_dismissed_across_a_reload,
    the_trace_shows_an_insert_queued_pushed_applied_settled,
    a_database_closed_by_the_browser_is_reopened_or_fails_fast,
    calls_made_together_after_a_close_reopen_one_connection,
    a_newer_schema_in_another_tab_closes_this_instance_cleanly,
    a_quota_error_during_a_pull_keeps_the_cursor_and_retries,
    open_with_persist_asks_for_persistent_storage,
);

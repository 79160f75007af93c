//! Retention (issue 17), on either store: results and temporary-id
//! mappings kept for a client's last N mids only; tombstones older than the
//! horizon compacted; a cursor from before them answered with a resync,
//! after which the client has the right state.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use syncstore_server::store::Retention;

#[tokio::test]
async fn old_results_and_tombstones_go_and_an_old_cursor_resyncs() {
    let store = open_store_with(
        ":memory:",
        Retention {
            results_per_client: 3,
            tombstone_horizon: Duration::ZERO,
        },
    );
    let s = Server::start_store(
        store.clone(),
        test_config(test_limits()),
        syncstore_server::app,
    )
    .await;
    s.push_ok(
        TOKEN_A,
        "w",
        json!([
            insert(1, "t", "a", json!({"n": 1})),
            insert(2, "t", "b", json!({"n": 2}))
        ]),
    )
    .await;
    let (_, old_cursor, _) = s.pull_all(TOKEN_A, "old", "0").await;

    // Results: only the last 3 mids of a client are kept.
    let first = s
        .push_ok(
            TOKEN_A,
            "r",
            json!([
                insert(1, "t", "tmp_early", json!({})),
                insert(2, "t", "r2", json!({}))
            ]),
        )
        .await;
    let late = json!([
        insert(3, "t", "r3", json!({})),
        insert(4, "t", "tmp_late", json!({}))
    ]);
    let answered = s.push_ok(TOKEN_A, "r", late.clone()).await;
    assert_eq!(
        s.push_ok(TOKEN_A, "r", late).await,
        answered,
        "kept: the same answer"
    );
    let again = s
        .push_ok(
            TOKEN_A,
            "r",
            json!([insert(1, "t", "tmp_early", json!({}))]),
        )
        .await;
    assert_eq!(again["results"][0]["status"], "rejected", "{again}");
    assert_eq!(again["results"][0]["code"], "STALE_MUTATION_ID");
    assert_ne!(first["results"][0], again["results"][0]);
    // The early temporary id is forgotten too; the late one still maps.
    let later = s
        .push_ok(
            TOKEN_A,
            "r",
            json!([
                update(5, "t", "tmp_early", json!({"x": 1}), None),
                update(6, "t", "tmp_late", json!({"x": 1}), None),
            ]),
        )
        .await;
    assert_eq!(later["results"][0]["status"], "conflict", "{later}");
    assert_eq!(later["results"][1]["status"], "applied", "{later}");

    // Tombstones: delete a, wait past the horizon, compact.
    s.push_ok(
        TOKEN_A,
        "w",
        json!([{"mid": 3, "coll": "t", "op": "delete", "id": "a"}]),
    )
    .await;
    let (_, recent_cursor, _) = s.pull_all(TOKEN_A, "recent", "0").await;
    // changed_at has a resolution of one second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let st = store.clone();
    let compacted = tokio::task::spawn_blocking(move || st.compact("ns-a"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(compacted, 1);
    let st = store.clone();
    let again = tokio::task::spawn_blocking(move || st.compact("ns-a"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again, 0);

    // A cursor from before the tombstone cannot be served: resync...
    let (status, body) = s.pull(TOKEN_A, "old", &old_cursor, 100).await;
    assert_eq!(status, 200);
    assert_eq!(body["resync"], true, "{body}");
    // ...over WebSocket too.
    let (mut ws, catch_up, _) = ws_hello(&s.ws_url, TOKEN_A, "old", Some(&old_cursor)).await;
    let (all, _, _) = s.pull_all(TOKEN_A, "old", "0").await;
    let ids = |c: &[serde_json::Value]| {
        let mut v: Vec<String> = c
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    };
    // ...and from the start the client gets the right state: no `a`.
    assert_eq!(ids(&catch_up), ids(&all));
    assert!(!ids(&all).contains(&"a".to_string()));
    assert!(ids(&all).contains(&"b".to_string()));
    assert!(all.iter().all(|c| c["op"] == "put"));
    // A cursor after the tombstone is still served.
    let (_, body) = s.pull(TOKEN_A, "recent", &recent_cursor, 100).await;
    assert_eq!(body["resync"], false, "{body}");
    drop(ws.close(None).await);
    s.stop().await;
}

//! The server under abuse (issue 15): panics, connection limits, shutdown
//! deadline, backpressure, clientId ownership, fairness between namespaces.
//! Every network wait is bounded; speed figures are printed, and asserted
//! only as generous correctness bounds.

mod common;

use std::time::Duration;

use axum::routing::get;
use common::*;
use serde_json::json;

#[tokio::test]
async fn a_handler_panic_answers_500_and_the_server_keeps_serving() {
    // Test build only: a route that panics, added to the real router.
    let s = Server::start_router(":memory:", test_limits(), |state| {
        syncstore_server::app(state).route(
            "/test/panic",
            get(|| async {
                if true {
                    panic!("injected by the test");
                }
                ""
            }),
        )
    })
    .await;
    for _ in 0..3 {
        let resp = client().get(s.url("/test/panic")).send().await.unwrap();
        let (st, body) = status_json(resp).await;
        assert_eq!(st, 500);
        assert_eq!(body["error"]["code"], "INTERNAL");
        assert!(
            !body.to_string().contains("injected"),
            "no internals: {body}"
        );
    }
    assert!(s.healthy().await);
    s.push_ok(TOKEN_A, "c", json!([insert(1, "t", "a", json!({}))]))
        .await;
    tokio::time::timeout(Duration::from_secs(10), s.stop())
        .await
        .unwrap();
}

#[test]
fn the_binary_refuses_out_of_range_options_with_a_clear_error() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_syncstore-server"))
        .args(["--listen", "127.0.0.1:0", "--db", ":memory:", "--dev"])
        .args(["--pushes-per-second", "1e-300"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--pushes-per-second must be between 0.001 and"),
        "{err}"
    );
}

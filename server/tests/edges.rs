//! Server behaviour no other test produced (issue 20): a skipped mid
//! answered `STALE_MUTATION_ID` on the SQLite path, binary frames refused,
//! the hello timeout, `--cors-origin` and the exposed Retry-After.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn a_mid_the_client_skipped_is_answered_stale_and_not_stored() {
    let s = Server::start().await;
    let coll = "edges";
    // mid 3 first: the client skipped 1 and 2.
    let r = s
        .push_ok(
            TOKEN_A,
            "skipper",
            json!([insert(3, coll, "a", json!({"n": 3}))]),
        )
        .await;
    assert_eq!(r["results"][0]["status"], "applied");
    assert_eq!(r["lastMutationId"], 3);
    let r = s
        .push_ok(
            TOKEN_A,
            "skipper",
            json!([insert(2, coll, "b", json!({"n": 2}))]),
        )
        .await;
    assert_eq!(r["results"][0]["status"], "rejected");
    assert_eq!(r["results"][0]["code"], "STALE_MUTATION_ID");
    assert_eq!(r["lastMutationId"], 3);
    let (docs, _, _) = s.pull_all(TOKEN_A, "reader", "0").await;
    assert!(docs.iter().any(|c| c["id"] == "a"), "{docs:?}");
    assert!(
        docs.iter().all(|c| c["id"] != "b"),
        "the stale mutation was not applied: {docs:?}"
    );
    // Asked again, it is refused again (no result was stored for it).
    let r = s
        .push_ok(
            TOKEN_A,
            "skipper",
            json!([insert(2, coll, "b", json!({"n": 2}))]),
        )
        .await;
    assert_eq!(r["results"][0]["code"], "STALE_MUTATION_ID");
    s.stop().await;
}

#[tokio::test]
async fn binary_frames_are_refused() {
    let s = Server::start().await;
    // As the hello: the socket is closed as a bad hello.
    let mut ws = ws_connect(&s.url("/v1/ws").replacen("http://", "ws://", 1), None)
        .await
        .unwrap();
    ws.send_binary().await;
    let f = ws_next_or_close(&mut ws)
        .await
        .expect("an error frame first");
    assert_eq!(
        (f["type"].as_str(), f["code"].as_str()),
        (Some("error"), Some("BAD_HELLO"))
    );
    assert_eq!(ws_next_or_close(&mut ws).await, Err(Some(4400)));
    // After the hello: an error frame, and the session goes on.
    let (mut ws, _, _) = ws_hello(
        &s.url("/v1/ws").replacen("http://", "ws://", 1),
        TOKEN_A,
        "bin",
        None,
    )
    .await;
    ws.send_binary().await;
    let f = ws_next(&mut ws).await.expect("an error frame");
    assert_eq!(f["type"], "error", "{f}");
    assert_eq!(f["code"], "INVALID_JSON");
    ws_send(&mut ws, json!({"type": "ping"})).await;
    let f = ws_next(&mut ws).await.expect("still open");
    assert_eq!(f["type"], "pong");
    s.stop().await;
}

#[tokio::test]
async fn a_socket_without_hello_is_closed_at_the_hello_timeout() {
    let limits = syncstore_server::config::Limits {
        ws_hello_timeout: Duration::from_millis(300),
        ..test_limits()
    };
    let s = Server::start_with(":memory:", limits).await;
    let mut ws = ws_connect(&s.url("/v1/ws").replacen("http://", "ws://", 1), None)
        .await
        .unwrap();
    // Nothing sent: told why, then closed as a bad hello (within the
    // test's hang guard).
    let f = ws_next_or_close(&mut ws)
        .await
        .expect("an error frame first");
    assert_eq!(f["code"], "BAD_HELLO");
    assert!(
        f["message"].as_str().unwrap().contains("hello timeout"),
        "{f}"
    );
    assert_eq!(ws_next_or_close(&mut ws).await, Err(Some(4400)));
    s.stop().await;
}

trait SendBinary {
    async fn send_binary(&mut self);
}

impl SendBinary for Ws {
    async fn send_binary(&mut self) {
        use futures_util::SinkExt;
        self.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    }
}

#[tokio::test]
async fn cors_origins_are_restricted_and_retry_after_is_exposed() {
    let s = Server::start_args(&["--token", "t:ns", "--cors-origin", "https://app.example"]).await;
    let preflight = |origin: &'static str| {
        client()
            .request(reqwest::Method::OPTIONS, s.url("/v1/push"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type",
            )
            .send()
    };
    let ok = preflight("https://app.example").await.unwrap();
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let other = preflight("https://evil.example").await.unwrap();
    assert!(
        other.headers().get("access-control-allow-origin").is_none(),
        "another origin is not allowed: {:?}",
        other.headers()
    );
    // A browser may read Retry-After of a cross-origin answer.
    let resp = client()
        .post(s.url("/v1/push"))
        .header("origin", "https://app.example")
        .bearer_auth("t")
        .json(&json!({"clientId": "c", "mutations": []}))
        .send()
        .await
        .unwrap();
    let exposed = resp.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(exposed.contains("retry-after"), "{exposed}");
    s.stop().await;
}

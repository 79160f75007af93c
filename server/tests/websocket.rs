//! `/v1/ws` over a real socket: catch-up, live delivery, reconnect, pushes,
//! isolation, keep-alive, lag.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

fn ids(changes: &[Value]) -> Vec<String> {
    changes
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn live_delivery_then_reconnect_from_cursor_misses_nothing() {
    let s = Server::start().await;
    s.push_ok(TOKEN_A, "w", json!([insert(1, "t", "before", json!({}))]))
        .await;
    let (mut ws, caught_up, synced) = ws_hello(&s.ws_url, TOKEN_A, "r", Some("0")).await;
    assert_eq!(ids(&caught_up), ["before"]);
    assert_eq!(synced["lastMutationId"], 0);

    // Live: each commit arrives as it commits, with a cursor.
    s.push_ok(
        TOKEN_A,
        "w",
        json!([insert(2, "t", "live1", json!({"n": 1}))]),
    )
    .await;
    s.push_ok(
        TOKEN_A,
        "w",
        json!([
            update(3, "t", "live1", json!({"n": 2}), None),
            insert(4, "t", "live2", json!({}))
        ]),
    )
    .await;
    let live = ws_collect(&mut ws, 3).await;
    assert_eq!(ids(&live), ["live1", "live1", "live2"]);
    assert_eq!(live[1]["doc"]["n"], 2);
    let mut all = caught_up.clone();
    all.extend(live.clone());
    assert_increasing(&seqs(&all));

    // Remember the cursor of the last frame, disconnect, miss some commits.
    let (_, cursor, _) = s.pull_all(TOKEN_A, "r", "0").await;
    drop(ws);
    s.push_ok(
        TOKEN_A,
        "w",
        json!([
            insert(5, "t", "offline1", json!({})),
            insert(6, "t", "offline2", json!({}))
        ]),
    )
    .await;
    let (mut ws, caught_up, _) = ws_hello(&s.ws_url, TOKEN_A, "r", Some(&cursor)).await;
    assert_eq!(
        ids(&caught_up),
        ["offline1", "offline2"],
        "exactly what was missed"
    );
    s.push_ok(TOKEN_A, "w", json!([insert(7, "t", "after", json!({}))]))
        .await;
    let live = ws_collect(&mut ws, 1).await;
    assert_eq!(ids(&live), ["after"]);
    s.stop().await;
}

#[tokio::test]
async fn no_gap_and_no_duplicate_across_the_catch_up_boundary() {
    let s = Arc::new(Server::start().await);
    // Pushes 1..=30 before the hello, 31..=40 racing with it, 41..=60 once
    // its catch-up has arrived: the boundary falls among 31..=40 wherever
    // the race puts it, and there is both a catch-up and a live part.
    const N: u64 = 60;
    let (before_tx, before_rx) = tokio::sync::oneshot::channel::<()>();
    let (race_tx, race_rx) = tokio::sync::oneshot::channel::<()>();
    let (live_tx, live_rx) = tokio::sync::oneshot::channel::<()>();
    let pusher = {
        let s = s.clone();
        tokio::spawn(async move {
            let gates = [(30, Some(before_tx)), (40, None), (N, None)];
            let mut waits = [race_rx, live_rx].into_iter();
            let mut mid = 1;
            for (upto, done) in gates {
                while mid <= upto {
                    s.push_ok(
                        TOKEN_A,
                        "w",
                        json!([insert(mid, "t", &format!("d{mid:03}"), json!({}))]),
                    )
                    .await;
                    mid += 1;
                }
                if let Some(done) = done {
                    done.send(()).unwrap();
                }
                if let Some(wait) = waits.next() {
                    wait.await.unwrap();
                }
            }
        })
    };
    before_rx.await.unwrap();
    race_tx.send(()).unwrap();
    let (mut ws, mut got, _) = ws_hello(&s.ws_url, TOKEN_A, "r", None).await;
    live_tx.send(()).unwrap();
    assert!(
        (30..=40).contains(&got.len()),
        "connected mid-way: the catch-up has the 30 pushed before and at most the 10 racing ({})",
        got.len()
    );
    let remaining = N as usize - got.len();
    got.extend(ws_collect(&mut ws, remaining).await);
    tokio::time::timeout(WAIT, pusher).await.unwrap().unwrap();
    assert_increasing(&seqs(&got));
    let expected: Vec<String> = (1..=N).map(|m| format!("d{m:03}")).collect();
    assert_eq!(ids(&got), expected);
    // And nothing more arrives.
    s.push_ok(TOKEN_A, "w", json!([insert(N + 1, "t", "last", json!({}))]))
        .await;
    assert_eq!(ids(&ws_collect(&mut ws, 1).await), ["last"]);
}

#[tokio::test]
async fn push_over_the_socket_is_answered_like_http() {
    let s = Server::start().await;
    let (mut ws, _, _) = ws_hello(&s.ws_url, TOKEN_A, "sock", None).await;
    ws_send(&mut ws, json!({"type": "push", "rid": "r1", "mutations": [insert(1, "t", "tmp_x", json!({"v": 1}))]})).await;
    let mut result = None;
    let mut changes = Vec::new();
    for _ in 0..10 {
        let f = ws_next(&mut ws).await.unwrap();
        match f["type"].as_str().unwrap() {
            "pushResult" => result = Some(f),
            "changes" => changes.extend(f["changes"].as_array().unwrap().iter().cloned()),
            other => panic!("unexpected {other}"),
        }
        if result.is_some() && !changes.is_empty() {
            break;
        }
    }
    let result = result.unwrap();
    assert_eq!(result["rid"], "r1");
    assert_eq!(result["results"][0]["status"], "applied");
    assert_eq!(result["lastMutationId"], 1);
    let id = result["idMap"]["tmp_x"].clone();
    assert_eq!(changes[0]["id"], id);
    // Replaying over HTTP gives the same answer (the same client id).
    let r = s
        .push_ok(
            TOKEN_A,
            "sock",
            json!([insert(1, "t", "tmp_x", json!({"v": 1}))]),
        )
        .await;
    assert_eq!(r["results"], result["results"]);
    // Bad frames are answered with errors, the socket stays usable.
    ws_send(
        &mut ws,
        json!({"type": "push", "rid": "r2", "mutations": [{"mid": "one"}]}),
    )
    .await;
    let f = ws_next(&mut ws).await.unwrap();
    assert_eq!(
        (f["type"].clone(), f["rid"].clone()),
        (json!("error"), Value::Null)
    );
    assert_eq!(f["code"], "INVALID_FIELD");
    ws_send(&mut ws, json!({"type": "push", "rid": "r3", "mutations": [{"mid": 0, "coll": "t", "op": "delete", "id": "x"}]})).await;
    let f = ws_next(&mut ws).await.unwrap();
    assert_eq!(
        (f["type"].clone(), f["rid"].clone(), f["code"].clone()),
        (json!("error"), json!("r3"), json!("INVALID_FIELD"))
    );
    ws.send_text("not json").await;
    assert_eq!(ws_next(&mut ws).await.unwrap()["code"], "INVALID_JSON");
    ws_send(&mut ws, json!({"type": "ping"})).await;
    assert_eq!(ws_next(&mut ws).await.unwrap()["type"], "pong");
    s.stop().await;
}

trait SendText {
    async fn send_text(&mut self, t: &str);
}
impl SendText for Ws {
    async fn send_text(&mut self, t: &str) {
        use futures_util::SinkExt;
        self.send(tokio_tungstenite::tungstenite::Message::text(t.to_string()))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn namespaces_are_isolated_over_websocket() {
    let s = Server::start().await;
    s.push_ok(TOKEN_A, "w", json!([insert(1, "t", "a-old", json!({}))]))
        .await;
    let (mut wa, ca, _) = ws_hello(&s.ws_url, TOKEN_A, "ra", None).await;
    let (mut wb, cb, _) = ws_hello(&s.ws_url, TOKEN_B, "rb", None).await;
    assert_eq!(ids(&ca), ["a-old"]);
    assert!(cb.is_empty(), "B's catch-up has none of A's docs");
    s.push_ok(TOKEN_A, "w", json!([insert(2, "t", "a-new", json!({}))]))
        .await;
    s.push_ok(TOKEN_B, "w", json!([insert(1, "t", "b-new", json!({}))]))
        .await;
    assert_eq!(ids(&ws_collect(&mut wa, 1).await), ["a-new"]);
    assert_eq!(
        ids(&ws_collect(&mut wb, 1).await),
        ["b-new"],
        "B gets its own, not A's"
    );
    // B pushing over its socket cannot touch A's doc.
    ws_send(
        &mut wb,
        json!({"type": "push", "mutations": [update(2, "t", "a-new", json!({"x": 1}), None)]}),
    )
    .await;
    let f = ws_next(&mut wb).await.unwrap();
    assert_eq!(f["results"][0]["status"], "conflict");
    assert_eq!(f["results"][0]["doc"], Value::Null);
    // A header token and a hello token for another namespace: refused.
    let mut w = ws_connect(&s.ws_url, Some(TOKEN_A)).await.unwrap();
    ws_send(
        &mut w,
        json!({"type": "hello", "clientId": "x", "token": TOKEN_B}),
    )
    .await;
    let f = ws_next_or_close(&mut w).await.unwrap();
    assert_eq!(f["code"], "UNAUTHORIZED");
    assert_eq!(ws_next_or_close(&mut w).await.unwrap_err(), Some(4401));
    s.stop().await;
}

#[tokio::test]
async fn websocket_auth() {
    let s = Server::start().await;
    // Bad token in the header or query: 401 before upgrading.
    for (url, header) in [
        (s.ws_url.clone(), Some("nope")),
        (format!("{}?token=nope", s.ws_url), None),
    ] {
        match ws_connect(&url, header).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status(), 401)
            }
            other => panic!("expected 401, got {other:?}"),
        }
    }
    // Good token in the query or header: hello without token works.
    for (url, header) in [
        (format!("{}?token={TOKEN_A}", s.ws_url), None),
        (s.ws_url.clone(), Some(TOKEN_A)),
    ] {
        let mut w = ws_connect(&url, header).await.unwrap();
        ws_send(&mut w, json!({"type": "hello", "clientId": "c"})).await;
        assert_eq!(ws_next(&mut w).await.unwrap()["type"], "synced");
    }
    // No token anywhere, or a bad one in the hello: error frame then close 4401.
    for hello in [
        json!({"type": "hello", "clientId": "c"}),
        json!({"type": "hello", "clientId": "c", "token": "nope"}),
    ] {
        let mut w = ws_connect(&s.ws_url, None).await.unwrap();
        ws_send(&mut w, hello).await;
        assert_eq!(
            ws_next_or_close(&mut w).await.unwrap()["code"],
            "UNAUTHORIZED"
        );
        assert_eq!(ws_next_or_close(&mut w).await.unwrap_err(), Some(4401));
    }
    // A first frame that is not a hello: close 4400.
    let mut w = ws_connect(&s.ws_url, Some(TOKEN_A)).await.unwrap();
    ws_send(&mut w, json!({"type": "push", "mutations": []})).await;
    assert_eq!(ws_next_or_close(&mut w).await.unwrap()["code"], "BAD_HELLO");
    assert_eq!(ws_next_or_close(&mut w).await.unwrap_err(), Some(4400));
    // Plain GET on /v1/ws: 400 JSON.
    let (st, b) = status_json(client().get(s.url("/v1/ws")).send().await.unwrap()).await;
    assert_eq!(
        (st, b["error"]["code"].clone()),
        (400, json!("NOT_WEBSOCKET"))
    );
    s.stop().await;
}

#[tokio::test]
async fn bad_hello_cursor_resyncs_from_the_start() {
    let s = Server::start().await;
    s.push_ok(
        TOKEN_A,
        "w",
        json!([
            insert(1, "t", "a", json!({})),
            insert(2, "t", "b", json!({}))
        ]),
    )
    .await;
    let mut w = ws_connect(&s.ws_url, None).await.unwrap();
    ws_send(
        &mut w,
        json!({"type": "hello", "clientId": "w", "token": TOKEN_A, "cursor": "bogus"}),
    )
    .await;
    let f = ws_next(&mut w).await.unwrap();
    assert_eq!(f, json!({"type": "resync", "cursor": "0"}));
    let f = ws_next(&mut w).await.unwrap();
    assert_eq!(f["type"], "changes");
    assert_eq!(ids(f["changes"].as_array().unwrap()), ["a", "b"]);
    let f = ws_next(&mut w).await.unwrap();
    assert_eq!(f["type"], "synced");
    assert_eq!(f["lastMutationId"], 2);
    s.stop().await;
}

#[tokio::test]
async fn a_silent_client_is_dropped_and_its_slot_freed() {
    let limits = common::test_limits();
    let limits = syncstore_server::config::Limits {
        ws_ping_interval: Duration::from_millis(100),
        ws_idle_timeout: Duration::from_millis(400),
        max_connections_per_namespace: 1,
        ..limits
    };
    let s = Server::start_with(":memory:", limits).await;
    let (mut silent, _, _) = ws_hello(&s.ws_url, TOKEN_A, "silent", None).await;
    assert_eq!(s.state.connections.count("ns-a"), 1);
    // While it holds the only slot, another connection is refused with 429.
    match ws_connect(&s.ws_url, Some(TOKEN_A)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 429),
        other => panic!("expected 429, got {other:?}"),
    }
    // Not reading means not answering pings: dropped within the timeout.
    let started = std::time::Instant::now();
    while s.state.connections.count("ns-a") > 0 && started.elapsed() < WAIT {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        s.state.connections.count("ns-a"),
        0,
        "dropped after the idle timeout"
    );
    // The close frame, read from the raw bytes: a WebSocket client would
    // first answer the queued pings, and writing to the socket the server
    // has closed resets it before the close frame is read. Server frames
    // are unmasked; these are all short.
    let mut raw = Vec::new();
    match silent.get_mut() {
        tokio_tungstenite::MaybeTlsStream::Plain(tcp) => {
            tokio::time::timeout(WAIT, tokio::io::AsyncReadExt::read_to_end(tcp, &mut raw))
                .await
                .expect("the server closes the connection")
                .unwrap();
        }
        _ => unreachable!("plain TCP to 127.0.0.1"),
    }
    let mut close = None;
    let mut i = 0;
    while i + 2 <= raw.len() {
        let (opcode, len) = (raw[i] & 0x0f, (raw[i + 1] & 0x7f) as usize);
        assert!(len < 126, "a short frame: {raw:?}");
        if opcode == 0x8 {
            close = Some(u16::from_be_bytes([raw[i + 2], raw[i + 3]]));
            break;
        }
        i += 2 + len;
    }
    assert_eq!(
        close,
        Some(4408),
        "closed with the idle close code: {raw:?}"
    );
    // A client that reads (and so answers pings) stays connected past the
    // timeout: 6 pings 100 ms apart span more than the 400 ms idle timeout.
    // WAIT is a hang guard, not a measurement.
    let (mut alive, _, _) = ws_hello(&s.ws_url, TOKEN_A, "alive", None).await;
    let mut pings = 0;
    while pings < 6 {
        let msg = tokio::time::timeout(WAIT, futures_util::StreamExt::next(&mut alive))
            .await
            .expect("the server pings periodically")
            .expect("the socket stays open")
            .unwrap();
        match msg {
            tokio_tungstenite::tungstenite::Message::Ping(_) => pings += 1,
            tokio_tungstenite::tungstenite::Message::Close(c) => {
                panic!("closed while answering pings: {c:?}")
            }
            _ => {}
        }
    }
    assert_eq!(s.state.connections.count("ns-a"), 1);
    s.stop().await;
}

#[tokio::test]
async fn a_lagging_client_catches_up_instead_of_losing_changes() {
    let limits = syncstore_server::config::Limits {
        broadcast_capacity: 2,
        max_doc_bytes: 512 * 1024,
        ..common::test_limits()
    };
    let s = Server::start_with(":memory:", limits).await;
    let (mut ws, _, _) = ws_hello(&s.ws_url, TOKEN_A, "slow", None).await;
    // The client reads nothing while ~8 MB of changes commit: the server's
    // send blocks on the full socket and the 2-slot broadcast overflows.
    const N: u64 = 80;
    let blob = "x".repeat(100 * 1024);
    for mid in 1..=N {
        s.push_ok(
            TOKEN_A,
            "w",
            json!([insert(
                mid,
                "t",
                &format!("d{mid:03}"),
                json!({"blob": blob})
            )]),
        )
        .await;
    }
    let got = ws_collect(&mut ws, N as usize).await;
    assert_increasing(&seqs(&got));
    let expected: Vec<String> = (1..=N).map(|m| format!("d{m:03}")).collect();
    assert_eq!(ids(&got), expected, "every change exactly once, in order");
    let lagged = s
        .state
        .stats
        .lag_catch_ups
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(lagged > 0, "the test did make the session lag");
    s.stop().await;
}

#[tokio::test]
async fn shutdown_closes_sockets_with_going_away() {
    let s = Server::start().await;
    let (mut ws, _, _) = ws_hello(&s.ws_url, TOKEN_A, "c", None).await;
    let stopping = tokio::spawn(s.stop());
    let mut code = None;
    for _ in 0..10 {
        if let Err(c) = ws_next_or_close(&mut ws).await {
            code = Some(c);
            break;
        }
    }
    assert_eq!(code, Some(Some(1001)));
    tokio::time::timeout(WAIT, stopping).await.unwrap().unwrap();
}

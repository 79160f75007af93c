//! Group commit: pushes that queue up while a commit runs are applied in one
//! transaction, each with its own answer and semantics, and published in seq
//! order as one live frame per namespace.
//!
//! `AppState::hold_commits` keeps the committer from starting while the test
//! queues pushes, so the group is known.

mod common;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use tokio::task::JoinHandle;

/// Pushes in the background (any status).
fn spawn_push(s: &Arc<Server>, token: &'static str, body: Value) -> JoinHandle<(u16, Value)> {
    let s = s.clone();
    tokio::spawn(async move { s.push(token, body).await })
}

/// Waits until `n` pushes in all have reached the committer's queue.
async fn queued(s: &Server, n: u64) {
    tokio::time::timeout(WAIT, async {
        while s.state.stats.pushes_queued.load(Relaxed) < n {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .expect("pushes queued in time");
}

/// A server whose groups are never cut short by time: these tests count
/// groups, and a busy machine must not split one.
async fn grouping_server() -> Server {
    let limits = syncstore_server::config::Limits {
        group_commit_time: Duration::from_secs(60),
        ..test_limits()
    };
    Server::start_with(":memory:", limits).await
}

fn groups(s: &Server) -> u64 {
    s.state.stats.commit_groups.load(Relaxed)
}

async fn answer(h: JoinHandle<(u16, Value)>) -> Value {
    let (status, body) = tokio::time::timeout(WAIT, h).await.unwrap().unwrap();
    assert_eq!(status, 200, "{body}");
    body
}

fn statuses(resp: &Value) -> Vec<String> {
    resp["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| match r["status"].as_str().unwrap() {
            "rejected" => r["code"].as_str().unwrap().to_string(),
            s => s.to_string(),
        })
        .collect()
}

fn versions(resp: &Value) -> Vec<u64> {
    resp["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["version"].as_u64())
        .collect()
}

/// The next `changes` frame.
async fn next_changes(ws: &mut Ws) -> Value {
    loop {
        let f = ws_next(ws).await.expect("socket open");
        if f["type"] == "changes" {
            return f;
        }
    }
}

#[tokio::test]
async fn a_group_answers_each_push_and_a_bad_one_fails_alone() {
    let s = Arc::new(grouping_server().await);
    let (mut ws, _, _) = ws_hello(&s.ws_url, TOKEN_A, "watcher", None).await;
    let big = "x".repeat(300_000);
    let g0 = groups(&s);
    let hold = s.state.hold_commits();
    let a = spawn_push(
        &s,
        TOKEN_A,
        json!({"clientId": "a", "mutations": [insert(1, "t", "a1", json!({"n": 1}))]}),
    );
    queued(&s, 1).await;
    // A document over max_doc_bytes: rejected alone, the rest of its push applies.
    let b = spawn_push(
        &s,
        TOKEN_A,
        json!({"clientId": "b", "mutations": [
            insert(1, "t", "b-big", json!({"big": big})),
            insert(2, "t", "b2", json!({})),
        ]}),
    );
    queued(&s, 2).await;
    // Another namespace in the same group.
    let other = spawn_push(
        &s,
        TOKEN_B,
        json!({"clientId": "a", "mutations": [insert(1, "t", "elsewhere", json!({}))]}),
    );
    queued(&s, 3).await;
    let c = spawn_push(
        &s,
        TOKEN_A,
        json!({"clientId": "c", "mutations": [
            insert(1, "t", "tmp_c", json!({})),
            update(2, "t", "a1", json!({"n": 2}), None),
        ]}),
    );
    queued(&s, 4).await;
    // Bad input never reaches the queue, and fails only its own request.
    let (status, body) = s
        .push(
            TOKEN_A,
            json!({"clientId": "d", "mutations": [{"mid": 0, "coll": "t", "op": "insert", "id": "d", "doc": {}}]}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(s.state.stats.pushes_queued.load(Relaxed), 4);
    drop(hold);

    let (a, b, other, c) = (
        answer(a).await,
        answer(b).await,
        answer(other).await,
        answer(c).await,
    );
    assert_eq!(groups(&s) - g0, 1, "the four pushes committed together");
    assert_eq!(statuses(&a), ["applied"]);
    assert_eq!(statuses(&b), ["DOC_TOO_LARGE", "applied"]);
    assert_eq!(b["lastMutationId"], 2);
    assert_eq!(statuses(&other), ["applied"]);
    assert_eq!(statuses(&c), ["applied", "applied"]);
    // Each push saw the ones queued before it: c's update applies over a's insert.
    let canonical = c["idMap"]["tmp_c"].as_str().unwrap().to_string();
    let order: Vec<u64> = [versions(&a), versions(&b), versions(&c)].concat();
    assert_increasing(&order);

    // One frame for the namespace, every change in seq order.
    let f = next_changes(&mut ws).await;
    let changes = f["changes"].as_array().unwrap();
    let ids: Vec<&str> = changes.iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["a1", "b2", canonical.as_str(), "a1"]);
    assert_eq!(seqs(changes), order);
    assert_eq!(changes[3]["doc"]["n"], 2);
    let (_, cursor, _) = s.pull_all(TOKEN_A, "watcher", "0").await;
    assert_eq!(f["cursor"], cursor.as_str());
    let (pulled, _, _) = s.pull_all(TOKEN_A, "b", "0").await;
    assert!(pulled.iter().all(|c| c["id"] != "b-big"));
    let (pulled, _, _) = s.pull_all(TOKEN_B, "x", "0").await;
    assert_eq!(pulled.len(), 1);
    drop(ws);
    Arc::into_inner(s).unwrap().stop().await;
}

#[tokio::test]
async fn replays_inside_a_group_answer_the_first_result() {
    let s = Arc::new(grouping_server().await);
    let (mut ws, _, _) = ws_hello(&s.ws_url, TOKEN_A, "watcher", None).await;
    let body = json!({"clientId": "r", "mutations": [
        insert(1, "t", "tmp_x", json!({"v": 1})),
        update(2, "t", "tmp_x", json!({"v": 2}), None),
    ]});
    let g0 = groups(&s);
    let hold = s.state.hold_commits();
    // The same push three times (a client retrying while the first is queued),
    // then a retransmitted insert of the same temporary id under a new mid.
    let first = spawn_push(&s, TOKEN_A, body.clone());
    queued(&s, 1).await;
    let again = spawn_push(&s, TOKEN_A, body.clone());
    queued(&s, 2).await;
    let third = spawn_push(&s, TOKEN_A, body.clone());
    queued(&s, 3).await;
    let resend = spawn_push(
        &s,
        TOKEN_A,
        json!({"clientId": "r", "mutations": [insert(3, "t", "tmp_x", json!({"v": 1}))]}),
    );
    queued(&s, 4).await;
    drop(hold);
    let first = answer(first).await;
    assert_eq!(answer(again).await, first);
    assert_eq!(answer(third).await, first);
    let resend = answer(resend).await;
    assert_eq!(groups(&s) - g0, 1);
    assert_eq!(statuses(&first), ["applied", "applied"]);
    assert_eq!(first["lastMutationId"], 2);
    let id = first["idMap"]["tmp_x"].as_str().unwrap();
    assert_eq!(resend["idMap"]["tmp_x"], id);
    assert_eq!(statuses(&resend), ["applied"]);
    assert_eq!(resend["lastMutationId"], 3);
    // Applied once: two changes (insert, update), in one frame.
    let f = next_changes(&mut ws).await;
    let changes = f["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 2, "{f}");
    assert_eq!(seqs(changes), versions(&first));
    assert_eq!(changes[1]["doc"]["v"], 2);
    let (all, _, last) = s.pull_all(TOKEN_A, "r", "0").await;
    assert_eq!(all.len(), 1);
    assert_eq!(last, 3);
    drop(ws);
    Arc::into_inner(s).unwrap().stop().await;
}

#[tokio::test]
async fn live_frames_follow_commit_order_across_groups() {
    let s = Arc::new(grouping_server().await);
    let (mut ws, _, _) = ws_hello(&s.ws_url, TOKEN_A, "watcher", None).await;
    let mut mids = 0u64;
    let mut queued_n = 0u64;
    let mut expected = Vec::new();
    for group in 0..4 {
        let hold = s.state.hold_commits();
        let mut handles = Vec::new();
        for p in 0..=group {
            mids += 1;
            let id = format!("g{group}p{p}");
            handles.push((
                id.clone(),
                spawn_push(
                    &s,
                    TOKEN_A,
                    json!({"clientId": format!("c{p}"), "mutations": [insert(mids, "t", &id, json!({}))]}),
                ),
            ));
            queued_n += 1;
            queued(&s, queued_n).await;
        }
        drop(hold);
        let mut group_versions = Vec::new();
        for (id, h) in handles {
            let v = versions(&answer(h).await);
            group_versions.extend(v);
            expected.push(id);
        }
        assert_increasing(&group_versions);
        // One frame per group, in the order the pushes were queued.
        let f = next_changes(&mut ws).await;
        let changes = f["changes"].as_array().unwrap();
        assert_eq!(seqs(changes), group_versions, "{f}");
    }
    let (all, _, _) = s.pull_all(TOKEN_A, "x", "0").await;
    let ids: Vec<&str> = all.iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids, expected);
    drop(ws);
    Arc::into_inner(s).unwrap().stop().await;
}

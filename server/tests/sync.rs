//! Push, pull, ids, conflicts, ordering, restart: over real HTTP.

mod common;

use common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn push_pull_round_trip() {
    let s = Server::start().await;
    let r = s
        .push_ok(
            TOKEN_A,
            "c1",
            json!([insert(
                1,
                "todos",
                "tmp_1",
                json!({"text": "milk", "done": false})
            )]),
        )
        .await;
    assert_eq!(r["lastMutationId"], 1);
    let res = &r["results"][0];
    assert_eq!(res["status"], "applied");
    assert_eq!(res["mid"], 1);
    let id = res["id"].as_str().unwrap().to_string();
    assert_eq!(r["idMap"]["tmp_1"], json!(id));
    assert!(!id.starts_with("tmp_"));

    let (changes, cursor, last) = s.pull_all(TOKEN_A, "c1", "0").await;
    assert_eq!(last, 1);
    assert_eq!(changes.len(), 1);
    let c = &changes[0];
    assert_eq!(c["op"], "put");
    assert_eq!(c["coll"], "todos");
    assert_eq!(c["id"], json!(id));
    assert_eq!(c["doc"], json!({"id": id, "text": "milk", "done": false}));
    assert_eq!(c["version"], res["version"]);
    assert_eq!(c["seq"], res["version"]);

    // Delete travels as a tombstone after the cursor.
    s.push_ok(
        TOKEN_A,
        "c1",
        json!([{"mid": 2, "coll": "todos", "op": "delete", "id": id}]),
    )
    .await;
    let (changes, cursor2, _) = s.pull_all(TOKEN_A, "c1", &cursor).await;
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0]["op"], "delete");
    assert_eq!(changes[0]["doc"], Value::Null);
    assert_ne!(cursor, cursor2);
    // A client that never pushed has lastMutationId 0; the cursor is not client bound.
    let (_, _, last) = s.pull_all(TOKEN_A, "someone-else", "0").await;
    assert_eq!(last, 0);
    s.stop().await;
}

#[tokio::test]
async fn the_same_batch_three_times_changes_the_database_once() {
    let s = Server::start().await;
    let batch = json!({"clientId": "c1", "mutations": [
        insert(1, "todos", "tmp_a", json!({"n": 1})),
        update(2, "todos", "tmp_a", json!({"n": 2}), None),
        insert(3, "todos", "fixed-id", json!({"n": 3})),
    ]});
    let (st, first) = s.push(TOKEN_A, batch.clone()).await;
    assert_eq!(st, 200);
    let (changes1, cursor1, _) = s.pull_all(TOKEN_A, "c1", "0").await;
    for _ in 0..2 {
        let (st, again) = s.push(TOKEN_A, batch.clone()).await;
        assert_eq!(st, 200);
        assert_eq!(again, first, "replays answer the original results");
    }
    let (changes3, cursor3, last) = s.pull_all(TOKEN_A, "c1", "0").await;
    assert_eq!(changes1, changes3);
    assert_eq!(cursor1, cursor3, "no new seq was used");
    assert_eq!(last, 3);
    assert_eq!(changes3.len(), 2);
    let doc = changes3.iter().find(|c| c["id"] != "fixed-id").unwrap();
    assert_eq!(doc["doc"]["n"], 2);
    // A batch extending the replayed one applies only the new mutation.
    let mut longer = batch.clone();
    longer["mutations"].as_array_mut().unwrap().push(update(
        4,
        "todos",
        "fixed-id",
        json!({"n": 4}),
        None,
    ));
    let (_, r) = s.push(TOKEN_A, longer).await;
    assert_eq!(
        &r["results"].as_array().unwrap()[..3],
        &first["results"].as_array().unwrap()[..]
    );
    assert_eq!(r["results"][3]["status"], "applied");
    assert_eq!(r["lastMutationId"], 4);
    s.stop().await;
}

#[tokio::test]
async fn temp_ids_map_across_batches_and_references_follow() {
    let s = Server::start().await;
    let r1 = s
        .push_ok(
            TOKEN_A,
            "c1",
            json!([insert(1, "lists", "tmp_list", json!({"name": "groceries"}))]),
        )
        .await;
    let list = r1["idMap"]["tmp_list"].as_str().unwrap().to_string();
    // Later batch: a doc referencing the tmp id, and an update naming it.
    let r2 = s
        .push_ok(TOKEN_A, "c1", json!([
            insert(2, "todos", "tmp_todo", json!({"listId": "tmp_list", "refs": ["tmp_list", {"deep": "tmp_list"}], "note": "tmp_list!"})),
            update(3, "lists", "tmp_list", json!({"name": "food", "first": "tmp_todo"}), None),
        ]))
        .await;
    let todo = r2["idMap"]["tmp_todo"].as_str().unwrap().to_string();
    assert_eq!(
        r2["idMap"]["tmp_list"],
        json!(list),
        "idMap names every tmp id the push used"
    );
    assert_eq!(r2["results"][1]["id"], json!(list));
    // A retransmitted insert (new mid) keeps its canonical id, applies nothing.
    let r3 = s
        .push_ok(
            TOKEN_A,
            "c1",
            json!([insert(4, "lists", "tmp_list", json!({"name": "dup"}))]),
        )
        .await;
    assert_eq!(r3["results"][0]["status"], "applied");
    assert_eq!(r3["results"][0]["id"], json!(list));

    let (changes, _, _) = s.pull_all(TOKEN_A, "c1", "0").await;
    assert_eq!(changes.len(), 2);
    let by_id = |id: &str| changes.iter().find(|c| c["id"] == id).unwrap()["doc"].clone();
    let l = by_id(&list);
    assert_eq!(l, json!({"id": list, "name": "food", "first": todo}));
    let t = by_id(&todo);
    assert_eq!(t["listId"], json!(list));
    assert_eq!(t["refs"], json!([list, {"deep": list}]));
    assert_eq!(t["note"], "tmp_list!", "only exact matches are rewritten");
    // Client ids scope tmp ids: another client's tmp_list is unknown.
    let r = s
        .push_ok(
            TOKEN_A,
            "c2",
            json!([update(1, "lists", "tmp_list", json!({"x": 1}), None)]),
        )
        .await;
    assert_eq!(r["results"][0]["status"], "conflict");
    assert_eq!(r["results"][0]["doc"], Value::Null);
    s.stop().await;
}

#[tokio::test]
async fn concurrent_pushers_produce_a_strictly_ordered_complete_log() {
    let s = std::sync::Arc::new(Server::start().await);
    const CLIENTS: u64 = 4;
    const BATCHES: u64 = 8;
    const PER: u64 = 5;
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for b in 0..BATCHES {
                let muts: Vec<Value> = (0..PER)
                    .map(|i| {
                        let mid = b * PER + i + 1;
                        insert(
                            mid,
                            "items",
                            &format!("c{c}-{mid}"),
                            json!({"c": c, "mid": mid}),
                        )
                    })
                    .collect();
                s.push_ok(TOKEN_A, &format!("client-{c}"), Value::Array(muts))
                    .await;
            }
        }));
    }
    // Pull while they push: cursors never go backwards, seqs strictly increase.
    let mut cursor = "0".to_string();
    let mut seen = Vec::new();
    for _ in 0..30 {
        let (st, body) = s.pull(TOKEN_A, "reader", &cursor, 7).await;
        assert_eq!(st, 200);
        seen.extend(body["changes"].as_array().unwrap().iter().cloned());
        cursor = body["cursor"].as_str().unwrap().to_string();
    }
    for t in tasks {
        tokio::time::timeout(WAIT, t).await.unwrap().unwrap();
    }
    let (rest, _, _) = s.pull_all(TOKEN_A, "reader", &cursor).await;
    seen.extend(rest);
    let s_seqs = seqs(&seen);
    assert_increasing(&s_seqs);
    let mut ids: Vec<String> = seen
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(
        ids.len() as u64,
        CLIENTS * BATCHES * PER,
        "every insert seen exactly once"
    );
    // A fresh full pull agrees.
    let (all, _, _) = s.pull_all(TOKEN_A, "reader", "0").await;
    assert_eq!(all.len() as u64, CLIENTS * BATCHES * PER);
    assert_increasing(&seqs(&all));
}

#[tokio::test]
async fn field_level_conflicts_over_http() {
    let s = Server::start().await;
    let r = s
        .push_ok(
            TOKEN_A,
            "a",
            json!([insert(
                1,
                "notes",
                "n1",
                json!({"title": "t", "body": "b", "meta": {"color": "red", "pinned": false}})
            )]),
        )
        .await;
    let v1 = r["results"][0]["version"].as_u64().unwrap();
    // a edits title.
    let r = s
        .push_ok(
            TOKEN_A,
            "a",
            json!([update(2, "notes", "n1", json!({"title": "A"}), Some(v1))]),
        )
        .await;
    assert_eq!(r["results"][0]["status"], "applied");
    // b, from v1, edits a different field (and a different nested field): applied.
    let r = s
        .push_ok(
            TOKEN_A,
            "b",
            json!([update(
                1,
                "notes",
                "n1",
                json!({"body": "B", "meta": {"pinned": true}}),
                Some(v1)
            )]),
        )
        .await;
    assert_eq!(r["results"][0]["status"], "applied", "{r}");
    // b, from v1, edits the same field: conflict with the server's doc and version.
    let r = s
        .push_ok(
            TOKEN_A,
            "b",
            json!([update(2, "notes", "n1", json!({"title": "B"}), Some(v1))]),
        )
        .await;
    let c = &r["results"][0];
    assert_eq!(c["status"], "conflict");
    assert_eq!(
        c["doc"],
        json!({"id": "n1", "title": "A", "body": "B", "meta": {"color": "red", "pinned": true}})
    );
    let head = c["version"].as_u64().unwrap();
    assert!(head > v1);
    // Nothing changed by the conflicting mutation.
    let (changes, _, _) = s.pull_all(TOKEN_A, "b", "0").await;
    assert_eq!(changes[0]["doc"]["title"], "A");
    // Same field, but based on the current version: applied.
    let r = s
        .push_ok(
            TOKEN_A,
            "b",
            json!([update(3, "notes", "n1", json!({"title": "B"}), Some(head))]),
        )
        .await;
    assert_eq!(r["results"][0]["status"], "applied");
    let head = r["results"][0]["version"].as_u64().unwrap();
    // Delete vs update: a deletes; b's update based on the pre-delete version conflicts, doc null.
    let r = s
        .push_ok(
            TOKEN_A,
            "a",
            json!([{"mid": 3, "coll": "notes", "op": "delete", "id": "n1", "base": head}]),
        )
        .await;
    assert_eq!(r["results"][0]["status"], "applied");
    let r = s
        .push_ok(
            TOKEN_A,
            "b",
            json!([update(
                4,
                "notes",
                "n1",
                json!({"body": "late"}),
                Some(head)
            )]),
        )
        .await;
    assert_eq!(r["results"][0]["status"], "conflict");
    assert_eq!(r["results"][0]["doc"], Value::Null);
    assert!(r["results"][0]["version"].as_u64().unwrap() > head);
    // Update vs delete: a delete based before an update conflicts and returns the doc.
    s.push_ok(
        TOKEN_A,
        "a",
        json!([insert(4, "notes", "n2", json!({"x": 1}))]),
    )
    .await;
    let (changes, _, _) = s.pull_all(TOKEN_A, "a", "0").await;
    let v = changes.iter().find(|c| c["id"] == "n2").unwrap()["version"]
        .as_u64()
        .unwrap();
    s.push_ok(
        TOKEN_A,
        "a",
        json!([update(5, "notes", "n2", json!({"x": 2}), Some(v))]),
    )
    .await;
    let r = s
        .push_ok(
            TOKEN_A,
            "b",
            json!([{"mid": 5, "coll": "notes", "op": "delete", "id": "n2", "base": v}]),
        )
        .await;
    assert_eq!(r["results"][0]["status"], "conflict");
    assert_eq!(r["results"][0]["doc"]["x"], 2);
    // Blind writes (no base) never conflict on fields.
    let r = s
        .push_ok(
            TOKEN_A,
            "b",
            json!([update(6, "notes", "n2", json!({"x": 3}), None)]),
        )
        .await;
    assert_eq!(r["results"][0]["status"], "applied");
    // Insert of an existing id conflicts.
    let r = s
        .push_ok(TOKEN_A, "b", json!([insert(7, "notes", "n2", json!({}))]))
        .await;
    assert_eq!(r["results"][0]["status"], "conflict");
    assert_eq!(r["results"][0]["doc"]["x"], 3);
    s.stop().await;
}

#[tokio::test]
async fn resync_for_cursors_the_server_cannot_serve() {
    let s = Server::start().await;
    s.push_ok(TOKEN_A, "c", json!([insert(1, "t", "a", json!({}))]))
        .await;
    let (_, good, _) = s.pull_all(TOKEN_A, "c", "0").await;
    let (epoch, seq) = good.split_once('.').unwrap();
    let future = format!("{epoch}.{}", seq.parse::<u64>().unwrap() + 100);
    for bad in ["garbage", "-1", "1", "deadbeef0000.1", future.as_str()] {
        let (st, body) = s.pull(TOKEN_A, "c", bad, 10).await;
        assert_eq!(st, 200, "{bad}");
        assert_eq!(body["resync"], true, "{bad}: {body}");
        assert_eq!(body["cursor"], "0");
        assert_eq!(body["changes"], json!([]));
        assert_eq!(body["lastMutationId"], 1);
    }
    let (st, body) = s.pull(TOKEN_A, "c", &good, 10).await;
    assert_eq!(st, 200);
    assert_eq!(body["resync"], false);
    s.stop().await;
}

#[tokio::test]
async fn restart_on_the_same_file_loses_nothing_committed() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sync.db");
    let s = Server::start_with(&db, test_limits()).await;
    let r = s
        .push_ok(
            TOKEN_A,
            "c1",
            json!([
                insert(1, "todos", "tmp_1", json!({"t": 1})),
                insert(2, "todos", "plain", json!({"t": 2, "ref": "tmp_1"})),
                {"mid": 3, "coll": "todos", "op": "delete", "id": "plain"},
            ]),
        )
        .await;
    let canonical = r["idMap"]["tmp_1"].as_str().unwrap().to_string();
    s.push_ok(
        TOKEN_B,
        "c9",
        json!([insert(1, "todos", "b-only", json!({}))]),
    )
    .await;
    let (before, cursor, _) = s.pull_all(TOKEN_A, "c1", "0").await;
    s.stop().await;

    let s = Server::start_with(&db, test_limits()).await;
    let (after, cursor2, last) = s.pull_all(TOKEN_A, "c1", "0").await;
    assert_eq!(before, after);
    assert_eq!(cursor, cursor2);
    assert_eq!(last, 3);
    // The old cursor is still served (no resync), the id map survived.
    let (st, body) = s.pull(TOKEN_A, "c1", &cursor, 10).await;
    assert_eq!((st, body["resync"].clone()), (200, json!(false)));
    let r = s
        .push_ok(
            TOKEN_A,
            "c1",
            json!([update(4, "todos", "tmp_1", json!({"t": 5}), None)]),
        )
        .await;
    assert_eq!(r["results"][0]["id"], json!(canonical));
    // Replays of pre-restart mids are still recognized.
    let r = s
        .push_ok(
            TOKEN_A,
            "c1",
            json!([insert(1, "todos", "tmp_1", json!({"t": 1}))]),
        )
        .await;
    assert_eq!(r["results"][0]["id"], json!(canonical));
    assert_eq!(r["lastMutationId"], 4);
    let (b, _, _) = s.pull_all(TOKEN_B, "c9", "0").await;
    assert_eq!(b.len(), 1);
    s.stop().await;
}

#[tokio::test]
async fn namespaces_are_isolated_over_http() {
    let s = Server::start().await;
    s.push_ok(
        TOKEN_A,
        "c",
        json!([insert(1, "t", "shared-id", json!({"owner": "a"}))]),
    )
    .await;
    // B sees nothing of A.
    let (b, _, _) = s.pull_all(TOKEN_B, "c", "0").await;
    assert!(b.is_empty());
    // B cannot modify A's doc: in B's namespace it does not exist.
    let r = s
        .push_ok(
            TOKEN_B,
            "c",
            json!([update(1, "t", "shared-id", json!({"owner": "b"}), None)]),
        )
        .await;
    assert_eq!(r["results"][0]["status"], "conflict");
    assert_eq!(r["results"][0]["doc"], Value::Null);
    let r = s
        .push_ok(
            TOKEN_B,
            "c",
            json!([{"mid": 2, "coll": "t", "op": "delete", "id": "shared-id"}]),
        )
        .await;
    assert_eq!(r["results"][0]["status"], "applied");
    // B's insert of the same id is B's own doc; A is untouched.
    s.push_ok(
        TOKEN_B,
        "c",
        json!([insert(3, "t", "shared-id", json!({"owner": "b"}))]),
    )
    .await;
    let (a, _, last_a) = s.pull_all(TOKEN_A, "c", "0").await;
    assert_eq!(a.len(), 1);
    assert_eq!(a[0]["doc"]["owner"], "a");
    assert_eq!(last_a, 1, "client state is per namespace too");
    let (b, _, last_b) = s.pull_all(TOKEN_B, "c", "0").await;
    assert_eq!(b.len(), 1);
    assert_eq!(b[0]["doc"]["owner"], "b");
    assert_eq!(last_b, 3);
    // A second token of namespace A sees A's data.
    let (a2, _, _) = s.pull_all("token-a2", "c", "0").await;
    assert_eq!(a2, a);
    s.stop().await;
}

#[tokio::test]
async fn auth_is_required() {
    let s = Server::start().await;
    let c = client();
    let body = json!({"clientId": "c", "mutations": []});
    for auth in [
        None,
        Some("Bearer nope"),
        Some("Basic dG9rZW4tYQ=="),
        Some("Bearer "),
        Some(TOKEN_A),
    ] {
        let mut req = c.post(s.url("/v1/push")).json(&body);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let (st, b) = status_json(req.send().await.unwrap()).await;
        assert_eq!(st, 401, "{auth:?}");
        assert_eq!(b["error"]["code"], "UNAUTHORIZED");
        let mut req = c.get(s.url("/v1/pull"));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let (st, _) = status_json(req.send().await.unwrap()).await;
        assert_eq!(st, 401);
    }
    // Scheme is case-insensitive.
    let resp = c
        .post(s.url("/v1/push"))
        .header("authorization", format!("bearer {TOKEN_A}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // healthz needs no token.
    let (st, b) = status_json(c.get(s.url("/healthz")).send().await.unwrap()).await;
    assert_eq!((st, b["ok"].clone()), (200, json!(true)));
    s.stop().await;
}

#[tokio::test]
async fn cors_preflight_is_answered() {
    let s = Server::start().await;
    let resp = client()
        .request(reqwest::Method::OPTIONS, s.url("/v1/push"))
        .header("origin", "http://localhost:5173")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    s.stop().await;
}

//! Conflict policies on hand-written cases: two clients against the model
//! server (which runs the reference server's push rules), one conflict each.

mod common;

use common::model::ModelServer;
use serde_json::{json, Value};
use syncstore_core::protocol::{JsonObject, Mutation, MutationOp};
use syncstore_core::sync::policy::{diff_patch, CollectionPolicy, Decision, Policies, Strategy};
use syncstore_core::sync::{ClientSync, Effects, Event};

fn obj(v: Value) -> JsonObject {
    v.as_object().unwrap().clone()
}

/// A client with its engine, its conflict policies and a wall clock (ms).
struct Client {
    name: &'static str,
    eng: ClientSync,
    policies: Policies,
    wall: u64,
    events: Vec<Event>,
}

impl Client {
    fn new(name: &'static str, strategy: Strategy) -> Self {
        let mut policies = Policies::default();
        policies.by_coll.insert(
            "todos".into(),
            CollectionPolicy {
                strategy,
                ..Default::default()
            },
        );
        Client {
            name,
            eng: ClientSync::new(),
            policies,
            wall: 1_700_000_000_000,
            events: vec![],
        }
    }

    /// Queues a local write the way the binding does: base and clock from
    /// the engine at queue time.
    fn write(&mut self, op: MutationOp, id: &str, body: Value) {
        let (doc, patch) = match op {
            MutationOp::Insert | MutationOp::Replace => {
                let mut d = obj(body);
                d.insert("id".into(), json!(id));
                (Some(d), None)
            }
            MutationOp::Update => (None, Some(obj(body))),
            MutationOp::Delete => (None, None),
        };
        self.wall += 10;
        let m = Mutation {
            mid: self.eng.next_mid(),
            coll: "todos".into(),
            op,
            id: id.into(),
            doc: doc.map(Into::into),
            patch: patch.map(Into::into),
            base: self.eng.base_for("todos", id),
            ts: Some(self.eng.stamp(self.wall)),
        };
        self.eng.local(m).unwrap();
    }

    fn push(&mut self, s: &mut ModelServer) {
        for _ in 0..5 {
            let batch = self.eng.next_push(100);
            if batch.is_empty() {
                return;
            }
            let (resp, _) = s.push(self.name, &batch);
            let fx: Effects = self.eng.on_push_response(&resp, &self.policies);
            self.events.extend(fx.events);
        }
    }

    fn pull(&mut self, s: &ModelServer) {
        loop {
            let resp = s.pull(self.name, self.eng.cursor(), 100);
            let more = resp.more;
            self.eng.on_pull(&resp);
            if !more {
                return;
            }
        }
    }

    fn sync(&mut self, s: &mut ModelServer) {
        self.push(s);
        self.pull(s);
    }

    fn view(&self, id: &str) -> Option<Value> {
        self.eng
            .view("todos", id)
            .map(|d| Value::Object(d.into_fields()))
    }

    fn resolutions(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Conflict { resolution, .. } => Some(resolution.clone()),
                _ => None,
            })
            .collect()
    }
}

/// A fresh server and two clients with the same strategy.
fn pair(strategy: Strategy) -> (ModelServer, Client, Client) {
    (
        ModelServer::new(),
        Client::new("a", strategy),
        Client::new("b", strategy),
    )
}

/// Both clients hold `doc` as `id` (inserted by a, pulled by b).
fn setup(a: &mut Client, b: &mut Client, s: &mut ModelServer, id: &str, doc: Value) {
    a.write(MutationOp::Insert, id, doc);
    a.sync(s);
    b.pull(s);
}

/// a's edit reaches the server first; b's edit, based on the same version,
/// conflicts; then everyone syncs until quiet. Returns the server's doc.
fn race(
    a: &mut Client,
    b: &mut Client,
    s: &mut ModelServer,
    id: &str,
    ea: (MutationOp, Value),
    eb: (MutationOp, Value),
) -> Option<Value> {
    a.write(ea.0, id, ea.1);
    b.write(eb.0, id, eb.1);
    a.sync(s);
    b.sync(s);
    a.sync(s);
    b.sync(s);
    let server = s
        .live_docs()
        .get(&("todos".to_string(), id.to_string()))
        .cloned()
        .map(Value::Object);
    assert_eq!(a.view(id), server, "{} converged on the server", a.name);
    assert_eq!(b.view(id), server, "{} converged on the server", b.name);
    server
}

#[test]
fn server_wins_keeps_the_first_write_and_reports() {
    let (mut s, mut a, mut b) = pair(Strategy::ServerWins);
    setup(&mut a, &mut b, &mut s, "t", json!({"text": "milk"}));
    let doc = race(
        &mut a,
        &mut b,
        &mut s,
        "t",
        (MutationOp::Update, json!({"text": "a"})),
        (MutationOp::Update, json!({"text": "b"})),
    );
    assert_eq!(doc.unwrap()["text"], "a");
    assert_eq!(b.resolutions(), ["remote"]);
}

#[test]
fn last_write_wins_by_clock_either_way() {
    for b_later in [true, false] {
        let (mut s, mut a, mut b) = pair(Strategy::LastWriteWins);
        setup(&mut a, &mut b, &mut s, "t", json!({"text": "milk", "n": 1}));
        if b_later {
            b.wall += 1000;
        } else {
            a.wall += 1000;
        }
        let doc = race(
            &mut a,
            &mut b,
            &mut s,
            "t",
            (MutationOp::Update, json!({"text": "a"})),
            (MutationOp::Replace, json!({"text": "b"})),
        )
        .unwrap();
        if b_later {
            assert_eq!(
                doc,
                json!({"id": "t", "text": "b"}),
                "b's later replace won"
            );
            assert_eq!(b.resolutions(), ["write"]);
        } else {
            assert_eq!(
                doc,
                json!({"id": "t", "text": "a", "n": 1}),
                "a's later update stands"
            );
            assert_eq!(b.resolutions(), ["remote"]);
        }
    }
}

#[test]
fn a_clock_far_ahead_wins_only_until_the_others_have_seen_it() {
    let (mut s, mut a, mut b) = pair(Strategy::LastWriteWins);
    a.wall += 3_600_000; // a's wall clock is an hour fast
    setup(&mut a, &mut b, &mut s, "t", json!({"text": "0"}));
    // b has seen a's clock (it pulled the insert): its next write, by its
    // own (correct) wall clock an hour earlier, still stamps after it.
    b.write(MutationOp::Update, "t", json!({"text": "b"}));
    a.write(MutationOp::Update, "t", json!({"text": "a"}));
    // a's edit was stamped after b's? a's clock is ahead, so yes: a wins this one...
    a.sync(&mut s);
    b.sync(&mut s);
    a.sync(&mut s);
    assert_eq!(b.view("t").unwrap()["text"], "a");
    // ...but once b has seen a's edit, b's next edit is later than it.
    b.write(MutationOp::Update, "t", json!({"text": "b2"}));
    a.write(MutationOp::Update, "t", json!({"text": "a2"}));
    let b_ts = b.eng.outbox().back().unwrap().mutation.ts.unwrap();
    let a_ts = a.eng.outbox().back().unwrap().mutation.ts.unwrap();
    assert!(
        b_ts > (a.wall - 3_600_000) << 16,
        "b stamps above its own wall clock"
    );
    // Whoever pushes first, the later stamp wins.
    b.sync(&mut s);
    a.sync(&mut s);
    b.sync(&mut s);
    a.sync(&mut s);
    let want = if b_ts > a_ts { "b2" } else { "a2" };
    assert_eq!(a.view("t").unwrap()["text"], want);
    assert_eq!(b.view("t").unwrap()["text"], want);
}

#[test]
fn field_merge_keeps_both_sides_and_falls_back_per_field() {
    for lww in [false, true] {
        let (mut s, mut a, mut b) = pair(Strategy::FieldMerge { lww });
        let base = json!({"text": "milk", "done": false, "meta": {"owner": "ann", "tags": ["x"], "n": 1}, "same": 0});
        setup(&mut a, &mut b, &mut s, "t", base);
        b.wall += 1000; // b's edits are later
        let doc = race(
            &mut a,
            &mut b,
            &mut s,
            "t",
            (
                MutationOp::Replace,
                json!({"text": "oat milk", "done": false, "meta": {"owner": "ann", "tags": ["x"], "n": 2}, "same": 1}),
            ),
            (
                MutationOp::Replace,
                json!({"text": "milk", "done": true, "meta": {"owner": "bob", "tags": ["x"], "n": 1}, "same": 2}),
            ),
        )
        .unwrap();
        assert_eq!(doc["text"], "oat milk", "a's field survives");
        assert_eq!(doc["done"], true, "b's field survives");
        assert_eq!(doc["meta"]["owner"], "bob", "nested: b's field");
        assert_eq!(doc["meta"]["n"], 2, "nested: a's field");
        let same = if lww { 2 } else { 1 };
        assert_eq!(doc["same"], same, "the same field: fallback (lww: {lww})");
    }
}

#[test]
fn field_merge_merges_arrays_by_id_in_declared_order() {
    let (mut s, mut a, mut b) = pair(Strategy::FieldMerge { lww: false });
    for c in [&mut a, &mut b] {
        c.policies
            .by_coll
            .get_mut("todos")
            .unwrap()
            .merge_by_id
            .insert("pauses".into(), Some("start".into()));
    }
    let base =
        json!({"pauses": [{"id": 1, "start": 10, "end": 20}, {"id": 2, "start": 30, "end": 40}]});
    setup(&mut a, &mut b, &mut s, "t", base);
    let doc = race(
        &mut a,
        &mut b,
        &mut s,
        "t",
        (
            MutationOp::Update,
            json!({"pauses": [{"id": 1, "start": 10, "end": 25}, {"id": 2, "start": 30, "end": 40}, {"id": 4, "start": 5, "end": 6}]}),
        ),
        (
            MutationOp::Update,
            json!({"pauses": [{"id": 1, "start": 10, "end": 20}, {"id": 3, "start": 50, "end": 60}]}),
        ),
    )
    .unwrap();
    assert_eq!(
        doc["pauses"],
        json!([
            {"id": 4, "start": 5, "end": 6},
            {"id": 1, "start": 10, "end": 25},
            {"id": 3, "start": 50, "end": 60},
        ]),
        "union by id, a's edit of 1, b's removal of 2, ordered by start"
    );
}

#[test]
fn delete_and_update_races_have_defined_outcomes() {
    // Update (b, later) of a document a deleted: server-wins keeps it
    // deleted; last-write-wins brings it back with b's edit.
    for (strategy, back) in [
        (Strategy::ServerWins, false),
        (Strategy::LastWriteWins, true),
        (Strategy::FieldMerge { lww: true }, true),
        (Strategy::FieldMerge { lww: false }, false),
    ] {
        let (mut s, mut a, mut b) = pair(strategy);
        setup(&mut a, &mut b, &mut s, "t", json!({"text": "milk", "n": 1}));
        b.wall += 1000;
        let doc = race(
            &mut a,
            &mut b,
            &mut s,
            "t",
            (MutationOp::Delete, json!(null)),
            (MutationOp::Update, json!({"n": 2})),
        );
        if back {
            assert_eq!(
                doc,
                Some(json!({"id": "t", "text": "milk", "n": 2})),
                "{strategy:?}"
            );
        } else {
            assert_eq!(doc, None, "{strategy:?}");
        }
    }
    // Delete (b, later) of a document a changed: server-wins keeps a's
    // edit; last-write-wins deletes.
    for (strategy, gone) in [
        (Strategy::ServerWins, false),
        (Strategy::LastWriteWins, true),
    ] {
        let (mut s, mut a, mut b) = pair(strategy);
        setup(&mut a, &mut b, &mut s, "t", json!({"text": "milk"}));
        b.wall += 1000;
        let doc = race(
            &mut a,
            &mut b,
            &mut s,
            "t",
            (MutationOp::Update, json!({"text": "oat"})),
            (MutationOp::Delete, json!(null)),
        );
        assert_eq!(doc.is_none(), gone, "{strategy:?}");
    }
}

#[test]
fn a_decided_fork_keeps_both_documents() {
    let (mut s, mut a, mut b) = pair(Strategy::ServerWins);
    setup(&mut a, &mut b, &mut s, "t", json!({"text": "milk"}));
    a.write(MutationOp::Update, "t", json!({"text": "a"}));
    b.write(MutationOp::Update, "t", json!({"text": "b"}));
    let mid = b.eng.outbox().back().unwrap().mutation.mid;
    b.policies.decided.insert(
        mid,
        Decision::KeepBoth {
            id: "tmp_fork".into(),
        },
    );
    a.sync(&mut s);
    b.sync(&mut s);
    b.sync(&mut s);
    a.sync(&mut s);
    assert_eq!(b.resolutions(), ["both"]);
    let docs = s.live_docs();
    assert_eq!(docs.len(), 2, "the server's and the local one");
    let texts: Vec<&str> = docs.values().map(|d| d["text"].as_str().unwrap()).collect();
    assert!(texts.contains(&"a") && texts.contains(&"b"), "{texts:?}");
    let forked = b.eng.resolve_id("tmp_fork").to_string();
    assert_ne!(forked, "tmp_fork", "the fork got a canonical id");
    assert_eq!(a.view(&forked), b.view(&forked));
}

#[test]
fn diff_patch_turns_one_document_into_another() {
    let from = obj(json!({"a": 1, "b": {"x": 1, "y": 2}, "c": [1], "gone": true}));
    let to = obj(json!({"a": 1, "b": {"x": 2, "y": 2}, "c": [1, 2], "new": "n"}));
    let patch = diff_patch(&from, &to);
    assert_eq!(
        Value::Object(patch.clone()),
        json!({"b": {"x": 2}, "c": [1, 2], "new": "n", "gone": null})
    );
    let mut v = Value::Object(from);
    syncstore_core::json::merge_patch(&mut v, &Value::Object(patch));
    assert_eq!(v, Value::Object(to));
}

#[test]
fn decided_keep_local_and_documents_win() {
    for (decision, want) in [
        (Decision::KeepLocal, json!({"id": "t", "text": "b", "n": 1})),
        (
            Decision::KeepRemote,
            json!({"id": "t", "text": "a", "n": 1}),
        ),
        (
            Decision::Doc(obj(json!({"text": "a+b"}))),
            json!({"id": "t", "text": "a+b"}),
        ),
    ] {
        let (mut s, mut a, mut b) = pair(Strategy::ServerWins);
        setup(&mut a, &mut b, &mut s, "t", json!({"text": "milk", "n": 1}));
        a.write(MutationOp::Update, "t", json!({"text": "a"}));
        b.write(MutationOp::Update, "t", json!({"text": "b"}));
        let mid = b.eng.outbox().back().unwrap().mutation.mid;
        b.policies.decided.insert(mid, decision.clone());
        a.sync(&mut s);
        b.sync(&mut s);
        b.sync(&mut s);
        a.sync(&mut s);
        let doc = s.live_docs()[&("todos".to_string(), "t".to_string())].clone();
        assert_eq!(Value::Object(doc), want, "{decision:?}");
        assert_eq!(a.view("t"), Some(want.clone()));
        assert_eq!(b.view("t"), Some(want));
    }
}

#[test]
fn the_conflict_event_carries_what_the_user_saw() {
    // b edits a document a deleted: the event's `local` is b's edited view,
    // not the (deleted) server state.
    let (mut s, mut a, mut b) = pair(Strategy::ServerWins);
    setup(&mut a, &mut b, &mut s, "t", json!({"text": "milk"}));
    a.write(MutationOp::Delete, "t", json!(null));
    b.write(MutationOp::Update, "t", json!({"text": "oat"}));
    a.sync(&mut s);
    b.sync(&mut s);
    let local = b.events.iter().find_map(|e| match e {
        Event::Conflict { local, remote, .. } => Some((local.clone(), remote.clone())),
        _ => None,
    });
    assert_eq!(
        local,
        Some((Some(obj(json!({"id": "t", "text": "oat"}))), None)),
        "local: the edit; remote: deleted"
    );
}

#[test]
fn the_same_edit_on_both_sides_is_no_conflict() {
    let (mut s, mut a, mut b) = pair(Strategy::ServerWins);
    setup(
        &mut a,
        &mut b,
        &mut s,
        "t",
        json!({"text": "milk", "done": false}),
    );
    let doc = race(
        &mut a,
        &mut b,
        &mut s,
        "t",
        (MutationOp::Update, json!({"done": true})),
        (MutationOp::Update, json!({"done": true})),
    );
    assert_eq!(doc.unwrap()["done"], true);
    assert!(b.resolutions().is_empty(), "no conflict: {:?}", b.events);
    let doc = race(
        &mut a,
        &mut b,
        &mut s,
        "t",
        (MutationOp::Replace, json!({"text": "oat"})),
        (MutationOp::Replace, json!({"text": "oat"})),
    );
    assert_eq!(doc.unwrap()["text"], "oat");
    assert!(b.resolutions().is_empty(), "no conflict: {:?}", b.events);
}

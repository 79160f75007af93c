//! Hand-written tests of the client sync engine's rules, one per rule,
//! against hand-built answers or the model server.

mod common;

use common::model::ModelServer;
use serde_json::{json, Value};
use syncstore_core::protocol::{
    Change, ChangeOp, JsonObject, Mutation, MutationOp, MutationResult, PullResponse, PushResponse,
    ServerMessage,
};
use syncstore_core::sync::{
    ClientSync, ConflictInfo, ConflictPolicy, Effects, EntryState, Event, Rekey, Resolution,
    ServerWins, SyncError,
};

fn obj(v: Value) -> JsonObject {
    v.as_object().unwrap().clone()
}

fn m(mid: u64, op: MutationOp, id: &str, body: Value, base: Option<u64>) -> Mutation {
    let (doc, patch) = match op {
        MutationOp::Insert | MutationOp::Replace => (Some(obj(body)), None),
        MutationOp::Update => (None, Some(obj(body))),
        MutationOp::Delete => (None, None),
    };
    Mutation {
        mid,
        coll: "todos".into(),
        op,
        id: id.into(),
        doc: doc.map(Into::into),
        patch: patch.map(Into::into),
        base,
        ts: None,
    }
}

fn put(seq: u64, id: &str, doc: Value) -> Change {
    Change {
        seq,
        coll: "todos".into(),
        id: id.into(),
        op: ChangeOp::Put,
        doc: Some(obj(doc).into()),
        version: seq,
        ts: None,
    }
}

fn pull(changes: Vec<Change>, cursor: &str, more: bool, lmid: u64) -> PullResponse {
    PullResponse {
        resync: false,
        changes,
        cursor: cursor.into(),
        more,
        last_mutation_id: lmid,
        total: None,
    }
}

fn view(c: &ClientSync, id: &str) -> Option<Value> {
    c.view("todos", id).map(|d| Value::Object(d.into_fields()))
}

fn view_ids(fx: &Effects) -> Vec<(&str, Option<JsonObject>)> {
    fx.views
        .iter()
        .map(|v| {
            (
                v.id.as_str(),
                v.doc.as_ref().map(|d| d.fields().into_owned()),
            )
        })
        .collect()
}

/// Pushes everything pending and feeds the answer; returns the effects.
fn sync_push(c: &mut ClientSync, s: &mut ModelServer, client: &str) -> Effects {
    let batch = c.next_push(100);
    let (resp, _) = s.push(client, &batch);
    c.on_push_response(&resp, &ServerWins)
}

/// Pulls until done; returns the effects of every page.
fn sync_pull(c: &mut ClientSync, s: &ModelServer, client: &str) -> Vec<Effects> {
    let mut out = vec![];
    loop {
        let resp = s.pull(client, c.cursor(), 100);
        let more = resp.more;
        out.push(c.on_pull(&resp));
        if !more {
            return out;
        }
    }
}

#[test]
fn rebase_replays_pending_in_mid_order_on_new_server_state() {
    let mut c = ClientSync::new();
    c.on_pull(&pull(
        vec![put(1, "a", json!({"id": "a", "n": 0}))],
        "k1",
        false,
        0,
    ));
    c.local(m(
        1,
        MutationOp::Update,
        "a",
        json!({"n": 1, "t": "x"}),
        Some(1),
    ))
    .unwrap();
    let fx = c
        .local(m(2, MutationOp::Update, "a", json!({"n": 2}), None))
        .unwrap();
    assert_eq!(fx.views.len(), 1);
    assert_eq!(view(&c, "a"), Some(json!({"id": "a", "n": 2, "t": "x"})));

    // Another client's change arrives: the pending edits replay on top.
    let fx = c.on_pull(&pull(
        vec![put(2, "a", json!({"id": "a", "n": 0, "o": 5}))],
        "k2",
        false,
        0,
    ));
    assert_eq!(
        view(&c, "a"),
        Some(json!({"id": "a", "n": 2, "t": "x", "o": 5}))
    );
    assert_eq!(view_ids(&fx).len(), 1);
    assert_eq!(fx.cursor.as_deref(), Some("k2"));

    // Both applied: they stay replayed until the server state contains them.
    let fx = c.on_push_response(
        &PushResponse {
            results: vec![
                MutationResult::Applied {
                    mid: 1,
                    id: "a".into(),
                    version: 3,
                    prev: None,
                },
                MutationResult::Applied {
                    mid: 2,
                    id: "a".into(),
                    version: 4,
                    prev: None,
                },
            ],
            id_map: Default::default(),
            last_mutation_id: 2,
        },
        &ServerWins,
    );
    assert!(fx.views.is_empty(), "no flicker back to the server state");
    assert!(fx.outbox_drop.is_empty());
    assert_eq!(c.pending(), 2);
    assert!(c.next_push(10).is_empty(), "applied entries are not resent");

    // The server state reaches version 4: both drop, the view stays.
    let fx = c.on_pull(&pull(
        vec![put(4, "a", json!({"id": "a", "n": 2, "t": "x", "o": 5}))],
        "k4",
        false,
        2,
    ));
    assert_eq!(fx.outbox_drop, vec![1, 2]);
    assert!(fx.views.is_empty(), "the settled view did not change");
    assert_eq!(c.pending(), 0);
}

#[test]
fn an_applied_entry_is_not_dropped_before_its_version_arrives() {
    let mut c = ClientSync::new();
    c.local(m(
        1,
        MutationOp::Insert,
        "a",
        json!({"id": "a", "n": 1}),
        None,
    ))
    .unwrap();
    c.on_push_response(
        &PushResponse {
            results: vec![MutationResult::Applied {
                mid: 1,
                id: "a".into(),
                version: 5,
                prev: None,
            }],
            id_map: Default::default(),
            last_mutation_id: 1,
        },
        &ServerWins,
    );
    // A page that stops before seq 5 (more = true): lastMutationId must not
    // drop anything yet, and the view keeps the local insert.
    let fx = c.on_pull(&pull(vec![put(3, "b", json!({"id": "b"}))], "k3", true, 1));
    assert!(fx.outbox_drop.is_empty());
    assert_eq!(view(&c, "a"), Some(json!({"id": "a", "n": 1})));
    let fx = c.on_pull(&pull(
        vec![put(5, "a", json!({"id": "a", "n": 1}))],
        "k5",
        false,
        1,
    ));
    assert_eq!(fx.outbox_drop, vec![1]);
    assert!(view_ids(&fx).iter().all(|(id, _)| *id != "a"));
}

#[test]
fn tmp_id_remap_rewrites_queued_update_delete_and_references() {
    let mut s = ModelServer::new();
    let mut c = ClientSync::new();
    c.local(m(
        1,
        MutationOp::Insert,
        "tmp_a",
        json!({"id": "tmp_a", "n": 1}),
        None,
    ))
    .unwrap();
    c.local(m(
        2,
        MutationOp::Insert,
        "tmp_b",
        json!({"id": "tmp_b", "parent": "tmp_a"}),
        None,
    ))
    .unwrap();
    // Push only the inserts, then queue an update and a delete naming tmp_a.
    let (resp, _) = s.push("c1", &c.next_push(2));
    c.local(m(3, MutationOp::Update, "tmp_a", json!({"n": 2}), None))
        .unwrap();
    c.local(m(4, MutationOp::Delete, "tmp_b", json!({}), None))
        .unwrap();
    let fx = c.on_push_response(&resp, &ServerWins);
    let ca = c.resolve_id("tmp_a").to_string();
    let cb = c.resolve_id("tmp_b").to_string();
    assert_ne!(ca, "tmp_a");
    assert!(fx.events.contains(&Event::Idmap {
        tmp: "tmp_a".into(),
        id: ca.clone()
    }));
    assert!(fx.rekeys.contains(&Rekey {
        coll: "todos".into(),
        tmp: "tmp_a".into(),
        id: ca.clone()
    }));
    // Queued mutations now name the canonical ids.
    let queued: Vec<_> = c
        .outbox()
        .iter()
        .filter(|e| e.state == EntryState::Pending)
        .map(|e| (e.mutation.mid, e.mutation.id.clone()))
        .collect();
    assert_eq!(queued, vec![(3, ca.clone()), (4, cb.clone())]);
    assert!(fx
        .outbox_put
        .iter()
        .any(|e| e.mutation.mid == 3 && e.mutation.id == ca));
    // Views live at the canonical keys; the tmp keys are gone; the alias works.
    assert_eq!(view(&c, &ca), Some(json!({"id": ca, "n": 2})));
    assert_eq!(c.view("todos", "tmp_a"), c.view("todos", &ca));
    assert_eq!(view(&c, &cb), None, "the queued delete still applies");
    // An op naming the old tmp id is rewritten too.
    c.local(m(
        5,
        MutationOp::Update,
        "tmp_a",
        json!({"ref": "tmp_b"}),
        None,
    ))
    .unwrap();
    let last = c.outbox().back().unwrap();
    assert_eq!(last.mutation.id, ca);
    assert_eq!(
        last.mutation.patch.as_ref().unwrap().parse()["ref"],
        json!(cb)
    );

    sync_push(&mut c, &mut s, "c1");
    sync_pull(&mut c, &s, "c1");
    assert_eq!(c.pending(), 0);
    let truth = s.live_docs();
    assert_eq!(
        c.views()
            .into_iter()
            .collect::<std::collections::BTreeMap<_, _>>(),
        truth
    );
    assert_eq!(
        truth[&("todos".to_string(), ca.clone())],
        obj(json!({"id": ca, "n": 2, "ref": cb}))
    );
}

/// An entry whose view the write path stored already: no view unless the
/// engine rewrites it (a temporary id it has mapped since).
#[test]
fn an_entry_taken_in_as_stored_reports_a_view_only_if_rewritten() {
    let mut s = ModelServer::new();
    let mut c = ClientSync::new();
    c.on_pull(&pull(
        vec![put(1, "a", json!({"id": "a", "n": 0}))],
        "k1",
        false,
        0,
    ));
    let fx = c
        .local_stored(
            m(1, MutationOp::Update, "a", json!({"n": 1}), Some(1)),
            false,
        )
        .unwrap();
    assert!(fx.views.is_empty());
    assert_eq!(fx.outbox_put.len(), 1);
    assert_eq!(
        fx.outbox_put[0]
            .base_doc
            .as_ref()
            .map(|d| d.fields().into_owned()),
        Some(obj(json!({"id": "a", "n": 0}))),
        "the base is the held server document"
    );
    // The engine's view is the one the write path stored.
    assert_eq!(view(&c, "a"), Some(json!({"id": "a", "n": 1})));
    c.local_stored(
        m(
            2,
            MutationOp::Insert,
            "tmp_x",
            json!({"id": "tmp_x", "n": 1}),
            None,
        ),
        false,
    )
    .unwrap();
    sync_push(&mut c, &mut s, "c1");
    let cx = c.resolve_id("tmp_x").to_string();
    assert_ne!(cx, "tmp_x");
    // Written in another tab before it learnt the mapping: rewritten, so
    // the view at the canonical key is reported.
    let fx = c
        .local_stored(
            m(3, MutationOp::Update, "tmp_x", json!({"n": 2}), None),
            false,
        )
        .unwrap();
    assert_eq!(
        view_ids(&fx),
        vec![(cx.as_str(), Some(obj(json!({"id": cx, "n": 2}))))]
    );
    // Parked: shown, not pushed.
    let fx = c
        .local_stored(m(4, MutationOp::Update, "a", json!({"n": 5}), None), true)
        .unwrap();
    assert!(fx.views.is_empty());
    assert_eq!(c.outbox().back().unwrap().state, EntryState::Parked);
    assert_eq!(view(&c, "a"), Some(json!({"id": "a", "n": 5})));
}

#[test]
fn changes_for_a_remapped_document_land_on_the_canonical_key() {
    let mut s = ModelServer::new();
    let mut c = ClientSync::new();
    let mut other = ClientSync::new();
    c.local(m(
        1,
        MutationOp::Insert,
        "tmp_a",
        json!({"id": "tmp_a", "n": 1}),
        None,
    ))
    .unwrap();
    sync_push(&mut c, &mut s, "c1");
    let ca = c.resolve_id("tmp_a").to_string();
    sync_pull(&mut other, &s, "c2");
    other
        .local(m(
            1,
            MutationOp::Update,
            &ca,
            json!({"n": 7}),
            other.base_for("todos", &ca),
        ))
        .unwrap();
    sync_push(&mut other, &mut s, "c2");
    let fx = sync_pull(&mut c, &s, "c1");
    assert!(fx.iter().all(|f| f.views.iter().all(|v| v.id == ca)));
    assert_eq!(view(&c, &ca), Some(json!({"id": ca, "n": 7})));
    assert_eq!(view(&c, "tmp_a"), view(&c, &ca));
    assert!(!c
        .views()
        .contains_key(&("todos".to_string(), "tmp_a".to_string())));
}

#[test]
fn rejected_mutation_rolls_back_and_reports() {
    let mut s = ModelServer::new();
    s.max_doc_bytes = 100;
    let mut c = ClientSync::new();
    c.local(m(
        1,
        MutationOp::Insert,
        "tmp_a",
        json!({"id": "tmp_a", "n": 1}),
        None,
    ))
    .unwrap();
    sync_push(&mut c, &mut s, "c1");
    sync_pull(&mut c, &s, "c1");
    let ca = c.resolve_id("tmp_a").to_string();
    let before = view(&c, &ca);
    c.local(m(
        2,
        MutationOp::Update,
        &ca,
        json!({"big": "x".repeat(200)}),
        None,
    ))
    .unwrap();
    assert_ne!(view(&c, &ca), before);
    let fx = sync_push(&mut c, &mut s, "c1");
    assert_eq!(view(&c, &ca), before, "rolled back to the server state");
    assert_eq!(fx.outbox_drop, vec![2]);
    assert_eq!(
        view_ids(&fx),
        vec![(
            ca.as_str(),
            before.as_ref().and_then(Value::as_object).cloned()
        )]
    );
    assert!(matches!(
        &fx.events[..],
        [Event::Rejected { mid: 2, code, id, .. }] if code == "DOC_TOO_LARGE" && *id == ca
    ));
    assert_eq!(c.pending(), 0);
}

#[test]
fn conflict_server_wins_rolls_back_to_the_remote_document() {
    let mut s = ModelServer::new();
    let (mut a, mut b) = (ClientSync::new(), ClientSync::new());
    a.local(m(
        1,
        MutationOp::Insert,
        "tmp_x",
        json!({"id": "tmp_x", "t": "v0"}),
        None,
    ))
    .unwrap();
    sync_push(&mut a, &mut s, "a");
    sync_pull(&mut a, &s, "a");
    sync_pull(&mut b, &s, "b");
    let id = a.resolve_id("tmp_x").to_string();
    // Both edit the same field from the same base; b pushes first.
    a.local(m(
        2,
        MutationOp::Update,
        &id,
        json!({"t": "A"}),
        a.base_for("todos", &id),
    ))
    .unwrap();
    b.local(m(
        1,
        MutationOp::Update,
        &id,
        json!({"t": "B"}),
        b.base_for("todos", &id),
    ))
    .unwrap();
    sync_push(&mut b, &mut s, "b");
    let fx = sync_push(&mut a, &mut s, "a");
    let remote = obj(json!({"id": id, "t": "B"}));
    assert!(matches!(
        &fx.events[..],
        [Event::Conflict { mid: 2, local: Some(l), remote: Some(r), .. }]
            if l["t"] == "A" && *r == remote
    ));
    assert_eq!(view(&a, &id), Some(Value::Object(remote.clone())));
    assert_eq!(a.pending(), 0);
    // The conflict answer already advanced a's server state: the pull that
    // brings the same version changes no view.
    let fx = sync_pull(&mut a, &s, "a");
    assert!(fx.iter().all(|f| f.views.is_empty()));
}

struct Retry;

impl ConflictPolicy for Retry {
    fn resolve(&self, c: &ConflictInfo<'_>) -> Resolution {
        Resolution::Write {
            op: MutationOp::Update,
            doc: None,
            patch: c.mutation.patch.as_ref().map(|p| p.parse()),
        }
    }
}

#[test]
fn the_conflict_policy_can_queue_a_resolution() {
    let mut c = ClientSync::new();
    c.on_pull(&pull(
        vec![put(1, "a", json!({"id": "a", "t": "0"}))],
        "k1",
        false,
        0,
    ));
    c.local(m(1, MutationOp::Update, "a", json!({"t": "mine"}), Some(1)))
        .unwrap();
    let fx = c.on_push_response(
        &PushResponse {
            results: vec![MutationResult::Conflict {
                mid: 1,
                id: "a".into(),
                doc: Some(obj(json!({"id": "a", "t": "theirs"}))),
                version: Some(2),
                ts: None,
            }],
            id_map: Default::default(),
            last_mutation_id: 1,
        },
        &Retry,
    );
    assert_eq!(fx.outbox_drop, vec![1]);
    let next = c.next_push(10);
    assert_eq!(next.len(), 1);
    assert_eq!((next[0].mid, next[0].base), (2, Some(2)));
    assert_eq!(view(&c, "a"), Some(json!({"id": "a", "t": "mine"})));
    assert!(
        fx.views.is_empty(),
        "the view did not flicker to theirs and back"
    );
    assert_eq!(c.next_mid(), 3);
}

#[test]
fn a_lost_push_answer_is_recovered_by_pull_and_resend() {
    let mut s = ModelServer::new();
    let mut c = ClientSync::new();
    c.on_pull(&s.pull("c1", None, 100));
    c.local(m(
        1,
        MutationOp::Insert,
        "tmp_a",
        json!({"id": "tmp_a", "n": 1}),
        None,
    ))
    .unwrap();
    c.local(m(
        2,
        MutationOp::Insert,
        "k",
        json!({"id": "k", "n": 1}),
        None,
    ))
    .unwrap();
    let _lost = s.push("c1", &c.next_push(10));
    // The pull shows lastMutationId = 2: both are acknowledged.
    let fxs = sync_pull(&mut c, &s, "c1");
    assert!(c.outbox().iter().all(|e| e.state == EntryState::Acked));
    // The canonical-id insert is in the server state and no longer replayed;
    // the tmp insert still shows under its tmp id until its mapping is known.
    assert_eq!(view(&c, "k"), Some(json!({"id": "k", "n": 1})));
    assert_eq!(view(&c, "tmp_a"), Some(json!({"id": "tmp_a", "n": 1})));
    assert!(fxs.iter().all(|f| f.views.iter().all(|v| v.id != "tmp_a")));
    // Resending is safe: the server answers from its records.
    let fx = sync_push(&mut c, &mut s, "c1");
    let ca = c.resolve_id("tmp_a").to_string();
    assert_ne!(ca, "tmp_a");
    assert!(fx.rekeys.iter().any(|r| r.tmp == "tmp_a" && r.id == ca));
    assert_eq!(c.pending(), 0);
    assert_eq!(
        s.processed.values().copied().collect::<Vec<_>>(),
        vec![1, 1]
    );
    assert_eq!(
        c.views()
            .into_iter()
            .collect::<std::collections::BTreeMap<_, _>>(),
        s.live_docs()
    );
}

#[test]
fn resync_keeps_pending_writes_and_shows_no_intermediate_state() {
    let mut s = ModelServer::new();
    let mut c = ClientSync::new();
    for i in 1..=3 {
        c.local(m(
            i,
            MutationOp::Insert,
            &format!("tmp_{i}"),
            json!({"i": i}),
            None,
        ))
        .unwrap();
    }
    sync_push(&mut c, &mut s, "c1");
    sync_pull(&mut c, &s, "c1");
    let c1 = c.resolve_id("tmp_1").to_string();
    c.local(m(4, MutationOp::Update, &c1, json!({"mine": true}), None))
        .unwrap();
    let before = c.views();
    s.compact();
    let resp = s.pull("c1", c.cursor(), 1);
    assert!(resp.resync);
    let fx = c.on_pull(&resp);
    assert_eq!(fx.cursor.as_deref(), Some("0"));
    assert!(c.resyncing());
    // Page by page: views do not change while the state is rebuilt.
    loop {
        let resp = s.pull("c1", c.cursor(), 1);
        let more = resp.more;
        let fx = c.on_pull(&resp);
        assert!(fx.views.is_empty());
        if !more {
            assert!(fx.sweep.is_some());
            break;
        }
    }
    assert!(!c.resyncing());
    assert_eq!(c.views(), before, "the pending update survived the resync");
    assert_eq!(c.pending(), 1);
    sync_push(&mut c, &mut s, "c1");
    sync_pull(&mut c, &s, "c1");
    assert_eq!(
        c.views()
            .into_iter()
            .collect::<std::collections::BTreeMap<_, _>>(),
        s.live_docs()
    );
}

#[test]
fn resync_drops_documents_the_server_no_longer_has() {
    let mut c = ClientSync::new();
    c.on_pull(&pull(
        vec![
            put(1, "a", json!({"id": "a"})),
            put(2, "b", json!({"id": "b"})),
        ],
        "old.2",
        false,
        0,
    ));
    c.on_server_message(&ServerMessage::Resync { cursor: "0".into() }, &ServerWins);
    c.on_server_message(
        &ServerMessage::Changes {
            changes: vec![put(1, "a", json!({"id": "a"}))],
            cursor: "new.1".into(),
        },
        &ServerWins,
    );
    assert!(view(&c, "b").is_some(), "kept until the resync completes");
    let fx = c.on_server_message(
        &ServerMessage::Synced {
            cursor: "new.1".into(),
            last_mutation_id: 0,
            limits: None,
        },
        &ServerWins,
    );
    assert_eq!(view_ids(&fx), vec![("b", None)]);
    assert_eq!(c.cursor(), Some("new.1"));
}

#[test]
fn a_socket_opened_before_a_resync_cannot_complete_it() {
    let mut c = ClientSync::new();
    c.on_pull(&pull(
        vec![put(1, "a", json!({"id": "a"}))],
        "e1.1",
        false,
        0,
    ));
    let _ = c.ws_hello_cursor();
    c.start_resync();
    // Frames of the old socket: applied, but neither cursor nor completion.
    c.on_server_message(
        &ServerMessage::Changes {
            changes: vec![put(2, "b", json!({"id": "b"}))],
            cursor: "e1.2".into(),
        },
        &ServerWins,
    );
    c.on_server_message(
        &ServerMessage::Synced {
            cursor: "e1.2".into(),
            last_mutation_id: 0,
            limits: None,
        },
        &ServerWins,
    );
    assert!(c.resyncing());
    assert_eq!(c.cursor(), None);
    assert!(view(&c, "b").is_some());
}

#[test]
fn mids_must_grow() {
    let mut c = ClientSync::new();
    c.local(m(5, MutationOp::Insert, "a", json!({}), None))
        .unwrap();
    assert!(matches!(
        c.local(m(5, MutationOp::Insert, "b", json!({}), None)),
        Err(SyncError::StaleMid { mid: 5, last: 5 })
    ));
    let mut bad = m(6, MutationOp::Update, "a", json!({}), None);
    bad.patch = None;
    assert!(matches!(c.local(bad), Err(SyncError::Invalid(_))));
}

#[test]
fn state_round_trips_through_json() {
    let mut c = ClientSync::new();
    c.on_pull(&pull(vec![put(1, "a", json!({"id": "a"}))], "k1", false, 0));
    c.local(m(1, MutationOp::Update, "a", json!({"n": 1}), Some(1)))
        .unwrap();
    let text = serde_json::to_string(&c).unwrap();
    let back: ClientSync = serde_json::from_str(&text).unwrap();
    assert_eq!(back, c);
    let restored = ClientSync::restore(
        c.meta(),
        c.server_docs()
            .map(|(coll, id, d)| syncstore_core::sync::ServerRecord {
                coll: coll.into(),
                id: id.into(),
                state: d.clone(),
            })
            .collect(),
        c.outbox().iter().cloned().collect(),
    );
    assert_eq!(restored.views(), c.views());
    assert_eq!(restored.next_push(10), c.next_push(10));
}

#[test]
fn parked_entries_show_but_wait_for_unpark_and_get_fresh_mids() {
    let mut c = ClientSync::new();
    let mut s = ModelServer::new();
    let notes = |mid, op, id: &str, body| {
        let mut x = m(mid, op, id, body, None);
        x.coll = "notes".into();
        x
    };
    c.local_parked(notes(1, MutationOp::Insert, "n1", json!({"t": 1})))
        .unwrap();
    c.local(m(2, MutationOp::Insert, "a", json!({"n": 1}), None))
        .unwrap();
    c.local_parked(notes(3, MutationOp::Update, "n1", json!({"t": 2})))
        .unwrap();
    assert_eq!(
        c.view("notes", "n1")
            .map(|d| Value::Object(d.into_fields())),
        Some(json!({"t": 2, "id": "n1"})),
        "parked writes show"
    );
    let sent: Vec<u64> = c.next_push(10).iter().map(|m| m.mid).collect();
    assert_eq!(sent, [2], "parked entries are not sent");
    sync_push(&mut c, &mut s, "c1");
    let fx = c.unpark("notes");
    assert_eq!(fx.outbox_drop, [1, 3]);
    let mids: Vec<u64> = fx.outbox_put.iter().map(|e| e.mutation.mid).collect();
    assert_eq!(
        mids,
        [4, 5],
        "fresh mids above the last one pushed, order kept"
    );
    assert!(fx.views.is_empty(), "unparking changes no view");
    assert!(c.unpark("notes").is_empty(), "nothing left parked");
    let fx = sync_push(&mut c, &mut s, "c1");
    assert!(fx.events.is_empty(), "accepted, not stale: {:?}", fx.events);
    sync_pull(&mut c, &s, "c1");
    assert_eq!(c.pending(), 0);
    assert_eq!(
        c.view("notes", "n1")
            .map(|d| Value::Object(d.into_fields())),
        Some(json!({"id": "n1", "t": 2}))
    );
}

#[test]
fn awaited_versions() {
    let mut c = ClientSync::new();
    let mut notes = m(2, MutationOp::Insert, "n1", json!({"t": 1}), None);
    notes.coll = "notes".into();
    c.local(m(1, MutationOp::Insert, "a", json!({"n": 1}), None))
        .unwrap();
    c.local(notes).unwrap();
    let resp = PushResponse {
        results: vec![MutationResult::Applied {
            mid: 2,
            id: "n1".into(),
            version: 7,
            prev: None,
        }],
        id_map: Default::default(),
        last_mutation_id: 2,
    };
    c.on_push_response(&resp, &ServerWins);
    assert_eq!(c.pending(), 2, "applied entries wait for their change");
    assert_eq!(c.awaited_version("notes", "n1"), Some(7));
    assert_eq!(c.awaited_version("todos", "a"), None, "not applied yet");
}

/// Feeds a pull page the way the binding does: loads what it names from
/// `stored` (None: nothing stored), runs it, stores the effects, evicts.
fn pull_bounded(
    c: &mut ClientSync,
    stored: &mut std::collections::BTreeMap<(String, String), syncstore_core::sync::ServerDoc>,
    page: &PullResponse,
) -> Effects {
    let keys: Vec<(String, String)> = ClientSync::keys_of_changes(&page.changes).collect();
    for (coll, id) in c.needs(keys) {
        let state = stored.get(&(coll.clone(), id.clone())).cloned();
        c.load(&coll, &id, state);
    }
    let fx = c.on_pull(page);
    for r in &fx.server_put {
        stored.insert((r.coll.clone(), r.id.clone()), r.state.clone());
    }
    c.evict();
    fx
}

/// Loads what `keys` name from `stored` (the binding's read step).
fn load_keys(
    c: &mut ClientSync,
    stored: &std::collections::BTreeMap<(String, String), syncstore_core::sync::ServerDoc>,
    keys: Vec<(String, String)>,
) {
    for (coll, id) in c.needs(keys) {
        let state = stored.get(&(coll.clone(), id.clone())).cloned();
        c.load(&coll, &id, state);
    }
}

#[test]
fn engine_holds_only_documents_with_outbox_entries() {
    let mut c = ClientSync::new();
    let mut stored = std::collections::BTreeMap::new();
    c.evict(); // the caller manages loads from here on
    let mine = m(1, MutationOp::Insert, "mine", json!({"n": 0}), None);
    let keys = vec![c.keys_of_local(&mine)];
    load_keys(&mut c, &stored, keys);
    c.local(mine).unwrap();
    let doc = json!({"text": "a server document of a typical size", "done": false, "n": 1});
    for page in 0..100u64 {
        let changes = (0..1000u64)
            .map(|i| {
                let seq = page * 1000 + i + 1;
                put(seq, &format!("d{seq}"), doc.clone())
            })
            .collect();
        let fx = pull_bounded(
            &mut c,
            &mut stored,
            &pull(changes, &format!("k{page}"), page < 99, 0),
        );
        assert_eq!(fx.server_put.len(), 1000);
        assert_eq!(fx.views.len(), 1000, "every pulled document is written");
    }
    assert_eq!(stored.len(), 100_000);
    assert_eq!(
        c.held(),
        0,
        "no server state is held for 100,000 pulled documents"
    );
    assert_eq!(c.pending(), 1);
    // A document edited locally keeps its server state while it is pending.
    load_keys(
        &mut c,
        &stored,
        vec![("todos".to_string(), "d5".to_string())],
    );
    assert_eq!(c.base_for("todos", "d5"), Some(5));
    c.local(m(2, MutationOp::Update, "d5", json!({"n": 9}), Some(5)))
        .unwrap();
    c.evict();
    assert_eq!(c.held(), 1);
    assert_eq!(c.server_doc("todos", "d5").map(|d| d.version), Some(5));
    // A change to a document already stored at that version changes nothing.
    let fx = pull_bounded(
        &mut c,
        &mut stored,
        &pull(vec![put(7, "d7", doc.clone())], "k100", false, 0),
    );
    assert!(fx.views.is_empty() && fx.server_put.is_empty());
}

#[test]
fn a_change_the_stream_delivered_before_is_no_news_until_a_resync() {
    let mut c = ClientSync::new();
    c.on_pull(&pull(
        vec![
            put(1, "a", json!({"id": "a"})),
            put(2, "b", json!({"id": "b"})),
        ],
        "k2",
        false,
        0,
    ));
    // A socket whose catch-up started from an older cursor sends them again.
    assert!(c.is_echo_of([1, 2]));
    assert!(!c.is_echo_of([2, 3]), "version 3 was never delivered");
    let stamp = |version| syncstore_core::protocol::ChangeStamp { version, ts: None };
    let fx = c.skip_echo_of(&[stamp(1), stamp(2)], "k2");
    assert!(fx.views.is_empty() && fx.server_put.is_empty());
    // A new stream (a resync: the server's seqs may start again) knows nothing.
    c.start_resync();
    assert!(!c.is_echo_of([1]));
    assert!(!c.is_echo_of([]), "nothing is no news during a resync");
}

#[test]
fn a_write_applied_over_the_held_version_settles_on_its_answer() {
    let mut s = ModelServer::new();
    let mut c = ClientSync::new();
    let none = std::collections::BTreeMap::new();
    c.evict();
    c.local(m(1, MutationOp::Insert, "tmp_a", json!({"n": 1}), None))
        .unwrap();
    let batch = c.next_push(100);
    let (resp, _) = s.push("c1", &batch);
    let keys = c.keys_of_push(&resp);
    load_keys(&mut c, &none, keys);
    let fx = c.on_push_response(&resp, &ServerWins);
    let id = c.resolve_id("tmp_a").to_string();
    assert_eq!(c.pending(), 0, "settled without waiting for the echo");
    assert_eq!(fx.outbox_drop, vec![1]);
    let put = &fx.server_put[0];
    assert_eq!((put.coll.as_str(), put.id.as_str()), ("todos", id.as_str()));
    assert_eq!(
        put.state
            .doc
            .as_ref()
            .map(|d| Value::Object(d.fields().into_owned())),
        Some(json!({"n": 1, "id": id}))
    );
    c.evict();
    // Its echo is recognised without loading anything and moves the cursor only.
    let page = s.pull("c1", None, 100);
    assert!(c.is_echo(&page.changes));
    // By the versions alone (a binding reads a frame without its documents).
    assert!(c.is_echo_of(page.changes.iter().map(|ch| ch.version)));
    assert!(!c.is_echo_of([page.changes[0].version + 1]));
    let fx = c.skip_echo(&page.changes, &page.cursor);
    assert!(fx.views.is_empty() && fx.server_put.is_empty());
    assert_eq!(fx.cursor.as_deref(), Some(page.cursor.as_str()));
    // An update over the version held settles too; one over an older one
    // (another client wrote in between) waits for the server's document.
    for (coll, i) in c.needs(vec![("todos".to_string(), id.clone())]) {
        c.load(&coll, &i, Some(put.state.clone()));
    }
    c.local(m(
        2,
        MutationOp::Update,
        &id,
        json!({"n": 2}),
        Some(put.state.version),
    ))
    .unwrap();
    s.push(
        "other",
        &[m(1, MutationOp::Update, &id, json!({"x": 1}), None)],
    );
    let batch = c.next_push(100);
    let (resp, _) = s.push("c1", &batch);
    let keys = c.keys_of_push(&resp);
    load_keys(&mut c, &none, keys);
    let fx = c.on_push_response(&resp, &ServerWins);
    assert!(fx.server_put.is_empty());
    assert_eq!(
        c.pending(),
        1,
        "applied over a version it has not seen: waits"
    );
    assert!(matches!(c.outbox()[0].state, EntryState::Applied { .. }));
}

#[test]
fn an_edit_that_leaves_without_a_new_version_restamps_the_held_state() {
    // The server applies a patch the document already satisfies as a
    // no-op: at the version held, no new version, no change. The entry
    // leaves at once (not stored again as applied first), and the held
    // state is reported again, unchanged, so the binding's stored state
    // says that the record is the server's document again (a settle
    // marker in place of the first edit's copy: plan.rs `copies`).
    let mut s = ModelServer::new();
    s.push(
        "other",
        &[m(1, MutationOp::Insert, "a", json!({"n": 1}), None)],
    );
    let mut c = ClientSync::new();
    c.on_pull(&s.pull("c1", None, 100));
    let held = c.server_doc("todos", "a").unwrap().clone();
    c.evict();
    c.load("todos", "a", Some(held.clone()));
    c.local(m(
        1,
        MutationOp::Update,
        "a",
        json!({"n": 1}),
        Some(held.version),
    ))
    .unwrap();
    let batch = c.next_push(100);
    let (resp, changes) = s.push("c1", &batch);
    assert!(changes.is_empty(), "a no-op commits no change");
    assert!(matches!(
        resp.results[0],
        MutationResult::Applied { prev: None, version, .. } if version == held.version
    ));
    let fx = c.on_push_response(&resp, &ServerWins);
    assert_eq!(c.pending(), 0);
    assert_eq!(fx.outbox_drop, vec![1]);
    assert!(fx.outbox_put.is_empty(), "put as applied, then deleted");
    assert!(fx.views.is_empty());
    assert_eq!(fx.server_put.len(), 1);
    assert_eq!(fx.server_put[0].id, "a");
    assert_eq!(fx.server_put[0].state, held);
    assert_eq!(c.base_for("todos", "a"), Some(held.version));
    // An entry whose document keeps other entries restamps nothing: the
    // copy stays for them.
    c.local(m(
        2,
        MutationOp::Update,
        "a",
        json!({"n": 1}),
        Some(held.version),
    ))
    .unwrap();
    c.local(m(3, MutationOp::Update, "a", json!({"n": 2}), None))
        .unwrap();
    let batch = c.next_push(1);
    let (resp, _) = s.push("c1", &batch);
    let fx = c.on_push_response(&resp, &ServerWins);
    assert_eq!(fx.outbox_drop, vec![2]);
    assert!(fx.server_put.is_empty() && fx.outbox_put.is_empty());
    assert_eq!(c.base_for("todos", "a"), None);
}

#[test]
fn resync_sweeps_what_it_did_not_see_by_generation() {
    let mut c = ClientSync::new();
    let mut stored = std::collections::BTreeMap::new();
    c.evict();
    pull_bounded(
        &mut c,
        &mut stored,
        &pull(
            vec![
                put(1, "a", json!({"id": "a"})),
                put(2, "b", json!({"id": "b"})),
            ],
            "k2",
            false,
            0,
        ),
    );
    let before = c.gen();
    c.start_resync();
    assert_eq!(c.gen(), before + 1);
    let fx = pull_bounded(
        &mut c,
        &mut stored,
        &pull(vec![put(2, "b", json!({"id": "b"}))], "k3", false, 0),
    );
    // `b` was seen again: stamped with the new generation, not rewritten.
    assert!(fx.views.is_empty());
    assert_eq!(fx.server_put.len(), 1);
    assert_eq!(fx.server_put[0].state.gen, c.gen());
    assert_eq!(fx.sweep, Some(c.gen()), "`a` (older generation) is swept");
    assert!(!c.resyncing());
    assert_eq!(c.held(), 0);
}

#[test]
fn a_write_stamp_survives_js_and_is_kept_while_it_is_the_latest() {
    // The write path stamps its entries; the stamps cross JS as numbers.
    let wall = 1_796_000_000_000;
    let mut last = 0;
    let mut stamps = vec![];
    for _ in 0..100 {
        last = syncstore_core::sync::write_stamp(last, wall); // the same ms
        stamps.push(last);
    }
    assert!(
        stamps.windows(2).all(|w| w[0] < w[1]),
        "strictly increasing within one ms"
    );
    assert!(
        stamps.iter().all(|&t| (t as f64) as u64 == t),
        "exact as a JS number"
    );
    assert_eq!(stamps[0], wall << 16);
    assert!(syncstore_core::sync::write_stamp(0, u64::MAX) <= syncstore_core::sync::MAX_STAMP);
    // The engine keeps a stamp later than its clock, and its clock follows.
    let mut c = ClientSync::new();
    assert_eq!(c.stamp_local(Some(stamps[0]), wall), stamps[0]);
    assert_eq!(c.stamp_local(Some(stamps[1]), wall), stamps[1]);
    // One it has passed (another tab's write, a server clock ahead) is replaced by a later one.
    let replaced = c.stamp_local(Some(stamps[1]), wall);
    assert!(replaced > stamps[1]);
    assert!(c.stamp_local(Some(stamps[2]), wall) > replaced);
    assert!(c.stamp_local(None, wall) > stamps[2]);
}

/// `clone_evicted` (the binding plans the next page on it while the
/// current page commits) is the engine as `evict` leaves it: the states of
/// documents with outbox entries kept, everything else the same.
#[test]
fn clone_evicted_is_the_evicted_engine() {
    let mut c = ClientSync::new();
    let mut stored = std::collections::BTreeMap::new();
    c.evict();
    let doc = json!({"text": "server", "n": 1});
    pull_bounded(
        &mut c,
        &mut stored,
        &pull(
            (1..=5)
                .map(|s| put(s, &format!("d{s}"), doc.clone()))
                .collect(),
            "k1",
            true,
            0,
        ),
    );
    // A document with an outbox entry, and a page loaded but not evicted.
    load_keys(&mut c, &stored, vec![("todos".into(), "d2".into())]);
    c.local(m(1, MutationOp::Update, "d2", json!({"n": 2}), Some(2)))
        .unwrap();
    c.evict();
    let page = pull(
        (6..=9)
            .map(|s| put(s, &format!("d{s}"), doc.clone()))
            .collect(),
        "k2",
        true,
        0,
    );
    load_keys(
        &mut c,
        &stored,
        ClientSync::keys_of_changes(&page.changes).collect(),
    );
    c.on_pull(&page);
    assert!(c.held() > 1, "the page's states are held until evicted");
    let copy = c.clone_evicted();
    let mut evicted = c.clone();
    evicted.evict();
    assert_eq!(copy, evicted);
    assert_eq!(copy.held(), 1);
    assert_eq!(copy.server_doc("todos", "d2").map(|d| d.version), Some(2));
    assert_eq!(copy.cursor(), Some("k2"));
}

//! The step planner's storage rules (`syncstore_core::sync::plan`), one
//! test per rule: what a step writes for the engine's effects.

use syncstore_core::sorted::SortedSet;

use serde_json::{json, Value};
use syncstore_core::protocol::{
    Change, ChangeOp, JsonObject, Mutation, MutationOp, MutationResult, PullResponse, PushResponse,
};
use syncstore_core::schema::Schema;
use syncstore_core::sync::plan::{Planner, StepPlan};
use syncstore_core::sync::{ClientSync, ServerDoc, ServerWins};

fn schema() -> Schema {
    Schema::from_options(&json!({"collections": {
        "todos": {"indexes": ["n"]},
        "notes": {"sync": "local"},
    }}))
    .unwrap()
}

/// Document `a` of `todos` at server version 4.
fn a_at_4() -> ServerDoc {
    ServerDoc {
        doc: Some(obj(json!({"id": "a", "n": 1})).into()),
        version: 4,
        gen: 0,
    }
}

/// `{n: 2}` patched onto document `a` of `todos`, based on version 4 (mid 1).
fn update_a_over_4() -> Mutation {
    Mutation {
        mid: 1,
        coll: "todos".into(),
        op: MutationOp::Update,
        id: "a".into(),
        doc: None,
        patch: Some(obj(json!({"n": 2})).into()),
        base: Some(4),
        ts: None,
    }
}

fn obj(v: Value) -> JsonObject {
    v.as_object().unwrap().clone()
}

fn change(seq: u64, id: &str, doc: Option<Value>) -> Change {
    Change {
        seq,
        coll: "todos".into(),
        id: id.into(),
        op: if doc.is_some() {
            ChangeOp::Put
        } else {
            ChangeOp::Delete
        },
        doc: doc.map(|d| obj(d).into()),
        version: seq,
        ts: None,
    }
}

fn page(changes: Vec<Change>) -> PullResponse {
    PullResponse {
        resync: false,
        changes,
        cursor: "k".into(),
        more: false,
        last_mutation_id: 0,
        total: None,
    }
}

/// The server's answer to mutation 1 (of document `id` of `todos`): applied
/// at `version` over exactly `prev`.
fn applied(id: &str, version: u64, prev: u64) -> PushResponse {
    PushResponse {
        results: vec![MutationResult::Applied {
            mid: 1,
            id: id.into(),
            version,
            prev: Some(prev),
        }],
        id_map: Default::default(),
        last_mutation_id: 1,
    }
}

/// The request that puts the settle marker of document `id` of `todos`.
fn marker(id: &str, version: u64) -> Value {
    json!({"s": "_server", "put": {"coll": "todos", "id": id, "version": version, "m": 1}})
}

/// The ops a plan writes to `store`.
fn ops_on<'a>(plan: &'a StepPlan, store: &str) -> Vec<&'a Value> {
    plan.ops.iter().filter(|o| o["s"] == store).collect()
}

fn plan(
    eng: &mut ClientSync,
    copied: &mut SortedSet<(String, String)>,
    input: impl FnOnce(&mut ClientSync) -> syncstore_core::sync::Effects,
) -> StepPlan {
    let s = schema();
    let fx = input(eng);
    let mut out = StepPlan::default();
    let mut p = Planner {
        schema: &s,
        copied,
        now: 1.0,
        changes: true,
    };
    p.effects(eng, &fx, &mut out, true);
    p.finish(eng, &mut out);
    out
}

#[test]
fn a_pulled_document_is_one_record_with_its_version() {
    let mut eng = ClientSync::new();
    let mut copied = SortedSet::new();
    eng.load("todos", "a", None);
    let out = plan(&mut eng, &mut copied, |e| {
        e.on_pull(&page(vec![change(
            3,
            "a",
            Some(json!({"id": "a", "n": 1})),
        )]))
    });
    let recs = ops_on(&out, "todos");
    assert_eq!(recs.len(), 1);
    let rec = &recs[0]["put"];
    assert_eq!(rec["id"], "a");
    assert_eq!(rec["v"], 3);
    assert_eq!(rec["d"], "{\"id\":\"a\",\"n\":1}");
    assert!(
        rec.get("s").is_none(),
        "no marker: the record is the server's document"
    );
    assert!(ops_on(&out, "_server").is_empty(), "no second copy");
    assert_eq!(
        out.changes,
        vec![
            json!({"coll": "todos", "id": "a", "op": "insert", "deleted": false,
            "doc": {"id": "a", "n": 1}})
        ]
    );
}

#[test]
fn server_changes_name_their_op_and_document_only_when_asked() {
    let mut eng = ClientSync::new();
    let mut copied = SortedSet::new();
    let state = |n: i64| {
        Some(ServerDoc {
            doc: Some(obj(json!({"id": "a", "n": n})).into()),
            version: 2,
            gen: 0,
        })
    };
    eng.load("todos", "a", state(1));
    let out = plan(&mut eng, &mut copied, |e| {
        e.on_pull(&page(vec![change(
            3,
            "a",
            Some(json!({"id": "a", "n": 2})),
        )]))
    });
    assert_eq!(
        out.changes,
        vec![
            json!({"coll": "todos", "id": "a", "op": "update", "deleted": false,
            "doc": {"id": "a", "n": 2}})
        ]
    );
    eng.evict();
    eng.load("todos", "a", state(2));
    let out = plan(&mut eng, &mut copied, |e| {
        e.on_pull(&page(vec![change(4, "a", None)]))
    });
    assert_eq!(
        out.changes,
        vec![json!({"coll": "todos", "id": "a", "op": "delete", "deleted": true})]
    );
    // Nobody listens: nothing is listed.
    eng.evict();
    eng.load("todos", "b", None);
    let s = schema();
    let fx = eng.on_pull(&page(vec![change(5, "b", Some(json!({"id": "b"})))]));
    let mut out = StepPlan::default();
    let mut p = Planner {
        schema: &s,
        copied: &mut copied,
        now: 1.0,
        changes: false,
    };
    p.effects(&eng, &fx, &mut out, true);
    assert!(out.changes.is_empty());
    assert!(
        !ops_on(&out, "todos").is_empty(),
        "the record is still written"
    );
}

#[test]
fn a_tombstone_is_kept_in_server_and_the_record_deleted() {
    let mut eng = ClientSync::new();
    let mut copied = SortedSet::new();
    eng.load(
        "todos",
        "a",
        Some(ServerDoc {
            doc: Some(obj(json!({"id": "a"})).into()),
            version: 2,
            gen: 0,
        }),
    );
    let out = plan(&mut eng, &mut copied, |e| {
        e.on_pull(&page(vec![change(5, "a", None)]))
    });
    assert_eq!(
        ops_on(&out, "todos"),
        vec![&json!({"s": "todos", "del": "a"})]
    );
    let server = ops_on(&out, "_server");
    assert_eq!(server.len(), 1);
    assert_eq!(server[0]["put"]["doc"], Value::Null);
    assert_eq!(server[0]["put"]["version"], 5);
    assert!(copied.contains(&("todos".to_string(), "a".to_string())));
}

#[test]
fn an_edited_document_keeps_the_server_copy_until_it_settles() {
    let mut eng = ClientSync::new();
    let mut copied = SortedSet::new();
    let base = a_at_4();
    eng.load("todos", "a", Some(base.clone()));
    let m = update_a_over_4();
    // The first edit: the record stood for the server's document, so its
    // copy goes to `_server` and the record gets the marker `s`.
    let out = plan(&mut eng, &mut copied, |e| e.local(m).unwrap());
    let server = ops_on(&out, "_server");
    assert_eq!(server.len(), 1, "the server's copy is saved");
    assert_eq!(server[0]["put"]["version"], 4);
    let rec = &ops_on(&out, "todos")[0]["put"];
    assert_eq!(rec["s"], 1);
    assert_eq!(
        rec["v"], 4,
        "the record keeps the server version it is based on"
    );
    assert_eq!(ops_on(&out, "_outbox").len(), 1);
    // Applied over exactly version 4: settled on the answer. The record
    // already shows the document: it is not written again; a settle marker
    // takes the copy's place and names the new version.
    let out = plan(&mut eng, &mut copied, |e| {
        e.on_push_response(&applied("a", 9, 4), &ServerWins)
    });
    assert_eq!(ops_on(&out, "_server"), vec![&marker("a", 9)]);
    assert!(
        ops_on(&out, "todos").is_empty(),
        "the record is not written again"
    );
    assert!(out.colls.is_empty(), "no document changed");
    assert!(out.restamped.contains("todos"), "the sync state did");
    assert_eq!(
        ops_on(&out, "_outbox"),
        vec![&json!({"s": "_outbox", "del": 1})]
    );
}

#[test]
fn a_settled_insert_gets_a_settle_marker_and_a_later_change_replaces_it() {
    let mut eng = ClientSync::new();
    let mut copied = SortedSet::new();
    let insert = Mutation {
        mid: 1,
        coll: "todos".into(),
        op: MutationOp::Insert,
        id: "b".into(),
        doc: Some(obj(json!({"id": "b", "n": 1})).into()),
        patch: None,
        base: None,
        ts: None,
    };
    eng.load("todos", "b", None);
    plan(&mut eng, &mut copied, |e| e.local(insert).unwrap());
    let out = plan(&mut eng, &mut copied, |e| {
        e.on_push_response(&applied("b", 5, 0), &ServerWins)
    });
    assert_eq!(ops_on(&out, "_server"), vec![&marker("b", 5)]);
    assert!(ops_on(&out, "todos").is_empty());
    // A server change to the document writes its record (the server's
    // document, version 8, no marker `s`) and drops the settle marker,
    // which would otherwise outrank the record's version.
    let out = plan(&mut eng, &mut copied, |e| {
        e.on_pull(&page(vec![change(
            8,
            "b",
            Some(json!({"id": "b", "n": 3})),
        )]))
    });
    assert_eq!(
        ops_on(&out, "_server"),
        vec![&json!({"s": "_server", "del": ["todos", "b"]})]
    );
    let rec = &ops_on(&out, "todos")[0]["put"];
    assert_eq!(rec["v"], 8);
    assert!(rec.get("s").is_none());
    assert!(copied.is_empty());
}

#[test]
fn local_only_collections_are_never_written_by_a_step() {
    let mut eng = ClientSync::new();
    let mut copied = SortedSet::new();
    eng.load("notes", "n1", None);
    let out = plan(&mut eng, &mut copied, |e| {
        e.on_pull(&page(vec![Change {
            coll: "notes".into(),
            ..change(1, "n1", Some(json!({"id": "n1"})))
        }]))
    });
    assert!(ops_on(&out, "notes").is_empty());
}

#[test]
fn a_completed_resync_sweeps_last_and_keeps_pending_documents() {
    let mut eng = ClientSync::new();
    let mut copied = SortedSet::new();
    eng.load("todos", "p", None);
    eng.local(Mutation {
        mid: 1,
        coll: "todos".into(),
        op: MutationOp::Insert,
        id: "p".into(),
        doc: Some(obj(json!({"id": "p"})).into()),
        patch: None,
        base: None,
        ts: None,
    })
    .unwrap();
    eng.start_resync();
    eng.load("todos", "a", None);
    let out = plan(&mut eng, &mut copied, |e| {
        e.on_pull(&page(vec![change(7, "a", Some(json!({"id": "a"})))]))
    });
    let last = out.ops.last().unwrap();
    assert_eq!(last["sweep"]["gen"], eng.gen());
    assert_eq!(last["sweep"]["keep"], json!(["todos\u{0}p"]));
    assert_eq!(last["sweep"]["colls"], json!(["todos"]));
    let rec = &ops_on(&out, "todos")[0]["put"];
    assert_eq!(
        rec["g"],
        eng.gen(),
        "what the resync saw carries its generation"
    );
    assert_eq!(out.sweep, Some(eng.gen()));
}

#[test]
fn a_rejected_mutation_is_kept_for_review_in_the_step_that_rolls_it_back() {
    let mut eng = ClientSync::new();
    let mut copied = SortedSet::new();
    let base = a_at_4();
    eng.load("todos", "a", Some(base));
    let m = update_a_over_4();
    plan(&mut eng, &mut copied, |e| e.local(m).unwrap());
    let resp = PushResponse {
        results: vec![MutationResult::Rejected {
            mid: 1,
            code: "FORBIDDEN".into(),
            message: "read-only".into(),
        }],
        id_map: Default::default(),
        last_mutation_id: 1,
    };
    let out = plan(&mut eng, &mut copied, |e| {
        e.on_push_response(&resp, &ServerWins)
    });
    assert_eq!(
        ops_on(&out, "_rejected"),
        vec![&json!({"s": "_rejected", "put": {
            "mid": 1, "coll": "todos", "id": "a", "code": "FORBIDDEN", "message": "read-only",
            "op": "update", "doc": {"id": "a", "n": 2}, "at": 1.0,
        }})],
        "the document as the write left it, the reason and the time"
    );
    assert_eq!(
        ops_on(&out, "_outbox"),
        vec![&json!({"s": "_outbox", "del": 1})]
    );
    assert_eq!(
        ops_on(&out, "todos")[0]["put"]["d"],
        "{\"id\":\"a\",\"n\":1}",
        "rolled back"
    );
}

//! The wire and stored JSON forms, byte for byte: every protocol frame and
//! every persisted engine record against a literal text written from the
//! derive-based serde these types had before their serde was made plain
//! (issue 19). Each text must serialize exactly so and parse back (from the
//! text and from a `serde_json::Value`, as the binding reads `_outbox`) to
//! the same value; the read side's tolerance (fields in any order, unknown
//! fields ignored, optional fields absent) and its errors are pinned too.

use std::fmt::Debug;
use syncstore_core::sorted::SortedMap;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use syncstore_core::protocol::{
    Change, ChangeOp, ClientMessage, JsonObject, Mutation, MutationOp, MutationResult,
    PushResponse, ServerLimits, ServerMessage,
};
use syncstore_core::sync::{
    Effects, Entry, EntryState, Event, Rekey, ServerDoc, ServerRecord, ViewChange,
};

fn obj(v: Value) -> JsonObject {
    match v {
        Value::Object(o) => o,
        _ => panic!("not an object"),
    }
}

/// `value` serializes to exactly `text`, and `text` reads back as `value`
/// (from the text and from its parsed `Value`).
fn golden<T: Serialize + DeserializeOwned + PartialEq + Debug>(value: &T, text: &str) {
    assert_eq!(serde_json::to_string(value).unwrap(), text);
    assert_eq!(&serde_json::from_str::<T>(text).unwrap(), value, "{text}");
    let v: Value = serde_json::from_str(text).unwrap();
    assert_eq!(serde_json::to_value(value).unwrap(), v);
    assert_eq!(&serde_json::from_value::<T>(v).unwrap(), value, "{text}");
}

/// `text` reads as `value` (both from the text and from its `Value`).
fn reads<T: DeserializeOwned + PartialEq + Debug>(text: &str, value: &T) {
    assert_eq!(&serde_json::from_str::<T>(text).unwrap(), value, "{text}");
    let v: Value = serde_json::from_str(text).unwrap();
    assert_eq!(&serde_json::from_value::<T>(v).unwrap(), value, "{text}");
}

/// `text` is refused, with an error message starting with `message`.
fn refused<T: DeserializeOwned + Debug>(text: &str, message: &str) {
    let e = serde_json::from_str::<T>(text).unwrap_err().to_string();
    assert!(e.starts_with(message), "{text}: {e}");
    let v: Value = serde_json::from_str(text).unwrap();
    let e = serde_json::from_value::<T>(v).unwrap_err().to_string();
    assert!(e.starts_with(message), "{text} (as a Value): {e}");
}

fn mutation(op: MutationOp) -> Mutation {
    let (doc, patch) = match op {
        MutationOp::Insert | MutationOp::Replace => (Some(obj(json!({"t": "x", "n": 1}))), None),
        MutationOp::Update => (None, Some(obj(json!({"n": null, "done": true})))),
        MutationOp::Delete => (None, None),
    };
    Mutation {
        mid: 7,
        coll: "todos".into(),
        op,
        id: "tmp_1".into(),
        doc: doc.map(Into::into),
        patch: patch.map(Into::into),
        base: None,
        ts: None,
    }
}

fn entry(m: Mutation, state: EntryState, base_doc: Option<Value>) -> Entry {
    Entry {
        mutation: m,
        state,
        base_doc: base_doc.map(|d| obj(d).into()),
    }
}

#[test]
fn mutations() {
    golden(
        &mutation(MutationOp::Insert),
        r#"{"mid":7,"coll":"todos","op":"insert","id":"tmp_1","doc":{"t":"x","n":1},"base":null}"#,
    );
    golden(
        &Mutation {
            base: Some(4),
            ts: Some(65536),
            ..mutation(MutationOp::Update)
        },
        r#"{"mid":7,"coll":"todos","op":"update","id":"tmp_1","patch":{"n":null,"done":true},"base":4,"ts":65536}"#,
    );
    reads(
        r#"{"op":"delete","id":"a","coll":"todos","mid":7,"extra":[1]}"#,
        &Mutation {
            id: "a".into(),
            ..mutation(MutationOp::Delete)
        },
    );
}

#[test]
fn outbox_entries_in_every_state() {
    let m = mutation(MutationOp::Insert);
    golden(
        &entry(m.clone(), EntryState::Pending, None),
        r#"{"mid":7,"coll":"todos","op":"insert","id":"tmp_1","doc":{"t":"x","n":1},"base":null,"state":"pending"}"#,
    );
    golden(
        &entry(m.clone(), EntryState::Acked, None),
        r#"{"mid":7,"coll":"todos","op":"insert","id":"tmp_1","doc":{"t":"x","n":1},"base":null,"state":"acked"}"#,
    );
    golden(
        &entry(m.clone(), EntryState::Applied { version: 12 }, None),
        r#"{"mid":7,"coll":"todos","op":"insert","id":"tmp_1","doc":{"t":"x","n":1},"base":null,"state":"applied","version":12}"#,
    );
    golden(
        &entry(m, EntryState::Parked, None),
        r#"{"mid":7,"coll":"todos","op":"insert","id":"tmp_1","doc":{"t":"x","n":1},"base":null,"state":"parked"}"#,
    );
    let u = Mutation {
        id: "a".into(),
        base: Some(4),
        ts: Some(131072),
        ..mutation(MutationOp::Update)
    };
    let base_doc = json!({"id": "a", "t": "old", "n": 1});
    golden(
        &entry(u.clone(), EntryState::Pending, Some(base_doc.clone())),
        r#"{"mid":7,"coll":"todos","op":"update","id":"a","patch":{"n":null,"done":true},"base":4,"ts":131072,"state":"pending","baseDoc":{"id":"a","t":"old","n":1}}"#,
    );
    golden(
        &entry(
            u.clone(),
            EntryState::Applied { version: 9 },
            Some(base_doc.clone()),
        ),
        r#"{"mid":7,"coll":"todos","op":"update","id":"a","patch":{"n":null,"done":true},"base":4,"ts":131072,"state":"applied","version":9,"baseDoc":{"id":"a","t":"old","n":1}}"#,
    );
    golden(
        &entry(u.clone(), EntryState::Parked, Some(base_doc.clone())),
        r#"{"mid":7,"coll":"todos","op":"update","id":"a","patch":{"n":null,"done":true},"base":4,"ts":131072,"state":"parked","baseDoc":{"id":"a","t":"old","n":1}}"#,
    );
    golden(
        &entry(
            Mutation {
                id: "a".into(),
                base: Some(9),
                ..mutation(MutationOp::Delete)
            },
            EntryState::Acked,
            Some(base_doc.clone()),
        ),
        r#"{"mid":7,"coll":"todos","op":"delete","id":"a","base":9,"state":"acked","baseDoc":{"id":"a","t":"old","n":1}}"#,
    );
    // One write's batch: several entries as the outbox store holds them.
    let batch: Vec<Entry> = (0..3)
        .map(|i| {
            let mut m = mutation(if i == 1 {
                MutationOp::Replace
            } else {
                MutationOp::Insert
            });
            m.mid = 20 + i;
            m.id = format!("tmp_{i}");
            m.ts = Some(196608);
            entry(m, EntryState::Pending, None)
        })
        .collect();
    golden(
        &batch,
        concat!(
            r#"[{"mid":20,"coll":"todos","op":"insert","id":"tmp_0","doc":{"t":"x","n":1},"base":null,"ts":196608,"state":"pending"},"#,
            r#"{"mid":21,"coll":"todos","op":"replace","id":"tmp_1","doc":{"t":"x","n":1},"base":null,"ts":196608,"state":"pending"},"#,
            r#"{"mid":22,"coll":"todos","op":"insert","id":"tmp_2","doc":{"t":"x","n":1},"base":null,"ts":196608,"state":"pending"}]"#
        ),
    );
}

#[test]
fn outbox_entries_read_in_any_order_and_ignore_other_fields() {
    // The binding's own fields (none today) or a future version's must not
    // make an entry unreadable; the state may come first.
    reads(
        r#"{"state":"applied","baseDoc":{"id":"a"},"version":3,"x":1,"op":"delete","id":"a","coll":"todos","mid":2}"#,
        &entry(
            Mutation {
                mid: 2,
                id: "a".into(),
                ..mutation(MutationOp::Delete)
            },
            EntryState::Applied { version: 3 },
            Some(json!({"id": "a"})),
        ),
    );
    // A pending entry with a stray version keeps no version.
    reads(
        r#"{"mid":2,"coll":"todos","op":"delete","id":"a","base":null,"state":"pending","version":3}"#,
        &entry(
            Mutation {
                mid: 2,
                id: "a".into(),
                ..mutation(MutationOp::Delete)
            },
            EntryState::Pending,
            None,
        ),
    );
    // An explicit null baseDoc is no baseDoc.
    reads(
        r#"{"mid":2,"coll":"todos","op":"delete","id":"a","state":"acked","baseDoc":null}"#,
        &entry(
            Mutation {
                mid: 2,
                id: "a".into(),
                ..mutation(MutationOp::Delete)
            },
            EntryState::Acked,
            None,
        ),
    );
}

#[test]
fn bad_outbox_entries_are_refused() {
    refused::<Entry>(
        r#"{"mid":2,"coll":"todos","op":"delete","id":"a","state":"sent"}"#,
        "unknown variant `sent`, expected one of `pending`, `acked`, `applied`, `parked`",
    );
    refused::<Entry>(
        r#"{"mid":2,"coll":"todos","op":"delete","id":"a"}"#,
        "missing field `state`",
    );
    refused::<Entry>(
        r#"{"mid":2,"coll":"todos","op":"delete","id":"a","state":"applied"}"#,
        "missing field `version`",
    );
    refused::<Entry>(
        r#"{"coll":"todos","op":"delete","id":"a","state":"pending"}"#,
        "missing field `mid`",
    );
    refused::<Entry>(
        r#"{"mid":2,"coll":"todos","op":"upsert","id":"a","state":"pending"}"#,
        "unknown variant `upsert`",
    );
    refused::<Entry>(r#"[1,2]"#, "");
    refused::<Entry>(r#""pending""#, "invalid type");
}

#[test]
fn server_records() {
    golden(
        &ServerRecord {
            coll: "todos".into(),
            id: "a".into(),
            state: ServerDoc {
                doc: Some(obj(json!({"id": "a", "n": 2})).into()),
                version: 5,
                gen: 0,
            },
        },
        r#"{"coll":"todos","id":"a","doc":{"id":"a","n":2},"version":5}"#,
    );
    let tombstone = ServerRecord {
        coll: "todos".into(),
        id: "b".into(),
        state: ServerDoc {
            doc: None,
            version: 6,
            gen: 2,
        },
    };
    golden(
        &tombstone,
        r#"{"coll":"todos","id":"b","doc":null,"version":6,"gen":2}"#,
    );
    reads(
        r#"{"gen":2,"version":6,"x":true,"id":"b","coll":"todos"}"#,
        &tombstone,
    );
    refused::<ServerRecord>(
        r#"{"coll":"todos","id":"b","doc":null}"#,
        "missing field `version`",
    );
    refused::<ServerRecord>(
        r#"{"id":"b","doc":null,"version":1}"#,
        "missing field `coll`",
    );
    golden(
        &ServerDoc {
            doc: None,
            version: 6,
            gen: 2,
        },
        r#"{"doc":null,"version":6,"gen":2}"#,
    );
}

fn results() -> Vec<(MutationResult, &'static str)> {
    vec![
        (
            MutationResult::Applied {
                mid: 1,
                id: "a".into(),
                version: 5,
                prev: Some(0),
            },
            r#"{"status":"applied","mid":1,"id":"a","version":5,"prev":0}"#,
        ),
        (
            MutationResult::Applied {
                mid: 2,
                id: "a".into(),
                version: 5,
                prev: None,
            },
            r#"{"status":"applied","mid":2,"id":"a","version":5}"#,
        ),
        (
            MutationResult::Conflict {
                mid: 3,
                id: "b".into(),
                doc: Some(obj(json!({"id": "b", "t": "theirs"}))),
                version: Some(8),
                ts: Some(65536),
            },
            r#"{"status":"conflict","mid":3,"id":"b","doc":{"id":"b","t":"theirs"},"version":8,"ts":65536}"#,
        ),
        (
            MutationResult::Conflict {
                mid: 4,
                id: "c".into(),
                doc: None,
                version: None,
                ts: None,
            },
            r#"{"status":"conflict","mid":4,"id":"c","doc":null,"version":null}"#,
        ),
        (
            MutationResult::Rejected {
                mid: 5,
                code: "DOC_TOO_LARGE".into(),
                message: "too large".into(),
            },
            r#"{"status":"rejected","mid":5,"code":"DOC_TOO_LARGE","message":"too large"}"#,
        ),
    ]
}

#[test]
fn mutation_results() {
    for (r, text) in results() {
        golden(&r, text);
    }
    reads(
        r#"{"mid":4,"id":"c","x":{"y":[]},"status":"conflict"}"#,
        &MutationResult::Conflict {
            mid: 4,
            id: "c".into(),
            doc: None,
            version: None,
            ts: None,
        },
    );
    refused::<MutationResult>(
        r#"{"status":"ok","mid":1}"#,
        "unknown variant `ok`, expected one of `applied`, `conflict`, `rejected`",
    );
    refused::<MutationResult>(
        r#"{"mid":1,"id":"a","version":5}"#,
        "missing field `status`",
    );
    refused::<MutationResult>(
        r#"{"status":"applied","mid":1,"id":"a"}"#,
        "missing field `version`",
    );
    refused::<MutationResult>(
        r#"{"status":"rejected","mid":1,"code":"X"}"#,
        "missing field `message`",
    );
}

#[test]
fn client_messages() {
    golden(
        &ClientMessage::Hello {
            client_id: "c1".into(),
            cursor: Some("e.4".into()),
            token: Some("t".into()),
        },
        r#"{"type":"hello","clientId":"c1","cursor":"e.4","token":"t"}"#,
    );
    let bare_hello = ClientMessage::Hello {
        client_id: "c1".into(),
        cursor: None,
        token: None,
    };
    golden(
        &bare_hello,
        r#"{"type":"hello","clientId":"c1","cursor":null,"token":null}"#,
    );
    reads(r#"{"clientId":"c1","type":"hello","v":2}"#, &bare_hello);
    golden(
        &ClientMessage::Push {
            client_id: Some("c1".into()),
            mutations: vec![mutation(MutationOp::Insert)],
            rid: Some("r1".into()),
        },
        r#"{"type":"push","clientId":"c1","mutations":[{"mid":7,"coll":"todos","op":"insert","id":"tmp_1","doc":{"t":"x","n":1},"base":null}],"rid":"r1"}"#,
    );
    let bare_push = ClientMessage::Push {
        client_id: None,
        mutations: vec![],
        rid: None,
    };
    golden(
        &bare_push,
        r#"{"type":"push","clientId":null,"mutations":[],"rid":null}"#,
    );
    reads(r#"{"mutations":[],"type":"push"}"#, &bare_push);
    golden(&ClientMessage::Ping, r#"{"type":"ping"}"#);
    golden(&ClientMessage::Pong, r#"{"type":"pong"}"#);
    reads(r#"{"type":"ping","at":1}"#, &ClientMessage::Ping);
    refused::<ClientMessage>(
        r#"{"type":"bye"}"#,
        "unknown variant `bye`, expected one of `hello`, `push`, `ping`, `pong`",
    );
    refused::<ClientMessage>(r#"{"clientId":"c1"}"#, "missing field `type`");
    refused::<ClientMessage>(r#"{"type":"hello"}"#, "missing field `clientId`");
    refused::<ClientMessage>(r#"{"type":"push"}"#, "missing field `mutations`");
    refused::<ClientMessage>(r#"{"type":7}"#, "invalid type");
    // An array is no frame (the message varies: only refusal is pinned).
    refused::<ClientMessage>(r#"[]"#, "");
}

#[test]
fn server_messages() {
    let change = Change {
        seq: 41,
        coll: "todos".into(),
        id: "a".into(),
        op: ChangeOp::Put,
        doc: Some(obj(json!({"id": "a", "n": 1})).into()),
        version: 41,
        ts: Some(65536),
    };
    let gone = Change {
        seq: 42,
        coll: "todos".into(),
        id: "b".into(),
        op: ChangeOp::Delete,
        doc: None,
        version: 42,
        ts: None,
    };
    golden(
        &ServerMessage::Changes {
            changes: vec![change, gone],
            cursor: "e.42".into(),
        },
        r#"{"type":"changes","changes":[{"seq":41,"coll":"todos","id":"a","op":"put","doc":{"id":"a","n":1},"version":41,"ts":65536},{"seq":42,"coll":"todos","id":"b","op":"delete","doc":null,"version":42}],"cursor":"e.42"}"#,
    );
    golden(
        &ServerMessage::Synced {
            cursor: "e.42".into(),
            last_mutation_id: 9,
            limits: Some(ServerLimits {
                max_doc_bytes: 1000,
                max_mutations_per_push: 50,
                max_body_bytes: 2000,
            }),
        },
        r#"{"type":"synced","cursor":"e.42","lastMutationId":9,"limits":{"maxDocBytes":1000,"maxMutationsPerPush":50,"maxBodyBytes":2000}}"#,
    );
    let synced = ServerMessage::Synced {
        cursor: "0".into(),
        last_mutation_id: 0,
        limits: None,
    };
    golden(
        &synced,
        r#"{"type":"synced","cursor":"0","lastMutationId":0}"#,
    );
    reads(
        r#"{"lastMutationId":0,"cursor":"0","type":"synced","limits":null,"x":1}"#,
        &synced,
    );
    golden(
        &ServerMessage::Resync { cursor: "0".into() },
        r#"{"type":"resync","cursor":"0"}"#,
    );
    let mut id_map = SortedMap::new();
    id_map.insert("tmp_1".to_string(), "a".to_string());
    id_map.insert("tmp_0".to_string(), "z".to_string());
    let response = PushResponse {
        results: results().into_iter().map(|(r, _)| r).collect(),
        id_map,
        last_mutation_id: 5,
    };
    golden(
        &ServerMessage::PushResult {
            rid: Some("r1".into()),
            response: response.clone(),
        },
        concat!(
            r#"{"type":"pushResult","rid":"r1","results":["#,
            r#"{"status":"applied","mid":1,"id":"a","version":5,"prev":0},"#,
            r#"{"status":"applied","mid":2,"id":"a","version":5},"#,
            r#"{"status":"conflict","mid":3,"id":"b","doc":{"id":"b","t":"theirs"},"version":8,"ts":65536},"#,
            r#"{"status":"conflict","mid":4,"id":"c","doc":null,"version":null},"#,
            r#"{"status":"rejected","mid":5,"code":"DOC_TOO_LARGE","message":"too large"}"#,
            r#"],"idMap":{"tmp_0":"z","tmp_1":"a"},"lastMutationId":5}"#
        ),
    );
    let bare = ServerMessage::PushResult {
        rid: None,
        response: PushResponse {
            results: vec![],
            id_map: SortedMap::new(),
            last_mutation_id: 0,
        },
    };
    golden(
        &bare,
        r#"{"type":"pushResult","results":[],"idMap":{},"lastMutationId":0}"#,
    );
    reads(
        r#"{"lastMutationId":0,"idMap":{},"x":[],"results":[],"type":"pushResult"}"#,
        &bare,
    );
    refused::<ServerMessage>(
        r#"{"type":"pushResult","results":[],"lastMutationId":0}"#,
        "missing field `idMap`",
    );
    // The HTTP push answer is the same object without `type` and `rid`.
    golden(
        &response,
        &serde_json::to_string(&ServerMessage::PushResult {
            rid: None,
            response: response.clone(),
        })
        .unwrap()
        .replace(r#""type":"pushResult","#, ""),
    );
    golden(
        &ServerMessage::Error {
            rid: Some("r2".into()),
            code: "RATE_LIMITED".into(),
            message: "slow down".into(),
            retry_after: Some(3),
        },
        r#"{"type":"error","rid":"r2","code":"RATE_LIMITED","message":"slow down","retryAfter":3}"#,
    );
    golden(
        &ServerMessage::Error {
            rid: None,
            code: "UNAUTHORIZED".into(),
            message: "no".into(),
            retry_after: None,
        },
        r#"{"type":"error","code":"UNAUTHORIZED","message":"no"}"#,
    );
    golden(&ServerMessage::Ping, r#"{"type":"ping"}"#);
    golden(&ServerMessage::Pong, r#"{"type":"pong"}"#);
    refused::<ServerMessage>(
        r#"{"type":"welcome"}"#,
        "unknown variant `welcome`, expected one of `changes`, `synced`, `resync`, `pushResult`, `error`, `ping`, `pong`",
    );
    refused::<ServerMessage>(r#"{"cursor":"0"}"#, "missing field `type`");
    refused::<ServerMessage>(
        r#"{"type":"changes","cursor":"0"}"#,
        "missing field `changes`",
    );
    refused::<ServerMessage>(r#"{"type":"error","code":"X"}"#, "missing field `message`");
}

#[test]
fn events_and_effects() {
    let events = [
        Event::Idmap {
            tmp: "tmp_1".into(),
            id: "a".into(),
        },
        Event::Rejected {
            mid: 3,
            coll: "todos".into(),
            id: "a".into(),
            code: "DOC_TOO_LARGE".into(),
            message: "too large".into(),
            op: MutationOp::Update,
            doc: Some(obj(json!({"id": "a", "n": 2}))),
        },
        Event::Rejected {
            mid: 4,
            coll: "todos".into(),
            id: "b".into(),
            code: "FORBIDDEN".into(),
            message: "no".into(),
            op: MutationOp::Delete,
            doc: None,
        },
        Event::Conflict {
            mid: 5,
            coll: "todos".into(),
            id: "c".into(),
            local: Some(obj(json!({"id": "c", "t": "mine"}))),
            remote: None,
            resolution: "both".into(),
        },
    ];
    let texts = [
        r#"{"type":"idmap","tmp":"tmp_1","id":"a"}"#,
        r#"{"type":"rejected","mid":3,"coll":"todos","id":"a","code":"DOC_TOO_LARGE","message":"too large","op":"update","doc":{"id":"a","n":2}}"#,
        r#"{"type":"rejected","mid":4,"coll":"todos","id":"b","code":"FORBIDDEN","message":"no","op":"delete"}"#,
        r#"{"type":"conflict","mid":5,"coll":"todos","id":"c","local":{"id":"c","t":"mine"},"remote":null,"resolution":"both"}"#,
    ];
    for (e, text) in events.iter().zip(texts) {
        golden(e, text);
    }
    reads(
        r#"{"id":"a","tmp":"tmp_1","type":"idmap","z":0}"#,
        &events[0],
    );
    refused::<Event>(
        r#"{"type":"synced"}"#,
        "unknown variant `synced`, expected one of `idmap`, `rejected`, `conflict`",
    );
    refused::<Event>(r#"{"tmp":"t","id":"a"}"#, "missing field `type`");
    refused::<Event>(r#"{"type":"idmap","tmp":"t"}"#, "missing field `id`");

    let effects = Effects {
        rekeys: vec![Rekey {
            coll: "todos".into(),
            tmp: "tmp_1".into(),
            id: "a".into(),
        }],
        views: vec![ViewChange {
            coll: "todos".into(),
            id: "a".into(),
            doc: Some(obj(json!({"id": "a"})).into()),
            existed: true,
        }],
        outbox_put: vec![entry(
            mutation(MutationOp::Insert),
            EntryState::Applied { version: 3 },
            None,
        )],
        outbox_drop: vec![1, 2],
        sweep: Some(2),
        server_put: vec![ServerRecord {
            coll: "todos".into(),
            id: "a".into(),
            state: ServerDoc {
                doc: None,
                version: 3,
                gen: 2,
            },
        }],
        cursor: Some("e.3".into()),
        events: vec![events[0].clone()],
    };
    golden(
        &effects,
        concat!(
            r#"{"rekeys":[{"coll":"todos","tmp":"tmp_1","id":"a"}],"#,
            r#""views":[{"coll":"todos","id":"a","doc":{"id":"a"},"existed":true}],"#,
            r#""outboxPut":[{"mid":7,"coll":"todos","op":"insert","id":"tmp_1","doc":{"t":"x","n":1},"base":null,"state":"applied","version":3}],"#,
            r#""outboxDrop":[1,2],"sweep":2,"#,
            r#""serverPut":[{"coll":"todos","id":"a","doc":null,"version":3,"gen":2}],"#,
            r#""cursor":"e.3","events":[{"type":"idmap","tmp":"tmp_1","id":"a"}]}"#
        ),
    );
}

/// An outbox entry as the write path stores it, with its document or
/// patch as a JSON object in the record (as every version so far stored
/// it), loads with the document as text, is written back and pushed as the
/// same JSON; a record stored by the version before the text does too.
#[test]
fn outbox_entries_stored_before_the_text_load_and_push_unchanged() {
    use std::collections::HashMap;
    use syncstore_core::schema::Schema;
    use syncstore_core::write;
    let schema = Schema::from_options(&json!({"collections": {"todos": {}}})).unwrap();
    let mut n = 0;
    let ops = json!([
        {"op": "insert", "coll": "todos", "doc": {"text": "a", "done": false, "tags": ["x", {"k": 1.5}]}},
        {"op": "update", "coll": "todos", "id": "tmp_1", "patch": {"done": true, "text": null}},
    ]);
    let muts = write::parse_ops(&ops, &schema, false, || {
        n += 1;
        format!("tmp_{n}")
    })
    .unwrap();
    let plan = write::apply(&muts, &schema, false, &HashMap::new()).unwrap();
    assert_eq!(plan.outbox.len(), 2);
    for (i, stored) in plan.outbox.iter().enumerate() {
        let mut stored = stored.clone();
        stored["mid"] = json!(i + 1);
        // Read as the step reads `_outbox` (a Value), and from its text.
        let e: Entry = serde_json::from_value(stored.clone()).unwrap();
        let text = serde_json::to_string(&stored).unwrap();
        assert_eq!(serde_json::from_str::<Entry>(&text).unwrap(), e);
        assert_eq!(serde_json::to_value(&e).unwrap(), stored);
        let body = serde_json::to_value(&e.mutation).unwrap();
        for field in ["doc", "patch"] {
            assert_eq!(body.get(field), stored.get(field), "{field}");
        }
    }
    let old = r#"{"mid":9,"coll":"todos","op":"replace","id":"a","doc":{"id":"a","t":"x","n":[1,{"m":null}]},"base":4,"ts":65536,"state":"applied","version":5,"baseDoc":{"id":"a","t":"w"}}"#;
    let e: Entry = serde_json::from_str(old).unwrap();
    assert_eq!(serde_json::to_string(&e).unwrap(), old);
    let e2: Entry = serde_json::from_value(serde_json::from_str(old).unwrap()).unwrap();
    assert_eq!(e2, e);
    assert_eq!(
        serde_json::to_string(&e.mutation).unwrap(),
        r#"{"mid":9,"coll":"todos","op":"replace","id":"a","doc":{"id":"a","t":"x","n":[1,{"m":null}]},"base":4,"ts":65536}"#
    );
}

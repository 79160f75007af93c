//! Property tests of the server's decoders and push rules (stable Rust,
//! proptest): thousands of generated pushes per run, in-process.

mod common;

use proptest::prelude::*;
use serde_json::{json, Value};
use syncstore_core::protocol::{MutationResult, PushRequest};
use syncstore_server::config::Limits;
use syncstore_server::store::{ApplyLimits, GroupPush};
use syncstore_server::validate;

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-5i64..5).prop_map(|n| json!(n)),
        "[a-c]{0,2}".prop_map(Value::String),
        Just(json!("tmp_1")),
    ];
    leaf.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map("[a-d]", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn object() -> impl Strategy<Value = Value> {
    prop::collection::btree_map("[a-d]", value(), 0..4)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
}

fn mutation() -> impl Strategy<Value = Value> {
    (
        0u64..12,
        prop_oneof![
            Just("insert"),
            Just("update"),
            Just("replace"),
            Just("delete"),
            Just("bogus")
        ],
        prop_oneof![Just("a"), Just("b"), Just("tmp_1"), Just("")],
        prop::option::of(object()),
        prop::option::of(0u64..20),
    )
        .prop_map(|(mid, op, id, body, base)| {
            let mut m = json!({"mid": mid, "coll": "c", "op": op, "id": id, "base": base});
            match (op, body) {
                ("update", Some(b)) => m["patch"] = b,
                (_, Some(b)) => m["doc"] = b,
                _ => {}
            }
            m
        })
}

/// Raw bodies: valid pushes, pushes with junk, and junk.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => (prop_oneof![Just("c1"), Just("c2"), Just(""), Just("a\nb")], prop::collection::vec(mutation(), 0..6))
            .prop_map(|(c, m)| json!({"clientId": c, "mutations": m}).to_string().into_bytes()),
        1 => value().prop_map(|v| v.to_string().into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..40),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Every body decodes or fails with a client error, never a panic; every
    /// decoded push applies with one result per mutation, mids replay to the
    /// same answers, lastMutationId never goes down, and stored documents
    /// stay objects carrying their id.
    #[test]
    fn decoders_and_push_rules_hold(bodies in prop::collection::vec(body(), 40..80)) {
        let limits = Limits::default();
        let store = common::open_store(":memory:");
        let apply = ApplyLimits {
            max_doc_bytes: 4096,
            max_push_work_bytes: usize::MAX,
        };
        let mut last: std::collections::HashMap<String, u64> = Default::default();
        for bytes in &bodies {
            let req: PushRequest = match validate::decode_push(bytes, &limits) {
                Ok(r) => r,
                Err(e) => {
                    prop_assert!(e.status().is_client_error(), "{e:?}");
                    continue;
                }
            };
            prop_assert!(!req.client_id.chars().any(char::is_control));
            let group = [GroupPush { namespace: "n", owner: Some("o"), req: &req }];
            let out = store.push_group(&group, apply, None).unwrap().remove(0).unwrap();
            prop_assert_eq!(out.response.results.len(), req.mutations.len());
            let prev = last.get(&req.client_id).copied().unwrap_or(0);
            prop_assert!(out.response.last_mutation_id >= prev);
            last.insert(req.client_id.clone(), out.response.last_mutation_id);
            for r in &out.response.results {
                if let MutationResult::Applied { id, .. } = r {
                    prop_assert!(!id.starts_with("tmp_"));
                }
            }
            // Replaying the same push changes nothing and answers the same
            // for every mutation it had already processed.
            let again = store.push_group(&group, apply, None).unwrap().remove(0).unwrap();
            prop_assert!(again.changes.is_empty());
            for (a, b) in out.response.results.iter().zip(&again.response.results) {
                let seen = |r: &MutationResult| matches!(r, MutationResult::Rejected { code, .. } if code == "STALE_MUTATION_ID");
                if !seen(a) {
                    prop_assert_eq!(a, b);
                }
            }
        }
        let all = store.pull("n", None, None, 100_000).unwrap();
        for c in all.changes {
            if let Some(doc) = c.doc {
                prop_assert_eq!(doc.parse().get("id").cloned(), Some(json!(c.id)));
            }
        }
        // Another owner cannot push with these clientIds.
        for client in last.keys() {
            let req = PushRequest { client_id: client.clone(), mutations: vec![] };
            let group = [GroupPush { namespace: "n", owner: Some("other"), req: &req }];
            let r = store.push_group(&group, apply, None).unwrap().remove(0);
            prop_assert!(matches!(r, Err(syncstore_server::store::StoreError::ClientIdTaken)));
        }
    }
}

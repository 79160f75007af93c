//! The transports against the real sync server: `scripts/with-server.sh`
//! starts it on 127.0.0.1 before these run in Chromium and Firefox.
#![cfg(target_arch = "wasm32")]

use serde_json::{json, Value};
use std::cell::RefCell;
use std::rc::Rc;
use syncstore::net::{NetError, Remote, Socket, SocketEvent};
use syncstore_core::protocol::{
    DocText, Mutation, MutationOp, MutationResult, PushRequest, ServerMessage,
};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

const SERVER: &str = match option_env!("SYNCSTORE_TEST_SERVER") {
    Some(s) => s,
    None => "http://127.0.0.1:18787",
};
const TOKEN: &str = "dev-token";

#[wasm_bindgen(
    inline_js = "export function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }"
)]
extern "C" {
    fn sleep(ms: u32) -> js_sys::Promise;
}

fn unique(tag: &str) -> String {
    format!("{tag}-{}", (js_sys::Math::random() * 1e12) as u64)
}

fn insert(mid: u64, coll: &str, id: &str, doc: Value) -> Mutation {
    Mutation {
        mid,
        coll: coll.into(),
        op: MutationOp::Insert,
        id: id.into(),
        doc: doc.as_object().map(DocText::new),
        patch: None,
        base: None,
        ts: None,
    }
}

async fn wait_for(
    events: &Rc<RefCell<Vec<SocketEvent>>>,
    what: &str,
    pred: impl Fn(&SocketEvent) -> bool,
) {
    for _ in 0..300 {
        if events.borrow().iter().any(&pred) {
            return;
        }
        JsFuture::from(sleep(10)).await.unwrap();
    }
    panic!("timed out waiting for {what}: {:?}", events.borrow());
}

#[wasm_bindgen_test]
async fn push_then_pull_round_trip() {
    let remote = Remote::new(SERVER, TOKEN, &unique("c"));
    let coll = unique("coll");
    let res = remote
        .push(&PushRequest {
            client_id: remote.client_id.clone(),
            mutations: vec![insert(
                1,
                &coll,
                "tmp_abc",
                json!({"id": "tmp_abc", "text": "milk"}),
            )],
        })
        .await
        .expect("push");
    let canonical = res
        .id_map
        .get("tmp_abc")
        .expect("the temporary id was mapped")
        .clone();
    assert!(
        matches!(&res.results[0], MutationResult::Applied { mid: 1, id, .. } if *id == canonical)
    );
    assert_eq!(res.last_mutation_id, 1);
    let mut cursor = "0".to_string();
    let mut found = None;
    for _ in 0..100 {
        let page = remote.pull(&cursor, 500).await.expect("pull");
        assert_eq!(page.last_mutation_id, 1);
        found = found.or(page.changes.into_iter().find(|c| c.coll == coll));
        cursor = page.cursor;
        if !page.more {
            break;
        }
    }
    let change = found.expect("the pushed document comes back");
    assert_eq!(change.id, canonical);
    assert_eq!(change.doc.unwrap().parse()["text"], "milk");
}

#[wasm_bindgen_test]
async fn failures_say_what_went_wrong() {
    let bad = Remote::new(SERVER, "not-a-token", "c1");
    let e = bad.pull("0", 10).await.unwrap_err();
    assert!(matches!(e, NetError::Unauthorized(_)), "{e:?}");
    assert!(!e.retryable());
    // Port 9 (discard) is closed on the test machine: nothing answers.
    let gone = Remote::new("http://127.0.0.1:9", TOKEN, "c1");
    let e = gone.pull("0", 10).await.unwrap_err();
    assert!(matches!(e, NetError::Network(_)), "{e:?}");
    assert!(e.retryable());
    let remote = Remote::new(SERVER, TOKEN, &unique("c"));
    let garbage = remote.pull("garbage-cursor", 10).await.expect("pull");
    assert!(garbage.resync, "an unknown cursor answers resync");
}

#[wasm_bindgen_test]
async fn websocket_catches_up_then_streams_live_changes() {
    let writer = Remote::new(SERVER, TOKEN, &unique("w"));
    let reader = Remote::new(SERVER, TOKEN, &unique("r"));
    let coll = unique("live");
    let events = Rc::new(RefCell::new(vec![]));
    let sink = events.clone();
    let socket = Socket::open(&reader, None, move |e: SocketEvent| {
        sink.borrow_mut().push(e.parsed())
    })
    .expect("socket");
    wait_for(&events, "synced", |e| {
        matches!(e, SocketEvent::Frame(ServerMessage::Synced { .. }))
    })
    .await;
    writer
        .push(&PushRequest {
            client_id: writer.client_id.clone(),
            mutations: vec![insert(1, &coll, "doc-1", json!({"id": "doc-1", "n": 1}))],
        })
        .await
        .expect("push");
    wait_for(&events, "the live change", |e| {
        matches!(e, SocketEvent::Frame(ServerMessage::Changes { changes, .. }) if changes.iter().any(|c| c.coll == coll))
    })
    .await;
    drop(socket);
    // A reconnect from the last cursor sees nothing twice.
    let last = events
        .borrow()
        .iter()
        .filter_map(|e| match e {
            SocketEvent::Frame(ServerMessage::Changes { cursor, .. }) => Some(cursor.clone()),
            _ => None,
        })
        .next_back()
        .unwrap();
    let again = Rc::new(RefCell::new(vec![]));
    let sink = again.clone();
    let _socket = Socket::open(&reader, Some(last), move |e: SocketEvent| {
        sink.borrow_mut().push(e.parsed())
    })
    .expect("socket");
    wait_for(&again, "synced", |e| {
        matches!(e, SocketEvent::Frame(ServerMessage::Synced { .. }))
    })
    .await;
    let repeated = again.borrow().iter().any(|e| {
        matches!(e, SocketEvent::Frame(ServerMessage::Changes { changes, .. }) if changes.iter().any(|c| c.coll == coll))
    });
    assert!(!repeated, "no change is delivered twice");
}

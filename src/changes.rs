//! `change` events: each document a write changed, with its `op`
//! (`insert`, `update`, `delete`) and its new document, for this
//! instance's writes (`origin: "local"`), other instances' writes
//! (`"tab"`) and the server's changes (`"remote"`, built by the sync
//! step planner).
//!
//! Nothing is built unless some instance of the database listens: an
//! instance that gains its first `change` listener says so on the
//! database's BroadcastChannel (`{feed: {want: true}}`), and a new instance
//! asks (`{feed: {ask: true}}`), so writers learn whether to post their
//! changes (`{feed: {changes}}`).

use crate::ctx::Ctx;
use serde_json::{json, Value};
use std::rc::Rc;
use syncstore_core::write::{Write, WriteKind};

/// True if this instance or another one listens for `change` events.
pub fn wanted(inner: &Ctx) -> bool {
    inner.events.wanted("change") || inner.events.peers_want_changes()
}

/// A new instance asks who listens.
pub fn ask(inner: &Ctx) {
    post(inner, json!({"ask": true}));
}

/// This instance gained a `change` listener: the others must post theirs.
pub fn listening(inner: &Ctx) {
    post(inner, json!({"want": true}));
}

/// After this instance's write committed `writes`.
pub fn wrote(inner: &Ctx, writes: &[Write]) {
    if !wanted(inner) {
        return;
    }
    let changes: Vec<Value> = writes.iter().map(entry).collect();
    if inner.events.wanted("change") {
        emit(inner, &changes, "local");
    }
    if inner.events.peers_want_changes() {
        post(inner, json!({"changes": changes}));
    }
}

/// A `{feed}` message from another instance.
pub fn on_message(inner: &Rc<Ctx>, msg: &Value) {
    if msg.get("want").is_some() {
        inner.events.set_peers_want_changes();
    } else if msg.get("ask").is_some() {
        if inner.events.wanted("change") {
            listening(inner);
        }
    } else if let Some(Value::Array(changes)) = msg.get("changes") {
        emit(inner, changes, "tab");
    }
}

fn emit(inner: &Ctx, changes: &[Value], origin: &str) {
    inner
        .events
        .emit_value("change", &json!({"changes": changes, "origin": origin}));
}

fn post(inner: &Ctx, feed: Value) {
    inner
        .live
        .post(&crate::idb::to_js(&json!({ "feed": feed })));
}

/// The event entry of one committed write: the document is the record's.
fn entry(w: &Write) -> Value {
    let op = match w.kind {
        WriteKind::Add => "insert",
        WriteKind::Put => "update",
        WriteKind::Delete => "delete",
    };
    let mut c =
        json!({"coll": w.coll, "id": w.id, "op": op, "deleted": w.kind == WriteKind::Delete});
    let doc = w
        .record
        .as_ref()
        .and_then(|r| r.get("d"))
        .and_then(Value::as_str)
        .and_then(|d| serde_json::from_str::<Value>(d).ok());
    if let Some(doc) = doc {
        c["doc"] = doc;
    }
    c
}

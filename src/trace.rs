//! The data-flow trace: `on("trace", cb)` hears each mutation's life
//! (`queued`, `pushed`, `applied`, `settled`, `rejected`, `conflicted`,
//! `remapped`) and each page of server changes (`pull`: an HTTP page;
//! `frames`: WebSocket frames applied in one step), each with `at` (ms since
//! the Unix epoch). `queued` is heard in the instance that wrote; the others in
//! the instance that leads sync. Every function returns at once while
//! nobody listens: nothing is built. `outbox()` lists what is queued.

use crate::ctx::Ctx;
use crate::db::Db;
use crate::error::{storage, JsResult};
use crate::idb::{to_js, Source};
use js_sys::Date;
use serde_json::{json, Value};
use std::rc::Rc;
use syncstore_core::protocol::{Mutation, MutationResult, PullResponse, PushResponse};
use syncstore_core::sync::plan::{stores::OUTBOX, StepPlan};
use syncstore_core::sync::Event;
use wasm_bindgen::JsValue;

/// The outbox, oldest first: `{mid, coll, id, op, doc?, patch?, base?,
/// state}` (`state`: "pending", "parked", "acked" or "applied").
pub async fn outbox(inner: &Rc<Ctx>) -> JsResult<JsValue> {
    inner.check_open()?;
    let db = inner.db().await?;
    let tx = Db::tx(&db, &[OUTBOX], false)?;
    let records = Source::Store(Db::store(&tx, OUTBOX)?)
        .get_all(None, None)
        .await?;
    let records: Vec<Value> = crate::idb::parse(&records.into())
        .ok_or_else(|| storage(JsValue::from_str("corrupt outbox"), "read outbox"))?;
    let keep = ["mid", "coll", "id", "op", "doc", "patch", "base", "version"];
    let list: Vec<Value> = crate::idb::outbox_entries(records)
        .into_iter()
        .map(|e| {
            let mut o: serde_json::Map<String, Value> = keep
                .iter()
                .filter_map(|k| e.get(*k).map(|v| (k.to_string(), v.clone())))
                .collect();
            let state = e.get("state").cloned().unwrap_or(json!("pending"));
            o.insert("state".into(), state);
            Value::Object(o)
        })
        .collect();
    Ok(to_js(&list))
}

fn on(inner: &Ctx) -> bool {
    inner.events.wanted("trace")
}

fn emit(inner: &Ctx, mut e: Value) {
    e["at"] = json!(Date::now());
    inner.events.emit_value("trace", &e);
}

/// This instance committed the outbox `entries`, from mid `first` on.
pub fn queued(inner: &Ctx, first: f64, entries: &[Value]) {
    if !on(inner) || first < 1.0 {
        return;
    }
    let first = first as u64;
    for (i, e) in entries.iter().enumerate() {
        emit(
            inner,
            json!({"type": "queued", "mid": first + i as u64, "coll": e["coll"], "id": e["id"],
                "op": e["op"]}),
        );
    }
}

/// A push request carrying `mutations` is being sent.
pub fn pushed(inner: &Ctx, mutations: &[Mutation]) {
    if !on(inner) {
        return;
    }
    for m in mutations {
        emit(
            inner,
            json!({"type": "pushed", "mid": m.mid, "coll": m.coll, "id": m.id}),
        );
    }
}

/// The push answer arrived: the mutations the server applied.
pub fn answered(inner: &Ctx, resp: &PushResponse, ms: f64) {
    if !on(inner) {
        return;
    }
    for r in &resp.results {
        if let MutationResult::Applied {
            mid, id, version, ..
        } = r
        {
            emit(
                inner,
                json!({"type": "applied", "mid": mid, "id": id, "version": version, "ms": ms}),
            );
        }
    }
}

/// A pull page (HTTP) was taken in, `ms` after it was asked for.
pub fn pulled(inner: &Ctx, page: &PullResponse, ms: f64) {
    if !on(inner) {
        return;
    }
    emit(
        inner,
        json!({"type": "pull", "changes": page.changes.len(), "more": page.more,
            "resync": page.resync, "cursor": page.cursor, "ms": ms}),
    );
}

/// `frames` WebSocket frames about to be applied in one step, with
/// `changes()` changes (counted only if someone listens).
pub(crate) fn frames(inner: &Ctx, frames: usize, changes: impl FnOnce() -> usize) {
    if !on(inner) {
        return;
    }
    emit(
        inner,
        json!({"type": "frames", "frames": frames, "changes": changes()}),
    );
}

/// Frames planned ahead (src/sync/ahead.rs) were taken in: `written` as
/// planned, or not (`reason`: "stale", another step ran, a new write waits
/// or an answer is held since the plan was made; "stored", IndexedDB held
/// something the plan assumed absent), and then by an ordinary step.
pub(crate) fn planned(inner: &Ctx, changes: usize, refused: Option<&str>) {
    if !on(inner) {
        return;
    }
    let mut e = json!({"type": "planned", "changes": changes, "written": refused.is_none()});
    if let Some(r) = refused {
        e["reason"] = json!(r);
    }
    emit(inner, e);
}

/// A step committed: the entries it refused, found in conflict, remapped
/// or settled (dropped from the outbox otherwise).
pub fn step(inner: &Ctx, out: &StepPlan) {
    if !on(inner) {
        return;
    }
    // A refused or conflicting entry's life ends there, not in `settled`.
    let mut ended = vec![];
    for e in &out.events {
        let t = match e {
            Event::Rejected {
                mid,
                coll,
                id,
                code,
                ..
            } => {
                ended.push(*mid);
                json!({"type": "rejected", "mid": mid, "coll": coll, "id": id, "code": code})
            }
            Event::Conflict {
                mid,
                coll,
                id,
                resolution,
                ..
            } => {
                ended.push(*mid);
                json!({"type": "conflicted", "mid": mid, "coll": coll, "id": id,
                    "resolution": resolution})
            }
            Event::Idmap { tmp, id } => json!({"type": "remapped", "tmp": tmp, "id": id}),
        };
        emit(inner, t);
    }
    for op in &out.ops {
        if op["s"] != OUTBOX {
            continue;
        }
        let at = |i: usize| op["delRange"].get(i).and_then(Value::as_u64);
        let (lo, hi) = match (op.get("del").and_then(Value::as_u64), at(0), at(1)) {
            (Some(mid), _, _) => (mid, mid),
            (None, Some(lo), Some(hi)) => (lo, hi),
            _ => continue,
        };
        for mid in lo..=hi {
            if !ended.contains(&mid) {
                emit(inner, json!({"type": "settled", "mid": mid}));
            }
        }
    }
}

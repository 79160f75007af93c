//! The write path: a batch of ops validated by the core and applied in one
//! IndexedDB transaction with its outbox entries; then subscriptions,
//! `change` events and the trace hear of it, and the sync leader
//! (tabs.rs) takes the new entries in.

use crate::ctx::Ctx;
use crate::db::Db;
use crate::error::{self, storage, JsResult};
use crate::glue;
use crate::idb::{committed, to_js, CONFLICTS, OUTBOX, SERVER};
use crate::tabs::TabSync;
use js_sys::{Array, Function};
use serde_json::{json, Value};
use std::collections::HashMap;
use syncstore_core::schema::Schema;
use syncstore_core::sync::plan::synced_spec;
use syncstore_core::write::{self, Key, ServerEntry, Stored, WriteKind};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

/// Validates and applies a batch of ops in one transaction with their
/// outbox entries. Returns the id each op addressed.
///
/// `resolving`: the document whose unresolved conflict these ops
/// resolve: in the same transaction its conflict entry goes and its
/// record loses the conflict marker.
///
/// `modify`: an `update(coll, id, fn)` function, called with the
/// current document once it is read (in this transaction, so no other
/// write comes between); its answer becomes the update's patch.
pub async fn apply(
    inner: &Ctx,
    sync: Option<&TabSync>,
    ops: Value,
    single: bool,
    resolving: Option<&Key>,
    modify: Option<&Function>,
) -> JsResult<Vec<String>> {
    inner.check_open()?;
    // Counted from the start, so that writes issued in one tick
    // produce one subscription callback.
    let _guard = inner.live.write_started();
    let mut muts = write::parse_ops(&ops, &inner.schema, single, || inner.new_temp_id())
        .map_err(error::core)?;
    write::resolve_aliases(&mut muts, &inner.aliases.borrow());
    let mut stores: Vec<&str> = muts.iter().map(|m| m.coll.as_str()).collect();
    if let Some((coll, _)) = resolving {
        stores.push(coll);
        stores.push(CONFLICTS);
    }
    syncstore_core::sorted::sort_by(&mut stores, Ord::cmp);
    stores.dedup();
    stores.push(OUTBOX);
    // The first edit of a synced document saves the server's copy.
    let edits_synced = muts
        .iter()
        .any(|m| m.kind != write::OpKind::Insert && synced_spec(&inner.schema, &m.coll).is_some());
    if edits_synced {
        stores.push(SERVER);
    }
    let db = inner.db().await?;
    let tx = Db::tx(&db, &stores, true)?;
    let mut reads = write::reads_needed(&muts);
    if let Some(key) = resolving {
        if !reads.contains(key) {
            reads.push(key.clone());
        }
    }
    let mut resolved_record = JsValue::UNDEFINED;
    let mut current: HashMap<Key, Option<Stored>> = HashMap::with_capacity(reads.len());
    if !reads.is_empty() {
        let reqs = Array::new();
        for (coll, id) in &reads {
            let req = Db::store(&tx, coll)?
                .get(&JsValue::from_str(id))
                .map_err(|e| storage(e, "read"))?;
            reqs.push(&req);
        }
        // With each synced document's record, its `_server` entry: a
        // settle marker there outranks the record's version (the step
        // did not write the record again when the write settled).
        let mut at = Vec::with_capacity(reads.len());
        for (coll, id) in &reads {
            if edits_synced && synced_spec(&inner.schema, coll).is_some() {
                let key: Array = [coll, id].iter().map(|s| JsValue::from_str(s)).collect();
                let req = Db::store(&tx, SERVER)?
                    .get(&key)
                    .map_err(|e| storage(e, "read"))?;
                at.push(Some(reqs.push(&req) as usize - 1));
            } else {
                at.push(None);
            }
        }
        let got: Array = JsFuture::from(glue::requests(&reqs))
            .await
            .map_err(|e| storage(e, "read"))?
            .unchecked_into();
        for (i, key) in reads.into_iter().enumerate() {
            let rec = got.get(i as u32);
            if Some(&key) == resolving {
                resolved_record = rec.clone();
            }
            let server = at[i].map(|j| got.get(j as u32));
            current.insert(key, stored(&rec, server.as_ref()));
        }
    }
    if let Some(key) = resolving {
        if let Some(Some(s)) = current.get_mut(key) {
            s.conflict = false;
        }
    }
    if let Some(f) = modify {
        match modified(inner, f, &muts, &current) {
            Ok(m) => muts = m,
            Err(e) => {
                let _ = tx.abort();
                return Err(e);
            }
        }
    }
    let limit = inner.server_max_doc_bytes.get();
    let mut plan = match write::apply_limited(&muts, &inner.schema, single, &current, limit) {
        Ok(p) => p,
        Err(e) => {
            let _ = tx.abort();
            return Err(error::core(e));
        }
    };
    // Each entry carries the clock stamp of its write: the sync step
    // keeps it (and so does not store the entry again) unless its
    // clock has run ahead.
    for e in &mut plan.outbox {
        let t =
            syncstore_core::sync::write_stamp(inner.last_stamp.get(), js_sys::Date::now() as u64);
        inner.last_stamp.set(t);
        e["ts"] = serde_json::json!(t);
    }
    // The whole plan crosses once (one JSON parse); glue.js issues its
    // requests, unawaited, and returns those of the adds.
    let add_ops: Vec<&write::Write> = plan
        .writes
        .iter()
        .filter(|w| w.kind == WriteKind::Add)
        .collect();
    let adds = glue::write_plan(
        &tx,
        &to_js(&PlanJs {
            w: plan
                .writes
                .iter()
                .map(|w| {
                    let kind = match w.kind {
                        WriteKind::Add => 0,
                        WriteKind::Put => 1,
                        WriteKind::Delete => 2,
                    };
                    (kind, w.coll.as_str(), w.id.as_str())
                })
                .collect(),
            r: plan
                .writes
                .iter()
                .filter_map(|w| w.record.as_ref())
                .collect(),
            o: &plan.outbox,
            c: &plan.server_copies,
            outbox: OUTBOX,
            server: SERVER,
        }),
    )
    .map_err(|e| storage(e, "write"))?;
    let mut colls = plan.colls.clone();
    if let Some((coll, id)) = resolving {
        let untouched = !plan.writes.iter().any(|w| &w.coll == coll && &w.id == id);
        if untouched && !resolved_record.is_undefined() {
            let _ = js_sys::Reflect::delete_property(
                resolved_record.unchecked_ref::<js_sys::Object>(),
                &"c".into(),
            );
            Db::store(&tx, coll)?
                .put(&resolved_record)
                .map_err(|e| storage(e, "write"))?;
        }
        let key: Array = [coll, id].iter().map(|s| JsValue::from_str(s)).collect();
        Db::store(&tx, CONFLICTS)?
            .delete(&key)
            .map_err(|e| storage(e, "write"))?;
        if !colls.contains(coll) {
            colls.push(coll.clone());
        }
    }
    if let Err(e) = committed(&tx, "write").await {
        let i = glue::failed_request(&adds);
        if i >= 0 {
            let w = add_ops[i as usize];
            let path = if single {
                "doc.id".to_owned()
            } else {
                format!("ops[{}].doc.id", w.op)
            };
            return Err(error::core(syncstore_core::CoreError::AlreadyExists {
                path,
                coll: w.coll.clone(),
                id: w.id.clone(),
            }));
        }
        return Err(e);
    }
    if resolving.is_some() {
        // The conflict's record changed outside the plan's writes.
        inner.live.changed(&colls, true);
    } else {
        inner.live.wrote(&colls, &plan.writes);
    }
    crate::changes::wrote(inner, &plan.writes);
    if !plan.outbox.is_empty() {
        let first = glue::first_mid(&adds);
        crate::trace::queued(inner, first, &plan.outbox);
        inner
            .local_pending
            .set(inner.local_pending.get() + plan.outbox.len());
        if let Some(sync) = sync {
            sync.wrote(
                first,
                std::mem::take(&mut plan.outbox),
                std::mem::take(&mut plan.server_copies),
                inner.live.in_streak(crate::sync::WRITE_GAP_MS),
            );
        }
    }
    Ok(plan.ids)
}

/// The single update of `muts` with its patch from `f`, called on the
/// document read for it: `f`'s return value is a merge patch; if it
/// returns nothing, the document it was given (changed in place) is
/// the new document, sent as the patch from the old one.
fn modified(
    inner: &Ctx,
    f: &Function,
    muts: &[write::Mutation],
    current: &HashMap<Key, Option<Stored>>,
) -> JsResult<Vec<write::Mutation>> {
    let m = &muts[0];
    let key = (m.coll.clone(), m.id.clone());
    let Some(Some(cur)) = current.get(&key) else {
        return Err(error::core(syncstore_core::CoreError::NotFound {
            path: "id".into(),
            coll: m.coll.clone(),
            id: m.id.clone(),
        }));
    };
    let text = serde_json::to_string(&cur.doc).expect("JSON values serialize");
    let answer = glue::call_modifier(f, &glue::parse_json(&JsValue::from_str(&text)))?;
    let (whole, text) = (answer.get(0).is_truthy(), answer.get(1).as_string());
    let body: Value =
        serde_json::from_str(&text.unwrap_or_default()).expect("JSON.stringify output parses");
    let patch = match (whole, &cur.doc, &body) {
        (true, Value::Object(from), Value::Object(to)) => {
            Value::Object(syncstore_core::sync::policy::diff_patch(from, to))
        }
        _ => body,
    };
    let op = json!([{"op": "update", "coll": m.coll, "id": m.id, "patch": patch}]);
    let mut out =
        write::parse_ops(&op, &inner.schema, true, || inner.new_temp_id()).map_err(error::core)?;
    write::resolve_aliases(&mut out, &inner.aliases.borrow());
    Ok(out)
}

/// One write's requests as glue.js `writePlan` takes them.
#[derive(serde::Serialize)]
struct PlanJs<'a> {
    /// `[kind, coll, id]`: 0 add, 1 put, 2 delete.
    w: Vec<(u8, &'a str, &'a str)>,
    /// The records of the adds and puts, in order.
    r: Vec<&'a Value>,
    /// Outbox entries.
    o: &'a [Value],
    /// Server copies to put (over a settle marker, if there is one).
    c: &'a [Value],
    outbox: &'static str,
    server: &'static str,
}

/// A record's id, document text, parsed document and server version.
fn record_parts(rec: &JsValue) -> Option<(String, String, Value, Option<u64>)> {
    let get = |k: &str| js_sys::Reflect::get(rec, &k.into()).ok();
    let id = get("id")?.as_string()?;
    let text = get("d")?.as_string()?;
    let doc = serde_json::from_str(&text).ok()?;
    let version = get("v").and_then(|v| v.as_f64()).map(|v| v as u64);
    Some((id, text, doc, version))
}

/// True if the record carries the marker `flag`: `c` (an unresolved
/// conflict) or `s` (`_server` holds the server's copy of the document).
fn has_flag(rec: &JsValue, flag: &str) -> bool {
    js_sys::Reflect::get(rec, &flag.into()).is_ok_and(|c| c.is_truthy())
}

/// A record as the write path sees it, and its document's JSON text.
fn stored_parts(rec: &JsValue) -> Option<(String, String, Stored)> {
    let (id, text, doc, version) = record_parts(rec)?;
    let gen = js_sys::Reflect::get(rec, &"g".into())
        .ok()
        .and_then(|g| g.as_f64())
        .map_or(0, |g| g as u64);
    let s = Stored {
        doc,
        version,
        gen,
        conflict: has_flag(rec, "c"),
        server_copy: has_flag(rec, "s"),
    };
    Some((id, text, s))
}

/// A record as the write path sees it, given its document's `_server`
/// entry (`server`: read for synced collections), which outranks the
/// record's version and marker `s` (`Stored::under`).
fn stored(rec: &JsValue, server: Option<&JsValue>) -> Option<Stored> {
    if rec.is_undefined() {
        return None;
    }
    let s = stored_parts(rec)?.2;
    let entry = match server.filter(|e| e.is_object()) {
        None => ServerEntry::None,
        Some(e) if has_flag(e, "m") => {
            let num = |k: &str| {
                js_sys::Reflect::get(e, &k.into())
                    .ok()
                    .and_then(|v| v.as_f64())
            };
            ServerEntry::Marker {
                version: num("version").map(|v| v as u64),
                gen: num("g").map_or(0, |g| g as u64),
            }
        }
        Some(_) => ServerEntry::Copy,
    };
    Some(s.under(entry))
}

/// Re-computes index keys of existing records after an index was added.
pub fn rekey(schema: &Schema, coll: &str, records: &Array) -> Array {
    let Some(spec) = schema.collections.get(coll) else {
        return Array::new();
    };
    let out = Array::new();
    for rec in records.iter() {
        // The markers stay (an unresolved conflict, the server's copy).
        if let Some((id, text, s)) = stored_parts(&rec) {
            out.push(&to_js(&write::stored_record(spec, &id, &s, text)));
        }
    }
    out
}

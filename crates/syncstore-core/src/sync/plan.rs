//! The step planner: what one sync step writes, decided from the engine's
//! [`Effects`] and what the step read, with no I/O (the browser binding,
//! `src/sync/step.rs`, carries the plan out in IndexedDB; native tests check
//! its rules). One place for each storage rule of the client:
//!
//! - a document's record is laid out as `write.rs` lays it out, with its
//!   server version `v` and the resync generation `g` of that state;
//! - a server document is stored once, as its record, while the record
//!   shows exactly the server's document; `_server` keeps a copy only for a
//!   tombstone or a document with outbox entries, whose record carries the
//!   marker `s` ([`Planner::copies`]);
//! - a write that settles (the server applied it and its document is the
//!   record's) leaves the record as the write path wrote it: `_server`
//!   gets a *settle marker* `{coll, id, version, g?, m: 1}` that says the
//!   record's document is the server's at that version, and outranks the
//!   record's `v` and `s` ([`settle_marker`]): rewriting the record only
//!   for its version cost a put of the document with every index entry
//!   (docs/architecture.md, "Settling a write");
//! - a conflict of a `"manual"` collection is kept in `_conflicts` and its
//!   record carries the marker `c`;
//! - outbox entries by mid, id mappings one record each in `_ids`, and a
//!   completed resync's sweep as the step's last request.

use crate::sorted::SortedSet;

use serde_json::{json, Value};

use super::doc::Doc;
use super::engine::{ClientSync, Effects, Event, ServerDoc};
use crate::json::Path;
use crate::protocol::JsonObject;
use crate::schema::{CollectionSpec, ConflictMode, Schema, SyncMode};
use crate::write::{self, Key};

/// The client's internal object stores.
pub mod stores {
    /// Outbox entries by mid (auto-increment key).
    pub const OUTBOX: &str = "_outbox";
    /// The engine's meta (`sync`) and the leader term (`leader`).
    pub const META: &str = "_meta";
    /// Server state a record cannot stand for: `{coll, id, d?, version, g?}`
    /// (`plan::server_copy`; `doc` in entries written before), and settle
    /// markers `{coll, id, version, g?, m: 1}` (`plan::settle_marker`).
    pub const SERVER: &str = "_server";
    /// Server changes to `"manual"` collections, held until `pull(coll)`.
    pub const HELD: &str = "_held";
    /// Unresolved conflicts of `conflicts: "manual"` collections, by `[coll, id]`.
    pub const CONFLICTS: &str = "_conflicts";
    /// Temporary ids the server mapped: `{t: tmp, id: canonical}`.
    pub const IDS: &str = "_ids";
    /// Mutations the server refused, kept for review until dismissed:
    /// `{mid, coll, id, op, doc?, code, message, at}` by mid.
    pub const REJECTED: &str = "_rejected";
}
use stores::{CONFLICTS, IDS, OUTBOX, REJECTED, SERVER};

/// Plans the writes of one step's inputs, in order.
pub struct Planner<'a> {
    /// The schema (which collections sync, their indexes and policies).
    pub schema: &'a Schema,
    /// Of the documents whose server state the engine holds (those with
    /// outbox entries, and those loaded for this step), the ones whose
    /// state `_server` holds. Kept up to date as the plan grows.
    pub copied: &'a mut SortedSet<Key>,
    /// The time (ms since the epoch) stamped on kept conflicts.
    pub now: f64,
    /// Someone listens for `change` events: list the server's changes in
    /// [`StepPlan::changes`] (nothing is built otherwise).
    pub changes: bool,
}

impl Planner<'_> {
    /// The requests that carry out `fx` (see docs/sync-engine.md, Effects).
    pub fn effects(&mut self, eng: &ClientSync, fx: &Effects, out: &mut StepPlan, remote: bool) {
        let schema = self.schema;
        let ops = &mut out.ops;
        let version = |coll: &str, id: &str| eng.server_doc(coll, id);
        for coll in self.copies(eng, fx, ops) {
            out.restamped.insert(coll);
        }
        let copied = &*self.copied;
        // The marker `s`: `_server` holds this document's server state.
        let flag = |coll: &str, id: &str, mut rec: Value| {
            // (Empty in an initial sync's pages: no key built per document.)
            if !copied.is_empty() && copied.contains(&(coll.to_owned(), id.to_owned())) {
                rec["s"] = json!(1);
            }
            rec
        };
        // A conflict of a "manual" collection is kept for the app, and the
        // document (the server's, now) is marked.
        for e in &fx.events {
            let Event::Conflict {
                coll,
                id,
                local,
                remote,
                mid,
                ..
            } = e
            else {
                continue;
            };
            if !is_manual(schema, coll) {
                continue;
            }
            ops.push(json!({"s": CONFLICTS, "put": {
                "coll": coll, "id": id, "local": local, "remote": remote, "mid": mid,
                "at": self.now,
            }}));
            out.conflicted.insert((coll.clone(), id.clone()));
            if let Some(rec) = eng
                .view(coll, id)
                .and_then(|d| doc_record(schema, coll, id, &d, version(coll, id)))
            {
                ops.push(json!({"s": coll, "put": flag(coll, id, marked(rec))}));
            }
            out.colls.insert(coll.clone());
        }
        let conflicted = &out.conflicted;
        let mark = |coll: &str, id: &str, rec: Value| {
            let rec = flag(coll, id, rec);
            if !conflicted.is_empty() && conflicted.contains(&(coll.to_owned(), id.to_owned())) {
                marked(rec)
            } else {
                rec
            }
        };
        for r in &fx.rekeys {
            if synced_spec(schema, &r.coll).is_none() {
                continue;
            }
            ops.push(json!({"s": r.coll, "del": r.tmp}));
            if let Some(rec) = eng
                .view(&r.coll, &r.id)
                .and_then(|d| doc_record(schema, &r.coll, &r.id, &d, version(&r.coll, &r.id)))
            {
                ops.push(json!({"s": r.coll, "put": mark(&r.coll, &r.id, rec)}));
            }
            out.colls.insert(r.coll.clone());
        }
        for v in &fx.views {
            if synced_spec(schema, &v.coll).is_none() {
                continue;
            }
            match &v.doc {
                Some(d) => {
                    if let Some(rec) =
                        doc_record(schema, &v.coll, &v.id, d, version(&v.coll, &v.id))
                    {
                        ops.push(json!({"s": v.coll, "put": mark(&v.coll, &v.id, rec)}));
                    }
                }
                None => ops.push(json!({"s": v.coll, "del": v.id})),
            }
            out.colls.insert(v.coll.clone());
            if remote && self.changes {
                out.changes.push(change(v));
            }
        }
        for e in &fx.outbox_put {
            ops.push(json!({"s": OUTBOX, "put": e}));
        }
        for (lo, hi) in runs(&fx.outbox_drop) {
            if lo == hi {
                ops.push(json!({"s": OUTBOX, "del": lo}));
            } else {
                ops.push(json!({"s": OUTBOX, "delRange": [lo, hi]}));
            }
        }
        for e in &fx.events {
            match e {
                Event::Idmap { tmp, id } => {
                    ops.push(json!({"s": IDS, "put": {"t": tmp, "id": id}}));
                }
                // Kept for review, in the step that rolls it back.
                Event::Rejected { .. } => {
                    let mut rec = serde_json::to_value(e).expect("events serialize");
                    if let Some(r) = rec.as_object_mut() {
                        r.remove("type");
                        r.insert("at".into(), json!(self.now));
                    }
                    ops.push(json!({"s": REJECTED, "put": rec}));
                }
                Event::Conflict { .. } => {}
            }
        }
        if fx.sweep.is_some() {
            out.sweep = fx.sweep;
            out.colls.extend(synced_colls(schema).map(str::to_owned));
        }
        out.events.extend(fx.events.iter().cloned());
    }

    /// Keeps a document's server state in `_server` only while its record
    /// cannot stand for it: a tombstone (no record), or a document with
    /// outbox entries (the record shows the local edits). Every other
    /// server document lives in its record alone (`v` = its version, no
    /// marker `s`), so a pulled document costs one write, not two. A
    /// document whose server version moved while its view did not (a write
    /// settled) gets a settle marker in `_server` instead of its record
    /// written again. Runs before the records of `fx` are written (they
    /// carry `s` from [`Planner::copied`]); returns the collections of the
    /// documents that got a settle marker.
    fn copies(&mut self, eng: &ClientSync, fx: &Effects, ops: &mut Vec<Value>) -> Vec<String> {
        let schema = self.schema;
        let copied = &mut *self.copied;
        let changed: SortedSet<(&str, &str)> = fx
            .server_put
            .iter()
            .map(|r| (r.coll.as_str(), r.id.as_str()))
            .collect();
        // Records this input writes (or deletes).
        let mut written: SortedSet<(&str, &str)> = fx
            .views
            .iter()
            .map(|v| (v.coll.as_str(), v.id.as_str()))
            .chain(fx.rekeys.iter().map(|r| (r.coll.as_str(), r.id.as_str())))
            .collect();
        for e in &fx.events {
            if let Event::Conflict { coll, id, .. } = e {
                if is_manual(schema, coll) {
                    written.insert((coll, id));
                }
            }
        }
        let mut touched: SortedSet<(&str, &str)> = changed.iter().copied().collect();
        touched.extend(written.iter().copied());
        touched.extend(
            fx.outbox_put
                .iter()
                .map(|e| (e.mutation.coll.as_str(), e.mutation.id.as_str())),
        );
        let mut settled = vec![];
        for (coll, id) in touched {
            if synced_spec(schema, coll).is_none() {
                continue;
            }
            // Server state is keyed by canonical ids; a mapped temporary id has none.
            let state = (eng.resolve_id(id) == id)
                .then(|| eng.server_doc(coll, id))
                .flatten();
            let need = state.is_some_and(|d| d.doc.is_none() || eng.has_entries(coll, id));
            let key = || (coll.to_owned(), id.to_owned());
            let has = !copied.is_empty() && copied.contains(&key());
            let is_changed = changed.contains(&(coll, id));
            let is_written = written.contains(&(coll, id));
            if need {
                // Written again too when the record is: what `_server` held
                // may have been a settle marker, which a record with local
                // edits must not keep.
                if let Some(d) = state.filter(|_| !has || is_changed || is_written) {
                    let copy = server_copy(coll, id, d.doc.as_ref(), d.version, d.gen);
                    ops.push(json!({"s": SERVER, "put": copy}));
                    copied.insert(key());
                }
            } else if let Some(d) = state.filter(|_| is_changed && !is_written) {
                // The record shows the server's document at a new version
                // (a write settled): the marker says so, in place of the
                // copy if there was one.
                ops.push(json!({"s": SERVER, "put": settle_marker(coll, id, d)}));
                copied.insert(key());
                settled.push(coll.to_owned());
            } else if has && (state.is_none() || is_written) {
                // No server state any more, or the record (rewritten now,
                // without `s`) stands for it again.
                ops.push(json!({"s": SERVER, "del": [coll, id]}));
                copied.remove(&key());
            }
        }
        settled
    }

    /// Ends the plan of a step: a completed resync's sweep goes last, so its
    /// cursors see every record the step wrote. Documents with outbox
    /// entries keep their records (their views are in the plan already).
    pub fn finish(&mut self, eng: &ClientSync, out: &mut StepPlan) {
        if let Some(gen) = out.sweep {
            let keep: Vec<String> = eng
                .outbox()
                .iter()
                .map(|e| format!("{}\u{0}{}", e.mutation.coll, e.mutation.id))
                .collect();
            let colls: Vec<&str> = synced_colls(self.schema).collect();
            out.ops.push(
                json!({"sweep": {"colls": colls, "server": SERVER, "gen": gen, "keep": keep}}),
            );
        }
    }

    /// After the commit: only the documents with outbox entries stay held.
    pub fn evicted(&mut self, eng: &ClientSync) {
        self.copied.retain(|(c, i)| eng.has_entries(c, i));
    }
}

/// The synced collections' names.
pub fn synced_colls(schema: &Schema) -> impl Iterator<Item = &str> {
    schema
        .collections
        .iter()
        .filter(|(_, s)| s.sync != SyncMode::Local)
        .map(|(n, _)| n.as_str())
}

/// The spec of a collection that syncs (`None`: unknown or local only).
pub fn synced_spec<'a>(schema: &'a Schema, coll: &str) -> Option<&'a CollectionSpec> {
    schema
        .collections
        .get(coll)
        .filter(|s| s.sync != SyncMode::Local)
}

/// The record of a document as `write.rs` lays it out, `id` first, with
/// the resync generation `g` of its server state (see docs/sync-engine.md).
pub fn doc_record(
    schema: &Schema,
    coll: &str,
    id: &str,
    doc: &Doc,
    state: Option<&ServerDoc>,
) -> Option<Value> {
    let spec = synced_spec(schema, coll)?;
    let version = state.map(|d| d.version);
    let mut rec = match doc {
        // A document that came as text and starts with its own id is
        // stored as that text; only the index keys need its fields, so
        // only the fields they start with are parsed.
        Doc::Text(t) if starts_with_id(t.as_str(), id) => {
            let names: Vec<&str> = spec
                .indexes
                .iter()
                .flat_map(|ix| ix.fields.iter().map(Path::first))
                .collect();
            let fields = t.parse_only(&names);
            write::record_in(spec, id, &fields, t.as_str().to_owned(), version)
        }
        _ => {
            let doc = doc.fields();
            if doc.keys().next().map(String::as_str) == Some("id")
                && doc.get("id").and_then(Value::as_str) == Some(id)
            {
                let text = serde_json::to_string(&*doc).expect("JSON values serialize");
                write::record_in(spec, id, &doc, text, version)
            } else {
                let mut d = JsonObject::with_capacity(doc.len() + 1);
                d.insert("id".into(), Value::String(id.to_owned()));
                d.extend(
                    doc.iter()
                        .filter(|(k, _)| *k != "id")
                        .map(|(k, v)| (k.clone(), v.clone())),
                );
                let doc = Value::Object(d);
                let text = serde_json::to_string(&doc).expect("JSON values serialize");
                write::record(spec, id, &doc, text, version)
            }
        }
    };
    if let Some(g) = state.map(|d| d.gen).filter(|g| *g > 0) {
        rec["g"] = json!(g);
    }
    Some(rec)
}

/// True if the JSON text of an object starts with the member `"id": id`
/// written compactly (as serde_json and `JSON.stringify` write it), so
/// that it is a record's `d` as it is.
fn starts_with_id(text: &str, id: &str) -> bool {
    let Some(rest) = text.strip_prefix(r#"{"id":"#) else {
        return false;
    };
    let quoted = serde_json::to_string(id).expect("strings serialize");
    rest.strip_prefix(quoted.as_str())
        .is_some_and(|after| after.starts_with(',') || after.starts_with('}'))
}

/// The `_server` copy of a server document (`doc`: `None` for a tombstone)
/// at `version` of resync generation `gen`: `{coll, id, d?, version, g?}`,
/// the document as JSON text `d` like a record's (a JS string is stored
/// and read back without walking the document: the write path's first
/// edit of a synced document saves one, glue.js `loadStates` reads it;
/// entries written before have the document as `doc`).
pub fn server_copy(
    coll: &str,
    id: &str,
    doc: Option<&impl serde::Serialize>,
    version: u64,
    gen: u64,
) -> Value {
    let mut copy = json!({"coll": coll, "id": id, "version": version});
    if let Some(d) = doc {
        copy["d"] = json!(serde_json::to_string(d).expect("JSON values serialize"));
    }
    if gen > 0 {
        copy["g"] = json!(gen);
    }
    copy
}

/// The `_server` entry that says a record's document is the server's at
/// `d.version` (generation `d.gen`), whatever the record's own `v` and `s`
/// say: a write settled without its record written again. Readers:
/// glue.js `loadStates`, `sweep` and `syncDocsText`, and the write path
/// (src/store.rs), which replaces it with a full copy on the next edit.
pub fn settle_marker(coll: &str, id: &str, d: &ServerDoc) -> Value {
    let mut m = json!({"coll": coll, "id": id, "version": d.version, "m": 1});
    if d.gen > 0 {
        m["g"] = json!(d.gen);
    }
    m
}

/// The runs of consecutive mids among `mids` (`(first, last)`, in order):
/// a settled push's entries go in one request per run, not one per entry.
/// Consecutive mids name nothing else in `_outbox` (its key is the mid).
fn runs(mids: &[u64]) -> Vec<(u64, u64)> {
    let mut sorted = mids.to_vec();
    crate::sorted::sort_by(&mut sorted, u64::cmp);
    sorted.dedup();
    let mut out: Vec<(u64, u64)> = vec![];
    for m in sorted {
        match out.last_mut() {
            Some((_, hi)) if *hi + 1 == m => *hi = m,
            _ => out.push((m, m)),
        }
    }
    out
}

/// What a step writes (`ops`, in order) and, once committed, tells the app.
#[derive(Debug, Default)]
pub struct StepPlan {
    /// The requests, for glue.js `applyOps`: `{s: store, put: value}`,
    /// `{s, del: key}`, `{s, delRange: [first, last]}` or `{sweep: {...}}`.
    pub ops: Vec<Value>,
    /// Documents with an unresolved conflict (`conflicts: "manual"`): their
    /// records carry the marker `c`.
    pub conflicted: SortedSet<(String, String)>,
    /// Collections whose documents changed (live queries refresh).
    pub colls: SortedSet<String>,
    /// Collections with documents whose server version alone moved (a
    /// write settled: settle markers, the documents did not change): only
    /// what shows the sync state (`$sync`) refreshes.
    pub restamped: SortedSet<String>,
    /// Events for the app, in order.
    pub events: Vec<Event>,
    /// Documents changed by the server (not by ingesting local writes),
    /// when [`Planner::changes`]: `{coll, id, op, deleted, doc?}`.
    pub changes: Vec<Value>,
    /// A resync completed: sweep what it did not see ([`Planner::finish`]).
    pub sweep: Option<u64>,
}

/// A `change` event's entry for a new view: its op and document.
fn change(v: &super::engine::ViewChange) -> Value {
    let op = match (&v.doc, v.existed) {
        (None, _) => "delete",
        (Some(_), false) => "insert",
        (Some(_), true) => "update",
    };
    let mut c = json!({"coll": v.coll, "id": v.id, "op": op, "deleted": v.doc.is_none()});
    if let Some(d) = &v.doc {
        let d = d.fields();
        let mut doc = JsonObject::with_capacity(d.len() + 1);
        doc.insert("id".into(), Value::String(v.id.clone()));
        doc.extend(
            d.iter()
                .filter(|(k, _)| *k != "id")
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        c["doc"] = Value::Object(doc);
    }
    c
}

/// True if the collection keeps conflicts for the app (`conflicts: "manual"`).
pub fn is_manual(schema: &Schema, coll: &str) -> bool {
    schema.collections.get(coll).map(|s| s.conflicts) == Some(ConflictMode::Manual)
}

/// A record with the unresolved-conflict marker.
fn marked(mut rec: Value) -> Value {
    rec["c"] = json!(1);
    rec
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::DocText;

    #[test]
    fn settled_mids_are_deleted_by_runs_of_consecutive_keys() {
        assert_eq!(runs(&[]), vec![]);
        assert_eq!(runs(&[7]), vec![(7, 7)]);
        assert_eq!(runs(&[5, 1, 2, 3, 9, 10, 3]), vec![(1, 3), (5, 5), (9, 10)]);
    }

    #[test]
    fn a_record_made_from_text_has_the_keys_of_the_parsed_document() {
        // The text path parses only the fields the indexes start with:
        // its record must be the one the whole document gives.
        let schema = Schema::from_options(&json!({"collections": {"todos": {"indexes": [
            "done", "meta.owner", ["priority", "createdAt"], "missing"]}}}))
        .unwrap();
        let state = ServerDoc {
            doc: None,
            version: 7,
            gen: 2,
        };
        for text in [
            r#"{"id":"a","done":true,"meta":{"owner":"x","n":[1,{"owner":2}]},"priority":3,"createdAt":1.5e12,"tags":["a"],"note":"\u00e9\"{"}"#,
            r#"{"id":"a","priority":1,"done":false,"priority":2}"#,
            r#"{"id":"a","meta":"flat","createdAt":null}"#,
            r#"{"id":"a"}"#,
        ] {
            let t = DocText::from_text(text.to_owned()).unwrap();
            let fields = Doc::Fields(t.parse());
            let from_text = doc_record(&schema, "todos", "a", &Doc::Text(t), Some(&state)).unwrap();
            let from_fields = doc_record(&schema, "todos", "a", &fields, Some(&state)).unwrap();
            let keys = |r: &Value| {
                let mut r = r.clone();
                r.as_object_mut().unwrap().remove("d");
                r
            };
            assert_eq!(keys(&from_text), keys(&from_fields), "{text}");
            assert_eq!(from_text["d"], json!(text), "the text is stored as it came");
        }
    }
}

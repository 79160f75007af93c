//! Local mutations: validation, and the records and outbox entries they
//! become. This is where a mutation is validated and queued; the binding
//! writes the result in one IndexedDB transaction.

use crate::error::{CoreError, Result};
use crate::ids::is_temp;
use crate::json::{check_id, merge_patch, type_name};
use crate::keys::{index_key, index_key_in};
use crate::schema::{CollectionSpec, IndexSpec, Schema, SyncMode};
use serde_json::{json, Map, Value};
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Insert,
    Update,
    Replace,
    Delete,
}

impl OpKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OpKind::Insert => "insert",
            OpKind::Update => "update",
            OpKind::Replace => "replace",
            OpKind::Delete => "delete",
        }
    }
}

/// A validated mutation. `body` is the document (insert, replace) or the
/// merge patch (update).
#[derive(Debug, Clone, PartialEq)]
pub struct Mutation {
    pub kind: OpKind,
    pub coll: String,
    pub id: String,
    pub body: Option<Value>,
}

/// Names an argument in error messages: `doc` for a single call,
/// `ops[3].doc` inside a batch.
fn at(single: bool, i: usize, field: &str) -> String {
    if single {
        field.to_owned()
    } else {
        format!("ops[{i}].{field}")
    }
}

/// Validates a batch of operations (`[{op, coll, id?, doc?, patch?}]`).
/// Inserts without an id get one from `new_id`.
pub fn parse_ops(
    ops: &Value,
    schema: &Schema,
    single: bool,
    mut new_id: impl FnMut() -> String,
) -> Result<Vec<Mutation>> {
    let list = ops.as_array().ok_or_else(|| {
        CoreError::InvalidDocument(format!("ops must be an array, got {}", type_name(ops)))
    })?;
    let mut out = Vec::with_capacity(list.len());
    for (i, op) in list.iter().enumerate() {
        let here = |f: &str| at(single, i, f);
        let obj = op.as_object().ok_or_else(|| {
            CoreError::InvalidDocument(format!("ops[{i}] must be an object, got {}", type_name(op)))
        })?;
        for k in obj.keys() {
            if !matches!(k.as_str(), "op" | "coll" | "id" | "doc" | "patch") {
                return Err(CoreError::InvalidDocument(format!(
                    "ops[{i}]: unknown field {k:?} (known: op coll id doc patch)"
                )));
            }
        }
        let kind = match obj.get("op").and_then(Value::as_str) {
            Some("insert") => OpKind::Insert,
            Some("update") => OpKind::Update,
            Some("replace") => OpKind::Replace,
            Some("delete") => OpKind::Delete,
            _ => {
                return Err(CoreError::InvalidDocument(format!(
                    "ops[{i}].op must be \"insert\", \"update\", \"replace\" or \"delete\""
                )))
            }
        };
        let coll = match obj.get("coll") {
            Some(Value::String(c)) => c.clone(),
            _ => {
                return Err(CoreError::UnknownCollection(format!(
                    "{} must name a collection",
                    here("coll")
                )))
            }
        };
        if schema.collection(&coll).is_err() {
            return Err(CoreError::UnknownCollection(format!(
                "{}: unknown collection {coll:?}",
                here("coll")
            )));
        }
        let object = |field: &str| -> Result<Map<String, Value>> {
            let bad = |got: &str| {
                let msg = format!("{} must be an object, got {got}", here(field));
                if field == "patch" {
                    CoreError::InvalidPatch(msg)
                } else {
                    CoreError::InvalidDocument(msg)
                }
            };
            match obj.get(field) {
                Some(Value::Object(o)) => Ok(o.clone()),
                Some(other) => Err(bad(type_name(other))),
                None => Err(bad("nothing")),
            }
        };
        let given_id = || -> Result<String> {
            match obj.get("id") {
                Some(v) => check_id(v, &here("id")),
                None => Err(CoreError::InvalidId(format!("{} is required", here("id")))),
            }
        };
        let m = match kind {
            OpKind::Insert => {
                let doc = object("doc")?;
                let id = match doc.get("id") {
                    Some(v) => {
                        let id = check_id(v, &here("doc.id"))?;
                        if is_temp(&id) {
                            return Err(CoreError::InvalidId(format!(
                                "{}: ids starting with \"tmp_\" are reserved for the store",
                                here("doc.id")
                            )));
                        }
                        id
                    }
                    None => new_id(),
                };
                Mutation {
                    kind,
                    coll,
                    body: Some(with_id_first(&id, doc)),
                    id,
                }
            }
            OpKind::Replace => {
                let id = given_id()?;
                let doc = object("doc")?;
                if let Some(v) = doc.get("id") {
                    if v.as_str() != Some(id.as_str()) {
                        return Err(CoreError::InvalidDocument(format!(
                            "{}: the document's id differs from the id replaced",
                            here("doc.id")
                        )));
                    }
                }
                Mutation {
                    kind,
                    coll,
                    body: Some(with_id_first(&id, doc)),
                    id,
                }
            }
            OpKind::Update => {
                let id = given_id()?;
                let patch = object("patch")?;
                if let Some(v) = patch.get("id") {
                    if v.as_str() != Some(id.as_str()) {
                        return Err(CoreError::InvalidPatch(format!(
                            "{}: a patch cannot change or remove the id",
                            here("patch.id")
                        )));
                    }
                }
                Mutation {
                    kind,
                    coll,
                    id,
                    body: Some(Value::Object(patch)),
                }
            }
            OpKind::Delete => Mutation {
                kind,
                coll,
                id: given_id()?,
                body: None,
            },
        };
        out.push(m);
    }
    Ok(out)
}

/// Rewrites temporary ids the sync server has mapped (aliases) to their
/// canonical ids, as the sync engine does for queued mutations: each
/// mutation's target id, and string values in its document or patch that
/// name a mapped temporary id (the document's own `id` among them).
pub fn resolve_aliases(muts: &mut [Mutation], map: &crate::sorted::SortedMap<String, String>) {
    if map.is_empty() {
        return;
    }
    for m in muts {
        if let Some(c) = map.get(&m.id) {
            m.id = c.clone();
        }
        if let Some(body) = m.body.as_mut() {
            crate::sync::fields::rewrite_refs(body, map);
        }
    }
}

fn with_id_first(id: &str, mut doc: Map<String, Value>) -> Value {
    doc.shift_remove("id");
    let mut out = Map::with_capacity(doc.len() + 1);
    out.insert("id".into(), Value::String(id.to_owned()));
    out.extend(doc);
    Value::Object(out)
}

/// A document as stored: its current local state and the server version it
/// was last synced at (`None` before it ever reached the server).
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub doc: Value,
    pub version: Option<u64>,
    /// The resync generation of the record's server state (`g`; 0 = none):
    /// the server copy a first edit saves keeps it.
    pub gen: u64,
    /// The document has an unresolved conflict (`conflicts: "manual"`):
    /// its record carries the marker `c`, which edits keep.
    pub conflict: bool,
    /// The sync engine keeps the server's copy of the document in
    /// `_server` (record marker `s`, or found there by the binding): the
    /// record may differ from it. A record with a `version` and no copy
    /// *is* the server's document, so the first local edit must save it
    /// there first (see [`WritePlan::server_copies`]). The binding gives a
    /// record with a settle marker in `_server` the marker's version and
    /// generation, and no copy (`src/store.rs` `stored`).
    pub server_copy: bool,
}

/// What `_server` holds for a document of a synced collection, as the
/// write path reads it beside the record ([`Stored::under`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ServerEntry {
    /// Nothing (or not read: a local-only collection).
    None,
    /// A full copy of the server's document (`plan::server_copy`): an
    /// edit of the document is queued and has not settled.
    Copy,
    /// A settle marker (`plan::settle_marker`): the record's document is
    /// the server's at `version`, of resync generation `gen`.
    Marker { version: Option<u64>, gen: u64 },
}

impl Stored {
    /// The record as the write path must see it given its `_server`
    /// entry, which outranks the record's own `v`, `g` and `s` (a step
    /// that settles a write does not write its record again): a copy
    /// means the engine has the server's document under unsettled edits
    /// (no copy is saved again, the record gets `s`, and the next edit is
    /// a follow-up, without a base); a marker gives the server version and
    /// generation of the record's document, which the next edit is based
    /// on and which it replaces with a full copy. The step planner keeps a
    /// copy exactly while the document has outbox entries (a write that
    /// settles, as a no-op too, leaves a marker in its place), so this is
    /// what `ClientSync::base_for` decides when the step takes the edit in.
    pub fn under(mut self, entry: ServerEntry) -> Stored {
        match entry {
            ServerEntry::None => {}
            ServerEntry::Copy => self.server_copy = true,
            ServerEntry::Marker { version, gen } => {
                self.version = version;
                self.gen = gen;
                self.server_copy = false;
            }
        }
        self
    }
}

pub type Key = (String, String);

/// The documents a batch must read before it can be applied: targets of
/// updates, replaces and deletes that no earlier op in the batch wrote.
/// Inserts are not read: the store's unique key rejects duplicates.
pub fn reads_needed(muts: &[Mutation]) -> Vec<Key> {
    let mut seen: std::collections::HashSet<Key> = Default::default();
    let mut out = vec![];
    for m in muts {
        let key = (m.coll.clone(), m.id.clone());
        if m.kind != OpKind::Insert && !seen.contains(&key) {
            out.push(key.clone());
        }
        seen.insert(key);
    }
    out
}

#[derive(Debug, Clone, PartialEq)]
pub enum WriteKind {
    /// Fails with a constraint error if the id exists: inserts.
    Add,
    Put,
    Delete,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Write {
    pub coll: String,
    pub id: String,
    pub kind: WriteKind,
    /// The record to store (absent for deletes).
    pub record: Option<Value>,
    /// Index into the ops, for error messages.
    pub op: usize,
}

/// What one batch does to the store: applied in order, in one transaction.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WritePlan {
    pub writes: Vec<Write>,
    /// Outbox entries, oldest first; the store assigns their mutation ids.
    pub outbox: Vec<Value>,
    /// The id each op addressed.
    pub ids: Vec<String>,
    /// Collections the batch changed.
    pub colls: Vec<String>,
    /// Server documents to save in `_server` (`plan::server_copy`)
    /// because this batch is the first local edit of a record that held
    /// the server's document (the binding read `_server` first: it held no
    /// copy, at most a settle marker, which the copy replaces).
    pub server_copies: Vec<Value>,
}

/// The record stored for a document: its id, its JSON text, its server
/// version and the encoded key of each declared index.
pub fn record(
    spec: &CollectionSpec,
    id: &str,
    doc: &Value,
    json: String,
    version: Option<u64>,
) -> Value {
    layout(spec, id, json, version, |ix| index_key(ix, doc))
}

/// [`record`] of a document held as its map (no copy into a `Value`).
pub fn record_in(
    spec: &CollectionSpec,
    id: &str,
    doc: &Map<String, Value>,
    json: String,
    version: Option<u64>,
) -> Value {
    layout(spec, id, json, version, |ix| index_key_in(ix, doc))
}

fn layout(
    spec: &CollectionSpec,
    id: &str,
    json: String,
    version: Option<u64>,
    key: impl Fn(&IndexSpec) -> Value,
) -> Value {
    let mut r = Map::with_capacity(3 + spec.indexes.len());
    r.insert("id".into(), json!(id));
    r.insert("d".into(), Value::String(json));
    r.insert("v".into(), json!(version));
    for ix in &spec.indexes {
        r.insert(ix.key_path(), key(ix));
    }
    Value::Object(r)
}

/// [`record`] for a stored document, with its markers: `c` (an unresolved
/// conflict) and `s` (the sync engine holds the server's copy).
pub fn stored_record(spec: &CollectionSpec, id: &str, s: &Stored, json: String) -> Value {
    let mut r = record(spec, id, &s.doc, json, s.version);
    if s.conflict {
        r["c"] = json!(1);
    }
    if s.server_copy {
        r["s"] = json!(1);
    }
    r
}

/// Applies validated mutations to the documents read for them (`current`,
/// keyed by collection and id; `None` = absent), yielding the writes and
/// outbox entries. Fails without side effects on the first invalid op.
pub fn apply(
    muts: &[Mutation],
    schema: &Schema,
    single: bool,
    current: &HashMap<Key, Option<Stored>>,
) -> Result<WritePlan> {
    apply_limited(muts, schema, single, current, None)
}

/// [`apply`], with documents of synced collections also bounded by
/// `server_max_doc_bytes` (the sync server's limit, once known).
pub fn apply_limited(
    muts: &[Mutation],
    schema: &Schema,
    single: bool,
    current: &HashMap<Key, Option<Stored>>,
    server_max_doc_bytes: Option<usize>,
) -> Result<WritePlan> {
    let mut overlay: HashMap<Key, Option<Stored>> = HashMap::new();
    let mut plan = WritePlan::default();
    for (i, m) in muts.iter().enumerate() {
        let spec = schema.collection(&m.coll)?;
        let key = (m.coll.clone(), m.id.clone());
        let existing = match overlay.get(&key) {
            Some(s) => s.clone(),
            None => current.get(&key).cloned().flatten(),
        };
        let missing = || CoreError::NotFound {
            path: at(single, i, "id"),
            coll: m.coll.clone(),
            id: m.id.clone(),
        };
        // The first edit of a record that is the server's document saves
        // that document, so the sync engine still knows it (also after a
        // reload before the edit reached the engine). An update or replace
        // carries it as its entry's `baseDoc` too, as the engine would
        // (`sync::Entry`), so the sync step leaves the entry as written.
        let mut base_doc: Option<Value> = None;
        let existing = match existing {
            Some(mut old)
                if m.kind != OpKind::Insert && spec.sync != SyncMode::Local && !old.server_copy =>
            {
                if let Some(version) = old.version {
                    plan.server_copies.push(crate::sync::plan::server_copy(
                        &m.coll,
                        &m.id,
                        Some(&old.doc),
                        version,
                        old.gen,
                    ));
                    old.server_copy = true;
                    if matches!(m.kind, OpKind::Update | OpKind::Replace) {
                        base_doc = Some(old.doc.clone());
                    }
                }
                Some(old)
            }
            other => other,
        };
        let (next, kind) = match m.kind {
            OpKind::Insert => {
                if overlay.get(&key).is_some_and(Option::is_some) {
                    return Err(CoreError::AlreadyExists {
                        path: at(single, i, "doc.id"),
                        coll: m.coll.clone(),
                        id: m.id.clone(),
                    });
                }
                let doc = m.body.clone().expect("insert has a doc");
                let s = Stored {
                    doc,
                    version: None,
                    gen: 0,
                    conflict: false,
                    server_copy: false,
                };
                (Some(s), WriteKind::Add)
            }
            OpKind::Replace => {
                let old = existing.ok_or_else(missing)?;
                let doc = m.body.clone().expect("replace has a doc");
                (
                    Some(Stored {
                        doc,
                        version: old.version,
                        gen: old.gen,
                        conflict: old.conflict,
                        server_copy: old.server_copy,
                    }),
                    WriteKind::Put,
                )
            }
            OpKind::Update => {
                let mut old = existing.ok_or_else(missing)?;
                merge_patch(&mut old.doc, m.body.as_ref().expect("update has a patch"));
                (Some(old), WriteKind::Put)
            }
            OpKind::Delete => {
                if existing.is_none() {
                    // Deleting what is not there is a no-op, as in Dexie.
                    plan.ids.push(m.id.clone());
                    continue;
                }
                (None, WriteKind::Delete)
            }
        };
        let record = match &next {
            Some(s) => {
                let text = serde_json::to_string(&s.doc).expect("JSON values serialize");
                let limit = match server_max_doc_bytes {
                    Some(server) if spec.sync != SyncMode::Local => {
                        server.min(schema.max_doc_bytes)
                    }
                    _ => schema.max_doc_bytes,
                };
                if text.len() > limit {
                    return Err(CoreError::DocTooLarge {
                        path: at(
                            single,
                            i,
                            if m.kind == OpKind::Update {
                                "patch"
                            } else {
                                "doc"
                            },
                        ),
                        size: text.len(),
                        limit,
                    });
                }
                Some(stored_record(spec, &m.id, s, text))
            }
            None => None,
        };
        // The server version the edit is based on, as the sync engine
        // gives it (`ClientSync::base_for`), so that the sync step leaves
        // the entry as written: none for a follow-up of an unsettled edit
        // (an earlier op of this batch, or an edit whose server copy is in
        // `_server`: see `Stored::under`), which is based on that edit.
        // (Were they to disagree, the step would stamp the engine's base
        // and store the entry again.)
        let follow_up = overlay.contains_key(&key)
            || current
                .get(&key)
                .and_then(|s| s.as_ref())
                .is_some_and(|s| s.server_copy);
        let base = current
            .get(&key)
            .and_then(|s| s.as_ref())
            .and_then(|s| s.version)
            .filter(|_| !follow_up);
        if spec.sync != SyncMode::Local {
            let mut e = Map::new();
            e.insert("coll".into(), json!(m.coll));
            e.insert("op".into(), json!(m.kind.as_str()));
            e.insert("id".into(), json!(m.id));
            match m.kind {
                OpKind::Update => {
                    e.insert("patch".into(), m.body.clone().expect("patch"));
                }
                OpKind::Insert | OpKind::Replace => {
                    e.insert("doc".into(), m.body.clone().expect("doc"));
                }
                OpKind::Delete => {}
            }
            e.insert("base".into(), json!(base));
            if let Some(d) = base_doc {
                e.insert("baseDoc".into(), d);
            }
            // The flat form of `sync::Entry`; the store adds the `mid`.
            e.insert("state".into(), json!("pending"));
            plan.outbox.push(Value::Object(e));
        }
        if !plan.colls.contains(&m.coll) {
            plan.colls.push(m.coll.clone());
        }
        plan.writes.push(Write {
            coll: m.coll.clone(),
            id: m.id.clone(),
            kind,
            record,
            op: i,
        });
        plan.ids.push(m.id.clone());
        overlay.insert(key, next);
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Schema {
        Schema::from_options(&json!({"collections": {
            "todos": {"indexes": ["done"]},
            "drafts": {"sync": "local"}}, "maxDocBytes": 200}))
        .unwrap()
    }

    fn ids() -> impl FnMut() -> String {
        let mut n = 0;
        move || {
            n += 1;
            format!("tmp_{n}")
        }
    }

    fn run(ops: Value, current: &HashMap<Key, Option<Stored>>) -> Result<WritePlan> {
        let s = schema();
        let muts = parse_ops(&ops, &s, false, ids())?;
        apply(&muts, &s, false, current)
    }

    #[test]
    fn insert_generates_temp_ids_and_outbox_entries() {
        let plan = run(
            json!([{"op": "insert", "coll": "todos", "doc": {"text": "a", "done": false}}]),
            &HashMap::new(),
        )
        .unwrap();
        assert_eq!(plan.ids, ["tmp_1"]);
        let rec = plan.writes[0].record.as_ref().unwrap();
        assert_eq!(rec["d"], json!(r#"{"id":"tmp_1","text":"a","done":false}"#));
        assert_eq!(rec["x646f6e65"], json!([1, 0]));
        assert_eq!(plan.outbox[0]["op"], "insert");
        assert_eq!(plan.outbox[0]["base"], Value::Null);
    }

    #[test]
    fn field_order_is_kept() {
        let ops = json!([{"op": "insert", "coll": "todos", "doc": {"z": 1, "id": "a", "b": 2, "m": 3}},
                         {"op": "update", "coll": "todos", "id": "a", "patch": {"z": null, "c": 4}}]);
        let plan = run(ops, &HashMap::new()).unwrap();
        let d = |i: usize| plan.writes[i].record.as_ref().unwrap()["d"].clone();
        assert_eq!(d(0), json!(r#"{"id":"a","z":1,"b":2,"m":3}"#));
        assert_eq!(d(1), json!(r#"{"id":"a","b":2,"m":3,"c":4}"#));
    }

    #[test]
    fn batch_ops_see_earlier_ops() {
        let ops = json!([
            {"op": "insert", "coll": "todos", "doc": {"id": "a", "n": 1}},
            {"op": "update", "coll": "todos", "id": "a", "patch": {"n": 2, "m": {"k": 1}}},
            {"op": "update", "coll": "todos", "id": "a", "patch": {"m": {"j": 2}}},
        ]);
        let s = schema();
        let muts = parse_ops(&ops, &s, false, ids()).unwrap();
        assert!(reads_needed(&muts).is_empty());
        let plan = apply(&muts, &s, false, &HashMap::new()).unwrap();
        let last = plan.writes[2].record.as_ref().unwrap();
        assert_eq!(last["d"], json!(r#"{"id":"a","n":2,"m":{"k":1,"j":2}}"#));
        assert_eq!(plan.outbox.len(), 3);
    }

    fn stored(doc: Value, version: Option<u64>, server_copy: bool) -> Option<Stored> {
        Some(Stored {
            doc,
            version,
            gen: 0,
            conflict: false,
            server_copy,
        })
    }

    #[test]
    fn first_edit_of_a_server_document_saves_it_once() {
        let key = |id: &str| ("todos".to_string(), id.to_string());
        let mut cur = HashMap::new();
        cur.insert(key("a"), stored(json!({"id": "a", "n": 1}), Some(7), false));
        cur.insert(key("b"), stored(json!({"id": "b", "n": 1}), Some(3), true));
        cur.insert(key("c"), stored(json!({"id": "c", "n": 1}), None, false));
        cur.insert(key("d"), stored(json!({"id": "d", "n": 1}), Some(9), false));
        let plan = run(
            json!([
                {"op": "update", "coll": "todos", "id": "a", "patch": {"n": 2}},
                {"op": "update", "coll": "todos", "id": "a", "patch": {"n": 3}},
                {"op": "update", "coll": "todos", "id": "b", "patch": {"n": 2}},
                {"op": "update", "coll": "todos", "id": "c", "patch": {"n": 2}},
                {"op": "delete", "coll": "todos", "id": "d"},
            ]),
            &cur,
        )
        .unwrap();
        // `a` (the server's document before the edits) and `d`; `b` already
        // has its copy, `c` never reached the server.
        assert_eq!(
            plan.server_copies,
            vec![
                json!({"coll": "todos", "id": "a", "d": "{\"id\":\"a\",\"n\":1}", "version": 7}),
                json!({"coll": "todos", "id": "d", "d": "{\"id\":\"d\",\"n\":1}", "version": 9}),
            ]
        );
        let rec = |i: usize| plan.writes[i].record.clone().unwrap();
        assert_eq!(rec(0)["s"], json!(1));
        assert_eq!(rec(1)["s"], json!(1));
        assert_eq!(rec(2)["s"], json!(1));
        assert_eq!(rec(3).get("s"), None);
        // The edit that saved `a` carries it as its base document, as the
        // sync engine would; no other entry does.
        let base_docs: Vec<Option<&Value>> = plan.outbox.iter().map(|e| e.get("baseDoc")).collect();
        assert_eq!(
            base_docs,
            vec![Some(&json!({"id": "a", "n": 1})), None, None, None, None]
        );
        assert_eq!(plan.outbox[0]["base"], json!(7));
    }

    #[test]
    fn local_collections_and_inserts_save_no_server_copy() {
        let mut cur = HashMap::new();
        cur.insert(
            ("drafts".to_string(), "a".to_string()),
            stored(json!({"id": "a", "n": 1}), Some(7), false),
        );
        let plan = run(
            json!([
                {"op": "update", "coll": "drafts", "id": "a", "patch": {"n": 2}},
                {"op": "insert", "coll": "todos", "doc": {"id": "z", "n": 1}},
            ]),
            &cur,
        )
        .unwrap();
        assert!(plan.server_copies.is_empty());
        assert_eq!(plan.writes[0].record.as_ref().unwrap().get("s"), None);
        assert_eq!(plan.writes[1].record.as_ref().unwrap().get("s"), None);
    }

    #[test]
    fn update_keeps_server_version_as_base() {
        let mut cur = HashMap::new();
        cur.insert(
            ("todos".to_string(), "a".to_string()),
            Some(Stored {
                doc: json!({"id": "a", "n": 1}),
                version: Some(7),
                gen: 0,
                conflict: false,
                server_copy: false,
            }),
        );
        let plan = run(
            json!([{"op": "update", "coll": "todos", "id": "a", "patch": {"n": null}}]),
            &cur,
        )
        .unwrap();
        assert_eq!(plan.outbox[0]["base"], json!(7));
        assert_eq!(plan.writes[0].record.as_ref().unwrap()["v"], json!(7));
        assert_eq!(
            plan.writes[0].record.as_ref().unwrap()["d"],
            json!(r#"{"id":"a"}"#)
        );
    }

    #[test]
    fn a_follow_up_of_an_unsettled_edit_has_no_base() {
        // As `ClientSync::base_for` gives it: the second op of a batch on
        // a document, and an edit of one whose server copy is saved (an
        // earlier edit has not settled), are based on that edit.
        let stored = |server_copy| Stored {
            doc: json!({"id": "a", "n": 1}),
            version: Some(7),
            gen: 0,
            conflict: false,
            server_copy,
        };
        let key = ("todos".to_string(), "a".to_string());
        let cur = HashMap::from([(key.clone(), Some(stored(false)))]);
        let plan = run(
            json!([
                {"op": "update", "coll": "todos", "id": "a", "patch": {"n": 2}},
                {"op": "update", "coll": "todos", "id": "a", "patch": {"n": 3}}
            ]),
            &cur,
        )
        .unwrap();
        assert_eq!(plan.outbox[0]["base"], json!(7));
        assert_eq!(plan.outbox[1]["base"], Value::Null);
        let cur = HashMap::from([(key, Some(stored(true)))]);
        let plan = run(
            json!([{"op": "update", "coll": "todos", "id": "a", "patch": {"n": 4}}]),
            &cur,
        )
        .unwrap();
        assert_eq!(plan.outbox[0]["base"], Value::Null);
        assert_eq!(plan.writes[0].record.as_ref().unwrap()["v"], json!(7));
    }

    #[test]
    fn local_collections_write_no_outbox_entries() {
        let plan = run(
            json!([{"op": "insert", "coll": "drafts", "doc": {"x": 1}}]),
            &HashMap::new(),
        )
        .unwrap();
        assert_eq!(plan.writes.len(), 1);
        assert!(plan.outbox.is_empty());
    }

    #[test]
    fn errors_name_the_offending_op() {
        let cur = HashMap::new();
        let err = |ops: Value| run(ops, &cur).unwrap_err();
        let e = err(
            json!([{"op": "insert", "coll": "todos", "doc": {}}, {"op": "update", "coll": "todos", "id": "zz", "patch": {}}]),
        );
        assert_eq!(e.code(), "NOT_FOUND");
        assert!(e.to_string().contains("ops[1].id"), "{e}");
        assert_eq!(
            err(json!([{"op": "insert", "coll": "nope", "doc": {}}])).code(),
            "UNKNOWN_COLLECTION"
        );
        assert_eq!(
            err(json!([{"op": "insert", "coll": "todos", "doc": 5}])).code(),
            "INVALID_DOCUMENT"
        );
        assert_eq!(
            err(json!([{"op": "insert", "coll": "todos", "doc": {"id": 5}}])).code(),
            "INVALID_ID"
        );
        assert_eq!(
            err(json!([{"op": "insert", "coll": "todos", "doc": {"id": "tmp_x"}}])).code(),
            "INVALID_ID"
        );
        assert_eq!(
            err(json!([{"op": "update", "coll": "todos", "id": "a", "patch": [1]}])).code(),
            "INVALID_PATCH"
        );
        assert_eq!(
            err(json!([{"op": "frob", "coll": "todos"}])).code(),
            "INVALID_DOCUMENT"
        );
        assert_eq!(
            err(json!([{"op": "insert", "coll": "todos", "doc": {"t": "x".repeat(300)}}])).code(),
            "DOC_TOO_LARGE"
        );
        let twice = json!([{"op": "insert", "coll": "todos", "doc": {"id": "a"}}, {"op": "insert", "coll": "todos", "doc": {"id": "a"}}]);
        assert_eq!(err(twice).code(), "ALREADY_EXISTS");
    }

    #[test]
    fn outbox_entries_are_sync_engine_entries() {
        let plan = run(
            json!([{"op": "insert", "coll": "todos", "doc": {"text": "a"}},
                   {"op": "update", "coll": "todos", "id": "tmp_1", "patch": {"done": true}}]),
            &HashMap::new(),
        )
        .unwrap();
        for (i, e) in plan.outbox.iter().enumerate() {
            let mut e = e.clone();
            e["mid"] = json!(i + 1); // what IndexedDB's key generator adds
            let entry: crate::sync::Entry = serde_json::from_value(e).unwrap();
            assert_eq!(entry.state, crate::sync::EntryState::Pending);
            assert_eq!(entry.mutation.mid, i as u64 + 1);
            entry.mutation.validate().unwrap();
        }
    }

    #[test]
    fn aliases_rewrite_targets_and_references() {
        let s = schema();
        let ops = json!([
            {"op": "update", "coll": "todos", "id": "tmp_a", "patch": {"parent": "tmp_b", "n": ["tmp_a"]}},
            {"op": "replace", "coll": "todos", "id": "tmp_a", "doc": {"id": "tmp_a"}},
            {"op": "delete", "coll": "todos", "id": "tmp_c"},
        ]);
        let mut muts = parse_ops(&ops, &s, false, ids()).unwrap();
        let map: crate::sorted::SortedMap<String, String> = [("tmp_a", "A"), ("tmp_b", "B")]
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        resolve_aliases(&mut muts, &map);
        assert_eq!(muts[0].id, "A");
        assert_eq!(muts[0].body, Some(json!({"parent": "B", "n": ["A"]})));
        assert_eq!(muts[1].body, Some(json!({"id": "A"})));
        assert_eq!(muts[2].id, "tmp_c", "unmapped ids stay");
    }

    #[test]
    fn deleting_a_missing_document_is_a_no_op() {
        let plan = run(
            json!([{"op": "delete", "coll": "todos", "id": "gone"}]),
            &HashMap::new(),
        )
        .unwrap();
        assert!(plan.writes.is_empty() && plan.outbox.is_empty());
        assert_eq!(plan.ids, ["gone"]);
    }
}

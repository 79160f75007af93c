//! The server's per-mutation rules (docs/protocol.md 3.3, 3.4 and 4) over
//! any storage: temp-id resolution, reference rewriting, the conflict and
//! rejection rules, field versions and the change each write produces.
//! The reference server runs them inside its SQLite transaction; the model
//! server of the core's tests runs them over maps. One implementation, so
//! the sync simulation exercises the server's real rules.

use crate::sorted::SortedMap;

use serde_json::Value;

use super::fields::{merge_patch, rewrite_refs, temp_strings, touched_paths, FieldVersions};
use crate::protocol::{
    is_temp_id, Change, ChangeOp, DocText, JsonObject, Mutation, MutationOp, MutationResult,
};

/// A stored document (or tombstone) with what the conflict rules need.
#[derive(Debug, Clone, PartialEq)]
pub struct DocRow {
    /// The document; `None` for a tombstone.
    pub doc: Option<JsonObject>,
    /// True for a tombstone.
    pub deleted: bool,
    /// Seq of the last change.
    pub version: u64,
    /// Seq at which the live document was (re)created.
    pub created: u64,
    /// Version of every leaf path the document has ever had.
    pub fields: FieldVersions,
    /// The clock (`ts`) of the mutation that last wrote it.
    pub ts: Option<u64>,
}

/// The storage a push runs against, scoped to one namespace and client,
/// inside the push's transaction.
pub trait DocStore {
    /// The storage's error.
    type Error;
    /// The document `coll/id`, live or tombstone.
    fn load(&mut self, coll: &str, id: &str) -> Result<Option<DocRow>, Self::Error>;
    /// The canonical id this client's temporary id maps to.
    fn lookup_tmp(&mut self, tmp: &str) -> Result<Option<String>, Self::Error>;
    /// Assigns, remembers and returns a canonical id for a new temporary id.
    fn map_tmp(&mut self, tmp: &str) -> Result<String, Self::Error>;
    /// Stores the new state of `coll/id`.
    fn store(&mut self, coll: &str, id: &str, row: &DocRow) -> Result<(), Self::Error>;
}

/// A `rejected` result.
pub fn rejected(m: &Mutation, code: &str, message: impl Into<String>) -> MutationResult {
    MutationResult::Rejected {
        mid: m.mid,
        code: code.to_string(),
        message: message.into(),
    }
}

/// The state of one push while its mutations are applied in order.
#[derive(Debug, Clone)]
pub struct PushApply {
    /// The last seq used (the database head when the push started).
    pub seq: u64,
    /// Largest serialized document or patch (and merged result), in bytes.
    pub max_doc_bytes: usize,
    /// Temporary ids named by the push, mapped (the answer's `idMap`).
    pub id_map: SortedMap<String, String>,
    /// The changes written, in seq order.
    pub changes: Vec<Change>,
}

impl PushApply {
    /// Starts a push at database head `seq`.
    pub fn new(seq: u64, max_doc_bytes: usize) -> Self {
        PushApply {
            seq,
            max_doc_bytes,
            id_map: SortedMap::new(),
            changes: Vec::new(),
        }
    }

    /// A replayed mutation (mid already processed): only its temporary id
    /// mapping goes into the answer.
    pub fn note_replay<S: DocStore>(&mut self, s: &mut S, m: &Mutation) -> Result<(), S::Error> {
        if is_temp_id(&m.id) {
            if let Some(c) = s.lookup_tmp(&m.id)? {
                self.id_map.insert(m.id.clone(), c);
            }
        }
        Ok(())
    }

    /// Rewrites `tmp_` strings this client has mapped to their canonical ids.
    fn rewrite<S: DocStore>(&mut self, s: &mut S, v: &mut Value) -> Result<(), S::Error> {
        let mut found = Vec::new();
        temp_strings(v, &mut found);
        let mut map = SortedMap::new();
        for t in found {
            if let Some(c) = s.lookup_tmp(&t)? {
                map.insert(t, c);
            }
        }
        if !map.is_empty() {
            rewrite_refs(v, &map);
        }
        Ok(())
    }

    fn write<S: DocStore>(
        &mut self,
        s: &mut S,
        m: &Mutation,
        id: &str,
        doc: Option<JsonObject>,
        row: Option<DocRow>,
    ) -> Result<MutationResult, S::Error> {
        self.seq += 1;
        let seq = self.seq;
        let prev = row.as_ref().map_or(0, |r| r.version);
        let mut fields = row.as_ref().map(|r| r.fields.clone()).unwrap_or_default();
        let old_live = row
            .as_ref()
            .filter(|r| !r.deleted)
            .and_then(|r| r.doc.as_ref());
        fields.record(old_live, doc.as_ref(), seq);
        // The field versions are stored with the document: they count
        // against the same limit (a document of many tiny leaves can carry
        // more metadata than data).
        if fields.stored_bytes() > self.max_doc_bytes {
            self.seq -= 1;
            return Ok(rejected(
                m,
                "DOC_TOO_LARGE",
                format!(
                    "the document's field versions would be larger than {} bytes",
                    self.max_doc_bytes
                ),
            ));
        }
        let created = match &row {
            Some(r) if !r.deleted => r.created,
            _ => seq,
        };
        let new = DocRow {
            deleted: doc.is_none(),
            doc,
            version: seq,
            created,
            fields,
            ts: m.ts,
        };
        s.store(&m.coll, id, &new)?;
        self.changes.push(Change {
            seq,
            coll: m.coll.clone(),
            id: id.to_string(),
            op: if new.doc.is_some() {
                ChangeOp::Put
            } else {
                ChangeOp::Delete
            },
            doc: new.doc.map(DocText::from),
            version: seq,
            ts: m.ts,
        });
        Ok(MutationResult::Applied {
            mid: m.mid,
            id: id.to_string(),
            version: seq,
            prev: Some(prev),
        })
    }

    fn too_large(&self, v: &JsonObject) -> bool {
        // serde_json's writer into a counting sink would avoid the allocation;
        // documents are bounded by the request body limit anyway.
        serde_json::to_vec(v).map(|b| b.len()).unwrap_or(usize::MAX) > self.max_doc_bytes
    }

    /// Applies or refuses one new mutation (its mid is above the client's
    /// last one); the caller stores the result and advances the last mid.
    pub fn apply<S: DocStore>(
        &mut self,
        s: &mut S,
        m: &Mutation,
    ) -> Result<MutationResult, S::Error> {
        if let Err(e) = m.validate() {
            return Ok(rejected(m, e.code, e.to_string()));
        }
        // The document or patch arrives as text; its fields are read once,
        // here (a number JSON allows but no float holds passes the syntax
        // check of the text, not this).
        let parsed = |body: &Option<DocText>| body.as_ref().map(DocText::try_parse).transpose();
        let (doc_fields, patch_fields) = match (parsed(&m.doc), parsed(&m.patch)) {
            (Ok(d), Ok(p)) => (d, p),
            (Err(e), _) | (_, Err(e)) => {
                let field = if m.doc.is_some() { "doc" } else { "patch" };
                return Ok(rejected(m, "INVALID_MUTATION", format!("{field}: {e}")));
            }
        };
        for body in [&doc_fields, &patch_fields].into_iter().flatten() {
            if self.too_large(body) {
                return Ok(rejected(
                    m,
                    "DOC_TOO_LARGE",
                    format!("document larger than {} bytes", self.max_doc_bytes),
                ));
            }
        }
        let conflict_missing = |id: &str, row: Option<&DocRow>| MutationResult::Conflict {
            mid: m.mid,
            id: id.to_string(),
            doc: None,
            version: row.map(|r| r.version),
            ts: row.and_then(|r| r.ts),
        };

        // Resolve the id: a temporary id maps to its canonical id.
        let mut id = m.id.clone();
        if is_temp_id(&m.id) {
            match s.lookup_tmp(&m.id)? {
                Some(c) => {
                    self.id_map.insert(m.id.clone(), c.clone());
                    if m.op == MutationOp::Insert {
                        // A retransmitted insert: same canonical id, applied once.
                        if let Some(row) = s.load(&m.coll, &c)? {
                            return Ok(MutationResult::Applied {
                                mid: m.mid,
                                id: c,
                                version: row.version,
                                prev: None,
                            });
                        }
                    }
                    id = c;
                }
                None if m.op == MutationOp::Insert => {
                    let c = s.map_tmp(&m.id)?;
                    self.id_map.insert(m.id.clone(), c.clone());
                    id = c;
                }
                None => return Ok(conflict_missing(&m.id, None)),
            }
        }

        let row = s.load(&m.coll, &id)?;
        let live = row.as_ref().filter(|r| !r.deleted);
        let changed_since = |r: &DocRow| m.base.is_some_and(|b| r.version > b);
        let conflict_with = |r: &DocRow| MutationResult::Conflict {
            mid: m.mid,
            id: id.clone(),
            doc: r.doc.clone(),
            version: Some(r.version),
            ts: r.ts,
        };

        match m.op {
            MutationOp::Insert | MutationOp::Replace => {
                if m.op == MutationOp::Insert {
                    if let Some(r) = live {
                        return Ok(conflict_with(r));
                    }
                } else if live.is_none() {
                    return Ok(conflict_missing(&id, row.as_ref()));
                }
                let mut doc = Value::Object(doc_fields.unwrap_or_default());
                self.rewrite(s, &mut doc)?;
                let Value::Object(mut doc) = doc else {
                    unreachable!("rewriting keeps the object")
                };
                doc.insert("id".into(), Value::String(id.clone()));
                // A replace that the document already equals is no conflict,
                // whatever changed since its base (both sides agree).
                let same = live.and_then(|r| r.doc.as_ref()) == Some(&doc);
                if let Some(r) = live.filter(|_| !same && m.op == MutationOp::Replace) {
                    if changed_since(r) {
                        return Ok(conflict_with(r));
                    }
                }
                if same {
                    let version = live.map_or(0, |r| r.version);
                    return Ok(MutationResult::Applied {
                        mid: m.mid,
                        id,
                        version,
                        prev: None,
                    });
                }
                self.write(s, m, &id, Some(doc), row)
            }
            MutationOp::Update => {
                let Some(r) = live else {
                    return Ok(conflict_missing(&id, row.as_ref()));
                };
                let mut patch = Value::Object(patch_fields.unwrap_or_default());
                self.rewrite(s, &mut patch)?;
                let Value::Object(patch) = patch else {
                    unreachable!("rewriting keeps the object")
                };
                if let Some(pid) = patch.get("id") {
                    if pid.as_str() != Some(id.as_str()) {
                        return Ok(rejected(
                            m,
                            "INVALID_PATCH",
                            "a patch cannot change the document id",
                        ));
                    }
                }
                let old = r.doc.clone().unwrap_or_default();
                let mut merged = Value::Object(old.clone());
                merge_patch(&mut merged, &Value::Object(patch.clone()));
                let Value::Object(merged) = merged else {
                    unreachable!("an object patch keeps an object")
                };
                // Size first: the checks below are linear in the document.
                if self.too_large(&merged) {
                    return Ok(rejected(
                        m,
                        "DOC_TOO_LARGE",
                        format!("patched document larger than {} bytes", self.max_doc_bytes),
                    ));
                }
                // A patch the document already satisfies is no conflict,
                // whatever changed since its base (both sides agree).
                if let Some(base) = m.base.filter(|_| merged != old) {
                    if r.created > base || r.fields.conflicts(&touched_paths(&patch), base) {
                        return Ok(conflict_with(r));
                    }
                }
                if merged == old {
                    return Ok(MutationResult::Applied {
                        mid: m.mid,
                        id,
                        version: r.version,
                        prev: None,
                    });
                }
                self.write(s, m, &id, Some(merged), row)
            }
            MutationOp::Delete => match &row {
                Some(r) if r.deleted => Ok(MutationResult::Applied {
                    mid: m.mid,
                    id,
                    version: r.version,
                    prev: None,
                }),
                Some(r) if changed_since(r) => Ok(conflict_with(r)),
                _ => self.write(s, m, &id, None, row),
            },
        }
    }
}

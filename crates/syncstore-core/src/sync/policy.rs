//! Conflict policies: what a client does when the server refuses one of its
//! mutations because the document changed (docs/conflicts.md).
//!
//! - [`Strategy::ServerWins`]: the server's document stands.
//! - [`Strategy::LastWriteWins`]: the later write wins, by hybrid logical
//!   clock (`ts`): a device whose wall clock is wrong wins only until the
//!   others have seen its clock (they never stamp below what they saw).
//! - [`Strategy::FieldMerge`]: a three-way merge of the local intent and the
//!   server's document against the base the client edited: fields changed
//!   on one side only take that side; a field changed on both sides merges
//!   recursively if both are objects, by element id if it is declared
//!   merge-by-id, else the fallback (server-wins or last-write-wins) picks.
//!
//! [`Policies`] maps collections to policies and lets the binding decide
//! single conflicts itself beforehand (an app's resolver function).

use crate::sorted::SortedMap;

use serde_json::Value;

use super::engine::{ConflictInfo, ConflictPolicy, Resolution};
use crate::json::{cmp_values, merge_patch};
use crate::protocol::{DocText, JsonObject, MutationOp};
use crate::schema::{ConflictMode, Schema};

/// How a collection resolves conflicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// The server's document stands; the local change is dropped.
    #[default]
    ServerWins,
    /// The write with the later clock wins.
    LastWriteWins,
    /// Three-way field merge; `lww` picks the fallback for a field changed
    /// on both sides (last-write-wins, else server-wins).
    FieldMerge {
        /// Last-write-wins for same-field edits (else server-wins).
        lww: bool,
    },
}

/// A collection's conflict policy.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CollectionPolicy {
    /// The strategy.
    pub strategy: Strategy,
    /// Arrays of objects with an `id` merged element by element, by field
    /// path (`"pauses"`, `"meta.items"`), with the field that orders the
    /// merged array (`None`: the server's order, then new local elements).
    pub merge_by_id: SortedMap<String, Option<String>>,
}

/// True if the local side wins a tie-break by clock (strictly later).
fn local_is_later(c: &ConflictInfo<'_>) -> bool {
    match (c.mutation.ts, c.remote_ts) {
        (Some(l), Some(r)) => l > r,
        (Some(_), None) => true,
        _ => false,
    }
}

/// The document the local mutation meant to produce.
fn intended(c: &ConflictInfo<'_>) -> Option<JsonObject> {
    let m = c.mutation;
    match m.op {
        MutationOp::Delete => None,
        MutationOp::Insert | MutationOp::Replace => m.doc.as_ref().map(DocText::parse),
        MutationOp::Update => {
            let start = c.base.or(c.local).cloned().unwrap_or_default();
            let mut v = Value::Object(start);
            let patch = m.patch.as_ref().map(DocText::parse).unwrap_or_default();
            merge_patch(&mut v, &Value::Object(patch));
            match v {
                Value::Object(o) => Some(o),
                _ => None,
            }
        }
    }
}

/// Makes the local intent win: the mutation again, based on the server's
/// current version (the engine sets `base`).
fn local_wins(c: &ConflictInfo<'_>) -> Resolution {
    let m = c.mutation;
    match (m.op, c.remote) {
        (MutationOp::Delete, None) => Resolution::ServerWins, // gone already
        (MutationOp::Delete, Some(_)) => Resolution::write(MutationOp::Delete, None, None),
        (MutationOp::Update, Some(_)) => Resolution::write(
            MutationOp::Update,
            None,
            m.patch.as_ref().map(DocText::parse),
        ),
        // An edit of a document deleted on the server brings it back.
        (_, None) => match intended(c).or_else(|| c.local.cloned()) {
            Some(doc) => Resolution::write(MutationOp::Insert, Some(doc), None),
            None => Resolution::ServerWins,
        },
        (_, Some(_)) => match intended(c) {
            Some(doc) => Resolution::write(MutationOp::Replace, Some(doc), None),
            None => Resolution::ServerWins,
        },
    }
}

impl CollectionPolicy {
    /// Decides a conflict.
    pub fn resolve(&self, c: &ConflictInfo<'_>) -> Resolution {
        match self.strategy {
            Strategy::ServerWins => Resolution::ServerWins,
            Strategy::LastWriteWins => {
                if local_is_later(c) {
                    local_wins(c)
                } else {
                    Resolution::ServerWins
                }
            }
            Strategy::FieldMerge { lww } => {
                let local_later = lww && local_is_later(c);
                let (Some(remote), Some(mine)) = (c.remote, intended(c)) else {
                    // A delete on either side: there are no fields to merge.
                    return if local_later {
                        local_wins(c)
                    } else {
                        Resolution::ServerWins
                    };
                };
                let empty = JsonObject::new();
                let base = c.base.unwrap_or(&empty);
                let merged = self.merge_objects("", base, &mine, remote, local_later);
                // Pushed as a patch from the server's document to the merge,
                // so that later queued edits of other fields keep theirs.
                let patch = diff_patch(remote, &merged);
                if patch.is_empty() {
                    Resolution::ServerWins
                } else {
                    Resolution::write(MutationOp::Update, None, Some(patch))
                }
            }
        }
    }

    /// Three-way merge of objects: keys in the server's order, then new
    /// local keys.
    fn merge_objects(
        &self,
        path: &str,
        base: &JsonObject,
        mine: &JsonObject,
        theirs: &JsonObject,
        local_later: bool,
    ) -> JsonObject {
        let mut keys: Vec<&String> = theirs.keys().collect();
        keys.extend(mine.keys().filter(|k| !theirs.contains_key(*k)));
        let mut out = JsonObject::new();
        for k in keys {
            let at = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            let v = self.merge_values(&at, base.get(k), mine.get(k), theirs.get(k), local_later);
            if let Some(v) = v {
                out.insert(k.clone(), v);
            }
        }
        out
    }

    fn merge_values(
        &self,
        path: &str,
        base: Option<&Value>,
        mine: Option<&Value>,
        theirs: Option<&Value>,
        local_later: bool,
    ) -> Option<Value> {
        if mine == theirs || mine == base {
            return theirs.cloned();
        }
        if theirs == base {
            return mine.cloned();
        }
        // Changed on both sides.
        match (mine, theirs) {
            (Some(Value::Object(m)), Some(Value::Object(t))) => {
                let empty = JsonObject::new();
                let b = match base {
                    Some(Value::Object(b)) => b,
                    _ => &empty,
                };
                Some(Value::Object(self.merge_objects(
                    path,
                    b,
                    m,
                    t,
                    local_later,
                )))
            }
            (Some(Value::Array(m)), Some(Value::Array(t)))
                if self.merge_by_id.contains_key(path) =>
            {
                let empty = vec![];
                let b = match base {
                    Some(Value::Array(b)) => b,
                    _ => &empty,
                };
                match merge_by_id(b, m, t, local_later, self.merge_by_id[path].as_deref()) {
                    Some(merged) => Some(Value::Array(merged)),
                    None => pick(mine, theirs, local_later),
                }
            }
            _ => pick(mine, theirs, local_later),
        }
    }
}

/// The merge patch that turns `from` into `to` (nested objects as nested
/// patches, removed fields as `null`).
pub fn diff_patch(from: &JsonObject, to: &JsonObject) -> JsonObject {
    let mut patch = JsonObject::new();
    for (k, v) in to {
        match (from.get(k), v) {
            (Some(a), b) if a == b => {}
            (Some(Value::Object(a)), Value::Object(b)) => {
                patch.insert(k.clone(), Value::Object(diff_patch(a, b)));
            }
            _ => {
                patch.insert(k.clone(), v.clone());
            }
        }
    }
    for k in from.keys() {
        if !to.contains_key(k) {
            patch.insert(k.clone(), Value::Null);
        }
    }
    patch
}

fn pick(mine: Option<&Value>, theirs: Option<&Value>, local_later: bool) -> Option<Value> {
    if local_later {
        mine.cloned()
    } else {
        theirs.cloned()
    }
}

fn element_id(v: &Value) -> Option<&Value> {
    v.as_object()?.get("id").filter(|id| !id.is_null())
}

/// Merges arrays of objects with an `id` element by element: union by id;
/// an element changed on one side takes that side, changed on both the
/// later one (or the server's); one deleted on a side and unchanged on the
/// other is deleted. `None` if an element has no id.
fn merge_by_id(
    base: &[Value],
    mine: &[Value],
    theirs: &[Value],
    local_later: bool,
    order_by: Option<&str>,
) -> Option<Vec<Value>> {
    let index = |list: &[Value]| -> Option<Vec<(String, Value)>> {
        list.iter()
            .map(|v| Some((element_id(v)?.to_string(), v.clone())))
            .collect()
    };
    let (b, m, t) = (index(base)?, index(mine)?, index(theirs)?);
    let find = |list: &[(String, Value)], id: &str| {
        list.iter().find(|(i, _)| i == id).map(|(_, v)| v.clone())
    };
    let mut ids: Vec<String> = t.iter().map(|(i, _)| i.clone()).collect();
    for (i, _) in &m {
        if !ids.contains(i) {
            ids.push(i.clone());
        }
    }
    let mut out = vec![];
    for id in ids {
        let (bv, mv, tv) = (find(&b, &id), find(&m, &id), find(&t, &id));
        // Unchanged locally: theirs; changed locally only, or on both
        // sides with the later local clock: mine.
        let v = if mv == tv || mv == bv {
            tv
        } else if tv == bv || local_later {
            mv
        } else {
            tv
        };
        out.extend(v);
    }
    if let Some(key) = order_by {
        crate::sorted::sort_by(&mut out, |a, b| cmp_values(a.get(key), b.get(key)));
    }
    Some(out)
}

/// What an app's resolver decided for one conflict.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// The local intent wins (as last-write-wins does when it is later).
    KeepLocal,
    /// The server's document stands.
    KeepRemote,
    /// The server's document stands and the local one is added under `id`.
    KeepBoth {
        /// A fresh temporary id for the copy.
        id: String,
    },
    /// This document replaces the server's.
    Doc(JsonObject),
}

/// Conflict policies by collection, plus decisions taken beforehand for
/// single mutations (by mid), e.g. by an app's resolver function.
#[derive(Debug, Clone, Default)]
pub struct Policies {
    /// Per collection; missing = server-wins.
    pub by_coll: SortedMap<String, CollectionPolicy>,
    /// Decided beforehand, by mutation id.
    pub decided: SortedMap<u64, Decision>,
}

impl Policies {
    /// The built-in policies the schema declares (a collection whose
    /// conflicts an app function decides falls back to server-wins).
    pub fn from_schema(schema: &Schema) -> Self {
        // `insert`, not `collect()`: see `Schema::from_options` (issue 19).
        let mut by_coll = SortedMap::new();
        for (name, spec) in &schema.collections {
            let strategy = match spec.conflicts {
                // Manual: the server's document shows until the app
                // resolves (the binding keeps the conflict).
                ConflictMode::ServerWins | ConflictMode::Custom | ConflictMode::Manual => {
                    Strategy::ServerWins
                }
                ConflictMode::LastWriteWins => Strategy::LastWriteWins,
                ConflictMode::FieldMerge => Strategy::FieldMerge {
                    lww: spec.fallback_lww,
                },
            };
            let policy = CollectionPolicy {
                strategy,
                merge_by_id: spec.merge_by_id.clone(),
            };
            by_coll.insert(name.clone(), policy);
        }
        Policies {
            by_coll,
            decided: SortedMap::new(),
        }
    }
}

impl ConflictPolicy for Policies {
    fn resolve(&self, c: &ConflictInfo<'_>) -> Resolution {
        match self.decided.get(&c.mutation.mid) {
            Some(Decision::KeepLocal) => local_wins(c),
            Some(Decision::KeepRemote) => Resolution::ServerWins,
            Some(Decision::KeepBoth { id }) => match c.local.or(intended(c).as_ref()) {
                Some(doc) => {
                    let mut doc = doc.clone();
                    doc.remove("id");
                    Resolution::Fork {
                        id: id.clone(),
                        doc,
                    }
                }
                None => Resolution::ServerWins,
            },
            Some(Decision::Doc(doc)) => {
                let op = if c.remote.is_some() {
                    MutationOp::Replace
                } else {
                    MutationOp::Insert
                };
                Resolution::write(op, Some(doc.clone()), None)
            }
            None => self
                .by_coll
                .get(&c.mutation.coll)
                .map_or(Resolution::ServerWins, |p| p.resolve(c)),
        }
    }
}

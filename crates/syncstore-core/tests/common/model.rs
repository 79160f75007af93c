//! An in-memory model of the sync server (docs/protocol.md sections 3-5 and
//! 7), for native tests of the client engine. The document rules (field
//! versions, conflict check, reference rewriting) are the reference server's
//! own, from `syncstore_core::sync::fields`; this file only replaces SQLite
//! with maps, mirroring `server/src/store/sqlite.rs` step by step.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;
use syncstore_core::protocol::{
    is_temp_id, Change, ChangeOp, JsonObject, Mutation, MutationOp, MutationResult, PullResponse,
    PushResponse, ServerMessage, START_CURSOR,
};
use syncstore_core::sync::fields::{
    merge_patch, rewrite_refs, temp_strings, touched_paths, FieldVersions,
};

#[derive(Debug, Clone)]
pub struct Row {
    pub doc: Option<JsonObject>,
    pub deleted: bool,
    pub version: u64,
    pub created: u64,
    pub fields: FieldVersions,
}

#[derive(Debug, Default)]
struct ClientRec {
    last_mid: u64,
    results: BTreeMap<u64, MutationResult>,
}

#[derive(Debug, Default)]
pub struct ModelServer {
    seq: u64,
    docs: BTreeMap<(String, String), Row>,
    clients: HashMap<String, ClientRec>,
    idmap: HashMap<(String, String), String>,
    next_id: u64,
    /// Bumped by [`ModelServer::compact`]: cursors of older epochs answer resync.
    pub epoch: u64,
    /// Largest serialized document or patch.
    pub max_doc_bytes: usize,
    /// How often each (client, mid) was processed (not replayed).
    pub processed: HashMap<(String, u64), u32>,
}

struct Ctx<'a> {
    s: &'a mut ModelServer,
    client: &'a str,
    id_map: BTreeMap<String, String>,
    changes: Vec<Change>,
}

fn rejected(m: &Mutation, code: &str, message: &str) -> MutationResult {
    MutationResult::Rejected {
        mid: m.mid,
        code: code.into(),
        message: message.into(),
    }
}

impl Ctx<'_> {
    fn lookup(&self, tmp: &str) -> Option<String> {
        self.s
            .idmap
            .get(&(self.client.to_string(), tmp.to_string()))
            .cloned()
    }

    fn rewrite(&self, v: &mut Value) {
        let mut found = Vec::new();
        temp_strings(v, &mut found);
        let map: HashMap<String, String> = found
            .into_iter()
            .filter_map(|t| self.lookup(&t).map(|c| (t, c)))
            .collect();
        if !map.is_empty() {
            rewrite_refs(v, &map);
        }
    }

    fn too_large(&self, v: &JsonObject) -> bool {
        serde_json::to_vec(v).unwrap().len() > self.s.max_doc_bytes
    }

    fn write(&mut self, m: &Mutation, id: &str, doc: Option<JsonObject>) -> MutationResult {
        self.s.seq += 1;
        let seq = self.s.seq;
        let key = (m.coll.clone(), id.to_string());
        let row = self.s.docs.get(&key);
        let mut fields = row.map(|r| r.fields.clone()).unwrap_or_default();
        let old_live = row.filter(|r| !r.deleted).and_then(|r| r.doc.as_ref());
        fields.record(old_live, doc.as_ref(), seq);
        let created = match row {
            Some(r) if !r.deleted => r.created,
            _ => seq,
        };
        self.s.docs.insert(
            key,
            Row {
                doc: doc.clone(),
                deleted: doc.is_none(),
                version: seq,
                created,
                fields,
            },
        );
        self.changes.push(Change {
            seq,
            coll: m.coll.clone(),
            id: id.to_string(),
            op: if doc.is_some() {
                ChangeOp::Put
            } else {
                ChangeOp::Delete
            },
            doc,
            version: seq,
        });
        MutationResult::Applied {
            mid: m.mid,
            id: id.to_string(),
            version: seq,
        }
    }

    fn apply(&mut self, m: &Mutation) -> MutationResult {
        if let Err(e) = m.validate() {
            return rejected(m, e.code, &e.to_string());
        }
        for body in [&m.doc, &m.patch].into_iter().flatten() {
            if self.too_large(body) {
                return rejected(m, "DOC_TOO_LARGE", "document too large");
            }
        }
        let conflict_missing = |id: &str, row: Option<&Row>| MutationResult::Conflict {
            mid: m.mid,
            id: id.to_string(),
            doc: None,
            version: row.map(|r| r.version),
        };
        let mut id = m.id.clone();
        if is_temp_id(&m.id) {
            match self.lookup(&m.id) {
                Some(c) => {
                    self.id_map.insert(m.id.clone(), c.clone());
                    if m.op == MutationOp::Insert {
                        if let Some(row) = self.s.docs.get(&(m.coll.clone(), c.clone())) {
                            return MutationResult::Applied {
                                mid: m.mid,
                                id: c,
                                version: row.version,
                            };
                        }
                    }
                    id = c;
                }
                None if m.op == MutationOp::Insert => {
                    self.s.next_id += 1;
                    let c = format!("c{:04}", self.s.next_id);
                    self.s
                        .idmap
                        .insert((self.client.to_string(), m.id.clone()), c.clone());
                    self.id_map.insert(m.id.clone(), c.clone());
                    id = c;
                }
                None => return conflict_missing(&m.id, None),
            }
        }
        let row = self.s.docs.get(&(m.coll.clone(), id.clone())).cloned();
        let live = row.as_ref().filter(|r| !r.deleted);
        let changed_since = |r: &Row| m.base.is_some_and(|b| r.version > b);
        let conflict_with = |r: &Row| MutationResult::Conflict {
            mid: m.mid,
            id: id.clone(),
            doc: r.doc.clone(),
            version: Some(r.version),
        };
        match m.op {
            MutationOp::Insert | MutationOp::Replace => {
                if m.op == MutationOp::Insert {
                    if let Some(r) = live {
                        return conflict_with(r);
                    }
                } else {
                    let Some(r) = live else {
                        return conflict_missing(&id, row.as_ref());
                    };
                    if changed_since(r) {
                        return conflict_with(r);
                    }
                }
                let mut doc = Value::Object(m.doc.clone().unwrap_or_default());
                self.rewrite(&mut doc);
                let Value::Object(mut doc) = doc else {
                    unreachable!()
                };
                doc.insert("id".into(), Value::String(id.clone()));
                if live.and_then(|r| r.doc.as_ref()) == Some(&doc) {
                    let version = live.map_or(0, |r| r.version);
                    return MutationResult::Applied {
                        mid: m.mid,
                        id,
                        version,
                    };
                }
                self.write(m, &id, Some(doc))
            }
            MutationOp::Update => {
                let Some(r) = live else {
                    return conflict_missing(&id, row.as_ref());
                };
                let mut patch = Value::Object(m.patch.clone().unwrap_or_default());
                self.rewrite(&mut patch);
                let Value::Object(patch) = patch else {
                    unreachable!()
                };
                if let Some(pid) = patch.get("id") {
                    if pid.as_str() != Some(id.as_str()) {
                        return rejected(m, "INVALID_PATCH", "a patch cannot change the id");
                    }
                }
                if let Some(base) = m.base {
                    if r.created > base || r.fields.conflicts(&touched_paths(&patch), base) {
                        return conflict_with(r);
                    }
                }
                let old = r.doc.clone().unwrap_or_default();
                let mut merged = Value::Object(old.clone());
                merge_patch(&mut merged, &Value::Object(patch));
                let Value::Object(merged) = merged else {
                    unreachable!()
                };
                if self.too_large(&merged) {
                    return rejected(m, "DOC_TOO_LARGE", "patched document too large");
                }
                if merged == old {
                    return MutationResult::Applied {
                        mid: m.mid,
                        id,
                        version: r.version,
                    };
                }
                self.write(m, &id, Some(merged))
            }
            MutationOp::Delete => match &row {
                Some(r) if r.deleted => MutationResult::Applied {
                    mid: m.mid,
                    id,
                    version: r.version,
                },
                Some(r) if changed_since(r) => conflict_with(r),
                _ => self.write(m, &id, None),
            },
        }
    }
}

impl ModelServer {
    pub fn new() -> Self {
        ModelServer {
            max_doc_bytes: 4096,
            ..Default::default()
        }
    }

    pub fn head(&self) -> u64 {
        self.seq
    }

    pub fn cursor_for(&self, seq: u64) -> String {
        if seq == 0 {
            START_CURSOR.to_string()
        } else {
            format!("m{}.{seq}", self.epoch)
        }
    }

    /// The seq a cursor names, or `None` if it cannot be served (resync).
    pub fn decode_cursor(&self, cursor: Option<&str>) -> Option<u64> {
        let c = cursor.unwrap_or(START_CURSOR);
        if c == START_CURSOR {
            return Some(0);
        }
        let (epoch, seq) = c.strip_prefix('m')?.split_once('.')?;
        let seq: u64 = seq.parse().ok()?;
        (epoch == self.epoch.to_string() && seq <= self.seq).then_some(seq)
    }

    /// Forgets the history behind every cursor issued so far (as a server
    /// that compacted its change log would): they all answer resync.
    pub fn compact(&mut self) {
        self.epoch += 1;
    }

    pub fn last_mid(&self, client: &str) -> u64 {
        self.clients.get(client).map_or(0, |c| c.last_mid)
    }

    /// The stored result of a processed mutation.
    pub fn result(&self, client: &str, mid: u64) -> Option<&MutationResult> {
        self.clients.get(client)?.results.get(&mid)
    }

    /// Live documents by (coll, id).
    pub fn live_docs(&self) -> BTreeMap<(String, String), JsonObject> {
        self.docs
            .iter()
            .filter_map(|(k, r)| r.doc.clone().map(|d| (k.clone(), d)))
            .collect()
    }

    /// `POST /v1/push`: the answer and the changes it committed.
    pub fn push(&mut self, client: &str, mutations: &[Mutation]) -> (PushResponse, Vec<Change>) {
        let mut last = self.last_mid(client);
        let mut ctx = Ctx {
            s: self,
            client,
            id_map: BTreeMap::new(),
            changes: Vec::new(),
        };
        let mut results = Vec::new();
        for m in mutations {
            if m.mid <= last {
                let stored = ctx
                    .s
                    .clients
                    .get(client)
                    .and_then(|c| c.results.get(&m.mid))
                    .cloned();
                results.push(
                    stored.unwrap_or_else(|| rejected(m, "STALE_MUTATION_ID", "mid never seen")),
                );
                if is_temp_id(&m.id) {
                    if let Some(c) = ctx.lookup(&m.id) {
                        ctx.id_map.insert(m.id.clone(), c);
                    }
                }
                continue;
            }
            let result = ctx.apply(m);
            *ctx.s
                .processed
                .entry((client.to_string(), m.mid))
                .or_default() += 1;
            let rec = ctx.s.clients.entry(client.to_string()).or_default();
            rec.results.insert(m.mid, result.clone());
            rec.last_mid = m.mid;
            last = m.mid;
            results.push(result);
        }
        let Ctx {
            id_map, changes, ..
        } = ctx;
        (
            PushResponse {
                results,
                id_map,
                last_mutation_id: last,
            },
            changes,
        )
    }

    /// `GET /v1/pull`.
    pub fn pull(&self, client: &str, cursor: Option<&str>, limit: usize) -> PullResponse {
        let last = self.last_mid(client);
        let Some(from) = self.decode_cursor(cursor) else {
            return PullResponse {
                resync: true,
                changes: vec![],
                cursor: START_CURSOR.into(),
                more: true,
                last_mutation_id: last,
            };
        };
        let mut changes: Vec<Change> = self.changes_after(from);
        let take = limit.max(1);
        let more = changes.len() > take;
        changes.truncate(take);
        let to = if more {
            changes.last().map_or(from, |c| c.seq)
        } else {
            self.seq.max(from)
        };
        PullResponse {
            resync: false,
            changes,
            cursor: self.cursor_for(to),
            more,
            last_mutation_id: last,
        }
    }

    fn changes_after(&self, from: u64) -> Vec<Change> {
        let mut changes: Vec<Change> = self
            .docs
            .iter()
            .filter(|(_, r)| r.version > from)
            .map(|((coll, id), r)| Change {
                seq: r.version,
                coll: coll.clone(),
                id: id.clone(),
                op: if r.deleted {
                    ChangeOp::Delete
                } else {
                    ChangeOp::Put
                },
                doc: r.doc.clone(),
                version: r.version,
            })
            .collect();
        changes.sort_by_key(|c| c.seq);
        changes
    }

    /// The frames a WebSocket hello with `cursor` gets: resync (if the
    /// cursor cannot be served), catch-up pages, then synced.
    pub fn hello(&self, client: &str, cursor: Option<&str>, page: usize) -> Vec<ServerMessage> {
        let mut out = Vec::new();
        let from = match self.decode_cursor(cursor) {
            Some(f) => f,
            None => {
                out.push(ServerMessage::Resync {
                    cursor: START_CURSOR.into(),
                });
                0
            }
        };
        let all = self.changes_after(from);
        for chunk in all.chunks(page.max(1)) {
            out.push(ServerMessage::Changes {
                changes: chunk.to_vec(),
                cursor: self.cursor_for(chunk.last().unwrap().seq),
            });
        }
        out.push(ServerMessage::Synced {
            cursor: self.cursor_for(self.seq.max(from)),
            last_mutation_id: self.last_mid(client),
        });
        out
    }

    /// The live frame of one committed push (none if it changed nothing).
    pub fn live_frame(&self, changes: &[Change]) -> Option<ServerMessage> {
        let last = changes.last()?;
        Some(ServerMessage::Changes {
            changes: changes.to_vec(),
            cursor: self.cursor_for(last.seq),
        })
    }
}

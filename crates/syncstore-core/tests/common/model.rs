//! An in-memory model of the sync server (docs/protocol.md sections 3-5 and
//! 7), for native tests of the client engine. The per-mutation rules are the
//! reference server's own (`syncstore_core::sync::apply::PushApply`, which
//! `server/src/store/sqlite.rs` runs too); this file only keeps the
//! documents, results and id maps in maps instead of SQLite, and serves
//! pull and WebSocket catch-up the way the reference server does.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;

use syncstore_core::protocol::{
    Change, ChangeOp, DocText, JsonObject, Mutation, MutationResult, PullResponse, PushResponse,
    ServerMessage, START_CURSOR,
};
use syncstore_core::sync::apply::{rejected, DocRow, DocStore, PushApply};

#[derive(Debug, Default)]
struct ClientRec {
    last_mid: u64,
    results: BTreeMap<u64, MutationResult>,
}

#[derive(Debug, Default)]
pub struct ModelServer {
    seq: u64,
    docs: BTreeMap<(String, String), DocRow>,
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

/// The model's storage as the shared rules see it, for one client.
struct MapDocs<'a> {
    s: &'a mut ModelServer,
    client: &'a str,
}

impl DocStore for MapDocs<'_> {
    type Error = Infallible;

    fn load(&mut self, coll: &str, id: &str) -> Result<Option<DocRow>, Infallible> {
        Ok(self
            .s
            .docs
            .get(&(coll.to_string(), id.to_string()))
            .cloned())
    }

    fn lookup_tmp(&mut self, tmp: &str) -> Result<Option<String>, Infallible> {
        Ok(self
            .s
            .idmap
            .get(&(self.client.to_string(), tmp.to_string()))
            .cloned())
    }

    fn map_tmp(&mut self, tmp: &str) -> Result<String, Infallible> {
        self.s.next_id += 1;
        let c = format!("c{:04}", self.s.next_id);
        self.s
            .idmap
            .insert((self.client.to_string(), tmp.to_string()), c.clone());
        Ok(c)
    }

    fn store(&mut self, coll: &str, id: &str, row: &DocRow) -> Result<(), Infallible> {
        self.s
            .docs
            .insert((coll.to_string(), id.to_string()), row.clone());
        Ok(())
    }
}

fn ok<T>(r: Result<T, Infallible>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => match e {},
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
        let mut ctx = PushApply::new(self.seq, self.max_doc_bytes);
        let mut results = Vec::new();
        for m in mutations {
            let mut docs = MapDocs { s: self, client };
            if m.mid <= last {
                let stored = docs
                    .s
                    .clients
                    .get(client)
                    .and_then(|c| c.results.get(&m.mid))
                    .cloned();
                results.push(
                    stored.unwrap_or_else(|| rejected(m, "STALE_MUTATION_ID", "mid never seen")),
                );
                ok(ctx.note_replay(&mut docs, m));
                continue;
            }
            let result = ok(ctx.apply(&mut docs, m));
            *self
                .processed
                .entry((client.to_string(), m.mid))
                .or_default() += 1;
            let rec = self.clients.entry(client.to_string()).or_default();
            rec.results.insert(m.mid, result.clone());
            rec.last_mid = m.mid;
            last = m.mid;
            results.push(result);
        }
        self.seq = ctx.seq;
        (
            PushResponse {
                results,
                id_map: ctx.id_map,
                last_mutation_id: last,
            },
            ctx.changes,
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
                total: None,
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
            total: None,
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
                doc: r.doc.clone().map(DocText::from),
                version: r.version,
                ts: r.ts,
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
            limits: None,
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

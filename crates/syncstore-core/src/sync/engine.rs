//! The client sync state machine.
//!
//! [`ClientSync`] holds what a client knows: the last server state of every
//! document it has seen, the outbox of mutations not yet settled, the
//! temporary-id map, the pull cursor and the last mutation id the server
//! reported. It does no I/O and reads no clock: the binding feeds it inputs
//! and carries out the [`Effects`] each input returns, in one transaction.
//!
//! The local view of a document is its server state with the outbox entries
//! naming it replayed on top, in mid order (rebase). Every input computes the
//! views it may have changed before and after, and reports each changed view
//! once, settled: a document never shows an intermediate state of an input.
//!
//! The server state it holds is bounded by what is pending: between inputs,
//! only documents with outbox entries keep theirs ([`ClientSync::evict`]).
//! Before an input, the binding loads the server state of the documents the
//! input names ([`ClientSync::needs`], [`ClientSync::load`]) from its
//! storage, inside the transaction that will carry out the effects: read,
//! decide, write.

use crate::sorted::{SortedMap, SortedSet};
use std::collections::VecDeque;

use serde::de::{self, Deserializer};
use serde::ser::{SerializeStruct, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::json::merge_patch;
use crate::protocol::{
    is_temp_id, may_name_temp_ids, required, Change, ChangeOp, ChangeStamp, DocText, JsonObject,
    Mutation, MutationError, MutationOp, MutationResult, PullResponse, PushResponse, ServerMessage,
    START_CURSOR,
};

use super::doc::Doc;
use super::outbox::Outbox;

/// `(collection, id)`.
type Key = (String, String);

/// Documents by collection, then id.
type DocMap = SortedMap<String, SortedMap<String, ServerDoc>>;

/// The server state of one document as last seen by this client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerDoc {
    /// The document; `None` = tombstone.
    pub doc: Option<Doc>,
    /// The server version (seq of its last change).
    pub version: u64,
    /// The resync generation that last saw it (see [`Effects::sweep`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub gen: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One server document, for persisting the server state: serialized flat,
/// `{coll, id, doc, version, gen?}` (written by hand, not with serde's
/// `flatten`, which buffers the whole record to read it: issue 19).
#[derive(Debug, Clone, PartialEq)]
pub struct ServerRecord {
    /// Collection.
    pub coll: String,
    /// Canonical id.
    pub id: String,
    /// Its state.
    pub state: ServerDoc,
}

impl Serialize for ServerRecord {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let gen = self.state.gen != 0;
        let mut st = s.serialize_struct("ServerRecord", 4 + usize::from(gen))?;
        st.serialize_field("coll", &self.coll)?;
        st.serialize_field("id", &self.id)?;
        st.serialize_field("doc", &self.state.doc)?;
        st.serialize_field("version", &self.state.version)?;
        if gen {
            st.serialize_field("gen", &self.state.gen)?;
        } else {
            st.skip_field("gen")?;
        }
        st.end()
    }
}

/// [`ServerRecord`] as read.
#[derive(Deserialize)]
struct ServerRecordWire {
    coll: String,
    id: String,
    doc: Option<Doc>,
    version: u64,
    #[serde(default)]
    gen: u64,
}

impl<'de> Deserialize<'de> for ServerRecord {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = ServerRecordWire::deserialize(d)?;
        Ok(ServerRecord {
            coll: w.coll,
            id: w.id,
            state: ServerDoc {
                doc: w.doc,
                version: w.version,
                gen: w.gen,
            },
        })
    }
}

/// Where an outbox entry stands: `{"state": "applied", "version": 9}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "camelCase")]
pub enum EntryState {
    /// No answer yet: replayed on the view, sent by [`ClientSync::next_push`].
    Pending,
    /// A complete pull reported `lastMutationId >= mid` but its result was
    /// lost: its effect (if any) is in the server state, so it is no longer
    /// replayed (except an insert of a still unmapped temporary id, which is
    /// the only way to show that document). It is sent again to learn its
    /// result and id mapping; the server answers replays from its records.
    Acked,
    /// The server applied it at `version`: replayed until the server state of
    /// its document reaches `version`, then dropped.
    Applied {
        /// The document's server version after the mutation.
        version: u64,
    },
    /// A write to a collection that syncs on demand, not yet asked to be
    /// pushed: replayed, never sent. Its mid is only a local key until
    /// [`ClientSync::unpark`] gives it a fresh one (the server requires mids
    /// to grow in the order they are pushed).
    Parked,
}

impl EntryState {
    const NAMES: &'static [&'static str] = &["pending", "acked", "applied", "parked"];

    /// The state named `state` (with `version` for `applied`).
    fn read<E: de::Error>(state: Option<String>, version: Option<u64>) -> Result<Self, E> {
        Ok(match required(state, "state")?.as_str() {
            "pending" => EntryState::Pending,
            "acked" => EntryState::Acked,
            "applied" => EntryState::Applied {
                version: required(version, "version")?,
            },
            "parked" => EntryState::Parked,
            other => return Err(E::unknown_variant(other, Self::NAMES)),
        })
    }

    fn name(&self) -> &'static str {
        match self {
            EntryState::Pending => "pending",
            EntryState::Acked => "acked",
            EntryState::Applied { .. } => "applied",
            EntryState::Parked => "parked",
        }
    }
}

/// [`EntryState`] as read.
#[derive(Deserialize)]
struct EntryStateWire {
    state: Option<String>,
    version: Option<u64>,
}

impl<'de> Deserialize<'de> for EntryState {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = EntryStateWire::deserialize(d)?;
        EntryState::read(w.state, w.version)
    }
}

/// An outbox entry: the mutation as it will be (re)sent, and its state.
/// Serialized flat (`{mid, coll, op, id, doc?, patch?, base, ts?, state,
/// version?, baseDoc?}`): the form the browser binding keeps in IndexedDB's
/// `_outbox`. Written and read by hand, not with serde's `flatten` (which
/// buffers the whole entry to read it: issue 19).
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The mutation (ids and references already rewritten to canonical ids
    /// where known).
    pub mutation: Mutation,
    /// Where it stands.
    pub state: EntryState,
    /// The server's document at `base` when the edit was queued: the base
    /// of a three-way merge if it conflicts.
    pub base_doc: Option<Doc>,
}

impl Serialize for Entry {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let m = &self.mutation;
        let version = match self.state {
            EntryState::Applied { version } => Some(version),
            _ => None,
        };
        let len = 6
            + usize::from(m.doc.is_some())
            + usize::from(m.patch.is_some())
            + usize::from(m.ts.is_some())
            + usize::from(version.is_some())
            + usize::from(self.base_doc.is_some());
        let mut st = s.serialize_struct("Entry", len)?;
        st.serialize_field("mid", &m.mid)?;
        st.serialize_field("coll", &m.coll)?;
        st.serialize_field("op", &m.op)?;
        st.serialize_field("id", &m.id)?;
        if let Some(doc) = &m.doc {
            st.serialize_field("doc", doc)?;
        }
        if let Some(patch) = &m.patch {
            st.serialize_field("patch", patch)?;
        }
        st.serialize_field("base", &m.base)?;
        if let Some(ts) = &m.ts {
            st.serialize_field("ts", ts)?;
        }
        st.serialize_field("state", self.state.name())?;
        if let Some(version) = &version {
            st.serialize_field("version", version)?;
        }
        if let Some(base_doc) = &self.base_doc {
            st.serialize_field("baseDoc", base_doc)?;
        }
        st.end()
    }
}

/// [`Entry`] as read: the mutation's fields, the state's, and `baseDoc`.
#[derive(Deserialize)]
struct EntryWire {
    mid: u64,
    coll: String,
    op: MutationOp,
    id: String,
    doc: Option<DocText>,
    patch: Option<DocText>,
    base: Option<u64>,
    ts: Option<u64>,
    state: Option<String>,
    version: Option<u64>,
    #[serde(rename = "baseDoc")]
    base_doc: Option<Doc>,
}

impl<'de> Deserialize<'de> for Entry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = EntryWire::deserialize(d)?;
        Ok(Entry {
            state: EntryState::read(w.state, w.version)?,
            mutation: Mutation {
                mid: w.mid,
                coll: w.coll,
                op: w.op,
                id: w.id,
                doc: w.doc,
                patch: w.patch,
                base: w.base,
                ts: w.ts,
            },
            base_doc: w.base_doc,
        })
    }
}

impl Entry {
    /// The entry an outbox record (or a handed-over write) holds as a
    /// parsed JSON value: what its `Deserialize` reads, read by hand. The
    /// browser binding gets its entries as values (glue.js records, the
    /// write path's entries), and serde's reading of a `Value` into a type
    /// is a second deserializer per type in the module (3.1 KB gzipped for
    /// this and the binding's `Ask`: issue 19). Accepts and refuses what
    /// `serde_json::from_value::<Entry>` does (test
    /// `entries_read_by_hand_as_serde_reads_them`); the error is the name
    /// of the first missing or invalid field (`entry` if it is not an
    /// object).
    pub fn from_json(v: Value) -> Result<Entry, &'static str> {
        let Value::Object(mut o) = v else {
            return Err("entry");
        };
        let u64_field = |o: &serde_json::Map<String, Value>, k: &'static str| match o.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or(k),
        };
        let mut string_field = |k: &'static str| match o.remove(k) {
            Some(Value::String(s)) => Ok(s),
            _ => Err(k),
        };
        let coll = string_field("coll")?;
        let id = string_field("id")?;
        let op = match o.get("op").and_then(Value::as_str) {
            Some("insert") => MutationOp::Insert,
            Some("update") => MutationOp::Update,
            Some("replace") => MutationOp::Replace,
            Some("delete") => MutationOp::Delete,
            _ => return Err("op"),
        };
        let mid = u64_field(&o, "mid")?.ok_or("mid")?;
        let base = u64_field(&o, "base")?;
        let ts = u64_field(&o, "ts")?;
        let version = u64_field(&o, "version")?;
        let state = match o.get("state").and_then(Value::as_str) {
            Some("pending") => EntryState::Pending,
            Some("acked") => EntryState::Acked,
            Some("applied") => EntryState::Applied {
                version: version.ok_or("version")?,
            },
            Some("parked") => EntryState::Parked,
            _ => return Err("state"),
        };
        let mut text = |k: &'static str| match o.remove(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(d)) => Ok(Some(DocText::new(&d))),
            Some(_) => Err(k),
        };
        let doc = text("doc")?;
        let patch = text("patch")?;
        let base_doc = text("baseDoc")?.map(Doc::Text);
        Ok(Entry {
            mutation: Mutation {
                mid,
                coll,
                op,
                id,
                doc,
                patch,
                base,
                ts,
            },
            state,
            base_doc,
        })
    }
}

/// A document record the binding must move from a temporary to its
/// canonical id (if the temporary record exists, it replaces any record at
/// the canonical id). Applied before the view changes of the same input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rekey {
    /// Collection.
    pub coll: String,
    /// The temporary id.
    pub tmp: String,
    /// The canonical id.
    pub id: String,
}

/// The new local view of a document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ViewChange {
    /// Collection.
    pub coll: String,
    /// Id (canonical where known).
    pub id: String,
    /// The view; `None` = the document is gone locally.
    pub doc: Option<Doc>,
    /// The document had a local view before (an update, not an insert).
    #[serde(default)]
    pub existed: bool,
}

/// Something the app is told about.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Event {
    /// The server assigned `id` to the temporary id `tmp`.
    Idmap {
        /// Temporary id.
        tmp: String,
        /// Canonical id.
        id: String,
    },
    /// The server refused a mutation for good; its optimistic effect is gone.
    Rejected {
        /// Mutation id.
        mid: u64,
        /// Collection.
        coll: String,
        /// Document id (canonical where known).
        id: String,
        /// Stable reason code.
        code: String,
        /// Human readable reason.
        message: String,
        /// The refused operation.
        op: MutationOp,
        /// The document as the write left it (the local view just before
        /// the rollback); `None` for a delete.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        doc: Option<JsonObject>,
    },
    /// The server did not apply a mutation because its document changed.
    Conflict {
        /// Mutation id.
        mid: u64,
        /// Collection.
        coll: String,
        /// Document id (canonical where known).
        id: String,
        /// The local view just before the conflict was resolved.
        local: Option<JsonObject>,
        /// The server's document (`None` = deleted or missing).
        remote: Option<JsonObject>,
        /// What was done: `"remote"` (the server's document stands),
        /// `"write"` (a resolving write was queued) or `"both"` (the server's
        /// document stands and the local one was added as a new document).
        resolution: String,
    },
}

/// [`Event`] as read: every variant's fields, optional.
#[derive(Deserialize)]
struct EventWire {
    #[serde(rename = "type")]
    kind: Option<String>,
    tmp: Option<String>,
    id: Option<String>,
    mid: Option<u64>,
    coll: Option<String>,
    code: Option<String>,
    message: Option<String>,
    op: Option<MutationOp>,
    doc: Option<JsonObject>,
    local: Option<JsonObject>,
    remote: Option<JsonObject>,
    resolution: Option<String>,
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        const VARIANTS: &[&str] = &["idmap", "rejected", "conflict"];
        let w = EventWire::deserialize(d)?;
        Ok(match required(w.kind, "type")?.as_str() {
            "idmap" => Event::Idmap {
                tmp: required(w.tmp, "tmp")?,
                id: required(w.id, "id")?,
            },
            "rejected" => Event::Rejected {
                mid: required(w.mid, "mid")?,
                coll: required(w.coll, "coll")?,
                id: required(w.id, "id")?,
                code: required(w.code, "code")?,
                message: required(w.message, "message")?,
                op: required(w.op, "op")?,
                doc: w.doc,
            },
            "conflict" => Event::Conflict {
                mid: required(w.mid, "mid")?,
                coll: required(w.coll, "coll")?,
                id: required(w.id, "id")?,
                local: w.local,
                remote: w.remote,
                resolution: required(w.resolution, "resolution")?,
            },
            other => return Err(de::Error::unknown_variant(other, VARIANTS)),
        })
    }
}

/// What the binding must do after an input, in one transaction: move
/// `rekeys`, write `views`, update the outbox and the server state, store
/// the cursor (and [`ClientSync::meta`]), then emit `events`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Effects {
    /// Records to move from a temporary to a canonical id (first).
    pub rekeys: Vec<Rekey>,
    /// Documents whose local view changed, each once, settled.
    pub views: Vec<ViewChange>,
    /// Outbox entries added or rewritten (keyed by mid).
    pub outbox_put: Vec<Entry>,
    /// Outbox entries to delete (by mid).
    pub outbox_drop: Vec<u64>,
    /// A resync completed: delete every stored server state (records with a
    /// version, `_server` copies and tombstones) whose generation is not
    /// this one, except those of documents with outbox entries (their
    /// server state is in the engine, and `views` carries their new view).
    /// Before `server_put`.
    pub sweep: Option<u64>,
    /// Server documents to store (with their generation).
    pub server_put: Vec<ServerRecord>,
    /// The new cursor, if it changed.
    pub cursor: Option<String>,
    /// Events for the app, in order.
    pub events: Vec<Event>,
}

impl Effects {
    /// True if the input changed nothing.
    pub fn is_empty(&self) -> bool {
        *self == Effects::default()
    }
}

/// A conflict as the policy sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ConflictInfo<'a> {
    /// The mutation the server did not apply (ids rewritten).
    pub mutation: &'a Mutation,
    /// The local view of the document just before.
    pub local: Option<&'a JsonObject>,
    /// The server's document (`None` = deleted or missing).
    pub remote: Option<&'a JsonObject>,
    /// The server's version (`None` = the document never existed).
    pub version: Option<u64>,
    /// The server's document when the local edit was made (three-way merge
    /// base; `None` for a blind write or an insert).
    pub base: Option<&'a JsonObject>,
    /// The clock of the write that produced the server's document.
    pub remote_ts: Option<u64>,
}

/// What to do about a conflict. The conflicting mutation always leaves the
/// outbox (its result is final); a policy may queue a resolution.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolution {
    /// Keep the server's document; the view rolls back to it.
    ServerWins,
    /// Push a new mutation (a fresh mid, `base` = the server's version): the
    /// op with `doc` (insert/replace) or `patch` (update) or neither (delete).
    Write {
        /// The operation.
        op: MutationOp,
        /// Document for insert/replace.
        doc: Option<JsonObject>,
        /// Patch for update.
        patch: Option<JsonObject>,
    },
    /// Keep the server's document and insert the local one as a new
    /// document under `id` (a fresh temporary id): "keep both".
    Fork {
        /// The new document's id.
        id: String,
        /// Its content.
        doc: JsonObject,
    },
}

impl Resolution {
    /// A [`Resolution::Write`].
    pub fn write(op: MutationOp, doc: Option<JsonObject>, patch: Option<JsonObject>) -> Self {
        Resolution::Write { op, doc, patch }
    }
}

/// The decision point for conflicts (policies: `sync::policy`).
pub trait ConflictPolicy {
    /// Decides what happens after `conflict`.
    fn resolve(&self, conflict: &ConflictInfo<'_>) -> Resolution;
}

/// The default policy: the server's state wins.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerWins;

impl ConflictPolicy for ServerWins {
    fn resolve(&self, _: &ConflictInfo<'_>) -> Resolution {
        Resolution::ServerWins
    }
}

/// A local mutation the engine cannot queue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    /// Mids must grow strictly over the client's life.
    #[error("mutation id {mid} is not above the last one queued ({last})")]
    StaleMid {
        /// The given mid.
        mid: u64,
        /// The highest mid queued so far.
        last: u64,
    },
    /// The mutation is malformed.
    #[error(transparent)]
    Invalid(#[from] MutationError),
}

/// The client's sync state. Serializable as a whole; the binding may instead
/// persist it piecewise from [`Effects`] plus [`ClientSync::meta`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientSync {
    /// The server state of every document with an outbox entry, and of the
    /// documents loaded for the current input.
    server: DocMap,
    outbox: Outbox,
    id_map: SortedMap<String, String>,
    cursor: Option<String>,
    last_mutation_id: u64,
    max_mid: u64,
    /// True while a resync runs: every change delivered is stamped with
    /// `gen`; when it completes, server state of an older generation is
    /// gone from the server ([`Effects::sweep`]).
    resync: bool,
    /// The resync generation (bumped when a resync starts).
    #[serde(default)]
    gen: u64,
    /// True if the open WebSocket's stream started from zero during the
    /// current resync (only such a stream may move the cursor or complete it).
    #[serde(default)]
    ws_resync_stream: bool,
    /// The hybrid logical clock: the last `ts` stamped or seen.
    #[serde(default)]
    clock: u64,
    /// Documents loaded for the current input (cleared by `evict`).
    #[serde(skip)]
    loaded: SortedSet<Key>,
    /// Set by the first `evict`: the caller loads what inputs name, and
    /// debug builds check that it did.
    #[serde(skip)]
    bounded: bool,
    /// The versions (change seqs) that this client's writes made and their
    /// push answers settled, while their changes have not come back: such
    /// a change is no news ([`ClientSync::is_echo`]). A seq names one
    /// change of the stream, so the version alone identifies it; those at
    /// or below a delivered change are dropped (the stream is in seq
    /// order), so this holds what is in flight. Bounded.
    #[serde(skip)]
    echoes: SortedSet<u64>,
    /// The highest version a pull page or a frame delivered since this
    /// engine started (or its resync did): the stream is in seq order, so a
    /// change at or below it was taken in already (a socket's catch-up
    /// from a cursor older than what a pull brought meanwhile). Not kept
    /// in [`Meta`]: a restored engine starts from 0 and reads such
    /// changes' stored versions instead.
    #[serde(default, skip_serializing_if = "is_zero")]
    delivered_top: u64,
}

/// Own settled versions remembered for recognising their echo (8 bytes
/// each; at the bound the oldest eighth goes). A version forgotten costs
/// its change a read of the stored version, not a wrong result.
const MAX_ECHOES: usize = 65_536;

/// The largest stamp [`write_stamp`] gives (ms << 16 below 2^58, the year
/// 2109): multiples of 32 up to it are exact as JS numbers.
pub const MAX_STAMP: u64 = (1 << 58) - 32;

/// The clock stamp a write puts on its outbox entries (the hybrid clock's
/// form, ms << 16): later than `last` (the same tab's previous one), in
/// steps of 32, because the entry crosses JS as a number and must read
/// back exactly, or the sync step would stamp and store it again
/// ([`ClientSync::stamp_local`]).
pub fn write_stamp(last: u64, wall_ms: u64) -> u64 {
    let wall = wall_ms.min(MAX_STAMP >> 16) << 16;
    ((last + 32) & !31).max(wall).min(MAX_STAMP)
}

/// The small per-client record besides documents and outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Meta {
    /// Pull cursor (`None` = start).
    pub cursor: Option<String>,
    /// Last mutation id reported by a complete pull or push.
    pub last_mutation_id: u64,
    /// Highest mid ever queued.
    pub max_mid: u64,
    /// Temporary id -> canonical id, kept forever (aliases).
    pub id_map: SortedMap<String, String>,
    /// True while a resync is incomplete (restart it from the start after a reload).
    pub resyncing: bool,
    /// The hybrid logical clock.
    #[serde(default)]
    pub clock: u64,
    /// The resync generation.
    #[serde(default)]
    pub gen: u64,
}

fn replay(cur: Option<Doc>, m: &Mutation) -> Option<Doc> {
    let with_id = |mut d: JsonObject| {
        d.insert("id".into(), Value::String(m.id.clone()));
        Doc::Fields(d)
    };
    // A document that already starts with its id (as the write path
    // stores it) is the view as it is: kept as text.
    let whole = |doc: Option<&DocText>| match doc {
        Some(t) if t.leading_id().is_some_and(|(id, _)| id == m.id) => Doc::Text(t.clone()),
        Some(t) => with_id(t.parse()),
        None => with_id(JsonObject::new()),
    };
    match m.op {
        MutationOp::Insert => Some(whole(m.doc.as_ref())),
        MutationOp::Replace => cur.map(|_| whole(m.doc.as_ref())),
        MutationOp::Update => cur.map(|d| {
            let mut v = Value::Object(d.into_fields());
            let patch = m.patch.as_ref().map(DocText::parse).unwrap_or_default();
            merge_patch(&mut v, &Value::Object(patch));
            match v {
                Value::Object(o) => with_id(o),
                _ => unreachable!("an object patch keeps an object"),
            }
        }),
        MutationOp::Delete => None,
    }
}

/// Rewrites the temporary ids of `map` in `m`: its id and string values
/// equal to a mapped temporary id (as the server does). True if it changed.
/// A document or patch is parsed only if its text may name a temporary id
/// other than a leading `id` equal to the mutation's (rewritten as text).
fn rewrite_with(m: &mut Mutation, map: &SortedMap<String, String>) -> bool {
    if map.is_empty() {
        return false;
    }
    fn walk(v: &mut Value, map: &SortedMap<String, String>, changed: &mut bool) {
        match v {
            Value::String(s) if is_temp_id(s) => {
                if let Some(c) = map.get(s.as_str()) {
                    *s = c.clone();
                    *changed = true;
                }
            }
            Value::Array(a) => a.iter_mut().for_each(|x| walk(x, map, changed)),
            Value::Object(o) => o.values_mut().for_each(|x| walk(x, map, changed)),
            _ => {}
        }
    }
    let old_id = m.id.clone();
    let mut changed = false;
    if let Some(c) = map.get(&m.id) {
        m.id = c.clone();
        changed = true;
    }
    // The document: `{"id":"<old id>"` and no other possible temporary
    // id is rewritten as text; anything else that may name one is parsed.
    let mut doc_fields: Option<JsonObject> = None;
    if let Some(t) = &m.doc {
        let as_text =
            matches!(t.leading_id(), Some((id, rest)) if id == old_id && !may_name_temp_ids(rest));
        if as_text {
            if changed {
                let id = serde_json::to_string(&m.id).expect("strings serialize");
                let rest = t.leading_id().map_or("}", |(_, rest)| rest);
                let text = format!("{{\"id\":{id}{rest}");
                m.doc = Some(DocText::from_text(text).expect("an object stays an object"));
            }
        } else if changed || t.may_name_temp_ids() {
            let mut d = t.parse();
            let mut touched = false;
            for v in d.values_mut() {
                walk(v, map, &mut touched);
            }
            changed |= touched;
            doc_fields = Some(d);
        }
    }
    if let Some(t) = m.patch.as_ref().filter(|t| t.may_name_temp_ids()) {
        let mut p = t.parse();
        let mut touched = false;
        for v in p.values_mut() {
            walk(v, map, &mut touched);
        }
        if touched {
            m.patch = Some(DocText::new(&p));
            changed = true;
        }
    }
    if let Some(mut d) = doc_fields {
        if changed {
            if d.contains_key("id") {
                d.insert("id".into(), Value::String(m.id.clone()));
            }
            m.doc = Some(DocText::new(&d));
        }
    }
    changed
}

/// True if a string in the mutation's document or patch is a temporary id.
fn names_temp_ids(m: &Mutation) -> bool {
    any_string(m, &is_temp_id)
}

/// True if a string value of `m`'s document or patch is a temporary id
/// and satisfies `f`. Only a text that may name a temporary id is parsed.
fn any_string(m: &Mutation, f: &dyn Fn(&str) -> bool) -> bool {
    fn walk(v: &Value, f: &dyn Fn(&str) -> bool) -> bool {
        match v {
            Value::String(s) => is_temp_id(s) && f(s),
            Value::Array(a) => a.iter().any(|x| walk(x, f)),
            Value::Object(o) => o.values().any(|x| walk(x, f)),
            _ => false,
        }
    }
    [&m.doc, &m.patch]
        .into_iter()
        .flatten()
        .filter(|t| t.may_name_temp_ids())
        .any(|t| t.parse().values().any(|x| walk(x, f)))
}

fn key_of(m: &Mutation) -> Key {
    (m.coll.clone(), m.id.clone())
}

fn get<'a>(map: &'a DocMap, coll: &str, id: &str) -> Option<&'a ServerDoc> {
    map.get(coll)?.get(id)
}

fn put(map: &mut DocMap, coll: &str, id: &str, doc: ServerDoc) {
    map.entry(coll.to_string())
        .or_default()
        .insert(id.to_string(), doc);
}

impl ClientSync {
    /// A client that knows nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The pull cursor (`None` = from the start).
    pub fn cursor(&self) -> Option<&str> {
        self.cursor.as_deref()
    }

    /// The outbox, in mid order.
    pub fn outbox(&self) -> &VecDeque<Entry> {
        self.outbox.entries()
    }

    /// Number of mutations not yet settled (the `pending` of the status).
    pub fn pending(&self) -> usize {
        self.outbox.len()
    }

    /// The mid to give the next local mutation.
    pub fn next_mid(&self) -> u64 {
        self.max_mid + 1
    }

    /// Temporary id -> canonical id, for every mapping learned.
    pub fn id_map(&self) -> &SortedMap<String, String> {
        &self.id_map
    }

    /// The canonical id of `id` if it is a mapped temporary id, else `id`.
    pub fn resolve_id<'a>(&'a self, id: &'a str) -> &'a str {
        self.id_map.get(id).map_or(id, String::as_str)
    }

    /// The server state this client holds of a document (documents with
    /// outbox entries, and those loaded for the current input).
    pub fn server_doc(&self, coll: &str, id: &str) -> Option<&ServerDoc> {
        get(&self.server, coll, self.resolve_id(id))
    }

    /// Every server document this client holds (tombstones included).
    pub fn server_docs(&self) -> impl Iterator<Item = (&str, &str, &ServerDoc)> {
        self.server
            .iter()
            .flat_map(|(c, m)| m.iter().map(move |(i, d)| (c.as_str(), i.as_str(), d)))
    }

    /// Of `keys`, those whose server state the caller must [`Self::load`]
    /// before the input that names them: not held (no outbox entry) and not
    /// loaded yet. Deduplicated, in order.
    pub fn needs(&self, keys: impl IntoIterator<Item = Key>) -> Vec<Key> {
        let mut seen = SortedSet::new();
        keys.into_iter()
            .map(|(c, i)| {
                let i = self.resolve_id(&i).to_owned();
                (c, i)
            })
            .filter(|k| {
                !self.outbox.has(&k.0, &k.1) && !self.loaded.contains(k) && seen.insert(k.clone())
            })
            .collect()
    }

    /// The documents a local mutation names.
    pub fn keys_of_local(&self, m: &Mutation) -> Key {
        (m.coll.clone(), self.resolve_id(&m.id).to_owned())
    }

    /// The documents server changes name.
    pub fn keys_of_changes(changes: &[Change]) -> impl Iterator<Item = Key> + '_ {
        changes.iter().map(|c| (c.coll.clone(), c.id.clone()))
    }

    /// The documents a push answer names besides those with outbox entries:
    /// the canonical ids of newly mapped temporary ids, and conflict ids.
    pub fn keys_of_push(&self, resp: &PushResponse) -> Vec<Key> {
        let mut out = vec![];
        for e in self.outbox.iter() {
            if let Some(c) = resp.id_map.get(&e.mutation.id) {
                out.push((e.mutation.coll.clone(), c.clone()));
            }
        }
        for r in &resp.results {
            if let MutationResult::Conflict { mid, id, .. } = r {
                if let Some(p) = self.outbox.pos(*mid) {
                    out.push((self.outbox[p].mutation.coll.clone(), id.clone()));
                }
            }
        }
        out
    }

    /// The documents a server message names.
    pub fn keys_of_message(&self, msg: &ServerMessage) -> Vec<Key> {
        match msg {
            ServerMessage::Changes { changes, .. } => Self::keys_of_changes(changes).collect(),
            ServerMessage::PushResult { response, .. } => self.keys_of_push(response),
            _ => vec![],
        }
    }

    /// Takes in the stored server state of a document (`None`: none stored)
    /// for the next input. A document with outbox entries keeps the state
    /// the engine holds.
    pub fn load(&mut self, coll: &str, id: &str, state: Option<ServerDoc>) {
        if self.outbox.has(coll, id) {
            return;
        }
        let key = (coll.to_owned(), id.to_owned());
        match state {
            Some(d) => {
                self.server
                    .entry(key.0.clone())
                    .or_default()
                    .insert(key.1.clone(), d);
            }
            None => {
                if let Some(m) = self.server.get_mut(coll) {
                    m.remove(id);
                }
            }
        }
        self.loaded.insert(key);
    }

    /// Drops the server state of every document without outbox entries
    /// (the caller stored it from the effects): what the engine holds
    /// between inputs is bounded by what is pending. From the first call
    /// on, debug builds check that inputs name only loaded documents.
    pub fn evict(&mut self) {
        let outbox = &self.outbox;
        for (c, m) in self.server.iter_mut() {
            m.retain(|i, _| outbox.has(c, i));
        }
        self.server.retain(|_, m| !m.is_empty());
        self.loaded.clear();
        self.bounded = true;
    }

    /// A copy of the engine as [`Self::evict`] would leave it, made without
    /// copying the states `evict` drops: a binding plans the next input on
    /// it while the current input's writes commit, and adopts it once those
    /// committed and its own writes did (src/sync/ahead.rs).
    pub fn clone_evicted(&self) -> Self {
        let outbox = &self.outbox;
        let server: DocMap = self
            .server
            .iter()
            .filter_map(|(c, m)| {
                let kept: SortedMap<String, ServerDoc> = m
                    .iter()
                    .filter(|(i, _)| outbox.has(c, i))
                    .map(|(i, d)| (i.clone(), d.clone()))
                    .collect();
                (!kept.is_empty()).then(|| (c.clone(), kept))
            })
            .collect();
        Self {
            server,
            outbox: self.outbox.clone(),
            id_map: self.id_map.clone(),
            cursor: self.cursor.clone(),
            last_mutation_id: self.last_mutation_id,
            max_mid: self.max_mid,
            resync: self.resync,
            gen: self.gen,
            ws_resync_stream: self.ws_resync_stream,
            clock: self.clock,
            loaded: SortedSet::new(),
            bounded: true,
            echoes: self.echoes.clone(),
            delivered_top: self.delivered_top,
        }
    }

    /// True if every change (if any) is no news: the echo of a write of
    /// this client that its push answer settled already, or a change the
    /// stream delivered before. Such a frame only moves the cursor
    /// ([`Self::skip_echo`]) and needs no document loaded or written.
    pub fn is_echo(&self, changes: &[Change]) -> bool {
        self.is_echo_of(changes.iter().map(|c| c.version))
    }

    /// [`Self::is_echo`] by the changes' versions alone: what a binding
    /// reads of a frame without parsing its documents.
    pub fn is_echo_of(&self, versions: impl IntoIterator<Item = u64>) -> bool {
        !self.resync
            && versions
                .into_iter()
                .all(|v| v <= self.delivered_top || self.echoes.contains(&v))
    }

    /// True if taking in `m` may rewrite it (a temporary id it names that
    /// the id map may resolve): its view then changes, and the binding must
    /// write its record again. Conservative: false means it cannot.
    pub fn may_rewrite(&self, m: &Mutation) -> bool {
        !self.id_map.is_empty() && (is_temp_id(&m.id) || names_temp_ids(m))
    }

    /// True if the document has outbox entries under exactly this id.
    pub fn has_entries(&self, coll: &str, id: &str) -> bool {
        self.outbox.has(coll, id)
    }

    /// True if the document has outbox entries.
    pub fn is_pending(&self, coll: &str, id: &str) -> bool {
        self.outbox.has(coll, self.resolve_id(id))
    }

    /// Takes in a frame of no news: one [`Self::is_echo`] recognised, or
    /// one whose every change the caller found stored at that version or a
    /// later one, for documents without outbox entries, outside a resync.
    /// The clock and the cursor move, nothing else.
    pub fn skip_echo(&mut self, changes: &[Change], cursor: &str) -> Effects {
        let stamps: Vec<ChangeStamp> = changes.iter().map(Change::stamp).collect();
        self.skip_echo_of(&stamps, cursor)
    }

    /// [`Self::skip_echo`] by the changes' versions and clocks alone.
    pub fn skip_echo_of(&mut self, stamps: &[ChangeStamp], cursor: &str) -> Effects {
        let mut fx = Effects::default();
        for s in stamps {
            self.observe(s.ts);
        }
        self.delivered(stamps.iter().map(|s| s.version).max());
        if self.cursor.as_deref() != Some(cursor) {
            self.cursor = Some(cursor.to_string());
            fx.cursor = Some(cursor.to_string());
        }
        fx
    }

    /// Number of documents whose server state the engine holds.
    pub fn held(&self) -> usize {
        self.server.values().map(SortedMap::len).sum()
    }

    /// The cursor for the hello of a WebSocket being opened now (call it for
    /// every new socket: a socket opened during a resync carries it on).
    pub fn ws_hello_cursor(&mut self) -> Option<String> {
        self.ws_resync_stream = self.resync;
        self.cursor.clone()
    }

    /// True while a resync has not completed.
    pub fn resyncing(&self) -> bool {
        self.resync
    }

    /// The resync generation that server state stored now must carry.
    pub fn gen(&self) -> u64 {
        self.gen
    }

    /// The small record to persist besides documents and outbox.
    pub fn meta(&self) -> Meta {
        Meta {
            id_map: self.id_map.clone(),
            ..self.meta_without_ids()
        }
    }

    /// [`Self::meta`] without the id map, for a binding that keeps the
    /// mappings in a store of their own (from the `idmap` events).
    pub fn meta_without_ids(&self) -> Meta {
        Meta {
            cursor: self.cursor.clone(),
            last_mutation_id: self.last_mutation_id,
            max_mid: self.max_mid,
            id_map: SortedMap::new(),
            resyncing: self.resync,
            clock: self.clock,
            gen: self.gen,
        }
    }

    /// Rebuilds the engine from what the binding persisted: `meta`, the
    /// outbox and the server state of (at least) the documents with outbox
    /// entries; other documents' state is dropped. An interrupted resync
    /// restarts from the start, in a new generation.
    pub fn restore(meta: Meta, server: Vec<ServerRecord>, outbox: Vec<Entry>) -> Self {
        let mut map = DocMap::new();
        for r in server {
            map.entry(r.coll).or_default().insert(r.id, r.state);
        }
        let resyncing = meta.resyncing;
        let mut eng = ClientSync {
            server: map,
            outbox: outbox.into(),
            id_map: meta.id_map,
            cursor: if resyncing { None } else { meta.cursor },
            last_mutation_id: meta.last_mutation_id,
            max_mid: meta.max_mid,
            resync: resyncing,
            gen: meta.gen + u64::from(resyncing),
            ws_resync_stream: false,
            clock: meta.clock,
            ..ClientSync::default()
        };
        let outbox = &eng.outbox;
        for (c, m) in eng.server.iter_mut() {
            m.retain(|i, _| outbox.has(c, i));
        }
        eng.server.retain(|_, m| !m.is_empty());
        eng
    }

    /// A clock value for a local write made at `wall_ms` (ms since the
    /// epoch): `(ms << 16) + counter`, above every value stamped or seen,
    /// so a device whose wall clock lags still orders its writes after the
    /// ones it has seen.
    pub fn stamp(&mut self, wall_ms: u64) -> u64 {
        self.clock = (self.clock + 1).max(wall_ms.min(u64::MAX >> 17) << 16);
        self.clock
    }

    /// The stamp of a local edit: the one its write chose (see
    /// [`write_stamp`]) if that is later than every stamp this clock has
    /// given or seen, so that the entry stays as the write stored it;
    /// else a new one.
    pub fn stamp_local(&mut self, chosen: Option<u64>, wall_ms: u64) -> u64 {
        match chosen {
            Some(t) if t > self.clock && t <= MAX_STAMP => {
                self.clock = t;
                t
            }
            _ => self.stamp(wall_ms),
        }
    }

    /// Takes in a clock value seen on a server document.
    fn observe(&mut self, ts: Option<u64>) {
        if let Some(ts) = ts {
            self.clock = self.clock.max(ts.min(i64::MAX as u64));
        }
    }

    /// The base a new edit of `coll/id` should carry: the server version of
    /// the document when no outbox entry names it, else `None` (a follow-up
    /// of an unsettled local edit is based on that edit, whose own `base`
    /// already carries the check; its server version cannot be known yet).
    pub fn base_for(&self, coll: &str, id: &str) -> Option<u64> {
        let id = self.resolve_id(id);
        if self.outbox.has(coll, id) {
            return None;
        }
        self.state(coll, id).map(|d| d.version)
    }

    /// The server state held for a document an input names: it must have
    /// been loaded, or have outbox entries (checked in debug builds once
    /// the caller manages loads).
    fn state(&self, coll: &str, id: &str) -> Option<&ServerDoc> {
        debug_assert!(
            !self.bounded
                || self.loaded.contains(&(coll.to_owned(), id.to_owned()))
                || self.outbox.has(coll, id)
                || is_temp_id(id),
            "{coll}/{id}: an input named a document that was not loaded"
        );
        get(&self.server, coll, id)
    }

    fn replayed(e: &Entry) -> bool {
        match e.state {
            EntryState::Pending | EntryState::Applied { .. } | EntryState::Parked => true,
            EntryState::Acked => e.mutation.op == MutationOp::Insert && is_temp_id(&e.mutation.id),
        }
    }

    /// The local view of a document: server state + replayed outbox entries.
    pub fn view(&self, coll: &str, id: &str) -> Option<Doc> {
        self.view_raw(coll, self.resolve_id(id))
    }

    /// The view at exactly this key (a mapped temporary id has none).
    fn view_raw(&self, coll: &str, id: &str) -> Option<Doc> {
        let mut cur = self.state(coll, id).and_then(|d| d.doc.clone());
        for e in self.outbox.of(coll, id) {
            if Self::replayed(e) {
                cur = replay(cur, &e.mutation);
            }
        }
        cur
    }

    /// Every live local view the engine can compute: the documents whose
    /// server state it holds and those with outbox entries.
    pub fn views(&self) -> SortedMap<Key, JsonObject> {
        let mut out: SortedMap<Key, Option<Doc>> = self
            .server
            .iter()
            .flat_map(|(c, m)| {
                m.iter()
                    .map(move |(i, d)| ((c.clone(), i.clone()), d.doc.clone()))
            })
            .collect();
        for e in self.outbox.iter().filter(|e| Self::replayed(e)) {
            let slot = out.entry(key_of(&e.mutation)).or_default();
            *slot = replay(slot.take(), &e.mutation);
        }
        out.into_iter()
            .filter_map(|(k, d)| Some((k, d?.into_fields())))
            .collect()
    }

    /// The views at exactly these keys, in one pass over the outbox
    /// ([`Self::view_raw`] for each key would scan it once per key).
    fn views_at(&self, keys: &SortedSet<Key>) -> SortedMap<Key, Option<Doc>> {
        keys.iter()
            .map(|k| (k.clone(), self.view_raw(&k.0, &k.1)))
            .collect()
    }

    /// Runs `f`, then reports the views that differ from before among
    /// `keys`, the documents of the entries `f` queued and the canonical
    /// ids of re-keyed documents. `keys` must name every document whose
    /// view the input can change (its caller knows which: the outbox
    /// entries it settles, rewrites or acknowledges, the documents it
    /// names), so that an input costs what it names, not the queue.
    fn with_views(
        &mut self,
        keys: impl IntoIterator<Item = Key>,
        f: impl FnOnce(&mut Self, &mut Effects),
    ) -> Effects {
        let mut keys: SortedSet<Key> = keys.into_iter().collect();
        if self.bounded {
            // Their state is held for the whole input, even if it settles them.
            let outbox = &self.outbox;
            self.loaded
                .extend(keys.iter().filter(|k| outbox.has(&k.0, &k.1)).cloned());
        }
        let last_mid = self.max_mid;
        let mut before = self.views_at(&keys);
        let pending: Vec<Key> = keys
            .iter()
            .filter(|k| self.outbox.has(&k.0, &k.1))
            .cloned()
            .collect();
        let mut fx = Effects::default();
        f(self, &mut fx);
        // The binding moves records first: mirror that in `before`.
        for r in &fx.rekeys {
            let tmp = (r.coll.clone(), r.tmp.clone());
            let canon = (r.coll.clone(), r.id.clone());
            let moved = before.insert(tmp, None).flatten();
            match moved {
                Some(d) => {
                    before.insert(canon, Some(d));
                }
                None => {
                    let old = self.view_before_fallback(&canon, &before);
                    before.insert(canon, old);
                }
            }
        }
        keys.extend(before.keys().cloned());
        // Entries `f` queued (a conflict's resolution) name their documents.
        keys.extend(
            self.outbox
                .iter()
                .rev()
                .take_while(|e| e.mutation.mid > last_mid)
                .map(|e| key_of(&e.mutation)),
        );
        for v in &fx.views {
            keys.remove(&(v.coll.clone(), v.id.clone()));
        }
        let mut after = self.views_at(&keys);
        for k in keys {
            let old = before.get(&k).cloned().flatten();
            let new = after.remove(&k).flatten();
            if old != new {
                fx.views.push(ViewChange {
                    coll: k.0,
                    id: k.1,
                    doc: new,
                    existed: old.is_some(),
                });
            }
        }
        self.restamp_settled(pending, &mut fx);
        fx
    }

    /// Reports the held server state again, unchanged, of each document of
    /// `pending` (those with outbox entries before the input) whose last
    /// entry left in this input with neither a new server state nor a new
    /// view: an edit the server applied as a no-op (at the version held),
    /// one whose version arrived before its answer, a refused or
    /// conflicting edit that changed nothing. The record shows the
    /// server's document again, and the binding's copy must say so (the
    /// step planner puts a settle marker in place of the `_server` copy
    /// the first edit saved, plan.rs `copies`): a copy left behind would
    /// make the write path take the document's next edit for the
    /// follow-up of an unsettled one (no base) while `base_for` gives the
    /// server version.
    fn restamp_settled(&self, pending: Vec<Key>, fx: &mut Effects) {
        let gone: Vec<Key> = pending
            .into_iter()
            .filter(|k| !self.outbox.has(&k.0, &k.1))
            .collect();
        if gone.is_empty() {
            return;
        }
        let told: SortedSet<(&str, &str)> = fx
            .server_put
            .iter()
            .map(|r| (r.coll.as_str(), r.id.as_str()))
            .chain(fx.views.iter().map(|v| (v.coll.as_str(), v.id.as_str())))
            .collect();
        let restamped: Vec<ServerRecord> = gone
            .into_iter()
            .filter(|k| !told.contains(&(k.0.as_str(), k.1.as_str())))
            .filter_map(|(coll, id)| {
                let state = get(&self.server, &coll, &id)?.clone();
                Some(ServerRecord { coll, id, state })
            })
            .collect();
        fx.server_put.extend(restamped);
    }

    fn view_before_fallback(
        &self,
        canon: &Key,
        before: &SortedMap<Key, Option<Doc>>,
    ) -> Option<Doc> {
        // Only reached for a canonical key not snapshotted: it had no outbox
        // entry, so its old view was its server state, which the input did
        // not change unless it also listed the key in `extra`.
        match before.get(canon) {
            Some(v) => v.clone(),
            None => self.state(&canon.0, &canon.1).and_then(|d| d.doc.clone()),
        }
    }

    /// Queues a local mutation (already validated by `write.rs`, with a mid
    /// above every earlier one). Ids and references naming mapped temporary
    /// ids are rewritten to canonical ids first.
    pub fn local(&mut self, m: Mutation) -> Result<Effects, SyncError> {
        self.queue(m, EntryState::Pending, true)
    }

    /// [`Self::local`] (or [`Self::local_parked`] if `parked`) for an entry
    /// whose view is stored already (the write path stored the record with
    /// its entry): no view is reported unless the engine rewrote the entry
    /// (a temporary id it has mapped since), so the replays that would
    /// find the same view are not run.
    pub fn local_stored(&mut self, m: Mutation, parked: bool) -> Result<Effects, SyncError> {
        let state = if parked {
            EntryState::Parked
        } else {
            EntryState::Pending
        };
        self.queue(m, state, false)
    }

    /// [`Self::local`] for a collection that syncs on demand: the entry is
    /// parked (replayed, not sent) until [`Self::unpark`].
    pub fn local_parked(&mut self, m: Mutation) -> Result<Effects, SyncError> {
        self.queue(m, EntryState::Parked, true)
    }

    /// Queues the parked entries of `coll` for pushing, oldest first, each
    /// under a fresh mid (above every mid queued so far). Views do not
    /// change: a document's entries all belong to its collection, so their
    /// order among themselves is kept.
    pub fn unpark(&mut self, coll: &str) -> Effects {
        let mut fx = Effects::default();
        let (parked, rest): (Vec<Entry>, Vec<Entry>) = self
            .outbox
            .take()
            .into_iter()
            .partition(|e| e.state == EntryState::Parked && e.mutation.coll == coll);
        self.outbox = rest.into();
        for mut e in parked {
            fx.outbox_drop.push(e.mutation.mid);
            self.max_mid += 1;
            e.mutation.mid = self.max_mid;
            e.state = EntryState::Pending;
            fx.outbox_put.push(e.clone());
            self.outbox.push(e);
        }
        fx
    }

    fn queue(
        &mut self,
        mut m: Mutation,
        state: EntryState,
        views: bool,
    ) -> Result<Effects, SyncError> {
        m.validate()?;
        if m.mid <= self.max_mid {
            return Err(SyncError::StaleMid {
                mid: m.mid,
                last: self.max_mid,
            });
        }
        let rewritten = self.rewrite_mutation(&mut m);
        let views = views || rewritten;
        let key = key_of(&m);
        let base_doc = match (m.op, m.base) {
            (MutationOp::Update | MutationOp::Replace, Some(b)) => self
                .state(&m.coll, &m.id)
                .filter(|d| d.version == b)
                .and_then(|d| d.doc.clone()),
            _ => None,
        };
        // A new entry can change only its own document's view: diff that
        // one (every write is queued here; diffing every outbox document, as
        // other inputs must, made ingesting n writes cost n^3 replays).
        let before = views.then(|| self.view_raw(&key.0, &key.1));
        self.max_mid = m.mid;
        let e = Entry {
            mutation: m,
            state,
            base_doc,
        };
        let mut fx = Effects::default();
        fx.outbox_put.push(e.clone());
        self.outbox.push(e);
        if let Some(before) = before {
            let after = self.view_raw(&key.0, &key.1);
            if before == after {
                return Ok(fx);
            }
            fx.views.push(ViewChange {
                coll: key.0,
                id: key.1,
                doc: after,
                existed: before.is_some(),
            });
        }
        Ok(fx)
    }

    /// Rewrites mapped temporary ids in `m` (its id and string values).
    fn rewrite_mutation(&self, m: &mut Mutation) -> bool {
        rewrite_with(m, &self.id_map)
    }

    /// The next push: the oldest unsettled entries not known applied, at
    /// most `max`, in mid order. Resending after a lost answer is safe.
    pub fn next_push(&self, max: usize) -> Vec<Mutation> {
        self.next_push_after(max, 0)
    }

    /// [`Self::next_push`] of the entries above mid `after`: the next push
    /// while the one up to `after` is still unanswered.
    pub fn next_push_after(&self, max: usize, after: u64) -> Vec<Mutation> {
        self.pushable_after(after)
            .take(max)
            .map(|e| e.mutation.clone())
            .collect()
    }

    /// Whether [`Self::next_push_after`] has anything (nothing is cloned).
    pub fn has_push_after(&self, after: u64) -> bool {
        self.pushable_after(after).next().is_some()
    }

    fn pushable_after(&self, after: u64) -> impl Iterator<Item = &Entry> + '_ {
        self.outbox
            .after(after)
            .filter(|e| matches!(e.state, EntryState::Pending | EntryState::Acked))
    }

    /// The highest server version an applied outbox entry of the document
    /// waits for: a change up to it is (or precedes) this client's own
    /// write coming back.
    pub fn awaited_version(&self, coll: &str, id: &str) -> Option<u64> {
        self.outbox
            .of(coll, id)
            .filter_map(|e| match e.state {
                EntryState::Applied { version } => Some(version),
                _ => None,
            })
            .max()
    }

    /// The documents of outbox entries that learning `id_map` rewrites: their
    /// id or one of their values is a temporary id it maps for the first time.
    fn keys_rewritten_by(&self, id_map: &SortedMap<String, String>) -> Vec<Key> {
        let new: SortedMap<&str, &str> = id_map
            .iter()
            .filter(|(t, c)| is_temp_id(t) && self.id_map.get(*t) != Some(*c))
            .map(|(t, c)| (t.as_str(), c.as_str()))
            .collect();
        if new.is_empty() {
            return vec![];
        }
        self.outbox
            .iter()
            .filter(|e| {
                new.contains_key(e.mutation.id.as_str())
                    || any_string(&e.mutation, &|s| new.contains_key(s))
            })
            .map(|e| key_of(&e.mutation))
            .collect()
    }

    /// Learns id mappings: re-keys documents, rewrites the outbox.
    fn learn_ids(&mut self, id_map: &SortedMap<String, String>, fx: &mut Effects) {
        let mut new = SortedMap::new();
        for (tmp, c) in id_map {
            if !is_temp_id(tmp) || self.id_map.get(tmp) == Some(c) {
                continue;
            }
            self.id_map.insert(tmp.clone(), c.clone());
            new.insert(tmp.clone(), c.clone());
            fx.events.push(Event::Idmap {
                tmp: tmp.clone(),
                id: c.clone(),
            });
        }
        if new.is_empty() {
            return;
        }
        let colls: SortedSet<(String, String)> = self
            .outbox
            .iter()
            .filter(|e| new.contains_key(&e.mutation.id))
            .map(|e| (e.mutation.coll.clone(), e.mutation.id.clone()))
            .collect();
        for (coll, tmp) in colls {
            fx.rekeys.push(Rekey {
                id: new[&tmp].clone(),
                coll,
                tmp,
            });
        }
        // Earlier mappings were applied to every entry when learned: only
        // the new ones can change an entry.
        for pos in 0..self.outbox.len() {
            if self.outbox.rewrite(pos, |m| rewrite_with(m, &new)) {
                fx.outbox_put.push(self.outbox[pos].clone());
            }
        }
    }

    /// Feeds a push answer (HTTP or a WebSocket `pushResult`).
    pub fn on_push_response(
        &mut self,
        resp: &PushResponse,
        policy: &dyn ConflictPolicy,
    ) -> Effects {
        // The documents it can change: those of the entries it answers (and
        // the ids conflicts name), and those whose entries new id mappings
        // rewrite.
        let mut keys = self.keys_rewritten_by(&resp.id_map);
        for r in &resp.results {
            let Some(pos) = self.outbox.pos(r.mid()) else {
                continue;
            };
            let m = &self.outbox[pos].mutation;
            keys.push(key_of(m));
            if let MutationResult::Conflict { id, .. } = r {
                keys.push((m.coll.clone(), id.clone()));
            }
        }
        self.with_views(keys, |this, fx| {
            this.learn_ids(&resp.id_map, fx);
            this.last_mutation_id = this.last_mutation_id.max(resp.last_mutation_id);
            for r in &resp.results {
                let Some(pos) = this.outbox.pos(r.mid()) else {
                    continue; // settled before (a duplicated answer)
                };
                match r {
                    MutationResult::Applied {
                        version,
                        prev: Some(prev),
                        ..
                    } if this.settle_applied(pos, *version, *prev, fx) => {}
                    MutationResult::Applied { version, .. } => {
                        let state = this.outbox.state_mut(pos);
                        if !matches!(state, EntryState::Applied { .. }) {
                            *state = EntryState::Applied { version: *version };
                            fx.outbox_put.push(this.outbox[pos].clone());
                        }
                    }
                    MutationResult::Rejected { code, message, .. } => {
                        let m = &this.outbox[pos].mutation;
                        let doc = match m.op {
                            MutationOp::Delete => None,
                            _ => this.view(&m.coll, &m.id).map(Doc::into_fields),
                        };
                        let e = this.outbox.remove(pos);
                        fx.outbox_drop.push(e.mutation.mid);
                        fx.events.push(Event::Rejected {
                            mid: e.mutation.mid,
                            coll: e.mutation.coll,
                            id: e.mutation.id,
                            code: code.clone(),
                            message: message.clone(),
                            op: e.mutation.op,
                            doc,
                        });
                    }
                    MutationResult::Conflict {
                        id,
                        doc,
                        version,
                        ts,
                        ..
                    } => this.conflict(pos, id, doc.as_ref(), (*version, *ts), policy, fx),
                }
            }
            this.settle(fx);
        })
    }

    fn conflict(
        &mut self,
        pos: usize,
        id: &str,
        remote: Option<&JsonObject>,
        (version, remote_ts): (Option<u64>, Option<u64>),
        policy: &dyn ConflictPolicy,
        fx: &mut Effects,
    ) {
        self.observe(remote_ts);
        let coll = self.outbox[pos].mutation.coll.clone();
        // What the user saw, before the server's state replaces the base.
        let local = self
            .view_raw(&coll, &self.outbox[pos].mutation.id)
            .map(Doc::into_fields);
        if let Some(v) = version {
            let state = ServerDoc {
                doc: remote.cloned().map(Doc::Fields),
                version: v,
                gen: self.gen,
            };
            if !is_temp_id(id) && self.put_newer(&coll, id, &state) {
                fx.server_put.push(ServerRecord {
                    coll: coll.clone(),
                    id: id.to_string(),
                    state,
                });
            }
        }
        let e = self.outbox.remove(pos);
        fx.outbox_drop.push(e.mutation.mid);
        let base = e.base_doc.as_ref().map(Doc::fields);
        let resolution = policy.resolve(&ConflictInfo {
            mutation: &e.mutation,
            local: local.as_ref(),
            remote,
            version,
            base: base.as_deref(),
            remote_ts,
        });
        let (what, write) = match resolution {
            Resolution::ServerWins => ("remote", None),
            Resolution::Write { op, doc, patch } => {
                ("write", Some((op, id.to_string(), doc, patch, version)))
            }
            Resolution::Fork { id, doc } => (
                "both",
                Some((MutationOp::Insert, id, Some(doc), None, None)),
            ),
        };
        fx.events.push(Event::Conflict {
            mid: e.mutation.mid,
            coll: coll.clone(),
            id: id.to_string(),
            local,
            remote: remote.cloned(),
            resolution: what.into(),
        });
        if let Some((op, id, mut doc, patch, base)) = write {
            if let Some(d) = doc.as_mut() {
                d.insert("id".into(), Value::String(id.clone()));
            }
            self.max_mid += 1;
            let mut m = Mutation {
                mid: self.max_mid,
                coll,
                op,
                id,
                doc: doc.as_ref().map(DocText::new),
                patch: patch.as_ref().map(DocText::new),
                base,
                ts: e.mutation.ts,
            };
            self.rewrite_mutation(&mut m);
            if m.validate().is_ok() {
                let e = Entry {
                    mutation: m,
                    state: EntryState::Pending,
                    base_doc: None,
                };
                fx.outbox_put.push(e.clone());
                self.outbox.push(e);
            }
        }
    }

    /// Stores `doc` if it is newer than the state held; true if stored.
    fn put_newer(&mut self, coll: &str, id: &str, doc: &ServerDoc) -> bool {
        let old = self.state(coll, id).map(|d| d.version);
        if old.is_some_and(|v| v >= doc.version) {
            return false;
        }
        put(&mut self.server, coll, id, doc.clone());
        true
    }

    /// Settles an applied mutation on its push answer when the server says
    /// it applied it over exactly the state this client holds (`prev`): the
    /// new server state is the mutation replayed on that state, which the
    /// view already shows. Not when an earlier entry of the document is
    /// unsettled, nor when the mutation names temporary ids (the server may
    /// have stored such a reference literally). True if settled.
    fn settle_applied(&mut self, pos: usize, version: u64, prev: u64, fx: &mut Effects) -> bool {
        let e = &self.outbox[pos];
        let (coll, id) = key_of(&e.mutation);
        if is_temp_id(&id)
            || names_temp_ids(&e.mutation)
            || self.outbox.mids(&coll, &id).first() != Some(&e.mutation.mid)
        {
            return false;
        }
        let held = self.state(&coll, &id);
        if held.map_or(0, |d| d.version) != prev || held.is_some_and(|d| d.version >= version) {
            return false;
        }
        let doc = replay(held.and_then(|d| d.doc.clone()), &e.mutation);
        let state = ServerDoc {
            doc,
            version,
            gen: self.gen,
        };
        put(&mut self.server, &coll, &id, state.clone());
        fx.server_put.push(ServerRecord { coll, id, state });
        let e = self.outbox.remove(pos);
        fx.outbox_drop.push(e.mutation.mid);
        if self.echoes.len() >= MAX_ECHOES {
            // The oldest eighth at once: the set is a sorted Vec, where
            // dropping its first value moves all the others.
            self.echoes.drop_first(MAX_ECHOES / 8);
        }
        self.echoes.insert(version);
        true
    }

    /// The stream delivered changes up to `top`: own versions at or below
    /// it came back or never will.
    fn delivered(&mut self, top: Option<u64>) {
        if let Some(top) = top {
            self.delivered_top = self.delivered_top.max(top);
            self.echoes = self.echoes.split_off(&top.saturating_add(1));
        }
    }

    /// Drops applied entries whose effect the server state now contains.
    fn settle(&mut self, fx: &mut Effects) {
        let server = &self.server;
        let first = fx.outbox_drop.len();
        self.outbox.retain(|e| {
            let EntryState::Applied { version } = e.state else {
                return true;
            };
            let reached =
                get(server, &e.mutation.coll, &e.mutation.id).is_some_and(|d| d.version >= version);
            if reached {
                fx.outbox_drop.push(e.mutation.mid);
            }
            !reached
        });
        // An entry this input marked applied and settles now (its version
        // was held already) is deleted, not stored again first.
        if fx.outbox_drop.len() > first && !fx.outbox_put.is_empty() {
            let dropped: SortedSet<u64> = fx.outbox_drop[first..].iter().copied().collect();
            fx.outbox_put.retain(|e| !dropped.contains(&e.mutation.mid));
        }
    }

    /// Feeds a pull answer. `lastMutationId` is used only on the last page
    /// (`more == false`): earlier pages may not yet contain its effects.
    pub fn on_pull(&mut self, resp: &PullResponse) -> Effects {
        if resp.resync {
            return self.start_resync();
        }
        let lmid = (!resp.more).then_some(resp.last_mutation_id);
        self.on_changes(&resp.changes, Some(&resp.cursor), lmid, !resp.more)
    }

    /// Feeds a WebSocket frame from the server (`changes`, `synced`,
    /// `resync`, `pushResult`); other frames change nothing.
    pub fn on_server_message(
        &mut self,
        msg: &ServerMessage,
        policy: &dyn ConflictPolicy,
    ) -> Effects {
        match msg {
            ServerMessage::Changes { changes, cursor } => {
                // During a resync only a stream that restarted from zero may
                // move the cursor: a frame of a socket opened before would
                // skip what the rebuilt state has not seen yet.
                let own = !self.resyncing() || self.ws_resync_stream;
                self.on_changes(changes, own.then_some(cursor.as_str()), None, false)
            }
            ServerMessage::Synced {
                cursor,
                last_mutation_id,
                ..
            } => {
                if self.resyncing() && !self.ws_resync_stream {
                    // The catch-up of a socket opened before the resync.
                    return Effects::default();
                }
                self.on_changes(&[], Some(cursor), Some(*last_mutation_id), true)
            }
            ServerMessage::Resync { .. } => {
                let fx = self.start_resync();
                self.ws_resync_stream = true;
                fx
            }
            ServerMessage::PushResult { response, .. } => self.on_push_response(response, policy),
            _ => Effects::default(),
        }
    }

    /// Starts a resync: pending writes stay, the server state is rebuilt
    /// from the start beside the current one and replaces it when complete.
    pub fn start_resync(&mut self) -> Effects {
        self.resync = true;
        self.gen += 1;
        self.echoes.clear();
        self.delivered_top = 0;
        self.ws_resync_stream = false;
        self.cursor = None;
        Effects {
            cursor: Some(START_CURSOR.to_string()),
            ..Effects::default()
        }
    }

    /// Feeds changes (a pull page or a WebSocket frame) and the cursor after
    /// them (`None`: keep the cursor). `last_mutation_id` must come from the
    /// same snapshot, and only once everything up to it was delivered
    /// (`complete`, which also completes a resync).
    pub fn on_changes(
        &mut self,
        changes: &[Change],
        cursor: Option<&str>,
        last_mutation_id: Option<u64>,
        complete: bool,
    ) -> Effects {
        self.delivered(changes.iter().map(|c| c.version).max());
        // The documents it can change: those it names, those of the entries
        // it acknowledges, and when it completes a resync every one held.
        let mut keys: Vec<Key> = Self::keys_of_changes(changes).collect();
        if complete && self.resync {
            keys.extend(self.server_keys());
        }
        if let Some(lmid) = last_mutation_id {
            keys.extend(
                self.outbox
                    .iter()
                    .take_while(|e| e.mutation.mid <= lmid)
                    .filter(|e| e.state == EntryState::Pending)
                    .map(|e| key_of(&e.mutation)),
            );
        }
        self.with_views(keys, |this, fx| {
            let mut put_at: SortedMap<Key, usize> = SortedMap::new();
            for c in changes {
                this.observe(c.ts);
                let state = ServerDoc {
                    doc: match c.op {
                        ChangeOp::Put => c.doc.clone().map(Doc::Text),
                        ChangeOp::Delete => None,
                    },
                    version: c.version,
                    gen: this.gen,
                };
                let key = (c.coll.clone(), c.id.clone());
                let stored = if this.put_newer(&c.coll, &c.id, &state) {
                    Some(state)
                } else if this.resync {
                    // Seen by the resync: stamp what is held with its generation.
                    match this.server.get_mut(&c.coll).and_then(|m| m.get_mut(&c.id)) {
                        Some(d) if d.gen != this.gen => {
                            d.gen = this.gen;
                            Some(d.clone())
                        }
                        _ => None,
                    }
                } else {
                    None
                };
                if let Some(state) = stored {
                    let rec = ServerRecord {
                        coll: key.0.clone(),
                        id: key.1.clone(),
                        state,
                    };
                    // One record per document and input: the last one.
                    match put_at.get(&key) {
                        Some(&i) => fx.server_put[i] = rec,
                        None => {
                            put_at.insert(key, fx.server_put.len());
                            fx.server_put.push(rec);
                        }
                    }
                }
            }
            if complete && this.resync {
                this.resync = false;
                this.finish_resync(fx);
            }
            if let Some(lmid) = last_mutation_id {
                this.last_mutation_id = this.last_mutation_id.max(lmid);
                for pos in 0..this.outbox.len() {
                    if this.outbox[pos].mutation.mid > lmid {
                        break;
                    }
                    let state = this.outbox.state_mut(pos);
                    if *state == EntryState::Pending {
                        *state = EntryState::Acked;
                        fx.outbox_put.push(this.outbox[pos].clone());
                    }
                }
            }
            this.settle(fx);
            if let Some(cursor) = cursor {
                if this.cursor.as_deref() != Some(cursor) {
                    this.cursor = Some(cursor.to_string());
                    fx.cursor = Some(cursor.to_string());
                }
            }
        })
    }

    /// Completes a resync: a held server state the resync did not see (an
    /// older generation) is gone from the server; the binding sweeps the
    /// stored ones ([`Effects::sweep`]).
    fn finish_resync(&mut self, fx: &mut Effects) {
        let gen = self.gen;
        let mut gone = vec![];
        for (c, m) in self.server.iter_mut() {
            m.retain(|i, d| {
                let keep = d.gen == gen;
                if !keep {
                    gone.push((c.clone(), i.clone()));
                }
                keep
            });
        }
        self.server.retain(|_, m| !m.is_empty());
        fx.server_put.retain(|r| r.state.gen == gen);
        fx.sweep = Some(gen);
        // A document with outbox entries keeps its record through the
        // sweep: rewrite it without the server state it no longer has.
        let gone: Vec<Key> = gone
            .into_iter()
            .filter(|k| self.outbox.has(&k.0, &k.1))
            .collect();
        for (coll, id) in gone {
            let doc = self.view_raw(&coll, &id);
            fx.views.push(ViewChange {
                coll,
                id,
                doc,
                existed: true,
            });
        }
    }

    /// Keys of every document whose state is held (for view diffs of a resync).
    fn server_keys(&self) -> Vec<Key> {
        self.server
            .iter()
            .flat_map(|(c, m)| m.keys().map(move |i| (c.clone(), i.clone())))
            .collect()
    }
}

#[cfg(test)]
mod text_tests {
    //! Documents and patches of queued mutations are carried as text: the
    //! temporary-id rewrite and the replay read them only where needed, and
    //! give what the same rules give over the parsed fields.
    use super::*;
    use serde_json::json;

    fn text(s: &str) -> DocText {
        DocText::from_text(s.into()).unwrap()
    }

    fn mutation(op: MutationOp, id: &str, body: &str) -> Mutation {
        let (doc, patch) = match op {
            MutationOp::Update => (None, Some(text(body))),
            _ => (Some(text(body)), None),
        };
        Mutation {
            mid: 1,
            coll: "todos".into(),
            op,
            id: id.into(),
            doc,
            patch,
            base: None,
            ts: None,
        }
    }

    /// The rule over parsed fields (the rewrite before documents were text).
    fn rewrite_fields(
        id: &str,
        body: &JsonObject,
        is_doc: bool,
        map: &SortedMap<String, String>,
    ) -> (String, JsonObject) {
        fn walk(v: &mut Value, map: &SortedMap<String, String>) {
            match v {
                Value::String(s) => {
                    if let Some(c) = map.get(s.as_str()) {
                        *s = c.clone();
                    }
                }
                Value::Array(a) => a.iter_mut().for_each(|x| walk(x, map)),
                Value::Object(o) => o.values_mut().for_each(|x| walk(x, map)),
                _ => {}
            }
        }
        let mapped = map.get(id).cloned();
        let mut b = body.clone();
        b.values_mut().for_each(|v| walk(v, map));
        let changed = mapped.is_some() || &b != body;
        let id = mapped.unwrap_or_else(|| id.to_string());
        if is_doc && changed && b.contains_key("id") {
            b.insert("id".into(), json!(id));
        }
        (id, b)
    }

    #[test]
    fn the_rewrite_of_text_matches_the_rewrite_of_fields() {
        let map: SortedMap<String, String> = [("tmp_1", "c1"), ("tmp_2", "c2")]
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .into();
        let cases = [
            (MutationOp::Insert, "tmp_1", r#"{"id":"tmp_1","t":"x"}"#),
            (MutationOp::Insert, "tmp_1", r#"{"id":"tmp_1"}"#),
            (
                MutationOp::Insert,
                "tmp_1",
                r#"{"id":"tmp_1","ref":"tmp_2"}"#,
            ),
            (MutationOp::Insert, "tmp_1", r#"{"t":"x","id":"tmp_1"}"#),
            (
                MutationOp::Insert,
                "tmp_1",
                r#"{"id":"tmp_1","r":"\u0074mp_2"}"#,
            ),
            (
                MutationOp::Insert,
                "tmp_3",
                r#"{"id":"tmp_3","r":["tmp_2",{"k":"tmp_1"}]}"#,
            ),
            (MutationOp::Insert, "a", r#"{"id":"a", "t": "tmp"}"#),
            (MutationOp::Replace, "tmp_2", r#"{"id":"tmp_2","n":1}"#),
            (MutationOp::Replace, "tmp_2", r#"{"n":1}"#),
            (MutationOp::Update, "tmp_1", r#"{"ref":"tmp_2","n":null}"#),
            (MutationOp::Update, "b", r#"{"n":2}"#),
        ];
        for (op, id, body) in cases {
            let mut m = mutation(op, id, body);
            let changed = rewrite_with(&mut m, &map);
            let is_doc = op != MutationOp::Update;
            let (want_id, want) = rewrite_fields(id, &text(body).parse(), is_doc, &map);
            let got = m.doc.as_ref().or(m.patch.as_ref()).unwrap();
            assert_eq!(m.id, want_id, "{body}");
            assert_eq!(got.parse(), want, "{body}");
            assert_eq!(
                changed,
                want_id != id || want != text(body).parse(),
                "{body}"
            );
            if !changed {
                // Left as it came, not written again.
                assert_eq!(got.as_str(), body);
            }
        }
    }

    #[test]
    fn only_text_that_may_name_a_temporary_id_is_searched() {
        let plain = mutation(MutationOp::Insert, "a", r#"{"id":"a","t":"tmp"}"#);
        assert!(!names_temp_ids(&plain));
        let named = mutation(MutationOp::Update, "a", r#"{"r":"tmp_9"}"#);
        assert!(names_temp_ids(&named));
        let escaped = mutation(MutationOp::Update, "a", r#"{"r":"\u0074mp_9"}"#);
        assert!(names_temp_ids(&escaped));
        let not_a_temp_id = mutation(MutationOp::Update, "a", r#"{"r":"x tmp_9"}"#);
        assert!(!names_temp_ids(&not_a_temp_id));
    }

    #[test]
    fn a_document_that_starts_with_its_id_is_replayed_as_text() {
        let m = mutation(MutationOp::Insert, "a", r#"{"id":"a","t":"x"}"#);
        let Some(Doc::Text(t)) = replay(None, &m) else {
            panic!("kept as text");
        };
        assert_eq!(t.as_str(), r#"{"id":"a","t":"x"}"#);
        // Any other start is read and the id set, as before.
        for body in [
            r#"{"t":"x","id":"a"}"#,
            r#"{"id":"b","t":"x"}"#,
            r#"{"t":"x"}"#,
        ] {
            let m = mutation(MutationOp::Insert, "a", body);
            let view = replay(None, &m).unwrap();
            assert!(matches!(view, Doc::Fields(_)), "{body}");
            assert_eq!(view.fields()["id"], json!("a"), "{body}");
            assert_eq!(view.fields()["t"], json!("x"), "{body}");
        }
        let r = mutation(MutationOp::Replace, "a", r#"{"id":"a","n":2}"#);
        let old = Doc::Fields(json!({"id": "a", "n": 1}).as_object().unwrap().clone());
        assert!(matches!(replay(Some(old), &r), Some(Doc::Text(_))));
        assert_eq!(replay(None, &r), None);
    }
}

#[cfg(test)]
mod entry_json_tests {
    use super::*;
    use serde_json::json;

    /// `Entry::from_json` takes and refuses what serde's reading of the
    /// same value does, and reads the same entry.
    #[test]
    fn entries_read_by_hand_as_serde_reads_them() {
        let cases = [
            json!({"mid": 1, "coll": "t", "op": "insert", "id": "a", "doc": {"id": "a", "n": 1}, "base": null, "ts": 5, "state": "pending"}),
            json!({"mid": 2, "coll": "t", "op": "update", "id": "a", "patch": {"n": 2}, "base": 7, "state": "applied", "version": 9, "baseDoc": {"id": "a", "n": 1}}),
            json!({"mid": 3, "coll": "t", "op": "replace", "id": "a", "doc": {"id": "a"}, "state": "acked"}),
            json!({"mid": 4, "coll": "t", "op": "delete", "id": "a", "base": 3, "state": "parked", "extra": [1, 2]}),
            json!({"mid": 5, "coll": "t", "op": "delete", "id": "a", "doc": null, "patch": null, "ts": null, "state": "pending"}),
            // Refused by both:
            json!({"coll": "t", "op": "delete", "id": "a", "state": "pending"}),
            json!({"mid": -1, "coll": "t", "op": "delete", "id": "a", "state": "pending"}),
            json!({"mid": 1.5, "coll": "t", "op": "delete", "id": "a", "state": "pending"}),
            json!({"mid": "1", "coll": "t", "op": "delete", "id": "a", "state": "pending"}),
            json!({"mid": 1, "coll": 3, "op": "delete", "id": "a", "state": "pending"}),
            json!({"mid": 1, "coll": "t", "op": "upsert", "id": "a", "state": "pending"}),
            json!({"mid": 1, "coll": "t", "op": "delete", "state": "pending"}),
            json!({"mid": 1, "coll": "t", "op": "insert", "id": "a", "doc": "text", "state": "pending"}),
            json!({"mid": 1, "coll": "t", "op": "update", "id": "a", "patch": [1], "state": "pending"}),
            json!({"mid": 1, "coll": "t", "op": "update", "id": "a", "patch": {}, "baseDoc": 4, "state": "pending"}),
            json!({"mid": 1, "coll": "t", "op": "delete", "id": "a", "base": -3, "state": "pending"}),
            json!({"mid": 1, "coll": "t", "op": "delete", "id": "a", "ts": "x", "state": "pending"}),
            json!({"mid": 1, "coll": "t", "op": "delete", "id": "a", "state": "applied"}),
            json!({"mid": 1, "coll": "t", "op": "delete", "id": "a", "state": "done"}),
            json!({"mid": 1, "coll": "t", "op": "delete", "id": "a"}),
            json!({"mid": 1, "coll": "t", "op": "delete", "id": "a", "state": 1}),
            json!([1, 2]),
            json!(null),
        ];
        let mut read = 0;
        for v in cases {
            let by_serde = serde_json::from_value::<Entry>(v.clone()).ok();
            let by_hand = Entry::from_json(v.clone());
            assert_eq!(by_hand.clone().ok(), by_serde, "{v}: {by_hand:?}");
            read += usize::from(by_serde.is_some());
        }
        assert_eq!(read, 5, "the first five are entries");
    }
}

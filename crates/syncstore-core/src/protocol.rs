//! Protocol types shared by the client and the server (see docs/protocol.md).
//!
//! Everything here is plain data: the wire format of protocol v1. Field
//! names are camelCase on the wire.
//!
//! The tagged frames and results (`{"type": ...}`, `{"status": ...}`) derive
//! `Serialize` but read through a plain wire struct (every field of every
//! variant, optional) and a hand-written conversion: serde's derived
//! reading of an internally tagged enum, or of a `#[serde(flatten)]` field,
//! buffers the whole value first, and that buffering was a tenth of the
//! wasm module (issue 19). The texts are the same either way
//! (`tests/wire.rs` pins them).

use crate::sorted::SortedMap;
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// The protocol version these types describe; every HTTP path starts with `/v1`.
pub const PROTOCOL_VERSION: u32 = 1;

/// Client temporary ids start with this prefix; the server replaces them.
pub const TEMP_ID_PREFIX: &str = "tmp_";

/// The cursor meaning "from the very beginning".
pub const START_CURSOR: &str = "0";

/// A JSON object (documents and merge patches are always objects).
pub type JsonObject = Map<String, Value>;

/// A document (a JSON object) as its JSON text, carried without being
/// parsed where it is only passed along (issue 13, part 4): a change's
/// document from the server's store into a pull page or a frame, and on
/// the client from the frame into the engine's held state and a record's
/// `d`. It is parsed only where a replay, a merge or an index key needs
/// its fields ([`DocText::parse`]). Equal when the documents are equal.
#[derive(Clone)]
pub struct DocText(Box<RawValue>);

impl DocText {
    /// The text of `doc`.
    pub fn new(doc: &JsonObject) -> Self {
        DocText(serde_json::value::to_raw_value(doc).expect("JSON objects serialize"))
    }

    /// Takes JSON text that must be an object (e.g. a stored document):
    /// checked, not parsed into values.
    pub fn from_text(text: String) -> Result<Self, serde_json::Error> {
        let raw = RawValue::from_string(text)?;
        if !raw.get().starts_with('{') {
            return Err(de::Error::invalid_type(
                de::Unexpected::Other("JSON text"),
                &"a JSON object",
            ));
        }
        Ok(DocText(raw))
    }

    /// The JSON text.
    pub fn as_str(&self) -> &str {
        self.0.get()
    }

    /// The document's fields. For text this process wrote or read back
    /// from its own storage; text from the network goes through
    /// [`DocText::try_parse`] (a number out of range passes the syntax
    /// check but not the parse).
    pub fn parse(&self) -> JsonObject {
        serde_json::from_str(self.0.get()).expect("a DocText is a JSON object")
    }

    /// The document's top-level fields named in `names` (e.g. the first
    /// segments of a collection's index paths), as [`DocText::parse`]
    /// gives them; the text of every other member is scanned, not
    /// parsed into values (an initial sync's records need only their
    /// index keys: issue 13).
    pub fn parse_only(&self, names: &[&str]) -> JsonObject {
        let mut de = serde_json::Deserializer::from_str(self.0.get());
        de::DeserializeSeed::deserialize(Only(names), &mut de).expect("a DocText is a JSON object")
    }

    /// The document's fields, or why they cannot be read.
    pub fn try_parse(&self) -> Result<JsonObject, serde_json::Error> {
        serde_json::from_str(self.0.get())
    }

    /// The text's leading `id` field as JSON writers put it first (`{"id":"x",`
    /// or `{"id":"x"}`), and the rest of the text after its value (starting
    /// with `,` or `}`); `None` for any other start (then parse). The write
    /// path puts a document's id first, so a document whose id is known can
    /// be checked without parsing it.
    pub fn leading_id(&self) -> Option<(&str, &str)> {
        let rest = self.as_str().strip_prefix("{\"id\":\"")?;
        let end = rest.find(['"', '\\'])?;
        if rest.as_bytes()[end] != b'"' {
            return None;
        }
        let after = &rest[end + 1..];
        if !after.starts_with([',', '}']) {
            return None;
        }
        Some((&rest[..end], after))
    }

    /// True if a string in the text may be a temporary id: the text holds
    /// `tmp_`, or an escape (which could spell it). Cheaper than parsing
    /// to look.
    pub fn may_name_temp_ids(&self) -> bool {
        may_name_temp_ids(self.as_str())
    }
}

/// [`DocText::parse_only`]'s reader: an object's members named in `.0`.
struct Only<'n>(&'n [&'n str]);

impl<'de> de::DeserializeSeed<'de> for Only<'_> {
    type Value = JsonObject;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<JsonObject, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> de::Visitor<'de> for Only<'_> {
    type Value = JsonObject;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<JsonObject, A::Error> {
        let mut out = JsonObject::new();
        while let Some(key) = map.next_key_seed(Wanted(self.0))? {
            match key {
                Some(k) => {
                    out.insert(k, map.next_value()?);
                }
                None => {
                    map.next_value::<de::IgnoredAny>()?;
                }
            }
        }
        Ok(out)
    }
}

/// A member name: `Some` (owned) if it is one of `.0`, else `None`
/// (not copied).
struct Wanted<'n>(&'n [&'n str]);

impl<'de> de::DeserializeSeed<'de> for Wanted<'_> {
    type Value = Option<String>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<String>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> de::Visitor<'de> for Wanted<'_> {
    type Value = Option<String>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a member name")
    }
    fn visit_str<E: de::Error>(self, k: &str) -> Result<Option<String>, E> {
        Ok(self.0.contains(&k).then(|| k.to_owned()))
    }
}

impl From<JsonObject> for DocText {
    fn from(doc: JsonObject) -> Self {
        DocText::new(&doc)
    }
}

impl PartialEq for DocText {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str() || self.parse() == other.parse()
    }
}

impl std::fmt::Debug for DocText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for DocText {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for DocText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(d)?;
        if !raw.get().starts_with('{') {
            return Err(de::Error::invalid_type(
                de::Unexpected::Other("a JSON value other than an object"),
                &"a JSON object",
            ));
        }
        Ok(DocText(raw))
    }
}

/// A field a plain wire form requires (the error is serde's own).
pub(crate) fn required<T, E: de::Error>(v: Option<T>, field: &'static str) -> Result<T, E> {
    v.ok_or_else(|| E::missing_field(field))
}

/// True if a string in the JSON text `text` may be a temporary id: it
/// holds `tmp_`, or an escape (which could spell it).
pub fn may_name_temp_ids(text: &str) -> bool {
    text.contains(TEMP_ID_PREFIX) || text.contains("\\u")
}

/// True if `id` is a client temporary id (`tmp_...`).
pub fn is_temp_id(id: &str) -> bool {
    id.starts_with(TEMP_ID_PREFIX)
}

/// What a mutation does to one document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MutationOp {
    /// Create a document (`doc` required).
    Insert,
    /// Apply an RFC 7396 JSON merge patch (`patch` required).
    Update,
    /// Replace the whole document (`doc` required).
    Replace,
    /// Delete the document (leaves a tombstone).
    Delete,
}

/// One client mutation, as queued in the outbox and pushed to the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Mutation {
    /// Per-client mutation id; strictly increasing.
    pub mid: u64,
    /// Collection name.
    pub coll: String,
    /// The operation.
    pub op: MutationOp,
    /// Document id: canonical, or a temporary `tmp_...` id.
    pub id: String,
    /// The new document (insert, replace), as its JSON text: carried
    /// unparsed from the outbox into a push body and from a push body to
    /// the server's apply (issue 13, part 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doc: Option<DocText>,
    /// RFC 7396 merge patch (update), as its JSON text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<DocText>,
    /// The server version the client based this edit on; `None` = blind write.
    #[serde(default)]
    pub base: Option<u64>,
    /// Hybrid logical clock timestamp, stored for later last-write-wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ts: Option<u64>,
}

/// Why a mutation is not well formed (checked before it is applied).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct MutationError {
    /// Stable code, e.g. `INVALID_MUTATION`.
    pub code: &'static str,
    /// The offending field, e.g. `doc`.
    pub field: &'static str,
    /// Human readable reason.
    pub message: String,
}

/// Longest accepted document id, collection name and client id (bytes).
pub const MAX_ID_LEN: usize = 256;

impl Mutation {
    /// Checks what can be checked without the server's state.
    pub fn validate(&self) -> Result<(), MutationError> {
        let bad = |field, message: &str| MutationError {
            code: "INVALID_MUTATION",
            field,
            message: message.to_string(),
        };
        if self.coll.is_empty() || self.coll.len() > MAX_ID_LEN {
            return Err(bad(
                "coll",
                "must be a non-empty string of at most 256 bytes",
            ));
        }
        if self.id.is_empty() || self.id.len() > MAX_ID_LEN {
            return Err(bad("id", "must be a non-empty string of at most 256 bytes"));
        }
        match self.op {
            MutationOp::Insert | MutationOp::Replace => {
                if self.doc.is_none() {
                    return Err(bad("doc", "required for insert and replace"));
                }
                if self.patch.is_some() {
                    return Err(bad("patch", "only allowed for update"));
                }
            }
            MutationOp::Update => {
                if self.patch.is_none() {
                    return Err(bad("patch", "required for update"));
                }
                if self.doc.is_some() {
                    return Err(bad("doc", "only allowed for insert and replace"));
                }
            }
            MutationOp::Delete => {
                if self.doc.is_some() || self.patch.is_some() {
                    return Err(bad("doc", "delete carries neither doc nor patch"));
                }
            }
        }
        Ok(())
    }
}

/// `POST /v1/push` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PushRequest {
    /// Stable id of the pushing client (one per device/tab group).
    pub client_id: String,
    /// Mutations in mid order.
    pub mutations: Vec<Mutation>,
}

/// The outcome of one mutation.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum MutationResult {
    /// Applied; `version` is the document's new version (its seq).
    Applied {
        /// Mutation id.
        mid: u64,
        /// Canonical document id.
        id: String,
        /// Server version of the document after this mutation.
        version: u64,
        /// When this push wrote the document: its version before (0 = it
        /// did not exist). A client holding exactly that version knows the
        /// result without waiting for the change to come back. Absent when
        /// the mutation changed nothing (a replay, a no-op).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prev: Option<u64>,
    },
    /// Not applied: the server's document differs from what the client assumed.
    Conflict {
        /// Mutation id.
        mid: u64,
        /// Canonical document id (or the unresolved temporary id).
        id: String,
        /// The server's current document; `None` = deleted or missing.
        doc: Option<JsonObject>,
        /// The server's current version; `None` = never existed.
        version: Option<u64>,
        /// The clock of the mutation that last wrote the document, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ts: Option<u64>,
    },
    /// Not applied and never will be: the mutation is invalid.
    Rejected {
        /// Mutation id.
        mid: u64,
        /// Stable reason code, e.g. `DOC_TOO_LARGE`.
        code: String,
        /// Human readable reason.
        message: String,
    },
}

/// [`MutationResult`] as read: every variant's fields, optional.
#[derive(Deserialize)]
struct MutationResultWire {
    status: Option<String>,
    mid: Option<u64>,
    id: Option<String>,
    version: Option<u64>,
    prev: Option<u64>,
    doc: Option<JsonObject>,
    ts: Option<u64>,
    code: Option<String>,
    message: Option<String>,
}

impl<'de> Deserialize<'de> for MutationResult {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        const VARIANTS: &[&str] = &["applied", "conflict", "rejected"];
        let w = MutationResultWire::deserialize(d)?;
        let status = required(w.status, "status")?;
        let mid = required(w.mid, "mid")?;
        Ok(match status.as_str() {
            "applied" => MutationResult::Applied {
                mid,
                id: required(w.id, "id")?,
                version: required(w.version, "version")?,
                prev: w.prev,
            },
            "conflict" => MutationResult::Conflict {
                mid,
                id: required(w.id, "id")?,
                doc: w.doc,
                version: w.version,
                ts: w.ts,
            },
            "rejected" => MutationResult::Rejected {
                mid,
                code: required(w.code, "code")?,
                message: required(w.message, "message")?,
            },
            other => return Err(de::Error::unknown_variant(other, VARIANTS)),
        })
    }
}

impl MutationResult {
    /// The mutation id this result answers.
    pub fn mid(&self) -> u64 {
        match self {
            MutationResult::Applied { mid, .. }
            | MutationResult::Conflict { mid, .. }
            | MutationResult::Rejected { mid, .. } => *mid,
        }
    }
}

/// `POST /v1/push` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PushResponse {
    /// One result per pushed mutation, in order.
    pub results: Vec<MutationResult>,
    /// Temporary ids named in this push, mapped to canonical ids.
    pub id_map: SortedMap<String, String>,
    /// The highest mutation id the server has processed for this client.
    pub last_mutation_id: u64,
}

/// What a change did to a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeOp {
    /// The document now is `doc`.
    Put,
    /// The document was deleted.
    Delete,
}

/// One committed change, as sent by pull and over the WebSocket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    /// Global commit sequence number; strictly increasing within a stream.
    pub seq: u64,
    /// Collection name.
    pub coll: String,
    /// Canonical document id.
    pub id: String,
    /// Put or delete.
    pub op: ChangeOp,
    /// The full document after the change; `None` for a delete.
    pub doc: Option<DocText>,
    /// The document's version after the change (equals `seq`).
    pub version: u64,
    /// The hybrid logical clock of the mutation that made the change, if
    /// it carried one (clients observe it, for last-write-wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ts: Option<u64>,
}

/// A `changes` frame read cheaply: each change's version and clock, its
/// other fields (the document above all) skipped unparsed. Enough to
/// recognise the echo of this client's own writes
/// ([`crate::sync::ClientSync::is_echo_of`]) before paying for the
/// documents; any other frame reads as `kind` only.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct FrameHead {
    /// The frame's `type`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `(version, ts)` of each change, in order.
    #[serde(default)]
    pub changes: Vec<ChangeStamp>,
    /// The cursor after the changes.
    #[serde(default)]
    pub cursor: Option<String>,
}

impl FrameHead {
    /// The seq (= version) of a `changes` frame's first change, read from
    /// the start of the text as [`ServerMessage`] serializes it
    /// (`{"type":"changes","changes":[{"seq":N,...`), without parsing the
    /// rest; `None` for any other start. A frame's changes are in seq
    /// order, so a first change that is news makes the frame news.
    pub fn first_seq(text: &str) -> Option<u64> {
        const AT: &[u8] = b"\"changes\":[{\"seq\":";
        let start = text.as_bytes().get(..64.min(text.len()))?;
        let i = start.windows(AT.len()).position(|w| w == AT)? + AT.len();
        let digits = &text.as_bytes()[i..];
        let n = digits.iter().take_while(|b| b.is_ascii_digit()).count();
        std::str::from_utf8(&digits[..n]).ok()?.parse().ok()
    }
}

/// What [`FrameHead`] reads of one change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct ChangeStamp {
    /// The document's version after the change (its seq).
    pub version: u64,
    /// The clock of the mutation that made it, if any.
    #[serde(default)]
    pub ts: Option<u64>,
}

impl Change {
    /// What [`FrameHead`] reads of it.
    pub fn stamp(&self) -> ChangeStamp {
        ChangeStamp {
            version: self.version,
            ts: self.ts,
        }
    }
}

/// `GET /v1/pull` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PullResponse {
    /// True if the given cursor could not be served: drop the server state,
    /// keep pending mutations, and pull again from `cursor` (the start).
    #[serde(default)]
    pub resync: bool,
    /// Changes after the cursor, in seq order.
    pub changes: Vec<Change>,
    /// Opaque cursor to pass to the next pull.
    pub cursor: String,
    /// True if more changes remain after `cursor`.
    pub more: bool,
    /// The highest mutation id the server has processed for the calling client.
    pub last_mutation_id: u64,
    /// On the first page of a pull from the start: how many changes the
    /// whole pull delivers (as of this page's snapshot), for a progress bar.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
}

/// Frames a client sends over `/v1/ws`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum ClientMessage {
    /// First frame: who the client is and where its server state ends.
    #[serde(rename_all = "camelCase")]
    Hello {
        /// Client id (as in push).
        client_id: String,
        /// Cursor from the last pull or changes frame; `None` = start.
        #[serde(default)]
        cursor: Option<String>,
        /// Bearer token, unless given in the upgrade request.
        #[serde(default)]
        token: Option<String>,
    },
    /// A push, answered by a `pushResult` frame.
    #[serde(rename_all = "camelCase")]
    Push {
        /// Client id; defaults to the hello's.
        #[serde(default)]
        client_id: Option<String>,
        /// Mutations in mid order.
        mutations: Vec<Mutation>,
        /// Optional request id, echoed in the answer.
        #[serde(default)]
        rid: Option<String>,
    },
    /// Application-level keep-alive; answered by `pong`.
    Ping,
    /// Answer to a server `ping`.
    Pong,
}

/// [`ClientMessage`] as read: every variant's fields, optional.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClientMessageWire {
    #[serde(rename = "type")]
    kind: Option<String>,
    client_id: Option<String>,
    cursor: Option<String>,
    token: Option<String>,
    mutations: Option<Vec<Mutation>>,
    rid: Option<String>,
}

impl<'de> Deserialize<'de> for ClientMessage {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        const VARIANTS: &[&str] = &["hello", "push", "ping", "pong"];
        let w = ClientMessageWire::deserialize(d)?;
        Ok(match required(w.kind, "type")?.as_str() {
            "hello" => ClientMessage::Hello {
                client_id: required(w.client_id, "clientId")?,
                cursor: w.cursor,
                token: w.token,
            },
            "push" => ClientMessage::Push {
                client_id: w.client_id,
                mutations: required(w.mutations, "mutations")?,
                rid: w.rid,
            },
            "ping" => ClientMessage::Ping,
            "pong" => ClientMessage::Pong,
            other => return Err(de::Error::unknown_variant(other, VARIANTS)),
        })
    }
}

/// Frames the server sends over `/v1/ws`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum ServerMessage {
    /// Committed changes, in seq order, never repeated, never skipped.
    #[serde(rename_all = "camelCase")]
    Changes {
        /// The changes.
        changes: Vec<Change>,
        /// Cursor after these changes (usable for pull or a later hello).
        cursor: String,
    },
    /// Catch-up after hello is complete; live changes follow.
    #[serde(rename_all = "camelCase")]
    Synced {
        /// Cursor after the catch-up.
        cursor: String,
        /// The highest mutation id the server has processed for this client.
        last_mutation_id: u64,
        /// The server's limits (absent from servers that do not advertise them).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limits: Option<ServerLimits>,
    },
    /// The hello cursor could not be served: drop the server state (keep
    /// pending mutations); the catch-up from the start follows.
    #[serde(rename_all = "camelCase")]
    Resync {
        /// Always the start cursor.
        cursor: String,
    },
    /// Answer to a `push` frame: the HTTP push answer's fields beside `rid`.
    #[serde(serialize_with = "push_result")]
    PushResult {
        /// Echo of the push's `rid`.
        rid: Option<String>,
        /// Same as the HTTP push answer.
        response: PushResponse,
    },
    /// A request failed; fatal errors are followed by a close frame.
    #[serde(rename_all = "camelCase")]
    Error {
        /// Echo of the push's `rid`, if the error answers a push.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rid: Option<String>,
        /// Stable error code (same codes as HTTP).
        code: String,
        /// Human readable reason.
        message: String,
        /// Seconds to wait before retrying (for `RATE_LIMITED`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after: Option<u64>,
    },
    /// Application-level keep-alive.
    Ping,
    /// Answer to a client `ping`.
    Pong,
}

/// The fields of a `pushResult` frame after its `type` (which serde's
/// tagging writes first): `rid` if any, then [`PushResponse`]'s.
fn push_result<S: Serializer>(
    rid: &Option<String>,
    response: &PushResponse,
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeStruct;
    let mut st = s.serialize_struct("PushResult", 3 + usize::from(rid.is_some()))?;
    match rid {
        Some(rid) => st.serialize_field("rid", rid)?,
        None => st.skip_field("rid")?,
    }
    st.serialize_field("results", &response.results)?;
    st.serialize_field("idMap", &response.id_map)?;
    st.serialize_field("lastMutationId", &response.last_mutation_id)?;
    st.end()
}

/// [`ServerMessage`] as read: every variant's fields, optional. The HTTP
/// answers a client reads ([`PullResponse`], [`PushResponse`], the
/// config's `limits`) are read through it too ([`read_pull`],
/// [`read_push`], [`read_limits`]): one struct reader in the wasm module
/// for every JSON object from the server, not one per type (issue 19).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServerMessageWire {
    #[serde(rename = "type")]
    kind: Option<String>,
    changes: Option<Vec<Change>>,
    cursor: Option<String>,
    last_mutation_id: Option<u64>,
    limits: Option<ServerLimits>,
    rid: Option<String>,
    results: Option<Vec<MutationResult>>,
    id_map: Option<SortedMap<String, String>>,
    code: Option<String>,
    message: Option<String>,
    retry_after: Option<u64>,
    resync: Option<bool>,
    more: Option<bool>,
    total: Option<u64>,
}

/// `GET /v1/pull`'s answer, read as its `Deserialize` reads it.
pub fn read_pull(text: &str) -> serde_json::Result<PullResponse> {
    let w: ServerMessageWire = serde_json::from_str(text)?;
    Ok(PullResponse {
        resync: w.resync.unwrap_or(false),
        changes: required(w.changes, "changes")?,
        cursor: required(w.cursor, "cursor")?,
        more: required(w.more, "more")?,
        last_mutation_id: required(w.last_mutation_id, "lastMutationId")?,
        total: w.total,
    })
}

/// `POST /v1/push`'s answer, read as its `Deserialize` reads it.
pub fn read_push(text: &str) -> serde_json::Result<PushResponse> {
    let w: ServerMessageWire = serde_json::from_str(text)?;
    Ok(PushResponse {
        results: required(w.results, "results")?,
        id_map: required(w.id_map, "idMap")?,
        last_mutation_id: required(w.last_mutation_id, "lastMutationId")?,
    })
}

/// The `limits` of `GET /v1/config`'s answer (absent from servers that do
/// not advertise them; fields a client does not know are ignored).
pub fn read_limits(text: &str) -> serde_json::Result<Option<ServerLimits>> {
    let w: ServerMessageWire = serde_json::from_str(text)?;
    Ok(w.limits)
}

impl<'de> Deserialize<'de> for ServerMessage {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        const VARIANTS: &[&str] = &[
            "changes",
            "synced",
            "resync",
            "pushResult",
            "error",
            "ping",
            "pong",
        ];
        let w = ServerMessageWire::deserialize(d)?;
        Ok(match required(w.kind, "type")?.as_str() {
            "changes" => ServerMessage::Changes {
                changes: required(w.changes, "changes")?,
                cursor: required(w.cursor, "cursor")?,
            },
            "synced" => ServerMessage::Synced {
                cursor: required(w.cursor, "cursor")?,
                last_mutation_id: required(w.last_mutation_id, "lastMutationId")?,
                limits: w.limits,
            },
            "resync" => ServerMessage::Resync {
                cursor: required(w.cursor, "cursor")?,
            },
            "pushResult" => ServerMessage::PushResult {
                rid: w.rid,
                response: PushResponse {
                    results: required(w.results, "results")?,
                    id_map: required(w.id_map, "idMap")?,
                    last_mutation_id: required(w.last_mutation_id, "lastMutationId")?,
                },
            },
            "error" => ServerMessage::Error {
                rid: w.rid,
                code: required(w.code, "code")?,
                message: required(w.message, "message")?,
                retry_after: w.retry_after,
            },
            "ping" => ServerMessage::Ping,
            "pong" => ServerMessage::Pong,
            other => return Err(de::Error::unknown_variant(other, VARIANTS)),
        })
    }
}

/// Body of every HTTP error answer: `{"error": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorResponse {
    /// The error.
    pub error: ErrorBody,
}

/// A stable code, a message and, for input errors, the offending field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Stable code, e.g. `INVALID_FIELD`.
    pub code: String,
    /// Human readable reason.
    pub message: String,
    /// The offending field path, e.g. `mutations[2].mid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// The limits a server enforces, so a client can refuse what the server
/// would: `GET /v1/config` answers `{"protocol": 1, "limits": ServerLimits}`,
/// and the WebSocket `synced` frame carries it as `limits` (optional: a
/// server may omit it, a client ignores it if it does not know it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerLimits {
    /// Largest serialized document or patch, in bytes (`DOC_TOO_LARGE`).
    pub max_doc_bytes: u64,
    /// Most mutations in one push (`TOO_MANY_MUTATIONS`).
    pub max_mutations_per_push: u64,
    /// Largest request body or WebSocket message, in bytes (`PAYLOAD_TOO_LARGE`).
    pub max_body_bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The answers read through the frame's wire struct take and refuse
    /// what their own `Deserialize` does, and read the same values.
    #[test]
    fn answers_read_through_the_wire_struct_as_their_types_read_them() {
        let change = r#"{"seq":3,"coll":"t","id":"a","op":"put","doc":{"id":"a"},"version":3}"#;
        let pulls = [
            format!(r#"{{"changes":[{change}],"cursor":"c","more":false,"lastMutationId":4}}"#),
            r#"{"resync":true,"changes":[],"cursor":"0","more":true,"lastMutationId":0,"total":9,"extra":1}"#.into(),
            r#"{"changes":[],"cursor":"c","lastMutationId":4}"#.into(),
            r#"{"changes":[],"cursor":"c","more":"no","lastMutationId":4}"#.into(),
            r#"{"changes":{},"cursor":"c","more":false,"lastMutationId":4}"#.into(),
            r#"{"changes":[],"more":false,"lastMutationId":4}"#.into(),
            r#"{"changes":[],"cursor":"c","more":false,"lastMutationId":-1}"#.into(),
            r#"[]"#.into(),
        ];
        let mut read = 0;
        for t in &pulls {
            let ours = read_pull(t).ok();
            assert_eq!(ours, serde_json::from_str::<PullResponse>(t).ok(), "{t}");
            read += usize::from(ours.is_some());
        }
        assert_eq!(read, 2);
        let pushes = [
            r#"{"results":[{"status":"applied","mid":1,"id":"a","version":3,"prev":0}],"idMap":{"tmp_1":"a"},"lastMutationId":1}"#,
            r#"{"results":[{"status":"rejected","mid":2,"code":"X","message":"m"}],"idMap":{},"lastMutationId":2,"rid":"r"}"#,
            r#"{"results":[],"lastMutationId":2}"#,
            r#"{"results":[],"idMap":{},"lastMutationId":null}"#,
            r#"{"results":[{"status":"applied"}],"idMap":{},"lastMutationId":2}"#,
            r#"{"results":[],"idMap":[],"lastMutationId":2}"#,
        ];
        read = 0;
        for t in pushes {
            let ours = read_push(t).ok();
            assert_eq!(ours, serde_json::from_str::<PushResponse>(t).ok(), "{t}");
            read += usize::from(ours.is_some());
        }
        assert_eq!(read, 2);
        let limits = ServerLimits {
            max_doc_bytes: 1,
            max_mutations_per_push: 2,
            max_body_bytes: 3,
        };
        assert_eq!(
            read_limits(r#"{"limits":{"maxDocBytes":1,"maxMutationsPerPush":2,"maxBodyBytes":3},"version":1}"#).unwrap(),
            Some(limits)
        );
        assert_eq!(read_limits(r#"{"version":1}"#).unwrap(), None);
        assert!(read_limits(r#"{"limits":{"maxDocBytes":1}}"#).is_err());
    }

    #[test]
    fn parse_only_reads_the_named_members_as_parse_does() {
        let text = r#"{"id":"a","a\u0062":{"x":[1,2]},"c":"\"}{","ab":3,"d":true,"ab":4}"#;
        let t = DocText::from_text(text.to_owned()).unwrap();
        let whole = t.parse();
        let some = t.parse_only(&["ab", "d", "zz"]);
        assert_eq!(
            serde_json::to_value(&some).unwrap(),
            json!({"ab": 4, "d": true})
        );
        assert_eq!(
            some["ab"], whole["ab"],
            "a repeated member: the last one, as parse gives"
        );
        assert_eq!(t.parse_only(&[]), JsonObject::new());
        assert_eq!(t.parse_only(&["id", "c"]), {
            let mut m = whole.clone();
            m.retain(|k, _| k == "id" || k == "c");
            m
        });
    }

    #[test]
    fn a_frame_head_reads_what_the_server_writes() {
        let change = |seq: u64| Change {
            seq,
            coll: "todos".into(),
            id: format!("d{seq}"),
            op: ChangeOp::Put,
            doc: Some(serde_json::from_value(json!({"t": "x"})).unwrap()),
            version: seq,
            ts: Some(seq * 65536),
        };
        let text = serde_json::to_string(&ServerMessage::Changes {
            changes: vec![change(41), change(42)],
            cursor: "e.42".into(),
        })
        .unwrap();
        assert_eq!(FrameHead::first_seq(&text), Some(41));
        let head: FrameHead = serde_json::from_str(&text).unwrap();
        assert_eq!(head.kind, "changes");
        assert_eq!(head.cursor.as_deref(), Some("e.42"));
        let stamps: Vec<ChangeStamp> = [change(41), change(42)].iter().map(Change::stamp).collect();
        assert_eq!(head.changes, stamps);
        let empty = serde_json::to_string(&ServerMessage::Changes {
            changes: vec![],
            cursor: "e.42".into(),
        })
        .unwrap();
        assert_eq!(FrameHead::first_seq(&empty), None);
        assert_eq!(FrameHead::first_seq(r#"{"type":"ping"}"#), None);
    }

    #[test]
    fn mutation_round_trips_with_wire_names() {
        let m: Mutation = serde_json::from_value(json!({
            "mid": 3, "coll": "todos", "op": "update", "id": "tmp_1",
            "patch": {"done": true}, "base": 7, "ts": 99
        }))
        .unwrap();
        assert_eq!(m.op, MutationOp::Update);
        assert_eq!(m.base, Some(7));
        m.validate().unwrap();
        let back = serde_json::to_value(&m).unwrap();
        assert_eq!(back["patch"], json!({"done": true}));
        assert!(back.get("doc").is_none());
    }

    #[test]
    fn validate_names_the_field() {
        let m: Mutation = serde_json::from_value(json!({
            "mid": 1, "coll": "todos", "op": "insert", "id": "a"
        }))
        .unwrap();
        assert_eq!(m.validate().unwrap_err().field, "doc");
    }

    #[test]
    fn results_are_tagged_by_status() {
        let r = MutationResult::Conflict {
            mid: 1,
            id: "a".into(),
            doc: None,
            version: Some(4),
            ts: None,
        };
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            json!({"status": "conflict", "mid": 1, "id": "a", "doc": null, "version": 4})
        );
    }

    #[test]
    fn ws_frames_are_tagged_by_type() {
        let hello: ClientMessage = serde_json::from_value(
            json!({"type": "hello", "clientId": "c", "cursor": "0", "token": "t"}),
        )
        .unwrap();
        assert!(matches!(hello, ClientMessage::Hello { .. }));
        let pr = ServerMessage::PushResult {
            rid: Some("r1".into()),
            response: PushResponse {
                results: vec![],
                id_map: Default::default(),
                last_mutation_id: 5,
            },
        };
        let v = serde_json::to_value(&pr).unwrap();
        assert_eq!(v["type"], "pushResult");
        assert_eq!(v["lastMutationId"], 5);
        assert_eq!(v["rid"], "r1");
    }

    #[test]
    fn temp_ids() {
        assert!(is_temp_id("tmp_abc"));
        assert!(!is_temp_id("abc"));
    }
}

#[cfg(test)]
mod doc_text_tests {
    use super::*;

    #[test]
    fn a_leading_id_is_read_from_the_text() {
        let t = |s: &str| DocText::from_text(s.into()).unwrap();
        assert_eq!(
            t(r#"{"id":"a","n":1}"#).leading_id(),
            Some(("a", r#","n":1}"#))
        );
        assert_eq!(t(r#"{"id":"tmp_1"}"#).leading_id(), Some(("tmp_1", "}")));
        for other in [
            r#"{"n":1,"id":"a"}"#,
            r#"{ "id":"a"}"#,
            r#"{"id":1}"#,
            r#"{"id":"a\"b"}"#,
            r#"{"id":"\u0061"}"#,
            r#"{"id":"a" ,"n":1}"#,
            "{}",
        ] {
            assert_eq!(t(other).leading_id(), None, "{other}");
        }
    }

    #[test]
    fn mutations_carry_their_documents_as_the_text_they_came_as() {
        let text =
            r#"{"mid":1,"coll":"t","op":"insert","id":"a","doc":{"id":"a", "n":1.50},"base":null}"#;
        let m: Mutation = serde_json::from_str(text).unwrap();
        assert_eq!(m.doc.as_ref().unwrap().as_str(), r#"{"id":"a", "n":1.50}"#);
        assert_eq!(serde_json::to_string(&m).unwrap(), text);
        let bad = r#"{"mid":1,"coll":"t","op":"insert","id":"a","doc":[1]}"#;
        assert!(serde_json::from_str::<Mutation>(bad).is_err());
        // Syntax only: what a parse would refuse is found by `try_parse`.
        let huge = r#"{"mid":1,"coll":"t","op":"insert","id":"a","doc":{"n":1e400}}"#;
        let m: Mutation = serde_json::from_str(huge).unwrap();
        assert!(m.doc.unwrap().try_parse().is_err());
    }
}

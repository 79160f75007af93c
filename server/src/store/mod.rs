//! Storage: the `Store` trait the HTTP and WebSocket layers use, and its
//! SQLite implementation. Conflict rules live in [`doc`], shared by every store.

pub mod doc;
pub mod sqlite;

use syncstore_core::protocol::{Change, PullResponse, PushRequest, PushResponse};

pub use sqlite::SqliteStore;

/// Per-push limits a store enforces while applying mutations.
#[derive(Debug, Clone, Copy)]
pub struct ApplyLimits {
    /// Largest serialized document or patch (and merged result), in bytes.
    pub max_doc_bytes: usize,
    /// Most stored bytes (documents, field versions, results) one push
    /// reads and writes: a push that reaches it stops after the mutation
    /// that did, commits what it applied and answers for those mutations
    /// only (a prefix, at least one; docs/protocol.md 3.2).
    pub max_push_work_bytes: usize,
}

/// What a committed push produced.
#[derive(Debug, Clone)]
pub struct PushOutcome {
    /// The answer for the client.
    pub response: PushResponse,
    /// The changes committed, in seq order, for live subscribers.
    pub changes: Vec<Change>,
}

/// One push of a group commit.
#[derive(Debug, Clone, Copy)]
pub struct GroupPush<'a> {
    /// The namespace the token grants.
    pub namespace: &'a str,
    /// The pushing token's owner id ([`crate::state::owner_id`]); a
    /// clientId belongs to the first owner that pushed with it in its
    /// namespace. `None` skips the check (tools and tests).
    pub owner: Option<&'a str>,
    /// The push.
    pub req: &'a PushRequest,
}

/// The client a pull reports `lastMutationId` for.
#[derive(Debug, Clone, Copy)]
pub struct PullClient<'a> {
    /// Its clientId.
    pub id: &'a str,
    /// The pulling token's owner id: a clientId another owner holds
    /// reports `lastMutationId` 0 (nothing about another user's client is
    /// revealed). `None` skips the check (tools and tests).
    pub owner: Option<&'a str>,
}

/// A storage failure. Never shown to clients (they see `INTERNAL`), except
/// [`StoreError::ClientIdTaken`].
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The push's clientId belongs to another token (`403 CLIENT_ID_TAKEN`).
    #[error("clientId owned by another token")]
    ClientIdTaken,
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    /// Stored data could not be decoded.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
}

/// Durable storage of documents, client state and the change order.
///
/// Methods are blocking; the server calls them from `spawn_blocking`.
/// Every method is one database transaction.
pub trait Store: Send + Sync + 'static {
    /// Applies a push atomically: every mutation applied, the results, the
    /// id map and the client's last mutation id commit together or not at
    /// all. The answer covers a prefix of the mutations when the push's
    /// work budget ([`ApplyLimits::max_push_work_bytes`]) ran out.
    fn push(
        &self,
        namespace: &str,
        req: &PushRequest,
        limits: ApplyLimits,
    ) -> Result<PushOutcome, StoreError>;

    /// Applies several pushes, in order, in one transaction (one durable
    /// commit): each push in a savepoint of its own, so a push that fails
    /// rolls back only itself and gets its own error. Every push sees the
    /// ones before it (a replay of an earlier push of the group answers its
    /// stored results). `Err` means the group's transaction failed: then no
    /// push of it is known to have committed.
    ///
    /// A store may stop before the end once `deadline` has passed (it
    /// applies at least one push): it answers a prefix, and the caller
    /// submits the rest again.
    ///
    /// The default applies the pushes one transaction each.
    fn push_group(
        &self,
        pushes: &[GroupPush<'_>],
        limits: ApplyLimits,
        deadline: Option<std::time::Instant>,
    ) -> Result<Vec<Result<PushOutcome, StoreError>>, StoreError> {
        let _ = deadline;
        Ok(pushes
            .iter()
            .map(|p| self.push(p.namespace, p.req, limits))
            .collect())
    }

    /// Changes of `namespace` after `cursor`, from one snapshot: at most
    /// `limit`, and no more than about `max_bytes` of serialized changes
    /// (always at least one change, whatever its size).
    fn pull_page(
        &self,
        namespace: &str,
        client: Option<PullClient<'_>>,
        cursor: Option<&str>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<PullResponse, StoreError>;

    /// [`Store::pull_page`] bounded by count only.
    fn pull(
        &self,
        namespace: &str,
        client_id: Option<&str>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<PullResponse, StoreError> {
        let client = client_id.map(|id| PullClient { id, owner: None });
        self.pull_page(namespace, client, cursor, limit, usize::MAX)
    }

    /// The decoded sequence number of a cursor this store issued, or `None`
    /// if it cannot be served (the caller must resync).
    fn cursor_seq(&self, cursor: &str) -> Result<Option<u64>, StoreError>;

    /// The cursor a stream positioned after `seq` reports.
    fn cursor_for(&self, seq: u64) -> String;

    /// A cheap liveness check of the database.
    fn health(&self) -> Result<(), StoreError>;

    /// [`Store::health`] that never waits: a store busy with another call
    /// counts as healthy. The default calls `health`.
    fn try_health(&self) -> Result<(), StoreError> {
        self.health()
    }
}

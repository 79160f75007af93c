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
}

/// What a committed push produced.
#[derive(Debug, Clone)]
pub struct PushOutcome {
    /// The answer for the client.
    pub response: PushResponse,
    /// The changes committed, in seq order, for live subscribers.
    pub changes: Vec<Change>,
}

/// A storage failure. Never shown to clients (they see `INTERNAL`).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
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
    /// Applies a push atomically: every mutation, the results, the id map and
    /// the client's last mutation id commit together or not at all.
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
    /// The default applies the pushes one transaction each.
    fn push_group(
        &self,
        pushes: &[(&str, &PushRequest)],
        limits: ApplyLimits,
    ) -> Result<Vec<Result<PushOutcome, StoreError>>, StoreError> {
        Ok(pushes
            .iter()
            .map(|(ns, req)| self.push(ns, req, limits))
            .collect())
    }

    /// Changes of `namespace` after `cursor` (at most `limit`), from one snapshot.
    fn pull(
        &self,
        namespace: &str,
        client_id: Option<&str>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<PullResponse, StoreError>;

    /// The decoded sequence number of a cursor this store issued, or `None`
    /// if it cannot be served (the caller must resync).
    fn cursor_seq(&self, cursor: &str) -> Result<Option<u64>, StoreError>;

    /// The cursor a stream positioned after `seq` reports.
    fn cursor_for(&self, seq: u64) -> String;

    /// A cheap liveness check of the database.
    fn health(&self) -> Result<(), StoreError>;
}

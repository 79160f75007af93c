//! Storage: the `Store` trait the HTTP and WebSocket layers use, and its
//! two implementations: SQLite (embedded, one process) and PostgreSQL (many
//! server nodes on one database). Conflict rules live in the core
//! (`syncstore_core::sync::apply`); the per-push bookkeeping both stores
//! share (replays, results, the client's last mid, the namespace's
//! sequence) lives in [`push`].
//!
//! Namespaces are the unit of scale: every table's key starts with the
//! namespace, each namespace has its own sequence (and so its own cursors),
//! and no query reads more than one namespace.

pub mod doc;
pub mod postgres;
mod push;
pub mod sqlite;

use std::sync::Arc;

use syncstore_core::protocol::{Change, PullResponse, PushRequest, PushResponse, START_CURSOR};

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// Opens the store `db` names: a `postgres://` or `postgresql://` URL
/// selects PostgreSQL, anything else is a SQLite file (`:memory:` for an
/// in-memory database).
pub fn open(db: &str, retention: Retention) -> Result<Arc<dyn Store>, StoreError> {
    if db.starts_with("postgres://") || db.starts_with("postgresql://") {
        Ok(Arc::new(PgStore::open(db, retention)?))
    } else {
        Ok(Arc::new(SqliteStore::open_with(db, retention)?))
    }
}

/// What a store keeps of the past (docs/deploy.md, "Retention").
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Mutation results and temporary-id mappings kept per client: those of
    /// its last this-many mids. A client that resends a mid older than that
    /// gets `STALE_MUTATION_ID` (its mutation was applied once; a pull
    /// brings the server's state).
    pub results_per_client: u64,
    /// Tombstones older than this are deleted by [`Store::compact`]; a
    /// cursor from before the newest deleted one is answered with a resync.
    pub tombstone_horizon: std::time::Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            results_per_client: 10_000,
            tombstone_horizon: std::time::Duration::from_secs(30 * 86_400),
        }
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Cursors a store issues: `<epoch>.<seq>`, the epoch a random id of the
/// database, so a cursor from another (or a recreated) database resyncs.
#[derive(Debug, Clone)]
pub(crate) struct Cursors {
    pub epoch: String,
}

impl Cursors {
    /// A new random epoch.
    pub fn new_epoch() -> String {
        uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
    }

    pub fn encode(&self, seq: u64) -> String {
        if seq == 0 {
            START_CURSOR.to_string()
        } else {
            format!("{}.{}", self.epoch, seq)
        }
    }

    /// The seq of `cursor` if it can be served: issued by this database, not
    /// past the namespace's `head`, not before its compaction `floor`.
    pub fn decode(&self, cursor: &str, head: u64, floor: u64) -> Option<u64> {
        if cursor == START_CURSOR {
            return Some(0);
        }
        let (epoch, digits) = cursor.split_once('.')?;
        let seq: u64 = digits.parse().ok()?;
        // Only the exact form this store issues ("007" or "+7" are garbage).
        (epoch == self.epoch && seq <= head && seq >= floor && seq.to_string() == digits)
            .then_some(seq)
    }
}

/// The answer to a cursor that cannot be served: start again.
pub(crate) fn resync(last_mutation_id: u64) -> PullResponse {
    PullResponse {
        resync: true,
        changes: Vec::new(),
        cursor: START_CURSOR.to_string(),
        more: true,
        last_mutation_id,
        total: None,
    }
}

/// Runs `f`, turning a panic into [`StoreError::Corrupt`] (a push of a
/// group that hits a bug fails alone).
pub(crate) fn catch_panic<R>(f: impl FnOnce() -> Result<R, StoreError>) -> Result<R, StoreError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(StoreError::Corrupt(format!(
            "panic while applying a push: {what}"
        )))
    })
}

/// Called with a namespace whose changes another node (or this one)
/// committed, or `None` when any namespace may have changed (notifications
/// may have been lost).
pub type Wake = Arc<dyn Fn(Option<&str>) + Send + Sync>;

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
    /// PostgreSQL failed (or no connection could be had).
    #[error("postgres: {0}")]
    Pg(String),
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

    /// The decoded sequence number of a cursor this store issued for
    /// `namespace`, or `None` if it cannot be served (the caller must resync).
    fn cursor_seq(&self, namespace: &str, cursor: &str) -> Result<Option<u64>, StoreError>;

    /// The cursor a stream positioned after `seq` reports.
    fn cursor_for(&self, seq: u64) -> String;

    /// A cheap liveness check of the database.
    fn health(&self) -> Result<(), StoreError>;

    /// [`Store::health`] that never waits: a store busy with another call
    /// counts as healthy. The default calls `health`.
    fn try_health(&self) -> Result<(), StoreError> {
        self.health()
    }

    /// Deletes what [`Retention`] no longer keeps of `namespace`'s
    /// tombstones (results are pruned at each push); returns how many.
    fn compact(&self, namespace: &str) -> Result<u64, StoreError>;

    /// The namespaces stored (for compaction, one at a time).
    fn namespaces(&self) -> Result<Vec<String>, StoreError>;

    /// True if other processes (server nodes) commit to this store too:
    /// then `wake` is called whenever a namespace may have new changes, and
    /// the server reads them from the store by seq for its live sessions
    /// instead of publishing its own commits. The default: this process is
    /// the only writer.
    fn listen(&self, wake: Wake) -> bool {
        let _ = wake;
        false
    }
}

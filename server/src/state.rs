//! Shared server state: the store, auth, live fan-out, connection counts,
//! rate limits, and the one push path used by HTTP and WebSocket alike.
//!
//! Pushes are committed by one committer thread, in groups: every push that
//! arrives while a commit is running waits in a queue, and the next commit
//! applies all of them in one SQLite transaction (one fsync), each push in a
//! savepoint of its own ([`Store::push_group`]). Each push is answered with
//! its own result once the group is durable; then each namespace gets one
//! broadcast with the group's changes in seq order, its `changes` frame
//! serialized once for every session.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::ws::Utf8Bytes;
use syncstore_core::protocol::{Change, PushRequest, PushResponse, ServerMessage};
use tokio::sync::{broadcast, oneshot, watch};

use crate::auth::{AuthConfig, AuthTable, Authenticator};
use crate::config::Config;
use crate::error::AppError;
use crate::store::{ApplyLimits, GroupPush, PushOutcome, Store};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The changes of one commit in one namespace, in seq order, and the live
/// `changes` frame that carries exactly them (serialized once, shared by
/// every session that is up to date).
#[derive(Debug)]
pub struct Batch {
    /// The changes, in seq order (never empty).
    pub changes: Vec<Change>,
    /// `{"type":"changes","changes":[...],"cursor":...}` for these changes.
    pub frame: Utf8Bytes,
    /// Sessions that were subscribed when it was sent and have not handled
    /// it yet (see [`Batch::handled`]).
    pending: AtomicUsize,
    /// How many sessions it was sent to.
    sent_to: usize,
    /// When it was published (for the fan-out lag metric).
    published: Instant,
}

impl Batch {
    /// Seq of the first change.
    pub fn first_seq(&self) -> u64 {
        self.changes.first().map_or(0, |c| c.seq)
    }

    /// Seq of the last change.
    pub fn last_seq(&self) -> u64 {
        self.changes.last().map_or(0, |c| c.seq)
    }

    /// A session has written (or skipped) this batch. The last of the
    /// sessions it was sent to records the fan-out lag.
    pub fn handled(&self) {
        if self
            .pending
            .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1))
            == Ok(1)
        {
            metrics::histogram!(crate::metrics::FANOUT_SECONDS)
                .record(self.published.elapsed().as_secs_f64());
        }
    }

    /// True once nearly every session has handled it (a session that
    /// lags, or closes, does not hold the committer up).
    fn mostly_handled(&self) -> bool {
        self.pending.load(Relaxed) * 10 <= self.sent_to
    }
}

/// A batch of changes from one commit.
pub type ChangeBatch = Arc<Batch>;

/// One namespace's broadcast channel.
struct Channel {
    tx: broadcast::Sender<ChangeBatch>,
    /// When changes are read from the store (several nodes, see [`Feed`]):
    /// the seq up to which they have been published, set by the first
    /// session's catch-up (lowered by any later one: what its catch-up did
    /// not see is published again, and sessions drop what they have).
    from: Option<u64>,
}

/// Per-namespace broadcast of committed changes.
pub struct Hub {
    capacity: usize,
    channels: Mutex<HashMap<String, Channel>>,
    /// Held while a batch is published at a position and the position
    /// moves (the committer's and the feed's batches keep seq order).
    order: Mutex<()>,
    /// Held by the committer from before a commit until it has published
    /// it, and by the feed while it reads and publishes a namespace: the
    /// feed never publishes this node's commits (as latest states) before
    /// the committer publishes them whole.
    local: Mutex<()>,
}

impl Hub {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            channels: Mutex::new(HashMap::new()),
            order: Mutex::new(()),
            local: Mutex::new(()),
        }
    }

    /// Subscribes to the live changes of `namespace`.
    pub fn subscribe(&self, namespace: &str) -> broadcast::Receiver<ChangeBatch> {
        lock(&self.channels)
            .entry(namespace.to_string())
            .or_insert_with(|| Channel {
                tx: broadcast::channel(self.capacity).0,
                from: None,
            })
            .tx
            .subscribe()
    }

    /// A session of `namespace` has caught up to `seq` from the store: live
    /// changes after it must be published.
    pub fn caught_up(&self, namespace: &str, seq: u64) {
        if let Some(c) = lock(&self.channels).get_mut(namespace) {
            c.from = Some(c.from.map_or(seq, |f| f.min(seq)));
        }
    }

    /// Namespaces with subscribers whose changes are read from the store,
    /// and the seq each is published up to.
    fn positions(&self, only: Option<&str>) -> Vec<(String, u64)> {
        lock(&self.channels)
            .iter()
            .filter(|(ns, c)| only.is_none_or(|o| o == *ns) && c.tx.receiver_count() > 0)
            .filter_map(|(ns, c)| Some((ns.clone(), c.from?)))
            .collect()
    }

    /// Publishes `changes`, which are every change of `namespace` after
    /// seq `from` up to `to`, if the namespace's position is `from` (or
    /// unset), and moves the position to `to`. `false` if the position is
    /// elsewhere: the feed reads what lies between from the store.
    fn publish_at(
        &self,
        namespace: &str,
        from: u64,
        to: u64,
        changes: Vec<Change>,
        cursor: String,
    ) -> (bool, Option<ChangeBatch>) {
        let _order = lock(&self.order);
        let at = lock(&self.channels).get(namespace).map(|c| c.from);
        match at {
            Some(Some(p)) if p != from => return (false, None),
            None => return (true, None),
            _ => {}
        }
        let batch = self.publish(namespace, changes, cursor);
        if let Some(c) = lock(&self.channels).get_mut(namespace) {
            if c.from == Some(from) {
                c.from = Some(to);
            }
        }
        (true, batch)
    }

    /// Sends a commit's changes (in seq order) to the namespace's
    /// subscribers; `cursor` is the cursor after the last of them.
    pub fn publish(
        &self,
        namespace: &str,
        changes: Vec<Change>,
        cursor: String,
    ) -> Option<ChangeBatch> {
        if changes.is_empty() {
            return None;
        }
        let tx = lock(&self.channels).get(namespace).map(|c| c.tx.clone());
        let tx = tx?;
        if tx.receiver_count() == 0 {
            self.forget_if_unused(namespace);
            return None;
        }
        // Serialized outside the channel map's lock.
        let msg = ServerMessage::Changes { changes, cursor };
        let frame = match serde_json::to_string(&msg) {
            Ok(text) => Utf8Bytes::from(text),
            Err(e) => {
                // Cannot happen (plain JSON values); sessions would lag
                // and catch up from the store, so nothing is lost.
                tracing::error!(detail = %e, "cannot serialize a changes frame");
                return None;
            }
        };
        let ServerMessage::Changes { changes, .. } = msg else {
            unreachable!()
        };
        let sent_to = tx.receiver_count();
        let batch = Arc::new(Batch {
            changes,
            frame,
            pending: AtomicUsize::new(sent_to),
            sent_to,
            published: Instant::now(),
        });
        if tx.send(batch.clone()).is_err() {
            self.forget_if_unused(namespace);
            return None;
        }
        Some(batch)
    }

    /// Drops the channel of `namespace` if nobody listens to it any more.
    fn forget_if_unused(&self, namespace: &str) {
        let mut channels = lock(&self.channels);
        if channels
            .get(namespace)
            .is_some_and(|c| c.tx.receiver_count() == 0)
        {
            channels.remove(namespace);
        }
    }
}

/// How often the feed reads every live namespace even without a
/// notification (a lost one only delays a change by this much).
const FEED_POLL: Duration = Duration::from_secs(1);
/// Changes per page the feed reads.
const FEED_PAGE: usize = 500;

/// Live changes when other nodes commit to the store too: woken by the
/// store's notifications (and every [`FEED_POLL`]), reads each live
/// namespace's changes after its published position, by seq, and
/// publishes them. Ends when the store is dropped.
struct Feed {
    store: std::sync::Weak<dyn Store>,
    hub: std::sync::Weak<Hub>,
    max_page_bytes: usize,
}

impl Feed {
    fn run(self, wake: mpsc::Receiver<Option<String>>) {
        loop {
            let only = match wake.recv_timeout(FEED_POLL) {
                Ok(ns) => ns,
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            };
            // Wakes that queued up meanwhile are served by this round.
            let mut all = only.is_none();
            let mut some: Vec<String> = only.into_iter().collect();
            while let Ok(more) = wake.try_recv() {
                match more {
                    Some(ns) => some.push(ns),
                    None => all = true,
                }
            }
            let (Some(store), Some(hub)) = (self.store.upgrade(), self.hub.upgrade()) else {
                return;
            };
            let positions = if all {
                hub.positions(None)
            } else {
                some.sort_unstable();
                some.dedup();
                some.iter().flat_map(|ns| hub.positions(Some(ns))).collect()
            };
            for (ns, from) in positions {
                let _local = lock(&hub.local);
                if let Err(e) = self.publish_from(&*store, &hub, &ns, from) {
                    tracing::warn!(namespace = %ns, error = %e, "cannot read live changes; retrying");
                }
            }
        }
    }

    fn publish_from(
        &self,
        store: &dyn Store,
        hub: &Hub,
        ns: &str,
        mut from: u64,
    ) -> Result<(), crate::store::StoreError> {
        loop {
            let page = store.pull_page(
                ns,
                None,
                Some(&store.cursor_for(from)),
                FEED_PAGE,
                self.max_page_bytes,
            )?;
            if page.resync {
                // Compacted past this position (a horizon shorter than a
                // session's life): its sessions resync when they reconnect.
                tracing::warn!(namespace = %ns, "live position compacted away");
                return Ok(());
            }
            let Some(to) = store.cursor_seq(ns, &page.cursor)? else {
                return Ok(());
            };
            if to == from {
                return Ok(());
            }
            if !hub.publish_at(ns, from, to, page.changes, page.cursor).0 {
                // Lowered by a session meanwhile: the next round reads again.
                return Ok(());
            }
            from = to;
            if !page.more {
                return Ok(());
            }
        }
    }
}

/// Counts WebSocket connections per namespace.
pub struct Connections {
    max: usize,
    counts: Arc<Mutex<HashMap<String, usize>>>,
}

/// Holds one connection slot; releases it on drop.
pub struct ConnectionGuard {
    namespace: String,
    counts: Arc<Mutex<HashMap<String, usize>>>,
}

impl Connections {
    /// Takes a slot, or `None` if the namespace is full.
    pub fn try_acquire(&self, namespace: &str) -> Option<ConnectionGuard> {
        let mut counts = lock(&self.counts);
        let n = counts.entry(namespace.to_string()).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(ConnectionGuard {
            namespace: namespace.to_string(),
            counts: self.counts.clone(),
        })
    }

    /// Open connections of `namespace`.
    pub fn count(&self, namespace: &str) -> usize {
        lock(&self.counts).get(namespace).copied().unwrap_or(0)
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let mut counts = lock(&self.counts);
        if let Some(n) = counts.get_mut(&self.namespace) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.namespace);
            }
        }
    }
}

/// One token bucket: `rate` per second, bursts of `rate` (at least 1).
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn full(rate: f64, now: Instant) -> Self {
        Bucket {
            tokens: rate.max(1.0),
            last: now,
        }
    }

    fn take(&mut self, rate: f64, now: Instant) -> Result<(), Duration> {
        let burst = rate.max(1.0);
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * rate).min(burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::try_from_secs_f64((1.0 - self.tokens) / rate).unwrap_or(Duration::MAX))
        }
    }
}

/// (token owner, clientId) -> bucket.
type ClientBuckets = HashMap<(Arc<str>, String), Bucket>;

/// Most per-client buckets kept (two generations of half this each).
const MAX_CLIENT_BUCKETS: usize = 100_000;

/// Push rate limits: one bucket per token (whatever clientIds it uses: a
/// client picks its clientId, so only the token bounds a user) and one per
/// (token, clientId), so one device of a user cannot starve the others.
///
/// Token buckets are as many as configured tokens. Client buckets live in
/// two generations: a lookup moves a bucket into the current one; when the
/// current one is full the older is dropped whole (its clients had not
/// pushed for a generation, so their buckets were full again anyway). O(1)
/// per check, bounded memory, no scan.
pub struct RateLimiter {
    client_rate: f64,
    token_rate: f64,
    tokens: Mutex<HashMap<Arc<str>, Bucket>>,
    clients: Mutex<[ClientBuckets; 2]>,
}

impl RateLimiter {
    fn new(client_rate: f64, token_rate: f64) -> Self {
        RateLimiter {
            client_rate,
            token_rate,
            tokens: Mutex::default(),
            clients: Mutex::default(),
        }
    }

    /// Takes one push from the token's bucket, or returns how long until
    /// one is available.
    pub fn check_token(&self, owner: &Arc<str>) -> Result<(), Duration> {
        let now = Instant::now();
        let mut tokens = lock(&self.tokens);
        tokens
            .entry(owner.clone())
            .or_insert_with(|| Bucket::full(self.token_rate, now))
            .take(self.token_rate, now)
    }

    /// Takes one push from the (token, client) bucket.
    pub fn check_client(&self, owner: &Arc<str>, client: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let key = (owner.clone(), client.to_string());
        let mut gens = lock(&self.clients);
        let bucket = match gens[0].get_mut(&key) {
            Some(b) => b,
            None => {
                let b = gens[1]
                    .remove(&key)
                    .unwrap_or_else(|| Bucket::full(self.client_rate, now));
                if gens[0].len() >= MAX_CLIENT_BUCKETS / 2 {
                    gens[1] = std::mem::take(&mut gens[0]);
                }
                gens[0].entry(key).or_insert(b)
            }
        };
        bucket.take(self.client_rate, now)
    }

    /// Client buckets held (for tests).
    pub fn client_buckets(&self) -> usize {
        let gens = lock(&self.clients);
        gens[0].len() + gens[1].len()
    }
}

/// A push's share of the pending-push budget (see
/// [`crate::config::Limits::max_pending_push_bytes`]); released when the
/// push has been answered, or refused before it was queued.
pub struct PushBudget {
    _count: tokio::sync::OwnedSemaphorePermit,
    _bytes: tokio::sync::OwnedSemaphorePermit,
}

pub use crate::auth::{owner_id, Auth};

/// Counters for logs and tests.
#[derive(Debug, Default)]
pub struct Stats {
    /// WebSocket sessions that lagged the broadcast and caught up from the store.
    pub lag_catch_ups: AtomicU64,
    /// Pushes handed to the committer.
    pub pushes_queued: AtomicU64,
    /// Commits (groups of pushes, one transaction each) the committer ran.
    pub commit_groups: AtomicU64,
    /// Pushes answered 503 because the pending-push budget was spent.
    pub overloaded: AtomicU64,
}

/// Longest the committer waits for the fan-out of its previous commit before
/// it starts the next one. Waiting lets pushes pile up into one larger group
/// (one frame per session instead of several) when the fan-out is what
/// limits the server; with the fan-out done it does not wait at all.
const MAX_FAN_OUT_WAIT: Duration = Duration::from_millis(10);

/// Most pushes one group commit takes from the queue.
const MAX_GROUP_PUSHES: usize = 512;
/// A group stops taking pushes before it holds more than this many mutations.
const MAX_GROUP_MUTATIONS: usize = 20_000;
/// ...or more than this many request bytes.
const MAX_GROUP_BYTES: usize = 8 * 1024 * 1024;

/// A push waiting for the committer.
struct Job {
    namespace: String,
    owner: Arc<str>,
    req: PushRequest,
    reply: oneshot::Sender<Result<PushResponse, AppError>>,
    /// Request bytes (for the group's byte bound).
    bytes: usize,
    /// Held until the push is answered (dropped with the job).
    _budget: Option<PushBudget>,
}

/// The committer thread's side: applies queued pushes in groups.
struct Committer {
    store: Arc<dyn Store>,
    hub: Arc<Hub>,
    stats: Arc<Stats>,
    limits: ApplyLimits,
    gate: Arc<Gate>,
    /// See [`crate::config::Limits::group_commit_time`].
    group_time: Duration,
    /// Set when other nodes commit too: commits are published only at
    /// their namespace's position, and the [`Feed`] is woken for the rest.
    feed: Option<mpsc::Sender<Option<String>>>,
}

/// Test hook: while `held`, the committer does not start a commit.
#[derive(Default)]
struct Gate {
    held: Mutex<bool>,
    released: Condvar,
}

/// Returned by [`AppState::hold_commits`]; releases the committer on drop.
pub struct CommitHold(Arc<Gate>);

impl Drop for CommitHold {
    fn drop(&mut self) {
        *lock(&self.0.held) = false;
        self.0.released.notify_all();
    }
}

impl Committer {
    fn run(self, rx: mpsc::Receiver<Job>) {
        // The batches of the previous commit, and when they were published.
        let mut fanning_out: Vec<ChangeBatch> = Vec::new();
        let mut published = Instant::now();
        // Pushes received, not committed yet (bounded by the pending-push
        // budget every push holds).
        let mut pending: VecDeque<Job> = VecDeque::new();
        loop {
            if pending.is_empty() {
                // Ends when every sender (every clone of the state) is gone.
                match rx.recv() {
                    Ok(job) => pending.push_back(job),
                    Err(_) => return,
                }
            }
            let until = published + MAX_FAN_OUT_WAIT;
            for batch in fanning_out.drain(..) {
                while !batch.mostly_handled() && Instant::now() < until {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            let mut held = lock(&self.gate.held);
            while *held {
                held = self
                    .gate
                    .released
                    .wait(held)
                    .unwrap_or_else(|e| e.into_inner());
            }
            drop(held);
            while let Ok(job) = rx.try_recv() {
                pending.push_back(job);
            }
            let jobs = take_group(&mut pending);
            // A bug must not stop the thread: the group's waiting pushes
            // then answer INTERNAL (their reply senders are dropped).
            let (batches, rest) =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.commit(jobs)))
                    .unwrap_or_default();
            for job in rest.into_iter().rev() {
                pending.push_front(job);
            }
            fanning_out = batches;
            published = Instant::now();
        }
    }

    /// Commits `jobs` as one group, answers each, then publishes; returns
    /// the batches published, and the jobs the group had no time for.
    fn commit(&self, mut jobs: Vec<Job>) -> (Vec<ChangeBatch>, Vec<Job>) {
        self.stats.commit_groups.fetch_add(1, Relaxed);
        let _local = self.feed.as_ref().map(|_| lock(&self.hub.local));
        let pushes: Vec<GroupPush<'_>> = jobs
            .iter()
            .map(|j| GroupPush {
                namespace: &j.namespace,
                owner: Some(&j.owner),
                req: &j.req,
            })
            .collect();
        let started = Instant::now();
        let deadline = started + self.group_time;
        let results = self.store.push_group(&pushes, self.limits, Some(deadline));
        metrics::histogram!(crate::metrics::COMMIT_SECONDS).record(started.elapsed().as_secs_f64());
        if let Ok(r) = &results {
            metrics::histogram!(crate::metrics::COMMIT_PUSHES).record(r.len() as f64);
        }
        let results = match results {
            Ok(results) => results,
            Err(e) => {
                tracing::error!(detail = %e, pushes = jobs.len(), "group commit failed");
                let detail = e.to_string();
                for job in jobs {
                    let _ = job.reply.send(Err(AppError::Internal(detail.clone())));
                }
                return Default::default();
            }
        };
        drop(pushes);
        let rest = jobs.split_off(results.len().min(jobs.len()));
        // Answer first (every push of the group is durable now), then fan out.
        let mut live: Vec<(String, Vec<Change>)> = Vec::new();
        for (job, result) in jobs.into_iter().zip(results) {
            match result {
                Ok(PushOutcome { response, changes }) => {
                    let _ = job.reply.send(Ok(response));
                    if changes.is_empty() {
                        continue;
                    }
                    match live.iter_mut().find(|(ns, _)| *ns == job.namespace) {
                        Some((_, all)) => all.extend(changes),
                        None => live.push((job.namespace, changes)),
                    }
                }
                Err(e) => {
                    let _ = job.reply.send(Err(AppError::from(e)));
                }
            }
        }
        let batches = live
            .into_iter()
            .filter_map(|(ns, changes)| {
                let first = changes.first().map_or(0, |c| c.seq);
                let last = changes.last().map_or(0, |c| c.seq);
                let cursor = self.store.cursor_for(last);
                let Some(feed) = &self.feed else {
                    return self.hub.publish(&ns, changes, cursor);
                };
                // A push's changes follow its namespace's head: contiguous.
                let (published, batch) =
                    self.hub
                        .publish_at(&ns, first.saturating_sub(1), last, changes, cursor);
                if !published {
                    let _ = feed.send(Some(ns));
                }
                batch
            })
            .collect();
        (batches, rest)
    }
}

/// Compacts every namespace (see [`Store::compact`]) every `interval`, on
/// a thread that ends once the store is dropped.
fn spawn_compaction(store: &Arc<dyn Store>, interval: Duration) {
    let store = Arc::downgrade(store);
    let spawned = std::thread::Builder::new()
        .name("syncstore-compact".into())
        .spawn(move || loop {
            std::thread::sleep(interval);
            let Some(store) = store.upgrade() else { return };
            let namespaces = match store.namespaces() {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "compaction: cannot list namespaces");
                    continue;
                }
            };
            for ns in namespaces {
                match store.compact(&ns) {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(namespace = %ns, tombstones = n, "compacted"),
                    Err(e) => tracing::warn!(namespace = %ns, error = %e, "compaction failed"),
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot spawn the compaction thread");
    }
}

/// Takes the next group from `pending`: namespaces in turn (one push of
/// each, then the next of each...), so a namespace with many or large
/// pushes queued does not keep another's out of the group; pushes of one
/// namespace keep their order. Bounded in pushes, mutations and bytes.
fn take_group(pending: &mut VecDeque<Job>) -> Vec<Job> {
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut order: Vec<usize> = Vec::with_capacity(pending.len());
    for job in pending.iter() {
        let n = index.len();
        order.push(*index.entry(job.namespace.as_str()).or_insert(n));
    }
    let mut queues: Vec<VecDeque<Job>> = (0..index.len()).map(|_| VecDeque::new()).collect();
    drop(index);
    for (job, q) in pending.drain(..).zip(order) {
        queues[q].push_back(job);
    }
    let (mut group, mut mutations, mut bytes) = (Vec::new(), 0usize, 0usize);
    'fill: loop {
        let mut took = false;
        for q in queues.iter_mut() {
            let Some(job) = q.front() else { continue };
            let full = group.len() >= MAX_GROUP_PUSHES
                || mutations + job.req.mutations.len() > MAX_GROUP_MUTATIONS
                || bytes + job.bytes > MAX_GROUP_BYTES;
            if full && !group.is_empty() {
                break 'fill;
            }
            let job = q.pop_front().expect("front exists");
            mutations += job.req.mutations.len();
            bytes += job.bytes;
            group.push(job);
            took = true;
        }
        if !took {
            break;
        }
    }
    for q in queues {
        pending.extend(q);
    }
    group
}

/// Shared state of the server; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

/// The fields of [`AppState`].
pub struct Inner {
    /// Durable storage.
    pub store: Arc<dyn Store>,
    /// Tokens, origins, limits.
    pub config: Config,
    /// Live fan-out.
    pub hub: Arc<Hub>,
    /// WebSocket connection counts.
    pub connections: Connections,
    /// Push rate limits.
    pub rate: RateLimiter,
    /// Token -> who it is (static tokens, JWT keys); replaced on reload.
    auth: Authenticator,
    /// Pending-push budget: pushes, and their request bytes.
    pending_pushes: Arc<tokio::sync::Semaphore>,
    pending_bytes: Arc<tokio::sync::Semaphore>,
    /// Counters for logs and tests.
    pub stats: Arc<Stats>,
    /// The committer's queue: it commits pushes in groups and publishes
    /// them in seq order.
    commits: mpsc::Sender<Job>,
    /// See [`AppState::hold_commits`].
    commit_gate: Arc<Gate>,
    /// Wakes the [`Feed`] (when other nodes commit to the store too).
    feed_wake: Option<mpsc::Sender<Option<String>>>,
    shutdown: watch::Sender<bool>,
    /// Set at the shutdown deadline: sessions still open drop their socket.
    abort: watch::Sender<bool>,
    /// Open connections (the global cap, see [`crate::listen`]).
    pub slots: Arc<crate::listen::Slots>,
    /// Namespace label values of the metrics (bounded).
    pub ns_labels: crate::metrics::NamespaceLabels,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// State over `store` with `config`.
    pub fn new(store: Arc<dyn Store>, config: Config) -> Self {
        // Before anything records a metric.
        let _ = crate::metrics::handle();
        let l = &config.limits;
        let max_connections = crate::listen::effective_max_connections(l.max_connections);
        if max_connections < l.max_connections {
            tracing::warn!(
                max_connections,
                configured = l.max_connections,
                open_file_limit = crate::listen::open_file_limit(),
                "--max-connections lowered to stay below the open-file limit"
            );
        }
        let hub = Arc::new(Hub::new(l.broadcast_capacity));
        let stats = Arc::new(Stats::default());
        let commit_gate = Arc::new(Gate::default());
        let (wake, woken) = mpsc::channel::<Option<String>>();
        let feed_wake = wake.clone();
        let wake: crate::store::Wake = Arc::new(move |ns: Option<&str>| {
            let _ = wake.send(ns.map(str::to_string));
        });
        let feed = store.listen(wake);
        if feed {
            let feed = Feed {
                store: Arc::downgrade(&store),
                hub: Arc::downgrade(&hub),
                max_page_bytes: l.max_page_bytes,
            };
            std::thread::Builder::new()
                .name("syncstore-feed".into())
                .spawn(move || feed.run(woken))
                .expect("spawn the feed thread");
        }
        spawn_compaction(&store, l.compact_interval);
        let (commits, queue) = mpsc::channel();
        let committer = Committer {
            store: store.clone(),
            hub: hub.clone(),
            stats: stats.clone(),
            limits: ApplyLimits {
                max_doc_bytes: l.max_doc_bytes,
                max_push_work_bytes: l.max_push_work_bytes,
            },
            gate: commit_gate.clone(),
            feed: feed.then(|| feed_wake.clone()),
            group_time: l.group_commit_time,
        };
        std::thread::Builder::new()
            .name("syncstore-commit".into())
            .spawn(move || committer.run(queue))
            .expect("spawn the committer thread");
        let inner = Inner {
            store,
            hub,
            connections: Connections {
                max: l.max_connections_per_namespace,
                counts: Arc::default(),
            },
            rate: RateLimiter::new(l.pushes_per_second, l.token_pushes_per_second),
            auth: Authenticator::new(AuthTable::new(&config.tokens, config.jwt.clone())),
            pending_pushes: Arc::new(tokio::sync::Semaphore::new(l.max_pending_pushes)),
            pending_bytes: Arc::new(tokio::sync::Semaphore::new(l.max_pending_push_bytes)),
            stats,
            commits,
            commit_gate,
            feed_wake: feed.then_some(feed_wake),
            shutdown: watch::channel(false).0,
            abort: watch::channel(false).0,
            slots: crate::listen::Slots::new(max_connections),
            ns_labels: crate::metrics::NamespaceLabels::new(l.metrics_namespaces),
            config,
        };
        AppState(Arc::new(inner))
    }

    /// The namespace a bearer token grants.
    pub fn namespace_for(&self, token: &str) -> Option<String> {
        self.auth_for(token).map(|a| a.namespace)
    }

    /// Who a bearer token is, if it is a known static token or a valid JWT.
    pub fn auth_for(&self, token: &str) -> Option<Auth> {
        self.auth.authenticate(token)
    }

    /// Replaces the static tokens and JWT keys (SIGHUP). Requests and
    /// sessions already authenticated keep their identity.
    pub fn reload_auth(&self, auth: AuthConfig) {
        self.auth.replace(AuthTable::new(&auth.tokens, auth.jwt));
    }

    /// Pushes received or waiting for their commit (for /metrics).
    pub fn pending_pushes(&self) -> usize {
        self.config
            .limits
            .max_pending_pushes
            .saturating_sub(self.pending_pushes.available_permits())
    }

    /// True if a push would find room in the pending-push budget.
    pub fn has_push_room(&self) -> bool {
        self.pending_pushes.available_permits() > 0
            && self.pending_bytes.available_permits() >= self.config.limits.max_body_bytes
    }

    /// Takes a place for a push of about `bytes` request bytes among the
    /// pending ones (read, parsed, queued or committing), or answers 503.
    pub fn reserve_push(&self, bytes: usize) -> Result<PushBudget, AppError> {
        let busy = || {
            self.stats.overloaded.fetch_add(1, Relaxed);
            AppError::Overloaded(1)
        };
        let count = self
            .pending_pushes
            .clone()
            .try_acquire_owned()
            .map_err(|_| busy())?;
        let bytes = bytes.clamp(1, self.config.limits.max_pending_push_bytes) as u32;
        let bytes = self
            .pending_bytes
            .clone()
            .try_acquire_many_owned(bytes)
            .map_err(|_| busy())?;
        Ok(PushBudget {
            _count: count,
            _bytes: bytes,
        })
    }

    /// Tells WebSocket sessions to close (HTTP requests finish on their own).
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Resolves once shutdown has begun.
    pub async fn shutting_down(&self) {
        let mut rx = self.shutdown.subscribe();
        // An error means the sender is gone: the state is being dropped.
        let _ = rx.wait_for(|v| *v).await;
    }

    /// The shutdown deadline passed: sessions still open drop their socket.
    pub fn abort_sessions(&self) {
        self.abort.send_replace(true);
    }

    /// Resolves at the shutdown deadline (see [`AppState::abort_sessions`]).
    pub async fn aborted(&self) {
        let mut rx = self.abort.subscribe();
        let _ = rx.wait_for(|v| *v).await;
    }

    /// True once shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Applies a validated push and publishes its changes: queues it for
    /// the committer (which commits it together with every other push
    /// waiting, see the module docs) and waits for its answer. Once queued,
    /// the push commits and publishes even if the caller goes away.
    pub async fn push(
        &self,
        auth: &Auth,
        req: PushRequest,
        bytes: usize,
        budget: Option<PushBudget>,
    ) -> Result<PushResponse, AppError> {
        let (reply, answer) = oneshot::channel();
        self.stats.pushes_queued.fetch_add(1, Relaxed);
        self.commits
            .send(Job {
                namespace: auth.namespace.clone(),
                owner: auth.owner.clone(),
                req,
                reply,
                bytes,
                _budget: budget,
            })
            .map_err(|_| AppError::Internal("the committer thread is gone".into()))?;
        answer
            .await
            .map_err(|_| AppError::Internal("the committer dropped a push".into()))?
    }

    /// A session of `namespace` has caught up to `seq` from the store and
    /// listens for live changes after it.
    pub fn caught_up(&self, namespace: &str, seq: u64) {
        self.hub.caught_up(namespace, seq);
        if let Some(wake) = &self.feed_wake {
            let _ = wake.send(Some(namespace.to_string()));
        }
    }

    /// Test hook: while the returned guard lives, the committer does not
    /// start a commit (pushes queue up and then commit as one group).
    #[doc(hidden)]
    pub fn hold_commits(&self) -> CommitHold {
        *lock(&self.commit_gate.held) = true;
        CommitHold(self.commit_gate.clone())
    }
}

//! Shared server state: the store, auth, live fan-out, connection counts,
//! rate limits, and the one push path used by HTTP and WebSocket alike.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use syncstore_core::protocol::{Change, PushRequest, PushResponse};
use tokio::sync::{broadcast, watch};

use crate::config::Config;
use crate::error::AppError;
use crate::store::{ApplyLimits, Store};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A batch of changes from one commit.
pub type ChangeBatch = Arc<Vec<Change>>;

/// Per-namespace broadcast of committed changes.
pub struct Hub {
    capacity: usize,
    channels: Mutex<HashMap<String, broadcast::Sender<ChangeBatch>>>,
}

impl Hub {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            channels: Mutex::new(HashMap::new()),
        }
    }

    /// Subscribes to the live changes of `namespace`.
    pub fn subscribe(&self, namespace: &str) -> broadcast::Receiver<ChangeBatch> {
        lock(&self.channels)
            .entry(namespace.to_string())
            .or_insert_with(|| broadcast::channel(self.capacity).0)
            .subscribe()
    }

    /// Sends a commit's changes to the namespace's subscribers.
    pub fn publish(&self, namespace: &str, changes: Vec<Change>) {
        if changes.is_empty() {
            return;
        }
        let mut channels = lock(&self.channels);
        if let Some(tx) = channels.get(namespace) {
            if tx.send(Arc::new(changes)).is_err() {
                // No subscriber left: forget the channel.
                channels.remove(namespace);
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

/// Token bucket per (namespace, client id).
pub struct RateLimiter {
    rate: f64,
    buckets: Mutex<HashMap<(String, String), (f64, Instant)>>,
}

impl RateLimiter {
    /// Takes one token, or returns how long until one is available.
    pub fn check(&self, namespace: &str, client: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let burst = self.rate.max(1.0);
        let mut buckets = lock(&self.buckets);
        if buckets.len() > 100_000 {
            // Forget idle clients (their buckets are full again anyway).
            buckets.retain(|_, (_, t)| now.duration_since(*t) < Duration::from_secs(60));
        }
        let (tokens, last) = buckets
            .entry((namespace.to_string(), client.to_string()))
            .or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.rate).min(burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / self.rate))
        }
    }
}

/// Counters of rare events.
#[derive(Debug, Default)]
pub struct Stats {
    /// WebSocket sessions that lagged the broadcast and caught up from the store.
    pub lag_catch_ups: std::sync::atomic::AtomicU64,
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
    pub hub: Hub,
    /// WebSocket connection counts.
    pub connections: Connections,
    /// Push rate limits.
    pub rate: RateLimiter,
    /// Counters for logs and tests.
    pub stats: Stats,
    /// Serializes commit + publish so subscribers see commits in seq order.
    push_lock: tokio::sync::Mutex<()>,
    shutdown: watch::Sender<bool>,
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
        let l = &config.limits;
        let inner = Inner {
            store,
            hub: Hub::new(l.broadcast_capacity),
            connections: Connections {
                max: l.max_connections_per_namespace,
                counts: Arc::default(),
            },
            rate: RateLimiter {
                rate: l.pushes_per_second,
                buckets: Mutex::default(),
            },
            stats: Stats::default(),
            push_lock: tokio::sync::Mutex::new(()),
            shutdown: watch::channel(false).0,
            config,
        };
        AppState(Arc::new(inner))
    }

    /// The namespace a bearer token grants.
    pub fn namespace_for(&self, token: &str) -> Option<String> {
        self.config.tokens.get(token).cloned()
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

    /// True once shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Applies a validated push and publishes its changes. Runs in its own
    /// task so a client that disconnects mid-push cannot cancel the
    /// publish after the commit.
    pub async fn push(
        &self,
        namespace: String,
        req: PushRequest,
    ) -> Result<PushResponse, AppError> {
        let state = self.clone();
        tokio::spawn(async move {
            let _order = state.push_lock.lock().await;
            let store = state.store.clone();
            let limits = ApplyLimits {
                max_doc_bytes: state.config.limits.max_doc_bytes,
            };
            let ns = namespace.clone();
            let outcome =
                tokio::task::spawn_blocking(move || store.push(&ns, &req, limits)).await??;
            state.hub.publish(&namespace, outcome.changes);
            Ok(outcome.response)
        })
        .await?
    }
}

//! The accept loop: one hyper HTTP/1 connection per socket, with the
//! connection-level limits `axum::serve` does not have.
//!
//! - A header-read timeout ([`crate::config::Limits::header_read_timeout`]):
//!   hyper starts it whenever it waits for a request head, so it also closes
//!   keep-alive connections idle between requests. Body deadlines are
//!   enforced where bodies are read ([`crate::http::read_body`]).
//! - A global connection cap below the open-file limit. At the cap, the
//!   oldest connection that is not inside a request (a silent or slow
//!   client, or an idle keep-alive) is closed to make room; if every
//!   connection is busy, the new one is closed at once. Either is logged.
//!   A connection is inside a request from its head until its response
//!   body has been handed to the socket whole ([`Guarded`]); an evicted
//!   connection that has answered a request is shut down gracefully, so
//!   the last bytes of a response still being flushed are sent (within
//!   the body deadline) before it closes.
//! - A shutdown deadline: after the signal, connections finish their
//!   request (WebSockets close with 1001); whatever is still open when
//!   [`crate::config::Limits::shutdown_timeout`] has passed is dropped.
//!   Pushes already answered are durable (they are answered after their
//!   commit), so dropping connections loses nothing acknowledged.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tower::ServiceExt;

use crate::state::AppState;

/// File descriptors kept for everything but client sockets (the database
/// and its journal, the listener, the runtime, logs).
const RESERVED_FDS: u64 = 32;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The soft open-file limit of the process, if known.
pub fn open_file_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit only writes the struct we pass.
        let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0;
        if ok && lim.rlim_cur != libc::RLIM_INFINITY {
            #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 everywhere
            return Some(lim.rlim_cur as u64);
        }
    }
    None
}

/// The connection cap: `configured`, lowered below the open-file limit.
pub fn effective_max_connections(configured: usize) -> usize {
    match open_file_limit() {
        Some(n) => configured.min(n.saturating_sub(RESERVED_FDS).max(8) as usize),
        None => configured,
    }
}

/// One open connection.
pub struct Slot {
    id: u64,
    /// It has produced a response (evicting it then lets the response
    /// finish instead of cutting it).
    responded: AtomicBool,
    /// Requests (or a WebSocket session) in progress on it.
    busy: AtomicUsize,
    evict: Notify,
    evicted: AtomicBool,
}

/// The open connections, oldest first.
pub struct Slots {
    max: usize,
    next_id: AtomicU64,
    open: Mutex<BTreeMap<u64, Arc<Slot>>>,
    last_full_log: Mutex<Option<Instant>>,
    /// Connections closed to make room, and refused (for tests and logs).
    pub evicted: AtomicU64,
    /// Connections refused because every open one was busy.
    pub refused: AtomicU64,
}

/// Holds a connection's place in [`Slots`]; released on drop. Requests
/// carry a clone (as an extension), so a WebSocket session keeps the place
/// of the connection it was upgraded from.
pub struct ConnSlot {
    slot: Arc<Slot>,
    slots: Arc<Slots>,
}

/// Marks a connection busy (not to be evicted) while it lives.
pub struct Busy(Arc<Slot>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Relaxed);
    }
}

impl ConnSlot {
    /// The connection is inside a request (or a session) until the guard drops.
    pub fn busy(&self) -> Busy {
        self.slot.busy.fetch_add(1, Relaxed);
        Busy(self.slot.clone())
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        lock(&self.slots.open).remove(&self.slot.id);
    }
}

impl Slots {
    /// Room for `max` connections.
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Slots {
            max,
            next_id: AtomicU64::new(0),
            open: Mutex::new(BTreeMap::new()),
            last_full_log: Mutex::new(None),
            evicted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        })
    }

    /// Open connections.
    pub fn len(&self) -> usize {
        lock(&self.open).len()
    }

    /// True if no connection is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A place for a new connection, closing the oldest idle one if the cap
    /// is reached; `None` if every open connection is busy.
    pub fn acquire(self: &Arc<Self>) -> Option<Arc<ConnSlot>> {
        let mut open = lock(&self.open);
        if open.len() >= self.max {
            // At most `max` entries, and only at the cap.
            let victim = open
                .values()
                .find(|s| s.busy.load(Relaxed) == 0 && !s.evicted.load(Relaxed))
                .cloned();
            let full = open.len();
            match victim {
                Some(v) => {
                    v.evicted.store(true, Relaxed);
                    v.evict.notify_one();
                    open.remove(&v.id);
                    self.evicted.fetch_add(1, Relaxed);
                    self.log_full(full, "closing the oldest idle connection");
                }
                None => {
                    self.refused.fetch_add(1, Relaxed);
                    self.log_full(full, "every connection is busy; refusing the new one");
                    return None;
                }
            }
        }
        let slot = Arc::new(Slot {
            id: self.next_id.fetch_add(1, Relaxed),
            responded: AtomicBool::new(false),
            busy: AtomicUsize::new(0),
            evict: Notify::new(),
            evicted: AtomicBool::new(false),
        });
        open.insert(slot.id, slot.clone());
        Some(Arc::new(ConnSlot {
            slot,
            slots: self.clone(),
        }))
    }

    /// Logs the cap being reached, at most once a second.
    fn log_full(&self, open: usize, what: &str) {
        let mut last = lock(&self.last_full_log);
        if !matches!(*last, Some(t) if t.elapsed() < Duration::from_secs(1)) {
            *last = Some(Instant::now());
            tracing::warn!(
                open,
                max = self.max,
                evicted = self.evicted.load(Relaxed),
                refused = self.refused.load(Relaxed),
                "connection limit reached (--max-connections, below the open-file limit): {what}"
            );
        }
    }
}

/// Serves `router` on `listener` (see the module docs) until `shutdown`.
pub async fn run(
    listener: tokio::net::TcpListener,
    state: AppState,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = state.config.limits.clone();
    let slots = state.slots.clone();
    let flush_grace = limits.body_timeout;
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let Some(slot) = slots.acquire() else {
                        drop(stream);
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    conns.spawn(connection(stream, slot, router.clone(), http.clone(), stop_rx.clone(), flush_grace));
                }
                Err(e) => {
                    // EMFILE and the like: let connections close, don't spin.
                    tracing::warn!(error = %e, open = slots.len(), "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    drop(listener);
    tracing::info!(
        open = slots.len(),
        deadline_ms = limits.shutdown_timeout.as_millis() as u64,
        "shutting down: finishing in-flight requests"
    );
    state.begin_shutdown();
    let _ = stop_tx.send(true);
    let deadline = tokio::time::sleep(limits.shutdown_timeout);
    tokio::pin!(deadline);
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        tokio::select! {
            _ = &mut deadline => {
                tracing::warn!(open = slots.len(), "shutdown deadline passed: dropping the remaining connections");
                conns.abort_all();
                state.abort_sessions();
                break;
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            _ = tick.tick() => {
                // WebSocket sessions hold their connection's slot.
                if conns.is_empty() && slots.is_empty() {
                    break;
                }
            }
        }
    }
    while conns.join_next().await.is_some() {}
    Ok(())
}

async fn connection(
    stream: tokio::net::TcpStream,
    slot: Arc<ConnSlot>,
    router: Router,
    http: hyper::server::conn::http1::Builder,
    mut stop: watch::Receiver<bool>,
    flush_grace: Duration,
) {
    let svc_slot = slot.clone();
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        let busy = svc_slot.busy();
        req.extensions_mut().insert(svc_slot.clone());
        let router = router.clone();
        let slot = svc_slot.slot.clone();
        async move {
            let resp = router.oneshot(req.map(Body::new)).await;
            slot.responded.store(true, Relaxed);
            // Busy until the body has been handed to hyper whole.
            resp.map(|r| r.map(|body| Body::new(Guarded::new(body, busy))))
        }
    });
    let conn = http
        .serve_connection(TokioIo::new(stream), svc)
        .with_upgrades();
    tokio::pin!(conn);
    let evicted = slot.slot.evict.notified();
    tokio::pin!(evicted);
    let was_evicted = tokio::select! {
        _ = conn.as_mut() => return,
        _ = &mut evicted => true,
        _ = stop.wait_for(|s| *s) => false,
    };
    if was_evicted {
        if slot.slot.responded.load(Relaxed) {
            // Idle between requests: closes at once; flushing the end of
            // a response: finishes it first.
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(flush_grace, conn.as_mut()).await;
        }
        return;
    }
    conn.as_mut().graceful_shutdown();
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = &mut evicted => {}
    }
}

/// Largest frame a [`Guarded`] body hands to hyper: hyper buffers frames
/// until its write buffer is full, so the part of a response still unsent
/// when the body ends is about one buffer, not the whole body.
const GUARDED_FRAME: usize = 64 * 1024;

/// A response body that keeps its connection marked busy (not evictable)
/// until hyper has taken all of it, handed over in frames of at most
/// [`GUARDED_FRAME`] bytes.
struct Guarded {
    inner: Body,
    /// The rest of a data frame larger than [`GUARDED_FRAME`].
    rest: axum::body::Bytes,
    _busy: Busy,
}

impl Guarded {
    fn new(inner: Body, busy: Busy) -> Self {
        Guarded {
            inner,
            rest: axum::body::Bytes::new(),
            _busy: busy,
        }
    }

    fn piece(&mut self, mut data: axum::body::Bytes) -> hyper::body::Frame<axum::body::Bytes> {
        if data.len() > GUARDED_FRAME {
            self.rest = data.split_off(GUARDED_FRAME);
        }
        hyper::body::Frame::data(data)
    }
}

impl hyper::body::Body for Guarded {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<axum::body::Bytes>, axum::Error>>> {
        use std::task::Poll;
        if !self.rest.is_empty() {
            let rest = std::mem::take(&mut self.rest);
            return Poll::Ready(Some(Ok(self.piece(rest))));
        }
        match std::pin::Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => Poll::Ready(Some(Ok(self.piece(data)))),
                Err(frame) => Poll::Ready(Some(Ok(frame))),
            },
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        let inner = self.inner.size_hint();
        let rest = self.rest.len() as u64;
        let mut hint = hyper::body::SizeHint::new();
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + rest);
        }
        hint.set_lower(inner.lower() + rest);
        hint
    }
}

//! `/v1/ws`: hello, catch-up from the client's cursor, then live changes as
//! they commit; pushes over the socket; keep-alive.
//!
//! No gap, no duplicate: the session subscribes to the namespace's broadcast
//! *before* reading the catch-up snapshot, and drops every live change whose
//! seq it has already delivered. A session that lags the broadcast catches up
//! from the store again instead of losing changes.
//!
//! Each session is two tasks: one reads the socket and hands frames over,
//! the session itself serves them, forwards live changes and writes to the
//! socket. A commit's `changes` frame is serialized once and the same bytes
//! go to every session that is up to date; commits that queued up while a
//! session was busy are written with one flush.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Extension;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use syncstore_core::protocol::{ClientMessage, PushRequest, ServerMessage};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{broadcast, mpsc};
use tokio::time::{timeout, Instant};

use crate::error::AppError;
use crate::listen::ConnSlot;
use crate::request::{bearer_token, rate_check};
use crate::state::{AppState, Auth, ChangeBatch, ConnectionGuard};
use crate::validate;

/// Close code: the first frame was not a valid hello, or a fatal bad request.
pub const CLOSE_BAD_REQUEST: u16 = 4400;
/// Close code: no or bad token, or the token expired while the socket was open.
pub const CLOSE_UNAUTHORIZED: u16 = 4401;
/// Close code: the client stopped answering.
pub const CLOSE_IDLE: u16 = 4408;
/// Close code: the namespace has too many connections.
pub const CLOSE_TOO_MANY_CONNECTIONS: u16 = 4429;
/// Close code: server error.
pub const CLOSE_INTERNAL: u16 = 1011;
/// Close code: server shutting down.
pub const CLOSE_GOING_AWAY: u16 = 1001;

/// Changes per catch-up frame.
const CATCH_UP_PAGE: usize = 500;

/// Read buffer of a session's socket. tungstenite zero-fills up to this many
/// bytes on every read attempt, and a session's `select!` polls the socket
/// on every wake (each broadcast): the default 128 KiB cost ~128 MB of
/// memset per commit with 1,000 sessions. Larger frames still arrive whole
/// (the buffer grows to the frame), in reads of this size.
const READ_BUFFER: usize = 16 * 1024;

/// The upgrade handler. A token in the `Authorization` header or `?token=`
/// is checked before upgrading (401/429 as HTTP); otherwise the hello's token.
pub async fn upgrade(
    State(state): State<AppState>,
    slot: Option<Extension<Arc<ConnSlot>>>,
    headers: HeaderMap,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, AppError> {
    let ws = ws.map_err(|_| AppError::NotWebSocket)?;
    let query = query.map(|q| q.0).unwrap_or_default();
    let token = bearer_token(&headers)
        .map(str::to_string)
        .or_else(|| query.get("token").cloned());
    let pre = match token {
        Some(t) => {
            let auth = state.auth_for(&t).ok_or(AppError::Unauthorized)?;
            let guard = state.connections.try_acquire(&auth.namespace).ok_or(
                AppError::TooManyConnections(state.config.limits.max_connections_per_namespace),
            )?;
            Some((auth, guard))
        }
        None => None,
    };
    let max = state.config.limits.max_body_bytes;
    Ok(ws
        .read_buffer_size(READ_BUFFER)
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| async move {
            // The session keeps its connection's place under the global
            // cap, and is never evicted to make room.
            let _busy = slot.as_ref().map(|s| s.busy());
            let abort = state.clone();
            tokio::select! {
                _ = run(state, socket, pre) => {}
                _ = abort.aborted() => {}
            }
            drop(slot);
        }))
}

/// Why a session ended.
enum End {
    /// The peer went away or the socket failed.
    Gone,
    /// We close with this code and message (an error frame is sent first).
    Close(u16, &'static str, String),
    /// Shutdown or idle: close frame only.
    CloseQuiet(u16, &'static str),
}

/// Live batches forwarded in one go before the session looks at its other
/// duties (incoming frames, pings) again.
const MAX_BATCHES_PER_FLUSH: usize = 64;

async fn run(state: AppState, socket: WebSocket, pre: Option<(Auth, ConnectionGuard)>) {
    let (sink, stream) = socket.split();
    let (inbox_tx, inbox) = mpsc::channel::<Message>(16);
    let reader = tokio::spawn(read_loop(stream, inbox_tx));
    let mut session = Session {
        state,
        sink,
        inbox,
        namespace: String::new(),
        owner: Arc::from(""),
        read_only: false,
        expires_at: None,
        client_id: String::new(),
        delivered: 0,
    };
    match session.serve(pre).await {
        End::Gone => {}
        End::Close(code, err_code, message) => {
            crate::metrics::error(err_code);
            let _ = session
                .send(&ServerMessage::Error {
                    rid: None,
                    code: err_code.to_string(),
                    message: message.clone(),
                    retry_after: None,
                })
                .await;
            session.close(code, err_code).await;
        }
        End::CloseQuiet(code, reason) => {
            session.close(code, reason).await;
        }
    }
    tracing::info!(namespace = %session.namespace, client = %session.client_id, "websocket closed");
    reader.abort();
}

/// Reads the socket and hands every frame to the session, until the peer
/// closes, the socket fails or the session is gone. Polled only when the
/// socket is readable, never on the session's other wake-ups.
async fn read_loop(mut stream: SplitStream<WebSocket>, inbox: mpsc::Sender<Message>) {
    while let Some(Ok(msg)) = stream.next().await {
        let is_close = matches!(msg, Message::Close(_));
        if inbox.send(msg).await.is_err() || is_close {
            break;
        }
    }
}

struct Session {
    state: AppState,
    sink: SplitSink<WebSocket, Message>,
    /// Frames read by [`read_loop`]; closed when the socket is.
    inbox: mpsc::Receiver<Message>,
    namespace: String,
    /// The token's owner id (see [`crate::auth::Auth::owner`]).
    owner: Arc<str>,
    /// Pushes are refused (see [`crate::auth::Auth::read_only`]).
    read_only: bool,
    /// When the token expires (unix s); the session closes with 4401 then.
    expires_at: Option<u64>,
    client_id: String,
    /// Highest seq this client has been brought up to.
    delivered: u64,
}

impl Session {
    /// Writes a frame; a peer that does not drain its socket within the idle
    /// timeout is given up on.
    async fn send(&mut self, msg: &ServerMessage) -> Result<(), End> {
        let text = serde_json::to_string(msg)
            .map_err(|e| End::Close(CLOSE_INTERNAL, "INTERNAL", e.to_string()))?;
        self.send_raw(Message::text(text)).await
    }

    async fn send_raw(&mut self, msg: Message) -> Result<(), End> {
        let idle = self.state.config.limits.ws_idle_timeout;
        let sent = timeout(idle, self.sink.send(msg)).await;
        self.written(sent)
    }

    /// Buffers a frame (written at the next flush, or once the buffer is full).
    async fn feed(&mut self, msg: Message) -> Result<(), End> {
        let idle = self.state.config.limits.ws_idle_timeout;
        let fed = timeout(idle, self.sink.feed(msg)).await;
        self.written(fed)
    }

    async fn flush(&mut self) -> Result<(), End> {
        let idle = self.state.config.limits.ws_idle_timeout;
        let flushed = timeout(idle, self.sink.flush()).await;
        self.written(flushed)
    }

    fn written<E>(&self, r: Result<Result<(), E>, tokio::time::error::Elapsed>) -> Result<(), End> {
        match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(End::Gone),
            Err(_) => {
                tracing::warn!(namespace = %self.namespace, client = %self.client_id, "websocket peer not reading; dropped");
                Err(End::Gone)
            }
        }
    }

    /// Sends a close frame (bounded wait) and closes the socket.
    async fn close(&mut self, code: u16, reason: &str) {
        let frame = Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        }));
        let _ = timeout(Duration::from_secs(1), async {
            let _ = self.sink.send(frame).await;
            let _ = self.sink.close().await;
        })
        .await;
    }

    fn internal(e: impl std::fmt::Display) -> End {
        tracing::error!(detail = %e, "websocket internal error");
        End::Close(CLOSE_INTERNAL, "INTERNAL", "internal error".into())
    }

    /// Reads until a text frame (skipping control frames).
    async fn next_text(&mut self) -> Result<String, End> {
        loop {
            match self.inbox.recv().await {
                None | Some(Message::Close(_)) => return Err(End::Gone),
                Some(Message::Text(t)) => return Ok(t.to_string()),
                Some(Message::Binary(_)) => {
                    return Err(End::Close(
                        CLOSE_BAD_REQUEST,
                        "BAD_HELLO",
                        "the first frame must be a JSON text hello".into(),
                    ))
                }
                Some(_) => {}
            }
        }
    }

    async fn serve(&mut self, pre: Option<(Auth, ConnectionGuard)>) -> End {
        match self.serve_inner(pre).await {
            Ok(never) => match never {},
            Err(end) => end,
        }
    }

    async fn serve_inner(
        &mut self,
        pre: Option<(Auth, ConnectionGuard)>,
    ) -> Result<std::convert::Infallible, End> {
        let limits = self.state.config.limits.clone();
        let bad = |m: String| End::Close(CLOSE_BAD_REQUEST, "BAD_HELLO", m);

        // 1. The hello.
        let first = timeout(limits.ws_hello_timeout, self.next_text())
            .await
            .map_err(|_| bad("no hello within the hello timeout".into()))??;
        // The first frame may carry the token (keeps it out of URLs and
        // proxy logs); it is never logged.
        let (client_id, cursor, token) = match validate::decode_frame(&first) {
            Ok(ClientMessage::Hello {
                client_id,
                cursor,
                token,
            }) => (client_id, cursor, token),
            Ok(_) => return Err(bad("the first frame must be a hello".into())),
            Err(e) => return Err(bad(e.to_string())),
        };
        let unauthorized = || {
            End::Close(
                CLOSE_UNAUTHORIZED,
                "UNAUTHORIZED",
                "missing or invalid bearer token".into(),
            )
        };
        let hello_auth = match &token {
            Some(t) => Some(self.state.auth_for(t).ok_or_else(unauthorized)?),
            None => None,
        };
        let (auth, _guard) = match (pre, hello_auth) {
            (Some((a, g)), None) => (a, g),
            (Some((a, g)), Some(h)) if h.owner == a.owner => (a, g),
            (Some(_), Some(_)) | (None, None) => return Err(unauthorized()),
            (None, Some(a)) => {
                let g = self
                    .state
                    .connections
                    .try_acquire(&a.namespace)
                    .ok_or_else(|| {
                        End::Close(
                            CLOSE_TOO_MANY_CONNECTIONS,
                            "TOO_MANY_CONNECTIONS",
                            format!(
                                "too many connections for this namespace (max {})",
                                limits.max_connections_per_namespace
                            ),
                        )
                    })?;
                (a, g)
            }
        };
        let namespace = auth.namespace;
        self.owner = auth.owner;
        self.read_only = auth.read_only;
        self.expires_at = auth.expires_at;
        self.namespace = namespace;
        self.client_id = client_id;
        tracing::info!(namespace = %self.namespace, client = %self.client_id, "websocket open");
        let _gauge =
            crate::metrics::SessionGauge::open(self.state.ns_labels.label(&self.namespace));

        // 2. Subscribe first, then catch up: nothing committed in between is lost.
        let mut live = self.state.hub.subscribe(&self.namespace);
        let store = self.state.store.clone();
        self.delivered = match cursor {
            None => 0,
            Some(c) => {
                let ns = self.namespace.clone();
                match tokio::task::spawn_blocking(move || store.cursor_seq(&ns, &c))
                    .await
                    .map_err(Self::internal)?
                    .map_err(Self::internal)?
                {
                    Some(seq) => seq,
                    None => {
                        self.send(&ServerMessage::Resync {
                            cursor: syncstore_core::protocol::START_CURSOR.into(),
                        })
                        .await?;
                        0
                    }
                }
            }
        };
        let last_mutation_id = self.catch_up().await?;
        self.state.caught_up(&self.namespace, self.delivered);
        self.send(&ServerMessage::Synced {
            cursor: self.state.store.cursor_for(self.delivered),
            last_mutation_id,
            limits: Some(limits.advertised()),
        })
        .await?;

        // 3. Live.
        let mut ping = tokio::time::interval(limits.ws_ping_interval);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.tick().await;
        let mut last_seen = Instant::now();
        let shutdown = self.state.clone();
        let shutdown = shutdown.shutting_down();
        tokio::pin!(shutdown);
        let expiry = expiry_instant(self.expires_at);
        let expired = async move {
            match expiry {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(expired);
        loop {
            tokio::select! {
                _ = &mut shutdown => return Err(End::CloseQuiet(CLOSE_GOING_AWAY, "server shutting down")),
                // The client gets a new token (it reconnects on 4401).
                _ = &mut expired => {
                    tracing::info!(namespace = %self.namespace, client = %self.client_id, "token expired; websocket closed");
                    return Err(End::Close(CLOSE_UNAUTHORIZED, "UNAUTHORIZED", "the token has expired".into()));
                }
                frame = self.inbox.recv() => {
                    last_seen = Instant::now();
                    match frame {
                        None | Some(Message::Close(_)) => return Err(End::Gone),
                        Some(Message::Text(t)) => self.on_text(t.as_str()).await?,
                        Some(Message::Binary(_)) => self.send(&error_frame(None, "INVALID_JSON", "binary frames are not supported")).await?,
                        Some(Message::Ping(_) | Message::Pong(_)) => {}
                    }
                }
                batch = live.recv() => self.forward_live(batch, &mut live).await?,
                _ = ping.tick() => {
                    if last_seen.elapsed() >= limits.ws_idle_timeout {
                        tracing::info!(namespace = %self.namespace, client = %self.client_id, "websocket idle; dropped");
                        return Err(End::CloseQuiet(CLOSE_IDLE, "idle timeout"));
                    }
                    self.send_raw(Message::Ping(Default::default())).await?;
                }
            }
        }
    }

    /// Sends every change after `delivered` from the store; returns the
    /// client's last mutation id.
    async fn catch_up(&mut self) -> Result<u64, End> {
        loop {
            let store = self.state.store.clone();
            let (ns, id) = (self.namespace.clone(), self.client_id.clone());
            let owner = self.owner.clone();
            let from = store.cursor_for(self.delivered);
            let max_bytes = self.state.config.limits.max_page_bytes;
            let page = tokio::task::spawn_blocking(move || {
                let client = crate::store::PullClient {
                    id: &id,
                    owner: Some(&owner),
                };
                let page =
                    store.pull_page(&ns, Some(client), Some(&from), CATCH_UP_PAGE, max_bytes)?;
                let seq = store.cursor_seq(&ns, &page.cursor)?;
                Ok::<_, crate::store::StoreError>((page, seq))
            })
            .await
            .map_err(Self::internal)?
            .map_err(Self::internal)?;
            let (page, Some(seq)) = page else {
                return Err(Self::internal("catch-up cursor not decodable"));
            };
            if page.resync {
                return Err(Self::internal("catch-up cursor refused"));
            }
            if !page.changes.is_empty() {
                self.send(&ServerMessage::Changes {
                    changes: page.changes,
                    cursor: page.cursor,
                })
                .await?;
            }
            self.delivered = self.delivered.max(seq);
            if !page.more {
                return Ok(page.last_mutation_id);
            }
        }
    }

    /// Forwards `first` and every batch queued behind it (up to
    /// [`MAX_BATCHES_PER_FLUSH`]), then flushes once.
    async fn forward_live(
        &mut self,
        first: Result<ChangeBatch, RecvError>,
        live: &mut broadcast::Receiver<ChangeBatch>,
    ) -> Result<(), End> {
        let mut next = first;
        for _ in 0..MAX_BATCHES_PER_FLUSH {
            match next {
                Ok(batch) => self.forward(&batch).await?,
                Err(RecvError::Lagged(n)) => {
                    tracing::debug!(namespace = %self.namespace, skipped = n, "lagged; catching up from the store");
                    self.state
                        .stats
                        .lag_catch_ups
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    metrics::counter!(crate::metrics::LAG_CATCH_UPS).increment(1);
                    self.flush().await?;
                    self.catch_up().await?;
                }
                Err(RecvError::Closed) => return Err(End::Gone),
            }
            next = match live.try_recv() {
                Ok(batch) => Ok(batch),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Lagged(n)) => Err(RecvError::Lagged(n)),
                Err(TryRecvError::Closed) => Err(RecvError::Closed),
            };
        }
        self.flush().await
    }

    /// Buffers the part of `batch` this client has not had yet.
    async fn forward(&mut self, batch: &ChangeBatch) -> Result<(), End> {
        batch.handled();
        if batch.last_seq() <= self.delivered {
            return Ok(());
        }
        if batch.first_seq() > self.delivered {
            // Up to date: the frame every such session gets, serialized once.
            self.delivered = batch.last_seq();
            return self.feed(Message::Text(batch.frame.clone())).await;
        }
        // Part of it came with the catch-up: only the rest.
        let changes: Vec<_> = batch
            .changes
            .iter()
            .filter(|c| c.seq > self.delivered)
            .cloned()
            .collect();
        let Some(last) = changes.last().map(|c| c.seq) else {
            return Ok(());
        };
        self.delivered = last;
        let text = serde_json::to_string(&ServerMessage::Changes {
            changes,
            cursor: self.state.store.cursor_for(last),
        })
        .map_err(Self::internal)?;
        self.feed(Message::text(text)).await
    }

    async fn on_text(&mut self, text: &str) -> Result<(), End> {
        let msg = match validate::decode_frame(text) {
            Ok(m) => m,
            Err(e) => return self.send(&app_error_frame(None, &e)).await,
        };
        match msg {
            ClientMessage::Ping => self.send(&ServerMessage::Pong).await,
            ClientMessage::Pong => Ok(()),
            ClientMessage::Hello { .. } => {
                self.send(&error_frame(
                    None,
                    "INVALID_FIELD",
                    "type: hello was already sent",
                ))
                .await
            }
            ClientMessage::Push {
                client_id,
                mutations,
                rid,
            } => {
                let req = PushRequest {
                    client_id: client_id.unwrap_or_else(|| self.client_id.clone()),
                    mutations,
                };
                let answer = match self.push(req, text.len()).await {
                    Ok(response) => ServerMessage::PushResult { rid, response },
                    Err(e) => app_error_frame(rid, &e),
                };
                self.send(&answer).await
            }
        }
    }

    async fn push(
        &self,
        req: PushRequest,
        bytes: usize,
    ) -> Result<syncstore_core::protocol::PushResponse, AppError> {
        let state = &self.state;
        if self.read_only {
            return Err(AppError::Forbidden);
        }
        validate::push(&req, &state.config.limits)?;
        let auth = Auth {
            namespace: self.namespace.clone(),
            owner: self.owner.clone(),
            read_only: self.read_only,
            expires_at: self.expires_at,
        };
        rate_check(state, &auth, None)?;
        let budget = state.reserve_push(bytes)?;
        rate_check(state, &auth, Some(&req.client_id))?;
        let resp = state.push(&auth, req, bytes, Some(budget)).await?;
        crate::metrics::push_answered(state.ns_labels.label(&auth.namespace), "ws", &resp);
        Ok(resp)
    }
}

/// When a token expiring at `expires_at` (unix s) runs out, on the runtime's clock.
fn expiry_instant(expires_at: Option<u64>) -> Option<Instant> {
    let exp = Duration::from_secs(expires_at?);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    // Far-future tokens: a deadline a year out is as good as none.
    let left = exp
        .saturating_sub(now)
        .min(Duration::from_secs(366 * 86_400));
    Some(Instant::now() + left)
}

fn error_frame(rid: Option<String>, code: &str, message: &str) -> ServerMessage {
    ServerMessage::Error {
        rid,
        code: code.to_string(),
        message: message.to_string(),
        retry_after: None,
    }
}

fn app_error_frame(rid: Option<String>, e: &AppError) -> ServerMessage {
    if let AppError::Internal(detail) = e {
        tracing::error!(%detail, "internal error");
    }
    crate::metrics::error(e.code());
    ServerMessage::Error {
        rid,
        code: e.code().to_string(),
        message: e.to_string(),
        retry_after: e.retry_after(),
    }
}

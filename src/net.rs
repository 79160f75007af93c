//! The transports to the sync server: HTTP push and pull, and the
//! WebSocket. Bodies are the protocol types of `syncstore_core::protocol`
//! (docs/protocol.md); failures are `NetError`s that say whether trying
//! again later can help.

use crate::glue;
use js_sys::{Promise, Reflect};
use std::cell::RefCell;
use std::rc::Rc;
use syncstore_core::protocol::{
    read_limits, read_pull, read_push, ClientMessage, PullResponse, PushRequest, PushResponse,
    ServerLimits, ServerMessage,
};
use syncstore_core::sync::schedule::retry_after_ms;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{CloseEvent, MessageEvent, WebSocket};

/// Why a request to the sync server failed.
#[derive(Debug, Clone, PartialEq)]
pub enum NetError {
    /// No answer: offline, refused, or cut off. Retry with backoff.
    Network(String),
    /// The token was refused (401), or `getToken` could not give one.
    Unauthorized(String),
    /// The token may not do this (403), e.g. a push with a read-only token
    /// (`FORBIDDEN`); the code is the server's.
    Forbidden(String, String),
    /// Too many requests (429); retry after `retry_after_ms`.
    RateLimited {
        retry_after_ms: f64,
        message: String,
    },
    /// The server failed (5xx). Retry with backoff, and not before
    /// `retry_after_ms` (a 503's `Retry-After`: shutting down, overloaded).
    Server {
        status: u16,
        message: String,
        retry_after_ms: f64,
    },
    /// The server refused the request as malformed, or answered something
    /// that is not the protocol. Retrying the same request will not help.
    Protocol(String),
}

impl NetError {
    pub fn code(&self) -> &'static str {
        match self {
            NetError::Network(_) => "NETWORK",
            NetError::Unauthorized(_) => "UNAUTHORIZED",
            NetError::Forbidden(..) => "FORBIDDEN",
            NetError::RateLimited { .. } => "RATE_LIMITED",
            NetError::Server { .. } => "SERVER",
            NetError::Protocol(_) => "PROTOCOL",
        }
    }

    pub fn retryable(&self) -> bool {
        matches!(
            self,
            NetError::Network(_) | NetError::RateLimited { .. } | NetError::Server { .. }
        )
    }

    pub fn message(&self) -> String {
        match self {
            NetError::Network(m) | NetError::Unauthorized(m) | NetError::Protocol(m) => m.clone(),
            NetError::RateLimited { message, .. } | NetError::Forbidden(_, message) => {
                message.clone()
            }
            NetError::Server {
                status, message, ..
            } => format!("HTTP {status}: {message}"),
        }
    }

    /// The wait the server asked for before a retry, in ms (0: none).
    pub fn retry_after_ms(&self) -> f64 {
        match self {
            NetError::RateLimited { retry_after_ms, .. }
            | NetError::Server { retry_after_ms, .. } => *retry_after_ms,
            _ => 0.0,
        }
    }
}

impl From<NetError> for JsValue {
    fn from(e: NetError) -> JsValue {
        let code = match &e {
            NetError::Forbidden(code, _) => code.as_str(),
            _ => e.code(),
        };
        glue::make_error(code, &e.message(), e.retryable())
    }
}

/// A sync server endpoint and the credentials to use it.
#[derive(Debug, Clone, PartialEq)]
pub struct Remote {
    /// Base URL, e.g. `http://127.0.0.1:8787` (no trailing slash).
    pub url: String,
    /// The token in use: replaced when `getToken` gives a new one.
    pub token: RefCell<String>,
    pub client_id: String,
}

fn field(v: &JsValue, name: &str) -> JsValue {
    Reflect::get(v, &name.into()).unwrap_or(JsValue::UNDEFINED)
}

/// The server's error code from a JSON error body.
fn error_code(text: &str) -> Option<String> {
    let v = serde_json::from_str::<serde_json::Value>(text).ok()?;
    Some(v.get("error")?.get("code")?.as_str()?.to_owned())
}

/// The server's error message from a JSON error body, or the raw text.
fn error_message(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| {
            let e = v.get("error")?;
            Some(format!(
                "{}: {}",
                e.get("code")?.as_str()?,
                e.get("message").and_then(|m| m.as_str()).unwrap_or("")
            ))
        })
        .unwrap_or_else(|| text.chars().take(200).collect())
}

impl Remote {
    pub fn new(url: &str, token: &str, client_id: &str) -> Remote {
        Remote {
            url: url.trim_end_matches('/').to_owned(),
            token: RefCell::new(token.to_owned()),
            client_id: client_id.to_owned(),
        }
    }

    /// Sends a request now; its answer is read by [`Sent::answer`].
    fn send(&self, method: &'static str, path: &str, body: Option<String>) -> Sent {
        let url = format!("{}{path}", self.url);
        let token = self.token.borrow().clone();
        Sent {
            answer: glue::http(method, &url, &token, &self.client_id, body),
            method,
            path: path.to_owned(),
        }
    }

    /// `POST /v1/push`, sent now and answered later (a push sent while the
    /// previous answer is being stored).
    pub fn push_ahead(&self, req: &PushRequest) -> Sent {
        let body = serde_json::to_string(req).expect("protocol types serialize");
        self.send("POST", "/v1/push", Some(body))
    }

    /// `POST /v1/push`.
    pub async fn push(&self, req: &PushRequest) -> Result<PushResponse, NetError> {
        self.push_ahead(req).answer(read_push).await
    }

    /// `GET /v1/pull` from `cursor`, at most `limit` changes.
    pub async fn pull(&self, cursor: &str, limit: u32) -> Result<PullResponse, NetError> {
        let path = format!(
            "/v1/pull?cursor={}&limit={limit}",
            js_sys::encode_uri_component(cursor)
        );
        self.send("GET", &path, None).answer(read_pull).await
    }

    /// `GET /v1/config`: the server's limits (`None` if it does not say).
    pub async fn limits(&self) -> Result<Option<ServerLimits>, NetError> {
        self.send("GET", "/v1/config", None)
            .answer(read_limits)
            .await
    }

    /// The WebSocket URL (`ws:` for `http:`, `wss:` for `https:`).
    pub fn ws_url(&self) -> String {
        let rest = self.url.strip_prefix("http").unwrap_or(&self.url);
        format!("ws{rest}/v1/ws")
    }
}

/// A request on its way (the fetch started when it was made).
pub struct Sent {
    answer: Promise,
    method: &'static str,
    path: String,
}

impl Sent {
    /// Waits for the answer: the JSON body of a 2xx read by `read`
    /// (protocol.rs `read_push`, `read_pull`, `read_limits`), else the
    /// error its status means.
    pub async fn answer<T>(self, read: fn(&str) -> serde_json::Result<T>) -> Result<T, NetError> {
        let (method, path) = (self.method, self.path.clone());
        let text = self.text().await?;
        read(&text)
            .map_err(|e| NetError::Protocol(format!("{method} {path}: unexpected answer: {e}")))
    }

    /// The body of a 2xx answer, else the error its status means (one
    /// instance for every answer's type).
    async fn text(self) -> Result<String, NetError> {
        let Sent {
            answer,
            method,
            path,
        } = self;
        let res = JsFuture::from(answer)
            .await
            .map_err(|e| NetError::Network(format!("{e:?}")))?;
        let status = field(&res, "status").as_f64().unwrap_or(0.0) as u16;
        let text = field(&res, "text").as_string().unwrap_or_default();
        let retry_after = field(&res, "retryAfter").as_string();
        match status {
            200..=299 => Ok(text),
            0 => Err(NetError::Network(format!("{method} {path}: {text}"))),
            401 => Err(NetError::Unauthorized(error_message(&text))),
            403 => Err(NetError::Forbidden(
                error_code(&text).unwrap_or_else(|| "FORBIDDEN".into()),
                error_message(&text),
            )),
            429 => Err(NetError::RateLimited {
                retry_after_ms: retry_after_ms(status, retry_after.as_deref()),
                message: error_message(&text),
            }),
            500..=599 => Err(NetError::Server {
                status,
                message: error_message(&text),
                retry_after_ms: retry_after_ms(status, retry_after.as_deref()),
            }),
            _ => Err(NetError::Protocol(format!(
                "HTTP {status}: {}",
                error_message(&text)
            ))),
        }
    }
}

type FrameHandler = Closure<dyn Fn(MessageEvent)>;
type CloseHandler = Closure<dyn Fn(CloseEvent)>;
type OpenHandler = Closure<dyn Fn()>;

/// What a socket reports to its owner.
#[derive(Debug, Clone, PartialEq)]
pub enum SocketEvent {
    /// The hello was sent; frames follow.
    Open,
    /// A text frame as it arrived, still a JS string: a burst of frames
    /// (a catch-up) waits outside the wasm heap until the owner takes and
    /// parses a bounded part of it ([`SocketEvent::parsed`]).
    Text(js_sys::JsString),
    Frame(ServerMessage),
    /// A frame that is not the protocol (ignored after reporting).
    Garbled(String),
    /// The socket closed, with the close code (1006 when cut off).
    Closed(u16),
}

impl SocketEvent {
    /// A `Text` frame parsed: a `Frame`, or `Garbled` if it is not the
    /// protocol; other events as they are.
    pub fn parsed(self) -> SocketEvent {
        let SocketEvent::Text(text) = self else {
            return self;
        };
        Self::parse(&String::from(text))
    }

    /// A frame's text parsed: a `Frame`, or `Garbled`.
    pub fn parse(text: &str) -> SocketEvent {
        match serde_json::from_str::<ServerMessage>(text) {
            Ok(m) => SocketEvent::Frame(m),
            Err(e) => SocketEvent::Garbled(format!("{e}")),
        }
    }
}

/// One WebSocket connection to `/v1/ws`. Dropping it closes the socket and
/// releases its handlers; no closure outlives it.
pub struct Socket {
    ws: WebSocket,
    _handlers: (FrameHandler, CloseHandler, OpenHandler),
}

impl Socket {
    /// Connects and sends the hello as soon as the socket opens.
    pub fn open(
        remote: &Remote,
        cursor: Option<String>,
        on_event: impl Fn(SocketEvent) + 'static,
    ) -> Result<Socket, NetError> {
        let ws =
            WebSocket::new(&remote.ws_url()).map_err(|e| NetError::Network(format!("{e:?}")))?;
        let on_event = Rc::new(on_event);
        let hello = serde_json::to_string(&ClientMessage::Hello {
            client_id: remote.client_id.clone(),
            cursor,
            token: Some(remote.token.borrow().clone()),
        })
        .expect("protocol types serialize");
        let sender = Rc::new(RefCell::new(Some(ws.clone())));
        let open = {
            let on_event = on_event.clone();
            let sender = sender.clone();
            Closure::<dyn Fn()>::new(move || {
                if let Some(ws) = sender.borrow().as_ref() {
                    let _ = ws.send_with_str(&hello);
                }
                on_event(SocketEvent::Open);
            })
        };
        let frame = {
            let on_event = on_event.clone();
            Closure::<dyn Fn(MessageEvent)>::new(move |ev: MessageEvent| {
                match ev.data().dyn_into::<js_sys::JsString>() {
                    Ok(text) => on_event(SocketEvent::Text(text)),
                    Err(_) => on_event(SocketEvent::Garbled("binary frame".into())),
                }
            })
        };
        let close = {
            let on_event = on_event.clone();
            Closure::<dyn Fn(CloseEvent)>::new(move |ev: CloseEvent| {
                sender.borrow_mut().take();
                on_event(SocketEvent::Closed(ev.code()));
            })
        };
        ws.set_onopen(Some(open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(frame.as_ref().unchecked_ref()));
        ws.set_onclose(Some(close.as_ref().unchecked_ref()));
        Ok(Socket {
            ws,
            _handlers: (frame, close, open),
        })
    }

    pub fn send(&self, msg: &ClientMessage) -> Result<(), NetError> {
        let text = serde_json::to_string(msg).expect("protocol types serialize");
        self.ws
            .send_with_str(&text)
            .map_err(|e| NetError::Network(format!("{e:?}")))
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
        let _ = self.ws.close();
    }
}

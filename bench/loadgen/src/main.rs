//! `syncstore-loadgen`: the server-load row of `make bench` (issue 7, row 10).
//!
//! 1. A probe session reads the namespace's head cursor (hello, catch-up,
//!    `synced`), so that the clients below start at the head.
//! 2. `--clients` WebSocket sessions connect (token in `?token=`, so the
//!    per-namespace connection limit answers at the upgrade), each sends a
//!    hello with that cursor and waits for `synced`.
//! 3. The first `--pushers` of them push batches of `--batch` inserts over
//!    their socket (`push` frames), closed loop: the next push goes out when
//!    the previous one is answered. They stop sending after `--seconds`.
//! 4. Every document carries the time its push was sent (`sentUs`,
//!    microseconds since this process started); every client timestamps each
//!    change it receives. The fan-out latency is measured per (change,
//!    receiving client): push sent -> `changes` frame read by that client.
//!    After the pushers stop, the clients drain until every applied change
//!    reached every client (or `--drain-seconds` pass).
//!
//! Prints one JSON object on stdout (progress goes to stderr). Load
//! generator and server share the machine: the CPU time of both over the
//! push phase is reported (`--server-pid`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use syncstore_core::protocol::{
    ClientMessage, ErrorResponse, Mutation, MutationOp, MutationResult, PushRequest, PushResponse,
    ServerMessage,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Load generator for the syncstore sync server (WebSocket clients, pushers,
/// fan-out latency). Prints a JSON report on stdout.
#[derive(Debug, Parser)]
#[command(name = "syncstore-loadgen", version, about)]
struct Args {
    /// Server base URL, e.g. http://127.0.0.1:3000; several, comma-separated
    /// (nodes of one database): clients and pushers take them in turn.
    #[arg(long)]
    url: String,
    /// Bearer token.
    #[arg(long, default_value = "dev-token")]
    token: String,
    /// Connected WebSocket clients (pushers included).
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// How many of the clients push (closed loop, one push in flight each).
    #[arg(long, default_value_t = 8)]
    pushers: usize,
    /// Inserts per push.
    #[arg(long, default_value_t = 10)]
    batch: usize,
    /// Length of the push phase, in seconds.
    #[arg(long, default_value_t = 30.0)]
    seconds: f64,
    /// Connections opened at the same time while connecting.
    #[arg(long, default_value_t = 50)]
    connect_concurrency: usize,
    /// How long to wait, after the last push, for the fan-out to finish.
    #[arg(long, default_value_t = 20.0)]
    drain_seconds: f64,
    /// The server's process id, to report its CPU time over the push phase.
    #[arg(long)]
    server_pid: Option<u32>,
    /// How pushes travel: `http` (POST /v1/push on a keep-alive connection,
    /// as syncstore's client does) or `ws` (`push` frames on the pusher's socket).
    #[arg(long, default_value = "http", value_parser = ["http", "ws"])]
    push_via: String,
}

/// Log-linear histogram of microseconds: exact below 128, then 64
/// sub-buckets per power of two (at most 1.6% error).
#[derive(Clone)]
struct Hist {
    counts: Vec<u64>,
    n: u64,
    max: u64,
}

impl Default for Hist {
    fn default() -> Self {
        Hist::new()
    }
}

impl Hist {
    fn new() -> Self {
        Hist {
            counts: vec![0; 128 + 57 * 64],
            n: 0,
            max: 0,
        }
    }

    fn index(v: u64) -> usize {
        if v < 128 {
            return v as usize;
        }
        let e = 63 - v.leading_zeros() as usize; // >= 7
        let m = ((v >> (e - 6)) & 63) as usize;
        128 + (e - 7) * 64 + m
    }

    /// The middle of bucket `i`.
    fn value(i: usize) -> f64 {
        if i < 128 {
            return i as f64;
        }
        let (e, m) = ((i - 128) / 64 + 7, ((i - 128) % 64) as u64);
        let lo = (64 + m) << (e - 6);
        lo as f64 + ((1u64 << (e - 6)) as f64) / 2.0
    }

    fn record(&mut self, us: u64) {
        self.counts[Self::index(us)] += 1;
        self.n += 1;
        self.max = self.max.max(us);
    }

    fn merge(&mut self, o: &Hist) {
        for (a, b) in self.counts.iter_mut().zip(&o.counts) {
            *a += b;
        }
        self.n += o.n;
        self.max = self.max.max(o.max);
    }

    /// The `q` quantile in milliseconds.
    fn ms(&self, q: f64) -> Option<f64> {
        if self.n == 0 {
            return None;
        }
        let target = ((q * self.n as f64).ceil() as u64).clamp(1, self.n);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= target {
                return Some(round2(Self::value(i) / 1000.0));
            }
        }
        Some(round2(self.max as f64 / 1000.0))
    }

    fn summary(&self) -> Value {
        json!({
            "samples": self.n,
            "p50Ms": self.ms(0.50),
            "p95Ms": self.ms(0.95),
            "p99Ms": self.ms(0.99),
            "maxMs": round2(self.max as f64 / 1000.0),
        })
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Counters shared by every task.
#[derive(Default)]
struct Shared {
    changes: AtomicU64,
    frames: AtomicU64,
    closed: AtomicU64,
    read_errors: AtomicU64,
}

const SENT: &str = "\"sentUs\":";

/// Every `"sentUs":N` of a frame, in order. Looks for the rare `U` with
/// `str::find(char)` (memchr) and checks the key around it: the plain
/// substring search it replaces was a third of the load generator's CPU time.
fn sent_times(s: &str) -> impl Iterator<Item = u64> + '_ {
    let b = s.as_bytes();
    let mut pos = 0;
    std::iter::from_fn(move || loop {
        let u = pos + s.get(pos..)?.find('U')?;
        pos = u + 1;
        // `"sentUs":` has its `U` at offset 5.
        let Some(key) = u.checked_sub(5).and_then(|k| s.get(k..k + SENT.len())) else {
            continue;
        };
        if key != SENT {
            continue;
        }
        let start = u - 5 + SENT.len();
        let end = b[start..]
            .iter()
            .position(|c| !c.is_ascii_digit())
            .map_or(b.len(), |e| start + e);
        pos = end;
        if let Ok(sent) = s[start..end].parse::<u64>() {
            return Some(sent);
        }
    })
}

fn micros(base: Instant) -> u64 {
    base.elapsed().as_micros() as u64
}

/// Reads one client's socket until told to stop: times every change, and
/// hands everything that is not a `changes` frame to the pusher, if any.
async fn listen(
    mut rx: SplitStream<Ws>,
    shared: Arc<Shared>,
    replies: Option<mpsc::UnboundedSender<String>>,
    mut stop: watch::Receiver<bool>,
    base: Instant,
) -> Hist {
    let mut hist = Hist::new();
    loop {
        let msg = tokio::select! {
            _ = stop.changed() => break,
            m = rx.next() => m,
        };
        match msg {
            Some(Ok(Message::Text(t))) => {
                let s = t.as_str();
                if s.starts_with("{\"type\":\"changes\"") {
                    let now = micros(base);
                    let mut n = 0;
                    for sent in sent_times(s) {
                        hist.record(now.saturating_sub(sent));
                        n += 1;
                    }
                    shared.changes.fetch_add(n, Relaxed);
                    shared.frames.fetch_add(1, Relaxed);
                } else if let Some(tx) = &replies {
                    let _ = tx.send(s.to_string());
                }
            }
            Some(Ok(Message::Close(_))) | None => {
                shared.closed.fetch_add(1, Relaxed);
                break;
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                if shared.read_errors.fetch_add(1, Relaxed) == 0 {
                    eprintln!("loadgen: read error: {e}");
                }
                break;
            }
        }
    }
    hist
}

/// The clients' socket settings. tungstenite zero-fills its read buffer
/// (128 KiB by default) before every read; with 1,000 sockets woken per
/// commit that memset cost more than the reads, so the loadgen measured its
/// own overhead. 32 KiB holds a typical changes frame; larger frames take
/// several reads.
fn ws_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default().read_buffer_size(32 * 1024)
}

/// Connects one session, sends the hello, waits for `synced`; returns the
/// socket and the cursor.
async fn connect(
    ws_url: &str,
    client_id: &str,
    cursor: Option<String>,
) -> Result<(Ws, String), String> {
    let mut last = String::new();
    for attempt in 0..3 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
        }
        let fut = tokio_tungstenite::connect_async_with_config(ws_url, Some(ws_config()), true);
        let mut ws = match tokio::time::timeout(Duration::from_secs(30), fut).await {
            Ok(Ok((ws, _))) => ws,
            Ok(Err(e)) => {
                last = format!("connect: {e}");
                continue;
            }
            Err(_) => {
                last = "connect: timed out".into();
                continue;
            }
        };
        let hello = ClientMessage::Hello {
            client_id: client_id.to_string(),
            cursor: cursor.clone(),
            token: None,
        };
        let text = serde_json::to_string(&hello).map_err(|e| e.to_string())?;
        if let Err(e) = ws.send(Message::text(text)).await {
            last = format!("hello: {e}");
            continue;
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => {
                    if t.as_str().starts_with("{\"type\":\"changes\"") {
                        continue;
                    }
                    match serde_json::from_str::<ServerMessage>(t.as_str()) {
                        Ok(ServerMessage::Synced { cursor, .. }) => return Ok((ws, cursor)),
                        Ok(ServerMessage::Error { code, message, .. }) => {
                            return Err(format!("{code}: {message}"))
                        }
                        _ => {}
                    }
                }
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(e))) => {
                    last = format!("before synced: {e}");
                    break;
                }
                Ok(None) => {
                    last = "closed before synced".into();
                    break;
                }
                Err(_) => return Err("no synced within 120 s".into()),
            }
        }
    }
    Err(last)
}

/// One document of about 200 bytes of JSON, like the bench pages' documents,
/// plus the send time.
fn doc(id: &str, k: u64, sent: u64) -> serde_json::Map<String, Value> {
    const WORDS: [&str; 8] = ["buy", "milk", "call", "mom", "fix", "bug", "write", "docs"];
    let mut text = String::new();
    let mut i = k;
    while text.len() < 70 {
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(WORDS[(i % 8) as usize]);
        i = i / 8 + 3 * k + text.len() as u64;
    }
    let v = json!({
        "id": id,
        "sentUs": sent,
        "text": text,
        "done": k.is_multiple_of(3),
        "priority": k % 5,
        "createdAt": 1_700_000_000_000u64 + k * 1000,
        "tags": ["home", "work"],
        "note": "x".repeat(20 + (k % 10) as usize),
    });
    match v {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

#[derive(Default)]
struct PushOut {
    ack: Hist,
    pushes: u64,
    applied: u64,
    not_applied: u64,
    errors: BTreeMap<String, u64>,
}

/// A minimal HTTP/1.1 keep-alive client for `POST /v1/push`.
struct Http {
    stream: TcpStream,
    host: String,
    auth: String,
    buf: Vec<u8>,
}

impl Http {
    async fn open(host: &str, token: &str) -> Result<Self, String> {
        let stream = TcpStream::connect(host)
            .await
            .map_err(|e| format!("http connect: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        Ok(Http {
            stream,
            host: host.to_string(),
            auth: format!("Bearer {token}"),
            buf: Vec::with_capacity(1 << 16),
        })
    }

    /// Status, `Retry-After` and body.
    async fn post(&mut self, path: &str, body: &str) -> Result<(u16, Option<u64>, String), String> {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.host,
            self.auth,
            body.len()
        );
        let mut req = head.into_bytes();
        req.extend_from_slice(body.as_bytes());
        self.stream
            .write_all(&req)
            .await
            .map_err(|e| format!("http write: {e}"))?;
        self.buf.clear();
        let (head_end, status, len, retry) = loop {
            if let Some(p) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = std::str::from_utf8(&self.buf[..p]).map_err(|e| e.to_string())?;
                let mut lines = head.split("\r\n");
                let status: u16 = lines
                    .next()
                    .and_then(|l| l.split(' ').nth(1))
                    .and_then(|c| c.parse().ok())
                    .ok_or("http: bad status line")?;
                let (mut len, mut retry) = (None, None);
                for l in lines {
                    if let Some((k, v)) = l.split_once(':') {
                        match k.trim().to_ascii_lowercase().as_str() {
                            "content-length" => len = v.trim().parse::<usize>().ok(),
                            "retry-after" => retry = v.trim().parse::<u64>().ok(),
                            "transfer-encoding" => {
                                return Err("http: chunked answer not supported".into())
                            }
                            _ => {}
                        }
                    }
                }
                break (p + 4, status, len.ok_or("http: no content-length")?, retry);
            }
            self.read_more().await?;
        };
        while self.buf.len() < head_end + len {
            self.read_more().await?;
        }
        let body = String::from_utf8(self.buf[head_end..head_end + len].to_vec())
            .map_err(|e| e.to_string())?;
        Ok((status, retry, body))
    }

    async fn read_more(&mut self) -> Result<(), String> {
        let mut chunk = [0u8; 16384];
        let n = self
            .stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("http read: {e}"))?;
        if n == 0 {
            return Err("http: connection closed".into());
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

/// How a pusher sends.
enum Via {
    Ws(SplitSink<Ws, Message>, mpsc::UnboundedReceiver<String>),
    Http(Http),
}

/// What a push came back with.
enum Answer {
    Done(PushResponse),
    Refused(String, Option<u64>),
}

impl Via {
    async fn push(
        &mut self,
        client_id: &str,
        mutations: Vec<Mutation>,
        rid: u64,
    ) -> Result<Answer, String> {
        match self {
            Via::Ws(sink, replies) => {
                let frame = ClientMessage::Push {
                    client_id: None,
                    mutations,
                    rid: Some(rid.to_string()),
                };
                let text = serde_json::to_string(&frame).map_err(|e| e.to_string())?;
                sink.send(Message::text(text))
                    .await
                    .map_err(|e| e.to_string())?;
                let reply =
                    match tokio::time::timeout(Duration::from_secs(60), replies.recv()).await {
                        Ok(Some(r)) => r,
                        Ok(None) => return Err("socket closed".into()),
                        Err(_) => return Err("no answer within 60 s".into()),
                    };
                match serde_json::from_str::<ServerMessage>(&reply) {
                    Ok(ServerMessage::PushResult { response, .. }) => Ok(Answer::Done(response)),
                    Ok(ServerMessage::Error {
                        code, retry_after, ..
                    }) => Ok(Answer::Refused(code, retry_after)),
                    Ok(other) => Err(format!("unexpected answer {other:?}")),
                    Err(e) => Err(format!("bad answer: {e}")),
                }
            }
            Via::Http(http) => {
                let req = PushRequest {
                    client_id: client_id.to_string(),
                    mutations,
                };
                let body = serde_json::to_string(&req).map_err(|e| e.to_string())?;
                let call = http.post("/v1/push", &body);
                let (status, retry, body) =
                    match tokio::time::timeout(Duration::from_secs(60), call).await {
                        Ok(r) => r?,
                        Err(_) => return Err("no answer within 60 s".into()),
                    };
                if status == 200 {
                    return serde_json::from_str(&body)
                        .map(Answer::Done)
                        .map_err(|e| format!("bad answer: {e}"));
                }
                let code = serde_json::from_str::<ErrorResponse>(&body)
                    .map(|e| e.error.code)
                    .unwrap_or_else(|_| format!("HTTP {status}"));
                Ok(Answer::Refused(code, retry))
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn push_loop(
    who: usize,
    run: String,
    mut via: Via,
    batch: usize,
    start: Instant,
    until: Instant,
    per_second: Arc<Vec<AtomicU64>>,
    base: Instant,
) -> Result<PushOut, String> {
    let mut out = PushOut::default();
    let client_id = format!("lg{run}-{who}");
    let mut mid = 0u64;
    while Instant::now() < until {
        let sent = micros(base);
        let mutations: Vec<Mutation> = (0..batch)
            .map(|_| {
                mid += 1;
                let id = format!("lg{run}-{who}-{mid}");
                Mutation {
                    mid,
                    coll: "todos".into(),
                    op: MutationOp::Insert,
                    doc: Some(doc(&id, mid, sent).into()),
                    id,
                    patch: None,
                    base: None,
                    ts: None,
                }
            })
            .collect();
        let answer = via
            .push(&client_id, mutations, mid)
            .await
            .map_err(|e| format!("pusher {who}: {e}"))?;
        let done = micros(base);
        out.pushes += 1;
        out.ack.record(done.saturating_sub(sent));
        match answer {
            Answer::Done(response) => {
                let applied = response
                    .results
                    .iter()
                    .filter(|r| matches!(r, MutationResult::Applied { .. }))
                    .count() as u64;
                out.applied += applied;
                out.not_applied += response.results.len() as u64 - applied;
                let sec = (Instant::now() - start).as_secs() as usize;
                if let Some(c) = per_second.get(sec) {
                    c.fetch_add(applied, Relaxed);
                }
            }
            Answer::Refused(code, retry_after) => {
                if code == "RATE_LIMITED" {
                    tokio::time::sleep(Duration::from_secs(retry_after.unwrap_or(1))).await;
                }
                *out.errors.entry(code).or_default() += 1;
            }
        }
    }
    Ok(out)
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: &str, tck: f64) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    // Fields from the state (field 3): utime is field 14, stime field 15.
    let u: f64 = f.get(11)?.parse().ok()?;
    let k: f64 = f.get(12)?.parse().ok()?;
    Some((u + k) / tck)
}

/// Busy jiffies of the whole machine (every CPU), from /proc/stat.
fn machine_busy(tck: f64) -> Option<f64> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    let f: Vec<f64> = s
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    let busy = f.first()? + f.get(1)? + f.get(2)? + f.get(5)? + f.get(6)? + f.get(7)?;
    Some(busy / tck)
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if let Err(e) = run(args).await {
        eprintln!("loadgen: {e}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<(), String> {
    let base = Instant::now();
    if args.pushers == 0 || args.pushers > args.clients || args.batch == 0 {
        return Err("need 1 <= --pushers <= --clients and --batch >= 1".into());
    }
    let hosts: Vec<String> = args
        .url
        .split(',')
        .map(|u| {
            u.trim()
                .trim_end_matches('/')
                .trim_start_matches("http://")
                .trim_start_matches("ws://")
                .to_string()
        })
        .collect();
    let ws_urls: Vec<String> = hosts
        .iter()
        .map(|h| format!("ws://{h}/v1/ws?token={}", args.token))
        .collect();
    let ws_url = &ws_urls[0];
    let run = format!(
        "{:x}",
        std::process::id() as u64 * 1_000_003 + base.elapsed().as_nanos() as u64 % 1_000_003
    );
    let tck = clock_ticks();

    // 1. The head cursor.
    let (probe, head) = connect(ws_url, &format!("lg{run}-probe"), None)
        .await
        .map_err(|e| format!("probe: {e}"))?;
    drop(probe);

    // 2. The clients.
    eprintln!("loadgen: connecting {} clients...", args.clients);
    let t = Instant::now();
    let mut opened: Vec<(usize, Ws)> = futures_util::stream::iter(0..args.clients)
        .map(|i| {
            let url = ws_urls[i % ws_urls.len()].clone();
            let (head, id) = (head.clone(), format!("lg{run}-{i}"));
            async move {
                connect(&url, &id, Some(head))
                    .await
                    .map(|(ws, _)| (i, ws))
                    .map_err(|e| format!("client {i}: {e}"))
            }
        })
        .buffer_unordered(args.connect_concurrency.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let connect_seconds = t.elapsed().as_secs_f64();
    opened.sort_by_key(|(i, _)| *i);
    eprintln!(
        "loadgen: {} clients synced in {connect_seconds:.1} s",
        opened.len()
    );

    // 3. Listeners on every socket, pushers on the first ones.
    let shared = Arc::new(Shared::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut listeners = Vec::with_capacity(opened.len());
    let mut sinks = Vec::new();
    let mut pusher_parts = Vec::new();
    for (i, ws) in opened {
        let (sink, stream) = ws.split();
        let replies = if i < args.pushers && args.push_via == "ws" {
            let (tx, rx) = mpsc::unbounded_channel();
            pusher_parts.push((i, Via::Ws(sink, rx)));
            Some(tx)
        } else {
            if i < args.pushers {
                let host = &hosts[i % hosts.len()];
                pusher_parts.push((i, Via::Http(Http::open(host, &args.token).await?)));
            }
            sinks.push(sink);
            None
        };
        listeners.push(tokio::spawn(listen(
            stream,
            shared.clone(),
            replies,
            stop_rx.clone(),
            base,
        )));
    }
    let seconds = args.seconds;
    let per_second: Arc<Vec<AtomicU64>> = Arc::new(
        (0..seconds.ceil() as usize + 2)
            .map(|_| AtomicU64::new(0))
            .collect(),
    );
    let server_pid = args.server_pid.map(|p| p.to_string());
    let cpu_now = || {
        (
            server_pid.as_deref().and_then(|p| cpu_seconds(p, tck)),
            cpu_seconds("self", tck),
            machine_busy(tck),
        )
    };
    let cpu0 = cpu_now();
    eprintln!(
        "loadgen: {} pushers x {} inserts per push over {} for {seconds} s...",
        args.pushers, args.batch, args.push_via
    );
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(seconds);
    let pushers: Vec<_> = pusher_parts
        .into_iter()
        .map(|(i, via)| {
            tokio::spawn(push_loop(
                i,
                run.clone(),
                via,
                args.batch,
                start,
                until,
                per_second.clone(),
                base,
            ))
        })
        .collect();
    let mut total = PushOut::default();
    let mut failures = vec![];
    for p in pushers {
        match p.await {
            Ok(Ok(o)) => {
                total.pushes += o.pushes;
                total.applied += o.applied;
                total.not_applied += o.not_applied;
                for (k, v) in o.errors {
                    *total.errors.entry(k).or_default() += v;
                }
                total.ack.merge(&o.ack);
            }
            Ok(Err(e)) => failures.push(e),
            Err(e) => failures.push(e.to_string()),
        }
    }
    let push_seconds = start.elapsed().as_secs_f64();
    let cpu1 = cpu_now();

    // 4. Drain: wait until every applied change reached every client.
    let expected = total.applied * args.clients as u64;
    let t = Instant::now();
    while shared.changes.load(Relaxed) < expected
        && t.elapsed().as_secs_f64() < args.drain_seconds
        && (shared.closed.load(Relaxed) + shared.read_errors.load(Relaxed)) == 0
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drain_seconds = t.elapsed().as_secs_f64();
    let _ = stop_tx.send(true);
    let mut fan = Hist::new();
    for l in listeners {
        if let Ok(h) = l.await {
            fan.merge(&h);
        }
    }
    drop(sinks);
    let delivered = shared.changes.load(Relaxed);
    let rates: Vec<u64> = per_second
        .iter()
        .take(seconds.floor() as usize)
        .map(|c| c.load(Relaxed))
        .collect();
    let mut sorted = rates.clone();
    sorted.sort_unstable();
    let cpu = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => {
            json!({ "seconds": round2(b - a), "cores": round2((b - a) / push_seconds) })
        }
        _ => Value::Null,
    };
    let report = json!({
        "clients": args.clients,
        "pushers": args.pushers,
        "pushVia": args.push_via,
        "batch": args.batch,
        "connectSeconds": round2(connect_seconds),
        "pushSeconds": round2(push_seconds),
        "pushes": total.pushes,
        "mutationsApplied": total.applied,
        "mutationsNotApplied": total.not_applied,
        "mutationsPerSec": (total.applied as f64 / push_seconds).round(),
        "perSecond": {
            "min": sorted.first(),
            "median": sorted.get(sorted.len() / 2),
            "max": sorted.last(),
            "series": rates,
        },
        "pushAck": total.ack.summary(),
        "errors": total.errors,
        "failures": failures,
        "fanout": {
            "expected": expected,
            "delivered": delivered,
            "frames": shared.frames.load(Relaxed),
            "complete": delivered >= expected,
            "drainSeconds": round2(drain_seconds),
            "closedSockets": shared.closed.load(Relaxed),
            "readErrors": shared.read_errors.load(Relaxed),
            "latency": fan.summary(),
        },
        "cpu": {
            "server": cpu(cpu0.0, cpu1.0),
            "loadgen": cpu(cpu0.1, cpu1.1),
            "machine": cpu(cpu0.2, cpu1.2),
        },
    });
    println!("{report}");
    if !failures.is_empty() {
        return Err(format!("{} pusher(s) failed", failures.len()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sent_times_finds_every_key() {
        let frame = r#"{"type":"changes","changes":[{"seq":1,"doc":{"id":"a","sentUs":12,"text":"U","x":"sentUs"}},{"seq":2,"doc":{"sentUs":345}},{"doc":{"sentUs":"no"}},{"doc":{"sentUs":7}}],"cursor":"abc.2"}"#;
        assert_eq!(sent_times(frame).collect::<Vec<_>>(), [12, 345, 7]);
        assert_eq!(sent_times("U").count(), 0);
        assert_eq!(sent_times(r#""sentUs":9"#).collect::<Vec<_>>(), [9]);
    }
}

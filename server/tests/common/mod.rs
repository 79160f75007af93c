//! Test harness: the real server on 127.0.0.1 with a random port, real HTTP
//! and WebSocket clients. Every wait is bounded.

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use syncstore_server::config::{Cli, Config, Limits};
use syncstore_server::state::AppState;
use syncstore_server::store::Store;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The PostgreSQL server the suite runs against, when
/// `SYNCSTORE_TEST_STORE=postgres` (scripts/with-postgres.sh sets
/// `SYNCSTORE_TEST_PG_URL`); SQLite otherwise.
pub fn pg_url() -> Option<String> {
    match std::env::var("SYNCSTORE_TEST_STORE").as_deref() {
        Ok("postgres") => Some(
            std::env::var("SYNCSTORE_TEST_PG_URL")
                .expect("SYNCSTORE_TEST_STORE=postgres needs SYNCSTORE_TEST_PG_URL"),
        ),
        Ok("sqlite") | Err(_) => None,
        Ok(other) => panic!("SYNCSTORE_TEST_STORE={other}: sqlite or postgres"),
    }
}

/// Creates `schema` on the test PostgreSQL server (from any thread).
fn create_schema(url: &str, schema: &str) {
    let (url, sql) = (
        url.to_string(),
        format!("CREATE SCHEMA IF NOT EXISTS {schema}"),
    );
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .expect("connect to the test PostgreSQL");
            let conn = tokio::spawn(conn);
            client.batch_execute(&sql).await.expect("create the schema");
            drop(client);
            let _ = conn.await;
        });
    })
    .join()
    .unwrap();
}

/// The `--db` of the test database `db` (a SQLite path, or `:memory:` for
/// a fresh one): on PostgreSQL, a URL to a schema of its own (the same path
/// gives the same schema, so a restarted server finds its data).
pub fn db_arg(db: impl AsRef<Path>) -> String {
    let db = db.as_ref();
    let Some(url) = pg_url() else {
        return db.display().to_string();
    };
    let schema = if db.as_os_str() == ":memory:" {
        format!("t_{}", uuid_like())
    } else {
        use sha2::Digest;
        let h = sha2::Sha256::digest(db.display().to_string().as_bytes());
        format!(
            "t_{}",
            h[..10]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        )
    };
    create_schema(&url, &schema);
    format!("{url}?options=-c%20search_path%3D{schema}")
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{:x}_{}_{}",
        t,
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Opens the test store `db` (see [`db_arg`]).
pub fn open_store(db: impl AsRef<Path>) -> Arc<dyn Store> {
    open_store_with(db, syncstore_server::store::Retention::default())
}

/// [`open_store`] with `retention`.
pub fn open_store_with(
    db: impl AsRef<Path>,
    retention: syncstore_server::store::Retention,
) -> Arc<dyn Store> {
    syncstore_server::store::open(&db_arg(db), retention).expect("open store")
}

/// Upper bound for any single wait in the tests.
pub const WAIT: Duration = Duration::from_secs(10);

pub const TOKEN_A: &str = "token-a";
pub const TOKEN_B: &str = "token-b";

pub struct Server {
    pub base: String,
    pub ws_url: String,
    pub state: AppState,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

pub fn test_limits() -> Limits {
    Limits {
        pushes_per_second: 10_000.0,
        token_pushes_per_second: 100_000.0,
        ..Limits::default()
    }
}

/// Tokens A (ns-a), B (ns-b) and a2 (ns-a) with `limits`.
pub fn test_config(limits: Limits) -> Config {
    let mut config = Config {
        limits,
        ..Config::default()
    };
    config.tokens.insert(TOKEN_A.into(), "ns-a".into());
    config.tokens.insert(TOKEN_B.into(), "ns-b".into());
    config.tokens.insert("token-a2".into(), "ns-a".into());
    config
}

impl Server {
    pub async fn start() -> Server {
        Self::start_with(":memory:", test_limits()).await
    }

    pub async fn start_with(db: impl AsRef<Path>, limits: Limits) -> Server {
        Self::start_router(db, limits, syncstore_server::app).await
    }

    /// Serves the router `make` builds over the state (tests add routes).
    pub async fn start_router(
        db: impl AsRef<Path>,
        limits: Limits,
        make: impl FnOnce(AppState) -> axum::Router,
    ) -> Server {
        Self::start_config(db, test_config(limits), make).await
    }

    /// Serves `config` as the binary would build it from these flags
    /// (test push rates), on an in-memory database.
    pub async fn start_args(args: &[&str]) -> Server {
        let mut all = vec!["syncstore-server"];
        all.extend_from_slice(args);
        let mut config = Cli::parse_from(all).config().expect("valid flags");
        config.limits.pushes_per_second = 10_000.0;
        config.limits.token_pushes_per_second = 100_000.0;
        Self::start_config(":memory:", config, syncstore_server::app).await
    }

    pub async fn start_config(
        db: impl AsRef<Path>,
        config: Config,
        make: impl FnOnce(AppState) -> axum::Router,
    ) -> Server {
        Self::start_store(open_store(db), config, make).await
    }

    /// Serves `config` over `store`.
    pub async fn start_store(
        store: Arc<dyn Store>,
        config: Config,
        make: impl FnOnce(AppState) -> axum::Router,
    ) -> Server {
        let state = AppState::new(store, config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let router = make(state.clone());
        let task = tokio::spawn(syncstore_server::serve_router(
            listener,
            state.clone(),
            router,
            async {
                let _ = stopped.await;
            },
        ));
        Server {
            base: format!("http://{addr}"),
            ws_url: format!("ws://{addr}/v1/ws"),
            state,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Graceful shutdown; waits until the server has stopped.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let task = self.task.take().unwrap();
        tokio::time::timeout(WAIT, task)
            .await
            .expect("server stops in time")
            .unwrap()
            .unwrap();
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn push(&self, token: &str, body: Value) -> (u16, Value) {
        let resp = client()
            .post(self.url("/v1/push"))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        status_json(resp).await
    }

    /// Pushes and expects 200.
    pub async fn push_ok(&self, token: &str, client_id: &str, mutations: Value) -> Value {
        let (status, body) = self
            .push(
                token,
                json!({"clientId": client_id, "mutations": mutations}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    pub async fn pull(
        &self,
        token: &str,
        client_id: &str,
        cursor: &str,
        limit: usize,
    ) -> (u16, Value) {
        let resp = client()
            .get(self.url("/v1/pull"))
            .query(&[("cursor", cursor), ("limit", &limit.to_string())])
            .bearer_auth(token)
            .header("X-Client-Id", client_id)
            .send()
            .await
            .unwrap();
        status_json(resp).await
    }

    /// Pulls every page from `cursor`; returns (changes, final cursor, lastMutationId).
    pub async fn pull_all(
        &self,
        token: &str,
        client_id: &str,
        cursor: &str,
    ) -> (Vec<Value>, String, u64) {
        let mut cursor = cursor.to_string();
        let mut changes = Vec::new();
        for _ in 0..1000 {
            let (status, body) = self.pull(token, client_id, &cursor, 100).await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["resync"], false, "{body}");
            changes.extend(body["changes"].as_array().unwrap().iter().cloned());
            cursor = body["cursor"].as_str().unwrap().to_string();
            if body["more"] == false {
                return (changes, cursor, body["lastMutationId"].as_u64().unwrap());
            }
        }
        panic!("pull never finished");
    }

    pub async fn healthy(&self) -> bool {
        match client().get(self.url("/healthz")).send().await {
            Ok(r) => r.status() == 200,
            Err(_) => false,
        }
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(WAIT).build().unwrap()
}

pub async fn status_json(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("non-JSON answer ({status}): {text:?}"));
    (status, body)
}

pub fn insert(mid: u64, coll: &str, id: &str, doc: Value) -> Value {
    json!({"mid": mid, "coll": coll, "op": "insert", "id": id, "doc": doc})
}

pub fn update(mid: u64, coll: &str, id: &str, patch: Value, base: Option<u64>) -> Value {
    json!({"mid": mid, "coll": coll, "op": "update", "id": id, "patch": patch, "base": base})
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens `/v1/ws`, optionally with `Authorization: Bearer`.
pub async fn ws_connect(
    url: &str,
    header_token: Option<&str>,
) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let mut req = url.into_client_request().unwrap();
    if let Some(t) = header_token {
        req.headers_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req))
        .await
        .expect("connect in time")?;
    Ok(ws)
}

pub async fn ws_send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).await.unwrap();
}

/// Next JSON frame (control frames skipped); `None` if the socket closed.
pub async fn ws_next(ws: &mut Ws) -> Option<Value> {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("frame in time");
        match msg {
            None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return None,
            Some(Ok(Message::Text(t))) => return Some(serde_json::from_str(t.as_str()).unwrap()),
            Some(Ok(_)) => {}
        }
    }
}

/// Next frame, or the close code if the server closed.
pub async fn ws_next_or_close(ws: &mut Ws) -> Result<Value, Option<u16>> {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("frame in time");
        match msg {
            None | Some(Err(_)) => return Err(None),
            Some(Ok(Message::Close(f))) => return Err(f.map(|f| u16::from(f.code))),
            Some(Ok(Message::Text(t))) => return Ok(serde_json::from_str(t.as_str()).unwrap()),
            Some(Ok(_)) => {}
        }
    }
}

/// Connects, says hello, reads up to `synced`; returns the socket, the
/// catch-up changes and the synced frame.
pub async fn ws_hello(
    url: &str,
    token: &str,
    client_id: &str,
    cursor: Option<&str>,
) -> (Ws, Vec<Value>, Value) {
    let mut ws = ws_connect(url, None).await.unwrap();
    ws_send(
        &mut ws,
        json!({"type": "hello", "clientId": client_id, "cursor": cursor, "token": token}),
    )
    .await;
    let mut changes = Vec::new();
    loop {
        let f = ws_next(&mut ws).await.expect("socket open during catch-up");
        match f["type"].as_str().unwrap() {
            "changes" => changes.extend(f["changes"].as_array().unwrap().iter().cloned()),
            "resync" => changes.clear(),
            "synced" => return (ws, changes, f),
            other => panic!("unexpected frame {other}: {f}"),
        }
    }
}

/// Reads `changes` frames until `n` changes arrived.
pub async fn ws_collect(ws: &mut Ws, n: usize) -> Vec<Value> {
    let mut out = Vec::new();
    while out.len() < n {
        let f = ws_next(ws).await.expect("socket open");
        if f["type"] == "changes" {
            out.extend(f["changes"].as_array().unwrap().iter().cloned());
        }
    }
    out
}

pub fn seqs(changes: &[Value]) -> Vec<u64> {
    changes.iter().map(|c| c["seq"].as_u64().unwrap()).collect()
}

pub fn assert_increasing(s: &[u64]) {
    assert!(
        s.windows(2).all(|w| w[0] < w[1]),
        "not strictly increasing: {s:?}"
    );
}

/// The real binary, started on a free port of 127.0.0.1; killed on drop.
pub struct Bin {
    pub child: std::process::Child,
    pub base: String,
    /// Its stderr (logs), filled by a thread until the process exits.
    pub stderr: Arc<std::sync::Mutex<String>>,
}

impl Bin {
    /// Starts the binary with `args` (and `--listen 127.0.0.1:0 --db
    /// :memory:` unless the environment sets them) and `env` added to its
    /// environment; waits for its listening line.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Bin {
        use std::io::{BufRead, BufReader, Read};
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_syncstore-server"));
        if !env.iter().any(|(k, _)| *k == "SYNCSTORE_LISTEN") {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        if !env.iter().any(|(k, _)| *k == "SYNCSTORE_DB") {
            cmd.args(["--db", &db_arg(":memory:")]);
        }
        cmd.args(args)
            .envs(env.iter().copied())
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("spawn the server");
        let stderr = Arc::new(std::sync::Mutex::new(String::new()));
        let mut err = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line.trim().rsplit(' ').next().unwrap_or("").to_string();
        assert!(
            base.starts_with("http://127.0.0.1:"),
            "no listening line: {line:?}; stderr: {}",
            stderr.lock().unwrap()
        );
        Bin {
            child,
            base,
            stderr,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn ws_url(&self) -> String {
        format!("{}/v1/ws", self.base.replacen("http://", "ws://", 1))
    }

    /// Sends a signal (`HUP`, `TERM`) with kill(1).
    pub fn signal(&self, sig: &str) {
        let st = std::process::Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
    }

    pub fn logs(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub async fn push(&self, token: &str, body: Value) -> (u16, Value) {
        let resp = client()
            .post(self.url("/v1/push"))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        status_json(resp).await
    }
}

impl Drop for Bin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Retries `check` every 50 ms until it is true (bounded by [`WAIT`]).
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    while start.elapsed() < WAIT {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("not in time: {what}");
}

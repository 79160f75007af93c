//! The server under abuse (issue 15): panics, connection limits, shutdown
//! deadline, backpressure, clientId ownership, fairness between namespaces.
//! Every network wait is bounded; speed figures are printed, and asserted
//! only as generous correctness bounds.

mod common;

use std::time::Duration;

use axum::routing::get;
use common::*;
use serde_json::json;

#[tokio::test]
async fn a_handler_panic_answers_500_and_the_server_keeps_serving() {
    // Test build only: a route that panics, added to the real router.
    let s = Server::start_router(":memory:", test_limits(), |state| {
        syncstore_server::app(state).route(
            "/test/panic",
            get(|| async {
                if true {
                    panic!("injected by the test");
                }
                ""
            }),
        )
    })
    .await;
    for _ in 0..3 {
        let resp = client().get(s.url("/test/panic")).send().await.unwrap();
        let (st, body) = status_json(resp).await;
        assert_eq!(st, 500);
        assert_eq!(body["error"]["code"], "INTERNAL");
        assert!(
            !body.to_string().contains("injected"),
            "no internals: {body}"
        );
    }
    assert!(s.healthy().await);
    s.push_ok(TOKEN_A, "c", json!([insert(1, "t", "a", json!({}))]))
        .await;
    tokio::time::timeout(Duration::from_secs(10), s.stop())
        .await
        .unwrap();
}

#[test]
fn the_binary_refuses_out_of_range_options_with_a_clear_error() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_syncstore-server"))
        .args(["--listen", "127.0.0.1:0", "--db", ":memory:", "--dev"])
        .args(["--pushes-per-second", "1e-300"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--pushes-per-second must be between 0.001 and"),
        "{err}"
    );
}

/// The server binary: `SYNCSTORE_SERVER_BIN` (e.g. target/release/syncstore-server)
/// or the one cargo built for this test run.
fn server_bin() -> String {
    std::env::var("SYNCSTORE_SERVER_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_syncstore-server").to_string())
}

/// A server process on 127.0.0.1 (killed on drop).
struct Proc {
    child: std::process::Child,
    base: String,
    addr: String,
}

impl Proc {
    /// Starts the binary with `args` (and `ulimit -n nofile` if given).
    fn start(db: &std::path::Path, nofile: Option<u32>, args: &[&str]) -> Proc {
        use std::io::{BufRead, BufReader};
        let mut cmd = std::process::Command::new("sh");
        let ulimit = nofile.map_or(String::new(), |n| format!("ulimit -n {n} && "));
        cmd.arg("-c")
            .arg(format!("{ulimit}exec \"$0\" \"$@\""))
            .arg(server_bin())
            .args(["--listen", "127.0.0.1:0", "--db"])
            .arg(db)
            .args(["--token", "token-a:ns-a", "--token", "token-b:ns-b"])
            .args(["--token", "token-a2:ns-a"])
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null());
        let mut child = cmd.spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line.trim().rsplit(' ').next().unwrap().to_string();
        assert!(base.starts_with("http://127.0.0.1:"), "{line}");
        let addr = base.trim_start_matches("http://").to_string();
        Proc { child, base, addr }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn sigterm(&self) {
        let st = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
    }

    /// Waits up to `max` for the process to exit.
    async fn wait_exit(&mut self, max: Duration) -> Option<std::process::ExitStatus> {
        let start = std::time::Instant::now();
        while start.elapsed() < max {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Time `/healthz` takes to answer (panics past 5 s).
async fn healthz_latency(base: &str) -> Duration {
    let t = std::time::Instant::now();
    let resp = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
        .get(format!("{base}/healthz"))
        .send()
        .await
        .expect("/healthz answers");
    assert_eq!(resp.status(), 200);
    t.elapsed()
}

/// Reads `stream` until the server closes it; how long that took from `since`.
async fn closed_after(mut stream: tokio::net::TcpStream, since: std::time::Instant) -> Duration {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 4096];
    let limit = Duration::from_secs(20);
    loop {
        match tokio::time::timeout(limit, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return since.elapsed(),
            Ok(Ok(_)) => {}
            Err(_) => panic!("connection not closed within {limit:?}"),
        }
    }
}

#[tokio::test]
async fn slow_and_silent_connections_are_closed_and_healthz_answers_at_the_open_file_limit() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    // 128 open files: the connection cap goes down to 96.
    let p = Proc::start(
        &dir.path().join("db"),
        Some(128),
        &[
            "--header-read-timeout-ms",
            "1500",
            "--body-timeout-ms",
            "1500",
        ],
    );
    let start = std::time::Instant::now();
    let mut closers = Vec::new();
    for i in 0..200 {
        let mut s = tokio::net::TcpStream::connect(&p.addr).await.unwrap();
        let since = std::time::Instant::now();
        match i % 4 {
            // Silent.
            0 => {}
            // Half a request head, then nothing.
            1 => s
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                .await
                .unwrap(),
            // A keep-alive connection, idle after its request.
            2 => s
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap(),
            // A push whose body never arrives in full.
            _ => s
                .write_all(
                    b"POST /v1/push HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer token-a\r\n\
                      Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"clientId\"",
                )
                .await
                .unwrap(),
        }
        closers.push(tokio::spawn(closed_after(s, since)));
    }
    // With every slot taken by slow clients, /healthz still gets in.
    let mut worst = Duration::ZERO;
    for _ in 0..20 {
        worst = worst.max(healthz_latency(&p.base).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut slowest = Duration::ZERO;
    for c in closers {
        slowest = slowest.max(c.await.unwrap());
    }
    println!(
        "200 slow connections: slowest closed after {slowest:?}; /healthz worst {worst:?}; total {:?}",
        start.elapsed()
    );
    // Deadline 1.5 s; generous slack for a busy machine.
    assert!(slowest < Duration::from_millis(6000), "{slowest:?}");
    assert!(worst < Duration::from_secs(3), "{worst:?}");
    assert!(healthz_latency(&p.base).await < Duration::from_secs(3));
}

#[tokio::test]
async fn sigterm_with_slow_clients_exits_within_the_deadline_and_keeps_acknowledged_pushes() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let mut p = Proc::start(&db, None, &["--shutdown-timeout-ms", "2000"]);
    // Slow clients: silent sockets, a dribbled body, a WebSocket that never reads.
    let mut held = Vec::new();
    for _ in 0..10 {
        held.push(tokio::net::TcpStream::connect(&p.addr).await.unwrap());
    }
    let mut dribble = tokio::net::TcpStream::connect(&p.addr).await.unwrap();
    dribble
        .write_all(
            b"POST /v1/push HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer token-a\r\n\
              Content-Length: 100000\r\n\r\n{",
        )
        .await
        .unwrap();
    held.push(dribble);
    let (ws, _, _) = ws_hello(&format!("ws://{}/v1/ws", p.addr), TOKEN_A, "w", None).await;
    // Pushers that keep going until the server is gone.
    let url = p.url("/v1/push");
    let mut pushers = Vec::new();
    for k in 0..4 {
        let url = url.clone();
        pushers.push(tokio::spawn(async move {
            let http = client();
            let mut acked = Vec::new();
            for mid in 1..=10_000u64 {
                let id = format!("p{k}-{mid}");
                let body = json!({"clientId": format!("c{k}"), "mutations": [insert(mid, "t", &id, json!({"k": k}))]});
                match http.post(&url).bearer_auth(TOKEN_A).json(&body).send().await {
                    Ok(r) if r.status() == 200 => {
                        let v: serde_json::Value = r.json().await.unwrap();
                        if v["results"][0]["status"] == "applied" {
                            acked.push(v["results"][0]["id"].as_str().unwrap().to_string());
                        }
                    }
                    _ => break,
                }
            }
            acked
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t = std::time::Instant::now();
    p.sigterm();
    let exited = p.wait_exit(Duration::from_secs(10)).await;
    let took = t.elapsed();
    let exited = exited.expect("exits after SIGTERM");
    println!("SIGTERM with slow clients: exited {exited:?} after {took:?} (deadline 2 s)");
    assert!(exited.success(), "{exited:?}");
    assert!(took < Duration::from_secs(6), "{took:?}");
    drop((ws, held));
    let mut acked = Vec::new();
    for pusher in pushers {
        acked.extend(pusher.await.unwrap());
    }
    assert!(!acked.is_empty());
    let store = syncstore_server::store::SqliteStore::open(&db).unwrap();
    use syncstore_server::store::Store;
    let mut ids = std::collections::HashSet::new();
    let mut cursor = None;
    for _ in 0..1000 {
        let page = store.pull("ns-a", None, cursor.as_deref(), 5000).unwrap();
        ids.extend(page.changes.into_iter().map(|c| c.id));
        cursor = Some(page.cursor);
        if !page.more {
            break;
        }
    }
    let lost: Vec<_> = acked.iter().filter(|id| !ids.contains(*id)).collect();
    println!("{} acknowledged pushes, {} lost", acked.len(), lost.len());
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
}

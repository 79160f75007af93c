//! Operations, against the real binary: /metrics scraped and parsed,
//! flags from SYNCSTORE_* environment variables, request logs without
//! tokens.

mod common;

use std::collections::HashMap;

use common::*;
use serde_json::json;

/// Parses the Prometheus text format: `name{labels} value` -> value
/// (labels as written, sorted by the exporter).
fn parse(text: &str) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("series and value");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        out.insert(series.to_string(), value);
    }
    out
}

async fn scrape(bin: &Bin, token: Option<&str>) -> (u16, String, String) {
    let mut req = client().get(bin.url("/metrics"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let ctype = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ctype, resp.text().await.unwrap())
}

#[tokio::test]
async fn metrics_are_scraped_and_count_a_pushed_mutation() {
    let bin = Bin::start(&["--token", "tok-a:team-a", "--token", "tok-b:team-b"], &[]);
    let (st, ctype, text) = scrape(&bin, None).await;
    assert_eq!(st, 200);
    assert!(ctype.starts_with("text/plain"), "{ctype}");
    let before = parse(&text);
    assert_eq!(
        before.get(r#"syncstore_mutations_total{namespace="team-a",status="applied"}"#),
        None
    );

    // A live session, so the commit is fanned out.
    let (mut ws, _, _) = ws_hello(&bin.ws_url(), "tok-a", "c-ws", None).await;
    let (st, b) = bin
        .push(
            "tok-a",
            json!({"clientId": "c-1", "mutations": [
                insert(1, "t", "a", json!({})),
                insert(2, "t", "a", json!({})),
            ]}),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(ws_collect(&mut ws, 1).await.len(), 1);
    let (st, _) = bin
        .push("wrong", json!({"clientId": "c", "mutations": []}))
        .await;
    assert_eq!(st, 401);
    let resp = client()
        .get(bin.url("/v1/pull"))
        .bearer_auth("tok-b")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    eventually("the fan-out is recorded", || {
        let f = scrape(&bin, None);
        async move {
            parse(&f.await.2)
                .get("syncstore_fanout_lag_seconds_count")
                .is_some_and(|n| *n >= 1.0)
        }
    })
    .await;
    let m = parse(&scrape(&bin, None).await.2);
    let get = |k: &str| {
        m.get(k)
            .copied()
            .unwrap_or_else(|| panic!("no {k} in {m:#?}"))
    };
    assert_eq!(
        get(r#"syncstore_mutations_total{namespace="team-a",status="applied"}"#),
        1.0
    );
    assert_eq!(
        get(r#"syncstore_mutations_total{namespace="team-a",status="conflict"}"#),
        1.0
    );
    assert_eq!(
        get(r#"syncstore_pushes_total{namespace="team-a",transport="http"}"#),
        1.0
    );
    assert_eq!(get(r#"syncstore_pulls_total{namespace="team-b"}"#), 1.0);
    assert_eq!(
        get(r#"syncstore_websocket_sessions{namespace="team-a"}"#),
        1.0
    );
    assert_eq!(get(r#"syncstore_errors_total{code="UNAUTHORIZED"}"#), 1.0);
    assert!(get("syncstore_commit_seconds_count") >= 1.0);
    assert!(get("syncstore_commit_seconds_sum") > 0.0);
    assert!(get(r#"syncstore_commit_seconds_bucket{le="+Inf"}"#) >= 1.0);
    assert!(get("syncstore_connections") >= 1.0);
    assert_eq!(get("syncstore_pending_pushes"), 0.0);

    drop(ws);
    eventually("the session gauge goes down", || {
        let f = scrape(&bin, None);
        async move {
            parse(&f.await.2).get(r#"syncstore_websocket_sessions{namespace="team-a"}"#)
                == Some(&0.0)
        }
    })
    .await;
}

#[tokio::test]
async fn flags_are_read_from_syncstore_environment_variables() {
    let bin = Bin::start(
        &[],
        &[
            ("SYNCSTORE_LISTEN", "127.0.0.1:0"),
            ("SYNCSTORE_DB", ":memory:"),
            ("SYNCSTORE_TOKEN", "env-token:env-ns"),
            ("SYNCSTORE_MAX_MUTATIONS_PER_PUSH", "2"),
            ("SYNCSTORE_METRICS_NAMESPACES", "0"),
            ("SYNCSTORE_METRICS_TOKEN", "metrics-secret"),
            ("SYNCSTORE_DEV", "true"),
        ],
    );
    let three: Vec<_> = (1..=3)
        .map(|i| insert(i, "t", &format!("d{i}"), json!({})))
        .collect();
    let (st, b) = bin
        .push("env-token", json!({"clientId": "c", "mutations": three}))
        .await;
    assert_eq!(
        (st, b["error"]["code"].clone()),
        (413, json!("TOO_MANY_MUTATIONS"))
    );
    let (st, _) = bin
        .push(
            "env-token",
            json!({"clientId": "c", "mutations": &three[..2]}),
        )
        .await;
    assert_eq!(st, 200);
    let (st, _) = bin
        .push("dev-token", json!({"clientId": "c", "mutations": []}))
        .await;
    assert_eq!(st, 200, "SYNCSTORE_DEV=true enables the dev token");
    // /metrics wants its token; namespaces are not labelled (0).
    assert_eq!(scrape(&bin, None).await.0, 401);
    assert_eq!(scrape(&bin, Some("env-token")).await.0, 401);
    let (st, _, text) = scrape(&bin, Some("metrics-secret")).await;
    assert_eq!(st, 200);
    let m = parse(&text);
    assert_eq!(
        m.get(r#"syncstore_mutations_total{namespace="_other",status="applied"}"#),
        Some(&2.0),
        "{text}"
    );
    assert!(!text.contains("env-ns"));
    // The secrets given through the environment are not shown by --help.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_syncstore-server"))
        .arg("--help")
        .env("SYNCSTORE_TOKEN", "env-token:env-ns")
        .env("SYNCSTORE_METRICS_TOKEN", "metrics-secret")
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(help.contains("SYNCSTORE_MAX_MUTATIONS_PER_PUSH"));
    assert!(!help.contains("env-token") && !help.contains("metrics-secret"));
    // A flag on the command line wins over the environment.
    let bin2 = Bin::start(
        &["--max-mutations-per-push", "3"],
        &[
            ("SYNCSTORE_TOKEN", "env-token:env-ns"),
            ("SYNCSTORE_MAX_MUTATIONS_PER_PUSH", "2"),
        ],
    );
    let (st, _) = bin2
        .push("env-token", json!({"clientId": "c", "mutations": three}))
        .await;
    assert_eq!(st, 200);
}

#[tokio::test]
async fn request_logs_name_the_request_and_never_the_token() {
    let bin = Bin::start(&["--token", "sekret-tok-123:team"], &[]);
    let resp = client()
        .get(bin.url("/v1/pull?cursor=0"))
        .bearer_auth("sekret-tok-123")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // Not an upgrade (400), but the token is in the query.
    let resp = client()
        .get(bin.url("/v1/ws?token=sekret-tok-123"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let (mut ws, _, _) = ws_hello(&bin.ws_url(), "sekret-tok-123", "c", None).await;
    ws_send(&mut ws, json!({"type": "ping"})).await;
    assert_eq!(ws_next(&mut ws).await.unwrap()["type"], "pong");
    eventually("both requests are logged", || {
        let logs = bin.logs();
        async move {
            logs.contains("/v1/pull?cursor=0") && logs.contains("/v1/ws?token=[redacted]")
        }
    })
    .await;
    let logs = bin.logs();
    assert!(logs.contains("status=200"), "{logs}");
    assert!(!logs.contains("sekret-tok-123"), "{logs}");
}

#[tokio::test]
async fn limits_are_advertised_in_v1_config_and_the_synced_frame() {
    let bin = Bin::start(
        &[
            "--token",
            "tok:team",
            "--max-doc-bytes",
            "1000",
            "--max-mutations-per-push",
            "7",
            "--max-body-bytes",
            "65536",
        ],
        &[],
    );
    let want = json!({"maxDocBytes": 1000, "maxMutationsPerPush": 7, "maxBodyBytes": 65536});
    // No token needed.
    let resp = client().get(bin.url("/v1/config")).send().await.unwrap();
    let (st, body) = status_json(resp).await;
    assert_eq!(st, 200);
    assert_eq!(body, json!({"protocol": 1, "limits": want}));
    // The wire type of the core reads it.
    let limits: syncstore_core::protocol::ServerLimits =
        serde_json::from_value(body["limits"].clone()).unwrap();
    assert_eq!(limits.max_mutations_per_push, 7);
    let (_, _, synced) = ws_hello(&bin.ws_url(), "tok", "c", None).await;
    assert_eq!(synced["limits"], want, "{synced}");
    // Clients that do not know the field still read the frame.
    let msg: syncstore_core::protocol::ServerMessage = serde_json::from_value(synced).unwrap();
    assert!(matches!(
        msg,
        syncstore_core::protocol::ServerMessage::Synced { .. }
    ));
}

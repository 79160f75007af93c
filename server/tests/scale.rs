//! Many server nodes on one PostgreSQL (issue 17). Needs PostgreSQL: run by
//! `make test-native` through scripts/with-postgres.sh with
//! `SYNCSTORE_TEST_STORE=postgres` (this target has `test = false`: plain
//! `cargo test` skips it, `cargo test --test scale` runs it).
//!
//! - The reverse-commit-order race: a push that took seq N and commits
//!   after a push that took N+1, with a puller in between: no change skipped.
//! - Three nodes, clients spread over them: writes through any node reach
//!   every client (fan-out p50/p99 printed).
//! - A node SIGKILLed during a randomized run of 1,200 mutations from 12
//!   clients: no acknowledged mutation lost, none applied twice, every
//!   client converges to the database's state, document by document.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};
use syncstore_core::protocol::{PushRequest, START_CURSOR};
use syncstore_server::store::{ApplyLimits, PgStore, Retention, Store};
use tokio_tungstenite::tungstenite::Message;

const LIMITS: ApplyLimits = ApplyLimits {
    max_doc_bytes: 64 * 1024,
    max_push_work_bytes: usize::MAX,
};

fn url() -> String {
    pg_url().expect("tests/scale.rs runs on PostgreSQL (SYNCSTORE_TEST_STORE=postgres)");
    db_arg(":memory:")
}

fn req(client: &str, mutations: Value) -> PushRequest {
    PushRequest {
        client_id: client.into(),
        mutations: serde_json::from_value(mutations).unwrap(),
    }
}

/// Sessions of `app` waiting for a lock.
async fn lock_waiters(admin: &tokio_postgres::Client, app: &str) -> i64 {
    admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'",
            &[&app],
        )
        .await
        .unwrap()
        .get(0)
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

/// Two pushes whose transactions would commit in the reverse order of their
/// seqs (the first is held on a row lock after it took its seq), a pull in
/// between, then a pull from its cursor: both changes are seen.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reverse_commit_order_skips_no_change() {
    let app = format!("race{}", std::process::id());
    let url = format!("{}&application_name={app}", url());
    let node_a = Arc::new(PgStore::open(&url, Retention::default()).unwrap());
    let node_b = Arc::new(PgStore::open(&url, Retention::default()).unwrap());
    let blocking = |s: &Arc<PgStore>, r: PushRequest| {
        let s = s.clone();
        tokio::task::spawn_blocking(move || s.push("n", &r, LIMITS).unwrap())
    };
    let first = blocking(
        &node_a,
        req(
            "a",
            json!([{"mid": 1, "coll": "t", "op": "insert", "id": "x", "doc": {"v": 1}}]),
        ),
    )
    .await
    .unwrap();
    let after_first = node_a.cursor_for(first.changes[0].seq);

    // Hold x's row: push A takes its seq, then waits on the row.
    let mut locker = connect(&url).await;
    let hold = locker.transaction().await.unwrap();
    hold.execute(
        "SELECT 1 FROM docs WHERE ns = 'n' AND id = 'x' FOR UPDATE",
        &[],
    )
    .await
    .unwrap();
    let admin = connect(&url).await;
    let a = blocking(
        &node_a,
        req(
            "a",
            json!([{"mid": 2, "coll": "t", "op": "update", "id": "x", "patch": {"v": 2}}]),
        ),
    );
    let start = Instant::now();
    while lock_waiters(&admin, &app).await < 1 {
        assert!(start.elapsed() < WAIT, "push A never waited on the row");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Push B through the other node: a naive sequence gives it the next
    // seq and lets it commit first; the namespace's order makes it wait.
    let b = blocking(
        &node_b,
        req(
            "b",
            json!([{"mid": 1, "coll": "t", "op": "insert", "id": "y", "doc": {"v": 1}}]),
        ),
    );
    while !b.is_finished() && lock_waiters(&admin, &app).await < 2 {
        assert!(
            start.elapsed() < WAIT,
            "push B neither committed nor waited"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let puller = node_b.clone();
    let c = after_first.clone();
    let between = tokio::task::spawn_blocking(move || puller.pull("n", None, Some(&c), 100))
        .await
        .unwrap()
        .unwrap();
    hold.commit().await.unwrap();
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    let puller = node_a.clone();
    let c = between.cursor.clone();
    let after = tokio::task::spawn_blocking(move || puller.pull("n", None, Some(&c), 100))
        .await
        .unwrap()
        .unwrap();
    let seen: Vec<(String, u64)> = between
        .changes
        .iter()
        .chain(&after.changes)
        .map(|c| (c.id.clone(), c.seq))
        .collect();
    for pushed in [&a, &b] {
        let c = &pushed.changes[0];
        assert!(
            seen.contains(&(c.id.clone(), c.seq)),
            "change {}@{} skipped: pulled {seen:?} (between: {:?})",
            c.id,
            c.seq,
            between.changes.iter().map(|c| c.seq).collect::<Vec<_>>()
        );
    }
    assert!(a.changes[0].seq < b.changes[0].seq);
    drop(locker);
}

/// Starts a node on `url`.
fn node(url: &str) -> Bin {
    Bin::start(
        &["--token", "token-a:ns-a", "--pushes-per-second", "100000"],
        &[("SYNCSTORE_DB", url)],
    )
}

/// A WebSocket client's replica: (coll, id) -> document.
type Replica = BTreeMap<(String, String), Value>;

fn apply_changes(replica: &mut Replica, frame: &Value) {
    for c in frame["changes"].as_array().unwrap() {
        let key = (
            c["coll"].as_str().unwrap().to_string(),
            c["id"].as_str().unwrap().to_string(),
        );
        if c["op"] == "put" {
            replica.insert(key, c["doc"].clone());
        } else {
            replica.remove(&key);
        }
    }
}

/// The namespace's documents as a node serves them.
async fn db_state(base: &str) -> Replica {
    let mut cursor = START_CURSOR.to_string();
    let mut out = Replica::new();
    for _ in 0..1000 {
        let resp = client()
            .get(format!("{base}/v1/pull"))
            .query(&[("cursor", cursor.as_str()), ("limit", "1000")])
            .bearer_auth(TOKEN_A)
            .send()
            .await
            .unwrap();
        let (status, body) = status_json(resp).await;
        assert_eq!(status, 200, "{body}");
        apply_changes(&mut out, &body);
        cursor = body["cursor"].as_str().unwrap().to_string();
        if body["more"] == false {
            return out;
        }
    }
    panic!("pull never ended");
}

/// A native client: a WebSocket to one node, its replica and cursor; it
/// moves to another node when its node goes away.
struct Client {
    id: String,
    nodes: Arc<Vec<String>>,
    alive: Arc<Vec<AtomicBool>>,
    node: usize,
    ws: Option<Ws>,
    cursor: Option<String>,
    replica: Replica,
    reconnects: usize,
}

impl Client {
    fn new(id: String, nodes: Arc<Vec<String>>, alive: Arc<Vec<AtomicBool>>, node: usize) -> Self {
        Client {
            id,
            nodes,
            alive,
            node,
            ws: None,
            cursor: None,
            replica: Replica::new(),
            reconnects: 0,
        }
    }

    /// Connects (to its node, or the next live one) and catches up.
    async fn connect(&mut self) {
        for attempt in 0..60 {
            if !self.alive[self.node].load(SeqCst) || attempt > 0 {
                self.node = (self.node + 1) % self.nodes.len();
            }
            if !self.alive[self.node].load(SeqCst) {
                continue;
            }
            let Ok(mut ws) = ws_connect(&self.nodes[self.node], None).await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            ws_send(
                &mut ws,
                json!({"type": "hello", "clientId": self.id, "cursor": self.cursor, "token": TOKEN_A}),
            )
            .await;
            self.ws = Some(ws);
            // Catch-up until synced (a failure here: try the next node).
            loop {
                match self.next().await {
                    Some(f) if f["type"] == "synced" => return,
                    Some(_) => {}
                    None => break,
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{}: no node to connect to", self.id);
    }

    /// The next frame that is not a change (changes are applied); `None`
    /// when the socket is gone.
    async fn next(&mut self) -> Option<Value> {
        let ws = self.ws.as_mut()?;
        loop {
            let msg = match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
                Ok(m) => m,
                Err(_) => panic!("no frame in 30 s"),
            };
            let f: Value = match msg {
                Some(Ok(Message::Text(t))) => serde_json::from_str(t.as_str()).unwrap(),
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                    self.ws = None;
                    return None;
                }
                Some(Ok(_)) => continue,
            };
            match f["type"].as_str().unwrap() {
                "changes" => {
                    apply_changes(&mut self.replica, &f);
                    self.cursor = f["cursor"].as_str().map(str::to_string);
                }
                "resync" => {
                    self.replica.clear();
                    self.cursor = None;
                }
                "synced" => {
                    self.cursor = f["cursor"].as_str().map(str::to_string);
                    return Some(f);
                }
                _ => return Some(f),
            }
        }
    }

    /// Pushes `mutations` until a node answers (resending the same mids
    /// after a reconnect); returns the response.
    async fn push(&mut self, rid: &str, mutations: &Value) -> Value {
        loop {
            if self.ws.is_none() {
                self.reconnects += 1;
                self.connect().await;
            }
            let frame =
                json!({"type": "push", "rid": rid, "clientId": self.id, "mutations": mutations});
            let sent = {
                use futures_util::SinkExt;
                let ws = self.ws.as_mut().unwrap();
                ws.send(Message::text(frame.to_string())).await.is_ok()
            };
            if !sent {
                self.ws = None;
                continue;
            }
            loop {
                match self.next().await {
                    Some(f) if f["type"] == "pushResult" && f["rid"] == rid => return f,
                    Some(f) if f["type"] == "error" => panic!("{}: {f}", self.id),
                    Some(_) => {}
                    None => break,
                }
            }
        }
    }

    /// Reads until the replica equals `want` (reconnecting if needed).
    async fn converge(&mut self, want: &Replica) {
        let start = Instant::now();
        while &self.replica != want {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{} did not converge: {} docs, want {}",
                self.id,
                self.replica.len(),
                want.len()
            );
            if self.ws.is_none() {
                self.connect().await;
                continue;
            }
            let ws = self.ws.as_mut().unwrap();
            match tokio::time::timeout(Duration::from_millis(500), ws.next()).await {
                Err(_) => {}
                Ok(Some(Ok(Message::Text(t)))) => {
                    let f: Value = serde_json::from_str(t.as_str()).unwrap();
                    if f["type"] == "changes" {
                        apply_changes(&mut self.replica, &f);
                        self.cursor = f["cursor"].as_str().map(str::to_string);
                    }
                }
                Ok(Some(Ok(_))) => {}
                Ok(_) => self.ws = None,
            }
        }
    }
}

/// A small deterministic generator (the run is the same every time).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_fan_out_and_survive_a_sigkill() {
    let url = url();
    let mut nodes: Vec<Bin> = (0..3).map(|_| node(&url)).collect();
    let ws_urls = Arc::new(nodes.iter().map(Bin::ws_url).collect::<Vec<_>>());
    let bases: Vec<String> = nodes.iter().map(|n| n.base.clone()).collect();
    let alive = Arc::new((0..3).map(|_| AtomicBool::new(true)).collect::<Vec<_>>());

    // Shared documents every client patches (one field each).
    let (status, body) = nodes[0]
        .push(
            TOKEN_A,
            json!({"clientId": "setup", "mutations": (0..5).map(|k| insert(k + 1, "s", &format!("s{k}"), json!({}))).collect::<Vec<_>>()}),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // 1. Fan-out: 9 listeners, 3 per node; 30 writes through the nodes in turn.
    let received: Arc<Mutex<HashMap<String, Vec<Instant>>>> = Arc::default();
    let mut listeners = Vec::new();
    for i in 0..9 {
        let (ws, ..) = ws_hello(&ws_urls[i % 3], TOKEN_A, &format!("l{i}"), None).await;
        let received = received.clone();
        listeners.push(tokio::spawn(async move {
            let mut ws = ws;
            let mut got = 0;
            while got < 30 {
                let f = ws_next(&mut ws).await.expect("listener socket open");
                if f["type"] != "changes" {
                    continue;
                }
                let now = Instant::now();
                for c in f["changes"].as_array().unwrap() {
                    let id = c["id"].as_str().unwrap();
                    if id.starts_with("f") {
                        received
                            .lock()
                            .unwrap()
                            .entry(id.to_string())
                            .or_default()
                            .push(now);
                        got += 1;
                    }
                }
            }
        }));
    }
    let mut sent = HashMap::new();
    for w in 0..30u64 {
        let id = format!("f{w}");
        sent.insert(id.clone(), Instant::now());
        let (status, body) = nodes[(w % 3) as usize]
            .push(
                TOKEN_A,
                json!({"clientId": format!("writer{}", w % 3), "mutations": [insert(w / 3 + 1, "f", &id, json!({"w": w}))]}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for l in listeners {
        tokio::time::timeout(Duration::from_secs(30), l)
            .await
            .expect("every listener gets every write")
            .unwrap();
    }
    let mut lat: Vec<Duration> = received
        .lock()
        .unwrap()
        .iter()
        .flat_map(|(id, times)| times.iter().map(|t| t.duration_since(sent[id])))
        .collect();
    assert_eq!(lat.len(), 30 * 9);
    lat.sort();
    println!(
        "fan-out across 3 nodes (push to receipt, 9 clients x 30 writes): p50 {:?}, p99 {:?}",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99)
    );

    // 2. 12 clients, 100 mutations each, over the 3 nodes; node 0 is
    // SIGKILLed once a third of the pushes are answered.
    const CLIENTS: usize = 12;
    const MUTATIONS: u64 = 100;
    let acked = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let mut client = Client::new(format!("c{c}"), ws_urls.clone(), alive.clone(), c % 3);
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            client.connect().await;
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (c as u64 + 1) * 0x1000_0001);
            // Expected effects: own docs (id -> doc), shared fields.
            let mut own: BTreeMap<String, Value> = BTreeMap::new();
            let mut shared: BTreeMap<String, u64> = BTreeMap::new();
            let mut mid = 0u64;
            let mut push_no = 0;
            while mid < MUTATIONS {
                let n = (1 + rng.below(4)).min(MUTATIONS - mid);
                let mut muts = Vec::new();
                let mut effects = Vec::new();
                for _ in 0..n {
                    mid += 1;
                    let roll = rng.below(10);
                    if roll < 5 || own.is_empty() {
                        let id = format!("d-{c}-{mid}");
                        let doc = json!({"c": c, "m": mid, "id": id});
                        muts.push(insert(mid, "t", &id, json!({"c": c, "m": mid})));
                        effects.push((id, Some(doc)));
                    } else if roll < 8 {
                        let k = format!("s{}", rng.below(5));
                        muts.push(update(mid, "s", &k, json!({format!("c{c}"): mid}), None));
                        shared.insert(k, mid);
                    } else {
                        let victim = own
                            .keys()
                            .nth(rng.below(own.len() as u64) as usize)
                            .unwrap()
                            .clone();
                        muts.push(json!({"mid": mid, "coll": "t", "op": "delete", "id": victim}));
                        effects.push((victim, None));
                    }
                }
                for (id, doc) in effects {
                    match doc {
                        Some(d) => own.insert(id, d),
                        None => own.remove(&id),
                    };
                }
                push_no += 1;
                let resp = client
                    .push(&format!("p{push_no}"), &Value::Array(muts))
                    .await;
                for r in resp["results"].as_array().unwrap() {
                    assert_eq!(
                        r["status"], "applied",
                        "{}: applied once, answered alike: {resp}",
                        client.id
                    );
                }
                assert_eq!(resp["lastMutationId"], mid, "{resp}");
                acked.fetch_add(1, SeqCst);
            }
            (client, own, shared)
        }));
    }
    let total_pushes_guess = CLIENTS * 40;
    let start = Instant::now();
    while acked.load(SeqCst) < total_pushes_guess / 3 {
        assert!(start.elapsed() < Duration::from_secs(120), "pushes stalled");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    alive[0].store(false, SeqCst);
    nodes[0].child.kill().unwrap(); // SIGKILL
    let _ = nodes[0].child.wait();
    println!(
        "node 0 SIGKILLed after {} answered pushes",
        acked.load(SeqCst)
    );
    let mut clients = Vec::new();
    let mut want = Replica::new();
    let mut shared_want: BTreeMap<String, serde_json::Map<String, Value>> = (0..5)
        .map(|k| {
            (
                format!("s{k}"),
                serde_json::Map::from_iter([("id".to_string(), json!(format!("s{k}")))]),
            )
        })
        .collect();
    for t in tasks {
        let (client, own, shared) = tokio::time::timeout(Duration::from_secs(180), t)
            .await
            .expect("clients finish")
            .unwrap();
        for (id, doc) in own {
            want.insert(("t".into(), id), doc);
        }
        let cid = client.id.clone();
        for (k, mid) in shared {
            shared_want
                .get_mut(&k)
                .unwrap()
                .insert(cid.clone(), json!(mid));
        }
        clients.push(client);
    }
    for (k, doc) in shared_want {
        want.insert(("s".into(), k), Value::Object(doc));
    }
    for w in 0..30u64 {
        let id = format!("f{w}");
        want.insert(("f".into(), id.clone()), json!({"w": w, "id": id}));
    }
    // Nothing acknowledged lost, nothing applied twice: the database holds
    // exactly the expected documents (via either surviving node).
    let db = db_state(&bases[1]).await;
    assert_eq!(db.len(), want.len());
    for (key, doc) in &want {
        assert_eq!(db.get(key), Some(doc), "{key:?}");
    }
    assert_eq!(db_state(&bases[2]).await, db);
    let moved: usize = clients.iter().map(|c| c.reconnects).sum();
    println!(
        "{} clients x {MUTATIONS} mutations; {moved} reconnects after the kill",
        clients.len()
    );
    // Every client converges to the database, document by document.
    for c in &mut clients {
        c.converge(&db).await;
    }
    drop(nodes);
}

/// Nodes starting together on an empty database: one migrates, the others
/// wait for it and find the schema done; all of them serve.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_starting_together_migrate_once() {
    let url = url();
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || PgStore::open(&url, Retention::default()))
        })
        .collect();
    let stores: Vec<PgStore> = opens
        .into_iter()
        .map(|t| t.join().unwrap().expect("every node starts"))
        .collect();
    let admin = connect(&url).await;
    let applied: Vec<i32> = admin
        .query(
            "SELECT version FROM schema_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(applied, [1]);
    let epochs: std::collections::HashSet<String> =
        stores.iter().map(|s| s.cursor_for(1)).collect();
    assert_eq!(epochs.len(), 1, "one database, one epoch: {epochs:?}");
    drop(stores);
}

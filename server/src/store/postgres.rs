//! The PostgreSQL store: many server nodes on one database.
//!
//! Same tables as SQLite (every key starts with the namespace). The change
//! order: a push first locks its namespace's row of `heads` (an upsert), so
//! pushes to one namespace run one after the other and commit in the order
//! of their seqs; a reader that has seen seq N has seen every change below
//! it, whatever node committed it. Pushes to different namespaces do not
//! wait for each other.
//!
//! A push that commits changes sends `NOTIFY syncstore_changes, '<ns>'` in
//! its transaction; every node LISTENs (see [`Store::listen`]) and reads the
//! changes from the table by seq, so a lost notification only delays.
//!
//! Driver: tokio-postgres with a deadpool pool, on a small runtime of the
//! store's own; the blocking `Store` methods run on its blocking threads
//! (`Handle::block_on` per statement).

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Transaction};
use futures_util::{stream, StreamExt};
use serde_json::Value;
use syncstore_core::protocol::{PullResponse, PushRequest, START_CURSOR};
use syncstore_core::sync::apply::{DocRow, DocStore};
use tokio::runtime::Handle;
use tokio_postgres::types::ToSql;
use tokio_postgres::{AsyncMessage, IsolationLevel, NoTls, Row};

use super::push::{apply_push, pulled_last_mid, Page, PushTx, RawChange};
use super::{
    catch_panic, resync, unix_now, ApplyLimits, Cursors, GroupPush, PullClient, PushOutcome,
    Retention, Store, StoreError, Wake,
};

/// The channel pushes notify and nodes listen on.
const CHANNEL: &str = "syncstore_changes";
/// Key of the advisory lock that serializes migrations across nodes.
const MIGRATION_LOCK: i64 = 0x5359_4e43_5354_4f52; // "SYNCSTOR"
/// Connections per node.
const POOL_SIZE: usize = 16;
/// Longest wait for a pooled connection, or to open or check one.
const DB_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a node waits before listening again after losing its
/// notification connection.
const RELISTEN_DELAY: Duration = Duration::from_secs(1);

/// Versioned migrations, applied in order under [`MIGRATION_LOCK`].
const MIGRATIONS: &[&str] = &["
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE heads (ns TEXT PRIMARY KEY, seq BIGINT NOT NULL, floor BIGINT NOT NULL DEFAULT 0);
CREATE TABLE docs (
    ns TEXT NOT NULL, coll TEXT NOT NULL, id TEXT NOT NULL,
    doc TEXT, deleted BOOLEAN NOT NULL, version BIGINT NOT NULL,
    created BIGINT NOT NULL, fields TEXT NOT NULL, ts BIGINT,
    changed_at BIGINT NOT NULL,
    PRIMARY KEY (ns, coll, id)
);
CREATE UNIQUE INDEX docs_by_version ON docs (ns, version);
CREATE INDEX docs_tombstones ON docs (ns, changed_at) WHERE deleted;
CREATE TABLE clients (
    ns TEXT NOT NULL, client_id TEXT NOT NULL, last_mid BIGINT NOT NULL, owner TEXT,
    PRIMARY KEY (ns, client_id)
);
CREATE TABLE results (
    ns TEXT NOT NULL, client_id TEXT NOT NULL, mid BIGINT NOT NULL, result TEXT NOT NULL,
    PRIMARY KEY (ns, client_id, mid)
);
CREATE TABLE idmap (
    ns TEXT NOT NULL, client_id TEXT NOT NULL, tmp_id TEXT NOT NULL, canonical TEXT NOT NULL,
    mid BIGINT NOT NULL,
    PRIMARY KEY (ns, client_id, tmp_id)
);
CREATE INDEX idmap_by_mid ON idmap (ns, client_id, mid);
"];

fn pg(e: impl std::fmt::Display) -> StoreError {
    StoreError::Pg(e.to_string())
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// PostgreSQL-backed [`Store`].
pub struct PgStore {
    /// Taken on drop (shut down in the background: dropping a runtime may
    /// happen on an async thread).
    rt: Option<tokio::runtime::Runtime>,
    pool: Pool,
    config: tokio_postgres::Config,
    cursors: Cursors,
    retention: Retention,
}

impl Drop for PgStore {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl PgStore {
    /// Connects to `url` (`postgres://user:pass@host:port/db?options=...`),
    /// migrates the schema (one node at a time) and returns the store.
    pub fn open(url: &str, retention: Retention) -> Result<Self, StoreError> {
        let config = tokio_postgres::Config::from_str(url).map_err(pg)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("syncstore-pg")
            .enable_all()
            .build()
            .map_err(pg)?;
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            // A database that does not answer fails calls (503 on /readyz,
            // INTERNAL on pushes) instead of hanging them.
            .wait_timeout(Some(DB_TIMEOUT))
            .create_timeout(Some(DB_TIMEOUT))
            .recycle_timeout(Some(DB_TIMEOUT))
            .build()
            .map_err(pg)?;
        let mut store = PgStore {
            rt: Some(rt),
            pool,
            config,
            cursors: Cursors {
                epoch: String::new(),
            },
            retention,
        };
        store.cursors.epoch = store.call(|h, pool| {
            let mut client = h.block_on(pool.get()).map_err(pg)?;
            let tx = h.block_on(client.transaction()).map_err(pg)?;
            migrate(h, &tx)?;
            let fresh = Cursors::new_epoch();
            h.block_on(tx.execute(
                "INSERT INTO meta (key, value) VALUES ('epoch', $1) ON CONFLICT DO NOTHING",
                &[&fresh],
            ))
            .map_err(pg)?;
            let row = h
                .block_on(tx.query_one("SELECT value FROM meta WHERE key = 'epoch'", &[]))
                .map_err(pg)?;
            h.block_on(tx.commit()).map_err(pg)?;
            Ok(row.get::<_, String>(0))
        })?;
        Ok(store)
    }

    fn rt(&self) -> &tokio::runtime::Runtime {
        self.rt.as_ref().expect("runtime lives until drop")
    }

    /// Runs `f` on a blocking thread of the store's runtime and waits for
    /// it (from any thread, async or not).
    fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Handle, &Pool) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let pool = self.pool.clone();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.rt().spawn_blocking(move || {
            let h = Handle::current();
            let _ = tx.send(f(&h, &pool));
        });
        rx.recv()
            .map_err(|_| StoreError::Corrupt("a PostgreSQL store call panicked".into()))?
    }

    fn pushes(
        &self,
        pushes: Vec<(String, Option<String>, PushRequest)>,
        limits: ApplyLimits,
        deadline: Option<std::time::Instant>,
    ) -> Result<Vec<Result<PushOutcome, StoreError>>, StoreError> {
        let retention = self.retention;
        self.call(move |h, pool| {
            let mut client = h.block_on(pool.get()).map_err(pg)?;
            let mut tx = h.block_on(client.transaction()).map_err(pg)?;
            // Every namespace of the group locked first, in one order, so
            // groups of different nodes cannot deadlock.
            let mut namespaces: Vec<&str> = pushes.iter().map(|p| p.0.as_str()).collect();
            namespaces.sort_unstable();
            namespaces.dedup();
            for ns in namespaces {
                lock_head(h, &tx, ns)?;
            }
            let mut out = Vec::with_capacity(pushes.len());
            for (ns, owner, req) in &pushes {
                if !out.is_empty() && deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                    break;
                }
                let sp = h.block_on(tx.savepoint("push")).map_err(pg)?;
                let applied = catch_panic(|| {
                    let mut t = PgTx {
                        h,
                        tx: &sp,
                        ns,
                        client: &req.client_id,
                        mid: 0,
                        work: 0,
                    };
                    apply_push(&mut t, owner.as_deref(), req, limits, retention)
                });
                match applied {
                    Ok(outcome) => {
                        h.block_on(sp.commit()).map_err(pg)?;
                        out.push(Ok(outcome));
                    }
                    Err(e) => {
                        h.block_on(sp.rollback()).map_err(pg)?;
                        out.push(Err(e));
                    }
                }
            }
            h.block_on(tx.commit()).map_err(pg)?;
            Ok(out)
        })
    }
}

/// Applies the migrations not applied yet, inside `tx`, holding the
/// migration lock until it commits (nodes starting together wait in turn).
fn migrate(h: &Handle, tx: &Transaction<'_>) -> Result<(), StoreError> {
    h.block_on(tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]))
        .map_err(pg)?;
    h.block_on(tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    ))
    .map_err(pg)?;
    let done: i32 = h
        .block_on(tx.query_one(
            "SELECT COALESCE(max(version), 0) FROM schema_migrations",
            &[],
        ))
        .map_err(pg)?
        .get(0);
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(done as usize) {
        h.block_on(tx.batch_execute(sql)).map_err(pg)?;
        let version = (i + 1) as i32;
        h.block_on(tx.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[&version],
        ))
        .map_err(pg)?;
        tracing::info!(version, "PostgreSQL schema migrated");
    }
    Ok(())
}

/// Locks the namespace's row of `heads` (creating it) until the transaction
/// ends; returns its seq.
fn lock_head(h: &Handle, tx: &Transaction<'_>, ns: &str) -> Result<u64, StoreError> {
    let row = query_one(
        h,
        tx,
        "INSERT INTO heads (ns, seq) VALUES ($1, 0)
         ON CONFLICT (ns) DO UPDATE SET seq = heads.seq RETURNING seq",
        &[&ns],
    )?;
    Ok(row.get::<_, i64>(0) as u64)
}

fn query_opt(
    h: &Handle,
    tx: &Transaction<'_>,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Option<Row>, StoreError> {
    let st = h.block_on(tx.prepare_cached(sql)).map_err(pg)?;
    h.block_on(tx.query_opt(&st, params)).map_err(pg)
}

fn query_one(
    h: &Handle,
    tx: &Transaction<'_>,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Row, StoreError> {
    let st = h.block_on(tx.prepare_cached(sql)).map_err(pg)?;
    h.block_on(tx.query_one(&st, params)).map_err(pg)
}

fn execute(
    h: &Handle,
    tx: &Transaction<'_>,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, StoreError> {
    let st = h.block_on(tx.prepare_cached(sql)).map_err(pg)?;
    h.block_on(tx.execute(&st, params)).map_err(pg)
}

/// One namespace and client inside a push's savepoint.
struct PgTx<'a, 'b> {
    h: &'a Handle,
    tx: &'a Transaction<'b>,
    ns: &'a str,
    client: &'a str,
    mid: u64,
    /// Stored bytes read and written so far (the push's work budget).
    work: usize,
}

impl PgTx<'_, '_> {
    fn opt(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Option<Row>, StoreError> {
        query_opt(self.h, self.tx, sql, params)
    }

    fn exec(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, StoreError> {
        execute(self.h, self.tx, sql, params)
    }
}

impl DocStore for PgTx<'_, '_> {
    type Error = StoreError;

    fn load(&mut self, coll: &str, id: &str) -> Result<Option<DocRow>, StoreError> {
        let Some(r) = self.opt(
            "SELECT doc, deleted, version, created, fields, ts FROM docs
             WHERE ns = $1 AND coll = $2 AND id = $3",
            &[&self.ns, &coll, &id],
        )?
        else {
            return Ok(None);
        };
        let doc: Option<String> = r.get(0);
        let fields: String = r.get(4);
        self.work += doc.as_ref().map_or(0, String::len) + fields.len();
        Ok(Some(DocRow {
            doc: doc
                .as_deref()
                .map(serde_json::from_str)
                .transpose()
                .map_err(corrupt)?,
            deleted: r.get(1),
            version: r.get::<_, i64>(2) as u64,
            created: r.get::<_, i64>(3) as u64,
            fields: serde_json::from_str(&fields).map_err(corrupt)?,
            ts: r.get::<_, Option<i64>>(5).map(|t| t as u64),
        }))
    }

    fn lookup_tmp(&mut self, tmp: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .opt(
                "SELECT canonical FROM idmap WHERE ns = $1 AND client_id = $2 AND tmp_id = $3",
                &[&self.ns, &self.client, &tmp],
            )?
            .map(|r| r.get(0)))
    }

    fn map_tmp(&mut self, tmp: &str) -> Result<String, StoreError> {
        let c = uuid::Uuid::new_v4().simple().to_string();
        self.exec(
            "INSERT INTO idmap (ns, client_id, tmp_id, canonical, mid) VALUES ($1, $2, $3, $4, $5)",
            &[&self.ns, &self.client, &tmp, &c, &(self.mid as i64)],
        )?;
        Ok(c)
    }

    fn store(&mut self, coll: &str, id: &str, row: &DocRow) -> Result<(), StoreError> {
        let doc_text = row
            .doc
            .as_ref()
            .map(|d| Value::Object(d.clone()).to_string());
        let fields = serde_json::to_string(&row.fields).map_err(corrupt)?;
        self.work += doc_text.as_ref().map_or(0, String::len) + fields.len();
        self.exec(
            "INSERT INTO docs (ns, coll, id, doc, deleted, version, created, fields, ts, changed_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (ns, coll, id) DO UPDATE SET doc = excluded.doc,
               deleted = excluded.deleted, version = excluded.version,
               created = excluded.created, fields = excluded.fields, ts = excluded.ts,
               changed_at = excluded.changed_at",
            &[
                &self.ns,
                &coll,
                &id,
                &doc_text,
                &row.deleted,
                &(row.version as i64),
                &(row.created as i64),
                &fields,
                &row.ts.map(|t| t as i64),
                &(unix_now() as i64),
            ],
        )?;
        Ok(())
    }
}

impl PushTx for PgTx<'_, '_> {
    fn lock_head(&mut self) -> Result<u64, StoreError> {
        lock_head(self.h, self.tx, self.ns)
    }

    fn set_head(&mut self, seq: u64) -> Result<(), StoreError> {
        self.exec(
            "UPDATE heads SET seq = $2 WHERE ns = $1",
            &[&self.ns, &(seq as i64)],
        )?;
        // Delivered when the transaction commits (and not if it does not).
        self.exec("SELECT pg_notify($1, $2)", &[&CHANNEL, &self.ns])?;
        Ok(())
    }

    fn client(&mut self) -> Result<Option<(u64, Option<String>)>, StoreError> {
        client_row(self.h, self.tx, self.ns, self.client)
    }

    fn save_client(&mut self, last: u64, owner: Option<&str>) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO clients (ns, client_id, last_mid, owner) VALUES ($1, $2, $3, $4)
             ON CONFLICT (ns, client_id) DO UPDATE SET last_mid = excluded.last_mid,
               owner = COALESCE(clients.owner, excluded.owner)",
            &[&self.ns, &self.client, &(last as i64), &owner],
        )?;
        Ok(())
    }

    fn stored_result(&mut self, mid: u64) -> Result<Option<String>, StoreError> {
        Ok(self
            .opt(
                "SELECT result FROM results WHERE ns = $1 AND client_id = $2 AND mid = $3",
                &[&self.ns, &self.client, &(mid as i64)],
            )?
            .map(|r| r.get(0)))
    }

    fn save_result(&mut self, mid: u64, result: &str) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO results (ns, client_id, mid, result) VALUES ($1, $2, $3, $4)",
            &[&self.ns, &self.client, &(mid as i64), &result],
        )?;
        Ok(())
    }

    fn set_mid(&mut self, mid: u64) {
        self.mid = mid;
    }

    fn work(&self) -> usize {
        self.work
    }

    fn prune(&mut self, below: u64) -> Result<(), StoreError> {
        for sql in [
            "DELETE FROM results WHERE ns = $1 AND client_id = $2 AND mid < $3",
            "DELETE FROM idmap WHERE ns = $1 AND client_id = $2 AND mid < $3",
        ] {
            self.exec(sql, &[&self.ns, &self.client, &(below as i64)])?;
        }
        Ok(())
    }
}

/// The clientId's last processed mid and owner, if it ever pushed.
fn client_row(
    h: &Handle,
    tx: &Transaction<'_>,
    ns: &str,
    client: &str,
) -> Result<Option<(u64, Option<String>)>, StoreError> {
    Ok(query_opt(
        h,
        tx,
        "SELECT last_mid, owner FROM clients WHERE ns = $1 AND client_id = $2",
        &[&ns, &client],
    )?
    .map(|r| (r.get::<_, i64>(0) as u64, r.get(1))))
}

/// The namespace's (head seq, compaction floor) as `tx` sees them.
fn head(h: &Handle, tx: &Transaction<'_>, ns: &str) -> Result<(u64, u64), StoreError> {
    Ok(
        query_opt(h, tx, "SELECT seq, floor FROM heads WHERE ns = $1", &[&ns])?
            .map_or((0, 0), |r| {
                (r.get::<_, i64>(0) as u64, r.get::<_, i64>(1) as u64)
            }),
    )
}

/// A read-only transaction that sees one snapshot for all its statements.
async fn snapshot(
    client: &mut deadpool_postgres::Object,
) -> Result<Transaction<'_>, tokio_postgres::Error> {
    client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
}

impl Store for PgStore {
    fn push(
        &self,
        ns: &str,
        req: &PushRequest,
        limits: ApplyLimits,
    ) -> Result<PushOutcome, StoreError> {
        self.pushes(vec![(ns.to_string(), None, req.clone())], limits, None)?
            .pop()
            .unwrap_or_else(|| Err(StoreError::Corrupt("a push without an answer".into())))
    }

    fn push_group(
        &self,
        pushes: &[GroupPush<'_>],
        limits: ApplyLimits,
        deadline: Option<std::time::Instant>,
    ) -> Result<Vec<Result<PushOutcome, StoreError>>, StoreError> {
        let owned = pushes
            .iter()
            .map(|p| {
                (
                    p.namespace.to_string(),
                    p.owner.map(str::to_string),
                    p.req.clone(),
                )
            })
            .collect();
        self.pushes(owned, limits, deadline)
    }

    fn pull_page(
        &self,
        ns: &str,
        client: Option<PullClient<'_>>,
        cursor: Option<&str>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<PullResponse, StoreError> {
        let ns = ns.to_string();
        let puller = client.map(|c| (c.id.to_string(), c.owner.map(str::to_string)));
        let cursor = cursor.unwrap_or(START_CURSOR).to_string();
        let cursors = self.cursors.clone();
        self.call(move |h, pool| {
            let mut client = h.block_on(pool.get()).map_err(pg)?;
            let tx = h.block_on(snapshot(&mut client)).map_err(pg)?;
            let (head, floor) = head(h, &tx, &ns)?;
            let last = match &puller {
                Some((id, owner)) => {
                    let c = PullClient {
                        id,
                        owner: owner.as_deref(),
                    };
                    pulled_last_mid(c, client_row(h, &tx, &ns, id)?)
                }
                None => 0,
            };
            let Some(from) = cursors.decode(&cursor, head, floor) else {
                return Ok(resync(last));
            };
            let total = if from == 0 {
                let n: i64 =
                    query_one(h, &tx, "SELECT count(*) FROM docs WHERE ns = $1", &[&ns])?.get(0);
                Some(n as u64)
            } else {
                None
            };
            let take = limit.max(1);
            let st = h
                .block_on(tx.prepare_cached(
                    "SELECT coll, id, doc, version, ts FROM docs WHERE ns = $1 AND version > $2
                     ORDER BY version LIMIT $3",
                ))
                .map_err(pg)?;
            let rows = h
                .block_on(tx.query(&st, &[&ns, &(from as i64), &((take + 1) as i64)]))
                .map_err(pg)?;
            let mut page = Page::new(take, max_bytes);
            for r in rows {
                let raw = RawChange {
                    coll: r.get(0),
                    id: r.get(1),
                    doc: r.get(2),
                    version: r.get::<_, i64>(3) as u64,
                    ts: r.get::<_, Option<i64>>(4).map(|t| t as u64),
                };
                if !page.add(raw)? {
                    break;
                }
            }
            h.block_on(tx.commit()).map_err(pg)?;
            Ok(page.finish(from, head, total, last, &cursors))
        })
    }

    fn cursor_seq(&self, ns: &str, cursor: &str) -> Result<Option<u64>, StoreError> {
        let ns = ns.to_string();
        let cursor = cursor.to_string();
        let cursors = self.cursors.clone();
        self.call(move |h, pool| {
            let mut client = h.block_on(pool.get()).map_err(pg)?;
            let tx = h.block_on(snapshot(&mut client)).map_err(pg)?;
            let (head, floor) = head(h, &tx, &ns)?;
            h.block_on(tx.commit()).map_err(pg)?;
            Ok(cursors.decode(&cursor, head, floor))
        })
    }

    fn cursor_for(&self, seq: u64) -> String {
        self.cursors.encode(seq)
    }

    fn health(&self) -> Result<(), StoreError> {
        self.call(|h, pool| {
            let client = h.block_on(pool.get()).map_err(pg)?;
            h.block_on(client.simple_query("SELECT 1")).map_err(pg)?;
            Ok(())
        })
    }

    fn compact(&self, ns: &str) -> Result<u64, StoreError> {
        let ns = ns.to_string();
        let before = unix_now().saturating_sub(self.retention.tombstone_horizon.as_secs()) as i64;
        self.call(move |h, pool| {
            let mut client = h.block_on(pool.get()).map_err(pg)?;
            let tx = h.block_on(client.transaction()).map_err(pg)?;
            // Pushes to the namespace wait: the floor and the deletion are
            // one step for every reader.
            lock_head(h, &tx, &ns)?;
            let top: Option<i64> = query_one(
                h,
                &tx,
                "SELECT max(version) FROM docs WHERE ns = $1 AND deleted AND changed_at < $2",
                &[&ns, &before],
            )?
            .get(0);
            let Some(top) = top else {
                return Ok(0);
            };
            let n = execute(
                h,
                &tx,
                "DELETE FROM docs WHERE ns = $1 AND deleted AND version <= $2",
                &[&ns, &top],
            )?;
            execute(
                h,
                &tx,
                "UPDATE heads SET floor = GREATEST(floor, $2) WHERE ns = $1",
                &[&ns, &top],
            )?;
            h.block_on(tx.commit()).map_err(pg)?;
            Ok(n)
        })
    }

    fn namespaces(&self) -> Result<Vec<String>, StoreError> {
        self.call(|h, pool| {
            let client = h.block_on(pool.get()).map_err(pg)?;
            let rows = h
                .block_on(client.query("SELECT ns FROM heads ORDER BY ns", &[]))
                .map_err(pg)?;
            Ok(rows.into_iter().map(|r| r.get(0)).collect())
        })
    }

    fn listen(&self, wake: Wake) -> bool {
        let mut config = self.config.clone();
        config.connect_timeout(DB_TIMEOUT);
        self.rt().spawn(async move {
            loop {
                if let Err(e) = listen_once(&config, &wake).await {
                    tracing::warn!(error = %e, "PostgreSQL notifications lost; listening again");
                }
                // Whatever was notified meanwhile: every namespace reads again.
                wake(None);
                tokio::time::sleep(RELISTEN_DELAY).await;
            }
        });
        true
    }
}

/// Listens on [`CHANNEL`] over a connection of its own, calling `wake` for
/// each notification, until the connection fails.
async fn listen_once(config: &tokio_postgres::Config, wake: &Wake) -> Result<(), StoreError> {
    let (client, mut conn) = config.connect(NoTls).await.map_err(pg)?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let messages = stream::poll_fn(move |cx| conn.poll_message(cx));
    let pump = tokio::spawn(async move {
        let mut messages = std::pin::pin!(messages);
        while let Some(m) = messages.next().await {
            match m {
                Ok(AsyncMessage::Notification(n)) => {
                    if tx.send(Some(n.payload().to_string())).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    let _ = tx.send(None);
                    tracing::warn!(error = %e, "PostgreSQL notification connection failed");
                    return;
                }
            }
        }
        let _ = tx.send(None);
    });
    client
        .batch_execute(&format!("LISTEN {CHANNEL}"))
        .await
        .map_err(pg)?;
    // Listening now: changes committed before it are read by the caller.
    wake(None);
    let client = Arc::new(client);
    while let Some(Some(ns)) = rx.recv().await {
        wake(Some(&ns));
    }
    pump.abort();
    drop(client);
    Err(StoreError::Pg("notification connection closed".into()))
}

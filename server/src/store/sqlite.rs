//! The embedded SQLite store: one connection, one transaction per call.
//!
//! The `docs` table doubles as the change log: a document's `version` is the
//! seq of its last change in its namespace, so "changes after cursor C" is
//! "documents (and tombstones) of the namespace whose version is greater
//! than C", latest state only. `heads` holds each namespace's last seq and
//! compaction floor.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde_json::Value;
use syncstore_core::protocol::{JsonObject, PullResponse, PushRequest};

use super::push::{apply_push, pulled_last_mid, Page, PushTx, RawChange};
use super::{
    resync, unix_now, ApplyLimits, Cursors, GroupPush, PullClient, PushOutcome, Retention, Store,
    StoreError,
};
use syncstore_core::sync::apply::{DocRow, DocStore};

/// Versioned migrations; `PRAGMA user_version` counts those applied.
const MIGRATIONS: &[&str] = &[
    // 1: the original schema (databases from before versioning have it,
    // maybe without clients.owner: added below).
    "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS docs (
    ns TEXT NOT NULL, coll TEXT NOT NULL, id TEXT NOT NULL,
    doc TEXT, deleted INTEGER NOT NULL, version INTEGER NOT NULL,
    created INTEGER NOT NULL, fields TEXT NOT NULL, ts INTEGER,
    PRIMARY KEY (ns, coll, id)
);
CREATE UNIQUE INDEX IF NOT EXISTS docs_by_version ON docs (ns, version);
CREATE TABLE IF NOT EXISTS clients (
    ns TEXT NOT NULL, client_id TEXT NOT NULL, last_mid INTEGER NOT NULL,
    PRIMARY KEY (ns, client_id)
);
CREATE TABLE IF NOT EXISTS results (
    ns TEXT NOT NULL, client_id TEXT NOT NULL, mid INTEGER NOT NULL, result TEXT NOT NULL,
    PRIMARY KEY (ns, client_id, mid)
);
CREATE TABLE IF NOT EXISTS idmap (
    ns TEXT NOT NULL, client_id TEXT NOT NULL, tmp_id TEXT NOT NULL, canonical TEXT NOT NULL,
    PRIMARY KEY (ns, client_id, tmp_id)
);
",
    // 2: a sequence per namespace (continuing from the old global one, so
    // issued cursors stay valid), id mappings by mid and tombstone times
    // (retention).
    "
CREATE TABLE heads (ns TEXT PRIMARY KEY, seq INTEGER NOT NULL, floor INTEGER NOT NULL DEFAULT 0);
INSERT INTO heads (ns, seq)
    SELECT DISTINCT ns, COALESCE((SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'seq'), 0) FROM docs;
DELETE FROM meta WHERE key = 'seq';
ALTER TABLE idmap ADD COLUMN mid INTEGER NOT NULL DEFAULT 0;
CREATE INDEX idmap_by_mid ON idmap (ns, client_id, mid);
ALTER TABLE docs ADD COLUMN changed_at INTEGER NOT NULL DEFAULT 0;
CREATE INDEX docs_tombstones ON docs (ns, changed_at) WHERE deleted;
",
];

/// SQLite-backed [`Store`].
pub struct SqliteStore {
    conn: Mutex<Connection>,
    cursors: Cursors,
    retention: Retention,
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

fn parse_obj(s: &str) -> Result<JsonObject, StoreError> {
    serde_json::from_str(s).map_err(corrupt)
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let done: usize = tx.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))? as usize;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(done) {
        tx.execute_batch(sql)?;
        if i == 0 {
            // Databases from before clientId ownership: rows without an
            // owner are claimed by the next token that pushes with them.
            let has_owner: bool = tx.query_row(
                "SELECT COUNT(*) FROM pragma_table_info('clients') WHERE name = 'owner'",
                [],
                |r| r.get::<_, i64>(0).map(|n| n > 0),
            )?;
            if !has_owner {
                tx.execute_batch("ALTER TABLE clients ADD COLUMN owner TEXT")?;
            }
        }
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
    }
    tx.commit()?;
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`; `:memory:` is
    /// in-memory. Default retention.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, Retention::default())
    }

    /// [`SqliteStore::open`] with `retention`.
    pub fn open_with(path: impl AsRef<Path>, retention: Retention) -> Result<Self, StoreError> {
        let path = path.as_ref();
        let mut conn = if path.as_os_str() == ":memory:" {
            Connection::open_in_memory()?
        } else {
            let c = Connection::open(path)?;
            c.pragma_update(None, "journal_mode", "WAL")?;
            c
        };
        // Durable at commit, even across power loss: a push answered is kept.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrate(&mut conn)?;
        let epoch = match conn
            .query_row("SELECT value FROM meta WHERE key = 'epoch'", [], |r| {
                r.get::<_, String>(0)
            })
            .optional()?
        {
            Some(e) => e,
            None => {
                let e = Cursors::new_epoch();
                conn.execute("INSERT INTO meta (key, value) VALUES ('epoch', ?1)", [&e])?;
                e
            }
        };
        Ok(Self {
            conn: Mutex::new(conn),
            cursors: Cursors { epoch },
            retention,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic mid-call rolled its transaction back on drop; the connection is fine.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The namespace's (head seq, compaction floor).
fn head(tx: &Connection, ns: &str) -> Result<(u64, u64), StoreError> {
    let v: Option<(i64, i64)> = tx
        .prepare_cached("SELECT seq, floor FROM heads WHERE ns = ?1")?
        .query_row([ns], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    Ok(v.map_or((0, 0), |(s, f)| (s as u64, f as u64)))
}

/// The clientId's last processed mid and owner, if it ever pushed.
fn client_row(
    tx: &Connection,
    ns: &str,
    client: &str,
) -> Result<Option<(u64, Option<String>)>, StoreError> {
    Ok(tx
        .prepare_cached("SELECT last_mid, owner FROM clients WHERE ns = ?1 AND client_id = ?2")?
        .query_row(params![ns, client], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get(1)?))
        })
        .optional()?)
}

/// The documents and client state of one namespace and client, inside a
/// push transaction: what [`apply_push`] reads and writes.
struct SqlTx<'a> {
    tx: &'a Connection,
    ns: &'a str,
    client: &'a str,
    mid: u64,
    /// Stored bytes read and written so far (the push's work budget).
    work: usize,
}

impl DocStore for SqlTx<'_> {
    type Error = StoreError;

    fn load(&mut self, coll: &str, id: &str) -> Result<Option<DocRow>, StoreError> {
        let raw = self
            .tx
            .prepare_cached(
                "SELECT doc, deleted, version, created, fields, ts FROM docs
                 WHERE ns = ?1 AND coll = ?2 AND id = ?3",
            )?
            .query_row(params![self.ns, coll, id], |r| {
                Ok((
                    r.get::<_, Option<String>>(0)?,
                    r.get::<_, bool>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, Option<i64>>(5)?,
                ))
            })
            .optional()?;
        let Some((doc, deleted, version, created, fields, ts)) = raw else {
            return Ok(None);
        };
        self.work += doc.as_ref().map_or(0, String::len) + fields.len();
        Ok(Some(DocRow {
            doc: doc.as_deref().map(parse_obj).transpose()?,
            deleted,
            version: version as u64,
            created: created as u64,
            fields: serde_json::from_str(&fields).map_err(corrupt)?,
            ts: ts.map(|t| t as u64),
        }))
    }

    fn lookup_tmp(&mut self, tmp: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .tx
            .prepare_cached(
                "SELECT canonical FROM idmap WHERE ns = ?1 AND client_id = ?2 AND tmp_id = ?3",
            )?
            .query_row(params![self.ns, self.client, tmp], |r| r.get(0))
            .optional()?)
    }

    fn map_tmp(&mut self, tmp: &str) -> Result<String, StoreError> {
        let c = uuid::Uuid::new_v4().simple().to_string();
        self.tx
            .prepare_cached(
                "INSERT INTO idmap (ns, client_id, tmp_id, canonical, mid) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![self.ns, self.client, tmp, c, self.mid as i64])?;
        Ok(c)
    }

    fn store(&mut self, coll: &str, id: &str, row: &DocRow) -> Result<(), StoreError> {
        let doc_text = row
            .doc
            .as_ref()
            .map(|d| Value::Object(d.clone()).to_string());
        let fields = serde_json::to_string(&row.fields).map_err(corrupt)?;
        self.work += doc_text.as_ref().map_or(0, String::len) + fields.len();
        self.tx
            .prepare_cached(
                "INSERT INTO docs (ns, coll, id, doc, deleted, version, created, fields, ts, changed_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
             ON CONFLICT (ns, coll, id) DO UPDATE SET doc = excluded.doc,
               deleted = excluded.deleted, version = excluded.version,
               created = excluded.created, fields = excluded.fields, ts = excluded.ts,
               changed_at = excluded.changed_at",
            )?
            .execute(params![
                self.ns,
                coll,
                id,
                doc_text,
                row.deleted,
                row.version as i64,
                row.created as i64,
                fields,
                row.ts.map(|t| t as i64),
                unix_now() as i64,
            ])?;
        Ok(())
    }
}

impl PushTx for SqlTx<'_> {
    fn lock_head(&mut self) -> Result<u64, StoreError> {
        // The write transaction (BEGIN IMMEDIATE) already serializes writers.
        Ok(head(self.tx, self.ns)?.0)
    }

    fn set_head(&mut self, seq: u64) -> Result<(), StoreError> {
        self.tx
            .prepare_cached(
                "INSERT INTO heads (ns, seq) VALUES (?1, ?2)
                 ON CONFLICT (ns) DO UPDATE SET seq = excluded.seq",
            )?
            .execute(params![self.ns, seq as i64])?;
        Ok(())
    }

    fn client(&mut self) -> Result<Option<(u64, Option<String>)>, StoreError> {
        client_row(self.tx, self.ns, self.client)
    }

    fn save_client(&mut self, last: u64, owner: Option<&str>) -> Result<(), StoreError> {
        self.tx
            .prepare_cached(
                "INSERT INTO clients (ns, client_id, last_mid, owner) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (ns, client_id) DO UPDATE SET last_mid = excluded.last_mid,
                   owner = COALESCE(clients.owner, excluded.owner)",
            )?
            .execute(params![self.ns, self.client, last as i64, owner])?;
        Ok(())
    }

    fn stored_result(&mut self, mid: u64) -> Result<Option<String>, StoreError> {
        Ok(self
            .tx
            .prepare_cached(
                "SELECT result FROM results WHERE ns = ?1 AND client_id = ?2 AND mid = ?3",
            )?
            .query_row(params![self.ns, self.client, mid as i64], |r| r.get(0))
            .optional()?)
    }

    fn save_result(&mut self, mid: u64, result: &str) -> Result<(), StoreError> {
        self.tx
            .prepare_cached(
                "INSERT INTO results (ns, client_id, mid, result) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![self.ns, self.client, mid as i64, result])?;
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
            "DELETE FROM results WHERE ns = ?1 AND client_id = ?2 AND mid < ?3",
            "DELETE FROM idmap WHERE ns = ?1 AND client_id = ?2 AND mid < ?3",
        ] {
            self.tx
                .prepare_cached(sql)?
                .execute(params![self.ns, self.client, below as i64])?;
        }
        Ok(())
    }
}

impl SqliteStore {
    /// One push inside the open transaction (or savepoint) `tx`.
    fn apply(
        &self,
        tx: &Connection,
        ns: &str,
        owner: Option<&str>,
        req: &PushRequest,
        limits: ApplyLimits,
    ) -> Result<PushOutcome, StoreError> {
        let mut t = SqlTx {
            tx,
            ns,
            client: &req.client_id,
            mid: 0,
            work: 0,
        };
        apply_push(&mut t, owner, req, limits, self.retention)
    }
}

impl Store for SqliteStore {
    fn push(
        &self,
        ns: &str,
        req: &PushRequest,
        limits: ApplyLimits,
    ) -> Result<PushOutcome, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let outcome = self.apply(&tx, ns, None, req, limits)?;
        tx.commit()?;
        Ok(outcome)
    }

    fn push_group(
        &self,
        pushes: &[GroupPush<'_>],
        limits: ApplyLimits,
        deadline: Option<std::time::Instant>,
    ) -> Result<Vec<Result<PushOutcome, StoreError>>, StoreError> {
        let mut conn = self.lock();
        let mut tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut out = Vec::with_capacity(pushes.len());
        for p in pushes {
            if !out.is_empty() && deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                // The rest goes into the next group: one namespace's heavy
                // pushes do not hold the others' for long.
                break;
            }
            // Each push in a savepoint of its own: one that fails rolls back
            // only itself, the others of the group still commit.
            let sp = tx.savepoint()?;
            let applied =
                super::catch_panic(|| self.apply(&sp, p.namespace, p.owner, p.req, limits));
            match applied {
                Ok(outcome) => {
                    sp.commit()?;
                    out.push(Ok(outcome));
                }
                Err(e) => {
                    // Dropping the savepoint rolls it back.
                    drop(sp);
                    if tx.is_autocommit() {
                        // SQLite rolled the whole transaction back (I/O
                        // error, disk full): nothing of the group stands.
                        return Err(e);
                    }
                    out.push(Err(e));
                }
            }
        }
        tx.commit()?;
        Ok(out)
    }

    fn pull_page(
        &self,
        ns: &str,
        client: Option<PullClient<'_>>,
        cursor: Option<&str>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<PullResponse, StoreError> {
        let mut conn = self.lock();
        // One read transaction: changes, head and lastMutationId from one snapshot.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
        let (head, floor) = head(&tx, ns)?;
        let last = match client {
            Some(c) => pulled_last_mid(c, client_row(&tx, ns, c.id)?),
            None => 0,
        };
        let cursor = cursor.unwrap_or(syncstore_core::protocol::START_CURSOR);
        let Some(from) = self.cursors.decode(cursor, head, floor) else {
            return Ok(resync(last));
        };
        // From the start: how many changes the whole pull will deliver.
        let total = if from == 0 {
            let n: i64 = tx.query_row(
                "SELECT count(*) FROM docs WHERE ns = ?1",
                params![ns],
                |r| r.get(0),
            )?;
            Some(n as u64)
        } else {
            None
        };
        let mut stmt = tx.prepare_cached(
            "SELECT coll, id, doc, version, ts FROM docs WHERE ns = ?1 AND version > ?2
             ORDER BY version LIMIT ?3",
        )?;
        let take = limit.max(1);
        let rows = stmt.query_map(params![ns, from as i64, (take + 1) as i64], |r| {
            Ok(RawChange {
                coll: r.get(0)?,
                id: r.get(1)?,
                doc: r.get(2)?,
                version: r.get::<_, i64>(3)? as u64,
                ts: r.get::<_, Option<i64>>(4)?.map(|t| t as u64),
            })
        })?;
        let mut page = Page::new(take, max_bytes);
        for row in rows {
            if !page.add(row?)? {
                break;
            }
        }
        drop(stmt);
        tx.finish()?;
        Ok(page.finish(from, head, total, last, &self.cursors))
    }

    fn cursor_seq(&self, ns: &str, cursor: &str) -> Result<Option<u64>, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let (head, floor) = head(&tx, ns)?;
        Ok(self.cursors.decode(cursor, head, floor))
    }

    fn cursor_for(&self, seq: u64) -> String {
        self.cursors.encode(seq)
    }

    fn health(&self) -> Result<(), StoreError> {
        self.lock().query_row("SELECT 1", [], |_| Ok(()))?;
        Ok(())
    }

    fn try_health(&self) -> Result<(), StoreError> {
        let conn = match self.conn.try_lock() {
            Ok(c) => c,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return Ok(()),
        };
        conn.query_row("SELECT 1", [], |_| Ok(()))?;
        Ok(())
    }

    fn compact(&self, ns: &str) -> Result<u64, StoreError> {
        let before = unix_now().saturating_sub(self.retention.tombstone_horizon.as_secs());
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let top: Option<i64> = tx.query_row(
            "SELECT max(version) FROM docs WHERE ns = ?1 AND deleted AND changed_at < ?2",
            params![ns, before as i64],
            |r| r.get(0),
        )?;
        let Some(top) = top else {
            return Ok(0);
        };
        let n = tx.execute(
            "DELETE FROM docs WHERE ns = ?1 AND deleted AND version <= ?2",
            params![ns, top],
        )?;
        tx.execute(
            "UPDATE heads SET floor = max(floor, ?2) WHERE ns = ?1",
            params![ns, top],
        )?;
        tx.commit()?;
        Ok(n as u64)
    }

    fn namespaces(&self) -> Result<Vec<String>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare("SELECT ns FROM heads ORDER BY ns")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use syncstore_core::protocol::{is_temp_id, Change, Mutation, MutationResult, START_CURSOR};

    const LIMITS: ApplyLimits = ApplyLimits {
        max_doc_bytes: 1024,
        max_push_work_bytes: usize::MAX,
    };

    fn muts(v: Value) -> Vec<Mutation> {
        serde_json::from_value(v).unwrap()
    }

    fn push(s: &SqliteStore, ns: &str, client: &str, m: Value) -> PushOutcome {
        let req = PushRequest {
            client_id: client.into(),
            mutations: muts(m),
        };
        s.push(ns, &req, LIMITS).unwrap()
    }

    fn status(r: &MutationResult) -> &'static str {
        match r {
            MutationResult::Applied { .. } => "applied",
            MutationResult::Conflict { .. } => "conflict",
            MutationResult::Rejected { .. } => "rejected",
        }
    }

    fn gp<'a>(namespace: &'a str, req: &'a PushRequest) -> GroupPush<'a> {
        GroupPush {
            namespace,
            owner: None,
            req,
        }
    }

    fn all(s: &SqliteStore, ns: &str) -> Vec<Change> {
        s.pull(ns, None, None, 1000).unwrap().changes
    }

    #[test]
    fn temp_ids_map_once_and_references_follow() {
        let s = SqliteStore::open(":memory:").unwrap();
        let out = push(
            &s,
            "n",
            "c1",
            json!([
                {"mid": 1, "coll": "lists", "op": "insert", "id": "tmp_l", "doc": {"name": "L"}},
                {"mid": 2, "coll": "todos", "op": "insert", "id": "tmp_t", "doc": {"list": "tmp_l", "tags": ["tmp_l", "x"]}},
            ]),
        );
        let l = out.response.id_map["tmp_l"].clone();
        let t = out.response.id_map["tmp_t"].clone();
        assert!(!is_temp_id(&l) && l != t);
        let docs = all(&s, "n");
        let todo = docs
            .iter()
            .find(|c| c.id == t)
            .unwrap()
            .doc
            .as_ref()
            .unwrap()
            .parse();
        assert_eq!(todo["list"], json!(l));
        assert_eq!(todo["tags"], json!([l, "x"]));
        assert_eq!(todo["id"], json!(t));
        // A later batch names the tmp id and a reference to it in a patch.
        let out = push(
            &s,
            "n",
            "c1",
            json!([
                {"mid": 3, "coll": "todos", "op": "update", "id": "tmp_t", "patch": {"other": "tmp_l"}},
                {"mid": 4, "coll": "lists", "op": "insert", "id": "tmp_l", "doc": {"name": "again"}},
            ]),
        );
        assert!(matches!(&out.response.results[0], MutationResult::Applied { id, .. } if *id == t));
        // The re-sent insert keeps its canonical id and changes nothing.
        assert!(matches!(&out.response.results[1], MutationResult::Applied { id, .. } if *id == l));
        assert_eq!(out.changes.len(), 1);
        let todo = all(&s, "n")
            .into_iter()
            .find(|c| c.id == t)
            .unwrap()
            .doc
            .unwrap()
            .parse();
        assert_eq!(todo["other"], json!(l));
        // Another client's tmp ids are its own.
        let out = push(
            &s,
            "n",
            "c2",
            json!([
                {"mid": 1, "coll": "todos", "op": "update", "id": "tmp_t", "patch": {"x": 1}},
            ]),
        );
        assert!(matches!(
            &out.response.results[0],
            MutationResult::Conflict {
                doc: None,
                version: None,
                ..
            }
        ));
    }

    #[test]
    fn replayed_mids_answer_the_stored_result() {
        let s = SqliteStore::open(":memory:").unwrap();
        let batch = json!([
            {"mid": 1, "coll": "c", "op": "insert", "id": "tmp_a", "doc": {"n": 1}},
            {"mid": 2, "coll": "c", "op": "update", "id": "tmp_a", "patch": {"n": 2}},
        ]);
        let first = push(&s, "n", "c1", batch.clone());
        for _ in 0..2 {
            let again = push(&s, "n", "c1", batch.clone());
            assert_eq!(again.response, first.response);
            assert!(again.changes.is_empty());
        }
        assert_eq!(all(&s, "n").len(), 1);
        let stale = push(
            &s,
            "n",
            "c1",
            json!([{"mid": 0, "coll": "c", "op": "delete", "id": "x"}]),
        );
        assert_eq!(status(&stale.response.results[0]), "rejected");
        assert_eq!(stale.response.last_mutation_id, 2);
    }

    #[test]
    fn field_level_conflicts() {
        let s = SqliteStore::open(":memory:").unwrap();
        let v1 = match &push(&s, "n", "a", json!([
            {"mid": 1, "coll": "c", "op": "insert", "id": "d", "doc": {"title": "t", "done": false, "meta": {"x": 1, "y": 1}}}
        ])).response.results[0] {
            MutationResult::Applied { version, .. } => *version,
            r => panic!("{r:?}"),
        };
        // Client a edits title; client b, based on v1, edits done: no conflict.
        let r = push(
            &s,
            "n",
            "a",
            json!([{"mid": 2, "coll": "c", "op": "update", "id": "d", "patch": {"title": "T"}, "base": v1}]),
        );
        assert_eq!(status(&r.response.results[0]), "applied");
        let r = push(
            &s,
            "n",
            "b",
            json!([{"mid": 1, "coll": "c", "op": "update", "id": "d", "patch": {"done": true, "meta": {"y": 2}}, "base": v1}]),
        );
        assert_eq!(status(&r.response.results[0]), "applied");
        // Same field from the old base: conflict, with the server doc.
        let r = push(
            &s,
            "n",
            "b",
            json!([{"mid": 2, "coll": "c", "op": "update", "id": "d", "patch": {"title": "B"}, "base": v1}]),
        );
        match &r.response.results[0] {
            MutationResult::Conflict {
                doc: Some(doc),
                version: Some(_),
                ..
            } => assert_eq!(doc["title"], "T"),
            other => panic!("{other:?}"),
        }
        // Parent of a changed path conflicts too; a sibling does not.
        let r = push(
            &s,
            "n",
            "b",
            json!([
                {"mid": 3, "coll": "c", "op": "update", "id": "d", "patch": {"meta": null}, "base": v1},
                {"mid": 4, "coll": "c", "op": "update", "id": "d", "patch": {"meta": {"x": 5}}, "base": v1},
            ]),
        );
        assert_eq!(status(&r.response.results[0]), "conflict");
        assert_eq!(status(&r.response.results[1]), "applied");
        // Replace from an old base conflicts; blind replace applies.
        let r = push(
            &s,
            "n",
            "b",
            json!([
                {"mid": 5, "coll": "c", "op": "replace", "id": "d", "doc": {"z": 1}, "base": v1},
                {"mid": 6, "coll": "c", "op": "replace", "id": "d", "doc": {"z": 1}},
            ]),
        );
        assert_eq!(status(&r.response.results[0]), "conflict");
        assert_eq!(status(&r.response.results[1]), "applied");
        // Delete vs update.
        let head = all(&s, "n")[0].version;
        let r = push(
            &s,
            "n",
            "a",
            json!([{"mid": 3, "coll": "c", "op": "delete", "id": "d", "base": head}]),
        );
        assert_eq!(status(&r.response.results[0]), "applied");
        let r = push(
            &s,
            "n",
            "b",
            json!([{"mid": 7, "coll": "c", "op": "update", "id": "d", "patch": {"z": 2}, "base": head}]),
        );
        assert!(matches!(
            &r.response.results[0],
            MutationResult::Conflict {
                doc: None,
                version: Some(_),
                ..
            }
        ));
        // Update vs later delete: a delete based before an update conflicts.
        push(
            &s,
            "n",
            "a",
            json!([{"mid": 4, "coll": "c", "op": "insert", "id": "e", "doc": {"k": 1}}]),
        );
        let base = all(&s, "n").last().unwrap().version;
        push(
            &s,
            "n",
            "a",
            json!([{"mid": 5, "coll": "c", "op": "update", "id": "e", "patch": {"k": 2}}]),
        );
        let r = push(
            &s,
            "n",
            "b",
            json!([{"mid": 8, "coll": "c", "op": "delete", "id": "e", "base": base}]),
        );
        assert_eq!(status(&r.response.results[0]), "conflict");
        // Insert of an existing id conflicts; insert over a tombstone applies.
        let r = push(
            &s,
            "n",
            "b",
            json!([
                {"mid": 9, "coll": "c", "op": "insert", "id": "e", "doc": {}},
                {"mid": 10, "coll": "c", "op": "insert", "id": "d", "doc": {"back": true}},
            ]),
        );
        assert_eq!(status(&r.response.results[0]), "conflict");
        assert_eq!(status(&r.response.results[1]), "applied");
    }

    #[test]
    fn rejections_do_not_stop_the_batch() {
        let s = SqliteStore::open(":memory:").unwrap();
        let big = "x".repeat(2000);
        let r = push(
            &s,
            "n",
            "a",
            json!([
                {"mid": 1, "coll": "c", "op": "insert", "id": "a", "doc": {"big": big}},
                {"mid": 2, "coll": "c", "op": "insert", "id": "b"},
                {"mid": 3, "coll": "c", "op": "insert", "id": "c", "doc": {"n": 1}},
                {"mid": 4, "coll": "c", "op": "update", "id": "c", "patch": {"id": "other"}},
            ]),
        );
        let codes: Vec<_> = r
            .response
            .results
            .iter()
            .map(|r| match r {
                MutationResult::Rejected { code, .. } => code.as_str(),
                _ => status(r),
            })
            .collect();
        assert_eq!(
            codes,
            [
                "DOC_TOO_LARGE",
                "INVALID_MUTATION",
                "applied",
                "INVALID_PATCH"
            ]
        );
        assert_eq!(r.response.last_mutation_id, 4);
    }

    #[test]
    fn a_group_commits_every_push_but_the_one_that_fails() {
        let s = SqliteStore::open(":memory:").unwrap();
        push(
            &s,
            "n",
            "w",
            json!([{"mid": 1, "coll": "c", "op": "insert", "id": "bad", "doc": {"v": 1}}]),
        );
        // A stored row that cannot be decoded: touching it fails the push.
        s.lock()
            .execute("UPDATE docs SET fields = 'garbage' WHERE id = 'bad'", [])
            .unwrap();
        let req = |client: &str, m: Value| PushRequest {
            client_id: client.into(),
            mutations: muts(m),
        };
        let a = req(
            "a",
            json!([{"mid": 1, "coll": "c", "op": "insert", "id": "tmp_a", "doc": {"n": 1}}]),
        );
        // Writes a document, then fails on the corrupt one: all of it rolls back.
        let b = req(
            "b",
            json!([
                {"mid": 1, "coll": "c", "op": "insert", "id": "b1", "doc": {}},
                {"mid": 2, "coll": "c", "op": "update", "id": "bad", "patch": {"v": 2}},
            ]),
        );
        let c = req(
            "c",
            json!([{"mid": 5, "coll": "c", "op": "insert", "id": "c1", "doc": {}}]),
        );
        let a_again = a.clone();
        let out = s
            .push_group(
                &[gp("n", &a), gp("n", &b), gp("other", &c), gp("n", &a_again)],
                LIMITS,
                None,
            )
            .unwrap();
        assert_eq!(out.len(), 4);
        let a_out = out[0].as_ref().unwrap();
        assert!(
            matches!(out[1], Err(StoreError::Corrupt(_))),
            "{:?}",
            out[1]
        );
        let c_out = out[2].as_ref().unwrap();
        // The replay inside the group answers the first result, changes nothing.
        let replay = out[3].as_ref().unwrap();
        assert_eq!(replay.response, a_out.response);
        assert!(replay.changes.is_empty());
        // Each namespace has its own sequence.
        assert_eq!(a_out.changes[0].seq, 2);
        assert_eq!(c_out.changes[0].seq, 1);
        let ids: Vec<_> = all(&s, "n").into_iter().map(|c| c.id).collect();
        assert_eq!(
            ids,
            ["bad".to_string(), a_out.response.id_map["tmp_a"].clone()]
        );
        assert_eq!(all(&s, "other").len(), 1);
        assert_eq!(
            s.pull("n", Some("b"), None, 10).unwrap().last_mutation_id,
            0
        );
        // b's mids were not recorded: once fixed, its push applies whole.
        s.lock()
            .execute("UPDATE docs SET fields = '[]' WHERE id = 'bad'", [])
            .unwrap();
        let again = s.push("n", &b, LIMITS).unwrap();
        assert!(again
            .response
            .results
            .iter()
            .all(|r| status(r) == "applied"));
        assert_eq!(again.changes.len(), 2);
        // Seqs continue after the failed push: nothing of it was kept.
        assert_eq!(again.changes[0].seq, 3);
    }

    #[test]
    fn pull_pages_in_order_and_resyncs_bad_cursors() {
        let s = SqliteStore::open(":memory:").unwrap();
        for i in 1..=5u64 {
            push(
                &s,
                "n",
                "a",
                json!([{"mid": i, "coll": "c", "op": "insert", "id": format!("d{i}"), "doc": {}}]),
            );
            push(
                &s,
                "other",
                "a",
                json!([{"mid": i, "coll": "c", "op": "insert", "id": format!("o{i}"), "doc": {}}]),
            );
        }
        let mut cursor = START_CURSOR.to_string();
        let mut seen = Vec::new();
        for _ in 0..10 {
            let p = s.pull("n", Some("a"), Some(&cursor), 2).unwrap();
            assert!(!p.resync);
            assert_eq!(p.last_mutation_id, 5);
            seen.extend(p.changes.iter().map(|c| (c.seq, c.id.clone())));
            cursor = p.cursor;
            if !p.more {
                break;
            }
        }
        assert_eq!(
            seen.iter().map(|s| s.1.as_str()).collect::<Vec<_>>(),
            ["d1", "d2", "d3", "d4", "d5"]
        );
        assert!(seen.windows(2).all(|w| w[0].0 < w[1].0));
        // Caught up: the same cursor comes back with nothing.
        let p = s.pull("n", Some("a"), Some(&cursor), 2).unwrap();
        assert!(p.changes.is_empty() && !p.more && p.cursor == cursor);
        for bad in [
            "garbage",
            "",
            "1",
            "x.1",
            &format!("{}.999", s.cursors.epoch),
            &format!("{}.01", s.cursors.epoch),
            "other.3",
        ] {
            let p = s.pull("n", None, Some(bad), 10).unwrap();
            assert!(p.resync, "{bad}");
            assert_eq!(p.cursor, START_CURSOR);
        }
    }

    #[test]
    fn a_file_database_keeps_everything_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let cursor = {
            let s = SqliteStore::open(&path).unwrap();
            push(
                &s,
                "n",
                "a",
                json!([{"mid": 7, "coll": "c", "op": "insert", "id": "tmp_1", "doc": {"v": 1}}]),
            );
            s.pull("n", None, None, 10).unwrap().cursor
        };
        let s = SqliteStore::open(&path).unwrap();
        let p = s.pull("n", Some("a"), None, 10).unwrap();
        assert_eq!(p.changes.len(), 1);
        assert_eq!(p.last_mutation_id, 7);
        assert_eq!(p.cursor, cursor, "cursors stay valid across restarts");
        let r = push(
            &s,
            "n",
            "a",
            json!([{"mid": 7, "coll": "c", "op": "insert", "id": "tmp_1", "doc": {"v": 1}}]),
        );
        assert!(r.changes.is_empty());
        assert_eq!(r.response.id_map["tmp_1"], p.changes[0].id);
    }
}

#[cfg(test)]
mod migration_tests {
    use super::*;

    /// A database of the first schema (one global sequence in `meta`, no
    /// `heads`, no `user_version`) opens, and the cursors it issued stay valid.
    #[test]
    fn a_database_from_before_versioned_migrations_keeps_its_cursors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.sqlite");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(MIGRATIONS[0]).unwrap();
            c.execute_batch(
                "ALTER TABLE clients ADD COLUMN owner TEXT;
                 INSERT INTO meta VALUES ('epoch', 'oldepoch'), ('seq', '7');
                 INSERT INTO docs VALUES ('n', 'c', 'a', '{\"id\":\"a\"}', 0, 3, 3, '{}', NULL);
                 INSERT INTO docs VALUES ('m', 'c', 'b', '{\"id\":\"b\"}', 0, 7, 7, '{}', NULL);
                 INSERT INTO idmap VALUES ('n', 'w', 'tmp_a', 'a');",
            )
            .unwrap();
        }
        let s = SqliteStore::open(&path).unwrap();
        // Cursors issued at the old global head stay valid in every namespace.
        assert_eq!(s.cursor_seq("n", "oldepoch.7").unwrap(), Some(7));
        assert_eq!(s.cursor_seq("m", "oldepoch.7").unwrap(), Some(7));
        let p = s.pull("n", None, Some("oldepoch.2"), 10).unwrap();
        assert_eq!(p.changes.len(), 1);
        assert_eq!(p.cursor, "oldepoch.7");
        // New changes continue each namespace's sequence after the old head.
        let req = PushRequest {
            client_id: "w".into(),
            mutations: serde_json::from_value(serde_json::json!([
                {"mid": 1, "coll": "c", "op": "insert", "id": "x", "doc": {}}
            ]))
            .unwrap(),
        };
        let out = s
            .push(
                "n",
                &req,
                ApplyLimits {
                    max_doc_bytes: 1024,
                    max_push_work_bytes: usize::MAX,
                },
            )
            .unwrap();
        assert_eq!(out.changes[0].seq, 8);
        let version: i64 = s
            .lock()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version as usize, MIGRATIONS.len());
        drop(s);
        // Opening again applies nothing more.
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.cursor_seq("n", "oldepoch.8").unwrap(), Some(8));
    }
}

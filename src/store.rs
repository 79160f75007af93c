//! `SyncStore`: the JS API. Methods validate their input (in JS for
//! JSON-ness, in the core for everything else), then run one IndexedDB
//! transaction per call.

use crate::error::{self, closed, storage, JsResult};
use crate::events::Events;
use crate::glue;
use crate::idb::{self, committed, to_js, Source, CONFLICTS, META, OUTBOX, SERVER};
use crate::live::Live;
use crate::sync::{Ask, SyncOptions};
use crate::syncstate;
use crate::tabs::{self, TabSync};
use js_sys::{Array, Function, Promise};
use serde_json::{json, Value};
use std::cell::{Cell, OnceCell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use syncstore_core::ids;
use syncstore_core::query::{reads, Plan, Query, Reads};
use syncstore_core::schema::{Schema, SyncMode};
use syncstore_core::sync::plan::synced_spec;
use syncstore_core::write::{self, Key, Stored, WriteKind};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{future_to_promise, JsFuture};
use web_sys::{IdbDatabase, IdbObjectStore, IdbTransaction, IdbTransactionMode};

type LostFn = Closure<dyn Fn(String, JsValue, JsValue)>;

/// Shared state behind a `SyncStore` handle.
pub struct Inner {
    pub name: String,
    pub schema: Schema,
    db: RefCell<Option<IdbDatabase>>,
    pub closed: Cell<bool>,
    rng: Cell<u64>,
    pub client_id: RefCell<String>,
    layout: JsValue,
    rekey: Closure<dyn Fn(String, Array) -> Array>,
    on_lost: RefCell<Option<LostFn>>,
    /// A connect under way (a `Promise` of the connection): calls that
    /// find no connection meanwhile wait for it instead of opening their
    /// own, so there is one connection, the one whose watcher is alive.
    connecting: RefCell<Option<Promise>>,
    /// The browser closed the connection and no call has reopened it yet.
    pub lost: Cell<bool>,
    /// Why the store closed itself (faults.rs), instead of `CLOSED`.
    pub closed_by: RefCell<Option<JsValue>>,
    pub live: Live,
    pub events: Events,
    /// Sync (leading or following), when the store was opened with `sync`.
    pub sync: OnceCell<Rc<TabSync>>,
    /// Temporary ids the server has mapped, to their canonical ids: calls
    /// naming a temporary id still reach its document.
    aliases: RefCell<HashMap<String, String>>,
    /// Without sync: outbox entries at open plus this tab's writes since.
    local_pending: Cell<usize>,
    /// The clock stamp of this tab's last outbox entry (see `write_stamp`).
    last_stamp: Cell<u64>,
    /// Conflict resolver functions by collection (`conflicts: fn`).
    pub resolvers: BTreeMap<String, Function>,
    /// The sync server's document limit, once the sync loop learnt it.
    pub server_max_doc_bytes: Cell<Option<usize>>,
}

fn splitmix(state: &Cell<u64>) -> u64 {
    let s = state.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
    state.set(s);
    let mut z = s;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Inner {
    pub fn check_open(&self) -> JsResult<()> {
        if !self.closed.get() {
            return Ok(());
        }
        Err(self.closed_by.borrow().clone().unwrap_or_else(closed))
    }

    /// Forgets the connection (the next call reopens it).
    pub fn drop_connection(&self) {
        self.db.borrow_mut().take();
    }

    /// Closes the store: sync, the connection, subscriptions, channel and
    /// listeners. Later calls reject (`check_open`).
    pub fn shut(&self) {
        if self.closed.replace(true) {
            return;
        }
        if let Some(sync) = self.sync.get() {
            sync.close();
        }
        if let Some(db) = self.db.borrow_mut().take() {
            db.close();
        }
        self.live.close();
        self.events.close();
    }

    fn random(&self) -> u128 {
        (u128::from(splitmix(&self.rng)) << 64) | u128::from(splitmix(&self.rng))
    }

    pub fn set_aliases(&self, map: &BTreeMap<String, String>) {
        *self.aliases.borrow_mut() = map.iter().map(|(a, b)| (a.clone(), b.clone())).collect();
    }

    pub fn add_alias(&self, tmp: &str, id: &str) {
        self.aliases
            .borrow_mut()
            .insert(tmp.to_owned(), id.to_owned());
    }

    /// Emits a sync event here and publishes it to the other instances of
    /// this database (followers of the sync leader, tabs.rs).
    pub fn publish(&self, kind: &str, payload: Value) {
        self.events.emit_value(kind, &payload);
        self.live.post(&to_js(
            &json!({"sync": {"t": "event", "kind": kind, "payload": payload}}),
        ));
    }

    pub fn local_pending(&self) -> usize {
        self.local_pending.get()
    }

    /// The canonical id of a mapped temporary id, else `id`.
    pub fn resolve_id(&self, id: &str) -> String {
        self.aliases
            .borrow()
            .get(id)
            .cloned()
            .unwrap_or_else(|| id.to_owned())
    }

    pub fn new_temp_id(&self) -> String {
        ids::temp_id(js_sys::Date::now() as u64, self.random())
    }

    /// The open connection, reopened if the browser closed it or another
    /// tab's upgrade asked it to step aside.
    pub async fn db(self: &Rc<Self>) -> JsResult<IdbDatabase> {
        self.check_open()?;
        if let Some(db) = self.db.borrow().clone() {
            return Ok(db);
        }
        let pending = self.connecting.borrow().clone();
        let pending = pending.unwrap_or_else(|| {
            let inner = self.clone();
            let p = future_to_promise(async move {
                let got = inner.connect().await;
                inner.connecting.borrow_mut().take();
                let db = got?;
                inner.lost.set(false);
                *inner.db.borrow_mut() = Some(db.clone());
                Ok(db.into())
            });
            *self.connecting.borrow_mut() = Some(p.clone());
            p
        });
        match JsFuture::from(pending).await {
            Ok(db) => Ok(db.unchecked_into()),
            Err(e) if self.lost.get() || !self.client_id.borrow().is_empty() => {
                Err(crate::faults::reopen_failed(self, &e))
            }
            Err(e) => Err(e),
        }
    }

    async fn connect(self: &Rc<Self>) -> JsResult<IdbDatabase> {
        let weak = Rc::downgrade(self);
        let lost = LostFn::new(move |why: String, old: JsValue, new: JsValue| {
            if let Some(inner) = weak.upgrade() {
                crate::faults::lost(&inner, &why, &old, &new);
            }
        });
        let p = glue::open_db(
            &self.name,
            &self.layout,
            self.rekey.as_ref().unchecked_ref(),
            lost.as_ref().unchecked_ref(),
        );
        *self.on_lost.borrow_mut() = Some(lost);
        let db: IdbDatabase = JsFuture::from(p)
            .await
            .map_err(|e| storage(e, "open"))?
            .unchecked_into();
        if self.closed.get() {
            db.close();
            return Err(closed());
        }
        Ok(db)
    }

    pub fn tx(db: &IdbDatabase, stores: &[&str], write: bool) -> JsResult<IdbTransaction> {
        let names: Array = stores.iter().map(|s| JsValue::from_str(s)).collect();
        let mode = if write {
            IdbTransactionMode::Readwrite
        } else {
            IdbTransactionMode::Readonly
        };
        db.transaction_with_str_sequence_and_mode(&names, mode)
            .map_err(|e| storage(e, "transaction"))
    }

    pub fn store(tx: &IdbTransaction, name: &str) -> JsResult<IdbObjectStore> {
        tx.object_store(name)
            .map_err(|e| storage(e, "object store"))
    }

    /// Validates and applies a batch of ops in one transaction with their
    /// outbox entries. Returns the id each op addressed.
    ///
    /// `resolving`: the document whose unresolved conflict these ops
    /// resolve: in the same transaction its conflict entry goes and its
    /// record loses the conflict marker.
    ///
    /// `modify`: an `update(coll, id, fn)` function, called with the
    /// current document once it is read (in this transaction, so no other
    /// write comes between); its answer becomes the update's patch.
    pub async fn write(
        self: &Rc<Self>,
        ops: Value,
        single: bool,
        resolving: Option<&Key>,
        modify: Option<&Function>,
    ) -> JsResult<Vec<String>> {
        self.check_open()?;
        // Counted from the start, so that writes issued in one tick
        // produce one subscription callback.
        let _guard = self.live.write_started(self);
        let mut muts = write::parse_ops(&ops, &self.schema, single, || self.new_temp_id())
            .map_err(error::core)?;
        write::resolve_aliases(&mut muts, &self.aliases.borrow());
        let mut stores: Vec<&str> = muts.iter().map(|m| m.coll.as_str()).collect();
        if let Some((coll, _)) = resolving {
            stores.push(coll);
            stores.push(CONFLICTS);
        }
        stores.sort_unstable();
        stores.dedup();
        stores.push(OUTBOX);
        // The first edit of a synced document saves the server's copy.
        let edits_synced = muts.iter().any(|m| {
            m.kind != write::OpKind::Insert && synced_spec(&self.schema, &m.coll).is_some()
        });
        if edits_synced {
            stores.push(SERVER);
        }
        let db = self.db().await?;
        let tx = Self::tx(&db, &stores, true)?;
        let mut reads = write::reads_needed(&muts);
        if let Some(key) = resolving {
            if !reads.contains(key) {
                reads.push(key.clone());
            }
        }
        let mut resolved_record = JsValue::UNDEFINED;
        let mut current: HashMap<Key, Option<Stored>> = HashMap::with_capacity(reads.len());
        if !reads.is_empty() {
            let reqs = Array::new();
            for (coll, id) in &reads {
                let req = Self::store(&tx, coll)?
                    .get(&JsValue::from_str(id))
                    .map_err(|e| storage(e, "read"))?;
                reqs.push(&req);
            }
            // With each synced document's record, its `_server` entry: a
            // settle marker there outranks the record's version (the step
            // did not write the record again when the write settled).
            let mut at = Vec::with_capacity(reads.len());
            for (coll, id) in &reads {
                if edits_synced && synced_spec(&self.schema, coll).is_some() {
                    let key: Array = [coll, id].iter().map(|s| JsValue::from_str(s)).collect();
                    let req = Self::store(&tx, SERVER)?
                        .get(&key)
                        .map_err(|e| storage(e, "read"))?;
                    at.push(Some(reqs.push(&req) as usize - 1));
                } else {
                    at.push(None);
                }
            }
            let got: Array = JsFuture::from(glue::requests(&reqs))
                .await
                .map_err(|e| storage(e, "read"))?
                .unchecked_into();
            for (i, key) in reads.into_iter().enumerate() {
                let rec = got.get(i as u32);
                if Some(&key) == resolving {
                    resolved_record = rec.clone();
                }
                let server = at[i].map(|j| got.get(j as u32));
                current.insert(key, stored(&rec, server.as_ref()));
            }
        }
        if let Some(key) = resolving {
            if let Some(Some(s)) = current.get_mut(key) {
                s.conflict = false;
            }
        }
        if let Some(f) = modify {
            match self.modified(f, &muts, &current) {
                Ok(m) => muts = m,
                Err(e) => {
                    let _ = tx.abort();
                    return Err(e);
                }
            }
        }
        let limit = self.server_max_doc_bytes.get();
        let mut plan = match write::apply_limited(&muts, &self.schema, single, &current, limit) {
            Ok(p) => p,
            Err(e) => {
                let _ = tx.abort();
                return Err(error::core(e));
            }
        };
        // Each entry carries the clock stamp of its write: the sync step
        // keeps it (and so does not store the entry again) unless its
        // clock has run ahead.
        for e in &mut plan.outbox {
            let t = syncstore_core::sync::write_stamp(
                self.last_stamp.get(),
                js_sys::Date::now() as u64,
            );
            self.last_stamp.set(t);
            e["ts"] = serde_json::json!(t);
        }
        // The whole plan crosses once (one JSON parse); glue.js issues its
        // requests, unawaited, and returns those of the adds.
        let add_ops: Vec<&write::Write> = plan
            .writes
            .iter()
            .filter(|w| w.kind == WriteKind::Add)
            .collect();
        let adds = glue::write_plan(
            &tx,
            &to_js(&PlanJs {
                w: plan
                    .writes
                    .iter()
                    .map(|w| {
                        let kind = match w.kind {
                            WriteKind::Add => 0,
                            WriteKind::Put => 1,
                            WriteKind::Delete => 2,
                        };
                        (kind, w.coll.as_str(), w.id.as_str())
                    })
                    .collect(),
                r: plan
                    .writes
                    .iter()
                    .filter_map(|w| w.record.as_ref())
                    .collect(),
                o: &plan.outbox,
                c: &plan.server_copies,
                outbox: OUTBOX,
                server: SERVER,
            }),
        )
        .map_err(|e| storage(e, "write"))?;
        let mut colls = plan.colls.clone();
        if let Some((coll, id)) = resolving {
            let untouched = !plan.writes.iter().any(|w| &w.coll == coll && &w.id == id);
            if untouched && !resolved_record.is_undefined() {
                let _ = js_sys::Reflect::delete_property(
                    resolved_record.unchecked_ref::<js_sys::Object>(),
                    &"c".into(),
                );
                Self::store(&tx, coll)?
                    .put(&resolved_record)
                    .map_err(|e| storage(e, "write"))?;
            }
            let key: Array = [coll, id].iter().map(|s| JsValue::from_str(s)).collect();
            Self::store(&tx, CONFLICTS)?
                .delete(&key)
                .map_err(|e| storage(e, "write"))?;
            if !colls.contains(coll) {
                colls.push(coll.clone());
            }
        }
        if let Err(e) = committed(&tx, "write").await {
            let i = glue::failed_request(&adds);
            if i >= 0 {
                let w = add_ops[i as usize];
                let path = if single {
                    "doc.id".to_owned()
                } else {
                    format!("ops[{}].doc.id", w.op)
                };
                return Err(error::core(syncstore_core::CoreError::AlreadyExists {
                    path,
                    coll: w.coll.clone(),
                    id: w.id.clone(),
                }));
            }
            return Err(e);
        }
        if resolving.is_some() {
            // The conflict's record changed outside the plan's writes.
            self.live.changed(self, &colls, true);
        } else {
            self.live.wrote(self, &colls, &plan.writes);
        }
        crate::changes::wrote(self, &plan.writes);
        if !plan.outbox.is_empty() {
            let first = glue::first_mid(&adds);
            crate::trace::queued(self, first, &plan.outbox);
            self.local_pending
                .set(self.local_pending.get() + plan.outbox.len());
            if let Some(sync) = self.sync.get() {
                sync.wrote(
                    first,
                    std::mem::take(&mut plan.outbox),
                    self.live.in_streak(crate::sync::WRITE_GAP_MS),
                );
            }
        }
        Ok(plan.ids)
    }

    /// The single update of `muts` with its patch from `f`, called on the
    /// document read for it: `f`'s return value is a merge patch; if it
    /// returns nothing, the document it was given (changed in place) is
    /// the new document, sent as the patch from the old one.
    fn modified(
        &self,
        f: &Function,
        muts: &[write::Mutation],
        current: &HashMap<Key, Option<Stored>>,
    ) -> JsResult<Vec<write::Mutation>> {
        let m = &muts[0];
        let key = (m.coll.clone(), m.id.clone());
        let Some(Some(cur)) = current.get(&key) else {
            return Err(error::core(syncstore_core::CoreError::NotFound {
                path: "id".into(),
                coll: m.coll.clone(),
                id: m.id.clone(),
            }));
        };
        let text = serde_json::to_string(&cur.doc).expect("JSON values serialize");
        let answer = glue::call_modifier(f, &glue::parse_json(&JsValue::from_str(&text)))?;
        let (whole, text) = (answer.get(0).is_truthy(), answer.get(1).as_string());
        let body: Value =
            serde_json::from_str(&text.unwrap_or_default()).expect("JSON.stringify output parses");
        let patch = match (whole, &cur.doc, &body) {
            (true, Value::Object(from), Value::Object(to)) => {
                Value::Object(syncstore_core::sync::policy::diff_patch(from, to))
            }
            _ => body,
        };
        let op = json!([{"op": "update", "coll": m.coll, "id": m.id, "patch": patch}]);
        let mut out = write::parse_ops(&op, &self.schema, true, || self.new_temp_id())
            .map_err(error::core)?;
        write::resolve_aliases(&mut out, &self.aliases.borrow());
        Ok(out)
    }

    /// Runs a query: the records read and, when the core had to filter or
    /// sort them, the positions of the result rows.
    pub async fn run_query(
        self: &Rc<Self>,
        coll: &str,
        q: &Query,
    ) -> JsResult<(Array, Option<Vec<u32>>)> {
        let spec = self.schema.collection(coll).map_err(error::core)?;
        let p = match reads(spec, q) {
            Reads::One(p) => p,
            Reads::Union(plans) => return self.run_union(coll, q, &plans).await,
        };
        if p.empty || q.limit == Some(0) {
            return Ok((Array::new(), None));
        }
        let db = self.db().await?;
        let tx = Self::tx(&db, &[coll], false)?;
        let source = Source::open(Self::store(&tx, coll)?, p.index.as_deref())?;
        let range = idb::range(&p)?;
        let limit = q.limit.map(|l| l.min(u32::MAX as usize) as u32);
        if p.exact && p.ordered {
            let records = if !q.desc && q.offset == 0 {
                source.get_all(range.as_ref(), limit).await?
            } else {
                source
                    .ordered(range.as_ref(), q.desc, q.offset as u32, limit)
                    .await?
            };
            return Ok((records, None));
        }
        let records = source.get_all(range.as_ref(), None).await?;
        Self::filter_records(coll, q, records)
    }

    /// The records the core must filter, order and slice, with the
    /// positions of the result rows.
    fn filter_records(
        coll: &str,
        q: &Query,
        records: Array,
    ) -> JsResult<(Array, Option<Vec<u32>>)> {
        let text: String = glue::docs_text(&records, None).into();
        let docs: Vec<Value> = serde_json::from_str(&text).map_err(|e| {
            glue::make_error("STORAGE", &format!("corrupt record in {coll}: {e}"), false)
        })?;
        Ok((records, Some(q.run(&docs))))
    }

    /// An `$or` read branch by branch: every branch's key range in one
    /// transaction, the records merged without duplicates, then filtered,
    /// ordered and sliced as one result.
    async fn run_union(
        self: &Rc<Self>,
        coll: &str,
        q: &Query,
        plans: &[Plan],
    ) -> JsResult<(Array, Option<Vec<u32>>)> {
        if plans.is_empty() || q.limit == Some(0) {
            return Ok((Array::new(), None));
        }
        let db = self.db().await?;
        let tx = Self::tx(&db, &[coll], false)?;
        let store = Self::store(&tx, coll)?;
        let mut reqs = vec![];
        for p in plans {
            let source = Source::open(store.clone(), p.index.as_deref())?;
            reqs.push(source.get_all_request(idb::range(p)?.as_ref(), None)?);
        }
        let got = idb::wait_all(&reqs.iter().collect::<Vec<_>>(), "read").await?;
        let records = glue::union_records(&got.into_iter().collect());
        Self::filter_records(coll, q, records)
    }

    pub async fn count(self: &Rc<Self>, coll: &str, q: &Query) -> JsResult<u32> {
        let spec = self.schema.collection(coll).map_err(error::core)?;
        let Reads::One(p) = reads(spec, q) else {
            let (_, picks) = self.run_query(coll, q).await?;
            return Ok(picks.map_or(0, |p| p.len() as u32));
        };
        if p.empty {
            return Ok(0);
        }
        if p.exact {
            let db = self.db().await?;
            let tx = Self::tx(&db, &[coll], false)?;
            let source = Source::open(Self::store(&tx, coll)?, p.index.as_deref())?;
            return source.count(idb::range(&p)?.as_ref()).await;
        }
        let (records, picks) = self.run_query(coll, q).await?;
        Ok(picks.map_or(records.length(), |p| p.len() as u32))
    }

    async fn outbox_count(self: &Rc<Self>) -> JsResult<u32> {
        let db = self.db().await?;
        let tx = Self::tx(&db, &[OUTBOX], false)?;
        let n = JsFuture::from(glue::count_outbox(&Self::store(&tx, OUTBOX)?))
            .await
            .map_err(|e| storage(e, "count outbox"))?;
        Ok(n.as_f64().unwrap_or(0.0) as u32)
    }

    async fn load_client_id(self: &Rc<Self>) -> JsResult<()> {
        let db = self.db().await?;
        let tx = Self::tx(&db, &[META], true)?;
        let meta = Self::store(&tx, META)?;
        let req = meta
            .get(&"clientId".into())
            .map_err(|e| storage(e, "read"))?;
        let got = idb::wait(&req, "read clientId").await?;
        let id = match js_sys::Reflect::get(&got, &"v".into())
            .ok()
            .and_then(|v| v.as_string())
        {
            Some(id) => id,
            None => {
                let id = ids::client_id(self.random());
                meta.put(&to_js(&json!({"k": "clientId", "v": id})))
                    .map_err(|e| storage(e, "write"))?;
                id
            }
        };
        committed(&tx, "clientId").await?;
        *self.client_id.borrow_mut() = id;
        Ok(())
    }
}

/// One write's requests as glue.js `writePlan` takes them.
#[derive(serde::Serialize)]
struct PlanJs<'a> {
    /// `[kind, coll, id]`: 0 add, 1 put, 2 delete.
    w: Vec<(u8, &'a str, &'a str)>,
    /// The records of the adds and puts, in order.
    r: Vec<&'a Value>,
    /// Outbox entries.
    o: &'a [Value],
    /// Server copies to put (over a settle marker, if there is one).
    c: &'a [Value],
    outbox: &'static str,
    server: &'static str,
}

/// A record's id, document text, parsed document and server version.
fn record_parts(rec: &JsValue) -> Option<(String, String, Value, Option<u64>)> {
    let get = |k: &str| js_sys::Reflect::get(rec, &k.into()).ok();
    let id = get("id")?.as_string()?;
    let text = get("d")?.as_string()?;
    let doc = serde_json::from_str(&text).ok()?;
    let version = get("v").and_then(|v| v.as_f64()).map(|v| v as u64);
    Some((id, text, doc, version))
}

/// True if the record carries the marker `flag`: `c` (an unresolved
/// conflict) or `s` (`_server` holds the server's copy of the document).
fn has_flag(rec: &JsValue, flag: &str) -> bool {
    js_sys::Reflect::get(rec, &flag.into()).is_ok_and(|c| c.is_truthy())
}

/// A record as the write path sees it, and its document's JSON text.
fn stored_parts(rec: &JsValue) -> Option<(String, String, Stored)> {
    let (id, text, doc, version) = record_parts(rec)?;
    let gen = js_sys::Reflect::get(rec, &"g".into())
        .ok()
        .and_then(|g| g.as_f64())
        .map_or(0, |g| g as u64);
    let s = Stored {
        doc,
        version,
        gen,
        conflict: has_flag(rec, "c"),
        server_copy: has_flag(rec, "s"),
    };
    Some((id, text, s))
}

/// A record as the write path sees it, given its document's `_server`
/// entry (`server`: read for synced collections): a full copy there means
/// the engine has the server's document (so no copy is saved again, and the
/// record gets `s`); a settle marker (`m`) gives the server version and
/// generation of the record's document, which the record's own `v` and `s`
/// may not show yet (plan.rs `settle_marker`).
fn stored(rec: &JsValue, server: Option<&JsValue>) -> Option<Stored> {
    if rec.is_undefined() {
        return None;
    }
    let mut s = stored_parts(rec)?.2;
    let Some(entry) = server.filter(|e| e.is_object()) else {
        return Some(s);
    };
    if has_flag(entry, "m") {
        let num = |k: &str| {
            js_sys::Reflect::get(entry, &k.into())
                .ok()
                .and_then(|v| v.as_f64())
        };
        s.version = num("version").map(|v| v as u64);
        s.gen = num("g").map_or(0, |g| g as u64);
        s.server_copy = false;
    } else {
        s.server_copy = true;
    }
    Some(s)
}

/// Re-computes index keys of existing records after an index was added.
fn rekey(schema: &Schema, coll: &str, records: &Array) -> Array {
    let Some(spec) = schema.collections.get(coll) else {
        return Array::new();
    };
    let out = Array::new();
    for rec in records.iter() {
        // The markers stay (an unresolved conflict, the server's copy).
        if let Some((id, text, s)) = stored_parts(&rec) {
            out.push(&to_js(&write::stored_record(spec, &id, &s, text)));
        }
    }
    out
}

/// A local-first document store over IndexedDB.
#[wasm_bindgen]
pub struct SyncStore {
    inner: Rc<Inner>,
}

fn parse_json(v: &JsValue, path: &str, code: &str) -> JsResult<Value> {
    if v.is_undefined() || v.is_null() {
        return Ok(Value::Null);
    }
    let text = glue::encode_json(v, path, code)?;
    Ok(serde_json::from_str(&text).expect("JSON.stringify output parses"))
}

fn id_arg(id: &JsValue) -> JsResult<Value> {
    match id.as_string() {
        Some(s) => Ok(Value::String(s)),
        None => Err(glue::make_error(
            "INVALID_ID",
            &format!(
                "id: an id must be a string, got {}",
                id.js_typeof().as_string().unwrap_or_default()
            ),
            false,
        )),
    }
}

/// A list of ids (`getMany`): an array of strings.
fn ids_arg(ids: &JsValue) -> JsResult<Vec<String>> {
    if !Array::is_array(ids) {
        return Err(glue::make_error(
            "INVALID_ID",
            "ids: an array of ids is required",
            false,
        ));
    }
    Array::from(ids)
        .iter()
        .enumerate()
        .map(|(i, id)| {
            id.as_string().filter(|s| !s.is_empty()).ok_or_else(|| {
                glue::make_error(
                    "INVALID_ID",
                    &format!("ids[{i}]: an id must be a non-empty string"),
                    false,
                )
            })
        })
        .collect()
}

fn coll_arg(coll: &JsValue) -> JsResult<String> {
    coll.as_string().ok_or_else(|| {
        glue::make_error(
            "UNKNOWN_COLLECTION",
            "coll: a collection name must be a string",
            false,
        )
    })
}

/// A collection argument that names a declared collection.
fn known_coll(inner: &Inner, coll: &JsValue) -> JsResult<String> {
    let coll = coll_arg(coll)?;
    inner.schema.collection(&coll).map_err(error::core)?;
    Ok(coll)
}

/// Runs `f` as a promise; argument errors reject it rather than throwing.
fn promise<F>(f: F) -> Promise
where
    F: std::future::Future<Output = JsResult<JsValue>> + 'static,
{
    future_to_promise(f)
}

impl SyncStore {
    /// Runs one op as a batch of one. Resolves with the id for an insert,
    /// with nothing otherwise.
    fn one_op(
        &self,
        op: &'static str,
        coll: JsValue,
        id: Option<JsValue>,
        body: Option<(&'static str, JsValue)>,
    ) -> Promise {
        let inner = self.inner.clone();
        // `update(coll, id, fn)`: the patch comes from `fn`, in the write.
        let (body, modify) = match body {
            Some(("patch", f)) if f.is_function() => {
                (Some(("patch", to_js(&json!({})))), Some(Function::from(f)))
            }
            other => (other, None),
        };
        promise(async move {
            let mut m = serde_json::Map::new();
            m.insert("op".into(), json!(op));
            m.insert("coll".into(), json!(coll_arg(&coll)?));
            if let Some(id) = id {
                m.insert("id".into(), id_arg(&id)?);
            }
            if let Some((field, v)) = body {
                let code = if field == "patch" {
                    "INVALID_PATCH"
                } else {
                    "INVALID_DOCUMENT"
                };
                m.insert(field.into(), parse_json(&v, field, code)?);
            }
            let ids = inner.write(json!([m]), true, None, modify.as_ref()).await?;
            Ok(if op == "insert" {
                JsValue::from_str(&ids[0])
            } else {
                JsValue::UNDEFINED
            })
        })
    }
}

impl SyncStore {
    fn set_cut_off(&self, cut_off: bool) -> JsResult<()> {
        self.inner.check_open()?;
        match self.inner.sync.get() {
            Some(s) => {
                s.set_cut_off(cut_off);
                Ok(())
            }
            None => Err(glue::make_error(
                "SYNC_DISABLED",
                "the store was opened without sync options",
                false,
            )),
        }
    }

    /// The sync loop and a collection it syncs, for `push`, `pull` and
    /// `divergence`.
    fn synced_coll(&self, coll: &JsValue) -> JsResult<(Rc<TabSync>, String)> {
        self.inner.check_open()?;
        let coll = coll_arg(coll)?;
        let spec = self.inner.schema.collection(&coll).map_err(error::core)?;
        let disabled = |why: &str| glue::make_error("SYNC_DISABLED", why, false);
        let Some(s) = self.inner.sync.get() else {
            return Err(disabled("the store was opened without sync options"));
        };
        if spec.sync == SyncMode::Local {
            return Err(disabled(&format!(
                "coll: collection {coll:?} is local (sync: \"local\")"
            )));
        }
        Ok((s.clone(), coll))
    }
}

#[wasm_bindgen]
impl SyncStore {
    /// Opens (creating or upgrading) the store.
    ///
    /// @example
    /// const db = await SyncStore.open({ name: "app", collections: {
    ///   todos: { indexes: ["done", "createdAt", ["listId", "createdAt"]] } } });
    pub async fn open(
        #[wasm_bindgen(unchecked_param_type = "OpenOptions")] options: JsValue,
    ) -> Result<SyncStore, JsValue> {
        let taken = glue::take_resolvers(&options);
        let opts = parse_json(&taken.get(0), "options", "INVALID_OPTIONS")?;
        let resolver_fns = taken.get(1);
        let name = match opts.get("name") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => {
                return Err(glue::make_error(
                    "INVALID_OPTIONS",
                    "options.name must be a non-empty string",
                    false,
                ))
            }
        };
        let schema = Schema::from_options(&opts).map_err(error::core)?;
        match opts.get("persist") {
            None | Some(Value::Bool(false)) => {}
            Some(Value::Bool(true)) => glue::persist(),
            Some(_) => {
                return Err(glue::make_error(
                    "INVALID_OPTIONS",
                    "options.persist must be a boolean",
                    false,
                ))
            }
        }
        let sync = SyncOptions::parse(&opts, taken.get(2).dyn_into::<Function>().ok())?;
        let mut resolvers = BTreeMap::new();
        for (coll, spec) in &schema.collections {
            if spec.conflicts != syncstore_core::schema::ConflictMode::Custom {
                continue;
            }
            match js_sys::Reflect::get(&resolver_fns, &coll.into())
                .ok()
                .and_then(|f| f.dyn_into::<Function>().ok())
            {
                Some(f) => {
                    resolvers.insert(coll.clone(), f);
                }
                None => {
                    return Err(glue::make_error(
                        "INVALID_SCHEMA",
                        &format!("collections.{coll}.conflicts: \"custom\" needs a resolver function in its place"),
                        false,
                    ))
                }
            }
        }
        let seed = glue::random_seed();
        let mut s = 0u64;
        for v in seed.iter() {
            s = (s << 32) ^ v.as_f64().unwrap_or(0.0) as u64 ^ (s >> 17);
        }
        let rekey_schema = schema.clone();
        let rekey =
            Closure::<dyn Fn(String, Array) -> Array>::new(move |coll: String, recs: Array| {
                rekey(&rekey_schema, &coll, &recs)
            });
        let inner = Rc::new(Inner {
            layout: to_js(&idb::layout(&schema)),
            name: name.clone(),
            schema,
            db: RefCell::new(None),
            closed: Cell::new(false),
            rng: Cell::new(s ^ js_sys::Date::now() as u64),
            client_id: RefCell::new(String::new()),
            rekey,
            on_lost: RefCell::new(None),
            connecting: RefCell::new(None),
            lost: Cell::new(false),
            closed_by: RefCell::new(None),
            live: Live::new(),
            events: Events::default(),
            sync: OnceCell::new(),
            aliases: RefCell::new(HashMap::new()),
            local_pending: Cell::new(0),
            last_stamp: Cell::new(0),
            resolvers,
            server_max_doc_bytes: Cell::new(None),
        });
        inner.db().await?;
        inner.load_client_id().await?;
        inner.live.listen(&inner, &name)?;
        crate::changes::ask(&inner);
        let n = inner.outbox_count().await?;
        inner.local_pending.set(n as usize);
        if let Some(opts) = sync {
            let handle = TabSync::start(&inner, opts).await?;
            let _ = inner.sync.set(handle);
        }
        Ok(SyncStore { inner })
    }

    /// Inserts a document; resolves with its id (the document's own `id`,
    /// or a generated temporary id starting with `tmp_`).
    #[wasm_bindgen(unchecked_return_type = "Promise<string>")]
    pub fn insert(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] coll: JsValue,
        #[wasm_bindgen(unchecked_param_type = "NewDoc")] doc: JsValue,
    ) -> Promise {
        self.one_op("insert", coll, None, Some(("doc", doc)))
    }

    /// Merges `patch` into the document (JSON merge patch: nested objects
    /// merge, `null` removes a field).
    ///
    /// Given a function instead, calls it with the current document inside
    /// the write's transaction (no write of this or another tab comes
    /// between the read and the write) and applies what it returns as the
    /// patch; if it returns nothing, the document it changed in place is
    /// the new one. It must be synchronous. If it throws, nothing is
    /// written and the call rejects with `UPDATER_FAILED` (its `cause` is
    /// what was thrown).
    ///
    /// @example
    /// await db.update("counters", "c", (doc) => ({ n: doc.n + 1 }));
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn update(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] coll: JsValue,
        #[wasm_bindgen(unchecked_param_type = "string")] id: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Patch | ((doc: Doc) => Patch | void)")]
        patch: JsValue,
    ) -> Promise {
        self.one_op("update", coll, Some(id), Some(("patch", patch)))
    }

    /// Replaces the whole document.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn replace(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] coll: JsValue,
        #[wasm_bindgen(unchecked_param_type = "string")] id: JsValue,
        #[wasm_bindgen(unchecked_param_type = "NewDoc")] doc: JsValue,
    ) -> Promise {
        self.one_op("replace", coll, Some(id), Some(("doc", doc)))
    }

    /// Deletes the document (a no-op if it does not exist).
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn delete(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] coll: JsValue,
        #[wasm_bindgen(unchecked_param_type = "string")] id: JsValue,
    ) -> Promise {
        self.one_op("delete", coll, Some(id), None)
    }

    /// Applies several ops across collections atomically: all or none.
    /// Resolves with the id each op addressed.
    ///
    /// @example
    /// const [id] = await db.batch([
    ///   { op: "insert", coll: "todos", doc: { text: "milk" } },
    ///   { op: "update", coll: "lists", id: "l1", patch: { count: 3 } },
    /// ]);
    #[wasm_bindgen(unchecked_return_type = "Promise<string[]>")]
    pub fn batch(&self, #[wasm_bindgen(unchecked_param_type = "Op[]")] ops: JsValue) -> Promise {
        let inner = self.inner.clone();
        promise(async move {
            let ops = parse_json(&ops, "ops", "INVALID_DOCUMENT")?;
            let ids = inner.write(ops, false, None, None).await?;
            Ok(ids.into_iter().map(JsValue::from).collect::<Array>().into())
        })
    }

    /// The document with this id, or `undefined`.
    #[wasm_bindgen(unchecked_return_type = "Promise<Doc | undefined>")]
    pub fn get(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] coll: JsValue,
        #[wasm_bindgen(unchecked_param_type = "string")] id: JsValue,
    ) -> Promise {
        let inner = self.inner.clone();
        promise(async move {
            inner.check_open()?;
            let coll = known_coll(&inner, &coll)?;
            let id = id_arg(&id)?;
            let id = inner.resolve_id(id.as_str().unwrap_or_default());
            let db = inner.db().await?;
            let tx = Inner::tx(&db, &[&coll], false)?;
            let req = Inner::store(&tx, &coll)?
                .get(&JsValue::from_str(&id))
                .map_err(|e| storage(e, "read"))?;
            Ok(glue::parse_doc(&idb::wait(&req, "read").await?))
        })
    }

    /// The documents with these ids, read in one transaction, in the order
    /// of `ids`: `undefined` in the place of each id with no document.
    ///
    /// @example
    /// const [a, b] = await db.getMany("todos", ["a", "b"]);
    #[wasm_bindgen(js_name = getMany, unchecked_return_type = "Promise<(Doc | undefined)[]>")]
    pub fn get_many(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] coll: JsValue,
        #[wasm_bindgen(unchecked_param_type = "string[]")] ids: JsValue,
    ) -> Promise {
        let inner = self.inner.clone();
        promise(async move {
            inner.check_open()?;
            let coll = known_coll(&inner, &coll)?;
            let ids = ids_arg(&ids)?;
            if ids.is_empty() {
                return Ok(Array::new().into());
            }
            let db = inner.db().await?;
            let tx = Inner::tx(&db, &[&coll], false)?;
            let store = Inner::store(&tx, &coll)?;
            let mut reqs = Vec::with_capacity(ids.len());
            for id in &ids {
                let id = inner.resolve_id(id);
                reqs.push(
                    store
                        .get(&JsValue::from_str(&id))
                        .map_err(|e| storage(e, "read"))?,
                );
            }
            let got = idb::wait_all(&reqs.iter().collect::<Vec<_>>(), "read").await?;
            Ok(glue::parse_docs(&got.into_iter().collect()).into())
        })
    }

    /// Documents matching `query`, ordered and sliced as it says.
    ///
    /// @example
    /// const open = await db.query("todos", { where: { done: false }, orderBy: "createdAt", limit: 20 });
    #[wasm_bindgen(unchecked_return_type = "Promise<Doc[]>")]
    pub fn query(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] coll: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Query | undefined")] query: Option<JsValue>,
    ) -> Promise {
        let inner = self.inner.clone();
        promise(async move {
            inner.check_open()?;
            let coll = coll_arg(&coll)?;
            let query = query.unwrap_or(JsValue::UNDEFINED);
            let mut query = parse_json(&query, "query", "INVALID_QUERY")?;
            let sync_state = syncstate::take(&mut query, &inner.schema, &coll)?;
            let q = Query::parse(&query).map_err(error::core)?;
            let (records, picks) = inner.run_query(&coll, &q).await?;
            let text = syncstate::text(&inner, &coll, &records, picks, sync_state).await?;
            Ok(glue::parse_json(&text))
        })
    }

    /// How many documents match `where`.
    #[wasm_bindgen(unchecked_return_type = "Promise<number>")]
    pub fn count(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] coll: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Where | undefined")] filter: Option<JsValue>,
    ) -> Promise {
        let inner = self.inner.clone();
        promise(async move {
            inner.check_open()?;
            let coll = coll_arg(&coll)?;
            let filter = parse_json(
                &filter.unwrap_or(JsValue::UNDEFINED),
                "where",
                "INVALID_QUERY",
            )?;
            let q = Query::parse(&json!({ "where": filter })).map_err(error::core)?;
            Ok(inner.count(&coll, &q).await?.into())
        })
    }

    /// Calls `callback` with the query's result now and after every
    /// committed change (in this tab or another) that alters it, and
    /// `onError` (if given; else it is warned) with the error of a run
    /// that failed. Returns a function that stops the subscription.
    ///
    /// @example
    /// const stop = db.subscribe("todos", { where: { done: false } }, rows => render(rows));
    #[wasm_bindgen(unchecked_return_type = "() => void")]
    pub fn subscribe(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] coll: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Query | undefined")] query: JsValue,
        #[wasm_bindgen(unchecked_param_type = "(rows: Doc[]) => void")] callback: Function,
        #[wasm_bindgen(js_name = onError, unchecked_param_type = "(error: SyncStoreError) => void")]
        on_error: Option<Function>,
    ) -> Result<Function, JsValue> {
        self.inner.check_open()?;
        let coll = known_coll(&self.inner, &coll)?;
        let mut query = parse_json(&query, "query", "INVALID_QUERY")?;
        let sync_state = syncstate::take(&mut query, &self.inner.schema, &coll)?;
        let q = Query::parse(&query).map_err(error::core)?;
        Ok(self
            .inner
            .live
            .subscribe(&self.inner, coll, q, sync_state, callback, on_error))
    }

    /// A live query as an Observable: `live(coll, query)` gives the rows
    /// of `query` now and after every change that alters them (as
    /// `subscribe`); `live(async (tx) => ...)` runs the function, which
    /// reads through `tx` (`get`, `getMany`, `query`, `count`), and runs it
    /// again after every committed write (this tab's, another tab's,
    /// sync's) to a collection it read. `subscribe({ next, error })` (or
    /// `subscribe(next, error)`) returns `{ unsubscribe(), closed }`; an
    /// error (a failing read, a throwing function) reaches `error` and ends
    /// the subscription. It has `Symbol.observable` (`rxjs.from(...)`) and
    /// is a Svelte store (`$todos`, `undefined` until the first result).
    ///
    /// @example
    /// const sub = db.live(async (tx) => {
    ///   const list = await tx.get("lists", "l1");
    ///   return { list, todos: await tx.query("todos", { where: { listId: "l1" } }) };
    /// }).subscribe({ next: (v) => render(v), error: (e) => console.error(e) });
    #[wasm_bindgen(unchecked_return_type = "LiveQuery<any>")]
    pub fn live(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string | ((tx: LiveReader) => unknown)")]
        what: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Query | undefined")] query: Option<JsValue>,
    ) -> Result<JsValue, JsValue> {
        self.inner.check_open()?;
        let query = query.unwrap_or(JsValue::UNDEFINED);
        let handle = JsValue::from(SyncStore {
            inner: self.inner.clone(),
        });
        Ok(glue::live_query(&handle, &what, &query))
    }

    /// Calls `callback(colls)` after every committed change: what
    /// `live(fn)` watches (internal).
    #[wasm_bindgen(js_name = "__watch", skip_typescript)]
    pub fn watch(&self, callback: Function) -> Result<Function, JsValue> {
        self.inner.check_open()?;
        Ok(self.inner.live.watch(&self.inner, callback))
    }

    /// How many local mutations wait in the outbox.
    #[wasm_bindgen(js_name = pendingCount, unchecked_return_type = "Promise<number>")]
    pub fn pending_count(&self) -> Promise {
        let inner = self.inner.clone();
        promise(async move { Ok(inner.outbox_count().await?.into()) })
    }

    /// What is queued for the server, oldest first: `[{ mid, coll, id, op,
    /// doc?, patch?, base?, state }]` (of every tab: it reads IndexedDB).
    #[wasm_bindgen(unchecked_return_type = "Promise<OutboxEntry[]>")]
    pub fn outbox(&self) -> Promise {
        let inner = self.inner.clone();
        promise(async move { crate::trace::outbox(&inner).await })
    }

    /// The database name.
    #[wasm_bindgen(getter)]
    pub fn name(&self) -> String {
        self.inner.name.clone()
    }

    /// Closes the store: its connection, subscriptions and channel. Any
    /// later call rejects with code `CLOSED`.
    pub fn close(&self) {
        self.inner.shut();
    }

    /// The sync state: `{ connection: "websocket" | "connecting" | "polling"
    /// | "offline",
    /// pending, lastPushAt, lastPullAt, cursor, lastError, leader }` (in a
    /// tab that does not lead sync, the leader's). A store opened without
    /// `sync` is always `"offline"`.
    #[wasm_bindgen(unchecked_return_type = "SyncStatus")]
    pub fn status(&self) -> JsValue {
        match self.inner.sync.get() {
            Some(s) => to_js(&s.status(&self.inner)),
            None => to_js(&crate::sync::Status::idle(self.inner.local_pending())),
        }
    }

    /// Calls `callback` on each event of `type`: `"status"` (the status
    /// changed), `"change"` (documents changed, with their op and new
    /// document: here, in another tab or by the server), `"idmap"` (a
    /// temporary id got its canonical id), `"rejected"` (the server refused
    /// a mutation; its effect was rolled back), `"conflict"`, `"error"`,
    /// `"trace"` (the data flow, for debugging).
    /// Returns a function that removes the listener.
    ///
    /// @example
    /// const off = db.on("idmap", ({ tmp, id }) => console.log(tmp, "is now", id));
    #[wasm_bindgen(unchecked_return_type = "() => void")]
    pub fn on(
        &self,
        #[wasm_bindgen(js_name = "type", unchecked_param_type = "SyncEventType")] kind: JsValue,
        #[wasm_bindgen(unchecked_param_type = "(event: SyncEvents[SyncEventType]) => void")]
        callback: Function,
    ) -> Result<Function, JsValue> {
        self.inner.check_open()?;
        let kind = kind.as_string().unwrap_or_default();
        self.inner.events.on(&self.inner, &kind, callback)
    }

    /// Pushes everything queued and pulls now; resolves when both are done,
    /// rejects with the error that stopped them (code `NETWORK`,
    /// `UNAUTHORIZED`, ... or `SYNC_DISABLED` without `sync` options).
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn sync(&self) -> Promise {
        if let Err(e) = self.inner.check_open() {
            return Promise::reject(&e);
        }
        match self.inner.sync.get() {
            Some(s) => s.ask(&self.inner, Ask::Sync),
            None => Promise::reject(&glue::make_error(
                "SYNC_DISABLED",
                "the store was opened without sync options",
                false,
            )),
        }
    }

    /// Pushes the collection's queued writes now (the only way writes of a
    /// `sync: "manual"` collection leave the device); resolves when the
    /// server has answered them.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn push(&self, #[wasm_bindgen(unchecked_param_type = "string")] coll: JsValue) -> Promise {
        match self.synced_coll(&coll) {
            Ok((s, coll)) => s.ask(&self.inner, Ask::Push(coll)),
            Err(e) => Promise::reject(&e),
        }
    }

    /// Pulls now and applies the server changes held for the collection
    /// (those of a `sync: "manual"` collection wait for this call).
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn pull(&self, #[wasm_bindgen(unchecked_param_type = "string")] coll: JsValue) -> Promise {
        match self.synced_coll(&coll) {
            Ok((s, coll)) => s.ask(&self.inner, Ask::Pull(coll)),
            Err(e) => Promise::reject(&e),
        }
    }

    /// `{ local, remote }`: the collection's writes not yet sent (or not yet
    /// answered) and server changes to it not yet applied.
    #[wasm_bindgen(unchecked_return_type = "Promise<{ local: number; remote: number }>")]
    pub fn divergence(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] coll: JsValue,
    ) -> Promise {
        let picked = self.synced_coll(&coll);
        let inner = self.inner.clone();
        promise(async move {
            let (_, coll) = picked?;
            let (local, remote) = tabs::divergence(&inner, &coll).await?;
            Ok(to_js(&json!({ "local": local, "remote": remote })))
        })
    }

    /// Writes the server refused (rolled back), kept until dismissed:
    /// `[{ mid, coll, id, op, doc?, code, message, at }]`, oldest first
    /// (`doc`: the document as the write left it; none for a delete).
    ///
    /// @example
    /// const show = async () => render(await db.rejected());
    /// db.on("rejected", show); show();
    #[wasm_bindgen(unchecked_return_type = "Promise<RejectedWrite[]>")]
    pub fn rejected(&self) -> Promise {
        let inner = self.inner.clone();
        promise(async move { Ok(crate::rejected::list(&inner).await?.into()) })
    }

    /// Forgets kept rejections: one mid, an array of mids, or all (no argument).
    #[wasm_bindgen(js_name = dismissRejected, unchecked_return_type = "Promise<void>")]
    pub fn dismiss_rejected(
        &self,
        #[wasm_bindgen(unchecked_param_type = "number | number[] | undefined")] mids: JsValue,
    ) -> Promise {
        let inner = self.inner.clone();
        let which = crate::rejected::parse_which(&mids);
        promise(async move {
            crate::rejected::dismiss(&inner, which?).await?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// The unresolved conflicts of a `conflicts: "manual"` collection:
    /// `[{ coll, id, local, remote, mid, at }]` (`local`: the local view
    /// the server refused; `remote`: the server's document, which shows
    /// meanwhile with `$conflict: true`).
    #[wasm_bindgen(unchecked_return_type = "Promise<Conflict[]>")]
    pub fn conflicts(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] coll: JsValue,
    ) -> Promise {
        let inner = self.inner.clone();
        promise(async move {
            inner.check_open()?;
            let coll = known_coll(&inner, &coll)?;
            let db = inner.db().await?;
            let tx = Inner::tx(&db, &[CONFLICTS], false)?;
            let range = crate::sync::coll_range(&coll)?;
            let all = Source::Store(Inner::store(&tx, CONFLICTS)?)
                .get_all(Some(&range), None)
                .await?;
            Ok(glue::revive(&all))
        })
    }

    /// Resolves a conflict of a `conflicts: "manual"` collection with a
    /// document (it replaces the server's) or `{ keep: "local" | "remote" |
    /// "both" }` ("both": the local document is added as a new one). The
    /// resolution is an ordinary write that syncs; the conflict entry and
    /// the marker go in the same transaction.
    ///
    /// @example
    /// const [c] = await db.conflicts("todos");
    /// await db.resolveConflict("todos", c.id, { keep: "local" });
    #[wasm_bindgen(js_name = resolveConflict, unchecked_return_type = "Promise<void>")]
    pub fn resolve_conflict(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] coll: JsValue,
        #[wasm_bindgen(unchecked_param_type = "string")] id: JsValue,
        #[wasm_bindgen(
            unchecked_param_type = "NewDoc | { keep: \"local\" | \"remote\" | \"both\" }"
        )]
        resolution: JsValue,
    ) -> Promise {
        let inner = self.inner.clone();
        promise(async move {
            inner.check_open()?;
            let coll = known_coll(&inner, &coll)?;
            let id = inner.resolve_id(id_arg(&id)?.as_str().unwrap_or_default());
            let resolution = parse_json(&resolution, "resolution", "INVALID_DOCUMENT")?;
            let db = inner.db().await?;
            let tx = Inner::tx(&db, &[CONFLICTS, &coll], false)?;
            let key: Array = [&coll, &id].iter().map(|s| JsValue::from_str(s)).collect();
            let entry = Inner::store(&tx, CONFLICTS)?
                .get(&key)
                .map_err(|e| storage(e, "read"))?;
            let current = Inner::store(&tx, &coll)?
                .get(&JsValue::from_str(&id))
                .map_err(|e| storage(e, "read"))?;
            let got = idb::wait_all(&[&entry, &current], "read conflict").await?;
            let Some(entry) = crate::sync::parse::<Value>(&got[0]).filter(|e| e.is_object()) else {
                return Err(glue::make_error(
                    "NOT_FOUND",
                    &format!("id: {coll}/{id} has no unresolved conflict"),
                    false,
                ));
            };
            let exists = !got[1].is_undefined();
            let local = entry.get("local").and_then(Value::as_object).cloned();
            let remote = entry.get("remote").and_then(Value::as_object).cloned();
            let keep = resolution
                .as_object()
                .filter(|o| o.len() == 1)
                .and_then(|o| o.get("keep"))
                .and_then(Value::as_str);
            let put = |doc: serde_json::Map<String, Value>| {
                let mut doc = doc;
                doc.remove("$conflict");
                if exists {
                    json!({"op": "replace", "coll": coll, "id": id, "doc": doc})
                } else {
                    doc.insert("id".into(), json!(id));
                    json!({"op": "insert", "coll": coll, "doc": doc})
                }
            };
            let ops = match (keep, &resolution) {
                (Some("remote"), _) => vec![],
                (Some("local"), _) => match (local, remote) {
                    // The local changes as a patch over the server's document
                    // of the conflict, so that edits made since (on any
                    // device) to other fields stay.
                    (Some(l), Some(r)) if exists => {
                        let mut patch = syncstore_core::sync::policy::diff_patch(&r, &l);
                        patch.remove("$conflict");
                        if patch.is_empty() {
                            vec![]
                        } else {
                            vec![json!({"op": "update", "coll": coll, "id": id, "patch": patch})]
                        }
                    }
                    (Some(l), _) => vec![put(l)],
                    (None, _) if exists => {
                        vec![json!({"op": "delete", "coll": coll, "id": id})]
                    }
                    (None, _) => vec![],
                },
                (Some("both"), _) => match local {
                    Some(mut l) => {
                        l.remove("id");
                        l.remove("$conflict");
                        vec![json!({"op": "insert", "coll": coll, "doc": l})]
                    }
                    None => vec![],
                },
                (Some(other), _) => {
                    return Err(glue::make_error(
                        "INVALID_DOCUMENT",
                        &format!(
                            "resolution.keep: {other:?} is not \"local\", \"remote\" or \"both\""
                        ),
                        false,
                    ))
                }
                (None, Value::Object(doc)) => vec![put(doc.clone())],
                (None, _) => {
                    return Err(glue::make_error(
                        "INVALID_DOCUMENT",
                        "resolution: a document or { keep: \"local\" | \"remote\" | \"both\" }",
                        false,
                    ))
                }
            };
            inner
                .write(Value::Array(ops), false, Some(&(coll, id)), None)
                .await?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Cuts this store from the sync server, as if the network were down:
    /// writes keep working and queue up; `goOnline()` reconnects and sends
    /// them. (In a tab that does not lead sync, it applies once it leads.)
    #[wasm_bindgen(js_name = goOffline)]
    pub fn go_offline(&self) -> Result<(), JsValue> {
        self.set_cut_off(true)
    }

    /// Undoes `goOffline()`.
    #[wasm_bindgen(js_name = goOnline)]
    pub fn go_online(&self) -> Result<(), JsValue> {
        self.set_cut_off(false)
    }

    /// The canonical id of a temporary id the server has mapped; any other
    /// id is returned as it is.
    #[wasm_bindgen(js_name = resolveId)]
    pub fn resolve_id(&self, id: &str) -> String {
        self.inner.resolve_id(id)
    }
}

//! `SyncStore`: the JS API. Methods validate their input (in JS for
//! JSON-ness, in the core for everything else), then hand over to the
//! services: the write path (writes.rs), the query path (query.rs), sync
//! (tabs.rs), each over the store's shared parts (ctx.rs). This module also
//! wires what the lower layers report up: a lost connection (db.rs ->
//! faults.rs), the channel's messages (live.rs -> tabs.rs, changes.rs) and
//! the subscriptions' queries (live.rs -> query.rs).

use crate::changes;
use crate::ctx::Ctx;
use crate::db::Db;
use crate::error::{self, storage, JsResult};
use crate::glue;
use crate::idb::{self, to_js, Source, CONFLICTS};
use crate::query;
use crate::rejected;
use crate::sync::{Ask, Status, SyncOptions};
use crate::syncstate;
use crate::tabs::{self, TabSync};
use crate::trace;
use crate::writes;
use js_sys::{Array, Function, Promise};
use serde_json::{json, Value};
use std::cell::OnceCell;
use std::rc::Rc;
use syncstore_core::query::Query;
use syncstore_core::schema::{Schema, SyncMode};
use syncstore_core::sorted::SortedMap;
use wasm_bindgen::prelude::*;
use web_sys::MessageEvent;

/// Installs what the lower layers call up: the faults of the connection
/// (the store closes itself on a schema change elsewhere) and the query of
/// a subscription (with the rows' sync state if asked).
fn wire(ctx: &Rc<Ctx>, sync: &Rc<OnceCell<Rc<TabSync>>>) {
    let (weak, cell) = (Rc::downgrade(ctx), sync.clone());
    ctx.conn.on_lost(Box::new(move |why, old, new| {
        if let Some(ctx) = weak.upgrade() {
            if crate::faults::lost(&ctx.conn, &ctx.events, why, old, new) {
                shut(&ctx, &cell);
            }
        }
    }));
    let weak = Rc::downgrade(ctx);
    ctx.live.set_runner(Box::new(move |coll, q, sync_state| {
        let ctx = weak.upgrade();
        Box::pin(async move {
            let inner = ctx.ok_or_else(error::closed)?;
            let (records, picks) = query::run(&inner, &coll, &q).await?;
            let size = picks.as_ref().map_or(records.length() as usize, Vec::len);
            syncstate::text(&inner, &coll, &records, picks, sync_state)
                .await
                .map(|text| (size, JsValue::from(text)))
        })
    }));
}

/// A message from another instance of the database, on its channel.
fn on_message(inner: &Rc<Ctx>, sync: &OnceCell<Rc<TabSync>>, ev: &MessageEvent) {
    let sync_msg = js_sys::Reflect::get(&ev.data(), &"sync".into()).unwrap_or_default();
    if !sync_msg.is_undefined() {
        // Between the sync leader and its followers (tabs.rs).
        if let (Some(h), Some(msg)) = (sync.get(), idb::parse::<Value>(&sync_msg)) {
            h.on_message(inner, &msg);
        }
        return;
    }
    let feed = js_sys::Reflect::get(&ev.data(), &"feed".into()).unwrap_or_default();
    if !feed.is_undefined() {
        if let Some(msg) = idb::parse::<Value>(&feed) {
            changes::on_message(inner, &msg);
        }
        return;
    }
    let colls = js_sys::Reflect::get(&ev.data(), &"colls".into())
        .ok()
        .filter(Array::is_array)
        .map(|a| {
            Array::from(&a)
                .iter()
                .filter_map(|c| c.as_string())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let restamp = js_sys::Reflect::get(&ev.data(), &"restamp".into()).is_ok_and(|v| v.is_truthy());
    if restamp {
        inner.live.restamped(&colls, false);
        return;
    }
    inner.live.changed(&colls, false);
    // Another tab may have queued writes for this tab's sync loop.
    if let Some(sync) = sync.get() {
        sync.kick();
    }
}

/// Closes the store: sync, the connection, subscriptions, channel and
/// listeners. Later calls reject (`check_open`).
fn shut(inner: &Ctx, sync: &OnceCell<Rc<TabSync>>) {
    if inner.conn.closed.replace(true) {
        return;
    }
    if let Some(sync) = sync.get() {
        sync.close();
    }
    inner.conn.close();
    inner.live.close();
    inner.events.close();
}

/// A local-first document store over IndexedDB.
#[wasm_bindgen]
pub struct SyncStore {
    ctx: Rc<Ctx>,
    /// Sync (leading or following), when the store was opened with `sync`.
    sync: Rc<OnceCell<Rc<TabSync>>>,
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
fn known_coll(inner: &Ctx, coll: &JsValue) -> JsResult<String> {
    let coll = coll_arg(coll)?;
    inner.schema.collection(&coll).map_err(error::core)?;
    Ok(coll)
}

/// Runs `f` as a promise; argument errors reject it rather than throwing
/// (boxed: `error::promise`).
fn promise<F>(f: F) -> Promise
where
    F: std::future::Future<Output = JsResult<JsValue>> + 'static,
{
    error::promise(Box::pin(f))
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
        let (inner, sync) = (self.ctx.clone(), self.sync.clone());
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
            let sync = sync.get().map(Rc::as_ref);
            let ids = writes::apply(&inner, sync, json!([m]), true, None, modify.as_ref()).await?;
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
        self.ctx.check_open()?;
        match self.sync.get() {
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
        self.ctx.check_open()?;
        let coll = coll_arg(coll)?;
        let spec = self.ctx.schema.collection(&coll).map_err(error::core)?;
        let disabled = |why: &str| glue::make_error("SYNC_DISABLED", why, false);
        let Some(s) = self.sync.get() else {
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
        let mut resolvers = SortedMap::new();
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
                writes::rekey(&rekey_schema, &coll, &recs)
            });
        let conn = Db::new(name.clone(), to_js(&idb::layout(&schema)), rekey);
        let seed = s ^ js_sys::Date::now() as u64;
        let ctx = Rc::new(Ctx::new(conn, schema, resolvers, seed));
        let sync_cell: Rc<OnceCell<Rc<TabSync>>> = Rc::new(OnceCell::new());
        wire(&ctx, &sync_cell);
        ctx.db().await?;
        ctx.load_client_id().await?;
        let (weak, cell) = (Rc::downgrade(&ctx), sync_cell.clone());
        ctx.live.listen(&name, move |ev: MessageEvent| {
            if let Some(ctx) = weak.upgrade() {
                on_message(&ctx, &cell, &ev);
            }
        })?;
        changes::ask(&ctx);
        let n = ctx.outbox_count().await?;
        ctx.local_pending.set(n as usize);
        if let Some(opts) = sync {
            let handle = TabSync::start(&ctx, opts).await?;
            let _ = sync_cell.set(handle);
        }
        Ok(SyncStore {
            ctx,
            sync: sync_cell,
        })
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
        let (inner, sync) = (self.ctx.clone(), self.sync.clone());
        promise(async move {
            let ops = parse_json(&ops, "ops", "INVALID_DOCUMENT")?;
            let ids =
                writes::apply(&inner, sync.get().map(Rc::as_ref), ops, false, None, None).await?;
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
        let inner = self.ctx.clone();
        promise(async move {
            inner.check_open()?;
            let coll = known_coll(&inner, &coll)?;
            let id = id_arg(&id)?;
            let id = inner.resolve_id(id.as_str().unwrap_or_default());
            let db = inner.db().await?;
            let tx = Db::tx(&db, &[&coll], false)?;
            let req = Db::store(&tx, &coll)?
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
        let inner = self.ctx.clone();
        promise(async move {
            inner.check_open()?;
            let coll = known_coll(&inner, &coll)?;
            let ids = ids_arg(&ids)?;
            if ids.is_empty() {
                return Ok(Array::new().into());
            }
            let db = inner.db().await?;
            let tx = Db::tx(&db, &[&coll], false)?;
            let store = Db::store(&tx, &coll)?;
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
        let inner = self.ctx.clone();
        promise(async move {
            inner.check_open()?;
            let coll = coll_arg(&coll)?;
            let query = query.unwrap_or(JsValue::UNDEFINED);
            let mut query = parse_json(&query, "query", "INVALID_QUERY")?;
            let sync_state = syncstate::take(&mut query, &inner.schema, &coll)?;
            let q = Query::parse(&query).map_err(error::core)?;
            let (records, picks) = query::run(&inner, &coll, &q).await?;
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
        let inner = self.ctx.clone();
        promise(async move {
            inner.check_open()?;
            let coll = coll_arg(&coll)?;
            let filter = parse_json(
                &filter.unwrap_or(JsValue::UNDEFINED),
                "where",
                "INVALID_QUERY",
            )?;
            let q = Query::parse(&json!({ "where": filter })).map_err(error::core)?;
            Ok(query::count(&inner, &coll, &q).await?.into())
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
        self.ctx.check_open()?;
        let coll = known_coll(&self.ctx, &coll)?;
        let mut query = parse_json(&query, "query", "INVALID_QUERY")?;
        let sync_state = syncstate::take(&mut query, &self.ctx.schema, &coll)?;
        let q = Query::parse(&query).map_err(error::core)?;
        Ok(self
            .ctx
            .live
            .subscribe(coll, q, sync_state, callback, on_error))
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
        self.ctx.check_open()?;
        let query = query.unwrap_or(JsValue::UNDEFINED);
        let handle = JsValue::from(SyncStore {
            ctx: self.ctx.clone(),
            sync: self.sync.clone(),
        });
        Ok(glue::live_query(&handle, &what, &query))
    }

    /// Calls `callback(colls)` after every committed change: what
    /// `live(fn)` watches (internal).
    #[wasm_bindgen(js_name = "__watch", skip_typescript)]
    pub fn watch(&self, callback: Function) -> Result<Function, JsValue> {
        self.ctx.check_open()?;
        Ok(self.ctx.live.watch(callback))
    }

    /// How many local mutations wait in the outbox.
    #[wasm_bindgen(js_name = pendingCount, unchecked_return_type = "Promise<number>")]
    pub fn pending_count(&self) -> Promise {
        let inner = self.ctx.clone();
        promise(async move { Ok(inner.outbox_count().await?.into()) })
    }

    /// What is queued for the server, oldest first: `[{ mid, coll, id, op,
    /// doc?, patch?, base?, state }]` (of every tab: it reads IndexedDB).
    #[wasm_bindgen(unchecked_return_type = "Promise<OutboxEntry[]>")]
    pub fn outbox(&self) -> Promise {
        let inner = self.ctx.clone();
        promise(async move { trace::outbox(&inner).await })
    }

    /// The database name.
    #[wasm_bindgen(getter)]
    pub fn name(&self) -> String {
        self.ctx.conn.name.clone()
    }

    /// Closes the store: its connection, subscriptions and channel. Any
    /// later call rejects with code `CLOSED`.
    pub fn close(&self) {
        shut(&self.ctx, &self.sync);
    }

    /// The sync state: `{ connection: "websocket" | "connecting" | "polling"
    /// | "offline",
    /// pending, lastPushAt, lastPullAt, cursor, lastError, leader }` (in a
    /// tab that does not lead sync, the leader's). A store opened without
    /// `sync` is always `"offline"`.
    #[wasm_bindgen(unchecked_return_type = "SyncStatus")]
    pub fn status(&self) -> JsValue {
        match self.sync.get() {
            Some(s) => to_js(&s.status(&self.ctx)),
            None => to_js(&Status::idle(self.ctx.local_pending())),
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
        self.ctx.check_open()?;
        let kind = kind.as_string().unwrap_or_default();
        let first_change = kind == "change" && !self.ctx.events.wanted(&kind);
        let off = self.ctx.events.on(&kind, callback)?;
        if first_change {
            changes::listening(&self.ctx);
        }
        Ok(off)
    }

    /// Pushes everything queued and pulls now; resolves when both are done,
    /// rejects with the error that stopped them (code `NETWORK`,
    /// `UNAUTHORIZED`, ... or `SYNC_DISABLED` without `sync` options).
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn sync(&self) -> Promise {
        if let Err(e) = self.ctx.check_open() {
            return Promise::reject(&e);
        }
        match self.sync.get() {
            Some(s) => s.ask(&self.ctx, Ask::Sync),
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
            Ok((s, coll)) => s.ask(&self.ctx, Ask::Push(coll)),
            Err(e) => Promise::reject(&e),
        }
    }

    /// Pulls now and applies the server changes held for the collection
    /// (those of a `sync: "manual"` collection wait for this call).
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn pull(&self, #[wasm_bindgen(unchecked_param_type = "string")] coll: JsValue) -> Promise {
        match self.synced_coll(&coll) {
            Ok((s, coll)) => s.ask(&self.ctx, Ask::Pull(coll)),
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
        let inner = self.ctx.clone();
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
        let inner = self.ctx.clone();
        promise(async move { Ok(rejected::list(&inner).await?.into()) })
    }

    /// Forgets kept rejections: one mid, an array of mids, or all (no argument).
    #[wasm_bindgen(js_name = dismissRejected, unchecked_return_type = "Promise<void>")]
    pub fn dismiss_rejected(
        &self,
        #[wasm_bindgen(unchecked_param_type = "number | number[] | undefined")] mids: JsValue,
    ) -> Promise {
        let inner = self.ctx.clone();
        let which = rejected::parse_which(&mids);
        promise(async move {
            rejected::dismiss(&inner, which?).await?;
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
        let inner = self.ctx.clone();
        promise(async move {
            inner.check_open()?;
            let coll = known_coll(&inner, &coll)?;
            let db = inner.db().await?;
            let tx = Db::tx(&db, &[CONFLICTS], false)?;
            let range = idb::coll_range(&coll)?;
            let all = Source::Store(Db::store(&tx, CONFLICTS)?)
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
        let (inner, sync) = (self.ctx.clone(), self.sync.clone());
        promise(async move {
            inner.check_open()?;
            let coll = known_coll(&inner, &coll)?;
            let id = inner.resolve_id(id_arg(&id)?.as_str().unwrap_or_default());
            let resolution = parse_json(&resolution, "resolution", "INVALID_DOCUMENT")?;
            let db = inner.db().await?;
            let tx = Db::tx(&db, &[CONFLICTS, &coll], false)?;
            let key: Array = [&coll, &id].iter().map(|s| JsValue::from_str(s)).collect();
            let entry = Db::store(&tx, CONFLICTS)?
                .get(&key)
                .map_err(|e| storage(e, "read"))?;
            let current = Db::store(&tx, &coll)?
                .get(&JsValue::from_str(&id))
                .map_err(|e| storage(e, "read"))?;
            let got = idb::wait_all(&[&entry, &current], "read conflict").await?;
            let Some(entry) = idb::parse::<Value>(&got[0]).filter(|e| e.is_object()) else {
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
            let sync = sync.get().map(Rc::as_ref);
            writes::apply(
                &inner,
                sync,
                Value::Array(ops),
                false,
                Some(&(coll, id)),
                None,
            )
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
        self.ctx.resolve_id(id)
    }
}

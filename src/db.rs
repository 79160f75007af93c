//! The storage layer: the store's one IndexedDB connection (opened,
//! reopened after the browser closed it, closed) and its transactions.
//! What happens when the connection is lost is decided above (faults.rs,
//! through the callback the store installs with [`Db::on_lost`]).

use crate::error::{self, closed, storage, JsResult};
use crate::glue;
use js_sys::{Array, Promise};
use std::cell::{Cell, OnceCell, RefCell};
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{IdbDatabase, IdbObjectStore, IdbTransaction, IdbTransactionMode};

type WatchFn = Closure<dyn Fn(String, JsValue, JsValue)>;

/// What the connection's watcher reports (glue.js `watch`): why (`closed`,
/// `deleted`, `versionchange`), the old and the new version.
pub type LostFn = Box<dyn Fn(&str, &JsValue, &JsValue)>;

/// The connection state of one store.
pub struct Db {
    pub name: String,
    db: RefCell<Option<IdbDatabase>>,
    pub closed: Cell<bool>,
    layout: JsValue,
    rekey: Closure<dyn Fn(String, Array) -> Array>,
    watch: RefCell<Option<WatchFn>>,
    on_lost: OnceCell<LostFn>,
    /// A connect under way (a `Promise` of the connection): calls that
    /// find no connection meanwhile wait for it instead of opening their
    /// own, so there is one connection, the one whose watcher is alive.
    connecting: RefCell<Option<Promise>>,
    /// The browser closed the connection and no call has reopened it yet.
    pub lost: Cell<bool>,
    /// Why the store closed itself (faults.rs), instead of `CLOSED`.
    pub closed_by: RefCell<Option<JsValue>>,
}

impl Db {
    /// `layout`: the object stores and indexes (idb.rs `layout`); `rekey`
    /// re-computes the index keys of a collection's records after an
    /// upgrade added an index.
    pub fn new(
        name: String,
        layout: JsValue,
        rekey: Closure<dyn Fn(String, Array) -> Array>,
    ) -> Db {
        Db {
            name,
            db: RefCell::new(None),
            closed: Cell::new(false),
            layout,
            rekey,
            watch: RefCell::new(None),
            on_lost: OnceCell::new(),
            connecting: RefCell::new(None),
            lost: Cell::new(false),
            closed_by: RefCell::new(None),
        }
    }

    /// Installs what hears of a connection lost under the store.
    pub fn on_lost(&self, f: LostFn) {
        let _ = self.on_lost.set(f);
    }

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

    /// Closes the connection (the store is closing).
    pub fn close(&self) {
        if let Some(db) = self.db.borrow_mut().take() {
            db.close();
        }
    }

    /// The open connection, reopened if the browser closed it or another
    /// tab's upgrade asked it to step aside. (Callers check that the store
    /// is open first: ctx.rs `Ctx::db`.)
    pub async fn open(self: &Rc<Self>) -> JsResult<IdbDatabase> {
        if let Some(db) = self.db.borrow().clone() {
            return Ok(db);
        }
        let pending = self.connecting.borrow().clone();
        let pending = pending.unwrap_or_else(|| {
            let conn = self.clone();
            let p = error::promise(Box::pin(async move {
                let got = conn.connect().await;
                conn.connecting.borrow_mut().take();
                let db = got?;
                conn.lost.set(false);
                *conn.db.borrow_mut() = Some(db.clone());
                Ok(db.into())
            }));
            *self.connecting.borrow_mut() = Some(p.clone());
            p
        });
        JsFuture::from(pending).await.map(JsCast::unchecked_into)
    }

    async fn connect(self: &Rc<Self>) -> JsResult<IdbDatabase> {
        let weak = Rc::downgrade(self);
        let watch = WatchFn::new(move |why: String, old: JsValue, new: JsValue| {
            if let Some(f) = weak.upgrade().as_ref().and_then(|c| c.on_lost.get()) {
                f(&why, &old, &new);
            }
        });
        let p = glue::open_db(
            &self.name,
            &self.layout,
            self.rekey.as_ref().unchecked_ref(),
            watch.as_ref().unchecked_ref(),
        );
        *self.watch.borrow_mut() = Some(watch);
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
}

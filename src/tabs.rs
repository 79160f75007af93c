//! One sync leader per database across tabs (and store instances).
//!
//! Every store opened with `sync` gets a [`TabSync`]. Exactly one of them
//! per database name and origin, the *leader*, runs the sync loop
//! ([`SyncLoop`]): the one holding the Web Lock `syncstore-leader:<name>`,
//! which the browser releases when its tab closes, reloads or crashes; the
//! next instance in the lock's queue then takes over. The others are
//! *followers*: their writes go to the shared outbox as always (the leader
//! learns of them over the BroadcastChannel and pushes them); they see the
//! leader's status and events, which it publishes on the channel, and
//! forward `sync()`, `push(coll)` and `pull(coll)` to it.
//!
//! A leader whose tab is frozen or throttled in the background stops
//! sending its heartbeat (every second). A visible follower that hears
//! nothing from the leader for 3 s (a hidden one: 10 s) steals the lock.
//! Every new leader first bumps the term in `_meta` (`leader`); each step of
//! a sync loop checks it inside its transaction, so a leader that wakes up
//! after being replaced writes nothing more and stops (fencing). A leader
//! that could not start its loop (IndexedDB refused) tries again at the
//! next heartbeat.
//!
//! Without Web Locks every instance leads, one after the other: each new
//! one fences the previous one off.

use crate::ctx::Ctx;
use crate::db::Db;
use crate::error::{storage, JsResult};
use crate::glue;
use crate::idb::{to_js, HELD, OUTBOX};
use crate::sync::{Ask, Ended, ErrorInfo, Status, SyncLoop, SyncOptions, Waiter};
use js_sys::{Date, Function, Promise};
use serde_json::{json, Value};
use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use syncstore_core::sorted::SortedMap;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{spawn_local, JsFuture};

/// How often the leader says it is alive.
const HEARTBEAT_MS: u32 = 1000;
/// Silence after which a visible (hidden) follower takes over.
const STALE_VISIBLE_MS: f64 = 3000.0;
const STALE_HIDDEN_MS: f64 = 10_000.0;

pub struct TabSync {
    opts: SyncOptions,
    /// This instance, for routing answers on the channel.
    me: String,
    /// The sync loop, while this instance leads.
    client: RefCell<Option<Rc<SyncLoop>>>,
    lock: RefCell<Option<glue::LeaderLock>>,
    callbacks: RefCell<Vec<Closure<dyn Fn()>>>,
    stop_timer: RefCell<Option<Function>>,
    /// Bumped whenever leadership is gained or lost: a promotion that
    /// awaited across a change gives up.
    generation: Cell<u32>,
    /// Promotions under way. One that failed (IndexedDB refused its
    /// transaction) leaves the lock held with no loop: the heartbeat
    /// timer starts another.
    promoting: Cell<u32>,
    /// Follower: the leader's last status, and the highest mid its engine
    /// had taken in then (its `pending` counts the entries up to it).
    status: RefCell<Option<(Value, u64)>>,
    /// Follower: asks forwarded to the leader and not answered yet.
    asks: RefCell<SortedMap<u32, Waiter>>,
    next_rid: Cell<u32>,
    /// When the leader was last heard from.
    last_heard: Cell<f64>,
    /// `goOffline()`: kept here so that it holds across leadership changes.
    cut_off: Cell<bool>,
    /// This instance's committed writes the sync loop has not taken in
    /// yet: (first mid, entries). `status().pending` counts them, so that
    /// it equals `pendingCount()` once a write resolved (in a follower:
    /// those above the mid the leader's last status said it took in).
    unseen: RefCell<Vec<(u64, usize)>>,
}

fn message(body: Value) -> JsValue {
    to_js(&json!({ "sync": body }))
}

impl TabSync {
    pub async fn start(inner: &Rc<Ctx>, opts: SyncOptions) -> JsResult<Rc<TabSync>> {
        load_aliases(inner).await?;
        let h = Rc::new(TabSync {
            opts,
            me: format!("{:x}", (js_sys::Math::random() * 1e15) as u64),
            client: RefCell::new(None),
            lock: RefCell::new(None),
            callbacks: RefCell::new(vec![]),
            stop_timer: RefCell::new(None),
            generation: Cell::new(0),
            promoting: Cell::new(0),
            status: RefCell::new(None),
            asks: RefCell::new(SortedMap::new()),
            next_rid: Cell::new(0),
            last_heard: Cell::new(Date::now()),
            cut_off: Cell::new(false),
            unseen: RefCell::new(Vec::new()),
        });
        let cb = |f: fn(&Rc<TabSync>, &Rc<Ctx>)| {
            let (wh, wi): (Weak<TabSync>, Weak<Ctx>) = (Rc::downgrade(&h), Rc::downgrade(inner));
            Closure::<dyn Fn()>::new(move || {
                if let (Some(h), Some(inner)) = (wh.upgrade(), wi.upgrade()) {
                    if !inner.conn.closed.get() {
                        f(&h, &inner);
                    }
                }
            })
        };
        let granted = cb(|h, inner| {
            h.generation.set(h.generation.get() + 1);
            spawn_local(h.clone().promote(inner.clone()));
        });
        let lost = cb(|h, inner| h.demote(inner));
        let timer = cb(|h, inner| h.on_timer(inner));
        *h.stop_timer.borrow_mut() =
            Some(glue::every(HEARTBEAT_MS, timer.as_ref().unchecked_ref()));
        *h.lock.borrow_mut() = Some(glue::LeaderLock::new(
            &inner.conn.name,
            granted.as_ref().unchecked_ref(),
            lost.as_ref().unchecked_ref(),
        ));
        h.callbacks.borrow_mut().extend([granted, lost, timer]);
        // Ask the leader (if any) for its status.
        inner.live.post(&message(json!({"t": "hello"})));
        Ok(h)
    }

    fn leader(&self) -> Option<Rc<SyncLoop>> {
        self.client.borrow().clone()
    }

    /// Becomes the leader: a new term, then the sync loop.
    async fn promote(self: Rc<Self>, inner: Rc<Ctx>) {
        self.promoting.set(self.promoting.get() + 1);
        self.clone().take_the_lead(inner).await;
        self.promoting.set(self.promoting.get() - 1);
    }

    async fn take_the_lead(self: Rc<Self>, inner: Rc<Ctx>) {
        let generation = self.generation.get();
        let term = match bump_term(&inner).await {
            Ok(e) => e,
            Err(e) => {
                glue::warn("syncstore: could not take the sync lead", &e);
                return;
            }
        };
        if self.generation.get() != generation || inner.conn.closed.get() {
            return;
        }
        let me = Rc::downgrade(&self);
        let ended: Ended = Box::new(move |inner, client| {
            if let Some(h) = me.upgrade() {
                h.loop_ended(inner, client);
            }
        });
        match SyncLoop::start(&inner, self.opts.clone(), term, self.cut_off.get(), ended).await {
            Ok(client) => {
                if self.generation.get() != generation || inner.conn.closed.get() {
                    client.stop();
                    return;
                }
                // goOffline() / goOnline() while the loop was starting (its
                // state was being read): the switch as it is now. The loop
                // has not run yet, so nothing went out meanwhile.
                client.set_cut_off(self.cut_off.get());
                // This instance's own forwarded asks: answer them here.
                for (_, w) in std::mem::take(&mut *self.asks.borrow_mut()) {
                    client.ask(w);
                }
                *self.client.borrow_mut() = Some(client);
                self.status.borrow_mut().take();
                inner.live.post(&message(json!({"t": "leader"})));
            }
            Err(e) => glue::warn("syncstore: could not start syncing", &e),
        }
    }

    /// Another instance stole the lock: stop syncing, hand over the asks.
    fn demote(self: &Rc<Self>, inner: &Rc<Ctx>) {
        self.generation.set(self.generation.get() + 1);
        if let Some(client) = self.client.borrow_mut().take() {
            for w in client.stop() {
                self.forward(inner, w);
            }
        }
        self.last_heard.set(Date::now());
    }

    /// The sync loop stopped by itself: its term was taken (fencing). If
    /// this instance still holds the lock, it starts a new term.
    fn loop_ended(self: &Rc<Self>, inner: &Rc<Ctx>, client: &Rc<SyncLoop>) {
        let current = self
            .client
            .borrow()
            .as_ref()
            .is_some_and(|c| Rc::ptr_eq(c, client));
        if !current {
            return;
        }
        self.demote(inner);
        if self.lock.borrow().as_ref().is_some_and(|l| l.held()) {
            self.generation.set(self.generation.get() + 1);
            spawn_local(self.clone().promote(inner.clone()));
        }
    }

    fn on_timer(self: &Rc<Self>, inner: &Rc<Ctx>) {
        if self.leader().is_some() {
            inner.live.post(&message(json!({"t": "beat"})));
            return;
        }
        let lock = self.lock.borrow();
        let Some(lock) = lock.as_ref() else { return };
        if lock.held() {
            if self.promoting.get() == 0 {
                // A promotion failed: try again.
                self.generation.set(self.generation.get() + 1);
                spawn_local(self.clone().promote(inner.clone()));
            }
            return;
        }
        let stale = if glue::is_visible() {
            STALE_VISIBLE_MS
        } else {
            STALE_HIDDEN_MS
        };
        if Date::now() - self.last_heard.get() > stale {
            // The leader is frozen, throttled or gone without releasing.
            self.last_heard.set(Date::now());
            lock.steal();
        }
    }

    /// A sync message from another instance (routed by store.rs).
    pub fn on_message(self: &Rc<Self>, inner: &Rc<Ctx>, msg: &Value) {
        let leader = self.leader();
        match msg.get("t").and_then(Value::as_str) {
            Some("beat") => self.last_heard.set(Date::now()),
            Some("leader") => {
                self.last_heard.set(Date::now());
                // A new leader: whatever the old one had not answered, again.
                for (rid, (ask, _, _)) in self.asks.borrow().iter() {
                    self.post_ask(inner, *rid, ask);
                }
            }
            Some("event") if leader.is_none() => {
                self.last_heard.set(Date::now());
                let kind = msg.get("kind").and_then(Value::as_str).unwrap_or("");
                let payload = msg.get("payload").cloned().unwrap_or(Value::Null);
                match kind {
                    "status" => {
                        let ingested = msg.get("ingested").and_then(Value::as_u64).unwrap_or(0);
                        *self.status.borrow_mut() = Some((payload, ingested));
                        // The event carries what status() now returns.
                        inner.events.emit_value(kind, &self.status(inner));
                        return;
                    }
                    "idmap" => {
                        if let (Some(tmp), Some(id)) = (
                            payload.get("tmp").and_then(Value::as_str),
                            payload.get("id").and_then(Value::as_str),
                        ) {
                            inner.add_alias(tmp, id);
                        }
                    }
                    _ => {}
                }
                inner.events.emit_value(kind, &payload);
            }
            Some("hello") => {
                if let Some(c) = leader {
                    c.republish_status(inner);
                }
            }
            Some("ask") => {
                let Some(c) = leader else { return };
                let (Some(from), Some(rid), Some(ask)) = (
                    msg.get("from").and_then(Value::as_str),
                    msg.get("rid").and_then(Value::as_u64),
                    msg.get("ask").and_then(Ask::from_json),
                ) else {
                    return;
                };
                let mut fns = None;
                let p = Promise::new(&mut |resolve, reject| fns = Some((resolve, reject)));
                let Some((resolve, reject)) = fns else { return };
                c.ask((ask, resolve, reject));
                let (to, inner) = (from.to_owned(), inner.clone());
                spawn_local(async move {
                    let error = JsFuture::from(p)
                        .await
                        .err()
                        .and_then(|e| serde_json::to_value(ErrorInfo::of(&e)).ok());
                    inner.live.post(&message(
                        json!({"t": "answer", "to": to, "rid": rid, "error": error}),
                    ));
                });
            }
            Some("answer") if msg.get("to").and_then(Value::as_str) == Some(&self.me) => {
                let rid = msg.get("rid").and_then(Value::as_u64).unwrap_or(0) as u32;
                let Some((_, resolve, reject)) = self.asks.borrow_mut().remove(&rid) else {
                    return;
                };
                let _ = match msg.get("error").filter(|e| !e.is_null()) {
                    None => resolve.call0(&JsValue::UNDEFINED),
                    Some(e) => reject.call1(&JsValue::UNDEFINED, &crate::error::error_js(e)),
                };
            }
            _ => {}
        }
    }

    /// `sync()`, `push(coll)`, `pull(coll)`: run by the leader, here or in
    /// another tab.
    pub fn ask(self: &Rc<Self>, inner: &Rc<Ctx>, ask: Ask) -> Promise {
        let mut ask = Some(ask);
        let mut fns = None;
        let p = Promise::new(&mut |resolve, reject| fns = Some((resolve, reject)));
        if let (Some(ask), Some((resolve, reject))) = (ask.take(), fns) {
            match self.leader() {
                Some(c) => c.ask((ask, resolve, reject)),
                None => self.forward(inner, (ask, resolve, reject)),
            }
        }
        p
    }

    fn forward(&self, inner: &Rc<Ctx>, w: Waiter) {
        let rid = self.next_rid.get() + 1;
        self.next_rid.set(rid);
        self.post_ask(inner, rid, &w.0);
        self.asks.borrow_mut().insert(rid, w);
    }

    fn post_ask(&self, inner: &Rc<Ctx>, rid: u32, ask: &Ask) {
        inner.live.post(&message(
            json!({"t": "ask", "from": self.me, "rid": rid, "ask": ask}),
        ));
    }

    /// `goOffline()` / `goOnline()` of this instance.
    pub fn set_cut_off(&self, cut_off: bool) {
        self.cut_off.set(cut_off);
        if let Some(c) = self.leader() {
            c.set_cut_off(cut_off);
        }
    }

    /// Local writes committed: the leader ingests them.
    pub fn kick(&self) {
        if let Some(c) = self.leader() {
            c.kick_outbox();
        }
    }

    /// This instance committed outbox `entries` from mid `first` on
    /// (`first` < 0: unknown): the leader ingests them. A single entry
    /// (several are stored as one batch record) is handed to this
    /// instance's own leader as committed, so that its step need not read
    /// the outbox, with the server copy the write saved for it, if any
    /// (`copies`), so that the step need not read `_server` either;
    /// `streak`: the write came in a streak of writes
    /// (`Live::in_streak`), so the leader need not take it in at once.
    pub fn wrote(&self, first: f64, mut entries: Vec<Value>, mut copies: Vec<Value>, streak: bool) {
        let n = entries.len();
        if first >= 1.0 && n > 0 {
            self.unseen.borrow_mut().push((first as u64, n));
        }
        let Some(c) = self.leader() else {
            return;
        };
        match entries.pop() {
            Some(entry) if n == 1 && first >= 1.0 => {
                let copy = if copies.len() == 1 {
                    copies.pop()
                } else {
                    None
                };
                c.hand_off(first as u64, entry, copy, streak)
            }
            _ => c.kick_outbox(),
        }
    }

    /// This instance's entries above mid `ingested` (the ones the
    /// leader's engine has not taken in).
    fn unseen_after(&self, ingested: u64) -> usize {
        let mut unseen = self.unseen.borrow_mut();
        unseen.retain(|(first, n)| first + *n as u64 - 1 > ingested);
        unseen.iter().map(|(_, n)| n).sum()
    }

    pub fn status(&self, inner: &Ctx) -> Value {
        if let Some(c) = self.leader() {
            let mut s = c.status();
            s.pending += self.unseen_after(c.ingested_mid());
            return serde_json::to_value::<Status>(s).unwrap_or(Value::Null);
        }
        let Some((mut status, ingested)) = self.status.borrow().clone() else {
            // Starting: this instance will lead or hear the leader soon.
            let mut s = Status::idle(inner.local_pending());
            if !self.cut_off.get() && glue::is_online() {
                s.connection = "connecting";
            }
            return serde_json::to_value(s).unwrap_or(Value::Null);
        };
        // The leader's count, and this instance's writes it had not taken
        // in when it published it.
        let pending = status["pending"].as_u64().unwrap_or(0) as usize;
        status["pending"] = json!(pending + self.unseen_after(ingested));
        status["leader"] = json!(false);
        status
    }

    pub fn close(&self) {
        if let Some(stop) = self.stop_timer.borrow_mut().take() {
            let _ = stop.call0(&JsValue::UNDEFINED);
        }
        if let Some(lock) = self.lock.borrow_mut().take() {
            lock.close();
        }
        let closed = crate::error::closed();
        let mut waiting: Vec<Waiter> = std::mem::take(&mut *self.asks.borrow_mut())
            .into_values()
            .collect();
        if let Some(client) = self.client.borrow_mut().take() {
            waiting.extend(client.stop());
        }
        for (_, _, reject) in waiting {
            let _ = reject.call1(&JsValue::UNDEFINED, &closed);
        }
    }
}

/// Starts a new leader term: `_meta` `leader` + 1, in its own transaction.
async fn bump_term(inner: &Rc<Ctx>) -> JsResult<f64> {
    let db = inner.db().await?;
    let term = crate::idb::update_meta(&db, "leader", |v| {
        Some((v.as_f64().unwrap_or(0.0) + 1.0).into())
    })
    .await?;
    Ok(term.as_f64().unwrap_or(0.0))
}

/// The temporary-id aliases the engine stored (followers use them too).
async fn load_aliases(inner: &Rc<Ctx>) -> JsResult<()> {
    let (_, map) = crate::sync::read_id_map(inner).await?;
    inner.set_aliases(&map);
    Ok(())
}

/// `{ local, remote }` of `divergence(coll)`: outbox entries of the
/// collection not yet answered, server changes to it held back.
pub async fn divergence(inner: &Rc<Ctx>, coll: &str) -> JsResult<(usize, u32)> {
    let db = inner.db().await?;
    let tx = Db::tx(&db, &[OUTBOX, HELD], false)?;
    let outbox = Db::store(&tx, OUTBOX)?
        .get_all()
        .map_err(|e| storage(e, "read outbox"))?;
    let held = Db::store(&tx, HELD)?
        .count_with_key(&crate::idb::coll_range(coll)?.into())
        .map_err(|e| storage(e, "count held changes"))?;
    let got = crate::idb::wait_all(&[&outbox, &held], "read outbox").await?;
    let entries = crate::idb::outbox_entries(crate::idb::parse(&got[0]).unwrap_or_default());
    let remote = got[1].as_f64().unwrap_or(0.0) as u32;
    let local = entries
        .iter()
        .filter(|e| e.get("coll").and_then(Value::as_str) == Some(coll))
        .filter(|e| e.get("state").and_then(Value::as_str) != Some("applied"))
        .count();
    Ok((local, remote))
}

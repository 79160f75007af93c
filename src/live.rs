//! Live queries: subscriptions re-run after committed changes, coalesced,
//! delivered in order, and fed by other tabs through a BroadcastChannel.
//!
//! After a write of this tab, a subscription whose last result is known is
//! patched in memory with the committed documents (`Query::patch`) instead
//! of re-reading IndexedDB, whenever the patch provably equals a re-query;
//! any other change (another tab, sync, a patch that cannot tell) re-queries.
//!
//! User callbacks never run while a `RefCell` borrow is held, and one that
//! throws is reported asynchronously without breaking the store.
//!
//! This module knows neither the query path nor the other users of the
//! channel: the store installs the function that runs a query
//! ([`Live::set_runner`]) and routes the channel's messages ([`Live::listen`]).

use crate::error::JsResult;
use crate::glue;
use js_sys::{Array, Function};
use serde_json::Value;
use std::cell::{Cell, OnceCell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use syncstore_core::query::{Change, Query};
use syncstore_core::sorted::{SortedMap, SortedSet};
use syncstore_core::write::Write;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{spawn_local, JsFuture};
use web_sys::{BroadcastChannel, MessageEvent};

/// Results larger than this are re-queried, not held in memory and patched.
const HOLD_ROWS: usize = 1000;
/// Writes with more documents than this re-query.
const PATCH_DOCS: usize = 1000;

/// The documents one committed write of this tab left in a collection, in
/// write order: id and document (`None`: deleted).
type Written = Rc<Vec<(String, Option<Value>)>>;

struct Sub {
    coll: String,
    query: Query,
    callback: Function,
    /// Called with the error when a run fails (else it is only warned).
    on_error: Option<Function>,
    /// The JSON text of the last result delivered.
    last: Option<JsValue>,
    /// How many rows `last` has (`usize::MAX` when the last run failed).
    size: usize,
    /// `last` parsed, once a patch needed it.
    rows: Option<Vec<Value>>,
    /// This tab's writes since `last`, while no other change came.
    patches: Vec<Written>,
    /// A change came that only a re-query can show.
    requery: bool,
    running: bool,
    dirty: bool,
    /// Rows carry `$sync` (syncstate.rs): always re-queried, never patched.
    sync_state: bool,
}

impl Sub {
    fn patchable(&self) -> bool {
        !self.running
            && !self.sync_state
            && !self.requery
            && self.last.is_some()
            && self.size <= HOLD_ROWS
            && self.query.offset == 0
    }
}

type MessageHandler = Closure<dyn Fn(MessageEvent)>;
type ReleaseFn = Closure<dyn Fn(u32)>;

/// Runs a subscription's query `(coll, query, sync_state)`: the number of
/// result rows and the result's JSON text.
pub type Runner =
    Box<dyn Fn(String, Query, bool) -> Pin<Box<dyn Future<Output = JsResult<(usize, JsValue)>>>>>;

#[derive(Default)]
pub struct Live {
    subs: RefCell<SortedMap<u32, Sub>>,
    next_id: Cell<u32>,
    /// Writes started and not yet finished in this tab.
    in_flight: Cell<u32>,
    /// When the last of them finished (ms since the epoch; 0: none yet).
    last_write_at: Cell<f64>,
    /// How long after the write before it the last write started (0 if
    /// another was in flight; infinite for the first).
    last_gap: Cell<f64>,
    /// Subscriptions waiting for the next flush.
    pending: RefCell<SortedSet<u32>>,
    flush_scheduled: Cell<bool>,
    /// `db.live(fn)` observers: called with the collections of each
    /// committed change (this tab's, another tab's, sync's).
    watchers: RefCell<SortedMap<u32, Function>>,
    channel: RefCell<Option<BroadcastChannel>>,
    on_message: RefCell<Option<MessageHandler>>,
    release: RefCell<Option<ReleaseFn>>,
    /// Runs the queries (installed by store.rs: query.rs, syncstate.rs).
    runner: OnceCell<Runner>,
    /// The store closed: a run that fails then is not reported.
    closed: Cell<bool>,
}

/// Counts a write in flight; flushes subscriptions when the last one ends.
pub struct WriteGuard(Rc<Live>);

impl Drop for WriteGuard {
    fn drop(&mut self) {
        let live = &self.0;
        live.in_flight.set(live.in_flight.get().saturating_sub(1));
        live.last_write_at.set(js_sys::Date::now());
        live.schedule();
    }
}

impl Live {
    pub fn new() -> Rc<Live> {
        Rc::new(Live::default())
    }

    /// Installs what runs the subscriptions' queries.
    pub fn set_runner(&self, runner: Runner) {
        let _ = self.runner.set(runner);
    }

    /// Posts a message to the other instances of this database.
    pub fn post(&self, msg: &JsValue) {
        if let Some(ch) = self.channel.borrow().as_ref() {
            let _ = ch.post_message(msg);
        }
    }

    pub fn writes_in_flight(&self) -> u32 {
        self.in_flight.get()
    }

    /// When this tab's last write finished (ms since the epoch; 0: none).
    pub fn last_write_at(&self) -> f64 {
        self.last_write_at.get()
    }

    /// The last write started within `gap_ms` of the one before it: the
    /// app writes in a streak (a loop of awaited writes, or one that awaits
    /// each write's live-query callback), not one write now and then.
    pub fn in_streak(&self, gap_ms: f64) -> bool {
        self.last_gap.get() < gap_ms
    }

    pub fn write_started(self: &Rc<Self>) -> WriteGuard {
        let gap = match (self.in_flight.get(), self.last_write_at.get()) {
            (0, 0.0) => f64::INFINITY,
            (0, last) => js_sys::Date::now() - last,
            _ => 0.0,
        };
        self.last_gap.set(gap);
        self.in_flight.set(self.in_flight.get() + 1);
        WriteGuard(self.clone())
    }

    /// Opens the database's channel to its other instances (tabs, stores);
    /// `on_message` gets what they post (routed by store.rs).
    pub fn listen(&self, name: &str, on_message: impl Fn(MessageEvent) + 'static) -> JsResult<()> {
        let channel = BroadcastChannel::new(&format!("syncstore:{name}"))?;
        let on_message = Closure::<dyn Fn(MessageEvent)>::new(on_message);
        channel.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        *self.channel.borrow_mut() = Some(channel);
        *self.on_message.borrow_mut() = Some(on_message);
        Ok(())
    }

    /// Marks subscriptions on `colls` stale after a commit; `local` commits
    /// are announced to other tabs.
    pub fn changed(self: &Rc<Self>, colls: &[String], local: bool) {
        self.refresh(colls, local, false);
    }

    /// After a commit that moved only server versions of documents of
    /// `colls` (a write settled: settle markers; the documents did not change): only
    /// the subscriptions that show the sync state (`$sync`) re-run; the
    /// `db.live` observers hear it (their queries may show it too).
    /// (Re-running every live query on each settle made the app's next
    /// write wait for those reads.)
    pub fn restamped(self: &Rc<Self>, colls: &[String], local: bool) {
        self.refresh(colls, local, true);
    }

    fn refresh(self: &Rc<Self>, colls: &[String], local: bool, state_only: bool) {
        if local {
            self.announce(colls, state_only);
        }
        self.mark(colls, None, state_only);
        self.schedule();
        self.notify(colls);
    }

    /// Tells the watchers which collections changed. They only schedule a
    /// re-run (glue.js `LiveQuery`), so no Rust borrow is re-entered.
    fn notify(&self, colls: &[String]) {
        let watchers: Vec<Function> = self.watchers.borrow().values().cloned().collect();
        if watchers.is_empty() {
            return;
        }
        let list: Array = colls.iter().map(|c| JsValue::from_str(c)).collect();
        for f in watchers {
            glue::call_listener(&f, &list);
        }
    }

    /// Calls `callback(colls)` after every committed change; returns the
    /// function that stops it.
    pub fn watch(self: &Rc<Self>, callback: Function) -> Function {
        let id = self.next_id.get() + 1;
        self.next_id.set(id);
        self.watchers.borrow_mut().insert(id, callback);
        self.unsubscriber(id)
    }

    /// After this tab's write committed `writes` (in `colls`): announces it
    /// and marks the subscriptions on `colls` stale, with the documents
    /// written for those that can be patched.
    pub fn wrote(self: &Rc<Self>, colls: &[String], writes: &[Write]) {
        self.announce(colls, false);
        self.mark(colls, Some(writes), false);
        self.schedule();
        self.notify(colls);
    }

    fn announce(&self, colls: &[String], restamp: bool) {
        if let Some(ch) = self.channel.borrow().as_ref() {
            let msg = js_sys::Object::new();
            let list: Array = colls.iter().map(|c| JsValue::from_str(c)).collect();
            let _ = js_sys::Reflect::set(&msg, &"colls".into(), &list);
            if restamp {
                let _ = js_sys::Reflect::set(&msg, &"restamp".into(), &JsValue::TRUE);
            }
            let _ = ch.post_message(&msg);
        }
    }

    /// Marks the subscriptions on `colls` stale (`state_only`: those that
    /// show the sync state only).
    fn mark(&self, colls: &[String], writes: Option<&[Write]>, state_only: bool) {
        let mut subs = self.subs.borrow_mut();
        let mut pending = self.pending.borrow_mut();
        // The documents written to each collection, parsed at most once.
        let mut docs: SortedMap<&str, Option<Written>> = SortedMap::new();
        for (id, s) in subs.iter_mut() {
            if !colls.contains(&s.coll) || (state_only && !s.sync_state) {
                continue;
            }
            if s.running {
                s.dirty = true;
                continue;
            }
            pending.insert(*id);
            let patch = match writes {
                Some(w) if s.patchable() => docs
                    .entry(s.coll.as_str())
                    .or_insert_with(|| written(w, &s.coll))
                    .clone(),
                _ => None,
            };
            match patch {
                Some(p) => s.patches.push(p),
                None => {
                    s.requery = true;
                    s.patches.clear();
                }
            }
        }
    }

    /// Delivers a pending subscription's patched result when its patches
    /// tell it; false when it must re-query.
    fn apply_patches(&self, id: u32) -> bool {
        let deliver = {
            let mut subs = self.subs.borrow_mut();
            let Some(s) = subs.get_mut(&id) else {
                return true;
            };
            if !s.patchable() || s.patches.is_empty() {
                return false;
            }
            let patches = std::mem::take(&mut s.patches);
            if s.rows.is_none() {
                let text = s.last.as_ref().and_then(JsValue::as_string);
                s.rows = text.and_then(|t| serde_json::from_str(&t).ok());
            }
            let changes: Vec<Change> = patches
                .iter()
                .flat_map(|w| w.iter().map(|(id, doc)| (id.as_str(), doc.as_ref())))
                .collect();
            let rows = s.rows.as_deref().and_then(|r| s.query.patch(r, &changes));
            let Some(rows) = rows else {
                s.rows = None;
                return false;
            };
            let text = JsValue::from_str(&serde_json::to_string(&rows).expect("JSON values"));
            s.size = rows.len();
            s.rows = Some(rows);
            if s.last.as_ref() == Some(&text) {
                None
            } else {
                s.last = Some(text.clone());
                Some((s.callback.clone(), text))
            }
        };
        if let Some((callback, text)) = deliver {
            glue::call_listener(&callback, &glue::parse_json(&text));
        }
        true
    }

    fn schedule(self: &Rc<Self>) {
        if self.in_flight.get() > 0
            || self.flush_scheduled.get()
            || self.pending.borrow().is_empty()
        {
            return;
        }
        self.flush_scheduled.set(true);
        let live = self.clone();
        spawn_local(async move {
            let _ = JsFuture::from(glue::next_task()).await;
            live.flush_scheduled.set(false);
            if live.in_flight.get() > 0 {
                return; // the last write to finish schedules again
            }
            let ids: Vec<u32> = std::mem::take(&mut *live.pending.borrow_mut())
                .into_iter()
                .collect();
            for id in ids {
                if !live.apply_patches(id) {
                    spawn_local(refresh(live.clone(), id));
                }
            }
        });
    }

    pub fn subscribe(
        self: &Rc<Self>,
        coll: String,
        query: Query,
        sync_state: bool,
        callback: Function,
        on_error: Option<Function>,
    ) -> Function {
        let id = self.next_id.get() + 1;
        self.next_id.set(id);
        self.subs.borrow_mut().insert(
            id,
            Sub {
                coll,
                query,
                callback,
                on_error,
                last: None,
                size: 0,
                rows: None,
                patches: vec![],
                requery: false,
                running: false,
                dirty: false,
                sync_state,
            },
        );
        spawn_local(refresh(self.clone(), id));
        self.unsubscriber(id)
    }

    /// The function that ends subscription or watcher `id`, once.
    fn unsubscriber(self: &Rc<Self>, id: u32) -> Function {
        let mut release = self.release.borrow_mut();
        let release = release.get_or_insert_with(|| {
            let weak: Weak<Live> = Rc::downgrade(self);
            Closure::<dyn Fn(u32)>::new(move |id: u32| {
                if let Some(live) = weak.upgrade() {
                    live.subs.borrow_mut().remove(&id);
                    live.pending.borrow_mut().remove(&id);
                    live.watchers.borrow_mut().remove(&id);
                }
            })
        });
        glue::unsubscriber(release.as_ref().unchecked_ref(), id)
    }

    pub fn close(&self) {
        self.closed.set(true);
        if let Some(ch) = self.channel.borrow_mut().take() {
            ch.set_onmessage(None);
            ch.close();
        }
        self.on_message.borrow_mut().take();
        self.subs.borrow_mut().clear();
        self.pending.borrow_mut().clear();
        self.watchers.borrow_mut().clear();
    }
}

/// Re-runs one subscription's query until it is no longer stale, calling
/// back only when the result changed.
async fn refresh(live: Rc<Live>, id: u32) {
    let Some(run) = live.runner.get() else { return };
    let mut first = true;
    loop {
        let (coll, query, sync_state) = {
            let mut subs = live.subs.borrow_mut();
            let Some(s) = subs.get_mut(&id) else { return };
            if first && s.running {
                // The refresh in progress will run again.
                s.dirty = true;
                return;
            }
            first = false;
            s.running = true;
            s.dirty = false;
            // The query reads everything committed so far.
            s.requery = false;
            s.patches.clear();
            (s.coll.clone(), s.query.clone(), s.sync_state)
        };
        let result = run(coll, query, sync_state).await;
        let deliver = {
            let mut subs = live.subs.borrow_mut();
            let Some(s) = subs.get_mut(&id) else { return };
            match result {
                Ok((size, text)) => {
                    s.size = size;
                    s.rows = None;
                    if s.last.as_ref() == Some(&text) {
                        None
                    } else {
                        s.last = Some(text.clone());
                        Some((s.callback.clone(), Ok(text)))
                    }
                }
                Err(_) if live.closed.get() => return,
                Err(e) => {
                    s.size = usize::MAX;
                    s.rows = None;
                    match &s.on_error {
                        Some(f) => Some((f.clone(), Err(e))),
                        None => {
                            glue::warn("syncstore: live query failed", &e);
                            None
                        }
                    }
                }
            }
        };
        match deliver {
            Some((callback, Ok(text))) => {
                let rows = glue::parse_json(&text);
                glue::call_listener(&callback, &rows);
            }
            Some((on_error, Err(e))) => glue::call_listener(&on_error, &e),
            None => {}
        }
        let mut subs = live.subs.borrow_mut();
        let Some(s) = subs.get_mut(&id) else { return };
        if !s.dirty {
            s.running = false;
            return;
        }
    }
}

/// The documents `writes` left in `coll`, or `None` when a patch could not
/// show them exactly (too many, or a record with a conflict marker, whose
/// document the store shows with `$conflict`).
fn written(writes: &[Write], coll: &str) -> Option<Written> {
    let mut out = vec![];
    for w in writes.iter().filter(|w| w.coll == coll) {
        if out.len() == PATCH_DOCS {
            return None;
        }
        let doc = match &w.record {
            None => None,
            Some(r) if r.get("c").is_some() => return None,
            Some(r) => Some(serde_json::from_str(r.get("d")?.as_str()?).ok()?),
        };
        out.push((w.id.clone(), doc));
    }
    Some(Rc::new(out))
}

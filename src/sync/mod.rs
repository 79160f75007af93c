//! Client sync: one loop per store that drives the sans-IO engine
//! (`syncstore_core::sync::ClientSync`, docs/sync-engine.md) with the
//! transports of `net.rs` and carries out what it returns in IndexedDB.
//!
//! - Every engine input runs as one *step*: one readwrite transaction that
//!   first feeds the engine the outbox entries local writes (of any tab)
//!   queued since the last step, then the input (a push answer, a pull page,
//!   WebSocket frames), and writes the effects: re-keyed and re-based
//!   documents, outbox, server state (`_server`) and the engine's meta.
//!   Subscriptions and events follow the commit. If a step fails, the engine
//!   is rebuilt from IndexedDB, which still holds the last committed step.
//! - Only the loop runs steps, so inputs never interleave. Socket frames,
//!   local writes, `sync()` calls and online/offline events are queued and
//!   wake it.
//! - Push goes over HTTP in bounded batches, oldest first; pull over the
//!   WebSocket stream when one is up, else by polling every `pollMs`.
//!   Failures back off exponentially with jitter, bounded.
//! - A step that IndexedDB refuses (a full disk, a connection the browser
//!   closed) does not touch that backoff: the loop holds its storage work
//!   and tries it again on a short schedule of its own (250 ms doubling to
//!   4 s, `syncstore_core::sync::schedule::StorageRetry`): the ingest, the
//!   pull, and, if the step stored socket frames, the socket (those frames
//!   are lost with the step, so the socket is dropped and its successor
//!   catches up from the cursor that IndexedDB holds).
//! - The socket is kept alive with protocol `ping`s every `keepAliveMs` of
//!   quiet; one that delivers nothing for twice that is dead (half-open):
//!   it is closed, a poll runs at once and a new socket follows with
//!   backoff (`syncstore_core::sync::schedule::KeepAlive`).

use crate::ctx::Ctx;
use crate::db::Db;
use crate::error::{storage, JsResult};
use crate::glue;
use crate::idb::{outbox_entries, parse, to_js, IDS, META, OUTBOX, SERVER};
use crate::net::{NetError, Remote, Sent, Socket, SocketEvent};
use js_sys::{Date, Function};
use serde::Serialize;
use serde_json::{json, Value};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::{Rc, Weak};
use syncstore_core::protocol::MutationResult;
use syncstore_core::protocol::{
    read_push, ClientMessage, Mutation, PullResponse, PushRequest, PushResponse, ServerLimits,
    ServerMessage, START_CURSOR,
};
use syncstore_core::schema::SyncMode;
use syncstore_core::sorted::{SortedMap, SortedSet};
use syncstore_core::sync::plan::{synced_colls, synced_spec};
use syncstore_core::sync::policy::{Decision, Policies};
use syncstore_core::sync::schedule::{Backoff, KeepAlive, StorageRetry, BACKOFF_MAX_MS};
use syncstore_core::sync::{ClientSync, Entry, Meta, ServerDoc};
use syncstore_core::write::Key;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

mod ahead;
mod echo;
mod options;
mod step;

use echo::EchoFrame;
pub use options::SyncOptions;
pub(crate) use step::read_id_map;
use step::{add_ids, read_states, to_value};

/// Mutations per push request until the server's limits are known (its
/// `maxMutationsPerPush`, 1,000 by default), and at most once they are:
/// each push costs a request, a commit and a step, whatever its size.
const PUSH_BATCH: usize = 250;
const PUSH_BATCH_MAX: usize = 1000;
/// Serialized bytes per push request (the server accepts 4 MiB).
const PUSH_BYTES: usize = 1 << 20;
/// Changes per pull page.
const PULL_LIMIT: u32 = 1000;
/// How long a connecting socket may take to catch up before polling starts.
const SOCKET_GRACE_MS: f64 = 5000.0;
/// Socket frame text taken into one step (UTF-16 units): bounds the wasm
/// heap a burst of frames needs (about 1,500 documents of the bench's
/// ~250 bytes: wasm memory after an initial sync of 100,000 13.0 MB at
/// 512 KiB, 18.1-18.2 MB here, 23.7 MB at 1 MiB; the sync 1.46x -> 1.28-1.33x
/// Dexie `bulkPut`: fewer, larger steps, bench/findings-sync.md).
const FRAME_CHARS_PER_STEP: usize = 768 * 1024;
/// An outbox entry this tab committed, handed to the loop
/// ([`SyncLoop::hand_off`]).
pub(super) struct Handed {
    pub mid: u64,
    /// The entry as stored, with its `mid`.
    pub entry: Value,
    /// The `_server` copy the same write saved, if it saved one.
    pub copy: Option<Value>,
}

/// What a peek takes in from the handed-over entries
/// ([`SyncLoop::handed_after`]).
pub(super) struct HandedIn {
    /// The entries, in mid order.
    pub entries: Vec<Value>,
    /// The server state of their documents that the engine does not
    /// hold, if the writes saved a `_server` copy of every one
    /// (`handed_states` in step.rs); None: `_server` must be read.
    pub known: Option<SortedMap<Key, ServerDoc>>,
}

/// Bounds on loops that talk to the server within one tick.
const MAX_ROUNDS: usize = 10_000;
/// While this tab's writes keep coming (one is in flight whenever the loop
/// looks), the loop takes new outbox entries in (a step that reads the
/// outbox and writes `_meta`) at most this often, so that they are pushed.
/// IndexedDB runs a step and a write one after the other: a step per
/// socket frame or push answer made each awaited write wait for one (a
/// readwrite step every 7-8 writes, 3x the local-only time of 1,000
/// awaited inserts, bench/findings-sync.md).
const BUSY_STEP_GAP_MS: f64 = 250.0;
/// Meanwhile push answers and socket frames are held (the frames as text,
/// in the inbox) and taken in by one step once the writes pause, or this
/// long after the last such step, or once this many answered mutations
/// are held: storing an answer is a readwrite step (a settle marker and an
/// outbox delete per settled document).
const SETTLE_HOLD_MS: f64 = 2000.0;
const SETTLE_HOLD_MUTATIONS: usize = 2000;
/// The app still counts as writing this long after its last write
/// finished: a loop that awaits each write's live-query callback leaves a
/// gap of 1-3 ms between writes, and a push answer stored in it made the
/// next write and the callback's read wait for the step (live-query p50
/// with sync on 2.3-3.8 ms against 1.3-1.5 local, bench/findings-sync.md).
pub(crate) const WRITE_GAP_MS: f64 = 16.0;

/// Why a push or pull did not complete.
enum Failure {
    Net(NetError),
    Storage(JsValue),
}

impl From<NetError> for Failure {
    fn from(e: NetError) -> Failure {
        Failure::Net(e)
    }
}

impl Failure {
    fn to_js(&self) -> JsValue {
        match self {
            Failure::Net(e) => e.clone().into(),
            Failure::Storage(e) => e.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorInfo {
    code: String,
    message: String,
    retryable: bool,
}

impl ErrorInfo {
    /// The code, message and retryability of a thrown JS value.
    pub fn of(e: &JsValue) -> ErrorInfo {
        let get = |k: &str| js_sys::Reflect::get(e, &k.into()).unwrap_or(JsValue::UNDEFINED);
        ErrorInfo {
            code: get("code").as_string().unwrap_or_else(|| "STORAGE".into()),
            message: get("message")
                .as_string()
                .unwrap_or_else(|| format!("{e:?}")),
            retryable: get("retryable").as_bool().unwrap_or(true),
        }
    }
}

/// The progress of a sync from the start (see [`Status::progress`]).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Progress {
    pub received: u64,
    pub total: Option<u64>,
}

impl Status {
    /// The status of an instance that does not sync (yet): offline, with
    /// the writes it knows to be queued.
    pub fn idle(pending: usize) -> Status {
        Status {
            connection: "offline",
            pending,
            progress: None,
            last_push_at: None,
            last_pull_at: None,
            cursor: None,
            last_error: None,
            leader: false,
        }
    }
}

/// What `db.status()` returns and the `status` event carries.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub connection: &'static str,
    pub pending: usize,
    /// While a sync from the start (a new store, or a resync) brings the
    /// server's documents in: how many changes arrived, and how many the
    /// whole sync brings when the server said so.
    pub progress: Option<Progress>,
    pub last_push_at: Option<f64>,
    pub last_pull_at: Option<f64>,
    pub cursor: Option<String>,
    pub last_error: Option<ErrorInfo>,
    /// True in the instance that runs the sync loop (tabs.rs).
    pub leader: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Ws {
    Down,
    /// Open or opening; the catch-up has not finished.
    Connecting,
    /// `synced` arrived: live changes stream.
    Live,
}

/// One engine input.
pub(crate) enum Input {
    /// A push answer, with the conflicts an app resolver decided.
    Push(PushResponse, SortedMap<u64, Decision>),
    Pull(PullResponse),
    Frame(ServerMessage),
    /// A `changes` frame whose every change is the echo of an own write
    /// settled already, read without its documents: `(version, ts)` of each
    /// change, and the cursor.
    Echo(EchoFrame),
    /// Apply the held server changes of a `"manual"` collection.
    Release(String),
    /// Queue the parked writes of a `"manual"` collection for pushing.
    Unpark(String),
}

/// The changes `inputs` carry (echoed ones included).
fn changes_in(inputs: &[Input]) -> usize {
    inputs
        .iter()
        .map(|i| match i {
            Input::Frame(ServerMessage::Changes { changes, .. }) => changes.len(),
            Input::Echo((stamps, _)) => stamps.len(),
            _ => 0,
        })
        .sum()
}

/// What a caller of `sync()`, `push(coll)` or `pull(coll)` waits for:
/// `{"ask": "sync"}`, `{"ask": "push", "coll": "todos"}` between tabs.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "ask", content = "coll", rename_all = "camelCase")]
pub enum Ask {
    Sync,
    Push(String),
    Pull(String),
}

impl Ask {
    /// The ask another tab sent (its message's parsed `ask`), read by hand:
    /// serde's reading of a `Value` into a type is a second deserializer
    /// per type in the module (issue 19). `None` if it is not one.
    pub fn from_json(v: &Value) -> Option<Ask> {
        let coll = || v.get("coll")?.as_str().map(str::to_owned);
        match v.get("ask")?.as_str()? {
            "sync" => Some(Ask::Sync),
            "push" => coll().map(Ask::Push),
            "pull" => coll().map(Ask::Pull),
            _ => None,
        }
    }
}

/// An ask and the promise functions that answer it.
pub type Waiter = (Ask, Function, Function);
/// The online/offline listener and the function that removes it.
type OnlineWatch = (Closure<dyn Fn(bool)>, Function);

pub struct SyncLoop {
    opts: SyncOptions,
    /// The schema's conflict policies.
    policies: Policies,
    /// This leader's term (`_meta` `leader`): a step that finds another
    /// term there aborts and this client stops (see `tabs.rs`).
    term: f64,
    /// Set when the store closes or this tab stops leading; ends the loop.
    stopped: Cell<bool>,
    remote: Remote,
    /// The token in use was refused (or there is none yet): ask `getToken`
    /// before the next request.
    token_stale: Cell<bool>,
    /// The server's limits are known (`GET /v1/config` or a `synced` frame).
    limits_known: Cell<bool>,
    /// Mutations per push (see [`PUSH_BATCH`]).
    push_max: Cell<usize>,
    engine: RefCell<ClientSync>,
    /// Of the documents whose server state the engine holds (those with
    /// outbox entries, and those loaded for the current step), the ones
    /// whose state `_server` holds (see [`Self::copies`]).
    copied: RefCell<SortedSet<Key>>,
    /// `_meta` still holds the id map (an older version kept it there):
    /// the next step moves it to `_ids`.
    legacy_ids: Cell<bool>,
    waker: glue::Waker,
    socket: RefCell<Option<Socket>>,
    /// Bumped for every socket; frames of older sockets are ignored.
    socket_gen: Cell<u32>,
    ws: Cell<Ws>,
    /// The current socket's keep-alive: when it last delivered something
    /// (or opened), when it was pinged.
    keep_alive: Cell<KeepAlive>,
    inbox: RefCell<VecDeque<(u32, SocketEvent)>>,
    ws_failures: Cell<u32>,
    ws_retry_at: Cell<f64>,
    /// The backoff of HTTP requests: a push waits for it, a poll for it
    /// and `pollMs`. Any answer of the server (a pull, a socket frame, a
    /// push) ends it; an explicit `sync()` never lengthens it.
    net: Cell<Backoff>,
    /// The retry of a step IndexedDB refused; independent of `net`.
    storage: Cell<StorageRetry>,
    /// The error of the last storage failure: cleared from `lastError`
    /// once a step commits again.
    storage_error: RefCell<Option<ErrorInfo>>,
    next_poll_at: Cell<f64>,
    /// Outbox entries may have been committed since the outbox was last
    /// read that were not handed over ([`Self::hand_off`]): another tab's,
    /// a batch, a failed step's.
    outbox_dirty: Cell<bool>,
    /// This tab's single-entry writes, as committed (with their mids): a
    /// peek takes them in without reading the outbox (see
    /// [`Self::hand_off`]).
    handed: RefCell<Vec<Handed>>,
    /// When the loop's current wait ends (infinity while it runs a tick).
    asleep_until: Cell<f64>,
    /// When the last step started (see [`BUSY_STEP_GAP_MS`]).
    last_step_at: Cell<f64>,
    /// Push answers held while the app's writes stream in (see
    /// [`SETTLE_HOLD_MS`]), how many mutations they answer, and the
    /// highest mid they answer (pushes go on above it).
    held: RefCell<Vec<Input>>,
    held_mutations: Cell<usize>,
    held_top: Cell<u64>,
    /// When a step last took in the held answers (and, from the loop,
    /// every frame).
    settled_at: Cell<f64>,
    /// The browser's online state (its online/offline events).
    online: Cell<bool>,
    /// `goOffline()`: the app cut this store from the server.
    cut_off: Cell<bool>,
    /// The last HTTP exchange got an answer.
    reachable: Cell<bool>,
    waiters: RefCell<Vec<Waiter>>,
    /// Collections that sync on demand (`sync: "manual"`): their entries
    /// are parked until `push(coll)`, and server changes to them are held
    /// in `_held` until `pull(coll)`.
    manual: SortedSet<String>,
    last_push_at: Cell<Option<f64>>,
    last_pull_at: Cell<Option<f64>>,
    last_error: RefCell<Option<ErrorInfo>>,
    /// The last error published as an `error` event.
    reported_error: RefCell<Option<ErrorInfo>>,
    /// The status last emitted, and the highest mid the engine had taken
    /// in then (followers count their writes above it, tabs.rs).
    status: RefCell<Option<(Status, u64)>>,
    /// What the status reports of the engine, as IndexedDB holds it (see
    /// [`Stored`]).
    stored: RefCell<Stored>,
    /// A sync from the start in progress (see [`Status::progress`]).
    progress: RefCell<Option<Progress>>,
    on_online: RefCell<Option<OnlineWatch>>,
    /// Frames taken from the inbox and planned during the last step's
    /// commit (see `ahead.rs`).
    ahead: RefCell<Option<ahead::Ahead>>,
    /// Steps begun: a plan made ahead is for the step after the one
    /// during which it was made.
    steps: Cell<u64>,
}

/// The engine's state as of the last committed step: what `status()`
/// reports. While a step is in flight the engine runs ahead of IndexedDB
/// (a pull page's cursor, a push answer's settled entries), and if the step
/// fails it falls back: the status must not show what was never stored.
/// A peek and an echo frame store nothing but are shown at once: what they
/// move (the entries taken in, the cursor past the store's own changes)
/// comes out the same after a reload.
#[derive(Debug, Clone, Default)]
struct Stored {
    pending: usize,
    cursor: Option<String>,
    /// The highest mid taken in from the outbox.
    ingested: u64,
}

/// The wait after `failures` failures, jittered ([`Backoff::delay`]).
fn backoff(failures: u32) -> f64 {
    Backoff::delay(failures, js_sys::Math::random())
}

/// Called when a loop stopped by itself (its term was taken) while the
/// store is open: the owner of the loop (tabs.rs) decides what follows.
pub type Ended = Box<dyn FnOnce(&Rc<Ctx>, &Rc<SyncLoop>)>;

impl SyncLoop {
    /// Restores the engine from IndexedDB and starts the loop.
    pub async fn start(
        inner: &Rc<Ctx>,
        opts: SyncOptions,
        term: f64,
        cut_off: bool,
        ended: Ended,
    ) -> JsResult<Rc<SyncLoop>> {
        let client_id = inner.client_id.borrow().clone();
        let (engine, copied, legacy_ids) = Self::load(inner).await?;
        let keep_alive_ms = opts.keep_alive_ms;
        let s = Rc::new(SyncLoop {
            remote: Remote::new(&opts.url, opts.token.as_deref().unwrap_or(""), &client_id),
            token_stale: Cell::new(opts.token.is_none()),
            limits_known: Cell::new(false),
            push_max: Cell::new(PUSH_BATCH),
            opts,
            policies: Policies::from_schema(&inner.schema),
            term,
            stopped: Cell::new(false),
            engine: RefCell::new(engine),
            copied: RefCell::new(copied),
            legacy_ids: Cell::new(legacy_ids),
            waker: glue::Waker::new(),
            socket: RefCell::new(None),
            socket_gen: Cell::new(0),
            ws: Cell::new(Ws::Down),
            keep_alive: Cell::new(KeepAlive::new(keep_alive_ms, 0.0)),
            inbox: RefCell::new(VecDeque::new()),
            ws_failures: Cell::new(0),
            ws_retry_at: Cell::new(0.0),
            net: Cell::new(Backoff::default()),
            storage: Cell::new(StorageRetry::default()),
            storage_error: RefCell::new(None),
            next_poll_at: Cell::new(0.0),
            outbox_dirty: Cell::new(true),
            handed: RefCell::new(vec![]),
            asleep_until: Cell::new(f64::INFINITY),
            last_step_at: Cell::new(0.0),
            held: RefCell::new(vec![]),
            held_mutations: Cell::new(0),
            held_top: Cell::new(0),
            settled_at: Cell::new(0.0),
            online: Cell::new(glue::is_online()),
            cut_off: Cell::new(cut_off),
            reachable: Cell::new(false),
            waiters: RefCell::new(vec![]),
            manual: {
                // `insert`, not `collect()`: a `SortedSet` collected from an
                // iterator brings a sort instance of its own (issue 19).
                let mut manual = SortedSet::new();
                for (n, s) in &inner.schema.collections {
                    if s.sync == SyncMode::Manual {
                        manual.insert(n.clone());
                    }
                }
                manual
            },
            last_push_at: Cell::new(None),
            last_pull_at: Cell::new(None),
            last_error: RefCell::new(None),
            reported_error: RefCell::new(None),
            status: RefCell::new(None),
            stored: RefCell::new(Stored::default()),
            progress: RefCell::new(None),
            on_online: RefCell::new(None),
            ahead: RefCell::new(None),
            steps: Cell::new(0),
        });
        inner.set_aliases(s.engine.borrow().id_map());
        s.stored_now();
        let weak = Rc::downgrade(&s);
        let cb = Closure::<dyn Fn(bool)>::new(move |online: bool| {
            if let Some(s) = weak.upgrade() {
                s.online.set(online);
                s.network_changed();
            }
        });
        let stop = glue::watch_online(cb.as_ref().unchecked_ref());
        *s.on_online.borrow_mut() = Some((cb, stop));
        wasm_bindgen_futures::spawn_local(run(inner.clone(), s.clone(), ended));
        Ok(s)
    }

    /// The engine as IndexedDB holds it: `_meta`, the outbox, the id map
    /// (`_ids`), and the server state of the documents with outbox entries
    /// (every other document's lives in IndexedDB alone and is loaded by
    /// the step that needs it); the keys among those that `_server` holds;
    /// and whether the id map still sat in `_meta` (written by a version
    /// before `_ids`: the first step moves it).
    async fn load(inner: &Rc<Ctx>) -> JsResult<(ClientSync, SortedSet<Key>, bool)> {
        let db = inner.db().await?;
        let mut stores = vec![META, SERVER, OUTBOX, IDS];
        stores.extend(synced_colls(&inner.schema));
        let tx = Db::tx(&db, &stores, false)?;
        let read = |r: Result<web_sys::IdbRequest, JsValue>| r.map_err(|e| storage(e, "read"));
        let reqs = [
            read(Db::store(&tx, META)?.get(&"sync".into()))?,
            read(Db::store(&tx, OUTBOX)?.get_all())?,
            read(Db::store(&tx, IDS)?.get_all())?,
        ];
        let got = crate::idb::wait_all(&reqs.iter().collect::<Vec<_>>(), "read sync state").await?;
        let meta: Option<Meta> = js_sys::Reflect::get(&got[0], &"v".into())
            .ok()
            .filter(|v| !v.is_undefined())
            .and_then(|v| parse(&v));
        let Some(mut meta) = meta else {
            return Ok((ClientSync::new(), SortedSet::new(), false));
        };
        let legacy_ids = !meta.id_map.is_empty();
        add_ids(&mut meta.id_map, &got[2]);
        let outbox: Vec<Entry> = outbox_entries(parse(&got[1]).unwrap_or_default())
            .into_iter()
            .filter_map(|e| Entry::from_json(e).ok())
            .filter(|e| e.mutation.mid <= meta.max_mid)
            .collect();
        let mut keys: SortedSet<Key> = SortedSet::new();
        for e in &outbox {
            if synced_spec(&inner.schema, &e.mutation.coll).is_some() {
                keys.insert((e.mutation.coll.clone(), e.mutation.id.clone()));
            }
        }
        let keys: Vec<Key> = keys.into_iter().collect();
        let (states, copied) = read_states(&tx, &keys, &SortedSet::new()).await?;
        Ok((
            ClientSync::restore(meta, states, outbox),
            copied,
            legacy_ids,
        ))
    }

    /// `goOffline()` / `goOnline()`.
    pub fn set_cut_off(&self, cut_off: bool) {
        self.cut_off.set(cut_off);
        self.network_changed();
    }

    fn is_online(&self) -> bool {
        self.online.get() && !self.cut_off.get()
    }

    fn network_changed(&self) {
        if self.is_online() {
            // Back online: try everything now.
            self.ws_failures.set(0);
            self.ws_retry_at.set(0.0);
            self.net.set(Backoff::default());
            self.next_poll_at.set(0.0);
        } else {
            self.drop_socket();
        }
        self.waker.wake();
    }

    pub fn kick_outbox(&self) {
        self.outbox_dirty.set(true);
        self.waker.wake();
    }

    /// This tab committed `entry` (one write's outbox entry, stored under
    /// `mid`, which it now carries): handed over, so that the step that takes it in need not read
    /// the outbox, and its transaction leaves the outbox out of its scope
    /// (the app's next write, over its collection and the outbox, waited
    /// for that readonly read: 1-12 ms per write, bench/findings-sync.md).
    /// `copy`: the `_server` copy the write saved (the first edit of a
    /// server document, `plan::server_copy`), which is that document's
    /// server state when the step takes the entry in (no step runs
    /// between without taking it in); a peek whose documents all come
    /// with one leaves `_server` out of its scope too (step.rs).
    ///
    /// The loop is woken only if it sleeps past the time it would take the
    /// entry in: while the app writes in a `streak` ([`Self::streaming`]),
    /// the end of the write gap or [`BUSY_STEP_GAP_MS`] after the last
    /// step, whichever comes first
    /// (a loop woken by every write ran a tick and armed a timer per
    /// write for nothing).
    pub fn hand_off(&self, mid: u64, mut entry: Value, copy: Option<Value>, streak: bool) {
        entry["mid"] = Value::from(mid);
        self.handed.borrow_mut().push(Handed { mid, entry, copy });
        let now = Date::now();
        let due = if streak {
            (self.last_step_at.get() + BUSY_STEP_GAP_MS)
                .min(now + WRITE_GAP_MS)
                .max(now)
        } else {
            now
        };
        if self.asleep_until.get() > due {
            self.waker.wake();
        }
    }

    /// Outbox entries the engine has not taken in may exist.
    pub(super) fn has_news(&self) -> bool {
        self.outbox_dirty.get() || {
            let last = self.handed.borrow().last().map(|h| h.mid);
            last.is_some_and(|mid| {
                self.engine
                    .try_borrow()
                    .map_or(true, |eng| mid >= eng.next_mid())
            })
        }
    }

    /// The handed-over entries above `last_mid` if they are every entry
    /// stored above it (nothing else may have been committed, and their
    /// mids follow on from it), or None: the outbox must be read.
    /// Entries at or below `last_mid` (taken in by a step that read the
    /// outbox) are dropped.
    pub(super) fn handed_after(&self, last_mid: u64) -> Option<HandedIn> {
        let mut handed = self.handed.borrow_mut();
        handed.retain(|h| h.mid > last_mid);
        if self.outbox_dirty.get() || handed.is_empty() {
            return None;
        }
        let follows = handed
            .iter()
            .enumerate()
            .all(|(i, h)| h.mid == last_mid + 1 + i as u64);
        follows.then(|| HandedIn {
            entries: handed.iter().map(|h| h.entry.clone()).collect(),
            known: self.handed_states(&handed),
        })
    }

    /// `db.sync()`: resolves once a push of everything queued and a pull
    /// have both completed; rejects with the error that stopped either.
    /// `push(coll)` and `pull(coll)` do that too, and then push the
    /// collection's entries or apply its held changes (for `"manual"` ones).
    pub fn ask(&self, waiter: Waiter) {
        self.waiters.borrow_mut().push(waiter);
        self.outbox_dirty.set(true);
        self.waker.wake();
    }

    /// The highest mid the engine has taken in from the outbox (as stored).
    pub fn ingested_mid(&self) -> u64 {
        self.stored.borrow().ingested
    }

    /// The engine is as IndexedDB holds it (loaded, or a step committed).
    fn stored_now(&self) {
        let eng = self.engine.borrow();
        *self.stored.borrow_mut() = Stored {
            pending: eng.pending(),
            cursor: eng.cursor().map(str::to_owned),
            ingested: eng.next_mid() - 1,
        };
    }

    pub fn status(&self) -> Status {
        let connection = if !self.is_online() {
            "offline"
        } else if self.ws.get() == Ws::Live {
            "websocket"
        } else if self.ws.get() == Ws::Connecting && self.ws_failures.get() == 0 && !self.polling()
        {
            // The first socket, or the first one after a live one dropped
            // (or the network came back), before polling takes over.
            "connecting"
        } else if self.reachable.get() {
            "polling"
        } else if self.ws_failures.get() == 0 && self.net.get().failures() == 0 {
            // Nothing has failed yet: the start, before the first answer.
            "connecting"
        } else {
            "offline"
        };
        let stored = self.stored.borrow();
        Status {
            connection,
            pending: stored.pending,
            progress: self.progress.borrow().clone(),
            last_push_at: self.last_push_at.get(),
            last_pull_at: self.last_pull_at.get(),
            cursor: stored.cursor.clone(),
            last_error: self.last_error.borrow().clone(),
            leader: true,
        }
    }

    /// Stops the loop (store closed, or this tab no longer leads) and
    /// hands back the asks it had not answered.
    pub fn stop(&self) -> Vec<Waiter> {
        self.stopped.set(true);
        self.drop_socket();
        if let Some((_, stop)) = self.on_online.borrow_mut().take() {
            let _ = stop.call0(&JsValue::UNDEFINED);
        }
        self.waker.wake();
        std::mem::take(&mut *self.waiters.borrow_mut())
    }

    fn drop_socket(&self) {
        self.socket.borrow_mut().take();
        self.socket_gen.set(self.socket_gen.get() + 1);
        self.ws.set(Ws::Down);
        self.inbox.borrow_mut().clear();
        self.ahead.borrow_mut().take();
    }

    fn open_socket(self: &Rc<Self>) {
        let cursor = self.engine.borrow_mut().ws_hello_cursor();
        let gen = self.socket_gen.get() + 1;
        self.socket_gen.set(gen);
        let weak: Weak<SyncLoop> = Rc::downgrade(self);
        let opened = Socket::open(&self.remote, cursor, move |ev| {
            if let Some(s) = weak.upgrade() {
                if gen != s.socket_gen.get() {
                    return;
                }
                s.inbox.borrow_mut().push_back((gen, ev));
                // The socket is making progress.
                let mut k = s.keep_alive.get();
                k.heard(Date::now());
                s.keep_alive.set(k);
                s.waker.wake();
            }
        });
        match opened {
            Ok(sock) => {
                *self.socket.borrow_mut() = Some(sock);
                self.ws.set(Ws::Connecting);
                self.keep_alive
                    .set(KeepAlive::new(self.opts.keep_alive_ms, Date::now()));
            }
            Err(e) => self.socket_failed(&Failure::Net(e)),
        }
    }

    fn socket_failed(&self, why: &Failure) {
        // A live socket that drops is no failed attempt: its reconnect is
        // a first one again (status "connecting"), after the first delay.
        let was_live = self.ws.get() == Ws::Live;
        self.socket.borrow_mut().take();
        self.ws.set(Ws::Down);
        let n = if was_live {
            0
        } else {
            self.ws_failures.get() + 1
        };
        self.ws_failures.set(n);
        self.ws_retry_at.set(Date::now() + backoff(n.max(1)));
        self.note_error(why);
    }

    fn note_error(&self, why: &Failure) {
        *self.last_error.borrow_mut() = Some(ErrorInfo::of(&why.to_js()));
    }

    fn http_ok(&self) {
        if !self.reachable.replace(true) || self.net.get().failures() > 0 {
            // The server is back: retry the socket now rather than after its backoff.
            self.ws_failures.set(0);
            self.ws_retry_at.set(0.0);
        }
        self.server_answered();
        // The server answers: what failed before is over, unless it is the
        // socket that still fails (polling goes on meanwhile), or storage
        // (a step that commits ends that error, `storage_ok`).
        let socket_failing =
            self.opts.websocket && self.ws.get() == Ws::Down && self.ws_failures.get() > 0;
        let storage_failing = self.storage.get().failures() > 0;
        if !socket_failing && !storage_failing {
            self.last_error.borrow_mut().take();
        }
    }

    /// The server answered something: the HTTP backoff ends, so what is
    /// queued is pushed at once (see [`Backoff::answered`]).
    fn server_answered(&self) {
        let mut b = self.net.get();
        b.answered();
        self.net.set(b);
    }

    /// `forced`: the app asked for the request (`sync()`, `push(coll)`);
    /// its failure never lengthens the loop's backoff.
    fn http_failed(&self, why: &Failure, forced: bool) {
        if matches!(why, Failure::Net(NetError::Network(_))) {
            self.reachable.set(false);
        }
        // A 429's or a 503's Retry-After.
        let min_wait = match why {
            Failure::Net(e) => e.retry_after_ms(),
            _ => 0.0,
        };
        let mut b = self.net.get();
        b.failed(Date::now(), js_sys::Math::random(), min_wait, forced);
        self.net.set(b);
        self.note_error(why);
    }

    /// The app's writes stream in: one is in flight as the loop looks.
    fn busy(inner: &Ctx) -> bool {
        inner.live.writes_in_flight() > 0
    }

    /// The app is writing: [`Self::busy`], or its last write finished
    /// less than [`WRITE_GAP_MS`] ago (an app that awaits each write's
    /// live-query callback before the next one). Push answers and frames
    /// wait; new entries are taken in and pushed at once all the same.
    fn writing(inner: &Ctx) -> bool {
        Self::busy(inner) || Date::now() < inner.live.last_write_at() + WRITE_GAP_MS
    }

    /// The app writes in a streak: [`Self::busy`], or [`Self::writing`]
    /// with its last write started less than [`WRITE_GAP_MS`] after the
    /// one before. New entries are then taken in at most every
    /// [`BUSY_STEP_GAP_MS`] or once the writes pause; a write that comes
    /// alone (an app that waits for the server's echo, row 8) at once.
    fn streaming(inner: &Ctx) -> bool {
        Self::busy(inner) || (Self::writing(inner) && inner.live.in_streak(WRITE_GAP_MS))
    }

    /// Held answers and frames must be taken in now although the app is
    /// writing (see [`SETTLE_HOLD_MS`]).
    fn settle_due(&self, now: f64) -> bool {
        now >= self.settled_at.get() + SETTLE_HOLD_MS
            || self.held_mutations.get() >= SETTLE_HOLD_MUTATIONS
    }

    /// The held answers, in the order they came; pushes start from the
    /// oldest unanswered entry again.
    fn take_held(&self) -> Vec<Input> {
        self.held_mutations.set(0);
        self.held_top.set(0);
        std::mem::take(&mut *self.held.borrow_mut())
    }

    /// One round of the loop: socket frames, then the outbox (ingest and
    /// push), then the socket, then a poll if one is due; finally answers
    /// `sync()` callers and reports a changed status.
    async fn tick(self: &Rc<Self>, inner: &Rc<Ctx>) {
        let waiters: Vec<Waiter> = std::mem::take(&mut *self.waiters.borrow_mut());
        let forced = !waiters.is_empty();
        // A storage retry that is due: what the refused step was doing runs
        // again (the ingest here, the pull and the socket by their times,
        // which the failure set to the retry's).
        let mut retry = self.storage.get();
        if retry.take_due(Date::now()) {
            self.outbox_dirty.set(true);
        }
        self.storage.set(retry);
        // Storage work waits for a due retry (unless the app asks).
        let retrying = !forced && retry.holding(Date::now());
        let mut result: Result<(), Failure> = Ok(());
        // Writes still in flight in this tab wake the loop when they commit:
        // wait for the last one, so that one push carries them all. A write
        // issued as soon as the previous one resolved (a loop of awaited
        // writes) starts within the current task: one task hop lets it be
        // seen in flight.
        if !forced && self.has_news() && inner.live.writes_in_flight() == 0 {
            let _ = JsFuture::from(glue::next_task()).await;
        }
        let writing = !forced && Self::writing(inner);
        let streaming = !forced && Self::streaming(inner);
        let now = Date::now();
        let waiting = !self.held.borrow().is_empty() || self.frames_waiting();
        if !retrying
            && (forced || ((!writing || self.settle_due(now)) && (waiting || self.has_news())))
        {
            // What came: held answers and new outbox entries in one step,
            // then socket frames (left in the inbox, as text, while held)
            // in another, so that the echoes of the answers' writes are
            // known as such (their frames are read without their
            // documents and move the cursor only).
            let held = self.take_held();
            let held_step = !held.is_empty();
            if held_step {
                if let Err(e) = self.step(inner, held).await {
                    result = Err(Failure::Storage(e));
                }
            }
            let (frames, planned) = if result.is_ok() {
                self.next_frames(inner)
            } else {
                (vec![], None)
            };
            let had_frames = !frames.is_empty();
            if had_frames {
                crate::trace::frames(inner, frames.len(), || changes_in(&frames));
                self.last_pull_at.set(Some(Date::now()));
            }
            if result.is_ok() && (had_frames || !held_step) {
                let stepped = match planned {
                    Some(p) => self.step_ahead(inner, &frames, p).await,
                    None => Ok(false),
                };
                let stepped = match stepped {
                    Ok(true) => Ok(()),
                    Ok(false) => self.step(inner, frames).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = stepped {
                    if had_frames {
                        // The frames are lost with the step, and the socket's
                        // stream runs on past them: its successor catches up
                        // from the cursor IndexedDB holds, once the retry is due.
                        self.drop_socket();
                    }
                    result = Err(Failure::Storage(e));
                }
            }
            if !self.frames_waiting() {
                self.settled_at.set(Date::now());
            }
        } else if !retrying
            && self.has_news()
            && (!streaming || now >= self.last_step_at.get() + BUSY_STEP_GAP_MS)
        {
            // Only the new outbox entries, so that they are pushed.
            if let Err(e) = self.step(inner, vec![]).await {
                result = Err(Failure::Storage(e));
            }
        }
        self.keep_socket_alive();
        let online = self.is_online();
        if result.is_ok()
            && (forced || (!retrying && online && self.net.get().ready(Date::now())))
            && self.has_pushable()
        {
            result = self.push_all(inner, forced).await;
        }
        if self.opts.websocket
            && online
            && !retrying
            && self.socket.borrow().is_none()
            && Date::now() >= self.ws_retry_at.get()
        {
            match self.ensure_token().await {
                Ok(()) => self.open_socket(),
                Err(f) => self.socket_failed(&f),
            }
        }
        let poll_due =
            online && !retrying && self.polling() && Date::now() >= self.next_poll_at.get();
        if poll_due && !self.limits_known.get() {
            // Without a socket (whose `synced` frame brings them).
            self.fetch_limits(inner).await;
        }
        if result.is_ok() && (forced || poll_due) {
            result = self.pull_all(inner, forced).await;
            let next = match result {
                Ok(()) => Date::now() + self.opts.poll_ms,
                // Not before the server's Retry-After either.
                Err(_) => (Date::now() + self.opts.poll_ms.max(backoff(self.net.get().failures())))
                    .max(self.net.get().retry_at()),
            };
            self.next_poll_at.set(next);
        }
        if let Err(f) = &result {
            self.failed(f, forced);
        }
        if self.stopped.get() {
            // The new leader answers them (`tabs.rs` forwards them).
            self.waiters.borrow_mut().extend(waiters);
            return;
        }
        for (ask, resolve, reject) in waiters {
            let mut result = match &result {
                Ok(()) => Ok(()),
                Err(f) => Err(f.to_js()),
            };
            if result.is_ok() {
                result = match ask {
                    Ask::Sync => Ok(()),
                    Ask::Push(coll) => match self.step(inner, vec![Input::Unpark(coll)]).await {
                        Ok(()) => self.push_all(inner, true).await.map_err(|f| {
                            self.failed(&f, true);
                            f.to_js()
                        }),
                        Err(e) => Err(e),
                    },
                    Ask::Pull(coll) => self.step(inner, vec![Input::Release(coll)]).await,
                };
            }
            let _ = match result {
                Ok(()) => resolve.call0(&JsValue::UNDEFINED),
                Err(e) => reject.call1(&JsValue::UNDEFINED, &e),
            };
        }
        // The status first: an `error` listener then reads the status the
        // error put the store in.
        self.report_status(inner);
        self.report_error(inner);
    }

    /// Socket events of the current socket, as engine inputs; the rest
    /// (open, close, keep-alive, errors) handled here.
    fn take_frames(&self, inner: &Rc<Ctx>) -> Vec<Input> {
        let events: Vec<SocketEvent> = {
            // A bounded part of what arrived (a catch-up can be a burst of
            // the whole dataset): frames stay JS strings until taken here,
            // so the wasm heap holds one step's worth at a time.
            let gen = self.socket_gen.get();
            let mut inbox = self.inbox.borrow_mut();
            let mut taken = vec![];
            let mut chars = 0;
            while let Some((g, e)) = inbox.pop_front() {
                if g != gen {
                    continue;
                }
                if let SocketEvent::Text(t) = &e {
                    chars += t.length() as usize;
                }
                taken.push(e);
                if chars >= FRAME_CHARS_PER_STEP {
                    break;
                }
            }
            taken
        };
        let mut frames = vec![];
        // A frame of echoes is recognised by its versions alone, its
        // documents left unparsed; only while every frame before it in
        // this batch was one (the others change what the engine knows,
        // e.g. a resync, once the step takes them in).
        let mut echoes_so_far = true;
        for ev in events {
            let ev = match ev {
                SocketEvent::Text(t) => {
                    let text = String::from(t);
                    if echoes_so_far {
                        if let Some(frame) = self.echo_of(&text) {
                            self.server_answered();
                            frames.push(Input::Echo(frame));
                            continue;
                        }
                    }
                    echoes_so_far = false;
                    SocketEvent::parse(&text)
                }
                ev => ev,
            };
            if let SocketEvent::Frame(m) = &ev {
                if !matches!(m, ServerMessage::Error { .. }) {
                    // The server answers: what is queued goes out at once.
                    self.server_answered();
                }
            }
            match ev {
                SocketEvent::Open | SocketEvent::Text(_) => {}
                SocketEvent::Frame(m) => match &m {
                    ServerMessage::Synced { limits, .. } => {
                        if let Some(l) = limits {
                            self.learn_limits(inner, l);
                        }
                        self.ws.set(Ws::Live);
                        self.ws_failures.set(0);
                        self.last_error.borrow_mut().take();
                        frames.push(Input::Frame(m));
                    }
                    ServerMessage::Ping => {
                        if let Some(s) = self.socket.borrow().as_ref() {
                            let _ = s.send(&ClientMessage::Pong);
                        }
                    }
                    ServerMessage::Pong => {}
                    ServerMessage::Error { code, .. }
                        if code == "UNAUTHORIZED" && self.opts.get_token.is_some() =>
                    {
                        // The token expired: a 4401 close follows, and a
                        // new token from getToken (not an error unless
                        // getToken fails).
                    }
                    ServerMessage::Error { code, message, .. } => {
                        *self.last_error.borrow_mut() = Some(ErrorInfo {
                            retryable: code != "UNAUTHORIZED",
                            code: code.clone(),
                            message: message.clone(),
                        });
                    }
                    _ => frames.push(Input::Frame(m)),
                },
                SocketEvent::Garbled(why) => self.note_error(&Failure::Net(NetError::Protocol(
                    format!("WebSocket frame: {why}"),
                ))),
                SocketEvent::Closed(4401) if self.opts.get_token.is_some() => {
                    // Expired or refused: reconnect, after the socket's
                    // backoff, with a token from getToken; poll meanwhile.
                    self.token_stale.set(true);
                    self.socket.borrow_mut().take();
                    self.ws.set(Ws::Down);
                    let n = self.ws_failures.get() + 1;
                    self.ws_failures.set(n);
                    self.ws_retry_at.set(Date::now() + backoff(n));
                    self.next_poll_at.set(0.0);
                }
                SocketEvent::Closed(code) => {
                    let why = if code == 4401 {
                        NetError::Unauthorized("the WebSocket was refused: unauthorized".into())
                    } else {
                        NetError::Network(format!("the WebSocket closed (code {code})"))
                    };
                    self.socket_failed(&Failure::Net(why));
                    if code == 4401 {
                        self.ws_retry_at.set(Date::now() + BACKOFF_MAX_MS);
                    }
                    // Poll at once: the socket may have died with changes unsent.
                    self.next_poll_at.set(0.0);
                }
            }
        }
        frames
    }

    /// Pings the socket when it has been quiet for `keepAliveMs`; drops it
    /// when it has delivered nothing for twice that (a half-open
    /// connection never closes by itself): a poll runs at once, and a new
    /// socket follows after the socket backoff.
    fn keep_socket_alive(&self) {
        if self.socket.borrow().is_none() {
            return;
        }
        let now = Date::now();
        let mut k = self.keep_alive.get();
        if k.is_dead(now) {
            let quiet = now - k.heard_at();
            self.socket_failed(&Failure::Net(NetError::Network(format!(
                "the WebSocket delivered nothing for {quiet:.0} ms (keepAliveMs {}): closed as dead",
                self.opts.keep_alive_ms
            ))));
            self.drop_socket();
            self.next_poll_at.set(0.0);
            return;
        }
        if k.ping_due(now) {
            // Before the socket opened, `send` fails: nothing to ping yet.
            if let Some(s) = self.socket.borrow().as_ref() {
                let _ = s.send(&ClientMessage::Ping);
            }
            k.pinged(now);
            self.keep_alive.set(k);
        }
    }

    /// `forced`: the app asked for the attempt (`sync()`, `push(coll)`).
    fn failed(&self, f: &Failure, forced: bool) {
        if self.stopped.get() {
            return; // not an error: another tab leads now
        }
        if let Failure::Storage(e) = f {
            // IndexedDB refused a step (quota, a closed connection): the
            // transaction aborted, the engine was rebuilt from what is
            // stored, the outbox is intact. Retry on the storage schedule,
            // not the HTTP backoff: the server did nothing wrong (feeding
            // that backoff made a queued push wait up to 30 s after the
            // disk had room again, and a live socket's lost frames were
            // never fetched again).
            let mut r = self.storage.get();
            r.failed(Date::now(), js_sys::Math::random(), forced);
            self.storage.set(r);
            let at = r.next_at();
            self.next_poll_at.set(at);
            if self.socket.borrow().is_none() {
                // Its catch-up writes too: not before the retry.
                self.ws_retry_at.set(self.ws_retry_at.get().max(at));
            }
            *self.storage_error.borrow_mut() = Some(ErrorInfo::of(e));
        }
        self.note_error(f);
    }

    /// A step that took something in committed: storage works. Ends a
    /// storage retry, and the error it reported.
    fn storage_ok(&self) {
        if self.storage.get() == StorageRetry::default() {
            return;
        }
        self.storage.set(StorageRetry::default());
        if let Some(e) = self.storage_error.borrow_mut().take() {
            let mut last = self.last_error.borrow_mut();
            if last.as_ref() == Some(&e) {
                last.take();
            }
        }
    }

    /// Emits `error` for a sync error not reported yet: once per outage,
    /// not once per retry (a success clears `lastError`, so the next
    /// failure is news again).
    fn report_error(&self, inner: &Rc<Ctx>) {
        let now = self.last_error.borrow().clone();
        if *self.reported_error.borrow() == now {
            return;
        }
        *self.reported_error.borrow_mut() = now.clone();
        if let Some(e) = now {
            inner.publish("error", to_value(&e));
        }
    }

    /// Publishes the status again (a follower asked for it).
    pub fn republish_status(&self, inner: &Rc<Ctx>) {
        self.status.borrow_mut().take();
        self.report_status(inner);
    }

    /// Emits a changed status here and publishes it to the followers,
    /// with the highest mid the engine has taken in: a follower adds its
    /// own writes above it to `pending` (tabs.rs), so that its
    /// `status().pending` counts a write as soon as it resolves.
    fn report_status(&self, inner: &Rc<Ctx>) {
        let now = (self.status(), self.ingested_mid());
        if self.status.borrow().as_ref() == Some(&now) {
            return;
        }
        *self.status.borrow_mut() = Some(now.clone());
        let payload = to_value(&now.0);
        inner.events.emit_value("status", &payload);
        inner.live.post(&to_js(&json!({"sync": {
            "t": "event", "kind": "status", "payload": payload, "ingested": now.1,
        }})));
    }

    /// How long the loop may sleep before something is due.
    fn next_delay(&self, inner: &Ctx) -> f64 {
        let now = Date::now();
        let mut at = now + 30_000.0;
        let retry = self.storage.get();
        if retry.holding(now) {
            // Storage work waits for its retry; a live socket still needs
            // its keep-alive, and frames that arrived still go in.
            at = at.min(retry.next_at());
            if self.is_online() && self.socket.borrow().is_some() {
                at = at.min(self.keep_alive.get().next_at());
            }
            if self.frames_waiting() {
                at = now;
            }
            return (at - now).max(0.0);
        }
        at = at.min(retry.next_at());
        if self.is_online() {
            if self.polling() {
                at = at.min(self.next_poll_at.get());
            } else if self.ws.get() == Ws::Connecting {
                at = at.min(self.keep_alive.get().heard_at() + SOCKET_GRACE_MS);
            }
            if self.socket.borrow().is_some() {
                at = at.min(self.keep_alive.get().next_at());
            }
            if self.opts.websocket && self.socket.borrow().is_none() {
                at = at.min(self.ws_retry_at.get());
            }
            if self.has_pushable() {
                // Queued writes go out as soon as the server is reachable
                // again (a poll succeeded) or their backoff ends.
                at = at.min(self.net.get().retry_at());
            }
        }
        let waiting = !self.held.borrow().is_empty() || self.frames_waiting();
        // Each committed write wakes the loop too; the last one's gap ends
        // by itself.
        let busy = Self::busy(inner);
        if waiting {
            at = if Self::writing(inner) {
                let gap_end = if busy {
                    f64::INFINITY
                } else {
                    inner.live.last_write_at() + WRITE_GAP_MS
                };
                at.min(self.settled_at.get() + SETTLE_HOLD_MS).min(gap_end)
            } else {
                now // frames or an answer left for the next step
            };
        }
        if self.has_news() {
            // While the app writes: at the end of the last write's gap
            // (a write still in flight hands its entry over when it
            // commits, and wakes the loop only if it sleeps past that,
            // see `hand_off`), or a busy-step gap after the last step.
            let gap_end = inner.live.last_write_at() + WRITE_GAP_MS;
            let step_due = self.last_step_at.get() + BUSY_STEP_GAP_MS;
            let next = if gap_end > now && Self::streaming(inner) {
                step_due.min(gap_end)
            } else if busy {
                step_due
            } else {
                now + 5.0
            };
            at = at.min(next);
        }
        (at - now).max(0.0)
    }

    /// True if changes must be pulled over HTTP: no live socket, and none
    /// catching up (its catch-up brings the same changes: pulling beside it
    /// did all the work twice), unless it has been silent for too long.
    fn polling(&self) -> bool {
        match self.ws.get() {
            Ws::Live => false,
            Ws::Connecting => {
                !self.frames_waiting()
                    && Date::now() - self.keep_alive.get().heard_at() >= SOCKET_GRACE_MS
            }
            Ws::Down => true,
        }
    }

    /// Entries to push: above those whose answers are held.
    fn has_pushable(&self) -> bool {
        self.engine.borrow().has_push_after(self.held_top.get())
    }

    /// The next push of the entries above mid `after` (0: all): oldest
    /// first, bounded in count and bytes.
    fn batch(&self, after: u64) -> Vec<Mutation> {
        let mut batch = self
            .engine
            .borrow()
            .next_push_after(self.push_max.get(), after);
        let mut bytes = 0;
        let mut keep = 0;
        for m in &batch {
            bytes += serde_json::to_string(m).map_or(0, |t| t.len());
            if keep > 0 && bytes > PUSH_BYTES {
                break;
            }
            keep += 1;
        }
        batch.truncate(keep);
        batch
    }

    /// Asks `getToken` for a token if the one in use was refused or there
    /// is none yet (with a static token alone, there is nothing to ask).
    /// A failure of `getToken` is `UNAUTHORIZED`.
    async fn ensure_token(&self) -> Result<(), Failure> {
        let Some(f) = self
            .opts
            .get_token
            .as_ref()
            .filter(|_| self.token_stale.get())
        else {
            return Ok(());
        };
        match JsFuture::from(glue::call_get_token(f)).await {
            Ok(t) => {
                *self.remote.token.borrow_mut() = t.as_string().unwrap_or_default();
                self.token_stale.set(false);
                Ok(())
            }
            Err(e) => Err(Failure::Net(NetError::Unauthorized(format!(
                "sync.getToken failed: {}",
                e.as_string().unwrap_or_else(|| format!("{e:?}"))
            )))),
        }
    }

    /// Runs a request with a current token: if the server refuses the
    /// token (401) and `getToken` is given, asks it for a new one and tries
    /// again, once.
    async fn authorized<T, F, Fut>(&self, request: F) -> Result<T, Failure>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, NetError>>,
    {
        self.ensure_token().await?;
        let refused = |e: NetError| {
            if matches!(e, NetError::Unauthorized(_)) && self.opts.get_token.is_some() {
                self.token_stale.set(true);
            }
            Failure::Net(e)
        };
        match request().await {
            Err(NetError::Unauthorized(_)) if self.opts.get_token.is_some() => {
                self.token_stale.set(true);
                self.ensure_token().await?;
                request().await.map_err(refused)
            }
            r => r.map_err(refused),
        }
    }

    /// `GET /v1/config`, once: the server's limits. An answer that is not
    /// a config (an older server) is taken as no limits; a network failure
    /// leaves them to the next try (or the socket's `synced` frame).
    async fn fetch_limits(&self, inner: &Rc<Ctx>) {
        match self.remote.limits().await {
            Ok(limits) => {
                self.limits_known.set(true);
                if let Some(l) = limits {
                    self.learn_limits(inner, &l);
                }
            }
            Err(NetError::Network(_)) => {}
            Err(_) => self.limits_known.set(true),
        }
    }

    /// The server's limits: writes to synced collections larger than its
    /// document limit fail at write time (`DOC_TOO_LARGE`).
    fn learn_limits(&self, inner: &Ctx, limits: &ServerLimits) {
        self.limits_known.set(true);
        self.push_max.set(
            usize::try_from(limits.max_mutations_per_push)
                .unwrap_or(usize::MAX)
                .clamp(1, PUSH_BATCH_MAX),
        );
        inner.server_max_doc_bytes.set(Some(
            usize::try_from(limits.max_doc_bytes).unwrap_or(usize::MAX),
        ));
    }

    /// Pushes until nothing is left to send; every answer is one step.
    /// While an answer is being stored, the next batch (the entries above
    /// it) is already on its way: the request and the server's commit
    /// overlap the step instead of following it. A push sent ahead that
    /// fails is sent again the usual way (resending is safe: the server
    /// answers a mid it applied with its stored result).
    async fn push_all(self: &Rc<Self>, inner: &Rc<Ctx>, forced: bool) -> Result<(), Failure> {
        // A queue longer than a push before the socket brought the
        // server's limits (a store back online): ask for them first, so
        // that it goes in the fewest pushes (each costs a step; 10,000
        // queued inserts: 40 pushes of 250 or 10 of 1,000).
        if !self.limits_known.get() && self.engine.borrow().pending() > PUSH_BATCH {
            self.fetch_limits(inner).await;
        }
        let mut last: Vec<u64> = vec![];
        let mut ahead: Option<(PushRequest, Sent, f64)> = None;
        for _ in 0..MAX_ROUNDS {
            let (req, answer, sent) = match ahead.take() {
                Some((req, ahead, sent)) => match ahead.answer(read_push).await {
                    Ok(r) => (req, Ok(r), sent),
                    Err(_) => {
                        let answer = self.authorized(|| self.remote.push(&req)).await;
                        (req, answer, sent)
                    }
                },
                None => {
                    let mutations = self.batch(self.held_top.get());
                    if mutations.is_empty() {
                        return Ok(());
                    }
                    let mids: Vec<u64> = mutations.iter().map(|m| m.mid).collect();
                    if mids == last {
                        // An answer that settles nothing would make us resend forever.
                        return Err(Failure::Net(NetError::Protocol(
                            "the push answer settled none of the mutations sent".into(),
                        )));
                    }
                    let req = self.push_request(mutations);
                    crate::trace::pushed(inner, &req.mutations);
                    let sent = Date::now();
                    let answer = self.authorized(|| self.remote.push(&req)).await;
                    (req, answer, sent)
                }
            };
            let resp = match answer {
                Ok(r) => r,
                Err(Failure::Net(NetError::Forbidden(code, message))) if code == "FORBIDDEN" => {
                    // A read-only token: the server applied nothing and
                    // never will. Roll the batch back like rejections.
                    PushResponse {
                        results: req
                            .mutations
                            .iter()
                            .map(|m| MutationResult::Rejected {
                                mid: m.mid,
                                code: code.clone(),
                                message: message.clone(),
                            })
                            .collect(),
                        id_map: SortedMap::new(),
                        last_mutation_id: 0,
                    }
                }
                Err(f) => {
                    self.http_failed(&f, forced);
                    return Err(f);
                }
            };
            self.http_ok();
            crate::trace::answered(inner, &resp, Date::now() - sent);
            self.last_push_at.set(Some(Date::now()));
            let mids: Vec<u64> = req.mutations.iter().map(|m| m.mid).collect();
            // Only after an answer for every mutation sent: a server may
            // answer a prefix (its per-push budget), and the rest must go
            // before anything above it.
            let answered: SortedSet<u64> = resp.results.iter().map(MutationResult::mid).collect();
            let covered = mids
                .last()
                .copied()
                .filter(|_| mids.iter().all(|m| answered.contains(m)));
            if let Some(top) = covered {
                let next = self.batch(top);
                if !next.is_empty() {
                    let next = self.push_request(next);
                    crate::trace::pushed(inner, &next.mutations);
                    let sent = self.remote.push_ahead(&next);
                    ahead = Some((next, sent, Date::now()));
                }
            }
            let decided = self.decide(inner, &resp).await;
            if let Some(top) =
                covered.filter(|_| !forced && Self::writing(inner) && !self.settle_due(Date::now()))
            {
                // The app is writing: the answer waits for a step once the
                // writes pause (see SETTLE_HOLD_MS); pushes go on above it.
                // If the page goes first, the entries are sent again and
                // the server answers the replay the same.
                self.held_mutations
                    .set(self.held_mutations.get() + mids.len());
                self.held_top.set(top);
                self.held.borrow_mut().push(Input::Push(resp, decided));
                if ahead.is_none() {
                    return Ok(());
                }
                last = mids;
                continue;
            }
            let mut inputs = self.take_held();
            inputs.push(Input::Push(resp, decided));
            self.settled_at.set(Date::now());
            self.step(inner, inputs).await.map_err(Failure::Storage)?;
            last = mids;
        }
        Ok(())
    }

    fn push_request(&self, mutations: Vec<Mutation>) -> PushRequest {
        PushRequest {
            client_id: self.remote.client_id.clone(),
            mutations,
        }
    }

    /// Pulls pages until the server has nothing more; a `resync` answer
    /// restarts from the start (and restarts the socket, whose stream
    /// predates it).
    async fn pull_all(self: &Rc<Self>, inner: &Rc<Ctx>, forced: bool) -> Result<(), Failure> {
        let mut resyncs = 0;
        for _ in 0..MAX_ROUNDS {
            let cursor = self
                .engine
                .borrow()
                .cursor()
                .unwrap_or(START_CURSOR)
                .to_owned();
            let asked = Date::now();
            let page = match self
                .authorized(|| self.remote.pull(&cursor, PULL_LIMIT))
                .await
            {
                Ok(p) => p,
                Err(f) => {
                    self.http_failed(&f, forced);
                    return Err(f);
                }
            };
            self.http_ok();
            crate::trace::pulled(inner, &page, Date::now() - asked);
            let (resync, more) = (page.resync, page.more);
            self.step(inner, vec![Input::Pull(page)])
                .await
                .map_err(Failure::Storage)?;
            // A status event per page: an app draws a first sync's progress.
            self.report_status(inner);
            if resync {
                resyncs += 1;
                if resyncs > 2 {
                    return Err(Failure::Net(NetError::Protocol(
                        "the server answers resync to the start cursor".into(),
                    )));
                }
                if self.socket.borrow().is_some() {
                    self.drop_socket();
                    self.ws_retry_at.set(0.0);
                }
                continue;
            }
            if !more {
                self.last_pull_at.set(Some(Date::now()));
                return Ok(());
            }
        }
        Ok(())
    }
}
async fn run(inner: Rc<Ctx>, s: Rc<SyncLoop>, ended: Ended) {
    while !inner.conn.closed.get() && !s.stopped.get() {
        s.tick(&inner).await;
        if inner.conn.closed.get() || s.stopped.get() {
            break;
        }
        let delay = s.next_delay(&inner);
        s.asleep_until.set(Date::now() + delay);
        let _ = JsFuture::from(s.waker.wait(delay)).await;
        s.asleep_until.set(f64::INFINITY);
    }
    if !inner.conn.closed.get() {
        ended(&inner, &s);
    }
}

/// [`Ask`]'s form between tabs (natively: `cargo test -p syncstore --lib ask`).
#[cfg(test)]
mod tests {
    use super::Ask;

    #[test]
    fn ask_reads_and_writes_the_same_json() {
        let read = |t: &str| Ask::from_json(&serde_json::from_str(t).unwrap());
        for (ask, text) in [
            (Ask::Sync, r#"{"ask":"sync"}"#),
            (
                Ask::Push("todos".into()),
                r#"{"ask":"push","coll":"todos"}"#,
            ),
            (
                Ask::Pull("notes".into()),
                r#"{"ask":"pull","coll":"notes"}"#,
            ),
        ] {
            assert_eq!(serde_json::to_string(&ask).unwrap(), text);
            assert_eq!(read(text), Some(ask));
        }
        assert_eq!(
            read(r#"{"coll":"todos","ask":"push"}"#),
            Some(Ask::Push("todos".into()))
        );
        assert_eq!(read(r#"{"ask":"sync","from":1}"#), Some(Ask::Sync));
        for bad in [
            r#"{"ask":"drop"}"#,
            r#"{"ask":"push"}"#,
            r#"{"ask":"pull","coll":3}"#,
            r#"{"coll":"todos"}"#,
            r#"{"ask":1}"#,
            r#""sync""#,
        ] {
            assert_eq!(read(bad), None, "{bad}");
        }
    }
}

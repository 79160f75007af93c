//! What the services of the binding (the write and query paths, sync,
//! tabs, events, trace, ...) share: the schema, the connection (db.rs),
//! subscriptions and the channel (live.rs), listeners (events.rs) and the
//! store's own state (client id, temporary-id aliases, pending count).
//! Nothing here knows the sync leader or the JS API above it: those hold
//! a [`Ctx`] (store.rs wires them), not the other way round.

use crate::db::Db;
use crate::error::{storage, JsResult};
use crate::events::Events;
use crate::glue;
use crate::idb::{self, to_js, OUTBOX};
use crate::live::Live;
use js_sys::Function;
use serde_json::{json, Value};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use syncstore_core::ids;
use syncstore_core::schema::Schema;
use syncstore_core::sorted::SortedMap;
use wasm_bindgen_futures::JsFuture;
use web_sys::IdbDatabase;

pub struct Ctx {
    pub schema: Schema,
    pub conn: Rc<Db>,
    rng: Cell<u64>,
    pub client_id: RefCell<String>,
    pub live: Rc<Live>,
    pub events: Events,
    /// Temporary ids the server has mapped, to their canonical ids: calls
    /// naming a temporary id still reach its document.
    pub aliases: RefCell<SortedMap<String, String>>,
    /// Without sync: outbox entries at open plus this tab's writes since.
    pub local_pending: Cell<usize>,
    /// The clock stamp of this tab's last outbox entry (see `write_stamp`).
    pub last_stamp: Cell<u64>,
    /// Conflict resolver functions by collection (`conflicts: fn`).
    pub resolvers: SortedMap<String, Function>,
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

impl Ctx {
    pub fn new(conn: Db, schema: Schema, resolvers: SortedMap<String, Function>, seed: u64) -> Ctx {
        Ctx {
            schema,
            conn: Rc::new(conn),
            rng: Cell::new(seed),
            client_id: RefCell::new(String::new()),
            live: Live::new(),
            events: Events::default(),
            aliases: RefCell::new(SortedMap::new()),
            local_pending: Cell::new(0),
            last_stamp: Cell::new(0),
            resolvers,
            server_max_doc_bytes: Cell::new(None),
        }
    }

    pub fn check_open(&self) -> JsResult<()> {
        self.conn.check_open()
    }

    /// The open connection, reopened if the browser closed it or another
    /// tab's upgrade asked it to step aside.
    pub async fn db(&self) -> JsResult<IdbDatabase> {
        self.check_open()?;
        match self.conn.open().await {
            Ok(db) => Ok(db),
            Err(e) if self.conn.lost.get() || !self.client_id.borrow().is_empty() => {
                Err(crate::faults::reopen_failed(&self.conn, &self.events, &e))
            }
            Err(e) => Err(e),
        }
    }

    fn random(&self) -> u128 {
        (u128::from(splitmix(&self.rng)) << 64) | u128::from(splitmix(&self.rng))
    }

    pub fn set_aliases(&self, map: &SortedMap<String, String>) {
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

    pub async fn outbox_count(&self) -> JsResult<u32> {
        let db = self.db().await?;
        let tx = Db::tx(&db, &[OUTBOX], false)?;
        let n = JsFuture::from(glue::count_outbox(&Db::store(&tx, OUTBOX)?))
            .await
            .map_err(|e| storage(e, "count outbox"))?;
        Ok(n.as_f64().unwrap_or(0.0) as u32)
    }

    pub async fn load_client_id(&self) -> JsResult<()> {
        let db = self.db().await?;
        let id = idb::update_meta(&db, "clientId", |v| {
            (!v.is_string()).then(|| ids::client_id(self.random()).into())
        })
        .await?;
        *self.client_id.borrow_mut() = id.as_string().unwrap_or_default();
        Ok(())
    }
}

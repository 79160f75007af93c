//! The IndexedDB adapter: database layout, key ranges, and awaiting requests.
//!
//! Each collection is an object store keyed by `id` whose records are
//! `{ id, d: <document JSON>, v: <server version>, x…: <index keys> }`.
//! `_outbox` holds queued mutations (auto-incremented `mid`, which only
//! grows, also across tabs), `_meta` the store's own settings and the sync
//! engine's meta, `_server` the sync engine's copy of the server state.

use crate::db::Db;
use crate::error::{storage, JsResult};
use crate::glue;
use js_sys::Array;
use serde_json::{json, Value};
use syncstore_core::query::{Bound, Plan};
use syncstore_core::schema::Schema;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{IdbDatabase, IdbIndex, IdbKeyRange, IdbObjectStore, IdbRequest, IdbTransaction};

pub use syncstore_core::sync::plan::stores::{
    CONFLICTS, HELD, IDS, META, OUTBOX, REJECTED, SERVER,
};

/// The object stores and indexes the schema needs (see `openDb` in glue.js).
///
/// The internal stores come first: a new database creates them first, so
/// the collections get the higher store ids. Chromium keeps a database's
/// stores in one LevelDB key space ordered by store id, and a reverse
/// cursor over a store's last index starts by seeking past its end: with
/// `_outbox` next, it skipped the deleted entries of every settled write
/// (newest 20 by an index, descending: 7-10 ms instead of 1-2 ms after
/// 10,000 synced inserts; docs/architecture.md, "Storage layout").
pub fn layout(schema: &Schema) -> Value {
    // Index `n`: only the records holding several entries (see `addEntries`
    // in glue.js), so the mutations can be counted without reading them.
    let mut stores = vec![
        json!({"name": OUTBOX, "keyPath": "mid", "autoIncrement": true,
        "indexes": [{"name": "n", "keyPath": "n"}]}),
        json!({"name": META, "keyPath": "k", "indexes": []}),
        json!({"name": SERVER, "keyPath": ["coll", "id"], "indexes": []}),
        json!({"name": HELD, "keyPath": ["coll", "seq"], "indexes": []}),
        json!({"name": CONFLICTS, "keyPath": ["coll", "id"], "indexes": []}),
        json!({"name": IDS, "keyPath": "t", "indexes": []}),
        json!({"name": REJECTED, "keyPath": "mid", "indexes": []}),
    ];
    stores.extend(schema.collections.iter().map(|(name, spec)| {
        let indexes: Vec<Value> = spec
            .indexes
            .iter()
            .map(|ix| json!({"name": ix.name(), "keyPath": ix.key_path()}))
            .collect();
        json!({"name": name, "keyPath": "id", "indexes": indexes, "rekey": true})
    }));
    Value::Array(stores)
}

/// A JSON value as a JS value (one parse in JS, no per-field crossings).
pub fn to_js(v: &impl serde::Serialize) -> JsValue {
    let text = serde_json::to_string(v).expect("JSON values serialize");
    js_sys::JSON::parse(&text).expect("serde_json output is JSON")
}

/// A JSON value as the app sees it: dates (`{"$date": ms}`) as `Date`s.
/// Records stay [`to_js`]: their stored form is the JSON one.
pub fn to_user_js(v: &impl serde::Serialize) -> JsValue {
    let text = serde_json::to_string(v).expect("JSON values serialize");
    glue::parse_json(&JsValue::from_str(&text))
}

pub async fn wait(req: &IdbRequest, what: &str) -> JsResult<JsValue> {
    JsFuture::from(glue::request(req))
        .await
        .map_err(|e| storage(e, what))
}

/// The results of several requests of one transaction issued together
/// (handlers are attached to all at once: a request that succeeded
/// unobserved is never awaited; glue.js `requests` waits for the last).
pub async fn wait_all(reqs: &[&IdbRequest], what: &str) -> JsResult<Vec<JsValue>> {
    let list: Array = reqs.iter().map(|r| JsValue::from(*r)).collect();
    let got: Array = JsFuture::from(glue::requests(&list))
        .await
        .map_err(|e| storage(e, what))?
        .unchecked_into();
    Ok(got.iter().collect())
}

pub async fn committed(tx: &IdbTransaction, what: &str) -> JsResult<()> {
    JsFuture::from(glue::done(tx))
        .await
        .map(|_| ())
        .map_err(|e| storage(e, what))
}

/// Reads the `_meta` setting `key` (its `v`, `undefined` if unset) in a
/// readwrite transaction of its own, stores `next(v)` in its place if that
/// is `Some`, and gives the setting as it stands once the transaction has
/// committed: the client id (ctx.rs), the leader term (tabs.rs).
pub async fn update_meta(
    db: &IdbDatabase,
    key: &str,
    next: impl FnOnce(&JsValue) -> Option<JsValue>,
) -> JsResult<JsValue> {
    let tx = Db::tx(db, &[META], true)?;
    let meta = Db::store(&tx, META)?;
    let req = meta.get(&key.into()).map_err(|e| storage(e, "read"))?;
    let got = wait(&req, key).await?;
    let v = js_sys::Reflect::get(&got, &"v".into()).unwrap_or(JsValue::UNDEFINED);
    let v = match next(&v) {
        Some(new) => {
            let rec = js_sys::Object::new();
            js_sys::Reflect::set(&rec, &"k".into(), &key.into())?;
            js_sys::Reflect::set(&rec, &"v".into(), &new)?;
            meta.put(&rec).map_err(|e| storage(e, "write"))?;
            new
        }
        None => v,
    };
    committed(&tx, key).await?;
    Ok(v)
}

fn bound_js(b: &Bound) -> JsValue {
    to_js(&b.key)
}

/// The IndexedDB key range of a plan (`None` = everything).
pub fn range(plan: &Plan) -> JsResult<Option<IdbKeyRange>> {
    let r = match (&plan.lower, &plan.upper) {
        (None, None) => return Ok(None),
        (Some(l), Some(u)) => IdbKeyRange::bound_with_lower_open_and_upper_open(
            &bound_js(l),
            &bound_js(u),
            l.open,
            u.open,
        ),
        (Some(l), None) => IdbKeyRange::lower_bound_with_open(&bound_js(l), l.open),
        (None, Some(u)) => IdbKeyRange::upper_bound_with_open(&bound_js(u), u.open),
    };
    r.map(Some).map_err(|e| storage(e, "key range"))
}

/// An object store or one of its indexes.
pub enum Source {
    Store(IdbObjectStore),
    Index(IdbIndex),
}

impl Source {
    pub fn open(store: IdbObjectStore, index: Option<&str>) -> JsResult<Source> {
        Ok(match index {
            None => Source::Store(store),
            Some(name) => Source::Index(store.index(name).map_err(|e| storage(e, "index"))?),
        })
    }

    pub fn as_js(&self) -> &JsValue {
        match self {
            Source::Store(s) => s.as_ref(),
            Source::Index(i) => i.as_ref(),
        }
    }

    /// All records in `range`, at most `limit`.
    pub async fn get_all(
        &self,
        range: Option<&IdbKeyRange>,
        limit: Option<u32>,
    ) -> JsResult<Array> {
        let req = self.get_all_request(range, limit)?;
        Ok(wait(&req, "read").await?.unchecked_into())
    }

    /// Issues [`Source::get_all`]'s request without awaiting it.
    pub fn get_all_request(
        &self,
        range: Option<&IdbKeyRange>,
        limit: Option<u32>,
    ) -> JsResult<IdbRequest> {
        let undef = JsValue::UNDEFINED;
        let key: &JsValue = range.map(AsRef::as_ref).unwrap_or(&undef);
        match (self, limit) {
            (Source::Store(s), None) => s.get_all_with_key(key),
            (Source::Store(s), Some(l)) => s.get_all_with_key_and_limit(key, l),
            (Source::Index(i), None) => i.get_all_with_key(key),
            (Source::Index(i), Some(l)) => i.get_all_with_key_and_limit(key, l),
        }
        .map_err(|e| storage(e, "read"))
    }

    pub async fn count(&self, range: Option<&IdbKeyRange>) -> JsResult<u32> {
        let req = match (self, range) {
            (Source::Store(s), None) => s.count(),
            (Source::Store(s), Some(r)) => s.count_with_key(r),
            (Source::Index(i), None) => i.count(),
            (Source::Index(i), Some(r)) => i.count_with_key(r),
        }
        .map_err(|e| storage(e, "count"))?;
        Ok(wait(&req, "count").await?.as_f64().unwrap_or(0.0) as u32)
    }

    /// Records in index order (reversed if `desc`), skipping `offset`: one
    /// `getAll` with a direction where the browser has it, else a cursor.
    pub async fn ordered(
        &self,
        range: Option<&IdbKeyRange>,
        desc: bool,
        offset: u32,
        limit: Option<u32>,
    ) -> JsResult<Array> {
        let r: JsValue = range
            .map(|r| r.clone().into())
            .unwrap_or(JsValue::UNDEFINED);
        let dir = if desc { "prev" } else { "next" };
        let limit = limit.map_or(-1, |l| l.min(i32::MAX as u32) as i32);
        let p = glue::get_all_ordered(self.as_js(), &r, dir, offset, limit)
            .unwrap_or_else(|| glue::cursor_values(self.as_js(), &r, dir, offset, limit));
        Ok(JsFuture::from(p)
            .await
            .map_err(|e| storage(e, "read"))?
            .unchecked_into())
    }
}

/// The keys `[coll, …]` of one collection in `_held` or `_conflicts`.
pub fn coll_range(coll: &str) -> JsResult<IdbKeyRange> {
    // `[coll]` sorts before every `[coll, key]`, and `[coll, []]` after
    // (arrays sort after numbers, dates, strings and binary keys).
    let lo: js_sys::Array = [JsValue::from_str(coll)].into_iter().collect();
    let hi: js_sys::Array = [JsValue::from_str(coll), js_sys::Array::new().into()]
        .into_iter()
        .collect();
    IdbKeyRange::bound(&lo, &hi).map_err(|e| storage(e, "key range"))
}

/// The entries of `_outbox` records, in mid order. A write of several
/// mutations stores them as one record `{mid, n, batch: [entry, ...]}`
/// (glue.js `addEntries`), whose entries have the mids `mid`, `mid + 1`,
/// ...; a step that ingests them writes each back under its own mid.
pub fn outbox_entries(records: Vec<Value>) -> Vec<Value> {
    let mut out = Vec::with_capacity(records.len());
    for mut r in records {
        match (r.get("mid").and_then(Value::as_u64), r.get_mut("batch")) {
            (Some(first), Some(Value::Array(batch))) => {
                for (i, mut e) in std::mem::take(batch).into_iter().enumerate() {
                    if let Value::Object(o) = &mut e {
                        o.insert("mid".into(), json!(first + i as u64));
                    }
                    out.push(e);
                }
            }
            _ => out.push(r),
        }
    }
    out
}

/// Parses a JS value as JSON data of `T` (one stringify, one parse).
pub fn parse<T: serde::de::DeserializeOwned>(v: &JsValue) -> Option<T> {
    // `JSON.stringify(undefined)` is not a string: nothing to parse.
    let text = JsValue::from(js_sys::JSON::stringify(v).ok()?).as_string()?;
    serde_json::from_str(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A new database creates the internal stores first (see [`layout`]):
    /// the collections get the higher store ids, so no collection index
    /// is followed in Chromium's key space by `_outbox`'s deleted entries.
    #[test]
    fn internal_stores_are_created_before_the_collections() {
        let schema = Schema::from_options(&json!({"collections": {
            "todos": {"indexes": ["createdAt"]},
            "lists": {},
        }}))
        .unwrap();
        let layout = layout(&schema);
        let names: Vec<&str> = layout
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        let first_collection = names.iter().position(|n| !n.starts_with('_')).unwrap();
        assert_eq!(first_collection, 7, "{names:?}");
        assert!(names[first_collection..]
            .iter()
            .all(|n| !n.starts_with('_')));
        assert_eq!(&names[..2], &[OUTBOX, META]);
    }
}

//! Rejected writes kept for review: the sync step that rolls back a
//! mutation the server refused stores it in `_rejected` (in the same
//! transaction: `Planner::effects`), with the document as the write left
//! it, the reason and the time, until the app dismisses it. `rejected()`
//! lists them; a `rejected` event announces each new one (in every tab).

use crate::ctx::Ctx;
use crate::db::Db;
use crate::error::{storage, JsResult};
use crate::glue;
use crate::idb::{committed, Source, REJECTED};
use js_sys::Array;
use std::rc::Rc;
use wasm_bindgen::prelude::*;

/// Every kept rejection, oldest first (by mid).
pub async fn list(inner: &Rc<Ctx>) -> JsResult<Array> {
    inner.check_open()?;
    let db = inner.db().await?;
    let tx = Db::tx(&db, &[REJECTED], false)?;
    Source::Store(Db::store(&tx, REJECTED)?)
        .get_all(None, None)
        .await
}

/// What `dismissRejected(which)` names: `None` = all of them.
pub fn parse_which(which: &JsValue) -> JsResult<Option<Vec<f64>>> {
    let bad = || {
        glue::make_error(
            "INVALID_ARGUMENT",
            "mids: expected a mutation id (mid), an array of them, or nothing (all)",
            false,
        )
    };
    let is_mid = |v: &JsValue| v.as_f64().filter(|n| n.fract() == 0.0 && *n >= 1.0);
    if which.is_undefined() {
        return Ok(None);
    }
    if let Some(mid) = is_mid(which) {
        return Ok(Some(vec![mid]));
    }
    if !Array::is_array(which) {
        return Err(bad());
    }
    Array::from(which)
        .iter()
        .map(|v| is_mid(&v).ok_or_else(bad))
        .collect::<JsResult<Vec<f64>>>()
        .map(Some)
}

/// Deletes the named kept rejections (all when `None`), in one transaction.
pub async fn dismiss(inner: &Rc<Ctx>, which: Option<Vec<f64>>) -> JsResult<()> {
    inner.check_open()?;
    let db = inner.db().await?;
    let tx = Db::tx(&db, &[REJECTED], true)?;
    let store = Db::store(&tx, REJECTED)?;
    match which {
        None => {
            store.clear().map_err(|e| storage(e, "dismiss"))?;
        }
        Some(mids) => {
            for mid in mids {
                store
                    .delete(&JsValue::from_f64(mid))
                    .map_err(|e| storage(e, "dismiss"))?;
            }
        }
    }
    committed(&tx, "dismiss").await
}

//! The query path: a query's read plan (the core's `reads`) carried out in
//! one readonly transaction, by key range on an index where it can, the
//! rest filtered, ordered and sliced by the core.

use crate::ctx::Ctx;
use crate::db::Db;
use crate::error::{self, JsResult};
use crate::glue;
use crate::idb::{self, Source};
use js_sys::Array;
use serde_json::Value;
use syncstore_core::query::{reads, Plan, Query, Reads};

/// Runs a query: the records read and, when the core had to filter or
/// sort them, the positions of the result rows.
pub async fn run(inner: &Ctx, coll: &str, q: &Query) -> JsResult<(Array, Option<Vec<u32>>)> {
    let spec = inner.schema.collection(coll).map_err(error::core)?;
    let p = match reads(spec, q) {
        Reads::One(p) => p,
        Reads::Union(plans) => return run_union(inner, coll, q, &plans).await,
    };
    if p.empty || q.limit == Some(0) {
        return Ok((Array::new(), None));
    }
    let db = inner.db().await?;
    let tx = Db::tx(&db, &[coll], false)?;
    let source = Source::open(Db::store(&tx, coll)?, p.index.as_deref())?;
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
    filter_records(coll, q, records)
}

/// The records the core must filter, order and slice, with the
/// positions of the result rows.
fn filter_records(coll: &str, q: &Query, records: Array) -> JsResult<(Array, Option<Vec<u32>>)> {
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
    inner: &Ctx,
    coll: &str,
    q: &Query,
    plans: &[Plan],
) -> JsResult<(Array, Option<Vec<u32>>)> {
    if plans.is_empty() || q.limit == Some(0) {
        return Ok((Array::new(), None));
    }
    let db = inner.db().await?;
    let tx = Db::tx(&db, &[coll], false)?;
    let store = Db::store(&tx, coll)?;
    let mut reqs = vec![];
    for p in plans {
        let source = Source::open(store.clone(), p.index.as_deref())?;
        reqs.push(source.get_all_request(idb::range(p)?.as_ref(), None)?);
    }
    let got = idb::wait_all(&reqs.iter().collect::<Vec<_>>(), "read").await?;
    let records = glue::union_records(&got.into_iter().collect());
    filter_records(coll, q, records)
}

pub async fn count(inner: &Ctx, coll: &str, q: &Query) -> JsResult<u32> {
    let spec = inner.schema.collection(coll).map_err(error::core)?;
    let Reads::One(p) = reads(spec, q) else {
        let (_, picks) = run(inner, coll, q).await?;
        return Ok(picks.map_or(0, |p| p.len() as u32));
    };
    if p.empty {
        return Ok(0);
    }
    if p.exact {
        let db = inner.db().await?;
        let tx = Db::tx(&db, &[coll], false)?;
        let source = Source::open(Db::store(&tx, coll)?, p.index.as_deref())?;
        return source.count(idb::range(&p)?.as_ref()).await;
    }
    let (records, picks) = run(inner, coll, q).await?;
    Ok(picks.map_or(records.length(), |p| p.len() as u32))
}

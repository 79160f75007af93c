//! Queries: parsing, evaluation, ordering, and the choice of an index.
//!
//! Semantics (the same whether an index serves the query or a scan does):
//! - `{ field: value }` is equality; a missing field equals `null`; objects
//!   and arrays compare deeply.
//! - `$gt $gte $lt $lte` compare within one type class only (numbers with
//!   numbers, strings with strings, booleans with booleans, dates with
//!   dates as instants: `{"$date": ms}`, what a JS `Date` is stored as).
//! - `$ne` is the negation of equality; `$in` is equality with any element,
//!   `$nin` its negation.
//! - `$startsWith` holds for a string that begins with the given string
//!   (UTF-16 code units, as IndexedDB compares); never for other types.
//! - `$exists: true` holds when the field is present (also when `null`),
//!   `$exists: false` when it is absent.
//! - Several fields, or several operators on one field, are ANDed. `$or`
//!   (a list of `where` objects, at least one) holds when any of them
//!   holds; it sits beside the fields and is ANDed with them.
//! - Results are ordered by `orderBy` (then by id), or by id; `desc`
//!   reverses the whole order.
//! - A key starting with `$` anywhere in `where` that is not a known
//!   operator under a field or `$or` in a `where`'s place (`$and`, `$not`,
//!   a misspelling, an operator inside a compared value) is refused with
//!   `UNKNOWN_OPERATOR`: read as a field name it would match nothing and
//!   say nothing.
//!
//! ```
//! use serde_json::json;
//! use syncstore_core::query::Query;
//!
//! let q = Query::parse(&json!({ "where": { "meta.owner": "ann", "n": { "$gte": 2 } } })).unwrap();
//! assert!(q.filter.matches(&json!({ "id": "a", "n": 3, "meta": { "owner": "ann" } })));
//! assert!(!q.filter.matches(&json!({ "id": "b", "n": 1, "meta": { "owner": "ann" } })));
//!
//! let q = Query::parse(&json!({ "where": { "$or": [{ "n": 1 }, { "s": { "$startsWith": "ab" } }] } })).unwrap();
//! assert!(q.filter.matches(&json!({ "id": "a", "n": 1 })));
//! assert!(q.filter.matches(&json!({ "id": "b", "s": "abc" })));
//! assert!(!q.filter.matches(&json!({ "id": "c", "n": 2, "s": "b" })));
//!
//! let e = Query::parse(&json!({ "where": { "$and": [{ "n": 1 }, { "n": 2 }] } })).unwrap_err();
//! assert_eq!(e.code(), "UNKNOWN_OPERATOR");
//! ```

use crate::error::{CoreError, Result};
use crate::json::{as_date, cmp_str, cmp_values, rank, type_name, values_equal, Path};
use crate::keys::{cmp_keys, encode, tag, END};
use crate::schema::CollectionSpec;
use serde_json::{json, Map, Value};
use std::cmp::Ordering;

#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Eq(Value),
    Ne(Value),
    Gt(Value),
    Gte(Value),
    Lt(Value),
    Lte(Value),
    In(Vec<Value>),
    Nin(Vec<Value>),
    StartsWith(String),
    Exists(bool),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Cond {
    pub path: Path,
    pub op: Op,
}

impl Cond {
    pub fn matches(&self, doc: &Value) -> bool {
        let v = self.path.get(doc);
        let within = |bound: &Value, ok: fn(Ordering) -> bool| {
            rank(v) == rank(Some(bound)) && ok(cmp_values(v, Some(bound)))
        };
        match &self.op {
            Op::Eq(x) => values_equal(v, Some(x)),
            Op::Ne(x) => !values_equal(v, Some(x)),
            Op::In(xs) => xs.iter().any(|x| values_equal(v, Some(x))),
            Op::Nin(xs) => !xs.iter().any(|x| values_equal(v, Some(x))),
            Op::StartsWith(p) => v
                .and_then(Value::as_str)
                .is_some_and(|s| s.starts_with(p.as_str())),
            Op::Exists(b) => v.is_some() == *b,
            Op::Gt(x) => within(x, Ordering::is_gt),
            Op::Gte(x) => within(x, Ordering::is_ge),
            Op::Lt(x) => within(x, Ordering::is_lt),
            Op::Lte(x) => within(x, Ordering::is_le),
        }
    }
}

/// A conjunction of conditions, and of `$or` alternatives (at least one
/// branch of each holds).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Filter {
    pub conds: Vec<Cond>,
    pub any: Vec<Vec<Filter>>,
}

impl Filter {
    /// Parses a `where` object. `at` names it in error messages.
    pub fn parse(v: &Value, at: &str) -> Result<Filter> {
        let obj = match v {
            Value::Null => return Ok(Filter::default()),
            Value::Object(o) => o,
            other => {
                return Err(CoreError::InvalidQuery(format!(
                    "{at} must be an object, got {}",
                    type_name(other)
                )))
            }
        };
        let mut conds = vec![];
        let mut any = vec![];
        for (field, cond) in obj {
            if field == "$or" {
                any.push(parse_or(cond, &format!("{at}.$or"))?);
                continue;
            }
            // `$and`, `$not` or a misspelt operator in a field's place
            // would otherwise be read as a field name and match nothing.
            if let Some(seg) = field.split('.').find(|s| s.starts_with('$')) {
                return Err(CoreError::UnknownOperator(format!(
                    "{at}: unknown operator {seg:?} in {field:?} (a `where` is an AND of \
                     field conditions and `$or` lists; operators go inside a field's object: \
                     {KNOWN_OPS})"
                )));
            }
            let path = Path::parse(field).ok_or_else(|| {
                CoreError::InvalidQuery(format!("{at}: {field:?} is not a field path"))
            })?;
            let at = format!("{at}.{field}");
            match cond {
                Value::Object(ops)
                    if as_date(cond).is_none() && ops.keys().any(|k| k.starts_with('$')) =>
                {
                    parse_ops(&path, ops, &at, &mut conds)?
                }
                v => {
                    no_operator_inside(v, &at)?;
                    conds.push(Cond {
                        path,
                        op: Op::Eq(v.clone()),
                    })
                }
            }
        }
        Ok(Filter { conds, any })
    }

    pub fn matches(&self, doc: &Value) -> bool {
        self.conds.iter().all(|c| c.matches(doc))
            && self
                .any
                .iter()
                .all(|branches| branches.iter().any(|f| f.matches(doc)))
    }

    /// True when nothing is filtered.
    pub fn is_empty(&self) -> bool {
        self.conds.is_empty() && self.any.is_empty()
    }
}

/// The branches of an `$or`: a non-empty list of `where` objects.
fn parse_or(v: &Value, at: &str) -> Result<Vec<Filter>> {
    match v {
        Value::Array(xs) if !xs.is_empty() => xs
            .iter()
            .enumerate()
            .map(|(i, x)| match x {
                Value::Object(_) => Filter::parse(x, &format!("{at}[{i}]")),
                other => Err(CoreError::InvalidQuery(format!(
                    "{at}[{i}] must be an object, got {}",
                    type_name(other)
                ))),
            })
            .collect(),
        Value::Array(_) => Err(CoreError::InvalidQuery(format!(
            "{at} needs at least one condition object"
        ))),
        other => Err(CoreError::InvalidQuery(format!(
            "{at} takes an array of condition objects, got {}",
            type_name(other)
        ))),
    }
}

const KNOWN_OPS: &str = "$eq $ne $gt $gte $lt $lte $in $nin $startsWith $exists";

/// A `$` key inside a value compared with (an equality's object, an
/// `$in` list) is a misplaced or misspelt operator, not a document field:
/// `{ meta: { owner: { $in: [..] } } }` would otherwise match nothing.
fn no_operator_inside(v: &Value, at: &str) -> Result<()> {
    match v {
        d if as_date(d).is_some() => Ok(()),
        Value::Object(o) => o.iter().try_for_each(|(k, v)| {
            if k.starts_with('$') {
                return Err(CoreError::UnknownOperator(format!(
                    "{at}: unknown operator {k:?} inside a value (known: {KNOWN_OPS}, \
                     directly under a field; use a nested path such as \"a.b\" for inner fields)"
                )));
            }
            no_operator_inside(v, &format!("{at}.{k}"))
        }),
        Value::Array(xs) => xs.iter().try_for_each(|x| no_operator_inside(x, at)),
        _ => Ok(()),
    }
}

fn parse_ops(path: &Path, ops: &Map<String, Value>, at: &str, out: &mut Vec<Cond>) -> Result<()> {
    for (name, arg) in ops {
        let at_op = format!("{at}.{name}");
        no_operator_inside(arg, &at_op)?;
        let scalar = |arg: &Value| -> Result<Value> {
            match arg {
                Value::Number(_) | Value::String(_) | Value::Bool(_) => Ok(arg.clone()),
                d if as_date(d).is_some() => Ok(arg.clone()),
                other => Err(CoreError::InvalidQuery(format!(
                    "{at}.{name} compares with a number, string, boolean or Date, got {}",
                    type_name(other)
                ))),
            }
        };
        // An operator whose argument must be of one type.
        let typed = |op: Option<Op>, what: &str| {
            op.ok_or_else(|| {
                CoreError::InvalidQuery(format!("{at}.{name} takes {what}, got {}", type_name(arg)))
            })
        };
        let op = match name.as_str() {
            "$eq" => Op::Eq(arg.clone()),
            "$ne" => Op::Ne(arg.clone()),
            "$gt" => Op::Gt(scalar(arg)?),
            "$gte" => Op::Gte(scalar(arg)?),
            "$lt" => Op::Lt(scalar(arg)?),
            "$lte" => Op::Lte(scalar(arg)?),
            "$in" => typed(arg.as_array().map(|xs| Op::In(xs.clone())), "an array")?,
            "$nin" => typed(arg.as_array().map(|xs| Op::Nin(xs.clone())), "an array")?,
            "$startsWith" => typed(
                arg.as_str().map(|p| Op::StartsWith(p.to_owned())),
                "a string",
            )?,
            "$exists" => typed(arg.as_bool().map(Op::Exists), "a boolean")?,
            other if other.starts_with('$') => {
                return Err(CoreError::UnknownOperator(format!(
                    "{at}: unknown operator {other:?} (known: {KNOWN_OPS})"
                )))
            }
            other => {
                return Err(CoreError::InvalidQuery(format!(
                    "{at}: {other:?} mixes a field with operators; use a nested path instead"
                )))
            }
        };
        out.push(Cond {
            path: path.clone(),
            op,
        });
    }
    Ok(())
}

/// A parsed `query(coll, q)` argument.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Query {
    pub filter: Filter,
    pub order_by: Option<Path>,
    pub desc: bool,
    pub limit: Option<usize>,
    pub offset: usize,
}

impl Query {
    pub fn parse(v: &Value) -> Result<Query> {
        let obj = match v {
            Value::Null => return Ok(Query::default()),
            Value::Object(o) => o,
            other => {
                return Err(CoreError::InvalidQuery(format!(
                    "a query must be an object, got {}",
                    type_name(other)
                )))
            }
        };
        let mut q = Query::default();
        for (k, v) in obj {
            match k.as_str() {
                "where" => q.filter = Filter::parse(v, "where")?,
                "orderBy" => {
                    q.order_by = Some(v.as_str().and_then(Path::parse).ok_or_else(|| {
                        CoreError::InvalidQuery("orderBy must be a field path".into())
                    })?)
                }
                "desc" => {
                    q.desc = v
                        .as_bool()
                        .ok_or_else(|| CoreError::InvalidQuery("desc must be a boolean".into()))?
                }
                "limit" => q.limit = Some(count_arg(v, "limit")?),
                "offset" => q.offset = count_arg(v, "offset")?,
                other => {
                    return Err(CoreError::InvalidQuery(format!(
                        "unknown query option {other:?} (known: where orderBy desc limit offset)"
                    )))
                }
            }
        }
        Ok(q)
    }

    /// Orders matching documents: by `orderBy` then id, or by id.
    pub fn compare(&self, a: &Value, b: &Value) -> Ordering {
        let by_key = match &self.order_by {
            Some(p) => cmp_values(p.get(a), p.get(b)),
            None => Ordering::Equal,
        };
        let o = by_key.then_with(|| cmp_str(id_of(a), id_of(b)));
        if self.desc {
            o.reverse()
        } else {
            o
        }
    }

    /// Filters, orders and slices `docs`, returning the positions of the
    /// result rows in `docs`.
    pub fn run(&self, docs: &[Value]) -> Vec<u32> {
        let mut hits: Vec<u32> = (0..docs.len() as u32)
            .filter(|&i| self.filter.matches(&docs[i as usize]))
            .collect();
        crate::sorted::sort_indices(&mut hits, &mut |a, b| {
            self.compare(&docs[a as usize], &docs[b as usize])
        });
        let end = match self.limit {
            Some(l) => self.offset.saturating_add(l).min(hits.len()),
            None => hits.len(),
        };
        let start = self.offset.min(end);
        hits.truncate(end);
        hits.drain(..start);
        hits
    }
}

/// One document written by a committed change: its id and its new state
/// (`None`: deleted).
pub type Change<'a> = (&'a str, Option<&'a Value>);

impl Query {
    /// This query's result after `changes` (applied in order), computed
    /// from `rows`, its result before them, without reading the store.
    /// `None` when `rows` cannot tell: with an offset, or when a limited
    /// result lost rows that documents outside it may replace.
    ///
    /// With a limit, full `rows` hold every matching document that sorts up
    /// to their last one, `b`; after the changes, the patched rows are those
    /// that sort up to `b`, so if at least `limit` remain they are the first
    /// `limit` of the new result.
    pub fn patch(&self, rows: &[Value], changes: &[Change]) -> Option<Vec<Value>> {
        if self.offset > 0 {
            return None;
        }
        if self.limit == Some(0) {
            return Some(vec![]);
        }
        let full = match self.limit {
            Some(l) if rows.len() > l => return None,
            Some(l) => rows.len() == l,
            None => false,
        };
        // `out` holds every matching document that sorts up to `bound`
        // (all of them while there is no bound).
        let mut bound: Option<Value> = if full { rows.last().cloned() } else { None };
        let mut out: Vec<Value> = rows.to_vec();
        for (id, doc) in changes {
            if let Some(i) = out.iter().position(|r| id_of(r) == *id) {
                out.remove(i);
            }
            let Some(doc) = doc else { continue };
            if id_of(doc) != *id || !self.filter.matches(doc) {
                continue;
            }
            if bound.as_ref().is_some_and(|b| self.compare(doc, b).is_gt()) {
                continue;
            }
            let at = out.partition_point(|r| self.compare(r, doc).is_lt());
            out.insert(at, (*doc).clone());
            if self.limit.is_some_and(|l| out.len() > l) {
                out.pop();
                bound = out.last().cloned();
            }
        }
        match (self.limit, &bound) {
            (Some(l), Some(_)) if out.len() < l => None,
            _ => Some(out),
        }
    }
}

fn count_arg(v: &Value, name: &str) -> Result<usize> {
    v.as_u64()
        .map(|n| n as usize)
        .ok_or_else(|| CoreError::InvalidQuery(format!("{name} must be a non-negative integer")))
}

fn id_of(doc: &Value) -> &str {
    doc.get("id").and_then(Value::as_str).unwrap_or("")
}

/// One end of an IndexedDB key range.
#[derive(Debug, Clone, PartialEq)]
pub struct Bound {
    pub key: Value,
    pub open: bool,
}

/// How to fetch candidates for a query.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    /// The IndexedDB index to read, or `None` for the whole object store.
    pub index: Option<String>,
    pub lower: Option<Bound>,
    pub upper: Option<Bound>,
    /// The range can match nothing: skip the read.
    pub empty: bool,
    /// The key range enforces every condition: no filtering needed.
    pub exact: bool,
    /// Index order equals the query's order: limit and offset can be
    /// applied while reading.
    pub ordered: bool,
}

fn scalar_key(v: &Value) -> bool {
    matches!(
        v,
        Value::Bool(_) | Value::Number(_) | Value::String(_) | Value::Null
    ) || as_date(v).is_some()
}

/// Chooses the index that serves the most of `q`: the longest prefix of
/// equality conditions, then a range on the next field, then the order.
pub fn plan(spec: &CollectionSpec, q: &Query) -> Plan {
    let conds = &q.filter.conds;
    let mut best: Option<(u32, Plan)> = None;
    for ix in &spec.indexes {
        let k = ix.fields.len();
        let mut used = vec![false; conds.len()];
        let mut prefix: Vec<Value> = vec![];
        for f in &ix.fields {
            let eq = conds.iter().enumerate().find(|(i, c)| {
                !used[*i] && c.path == *f && matches!(&c.op, Op::Eq(v) if scalar_key(v))
            });
            let Some((i, c)) = eq else { break };
            used[i] = true;
            let Op::Eq(v) = &c.op else { unreachable!() };
            prefix.push(encode(Some(v)));
        }
        let e = prefix.len();
        let mut lo: Option<(Value, bool)> = None;
        let mut hi: Option<(Value, bool)> = None;
        if e < k {
            let f = &ix.fields[e];
            for (i, c) in conds.iter().enumerate() {
                if used[i] || c.path != *f {
                    continue;
                }
                let (slot, v, open) = match &c.op {
                    Op::Gt(v) => (&mut lo, v, true),
                    Op::Gte(v) => (&mut lo, v, false),
                    Op::Lt(v) => (&mut hi, v, true),
                    Op::Lte(v) => (&mut hi, v, false),
                    // A prefix is the range [p, end of p): the condition
                    // stays a filter (the end may be loose, see
                    // `prefix_end`).
                    Op::StartsWith(p) if lo.is_none() && hi.is_none() => {
                        lo = Some((Value::String(p.clone()), false));
                        // No end: the range runs to the last string.
                        hi = prefix_end(p).map(|end| (Value::String(end), true));
                        continue;
                    }
                    _ => continue,
                };
                if slot.is_none() {
                    *slot = Some((v.clone(), open));
                    used[i] = true;
                }
            }
        }
        let ranged = lo.is_some() || hi.is_some();
        let ordered = match &q.order_by {
            None => e == k,
            Some(p) => (e == k && ix.fields.contains(p)) || (e + 1 == k && ix.fields[e] == *p),
        };
        let score =
            (e as u32) * 4 + u32::from(ranged) * 2 + u32::from(ordered && q.order_by.is_some());
        if score == 0 {
            continue;
        }
        let (lower, upper, empty) = bounds(prefix, k, lo, hi);
        let plan = Plan {
            index: Some(ix.name()),
            lower,
            upper,
            empty,
            exact: used.iter().all(|u| *u) && q.filter.any.is_empty(),
            ordered,
        };
        if best.as_ref().is_none_or(|(s, _)| score > *s) {
            best = Some((score, plan));
        }
    }
    best.map(|(_, p)| p).unwrap_or(Plan {
        exact: q.filter.is_empty(),
        ordered: q.order_by.is_none(),
        ..Plan::default()
    })
}

/// How to read a query's candidates: one plan, or one per branch of an
/// `$or` (each through its own index), whose candidates are merged
/// without duplicates, then filtered, ordered and sliced by [`Query::run`].
#[derive(Debug, Clone, PartialEq)]
pub enum Reads {
    One(Plan),
    /// The branches' plans, those that can match nothing left out.
    Union(Vec<Plan>),
}

/// Chooses how to read `q`: the plan of its field conditions, unless that
/// plan reads everything and `q` has an `$or` whose every branch (with the
/// field conditions beside it) has an index range of its own.
pub fn reads(spec: &CollectionSpec, q: &Query) -> Reads {
    let one = plan(spec, q);
    let Some(branches) = q.filter.any.first() else {
        return Reads::One(one);
    };
    if one.empty || one.lower.is_some() || one.upper.is_some() {
        return Reads::One(one);
    }
    let mut plans = vec![];
    for b in branches {
        let mut conds = q.filter.conds.clone();
        conds.extend(b.conds.iter().cloned());
        let bq = Query {
            filter: Filter {
                conds,
                any: b.any.clone(),
            },
            ..Query::default()
        };
        let p = plan(spec, &bq);
        if p.empty {
            continue;
        }
        if p.lower.is_none() && p.upper.is_none() {
            return Reads::One(one);
        }
        plans.push(p);
    }
    Reads::Union(plans)
}

/// The least string above every string that starts with `p` (in UTF-16
/// code unit order), or `None` when there is none (`p` is all U+FFFF).
/// Not always the tightest such bound: an increment that would make an
/// unpaired surrogate goes to U+E000 instead, which is still above.
pub fn prefix_end(p: &str) -> Option<String> {
    let mut units: Vec<u16> = p.encode_utf16().collect();
    while units.last() == Some(&0xFFFF) {
        units.pop();
    }
    let last = units.pop()?;
    match last {
        // The low half of a pair: the next code point, or past all pairs.
        0xDC00..=0xDFFE => units.push(last + 1),
        0xDFFF => {
            let high = units.pop().expect("a low surrogate follows a high one");
            if high < 0xDBFF {
                units.extend([high + 1, 0xDC00]);
            } else {
                units.push(0xE000);
            }
        }
        0xD7FF => units.push(0xE000),
        _ => units.push(last + 1),
    }
    Some(String::from_utf16(&units).expect("no unpaired surrogate"))
}

/// Builds the key range for an equality prefix plus an optional range on
/// the next field of a `k`-field index.
fn bounds(
    prefix: Vec<Value>,
    k: usize,
    lo: Option<(Value, bool)>,
    hi: Option<(Value, bool)>,
) -> (Option<Bound>, Option<Bound>, bool) {
    let wrap = |mut parts: Vec<Value>, tail_open_past: bool| -> Value {
        // A key shorter than the index sorts before all its extensions;
        // appending END moves it past them.
        if tail_open_past && parts.len() < k {
            parts.push(json!([END]));
        }
        if k == 1 {
            parts.pop().expect("one part")
        } else {
            Value::Array(parts)
        }
    };
    if lo.is_none() && hi.is_none() {
        if prefix.is_empty() {
            return (None, None, false);
        }
        let lower = Bound {
            key: wrap(prefix.clone(), false),
            open: false,
        };
        let upper = Bound {
            key: wrap(prefix, true),
            open: false,
        };
        return (Some(lower), Some(upper), false);
    }
    // Type bracketing: a range stays within the class of its operand.
    let class = rank(lo.as_ref().or(hi.as_ref()).map(|(v, _)| v));
    let other_class = hi.as_ref().map(|(v, _)| rank(Some(v)));
    if other_class.is_some_and(|c| c != class) {
        return (None, None, true);
    }
    let with = |last: Value| {
        let mut p = prefix.clone();
        p.push(last);
        p
    };
    let lower = match lo {
        Some((v, open)) => Bound {
            key: wrap(with(encode(Some(&v))), open),
            open,
        },
        None => Bound {
            key: wrap(with(json!([tag(class)])), false),
            open: false,
        },
    };
    let upper = match hi {
        Some((v, open)) => Bound {
            key: wrap(with(encode(Some(&v))), !open),
            open,
        },
        None => Bound {
            key: wrap(with(json!([tag(class + 1)])), false),
            open: true,
        },
    };
    let empty = match cmp_keys(&lower.key, &upper.key) {
        Ordering::Greater => true,
        Ordering::Equal => lower.open || upper.open,
        Ordering::Less => false,
    };
    (Some(lower), Some(upper), empty)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::index_key;
    use crate::schema::Schema;

    const WS: [&str; 8] = [
        "ab",
        "abc",
        "b",
        "a\u{ffff}",
        "\u{ffff}\u{ffff}",
        "a\u{10000}",
        "a\u{10ffff}x",
        "A",
    ];

    fn docs() -> Vec<Value> {
        let mut out = vec![];
        for i in 0..60 {
            let owner = ["ann", "bob", "cy"][i % 3];
            let mut d = json!({
                "id": format!("d{i:02}"),
                "n": i % 7,
                "s": format!("s{}", i % 5),
                "done": i % 2 == 0,
                "meta": {"owner": owner},
                "list": format!("l{}", i % 3),
                "at": 1000 - i,
                "w": WS[i % 8],
                "t": {"$date": 1.7e12 + ((i * 37) % 23) as f64 * 1000.0},
            });
            match i % 7 {
                0 => d["t"] = json!(5),
                1 => d["t"] = json!("2024-01-01"),
                2 => {
                    d.as_object_mut().unwrap().remove("t");
                }
                _ => {}
            }
            if i % 9 == 4 {
                d.as_object_mut().unwrap().remove("w");
            }
            match i % 11 {
                0 => {
                    d.as_object_mut().unwrap().remove("n");
                }
                1 => d["n"] = json!("seven"),
                2 => d["n"] = json!(null),
                3 => d["n"] = json!({"x": 1}),
                4 => d["n"] = json!(true),
                5 => d["n"] = json!(2.5),
                _ => {}
            }
            out.push(d);
        }
        out
    }

    fn spec() -> CollectionSpec {
        Schema::from_options(&json!({"collections": {"t": {
            "indexes": ["n", "done", "meta.owner", ["list", "at"], ["done", "n"], "s", "w", ["list", "w"], "t", ["list", "t"]]}}}))
        .unwrap()
        .collections["t"]
            .clone()
    }

    /// Evaluates a plan the way IndexedDB would: keep the documents whose
    /// index key lies in the range, in index order.
    fn run_plan(spec: &CollectionSpec, q: &Query, docs: &[Value]) -> Vec<String> {
        match reads(spec, q) {
            Reads::One(p) => run_one(spec, &p, q, docs),
            Reads::Union(plans) => {
                // Each branch's candidates, merged by id, then the core.
                let mut seen = std::collections::HashSet::new();
                let mut cands = vec![];
                for p in &plans {
                    let plain = Query::default();
                    for id in run_one(spec, p, &plain, docs) {
                        if seen.insert(id.clone()) {
                            cands.push(docs.iter().find(|d| id_of(d) == id).unwrap().clone());
                        }
                    }
                }
                q.run(&cands)
                    .into_iter()
                    .map(|i| id_of(&cands[i as usize]).to_owned())
                    .collect()
            }
        }
    }

    /// The candidates of one plan (all of them with a query that filters
    /// nothing), as IndexedDB would give them.
    fn run_one(spec: &CollectionSpec, p: &Plan, q: &Query, docs: &[Value]) -> Vec<String> {
        if p.empty {
            return vec![];
        }
        let mut cands: Vec<(Value, &Value)> = match &p.index {
            None => docs.iter().map(|d| (json!(null), d)).collect(),
            Some(name) => {
                let ix = spec.index(name).unwrap();
                docs.iter()
                    .map(|d| (index_key(ix, d), d))
                    .filter(|(k, _)| {
                        p.lower.as_ref().is_none_or(|b| {
                            let o = cmp_keys(k, &b.key);
                            o.is_gt() || (o.is_eq() && !b.open)
                        }) && p.upper.as_ref().is_none_or(|b| {
                            let o = cmp_keys(k, &b.key);
                            o.is_lt() || (o.is_eq() && !b.open)
                        })
                    })
                    .collect()
            }
        };
        crate::sorted::sort_by(&mut cands, |a, b| {
            cmp_keys(&a.0, &b.0).then_with(|| cmp_str(id_of(a.1), id_of(b.1)))
        });
        if p.exact && p.ordered {
            let mut ids: Vec<String> = cands.iter().map(|(_, d)| id_of(d).to_owned()).collect();
            if q.desc {
                ids.reverse();
            }
            let end = q.limit.map_or(ids.len(), |l| (q.offset + l).min(ids.len()));
            return ids[q.offset.min(end)..end].to_vec();
        }
        let cands: Vec<Value> = cands.into_iter().map(|(_, d)| d.clone()).collect();
        q.run(&cands)
            .into_iter()
            .map(|i| id_of(&cands[i as usize]).to_owned())
            .collect()
    }

    fn scan(q: &Query, docs: &[Value]) -> Vec<String> {
        q.run(docs)
            .into_iter()
            .map(|i| id_of(&docs[i as usize]).to_owned())
            .collect()
    }

    #[test]
    fn index_and_scan_agree_on_every_shape() {
        let queries = [
            json!({}),
            json!({"where": {"n": 3}}),
            json!({"where": {"n": {"$gte": 3}}}),
            json!({"where": {"n": {"$gt": 2, "$lte": 5}}}),
            json!({"where": {"n": {"$lt": 2}}, "orderBy": "n", "desc": true}),
            json!({"where": {"n": {"$gt": "a"}}}),
            json!({"where": {"n": {"$gt": 5, "$lt": 1}}}),
            json!({"where": {"n": {"$gt": 5, "$lt": "z"}}}),
            json!({"where": {"n": null}}),
            json!({"where": {"n": {"x": 1}}}),
            json!({"where": {"done": false}}),
            json!({"where": {"done": true, "n": {"$ne": 3}}}),
            json!({"where": {"done": true, "n": {"$gte": 2}}}),
            json!({"where": {"meta.owner": "bob"}}),
            json!({"where": {"list": "l1"}, "orderBy": "at"}),
            json!({"where": {"list": "l1", "at": {"$gt": 970}}, "orderBy": "at", "desc": true, "limit": 4}),
            json!({"where": {"list": "l2", "at": {"$gte": 950, "$lt": 990}}}),
            json!({"where": {"list": {"$in": ["l0", "l2"]}}, "orderBy": "at", "limit": 7, "offset": 3}),
            json!({"orderBy": "s", "limit": 10}),
            json!({"orderBy": "n", "desc": true, "offset": 50}),
            json!({"orderBy": "at", "desc": true, "limit": 20}),
            json!({"where": {"s": {"$gte": "s2"}}, "orderBy": "s", "limit": 9}),
            json!({"where": {"n": true}}),
            json!({"where": {"n": {"$gte": false}}}),
            json!({"where": {"w": {"$startsWith": "a"}}}),
            json!({"where": {"w": {"$startsWith": "ab"}}, "orderBy": "w", "limit": 5}),
            json!({"where": {"w": {"$startsWith": ""}}, "orderBy": "w", "desc": true}),
            json!({"where": {"w": {"$startsWith": "\u{ffff}"}}}),
            json!({"where": {"w": {"$startsWith": "a\u{ffff}"}}}),
            json!({"where": {"w": {"$startsWith": "a\u{10000}"}}}),
            json!({"where": {"w": {"$startsWith": "a\u{10ffff}"}}}),
            json!({"where": {"list": "l1", "w": {"$startsWith": "a"}}, "orderBy": "w"}),
            json!({"where": {"n": {"$startsWith": "se"}}}),
            json!({"where": {"w": {"$exists": false}}}),
            json!({"where": {"n": {"$exists": true}, "done": true}}),
            json!({"where": {"n": {"$nin": [1, 2, null]}}, "orderBy": "n"}),
            json!({"where": {"done": false, "n": {"$nin": []}}}),
            json!({"where": {"$or": [{"n": 3}, {"meta.owner": "bob"}]}}),
            json!({"where": {"$or": [{"n": 3}, {"meta.owner": "bob"}]}, "orderBy": "at", "limit": 5, "offset": 2}),
            json!({"where": {"$or": [{"n": {"$gte": 4}}, {"s": "s1"}, {"n": 5}]}, "orderBy": "s", "desc": true}),
            json!({"where": {"$or": [{"n": 3}, {"at": {"$lt": 960}}]}}),
            json!({"where": {"done": true, "$or": [{"n": 1}, {"n": 2}]}}),
            json!({"where": {"$or": [{"w": {"$startsWith": "a"}}, {"list": "l2", "at": {"$gt": 980}}]}, "limit": 6}),
            json!({"where": {"$or": [{"n": {"$gt": 9, "$lt": 1}}, {"s": "s2"}]}}),
            json!({"where": {"$or": [{"n": {"$gt": 9, "$lt": 1}}]}}),
            json!({"where": {"$or": [{"$or": [{"n": 1}, {"s": "s0"}]}, {"meta.owner": "cy"}]}}),
            json!({"where": {"$or": [{"n": 1}], "s": {"$in": ["s1", "s2"]}}}),
            json!({"orderBy": "t"}),
            json!({"orderBy": "t", "desc": true, "limit": 9}),
            json!({"where": {"t": {"$gte": {"$date": 1.70001e12}}}, "orderBy": "t"}),
            json!({"where": {"t": {"$gt": {"$date": 1.700003e12}, "$lte": {"$date": 1.70001e12}}}}),
            json!({"where": {"t": {"$lt": {"$date": 1.700004e12}}}, "orderBy": "t", "desc": true}),
            json!({"where": {"t": {"$date": 1.700005e12}}}),
            json!({"where": {"t": {"$in": [{"$date": 1.700005e12}, 5]}}}),
            json!({"where": {"list": "l1", "t": {"$gte": {"$date": 1.700008e12}}}, "orderBy": "t"}),
            json!({"where": {"t": {"$gt": 3}}}),
            json!({"where": {"t": {"$lt": "z"}}}),
            json!({"where": {"t": {"$gt": {"$date": 0}, "$lt": 9}}}),
        ];
        let (spec, docs) = (spec(), docs());
        for q in queries {
            let parsed = Query::parse(&q).unwrap();
            assert_eq!(run_plan(&spec, &parsed, &docs), scan(&parsed, &docs), "{q}");
        }
    }

    /// Hand-computed answers, so that index and scan cannot agree on a
    /// wrong one.
    #[test]
    fn new_operators_give_the_expected_rows() {
        let docs: Vec<Value> = [
            json!({"id": "a", "w": "apple", "n": 1}),
            json!({"id": "b", "w": "apricot", "n": null}),
            json!({"id": "c", "w": "banana", "n": 3}),
            json!({"id": "d", "w": 5}),
            json!({"id": "e", "n": 2}),
        ]
        .into();
        let spec = Schema::from_options(&json!({"collections": {"t": {"indexes": ["w", "n"]}}}))
            .unwrap()
            .collections["t"]
            .clone();
        let cases = [
            (json!({"w": {"$startsWith": "ap"}}), vec!["a", "b"]),
            (json!({"w": {"$startsWith": ""}}), vec!["a", "b", "c"]),
            (json!({"n": {"$exists": true}}), vec!["a", "b", "c", "e"]),
            (json!({"n": {"$exists": false}}), vec!["d"]),
            (json!({"n": {"$nin": [1, 3]}}), vec!["b", "d", "e"]),
            (
                json!({"$or": [{"n": 3}, {"w": {"$startsWith": "apr"}}]}),
                vec!["b", "c"],
            ),
            (json!({"$or": [{"n": 2}, {"n": 2}]}), vec!["e"]),
        ];
        for (w, want) in cases {
            let q = Query::parse(&json!({ "where": w })).unwrap();
            assert_eq!(scan(&q, &docs), want, "scan {w}");
            assert_eq!(run_plan(&spec, &q, &docs), want, "plan {w}");
        }
    }

    #[test]
    fn dates_compare_as_instants_through_an_index() {
        let d = |ms: i64| json!({ "$date": ms });
        let docs: Vec<Value> = vec![
            json!({"id": "a", "t": d(3000)}),
            json!({"id": "b", "t": d(1000)}),
            json!({"id": "c", "t": 2000}),
            json!({"id": "e", "t": d(2000)}),
            json!({"id": "f"}),
        ];
        let spec = Schema::from_options(&json!({"collections": {"t": {"indexes": ["t"]}}}))
            .unwrap()
            .collections["t"]
            .clone();
        let cases = [
            (json!({"where": {"t": {"$gte": d(2000)}}}), vec!["a", "e"]),
            (
                json!({"where": {"t": {"$lt": d(3000)}}, "orderBy": "t"}),
                vec!["b", "e"],
            ),
            (
                json!({"orderBy": "t", "desc": true}),
                vec!["a", "e", "b", "c", "f"],
            ),
            (json!({"where": {"t": d(1000)}}), vec!["b"]),
            (json!({"where": {"t": {"$gte": 0}}}), vec!["c"]),
        ];
        for (q, want) in cases {
            let q = Query::parse(&q).unwrap();
            assert_eq!(scan(&q, &docs), want, "scan {q:?}");
            assert_eq!(run_plan(&spec, &q, &docs), want, "plan {q:?}");
        }
        let p = plan(
            &spec,
            &Query::parse(&json!({"where": {"t": {"$gte": d(2000)}}})).unwrap(),
        );
        assert_eq!(p.index.as_deref(), Some("t"));
        assert!(p.exact);
    }

    #[test]
    fn or_branches_use_their_own_indexes() {
        let spec = spec();
        let r = |q: Value| reads(&spec, &Query::parse(&q).unwrap());
        let Reads::Union(plans) =
            r(json!({"where": {"$or": [{"n": 3}, {"meta.owner": "bob"}]}, "orderBy": "at"}))
        else {
            panic!("two indexed branches read through their indexes");
        };
        let names: Vec<_> = plans.iter().map(|p| p.index.as_deref()).collect();
        assert_eq!(names, [Some("n"), Some("meta.owner")]);
        // A branch without an index: one scan instead.
        assert!(matches!(
            r(json!({"where": {"$or": [{"n": 3}, {"at": 5}]}})),
            Reads::One(Plan { index: None, .. })
        ));
        // A field condition beside the `$or` with its own index range wins.
        assert!(matches!(
            r(json!({"where": {"done": true, "$or": [{"n": 3}, {"s": "s1"}]}})),
            Reads::One(Plan { exact: false, .. })
        ));
        // A prefix reads an index range but stays a filter.
        let Reads::One(p) = r(json!({"where": {"w": {"$startsWith": "ab"}}})) else {
            panic!()
        };
        assert_eq!(p.index.as_deref(), Some("w"));
        assert!(p.lower.is_some() && p.upper.is_some() && !p.exact);
    }

    #[test]
    fn prefix_end_is_above_every_extension_and_valid() {
        let samples = [
            "",
            "a",
            "ab",
            "a\u{ffff}",
            "\u{ffff}",
            "\u{d7ff}",
            "\u{e000}",
            "x\u{10000}",
            "x\u{103ff}",
            "x\u{10400}",
            "\u{10ffff}",
            "z\u{ffff}\u{ffff}",
            "\u{fffe}",
        ];
        let tails = [
            "",
            "\u{0}",
            "a",
            "\u{ffff}",
            "\u{ffff}\u{ffff}\u{ffff}",
            "\u{10ffff}",
            "\u{e000}",
        ];
        for p in samples {
            let end = prefix_end(p);
            for t in tails {
                let ext = format!("{p}{t}");
                if let Some(end) = &end {
                    assert_eq!(cmp_str(&ext, end), Ordering::Less, "{p:?}+{t:?} < {end:?}");
                }
            }
            if let Some(end) = &end {
                assert!(!end.starts_with(p) || p.is_empty(), "{p:?}: {end:?}");
                assert_eq!(cmp_str(p, end), Ordering::Less);
            }
        }
        assert_eq!(prefix_end("ab").as_deref(), Some("ac"));
        assert_eq!(prefix_end("a\u{ffff}").as_deref(), Some("b"));
        assert_eq!(prefix_end("\u{ffff}\u{ffff}"), None);
        assert_eq!(prefix_end(""), None);
    }

    #[test]
    fn plans_use_indexes_exactly_where_they_can() {
        let spec = spec();
        let p = |q: Value| plan(&spec, &Query::parse(&q).unwrap());
        let eq = p(json!({"where": {"done": true}}));
        assert_eq!(eq.index.as_deref(), Some("done"));
        assert!(eq.exact);
        let compound = p(json!({"where": {"list": "l1", "at": {"$gt": 5}}, "orderBy": "at"}));
        assert_eq!(compound.index.as_deref(), Some("list+at"));
        assert!(compound.exact && compound.ordered);
        let residual = p(json!({"where": {"done": true, "s": {"$ne": "x"}}}));
        assert!(!residual.exact);
        let newest = p(json!({"orderBy": "at", "limit": 20}));
        assert_eq!(newest.index, None, "no single-field index on at");
        let by_s = p(json!({"orderBy": "s", "limit": 20}));
        assert_eq!(by_s.index.as_deref(), Some("s"));
        assert!(by_s.exact && by_s.ordered);
        assert!(p(json!({"where": {"n": {"$gt": 9, "$lt": 1}}})).empty);
    }

    /// The result of `q` over `docs`, as documents.
    fn result(q: &Query, docs: &[Value]) -> Vec<Value> {
        q.run(docs)
            .into_iter()
            .map(|i| docs[i as usize].clone())
            .collect()
    }

    #[test]
    fn patched_results_equal_a_rerun_or_decline() {
        let queries = [
            json!({"orderBy": "at", "desc": true, "limit": 5}),
            json!({"orderBy": "at", "limit": 5}),
            json!({"where": {"done": true}, "orderBy": "n", "limit": 4}),
            json!({"where": {"list": "l1"}, "orderBy": "at", "desc": true}),
            json!({"where": {"n": {"$gte": 3}}}),
            json!({"limit": 3}),
            json!({"limit": 0}),
            json!({"orderBy": "at", "limit": 5, "offset": 2}),
        ];
        let mut seed = 7u64;
        let mut next = move |n: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        let (mut patched, mut declined) = (0, 0);
        for q in queries {
            let q = Query::parse(&q).unwrap();
            for _ in 0..300 {
                let mut docs = docs();
                docs.truncate(5 + next(20) as usize);
                let before = result(&q, &docs);
                // One to three writes: inserts, updates (also of the sort
                // field and across the filter), deletes.
                let mut changes: Vec<(String, Option<Value>)> = vec![];
                for _ in 0..1 + next(3) {
                    let id = format!("d{:02}", next(30));
                    let pos = docs.iter().position(|d| id_of(d) == id);
                    let doc = if next(4) == 0 {
                        None
                    } else {
                        let mut d = pos.map_or_else(|| json!({"id": id}), |i| docs[i].clone());
                        d["at"] = json!(900 + next(200) as i64);
                        d["done"] = json!(next(2) == 0);
                        d["n"] = json!(next(7));
                        d["list"] = json!(format!("l{}", next(3)));
                        Some(d)
                    };
                    match (pos, &doc) {
                        (Some(i), Some(d)) => docs[i] = d.clone(),
                        (Some(i), None) => {
                            docs.remove(i);
                        }
                        (None, Some(d)) => docs.push(d.clone()),
                        (None, None) => {}
                    }
                    changes.push((id, doc));
                }
                let list: Vec<Change> = changes
                    .iter()
                    .map(|(i, d)| (i.as_str(), d.as_ref()))
                    .collect();
                match q.patch(&before, &list) {
                    Some(rows) => {
                        assert_eq!(rows, result(&q, &docs), "{q:?} {changes:?}");
                        patched += 1;
                    }
                    None => declined += 1,
                }
            }
        }
        assert!(
            patched > 4 * declined,
            "patched {patched}, declined {declined}"
        );
    }

    #[test]
    fn inserting_the_newest_patches_a_full_window() {
        let q = Query::parse(&json!({"orderBy": "at", "desc": true, "limit": 3})).unwrap();
        let docs = docs();
        let rows = result(&q, &docs);
        let new = json!({"id": "new", "at": 5000});
        let got = q.patch(&rows, &[("new", Some(&new))]).unwrap();
        assert_eq!(got[0], new);
        assert_eq!(got[1..], rows[..2]);
        // A delete inside a full window needs the row after it: declined.
        assert_eq!(q.patch(&rows, &[(id_of(&rows[0]), None)]), None);
        // With an offset the rows before the window are unknown.
        let off = Query::parse(&json!({"orderBy": "at", "offset": 1})).unwrap();
        assert_eq!(
            off.patch(&result(&off, &docs), &[("new", Some(&new))]),
            None
        );
    }

    #[test]
    fn dollar_keys_that_are_not_operators_are_refused_at_any_depth() {
        let refused = [
            json!({"$and": [{"n": 1}]}),
            json!({"$or": [{"n": 1}, {"$and": [{"n": 2}]}]}),
            json!({"$or": [{"n": {"$regex": "x"}}]}),
            json!({"n": {"$or": [1, 2]}}),
            json!({"$not": {"n": 1}}),
            json!({"$eq": 1}),
            json!({"n": 1, "$nor": []}),
            json!({"meta.$or": 1}),
            json!({"n": {"$gte": 1, "$lte ": 3}}),
            json!({"n": {"$regex": "x"}}),
            json!({"n": {"$GT": 1}}),
            json!({"n": {"$not": {"$eq": 1}}}),
            json!({"meta": {"owner": {"$in": ["ann"]}}}),
            json!({"meta": {"$or": [{"owner": "ann"}]}}),
            json!({"tags": [{"$gt": 1}]}),
            json!({"n": {"$in": [1, {"$gt": 2}]}}),
            json!({"n": {"$eq": {"a": {"$ne": 1}}}}),
            json!({"n": {"$ne": {"$x": 1}}}),
            json!({"n": {"$gt": {"$x": 1}}}),
        ];
        for w in refused {
            let e = Query::parse(&json!({ "where": w })).unwrap_err();
            assert_eq!(e.code(), "UNKNOWN_OPERATOR", "{w}: {e}");
            let e = Filter::parse(&w, "where").unwrap_err();
            assert_eq!(e.code(), "UNKNOWN_OPERATOR", "count: {w}: {e}");
        }
        // Known operators, nested paths and objects without `$` keys stay valid.
        for w in [
            json!({"n": {"$eq": 1, "$ne": 2, "$gt": 0, "$gte": 0, "$lt": 9, "$lte": 9, "$in": [1]}}),
            json!({"n": {"$nin": [1], "$startsWith": "a", "$exists": true}}),
            json!({"$or": [{"n": 1}, {"$or": [{"m": 2}]}], "k": 1}),
            json!({"meta.owner": "ann", "meta": {"owner": "ann", "tags": ["x"]}}),
            json!({"price": "$5", "a": {"b": "$or"}}),
        ] {
            Query::parse(&json!({ "where": w })).unwrap();
        }
    }

    #[test]
    fn bad_queries_are_typed_errors() {
        let code = |q: Value| Query::parse(&q).unwrap_err().code();
        assert_eq!(
            code(json!({"where": {"n": {"$regex": "x"}}})),
            "UNKNOWN_OPERATOR"
        );
        assert_eq!(code(json!({"where": {"n": {"$gt": [1]}}})), "INVALID_QUERY");
        assert_eq!(
            code(json!({"where": {"n": {"$gt": 1, "m": 2}}})),
            "INVALID_QUERY"
        );
        assert_eq!(code(json!({"where": {"n": {"$in": 3}}})), "INVALID_QUERY");
        assert_eq!(code(json!({"where": 5})), "INVALID_QUERY");
        assert_eq!(code(json!({"limit": -1})), "INVALID_QUERY");
        assert_eq!(code(json!({"sort": "x"})), "INVALID_QUERY");
        assert_eq!(code(json!({"where": {"a..b": 1}})), "INVALID_QUERY");
        assert_eq!(code(json!({"where": {"$or": []}})), "INVALID_QUERY");
        assert_eq!(code(json!({"where": {"$or": {"n": 1}}})), "INVALID_QUERY");
        assert_eq!(code(json!({"where": {"$or": [1]}})), "INVALID_QUERY");
        assert_eq!(
            code(json!({"where": {"n": {"$startsWith": 1}}})),
            "INVALID_QUERY"
        );
        assert_eq!(
            code(json!({"where": {"n": {"$exists": 1}}})),
            "INVALID_QUERY"
        );
        assert_eq!(
            code(json!({"where": {"n": {"$nin": "a"}}})),
            "INVALID_QUERY"
        );
    }
}

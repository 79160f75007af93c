//! JSON document helpers: paths, merge patch, the total order used by
//! queries and indexes.

use crate::error::{CoreError, Result};
use crate::sorted::SortedSet;
use serde_json::{Map, Value};
use std::cmp::Ordering;

/// A dotted path into a document (`"meta.owner"`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Path(Vec<String>);

impl Path {
    pub fn parse(s: &str) -> Option<Path> {
        if s.is_empty() || s.split('.').any(|p| p.is_empty()) {
            return None;
        }
        Some(Path(s.split('.').map(str::to_owned).collect()))
    }

    pub fn get<'a>(&self, doc: &'a Value) -> Option<&'a Value> {
        self.0
            .iter()
            .try_fold(doc, |v, seg| v.as_object()?.get(seg))
    }

    /// [`Path::get`] from a document held as its map.
    pub fn get_in<'a>(&self, doc: &'a Map<String, Value>) -> Option<&'a Value> {
        let (first, rest) = self.0.split_first()?;
        rest.iter()
            .try_fold(doc.get(first)?, |v, seg| v.as_object()?.get(seg))
    }

    pub fn as_string(&self) -> String {
        self.0.join(".")
    }

    /// The top-level field the path starts with.
    pub fn first(&self) -> &str {
        self.0.first().map_or("", String::as_str)
    }
}

/// RFC 7396 JSON merge patch: objects merge recursively, `null` removes.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let obj = target.as_object_mut().expect("made an object above");
    // Removing a key keeps the order of the others, which costs O(n) per
    // key (`shift_remove`); many removals go in one pass instead, so a patch
    // nulling every key of a large object stays linear. A key appears once
    // in a patch, so removing first and merging after is the same result.
    let removals = patch.values().filter(|v| v.is_null()).count();
    if removals > 8 {
        let gone: SortedSet<&str> = patch
            .iter()
            .filter(|(_, v)| v.is_null())
            .map(|(k, _)| k.as_str())
            .collect();
        obj.retain(|k, _| !gone.contains(k.as_str()));
    }
    for (k, v) in patch {
        if v.is_null() {
            if removals <= 8 {
                obj.shift_remove(k);
            }
        } else {
            merge_patch(obj.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// The key of a date in a document: a JS `Date` is stored (and synced) as
/// `{"$date": <ms since the epoch>}` (docs/protocol.md, "Dates").
pub const DATE_KEY: &str = "$date";

/// The instant of a date value (`{"$date": ms}`, that key alone, a number).
pub fn as_date(v: &Value) -> Option<f64> {
    match v {
        Value::Object(o) if o.len() == 1 => o.get(DATE_KEY)?.as_f64(),
        _ => None,
    }
}

/// The type classes of the total order, lowest first. Missing and `null`
/// share the lowest class; dates sit between numbers and strings (as in
/// IndexedDB's key order); other objects and arrays all compare equal in
/// the top one.
pub fn rank(v: Option<&Value>) -> u8 {
    match v {
        None | Some(Value::Null) => 0,
        Some(Value::Bool(_)) => 1,
        Some(Value::Number(_)) => 2,
        Some(d) if as_date(d).is_some() => 3,
        Some(Value::String(_)) => 4,
        Some(Value::Array(_)) | Some(Value::Object(_)) => 5,
    }
}

/// Strings compare by UTF-16 code units, as IndexedDB keys do, so that an
/// index scan and an in-memory sort agree.
pub fn cmp_str(a: &str, b: &str) -> Ordering {
    if a.is_ascii() && b.is_ascii() {
        return a.cmp(b);
    }
    a.encode_utf16().cmp(b.encode_utf16())
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

/// The total order over document values used by `orderBy` and range
/// operators (within one class). Agrees with the IndexedDB key encoding in
/// [`crate::keys`].
pub fn cmp_values(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    let (ra, rb) = (rank(a), rank(b));
    if ra != rb {
        return ra.cmp(&rb);
    }
    match (a, b) {
        (Some(Value::Bool(x)), Some(Value::Bool(y))) => x.cmp(y),
        (Some(x @ Value::Number(_)), Some(y @ Value::Number(_))) => {
            num(x).partial_cmp(&num(y)).unwrap_or(Ordering::Equal)
        }
        (Some(Value::String(x)), Some(Value::String(y))) => cmp_str(x, y),
        (Some(x), Some(y)) if ra == 3 => {
            let (x, y) = (as_date(x), as_date(y));
            x.partial_cmp(&y).unwrap_or(Ordering::Equal)
        }
        _ => Ordering::Equal,
    }
}

/// Deep equality where numbers compare by value (`1 == 1.0`) and a missing
/// field equals `null`.
pub fn values_equal(a: Option<&Value>, b: Option<&Value>) -> bool {
    match (a, b) {
        (None | Some(Value::Null), None | Some(Value::Null)) => true,
        (Some(Value::Number(x)), Some(Value::Number(y))) => x.as_f64() == y.as_f64(),
        (Some(Value::Array(x)), Some(Value::Array(y))) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| values_equal(Some(p), Some(q)))
        }
        (Some(Value::Object(x)), Some(Value::Object(y))) => {
            x.len() == y.len() && x.iter().all(|(k, v)| values_equal(Some(v), y.get(k)))
        }
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

/// Validates a document id given by the caller.
pub fn check_id(v: &Value, path: &str) -> Result<String> {
    match v {
        Value::String(s) if s.is_empty() => Err(CoreError::InvalidId(format!(
            "{path}: an id must be a non-empty string"
        ))),
        Value::String(s) if s.len() > crate::ids::MAX_ID_BYTES => {
            Err(CoreError::InvalidId(format!(
                "{path}: an id is at most {} bytes",
                crate::ids::MAX_ID_BYTES
            )))
        }
        Value::String(s) => Ok(s.clone()),
        other => Err(CoreError::InvalidId(format!(
            "{path}: an id must be a string, got {}",
            type_name(other)
        ))),
    }
}

pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_merges_nested_and_deletes_with_null() {
        let mut doc = json!({"a": 1, "m": {"x": 1, "y": 2}, "gone": true});
        merge_patch(
            &mut doc,
            &json!({"m": {"y": null, "z": 3}, "gone": null, "b": [1]}),
        );
        assert_eq!(doc, json!({"a": 1, "m": {"x": 1, "z": 3}, "b": [1]}));
    }

    #[test]
    fn removing_many_keys_is_linear_and_keeps_order() {
        let n = 20_000;
        let mut doc = Value::Object((0..n).map(|i| (format!("k{i}"), json!(i))).collect());
        let mut patch: Map<String, Value> =
            (0..n - 2).map(|i| (format!("k{i}"), Value::Null)).collect();
        patch.insert("new".into(), json!(1));
        let t = std::time::Instant::now();
        merge_patch(&mut doc, &Value::Object(patch));
        let took = t.elapsed();
        let keys: Vec<_> = doc.as_object().unwrap().keys().cloned().collect();
        assert_eq!(
            keys,
            [format!("k{}", n - 2), format!("k{}", n - 1), "new".into()]
        );
        // Quadratic removal took seconds; linear is a few ms (debug build).
        assert!(took < std::time::Duration::from_secs(2), "{took:?}");
        let mut few = json!({"a": 1, "b": 2, "c": 3});
        merge_patch(&mut few, &json!({"b": null, "d": 4}));
        assert_eq!(
            serde_json::to_string(&few).unwrap(),
            r#"{"a":1,"c":3,"d":4}"#
        );
    }

    #[test]
    fn merge_patch_replaces_non_objects() {
        let mut doc = json!({"m": 5});
        merge_patch(&mut doc, &json!({"m": {"k": 1}}));
        assert_eq!(doc, json!({"m": {"k": 1}}));
    }

    #[test]
    fn order_groups_types_then_values() {
        let vals = [
            json!(null),
            json!(false),
            json!(true),
            json!(-3),
            json!(2.5),
            json!(""),
            json!("a"),
            json!("b"),
            json!([1]),
        ];
        for w in vals.windows(2) {
            assert_eq!(
                cmp_values(Some(&w[0]), Some(&w[1])),
                Ordering::Less,
                "{w:?}"
            );
        }
        assert_eq!(cmp_values(None, Some(&json!(null))), Ordering::Equal);
    }

    #[test]
    fn dates_order_as_instants_between_numbers_and_strings() {
        let d = |ms: f64| json!({ "$date": ms });
        let vals = [json!(1e15), d(-5.0), d(0.0), d(1.5e12), json!("")];
        for w in vals.windows(2) {
            assert_eq!(
                cmp_values(Some(&w[0]), Some(&w[1])),
                Ordering::Less,
                "{w:?}"
            );
        }
        assert!(values_equal(Some(&d(7.0)), Some(&json!({"$date": 7}))));
        // Not dates: another key beside it, or not a number.
        assert_eq!(as_date(&json!({"$date": 1, "x": 2})), None);
        assert_eq!(as_date(&json!({"$date": "2020"})), None);
        assert_eq!(rank(Some(&json!({"$date": "2020"}))), 5);
    }

    #[test]
    fn strings_order_by_utf16_like_indexeddb() {
        // U+FFFF sorts after U+10000 in UTF-16 (surrogates are 0xD800..).
        assert_eq!(cmp_str("\u{ffff}", "\u{10000}"), Ordering::Greater);
        assert_eq!(cmp_str("a", "b"), Ordering::Less);
    }

    #[test]
    fn paths_reach_nested_fields() {
        let p = Path::parse("meta.owner").unwrap();
        assert_eq!(
            p.get(&json!({"meta": {"owner": "ann"}})),
            Some(&json!("ann"))
        );
        assert_eq!(p.get(&json!({"meta": 1})), None);
        assert!(Path::parse("a..b").is_none());
        assert!(Path::parse("").is_none());
    }

    #[test]
    fn equality_treats_missing_as_null_and_numbers_by_value() {
        assert!(values_equal(None, Some(&json!(null))));
        assert!(values_equal(Some(&json!(1)), Some(&json!(1.0))));
        assert!(values_equal(
            Some(&json!({"a": [1, 2]})),
            Some(&json!({"a": [1.0, 2]}))
        ));
        assert!(!values_equal(
            Some(&json!({"a": 1})),
            Some(&json!({"a": 1, "b": 2}))
        ));
    }
}

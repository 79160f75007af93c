//! IndexedDB key encoding for indexed fields.
//!
//! IndexedDB cannot index booleans, null, objects or missing fields: a record
//! whose value is not a valid key silently drops out of the index, so an
//! index scan would disagree with a full scan. Every indexed value is
//! therefore stored as a tagged array key that IndexedDB can order:
//! `[0]` missing or null, `[1, 0|1]` booleans, `[2, n]` numbers, `[2.5, ms]`
//! dates (added after the others: a tag between numbers and strings keeps
//! the keys stored before valid), `[3, s]` strings, `[4]` arrays and other
//! objects. Arrays compare element by element, so the tags give the same
//! total order as [`crate::json::cmp_values`].

use crate::json::{as_date, cmp_str, rank};
use crate::schema::IndexSpec;
use serde_json::{json, Map, Value};
use std::cmp::Ordering;

/// A tag greater than every value tag: the end of a key prefix.
pub const END: u8 = 9;

/// The key tag of a type class ([`rank`]).
pub fn tag(rank: u8) -> Value {
    match rank {
        3 => json!(2.5),
        r if r < 3 => json!(r),
        r => json!(r - 1),
    }
}

pub fn encode(v: Option<&Value>) -> Value {
    match v {
        None | Some(Value::Null) => json!([0]),
        Some(Value::Bool(b)) => json!([1, u8::from(*b)]),
        Some(Value::Number(n)) => json!([2, n]),
        Some(Value::String(s)) => json!([3, s]),
        Some(d @ Value::Object(_)) if rank(Some(d)) == 3 => json!([2.5, as_date(d)]),
        Some(Value::Array(_) | Value::Object(_)) => json!([4]),
    }
}

/// The key a document has in `index`.
pub fn index_key(index: &IndexSpec, doc: &Value) -> Value {
    match index.fields.as_slice() {
        [one] => encode(one.get(doc)),
        many => Value::Array(many.iter().map(|p| encode(p.get(doc))).collect()),
    }
}

/// [`index_key`] of a document held as its map.
pub fn index_key_in(index: &IndexSpec, doc: &Map<String, Value>) -> Value {
    match index.fields.as_slice() {
        [one] => encode(one.get_in(doc)),
        many => Value::Array(many.iter().map(|p| encode(p.get_in(doc))).collect()),
    }
}

/// IndexedDB's key order (numbers < strings < arrays), for the keys this
/// module produces. Used to spot empty ranges before asking IndexedDB, which
/// throws on a lower bound above the upper one.
pub fn cmp_keys(a: &Value, b: &Value) -> Ordering {
    fn class(v: &Value) -> u8 {
        match v {
            Value::Number(_) => 0,
            Value::String(_) => 1,
            _ => 2,
        }
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Value::String(x), Value::String(y)) => cmp_str(x, y),
        (Value::Array(x), Value::Array(y)) => {
            for (p, q) in x.iter().zip(y) {
                let o = cmp_keys(p, q);
                if o != Ordering::Equal {
                    return o;
                }
            }
            x.len().cmp(&y.len())
        }
        _ => class(a).cmp(&class(b)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::{cmp_values, Path};

    #[test]
    fn encoded_order_matches_value_order() {
        let vals = [
            None,
            Some(json!(null)),
            Some(json!(false)),
            Some(json!(true)),
            Some(json!(-1.5)),
            Some(json!(0)),
            Some(json!(7)),
            Some(json!("Z")),
            Some(json!("a")),
            Some(json!("\u{10000}")),
            Some(json!("\u{ffff}")),
            Some(json!({"$date": -1})),
            Some(json!({"$date": 1.7e12})),
            Some(json!("")),
            Some(json!({"k": 1})),
            Some(json!({"$date": "x"})),
            Some(json!([1, 2])),
        ];
        for a in &vals {
            for b in &vals {
                assert_eq!(
                    cmp_keys(&encode(a.as_ref()), &encode(b.as_ref())),
                    cmp_values(a.as_ref(), b.as_ref()),
                    "{a:?} vs {b:?}"
                );
            }
        }
    }

    #[test]
    fn compound_keys_cover_every_field() {
        let ix = IndexSpec {
            fields: vec![Path::parse("listId").unwrap(), Path::parse("at").unwrap()],
        };
        assert_eq!(
            index_key(&ix, &json!({"listId": "l1"})),
            json!([[3, "l1"], [0]])
        );
    }

    #[test]
    fn a_document_held_as_its_map_gets_the_same_keys() {
        let doc = json!({"a": {"b": 2, "c": [1]}, "s": "x", "t": true});
        let paths = [
            "a.b",
            "a.c",
            "s",
            "t",
            "missing",
            "a.missing.deeper",
            "s.not_an_object",
        ];
        for p in paths {
            let ix = IndexSpec {
                fields: vec![Path::parse(p).unwrap()],
            };
            let map = doc.as_object().unwrap();
            assert_eq!(index_key_in(&ix, map), index_key(&ix, &doc), "{p}");
        }
        let ix = IndexSpec {
            fields: vec![Path::parse("s").unwrap(), Path::parse("a.b").unwrap()],
        };
        assert_eq!(
            index_key_in(&ix, doc.as_object().unwrap()),
            index_key(&ix, &doc)
        );
    }
}

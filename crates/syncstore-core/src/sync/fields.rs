//! Server-side document rules, shared by the reference server's stores and
//! the in-memory model server of the tests: per-path field versions and the
//! field-level conflict check, temp-id reference rewriting. (Moved here from
//! `server/src/store/doc.rs` so both use one implementation.)

use std::collections::{BTreeMap, HashMap};

use crate::protocol::{is_temp_id, JsonObject};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A path into a document: object keys from the root. Arrays are leaves.
pub type Path = Vec<String>;

/// RFC 7396 merge patch: the one implementation the client's write path
/// uses too (it keeps field order, so views and local records agree).
pub use crate::json::merge_patch;

/// The leaves of a document: every non-object value, and every empty object.
pub fn leaves(doc: &JsonObject) -> BTreeMap<Path, &Value> {
    fn walk<'a>(obj: &'a JsonObject, prefix: &mut Path, out: &mut BTreeMap<Path, &'a Value>) {
        for (k, v) in obj {
            prefix.push(k.clone());
            match v {
                Value::Object(inner) if !inner.is_empty() => walk(inner, prefix, out),
                _ => {
                    out.insert(prefix.clone(), v);
                }
            }
            prefix.pop();
        }
    }
    let mut out = BTreeMap::new();
    walk(doc, &mut Vec::new(), &mut out);
    out
}

/// The paths a merge patch touches (its leaves; `null` and `{}` count).
pub fn touched_paths(patch: &JsonObject) -> Vec<Path> {
    leaves(patch).into_keys().collect()
}

fn related(a: &[String], b: &[String]) -> bool {
    let n = a.len().min(b.len());
    a[..n] == b[..n]
}

/// The version of every leaf path a document has ever had (removed paths
/// keep theirs), so an update can be checked field by field.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FieldVersions(Vec<(Path, u64)>);

impl FieldVersions {
    fn as_map(&self) -> BTreeMap<Path, u64> {
        self.0.iter().cloned().collect()
    }

    /// Stamps `version` on every path whose value differs between `old` and `new`.
    pub fn record(&mut self, old: Option<&JsonObject>, new: Option<&JsonObject>, version: u64) {
        let empty = JsonObject::new();
        let old = leaves(old.unwrap_or(&empty));
        let new = leaves(new.unwrap_or(&empty));
        let mut map = self.as_map();
        for (path, value) in &new {
            if old.get(path) != Some(value) {
                map.insert(path.clone(), version);
            }
        }
        for path in old.keys() {
            if !new.contains_key(path) {
                map.insert(path.clone(), version);
            }
        }
        self.0 = map.into_iter().collect();
    }

    /// True if any of `touched` (or a prefix or descendant of it) changed after `base`.
    pub fn conflicts(&self, touched: &[Path], base: u64) -> bool {
        self.0
            .iter()
            .any(|(p, v)| *v > base && touched.iter().any(|t| related(p, t)))
    }
}

/// Collects every string value starting with `tmp_` (candidates for rewriting).
pub fn temp_strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) if is_temp_id(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| temp_strings(x, out)),
        Value::Object(o) => o.values().for_each(|x| temp_strings(x, out)),
        _ => {}
    }
}

/// Replaces string values that exactly equal a mapped temporary id.
pub fn rewrite_refs(v: &mut Value, map: &HashMap<String, String>) {
    match v {
        Value::String(s) => {
            if let Some(c) = map.get(s.as_str()) {
                *s = c.clone();
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| rewrite_refs(x, map)),
        Value::Object(o) => o.values_mut().for_each(|x| rewrite_refs(x, map)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> JsonObject {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn merge_patch_follows_rfc7396() {
        // The examples of RFC 7396 section 3.
        let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut t, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(t, json!({"a": "z", "c": {"d": "e"}}));
        let mut t = json!({"a": ["b"]});
        merge_patch(&mut t, &json!({"a": {"b": "c"}}));
        assert_eq!(t, json!({"a": {"b": "c"}}));
        let mut t = json!({"a": {"b": "c"}});
        merge_patch(&mut t, &json!({"a": [1]}));
        assert_eq!(t, json!({"a": [1]}));
        let mut t = json!({"e": null});
        merge_patch(&mut t, &json!({"a": 1}));
        assert_eq!(t, json!({"e": null, "a": 1}));
    }

    #[test]
    fn leaves_recurse_objects_not_arrays() {
        let d = obj(json!({"a": 1, "b": {"c": [1, 2], "d": {}}}));
        let l: Vec<_> = leaves(&d).into_keys().collect();
        assert_eq!(
            l,
            vec![
                vec!["a".to_string()],
                vec!["b".into(), "c".into()],
                vec!["b".into(), "d".into()]
            ]
        );
    }

    #[test]
    fn field_versions_detect_only_related_paths() {
        let mut fv = FieldVersions::default();
        let v1 = obj(json!({"title": "x", "meta": {"a": 1, "b": 2}}));
        fv.record(None, Some(&v1), 1);
        let v2 = obj(json!({"title": "x", "meta": {"a": 5, "b": 2}}));
        fv.record(Some(&v1), Some(&v2), 2);
        let p = |s: &str| s.split('.').map(String::from).collect::<Path>();
        assert!(!fv.conflicts(&[p("title")], 1));
        assert!(!fv.conflicts(&[p("meta.b")], 1));
        assert!(fv.conflicts(&[p("meta.a")], 1));
        assert!(fv.conflicts(&[p("meta")], 1), "ancestor of a changed path");
        assert!(!fv.conflicts(&[p("meta.a")], 2));
        // A removed field keeps a version.
        let v3 = obj(json!({"meta": {"a": 5, "b": 2}}));
        fv.record(Some(&v2), Some(&v3), 3);
        assert!(fv.conflicts(&[p("title")], 2));
        // A descendant of a path replaced by a scalar.
        let v4 = obj(json!({"meta": 7}));
        fv.record(Some(&v3), Some(&v4), 4);
        assert!(fv.conflicts(&[p("meta.zzz")], 3));
    }

    #[test]
    fn rewrites_exact_matches_only() {
        let map = HashMap::from([("tmp_1".to_string(), "c1".to_string())]);
        let mut v = json!({"a": "tmp_1", "b": ["tmp_1", "tmp_12"], "c": {"d": "xtmp_1"}});
        rewrite_refs(&mut v, &map);
        assert_eq!(
            v,
            json!({"a": "c1", "b": ["c1", "tmp_12"], "c": {"d": "xtmp_1"}})
        );
        let mut found = Vec::new();
        temp_strings(
            &json!({"a": ["tmp_x", {"b": "tmp_y"}], "c": "no"}),
            &mut found,
        );
        assert_eq!(found, vec!["tmp_x", "tmp_y"]);
    }
}

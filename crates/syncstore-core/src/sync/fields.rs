//! Server-side document rules, shared by the reference server's stores and
//! the in-memory model server of the tests: per-path field versions and the
//! field-level conflict check, temp-id reference rewriting. (Moved here from
//! `server/src/store/doc.rs` so both use one implementation.)

use crate::protocol::{is_temp_id, JsonObject};
use crate::sorted::{SortedMap, SortedSet};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A path into a document: object keys from the root. Arrays are leaves.
pub type Path = Vec<String>;

/// RFC 7396 merge patch: the one implementation the client's write path
/// uses too (it keeps field order, so views and local records agree).
pub use crate::json::merge_patch;

/// The leaves of a document: every non-object value, and every empty object.
pub fn leaves(doc: &JsonObject) -> SortedMap<Path, &Value> {
    fn walk<'a>(obj: &'a JsonObject, prefix: &mut Path, out: &mut SortedMap<Path, &'a Value>) {
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
    let mut out = SortedMap::new();
    walk(doc, &mut Vec::new(), &mut out);
    out
}

/// The paths a merge patch touches (its leaves; `null` and `{}` count).
pub fn touched_paths(patch: &JsonObject) -> Vec<Path> {
    leaves(patch).into_keys().collect()
}

/// The version of every leaf path of a document, and of the last removal.
///
/// Stored as `[[path, version], ...]`; the entry with the empty path is the
/// *floor*: the last version at which a path went away. Removed paths are
/// pruned (the metadata stays proportional to the document, and is counted
/// against the document size limit by the push rules); an update touching
/// a path the document does not have conflicts if anything was removed
/// after its base, since that path may have been one of them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FieldVersions(Vec<(Path, u64)>);

impl FieldVersions {
    /// The last version at which a path was removed (0 if none).
    fn floor(&self) -> u64 {
        self.0
            .iter()
            .filter(|(p, _)| p.is_empty())
            .map(|(_, v)| *v)
            .max()
            .unwrap_or(0)
    }

    /// Stamps `version` on every path whose value differs between `old` and
    /// `new`, drops the paths `new` does not have (raising the floor).
    pub fn record(&mut self, old: Option<&JsonObject>, new: Option<&JsonObject>, version: u64) {
        let empty = JsonObject::new();
        let old = leaves(old.unwrap_or(&empty));
        let new = leaves(new.unwrap_or(&empty));
        let mut floor = self.floor();
        let mut kept: SortedMap<&[String], u64> = SortedMap::new();
        for (path, v) in &self.0 {
            if path.is_empty() {
                continue;
            }
            if new.contains_key(path) {
                kept.insert(path.as_slice(), *v);
            } else {
                // Gone (now, or before this rule pruned removed paths).
                floor = floor.max(if old.contains_key(path) { version } else { *v });
            }
        }
        if old.keys().any(|p| !new.contains_key(p)) {
            floor = version;
        }
        let mut out = Vec::with_capacity(new.len() + 1);
        if floor > 0 {
            out.push((Vec::new(), floor));
        }
        for (path, value) in &new {
            let v = if old.get(path) == Some(value) {
                kept.get(path.as_slice()).copied().unwrap_or(version)
            } else {
                version
            };
            out.push((path.clone(), v));
        }
        self.0 = out;
    }

    /// True if any of `touched` (or a prefix or descendant of it) changed
    /// after `base`, or a path the document lacks may have been removed
    /// after `base`. Linear in the number of paths (times their depth).
    pub fn conflicts(&self, touched: &[Path], base: u64) -> bool {
        let touched_set: SortedSet<&[String]> = touched.iter().map(Vec::as_slice).collect();
        // Every proper prefix of a touched path (its ancestors).
        let ancestors: SortedSet<&[String]> = touched
            .iter()
            .flat_map(|t| (1..t.len()).map(move |n| &t[..n]))
            .collect();
        let mut present: SortedSet<&[String]> = SortedSet::new();
        for (p, v) in &self.0 {
            if p.is_empty() {
                continue;
            }
            if touched_set.contains(p.as_slice()) {
                present.insert(p.as_slice());
            }
            if *v <= base {
                continue;
            }
            // p is a touched path or an ancestor of one, or a touched path
            // is an ancestor of p.
            if touched_set.contains(p.as_slice())
                || ancestors.contains(p.as_slice())
                || (1..p.len()).any(|n| touched_set.contains(&p[..n]))
            {
                return true;
            }
        }
        self.floor() > base && touched_set.iter().any(|t| !present.contains(t))
    }

    /// Serialized size in bytes (as stored), without building the text.
    pub fn stored_bytes(&self) -> usize {
        self.0
            .iter()
            .map(|(p, _)| 24 + p.iter().map(|k| k.len() + 3).sum::<usize>())
            .sum()
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
pub fn rewrite_refs(v: &mut Value, map: &SortedMap<String, String>) {
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
        assert!(!fv.conflicts(&[p("meta")], 4));
        // Removed paths are pruned: only the leaves and the floor remain.
        assert_eq!(fv.0.len(), 2, "{fv:?}");
        // A path untouched since the base, while another was removed later.
        let v5 = obj(json!({"meta": 7, "x": 1, "y": 1}));
        fv.record(Some(&v4), Some(&v5), 5);
        let v6 = obj(json!({"meta": 7, "x": 1}));
        fv.record(Some(&v5), Some(&v6), 6);
        assert!(!fv.conflicts(&[p("x")], 5), "x is present and unchanged");
        assert!(fv.conflicts(&[p("y")], 5), "y went away after 5");
        assert!(!fv.conflicts(&[p("y")], 6));
    }

    #[test]
    fn field_versions_stay_bounded_by_the_document() {
        let mut fv = FieldVersions::default();
        let mut old: Option<JsonObject> = None;
        for v in 1..=64u64 {
            let doc: JsonObject = (0..50)
                .map(|i| (format!("k{v}_{i}"), json!("some value")))
                .collect();
            fv.record(old.as_ref(), Some(&doc), v);
            old = Some(doc);
        }
        assert_eq!(fv.0.len(), 51);
        assert!(fv.stored_bytes() < 4096, "{}", fv.stored_bytes());
    }

    #[test]
    fn conflict_check_is_linear() {
        let mut fv = FieldVersions::default();
        let doc: JsonObject = (0..20_000).map(|i| (format!("k{i}"), json!(i))).collect();
        fv.record(None, Some(&doc), 2);
        let touched: Vec<Path> = (0..20_000).map(|i| vec![format!("t{i}")]).collect();
        let t = std::time::Instant::now();
        assert!(!fv.conflicts(&touched, 2));
        assert!(!fv.conflicts(&touched[..1], 1));
        let took = t.elapsed();
        assert!(took < std::time::Duration::from_secs(2), "{took:?}");
    }

    #[test]
    fn rewrites_exact_matches_only() {
        let map = SortedMap::from([("tmp_1".to_string(), "c1".to_string())]);
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

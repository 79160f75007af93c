//! The declared shape of a store: its collections and their indexes.

use crate::error::{CoreError, Result};
use crate::json::{type_name, Path};
use crate::sorted::SortedMap;
use serde_json::Value;

/// Default per-document size limit (bytes of JSON): the reference
/// server's default (`--max-doc-bytes`, 256 KiB), so that what a store
/// accepts is what the server does.
pub const DEFAULT_MAX_DOC_BYTES: usize = 256 * 1024;

/// Whether a collection's writes leave the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// Pushed and pulled automatically (the default).
    Auto,
    /// Exchanged only when the app asks.
    Manual,
    /// Never leaves the device: no outbox entries.
    Local,
}

/// An index over one field path, or a compound index over several.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexSpec {
    pub fields: Vec<Path>,
}

impl IndexSpec {
    /// The IndexedDB index name: the paths joined by `+`.
    pub fn name(&self) -> String {
        self.fields
            .iter()
            .map(Path::as_string)
            .collect::<Vec<_>>()
            .join("+")
    }

    /// The record property that holds this index's encoded key. IndexedDB key
    /// paths must be identifiers, so the name is hex-encoded.
    pub fn key_path(&self) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let name = self.name();
        let mut s = String::with_capacity(1 + 2 * name.len());
        s.push('x');
        for b in name.bytes() {
            s.push(HEX[usize::from(b >> 4)] as char);
            s.push(HEX[usize::from(b & 15)] as char);
        }
        s
    }

    fn parse(v: &Value, at: &str) -> Result<IndexSpec> {
        let bad = |why: String| CoreError::InvalidSchema(format!("{at}: {why}"));
        let field = |v: &Value| -> Result<Path> {
            let s = v
                .as_str()
                .ok_or_else(|| bad(format!("an index field is a string, got {}", type_name(v))))?;
            Path::parse(s).ok_or_else(|| bad(format!("{s:?} is not a field path")))
        };
        let fields = match v {
            Value::String(_) => vec![field(v)?],
            Value::Array(items) if items.is_empty() => {
                return Err(bad("a compound index needs at least one field".into()))
            }
            Value::Array(items) => items.iter().map(field).collect::<Result<Vec<_>>>()?,
            other => {
                return Err(bad(format!(
                    "an index is a field path or an array of them, got {}",
                    type_name(other)
                )))
            }
        };
        for (i, f) in fields.iter().enumerate() {
            if fields[..i].contains(f) {
                return Err(bad(format!("field {:?} appears twice", f.as_string())));
            }
        }
        Ok(IndexSpec { fields })
    }
}

/// How a collection resolves sync conflicts (docs/conflicts.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConflictMode {
    #[default]
    ServerWins,
    LastWriteWins,
    FieldMerge,
    /// An app function decides (the binding holds it; options carry the
    /// marker `"custom"` in its place).
    Custom,
    /// The server's document shows, marked; the conflict waits for the app.
    Manual,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectionSpec {
    pub indexes: Vec<IndexSpec>,
    pub sync: SyncMode,
    pub conflicts: ConflictMode,
    /// Same-field edits under field merge: last-write-wins (else server-wins).
    pub fallback_lww: bool,
    /// Fields (paths) holding arrays of objects with an `id`, merged by id,
    /// with the field that orders the merged array.
    pub merge_by_id: SortedMap<String, Option<String>>,
}

impl CollectionSpec {
    pub fn index(&self, name: &str) -> Option<&IndexSpec> {
        self.indexes.iter().find(|i| i.name() == name)
    }
}

/// Names starting with `_` are the store's own (outbox, meta).
pub fn check_collection_name(name: &str) -> Result<()> {
    if name.is_empty() || name.starts_with('_') || name.len() > 64 {
        return Err(CoreError::InvalidSchema(format!(
            "collection name {name:?}: 1 to 64 bytes, not starting with '_'"
        )));
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schema {
    pub collections: SortedMap<String, CollectionSpec>,
    pub max_doc_bytes: usize,
}

impl Schema {
    /// Parses the `collections` and `maxDocBytes` parts of the open options.
    pub fn from_options(opts: &Value) -> Result<Schema> {
        let obj = opts
            .as_object()
            .ok_or_else(|| CoreError::InvalidOptions("options must be an object".into()))?;
        let colls = match obj.get("collections") {
            Some(Value::Object(c)) => c,
            Some(other) => {
                return Err(CoreError::InvalidSchema(format!(
                    "collections must be an object, got {}",
                    type_name(other)
                )))
            }
            None => return Err(CoreError::InvalidSchema("collections is required".into())),
        };
        let mut collections = SortedMap::new();
        for (name, spec) in colls {
            check_collection_name(name)?;
            let at = format!("collections.{name}");
            let spec = match spec {
                Value::Object(o) => o,
                other => {
                    return Err(CoreError::InvalidSchema(format!(
                        "{at} must be an object, got {}",
                        type_name(other)
                    )))
                }
            };
            for k in spec.keys() {
                if !matches!(
                    k.as_str(),
                    "indexes" | "sync" | "conflicts" | "fallback" | "mergeById"
                ) {
                    return Err(CoreError::InvalidSchema(format!(
                        "{at}: unknown setting {k:?}"
                    )));
                }
            }
            let indexes = match spec.get("indexes") {
                None => vec![],
                Some(Value::Array(list)) => {
                    let mut out: Vec<IndexSpec> = vec![];
                    for (i, ix) in list.iter().enumerate() {
                        let ix = IndexSpec::parse(ix, &format!("{at}.indexes[{i}]"))?;
                        if !out.contains(&ix) {
                            out.push(ix);
                        }
                    }
                    out
                }
                Some(other) => {
                    return Err(CoreError::InvalidSchema(format!(
                        "{at}.indexes must be an array, got {}",
                        type_name(other)
                    )))
                }
            };
            let sync = match spec.get("sync").map(|v| v.as_str()) {
                None | Some(Some("auto")) => SyncMode::Auto,
                Some(Some("manual")) => SyncMode::Manual,
                Some(Some("local")) => SyncMode::Local,
                Some(_) => {
                    return Err(CoreError::InvalidSchema(format!(
                        "{at}.sync must be \"auto\", \"manual\" or \"local\""
                    )))
                }
            };
            let conflicts = match spec.get("conflicts").map(|v| v.as_str()) {
                None | Some(Some("serverWins")) => ConflictMode::ServerWins,
                Some(Some("lastWriteWins")) => ConflictMode::LastWriteWins,
                Some(Some("fieldMerge")) => ConflictMode::FieldMerge,
                Some(Some("custom")) => ConflictMode::Custom,
                Some(Some("manual")) => ConflictMode::Manual,
                Some(_) => {
                    return Err(CoreError::InvalidSchema(format!(
                        "{at}.conflicts must be \"serverWins\", \"lastWriteWins\", \"fieldMerge\", \"manual\" or a function"
                    )))
                }
            };
            let fallback_lww = match spec.get("fallback").map(|v| v.as_str()) {
                None | Some(Some("serverWins")) => false,
                Some(Some("lastWriteWins")) => true,
                Some(_) => {
                    return Err(CoreError::InvalidSchema(format!(
                        "{at}.fallback must be \"serverWins\" or \"lastWriteWins\""
                    )))
                }
            };
            let bad_merge = || {
                CoreError::InvalidSchema(format!(
                    "{at}.mergeById must be an array of field paths, or an object of field paths to the field that orders the array (or null)"
                ))
            };
            let path_ok = |p: &str| Path::parse(p).is_some();
            let mut merge_by_id = SortedMap::new();
            match spec.get("mergeById") {
                None => {}
                Some(Value::Array(list)) => {
                    for v in list {
                        match v.as_str() {
                            Some(p) if path_ok(p) => merge_by_id.insert(p.to_owned(), None),
                            _ => return Err(bad_merge()),
                        };
                    }
                }
                Some(Value::Object(map)) => {
                    for (p, order) in map {
                        let order = match order {
                            _ if !path_ok(p) => return Err(bad_merge()),
                            Value::Null => None,
                            Value::String(o) => Some(o.clone()),
                            _ => return Err(bad_merge()),
                        };
                        merge_by_id.insert(p.clone(), order);
                    }
                }
                Some(_) => return Err(bad_merge()),
            }
            collections.insert(
                name.clone(),
                CollectionSpec {
                    indexes,
                    sync,
                    conflicts,
                    fallback_lww,
                    merge_by_id,
                },
            );
        }
        let max_doc_bytes = match obj.get("maxDocBytes") {
            None => DEFAULT_MAX_DOC_BYTES,
            Some(v) => v.as_u64().filter(|n| *n > 0).ok_or_else(|| {
                CoreError::InvalidOptions("maxDocBytes must be a positive integer".into())
            })? as usize,
        };
        Ok(Schema {
            collections,
            max_doc_bytes,
        })
    }

    pub fn collection(&self, name: &str) -> Result<&CollectionSpec> {
        self.collections
            .get(name)
            .ok_or_else(|| CoreError::UnknownCollection(format!("unknown collection {name:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_single_nested_and_compound_indexes() {
        let s = Schema::from_options(&json!({"collections": {"todos": {
            "indexes": ["done", "meta.owner", ["listId", "createdAt"], "done"]}}}))
        .unwrap();
        let names: Vec<_> = s.collections["todos"]
            .indexes
            .iter()
            .map(|i| i.name())
            .collect();
        assert_eq!(names, ["done", "meta.owner", "listId+createdAt"]);
        assert_eq!(s.collections["todos"].indexes[0].key_path(), "x646f6e65");
        assert_eq!(s.max_doc_bytes, DEFAULT_MAX_DOC_BYTES);
    }

    #[test]
    fn rejects_malformed_index_specs() {
        for bad in [
            json!([1]),
            json!([[]]),
            json!([["a", "a"]]),
            json!(["a..b"]),
            json!("done"),
        ] {
            let err =
                Schema::from_options(&json!({"collections": {"t": {"indexes": bad}}})).unwrap_err();
            assert_eq!(err.code(), "INVALID_SCHEMA", "{err}");
        }
    }

    #[test]
    fn parses_conflict_settings() {
        let s = Schema::from_options(&json!({"collections": {
            "a": {},
            "b": {"conflicts": "fieldMerge", "fallback": "lastWriteWins", "mergeById": ["pauses"]},
            "c": {"conflicts": "lastWriteWins", "mergeById": {"pauses": "start", "meta.items": null}},
        }}))
        .unwrap();
        let (a, b, c) = (
            &s.collections["a"],
            &s.collections["b"],
            &s.collections["c"],
        );
        assert_eq!(
            (a.conflicts, a.fallback_lww),
            (ConflictMode::ServerWins, false)
        );
        assert_eq!(
            (b.conflicts, b.fallback_lww),
            (ConflictMode::FieldMerge, true)
        );
        assert_eq!(b.merge_by_id["pauses"], None);
        assert_eq!(c.merge_by_id["pauses"].as_deref(), Some("start"));
        assert!(c.merge_by_id.contains_key("meta.items"));
        for bad in [
            json!({"conflicts": "nope"}),
            json!({"conflicts": 3}),
            json!({"fallback": "fieldMerge"}),
            json!({"mergeById": "pauses"}),
            json!({"mergeById": [1]}),
            json!({"mergeById": {"p": 1}}),
        ] {
            let err = Schema::from_options(&json!({"collections": {"t": bad}})).unwrap_err();
            assert_eq!(err.code(), "INVALID_SCHEMA", "{err}");
        }
    }

    #[test]
    fn rejects_reserved_names_and_bad_modes() {
        assert!(Schema::from_options(&json!({"collections": {"_outbox": {}}})).is_err());
        assert!(Schema::from_options(&json!({"collections": {"t": {"sync": "x"}}})).is_err());
        assert!(Schema::from_options(&json!({"collections": {"t": {"other": 1}}})).is_err());
        assert_eq!(
            Schema::from_options(&json!({"collections": {}, "maxDocBytes": 0}))
                .unwrap_err()
                .code(),
            "INVALID_OPTIONS"
        );
    }
}

//! The declared shape of a store: its collections and their indexes.

use crate::error::{CoreError, Result};
use crate::json::{type_name, Path};
use serde_json::Value;
use std::collections::BTreeMap;

/// Default per-document size limit (bytes of JSON).
pub const DEFAULT_MAX_DOC_BYTES: usize = 1 << 20;

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
        let mut s = String::from("x");
        for b in self.name().bytes() {
            s.push_str(&format!("{b:02x}"));
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectionSpec {
    pub indexes: Vec<IndexSpec>,
    pub sync: SyncMode,
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
    pub collections: BTreeMap<String, CollectionSpec>,
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
        let mut collections = BTreeMap::new();
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
                if !matches!(k.as_str(), "indexes" | "sync" | "conflicts" | "mergeById") {
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
            collections.insert(name.clone(), CollectionSpec { indexes, sync });
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

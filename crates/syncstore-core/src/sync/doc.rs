//! [`Doc`]: a document the engine holds or hands out, as the JSON text it
//! came as or as the fields the engine made (issue 13, part 4).

use std::borrow::Cow;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::protocol::{DocText, JsonObject};

/// A document as the engine got it: the JSON text of a frame, a pull page
/// or a stored record ([`Doc::Text`]), parsed only when a replay, a merge
/// or an index key needs its fields; or the fields the engine made (a
/// replayed view, a conflict's remote document: [`Doc::Fields`]), written
/// as text only if stored. Equal when the documents are equal, whatever
/// their form. Read (deserialized) as text.
#[derive(Clone)]
pub enum Doc {
    /// JSON text of an object.
    Text(DocText),
    /// The fields.
    Fields(JsonObject),
}

impl Doc {
    /// The fields (parsed if held as text).
    pub fn fields(&self) -> Cow<'_, JsonObject> {
        match self {
            Doc::Text(t) => Cow::Owned(t.parse()),
            Doc::Fields(f) => Cow::Borrowed(f),
        }
    }

    /// The fields, owned.
    pub fn into_fields(self) -> JsonObject {
        match self {
            Doc::Text(t) => t.parse(),
            Doc::Fields(f) => f,
        }
    }

    /// The JSON text (written if held as fields).
    pub fn text(&self) -> Cow<'_, str> {
        match self {
            Doc::Text(t) => Cow::Borrowed(t.as_str()),
            Doc::Fields(f) => Cow::Owned(serde_json::to_string(f).expect("JSON objects serialize")),
        }
    }
}

impl From<JsonObject> for Doc {
    fn from(fields: JsonObject) -> Self {
        Doc::Fields(fields)
    }
}

impl From<DocText> for Doc {
    fn from(text: DocText) -> Self {
        Doc::Text(text)
    }
}

impl PartialEq for Doc {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Doc::Text(a), Doc::Text(b)) => a == b,
            (Doc::Fields(a), Doc::Fields(b)) => a == b,
            _ => self.fields() == other.fields(),
        }
    }
}

impl std::fmt::Debug for Doc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Doc::Text(t) => t.fmt(f),
            Doc::Fields(d) => d.fmt(f),
        }
    }
}

impl Serialize for Doc {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Doc::Text(t) => t.serialize(s),
            Doc::Fields(f) => f.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Doc {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        DocText::deserialize(d).map(Doc::Text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: serde_json::Value) -> JsonObject {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn text_and_fields_of_one_document_are_equal() {
        let fields = obj(json!({"id": "a", "n": 1, "t": ["x"]}));
        let text: Doc = serde_json::from_str(r#"{ "id":"a","n":1, "t":["x"] }"#).unwrap();
        assert!(matches!(text, Doc::Text(_)));
        assert_eq!(text, Doc::from(fields.clone()));
        assert_eq!(text.fields().into_owned(), fields);
        assert_ne!(text, Doc::from(obj(json!({"id": "a", "n": 2, "t": ["x"]}))));
        // Written as it came.
        assert_eq!(
            serde_json::to_string(&text).unwrap(),
            r#"{ "id":"a","n":1, "t":["x"] }"#
        );
        assert_eq!(Doc::from(fields).text(), r#"{"id":"a","n":1,"t":["x"]}"#);
    }

    #[test]
    fn only_an_object_reads_as_a_document() {
        for bad in ["[1]", "1", "\"x\"", "null", "{", "{\"a\":}"] {
            assert!(serde_json::from_str::<Doc>(bad).is_err(), "{bad}");
        }
        assert!(DocText::from_text("[]".into()).is_err());
        assert!(DocText::from_text("{\"a\":1}".into()).is_ok());
    }
}

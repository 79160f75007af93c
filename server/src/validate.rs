//! The one request validator, shared by HTTP and WebSocket: bodies and
//! frames must be JSON objects, clientIds and request ids are short strings
//! without control characters (they reach logs), numbers fit what the store
//! keeps, pushes respect the mutation limit. Per-mutation rules (ids,
//! collections, op shapes, sizes) are the push rules of the core
//! (`syncstore_core::sync::apply`), answered per mutation.

use serde::de::DeserializeOwned;
use syncstore_core::protocol::{ClientMessage, DocText, PushRequest, MAX_ID_LEN};

use crate::config::Limits;
use crate::error::AppError;

/// Deserializes JSON, naming the offending field on a type error.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AppError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if !inner.is_data() {
            return AppError::InvalidJson(format!("malformed JSON: {inner}"));
        }
        let msg = inner.to_string();
        // serde reports a missing field at its parent; name the field itself.
        let missing = msg
            .strip_prefix("missing field `")
            .and_then(|r| r.split('`').next());
        let field = match (path.as_str(), missing) {
            (".", Some(f)) => f.to_string(),
            (p, Some(f)) => format!("{p}.{f}"),
            (".", None) => "(root)".to_string(),
            (p, None) => p.to_string(),
        };
        AppError::field(field, msg)
    })?;
    de.end()
        .map_err(|e| AppError::InvalidJson(format!("malformed JSON: {e}")))?;
    Ok(value)
}

/// A body or frame must be a JSON object (serde would also read a struct
/// from an array).
pub fn parse_object<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AppError> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => parse_json(bytes),
        Some(_) => {
            // Malformed JSON is reported as such; valid JSON that is not an
            // object is a type error at the root.
            serde_json::from_slice::<serde::de::IgnoredAny>(bytes)
                .map_err(|e| AppError::InvalidJson(format!("malformed JSON: {e}")))?;
            Err(AppError::field("(root)", "must be a JSON object"))
        }
        None => Err(AppError::InvalidJson(
            "malformed JSON: empty body".to_string(),
        )),
    }
}

/// A short id that reaches logs: non-empty, at most 256 bytes, no control
/// characters.
pub fn short_id(field: &str, id: &str) -> Result<(), AppError> {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(AppError::field(
            field,
            "must be a non-empty string of at most 256 bytes",
        ));
    }
    if id.chars().any(char::is_control) {
        return Err(AppError::field(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

/// Checks a parsed push against the limits and the numeric ranges the store keeps.
pub fn push(req: &PushRequest, limits: &Limits) -> Result<(), AppError> {
    short_id("clientId", &req.client_id)?;
    let max = limits.max_mutations_per_push;
    if req.mutations.len() > max {
        return Err(AppError::TooManyMutations(max));
    }
    const MAX: u64 = i64::MAX as u64;
    for (i, m) in req.mutations.iter().enumerate() {
        if m.mid == 0 || m.mid > MAX {
            return Err(AppError::field(
                format!("mutations[{i}].mid"),
                "must be between 1 and 2^63-1",
            ));
        }
        if m.ts.is_some_and(|t| t > MAX) {
            return Err(AppError::field(
                format!("mutations[{i}].ts"),
                "must be at most 2^63-1",
            ));
        }
        if m.base.is_some_and(|t| t > MAX) {
            return Err(AppError::field(
                format!("mutations[{i}].base"),
                "must be at most 2^63-1",
            ));
        }
        body(i, "doc", m.doc.as_ref())?;
        body(i, "patch", m.patch.as_ref())?;
    }
    Ok(())
}

/// A document or patch arrives as text, checked as JSON syntax only
/// (`DocText`); what only a parse finds (nesting deeper than serde_json
/// reads, a number no float holds) is refused here as the parse of the
/// whole body refused it before, not left to the apply.
fn body(i: usize, field: &str, text: Option<&DocText>) -> Result<(), AppError> {
    let Err(e) = text.map_or(Ok(()), |t| t.try_parse().map(drop)) else {
        return Ok(());
    };
    Err(if e.is_data() {
        AppError::field(format!("mutations[{i}].{field}"), e.to_string())
    } else {
        AppError::InvalidJson(format!("malformed JSON: mutations[{i}].{field}: {e}"))
    })
}

/// A `POST /v1/push` body: an object, parsed and checked.
pub fn decode_push(bytes: &[u8], limits: &Limits) -> Result<PushRequest, AppError> {
    let req: PushRequest = parse_object(bytes)?;
    push(&req, limits)?;
    Ok(req)
}

/// A WebSocket text frame: an object, parsed, its ids checked. A push
/// frame's mutations are checked by [`push`] once its clientId is known.
pub fn decode_frame(text: &str) -> Result<ClientMessage, AppError> {
    let msg: ClientMessage = parse_object(text.as_bytes())?;
    match &msg {
        ClientMessage::Hello {
            client_id, cursor, ..
        } => {
            short_id("clientId", client_id)?;
            if let Some(c) = cursor {
                if c.len() > MAX_ID_LEN {
                    return Err(AppError::field("cursor", "must be at most 256 bytes"));
                }
            }
        }
        ClientMessage::Push { client_id, rid, .. } => {
            if let Some(c) = client_id {
                short_id("clientId", c)?;
            }
            if let Some(r) = rid {
                short_id("rid", r)?;
            }
        }
        ClientMessage::Ping | ClientMessage::Pong => {}
    }
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_must_be_objects() {
        let l = Limits::default();
        for (body, code) in [
            (r#"[{"clientId": "c"}, []]"#, "INVALID_FIELD"),
            (r#""x""#, "INVALID_FIELD"),
            ("", "INVALID_JSON"),
            ("[", "INVALID_JSON"),
            (r#"{"clientId": "a\nb", "mutations": []}"#, "INVALID_FIELD"),
        ] {
            let e = decode_push(body.as_bytes(), &l).unwrap_err();
            assert_eq!(e.code(), code, "{body}");
        }
        assert!(decode_push(br#" {"clientId": "c", "mutations": []}"#, &l).is_ok());
        for frame in [
            r#"{"type": "hello", "clientId": "a\nforged log line"}"#,
            r#"{"type": "hello", "clientId": ""}"#,
            r#"{"type": "push", "clientId": "\u0000", "mutations": []}"#,
            r#"{"type": "push", "rid": "\r", "mutations": []}"#,
            r#"["hello"]"#,
        ] {
            assert!(decode_frame(frame).is_err(), "{frame}");
        }
    }
}

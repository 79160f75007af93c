//! The `sync` options of `SyncStore.open`, checked.

use crate::error::JsResult;
use crate::glue;
use js_sys::Function;
use serde_json::Value;
use wasm_bindgen::prelude::*;

/// `sync` of the open options.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncOptions {
    pub url: String,
    /// The static token; with `get_token`, the one to start with.
    pub token: Option<String>,
    /// `getToken`: asked for a token at start (unless `token` is given)
    /// and whenever the server refuses the one in use (401, close 4401).
    pub get_token: Option<Function>,
    pub websocket: bool,
    pub poll_ms: f64,
    /// Quiet time before the socket is pinged; twice it without a frame
    /// and the socket is dead.
    pub keep_alive_ms: f64,
}

fn invalid(msg: &str) -> JsValue {
    glue::make_error("INVALID_OPTIONS", msg, false)
}

impl SyncOptions {
    /// `options.sync`: `{ url, token?, getToken?, websocket = true,
    /// pollMs = 5000, keepAliveMs = 15000 }`, at least one of `token` and
    /// `getToken`; `getToken` stands as `true` in `opts` (glue.js
    /// `takeResolvers` took it out).
    pub fn parse(opts: &Value, get_token: Option<Function>) -> JsResult<Option<SyncOptions>> {
        let sync = match opts.get("sync") {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Object(o)) => o,
            Some(_) => return Err(invalid("options.sync must be an object")),
        };
        for k in sync.keys() {
            if !matches!(
                k.as_str(),
                "url" | "token" | "getToken" | "websocket" | "pollMs" | "keepAliveMs"
            ) {
                return Err(invalid(&format!(
                    "options.sync: unknown field {k:?} (known: url token getToken websocket pollMs keepAliveMs)"
                )));
            }
        }
        let url = match sync.get("url") {
            Some(Value::String(u)) if u.starts_with("http://") || u.starts_with("https://") => {
                u.trim_end_matches('/').to_owned()
            }
            _ => {
                return Err(invalid(
                    "options.sync.url must be the sync server's http:// or https:// URL",
                ))
            }
        };
        let get_token = match (sync.get("getToken"), get_token) {
            (None, _) => None,
            (Some(Value::Bool(true)), Some(f)) => Some(f),
            _ => {
                return Err(invalid(
                    "options.sync.getToken must be a function returning a promise of a token",
                ))
            }
        };
        let token =
            match sync.get("token") {
                Some(Value::String(t)) if !t.is_empty() => Some(t.clone()),
                None if get_token.is_some() => None,
                _ => return Err(invalid(
                    "options.sync.token must be a non-empty string (or give options.sync.getToken)",
                )),
            };
        let websocket = match sync.get("websocket") {
            None => true,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(invalid("options.sync.websocket must be a boolean")),
        };
        let poll_ms = match sync.get("pollMs") {
            None => 5000.0,
            Some(Value::Number(n))
                if n.as_f64()
                    .is_some_and(|v| (50.0..=86_400_000.0).contains(&v)) =>
            {
                n.as_f64().unwrap_or(5000.0)
            }
            Some(_) => {
                return Err(invalid(
                    "options.sync.pollMs must be a number of milliseconds from 50 to 86400000",
                ))
            }
        };
        let keep_alive_ms =
            match sync.get("keepAliveMs") {
                None => 15_000.0,
                Some(Value::Number(n))
                    if n.as_f64()
                        .is_some_and(|v| (100.0..=3_600_000.0).contains(&v)) =>
                {
                    n.as_f64().unwrap_or(15_000.0)
                }
                Some(_) => return Err(invalid(
                    "options.sync.keepAliveMs must be a number of milliseconds from 100 to 3600000",
                )),
            };
        Ok(Some(SyncOptions {
            url,
            token,
            get_token,
            websocket,
            poll_ms,
            keep_alive_ms,
        }))
    }
}

//! The HTTP surface: routes, auth, request parsing and validation.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use syncstore_core::protocol::{PullResponse, PushRequest, PushResponse, MAX_ID_LEN};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::error::AppError;
use crate::state::AppState;

/// Header naming the calling client on pull.
pub const CLIENT_ID_HEADER: &str = "x-client-id";

/// Builds the router over `state`.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/push", post(push))
        .route("/v1/pull", get(pull))
        .route("/v1/ws", get(crate::ws::upgrade))
        .fallback(|| async { AppError::NotFound })
        .method_not_allowed_fallback(|| async { AppError::MethodNotAllowed })
        .layer(cors(&state.config.cors_origins))
        .with_state(state)
}

fn cors(origins: &[String]) -> CorsLayer {
    let allow = if origins.is_empty() {
        AllowOrigin::any()
    } else {
        let list: Vec<HeaderValue> = origins
            .iter()
            .filter_map(|o| match HeaderValue::from_str(o) {
                Ok(v) => Some(v),
                Err(_) => {
                    tracing::warn!(origin = %o, "ignoring invalid CORS origin");
                    None
                }
            })
            .collect();
        AllowOrigin::list(list)
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static(CLIENT_ID_HEADER),
        ])
        .expose_headers([header::RETRY_AFTER])
        .max_age(std::time::Duration::from_secs(600))
}

/// The token of an `Authorization: Bearer TOKEN` header, if any.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The namespace granted by the request's bearer token.
pub struct Namespace(pub String);

impl FromRequestParts<AppState> for Namespace {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        bearer_token(&parts.headers)
            .and_then(|t| state.namespace_for(t))
            .map(Namespace)
            .ok_or(AppError::Unauthorized)
    }
}

async fn healthz(State(state): State<AppState>) -> Result<Json<Value>, AppError> {
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || store.health()).await??;
    Ok(Json(json!({ "ok": true, "protocol": 1 })))
}

/// Reads a body of at most `max` bytes, within the body deadline.
pub async fn read_body(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    max: usize,
) -> Result<Vec<u8>, AppError> {
    let deadline = state.config.limits.body_timeout;
    tokio::time::timeout(deadline, read_body_inner(headers, body, max))
        .await
        .map_err(|_| AppError::RequestTimeout(deadline.as_millis() as u64))?
}

async fn read_body_inner(headers: &HeaderMap, body: Body, max: usize) -> Result<Vec<u8>, AppError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(AppError::PayloadTooLarge(max));
    }
    match axum::body::to_bytes(body, max).await {
        Ok(b) => Ok(b.to_vec()),
        Err(e) => {
            let inner = e.into_inner();
            if inner
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                Err(AppError::PayloadTooLarge(max))
            } else {
                Err(AppError::InvalidJson(format!(
                    "could not read body: {inner}"
                )))
            }
        }
    }
}

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

fn check_client_id(field: &str, id: &str) -> Result<(), AppError> {
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
pub fn validate_push(req: &PushRequest, state: &AppState) -> Result<(), AppError> {
    check_client_id("clientId", &req.client_id)?;
    let max = state.config.limits.max_mutations_per_push;
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
    }
    Ok(())
}

/// Takes one push token for the client, or answers 429.
pub fn rate_check(state: &AppState, ns: &str, client: &str) -> Result<(), AppError> {
    state
        .rate
        .check(ns, client)
        .map_err(|wait| AppError::RateLimited(wait.as_secs_f64().ceil().max(1.0) as u64))
}

async fn push(
    State(state): State<AppState>,
    Namespace(ns): Namespace,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<PushResponse>, AppError> {
    let bytes = read_body(&state, &headers, body, state.config.limits.max_body_bytes).await?;
    let req: PushRequest = parse_json(&bytes)?;
    validate_push(&req, &state)?;
    rate_check(&state, &ns, &req.client_id)?;
    tracing::debug!(namespace = %ns, client = %req.client_id, n = req.mutations.len(), "push");
    Ok(Json(state.push(ns, req).await?))
}

async fn pull(
    State(state): State<AppState>,
    Namespace(ns): Namespace,
    headers: HeaderMap,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<PullResponse>, AppError> {
    let Query(q) = query.map_err(|e| AppError::field("(query)", e.body_text()))?;
    let limits = &state.config.limits;
    let limit = match q.get("limit") {
        None => limits.default_pull_limit,
        Some(s) => match s.parse::<usize>() {
            Ok(n) if n >= 1 && n <= limits.max_pull_limit => n,
            _ => {
                return Err(AppError::field(
                    "limit",
                    format!("must be an integer from 1 to {}", limits.max_pull_limit),
                ))
            }
        },
    };
    let client = match headers.get(CLIENT_ID_HEADER) {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| AppError::field("X-Client-Id", "must be visible ASCII"))?
                .to_string(),
        ),
        None => q.get("clientId").cloned(),
    };
    if let Some(c) = &client {
        check_client_id("X-Client-Id", c)?;
    }
    let cursor = q.get("cursor").cloned();
    let store = state.store.clone();
    let resp = tokio::task::spawn_blocking(move || {
        store.pull(&ns, client.as_deref(), cursor.as_deref(), limit)
    })
    .await??;
    Ok(Json(resp))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    use super::*;
    use crate::config::Config;
    use crate::store::SqliteStore;

    fn router() -> Router {
        let mut config = Config::default();
        config.tokens.insert("t".into(), "ns".into());
        let store = SqliteStore::open(":memory:").unwrap();
        app(AppState::new(Arc::new(store), config))
    }

    async fn call(req: Request<Body>) -> (StatusCode, Value) {
        let resp = router().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn errors_are_json_with_stable_codes() {
        let (st, b) = call(Request::get("/nope").body(Body::empty()).unwrap()).await;
        assert_eq!(
            (st, b["error"]["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("NOT_FOUND"))
        );
        let (st, b) = call(Request::post("/v1/push").body(Body::from("{}")).unwrap()).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED);
        assert_eq!(b["error"]["code"], "UNAUTHORIZED");
        let req = Request::post("/v1/push")
            .header("authorization", "Bearer t")
            .body(Body::from(
                r#"{"clientId": "c", "mutations": [{"mid": 1}]}"#,
            ))
            .unwrap();
        let (st, b) = call(req).await;
        assert_eq!(st, StatusCode::BAD_REQUEST);
        assert_eq!(b["error"]["field"], "mutations[0].coll");
    }

    #[tokio::test]
    async fn healthz_and_push() {
        let (st, b) = call(Request::get("/healthz").body(Body::empty()).unwrap()).await;
        assert_eq!((st, b["ok"].as_bool()), (StatusCode::OK, Some(true)));
        let req = Request::post("/v1/push")
            .header("authorization", "Bearer t")
            .body(Body::from(
                r#"{"clientId": "c", "mutations": [{"mid": 1, "coll": "x", "op": "insert", "id": "a", "doc": {}}]}"#,
            ))
            .unwrap();
        let (st, b) = call(req).await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(b["results"][0]["status"], "applied");
    }

    #[test]
    fn bearer_parsing() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer_token(&h), None);
        h.insert(header::AUTHORIZATION, "BEARER abc ".parse().unwrap());
        assert_eq!(bearer_token(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer_token(&h), None);
    }
}

//! The HTTP surface: the router (HTTP routes and the `/v1/ws` upgrade) and
//! the HTTP handlers. Authentication and rate checks shared with the
//! WebSocket live in [`crate::request`], so `ws` never imports `http`.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use syncstore_core::protocol::{PullResponse, PushResponse};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::error::AppError;
use crate::request::{bearer_token, rate_check};
use crate::state::{AppState, Auth};
use crate::store::PullClient;
use crate::validate;

/// Header naming the calling client on pull.
pub const CLIENT_ID_HEADER: &str = "x-client-id";

/// Builds the router over `state`.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/v1/config", get(server_config))
        .route("/v1/push", post(push))
        .route("/v1/pull", get(pull))
        .route("/v1/ws", get(crate::ws::upgrade))
        .fallback(|| async { AppError::NotFound })
        .method_not_allowed_fallback(|| async { AppError::MethodNotAllowed })
        .layer(cors(&state.config.cors_origins))
        .layer(access_log())
        .with_state(state)
}

type AccessLog = tower_http::trace::TraceLayer<
    tower_http::classify::SharedClassifier<tower_http::classify::ServerErrorsAsFailures>,
    fn(&axum::http::Request<Body>) -> tracing::Span,
>;

/// Request logs (target `tower_http::trace`): one span per request with
/// the method and the URI, its `token` query value replaced by
/// `[redacted]`; headers (Authorization) are never recorded. The response
/// line (status, latency) is logged at INFO.
fn access_log() -> AccessLog {
    fn span(req: &axum::http::Request<Body>) -> tracing::Span {
        tracing::info_span!(
            "request",
            method = %req.method(),
            uri = %redact_uri(req.uri()),
        )
    }
    tower_http::trace::TraceLayer::new_for_http()
        .make_span_with(span as fn(&axum::http::Request<Body>) -> tracing::Span)
        .on_response(tower_http::trace::DefaultOnResponse::new().level(tracing::Level::INFO))
}

/// The path and query of `uri`, with the value of every `token` parameter
/// replaced by `[redacted]` (and of every percent-encoded key, which the
/// query parser would decode, e.g. `%74oken`).
pub fn redact_uri(uri: &axum::http::Uri) -> String {
    let Some(query) = uri.query() else {
        return uri.path().to_string();
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("token") || k.contains('%') => {
                format!("{k}=[redacted]")
            }
            _ => pair.to_string(),
        })
        .collect();
    format!("{}?{}", uri.path(), query.join("&"))
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

/// Liveness: the process serves requests. Touches nothing shared.
async fn healthz() -> Json<Value> {
    Json(json!({ "ok": true, "protocol": 1 }))
}

/// Readiness: not shutting down, room for pushes, and the database answers
/// (checked without waiting on its lock: busy committing counts as ready).
async fn readyz(State(state): State<AppState>) -> Response {
    let why = if state.is_shutting_down() {
        Some("shutting down")
    } else if !state.has_push_room() {
        Some("pending-push budget spent")
    } else if let Err(e) = state.store.try_health() {
        tracing::error!(detail = %e, "readiness: database check failed");
        Some("database check failed")
    } else {
        None
    };
    match why {
        None => Json(json!({ "ok": true, "protocol": 1 })).into_response(),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "ok": false, "protocol": 1, "reason": why })),
        )
            .into_response(),
    }
}

/// `GET /v1/config` (no auth: limits are no secret, and a client may want
/// them before it has a token): the protocol version and the limits.
async fn server_config(State(state): State<AppState>) -> Json<Value> {
    Json(json!({
        "protocol": syncstore_core::protocol::PROTOCOL_VERSION,
        "limits": state.config.limits.advertised(),
    }))
}

/// `GET /metrics`: Prometheus text format (see [`crate::metrics`]). No
/// auth unless `--metrics-token` is set.
async fn metrics_text(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(want) = &state.config.metrics_token {
        let given = bearer_token(&headers).unwrap_or("");
        // Compared by hash: no early exit on the first differing byte.
        if crate::auth::owner_id(given) != crate::auth::owner_id(want) {
            return AppError::Unauthorized.into_response();
        }
    }
    let Some(handle) = crate::metrics::handle() else {
        return AppError::Internal("no metrics recorder".into()).into_response();
    };
    metrics::gauge!(crate::metrics::CONNECTIONS).set(state.slots.len() as f64);
    metrics::gauge!(crate::metrics::PENDING_PUSHES).set(state.pending_pushes() as f64);
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        handle.render(),
    )
        .into_response()
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

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

async fn push(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<PushResponse>, AppError> {
    let limits = &state.config.limits;
    let max = limits.max_body_bytes;
    let declared = declared_length(&headers);
    if declared.is_some_and(|n| n > max as u64) {
        return Err(AppError::PayloadTooLarge(max));
    }
    let budget = match admit_push(&state, &auth, declared) {
        Ok(budget) => budget,
        Err(e) => {
            // Refused before the body is read: read it away (within the
            // body bounds) so the client, still sending, gets the answer
            // instead of a reset connection.
            drain_body(&state, body, max).await;
            return Err(e);
        }
    };
    let bytes = read_body(&state, &headers, body, max).await?;
    if state.is_shutting_down() {
        // The body finished arriving after the signal: nothing is queued
        // any more (what is queued commits and is answered).
        return Err(AppError::ShuttingDown);
    }
    let req = validate::decode_push(&bytes, limits)?;
    rate_check(&state, &auth, Some(&req.client_id))?;
    tracing::debug!(namespace = %auth.namespace, client = %req.client_id, n = req.mutations.len(), "push");
    let resp = state.push(&auth, req, bytes.len(), Some(budget)).await?;
    crate::metrics::push_answered(state.ns_labels.label(&auth.namespace), "http", &resp);
    Ok(Json(resp))
}

/// The checks a push passes before its body is read: the token may push,
/// the server is not shutting down, its rate, and a place in the pending-push budget (the body counts
/// against it from before it is read until the push is answered; a
/// chunked body counts as the limit).
fn admit_push(
    state: &AppState,
    auth: &Auth,
    declared: Option<u64>,
) -> Result<crate::state::PushBudget, AppError> {
    if auth.read_only {
        return Err(AppError::Forbidden);
    }
    if state.is_shutting_down() {
        return Err(AppError::ShuttingDown);
    }
    rate_check(state, auth, None)?;
    let max = state.config.limits.max_body_bytes;
    state.reserve_push(declared.map_or(max, |n| n as usize))
}

/// Reads and discards a request body of at most `max` bytes, within the
/// body deadline; nothing is kept. A larger or slower body is left (the
/// connection then closes after the answer).
async fn drain_body(state: &AppState, body: Body, max: usize) {
    use http_body_util::BodyExt;
    let drain = async {
        let mut body = body;
        let mut seen = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, |d| d.len());
            if seen > max {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(state.config.limits.body_timeout, drain).await;
}

async fn pull(
    State(state): State<AppState>,
    auth: Auth,
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
        validate::short_id("X-Client-Id", c)?;
    }
    let cursor = q.get("cursor").cloned();
    metrics::counter!(crate::metrics::PULLS, "namespace" => state.ns_labels.label(&auth.namespace))
        .increment(1);
    let store = state.store.clone();
    let (ns, owner, max_bytes) = (auth.namespace, auth.owner, limits.max_page_bytes);
    let resp = tokio::task::spawn_blocking(move || {
        let client = client.as_deref().map(|id| PullClient {
            id,
            owner: Some(&owner),
        });
        store.pull_page(&ns, client, cursor.as_deref(), limit, max_bytes)
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
    fn token_query_values_are_redacted() {
        for (uri, want) in [
            ("/v1/ws", "/v1/ws"),
            ("/v1/ws?token=s3cret", "/v1/ws?token=[redacted]"),
            (
                "/v1/pull?cursor=0&TOKEN=s3cret&limit=5",
                "/v1/pull?cursor=0&TOKEN=[redacted]&limit=5",
            ),
            ("/v1/pull?tokens=x", "/v1/pull?tokens=x"),
            ("/v1/ws?%74oken=s3cret", "/v1/ws?%74oken=[redacted]"),
        ] {
            assert_eq!(redact_uri(&uri.parse().unwrap()), want);
        }
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

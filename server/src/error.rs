//! The one error type of the HTTP layer: a status, a stable code and a message,
//! rendered as `{"error": {"code", "message", "field"?}}`. Internals are logged,
//! never sent.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use syncstore_core::protocol::{ErrorBody, ErrorResponse};

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// No bearer token, or one that maps to no namespace.
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// The body is not JSON.
    #[error("{0}")]
    InvalidJson(String),
    /// A field is missing, of the wrong type or out of range.
    #[error("{field}: {message}")]
    InvalidField {
        /// Path of the field, e.g. `mutations[0].mid`.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// The request body exceeds the limit.
    #[error("request body larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// A push carries more mutations than allowed.
    #[error("a push may carry at most {0} mutations")]
    TooManyMutations(usize),
    /// Too many pushes from this client; retry after the given seconds.
    #[error("too many pushes; retry after {0} s")]
    RateLimited(u64),
    /// The namespace already has the maximum number of WebSocket connections.
    #[error("too many connections for this namespace (max {0})")]
    TooManyConnections(usize),
    /// `/v1/ws` without a WebSocket upgrade.
    #[error("this endpoint requires a WebSocket upgrade")]
    NotWebSocket,
    /// No such route.
    #[error("no such endpoint")]
    NotFound,
    /// Route exists, method does not.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The request body did not arrive within the deadline (ms).
    #[error("request body not received within {0} ms")]
    RequestTimeout(u64),
    /// The token may only read (pull, WebSocket); it pushed.
    #[error("this token is read-only: it may pull and listen, not push")]
    Forbidden,
    /// The clientId belongs to another token of the namespace.
    #[error("this clientId is used by another token of the namespace; pick a new one")]
    ClientIdTaken,
    /// Too many pushes pending; retry after the given seconds.
    #[error("the server is busy; retry after {0} s")]
    Overloaded(u64),
    /// The server is shutting down: a push that arrives (or finishes
    /// arriving) after the signal is not taken; retry after 1 s (another
    /// instance, or this one restarted).
    #[error("server is shutting down")]
    ShuttingDown,
    /// A bug or a storage failure; the detail is logged only.
    #[error("internal error")]
    Internal(String),
}

impl AppError {
    /// Shorthand for [`AppError::InvalidField`].
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        AppError::InvalidField {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::Unauthorized => StatusCode::UNAUTHORIZED,
            AppError::InvalidJson(_) | AppError::InvalidField { .. } | AppError::NotWebSocket => {
                StatusCode::BAD_REQUEST
            }
            AppError::PayloadTooLarge(_) | AppError::TooManyMutations(_) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            AppError::RateLimited(_) | AppError::TooManyConnections(_) => {
                StatusCode::TOO_MANY_REQUESTS
            }
            AppError::NotFound => StatusCode::NOT_FOUND,
            AppError::ClientIdTaken | AppError::Forbidden => StatusCode::FORBIDDEN,
            AppError::Overloaded(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            AppError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            AppError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Seconds to wait before retrying, for the errors that have one.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            AppError::RateLimited(s) | AppError::Overloaded(s) => Some(*s),
            AppError::ShuttingDown => Some(1),
            _ => None,
        }
    }

    /// The stable code clients match on.
    pub fn code(&self) -> &'static str {
        match self {
            AppError::Unauthorized => "UNAUTHORIZED",
            AppError::InvalidJson(_) => "INVALID_JSON",
            AppError::InvalidField { .. } => "INVALID_FIELD",
            AppError::PayloadTooLarge(_) => "PAYLOAD_TOO_LARGE",
            AppError::TooManyMutations(_) => "TOO_MANY_MUTATIONS",
            AppError::RateLimited(_) => "RATE_LIMITED",
            AppError::TooManyConnections(_) => "TOO_MANY_CONNECTIONS",
            AppError::NotWebSocket => "NOT_WEBSOCKET",
            AppError::NotFound => "NOT_FOUND",
            AppError::ClientIdTaken => "CLIENT_ID_TAKEN",
            AppError::Forbidden => "FORBIDDEN",
            AppError::Overloaded(_) => "OVERLOADED",
            AppError::RequestTimeout(_) => "REQUEST_TIMEOUT",
            AppError::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            AppError::ShuttingDown => "SHUTTING_DOWN",
            AppError::Internal(_) => "INTERNAL",
        }
    }

    /// The JSON body.
    pub fn body(&self) -> ErrorResponse {
        ErrorResponse {
            error: ErrorBody {
                code: self.code().to_string(),
                message: self.to_string(),
                field: match self {
                    AppError::InvalidField { field, .. } => Some(field.clone()),
                    _ => None,
                },
            },
        }
    }
}

impl From<crate::store::StoreError> for AppError {
    fn from(e: crate::store::StoreError) -> Self {
        match e {
            crate::store::StoreError::ClientIdTaken => AppError::ClientIdTaken,
            e => AppError::Internal(e.to_string()),
        }
    }
}

impl From<tokio::task::JoinError> for AppError {
    fn from(e: tokio::task::JoinError) -> Self {
        AppError::Internal(format!("task failed: {e}"))
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        if let AppError::Internal(detail) = &self {
            tracing::error!(%detail, "internal error");
        }
        crate::metrics::error(self.code());
        let mut resp = (self.status(), Json(self.body())).into_response();
        if let Some(secs) = self.retry_after() {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

/// The answer to a handler that panicked (a bug): logged, `500 INTERNAL`.
pub fn panic_response(payload: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(non-string payload)".into());
    AppError::Internal(format!("handler panicked: {detail}")).into_response()
}

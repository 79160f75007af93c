//! What every request goes through, over HTTP and the WebSocket alike:
//! the bearer token and its [`Auth`], and the rate checks. Both `http` and
//! `ws` use it; neither imports the other for it.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};

use crate::error::AppError;
use crate::state::{AppState, Auth};

/// The token of an `Authorization: Bearer TOKEN` header, if any.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        bearer_token(&parts.headers)
            .and_then(|t| state.auth_for(t))
            .ok_or(AppError::Unauthorized)
    }
}

/// Takes one push from the token's rate limit, then (once the clientId is
/// known) from the client's; or answers 429.
pub fn rate_check(state: &AppState, auth: &Auth, client: Option<&str>) -> Result<(), AppError> {
    let r = match client {
        None => state.rate.check_token(&auth.owner),
        Some(c) => state.rate.check_client(&auth.owner, c),
    };
    r.map_err(|wait| AppError::RateLimited(wait.as_secs_f64().ceil().clamp(1.0, 86_400.0) as u64))
}

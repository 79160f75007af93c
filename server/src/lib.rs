//! The reference sync server of syncstore (protocol v1, see docs/protocol.md).
//!
//! - [`auth`]: static tokens and JWTs (keys pinned to one algorithm, reloadable)
//! - [`http`]: the router and HTTP handlers (`POST /v1/push`, `GET /v1/pull`, `/healthz`)
//! - [`request`]: the bearer token, its [`state::Auth`], rate checks (HTTP and WebSocket)
//! - [`metrics`]: Prometheus metrics (`GET /metrics`), bounded labels
//! - [`ws`]: `/v1/ws` sessions (catch-up, live changes, pushes, keep-alive)
//! - [`state`]: shared state and the one push path (commit, then publish)
//! - [`store`]: the `Store` trait, conflict rules, the SQLite implementation
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use std::sync::Arc;
//! use syncstore_server::{config::Config, serve, state::AppState, store::SqliteStore};
//! let store = SqliteStore::open(":memory:").expect("open store");
//! let mut config = Config::default();
//! config.tokens.insert("dev-token".into(), "dev".into());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! serve(listener, AppState::new(Arc::new(store), config), std::future::pending()).await
//! # }
//! ```

pub mod auth;
pub mod config;
pub mod error;
pub mod http;
pub mod listen;
pub mod metrics;
pub mod request;
pub mod state;
pub mod store;
pub mod validate;
pub mod ws;

use std::future::Future;

use axum::Router;

pub use http::app;

/// Serves `state` on `listener` until `shutdown` resolves; then stops
/// accepting, closes WebSockets, and waits for in-flight requests (pushes)
/// up to the shutdown deadline (see [`listen`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: state::AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_router(listener, state.clone(), app(state), shutdown).await
}

/// [`serve`] with a router of the caller's (tests add routes to [`app`]).
/// A handler that panics answers `500 INTERNAL`; the server keeps serving.
pub async fn serve_router(
    listener: tokio::net::TcpListener,
    state: state::AppState,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = router.layer(tower_http::catch_panic::CatchPanicLayer::custom(
        error::panic_response,
    ));
    listen::run(listener, state, router, shutdown).await
}

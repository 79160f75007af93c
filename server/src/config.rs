//! Command line and runtime configuration.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;

use crate::auth::{AuthConfig, Jwt, JwtRules, TokenGrant};

/// The token the `--dev` flag enables, for demos only.
pub const DEV_TOKEN: &str = "dev-token";
/// The namespace of [`DEV_TOKEN`].
pub const DEV_NAMESPACE: &str = "dev";

/// syncstore reference sync server (protocol v1: push, pull, WebSocket).
#[derive(Debug, Clone, Parser)]
#[command(name = "syncstore-server", version, about)]
pub struct Cli {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8787", env = "SYNCSTORE_LISTEN")]
    pub listen: SocketAddr,
    /// The store: a SQLite database file (created if missing; `:memory:`
    /// keeps nothing), or a PostgreSQL URL (`postgres://user:pass@host/db`),
    /// which many server nodes can share (docs/deploy.md).
    #[arg(long, default_value = "syncstore.db", env = "SYNCSTORE_DB")]
    pub db: String,
    /// Mutation results and temporary-id mappings kept per client: those of
    /// its last this-many mutation ids (a resent older mid answers
    /// STALE_MUTATION_ID).
    #[arg(long, default_value_t = 10_000, env = "SYNCSTORE_RESULTS_PER_CLIENT")]
    pub results_per_client: u64,
    /// Tombstones (deleted documents) older than this are compacted; a
    /// client whose cursor is older than the newest compacted one resyncs.
    #[arg(long, default_value_t = 30 * 86_400, env = "SYNCSTORE_TOMBSTONE_HORIZON_SECS")]
    pub tombstone_horizon_secs: u64,
    /// How often tombstones are compacted, in seconds.
    #[arg(long, default_value_t = 3600, env = "SYNCSTORE_COMPACT_INTERVAL_SECS")]
    pub compact_interval_secs: u64,
    /// A bearer token and the namespace it grants, as TOKEN:NAMESPACE, or
    /// TOKEN:NAMESPACE:ro for read-only. Repeatable (one from the environment).
    #[arg(
        long = "token",
        value_name = "TOKEN:NAMESPACE[:ro]",
        env = "SYNCSTORE_TOKEN",
        hide_env_values = true
    )]
    pub tokens: Vec<String>,
    /// File of tokens: one `TOKEN NAMESPACE [ro]` (or `TOKEN:NAMESPACE[:ro]`)
    /// per line; `#` comments. Read again on SIGHUP.
    #[arg(long, value_name = "PATH", env = "SYNCSTORE_TOKENS_FILE")]
    pub tokens_file: Option<PathBuf>,
    /// Enable the demo token `dev-token` for namespace `dev`. Never in production.
    #[arg(long, env = "SYNCSTORE_DEV")]
    pub dev: bool,
    /// Algorithm of --jwt-key-file: HS256 (the file holds the secret, at
    /// least 32 bytes), RS256 or ES256 (a PEM public key). Tokens signed
    /// with any other algorithm are refused.
    #[arg(long, value_name = "ALG", env = "SYNCSTORE_JWT_ALG")]
    pub jwt_alg: Option<String>,
    /// Key verifying JWTs (see --jwt-alg). Read again on SIGHUP.
    #[arg(long, value_name = "PATH", env = "SYNCSTORE_JWT_KEY_FILE")]
    pub jwt_key_file: Option<PathBuf>,
    /// JWKS file (an identity provider's public keys, picked by `kid`, each
    /// pinned to its `alg`). Read again on SIGHUP.
    #[arg(long, value_name = "PATH", env = "SYNCSTORE_JWKS_FILE")]
    pub jwks_file: Option<PathBuf>,
    /// JWT claim holding the namespace (top-level; may contain dots, e.g.
    /// `https://example.com/ns`).
    #[arg(long, default_value = "ns", env = "SYNCSTORE_JWT_NAMESPACE_CLAIM")]
    pub jwt_namespace_claim: String,
    /// Seconds of clock skew allowed on JWT `exp` and `nbf`.
    #[arg(long, default_value_t = 30, env = "SYNCSTORE_JWT_LEEWAY_S")]
    pub jwt_leeway_s: u64,
    /// Accepted JWT `aud` (repeatable, or comma-separated). Default: not checked.
    #[arg(
        long,
        value_name = "AUD",
        env = "SYNCSTORE_JWT_AUDIENCE",
        value_delimiter = ','
    )]
    pub jwt_audience: Vec<String>,
    /// Accepted JWT `iss` (repeatable, or comma-separated). Default: not checked.
    #[arg(
        long,
        value_name = "ISS",
        env = "SYNCSTORE_JWT_ISSUER",
        value_delimiter = ','
    )]
    pub jwt_issuer: Vec<String>,
    /// If set, a JWT may push only if its `scope`, `scp` or `permissions`
    /// claim contains this value (read-only otherwise). `ro: true` always
    /// makes a JWT read-only.
    #[arg(long, value_name = "SCOPE", env = "SYNCSTORE_JWT_WRITE_SCOPE")]
    pub jwt_write_scope: Option<String>,
    /// Allowed CORS origin (repeatable, or comma-separated). Default: any origin.
    #[arg(
        long = "cors-origin",
        value_name = "ORIGIN",
        env = "SYNCSTORE_CORS_ORIGIN",
        value_delimiter = ','
    )]
    pub cors_origins: Vec<String>,
    /// Largest accepted request body (and WebSocket message), in bytes.
    #[arg(long, default_value_t = 4 * 1024 * 1024, env = "SYNCSTORE_MAX_BODY_BYTES")]
    pub max_body_bytes: usize,
    /// Most mutations in one push.
    #[arg(long, default_value_t = 1000, env = "SYNCSTORE_MAX_MUTATIONS_PER_PUSH")]
    pub max_mutations_per_push: usize,
    /// Largest serialized document or patch, in bytes.
    #[arg(long, default_value_t = 256 * 1024, env = "SYNCSTORE_MAX_DOC_BYTES")]
    pub max_doc_bytes: usize,
    /// Most simultaneous WebSocket connections per namespace.
    #[arg(
        long,
        default_value_t = 256,
        env = "SYNCSTORE_MAX_CONNECTIONS_PER_NAMESPACE"
    )]
    pub max_connections_per_namespace: usize,
    /// Pushes per second per client (HTTP and WebSocket); bursts of this size allowed.
    #[arg(long, default_value_t = 20.0, env = "SYNCSTORE_PUSHES_PER_SECOND")]
    pub pushes_per_second: f64,
    /// Changes per pull page when the client gives no limit.
    #[arg(long, default_value_t = 500, env = "SYNCSTORE_DEFAULT_PULL_LIMIT")]
    pub default_pull_limit: usize,
    /// Largest `limit` a pull may ask for.
    #[arg(long, default_value_t = 5000, env = "SYNCSTORE_MAX_PULL_LIMIT")]
    pub max_pull_limit: usize,
    /// Interval between WebSocket pings, in milliseconds.
    #[arg(long, default_value_t = 15_000, env = "SYNCSTORE_WS_PING_INTERVAL_MS")]
    pub ws_ping_interval_ms: u64,
    /// A WebSocket client silent (no frame, no pong) this long is dropped, in ms.
    #[arg(long, default_value_t = 45_000, env = "SYNCSTORE_WS_IDLE_TIMEOUT_MS")]
    pub ws_idle_timeout_ms: u64,
    /// How long a WebSocket may take to send its hello, in milliseconds.
    #[arg(long, default_value_t = 10_000, env = "SYNCSTORE_WS_HELLO_TIMEOUT_MS")]
    pub ws_hello_timeout_ms: u64,
    /// Commits buffered per namespace for live subscribers before they fall
    /// back to catch-up from the store.
    #[arg(long, default_value_t = 1024, env = "SYNCSTORE_BROADCAST_CAPACITY")]
    pub broadcast_capacity: usize,
    /// Pushes per second per token, whatever clientIds it uses (bursts of
    /// this size allowed). Default: 10 x --pushes-per-second.
    #[arg(long, env = "SYNCSTORE_TOKEN_PUSHES_PER_SECOND")]
    pub token_pushes_per_second: Option<f64>,
    /// Most open connections (HTTP and WebSocket); lowered to stay below the
    /// open-file limit. When reached, the oldest connection not inside a
    /// request is closed to make room.
    #[arg(long, default_value_t = 1024, env = "SYNCSTORE_MAX_CONNECTIONS")]
    pub max_connections: usize,
    /// A request's headers must arrive within this time, in ms; a keep-alive
    /// connection idle between requests is closed after it too.
    #[arg(
        long,
        default_value_t = 10_000,
        env = "SYNCSTORE_HEADER_READ_TIMEOUT_MS"
    )]
    pub header_read_timeout_ms: u64,
    /// A request body must arrive within this time, in ms (408 otherwise).
    #[arg(long, default_value_t = 30_000, env = "SYNCSTORE_BODY_TIMEOUT_MS")]
    pub body_timeout_ms: u64,
    /// On SIGTERM/SIGINT, connections still open after this time are dropped, in ms.
    #[arg(long, default_value_t = 10_000, env = "SYNCSTORE_SHUTDOWN_TIMEOUT_MS")]
    pub shutdown_timeout_ms: u64,
    /// Most pushes received or queued for commit at once; beyond, 503 + Retry-After.
    #[arg(long, default_value_t = 1024, env = "SYNCSTORE_MAX_PENDING_PUSHES")]
    pub max_pending_pushes: usize,
    /// Most request bytes of pushes received or queued for commit at once;
    /// beyond, 503 + Retry-After. Bounds the memory of a push flood.
    #[arg(long, default_value_t = 32 * 1024 * 1024, env = "SYNCSTORE_MAX_PENDING_PUSH_BYTES")]
    pub max_pending_push_bytes: usize,
    /// Largest pull or catch-up page, in bytes of changes (a page always
    /// carries at least one change).
    #[arg(long, default_value_t = 4 * 1024 * 1024, env = "SYNCSTORE_MAX_PAGE_BYTES")]
    pub max_page_bytes: usize,
    /// Most stored bytes one push may read and write (the documents and
    /// field versions its mutations load and store). A push that reaches it
    /// is answered for the mutations applied so far (at least one); the
    /// client pushes the rest again. Bounds how long one push holds the
    /// store.
    #[arg(long, default_value_t = 1024 * 1024, env = "SYNCSTORE_MAX_PUSH_WORK_BYTES")]
    pub max_push_work_bytes: usize,
    /// Namespaces that get their own `namespace` label in /metrics (the
    /// first ones seen); the others count under `_other`. 0: none.
    #[arg(long, default_value_t = 100, env = "SYNCSTORE_METRICS_NAMESPACES")]
    pub metrics_namespaces: usize,
    /// If set, `GET /metrics` requires `Authorization: Bearer` this token.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "SYNCSTORE_METRICS_TOKEN",
        hide_env_values = true
    )]
    pub metrics_token: Option<String>,
}

/// Limits enforced by the server.
#[derive(Debug, Clone)]
pub struct Limits {
    /// See [`Cli::max_body_bytes`].
    pub max_body_bytes: usize,
    /// See [`Cli::max_mutations_per_push`].
    pub max_mutations_per_push: usize,
    /// See [`Cli::max_doc_bytes`].
    pub max_doc_bytes: usize,
    /// See [`Cli::max_connections_per_namespace`].
    pub max_connections_per_namespace: usize,
    /// See [`Cli::pushes_per_second`].
    pub pushes_per_second: f64,
    /// See [`Cli::default_pull_limit`].
    pub default_pull_limit: usize,
    /// See [`Cli::max_pull_limit`].
    pub max_pull_limit: usize,
    /// See [`Cli::ws_ping_interval_ms`].
    pub ws_ping_interval: Duration,
    /// See [`Cli::ws_idle_timeout_ms`].
    pub ws_idle_timeout: Duration,
    /// See [`Cli::ws_hello_timeout_ms`].
    pub ws_hello_timeout: Duration,
    /// See [`Cli::broadcast_capacity`].
    pub broadcast_capacity: usize,
    /// See [`Cli::token_pushes_per_second`] (resolved).
    pub token_pushes_per_second: f64,
    /// See [`Cli::max_connections`].
    pub max_connections: usize,
    /// See [`Cli::header_read_timeout_ms`].
    pub header_read_timeout: Duration,
    /// See [`Cli::body_timeout_ms`].
    pub body_timeout: Duration,
    /// See [`Cli::shutdown_timeout_ms`].
    pub shutdown_timeout: Duration,
    /// See [`Cli::max_pending_pushes`].
    pub max_pending_pushes: usize,
    /// See [`Cli::max_pending_push_bytes`].
    pub max_pending_push_bytes: usize,
    /// See [`Cli::max_page_bytes`].
    pub max_page_bytes: usize,
    /// See [`Cli::max_push_work_bytes`].
    pub max_push_work_bytes: usize,
    /// See [`Cli::metrics_namespaces`].
    pub metrics_namespaces: usize,
    /// See [`Cli::compact_interval_secs`].
    pub compact_interval: Duration,
    /// A group commit stops applying pushes after this long (the rest go
    /// into the next group), so one namespace's heavy pushes hold the store
    /// briefly. 50 ms; not a flag (tests of grouping raise it, so that a
    /// busy machine does not split their groups).
    pub group_commit_time: Duration,
}

impl Limits {
    /// What the server advertises to clients (`GET /v1/config`, `synced`).
    pub fn advertised(&self) -> syncstore_core::protocol::ServerLimits {
        syncstore_core::protocol::ServerLimits {
            max_doc_bytes: self.max_doc_bytes as u64,
            max_mutations_per_push: self.max_mutations_per_push as u64,
            max_body_bytes: self.max_body_bytes as u64,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Cli::parse_from(["syncstore-server"]).limits()
    }
}

/// Everything the router needs besides the store.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// Static bearer token -> what it grants.
    pub tokens: HashMap<String, TokenGrant>,
    /// JWT verification, if configured.
    pub jwt: Option<Arc<Jwt>>,
    /// Allowed CORS origins; empty = any.
    pub cors_origins: Vec<String>,
    /// Bearer token `GET /metrics` requires, if any.
    pub metrics_token: Option<String>,
    /// Limits.
    pub limits: Limits,
}

/// A configuration mistake found at startup.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A `--token` or tokens-file line is not TOKEN:NAMESPACE[:ro].
    #[error("bad token entry: expected TOKEN:NAMESPACE[:ro] with both non-empty{0}")]
    BadToken(String),
    /// The JWT options are inconsistent or a key cannot be read.
    #[error("JWT: {0}")]
    Jwt(#[from] crate::auth::KeyError),
    /// The tokens file could not be read.
    #[error("cannot read tokens file {path}: {source}")]
    TokensFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A numeric option is out of its range.
    #[error("{name} must be between {min} and {max} (got {value})")]
    OutOfRange {
        /// The flag.
        name: &'static str,
        /// The value given.
        value: String,
        /// Smallest accepted.
        min: String,
        /// Largest accepted.
        max: String,
    },
}

/// [`in_range`] for rates, printed readably (`1e-300`, not 300 zeros).
fn rate_in_range(name: &'static str, value: f64, min: f64, max: f64) -> Result<(), ConfigError> {
    in_range(name, value, min, max).map_err(|_| ConfigError::OutOfRange {
        name,
        value: format!("{value:e}"),
        min: min.to_string(),
        max: max.to_string(),
    })
}

/// Checks `value` is within `min..=max` (NaN never is).
fn in_range<T: PartialOrd + std::fmt::Display>(
    name: &'static str,
    value: T,
    min: T,
    max: T,
) -> Result<(), ConfigError> {
    if value >= min && value <= max {
        return Ok(());
    }
    Err(ConfigError::OutOfRange {
        name,
        value: value.to_string(),
        min: min.to_string(),
        max: max.to_string(),
    })
}

/// Parses `TOKEN:NAMESPACE[:ro]` or `TOKEN NAMESPACE [ro]`. The error never
/// repeats the entry (it holds a secret); `line` names where it is.
fn parse_token(entry: &str, line: Option<usize>) -> Result<(String, TokenGrant), ConfigError> {
    let bad = || ConfigError::BadToken(line.map(|n| format!(" (line {n})")).unwrap_or_default());
    let entry = entry.trim();
    let (t, rest) = entry
        .split_once(':')
        .or_else(|| entry.split_once(char::is_whitespace))
        .ok_or_else(bad)?;
    let rest = rest.trim();
    let (ns, read_only) = match rest
        .strip_suffix(":ro")
        .or_else(|| rest.strip_suffix(" ro"))
        .or_else(|| rest.strip_suffix("\tro"))
    {
        Some(ns) => (ns.trim(), true),
        None => (rest, false),
    };
    let t = t.trim();
    if t.is_empty() || ns.is_empty() {
        return Err(bad());
    }
    let grant = TokenGrant {
        namespace: ns.to_string(),
        read_only,
    };
    Ok((t.to_string(), grant))
}

impl Cli {
    /// The limits part.
    pub fn limits(&self) -> Limits {
        Limits {
            max_body_bytes: self.max_body_bytes,
            max_mutations_per_push: self.max_mutations_per_push,
            max_doc_bytes: self.max_doc_bytes,
            max_connections_per_namespace: self.max_connections_per_namespace,
            pushes_per_second: self.pushes_per_second,
            default_pull_limit: self.default_pull_limit,
            max_pull_limit: self.max_pull_limit,
            ws_ping_interval: Duration::from_millis(self.ws_ping_interval_ms),
            ws_idle_timeout: Duration::from_millis(self.ws_idle_timeout_ms),
            ws_hello_timeout: Duration::from_millis(self.ws_hello_timeout_ms),
            broadcast_capacity: self.broadcast_capacity,
            token_pushes_per_second: self
                .token_pushes_per_second
                .unwrap_or(self.pushes_per_second * 10.0),
            max_connections: self.max_connections,
            header_read_timeout: Duration::from_millis(self.header_read_timeout_ms),
            body_timeout: Duration::from_millis(self.body_timeout_ms),
            shutdown_timeout: Duration::from_millis(self.shutdown_timeout_ms),
            max_pending_pushes: self.max_pending_pushes,
            max_pending_push_bytes: self.max_pending_push_bytes,
            max_page_bytes: self.max_page_bytes,
            max_push_work_bytes: self.max_push_work_bytes,
            metrics_namespaces: self.metrics_namespaces,
            compact_interval: Duration::from_secs(self.compact_interval_secs),
            group_commit_time: Duration::from_millis(50),
        }
    }

    /// What the store keeps of the past.
    pub fn retention(&self) -> crate::store::Retention {
        crate::store::Retention {
            results_per_client: self.results_per_client,
            tombstone_horizon: Duration::from_secs(self.tombstone_horizon_secs),
        }
    }

    /// Range-checks every numeric option, so that no value given at start
    /// can overflow or misbehave later (e.g. a rate of 1e-300 pushes/s).
    fn check_ranges(&self) -> Result<(), ConfigError> {
        const GIB: usize = 1 << 30;
        const DAY_MS: u64 = 24 * 3600 * 1000;
        in_range("--max-body-bytes", self.max_body_bytes, 1024, GIB)?;
        in_range("--results-per-client", self.results_per_client, 1, 1 << 40)?;
        in_range(
            "--tombstone-horizon-secs",
            self.tombstone_horizon_secs,
            1,
            100 * 365 * 86_400,
        )?;
        in_range(
            "--compact-interval-secs",
            self.compact_interval_secs,
            1,
            365 * 86_400,
        )?;
        in_range(
            "--max-mutations-per-push",
            self.max_mutations_per_push,
            1,
            1_000_000,
        )?;
        in_range(
            "--max-doc-bytes",
            self.max_doc_bytes,
            64,
            self.max_body_bytes,
        )?;
        in_range(
            "--max-connections-per-namespace",
            self.max_connections_per_namespace,
            1,
            1_000_000,
        )?;
        rate_in_range("--pushes-per-second", self.pushes_per_second, 0.001, 1e9)?;
        if let Some(r) = self.token_pushes_per_second {
            rate_in_range("--token-pushes-per-second", r, 0.001, 1e10)?;
        }
        in_range("--max-pull-limit", self.max_pull_limit, 1, 1_000_000)?;
        in_range(
            "--default-pull-limit",
            self.default_pull_limit,
            1,
            self.max_pull_limit,
        )?;
        for (name, ms) in [
            ("--ws-ping-interval-ms", self.ws_ping_interval_ms),
            ("--ws-idle-timeout-ms", self.ws_idle_timeout_ms),
            ("--ws-hello-timeout-ms", self.ws_hello_timeout_ms),
            ("--header-read-timeout-ms", self.header_read_timeout_ms),
            ("--body-timeout-ms", self.body_timeout_ms),
            ("--shutdown-timeout-ms", self.shutdown_timeout_ms),
        ] {
            in_range(name, ms, 10, DAY_MS)?;
        }
        in_range("--broadcast-capacity", self.broadcast_capacity, 1, 1 << 20)?;
        in_range("--max-connections", self.max_connections, 1, 1_000_000)?;
        in_range(
            "--max-pending-pushes",
            self.max_pending_pushes,
            1,
            1_000_000,
        )?;
        in_range(
            "--max-pending-push-bytes",
            self.max_pending_push_bytes,
            self.max_body_bytes,
            64 * GIB,
        )?;
        in_range("--max-page-bytes", self.max_page_bytes, 1024, GIB)?;
        in_range(
            "--max-push-work-bytes",
            self.max_push_work_bytes,
            1024,
            64 * GIB,
        )?;
        in_range("--jwt-leeway-s", self.jwt_leeway_s, 0, 300)?;
        in_range("--metrics-namespaces", self.metrics_namespaces, 0, 10_000)?;
        if self.jwt_namespace_claim.is_empty() {
            return Err(ConfigError::OutOfRange {
                name: "--jwt-namespace-claim",
                value: String::new(),
                min: "a non-empty".into(),
                max: "claim name".into(),
            });
        }
        Ok(())
    }

    /// The authentication part: static tokens (`--dev`, the tokens file,
    /// `--token`, later ones winning) and JWT verification. Read at start
    /// and again on SIGHUP.
    pub fn auth(&self) -> Result<AuthConfig, ConfigError> {
        let mut tokens = HashMap::new();
        if self.dev {
            tokens.insert(DEV_TOKEN.to_string(), TokenGrant::from(DEV_NAMESPACE));
        }
        if let Some(path) = &self.tokens_file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::TokensFile {
                path: path.clone(),
                source,
            })?;
            for (n, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let (t, grant) = parse_token(line, Some(n + 1))?;
                tokens.insert(t, grant);
            }
        }
        for entry in &self.tokens {
            let (t, grant) = parse_token(entry, None)?;
            tokens.insert(t, grant);
        }
        let rules = JwtRules {
            namespace_claim: self.jwt_namespace_claim.clone(),
            leeway_s: self.jwt_leeway_s,
            audience: self.jwt_audience.clone(),
            issuer: self.jwt_issuer.clone(),
            write_scope: self.jwt_write_scope.clone(),
        };
        let jwt = crate::auth::load_jwt(
            self.jwt_alg.as_deref(),
            self.jwt_key_file.as_deref(),
            self.jwks_file.as_deref(),
            rules,
        )?;
        Ok(AuthConfig {
            tokens,
            jwt: jwt.map(Arc::new),
        })
    }

    /// Builds the runtime configuration, reading the tokens file and JWT
    /// keys if any.
    pub fn config(&self) -> Result<Config, ConfigError> {
        self.check_ranges()?;
        let AuthConfig { tokens, jwt } = self.auth()?;
        Ok(Config {
            tokens,
            jwt,
            cors_origins: self.cors_origins.clone(),
            metrics_token: self.metrics_token.clone(),
            limits: self.limits(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_from_flags_file_and_dev() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tokens");
        std::fs::write(&file, "# comment\n\nfile-tok  team-a\nother:team-b\n").unwrap();
        let cli = Cli::parse_from([
            "syncstore-server",
            "--dev",
            "--token",
            "flag-tok:team-c",
            "--tokens-file",
            file.to_str().unwrap(),
        ]);
        let c = cli.config().unwrap();
        assert_eq!(c.tokens["dev-token"], "dev");
        assert_eq!(c.tokens["file-tok"], "team-a");
        assert_eq!(c.tokens["other"], "team-b");
        assert_eq!(c.tokens["flag-tok"], "team-c");
    }

    #[test]
    fn read_only_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tokens");
        std::fs::write(&file, "a team-a ro\nb:team-b:ro\nc team-c\n").unwrap();
        let cli = Cli::parse_from([
            "syncstore-server",
            "--token",
            "d:team-d:ro",
            "--tokens-file",
            file.to_str().unwrap(),
        ]);
        let c = cli.config().unwrap();
        let ro = |t: &str| (c.tokens[t].namespace.clone(), c.tokens[t].read_only);
        assert_eq!(ro("a"), ("team-a".into(), true));
        assert_eq!(ro("b"), ("team-b".into(), true));
        assert_eq!(ro("c"), ("team-c".into(), false));
        assert_eq!(ro("d"), ("team-d".into(), true));
        // A bad line is named by number, its secret is not repeated.
        std::fs::write(&file, "ok ns\nsecret-token\n").unwrap();
        let err = cli.config().unwrap_err().to_string();
        assert!(err.contains("line 2") && !err.contains("secret"), "{err}");
    }

    #[test]
    fn jwt_options_must_be_consistent() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key");
        std::fs::write(&key, "0123456789abcdef0123456789abcdef\n").unwrap();
        let key = key.to_str().unwrap();
        let ok = Cli::parse_from(["s", "--jwt-alg", "HS256", "--jwt-key-file", key]);
        assert!(ok.config().unwrap().jwt.is_some());
        for args in [
            vec!["s", "--jwt-key-file", key],
            vec!["s", "--jwt-alg", "HS256"],
            vec!["s", "--jwt-alg", "none", "--jwt-key-file", key],
            vec!["s", "--jwt-alg", "RS256", "--jwt-key-file", key],
            vec!["s", "--jwt-alg", "HS256", "--jwt-key-file", "/nonexistent"],
            vec!["s", "--jwks-file", key],
            vec![
                "s",
                "--jwt-alg",
                "HS256",
                "--jwt-key-file",
                key,
                "--jwks-file",
                key,
            ],
            vec!["s", "--jwt-leeway-s", "3600"],
        ] {
            assert!(Cli::parse_from(&args).config().is_err(), "{args:?}");
        }
    }

    #[test]
    fn bad_entries_are_refused() {
        for bad in ["notoken", ":ns", "tok:"] {
            let cli = Cli::parse_from(["syncstore-server", "--token", bad]);
            assert!(cli.config().is_err(), "{bad}");
        }
        let cli = Cli::parse_from(["syncstore-server", "--max-doc-bytes", "0"]);
        assert!(cli.config().is_err());
    }

    #[test]
    fn every_numeric_option_is_range_checked() {
        for (flag, bad) in [
            ("--pushes-per-second", "1e-300"),
            ("--pushes-per-second", "NaN"),
            ("--pushes-per-second", "inf"),
            ("--pushes-per-second", "-1"),
            ("--token-pushes-per-second", "0"),
            ("--max-body-bytes", "0"),
            ("--max-body-bytes", "1"),
            ("--max-mutations-per-push", "0"),
            ("--max-doc-bytes", "99999999999"),
            ("--max-connections-per-namespace", "0"),
            ("--default-pull-limit", "0"),
            ("--default-pull-limit", "6000"),
            ("--max-pull-limit", "0"),
            ("--ws-ping-interval-ms", "0"),
            ("--ws-idle-timeout-ms", "18446744073709551615"),
            ("--ws-hello-timeout-ms", "1"),
            ("--broadcast-capacity", "0"),
            ("--max-connections", "0"),
            ("--header-read-timeout-ms", "0"),
            ("--body-timeout-ms", "0"),
            ("--shutdown-timeout-ms", "99999999999999"),
            ("--max-pending-pushes", "0"),
            ("--max-pending-push-bytes", "10"),
            ("--max-page-bytes", "0"),
        ] {
            let arg = format!("{flag}={bad}");
            let cli = Cli::parse_from(["syncstore-server", arg.as_str()]);
            let err = cli.config().expect_err(&format!("{flag} {bad}"));
            assert!(err.to_string().starts_with(flag), "{flag} {bad}: {err}");
        }
        let c = Cli::parse_from(["syncstore-server", "--pushes-per-second", "3"])
            .config()
            .unwrap();
        assert_eq!(c.limits.token_pushes_per_second, 30.0);
    }
}

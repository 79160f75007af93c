//! Command line and runtime configuration.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// The token the `--dev` flag enables, for demos only.
pub const DEV_TOKEN: &str = "dev-token";
/// The namespace of [`DEV_TOKEN`].
pub const DEV_NAMESPACE: &str = "dev";

/// syncstore reference sync server (protocol v1: push, pull, WebSocket).
#[derive(Debug, Clone, Parser)]
#[command(name = "syncstore-server", version, about)]
pub struct Cli {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8787")]
    pub listen: SocketAddr,
    /// SQLite database file (created if missing); `:memory:` keeps nothing.
    #[arg(long, default_value = "syncstore.db")]
    pub db: PathBuf,
    /// A bearer token and the namespace it grants, as TOKEN:NAMESPACE. Repeatable.
    #[arg(long = "token", value_name = "TOKEN:NAMESPACE")]
    pub tokens: Vec<String>,
    /// File of tokens: one `TOKEN NAMESPACE` (or `TOKEN:NAMESPACE`) per line; `#` comments.
    #[arg(long, value_name = "PATH")]
    pub tokens_file: Option<PathBuf>,
    /// Enable the demo token `dev-token` for namespace `dev`. Never in production.
    #[arg(long)]
    pub dev: bool,
    /// Allowed CORS origin (repeatable). Default: any origin.
    #[arg(long = "cors-origin", value_name = "ORIGIN")]
    pub cors_origins: Vec<String>,
    /// Largest accepted request body (and WebSocket message), in bytes.
    #[arg(long, default_value_t = 4 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Most mutations in one push.
    #[arg(long, default_value_t = 1000)]
    pub max_mutations_per_push: usize,
    /// Largest serialized document or patch, in bytes.
    #[arg(long, default_value_t = 256 * 1024)]
    pub max_doc_bytes: usize,
    /// Most simultaneous WebSocket connections per namespace.
    #[arg(long, default_value_t = 256)]
    pub max_connections_per_namespace: usize,
    /// Pushes per second per client (HTTP and WebSocket); bursts of this size allowed.
    #[arg(long, default_value_t = 20.0)]
    pub pushes_per_second: f64,
    /// Changes per pull page when the client gives no limit.
    #[arg(long, default_value_t = 500)]
    pub default_pull_limit: usize,
    /// Largest `limit` a pull may ask for.
    #[arg(long, default_value_t = 5000)]
    pub max_pull_limit: usize,
    /// Interval between WebSocket pings, in milliseconds.
    #[arg(long, default_value_t = 15_000)]
    pub ws_ping_interval_ms: u64,
    /// A WebSocket client silent (no frame, no pong) this long is dropped, in ms.
    #[arg(long, default_value_t = 45_000)]
    pub ws_idle_timeout_ms: u64,
    /// How long a WebSocket may take to send its hello, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub ws_hello_timeout_ms: u64,
    /// Commits buffered per namespace for live subscribers before they fall
    /// back to catch-up from the store.
    #[arg(long, default_value_t = 1024)]
    pub broadcast_capacity: usize,
    /// Pushes per second per token, whatever clientIds it uses (bursts of
    /// this size allowed). Default: 10 x --pushes-per-second.
    #[arg(long)]
    pub token_pushes_per_second: Option<f64>,
    /// Most open connections (HTTP and WebSocket); lowered to stay below the
    /// open-file limit. When reached, the oldest connection not inside a
    /// request is closed to make room.
    #[arg(long, default_value_t = 1024)]
    pub max_connections: usize,
    /// A request's headers must arrive within this time, in ms; a keep-alive
    /// connection idle between requests is closed after it too.
    #[arg(long, default_value_t = 10_000)]
    pub header_read_timeout_ms: u64,
    /// A request body must arrive within this time, in ms (408 otherwise).
    #[arg(long, default_value_t = 30_000)]
    pub body_timeout_ms: u64,
    /// On SIGTERM/SIGINT, connections still open after this time are dropped, in ms.
    #[arg(long, default_value_t = 10_000)]
    pub shutdown_timeout_ms: u64,
    /// Most pushes received or queued for commit at once; beyond, 503 + Retry-After.
    #[arg(long, default_value_t = 1024)]
    pub max_pending_pushes: usize,
    /// Most request bytes of pushes received or queued for commit at once;
    /// beyond, 503 + Retry-After. Bounds the memory of a push flood.
    #[arg(long, default_value_t = 32 * 1024 * 1024)]
    pub max_pending_push_bytes: usize,
    /// Largest pull or catch-up page, in bytes of changes (a page always
    /// carries at least one change).
    #[arg(long, default_value_t = 4 * 1024 * 1024)]
    pub max_page_bytes: usize,
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
}

impl Default for Limits {
    fn default() -> Self {
        Cli::parse_from(["syncstore-server"]).limits()
    }
}

/// Everything the router needs besides the store.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// Bearer token -> namespace.
    pub tokens: HashMap<String, String>,
    /// Allowed CORS origins; empty = any.
    pub cors_origins: Vec<String>,
    /// Limits.
    pub limits: Limits,
}

/// A configuration mistake found at startup.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A `--token` or tokens-file line is not TOKEN:NAMESPACE.
    #[error("bad token entry {0:?}: expected TOKEN:NAMESPACE with both non-empty")]
    BadToken(String),
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

fn parse_token(entry: &str) -> Result<(String, String), ConfigError> {
    let entry = entry.trim();
    let (t, ns) = entry
        .split_once(':')
        .or_else(|| entry.split_once(char::is_whitespace))
        .ok_or_else(|| ConfigError::BadToken(entry.to_string()))?;
    let (t, ns) = (t.trim(), ns.trim());
    if t.is_empty() || ns.is_empty() {
        return Err(ConfigError::BadToken(entry.to_string()));
    }
    Ok((t.to_string(), ns.to_string()))
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
        }
    }

    /// Range-checks every numeric option, so that no value given at start
    /// can overflow or misbehave later (e.g. a rate of 1e-300 pushes/s).
    fn check_ranges(&self) -> Result<(), ConfigError> {
        const GIB: usize = 1 << 30;
        const DAY_MS: u64 = 24 * 3600 * 1000;
        in_range("--max-body-bytes", self.max_body_bytes, 1024, GIB)?;
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
        Ok(())
    }

    /// Builds the runtime configuration, reading the tokens file if any.
    pub fn config(&self) -> Result<Config, ConfigError> {
        let mut tokens = HashMap::new();
        if self.dev {
            tokens.insert(DEV_TOKEN.to_string(), DEV_NAMESPACE.to_string());
        }
        if let Some(path) = &self.tokens_file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::TokensFile {
                path: path.clone(),
                source,
            })?;
            for line in text.lines().map(str::trim) {
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let (t, ns) = parse_token(line)?;
                tokens.insert(t, ns);
            }
        }
        for entry in &self.tokens {
            let (t, ns) = parse_token(entry)?;
            tokens.insert(t, ns);
        }
        self.check_ranges()?;
        let l = self.limits();
        Ok(Config {
            tokens,
            cors_origins: self.cors_origins.clone(),
            limits: l,
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

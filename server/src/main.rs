//! `syncstore-server`: see `--help`.

// The server relies on unwinding: a handler panic answers 500, the
// committer survives a bug. The workspace release profile must not abort.
#[cfg(not(panic = "unwind"))]
compile_error!(
    "syncstore-server must be built with panic = \"unwind\" (see [profile.release] in Cargo.toml)"
);

use std::process::ExitCode;

use clap::Parser;
use syncstore_server::config::Cli;
use syncstore_server::state::AppState;

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// On SIGHUP, reads the tokens file and the JWT keys again; a file that
/// cannot be read or parsed keeps the previous configuration (logged).
fn reload_on_sighup(cli: Cli, state: AppState) {
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGHUP; no reloads");
                return;
            }
        };
        while hup.recv().await.is_some() {
            match cli.auth() {
                Ok(auth) => {
                    let keys = auth.jwt.as_ref().map_or(0, |j| j.key_count());
                    let tokens = auth.tokens.len();
                    state.reload_auth(auth);
                    metrics::counter!(syncstore_server::metrics::AUTH_RELOADS, "result" => "ok")
                        .increment(1);
                    tracing::info!(tokens, jwt_keys = keys, "SIGHUP: authentication reloaded");
                }
                Err(e) => {
                    metrics::counter!(syncstore_server::metrics::AUTH_RELOADS, "result" => "error")
                        .increment(1);
                    tracing::error!(error = %e, "SIGHUP: reload failed; keeping the previous tokens and keys");
                }
            }
        }
    });
    #[cfg(not(unix))]
    let _ = (cli, state);
}

/// The database as logged: a URL's password is never shown.
fn redact_db(db: &str) -> String {
    match (db.find("://"), db.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &db[scheme + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &db[..scheme + 3], &db[at..]),
                None => db.to_string(),
            }
        }
        _ => db.to_string(),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let config = match cli.config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("syncstore-server: {e}");
            return ExitCode::from(2);
        }
    };
    if config.tokens.is_empty() && config.jwt.is_none() {
        tracing::warn!("no tokens configured: every request will be refused (use --token, --tokens-file, --jwt-key-file, --jwks-file or --dev)");
    }
    if let Some(jwt) = &config.jwt {
        tracing::info!(keys = jwt.key_count(), namespace_claim = %cli.jwt_namespace_claim, "JWT authentication on");
    }
    if cli.dev {
        tracing::warn!("--dev: token `dev-token` grants namespace `dev`; never use in production");
    }
    let store = match syncstore_server::store::open(&cli.db, cli.retention()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "syncstore-server: cannot open database {}: {e}",
                redact_db(&cli.db)
            );
            return ExitCode::FAILURE;
        }
    };
    let listener = match tokio::net::TcpListener::bind(cli.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("syncstore-server: cannot listen on {}: {e}", cli.listen);
            return ExitCode::FAILURE;
        }
    };
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    // Scripts and tests read this line to learn the port.
    println!("syncstore-server listening on http://{addr}");
    tracing::info!(%addr, db = %redact_db(&cli.db), "listening");
    let state = AppState::new(store, config);
    reload_on_sighup(cli.clone(), state.clone());
    match syncstore_server::serve(listener, state, shutdown_signal()).await {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("syncstore-server: {e}");
            ExitCode::FAILURE
        }
    }
}

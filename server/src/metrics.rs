//! Prometheus metrics, served as text by `GET /metrics`.
//!
//! Recorded with the `metrics` facade into one process-wide
//! `metrics-exporter-prometheus` recorder (installed by the first
//! [`crate::state::AppState`]; a process serves one server).
//!
//! Cardinality: the only unbounded value a label could take is the
//! namespace (JWTs can name any). The first `--metrics-namespaces`
//! namespaces seen get their own label value; every later one is counted
//! under `namespace="_other"`, so the series stay bounded whatever the
//! clients send. `code` labels take the fixed set of error codes.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use syncstore_core::protocol::{MutationResult, PushResponse};

/// Open HTTP and WebSocket connections (gauge, set at scrape).
pub const CONNECTIONS: &str = "syncstore_connections";
/// Open WebSocket sessions, per namespace (gauge).
pub const WEBSOCKET_SESSIONS: &str = "syncstore_websocket_sessions";
/// Pushes answered with results, per namespace and transport (counter).
pub const PUSHES: &str = "syncstore_pushes_total";
/// Mutations by outcome (`applied`, `conflict`, `rejected`), per namespace.
pub const MUTATIONS: &str = "syncstore_mutations_total";
/// Pull pages served, per namespace (counter).
pub const PULLS: &str = "syncstore_pulls_total";
/// Group commits: duration of the transaction (histogram, seconds).
pub const COMMIT_SECONDS: &str = "syncstore_commit_seconds";
/// Pushes per group commit (histogram).
pub const COMMIT_PUSHES: &str = "syncstore_commit_pushes";
/// Time from a commit's publication until every WebSocket session that
/// was subscribed wrote it to its socket (histogram, seconds).
pub const FANOUT_SECONDS: &str = "syncstore_fanout_lag_seconds";
/// Sessions that fell behind the live buffer and caught up from the store.
pub const LAG_CATCH_UPS: &str = "syncstore_fanout_catch_ups_total";
/// Error answers (HTTP and WebSocket), by code.
pub const ERRORS: &str = "syncstore_errors_total";
/// Pushes received or waiting for their commit (gauge, set at scrape).
pub const PENDING_PUSHES: &str = "syncstore_pending_pushes";
/// Reloads of tokens and keys on SIGHUP, by result (`ok`, `error`).
pub const AUTH_RELOADS: &str = "syncstore_auth_reloads_total";

/// Latency buckets (seconds): 100 us to 10 s.
const SECONDS_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];
const PUSH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process's recorder, installed on first use; `None` if another
/// recorder was installed first (then `/metrics` answers 503).
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE.get_or_init(install).as_ref()
}

fn install() -> Option<PrometheusHandle> {
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Full(COMMIT_PUSHES.into()), PUSH_BUCKETS));
    let handle = match builder.and_then(|b| b.install_recorder()) {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(error = %e, "cannot install the metrics recorder; /metrics is off");
            return None;
        }
    };
    describe();
    // Histograms are drained into their buckets by the upkeep.
    let upkeep = handle.clone();
    let spawned = std::thread::Builder::new()
        .name("syncstore-metrics".into())
        .spawn(move || loop {
            std::thread::sleep(Duration::from_secs(5));
            upkeep.run_upkeep();
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the metrics upkeep thread");
    }
    Some(handle)
}

fn describe() {
    describe_gauge!(CONNECTIONS, "Open HTTP and WebSocket connections");
    describe_gauge!(WEBSOCKET_SESSIONS, "Open WebSocket sessions");
    describe_counter!(PUSHES, "Pushes answered with results");
    describe_counter!(MUTATIONS, "Pushed mutations by outcome");
    describe_counter!(PULLS, "Pull pages served");
    describe_histogram!(COMMIT_SECONDS, Unit::Seconds, "Duration of a group commit");
    describe_histogram!(COMMIT_PUSHES, "Pushes per group commit");
    describe_histogram!(
        FANOUT_SECONDS,
        Unit::Seconds,
        "From a commit's publication until every subscribed session wrote it"
    );
    describe_counter!(
        LAG_CATCH_UPS,
        "Sessions that fell behind the live buffer and caught up from the store"
    );
    describe_counter!(ERRORS, "Error answers by code");
    describe_gauge!(
        PENDING_PUSHES,
        "Pushes received or waiting for their commit"
    );
    describe_counter!(AUTH_RELOADS, "Reloads of tokens and keys on SIGHUP");
}

/// Label value for `namespace="_other"`.
pub const OTHER_NAMESPACE: &str = "_other";

/// Maps namespaces to label values: the first `max` seen keep their name.
pub struct NamespaceLabels {
    max: usize,
    seen: Mutex<HashSet<String>>,
}

impl NamespaceLabels {
    /// At most `max` namespaces labelled by name.
    pub fn new(max: usize) -> Self {
        NamespaceLabels {
            max,
            seen: Mutex::new(HashSet::new()),
        }
    }

    /// The label value of `namespace`.
    pub fn label(&self, namespace: &str) -> String {
        if self.max == 0 {
            return OTHER_NAMESPACE.to_string();
        }
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.contains(namespace) {
            return namespace.to_string();
        }
        if seen.len() < self.max {
            seen.insert(namespace.to_string());
            return namespace.to_string();
        }
        OTHER_NAMESPACE.to_string()
    }
}

/// Counts an error answer.
pub fn error(code: &'static str) {
    counter!(ERRORS, "code" => code).increment(1);
}

/// Counts a push answered with results, and its mutations by outcome.
pub fn push_answered(namespace: String, transport: &'static str, resp: &PushResponse) {
    counter!(PUSHES, "namespace" => namespace.clone(), "transport" => transport).increment(1);
    let (mut applied, mut conflict, mut rejected) = (0u64, 0u64, 0u64);
    for r in &resp.results {
        match r {
            MutationResult::Applied { .. } => applied += 1,
            MutationResult::Conflict { .. } => conflict += 1,
            MutationResult::Rejected { .. } => rejected += 1,
        }
    }
    for (status, n) in [
        ("applied", applied),
        ("conflict", conflict),
        ("rejected", rejected),
    ] {
        if n > 0 {
            counter!(MUTATIONS, "namespace" => namespace.clone(), "status" => status).increment(n);
        }
    }
}

/// Counts an open WebSocket session until dropped.
pub struct SessionGauge(String);

impl SessionGauge {
    /// A session of the namespace labelled `label` opened.
    pub fn open(label: String) -> Self {
        gauge!(WEBSOCKET_SESSIONS, "namespace" => label.clone()).increment(1.0);
        SessionGauge(label)
    }
}

impl Drop for SessionGauge {
    fn drop(&mut self) {
        gauge!(WEBSOCKET_SESSIONS, "namespace" => self.0.clone()).decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_labels_are_bounded() {
        let l = NamespaceLabels::new(2);
        assert_eq!(l.label("a"), "a");
        assert_eq!(l.label("b"), "b");
        assert_eq!(l.label("c"), OTHER_NAMESPACE);
        assert_eq!(l.label("a"), "a");
        assert_eq!(NamespaceLabels::new(0).label("a"), OTHER_NAMESPACE);
    }
}

//! The health and metrics endpoint: `/healthz`, `/readyz` (ready after every
//! environment's first successful pass) and `/metrics` (Prometheus text).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::engine::plan::{Action, Outcome};
use crate::engine::report::Report;

/// What the daemon has done, for `/readyz` and `/metrics`.
#[derive(Debug, Default)]
pub struct Status {
    /// Environments the daemon runs.
    pub envs: Vec<String>,
    /// Whether this replica holds the lease.
    pub leader: bool,
    passes: BTreeMap<(String, &'static str), u64>,
    duration_seconds: BTreeMap<String, f64>,
    drift: BTreeMap<(String, String), u64>,
    repairs: BTreeMap<(String, String), u64>,
    calls: BTreeMap<(String, String), u64>,
    errors: BTreeMap<String, u64>,
    spec_errors: BTreeMap<String, u64>,
    last_success: BTreeMap<String, f64>,
}

/// The daemon's status, shared between the passes and the endpoint.
pub type SharedStatus = Arc<Mutex<Status>>;

impl Status {
    /// The status of a daemon running `envs`; `leader` when it writes from the start.
    pub fn new(envs: Vec<String>, leader: bool) -> Self {
        Status { envs, leader, ..Status::default() }
    }

    /// Records a finished pass.
    pub fn record(&mut self, report: &Report) {
        let env = report.env.clone();
        let ok = report.errors.is_empty() && report.summary.failed == 0;
        *self.passes.entry((env.clone(), if ok { "ok" } else { "error" })).or_insert(0) += 1;
        self.duration_seconds.insert(env.clone(), report.duration_ms as f64 / 1000.0);
        for step in &report.resources {
            if matches!(step.action, Action::Create | Action::Update | Action::Replace | Action::Delete | Action::Alert) {
                *self.drift.entry((env.clone(), step.key.kind.to_string())).or_insert(0) += 1;
            }
            if step.outcome == Some(Outcome::Applied) {
                *self.repairs.entry((env.clone(), step.key.kind.to_string())).or_insert(0) += 1;
            }
        }
        for (operation, n) in &report.calls.by_operation {
            *self.calls.entry((env.clone(), operation.clone())).or_insert(0) += n;
        }
        let errors = report.errors.len() as u64 + report.summary.failed as u64;
        *self.errors.entry(env.clone()).or_insert(0) += errors;
        if ok {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
            self.last_success.insert(env, now);
        }
    }

    /// Records a spec that failed to load (the last valid one stays in use).
    pub fn record_spec_error(&mut self, env: &str) {
        *self.spec_errors.entry(env.to_string()).or_insert(0) += 1;
    }

    /// Ready once every environment has had a successful pass.
    pub fn ready(&self) -> bool {
        self.envs.iter().all(|e| self.last_success.contains_key(e))
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str, rows: Vec<(String, String)>| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in rows {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        family(
            "sentry_operator_passes_total",
            "counter",
            "Reconcile passes by environment and outcome.",
            self.passes.iter().map(|((e, o), n)| (format!("{{env=\"{e}\",outcome=\"{o}\"}}"), n.to_string())).collect(),
        );
        family(
            "sentry_operator_pass_duration_seconds",
            "gauge",
            "Duration of the last pass.",
            self.duration_seconds.iter().map(|(e, s)| (format!("{{env=\"{e}\"}}"), s.to_string())).collect(),
        );
        family(
            "sentry_operator_drift_total",
            "counter",
            "Resources found drifted, by kind.",
            self.drift.iter().map(|((e, k), n)| (format!("{{env=\"{e}\",kind=\"{k}\"}}"), n.to_string())).collect(),
        );
        family(
            "sentry_operator_repairs_total",
            "counter",
            "Resources repaired, by kind.",
            self.repairs.iter().map(|((e, k), n)| (format!("{{env=\"{e}\",kind=\"{k}\"}}"), n.to_string())).collect(),
        );
        family(
            "sentry_operator_aws_calls_total",
            "counter",
            "AWS requests by operation.",
            self.calls.iter().map(|((e, o), n)| (format!("{{env=\"{e}\",operation=\"{o}\"}}"), n.to_string())).collect(),
        );
        family(
            "sentry_operator_errors_total",
            "counter",
            "Reconcile errors.",
            self.errors.iter().map(|(e, n)| (format!("{{env=\"{e}\"}}"), n.to_string())).collect(),
        );
        family(
            "sentry_operator_spec_errors_total",
            "counter",
            "Spec reloads rejected as invalid.",
            self.spec_errors.iter().map(|(e, n)| (format!("{{env=\"{e}\"}}"), n.to_string())).collect(),
        );
        family(
            "sentry_operator_last_success_timestamp_seconds",
            "gauge",
            "Time of the last successful pass.",
            self.last_success.iter().map(|(e, t)| (format!("{{env=\"{e}\"}}"), format!("{t:.3}"))).collect(),
        );
        family("sentry_operator_leader", "gauge", "1 when this replica holds the lease and writes.", vec![(String::new(), u8::from(self.leader).to_string())]);
        out
    }
}

/// Serves the endpoint on `address` until the task is dropped.
pub async fn serve(address: SocketAddr, status: SharedStatus) -> std::io::Result<()> {
    let listener = TcpListener::bind(address).await?;
    tracing::info!(%address, "health and metrics endpoint listening");
    loop {
        let (mut socket, _) = listener.accept().await?;
        let status = status.clone();
        tokio::spawn(async move {
            // Read the request head (a request may arrive in several segments).
            let mut buffer = Vec::with_capacity(1024);
            let mut chunk = [0u8; 1024];
            while !buffer.windows(4).any(|w| w == b"\r\n\r\n") && buffer.len() < 8192 {
                match tokio::time::timeout(std::time::Duration::from_secs(5), socket.read(&mut chunk)).await {
                    Ok(Ok(n)) if n > 0 => buffer.extend_from_slice(&chunk[..n]),
                    _ => break,
                }
            }
            let request = String::from_utf8_lossy(&buffer);
            let path = request.split_whitespace().nth(1).unwrap_or("/");
            let (code, content_type, body) = {
                let status = match status.lock() {
                    Ok(s) => s,
                    Err(poisoned) => poisoned.into_inner(),
                };
                match path {
                    "/healthz" => ("200 OK", "text/plain", "ok\n".to_string()),
                    "/readyz" if status.ready() => ("200 OK", "text/plain", "ready\n".to_string()),
                    "/readyz" => ("503 Service Unavailable", "text/plain", "not ready: waiting for a first successful pass\n".to_string()),
                    "/metrics" => ("200 OK", "text/plain; version=0.0.4", status.render()),
                    _ => ("404 Not Found", "text/plain", "not found\n".to_string()),
                }
            };
            let response = format!("HTTP/1.1 {code}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
            let _ = socket.write_all(response.as_bytes()).await;
        });
    }
}

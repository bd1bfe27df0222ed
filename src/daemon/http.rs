//! The daemon's endpoint: `/healthz`, `/readyz`, `/metrics` (Prometheus
//! text), and the status page at `/` with its data at `/api/status` ([`super::page`]). Ready means every environment is fresh: it has had a
//! successful full pass within its last three full intervals, and no pass of
//! it has been abandoned at its deadline since its last success.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::engine::plan::{Action, Outcome};
use crate::engine::report::Report;
use crate::engine::Scope;

use super::page::{self, EnvView};

/// The name of a loop in logs, metrics and alerts: `full`, or `network` for
/// the fast loop over the [`Scope::Fast`] kinds (networking and the whitelist).
pub fn label(scope: Scope) -> &'static str {
    match scope {
        Scope::Full => "full",
        Scope::Fast | Scope::Whitelist => "network",
    }
}

/// Full intervals without a successful full pass after which an environment is stale.
pub const STALE_AFTER_INTERVALS: u32 = 3;

/// What the daemon has done, for `/readyz` and `/metrics`.
#[derive(Debug)]
pub struct Status {
    /// Environments the daemon runs.
    pub envs: Vec<String>,
    /// The environments whose lease this replica holds (all, without a lease table).
    leading: BTreeSet<String>,
    /// Environments whose spec is stale, with why.
    stale_spec: BTreeMap<String, String>,
    started: Instant,
    full_interval: Duration,
    last_full_success: BTreeMap<String, Instant>,
    /// (environment, scope) of passes abandoned at their deadline since that scope's last success.
    abandoned: BTreeSet<(String, Scope)>,
    timeouts: BTreeMap<(String, Scope), u64>,
    passes: BTreeMap<(String, &'static str), u64>,
    duration_seconds: BTreeMap<String, f64>,
    /// By environment, kind and the call that caused it (`unknown` without an event): bounded labels only.
    drift: BTreeMap<(String, String, String), u64>,
    repairs: BTreeMap<(String, String), u64>,
    calls: BTreeMap<(String, String), u64>,
    errors: BTreeMap<String, u64>,
    spec_errors: BTreeMap<String, u64>,
    last_success: BTreeMap<String, f64>,
    /// What the status page shows of each environment.
    views: BTreeMap<String, EnvView>,
    /// Each environment's lease holder, as the lease table last said (`id`, `host`, `since`).
    holders: BTreeMap<String, serde_json::Value>,
}

/// The daemon's status, shared between the passes and the endpoint.
pub type SharedStatus = Arc<Mutex<Status>>;

impl Status {
    /// The status of a daemon running `envs` with full passes every
    /// `full_interval`; `leader` when it writes them all from the start.
    pub fn new(envs: Vec<String>, leader: bool, full_interval: Duration) -> Self {
        Status {
            leading: if leader { envs.iter().cloned().collect() } else { BTreeSet::new() },
            stale_spec: BTreeMap::new(),
            envs,
            started: Instant::now(),
            full_interval,
            last_full_success: BTreeMap::new(),
            abandoned: BTreeSet::new(),
            timeouts: BTreeMap::new(),
            passes: BTreeMap::new(),
            duration_seconds: BTreeMap::new(),
            drift: BTreeMap::new(),
            repairs: BTreeMap::new(),
            calls: BTreeMap::new(),
            errors: BTreeMap::new(),
            spec_errors: BTreeMap::new(),
            last_success: BTreeMap::new(),
            views: BTreeMap::new(),
            holders: BTreeMap::new(),
        }
    }

    /// Records a pass of `scope` abandoned at its deadline: a failed pass.
    pub fn record_abandoned(&mut self, env: &str, scope: Scope) {
        *self.passes.entry((env.to_string(), "timeout")).or_insert(0) += 1;
        *self.timeouts.entry((env.to_string(), scope)).or_insert(0) += 1;
        self.abandoned.insert((env.to_string(), scope));
    }

    /// Why `env` is stale, if it is: a pass abandoned since its scope's last
    /// success, or no successful full pass for [`STALE_AFTER_INTERVALS`] full intervals.
    pub fn stale_reason(&self, env: &str) -> Option<String> {
        if let Some((_, scope)) = self.abandoned.iter().find(|(e, _)| e == env) {
            return Some(format!("{env}: a {} pass was abandoned at its deadline and none has succeeded since", label(*scope)));
        }
        let limit = self.full_interval * STALE_AFTER_INTERVALS;
        let since = self.last_full_success.get(env).copied().unwrap_or(self.started);
        (since.elapsed() > limit).then(|| format!("{env}: no successful full pass for {}s", since.elapsed().as_secs()))
    }

    /// Why the daemon is not ready, if it is not.
    pub fn not_ready_reason(&self) -> Option<String> {
        let reasons: Vec<String> = self
            .envs
            .iter()
            .filter_map(|e| {
                self.stale_reason(e).or_else(|| (!self.last_full_success.contains_key(e)).then(|| format!("{e}: waiting for a first successful pass")))
            })
            .collect();
        (!reasons.is_empty()).then(|| reasons.join("; "))
    }

    /// Records a finished pass of `scope`; `whole` when it read every kind of
    /// its loop (not narrowed to what events named).
    pub fn record(&mut self, report: &Report, scope: Scope, whole: bool) {
        let env = report.env.clone();
        self.views.entry(env.clone()).or_default().record(report, label(scope), whole, crate::lease::now_ms());
        let ok = report.errors.is_empty() && report.summary.failed == 0;
        *self.passes.entry((env.clone(), if ok { "ok" } else { "error" })).or_insert(0) += 1;
        self.duration_seconds.insert(env.clone(), report.duration_ms as f64 / 1000.0);
        for step in &report.resources {
            if matches!(step.action, Action::Create | Action::Update | Action::Replace | Action::Delete | Action::Alert)
                && step.outcome != Some(Outcome::Deferred)
            {
                let call = step.cause.as_ref().map_or("unknown", |c| c.call.as_str());
                *self.drift.entry((env.clone(), step.key.kind.to_string(), call.to_string())).or_insert(0) += 1;
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
            self.abandoned.remove(&(env.clone(), scope));
            if scope == Scope::Full {
                self.last_full_success.insert(env.clone(), Instant::now());
            }
            self.last_success.insert(env, now);
        }
    }

    /// Sets the environments this replica leads; whether that changed.
    pub fn set_leading(&mut self, envs: &[String]) -> bool {
        let leading: BTreeSet<String> = envs.iter().cloned().collect();
        let changed = leading != self.leading;
        self.leading = leading;
        changed
    }

    /// Sets each environment's lease holder (`id`, `host`, `since`), as the lease table says.
    pub fn set_holders(&mut self, holders: BTreeMap<String, serde_json::Value>) {
        self.holders = holders;
    }

    /// The `/api/status` document (schema [`page::SCHEMA`], in the README).
    pub fn api_status(&self) -> serde_json::Value {
        let environments: Vec<serde_json::Value> = self
            .envs
            .iter()
            .map(|e| {
                let view = self.views.get(e).cloned().unwrap_or_default();
                view.to_json(e, self.leading.contains(e), self.holders.get(e), self.stale_reason(e), self.stale_spec.get(e))
            })
            .collect();
        serde_json::json!({ "schema": page::SCHEMA, "generatedAt": crate::lease::utc(crate::lease::now_ms()), "environments": environments })
    }

    /// Marks `env`'s spec stale (`why`), or fresh again (`None`); whether that changed.
    pub fn set_stale_spec(&mut self, env: &str, why: Option<String>) -> bool {
        match why {
            Some(why) => self.stale_spec.insert(env.to_string(), why.clone()).as_ref() != Some(&why),
            None => self.stale_spec.remove(env).is_some(),
        }
    }

    /// What `/readyz` says when ready: the environments this replica leads.
    fn ready_line(&self) -> String {
        let leading: Vec<&str> = self.leading.iter().map(String::as_str).collect();
        format!("ready; leading: {}\n", if leading.is_empty() { "none".to_string() } else { leading.join(", ") })
    }

    /// Records a spec that failed to load (the last valid one stays in use).
    pub fn record_spec_error(&mut self, env: &str) {
        *self.spec_errors.entry(env.to_string()).or_insert(0) += 1;
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
            "Resources found drifted, by kind and the API call that caused it (unknown: found by a pass, no event said).",
            self.drift.iter().map(|((e, k, c), n)| (format!("{{env=\"{e}\",kind=\"{k}\",call=\"{c}\"}}"), n.to_string())).collect(),
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
        family(
            "sentry_operator_pass_timeouts_total",
            "counter",
            "Passes abandoned at their deadline, by scope.",
            self.timeouts.iter().map(|((e, s), n)| (format!("{{env=\"{e}\",scope=\"{}\"}}", label(*s)), n.to_string())).collect(),
        );
        family(
            "sentry_operator_env_stale",
            "gauge",
            "1 while the environment is stale (a pass abandoned at its deadline, or no successful full pass for 3 full intervals).",
            self.envs.iter().map(|e| (format!("{{env=\"{e}\"}}"), u8::from(self.stale_reason(e).is_some()).to_string())).collect(),
        );
        family(
            "sentry_operator_leader",
            "gauge",
            "1 when this replica holds the environment's lease (and writes it).",
            self.envs.iter().map(|e| (format!("{{env=\"{e}\"}}"), u8::from(self.leading.contains(e)).to_string())).collect(),
        );
        family(
            "sentry_operator_stale_spec",
            "gauge",
            "1 while the environment's spec is older than the revision applied (nothing is written).",
            self.envs.iter().map(|e| (format!("{{env=\"{e}\"}}"), u8::from(self.stale_spec.contains_key(e)).to_string())).collect(),
        );
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
            let target = request.split_whitespace().nth(1).unwrap_or("/");
            let path = target.split('?').next().unwrap_or(target);
            let (code, content_type, body) = {
                let status = match status.lock() {
                    Ok(s) => s,
                    Err(poisoned) => poisoned.into_inner(),
                };
                match path {
                    "/healthz" => ("200 OK", "text/plain", "ok\n".to_string()),
                    "/readyz" => match status.not_ready_reason() {
                        None => ("200 OK", "text/plain", status.ready_line()),
                        Some(why) => ("503 Service Unavailable", "text/plain", format!("not ready: {why}\n")),
                    },
                    "/metrics" => ("200 OK", "text/plain; version=0.0.4", status.render()),
                    "/" => ("200 OK", "text/html; charset=utf-8", page::html(&status.api_status())),
                    "/api/status" => ("200 OK", "application/json", format!("{:#}\n", status.api_status())),
                    _ => ("404 Not Found", "text/plain", "not found\n".to_string()),
                }
            };
            // The page runs no script and loads nothing from elsewhere: the policy says so to the browser too.
            let response = format!(
                "HTTP/1.1 {code}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n\
                 Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
        });
    }
}

/// Whether the daemon listening on `address` answers `/healthz` with 200 within 5 s.
pub async fn healthy(address: SocketAddr) -> bool {
    let ask = async {
        let mut socket = tokio::net::TcpStream::connect(address).await.ok()?;
        socket.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").as_bytes()).await.ok()?;
        let mut reply = Vec::new();
        socket.read_to_end(&mut reply).await.ok()?;
        Some(reply.starts_with(b"HTTP/1.1 200"))
    };
    matches!(tokio::time::timeout(std::time::Duration::from_secs(5), ask).await, Ok(Some(true)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_abandoned_pass_makes_the_environment_stale_until_that_scope_succeeds() {
        let mut status = Status::new(vec!["dev".into()], true, Duration::from_secs(60));
        assert_eq!(status.not_ready_reason().as_deref(), Some("dev: waiting for a first successful pass"));
        status.last_full_success.insert("dev".into(), Instant::now());
        assert_eq!(status.not_ready_reason(), None);
        status.record_abandoned("dev", Scope::Fast);
        let why = status.not_ready_reason().unwrap_or_default();
        assert!(why.contains("network pass was abandoned"), "{why}");
        assert!(status.render().contains("sentry_operator_env_stale{env=\"dev\"} 1"));
        assert!(status.render().contains("sentry_operator_pass_timeouts_total{env=\"dev\",scope=\"network\"} 1"));
        let env = crate::spec::EnvSpec::new("dev", Default::default());
        let ok = Report::new(&env, crate::engine::Mode::Apply, Vec::new(), Vec::new(), Default::default(), Duration::ZERO);
        status.record(&ok, Scope::Full, true);
        assert!(status.not_ready_reason().is_some(), "a full pass does not clear an abandoned network pass");
        status.record(&ok, Scope::Fast, true);
        assert_eq!(status.not_ready_reason(), None);
        assert!(status.render().contains("sentry_operator_env_stale{env=\"dev\"} 0"));
    }

    #[test]
    fn no_successful_full_pass_for_three_intervals_is_stale() {
        let mut status = Status::new(vec!["dev".into()], true, Duration::from_millis(10));
        status.last_full_success.insert("dev".into(), Instant::now());
        assert_eq!(status.stale_reason("dev"), None);
        std::thread::sleep(Duration::from_millis(40));
        assert!(status.stale_reason("dev").is_some_and(|r| r.contains("no successful full pass")));
        assert!(status.not_ready_reason().is_some());
    }
}

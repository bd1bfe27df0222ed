//! `sentry-operator run`: the long-running controller.
//!
//! Each environment is reconciled on an interval with jitter; the networking
//! kinds (whitelist EIPs, NAT gateways, routes, security groups) also on a
//! shorter "fast" interval. One pass per environment at a time, a bounded
//! number of environments at once. A failing pass is retried with
//! exponential backoff. An invalid spec is never applied: the last valid one
//! stays in use. Specs are re-read when their files change, or on SIGHUP.
//! SIGTERM / SIGINT stop new passes; passes in flight finish (bounded by the
//! grace period) and the process exits 0. With a lease table, only the
//! replica holding the lease writes; the others observe.

pub mod http;
pub mod lease;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use backoff::backoff::Backoff as _;
use tokio::sync::{watch, Semaphore};

use crate::alerts::AlertSink;
use crate::aws::{env_config, load_config, CallCounter};
use crate::engine::apply::{reconcile, Mode, RetryPolicy};
use crate::engine::Kind;
use crate::kinds;
use crate::spec::{self, EnvSpec, BASE_FILE};
use http::{SharedStatus, Status};
use lease::Lease;

/// How the daemon runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Spec directory.
    pub specs: PathBuf,
    /// Environments to keep converged.
    pub envs: Vec<String>,
    /// Region override.
    pub region: Option<String>,
    /// Interval of full passes.
    pub interval: Duration,
    /// Interval of the networking (whitelist) passes.
    pub fast_interval: Duration,
    /// Report drift, never write.
    pub observe_only: bool,
    /// Address of the health and metrics endpoint.
    pub listen: Option<SocketAddr>,
    /// DynamoDB table of the leader lease; `None` runs as the only replica.
    pub lease_table: Option<String>,
    /// How long the lease lasts without renewal.
    pub lease_duration: Duration,
    /// Environments reconciled at the same time.
    pub max_parallel_envs: usize,
    /// How long in-flight passes may take to finish after a stop signal.
    pub grace: Duration,
    /// Publish drift alerts to CloudWatch Logs.
    pub alerts: bool,
}

/// Which kinds a pass covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scope {
    Full,
    /// The networking kinds only (they reference only each other).
    Network,
}

/// Runs until SIGTERM / SIGINT; returns the exit status.
pub async fn run(options: Options) -> anyhow::Result<u8> {
    let status: SharedStatus = Arc::new(Mutex::new(Status::new(options.envs.clone(), options.lease_table.is_none())));
    let (stop_tx, stop_rx) = watch::channel(false);
    let leader = Arc::new(AtomicBool::new(options.lease_table.is_none()));
    let own = load_config(options.region.clone()).await;
    let counter = CallCounter::default();

    if let Some(address) = options.listen {
        let status = status.clone();
        tokio::spawn(async move {
            if let Err(e) = http::serve(address, status).await {
                tracing::error!(error = %e, "health endpoint stopped");
            }
        });
    }
    let lease_task = match &options.lease_table {
        Some(table) => {
            let holder = format!("{}-{}", std::env::var("HOSTNAME").unwrap_or_else(|_| "replica".into()), std::process::id());
            let lease = Lease::new(&own, &counter, table, "sentry-operator", &holder, options.lease_duration);
            // Settle leadership before the first pass, so a leader's first pass already writes.
            if let Err(e) = lease.ensure_table().await {
                tracing::error!(error = %e, "cannot create the lease table; observing only until it exists");
            }
            take_turn(&lease, &leader, &status).await;
            Some(tokio::spawn(hold_lease(lease, leader.clone(), status.clone(), stop_rx.clone())))
        }
        None => None,
    };
    let alerts = options.alerts.then(|| Arc::new(AlertSink::new(&own, &counter)));
    let permits = Arc::new(Semaphore::new(options.max_parallel_envs.max(1)));
    let reload = Arc::new(tokio::sync::Notify::new());
    spawn_sighup(reload.clone());

    let mut loops = Vec::new();
    for env in &options.envs {
        let task = EnvLoop {
            options: options.clone(),
            env: env.clone(),
            status: status.clone(),
            leader: leader.clone(),
            alerts: alerts.clone(),
            permits: permits.clone(),
            reload: reload.clone(),
        };
        loops.push(tokio::spawn(task.run(stop_rx.clone())));
    }

    shutdown_signal().await;
    tracing::info!("stop requested: finishing passes in flight");
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(options.grace, async {
        for l in loops {
            let _ = l.await;
        }
        if let Some(task) = lease_task {
            let _ = task.await;
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(grace = ?options.grace, "passes still running after the grace period; exiting");
    }
    Ok(0)
}

/// One attempt to take or renew the lease; a failed renewal steps down.
async fn take_turn(lease: &Lease, leader: &AtomicBool, status: &SharedStatus) {
    let held = match lease.try_acquire().await {
        Ok(held) => held,
        Err(e) => {
            tracing::warn!(error = %e, "lease renewal failed; stepping down");
            false
        }
    };
    if held != leader.swap(held, Ordering::SeqCst) {
        tracing::info!(leader = held, "leadership changed");
    }
    if let Ok(mut s) = status.lock() {
        s.leader = held;
    }
}

/// Renews the lease (or waits for it) until stopped, then releases it.
async fn hold_lease(lease: Lease, leader: Arc<AtomicBool>, status: SharedStatus, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(lease.renew_every()) => {}
            _ = stop.changed() => break,
        }
        take_turn(&lease, &leader, &status).await;
    }
    leader.store(false, Ordering::SeqCst);
    if let Err(e) = lease.release().await {
        tracing::warn!(error = %e, "could not release the lease; it expires by itself");
    }
}

/// The loop of one environment.
struct EnvLoop {
    options: Options,
    env: String,
    status: SharedStatus,
    leader: Arc<AtomicBool>,
    alerts: Option<Arc<AlertSink>>,
    permits: Arc<Semaphore>,
    reload: Arc<tokio::sync::Notify>,
}

/// The newest modification time of an environment's spec files.
fn spec_stamp(dir: &Path, env: &str) -> Option<SystemTime> {
    [dir.join(BASE_FILE), dir.join(format!("{env}.yaml"))].iter().filter_map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok()).max()
}

/// `base` plus up to 10% of it, varying between passes and replicas.
fn jittered(base: Duration) -> Duration {
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    base + base.mul_f64(f64::from((nanos ^ std::process::id()) % 1000) / 10_000.0)
}

impl EnvLoop {
    async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut spec: Option<EnvSpec> = None;
        let mut stamp = None;
        let mut failures = backoff::ExponentialBackoffBuilder::new()
            .with_initial_interval(Duration::from_secs(2))
            .with_max_interval(self.options.interval)
            .with_max_elapsed_time(None)
            .build();
        let mut next_full = tokio::time::Instant::now();
        let mut next_fast = tokio::time::Instant::now() + self.options.fast_interval;
        loop {
            let wake = next_full.min(next_fast);
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {}
                _ = self.reload.notified() => { stamp = None; next_full = tokio::time::Instant::now(); }
                _ = stop.changed() => return,
            }
            if *stop.borrow() {
                return;
            }
            let current = spec_stamp(&self.options.specs, &self.env);
            if spec.is_none() || current != stamp {
                stamp = current;
                match spec::load(&self.options.specs, &self.env) {
                    Ok(s) => {
                        if spec.is_some() {
                            tracing::info!(env = %self.env, "spec changed; reloaded");
                        }
                        spec = Some(s);
                    }
                    Err(e) => {
                        tracing::error!(env = %self.env, error = %e, "spec invalid; keeping the last valid spec");
                        if let Ok(mut s) = self.status.lock() {
                            s.record_spec_error(&self.env);
                        }
                    }
                }
            }
            let now = tokio::time::Instant::now();
            let scope = if now >= next_full { Scope::Full } else { Scope::Network };
            let Some(env_spec) = &spec else {
                next_full = now + self.options.interval;
                next_fast = now + self.options.fast_interval;
                continue;
            };
            let ok = self.pass(env_spec, scope).await;
            let now = tokio::time::Instant::now();
            if ok {
                failures.reset();
                if scope == Scope::Full {
                    next_full = now + jittered(self.options.interval);
                }
                next_fast = now + jittered(self.options.fast_interval);
            } else {
                let retry = failures.next_backoff().unwrap_or(self.options.interval);
                next_full = now + retry;
                next_fast = now + retry.max(self.options.fast_interval);
            }
        }
    }

    /// One pass; returns whether it went without errors.
    async fn pass(&self, env: &EnvSpec, scope: Scope) -> bool {
        let Ok(_permit) = self.permits.acquire().await else { return false };
        let config = env_config(self.options.region.clone().or_else(|| env.spec.region.clone()), env.spec.account.as_ref()).await;
        let counter = CallCounter::default();
        let registry: Vec<Box<dyn Kind>> =
            kinds::registry(&config, &counter).into_iter().filter(|k| scope == Scope::Full || k.name().starts_with("ec2.")).collect();
        let writes = self.leader.load(Ordering::SeqCst) && !self.options.observe_only;
        let mode = if writes { Mode::Apply } else { Mode::Plan };
        let report = reconcile(env, &registry, &counter, mode, &RetryPolicy::default()).await;
        let s = &report.summary;
        tracing::info!(
            env = %report.env, scope = ?scope, mode = report.mode, created = s.create, updated = s.update, deleted = s.delete,
            unchanged = s.unchanged, failed = s.failed, reads = report.calls.reads, writes = report.calls.writes, ms = report.duration_ms, "pass done"
        );
        for e in &report.errors {
            tracing::error!(env = %report.env, error = %e, "pass error");
        }
        if let Some(sink) = &self.alerts {
            if let Err(e) = sink.publish(&report).await {
                tracing::warn!(env = %report.env, error = %e, "could not publish drift alerts");
            }
        }
        if let Ok(mut status) = self.status.lock() {
            status.record(&report);
        }
        report.errors.is_empty() && report.summary.failed == 0
    }
}

fn spawn_sighup(reload: Arc<tokio::sync::Notify>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else { return };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: re-reading specs");
            reload.notify_waiters();
        }
    });
    #[cfg(not(unix))]
    let _ = reload;
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

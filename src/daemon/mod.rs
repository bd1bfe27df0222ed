//! `sentry-operator run`: the long-running controller.
//!
//! Each environment has two loops: full passes on an interval with jitter,
//! and passes over the networking kinds (whitelist EIPs, NAT gateways,
//! routes, security groups) on a shorter "fast" interval. The network loop is
//! the only writer of the networking kinds (a full pass observes them, to
//! resolve references, and leaves their repairs to it), so the two never race
//! and a hung full pass never holds the whitelist guard back. Every pass has
//! a deadline: when AWS has sent it no reply for that long, the pass is
//! abandoned, counted, logged and alerted as failed, and the environment is
//! stale until a pass succeeds again. (A pass that is only slow, polling a NAT
//! gateway or a Redis group that takes minutes to become available, keeps
//! receiving replies and goes on; every such wait has its own limit.) A
//! bounded number of full passes run at once. A failing pass is retried with
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

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::sync::{watch, Semaphore};

use crate::alerts::{self, AlertSink};
use crate::aws::{load_config, CallCounter, Timeouts};
use crate::engine::{Mode, Scope};
use crate::runtime::Runtime;
use crate::spec::{self, EnvSpec, BASE_FILE};
use http::{label, SharedStatus, Status};
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
    /// Time limits of every AWS request.
    pub timeouts: Timeouts,
    /// How long a pass may go without any reply from AWS before it is
    /// abandoned; `None`: its interval, at least [`MIN_DEFAULT_DEADLINE`].
    pub pass_deadline: Option<Duration>,
}

/// The shortest default pass deadline (a pass's longest quiet spell between AWS replies).
pub const MIN_DEFAULT_DEADLINE: Duration = Duration::from_secs(30);

/// Runs until SIGTERM / SIGINT; returns the exit status.
pub async fn run(options: Options) -> anyhow::Result<u8> {
    let status: SharedStatus = Arc::new(Mutex::new(Status::new(options.envs.clone(), options.lease_table.is_none(), options.interval)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let leader = Arc::new(AtomicBool::new(options.lease_table.is_none()));
    let own = load_config(options.region.clone(), options.timeouts).await;
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
    let network_permits = Arc::new(Semaphore::new(options.max_parallel_envs.max(1)));
    let reload = Arc::new(tokio::sync::Notify::new());
    spawn_sighup(reload.clone());

    let mut loops = Vec::new();
    for env in &options.envs {
        let specs = Arc::new(SpecSource::new(&options.specs, env));
        for (scope, permits) in [(Scope::Full, permits.clone()), (Scope::Fast, network_permits.clone())] {
            let task = EnvLoop {
                options: options.clone(),
                env: env.clone(),
                scope,
                specs: specs.clone(),
                status: status.clone(),
                leader: leader.clone(),
                alerts: alerts.clone(),
                permits,
                reload: reload.clone(),
            };
            loops.push(tokio::spawn(task.run(stop_rx.clone())));
        }
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
    if let Some(sink) = &alerts {
        for env in &options.envs {
            if !matches!(tokio::time::timeout(FINAL_FLUSH, sink.flush(env)).await, Ok(Ok(_))) {
                tracing::warn!(env = %env, "some alert events could not be delivered before exiting");
            }
        }
    }
    Ok(0)
}

/// How long the alerts still queued at exit may take to go out, per environment.
const FINAL_FLUSH: Duration = Duration::from_secs(5);

/// One attempt to take or renew the lease, bounded by a third of the lease
/// (so a hung renewal steps down long before another replica may take over);
/// a failed or late renewal steps down.
async fn take_turn(lease: &Lease, leader: &AtomicBool, status: &SharedStatus) {
    let held = match tokio::time::timeout(lease.renew_every(), lease.try_acquire()).await {
        Ok(Ok(held)) => held,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "lease renewal failed; stepping down");
            false
        }
        Err(_) => {
            tracing::warn!(limit = ?lease.renew_every(), "lease renewal got no answer in time; stepping down");
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
    match tokio::time::timeout(lease.renew_every(), lease.release()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "could not release the lease; it expires by itself"),
        Err(_) => tracing::warn!("releasing the lease got no answer in time; it expires by itself"),
    }
}

/// The current spec of one environment, shared by its two loops: re-read
/// when its files change (or after SIGHUP); an invalid one is never used.
struct SpecSource {
    dir: PathBuf,
    env: String,
    state: Mutex<SpecState>,
}

#[derive(Default)]
struct SpecState {
    stamp: Option<SystemTime>,
    spec: Option<Arc<EnvSpec>>,
    /// Set by SIGHUP: re-read even if no file changed.
    stale: bool,
}

impl SpecSource {
    fn new(dir: &Path, env: &str) -> Self {
        SpecSource { dir: dir.to_path_buf(), env: env.to_string(), state: Mutex::new(SpecState::default()) }
    }

    /// Makes the next [`SpecSource::current`] re-read the files.
    fn invalidate(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.stale = true;
        }
    }

    /// The last valid spec, re-read first when its files changed.
    fn current(&self, status: &SharedStatus) -> Option<Arc<EnvSpec>> {
        let Ok(mut state) = self.state.lock() else { return None };
        let stamp = spec_stamp(&self.dir, &self.env);
        if state.spec.is_none() || state.stale || stamp != state.stamp {
            state.stamp = stamp;
            state.stale = false;
            match spec::load(&self.dir, &self.env) {
                Ok(loaded) => {
                    if state.spec.is_some() {
                        tracing::info!(env = %self.env, "spec changed; reloaded");
                    }
                    state.spec = Some(Arc::new(loaded));
                }
                Err(e) => {
                    tracing::error!(env = %self.env, error = %e, "spec invalid; keeping the last valid spec");
                    if let Ok(mut s) = status.lock() {
                        s.record_spec_error(&self.env);
                    }
                }
            }
        }
        state.spec.clone()
    }
}

/// One loop of one environment: its full passes, or its network passes.
struct EnvLoop {
    options: Options,
    env: String,
    scope: Scope,
    specs: Arc<SpecSource>,
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
    fn interval(&self) -> Duration {
        match self.scope {
            Scope::Full => self.options.interval,
            Scope::Fast => self.options.fast_interval,
        }
    }

    /// How long one pass may take.
    fn deadline(&self) -> Duration {
        self.options.pass_deadline.unwrap_or_else(|| self.interval().max(MIN_DEFAULT_DEADLINE))
    }

    async fn run(self, mut stop: watch::Receiver<bool>) {
        let interval = self.interval();
        // After a failed pass, the next comes sooner than an interval at first,
        // then later and later up to a full interval.
        let after_failures = ExponentialBuilder::default()
            .with_min_delay(Duration::from_secs(2).min(interval))
            .with_max_delay(self.options.interval)
            .with_jitter()
            .without_max_times();
        let mut failures = after_failures.build();
        let mut next = match self.scope {
            Scope::Full => tokio::time::Instant::now(),
            Scope::Fast => tokio::time::Instant::now() + interval,
        };
        let mut runtime: Option<Runtime> = None;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                _ = self.reload.notified(), if self.scope == Scope::Full => self.specs.invalidate(),
                _ = stop.changed() => return,
            }
            if *stop.borrow() {
                return;
            }
            let Some(env_spec) = self.specs.current(&self.status) else {
                next = tokio::time::Instant::now() + interval;
                continue;
            };
            let region = self.options.region.as_deref();
            let runtime = match runtime.take() {
                Some(r) if r.fits(&env_spec, region) => runtime.insert(r),
                _ => {
                    let new = Runtime::new(&env_spec, region, self.options.timeouts, (self.scope == Scope::Fast).then_some(Scope::Fast)).await;
                    // An environment in an account of its own gets its alerts there, next to its alarms.
                    if let (Some(sink), Some(_)) = (&self.alerts, &env_spec.spec.account) {
                        sink.deliver_in(&self.env, new.config());
                    }
                    runtime.insert(new)
                }
            };
            let ok = self.pass(runtime, &env_spec).await;
            let now = tokio::time::Instant::now();
            if ok {
                failures = after_failures.build();
                next = now + jittered(interval);
            } else {
                next = now + failures.next().unwrap_or(interval).max(interval.min(self.options.fast_interval));
            }
        }
    }

    /// One pass, abandoned when AWS sends no reply for its deadline; returns
    /// whether it went without errors.
    async fn pass(&self, runtime: &Runtime, env: &EnvSpec) -> bool {
        let Ok(_permit) = self.permits.acquire().await else { return false };
        let deadline = self.deadline();
        match while_answered(self.reconcile(runtime, env), runtime.counter(), deadline).await {
            Some(ok) => ok,
            None => {
                let scope = label(self.scope);
                tracing::error!(
                    env = %self.env, scope, deadline = ?deadline,
                    "pass abandoned at its deadline: no reply from AWS for that long (hung or black-holed endpoint); \
                     the environment is stale until a pass succeeds"
                );
                if let Ok(mut status) = self.status.lock() {
                    status.record_abandoned(&self.env, self.scope);
                }
                self.alert(vec![alerts::stale_event(&self.env, scope, deadline)]);
                false
            }
        }
    }

    async fn reconcile(&self, runtime: &Runtime, env: &EnvSpec) -> bool {
        let scope = self.scope;
        let writes = self.leader.load(Ordering::SeqCst) && !self.options.observe_only;
        let mode = if writes { Mode::Apply } else { Mode::Plan };
        // The fast kinds are written by the fast loop alone.
        let report = runtime.pass(env, mode, scope == Scope::Full).await;
        let s = &report.summary;
        tracing::info!(
            env = %report.env, scope = ?scope, mode = ?report.mode, created = s.create, updated = s.update, deleted = s.delete,
            unchanged = s.unchanged, failed = s.failed, reads = report.calls.reads, writes = report.calls.writes, ms = report.duration_ms, "pass done"
        );
        for e in &report.errors {
            tracing::error!(env = %report.env, error = %e, "pass error");
        }
        self.alert(alerts::events(&report));
        if let Ok(mut status) = self.status.lock() {
            status.record(&report, scope);
        }
        report.errors.is_empty() && report.summary.failed == 0
    }

    /// Queues alert events and delivers them in the background.
    fn alert(&self, events: Vec<serde_json::Value>) {
        let Some(sink) = &self.alerts else { return };
        sink.enqueue(&self.env, events);
        let (sink, env) = (sink.clone(), self.env.clone());
        tokio::spawn(async move {
            if let Err(e) = sink.flush(&env).await {
                tracing::warn!(env = %env, error = %e, "could not publish drift alerts yet; they are kept for the next pass");
            }
        });
    }
}

/// Runs `work` until it finishes, or until `counter` has seen no AWS reply for
/// `deadline` (then `None`): a pass that is busy waiting on AWS (a NAT gateway
/// becoming available takes minutes, polled every few seconds) goes on; one
/// whose requests go unanswered is abandoned.
async fn while_answered<F: std::future::Future>(work: F, counter: &CallCounter, deadline: Duration) -> Option<F::Output> {
    tokio::pin!(work);
    let mut replies = counter.replies();
    let mut last_reply = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(250).min(deadline));
    loop {
        tokio::select! {
            out = &mut work => return Some(out),
            _ = tick.tick() => {
                let now = counter.replies();
                if now != replies {
                    replies = now;
                    last_reply = tokio::time::Instant::now();
                } else if last_reply.elapsed() >= deadline {
                    return None;
                }
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_pass_is_abandoned_only_when_aws_stops_answering() {
        let deadline = Duration::from_secs(30);
        // Slow but answered: a reply every 10 s for 5 minutes.
        let counter = CallCounter::default();
        let polling = async {
            for _ in 0..30 {
                tokio::time::sleep(Duration::from_secs(10)).await;
                counter.record_reply();
            }
            "done"
        };
        assert_eq!(while_answered(polling, &counter, deadline).await, Some("done"));

        // Unanswered: the pass is abandoned once 30 s pass without a reply.
        let silent = CallCounter::default();
        let started = tokio::time::Instant::now();
        let hung = async {
            silent.record_reply();
            std::future::pending::<()>().await
        };
        assert_eq!(while_answered(hung, &silent, deadline).await, None);
        let waited = started.elapsed();
        assert!(waited >= deadline && waited < deadline + Duration::from_secs(1), "{waited:?}");
    }
}

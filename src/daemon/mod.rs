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
//! grace period) and the process exits 0. With a lease table, each
//! environment has its own lease and replicas share them fairly (see
//! [`leases`]); only an environment's holder writes it, and only while its
//! spec is not older than the revision the table shows applied. Specs come
//! from a directory or an S3 prefix (see [`crate::source`]); a changed set is
//! used only once every environment of it is valid.
//!
//! With `--events` ([`crate::events`]), each environment also has a feed
//! reading its event queue: the resources an API call touched are repaired
//! by a narrowed pass of the loop that writes their kind (the whitelist's
//! kinds by the fast loop, every other kind by the full loop), between its
//! periodic passes. The full pass then runs every 10 minutes, and the fast
//! pass reads only the whitelist's kinds (Elastic IPs, NAT gateways, routes).

pub mod http;
pub mod leases;
pub mod page;
pub mod schedule;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Semaphore};

use crate::alerts::{self, AlertSink};
use crate::aws::{load_config, CallCounter, Timeouts};
use crate::engine::apply::{Narrowing, Writes};
use crate::engine::focus::Focus;
use crate::engine::plan::Action;
use crate::engine::report::Report;
use crate::engine::{Mode, Scope};
use crate::events::feed::{Feed, Inbox};
use crate::events::plumbing;
use crate::kinds::read::TagReads;
use crate::lease::revision::Revision;
use crate::lease::{LeaseTable, Writer};
use crate::runtime::Runtime;
use crate::source::{DirStamp, Location, Source};
use crate::spec::EnvSpec;
use http::{label, SharedStatus, Status};
use leases::{Leases, Permit};
use schedule::Schedule;

/// How the daemon runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where the specs are: a directory or an S3 prefix.
    pub specs: Location,
    /// How often an S3 spec source is listed for changes.
    pub spec_poll: Duration,
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
    /// DynamoDB table of the per-environment leases; `None` runs as the only replica.
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
    /// Event-driven repair (`--events`).
    pub events: bool,
    /// How kinds read tags.
    pub tag_reads: TagReads,
    /// AWS requests a minute the event-driven passes of one loop may spend (a burst of as many first).
    pub event_budget: u32,
}

/// Default seconds between full passes.
pub const INTERVAL: u64 = 60;
/// Default seconds between fast passes.
pub const FAST_INTERVAL: u64 = 4;
/// Default seconds between full passes with `--events` (events announce drift; the full pass is the backstop).
pub const EVENTS_INTERVAL: u64 = 600;
/// Default seconds between fast passes with `--events`: the whitelist guard's
/// backstop for an event lost (events announce its drift within a second of
/// their record), at four reads a pass (the addresses, the NAT gateways, the
/// routes and the ledger on the VPC): 480 requests an hour. At 20 s a quiet
/// prod estate measured 1,554 requests an hour, over the 1,500 budget.
pub const EVENTS_FAST_INTERVAL: u64 = 30;
/// How long a loop woken by an event waits for the rest of a burst before its narrowed pass.
const GATHER: Duration = Duration::from_millis(250);
/// Default AWS requests a minute the event-driven passes of one loop may spend.
pub const EVENT_BUDGET: u32 = 120;

/// The API budget of a loop's event-driven passes: a token bucket of
/// requests, `per_minute` refilled a minute, holding at most as many. A pass
/// starts only when the bucket is not in debt, and pays for what it made:
/// an isolated event is repaired at once, a storm at most `per_minute`
/// requests a minute, however many events it brings.
#[derive(Debug)]
struct Budget {
    per_minute: f64,
    tokens: f64,
    at: tokio::time::Instant,
}

impl Budget {
    fn new(per_minute: u32) -> Self {
        let per_minute = f64::from(per_minute.max(1));
        Budget { per_minute, tokens: per_minute, at: tokio::time::Instant::now() }
    }

    fn refill(&mut self) {
        let now = tokio::time::Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * self.per_minute / 60.0).min(self.per_minute);
        self.at = now;
    }

    /// How long until the next pass may start.
    fn wait(&mut self) -> Duration {
        self.refill();
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens * 60.0 / self.per_minute)
        }
    }

    /// Pays for a pass's requests.
    fn spend(&mut self, requests: u64) {
        self.refill();
        self.tokens -= requests as f64;
    }
}

/// The shortest default pass deadline (a pass's longest quiet spell between AWS replies).
pub const MIN_DEFAULT_DEADLINE: Duration = Duration::from_secs(30);

/// Runs until SIGTERM / SIGINT; returns the exit status.
pub async fn run(options: Options) -> anyhow::Result<u8> {
    let status: SharedStatus = Arc::new(Mutex::new(Status::new(options.envs.clone(), options.lease_table.is_none(), options.interval)));
    let (stop_tx, stop_rx) = watch::channel(false);
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
    let plumbed = options.events.then(|| kinds_rules(&own, &counter));
    let specs = Arc::new(Specs::new(Source::new(options.specs.clone(), &own, &counter), &options.envs, options.spec_poll, plumbed.clone()));
    let table = match &options.lease_table {
        Some(reference) => {
            let table = LeaseTable::new(&own, &counter, reference, Writer::this_process(false), options.lease_duration)?;
            if let Err(e) = table.ensure_table(true).await {
                tracing::error!(error = %e, "cannot create the lease table; observing only until it exists");
            }
            Some(table)
        }
        None => None,
    };
    let leases = Arc::new(Leases::new(table, &options.envs, status.clone()));
    // Settle the leases before the first pass, so a leader's first pass already writes.
    leases.turn().await;
    let lease_task = tokio::spawn(leases.clone().keep(stop_rx.clone(), options.grace));
    let alerts = options.alerts.then(|| Arc::new(AlertSink::new(&own, &counter)));
    let permits = Arc::new(Semaphore::new(options.max_parallel_envs.max(1)));
    let network_permits = Arc::new(Semaphore::new(options.max_parallel_envs.max(1)));
    let reload = Arc::new(tokio::sync::Notify::new());
    spawn_sighup(reload.clone());

    let mut loops = Vec::new();
    for env in &options.envs {
        let inbox = options.events.then(|| Arc::new(Inbox::default()));
        if let (Some(inbox), Some(rules)) = (&inbox, &plumbed) {
            let feed = FeedTask {
                env: env.clone(),
                options: options.clone(),
                specs: specs.clone(),
                status: status.clone(),
                leases: leases.clone(),
                alerts: alerts.clone(),
            };
            loops.push(tokio::spawn(feed.run(inbox.clone(), rules.clone(), stop_rx.clone())));
        }
        for (scope, permits) in [(Scope::Full, permits.clone()), (Scope::Fast, network_permits.clone())] {
            let task = EnvLoop {
                options: options.clone(),
                env: env.clone(),
                scope,
                specs: specs.clone(),
                status: status.clone(),
                leases: leases.clone(),
                alerts: alerts.clone(),
                permits,
                reload: reload.clone(),
                inbox: inbox.clone(),
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
        let _ = lease_task.await;
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

/// How often the events of quiet passes go out (the heartbeat alarm counts them over five minutes).
const QUIET_FLUSH: Duration = Duration::from_secs(60);

/// How long the alerts still queued at exit may take to go out, per environment.
const FINAL_FLUSH: Duration = Duration::from_secs(5);

/// The rules of every kind (what the event rule matches, where each kind's repairs go).
fn kinds_rules(config: &aws_config::SdkConfig, counter: &CallCounter) -> Vec<crate::engine::Rules> {
    crate::kinds::registry(config, counter, TagReads::default()).iter().map(|k| k.rules()).collect()
}

/// Starts an environment's event feed once its spec (its account and region) is known.
struct FeedTask {
    env: String,
    options: Options,
    specs: Arc<Specs>,
    status: SharedStatus,
    leases: Arc<Leases>,
    alerts: Option<Arc<AlertSink>>,
}

impl FeedTask {
    async fn run(self, inbox: Arc<Inbox>, rules: Vec<crate::engine::Rules>, mut stop: watch::Receiver<bool>) {
        let spec = loop {
            if let Some((spec, _)) = self.specs.current(&self.env, &self.status).await {
                break spec;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                _ = stop.changed() => return,
            }
        };
        let region = self.options.region.clone().or_else(|| spec.spec.region.clone());
        let config = crate::aws::env_config(region, spec.spec.account.as_ref(), self.options.timeouts).await;
        let counter = CallCounter::default();
        let feed = Feed::new(&self.env, plumbing::name(&self.env), rules, &config, &counter);
        let (leases, env) = (self.leases.clone(), self.env.clone());
        let alerts = self.alerts.clone();
        let lost = move |queue: &str| {
            tracing::error!(env = %env, queue, "the event queue is gone: events are not read until a full pass re-creates it (starting now)");
            if let Some(sink) = &alerts {
                sink.enqueue(&env, vec![alerts::events_interrupted_event(&env, queue)]);
            }
        };
        let env = self.env.clone();
        feed.run(inbox, move || leases.leads(&env), lost, stop).await;
    }
}

/// The specs of the daemon's environments, shared by their loops: read again
/// when the source changes (a directory's files, at every pass; an S3 prefix,
/// listed every poll interval) or after SIGHUP. A changed set is used only
/// when every environment in it is valid; otherwise the last valid set stays.
struct Specs {
    source: Source,
    envs: Vec<String>,
    poll: Duration,
    /// With `--events`: the kinds' rules, for each environment's event plumbing.
    plumbed: Option<Vec<crate::engine::Rules>>,
    state: tokio::sync::Mutex<SpecsState>,
}

#[derive(Default)]
struct SpecsState {
    /// A directory's stamp when last read.
    stamp: Option<DirStamp>,
    /// When an S3 source was last listed.
    polled: Option<tokio::time::Instant>,
    /// Set by SIGHUP: read again even if nothing seems changed.
    stale: bool,
    /// The valid set in use: each environment's spec and revision.
    current: BTreeMap<String, (Arc<EnvSpec>, Revision)>,
}

impl Specs {
    fn new(source: Source, envs: &[String], poll: Duration, plumbed: Option<Vec<crate::engine::Rules>>) -> Self {
        Specs { source, envs: envs.to_vec(), poll, plumbed, state: tokio::sync::Mutex::new(SpecsState::default()) }
    }

    /// Makes the next [`Specs::current`] read the source again.
    async fn invalidate(&self) {
        self.state.lock().await.stale = true;
    }

    /// `env`'s spec and revision in the valid set, read again first when due.
    async fn current(&self, env: &str, status: &SharedStatus) -> Option<(Arc<EnvSpec>, Revision)> {
        let mut state = self.state.lock().await;
        let stamp = self.source.dir_stamp();
        let due = state.current.is_empty()
            || state.stale
            || match &stamp {
                Some(_) => stamp != state.stamp,
                None => state.polled.map_or(true, |p| p.elapsed() >= self.poll),
            };
        if due {
            state.stale = false;
            state.polled = Some(tokio::time::Instant::now());
            // A source that could not be read is tried again at the next pass.
            if self.read(&mut state, status).await {
                state.stamp = stamp;
            }
        }
        state.current.get(env).cloned()
    }

    /// Reads the source; whether it could be read (valid or not).
    async fn read(&self, state: &mut SpecsState, status: &SharedStatus) -> bool {
        let url = self.source.location().url();
        let snapshot = match self.source.snapshot(&self.envs).await {
            Ok(snapshot) => snapshot,
            Err(e @ crate::source::SourceError::Incomplete { .. }) => {
                tracing::warn!(source = %url, error = %e, "spec set being published; keeping the last valid set");
                return false;
            }
            Err(e) => {
                tracing::error!(source = %url, error = %e, "cannot read the specs; keeping the last valid set");
                if let Ok(mut s) = status.lock() {
                    self.envs.iter().for_each(|env| s.record_spec_error(env));
                }
                return false;
            }
        };
        let mut loaded = BTreeMap::new();
        let mut invalid = false;
        for env in &self.envs {
            match snapshot.load(env) {
                Ok(mut spec) => match Revision::of(&spec, snapshot.label.as_deref()) {
                    Ok(revision) => {
                        // The plumbing is the operator's, not the spec's: not part of its revision.
                        if let Some(rules) = &self.plumbed {
                            plumbing::install(&mut spec, rules);
                        }
                        loaded.insert(env.clone(), (Arc::new(spec), revision));
                    }
                    Err(e) => {
                        invalid = true;
                        tracing::error!(env = %env, error = %e, "cannot hash the spec; keeping the last valid set");
                    }
                },
                Err(e) => {
                    invalid = true;
                    tracing::error!(env = %env, source = %url, error = %e, "spec invalid; keeping the last valid set");
                    if let Ok(mut s) = status.lock() {
                        s.record_spec_error(env);
                    }
                }
            }
        }
        if invalid {
            return true;
        }
        let changed: Vec<String> =
            loaded.iter().filter(|(env, (_, r))| state.current.get(*env).map(|(_, old)| old) != Some(r)).map(|(env, _)| env.clone()).collect();
        if !changed.is_empty() {
            let revisions: Vec<String> = loaded.iter().map(|(env, (_, r))| format!("{env}={r}")).collect();
            tracing::info!(source = %url, revisions = ?revisions, changed = ?changed, s3_versions = ?snapshot.versions, "spec set in use");
        }
        state.current = loaded;
        true
    }
}

/// One loop of one environment: its full passes, or its network passes.
struct EnvLoop {
    options: Options,
    env: String,
    scope: Scope,
    specs: Arc<Specs>,
    status: SharedStatus,
    leases: Arc<Leases>,
    alerts: Option<Arc<AlertSink>>,
    permits: Arc<Semaphore>,
    reload: Arc<tokio::sync::Notify>,
    /// With `--events`: the environment's pending event work and known handles.
    inbox: Option<Arc<Inbox>>,
}

/// Why a pass runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Trigger {
    /// Its interval came.
    Interval,
    /// An event announced a change.
    Event,
}

impl EnvLoop {
    fn interval(&self) -> Duration {
        match self.scope {
            Scope::Full => self.options.interval,
            Scope::Fast | Scope::Whitelist => self.options.fast_interval,
        }
    }

    /// Wakes when the feed has work for this loop (never without events).
    async fn event(&self) {
        match (&self.inbox, self.scope) {
            (Some(inbox), Scope::Full) => inbox.full_ready.notified().await,
            (Some(inbox), _) => inbox.fast_ready.notified().await,
            (None, _) => std::future::pending().await,
        }
    }

    /// The pending event work of this loop, taken.
    fn take_pending(&self) -> Option<Focus> {
        let inbox = self.inbox.as_ref()?;
        let pending = if self.scope == Scope::Full { &inbox.full } else { &inbox.fast };
        pending.lock().ok()?.take()
    }

    /// What a pass of this loop covers and writes; `focus` narrows it to
    /// what an event named (a full pass until a full pass has succeeded).
    fn narrowing(&self, runtime: &Runtime, focus: Option<Focus>) -> Narrowing {
        let known = self.inbox.as_ref().map(|i| i.known.clone());
        let learnt = self.inbox.as_ref().is_some_and(|i| i.full_pass_done.load(std::sync::atomic::Ordering::SeqCst));
        let events = self.inbox.is_some();
        let mut focus = focus.unwrap_or_default();
        if !learnt {
            // No full pass yet: a narrowed pass could not resolve references to the kinds it leaves out.
            focus = Focus { causes: focus.causes, ..Focus::default() };
        }
        let writes = match self.scope {
            Scope::Full if events => Writes::Above(Scope::Whitelist),
            Scope::Full => Writes::Above(Scope::Fast),
            _ if events => Writes::UpTo(Scope::Whitelist),
            _ => Writes::All,
        };
        if self.scope != Scope::Full {
            // The fast loop reads its kinds whole, every time: the whitelist's kinds once handles are
            // known, else every networking kind; an event only brings its pass forward (and its cause).
            focus.kinds = Some(runtime.kinds_up_to(if events && learnt { Scope::Whitelist } else { Scope::Fast }));
            focus.resources.clear();
        }
        Narrowing { writes, focus, known }
    }

    /// How long one pass may take.
    fn deadline(&self) -> Duration {
        self.options.pass_deadline.unwrap_or_else(|| self.interval().max(MIN_DEFAULT_DEADLINE))
    }

    async fn run(self, mut stop: watch::Receiver<bool>) {
        let interval = self.interval();
        let first = match self.scope {
            Scope::Full => tokio::time::Instant::now(),
            Scope::Fast | Scope::Whitelist => tokio::time::Instant::now() + interval,
        };
        let mut schedule = Schedule::new(first, interval, self.options.interval, self.options.fast_interval);
        let mut runtime: Option<Runtime> = None;
        let mut budget = Budget::new(self.options.event_budget);
        loop {
            let trigger = tokio::select! {
                _ = tokio::time::sleep_until(schedule.next()) => Trigger::Interval,
                _ = self.reload.notified(), if self.scope == Scope::Full => {
                    self.specs.invalidate().await;
                    Trigger::Interval
                }
                _ = self.event() => Trigger::Event,
                _ = stop.changed() => return,
            };
            if *stop.borrow() {
                return;
            }
            if trigger == Trigger::Event {
                // Let the rest of a burst arrive (one pass for all of it), and keep to the budget.
                let owed = budget.wait();
                if owed > GATHER {
                    tracing::info!(env = %self.env, scope = label(self.scope), wait = ?owed, "event-driven passes at their API budget: the next waits");
                }
                tokio::select! {
                    _ = tokio::time::sleep(owed.max(GATHER)) => {}
                    _ = stop.changed() => return,
                }
            }
            let Some((env_spec, revision)) = self.specs.current(&self.env, &self.status).await else {
                schedule.without_spec(tokio::time::Instant::now());
                continue;
            };
            let region = self.options.region.as_deref();
            let runtime = match runtime.take() {
                Some(r) if r.fits(&env_spec, region) => runtime.insert(r),
                _ => {
                    let new = Runtime::new(&env_spec, region, self.options.timeouts, self.options.tag_reads).await;
                    // An environment in an account of its own gets its alerts there, next to its alarms.
                    if let (Some(sink), Some(_)) = (&self.alerts, &env_spec.spec.account) {
                        sink.deliver_in(&self.env, new.config());
                    }
                    runtime.insert(new)
                }
            };
            let focus = match (trigger, self.take_pending()) {
                // A periodic pass stays whole: what events named is in it anyway, with its causes.
                (Trigger::Interval, pending) => pending.map(|f| Focus { causes: f.causes, ..Focus::default() }),
                (Trigger::Event, Some(focus)) => Some(focus),
                // Woken with nothing left (a periodic pass took it): no pass.
                (Trigger::Event, None) => continue,
            };
            let narrowing = self.narrowing(runtime, focus);
            let before = runtime.counter().stats();
            let ok = self.pass(runtime, &env_spec, &revision, &narrowing, trigger).await;
            if ok && self.scope == Scope::Full && narrowing.focus.kinds.is_none() {
                if let Some(inbox) = &self.inbox {
                    inbox.full_pass_done.store(true, std::sync::atomic::Ordering::SeqCst);
                }
            }
            if trigger == Trigger::Event {
                let made = runtime.counter().stats().since(&before);
                budget.spend(made.reads + made.writes);
                if !ok {
                    // What the failed pass was to repair is not lost: a full pass (within the budget) covers it.
                    if let Some(inbox) = &self.inbox {
                        inbox.everything();
                    }
                }
                // The periodic schedule goes on as it was.
                continue;
            }
            schedule.passed(ok, tokio::time::Instant::now());
        }
    }

    /// One pass, abandoned when AWS sends no reply for its deadline; returns
    /// whether it went without errors.
    async fn pass(&self, runtime: &Runtime, env: &EnvSpec, revision: &Revision, narrowing: &Narrowing, trigger: Trigger) -> bool {
        let Ok(_permit) = self.permits.acquire().await else { return false };
        let deadline = self.deadline();
        match while_answered(self.reconcile(runtime, env, revision, narrowing, trigger), runtime.counter(), deadline).await {
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

    async fn reconcile(&self, runtime: &Runtime, env: &EnvSpec, revision: &Revision, narrowing: &Narrowing, trigger: Trigger) -> bool {
        let scope = self.scope;
        let permit = if self.options.observe_only { Permit::NotLeader } else { self.leases.permit(&self.env, revision).await };
        self.note_staleness(&permit, revision);
        let mode = if matches!(permit, Permit::Write(_)) { Mode::Apply } else { Mode::Plan };
        if let Permit::Later(why) = &permit {
            tracing::warn!(env = %self.env, why = %why, "observing only in this pass");
        }
        // Each kind is written by one loop alone (see `narrowing`).
        let pass = runtime.pass(env, mode, narrowing);
        let report = match &permit {
            Permit::Write(writing) => match while_held(pass, writing).await {
                Some(report) => report,
                None => {
                    tracing::error!(env = %self.env, scope = label(scope), "the lease lapsed during the pass (no renewal in time); the pass was stopped");
                    return false;
                }
            },
            _ => pass.await,
        };
        if mode == Mode::Apply && scope == Scope::Full && trigger == Trigger::Interval {
            self.leases.record_pass(&self.env, &crate::lease::pass_line(&report, revision)).await;
        }
        drop(permit);
        let s = &report.summary;
        tracing::info!(
            env = %report.env, scope = ?scope, trigger = ?trigger, mode = ?report.mode, created = s.create, updated = s.update, deleted = s.delete,
            unchanged = s.unchanged, failed = s.failed, reads = report.calls.reads, writes = report.calls.writes, ms = report.duration_ms, "pass done"
        );
        log_drift(&report);
        self.follow_new_handles(&report, narrowing);
        for e in &report.errors {
            tracing::error!(env = %report.env, error = %e, "pass error");
        }
        self.alert(alerts::events(&report));
        if let Ok(mut status) = self.status.lock() {
            status.record(&report, scope, narrowing.focus.kinds.is_none());
        }
        report.errors.is_empty() && report.summary.failed == 0
    }

    /// After a pass that covered only some kinds and made a resource anew (a
    /// NAT gateway re-created by the fast loop), asks the full loop for a
    /// pass over every kind: what refers to the new handle elsewhere (an
    /// alarm's dimension) must follow now, not at the next interval.
    fn follow_new_handles(&self, report: &Report, narrowing: &Narrowing) {
        let Some(inbox) = &self.inbox else { return };
        let made =
            |s: &&crate::engine::plan::Step| matches!(s.action, Action::Create | Action::Replace) && s.outcome == Some(crate::engine::plan::Outcome::Applied);
        if narrowing.focus.kinds.is_some() && report.resources.iter().any(|s| made(&s)) {
            tracing::info!(env = %self.env, "a narrowed pass made resources anew: a full pass follows, for what refers to them");
            inbox.everything();
        }
    }

    /// Reports a stale spec (log, metric, alert) when it becomes stale, and
    /// when it catches up.
    fn note_staleness(&self, permit: &Permit, mine: &Revision) {
        let why = match permit {
            Permit::Stale(current) => Some(format!(
                "stale spec: {mine} was superseded by {} (generation {}, applied by {} at {}); observing until the source catches up",
                current.revision,
                current.generation,
                current.by,
                crate::lease::utc(current.at_ms)
            )),
            Permit::Write(_) => None,
            Permit::NotLeader | Permit::Later(_) => return,
        };
        let changed = self.status.lock().map(|mut s| s.set_stale_spec(&self.env, why.clone())).unwrap_or(false);
        match (&why, permit) {
            (Some(why), Permit::Stale(current)) if changed => {
                tracing::error!(env = %self.env, "{why}");
                self.alert(vec![alerts::stale_spec_event(&self.env, mine, current)]);
            }
            (None, _) if changed => tracing::info!(env = %self.env, revision = %mine, "spec caught up with the revision applied; writing again"),
            _ => {}
        }
    }

    /// Queues alert events and delivers them in the background: at once when
    /// something happened, else with the others at most once a minute.
    fn alert(&self, events: Vec<serde_json::Value>) {
        let Some(sink) = &self.alerts else { return };
        let urgent = alerts::urgent(&events);
        sink.enqueue(&self.env, events);
        if !urgent && !sink.quiet_flush_due(&self.env, QUIET_FLUSH) {
            return;
        }
        let (sink, env) = (sink.clone(), self.env.clone());
        tokio::spawn(async move {
            if let Err(e) = sink.flush(&env).await {
                tracing::warn!(env = %env, error = %e, "could not publish drift alerts yet; they are kept for the next pass");
            }
        });
    }
}

/// One log line per drifted resource, with who made the change (or "actor unknown").
fn log_drift(report: &Report) {
    let drifted = report.resources.iter().filter(|s| matches!(s.action, Action::Create | Action::Update | Action::Replace | Action::Delete | Action::Alert));
    for step in drifted.filter(|s| s.outcome != Some(crate::engine::plan::Outcome::Deferred)) {
        let by = step.cause.as_ref().map_or_else(|| "actor unknown".to_string(), ToString::to_string);
        tracing::warn!(env = %report.env, resource = %step.key, name = %step.name, action = ?step.action, outcome = ?step.outcome, "drift: {by}");
    }
}

/// Runs `pass` until it finishes, or until its lease is no longer held (then `None`: dropped, it writes no more).
async fn while_held<F: std::future::Future>(pass: F, writing: &leases::Writing) -> Option<F::Output> {
    tokio::pin!(pass);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            out = &mut pass => return Some(out),
            _ = tick.tick() => if !writing.still_held() { return None },
        }
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
    async fn event_passes_keep_to_their_budget() {
        let mut budget = Budget::new(120);
        assert_eq!(budget.wait(), Duration::ZERO, "an isolated event is repaired at once");
        budget.spend(100);
        assert_eq!(budget.wait(), Duration::ZERO, "a burst up to the budget");
        budget.spend(80);
        // 60 requests in debt at 2 a second: 30 s.
        assert_eq!(budget.wait().as_secs(), 30);
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(budget.wait(), Duration::ZERO);
        // A minute of storm: passes of 40 requests as fast as allowed spend at most the budget, plus the burst.
        let started = tokio::time::Instant::now();
        let mut spent = 0;
        while started.elapsed() < Duration::from_secs(60) {
            tokio::time::advance(budget.wait()).await;
            budget.spend(40);
            spent += 40;
        }
        assert!(spent <= 120 + 40, "{spent} requests in a minute of storm");
        tokio::time::advance(Duration::from_secs(600)).await;
        budget.spend(0);
        assert!(budget.tokens <= 120.0, "the bucket holds at most a minute's budget");
    }

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

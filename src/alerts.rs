//! Drift alerts to CloudWatch: every drift found, every repair, every
//! violation a kind's review found (a typed finding: whitelist, security
//! drift), every abandoned pass and every reconcile error becomes one JSON
//! log event in the group `/sentry-operator/<env>`, written in CloudWatch
//! Embedded Metric Format, so CloudWatch derives the metrics DriftDetected,
//! DriftRepaired, WhitelistViolation, SecurityDrift, EnvironmentStale, StaleSpec,
//! ReconcileErrors and ReconcileDurationMs (dimensions Environment, Kind)
//! with no metrics API call. A pass's events
//! go out in one PutLogEvents, in the background: a slow or hung CloudWatch
//! never holds a pass back, and undelivered events wait for the next flush.
//! A quiet pass's summary waits for the others, at most a minute.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_cloudwatchlogs::types::InputLogEvent;
use aws_sdk_cloudwatchlogs::Client;
use serde_json::{json, Value};

use crate::aws::{AwsError, AwsResult, CallCounter};
use crate::engine::permissions::{Grant, Permissions};
use crate::engine::plan::{Action, Outcome};
use crate::engine::report::Report;
use crate::engine::Mode;
use crate::lease::now_ms;
use crate::lease::revision::{Applied, Revision};

/// What this module's calls need of IAM (`sentry-operator iam-policy` gathers it).
#[rustfmt::skip]
pub const PERMISSIONS: Permissions = Permissions {
    reads: &[],
    grants: &[Grant::allow("TheOperatorsAlertsOfThisEnvironment", &["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"], &["arn:aws:logs:*:*:log-group:/sentry-operator/*", "arn:aws:logs:*:*:log-group:/sentry-operator/*:log-stream:*"])],
};

/// The CloudWatch metric namespace.
pub const NAMESPACE: &str = "SentryOperator";
/// PutLogEvents takes at most this many events per call ...
const MAX_BATCH: usize = 10_000;
/// ... and this many bytes.
const MAX_BATCH_BYTES: usize = 1_048_576;
/// Undelivered events kept per environment for the next publish.
const MAX_PENDING: usize = 10_000;

/// The log group of an environment's alerts.
pub fn log_group(env: &str) -> String {
    format!("/sentry-operator/{env}")
}

/// One EMF event: `metric` = 1 with the given dimensions, plus `detail`.
/// An event about a kind counts twice: by environment and kind, and by
/// environment alone (what the environment's alarms watch).
fn event(timestamp: i64, env: &str, kind: Option<&str>, metric: &str, unit: &str, value: f64, detail: Value) -> Value {
    let dimensions: Vec<Vec<&str>> = if kind.is_some() { vec![vec!["Environment", "Kind"], vec!["Environment"]] } else { vec![vec!["Environment"]] };
    let mut e = json!({
        "_aws": {
            "Timestamp": timestamp,
            "CloudWatchMetrics": [{ "Namespace": NAMESPACE, "Dimensions": dimensions, "Metrics": [{ "Name": metric, "Unit": unit }] }]
        },
        "Environment": env,
        metric: value,
    });
    if let (Some(kind), Some(map)) = (kind, e.as_object_mut()) {
        map.insert("Kind".into(), kind.into());
    }
    if let (Value::Object(extra), Some(map)) = (detail, e.as_object_mut()) {
        map.extend(extra);
    }
    e
}

/// The EMF event saying that a `scope` pass of `env` was abandoned at its
/// `deadline` (metric `EnvironmentStale`).
pub fn stale_event(env: &str, scope: &str, deadline: Duration) -> Value {
    let what = format!("a {scope} pass did not finish within {deadline:?} and was abandoned");
    let detail = json!({ "event": "stale", "scope": scope, "deadlineSeconds": deadline.as_secs(), "detail": what });
    event(now_ms(), env, None, "EnvironmentStale", "Count", 1.0, detail)
}

/// The EMF event saying that `env`'s spec (`mine`) is older than the
/// revision the lease table shows applied (`current`), so nothing is written.
pub fn stale_spec_event(env: &str, mine: &Revision, current: &Applied) -> Value {
    let detail = json!({
        "event": "stale-spec",
        "specRevision": mine.to_string(),
        "appliedRevision": current.revision.to_string(),
        "appliedGeneration": current.generation,
        "appliedBy": current.by,
        "detail": format!("the spec in use ({mine}) was superseded by {} (generation {}); not writing until the source catches up", current.revision, current.generation),
    });
    event(now_ms(), env, None, "StaleSpec", "Count", 1.0, detail)
}

/// Who made a change, as EMF fields (`actor: unknown` when no event said).
fn attribution(cause: Option<&crate::engine::focus::Attribution>) -> serde_json::Map<String, Value> {
    let value = match cause {
        Some(c) => json!({ "actor": c.actor, "principalType": c.principal_type, "call": c.call, "eventTime": c.at, "sourceIp": c.source_ip }),
        None => json!({ "actor": "unknown" }),
    };
    match value {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    }
}

/// The EMF event saying that `env`'s event queue is gone (metric
/// `EventsInterrupted`): events are not read until a full pass re-creates it.
pub fn events_interrupted_event(env: &str, queue: &str) -> Value {
    let detail = json!({
        "event": "events-interrupted",
        "queue": queue,
        "detail": format!("the event queue {queue} is gone: drift is not announced until a full pass re-creates it"),
    });
    event(now_ms(), env, None, "EventsInterrupted", "Count", 1.0, detail)
}

/// Whether `events` need delivering now: anything but a pass's summary (drift, a violation, an error).
pub fn urgent(events: &[Value]) -> bool {
    events.iter().any(|e| e.get("event").and_then(Value::as_str) != Some("pass"))
}

/// The EMF events of a pass (pure: no AWS call).
pub fn events(report: &Report) -> Vec<Value> {
    let t = now_ms();
    let env = report.env.as_str();
    let mut out = Vec::new();
    for step in &report.resources {
        let (action, repaired) = match (step.action, &step.outcome) {
            (_, Some(Outcome::Deferred)) => continue, // the pass that writes it reports it
            (Action::Create | Action::Update | Action::Replace | Action::Delete, Some(Outcome::Applied)) => ("repaired", true),
            (Action::Create | Action::Update | Action::Replace | Action::Delete, _) if report.mode == Mode::Plan => ("reported (plan only)", false),
            (Action::Create | Action::Update | Action::Replace | Action::Delete, _) => ("repair failed", false),
            (Action::Alert, _) => ("reported (policy: alert)", false),
            (Action::Blocked, _) => ("blocked", false),
            _ => continue,
        };
        let changes: Vec<Value> = if step.changes.is_empty() {
            vec![json!({ "field": null, "desired": null, "live": null })]
        } else {
            step.changes.iter().map(|c| json!({ "field": c.field, "desired": c.desired, "live": c.live })).collect()
        };
        let what = format!("{:?}", step.action).to_lowercase();
        for change in changes {
            let mut detail = json!({ "event": "drift", "resource": step.key.id, "name": step.name, "change": what, "action": action });
            if let Value::Object(d) = &mut detail {
                d.extend(attribution(step.cause.as_ref()));
            }
            if let (Value::Object(d), Value::Object(c)) = (&mut detail, change) {
                d.extend(c);
            }
            out.push(event(t, env, Some(step.key.kind), "DriftDetected", "Count", 1.0, detail.clone()));
            if repaired {
                out.push(event(t, env, Some(step.key.kind), "DriftRepaired", "Count", 1.0, detail));
            }
        }
    }
    for f in report.findings.iter().filter(|f| f.violation) {
        let detail = json!({ "event": "violation", "resource": f.resource.id, "field": f.field, "desired": f.desired, "live": f.live, "detail": f.message });
        out.push(event(t, env, Some(f.resource.kind), f.class.metric(), "Count", 1.0, detail));
    }
    // A broken invariant the apply could not repair: today only an unrecoverable whitelist address.
    for line in &report.invariant_violations {
        out.push(event(t, env, Some("ec2.elastic-ip"), "WhitelistViolation", "Count", 1.0, json!({ "event": "whitelist-violation", "detail": line })));
    }
    for error in &report.errors {
        out.push(event(t, env, None, "ReconcileErrors", "Count", 1.0, json!({ "event": "error", "detail": error })));
    }
    for step in report.resources.iter().filter(|s| matches!(s.outcome, Some(Outcome::Failed(_)))) {
        let detail = json!({ "event": "error", "resource": step.key.id, "detail": step.outcome });
        out.push(event(t, env, Some(step.key.kind), "ReconcileErrors", "Count", 1.0, detail));
    }
    let summary = json!({ "event": "pass", "mode": report.mode, "summary": report.summary, "reads": report.calls.reads, "writes": report.calls.writes });
    out.push(event(t, env, None, "ReconcileDurationMs", "Milliseconds", report.duration_ms as f64, summary));
    out
}

/// Writes alert events to CloudWatch Logs: an environment's events go to its
/// own account once [`AlertSink::deliver_in`] names it (where its alarms on
/// the operator's metrics live), else to the operator's.
pub struct AlertSink {
    client: Client,
    counter: CallCounter,
    /// The clients of environments in accounts of their own.
    env_clients: Mutex<BTreeMap<String, Client>>,
    stream: String,
    /// Events not delivered yet, per environment, serialized once.
    pending: Mutex<BTreeMap<String, Vec<LogEvent>>>,
    /// Environments whose events are being delivered.
    flushing: Mutex<BTreeSet<String>>,
    /// When each environment's quiet events last went out.
    quiet_flushed: Mutex<BTreeMap<String, std::time::Instant>>,
}

impl AlertSink {
    /// A sink using `config` (the operator's own account) for every
    /// environment not named to [`AlertSink::deliver_in`], counting requests in `counter`.
    pub fn new(config: &SdkConfig, counter: &CallCounter) -> Self {
        let client = crate::sdk_client!(aws_sdk_cloudwatchlogs, config, counter);
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "sentry-operator".into());
        AlertSink {
            client,
            counter: counter.clone(),
            env_clients: Mutex::new(BTreeMap::new()),
            stream: format!("{host}-{}", std::process::id()),
            pending: Mutex::new(BTreeMap::new()),
            quiet_flushed: Mutex::new(BTreeMap::new()),
            flushing: Mutex::new(BTreeSet::new()),
        }
    }

    /// Delivers the events of `env` with `config` (the environment's
    /// account, where its alarms watch the operator's metrics) from now on.
    pub fn deliver_in(&self, env: &str, config: &SdkConfig) {
        if let Ok(mut clients) = self.env_clients.lock() {
            clients.insert(env.to_string(), crate::sdk_client!(aws_sdk_cloudwatchlogs, config, self.counter));
        }
    }

    /// The client that delivers the events of `env`.
    fn client_for(&self, env: &str) -> Client {
        self.env_clients.lock().ok().and_then(|c| c.get(env).cloned()).unwrap_or_else(|| self.client.clone())
    }

    /// Creates the group and this replica's stream if they do not exist yet.
    async fn ensure_stream(&self, client: &Client, group: &str) -> Result<(), AwsError> {
        let exists = |r: Result<(), AwsError>| match r {
            Err(e) if e.code.as_deref() == Some("ResourceAlreadyExistsException") => Ok(()),
            other => other,
        };
        exists(client.create_log_group().log_group_name(group).send().await.map(|_| ()).aws("Logs.CreateLogGroup"))?;
        exists(client.create_log_stream().log_group_name(group).log_stream_name(&self.stream).send().await.map(|_| ()).aws("Logs.CreateLogStream"))
    }

    /// Queues events of `env` for the next [`AlertSink::flush`]; beyond
    /// [`MAX_PENDING`] undelivered events, the oldest are dropped.
    pub fn enqueue(&self, env: &str, new: Vec<Value>) {
        self.requeue(env, new.iter().map(|e| LogEvent { timestamp: timestamp(e), message: e.to_string() }).collect());
    }

    /// Whether events that need no one's attention now (a quiet pass's
    /// duration, which the heartbeat alarm counts over five minutes) are due
    /// to go out: at most once every `every` per environment, so that a
    /// quiet daemon makes a PutLogEvents a minute, not one per pass.
    pub fn quiet_flush_due(&self, env: &str, every: Duration) -> bool {
        let Ok(mut flushed) = self.quiet_flushed.lock() else { return true };
        let due = flushed.get(env).map_or(true, |at| at.elapsed() >= every);
        if due {
            flushed.insert(env.to_string(), std::time::Instant::now());
        }
        due
    }

    /// Queues serialized events of `env`, bounded like [`AlertSink::enqueue`].
    fn requeue(&self, env: &str, new: Vec<LogEvent>) {
        let Ok(mut pending) = self.pending.lock() else { return };
        let queue = pending.entry(env.to_string()).or_default();
        queue.extend(new);
        let excess = queue.len().saturating_sub(MAX_PENDING);
        if excess > 0 {
            tracing::warn!(env, dropped = excess, "alert events could not be delivered and the backlog is full; dropping the oldest");
            queue.drain(..excess);
        }
    }

    /// Delivers the queued events of `env` (one PutLogEvents per batch, see [`batches`]);
    /// returns how many. Does nothing while another flush of `env` runs; what
    /// cannot be delivered stays queued for the next flush.
    pub async fn flush(&self, env: &str) -> Result<usize, AwsError> {
        if !self.flushing.lock().map(|mut f| f.insert(env.to_string())).unwrap_or(false) {
            return Ok(0);
        }
        let result = self.deliver(env).await;
        if let Ok(mut f) = self.flushing.lock() {
            f.remove(env);
        }
        result
    }

    async fn deliver(&self, env: &str) -> Result<usize, AwsError> {
        let group = log_group(env);
        let client = self.client_for(env);
        let mut delivered = 0;
        loop {
            let mut events = self.pending.lock().map(|mut p| p.remove(env).unwrap_or_default()).unwrap_or_default();
            if events.is_empty() {
                return Ok(delivered);
            }
            events.sort_by_key(|e| e.timestamp);
            for batch in batches(&events) {
                let mut result = self.put(&client, &group, &events[batch.clone()]).await;
                if matches!(&result, Err(e) if e.code.as_deref() == Some("ResourceNotFoundException")) {
                    result = match self.ensure_stream(&client, &group).await {
                        Ok(()) => self.put(&client, &group, &events[batch.clone()]).await,
                        Err(e) => Err(e),
                    };
                }
                if let Err(e) = result {
                    // Only what was not delivered goes back, before what came meanwhile.
                    let later = self.pending.lock().map(|mut p| p.remove(env).unwrap_or_default()).unwrap_or_default();
                    self.requeue(env, events.split_off(batch.start).into_iter().chain(later).collect());
                    return Err(e);
                }
                delivered += batch.len();
            }
        }
    }

    async fn put(&self, client: &Client, group: &str, batch: &[LogEvent]) -> Result<(), AwsError> {
        let entries: Vec<InputLogEvent> =
            batch.iter().filter_map(|e| InputLogEvent::builder().timestamp(e.timestamp).message(e.message.clone()).build().ok()).collect();
        client.put_log_events().log_group_name(group).log_stream_name(&self.stream).set_log_events(Some(entries)).send().await.aws("Logs.PutLogEvents")?;
        Ok(())
    }
}

/// One event as CloudWatch Logs takes it.
#[derive(Clone, Debug)]
struct LogEvent {
    /// Milliseconds since the epoch.
    timestamp: i64,
    /// The EMF document.
    message: String,
}

/// An event's EMF timestamp (milliseconds).
fn timestamp(event: &Value) -> i64 {
    event["_aws"]["Timestamp"].as_i64().unwrap_or_else(now_ms)
}

/// Splits time-ordered `events` into PutLogEvents batches: at most
/// [`MAX_BATCH`] events, [`MAX_BATCH_BYTES`] bytes (each event counts 26 bytes
/// more than its message) and 24 hours each.
fn batches(events: &[LogEvent]) -> Vec<std::ops::Range<usize>> {
    const DAY_MS: i64 = 24 * 3600 * 1000;
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, event) in events.iter().enumerate() {
        let size = event.message.len() + 26;
        let full = i - start == MAX_BATCH || bytes + size > MAX_BATCH_BYTES || event.timestamp - events[start].timestamp >= DAY_MS;
        if i > start && full {
            out.push(start..i);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < events.len() {
        out.push(start..events.len());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::CallStats;
    use crate::engine::plan::Step;
    use crate::engine::report::Summary;
    use crate::engine::{Delta, FieldChange, Finding, FindingClass, ResourceKey};

    fn report(steps: Vec<Step>) -> Report {
        Report {
            env: "prod".into(),
            mode: Mode::Apply,
            resources: steps,
            summary: Summary::default(),
            errors: vec!["observe sqs.queue: throttled".into()],
            invariant_violations: Vec::new(),
            findings: vec![Finding {
                class: FindingClass::Whitelist,
                resource: ResourceKey { kind: "ec2.elastic-ip", id: "whitelist-1".into() },
                field: Some("AttachedTo".into()),
                desired: Some("nat-1".into()),
                live: Some("eni-1".into()),
                violation: true,
                message: "whitelist-1: 1.2.3.4 attached to eni-1: VIOLATED: ...".into(),
                facts: Default::default(),
            }],
            sections: Vec::new(),
            calls: CallStats::default(),
            duration_ms: 1234,
            layers: Default::default(),
        }
    }

    fn updated() -> Step {
        Step {
            key: ResourceKey { kind: "ec2.route-table", id: "private-b".into() },
            name: "sentry-rt-private-b-prod".into(),
            action: Action::Update,
            changes: vec![FieldChange::of("route 0.0.0.0/0", Some("igw-1".into()), Some("nat-1".into()))],
            note: None,
            desired: None,
            live: None,
            delta: Delta::default(),
            outcome: Some(Outcome::Applied),
            cause: None,
        }
    }

    #[test]
    fn a_quiet_pass_waits_for_the_minute_and_anything_else_goes_at_once() {
        let mut quiet_report = report(Vec::new());
        quiet_report.errors.clear();
        quiet_report.invariant_violations.clear();
        quiet_report.findings.clear();
        let quiet_only = events(&quiet_report);
        assert!(!urgent(&quiet_only), "{quiet_only:?}");
        assert_eq!(quiet_only.len(), 1, "the pass's summary alone");
        assert!(urgent(&events(&report(vec![updated()]))));
        let config = aws_config::SdkConfig::builder().behavior_version(aws_config::BehaviorVersion::latest()).build();
        let sink = AlertSink::new(&config, &CallCounter::default());
        assert!(sink.quiet_flush_due("dev", Duration::from_secs(60)), "the first goes out");
        assert!(!sink.quiet_flush_due("dev", Duration::from_secs(60)), "then once a minute");
        assert!(sink.quiet_flush_due("prod", Duration::from_secs(60)), "per environment");
        assert!(sink.quiet_flush_due("dev", Duration::ZERO));
    }

    #[test]
    fn a_pass_becomes_emf_events() {
        let events = events(&report(vec![updated()]));
        let metric = |e: &Value| e["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"].as_str().unwrap_or_default().to_string();
        let names: Vec<String> = events.iter().map(metric).collect();
        assert_eq!(names, ["DriftDetected", "DriftRepaired", "WhitelistViolation", "ReconcileErrors", "ReconcileDurationMs"]);
        let drift = &events[0];
        assert_eq!(drift["Environment"], "prod");
        assert_eq!(drift["Kind"], "ec2.route-table");
        assert_eq!(drift["DriftDetected"], 1.0);
        assert_eq!(drift["field"], "route 0.0.0.0/0");
        assert_eq!((drift["desired"].as_str(), drift["live"].as_str()), (Some("nat-1"), Some("igw-1")));
        assert_eq!(drift["action"], "repaired");
        assert_eq!(
            drift["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Environment", "Kind"], ["Environment"]]),
            "by kind, and the environment's total"
        );
        assert_eq!(events[4]["ReconcileDurationMs"], 1234.0);
        assert_eq!(events[4]["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0], json!(["Environment"]));
    }

    #[test]
    fn batches_respect_the_count_byte_and_day_limits() {
        let event = |timestamp: i64, size: usize| LogEvent { timestamp, message: "x".repeat(size) };
        let big: Vec<LogEvent> = (0..3000).map(|i| event(i, 1000)).collect();
        let cut = batches(&big);
        assert!(cut.len() >= 3, "3 MB cannot go in one call: {cut:?}");
        assert_eq!(cut.iter().map(|r| r.len()).sum::<usize>(), 3000);
        for r in &cut {
            assert!(big[r.clone()].iter().map(|e| e.message.len() + 26).sum::<usize>() <= MAX_BATCH_BYTES);
        }
        let many: Vec<LogEvent> = (0..25_000).map(|i| event(i, 1)).collect();
        assert!(batches(&many).iter().all(|r| r.len() <= MAX_BATCH));
        let two_days = vec![event(0, 1), event(24 * 3600 * 1000, 1)];
        assert_eq!(batches(&two_days), vec![0..1, 1..2]);
        assert!(batches(&[]).is_empty());
    }
}

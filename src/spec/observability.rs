//! The `observability` section: the services' log groups, the alarms and
//! the SNS topics they notify; their types and their checks.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::model::{DeletionPolicy, Tags};
use super::validate::Checker;

/// CloudWatch Logs.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Observability {
    /// Retention of every log group, in days (7 dev, 14 staging, 30 prod).
    pub log_retention_days: u32,
    /// Log groups by logical id.
    #[serde(default)]
    pub log_groups: BTreeMap<String, LogGroup>,
    /// SNS topics by logical id.
    #[serde(default)]
    pub topics: BTreeMap<String, Topic>,
    /// The topic every alarm notifies unless it names another (logical id in `topics`).
    pub alarm_topic: Option<String>,
    /// CloudWatch alarms by logical id.
    #[serde(default)]
    pub alarms: BTreeMap<String, Alarm>,
}

/// An SNS topic and its subscriptions. A subscription waiting for its
/// endpoint's confirmation is reported, never subscribed again.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Topic {
    /// Physical name; default `sentry-<id>-<env>`.
    pub name: Option<String>,
    /// Subscriptions (the operator owns the list: one added by hand is removed).
    #[serde(default)]
    pub subscriptions: Vec<Subscription>,
    /// Extra tags.
    #[serde(default)]
    pub tags: Tags,
    /// What happens once removed from the spec.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// One subscription of a topic.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Subscription {
    /// `email`, `email-json`, `https`, `http`, `sms`, `sqs`, `lambda`, `firehose` or `application`.
    pub protocol: String,
    /// The address, URL, phone number or ARN.
    pub endpoint: String,
}

/// The subscription protocols SNS knows.
pub const SUBSCRIPTION_PROTOCOLS: &[&str] = &["email", "email-json", "https", "http", "sms", "sqs", "lambda", "firehose", "application"];

/// A CloudWatch alarm on one metric, on metric math over several, or on an
/// anomaly-detection band around one metric; it notifies a topic.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Alarm {
    /// What the alarm means, for whoever it wakes up.
    pub description: String,
    /// The metric alarmed on (with `anomalyBand`: the metric the band surrounds).
    pub metric: Option<AlarmMetric>,
    /// Metric math over `metrics` (by their ids), e.g. `100 * errors / requests`.
    pub expression: Option<String>,
    /// The metrics `expression` names, by id (lower-case first letter).
    #[serde(default)]
    pub metrics: BTreeMap<String, AlarmMetric>,
    /// Width of an anomaly-detection band around `metric`, in standard
    /// deviations: the alarm fires outside it (no threshold then).
    pub anomaly_band: Option<f64>,
    /// `GreaterThanThreshold`, `GreaterThanOrEqualToThreshold`,
    /// `LessThanThreshold`, `LessThanOrEqualToThreshold` (with
    /// `anomalyBand`: `LessThanLowerOrGreaterThanUpperThreshold` and the like).
    pub comparison: String,
    /// The threshold (not with `anomalyBand`).
    pub threshold: Option<f64>,
    /// Periods evaluated.
    #[serde(default = "one")]
    pub evaluation_periods: u32,
    /// Breaching periods among them that fire the alarm; default all.
    pub datapoints_to_alarm: Option<u32>,
    /// `missing`, `notBreaching`, `breaching` or `ignore`.
    #[serde(default = "missing")]
    pub treat_missing_data: String,
    /// The topic notified (logical id in `topics`); default `alarmTopic`.
    pub topic: Option<String>,
    /// Extra tags.
    #[serde(default)]
    pub tags: Tags,
}

/// A metric an alarm reads.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AlarmMetric {
    /// Namespace, e.g. `AWS/SQS`.
    pub namespace: String,
    /// Metric name.
    pub name: String,
    /// `Average`, `Sum`, `Minimum`, `Maximum`, `SampleCount` or a percentile (`p99`).
    pub stat: String,
    /// Seconds per datapoint (10, 30, or a multiple of 60).
    #[serde(default = "sixty")]
    pub period_seconds: u32,
    /// Dimensions. A value may name a resource of the spec: `queue:<id>`,
    /// `cluster:<id>`, `service:<id>`, `redis:<node number>`,
    /// `natGateway:<id>`, `loadBalancer:<id>`, `targetGroup:<id>`; `${env}` is
    /// substituted. `<kind>:*` makes one alarm per resource of that kind
    /// (`<alarm id>-<resource id>`; `${resource}` in the description names it).
    #[serde(default)]
    pub dimensions: BTreeMap<String, String>,
}

fn one() -> u32 {
    1
}

fn sixty() -> u32 {
    60
}

fn missing() -> String {
    "missing".into()
}

/// Comparisons of a threshold alarm.
const THRESHOLD_COMPARISONS: &[&str] = &["GreaterThanThreshold", "GreaterThanOrEqualToThreshold", "LessThanThreshold", "LessThanOrEqualToThreshold"];
/// Comparisons of an anomaly-detection alarm.
const BAND_COMPARISONS: &[&str] = &["LessThanLowerOrGreaterThanUpperThreshold", "LessThanLowerThreshold", "GreaterThanUpperThreshold"];
/// The spec resources a dimension value may name.
pub const DIMENSION_REFERENCES: &[&str] = &["queue", "cluster", "service", "redis", "natGateway", "loadBalancer", "targetGroup"];

/// The logical ids of the spec's resources a dimension value may name by `kind`.
fn spec_ids<'a>(spec: &'a super::model::Spec, kind: &str) -> Vec<&'a str> {
    fn keys(m: Option<Vec<&String>>) -> Vec<&str> {
        m.unwrap_or_default().into_iter().map(String::as_str).collect()
    }
    match kind {
        "queue" => keys(spec.messaging.as_ref().map(|m| m.queues.keys().collect())),
        "cluster" => keys(spec.compute.as_ref().map(|c| c.clusters.keys().collect())),
        "service" => keys(spec.compute.as_ref().map(|c| c.services.keys().collect())),
        "natGateway" => keys(spec.network.as_ref().map(|n| n.nat_gateways.keys().collect())),
        "loadBalancer" => keys(spec.load_balancing.as_ref().map(|l| l.load_balancers.keys().collect())),
        "targetGroup" => keys(spec.load_balancing.as_ref().map(|l| l.target_groups.keys().collect())),
        _ => Vec::new(),
    }
}

impl Alarm {
    /// Every dimension of the alarm's metrics.
    fn dimensions(&self) -> impl Iterator<Item = (&String, &String)> {
        self.metric.iter().chain(self.metrics.values()).flat_map(|m| m.dimensions.iter())
    }

    /// The kinds whose every resource this alarm is about (`<kind>:*` dimensions).
    fn wildcards(&self) -> Vec<&str> {
        let mut kinds: Vec<&str> = self.dimensions().filter_map(|(_, v)| v.strip_suffix(":*")).collect();
        kinds.sort_unstable();
        kinds.dedup();
        kinds
    }
}

impl Observability {
    /// The alarms, each with a `<kind>:*` dimension expanded into one alarm
    /// per resource of that kind in `spec` (`<alarm id>-<resource id>`).
    pub fn expanded_alarms(&self, spec: &super::model::Spec) -> Vec<(String, Alarm)> {
        let mut out = Vec::new();
        for (id, a) in &self.alarms {
            let Some(kind) = a.wildcards().first().copied() else {
                out.push((id.clone(), a.clone()));
                continue;
            };
            let wildcard = format!("{kind}:*");
            for resource in spec_ids(spec, kind) {
                let mut one = a.clone();
                let named = format!("{kind}:{resource}");
                for m in one.metric.iter_mut().chain(one.metrics.values_mut()) {
                    m.dimensions.values_mut().filter(|v| **v == wildcard).for_each(|v| *v = named.clone());
                }
                one.description = one.description.replace("${resource}", resource);
                out.push((format!("{id}-{resource}"), one));
            }
        }
        out
    }
}

impl Checker {
    /// Each dimension value naming a resource of the spec (`queue:<id>`, ...) names one that exists.
    pub(super) fn alarm_references(&mut self, spec: &super::model::Spec, o: &Observability) {
        let ids = |kind: &str| spec_ids(spec, kind);
        for (id, a) in &o.alarms {
            if a.wildcards().len() > 1 {
                self.err(&["observability", "alarms", id], format!("one `<kind>:*` per alarm (found {})", a.wildcards().join(", ")));
            }
            let metrics = a.metric.iter().map(|m| (vec!["metric"], m)).chain(a.metrics.iter().map(|(mid, m)| (vec!["metrics", mid.as_str()], m)));
            for (at, m) in metrics {
                for (name, value) in &m.dimensions {
                    let Some((kind, target)) = value.split_once(':') else { continue };
                    let mut p = vec!["observability", "alarms", id.as_str()];
                    p.extend(at.iter().copied());
                    p.extend(["dimensions", name.as_str()]);
                    if kind == "redis" {
                        let nodes = spec.data.as_ref().and_then(|d| d.redis.as_ref()).map_or(0, |r| r.num_cache_clusters);
                        if !target.parse::<u32>().is_ok_and(|n| (1..=nodes).contains(&n)) {
                            self.err(&p, format!("{value:?}: Redis has nodes 1..={nodes}"));
                        }
                    } else if DIMENSION_REFERENCES.contains(&kind) && target != "*" {
                        self.reference(&p, target, ids(kind), kind);
                    }
                }
            }
        }
    }

    fn alarm_metric(&mut self, at: &[&str], m: &AlarmMetric) {
        let mut p: Vec<&str> = at.to_vec();
        p.push("periodSeconds");
        if !(m.period_seconds == 10 || m.period_seconds == 30 || (m.period_seconds >= 60 && m.period_seconds % 60 == 0)) {
            self.err(&p, format!("{} is not a period CloudWatch takes (10, 30 or a multiple of 60 seconds)", m.period_seconds));
        }
        let percentile = m.stat.strip_prefix('p').is_some_and(|n| n.parse::<f64>().is_ok_and(|n| (0.0..=100.0).contains(&n)));
        if !percentile {
            p.pop();
            p.push("stat");
            self.one_of(&p, &m.stat, &["Average", "Sum", "Minimum", "Maximum", "SampleCount"]);
        }
        for (name, value) in &m.dimensions {
            if value.is_empty() || name.is_empty() || [name, value].iter().any(|s| s.contains(char::is_whitespace) || s.contains(';')) {
                let mut d: Vec<&str> = at.to_vec();
                d.extend(["dimensions", name.as_str()]);
                self.err(&d, format!("{name:?}: {value:?} is not a dimension (non-empty, without spaces or `;`)"));
                continue;
            }
            let Some((kind, _)) = value.split_once(':').filter(|(k, _)| !k.contains('/') && !k.is_empty() && k.chars().all(|c| c.is_ascii_alphabetic())) else {
                continue;
            };
            if !DIMENSION_REFERENCES.contains(&kind) {
                let mut d: Vec<&str> = at.to_vec();
                d.extend(["dimensions", name.as_str()]);
                self.err(&d, format!("{value:?}: `{kind}:` names no kind of resource (known: {})", DIMENSION_REFERENCES.join(", ")));
            }
        }
    }

    fn alarms(&mut self, o: &Observability) {
        for (id, t) in &o.topics {
            self.tags(&["observability", "topics", id], &t.tags);
            for (i, s) in t.subscriptions.iter().enumerate() {
                let index = i.to_string();
                let at = ["observability", "topics", id.as_str(), "subscriptions", index.as_str(), "protocol"];
                self.one_of(&at, &s.protocol, SUBSCRIPTION_PROTOCOLS);
                if s.endpoint.trim().is_empty() {
                    self.err(&at[..5], format!("{:?} is not an endpoint (it is empty)", s.endpoint));
                }
            }
        }
        if let Some(topic) = &o.alarm_topic {
            self.reference(&["observability", "alarmTopic"], topic, o.topics.keys().map(String::as_str), "topic");
        }
        for (id, a) in &o.alarms {
            let at = |field: &'static str| ["observability", "alarms", id.as_str(), field];
            self.tags(&["observability", "alarms", id], &a.tags);
            match (&a.topic, &o.alarm_topic) {
                (Some(topic), _) => self.reference(&at("topic"), topic, o.topics.keys().map(String::as_str), "topic"),
                (None, None) => self.err(&at("topic"), "an alarm notifies a topic: name one here or in observability.alarmTopic"),
                (None, Some(_)) => {}
            }
            match (&a.metric, &a.expression) {
                (Some(m), None) => self.alarm_metric(&at("metric"), m),
                (None, Some(expression)) => {
                    if a.anomaly_band.is_some() {
                        self.err(&at("anomalyBand"), "an anomaly band surrounds one `metric`, not an expression");
                    }
                    if a.metrics.is_empty() {
                        self.err(&at("metrics"), "an expression needs the metrics it names");
                    }
                    for (mid, m) in &a.metrics {
                        let reserved = ["e1", "m1", "band"].contains(&mid.as_str());
                        if reserved || !mid.starts_with(|c: char| c.is_ascii_lowercase()) || !mid.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                            self.err(
                                &["observability", "alarms", id, "metrics", mid],
                                format!("{mid:?} is not a metric id (a lower-case letter, then letters, digits and _; not e1, m1 or band)"),
                            );
                        }
                        self.alarm_metric(&["observability", "alarms", id, "metrics", mid], m);
                    }
                    if expression.trim().is_empty() || expression.contains(';') {
                        self.err(&at("expression"), format!("{expression:?} is not a metric math expression"));
                    }
                }
                _ => self.err(&at("metric"), "an alarm has either `metric` or `expression` (with `metrics`)"),
            }
            match (a.anomaly_band, a.threshold) {
                (Some(band), None) => {
                    if !(band > 0.0 && band.is_finite()) {
                        self.err(&at("anomalyBand"), format!("{band} is not a band width (a positive number of standard deviations)"));
                    }
                    self.one_of(&at("comparison"), &a.comparison, BAND_COMPARISONS);
                }
                (None, Some(threshold)) => {
                    if !threshold.is_finite() {
                        self.err(&at("threshold"), format!("{threshold} is not a threshold"));
                    }
                    self.one_of(&at("comparison"), &a.comparison, THRESHOLD_COMPARISONS);
                }
                (Some(_), Some(_)) => self.err(&at("threshold"), "an anomaly-band alarm has no threshold"),
                (None, None) => self.err(&at("threshold"), "an alarm needs a `threshold` (or an `anomalyBand`)"),
            }
            self.range(&at("evaluationPeriods"), Some(a.evaluation_periods), 1, 1440);
            if let Some(n) = a.datapoints_to_alarm {
                self.range(&at("datapointsToAlarm"), Some(n), 1, a.evaluation_periods);
            }
            self.one_of(&at("treatMissingData"), &a.treat_missing_data, &["missing", "notBreaching", "breaching", "ignore"]);
        }
    }
}

/// A CloudWatch Logs group.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LogGroup {
    /// Physical name, e.g. `/ecs/sentry-oms-${env}`.
    pub name: String,
    /// Overrides `logRetentionDays`.
    pub retention_days: Option<u32>,
}

impl Checker {
    pub(super) fn observability(&mut self, o: &Observability) {
        let allowed = |c: &mut Checker, p: &[&str], days: u32| {
            if !LOG_RETENTION_DAYS.contains(&days) {
                c.err(p, format!("{days} is not a CloudWatch Logs retention period (1, 3, 5, 7, 14, 30, 60, 90, ... days)"));
            }
        };
        allowed(self, &["observability", "logRetentionDays"], o.log_retention_days);
        for (id, g) in &o.log_groups {
            if let Some(days) = g.retention_days {
                allowed(self, &["observability", "logGroups", id, "retentionDays"], days);
            }
        }
        self.alarms(o);
    }
}

/// CloudWatch Logs accepts only these retention periods (days).
pub const LOG_RETENTION_DAYS: &[u32] = &[1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653];

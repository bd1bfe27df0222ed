//! CloudWatch metric alarms: on one metric, on metric math, or on an
//! anomaly-detection band; each notifies its SNS topic. Every alarm is
//! written in the `Metrics` form (metric data queries), so that the three
//! shapes compare alike; one rewritten by hand in the classic single-metric
//! form reads as the same query and compares equal when it means the same.
//!
//! A dimension may name a resource of the spec (`queue:<id>`,
//! `natGateway:<id>`, `loadBalancer:<id>`, ...): names are filled from the
//! spec, ids and ARNs through the engine's references. CloudWatch names a
//! load balancer or target group by the tail of its ARN (`app/<name>/<id>`):
//! written as that tail, read back as the ARN.
//!
//! The client is aws-sdk-cloudwatch 1.99.0, the last on the query protocol
//! (see the pin in Cargo.toml).

use crate::engine::focus::EventMatch;
use crate::engine::permissions::{Grant, Permissions};
use async_trait::async_trait;
use aws_sdk_cloudwatch::types::{AlarmType, ComparisonOperator, Dimension, Metric, MetricAlarm, MetricDataQuery, MetricStat, Tag};
use aws_sdk_cloudwatch::Client;

use crate::aws::{gone_is_ok, required, AwsError, AwsResult};
use crate::engine::{ownership_tags, reference, Delta, Desired, FieldReader, Kind, Layer, Live, ReadCache, Rules, Value};
use crate::kinds::elasticache::replication_group;
use crate::kinds::elbv2::{load_balancer, target_group};
use crate::kinds::read::{common_prefix, describe_each};
use crate::kinds::{ec2, ecs, elasticache, sns, sqs};
use crate::spec::model::{Alarm, AlarmMetric, DeletionPolicy, Tags};
use crate::spec::{physical_name, EnvSpec};

/// Kind name.
pub const KIND: &str = "cloudwatch.alarm";

fields! {
    DESCRIPTION = "Description", METRICS = "Metrics", COMPARISON = "Comparison", THRESHOLD = "Threshold", THRESHOLD_METRIC = "ThresholdMetricId",
    PERIODS = "EvaluationPeriods", DATAPOINTS = "DatapointsToAlarm", MISSING_DATA = "TreatMissingData", ACTIONS = "AlarmActions",
}
/// The word between two queries of the `Metrics` field.
const QUERY_SEPARATOR: &str = ";";
/// The id of the single metric of a metric or band alarm, and of the band.
const METRIC_ID: &str = "m1";
fields! { BAND_ID = "band", EXPRESSION_ID = "e1" }

/// The alarm kind.
pub struct Alarms {
    /// The service's client.
    pub client: Client,
    /// Tags in batch.
    pub tags: crate::kinds::read::TagIndex,
}

/// One metric data query in words:
/// `<id> <returnData> metric <namespace> <name> <stat> <period> [<dimension> <value>]...`
/// or `<id> <returnData> expr <expression>`; a dimension's value may be a reference.
fn metric_query(id: &str, returned: bool, namespace: &str, name: &str, stat: &str, period: i64, dimensions: &[(String, Value)]) -> Value {
    let mut dims: Vec<&(String, Value)> = dimensions.iter().collect();
    dims.sort_by_cached_key(|(k, v)| format!("{k} {v}"));
    let head = [id, &returned.to_string(), "metric", namespace, name, stat, &period.to_string()].map(Value::text);
    Value::Phrase(head.into_iter().chain(dims.into_iter().flat_map(|(k, v)| [Value::text(k), v.clone()])).collect())
}

fn expression_query(id: &str, returned: bool, expression: &str) -> Value {
    let head = [id, &returned.to_string(), "expr"].map(Value::text);
    Value::Phrase(head.into_iter().chain(expression.split_whitespace().map(Value::text)).collect())
}

/// The queries as one field value: ordered by their words, the separator word between two.
fn queries_field(mut queries: Vec<Value>) -> Value {
    queries.sort_by_cached_key(Value::to_string);
    let mut words = Vec::new();
    for q in queries {
        if !words.is_empty() {
            words.push(Value::text(QUERY_SEPARATOR));
        }
        words.push(q);
    }
    Value::Phrase(words)
}

/// A dimension value of the spec as the field holds it (a spec resource's
/// name, or a reference the engine resolves; anything else as written), and
/// the resource it names, which the alarm waits for.
fn dimension_value(env: &EnvSpec, value: &str) -> (Value, Option<(&'static str, String)>) {
    let Some((what, id)) = value.split_once(':') else { return (Value::text(env.substitute(value)), None) };
    let on = |kind: &'static str, id: &str| Some((kind, id.to_string()));
    let referred = |kind: &'static str| (Value::Ref(reference(kind, id)), on(kind, id));
    match what {
        "queue" => {
            let queue = env.spec.messaging.as_ref().and_then(|m| m.queues.get(id));
            (Value::text(queue.map_or_else(|| id.to_string(), |q| q.physical_name(id, &env.env))), on(sqs::KIND, id))
        }
        "cluster" => {
            let cluster = env.spec.compute.as_ref().and_then(|c| c.clusters.get(id));
            (Value::text(physical_name(cluster.and_then(|c| c.name.as_deref()), id, &env.env)), on(ecs::cluster::KIND, id))
        }
        "service" => {
            let service = env.spec.compute.as_ref().and_then(|c| c.services.get(id));
            (Value::text(ecs::service::service_name(service.and_then(|s| s.name.as_deref()), id, &env.env)), on(ecs::service::KIND, id))
        }
        "redis" => {
            let group = elasticache::redis(env).map(|(_, name)| name).unwrap_or_default();
            (Value::text(format!("{group}-{:0>3}", id)), on(replication_group::KIND, replication_group::ID))
        }
        "natGateway" => referred(ec2::NAT_GATEWAY),
        "loadBalancer" => referred(load_balancer::KIND),
        "targetGroup" => referred(target_group::KIND),
        _ => (Value::text(env.substitute(value)), None),
    }
}

/// The query of a spec metric, and the resources it refers to.
fn spec_query(env: &EnvSpec, id: &str, returned: bool, m: &AlarmMetric) -> (Value, Vec<(&'static str, String)>) {
    let mut refs = Vec::new();
    let dims: Vec<(String, Value)> = m
        .dimensions
        .iter()
        .map(|(k, v)| {
            let (value, r) = dimension_value(env, v);
            refs.extend(r);
            (k.clone(), value)
        })
        .collect();
    (metric_query(id, returned, &m.namespace, &m.name, &m.stat, m.period_seconds.into(), &dims), refs)
}

fn tag_list(tags: &Tags) -> Vec<Tag> {
    tags.iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect()
}

/// A number as CloudWatch echoes it (`5`, `0.8`).
fn number(n: f64) -> String {
    format!("{n}")
}

fn desired_alarm(env: &EnvSpec, id: &str, a: &Alarm, topic: &str) -> Desired {
    let mut refs = Vec::new();
    let mut queries = Vec::new();
    let mut threshold_metric = String::new();
    match (&a.metric, &a.expression) {
        (Some(m), _) => {
            let (q, r) = spec_query(env, METRIC_ID, true, m);
            queries.push(q);
            refs.extend(r);
            if let Some(band) = a.anomaly_band {
                queries.push(expression_query(BAND_ID, true, &format!("ANOMALY_DETECTION_BAND({METRIC_ID}, {})", number(band))));
                threshold_metric = BAND_ID.to_string();
            }
        }
        (None, expression) => {
            queries.push(expression_query(EXPRESSION_ID, true, expression.as_deref().unwrap_or_default()));
            for (mid, m) in &a.metrics {
                let (q, r) = spec_query(env, mid, false, m);
                queries.push(q);
                refs.extend(r);
            }
        }
    }
    let d = Desired::new(KIND, id, physical_name(None, id, &env.env), ownership_tags(env, id, DeletionPolicy::Delete, &a.tags))
        .with(DESCRIPTION, &a.description)
        .with(METRICS, queries_field(queries))
        .with(COMPARISON, &a.comparison)
        .with(THRESHOLD, a.threshold.map(number).unwrap_or_default())
        .with(THRESHOLD_METRIC, threshold_metric)
        .with(PERIODS, a.evaluation_periods.to_string())
        .with(DATAPOINTS, a.datapoints_to_alarm.unwrap_or(a.evaluation_periods).to_string())
        .with(MISSING_DATA, &a.treat_missing_data)
        .with_references(ACTIONS, sns::KIND, [topic]);
    refs.iter().fold(d, |d, (kind, rid)| d.after(kind, rid))
}

/// The tail of a load balancer's or target group's ARN, which CloudWatch
/// names it by; any other value as it is.
fn cloudwatch_dimension(value: &str) -> &str {
    if !value.starts_with("arn:") || !value.contains(":elasticloadbalancing:") {
        return value;
    }
    value.split_once(":loadbalancer/").map(|(_, tail)| tail).or_else(|| value.rsplit_once(':').map(|(_, tail)| tail)).unwrap_or(value)
}

/// A live dimension's value: the ARN of the load balancer or target group
/// it names by the tail of its ARN (in this pass's account and region) and a
/// NAT gateway's id, as handles; any other value as text.
fn dimension_arn(env: &EnvSpec, name: &str, value: &str) -> Value {
    match name {
        "LoadBalancer" => Value::handle(env.arn("elasticloadbalancing", true, &format!("loadbalancer/{value}"))),
        "TargetGroup" => Value::handle(env.arn("elasticloadbalancing", true, value)),
        "NatGatewayId" => Value::handle(value),
        _ => Value::text(value),
    }
}

/// The live `Metrics` field of alarm `a` (either form).
fn live_queries(env: &EnvSpec, a: &MetricAlarm) -> Result<Value, AwsError> {
    let dims = |d: &[Dimension]| -> Vec<(String, Value)> {
        d.iter().filter_map(|d| Some((d.name()?.to_string(), dimension_arn(env, d.name()?, d.value()?)))).collect()
    };
    if a.metrics().is_empty() {
        let stat = a.statistic().map(|s| s.as_str().to_string()).or_else(|| a.extended_statistic().map(str::to_string)).unwrap_or_default();
        let q = metric_query(
            METRIC_ID,
            true,
            a.namespace().unwrap_or_default(),
            a.metric_name().unwrap_or_default(),
            &stat,
            a.period().unwrap_or_default().into(),
            &dims(a.dimensions()),
        );
        return Ok(q);
    }
    let queries = a.metrics().iter().map(|q| {
        let returned = q.return_data().unwrap_or(true);
        let id = required("CloudWatch.DescribeAlarms", "metric query id", q.id())?;
        let id = id.as_str();
        Ok(match (q.expression(), q.metric_stat()) {
            (Some(e), _) => expression_query(id, returned, e),
            (None, Some(s)) => {
                let m = s.metric();
                let (ns, name) = (m.and_then(|m| m.namespace()).unwrap_or_default(), m.and_then(|m| m.metric_name()).unwrap_or_default());
                metric_query(
                    id,
                    returned,
                    ns,
                    name,
                    s.stat().unwrap_or_default(),
                    s.period().unwrap_or_default().into(),
                    &dims(m.map(|m| m.dimensions()).unwrap_or_default()),
                )
            }
            (None, None) => Value::Phrase([id, &returned.to_string(), "unknown"].map(Value::text).to_vec()),
        })
    });
    Ok(queries_field(queries.collect::<Result<_, AwsError>>()?))
}

/// The metric data queries of a `Metrics` field, for PutMetricAlarm.
fn parse_queries(field: &Value, alarm: &str) -> Result<Vec<MetricDataQuery>, AwsError> {
    let bad = |q: &Value| AwsError::unexpected("CloudWatch.PutMetricAlarm", format!("{alarm}: query \"{q}\" is not `<id> <returned> metric|expr ...`"));
    field
        .items()
        .into_iter()
        .filter(|q| **q != QUERY_SEPARATOR)
        .map(|q| {
            let tokens: Vec<&str> = q.items().into_iter().filter_map(Value::as_text).collect();
            let [id, returned, shape, rest @ ..] = tokens.as_slice() else { return Err(bad(q)) };
            let query = MetricDataQuery::builder().id(*id).return_data(*returned == "true");
            let query = match (*shape, rest) {
                ("expr", expression) => query.expression(expression.join(" ")),
                ("metric", [namespace, name, stat, period, dims @ ..]) if dims.len() % 2 == 0 => {
                    let dimensions = dims.chunks(2).map(|kv| Dimension::builder().name(kv[0]).value(cloudwatch_dimension(kv[1])).build()).collect();
                    let metric = Metric::builder().namespace(*namespace).metric_name(*name).set_dimensions(Some(dimensions)).build();
                    let period = period.parse::<i32>().map_err(|_| bad(q))?;
                    query.metric_stat(MetricStat::builder().metric(metric).period(period).stat(*stat).build())
                }
                _ => return Err(bad(q)),
            };
            Ok(query.build())
        })
        .collect()
}

/// What the kind's calls need of IAM.
#[rustfmt::skip]
const PERMISSIONS: Permissions = Permissions {
    reads: &["cloudwatch:ListTagsForResource", "tag:GetResources"],
    grants: &[
        Grant::allow("TheAlarmsOfTargetTrackingPolicies", &["cloudwatch:PutMetricAlarm", "cloudwatch:DescribeAlarms", "cloudwatch:DeleteAlarms"], &["*"]),
        Grant::allow("AlarmWrites", &["cloudwatch:TagResource"], &["arn:aws:cloudwatch:*:*:alarm:sentry-*"]),
    ],
};

#[async_trait]
impl Kind for Alarms {
    fn rules(&self) -> Rules {
        Rules {
            events: EventMatch::of("monitoring.amazonaws.com", &["Alarm"], &["alarmName", "alarmNames", "AlarmName", "AlarmNames", "resourceARN"]),
            ..Rules::new(KIND, Layer::SecurityMonitoring).stands_for(&["AWS::CloudWatch::Alarm", "aws_cloudwatch_metric_alarm"]).needs(PERMISSIONS)
        }
    }

    fn desired(&self, env: &EnvSpec) -> Vec<Desired> {
        let Some(o) = &env.spec.observability else { return Vec::new() };
        o.expanded_alarms(&env.spec)
            .iter()
            .filter_map(|(id, a)| {
                let topic = a.topic.as_deref().or(o.alarm_topic.as_deref())?;
                Some(desired_alarm(env, id, a, topic))
            })
            .collect()
    }

    async fn observe(&self, env: &EnvSpec, desired: &[Desired], reads: &ReadCache) -> Result<Vec<Live>, AwsError> {
        // The alarms whose names begin like ours, in one paginated read; tags from the pass's tagging read, else per alarm.
        let prefix = common_prefix(desired.iter().map(|d| d.name.as_str()).chain(std::iter::once("sentry-")));
        let mut request = self.client.describe_alarms().alarm_types(AlarmType::MetricAlarm);
        if !prefix.is_empty() {
            request = request.alarm_name_prefix(prefix);
        }
        let pages: Vec<_> = request.into_paginator().send().try_collect().await.aws("CloudWatch.DescribeAlarms")?;
        let alarms: Vec<MetricAlarm> = pages.into_iter().flat_map(|p| p.metric_alarms.unwrap_or_default()).collect();
        let live = describe_each(alarms, 4, |a| async move {
            let name = required("CloudWatch.DescribeAlarms", "alarm name", a.alarm_name())?;
            let arn = required("CloudWatch.DescribeAlarms", "alarm ARN", a.alarm_arn())?;
            let tags = match self.tags.tags_of(&env.env, reads, &arn, desired.iter().any(|d| d.name == name)).await {
                Some(tags) => tags,
                None => {
                    let out = self.client.list_tags_for_resource().resource_arn(&arn).send().await.aws("CloudWatch.ListTagsForResource")?;
                    out.tags().iter().filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string()))).collect()
                }
            };
            let live = Live { name, handle: arn, tags, ..Live::default() }
                .with(DESCRIPTION, a.alarm_description().unwrap_or_default())
                .with(METRICS, live_queries(env, &a)?)
                .with(COMPARISON, a.comparison_operator().map(|c| c.as_str()).unwrap_or_default())
                .with(THRESHOLD, if a.threshold_metric_id().is_some() { String::new() } else { a.threshold().map(number).unwrap_or_default() })
                .with(THRESHOLD_METRIC, a.threshold_metric_id().unwrap_or_default())
                .with(PERIODS, a.evaluation_periods().unwrap_or_default().to_string())
                .with(DATAPOINTS, a.datapoints_to_alarm().or(a.evaluation_periods()).unwrap_or_default().to_string())
                .with(MISSING_DATA, a.treat_missing_data().unwrap_or("missing"))
                .with(ACTIONS, Value::handles(a.alarm_actions()));
            Ok(Some(live))
        })
        .await?;
        Ok(live.into_iter().filter(|l| l.is_named_or_owned(&env.env, desired)).collect())
    }

    async fn create(&self, desired: &Desired, _token: &str, _reads: &ReadCache) -> Result<String, AwsError> {
        self.put(desired, true).await?;
        // PutMetricAlarm returns nothing: the ARN is the alarm's, by its documented form.
        let described = self.client.describe_alarms().alarm_names(&desired.name).send().await.aws("CloudWatch.DescribeAlarms")?;
        let arn = described.metric_alarms().first().and_then(|a| a.alarm_arn());
        required("CloudWatch.DescribeAlarms", "alarm ARN", arn)
    }

    async fn update(&self, desired: &Desired, live: &Live, delta: &Delta) -> Result<(), AwsError> {
        // PutMetricAlarm replaces the whole definition (and ignores tags on an existing alarm).
        if !delta.fields.is_empty() {
            self.put(desired, false).await?;
        }
        if !delta.tags.is_empty() {
            self.client.tag_resource().resource_arn(&live.handle).set_tags(Some(tag_list(&delta.tags))).send().await.aws("CloudWatch.TagResource")?;
        }
        Ok(())
    }

    async fn delete(&self, live: &Live, _reads: &ReadCache) -> Result<(), AwsError> {
        gone_is_ok(self.client.delete_alarms().alarm_names(&live.name).send().await.map(|_| ()).aws("CloudWatch.DeleteAlarms"))
    }
}

impl Alarms {
    /// Writes the whole alarm `desired` describes (tagged when `tagged`).
    async fn put(&self, desired: &Desired, tagged: bool) -> Result<(), AwsError> {
        let op = "CloudWatch.PutMetricAlarm";
        let threshold = Some(desired.field(THRESHOLD)).filter(|t| !t.is_empty()).map(|_| desired.number::<f64>(THRESHOLD, op)).transpose()?;
        let request = self
            .client
            .put_metric_alarm()
            .alarm_name(&desired.name)
            .alarm_description(desired.field(DESCRIPTION))
            .actions_enabled(true)
            .set_alarm_actions(Some(desired.items(ACTIONS)))
            .set_metrics(Some(parse_queries(desired.fields.get(METRICS).unwrap_or(&Value::Phrase(Vec::new())), &desired.name)?))
            .comparison_operator(ComparisonOperator::from(desired.field(COMPARISON)))
            .set_threshold(threshold)
            .set_threshold_metric_id(Some(desired.field(THRESHOLD_METRIC)).filter(|t| !t.is_empty()).map(str::to_string))
            .evaluation_periods(desired.number(PERIODS, op)?)
            .datapoints_to_alarm(desired.number(DATAPOINTS, op)?)
            .treat_missing_data(desired.field(MISSING_DATA))
            .set_tags(tagged.then(|| tag_list(&desired.tags)));
        request.send().await.aws("CloudWatch.PutMetricAlarm")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_round_trip_and_load_balancers_are_named_by_the_tail_of_their_arn() {
        let lb = "arn:aws:elasticloadbalancing:us-east-1:1:loadbalancer/app/sentry-public-dev/50dc6c495c0c9188";
        let field = queries_field(vec![
            expression_query(EXPRESSION_ID, true, "100  *  errors / requests"),
            metric_query("errors", false, "AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", "Sum", 300, &[("LoadBalancer".into(), Value::handle(lb))]),
        ]);
        assert_eq!(
            field.to_string(),
            format!("e1 true expr 100 * errors / requests ; errors false metric AWS/ApplicationELB HTTPCode_Target_5XX_Count Sum 300 LoadBalancer {lb}")
        );
        let queries = parse_queries(&field, "a").unwrap_or_default();
        assert_eq!(queries.len(), 2);
        assert_eq!(queries[0].expression(), Some("100 * errors / requests"));
        let dims = queries[1].metric_stat().and_then(|s| s.metric()).map(|m| m.dimensions().to_vec()).unwrap_or_default();
        assert_eq!(dims[0].value(), Some("app/sentry-public-dev/50dc6c495c0c9188"));
        assert_eq!(
            cloudwatch_dimension("arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/sentry-ws-dev/6d0ecf831eec9f09"),
            "targetgroup/sentry-ws-dev/6d0ecf831eec9f09"
        );
        assert_eq!(cloudwatch_dimension("sentry-master-order-dev.fifo"), "sentry-master-order-dev.fifo");
        let short = Value::Phrase(["m1", "true", "metric", "AWS/SQS", "Visible", "Maximum"].map(Value::text).to_vec());
        assert!(parse_queries(&Value::Phrase(vec![short]), "a").is_err(), "a query without its period is refused");
        assert_eq!(number(5.0), "5");
        assert_eq!(number(0.8), "0.8");
    }
}

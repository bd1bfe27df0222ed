//! The alarms and their SNS topic against the emulator: the seeds' critical
//! alerts and the operator's own, built from the spec with their dimensions
//! resolved (queue names, the NAT gateway's id, the load balancer's ARN
//! tail); drift repaired (a threshold changed, a subscription added by hand).

use aws_sdk_cloudwatch::types::{ComparisonOperator, MetricAlarm};

use crate::harness::{sdk_config, Moto};

async fn alarm(cw: &aws_sdk_cloudwatch::Client, name: &str) -> MetricAlarm {
    let out = cw.describe_alarms().alarm_names(name).send().await.expect("alarms");
    out.metric_alarms().first().cloned().unwrap_or_else(|| panic!("alarm {name}"))
}

/// Every dimension value of the alarm's queries.
fn dimension_values(a: &MetricAlarm) -> Vec<String> {
    let queries = a.metrics().iter().filter_map(|q| q.metric_stat()?.metric());
    queries.flat_map(|m| m.dimensions().iter().filter_map(|d| d.value().map(str::to_string))).collect()
}

#[tokio::test]
async fn alarms_notify_the_topic_resolve_their_dimensions_and_drift_is_repaired() {
    let (moto, specs) = Moto::built("dev");
    let config = sdk_config(&moto.endpoint).await;
    let cw = aws_sdk_cloudwatch::Client::new(&config);
    let sns = aws_sdk_sns::Client::new(&config);

    let topics = sns.list_topics().send().await.expect("topics");
    let topic = topics.topics().iter().filter_map(|t| t.topic_arn()).find(|a| a.ends_with(":sentry-alerts-dev")).expect("the alerts topic").to_string();
    let subscriptions = sns.list_subscriptions_by_topic().topic_arn(&topic).send().await.expect("subscriptions");
    let endpoints: Vec<&str> = subscriptions.subscriptions().iter().filter_map(|s| s.endpoint()).collect();
    assert_eq!(endpoints, ["sentry-oncall@example.com"]);

    let all = cw.describe_alarms().alarm_name_prefix("sentry-").send().await.expect("alarms");
    assert_eq!(all.metric_alarms().len(), 13, "the dev spec's alarms (no second NAT gateway in dev)");
    for a in all.metric_alarms() {
        assert_eq!(a.alarm_actions(), std::slice::from_ref(&topic), "{:?} notifies the topic", a.alarm_name());
    }
    let queue = alarm(&cw, "sentry-queue-backup-master-order-dev").await;
    assert_eq!((queue.threshold(), queue.comparison_operator()), (Some(1000.0), Some(&ComparisonOperator::GreaterThanThreshold)));
    assert_eq!(dimension_values(&queue), ["sentry-master-order-dev.fifo"]);

    let ec2 = aws_sdk_ec2::Client::new(&config);
    let nats = ec2.describe_nat_gateways().send().await.expect("nats");
    let nat = nats.nat_gateways().iter().find(|n| n.state().map(|s| s.as_str()) == Some("available")).and_then(|n| n.nat_gateway_id()).expect("nat");
    let anomaly = alarm(&cw, "sentry-nat-bytes-anomaly-nat-a-dev").await;
    assert_eq!(anomaly.alarm_description(), Some("The bytes nat-a (a whitelisted address) sends left their usual band"));
    assert_eq!(dimension_values(&anomaly), [nat.to_string()], "the NAT gateway's id, resolved");
    assert_eq!(anomaly.threshold_metric_id(), Some("band"));
    assert!(anomaly.metrics().iter().any(|q| q.expression() == Some("ANOMALY_DETECTION_BAND(m1, 2)")));

    let errors = alarm(&cw, "sentry-high-error-rate-dev").await;
    let lb = dimension_values(&errors);
    assert!(lb.iter().all(|v| v.starts_with("app/sentry-public-dev/")), "the load balancer, by the tail of its ARN: {lb:?}");
    let heartbeat = alarm(&cw, "sentry-operator-heartbeat-dev").await;
    assert_eq!(heartbeat.treat_missing_data(), Some("breaching"), "no heartbeat is an alarm");
    assert_eq!(dimension_values(&heartbeat), ["dev"]);

    // Drift: a threshold raised by hand, a subscription added by hand.
    let raised = cw
        .put_metric_alarm()
        .alarm_name("sentry-queue-backup-master-order-dev")
        .set_metrics(Some(queue.metrics().to_vec()))
        .comparison_operator(ComparisonOperator::GreaterThanThreshold)
        .threshold(50_000.0)
        .evaluation_periods(1)
        .set_alarm_actions(Some(vec![topic.clone()]));
    raised.send().await.expect("raise the threshold");
    sns.subscribe().topic_arn(&topic).protocol("https").endpoint("https://hooks.example/by-hand").send().await.expect("subscribe by hand");
    let run = moto.reconcile(&specs, "dev");
    assert_eq!(run.code, 2, "{}", run.stdout);
    assert_eq!(alarm(&cw, "sentry-queue-backup-master-order-dev").await.threshold(), Some(1000.0), "threshold put back");
    let subscriptions = sns.list_subscriptions_by_topic().topic_arn(&topic).send().await.expect("subscriptions");
    let endpoints: Vec<&str> = subscriptions.subscriptions().iter().filter_map(|s| s.endpoint()).collect();
    assert_eq!(endpoints, ["sentry-oncall@example.com"], "the subscription added by hand is removed");
    moto.assert_converged(&specs, "dev");
}

//! Event-driven repair (`run --events`) against the emulator. The emulator
//! does not turn API calls into CloudTrail records, so each test makes the
//! change with an independent client and then puts the record CloudTrail
//! would have made on the default bus (the real shape, per the EventBridge
//! user guide); the operator's own rule must route it to its queue.

use std::time::{Duration, Instant};

use aws_sdk_ec2::types::{Filter, IpPermission, IpRange};
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::{json, Value};

use crate::daemon::Daemon;
use crate::harness::{repo_specs, sdk_config, Moto};

/// The actor of the out-of-band changes.
const ALICE: &str = "arn:aws:iam::123456789012:user/alice";
/// The principal the emulator gives the operator (STS GetCallerIdentity).
const OPERATOR: &str = "arn:aws:sts::123456789012:user/moto";
/// A queue of dev.
const QUEUE: &str = "sentry-clients-events-dev";
/// A table of dev.
const TABLE: &str = "sentry-trading-dev";

/// Independent clients.
pub struct Clients {
    pub ec2: aws_sdk_ec2::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub ddb: aws_sdk_dynamodb::Client,
    pub events: aws_sdk_eventbridge::Client,
}

impl Clients {
    pub async fn new(moto: &Moto) -> Clients {
        let config = sdk_config(&moto.endpoint).await;
        Clients {
            ec2: aws_sdk_ec2::Client::new(&config),
            sqs: aws_sdk_sqs::Client::new(&config),
            ddb: aws_sdk_dynamodb::Client::new(&config),
            events: aws_sdk_eventbridge::Client::new(&config),
        }
    }

    /// Puts CloudTrail's record of `name` on `service` by `actor` on the default bus.
    pub async fn announce(&self, service: &str, name: &str, request: Value, actor: &str) {
        self.announce_all(&[record(service, name, request, actor)]).await;
    }

    /// Puts records (at most ten) on the default bus.
    pub async fn announce_all(&self, records: &[Value]) {
        let entries = records.iter().map(|r| {
            let source = format!("aws.{}", r["eventSource"].as_str().unwrap_or_default().split('.').next().unwrap_or_default());
            PutEventsRequestEntry::builder().source(source).detail_type("AWS API Call via CloudTrail").detail(r.to_string()).build()
        });
        let out = self.events.put_events().set_entries(Some(entries.collect())).send().await.expect("put events");
        assert_eq!(out.failed_entry_count(), 0, "{out:?}");
    }

    pub async fn queue_url(&self, name: &str) -> Option<String> {
        self.sqs.get_queue_url().queue_name(name).send().await.ok().and_then(|o| o.queue_url().map(str::to_string))
    }

    pub async fn visibility(&self, url: &str) -> String {
        let out = self.sqs.get_queue_attributes().queue_url(url).attribute_names(QueueAttributeName::VisibilityTimeout).send().await.expect("attributes");
        out.attributes().and_then(|a| a.get(&QueueAttributeName::VisibilityTimeout)).cloned().unwrap_or_default()
    }

    pub async fn owned(&self, id: &str) -> Vec<Filter> {
        vec![Filter::builder().name("tag:sentry:env").values("dev").build(), Filter::builder().name("tag:sentry:id").values(id).build()]
    }

    pub async fn group(&self, id: &str) -> String {
        let out = self.ec2.describe_security_groups().set_filters(Some(self.owned(id).await)).send().await.expect("groups");
        out.security_groups()[0].group_id().expect("id").to_string()
    }

    pub async fn ssh_open(&self, group: &str) -> bool {
        let out = self.ec2.describe_security_groups().group_ids(group).send().await.expect("group");
        out.security_groups()[0].ip_permissions().iter().any(|p| p.from_port() == Some(22))
    }

    pub async fn nat(&self) -> Option<(String, String)> {
        let out = self.ec2.describe_nat_gateways().set_filter(Some(self.owned("nat-a").await)).send().await.expect("nats");
        let available = out.nat_gateways().iter().find(|n| n.state().map(|s| s.as_str()) == Some("available"))?;
        Some((available.nat_gateway_id()?.to_string(), available.nat_gateway_addresses().first()?.allocation_id()?.to_string()))
    }

    pub async fn table(&self, id: &str) -> String {
        let out = self.ec2.describe_route_tables().set_filters(Some(self.owned(id).await)).send().await.expect("rt");
        out.route_tables()[0].route_table_id().expect("id").to_string()
    }

    pub async fn default_route(&self, table: &str) -> Option<String> {
        let out = self.ec2.describe_route_tables().route_table_ids(table).send().await.expect("rt");
        let routes = out.route_tables()[0].routes();
        routes.iter().find(|r| r.destination_cidr_block() == Some("0.0.0.0/0")).and_then(|r| r.nat_gateway_id().or(r.gateway_id()).map(str::to_string))
    }

    pub async fn table_tag(&self, key: &str) -> Option<String> {
        let arn = self.table_arn().await;
        let out = self.ddb.list_tags_of_resource().resource_arn(arn).send().await.expect("tags");
        out.tags().iter().find(|t| t.key() == key).map(|t| t.value().to_string())
    }

    pub async fn table_arn(&self) -> String {
        let out = self.ddb.describe_table().table_name(TABLE).send().await.expect("table");
        out.table().and_then(|t| t.table_arn()).expect("arn").to_string()
    }
}

/// CloudTrail's record of one call (the `detail` of the EventBridge event).
pub fn record(service: &str, name: &str, request: Value, actor: &str) -> Value {
    let kind = if actor.contains(":user/") { "IAMUser" } else { "AssumedRole" };
    json!({
        "eventVersion": "1.09",
        "userIdentity": { "type": kind, "principalId": "AIDAEXAMPLE", "arn": actor, "accountId": "123456789012" },
        "eventTime": "2026-11-29T09:15:00Z",
        "eventSource": format!("{service}.amazonaws.com"),
        "eventName": name,
        "awsRegion": "us-east-1",
        "sourceIPAddress": "203.0.113.7",
        "userAgent": "aws-cli/2",
        "requestParameters": request,
        "responseElements": null,
        "readOnly": false,
        "eventType": "AwsApiCall",
        "recipientAccountId": "123456789012"
    })
}

/// Waits up to `limit` for `check`; the time it took.
pub async fn within<F, Fut>(limit: Duration, what: &str, daemon: &Daemon, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < limit {
        if check().await {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} not repaired within {limit:?}; daemon log:\n{}", daemon.log());
}

/// A daemon on dev with events, whose periodic passes are too rare to repair anything during the test.
pub async fn daemon_with_events(moto: &Moto, c: &Clients, extra: &[&str]) -> Daemon {
    let mut args = vec!["--single-replica", "--events", "--interval", "600", "--fast-interval", "600"];
    args.extend_from_slice(extra);
    let daemon = Daemon::run(&moto.endpoint, repo_specs().to_str().expect("utf-8"), &["dev"], &args);
    daemon.wait_until("the event queue and a first full pass", Duration::from_secs(60), |d| {
        d.metric("sentry_operator_passes_total{env=\"dev\",outcome=\"ok\"}").unwrap_or(0.0) >= 1.0 && d.log().contains("pass done")
    });
    assert!(c.queue_url("sentry-operator-events-dev").await.is_some(), "the event queue exists");
    daemon
}

#[tokio::test]
async fn announced_drift_is_repaired_within_seconds_and_attributed() {
    let (moto, _specs) = Moto::built("dev");
    let c = Clients::new(&moto).await;
    let daemon = daemon_with_events(&moto, &c, &[]).await;
    let limit = Duration::from_secs(30);

    // The plumbing: the rule targets the queue; the queue is encrypted, with a policy and a dead-letter queue.
    let rule = c.events.describe_rule().name("sentry-operator-events-dev").send().await.expect("rule");
    assert!(rule.event_pattern().unwrap_or_default().contains("sqs.amazonaws.com"), "{:?}", rule.event_pattern());
    let targets = c.events.list_targets_by_rule().rule("sentry-operator-events-dev").send().await.expect("targets");
    assert!(targets.targets()[0].arn().ends_with(":sentry-operator-events-dev"));
    let url = c.queue_url("sentry-operator-events-dev").await.expect("queue");
    let attributes = c.sqs.get_queue_attributes().queue_url(&url).attribute_names(QueueAttributeName::All).send().await.expect("attributes");
    let attributes = attributes.attributes().cloned().unwrap_or_default();
    assert_eq!(attributes.get(&QueueAttributeName::SqsManagedSseEnabled).map(String::as_str), Some("true"));
    assert!(attributes.get(&QueueAttributeName::Policy).is_some_and(|p| p.contains("events.amazonaws.com")));
    assert!(attributes.get(&QueueAttributeName::RedrivePolicy).is_some_and(|p| p.contains("sentry-operator-events-dev-dlq")));

    // A queue attribute.
    let queue = c.queue_url(QUEUE).await.expect("queue");
    let before = c.visibility(&queue).await;
    c.sqs.set_queue_attributes().queue_url(&queue).attributes(QueueAttributeName::VisibilityTimeout, "999").send().await.expect("drift");
    c.announce("sqs", "SetQueueAttributes", json!({ "queueUrl": queue, "attributes": { "VisibilityTimeout": "999" } }), ALICE).await;
    within(limit, "the queue attribute", &daemon, || async { c.visibility(&queue).await == before }).await;

    // A security-group rule.
    let oms = c.group("oms").await;
    let ssh = IpPermission::builder().ip_protocol("tcp").from_port(22).to_port(22).ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build()).build();
    c.ec2.authorize_security_group_ingress().group_id(&oms).ip_permissions(ssh).send().await.expect("ssh");
    c.announce("ec2", "AuthorizeSecurityGroupIngress", json!({ "groupId": oms, "ipPermissions": { "items": [] } }), ALICE).await;
    within(limit, "the security-group rule", &daemon, || async { !c.ssh_open(&oms).await }).await;

    // A table tag.
    let arn = c.table_arn().await;
    let project = c.table_tag("Project").await;
    assert!(project.is_some());
    c.ddb.untag_resource().resource_arn(&arn).tag_keys("Project").send().await.expect("untag");
    c.announce("dynamodb", "UntagResource", json!({ "resourceArn": arn, "tagKeys": ["Project"] }), ALICE).await;
    within(limit, "the table tag", &daemon, || async { c.table_tag("Project").await == project }).await;

    // A route replaced.
    let private = c.table("private-b").await;
    let (nat, allocation) = c.nat().await.expect("nat");
    let igw = c.default_route(&c.table("public").await).await.expect("igw");
    c.ec2.replace_route().route_table_id(&private).destination_cidr_block("0.0.0.0/0").gateway_id(&igw).send().await.expect("hijack");
    c.announce("ec2", "ReplaceRoute", json!({ "routeTableId": private, "destinationCidrBlock": "0.0.0.0/0", "gatewayId": igw }), ALICE).await;
    within(limit, "the route", &daemon, || async { c.default_route(&private).await.as_deref() == Some(nat.as_str()) }).await;

    // The NAT gateway deleted: re-created on the same whitelist address, routes follow.
    c.ec2.delete_nat_gateway().nat_gateway_id(&nat).send().await.expect("delete nat");
    c.announce("ec2", "DeleteNatGateway", json!({ "DeleteNatGatewayRequest": { "NatGatewayId": nat } }), ALICE).await;
    within(limit, "the NAT gateway", &daemon, || async {
        match c.nat().await {
            Some((id, alloc)) => id != nat && alloc == allocation && c.default_route(&private).await.as_deref() == Some(id.as_str()),
            None => false,
        }
    })
    .await;

    // A new NAT gateway: the full pass that follows points the NAT alarm at it.
    daemon.wait_until("the full pass after the NAT gateway was re-created", limit, |d| {
        d.log().split("a full pass follows").nth(1).is_some_and(|after| after.contains("pass done") && after.contains("Full"))
    });

    // Who did it: in the log, the metric (by call) and the EMF alert.
    let log = daemon.log();
    assert!(log.contains(&format!("drift: changed by {ALICE} (IAMUser) via SetQueueAttributes")), "{log}");
    assert!(log.contains("via DeleteNatGateway"), "{log}");
    assert!(daemon.metric("sentry_operator_drift_total{env=\"dev\",kind=\"sqs.queue\",call=\"SetQueueAttributes\"}").unwrap_or(0.0) >= 1.0);
    assert!(
        daemon.metric("sentry_operator_drift_total{env=\"dev\",kind=\"ec2.security-group-rules\",call=\"AuthorizeSecurityGroupIngress\"}").unwrap_or(0.0)
            >= 1.0,
        "{:?}",
        daemon.get("/metrics")
    );
    let logs = aws_sdk_cloudwatchlogs::Client::new(&sdk_config(&moto.endpoint).await);
    let mut emf = String::new();
    for _ in 0..50 {
        let out = logs.filter_log_events().log_group_name("/sentry-operator/dev").send().await;
        emf = out.map(|o| o.events().iter().filter_map(|e| e.message()).collect::<Vec<_>>().join("\n")).unwrap_or_default();
        if emf.contains("SetQueueAttributes") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let drift = emf.lines().find(|l| l.contains("\"call\":\"SetQueueAttributes\"")).unwrap_or_else(|| panic!("no attributed drift event: {emf}"));
    let drift: Value = serde_json::from_str(drift).expect("EMF JSON");
    assert_eq!(
        (drift["actor"].as_str(), drift["sourceIp"].as_str(), drift["eventTime"].as_str()),
        (Some(ALICE), Some("203.0.113.7"), Some("2026-11-29T09:15:00Z"))
    );

    // The operator's own call is not repaired (nor is anything else): the drift stays until someone else's call names it.
    c.sqs.set_queue_attributes().queue_url(&queue).attributes(QueueAttributeName::VisibilityTimeout, "998").send().await.expect("drift");
    c.announce("sqs", "SetQueueAttributes", json!({ "queueUrl": queue }), OPERATOR).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(c.visibility(&queue).await, "998", "an event of the operator's own principal is skipped: {}", daemon.log());
    c.announce("sqs", "SetQueueAttributes", json!({ "queueUrl": queue }), ALICE).await;
    within(limit, "the queue attribute again", &daemon, || async { c.visibility(&queue).await == before }).await;

    // A full pass afterwards finds nothing to do (the plumbing is the daemon's, left alone).
    drop(daemon);
    moto.assert_converged(&repo_specs(), "dev");
}

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
        let detail = record(service, name, request, actor).to_string();
        let entry = PutEventsRequestEntry::builder().source(format!("aws.{service}")).detail_type("AWS API Call via CloudTrail").detail(detail).build();
        let out = self.events.put_events().entries(entry).send().await.expect("put events");
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

/// A daemon on dev with events, full passes every `interval` seconds (too rare
/// to repair anything during the test unless it says otherwise), and `extra`.
pub async fn daemon_with_events(moto: &Moto, c: &Clients, interval: &str, extra: &[&str]) -> Daemon {
    let mut args = vec!["--single-replica", "--events", "--interval", interval, "--fast-interval", "600"];
    args.extend_from_slice(extra);
    let daemon = Daemon::run(&moto.endpoint, repo_specs().to_str().expect("utf-8"), &["dev"], &args);
    daemon.wait_until("the event queue read after a first full pass", Duration::from_secs(60), |d| {
        d.metric("sentry_operator_passes_total{env=\"dev\",outcome=\"ok\"}").unwrap_or(0.0) >= 1.0 && d.log().contains("reading the event queue")
    });
    assert!(c.queue_url("sentry-operator-events-dev").await.is_some(), "the event queue exists");
    daemon
}

#[tokio::test]
async fn announced_drift_is_repaired_within_seconds_and_attributed() {
    let (moto, _specs) = Moto::built("dev");
    let c = Clients::new(&moto).await;
    let daemon = daemon_with_events(&moto, &c, "600", &[]).await;
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

/// Sends `body` straight to the event queue, as a forwarding bus of another
/// account or region, or a broken producer, would (the emulator does not
/// enforce the queue policy that lets only the rule send).
async fn send_raw(c: &Clients, body: &str) {
    let url = c.queue_url("sentry-operator-events-dev").await.expect("event queue");
    c.sqs.send_message().queue_url(url).message_body(body).send().await.expect("send");
}

/// The EventBridge envelope of `detail`, as if delivered from `account` / `region`.
fn envelope(detail: &Value, account: &str, region: &str) -> String {
    json!({"version": "0", "id": "1", "detail-type": "AWS API Call via CloudTrail", "source": "aws.sqs", "account": account,
           "time": "2026-11-29T09:15:00Z", "region": region, "resources": [], "detail": detail})
    .to_string()
}

/// Messages still in the event queue (visible or in flight).
async fn queued(c: &Clients) -> u64 {
    let Some(url) = c.queue_url("sentry-operator-events-dev").await else { return u64::MAX };
    let names = [QueueAttributeName::ApproximateNumberOfMessages, QueueAttributeName::ApproximateNumberOfMessagesNotVisible];
    let out = c.sqs.get_queue_attributes().queue_url(url).set_attribute_names(Some(names.to_vec())).send().await.expect("attributes");
    let attributes = out.attributes().cloned().unwrap_or_default();
    names.iter().map(|n| attributes.get(n).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)).sum()
}

/// The daemon's resident memory, in KiB.
fn rss_kib(daemon: &Daemon) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", daemon.child.id())).unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).unwrap_or(0)
}

#[tokio::test]
async fn malformed_foreign_and_storming_events_cost_no_call_storm() {
    let (moto, _specs) = Moto::built("dev");
    let c = Clients::new(&moto).await;
    let budget = 60;
    let daemon = daemon_with_events(&moto, &c, "600", &["--event-budget", &budget.to_string()]).await;
    let queue = c.queue_url(QUEUE).await.expect("queue");
    let before = c.visibility(&queue).await;

    // Malformed messages are dropped (and deleted: they never come back), the feed goes on.
    for body in [
        "not json",
        "{}",
        r#"{"detail-type": "EC2 Instance State-change Notification", "detail": {}}"#,
        &envelope(&json!({"eventName": "X"}), "123456789012", "us-east-1"),
    ] {
        send_raw(&c, body).await;
    }
    daemon.wait_until("the malformed messages dropped", Duration::from_secs(30), |d| d.log().matches("dropped a message of the event queue").count() >= 4);

    // Calls made in another account or region, and the operator's own, change nothing here.
    c.sqs.set_queue_attributes().queue_url(&queue).attributes(QueueAttributeName::VisibilityTimeout, "997").send().await.expect("drift");
    let call = record("sqs", "SetQueueAttributes", json!({ "queueUrl": queue }), ALICE);
    send_raw(&c, &envelope(&call, "999999999999", "us-east-1")).await;
    send_raw(&c, &envelope(&call, "123456789012", "eu-west-1")).await;
    let mut read_only = call.clone();
    read_only["readOnly"] = json!(true);
    send_raw(&c, &envelope(&read_only, "123456789012", "us-east-1")).await;
    let started = Instant::now();
    while queued(&c).await > 0 && started.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(c.visibility(&queue).await, "997", "no repair for calls elsewhere or reads: {}", daemon.log());

    // A storm, as large as the emulator takes in reasonable time (it needs about
    // 0.3 s per SendMessageBatch and 2 s per PutEvents of ten; the 10,000-record
    // storm is the feed's unit test, against a mocked queue): 600 records sent
    // to the queue at once, naming the 18 real queues and 200 that are not the
    // estate's (the drift among them), plus the table's tags.
    let urls: Vec<String> = {
        let listed = c.sqs.list_queues().queue_name_prefix("sentry-").max_results(1000).send().await.expect("queues");
        listed.queue_urls().iter().filter(|u| !u.contains("operator-events")).cloned().collect()
    };
    let arn = c.table_arn().await;
    moto.start_recording();
    let storm = Instant::now();
    let events_queue = c.queue_url("sentry-operator-events-dev").await.expect("event queue");
    let mut batch = Vec::new();
    for i in 0..600usize {
        let r = match i % 5 {
            0 => record("dynamodb", "TagResource", json!({ "resourceArn": arn }), ALICE),
            1 | 2 => record("sqs", "SetQueueAttributes", json!({ "queueUrl": urls[i % urls.len()] }), ALICE),
            _ => record(
                "sqs",
                "SetQueueAttributes",
                json!({ "queueUrl": format!("https://sqs.us-east-1.amazonaws.com/123456789012/someone-elses-{}", i % 200) }),
                ALICE,
            ),
        };
        let entry = aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder().id(i.to_string()).message_body(envelope(&r, "123456789012", "us-east-1"));
        batch.push(entry.build().expect("entry"));
        if batch.len() == 10 {
            c.sqs.send_message_batch().queue_url(&events_queue).set_entries(Some(std::mem::take(&mut batch))).send().await.expect("send");
        }
    }
    let put = storm.elapsed();
    assert!(put < Duration::from_secs(60), "the storm took {put:?} to send");
    within(Duration::from_secs(120), "the queue drift named in the storm", &daemon, || async { c.visibility(&queue).await == before }).await;
    let drained = Instant::now();
    while queued(&c).await > 0 && drained.elapsed() < Duration::from_secs(180) {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(queued(&c).await, 0, "the storm was read in full");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let requests = moto.stop_recording();
    // What the operator asked of the estate's APIs (not the event queue's receives and deletes, nor the test's own calls).
    let queue_reads =
        ["ReceiveMessage", "DeleteMessageBatch", "SendMessageBatch", "GetQueueAttributes", "ListQueues", "GetQueueUrl", "DescribeTable", "PutLogEvents"];
    let estate: Vec<&String> = requests.iter().filter(|op| !queue_reads.contains(&op.as_str())).collect();
    let receives = requests.iter().filter(|op| *op == "ReceiveMessage").count();
    // The event passes keep to their budget (a minute's worth at once, then as much a minute), plus one pass's overshoot.
    let minutes = storm.elapsed().as_secs_f64() / 60.0;
    let allowed = (f64::from(budget) * (1.0 + minutes)) as usize + 60;
    assert!(estate.len() <= allowed, "600 events in {minutes:.1} min, {} estate calls (budget {budget}/min): {estate:?}", estate.len());
    assert!(receives <= 100, "{receives} receives for 600 events (ten at a time)");
    let rss = rss_kib(&daemon);
    assert!(rss > 0 && rss < 150 * 1024, "RSS {rss} KiB after the storm");
    let passes = daemon.log().matches("trigger=Event").count();
    assert!(passes < 40, "{passes} narrowed passes for 600 events");
    moto.assert_converged(&repo_specs(), "dev");
}

#[tokio::test]
async fn lost_plumbing_is_recreated_and_alerted_and_early_events_wait_for_the_first_pass() {
    let (moto, _specs) = Moto::built("dev");
    let c = Clients::new(&moto).await;
    let daemon = daemon_with_events(&moto, &c, "600", &[]).await;
    let queue = c.queue_url(QUEUE).await.expect("queue");
    let before = c.visibility(&queue).await;
    let limit = Duration::from_secs(60);

    // The event queue deleted: noticed, alerted, re-created by a full pass, read again.
    let events_queue = c.queue_url("sentry-operator-events-dev").await.expect("event queue");
    c.sqs.delete_queue().queue_url(&events_queue).send().await.expect("delete the event queue");
    daemon.wait_until("the event queue back", limit, |d| d.log().contains("the event queue is back"));
    assert!(daemon.log().contains("the event queue is gone"));
    c.sqs.set_queue_attributes().queue_url(&queue).attributes(QueueAttributeName::VisibilityTimeout, "996").send().await.expect("drift");
    c.announce("sqs", "SetQueueAttributes", json!({ "queueUrl": queue }), ALICE).await;
    within(limit, "a drift announced after the queue came back", &daemon, || async { c.visibility(&queue).await == before }).await;
    let logs = aws_sdk_cloudwatchlogs::Client::new(&sdk_config(&moto.endpoint).await);
    let emf = logs.filter_log_events().log_group_name("/sentry-operator/dev").send().await.expect("alerts");
    assert!(emf.events().iter().filter_map(|e| e.message()).any(|m| m.contains("\"EventsInterrupted\"")), "EventsInterrupted alerted");

    // The rule deleted: re-created by the next full pass (SIGHUP starts one now), and events flow again.
    c.events.remove_targets().rule("sentry-operator-events-dev").ids("sentry-operator-queue").send().await.expect("remove targets");
    c.events.delete_rule().name("sentry-operator-events-dev").send().await.expect("delete rule");
    let hup = std::process::Command::new("kill").args(["-HUP", &daemon.child.id().to_string()]).status().expect("kill -HUP");
    assert!(hup.success());
    within(limit, "the event rule", &daemon, || async {
        let targets = c.events.list_targets_by_rule().rule("sentry-operator-events-dev").send().await;
        targets.is_ok_and(|t| !t.targets().is_empty())
    })
    .await;
    c.sqs.set_queue_attributes().queue_url(&queue).attributes(QueueAttributeName::VisibilityTimeout, "995").send().await.expect("drift");
    tokio::time::sleep(Duration::from_millis(500)).await;
    c.announce("sqs", "SetQueueAttributes", json!({ "queueUrl": queue }), ALICE).await;
    within(limit, "a drift announced after the rule came back", &daemon, || async { c.visibility(&queue).await == before }).await;
    drop(daemon);

    // Events that arrive while no daemon runs wait in the queue; the next daemon repairs, after its first full pass.
    c.sqs.set_queue_attributes().queue_url(&queue).attributes(QueueAttributeName::VisibilityTimeout, "994").send().await.expect("drift");
    c.announce("sqs", "SetQueueAttributes", json!({ "queueUrl": queue }), ALICE).await;
    assert!(queued(&c).await >= 1, "the event waits in the queue");
    let daemon = Daemon::run(
        &moto.endpoint,
        repo_specs().to_str().expect("utf-8"),
        &["dev"],
        &["--single-replica", "--events", "--interval", "600", "--fast-interval", "600"],
    );
    within(limit, "the drift announced while no daemon ran", &daemon, || async { c.visibility(&queue).await == before }).await;
    let started = Instant::now();
    while queued(&c).await > 0 && started.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(queued(&c).await, 0, "read and deleted");
    assert!(!daemon.log().contains("ERROR"), "{}", daemon.log());
}

/// A rule made by hand under the event rule's name (no ownership tags) is
/// not the operator's: its pattern, targets and tags stay as they are.
#[tokio::test]
async fn a_rule_of_the_same_name_made_by_hand_is_left_alone() {
    let (moto, _specs) = Moto::built("dev");
    let c = Clients::new(&moto).await;
    let pattern = r#"{"source":["my.app"]}"#;
    c.events.put_rule().name("sentry-operator-events-dev").event_pattern(pattern).send().await.expect("a rule by hand");
    moto.start_recording();
    let daemon = daemon_with_events(&moto, &c, "600", &[]).await;
    let requests = moto.stop_recording();
    for write in ["PutRule", "PutTargets", "RemoveTargets", "DeleteRule"] {
        assert!(!requests.iter().any(|op| op == write), "{write} sent: {requests:?}\n{}", daemon.log());
    }
    let rule = c.events.describe_rule().name("sentry-operator-events-dev").send().await.expect("rule");
    let live: Value = serde_json::from_str(rule.event_pattern().unwrap_or_default()).expect("pattern");
    assert_eq!(live, serde_json::from_str::<Value>(pattern).expect("json"), "the pattern is untouched");
    let targets = c.events.list_targets_by_rule().rule("sentry-operator-events-dev").send().await.expect("targets");
    assert!(targets.targets().is_empty(), "no target added");
    let arn = rule.arn().expect("arn");
    let tags = c.events.list_tags_for_resource().resource_arn(arn).send().await.expect("tags");
    assert!(tags.tags().is_empty(), "no ownership tags added: {:?}", tags.tags());
}

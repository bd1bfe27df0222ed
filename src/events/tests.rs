//! The event → resource mapping of every kind, parsing, judging and coalescing.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::*;
use crate::aws::CallCounter;

/// The rules of every registered kind (clients are built but never called).
fn registry_rules() -> Vec<Rules> {
    let config = aws_config::SdkConfig::builder().behavior_version(aws_config::BehaviorVersion::latest()).region(aws_config::Region::new("eu-west-1")).build();
    crate::kinds::registry(&config, &CallCounter::default(), crate::kinds::read::TagReads::default()).iter().map(|k| k.rules()).collect()
}

fn call(source: &str, name: &str, request: Value) -> ApiCall {
    ApiCall { source: format!("{source}.amazonaws.com"), name: name.into(), request, response: Value::Null }
}

/// Every kind a call touches, with what it names of each (`*`: the whole kind).
fn touches(rules: &[Rules], c: &ApiCall) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for r in rules {
        match touched(&r.events, c) {
            Touched::Nothing => {}
            Touched::Kind => out.push((r.kind.to_string(), "*".to_string())),
            Touched::Resources(ids) => out.extend(ids.into_iter().map(|id| (r.kind.to_string(), id))),
        }
    }
    out
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(k, i)| (k.to_string(), i.to_string())).collect()
}

#[test]
fn every_supported_service_maps_its_calls_to_the_resources_they_touched() {
    let rules = registry_rules();
    let cases: Vec<(ApiCall, Vec<(&str, &str)>)> = vec![
        (call("ec2", "CreateVpc", json!({"cidrBlock": "10.0.0.0/16"})), vec![("ec2.vpc", "*")]),
        (call("ec2", "DeleteSubnet", json!({"subnetId": "subnet-1"})), vec![("ec2.subnet", "subnet-1")]),
        (call("ec2", "DetachInternetGateway", json!({"internetGatewayId": "igw-1", "vpcId": "vpc-1"})), vec![("ec2.internet-gateway", "igw-1")]),
        (call("ec2", "DisassociateAddress", json!({"associationId": "eipassoc-1"})), vec![("ec2.elastic-ip", "*")]),
        (call("ec2", "DeleteNatGateway", json!({"DeleteNatGatewayRequest": {"NatGatewayId": "nat-1"}})), vec![("ec2.nat-gateway", "nat-1")]),
        (call("ec2", "ReplaceRoute", json!({"routeTableId": "rtb-1", "natGatewayId": "nat-1"})), vec![("ec2.route-table", "rtb-1")]),
        (call("ec2", "AuthorizeSecurityGroupIngress", json!({"groupId": "sg-1"})), vec![("ec2.security-group", "sg-1"), ("ec2.security-group-rules", "sg-1")]),
        (
            call("ec2", "DeleteVpcEndpoints", json!({"DeleteVpcEndpointsRequest": {"VpcEndpointId": "vpce-1"}})),
            vec![("ec2.vpc", "*"), ("ec2.vpc-endpoint", "vpce-1")],
        ),
        (call("ec2", "DeleteFlowLogs", json!({"DeleteFlowLogsRequest": {"FlowLogId": "fl-1"}})), vec![("ec2.flow-log", "fl-1")]),
        (
            call("ec2", "CreateLaunchTemplateVersion", json!({"CreateLaunchTemplateVersionRequest": {"LaunchTemplateId": "lt-1"}})),
            vec![("ec2.launch-template", "lt-1")],
        ),
        (
            call("ec2", "CreateTags", json!({"resourcesSet": {"items": [{"resourceId": "sg-1"}, {"resourceId": "nat-2"}]}, "tagSet": {}})),
            vec![("ec2.nat-gateway", "nat-2"), ("ec2.security-group", "sg-1"), ("ec2.security-group-rules", "sg-1")],
        ),
        (call("ec2", "RunInstances", json!({})), vec![]),
        (call("sqs", "SetQueueAttributes", json!({"queueUrl": "https://q/1/a"})), vec![("sqs.queue", "https://q/1/a")]),
        (call("sqs", "TagQueue", json!({"queueUrl": "https://q/1/a"})), vec![("sqs.queue", "https://q/1/a")]),
        (call("dynamodb", "UpdateTable", json!({"tableName": "t"})), vec![("dynamodb.table", "t")]),
        (call("dynamodb", "UntagResource", json!({"resourceArn": "arn:aws:dynamodb:r:1:table/t"})), vec![("dynamodb.table", "arn:aws:dynamodb:r:1:table/t")]),
        (call("elasticache", "ModifyReplicationGroup", json!({"replicationGroupId": "r"})), vec![("elasticache.replication-group", "r")]),
        (call("elasticache", "ModifyCacheSubnetGroup", json!({"cacheSubnetGroupName": "g"})), vec![("elasticache.subnet-group", "g")]),
        (call("cognito-idp", "SetUserPoolMfaConfig", json!({"userPoolId": "p"})), vec![("cognito.user-pool", "p")]),
        (call("cognito-idp", "UpdateGroup", json!({"groupName": "admins", "userPoolId": "p"})), vec![("cognito.group", "admins")]),
        (
            call("cognito-idp", "UpdateUserPoolClient", json!({"clientId": "c", "userPoolId": "p"})),
            vec![("cognito.app-client", "c"), ("cognito.user-pool", "p")],
        ),
        (call("ecs", "UpdateService", json!({"cluster": "c", "service": "s"})), vec![("ecs.service", "s")]),
        (call("ecs", "DeleteCluster", json!({"cluster": "c"})), vec![("ecs.cluster", "c")]),
        (call("ecs", "DeregisterTaskDefinition", json!({"taskDefinition": "oms:3"})), vec![("ecs.task-definition", "oms:3")]),
        (
            call("ecs", "PutClusterCapacityProviders", json!({"cluster": "c", "capacityProviders": ["cp"]})),
            vec![("ecs.capacity-provider", "*"), ("ecs.cluster", "c"), ("ecs.cluster-capacity-providers", "c")],
        ),
        (call("autoscaling", "UpdateAutoScalingGroup", json!({"autoScalingGroupName": "g"})), vec![("autoscaling.group", "g")]),
        (
            call("application-autoscaling", "PutScalingPolicy", json!({"policyName": "cpu", "resourceId": "service/c/s"})),
            vec![("application-autoscaling.scaling-policy", "cpu")],
        ),
        (
            call("application-autoscaling", "RegisterScalableTarget", json!({"resourceId": "service/c/s"})),
            vec![("application-autoscaling.scalable-target", "service/c/s")],
        ),
        (
            call("elasticloadbalancing", "ModifyTargetGroupAttributes", json!({"targetGroupArn": "arn:aws:elasticloadbalancing:r:1:targetgroup/tg/1"})),
            vec![("elbv2.target-group", "arn:aws:elasticloadbalancing:r:1:targetgroup/tg/1")],
        ),
        (
            call("elasticloadbalancing", "AddTags", json!({"resourceArns": ["arn:aws:elasticloadbalancing:r:1:loadbalancer/app/lb/1"]})),
            vec![("elbv2.load-balancer", "arn:aws:elasticloadbalancing:r:1:loadbalancer/app/lb/1")],
        ),
        (call("elasticloadbalancing", "ModifyListener", json!({"listenerArn": "arn:l"})), vec![("elbv2.listener", "arn:l")]),
        (call("elasticloadbalancing", "ModifyRule", json!({"ruleArn": "arn:r"})), vec![("elbv2.listener-rule", "arn:r")]),
        (call("secretsmanager", "UpdateSecret", json!({"secretId": "s"})), vec![("secretsmanager.secret", "s")]),
        (call("ecr", "PutLifecyclePolicy", json!({"repositoryName": "oms"})), vec![("ecr.repository", "oms")]),
        (call("ecr", "PutImage", json!({"repositoryName": "oms"})), vec![]),
        (call("sns", "Unsubscribe", json!({"subscriptionArn": "arn:s"})), vec![("sns.topic", "*")]),
        (call("kms", "DisableKeyRotation", json!({"keyId": "k"})), vec![("kms.key", "k")]),
        (call("monitoring", "DeleteAlarms", json!({"alarmNames": ["a", "b"]})), vec![("cloudwatch.alarm", "a"), ("cloudwatch.alarm", "b")]),
        (call("logs", "PutRetentionPolicy", json!({"logGroupName": "/ecs/x"})), vec![("logs.log-group", "/ecs/x")]),
        (call("logs", "CreateLogStream", json!({"logGroupName": "/ecs/x"})), vec![]),
        (call("iam", "PutRolePolicy", json!({"roleName": "r"})), vec![("iam.role", "r")]),
        (
            call("iam", "RemoveRoleFromInstanceProfile", json!({"instanceProfileName": "p", "roleName": "r"})),
            vec![("iam.instance-profile", "p"), ("iam.role", "r")],
        ),
        (call("events", "DisableRule", json!({"name": "sentry-operator-events-dev"})), vec![("events.rule", "sentry-operator-events-dev")]),
    ];
    let mut services = BTreeSet::new();
    for (c, expected) in cases {
        services.insert(c.source.clone());
        let mut got = touches(&rules, &c);
        got.sort();
        let mut expected = pairs(&expected);
        expected.sort();
        assert_eq!(got, expected, "{} {}", c.source, c.name);
    }
    // Every service a kind names has a case above.
    let mapped: BTreeSet<String> = rules.iter().map(|r| r.events.source.to_string()).filter(|s| !s.is_empty()).collect();
    assert_eq!(mapped, services);
    assert_eq!(rules.iter().filter(|r| r.events.source.is_empty()).map(|r| r.kind).collect::<Vec<_>>(), Vec::<&str>::new(), "every kind maps its calls");
}

/// The EventBridge envelope of CloudTrail's record of a call.
fn envelope(detail: Value) -> String {
    json!({"version": "0", "id": "1", "detail-type": DETAIL_TYPE, "source": "aws.sqs", "account": "111", "time": "2026-11-29T00:00:00Z", "region": "eu-west-1", "resources": [], "detail": detail}).to_string()
}

fn alice(name: &str) -> Value {
    json!({
        "eventSource": "sqs.amazonaws.com", "eventName": name, "eventTime": "2026-11-29T00:00:01Z", "sourceIPAddress": "203.0.113.7",
        "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::111:user/alice", "principalId": "AIDA1"},
        "requestParameters": {"queueUrl": "https://q/111/a"}, "responseElements": null, "readOnly": false, "recipientAccountId": "111"
    })
}

#[test]
fn records_are_parsed_with_their_attribution() {
    let a = parse(&envelope(alice("SetQueueAttributes"))).expect("parsed");
    assert_eq!(
        a.attribution,
        Attribution {
            actor: "arn:aws:iam::111:user/alice".into(),
            principal_type: "IAMUser".into(),
            call: "SetQueueAttributes".into(),
            at: "2026-11-29T00:00:01Z".into(),
            source_ip: "203.0.113.7".into()
        }
    );
    assert_eq!((a.account.as_str(), a.region.as_str(), a.read_only), ("111", "eu-west-1", false));
    assert_eq!(a.call.request["queueUrl"], "https://q/111/a");
    // A service's own call names its service as the actor.
    let mut by_service = alice("SetQueueAttributes");
    by_service["userIdentity"] = json!({"type": "AWSService", "invokedBy": "events.amazonaws.com"});
    assert_eq!(parse(&envelope(by_service)).expect("parsed").attribution.actor, "events.amazonaws.com");
}

#[test]
fn malformed_messages_are_refused_with_a_reason() {
    assert!(matches!(parse("not json"), Err(EventError::NotJson(_))));
    assert!(matches!(parse("{}"), Err(EventError::NotAnApiCall(_))));
    let other = json!({"detail-type": "EC2 Instance State-change Notification", "detail": {}}).to_string();
    assert!(matches!(parse(&other), Err(EventError::NotAnApiCall(_))));
    assert!(matches!(parse(&envelope(json!({"eventName": "X"}))), Err(EventError::NotAnApiCall(_))));
    assert!(matches!(parse(&envelope(json!("text"))), Err(EventError::NotAnApiCall(_))));
}

#[test]
fn own_calls_and_calls_elsewhere_are_skipped() {
    let me = Me {
        account: "111".into(),
        region: "eu-west-1".into(),
        arn: "arn:aws:sts::111:assumed-role/sentry-operator/replica-a".into(),
        user_id: "AROA1:replica-a".into(),
    };
    let a = parse(&envelope(alice("SetQueueAttributes"))).expect("parsed");
    assert_eq!(me.judge(&a), Verdict::Repair);
    let with = |f: &dyn Fn(&mut Announcement)| {
        let mut b = a.clone();
        f(&mut b);
        me.judge(&b)
    };
    assert_eq!(with(&|b| b.attribution.actor = me.arn.clone()), Verdict::Own);
    assert_eq!(with(&|b| b.principal_id = "AROA1:replica-a".into()), Verdict::Own);
    assert_eq!(with(&|b| b.attribution.actor = "arn:aws:sts::111:assumed-role/sentry-operator/replica-b".into()), Verdict::Own, "another replica, same role");
    assert_eq!(with(&|b| b.attribution.actor = "arn:aws:sts::111:assumed-role/admin/alice".into()), Verdict::Repair);
    assert_eq!(with(&|b| b.account = "222".into()), Verdict::OtherAccount("222".into()));
    assert_eq!(with(&|b| b.region = "us-east-1".into()), Verdict::OtherRegion("us-east-1".into()));
    assert_eq!(
        with(&|b| {
            b.region = "us-east-1".into();
            b.call.source = "iam.amazonaws.com".into();
        }),
        Verdict::Repair,
        "IAM's calls are recorded in us-east-1"
    );
    assert_eq!(with(&|b| b.read_only = true), Verdict::ReadOnly);
}

#[test]
fn a_storm_is_coalesced_per_resource_in_bounded_memory() {
    let cause = parse(&envelope(alice("SetQueueAttributes"))).expect("parsed").attribution;
    let mut pending = Pending::default();
    for i in 0..10_000 {
        pending.add("sqs.queue", Touched::Resources([format!("q{}", i % 7)].into()), &cause);
    }
    assert_eq!(pending.len(), 7, "one entry per resource, however many calls");
    for i in 0..10_000 {
        pending.add("dynamodb.table", Touched::Resources([format!("t{i}")].into()), &cause);
    }
    assert!(pending.len() <= MAX_PENDING_RESOURCES + 1, "bounded: {}", pending.len());
    let focus = pending.take().expect("pending");
    assert!(!focus.resources.contains_key("dynamodb.table"), "beyond the bound, the kind is covered whole");
    assert_eq!(focus.resources["sqs.queue"].len(), 7);
    assert_eq!(focus.kinds.as_ref().map(BTreeSet::len), Some(2));
    assert!(!focus.causes["sqs.queue"].contains_key(""), "calls that named queues are no cause of another queue's drift");
    assert_eq!(focus.causes["sqs.queue"].len(), 7);
    assert!(pending.take().is_none(), "taken");

    pending.add("sqs.queue", Touched::Kind, &cause);
    pending.add("sqs.queue", Touched::Resources(["q1".to_string()].into()), &cause);
    let focus = pending.take().expect("pending");
    assert!(!focus.resources.contains_key("sqs.queue"), "a whole kind stays whole");
    assert!(focus.causes["sqs.queue"].contains_key(""), "a call about the kind as a whole is a cause of any of its drift");
    pending.everything();
    assert_eq!(pending.take().map(|f| f.kinds), Some(None), "everything: every kind");
}

#[test]
fn calls_are_routed_to_the_loop_that_writes_their_kind() {
    let rules = registry_rules();
    let (mut fast, mut full) = (Pending::default(), Pending::default());
    let nat = Announcement {
        call: call("ec2", "DeleteNatGateway", json!({"natGatewayId": "nat-1"})),
        ..parse(&envelope(alice("DeleteNatGateway"))).expect("parsed")
    };
    assert!(route(&rules, &nat, &mut fast, &mut full));
    assert!(!fast.is_empty() && full.is_empty(), "the whitelist's kinds go to the fast loop");
    let queue = parse(&envelope(alice("SetQueueAttributes"))).expect("parsed");
    assert!(route(&rules, &queue, &mut fast, &mut full));
    assert!(!full.is_empty());
    let unmapped = Announcement { call: call("ec2", "RunInstances", json!({})), ..queue };
    assert!(!route(&rules, &unmapped, &mut Pending::default(), &mut Pending::default()));
}

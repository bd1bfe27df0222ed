//! The operator never changes or deletes what it does not own, even when a
//! name collides: one test per kind family (SQS and EC2 have theirs in their
//! own files). Each test plants foreign resources under the dev spec's names
//! (untagged, or owned by another environment) plus one foreign resource the
//! spec does not list, applies the whole dev spec, and checks that the
//! emulator's recorder saw no write naming a foreign resource, that each one
//! is unchanged, and that the rest of the estate was built.

use aws_sdk_dynamodb::types::{AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, Tag};

use crate::harness::{foreign_network, is_write, json_args, operator, repo_specs, sdk_config, Moto, Run};

/// Applies the dev spec while recording; returns the run and the write requests (operation, text).
fn apply_dev(moto: &Moto) -> (Run, Vec<(String, String)>) {
    let specs = repo_specs();
    moto.start_recording();
    let run = operator(&moto.endpoint, &json_args(&specs, &["reconcile", "--once", "--env", "dev"]));
    let writes = moto.stop_recording_requests().into_iter().filter(|(op, _)| is_write(op)).collect();
    assert_eq!(run.code, 2, "the rest of the estate is built:\n{}\n{}", run.stdout, run.stderr);
    (run, writes)
}

/// Fails if any write request names `needle`, role policies aside: they name
/// the ARNs of what a role may use, touching none (the foreign role's own
/// policy is checked by reading it back).
fn no_write_names(writes: &[(String, String)], needle: &str) {
    let touching: Vec<&String> = writes.iter().filter(|(op, text)| text.contains(needle) && op != "PutRolePolicy").map(|(op, _)| op).collect();
    assert!(touching.is_empty(), "writes naming foreign {needle}: {touching:?}");
}

/// The writes that are not EC2 calls (security groups are named like the
/// services they guard, e.g. `sentry-redis-dev`: a legitimate EC2 write).
fn outside_ec2(writes: &[(String, String)]) -> Vec<(String, String)> {
    writes.iter().filter(|(_, text)| !text.contains("Version=2016-11-15")).cloned().collect()
}

/// Asserts the step for `kind id` was skipped with a note containing `why`.
fn skipped(run: &Run, kind: &str, id: &str, why: &str) {
    let step = run.resource(kind, id);
    assert_eq!(step["action"], "skip", "{kind} {id}: {step}");
    assert!(step["note"].as_str().unwrap_or("").contains(why), "{kind} {id}: {step}");
}

/// Whether the run planned anything at all for a resource named `name`.
fn mentions(run: &Run, name: &str) -> bool {
    run.json()["resources"].as_array().into_iter().flatten().any(|s| s["name"] == name)
}

#[tokio::test]
async fn foreign_tables_are_untouched() {
    let moto = Moto::start();
    let ddb = aws_sdk_dynamodb::Client::new(&sdk_config(&moto.endpoint).await);
    let table = |name: &str, tags: &[(&str, &str)]| {
        ddb.create_table()
            .table_name(name)
            .attribute_definitions(AttributeDefinition::builder().attribute_name("id").attribute_type(ScalarAttributeType::S).build().expect("attr"))
            .key_schema(KeySchemaElement::builder().attribute_name("id").key_type(KeyType::Hash).build().expect("key"))
            .billing_mode(BillingMode::PayPerRequest)
            .set_tags(Some(tags.iter().map(|(k, v)| Tag::builder().key(*k).value(*v).build().expect("tag")).collect()))
            .send()
    };
    table("sentry-config-dev", &[("team", "data")]).await.expect("foreign table");
    let prod_owned = [("sentry:managed-by", "sentry-operator"), ("sentry:env", "prod"), ("sentry:id", "trading")];
    table("sentry-trading-dev", &prod_owned).await.expect("table owned by prod");
    table("sentry-audit-dev", &[("sentry:deletion-policy", "delete")]).await.expect("foreign table outside the spec");

    let (run, writes) = apply_dev(&moto);
    skipped(&run, "dynamodb.table", "config", "unmanaged, skipped");
    skipped(&run, "dynamodb.table", "trading", "owned by environment \"prod\"");
    assert!(!mentions(&run, "sentry-audit-dev"), "a foreign table outside the spec is not even an orphan");
    for name in ["sentry-config-dev", "sentry-trading-dev", "sentry-audit-dev"] {
        no_write_names(&writes, name);
        let described = ddb.describe_table().table_name(name).send().await.expect("still there");
        let t = described.table().expect("table");
        assert_eq!(t.key_schema().len(), 1, "{name}: key unchanged");
        assert!(t.global_secondary_indexes().is_empty(), "{name}: no index added");
        let tags = ddb.list_tags_of_resource().resource_arn(t.table_arn().unwrap_or_default()).send().await.expect("tags");
        assert!(tags.tags().iter().all(|t| t.key() != "Project"), "{name}: no tag added");
    }
}

#[tokio::test]
async fn a_foreign_redis_and_its_subnet_group_are_untouched() {
    let moto = Moto::start();
    let config = sdk_config(&moto.endpoint).await;
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let subnet = foreign_network(&ec2, &["us-east-1a"]).await.1.remove(0);
    let cache = aws_sdk_elasticache::Client::new(&config);
    cache
        .create_cache_subnet_group()
        .cache_subnet_group_name("sentry-redis-dev")
        .cache_subnet_group_description("someone else's")
        .subnet_ids(&subnet)
        .send()
        .await
        .expect("foreign subnet group");
    cache
        .create_replication_group()
        .replication_group_id("sentry-redis-dev")
        .replication_group_description("someone else's")
        .engine("redis")
        .cache_node_type("cache.r6g.large")
        .num_cache_clusters(1)
        .cache_subnet_group_name("sentry-redis-dev")
        .send()
        .await
        .expect("foreign replication group");

    let (run, writes) = apply_dev(&moto);
    skipped(&run, "elasticache.subnet-group", "redis", "unmanaged, skipped");
    skipped(&run, "elasticache.replication-group", "redis", "unmanaged, skipped");
    no_write_names(&outside_ec2(&writes), "sentry-redis-dev");
    let group = cache.describe_replication_groups().replication_group_id("sentry-redis-dev").send().await.expect("still there");
    assert_eq!(group.replication_groups()[0].cache_node_type(), Some("cache.r6g.large"), "node type unchanged");
    let subnets = cache.describe_cache_subnet_groups().cache_subnet_group_name("sentry-redis-dev").send().await.expect("still there");
    let members: Vec<&str> = subnets.cache_subnet_groups()[0].subnets().iter().filter_map(|s| s.subnet_identifier()).collect();
    assert_eq!(members, [subnet], "subnets unchanged");
    assert_eq!(run.resource("ec2.vpc", "vpc")["outcome"]["status"], "applied", "the estate around them is built");
}

#[tokio::test]
async fn a_foreign_user_pool_gets_no_groups_clients_or_mfa() {
    let moto = Moto::start();
    let cognito = aws_sdk_cognitoidentityprovider::Client::new(&sdk_config(&moto.endpoint).await);
    let pool = cognito.create_user_pool().pool_name("sentry-users-dev").send().await.expect("foreign pool");
    let pool = pool.user_pool().and_then(|p| p.id()).expect("pool id").to_string();
    cognito.create_group().user_pool_id(&pool).group_name("Admin").description("their admins").send().await.expect("foreign group");

    let (run, writes) = apply_dev(&moto);
    skipped(&run, "cognito.user-pool", "user-pool", "unmanaged, skipped");
    skipped(&run, "cognito.group", "Admin", "unmanaged, skipped");
    for (kind, id) in [("cognito.group", "Operator"), ("cognito.group", "Viewer"), ("cognito.app-client", "admin-frontend")] {
        skipped(&run, kind, id, "depends on cognito.user-pool user-pool, which is not the operator's");
    }
    no_write_names(&writes, &pool);
    let groups = cognito.list_groups().user_pool_id(&pool).send().await.expect("groups");
    let groups: Vec<(Option<&str>, Option<&str>)> = groups.groups().iter().map(|g| (g.group_name(), g.description())).collect();
    assert_eq!(groups, [(Some("Admin"), Some("their admins"))], "no group added or changed");
    let clients = cognito.list_user_pool_clients().user_pool_id(&pool).max_results(60).send().await.expect("clients");
    assert!(clients.user_pool_clients().is_empty(), "no app client added");
    let mfa = cognito.get_user_pool_mfa_config().user_pool_id(&pool).send().await.expect("mfa");
    assert_ne!(mfa.mfa_configuration().map(|m| m.as_str()), Some("ON"), "MFA left as its owner set it");
    let pools = cognito.list_user_pools().max_results(60).send().await.expect("pools");
    assert_eq!(pools.user_pools().len(), 1, "no second pool under the same name");
}

#[tokio::test]
async fn a_foreign_cluster_task_family_and_log_group_are_untouched() {
    let moto = Moto::start();
    let config = sdk_config(&moto.endpoint).await;
    let ecs = aws_sdk_ecs::Client::new(&config);
    ecs.create_cluster().cluster_name("sentry-oms-dev").send().await.expect("foreign cluster");
    let container = aws_sdk_ecs::types::ContainerDefinition::builder().name("theirs").image("nginx:1").memory(128).build();
    ecs.register_task_definition().family("sentry-oms-dev").container_definitions(container).send().await.expect("foreign family");
    let logs = aws_sdk_cloudwatchlogs::Client::new(&config);
    logs.create_log_group().log_group_name("/ecs/sentry-oms-dev").send().await.expect("foreign log group");
    logs.put_retention_policy().log_group_name("/ecs/sentry-oms-dev").retention_in_days(1).send().await.expect("retention");

    let (run, writes) = apply_dev(&moto);
    skipped(&run, "ecs.cluster", "oms", "unmanaged, skipped");
    skipped(&run, "ecs.task-definition", "oms", "unmanaged, skipped");
    skipped(&run, "logs.log-group", "oms", "unmanaged, skipped");
    skipped(&run, "ecs.service", "oms", "which is not the operator's");
    for kind in ["ec2.launch-template", "autoscaling.group", "ecs.capacity-provider"] {
        skipped(&run, kind, "oms", "which is not the operator's");
    }
    skipped(&run, "ecs.cluster-capacity-providers", "oms", "unmanaged, skipped");
    no_write_names(&outside_ec2(&writes), "sentry-oms-dev");
    assert!(clusters_providers(&ecs, "sentry-oms-dev").await.is_empty(), "no capacity given to the foreign cluster");
    let services = ecs.list_services().cluster("sentry-oms-dev").send().await.expect("services");
    assert!(services.service_arns().is_empty(), "no service created in the foreign cluster");
    let groups = aws_sdk_autoscaling::Client::new(&config).describe_auto_scaling_groups().auto_scaling_group_names("sentry-oms-dev").send().await;
    assert!(groups.expect("groups").auto_scaling_groups().is_empty(), "no instances for the foreign cluster");
    let clusters = ecs.describe_clusters().clusters("sentry-oms-dev").include(aws_sdk_ecs::types::ClusterField::Tags).send().await.expect("cluster");
    assert!(clusters.clusters()[0].tags().is_empty(), "no tag added to the foreign cluster");
    let revisions = ecs.list_task_definitions().family_prefix("sentry-oms-dev").send().await.expect("revisions");
    assert_eq!(revisions.task_definition_arns().len(), 1, "no revision registered in the foreign family");
    let groups = logs.describe_log_groups().log_group_name_prefix("/ecs/sentry-oms-dev").send().await.expect("log groups");
    assert_eq!(groups.log_groups()[0].retention_in_days(), Some(1), "retention unchanged");
    for (kind, id) in [("ecs.cluster", "gateway"), ("ecs.service", "websocket"), ("logs.log-group", "websocket")] {
        assert_eq!(run.resource(kind, id)["outcome"]["status"], "applied", "{kind} {id} built");
    }
}

async fn clusters_providers(ecs: &aws_sdk_ecs::Client, name: &str) -> Vec<String> {
    let out = ecs.describe_clusters().clusters(name).send().await.expect("cluster");
    out.clusters().first().map(|c| c.capacity_providers().to_vec()).unwrap_or_default()
}

/// Roles, instance profiles, launch templates, Auto Scaling groups and
/// capacity providers are named uniquely in the account: one planted
/// untagged under each dev name is skipped, never changed, and neither is
/// anything built on it.
#[tokio::test]
async fn foreign_roles_profiles_templates_groups_and_providers_are_untouched() {
    let moto = Moto::start();
    let config = sdk_config(&moto.endpoint).await;
    let iam = aws_sdk_iam::Client::new(&config);
    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ecs-tasks.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
    let theirs = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}"#;
    iam.create_role().role_name("sentry-oms-task-dev").assume_role_policy_document(trust).send().await.expect("foreign role");
    iam.put_role_policy().role_name("sentry-oms-task-dev").policy_name("sentry-operator").policy_document(theirs).send().await.expect("their policy");
    iam.create_instance_profile().instance_profile_name("sentry-ecs-instance-dev").send().await.expect("foreign profile");
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let data = aws_sdk_ec2::types::RequestLaunchTemplateData::builder().instance_type(aws_sdk_ec2::types::InstanceType::T3Micro).build();
    ec2.create_launch_template().launch_template_name("sentry-gateway-dev").launch_template_data(data).send().await.expect("foreign template");
    let subnet = foreign_network(&ec2, &["us-east-1a"]).await.1.remove(0);
    let autoscaling = aws_sdk_autoscaling::Client::new(&config);
    let template = aws_sdk_autoscaling::types::LaunchTemplateSpecification::builder().launch_template_name("sentry-gateway-dev").build();
    let group = autoscaling.create_auto_scaling_group().auto_scaling_group_name("sentry-gateway-dev").min_size(0).max_size(1).launch_template(template);
    group.vpc_zone_identifier(&subnet).send().await.expect("foreign group");
    let arn = autoscaling.describe_auto_scaling_groups().auto_scaling_group_names("sentry-gateway-dev").send().await.expect("group");
    let arn = arn.auto_scaling_groups()[0].auto_scaling_group_arn().expect("arn").to_string();
    let ecs = aws_sdk_ecs::Client::new(&config);
    let provider = aws_sdk_ecs::types::AutoScalingGroupProvider::builder().auto_scaling_group_arn(&arn).build().expect("provider");
    ecs.create_capacity_provider().name("sentry-gateway-ec2-dev").auto_scaling_group_provider(provider).send().await.expect("foreign provider");

    let (run, writes) = apply_dev(&moto);
    skipped(&run, "iam.role", "oms-task", "unmanaged, skipped");
    skipped(&run, "iam.instance-profile", "ecs-instance", "unmanaged, skipped");
    skipped(&run, "ec2.launch-template", "gateway", "unmanaged, skipped");
    skipped(&run, "autoscaling.group", "gateway", "unmanaged, skipped");
    skipped(&run, "ecs.capacity-provider", "gateway", "unmanaged, skipped");
    skipped(&run, "ec2.launch-template", "oms", "which is not the operator's");
    skipped(&run, "ecs.cluster-capacity-providers", "gateway", "which is not the operator's");
    for name in ["sentry-oms-task-dev", "sentry-gateway-ec2-dev"] {
        no_write_names(&writes, name);
    }
    // The operator's own role shares the foreign profile's name: only profile writes would touch it.
    let profile_writes: Vec<(String, String)> = writes.iter().filter(|(op, _)| op.contains("InstanceProfile")).cloned().collect();
    no_write_names(&profile_writes, "sentry-ecs-instance-dev");
    let policy = iam.get_role_policy().role_name("sentry-oms-task-dev").policy_name("sentry-operator").send().await.expect("their policy");
    assert!(sentry_operator::kinds::iam::decode_document(policy.policy_document()).contains("s3:GetObject"), "their policy unchanged");
    let profile = iam.get_instance_profile().instance_profile_name("sentry-ecs-instance-dev").send().await.expect("profile");
    assert!(profile.instance_profile().is_some_and(|p| p.roles().is_empty()), "no role added to the foreign profile");
    let versions = ec2.describe_launch_template_versions().launch_template_name("sentry-gateway-dev").send().await.expect("versions");
    assert_eq!(versions.launch_template_versions().len(), 1, "no version added to the foreign template");
    let group = autoscaling.describe_auto_scaling_groups().auto_scaling_group_names("sentry-gateway-dev").send().await.expect("group");
    assert_eq!(group.auto_scaling_groups()[0].max_size(), Some(1), "the foreign group unchanged");
    assert!(clusters_providers(&ecs, "sentry-gateway-dev").await.is_empty(), "the foreign provider is not attached");
    for (kind, id) in [("iam.role", "websocket-task"), ("ecs.cluster", "gateway"), ("ecs.service", "websocket")] {
        assert_eq!(run.resource(kind, id)["outcome"]["status"], "applied", "{kind} {id} built");
    }
}

#[tokio::test]
async fn foreign_keys_secrets_topics_and_alarms_are_untouched() {
    let moto = Moto::start();
    let config = sdk_config(&moto.endpoint).await;
    let kms = aws_sdk_kms::Client::new(&config);
    let key = kms.create_key().description("the payments team's key").send().await.expect("foreign key");
    let key_id = key.key_metadata().map(|m| m.key_id().to_string()).expect("key id");
    kms.create_alias().alias_name("alias/sentry-data-dev").target_key_id(&key_id).send().await.expect("foreign alias");
    let secrets = aws_sdk_secretsmanager::Client::new(&config);
    secrets.create_secret().name("sentry/dev/database").description("hand-made").secret_string("hand-made value").send().await.expect("foreign secret");
    let sns = aws_sdk_sns::Client::new(&config);
    let topic = sns.create_topic().name("sentry-alerts-dev").send().await.expect("foreign topic");
    let topic = topic.topic_arn().expect("topic arn").to_string();
    let cw = aws_sdk_cloudwatch::Client::new(&config);
    let foreign_alarm = cw
        .put_metric_alarm()
        .alarm_name("sentry-redis-memory-dev")
        .namespace("AWS/ElastiCache")
        .metric_name("CPUUtilization")
        .statistic(aws_sdk_cloudwatch::types::Statistic::Average)
        .period(60)
        .evaluation_periods(1)
        .threshold(90.0)
        .comparison_operator(aws_sdk_cloudwatch::types::ComparisonOperator::GreaterThanThreshold);
    foreign_alarm.send().await.expect("foreign alarm");

    let (run, writes) = apply_dev(&moto);
    skipped(&run, "kms.key", "data", "unmanaged, skipped");
    skipped(&run, "secretsmanager.secret", "database", "unmanaged, skipped");
    skipped(&run, "sns.topic", "alerts", "unmanaged, skipped");
    skipped(&run, "cloudwatch.alarm", "redis-memory", "unmanaged, skipped");
    for needle in [key_id.as_str(), "sentry/dev/database", "sentry-redis-memory-dev"] {
        no_write_names(&writes, needle);
    }
    no_write_names(&writes, &topic);
    let plan = run.json();
    let alarms: Vec<&serde_json::Value> = plan["resources"].as_array().into_iter().flatten().filter(|s| s["kind"] == "cloudwatch.alarm").collect();
    assert!(!alarms.is_empty() && alarms.iter().all(|s| s["action"] == "skip"), "every alarm waits for its topic, which is not the operator's: {alarms:?}");
    let described = kms.describe_key().key_id(&key_id).send().await.expect("key");
    assert_eq!(described.key_metadata().and_then(|m| m.description()), Some("the payments team's key"));
    assert!(!kms.get_key_rotation_status().key_id(&key_id).send().await.expect("rotation").key_rotation_enabled(), "rotation not switched on");
    let secret = secrets.describe_secret().secret_id("sentry/dev/database").send().await.expect("secret");
    assert_eq!(secret.description(), Some("hand-made"));
    assert!(secret.tags().is_empty(), "no tag added");
    let subscriptions = sns.list_subscriptions_by_topic().topic_arn(&topic).send().await.expect("subscriptions");
    assert!(subscriptions.subscriptions().is_empty(), "nobody subscribed to the foreign topic");
    let alarm = cw.describe_alarms().alarm_names("sentry-redis-memory-dev").send().await.expect("alarm");
    assert_eq!(alarm.metric_alarms().first().and_then(|a| a.threshold()), Some(90.0), "the foreign alarm is unchanged");
    // What depends on the foreign key or topic waits; the rest is built.
    assert_eq!(run.resource("secretsmanager.secret", "redis")["action"], "skip", "encrypted with the key the spec names, which is not ours");
    assert_eq!(run.resource("sqs.queue", "master-order")["action"], "create");
}

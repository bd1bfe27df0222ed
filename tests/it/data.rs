//! DynamoDB, ElastiCache Redis and Cognito against the emulator: converge,
//! idempotency, drift repair, deletion safety and blocked replacements.

use aws_sdk_cognitoidentityprovider::types::UserPoolMfaType;
use aws_sdk_dynamodb::types::{DeleteGlobalSecondaryIndexAction, GlobalSecondaryIndexUpdate, PointInTimeRecoverySpecification};

use crate::harness::{is_write, json_args, operator, repo_specs, sdk_config, specs_with, Moto};

async fn dynamodb(moto: &Moto) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(&sdk_config(&moto.endpoint).await)
}

async fn cognito(moto: &Moto) -> aws_sdk_cognitoidentityprovider::Client {
    aws_sdk_cognitoidentityprovider::Client::new(&sdk_config(&moto.endpoint).await)
}

async fn pitr(ddb: &aws_sdk_dynamodb::Client, table: &str) -> bool {
    let out = ddb.describe_continuous_backups().table_name(table).send().await.expect("backups");
    out.continuous_backups_description()
        .and_then(|c| c.point_in_time_recovery_description())
        .and_then(|p| p.point_in_time_recovery_status())
        .is_some_and(|s| s.as_str() == "ENABLED")
}

async fn pool_id(cog: &aws_sdk_cognitoidentityprovider::Client, name: &str) -> String {
    let pools = cog.list_user_pools().max_results(60).send().await.expect("pools");
    pools.user_pools().iter().find(|p| p.name() == Some(name)).and_then(|p| p.id()).expect("pool").to_string()
}

#[tokio::test]
async fn dev_data_and_identity_converge_then_make_no_writes() {
    let (moto, specs) = Moto::built("dev");

    let ddb = dynamodb(&moto).await;
    let trading = ddb.describe_table().table_name("sentry-trading-dev").send().await.expect("trading").table.expect("table");
    let mut indexes: Vec<&str> = trading.global_secondary_indexes().iter().filter_map(|g| g.index_name()).collect();
    indexes.sort_unstable();
    assert_eq!(indexes, ["by-client", "by-exchange-status", "by-symbol"]);
    assert_eq!(trading.billing_mode_summary().and_then(|b| b.billing_mode()).map(|b| b.as_str()), Some("PAY_PER_REQUEST"));
    assert_eq!(trading.sse_description().and_then(|s| s.sse_type()).map(|s| s.as_str()), Some("KMS"));
    assert_eq!(trading.deletion_protection_enabled(), Some(true));
    assert!(!pitr(&ddb, "sentry-trading-dev").await, "PITR only in prod");
    let ttl = ddb.describe_time_to_live().table_name("sentry-trading-dev").send().await.expect("ttl");
    assert_eq!(ttl.time_to_live_description().and_then(|t| t.attribute_name()), Some("expiresAt"));

    let cache = aws_sdk_elasticache::Client::new(&sdk_config(&moto.endpoint).await);
    let groups = cache.describe_replication_groups().replication_group_id("sentry-redis-dev").send().await.expect("redis");
    let redis = &groups.replication_groups()[0];
    assert_eq!(redis.cache_node_type(), Some("cache.t4g.micro"));
    assert_eq!(redis.at_rest_encryption_enabled(), Some(true));
    let subnets = cache.describe_cache_subnet_groups().cache_subnet_group_name("sentry-redis-dev").send().await.expect("subnet group");
    assert_eq!(subnets.cache_subnet_groups()[0].subnets().len(), 2, "the two private subnets");

    let cog = cognito(&moto).await;
    let pool = pool_id(&cog, "sentry-users-dev").await;
    let mfa = cog.get_user_pool_mfa_config().user_pool_id(&pool).send().await.expect("mfa");
    assert_eq!(mfa.mfa_configuration(), Some(&UserPoolMfaType::On));
    assert!(mfa.software_token_mfa_configuration().is_some_and(|c| c.enabled()));
    let listed = cog.list_groups().user_pool_id(&pool).send().await.expect("groups");
    let mut groups: Vec<(String, Option<i32>)> = listed.groups().iter().map(|g| (g.group_name().unwrap_or_default().to_string(), g.precedence())).collect();
    groups.sort();
    assert_eq!(groups, [("Admin".to_string(), Some(1)), ("Operator".to_string(), Some(2)), ("Viewer".to_string(), Some(3))]);
    let clients = cog.list_user_pool_clients().user_pool_id(&pool).max_results(60).send().await.expect("clients");
    let client_id = clients.user_pool_clients()[0].client_id().expect("id");
    let client = cog.describe_user_pool_client().user_pool_id(&pool).client_id(client_id).send().await.expect("client");
    let client = client.user_pool_client().expect("client");
    assert!(client.client_secret().is_none(), "a browser frontend gets no secret");
    assert_eq!(client.explicit_auth_flows().len(), 2);

    moto.assert_converged(&specs, "dev");
}

/// The shipped prod spec as is: Redis with two nodes (a primary and one
/// replica), automatic failover and multi-AZ, converges from empty in one
/// pass, and the next pass writes nothing.
#[tokio::test]
async fn prod_redis_converges_with_two_nodes_then_makes_no_writes() {
    let moto = Moto::start();
    let specs = repo_specs();
    let run = moto.reconcile(&specs, "prod");
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.json()["summary"]["failed"], 0, "{}", run.stdout);
    assert_eq!(run.resource("elasticache.replication-group", "redis")["action"], "create");

    let cache = aws_sdk_elasticache::Client::new(&sdk_config(&moto.endpoint).await);
    let groups = cache.describe_replication_groups().replication_group_id("sentry-redis-prod").send().await.expect("redis");
    let redis = &groups.replication_groups()[0];
    assert_eq!(redis.member_clusters().len(), 2, "a primary and one replica: {redis:?}");
    let members: usize = redis.node_groups().iter().map(|g| g.node_group_members().len()).sum();
    assert_eq!((redis.node_groups().len(), members), (1, 2), "one shard of two nodes: {redis:?}");
    assert_eq!(redis.cache_node_type(), Some("cache.r7g.large"));
    assert_eq!(redis.automatic_failover().map(|a| a.as_str()), Some("enabled"));
    assert_eq!(redis.multi_az().map(|m| m.as_str()), Some("enabled"));
    assert_eq!(redis.snapshot_retention_limit(), Some(7));

    moto.start_recording();
    let second = moto.reconcile(&specs, "prod");
    let writes: Vec<String> = moto.stop_recording().into_iter().filter(|op| is_write(op)).collect();
    assert_eq!(second.code, 0, "{}\n{}", second.stdout, second.stderr);
    assert_eq!(second.json()["calls"]["writes"], 0, "{}", second.stdout);
    assert!(writes.is_empty(), "{writes:?}");
}

#[tokio::test]
async fn stateful_drift_is_repaired_and_mfa_off_is_a_security_drift() {
    let (moto, specs) = Moto::built("prod");
    let ddb = dynamodb(&moto).await;
    assert!(pitr(&ddb, "sentry-config-prod").await && pitr(&ddb, "sentry-trading-prod").await, "PITR on in prod");

    // PITR off, a GSI deleted, a table tag removed, MFA off, a group deleted.
    let off = PointInTimeRecoverySpecification::builder().point_in_time_recovery_enabled(false).build().expect("spec");
    ddb.update_continuous_backups().table_name("sentry-trading-prod").point_in_time_recovery_specification(off).send().await.expect("pitr off");
    let drop_index =
        GlobalSecondaryIndexUpdate::builder().delete(DeleteGlobalSecondaryIndexAction::builder().index_name("by-symbol").build().expect("action")).build();
    ddb.update_table().table_name("sentry-trading-prod").global_secondary_index_updates(drop_index).send().await.expect("drop gsi");
    let arn = ddb.describe_table().table_name("sentry-config-prod").send().await.expect("config").table.and_then(|t| t.table_arn).expect("arn");
    ddb.untag_resource().resource_arn(&arn).tag_keys("Project").send().await.expect("untag");
    let cog = cognito(&moto).await;
    let pool = pool_id(&cog, "sentry-users-prod").await;
    cog.set_user_pool_mfa_config().user_pool_id(&pool).mfa_configuration(UserPoolMfaType::Off).send().await.expect("mfa off");
    cog.delete_group().user_pool_id(&pool).group_name("Operator").send().await.expect("delete group");

    let run = moto.reconcile(&specs, "prod");
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    let report = run.json();
    let security = report["sections"].as_array().and_then(|s| s.iter().find(|s| s["title"] == "Security drift (MFA)").cloned()).expect("security section");
    assert!(security["lines"][0].as_str().unwrap_or_default().contains("MfaConfiguration is OFF instead of ON"), "{security}");
    assert!(run.stderr.contains("SecurityDrift"), "alerted");
    assert!(pitr(&ddb, "sentry-trading-prod").await, "PITR back on");
    let trading = ddb.describe_table().table_name("sentry-trading-prod").send().await.expect("trading").table.expect("table");
    assert_eq!(trading.global_secondary_indexes().len(), 3, "GSI re-created");
    let tags = ddb.list_tags_of_resource().resource_arn(&arn).send().await.expect("tags");
    assert!(tags.tags().iter().any(|t| t.key() == "Project" && t.value() == "sentry"), "tag restored");
    let mfa = cog.get_user_pool_mfa_config().user_pool_id(&pool).send().await.expect("mfa");
    assert_eq!(mfa.mfa_configuration(), Some(&UserPoolMfaType::On));
    let groups = cog.list_groups().user_pool_id(&pool).send().await.expect("groups");
    assert!(groups.groups().iter().any(|g| g.group_name() == Some("Operator") && g.precedence() == Some(2)));
    assert_eq!(moto.reconcile(&specs, "prod").code, 0, "converged after the repair");
}

#[tokio::test]
async fn a_table_removed_from_the_spec_survives() {
    let (moto, _) = Moto::built("dev");
    let base = std::fs::read_to_string(repo_specs().join("base.yaml")).expect("base");
    // The task roles' access names the table too: they keep `config` only.
    let roles: String =
        ["oms-task", "frontend-admin-task", "websocket-task"].iter().map(|r| format!("    {r}: {{ access: {{ tables: [config] }} }}\n")).collect();
    let overlay = format!("data:\n  tables:\n    trading: null\niam:\n  roles:\n{roles}");
    let dev = format!("{}{overlay}", std::fs::read_to_string(repo_specs().join("dev.yaml")).expect("dev"));
    let dir = specs_with(&[("base.yaml", &base), ("dev.yaml", &dev)]);
    let run = moto.reconcile(dir.path(), "dev");
    assert_eq!(run.json()["summary"]["failed"], 0, "{}", run.stdout);
    let report = run.json();
    let updated: Vec<&serde_json::Value> = report["resources"].as_array().into_iter().flatten().filter(|r| r["action"] != "noop").collect();
    let kinds: Vec<String> = updated.iter().map(|r| format!("{} {}", r["kind"].as_str().unwrap_or(""), r["action"].as_str().unwrap_or(""))).collect();
    assert!(kinds.iter().all(|k| k == "dynamodb.table orphan" || k == "iam.role update"), "only the table's grants are withdrawn: {kinds:?}");
    let step = run.resource("dynamodb.table", "trading");
    assert_eq!(step["action"], "orphan");
    assert!(step["note"].as_str().unwrap_or_default().contains("retained"));
    let ddb = dynamodb(&moto).await;
    assert!(ddb.describe_table().table_name("sentry-trading-dev").send().await.is_ok(), "the table and its data stay");
}

#[tokio::test]
async fn a_key_schema_change_is_blocked_and_nothing_is_written() {
    let (moto, _) = Moto::built("dev");
    let dev = format!(
        "{}data:\n  tables:\n    config:\n      attributes: {{ PK: null, id: S }}\n      key: {{ partition: id, sort: SK }}\n",
        std::fs::read_to_string(repo_specs().join("dev.yaml")).expect("dev")
    );
    let dir = specs_with(&[("dev.yaml", &dev)]);
    let plan = operator(&moto.endpoint, &json_args(dir.path(), &["plan", "--env", "dev"]));
    let step = plan.resource("dynamodb.table", "config");
    assert_eq!(step["action"], "blocked");
    assert!(step["note"].as_str().unwrap_or_default().contains("KeySchema cannot change without replacing"), "{step}");
    assert_eq!(plan.code, 1);

    moto.start_recording();
    let run = moto.reconcile(dir.path(), "dev");
    let writes: Vec<String> = moto.stop_recording().into_iter().filter(|op| is_write(op)).collect();
    assert_eq!(run.code, 1, "blocked means not converged");
    assert!(writes.is_empty(), "{writes:?}");
    let text = operator(&moto.endpoint, &["--specs", dir.path().to_str().expect("utf-8"), "plan", "--env", "dev"]);
    assert!(text.stdout.contains("x dynamodb.table config (sentry-config-dev): BLOCKED: KeySchema"), "{}", text.stdout);
}

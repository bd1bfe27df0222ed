//! Taking over an estate built with CloudFormation: `import` writes the spec,
//! `plan` shows adoptions only, `reconcile` adopts every resource in place,
//! and from then on the operator guards it (a deleted NAT gateway comes back
//! on the adopted whitelist address).
//!
//! The emulator's CloudFormation creates the EC2, SQS, DynamoDB, ECS and Logs
//! resources of the templates in `fixtures/cfn/` (modeled on the seeds'
//! stacks) but skips Cognito and ElastiCache ones, so the fixture makes the
//! user pool and Redis with direct calls, named like the seeds' (`…-dev`).

use std::path::Path;
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::Filter;

use crate::harness::{is_write, json_args, operator, sdk_config, Moto, Run};

/// The stacks of a dev estate, in the seeds' order.
const STACKS: &[(&str, &str)] = &[
    ("sentry-vpc-dev", "vpc.yaml"),
    ("sentry-dynamodb-config-dev", "dynamodb-config.yaml"),
    ("sentry-dynamodb-trading-dev", "dynamodb-trading.yaml"),
    ("sentry-sqs-dev", "sqs.yaml"),
    ("sentry-cluster-gateway-dev", "cluster-gateway.yaml"),
    ("sentry-cluster-oms-dev", "cluster-oms.yaml"),
];

/// What the fixture built, by the ids AWS gave it.
struct Estate {
    vpc: String,
    subnets: Vec<String>,
    nat: String,
    nat_allocation: String,
    addresses: Vec<(String, String)>,
    user_pool: String,
}

async fn build_estate(moto: &Moto) -> Estate {
    let config = sdk_config(&moto.endpoint).await;
    let cfn = aws_sdk_cloudformation::Client::new(&config);
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/fixtures/cfn");
    for (stack, file) in STACKS {
        let body = std::fs::read_to_string(fixtures.join(file)).expect("template");
        cfn.create_stack().stack_name(*stack).template_body(body).send().await.expect("create stack");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = cfn.describe_stacks().stack_name(*stack).send().await.expect("describe stack");
            let status = out.stacks().first().and_then(|s| s.stack_status()).map(|s| s.as_str().to_string()).unwrap_or_default();
            if status == "CREATE_COMPLETE" {
                break;
            }
            assert!(!status.contains("FAILED") && Instant::now() < deadline, "{stack}: {status}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let vpc = ec2.describe_vpcs().filters(Filter::builder().name("cidr").values("10.0.0.0/16").build()).send().await.expect("vpcs");
    let vpc = vpc.vpcs()[0].vpc_id().expect("vpc id").to_string();
    let in_vpc = Filter::builder().name("vpc-id").values(&vpc).build();
    let subnets = ec2.describe_subnets().filters(in_vpc.clone()).send().await.expect("subnets");
    let mut subnet_ids: Vec<String> = subnets.subnets().iter().filter_map(|s| s.subnet_id().map(str::to_string)).collect();
    subnet_ids.sort();
    let nats = ec2.describe_nat_gateways().send().await.expect("nat gateways");
    let nat = &nats.nat_gateways()[0];
    let nat_allocation = nat.nat_gateway_addresses()[0].allocation_id().expect("allocation").to_string();
    let addresses = ec2.describe_addresses().send().await.expect("addresses");
    let mut addresses: Vec<(String, String)> =
        addresses.addresses().iter().filter_map(|a| Some((a.allocation_id()?.to_string(), a.public_ip()?.to_string()))).collect();
    addresses.sort();

    // Made outside CloudFormation: a queue made by hand, found by its name;
    // the user pool and Redis (the emulator's CloudFormation skips these types).
    let sqs = aws_sdk_sqs::Client::new(&config);
    sqs.create_queue().queue_name("orders-audit-dev").send().await.expect("a queue made by hand");
    let cognito = aws_sdk_cognitoidentityprovider::Client::new(&config);
    let pool = cognito.create_user_pool().pool_name("sentry-oms-users-dev").send().await.expect("user pool");
    let user_pool = pool.user_pool().and_then(|p| p.id()).expect("pool id").to_string();
    cognito.create_group().user_pool_id(&user_pool).group_name("Admin").description("Full access").precedence(1).send().await.expect("group");
    cognito.create_user_pool_client().user_pool_id(&user_pool).client_name("admin-frontend-dev").send().await.expect("app client");
    let groups = ec2.describe_security_groups().filters(Filter::builder().name("group-name").values("sentry-redis-dev").build()).send().await.expect("groups");
    let redis_group = groups.security_groups()[0].group_id().expect("group id").to_string();
    let elasticache = aws_sdk_elasticache::Client::new(&config);
    let private: Vec<String> = subnets
        .subnets()
        .iter()
        .filter(|s| s.cidr_block().is_some_and(|c| c.starts_with("10.0.10.") || c.starts_with("10.0.11.")))
        .filter_map(|s| s.subnet_id().map(str::to_string))
        .collect();
    elasticache
        .create_cache_subnet_group()
        .cache_subnet_group_name("sentry-redis-dev")
        .cache_subnet_group_description("Redis")
        .set_subnet_ids(Some(private))
        .send()
        .await
        .expect("subnet group");
    elasticache
        .create_replication_group()
        .replication_group_id("sentry-redis-dev")
        .replication_group_description("OMS cache")
        .engine("redis")
        .cache_node_type("cache.t4g.micro")
        .num_cache_clusters(1)
        .cache_subnet_group_name("sentry-redis-dev")
        .security_group_ids(redis_group)
        .send()
        .await
        .expect("replication group");
    Estate { vpc, subnets: subnet_ids, nat: nat.nat_gateway_id().expect("nat id").to_string(), nat_allocation, addresses, user_pool }
}

fn import(moto: &Moto, out: &Path) -> Run {
    operator(&moto.endpoint, &["--output", "json", "import", "--env", "dev", "--out", out.to_str().expect("utf-8")])
}

#[tokio::test]
async fn a_cloudformation_estate_is_imported_and_adopted_in_place() {
    let moto = Moto::start();
    let estate = build_estate(&moto).await;
    let dir = tempfile::tempdir().expect("tempdir");

    // Import reads only.
    let (run, writes) = moto.writes_of(|| import(&moto, dir.path()));
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(writes.is_empty(), "import wrote to AWS: {writes:?}");
    let summary = &run.json()["summary"];
    assert_eq!(summary["stacks"].as_array().map(Vec::len), Some(STACKS.len()), "{summary}");
    let spec = std::fs::read_to_string(dir.path().join("dev.yaml")).expect("the spec is written");
    for address in estate.addresses.iter().map(|(allocation, _)| allocation) {
        assert!(spec.contains(address.as_str()), "every whitelist address is pinned ({address}): {spec}");
    }

    // Without --out the spec goes to stdout (the same spec), the summary to stderr.
    let printed = operator(&moto.endpoint, &["import", "--env", "dev"]);
    assert_eq!(printed.code, 0, "{}", printed.stderr);
    assert_eq!(printed.stdout, spec, "stdout holds the spec --out writes");
    assert!(printed.stderr.contains("not representable:") || printed.stderr.contains("mapped:"), "{}", printed.stderr);

    // The plan adopts; it creates, replaces and deletes nothing.
    let plan = operator(&moto.endpoint, &json_args(dir.path(), &["plan", "--env", "dev"]));
    assert_eq!(plan.code, 2, "{}\n{}", plan.stdout, plan.stderr);
    let report = plan.json();
    let summary = &report["summary"];
    assert_eq!((summary["create"].as_u64(), summary["delete"].as_u64(), summary["blocked"].as_u64()), (Some(0), Some(0), Some(0)), "{}", plan.stdout);
    assert!(summary["adopt"].as_u64().unwrap_or(0) >= 20, "{summary}");
    let replaced: Vec<&serde_json::Value> =
        report["resources"].as_array().into_iter().flatten().filter(|r| r["action"] == "replace" || r["action"] == "skip").collect();
    assert!(replaced.is_empty(), "{replaced:?}");
    // The kinds that render their own entries adopt with no change but the ownership tags.
    let rendered = ["sqs.queue", "dynamodb.table", "logs.log-group", "ecs.cluster"];
    let adopted: Vec<&serde_json::Value> =
        report["resources"].as_array().into_iter().flatten().filter(|r| rendered.contains(&r["kind"].as_str().unwrap_or_default())).collect();
    assert!(adopted.len() >= 11 && adopted.iter().all(|r| r["action"] == "adopt"), "7 queues, 2 tables, 2 clusters and their log groups: {adopted:?}");
    let tagged = adopted.iter().flat_map(|r| r["changes"].as_array().into_iter().flatten()).filter(|c| c["field"] == "tags.sentry:env").count();
    assert_eq!(tagged, adopted.len(), "each adoption adds the ownership tags");
    let changed: Vec<String> = adopted
        .iter()
        .flat_map(|r| r["changes"].as_array().into_iter().flatten().map(move |c| format!("{} {}: {}", r["kind"], r["id"], c["field"])))
        .filter(|c| !c.contains(": \"tags.sentry:"))
        .collect();
    assert!(changed.is_empty(), "an import adopts as it is: {changed:?}");

    // Binding to a spec that exists (`--write`): the same spec without its
    // adopt entries gets them back, and plans the same adoptions.
    let imported = std::fs::read_to_string(dir.path().join("dev.yaml")).expect("spec");
    let hand_written = imported.split("\nadopt:\n").next().expect("the spec before its adopt section");
    let bound = crate::harness::spec_dir(&[("dev.yaml", hand_written)]);
    let run = operator(&moto.endpoint, &["--specs", bound.path().to_str().expect("utf-8"), "--output", "json", "import", "--env", "dev", "--write"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.json()["unbound"].as_array().map(Vec::len), Some(0), "{}", run.stdout);
    let again = operator(&moto.endpoint, &json_args(bound.path(), &["plan", "--env", "dev"])).json();
    assert_eq!((again["summary"]["create"].as_u64(), again["summary"]["adopt"].as_u64()), (Some(0), summary["adopt"].as_u64()), "{}", again["summary"]);

    // Reconcile adopts every resource in place: the same ids, now tagged.
    // The emulator has no Cognito TagResource (moto 5.2.1), so the user pool
    // and its members, which the plan above adopts, are left out of the
    // writing passes through an overlay (`null` removes a key); tagging an
    // adopted pool is tested against mocks (kinds::cognito::user_pool).
    let imported = std::fs::read_to_string(dir.path().join("dev.yaml")).expect("spec");
    let cognito_entries: Vec<String> = imported
        .lines()
        .filter(|l| l.trim_start().starts_with("cognito."))
        .map(|l| format!("  {}: null", l.trim().split(':').next().unwrap_or_default()))
        .collect();
    assert_eq!(cognito_entries.len(), 3, "the pool, its group and its app client are adopted: {imported}");
    let dir = crate::harness::spec_dir(&[("base.yaml", &imported), ("dev.yaml", &format!("identity: null\nadopt:\n{}\n", cognito_entries.join("\n")))]);
    let run = moto.reconcile(dir.path(), "dev");
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.json()["summary"]["failed"], 0, "{}", run.stdout);
    let config = sdk_config(&moto.endpoint).await;
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let owned = Filter::builder().name("tag:sentry:env").values("dev").build();
    let vpcs = ec2.describe_vpcs().filters(owned.clone()).send().await.expect("vpcs");
    assert_eq!(vpcs.vpcs().iter().filter_map(|v| v.vpc_id()).collect::<Vec<_>>(), [estate.vpc.as_str()], "the same VPC, adopted");
    let subnets = ec2.describe_subnets().filters(owned.clone()).send().await.expect("subnets");
    let mut adopted: Vec<String> = subnets.subnets().iter().filter_map(|s| s.subnet_id().map(str::to_string)).collect();
    adopted.sort();
    assert_eq!(adopted, estate.subnets, "the same subnets");
    let nats = ec2.describe_nat_gateways().send().await.expect("nat gateways");
    let live: Vec<&str> =
        nats.nat_gateways().iter().filter(|n| n.state().is_some_and(|s| s.as_str() == "available")).filter_map(|n| n.nat_gateway_id()).collect();
    assert_eq!(live, [estate.nat.as_str()], "the same NAT gateway, no second one");
    let addresses = ec2.describe_addresses().send().await.expect("addresses");
    let mut now: Vec<(String, String)> =
        addresses.addresses().iter().filter_map(|a| Some((a.allocation_id()?.to_string(), a.public_ip()?.to_string()))).collect();
    now.sort();
    assert_eq!(now, estate.addresses, "no address allocated or released");
    let ledger = vpcs.vpcs()[0].tags().iter().filter(|t| t.key().is_some_and(|k| k.starts_with("sentry:whitelist-ledger/"))).count();
    assert_eq!(ledger, estate.addresses.len(), "the adopted addresses are in the whitelist ledger");
    let sqs = aws_sdk_sqs::Client::new(&config);
    let url = sqs.get_queue_url().queue_name("master-order-queue-dev.fifo").send().await.expect("the same queue");
    let tags = sqs.list_queue_tags().queue_url(url.queue_url().expect("url")).send().await.expect("tags").tags.unwrap_or_default();
    assert_eq!(tags.get("sentry:env").map(String::as_str), Some("dev"), "{tags:?}");
    let queues = sqs.list_queues().send().await.expect("queues").queue_urls.unwrap_or_default();
    assert_eq!(queues.len(), 7, "no queue created next to the adopted ones: {queues:?}");
    let url = sqs.get_queue_url().queue_name("orders-audit-dev").send().await.expect("the queue made by hand");
    let tags = sqs.list_queue_tags().queue_url(url.queue_url().expect("url")).send().await.expect("tags").tags.unwrap_or_default();
    assert_eq!(tags.get("sentry:id").map(String::as_str), Some("orders-audit"), "found by name and adopted: {tags:?}");
    let dynamodb = aws_sdk_dynamodb::Client::new(&config);
    let tables = dynamodb.list_tables().send().await.expect("tables");
    assert_eq!(tables.table_names().len(), 2, "the same tables, no new ones: {:?}", tables.table_names());
    for table in tables.table_names() {
        let arn = dynamodb.describe_table().table_name(table).send().await.expect("table").table.and_then(|t| t.table_arn).expect("arn");
        let tags = dynamodb.list_tags_of_resource().resource_arn(arn).send().await.expect("tags");
        assert!(tags.tags().iter().any(|t| t.key() == "sentry:env" && t.value() == "dev"), "{table} adopted: {:?}", tags.tags());
    }
    let cognito = aws_sdk_cognitoidentityprovider::Client::new(&config);
    let pools = cognito.list_user_pools().max_results(60).send().await.expect("pools");
    assert_eq!(pools.user_pools().iter().filter_map(|p| p.id()).collect::<Vec<_>>(), [estate.user_pool.as_str()], "the same user pool");
    let elasticache = aws_sdk_elasticache::Client::new(&config);
    let groups = elasticache.describe_replication_groups().send().await.expect("redis");
    assert_eq!(groups.replication_groups().len(), 1, "the same Redis");
    let ecs = aws_sdk_ecs::Client::new(&config);
    let clusters = ecs.list_clusters().send().await.expect("clusters");
    assert_eq!(clusters.cluster_arns().len(), 2, "the same clusters: {:?}", clusters.cluster_arns());

    // Converged: the next pass writes nothing.
    moto.assert_converged(dir.path(), "dev");

    // From now on the whitelist guard holds: the NAT gateway deleted out of
    // band comes back on the adopted address.
    ec2.delete_nat_gateway().nat_gateway_id(&estate.nat).send().await.expect("delete nat");
    let run = moto.reconcile(dir.path(), "dev");
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    let nats = ec2.describe_nat_gateways().filter(Filter::builder().name("state").values("available").build()).send().await.expect("nat gateways");
    let back: Vec<&str> = nats.nat_gateways().iter().filter_map(|n| n.nat_gateway_addresses().first()?.allocation_id()).collect();
    assert_eq!(back, [estate.nat_allocation.as_str()], "a new NAT gateway on the adopted whitelist address");
}

#[tokio::test]
async fn import_refuses_what_it_cannot_adopt_and_plan_refuses_a_missing_adopt_id() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let run = import(&moto, dir.path());
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("no CloudFormation stack matches \"sentry-*-dev\""), "{}", run.stderr);
    assert!(!dir.path().join("dev.yaml").exists());

    let spec = "messaging:\n  queues:\n    orders: {}\nadopt:\n  sqs.queue/orders: { id: orders-that-never-were }\n";
    let specs = crate::harness::spec_dir(&[("dev.yaml", spec)]);
    let (plan, writes) = moto.writes_of(|| operator(&moto.endpoint, &json_args(specs.path(), &["reconcile", "--once", "--env", "dev"])));
    assert_eq!(plan.code, 1, "{}\n{}", plan.stdout, plan.stderr);
    assert!(plan.stdout.contains("adopt.sqs.queue/orders: orders-that-never-were does not exist"), "{}", plan.stdout);
    assert!(writes.iter().all(|w| !is_write(w)) && writes.is_empty(), "nothing created in its place: {writes:?}");

    let spec = "messaging:\n  queues:\n    orders: {}\nadopt:\n  ec2.subnet/nowhere: { id: subnet-1 }\n";
    let specs = crate::harness::spec_dir(&[("dev.yaml", spec)]);
    let plan = operator(&moto.endpoint, &json_args(specs.path(), &["plan", "--env", "dev"]));
    assert_eq!(plan.code, 1, "{}\n{}", plan.stdout, plan.stderr);
    assert!(plan.stdout.contains("adopt.ec2.subnet/nowhere: names no resource of the spec"), "{}", plan.stdout);
}

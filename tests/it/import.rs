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

/// How the imported spec writes the shared private route table.
const SHARED_TABLE: &str =
    "\n  routeTables:\n    private:\n      name: sentry-private-rt-dev\n      subnets: [private-a, private-b]\n      natGateway: nat-a\n";

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
    hold_as_aws_would(&cfn, &ec2, subnets.subnets()).await;
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

/// The Name tags of `vpc.yaml` the emulator's CloudFormation drops (moto 5),
/// by logical id: several are not the operator's default names, which an
/// import must keep.
const NAMES: &[(&str, &str)] = &[
    ("InternetGateway", "sentry-internet-gateway-dev"),
    ("WhitelistEip1", "sentry-nat-eip-a-dev"),
    ("WhitelistEip2", "sentry-whitelist-2-dev"),
    ("NatGatewayA", "sentry-nat-gateway-a-dev"),
    ("PublicRouteTable", "sentry-public-rt-dev"),
    ("PrivateRouteTable", "sentry-private-rt-dev"),
    ("DynamoDbEndpoint", "sentry-dynamodb-endpoint-dev"),
    ("S3Endpoint", "sentry-s3-endpoint-dev"),
];

/// The emulator's CloudFormation drops some tags of `vpc.yaml` ([`NAMES`])
/// and every subnet association of its route tables (moto 5): they are made
/// here through EC2, as AWS holds them after the stack.
async fn hold_as_aws_would(cfn: &aws_sdk_cloudformation::Client, ec2: &aws_sdk_ec2::Client, subnets: &[aws_sdk_ec2::types::Subnet]) {
    let resources = cfn.list_stack_resources().stack_name("sentry-vpc-dev").send().await.expect("stack resources");
    let physical = |logical: &str| {
        let r = resources.stack_resource_summaries().iter().find(|r| r.logical_resource_id() == Some(logical)).expect("in the stack");
        r.physical_resource_id().expect("physical id").to_string()
    };
    let addresses = ec2.describe_addresses().send().await.expect("addresses");
    for (logical, name) in NAMES {
        let mut id = physical(logical);
        if let Some(a) = addresses.addresses().iter().find(|a| a.public_ip() == Some(id.as_str())) {
            id = a.allocation_id().expect("allocation").to_string(); // an EIP's physical id is its address
        }
        let tag = aws_sdk_ec2::types::Tag::builder().key("Name").value(*name).build();
        ec2.create_tags().resources(id).tags(tag).send().await.expect("Name tag");
    }
    for (logical, cidrs) in [("PublicRouteTable", ["10.0.0.0/24", "10.0.1.0/24"]), ("PrivateRouteTable", ["10.0.10.0/24", "10.0.11.0/24"])] {
        let table = physical(logical);
        for subnet in subnets.iter().filter(|s| s.cidr_block().is_some_and(|c| cidrs.contains(&c))).filter_map(|s| s.subnet_id()) {
            ec2.associate_route_table().route_table_id(&table).subnet_id(subnet).send().await.expect("association");
        }
    }
}

/// The changes of `adopted` (plan entries) other than the ownership tags and
/// the whitelist ledger's record of an adopted address (on the VPC's tags).
fn changes_beyond_ownership(adopted: &[&serde_json::Value]) -> Vec<String> {
    adopted
        .iter()
        .flat_map(|r| {
            r["changes"].as_array().into_iter().flatten().map(move |c| format!("{} {}: {} {} -> {}", r["kind"], r["id"], c["field"], c["live"], c["desired"]))
        })
        .filter(|c| !c.contains(": \"tags.sentry:") && !c.contains(": \"RecordedInLedger\""))
        .collect()
}

/// Runs `import` (`pass`) under the recorder: it succeeds and writes
/// nothing; the calls it made are printed (`--nocapture` shows them).
fn read_only(moto: &Moto, source: &str, pass: impl FnOnce() -> Run) -> Run {
    moto.start_recording();
    let run = pass();
    let recorded = moto.stop_recording();
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let writes: Vec<&String> = recorded.iter().filter(|op| is_write(op)).collect();
    assert!(writes.is_empty(), "import wrote to AWS: {writes:?}");
    eprintln!("import of {source}: {} calls, none a write", recorded.len());
    run
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
    let run = read_only(&moto, "the CloudFormation estate", || import(&moto, dir.path()));
    let summary = &run.json()["summary"];
    assert_eq!(summary["stacks"].as_array().map(Vec::len), Some(STACKS.len()), "{summary}");
    let spec = std::fs::read_to_string(dir.path().join("dev.yaml")).expect("the spec is written");
    for address in estate.addresses.iter().map(|(allocation, _)| allocation) {
        assert!(spec.contains(address.as_str()), "every whitelist address is pinned ({address}): {spec}");
    }
    // The seeds' dev layout: one private route table shared by both private subnets, written as it is.
    assert!(spec.contains(SHARED_TABLE), "{spec}");

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
    // The kinds that render their own entries adopt with no change but the
    // ownership tags (names, routes, associations and settings as they are).
    let rendered = [
        "sqs.queue",
        "dynamodb.table",
        "logs.log-group",
        "ecs.cluster",
        "ec2.vpc",
        "ec2.subnet",
        "ec2.internet-gateway",
        "ec2.elastic-ip",
        "ec2.nat-gateway",
        "ec2.route-table",
        "ec2.security-group",
        "ec2.security-group-rules",
        "ec2.vpc-endpoint",
    ];
    let adopted: Vec<&serde_json::Value> =
        report["resources"].as_array().into_iter().flatten().filter(|r| rendered.contains(&r["kind"].as_str().unwrap_or_default())).collect();
    assert!(
        adopted.len() >= 30 && adopted.iter().all(|r| r["action"] == "adopt"),
        "the network, 7 queues, 2 tables, 2 clusters and their log groups: {adopted:?}"
    );
    let tagged = adopted.iter().filter(|r| r["changes"].as_array().into_iter().flatten().any(|c| c["field"] == "tags.sentry:env")).count();
    assert!(tagged >= 30, "each adoption adds the ownership tags (a group's rules are tagged with their group): {tagged}");
    let changed = changes_beyond_ownership(&adopted);
    assert!(changed.is_empty(), "an import adopts as it is (the whitelist ledger, on the VPC's tags, records the adopted addresses): {changed:?}");

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

/// A small estate made by hand (or by Terraform): a VPC of one zone with a
/// public and a private subnet, an internet gateway, a NAT gateway on its
/// address, a table each, a security group with one rule, and a queue; all
/// named by their Name tags (`shop-…`, none of the operator's defaults).
struct HandMade {
    vpc: String,
    /// public-a, private-a, public-b, private-b
    subnets: [String; 4],
    igw: String,
    allocation: String,
    nat: String,
    public_rt: String,
    private_rt: String,
    group: String,
    queue: String,
    target_group: String,
    balancer: String,
    listener: String,
    rule: String,
    repository: String,
}

async fn build_hand_made(moto: &Moto) -> HandMade {
    let config = sdk_config(&moto.endpoint).await;
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let named = |name: &str, kind: aws_sdk_ec2::types::ResourceType| {
        let tag = aws_sdk_ec2::types::Tag::builder().key("Name").value(name).build();
        aws_sdk_ec2::types::TagSpecification::builder().resource_type(kind).tags(tag).build()
    };
    use aws_sdk_ec2::types::ResourceType as T;
    let vpc = ec2.create_vpc().cidr_block("10.1.0.0/16").tag_specifications(named("shop-vpc", T::Vpc)).send().await.expect("vpc");
    let vpc = vpc.vpc().and_then(|v| v.vpc_id()).expect("vpc id").to_string();
    let subnet = |cidr: &'static str, name: &'static str| {
        let zone = if name.ends_with("-a") { "us-east-1a" } else { "us-east-1b" };
        let request = ec2.create_subnet().vpc_id(&vpc).cidr_block(cidr).availability_zone(zone).tag_specifications(named(name, T::Subnet));
        async move { request.send().await.expect("subnet").subnet().and_then(|s| s.subnet_id()).expect("subnet id").to_string() }
    };
    let (public, private) = (subnet("10.1.0.0/24", "shop-public-a").await, subnet("10.1.10.0/24", "shop-private-a").await);
    let (public_b, private_b) = (subnet("10.1.1.0/24", "shop-public-b").await, subnet("10.1.11.0/24", "shop-private-b").await);
    let igw = ec2.create_internet_gateway().tag_specifications(named("shop-igw", T::InternetGateway)).send().await.expect("igw");
    let igw = igw.internet_gateway().and_then(|g| g.internet_gateway_id()).expect("igw id").to_string();
    ec2.attach_internet_gateway().internet_gateway_id(&igw).vpc_id(&vpc).send().await.expect("attach");
    let eip =
        ec2.allocate_address().domain(aws_sdk_ec2::types::DomainType::Vpc).tag_specifications(named("shop-nat-ip", T::ElasticIp)).send().await.expect("eip");
    let allocation = eip.allocation_id().expect("allocation").to_string();
    let nat = ec2.create_nat_gateway().subnet_id(&public).allocation_id(&allocation).tag_specifications(named("shop-nat", T::Natgateway)).send().await;
    let nat = nat.expect("nat").nat_gateway().and_then(|n| n.nat_gateway_id()).expect("nat id").to_string();
    let table = |name: &'static str| {
        let request = ec2.create_route_table().vpc_id(&vpc).tag_specifications(named(name, T::RouteTable));
        async move { request.send().await.expect("table").route_table().and_then(|t| t.route_table_id()).expect("table id").to_string() }
    };
    let (public_rt, private_rt) = (table("shop-public").await, table("shop-private").await);
    ec2.create_route().route_table_id(&public_rt).destination_cidr_block("0.0.0.0/0").gateway_id(&igw).send().await.expect("igw route");
    ec2.create_route().route_table_id(&private_rt).destination_cidr_block("0.0.0.0/0").nat_gateway_id(&nat).send().await.expect("nat route");
    for (table, subnet) in [(&public_rt, &public), (&private_rt, &private), (&public_rt, &public_b), (&private_rt, &private_b)] {
        ec2.associate_route_table().route_table_id(table).subnet_id(subnet).send().await.expect("association");
    }
    let group = ec2.create_security_group().group_name("shop-app").description("the shop's tasks").vpc_id(&vpc).send().await.expect("group");
    let group = group.group_id().expect("group id").to_string();
    let https = aws_sdk_ec2::types::IpPermission::builder().ip_protocol("tcp").from_port(443).to_port(443);
    let https = https.ip_ranges(aws_sdk_ec2::types::IpRange::builder().cidr_ip("10.1.0.0/16").build()).build();
    ec2.authorize_security_group_ingress().group_id(&group).ip_permissions(https).send().await.expect("rule");
    let sqs = aws_sdk_sqs::Client::new(&config);
    let queue = sqs.create_queue().queue_name("shop-orders").send().await.expect("queue").queue_url().expect("url").to_string();

    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&config);
    let target_group = elb.create_target_group().name("shop-web").protocol(aws_sdk_elasticloadbalancingv2::types::ProtocolEnum::Http).port(8080);
    let target_group =
        target_group.vpc_id(&vpc).target_type(aws_sdk_elasticloadbalancingv2::types::TargetTypeEnum::Instance).health_check_path("/health").send().await;
    let target_group = target_group.expect("target group").target_groups()[0].target_group_arn().expect("arn").to_string();
    // The scheme is given as AWS reports it (the emulator reports none when it is left to its default).
    let balancer = elb.create_load_balancer().name("shop-web").subnets(&public).subnets(&public_b).security_groups(&group);
    let balancer = balancer.scheme(aws_sdk_elasticloadbalancingv2::types::LoadBalancerSchemeEnum::InternetFacing).send().await;
    let balancer = balancer.expect("load balancer").load_balancers()[0].load_balancer_arn().expect("arn").to_string();
    let forward = aws_sdk_elasticloadbalancingv2::types::Action::builder().r#type(aws_sdk_elasticloadbalancingv2::types::ActionTypeEnum::Forward);
    let listener = elb.create_listener().load_balancer_arn(&balancer).protocol(aws_sdk_elasticloadbalancingv2::types::ProtocolEnum::Http).port(80);
    let listener = listener.default_actions(forward.target_group_arn(&target_group).build()).send().await;
    let listener = listener.expect("listener").listeners()[0].listener_arn().expect("arn").to_string();
    let api = aws_sdk_elasticloadbalancingv2::types::RuleCondition::builder().field("path-pattern").values("/api/*").build();
    let forward = aws_sdk_elasticloadbalancingv2::types::Action::builder().r#type(aws_sdk_elasticloadbalancingv2::types::ActionTypeEnum::Forward);
    let rule = elb.create_rule().listener_arn(&listener).priority(10).conditions(api).actions(forward.target_group_arn(&target_group).build()).send().await;
    let rule = rule.expect("rule").rules()[0].rule_arn().expect("arn").to_string();
    let ecr = aws_sdk_ecr::Client::new(&config);
    let repository = ecr.create_repository().repository_name("shop/web").send().await.expect("repository");
    let repository = repository.repository().and_then(|r| r.repository_name()).expect("name").to_string();
    let keep_ten = r#"{"rules": [{"rulePriority": 1, "description": "keep 10", "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 10}, "action": {"type": "expire"}}]}"#;
    ecr.put_lifecycle_policy().repository_name(&repository).lifecycle_policy_text(keep_ten).send().await.expect("lifecycle policy");
    HandMade {
        vpc,
        subnets: [public, private, public_b, private_b],
        igw,
        allocation,
        nat,
        public_rt,
        private_rt,
        group,
        queue,
        target_group,
        balancer,
        listener,
        rule,
        repository,
    }
}

/// Plans `specs` (an imported spec): adoptions only, `adopted` of them, with
/// no change but the ownership tags and the security group's first Name tag;
/// then reconciles, checks the route tables and the NAT gateway are the same
/// ones, and that the next pass writes nothing.
async fn assert_adopted_in_place(moto: &Moto, specs: &Path, estate: &HandMade, adopted_count: u64) {
    let plan = operator(&moto.endpoint, &json_args(specs, &["plan", "--env", "dev"]));
    assert_eq!(plan.code, 2, "{}\n{}", plan.stdout, plan.stderr);
    let report = plan.json();
    let s = &report["summary"];
    let counts = (s["create"].as_u64(), s["delete"].as_u64(), s["blocked"].as_u64(), s["adopt"].as_u64());
    assert_eq!(counts, (Some(0), Some(0), Some(0), Some(adopted_count)), "{}", plan.stdout);
    let adopted: Vec<&serde_json::Value> = report["resources"].as_array().into_iter().flatten().filter(|r| r["action"] != "noop").collect();
    assert!(adopted.iter().all(|r| r["action"] == "adopt"), "{adopted:?}");
    // The group has no Name tag (it is named by its group name): adoption gives it one, the only addition.
    let changed = changes_beyond_ownership(&adopted);
    let only_the_name = changed.len() == 1 && changed[0].starts_with("\"ec2.security-group\"") && changed[0].ends_with(": \"tags.Name\" null -> \"shop-app\"");
    assert!(only_the_name, "names, routes and settings as they are: {changed:?}");

    let run = moto.reconcile(specs, "dev");
    assert_eq!((run.code, &run.json()["summary"]["failed"]), (2, &serde_json::json!(0)), "{}", run.stdout);
    let config = sdk_config(&moto.endpoint).await;
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let owned = Filter::builder().name("tag:sentry:env").values("dev").build();
    let vpcs = ec2.describe_vpcs().filters(owned.clone()).send().await.expect("vpcs");
    assert_eq!(vpcs.vpcs().iter().filter_map(|v| v.vpc_id()).collect::<Vec<_>>(), [estate.vpc.as_str()], "the same VPC");
    let tables = ec2.describe_route_tables().filters(owned).send().await.expect("tables");
    let mut ids: Vec<&str> = tables.route_tables().iter().filter_map(|t| t.route_table_id()).collect();
    ids.sort();
    let mut expected = [estate.public_rt.as_str(), estate.private_rt.as_str()];
    expected.sort();
    assert_eq!(ids, expected, "the same route tables, no new ones");
    let names: Vec<&str> = tables.route_tables().iter().flat_map(|t| t.tags()).filter(|t| t.key() == Some("Name")).filter_map(|t| t.value()).collect();
    assert!(names.contains(&"shop-public") && names.contains(&"shop-private"), "names kept: {names:?}");
    let nats = ec2.describe_nat_gateways().filter(Filter::builder().name("state").values("available").build()).send().await.expect("nats");
    assert_eq!(nats.nat_gateways().iter().filter_map(|n| n.nat_gateway_id()).collect::<Vec<_>>(), [estate.nat.as_str()], "the same NAT gateway");
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&config);
    let balancers = elb.describe_load_balancers().send().await.expect("load balancers");
    assert_eq!(
        balancers.load_balancers().iter().filter_map(|b| b.load_balancer_arn()).collect::<Vec<_>>(),
        [estate.balancer.as_str()],
        "the same load balancer"
    );
    let rules = elb.describe_rules().listener_arn(&estate.listener).send().await.expect("rules");
    let rules: Vec<&str> = rules.rules().iter().filter(|r| r.is_default() != Some(true)).filter_map(|r| r.rule_arn()).collect();
    assert_eq!(rules, [estate.rule.as_str()], "the same rule");
    let listeners = elb.describe_listeners().load_balancer_arn(&estate.balancer).send().await.expect("listeners");
    assert_eq!(listeners.listeners().iter().filter_map(|l| l.listener_arn()).collect::<Vec<_>>(), [estate.listener.as_str()], "the same listener");
    let groups = elb.describe_target_groups().send().await.expect("target groups");
    assert_eq!(groups.target_groups().iter().filter_map(|t| t.target_group_arn()).collect::<Vec<_>>(), [estate.target_group.as_str()], "the same target group");
    moto.assert_converged(specs, "dev");
}

/// A small estate a Terraform team built (made here with direct calls, then
/// described by a state file written like `terraform state pull`'s, format
/// 4): import reads only, the plan adopts every resource with no change but
/// the ownership tags (its names and layout kept), reconcile adopts them in
/// place, and the next pass writes nothing.
#[tokio::test]
async fn a_terraform_estate_is_imported_from_its_state_and_adopted_in_place() {
    let moto = Moto::start();
    let estate = build_hand_made(&moto).await;
    let [public_a, private_a, public_b, private_b] = &estate.subnets;
    let resource = |kind: &str, name: &str, id: &str| {
        format!(
            r#"{{"mode": "managed", "type": "{kind}", "name": "{name}", "provider": "provider[\"registry.terraform.io/hashicorp/aws\"]", "instances": [{{"schema_version": 1, "attributes": {{"id": "{id}"}}}}]}}"#
        )
    };
    let resources = [
        r#"{"mode": "data", "type": "aws_availability_zones", "name": "all", "instances": [{"attributes": {"id": "us-east-1"}}]}"#.to_string(),
        resource("aws_vpc", "main", &estate.vpc),
        format!(
            r#"{{"mode": "managed", "type": "aws_subnet", "name": "public", "instances": [{{"index_key": "a", "attributes": {{"id": "{public_a}"}}}}, {{"index_key": "b", "attributes": {{"id": "{public_b}"}}}}]}}"#
        ),
        format!(
            r#"{{"mode": "managed", "type": "aws_subnet", "name": "private", "instances": [{{"index_key": "a", "attributes": {{"id": "{private_a}"}}}}, {{"index_key": "b", "attributes": {{"id": "{private_b}"}}}}]}}"#
        ),
        resource("aws_internet_gateway", "main", &estate.igw),
        resource("aws_eip", "nat", &estate.allocation),
        resource("aws_nat_gateway", "main", &estate.nat),
        resource("aws_route_table", "public", &estate.public_rt),
        resource("aws_route_table", "private", &estate.private_rt),
        resource("aws_route", "private_egress", &format!("r-{}1080289494", estate.private_rt)),
        resource("aws_route_table_association", "private_a", "rtbassoc-1"),
        resource("aws_security_group", "app", &estate.group),
        resource("aws_vpc_security_group_ingress_rule", "https", "sgr-1"),
        resource("aws_sqs_queue", "orders", &estate.queue),
        resource("aws_lb_target_group", "web", &estate.target_group),
        resource("aws_lb", "web", &estate.balancer),
        resource("aws_lb_listener", "http", &estate.listener),
        resource("aws_lb_listener_rule", "api", &estate.rule),
        resource("aws_ecr_repository", "web", &estate.repository),
        resource("random_id", "suffix", "abc"),
    ];
    let state =
        format!(r#"{{"version": 4, "terraform_version": "1.9.5", "serial": 7, "lineage": "x", "outputs": {{}}, "resources": [{}]}}"#, resources.join(",\n"));
    let dir = tempfile::tempdir().expect("tempdir");
    let state_file = dir.path().join("terraform.tfstate");
    std::fs::write(&state_file, state).expect("state");
    let out = dir.path().join("spec");

    let args = ["--output", "json", "import", "--env", "dev", "--from-terraform", state_file.to_str().expect("utf-8"), "--out", out.to_str().expect("utf-8")];
    let run = read_only(&moto, "the Terraform state", || operator(&moto.endpoint, &args));
    let summary = &run.json()["summary"];
    assert_eq!(summary["found"], 21, "every managed instance, no data source: {summary}");
    let listed = summary["notRepresentable"].to_string();
    assert!(listed.contains("random_id suffix") && listed.contains("no kind of the operator describes this type"), "{summary}");
    assert!(summary["skipped"].to_string().contains("aws_route private_egress"), "parts are described with their parents: {summary}");

    assert_adopted_in_place(&moto, &out, &estate, 18).await;
    let ecr = aws_sdk_ecr::Client::new(&sdk_config(&moto.endpoint).await);
    let repositories = ecr.describe_repositories().send().await.expect("repositories");
    assert_eq!(repositories.repositories().iter().filter_map(|r| r.repository_name()).collect::<Vec<_>>(), [estate.repository.as_str()], "the same repository");
    let sqs = aws_sdk_sqs::Client::new(&sdk_config(&moto.endpoint).await);
    assert_eq!(sqs.list_queues().send().await.expect("queues").queue_urls(), std::slice::from_ref(&estate.queue), "the same queue, no other");
}

/// The same estate made by hand, found through its VPC (`import --vpc`):
/// the main route table and the default group and ACL stay out, the rest
/// adopts in place as from a state.
#[tokio::test]
async fn an_estate_made_by_hand_is_imported_through_its_vpc_and_adopted_in_place() {
    let moto = Moto::start();
    let estate = build_hand_made(&moto).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("spec");
    let args = ["--output", "json", "import", "--env", "dev", "--vpc", estate.vpc.as_str(), "--out", out.to_str().expect("utf-8")];
    let run = read_only(&moto, "the VPC made by hand", || operator(&moto.endpoint, &args));
    let found = run.json()["summary"]["found"].clone();
    assert_eq!(
        found, 15,
        "the VPC, 4 subnets, the gateway, the NAT gateway and its address, 2 tables, the group, the target group, the load balancer, its listener and rule: {}",
        run.stdout
    );
    assert_adopted_in_place(&moto, &out, &estate, 16).await;
    let missing = operator(&moto.endpoint, &["import", "--env", "dev", "--vpc", "vpc-0000000000"]);
    assert_eq!(missing.code, 1);
    assert!(missing.stderr.contains("VPC vpc-0000000000 does not exist"), "{}", missing.stderr);
}

/// The same estate found by a tag every resource of it carries (`import
/// --tag`, the Resource Groups Tagging API): adopted in place as from a state.
#[tokio::test]
async fn an_estate_made_by_hand_is_imported_by_its_tag_and_adopted_in_place() {
    let moto = Moto::start();
    let estate = build_hand_made(&moto).await;
    let config = sdk_config(&moto.endpoint).await;
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let project = aws_sdk_ec2::types::Tag::builder().key("Project").value("shop").build();
    let [public_a, private_a, public_b, private_b] = &estate.subnets;
    let ids = [
        &estate.vpc,
        public_a,
        private_a,
        public_b,
        private_b,
        &estate.igw,
        &estate.allocation,
        &estate.nat,
        &estate.public_rt,
        &estate.private_rt,
        &estate.group,
    ];
    ec2.create_tags().set_resources(Some(ids.iter().map(|id| id.to_string()).collect())).tags(project).send().await.expect("tags");
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&config);
    let tag = aws_sdk_elasticloadbalancingv2::types::Tag::builder().key("Project").value("shop").build();
    for arn in [&estate.target_group, &estate.balancer, &estate.listener, &estate.rule] {
        elb.add_tags().resource_arns(arn).tags(tag.clone()).send().await.expect("tags");
    }
    aws_sdk_sqs::Client::new(&config).tag_queue().queue_url(&estate.queue).tags("Project", "shop").send().await.expect("tags");

    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("spec");
    let args = ["--output", "json", "import", "--env", "dev", "--tag", "Project=shop", "--out", out.to_str().expect("utf-8")];
    let run = read_only(&moto, "the tag Project=shop", || operator(&moto.endpoint, &args));
    // The emulator's tagging API reports neither Elastic IPs nor listeners (AWS does): they come with
    // their NAT gateway and their load balancer, as a listener not tagged would.
    assert_eq!(run.json()["summary"]["found"], 16, "every tagged resource the emulator reports, the address, the listener and its rule: {}", run.stdout);
    assert_adopted_in_place(&moto, &out, &estate, 17).await;
    let bad = operator(&moto.endpoint, &["import", "--env", "dev", "--tag", "Project"]);
    assert_eq!((bad.code, bad.stderr.contains("--tag takes KEY=VALUE")), (1, true), "{}", bad.stderr);
}

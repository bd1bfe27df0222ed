//! Networking and the Elastic IP whitelist guard against the emulator.

use std::path::Path;

use aws_sdk_ec2::types::{Filter, IpPermission, IpRange};
use aws_sdk_ec2::Client;

use crate::harness::{json_args, operator, repo_specs, sdk_config, specs_with, Moto, Run};

async fn ec2(moto: &Moto) -> Client {
    Client::new(&sdk_config(&moto.endpoint).await)
}

fn owned(env: &str, id: &str) -> Vec<Filter> {
    vec![Filter::builder().name("tag:sentry:env").values(env).build(), Filter::builder().name("tag:sentry:id").values(id).build()]
}

/// `reconcile --once --env dev --reallocate-whitelist <entry>`.
fn reallocate(moto: &Moto, specs: &Path, entry: &str) -> Run {
    operator(&moto.endpoint, &json_args(specs, &["reconcile", "--once", "--env", "dev", "--reallocate-whitelist", entry]))
}

fn plan(moto: &Moto, specs: &Path, env: &str) -> Run {
    operator(&moto.endpoint, &json_args(specs, &["plan", "--env", env]))
}

async fn vpc_id(ec2: &Client, env: &str) -> String {
    let out = ec2.describe_vpcs().set_filters(Some(owned(env, "vpc"))).send().await.expect("vpcs");
    assert_eq!(out.vpcs().len(), 1, "exactly one VPC of {env}");
    out.vpcs()[0].vpc_id().expect("id").to_string()
}

async fn nat(ec2: &Client, env: &str, id: &str) -> Option<(String, String)> {
    // Filtered here: the emulator ignores tag filters on DescribeNatGateways.
    let out = ec2.describe_nat_gateways().send().await.expect("nats");
    let tagged = |n: &&aws_sdk_ec2::types::NatGateway, k: &str, v: &str| n.tags().iter().any(|t| t.key() == Some(k) && t.value() == Some(v));
    let mut mine =
        out.nat_gateways().iter().filter(|n| n.state().map(|s| s.as_str()) == Some("available") && tagged(n, "sentry:env", env) && tagged(n, "sentry:id", id));
    mine.next().map(|n| (n.nat_gateway_id().unwrap_or_default().to_string(), n.nat_gateway_addresses()[0].allocation_id().unwrap_or_default().to_string()))
}

/// (allocation id, public ip, association id) of whitelist entry `id`.
async fn whitelist(ec2: &Client, env: &str, id: &str) -> Option<(String, String, Option<String>)> {
    let out = ec2.describe_addresses().set_filters(Some(owned(env, id))).send().await.expect("addresses");
    out.addresses().first().map(|a| {
        (
            a.allocation_id().unwrap_or_default().into(),
            a.public_ip().unwrap_or_default().into(),
            a.association_id().filter(|s| !s.is_empty()).map(str::to_string),
        )
    })
}

async fn default_route(ec2: &Client, env: &str, table: &str) -> Option<String> {
    let out = ec2.describe_route_tables().set_filters(Some(owned(env, table))).send().await.expect("route tables");
    let routes = out.route_tables().first().map(|t| t.routes().to_vec()).unwrap_or_default();
    routes.iter().find(|r| r.destination_cidr_block() == Some("0.0.0.0/0")).and_then(|r| r.nat_gateway_id().or(r.gateway_id()).map(str::to_string))
}

async fn ingress(ec2: &Client, group: &str) -> Vec<(String, Option<i32>, Vec<String>)> {
    let out = ec2.describe_security_groups().group_ids(group).send().await.expect("groups");
    let mut rules: Vec<(String, Option<i32>, Vec<String>)> = out.security_groups()[0]
        .ip_permissions()
        .iter()
        .map(|p| {
            let peers = p
                .ip_ranges()
                .iter()
                .filter_map(|r| r.cidr_ip().map(str::to_string))
                .chain(p.user_id_group_pairs().iter().filter_map(|g| g.group_id().map(str::to_string)))
                .collect();
            (p.ip_protocol().unwrap_or_default().to_string(), p.from_port(), peers)
        })
        .collect();
    rules.sort();
    rules
}

async fn group(ec2: &Client, env: &str, id: &str) -> String {
    let out = ec2.describe_security_groups().set_filters(Some(owned(env, id))).send().await.expect("groups");
    out.security_groups()[0].group_id().expect("id").to_string()
}

#[tokio::test]
async fn dev_network_converges_from_empty_and_then_makes_no_writes() {
    let (moto, specs) = Moto::built("dev");
    let ec2 = ec2(&moto).await;

    let vpc = vpc_id(&ec2, "dev").await;
    let vpcs = ec2.describe_vpcs().vpc_ids(&vpc).send().await.expect("vpc");
    assert_eq!(vpcs.vpcs()[0].cidr_block(), Some("172.22.0.0/16"));
    let hostnames = ec2.describe_vpc_attribute().vpc_id(&vpc).attribute(aws_sdk_ec2::types::VpcAttributeName::EnableDnsHostnames).send().await.expect("attr");
    assert_eq!(hostnames.enable_dns_hostnames().and_then(|v| v.value()), Some(true));

    let subnets = ec2.describe_subnets().filters(Filter::builder().name("vpc-id").values(&vpc).build()).send().await.expect("subnets");
    let mut cidrs: Vec<&str> = subnets.subnets().iter().filter_map(|s| s.cidr_block()).collect();
    cidrs.sort_unstable();
    assert_eq!(cidrs, ["172.22.0.0/24", "172.22.1.0/24", "172.22.10.0/24", "172.22.11.0/24"]);

    // One NAT gateway in dev, on the first whitelist address; both addresses allocated and tagged.
    let (nat_a, allocation) = nat(&ec2, "dev", "nat-a").await.expect("nat-a");
    assert!(nat(&ec2, "dev", "nat-b").await.is_none(), "dev has a single NAT gateway");
    let (w1, _, _) = whitelist(&ec2, "dev", "whitelist-1").await.expect("whitelist-1");
    assert_eq!(allocation, w1);
    assert!(whitelist(&ec2, "dev", "whitelist-2").await.is_some(), "the pool holds both addresses");
    let tagged = ec2.describe_addresses().filters(Filter::builder().name("tag:sentry:whitelist").values("true").build()).send().await.expect("eips");
    assert_eq!(tagged.addresses().len(), 2);

    // Egress: every private subnet through the NAT gateway, public through the internet gateway.
    assert_eq!(default_route(&ec2, "dev", "private-a").await.as_deref(), Some(nat_a.as_str()));
    assert_eq!(default_route(&ec2, "dev", "private-b").await.as_deref(), Some(nat_a.as_str()));
    assert!(default_route(&ec2, "dev", "public").await.is_some_and(|t| t.starts_with("igw-")));

    // Redis only from the OMS and gateway groups.
    let (redis, oms, gateway) = (group(&ec2, "dev", "redis").await, group(&ec2, "dev", "oms").await, group(&ec2, "dev", "gateway").await);
    let mut peers = vec![oms.clone(), gateway.clone()];
    peers.sort();
    let rules = ingress(&ec2, &redis).await;
    assert!(!rules.is_empty() && rules.iter().all(|(proto, port, _)| proto == "tcp" && *port == Some(6379)), "{rules:?}");
    let mut seen: Vec<String> = rules.iter().flat_map(|(_, _, p)| p.clone()).collect();
    seen.sort();
    assert_eq!(seen, peers);
    let alb = ingress(&ec2, &group(&ec2, "dev", "alb").await).await;
    assert_eq!(alb.iter().map(|(_, p, _)| *p).collect::<Vec<_>>(), [Some(80), Some(443)]);

    let endpoints = ec2.describe_vpc_endpoints().filters(Filter::builder().name("vpc-id").values(&vpc).build()).send().await.expect("endpoints");
    let mut services: Vec<&str> = endpoints.vpc_endpoints().iter().filter_map(|e| e.service_name()).collect();
    services.sort_unstable();
    assert_eq!(services, ["com.amazonaws.us-east-1.dynamodb", "com.amazonaws.us-east-1.s3"]);
    assert!(endpoints.vpc_endpoints().iter().all(|e| e.route_table_ids().len() == 2), "on both private route tables");
    let flow_logs = ec2.describe_flow_logs().send().await.expect("flow logs");
    assert!(flow_logs.flow_logs().is_empty(), "flow logs are off in dev");

    moto.assert_converged(&specs, "dev");
}

#[tokio::test]
async fn prod_network_converges_with_three_zones_two_nat_gateways_and_flow_logs() {
    let (moto, specs) = Moto::built("prod");
    let ec2 = ec2(&moto).await;
    let vpc = vpc_id(&ec2, "prod").await;
    let subnets = ec2.describe_subnets().filters(Filter::builder().name("vpc-id").values(&vpc).build()).send().await.expect("subnets");
    assert_eq!(subnets.subnets().len(), 6);
    let (nat_a, alloc_a) = nat(&ec2, "prod", "nat-a").await.expect("nat-a");
    let (nat_b, alloc_b) = nat(&ec2, "prod", "nat-b").await.expect("nat-b");
    assert_eq!(Some(alloc_a), whitelist(&ec2, "prod", "whitelist-1").await.map(|w| w.0));
    assert_eq!(Some(alloc_b), whitelist(&ec2, "prod", "whitelist-2").await.map(|w| w.0));
    assert_eq!(default_route(&ec2, "prod", "private-a").await, Some(nat_a.clone()));
    assert_eq!(default_route(&ec2, "prod", "private-b").await, Some(nat_b));
    assert_eq!(default_route(&ec2, "prod", "private-c").await, Some(nat_a), "an AZ without its own NAT uses the first one");
    let flow_logs = ec2.describe_flow_logs().send().await.expect("flow logs");
    assert_eq!(flow_logs.flow_logs().len(), 1);
    assert_eq!(flow_logs.flow_logs()[0].resource_id(), Some(vpc.as_str()));

    moto.assert_converged(&specs, "prod");
}

#[tokio::test]
async fn network_drift_is_repaired_touching_only_the_delta() {
    let (moto, specs) = Moto::built("dev");
    let ec2 = ec2(&moto).await;
    let oms = group(&ec2, "dev", "oms").await;
    let before = ingress(&ec2, &oms).await;

    // An SSH rule from anywhere, added by hand.
    let ssh = IpPermission::builder().ip_protocol("tcp").from_port(22).to_port(22).ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build()).build();
    ec2.authorize_security_group_ingress().group_id(&oms).ip_permissions(ssh).send().await.expect("ssh rule");
    let (run, writes) = moto.writes_of(|| moto.reconcile(&specs, "dev"));
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(writes, ["RevokeSecurityGroupIngress"], "only the stray rule is revoked, nothing re-added");
    assert_eq!(ingress(&ec2, &oms).await, before);

    // Egress of a private subnet pointed at the internet gateway, another route deleted.
    let table = |id: &'static str| {
        let ec2 = ec2.clone();
        async move {
            ec2.describe_route_tables().set_filters(Some(owned("dev", id))).send().await.expect("rt").route_tables()[0]
                .route_table_id()
                .expect("id")
                .to_string()
        }
    };
    let igw = default_route(&ec2, "dev", "public").await.expect("igw");
    ec2.replace_route().route_table_id(table("private-b").await).destination_cidr_block("0.0.0.0/0").gateway_id(&igw).send().await.expect("hijack route");
    ec2.delete_route().route_table_id(table("private-a").await).destination_cidr_block("0.0.0.0/0").send().await.expect("delete route");
    let run = moto.reconcile(&specs, "dev");
    assert_eq!(run.code, 2, "{}", run.stderr);
    let (nat_a, allocation) = nat(&ec2, "dev", "nat-a").await.expect("nat");
    assert_eq!(default_route(&ec2, "dev", "private-b").await, Some(nat_a.clone()));
    assert_eq!(default_route(&ec2, "dev", "private-a").await, Some(nat_a.clone()));

    // The NAT gateway deleted: re-created on the same whitelist allocation, routes follow.
    ec2.delete_nat_gateway().nat_gateway_id(&nat_a).send().await.expect("delete nat");
    let run = moto.reconcile(&specs, "dev");
    assert_eq!(run.code, 2, "{}", run.stderr);
    let (new_nat, new_allocation) = nat(&ec2, "dev", "nat-a").await.expect("nat re-created");
    assert_ne!(new_nat, nat_a);
    assert_eq!(new_allocation, allocation, "same whitelist EIP");
    assert_eq!(default_route(&ec2, "dev", "private-a").await, Some(new_nat.clone()));

    // The whitelist EIP disassociated: restored, and reported as a violation.
    let (_, _, association) = whitelist(&ec2, "dev", "whitelist-1").await.expect("eip");
    ec2.disassociate_address().association_id(association.expect("associated")).send().await.expect("disassociate");
    let run = moto.reconcile(&specs, "dev");
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("WhitelistViolation"), "alerted: {}", run.stderr);
    let whitelist_section = run.json()["sections"][0]["lines"][0].as_str().unwrap_or_default().to_string();
    assert!(whitelist_section.contains("VIOLATED"), "{whitelist_section}");
    assert!(whitelist(&ec2, "dev", "whitelist-1").await.expect("eip").2.is_some(), "re-associated");

    moto.assert_converged(&specs, "dev");
}

/// dev.yaml with both whitelist addresses pinned.
fn pinned_dev(a: &str, b: &str) -> String {
    format!(
        "network:\n  natGateways:\n    nat-b: null\n  whitelist:\n    pool:\n      whitelist-1: {{ address: {a} }}\n      whitelist-2: {{ address: {b} }}\n"
    )
}

/// The whitelist ledger on dev's VPC: the address recorded for `entry`.
async fn ledger(ec2: &Client, entry: &str) -> Option<String> {
    let out = ec2.describe_vpcs().set_filters(Some(owned("dev", "vpc"))).send().await.expect("vpcs");
    let key = format!("sentry:whitelist-ledger/{entry}");
    out.vpcs().first()?.tags().iter().find(|t| t.key() == Some(key.as_str())).and_then(|t| t.value().map(str::to_string))
}

/// Converges dev, optionally pins both addresses, then releases `entry`'s
/// address out of band (deleting its NAT gateway first when `nat` names it)
/// and checks that the next pass gets the very same address back.
async fn released_address_comes_back(entry: &str, nat: Option<&str>, pin: bool) {
    let moto = Moto::start();
    let ec2 = ec2(&moto).await;
    // Pinned: two addresses that exist before the operator (the emulator hands
    // out 127.x addresses, which validation refuses as pins, so these are
    // allocated on public ones), adopted through their pins.
    let pinned_specs;
    let specs = if pin {
        let mut ips = Vec::new();
        for ip in ["54.214.10.1", "54.214.10.2"] {
            ec2.allocate_address().address(ip).send().await.expect("allocate a public address");
            ips.push(ip);
        }
        pinned_specs = specs_with(&[("dev.yaml", &pinned_dev(ips[0], ips[1]))]);
        pinned_specs.path().to_path_buf()
    } else {
        repo_specs()
    };
    let run = moto.reconcile(&specs, "dev");
    assert_eq!(run.code, 2, "{}", run.stderr);
    let (_, ip1, _) = whitelist(&ec2, "dev", "whitelist-1").await.expect("w1");
    let (_, ip2, _) = whitelist(&ec2, "dev", "whitelist-2").await.expect("w2");
    assert_eq!(ledger(&ec2, "whitelist-1").await.as_deref(), Some(ip1.as_str()), "recorded in the pass that allocated or adopted it");
    assert_eq!(ledger(&ec2, "whitelist-2").await.as_deref(), Some(ip2.as_str()));
    if pin {
        assert_eq!((ip1.as_str(), ip2.as_str()), ("54.214.10.1", "54.214.10.2"), "the pinned addresses were adopted");
    }
    let (old_allocation, old_ip, _) = whitelist(&ec2, "dev", entry).await.expect("entry");
    if let Some(nat_id) = nat {
        let (gateway, _) = self::nat(&ec2, "dev", nat_id).await.expect("nat");
        ec2.delete_nat_gateway().nat_gateway_id(gateway).send().await.expect("delete nat");
        if let Some((_, _, Some(association))) = whitelist(&ec2, "dev", entry).await {
            ec2.disassociate_address().association_id(association).send().await.expect("disassociate");
        }
    }
    ec2.release_address().allocation_id(&old_allocation).send().await.expect("release");

    let run = plan(&moto, &specs, "dev");
    let lines = run.json()["sections"][0]["lines"].to_string();
    assert!(lines.contains(&format!("{old_ip} ")) && lines.contains("VIOLATED") && lines.contains("recover the same address"), "{lines}");
    let run = moto.reconcile(&specs, "dev");
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("recovered the released whitelist address"), "{}", run.stderr);
    let (new_allocation, ip, association) = whitelist(&ec2, "dev", entry).await.expect("recovered");
    assert_eq!(ip, old_ip, "the same public address, never another");
    assert_ne!(new_allocation, old_allocation);
    let out = ec2.describe_addresses().send().await.expect("addresses");
    assert_eq!(out.addresses().len(), 2, "no extra address was allocated");
    assert_eq!(ledger(&ec2, entry).await.as_deref(), Some(old_ip.as_str()));
    if let Some(nat_id) = nat {
        assert!(association.is_some(), "back on the NAT gateway");
        let (gateway, allocation) = self::nat(&ec2, "dev", nat_id).await.expect("nat re-created");
        assert_eq!(allocation, new_allocation, "the NAT gateway uses the recovered address");
        assert_eq!(default_route(&ec2, "dev", "private-a").await, Some(gateway));
    } else {
        assert!(association.is_none(), "the spare stays unattached");
    }
    moto.assert_converged(&specs, "dev");
}

#[tokio::test]
async fn an_unpinned_spare_released_out_of_band_is_recovered() {
    released_address_comes_back("whitelist-2", None, false).await;
}

#[tokio::test]
async fn a_pinned_spare_released_out_of_band_is_recovered() {
    released_address_comes_back("whitelist-2", None, true).await;
}

#[tokio::test]
async fn an_unpinned_nat_address_released_after_its_nat_was_deleted_is_recovered() {
    released_address_comes_back("whitelist-1", Some("nat-a"), false).await;
}

#[tokio::test]
async fn a_pinned_nat_address_released_after_its_nat_was_deleted_is_recovered() {
    released_address_comes_back("whitelist-1", Some("nat-a"), true).await;
}

#[tokio::test]
async fn a_whitelist_address_that_lost_its_tags_is_adopted_back_never_replaced() {
    let (moto, specs) = Moto::built("dev");
    let ec2 = ec2(&moto).await;
    let (allocation, ip, _) = whitelist(&ec2, "dev", "whitelist-2").await.expect("w2");
    let keys: Vec<aws_sdk_ec2::types::Tag> =
        ["sentry:managed-by", "sentry:env", "sentry:id"].iter().map(|k| aws_sdk_ec2::types::Tag::builder().key(*k).build()).collect();
    ec2.delete_tags().resources(&allocation).set_tags(Some(keys)).send().await.expect("strip the ownership tags");
    assert!(whitelist(&ec2, "dev", "whitelist-2").await.is_none(), "no longer tagged as ours");

    // Asking for a new address is refused: the recorded one still exists.
    let (run, writes) = moto.writes_of(|| reallocate(&moto, &specs, "whitelist-2"));
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(writes.is_empty(), "{writes:?}");

    let run = moto.reconcile(&specs, "dev");
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    let (again, same_ip, _) = whitelist(&ec2, "dev", "whitelist-2").await.expect("tagged as ours again");
    assert_eq!((again.as_str(), same_ip.as_str()), (allocation.as_str(), ip.as_str()), "the same allocation, adopted back");
    let out = ec2.describe_addresses().send().await.expect("addresses");
    assert_eq!(out.addresses().len(), 2, "no address was allocated");
    assert_eq!(moto.reconcile(&specs, "dev").code, 0);
}

#[tokio::test]
async fn a_lost_address_is_replaced_by_a_new_one_only_when_asked() {
    let (moto, specs) = Moto::built("dev");
    let ec2 = ec2(&moto).await;
    let (allocation, old_ip, _) = whitelist(&ec2, "dev", "whitelist-2").await.expect("w2");
    // While the address exists, the switch is refused before any write.
    let (run, writes) = moto.writes_of(|| reallocate(&moto, &specs, "whitelist-2"));
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(writes.is_empty(), "{writes:?}");
    assert!(run.json()["errors"].to_string().contains(&format!("still has its address {old_ip}")), "{}", run.stdout);

    ec2.release_address().allocation_id(&allocation).send().await.expect("release");
    let run = reallocate(&moto, &specs, "whitelist-2");
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("allocated a NEW whitelist Elastic IP"), "{}", run.stderr);
    let (_, new_ip, _) = whitelist(&ec2, "dev", "whitelist-2").await.expect("a new address");
    assert_ne!(new_ip, old_ip);
    assert_eq!(ledger(&ec2, "whitelist-2").await.as_deref(), Some(new_ip.as_str()), "the ledger now guards the new address");
    assert_eq!(moto.reconcile(&specs, "dev").code, 0);
}

#[tokio::test]
async fn pinning_addresses_that_are_not_in_the_account_fails_before_any_write() {
    let moto = Moto::start();
    let specs = specs_with(&[("dev.yaml", &pinned_dev("203.0.113.10", "eipalloc-0123456789abcdef0"))]);
    let (run, writes) = moto.writes_of(|| moto.reconcile(specs.path(), "dev"));
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(writes.is_empty(), "nothing may be written: {writes:?}\n{}", run.stdout);
    let errors = run.json()["errors"].to_string();
    assert!(errors.contains("pinned address 203.0.113.10 does not exist in this account"), "{errors}");
    assert!(errors.contains("eipalloc-0123456789abcdef0"), "{errors}");
    assert!(errors.contains("nothing was applied"), "{errors}");
}

#[tokio::test]
async fn removed_nat_gateway_keeps_its_eip_and_the_pool_is_released_only_in_two_steps() {
    let moto = Moto::start();
    let specs = repo_specs();
    assert_eq!(moto.reconcile(&specs, "staging").code, 2, "staging has two NAT gateways");
    let ec2 = ec2(&moto).await;
    let (w2, _, association) = whitelist(&ec2, "staging", "whitelist-2").await.expect("w2");
    assert!(association.is_some());

    // staging.yaml with extra lines under its `network:` key.
    let staging = std::fs::read_to_string(repo_specs().join("staging.yaml")).expect("staging");
    let with_network = |lines: &str| staging.replacen("network:\n", &format!("network:\n{lines}"), 1);
    let one_nat = "  natGateways:\n    nat-b: null\n";
    let specs = specs_with(&[("staging.yaml", &with_network(one_nat))]);
    let run = moto.reconcile(specs.path(), "staging");
    assert_eq!(run.code, 2, "{}", run.stdout);
    assert_eq!(run.resource("ec2.nat-gateway", "nat-b")["action"], "delete");
    assert!(nat(&ec2, "staging", "nat-b").await.is_none());
    let (still, _, association) = whitelist(&ec2, "staging", "whitelist-2").await.expect("EIP kept");
    assert_eq!(still, w2);
    assert!(association.is_none());

    // Removing it from the pool only orphans it ...
    let drop_w2 = with_network(&format!("{one_nat}  whitelist:\n    pool:\n      whitelist-2: null\n"));
    let specs = specs_with(&[("staging.yaml", &drop_w2)]);
    let run = moto.reconcile(specs.path(), "staging");
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(run.resource("ec2.elastic-ip", "whitelist-2")["action"], "orphan");
    assert!(whitelist(&ec2, "staging", "whitelist-2").await.is_some(), "never released without the opt-out");

    // ... step 1 marks it releasable (recorded on the EIP), step 2 removes it.
    let releasable = with_network(&format!("{one_nat}  whitelist:\n    pool:\n      whitelist-2: {{ releasable: true }}\n"));
    let specs = specs_with(&[("staging.yaml", &releasable)]);
    assert_eq!(moto.reconcile(specs.path(), "staging").code, 2);
    assert!(whitelist(&ec2, "staging", "whitelist-2").await.is_some());
    let specs = specs_with(&[("staging.yaml", &drop_w2)]);
    let run = moto.reconcile(specs.path(), "staging");
    assert_eq!(run.resource("ec2.elastic-ip", "whitelist-2")["action"], "delete");
    assert!(whitelist(&ec2, "staging", "whitelist-2").await.is_none(), "released after the two-step opt-out");
}

#[tokio::test]
async fn resources_the_operator_does_not_own_are_untouched() {
    let moto = Moto::start();
    let ec2 = ec2(&moto).await;
    let name = aws_sdk_ec2::types::Tag::builder().key("Name").value("sentry-vpc-dev").build();
    let spec = aws_sdk_ec2::types::TagSpecification::builder().resource_type(aws_sdk_ec2::types::ResourceType::Vpc).tags(name).build();
    let foreign_vpc = ec2
        .create_vpc()
        .cidr_block("172.22.0.0/16")
        .tag_specifications(spec)
        .send()
        .await
        .expect("vpc")
        .vpc()
        .and_then(|v| v.vpc_id())
        .expect("id")
        .to_string();
    let foreign_sg = ec2
        .create_security_group()
        .group_name("sentry-oms-dev")
        .description("someone else's")
        .vpc_id(&foreign_vpc)
        .send()
        .await
        .expect("sg")
        .group_id()
        .expect("id")
        .to_string();
    let ssh = IpPermission::builder().ip_protocol("tcp").from_port(22).to_port(22).ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build()).build();
    ec2.authorize_security_group_ingress().group_id(&foreign_sg).ip_permissions(ssh).send().await.expect("rule");
    let before = ingress(&ec2, &foreign_sg).await;
    // A network ACL under the spec's ACL name, with a rule of its own.
    let name = aws_sdk_ec2::types::Tag::builder().key("Name").value("sentry-private-dev").build();
    let spec = aws_sdk_ec2::types::TagSpecification::builder().resource_type(aws_sdk_ec2::types::ResourceType::NetworkAcl).tags(name).build();
    let created = ec2.create_network_acl().vpc_id(&foreign_vpc).tag_specifications(spec).send().await.expect("acl");
    let foreign_acl = created.network_acl().and_then(|a| a.network_acl_id()).expect("id").to_string();
    let request = ec2.create_network_acl_entry().network_acl_id(&foreign_acl).egress(false).rule_number(50).protocol("-1").cidr_block("10.0.0.0/8");
    request.rule_action(aws_sdk_ec2::types::RuleAction::Deny).send().await.expect("rule");
    let entries = |ec2: Client, id: String| async move {
        let out = ec2.describe_network_acls().network_acl_ids(id).send().await.expect("foreign acl");
        out.network_acls()[0].entries().iter().map(|e| (e.rule_number(), e.egress(), e.rule_action().cloned())).collect::<Vec<_>>()
    };
    let acl_before = entries(ec2.clone(), foreign_acl.clone()).await;

    let run = moto.reconcile(&repo_specs(), "dev");
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_ne!(vpc_id(&ec2, "dev").await, foreign_vpc, "the operator built its own VPC");
    assert_eq!(ingress(&ec2, &foreign_sg).await, before, "foreign rules untouched");
    assert_eq!(entries(ec2.clone(), foreign_acl.clone()).await, acl_before, "the foreign ACL's rules untouched");
    let acl = ec2.describe_network_acls().network_acl_ids(&foreign_acl).send().await.expect("foreign acl");
    assert!(acl.network_acls()[0].tags().iter().all(|t| !t.key().unwrap_or_default().starts_with("sentry:")), "the foreign ACL is never tagged");
    let vpcs = ec2.describe_vpcs().vpc_ids(&foreign_vpc).send().await.expect("foreign vpc still there");
    assert!(vpcs.vpcs()[0].tags().iter().all(|t| !t.key().unwrap_or_default().starts_with("sentry:")), "never tagged");
    assert_eq!(plan(&moto, &repo_specs(), "dev").code, 0);
}

/// One rule of a network ACL as AWS holds it: egress, number, protocol, CIDR, ports.
type AclRule = (bool, i32, String, String, Option<(i32, i32)>);

/// The private subnets' network ACL: its rules and subnets as the spec
/// writes them (the VPC's CIDR for `vpc`), a rule and an association changed
/// by hand put back with only the writes they need, then a pass with none.
#[tokio::test]
async fn the_private_network_acl_holds_the_spec_rules_and_subnets_and_drift_is_repaired() {
    let (moto, specs) = Moto::built("dev");
    let ec2 = ec2(&moto).await;
    let acl_of = |ec2: Client| async move {
        let out = ec2.describe_network_acls().set_filters(Some(owned("dev", "private"))).send().await.expect("acls");
        assert_eq!(out.network_acls().len(), 1, "one ACL for the private subnets");
        out.network_acls()[0].clone()
    };
    let rules = |acl: &aws_sdk_ec2::types::NetworkAcl| -> Vec<AclRule> {
        let mut r: Vec<_> = acl
            .entries()
            .iter()
            .filter(|e| e.rule_number() != Some(32767))
            .map(|e| {
                let ports = e.port_range().and_then(|p| Some((p.from()?, p.to()?)));
                (
                    e.egress().unwrap_or_default(),
                    e.rule_number().unwrap_or_default(),
                    e.protocol().unwrap_or_default().to_string(),
                    e.cidr_block().unwrap_or_default().to_string(),
                    ports,
                )
            })
            .collect();
        r.sort();
        r
    };
    let subnet_id = |id: &'static str| {
        let ec2 = ec2.clone();
        async move { ec2.describe_subnets().set_filters(Some(owned("dev", id))).send().await.expect("subnet").subnets()[0].subnet_id().expect("id").to_string() }
    };
    let (private_a, private_b, public_a) = (subnet_id("private-a").await, subnet_id("private-b").await, subnet_id("public-a").await);
    let acl = acl_of(ec2.clone()).await;
    let expected = vec![
        (false, 100, "-1".to_string(), "172.22.0.0/16".to_string(), None),
        (false, 110, "6".to_string(), "0.0.0.0/0".to_string(), Some((1024, 65535))),
        (true, 100, "-1".to_string(), "0.0.0.0/0".to_string(), None),
    ];
    assert_eq!(rules(&acl), expected);
    let mut subnets: Vec<&str> = acl.associations().iter().filter_map(|a| a.subnet_id()).collect();
    subnets.sort();
    let mut wanted = vec![private_a.as_str(), private_b.as_str()];
    wanted.sort();
    assert_eq!(subnets, wanted, "the private subnets, not the public ones ({public_a})");

    // By hand: SSH let in from anywhere, and private-b moved back to the VPC's default ACL.
    let acl_id = acl.network_acl_id().expect("id").to_string();
    let ssh = aws_sdk_ec2::types::PortRange::builder().from(22).to(22).build();
    let request = ec2.create_network_acl_entry().network_acl_id(&acl_id).egress(false).rule_number(90).protocol("6").cidr_block("0.0.0.0/0");
    request.rule_action(aws_sdk_ec2::types::RuleAction::Allow).port_range(ssh).send().await.expect("ssh rule");
    let defaults = ec2.describe_network_acls().filters(Filter::builder().name("default").values("true").build()).send().await.expect("default acl");
    let vpc = vpc_id(&ec2, "dev").await;
    let default = defaults.network_acls().iter().find(|a| a.vpc_id() == Some(vpc.as_str())).and_then(|a| a.network_acl_id()).expect("default").to_string();
    let association = acl.associations().iter().find(|a| a.subnet_id() == Some(private_b.as_str())).and_then(|a| a.network_acl_association_id());
    ec2.replace_network_acl_association().association_id(association.expect("private-b's")).network_acl_id(&default).send().await.expect("move");

    let (run, writes) = moto.writes_of(|| moto.reconcile(&specs, "dev"));
    assert_eq!(run.code, 2, "{}", run.stderr);
    let mut writes = writes;
    writes.sort();
    assert_eq!(writes, ["DeleteNetworkAclEntry", "ReplaceNetworkAclAssociation"], "the stray rule deleted, private-b moved back; nothing else");
    let acl = acl_of(ec2.clone()).await;
    assert_eq!(rules(&acl), expected);
    assert!(acl.associations().iter().any(|a| a.subnet_id() == Some(private_b.as_str())), "private-b is back");
    moto.assert_converged(&specs, "dev");
}

/// A layout the tiers do not imply, written in `routeTables`: one private
/// table shared by both private subnets (the seeds' single-NAT dev), with a
/// peering route. Built as written (the per-subnet tables the tiers implied
/// before go), the endpoints on the shared table; a subnet moved away by
/// hand and a stray route are put back with exactly their calls; then
/// nothing is written.
#[tokio::test]
async fn a_shared_private_route_table_written_in_the_spec_is_built_and_kept() {
    let moto = Moto::start();
    let ec2 = ec2(&moto).await;
    let theirs = ec2.create_vpc().cidr_block("10.9.0.0/16").send().await.expect("their vpc");
    let theirs = theirs.vpc().and_then(|v| v.vpc_id()).expect("vpc id").to_string();
    let dev = std::fs::read_to_string(repo_specs().join("dev.yaml")).expect("dev");
    // The peering connection needs the VPC: built first, then peered.
    let specs = specs_with(&[("dev.yaml", &dev)]);
    assert_eq!(moto.reconcile(specs.path(), "dev").code, 2);
    let vpc = vpc_id(&ec2, "dev").await;
    let peering = ec2.create_vpc_peering_connection().vpc_id(&vpc).peer_vpc_id(&theirs).send().await.expect("peering");
    let peering = peering.vpc_peering_connection().and_then(|p| p.vpc_peering_connection_id()).expect("pcx id").to_string();
    let layout = format!(
        "network:\n  routeTables:\n    public: {{ subnets: [public-a, public-b], internetGateway: true }}\n    shared:\n      name: sentry-private-rt-${{env}}\n      subnets: [private-a, private-b]\n      natGateway: nat-a\n      routes: {{ 10.9.0.0/16: {peering} }}\n"
    );
    let specs = specs_with(&[("dev.yaml", &dev.replacen("network:\n", &layout, 1))]);
    let run = moto.reconcile(specs.path(), "dev");
    assert_eq!((run.code, &run.json()["summary"]["failed"]), (2, &serde_json::json!(0)), "{}", run.stdout);

    let tables = |ec2: Client| async move {
        let owned = Filter::builder().name("tag:sentry:env").values("dev").build();
        ec2.describe_route_tables().filters(owned).send().await.expect("route tables").route_tables().to_vec()
    };
    let subnet_id = |id: &'static str| {
        let ec2 = ec2.clone();
        async move { ec2.describe_subnets().set_filters(Some(owned("dev", id))).send().await.expect("subnet").subnets()[0].subnet_id().expect("id").to_string() }
    };
    let (private_a, private_b) = (subnet_id("private-a").await, subnet_id("private-b").await);
    let now = tables(ec2.clone()).await;
    let ids = |t: &aws_sdk_ec2::types::RouteTable, key: &str| t.tags().iter().any(|tag| tag.key() == Some("sentry:id") && tag.value() == Some(key));
    assert_eq!(now.len(), 2, "the public table and the shared one, no per-subnet tables: {now:?}");
    let shared = now.iter().find(|t| ids(t, "shared")).expect("the shared table");
    let mut associated: Vec<&str> = shared.associations().iter().filter_map(|a| a.subnet_id()).collect();
    associated.sort();
    let mut expected = [private_a.as_str(), private_b.as_str()];
    expected.sort();
    assert_eq!(associated, expected);
    let name = shared.tags().iter().find(|t| t.key() == Some("Name")).and_then(|t| t.value());
    assert_eq!(name, Some("sentry-private-rt-dev"));
    let route = |t: &aws_sdk_ec2::types::RouteTable, to: &str| t.routes().iter().find(|r| r.destination_cidr_block() == Some(to)).cloned();
    assert!(route(shared, "0.0.0.0/0").and_then(|r| r.nat_gateway_id().map(str::to_string)).is_some_and(|n| n.starts_with("nat-")), "egress through nat-a");
    assert_eq!(route(shared, "10.9.0.0/16").and_then(|r| r.vpc_peering_connection_id().map(str::to_string)), Some(peering.clone()));
    let shared_id = shared.route_table_id().expect("id").to_string();
    let endpoints = ec2.describe_vpc_endpoints().send().await.expect("endpoints");
    assert!(endpoints.vpc_endpoints().iter().all(|e| e.route_table_ids() == [shared_id.as_str()]), "the endpoints are on the private subnets' table");

    // By hand: private-b moved to the public table, a stray route added to the shared one.
    let public = now.iter().find(|t| ids(t, "public")).and_then(|t| t.route_table_id()).expect("public").to_string();
    let association = shared.associations().iter().find(|a| a.subnet_id() == Some(private_b.as_str())).and_then(|a| a.route_table_association_id());
    ec2.replace_route_table_association().association_id(association.expect("private-b's")).route_table_id(&public).send().await.expect("move");
    ec2.create_route().route_table_id(&shared_id).destination_cidr_block("10.8.0.0/16").vpc_peering_connection_id(&peering).send().await.expect("stray");
    let (run, writes) = moto.writes_of(|| moto.reconcile(specs.path(), "dev"));
    assert_eq!(run.code, 2, "{}", run.stderr);
    let mut writes = writes;
    writes.sort();
    // The public table lets private-b go before the shared one takes it back
    // (two tables, two updates): a moment on the VPC's main table.
    assert_eq!(writes, ["AssociateRouteTable", "DeleteRoute", "DisassociateRouteTable"], "private-b moved back, the stray route removed; nothing else");
    let now = tables(ec2.clone()).await;
    let shared = now.iter().find(|t| ids(t, "shared")).expect("the shared table");
    assert!(shared.associations().iter().any(|a| a.subnet_id() == Some(private_b.as_str())) && route(shared, "10.8.0.0/16").is_none());
    moto.assert_converged(specs.path(), "dev");
}

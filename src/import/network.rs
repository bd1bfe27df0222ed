//! The `network` section of an imported spec: the VPC and everything in it,
//! the whitelist addresses pinned.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::types::{Filter, IpPermission, RouteTable, SecurityGroup as LiveGroup, Tag, VpcAttributeName};
use aws_sdk_ec2::Client;

use super::{by_id, spec_id, unique, Context, ImportError, StackResource};
use crate::aws::{required, AwsResult};
use crate::kinds::ec2::{elastic_ip, flow_log, internet_gateway, nat_gateway, route_table, security_group, security_group_rules, subnet, vpc, vpc_endpoint};
use crate::spec::model::{Endpoint, FlowLogs, NatGateway, Network, Ports, Rule, SecurityGroup, Subnet, Tier, Vpc, Whitelist, WhitelistAddress};
use crate::spec::network::check_pin;

/// The Name tag of a resource.
fn name_tag(tags: &[Tag]) -> Option<&str> {
    tags.iter().find(|t| t.key() == Some("Name")).and_then(|t| t.value())
}

/// The spec's name for a resource named `live`, when the default (`default`) differs.
fn explicit_name(live: Option<&str>, default: &str) -> Option<String> {
    live.filter(|n| *n != default).map(str::to_string)
}

/// The network section, or `None` when the stacks hold no VPC.
pub async fn build(ctx: &mut Context, ec2: &Client) -> Result<Option<Network>, ImportError> {
    let vpcs = ctx.of(vpc::KIND);
    let [found] = vpcs.as_slice() else {
        if vpcs.len() > 1 {
            let all: Vec<String> = vpcs.iter().map(|v| format!("{} ({} {})", v.physical_id, v.stack, v.logical_id)).collect();
            return Err(ImportError::Input(format!("the stacks hold {} VPCs ({}); an environment has one: narrow --stacks", vpcs.len(), all.join(", "))));
        }
        for kind in [subnet::KIND, nat_gateway::KIND, route_table::KIND, security_group::KIND, vpc_endpoint::KIND] {
            for r in ctx.of(kind) {
                ctx.not_representable(format!("{} {} ({}): no VPC in the stacks to hold it", r.resource_type, r.logical_id, r.stack));
            }
        }
        return Ok(None);
    };
    let vpc_id = found.physical_id.clone();
    let live_vpc = ec2.describe_vpcs().vpc_ids(&vpc_id).send().await.aws("EC2.DescribeVpcs")?;
    let live_vpc = live_vpc.vpcs().first().ok_or_else(|| ImportError::Input(format!("VPC {vpc_id} of {} does not exist", found.stack)))?;
    let mut network = Network {
        vpc: Vpc {
            name: explicit_name(name_tag(live_vpc.tags()), &format!("sentry-{}-{}", vpc::ID, ctx.env)),
            cidr: required("EC2.DescribeVpcs", "CIDR block", live_vpc.cidr_block())?,
            enable_dns_support: vpc_attribute(ec2, &vpc_id, VpcAttributeName::EnableDnsSupport).await?,
            enable_dns_hostnames: vpc_attribute(ec2, &vpc_id, VpcAttributeName::EnableDnsHostnames).await?,
            flow_logs: FlowLogs::default(),
        },
        availability_zones: Vec::new(),
        subnets: BTreeMap::new(),
        nat_gateways: BTreeMap::new(),
        whitelist: Whitelist { pool: BTreeMap::new() },
        security_groups: BTreeMap::new(),
        endpoints: BTreeMap::new(),
        network_acls: BTreeMap::new(),
    };
    ctx.adopt(vpc::KIND, vpc::ID, &vpc_id, by_id(&vpc_id));

    let tables = ec2.describe_route_tables().filters(Filter::builder().name("vpc-id").values(&vpc_id).build()).send().await.aws("EC2.DescribeRouteTables")?;
    let tables = tables.route_tables();
    let nats = ctx.of(nat_gateway::KIND);
    let live_nats = if nats.is_empty() {
        Vec::new()
    } else {
        let ids: Vec<String> = nats.iter().map(|n| n.physical_id.clone()).collect();
        ec2.describe_nat_gateways().set_nat_gateway_ids(Some(ids)).send().await.aws("EC2.DescribeNatGateways")?.nat_gateways.unwrap_or_default()
    };

    // Subnets, with their tier: from their route table's default route, else
    // public for a subnet holding a NAT gateway, else from their names.
    let mut subnet_ids: BTreeMap<String, String> = BTreeMap::new();
    let mut taken = BTreeSet::new();
    let stack_subnets = ctx.of(subnet::KIND);
    if !stack_subnets.is_empty() {
        let ids: Vec<String> = stack_subnets.iter().map(|s| s.physical_id.clone()).collect();
        let live = ec2.describe_subnets().set_subnet_ids(Some(ids)).send().await.aws("EC2.DescribeSubnets")?;
        for r in &stack_subnets {
            let Some(s) = live.subnets().iter().find(|s| s.subnet_id() == Some(r.physical_id.as_str())) else { continue };
            let id = unique(spec_id(&r.logical_id, &["subnet"]), &mut taken);
            let tier = tier_of(&r.physical_id, tables, &live_nats).unwrap_or_else(|| {
                let words = format!("{} {}", r.logical_id, name_tag(s.tags()).unwrap_or_default()).to_ascii_lowercase();
                if words.contains("public") {
                    Tier::Public
                } else {
                    Tier::Private
                }
            });
            let az = required("EC2.DescribeSubnets", "availability zone", s.availability_zone())?;
            network.subnets.insert(id.clone(), Subnet { tier, az, cidr: required("EC2.DescribeSubnets", "CIDR block", s.cidr_block())? });
            ctx.adopt(subnet::KIND, &id, &r.physical_id, by_id(&r.physical_id));
            subnet_ids.insert(r.physical_id.clone(), id);
        }
    }
    ctx.tiers = Some(subnet_ids.iter().filter_map(|(live, id)| Some((live.clone(), network.subnets.get(id)?.tier))).collect());
    let zones: BTreeSet<String> = network.subnets.values().map(|s| s.az.clone()).collect();
    network.availability_zones = zones.into_iter().collect();

    for r in ctx.of(internet_gateway::KIND) {
        ctx.adopt(internet_gateway::KIND, internet_gateway::ID, &r.physical_id, by_id(&r.physical_id));
    }

    // The whitelist: every address of the stacks, pinned; a NAT gateway's
    // address from outside the stacks joins the pool too.
    let addresses = ec2.describe_addresses().send().await.aws("EC2.DescribeAddresses")?;
    let mut pool_ids: BTreeMap<String, String> = BTreeMap::new(); // allocation id -> pool entry
    let pin = |network: &mut Network, pool_ids: &mut BTreeMap<String, String>, id: String, allocation: &str, ip: Option<&str>| {
        let address = ip.filter(|ip| check_pin(ip).is_ok()).unwrap_or(allocation).to_string();
        network.whitelist.pool.insert(id.clone(), WhitelistAddress { address: Some(address), releasable: false });
        pool_ids.insert(allocation.to_string(), id);
    };
    let mut pool_taken = BTreeSet::new();
    for r in ctx.of(elastic_ip::KIND) {
        let live = addresses.addresses().iter().find(|a| a.public_ip() == Some(r.physical_id.as_str()) || a.allocation_id() == Some(r.physical_id.as_str()));
        let Some((allocation, ip)) = live.and_then(|a| Some((a.allocation_id()?, a.public_ip()))) else {
            ctx.not_representable(format!("{} {} ({}): address {} is not in the account", r.resource_type, r.logical_id, r.stack, r.physical_id));
            continue;
        };
        // The pool holds the NAT gateways' addresses and spares; one attached to
        // anything else (an instance) would be detached by the whitelist guard.
        let on_nat = live
            .and_then(|a| a.network_interface_id())
            .is_some_and(|eni| live_nats.iter().any(|n| n.nat_gateway_addresses().iter().any(|na| na.network_interface_id() == Some(eni))));
        if live.is_some_and(|a| (a.association_id().is_some() || a.instance_id().is_some_and(|i| !i.is_empty())) && !on_nat) {
            ctx.not_representable(format!(
                "{} {} ({}): address {} is attached to something other than a NAT gateway; the whitelist pool holds NAT addresses and spares",
                r.resource_type, r.logical_id, r.stack, r.physical_id
            ));
            continue;
        }
        let id = unique(spec_id(&r.logical_id, &["eip", "elastic", "ip"]), &mut pool_taken);
        pin(&mut network, &mut pool_ids, id.clone(), allocation, ip);
        ctx.summary.mapped.push(format!("{}/{id} <- {} (pinned: the guard keeps it)", elastic_ip::KIND, r.physical_id));
    }
    let mut nat_taken = BTreeSet::new();
    for r in &nats {
        let Some(n) = live_nats.iter().find(|n| n.nat_gateway_id() == Some(r.physical_id.as_str())) else { continue };
        let id = unique(spec_id(&r.logical_id, &["gateway"]), &mut nat_taken);
        let Some(subnet) = n.subnet_id().and_then(|s| subnet_ids.get(s)) else {
            ctx.not_representable(format!("{} {} ({}): its subnet is not in the stacks", r.resource_type, r.logical_id, r.stack));
            continue;
        };
        let primary = n.nat_gateway_addresses().iter().find(|a| a.is_primary() != Some(false));
        let allocation = required("EC2.DescribeNatGateways", "allocation id", primary.and_then(|a| a.allocation_id()))?;
        if !pool_ids.contains_key(&allocation) {
            let entry = unique(format!("{id}-address"), &mut pool_taken);
            pin(&mut network, &mut pool_ids, entry.clone(), &allocation, primary.and_then(|a| a.public_ip()));
            ctx.summary.mapped.push(format!("{}/{entry} <- {allocation} (the address of {}, pinned)", elastic_ip::KIND, r.physical_id));
        }
        network.nat_gateways.insert(id.clone(), NatGateway { subnet: subnet.clone(), elastic_ip: pool_ids[&allocation].clone() });
        ctx.adopt(nat_gateway::KIND, &id, &r.physical_id, by_id(&r.physical_id));
    }

    // Route tables: the spec has one public table and one per private subnet.
    let stack_tables: Vec<StackResource> = ctx.of(route_table::KIND);
    for r in &stack_tables {
        let Some(t) = tables.iter().find(|t| t.route_table_id() == Some(r.physical_id.as_str())) else { continue };
        let via_igw =
            t.routes().iter().any(|route| route.destination_cidr_block() == Some("0.0.0.0/0") && route.gateway_id().is_some_and(|g| g.starts_with("igw-")));
        let associated: Vec<&String> = t.associations().iter().filter_map(|a| a.subnet_id()).filter_map(|s| subnet_ids.get(s)).collect();
        let key = if via_igw {
            Some(route_table::PUBLIC.to_string())
        } else if let [one] = associated.as_slice() {
            Some((*one).clone())
        } else if associated.is_empty() {
            // Associations not reported: the private subnet whose name the table's repeats.
            let words = spec_id(&r.logical_id, &["route", "table", "rt"]);
            network
                .subnets
                .iter()
                .find(|(sid, s)| s.tier == Tier::Private && (words == **sid || words.ends_with(&format!("-{}", sid.rsplit('-').next().unwrap_or_default()))))
                .map(|(sid, _)| sid.clone())
        } else {
            None
        };
        match key {
            Some(key) if !ctx.adopt.contains_key(&format!("{}/{key}", route_table::KIND)) => {
                ctx.adopt(route_table::KIND, &key, &r.physical_id, by_id(&r.physical_id))
            }
            _ => ctx.not_representable(format!(
                "{} {} ({}): the spec has one public route table and one per private subnet; this one is neither (or a second one)",
                r.resource_type, r.logical_id, r.stack
            )),
        }
    }

    // Security groups, their rules naming each other by spec id.
    let stack_groups = ctx.of(security_group::KIND);
    if !stack_groups.is_empty() {
        let ids: Vec<String> = stack_groups.iter().map(|g| g.physical_id.clone()).collect();
        let live = ec2.describe_security_groups().set_group_ids(Some(ids)).send().await.aws("EC2.DescribeSecurityGroups")?;
        let mut group_taken = BTreeSet::new();
        let names: BTreeMap<String, String> =
            stack_groups.iter().map(|g| (g.physical_id.clone(), unique(spec_id(&g.logical_id, &["security", "group", "sg"]), &mut group_taken))).collect();
        for r in &stack_groups {
            let Some(g) = live.security_groups().iter().find(|g| g.group_id() == Some(r.physical_id.as_str())) else { continue };
            let id = names[&r.physical_id].clone();
            let (group, problems) = security_group_of(&id, g, &names, &ctx.env);
            for p in problems {
                ctx.not_representable(format!("{} {} ({}): {p}", r.resource_type, r.logical_id, r.stack));
            }
            network.security_groups.insert(id.clone(), group);
            ctx.adopt(security_group::KIND, &id, &r.physical_id, by_id(&r.physical_id));
            ctx.adopt.insert(format!("{}/{id}", security_group_rules::KIND), by_id(&r.physical_id));
        }
    }

    // Gateway endpoints, on the private or the public route tables.
    let stack_endpoints = ctx.of(vpc_endpoint::KIND);
    if !stack_endpoints.is_empty() {
        let ids: Vec<String> = stack_endpoints.iter().map(|e| e.physical_id.clone()).collect();
        let live = ec2.describe_vpc_endpoints().set_vpc_endpoint_ids(Some(ids)).send().await.aws("EC2.DescribeVpcEndpoints")?;
        let table_key =
            |table: &str| ctx.adopt.iter().find(|(k, t)| k.starts_with(route_table::KIND) && t.id.as_deref() == Some(table)).map(|(k, _)| k.clone());
        let mut rows = Vec::new();
        for r in &stack_endpoints {
            let Some(e) = live.vpc_endpoints().iter().find(|e| e.vpc_endpoint_id() == Some(r.physical_id.as_str())) else { continue };
            let service = required("EC2.DescribeVpcEndpoints", "service name", e.service_name())?.rsplit('.').next().unwrap_or_default().to_string();
            let keys: BTreeSet<String> = e.route_table_ids().iter().filter_map(|t| table_key(t)).collect();
            let public = keys.contains(&format!("{}/{}", route_table::KIND, route_table::PUBLIC));
            rows.push((r.clone(), service, public && keys.len() == 1));
        }
        let mut endpoint_taken = BTreeSet::new();
        for (r, service, public) in rows {
            let id = unique(service.clone(), &mut endpoint_taken);
            network.endpoints.insert(id.clone(), Endpoint { service, route_tables: if public { Tier::Public } else { Tier::Private } });
            ctx.adopt(vpc_endpoint::KIND, &id, &r.physical_id, by_id(&r.physical_id));
        }
    }

    // Flow logs of the VPC.
    if let Some(r) = ctx.of(flow_log::KIND).first() {
        let live = ec2.describe_flow_logs().flow_log_ids(&r.physical_id).send().await.aws("EC2.DescribeFlowLogs")?;
        if let Some(f) = live.flow_logs().first() {
            network.vpc.flow_logs = FlowLogs {
                enabled: true,
                traffic_type: f.traffic_type().map(|t| t.as_str().to_string()),
                log_group: f.log_group_name().map(str::to_string),
                role: None,
                role_arn: f.deliver_logs_permission_arn().map(str::to_string),
            };
            ctx.adopt(flow_log::KIND, vpc::ID, &r.physical_id, by_id(&r.physical_id));
        }
    }
    Ok(Some(network))
}

/// One of the VPC's DNS attributes.
async fn vpc_attribute(ec2: &Client, vpc: &str, name: VpcAttributeName) -> Result<bool, ImportError> {
    let out = ec2.describe_vpc_attribute().vpc_id(vpc).attribute(name.clone()).send().await.aws("EC2.DescribeVpcAttribute")?;
    let flag = if name == VpcAttributeName::EnableDnsSupport { out.enable_dns_support() } else { out.enable_dns_hostnames() };
    Ok(flag.and_then(|f| f.value()).unwrap_or(false))
}

/// The tier of `subnet` from the default route of its route table (through an
/// internet gateway: public; a NAT gateway: private), else public when a NAT
/// gateway sits in it; `None` when neither tells.
fn tier_of(subnet: &str, tables: &[RouteTable], nats: &[aws_sdk_ec2::types::NatGateway]) -> Option<Tier> {
    let table = tables.iter().find(|t| t.associations().iter().any(|a| a.subnet_id() == Some(subnet)));
    let default = table.and_then(|t| t.routes().iter().find(|r| r.destination_cidr_block() == Some("0.0.0.0/0")));
    match default {
        Some(r) if r.gateway_id().is_some_and(|g| g.starts_with("igw-")) => Some(Tier::Public),
        Some(r) if r.nat_gateway_id().is_some() => Some(Tier::Private),
        _ => nats.iter().any(|n| n.subnet_id() == Some(subnet)).then_some(Tier::Public),
    }
}

/// A live group as the spec writes it; `names` maps group ids to spec ids.
/// Returns what the spec cannot say about it.
fn security_group_of(id: &str, g: &LiveGroup, names: &BTreeMap<String, String>, env: &str) -> (SecurityGroup, Vec<String>) {
    let mut problems = Vec::new();
    let mut rules = |permissions: &[IpPermission]| {
        let mut out = Vec::new();
        for p in permissions {
            let protocol = match p.ip_protocol().unwrap_or("-1") {
                "-1" => "all",
                "6" => "tcp",
                "17" => "udp",
                "1" => "icmp",
                other => other,
            }
            .to_string();
            let ports = match (p.from_port(), p.to_port()) {
                _ if protocol == "all" => None,
                (None, _) | (Some(-1), _) => None,
                (Some(a), Some(b)) if a != b => Some(Ports::Range(format!("{a}-{b}"))),
                (Some(a), _) => u16::try_from(a).ok().map(Ports::One),
            };
            let rule = |cidr: Option<String>, source_group: Option<String>, description: Option<&str>| Rule {
                protocol: protocol.clone(),
                ports: ports.clone(),
                cidr,
                source_group,
                description: description.filter(|d| !d.is_empty()).map(str::to_string),
            };
            for r in p.ip_ranges() {
                out.push(rule(r.cidr_ip().map(str::to_string), None, r.description()));
            }
            for pair in p.user_id_group_pairs() {
                match pair.group_id().and_then(|peer| names.get(peer)) {
                    Some(peer) => out.push(rule(None, Some(peer.clone()), pair.description())),
                    None => problems.push(format!("a rule names group {}, which is not in the stacks", pair.group_id().unwrap_or("?"))),
                }
            }
            if !p.ipv6_ranges().is_empty() || !p.prefix_list_ids().is_empty() {
                problems.push("IPv6 and prefix-list rules are not in the spec language; they would be revoked".into());
            }
        }
        out
    };
    let ingress = rules(g.ip_permissions());
    let egress = rules(g.ip_permissions_egress());
    let default_egress = matches!(egress.as_slice(), [r] if r.protocol == "all" && r.cidr.as_deref() == Some("0.0.0.0/0"));
    let group = SecurityGroup {
        name: explicit_name(g.group_name(), &format!("sentry-{id}-{env}")),
        description: g.description().unwrap_or_default().to_string(),
        ingress,
        egress: (!default_egress).then_some(egress),
    };
    (group, problems)
}

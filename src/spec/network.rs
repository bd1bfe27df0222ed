//! The `network` section: the VPC, subnets, internet and NAT gateways, the Elastic IP
//! whitelist, security groups, endpoints and flow logs; their types and their checks.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::model::*;
use super::validate::Checker;

/// Networking of the environment.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Network {
    /// The VPC.
    pub vpc: Vpc,
    /// Availability zones used by subnets (2 non-prod, 3 prod).
    pub availability_zones: Vec<String>,
    /// Subnets by logical id.
    #[serde(default)]
    pub subnets: BTreeMap<String, Subnet>,
    /// NAT gateways by logical id.
    #[serde(default)]
    pub nat_gateways: BTreeMap<String, NatGateway>,
    /// The Elastic IP whitelist the exchanges trust.
    pub whitelist: Whitelist,
    /// Security groups by logical id.
    #[serde(default)]
    pub security_groups: BTreeMap<String, SecurityGroup>,
    /// VPC gateway endpoints by logical id.
    #[serde(default)]
    pub endpoints: BTreeMap<String, Endpoint>,
    /// Network ACLs by logical id: stateless rules for the subnets each names
    /// (a subnet none names stays on the VPC's default ACL).
    #[serde(default)]
    pub network_acls: BTreeMap<String, NetworkAcl>,
    /// Route tables by logical id, when the spec lays them out itself (any
    /// layout: one private table shared by several subnets, a subnet left on
    /// the VPC's main table; `{}`: every subnet on the main table). Without
    /// the section they follow the tiers: one public table through the
    /// internet gateway and one per private subnet through the NAT gateway of
    /// its zone.
    pub route_tables: Option<BTreeMap<String, RouteTable>>,
}

/// A route table the spec lays out. The operator owns its routes and its
/// subnets: a route or an association added by hand is removed.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RouteTable {
    /// Physical name (Name tag); default `sentry-rt-<id>-<env>`.
    pub name: Option<String>,
    /// The subnets (logical ids) associated with it; a subnet is in one
    /// table at most, one in none uses the VPC's main table.
    #[serde(default)]
    pub subnets: Vec<String>,
    /// The NAT gateway (logical id) of its default route (0.0.0.0/0).
    pub nat_gateway: Option<String>,
    /// Whether its default route goes to the internet gateway.
    #[serde(default)]
    pub internet_gateway: bool,
    /// Other routes: destination CIDR → the id of their target as AWS names
    /// it (`pcx-…` peering, `tgw-…` transit gateway, `vgw-…` virtual private
    /// gateway, `eni-…` network interface, `i-…` instance), kept as written.
    #[serde(default)]
    pub routes: BTreeMap<String, String>,
}

/// The prefixes of the route targets a route table's `routes` may name.
pub const ROUTE_TARGETS: &[&str] = &["pcx-", "tgw-", "vgw-", "eni-", "i-"];

/// Where a route table's default route goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultRoute<'a> {
    /// To the internet gateway.
    InternetGateway,
    /// To the NAT gateway of this logical id.
    NatGateway(&'a str),
}

/// One route table of the environment, as the spec lays it out or as the
/// tiers imply it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableLayout<'a> {
    /// Logical id.
    pub id: String,
    /// Physical name.
    pub name: String,
    /// The subnets associated with it (logical ids).
    pub subnets: Vec<&'a str>,
    /// Its default route, if any.
    pub default_route: Option<DefaultRoute<'a>>,
    /// Its other routes (destination, target id).
    pub routes: Vec<(&'a str, &'a str)>,
}

impl Network {
    /// The route tables of environment `env`: `routeTables` as written, else
    /// one public table (`public`, through the internet gateway, every public
    /// subnet) and one per private subnet (named after it, through the NAT
    /// gateway of its zone, else the first one).
    pub fn route_table_layout(&self, env: &str) -> Vec<TableLayout<'_>> {
        if let Some(tables) = &self.route_tables {
            return tables
                .iter()
                .map(|(id, t)| TableLayout {
                    id: id.clone(),
                    name: t.name.as_deref().map_or_else(|| format!("sentry-rt-{id}-{env}"), |n| n.replace("${env}", env)),
                    subnets: t.subnets.iter().map(String::as_str).collect(),
                    default_route: match (&t.nat_gateway, t.internet_gateway) {
                        (Some(nat), _) => Some(DefaultRoute::NatGateway(nat)),
                        (None, true) => Some(DefaultRoute::InternetGateway),
                        (None, false) => None,
                    },
                    routes: t.routes.iter().map(|(d, t)| (d.as_str(), t.as_str())).collect(),
                })
                .collect();
        }
        let of_tier = |tier: Tier| self.subnets.iter().filter(move |(_, s)| s.tier == tier);
        let public = TableLayout {
            id: PUBLIC_TABLE.into(),
            name: format!("sentry-rt-{PUBLIC_TABLE}-{env}"),
            subnets: of_tier(Tier::Public).map(|(id, _)| id.as_str()).collect(),
            default_route: Some(DefaultRoute::InternetGateway),
            routes: Vec::new(),
        };
        let private = of_tier(Tier::Private).map(|(id, s)| {
            let same_az = self.nat_gateways.iter().find(|(_, nat)| self.subnets.get(&nat.subnet).is_some_and(|ns| ns.az == s.az));
            TableLayout {
                id: id.clone(),
                name: format!("sentry-rt-{id}-{env}"),
                subnets: vec![id.as_str()],
                default_route: same_az.or_else(|| self.nat_gateways.iter().next()).map(|(nat, _)| DefaultRoute::NatGateway(nat)),
                routes: Vec::new(),
            }
        });
        std::iter::once(public).chain(private).collect()
    }

    /// The route tables (logical ids) serving subnets of `tier`.
    pub fn route_tables_of(&self, tier: Tier, env: &str) -> Vec<String> {
        let of_tier = |s: &&str| self.subnets.get(*s).is_some_and(|s| s.tier == tier);
        self.route_table_layout(env).into_iter().filter(|t| t.subnets.iter().any(of_tier)).map(|t| t.id).collect()
    }
}

/// The logical id of the public route table the tiers imply.
pub const PUBLIC_TABLE: &str = "public";

/// The VPC.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Vpc {
    /// Physical name (Name tag); default `sentry-vpc-<env>`.
    pub name: Option<String>,
    /// IPv4 CIDR block, e.g. `172.22.0.0/16`.
    pub cidr: String,
    /// DNS resolution inside the VPC.
    #[serde(default = "yes")]
    pub enable_dns_support: bool,
    /// DNS hostnames for instances.
    #[serde(default = "yes")]
    pub enable_dns_hostnames: bool,
    /// VPC flow logs.
    #[serde(default)]
    pub flow_logs: FlowLogs,
    /// The internet gateway's physical name (Name tag); default `sentry-igw-<env>`.
    pub internet_gateway_name: Option<String>,
}

/// VPC flow logs settings.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FlowLogs {
    /// Physical name (Name tag); default `sentry-vpc-flow-logs-<env>`.
    pub name: Option<String>,
    /// Whether flow logs are on.
    #[serde(default)]
    pub enabled: bool,
    /// Traffic captured: ACCEPT, REJECT or ALL (default ALL).
    pub traffic_type: Option<String>,
    /// CloudWatch Logs group receiving the records; default `/sentry/vpc-flow-logs-<env>`.
    pub log_group: Option<String>,
    /// The role that lets the flow-logs service write to the group (logical id in
    /// `iam.roles`; its policy is generated); this or `roleArn` is required when enabled.
    pub role: Option<String>,
    /// The ARN of such a role the operator does not manage (an imported estate's).
    pub role_arn: Option<String>,
}

impl FlowLogs {
    /// The log group receiving the records in environment `env`.
    pub fn log_group_name(&self, env: &str) -> String {
        self.log_group.as_deref().map(|g| g.replace("${env}", env)).unwrap_or_else(|| format!("/sentry/vpc-flow-logs-{env}"))
    }
}

/// Subnet tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Tier {
    /// Routes to the internet gateway; hosts NAT gateways and the ALB.
    Public,
    /// Routes to a NAT gateway; hosts the containers and Redis.
    Private,
}

/// A subnet.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Subnet {
    /// Physical name (Name tag); default `sentry-<id>-<env>`.
    pub name: Option<String>,
    /// Public or private.
    pub tier: Tier,
    /// Availability zone (one of `network.availabilityZones`).
    pub az: String,
    /// IPv4 CIDR inside the VPC's.
    pub cidr: String,
}

/// A NAT gateway.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NatGateway {
    /// Physical name (Name tag); default `sentry-<id>-<env>`.
    pub name: Option<String>,
    /// The public subnet it lives in (logical id).
    pub subnet: String,
    /// The whitelist pool entry whose EIP it uses (logical id).
    pub elastic_ip: String,
}

/// The Elastic IP whitelist.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Whitelist {
    /// Pool entries by logical id.
    pub pool: BTreeMap<String, WhitelistAddress>,
}

/// One whitelisted Elastic IP.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WhitelistAddress {
    /// Physical name (Name tag); default `sentry-<id>-<env>`.
    pub name: Option<String>,
    /// Pinned public IP (`203.0.113.10`) or allocation id (`eipalloc-...`); empty until bootstrap.
    pub address: Option<String>,
    /// First step of the two-step release: only a releasable address may ever be released.
    #[serde(default)]
    pub releasable: bool,
}

/// A security group.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SecurityGroup {
    /// Physical name; default `sentry-<id>-<env>`.
    pub name: Option<String>,
    /// Group description.
    pub description: String,
    /// Inbound rules.
    #[serde(default)]
    pub ingress: Vec<Rule>,
    /// Outbound rules; default: all traffic to anywhere.
    pub egress: Option<Vec<Rule>>,
}

/// One security-group rule; exactly one of `cidr` and `sourceGroup`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Rule {
    /// `tcp`, `udp`, `icmp` or `all`.
    pub protocol: String,
    /// One port (`443`) or a range (`"8000-8010"`); omit for `all`.
    pub ports: Option<Ports>,
    /// Peer CIDR, or `vpc` for the VPC's own CIDR.
    pub cidr: Option<String>,
    /// Peer security group (logical id).
    pub source_group: Option<String>,
    /// Rule description.
    pub description: Option<String>,
}

/// A port or a port range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Ports {
    /// A single port.
    One(u16),
    /// `"from-to"`.
    Range(String),
}

impl<'de> Deserialize<'de> for Ports {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PortsVisitor;
        impl serde::de::Visitor<'_> for PortsVisitor {
            type Value = Ports;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a port (1-65535) or a range like \"8000-8010\"")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Ports, E> {
                u16::try_from(v).map(Ports::One).map_err(|_| E::custom(format!("{v} is not a port (1-65535)")))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Ports, E> {
                u16::try_from(v).map(Ports::One).map_err(|_| E::custom(format!("{v} is not a port (1-65535)")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Ports, E> {
                Ok(Ports::Range(v.to_string()))
            }
        }
        deserializer.deserialize_any(PortsVisitor)
    }
}

/// A network ACL: stateless rules, evaluated by rule number (lowest first),
/// for the subnets it names. The operator owns its rules and its subnets:
/// a rule or an association added by hand is removed.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NetworkAcl {
    /// Physical name (Name tag); default `sentry-<id>-<env>`.
    pub name: Option<String>,
    /// The subnets (logical ids) it applies to; a subnet may be in one ACL only.
    pub subnets: Vec<String>,
    /// Inbound rules.
    #[serde(default)]
    pub ingress: Vec<AclRule>,
    /// Outbound rules.
    #[serde(default)]
    pub egress: Vec<AclRule>,
}

/// One rule of a network ACL.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AclRule {
    /// Rule number, 1-32766: the lowest matching rule decides.
    pub rule: u32,
    /// `tcp`, `udp` or `all`.
    pub protocol: String,
    /// One port (`443`) or a range (`"1024-65535"`); required for tcp and udp, none for `all`.
    pub ports: Option<Ports>,
    /// The CIDR it matches (the source inbound, the destination outbound), or `vpc` for the VPC's own.
    pub cidr: String,
    /// `allow` (the default) or `deny`.
    #[serde(default = "allow")]
    pub action: String,
}

fn allow() -> String {
    "allow".into()
}

/// A VPC gateway endpoint.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Endpoint {
    /// Physical name (Name tag); default `sentry-<id>-endpoint-<env>`.
    pub name: Option<String>,
    /// `dynamodb` or `s3`.
    pub service: String,
    /// Route tables of this tier get the endpoint route.
    #[serde(default = "private_tier")]
    pub route_tables: Tier,
}

impl Checker {
    pub(super) fn network(&mut self, n: &Network) {
        let vpc = match parse_cidr(&n.vpc.cidr) {
            Ok(net) => {
                if !(16..=28).contains(&net.prefix_len()) {
                    self.err(&["network", "vpc", "cidr"], format!("VPC prefix /{} must be between /16 and /28", net.prefix_len()));
                }
                Some(net)
            }
            Err(message) => {
                self.err(&["network", "vpc", "cidr"], message);
                None
            }
        };
        if let Some(t) = &n.vpc.flow_logs.traffic_type {
            self.one_of(&["network", "vpc", "flowLogs", "trafficType"], t, &["ACCEPT", "REJECT", "ALL"]);
        }
        match (&n.vpc.flow_logs.role, &n.vpc.flow_logs.role_arn) {
            (None, None) if n.vpc.flow_logs.enabled => {
                self.err(&["network", "vpc", "flowLogs"], "enabled flow logs need `role` or `roleArn` (the role that writes to CloudWatch Logs)")
            }
            (Some(_), Some(_)) => self.err(&["network", "vpc", "flowLogs", "roleArn"], "give `role` (a role of the spec) or `roleArn`, not both"),
            (None, Some(arn)) if !arn.starts_with("arn:aws:iam::") => {
                self.err(&["network", "vpc", "flowLogs", "roleArn"], format!("{arn:?} is not an IAM role ARN"))
            }
            _ => {}
        }
        if n.availability_zones.is_empty() {
            self.err(&["network", "availabilityZones"], "at least one availability zone is required");
        }
        let mut zones = BTreeSet::new();
        for (i, az) in n.availability_zones.iter().enumerate() {
            if !zones.insert(az.as_str()) {
                self.err(&["network", "availabilityZones", &i.to_string()], format!("availability zone {az:?} is listed twice"));
            }
        }

        let mut parsed: Vec<(&str, Ipv4Net)> = Vec::new();
        let mut per_az: BTreeMap<(&str, Tier), Vec<&str>> = BTreeMap::new();
        for (id, s) in &n.subnets {
            let p = ["network", "subnets", id.as_str(), "cidr"];
            match parse_cidr(&s.cidr) {
                Ok(net) => {
                    if let Some(v) = vpc {
                        if !v.contains(&net) {
                            self.err(&p, format!("{} is outside the VPC CIDR {v}", s.cidr));
                        }
                    }
                    if let Some((other, _)) = parsed.iter().find(|(_, o)| o.contains(&net.network()) || net.contains(&o.network())) {
                        self.err(&p, format!("{} overlaps subnet {other:?}", s.cidr));
                    }
                    parsed.push((id, net));
                }
                Err(message) => self.err(&p, message),
            }
            if zones.contains(s.az.as_str()) {
                per_az.entry((s.az.as_str(), s.tier)).or_default().push(id);
            } else {
                self.reference(&["network", "subnets", id, "az"], &s.az, zones.iter().copied(), "availability zone");
            }
        }
        for az in &zones {
            for tier in [Tier::Public, Tier::Private] {
                let tier_name = if tier == Tier::Public { "public" } else { "private" };
                match per_az.get(&(*az, tier)).map(Vec::as_slice) {
                    None | Some([]) => self.err(&["network", "subnets"], format!("availability zone {az} has no {tier_name} subnet")),
                    Some([_]) => {}
                    Some(ids) => self.err(
                        &["network", "subnets", ids[1]],
                        format!("availability zone {az} has {} {tier_name} subnets ({}); one per tier per AZ", ids.len(), ids.join(", ")),
                    ),
                }
            }
        }

        let pool_ids: Vec<&str> = n.whitelist.pool.keys().map(String::as_str).collect();
        let mut pinned = HashMap::new();
        for (id, address) in &n.whitelist.pool {
            if let Some(a) = &address.address {
                let p = ["network", "whitelist", "pool", id.as_str(), "address"];
                if let Err(message) = check_pin(a) {
                    self.err(&p, message);
                } else if let Some(first) = pinned.insert(a.clone(), id.clone()) {
                    self.err(&p, format!("address {a} is already pinned by {first:?}"));
                }
            }
        }
        if n.whitelist.pool.len() < n.nat_gateways.len() {
            self.err(
                &["network", "whitelist", "pool"],
                format!("the whitelist pool has {} address(es) but {} NAT gateways need one each", n.whitelist.pool.len(), n.nat_gateways.len()),
            );
        }
        let mut eip_users: HashMap<&str, &str> = HashMap::new();
        for (id, nat) in &n.nat_gateways {
            match n.subnets.get(&nat.subnet) {
                Some(s) if s.tier != Tier::Public => {
                    self.err(&["network", "natGateways", id, "subnet"], format!("subnet {:?} is private; NAT gateways live in public subnets", nat.subnet))
                }
                Some(_) => {}
                None => self.reference(&["network", "natGateways", id, "subnet"], &nat.subnet, n.subnets.keys().map(String::as_str), "subnet"),
            }
            if !pool_ids.contains(&nat.elastic_ip.as_str()) {
                self.reference(&["network", "natGateways", id, "elasticIp"], &nat.elastic_ip, pool_ids.iter().copied(), "whitelist address");
            } else if let Some(other) = eip_users.insert(&nat.elastic_ip, id) {
                self.err(
                    &["network", "natGateways", id, "elasticIp"],
                    format!("whitelist address {:?} is already used by NAT gateway {other:?}", nat.elastic_ip),
                );
            }
        }

        let groups: Vec<&str> = n.security_groups.keys().map(String::as_str).collect();
        for (id, sg) in &n.security_groups {
            let egress = sg.egress.iter().flatten();
            for (direction, i, rule) in sg.ingress.iter().enumerate().map(|(i, r)| ("ingress", i, r)).chain(egress.enumerate().map(|(i, r)| ("egress", i, r))) {
                let index = i.to_string();
                let base = ["network", "securityGroups", id.as_str(), direction, index.as_str()];
                self.rule(&base, rule, &groups);
            }
        }
        for (id, e) in &n.endpoints {
            self.one_of(&["network", "endpoints", id, "service"], &e.service, &["dynamodb", "s3"]);
        }
        self.network_acls(n);
        self.route_tables(n);
        self.name_tags(n);
    }

    /// The `name`s the networking resources carry as their Name tag: 1 to
    /// 255 characters (a tag value's limit).
    fn name_tags(&mut self, n: &Network) {
        let mut names: Vec<(Vec<&str>, Option<&String>)> = vec![
            (vec!["network", "vpc", "internetGatewayName"], n.vpc.internet_gateway_name.as_ref()),
            (vec!["network", "vpc", "flowLogs", "name"], n.vpc.flow_logs.name.as_ref()),
        ];
        names.extend(n.subnets.iter().map(|(id, s)| (vec!["network", "subnets", id.as_str(), "name"], s.name.as_ref())));
        names.extend(n.nat_gateways.iter().map(|(id, g)| (vec!["network", "natGateways", id.as_str(), "name"], g.name.as_ref())));
        names.extend(n.whitelist.pool.iter().map(|(id, a)| (vec!["network", "whitelist", "pool", id.as_str(), "name"], a.name.as_ref())));
        names.extend(n.endpoints.iter().map(|(id, e)| (vec!["network", "endpoints", id.as_str(), "name"], e.name.as_ref())));
        names.extend(n.route_tables.iter().flatten().map(|(id, t)| (vec!["network", "routeTables", id.as_str(), "name"], t.name.as_ref())));
        for (at, name) in names {
            if let Some(name) = name.filter(|name| name.is_empty() || name.chars().count() > 255) {
                self.err(&at, format!("a name of {} characters; a Name tag holds 1 to 255", name.chars().count()));
            }
        }
    }

    /// Route tables: known subnets, each in one table; a default route to a
    /// known NAT gateway or to the internet gateway, not both; other routes
    /// to a valid CIDR through a target the operator can write.
    fn route_tables(&mut self, n: &Network) {
        let tables = n.route_tables.iter().flatten();
        self.subnets_in_one(n, ("routeTables", "route table"), tables.clone().map(|(id, t)| (id, &t.subnets)));
        for (id, table) in tables {
            let at = |field: &'static str| ["network", "routeTables", id.as_str(), field];
            match &table.nat_gateway {
                Some(_) if table.internet_gateway => self.err(&at("natGateway"), "a default route goes to a NAT gateway or to the internet gateway, not both"),
                Some(nat) if !n.nat_gateways.contains_key(nat) => {
                    self.reference(&at("natGateway"), nat, n.nat_gateways.keys().map(String::as_str), "NAT gateway")
                }
                _ => {}
            }
            for (destination, target) in &table.routes {
                let p = ["network", "routeTables", id.as_str(), "routes", destination.as_str()];
                match parse_cidr(destination) {
                    Err(message) => self.err(&p, message),
                    Ok(net) if net.prefix_len() == 0 => self.err(&p, "the default route is `natGateway` or `internetGateway`"),
                    Ok(_) if !ROUTE_TARGETS.iter().any(|prefix| target.starts_with(prefix)) => {
                        self.err(&p, format!("target {target:?} is none of {}", ROUTE_TARGETS.iter().map(|t| format!("{t}…")).collect::<Vec<_>>().join(", ")))
                    }
                    Ok(_) => {}
                }
            }
        }
    }

    /// The subnets of the entries of `section` (its key, and what one entry
    /// is called): each a subnet of the spec, each in one entry at most.
    fn subnets_in_one<'a>(&mut self, n: &Network, (section, what): (&str, &str), entries: impl Iterator<Item = (&'a String, &'a Vec<String>)>) {
        let mut taken: HashMap<&str, &str> = HashMap::new();
        for (id, subnets) in entries {
            for (i, subnet) in subnets.iter().enumerate() {
                let index = i.to_string();
                let p = ["network", section, id.as_str(), "subnets", index.as_str()];
                if !n.subnets.contains_key(subnet) {
                    self.reference(&p, subnet, n.subnets.keys().map(String::as_str), "subnet");
                } else if let Some(other) = taken.insert(subnet, id) {
                    let message = if other == id.as_str() {
                        format!("subnet {subnet:?} is listed twice")
                    } else {
                        format!("subnet {subnet:?} is already in {what} {other:?}; a subnet has one {what}")
                    };
                    self.err(&p, message);
                }
            }
        }
    }

    /// Network ACLs: known subnets, each in one ACL; rule numbers in range
    /// and unique per direction; valid protocols, ports, CIDRs and actions.
    fn network_acls(&mut self, n: &Network) {
        self.subnets_in_one(n, ("networkAcls", "network ACL"), n.network_acls.iter().map(|(id, a)| (id, &a.subnets)));
        for (id, acl) in &n.network_acls {
            for (direction, rules) in [("ingress", &acl.ingress), ("egress", &acl.egress)] {
                let mut numbers = BTreeSet::new();
                for (i, rule) in rules.iter().enumerate() {
                    let index = i.to_string();
                    let at = |field: &'static str| ["network", "networkAcls", id.as_str(), direction, index.as_str(), field];
                    self.range(&at("rule"), Some(rule.rule), 1, 32766);
                    if !numbers.insert(rule.rule) {
                        self.err(&at("rule"), format!("rule number {} is used twice in {direction}", rule.rule));
                    }
                    self.one_of(&at("protocol"), &rule.protocol, &["tcp", "udp", "all"]);
                    self.one_of(&at("action"), &rule.action, &["allow", "deny"]);
                    self.ports(&at("protocol"), &at("ports"), &rule.protocol, rule.ports.as_ref(), "1024-65535");
                    if rule.cidr != "vpc" {
                        if let Err(message) = parse_cidr(&rule.cidr) {
                            self.err(&at("cidr"), message);
                        }
                    }
                }
            }
        }
    }

    /// The ports of a security-group or ACL rule for `protocol`: required for
    /// tcp and udp, none for all, a valid port or range (`example` shows one).
    fn ports(&mut self, at_protocol: &[&str], at_ports: &[&str], protocol: &str, ports: Option<&Ports>, example: &str) {
        match (ports, protocol) {
            (None, "tcp" | "udp") => self.err(at_protocol, format!("a {protocol} rule needs `ports`")),
            (Some(_), "all") => self.err(at_ports, "a rule for all protocols covers all ports; remove `ports`"),
            (Some(Ports::One(0)), _) => self.err(at_ports, "port 0 is not a valid port"),
            (Some(Ports::Range(r)), _) if parse_port_range(r).is_none() => {
                self.err(at_ports, format!("{r:?} is not a port or a range like \"{example}\""));
            }
            _ => {}
        }
    }

    pub(super) fn rule(&mut self, base: &[&str; 5], rule: &Rule, groups: &[&str]) {
        let at = |field: &'static str| -> Vec<&str> {
            let mut p = base.to_vec();
            p.push(field);
            p
        };
        self.one_of(&at("protocol"), &rule.protocol, &["tcp", "udp", "icmp", "all"]);
        self.ports(&at("protocol"), &at("ports"), &rule.protocol, rule.ports.as_ref(), "8000-8010");
        match (&rule.cidr, &rule.source_group) {
            (Some(_), Some(_)) => self.err(&at("sourceGroup"), "set either `cidr` or `sourceGroup`, not both"),
            (None, None) => self.err(&at("protocol"), "a rule needs a peer: `cidr` or `sourceGroup`"),
            (Some(cidr), None) if cidr != "vpc" => {
                if let Err(message) = parse_cidr(cidr) {
                    self.err(&at("cidr"), message);
                }
            }
            (None, Some(group)) => self.reference(&at("sourceGroup"), group, groups.iter().copied(), "security group"),
            _ => {}
        }
    }
}

/// Parses a CIDR, insisting on the canonical form (`a.b.c.d/n`, no leading
/// zeros: `172.022.0.0/16` is octal to some tools, decimal to others) and on
/// a network address (no host bits).
pub fn parse_cidr(text: &str) -> Result<Ipv4Net, String> {
    let invalid = || format!("{text:?} is not a valid IPv4 CIDR");
    let (address, prefix) = text.split_once('/').ok_or_else(invalid)?;
    if leading_zero(text) {
        return Err(format!("{text:?} is not a valid IPv4 CIDR: a number has a leading zero"));
    }
    // std's parser refuses leading zeros and signs; ipnet's accepts them.
    let address: Ipv4Addr = address.parse().map_err(|_| invalid())?;
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let prefix: u8 = prefix.parse().map_err(|_| invalid())?;
    let net = Ipv4Net::new(address, prefix).map_err(|_| invalid())?;
    if net.trunc() != net {
        return Err(format!("{text:?} has host bits set; did you mean \"{}\"?", net.trunc()));
    }
    Ok(net)
}

/// Whether a dotted or slashed number in `text` has a leading zero (`022`, `/016`).
fn leading_zero(text: &str) -> bool {
    text.split(['.', '/']).any(|n| n.len() > 1 && n.starts_with('0') && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Checks a whitelist pin: a public IPv4 address in canonical form, or an
/// allocation id (`eipalloc-` and 8 or 17 lower-case hex digits).
pub fn check_pin(text: &str) -> Result<(), String> {
    const EXPECTED: &str = "a whitelist pin is a public IPv4 address or an allocation id (eipalloc-...)";
    if let Some(hex) = text.strip_prefix("eipalloc-") {
        if matches!(hex.len(), 8 | 17) && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Ok(());
        }
        return Err(format!("{text:?} is not an allocation id: `eipalloc-` is followed by 8 or 17 lower-case hex digits"));
    }
    let Ok(ip) = text.parse::<Ipv4Addr>() else {
        if leading_zero(text) && text.split('.').count() == 4 {
            return Err(format!("{text:?} is not a valid IPv4 address: a number has a leading zero"));
        }
        return Err(format!("{text:?} is neither a public IPv4 address nor an allocation id (eipalloc-...)"));
    };
    match non_public_range(ip) {
        Some((range, what)) => Err(format!("{text:?} is a {what} address ({range}); {EXPECTED}")),
        None => Ok(()),
    }
}

/// The IPv4 ranges an Elastic IP can never be in: (CIDR, what it is).
/// The documentation ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24)
/// are not listed: examples and tests pin them.
const NON_PUBLIC: &[(&str, &str)] = &[
    ("0.0.0.0/8", "\"this network\""),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "carrier-grade NAT (shared)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private"),
    ("192.168.0.0/16", "private"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),
];

/// The non-public range `ip` is in, if any.
fn non_public_range(ip: Ipv4Addr) -> Option<(&'static str, &'static str)> {
    NON_PUBLIC.iter().copied().find(|(range, _)| range.parse::<Ipv4Net>().is_ok_and(|net| net.contains(&ip)))
}

/// Parses `"from-to"` (or a single port as text).
pub fn parse_port_range(text: &str) -> Option<(u16, u16)> {
    let (from, to) = match text.split_once('-') {
        Some((a, b)) => (a.trim().parse().ok()?, b.trim().parse().ok()?),
        None => {
            let p = text.trim().parse().ok()?;
            (p, p)
        }
    };
    (from > 0 && from <= to).then_some((from, to))
}

//! Semantic validation of a parsed [`Spec`]: pure, and reporting every problem at once.
//!
//! Each problem names the spec path it is about; the loader turns paths into
//! `file:line:column` through the merged YAML tree.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::model::*;
use super::physical_name;

/// One semantic problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Spec path segments, e.g. `["network", "vpc", "cidr"]`.
    pub path: Vec<String>,
    /// What is wrong.
    pub message: String,
}

/// CloudWatch Logs accepts only these retention periods (days).
pub const LOG_RETENTION_DAYS: &[u32] = &[1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653];

/// Checks `spec` for environment `env`; returns every problem found.
pub fn validate(env: &str, spec: &Spec) -> Vec<Problem> {
    let mut c = Checker { problems: Vec::new() };
    let sg_ids: BTreeSet<&str> = spec.network.as_ref().map(|n| n.security_groups.keys().map(String::as_str).collect()).unwrap_or_default();
    if let Some(account) = &spec.account {
        if !account.role_arn.starts_with("arn:aws:iam::") || !account.role_arn.contains(":role/") {
            c.err(&["account", "roleArn"], format!("{:?} is not an IAM role ARN", account.role_arn));
        }
    }
    for key in spec.policies.keys() {
        let (resource, _field) = key.split_once('#').unwrap_or((key, ""));
        if !resource.split_once('/').is_some_and(|(kind, id)| !kind.is_empty() && !id.is_empty()) {
            c.err(&["policies", key], format!("{key:?} is not `kind/id`, `kind/*` or `kind/id#Field`"));
        }
    }
    if let Some(network) = &spec.network {
        c.network(network);
    }
    if let Some(messaging) = &spec.messaging {
        c.messaging(env, messaging);
    }
    if let Some(data) = &spec.data {
        c.data(env, data, &sg_ids, spec.network.is_some());
    }
    let log_groups: BTreeSet<&str> = spec.observability.as_ref().map(|o| o.log_groups.keys().map(String::as_str).collect()).unwrap_or_default();
    if let Some(compute) = &spec.compute {
        c.compute(compute, &sg_ids, &log_groups);
    }
    if let Some(identity) = &spec.identity {
        c.identity(&identity.user_pool);
    }
    if let Some(observability) = &spec.observability {
        c.observability(observability);
    }
    c.problems
}

struct Checker {
    problems: Vec<Problem>,
}

fn path(segments: &[&str]) -> Vec<String> {
    segments.iter().map(|s| s.to_string()).collect()
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

impl Checker {
    fn err(&mut self, segments: &[&str], message: impl Into<String>) {
        self.problems.push(Problem { path: path(segments), message: message.into() });
    }

    fn range(&mut self, segments: &[&str], value: Option<u32>, lo: u32, hi: u32) {
        if let Some(v) = value {
            if !(lo..=hi).contains(&v) {
                self.err(segments, format!("{v} is out of range {lo}..={hi}"));
            }
        }
    }

    fn one_of(&mut self, segments: &[&str], value: &str, allowed: &[&str]) {
        if !allowed.contains(&value) {
            self.err(segments, format!("{value:?} is not one of {}", allowed.join(", ")));
        }
    }

    fn reference<'a>(&mut self, segments: &[&str], target: &str, known: impl IntoIterator<Item = &'a str>, what: &str) {
        let known: Vec<&str> = known.into_iter().collect();
        if !known.contains(&target) {
            const SHOWN: usize = 8;
            let hint = match known.len() {
                0 => "none are defined".to_string(),
                n if n <= SHOWN => format!("known: {}", known.join(", ")),
                n => format!("known: {}, ... ({n} in all)", known[..SHOWN].join(", ")),
            };
            self.err(segments, format!("{what} {target:?} is not defined ({hint})"));
        }
    }

    /// Two resources of one kind must not share a physical name.
    fn unique_names<'a>(&mut self, section: &[&str], names: impl IntoIterator<Item = (&'a str, String)>) {
        let mut seen: HashMap<String, &str> = HashMap::new();
        for (id, name) in names {
            if let Some(first) = seen.get(&name) {
                let mut p: Vec<&str> = section.to_vec();
                p.push(id);
                self.err(&p, format!("physical name {name:?} is already used by {first:?}"));
            } else {
                seen.insert(name, id);
            }
        }
    }

    fn network(&mut self, n: &Network) {
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
        match &n.vpc.flow_logs.role_arn {
            None if n.vpc.flow_logs.enabled => {
                self.err(&["network", "vpc", "flowLogs"], "enabled flow logs need `roleArn` (the role that writes to CloudWatch Logs)")
            }
            Some(arn) if !arn.starts_with("arn:aws:iam::") => self.err(&["network", "vpc", "flowLogs", "roleArn"], format!("{arn:?} is not an IAM role ARN")),
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
    }

    fn rule(&mut self, base: &[&str; 5], rule: &Rule, groups: &[&str]) {
        let at = |field: &'static str| -> Vec<&str> {
            let mut p = base.to_vec();
            p.push(field);
            p
        };
        self.one_of(&at("protocol"), &rule.protocol, &["tcp", "udp", "icmp", "all"]);
        match (&rule.ports, rule.protocol.as_str()) {
            (None, "tcp" | "udp") => self.err(&at("protocol"), format!("a {} rule needs `ports`", rule.protocol)),
            (Some(_), "all") => self.err(&at("ports"), "a rule for all protocols covers all ports; remove `ports`"),
            (Some(Ports::One(0)), _) => self.err(&at("ports"), "port 0 is not a valid port"),
            (Some(Ports::Range(r)), _) if parse_port_range(r).is_none() => {
                self.err(&at("ports"), format!("{r:?} is not a port or a range like \"8000-8010\""));
            }
            _ => {}
        }
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

    fn queue_attributes(&mut self, base: &[&str], a: &QueueAttributes) {
        let at = |field: &'static str| -> Vec<&str> {
            let mut p = base.to_vec();
            p.push(field);
            p
        };
        self.range(&at("visibilityTimeoutSeconds"), a.visibility_timeout_seconds, 0, 43_200);
        self.range(&at("messageRetentionSeconds"), a.message_retention_seconds, 60, 1_209_600);
        self.range(&at("delaySeconds"), a.delay_seconds, 0, 900);
        self.range(&at("receiveWaitTimeSeconds"), a.receive_wait_time_seconds, 0, 20);
        self.range(&at("maxMessageSizeBytes"), a.max_message_size_bytes, 1024, 1_048_576);
    }

    fn messaging(&mut self, env: &str, m: &Messaging) {
        self.queue_attributes(&["messaging", "queueDefaults"], &m.queue_defaults);
        let mut names = Vec::new();
        for (id, q) in &m.queues {
            let base = ["messaging", "queues", id.as_str()];
            self.queue_attributes(&base, &q.attributes());
            let name = q.physical_name(id, env);
            let stem = name.strip_suffix(".fifo").unwrap_or(&name);
            let name_path = ["messaging", "queues", id.as_str(), "name"];
            if name.len() > 80 {
                self.err(&name_path, format!("queue name {name:?} is longer than 80 characters"));
            }
            if stem.is_empty() || !stem.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                self.err(&name_path, format!("queue name {name:?} may only hold letters, digits, '-' and '_' (plus a final .fifo)"));
            }
            match (q.fifo, name.ends_with(".fifo")) {
                (true, false) => self.err(&name_path, format!("FIFO queue name {name:?} must end in \".fifo\"")),
                (false, true) => self.err(&name_path, format!("queue name {name:?} ends in \".fifo\" but the queue is not `fifo: true`")),
                _ => {}
            }
            if q.content_based_deduplication.is_some() && !q.fifo {
                self.err(&["messaging", "queues", id, "contentBasedDeduplication"], "content-based deduplication applies only to FIFO queues");
            }
            if let Some(dl) = &q.dead_letter {
                let p = ["messaging", "queues", id.as_str(), "deadLetter"];
                if !(1..=1000).contains(&dl.max_receive_count) {
                    self.err(&["messaging", "queues", id, "deadLetter", "maxReceiveCount"], format!("{} is out of range 1..=1000", dl.max_receive_count));
                }
                match m.queues.get(&dl.queue) {
                    None => self.reference(&["messaging", "queues", id, "deadLetter", "queue"], &dl.queue, m.queues.keys().map(String::as_str), "queue"),
                    Some(_) if dl.queue == *id => self.err(&["messaging", "queues", id, "deadLetter", "queue"], "a queue cannot be its own dead-letter queue"),
                    Some(target) if target.fifo != q.fifo => {
                        let (a, b) = if q.fifo { ("FIFO", "standard") } else { ("standard", "FIFO") };
                        self.err(
                            &["messaging", "queues", id, "deadLetter", "queue"],
                            format!("the dead-letter queue of a {a} queue must be {a} too; {:?} is {b}", dl.queue),
                        );
                    }
                    Some(_) => {
                        if let Some(cycle) = redrive_cycle(m, id) {
                            self.err(&p, format!("dead-letter queues form a cycle: {}", cycle.join(" -> ")));
                        }
                    }
                }
            }
            names.push((id.as_str(), name));
        }
        self.unique_names(&["messaging", "queues"], names);
    }

    fn data(&mut self, env: &str, d: &Data, groups: &BTreeSet<&str>, has_network: bool) {
        let mut names = Vec::new();
        for (id, t) in &d.tables {
            self.one_of(&["data", "tables", id, "billingMode"], &t.billing_mode, &["PAY_PER_REQUEST", "PROVISIONED"]);
            for (attr, ty) in &t.attributes {
                self.one_of(&["data", "tables", id, "attributes", attr], ty, &["S", "N", "B"]);
            }
            let mut used: BTreeSet<&str> = BTreeSet::new();
            let defined = |c: &mut Checker, p: &[&str], attr: &str| {
                if !t.attributes.contains_key(attr) {
                    c.err(p, format!("key attribute {attr:?} is not defined in `attributes`"));
                }
            };
            defined(self, &["data", "tables", id, "key", "partition"], &t.key.partition);
            used.insert(&t.key.partition);
            if let Some(sort) = &t.key.sort {
                defined(self, &["data", "tables", id, "key", "sort"], sort);
                used.insert(sort);
            }
            if t.global_secondary_indexes.len() > 20 {
                self.err(&["data", "tables", id, "globalSecondaryIndexes"], "a table has at most 20 global secondary indexes");
            }
            for (index, g) in &t.global_secondary_indexes {
                let p = ["data", "tables", id.as_str(), "globalSecondaryIndexes", index.as_str()];
                defined(self, &[&p[..], &["key", "partition"]].concat(), &g.key.partition);
                used.insert(&g.key.partition);
                if let Some(sort) = &g.key.sort {
                    defined(self, &[&p[..], &["key", "sort"]].concat(), sort);
                    used.insert(sort);
                }
                self.one_of(&[&p[..], &["projection"]].concat(), &g.projection, &["ALL", "KEYS_ONLY", "INCLUDE"]);
                if (g.projection == "INCLUDE") == g.non_key_attributes.is_empty() {
                    self.err(&[&p[..], &["nonKeyAttributes"]].concat(), "`nonKeyAttributes` is required with projection INCLUDE and only allowed with it");
                }
            }
            for attr in t.attributes.keys() {
                if !used.contains(attr.as_str()) {
                    self.err(
                        &["data", "tables", id, "attributes", attr],
                        format!("attribute {attr:?} is not used by the table key or any index (DynamoDB rejects it)"),
                    );
                }
            }
            names.push((id.as_str(), physical_name(t.name.as_deref(), id, env)));
        }
        self.unique_names(&["data", "tables"], names);

        if let Some(r) = &d.redis {
            if !r.node_type.starts_with("cache.") {
                self.err(&["data", "redis", "nodeType"], format!("{:?} is not an ElastiCache node type (cache.*)", r.node_type));
            }
            self.range(&["data", "redis", "numCacheClusters"], Some(r.num_cache_clusters), 1, 6);
            if r.automatic_failover && r.num_cache_clusters < 2 {
                self.err(&["data", "redis", "automaticFailover"], "automatic failover needs at least 2 cache clusters");
            }
            if r.multi_az && !r.automatic_failover {
                self.err(&["data", "redis", "multiAz"], "multi-AZ needs automatic failover");
            }
            self.range(&["data", "redis", "snapshotRetentionDays"], Some(r.snapshot_retention_days), 0, 35);
            if !has_network {
                self.err(&["data", "redis"], "Redis needs the `network` section (subnets and security groups)");
            }
            for (i, g) in r.security_groups.iter().enumerate() {
                self.reference(&["data", "redis", "securityGroups", &i.to_string()], g, groups.iter().copied(), "security group");
            }
        }
    }

    fn compute(&mut self, c: &Compute, groups: &BTreeSet<&str>, log_groups: &BTreeSet<&str>) {
        for (id, cluster) in &c.clusters {
            if !(cluster.min_size <= cluster.desired_capacity && cluster.desired_capacity <= cluster.max_size) {
                self.err(
                    &["compute", "clusters", id, "desiredCapacity"],
                    format!("need minSize <= desiredCapacity <= maxSize; got {} <= {} <= {}", cluster.min_size, cluster.desired_capacity, cluster.max_size),
                );
            }
        }
        for (id, td) in &c.task_definitions {
            self.reference(&["compute", "taskDefinitions", id, "logGroup"], &td.log_group, log_groups.iter().copied(), "log group");
            self.one_of(&["compute", "taskDefinitions", id, "cpuArchitecture"], &td.cpu_architecture, &["ARM64", "X86_64"]);
            if td.cpu == 0 || td.memory == 0 {
                self.err(&["compute", "taskDefinitions", id, "cpu"], "cpu and memory must be positive");
            }
            match &td.execution_role_arn {
                None if !td.secrets.is_empty() => {
                    self.err(&["compute", "taskDefinitions", id, "secrets"], "secrets need `executionRoleArn` (the role that reads them)")
                }
                Some(arn) if !arn.starts_with("arn:aws:iam::") => {
                    self.err(&["compute", "taskDefinitions", id, "executionRoleArn"], format!("{arn:?} is not an IAM role ARN"))
                }
                _ => {}
            }
            for (var, arn) in &td.secrets {
                if !(arn.starts_with("arn:aws:secretsmanager:") || arn.starts_with("arn:aws:ssm:")) {
                    self.err(&["compute", "taskDefinitions", id, "secrets", var], "a secret is a Secrets Manager or SSM parameter ARN (valueFrom)");
                }
            }
        }
        for (id, s) in &c.services {
            self.reference(&["compute", "services", id, "cluster"], &s.cluster, c.clusters.keys().map(String::as_str), "cluster");
            self.reference(
                &["compute", "services", id, "taskDefinition"],
                &s.task_definition,
                c.task_definitions.keys().map(String::as_str),
                "task definition",
            );
            for (i, g) in s.security_groups.iter().enumerate() {
                self.reference(&["compute", "services", id, "securityGroups", &i.to_string()], g, groups.iter().copied(), "security group");
            }
            self.range(&["compute", "services", id, "minHealthyPercent"], Some(s.min_healthy_percent), 0, 100);
            self.range(&["compute", "services", id, "maxPercent"], Some(s.max_percent), 100, 200);
        }
    }

    fn identity(&mut self, p: &UserPool) {
        self.one_of(&["identity", "userPool", "mfa"], &p.mfa, &["ON", "OPTIONAL", "OFF"]);
        self.range(&["identity", "userPool", "passwordPolicy", "minimumLength"], Some(p.password_policy.minimum_length), 6, 99);
        const FLOWS: &[&str] = &[
            "ALLOW_USER_SRP_AUTH",
            "ALLOW_REFRESH_TOKEN_AUTH",
            "ALLOW_USER_PASSWORD_AUTH",
            "ALLOW_ADMIN_USER_PASSWORD_AUTH",
            "ALLOW_CUSTOM_AUTH",
            "ALLOW_USER_AUTH",
        ];
        for (id, client) in &p.app_clients {
            for (i, flow) in client.auth_flows.iter().enumerate() {
                self.one_of(&["identity", "userPool", "appClients", id, "authFlows", &i.to_string()], flow, FLOWS);
            }
        }
    }

    fn observability(&mut self, o: &Observability) {
        let allowed = |c: &mut Checker, p: &[&str], days: u32| {
            if !LOG_RETENTION_DAYS.contains(&days) {
                c.err(p, format!("{days} is not a CloudWatch Logs retention period (1, 3, 5, 7, 14, 30, 60, 90, ... days)"));
            }
        };
        allowed(self, &["observability", "logRetentionDays"], o.log_retention_days);
        for (id, g) in &o.log_groups {
            if let Some(days) = g.retention_days {
                allowed(self, &["observability", "logGroups", id, "retentionDays"], days);
            }
        }
    }
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

/// The redrive chain starting at `start`, if it loops back.
fn redrive_cycle(m: &Messaging, start: &str) -> Option<Vec<String>> {
    let mut chain = vec![start.to_string()];
    let mut current = start;
    while let Some(next) = m.queues.get(current).and_then(|q| q.dead_letter.as_ref()).map(|d| d.queue.as_str()) {
        if !m.queues.contains_key(next) {
            return None;
        }
        chain.push(next.to_string());
        if next == start {
            return Some(chain);
        }
        if chain.len() > m.queues.len() + 1 {
            return None;
        }
        current = next;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(fifo: bool, dlq: Option<&str>) -> Queue {
        Queue { fifo, dead_letter: dlq.map(|q| DeadLetter { queue: q.into(), max_receive_count: 5 }), ..Queue::default() }
    }

    fn spec_with_queues(queues: Vec<(&str, Queue)>) -> Spec {
        Spec {
            messaging: Some(Messaging { queue_defaults: QueueAttributes::default(), queues: queues.into_iter().map(|(k, v)| (k.to_string(), v)).collect() }),
            ..Spec::default()
        }
    }

    #[test]
    fn fifo_queue_needs_fifo_dlq() {
        let spec = spec_with_queues(vec![("a", queue(true, Some("b"))), ("b", queue(false, None))]);
        let problems = validate("dev", &spec);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].path, path(&["messaging", "queues", "a", "deadLetter", "queue"]));
        assert!(problems[0].message.contains("must be FIFO too"));
    }

    #[test]
    fn explicit_fifo_name_must_end_in_fifo() {
        let mut q = queue(true, None);
        q.name = Some("orders-${env}".into());
        let problems = validate("dev", &spec_with_queues(vec![("a", q)]));
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].message, "FIFO queue name \"orders-dev\" must end in \".fifo\"");
    }

    #[test]
    fn redrive_cycles_are_rejected() {
        let spec = spec_with_queues(vec![("a", queue(false, Some("b"))), ("b", queue(false, Some("a")))]);
        let problems = validate("dev", &spec);
        assert!(problems.iter().any(|p| p.message.contains("cycle: a -> b -> a")), "{problems:?}");
    }

    #[test]
    fn every_problem_is_reported() {
        let mut bad = queue(false, Some("missing"));
        bad.visibility_timeout_seconds = Some(50_000);
        bad.delay_seconds = Some(901);
        let problems = validate("dev", &spec_with_queues(vec![("a", bad)]));
        assert_eq!(problems.len(), 3, "{problems:?}");
    }

    #[test]
    fn cidrs_are_strict() {
        assert!(parse_cidr("10.0.0.0/16").is_ok());
        assert_eq!(parse_cidr("10.0.0.0/33").unwrap_err(), "\"10.0.0.0/33\" is not a valid IPv4 CIDR");
        assert!(parse_cidr("10.0.0.1/16").unwrap_err().contains("host bits"));
    }

    #[test]
    fn cidrs_refuse_leading_zeros_and_non_canonical_prefixes() {
        for text in ["172.022.0.0/16", "010.0.0.0/8", "172.22.0.00/24", "172.22.0.0/016", "10.0.0.0/00"] {
            assert_eq!(parse_cidr(text).unwrap_err(), format!("{text:?} is not a valid IPv4 CIDR: a number has a leading zero"));
        }
        for text in ["10.0.0.0/+8", "10.0.0.0/ 8", "10.0.0.0 /8", "10.0.0.0/", "/8", "10.0.0.0", "10.0.0/8", "10.0.0.0/8/8", "-10.0.0.0/8"] {
            assert_eq!(parse_cidr(text).unwrap_err(), format!("{text:?} is not a valid IPv4 CIDR"));
        }
        assert_eq!(parse_cidr("0.0.0.0/0").map(|n| n.to_string()), Ok("0.0.0.0/0".to_string()));
        assert_eq!(parse_cidr("172.22.10.0/24").map(|n| n.to_string()), Ok("172.22.10.0/24".to_string()));
        assert_eq!(parse_cidr("100.0.0.0/8").map(|n| n.to_string()), Ok("100.0.0.0/8".to_string()));
    }

    #[test]
    fn whitelist_pins_are_public_addresses_or_allocation_ids() {
        // The documentation ranges are accepted: tests and examples pin them.
        for pin in [
            "54.12.7.100",
            "203.0.113.10",
            "198.51.100.7",
            "192.0.2.1",
            "1.1.1.1",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.167.255.255",
            "192.169.0.0",
            "223.255.255.255",
            "eipalloc-0123456789abcdef0",
            "eipalloc-1a2b3c4d",
        ] {
            assert_eq!(check_pin(pin), Ok(()), "{pin}");
        }
        for (pin, what) in [
            ("10.0.0.1", "a private address (10.0.0.0/8)"),
            ("172.16.0.1", "a private address (172.16.0.0/12)"),
            ("172.31.255.255", "a private address (172.16.0.0/12)"),
            ("192.168.1.1", "a private address (192.168.0.0/16)"),
            ("127.0.0.1", "a loopback address (127.0.0.0/8)"),
            ("169.254.169.254", "a link-local address (169.254.0.0/16)"),
            ("100.64.0.1", "a carrier-grade NAT (shared) address (100.64.0.0/10)"),
            ("100.127.255.255", "a carrier-grade NAT (shared) address (100.64.0.0/10)"),
            ("224.0.0.1", "a multicast address (224.0.0.0/4)"),
            ("239.255.255.255", "a multicast address (224.0.0.0/4)"),
            ("240.0.0.1", "a reserved address (240.0.0.0/4)"),
            ("255.255.255.255", "a reserved address (240.0.0.0/4)"),
            ("0.0.0.0", "a \"this network\" address (0.0.0.0/8)"),
        ] {
            assert_eq!(check_pin(pin), Err(format!("{pin:?} is {what}; a whitelist pin is a public IPv4 address or an allocation id (eipalloc-...)")), "{pin}");
        }
        assert_eq!(check_pin("54.012.7.100"), Err("\"54.012.7.100\" is not a valid IPv4 address: a number has a leading zero".to_string()));
        for pin in ["eipalloc-", "eipalloc-xyz12345", "eipalloc-0123456789ABCDEF0", "eipalloc-0123456789abcdef", "eipalloc-0123456789abcdef0 "] {
            assert_eq!(check_pin(pin), Err(format!("{pin:?} is not an allocation id: `eipalloc-` is followed by 8 or 17 lower-case hex digits")), "{pin}");
        }
        for pin in ["300.1.2.3", "54.12.7", "eipalloc", " 54.12.7.100", "::1"] {
            assert_eq!(check_pin(pin), Err(format!("{pin:?} is neither a public IPv4 address nor an allocation id (eipalloc-...)")), "{pin}");
        }
    }

    /// `network` parsed from YAML, as the loader would.
    fn network(text: &str) -> Network {
        let tree = crate::spec::yaml::parse("t.yaml", text).expect("yaml");
        crate::spec::de::from_node(&tree).expect("network")
    }

    #[test]
    fn private_pins_and_zero_padded_cidrs_are_problems_at_their_paths() {
        let n = network(
            "vpc: { cidr: 172.022.0.0/16 }\n\
             availabilityZones: [a]\n\
             subnets:\n  pub: { tier: public, az: a, cidr: 172.22.0.0/24 }\n  priv: { tier: private, az: a, cidr: 172.22.1.0/24 }\n\
             whitelist:\n  pool:\n    w1: { address: 10.0.0.1 }\n    w2: { address: 203.0.113.9 }\n    w3: { address: eipalloc-0123456789abcdef0 }\n\
             securityGroups:\n  g:\n    description: d\n    ingress: [{ protocol: tcp, ports: 443, cidr: 010.0.0.0/8 }]\n",
        );
        let spec = Spec { network: Some(n), ..Spec::default() };
        let problems: Vec<(String, String)> = validate("dev", &spec).into_iter().map(|p| (p.path.join("."), p.message)).collect();
        assert_eq!(
            problems,
            vec![
                ("network.vpc.cidr".to_string(), "\"172.022.0.0/16\" is not a valid IPv4 CIDR: a number has a leading zero".to_string()),
                (
                    "network.whitelist.pool.w1.address".to_string(),
                    "\"10.0.0.1\" is a private address (10.0.0.0/8); a whitelist pin is a public IPv4 address or an allocation id (eipalloc-...)".to_string()
                ),
                ("network.securityGroups.g.ingress.0.cidr".to_string(), "\"010.0.0.0/8\" is not a valid IPv4 CIDR: a number has a leading zero".to_string()),
            ]
        );
    }

    #[test]
    fn port_ranges() {
        assert_eq!(parse_port_range("8000-8010"), Some((8000, 8010)));
        assert_eq!(parse_port_range("443"), Some((443, 443)));
        assert_eq!(parse_port_range("10-1"), None);
        assert_eq!(parse_port_range("x"), None);
    }
}

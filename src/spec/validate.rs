//! Semantic validation of a parsed [`Spec`]: pure, and reporting every problem at once.
//!
//! Each problem names the spec path it is about; the loader turns paths into
//! `file:line:column` through the merged YAML tree.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::model::*;

/// One semantic problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Spec path segments, e.g. `["network", "vpc", "cidr"]`.
    pub path: Vec<String>,
    /// What is wrong.
    pub message: String,
}

/// Checks `spec` for environment `env`; returns every problem found.
pub fn validate(env: &str, spec: &Spec) -> Vec<Problem> {
    let mut c = Checker { problems: Vec::new() };
    let sg_ids: BTreeSet<&str> = spec.network.as_ref().map(|n| n.security_groups.keys().map(String::as_str).collect()).unwrap_or_default();
    if let Some(account) = &spec.account {
        if !account.role_arn.starts_with("arn:aws:iam::") || !account.role_arn.contains(":role/") {
            c.err(&["account", "roleArn"], format!("{:?} is not an IAM role ARN", account.role_arn));
        }
    }
    if let Some(table) = &spec.lease_table {
        // A name, or an ARN (checked here against its own region; against the operator's at run time).
        let region = table.split(':').nth(3).unwrap_or_default();
        if let Err(e) = super::lease_table::table_name(table, region) {
            c.err(&["leaseTable"], e.to_string());
        }
    }
    for key in spec.policies.keys() {
        let (resource, _field) = key.split_once('#').unwrap_or((key, ""));
        if !resource.split_once('/').is_some_and(|(kind, id)| !kind.is_empty() && !id.is_empty()) {
            c.err(&["policies", key], format!("{key:?} is not `kind/id`, `kind/*` or `kind/id#Field`"));
        }
    }
    for (key, target) in &spec.adopt {
        for (field, message) in super::adopt::check(key, target) {
            match field {
                Some(field) => c.err(&["adopt", key, field], message),
                None => c.err(&["adopt", key], message),
            }
        }
    }
    for key in spec.tags.keys().filter(|k| is_reserved_tag(k)) {
        c.err(&["tags", key], format!("{key:?}: tags beginning with aws: are reserved by AWS"));
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
        let repositories: BTreeSet<&str> = spec.images.iter().flat_map(|i| i.repositories.keys().map(String::as_str)).collect();
        let no_secrets = BTreeMap::new();
        let secrets = spec.security.as_ref().map_or(&no_secrets, |s| &s.secrets);
        c.compute(compute, &sg_ids, &log_groups, spec.iam.as_ref(), &repositories, secrets);
    }
    c.iam(env, spec);
    if let Some(role) = spec.network.as_ref().and_then(|n| n.vpc.flow_logs.role.as_ref()) {
        c.role_reference(&["network", "vpc", "flowLogs", "role"], role, spec.iam.as_ref(), FLOW_LOGS, false);
    }
    if let Some(identity) = &spec.identity {
        c.identity(&identity.user_pool);
    }
    if let Some(observability) = &spec.observability {
        c.observability(observability);
        c.alarm_references(spec, observability);
    }
    if let Some(images) = &spec.images {
        c.images(env, images);
    }
    if let Some(security) = &spec.security {
        c.security(env, security);
    }
    c.load_balancing(env, spec);
    let keys: BTreeSet<&str> = spec.security.iter().flat_map(|s| s.keys.keys().map(String::as_str)).collect();
    for (id, table) in spec.data.iter().flat_map(|d| &d.tables) {
        if let Some(key) = table.kms_key.as_deref().filter(|k| !k.starts_with("arn:")) {
            c.reference(&["data", "tables", id, "kmsKey"], key, keys.iter().copied(), "KMS key");
            if !table.kms_encryption {
                c.err(&["data", "tables", id, "kmsKey"], "a key needs `kmsEncryption: true`");
            }
        }
    }
    c.problems
}

/// Whether a tag key is reserved by AWS (`aws:…`, e.g. CloudFormation's
/// `aws:cloudformation:stack-name`): nobody may set or change it.
pub fn is_reserved_tag(key: &str) -> bool {
    key.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("aws:"))
}

/// Collects the problems of one spec; each section adds its checks in its own module.
pub(super) struct Checker {
    problems: Vec<Problem>,
}

fn path(segments: &[&str]) -> Vec<String> {
    segments.iter().map(|s| s.to_string()).collect()
}

impl Checker {
    pub(super) fn err(&mut self, segments: &[&str], message: impl Into<String>) {
        self.problems.push(Problem { path: path(segments), message: message.into() });
    }

    pub(super) fn range(&mut self, segments: &[&str], value: Option<u32>, lo: u32, hi: u32) {
        if let Some(v) = value {
            if !(lo..=hi).contains(&v) {
                self.err(segments, format!("{v} is out of range {lo}..={hi}"));
            }
        }
    }

    pub(super) fn one_of(&mut self, segments: &[&str], value: &str, allowed: &[&str]) {
        if !allowed.contains(&value) {
            self.err(segments, format!("{value:?} is not one of {}", allowed.join(", ")));
        }
    }

    pub(super) fn reference<'a>(&mut self, segments: &[&str], target: &str, known: impl IntoIterator<Item = &'a str>, what: &str) {
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

    /// A resource's tags (at `segments`): none may be reserved by AWS.
    pub(super) fn tags(&mut self, segments: &[&str], tags: &Tags) {
        for key in tags.keys().filter(|k| is_reserved_tag(k)) {
            let mut p: Vec<&str> = segments.to_vec();
            p.extend(["tags", key.as_str()]);
            self.err(&p, format!("{key:?}: tags beginning with aws: are reserved by AWS"));
        }
    }

    /// Two resources of one kind must not share a physical name.
    pub(super) fn unique_names<'a>(&mut self, section: &[&str], names: impl IntoIterator<Item = (&'a str, String)>) {
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
    fn the_operators_own_ids_are_reserved() {
        // With a name of its own, such a queue would be valid but for its id.
        let named = Queue { name: Some("sentry-events-dev".into()), ..queue(false, None) };
        let problems = validate("dev", &spec_with_queues(vec![("operator.events", named)]));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].path.join("."), "messaging.queues.operator.events");
        assert!(problems[0].message.contains("the operator's own"), "{}", problems[0].message);
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

//! The `loadBalancing` section: Application Load Balancers in front of the
//! gateway services, their target groups, listeners and routes; their types
//! and their checks (the services' `loadBalancer` entries are checked here
//! too, against the target groups).

use std::collections::{BTreeMap, BTreeSet};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::model::*;
use super::physical_name;
use super::validate::Checker;

/// The TLS policy of an HTTPS listener that names none: TLS 1.3 and 1.2 only.
pub const DEFAULT_SSL_POLICY: &str = "ELBSecurityPolicy-TLS13-1-2-2021-06";

/// Application Load Balancers and their target groups.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct LoadBalancing {
    /// Target groups by logical id (ECS services register their tasks in them).
    pub target_groups: BTreeMap<String, TargetGroup>,
    /// Load balancers by logical id.
    pub load_balancers: BTreeMap<String, LoadBalancer>,
}

/// A target group of `ip` targets (the services' awsvpc tasks) or of
/// `instance` targets (an Auto Scaling fleet's). Its port, protocol, target
/// type and VPC are fixed at creation: a change is BLOCKED (a target group
/// in use by a listener or a service cannot be deleted).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TargetGroup {
    /// Physical name; default `sentry-<id>-<env>` (at most 32 letters, digits and hyphens).
    pub name: Option<String>,
    /// The port targets receive traffic on (1..=65535).
    pub port: u32,
    /// `HTTP` (default) or `HTTPS`.
    #[serde(default = "http")]
    pub protocol: String,
    /// `ip` (default: awsvpc tasks) or `instance`.
    #[serde(default = "ip")]
    pub target_type: String,
    /// The health check.
    #[serde(default)]
    pub health_check: TargetHealthCheck,
    /// Sticky sessions (a load-balancer cookie).
    #[serde(default)]
    pub stickiness: Stickiness,
    /// Seconds a deregistered target keeps its connections (0..=3600).
    #[serde(default = "three_hundred")]
    pub deregistration_delay_seconds: u32,
    /// Extra tags.
    #[serde(default)]
    pub tags: Tags,
    /// What happens once removed from the spec.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

impl TargetGroup {
    /// The target group's name for logical id `id` in environment `env`.
    pub fn physical_name(&self, id: &str, env: &str) -> String {
        physical_name(self.name.as_deref(), id, env)
    }
}

/// A target group's HTTP health check.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct TargetHealthCheck {
    /// The path requested (begins with `/`).
    pub path: String,
    /// Seconds between checks (5..=300).
    pub interval_seconds: u32,
    /// Seconds without a reply that fail a check (2..=120, below the interval).
    pub timeout_seconds: u32,
    /// Consecutive successes that make a target healthy (2..=10).
    pub healthy_threshold: u32,
    /// Consecutive failures that make a target unhealthy (2..=10).
    pub unhealthy_threshold: u32,
    /// The HTTP codes of a success: `200`, `200-399`, `200,302`.
    pub matcher: String,
}

impl Default for TargetHealthCheck {
    /// AWS's defaults for an HTTP target group.
    fn default() -> Self {
        TargetHealthCheck { path: "/".into(), interval_seconds: 30, timeout_seconds: 5, healthy_threshold: 5, unhealthy_threshold: 2, matcher: "200".into() }
    }
}

/// Load-balancer-cookie stickiness.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct Stickiness {
    /// Whether a client sticks to one target.
    pub enabled: bool,
    /// How long the cookie lasts, in seconds (1..=604800).
    pub duration_seconds: u32,
}

impl Default for Stickiness {
    /// Off, with AWS's one-day cookie.
    fn default() -> Self {
        Stickiness { enabled: false, duration_seconds: 86_400 }
    }
}

/// An internet-facing, IPv4 Application Load Balancer. Removed from the spec
/// it is retained unless `deletionPolicy: delete` was applied first (its DNS
/// name is what records point at); an opted-in delete switches deletion
/// protection off first.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LoadBalancer {
    /// Physical name; default `sentry-<id>-<env>` (at most 32 letters, digits and hyphens).
    pub name: Option<String>,
    /// Public subnets (logical ids), at least two, in distinct availability zones.
    pub subnets: Vec<String>,
    /// Security groups (logical ids).
    #[serde(default)]
    pub security_groups: Vec<String>,
    /// Deletion protection (on in prod).
    #[serde(default)]
    pub deletion_protection: bool,
    /// Seconds an idle connection is kept open (1..=4000).
    #[serde(default = "sixty")]
    pub idle_timeout_seconds: u32,
    /// Access logs to S3; off when absent.
    pub access_logs: Option<AccessLogs>,
    /// The target group a request no route matches goes to (a target group's logical id).
    pub default_target_group: String,
    /// Path and host routing (listener rules) by logical id.
    #[serde(default)]
    pub routes: BTreeMap<String, Route>,
    /// Listeners by logical id: HTTPS when `certificateArn` is set, else HTTP.
    pub listeners: BTreeMap<String, Listener>,
    /// Extra tags.
    #[serde(default)]
    pub tags: Tags,
    /// What happens once removed from the spec.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// Where a load balancer writes its access logs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AccessLogs {
    /// The S3 bucket (its policy must let the region's load balancers write).
    pub bucket: String,
    /// The key prefix, if any.
    pub prefix: Option<String>,
}

/// A listener rule: requests matching the paths and hosts go to a target group.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Route {
    /// Evaluation order, lowest first (1..=50000, unique per load balancer).
    pub priority: u32,
    /// Path patterns (`/ws`, `/ws/*`); any of them matches.
    #[serde(default)]
    pub paths: Vec<String>,
    /// Host headers (`admin.example.com`); any of them matches.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// The target group matching requests go to (logical id).
    pub target_group: String,
}

/// A listener.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Listener {
    /// The port (1..=65535).
    pub port: u32,
    /// The ACM (or IAM) certificate of an HTTPS listener; may use `${region}` and `${account}`.
    pub certificate_arn: Option<String>,
    /// An HTTPS listener's TLS policy; default `ELBSecurityPolicy-TLS13-1-2-2021-06`.
    pub ssl_policy: Option<String>,
}

impl Listener {
    /// Whether the listener terminates TLS (it has a certificate).
    pub fn is_https(&self) -> bool {
        self.certificate_arn.is_some()
    }

    /// `HTTPS` or `HTTP`.
    pub fn protocol(&self) -> &'static str {
        if self.is_https() {
            "HTTPS"
        } else {
            "HTTP"
        }
    }

    /// The TLS policy of an HTTPS listener (none for HTTP).
    pub fn tls_policy(&self) -> Option<&str> {
        self.is_https().then(|| self.ssl_policy.as_deref().unwrap_or(DEFAULT_SSL_POLICY))
    }
}

/// What a listener does with a request no route matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultAction<'a> {
    /// Forward it to this target group (logical id).
    Forward(&'a str),
    /// Answer 301, to HTTPS on this port.
    RedirectToHttps(u32),
}

impl LoadBalancer {
    /// The load balancer's name for logical id `id` in environment `env`.
    pub fn physical_name(&self, id: &str, env: &str) -> String {
        physical_name(self.name.as_deref(), id, env)
    }

    /// The port HTTP listeners redirect to: 443 when an HTTPS listener has
    /// it, else the lowest HTTPS port; `None` without an HTTPS listener.
    pub fn https_port(&self) -> Option<u32> {
        let mut ports: Vec<u32> = self.listeners.values().filter(|l| l.is_https()).map(|l| l.port).collect();
        ports.sort_unstable();
        ports.iter().copied().find(|p| *p == 443).or_else(|| ports.first().copied())
    }

    /// What listener `listener` does with unrouted requests: with an HTTPS
    /// listener on the load balancer, every HTTP listener redirects to it;
    /// otherwise (and on HTTPS listeners) they go to the default target group.
    pub fn default_action(&self, listener: &Listener) -> DefaultAction<'_> {
        match self.https_port() {
            Some(port) if !listener.is_https() => DefaultAction::RedirectToHttps(port),
            _ => DefaultAction::Forward(&self.default_target_group),
        }
    }

    /// The listeners (logical ids) the routes are rules of: the HTTPS ones
    /// when there are any (the HTTP ones only redirect), else every listener.
    pub fn route_listeners(&self) -> Vec<&str> {
        let https = self.https_port().is_some();
        self.listeners.iter().filter(|(_, l)| !https || l.is_https()).map(|(id, _)| id.as_str()).collect()
    }

    /// The target groups requests reach through this load balancer.
    pub fn target_groups(&self) -> BTreeSet<&str> {
        let routed = self.routes.values().map(|r| r.target_group.as_str());
        let defaults = self.listeners.values().filter_map(|l| match self.default_action(l) {
            DefaultAction::Forward(tg) => Some(tg),
            DefaultAction::RedirectToHttps(_) => None,
        });
        routed.chain(defaults).collect()
    }
}

/// The target group an ECS service registers its tasks in.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceLoadBalancer {
    /// The target group (logical id in `loadBalancing.targetGroups`).
    pub target_group: String,
    /// The container traffic goes to: the task definition's one container,
    /// named by the task definition's logical id (the default).
    pub container: Option<String>,
    /// The container port traffic goes to (one of the task definition's `ports`).
    pub port: u32,
}

/// A target group's default protocol.
fn http() -> String {
    "HTTP".into()
}

/// A target group's default target type (awsvpc tasks).
fn ip() -> String {
    "ip".into()
}

fn sixty() -> u32 {
    60
}

fn three_hundred() -> u32 {
    300
}

/// Whether `name` is a load balancer or target group name: 1 to 32 ASCII
/// letters, digits and hyphens, not beginning or ending with a hyphen.
fn is_elb_name(name: &str) -> bool {
    (1..=32).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') && !name.starts_with('-') && !name.ends_with('-')
}

/// Whether `matcher` is a list of HTTP success codes: `200`, `200-399`,
/// `200,302` (each code within 200..=499, ranges ascending).
pub fn is_http_matcher(matcher: &str) -> bool {
    let code = |s: &str| s.len() == 3 && s.chars().all(|c| c.is_ascii_digit()) && s.parse::<u16>().is_ok_and(|n| (200..=499).contains(&n));
    !matcher.is_empty()
        && matcher.split(',').all(|item| match item.split_once('-') {
            Some((lo, hi)) => code(lo) && code(hi) && lo <= hi,
            None => code(item),
        })
}

/// Whether `pattern` is a path pattern a listener rule accepts: up to 128
/// characters of a URL path (plus `*` and `?` wildcards), beginning with `/`.
fn is_path_pattern(pattern: &str) -> bool {
    pattern.starts_with('/') && pattern.len() <= 128 && pattern.chars().all(|c| c.is_ascii_alphanumeric() || "_-.$/~\"'@:+&*?".contains(c))
}

/// Whether `host` is a host-header pattern: up to 128 letters, digits, `-`, `.` and wildcards.
fn is_host_pattern(host: &str) -> bool {
    !host.is_empty() && host.len() <= 128 && host.chars().all(|c| c.is_ascii_alphanumeric() || "-.*?".contains(c))
}

/// Whether `bucket` is an S3 bucket name: 3 to 63 lower-case letters, digits,
/// dots and hyphens, beginning and ending with a letter or digit.
fn is_bucket_name(bucket: &str) -> bool {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    (3..=63).contains(&bucket.len())
        && bucket.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
        && edge(bucket.chars().next())
        && edge(bucket.chars().last())
}

impl Checker {
    /// The `loadBalancing` section, and every service's `loadBalancer` entry
    /// (checked even when the section is missing: its target group cannot exist then).
    pub(super) fn load_balancing(&mut self, env: &str, spec: &Spec) {
        let empty = LoadBalancing::default();
        let lb = spec.load_balancing.as_ref().unwrap_or(&empty);
        for (id, tg) in &lb.target_groups {
            self.target_group(env, id, tg);
        }
        self.unique_names(&["loadBalancing", "targetGroups"], lb.target_groups.iter().map(|(id, tg)| (id.as_str(), tg.physical_name(id, env))));
        // A target group can belong to one load balancer only (an ALB quota).
        let mut users: BTreeMap<&str, &str> = BTreeMap::new();
        for (id, balancer) in &lb.load_balancers {
            self.load_balancer(env, id, balancer, lb, spec.network.as_ref());
            for tg in balancer.target_groups() {
                match users.get(tg) {
                    Some(first) if lb.target_groups.contains_key(tg) => self.err(
                        &["loadBalancing", "loadBalancers", id],
                        format!("target group {tg:?} is already used by load balancer {first:?}; a target group belongs to one load balancer"),
                    ),
                    _ => {
                        users.insert(tg, id);
                    }
                }
            }
        }
        self.unique_names(&["loadBalancing", "loadBalancers"], lb.load_balancers.iter().map(|(id, b)| (id.as_str(), b.physical_name(id, env))));
        if let Some(compute) = &spec.compute {
            for (id, service) in &compute.services {
                let Some(s) = &service.load_balancer else { continue };
                let at = |field: &'static str| ["compute", "services", id.as_str(), "loadBalancer", field];
                self.reference(&at("targetGroup"), &s.target_group, lb.target_groups.keys().map(String::as_str), "target group");
                if lb.target_groups.contains_key(&s.target_group) && !users.contains_key(s.target_group.as_str()) {
                    let message = format!(
                        "target group {:?} is not used by any load balancer; ECS registers tasks only in a target group a load balancer forwards to",
                        s.target_group
                    );
                    self.err(&at("targetGroup"), message);
                }
                if s.container.as_deref().is_some_and(|c| c != service.task_definition) {
                    let message = format!("the task definition {:?} has one container, named {:?}", service.task_definition, service.task_definition);
                    self.err(&at("container"), message);
                }
                if let Some(td) = compute.task_definitions.get(&service.task_definition) {
                    if !td.ports.iter().any(|p| u32::from(*p) == s.port) {
                        let ports: Vec<String> = td.ports.iter().map(u16::to_string).collect();
                        let message = format!("{} is not a port of task definition {:?} (its ports: {})", s.port, service.task_definition, ports.join(", "));
                        self.err(&at("port"), message);
                    }
                }
            }
        }
    }

    fn target_group(&mut self, env: &str, id: &str, tg: &TargetGroup) {
        let at = |field: &'static str| ["loadBalancing", "targetGroups", id, field];
        self.tags(&["loadBalancing", "targetGroups", id], &tg.tags);
        let name = tg.physical_name(id, env);
        if !is_elb_name(&name) {
            self.err(
                &at("name"),
                format!("{name:?} is not a target group name (at most 32 letters, digits and hyphens, not beginning or ending with a hyphen)"),
            );
        }
        self.range(&at("port"), Some(tg.port), 1, 65_535);
        self.one_of(&at("protocol"), &tg.protocol, &["HTTP", "HTTPS"]);
        self.one_of(&at("targetType"), &tg.target_type, &["ip", "instance"]);
        self.range(&at("deregistrationDelaySeconds"), Some(tg.deregistration_delay_seconds), 0, 3600);
        let h = &tg.health_check;
        let hc = |field: &'static str| ["loadBalancing", "targetGroups", id, "healthCheck", field];
        if !h.path.starts_with('/') || h.path.len() > 1024 {
            self.err(&hc("path"), format!("{:?} is not a health check path (it begins with / and has at most 1024 characters)", h.path));
        }
        self.range(&hc("intervalSeconds"), Some(h.interval_seconds), 5, 300);
        self.range(&hc("timeoutSeconds"), Some(h.timeout_seconds), 2, 120);
        if h.timeout_seconds >= h.interval_seconds {
            self.err(&hc("timeoutSeconds"), format!("timeoutSeconds {} must be below intervalSeconds {}", h.timeout_seconds, h.interval_seconds));
        }
        self.range(&hc("healthyThreshold"), Some(h.healthy_threshold), 2, 10);
        self.range(&hc("unhealthyThreshold"), Some(h.unhealthy_threshold), 2, 10);
        if !is_http_matcher(&h.matcher) {
            self.err(&hc("matcher"), format!("{:?} is not a list of HTTP codes 200..=499 (e.g. 200, 200-399, 200,302)", h.matcher));
        }
        self.range(&["loadBalancing", "targetGroups", id, "stickiness", "durationSeconds"], Some(tg.stickiness.duration_seconds), 1, 604_800);
    }

    fn load_balancer(&mut self, env: &str, id: &str, b: &LoadBalancer, lb: &LoadBalancing, network: Option<&Network>) {
        let at = |field: &'static str| ["loadBalancing", "loadBalancers", id, field];
        self.tags(&["loadBalancing", "loadBalancers", id], &b.tags);
        let name = b.physical_name(id, env);
        if !is_elb_name(&name) || name.starts_with("internal-") {
            let message = format!(
                "{name:?} is not a load balancer name (at most 32 letters, digits and hyphens, not beginning or ending with a hyphen nor with internal-)"
            );
            self.err(&at("name"), message);
        }
        let subnets = network.map(|n| &n.subnets);
        let mut zones: BTreeMap<&str, &str> = BTreeMap::new();
        for (i, s) in b.subnets.iter().enumerate() {
            let path = ["loadBalancing", "loadBalancers", id, "subnets", &i.to_string()];
            match subnets.and_then(|n| n.get(s)) {
                None => self.reference(&path, s, subnets.into_iter().flat_map(|n| n.keys().map(String::as_str)), "subnet"),
                Some(subnet) if subnet.tier != Tier::Public => {
                    self.err(&path, format!("subnet {s:?} is private; an internet-facing load balancer sits in public subnets"))
                }
                Some(subnet) => {
                    if let Some(other) = zones.insert(subnet.az.as_str(), s.as_str()) {
                        self.err(
                            &path,
                            format!("subnets {other:?} and {s:?} are both in {}; a load balancer takes one subnet per availability zone", subnet.az),
                        );
                    }
                }
            }
        }
        if b.subnets.len() < 2 {
            self.err(&at("subnets"), format!("a load balancer needs subnets in at least two availability zones; got {}", b.subnets.len()));
        }
        let groups = network.map(|n| &n.security_groups);
        for (i, g) in b.security_groups.iter().enumerate() {
            let known = groups.into_iter().flat_map(|n| n.keys().map(String::as_str));
            self.reference(&["loadBalancing", "loadBalancers", id, "securityGroups", &i.to_string()], g, known, "security group");
        }
        self.range(&at("idleTimeoutSeconds"), Some(b.idle_timeout_seconds), 1, 4000);
        if let Some(logs) = &b.access_logs {
            if !is_bucket_name(&logs.bucket) {
                self.err(&["loadBalancing", "loadBalancers", id, "accessLogs", "bucket"], format!("{:?} is not an S3 bucket name", logs.bucket));
            }
            if let Some(prefix) = &logs.prefix {
                if prefix.starts_with('/') || prefix.ends_with('/') || prefix.contains("AWSLogs") {
                    let message = format!("{prefix:?} is not an access log prefix (no leading or trailing / and no AWSLogs)");
                    self.err(&["loadBalancing", "loadBalancers", id, "accessLogs", "prefix"], message);
                }
            }
        }
        let target_groups = || lb.target_groups.keys().map(String::as_str);
        self.reference(&at("defaultTargetGroup"), &b.default_target_group, target_groups(), "target group");
        if b.listeners.is_empty() {
            self.err(&at("listeners"), "a load balancer needs at least one listener");
        }
        let mut ports: BTreeMap<u32, &str> = BTreeMap::new();
        for (lid, l) in &b.listeners {
            let at = |field: &'static str| ["loadBalancing", "loadBalancers", id, "listeners", lid.as_str(), field];
            self.range(&at("port"), Some(l.port), 1, 65_535);
            if let Some(other) = ports.insert(l.port, lid) {
                self.err(&at("port"), format!("port {} is also listener {other:?}'s", l.port));
            }
            match (&l.certificate_arn, &l.ssl_policy) {
                (None, _) if l.port == 443 => self.err(&["loadBalancing", "loadBalancers", id, "listeners", lid], "a listener on 443 needs certificateArn"),
                (None, Some(_)) => self.err(&at("sslPolicy"), "sslPolicy belongs to an HTTPS listener (one with certificateArn)"),
                (Some(arn), _) if !arn.starts_with("arn:") || !(arn.contains(":acm:") || arn.contains(":iam:")) => {
                    self.err(&at("certificateArn"), format!("{arn:?} is not an ACM or IAM certificate ARN"))
                }
                _ => {}
            }
            if let Some(policy) = &l.ssl_policy {
                if !policy.starts_with("ELBSecurityPolicy-") {
                    self.err(&at("sslPolicy"), format!("{policy:?} is not an ELB security policy (ELBSecurityPolicy-...)"));
                }
            }
        }
        let mut priorities: BTreeMap<u32, &str> = BTreeMap::new();
        for (rid, r) in &b.routes {
            let at = |field: &'static str| ["loadBalancing", "loadBalancers", id, "routes", rid.as_str(), field];
            self.range(&at("priority"), Some(r.priority), 1, 50_000);
            if let Some(other) = priorities.insert(r.priority, rid) {
                self.err(&at("priority"), format!("priority {} is also route {other:?}'s", r.priority));
            }
            if r.paths.is_empty() && r.hosts.is_empty() {
                self.err(&["loadBalancing", "loadBalancers", id, "routes", rid], "a route needs paths or hosts (or both)");
            }
            if r.paths.len() + r.hosts.len() > 5 {
                self.err(&["loadBalancing", "loadBalancers", id, "routes", rid], "a route matches at most 5 paths and hosts in all");
            }
            for (i, p) in r.paths.iter().enumerate() {
                if !is_path_pattern(p) {
                    let message = format!("{p:?} is not a path pattern (begins with /, at most 128 characters of a URL path, * and ?)");
                    self.err(&["loadBalancing", "loadBalancers", id, "routes", rid, "paths", &i.to_string()], message);
                }
            }
            for (i, h) in r.hosts.iter().enumerate() {
                if !is_host_pattern(h) {
                    let message = format!("{h:?} is not a host pattern (at most 128 letters, digits, -, ., * and ?)");
                    self.err(&["loadBalancing", "loadBalancers", id, "routes", rid, "hosts", &i.to_string()], message);
                }
            }
            self.reference(&at("targetGroup"), &r.target_group, target_groups(), "target group");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener(port: u32, certificate: Option<&str>) -> Listener {
        Listener { port, certificate_arn: certificate.map(str::to_string), ssl_policy: None }
    }

    fn balancer(listeners: &[(&str, Listener)]) -> LoadBalancer {
        LoadBalancer {
            name: None,
            subnets: vec!["public-a".into(), "public-b".into()],
            security_groups: vec!["alb".into()],
            deletion_protection: false,
            idle_timeout_seconds: 60,
            access_logs: None,
            default_target_group: "web".into(),
            routes: [("ws".to_string(), Route { priority: 10, paths: vec!["/ws".into()], hosts: vec![], target_group: "ws".into() })].into(),
            listeners: listeners.iter().map(|(id, l)| (id.to_string(), l.clone())).collect(),
            tags: Tags::new(),
            deletion_policy: DeletionPolicy::Retain,
        }
    }

    #[test]
    fn http_forwards_alone_and_redirects_once_https_exists() {
        let plain = balancer(&[("http", listener(80, None))]);
        assert_eq!(plain.default_action(&plain.listeners["http"]), DefaultAction::Forward("web"));
        assert_eq!(plain.route_listeners(), vec!["http"]);
        assert_eq!(plain.target_groups(), ["web", "ws"].into());

        let tls = balancer(&[("http", listener(80, None)), ("https", listener(443, Some("arn:aws:acm:us-east-1:1:certificate/x")))]);
        assert_eq!(tls.default_action(&tls.listeners["http"]), DefaultAction::RedirectToHttps(443));
        assert_eq!(tls.default_action(&tls.listeners["https"]), DefaultAction::Forward("web"));
        assert_eq!(tls.route_listeners(), vec!["https"], "routes go to the HTTPS listener only");
        assert_eq!(tls.listeners["https"].tls_policy(), Some(DEFAULT_SSL_POLICY));
        assert_eq!(tls.listeners["http"].tls_policy(), None);
    }

    fn repo(env: &str) -> Spec {
        crate::spec::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("specs"), env).expect("a valid spec").spec
    }

    fn problems(spec: &Spec) -> Vec<(String, String)> {
        crate::spec::validate::validate("dev", spec).into_iter().map(|p| (p.path.join("."), p.message)).collect()
    }

    #[test]
    fn listeners_routes_subnets_and_ports_are_checked_where_they_are_written() {
        let mut spec = repo("dev");
        assert_eq!(problems(&spec), Vec::<(String, String)>::new());
        let lb = spec.load_balancing.as_mut().expect("loadBalancing");
        let public = lb.load_balancers.get_mut("public").expect("public");
        public.listeners.insert("tls".into(), listener(443, None));
        public.listeners.get_mut("http").expect("http").ssl_policy = Some(DEFAULT_SSL_POLICY.into());
        public.subnets = vec!["public-a".into(), "private-a".into()];
        public.routes.insert("xtra".into(), Route { priority: 10, paths: vec![], hosts: vec![], target_group: "nope".into() });
        lb.target_groups.get_mut("websocket").expect("websocket").health_check.timeout_seconds = 30;
        let service = spec.compute.as_mut().and_then(|c| c.services.get_mut("websocket")).and_then(|s| s.load_balancer.as_mut()).expect("websocket's");
        service.port = 9999;
        let expected = [
            ("loadBalancing.targetGroups.websocket.healthCheck.timeoutSeconds", "timeoutSeconds 30 must be below intervalSeconds 30"),
            ("loadBalancing.loadBalancers.public.subnets.1", "subnet \"private-a\" is private; an internet-facing load balancer sits in public subnets"),
            ("loadBalancing.loadBalancers.public.listeners.http.sslPolicy", "sslPolicy belongs to an HTTPS listener (one with certificateArn)"),
            ("loadBalancing.loadBalancers.public.listeners.tls", "a listener on 443 needs certificateArn"),
            ("loadBalancing.loadBalancers.public.routes.xtra.priority", "priority 10 is also route \"websocket\"'s"),
            ("loadBalancing.loadBalancers.public.routes.xtra", "a route needs paths or hosts (or both)"),
            ("loadBalancing.loadBalancers.public.routes.xtra.targetGroup", "target group \"nope\" is not defined (known: frontend-admin, websocket)"),
            ("compute.services.websocket.loadBalancer.port", "9999 is not a port of task definition \"websocket\" (its ports: 8080)"),
        ];
        assert_eq!(problems(&spec), expected.map(|(p, m)| (p.to_string(), m.to_string())));
    }

    #[test]
    fn a_service_registers_only_in_a_target_group_a_load_balancer_uses() {
        let mut spec = repo("dev");
        if let Some(public) = spec.load_balancing.as_mut().and_then(|l| l.load_balancers.get_mut("public")) {
            public.routes.clear();
        }
        let message = "target group \"websocket\" is not used by any load balancer; ECS registers tasks only in a target group a load balancer forwards to";
        assert_eq!(problems(&spec), [("compute.services.websocket.loadBalancer.targetGroup".to_string(), message.to_string())]);

        spec.load_balancing = None;
        let found: Vec<(String, String)> = problems(&spec).into_iter().filter(|(p, _)| p.starts_with("compute.")).collect();
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found.iter().all(|(p, m)| p.ends_with("loadBalancer.targetGroup") && m.contains("is not defined (none are defined)")), "{found:?}");
    }

    #[test]
    fn matchers_are_http_codes() {
        for ok in ["200", "200-399", "200,302", "200-299,302,404"] {
            assert!(is_http_matcher(ok), "{ok}");
        }
        for bad in ["", "2xx", "399-200", "100", "500", "200,", "200-", "20"] {
            assert!(!is_http_matcher(bad), "{bad}");
        }
    }

    #[test]
    fn names_and_patterns() {
        assert!(is_elb_name("sentry-frontend-admin-prod"));
        assert!(!is_elb_name("sentry-frontend-admin-staging-eu1"), "33 characters");
        assert!(!is_elb_name("-a") && !is_elb_name("a_b") && !is_elb_name(""));
        assert!(is_path_pattern("/ws/*") && !is_path_pattern("ws") && !is_path_pattern("/a b"));
        assert!(is_host_pattern("*.example.com") && !is_host_pattern("a/b"));
        assert!(is_bucket_name("sentry-alb-logs") && !is_bucket_name("Sentry") && !is_bucket_name("-ab"));
    }
}

//! The `compute` section: ECS clusters, task definitions and services; their types and
//! their checks.

use std::collections::{BTreeMap, BTreeSet};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::iam::{Iam, EC2, ECS_TASKS};
use super::model::*;
use super::validate::Checker;

/// ECS.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct Compute {
    /// Clusters by logical id.
    pub clusters: BTreeMap<String, Cluster>,
    /// Task definitions by logical id.
    pub task_definitions: BTreeMap<String, TaskDefinition>,
    /// Services by logical id.
    pub services: BTreeMap<String, Service>,
}

/// An ECS cluster with its EC2 capacity.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Cluster {
    /// Physical name; default `sentry-<id>-<env>`.
    pub name: Option<String>,
    /// CloudWatch Container Insights.
    #[serde(default)]
    pub container_insights: bool,
    /// EC2 instance type (ARM64), e.g. `t4g.small`; with the three sizes, the
    /// cluster's EC2 capacity (all four or none: a cluster imported without
    /// its capacity leaves it unmanaged).
    pub instance_type: Option<String>,
    /// Auto Scaling group minimum.
    pub min_size: Option<u32>,
    /// Auto Scaling group maximum.
    pub max_size: Option<u32>,
    /// Auto Scaling group desired capacity.
    pub desired_capacity: Option<u32>,
    /// Role of the container instances (logical id in `iam.roles`, trusted by
    /// EC2, with an instance profile); required with EC2 capacity.
    pub instance_role: Option<String>,
    /// Security groups of the container instances (logical ids); required with EC2 capacity.
    #[serde(default)]
    pub security_groups: Vec<String>,
    /// ECS managed scaling of the cluster's capacity provider (off when absent).
    pub managed_scaling: Option<ManagedScaling>,
    /// Other capacity providers attached to the cluster (e.g. `FARGATE`); the
    /// cluster's own EC2 capacity provider is attached without being listed.
    #[serde(default)]
    pub capacity_providers: Vec<String>,
}

impl Cluster {
    /// Whether the spec gives the cluster EC2 capacity (an Auto Scaling group).
    pub fn has_capacity(&self) -> bool {
        self.instance_type.is_some()
    }

    /// Whether ECS owns the group's desired capacity (managed scaling on).
    pub fn scaling_is_managed(&self) -> bool {
        self.managed_scaling.as_ref().is_some_and(|m| m.enabled)
    }
}

/// ECS managed scaling: ECS sets the Auto Scaling group's desired capacity
/// to keep the reserved capacity at `targetCapacity` percent.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ManagedScaling {
    /// Whether it is on (prod) or off (dev, staging).
    pub enabled: bool,
    /// Percent of the capacity kept reserved (1..=100).
    #[serde(default = "seventy")]
    pub target_capacity: u32,
    /// Fewest instances added or removed at a time.
    #[serde(default = "one")]
    pub minimum_scaling_step_size: u32,
    /// Most instances added or removed at a time.
    #[serde(default = "two")]
    pub maximum_scaling_step_size: u32,
    /// ECS protects instances running tasks from scale-in (the group then
    /// protects new instances from scale-in); needs `enabled`.
    #[serde(default)]
    pub termination_protection: bool,
}

impl Default for ManagedScaling {
    /// Off, with the seeds' numbers.
    fn default() -> Self {
        ManagedScaling { enabled: false, target_capacity: 70, minimum_scaling_step_size: 1, maximum_scaling_step_size: 2, termination_protection: false }
    }
}

fn seventy() -> u32 {
    70
}

fn one() -> u32 {
    1
}

fn two() -> u32 {
    2
}

/// Whether an EC2 instance type runs ARM64 (Graviton: a family whose
/// generation digit is followed by `g`, as in `t4g`, `c7gn`; and `a1`).
pub fn is_arm64_instance_type(instance_type: &str) -> bool {
    let family = instance_type.split('.').next().unwrap_or_default();
    let Some(digit) = family.find(|c: char| c.is_ascii_digit()) else { return false };
    let after = family[digit..].trim_start_matches(|c: char| c.is_ascii_digit());
    family == "a1" || (digit > 0 && after.starts_with('g') && instance_type.contains('.'))
}

/// An ECS task definition (one container).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TaskDefinition {
    /// Family; default `sentry-<id>-<env>`.
    pub family: Option<String>,
    /// The image repository: a logical id in `images.repositories` (its URI
    /// is this account's and region's), or a full repository URI.
    pub repository: String,
    /// Image tag.
    pub image_tag: String,
    /// CPU units.
    pub cpu: u32,
    /// Memory (MiB).
    pub memory: u32,
    /// Container ports.
    #[serde(default)]
    pub ports: Vec<u16>,
    /// Plain environment variables.
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// Secrets: variable → a secret of `security.secrets` by logical id,
    /// with the JSON key to read (`exchange-credentials:api_key`), or a
    /// Secrets Manager / SSM parameter ARN (`valueFrom`) the operator does not manage.
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    /// Log group (logical id in `observability.logGroups`).
    pub log_group: String,
    /// Role ECS uses to pull the image, write the logs and read the secrets
    /// (logical id in `iam.roles`; its policy is generated from this task
    /// definition); this or `executionRoleArn` is required with `secrets`.
    pub execution_role: Option<String>,
    /// The ARN of such a role the operator does not manage.
    pub execution_role_arn: Option<String>,
    /// Role the containers run as (logical id in `iam.roles`: the service's
    /// own, with access to exactly its queues and tables).
    pub task_role: Option<String>,
    /// `ARM64` or `X86_64`.
    #[serde(default = "arm64")]
    pub cpu_architecture: String,
}

fn arm64() -> String {
    "ARM64".into()
}

/// An ECS service.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Service {
    /// Physical name; default `sentry-<id>-service-<env>`.
    pub name: Option<String>,
    /// Cluster (logical id).
    pub cluster: String,
    /// Task definition (logical id).
    pub task_definition: String,
    /// Desired task count.
    pub desired_count: u32,
    /// Security groups (logical ids).
    pub security_groups: Vec<String>,
    /// Subnet tier the tasks run in.
    #[serde(default = "private_tier")]
    pub subnets: Tier,
    /// Deployment minimum healthy percent.
    #[serde(default = "hundred")]
    pub min_healthy_percent: u32,
    /// Deployment maximum percent.
    #[serde(default = "two_hundred")]
    pub max_percent: u32,
    /// What happens once removed from the spec (services are scaled to 0 first).
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// Service auto scaling (Application Auto Scaling); off when absent. When
    /// enabled, the desired count belongs to the autoscaler after creation.
    pub auto_scaling: Option<ServiceAutoScaling>,
    /// The target group the tasks are registered in (checked with the
    /// `loadBalancing` section); none when absent.
    pub load_balancer: Option<ServiceLoadBalancer>,
}

/// Target tracking of a service's task count on its average CPU.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceAutoScaling {
    /// Whether it is on (prod) or off (dev, staging).
    pub enabled: bool,
    /// Fewest tasks.
    #[serde(default = "one")]
    pub min_tasks: u32,
    /// Most tasks.
    #[serde(default = "four")]
    pub max_tasks: u32,
    /// Average CPU utilization kept, in percent (1..=100).
    #[serde(default = "seventy")]
    pub target_cpu_utilization: u32,
    /// Seconds between scale-outs.
    #[serde(default = "sixty")]
    pub scale_out_cooldown: i64,
    /// Seconds between scale-ins.
    #[serde(default = "three_hundred")]
    pub scale_in_cooldown: i64,
}

impl Service {
    /// The service's auto scaling, when enabled.
    pub fn scaling(&self) -> Option<&ServiceAutoScaling> {
        self.auto_scaling.as_ref().filter(|a| a.enabled)
    }
}

fn four() -> u32 {
    4
}

fn sixty() -> i64 {
    60
}

fn three_hundred() -> i64 {
    300
}

impl Checker {
    fn cluster(&mut self, id: &str, cluster: &Cluster, groups: &BTreeSet<&str>, iam: Option<&Iam>) {
        let at = |field: &'static str| ["compute", "clusters", id, field];
        match (&cluster.instance_type, cluster.min_size, cluster.desired_capacity, cluster.max_size) {
            (Some(_), Some(min), _, Some(max)) if min > max => self.err(&at("minSize"), format!("minSize {min} is greater than maxSize {max}")),
            (Some(_), Some(min), Some(desired), Some(max)) if !(min <= desired && desired <= max) => {
                self.err(&at("desiredCapacity"), format!("need minSize <= desiredCapacity <= maxSize; got {min} <= {desired} <= {max}"))
            }
            (Some(_), Some(_), Some(_), Some(_)) | (None, None, None, None) => {}
            _ => self.err(&["compute", "clusters", id], "EC2 capacity needs instanceType, minSize, maxSize and desiredCapacity together (or none of them)"),
        }
        if let Some(t) = &cluster.instance_type {
            if !is_arm64_instance_type(t) {
                self.err(&at("instanceType"), format!("{t:?} is not an ARM64 (Graviton) instance type; the instances run the ECS-optimized ARM64 AMI"));
            }
            match &cluster.instance_role {
                Some(role) => self.role_reference(&at("instanceRole"), role, iam, EC2, true),
                None => self.err(&at("instanceRole"), "EC2 capacity needs `instanceRole` (a role of iam.roles with an instance profile)"),
            }
            if cluster.security_groups.is_empty() {
                self.err(&at("securityGroups"), "EC2 capacity needs the instances' security groups");
            }
        } else if cluster.instance_role.is_some() || cluster.managed_scaling.is_some() || !cluster.security_groups.is_empty() {
            self.err(&["compute", "clusters", id], "instanceRole, securityGroups and managedScaling belong to EC2 capacity, which needs instanceType");
        }
        for (i, g) in cluster.security_groups.iter().enumerate() {
            self.reference(&["compute", "clusters", id, "securityGroups", &i.to_string()], g, groups.iter().copied(), "security group");
        }
        if let Some(m) = &cluster.managed_scaling {
            let at = |field: &'static str| ["compute", "clusters", id, "managedScaling", field];
            self.range(&at("targetCapacity"), Some(m.target_capacity), 1, 100);
            self.range(&at("minimumScalingStepSize"), Some(m.minimum_scaling_step_size), 1, 10_000);
            self.range(&at("maximumScalingStepSize"), Some(m.maximum_scaling_step_size), 1, 10_000);
            if m.minimum_scaling_step_size > m.maximum_scaling_step_size {
                self.err(&at("minimumScalingStepSize"), "minimumScalingStepSize is greater than maximumScalingStepSize");
            }
            if m.termination_protection && !m.enabled {
                self.err(&at("terminationProtection"), "managed termination protection needs managed scaling enabled");
            }
        }
    }
}

impl Checker {
    fn service_scaling(&mut self, id: &str, s: &Service, a: &ServiceAutoScaling) {
        let at = |field: &'static str| ["compute", "services", id, "autoScaling", field];
        if a.min_tasks > a.max_tasks {
            self.err(&at("minTasks"), format!("minTasks {} is greater than maxTasks {}", a.min_tasks, a.max_tasks));
        } else if a.enabled && !(a.min_tasks..=a.max_tasks).contains(&s.desired_count) {
            let message = format!("desiredCount {} is outside minTasks..maxTasks ({}..{})", s.desired_count, a.min_tasks, a.max_tasks);
            self.err(&["compute", "services", id, "desiredCount"], message);
        }
        self.range(&at("maxTasks"), Some(a.max_tasks), 1, 10_000);
        self.range(&at("targetCpuUtilization"), Some(a.target_cpu_utilization), 1, 100);
        for (field, seconds) in [("scaleOutCooldown", a.scale_out_cooldown), ("scaleInCooldown", a.scale_in_cooldown)] {
            if !(0..=86_400).contains(&seconds) {
                self.err(&at(field), format!("{field} {seconds} is out of range 0..=86400 seconds"));
            }
        }
    }
}

fn hundred() -> u32 {
    100
}

fn two_hundred() -> u32 {
    200
}

impl Checker {
    pub(super) fn compute(
        &mut self,
        c: &Compute,
        groups: &BTreeSet<&str>,
        log_groups: &BTreeSet<&str>,
        iam: Option<&Iam>,
        repositories: &BTreeSet<&str>,
        secrets: &BTreeMap<String, Secret>,
    ) {
        for (id, cluster) in &c.clusters {
            self.cluster(id, cluster, groups, iam);
        }
        for (id, td) in &c.task_definitions {
            self.reference(&["compute", "taskDefinitions", id, "logGroup"], &td.log_group, log_groups.iter().copied(), "log group");
            if !td.repository.contains('/') {
                self.reference(&["compute", "taskDefinitions", id, "repository"], &td.repository, repositories.iter().copied(), "image repository");
            }
            self.one_of(&["compute", "taskDefinitions", id, "cpuArchitecture"], &td.cpu_architecture, &["ARM64", "X86_64"]);
            if td.cpu == 0 || td.memory == 0 {
                self.err(&["compute", "taskDefinitions", id, "cpu"], "cpu and memory must be positive");
            }
            match (&td.execution_role, &td.execution_role_arn) {
                (None, None) if !td.secrets.is_empty() => {
                    self.err(&["compute", "taskDefinitions", id, "secrets"], "secrets need `executionRole` or `executionRoleArn` (the role that reads them)")
                }
                (Some(_), Some(_)) => self
                    .err(&["compute", "taskDefinitions", id, "executionRoleArn"], "give `executionRole` (a role of the spec) or `executionRoleArn`, not both"),
                (Some(role), None) => self.role_reference(&["compute", "taskDefinitions", id, "executionRole"], role, iam, ECS_TASKS, false),
                (None, Some(arn)) if !arn.starts_with("arn:aws:iam::") => {
                    self.err(&["compute", "taskDefinitions", id, "executionRoleArn"], format!("{arn:?} is not an IAM role ARN"))
                }
                _ => {}
            }
            if let Some(role) = &td.task_role {
                self.role_reference(&["compute", "taskDefinitions", id, "taskRole"], role, iam, ECS_TASKS, false);
            }
            for (var, value) in &td.secrets {
                let at = ["compute", "taskDefinitions", id, "secrets", var];
                if value.starts_with("arn:") {
                    if !(value.starts_with("arn:aws:secretsmanager:") || value.starts_with("arn:aws:ssm:")) {
                        self.err(&at, "a secret ARN is a Secrets Manager or SSM parameter ARN (valueFrom)");
                    }
                    continue;
                }
                let (secret, key) = value.split_once(':').map_or((value.as_str(), None), |(s, k)| (s, Some(k)));
                self.reference(&at, secret, secrets.keys().map(String::as_str), "secret");
                if let (Some(s), Some(key)) = (secrets.get(secret), key) {
                    if !s.keys.is_empty() && !s.keys.iter().any(|k| k == key) {
                        self.err(&at, format!("secret {secret:?} has no key {key:?} (its keys: {})", s.keys.join(", ")));
                    }
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
            if let Some(a) = &s.auto_scaling {
                self.service_scaling(id, s, a);
            }
            self.range(&["compute", "services", id, "maxPercent"], Some(s.max_percent), 100, 200);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_arm64_instance_type;

    #[test]
    fn arm64_instance_types_are_graviton_families() {
        for t in ["t4g.small", "t4g.medium", "c7g.large", "c7gn.xlarge", "m6gd.large", "a1.medium", "x2gd.large", "im4gn.large"] {
            assert!(is_arm64_instance_type(t), "{t}");
        }
        for t in ["t3.small", "c7i.large", "m5.large", "g5.xlarge", "t4g", "", "gx.large", "c7a.large"] {
            assert!(!is_arm64_instance_type(t), "{t}");
        }
    }
}

//! The `compute` section: ECS clusters, task definitions and services; their types and
//! their checks.

use std::collections::{BTreeMap, BTreeSet};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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
    /// Capacity providers attached to the cluster.
    #[serde(default)]
    pub capacity_providers: Vec<String>,
}

/// An ECS task definition (one container).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TaskDefinition {
    /// Family; default `sentry-<id>-<env>`.
    pub family: Option<String>,
    /// ECR repository URI.
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
    /// Secrets: variable → Secrets Manager ARN (`valueFrom`).
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    /// Log group (logical id in `observability.logGroups`).
    pub log_group: String,
    /// Role ECS uses to pull the image and read the secrets (required with `secrets`).
    pub execution_role_arn: Option<String>,
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
}

fn hundred() -> u32 {
    100
}

fn two_hundred() -> u32 {
    200
}

impl Checker {
    pub(super) fn compute(&mut self, c: &Compute, groups: &BTreeSet<&str>, log_groups: &BTreeSet<&str>) {
        for (id, cluster) in &c.clusters {
            match (&cluster.instance_type, cluster.min_size, cluster.desired_capacity, cluster.max_size) {
                (Some(_), Some(min), Some(desired), Some(max)) if !(min <= desired && desired <= max) => self.err(
                    &["compute", "clusters", id, "desiredCapacity"],
                    format!("need minSize <= desiredCapacity <= maxSize; got {min} <= {desired} <= {max}"),
                ),
                (Some(_), Some(_), Some(_), Some(_)) | (None, None, None, None) => {}
                _ => self.err(&["compute", "clusters", id], "EC2 capacity needs instanceType, minSize, maxSize and desiredCapacity together (or none of them)"),
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
}

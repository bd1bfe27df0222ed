//! The `iam` section: the roles the estate runs on (task execution, one task
//! role per service, the container instances' role with its instance profile,
//! the flow logs' role); their types and their checks.
//!
//! A role's permissions are generated from the spec, never written by hand:
//! what its `access` names (exactly those queues' and tables' ARNs), plus
//! what the resources that use the role need (see `kinds::iam::role`).

use std::collections::{BTreeMap, BTreeSet};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::model::{DeletionPolicy, Spec};
use super::validate::Checker;

/// IAM.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct Iam {
    /// Roles by logical id; the spec refers to them by it (`executionRole: task-execution`).
    pub roles: BTreeMap<String, Role>,
}

/// An IAM role, trusted by one AWS service.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Role {
    /// Physical name; default `sentry-<id>-<env>`.
    pub name: Option<String>,
    /// The service principal allowed to assume the role (its trust policy),
    /// e.g. `ecs-tasks.amazonaws.com`, `ec2.amazonaws.com`, `vpc-flow-logs.amazonaws.com`.
    pub service: String,
    /// What the role's holder uses, by logical id: the generated policy names
    /// exactly these resources' ARNs.
    #[serde(default)]
    pub access: Access,
    /// AWS- or customer-managed policies attached (ARNs); none in the shipped specs.
    #[serde(default)]
    pub managed_policies: Vec<String>,
    /// Whether an instance profile of the same name carries the role (EC2 instances).
    #[serde(default)]
    pub instance_profile: bool,
    /// What happens once removed from the spec (roles are retained unless opted in).
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// The resources a role's holder reads and writes, by logical id.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct Access {
    /// SQS queues it sends to and consumes from.
    pub queues: Vec<String>,
    /// DynamoDB tables it reads and writes (items, and queries on their indexes).
    pub tables: Vec<String>,
}

/// The trusted service of each use a role can have.
pub const ECS_TASKS: &str = "ecs-tasks.amazonaws.com";
/// The trusted service of container instances' roles.
pub const EC2: &str = "ec2.amazonaws.com";
/// The trusted service of the flow logs' role.
pub const FLOW_LOGS: &str = "vpc-flow-logs.amazonaws.com";

impl Checker {
    pub(super) fn iam(&mut self, env: &str, spec: &Spec) {
        let Some(iam) = &spec.iam else { return };
        let queues: BTreeSet<&str> = spec.messaging.as_ref().map(|m| m.queues.keys().map(String::as_str).collect()).unwrap_or_default();
        let tables: BTreeSet<&str> = spec.data.as_ref().map(|d| d.tables.keys().map(String::as_str).collect()).unwrap_or_default();
        for (id, role) in &iam.roles {
            let at = |field: &'static str| ["iam", "roles", id.as_str(), field];
            if !role.service.ends_with(".amazonaws.com") || role.service.contains(['*', ' ', '"']) {
                self.err(&at("service"), format!("{:?} is not an AWS service principal (e.g. ecs-tasks.amazonaws.com)", role.service));
            }
            let name = super::physical_name(role.name.as_deref(), id, env);
            if name.is_empty() || name.len() > 64 || !name.chars().all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c)) {
                self.err(&at("name"), format!("{name:?} is not an IAM role name (1-64 letters, digits and +=,.@_-)"));
            }
            for (i, arn) in role.managed_policies.iter().enumerate() {
                if !arn.starts_with("arn:aws:iam::") || !arn.contains(":policy/") {
                    self.err(&["iam", "roles", id, "managedPolicies", &i.to_string()], format!("{arn:?} is not an IAM policy ARN"));
                }
            }
            for (i, q) in role.access.queues.iter().enumerate() {
                self.reference(&["iam", "roles", id, "access", "queues", &i.to_string()], q, queues.iter().copied(), "queue");
            }
            for (i, t) in role.access.tables.iter().enumerate() {
                self.reference(&["iam", "roles", id, "access", "tables", &i.to_string()], t, tables.iter().copied(), "table");
            }
        }
        self.unique_names(&["iam", "roles"], iam.roles.iter().map(|(id, r)| (id.as_str(), super::physical_name(r.name.as_deref(), id, env))));
    }

    /// Checks that `role` (at `segments`) names a role of `iam` trusted by `service`,
    /// with an instance profile when `profile` is asked for.
    pub(super) fn role_reference(&mut self, segments: &[&str], role: &str, iam: Option<&Iam>, service: &str, profile: bool) {
        let roles = iam.map(|i| &i.roles);
        match roles.and_then(|r| r.get(role)) {
            None => self.reference(segments, role, roles.into_iter().flat_map(|r| r.keys().map(String::as_str)), "IAM role"),
            Some(r) if r.service != service => self.err(segments, format!("role {role:?} is trusted by {}, not {service}", r.service)),
            Some(r) if profile && !r.instance_profile => self.err(segments, format!("role {role:?} needs `instanceProfile: true` to be used by instances")),
            Some(_) => {}
        }
    }
}

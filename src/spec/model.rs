//! The desired-state spec: plain serde structs. This module holds the top
//! level ([`Spec`], the account, drift and deletion policies, tags); each
//! section's types live with their checks in a module of their own
//! ([`super::network`], [`super::messaging`], [`super::data`],
//! [`super::compute`], [`super::identity`], [`super::observability`]) and
//! are re-exported here.
//!
//! Every struct rejects unknown fields. Collections of resources are maps keyed
//! by logical id, so an environment file can override one resource's field
//! (maps merge) and a duplicated id is a duplicate YAML key. Physical names
//! default to `sentry-<id>-<env>` and may use `${env}`.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use super::adopt::AdoptTarget;

/// Tags, as written in the spec.
pub type Tags = BTreeMap<String, String>;

/// The whole estate of one environment (base merged with the env overlay).
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct Spec {
    /// AWS region of this environment (the `--region` flag wins over it).
    pub region: Option<String>,
    /// Tags added to every resource the operator creates.
    pub tags: Tags,
    /// The AWS account of this environment, when it is not the operator's own.
    pub account: Option<Account>,
    /// The DynamoDB table (a name, or an ARN naming the operator's region) of
    /// the per-environment leases: with it, `reconcile --once` takes this
    /// environment's lease for its pass, like the daemon.
    pub lease_table: Option<String>,
    /// Drift policy by resource (`kind/id`, `kind/*`) or field (`kind/id#Field`):
    /// `enforce` (repair, the default), `alert` (report only) or `ignore`.
    pub policies: BTreeMap<String, DriftPolicy>,
    /// VPC, subnets, NAT, the Elastic IP whitelist, security groups, endpoints.
    pub network: Option<Network>,
    /// SQS queues.
    pub messaging: Option<Messaging>,
    /// DynamoDB tables and ElastiCache Redis.
    pub data: Option<Data>,
    /// The IAM roles the estate runs on.
    pub iam: Option<Iam>,
    /// ECS clusters, task definitions and services.
    pub compute: Option<Compute>,
    /// Cognito.
    pub identity: Option<Identity>,
    /// CloudWatch Logs groups.
    pub observability: Option<Observability>,
    /// ECR repositories.
    pub images: Option<Images>,
    /// KMS keys and Secrets Manager secrets.
    pub security: Option<Security>,
    /// Application Load Balancers, their listeners, routes and target groups.
    pub load_balancing: Option<LoadBalancing>,
    /// Existing resources to take over, by `kind/id` (see [`super::adopt`]).
    pub adopt: BTreeMap<String, AdoptTarget>,
}

/// The account an environment lives in.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Account {
    /// Role assumed through STS for every call in this environment.
    pub role_arn: String,
    /// External id the role's trust policy requires, if any.
    pub external_id: Option<String>,
}

/// What to do about drift of a resource or field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum DriftPolicy {
    /// Repair it (the default).
    Enforce,
    /// Report it, never repair it.
    Alert,
    /// Neither report nor repair it.
    Ignore,
}

/// What happens to a resource the spec no longer lists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum DeletionPolicy {
    /// Left alone and reported as orphaned (the default).
    #[default]
    Retain,
    /// Deleted by the operator once removed from the spec.
    Delete,
}

impl DeletionPolicy {
    /// The tag value recording this policy on the live resource.
    pub fn as_str(self) -> &'static str {
        match self {
            DeletionPolicy::Retain => "retain",
            DeletionPolicy::Delete => "delete",
        }
    }
}

pub use super::compute::*;
pub use super::data::*;
pub use super::iam::*;
pub use super::identity::*;
pub use super::images::*;
pub use super::load_balancing::*;
pub use super::messaging::*;
pub use super::network::*;
pub use super::observability::*;
pub use super::security::*;

/// `true`, for `#[serde(default = "yes")]` on settings that default to on.
pub(super) fn yes() -> bool {
    true
}

/// The private tier, the default placement of what runs inside the VPC.
pub(super) fn private_tier() -> Tier {
    Tier::Private
}

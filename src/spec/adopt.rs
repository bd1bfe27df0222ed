//! Adoption: taking over resources that exist already (built by hand or by
//! CloudFormation) instead of creating new ones next to them.
//!
//! The spec's top-level `adopt` map names, by `kind/id` (the form drift
//! policies use), which live resource a spec resource is:
//!
//! ```yaml
//! adopt:
//!   ec2.vpc/vpc: { id: vpc-0abc }
//!   ec2.subnet/public-a: { stack: sentry-vpc-${env}, logicalId: PublicSubnetA }
//!   sqs.queue/master-order: {}          # by its name
//! ```
//!
//! An empty entry adopts by name (kinds whose names are unique: queues,
//! tables, clusters, ...); `id` names the resource's own identifier (VPC id,
//! subnet id, user pool id, ...); `stack` + `logicalId` name it through a
//! CloudFormation stack's resources. Whether a key names a resource of the
//! spec is checked once the kinds have said what the spec wants.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Which live resource a spec resource takes over.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AdoptTarget {
    /// The resource's identifier (`vpc-…`, `subnet-…`, `nat-…`, a user pool id, …).
    pub id: Option<String>,
    /// A CloudFormation stack holding the resource (`${env}` is substituted).
    pub stack: Option<String>,
    /// The resource's logical id in `stack`.
    pub logical_id: Option<String>,
}

/// Checks one `adopt` entry; returns the problems (field, message).
pub fn check(key: &str, target: &AdoptTarget) -> Vec<(Option<&'static str>, String)> {
    let mut problems = Vec::new();
    match key.split_once('/') {
        Some((kind, id)) if kind.contains('.') && !id.is_empty() => {}
        _ => problems.push((None, format!("{key:?} is not a resource key: write kind/id, e.g. ec2.vpc/vpc or sqs.queue/master-order"))),
    }
    match (&target.id, &target.stack, &target.logical_id) {
        (Some(id), None, None) if id.trim().is_empty() => problems.push((Some("id"), "must not be empty".into())),
        (Some(_), None, None) | (None, None, None) => {}
        (None, Some(stack), Some(logical)) if !stack.trim().is_empty() && !logical.trim().is_empty() => {}
        (None, Some(_), None) => problems.push((Some("logicalId"), "a stack needs the resource's logicalId".into())),
        (None, None, Some(_)) => problems.push((Some("stack"), "a logicalId needs its stack".into())),
        (None, Some(_), Some(_)) => problems.push((Some("stack"), "stack and logicalId must not be empty".into())),
        (Some(_), _, _) => problems.push((Some("id"), "give either id, or stack and logicalId, not both".into())),
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(id: Option<&str>, stack: Option<&str>, logical_id: Option<&str>) -> AdoptTarget {
        AdoptTarget { id: id.map(Into::into), stack: stack.map(Into::into), logical_id: logical_id.map(Into::into) }
    }

    #[test]
    fn an_entry_names_a_resource_and_one_identity() {
        assert!(check("ec2.vpc/vpc", &target(Some("vpc-1"), None, None)).is_empty());
        assert!(check("sqs.queue/orders", &target(None, None, None)).is_empty(), "by name");
        assert!(check("ec2.subnet/a", &target(None, Some("sentry-vpc-${env}"), Some("SubnetA"))).is_empty());
        assert_eq!(check("vpc", &AdoptTarget::default()).len(), 1, "not kind/id");
        assert_eq!(check("ec2.vpc/vpc", &target(Some("vpc-1"), Some("s"), Some("L")))[0].0, Some("id"));
        assert_eq!(check("ec2.vpc/vpc", &target(None, Some("s"), None))[0].0, Some("logicalId"));
        assert_eq!(check("ec2.vpc/vpc", &target(None, None, Some("L")))[0].0, Some("stack"));
        assert_eq!(check("ec2.vpc/vpc", &target(Some(" "), None, None))[0].0, Some("id"));
    }
}

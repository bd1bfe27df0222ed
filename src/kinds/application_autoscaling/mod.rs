//! Application Auto Scaling of the ECS services: a scalable target (min and
//! max tasks) and a target-tracking policy on average CPU per service whose
//! spec enables it. While they exist, the service's desired count belongs to
//! the autoscaler.
//!
//! Neither has an owner of its own: both belong to whoever owns the service
//! they scale (its ownership tags, read with the services), and are deleted
//! when the spec turns auto scaling off, so that the count returns to the spec.

pub mod scalable_target;
pub mod scaling_policy;

use std::collections::BTreeMap;

use aws_sdk_ecs::Client as EcsClient;

use crate::aws::AwsError;
use crate::engine::{Live, ReadCache, TAG_DELETION_POLICY};
use crate::kinds::ecs::service::{cluster_of, live_services};
use crate::spec::model::{DeletionPolicy, Service, ServiceAutoScaling, Tags};
use crate::spec::{physical_name, EnvSpec};

/// The Application Auto Scaling resource id of service `service` of cluster `cluster`.
pub fn resource_id(cluster: &str, service: &str) -> String {
    format!("service/{cluster}/{service}")
}

/// The services of the spec with auto scaling enabled: logical id, spec,
/// their scaling and their resource id.
pub fn scaled_services(env: &EnvSpec) -> Vec<(&str, &Service, &ServiceAutoScaling, String)> {
    let Some(c) = &env.spec.compute else { return Vec::new() };
    c.services
        .iter()
        .filter_map(|(id, s)| {
            let scaling = s.scaling()?;
            let cluster = c.clusters.get(&s.cluster)?;
            let cluster_name = physical_name(cluster.name.as_deref(), &s.cluster, &env.env);
            let service_name = crate::kinds::ecs::service::service_name(s.name.as_deref(), id, &env.env);
            Some((id.as_str(), s, scaling, resource_id(&cluster_name, &service_name)))
        })
        .collect()
}

/// The owners of scaled resources: resource id → the tags of the service it
/// scales, deletion policy `delete` (auto scaling is configuration, never state).
pub async fn owners(ecs: &EcsClient, env: &EnvSpec, reads: &ReadCache) -> Result<BTreeMap<String, Tags>, AwsError> {
    let services = live_services(ecs, env, reads).await?;
    Ok(services.iter().map(|s: &Live| (resource_id(cluster_of(s), &s.name), owner_tags(s))).collect())
}

fn owner_tags(service: &Live) -> Tags {
    let mut tags = service.tags.clone();
    if tags.contains_key(TAG_DELETION_POLICY) {
        tags.insert(TAG_DELETION_POLICY.into(), DeletionPolicy::Delete.as_str().into());
    }
    tags
}

//! ECS capacity providers: one per cluster with EC2 capacity, over the
//! cluster's Auto Scaling group, with managed scaling (target capacity and
//! step sizes) and managed termination protection as the spec says.
//!
//! Named `sentry-<cluster>-ec2-<env>`. The group of a provider cannot change:
//! a spec naming another group is BLOCKED.

use crate::engine::focus::EventMatch;
use crate::engine::permissions::{Grant, Permissions};
use async_trait::async_trait;
use aws_sdk_ecs::types::{
    AutoScalingGroupProvider, AutoScalingGroupProviderUpdate, CapacityProviderField, ManagedScaling, ManagedScalingStatus, ManagedTerminationProtection,
};
use aws_sdk_ecs::Client;

use super::auto_scaling_group as autoscaling;
use super::cluster::{live_clusters, PROVIDERS};
use super::{add_tags, tag_list, tag_map};
use crate::aws::{gone_is_ok, AwsError, AwsResult, Built};
use crate::engine::{ownership_tags, Delta, Desired, FieldReader, Kind, Layer, Live, ReadCache, Rules};
use crate::spec::model::{Cluster, DeletionPolicy, Tags};
use crate::spec::EnvSpec;

/// Kind name.
pub const KIND: &str = "ecs.capacity-provider";

fields! {
    GROUP = "AutoScalingGroup", SCALING = "ManagedScaling", TARGET = "TargetCapacity", MIN_STEP = "MinimumScalingStepSize",
    MAX_STEP = "MaximumScalingStepSize", PROTECTION = "ManagedTerminationProtection",
}

/// The capacity-provider kind.
pub struct CapacityProviders {
    /// The service's client, shared by the kinds of the service.
    pub client: Client,
}

/// The provider name of cluster `id` in environment `env`.
pub fn provider_name(id: &str, env: &str) -> String {
    format!("sentry-{id}-ec2-{env}")
}

fn status(on: bool) -> &'static str {
    if on {
        "ENABLED"
    } else {
        "DISABLED"
    }
}

fn managed_scaling(desired: &Desired) -> Result<ManagedScaling, AwsError> {
    Ok(ManagedScaling::builder()
        .status(ManagedScalingStatus::from(desired.field(SCALING)))
        .target_capacity(desired.number(TARGET, "ECS.CapacityProvider")?)
        .minimum_scaling_step_size(desired.number(MIN_STEP, "ECS.CapacityProvider")?)
        .maximum_scaling_step_size(desired.number(MAX_STEP, "ECS.CapacityProvider")?)
        .build())
}

/// The desired provider of a cluster with EC2 capacity (managed scaling off,
/// with the spec's default numbers, when the spec has no `managedScaling`).
fn desired_provider(env: &EnvSpec, id: &str, cluster: &Cluster) -> Desired {
    let scaling = cluster.managed_scaling.clone().unwrap_or_default();
    Desired::new(KIND, id, provider_name(id, &env.env), ownership_tags(env, id, DeletionPolicy::Delete, &Tags::new()))
        .with_reference(GROUP, autoscaling::KIND, id)
        .with(SCALING, status(scaling.enabled))
        .with(PROTECTION, status(scaling.enabled && scaling.termination_protection))
        .with(TARGET, scaling.target_capacity.to_string())
        .with(MIN_STEP, scaling.minimum_scaling_step_size.to_string())
        .with(MAX_STEP, scaling.maximum_scaling_step_size.to_string())
}

/// What the kind's calls need of IAM.
#[rustfmt::skip]
const PERMISSIONS: Permissions = Permissions {
    reads: &["ecs:DescribeCapacityProviders"],
    grants: &[
        Grant::allow("ComputeWrites", &["ecs:TagResource"], &["*"]),
        Grant::allow("CapacityProviderWrites", &["ecs:CreateCapacityProvider", "ecs:UpdateCapacityProvider", "ecs:DeleteCapacityProvider"], &["arn:aws:ecs:*:*:capacity-provider/sentry-*", "arn:aws:ecs:*:*:cluster/sentry-*"]),
    ],
};

#[async_trait]
impl Kind for CapacityProviders {
    fn rules(&self) -> Rules {
        Rules {
            immutable: &[GROUP],
            events: EventMatch::of("ecs.amazonaws.com", &["CapacityProvider"], &["name", "capacityProvider", "capacityProviderArn"])
                .marked("capacity-provider/"),
            ..Rules::new(KIND, Layer::Compute).stands_for(&["AWS::ECS::CapacityProvider", "aws_ecs_capacity_provider"]).needs(PERMISSIONS)
        }
    }

    fn desired(&self, env: &EnvSpec) -> Vec<Desired> {
        let Some(c) = &env.spec.compute else { return Vec::new() };
        c.clusters.iter().filter(|(_, cluster)| cluster.has_capacity()).map(|(id, cluster)| desired_provider(env, id, cluster)).collect()
    }

    async fn observe(&self, env: &EnvSpec, desired: &[Desired], reads: &ReadCache) -> Result<Vec<Live>, AwsError> {
        // By name (the listing form is not served by every endpoint): the
        // spec's, and those attached to its clusters, so that the provider of a
        // cluster whose capacity left the spec is seen (and deleted).
        let clusters = live_clusters(&self.client, env, reads).await?;
        let attached = clusters.iter().flat_map(|c| c.items(PROVIDERS));
        let mut names: Vec<String> = desired.iter().map(|d| d.name.clone()).chain(attached).collect();
        names.sort();
        names.dedup();
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let out = self.client.describe_capacity_providers().set_capacity_providers(Some(names)).include(CapacityProviderField::Tags).send().await;
        let out = out.aws("ECS.DescribeCapacityProviders")?;
        Ok(out
            .capacity_providers()
            .iter()
            .filter(|p| p.status().is_some_and(|s| s.as_str() == "ACTIVE"))
            .filter_map(|p| {
                let group = p.auto_scaling_group_provider()?;
                let scaling = group.managed_scaling();
                let mut live = Live { name: p.name()?.into(), handle: p.name()?.into(), tags: tag_map(p.tags()), ..Live::default() }
                    .with_handle(GROUP, group.auto_scaling_group_arn())
                    .with(SCALING, scaling.and_then(|s| s.status()).map_or("DISABLED", |s| s.as_str()))
                    .with(PROTECTION, group.managed_termination_protection().map_or("DISABLED", |s| s.as_str()));
                if let Some(s) = scaling {
                    live = live
                        .with(TARGET, s.target_capacity().unwrap_or_default().to_string())
                        .with(MIN_STEP, s.minimum_scaling_step_size().unwrap_or_default().to_string())
                        .with(MAX_STEP, s.maximum_scaling_step_size().unwrap_or_default().to_string());
                }
                live.meta.insert("arn".into(), p.capacity_provider_arn()?.into());
                Some(live)
            })
            .collect())
    }

    async fn create(&self, desired: &Desired, _token: &str, _reads: &ReadCache) -> Result<String, AwsError> {
        let group = AutoScalingGroupProvider::builder()
            .auto_scaling_group_arn(desired.field(GROUP))
            .managed_scaling(managed_scaling(desired)?)
            .managed_termination_protection(ManagedTerminationProtection::from(desired.field(PROTECTION)))
            .build()
            .built("ECS.CreateCapacityProvider")?;
        let request = self.client.create_capacity_provider().name(&desired.name).auto_scaling_group_provider(group).set_tags(Some(tag_list(&desired.tags)));
        request.send().await.aws("ECS.CreateCapacityProvider")?;
        Ok(desired.name.clone())
    }

    async fn update(&self, desired: &Desired, live: &Live, delta: &Delta) -> Result<(), AwsError> {
        if !delta.fields.is_empty() {
            let group = AutoScalingGroupProviderUpdate::builder()
                .managed_scaling(managed_scaling(desired)?)
                .managed_termination_protection(ManagedTerminationProtection::from(desired.field(PROTECTION)))
                .build();
            self.client.update_capacity_provider().name(&live.name).auto_scaling_group_provider(group).send().await.aws("ECS.UpdateCapacityProvider")?;
        }
        add_tags(&self.client, live.meta("arn", "ECS.TagResource")?, &delta.tags).await
    }

    async fn delete(&self, live: &Live, _reads: &ReadCache) -> Result<(), AwsError> {
        gone_is_ok(self.client.delete_capacity_provider().capacity_provider(&live.name).send().await.map(|_| ()).aws("ECS.DeleteCapacityProvider"))
    }
}

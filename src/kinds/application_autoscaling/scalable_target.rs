//! Scalable targets: a service's task count between `minTasks` and `maxTasks`.

use crate::engine::focus::EventMatch;
use crate::engine::permissions::{Grant, Permissions};
use async_trait::async_trait;
use aws_sdk_applicationautoscaling::types::{ScalableDimension, ServiceNamespace};
use aws_sdk_applicationautoscaling::Client;

use super::{owners, scaled_services};
use crate::aws::{gone_is_ok, AwsError, AwsResult};
use crate::engine::{ownership_tags, Delta, Desired, Kind, Layer, Live, ReadCache, Rules};
use crate::kinds::ecs::service;
use crate::spec::model::{DeletionPolicy, Tags};
use crate::spec::EnvSpec;

/// Kind name.
pub const KIND: &str = "application-autoscaling.scalable-target";

fields! { MIN = "MinCapacity", MAX = "MaxCapacity" }

/// The scalable-target kind.
pub struct ScalableTargets {
    /// The service's client.
    pub client: Client,
    /// ECS, whose services own the targets.
    pub ecs: aws_sdk_ecs::Client,
}

impl ScalableTargets {
    /// Registers (or re-registers: the call is an upsert) the target of `desired`.
    async fn register(&self, desired: &Desired, tags: Option<&Tags>) -> Result<(), AwsError> {
        let request = self
            .client
            .register_scalable_target()
            .service_namespace(ServiceNamespace::Ecs)
            .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
            .resource_id(&desired.name)
            .min_capacity(desired.number(MIN, "ApplicationAutoScaling.RegisterScalableTarget")?)
            .max_capacity(desired.number(MAX, "ApplicationAutoScaling.RegisterScalableTarget")?)
            .set_tags(tags.map(|t| t.clone().into_iter().collect()));
        request.send().await.aws("ApplicationAutoScaling.RegisterScalableTarget")?;
        Ok(())
    }
}

/// What the kind's calls need of IAM.
#[rustfmt::skip]
const PERMISSIONS: Permissions = Permissions {
    reads: &["application-autoscaling:DescribeScalableTargets"],
    grants: &[
        Grant::allow("ServiceAutoScalingWrites", &["application-autoscaling:RegisterScalableTarget", "application-autoscaling:DeregisterScalableTarget"], &["*"]),
        Grant::allow("TheAlarmsOfTargetTrackingPolicies", &["application-autoscaling:TagResource"], &["*"]),
        crate::kinds::SERVICE_LINKED_ROLES,
    ],
};

#[async_trait]
impl Kind for ScalableTargets {
    fn rules(&self) -> Rules {
        Rules {
            events: EventMatch::of("application-autoscaling.amazonaws.com", &["ScalableTarget"], &["resourceId", "ResourceId"]),
            ..Rules::new(KIND, Layer::Compute).stands_for(&["AWS::ApplicationAutoScaling::ScalableTarget", "aws_appautoscaling_target"]).needs(PERMISSIONS)
        }
    }

    fn desired(&self, env: &EnvSpec) -> Vec<Desired> {
        scaled_services(env)
            .into_iter()
            .map(|(id, _, scaling, resource)| {
                Desired::new(KIND, id, resource, ownership_tags(env, id, DeletionPolicy::Delete, &Tags::new()))
                    .with(MIN, scaling.min_tasks.to_string())
                    .with(MAX, scaling.max_tasks.to_string())
                    .after(service::KIND, id)
            })
            .collect()
    }

    async fn observe(&self, env: &EnvSpec, desired: &[Desired], reads: &ReadCache) -> Result<Vec<Live>, AwsError> {
        let owners = owners(&self.ecs, env, reads).await?;
        let request = self.client.describe_scalable_targets().service_namespace(ServiceNamespace::Ecs);
        let targets = request.into_paginator().items().send().try_collect().await.aws("ApplicationAutoScaling.DescribeScalableTargets")?;
        Ok(targets
            .iter()
            .filter(|t| t.scalable_dimension() == &ScalableDimension::EcsServiceDesiredCount)
            .filter_map(|t| {
                let id = t.resource_id();
                let live = Live { name: id.into(), handle: id.into(), tags: owners.get(id).cloned().unwrap_or_default(), ..Live::default() };
                live.is_named_or_owned(&env.env, desired).then(|| live.with(MIN, t.min_capacity().to_string()).with(MAX, t.max_capacity().to_string()))
            })
            .collect())
    }

    async fn create(&self, desired: &Desired, _token: &str, _reads: &ReadCache) -> Result<String, AwsError> {
        self.register(desired, Some(&desired.tags)).await?;
        Ok(desired.name.clone())
    }

    async fn update(&self, desired: &Desired, _live: &Live, delta: &Delta) -> Result<(), AwsError> {
        // Ownership comes from the service's tags, so there are no tags of the target's own to add.
        if !delta.fields.is_empty() {
            self.register(desired, None).await?;
        }
        Ok(())
    }

    async fn delete(&self, live: &Live, _reads: &ReadCache) -> Result<(), AwsError> {
        let request = self
            .client
            .deregister_scalable_target()
            .service_namespace(ServiceNamespace::Ecs)
            .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
            .resource_id(&live.name);
        gone_is_ok(request.send().await.map(|_| ()).aws("ApplicationAutoScaling.DeregisterScalableTarget"))
    }
}

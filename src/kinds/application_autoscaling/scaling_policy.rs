//! Target-tracking scaling policies: a service's average CPU kept at the
//! spec's percentage, with its scale-out and scale-in cooldowns.

use crate::engine::focus::EventMatch;
use crate::engine::permissions::{Grant, Permissions};
use async_trait::async_trait;
use aws_sdk_applicationautoscaling::types::{
    MetricType, PolicyType, PredefinedMetricSpecification, ScalableDimension, ServiceNamespace, TargetTrackingScalingPolicyConfiguration,
};
use aws_sdk_applicationautoscaling::Client;

use super::{owners, scalable_target, scaled_services};
use crate::aws::{gone_is_ok, AwsError, AwsResult, Built};
use crate::engine::{ownership_tags, Delta, Desired, FieldReader, Kind, Layer, Live, ReadCache, Rules};
use crate::spec::model::{DeletionPolicy, Tags};
use crate::spec::EnvSpec;

/// Kind name.
pub const KIND: &str = "application-autoscaling.scaling-policy";

fields! { TARGET = "ScalableTarget", METRIC = "PredefinedMetric", VALUE = "TargetValue", OUT = "ScaleOutCooldown", IN = "ScaleInCooldown" }

const PUT: &str = "ApplicationAutoScaling.PutScalingPolicy";

/// The metric the services scale on.
const CPU: &str = "ECSServiceAverageCPUUtilization";

/// The scaling-policy kind.
pub struct ScalingPolicies {
    /// The service's client.
    pub client: Client,
    /// ECS, whose services own the policies.
    pub ecs: aws_sdk_ecs::Client,
}

/// What the kind's calls need of IAM.
#[rustfmt::skip]
const PERMISSIONS: Permissions = Permissions {
    reads: &["application-autoscaling:DescribeScalingPolicies"],
    grants: &[Grant::allow("ServiceAutoScalingWrites", &["application-autoscaling:PutScalingPolicy", "application-autoscaling:DeleteScalingPolicy"], &["*"])],
};

#[async_trait]
impl Kind for ScalingPolicies {
    fn rules(&self) -> Rules {
        Rules {
            immutable: &[TARGET],
            on_immutable_change: crate::engine::OnImmutableChange::Replace,
            events: EventMatch::of("application-autoscaling.amazonaws.com", &["ScalingPolicy"], &["policyName", "PolicyName"]),
            ..Rules::new(KIND, Layer::Compute).stands_for(&["AWS::ApplicationAutoScaling::ScalingPolicy", "aws_appautoscaling_policy"]).needs(PERMISSIONS)
        }
    }

    fn desired(&self, env: &EnvSpec) -> Vec<Desired> {
        scaled_services(env)
            .into_iter()
            .map(|(id, _, scaling, _)| {
                Desired::new(KIND, id, format!("sentry-{id}-cpu-{}", env.env), ownership_tags(env, id, DeletionPolicy::Delete, &Tags::new()))
                    .with_reference(TARGET, scalable_target::KIND, id)
                    .with(METRIC, CPU)
                    .with(VALUE, scaling.target_cpu_utilization.to_string())
                    .with(OUT, scaling.scale_out_cooldown.to_string())
                    .with(IN, scaling.scale_in_cooldown.to_string())
            })
            .collect()
    }

    async fn observe(&self, env: &EnvSpec, desired: &[Desired], reads: &ReadCache) -> Result<Vec<Live>, AwsError> {
        let owners = owners(&self.ecs, env, reads).await?;
        let request = self.client.describe_scaling_policies().service_namespace(ServiceNamespace::Ecs);
        let policies = request.into_paginator().items().send().try_collect().await.aws("ApplicationAutoScaling.DescribeScalingPolicies")?;
        Ok(policies
            .iter()
            .filter_map(|p| {
                let (name, resource) = (p.policy_name(), p.resource_id());
                let tags = owners.get(resource).cloned().unwrap_or_default();
                let mut live = Live { name: name.into(), handle: p.policy_arn().into(), tags, ..Live::default() }.with_handle(TARGET, resource);
                if !live.is_named_or_owned(&env.env, desired) {
                    return None;
                }
                if let Some(c) = p.target_tracking_scaling_policy_configuration() {
                    let metric = c.predefined_metric_specification().map_or("", |m| m.predefined_metric_type().as_str());
                    live = live
                        .with(METRIC, metric)
                        .with(VALUE, c.target_value().to_string())
                        .with(OUT, c.scale_out_cooldown().unwrap_or_default().to_string())
                        .with(IN, c.scale_in_cooldown().unwrap_or_default().to_string());
                }
                live.meta.insert(TARGET.into(), resource.into());
                Some(live)
            })
            .collect())
    }

    async fn create(&self, desired: &Desired, _token: &str, _reads: &ReadCache) -> Result<String, AwsError> {
        let value: f64 = desired.number(VALUE, PUT)?;
        let metric = PredefinedMetricSpecification::builder()
            .predefined_metric_type(MetricType::from(desired.field(METRIC)))
            .build()
            .built("ApplicationAutoScaling.PutScalingPolicy")?;
        let tracking = TargetTrackingScalingPolicyConfiguration::builder()
            .target_value(value)
            .predefined_metric_specification(metric)
            .scale_out_cooldown(desired.number(OUT, PUT)?)
            .scale_in_cooldown(desired.number(IN, PUT)?)
            .build()
            .built("ApplicationAutoScaling.PutScalingPolicy")?;
        let request = self
            .client
            .put_scaling_policy()
            .policy_name(&desired.name)
            .service_namespace(ServiceNamespace::Ecs)
            .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
            .resource_id(desired.field(TARGET))
            .policy_type(PolicyType::TargetTrackingScaling)
            .target_tracking_scaling_policy_configuration(tracking);
        let out = request.send().await.aws("ApplicationAutoScaling.PutScalingPolicy")?;
        Ok(out.policy_arn().to_string())
    }

    async fn update(&self, desired: &Desired, _live: &Live, delta: &Delta) -> Result<(), AwsError> {
        // PutScalingPolicy is an upsert. Ownership comes from the service's tags.
        if !delta.fields.is_empty() {
            self.create(desired, "", &ReadCache::default()).await?;
        }
        Ok(())
    }

    async fn delete(&self, live: &Live, _reads: &ReadCache) -> Result<(), AwsError> {
        let request = self
            .client
            .delete_scaling_policy()
            .policy_name(&live.name)
            .service_namespace(ServiceNamespace::Ecs)
            .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
            .resource_id(live.meta(TARGET, "ApplicationAutoScaling.DeleteScalingPolicy")?);
        gone_is_ok(request.send().await.map(|_| ()).aws("ApplicationAutoScaling.DeleteScalingPolicy"))
    }
}

//! Auto Scaling groups of the clusters' container instances: the private
//! subnets, min/max/desired, the launch template's default version, tags
//! propagated to the instances, and scale-in protection of new instances
//! when the capacity provider's managed termination protection is on.
//!
//! With ECS managed scaling on, the desired capacity belongs to ECS: the
//! operator sets it at creation and keeps min and max, never the desired.

use crate::engine::focus::EventMatch;
use crate::engine::permissions::{Grant, Permissions};
use async_trait::async_trait;
use aws_sdk_autoscaling::types::{AutoScalingGroup, LaunchTemplateSpecification, Tag};
use aws_sdk_autoscaling::Client;

use super::launch_template;
use crate::aws::{gone_is_ok, required, AwsError, AwsResult};
use crate::engine::{ownership_tags, Delta, Desired, FieldReader, Kind, Layer, Live, ReadCache, Rules, Value};
use crate::kinds::ec2::subnet;
use crate::spec::model::{DeletionPolicy, Tags, Tier};
use crate::spec::{physical_name, EnvSpec};

/// Kind name.
pub const KIND: &str = "autoscaling.group";

fields! {
    MIN = "MinSize", MAX = "MaxSize", DESIRED = "DesiredCapacity", TEMPLATE = "LaunchTemplate", VERSION = "LaunchTemplateVersion",
    SUBNETS = "Subnets", PROTECTED = "NewInstancesProtectedFromScaleIn",
}

fields! { CREATE = "AutoScaling.CreateAutoScalingGroup", UPDATE = "AutoScaling.UpdateAutoScalingGroup" }

/// Who owns the desired capacity under ECS managed scaling.
const ECS_MANAGED_SCALING: &str = "the autoscaler (ECS managed scaling of the capacity provider)";

/// The Auto Scaling group kind.
pub struct Groups {
    /// The service's client.
    pub client: Client,
}

/// `tags` on `group`, propagated to its instances.
fn tags(group: &str, tags: &Tags) -> Vec<Tag> {
    tags.iter().map(|(k, v)| Tag::builder().key(k).value(v).resource_id(group).resource_type("auto-scaling-group").propagate_at_launch(true).build()).collect()
}

fn live_group(g: &AutoScalingGroup) -> Option<Live> {
    let tags = g.tags().iter().filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or_default().to_string()))).collect();
    let live = Live { name: g.auto_scaling_group_name()?.into(), handle: g.auto_scaling_group_arn()?.into(), tags, ..Live::default() };
    let template = g.launch_template();
    Some(
        live.with(MIN, g.min_size()?.to_string())
            .with(MAX, g.max_size()?.to_string())
            .with(DESIRED, g.desired_capacity()?.to_string())
            .with_handle(TEMPLATE, template.and_then(|t| t.launch_template_id()).unwrap_or_default())
            .with(VERSION, template.and_then(|t| t.version()).unwrap_or_default())
            .with(SUBNETS, Value::handles(g.vpc_zone_identifier().unwrap_or_default().split(',').filter(|s| !s.is_empty())))
            .with(PROTECTED, g.new_instances_protected_from_scale_in().unwrap_or(false).to_string()),
    )
}

/// What the kind's calls need of IAM.
#[rustfmt::skip]
const PERMISSIONS: Permissions = Permissions {
    reads: &["autoscaling:DescribeAutoScalingGroups"],
    grants: &[
        Grant::allow("ComputeWrites", &["ecs:TagResource"], &["*"]),
        Grant::allow("LaunchOnlyFromTheOperatorsTemplates", &["ec2:RunInstances"], &["arn:aws:ec2:*:*:launch-template/*"]).when(r#"{"StringEquals": {"aws:ResourceTag/sentry:managed-by": "sentry-operator"}}"#),
        Grant::allow("WhatALaunchFromThoseTemplatesCreates", &["ec2:RunInstances"], &["arn:aws:ec2:*:*:instance/*", "arn:aws:ec2:*:*:volume/*", "arn:aws:ec2:*:*:network-interface/*", "arn:aws:ec2:*:*:subnet/*", "arn:aws:ec2:*:*:security-group/*", "arn:aws:ec2:*::image/*"]).when(r#"{"ArnLike": {"ec2:LaunchTemplate": "arn:aws:ec2:*:*:launch-template/*"}, "Bool": {"ec2:IsLaunchTemplateResource": "true"}}"#),
        Grant::allow("AutoScalingGroupWrites", &["autoscaling:CreateAutoScalingGroup", "autoscaling:UpdateAutoScalingGroup", "autoscaling:DeleteAutoScalingGroup", "autoscaling:CreateOrUpdateTags"], &["arn:aws:autoscaling:*:*:autoScalingGroup:*:autoScalingGroupName/sentry-*"]),
        crate::kinds::SERVICE_LINKED_ROLES,
    ],
};

#[async_trait]
impl Kind for Groups {
    fn rules(&self) -> Rules {
        Rules {
            events: EventMatch::of("autoscaling.amazonaws.com", &[], &["autoScalingGroupName", "AutoScalingGroupName", "resourceId"]),
            ..Rules::new(KIND, Layer::Compute).stands_for(&["AWS::AutoScaling::AutoScalingGroup", "aws_autoscaling_group"]).needs(PERMISSIONS)
        }
    }

    fn desired(&self, env: &EnvSpec) -> Vec<Desired> {
        let (Some(compute), Some(network)) = (&env.spec.compute, &env.spec.network) else { return Vec::new() };
        let private: Vec<&str> = network.subnets.iter().filter(|(_, s)| s.tier == Tier::Private).map(|(id, _)| id.as_str()).collect();
        compute
            .clusters
            .iter()
            .filter(|(_, c)| c.has_capacity())
            .map(|(id, c)| {
                let protected = c.managed_scaling.as_ref().is_some_and(|m| m.enabled && m.termination_protection);
                let d = Desired::new(KIND, id, physical_name(c.name.as_deref(), id, &env.env), ownership_tags(env, id, DeletionPolicy::Delete, &Tags::new()))
                    .with(MIN, c.min_size.unwrap_or_default().to_string())
                    .with(MAX, c.max_size.unwrap_or_default().to_string())
                    .with(DESIRED, c.desired_capacity.unwrap_or_default().to_string())
                    .with_reference(TEMPLATE, launch_template::KIND, id)
                    .with(VERSION, "$Default")
                    .with_references(SUBNETS, subnet::KIND, private.iter().copied())
                    .with(PROTECTED, protected.to_string());
                if c.scaling_is_managed() {
                    d.delegate(DESIRED, ECS_MANAGED_SCALING)
                } else {
                    d
                }
            })
            .collect()
    }

    async fn observe(&self, env: &EnvSpec, desired: &[Desired], _reads: &ReadCache) -> Result<Vec<Live>, AwsError> {
        // Every group of the account (one page of 100 for most), so that names
        // are matched and groups removed from the spec are seen.
        let groups = self.client.describe_auto_scaling_groups().max_records(100).into_paginator().items().send().try_collect().await;
        let groups = groups.aws("AutoScaling.DescribeAutoScalingGroups")?;
        Ok(groups.iter().filter_map(live_group).filter(|g| g.is_named_or_owned(&env.env, desired)).collect())
    }

    async fn create(&self, desired: &Desired, _token: &str, _reads: &ReadCache) -> Result<String, AwsError> {
        let template = LaunchTemplateSpecification::builder().launch_template_id(desired.field(TEMPLATE)).version(desired.field(VERSION)).build();
        let request = self
            .client
            .create_auto_scaling_group()
            .auto_scaling_group_name(&desired.name)
            .min_size(desired.number(MIN, CREATE)?)
            .max_size(desired.number(MAX, CREATE)?)
            .desired_capacity(desired.number(DESIRED, CREATE)?)
            .launch_template(template)
            .vpc_zone_identifier(desired.items(SUBNETS).join(","))
            .new_instances_protected_from_scale_in(desired.field(PROTECTED) == "true")
            .set_tags(Some(tags(&desired.name, &desired.tags)));
        match request.send().await.aws("AutoScaling.CreateAutoScalingGroup") {
            // Group names are unique: one that exists is returned below only if it is this one.
            Err(e) if e.code.as_deref() != Some("AlreadyExists") => return Err(e),
            _ => {}
        }
        let out =
            self.client.describe_auto_scaling_groups().auto_scaling_group_names(&desired.name).send().await.aws("AutoScaling.DescribeAutoScalingGroups")?;
        let group = out.auto_scaling_groups().first().and_then(live_group);
        match group {
            Some(g) if g.carries_ownership_of(desired) => Ok(g.handle),
            Some(_) => Err(AwsError::unexpected("AutoScaling.CreateAutoScalingGroup", format!("a group named {} exists and is not this one", desired.name))),
            None => required("AutoScaling.DescribeAutoScalingGroups", "group ARN", None),
        }
    }

    async fn update(&self, desired: &Desired, live: &Live, delta: &Delta) -> Result<(), AwsError> {
        if !delta.fields.is_empty() {
            let changed = |field: &str| delta.fields.iter().any(|c| c.field == field);
            let mut request = self.client.update_auto_scaling_group().auto_scaling_group_name(&live.name);
            if changed(MIN) || changed(MAX) {
                request = request.min_size(desired.number(MIN, UPDATE)?).max_size(desired.number(MAX, UPDATE)?);
            }
            if changed(DESIRED) {
                request = request.desired_capacity(desired.number(DESIRED, UPDATE)?);
            }
            if changed(TEMPLATE) || changed(VERSION) {
                let template = LaunchTemplateSpecification::builder().launch_template_id(desired.field(TEMPLATE)).version(desired.field(VERSION)).build();
                request = request.launch_template(template);
            }
            if changed(SUBNETS) {
                request = request.vpc_zone_identifier(desired.items(SUBNETS).join(","));
            }
            if changed(PROTECTED) {
                request = request.new_instances_protected_from_scale_in(desired.field(PROTECTED) == "true");
            }
            request.send().await.aws("AutoScaling.UpdateAutoScalingGroup")?;
        }
        if !delta.tags.is_empty() {
            self.client.create_or_update_tags().set_tags(Some(tags(&live.name, &delta.tags))).send().await.aws("AutoScaling.CreateOrUpdateTags")?;
        }
        Ok(())
    }

    async fn delete(&self, live: &Live, _reads: &ReadCache) -> Result<(), AwsError> {
        let deleted = self.client.delete_auto_scaling_group().auto_scaling_group_name(&live.name).force_delete(true).send().await;
        gone_is_ok(deleted.map(|_| ()).aws("AutoScaling.DeleteAutoScalingGroup"))
    }
}

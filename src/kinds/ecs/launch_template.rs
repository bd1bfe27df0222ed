//! Launch templates of the clusters' container instances: the ECS-optimized
//! ARM64 AMI (resolved from AWS's public SSM parameter at plan time), the
//! instance type, the instance profile, user data joining the cluster, IMDSv2
//! required, the cluster's security groups and an encrypted root volume.
//!
//! A template is compared through its default version. A change creates a new
//! version and makes it the default, which the cluster's Auto Scaling group
//! follows (`$Default`); old versions are kept, for rollback. A template
//! comes after its cluster: a cluster the operator does not own gets none.

use crate::engine::focus::EventMatch;
use crate::engine::permissions::{Grant, Permissions};
use async_trait::async_trait;
use aws_sdk_ec2::types::{
    InstanceType, LaunchTemplateBlockDeviceMappingRequest, LaunchTemplateEbsBlockDeviceRequest, LaunchTemplateHttpTokensState,
    LaunchTemplateIamInstanceProfileSpecificationRequest, LaunchTemplateInstanceMetadataEndpointState, LaunchTemplateInstanceMetadataOptionsRequest,
    LaunchTemplateVersion, RequestLaunchTemplateData, ResourceType, VolumeType,
};
use aws_sdk_ec2::Client;
use base64::Engine;

use crate::aws::{required, AwsError, AwsResult};
use crate::engine::{ownership_tags, Delta, Desired, FieldReader, Kind, Layer, Live, ReadCache, Rules, Value};
use crate::kinds::ec2::{gone_is_ok, security_group, tag_map, tag_spec};
use crate::kinds::iam::instance_profile;
use crate::spec::model::{DeletionPolicy, Tags};
use crate::spec::{physical_name, EnvSpec};

/// Kind name.
pub const KIND: &str = "ec2.launch-template";

/// AWS's public parameter naming the current ECS-optimized Amazon Linux 2023 ARM64 AMI.
pub const ECS_ARM64_AMI: &str = "/aws/service/ecs/optimized-ami/amazon-linux-2023/arm64/recommended/image_id";

fields! {
    IMAGE = "ImageId", INSTANCE_TYPE = "InstanceType", PROFILE = "IamInstanceProfile", USER_DATA = "UserData", METADATA = "MetadataHttpTokens",
    GROUPS = "SecurityGroups", ROOT_VOLUME = "RootVolume",
}

/// The root device of the ECS-optimized AMI, and the volume it gets.
const ROOT_DEVICE: &str = "/dev/xvda";
const ROOT_GIB: i32 = 30;

/// The launch-template kind.
pub struct LaunchTemplates {
    /// The service's client, shared by the kinds of the service.
    pub client: Client,
}

/// The user data that joins an instance to `cluster`.
fn user_data(cluster: &str) -> String {
    format!("#!/bin/bash\necho ECS_CLUSTER={cluster} >> /etc/ecs/ecs.config\n")
}

/// User data as one field value: line breaks written `\n`, so a plan shows it on one line.
fn one_line(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

/// The user data a field value written by [`one_line`] holds.
fn from_one_line(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match (c, c == '\\') {
            (_, true) => match chars.next() {
                Some('n') => out.push('\n'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            },
            (c, false) => out.push(c),
        }
    }
    out
}

/// The root volume as one field: device, type, size, encryption.
fn root_volume(device: &str, volume_type: &str, gib: i32, encrypted: bool) -> String {
    format!("{device} {volume_type} {gib}GiB{}", if encrypted { " encrypted" } else { " unencrypted" })
}

/// The fields of a template version.
fn version_fields(live: Live, v: &LaunchTemplateVersion) -> Live {
    let Some(data) = v.launch_template_data() else { return live };
    let decoded = data.user_data().and_then(|u| base64::engine::general_purpose::STANDARD.decode(u).ok());
    let root = data.block_device_mappings().iter().find(|m| m.device_name() == Some(ROOT_DEVICE)).and_then(|m| m.ebs());
    let root = root.map_or_else(String::new, |e| {
        root_volume(ROOT_DEVICE, e.volume_type().map_or("", |t| t.as_str()), e.volume_size().unwrap_or_default(), e.encrypted().unwrap_or(false))
    });
    live.with(IMAGE, data.image_id().unwrap_or_default())
        .with(INSTANCE_TYPE, data.instance_type().map_or("", |t| t.as_str()))
        .with_handle(PROFILE, data.iam_instance_profile().and_then(|p| p.arn()).unwrap_or_default())
        .with(USER_DATA, decoded.map(|d| one_line(&String::from_utf8_lossy(&d))).unwrap_or_default())
        .with(METADATA, data.metadata_options().and_then(|m| m.http_tokens()).map_or("optional", |t| t.as_str()))
        .with(GROUPS, Value::handles(data.security_group_ids()))
        .with(ROOT_VOLUME, root)
}

/// The launch data of `desired` (references already resolved).
fn launch_data(desired: &Desired) -> RequestLaunchTemplateData {
    let metadata = LaunchTemplateInstanceMetadataOptionsRequest::builder()
        .http_tokens(LaunchTemplateHttpTokensState::from(desired.field(METADATA)))
        .http_endpoint(LaunchTemplateInstanceMetadataEndpointState::Enabled)
        .build();
    let ebs =
        LaunchTemplateEbsBlockDeviceRequest::builder().encrypted(true).volume_size(ROOT_GIB).volume_type(VolumeType::Gp3).delete_on_termination(true).build();
    RequestLaunchTemplateData::builder()
        .image_id(desired.field(IMAGE))
        .instance_type(InstanceType::from(desired.field(INSTANCE_TYPE)))
        .iam_instance_profile(LaunchTemplateIamInstanceProfileSpecificationRequest::builder().arn(desired.field(PROFILE)).build())
        .user_data(base64::engine::general_purpose::STANDARD.encode(from_one_line(desired.field(USER_DATA))))
        .metadata_options(metadata)
        .set_security_group_ids(Some(desired.items(GROUPS)))
        .block_device_mappings(LaunchTemplateBlockDeviceMappingRequest::builder().device_name(ROOT_DEVICE).ebs(ebs).build())
        .build()
}

/// What the kind's calls need of IAM.
#[rustfmt::skip]
const PERMISSIONS: Permissions = Permissions {
    reads: &["ec2:DescribeLaunchTemplates", "ec2:DescribeLaunchTemplateVersions"],
    grants: &[
        Grant::allow("ComputeWrites", &["ecs:TagResource"], &["*"]),
        Grant::allow("CreateLaunchTemplatesTaggedAsTheOperators", &["ec2:CreateLaunchTemplate"], &["*"]).when(r#"{"StringEquals": {"aws:RequestTag/sentry:managed-by": "sentry-operator"}}"#),
        Grant::allow("ChangeOnlyTheOperatorsLaunchTemplates", &["ec2:CreateLaunchTemplateVersion", "ec2:ModifyLaunchTemplate", "ec2:DeleteLaunchTemplate"], &["arn:aws:ec2:*:*:launch-template/*"]).when(r#"{"StringEquals": {"aws:ResourceTag/sentry:managed-by": "sentry-operator"}}"#),
    ],
};

#[async_trait]
impl Kind for LaunchTemplates {
    fn rules(&self) -> Rules {
        Rules {
            events: EventMatch::of(
                "ec2.amazonaws.com",
                &["LaunchTemplate"],
                &["launchTemplateId", "LaunchTemplateId", "launchTemplateName", "LaunchTemplateName"],
            )
            .marked("lt-"),
            ..Rules::new(KIND, Layer::Compute).stands_for(&["AWS::EC2::LaunchTemplate", "aws_launch_template"]).needs(PERMISSIONS)
        }
    }

    fn parameters(&self) -> &'static [&'static str] {
        &[ECS_ARM64_AMI]
    }

    fn desired(&self, env: &EnvSpec) -> Vec<Desired> {
        let Some(compute) = &env.spec.compute else { return Vec::new() };
        let image = env.parameter(ECS_ARM64_AMI).map_or_else(|| format!("resolve:ssm:{ECS_ARM64_AMI}"), str::to_string);
        compute
            .clusters
            .iter()
            .filter(|(_, c)| c.has_capacity())
            .map(|(id, c)| {
                let name = physical_name(c.name.as_deref(), id, &env.env);
                let role = c.instance_role.as_deref().unwrap_or_default();
                Desired::new(KIND, id, &name, ownership_tags(env, id, DeletionPolicy::Delete, &Tags::new()))
                    .after(super::cluster::KIND, id)
                    .with(IMAGE, &image)
                    .with(INSTANCE_TYPE, c.instance_type.clone().unwrap_or_default())
                    .with_reference(PROFILE, instance_profile::KIND, role)
                    .with(USER_DATA, one_line(&user_data(&name)))
                    .with(METADATA, "required")
                    .with_references(GROUPS, security_group::KIND, c.security_groups.iter().map(String::as_str))
                    .with(ROOT_VOLUME, root_volume(ROOT_DEVICE, "gp3", ROOT_GIB, true))
            })
            .collect()
    }

    async fn observe(&self, env: &EnvSpec, desired: &[Desired], _reads: &ReadCache) -> Result<Vec<Live>, AwsError> {
        // Every template of the account (few), so that names are matched and
        // those removed from the spec are seen; then every default version at once.
        let templates = self.client.describe_launch_templates().into_paginator().items().send().try_collect().await.aws("EC2.DescribeLaunchTemplates")?;
        let mut found = Vec::new();
        for t in templates {
            let (Some(id), Some(name)) = (t.launch_template_id(), t.launch_template_name()) else { continue };
            let live = Live { name: name.into(), handle: id.into(), tags: tag_map(t.tags()), ..Live::default() };
            if live.is_named_or_owned(&env.env, desired) {
                found.push(live);
            }
        }
        if found.is_empty() {
            return Ok(found);
        }
        let request = self.client.describe_launch_template_versions().versions("$Default");
        let versions = request.into_paginator().items().send().try_collect().await.aws("EC2.DescribeLaunchTemplateVersions")?;
        Ok(found
            .into_iter()
            .map(|live| match versions.iter().find(|v| v.launch_template_id() == Some(live.handle.as_str())) {
                Some(v) => version_fields(live, v),
                None => live,
            })
            .collect())
    }

    async fn create(&self, desired: &Desired, token: &str, _reads: &ReadCache) -> Result<String, AwsError> {
        let request = self
            .client
            .create_launch_template()
            .launch_template_name(&desired.name)
            .launch_template_data(launch_data(desired))
            .tag_specifications(tag_spec(ResourceType::LaunchTemplate, &desired.tags))
            .client_token(token);
        let out = request.send().await.aws("EC2.CreateLaunchTemplate")?;
        required("EC2.CreateLaunchTemplate", "launch template id", out.launch_template().and_then(|t| t.launch_template_id()))
    }

    async fn update(&self, desired: &Desired, live: &Live, delta: &Delta) -> Result<(), AwsError> {
        if !delta.fields.is_empty() {
            let request = self.client.create_launch_template_version().launch_template_id(&live.handle).launch_template_data(launch_data(desired));
            let out = request.send().await.aws("EC2.CreateLaunchTemplateVersion")?;
            let version = out.launch_template_version().and_then(|v| v.version_number());
            let version = version.ok_or_else(|| AwsError::unexpected("EC2.CreateLaunchTemplateVersion", "the reply names no version number"))?;
            let request = self.client.modify_launch_template().launch_template_id(&live.handle).default_version(version.to_string());
            request.send().await.aws("EC2.ModifyLaunchTemplate")?;
        }
        crate::kinds::ec2::put_tags(&self.client, &live.handle, &delta.tags).await
    }

    async fn delete(&self, live: &Live, _reads: &ReadCache) -> Result<(), AwsError> {
        gone_is_ok(self.client.delete_launch_template().launch_template_id(&live.handle).send().await.map(|_| ()).aws("EC2.DeleteLaunchTemplate"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_data_joins_the_cluster() {
        assert_eq!(user_data("sentry-oms-dev"), "#!/bin/bash\necho ECS_CLUSTER=sentry-oms-dev >> /etc/ecs/ecs.config\n");
        assert_eq!(root_volume(ROOT_DEVICE, "gp3", 30, true), "/dev/xvda gp3 30GiB encrypted");
        let text = "#!/bin/bash\necho 'a\\nb' \\\n";
        assert!(!one_line(text).contains('\n'));
        assert_eq!(from_one_line(&one_line(text)), text, "round trip, backslashes included");
    }
}

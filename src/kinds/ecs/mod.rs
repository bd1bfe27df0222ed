//! ECS: clusters, their EC2 capacity (launch templates, Auto Scaling groups,
//! capacity providers),
//! task definitions and services.

pub mod auto_scaling_group;
pub mod capacity_provider;
pub mod cluster;
pub mod cluster_capacity;
pub mod launch_template;
pub mod service;
pub mod task_definition;

use aws_sdk_ecs::types::Tag;
use aws_sdk_ecs::Client;

use crate::aws::{AwsError, AwsResult};
use crate::spec::model::Tags;

/// Tags as ECS tags.
pub fn tag_list(tags: &Tags) -> Vec<Tag> {
    tags.iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect()
}

/// ECS tags as a map.
pub fn tag_map(tags: &[Tag]) -> Tags {
    tags.iter().filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or_default().to_string()))).collect()
}

/// Adds `tags` to the resource `arn`.
pub async fn add_tags(client: &Client, arn: &str, tags: &Tags) -> Result<(), AwsError> {
    if tags.is_empty() {
        return Ok(());
    }
    client.tag_resource().resource_arn(arn).set_tags(Some(tag_list(tags))).send().await.aws("ECS.TagResource")?;
    Ok(())
}

//! ElastiCache Redis: the cache subnet group over the private subnets, and
//! the replication group.

pub mod replication_group;
pub mod subnet_group;

use aws_sdk_elasticache::types::Tag;
use aws_sdk_elasticache::Client;

use crate::aws::{AwsError, AwsResult};
use crate::spec::model::{Redis, Tags};
use crate::spec::{physical_name, EnvSpec};

/// The spec's Redis and its physical name (`sentry-redis-<env>`).
pub fn redis(env: &EnvSpec) -> Option<(&Redis, String)> {
    let r = env.spec.data.as_ref()?.redis.as_ref()?;
    Some((r, physical_name(r.name.as_deref(), "redis", &env.env)))
}

/// Tags as ElastiCache tags.
pub fn tag_list(tags: &Tags) -> Vec<Tag> {
    tags.iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect()
}

/// The tags of resource `arn` of environment `env`, which the spec names:
/// from the pass's tagging read, else from ElastiCache.
pub async fn tags_of(client: &Client, index: &crate::kinds::read::TagIndex, env: &str, reads: &crate::engine::ReadCache, arn: &str) -> Result<Tags, AwsError> {
    if let Some(tags) = index.tags_of(env, reads, arn, true).await {
        return Ok(tags);
    }
    let out = client.list_tags_for_resource().resource_name(arn).send().await.aws("ElastiCache.ListTagsForResource")?;
    Ok(out.tag_list().iter().filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or_default().to_string()))).collect())
}

/// Adds `tags` to resource `arn`.
pub async fn add_tags(client: &Client, arn: &str, tags: &Tags) -> Result<(), AwsError> {
    if tags.is_empty() {
        return Ok(());
    }
    client.add_tags_to_resource().resource_name(arn).set_tags(Some(tag_list(tags))).send().await.aws("ElastiCache.AddTagsToResource")?;
    Ok(())
}

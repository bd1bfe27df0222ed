//! Reads every kind shares: the name filter that sees all of a kind's
//! resources, describing listed resources a few at a time, and the tags of
//! every resource of an environment in one paginated read.

use std::collections::HashMap;

use futures::stream::{self, StreamExt, TryStreamExt};

use crate::aws::{AwsError, AwsResult};
use crate::engine::{ReadCache, TAG_ENV};
use crate::spec::model::Tags;

/// A JSON document in one canonical form (keys sorted, no spaces), so that
/// the way AWS reformats a document (a queue policy, an event pattern) never
/// shows as drift; text that is not JSON is kept as it is.
pub fn canonical_json(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text).map_or_else(|_| text.to_string(), |v| v.to_string())
}

/// The names of the `desired` resources that `ids` (a narrowed pass's, [`ReadCache::named`]) name.
pub fn named_desired(desired: &[crate::engine::Desired], ids: &std::collections::BTreeSet<String>) -> Vec<String> {
    desired.iter().filter(|d| ids.iter().any(|id| crate::engine::focus::names(id, &d.name))).map(|d| d.name.clone()).collect()
}

/// How the kinds that can read tags in batch read them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum TagReads {
    /// One paginated Resource Groups Tagging API read per pass for every
    /// resource of the environment (one tag read per resource where it lacks
    /// one: AWS denied it, or the resource carries no `sentry:env` tag).
    #[default]
    Batched,
    /// One tag read per resource, from each service's own API.
    PerResource,
}

/// The Resource Groups Tagging API as a source of tags: GetResources
/// filtered on `sentry:env`, made once per full pass and shared by the kinds,
/// instead of one ListTags call per queue, table, alarm, log group, topic and
/// Redis group. The API is eventually consistent, so a narrowed pass (one an
/// event asked for, about a change just made) reads tags from the resource.
/// The default reads every resource's tags from the resource.
#[derive(Clone, Default)]
pub struct TagIndex {
    client: Option<aws_sdk_resourcegroupstagging::Client>,
}

/// The environment's resources' tags by ARN; `None` when the read failed.
type Index = Option<HashMap<String, Tags>>;

impl TagIndex {
    /// An index over `client`, or none (`PerResource`).
    pub fn new(client: aws_sdk_resourcegroupstagging::Client, reads: TagReads) -> Self {
        TagIndex { client: (reads == TagReads::Batched).then_some(client) }
    }

    /// The tags of the resource `arn` of environment `env`, from the pass's
    /// one GetResources; `None`: read them from the resource (the index is
    /// off, failed, the pass is narrowed, the resource is not tagged as the
    /// environment's, or it is not `in_spec`: a resource the pass could orphan
    /// or delete is judged by its own, current tags, never by a lagging index).
    pub async fn tags_of(&self, env: &str, reads: &ReadCache, arn: &str, in_spec: bool) -> Option<Tags> {
        let client = self.client.as_ref().filter(|_| in_spec && !reads.is_narrowed())?;
        let index = reads.get::<Index, _, _>("Tagging.GetResources", || async { Ok(Self::read(client, env).await) }).await.ok()?;
        index.as_ref().as_ref()?.get(arn).cloned()
    }

    async fn read(client: &aws_sdk_resourcegroupstagging::Client, env: &str) -> Index {
        let filter = aws_sdk_resourcegroupstagging::types::TagFilter::builder().key(TAG_ENV).values(env).build();
        let pages = client.get_resources().tag_filters(filter).resources_per_page(100).into_paginator().send().try_collect().await;
        match pages.aws("Tagging.GetResources") {
            Ok(pages) => Some(
                pages
                    .iter()
                    .flat_map(|p| p.resource_tag_mapping_list())
                    .filter_map(|r| Some((r.resource_arn()?.to_string(), r.tags().iter().map(|t| (t.key().to_string(), t.value().to_string())).collect())))
                    .collect(),
            ),
            Err(e) => {
                tracing::warn!(error = %e, "the Resource Groups Tagging API failed: reading tags one resource at a time in this pass");
                None
            }
        }
    }
}

/// The longest prefix shared by all `names` (empty for none): the name filter
/// of a List/Describe call that must see every resource of a kind.
pub fn common_prefix<'a>(mut names: impl Iterator<Item = &'a str>) -> String {
    let Some(first) = names.next() else { return String::new() };
    let mut prefix = first.to_string();
    for name in names {
        let common = prefix.chars().zip(name.chars()).take_while(|(a, b)| a == b).count();
        prefix.truncate(prefix.char_indices().nth(common).map_or(prefix.len(), |(i, _)| i));
    }
    prefix
}

/// Describes each listed resource, at most `concurrency` at a time; those
/// that vanished since they were listed (`None`) are left out.
pub async fn describe_each<T, U, Fut>(listed: Vec<T>, concurrency: usize, describe: impl Fn(T) -> Fut) -> Result<Vec<U>, AwsError>
where
    Fut: std::future::Future<Output = Result<Option<U>, AwsError>>,
{
    let described: Vec<Option<U>> = stream::iter(listed).map(describe).buffer_unordered(concurrency).try_collect().await?;
    Ok(described.into_iter().flatten().collect())
}

#[cfg(test)]
mod tests {
    use super::common_prefix;

    #[test]
    fn prefix_of_names() {
        assert_eq!(common_prefix(["/ecs/sentry-oms-dev", "/ecs/sentry-websocket-dev"].into_iter()), "/ecs/sentry-");
        // The SQS list filter: `sentry-` and the queue names.
        assert_eq!(common_prefix(["sentry-", "sentry-a-dev", "sentry-b-dev"].into_iter()), "sentry-");
        assert_eq!(common_prefix(["sentry-", "sentry-a-dev", "other"].into_iter()), "");
        assert_eq!(common_prefix(["sentry-"].into_iter()), "sentry-");
        assert_eq!(common_prefix(["a"].into_iter()), "a");
        assert_eq!(common_prefix(std::iter::empty()), "");
    }
}

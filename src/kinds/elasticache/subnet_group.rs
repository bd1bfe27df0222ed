//! The cache subnet group: the private subnets Redis lives in.

use crate::engine::focus::EventMatch;
use crate::engine::permissions::{Grant, Permissions};
use async_trait::async_trait;
use aws_sdk_elasticache::Client;

use super::{add_tags, redis, tag_list, tags_of};
use crate::aws::{found, gone_is_ok, required, AwsError, AwsResult};
use crate::engine::{ownership_tags, Delta, Desired, FieldReader, Kind, Layer, Live, ReadCache, Rules, Value};
use crate::kinds::ec2::subnet;
use crate::spec::model::{DeletionPolicy, Tags};
use crate::spec::EnvSpec;

/// Kind name.
pub const KIND: &str = "elasticache.subnet-group";
/// The logical id of the Redis subnet group.
pub const ID: &str = "redis";

fields! { SUBNETS = "SubnetIds", ARN = "arn" }

/// The cache-subnet-group kind.
pub struct SubnetGroups {
    /// The service's client, shared by the kinds of the service.
    pub client: Client,
    /// Tags in batch.
    pub tags: crate::kinds::read::TagIndex,
}

/// What the kind's calls need of IAM.
#[rustfmt::skip]
const PERMISSIONS: Permissions = Permissions {
    reads: &["elasticache:DescribeCacheSubnetGroups", "tag:GetResources"],
    grants: &[Grant::allow("RedisWrites", &["elasticache:ListTagsForResource", "elasticache:AddTagsToResource", "elasticache:CreateCacheSubnetGroup", "elasticache:ModifyCacheSubnetGroup", "elasticache:DeleteCacheSubnetGroup"], &["arn:aws:elasticache:*:*:subnetgroup:sentry-*", "arn:aws:elasticache:*:*:replicationgroup:sentry-*", "arn:aws:elasticache:*:*:cluster:sentry-*", "arn:aws:elasticache:*:*:parametergroup:*", "arn:aws:elasticache:*:*:securitygroup:*", "arn:aws:elasticache:*:*:user:*", "arn:aws:elasticache:*:*:usergroup:*"])],
};

#[async_trait]
impl Kind for SubnetGroups {
    fn rules(&self) -> Rules {
        Rules {
            events: EventMatch::of("elasticache.amazonaws.com", &["CacheSubnetGroup"], &["cacheSubnetGroupName", "CacheSubnetGroupName"])
                .marked("subnetgroup:"),
            ..Rules::new(KIND, Layer::DataMessaging).stands_for(&["AWS::ElastiCache::SubnetGroup", "aws_elasticache_subnet_group"]).needs(PERMISSIONS)
        }
    }

    fn desired(&self, env: &EnvSpec) -> Vec<Desired> {
        let (Some((r, name)), Some(network)) = (redis(env), env.spec.network.as_ref()) else { return Vec::new() };
        let subnets = network.subnets.iter().filter(|(_, s)| s.tier == r.subnets).map(|(id, _)| id.as_str());
        vec![Desired::new(KIND, ID, name, ownership_tags(env, ID, DeletionPolicy::Delete, &Tags::new())).with_references(SUBNETS, subnet::KIND, subnets)]
    }

    async fn observe(&self, env: &EnvSpec, desired: &[Desired], reads: &ReadCache) -> Result<Vec<Live>, AwsError> {
        let Some(d) = desired.first() else { return Ok(Vec::new()) };
        // An adopted group keeps its own name.
        let name = d.adopted_id().unwrap_or(&d.name);
        let Some(out) =
            found(self.client.describe_cache_subnet_groups().cache_subnet_group_name(name).send().await.aws("ElastiCache.DescribeCacheSubnetGroups"))?
        else {
            return Ok(Vec::new());
        };
        let mut groups = Vec::new();
        for g in out.cache_subnet_groups() {
            let (Some(name), Some(arn)) = (g.cache_subnet_group_name(), g.arn()) else { continue };
            let subnets = Value::handles(g.subnets().iter().filter_map(|s| s.subnet_identifier()));
            let meta = [(ARN.to_string(), arn.to_string())].into();
            groups.push(
                Live { name: name.into(), handle: name.into(), tags: tags_of(&self.client, &self.tags, &env.env, reads, arn).await?, meta, ..Live::default() }
                    .with(SUBNETS, subnets),
            );
        }
        Ok(groups)
    }

    async fn create(&self, desired: &Desired, _token: &str, _reads: &ReadCache) -> Result<String, AwsError> {
        let request = self
            .client
            .create_cache_subnet_group()
            .cache_subnet_group_name(&desired.name)
            .cache_subnet_group_description("Sentry Redis (private subnets)")
            .set_subnet_ids(Some(desired.items(SUBNETS)));
        let out = request.set_tags(Some(tag_list(&desired.tags))).send().await.aws("ElastiCache.CreateCacheSubnetGroup")?;
        required("ElastiCache.CreateCacheSubnetGroup", "subnet group name", out.cache_subnet_group().and_then(|g| g.cache_subnet_group_name()))
    }

    async fn update(&self, desired: &Desired, live: &Live, delta: &Delta) -> Result<(), AwsError> {
        if delta.fields.iter().any(|c| c.field == SUBNETS) {
            self.client
                .modify_cache_subnet_group()
                .cache_subnet_group_name(&live.name)
                .set_subnet_ids(Some(desired.items(SUBNETS)))
                .send()
                .await
                .aws("ElastiCache.ModifyCacheSubnetGroup")?;
        }
        add_tags(&self.client, live.meta(ARN, "ElastiCache.AddTagsToResource")?, &delta.tags).await
    }

    async fn delete(&self, live: &Live, _reads: &ReadCache) -> Result<(), AwsError> {
        gone_is_ok(
            self.client.delete_cache_subnet_group().cache_subnet_group_name(&live.name).send().await.map(|_| ()).aws("ElastiCache.DeleteCacheSubnetGroup"),
        )
    }
}

//! The cache subnet group: the private subnets Redis lives in.

use async_trait::async_trait;
use aws_sdk_elasticache::Client;

use super::{add_tags, redis, tag_list, tags_of};
use crate::aws::{found, gone_is_ok, required, AwsError, AwsResult};
use crate::engine::{ownership_tags, reference, Delta, Desired, Kind, Live, ReadCache, ResourceKey, Rules};
use crate::kinds::ec2::subnet;
use crate::spec::model::{DeletionPolicy, Tags};
use crate::spec::EnvSpec;

/// Kind name.
pub const KIND: &str = "elasticache.subnet-group";
/// The logical id of the Redis subnet group.
pub const ID: &str = "redis";

const SUBNETS: &str = "SubnetIds";
const ARN: &str = "arn";

/// The cache-subnet-group kind.
pub struct SubnetGroups {
    /// The service's client, shared by the kinds of the service.
    pub client: Client,
}

fn split(list: Option<&String>) -> Vec<String> {
    list.map(|l| l.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect()).unwrap_or_default()
}

#[async_trait]
impl Kind for SubnetGroups {
    fn rules(&self) -> Rules {
        Rules::new(KIND)
    }

    fn desired(&self, env: &EnvSpec) -> Vec<Desired> {
        let (Some((r, name)), Some(network)) = (redis(env), env.spec.network.as_ref()) else { return Vec::new() };
        let subnets: Vec<&String> = network.subnets.iter().filter(|(_, s)| s.tier == r.subnets).map(|(id, _)| id).collect();
        let mut d = Desired {
            key: ResourceKey { kind: KIND, id: ID.into() },
            name,
            fields: Default::default(),
            tags: ownership_tags(env, ID, DeletionPolicy::Delete, &Tags::new()),
            depends_on: subnets.iter().map(|s| ResourceKey { kind: subnet::KIND, id: s.to_string() }).collect(),
            adopt: false,
        };
        d.fields.insert(SUBNETS.into(), subnets.iter().map(|s| reference(subnet::KIND, s)).collect::<Vec<_>>().join(","));
        vec![d]
    }

    async fn observe(&self, _env: &EnvSpec, desired: &[Desired], _reads: &ReadCache) -> Result<Vec<Live>, AwsError> {
        let Some(d) = desired.first() else { return Ok(Vec::new()) };
        let Some(out) =
            found(self.client.describe_cache_subnet_groups().cache_subnet_group_name(&d.name).send().await.aws("ElastiCache.DescribeCacheSubnetGroups"))?
        else {
            return Ok(Vec::new());
        };
        let mut groups = Vec::new();
        for g in out.cache_subnet_groups() {
            let (Some(name), Some(arn)) = (g.cache_subnet_group_name(), g.arn()) else { continue };
            let mut subnets: Vec<&str> = g.subnets().iter().filter_map(|s| s.subnet_identifier()).collect();
            subnets.sort_unstable();
            let mut l = Live { name: name.into(), handle: name.into(), tags: tags_of(&self.client, arn).await?, ..Live::default() };
            l.fields.insert(SUBNETS.into(), subnets.join(","));
            l.meta.insert(ARN.into(), arn.into());
            groups.push(l);
        }
        Ok(groups)
    }

    async fn create(&self, desired: &Desired, _token: &str) -> Result<String, AwsError> {
        let out = self
            .client
            .create_cache_subnet_group()
            .cache_subnet_group_name(&desired.name)
            .cache_subnet_group_description("Sentry Redis (private subnets)")
            .set_subnet_ids(Some(split(desired.fields.get(SUBNETS))))
            .set_tags(Some(tag_list(&desired.tags)))
            .send()
            .await
            .aws("ElastiCache.CreateCacheSubnetGroup")?;
        required("ElastiCache.CreateCacheSubnetGroup", "subnet group name", out.cache_subnet_group().and_then(|g| g.cache_subnet_group_name()))
    }

    async fn update(&self, desired: &Desired, live: &Live, delta: &Delta) -> Result<(), AwsError> {
        if delta.fields.iter().any(|c| c.field == SUBNETS) {
            self.client
                .modify_cache_subnet_group()
                .cache_subnet_group_name(&desired.name)
                .set_subnet_ids(Some(split(desired.fields.get(SUBNETS))))
                .send()
                .await
                .aws("ElastiCache.ModifyCacheSubnetGroup")?;
        }
        add_tags(&self.client, live.meta.get(ARN).map(String::as_str).unwrap_or_default(), &delta.tags).await
    }

    async fn delete(&self, live: &Live) -> Result<(), AwsError> {
        gone_is_ok(
            self.client.delete_cache_subnet_group().cache_subnet_group_name(&live.name).send().await.map(|_| ()).aws("ElastiCache.DeleteCacheSubnetGroup"),
        )
    }
}

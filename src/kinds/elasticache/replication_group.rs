//! The Redis replication group: engine, node type, node count, automatic
//! failover and multi-AZ, encryption at rest and in transit, snapshot
//! retention, subnet group and security groups.
//!
//! The group is created as one node group (cluster mode disabled) with
//! `ReplicasPerNodeGroup` = nodes - 1 rather than with `NumCacheClusters`:
//! AWS accepts both forms, and the emulator honours only the first. The node
//! count is read back from `MemberClusters`, which both report.
//!
//! Node type, failover, multi-AZ and snapshot retention change through
//! ModifyReplicationGroup; the node count through Increase/DecreaseReplicaCount.
//! The emulator serves none of these, so that path is tested with
//! aws-smithy-mocks. Encryption settings need a new group: BLOCKED. DescribeReplicationGroups does
//! not report the subnet group, security groups or engine version, so those
//! are set at creation and not compared.

use crate::engine::focus::EventMatch;
use crate::engine::permissions::{Grant, Permissions};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_elasticache::Client;

use super::{add_tags, redis, subnet_group, tag_list, tags_of};
use crate::aws::{found, gone_is_ok, required, wait_for, AwsError, AwsResult};
use crate::engine::{ownership_tags, Delta, Desired, FieldReader, Kind, Layer, Live, ReadCache, Rules, Value};
use crate::kinds::ec2::security_group;
use crate::spec::model::Tags;
use crate::spec::EnvSpec;

/// Kind name.
pub const KIND: &str = "elasticache.replication-group";
/// The logical id of the environment's Redis.
pub const ID: &str = "redis";

fields! {
    ENGINE = "Engine", NODE_TYPE = "CacheNodeType", NODES = "NumCacheClusters", FAILOVER = "AutomaticFailover", MULTI_AZ = "MultiAZ",
    AT_REST = "AtRestEncryption", IN_TRANSIT = "TransitEncryption", SNAPSHOTS = "SnapshotRetentionLimit", SUBNET_GROUP = "CacheSubnetGroupName",
    SECURITY_GROUPS = "SecurityGroupIds", VERSION = "EngineVersion",
}
/// How long a replication group may take to become available.
const WAIT: Duration = Duration::from_secs(3600);

/// The replicas (nodes besides the primary) of a group of `nodes` nodes
/// (validation keeps the spec's count in 1..=6).
fn replicas(nodes: &str) -> Result<i32, AwsError> {
    match nodes.parse::<i32>() {
        Ok(n) if n >= 1 => Ok(n - 1),
        _ => Err(AwsError::unexpected("ElastiCache.CreateReplicationGroup", format!("node count {nodes:?} is not a positive number"))),
    }
}

fn enabled(on: bool) -> String {
    if on { "enabled" } else { "disabled" }.to_string()
}

/// The replication-group kind.
pub struct ReplicationGroups {
    /// The service's client, shared by the kinds of the service.
    pub client: Client,
    /// Tags in batch.
    pub tags: crate::kinds::read::TagIndex,
}

impl ReplicationGroups {
    async fn wait_available(&self, id: &str) -> Result<(), AwsError> {
        wait_for("ElastiCache.DescribeReplicationGroups", WAIT, || async {
            let out = self.client.describe_replication_groups().replication_group_id(id).send().await.aws("ElastiCache.DescribeReplicationGroups")?;
            Ok(out.replication_groups().first().is_some_and(|g| g.status() == Some("available")).then_some(()))
        })
        .await
    }
}

/// What the kind's calls need of IAM.
#[rustfmt::skip]
const PERMISSIONS: Permissions = Permissions {
    reads: &["elasticache:DescribeReplicationGroups", "tag:GetResources"],
    grants: &[Grant::allow("RedisWrites", &["elasticache:ListTagsForResource", "elasticache:AddTagsToResource", "elasticache:CreateReplicationGroup", "elasticache:ModifyReplicationGroup", "elasticache:IncreaseReplicaCount", "elasticache:DecreaseReplicaCount", "elasticache:DeleteReplicationGroup"], &["arn:aws:elasticache:*:*:subnetgroup:sentry-*", "arn:aws:elasticache:*:*:replicationgroup:sentry-*", "arn:aws:elasticache:*:*:cluster:sentry-*", "arn:aws:elasticache:*:*:parametergroup:*", "arn:aws:elasticache:*:*:securitygroup:*", "arn:aws:elasticache:*:*:user:*", "arn:aws:elasticache:*:*:usergroup:*"])],
};

#[async_trait]
impl Kind for ReplicationGroups {
    fn rules(&self) -> Rules {
        Rules {
            immutable: &[ENGINE, AT_REST, IN_TRANSIT],
            create_only: &[SUBNET_GROUP, SECURITY_GROUPS, VERSION],
            events: EventMatch::of("elasticache.amazonaws.com", &["ReplicationGroup", "ReplicaCount"], &["replicationGroupId", "ReplicationGroupId"])
                .marked("replicationgroup:"),
            ..Rules::new(KIND, Layer::DataMessaging).stands_for(&["AWS::ElastiCache::ReplicationGroup", "aws_elasticache_replication_group"]).needs(PERMISSIONS)
        }
    }

    fn desired(&self, env: &EnvSpec) -> Vec<Desired> {
        let Some((r, name)) = redis(env) else { return Vec::new() };
        let d = Desired::new(KIND, ID, name, ownership_tags(env, ID, r.deletion_policy, &Tags::new()))
            .with(ENGINE, "redis")
            .with(NODE_TYPE, &r.node_type)
            .with(NODES, r.num_cache_clusters.to_string())
            .with(FAILOVER, enabled(r.automatic_failover))
            .with(MULTI_AZ, enabled(r.multi_az))
            .with(AT_REST, r.at_rest_encryption.to_string())
            .with(IN_TRANSIT, r.transit_encryption.to_string())
            .with(SNAPSHOTS, r.snapshot_retention_days.to_string())
            .with_reference(SUBNET_GROUP, subnet_group::KIND, subnet_group::ID)
            .with_references(SECURITY_GROUPS, security_group::KIND, r.security_groups.iter().map(String::as_str));
        vec![match &r.engine_version {
            Some(version) => d.with(VERSION, version),
            None => d,
        }]
    }

    async fn observe(&self, env: &EnvSpec, desired: &[Desired], reads: &ReadCache) -> Result<Vec<Live>, AwsError> {
        let Some(d) = desired.first() else { return Ok(Vec::new()) };
        let Some(out) =
            found(self.client.describe_replication_groups().replication_group_id(&d.name).send().await.aws("ElastiCache.DescribeReplicationGroups"))?
        else {
            return Ok(Vec::new());
        };
        let mut groups = Vec::new();
        for g in out.replication_groups() {
            let (Some(name), Some(arn)) = (g.replication_group_id(), g.arn()) else { continue };
            let failover = g.automatic_failover().map_or("disabled", |a| a.as_str()).split('-').next().unwrap_or("disabled");
            let l = Live { name: name.into(), handle: arn.into(), tags: tags_of(&self.client, &self.tags, &env.env, reads, arn).await?, ..Live::default() };
            groups.push(
                l.with(ENGINE, g.engine().unwrap_or("redis"))
                    .with(NODE_TYPE, g.cache_node_type().unwrap_or_default())
                    .with(NODES, g.member_clusters().len().to_string())
                    .with(FAILOVER, failover)
                    .with(MULTI_AZ, g.multi_az().map_or("disabled", |m| m.as_str()))
                    .with(AT_REST, g.at_rest_encryption_enabled().unwrap_or(false).to_string())
                    .with(IN_TRANSIT, g.transit_encryption_enabled().unwrap_or(false).to_string())
                    .with(SNAPSHOTS, g.snapshot_retention_limit().unwrap_or(0).to_string()),
            );
        }
        Ok(groups)
    }

    async fn create(&self, desired: &Desired, _token: &str, _reads: &ReadCache) -> Result<String, AwsError> {
        let field = |f: &str| desired.field(f);
        let replicas = replicas(field(NODES))?;
        let out = self
            .client
            .create_replication_group()
            .replication_group_id(&desired.name)
            .replication_group_description("Sentry OMS cache")
            .engine("redis")
            .set_engine_version(desired.fields.get(VERSION).and_then(Value::as_text).map(str::to_string))
            .cache_node_type(field(NODE_TYPE))
            // One shard of a primary and its replicas (see the module doc).
            .num_node_groups(1)
            .replicas_per_node_group(replicas)
            .automatic_failover_enabled(field(FAILOVER) == "enabled")
            .multi_az_enabled(field(MULTI_AZ) == "enabled")
            .at_rest_encryption_enabled(field(AT_REST) == "true")
            .transit_encryption_enabled(field(IN_TRANSIT) == "true")
            .snapshot_retention_limit(field(SNAPSHOTS).parse().unwrap_or(0))
            .cache_subnet_group_name(field(SUBNET_GROUP))
            .set_security_group_ids(Some(desired.items(SECURITY_GROUPS)))
            .set_tags(Some(tag_list(&desired.tags)))
            .send()
            .await
            .aws("ElastiCache.CreateReplicationGroup")?;
        self.wait_available(&desired.name).await?;
        required("ElastiCache.CreateReplicationGroup", "replication group ARN", out.replication_group().and_then(|g| g.arn()))
    }

    async fn update(&self, desired: &Desired, live: &Live, delta: &Delta) -> Result<(), AwsError> {
        let changed = |f: &str| delta.fields.iter().find(|c| c.field == f).and_then(|c| c.desired_text().map(str::to_string));
        let (node_type, failover, multi_az, snapshots) = (changed(NODE_TYPE), changed(FAILOVER), changed(MULTI_AZ), changed(SNAPSHOTS));
        if node_type.is_some() || failover.is_some() || multi_az.is_some() || snapshots.is_some() {
            self.client
                .modify_replication_group()
                .replication_group_id(&desired.name)
                .set_cache_node_type(node_type)
                .set_automatic_failover_enabled(failover.map(|f| f == "enabled"))
                .set_multi_az_enabled(multi_az.map(|m| m == "enabled"))
                .set_snapshot_retention_limit(snapshots.and_then(|s| s.parse().ok()))
                .apply_immediately(true)
                .send()
                .await
                .aws("ElastiCache.ModifyReplicationGroup")?;
            self.wait_available(&desired.name).await?;
        }
        if let Some(change) = delta.fields.iter().find(|c| c.field == NODES) {
            let want: i32 = change.desired_text().and_then(|n| n.parse().ok()).unwrap_or(1);
            let have: i32 = change.live_text().and_then(|n| n.parse().ok()).unwrap_or(1);
            let (group, replicas) = (&desired.name, want - 1); // the replica count excludes the primary
            if want > have {
                let request = self.client.increase_replica_count().replication_group_id(group).new_replica_count(replicas);
                request.apply_immediately(true).send().await.aws("ElastiCache.IncreaseReplicaCount")?;
            } else {
                let request = self.client.decrease_replica_count().replication_group_id(group).new_replica_count(replicas);
                request.apply_immediately(true).send().await.aws("ElastiCache.DecreaseReplicaCount")?;
            }
            self.wait_available(&desired.name).await?;
        }
        add_tags(&self.client, &live.handle, &delta.tags).await
    }

    async fn delete(&self, live: &Live, _reads: &ReadCache) -> Result<(), AwsError> {
        gone_is_ok(self.client.delete_replication_group().replication_group_id(&live.name).send().await.map(|_| ()).aws("ElastiCache.DeleteReplicationGroup"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::FieldChange;
    use aws_sdk_elasticache::operation::create_replication_group::CreateReplicationGroupOutput;
    use aws_sdk_elasticache::operation::describe_replication_groups::DescribeReplicationGroupsOutput;
    use aws_sdk_elasticache::operation::increase_replica_count::IncreaseReplicaCountOutput;
    use aws_sdk_elasticache::operation::modify_replication_group::ModifyReplicationGroupOutput;
    use aws_sdk_elasticache::types::ReplicationGroup;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};

    fn change(field: &str, live: &str, desired: &str) -> FieldChange {
        FieldChange::of(field, Some(live.into()), Some(desired.into()))
    }

    fn redis_desired() -> Desired {
        Desired::new(KIND, ID, "sentry-redis-prod", Tags::new())
    }

    // The emulator has no ModifyReplicationGroup nor Increase/DecreaseReplicaCount:
    // the modify path is tested against mocks.
    #[tokio::test]
    async fn drift_in_size_and_retention_is_modified_in_place() {
        let modify = mock!(Client::modify_replication_group)
            .match_requests(|r| {
                r.replication_group_id() == Some("sentry-redis-prod")
                    && r.cache_node_type() == Some("cache.r7g.large")
                    && r.snapshot_retention_limit() == Some(7)
                    && r.automatic_failover_enabled() == Some(true)
                    && r.apply_immediately() == Some(true)
            })
            .then_output(|| ModifyReplicationGroupOutput::builder().build());
        let grow = mock!(Client::increase_replica_count)
            .match_requests(|r| r.new_replica_count() == Some(1))
            .then_output(|| IncreaseReplicaCountOutput::builder().build());
        let available = mock!(Client::describe_replication_groups)
            .then_output(|| DescribeReplicationGroupsOutput::builder().replication_groups(ReplicationGroup::builder().status("available").build()).build());
        let client = mock_client!(aws_sdk_elasticache, RuleMode::MatchAny, [&modify, &grow, &available]);
        let kind = ReplicationGroups { client, tags: Default::default() };
        let delta = Delta {
            fields: vec![
                change(NODE_TYPE, "cache.t4g.micro", "cache.r7g.large"),
                change(SNAPSHOTS, "1", "7"),
                change(FAILOVER, "disabled", "enabled"),
                change(NODES, "1", "2"),
            ],
            tags: Tags::new(),
        };
        let live =
            Live { name: "sentry-redis-prod".into(), handle: "arn:aws:elasticache:us-east-1:1:replicationgroup:sentry-redis-prod".into(), ..Live::default() };
        kind.update(&redis_desired(), &live, &delta).await.expect("modified");
        assert_eq!(modify.num_calls(), 1, "one ModifyReplicationGroup for all in-place fields");
        assert_eq!(grow.num_calls(), 1, "node count 1 -> 2 adds one replica");
        assert!(available.num_calls() >= 2, "waits for the group after each change");
    }

    // The emulator ignores NumCacheClusters: the group is created as one node
    // group with nodes - 1 replicas, which AWS and the emulator both honour.
    #[tokio::test]
    async fn a_two_node_group_is_created_as_one_shard_with_one_replica() {
        let create = mock!(Client::create_replication_group)
            .match_requests(|r| {
                r.replication_group_id() == Some("sentry-redis-prod")
                    && r.num_node_groups() == Some(1)
                    && r.replicas_per_node_group() == Some(1)
                    && r.num_cache_clusters().is_none()
                    && r.automatic_failover_enabled() == Some(true)
                    && r.multi_az_enabled() == Some(true)
            })
            .then_output(|| {
                CreateReplicationGroupOutput::builder()
                    .replication_group(ReplicationGroup::builder().arn("arn:aws:elasticache:us-east-1:1:replicationgroup:sentry-redis-prod").build())
                    .build()
            });
        let available = mock!(Client::describe_replication_groups)
            .then_output(|| DescribeReplicationGroupsOutput::builder().replication_groups(ReplicationGroup::builder().status("available").build()).build());
        let kind = ReplicationGroups { client: mock_client!(aws_sdk_elasticache, RuleMode::MatchAny, [&create, &available]), tags: Default::default() };
        let mut desired = redis_desired();
        for (field, value) in [(NODE_TYPE, "cache.r7g.large"), (NODES, "2"), (FAILOVER, "enabled"), (MULTI_AZ, "enabled")] {
            desired.fields.insert(field.into(), value.into());
        }
        let arn = kind.create(&desired, "token", &ReadCache::default()).await.expect("created");
        assert_eq!(create.num_calls(), 1);
        assert!(arn.ends_with(":sentry-redis-prod"), "{arn}");
    }

    #[test]
    fn the_replica_count_excludes_the_primary() {
        assert_eq!([replicas("1"), replicas("2"), replicas("6")].map(Result::ok), [Some(0), Some(1), Some(5)]);
        assert!(replicas("0").is_err() && replicas("").is_err(), "no silent default");
    }

    #[tokio::test]
    async fn fewer_nodes_decrease_the_replica_count() {
        let shrink = mock!(Client::decrease_replica_count)
            .match_requests(|r| r.new_replica_count() == Some(0))
            .then_output(|| aws_sdk_elasticache::operation::decrease_replica_count::DecreaseReplicaCountOutput::builder().build());
        let available = mock!(Client::describe_replication_groups)
            .then_output(|| DescribeReplicationGroupsOutput::builder().replication_groups(ReplicationGroup::builder().status("available").build()).build());
        let kind = ReplicationGroups { client: mock_client!(aws_sdk_elasticache, RuleMode::MatchAny, [&shrink, &available]), tags: Default::default() };
        let delta = Delta { fields: vec![change(NODES, "2", "1")], tags: Tags::new() };
        kind.update(&redis_desired(), &Live::default(), &delta).await.expect("shrunk");
        assert_eq!(shrink.num_calls(), 1);
    }
}

//! The `data` section: DynamoDB tables and the Redis replication group; their types and
//! their checks.

use std::collections::{BTreeMap, BTreeSet};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::model::*;
use super::physical_name;
use super::validate::Checker;

/// DynamoDB and ElastiCache.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Data {
    /// DynamoDB tables by logical id.
    #[serde(default)]
    pub tables: BTreeMap<String, Table>,
    /// The Redis replication group.
    pub redis: Option<Redis>,
}

/// A DynamoDB table.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Table {
    /// Physical name; default `sentry-<id>-<env>`.
    pub name: Option<String>,
    /// `PAY_PER_REQUEST` or `PROVISIONED`.
    #[serde(default = "pay_per_request")]
    pub billing_mode: String,
    /// Attribute definitions: name → `S`, `N` or `B`.
    pub attributes: BTreeMap<String, String>,
    /// The table's key.
    pub key: KeySchema,
    /// Global secondary indexes by index name.
    #[serde(default)]
    pub global_secondary_indexes: BTreeMap<String, Gsi>,
    /// Server-side encryption with KMS (`true`) or AWS-owned keys (`false`).
    #[serde(default = "yes")]
    pub kms_encryption: bool,
    /// Customer-managed KMS key: a key of `security.keys` by logical id, or a
    /// key ARN; default the AWS-managed `alias/aws/dynamodb`.
    pub kms_key: Option<String>,
    /// Point-in-time recovery.
    #[serde(default)]
    pub point_in_time_recovery: bool,
    /// Deletion protection.
    #[serde(default = "yes")]
    pub deletion_protection: bool,
    /// TTL attribute, if any.
    pub ttl_attribute: Option<String>,
    /// Extra tags.
    #[serde(default)]
    pub tags: Tags,
    /// What happens once removed from the spec.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

fn pay_per_request() -> String {
    "PAY_PER_REQUEST".into()
}

/// Partition key and optional sort key (attribute names).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KeySchema {
    /// Partition (hash) key attribute.
    pub partition: String,
    /// Sort (range) key attribute.
    pub sort: Option<String>,
}

/// A global secondary index.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Gsi {
    /// The index key.
    pub key: KeySchema,
    /// `ALL`, `KEYS_ONLY` or `INCLUDE`.
    #[serde(default = "projection_all")]
    pub projection: String,
    /// Projected attributes for `INCLUDE`.
    #[serde(default)]
    pub non_key_attributes: Vec<String>,
}

fn projection_all() -> String {
    "ALL".into()
}

/// The ElastiCache Redis replication group.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Redis {
    /// Replication group id; default `sentry-redis-<env>`.
    pub name: Option<String>,
    /// Engine version.
    pub engine_version: Option<String>,
    /// Node type, e.g. `cache.t4g.micro`.
    pub node_type: String,
    /// Number of cache clusters (nodes), 1..=6.
    pub num_cache_clusters: u32,
    /// Automatic failover (needs 2+ nodes).
    #[serde(default)]
    pub automatic_failover: bool,
    /// Multi-AZ (needs automatic failover).
    #[serde(default)]
    pub multi_az: bool,
    /// Encryption at rest.
    #[serde(default = "yes")]
    pub at_rest_encryption: bool,
    /// Encryption in transit.
    #[serde(default = "yes")]
    pub transit_encryption: bool,
    /// Days of automatic snapshots, 0..=35.
    #[serde(default)]
    pub snapshot_retention_days: u32,
    /// Security groups (logical ids).
    pub security_groups: Vec<String>,
    /// Subnet tier of the cache subnet group.
    #[serde(default = "private_tier")]
    pub subnets: Tier,
    /// What happens once removed from the spec.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

impl Checker {
    pub(super) fn data(&mut self, env: &str, d: &Data, groups: &BTreeSet<&str>, has_network: bool) {
        let mut names = Vec::new();
        for (id, t) in &d.tables {
            self.tags(&["data", "tables", id], &t.tags);
            self.one_of(&["data", "tables", id, "billingMode"], &t.billing_mode, &["PAY_PER_REQUEST", "PROVISIONED"]);
            for (attr, ty) in &t.attributes {
                self.one_of(&["data", "tables", id, "attributes", attr], ty, &["S", "N", "B"]);
            }
            let mut used: BTreeSet<&str> = BTreeSet::new();
            let defined = |c: &mut Checker, p: &[&str], attr: &str| {
                if !t.attributes.contains_key(attr) {
                    c.err(p, format!("key attribute {attr:?} is not defined in `attributes`"));
                }
            };
            defined(self, &["data", "tables", id, "key", "partition"], &t.key.partition);
            used.insert(&t.key.partition);
            if let Some(sort) = &t.key.sort {
                defined(self, &["data", "tables", id, "key", "sort"], sort);
                used.insert(sort);
            }
            if t.global_secondary_indexes.len() > 20 {
                self.err(&["data", "tables", id, "globalSecondaryIndexes"], "a table has at most 20 global secondary indexes");
            }
            for (index, g) in &t.global_secondary_indexes {
                let p = ["data", "tables", id.as_str(), "globalSecondaryIndexes", index.as_str()];
                defined(self, &[&p[..], &["key", "partition"]].concat(), &g.key.partition);
                used.insert(&g.key.partition);
                if let Some(sort) = &g.key.sort {
                    defined(self, &[&p[..], &["key", "sort"]].concat(), sort);
                    used.insert(sort);
                }
                self.one_of(&[&p[..], &["projection"]].concat(), &g.projection, &["ALL", "KEYS_ONLY", "INCLUDE"]);
                if (g.projection == "INCLUDE") == g.non_key_attributes.is_empty() {
                    self.err(&[&p[..], &["nonKeyAttributes"]].concat(), "`nonKeyAttributes` is required with projection INCLUDE and only allowed with it");
                }
            }
            for attr in t.attributes.keys() {
                if !used.contains(attr.as_str()) {
                    self.err(
                        &["data", "tables", id, "attributes", attr],
                        format!("attribute {attr:?} is not used by the table key or any index (DynamoDB rejects it)"),
                    );
                }
            }
            names.push((id.as_str(), physical_name(t.name.as_deref(), id, env)));
        }
        self.unique_names(&["data", "tables"], names);

        if let Some(r) = &d.redis {
            if !r.node_type.starts_with("cache.") {
                self.err(&["data", "redis", "nodeType"], format!("{:?} is not an ElastiCache node type (cache.*)", r.node_type));
            }
            self.range(&["data", "redis", "numCacheClusters"], Some(r.num_cache_clusters), 1, 6);
            if r.automatic_failover && r.num_cache_clusters < 2 {
                self.err(&["data", "redis", "automaticFailover"], "automatic failover needs at least 2 cache clusters");
            }
            if r.multi_az && !r.automatic_failover {
                self.err(&["data", "redis", "multiAz"], "multi-AZ needs automatic failover");
            }
            self.range(&["data", "redis", "snapshotRetentionDays"], Some(r.snapshot_retention_days), 0, 35);
            if !has_network {
                self.err(&["data", "redis"], "Redis needs the `network` section (subnets and security groups)");
            }
            for (i, g) in r.security_groups.iter().enumerate() {
                self.reference(&["data", "redis", "securityGroups", &i.to_string()], g, groups.iter().copied(), "security group");
            }
        }
    }
}

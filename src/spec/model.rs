//! The desired-state spec: plain serde structs, one per section of the estate.
//!
//! Every struct rejects unknown fields. Collections of resources are maps keyed
//! by logical id, so an environment file can override one resource's field
//! (maps merge) and a duplicated id is a duplicate YAML key. Physical names
//! default to `sentry-<id>-<env>` and may use `${env}`.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Tags, as written in the spec.
pub type Tags = BTreeMap<String, String>;

/// The whole estate of one environment (base merged with the env overlay).
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Spec {
    /// AWS region of this environment (the `--region` flag wins over it).
    #[serde(default)]
    pub region: Option<String>,
    /// Tags added to every resource the operator creates.
    #[serde(default)]
    pub tags: Tags,
    /// The AWS account of this environment, when it is not the operator's own.
    #[serde(default)]
    pub account: Option<Account>,
    /// Drift policy by resource (`kind/id`, `kind/*`) or field (`kind/id#Field`):
    /// `enforce` (repair, the default), `alert` (report only) or `ignore`.
    #[serde(default)]
    pub policies: BTreeMap<String, DriftPolicy>,
    /// VPC, subnets, NAT, the Elastic IP whitelist, security groups, endpoints.
    #[serde(default)]
    pub network: Option<Network>,
    /// SQS queues.
    #[serde(default)]
    pub messaging: Option<Messaging>,
    /// DynamoDB tables and ElastiCache Redis.
    #[serde(default)]
    pub data: Option<Data>,
    /// ECS clusters, task definitions and services.
    #[serde(default)]
    pub compute: Option<Compute>,
    /// Cognito.
    #[serde(default)]
    pub identity: Option<Identity>,
    /// CloudWatch Logs groups.
    #[serde(default)]
    pub observability: Option<Observability>,
}

/// The account an environment lives in.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Account {
    /// Role assumed through STS for every call in this environment.
    pub role_arn: String,
    /// External id the role's trust policy requires, if any.
    #[serde(default)]
    pub external_id: Option<String>,
}

/// What to do about drift of a resource or field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum DriftPolicy {
    /// Repair it (the default).
    Enforce,
    /// Report it, never repair it.
    Alert,
    /// Neither report nor repair it.
    Ignore,
}

/// What happens to a resource the spec no longer lists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum DeletionPolicy {
    /// Left alone and reported as orphaned (the default).
    #[default]
    Retain,
    /// Deleted by the operator once removed from the spec.
    Delete,
}

impl DeletionPolicy {
    /// The tag value recording this policy on the live resource.
    pub fn as_str(self) -> &'static str {
        match self {
            DeletionPolicy::Retain => "retain",
            DeletionPolicy::Delete => "delete",
        }
    }
}

// ---------------------------------------------------------------- network

/// Networking of the environment.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Network {
    /// The VPC.
    pub vpc: Vpc,
    /// Availability zones used by subnets (2 non-prod, 3 prod).
    pub availability_zones: Vec<String>,
    /// Subnets by logical id.
    #[serde(default)]
    pub subnets: BTreeMap<String, Subnet>,
    /// NAT gateways by logical id.
    #[serde(default)]
    pub nat_gateways: BTreeMap<String, NatGateway>,
    /// The Elastic IP whitelist the exchanges trust.
    pub whitelist: Whitelist,
    /// Security groups by logical id.
    #[serde(default)]
    pub security_groups: BTreeMap<String, SecurityGroup>,
    /// VPC gateway endpoints by logical id.
    #[serde(default)]
    pub endpoints: BTreeMap<String, Endpoint>,
}

/// The VPC.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Vpc {
    /// Physical name (Name tag); default `sentry-vpc-<env>`.
    #[serde(default)]
    pub name: Option<String>,
    /// IPv4 CIDR block, e.g. `172.22.0.0/16`.
    pub cidr: String,
    /// DNS resolution inside the VPC.
    #[serde(default = "yes")]
    pub enable_dns_support: bool,
    /// DNS hostnames for instances.
    #[serde(default = "yes")]
    pub enable_dns_hostnames: bool,
    /// VPC flow logs.
    #[serde(default)]
    pub flow_logs: FlowLogs,
}

fn yes() -> bool {
    true
}

/// VPC flow logs settings.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FlowLogs {
    /// Whether flow logs are on.
    #[serde(default)]
    pub enabled: bool,
    /// Traffic captured: ACCEPT, REJECT or ALL (default ALL).
    #[serde(default)]
    pub traffic_type: Option<String>,
    /// CloudWatch Logs group receiving the records; default `/sentry/vpc-flow-logs-<env>`.
    #[serde(default)]
    pub log_group: Option<String>,
    /// IAM role that lets the flow-logs service write to the group (required when enabled).
    #[serde(default)]
    pub role_arn: Option<String>,
}

/// Subnet tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Tier {
    /// Routes to the internet gateway; hosts NAT gateways and the ALB.
    Public,
    /// Routes to a NAT gateway; hosts the containers and Redis.
    Private,
}

/// A subnet.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Subnet {
    /// Public or private.
    pub tier: Tier,
    /// Availability zone (one of `network.availabilityZones`).
    pub az: String,
    /// IPv4 CIDR inside the VPC's.
    pub cidr: String,
}

/// A NAT gateway.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NatGateway {
    /// The public subnet it lives in (logical id).
    pub subnet: String,
    /// The whitelist pool entry whose EIP it uses (logical id).
    pub elastic_ip: String,
}

/// The Elastic IP whitelist.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Whitelist {
    /// Pool entries by logical id.
    pub pool: BTreeMap<String, WhitelistAddress>,
}

/// One whitelisted Elastic IP.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WhitelistAddress {
    /// Pinned public IP (`203.0.113.10`) or allocation id (`eipalloc-...`); empty until bootstrap.
    #[serde(default)]
    pub address: Option<String>,
    /// First step of the two-step release: only a releasable address may ever be released.
    #[serde(default)]
    pub releasable: bool,
}

/// A security group.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SecurityGroup {
    /// Physical name; default `sentry-<id>-<env>`.
    #[serde(default)]
    pub name: Option<String>,
    /// Group description.
    pub description: String,
    /// Inbound rules.
    #[serde(default)]
    pub ingress: Vec<Rule>,
    /// Outbound rules; default: all traffic to anywhere.
    #[serde(default)]
    pub egress: Option<Vec<Rule>>,
    /// Manage a group that exists without ownership tags.
    #[serde(default)]
    pub adopt: bool,
}

/// One security-group rule; exactly one of `cidr` and `sourceGroup`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Rule {
    /// `tcp`, `udp`, `icmp` or `all`.
    pub protocol: String,
    /// One port (`443`) or a range (`"8000-8010"`); omit for `all`.
    #[serde(default)]
    pub ports: Option<Ports>,
    /// Peer CIDR, or `vpc` for the VPC's own CIDR.
    #[serde(default)]
    pub cidr: Option<String>,
    /// Peer security group (logical id).
    #[serde(default)]
    pub source_group: Option<String>,
    /// Rule description.
    #[serde(default)]
    pub description: Option<String>,
}

/// A port or a port range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Ports {
    /// A single port.
    One(u16),
    /// `"from-to"`.
    Range(String),
}

impl<'de> Deserialize<'de> for Ports {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PortsVisitor;
        impl serde::de::Visitor<'_> for PortsVisitor {
            type Value = Ports;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a port (1-65535) or a range like \"8000-8010\"")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Ports, E> {
                u16::try_from(v).map(Ports::One).map_err(|_| E::custom(format!("{v} is not a port (1-65535)")))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Ports, E> {
                u16::try_from(v).map(Ports::One).map_err(|_| E::custom(format!("{v} is not a port (1-65535)")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Ports, E> {
                Ok(Ports::Range(v.to_string()))
            }
        }
        deserializer.deserialize_any(PortsVisitor)
    }
}

/// A VPC gateway endpoint.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Endpoint {
    /// `dynamodb` or `s3`.
    pub service: String,
    /// Route tables of this tier get the endpoint route.
    #[serde(default = "private_tier")]
    pub route_tables: Tier,
}

fn private_tier() -> Tier {
    Tier::Private
}

// ---------------------------------------------------------------- messaging

/// SQS queues.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Messaging {
    /// Attribute values for queues that do not set their own.
    #[serde(default)]
    pub queue_defaults: QueueAttributes,
    /// Queues by logical id.
    #[serde(default)]
    pub queues: BTreeMap<String, Queue>,
}

/// Tunable SQS attributes; unset ones fall back to `queueDefaults`, then to AWS defaults.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct QueueAttributes {
    /// VisibilityTimeout, 0..=43200 s.
    #[serde(default)]
    pub visibility_timeout_seconds: Option<u32>,
    /// MessageRetentionPeriod, 60..=1209600 s.
    #[serde(default)]
    pub message_retention_seconds: Option<u32>,
    /// DelaySeconds, 0..=900.
    #[serde(default)]
    pub delay_seconds: Option<u32>,
    /// ReceiveMessageWaitTimeSeconds, 0..=20.
    #[serde(default)]
    pub receive_wait_time_seconds: Option<u32>,
    /// MaximumMessageSize, 1024..=1048576 bytes.
    #[serde(default)]
    pub max_message_size_bytes: Option<u32>,
}

/// An SQS queue.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Queue {
    /// Physical name; default `sentry-<id>-<env>` (plus `.fifo` for FIFO queues).
    #[serde(default)]
    pub name: Option<String>,
    /// FIFO queue (the name must end in `.fifo`).
    #[serde(default)]
    pub fifo: bool,
    /// FIFO only: deduplicate by content hash.
    #[serde(default)]
    pub content_based_deduplication: Option<bool>,
    /// VisibilityTimeout, 0..=43200 s.
    #[serde(default)]
    pub visibility_timeout_seconds: Option<u32>,
    /// MessageRetentionPeriod, 60..=1209600 s.
    #[serde(default)]
    pub message_retention_seconds: Option<u32>,
    /// DelaySeconds, 0..=900.
    #[serde(default)]
    pub delay_seconds: Option<u32>,
    /// ReceiveMessageWaitTimeSeconds, 0..=20.
    #[serde(default)]
    pub receive_wait_time_seconds: Option<u32>,
    /// MaximumMessageSize, 1024..=1048576 bytes.
    #[serde(default)]
    pub max_message_size_bytes: Option<u32>,
    /// Dead-letter queue and redrive policy.
    #[serde(default)]
    pub dead_letter: Option<DeadLetter>,
    /// Extra tags.
    #[serde(default)]
    pub tags: Tags,
    /// What happens once removed from the spec.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// Manage a queue that exists without ownership tags.
    #[serde(default)]
    pub adopt: bool,
}

impl Queue {
    /// The physical name: `name` (with `${env}`), else `sentry-<id>-<env>` plus `.fifo` for FIFO queues.
    pub fn physical_name(&self, id: &str, env: &str) -> String {
        match &self.name {
            Some(name) => name.replace("${env}", env),
            None if self.fifo => format!("sentry-{id}-{env}.fifo"),
            None => format!("sentry-{id}-{env}"),
        }
    }

    /// The queue's own attribute settings.
    pub fn attributes(&self) -> QueueAttributes {
        QueueAttributes {
            visibility_timeout_seconds: self.visibility_timeout_seconds,
            message_retention_seconds: self.message_retention_seconds,
            delay_seconds: self.delay_seconds,
            receive_wait_time_seconds: self.receive_wait_time_seconds,
            max_message_size_bytes: self.max_message_size_bytes,
        }
    }
}

impl QueueAttributes {
    /// Each attribute from `self`, else from `defaults`.
    pub fn or(&self, defaults: &QueueAttributes) -> QueueAttributes {
        QueueAttributes {
            visibility_timeout_seconds: self.visibility_timeout_seconds.or(defaults.visibility_timeout_seconds),
            message_retention_seconds: self.message_retention_seconds.or(defaults.message_retention_seconds),
            delay_seconds: self.delay_seconds.or(defaults.delay_seconds),
            receive_wait_time_seconds: self.receive_wait_time_seconds.or(defaults.receive_wait_time_seconds),
            max_message_size_bytes: self.max_message_size_bytes.or(defaults.max_message_size_bytes),
        }
    }
}

/// Redrive to a dead-letter queue.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeadLetter {
    /// The dead-letter queue (logical id of another queue).
    pub queue: String,
    /// Receives before a message moves to the DLQ, 1..=1000.
    pub max_receive_count: u32,
}

// ---------------------------------------------------------------- data

/// DynamoDB and ElastiCache.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Data {
    /// DynamoDB tables by logical id.
    #[serde(default)]
    pub tables: BTreeMap<String, Table>,
    /// The Redis replication group.
    #[serde(default)]
    pub redis: Option<Redis>,
}

/// A DynamoDB table.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Table {
    /// Physical name; default `sentry-<id>-<env>`.
    #[serde(default)]
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
    /// Customer-managed KMS key; default the AWS-managed `alias/aws/dynamodb`.
    #[serde(default)]
    pub kms_key: Option<String>,
    /// Point-in-time recovery.
    #[serde(default)]
    pub point_in_time_recovery: bool,
    /// Deletion protection.
    #[serde(default = "yes")]
    pub deletion_protection: bool,
    /// TTL attribute, if any.
    #[serde(default)]
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
    #[serde(default)]
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
    #[serde(default)]
    pub name: Option<String>,
    /// Engine version.
    #[serde(default)]
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

// ---------------------------------------------------------------- compute

/// ECS.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Compute {
    /// Clusters by logical id.
    #[serde(default)]
    pub clusters: BTreeMap<String, Cluster>,
    /// Task definitions by logical id.
    #[serde(default)]
    pub task_definitions: BTreeMap<String, TaskDefinition>,
    /// Services by logical id.
    #[serde(default)]
    pub services: BTreeMap<String, Service>,
}

/// An ECS cluster with its EC2 capacity.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Cluster {
    /// Physical name; default `sentry-<id>-<env>`.
    #[serde(default)]
    pub name: Option<String>,
    /// CloudWatch Container Insights.
    #[serde(default)]
    pub container_insights: bool,
    /// EC2 instance type (ARM64), e.g. `t4g.small`.
    pub instance_type: String,
    /// Auto Scaling group minimum.
    pub min_size: u32,
    /// Auto Scaling group maximum.
    pub max_size: u32,
    /// Auto Scaling group desired capacity.
    pub desired_capacity: u32,
    /// Capacity providers attached to the cluster.
    #[serde(default)]
    pub capacity_providers: Vec<String>,
}

/// An ECS task definition (one container).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TaskDefinition {
    /// Family; default `sentry-<id>-<env>`.
    #[serde(default)]
    pub family: Option<String>,
    /// ECR repository URI.
    pub repository: String,
    /// Image tag.
    pub image_tag: String,
    /// CPU units.
    pub cpu: u32,
    /// Memory (MiB).
    pub memory: u32,
    /// Container ports.
    #[serde(default)]
    pub ports: Vec<u16>,
    /// Plain environment variables.
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// Secrets: variable → Secrets Manager ARN (`valueFrom`).
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    /// Log group (logical id in `observability.logGroups`).
    pub log_group: String,
    /// Role ECS uses to pull the image and read the secrets (required with `secrets`).
    #[serde(default)]
    pub execution_role_arn: Option<String>,
    /// `ARM64` or `X86_64`.
    #[serde(default = "arm64")]
    pub cpu_architecture: String,
}

fn arm64() -> String {
    "ARM64".into()
}

/// An ECS service.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Service {
    /// Physical name; default `sentry-<id>-service-<env>`.
    #[serde(default)]
    pub name: Option<String>,
    /// Cluster (logical id).
    pub cluster: String,
    /// Task definition (logical id).
    pub task_definition: String,
    /// Desired task count.
    pub desired_count: u32,
    /// Security groups (logical ids).
    pub security_groups: Vec<String>,
    /// Subnet tier the tasks run in.
    #[serde(default = "private_tier")]
    pub subnets: Tier,
    /// Deployment minimum healthy percent.
    #[serde(default = "hundred")]
    pub min_healthy_percent: u32,
    /// Deployment maximum percent.
    #[serde(default = "two_hundred")]
    pub max_percent: u32,
    /// What happens once removed from the spec (services are scaled to 0 first).
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

fn hundred() -> u32 {
    100
}

fn two_hundred() -> u32 {
    200
}

// ---------------------------------------------------------------- identity

/// Cognito.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Identity {
    /// The admin user pool.
    pub user_pool: UserPool,
}

/// The Cognito user pool.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UserPool {
    /// Physical name; default `sentry-users-<env>`.
    #[serde(default)]
    pub name: Option<String>,
    /// `ON` (required), `OPTIONAL` or `OFF`.
    pub mfa: String,
    /// Software-token (TOTP) MFA.
    #[serde(default = "yes")]
    pub software_token_mfa: bool,
    /// Only administrators create users.
    #[serde(default = "yes")]
    pub admin_create_user_only: bool,
    /// Password policy.
    pub password_policy: PasswordPolicy,
    /// Groups by name.
    #[serde(default)]
    pub groups: BTreeMap<String, Group>,
    /// App clients by logical id.
    #[serde(default)]
    pub app_clients: BTreeMap<String, AppClient>,
    /// What happens once removed from the spec.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// Cognito password policy.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PasswordPolicy {
    /// Minimum length, 6..=99.
    pub minimum_length: u32,
    /// Require an upper-case letter.
    #[serde(default = "yes")]
    pub require_uppercase: bool,
    /// Require a lower-case letter.
    #[serde(default = "yes")]
    pub require_lowercase: bool,
    /// Require a digit.
    #[serde(default = "yes")]
    pub require_numbers: bool,
    /// Require a symbol.
    #[serde(default = "yes")]
    pub require_symbols: bool,
}

/// A Cognito group.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Group {
    /// Description.
    pub description: String,
    /// Precedence (lower wins).
    pub precedence: u32,
}

/// A Cognito app client.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AppClient {
    /// Physical name; default `sentry-<id>-<env>`.
    #[serde(default)]
    pub name: Option<String>,
    /// Generate a client secret (a browser frontend must not).
    #[serde(default)]
    pub generate_secret: bool,
    /// Explicit auth flows, e.g. `ALLOW_USER_SRP_AUTH`.
    pub auth_flows: Vec<String>,
}

// ---------------------------------------------------------------- observability

/// CloudWatch Logs.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Observability {
    /// Retention of every log group, in days (7 dev, 14 staging, 30 prod).
    pub log_retention_days: u32,
    /// Log groups by logical id.
    #[serde(default)]
    pub log_groups: BTreeMap<String, LogGroup>,
}

/// A CloudWatch Logs group.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LogGroup {
    /// Physical name, e.g. `/ecs/sentry-oms-${env}`.
    pub name: String,
    /// Overrides `logRetentionDays`.
    #[serde(default)]
    pub retention_days: Option<u32>,
}

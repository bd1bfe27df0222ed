//! The other sections of an imported spec: queues, tables, Redis, the user
//! pool, log groups and clusters, named as they live.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_sqs::types::QueueAttributeName;

use super::{by_id, spec_id, unique, Context, ImportError, StackResource};
use crate::aws::{found, required, AwsResult};
use crate::engine::TAG_MANAGED_BY;
use crate::kinds::cognito;
use crate::kinds::dynamodb;
use crate::kinds::ecs;
use crate::kinds::elasticache;
use crate::kinds::logs;
use crate::kinds::sqs;
use crate::spec::model::{
    AdoptTarget, AppClient, Cluster, Compute, Data, DeadLetter, DeletionPolicy, Group, Gsi, Identity, KeySchema, LogGroup, Messaging, Observability,
    PasswordPolicy, Queue, Redis, Table, Tags, Tier, UserPool,
};
use crate::spec::physical_name;
use crate::spec::validate::is_reserved_tag;

/// The tags a spec may set: neither AWS's own nor the operator's.
fn user_tags(tags: impl IntoIterator<Item = (String, String)>) -> Tags {
    tags.into_iter().filter(|(k, _)| !is_reserved_tag(k) && !k.starts_with("sentry:") && k != TAG_MANAGED_BY).collect()
}

/// Whether `name` is named for environment `env` (`…-dev`, `…_dev`, `…-dev.fifo`).
fn named_for(name: &str, env: &str) -> bool {
    let stem = name.strip_suffix(".fifo").unwrap_or(name);
    stem.ends_with(&format!("-{env}")) || stem.ends_with(&format!("_{env}"))
}

/// Adds the name-keyed resources named for the environment that no stack
/// holds (queues, tables, clusters, log groups under `/ecs/`), as if a stack
/// `(found by name)` held them, with a logical id made of their name.
pub async fn found_by_name(
    ctx: &mut Context,
    sqs: &aws_sdk_sqs::Client,
    dynamodb: &aws_sdk_dynamodb::Client,
    logs: &aws_sdk_cloudwatchlogs::Client,
    ecs: &aws_sdk_ecs::Client,
) -> Result<(), ImportError> {
    let queues = sqs.list_queues().max_results(1000).into_paginator().items().send().try_collect().await.aws("SQS.ListQueues")?;
    let tables = dynamodb.list_tables().into_paginator().items().send().try_collect().await.aws("DynamoDB.ListTables")?;
    let clusters = ecs.list_clusters().into_paginator().items().send().try_collect().await.aws("ECS.ListClusters")?;
    let groups = logs.describe_log_groups().log_group_name_prefix("/ecs/").into_paginator().items().send().try_collect().await.aws("Logs.DescribeLogGroups")?;
    let last = |s: &str| s.rsplit(['/', ':']).next().unwrap_or(s).to_string();
    let candidates = [
        (sqs::KIND, "AWS::SQS::Queue", queues.iter().map(|u| last(u)).collect::<Vec<_>>()),
        (dynamodb::KIND, "AWS::DynamoDB::Table", tables),
        (ecs::cluster::KIND, "AWS::ECS::Cluster", clusters.iter().map(|a| last(a)).collect()),
        (logs::KIND, "AWS::Logs::LogGroup", groups.iter().filter_map(|g| g.log_group_name().map(str::to_string)).collect()),
    ];
    for (kind, resource_type, names) in candidates {
        let known: BTreeSet<String> = ctx.of(kind).iter().map(|r| last(&r.physical_id)).collect();
        for name in names.into_iter().filter(|n| named_for(n, &ctx.env) && !known.contains(&last(n))) {
            ctx.summary.found += 1;
            let stem = name.strip_suffix(".fifo").unwrap_or(&name);
            let stem = stem.strip_suffix(&format!("-{}", ctx.env)).or_else(|| stem.strip_suffix(&format!("_{}", ctx.env))).unwrap_or(stem);
            let logical_id = last(stem).replace("sentry-", "");
            let found = StackResource { stack: "(found by name)".into(), logical_id, physical_id: name, resource_type: resource_type.into() };
            ctx.by_kind.entry(kind).or_default().push(found);
        }
    }
    Ok(())
}

/// The queues of the stacks, each with its dead-letter queue.
pub async fn messaging(ctx: &mut Context, client: &aws_sdk_sqs::Client) -> Result<Option<Messaging>, ImportError> {
    let Some(stack_queues) = ctx.some_of(sqs::KIND) else { return Ok(None) };
    let mut taken = BTreeSet::new();
    let mut read = Vec::new();
    for r in &stack_queues {
        // The physical id is the queue's URL on AWS's host; the emulator answers with its own.
        let name = r.physical_id.rsplit('/').next().unwrap_or(&r.physical_id).to_string();
        let url = client.get_queue_url().queue_name(&name).send().await.aws("SQS.GetQueueUrl")?;
        let url = required("SQS.GetQueueUrl", "queue URL", url.queue_url())?;
        let attributes = client.get_queue_attributes().queue_url(&url).attribute_names(QueueAttributeName::All).send().await.aws("SQS.GetQueueAttributes")?;
        let attributes: BTreeMap<String, String> = attributes.attributes.unwrap_or_default().into_iter().map(|(k, v)| (k.as_str().to_string(), v)).collect();
        let tags = client.list_queue_tags().queue_url(&url).send().await.aws("SQS.ListQueueTags")?.tags.unwrap_or_default();
        let id = unique(spec_id(&r.logical_id, &["queue"]), &mut taken);
        read.push((r.clone(), id, name, attributes, tags));
    }
    let id_of_arn: BTreeMap<String, String> = read.iter().filter_map(|(_, id, _, a, _)| Some((a.get("QueueArn")?.clone(), id.clone()))).collect();
    let mut queues = BTreeMap::new();
    for (r, id, name, a, tags) in read {
        let number = |key: &str| a.get(key).and_then(|v| v.parse().ok());
        let fifo = a.get("FifoQueue").is_some_and(|v| v == "true");
        let dead_letter = match a.get("RedrivePolicy").map(|p| serde_json::from_str::<serde_json::Value>(p)) {
            Some(Ok(policy)) => {
                let target = policy["deadLetterTargetArn"].as_str().unwrap_or_default();
                let count = policy["maxReceiveCount"].as_u64().or_else(|| policy["maxReceiveCount"].as_str().and_then(|c| c.parse().ok()));
                match (id_of_arn.get(target), count.and_then(|c| u32::try_from(c).ok())) {
                    (Some(queue), Some(max_receive_count)) => Some(DeadLetter { queue: queue.clone(), max_receive_count }),
                    _ => {
                        ctx.not_representable(format!(
                            "{} {} ({}): its dead-letter queue {target} is not in the stacks",
                            r.resource_type, r.logical_id, r.stack
                        ));
                        None
                    }
                }
            }
            _ => None,
        };
        let mut queue = Queue {
            fifo,
            content_based_deduplication: fifo.then(|| a.get("ContentBasedDeduplication").is_some_and(|v| v == "true")),
            visibility_timeout_seconds: number("VisibilityTimeout"),
            message_retention_seconds: number("MessageRetentionPeriod"),
            delay_seconds: number("DelaySeconds"),
            receive_wait_time_seconds: number("ReceiveMessageWaitTimeSeconds"),
            max_message_size_bytes: number("MaximumMessageSize"),
            dead_letter,
            tags: user_tags(tags),
            deletion_policy: DeletionPolicy::Retain,
            ..Queue::default()
        };
        if queue.physical_name(&id, &ctx.env) != name {
            queue.name = Some(name.clone());
        }
        queues.insert(id.clone(), queue);
        ctx.adopt(sqs::KIND, &id, &name, AdoptTarget::default());
    }
    Ok(Some(Messaging { queues, ..Messaging::default() }))
}

/// The tables of the stacks.
pub async fn tables(ctx: &mut Context, client: &aws_sdk_dynamodb::Client) -> Result<Data, ImportError> {
    let mut data = Data { tables: BTreeMap::new(), redis: None };
    let mut taken = BTreeSet::new();
    for r in ctx.of(dynamodb::KIND) {
        let described = client.describe_table().table_name(&r.physical_id).send().await.aws("DynamoDB.DescribeTable")?;
        let Some(t) = described.table else { continue };
        let arn = required("DynamoDB.DescribeTable", "table ARN", t.table_arn())?;
        let (backups, ttl, tags) = tokio::try_join!(
            async { client.describe_continuous_backups().table_name(&r.physical_id).send().await.aws("DynamoDB.DescribeContinuousBackups") },
            async { client.describe_time_to_live().table_name(&r.physical_id).send().await.aws("DynamoDB.DescribeTimeToLive") },
            async { client.list_tags_of_resource().resource_arn(&arn).send().await.aws("DynamoDB.ListTagsOfResource") },
        )?;
        let key = |elements: &[aws_sdk_dynamodb::types::KeySchemaElement]| {
            let part = |ty: aws_sdk_dynamodb::types::KeyType| elements.iter().find(|e| *e.key_type() == ty).map(|e| e.attribute_name().to_string());
            KeySchema { partition: part(aws_sdk_dynamodb::types::KeyType::Hash).unwrap_or_default(), sort: part(aws_sdk_dynamodb::types::KeyType::Range) }
        };
        let indexes = t
            .global_secondary_indexes()
            .iter()
            .filter_map(|g| {
                let p = g.projection();
                let gsi = Gsi {
                    key: key(g.key_schema()),
                    projection: p.and_then(|p| p.projection_type()).map_or("ALL", |p| p.as_str()).to_string(),
                    non_key_attributes: p.map(|p| p.non_key_attributes().to_vec()).unwrap_or_default(),
                };
                Some((g.index_name()?.to_string(), gsi))
            })
            .collect();
        let sse = t.sse_description().is_some_and(|s| s.sse_type().is_some_and(|t| t.as_str() == "KMS") && s.status().is_some_and(|s| s.as_str() == "ENABLED"));
        let id = unique(spec_id(&r.logical_id, &["table", "dynamo", "db", "dynamodb"]), &mut taken);
        let table = Table {
            name: (physical_name(None, &id, &ctx.env) != r.physical_id).then(|| r.physical_id.clone()),
            billing_mode: t.billing_mode_summary().and_then(|b| b.billing_mode()).map_or("PROVISIONED", |b| b.as_str()).to_string(),
            attributes: t.attribute_definitions().iter().map(|a| (a.attribute_name().to_string(), a.attribute_type().as_str().to_string())).collect(),
            key: key(t.key_schema()),
            global_secondary_indexes: indexes,
            kms_encryption: sse,
            kms_key: None,
            point_in_time_recovery: backups
                .continuous_backups_description()
                .and_then(|c| c.point_in_time_recovery_description())
                .and_then(|p| p.point_in_time_recovery_status())
                .is_some_and(|s| s.as_str() == "ENABLED"),
            deletion_protection: t.deletion_protection_enabled().unwrap_or(false),
            ttl_attribute: ttl
                .time_to_live_description()
                .filter(|d| d.time_to_live_status().is_some_and(|s| s.as_str() == "ENABLED"))
                .and_then(|d| d.attribute_name())
                .map(str::to_string),
            tags: user_tags(tags.tags().iter().map(|t| (t.key().to_string(), t.value().to_string()))),
            deletion_policy: DeletionPolicy::Retain,
        };
        data.tables.insert(id.clone(), table);
        ctx.adopt(dynamodb::KIND, &id, &r.physical_id, AdoptTarget::default());
    }
    Ok(data)
}

/// The environment's Redis: the stacks' replication group, else the one
/// named `…-<env>` (several such: not guessed).
pub async fn redis(ctx: &mut Context, client: &aws_sdk_elasticache::Client) -> Result<Option<Redis>, ImportError> {
    let groups = client.describe_replication_groups().into_paginator().items().send().try_collect().await.aws("ElastiCache.DescribeReplicationGroups")?;
    let in_stacks: Vec<String> = ctx.of(elasticache::replication_group::KIND).iter().map(|r| r.physical_id.clone()).collect();
    let candidates: Vec<_> = groups
        .iter()
        .filter(|g| g.replication_group_id().is_some_and(|id| in_stacks.iter().any(|s| s == id) || (in_stacks.is_empty() && named_for(id, &ctx.env))))
        .collect();
    let [g] = candidates.as_slice() else {
        if candidates.len() > 1 {
            let ids: Vec<&str> = candidates.iter().filter_map(|g| g.replication_group_id()).collect();
            ctx.not_representable(format!(
                "Redis: {} replication groups are named for {} ({}); the spec has one: add the right one by hand",
                ids.len(),
                ctx.env,
                ids.join(", ")
            ));
        }
        return Ok(None);
    };
    let name = required("ElastiCache.DescribeReplicationGroups", "replication group id", g.replication_group_id())?;
    let member = g.member_clusters().first().cloned().unwrap_or_default();
    let cluster = found(client.describe_cache_clusters().cache_cluster_id(&member).send().await.aws("ElastiCache.DescribeCacheClusters"))?;
    let cluster = cluster.as_ref().and_then(|c| c.cache_clusters().first());
    if cluster.is_none() {
        ctx.not_representable(format!("Redis {name}: its node {member} could not be described, so its security groups and engine version are not known"));
    }
    let group_ids: BTreeMap<String, String> = ctx
        .adopt
        .iter()
        .filter_map(|(k, t)| Some((t.id.clone()?, k.strip_prefix(&format!("{}/", crate::kinds::ec2::security_group::KIND))?.to_string())))
        .collect();
    let mut security_groups = Vec::new();
    for sg in cluster.map(|c| c.security_groups()).unwrap_or_default() {
        match sg.security_group_id().and_then(|id| group_ids.get(id)) {
            Some(id) => security_groups.push(id.clone()),
            None => ctx.not_representable(format!("Redis {name}: its security group {} is not in the stacks", sg.security_group_id().unwrap_or("?"))),
        }
    }
    let subnet_group = match cluster.and_then(|c| c.cache_subnet_group_name()) {
        Some(name) => name.to_string(),
        None => {
            // Not known from its node: the subnet group named like it, else the only one in the VPC.
            let all = client.describe_cache_subnet_groups().send().await.aws("ElastiCache.DescribeCacheSubnetGroups")?;
            let vpc = ctx.adopt.get(&format!("{}/{}", crate::kinds::ec2::vpc::KIND, crate::kinds::ec2::vpc::ID)).and_then(|t| t.id.clone());
            let in_vpc: Vec<&str> = all
                .cache_subnet_groups()
                .iter()
                .filter(|g| g.vpc_id().is_some() && g.vpc_id().map(str::to_string) == vpc)
                .filter_map(|g| g.cache_subnet_group_name())
                .collect();
            match all.cache_subnet_groups().iter().filter_map(|g| g.cache_subnet_group_name()).find(|n| *n == name) {
                Some(same) => same.to_string(),
                None if in_vpc.len() == 1 => in_vpc[0].to_string(),
                None => String::new(),
            }
        }
    };
    let subnets = if subnet_group.is_empty() {
        None
    } else {
        let described =
            client.describe_cache_subnet_groups().cache_subnet_group_name(&subnet_group).send().await.aws("ElastiCache.DescribeCacheSubnetGroups")?;
        let ids: BTreeSet<String> =
            described.cache_subnet_groups().iter().flat_map(|g| g.subnets()).filter_map(|s| s.subnet_identifier().map(str::to_string)).collect();
        tier_of_subnets(ctx, &ids)
    };
    if subnets.is_none() {
        ctx.not_representable(format!(
            "Redis {name}: its subnet group {subnet_group:?} is not exactly the private (or the public) subnets; the spec says private"
        ));
    }
    let redis = Redis {
        name: (physical_name(None, elasticache::replication_group::ID, &ctx.env) != name).then(|| name.clone()),
        engine_version: cluster.and_then(|c| c.engine_version()).map(str::to_string),
        node_type: g.cache_node_type().or(cluster.and_then(|c| c.cache_node_type())).unwrap_or_default().to_string(),
        num_cache_clusters: u32::try_from(g.member_clusters().len()).unwrap_or(1),
        automatic_failover: g.automatic_failover().is_some_and(|a| a.as_str().starts_with("enabled")),
        multi_az: g.multi_az().is_some_and(|m| m.as_str() == "enabled"),
        at_rest_encryption: g.at_rest_encryption_enabled().unwrap_or(false),
        transit_encryption: g.transit_encryption_enabled().unwrap_or(false),
        snapshot_retention_days: g.snapshot_retention_limit().and_then(|d| u32::try_from(d).ok()).unwrap_or(0),
        security_groups,
        subnets: subnets.unwrap_or(Tier::Private),
        deletion_policy: DeletionPolicy::Retain,
    };
    ctx.adopt(elasticache::replication_group::KIND, elasticache::replication_group::ID, &name, AdoptTarget::default());
    if !subnet_group.is_empty() {
        ctx.adopt(elasticache::subnet_group::KIND, elasticache::subnet_group::ID, &subnet_group, by_id(&subnet_group));
    }
    Ok(Some(redis))
}

/// The tier whose subnets (in the imported network) are exactly `ids`.
fn tier_of_subnets(ctx: &Context, ids: &BTreeSet<String>) -> Option<Tier> {
    let network = ctx.tiers.as_ref()?;
    [Tier::Private, Tier::Public]
        .into_iter()
        .find(|tier| network.iter().filter(|(_, t)| t == tier).map(|(id, _)| id).cloned().collect::<BTreeSet<String>>() == *ids)
}

/// The environment's user pool (named `…-<env>`), its groups and app clients.
pub async fn identity(ctx: &mut Context, client: &aws_sdk_cognitoidentityprovider::Client) -> Result<Option<Identity>, ImportError> {
    let pools = client.list_user_pools().max_results(60).into_paginator().items().send().try_collect().await.aws("Cognito.ListUserPools")?;
    let in_stacks: Vec<String> = ctx.of(cognito::user_pool::KIND).iter().map(|r| r.physical_id.clone()).collect();
    let candidates: Vec<_> = pools
        .iter()
        .filter(|p| p.id().is_some_and(|id| in_stacks.iter().any(|s| s == id)) || (in_stacks.is_empty() && p.name().is_some_and(|n| named_for(n, &ctx.env))))
        .collect();
    let [summary] = candidates.as_slice() else {
        if candidates.len() > 1 {
            ctx.not_representable(format!("Cognito: {} user pools are named for {}; the spec has one: add the right one by hand", candidates.len(), ctx.env));
        }
        return Ok(None);
    };
    let id = required("Cognito.ListUserPools", "user pool id", summary.id())?;
    let Some(pool) = client.describe_user_pool().user_pool_id(&id).send().await.aws("Cognito.DescribeUserPool")?.user_pool else { return Ok(None) };
    let name = pool.name().unwrap_or_default().to_string();
    let mfa = client.get_user_pool_mfa_config().user_pool_id(&id).send().await.aws("Cognito.GetUserPoolMfaConfig")?;
    let policy = pool.policies().and_then(|p| p.password_policy());
    let groups = client.list_groups().user_pool_id(&id).into_paginator().items().send().try_collect().await.aws("Cognito.ListGroups")?;
    let clients = client.list_user_pool_clients().user_pool_id(&id).max_results(60).into_paginator().items().send().try_collect().await;
    let mut app_clients = BTreeMap::new();
    let mut taken = BTreeSet::new();
    for c in clients.aws("Cognito.ListUserPoolClients")? {
        let Some(client_id) = c.client_id() else { continue };
        let described = client.describe_user_pool_client().user_pool_id(&id).client_id(client_id).send().await.aws("Cognito.DescribeUserPoolClient")?;
        let Some(detail) = described.user_pool_client() else { continue };
        let client_name = detail.client_name().unwrap_or_default().to_string();
        let app_id = unique(spec_id(&client_name, &[]), &mut taken);
        let mut flows: Vec<String> = detail.explicit_auth_flows().iter().map(|f| f.as_str().to_string()).collect();
        flows.sort();
        let explicit = (physical_name(None, &app_id, &ctx.env) != client_name).then(|| client_name.clone());
        app_clients.insert(app_id.clone(), AppClient { name: explicit, generate_secret: detail.client_secret().is_some(), auth_flows: flows });
        ctx.adopt(cognito::app_client::KIND, &app_id, &format!("{id}/{client_id}"), AdoptTarget::default());
    }
    let mut spec_groups = BTreeMap::new();
    for g in &groups {
        let Some(group) = g.group_name() else { continue };
        spec_groups.insert(
            group.to_string(),
            Group { description: g.description().unwrap_or_default().to_string(), precedence: g.precedence().and_then(|p| u32::try_from(p).ok()).unwrap_or(0) },
        );
        ctx.adopt(cognito::group::KIND, group, &format!("{id}/{group}"), AdoptTarget::default());
    }
    let user_pool = UserPool {
        name: Some(name.clone()),
        mfa: mfa.mfa_configuration().map_or("OFF", |m| m.as_str()).to_string(),
        software_token_mfa: mfa.software_token_mfa_configuration().is_some_and(|c| c.enabled()),
        admin_create_user_only: pool.admin_create_user_config().is_some_and(|c| c.allow_admin_create_user_only()),
        password_policy: PasswordPolicy {
            minimum_length: policy.and_then(|p| p.minimum_length()).and_then(|l| u32::try_from(l).ok()).unwrap_or(8),
            require_uppercase: policy.is_some_and(|p| p.require_uppercase()),
            require_lowercase: policy.is_some_and(|p| p.require_lowercase()),
            require_numbers: policy.is_some_and(|p| p.require_numbers()),
            require_symbols: policy.is_some_and(|p| p.require_symbols()),
        },
        groups: spec_groups,
        app_clients,
        deletion_policy: DeletionPolicy::Retain,
    };
    ctx.adopt(cognito::user_pool::KIND, cognito::user_pool::ID, &id, AdoptTarget::default());
    Ok(Some(Identity { user_pool }))
}

/// The log groups of the stacks.
pub async fn log_groups(ctx: &mut Context, client: &aws_sdk_cloudwatchlogs::Client) -> Result<Option<Observability>, ImportError> {
    let Some(stack_groups) = ctx.some_of(logs::KIND) else { return Ok(None) };
    let mut groups = BTreeMap::new();
    let mut taken = BTreeSet::new();
    for r in &stack_groups {
        let listed = client.describe_log_groups().log_group_name_prefix(&r.physical_id).send().await.aws("Logs.DescribeLogGroups")?;
        let Some(g) = listed.log_groups().iter().find(|g| g.log_group_name() == Some(r.physical_id.as_str())) else { continue };
        let Some(retention) = g.retention_in_days().and_then(|d| u32::try_from(d).ok()) else {
            // The spec gives every group a retention; adopting would start deleting its old events.
            ctx.not_representable(format!("{} {} ({}): it keeps its events forever, which the spec cannot say", r.resource_type, r.logical_id, r.stack));
            continue;
        };
        let id = unique(spec_id(&r.logical_id, &["log", "group", "logs"]), &mut taken);
        groups.insert(id.clone(), LogGroup { name: r.physical_id.clone(), retention_days: Some(retention) });
        ctx.adopt(logs::KIND, &id, &r.physical_id, AdoptTarget::default());
    }
    if groups.is_empty() {
        return Ok(None);
    }
    // Every group says its retention, so the default is only a fallback for new ones.
    let default = groups.values().filter_map(|g| g.retention_days).min().unwrap_or(30);
    Ok(Some(Observability { log_retention_days: default, log_groups: groups, topics: BTreeMap::new(), alarm_topic: None, alarms: BTreeMap::new() }))
}

/// The clusters of the stacks (their EC2 capacity is not imported yet).
pub async fn clusters(ctx: &mut Context, client: &aws_sdk_ecs::Client) -> Result<Option<Compute>, ImportError> {
    let Some(stack_clusters) = ctx.some_of(ecs::cluster::KIND) else { return Ok(None) };
    let names: Vec<String> = stack_clusters.iter().map(|c| c.physical_id.rsplit('/').next().unwrap_or(&c.physical_id).to_string()).collect();
    let described = client
        .describe_clusters()
        .set_clusters(Some(names.clone()))
        .include(aws_sdk_ecs::types::ClusterField::Settings)
        .send()
        .await
        .aws("ECS.DescribeClusters")?;
    let mut clusters = BTreeMap::new();
    let mut taken = BTreeSet::new();
    for (r, name) in stack_clusters.iter().zip(&names) {
        let Some(c) = described.clusters().iter().find(|c| c.cluster_name() == Some(name.as_str())) else { continue };
        let insights = c.settings().iter().find(|s| s.name().is_some_and(|n| n.as_str() == "containerInsights")).and_then(|s| s.value()).unwrap_or("disabled");
        let mut id = spec_id(&r.logical_id, &["cluster", "ecs"]);
        if id == "cluster" {
            id = name.strip_prefix("sentry-").unwrap_or(name).trim_end_matches(&format!("-{}", ctx.env)).to_string();
        }
        let id = unique(id, &mut taken);
        let mut providers: Vec<String> = c.capacity_providers().to_vec();
        providers.sort();
        let cluster = Cluster {
            name: (physical_name(None, &id, &ctx.env) != *name).then(|| name.clone()),
            container_insights: insights != "disabled",
            capacity_providers: providers,
            ..Cluster::default()
        };
        clusters.insert(id.clone(), cluster);
        ctx.adopt(ecs::cluster::KIND, &id, name, AdoptTarget::default());
        ctx.summary.skipped.push(format!("{} {} ({}): its EC2 capacity (launch template, Auto Scaling group, capacity provider) is left out of the spec: add instanceType, the sizes and instanceRole, and adopt its launch template, group and capacity provider by id", r.resource_type, r.logical_id, r.stack));
    }
    Ok(Some(Compute { clusters, ..Compute::default() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_for_an_environment() {
        assert!(named_for("sentry-redis-dev", "dev"));
        assert!(named_for("oms_config_dev", "dev"));
        assert!(named_for("master-order-queue-dev.fifo", "dev"));
        assert!(!named_for("sentry-redis-prod", "dev"));
        assert!(!named_for("devices", "dev"));
        let tags = user_tags([("aws:cloudformation:stack-name".to_string(), "s".to_string()), ("Team".to_string(), "oms".to_string())]);
        assert_eq!(tags.into_iter().collect::<Vec<_>>(), [("Team".to_string(), "oms".to_string())]);
    }
}

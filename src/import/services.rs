//! The other sections of an imported spec: queues, tables, Redis, the user
//! pool, log groups and clusters, named as they live.

use std::collections::{BTreeMap, BTreeSet};

use super::{by_id, name_stem, spec_id, unique, Context, ImportError, StackResource};
use crate::aws::{found, required, AwsResult};
use crate::kinds::cognito;
use crate::kinds::dynamodb;
use crate::kinds::ecs;
use crate::kinds::elasticache;
use crate::kinds::logs;
use crate::kinds::sqs;
use crate::spec::model::{AdoptTarget, AppClient, DeletionPolicy, Group, Identity, PasswordPolicy, Redis, Tier, UserPool};
use crate::spec::physical_name;

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
            let logical_id = name_stem(&name, &ctx.env);
            let found = StackResource { stack: "(found by name)".into(), logical_id, physical_id: name, resource_type: resource_type.into() };
            ctx.by_kind.entry(kind).or_default().push(found);
        }
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::user_tags;

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

//! Cognito: the admin user pool, its groups and its app client.
//!
//! Groups and app clients carry no tags; they belong to the operator when
//! their user pool does, so their ownership is read from the pool's tags.

pub mod app_client;
pub mod group;
pub mod user_pool;

use aws_sdk_cognitoidentityprovider::types::UserPoolType;
use aws_sdk_cognitoidentityprovider::Client;

use std::sync::Arc;

use crate::aws::{required, AwsError, AwsResult};
use crate::engine::{Desired, FieldReader, ReadCache, TAG_DELETION_POLICY, TAG_ID};
use crate::spec::model::{DeletionPolicy, Tags, UserPool};
use crate::spec::EnvSpec;

/// The spec's user pool and its physical name.
pub fn pool(env: &EnvSpec) -> Option<(&UserPool, String)> {
    let p = &env.spec.identity.as_ref()?.user_pool;
    let name = p.name.as_deref().map(|n| n.replace("${env}", &env.env)).unwrap_or_else(|| format!("sentry-users-{}", env.env));
    Some((p, name))
}

/// The user pool named `name`, described, if it exists (a paginated ListUserPools, then DescribeUserPool).
pub async fn find_pool(client: &Client, name: &str) -> Result<Option<UserPoolType>, AwsError> {
    let pools = client.list_user_pools().max_results(60).into_paginator().items().send().try_collect().await.aws("Cognito.ListUserPools")?;
    let Some(id) = pools.iter().find(|p| p.name() == Some(name)).and_then(|p| p.id()) else { return Ok(None) };
    Ok(client.describe_user_pool().user_pool_id(id).send().await.aws("Cognito.DescribeUserPool")?.user_pool)
}

/// The user pool named `name` as this pass found it: one ListUserPools and
/// DescribeUserPool a pass, shared by the pool, group and app-client kinds.
pub async fn live_pool(client: &Client, name: &str, reads: &ReadCache) -> Result<Arc<Option<UserPoolType>>, AwsError> {
    reads.get("Cognito.DescribeUserPool(environment)", || find_pool(client, name)).await
}

/// What the members of the environment's pool (groups, app clients) need of
/// it: its id and tags; `None` when the spec has no pool or it does not exist.
pub async fn pool_of_members(client: &Client, env: &EnvSpec, reads: &ReadCache) -> Result<Option<(String, Tags)>, AwsError> {
    let Some((_, name)) = pool(env) else { return Ok(None) };
    let found = live_pool(client, &name, reads).await?;
    let Some(p) = found.as_ref() else { return Ok(None) };
    Ok(Some((required("Cognito.DescribeUserPool", "user pool id", p.id())?, pool_tags(p))))
}

/// A pool's tags.
pub fn pool_tags(pool: &UserPoolType) -> Tags {
    pool.user_pool_tags().map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default()
}

/// Tags a pool member inherits: the pool's, with its own logical id and `retain`.
pub fn member_tags(pool_tags: &Tags, id: &str) -> Tags {
    let mut tags = pool_tags.clone();
    if tags.contains_key(TAG_ID) {
        tags.insert(TAG_ID.into(), id.into());
        tags.insert(TAG_DELETION_POLICY.into(), DeletionPolicy::Retain.as_str().into());
    }
    tags
}

/// A desired pool member (group or app client). It has no tags of its own:
/// its live ownership comes from the pool, whose kind keeps the tags.
pub fn member(kind: &'static str, id: &str, name: String) -> Desired {
    Desired::new(kind, id, name, Tags::new()).with_reference(POOL, user_pool::KIND, user_pool::ID)
}

/// The resolved user-pool id of a member about to be created.
pub fn pool_of(desired: &Desired, operation: &'static str) -> Result<String, AwsError> {
    desired.resolved(&[POOL], operation)?;
    Ok(desired.field(POOL).to_string())
}

/// The field naming a member's user pool.
pub const POOL: &str = "UserPoolId";

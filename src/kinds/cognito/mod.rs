//! Cognito: the admin user pool, its groups and its app client.
//!
//! Groups and app clients carry no tags; they belong to the operator when
//! their user pool does, so their ownership is read from the pool's tags.

pub mod app_client;
pub mod group;
pub mod user_pool;

use aws_sdk_cognitoidentityprovider::types::UserPoolType;
use aws_sdk_cognitoidentityprovider::Client;

use crate::aws::{AwsError, AwsResult};
use crate::engine::{is_unresolved, reference, Desired, ResourceKey, TAG_DELETION_POLICY, TAG_ID};
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
    let mut token = None;
    loop {
        let page = client.list_user_pools().max_results(60).set_next_token(token).send().await.aws("Cognito.ListUserPools")?;
        if let Some(id) = page.user_pools().iter().find(|p| p.name() == Some(name)).and_then(|p| p.id()) {
            let described = client.describe_user_pool().user_pool_id(id).send().await.aws("Cognito.DescribeUserPool")?;
            return Ok(described.user_pool);
        }
        token = page.next_token;
        if token.is_none() {
            return Ok(None);
        }
    }
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
    let pool = ResourceKey { kind: user_pool::KIND, id: user_pool::ID.into() };
    let mut d = Desired { key: ResourceKey { kind, id: id.into() }, name, fields: Default::default(), tags: Tags::new(), depends_on: vec![pool], adopt: false };
    d.fields.insert(POOL.into(), reference(user_pool::KIND, user_pool::ID));
    d
}

/// The resolved user-pool id of a member about to be created.
pub fn pool_of(desired: &Desired, operation: &'static str) -> Result<String, AwsError> {
    let pool = desired.fields.get(POOL).cloned().unwrap_or_default();
    if is_unresolved(&pool) {
        return Err(AwsError::unexpected(operation, "the user pool does not exist"));
    }
    Ok(pool)
}

/// The field naming a member's user pool.
pub const POOL: &str = "UserPoolId";

//! Cognito groups (Admin, Operator, Viewer) with description and precedence.
//! A group deleted out of band is re-created; one removed from the spec is
//! retained (it holds user memberships).

use crate::engine::focus::EventMatch;
use crate::engine::permissions::{Grant, Permissions};
use async_trait::async_trait;
use aws_sdk_cognitoidentityprovider::Client;

use super::{member, member_tags, pool, pool_of, pool_of_members, POOL};
use crate::aws::{gone_is_ok, AwsError, AwsResult};
use crate::engine::{Delta, Desired, FieldReader, Kind, Layer, Live, ReadCache, Rules};
use crate::spec::EnvSpec;

/// Kind name.
pub const KIND: &str = "cognito.group";

fields! { DESCRIPTION = "Description", PRECEDENCE = "Precedence" }

/// The group kind.
pub struct Groups {
    /// The service's client, shared by the kinds of the service.
    pub client: Client,
}

/// What the kind's calls need of IAM.
#[rustfmt::skip]
const PERMISSIONS: Permissions = Permissions {
    reads: &["cognito-idp:ListUserPools"],
    grants: &[Grant::allow("IdentityWrites", &["cognito-idp:DescribeUserPool", "cognito-idp:ListGroups", "cognito-idp:CreateGroup", "cognito-idp:UpdateGroup", "cognito-idp:DeleteGroup"], &["*"])],
};

#[async_trait]
impl Kind for Groups {
    fn rules(&self) -> Rules {
        Rules {
            immutable: &[POOL],
            events: EventMatch::of("cognito-idp.amazonaws.com", &["Group"], &["groupName", "GroupName"]),
            ..Rules::new(KIND, Layer::SecurityMonitoring).stands_for(&["AWS::Cognito::UserPoolGroup", "aws_cognito_user_group"]).needs(PERMISSIONS)
        }
    }

    fn desired(&self, env: &EnvSpec) -> Vec<Desired> {
        let Some((p, _)) = pool(env) else { return Vec::new() };
        p.groups.iter().map(|(name, g)| member(KIND, name, name.clone()).with(DESCRIPTION, &g.description).with(PRECEDENCE, g.precedence.to_string())).collect()
    }

    async fn observe(&self, env: &EnvSpec, _desired: &[Desired], reads: &ReadCache) -> Result<Vec<Live>, AwsError> {
        let Some((id, tags)) = pool_of_members(&self.client, env, reads).await? else { return Ok(Vec::new()) };
        let groups = self.client.list_groups().user_pool_id(&id).into_paginator().items().send().try_collect().await.aws("Cognito.ListGroups")?;
        Ok(groups
            .iter()
            .filter_map(|g| {
                let group = g.group_name()?;
                let l = Live { name: group.into(), handle: format!("{id}/{group}"), tags: member_tags(&tags, group), ..Live::default() };
                Some(
                    l.with_handle(POOL, &id)
                        .with(DESCRIPTION, g.description().unwrap_or_default())
                        .with(PRECEDENCE, g.precedence().map(|p| p.to_string()).unwrap_or_default()),
                )
            })
            .collect())
    }

    async fn create(&self, desired: &Desired, _token: &str, _reads: &ReadCache) -> Result<String, AwsError> {
        let pool = pool_of(desired, "Cognito.CreateGroup")?;
        let request = self.client.create_group().user_pool_id(&pool).group_name(&desired.name);
        request
            .description(desired.field(DESCRIPTION))
            .precedence(desired.number(PRECEDENCE, "Cognito.CreateGroup")?)
            .send()
            .await
            .aws("Cognito.CreateGroup")?;
        Ok(format!("{pool}/{}", desired.name))
    }

    async fn update(&self, desired: &Desired, live: &Live, delta: &Delta) -> Result<(), AwsError> {
        if delta.fields.is_empty() {
            return Ok(()); // tags are the pool's
        }
        let request = self.client.update_group().user_pool_id(live.field(POOL)).group_name(&desired.name);
        request
            .description(desired.field(DESCRIPTION))
            .precedence(desired.number(PRECEDENCE, "Cognito.UpdateGroup")?)
            .send()
            .await
            .aws("Cognito.UpdateGroup")?;
        Ok(())
    }

    async fn delete(&self, live: &Live, _reads: &ReadCache) -> Result<(), AwsError> {
        gone_is_ok(self.client.delete_group().user_pool_id(live.field(POOL)).group_name(&live.name).send().await.map(|_| ()).aws("Cognito.DeleteGroup"))
    }
}

//! Cognito groups (Admin, Operator, Viewer) with description and precedence.
//! A group deleted out of band is re-created; one removed from the spec is
//! retained (it holds user memberships).

use async_trait::async_trait;
use aws_sdk_cognitoidentityprovider::Client;

use super::{find_pool, member, member_tags, pool, pool_of, pool_tags, POOL};
use crate::aws::{gone_is_ok, AwsError, AwsResult};
use crate::engine::{Delta, Desired, Kind, Live, ReadCache, Rules};
use crate::spec::EnvSpec;

/// Kind name.
pub const KIND: &str = "cognito.group";

const DESCRIPTION: &str = "Description";
const PRECEDENCE: &str = "Precedence";

/// The group kind.
pub struct Groups {
    /// The service's client, shared by the kinds of the service.
    pub client: Client,
}

#[async_trait]
impl Kind for Groups {
    fn rules(&self) -> Rules {
        Rules { immutable: &[POOL], ..Rules::new(KIND) }
    }

    fn desired(&self, env: &EnvSpec) -> Vec<Desired> {
        let Some((p, _)) = pool(env) else { return Vec::new() };
        p.groups
            .iter()
            .map(|(name, g)| {
                let mut d = member(KIND, name, name.clone());
                d.fields.insert(DESCRIPTION.into(), g.description.clone());
                d.fields.insert(PRECEDENCE.into(), g.precedence.to_string());
                d
            })
            .collect()
    }

    async fn observe(&self, env: &EnvSpec, _desired: &[Desired], _reads: &ReadCache) -> Result<Vec<Live>, AwsError> {
        let Some((_, name)) = pool(env) else { return Ok(Vec::new()) };
        let Some(p) = find_pool(&self.client, &name).await? else { return Ok(Vec::new()) };
        let id = p.id().unwrap_or_default().to_string();
        let tags = pool_tags(&p);
        let mut found = Vec::new();
        let mut token = None;
        loop {
            let page = self.client.list_groups().user_pool_id(&id).set_next_token(token).send().await.aws("Cognito.ListGroups")?;
            for g in page.groups() {
                let Some(group) = g.group_name() else { continue };
                let mut l = Live { name: group.into(), handle: format!("{id}/{group}"), tags: member_tags(&tags, group), ..Live::default() };
                l.fields.insert(POOL.into(), id.clone());
                l.fields.insert(DESCRIPTION.into(), g.description().unwrap_or_default().into());
                l.fields.insert(PRECEDENCE.into(), g.precedence().map(|p| p.to_string()).unwrap_or_default());
                found.push(l);
            }
            token = page.next_token;
            if token.is_none() {
                return Ok(found);
            }
        }
    }

    async fn create(&self, desired: &Desired, _token: &str) -> Result<String, AwsError> {
        let pool = pool_of(desired, "Cognito.CreateGroup")?;
        self.client
            .create_group()
            .user_pool_id(&pool)
            .group_name(&desired.name)
            .description(desired.fields.get(DESCRIPTION).cloned().unwrap_or_default())
            .precedence(desired.fields.get(PRECEDENCE).and_then(|p| p.parse().ok()).unwrap_or(0))
            .send()
            .await
            .aws("Cognito.CreateGroup")?;
        Ok(format!("{pool}/{}", desired.name))
    }

    async fn update(&self, desired: &Desired, live: &Live, delta: &Delta) -> Result<(), AwsError> {
        if delta.fields.is_empty() {
            return Ok(()); // tags are the pool's
        }
        self.client
            .update_group()
            .user_pool_id(live.fields.get(POOL).cloned().unwrap_or_default())
            .group_name(&desired.name)
            .description(desired.fields.get(DESCRIPTION).cloned().unwrap_or_default())
            .precedence(desired.fields.get(PRECEDENCE).and_then(|p| p.parse().ok()).unwrap_or(0))
            .send()
            .await
            .aws("Cognito.UpdateGroup")?;
        Ok(())
    }

    async fn delete(&self, live: &Live) -> Result<(), AwsError> {
        gone_is_ok(
            self.client
                .delete_group()
                .user_pool_id(live.fields.get(POOL).cloned().unwrap_or_default())
                .group_name(&live.name)
                .send()
                .await
                .map(|_| ())
                .aws("Cognito.DeleteGroup"),
        )
    }
}

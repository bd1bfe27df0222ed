//! The admin frontend's app client: no secret (a browser cannot keep one)
//! and the auth flows the frontend needs. The secret setting cannot change
//! in place (a new client would change its id under the frontend): BLOCKED.

use async_trait::async_trait;
use aws_sdk_cognitoidentityprovider::types::ExplicitAuthFlowsType;
use aws_sdk_cognitoidentityprovider::Client;

use super::{find_pool, member, member_tags, pool, pool_of, pool_tags, POOL};
use crate::aws::{gone_is_ok, AwsError, AwsResult};
use crate::engine::{Delta, Desired, Kind, Live, ReadCache, Rules};
use crate::spec::{physical_name, EnvSpec};

/// Kind name.
pub const KIND: &str = "cognito.app-client";

const SECRET: &str = "GenerateSecret";
const FLOWS: &str = "ExplicitAuthFlows";

/// The app-client kind.
pub struct AppClients {
    /// The service's client, shared by the kinds of the service.
    pub client: Client,
}

fn flows(list: Option<&String>) -> Vec<ExplicitAuthFlowsType> {
    list.map(|l| l.split(',').filter(|f| !f.is_empty()).map(ExplicitAuthFlowsType::from).collect()).unwrap_or_default()
}

#[async_trait]
impl Kind for AppClients {
    fn rules(&self) -> Rules {
        Rules { immutable: &[POOL, SECRET], ..Rules::new(KIND) }
    }

    fn desired(&self, env: &EnvSpec) -> Vec<Desired> {
        let Some((p, _)) = pool(env) else { return Vec::new() };
        p.app_clients
            .iter()
            .map(|(id, c)| {
                let mut d = member(KIND, id, physical_name(c.name.as_deref(), id, &env.env));
                d.fields.insert(SECRET.into(), c.generate_secret.to_string());
                let mut f = c.auth_flows.clone();
                f.sort();
                d.fields.insert(FLOWS.into(), f.join(","));
                d
            })
            .collect()
    }

    async fn observe(&self, env: &EnvSpec, desired: &[Desired], _reads: &ReadCache) -> Result<Vec<Live>, AwsError> {
        let Some((_, name)) = pool(env) else { return Ok(Vec::new()) };
        let Some(p) = find_pool(&self.client, &name).await? else { return Ok(Vec::new()) };
        let pool_id = p.id().unwrap_or_default().to_string();
        let tags = pool_tags(&p);
        let mut found = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .client
                .list_user_pool_clients()
                .user_pool_id(&pool_id)
                .max_results(60)
                .set_next_token(token)
                .send()
                .await
                .aws("Cognito.ListUserPoolClients")?;
            for c in page.user_pool_clients() {
                let (Some(client_id), Some(client_name)) = (c.client_id(), c.client_name()) else { continue };
                let described =
                    self.client.describe_user_pool_client().user_pool_id(&pool_id).client_id(client_id).send().await.aws("Cognito.DescribeUserPoolClient")?;
                let Some(detail) = described.user_pool_client() else { continue };
                let id = desired.iter().find(|d| d.name == client_name).map_or(client_name, |d| d.key.id.as_str());
                let mut l = Live { name: client_name.into(), handle: format!("{pool_id}/{client_id}"), tags: member_tags(&tags, id), ..Live::default() };
                l.fields.insert(POOL.into(), pool_id.clone());
                l.fields.insert(SECRET.into(), detail.client_secret().is_some().to_string());
                let mut f: Vec<&str> = detail.explicit_auth_flows().iter().map(|f| f.as_str()).collect();
                f.sort_unstable();
                l.fields.insert(FLOWS.into(), f.join(","));
                l.meta.insert("client-id".into(), client_id.into());
                found.push(l);
            }
            token = page.next_token;
            if token.is_none() {
                return Ok(found);
            }
        }
    }

    async fn create(&self, desired: &Desired, _token: &str) -> Result<String, AwsError> {
        let pool = pool_of(desired, "Cognito.CreateUserPoolClient")?;
        let out = self
            .client
            .create_user_pool_client()
            .user_pool_id(&pool)
            .client_name(&desired.name)
            .generate_secret(desired.fields.get(SECRET).map(String::as_str) == Some("true"))
            .set_explicit_auth_flows(Some(flows(desired.fields.get(FLOWS))))
            .send()
            .await
            .aws("Cognito.CreateUserPoolClient")?;
        let client_id = out.user_pool_client().and_then(|c| c.client_id()).unwrap_or_default();
        Ok(format!("{pool}/{client_id}"))
    }

    async fn update(&self, desired: &Desired, live: &Live, delta: &Delta) -> Result<(), AwsError> {
        if delta.fields.is_empty() {
            return Ok(());
        }
        // UpdateUserPoolClient resets what it is not given: name and flows go along.
        self.client
            .update_user_pool_client()
            .user_pool_id(live.fields.get(POOL).cloned().unwrap_or_default())
            .client_id(live.meta.get("client-id").cloned().unwrap_or_default())
            .client_name(&desired.name)
            .set_explicit_auth_flows(Some(flows(desired.fields.get(FLOWS))))
            .send()
            .await
            .aws("Cognito.UpdateUserPoolClient")?;
        Ok(())
    }

    async fn delete(&self, live: &Live) -> Result<(), AwsError> {
        gone_is_ok(
            self.client
                .delete_user_pool_client()
                .user_pool_id(live.fields.get(POOL).cloned().unwrap_or_default())
                .client_id(live.meta.get("client-id").cloned().unwrap_or_default())
                .send()
                .await
                .map(|_| ())
                .aws("Cognito.DeleteUserPoolClient"),
        )
    }
}

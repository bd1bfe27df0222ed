//! The admin frontend's app client: no secret (a browser cannot keep one)
//! and the auth flows the frontend needs. The secret setting cannot change
//! in place (a new client would change its id under the frontend): BLOCKED.

use crate::engine::focus::EventMatch;
use crate::engine::permissions::{Grant, Permissions};
use async_trait::async_trait;
use aws_sdk_cognitoidentityprovider::types::ExplicitAuthFlowsType;
use aws_sdk_cognitoidentityprovider::Client;

use super::{member, member_tags, pool, pool_of, pool_of_members, POOL};
use crate::aws::{gone_is_ok, required, AwsError, AwsResult};
use crate::engine::{Delta, Desired, FieldReader, Kind, Layer, Live, ReadCache, Rules, Value};
use crate::spec::{physical_name, EnvSpec};

/// Kind name.
pub const KIND: &str = "cognito.app-client";

fields! { SECRET = "GenerateSecret", FLOWS = "ExplicitAuthFlows" }
/// Meta key of the client id, which the client's API calls take.
const CLIENT_ID: &str = "client-id";

/// The app-client kind.
pub struct AppClients {
    /// The service's client, shared by the kinds of the service.
    pub client: Client,
}

fn flows(desired: &Desired) -> Vec<ExplicitAuthFlowsType> {
    desired.items(FLOWS).iter().map(|f| ExplicitAuthFlowsType::from(f.as_str())).collect()
}

/// What the kind's calls need of IAM.
#[rustfmt::skip]
const PERMISSIONS: Permissions = Permissions {
    reads: &["cognito-idp:ListUserPools"],
    grants: &[Grant::allow("IdentityWrites", &["cognito-idp:DescribeUserPool", "cognito-idp:ListUserPoolClients", "cognito-idp:DescribeUserPoolClient", "cognito-idp:CreateUserPoolClient", "cognito-idp:UpdateUserPoolClient", "cognito-idp:DeleteUserPoolClient"], &["*"])],
};

#[async_trait]
impl Kind for AppClients {
    fn rules(&self) -> Rules {
        Rules {
            immutable: &[POOL, SECRET],
            events: EventMatch::of("cognito-idp.amazonaws.com", &["UserPoolClient"], &["clientId", "ClientId", "clientName", "ClientName"]),
            ..Rules::new(KIND, Layer::SecurityMonitoring).stands_for(&["AWS::Cognito::UserPoolClient", "aws_cognito_user_pool_client"]).needs(PERMISSIONS)
        }
    }

    fn desired(&self, env: &EnvSpec) -> Vec<Desired> {
        let Some((p, _)) = pool(env) else { return Vec::new() };
        p.app_clients
            .iter()
            .map(|(id, c)| {
                member(KIND, id, physical_name(c.name.as_deref(), id, &env.env))
                    .with(SECRET, c.generate_secret.to_string())
                    .with(FLOWS, Value::set(&c.auth_flows))
            })
            .collect()
    }

    async fn observe(&self, env: &EnvSpec, desired: &[Desired], reads: &ReadCache) -> Result<Vec<Live>, AwsError> {
        let Some((pool_id, tags)) = pool_of_members(&self.client, env, reads).await? else { return Ok(Vec::new()) };
        let request = self.client.list_user_pool_clients().user_pool_id(&pool_id).max_results(60);
        let clients = request.into_paginator().items().send().try_collect().await.aws("Cognito.ListUserPoolClients")?;
        let mut found = Vec::new();
        for c in &clients {
            let (Some(client_id), Some(client_name)) = (c.client_id(), c.client_name()) else { continue };
            let described =
                self.client.describe_user_pool_client().user_pool_id(&pool_id).client_id(client_id).send().await.aws("Cognito.DescribeUserPoolClient")?;
            let Some(detail) = described.user_pool_client() else { continue };
            let id = desired.iter().find(|d| d.name == client_name).map_or(client_name, |d| d.key.id.as_str());
            let l = Live { name: client_name.into(), handle: format!("{pool_id}/{client_id}"), tags: member_tags(&tags, id), ..Live::default() };
            let mut l = l
                .with_handle(POOL, &pool_id)
                .with(SECRET, detail.client_secret().is_some().to_string())
                .with(FLOWS, Value::set(detail.explicit_auth_flows().iter().map(|f| f.as_str())));
            l.meta.insert(CLIENT_ID.into(), client_id.into());
            found.push(l);
        }
        Ok(found)
    }

    async fn create(&self, desired: &Desired, _token: &str, _reads: &ReadCache) -> Result<String, AwsError> {
        let pool = pool_of(desired, "Cognito.CreateUserPoolClient")?;
        let request = self.client.create_user_pool_client().user_pool_id(&pool).client_name(&desired.name).generate_secret(desired.field(SECRET) == "true");
        let out = request.set_explicit_auth_flows(Some(flows(desired))).send().await.aws("Cognito.CreateUserPoolClient")?;
        let client_id = required("Cognito.CreateUserPoolClient", "client id", out.user_pool_client().and_then(|c| c.client_id()))?;
        Ok(format!("{pool}/{client_id}"))
    }

    async fn update(&self, desired: &Desired, live: &Live, delta: &Delta) -> Result<(), AwsError> {
        if delta.fields.is_empty() {
            return Ok(());
        }
        // UpdateUserPoolClient resets what it is not given: name and flows go along.
        self.client
            .update_user_pool_client()
            .user_pool_id(live.field(POOL))
            .client_id(live.meta(CLIENT_ID, "Cognito.UpdateUserPoolClient")?)
            .client_name(&desired.name)
            .set_explicit_auth_flows(Some(flows(desired)))
            .send()
            .await
            .aws("Cognito.UpdateUserPoolClient")?;
        Ok(())
    }

    async fn delete(&self, live: &Live, _reads: &ReadCache) -> Result<(), AwsError> {
        gone_is_ok(
            self.client
                .delete_user_pool_client()
                .user_pool_id(live.field(POOL))
                .client_id(live.meta(CLIENT_ID, "Cognito.DeleteUserPoolClient")?)
                .send()
                .await
                .map(|_| ())
                .aws("Cognito.DeleteUserPoolClient"),
        )
    }
}

//! The Cognito user pool: MFA required with software tokens, password
//! policy, admin-only sign-up, tags. MFA switched off out of band is switched
//! back on and reported as a security drift.

use crate::engine::focus::EventMatch;
use crate::engine::permissions::{Grant, Permissions};
use async_trait::async_trait;
use aws_sdk_cognitoidentityprovider::types::{AdminCreateUserConfigType, PasswordPolicyType, SoftwareTokenMfaConfigType, UserPoolMfaType, UserPoolPolicyType};
use aws_sdk_cognitoidentityprovider::Client;

use super::{live_pool, pool, pool_tags};
use crate::aws::{gone_is_ok, required, AwsError, AwsResult};
use crate::engine::plan::{Action, Step};
use crate::engine::{ownership_tags, Delta, Desired, FieldReader, Fields, Finding, FindingClass, Kind, Layer, Live, ReadCache, Review, Rules, Value};
use crate::spec::model::{Tags, UserPool};
use crate::spec::EnvSpec;

/// Kind name.
pub const KIND: &str = "cognito.user-pool";
/// The logical id of the environment's user pool.
pub const ID: &str = "user-pool";

fields! { MFA = "MfaConfiguration", TOTP = "SoftwareTokenMfa", ADMIN_ONLY = "AdminCreateUserOnly", PASSWORD = "PasswordPolicy" }
/// Meta key of the pool's ARN, which TagResource takes.
const ARN: &str = "arn";

/// The user-pool kind.
pub struct UserPools {
    /// The service's client, shared by the kinds of the service.
    pub client: Client,
}

/// A password policy as one comparable field: minimum length, then whether
/// upper case, lower case, numbers and symbols are required.
fn password_text(minimum_length: impl std::fmt::Display, upper: bool, lower: bool, numbers: bool, symbols: bool) -> String {
    format!("min={minimum_length} upper={upper} lower={lower} numbers={numbers} symbols={symbols}")
}

fn password_policy(text: &str) -> PasswordPolicyType {
    let get = |key: &str| text.split(' ').find_map(|kv| kv.strip_prefix(key).and_then(|v| v.strip_prefix('=')));
    let flag = |key: &str| get(key) == Some("true");
    PasswordPolicyType::builder()
        .minimum_length(get("min").and_then(|v| v.parse().ok()).unwrap_or(8))
        .require_uppercase(flag("upper"))
        .require_lowercase(flag("lower"))
        .require_numbers(flag("numbers"))
        .require_symbols(flag("symbols"))
        .build()
}

impl UserPools {
    async fn set_mfa(&self, pool: &str, fields: &Fields) -> Result<(), AwsError> {
        let totp = fields.get(TOTP).and_then(Value::as_text) == Some("true");
        self.client
            .set_user_pool_mfa_config()
            .user_pool_id(pool)
            .software_token_mfa_configuration(SoftwareTokenMfaConfigType::builder().enabled(totp).build())
            .mfa_configuration(UserPoolMfaType::from(fields.get(MFA).and_then(Value::as_text).unwrap_or("OFF")))
            .send()
            .await
            .aws("Cognito.SetUserPoolMfaConfig")?;
        Ok(())
    }
}

fn desired_pool(env: &EnvSpec, p: &UserPool, name: String) -> Desired {
    let pp = &p.password_policy;
    Desired::new(KIND, ID, name, ownership_tags(env, ID, p.deletion_policy, &Tags::new()))
        .with(MFA, &p.mfa)
        .with(TOTP, p.software_token_mfa.to_string())
        .with(ADMIN_ONLY, p.admin_create_user_only.to_string())
        .with(PASSWORD, password_text(pp.minimum_length, pp.require_uppercase, pp.require_lowercase, pp.require_numbers, pp.require_symbols))
}

/// What the kind's calls need of IAM.
#[rustfmt::skip]
const PERMISSIONS: Permissions = Permissions {
    reads: &["cognito-idp:ListUserPools"],
    grants: &[Grant::allow("IdentityWrites", &["cognito-idp:CreateUserPool", "cognito-idp:DescribeUserPool", "cognito-idp:UpdateUserPool", "cognito-idp:DeleteUserPool", "cognito-idp:GetUserPoolMfaConfig", "cognito-idp:SetUserPoolMfaConfig", "cognito-idp:TagResource"], &["*"])],
};

#[async_trait]
impl Kind for UserPools {
    fn rules(&self) -> Rules {
        Rules {
            events: EventMatch::of("cognito-idp.amazonaws.com", &["UserPool"], &["userPoolId", "UserPoolId"]).marked("userpool/"),
            ..Rules::new(KIND, Layer::SecurityMonitoring).stands_for(&["AWS::Cognito::UserPool", "aws_cognito_user_pool"]).needs(PERMISSIONS)
        }
    }

    fn desired(&self, env: &EnvSpec) -> Vec<Desired> {
        pool(env).map(|(p, name)| vec![desired_pool(env, p, name)]).unwrap_or_default()
    }

    async fn observe(&self, _env: &EnvSpec, desired: &[Desired], reads: &ReadCache) -> Result<Vec<Live>, AwsError> {
        let Some(d) = desired.first() else { return Ok(Vec::new()) };
        let found = live_pool(&self.client, &d.name, reads).await?;
        let Some(p) = found.as_ref() else { return Ok(Vec::new()) };
        let id = required("Cognito.DescribeUserPool", "user pool id", p.id())?;
        let arn = required("Cognito.DescribeUserPool", "user pool ARN", p.arn())?;
        let mfa = self.client.get_user_pool_mfa_config().user_pool_id(&id).send().await.aws("Cognito.GetUserPoolMfaConfig")?;
        let mut l = Live { name: d.name.clone(), handle: id, tags: pool_tags(p), meta: [(ARN.to_string(), arn)].into(), ..Live::default() }
            .with(MFA, mfa.mfa_configuration().map_or("OFF", |m| m.as_str()))
            .with(TOTP, mfa.software_token_mfa_configuration().is_some_and(|c| c.enabled()).to_string())
            .with(ADMIN_ONLY, p.admin_create_user_config().is_some_and(|c| c.allow_admin_create_user_only()).to_string());
        if let Some(pp) = p.policies().and_then(|x| x.password_policy()) {
            let text =
                password_text(pp.minimum_length().unwrap_or(8), pp.require_uppercase(), pp.require_lowercase(), pp.require_numbers(), pp.require_symbols());
            l = l.with(PASSWORD, text);
        }
        Ok(vec![l])
    }

    async fn create(&self, desired: &Desired, _token: &str, _reads: &ReadCache) -> Result<String, AwsError> {
        let request = self
            .client
            .create_user_pool()
            .pool_name(&desired.name)
            .policies(UserPoolPolicyType::builder().password_policy(password_policy(desired.field(PASSWORD))).build())
            .admin_create_user_config(AdminCreateUserConfigType::builder().allow_admin_create_user_only(desired.field(ADMIN_ONLY) == "true").build());
        let out = request.set_user_pool_tags(Some(desired.tags.clone().into_iter().collect())).send().await.aws("Cognito.CreateUserPool")?;
        let id = required("Cognito.CreateUserPool", "user pool id", out.user_pool().and_then(|p| p.id()))?;
        self.set_mfa(&id, &desired.fields).await?;
        Ok(id)
    }

    async fn update(&self, desired: &Desired, live: &Live, delta: &Delta) -> Result<(), AwsError> {
        if delta.fields.iter().any(|c| c.field == MFA || c.field == TOTP) {
            let pool = &desired.name;
            tracing::error!(target: "sentry_operator::alert", alert = "SecurityDrift", %pool, "user pool MFA differs from the spec; restoring it");
            self.set_mfa(&live.handle, &desired.fields).await?;
        }
        if delta.fields.iter().any(|c| c.field == PASSWORD || c.field == ADMIN_ONLY) {
            // UpdateUserPool resets what it is not given, so MFA and tags go along.
            self.client
                .update_user_pool()
                .user_pool_id(&live.handle)
                .policies(UserPoolPolicyType::builder().password_policy(password_policy(desired.field(PASSWORD))).build())
                .admin_create_user_config(AdminCreateUserConfigType::builder().allow_admin_create_user_only(desired.field(ADMIN_ONLY) == "true").build())
                .mfa_configuration(UserPoolMfaType::from(desired.field(MFA)))
                .set_user_pool_tags(Some(desired.tags.clone().into_iter().collect()))
                .send()
                .await
                .aws("Cognito.UpdateUserPool")?;
        }
        if !delta.tags.is_empty() {
            let arn = live.meta(ARN, "Cognito.TagResource")?;
            self.client.tag_resource().resource_arn(arn).set_tags(Some(delta.tags.clone().into_iter().collect())).send().await.aws("Cognito.TagResource")?;
        }
        Ok(())
    }

    async fn delete(&self, live: &Live, _reads: &ReadCache) -> Result<(), AwsError> {
        gone_is_ok(self.client.delete_user_pool().user_pool_id(&live.handle).send().await.map(|_| ()).aws("Cognito.DeleteUserPool"))
    }

    fn review(&self, _env: &EnvSpec, steps: &[&Step], _reads: &ReadCache) -> Review {
        let findings = steps
            .iter()
            .filter(|s| s.action == Action::Update)
            .flat_map(|s| s.delta.fields.iter().filter(|c| c.field == MFA || c.field == TOTP).map(move |c| (s, c)))
            .map(|(s, c)| Finding {
                class: FindingClass::SecurityDrift,
                resource: s.key.clone(),
                field: Some(c.field.clone()),
                desired: c.desired.as_ref().map(Value::to_string),
                live: c.live.as_ref().map(Value::to_string),
                violation: true,
                message: format!(
                    "{} ({}): {} is {} instead of {}",
                    s.key,
                    s.name,
                    c.field,
                    c.live_text().unwrap_or("unset"),
                    c.desired_text().unwrap_or("unset")
                ),
                facts: Default::default(),
            })
            .collect();
        Review { findings, ..Review::default() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_cognitoidentityprovider::operation::tag_resource::TagResourceOutput;
    use aws_smithy_mocks::{mock, mock_client};

    // The emulator has no Cognito TagResource: adopting a pool (tags only,
    // nothing else changed) is tested against a mock. UpdateUserPool would
    // reset every setting it is not given, so it must not be called.
    #[tokio::test]
    async fn adopting_a_pool_tags_it_and_changes_nothing_else() {
        let tag = mock!(Client::tag_resource)
            .match_requests(|r| r.resource_arn() == Some("arn:pool") && r.tags().is_some_and(|t| t.get("sentry:env").map(String::as_str) == Some("dev")))
            .then_output(|| TagResourceOutput::builder().build());
        let kind = UserPools { client: mock_client!(aws_sdk_cognitoidentityprovider, [&tag]) };
        let desired = Desired::new(KIND, ID, "sentry-users-dev", Tags::new());
        let live =
            Live { name: "sentry-users-dev".into(), handle: "us-east-1_x".into(), meta: [(ARN.to_string(), "arn:pool".to_string())].into(), ..Live::default() };
        let delta = Delta { fields: Vec::new(), tags: [("sentry:env".to_string(), "dev".to_string())].into() };
        kind.update(&desired, &live, &delta).await.expect("tagged");
        assert_eq!(tag.num_calls(), 1);
    }
}

//! The `identity` section: the Cognito user pool, its groups and app client; their types
//! and their checks.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::model::*;
use super::validate::Checker;

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
    pub name: Option<String>,
    /// Generate a client secret (a browser frontend must not).
    #[serde(default)]
    pub generate_secret: bool,
    /// Explicit auth flows, e.g. `ALLOW_USER_SRP_AUTH`.
    pub auth_flows: Vec<String>,
}

impl Checker {
    pub(super) fn identity(&mut self, p: &UserPool) {
        self.one_of(&["identity", "userPool", "mfa"], &p.mfa, &["ON", "OPTIONAL", "OFF"]);
        self.range(&["identity", "userPool", "passwordPolicy", "minimumLength"], Some(p.password_policy.minimum_length), 6, 99);
        const FLOWS: &[&str] = &[
            "ALLOW_USER_SRP_AUTH",
            "ALLOW_REFRESH_TOKEN_AUTH",
            "ALLOW_USER_PASSWORD_AUTH",
            "ALLOW_ADMIN_USER_PASSWORD_AUTH",
            "ALLOW_CUSTOM_AUTH",
            "ALLOW_USER_AUTH",
        ];
        for (id, client) in &p.app_clients {
            for (i, flow) in client.auth_flows.iter().enumerate() {
                self.one_of(&["identity", "userPool", "appClients", id, "authFlows", &i.to_string()], flow, FLOWS);
            }
        }
    }
}

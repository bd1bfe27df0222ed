//! The `security` section: the customer-managed KMS keys that encrypt the
//! tables and the secrets, and the Secrets Manager secrets the tasks read;
//! their types and their checks.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::model::{DeletionPolicy, Tags};
use super::validate::Checker;

/// Keys and secrets.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct Security {
    /// Customer-managed KMS keys by logical id.
    pub keys: BTreeMap<String, KmsKey>,
    /// Secrets Manager secrets by logical id.
    pub secrets: BTreeMap<String, Secret>,
}

/// A symmetric customer-managed KMS key, found by its alias. A key is state
/// (whatever it encrypted is lost with it): removed from the spec it is
/// retained unless `deletionPolicy: delete` was applied first, and even then
/// only scheduled for deletion with the longest waiting period (30 days).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KmsKey {
    /// What the key is for.
    pub description: String,
    /// Alias; default `alias/sentry-<id>-<env>`; may use `${env}`.
    pub alias: Option<String>,
    /// Yearly automatic rotation of the key material.
    #[serde(default = "yes")]
    pub rotation: bool,
    /// Extra tags.
    #[serde(default)]
    pub tags: Tags,
    /// What happens once removed from the spec.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// A Secrets Manager secret. The operator owns its existence, description,
/// key, tags and rotation settings, never its value: it is created holding a
/// placeholder (one entry per name in `keys`), to be set by hand, and the
/// value is never read, written, compared or shown afterwards.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Secret {
    /// Physical name; default `sentry/<env>/<id>` (the seeds' `sentry/dev/exchange-credentials`).
    /// It must contain `${env}`: one secret per environment.
    pub name: Option<String>,
    /// What the secret holds.
    pub description: String,
    /// The JSON keys of the value (the task definitions read them): the
    /// placeholder holds each, with a text saying to set it by hand.
    #[serde(default)]
    pub keys: Vec<String>,
    /// The key that encrypts it: a key of `security.keys` by logical id, or a
    /// key ARN; default the AWS-managed `aws/secretsmanager`.
    pub kms_key: Option<String>,
    /// Automatic rotation by a Lambda function; none by default.
    pub rotation: Option<Rotation>,
    /// Days the secret can still be restored once deleted (7-30).
    #[serde(default = "thirty")]
    pub recovery_window_days: u32,
    /// Extra tags.
    #[serde(default)]
    pub tags: Tags,
    /// What happens once removed from the spec.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// A secret's rotation schedule.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Rotation {
    /// The rotation function's ARN.
    pub lambda_arn: String,
    /// Rotate every this many days (1-1000).
    pub after_days: u32,
}

fn yes() -> bool {
    true
}

fn thirty() -> u32 {
    30
}

impl KmsKey {
    /// The key's alias for logical id `id` in environment `env`.
    pub fn alias_name(&self, id: &str, env: &str) -> String {
        self.alias.as_deref().map_or_else(|| format!("alias/sentry-{id}-{env}"), |a| a.replace("${env}", env))
    }
}

impl Secret {
    /// The secret's name for logical id `id` in environment `env`.
    pub fn physical_name(&self, id: &str, env: &str) -> String {
        self.name.as_deref().map_or_else(|| format!("sentry/{env}/{id}"), |n| n.replace("${env}", env))
    }
}

impl Checker {
    pub(super) fn security(&mut self, env: &str, security: &Security) {
        for (id, key) in &security.keys {
            self.tags(&["security", "keys", id], &key.tags);
            let alias = key.alias_name(id, env);
            let valid = alias.len() <= 256
                && alias.strip_prefix("alias/sentry").is_some_and(|rest| rest.chars().all(|c| c.is_ascii_alphanumeric() || "/_-".contains(c)));
            if !valid {
                let why = "alias/sentry then letters, digits and /_- (the operator's IAM policy names only these aliases)";
                self.err(&["security", "keys", id, "alias"], format!("{alias:?} is not one of the operator's key aliases ({why})"));
            }
        }
        self.unique_names(&["security", "keys"], security.keys.iter().map(|(id, k)| (id.as_str(), k.alias_name(id, env))));
        for (id, s) in &security.secrets {
            let at = |field: &'static str| ["security", "secrets", id.as_str(), field];
            self.tags(&["security", "secrets", id], &s.tags);
            self.range(&at("recoveryWindowDays"), Some(s.recovery_window_days), 7, 30);
            if let Some(r) = &s.rotation {
                self.range(&["security", "secrets", id, "rotation", "afterDays"], Some(r.after_days), 1, 1000);
                if !r.lambda_arn.starts_with("arn:aws:lambda:") {
                    self.err(&["security", "secrets", id, "rotation", "lambdaArn"], format!("{:?} is not a Lambda function ARN", r.lambda_arn));
                }
            }
            if let Some(name) = &s.name {
                if !name.contains("${env}") {
                    self.err(&at("name"), format!("{name:?} is the same secret in every environment: put ${{env}} in it"));
                }
            }
            let name = s.physical_name(id, env);
            if !name.starts_with("sentry/") || name.len() > 512 || !name.chars().all(|c| c.is_ascii_alphanumeric() || "/_+=.@-".contains(c)) {
                let why = "sentry/ then letters, digits and /_+=.@-, at most 512: the operator's IAM policy writes only secrets named sentry/*";
                self.err(&at("name"), format!("{name:?} is not one of the operator's secret names ({why})"));
            }
            for k in &s.keys {
                if k.is_empty() || k.contains(':') {
                    self.err(&at("keys"), format!("{k:?} is not a JSON key a task definition can name (non-empty, no `:`)"));
                }
            }
            if let Some(key) = s.kms_key.as_deref().filter(|k| !k.starts_with("arn:")) {
                self.reference(&at("kmsKey"), key, security.keys.keys().map(String::as_str), "KMS key");
            }
        }
        self.unique_names(&["security", "secrets"], security.secrets.iter().map(|(id, s)| (id.as_str(), s.physical_name(id, env))));
    }
}

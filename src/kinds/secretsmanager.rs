//! Secrets Manager secrets: their existence, description, KMS key, tags and
//! rotation settings, **never their value**. A secret is created holding a
//! placeholder (the seeds: "o secret é criado com um placeholder"); from then
//! on the value is never read (no GetSecretValue anywhere in the operator),
//! never written, never compared and never shown. A secret scheduled for
//! deletion out of band is restored; the operator deletes one only when opted
//! in, with its recovery window, never `ForceDeleteWithoutRecovery`.

use crate::engine::focus::EventMatch;
use crate::engine::permissions::{Grant, Permissions};
use crate::kinds::each;
use async_trait::async_trait;
use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType, RotationRulesType, SecretListEntry, Tag};
use aws_sdk_secretsmanager::Client;
use serde_json::{Map, Value};

use crate::aws::{gone_is_ok, required, AwsError, AwsResult};
use crate::engine::{ownership_tags, Delta, Desired, FieldReader, Kind, Layer, Live, ReadCache, Rules};
use crate::kinds::kms;
use crate::spec::model::Tags;
use crate::spec::EnvSpec;

/// Kind name.
pub const KIND: &str = "secretsmanager.secret";

fields! { DESCRIPTION = "Description", KMS_KEY = "KmsKey", ROTATION = "Rotation", DELETED = "ScheduledForDeletion" }
/// Kept on the secret, so that a deletion (which sees only the live secret) uses the spec's window.
const TAG_RECOVERY_WINDOW: &str = "sentry:recovery-window-days";
/// The placeholder's text for each key.
const PLACEHOLDER: &str = "PLACEHOLDER: set the real value by hand (the operator never reads or writes it)";
/// The keys of the placeholder: an input of the create, never compared.
const PLACEHOLDER_KEYS: &str = "PlaceholderKeys";
/// The key Secrets Manager uses when none is named.
const AWS_MANAGED_KEY: &str = "alias/aws/secretsmanager";
/// Rotation off.
const NO_ROTATION: &str = "off";

/// The secret kind.
pub struct Secrets {
    /// The service's client.
    pub client: Client,
}

/// The value a new secret holds: a JSON object with a placeholder under each of `keys`.
fn placeholder(keys: &[String]) -> String {
    let entries: Map<String, Value> = keys.iter().map(|k| (k.clone(), Value::from(PLACEHOLDER))).collect();
    Value::Object(entries).to_string()
}

/// The `valueFrom` of a task definition's secret written `<id>` or
/// `<id>:<json key>` (a secret of the spec, in this pass's account and
/// region), or the ARN as written.
pub fn value_from(env: &EnvSpec, reference: &str) -> String {
    if reference.starts_with("arn:") {
        return env.substitute(reference);
    }
    let (id, key) = reference.split_once(':').map_or((reference, None), |(id, key)| (id, Some(key)));
    let secret = env.spec.security.as_ref().and_then(|s| s.secrets.get(id));
    let name = secret.map_or_else(|| id.to_string(), |s| s.physical_name(id, &env.env));
    let arn = env.substitute(&format!("arn:aws:secretsmanager:${{region}}:${{account}}:secret:{name}"));
    match key {
        Some(key) => format!("{arn}:{key}::"),
        None => arn,
    }
}

fn rotation_field(lambda: &str, days: i64) -> String {
    format!("{lambda} every {days} days")
}

fn tag_list(tags: &Tags) -> Vec<Tag> {
    tags.iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect()
}

/// What the kind's calls need of IAM.
#[rustfmt::skip]
const PERMISSIONS: Permissions = Permissions {
    reads: &["secretsmanager:ListSecrets"],
    grants: &[
        Grant::allow("SecretWritesNeverTheirValues", &["secretsmanager:CreateSecret", "secretsmanager:UpdateSecret", "secretsmanager:RestoreSecret", "secretsmanager:RotateSecret", "secretsmanager:CancelRotateSecret", "secretsmanager:TagResource", "secretsmanager:DeleteSecret"], &["arn:aws:secretsmanager:*:*:secret:sentry/*"]),
        Grant::deny("NeverASecretsValue", &["secretsmanager:GetSecretValue", "secretsmanager:BatchGetSecretValue", "secretsmanager:PutSecretValue"], &["*"]),
        Grant::allow("TurningOnASecretsRotation", &["lambda:InvokeFunction"], &["arn:aws:lambda:*:*:function:sentry-*"]),
    ],
};

#[async_trait]
impl Kind for Secrets {
    fn rules(&self) -> Rules {
        Rules {
            create_only: &[PLACEHOLDER_KEYS],
            events: EventMatch::of("secretsmanager.amazonaws.com", &[], &["secretId", "SecretId", "name", "arn"]),
            ..Rules::new(KIND, Layer::SecurityMonitoring).stands_for(&["AWS::SecretsManager::Secret", "aws_secretsmanager_secret"]).needs(PERMISSIONS)
        }
    }

    fn desired(&self, env: &EnvSpec) -> Vec<Desired> {
        each(env.spec.security.as_ref().map(|security| &security.secrets), |(id, s)| {
            let mut tags = s.tags.clone();
            tags.insert(TAG_RECOVERY_WINDOW.into(), s.recovery_window_days.to_string());
            let rotation = s.rotation.as_ref().map_or_else(|| NO_ROTATION.to_string(), |r| rotation_field(&r.lambda_arn, r.after_days.into()));
            let d = Desired::new(KIND, id, s.physical_name(id, &env.env), ownership_tags(env, id, s.deletion_policy, &tags))
                .with(DESCRIPTION, &s.description)
                .with(ROTATION, rotation)
                .with(DELETED, "false")
                .with(PLACEHOLDER_KEYS, crate::engine::Value::set(&s.keys));
            match s.kms_key.as_deref() {
                Some(arn) if arn.starts_with("arn:") => d.with(KMS_KEY, crate::engine::Value::handle(arn)),
                Some(key) => d.with_reference(KMS_KEY, kms::KIND, key),
                None => d.with(KMS_KEY, ""),
            }
        })
    }

    async fn observe(&self, env: &EnvSpec, desired: &[Desired], _reads: &ReadCache) -> Result<Vec<Live>, AwsError> {
        // One paginated read of the secrets whose names begin like ours (those
        // scheduled for deletion included); it carries everything compared.
        let prefix = crate::kinds::read::common_prefix(desired.iter().map(|d| d.name.as_str()).chain(std::iter::once("sentry")));
        let mut request = self.client.list_secrets().include_planned_deletion(true);
        if !prefix.is_empty() {
            request = request.filters(Filter::builder().key(FilterNameStringType::Name).values(prefix).build());
        }
        let pages: Vec<_> = request.into_paginator().send().try_collect().await.aws("SecretsManager.ListSecrets")?;
        let listed: Vec<SecretListEntry> = pages.into_iter().flat_map(|p| p.secret_list.unwrap_or_default()).collect();
        let live = listed.into_iter().map(live_secret).collect::<Result<Vec<Live>, AwsError>>()?;
        Ok(live.into_iter().filter(|l| l.is_named_or_owned(&env.env, desired)).collect())
    }

    async fn create(&self, desired: &Desired, _token: &str, _reads: &ReadCache) -> Result<String, AwsError> {
        let key = Some(desired.field(KMS_KEY)).filter(|k| !k.is_empty());
        let request = self
            .client
            .create_secret()
            .name(&desired.name)
            .description(desired.field(DESCRIPTION))
            .set_kms_key_id(key.map(str::to_string))
            .secret_string(placeholder(&desired.items(PLACEHOLDER_KEYS)))
            .set_tags(Some(tag_list(&desired.tags)));
        let out = request.send().await.aws("SecretsManager.CreateSecret")?;
        let arn = required("SecretsManager.CreateSecret", "secret ARN", out.arn())?;
        if desired.field(ROTATION) != NO_ROTATION {
            self.rotate(&arn, desired).await?;
        }
        Ok(arn)
    }

    async fn update(&self, desired: &Desired, live: &Live, delta: &Delta) -> Result<(), AwsError> {
        let arn = &live.handle;
        let changed = |field: &str| delta.fields.iter().any(|c| c.field == field);
        if changed(DELETED) {
            self.client.restore_secret().secret_id(arn).send().await.aws("SecretsManager.RestoreSecret")?;
        }
        // Description and key only: an UpdateSecret without a value never touches the value.
        if changed(DESCRIPTION) || changed(KMS_KEY) {
            let key = match desired.field(KMS_KEY) {
                _ if !changed(KMS_KEY) => None,
                "" => Some(AWS_MANAGED_KEY),
                key => Some(key),
            };
            let request = self.client.update_secret().secret_id(arn).description(desired.field(DESCRIPTION)).set_kms_key_id(key.map(str::to_string));
            request.send().await.aws("SecretsManager.UpdateSecret")?;
        }
        if changed(ROTATION) {
            if desired.field(ROTATION) == NO_ROTATION {
                self.client.cancel_rotate_secret().secret_id(arn).send().await.aws("SecretsManager.CancelRotateSecret")?;
            } else {
                self.rotate(arn, desired).await?;
            }
        }
        if !delta.tags.is_empty() {
            self.client.tag_resource().secret_id(arn).set_tags(Some(tag_list(&delta.tags))).send().await.aws("SecretsManager.TagResource")?;
        }
        Ok(())
    }

    /// Deleted with the recovery window the secret's tag records (the spec's
    /// `recoveryWindowDays`, 30 by default), never without recovery.
    async fn delete(&self, live: &Live, _reads: &ReadCache) -> Result<(), AwsError> {
        if live.field(DELETED) == "true" {
            return Ok(());
        }
        let days = live.tags.get(TAG_RECOVERY_WINDOW).and_then(|d| d.parse::<i64>().ok()).filter(|d| (7..=30).contains(d)).unwrap_or(30);
        let request = self.client.delete_secret().secret_id(&live.handle).recovery_window_in_days(days);
        gone_is_ok(request.send().await.map(|_| ()).aws("SecretsManager.DeleteSecret"))
    }
}

impl Secrets {
    /// Sets the rotation schedule `desired` names, without rotating now (a
    /// rotation writes a new value: the schedule's first one does it).
    async fn rotate(&self, arn: &str, desired: &Desired) -> Result<(), AwsError> {
        let rotation = desired.field(ROTATION);
        let (lambda, days) =
            rotation.split_once(" every ").and_then(|(lambda, rest)| Some((lambda, rest.strip_suffix(" days")?.parse::<i64>().ok()?))).ok_or_else(|| {
                AwsError::unexpected("SecretsManager.RotateSecret", format!("{}: rotation {rotation:?} is not `<lambda> every <n> days`", desired.name))
            })?;
        let rules = RotationRulesType::builder().automatically_after_days(days).build();
        let request = self.client.rotate_secret().secret_id(arn).rotation_lambda_arn(lambda).rotation_rules(rules).rotate_immediately(false);
        request.send().await.aws("SecretsManager.RotateSecret")?;
        Ok(())
    }
}

/// The live form of a listed secret: its settings, never its value.
fn live_secret(s: SecretListEntry) -> Result<Live, AwsError> {
    let name = required("SecretsManager.ListSecrets", "secret name", s.name())?;
    let arn = required("SecretsManager.ListSecrets", "secret ARN", s.arn())?;
    let tags = s.tags().iter().filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string()))).collect();
    let rotation = match (s.rotation_enabled(), s.rotation_lambda_arn(), s.rotation_rules().and_then(|r| r.automatically_after_days())) {
        (Some(true), Some(lambda), Some(days)) => rotation_field(lambda, days),
        _ => NO_ROTATION.to_string(),
    };
    Ok(Live { name, handle: arn, tags, ..Live::default() }
        .with(DESCRIPTION, s.description().unwrap_or_default())
        .with_handle(KMS_KEY, s.kms_key_id().filter(|k| !k.ends_with(AWS_MANAGED_KEY)).unwrap_or_default())
        .with(ROTATION, rotation)
        .with(DELETED, s.deleted_date().is_some().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_placeholder_holds_each_key_and_nothing_else() {
        let value: Value = serde_json::from_str(&placeholder(&["api_key".into(), "api_secret".into()])).unwrap_or_default();
        assert_eq!(value.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()), Some(vec!["api_key".to_string(), "api_secret".to_string()]));
        assert_eq!(placeholder(&[]), "{}");
    }
}

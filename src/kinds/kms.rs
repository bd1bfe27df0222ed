//! Customer-managed KMS keys (the tables' and the secrets' encryption): a
//! symmetric key found by its alias, with its description, yearly rotation
//! and state. A key is state: one scheduled for deletion or disabled out of
//! band is restored, and the operator itself schedules a deletion only when
//! opted in, always with the longest waiting period (30 days).

use crate::engine::focus::EventMatch;
use crate::engine::permissions::{Grant, Permissions};
use crate::kinds::each;
use async_trait::async_trait;
use aws_sdk_kms::types::{KeyManagerType, KeyState, Tag};
use aws_sdk_kms::Client;

use crate::aws::{required, AwsError, AwsResult, Built, ErrorClass};
use crate::engine::{ownership_tags, Delta, Desired, FieldReader, Kind, Layer, Live, Matching, ReadCache, Rules};
use crate::kinds::read::describe_each;
use crate::spec::EnvSpec;

/// Kind name.
pub const KIND: &str = "kms.key";

fields! { DESCRIPTION = "Description", ROTATION = "Rotation", STATE = "KeyState", ALIAS = "Alias" }
/// The meta key of the key's id (the calls that change a key take it; an ARN works on AWS, not on the emulator).
const KEY_ID: &str = "key id";
/// The longest waiting period KMS allows before a scheduled deletion.
const DELETION_WINDOW_DAYS: i32 = 30;

/// The key kind.
pub struct Keys {
    /// The service's client.
    pub client: Client,
}

fn tag_list(tags: &crate::spec::model::Tags) -> Result<Vec<Tag>, AwsError> {
    tags.iter().map(|(k, v)| Tag::builder().tag_key(k).tag_value(v).build().built("KMS.Tag")).collect()
}

/// What the kind's calls need of IAM.
#[rustfmt::skip]
const PERMISSIONS: Permissions = Permissions {
    reads: &["kms:ListAliases", "kms:ListKeys", "kms:DescribeKey", "kms:ListResourceTags", "kms:GetKeyRotationStatus"],
    grants: &[
        Grant::allow("CreateKeysTaggedAsTheOperators", &["kms:CreateKey", "kms:TagResource"], &["*"]).when(r#"{"StringEquals": {"aws:RequestTag/sentry:managed-by": "sentry-operator"}}"#),
        Grant::allow("ChangeOnlyTheOperatorsKeys", &["kms:EnableKeyRotation", "kms:DisableKeyRotation", "kms:UpdateKeyDescription", "kms:CancelKeyDeletion", "kms:EnableKey", "kms:TagResource", "kms:ScheduleKeyDeletion"], &["arn:aws:kms:*:*:key/*"]).when(r#"{"StringEquals": {"aws:ResourceTag/sentry:managed-by": "sentry-operator"}}"#),
        Grant::allow("TheOperatorsKeyAliases", &["kms:CreateAlias", "kms:DeleteAlias"], &["arn:aws:kms:*:*:alias/sentry-*", "arn:aws:kms:*:*:key/*"]),
        Grant::allow("WhatSecretsManagerAndDynamoDbDoWithTheKeysForTheOperator", &["kms:GenerateDataKey", "kms:Encrypt", "kms:Decrypt", "kms:CreateGrant"], &["arn:aws:kms:*:*:key/*"]).when(r#"{"StringLike": {"kms:ViaService": ["secretsmanager.*.amazonaws.com", "dynamodb.*.amazonaws.com"]}}"#),
    ],
};

#[async_trait]
impl Kind for Keys {
    fn rules(&self) -> Rules {
        Rules {
            matching: Matching::Custom,
            events: EventMatch::of("kms.amazonaws.com", &[], &["keyId", "KeyId", "targetKeyId"]),
            ..Rules::new(KIND, Layer::SecurityMonitoring)
                .stands_for(&["AWS::KMS::Key", "aws_kms_key"])
                .with_parts(&[("AWS::KMS::Alias", "its key's alias"), ("aws_kms_alias", "its key's alias")])
                .needs(PERMISSIONS)
        }
    }

    /// The key its alias names, or (before the alias exists: a create cut
    /// short) the key this environment's tags say is `id`.
    fn matches(&self, env: &str, desired: &Desired, live: &Live) -> bool {
        (!live.name.is_empty() && live.name == desired.name) || live.is_owned_as(env, &desired.key.id)
    }

    fn desired(&self, env: &EnvSpec) -> Vec<Desired> {
        each(env.spec.security.as_ref().map(|security| &security.keys), |(id, k)| {
            let alias = k.alias_name(id, &env.env);
            Desired::new(KIND, id, &alias, ownership_tags(env, id, k.deletion_policy, &k.tags))
                .with(DESCRIPTION, &k.description)
                .with(ROTATION, k.rotation.to_string())
                .with(STATE, KeyState::Enabled.as_str())
                .with(ALIAS, alias)
        })
    }

    async fn observe(&self, env: &EnvSpec, desired: &[Desired], _reads: &ReadCache) -> Result<Vec<Live>, AwsError> {
        // Every alias and key of the region in two paginated reads; then the
        // keys our aliases name, and the keys with no alias at all (a create
        // cut short before its alias, found by its tags), are described.
        let aliases: Vec<_> = self.client.list_aliases().into_paginator().items().send().try_collect().await.aws("KMS.ListAliases")?;
        let keys: Vec<_> = self.client.list_keys().into_paginator().items().send().try_collect().await.aws("KMS.ListKeys")?;
        let ours = |alias: &str| alias.starts_with("alias/sentry") || desired.iter().any(|d| d.name == alias);
        let candidates: Vec<(String, String)> = keys
            .iter()
            .filter_map(|k| {
                let id = k.key_id()?;
                let named: Vec<&str> = aliases.iter().filter(|a| a.target_key_id() == Some(id)).filter_map(|a| a.alias_name()).collect();
                let alias = named.iter().find(|a| desired.iter().any(|d| d.name == **a)).or_else(|| named.iter().find(|a| ours(a)));
                match (alias, named.is_empty()) {
                    (Some(alias), _) => Some((id.to_string(), alias.to_string())),
                    (None, true) => Some((id.to_string(), String::new())),
                    (None, false) => None,
                }
            })
            .collect();
        let live = describe_each(candidates, 4, |(id, alias)| async move { self.describe(&env.env, &id, alias).await }).await?;
        Ok(live.into_iter().filter(|l| l.is_named_or_owned(&env.env, desired)).collect())
    }

    async fn create(&self, desired: &Desired, _token: &str, _reads: &ReadCache) -> Result<String, AwsError> {
        let request = self.client.create_key().description(desired.field(DESCRIPTION)).set_tags(Some(tag_list(&desired.tags)?));
        let out = request.send().await.aws("KMS.CreateKey")?;
        let meta = out.key_metadata();
        let id = required("KMS.CreateKey", "key id", meta.map(|m| m.key_id()))?;
        let arn = required("KMS.CreateKey", "key ARN", meta.and_then(|m| m.arn()))?;
        if desired.field(ROTATION) == "true" {
            self.client.enable_key_rotation().key_id(&id).send().await.aws("KMS.EnableKeyRotation")?;
        }
        self.client.create_alias().alias_name(&desired.name).target_key_id(&id).send().await.aws("KMS.CreateAlias")?;
        Ok(arn)
    }

    async fn update(&self, desired: &Desired, live: &Live, delta: &Delta) -> Result<(), AwsError> {
        let key = live.meta(KEY_ID, "KMS.UpdateKey")?;
        // The state first: a key pending deletion or disabled takes no other change.
        if delta.fields.iter().any(|c| c.field == STATE) {
            if live.field(STATE) == KeyState::PendingDeletion.as_str() {
                self.client.cancel_key_deletion().key_id(key).send().await.aws("KMS.CancelKeyDeletion")?;
            }
            self.client.enable_key().key_id(key).send().await.aws("KMS.EnableKey")?;
        }
        for change in &delta.fields {
            match change.field.as_str() {
                DESCRIPTION => {
                    self.client.update_key_description().key_id(key).description(desired.field(DESCRIPTION)).send().await.aws("KMS.UpdateKeyDescription")?;
                }
                ROTATION if desired.field(ROTATION) == "true" => {
                    self.client.enable_key_rotation().key_id(key).send().await.aws("KMS.EnableKeyRotation")?;
                }
                ROTATION => {
                    self.client.disable_key_rotation().key_id(key).send().await.aws("KMS.DisableKeyRotation")?;
                }
                ALIAS => {
                    self.client.create_alias().alias_name(&desired.name).target_key_id(key).send().await.aws("KMS.CreateAlias")?;
                    if !live.name.is_empty() {
                        self.client.delete_alias().alias_name(&live.name).send().await.aws("KMS.DeleteAlias")?;
                    }
                }
                _ => {}
            }
        }
        if !delta.tags.is_empty() {
            self.client.tag_resource().key_id(key).set_tags(Some(tag_list(&delta.tags)?)).send().await.aws("KMS.TagResource")?;
        }
        Ok(())
    }

    /// Schedules the deletion, 30 days out (the key can be restored until
    /// then); the alias stays, so a key put back in the spec is found and restored.
    async fn delete(&self, live: &Live, _reads: &ReadCache) -> Result<(), AwsError> {
        if live.field(STATE) == KeyState::PendingDeletion.as_str() {
            return Ok(());
        }
        let request = self.client.schedule_key_deletion().key_id(live.meta(KEY_ID, "KMS.ScheduleKeyDeletion")?).pending_window_in_days(DELETION_WINDOW_DAYS);
        request.send().await.aws("KMS.ScheduleKeyDeletion")?;
        Ok(())
    }
}

impl Keys {
    /// The live form of key `id` (named by `alias`, empty for none), or
    /// `None` for a key AWS manages, and for a key without an alias that
    /// environment `env` does not own (its tags are read first: a key whose
    /// policy lets this account read nothing is someone else's).
    async fn describe(&self, env: &str, id: &str, alias: String) -> Result<Option<Live>, AwsError> {
        let tags = match self.client.list_resource_tags().key_id(id).send().await.aws("KMS.ListResourceTags") {
            Err(e) if e.class == ErrorClass::Denied && alias.is_empty() => return Ok(None),
            read => read?,
        };
        let tags: crate::spec::model::Tags = tags.tags().iter().map(|t| (t.tag_key().to_string(), t.tag_value().to_string())).collect();
        let unnamed = Live { tags: tags.clone(), ..Live::default() };
        if alias.is_empty() && !unnamed.is_owned_by(env) {
            return Ok(None);
        }
        let out = self.client.describe_key().key_id(id).send().await.aws("KMS.DescribeKey")?;
        let Some(meta) = out.key_metadata() else {
            return Err(AwsError::unexpected("KMS.DescribeKey", format!("key {id} was described without its metadata")));
        };
        if meta.key_manager() != Some(&KeyManagerType::Customer) {
            return Ok(None);
        }
        let arn = required("KMS.DescribeKey", "key ARN", meta.arn())?;
        let Some(state) = meta.key_state() else { return Err(AwsError::unexpected("KMS.DescribeKey", format!("key {id} was described without its state"))) };
        // The rotation status of a key pending deletion cannot be read: it is repaired once the key is back.
        let rotation = match state {
            KeyState::Enabled | KeyState::Disabled => {
                let status = self.client.get_key_rotation_status().key_id(id).send().await.aws("KMS.GetKeyRotationStatus")?;
                status.key_rotation_enabled().to_string()
            }
            _ => String::new(),
        };
        let mut live = Live { name: alias.clone(), handle: arn, tags, ..Live::default() };
        live.meta.insert(KEY_ID.into(), id.to_string());
        let live = live.with(DESCRIPTION, meta.description().unwrap_or_default()).with(ROTATION, rotation).with(STATE, state.as_str()).with(ALIAS, alias);
        Ok(Some(live))
    }
}

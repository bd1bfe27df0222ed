//! IAM: the estate's roles and the container instances' instance profile.
//! IAM is global and security-sensitive: names are unique in the account,
//! policies are generated from the spec, and both kinds are retained when
//! removed from the spec unless it opted in to their deletion.

pub mod instance_profile;
pub mod role;

use std::sync::Arc;

use aws_sdk_iam::types::{EntityType, RoleDetail, Tag};
use aws_sdk_iam::Client;

use crate::aws::{AwsError, AwsResult};
use crate::engine::{ownership_tags, Desired, ReadCache};
use crate::spec::model::{Role, Tags};
use crate::spec::{physical_name, EnvSpec};

/// Every role of the account with its policies, tags and instance profiles:
/// one paginated GetAccountAuthorizationDetails a pass, shared by both kinds
/// (instead of four reads per role).
pub async fn roles(client: &Client, reads: &ReadCache) -> Result<Arc<Vec<RoleDetail>>, AwsError> {
    reads
        .get("IAM.GetAccountAuthorizationDetails(Role)", || async {
            let mut roles = Vec::new();
            let mut pages = client.get_account_authorization_details().filter(EntityType::Role).into_paginator().send();
            while let Some(page) = pages.next().await {
                roles.extend(page.aws("IAM.GetAccountAuthorizationDetails")?.role_detail_list.unwrap_or_default());
            }
            Ok(roles)
        })
        .await
}

/// A desired resource of `kind` for role `id` (a role, or its instance
/// profile): named like the role, with the role's deletion policy.
pub fn named(env: &EnvSpec, kind: &'static str, id: &str, role: &Role) -> Desired {
    Desired::new(kind, id, physical_name(role.name.as_deref(), id, &env.env), ownership_tags(env, id, role.deletion_policy, &Tags::new()))
}

/// IAM tags as a map.
pub fn tag_map(tags: &[Tag]) -> Tags {
    tags.iter().map(|t| (t.key().to_string(), t.value().to_string())).collect()
}

/// A map as IAM tags.
pub fn tag_list(tags: &Tags) -> Result<Vec<Tag>, AwsError> {
    tags.iter().map(|(k, v)| Tag::builder().key(k).value(v).build().map_err(|e| AwsError::unexpected("IAM.Tag", e.to_string()))).collect()
}

/// A policy document as IAM returns it (URL-encoded) or as written (JSON), decoded.
pub fn decode_document(text: &str) -> String {
    if !text.starts_with('%') {
        return text.to_string();
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = (bytes[i] == b'%').then(|| text.get(i + 1..i + 3)).flatten().and_then(|h| u8::from_str_radix(h, 16).ok());
        match hex {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::decode_document;

    #[test]
    fn documents_are_url_decoded_when_encoded() {
        assert_eq!(decode_document("%7B%22Version%22%3A%222012-10-17%22%7D"), r#"{"Version":"2012-10-17"}"#);
        assert_eq!(decode_document(r#"{"a":"%41"}"#), r#"{"a":"%41"}"#, "plain JSON is left alone");
        assert_eq!(decode_document("%7B%zz"), "{%zz", "a broken escape is kept");
    }
}

//! The `images` section: the ECR repositories the services' images live in;
//! their types and their checks.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::model::{DeletionPolicy, Tags};
use super::validate::Checker;

/// Container images.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct Images {
    /// ECR repositories by logical id.
    pub repositories: BTreeMap<String, Repository>,
}

/// An ECR repository. Images are state: removed from the spec, a repository
/// is retained unless `deletionPolicy: delete` was applied first, and even
/// then it is deleted only once empty.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Repository {
    /// Physical name; default `sentry/<id>-<env>` (the seeds' `sentry/oms-dev`).
    pub name: Option<String>,
    /// Scan every image on push.
    #[serde(default = "yes")]
    pub scan_on_push: bool,
    /// Tags cannot be overwritten once pushed.
    #[serde(default)]
    pub immutable_tags: bool,
    /// The lifecycle policy keeps this many images (the newest) and expires the rest.
    pub keep_last_images: u32,
    /// `AES256` (S3-managed keys) or `KMS`; fixed at creation.
    #[serde(default = "aes256")]
    pub encryption: String,
    /// Extra tags.
    #[serde(default)]
    pub tags: Tags,
    /// What happens once removed from the spec.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

fn yes() -> bool {
    true
}

fn aes256() -> String {
    "AES256".into()
}

impl Repository {
    /// The repository's name for logical id `id` in environment `env`.
    pub fn physical_name(&self, id: &str, env: &str) -> String {
        self.name.as_deref().map_or_else(|| Repository::default_name(id, env), |n| n.replace("${env}", env))
    }

    /// The name of repository `id` in environment `env` when it gives none.
    pub fn default_name(id: &str, env: &str) -> String {
        format!("sentry/{id}-{env}")
    }
}

impl Checker {
    pub(super) fn images(&mut self, env: &str, images: &Images) {
        for (id, r) in &images.repositories {
            let at = |field: &'static str| ["images", "repositories", id.as_str(), field];
            self.tags(&["images", "repositories", id], &r.tags);
            self.range(&at("keepLastImages"), Some(r.keep_last_images), 1, 10_000);
            self.one_of(&at("encryption"), &r.encryption, &["AES256", "KMS"]);
            let name = r.physical_name(id, env);
            let valid = (2..=256).contains(&name.len())
                && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/".contains(c));
            if !valid {
                self.err(&at("name"), format!("{name:?} is not an ECR repository name (2-256 lower-case letters, digits and ._-/)"));
            }
        }
        self.unique_names(&["images", "repositories"], images.repositories.iter().map(|(id, r)| (id.as_str(), r.physical_name(id, env))));
    }
}

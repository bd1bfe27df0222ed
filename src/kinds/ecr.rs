//! ECR repositories of the services' images: scan on push, tag immutability,
//! a lifecycle policy keeping the newest N images, encryption (fixed at
//! creation: a change is BLOCKED). Images are state: a repository removed
//! from the spec is retained unless opted in, and an opted-in delete refuses
//! a repository that still holds images.

use crate::engine::focus::EventMatch;
use crate::engine::permissions::{Grant, Permissions};
use crate::kinds::each;
use async_trait::async_trait;
use aws_sdk_ecr::types::{EncryptionConfiguration, EncryptionType, ImageScanningConfiguration, ImageTagMutability, Repository, Tag};
use aws_sdk_ecr::Client;
use serde_json::{json, Value};

use crate::aws::{found, gone_is_ok, required, AwsError, AwsResult, Built};
use crate::engine::{ownership_tags, user_tags, Delta, Desired, FieldReader, Importing, Kind, Layer, Live, ReadCache, Rendering, Rules};
use crate::kinds::read::describe_each;
use crate::spec::model::{self, DeletionPolicy, Spec};
use crate::spec::EnvSpec;

/// Kind name.
pub const KIND: &str = "ecr.repository";

fields! { SCAN = "ScanOnPush", MUTABILITY = "ImageTagMutability", KEEP = "KeepLastImages", ENCRYPTION = "Encryption" }

/// The repository kind.
pub struct Repositories {
    /// The service's client.
    pub client: Client,
}

/// The lifecycle policy that keeps the newest `count` images.
fn lifecycle_policy(count: u64) -> String {
    json!({"rules": [{
        "rulePriority": 1,
        "description": format!("keep the newest {count} images"),
        "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": count},
        "action": {"type": "expire"}
    }]})
    .to_string()
}

/// What a live lifecycle policy keeps: the count when it is the one rule
/// [`lifecycle_policy`] writes, else the policy itself (which then differs
/// from any desired value and is rewritten); empty without a policy.
fn kept_images(policy: Option<&str>) -> String {
    let Some(text) = policy else { return String::new() };
    let Ok(doc) = serde_json::from_str::<Value>(text) else { return text.to_string() };
    let rules = doc["rules"].as_array().cloned().unwrap_or_default();
    match rules.as_slice() {
        [rule] if rule["selection"]["tagStatus"] == "any" && rule["selection"]["countType"] == "imageCountMoreThan" && rule["action"]["type"] == "expire" => {
            rule["selection"]["countNumber"].as_u64().map_or_else(|| doc.to_string(), |n| n.to_string())
        }
        _ => doc.to_string(),
    }
}

fn tag_list(tags: &crate::spec::model::Tags) -> Result<Vec<Tag>, AwsError> {
    tags.iter().map(|(k, v)| Tag::builder().key(k).value(v).build().built("ECR.Tag")).collect()
}

/// The URI of an image repository a task definition names: a repository of
/// the spec (by logical id) in this pass's account and region, or the URI as written.
pub fn repository_uri(env: &EnvSpec, repository: &str) -> String {
    let repo = env.spec.images.as_ref().and_then(|i| i.repositories.get(repository));
    match (repo, &env.aws) {
        (Some(r), Some(aws)) => format!("{}.dkr.ecr.{}.amazonaws.com/{}", aws.account, aws.region, r.physical_name(repository, &env.env)),
        (Some(r), None) => format!("${{account}}.dkr.ecr.${{region}}.amazonaws.com/{}", r.physical_name(repository, &env.env)),
        (None, _) => env.substitute(repository),
    }
}

/// What the kind's calls need of IAM.
#[rustfmt::skip]
const PERMISSIONS: Permissions = Permissions {
    reads: &["ecr:DescribeRepositories"],
    grants: &[Grant::allow("ImageRepositoryWrites", &["ecr:ListTagsForResource", "ecr:GetLifecyclePolicy", "ecr:CreateRepository", "ecr:PutLifecyclePolicy", "ecr:PutImageScanningConfiguration", "ecr:PutImageTagMutability", "ecr:TagResource", "ecr:DeleteRepository"], &["arn:aws:ecr:*:*:repository/sentry*"])],
};

#[async_trait]
impl Kind for Repositories {
    fn rules(&self) -> Rules {
        Rules {
            immutable: &[ENCRYPTION],
            events: EventMatch::of(
                "ecr.amazonaws.com",
                &["Repository", "Lifecycle", "ImageScanning", "ImageTagMutability"],
                &["repositoryName", "RepositoryName", "resourceArn"],
            ),
            ..Rules::new(KIND, Layer::Compute).stands_for(&["AWS::ECR::Repository", "aws_ecr_repository"]).needs(PERMISSIONS).imported()
        }
    }

    fn desired(&self, env: &EnvSpec) -> Vec<Desired> {
        each(env.spec.images.as_ref().map(|images| &images.repositories), |(id, r)| {
            Desired::new(KIND, id, r.physical_name(id, &env.env), ownership_tags(env, id, r.deletion_policy, &r.tags))
                .with(SCAN, r.scan_on_push.to_string())
                .with(MUTABILITY, if r.immutable_tags { "IMMUTABLE" } else { "MUTABLE" })
                .with(KEEP, r.keep_last_images.to_string())
                .with(ENCRYPTION, &r.encryption)
        })
    }

    /// Its entry in `images.repositories`, as it is (retained when removed
    /// from the spec); one whose lifecycle policy is not "keep the last N
    /// images", the only one the spec writes, is refused.
    fn to_spec(&self, id: &str, live: &Live, spec: &mut Spec, importing: &Importing) -> Result<Rendering, String> {
        let keep = live.field(KEEP);
        let keep_last_images = keep.parse().map_err(|_| match keep {
            "" => "it has no lifecycle policy; the spec's keeps the last N images".to_string(),
            other => format!("its lifecycle policy {other} is not the spec's (keep the last N images)"),
        })?;
        let default_name = model::Repository::default_name(id, importing.env);
        let repository = model::Repository {
            name: (live.name != default_name).then(|| live.name.clone()),
            scan_on_push: live.field(SCAN) == "true",
            immutable_tags: live.field(MUTABILITY) == "IMMUTABLE",
            keep_last_images,
            encryption: live.field(ENCRYPTION).to_string(),
            tags: user_tags(live.tags.clone()),
            deletion_policy: DeletionPolicy::Retain,
        };
        spec.images.get_or_insert_with(Default::default).repositories.insert(id.to_string(), repository);
        Ok(Rendering::whole())
    }

    async fn observe(&self, env: &EnvSpec, desired: &[Desired], _reads: &ReadCache) -> Result<Vec<Live>, AwsError> {
        // Every repository of the account in one paginated read (naming a
        // missing one fails the whole call); then tags and policy per candidate.
        let all = self.client.describe_repositories().into_paginator().items().send().try_collect().await.aws("ECR.DescribeRepositories")?;
        let ours = |n: &str| n.starts_with("sentry") || desired.iter().any(|d| d.name == n);
        let candidates: Vec<Repository> = all.into_iter().filter(|r| r.repository_name().is_some_and(ours)).collect();
        let live = describe_each(candidates, 4, |r| async move { self.describe(r).await }).await?;
        Ok(live.into_iter().filter(|l| l.is_named_or_owned(&env.env, desired)).collect())
    }

    async fn create(&self, desired: &Desired, _token: &str, _reads: &ReadCache) -> Result<String, AwsError> {
        let encryption =
            EncryptionConfiguration::builder().encryption_type(EncryptionType::from(desired.field(ENCRYPTION))).build().built("ECR.CreateRepository")?;
        let request = self
            .client
            .create_repository()
            .repository_name(&desired.name)
            .image_tag_mutability(ImageTagMutability::from(desired.field(MUTABILITY)))
            .image_scanning_configuration(ImageScanningConfiguration::builder().scan_on_push(desired.field(SCAN) == "true").build())
            .encryption_configuration(encryption)
            .set_tags(Some(tag_list(&desired.tags)?));
        let out = request.send().await.aws("ECR.CreateRepository")?;
        let arn = required("ECR.CreateRepository", "repository ARN", out.repository().and_then(|r| r.repository_arn()))?;
        self.put_lifecycle(&desired.name, desired.number(KEEP, "ECR.PutLifecyclePolicy")?).await?;
        Ok(arn)
    }

    async fn update(&self, desired: &Desired, live: &Live, delta: &Delta) -> Result<(), AwsError> {
        for change in &delta.fields {
            match change.field.as_str() {
                SCAN => {
                    let scanning = ImageScanningConfiguration::builder().scan_on_push(desired.field(SCAN) == "true").build();
                    let request = self.client.put_image_scanning_configuration().repository_name(&live.name).image_scanning_configuration(scanning);
                    request.send().await.aws("ECR.PutImageScanningConfiguration")?;
                }
                MUTABILITY => {
                    let mutability = ImageTagMutability::from(desired.field(MUTABILITY));
                    self.client
                        .put_image_tag_mutability()
                        .repository_name(&live.name)
                        .image_tag_mutability(mutability)
                        .send()
                        .await
                        .aws("ECR.PutImageTagMutability")?;
                }
                KEEP => self.put_lifecycle(&live.name, desired.number(KEEP, "ECR.PutLifecyclePolicy")?).await?,
                _ => {}
            }
        }
        if !delta.tags.is_empty() {
            self.client.tag_resource().resource_arn(&live.handle).set_tags(Some(tag_list(&delta.tags)?)).send().await.aws("ECR.TagResource")?;
        }
        Ok(())
    }

    async fn delete(&self, live: &Live, _reads: &ReadCache) -> Result<(), AwsError> {
        // Never forced: a repository that still holds images is refused by ECR.
        gone_is_ok(self.client.delete_repository().repository_name(&live.name).send().await.map(|_| ()).aws("ECR.DeleteRepository"))
    }
}

impl Repositories {
    /// The live form of repository `r`: its tags and lifecycle policy read too.
    async fn describe(&self, r: Repository) -> Result<Option<Live>, AwsError> {
        let name = required("ECR.DescribeRepositories", "repository name", r.repository_name())?;
        let arn = required("ECR.DescribeRepositories", "repository ARN", r.repository_arn())?;
        let tags = self.client.list_tags_for_resource().resource_arn(&arn).send().await.aws("ECR.ListTagsForResource")?;
        let tags = tags.tags().iter().map(|t| (t.key().to_string(), t.value().to_string())).collect();
        let policy = found(self.client.get_lifecycle_policy().repository_name(&name).send().await.aws("ECR.GetLifecyclePolicy"))?;
        let policy = policy.and_then(|p| p.lifecycle_policy_text().map(str::to_string));
        let encryption = r.encryption_configuration().map_or("AES256", |e| e.encryption_type().as_str());
        let live = Live { name, handle: arn, tags, ..Live::default() }
            .with(SCAN, r.image_scanning_configuration().is_some_and(|s| s.scan_on_push()).to_string())
            .with(MUTABILITY, r.image_tag_mutability().map_or("MUTABLE", |m| m.as_str()))
            .with(KEEP, kept_images(policy.as_deref()))
            .with(ENCRYPTION, encryption);
        Ok(Some(live))
    }

    async fn put_lifecycle(&self, repository: &str, count: u64) -> Result<(), AwsError> {
        let request = self.client.put_lifecycle_policy().repository_name(repository).lifecycle_policy_text(lifecycle_policy(count));
        request.send().await.aws("ECR.PutLifecyclePolicy")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lifecycle_policy_reads_as_the_count_it_keeps_and_anything_else_as_itself() {
        assert_eq!(kept_images(Some(&lifecycle_policy(30))), "30");
        assert_eq!(kept_images(None), "");
        let tagged_only = r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"tagged","tagPrefixList":["v"],"countType":"imageCountMoreThan","countNumber":5},"action":{"type":"expire"}}]}"#;
        assert!(kept_images(Some(tagged_only)).starts_with('{'), "another policy is drift");
    }
}

//! IAM instance profiles: the container instances carry their role through
//! one, named like the role (`instanceProfile: true` on a role of the spec).

use crate::engine::focus::EventMatch;
use crate::engine::permissions::{Grant, Permissions};
use async_trait::async_trait;
use aws_sdk_iam::Client;

use super::{named, role, roles, tag_list, tag_map};
use crate::aws::{gone_is_ok, required, AwsError, AwsResult};
use crate::engine::{Delta, Desired, FieldReader, Kind, Layer, Live, ReadCache, Rules};
use crate::kinds::read::describe_each;
use crate::spec::EnvSpec;

/// Kind name.
pub const KIND: &str = "iam.instance-profile";

const ROLE: &str = "Role";

/// The instance-profile kind.
pub struct InstanceProfiles {
    /// The service's client, shared by the kinds of the service.
    pub client: Client,
}

/// The name of a role from its ARN (`arn:aws:iam::1:role/path/name`).
fn role_name(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

/// What the kind's calls need of IAM.
#[rustfmt::skip]
const PERMISSIONS: Permissions = Permissions {
    reads: &["iam:GetAccountAuthorizationDetails"],
    grants: &[Grant::allow("InstanceProfileWrites", &["iam:GetInstanceProfile", "iam:CreateInstanceProfile", "iam:DeleteInstanceProfile", "iam:AddRoleToInstanceProfile", "iam:RemoveRoleFromInstanceProfile", "iam:TagInstanceProfile"], &["arn:aws:iam::*:instance-profile/sentry-*"])],
};

#[async_trait]
impl Kind for InstanceProfiles {
    fn rules(&self) -> Rules {
        Rules {
            events: EventMatch::of("iam.amazonaws.com", &["InstanceProfile"], &["instanceProfileName", "InstanceProfileName"]).marked("instance-profile/"),
            ..Rules::new(KIND, Layer::SecurityMonitoring).stands_for(&["AWS::IAM::InstanceProfile", "aws_iam_instance_profile"]).needs(PERMISSIONS)
        }
    }

    fn desired(&self, env: &EnvSpec) -> Vec<Desired> {
        let Some(iam) = &env.spec.iam else { return Vec::new() };
        iam.roles.iter().filter(|(_, r)| r.instance_profile).map(|(id, r)| named(env, KIND, id, r).with_reference(ROLE, role::KIND, id)).collect()
    }

    async fn observe(&self, env: &EnvSpec, desired: &[Desired], reads: &ReadCache) -> Result<Vec<Live>, AwsError> {
        // The profiles of the spec, and those holding a role of this
        // environment (so that one removed from the spec is still seen).
        let owned_roles = roles(&self.client, reads).await?;
        let mut names: Vec<String> = desired.iter().map(|d| d.name.clone()).collect();
        for r in owned_roles.iter().filter(|r| Live { tags: tag_map(r.tags()), ..Live::default() }.is_owned_by(&env.env)) {
            names.extend(r.instance_profile_list().iter().map(|p| p.instance_profile_name().to_string()));
        }
        names.sort();
        names.dedup();
        describe_each(names, 4, |name| async move {
            let got = self.client.get_instance_profile().instance_profile_name(&name).send().await.aws("IAM.GetInstanceProfile");
            let Some(out) = crate::aws::found(got)? else { return Ok(None) };
            let Some(p) = out.instance_profile() else { return Ok(None) };
            let role = p.roles().first().map(|r| r.arn().to_string()).unwrap_or_default();
            let live = Live { name: p.instance_profile_name().into(), handle: p.arn().into(), tags: tag_map(p.tags()), ..Live::default() };
            Ok(Some(live.with_handle(ROLE, role)))
        })
        .await
    }

    async fn create(&self, desired: &Desired, _token: &str, _reads: &ReadCache) -> Result<String, AwsError> {
        let request = self.client.create_instance_profile().instance_profile_name(&desired.name).set_tags(Some(tag_list(&desired.tags)?));
        let out = request.send().await.aws("IAM.CreateInstanceProfile")?;
        let arn = required("IAM.CreateInstanceProfile", "instance profile ARN", out.instance_profile().map(|p| p.arn()))?;
        self.add_role(&desired.name, desired.field(ROLE)).await?;
        Ok(arn)
    }

    async fn update(&self, desired: &Desired, live: &Live, delta: &Delta) -> Result<(), AwsError> {
        if delta.fields.iter().any(|c| c.field == ROLE) {
            if !live.field(ROLE).is_empty() {
                let removed =
                    self.client.remove_role_from_instance_profile().instance_profile_name(&live.name).role_name(role_name(live.field(ROLE))).send().await;
                gone_is_ok(removed.map(|_| ()).aws("IAM.RemoveRoleFromInstanceProfile"))?;
            }
            self.add_role(&live.name, desired.field(ROLE)).await?;
        }
        if !delta.tags.is_empty() {
            let request = self.client.tag_instance_profile().instance_profile_name(&live.name).set_tags(Some(tag_list(&delta.tags)?));
            request.send().await.aws("IAM.TagInstanceProfile")?;
        }
        Ok(())
    }

    async fn delete(&self, live: &Live, _reads: &ReadCache) -> Result<(), AwsError> {
        if !live.field(ROLE).is_empty() {
            let removed = self.client.remove_role_from_instance_profile().instance_profile_name(&live.name).role_name(role_name(live.field(ROLE))).send().await;
            gone_is_ok(removed.map(|_| ()).aws("IAM.RemoveRoleFromInstanceProfile"))?;
        }
        gone_is_ok(self.client.delete_instance_profile().instance_profile_name(&live.name).send().await.map(|_| ()).aws("IAM.DeleteInstanceProfile"))
    }
}

impl InstanceProfiles {
    async fn add_role(&self, profile: &str, role_arn: &str) -> Result<(), AwsError> {
        let request = self.client.add_role_to_instance_profile().instance_profile_name(profile).role_name(role_name(role_arn));
        request.send().await.aws("IAM.AddRoleToInstanceProfile")?;
        Ok(())
    }
}

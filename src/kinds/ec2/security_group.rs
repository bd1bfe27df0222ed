//! Security groups themselves (name, description, VPC). Their rules are the
//! separate kind [`super::security_group_rules`], so that groups referring
//! to each other can all exist before any rule names a peer.

use crate::engine::focus::EventMatch;
use crate::engine::permissions::{Grant, Permissions};
use crate::kinds::each;
use async_trait::async_trait;
use aws_sdk_ec2::types::{ResourceType, SecurityGroup};
use aws_sdk_ec2::Client;

use super::{desired, gone_is_ok, live, network, put_tags, rules, tag_map, tag_spec, vpc};
use crate::aws::{required, AwsError, AwsResult};
use crate::engine::{Delta, Desired, FieldReader, Importing, Kind, Live, ReadCache, Rendering, Rules};
use crate::spec::model::{self, DeletionPolicy, Spec};
use crate::spec::{physical_name, EnvSpec};

/// Kind name.
pub const KIND: &str = "ec2.security-group";

fields! { VPC = "VpcId", DESCRIPTION = "Description" }

/// The security-group kind.
pub struct SecurityGroups {
    /// The service's client, shared by the kinds of the service.
    pub client: Client,
}

/// A live group: its VPC and description, named by its group name.
fn group_live(g: &SecurityGroup) -> Option<Live> {
    let l = live(g.group_id()?, tag_map(g.tags())).with_handle(VPC, g.vpc_id().unwrap_or_default()).with(DESCRIPTION, g.description().unwrap_or_default());
    Some(Live { name: g.group_name().unwrap_or_default().into(), ..l })
}

/// What the kind's calls need of IAM.
#[rustfmt::skip]
const PERMISSIONS: Permissions = Permissions {
    reads: &["ec2:DescribeVpcs", "ec2:DescribeNatGateways", "ec2:DescribeSecurityGroups"],
    grants: &[Grant::allow("NetworkWrites", &["ec2:CreateSecurityGroup", "ec2:DeleteSecurityGroup", "ec2:CreateTags"], &["*"])],
};

#[async_trait]
impl Kind for SecurityGroups {
    fn rules(&self) -> Rules {
        Rules {
            immutable: &[VPC, DESCRIPTION],
            events: EventMatch::of("ec2.amazonaws.com", &["SecurityGroup"], &["groupId", "GroupId"]).marked("sg-"),
            ..rules(KIND).stands_for(&["AWS::EC2::SecurityGroup", "aws_security_group"]).needs(PERMISSIONS).imported()
        }
    }

    fn desired(&self, env: &EnvSpec) -> Vec<Desired> {
        each(network(env).map(|n| &n.security_groups), |(id, sg)| {
            desired(env, KIND, id, physical_name(sg.name.as_deref(), id, &env.env), DeletionPolicy::Delete)
                .with_reference(VPC, vpc::KIND, vpc::ID)
                .with(DESCRIPTION, &sg.description)
        })
    }

    /// The group without its rules, which its rules' kind adds.
    fn to_spec(&self, id: &str, live: &Live, spec: &mut Spec, importing: &Importing) -> Result<Rendering, String> {
        let n = super::imported_network(spec, live, Some(VPC))?;
        let group = model::SecurityGroup {
            name: importing.explicit_name(id, &live.name),
            description: live.field(DESCRIPTION).to_string(),
            ingress: Vec::new(),
            egress: None,
        };
        n.security_groups.insert(id.to_string(), group);
        Ok(Rendering::whole())
    }

    async fn observe(&self, env: &EnvSpec, desired: &[Desired], reads: &ReadCache) -> Result<Vec<Live>, AwsError> {
        let groups = super::owned_security_groups(&self.client, &env.env, reads).await?;
        let adopted = super::adopted_security_groups(&self.client, desired, &groups).await?;
        Ok(groups.security_groups().iter().chain(&adopted).filter_map(group_live).collect())
    }

    async fn create(&self, desired: &Desired, _token: &str, _reads: &ReadCache) -> Result<String, AwsError> {
        let request = self.client.create_security_group().group_name(&desired.name).description(desired.field(DESCRIPTION)).vpc_id(desired.field(VPC));
        let out = request.tag_specifications(tag_spec(ResourceType::SecurityGroup, &desired.tags)).send().await.aws("EC2.CreateSecurityGroup")?;
        required("EC2.CreateSecurityGroup", "group id", out.group_id())
    }

    async fn update(&self, _desired: &Desired, live: &Live, delta: &Delta) -> Result<(), AwsError> {
        put_tags(&self.client, &live.handle, &delta.tags).await
    }

    async fn delete(&self, live: &Live, _reads: &ReadCache) -> Result<(), AwsError> {
        let result = self.client.delete_security_group().group_id(&live.handle).send().await;
        gone_is_ok(result.map(|_| ()).aws("EC2.DeleteSecurityGroup"))
    }
}

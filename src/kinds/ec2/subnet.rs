//! Subnets: one public and one private per availability zone.

use crate::engine::focus::EventMatch;
use crate::engine::permissions::{Grant, Permissions};
use crate::kinds::each;
use async_trait::async_trait;
use aws_sdk_ec2::types::{ResourceType, Subnet};
use aws_sdk_ec2::Client;

use super::{desired, explicit_name, gone_is_ok, imported_network, network, observed, put_tags, rules, tag_spec, vpc};
use crate::aws::{required, AwsError, AwsResult};
use crate::engine::{Delta, Desired, FieldReader, Importing, Kind, Live, ReadCache, Rendering, Rules};
use crate::spec::model::DeletionPolicy;
use crate::spec::model::{self, Spec, Tier};
use crate::spec::physical_name;
use crate::spec::EnvSpec;

/// Kind name.
pub const KIND: &str = "ec2.subnet";

fields! { VPC = "VpcId", CIDR = "CidrBlock", AZ = "AvailabilityZone" }

/// The subnet kind.
pub struct Subnets {
    /// The service's client, shared by the kinds of the service.
    pub client: Client,
}

/// What the kind's calls need of IAM.
#[rustfmt::skip]
const PERMISSIONS: Permissions = Permissions {
    reads: &["ec2:DescribeVpcs", "ec2:DescribeSubnets", "ec2:DescribeNatGateways", "ec2:DescribeSecurityGroups"],
    grants: &[Grant::allow("NetworkWrites", &["ec2:CreateSubnet", "ec2:DeleteSubnet", "ec2:CreateTags"], &["*"])],
};

#[async_trait]
impl Kind for Subnets {
    fn rules(&self) -> Rules {
        Rules {
            immutable: &[VPC, CIDR, AZ],
            events: EventMatch::of("ec2.amazonaws.com", &["Subnet"], &["subnetId", "SubnetId"]).marked("subnet-"),
            ..rules(KIND).stands_for(&["AWS::EC2::Subnet", "aws_subnet"]).needs(PERMISSIONS).imported()
        }
    }

    fn desired(&self, env: &EnvSpec) -> Vec<Desired> {
        each(network(env).map(|n| &n.subnets), |(id, s)| {
            desired(env, KIND, id, physical_name(s.name.as_deref(), id, &env.env), DeletionPolicy::Delete)
                .with_reference(VPC, vpc::KIND, vpc::ID)
                .with(CIDR, &s.cidr)
                .with(AZ, &s.az)
        })
    }

    /// Its tier from its words (`public` in its id or name), until its route
    /// table or a NAT gateway in it says better.
    fn to_spec(&self, id: &str, live: &Live, spec: &mut Spec, importing: &Importing) -> Result<Rendering, String> {
        let n = imported_network(spec, live, Some(VPC))?;
        let tier = if format!("{id} {}", live.name).to_ascii_lowercase().contains("public") { Tier::Public } else { Tier::Private };
        let az = live.field(AZ).to_string();
        if !n.availability_zones.contains(&az) {
            n.availability_zones.push(az.clone());
            n.availability_zones.sort();
        }
        n.subnets.insert(
            id.to_string(),
            model::Subnet { name: explicit_name(live, &physical_name(None, id, importing.env)), tier, az, cidr: live.field(CIDR).to_string() },
        );
        Ok(Rendering::whole())
    }

    async fn observe(&self, env: &EnvSpec, desired: &[Desired], _reads: &ReadCache) -> Result<Vec<Live>, AwsError> {
        observed(&self.client, &env.env, desired, |s: &Subnet, l| {
            Some(
                l.with_handle(VPC, s.vpc_id().unwrap_or_default())
                    .with(CIDR, s.cidr_block().unwrap_or_default())
                    .with(AZ, s.availability_zone().unwrap_or_default()),
            )
        })
        .await
    }

    async fn create(&self, desired: &Desired, _token: &str, _reads: &ReadCache) -> Result<String, AwsError> {
        let request = self.client.create_subnet().vpc_id(desired.field(VPC)).cidr_block(desired.field(CIDR)).availability_zone(desired.field(AZ));
        let out = request.tag_specifications(tag_spec(ResourceType::Subnet, &desired.tags)).send().await.aws("EC2.CreateSubnet")?;
        required("EC2.CreateSubnet", "subnet id", out.subnet().and_then(|s| s.subnet_id()))
    }

    async fn update(&self, _desired: &Desired, live: &Live, delta: &Delta) -> Result<(), AwsError> {
        put_tags(&self.client, &live.handle, &delta.tags).await
    }

    async fn delete(&self, live: &Live, _reads: &ReadCache) -> Result<(), AwsError> {
        gone_is_ok(self.client.delete_subnet().subnet_id(&live.handle).send().await.map(|_| ()).aws("EC2.DeleteSubnet"))
    }
}

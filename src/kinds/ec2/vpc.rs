//! The VPC: CIDR block, DNS support and DNS hostnames. Its tags also carry
//! the whitelist ledger, which [`super::elastic_ip`] writes (tags are
//! additive, so this kind leaves them alone).

use crate::engine::focus::EventMatch;
use crate::engine::permissions::{Grant, Permissions};
use async_trait::async_trait;
use aws_sdk_ec2::types::{AttributeBooleanValue, ResourceType, VpcAttributeName};
use aws_sdk_ec2::Client;

use super::{adopted, desired, explicit_name, gone_is_ok, live, network, put_tags, rules, tag_map, tag_spec};
use crate::aws::{required, AwsError, AwsResult};
use crate::engine::{Delta, Desired, FieldReader, Importing, Kind, Live, ReadCache, Rendering, Rules, Value};
use crate::spec::model::DeletionPolicy;
use crate::spec::model::{FlowLogs, Network, Spec, Vpc, Whitelist};
use crate::spec::{physical_name, EnvSpec};

/// Kind name.
pub const KIND: &str = "ec2.vpc";
/// The logical id of the one VPC of an environment.
pub const ID: &str = "vpc";

fields! { CIDR = "CidrBlock", DNS_SUPPORT = "EnableDnsSupport", DNS_HOSTNAMES = "EnableDnsHostnames" }

/// The VPC kind.
pub struct Vpcs {
    /// The service's client, shared by the kinds of the service.
    pub client: Client,
}

impl Vpcs {
    async fn attribute(&self, vpc: &str, attribute: VpcAttributeName) -> Result<bool, AwsError> {
        let out = self.client.describe_vpc_attribute().vpc_id(vpc).attribute(attribute.clone()).send().await.aws("EC2.DescribeVpcAttribute")?;
        let value = match attribute {
            VpcAttributeName::EnableDnsSupport => out.enable_dns_support(),
            _ => out.enable_dns_hostnames(),
        };
        Ok(value.and_then(|v| v.value()).unwrap_or(false))
    }

    async fn set_attribute(&self, vpc: &str, field: &str, value: &str) -> Result<(), AwsError> {
        let flag = AttributeBooleanValue::builder().value(value == "true").build();
        let request = self.client.modify_vpc_attribute().vpc_id(vpc);
        let request = if field == DNS_SUPPORT { request.enable_dns_support(flag) } else { request.enable_dns_hostnames(flag) };
        request.send().await.aws("EC2.ModifyVpcAttribute")?;
        Ok(())
    }
}

/// What the kind's calls need of IAM.
#[rustfmt::skip]
const PERMISSIONS: Permissions = Permissions {
    reads: &["ec2:DescribeVpcs", "ec2:DescribeVpcAttribute", "ec2:DescribeNatGateways", "ec2:DescribeSecurityGroups"],
    grants: &[Grant::allow("NetworkWrites", &["ec2:CreateVpc", "ec2:ModifyVpcAttribute", "ec2:DeleteVpc", "ec2:CreateTags"], &["*"])],
};

#[async_trait]
impl Kind for Vpcs {
    fn rules(&self) -> Rules {
        Rules {
            immutable: &[CIDR],
            events: EventMatch::of("ec2.amazonaws.com", &["Vpc"], &["vpcId", "VpcId"]).marked("vpc-"),
            ..rules(KIND).stands_for(&["AWS::EC2::VPC", "aws_vpc"]).needs(PERMISSIONS).imported()
        }
    }

    fn desired(&self, env: &EnvSpec) -> Vec<Desired> {
        let Some(n) = network(env) else { return Vec::new() };
        vec![desired(env, KIND, ID, physical_name(n.vpc.name.as_deref(), ID, &env.env), DeletionPolicy::Retain)
            .with(CIDR, &n.vpc.cidr)
            .with(DNS_SUPPORT, n.vpc.enable_dns_support.to_string())
            .with(DNS_HOSTNAMES, n.vpc.enable_dns_hostnames.to_string())]
    }

    fn import_id(&self, _live: &Live, _proposed: &str, _importing: &Importing) -> String {
        ID.to_string()
    }

    /// Opens the network section, which the other networking kinds fill.
    fn to_spec(&self, id: &str, live: &Live, spec: &mut Spec, importing: &Importing) -> Result<Rendering, String> {
        if id != ID || spec.network.is_some() {
            return Err("a second VPC: an environment has one (narrow --stacks)".into());
        }
        let vpc = Vpc {
            name: explicit_name(live, &physical_name(None, ID, importing.env)),
            cidr: live.field(CIDR).to_string(),
            enable_dns_support: live.field(DNS_SUPPORT) == "true",
            enable_dns_hostnames: live.field(DNS_HOSTNAMES) == "true",
            flow_logs: FlowLogs::default(),
            internet_gateway_name: None,
        };
        let network = Network {
            vpc,
            availability_zones: Vec::new(),
            subnets: Default::default(),
            nat_gateways: Default::default(),
            whitelist: Whitelist { pool: Default::default() },
            security_groups: Default::default(),
            endpoints: Default::default(),
            network_acls: Default::default(),
            // Written even empty: a subnet of an imported estate no table names stays on the main table.
            route_tables: Some(Default::default()),
        };
        spec.network = Some(network);
        Ok(Rendering::whole())
    }

    async fn observe(&self, env: &EnvSpec, desired: &[Desired], reads: &ReadCache) -> Result<Vec<Live>, AwsError> {
        let out = super::owned_vpcs(&self.client, &env.env, reads).await?;
        let known: Vec<&str> = out.vpcs().iter().filter_map(|v| v.vpc_id()).collect();
        let adopted =
            adopted(
                desired,
                &known,
                |id| async move { Ok(self.client.describe_vpcs().vpc_ids(id).send().await.aws("EC2.DescribeVpcs")?.vpcs.unwrap_or_default()) },
            )
            .await?;
        let mut found = Vec::new();
        for vpc in out.vpcs().iter().chain(&adopted) {
            let Some(id) = vpc.vpc_id() else { continue };
            found.push(
                live(id, tag_map(vpc.tags()))
                    .with(CIDR, vpc.cidr_block().unwrap_or_default())
                    .with(DNS_SUPPORT, self.attribute(id, VpcAttributeName::EnableDnsSupport).await?.to_string())
                    .with(DNS_HOSTNAMES, self.attribute(id, VpcAttributeName::EnableDnsHostnames).await?.to_string()),
            );
        }
        Ok(found)
    }

    async fn create(&self, desired: &Desired, _token: &str, _reads: &ReadCache) -> Result<String, AwsError> {
        let request = self.client.create_vpc().cidr_block(desired.field(CIDR));
        let out = request.tag_specifications(tag_spec(ResourceType::Vpc, &desired.tags)).send().await.aws("EC2.CreateVpc")?;
        let id = required("EC2.CreateVpc", "VPC id", out.vpc().and_then(|v| v.vpc_id()))?;
        // Hostnames need DNS support, so support goes first.
        for field in [DNS_SUPPORT, DNS_HOSTNAMES] {
            if let Some(value) = desired.fields.get(field).and_then(Value::as_text) {
                self.set_attribute(&id, field, value).await?;
            }
        }
        Ok(id)
    }

    async fn update(&self, _desired: &Desired, live: &Live, delta: &Delta) -> Result<(), AwsError> {
        for change in &delta.fields {
            if let Some(value) = change.desired_text() {
                self.set_attribute(&live.handle, &change.field, value).await?;
            }
        }
        put_tags(&self.client, &live.handle, &delta.tags).await
    }

    async fn delete(&self, live: &Live, _reads: &ReadCache) -> Result<(), AwsError> {
        let result = self.client.delete_vpc().vpc_id(&live.handle).send().await.map(|_| ()).aws("EC2.DeleteVpc");
        gone_is_ok(result)
    }
}

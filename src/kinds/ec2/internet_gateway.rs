//! The internet gateway and its attachment to the VPC.

use crate::engine::focus::EventMatch;
use crate::engine::permissions::{Grant, Permissions};
use async_trait::async_trait;
use aws_sdk_ec2::types::{InternetGateway, ResourceType};
use aws_sdk_ec2::Client;

use super::{desired, explicit_name, gone_is_ok, imported_network, network, observed, put_tags, rules, tag_spec, vpc};
use crate::aws::{required, AwsError, AwsResult};
use crate::engine::{Delta, Desired, Importing, Kind, Live, ReadCache, Rendering, Rules, Value};
use crate::spec::model::DeletionPolicy;
use crate::spec::model::Spec;
use crate::spec::EnvSpec;

/// Kind name.
pub const KIND: &str = "ec2.internet-gateway";
/// The logical id of the environment's internet gateway.
pub const ID: &str = "igw";

fields! { ATTACHMENT = "Attachment", DETACHED = "none" }

/// The internet-gateway kind.
pub struct InternetGateways {
    /// The service's client, shared by the kinds of the service.
    pub client: Client,
}

impl InternetGateways {
    /// Attaches `igw` to the VPC `attachment` names; nothing when it names
    /// none or a VPC not created yet.
    async fn attach(&self, igw: &str, attachment: Option<&Value>) -> Result<(), AwsError> {
        let Some(vpc) = attachment.filter(|v| !v.is_unresolved()).and_then(Value::as_text).filter(|v| *v != DETACHED) else { return Ok(()) };
        let result = self.client.attach_internet_gateway().internet_gateway_id(igw).vpc_id(vpc).send().await;
        match result.aws("EC2.AttachInternetGateway") {
            // An earlier attempt whose reply was lost may have attached it already.
            Err(e) if e.code.as_deref() == Some("Resource.AlreadyAssociated") && self.attached_to(igw).await?.as_deref() == Some(vpc) => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// The VPC `igw` is attached to, if any.
    async fn attached_to(&self, igw: &str) -> Result<Option<String>, AwsError> {
        let out = self.client.describe_internet_gateways().internet_gateway_ids(igw).send().await.aws("EC2.DescribeInternetGateways")?;
        Ok(out.internet_gateways().first().and_then(attachment).map(str::to_string))
    }
}

/// The VPC `gateway` is attached to, if any.
fn attachment(gateway: &InternetGateway) -> Option<&str> {
    gateway.attachments().iter().find_map(|a| a.vpc_id())
}

/// What the kind's calls need of IAM.
#[rustfmt::skip]
const PERMISSIONS: Permissions = Permissions {
    reads: &["ec2:DescribeVpcs", "ec2:DescribeInternetGateways", "ec2:DescribeNatGateways", "ec2:DescribeSecurityGroups"],
    grants: &[Grant::allow("NetworkWrites", &["ec2:CreateInternetGateway", "ec2:AttachInternetGateway", "ec2:DetachInternetGateway", "ec2:DeleteInternetGateway", "ec2:CreateTags"], &["*"])],
};

#[async_trait]
impl Kind for InternetGateways {
    fn rules(&self) -> Rules {
        Rules {
            events: EventMatch::of("ec2.amazonaws.com", &["InternetGateway"], &["internetGatewayId", "InternetGatewayId"]).marked("igw-"),
            ..rules(KIND)
                .stands_for(&["AWS::EC2::InternetGateway", "aws_internet_gateway"])
                .imported()
                .with_parts(&[
                    ("AWS::EC2::VPCGatewayAttachment", "the internet gateway's attachment"),
                    ("aws_internet_gateway_attachment", "the internet gateway's attachment"),
                ])
                .needs(PERMISSIONS)
        }
    }

    fn desired(&self, env: &EnvSpec) -> Vec<Desired> {
        let Some(n) = network(env) else { return Vec::new() };
        vec![desired(
            env,
            KIND,
            ID,
            n.vpc.internet_gateway_name.as_deref().map_or_else(|| format!("sentry-igw-{}", env.env), |name| name.replace("${env}", &env.env)),
            DeletionPolicy::Delete,
        )
        .with_reference(ATTACHMENT, vpc::KIND, vpc::ID)]
    }

    fn import_id(&self, _live: &Live, _proposed: &str, _importing: &Importing) -> String {
        ID.to_string()
    }

    /// The network section implies it.
    /// Names itself in the VPC's entry (`internetGatewayName`) when its name is not the default.
    fn to_spec(&self, _id: &str, live: &Live, spec: &mut Spec, importing: &Importing) -> Result<Rendering, String> {
        let attached = live.fields.get(ATTACHMENT).and_then(Value::as_text);
        let elsewhere = attached.is_some_and(|a| a != DETACHED) && live.fields.get(ATTACHMENT).and_then(|a| a.id_of(vpc::KIND)) != Some(vpc::ID);
        if elsewhere {
            return Err("it is attached to another VPC than the environment's".into());
        }
        let n = imported_network(spec, live, None)?;
        n.vpc.internet_gateway_name = explicit_name(live, &format!("sentry-igw-{}", importing.env));
        Ok(Rendering::whole())
    }

    async fn observe(&self, env: &EnvSpec, desired: &[Desired], _reads: &ReadCache) -> Result<Vec<Live>, AwsError> {
        observed(&self.client, &env.env, desired, |g, l| Some(l.with(ATTACHMENT, attachment(g).map_or(Value::text(DETACHED), Value::handle)))).await
    }

    async fn create(&self, desired: &Desired, _token: &str, _reads: &ReadCache) -> Result<String, AwsError> {
        let request = self.client.create_internet_gateway();
        let out = request.tag_specifications(tag_spec(ResourceType::InternetGateway, &desired.tags)).send().await.aws("EC2.CreateInternetGateway")?;
        let id = required("EC2.CreateInternetGateway", "internet gateway id", out.internet_gateway().and_then(|g| g.internet_gateway_id()))?;
        self.attach(&id, desired.fields.get(ATTACHMENT)).await?;
        Ok(id)
    }

    async fn update(&self, _desired: &Desired, live: &Live, delta: &Delta) -> Result<(), AwsError> {
        for change in delta.fields.iter().filter(|c| c.field == ATTACHMENT) {
            if let Some(old) = change.live_text().filter(|v| *v != DETACHED) {
                self.client.detach_internet_gateway().internet_gateway_id(&live.handle).vpc_id(old).send().await.aws("EC2.DetachInternetGateway")?;
            }
            self.attach(&live.handle, change.desired.as_ref()).await?;
        }
        put_tags(&self.client, &live.handle, &delta.tags).await
    }

    async fn delete(&self, live: &Live, _reads: &ReadCache) -> Result<(), AwsError> {
        if let Some(vpc) = live.fields.get(ATTACHMENT).and_then(Value::as_text).filter(|v| *v != DETACHED) {
            let detached = self.client.detach_internet_gateway().internet_gateway_id(&live.handle).vpc_id(vpc).send().await;
            gone_is_ok(detached.map(|_| ()).aws("EC2.DetachInternetGateway"))?;
        }
        let result = self.client.delete_internet_gateway().internet_gateway_id(&live.handle).send().await;
        gone_is_ok(result.map(|_| ()).aws("EC2.DeleteInternetGateway"))
    }
}

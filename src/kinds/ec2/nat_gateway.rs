//! NAT gateways: public, in a public subnet, always on a whitelist EIP.
//! Neither the subnet nor the EIP can change in place, so a NAT gateway on
//! the wrong address is replaced (deleting one never releases its EIP).

use crate::engine::focus::EventMatch;
use crate::engine::permissions::{Grant, Permissions};
use crate::engine::Scope;
use crate::kinds::each;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_ec2::types::{NatGatewayState, ResourceType};
use aws_sdk_ec2::Client;

use super::{adopts, desired, elastic_ip, explicit_name, gone_is_ok, internet_gateway, live, network, put_tags, rules, subnet, tag_map, tag_spec, wait_for};
use crate::aws::{required, AwsError, AwsResult};
use crate::engine::{Delta, Desired, FieldReader, Importing, Kind, Live, OnImmutableChange, ReadCache, Rendering, Rules, Value};
use crate::spec::model::{DeletionPolicy, NatGateway, Spec, Tier, WhitelistAddress};
use crate::spec::network::check_pin;
use crate::spec::physical_name;
use crate::spec::EnvSpec;

/// Kind name.
pub const KIND: &str = super::NAT_GATEWAY;

fields! { SUBNET = "SubnetId", ALLOCATION = "AllocationId" }
/// How long to wait for a NAT gateway to become available or deleted.
const WAIT: Duration = Duration::from_secs(600);
/// Meta key: the public IP of the gateway's primary address.
const PUBLIC_IP: &str = "public-ip";

/// The NAT gateway kind.
pub struct NatGateways {
    /// The service's client, shared by the kinds of the service.
    pub client: Client,
}

impl NatGateways {
    async fn state(&self, id: &str) -> Result<Option<NatGatewayState>, AwsError> {
        let out = self.client.describe_nat_gateways().nat_gateway_ids(id).send().await.aws("EC2.DescribeNatGateways")?;
        Ok(out.nat_gateways().first().and_then(|n| n.state().cloned()))
    }
}

/// What the kind's calls need of IAM.
#[rustfmt::skip]
const PERMISSIONS: Permissions = Permissions {
    reads: &["ec2:DescribeVpcs", "ec2:DescribeNatGateways", "ec2:DescribeSecurityGroups"],
    grants: &[Grant::allow("NetworkWrites", &["ec2:CreateNatGateway", "ec2:DeleteNatGateway", "ec2:CreateTags"], &["*"])],
};

#[async_trait]
impl Kind for NatGateways {
    fn rules(&self) -> Rules {
        Rules {
            immutable: &[SUBNET, ALLOCATION],
            on_immutable_change: OnImmutableChange::Replace,
            events: EventMatch::of("ec2.amazonaws.com", &["NatGateway"], &["natGatewayId", "NatGatewayId"]).marked("nat-"),
            scope: Scope::Whitelist,
            ..rules(KIND).stands_for(&["AWS::EC2::NatGateway", "aws_nat_gateway"]).needs(PERMISSIONS).imported()
        }
    }

    fn desired(&self, env: &EnvSpec) -> Vec<Desired> {
        each(network(env).map(|n| &n.nat_gateways), |(id, nat)| {
            desired(env, KIND, id, physical_name(nat.name.as_deref(), id, &env.env), DeletionPolicy::Delete)
                .with_reference(SUBNET, subnet::KIND, &nat.subnet)
                .with_reference(ALLOCATION, elastic_ip::KIND, &nat.elastic_ip)
                .after(internet_gateway::KIND, internet_gateway::ID)
        })
    }

    /// Its subnet is public (unless its route table says otherwise); an
    /// address from outside the stacks joins the whitelist pool, pinned.
    fn to_spec(&self, id: &str, live: &Live, spec: &mut Spec, importing: &Importing) -> Result<Rendering, String> {
        let n = super::imported_network(spec, live, None)?;
        let subnet = live.fields.get(SUBNET).and_then(|s| s.id_of(subnet::KIND)).filter(|s| n.subnets.contains_key(*s));
        let subnet = subnet.ok_or("its subnet is not in the stacks")?.to_string();
        let allocation = live.fields.get(ALLOCATION);
        let elastic_ip = match allocation.and_then(|a| a.id_of(elastic_ip::KIND)) {
            Some(entry) => entry.to_string(),
            None => {
                let allocation = allocation.and_then(Value::as_text).filter(|a| !a.is_empty()).ok_or("it has no address")?;
                let address = live.meta.get(PUBLIC_IP).filter(|ip| check_pin(ip).is_ok()).map_or(allocation, String::as_str);
                let entry = (1..).map(|k| if k == 1 { format!("{id}-address") } else { format!("{id}-address-{k}") });
                let entry = entry.into_iter().find(|e| !n.whitelist.pool.contains_key(e)).unwrap_or_else(|| format!("{id}-address"));
                n.whitelist.pool.insert(entry.clone(), WhitelistAddress { name: None, address: Some(address.to_string()), releasable: false });
                entry
            }
        };
        if let Some(s) = n.subnets.get_mut(&subnet) {
            s.tier = Tier::Public;
        }
        n.nat_gateways.insert(id.to_string(), NatGateway { name: explicit_name(live, &physical_name(None, id, importing.env)), subnet, elastic_ip });
        Ok(Rendering::whole())
    }

    async fn observe(&self, env: &EnvSpec, desired: &[Desired], reads: &ReadCache) -> Result<Vec<Live>, AwsError> {
        let out = super::live_nat_gateways(&self.client, reads).await?;
        Ok(out
            .nat_gateways()
            .iter()
            .filter_map(|n| {
                let primary = n.nat_gateway_addresses().iter().find(|a| a.is_primary() != Some(false));
                let mut l = live(n.nat_gateway_id()?, tag_map(n.tags()))
                    .with_handle(SUBNET, n.subnet_id().unwrap_or_default())
                    .with_handle(ALLOCATION, primary.and_then(|a| a.allocation_id()).unwrap_or_default());
                if let Some(ip) = primary.and_then(|a| a.public_ip()) {
                    l.meta.insert(PUBLIC_IP.into(), ip.into());
                }
                // The shared read lists every owner's NAT gateways.
                (l.is_owned_by(&env.env) || adopts(desired, &l.handle)).then_some(l)
            })
            .collect())
    }

    async fn create(&self, desired: &Desired, token: &str, _reads: &ReadCache) -> Result<String, AwsError> {
        let request = self.client.create_nat_gateway().subnet_id(desired.field(SUBNET)).allocation_id(desired.field(ALLOCATION)).client_token(token);
        let out = request.tag_specifications(tag_spec(ResourceType::Natgateway, &desired.tags)).send().await.aws("EC2.CreateNatGateway")?;
        let id = required("EC2.CreateNatGateway", "NAT gateway id", out.nat_gateway().and_then(|n| n.nat_gateway_id()))?;
        wait_for("EC2.DescribeNatGateways", WAIT, || async {
            match self.state(&id).await? {
                Some(NatGatewayState::Available) => Ok(Some(())),
                Some(NatGatewayState::Failed) => Err(AwsError::unexpected("EC2.CreateNatGateway", format!("NAT gateway {id} failed"))),
                _ => Ok(None),
            }
        })
        .await?;
        Ok(id)
    }

    async fn update(&self, _desired: &Desired, live: &Live, delta: &Delta) -> Result<(), AwsError> {
        put_tags(&self.client, &live.handle, &delta.tags).await
    }

    async fn delete(&self, live: &Live, _reads: &ReadCache) -> Result<(), AwsError> {
        let result = self.client.delete_nat_gateway().nat_gateway_id(&live.handle).send().await;
        gone_is_ok(result.map(|_| ()).aws("EC2.DeleteNatGateway"))?;
        // Its EIP is free (and reusable) only once the gateway is deleted.
        wait_for("EC2.DescribeNatGateways", WAIT, || async {
            Ok(matches!(self.state(&live.handle).await?, None | Some(NatGatewayState::Deleted)).then_some(()))
        })
        .await
    }
}

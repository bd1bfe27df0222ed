//! The Elastic IP whitelist and its guard.
//!
//! The exchanges (Bitget, OKX, BingX) accept orders only from the NAT
//! gateways' Elastic IPs, so these addresses are an invariant:
//! - Bootstrap: an unpinned pool entry gets a new EIP tagged
//!   `sentry:whitelist=true`; the operator then asks for it to be pinned.
//! - A pinned address is never replaced by another. If it disappears, the
//!   operator re-allocates the same address (AllocateAddress with Address);
//!   when that fails the pass exits 3, naming the address.
//! - A whitelist EIP is released only after the two-step opt-out: the spec
//!   marks it `releasable: true` (recorded as `sentry:deletion-policy=delete`),
//!   and a later spec removes it.
//! - An EIP attached to anything but its NAT gateway is detached and
//!   re-attached, with an alert.
//! - The whitelist ledger, a tag on the VPC listing the pinned addresses,
//!   tells "released out of band" (in the ledger: recover) from "pinned by
//!   mistake" (never seen: an error before any write).

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_ec2::types::{DomainType, Filter, ResourceType};
use aws_sdk_ec2::Client;

use super::{desired, gone_is_ok, live, nat_gateway, network, owned_by, put_tags, tag_map, tag_spec};
use crate::aws::{AwsError, CallCounter, ErrorClass};
use crate::engine::plan::{Action, Step};
use crate::engine::report::Section;
use crate::engine::{reference, Delta, Desired, Kind, Live, Ownership, Review};
use crate::spec::model::{DeletionPolicy, Network};
use crate::spec::EnvSpec;

/// Kind name.
pub const KIND: &str = "ec2.elastic-ip";
/// Tag marking an EIP as part of the whitelist pool.
pub const WHITELIST_TAG: &str = "sentry:whitelist";
/// VPC tag listing the pinned whitelist addresses (`id=address`, space separated).
pub const LEDGER_TAG: &str = "sentry:whitelist-ledger";

const ATTACHED_TO: &str = "AttachedTo";
const PINNED: &str = "Pinned";
const NOTHING: &str = "nothing";
const META_PUBLIC_IP: &str = "public-ip";
const META_ASSOCIATION: &str = "association-id";

/// The ledger value for the spec's pinned addresses, if any are pinned.
pub fn ledger_of_spec(n: &Network) -> Option<String> {
    let pins: Vec<String> = n.whitelist.pool.iter().filter_map(|(id, a)| a.address.as_ref().map(|addr| format!("{id}={addr}"))).collect();
    (!pins.is_empty()).then(|| pins.join(" "))
}

fn parse_ledger(value: &str) -> BTreeMap<String, String> {
    value.split(' ').filter_map(|p| p.split_once('=')).map(|(id, addr)| (id.to_string(), addr.to_string())).collect()
}

/// The whitelist EIP kind.
pub struct ElasticIps {
    client: Client,
    /// The ledger read from the VPC by the last observe.
    ledger: Mutex<BTreeMap<String, String>>,
}

impl ElasticIps {
    /// A whitelist EIP kind using `config`, counting requests in `counter`.
    pub fn new(config: &SdkConfig, counter: &CallCounter) -> Self {
        ElasticIps { client: super::client(config, counter), ledger: Mutex::new(BTreeMap::new()) }
    }

    /// A whitelist EIP kind over an existing client (tests use a mocked one).
    #[cfg(test)]
    fn from_client(client: Client) -> Self {
        ElasticIps { client, ledger: Mutex::new(BTreeMap::new()) }
    }

    /// NAT gateways (any owner) by their network interface, to tell where an EIP is attached.
    async fn nat_by_interface(&self) -> Result<BTreeMap<String, String>, AwsError> {
        let out = self
            .client
            .describe_nat_gateways()
            .filter(Filter::builder().name("state").values("pending").values("available").build())
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("EC2.DescribeNatGateways", e))?;
        let mut map = BTreeMap::new();
        for nat in out.nat_gateways() {
            for address in nat.nat_gateway_addresses() {
                if let (Some(eni), Some(id)) = (address.network_interface_id(), nat.nat_gateway_id()) {
                    map.insert(eni.to_string(), id.to_string());
                }
            }
        }
        Ok(map)
    }

    async fn read_ledger(&self, env: &str) -> Result<BTreeMap<String, String>, AwsError> {
        let out = self.client.describe_vpcs().set_filters(Some(owned_by(env))).send().await.map_err(|e| AwsError::from_sdk("EC2.DescribeVpcs", e))?;
        Ok(out.vpcs().iter().flat_map(|v| v.tags()).filter(|t| t.key() == Some(LEDGER_TAG)).flat_map(|t| parse_ledger(t.value().unwrap_or_default())).collect())
    }

    async fn allocate(&self, desired: &Desired, address: Option<&str>) -> Result<String, AwsError> {
        let out = self
            .client
            .allocate_address()
            .domain(DomainType::Vpc)
            .set_address(address.map(str::to_string))
            .tag_specifications(tag_spec(ResourceType::ElasticIp, &desired.tags))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("EC2.AllocateAddress", e))?;
        Ok(out.allocation_id().unwrap_or_default().to_string())
    }
}

fn alert(id: &str, address: &str, what: &str) {
    tracing::error!(target: "sentry_operator::alert", alert = "WhitelistViolation", pool_entry = id, address, "{what}");
}

#[async_trait]
impl Kind for ElasticIps {
    fn name(&self) -> &'static str {
        KIND
    }

    fn matches(&self, env: &str, desired: &Desired, live: &Live) -> bool {
        match desired.fields.get(PINNED) {
            Some(pin) => live.fields.get(PINNED) == Some(pin),
            None => live.is_owned_as(env, &desired.key.id) && !live.fields.contains_key(PINNED),
        }
    }

    fn desired(&self, env: &EnvSpec) -> Vec<Desired> {
        let Some(n) = network(env) else { return Vec::new() };
        n.whitelist
            .pool
            .iter()
            .map(|(id, entry)| {
                let policy = if entry.releasable { DeletionPolicy::Delete } else { DeletionPolicy::Retain };
                let mut d = desired(env, KIND, id, format!("sentry-{id}-{}", env.env), policy);
                d.tags.insert(WHITELIST_TAG.into(), "true".into());
                let nat = n.nat_gateways.iter().find(|(_, nat)| nat.elastic_ip == *id).map(|(nat_id, _)| reference(nat_gateway::KIND, nat_id));
                d.fields.insert(ATTACHED_TO.into(), nat.unwrap_or_else(|| NOTHING.into()));
                if let Some(pin) = &entry.address {
                    d.fields.insert(PINNED.into(), pin.clone());
                    d.adopt = true; // pinning an address is adopting it
                }
                d
            })
            .collect()
    }

    async fn observe(&self, env: &EnvSpec, desired: &[Desired]) -> Result<Vec<Live>, AwsError> {
        let pins: Vec<&str> = desired.iter().filter_map(|d| d.fields.get(PINNED)).map(String::as_str).collect();
        let (addresses, nats, ledger) = tokio::try_join!(
            async { self.client.describe_addresses().send().await.map_err(|e| AwsError::from_sdk("EC2.DescribeAddresses", e)) },
            self.nat_by_interface(),
            self.read_ledger(&env.env),
        )?;
        if let Ok(mut l) = self.ledger.lock() {
            *l = ledger;
        }
        let mut found = Vec::new();
        for a in addresses.addresses() {
            let (Some(allocation), Some(ip)) = (a.allocation_id(), a.public_ip()) else { continue };
            let pin = pins.iter().find(|p| **p == ip || **p == allocation);
            let mut l = live(allocation, tag_map(a.tags()));
            let ours = matches!(l.ownership(), Ownership::Managed { env: ref owner, .. } if *owner == env.env);
            if pin.is_none() && !ours {
                continue; // neither pinned nor ours: not the operator's business
            }
            if let Some(pin) = pin {
                l.fields.insert(PINNED.into(), pin.to_string());
            }
            let attached = match (a.network_interface_id().filter(|s| !s.is_empty()), a.instance_id().filter(|s| !s.is_empty())) {
                (Some(eni), _) => nats.get(eni).cloned().unwrap_or_else(|| eni.to_string()),
                (None, Some(instance)) => instance.to_string(),
                (None, None) => NOTHING.to_string(),
            };
            l.fields.insert(ATTACHED_TO.into(), attached);
            l.meta.insert(META_PUBLIC_IP.into(), ip.into());
            if let Some(association) = a.association_id() {
                l.meta.insert(META_ASSOCIATION.into(), association.into());
            }
            if l.name == allocation {
                l.name = ip.to_string();
            }
            found.push(l);
        }
        Ok(found)
    }

    async fn create(&self, desired: &Desired) -> Result<String, AwsError> {
        let id = &desired.key.id;
        let Some(pin) = desired.fields.get(PINNED) else {
            let allocation = self.allocate(desired, None).await?;
            tracing::warn!(pool_entry = %id, allocation = %allocation, "allocated a new whitelist Elastic IP: have the exchanges whitelist it, then pin it in the spec (network.whitelist.pool.{id}.address)");
            return Ok(allocation);
        };
        alert(id, pin, "pinned whitelist address is missing from the account; trying to recover the same address");
        let unrecoverable = |why: String| {
            AwsError {
            operation: "EC2.AllocateAddress",
            class: ErrorClass::Invariant,
            code: None,
            message: format!(
                "whitelisted address {pin} ({id}) was released and cannot be recovered ({why}). Orders to the exchanges from this environment will be rejected: allocate a new address, have Bitget, OKX and BingX whitelist it, then pin it in network.whitelist.pool.{id}.address"
            ),
        }
        };
        if pin.starts_with("eipalloc-") {
            return Err(unrecoverable("an allocation id cannot be re-allocated; pin the public IP".into()));
        }
        match self.allocate(desired, Some(pin)).await {
            Ok(allocation) => {
                alert(id, pin, "recovered the released whitelist address");
                Ok(allocation)
            }
            Err(e) if e.class.is_retryable() => Err(e),
            Err(e) => Err(unrecoverable(e.to_string())),
        }
    }

    async fn update(&self, _desired: &Desired, live: &Live, delta: &Delta) -> Result<(), AwsError> {
        put_tags(&self.client, &live.handle, &delta.tags).await?;
        let Some(change) = delta.fields.iter().find(|c| c.field == ATTACHED_TO) else { return Ok(()) };
        let ip = live.meta.get(META_PUBLIC_IP).cloned().unwrap_or_default();
        let target = change.desired.as_deref().unwrap_or(NOTHING);
        alert(&live.name, &ip, &format!("whitelist address attached to {} instead of {target}; restoring", change.live.as_deref().unwrap_or(NOTHING)));
        if let Some(association) = live.meta.get(META_ASSOCIATION) {
            let result = self.client.disassociate_address().association_id(association).send().await;
            gone_is_ok(result.map(|_| ()).map_err(|e| AwsError::from_sdk("EC2.DisassociateAddress", e)))?;
        }
        if !target.starts_with("nat-") {
            return Ok(()); // detached is the desired state, or its NAT gateway is created later
        }
        let nat = self.client.describe_nat_gateways().nat_gateway_ids(target).send().await.map_err(|e| AwsError::from_sdk("EC2.DescribeNatGateways", e))?;
        let interface = nat
            .nat_gateways()
            .iter()
            .flat_map(|n| n.nat_gateway_addresses())
            .find(|a| a.allocation_id() == Some(live.handle.as_str()))
            .and_then(|a| a.network_interface_id().map(str::to_string));
        if let Some(eni) = interface {
            self.client
                .associate_address()
                .allocation_id(&live.handle)
                .network_interface_id(eni)
                .allow_reassociation(false)
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("EC2.AssociateAddress", e))?;
        }
        Ok(())
    }

    async fn delete(&self, live: &Live) -> Result<(), AwsError> {
        if let Some(association) = live.meta.get(META_ASSOCIATION) {
            let result = self.client.disassociate_address().association_id(association).send().await;
            gone_is_ok(result.map(|_| ()).map_err(|e| AwsError::from_sdk("EC2.DisassociateAddress", e)))?;
        }
        tracing::warn!(address = %live.name, "releasing a whitelist Elastic IP marked releasable and removed from the spec");
        let result = self.client.release_address().allocation_id(&live.handle).send().await;
        gone_is_ok(result.map(|_| ()).map_err(|e| AwsError::from_sdk("EC2.ReleaseAddress", e)))
    }

    fn review(&self, env: &EnvSpec, steps: &[&Step]) -> Review {
        let mut review = Review::default();
        let Some(n) = network(env) else { return review };
        let ledger = self.ledger.lock().map(|l| l.clone()).unwrap_or_default();
        let mut lines = Vec::new();
        for (id, entry) in &n.whitelist.pool {
            let Some(step) = steps.iter().find(|s| s.key.id == *id && s.desired.is_some()) else { continue };
            let ip = step.live.as_ref().and_then(|l| l.meta.get(META_PUBLIC_IP)).cloned().unwrap_or_else(|| "-".into());
            let attached =
                step.live.as_ref().and_then(|l| l.fields.get(ATTACHED_TO)).map(|a| a.trim_start_matches('@').to_string()).unwrap_or_else(|| NOTHING.into());
            let status = match (step.action, &entry.address) {
                (Action::Create, Some(pin)) if ledger.values().any(|a| a == pin) => {
                    alert(id, pin, "pinned whitelist address is missing from the account");
                    format!("VIOLATED: {pin} is missing (released out of band?); will try to recover the same address")
                }
                (Action::Create, Some(pin)) => {
                    review.errors.push(format!(
                        "network.whitelist.pool.{id}.address: pinned address {pin} does not exist in this account and was never part of this environment's whitelist; check the pin"
                    ));
                    format!("ERROR: pinned {pin} does not exist in this account")
                }
                (Action::Create, None) => "not allocated yet: will allocate a new address (bootstrap)".into(),
                (Action::Update, _) if step.delta.fields.iter().any(|c| c.field == ATTACHED_TO) => {
                    let want = step.desired.as_ref().and_then(|d| d.fields.get(ATTACHED_TO)).map(|a| a.trim_start_matches('@').to_string()).unwrap_or_default();
                    alert(id, &ip, &format!("whitelist address attached to {attached} instead of {want}"));
                    format!("VIOLATED: attached to {attached}, should be {want}; will restore")
                }
                (Action::Skip, _) => step.note.clone().unwrap_or_default(),
                _ => "OK".into(),
            };
            let pin_hint = if entry.address.is_none() && ip != "-" {
                format!("  (not pinned: pin it with network.whitelist.pool.{id}.address: {ip})")
            } else {
                String::new()
            };
            lines.push(format!("{id}: {ip} attached to {attached}: {status}{pin_hint}"));
        }
        for step in steps.iter().filter(|s| s.desired.is_none()) {
            let what = if step.action == Action::Delete {
                "releasable and removed from the spec: will be released"
            } else {
                "removed from the spec: retained (never released unless marked releasable first)"
            };
            lines.push(format!("{} ({}): {what}", step.key.id, step.name));
        }
        review.section = Some(Section { title: "Elastic IP whitelist (the exchanges trust these addresses)".into(), lines });
        review
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ResourceKey;
    use aws_sdk_ec2::operation::allocate_address::{AllocateAddressError, AllocateAddressOutput};
    use aws_smithy_mocks::{mock, mock_client};
    use aws_smithy_types::error::ErrorMetadata;

    fn pinned(address: &str) -> Desired {
        Desired {
            key: ResourceKey { kind: KIND, id: "whitelist-1".into() },
            name: "sentry-whitelist-1-prod".into(),
            fields: [(PINNED.to_string(), address.to_string()), (ATTACHED_TO.to_string(), "nat-1".to_string())].into_iter().collect(),
            tags: Default::default(),
            depends_on: Vec::new(),
            adopt: true,
            idempotency_token: String::new(),
        }
    }

    // The emulator re-allocates any address it is asked for, so the path where
    // AWS refuses to give a released address back is covered with mocks.
    #[tokio::test]
    async fn an_unrecoverable_release_is_an_invariant_violation_naming_the_address() {
        let refuse = mock!(Client::allocate_address).then_error(|| {
            AllocateAddressError::generic(ErrorMetadata::builder().code("InvalidAddress.NotFound").message("Address 203.0.113.10 is not available").build())
        });
        let kind = ElasticIps::from_client(mock_client!(aws_sdk_ec2, [&refuse]));
        let e = kind.create(&pinned("203.0.113.10")).await.expect_err("must fail");
        assert_eq!(e.class, ErrorClass::Invariant);
        assert!(e.message.contains("203.0.113.10") && e.message.contains("cannot be recovered"), "{}", e.message);
        assert_eq!(refuse.num_calls(), 1, "exactly one attempt to get the same address back");
    }

    #[tokio::test]
    async fn a_released_address_is_recovered_by_address_only() {
        let recover = mock!(Client::allocate_address)
            .match_requests(|r| r.address() == Some("203.0.113.10"))
            .then_output(|| AllocateAddressOutput::builder().allocation_id("eipalloc-new").public_ip("203.0.113.10").build());
        let kind = ElasticIps::from_client(mock_client!(aws_sdk_ec2, [&recover]));
        assert_eq!(kind.create(&pinned("203.0.113.10")).await.expect("recovered"), "eipalloc-new");
        assert_eq!(recover.num_calls(), 1);
        let e = kind.create(&pinned("eipalloc-gone")).await.expect_err("an allocation id cannot be re-allocated");
        assert_eq!(e.class, ErrorClass::Invariant);
        assert_eq!(recover.num_calls(), 1, "no AWS call for an allocation-id pin");
    }

    #[test]
    fn ledger_round_trips() {
        let ledger = parse_ledger("whitelist-1=203.0.113.1 whitelist-2=eipalloc-1");
        assert_eq!(ledger.get("whitelist-1").map(String::as_str), Some("203.0.113.1"));
        assert_eq!(ledger.get("whitelist-2").map(String::as_str), Some("eipalloc-1"));
        assert!(parse_ledger("").is_empty());
    }
}

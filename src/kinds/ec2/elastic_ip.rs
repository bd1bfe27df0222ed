//! The Elastic IP whitelist and its guard.
//!
//! The exchanges (Bitget, OKX, BingX) accept orders only from the NAT
//! gateways' Elastic IPs, so these addresses are an invariant:
//! - Bootstrap: a pool entry that never had an address gets a new EIP tagged
//!   `sentry:whitelist=true`; the operator then asks for it to be pinned.
//! - The whitelist ledger: every address the operator allocates (or adopts:
//!   a pinned one, or one it finds tagged as a pool entry) is recorded on the
//!   VPC, one tag per pool entry, in the same pass (right after the
//!   allocation; a pass that dies in between finds the tagged EIP and records
//!   it then). An address in the ledger is guarded exactly like a pinned one.
//! - A guarded address is never replaced by another. If it disappears, the
//!   operator re-allocates the same address (AllocateAddress with Address);
//!   when that fails the pass exits 3, naming the address and the entry. A
//!   fresh address for an entry that had one is allocated only when the run
//!   asks for it (`--reallocate-whitelist <entry>`, [`EnvSpec::reallocate_whitelist`]).
//! - A whitelist EIP is released only after the two-step opt-out: the spec
//!   marks it `releasable: true` (recorded as `sentry:deletion-policy=delete`),
//!   and a later spec removes it; its ledger entry goes with it.
//! - An EIP attached to anything but its NAT gateway is detached and
//!   re-attached, with an alert.
//! - The ledger also tells "released out of band" (recorded: recover) from
//!   "pinned by mistake" (never seen: an error before any write).

use crate::engine::focus::EventMatch;
use crate::engine::permissions::{Grant, Permissions};
use crate::engine::Scope;
use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_ec2::operation::describe_vpcs::DescribeVpcsOutput;
use aws_sdk_ec2::types::{DomainType, ResourceType, Tag};
use aws_sdk_ec2::Client;

use super::{desired, explicit_name, gone_is_ok, live, network, put_tags, rules, tag_map, tag_spec, vpc};
use crate::aws::{required, AwsError, AwsResult, ErrorClass};
use crate::engine::apply::{with_retries, RetryPolicy};
use crate::engine::plan::{Action, Step};
use crate::engine::{
    reference, Adoption, Delta, Desired, Finding, FindingClass, Importing, Kind, Live, Matching, Ownership, ReadCache, Rendering, Review, Rules, Value,
    TAG_ENV, TAG_ID,
};
use crate::spec::model::{DeletionPolicy, Spec, Tags, WhitelistAddress};
use crate::spec::network::check_pin;
use crate::spec::physical_name;
use crate::spec::EnvSpec;

/// Kind name.
pub const KIND: &str = super::ELASTIC_IP;
/// Tag marking an EIP as part of the whitelist pool.
pub const WHITELIST_TAG: &str = "sentry:whitelist";
/// Prefix of the VPC tags that form the whitelist ledger: one per pool entry,
/// `sentry:whitelist-ledger/<entry>` = the public IP recorded for it.
pub const LEDGER_TAG_PREFIX: &str = "sentry:whitelist-ledger/";
/// The ledger's first form, one VPC tag `entry=address ...` (pins only): still read.
const LEGACY_LEDGER_TAG: &str = "sentry:whitelist-ledger";

fields! { ATTACHED_TO = "AttachedTo", PINNED = "Pinned" }
/// Whether the live address is the one the ledger records for its entry.
const RECORDED: &str = "RecordedInLedger";
/// Present when this run may give the entry a fresh address for a lost one
/// (`--reallocate-whitelist`); used at creation only, never compared.
const REALLOCATE: &str = "ReallocateAsked";
/// The VPC holding the ledger (a reference; set at creation, never compared).
const LEDGER_VPC: &str = "LedgerVpc";
const NOTHING: &str = "nothing";
/// The field a missing address's finding names.
const PUBLIC_IP: &str = "PublicIp";
fields! { META_PUBLIC_IP = "public-ip", META_ASSOCIATION = "association-id" }
/// The pool entry whose ledger record names this address (an EIP found by its
/// address alone: its ownership tags were stripped).
const META_LEDGER_ENTRY: &str = "ledger-entry";

/// The ledger as read from the VPC's tags: pool entry → recorded address.
fn ledger_of_tags(tags: &Tags) -> BTreeMap<String, String> {
    let legacy = tags.get(LEGACY_LEDGER_TAG).map(String::as_str).unwrap_or_default();
    let mut entries: BTreeMap<String, String> =
        legacy.split(' ').filter_map(|p| p.split_once('=')).map(|(id, addr)| (id.to_string(), addr.to_string())).collect();
    entries.extend(tags.iter().filter_map(|(k, v)| Some((k.strip_prefix(LEDGER_TAG_PREFIX)?.to_string(), v.clone()))));
    entries
}

/// The ledger as this pass read it.
#[derive(Clone, Debug, Default)]
struct Ledger {
    /// The environment's VPC, when it exists.
    vpc: Option<String>,
    /// Pool entry → recorded address.
    entries: BTreeMap<String, String>,
}

impl Ledger {
    /// The ledger held by the environment's VPC, as DescribeVpcs answered.
    fn of(vpcs: &DescribeVpcsOutput) -> Ledger {
        let Some(found) = vpcs.vpcs().first() else { return Ledger::default() };
        Ledger { vpc: found.vpc_id().map(str::to_string), entries: ledger_of_tags(&tag_map(found.tags())) }
    }
}

/// The whitelist EIP kind.
pub struct ElasticIps {
    /// The service's client, shared by the kinds of the service.
    pub client: Client,
}

impl ElasticIps {
    /// NAT gateways (any owner) by their network interface, to tell where an EIP is attached.
    async fn nat_by_interface(&self, reads: &ReadCache) -> Result<BTreeMap<String, String>, AwsError> {
        let out = super::live_nat_gateways(&self.client, reads).await?;
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

    /// The ledger of the environment whose ownership tags `tags` are (the
    /// pass's shared read of its VPC, made by observe).
    async fn read_ledger(&self, tags: &Tags, reads: &ReadCache) -> Result<Ledger, AwsError> {
        let env = tags.get(TAG_ENV).ok_or_else(|| AwsError::unexpected("EC2.DescribeVpcs", "a whitelist address without its environment tag"))?;
        Ok(Ledger::of(&*super::owned_vpcs(&self.client, env, reads).await?))
    }

    /// Records `address` for pool entry `id` in the ledger on `vpc` (retrying what is retryable).
    async fn record(&self, vpc: &str, id: &str, address: &str) -> Result<(), AwsError> {
        let tag = Tag::builder().key(format!("{LEDGER_TAG_PREFIX}{id}")).value(address).build();
        with_retries(&RetryPolicy::default(), || async { self.client.create_tags().resources(vpc).tags(tag.clone()).send().await.aws("EC2.CreateTags") })
            .await?;
        tracing::info!(pool_entry = id, address, "whitelist address recorded in the ledger");
        Ok(())
    }

    /// Allocates an EIP (the given `address`, or any); returns its allocation id and public IP.
    async fn allocate(&self, desired: &Desired, address: Option<&str>) -> Result<(String, String), AwsError> {
        let request = self.client.allocate_address().domain(DomainType::Vpc).set_address(address.map(str::to_string));
        let out = request.tag_specifications(tag_spec(ResourceType::ElasticIp, &desired.tags)).send().await.aws("EC2.AllocateAddress")?;
        Ok((required("EC2.AllocateAddress", "allocation id", out.allocation_id())?, required("EC2.AllocateAddress", "public IP", out.public_ip())?))
    }

    /// Detaches the address from wherever it is and attaches it to `desired` (a NAT gateway, or nothing).
    async fn reattach(&self, live: &Live, ip: &str, attached: Option<&str>, desired: Option<&str>) -> Result<(), AwsError> {
        let target = desired.unwrap_or(NOTHING);
        alert(&live.name, ip, &format!("whitelist address attached to {} instead of {target}; restoring", attached.unwrap_or(NOTHING)));
        if let Some(association) = live.meta.get(META_ASSOCIATION) {
            let result = self.client.disassociate_address().association_id(association).send().await;
            gone_is_ok(result.map(|_| ()).aws("EC2.DisassociateAddress"))?;
        }
        if !target.starts_with("nat-") {
            return Ok(()); // detached is the desired state, or its NAT gateway is created later
        }
        let nat = self.client.describe_nat_gateways().nat_gateway_ids(target).send().await.aws("EC2.DescribeNatGateways")?;
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
                .aws("EC2.AssociateAddress")?;
        }
        Ok(())
    }

    /// Allocates `address` again for entry `id` after it was released; a refusal is an invariant violation.
    async fn recover(&self, desired: &Desired, address: &str, how: &str) -> Result<(String, String), AwsError> {
        let id = &desired.key.id;
        alert(id, address, &format!("{how} whitelist address is missing from the account; trying to recover the same address"));
        let unrecoverable = |why: String| AwsError {
            operation: "EC2.AllocateAddress",
            class: ErrorClass::Invariant,
            code: None,
            message: format!(
                "whitelisted address {address} ({id}) was released and cannot be recovered ({why}). \
                 Orders to the exchanges from this environment will be rejected: allocate a new address \
                 (reconcile --once --reallocate-whitelist {id}, after removing any pin of {id}), \
                 have Bitget, OKX and BingX whitelist it, then pin it in network.whitelist.pool.{id}.address"
            ),
        };
        if address.starts_with("eipalloc-") {
            return Err(unrecoverable("an allocation id cannot be re-allocated; pin the public IP".into()));
        }
        match self.allocate(desired, Some(address)).await {
            Ok(allocated) => {
                alert(id, address, "recovered the released whitelist address");
                Ok(allocated)
            }
            Err(e) if e.class.is_retryable() => Err(e),
            Err(e) => Err(unrecoverable(e.to_string())),
        }
    }
}

fn alert(id: &str, address: &str, what: &str) {
    tracing::error!(target: "sentry_operator::alert", alert = "WhitelistViolation", pool_entry = id, address, "{what}");
}

/// The VPC id a resolved desired resource names for the ledger.
fn ledger_vpc(desired: &Desired) -> Result<&str, AwsError> {
    desired
        .fields
        .get(LEDGER_VPC)
        .filter(|v| !v.is_unresolved())
        .and_then(Value::as_text)
        .ok_or_else(|| AwsError::unexpected("EC2.CreateTags", format!("no VPC to record whitelist entry {} in", desired.key.id)))
}

/// What the kind's calls need of IAM.
#[rustfmt::skip]
const PERMISSIONS: Permissions = Permissions {
    reads: &["ec2:DescribeVpcs", "ec2:DescribeAddresses", "ec2:DescribeNatGateways", "ec2:DescribeSecurityGroups"],
    grants: &[
        Grant::allow("NetworkWrites", &["ec2:AllocateAddress", "ec2:AssociateAddress", "ec2:DisassociateAddress", "ec2:ReleaseAddress", "ec2:CreateTags"], &["*"]),
        Grant::allow("ForgetAReleasedWhitelistAddressInTheLedger", &["ec2:DeleteTags"], &["arn:aws:ec2:*:*:vpc/*"]).when(r#"{"ForAllValues:StringLike": {"aws:TagKeys": ["sentry:whitelist-ledger/*"]}}"#),
    ],
};

#[async_trait]
impl Kind for ElasticIps {
    fn rules(&self) -> Rules {
        Rules {
            matching: Matching::Custom,
            create_only: &[LEDGER_VPC, REALLOCATE],
            events: EventMatch::of("ec2.amazonaws.com", &["Address"], &["allocationId", "AllocationId"]).marked("eipalloc-"),
            scope: Scope::Whitelist,
            ..rules(KIND)
                .stands_for(&["AWS::EC2::EIP", "aws_eip"])
                .with_parts(&[
                    ("AWS::EC2::EIPAssociation", "the whitelist address's attachment"),
                    ("aws_eip_association", "the whitelist address's attachment"),
                ])
                .needs(PERMISSIONS)
                .imported()
        }
    }

    /// A pool entry pinned to the address (its IP, else its allocation id):
    /// the guard keeps it from then on, so it needs no `adopt` entry. The pool
    /// holds the NAT gateways' addresses and spares: one attached to anything
    /// else (an instance) would be detached by the guard, so it is refused.
    fn to_spec(&self, id: &str, live: &Live, spec: &mut Spec, importing: &Importing) -> Result<Rendering, String> {
        let n = super::imported_network(spec, live, None)?;
        let attached = live.fields.get(ATTACHED_TO);
        let on_nat = attached.is_some_and(|a| a.id_of(super::NAT_GATEWAY).is_some());
        if !on_nat && attached.and_then(Value::as_text) != Some(NOTHING) {
            return Err(format!(
                "address {} is attached to something other than a NAT gateway of the stacks; the whitelist pool holds their addresses and spares",
                live.name
            ));
        }
        let address = live.meta.get(META_PUBLIC_IP).filter(|ip| check_pin(ip).is_ok()).unwrap_or(&live.handle);
        n.whitelist.pool.insert(
            id.to_string(),
            WhitelistAddress { name: explicit_name(live, &format!("sentry-{id}-{}", importing.env)), address: Some(address.clone()), releasable: false },
        );
        Ok(Rendering { named_by_entry: true, ..Rendering::default() })
    }

    fn matches(&self, env: &str, desired: &Desired, live: &Live) -> bool {
        // A pin always wins; an unpinned entry may also be adopted by its
        // allocation id or address (what `import --write` binds), if nobody owns that address.
        let adopted = desired.adopted_id().is_some_and(|id| id == live.handle || live.meta.get(META_PUBLIC_IP).is_some_and(|ip| ip == id));
        match desired.fields.get(PINNED) {
            Some(pin) => live.fields.get(PINNED) == Some(pin),
            None => {
                let recorded = live.is_owned_as(env, &desired.key.id) || live.meta.get(META_LEDGER_ENTRY) == Some(&desired.key.id);
                (recorded || (adopted && live.ownership() == Ownership::Unmanaged)) && !live.fields.contains_key(PINNED)
            }
        }
    }

    fn desired(&self, env: &EnvSpec) -> Vec<Desired> {
        let Some(n) = network(env) else { return Vec::new() };
        n.whitelist
            .pool
            .iter()
            .map(|(id, entry)| {
                let policy = if entry.releasable { DeletionPolicy::Delete } else { DeletionPolicy::Retain };
                let nat = n.nat_gateways.iter().find(|(_, nat)| nat.elastic_ip == *id).map(|(nat_id, _)| Value::Ref(reference(super::NAT_GATEWAY, nat_id)));
                let mut d = desired(env, KIND, id, physical_name(entry.name.as_deref(), id, &env.env), policy)
                    .with(ATTACHED_TO, nat.unwrap_or_else(|| Value::text(NOTHING)))
                    .with(RECORDED, "true")
                    .with_reference(LEDGER_VPC, vpc::KIND, vpc::ID);
                d.tags.insert(WHITELIST_TAG.into(), "true".into());
                if let Some(pin) = &entry.address {
                    d = d.with(PINNED, pin);
                }
                if env.reallocate_whitelist.contains(id) {
                    d = d.with(REALLOCATE, "asked");
                }
                // A pinned address, or one the ledger records for this entry,
                // is the operator's even when its ownership tags were stripped.
                d.adopt = Some(Adoption::ByName);
                d
            })
            .collect()
    }

    async fn observe(&self, env: &EnvSpec, desired: &[Desired], reads: &ReadCache) -> Result<Vec<Live>, AwsError> {
        let pins: Vec<(&str, &str)> = desired.iter().filter_map(|d| Some((d.key.id.as_str(), d.fields.get(PINNED)?.as_text()?))).collect();
        let unpinned: Vec<&str> = desired.iter().filter(|d| !d.fields.contains_key(PINNED)).map(|d| d.key.id.as_str()).collect();
        let adopted: Vec<(&str, &str)> = desired.iter().filter_map(|d| Some((d.key.id.as_str(), d.adopted_id()?))).collect();
        let (addresses, nats, ledger) =
            tokio::try_join!(async { self.client.describe_addresses().send().await.aws("EC2.DescribeAddresses") }, self.nat_by_interface(reads), async {
                Ok(Ledger::of(&*super::owned_vpcs(&self.client, &env.env, reads).await?))
            },)?;
        let mut found = Vec::new();
        for a in addresses.addresses() {
            let (Some(allocation), Some(ip)) = (a.allocation_id(), a.public_ip()) else { continue };
            let pin = pins.iter().find(|(_, p)| *p == ip || *p == allocation);
            let mut l = live(allocation, tag_map(a.tags()));
            let ours = l.is_owned_by(&env.env);
            let recorded_for = unpinned
                .iter()
                .find(|id| ledger.entries.get(**id).map(String::as_str) == Some(ip))
                .or_else(|| adopted.iter().find(|(_, a)| *a == ip || *a == allocation).map(|(id, _)| id));
            let entry = match (pin, ours, recorded_for) {
                (Some((id, pin)), _, _) => {
                    l.fields.insert(PINNED.into(), Value::from(pin.to_string()));
                    id.to_string()
                }
                (None, true, _) => l.tags.get(TAG_ID).cloned().unwrap_or_default(),
                (None, false, Some(id)) => {
                    l.meta.insert(META_LEDGER_ENTRY.into(), id.to_string());
                    id.to_string()
                }
                (None, false, None) => continue, // neither pinned, ours nor recorded: not the operator's business
            };
            l.fields.insert(RECORDED.into(), Value::from((ledger.entries.get(&entry).map(String::as_str) == Some(ip)).to_string()));
            let attached = match (a.network_interface_id().filter(|s| !s.is_empty()), a.instance_id().filter(|s| !s.is_empty())) {
                (Some(eni), _) => Value::handle(nats.get(eni).cloned().unwrap_or_else(|| eni.to_string())),
                (None, Some(instance)) => Value::handle(instance),
                (None, None) => Value::text(NOTHING),
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

    async fn create(&self, desired: &Desired, _token: &str, reads: &ReadCache) -> Result<String, AwsError> {
        let id = &desired.key.id;
        let vpc = ledger_vpc(desired)?.to_string();
        let recorded = self.read_ledger(&desired.tags, reads).await?.entries.get(id).cloned();
        let (allocation, ip) = match (desired.fields.get(PINNED).and_then(Value::as_text), recorded) {
            (Some(pin), Some(ip)) if pin.starts_with("eipalloc-") => {
                alert(id, pin, "pinned whitelist address is missing from the account");
                return Err(AwsError {
                    operation: "EC2.AllocateAddress",
                    class: ErrorClass::Invariant,
                    code: None,
                    message: format!(
                        "whitelisted address {pin} ({id}) was released; an allocation id cannot be re-allocated, \
                         but its address {ip} may be: pin network.whitelist.pool.{id}.address: {ip} and reconcile again"
                    ),
                });
            }
            (Some(pin), _) => self.recover(desired, pin, "pinned").await?,
            (None, Some(address)) if !desired.fields.contains_key(REALLOCATE) => self.recover(desired, &address, "the ledger's").await?,
            (None, lost) => {
                let (allocation, ip) = self.allocate(desired, None).await?;
                match lost {
                    Some(old) => {
                        tracing::warn!(
                            pool_entry = %id, lost = %old, address = %ip,
                            "allocated a NEW whitelist Elastic IP replacing the lost one, as asked (--reallocate-whitelist): \
                             have the exchanges whitelist it, then pin it in the spec (network.whitelist.pool.{id}.address)"
                        )
                    }
                    None => {
                        tracing::warn!(
                            pool_entry = %id, address = %ip,
                            "allocated a new whitelist Elastic IP: have the exchanges whitelist it, \
                             then pin it in the spec (network.whitelist.pool.{id}.address)"
                        )
                    }
                }
                (allocation, ip)
            }
        };
        // The address exists from here on: a failed ledger write must not make
        // the engine allocate another. The next pass records it (RecordedInLedger).
        if let Err(e) = self.record(&vpc, id, &ip).await {
            tracing::error!(pool_entry = %id, address = %ip, error = %e, "could not record the whitelist address in the ledger yet; the next pass will");
        }
        Ok(allocation)
    }

    async fn update(&self, desired: &Desired, live: &Live, delta: &Delta) -> Result<(), AwsError> {
        put_tags(&self.client, &live.handle, &delta.tags).await?;
        let ip = live.meta(META_PUBLIC_IP, "EC2.DescribeAddresses")?.to_string();
        // The attachment first: a failing ledger write must not hold back the repair.
        if let Some(change) = delta.fields.iter().find(|c| c.field == ATTACHED_TO) {
            self.reattach(live, &ip, change.live_text(), change.desired_text()).await?;
        }
        if delta.fields.iter().any(|c| c.field == RECORDED) {
            self.record(ledger_vpc(desired)?, &desired.key.id, &ip).await?;
        }
        Ok(())
    }
    async fn delete(&self, live: &Live, reads: &ReadCache) -> Result<(), AwsError> {
        if let Some(association) = live.meta.get(META_ASSOCIATION) {
            let result = self.client.disassociate_address().association_id(association).send().await;
            gone_is_ok(result.map(|_| ()).aws("EC2.DisassociateAddress"))?;
        }
        // The ledger entry goes first: a pass killed before the release finds
        // the address still releasable and releases it then.
        let ledger = if live.tags.contains_key(TAG_ID) { self.read_ledger(&live.tags, reads).await? } else { Ledger::default() };
        if let (Some(vpc), Some(id)) = (ledger.vpc, live.tags.get(TAG_ID)) {
            let tag = Tag::builder().key(format!("{LEDGER_TAG_PREFIX}{id}")).build();
            let result = self.client.delete_tags().resources(vpc).tags(tag).send().await;
            gone_is_ok(result.map(|_| ()).aws("EC2.DeleteTags"))?;
        }
        tracing::warn!(address = %live.name, "releasing a whitelist Elastic IP marked releasable and removed from the spec");
        let result = self.client.release_address().allocation_id(&live.handle).send().await;
        gone_is_ok(result.map(|_| ()).aws("EC2.ReleaseAddress"))
    }

    fn review(&self, env: &EnvSpec, steps: &[&Step], reads: &ReadCache) -> Review {
        let mut review = Review::default();
        let Some(n) = network(env) else { return review };
        let ledger = super::owned_vpcs_read(reads).map(|vpcs| Ledger::of(&vpcs).entries).unwrap_or_default();
        for id in &env.reallocate_whitelist {
            let step = steps.iter().find(|s| s.key.id == *id && s.desired.is_some());
            let problem = match (n.whitelist.pool.get(id), step) {
                (None, _) => Some("is not an entry of network.whitelist.pool".to_string()),
                (Some(entry), _) if entry.address.is_some() => Some("is pinned: remove the pin first (a pinned address is never replaced)".into()),
                (Some(_), Some(s)) if s.action != Action::Create => Some(format!(
                    "still has its address {}: only a lost address can be replaced, and the operator never releases a whitelist address",
                    s.live.as_ref().and_then(|l| l.meta.get(META_PUBLIC_IP)).map(String::as_str).unwrap_or("-")
                )),
                _ => None,
            };
            if let Some(problem) = problem {
                review.errors.push(format!("--reallocate-whitelist {id}: {problem}"));
            }
        }
        for (id, entry) in &n.whitelist.pool {
            let Some(step) = steps.iter().find(|s| s.key.id == *id && s.desired.is_some()) else { continue };
            let ip = step.live.as_ref().and_then(|l| l.meta.get(META_PUBLIC_IP)).cloned().unwrap_or_else(|| "-".into());
            let attached = step
                .live
                .as_ref()
                .and_then(|l| l.fields.get(ATTACHED_TO))
                .map(|a| a.to_string().trim_start_matches('@').to_string())
                .unwrap_or_else(|| NOTHING.into());
            let recorded = ledger.get(id);
            let missing = |address: &str| (Some(PUBLIC_IP), Some(address.to_string()), None);
            let ((field, desired, live), violation, status) = match (step.action, &entry.address) {
                (Action::Create, Some(pin)) if recorded.is_some() || ledger.values().any(|a| a == pin) => {
                    alert(id, pin, "pinned whitelist address is missing from the account");
                    (missing(pin), true, format!("VIOLATED: {pin} is missing (released out of band?); will try to recover the same address"))
                }
                (Action::Create, Some(pin)) => {
                    review.errors.push(format!(
                        "network.whitelist.pool.{id}.address: pinned address {pin} does not exist in this account \
                         and was never part of this environment's whitelist; check the pin"
                    ));
                    (missing(pin), true, format!("ERROR: pinned {pin} does not exist in this account"))
                }
                (Action::Create, None) => match recorded {
                    Some(old) if env.reallocate_whitelist.contains(id) => (
                        missing(old),
                        false,
                        format!("LOST: {old} is gone; a NEW address will be allocated as asked (--reallocate-whitelist): the exchanges must whitelist it"),
                    ),
                    Some(old) => {
                        alert(id, old, "whitelist address recorded in the ledger is missing from the account");
                        (
                            missing(old),
                            true,
                            format!("VIOLATED: {old} (recorded in the ledger) is missing (released out of band?); will try to recover the same address"),
                        )
                    }
                    None => ((None, None, None), false, "not allocated yet: will allocate a new address (bootstrap)".into()),
                },
                (Action::Update | Action::Adopt, _) if step.delta.fields.iter().any(|c| c.field == ATTACHED_TO) => {
                    let want = step
                        .desired
                        .as_ref()
                        .and_then(|d| d.fields.get(ATTACHED_TO))
                        .map(|a| a.to_string().trim_start_matches('@').to_string())
                        .unwrap_or_default();
                    alert(id, &ip, &format!("whitelist address attached to {attached} instead of {want}"));
                    let status = format!("VIOLATED: attached to {attached}, should be {want}; will restore");
                    ((Some(ATTACHED_TO), Some(want), Some(attached.clone())), true, status)
                }
                (Action::Update | Action::Adopt, _) if step.delta.fields.iter().any(|c| c.field == RECORDED) => {
                    ((None, None, None), false, "OK (will be recorded in the ledger)".into())
                }
                (Action::Skip, _) => ((None, None, None), false, step.note.clone().unwrap_or_default()),
                _ => ((None, None, None), false, "OK".into()),
            };
            let pin_hint = if entry.address.is_none() && ip != "-" {
                format!("  (not pinned: guarded through the ledger; pin it with network.whitelist.pool.{id}.address: {ip})")
            } else {
                String::new()
            };
            review.findings.push(Finding {
                class: FindingClass::Whitelist,
                resource: step.key.clone(),
                field: field.map(str::to_string),
                desired,
                live,
                violation,
                message: format!("{id}: {ip} attached to {attached}: {status}{pin_hint}"),
                facts: [("address", ip.clone()), ("attachedTo", attached.clone())].into(),
            });
        }
        for step in steps.iter().filter(|s| s.desired.is_none()) {
            let what = if step.action == Action::Delete {
                "releasable and removed from the spec: will be released"
            } else {
                "removed from the spec: retained (never released unless marked releasable first)"
            };
            review.findings.push(Finding {
                class: FindingClass::Whitelist,
                resource: step.key.clone(),
                field: None,
                desired: None,
                live: None,
                violation: false,
                message: format!("{} ({}): {what}", step.key.id, step.name),
                facts: BTreeMap::new(),
            });
        }
        review
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ec2::operation::allocate_address::{AllocateAddressError, AllocateAddressOutput};
    use aws_sdk_ec2::operation::create_tags::CreateTagsOutput;
    use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
    use aws_smithy_types::error::ErrorMetadata;

    /// Entry whitelist-1, pinned to `address` when given, with its ledger VPC resolved.
    fn entry(address: Option<&str>) -> Desired {
        let mut fields: crate::engine::Fields =
            [(ATTACHED_TO.to_string(), Value::handle("nat-1")), (LEDGER_VPC.to_string(), Value::handle("vpc-1"))].into_iter().collect();
        if let Some(address) = address {
            fields.insert(PINNED.into(), Value::from(address));
        }
        let tags = [(TAG_ENV.to_string(), "prod".to_string())].into();
        Desired { fields, adopt: address.map(|_| Adoption::ByName), ..Desired::new(KIND, "whitelist-1", "sentry-whitelist-1-prod", tags) }
    }

    fn pinned(address: &str) -> Desired {
        entry(Some(address))
    }

    /// AllocateAddress answering `ip` for a request asking for `asked` (None: any address).
    fn allocates(asked: Option<&'static str>, ip: &'static str) -> Rule {
        mock!(Client::allocate_address)
            .match_requests(move |r| r.address() == asked)
            .then_output(move || AllocateAddressOutput::builder().allocation_id("eipalloc-new").public_ip(ip).build())
    }

    /// CreateTags recording `ip` for whitelist-1 on vpc-1.
    fn records(ip: &'static str) -> Rule {
        mock!(Client::create_tags)
            .match_requests(move |r| {
                r.resources() == ["vpc-1"] && r.tags().iter().any(|t| t.key() == Some("sentry:whitelist-ledger/whitelist-1") && t.value() == Some(ip))
            })
            .then_output(|| CreateTagsOutput::builder().build())
    }

    /// A pass's reads in which vpc-1's ledger records `address` for whitelist-1 (or nothing).
    async fn ledger(address: Option<&'static str>) -> ReadCache {
        let describe = mock!(Client::describe_vpcs).then_output(move || {
            let tag = address.map(|a| Tag::builder().key(format!("{LEDGER_TAG_PREFIX}whitelist-1")).value(a).build());
            DescribeVpcsOutput::builder().vpcs(aws_sdk_ec2::types::Vpc::builder().vpc_id("vpc-1").set_tags(Some(tag.into_iter().collect())).build()).build()
        });
        let reads = ReadCache::default();
        super::super::owned_vpcs(&mock_client!(aws_sdk_ec2, [&describe]), "prod", &reads).await.expect("the ledger read");
        reads
    }

    /// A kind with rules answering AllocateAddress for 203.0.113.20 and for
    /// any address (198.51.100.7), and `record`: (kind, recover, fresh, record).
    fn allocating_203_0_113_20_or_any(record: Rule) -> (ElasticIps, Rule, Rule, Rule) {
        let recover = allocates(Some("203.0.113.20"), "203.0.113.20");
        let fresh = allocates(None, "198.51.100.7");
        let kind = ElasticIps { client: mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&recover, &fresh, &record]) };
        (kind, recover, fresh, record)
    }

    // The emulator re-allocates any address it is asked for, so the path where
    // AWS refuses to give a released address back is covered with mocks.
    #[tokio::test]
    async fn an_unrecoverable_release_is_an_invariant_violation_naming_the_address() {
        let refuse = mock!(Client::allocate_address).then_error(|| {
            AllocateAddressError::generic(ErrorMetadata::builder().code("InvalidAddress.NotFound").message("Address 203.0.113.10 is not available").build())
        });
        let kind = ElasticIps { client: mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&refuse]) };
        let e = kind.create(&pinned("203.0.113.10"), "token", &ledger(None).await).await.expect_err("must fail");
        assert_eq!(e.class, ErrorClass::Invariant);
        assert!(e.message.contains("203.0.113.10") && e.message.contains("cannot be recovered"), "{}", e.message);
        assert_eq!(refuse.num_calls(), 1, "exactly one attempt to get the same address back");

        // The same for an unpinned entry guarded by the ledger: exit 3 names the address and the entry.
        let e = kind.create(&entry(None), "token", &ledger(Some("203.0.113.10")).await).await.expect_err("must fail");
        assert_eq!(e.class, ErrorClass::Invariant);
        assert!(e.message.contains("203.0.113.10 (whitelist-1)") && e.message.contains("--reallocate-whitelist whitelist-1"), "{}", e.message);
        assert_eq!(refuse.num_calls(), 2, "asked for the recorded address, never for another");
    }

    #[tokio::test]
    async fn a_released_address_is_recovered_by_address_only_and_recorded() {
        let recover = allocates(Some("203.0.113.10"), "203.0.113.10");
        let record = records("203.0.113.10");
        let kind = ElasticIps { client: mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&recover, &record]) };
        let reads = ledger(None).await;
        assert_eq!(kind.create(&pinned("203.0.113.10"), "token", &reads).await.expect("recovered"), "eipalloc-new");
        assert_eq!((recover.num_calls(), record.num_calls()), (1, 1));
        let e = kind.create(&pinned("eipalloc-gone"), "token", &reads).await.expect_err("an allocation id cannot be re-allocated");
        assert_eq!(e.class, ErrorClass::Invariant);
        assert_eq!(recover.num_calls(), 1, "no AWS call for an allocation-id pin");
    }

    #[tokio::test]
    async fn an_unpinned_entry_in_the_ledger_gets_its_own_address_back() {
        let (kind, recover, fresh, record) = allocating_203_0_113_20_or_any(records("203.0.113.20"));
        kind.create(&entry(None), "token", &ledger(Some("203.0.113.20")).await).await.expect("recovered");
        assert_eq!((recover.num_calls(), fresh.num_calls(), record.num_calls()), (1, 0, 1), "the recorded address, never a new one");
    }

    #[tokio::test]
    async fn a_fresh_address_replaces_a_recorded_one_only_when_asked() {
        let (kind, recover, fresh, record) = allocating_203_0_113_20_or_any(records("198.51.100.7"));
        let asked = entry(None).with(REALLOCATE, "asked");
        kind.create(&asked, "token", &ledger(Some("203.0.113.20")).await).await.expect("allocated");
        assert_eq!((recover.num_calls(), fresh.num_calls(), record.num_calls()), (0, 1, 1), "a new address, recorded in place of the lost one");
    }

    #[tokio::test]
    async fn a_released_allocation_id_pin_with_a_recorded_address_is_a_violation_naming_that_address() {
        let any = allocates(None, "198.51.100.7");
        let kind = ElasticIps { client: mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&any]) };
        let reads = ledger(Some("203.0.113.20")).await;
        let e = kind.create(&pinned("eipalloc-0123456789abcdef0"), "token", &reads).await.expect_err("cannot be re-allocated");
        assert_eq!(e.class, ErrorClass::Invariant);
        assert!(e.message.contains("address: 203.0.113.20"), "{}", e.message);
        assert_eq!(any.num_calls(), 0, "no address allocated");

        // The plan calls it a violation to recover, not a typo that stops every write.
        let mut env = crate::spec::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("specs"), "dev").expect("dev spec");
        if let Some(entry) = env.spec.network.as_mut().and_then(|n| n.whitelist.pool.get_mut("whitelist-1")) {
            entry.address = Some("eipalloc-0123456789abcdef0".into());
        }
        let desired = kind.desired(&env).into_iter().find(|d| d.key.id == "whitelist-1").expect("whitelist-1");
        let step = Step::of(desired, Action::Create);
        let review = kind.review(&env, &[&step], &reads);
        assert!(review.errors.is_empty(), "{:?}", review.errors);
        let lines: Vec<&str> = review.findings.iter().map(|f| f.message.as_str()).collect();
        let lines = lines.join("\n");
        assert!(review.findings.iter().any(|f| f.violation && f.live.is_none() && f.desired.as_deref() == Some("eipalloc-0123456789abcdef0")));
        assert!(lines.contains("whitelist-1: - attached to nothing: VIOLATED"), "{lines}");
    }

    #[test]
    fn the_ledger_reads_both_forms() {
        let tags: Tags = [
            (LEGACY_LEDGER_TAG.to_string(), "whitelist-1=203.0.113.1 whitelist-2=eipalloc-1".to_string()),
            (format!("{LEDGER_TAG_PREFIX}whitelist-2"), "203.0.113.2".to_string()),
            (format!("{LEDGER_TAG_PREFIX}whitelist-3"), "203.0.113.3".to_string()),
            ("Name".to_string(), "sentry-vpc-dev".to_string()),
        ]
        .into_iter()
        .collect();
        let ledger = ledger_of_tags(&tags);
        assert_eq!(ledger.get("whitelist-1").map(String::as_str), Some("203.0.113.1"));
        assert_eq!(ledger.get("whitelist-2").map(String::as_str), Some("203.0.113.2"), "the per-entry tag wins");
        assert_eq!(ledger.get("whitelist-3").map(String::as_str), Some("203.0.113.3"));
        assert_eq!(ledger.len(), 3);
        assert!(ledger_of_tags(&Tags::new()).is_empty());
    }
}

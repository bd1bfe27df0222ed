//! Network ACLs: stateless rules for the subnets each names. Rules and
//! subnet associations are diffed one by one, and the operator owns both: a
//! rule or an association added by hand is removed (a subnet taken out goes
//! back to the VPC's default ACL, as every subnet must have one). AWS's own
//! last rule (32767, deny all) is never shown or touched.

use async_trait::async_trait;
use aws_sdk_ec2::types::{Filter, NetworkAcl, PortRange, ResourceType, RuleAction};
use aws_sdk_ec2::Client;

use super::{additions_first, created_fields, desired, gone_is_ok, network, observed, put_tags, rules, subnet, tag_spec, vpc};
use crate::aws::{required, AwsError, AwsResult};
use crate::engine::focus::EventMatch;
use crate::engine::permissions::{Grant, Permissions};
use crate::engine::{reference, Delta, Desired, FieldChange, FieldReader, Kind, Live, ReadCache, Rules, Scope, Value};
use crate::spec::model::DeletionPolicy;
use crate::spec::network::{parse_port_range, AclRule, Ports};
use crate::spec::{physical_name, EnvSpec};

/// Kind name.
pub const KIND: &str = "ec2.network-acl";

fields! { VPC = "VpcId", INGRESS = "ingress ", EGRESS = "egress ", ASSOCIATION = "association ", ASSOCIATED = "associated" }

/// The rules AWS puts last in every ACL (deny all, IPv4 32767 and IPv6 32768); not the operator's.
const AWS_LAST_RULE: i32 = 32767;

/// The network ACL kind.
pub struct NetworkAcls {
    /// The service's client, shared by the kinds of the service.
    pub client: Client,
}

/// What the kind's calls need of IAM.
#[rustfmt::skip]
const PERMISSIONS: Permissions = Permissions {
    reads: &["ec2:DescribeNetworkAcls"],
    grants: &[Grant::allow("NetworkWrites", &["ec2:CreateNetworkAcl", "ec2:DeleteNetworkAcl", "ec2:CreateNetworkAclEntry", "ec2:ReplaceNetworkAclEntry", "ec2:DeleteNetworkAclEntry", "ec2:ReplaceNetworkAclAssociation", "ec2:CreateTags"], &["*"])],
};

/// A rule as a field value, in words: `allow tcp 443-443 10.0.0.0/16`, `deny all 0.0.0.0/0`.
fn rule_value(action: &str, protocol: &str, ports: Option<(u16, u16)>, cidr: &str) -> Value {
    let ports = ports.map(|(from, to)| Value::text(format!("{from}-{to}")));
    Value::Phrase([action.into(), protocol.into()].into_iter().chain(ports).chain([cidr.into()]).collect())
}

/// The spec's rule as a field value, `vpc` standing for the VPC's CIDR.
fn desired_rule(rule: &AclRule, vpc_cidr: &str) -> Value {
    let ports = match &rule.ports {
        Some(Ports::One(p)) => Some((*p, *p)),
        Some(Ports::Range(r)) => parse_port_range(r),
        None => None,
    };
    let cidr = if rule.cidr == "vpc" { vpc_cidr } else { &rule.cidr };
    rule_value(&rule.action, &rule.protocol, ports, cidr)
}

/// A protocol as the spec names it, from AWS's number.
fn protocol_name(number: &str) -> &str {
    match number {
        "-1" => "all",
        "6" => "tcp",
        "17" => "udp",
        other => other,
    }
}

/// A protocol's number, as AWS takes it.
fn protocol_number(name: &str) -> &str {
    match name {
        "all" => "-1",
        "tcp" => "6",
        "udp" => "17",
        other => other,
    }
}

/// A network ACL's rules and associations (`l` holds its id and tags).
fn normalize(acl: &NetworkAcl, l: Live) -> Option<Live> {
    let mut l = l.with_handle(VPC, acl.vpc_id().unwrap_or_default());
    for e in acl.entries() {
        // IPv6 rules are shown too (the spec writes none, so one added by hand is removed).
        let (Some(number), Some(cidr)) = (e.rule_number(), e.cidr_block().or(e.ipv6_cidr_block())) else { continue };
        if number >= AWS_LAST_RULE {
            continue;
        }
        let prefix = if e.egress() == Some(true) { EGRESS } else { INGRESS };
        let ports = e.port_range().and_then(|r| Some((u16::try_from(r.from()?).ok()?, u16::try_from(r.to()?).ok()?)));
        let action = e.rule_action().map_or("", |a| a.as_str());
        let value = rule_value(action, protocol_name(e.protocol().unwrap_or_default()), ports, cidr);
        l = l.with_entry(prefix, number.to_string(), value);
    }
    for a in acl.associations() {
        if let (Some(subnet), Some(id)) = (a.subnet_id(), a.network_acl_association_id()) {
            l = l.with_entry(ASSOCIATION, Value::handle(subnet), ASSOCIATED);
            l.meta.insert(subnet.into(), id.into());
        }
    }
    Some(l)
}

impl NetworkAcls {
    /// Creates, replaces or deletes the rule a change names.
    async fn set_rule(&self, acl: &str, change: &FieldChange) -> Result<(), AwsError> {
        let egress = change.field.starts_with(EGRESS);
        let number = change.entry_text("EC2.CreateNetworkAclEntry")?;
        let number: i32 = number.parse().map_err(|_| AwsError::unexpected("EC2.CreateNetworkAclEntry", format!("{:?} names no rule number", change.field)))?;
        let Some(value) = &change.desired else {
            let result = self.client.delete_network_acl_entry().network_acl_id(acl).egress(egress).rule_number(number).send().await;
            return gone_is_ok(result.map(|_| ()).aws("EC2.DeleteNetworkAclEntry"));
        };
        let parts: Vec<&str> = value.items().into_iter().filter_map(Value::as_text).collect();
        let (action, protocol, ports, cidr) = match parts.as_slice() {
            [action, protocol, cidr] => (*action, *protocol, None, *cidr),
            [action, protocol, ports, cidr] => (*action, *protocol, parse_port_range(ports), *cidr),
            _ => return Err(AwsError::unexpected("EC2.CreateNetworkAclEntry", format!("{value} is not `action protocol [ports] cidr`"))),
        };
        let range = ports.map(|(from, to)| PortRange::builder().from(i32::from(from)).to(i32::from(to)).build());
        let action = RuleAction::from(action);
        if change.live.is_none() {
            let request = self.client.create_network_acl_entry().network_acl_id(acl).egress(egress).rule_number(number);
            let request = request.protocol(protocol_number(protocol)).rule_action(action.clone()).cidr_block(cidr).set_port_range(range.clone());
            match request.send().await.aws("EC2.CreateNetworkAclEntry") {
                // An earlier attempt whose reply was lost may have made it: replace it with the same rule.
                Err(e) if e.code.as_deref() == Some("NetworkAclEntryAlreadyExists") => {}
                other => return other.map(|_| ()),
            }
        }
        let request = self.client.replace_network_acl_entry().network_acl_id(acl).egress(egress).rule_number(number);
        let request = request.protocol(protocol_number(protocol)).rule_action(action).cidr_block(cidr).set_port_range(range);
        request.send().await.aws("EC2.ReplaceNetworkAclEntry")?;
        Ok(())
    }

    /// Moves `subnet` to the ACL `acl`, from whichever ACL holds it now.
    async fn associate(&self, acl: &str, subnet: &str) -> Result<(), AwsError> {
        let filter = Filter::builder().name("association.subnet-id").values(subnet).build();
        let current = self.client.describe_network_acls().filters(filter).send().await.aws("EC2.DescribeNetworkAcls")?;
        let association = current.network_acls().iter().flat_map(|a| a.associations()).find(|a| a.subnet_id() == Some(subnet));
        if association.is_some_and(|a| a.network_acl_id() == Some(acl)) {
            return Ok(()); // moved already (a retry after a reply was lost)
        }
        let association = required("EC2.DescribeNetworkAcls", "subnet's ACL association", association.and_then(|a| a.network_acl_association_id()))?;
        self.move_association(&association, acl).await
    }

    /// Moves the associations `ids` (of subnets taken out of an ACL) back to the VPC's default ACL.
    async fn release(&self, vpc: &str, ids: &[&String]) -> Result<(), AwsError> {
        if ids.is_empty() {
            return Ok(());
        }
        let filters = [Filter::builder().name("vpc-id").values(vpc).build(), Filter::builder().name("default").values("true").build()];
        let out = self.client.describe_network_acls().set_filters(Some(filters.to_vec())).send().await.aws("EC2.DescribeNetworkAcls")?;
        let default = required("EC2.DescribeNetworkAcls", "default network ACL", out.network_acls().first().and_then(|a| a.network_acl_id()))?;
        for id in ids {
            // An id observed earlier is gone once another ACL took the subnet (or an earlier attempt moved it).
            gone_is_ok(self.move_association(id, &default).await)?;
        }
        Ok(())
    }

    async fn move_association(&self, association: &str, acl: &str) -> Result<(), AwsError> {
        let request = self.client.replace_network_acl_association().association_id(association).network_acl_id(acl);
        request.send().await.aws("EC2.ReplaceNetworkAclAssociation")?;
        Ok(())
    }

    /// Applies field changes: additions first, removals last (make before break).
    async fn apply(&self, acl: &str, live: Option<&Live>, changes: &[FieldChange]) -> Result<(), AwsError> {
        let mut released = Vec::new();
        for change in additions_first(changes) {
            if change.field.starts_with(INGRESS) || change.field.starts_with(EGRESS) {
                self.set_rule(acl, change).await?;
            } else if change.field.starts_with(ASSOCIATION) {
                let subnet = change.entry_text("EC2.ReplaceNetworkAclAssociation")?;
                match (&change.desired, live.and_then(|l| l.meta.get(subnet))) {
                    (Some(_), _) => self.associate(acl, subnet).await?,
                    (None, Some(association)) => released.push(association),
                    (None, None) => {}
                }
            }
        }
        self.release(live.map_or("", |l| l.field(VPC)), &released).await
    }
}

#[async_trait]
impl Kind for NetworkAcls {
    fn rules(&self) -> Rules {
        Rules {
            immutable: &[VPC],
            exclusive: &[INGRESS, EGRESS, ASSOCIATION],
            events: EventMatch::of("ec2.amazonaws.com", &["NetworkAcl"], &["networkAclId", "NetworkAclId"]).marked("acl-"),
            // Not the whitelist guard's: full passes only.
            scope: Scope::Full,
            ..rules(KIND)
                .stands_for(&["AWS::EC2::NetworkAcl", "aws_network_acl"])
                .with_parts(&[
                    ("AWS::EC2::NetworkAclEntry", "a rule of its network ACL"),
                    ("aws_network_acl_rule", "a rule of its network ACL"),
                    ("AWS::EC2::SubnetNetworkAclAssociation", "an association of its network ACL"),
                    ("aws_network_acl_association", "an association of its network ACL"),
                ])
                .needs(PERMISSIONS)
        }
    }

    fn desired(&self, env: &EnvSpec) -> Vec<Desired> {
        let Some(n) = network(env) else { return Vec::new() };
        n.network_acls
            .iter()
            .map(|(id, acl)| {
                let d =
                    desired(env, KIND, id, physical_name(acl.name.as_deref(), id, &env.env), DeletionPolicy::Delete).with_reference(VPC, vpc::KIND, vpc::ID);
                let rules = acl.ingress.iter().map(|r| (INGRESS, r)).chain(acl.egress.iter().map(|r| (EGRESS, r)));
                let d = rules.fold(d, |d, (prefix, r)| d.with_entry(prefix, r.rule.to_string(), desired_rule(r, &n.vpc.cidr)));
                acl.subnets.iter().fold(d, |d, s| d.with_entry(ASSOCIATION, Value::Ref(reference(subnet::KIND, s)), ASSOCIATED).after(subnet::KIND, s))
            })
            .collect()
    }

    async fn observe(&self, env: &EnvSpec, desired: &[Desired], _reads: &ReadCache) -> Result<Vec<Live>, AwsError> {
        observed(&self.client, &env.env, desired, normalize).await
    }

    async fn create(&self, desired: &Desired, token: &str, _reads: &ReadCache) -> Result<String, AwsError> {
        let request = self.client.create_network_acl().vpc_id(desired.field(VPC)).client_token(token);
        let out = request.tag_specifications(tag_spec(ResourceType::NetworkAcl, &desired.tags)).send().await.aws("EC2.CreateNetworkAcl")?;
        let id = required("EC2.CreateNetworkAcl", "network ACL id", out.network_acl().and_then(|a| a.network_acl_id()))?;
        self.apply(&id, None, &created_fields(desired, self.rules().exclusive)).await?;
        Ok(id)
    }

    async fn update(&self, _desired: &Desired, live: &Live, delta: &Delta) -> Result<(), AwsError> {
        self.apply(&live.handle, Some(live), &delta.fields).await?;
        put_tags(&self.client, &live.handle, &delta.tags).await
    }

    async fn delete(&self, live: &Live, _reads: &ReadCache) -> Result<(), AwsError> {
        let associations: Vec<&String> = live.meta.values().collect();
        self.release(live.field(VPC), &associations).await?;
        let result = self.client.delete_network_acl().network_acl_id(&live.handle).send().await;
        gone_is_ok(result.map(|_| ()).aws("EC2.DeleteNetworkAcl"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ec2::types::{NetworkAclAssociation, NetworkAclEntry};

    #[test]
    fn rules_read_back_as_the_spec_writes_them_and_aws_last_rule_is_not_shown() {
        let entry = |number: i32, egress: bool, protocol: &str, ports: Option<(i32, i32)>| {
            NetworkAclEntry::builder()
                .rule_number(number)
                .egress(egress)
                .protocol(protocol)
                .rule_action(RuleAction::Allow)
                .cidr_block("0.0.0.0/0")
                .set_port_range(ports.map(|(f, t)| PortRange::builder().from(f).to(t).build()))
                .build()
        };
        let acl = NetworkAcl::builder()
            .network_acl_id("acl-1")
            .vpc_id("vpc-1")
            .entries(entry(100, false, "6", Some((443, 443))))
            .entries(entry(110, false, "17", Some((1024, 65535))))
            .entries(entry(100, true, "-1", None))
            .entries(entry(AWS_LAST_RULE, true, "-1", None))
            .entries(NetworkAclEntry::builder().rule_number(120).egress(false).protocol("-1").rule_action(RuleAction::Allow).ipv6_cidr_block("::/0").build())
            .entries(
                NetworkAclEntry::builder()
                    .rule_number(AWS_LAST_RULE + 1)
                    .egress(false)
                    .protocol("-1")
                    .rule_action(RuleAction::Deny)
                    .ipv6_cidr_block("::/0")
                    .build(),
            )
            .associations(NetworkAclAssociation::builder().subnet_id("subnet-1").network_acl_association_id("aclassoc-1").build())
            .build();
        let live = normalize(&acl, Live::default()).expect("an ACL");
        let rule = |family: &str, number: &str| {
            let entries = live.fields.get(family).map_or(&[][..], Value::entries);
            entries.iter().find(|(k, _)| *k == number).map(|(_, v)| v.to_string()).unwrap_or_default()
        };
        assert_eq!(rule(INGRESS, "100"), "allow tcp 443-443 0.0.0.0/0");
        assert_eq!(rule(INGRESS, "110"), "allow udp 1024-65535 0.0.0.0/0");
        assert_eq!(rule(EGRESS, "100"), "allow all 0.0.0.0/0");
        assert!(rule(EGRESS, "32767").is_empty() && rule(INGRESS, "32768").is_empty(), "AWS's own last rules are not the operator's");
        assert_eq!(rule(INGRESS, "120"), "allow all ::/0", "an IPv6 rule is shown, so one added by hand is removed");
        assert_eq!((rule(ASSOCIATION, "subnet-1"), live.meta.get("subnet-1").map(String::as_str)), ("associated".to_string(), Some("aclassoc-1")));

        let spec = |ports: Option<Ports>, cidr: &str| AclRule { rule: 100, protocol: "tcp".into(), ports, cidr: cidr.into(), action: "allow".into() };
        assert_eq!(desired_rule(&spec(Some(Ports::One(443)), "0.0.0.0/0"), "10.0.0.0/16").to_string(), "allow tcp 443-443 0.0.0.0/0");
        assert_eq!(desired_rule(&spec(Some(Ports::Range("1024-65535".into())), "vpc"), "10.0.0.0/16").to_string(), "allow tcp 1024-65535 10.0.0.0/16");
    }
}

//! Security-group rules, diffed rule by rule: a rule added out of band is
//! revoked, a missing one authorized, new rules before stale ones are revoked
//! (make before break), and only the delta is touched.
//!
//! The rules are two families, `ingress ` and `egress `, of entries keyed by
//! the words `<tcp|udp|icmp|all> <ports|all> <peer>`, the peer being a CIDR
//! or a security-group reference.

use crate::engine::focus::EventMatch;
use crate::engine::permissions::{Grant, Permissions};
use async_trait::async_trait;
use aws_sdk_ec2::types::{IpPermission, IpRange, SecurityGroup, UserIdGroupPair};
use aws_sdk_ec2::Client;

use super::{created_fields, desired, live, network, rules, security_group, tag_map};
use crate::aws::{AwsError, AwsResult, ErrorClass};
use crate::engine::{reference, Delta, Desired, FieldReader, Importing, Kind, Live, Matching, ReadCache, Rendering, Rules, Value};
use crate::spec::model::{DeletionPolicy, Ports, Rule, Spec};
use crate::spec::network::parse_port_range;
use crate::spec::{physical_name, EnvSpec};

/// Kind name.
pub const KIND: &str = "ec2.security-group-rules";

fields! { GROUP = "GroupId", INGRESS = "ingress ", EGRESS = "egress ", ALLOW = "allow" }
/// The egress rule AWS gives every new group.
const DEFAULT_EGRESS: [&str; 3] = ["all", "all", "0.0.0.0/0"];
/// The words of [`DEFAULT_EGRESS`] as an entry.
fn default_egress() -> Value {
    Value::Phrase(DEFAULT_EGRESS.iter().map(|w| Value::text(*w)).collect())
}
/// Handles of this kind are the group id behind this prefix, so they never
/// collide with the group's own handle in the reference map.
const HANDLE_PREFIX: &str = "rules:";

/// The security-group-rules kind.
pub struct SecurityGroupRules {
    /// The service's client, shared by the kinds of the service.
    pub client: Client,
}

/// What to do with one rule.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Change {
    Authorize,
    Revoke,
}

impl SecurityGroupRules {
    /// Authorizes or revokes one rule; a change already made is not an error.
    async fn change(&self, group: &str, egress: bool, rule: &[&str], change: Change) -> Result<(), AwsError> {
        let p = permission(rule)?;
        let c = &self.client;
        let result = match (change, egress) {
            (Change::Authorize, true) => {
                c.authorize_security_group_egress().group_id(group).ip_permissions(p).send().await.map(drop).aws("EC2.AuthorizeSecurityGroupEgress")
            }
            (Change::Authorize, false) => {
                c.authorize_security_group_ingress().group_id(group).ip_permissions(p).send().await.map(drop).aws("EC2.AuthorizeSecurityGroupIngress")
            }
            (Change::Revoke, true) => {
                c.revoke_security_group_egress().group_id(group).ip_permissions(p).send().await.map(drop).aws("EC2.RevokeSecurityGroupEgress")
            }
            (Change::Revoke, false) => {
                c.revoke_security_group_ingress().group_id(group).ip_permissions(p).send().await.map(drop).aws("EC2.RevokeSecurityGroupIngress")
            }
        };
        let done_already = |e: &AwsError| match change {
            Change::Authorize => e.code.as_deref() == Some("InvalidPermission.Duplicate"),
            Change::Revoke => e.class == ErrorClass::NotFound || e.code.as_deref() == Some("InvalidPermission.NotFound"),
        };
        match result {
            Err(e) if done_already(&e) => Ok(()),
            other => other,
        }
    }
}

/// The entry of a spec rule in its family: its words.
fn rule_entry(rule: &Rule, vpc_cidr: &str) -> Value {
    let ports = match &rule.ports {
        None => "all".to_string(),
        Some(Ports::One(p)) => p.to_string(),
        Some(Ports::Range(r)) => match parse_port_range(r) {
            Some((a, b)) if a == b => a.to_string(),
            Some((a, b)) => format!("{a}-{b}"),
            None => r.clone(),
        },
    };
    let peer = match (&rule.cidr, &rule.source_group) {
        (Some(c), _) if c == "vpc" => Value::text(vpc_cidr),
        (Some(c), _) => Value::text(c),
        (None, Some(g)) => Value::Ref(reference(security_group::KIND, g)),
        (None, None) => Value::text(""),
    };
    Value::Phrase(vec![Value::text(&rule.protocol), Value::text(ports), peer])
}

/// The rules of a live group: each with its family.
fn live_rules(group: &SecurityGroup) -> Vec<(&'static str, Value)> {
    let mut rules = Vec::new();
    for (family, permissions) in [(INGRESS, group.ip_permissions()), (EGRESS, group.ip_permissions_egress())] {
        for p in permissions {
            let protocol = match p.ip_protocol().unwrap_or("-1") {
                "-1" => "all",
                "6" | "tcp" => "tcp",
                "17" | "udp" => "udp",
                "1" | "icmp" => "icmp",
                other => other,
            };
            let ports = match (p.from_port(), p.to_port()) {
                _ if protocol == "all" => "all".to_string(),
                (None, _) | (Some(-1), _) => "all".to_string(),
                (Some(a), Some(b)) if a != b => format!("{a}-{b}"),
                (Some(a), _) => a.to_string(),
            };
            let peers = p
                .ip_ranges()
                .iter()
                .filter_map(|r| r.cidr_ip().map(Value::text))
                .chain(p.user_id_group_pairs().iter().filter_map(|g| g.group_id().map(Value::handle)))
                .chain(p.ipv6_ranges().iter().filter_map(|r| r.cidr_ipv6().map(|c| Value::text(format!("ipv6:{c}")))))
                .chain(p.prefix_list_ids().iter().filter_map(|l| l.prefix_list_id().map(|c| Value::text(format!("pl:{c}")))));
            rules.extend(peers.map(|peer| (family, Value::Phrase(vec![Value::text(protocol), Value::text(&ports), peer]))));
        }
    }
    rules
}

/// The EC2 permission of a rule's words.
fn permission(rule: &[&str]) -> Result<IpPermission, AwsError> {
    let bad = || AwsError::unexpected("EC2.AuthorizeSecurityGroupIngress", format!("cannot express rule {rule:?}"));
    let [protocol, ports, peer] = rule[..] else { return Err(bad()) };
    let mut p = IpPermission::builder().ip_protocol(if protocol == "all" { "-1" } else { protocol });
    if protocol != "all" {
        let (from, to) = match ports {
            "all" if protocol == "icmp" => (-1, -1),
            "all" => (0, 65535),
            _ => parse_port_range(ports).map(|(a, b)| (i32::from(a), i32::from(b))).ok_or_else(bad)?,
        };
        p = p.from_port(from).to_port(to);
    }
    p = if peer.starts_with("sg-") {
        p.user_id_group_pairs(UserIdGroupPair::builder().group_id(peer).build())
    } else {
        p.ip_ranges(IpRange::builder().cidr_ip(peer).build())
    };
    Ok(p.build())
}

/// The spec's rule of a live rule's words (its peer in spec form).
fn spec_rule(rule: &Value) -> Result<Rule, String> {
    let words = rule.items();
    let [protocol, ports, peer] = words.as_slice() else { return Err(format!("rule {rule} is not `protocol ports peer`")) };
    let ports = match ports.as_text().unwrap_or_default() {
        "all" => None,
        range if range.contains('-') => Some(Ports::Range(range.to_string())),
        one => Some(Ports::One(one.parse().map_err(|_| format!("rule {rule} has no ports"))?)),
    };
    let (cidr, source_group) = match (peer.id_of(security_group::KIND), peer.as_text().unwrap_or_default()) {
        (Some(group), _) => (None, Some(group.to_string())),
        (None, text) if text.starts_with("ipv6:") || text.starts_with("pl:") => {
            return Err("IPv6 and prefix-list rules are not in the spec language; they would be revoked".into());
        }
        (None, text) if text.starts_with("sg-") => return Err(format!("a rule names group {text}, which is not in the stacks")),
        (None, text) => (Some(text.to_string()), None),
    };
    Ok(Rule { protocol: protocol.as_text().unwrap_or_default().to_string(), ports, cidr, source_group, description: None })
}

/// The rules of a live group, under a handle of their own, named like the group.
fn rules_live(g: &SecurityGroup) -> Option<Live> {
    let id = g.group_id()?;
    let mut tags = tag_map(g.tags());
    tags.remove("Name");
    let l = live(&format!("{HANDLE_PREFIX}{id}"), tags).with_handle(GROUP, id);
    let l = live_rules(g).into_iter().fold(l, |l, (family, rule)| l.with_entry(family, rule, ALLOW));
    Some(Live { name: g.group_name().unwrap_or_default().into(), ..l })
}

/// What the kind's calls need of IAM.
#[rustfmt::skip]
const PERMISSIONS: Permissions = Permissions {
    reads: &["ec2:DescribeVpcs", "ec2:DescribeNatGateways", "ec2:DescribeSecurityGroups"],
    grants: &[Grant::allow("NetworkWrites", &["ec2:AuthorizeSecurityGroupIngress", "ec2:AuthorizeSecurityGroupEgress", "ec2:RevokeSecurityGroupIngress", "ec2:RevokeSecurityGroupEgress", "ec2:CreateTags"], &["*"])],
};

#[async_trait]
impl Kind for SecurityGroupRules {
    fn rules(&self) -> Rules {
        Rules {
            matching: Matching::Custom,
            immutable: &[GROUP],
            exclusive: &[INGRESS, EGRESS],
            events: EventMatch::of("ec2.amazonaws.com", &["SecurityGroup"], &["groupId", "GroupId"]).marked("sg-"),
            ..rules(KIND)
                .with_parts(&[
                    ("AWS::EC2::SecurityGroupIngress", "a rule of its security group"),
                    ("aws_security_group_rule", "a rule of its security group"),
                    ("aws_vpc_security_group_ingress_rule", "a rule of its security group"),
                    ("AWS::EC2::SecurityGroupEgress", "a rule of its security group"),
                    ("aws_vpc_security_group_egress_rule", "a rule of its security group"),
                ])
                .needs(PERMISSIONS)
                .imported_with(security_group::KIND)
        }
    }

    fn desired(&self, env: &EnvSpec) -> Vec<Desired> {
        let Some(n) = network(env) else { return Vec::new() };
        n.security_groups
            .iter()
            .map(|(id, sg)| {
                let mut d = desired(env, KIND, id, physical_name(sg.name.as_deref(), id, &env.env), DeletionPolicy::Delete).with_reference(
                    GROUP,
                    security_group::KIND,
                    id,
                );
                d.tags.clear(); // the tags belong to the group, which the group kind keeps
                let ingress = sg.ingress.iter().map(|rule| (INGRESS, rule_entry(rule, &n.vpc.cidr)));
                let egress: Vec<(&str, Value)> = match &sg.egress {
                    Some(rules) => rules.iter().map(|rule| (EGRESS, rule_entry(rule, &n.vpc.cidr))).collect(),
                    None => vec![(EGRESS, default_egress())],
                };
                let d = ingress.chain(egress).fold(d, |d, (family, rule)| d.with_entry(family, rule, ALLOW));
                let peers = sg.ingress.iter().chain(sg.egress.iter().flatten()).filter_map(|r| r.source_group.as_deref());
                peers.fold(d, |d, peer| d.after(security_group::KIND, peer))
            })
            .collect()
    }

    /// The rules of the group its group's kind wrote; a peer group outside
    /// the stacks, IPv6 and prefix-list rules are not in the spec language.
    fn to_spec(&self, id: &str, live: &Live, spec: &mut Spec, _importing: &Importing) -> Result<Rendering, String> {
        let group = spec.network.as_mut().and_then(|n| n.security_groups.get_mut(id)).ok_or("its group is not imported")?;
        let mut unsaid = Vec::new();
        let mut rules = |family: &str| -> Vec<Rule> {
            let entries = live.fields.get(family).map_or(&[][..], Value::entries);
            entries.iter().filter_map(|(rule, _)| spec_rule(rule).map_err(|why| unsaid.push(why)).ok()).collect()
        };
        let (ingress, egress) = (rules(INGRESS), rules(EGRESS));
        let default_egress = matches!(egress.as_slice(), [r] if r.protocol == "all" && r.ports.is_none() && r.cidr.as_deref() == Some("0.0.0.0/0"));
        group.ingress = ingress;
        group.egress = (!default_egress).then_some(egress);
        Ok(Rendering::without(unsaid))
    }

    async fn observe(&self, env: &EnvSpec, desired: &[Desired], reads: &ReadCache) -> Result<Vec<Live>, AwsError> {
        let groups = super::owned_security_groups(&self.client, &env.env, reads).await?;
        let adopted = super::adopted_security_groups(&self.client, desired, &groups).await?;
        Ok(groups.security_groups().iter().chain(&adopted).filter_map(rules_live).collect())
    }

    /// The rules of a group this environment owns, or of the group the spec
    /// adopts for them (`adopt: { ec2.security-group-rules/<id>: { id: sg-… } }`).
    fn matches(&self, env: &str, desired: &Desired, live: &Live) -> bool {
        live.is_owned_as(env, &desired.key.id) || desired.adopted_id() == Some(live.field(GROUP))
    }

    async fn create(&self, desired: &Desired, _token: &str, _reads: &ReadCache) -> Result<String, AwsError> {
        let group = desired.field(GROUP);
        for rule in created_fields(desired, self.rules().exclusive) {
            self.change(group, rule.field.starts_with(EGRESS), &rule.entry_words("EC2.AuthorizeSecurityGroupIngress")?, Change::Authorize).await?;
        }
        if !desired.fields.get(EGRESS).is_some_and(|e| e.entries().iter().any(|(rule, _)| *rule == default_egress())) {
            self.change(group, true, &DEFAULT_EGRESS, Change::Revoke).await?;
        }
        Ok(format!("{HANDLE_PREFIX}{group}"))
    }

    async fn update(&self, desired: &Desired, live: &Live, delta: &Delta) -> Result<(), AwsError> {
        let group = desired.fields.get(GROUP).and_then(Value::as_text).unwrap_or_else(|| live.handle.trim_start_matches(HANDLE_PREFIX));
        for add in delta.fields.iter().filter(|c| c.desired.is_some() && c.field != GROUP) {
            self.change(group, add.field.starts_with(EGRESS), &add.entry_words("EC2.AuthorizeSecurityGroupIngress")?, Change::Authorize).await?;
        }
        for stale in delta.fields.iter().filter(|c| c.desired.is_none()) {
            tracing::warn!(group = %desired.name, rule = %stale.field, "revoking a security-group rule that is not in the spec");
            self.change(group, stale.field.starts_with(EGRESS), &stale.entry_words("EC2.RevokeSecurityGroupIngress")?, Change::Revoke).await?;
        }
        Ok(()) // tags live on the group; the group kind keeps them
    }

    async fn delete(&self, _live: &Live, _reads: &ReadCache) -> Result<(), AwsError> {
        Ok(()) // the rules go with their group
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_fields_round_trip_to_permissions() {
        let p = permission(&["tcp", "6379", "sg-123"]).expect("rule");
        assert_eq!((p.ip_protocol(), p.from_port(), p.to_port()), (Some("tcp"), Some(6379), Some(6379)));
        assert_eq!(p.user_id_group_pairs()[0].group_id(), Some("sg-123"));
        let p = permission(&DEFAULT_EGRESS).expect("rule");
        assert_eq!((p.ip_protocol(), p.from_port()), (Some("-1"), None));
        let peer = Value::Phrase(vec!["tcp".into(), "80".into(), Value::Ref("@ec2.security-group/alb".into())]);
        let unresolved = crate::engine::FieldChange { field: INGRESS.into(), entry: Some(peer), live: None, desired: Some(Value::text("")) };
        let refused = unresolved.entry_words("EC2.AuthorizeSecurityGroupIngress").expect_err("unresolved peers are refused");
        assert!(refused.to_string().contains("@ec2.security-group/alb does not exist"), "{refused}");
    }

    #[test]
    fn spec_rules_become_fields() {
        let rule =
            Rule { protocol: "tcp".into(), ports: Some(Ports::Range("8000-8010".into())), cidr: Some("vpc".into()), source_group: None, description: None };
        assert_eq!(rule_entry(&rule, "10.0.0.0/16").to_string(), "tcp 8000-8010 10.0.0.0/16");
        let rule = Rule { protocol: "all".into(), ports: None, cidr: None, source_group: Some("alb".into()), description: None };
        assert_eq!(rule_entry(&rule, ""), Value::Phrase(vec!["all".into(), "all".into(), Value::Ref("@ec2.security-group/alb".into())]));
    }
}

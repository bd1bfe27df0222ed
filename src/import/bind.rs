//! Binding an import to a spec that exists already (`import --specs DIR
//! --write`): each live resource found is matched to the spec resource that
//! describes it, and the spec gains the `adopt` entries — never two spec
//! entries for one live resource.
//!
//! The rules, and what is not guessed:
//! - the VPC, the internet gateway and the flow log: the one of each;
//! - subnets by CIDR; route tables by the subnets they serve; NAT gateways
//!   by the subnet they sit in; endpoints by service;
//! - whitelist addresses: a NAT gateway's address binds to the pool entry the
//!   spec gives that NAT gateway; the others to the entry pinned to the same
//!   address, else to the spec's unpinned entries in order;
//! - everything with a name (security groups and their rules, queues, tables,
//!   Redis and its subnet group, log groups, clusters, the user pool, its
//!   groups and app clients) by the physical name the spec gives it.
//!
//! A live resource no spec resource describes is listed, not added: the spec
//! is the user's to extend.

use std::collections::{BTreeMap, BTreeSet};

use crate::kinds::cognito;
use crate::kinds::dynamodb;
use crate::kinds::ec2::{elastic_ip, flow_log, internet_gateway, nat_gateway, route_table, security_group, security_group_rules, subnet, vpc, vpc_endpoint};
use crate::kinds::ecs;
use crate::kinds::elasticache;
use crate::kinds::logs;
use crate::kinds::sqs;
use crate::spec::model::{AdoptTarget, Spec};
use crate::spec::{physical_name, EnvSpec};

/// The adopt entries for an existing spec, and what found no place in it.
#[derive(Debug, Default)]
pub struct Binding {
    /// `kind/id` of the existing spec → the live resource.
    pub adopt: BTreeMap<String, AdoptTarget>,
    /// Imported resources no resource of the spec describes.
    pub unbound: Vec<String>,
}

/// Physical names of one spec's name-keyed resources: (kind, name) → id.
fn names(spec: &Spec, env: &str) -> BTreeMap<(&'static str, String), String> {
    let mut out = BTreeMap::new();
    if let Some(n) = &spec.network {
        for (id, g) in &n.security_groups {
            let name = physical_name(g.name.as_deref(), id, env);
            out.insert((security_group::KIND, name.clone()), id.clone());
            out.insert((security_group_rules::KIND, name), id.clone());
        }
    }
    if let Some(m) = &spec.messaging {
        out.extend(m.queues.iter().map(|(id, q)| ((sqs::KIND, q.physical_name(id, env)), id.clone())));
    }
    if let Some(d) = &spec.data {
        out.extend(d.tables.iter().map(|(id, t)| ((dynamodb::KIND, physical_name(t.name.as_deref(), id, env)), id.clone())));
        if let Some(r) = &d.redis {
            let name = physical_name(r.name.as_deref(), elasticache::replication_group::ID, env);
            out.insert((elasticache::replication_group::KIND, name.clone()), elasticache::replication_group::ID.to_string());
            out.insert((elasticache::subnet_group::KIND, name), elasticache::subnet_group::ID.to_string());
        }
    }
    if let Some(o) = &spec.observability {
        out.extend(o.log_groups.iter().map(|(id, g)| ((logs::KIND, g.name.replace("${env}", env)), id.clone())));
    }
    if let Some(c) = &spec.compute {
        out.extend(c.clusters.iter().map(|(id, cl)| ((ecs::cluster::KIND, physical_name(cl.name.as_deref(), id, env)), id.clone())));
    }
    if let Some(i) = &spec.identity {
        let p = &i.user_pool;
        let pool = p.name.as_deref().map(|n| n.replace("${env}", env)).unwrap_or_else(|| format!("sentry-users-{env}"));
        out.insert((cognito::user_pool::KIND, pool), cognito::user_pool::ID.to_string());
        out.extend(p.groups.keys().map(|g| ((cognito::group::KIND, g.clone()), g.clone())));
        out.extend(p.app_clients.iter().map(|(id, c)| ((cognito::app_client::KIND, physical_name(c.name.as_deref(), id, env)), id.clone())));
    }
    out
}

/// Binds `imported` (a spec written by `import`, with its adopt entries) to
/// `existing`: the adopt entries `existing` needs, keyed by its own ids.
pub fn bind(existing: &EnvSpec, imported: &Spec) -> Result<Binding, String> {
    let env = existing.env.as_str();
    let (ours, theirs) = (names(&existing.spec, env), names(imported, env));
    let mut by_imported: BTreeMap<(&str, String), String> = BTreeMap::new(); // (kind, imported id) -> existing id
    for ((kind, name), imported_id) in &theirs {
        if let Some(id) = ours.get(&(*kind, name.clone())) {
            by_imported.insert((kind, imported_id.clone()), id.clone());
        }
    }
    if let (Some(mine), Some(found)) = (&existing.spec.network, &imported.network) {
        for single in [(vpc::KIND, vpc::ID), (internet_gateway::KIND, internet_gateway::ID), (flow_log::KIND, vpc::ID)] {
            by_imported.insert((single.0, single.1.to_string()), single.1.to_string());
        }
        let subnets: BTreeMap<String, String> =
            found.subnets.iter().filter_map(|(fid, f)| Some((fid.clone(), mine.subnets.iter().find(|(_, m)| m.cidr == f.cidr)?.0.clone()))).collect();
        for (fid, mid) in &subnets {
            by_imported.insert((subnet::KIND, fid.clone()), mid.clone());
        }
        // A route table binds to the spec's table serving the same subnets.
        let served = |t: &crate::spec::model::TableLayout, map: &dyn Fn(&str) -> Option<String>| -> BTreeSet<String> {
            t.subnets.iter().filter_map(|s| map(s)).collect()
        };
        let mine_tables = mine.route_table_layout(env);
        for f in found.route_table_layout(env) {
            let theirs = served(&f, &|s| subnets.get(s).cloned());
            if let Some(m) = mine_tables.iter().find(|m| !theirs.is_empty() && served(m, &|s| Some(s.to_string())) == theirs) {
                by_imported.insert((route_table::KIND, f.id.clone()), m.id.clone());
            }
        }
        let mut pool: BTreeMap<String, String> = BTreeMap::new(); // imported pool entry -> existing entry
        for (fid, f) in &found.nat_gateways {
            let bound = subnets.get(&f.subnet).and_then(|s| mine.nat_gateways.iter().find(|(_, m)| m.subnet == *s));
            if let Some((mid, m)) = bound {
                by_imported.insert((nat_gateway::KIND, fid.clone()), mid.clone());
                // An address the spec pins elsewhere is never bound over the pin.
                let pinned = mine.whitelist.pool.get(&m.elastic_ip).and_then(|e| e.address.as_ref());
                let address = found.whitelist.pool.get(&f.elastic_ip).and_then(|e| e.address.as_ref());
                if pinned.is_some_and(|p| Some(p) != address) {
                    return Err(format!(
                        "NAT gateway {mid} sits on {} but the spec pins its address {} to {}; fix the pin or bind by hand",
                        address.map_or("?", String::as_str),
                        m.elastic_ip,
                        pinned.map_or("?", String::as_str)
                    ));
                }
                pool.insert(f.elastic_ip.clone(), m.elastic_ip.clone());
            }
        }
        for (fid, f) in &found.whitelist.pool {
            if pool.contains_key(fid) {
                continue;
            }
            let taken: BTreeSet<&String> = pool.values().collect();
            let same = mine.whitelist.pool.iter().find(|(mid, m)| !taken.contains(mid) && m.address.is_some() && m.address == f.address);
            let free = mine.whitelist.pool.iter().find(|(mid, m)| !taken.contains(mid) && m.address.is_none());
            if let Some((mid, _)) = same.or(free) {
                pool.insert(fid.clone(), mid.clone());
            }
        }
        for (fid, mid) in pool {
            by_imported.insert((elastic_ip::KIND, fid), mid);
        }
        for (fid, f) in &found.endpoints {
            if let Some((mid, _)) = mine.endpoints.iter().find(|(_, m)| m.service == f.service) {
                by_imported.insert((vpc_endpoint::KIND, fid.clone()), mid.clone());
            }
        }
    }

    let mut binding = Binding::default();
    let mut bound_to: BTreeMap<String, String> = BTreeMap::new(); // existing key -> imported key
                                                                  // Pins are how import names whitelist addresses; here they become adopt entries.
    let pins =
        imported.network.iter().flat_map(|n| n.whitelist.pool.iter()).filter_map(|(id, a)| Some((format!("{}/{id}", elastic_ip::KIND), a.address.clone()?)));
    let entries: Vec<(String, AdoptTarget)> =
        imported.adopt.clone().into_iter().chain(pins.map(|(key, address)| (key, AdoptTarget { id: Some(address), ..AdoptTarget::default() }))).collect();
    for (key, target) in entries {
        let Some((kind, id)) = key.split_once('/') else { continue };
        let Some(mine) = by_imported.iter().find(|((k, i), _)| *k == kind && i == id).map(|(_, m)| m.clone()) else {
            binding.unbound.push(format!("{key} ({}): no resource of the spec describes it", target.id.as_deref().unwrap_or("by name")));
            continue;
        };
        let existing_key = format!("{kind}/{mine}");
        if let Some(other) = bound_to.insert(existing_key.clone(), key.clone()) {
            return Err(format!("{existing_key} would adopt two live resources ({other} and {key} of the import); bind them by hand"));
        }
        binding.adopt.insert(existing_key, target);
    }
    Ok(binding)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> EnvSpec {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("dev.yaml"), text).expect("write");
        crate::spec::load(dir.path(), "dev").expect("a valid spec")
    }

    const NETWORK: &str = "  vpc: { cidr: 10.0.0.0/16 }\n  availabilityZones: [us-east-1a]\n";

    #[test]
    fn found_resources_bind_to_the_spec_ids_that_describe_them() {
        let existing = load(&format!(
            "network:\n{NETWORK}  subnets:\n    public-a: {{ tier: public, az: us-east-1a, cidr: 10.0.0.0/24 }}\n    private-a: {{ tier: private, az: us-east-1a, cidr: 10.0.10.0/24 }}\n  whitelist: {{ pool: {{ whitelist-1: {{}}, whitelist-2: {{}} }} }}\n  natGateways: {{ nat-a: {{ subnet: public-a, elasticIp: whitelist-2 }} }}\n  securityGroups: {{ oms: {{ description: OMS }} }}\nmessaging:\n  queues:\n    orders: {{ name: \"master-order-queue-${{env}}.fifo\", fifo: true }}\n"
        ));
        let imported = load(&format!(
            "network:\n{NETWORK}  subnets:\n    public-subnet-a: {{ tier: public, az: us-east-1a, cidr: 10.0.0.0/24 }}\n    private-subnet-a: {{ tier: private, az: us-east-1a, cidr: 10.0.10.0/24 }}\n  whitelist: {{ pool: {{ eip-1: {{ address: eipalloc-11111111 }}, eip-2: {{ address: eipalloc-22222222 }} }} }}\n  natGateways: {{ nat-gw: {{ subnet: public-subnet-a, elasticIp: eip-1 }} }}\n  securityGroups: {{ oms-sg: {{ name: sentry-oms-dev, description: OMS }} }}\nmessaging:\n  queues:\n    master-order: {{ name: master-order-queue-dev.fifo, fifo: true }}\n    extra: {{ name: extra-dev }}\nadopt:\n  ec2.vpc/vpc: {{ id: vpc-1 }}\n  ec2.subnet/public-subnet-a: {{ id: subnet-1 }}\n  ec2.subnet/private-subnet-a: {{ id: subnet-2 }}\n  ec2.route-table/public: {{ id: rtb-1 }}\n  ec2.route-table/private-subnet-a: {{ id: rtb-2 }}\n  ec2.nat-gateway/nat-gw: {{ id: nat-1 }}\n  ec2.security-group/oms-sg: {{ id: sg-1 }}\n  ec2.security-group-rules/oms-sg: {{ id: sg-1 }}\n  sqs.queue/master-order: {{}}\n  sqs.queue/extra: {{}}\n"
        ));
        let binding = bind(&existing, &imported.spec).expect("binds");
        let id = |key: &str| binding.adopt.get(key).map(|t| t.id.clone().unwrap_or_else(|| "by name".into()));
        assert_eq!(id("ec2.vpc/vpc").as_deref(), Some("vpc-1"));
        assert_eq!(id("ec2.subnet/public-a").as_deref(), Some("subnet-1"), "by CIDR");
        assert_eq!(id("ec2.route-table/private-a").as_deref(), Some("rtb-2"), "with its subnet");
        assert_eq!(id("ec2.nat-gateway/nat-a").as_deref(), Some("nat-1"), "by its subnet");
        assert_eq!(id("ec2.elastic-ip/whitelist-2").as_deref(), Some("eipalloc-11111111"), "the NAT gateway's address to the spec's NAT entry");
        assert_eq!(id("ec2.elastic-ip/whitelist-1").as_deref(), Some("eipalloc-22222222"), "the spare to the free entry");
        assert_eq!(id("ec2.security-group-rules/oms").as_deref(), Some("sg-1"), "by name");
        assert_eq!(id("sqs.queue/orders").as_deref(), Some("by name"));
        assert_eq!(binding.adopt.len(), 11, "{:?}", binding.adopt.keys());
        assert_eq!(binding.unbound.len(), 1, "{:?}", binding.unbound);
        assert!(binding.unbound[0].starts_with("sqs.queue/extra"), "{:?}", binding.unbound);
    }
}

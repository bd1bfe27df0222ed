//! The reference map: live physical ids ("handles": a subnet id, a queue
//! URL, an ARN) to and from the spec's references (`@ec2.subnet/private-a`).
//! Live fields are turned into references before diffing, so a subnet's
//! `VpcId` compares without knowing the VPC's id; desired fields are turned
//! into handles before writing.

use std::collections::HashMap;

use super::plan::Pair;
use super::{reference, Fields, Ownership, ResourceKey, Value};

/// The handles the passes of one environment learnt, shared by its loops: a
/// pass over a few kinds resolves references to the others through them.
pub type KnownHandles = std::sync::Arc<std::sync::Mutex<ReferenceMap>>;

/// The two-way map between live physical ids (handles) and references.
#[derive(Clone, Debug, Default)]
pub struct ReferenceMap {
    to_ref: HashMap<String, String>,
    to_handle: HashMap<String, String>,
}

impl ReferenceMap {
    /// Learns every handle of `pairs` that belongs to a resource of the spec
    /// (matched to a desired one, or owned by this environment).
    pub fn learn_pairs<'a>(&mut self, pairs: impl Iterator<Item = &'a Pair>) {
        for p in pairs {
            let Some(l) = &p.live else { continue };
            let id = match (&p.desired, l.ownership()) {
                (Some(d), _) => d.key.id.clone(),
                (None, Ownership::Managed { id, .. }) => id,
                (None, _) => continue,
            };
            self.learn(&ResourceKey { kind: p.kind, id }, &l.handle);
        }
    }

    /// Records that `key` now has physical id `handle`.
    pub fn learn(&mut self, key: &ResourceKey, handle: &str) {
        if handle.is_empty() {
            return;
        }
        let r = reference(key.kind, &key.id);
        self.to_ref.insert(handle.to_string(), r.clone());
        self.to_handle.insert(r, handle.to_string());
    }

    /// The handle `key` was last known by.
    pub fn handle_of(&self, key: &ResourceKey) -> Option<String> {
        self.to_handle.get(&reference(key.kind, &key.id)).cloned()
    }

    /// What this map knows of resources of kinds other than `kinds`.
    pub fn without_kinds(&self, kinds: &std::collections::BTreeSet<&str>) -> ReferenceMap {
        let other = |r: &str| !kinds.contains(kind_of(r));
        ReferenceMap {
            to_ref: self.to_ref.iter().filter(|(_, r)| other(r)).map(|(h, r)| (h.clone(), r.clone())).collect(),
            to_handle: self.to_handle.iter().filter(|(r, _)| other(r)).map(|(r, h)| (r.clone(), h.clone())).collect(),
        }
    }

    /// This map without the handles `named(kind, handle)` names (resources a pass reads again).
    pub fn without_handles(&self, named: impl Fn(&str, &str) -> bool) -> ReferenceMap {
        let named = |r: &str, h: &str| named(kind_of(r), h);
        ReferenceMap {
            to_ref: self.to_ref.iter().filter(|(h, r)| !named(r, h)).map(|(h, r)| (h.clone(), r.clone())).collect(),
            to_handle: self.to_handle.iter().filter(|(r, h)| !named(r, h)).map(|(r, h)| (r.clone(), h.clone())).collect(),
        }
    }

    /// What this map knows of resources of `kinds` only.
    pub fn only_kinds(&self, kinds: &std::collections::BTreeSet<&str>) -> ReferenceMap {
        ReferenceMap {
            to_ref: self.to_ref.iter().filter(|(_, r)| kinds.contains(kind_of(r))).map(|(h, r)| (h.clone(), r.clone())).collect(),
            to_handle: self.to_handle.iter().filter(|(r, _)| kinds.contains(kind_of(r))).map(|(r, h)| (r.clone(), h.clone())).collect(),
        }
    }

    /// Learns what `other` knows of resources this map knows nothing of.
    pub fn merge_missing(&mut self, other: &ReferenceMap) {
        for (r, h) in &other.to_handle {
            if !self.to_handle.contains_key(r) {
                self.to_handle.insert(r.clone(), h.clone());
                self.to_ref.insert(h.clone(), r.clone());
            }
        }
    }

    /// Learns everything `other` knows (its handles win).
    pub fn merge(&mut self, other: &ReferenceMap) {
        self.to_ref.extend(other.to_ref.iter().map(|(k, v)| (k.clone(), v.clone())));
        self.to_handle.extend(other.to_handle.iter().map(|(k, v)| (k.clone(), v.clone())));
    }

    /// Whether nothing was learnt yet.
    pub fn is_empty(&self) -> bool {
        self.to_handle.is_empty()
    }

    /// Live form → spec form: known handles become references, the others
    /// plain text (they name nothing of the spec, such as `FARGATE`).
    pub fn to_references(&self, value: &Value) -> Value {
        value.translated(&|v| match v {
            Value::Handle(h) => Some(self.to_ref.get(h).map_or_else(|| Value::text(h), |r| Value::Ref(r.clone()))),
            _ => None,
        })
    }

    /// Spec form → live form: references become handles (unknown ones stay references).
    pub fn to_handles(&self, value: &Value) -> Value {
        value.translated(&|v| match v {
            Value::Ref(r) => self.to_handle.get(r).map(|h| Value::Handle(h.clone())),
            _ => None,
        })
    }

    /// Every field value passed through `f`.
    pub fn rewrite(fields: &Fields, f: impl Fn(&Value) -> Value) -> Fields {
        fields.iter().map(|(k, v)| (k.clone(), f(v))).collect()
    }
}

/// The kind of a reference (`ec2.subnet` of `@ec2.subnet/private-a`).
fn kind_of(reference: &str) -> &str {
    reference.strip_prefix('@').and_then(|r| r.split_once('/')).map_or("", |(kind, _)| kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_and_references_translate_both_ways_by_structure() {
        let mut h = ReferenceMap::default();
        h.learn(&ResourceKey { kind: "ec2.subnet", id: "a".into() }, "subnet-2");
        h.learn(&ResourceKey { kind: "ec2.subnet", id: "b".into() }, "subnet-1");
        assert_eq!(h.to_references(&Value::handles(["subnet-1", "subnet-2"])).to_string(), "@ec2.subnet/a,@ec2.subnet/b");
        let rule = Value::Phrase(vec!["ingress".into(), "tcp".into(), "443".into(), Value::handle("subnet-1")]);
        assert_eq!(h.to_references(&rule).to_string(), "ingress tcp 443 @ec2.subnet/b");
        assert_eq!(h.to_references(&Value::handle("sg-unknown")), Value::text("sg-unknown"), "an unknown handle names nothing of the spec");
        assert_eq!(h.to_references(&Value::text("subnet-1")), Value::text("subnet-1"), "text that looks like a handle stays text");
        assert_eq!(h.to_handles(&Value::Ref("@ec2.subnet/a".into())), Value::handle("subnet-2"));
        assert_eq!(h.to_handles(&Value::Ref("@ec2.vpc/missing".into())), Value::Ref("@ec2.vpc/missing".into()));
    }
}

//! Pure planning: match desired against live resources, diff, and decide one
//! [`Action`] per resource (drift policies: [`super::policy`]; the order of
//! writes: [`super::order`]).
//! No AWS calls here.

use serde::Serialize;

use super::{Delta, Desired, FieldChange, Live, OnImmutableChange, Ownership, ResourceKey, Rules, Value, TAG_MANAGED_BY};
use crate::spec::model::DeletionPolicy;
use crate::spec::validate::is_reserved_tag;

/// What the engine will do with one resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    /// Missing: create it.
    Create,
    /// Exists without ownership tags and the spec adopts it: tag it as the
    /// operator's and make the listed changes, never replacing it.
    Adopt,
    /// Drifted: update it in place.
    Update,
    /// A field that cannot change in place differs: delete and re-create (stateless kinds).
    Replace,
    /// Removed from the spec with `deletionPolicy: delete`: delete it.
    Delete,
    /// In sync.
    Noop,
    /// Exists but is not the operator's to touch.
    Skip,
    /// The operator's, removed from the spec, retained.
    Orphan,
    /// Needs a change AWS can only make by replacement; left alone.
    Blocked,
    /// Drifted, but the spec's policy says report only.
    Alert,
}

impl Action {
    /// Whether applying the step writes to AWS.
    pub fn writes(self) -> bool {
        matches!(self, Action::Create | Action::Adopt | Action::Update | Action::Replace | Action::Delete)
    }
}

/// How applying a step went.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "status", content = "detail")]
pub enum Outcome {
    /// The write succeeded.
    Applied,
    /// The write failed (after retries).
    Failed(String),
    /// Not attempted because a dependency failed.
    DependencyFailed(String),
    /// Not attempted: this pass leaves the kind's writes to another pass (the
    /// daemon's full pass leaves networking to its network loop), or the step
    /// depends on a resource that other pass has yet to create.
    Deferred,
}

/// One planned step.
#[derive(Clone, Debug, Serialize)]
pub struct Step {
    /// Kind and logical id.
    #[serde(flatten)]
    pub key: ResourceKey,
    /// Physical name.
    pub name: String,
    /// The decision.
    pub action: Action,
    /// What the report shows: every managed field for a create; for an update
    /// or adoption the delta's fields and tags (`tags.<key>`), including
    /// fields a drift policy reports but holds back from `delta`.
    pub changes: Vec<FieldChange>,
    /// Why the step is a skip, orphan or block, or anything else worth saying.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The desired resource (absent for deletes and orphans).
    #[serde(skip)]
    pub desired: Option<Desired>,
    /// The live resource (absent for creates).
    #[serde(skip)]
    pub live: Option<Live>,
    /// What an update or adoption applies (after drift policies).
    #[serde(skip)]
    pub delta: Delta,
    /// Set once applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// Who made the change a drift repairs, when an API call announced it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<super::focus::Attribution>,
}

/// A desired resource and the live one it matched (either may be missing).
#[derive(Clone, Debug)]
pub struct Pair {
    /// Kind name.
    pub kind: &'static str,
    /// What the spec wants; `None` for a live resource the spec does not list.
    pub desired: Option<Desired>,
    /// What AWS has; `None` when missing.
    pub live: Option<Live>,
}

/// Matches desired resources of one kind with live ones. Live resources left
/// over are kept only when this environment owns them (orphan candidates).
pub fn match_kind(kind: &'static str, env: &str, desired: Vec<Desired>, live: Vec<Live>, matches: impl Fn(&Desired, &Live) -> bool) -> Vec<Pair> {
    let mut live: Vec<Option<Live>> = live.into_iter().map(Some).collect();
    let mut pairs = Vec::new();
    for d in desired {
        let found = live.iter().position(|l| l.as_ref().is_some_and(|l| matches(&d, l)));
        pairs.push(Pair { kind, live: found.and_then(|i| live[i].take()), desired: Some(d) });
    }
    let mut rest: Vec<Live> = live.into_iter().flatten().collect();
    rest.sort_by(|a, b| a.name.cmp(&b.name).then(a.handle.cmp(&b.handle)));
    for l in rest {
        let operators_own = matches!(l.ownership(), Ownership::Managed { id, .. } if id.starts_with(crate::spec::OPERATOR_ID_PREFIX));
        if l.is_owned_by(env) && !operators_own {
            pairs.push(Pair { kind, desired: None, live: Some(l) });
        }
    }
    pairs
}

/// Compares the managed fields and tags of `desired` with `live`. Live fields
/// the spec does not manage and extra live tags are ignored, except families
/// ([`Value::Map`]) named `exclusive`, whose entries the spec does not list
/// are removed. Changes come first, removals last. Tags reserved by AWS
/// (`aws:…`, such as CloudFormation's) are never compared: nobody may change them.
pub fn diff(desired: &Desired, live: &Live, exclusive: &[&str], create_only: &[&str]) -> Delta {
    let managed = |k: &str| !create_only.contains(&k) && !desired.delegated.contains_key(k);
    let desired_side = desired.fields.iter().filter(|(k, _)| managed(k)).flat_map(|(k, v)| FieldChange::between(k, live.fields.get(k), Some(v)));
    let families_only_live = live.fields.iter().filter(|(k, _)| exclusive.contains(&k.as_str()) && !desired.fields.contains_key(*k));
    let all = desired_side.chain(families_only_live.flat_map(|(k, v)| FieldChange::between(k, Some(v), None)));
    let (mut changes, removals): (Vec<FieldChange>, Vec<FieldChange>) = all.partition(|c| c.desired.is_some());
    changes.extend(removals);
    let tags = desired.tags.iter().filter(|(k, v)| !is_reserved_tag(k) && live.tags.get(*k) != Some(*v)).map(|(k, v)| (k.clone(), v.clone())).collect();
    Delta { fields: changes, tags }
}

/// What the plan says of the fields `d` delegates to an autoscaler: at
/// creation, that they are initial values; afterwards, each live value that
/// differs from the spec's, and that it is left alone.
fn delegation_note(d: &Desired, live: Option<&Live>) -> Option<String> {
    let notes: Vec<String> = d
        .delegated
        .iter()
        .filter_map(|(field, owner)| match live {
            None => Some(format!("{field} is the initial value; then owned by {owner}")),
            Some(l) => {
                let (now, spec) = (l.fields.get(field)?, d.fields.get(field)?);
                (now != spec).then(|| format!("{field} owned by {owner}: {now} left alone (the spec's initial value is {spec})"))
            }
        })
        .collect();
    (!notes.is_empty()).then(|| notes.join("; "))
}

fn step(pair_key: ResourceKey, name: String, action: Action, note: Option<String>, desired: Option<Desired>, live: Option<Live>) -> Step {
    Step { key: pair_key, name, action, changes: Vec::new(), note, desired, live, delta: Delta::default(), outcome: None, cause: None }
}

#[cfg(test)]
impl Step {
    /// A step of `desired` with `action` and nothing observed (for tests of what reads steps).
    pub fn of(desired: Desired, action: Action) -> Step {
        step(desired.key.clone(), desired.name.clone(), action, None, Some(desired), None)
    }
}

/// Decides what to do with one pair (live fields already in spec form).
pub fn decide(rules: &Rules, env: &str, pair: Pair) -> Option<Step> {
    match (pair.desired, pair.live) {
        (Some(d), None) => {
            let mut s = step(d.key.clone(), d.name.clone(), Action::Create, delegation_note(&d, None), None, None);
            s.changes = d.fields.iter().flat_map(|(k, v)| FieldChange::between(k, None, Some(v))).collect();
            s.desired = Some(d);
            Some(s)
        }
        (Some(d), Some(l)) => Some(decide_existing(rules, env, d, l)),
        (None, Some(l)) => {
            let Ownership::Managed { env: owner_env, id, deletion_policy } = l.ownership() else { return None };
            if owner_env != env {
                return None;
            }
            let (action, note) = match deletion_policy {
                DeletionPolicy::Delete => (Action::Delete, "removed from the spec; deletionPolicy: delete"),
                DeletionPolicy::Retain => (Action::Orphan, "removed from the spec; retained (deletionPolicy: retain)"),
            };
            Some(step(ResourceKey { kind: rules.kind, id }, l.name.clone(), action, Some(note.to_string()), None, Some(l)))
        }
        (None, None) => None,
    }
}

fn decide_existing(rules: &Rules, env: &str, d: Desired, l: Live) -> Step {
    let ownership = l.ownership();
    let skip = |note: String| step(d.key.clone(), d.name.clone(), Action::Skip, Some(note), Some(d.clone()), Some(l.clone()));
    match &ownership {
        Ownership::Unmanaged if d.adopt.is_none() => {
            return skip(format!("unmanaged, skipped: exists without sentry ownership tags (adopt it with `adopt: {{ {}/{}: {{}} }}`)", d.key.kind, d.key.id));
        }
        Ownership::Foreign(owner) => return skip(format!("skipped: managed by {owner:?} (its {TAG_MANAGED_BY} tag); never adopted")),
        Ownership::Managed { env: owner_env, id, .. } if owner_env != env || *id != d.key.id => {
            return skip(format!("skipped: owned by environment {owner_env:?} as {id:?}"));
        }
        _ => {}
    }
    let delta = diff(&d, &l, rules.exclusive, rules.create_only);
    let mut changes = delta.fields.clone();
    changes.extend(delta.tags.iter().map(|(k, v)| FieldChange::of(&format!("tags.{k}"), l.tags.get(k).map(Value::text), Some(Value::text(v)))));
    let immutable: Vec<&str> = delta.fields.iter().map(|c| c.field.as_str()).filter(|f| rules.immutable.contains(f)).collect();
    let adopting = ownership == Ownership::Unmanaged;
    let (action, note) = if adopting && !immutable.is_empty() {
        let why = format!(
            "BLOCKED: adopting {} would need {} changed, which cannot change in place; an adopted resource is never replaced (is this the resource the spec describes?)",
            l.handle,
            immutable.join(", ")
        );
        (Action::Blocked, Some(why))
    } else if adopting {
        (
            Action::Adopt,
            Some(format!("adopting {}: ownership tags added{}", l.handle, if delta.fields.is_empty() { "" } else { ", the listed fields changed" })),
        )
    } else if !immutable.is_empty() && rules.on_immutable_change != OnImmutableChange::Block {
        (Action::Replace, Some(format!("{} cannot change in place: the resource is replaced", immutable.join(", "))))
    } else if !immutable.is_empty() {
        (Action::Blocked, Some(format!("BLOCKED: {} cannot change without replacing the resource; change it by hand", immutable.join(", "))))
    } else {
        let notes: Vec<String> = delegation_note(&d, Some(&l)).into_iter().chain(l.status.clone()).collect();
        (if delta.is_empty() { Action::Noop } else { Action::Update }, (!notes.is_empty()).then(|| notes.join("; ")))
    };
    Step { key: d.key.clone(), name: d.name.clone(), action, changes, note, desired: Some(d), live: Some(l), delta, outcome: None, cause: None }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::order::{skip_dependents_of_skipped, waves};
    use crate::engine::policy::apply_policies;
    use crate::engine::Fields;
    use crate::engine::Layer;
    use crate::engine::{MANAGED_BY, TAG_DELETION_POLICY, TAG_ENV, TAG_ID, TAG_MANAGED_BY};
    use crate::spec::model::DriftPolicy;
    use crate::spec::model::Tags;
    use std::collections::BTreeMap;

    fn tags(env: &str, id: &str, policy: &str) -> Tags {
        [(TAG_MANAGED_BY, MANAGED_BY), (TAG_ENV, env), (TAG_ID, id), (TAG_DELETION_POLICY, policy)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Fields from pairs; `rule <key>` is an entry of the family `rule `.
    fn fields(pairs: &[(&str, &str)]) -> Fields {
        let (entries, single): (Vec<_>, Vec<_>) = pairs.iter().partition(|(k, _)| k.starts_with("rule "));
        let mut fields: Fields = single.iter().map(|(k, v)| (k.to_string(), Value::text(*v))).collect();
        if !entries.is_empty() {
            fields.insert("rule ".into(), Value::map_of(entries.iter().map(|(k, v)| (Value::text(k.trim_start_matches("rule ")), Value::text(*v)))));
        }
        fields
    }

    fn desired(id: &str, f: &[(&str, &str)], deps: &[&str]) -> Desired {
        Desired {
            key: ResourceKey { kind: "test", id: id.into() },
            name: format!("n-{id}"),
            fields: fields(f),
            tags: tags("dev", id, "retain"),
            depends_on: deps.iter().map(|d| ResourceKey { kind: "test", id: d.to_string() }).collect(),
            adopt: None,
            delegated: Default::default(),
        }
    }

    fn live(id: &str, f: &[(&str, &str)], t: Tags) -> Live {
        Live { name: format!("n-{id}"), handle: format!("h-{id}"), fields: fields(f), tags: t, meta: BTreeMap::new(), status: None }
    }

    const RULES: Rules = Rules { immutable: &["fifo"], exclusive: &["rule "], create_only: &["seed"], ..Rules::new("test", Layer::Compute) };

    fn plan(rules: Rules, d: Vec<Desired>, l: Vec<Live>) -> Vec<Step> {
        match_kind("test", "dev", d, l, |d, l| d.name == l.name).into_iter().filter_map(|p| decide(&rules, "dev", p)).collect()
    }

    fn actions(steps: &[Step]) -> Vec<(String, Action)> {
        steps.iter().map(|s| (s.key.id.clone(), s.action)).collect()
    }

    #[test]
    fn table_of_decisions() {
        let mut no_policy_tag = tags("dev", "a", "retain");
        no_policy_tag.remove(TAG_DELETION_POLICY);
        type Case = (&'static str, Vec<Desired>, Vec<Live>, Vec<(&'static str, Action)>);
        let cases: Vec<Case> = vec![
            ("Missing", vec![desired("a", &[("x", "1")], &[])], vec![], vec![("a", Action::Create)]),
            (
                "CreateOnlyIgnored",
                vec![desired("a", &[("x", "1"), ("seed", "s")], &[])],
                vec![live("a", &[("x", "1")], tags("dev", "a", "retain"))],
                vec![("a", Action::Noop)],
            ),
            (
                "InSync",
                vec![desired("a", &[("x", "1")], &[])],
                vec![live("a", &[("x", "1"), ("extra", "9")], tags("dev", "a", "retain"))],
                vec![("a", Action::Noop)],
            ),
            ("FieldDrift", vec![desired("a", &[("x", "1")], &[])], vec![live("a", &[("x", "2")], tags("dev", "a", "retain"))], vec![("a", Action::Update)]),
            (
                "ExtraExclusiveField",
                vec![desired("a", &[("rule a", "1")], &[])],
                vec![live("a", &[("rule a", "1"), ("rule b", "1")], tags("dev", "a", "retain"))],
                vec![("a", Action::Update)],
            ),
            ("TagRemoved", vec![desired("a", &[("x", "1")], &[])], vec![live("a", &[("x", "1")], no_policy_tag)], vec![("a", Action::Update)]),
            ("Unmanaged", vec![desired("a", &[("x", "1")], &[])], vec![live("a", &[("x", "2")], Tags::new())], vec![("a", Action::Skip)]),
            ("OtherEnv", vec![desired("a", &[("x", "1")], &[])], vec![live("a", &[("x", "1")], tags("prod", "a", "retain"))], vec![("a", Action::Skip)]),
            ("OrphanRetained", vec![], vec![live("b", &[], tags("dev", "b", "retain"))], vec![("b", Action::Orphan)]),
            ("OrphanDeleted", vec![], vec![live("b", &[], tags("dev", "b", "delete"))], vec![("b", Action::Delete)]),
            ("ForeignIgnored", vec![], vec![live("b", &[], Tags::new()), live("c", &[], tags("prod", "c", "delete"))], vec![]),
            (
                "Immutable",
                vec![desired("a", &[("fifo", "true")], &[])],
                vec![live("a", &[("fifo", "false")], tags("dev", "a", "retain"))],
                vec![("a", Action::Blocked)],
            ),
        ];
        for (name, d, l, expected) in cases {
            let expected: Vec<(String, Action)> = expected.into_iter().map(|(i, a)| (i.to_string(), a)).collect();
            assert_eq!(actions(&plan(RULES, d, l)), expected, "case {name}");
        }
        let replaceable = Rules { on_immutable_change: OnImmutableChange::Replace, ..RULES };
        let steps = plan(replaceable, vec![desired("a", &[("fifo", "true")], &[])], vec![live("a", &[("fifo", "false")], tags("dev", "a", "retain"))]);
        assert_eq!(actions(&steps), vec![("a".to_string(), Action::Replace)]);
    }

    #[test]
    fn policies_ignore_alert_and_enforce() {
        let drifted = || {
            plan(RULES, vec![desired("a", &[("x", "1"), ("y", "1")], &[])], vec![live("a", &[("x", "2"), ("y", "2")], tags("dev", "a", "retain"))]).remove(0)
        };
        let policies = |pairs: &[(&str, DriftPolicy)]| pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect::<BTreeMap<_, _>>();

        let mut s = drifted();
        apply_policies(&mut s, &policies(&[("test/a#x", DriftPolicy::Ignore)]));
        assert_eq!((s.action, s.changes.len(), s.delta.fields.len()), (Action::Update, 1, 1));

        let mut s = drifted();
        apply_policies(&mut s, &policies(&[("test/*", DriftPolicy::Alert)]));
        assert_eq!((s.action, s.changes.len(), s.delta.fields.len()), (Action::Alert, 2, 0));

        let mut s = drifted();
        apply_policies(&mut s, &policies(&[("test/*", DriftPolicy::Alert), ("test/a#y", DriftPolicy::Enforce)]));
        assert_eq!((s.action, s.delta.fields.len()), (Action::Update, 1), "the field policy is more specific");

        let mut s = drifted();
        apply_policies(&mut s, &policies(&[("test/a", DriftPolicy::Ignore)]));
        assert_eq!((s.action, s.changes.len()), (Action::Noop, 0));

        let mut retagged = tags("dev", "a", "retain");
        retagged.insert("team".into(), "<script>".into());
        let mut wanted = desired("a", &[("x", "1")], &[]);
        wanted.tags.insert("team".into(), "oms".into());
        let mut s = plan(RULES, vec![wanted], vec![live("a", &[("x", "1")], retagged)]).remove(0);
        assert_eq!((s.action, s.delta.tags.len()), (Action::Update, 1), "a changed tag is drift");
        apply_policies(&mut s, &policies(&[("test/a", DriftPolicy::Alert)]));
        assert_eq!((s.action, s.delta.tags.len(), s.changes.len()), (Action::Alert, 0, 1), "reported, and not rewritten under alert");

        let mut missing = plan(RULES, vec![desired("b", &[], &[])], vec![]).remove(0);
        apply_policies(&mut missing, &policies(&[("test/b", DriftPolicy::Alert)]));
        assert_eq!(missing.action, Action::Alert);
    }

    #[test]
    fn extra_exclusive_fields_are_removals() {
        let steps = plan(RULES, vec![desired("a", &[("rule a", "1")], &[])], vec![live("a", &[("rule a", "1"), ("rule b", "1")], tags("dev", "a", "retain"))]);
        assert_eq!(steps[0].delta.fields, vec![FieldChange { field: "rule b".into(), entry: Some("b".into()), live: Some("1".into()), desired: None }]);
    }

    #[test]
    fn adoption_never_replaces_never_takes_a_foreign_resource_and_leaves_aws_tags_alone() {
        let adopting = |f: &[(&str, &str)]| Desired { adopt: Some(crate::engine::Adoption::ByName), ..desired("a", f, &[]) };
        let replace = Rules { on_immutable_change: OnImmutableChange::Replace, ..RULES };
        let steps = plan(replace, vec![adopting(&[("fifo", "true")])], vec![live("a", &[("fifo", "false")], Tags::new())]);
        assert_eq!(steps[0].action, Action::Blocked, "a replaceable kind is still never replaced when adopting");
        assert!(steps[0].note.as_deref().unwrap_or("").contains("never replaced"), "{:?}", steps[0].note);

        let foreign: Tags = [(TAG_MANAGED_BY.to_string(), "terraform".to_string())].into();
        let steps = plan(RULES, vec![adopting(&[])], vec![live("a", &[], foreign)]);
        assert_eq!(steps[0].action, Action::Skip, "managed by another tool: never adopted");

        let mut d = desired("a", &[], &[]);
        d.tags.insert("aws:cloudformation:stack-name".into(), "mine".into());
        let mut owned = tags("dev", "a", "retain");
        owned.insert("aws:cloudformation:stack-name".into(), "theirs".into());
        let steps = plan(RULES, vec![d], vec![live("a", &[], owned)]);
        assert_eq!(steps[0].action, Action::Noop, "aws:* tags are never compared");
    }

    #[test]
    fn adoption_adds_ownership_tags() {
        let mut d = desired("a", &[("x", "1")], &[]);
        d.adopt = Some(crate::engine::Adoption::ByName);
        let steps = plan(RULES, vec![d], vec![live("a", &[("x", "1")], Tags::new())]);
        assert_eq!(steps[0].delta.tags.get(TAG_MANAGED_BY).map(String::as_str), Some(MANAGED_BY));
        assert!(steps[0].note.as_deref().unwrap_or("").contains("adopting"));
        assert_eq!(steps[0].action, Action::Adopt);
    }

    #[test]
    fn writes_that_depend_on_a_foreign_resource_are_skipped() {
        let mut steps = plan(
            RULES,
            vec![desired("pool", &[], &[]), desired("group", &[], &["pool"]), desired("member", &[], &["group"]), desired("free", &[], &[])],
            vec![live("pool", &[], Tags::new())],
        );
        skip_dependents_of_skipped(&mut steps);
        let expected = [("pool", Action::Skip), ("group", Action::Skip), ("member", Action::Skip), ("free", Action::Create)];
        assert_eq!(actions(&steps), expected.map(|(i, a)| (i.to_string(), a)).to_vec());
        assert!(steps[2].note.as_deref().unwrap_or("").contains("depends on test group"), "{:?}", steps[2].note);
    }

    #[test]
    fn dependencies_come_first() {
        let steps =
            plan(RULES, vec![desired("src", &[], &["dlq"]), desired("dlq", &[], &[]), desired("other", &[], &[]), desired("top", &[], &["src"])], vec![]);
        let names: Vec<Vec<&str>> = waves(&steps).iter().map(|w| w.iter().map(|&i| steps[i].key.id.as_str()).collect()).collect();
        assert_eq!(names, vec![vec!["dlq", "other"], vec!["src"], vec!["top"]]);
    }

    #[test]
    fn a_delegated_field_is_set_at_creation_then_left_to_its_owner() {
        let d = desired("svc", &[("DesiredCount", "2"), ("Min", "2")], &[]).delegate("DesiredCount", "the autoscaler (Application Auto Scaling)");
        let created = plan(RULES, vec![d.clone()], vec![]);
        assert_eq!(created[0].action, Action::Create);
        assert!(created[0].changes.iter().any(|c| c.field == "DesiredCount"), "the initial value is sent");
        assert!(created[0].note.as_deref().unwrap_or("").contains("then owned by the autoscaler"), "{:?}", created[0].note);

        let scaled = live("svc", &[("DesiredCount", "5"), ("Min", "2")], tags("dev", "svc", "retain"));
        let steps = plan(RULES, vec![d.clone()], vec![scaled]);
        assert_eq!(steps[0].action, Action::Noop, "the autoscaler's count is never reverted");
        let note = steps[0].note.as_deref().unwrap_or("");
        assert!(note.contains("DesiredCount owned by the autoscaler") && note.contains("5 left alone"), "{note}");

        let narrowed = live("svc", &[("DesiredCount", "5"), ("Min", "1")], tags("dev", "svc", "retain"));
        let steps = plan(RULES, vec![d], vec![narrowed]);
        assert_eq!(steps[0].action, Action::Update);
        assert_eq!(steps[0].delta.fields.iter().map(|c| c.field.as_str()).collect::<Vec<_>>(), vec!["Min"], "only the fields the operator owns");
    }
}

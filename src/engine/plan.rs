//! Pure planning: match desired against live resources, diff them, and decide
//! one [`Action`] per resource. No AWS calls here.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use super::{Delta, Desired, FieldChange, Live, Ownership, ResourceKey};
use crate::spec::model::DeletionPolicy;

/// What the engine will do with one resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    /// Missing: create it.
    Create,
    /// Drifted: update it in place.
    Update,
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
}

impl Action {
    /// Whether applying the step writes to AWS.
    pub fn writes(self) -> bool {
        matches!(self, Action::Create | Action::Update | Action::Delete)
    }
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
    /// Field-level differences (for a create: every managed field).
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
    /// The delta an update applies.
    #[serde(skip)]
    pub delta: Delta,
    /// Set once applied: `None` not attempted (plan mode, or nothing to do), else the outcome.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
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
}

/// Compares the managed fields and tags of `desired` with `live`.
/// Live fields the spec does not manage, and extra live tags, are ignored.
pub fn diff(desired: &Desired, live: &Live) -> Delta {
    let fields = desired
        .fields
        .iter()
        .filter(|(k, v)| live.fields.get(*k) != Some(*v))
        .map(|(k, v)| FieldChange { field: k.clone(), live: live.fields.get(k).cloned(), desired: Some(v.clone()) })
        .collect();
    let tags = desired.tags.iter().filter(|(k, v)| live.tags.get(*k) != Some(*v)).map(|(k, v)| (k.clone(), v.clone())).collect();
    Delta { fields, tags }
}

fn tag_changes(delta: &Delta, live: &Live) -> Vec<FieldChange> {
    delta
        .tags
        .iter()
        .map(|(k, v)| FieldChange { field: format!("tags.{k}"), live: live.tags.get(k).cloned(), desired: Some(v.clone()) })
        .collect()
}

/// Plans one kind: every desired resource gets a step, and so does every live
/// resource this environment owns that the spec no longer lists.
pub fn plan_kind(kind: &'static str, env: &str, immutable: &[&str], desired: Vec<Desired>, live: Vec<Live>) -> Vec<Step> {
    let mut live_by_name: HashMap<String, Live> = live.into_iter().map(|l| (l.name.clone(), l)).collect();
    let desired_ids: BTreeSet<String> = desired.iter().map(|d| d.key.id.clone()).collect();
    let mut steps = Vec::new();
    for d in desired {
        let step = match live_by_name.remove(&d.name) {
            None => Step {
                key: d.key.clone(),
                name: d.name.clone(),
                action: Action::Create,
                changes: d.fields.iter().map(|(k, v)| FieldChange { field: k.clone(), live: None, desired: Some(v.clone()) }).collect(),
                note: None,
                desired: Some(d),
                live: None,
                delta: Delta::default(),
                outcome: None,
            },
            Some(l) => plan_existing(env, immutable, d, l),
        };
        steps.push(step);
    }
    let mut orphans: Vec<Live> = live_by_name.into_values().collect();
    orphans.sort_by(|a, b| a.name.cmp(&b.name));
    for l in orphans {
        let Ownership::Managed { env: owner_env, id, deletion_policy } = l.ownership() else { continue };
        if owner_env != env || desired_ids.contains(&id) {
            continue;
        }
        let (action, note) = match deletion_policy {
            DeletionPolicy::Delete => (Action::Delete, "removed from the spec; deletionPolicy: delete".to_string()),
            DeletionPolicy::Retain => (Action::Orphan, "removed from the spec; retained (deletionPolicy: retain)".to_string()),
        };
        steps.push(Step {
            key: ResourceKey { kind, id },
            name: l.name.clone(),
            action,
            changes: Vec::new(),
            note: Some(note),
            desired: None,
            live: Some(l),
            delta: Delta::default(),
            outcome: None,
        });
    }
    steps
}

fn plan_existing(env: &str, immutable: &[&str], d: Desired, l: Live) -> Step {
    let skip = |note: String, d: Desired, l: Live| Step {
        key: d.key.clone(),
        name: d.name.clone(),
        action: Action::Skip,
        changes: Vec::new(),
        note: Some(note),
        desired: Some(d),
        live: Some(l),
        delta: Delta::default(),
        outcome: None,
    };
    match l.ownership() {
        Ownership::Unmanaged if !d.adopt => {
            return skip("unmanaged, skipped: exists without sentry ownership tags (set `adopt: true` to manage it)".into(), d, l)
        }
        Ownership::Managed { env: owner_env, id, .. } if owner_env != env || id != d.key.id => {
            return skip(format!("skipped: owned by environment {owner_env:?} as {id:?}"), d, l);
        }
        _ => {}
    }
    let adopting = l.ownership() == Ownership::Unmanaged;
    let delta = diff(&d, &l);
    let mut changes = delta.fields.clone();
    changes.extend(tag_changes(&delta, &l));
    let blocked: Vec<&str> = delta.fields.iter().map(|c| c.field.as_str()).filter(|f| immutable.contains(f)).collect();
    let (action, note) = if !blocked.is_empty() {
        (Action::Blocked, Some(format!("BLOCKED: {} cannot change without replacing the resource; change it by hand", blocked.join(", "))))
    } else if delta.is_empty() {
        (Action::Noop, None)
    } else {
        (Action::Update, adopting.then(|| "adopting: ownership tags will be added".to_string()))
    };
    Step { key: d.key.clone(), name: d.name.clone(), action, changes, note, desired: Some(d), live: Some(l), delta, outcome: None }
}

/// Groups step indexes into waves: every step's dependencies are in earlier
/// waves. Creates and updates run wave by wave; deletes run in reverse.
pub fn waves(steps: &[Step]) -> Vec<Vec<usize>> {
    let index: BTreeMap<&ResourceKey, usize> = steps.iter().enumerate().map(|(i, s)| (&s.key, i)).collect();
    let mut depth: Vec<Option<usize>> = vec![None; steps.len()];
    fn depth_of(i: usize, steps: &[Step], index: &BTreeMap<&ResourceKey, usize>, depth: &mut Vec<Option<usize>>, seen: &mut Vec<bool>) -> usize {
        if let Some(d) = depth[i] {
            return d;
        }
        if seen[i] {
            return 0; // a cycle; validation rejects these, so only defensive
        }
        seen[i] = true;
        let deps: Vec<usize> = steps[i].desired.iter().flat_map(|d| d.depends_on.iter()).filter_map(|k| index.get(k).copied()).collect();
        let d = deps.into_iter().map(|j| depth_of(j, steps, index, depth, seen) + 1).max().unwrap_or(0);
        depth[i] = Some(d);
        d
    }
    let mut seen = vec![false; steps.len()];
    let mut waves: Vec<Vec<usize>> = Vec::new();
    for i in 0..steps.len() {
        let d = depth_of(i, steps, &index, &mut depth, &mut seen);
        if waves.len() <= d {
            waves.resize(d + 1, Vec::new());
        }
        waves[d].push(i);
    }
    waves
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Fields, MANAGED_BY, TAG_DELETION_POLICY, TAG_ENV, TAG_ID, TAG_MANAGED_BY};
    use crate::spec::model::Tags;

    fn tags(env: &str, id: &str, policy: &str) -> Tags {
        [(TAG_MANAGED_BY, MANAGED_BY), (TAG_ENV, env), (TAG_ID, id), (TAG_DELETION_POLICY, policy)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn fields(pairs: &[(&str, &str)]) -> Fields {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn desired(id: &str, f: &[(&str, &str)], deps: &[&str]) -> Desired {
        Desired {
            key: ResourceKey { kind: "test", id: id.into() },
            name: format!("n-{id}"),
            fields: fields(f),
            tags: tags("dev", id, "retain"),
            depends_on: deps.iter().map(|d| ResourceKey { kind: "test", id: d.to_string() }).collect(),
            adopt: false,
        }
    }

    fn live(id: &str, f: &[(&str, &str)], t: Tags) -> Live {
        Live { name: format!("n-{id}"), handle: id.into(), fields: fields(f), tags: t }
    }

    fn actions(steps: &[Step]) -> Vec<(String, Action)> {
        steps.iter().map(|s| (s.key.id.clone(), s.action)).collect()
    }

    #[test]
    fn table_of_decisions() {
        let cases: Vec<(&str, Vec<Desired>, Vec<Live>, Vec<(&str, Action)>)> = vec![
            ("Missing", vec![desired("a", &[("x", "1")], &[])], vec![], vec![("a", Action::Create)]),
            ("InSync", vec![desired("a", &[("x", "1")], &[])], vec![live("a", &[("x", "1"), ("extra", "9")], tags("dev", "a", "retain"))], vec![("a", Action::Noop)]),
            ("FieldDrift", vec![desired("a", &[("x", "1")], &[])], vec![live("a", &[("x", "2")], tags("dev", "a", "retain"))], vec![("a", Action::Update)]),
            ("TagRemoved", vec![desired("a", &[("x", "1")], &[])], vec![live("a", &[("x", "1")], { let mut t = tags("dev", "a", "retain"); t.remove(TAG_DELETION_POLICY); t })], vec![("a", Action::Update)]),
            ("Unmanaged", vec![desired("a", &[("x", "1")], &[])], vec![live("a", &[("x", "2")], Tags::new())], vec![("a", Action::Skip)]),
            ("OtherEnv", vec![desired("a", &[("x", "1")], &[])], vec![live("a", &[("x", "1")], tags("prod", "a", "retain"))], vec![("a", Action::Skip)]),
            ("OrphanRetained", vec![], vec![live("b", &[], tags("dev", "b", "retain"))], vec![("b", Action::Orphan)]),
            ("OrphanDeleted", vec![], vec![live("b", &[], tags("dev", "b", "delete"))], vec![("b", Action::Delete)]),
            ("ForeignIgnored", vec![], vec![live("b", &[], Tags::new()), live("c", &[], tags("prod", "c", "delete"))], vec![]),
            ("Immutable", vec![desired("a", &[("fifo", "true")], &[])], vec![live("a", &[("fifo", "false")], tags("dev", "a", "retain"))], vec![("a", Action::Blocked)]),
        ];
        for (name, d, l, expected) in cases {
            let steps = plan_kind("test", "dev", &["fifo"], d, l);
            let expected: Vec<(String, Action)> = expected.into_iter().map(|(i, a)| (i.to_string(), a)).collect();
            assert_eq!(actions(&steps), expected, "case {name}");
        }
    }

    #[test]
    fn adoption_adds_ownership_tags() {
        let mut d = desired("a", &[("x", "1")], &[]);
        d.adopt = true;
        let steps = plan_kind("test", "dev", &[], vec![d], vec![live("a", &[("x", "1")], Tags::new())]);
        assert_eq!(steps[0].action, Action::Update);
        assert_eq!(steps[0].delta.tags.get(TAG_MANAGED_BY).map(String::as_str), Some(MANAGED_BY));
        assert!(steps[0].note.as_deref().unwrap_or("").contains("adopting"));
    }

    #[test]
    fn dependencies_come_first() {
        let steps = plan_kind(
            "test",
            "dev",
            &[],
            vec![desired("src", &[], &["dlq"]), desired("dlq", &[], &[]), desired("other", &[], &[]), desired("top", &[], &["src"])],
            vec![],
        );
        let names: Vec<Vec<&str>> = waves(&steps).iter().map(|w| w.iter().map(|&i| steps[i].key.id.as_str()).collect()).collect();
        assert_eq!(names, vec![vec!["dlq", "other"], vec!["src"], vec!["top"]]);
    }
}

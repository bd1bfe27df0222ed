//! Drift policies: what the spec says to do with drift of a resource or one
//! of its fields (`enforce`, `alert`, `ignore`), applied to a planned step.

use std::collections::BTreeMap;

use super::plan::{Action, Step};
use super::ResourceKey;
use crate::spec::model::DriftPolicy;

/// The policy for `key` (optionally one `field` of it): the most specific of
/// `kind/id#Field`, `kind/*#Field`, `kind/id`, `kind/*`; `enforce` by default.
pub fn policy_for(policies: &BTreeMap<String, DriftPolicy>, key: &ResourceKey, field: Option<&str>) -> DriftPolicy {
    let resource = [format!("{}/{}", key.kind, key.id), format!("{}/*", key.kind)];
    let by_field = field.into_iter().flat_map(|f| resource.iter().map(move |r| format!("{r}#{f}")));
    by_field.chain(resource.iter().cloned()).find_map(|k| policies.get(&k).copied()).unwrap_or(DriftPolicy::Enforce)
}

/// Applies the spec's drift policies to a planned step: `ignore`d drift is
/// dropped, `alert` drift is reported but taken out of what will be applied.
pub fn apply_policies(step: &mut Step, policies: &BTreeMap<String, DriftPolicy>) {
    if policies.is_empty() || !step.action.writes() {
        return;
    }
    match policy_for(policies, &step.key, None) {
        DriftPolicy::Ignore if step.action != Action::Update => {
            step.action = Action::Noop;
            step.changes.clear();
            return;
        }
        DriftPolicy::Alert if step.action != Action::Update => {
            step.action = Action::Alert;
            step.note = Some("drift reported only (policy: alert)".into());
            return;
        }
        _ => {}
    }
    let key = step.key.clone();
    let field_policy = |field: &str| policy_for(policies, &key, Some(field));
    step.changes.retain(|c| field_policy(&c.field) != DriftPolicy::Ignore);
    step.delta.fields.retain(|c| field_policy(&c.field) == DriftPolicy::Enforce);
    // Tags are fields too (`tags.<key>` in the report): an alerted tag is not rewritten.
    step.delta.tags.retain(|k, _| field_policy(&format!("tags.{k}")) == DriftPolicy::Enforce);
    let alerted: Vec<&str> = step.changes.iter().filter(|c| field_policy(&c.field) == DriftPolicy::Alert).map(|c| c.field.as_str()).collect();
    if step.delta.is_empty() {
        step.action = if alerted.is_empty() { Action::Noop } else { Action::Alert };
    }
    if !alerted.is_empty() {
        step.note = Some(format!("reported only (policy: alert): {}", alerted.join(", ")));
    }
}

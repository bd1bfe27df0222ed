//! The planning half of a pass, in four named stages, each over typed records:
//!
//! 1. [`observe`] — every kind the pass covers reads AWS concurrently: an
//!    [`Observation`] per kind (its desired resources, what AWS has of them);
//! 2. [`match_resources`] — each kind's desired and live resources paired
//!    ([`Matched`]), and which kinds' handles the pass keeps;
//! 3. [`decide`] — references turned into one form on both sides, then one
//!    [`Step`] per pair, with the spec's policies and the cause of its drift;
//! 4. [`review`] — adoptions that name nothing, and each kind's own review of
//!    its steps, before anything is written.
//!
//! The apply stage ([`super::apply`]) takes the [`Planned`] pass from here.

use std::collections::BTreeSet;

use super::focus::Focus;
use super::narrowing::Narrowing;
use super::order::skip_dependents_of_skipped;
use super::plan::{self, match_kind, Action, Pair, Step};
use super::policy::apply_policies;
use super::references::ReferenceMap;
use super::{Adoption, Desired, Finding, Kind, Live, Matching, OnImmutableChange, ReadCache};

use crate::aws::AwsError;
use crate::spec::EnvSpec;

/// The merged reviews of every kind.
#[derive(Debug, Default)]
pub(super) struct Reviews {
    /// Problems that stop the pass before any write.
    pub errors: Vec<String>,
    /// Broken invariants.
    pub violations: Vec<String>,
    /// Typed findings.
    pub findings: Vec<Finding>,
}

/// A planned pass, ready to apply.
pub(super) struct Planned {
    /// One step per resource, in registry order of their kinds.
    pub steps: Vec<PlannedStep>,
    /// Every handle known: observed, and learnt by earlier passes.
    pub handles: ReferenceMap,
    /// Kinds that could not be read.
    pub errors: Vec<String>,
    /// What the reviews found.
    pub review: Reviews,
    /// The shared reads of the observation, which reviews and writes may consult.
    pub reads: ReadCache,
    /// The kinds whose handles the pass keeps for the next ones.
    pub remembered: Remembered,
}

/// The kinds whose handles a pass keeps for the passes after it.
#[derive(Debug, Default)]
pub(super) struct Remembered {
    /// Those it writes and read without error: what it holds replaces what was known.
    pub written: BTreeSet<&'static str>,
    /// Those it read whole that another loop writes: it adds only what nothing told yet.
    pub seen: BTreeSet<&'static str>,
}

/// Stage 3's record: a step and the kind that carries it out.
#[derive(Debug)]
pub(super) struct PlannedStep {
    /// The step.
    pub step: Step,
    /// Its kind's place in the registry (its dependency order).
    pub kind: usize,
}

impl std::borrow::Borrow<Step> for PlannedStep {
    fn borrow(&self) -> &Step {
        &self.step
    }
}

impl std::borrow::BorrowMut<Step> for PlannedStep {
    fn borrow_mut(&mut self) -> &mut Step {
        &mut self.step
    }
}

/// A kind the pass covers, with its place in the registry.
#[derive(Clone, Copy)]
struct Covered<'k> {
    index: usize,
    kind: &'k dyn Kind,
}

/// Stage 1's record: one kind's desired resources and what AWS has of them.
struct Observation<'k> {
    kind: Covered<'k>,
    desired: Vec<Desired>,
    live: Result<Vec<Live>, AwsError>,
}

/// Stage 2's record: one kind's resources, desired and live, paired.
struct Matched<'k> {
    kind: Covered<'k>,
    pairs: Vec<Pair>,
}

/// Plans one pass: observe, match, decide, review.
pub(super) async fn plan_pass(env: &EnvSpec, kinds: &[Box<dyn Kind>], narrowing: &Narrowing) -> Planned {
    let reads = ReadCache::for_pass(&narrowing.focus);
    let covered: Vec<Covered> =
        kinds.iter().enumerate().map(|(index, kind)| Covered { index, kind: kind.as_ref() }).filter(|c| narrowing.focus.covers_kind(c.kind.name())).collect();
    let (observations, adoption_errors) = observe(env, &covered, &reads).await;
    let (matched, errors, remembered) = match_resources(env, narrowing, observations);
    let known = narrowing.known.as_ref().and_then(|k| k.lock().ok().map(|k| k.clone())).unwrap_or_default();
    let (mut steps, handles) = decide(env, &narrowing.focus, &known, &covered, matched);
    let review = review(env, &covered, &mut steps, adoption_errors, &reads);
    Planned { steps, handles, errors, review, reads, remembered }
}

/// Stage 1 — observe: the desired resources of every covered kind (with the
/// spec's adoptions marked, and the problems of those) and, concurrently,
/// what AWS has of them.
async fn observe<'k>(env: &EnvSpec, covered: &[Covered<'k>], reads: &ReadCache) -> (Vec<Observation<'k>>, Vec<String>) {
    let names: BTreeSet<&'static str> = covered.iter().map(|c| c.kind.name()).collect();
    let (desired, adoption_errors) = adopting(env, &names, covered.iter().map(|c| c.kind.desired(env)).collect());
    let adopted = |d: &Desired| d.adopt.as_ref().map(|a| a.id().unwrap_or(&d.name).to_string());
    reads.set_adopting(desired.iter().flatten().filter_map(adopted).collect());
    let observations = futures::future::join_all(covered.iter().zip(desired).map(|(&kind, desired)| async move {
        let live = kind.kind.observe(env, &desired, reads).await;
        Observation { kind, desired, live }
    }))
    .await;
    (observations, adoption_errors)
}

/// Stage 2 — match: each kind read pairs its desired and live resources; a
/// kind that could not be read is an error of the pass.
fn match_resources<'k>(env: &EnvSpec, narrowing: &Narrowing, observations: Vec<Observation<'k>>) -> (Vec<Matched<'k>>, Vec<String>, Remembered) {
    let (mut matched, mut errors, mut remembered) = (Vec::new(), Vec::new(), Remembered::default());
    for Observation { kind: covered, desired, live } in observations {
        let kind = covered.kind;
        match live {
            Ok(live) => {
                if narrowing.writes.covers(kind.rules().scope) {
                    remembered.written.insert(kind.name());
                } else if !narrowing.focus.resources.contains_key(kind.name()) {
                    remembered.seen.insert(kind.name());
                }
                let pairs = match_kind(kind.name(), &env.env, desired, live, |d, l| kind.matches(&env.env, d, l));
                matched.push(Matched { kind: covered, pairs });
            }
            Err(e) => errors.push(format!("observe {}: {e}", kind.name())),
        }
    }
    (matched, errors, remembered)
}

/// Stage 3 — decide: every reference on both sides in one form (earlier
/// passes' handles resolve what this pass does not read; for the kinds it
/// reads whole only what it sees counts, else a deleted resource's old handle
/// would still resolve), then one step per pair the focus covers.
fn decide(env: &EnvSpec, focus: &Focus, known: &ReferenceMap, covered: &[Covered], matched: Vec<Matched>) -> (Vec<PlannedStep>, ReferenceMap) {
    let observed_whole: BTreeSet<&'static str> = covered.iter().map(|c| c.kind.name()).filter(|k| !focus.resources.contains_key(k)).collect();
    let named = |kind: &str, handle: &str| focus.resources.get(kind).is_some_and(|ids| ids.iter().any(|id| super::focus::names(id, handle)));
    let mut handles = known.without_kinds(&observed_whole).without_handles(named);
    for m in &matched {
        handles.learn_pairs(m.pairs.iter());
    }
    let mut steps = Vec::new();
    for Matched { kind, pairs } in matched {
        let rules = kind.kind.rules();
        for mut pair in pairs {
            if let Some(l) = &mut pair.live {
                l.fields = ReferenceMap::rewrite(&l.fields, |t| handles.to_references(t));
            }
            if let Some(d) = &mut pair.desired {
                d.fields = ReferenceMap::rewrite(&d.fields, |t| handles.to_references(t));
            }
            if let Some(mut step) = plan::decide(&rules, &env.env, pair).filter(|s| focus.covers(s.key.kind, &identities(s, known))) {
                apply_policies(&mut step, &env.spec.policies);
                steps.push(PlannedStep { step, kind: kind.index });
            }
        }
    }
    skip_dependents_of_skipped(&mut steps);
    for PlannedStep { step, .. } in steps.iter_mut().filter(|s| !matches!(s.step.action, Action::Noop | Action::Skip | Action::Orphan)) {
        step.cause = focus.cause_of(step.key.kind, &identities(step, known));
    }
    (steps, handles)
}

/// Stage 4 — review: an adopted resource that does not exist (created anew
/// only when stateless), then each kind's own review of its steps.
fn review(env: &EnvSpec, covered: &[Covered], steps: &mut [PlannedStep], mut adoption_errors: Vec<String>, reads: &ReadCache) -> Reviews {
    let kind_of = |index: usize| covered.iter().find(|c| c.index == index).map(|c| c.kind);
    for PlannedStep { step, kind } in steps.iter_mut().filter(|s| s.step.action == Action::Create) {
        let (Some(id), Some(kind)) = (step.desired.as_ref().and_then(Desired::adopted_id).map(str::to_string), kind_of(*kind)) else { continue };
        // Kinds that match on their own (the whitelist's pins and ledger) judge a missing resource themselves.
        if kind.rules().matching == Matching::Custom {
            continue;
        }
        if kind.rules().on_immutable_change == OnImmutableChange::Replace {
            step.note = Some(format!("the adopted {id} no longer exists: created anew (a stateless resource; drop its adopt entry once adopted)"));
        } else {
            adoption_errors.push(format!(
                "adopt.{}: {id} does not exist (or is not visible with these credentials); nothing is created in its place. \
                 Fix the id, or remove the entry to let the operator create the resource",
                step.key.to_string().replacen(' ', "/", 1)
            ));
        }
    }
    let mut reviews = Reviews { errors: adoption_errors, ..Reviews::default() };
    for c in covered {
        let mine: Vec<&Step> = steps.iter().filter(|s| s.kind == c.index).map(|s| &s.step).collect();
        let r = c.kind.review(env, &mine, reads);
        reviews.errors.extend(r.errors);
        reviews.violations.extend(r.violations);
        reviews.findings.extend(r.findings);
    }
    reviews
}

/// The names a step's resource goes by: its live handle and name, its
/// desired name, the handle earlier passes knew it by.
pub(super) fn identities(step: &Step, known: &ReferenceMap) -> Vec<String> {
    let live = step.live.iter().flat_map(|l| [l.handle.clone(), l.name.clone()]);
    live.chain(step.desired.iter().map(|d| d.name.clone())).chain([step.name.clone()]).chain(known.handle_of(&step.key)).collect()
}

/// Marks the desired resources the spec's `adopt` entries name (by name, or
/// by identifier); every entry must name one. Returns the desired resources
/// and the problems, which stop the pass before any write.
fn adopting(env: &EnvSpec, kinds: &BTreeSet<&str>, mut desired: Vec<Vec<Desired>>) -> (Vec<Vec<Desired>>, Vec<String>) {
    let mut errors = Vec::new();
    // A pass over some kinds (the daemon's fast loop) checks the entries of its own kinds only.
    let ours = |key: &str| key.split_once('/').map_or(true, |(kind, _)| kinds.contains(kind));
    for (key, target) in env.spec.adopt.iter().filter(|(key, _)| ours(key)) {
        let found = desired.iter_mut().flatten().find(|d| format!("{}/{}", d.key.kind, d.key.id) == *key);
        let Some(d) = found else {
            errors.push(format!("adopt.{key}: names no resource of the spec (write kind/id of a resource the spec defines, e.g. ec2.subnet/private-a)"));
            continue;
        };
        d.adopt = match (&target.id, &target.stack) {
            (Some(id), _) => Some(Adoption::ById(id.clone())),
            (None, None) => Some(Adoption::ByName),
            (None, Some(stack)) => {
                errors.push(format!("adopt.{key}: the stack reference {stack} was not resolved to a resource id"));
                continue;
            }
        };
    }
    (desired, errors)
}

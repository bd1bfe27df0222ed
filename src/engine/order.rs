//! The order of a plan's writes: waves of steps whose dependencies come in
//! earlier waves, and writes left out because what they depend on is not the
//! operator's to change.

use std::borrow::{Borrow, BorrowMut};
use std::collections::{BTreeMap, BTreeSet};

use super::plan::{Action, Step};
use super::ResourceKey;

/// Skips every write that depends, directly or through other steps, on a
/// resource the operator skipped as not its own: a group is not added to a
/// foreign user pool, a service not created in a foreign cluster.
pub fn skip_dependents_of_skipped<S: BorrowMut<Step>>(steps: &mut [S]) {
    loop {
        let skipped: BTreeSet<ResourceKey> = steps.iter().map(Borrow::borrow).filter(|s| s.action == Action::Skip).map(|s| s.key.clone()).collect();
        let mut changed = false;
        for step in steps.iter_mut().map(BorrowMut::borrow_mut).filter(|s| s.action.writes()) {
            let Some(dep) = step.desired.as_ref().and_then(|d| d.depends_on.iter().find(|k| skipped.contains(*k))) else { continue };
            step.note = Some(format!("skipped: depends on {dep}, which is not the operator's to change"));
            step.action = Action::Skip;
            changed = true;
        }
        if !changed {
            return;
        }
    }
}

/// Groups step indexes into waves: every step's dependencies are in earlier
/// waves. Creates and updates run wave by wave; deletes run in reverse.
pub fn waves<S: Borrow<Step>>(steps: &[S]) -> Vec<Vec<usize>> {
    let steps: Vec<&Step> = steps.iter().map(Borrow::borrow).collect();
    let index: BTreeMap<&ResourceKey, usize> = steps.iter().enumerate().map(|(i, s)| (&s.key, i)).collect();
    let mut depth: Vec<Option<usize>> = vec![None; steps.len()];
    fn depth_of(i: usize, steps: &[&Step], index: &BTreeMap<&ResourceKey, usize>, depth: &mut [Option<usize>], seen: &mut BTreeSet<usize>) -> usize {
        if let Some(d) = depth[i] {
            return d;
        }
        if !seen.insert(i) {
            return 0; // a cycle; validation rejects these, so only defensive
        }
        let deps: Vec<usize> = steps[i].desired.iter().flat_map(|d| d.depends_on.iter()).filter_map(|k| index.get(k).copied()).collect();
        let d = deps.into_iter().map(|j| depth_of(j, steps, index, depth, seen) + 1).max().unwrap_or(0);
        depth[i] = Some(d);
        d
    }
    let mut seen = BTreeSet::new();
    let mut waves: Vec<Vec<usize>> = Vec::new();
    for i in 0..steps.len() {
        let d = depth_of(i, &steps, &index, &mut depth, &mut seen);
        if waves.len() <= d {
            waves.resize(d + 1, Vec::new());
        }
        waves[d].push(i);
    }
    waves
}

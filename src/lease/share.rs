//! Sharing environments between replicas, fairly: a pure function of what
//! the lease table shows, computed by every replica on every turn. A replica
//! takes a free lease only while it holds no more than the least-loaded other
//! live replica (so no replica takes more than its share while another has
//! less), gives one back when it holds two more than that, and yields any
//! lease a one-off writer (`reconcile --once`) has asked for.

use std::collections::BTreeMap;

/// One environment's lease as the table shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseView {
    /// The holder, while its lease runs.
    pub holder: Option<String>,
    /// Who asked for the lease, while the request runs.
    pub requested_by: Option<String>,
}

/// What a replica does with the leases on this turn.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Moves {
    /// Leases it holds and keeps (renews).
    pub renew: Vec<String>,
    /// Free leases it tries to take.
    pub take: Vec<String>,
    /// Leases it gives back (to rebalance, or because a one-off writer asked).
    pub release: Vec<String>,
}

/// The moves of replica `me`, which runs `envs`, given the other live
/// replicas and every environment's lease (`leases`, live holders only).
pub fn moves(me: &str, envs: &[String], others: &[String], leases: &BTreeMap<String, LeaseView>) -> Moves {
    let held_by = |replica: &str| leases.values().filter(|l| l.holder.as_deref() == Some(replica)).count();
    let least_other = others.iter().map(|r| held_by(r)).min();
    let asked_by_another = |l: &LeaseView| l.requested_by.as_deref().is_some_and(|r| r != me);
    let mut result = Moves::default();
    let mut mine: Vec<&String> = leases.iter().filter(|(_, l)| l.holder.as_deref() == Some(me)).map(|(e, _)| e).collect();
    mine.sort();
    for env in &mine {
        if leases.get(*env).is_some_and(asked_by_another) {
            result.release.push((*env).clone());
        } else {
            result.renew.push((*env).clone());
        }
    }
    // Rebalance, one lease a turn: the last by name goes to a less-loaded replica.
    if least_other.is_some_and(|least| result.renew.len() > least + 1) {
        if let Some(env) = result.renew.pop() {
            result.release.push(env);
        }
        return result;
    }
    let mut free: Vec<&String> = envs.iter().filter(|e| leases.get(*e).map_or(true, |l| l.holder.is_none() && !asked_by_another(l))).collect();
    // Each replica tries the free environments in its own order, so that
    // replicas taking at the same moment rarely want the same one.
    free.sort_by_key(|e| (spread(me, e), (*e).clone()));
    for (count, env) in (result.renew.len()..).zip(free) {
        if least_other.is_some_and(|least| count > least) {
            break;
        }
        result.take.push(env.clone());
    }
    result
}

/// A number that orders environments differently for each replica (FNV-1a).
fn spread(replica: &str, env: &str) -> u64 {
    replica.bytes().chain([0]).chain(env.bytes()).fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envs(n: usize) -> Vec<String> {
        ["dev", "staging", "prod", "qa", "perf"].iter().take(n).map(|s| s.to_string()).collect()
    }

    /// Turns in rounds: each live replica computes its moves from the table
    /// and applies them at once (a take succeeds only on a free lease, like
    /// the conditional write); returns the table.
    fn settle(replicas: &[&str], envs: &[String], mut leases: BTreeMap<String, LeaseView>, rounds: usize) -> BTreeMap<String, LeaseView> {
        for _ in 0..rounds {
            for me in replicas {
                let others: Vec<String> = replicas.iter().filter(|r| *r != me).map(|r| r.to_string()).collect();
                let m = moves(me, envs, &others, &leases);
                for env in m.release {
                    leases.entry(env).or_default().holder = None;
                }
                for env in m.take {
                    let lease = leases.entry(env).or_default();
                    if lease.holder.is_none() {
                        lease.holder = Some(me.to_string());
                    }
                }
            }
        }
        leases
    }

    fn counts(replicas: &[&str], leases: &BTreeMap<String, LeaseView>) -> Vec<usize> {
        replicas.iter().map(|r| leases.values().filter(|l| l.holder.as_deref() == Some(r)).count()).collect()
    }

    #[test]
    fn replicas_split_environments_evenly() {
        for (n_replicas, n_envs) in [(1, 3), (2, 2), (2, 3), (3, 2), (3, 3), (3, 5), (2, 5)] {
            let replicas: Vec<&str> = ["r-a", "r-b", "r-c"].into_iter().take(n_replicas).collect();
            let envs = envs(n_envs);
            let leases = settle(&replicas, &envs, BTreeMap::new(), 6);
            let counts = counts(&replicas, &leases);
            assert_eq!(counts.iter().sum::<usize>(), n_envs, "{n_replicas} replicas, {n_envs} envs: every lease held: {counts:?}");
            let (min, max) = (counts.iter().min().copied().unwrap_or(0), counts.iter().max().copied().unwrap_or(0));
            assert!(max - min <= 1, "{n_replicas} replicas, {n_envs} envs: uneven {counts:?}");
        }
    }

    #[test]
    fn no_replica_takes_more_while_another_has_less() {
        let leases: BTreeMap<String, LeaseView> =
            [("dev".to_string(), LeaseView { holder: Some("r-a".into()), requested_by: None }), ("staging".to_string(), LeaseView::default())].into();
        let m = moves("r-a", &envs(2), &["r-b".into()], &leases);
        assert_eq!(m.take, Vec::<String>::new(), "r-a holds one, r-b none: staging is r-b's");
        let m = moves("r-b", &envs(2), &["r-a".into()], &leases);
        assert_eq!(m.take, vec!["staging".to_string()]);
    }

    #[test]
    fn a_joining_replica_gets_its_share_and_a_dead_ones_leases_are_taken_over() {
        let envs = envs(3);
        let alone = settle(&["r-a"], &envs, BTreeMap::new(), 2);
        assert_eq!(counts(&["r-a"], &alone), vec![3]);
        let joined = settle(&["r-a", "r-b"], &envs, alone, 4);
        let mut split = counts(&["r-a", "r-b"], &joined);
        split.sort();
        assert_eq!(split, vec![1, 2]);
        // r-a dies: once its leases expire the table shows them free.
        let expired = joined.into_iter().map(|(e, l)| (e, if l.holder.as_deref() == Some("r-a") { LeaseView::default() } else { l })).collect();
        let after = settle(&["r-b"], &envs, expired, 2);
        assert_eq!(counts(&["r-b"], &after), vec![3]);
    }

    #[test]
    fn a_requested_lease_is_yielded_and_not_taken_back() {
        let leases: BTreeMap<String, LeaseView> = [("dev".to_string(), LeaseView { holder: Some("r-a".into()), requested_by: Some("ci".into()) })].into();
        let m = moves("r-a", &envs(1), &[], &leases);
        assert_eq!(m.release, vec!["dev".to_string()]);
        let free: BTreeMap<String, LeaseView> = [("dev".to_string(), LeaseView { holder: None, requested_by: Some("ci".into()) })].into();
        assert!(moves("r-a", &envs(1), &[], &free).take.is_empty(), "the requester takes it");
        assert_eq!(moves("ci", &envs(1), &[], &free).take, vec!["dev".to_string()]);
    }
}

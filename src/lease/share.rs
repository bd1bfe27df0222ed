//! Sharing environments between replicas, fairly: a pure function of what
//! the lease table shows, computed by every replica on every turn. A replica
//! takes a free lease only while it holds no more than the least-loaded other
//! live replica that runs that environment (so no replica takes more than its
//! share while another has less), gives one back when a replica that runs it
//! holds two fewer, and yields any lease a one-off writer (`reconcile
//! --once`) has asked for. Replicas may run different environments.

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

/// Another live replica: its id and the environments it runs (`None`: not
/// announced, taken as all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    /// Its id.
    pub id: String,
    /// The environments it runs.
    pub envs: Option<Vec<String>>,
}

impl Replica {
    fn runs(&self, env: &str) -> bool {
        self.envs.as_ref().map_or(true, |envs| envs.iter().any(|e| e == env))
    }
}

/// The moves of replica `me`, which runs `envs`, given the other live
/// replicas and every environment's lease (`leases`, live holders only).
pub fn moves(me: &str, envs: &[String], others: &[Replica], leases: &BTreeMap<String, LeaseView>) -> Moves {
    let held_by = |replica: &str| leases.values().filter(|l| l.holder.as_deref() == Some(replica)).count();
    // The fewest leases held by another replica that runs `env`.
    let least_other = |env: &str| others.iter().filter(|r| r.runs(env)).map(|r| held_by(&r.id)).min();
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
    // Rebalance, one lease a turn: the last by name that a replica holding
    // two fewer also runs goes to it.
    let held = result.renew.len();
    if let Some(at) = result.renew.iter().rposition(|env| least_other(env).is_some_and(|least| held > least + 1)) {
        let env = result.renew.remove(at);
        result.release.push(env);
        return result;
    }
    let mut free: Vec<&String> = envs.iter().filter(|e| leases.get(*e).map_or(true, |l| l.holder.is_none() && !asked_by_another(l))).collect();
    // Each replica tries the free environments in its own order, so that
    // replicas taking at the same moment rarely want the same one.
    free.sort_by_key(|e| (spread(me, e), (*e).clone()));
    let mut count = result.renew.len();
    for env in free {
        if least_other(env).is_some_and(|least| count > least) {
            continue;
        }
        result.take.push(env.clone());
        count += 1;
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
                let others: Vec<Replica> = replicas.iter().filter(|r| *r != me).map(|r| Replica { id: r.to_string(), envs: None }).collect();
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

    fn other(id: &str, envs: Option<&[&str]>) -> Replica {
        Replica { id: id.into(), envs: envs.map(|e| e.iter().map(|s| s.to_string()).collect()) }
    }

    #[test]
    fn replicas_running_different_environments_leave_none_unheld() {
        // r-a runs dev only; r-b runs dev and prod, and took both first.
        let both: BTreeMap<String, LeaseView> = [
            ("dev".to_string(), LeaseView { holder: Some("r-b".into()), requested_by: None }),
            ("prod".to_string(), LeaseView { holder: Some("r-b".into()), requested_by: None }),
        ]
        .into();
        let dev_and_prod: Vec<String> = vec!["dev".into(), "prod".into()];
        let m = moves("r-b", &dev_and_prod, &[other("r-a", Some(&["dev"]))], &both);
        assert_eq!(m.release, vec!["dev".to_string()], "dev goes to r-a, which runs it and holds none");
        assert_eq!(m.renew, vec!["prod".to_string()]);
        // Nobody else runs prod: r-b takes it whatever it holds.
        let free_prod: BTreeMap<String, LeaseView> =
            [("dev".to_string(), LeaseView { holder: Some("r-b".into()), requested_by: None }), ("prod".to_string(), LeaseView::default())].into();
        assert_eq!(moves("r-b", &dev_and_prod, &[other("r-a", Some(&["dev"]))], &free_prod).take, vec!["prod".to_string()]);
        // ... and r-a never takes prod, which it does not run.
        assert!(moves("r-a", &["dev".to_string()], &[other("r-b", Some(&["dev", "prod"]))], &free_prod).take.is_empty());
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
        let m = moves("r-a", &envs(2), &[other("r-b", None)], &leases);
        assert_eq!(m.take, Vec::<String>::new(), "r-a holds one, r-b none: staging is r-b's");
        let m = moves("r-b", &envs(2), &[other("r-a", None)], &leases);
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

//! The daemon's side of the lease table. Every turn (a third of the lease
//! duration, however long the last one took) a replica renews the leases it
//! holds, announces itself, reads the table, and takes or gives back leases
//! as [`share::moves`] says. A pass writes only while its environment's lease
//! is held — checked locally against the time the lease was last renewed, so
//! a replica cut off from the table stops writing before its lease can run
//! out in the table — and its spec is not stale. A lease is given back (to
//! rebalance, on request, or at shutdown) only once no writing pass of its
//! environment is in flight.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use tokio::sync::{watch, OwnedRwLockReadGuard, RwLock};

use super::http::SharedStatus;
use crate::lease::revision::{judge, Applied, Revision, Verdict};
use crate::lease::{bounded, share, EnvRecord, LeaseTable};

/// One environment's lease, as this replica knows it.
#[derive(Default)]
struct EnvLease {
    held: AtomicBool,
    /// Until when the lease is ours for sure: the moment its last renewal was
    /// sent, plus the lease, less a turn (for clock drift and writes in flight).
    valid_until: Mutex<Option<Instant>>,
    /// Giving the lease back: no new writing pass starts.
    yielding: AtomicBool,
    /// The item as last read or written (fresh from each renewal while held).
    record: Mutex<EnvRecord>,
    /// Held (shared) by writing passes; taken (exclusive) to give the lease back.
    writers: Arc<RwLock<()>>,
    /// Serialises recording a new revision.
    claim: tokio::sync::Mutex<()>,
}

impl EnvLease {
    /// Whether the lease is ours now, by the table's last word and the local clock.
    fn valid(&self) -> bool {
        self.held.load(Ordering::SeqCst) && self.valid_until.lock().is_ok_and(|v| v.is_some_and(|v| Instant::now() < v))
    }

    /// Whether a new writing pass may start under this lease now.
    fn usable(&self) -> bool {
        self.valid() && !self.yielding.load(Ordering::SeqCst)
    }

    /// Records a renewal or take sent at `sent`, answered with `record`.
    fn hold(&self, sent: Instant, duration: Duration, margin: Duration, record: EnvRecord) {
        if let Ok(mut v) = self.valid_until.lock() {
            *v = Some(sent + duration.saturating_sub(margin));
        }
        if let Ok(mut r) = self.record.lock() {
            *r = record;
        }
        self.held.store(true, Ordering::SeqCst);
    }

    fn drop_lease(&self) {
        self.held.store(false, Ordering::SeqCst);
        if let Ok(mut v) = self.valid_until.lock() {
            *v = None;
        }
    }
}

/// A writing pass's hold on its environment's lease.
pub struct Writing {
    _guard: Option<OwnedRwLockReadGuard<()>>,
    lease: Option<Arc<EnvLease>>,
}

impl Writing {
    /// Whether the lease is still ours (always, without a lease table).
    pub fn still_held(&self) -> bool {
        self.lease.as_ref().map_or(true, |l| l.valid())
    }
}

/// Whether a pass may write.
pub enum Permit {
    /// Write, while [`Writing::still_held`].
    Write(Writing),
    /// Observe only: another writer has the lease.
    NotLeader,
    /// Observe only: the spec is older than the revision applied.
    Stale(Box<Applied>),
    /// Observe only this time (the lease item changed under us, or could not be written).
    Later(String),
}

/// The leases of the environments one daemon runs; without a table it is the only writer.
pub struct Leases {
    table: Option<LeaseTable>,
    envs: BTreeMap<String, Arc<EnvLease>>,
    status: SharedStatus,
}

impl Leases {
    /// The leases of `envs` in `table` (`None`: the only replica, writing everything).
    pub fn new(table: Option<LeaseTable>, envs: &[String], status: SharedStatus) -> Self {
        let envs = envs.iter().map(|e| (e.clone(), Arc::default())).collect();
        Leases { table, envs, status }
    }

    /// Whether a pass of `env` with spec revision `mine` may write; a
    /// revision the table has not seen is recorded first (next generation).
    pub async fn permit(&self, env: &str, mine: &Revision) -> Permit {
        let Some(table) = &self.table else { return Permit::Write(Writing { _guard: None, lease: None }) };
        let Some(lease) = self.envs.get(env) else { return Permit::NotLeader };
        if !lease.usable() {
            return Permit::NotLeader;
        }
        let Ok(guard) = lease.writers.clone().try_read_owned() else { return Permit::NotLeader };
        // Checked again under the guard: a lease given back meanwhile was dropped under the exclusive one.
        if !lease.usable() {
            return Permit::NotLeader;
        }
        let writing = Writing { _guard: Some(guard), lease: Some(lease.clone()) };
        let _claim = lease.claim.lock().await;
        let record = lease.record.lock().map(|r| r.clone()).unwrap_or_default();
        match judge(mine, record.applied.as_ref(), &record.history) {
            Verdict::Current => Permit::Write(writing),
            Verdict::Stale { current } => Permit::Stale(current),
            Verdict::New => match table.record_revision(env, mine, &record).await {
                Ok(Some(applied)) => {
                    tracing::info!(env, revision = %mine, generation = applied.generation, "new spec revision recorded in the lease table");
                    if let Ok(mut r) = lease.record.lock() {
                        r.history = r.applied.take().into_iter().chain(r.history.drain(..)).collect();
                        r.applied = Some(applied);
                    }
                    Permit::Write(writing)
                }
                Ok(None) => Permit::Later("the lease item changed meanwhile; the next pass reads it again".into()),
                Err(e) => Permit::Later(format!("cannot record the spec revision: {e}")),
            },
        }
    }

    /// Whether this replica writes `env` now (always, without a lease table).
    pub fn leads(&self, env: &str) -> bool {
        self.table.is_none() || self.envs.get(env).is_some_and(|l| l.usable())
    }

    /// Records the result of a writing pass in the lease item (best effort).
    pub async fn record_pass(&self, env: &str, result: &str) {
        let Some(table) = &self.table else { return };
        match table.record_pass(env, result).await {
            Ok(true) => {}
            Ok(false) => tracing::error!(env, "the pass finished after the lease was lost; its result is not recorded"),
            Err(e) => tracing::warn!(env, error = %e, "could not record the pass in the lease table"),
        }
    }

    /// Takes part in the table until stopped; then gives every lease back as
    /// soon as no writing pass of its environment is in flight (renewing
    /// meanwhile, for at most `grace`).
    pub async fn keep(self: Arc<Self>, mut stop: watch::Receiver<bool>, grace: Duration) {
        let Some(table) = &self.table else { return };
        let mut turns = tokio::time::interval(table.renew_every());
        turns.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        turns.tick().await;
        loop {
            tokio::select! {
                _ = turns.tick() => {}
                _ = stop.changed() => break,
            }
            self.turn().await;
        }
        let limit = table.renew_every();
        let deadline = Instant::now() + grace;
        for lease in self.envs.values() {
            lease.yielding.store(true, Ordering::SeqCst);
        }
        loop {
            for (env, lease) in &self.envs {
                if !lease.held.load(Ordering::SeqCst) {
                    continue;
                }
                if let Ok(_exclusive) = lease.writers.clone().try_write_owned() {
                    lease.drop_lease();
                    if !matches!(tokio::time::timeout(limit, table.release(env)).await, Ok(Ok(()))) {
                        tracing::warn!(env = %env, "could not give the lease back; it expires by itself");
                    }
                }
            }
            let still_held: Vec<&String> = self.envs.iter().filter(|(_, l)| l.held.load(Ordering::SeqCst)).map(|(e, _)| e).collect();
            if still_held.is_empty() || Instant::now() >= deadline {
                break;
            }
            self.renew_held(table).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let _ = tokio::time::timeout(limit, table.leave()).await;
        self.publish();
    }

    /// Renews every lease held, at once; a lease answered "not yours" is
    /// dropped, one that got no answer stays held until it lapses locally.
    async fn renew_held(&self, table: &LeaseTable) {
        let (limit, duration) = (table.renew_every(), table.duration());
        let renewals = self.envs.iter().filter(|(_, l)| l.held.load(Ordering::SeqCst)).map(|(env, lease)| async move {
            let sent = Instant::now();
            match tokio::time::timeout(limit, table.renew(env)).await {
                Ok(Ok(Some(record))) => lease.hold(sent, duration, limit, record),
                Ok(Ok(None)) => {
                    tracing::warn!(env = %env, "the lease is no longer ours");
                    lease.drop_lease();
                }
                Ok(Err(e)) => tracing::warn!(env = %env, error = %e, "renewing the lease failed; writes stop when it lapses"),
                Err(_) => tracing::warn!(env = %env, "renewing the lease got no answer in time; writes stop when it lapses"),
            }
        });
        futures::future::join_all(renewals).await;
    }

    /// One turn: renew what is held (first: it must not lapse), announce this
    /// replica, read the table, move.
    pub async fn turn(&self) {
        let Some(table) = &self.table else { return };
        let (limit, duration) = (table.renew_every(), table.duration());
        self.renew_held(table).await;
        let envs: Vec<String> = self.envs.keys().cloned().collect();
        if let Err(e) = bounded(limit, table.heartbeat(&envs)).await {
            tracing::warn!(error = %e, "lease table: announcing this replica failed");
        }
        let view = match bounded(limit, table.scan()).await {
            Ok(view) => view,
            Err(e) => {
                tracing::warn!(error = %e, "lease table unreadable; keeping only the leases renewed");
                self.publish();
                return;
            }
        };
        if let Err(e) = bounded(limit, table.forget_dead_replicas(&view)).await {
            tracing::debug!(error = %e, "could not delete dead replicas' announcements");
        }
        let me = &table.me().id;
        let others: Vec<share::Replica> = view.replicas.iter().filter(|r| r.id != *me).cloned().collect();
        let leases = view.envs.iter().map(|(e, r)| (e.clone(), r.view(view.now))).collect();
        let moves = share::moves(me, &envs, &others, &leases);
        for (env, lease) in &self.envs {
            let was_held = lease.held.load(Ordering::SeqCst);
            if moves.release.contains(env) {
                lease.yielding.store(true, Ordering::SeqCst);
                // Given back only once no writing pass is in flight; kept (renewed) meanwhile.
                if let Ok(_exclusive) = lease.writers.clone().try_write_owned() {
                    if bounded(limit, table.release(env)).await.is_ok() {
                        lease.drop_lease();
                        tracing::info!(env = %env, "lease given back (rebalancing, or a one-off writer asked for it)");
                    }
                }
            } else {
                lease.yielding.store(false, Ordering::SeqCst);
                let ours_by_table = moves.renew.contains(env);
                if moves.take.contains(env) || (ours_by_table && !was_held) {
                    let sent = Instant::now();
                    match bounded(limit, table.acquire(env)).await {
                        Ok(Some(record)) => lease.hold(sent, duration, limit, record),
                        _ => lease.drop_lease(),
                    }
                } else if !ours_by_table {
                    lease.drop_lease();
                }
            }
            if !lease.held.load(Ordering::SeqCst) {
                lease.yielding.store(false, Ordering::SeqCst);
                if let (Ok(mut record), Some(read)) = (lease.record.lock(), view.envs.get(env)) {
                    *record = read.clone();
                }
            }
            let held = lease.held.load(Ordering::SeqCst);
            if held != was_held {
                tracing::info!(env = %env, leader = held, "leadership of the environment changed");
            }
        }
        self.publish();
    }

    /// The environments this replica leads.
    pub fn leading(&self) -> Vec<String> {
        self.envs.iter().filter(|(_, l)| self.table.is_none() || l.held.load(Ordering::SeqCst)).map(|(e, _)| e.clone()).collect()
    }

    fn publish(&self) {
        let leading = self.leading();
        let now = crate::lease::now_ms();
        let holders = self
            .envs
            .iter()
            .filter_map(|(env, lease)| {
                let record = lease.record.lock().ok()?;
                let (id, host, since) = record.live_holder(now)?;
                Some((env.clone(), serde_json::json!({ "id": id, "host": host, "since": crate::lease::utc(since) })))
            })
            .collect();
        if let Ok(mut s) = self.status.lock() {
            s.set_holders(holders);
            if s.set_leading(&leading) {
                tracing::info!(leading = ?leading, "this replica now leads these environments");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_lease_not_renewed_in_time_stops_the_pass_holding_it() {
        let lease = Arc::new(EnvLease::default());
        // Renewed now for a 3 s lease: ours for sure for 2 s (a turn kept as margin).
        lease.hold(Instant::now(), Duration::from_secs(3), Duration::from_secs(1), EnvRecord::default());
        assert!(lease.usable());
        let writing = Writing { _guard: None, lease: Some(lease.clone()) };
        let pass = async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            "finished"
        };
        let started = tokio::time::Instant::now();
        assert_eq!(super::super::while_held(pass, &writing).await, None, "stopped, not finished");
        let stopped = started.elapsed();
        assert!(stopped >= Duration::from_secs(2) && stopped < Duration::from_millis(2200), "{stopped:?}");
        assert!(!lease.usable(), "no new pass starts either");
        // A renewal that arrives in time keeps it going.
        lease.hold(Instant::now(), Duration::from_secs(3), Duration::from_secs(1), EnvRecord::default());
        let short = async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            "finished"
        };
        assert_eq!(super::super::while_held(short, &writing).await, Some("finished"));
    }

    #[test]
    fn a_yielding_lease_starts_no_pass_and_a_dropped_one_none_at_all() {
        let lease = EnvLease::default();
        lease.hold(Instant::now(), Duration::from_secs(30), Duration::from_secs(10), EnvRecord::default());
        lease.yielding.store(true, Ordering::SeqCst);
        assert!(lease.valid() && !lease.usable());
        lease.yielding.store(false, Ordering::SeqCst);
        assert!(lease.usable());
        lease.drop_lease();
        assert!(!lease.valid());
    }
}

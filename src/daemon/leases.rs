//! The daemon's side of the lease table: every turn (a third of the lease
//! duration) it announces itself, reads the table, and takes, renews or gives
//! back environment leases as [`share::moves`] says. A pass writes only while
//! its environment's lease is held and its spec is not stale; a lease is
//! given back only once no writing pass of that environment is in flight.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, OwnedRwLockReadGuard, RwLock};

use super::http::SharedStatus;
use crate::lease::revision::{judge, Applied, Revision, Verdict};
use crate::lease::{share, EnvRecord, LeaseTable};

/// One environment's lease, as this replica knows it.
#[derive(Default)]
struct EnvLease {
    held: AtomicBool,
    /// Giving the lease back: no new writing pass starts.
    yielding: AtomicBool,
    /// The item as last read or written.
    record: Mutex<EnvRecord>,
    /// Held (shared) by writing passes; taken (exclusive) to give the lease back.
    writers: Arc<RwLock<()>>,
    /// Serialises recording a new revision.
    claim: tokio::sync::Mutex<()>,
}

/// Whether a pass may write.
pub enum Permit {
    /// Write; the guard keeps the lease from being given back meanwhile.
    Write(Option<OwnedRwLockReadGuard<()>>),
    /// Observe only: another writer has the lease.
    NotLeader,
    /// Observe only: the spec is older than the revision applied.
    Stale(Box<Applied>),
    /// Observe only this time (the lease item changed under us, or could not be read).
    Later(String),
}

/// The leases of the environments one daemon runs; without a table it is the only writer.
pub struct Leases {
    table: Option<LeaseTable>,
    envs: BTreeMap<String, EnvLease>,
    status: SharedStatus,
}

impl Leases {
    /// The leases of `envs` in `table` (`None`: the only replica, writing everything).
    pub fn new(table: Option<LeaseTable>, envs: &[String], status: SharedStatus) -> Self {
        let envs = envs.iter().map(|e| (e.clone(), EnvLease::default())).collect();
        Leases { table, envs, status }
    }

    /// Whether a pass of `env` with spec revision `mine` may write; a
    /// revision the table has not seen is recorded first (next generation).
    pub async fn permit(&self, env: &str, mine: &Revision) -> Permit {
        let Some(table) = &self.table else { return Permit::Write(None) };
        let Some(lease) = self.envs.get(env) else { return Permit::NotLeader };
        if !lease.held.load(Ordering::SeqCst) || lease.yielding.load(Ordering::SeqCst) {
            return Permit::NotLeader;
        }
        let Ok(guard) = lease.writers.clone().try_read_owned() else { return Permit::NotLeader };
        let _claim = lease.claim.lock().await;
        let record = lease.record.lock().map(|r| r.clone()).unwrap_or_default();
        match judge(mine, record.applied.as_ref(), &record.history) {
            Verdict::Current => Permit::Write(Some(guard)),
            Verdict::Stale { current } => Permit::Stale(current),
            Verdict::New => match table.record_revision(env, mine, &record).await {
                Ok(Some(applied)) => {
                    tracing::info!(env, revision = %mine, generation = applied.generation, "new spec revision recorded in the lease table");
                    if let Ok(mut r) = lease.record.lock() {
                        r.history = r.applied.take().into_iter().chain(r.history.drain(..)).collect();
                        r.applied = Some(applied);
                    }
                    Permit::Write(Some(guard))
                }
                Ok(None) => Permit::Later("the lease item changed meanwhile; the next pass reads it again".into()),
                Err(e) => Permit::Later(format!("cannot record the spec revision: {e}")),
            },
        }
    }

    /// Records the result of a writing pass in the lease item (best effort).
    pub async fn record_pass(&self, env: &str, result: &str) {
        let Some(table) = &self.table else { return };
        if let Err(e) = table.record_pass(env, result).await {
            tracing::warn!(env, error = %e, "could not record the pass in the lease table");
        }
    }

    /// Takes part in the table until stopped, then gives every lease back.
    pub async fn keep(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let Some(table) = &self.table else { return };
        // Turns start a third of a lease apart, however long the last one took.
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
        for (env, lease) in &self.envs {
            if lease.held.swap(false, Ordering::SeqCst) {
                match tokio::time::timeout(table.renew_every(), table.release(env)).await {
                    Ok(Ok(())) => {}
                    _ => tracing::warn!(env = %env, "could not give the lease back; it expires by itself"),
                }
            }
        }
        let _ = tokio::time::timeout(table.renew_every(), table.leave()).await;
        self.publish();
    }

    /// One turn: renew the leases held (first: they must not lapse), announce
    /// this replica, read the table, move. Every call is bounded by a turn, so
    /// a hung table steps this replica down long before another may take over.
    pub async fn turn(&self) {
        let Some(table) = &self.table else { return };
        let limit = table.renew_every();
        let renewals = self.envs.iter().filter(|(_, l)| l.held.load(Ordering::SeqCst)).map(|(env, lease)| async move {
            let kept = bounded(limit, table.renew(env)).await.unwrap_or(false);
            lease.held.store(kept, Ordering::SeqCst);
        });
        futures::future::join_all(renewals).await;
        if let Err(e) = bounded(limit, table.heartbeat()).await {
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
        let me = &table.me().id;
        let others: Vec<String> = view.replicas.iter().filter(|r| *r != me).cloned().collect();
        let leases = view.envs.iter().map(|(e, r)| (e.clone(), r.view(view.now))).collect();
        let envs: Vec<String> = self.envs.keys().cloned().collect();
        let moves = share::moves(me, &envs, &others, &leases);
        for (env, lease) in &self.envs {
            if let (Ok(mut record), Some(read)) = (lease.record.lock(), view.envs.get(env)) {
                *record = read.clone();
            }
            let held = if moves.release.contains(env) {
                lease.yielding.store(true, Ordering::SeqCst);
                // Given back only once no writing pass is in flight; renewed meanwhile.
                match lease.writers.clone().try_write_owned() {
                    Ok(_exclusive) => {
                        let released = bounded(limit, table.release(env)).await.is_ok();
                        lease.yielding.store(false, Ordering::SeqCst);
                        if released {
                            tracing::info!(env = %env, "lease given back (rebalancing, or a one-off writer asked for it)");
                        }
                        !released
                    }
                    Err(_) => lease.held.load(Ordering::SeqCst),
                }
            } else if moves.renew.contains(env) {
                lease.held.load(Ordering::SeqCst)
            } else if moves.take.contains(env) {
                bounded(limit, table.acquire(env)).await.unwrap_or(false)
            } else {
                false
            };
            if !held {
                lease.yielding.store(false, Ordering::SeqCst);
            }
            if held != lease.held.swap(held, Ordering::SeqCst) {
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
        if let Ok(mut s) = self.status.lock() {
            if s.set_leading(&leading) {
                tracing::info!(leading = ?leading, "this replica now leads these environments");
            }
        }
    }
}

/// `work`, failing when it takes longer than `limit`.
async fn bounded<T>(limit: Duration, work: impl std::future::Future<Output = Result<T, crate::aws::AwsError>>) -> Result<T, String> {
    match tokio::time::timeout(limit, work).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {limit:?}")),
    }
}

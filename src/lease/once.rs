//! A one-off writer (`reconcile --once`): it asks for the environment's
//! lease (a daemon holding it gives it back at its next turn), takes it,
//! keeps it renewed for the pass, and gives it back. It never writes without
//! the lease, nor with a spec older than the revision applied (unless forced).

use std::future::Future;
use std::time::{Duration, Instant};

use super::revision::{judge, Applied, Revision, Verdict};
use super::{bounded, now_ms, utc, LeaseTable};
use crate::aws::AwsError;
use crate::engine::report::Report;

/// How a one-off pass went.
pub enum Once {
    /// It ran (and wrote what it had to).
    Ran(Box<Report>),
    /// Another writer kept the lease for the whole wait.
    Held(String),
    /// The spec is older than the revision applied: nothing was written.
    Stale(Box<Applied>),
    /// The lease was lost during the pass, which was stopped.
    Lost(String),
}

/// Runs `pass` under `env`'s lease: waits up to `wait` for it; records
/// `revision` (a new generation when the table has not seen it); refuses a
/// stale revision unless `force`.
pub async fn under_lease<F: Future<Output = Report>>(
    table: &LeaseTable,
    env: &str,
    revision: &Revision,
    wait: Duration,
    force: bool,
    pass: F,
) -> Result<Once, AwsError> {
    let started = Instant::now();
    let every = table.renew_every();
    let taken = loop {
        // The request lasts a little past the wait, so the holder is not back before we try once more.
        let until = now_ms() + i64::try_from((wait + every * 2).as_millis()).unwrap_or(i64::MAX / 4);
        bounded(every, table.request(env, until)).await?;
        let sent = Instant::now();
        if let Some(record) = bounded(every, table.acquire(env)).await? {
            break Some((sent, record));
        }
        if started.elapsed() >= wait {
            break None;
        }
        tokio::time::sleep(Duration::from_secs(1).min(wait.saturating_sub(started.elapsed())).max(Duration::from_millis(100))).await;
    };
    let Some((sent, record)) = taken else {
        let record = bounded(every, table.get(env)).await?;
        let _ = bounded(every, table.withdraw(env)).await;
        let now = now_ms();
        let holder = match (record.live_holder(now), &record.request) {
            (Some((id, host, since)), _) => format!("held by {id} on {host} since {}", utc(since)),
            (None, Some((by, until))) if *until > now && *by != table.me().id => format!("asked for by {by} (another one-off writer) until {}", utc(*until)),
            _ => "held by another writer".to_string(),
        };
        return Ok(Once::Held(format!("the lease of {env} is {holder}; waited {}s (--wait SECONDS to wait longer)", wait.as_secs())));
    };
    // Ours for sure until a turn before it could run out in the table.
    let valid_until = sent + table.duration().saturating_sub(every);
    let outcome = write(table, env, revision, force, record, valid_until, pass).await;
    let released = bounded(every, table.release(env)).await;
    let withdrawn = bounded(every, table.withdraw(env)).await;
    let outcome = outcome?;
    released?;
    withdrawn?;
    Ok(outcome)
}

/// The pass itself, the lease held (`record` as of taking it, ours for sure
/// until `valid_until`): judge the revision, run, renew meanwhile.
async fn write<F: Future<Output = Report>>(
    table: &LeaseTable,
    env: &str,
    revision: &Revision,
    force: bool,
    record: super::EnvRecord,
    mut valid_until: Instant,
    pass: F,
) -> Result<Once, AwsError> {
    match judge(revision, record.applied.as_ref(), &record.history) {
        Verdict::Current => {}
        Verdict::Stale { current } if !force => return Ok(Once::Stale(current)),
        verdict => {
            if let Verdict::Stale { current } = verdict {
                tracing::warn!(env, revision = %revision, over = %current.revision, generation = current.generation, "FORCED: applying a spec older than the revision applied");
                eprintln!("warning: --force: applying {revision} to {env} over the newer revision {} (generation {})", current.revision, current.generation);
            }
            if bounded(table.renew_every(), table.record_revision(env, revision, &record)).await?.is_none() {
                return Ok(Once::Lost(format!("the lease item of {env} changed while recording the revision; nothing was written")));
            }
        }
    }
    let every = table.renew_every();
    if Instant::now() >= valid_until {
        return Ok(Once::Lost(format!("the lease of {env} could lapse before the pass starts; nothing was written")));
    }
    // Renewed in the background, so the pass never waits on the table; a
    // renewal that fails or goes unanswered is tried again at the next tick,
    // and the pass is stopped once the lease could lapse.
    let (held_tx, mut held) = tokio::sync::watch::channel(Ok(valid_until));
    let renewer = async {
        let mut renewals = tokio::time::interval(every);
        renewals.tick().await;
        loop {
            renewals.tick().await;
            let sent = Instant::now();
            match tokio::time::timeout(every, table.renew(env)).await {
                Ok(Ok(Some(_))) => valid_until = sent + table.duration().saturating_sub(every),
                Ok(Ok(None)) => {
                    let _ = held_tx.send(Err(format!("the lease of {env} was taken by another writer; the pass was stopped")));
                    return;
                }
                _ => tracing::warn!(env, "renewing the lease failed; trying again"),
            }
            let _ = held_tx.send(Ok(valid_until));
        }
    };
    tokio::pin!(pass, renewer);
    let mut check = tokio::time::interval(Duration::from_millis(100));
    let report = loop {
        tokio::select! {
            report = &mut pass => break report,
            _ = &mut renewer => {}
            _ = check.tick() => match &*held.borrow_and_update() {
                Ok(until) if Instant::now() < *until => {}
                Ok(_) => return Ok(Once::Lost(format!("the lease of {env} could not be renewed in time; the pass was stopped"))),
                Err(why) => return Ok(Once::Lost(why.clone())),
            },
        }
    };
    let result = super::pass_line(&report, revision);
    if !bounded(every, table.record_pass(env, &result)).await? {
        tracing::warn!(env, "the lease was lost as the pass ended; its result is not recorded");
    }
    Ok(Once::Ran(Box::new(report)))
}

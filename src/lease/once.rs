//! A one-off writer (`reconcile --once`): it asks for the environment's
//! lease (a daemon holding it gives it back at its next turn), takes it,
//! keeps it renewed for the pass, and gives it back. It never writes without
//! the lease, nor with a spec older than the revision applied (unless forced).

use std::future::Future;
use std::time::{Duration, Instant};

use super::revision::{judge, Applied, Revision, Verdict};
use super::{now_ms, utc, LeaseTable};
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
    let holds = loop {
        // The request lasts a little past the wait, so the holder is not back before we try once more.
        let until = now_ms() + i64::try_from((wait + table.renew_every() * 2).as_millis()).unwrap_or(i64::MAX / 4);
        table.request(env, until).await?;
        if table.acquire(env).await? {
            break true;
        }
        if started.elapsed() >= wait {
            break false;
        }
        tokio::time::sleep(Duration::from_secs(1).min(wait.saturating_sub(started.elapsed())).max(Duration::from_millis(100))).await;
    };
    if !holds {
        let record = table.get(env).await?;
        let _ = table.withdraw(env).await;
        let holder = match record.live_holder(now_ms()) {
            Some((id, host, since)) => format!("held by {id} on {host} since {}", utc(since)),
            None => "held by another writer".to_string(),
        };
        return Ok(Once::Held(format!("the lease of {env} is {holder}; waited {}s (--wait SECONDS to wait longer)", wait.as_secs())));
    }
    let outcome = write(table, env, revision, force, pass).await;
    let released = table.release(env).await;
    let withdrawn = table.withdraw(env).await;
    let outcome = outcome?;
    released?;
    withdrawn?;
    Ok(outcome)
}

/// The pass itself, the lease held: judge the revision, run, renew meanwhile.
async fn write<F: Future<Output = Report>>(table: &LeaseTable, env: &str, revision: &Revision, force: bool, pass: F) -> Result<Once, AwsError> {
    let record = table.get(env).await?;
    match judge(revision, record.applied.as_ref(), &record.history) {
        Verdict::Current => {}
        Verdict::Stale { current } if !force => return Ok(Once::Stale(current)),
        verdict => {
            if let Verdict::Stale { current } = verdict {
                tracing::warn!(env, revision = %revision, over = %current.revision, generation = current.generation, "FORCED: applying a spec older than the revision applied");
                eprintln!("warning: --force: applying {revision} to {env} over the newer revision {} (generation {})", current.revision, current.generation);
            }
            if table.record_revision(env, revision, &record).await?.is_none() {
                return Ok(Once::Lost(format!("the lease item of {env} changed while recording the revision; nothing was written")));
            }
        }
    }
    tokio::pin!(pass);
    let every = table.renew_every();
    let mut renewals = tokio::time::interval(every);
    renewals.tick().await;
    // A renewal that fails or goes unanswered is tried again at the next tick;
    // the pass stops once the lease could run out before another renewal.
    let mut valid_until = Instant::now() + every * 3;
    let report = loop {
        tokio::select! {
            report = &mut pass => break report,
            _ = renewals.tick() => {
                let attempt = Instant::now();
                match tokio::time::timeout(every, table.renew(env)).await {
                    Ok(Ok(true)) => valid_until = attempt + every * 3,
                    Ok(Ok(false)) => return Ok(Once::Lost(format!("the lease of {env} was taken by another writer; the pass was stopped before its next write"))),
                    _ if Instant::now() + every * 2 < valid_until => tracing::warn!(env, "renewing the lease failed; trying again"),
                    _ => return Ok(Once::Lost(format!("the lease of {env} could not be renewed in time; the pass was stopped before its next write"))),
                }
            }
        }
    };
    let result = super::pass_line(&report, revision);
    table.record_pass(env, &result).await?;
    Ok(Once::Ran(Box::new(report)))
}

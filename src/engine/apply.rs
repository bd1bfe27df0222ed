//! One reconcile pass: observe every kind concurrently, plan, and (in apply
//! mode) carry out the writes wave by wave with retries and backoff.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};

use super::plan::{plan_kind, waves, Action, Outcome, Step};
use super::report::Report;
use super::{Kind, ResourceKey};
use crate::aws::{AwsError, CallCounter};
use crate::spec::EnvSpec;

/// Whether a pass only plans or also writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Observe and plan; never write.
    Plan,
    /// Observe, plan and apply.
    Apply,
}

/// How many writes run at once within one dependency wave.
const WRITE_CONCURRENCY: usize = 8;

/// Retry policy for retryable AWS errors (throttling, conflicts such as
/// SQS's 60-second QueueDeletedRecently, transient failures).
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// First delay.
    pub initial: Duration,
    /// Give up after this long.
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { initial: Duration::from_millis(500), max_elapsed: Duration::from_secs(90) }
    }
}

/// Runs one pass for `env` over `kinds` (registered in dependency order).
pub async fn reconcile(env: &EnvSpec, kinds: &[Box<dyn Kind>], counter: &CallCounter, mode: Mode, retry: &RetryPolicy) -> Report {
    let started = Instant::now();
    let observed = futures::future::join_all(kinds.iter().map(|kind| async move {
        let desired = kind.desired(env);
        let live = kind.observe(&desired).await;
        (desired, live)
    }))
    .await;

    let mut steps: Vec<Step> = Vec::new();
    let mut owners: Vec<usize> = Vec::new();
    let mut errors = Vec::new();
    for (k, (desired, live)) in observed.into_iter().enumerate() {
        let kind = &kinds[k];
        match live {
            Ok(live) => {
                let planned = plan_kind(kind.name(), &env.env, kind.immutable_fields(), desired, live);
                owners.extend(std::iter::repeat_n(k, planned.len()));
                steps.extend(planned);
            }
            Err(e) => errors.push(format!("observe {}: {e}", kind.name())),
        }
    }

    if mode == Mode::Apply {
        apply(&mut steps, &owners, kinds, retry).await;
    }
    Report::new(env, mode, steps, errors, counter.stats(), started.elapsed())
}

async fn apply(steps: &mut [Step], owners: &[usize], kinds: &[Box<dyn Kind>], retry: &RetryPolicy) {
    let mut failed: BTreeSet<ResourceKey> = BTreeSet::new();
    for wave in waves(steps) {
        let mut runnable = Vec::new();
        for &i in &wave {
            let step = &mut steps[i];
            if !matches!(step.action, Action::Create | Action::Update) {
                continue;
            }
            let deps = step.desired.iter().flat_map(|d| d.depends_on.iter());
            if let Some(dep) = deps.into_iter().find(|k| failed.contains(*k)) {
                step.outcome = Some(Outcome::DependencyFailed(dep.to_string()));
                failed.insert(step.key.clone());
                continue;
            }
            runnable.push(i);
        }
        let results: Vec<(usize, Result<(), AwsError>)> = stream::iter(runnable)
            .map(|i| {
                let step = &steps[i];
                let kind = &kinds[owners[i]];
                async move { (i, with_retries(retry, || write(kind.as_ref(), step)).await) }
            })
            .buffer_unordered(WRITE_CONCURRENCY)
            .collect()
            .await;
        for (i, result) in results {
            record(&mut steps[i], result, &mut failed);
        }
    }
    // Deletes last, in reverse registration order (dependents before what they depend on).
    let mut deletes: Vec<usize> = (0..steps.len()).filter(|&i| steps[i].action == Action::Delete).collect();
    deletes.sort_by_key(|&i| std::cmp::Reverse(owners[i]));
    for i in deletes {
        let kind = &kinds[owners[i]];
        let result = with_retries(retry, || write(kind.as_ref(), &steps[i])).await;
        record(&mut steps[i], result, &mut failed);
    }
}

fn record(step: &mut Step, result: Result<(), AwsError>, failed: &mut BTreeSet<ResourceKey>) {
    step.outcome = Some(match result {
        Ok(()) => Outcome::Applied,
        Err(e) => {
            tracing::warn!(resource = %step.key, error = %e, "apply failed");
            failed.insert(step.key.clone());
            Outcome::Failed(e.to_string())
        }
    });
}

async fn write(kind: &dyn Kind, step: &Step) -> Result<(), AwsError> {
    match (step.action, &step.desired, &step.live) {
        (Action::Create, Some(d), _) => {
            tracing::info!(resource = %step.key, name = %step.name, "creating");
            kind.create(d).await
        }
        (Action::Update, Some(d), Some(l)) => {
            tracing::info!(resource = %step.key, name = %step.name, changes = step.changes.len(), "updating");
            kind.update(d, l, &step.delta).await
        }
        (Action::Delete, _, Some(l)) => {
            tracing::info!(resource = %step.key, name = %step.name, "deleting");
            kind.delete(l).await
        }
        _ => Err(AwsError::unexpected("engine", format!("step {} has nothing to apply", step.key))),
    }
}

/// The backoff crate's clock, read from tokio so that paused-time tests see time pass.
#[derive(Debug, Default)]
struct TokioClock;

impl backoff::Clock for TokioClock {
    fn now(&self) -> std::time::Instant {
        tokio::time::Instant::now().into_std()
    }
}

/// Runs `op` until it succeeds, fails with a non-retryable error, or the policy's time runs out.
pub async fn with_retries<F, Fut>(policy: &RetryPolicy, mut op: F) -> Result<(), AwsError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), AwsError>>,
{
    let backoff = backoff::exponential::ExponentialBackoffBuilder::<TokioClock>::new()
        .with_initial_interval(policy.initial)
        .with_max_interval(Duration::from_secs(10))
        .with_max_elapsed_time(Some(policy.max_elapsed))
        .build();
    backoff::future::retry(backoff, || {
        let attempt = op();
        async move {
            attempt.await.map_err(|e| {
                if e.class.is_retryable() {
                    tracing::debug!(error = %e, "retrying");
                    backoff::Error::transient(e)
                } else {
                    backoff::Error::permanent(e)
                }
            })
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::ErrorClass;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn err(class: ErrorClass) -> AwsError {
        AwsError { operation: "SQS.CreateQueue", class, code: None, message: "x".into() }
    }

    #[tokio::test(start_paused = true)]
    async fn retryable_errors_are_retried_until_success() {
        let calls = AtomicU32::new(0);
        let policy = RetryPolicy::default();
        let result = with_retries(&policy, || {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move { if n < 3 { Err(err(ErrorClass::Throttled)) } else { Ok(()) } }
        })
        .await;
        assert!(result.is_ok());
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn invalid_errors_are_not_retried() {
        let calls = AtomicU32::new(0);
        let result = with_retries(&RetryPolicy::default(), || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(err(ErrorClass::Invalid)) }
        })
        .await;
        assert_eq!(result.map_err(|e| e.class), Err(ErrorClass::Invalid));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_stop_when_time_runs_out() {
        let calls = AtomicU32::new(0);
        let policy = RetryPolicy { initial: Duration::from_millis(100), max_elapsed: Duration::from_secs(5) };
        let result = with_retries(&policy, || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(err(ErrorClass::Conflict)) }
        })
        .await;
        assert!(result.is_err());
        let n = calls.load(Ordering::SeqCst);
        assert!((3..40).contains(&n), "{n} attempts");
    }
}

//! One reconcile pass: observe every kind concurrently, plan, and (in apply
//! mode) carry out the writes wave by wave with retries and backoff.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use futures::stream::{self, StreamExt};

pub use super::narrowing::{Narrowing, Writes};
use super::order::waves;
use super::plan::{Action, Outcome, Step};
use super::planning::{plan_pass, Planned, PlannedStep, Remembered};
use super::references::ReferenceMap;
use super::report::Report;
use super::{Desired, Kind, OnImmutableChange, ReadCache, ResourceKey, Value};
use crate::aws::{AwsError, CallCounter, ErrorClass};
use crate::spec::EnvSpec;

use super::Mode;

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
/// When a resource had to be replaced, or a create retry found the resource
/// an earlier attempt had made, a second round re-observes and applies what is
/// still missing (routes pointing at a new NAT gateway, the settings a create
/// makes after the create call, ...).
/// `narrowing` says which kinds it writes and which resources it covers.
pub async fn reconcile(env: &EnvSpec, kinds: &[Box<dyn Kind>], counter: &CallCounter, mode: Mode, retry: &RetryPolicy, narrowing: &Narrowing) -> Report {
    let started = Instant::now();
    let calls_before = counter.stats();
    let defer = narrowing.writes;
    let mut planned = plan_pass(env, kinds, narrowing).await;
    let mut steps = Vec::new();
    let mut errors = std::mem::take(&mut planned.errors);
    let mut violations = std::mem::take(&mut planned.review.violations);
    let findings = std::mem::take(&mut planned.review.findings);
    if mode == Mode::Apply && planned.review.errors.is_empty() {
        let second_round = apply(&mut planned, env, kinds, retry, defer, &mut violations).await;
        steps.extend(planned.steps.drain(..).map(|p| p.step));
        remember(narrowing, &planned.remembered, &planned.handles);
        if let Some(why) = second_round {
            let mut again = plan_pass(env, kinds, narrowing).await;
            apply(&mut again, env, kinds, retry, defer, &mut violations).await;
            remember(narrowing, &again.remembered, &again.handles);
            errors.append(&mut again.errors);
            steps.extend(again.steps.into_iter().map(|p| p.step).filter(|s| s.action != Action::Noop).map(|mut s| {
                s.note = Some(format!("{}{}", why.as_note(), s.note.map(|n| format!("; {n}")).unwrap_or_default()));
                s
            }));
        }
    } else {
        steps.extend(planned.steps.drain(..).map(|p| p.step));
        remember(narrowing, &planned.remembered, &planned.handles);
    }
    if !planned.review.errors.is_empty() {
        errors.append(&mut planned.review.errors);
        errors.push("nothing was applied".into());
    }
    let mut report = Report::new(env, mode, steps, errors, counter.stats().since(&calls_before), started.elapsed());
    report.set_findings(findings);
    report.invariant_violations = violations;
    report.layers = kinds.iter().map(|k| k.rules()).map(|r| (r.kind, r.layer)).collect();
    report
}

/// Keeps what a pass learnt of the handles for the passes after it: for
/// `kinds` (those it writes and read without error), what it holds now — what
/// it saw and made, a deleted resource's handle forgotten. Other kinds' handles
/// are left to the loop that writes them (another loop may be changing them).
/// Of the kinds it read but another loop writes, it adds only what nothing told yet.
fn remember(narrowing: &Narrowing, remembered: &Remembered, handles: &ReferenceMap) {
    if let Some(Ok(mut known)) = narrowing.known.as_ref().map(|k| k.lock()) {
        let mut kept = known.without_kinds(&remembered.written);
        kept.merge(&handles.only_kinds(&remembered.written));
        kept.merge_missing(&handles.only_kinds(&remembered.seen));
        *known = kept;
    }
}

/// Why a pass needs a second round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SecondRound {
    /// A resource was replaced; what refers to it must follow.
    Replaced,
    /// A create retry found what an earlier attempt made; its remaining settings must be applied.
    FoundEarlierCreate,
}

impl SecondRound {
    fn as_note(self) -> &'static str {
        match self {
            SecondRound::Replaced => "after a replacement",
            SecondRound::FoundEarlierCreate => "after a retried create",
        }
    }
}

/// Applies a plan; says whether a second round is needed.
async fn apply(
    planned: &mut Planned,
    env: &EnvSpec,
    kinds: &[Box<dyn Kind>],
    retry: &RetryPolicy,
    writes: Writes,
    violations: &mut Vec<String>,
) -> Option<SecondRound> {
    let Planned { steps, handles, reads, .. } = planned;
    let deferred = |step: &PlannedStep| !writes.covers(kinds[step.kind].rules().scope);
    let mut failed: BTreeSet<ResourceKey> = BTreeSet::new();
    // Resources another pass is to create: what depends on them waits for it.
    let mut awaited: BTreeSet<ResourceKey> = BTreeSet::new();
    let mut second_round = None;
    for wave in waves(steps) {
        let mut runnable = Vec::new();
        for &i in &wave {
            let left_to_another_pass = deferred(&steps[i]);
            let step = &mut steps[i].step;
            if !matches!(step.action, Action::Create | Action::Adopt | Action::Update | Action::Replace) {
                continue;
            }
            let awaits = step.desired.iter().flat_map(|d| d.depends_on.iter()).any(|k| awaited.contains(k));
            if awaits || left_to_another_pass {
                step.outcome = Some(Outcome::Deferred);
                if awaits || matches!(step.action, Action::Create | Action::Replace) {
                    awaited.insert(step.key.clone());
                }
                continue;
            }
            let deps = step.desired.iter().flat_map(|d| d.depends_on.iter());
            // A dependency that failed, or that no observation found (its kind's
            // read failed): writing now would send AWS an unresolved reference.
            let unknown = |k: &ResourceKey| handles.handle_of(k).is_none();
            if let Some(dep) = deps.into_iter().find(|k| failed.contains(*k) || unknown(k)) {
                step.outcome = Some(Outcome::DependencyFailed(dep.to_string()));
                failed.insert(step.key.clone());
                continue;
            }
            runnable.push(i);
        }
        let results: Vec<(usize, Result<Written, AwsError>)> = {
            let (steps, handles, reads) = (&*steps, &*handles, &*reads);
            stream::iter(runnable)
                .map(|i| {
                    let kind = &kinds[steps[i].kind];
                    let step = resolved(&steps[i].step, handles);
                    // One token per create, the same across its retries.
                    let token = if matches!(step.action, Action::Create | Action::Replace) { idempotency_token() } else { String::new() };
                    async move { (i, write_with_retries(kind.as_ref(), env, &step, &token, reads, retry).await) }
                })
                .buffer_unordered(WRITE_CONCURRENCY)
                .collect()
                .await
        };
        for (i, result) in results {
            let step = &mut steps[i].step;
            if let Ok(written) = &result {
                if let Some(handle) = &written.handle {
                    handles.learn(&step.key, handle);
                }
                if written.found_earlier_create {
                    second_round = Some(SecondRound::FoundEarlierCreate);
                } else if step.action == Action::Replace {
                    second_round = second_round.or(Some(SecondRound::Replaced));
                }
            }
            record(step, result.map(|_| ()), &mut failed, violations);
        }
    }
    // Deletes last, in reverse registration order (dependents before what they depend on).
    let (left, mut deletes): (Vec<usize>, Vec<usize>) =
        (0..steps.len()).filter(|&i| steps[i].step.action == Action::Delete).partition(|&i| deferred(&steps[i]));
    for i in left {
        steps[i].step.outcome = Some(Outcome::Deferred);
    }
    deletes.sort_by_key(|&i| std::cmp::Reverse(steps[i].kind));
    for i in deletes {
        let kind = &kinds[steps[i].kind];
        let step = resolved(&steps[i].step, handles);
        let result = write_with_retries(kind.as_ref(), env, &step, "", reads, retry).await;
        record(&mut steps[i].step, result.map(|_| ()), &mut failed, violations);
    }
    second_round
}

/// A token unique to this process and call: 32 hex characters (ECS takes at
/// most 36, EC2 64), from the clock, the process id and a counter.
fn idempotency_token() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or_default();
    let unique = (u64::from(std::process::id()) << 32) ^ COUNTER.fetch_add(1, Ordering::SeqCst);
    format!("{nanos:016x}{unique:016x}")
}

/// A copy of `step` with every reference turned into a physical id.
fn resolved(step: &Step, handles: &ReferenceMap) -> Step {
    let mut s = step.clone();
    let to = |v: &Value| handles.to_handles(v);
    if let Some(d) = &mut s.desired {
        d.fields = ReferenceMap::rewrite(&d.fields, to);
    }
    if let Some(l) = &mut s.live {
        l.fields = ReferenceMap::rewrite(&l.fields, to);
    }
    for c in &mut s.delta.fields {
        c.entry = c.entry.as_ref().map(to);
        c.live = c.live.as_ref().map(to);
        c.desired = c.desired.as_ref().map(to);
    }
    s
}

fn record(step: &mut Step, result: Result<(), AwsError>, failed: &mut BTreeSet<ResourceKey>, violations: &mut Vec<String>) {
    step.outcome = Some(match result {
        Ok(()) => Outcome::Applied,
        Err(e) => {
            if e.class == ErrorClass::Invariant {
                tracing::error!(resource = %step.key, error = %e, "invariant violated");
                violations.push(format!("{}: {}", step.key, e.message));
            } else {
                tracing::warn!(resource = %step.key, error = %e, "apply failed");
            }
            failed.insert(step.key.clone());
            Outcome::Failed(e.to_string())
        }
    });
}

/// What one write did.
#[derive(Debug)]
struct Written {
    /// The handle of the resource a create or replacement made (or found).
    handle: Option<String>,
    /// A retried create found the resource an earlier attempt had made
    /// (its reply was lost), so the create's later calls may not have run.
    found_earlier_create: bool,
}

/// Performs one step, retrying retryable failures. Once an attempt failed in
/// a way that may hide a success (a 5xx, a timeout, a lost reply), or a
/// create was refused as conflicting (the resource may exist already: made by
/// an earlier run whose request was still in flight when it died), a create is
/// retried only after looking the resource up by its ownership tags.
/// Throttled attempts were refused, so they need no lookup (which keeps
/// lookups from adding load while AWS throttles).
async fn write_with_retries(kind: &dyn Kind, env: &EnvSpec, step: &Step, token: &str, reads: &ReadCache, retry: &RetryPolicy) -> Result<Written, AwsError> {
    let may_have_acted = AtomicBool::new(false);
    with_retries(retry, || async {
        let result = write(kind, env, step, token, reads, may_have_acted.load(Ordering::SeqCst)).await;
        // Any retryable failure may follow a call that acted: a lost reply, a
        // conflict with what an earlier attempt made, or a later call of a
        // create made of several (a key, then its alias) throttled after the
        // first one made the resource.
        if result.as_ref().is_err_and(|e| e.class.is_retryable()) {
            may_have_acted.store(true, Ordering::SeqCst);
        }
        result
    })
    .await
}

/// Performs one step.
async fn write(kind: &dyn Kind, env: &EnvSpec, step: &Step, token: &str, reads: &ReadCache, may_exist: bool) -> Result<Written, AwsError> {
    let changed = |()| Written { handle: None, found_earlier_create: false };
    match (step.action, &step.desired, &step.live) {
        (Action::Create, Some(d), _) => create(kind, env, d, token, reads, None, may_exist).await,
        (Action::Update | Action::Adopt, Some(d), Some(l)) => {
            let doing = if step.action == Action::Adopt { "adopting" } else { "updating" };
            tracing::info!(resource = %step.key, name = %step.name, handle = %l.handle, changes = step.changes.len(), "{doing}");
            kind.update(d, l, &step.delta).await.map(changed)
        }
        (Action::Replace, Some(d), Some(l)) => {
            tracing::info!(resource = %step.key, name = %step.name, "replacing");
            if kind.rules().on_immutable_change != OnImmutableChange::NewVersion {
                kind.delete(l, reads).await?;
            }
            create(kind, env, d, token, reads, Some(&l.handle), may_exist).await
        }
        (Action::Delete, _, Some(l)) => {
            tracing::info!(resource = %step.key, name = %step.name, "deleting");
            kind.delete(l, reads).await.map(changed)
        }
        _ => Err(AwsError::unexpected("engine", format!("step {} has nothing to apply", step.key))),
    }
}

/// Creates `desired`; when an earlier attempt may have made it, first looks
/// for it (owned by this environment under the same logical id, and not the
/// resource being replaced).
async fn create(
    kind: &dyn Kind,
    env: &EnvSpec,
    desired: &Desired,
    token: &str,
    reads: &ReadCache,
    replacing: Option<&str>,
    may_exist: bool,
) -> Result<Written, AwsError> {
    if may_exist {
        let live = kind.observe(env, std::slice::from_ref(desired), &ReadCache::default()).await?;
        let earlier =
            live.into_iter().find(|l| l.is_owned_as(&env.env, &desired.key.id) && kind.matches(&env.env, desired, l) && Some(l.handle.as_str()) != replacing);
        if let Some(l) = earlier {
            tracing::info!(resource = %desired.key, handle = %l.handle, "found the resource an earlier attempt created; not creating another");
            return Ok(Written { handle: Some(l.handle), found_earlier_create: true });
        }
    }
    tracing::info!(resource = %desired.key, name = %desired.name, "creating");
    kind.create(desired, token, reads).await.map(|handle| Written { handle: Some(handle), found_earlier_create: false })
}

/// Runs `op` until it succeeds, fails with a non-retryable error, or the
/// policy's time runs out (the sum of the delays between attempts). Delays
/// grow exponentially from `policy.initial` up to 10 s, with jitter; they are
/// slept on tokio's clock, so paused-time tests see them pass.
pub async fn with_retries<T, F, Fut>(policy: &RetryPolicy, op: F) -> Result<T, AwsError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, AwsError>>,
{
    let backoff = ExponentialBuilder::default()
        .with_min_delay(policy.initial)
        .with_max_delay(Duration::from_secs(10))
        .with_jitter()
        .with_total_delay(Some(policy.max_elapsed))
        .without_max_times();
    op.retry(backoff)
        .sleep(tokio::time::sleep)
        .when(|e: &AwsError| e.class.is_retryable())
        .notify(|e: &AwsError, delay: Duration| tracing::debug!(error = %e, ?delay, "retrying"))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::ErrorClass;
    use crate::engine::FieldReader;
    use crate::engine::{ownership_tags, Delta, Desired, Layer, Live, Review, Rules, Scope};
    use crate::spec::model::{DeletionPolicy, Tags};
    use async_trait::async_trait;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Mutex;

    /// An in-memory kind: `a` depends on `b`; creating `fail` fails with `class`;
    /// the first create of `lose_reply.0` happens but answers an error of class `lose_reply.1`.
    struct Fake {
        live: Mutex<Vec<Live>>,
        fail: Option<(&'static str, ErrorClass)>,
        refuse_plan: bool,
        lose_reply: Mutex<Option<(&'static str, ErrorClass)>>,
        creates: std::sync::Arc<AtomicU32>,
    }

    impl Fake {
        fn new(fail: Option<(&'static str, ErrorClass)>, refuse_plan: bool) -> Self {
            Fake { live: Mutex::new(Vec::new()), fail, refuse_plan, lose_reply: Mutex::new(None), creates: Default::default() }
        }
    }

    #[async_trait]
    impl Kind for Fake {
        fn rules(&self) -> Rules {
            Rules::new("fake", Layer::Compute)
        }
        fn review(&self, _env: &EnvSpec, _steps: &[&Step], _reads: &ReadCache) -> Review {
            Review { errors: if self.refuse_plan { vec!["refused".into()] } else { Vec::new() }, ..Review::default() }
        }
        fn desired(&self, env: &EnvSpec) -> Vec<Desired> {
            ["a", "b", "c"]
                .into_iter()
                .map(|id| Desired {
                    key: ResourceKey { kind: "fake", id: id.into() },
                    name: id.into(),
                    fields: Default::default(),
                    tags: ownership_tags(env, id, DeletionPolicy::Retain, &Tags::new()),
                    depends_on: if id == "a" { vec![ResourceKey { kind: "fake", id: "b".into() }] } else { Vec::new() },
                    adopt: None,
                    delegated: Default::default(),
                })
                .collect()
        }
        async fn observe(&self, _env: &EnvSpec, _desired: &[Desired], _reads: &ReadCache) -> Result<Vec<Live>, AwsError> {
            Ok(self.live.lock().map(|l| l.clone()).unwrap_or_default())
        }
        async fn create(&self, desired: &Desired, _token: &str, _reads: &ReadCache) -> Result<String, AwsError> {
            if let Some((id, class)) = self.fail.filter(|(id, _)| *id == desired.key.id) {
                return Err(AwsError { operation: "Fake.Create", class, code: None, message: format!("{id} refused") });
            }
            self.creates.fetch_add(1, Ordering::SeqCst);
            self.live.lock().expect("lock").push(Live {
                name: desired.name.clone(),
                handle: desired.name.clone(),
                tags: desired.tags.clone(),
                ..Live::default()
            });
            if let Some((_, class)) = self.lose_reply.lock().expect("lock").take_if(|(id, _)| *id == desired.key.id) {
                return Err(AwsError { operation: "Fake.Create", class, code: None, message: "connection reset, or it exists already".into() });
            }
            Ok(desired.name.clone())
        }
        async fn update(&self, _d: &Desired, _l: &Live, _delta: &Delta) -> Result<(), AwsError> {
            Ok(())
        }
        async fn delete(&self, _l: &Live, _reads: &ReadCache) -> Result<(), AwsError> {
            Ok(())
        }
    }

    fn env() -> EnvSpec {
        EnvSpec::new("dev", Default::default())
    }

    /// A [`Fake`] with other rules, and only its resource `only` when given.
    struct Variant {
        fake: Fake,
        rules: Rules,
        only: Option<&'static str>,
    }

    #[async_trait]
    impl Kind for Variant {
        fn rules(&self) -> Rules {
            self.rules
        }
        fn desired(&self, env: &EnvSpec) -> Vec<Desired> {
            self.fake.desired(env).into_iter().filter(|d| self.only.is_none_or(|id| d.key.id == id)).collect()
        }
        async fn observe(&self, env: &EnvSpec, desired: &[Desired], reads: &ReadCache) -> Result<Vec<Live>, AwsError> {
            self.fake.observe(env, desired, reads).await
        }
        async fn create(&self, desired: &Desired, token: &str, reads: &ReadCache) -> Result<String, AwsError> {
            self.fake.create(desired, token, reads).await
        }
        async fn update(&self, d: &Desired, l: &Live, delta: &Delta) -> Result<(), AwsError> {
            self.fake.update(d, l, delta).await
        }
        async fn delete(&self, l: &Live, reads: &ReadCache) -> Result<(), AwsError> {
            self.fake.delete(l, reads).await
        }
    }

    /// A kind whose observation fails: its resources are unknown to the pass.
    struct Unreadable;

    #[async_trait]
    impl Kind for Unreadable {
        fn rules(&self) -> Rules {
            Rules::new("unreadable", Layer::Compute)
        }
        fn desired(&self, env: &EnvSpec) -> Vec<Desired> {
            vec![Desired::new("unreadable", "b", "b", ownership_tags(env, "b", DeletionPolicy::Retain, &Tags::new()))]
        }
        async fn observe(&self, _env: &EnvSpec, _desired: &[Desired], _reads: &ReadCache) -> Result<Vec<Live>, AwsError> {
            Err(AwsError { operation: "Unreadable.List", class: ErrorClass::Transient, code: None, message: "dropped".into() })
        }
        async fn create(&self, _desired: &Desired, _token: &str, _reads: &ReadCache) -> Result<String, AwsError> {
            Ok("b".into())
        }
        async fn update(&self, _d: &Desired, _l: &Live, _delta: &Delta) -> Result<(), AwsError> {
            Ok(())
        }
        async fn delete(&self, _l: &Live, _reads: &ReadCache) -> Result<(), AwsError> {
            Ok(())
        }
    }

    /// Found by the fault test: a VPC whose read failed under faults left
    /// security groups to be created with the literal reference as their VPC.
    #[tokio::test]
    async fn nothing_is_written_that_depends_on_a_resource_whose_read_failed() {
        struct Child(Fake);
        #[async_trait]
        impl Kind for Child {
            fn rules(&self) -> Rules {
                Rules::new("fake", Layer::Compute)
            }
            fn desired(&self, env: &EnvSpec) -> Vec<Desired> {
                self.0.desired(env).into_iter().filter(|d| d.key.id == "c").map(|d| d.after("unreadable", "b")).collect()
            }
            async fn observe(&self, env: &EnvSpec, desired: &[Desired], reads: &ReadCache) -> Result<Vec<Live>, AwsError> {
                self.0.observe(env, desired, reads).await
            }
            async fn create(&self, desired: &Desired, token: &str, reads: &ReadCache) -> Result<String, AwsError> {
                self.0.create(desired, token, reads).await
            }
            async fn update(&self, d: &Desired, l: &Live, delta: &Delta) -> Result<(), AwsError> {
                self.0.update(d, l, delta).await
            }
            async fn delete(&self, l: &Live, reads: &ReadCache) -> Result<(), AwsError> {
                self.0.delete(l, reads).await
            }
        }
        let child = Fake::new(None, false);
        let creates = child.creates.clone();
        let kinds: Vec<Box<dyn Kind>> = vec![Box::new(Unreadable), Box::new(Child(child))];
        let report = reconcile(&env(), &kinds, &CallCounter::default(), Mode::Apply, &RetryPolicy::default(), &Narrowing::default()).await;
        let c = report.resources.iter().find(|s| s.key.id == "c").expect("c");
        assert_eq!(c.outcome, Some(Outcome::DependencyFailed("unreadable b".into())), "{:?}", report.resources);
        assert_eq!(creates.load(Ordering::SeqCst), 0, "nothing sent with an unresolved reference");
    }

    /// `env()` whose spec adopts `key` by identifier `id`.
    fn adopting(key: &str, id: &str) -> EnvSpec {
        let mut env = env();
        env.spec.adopt.insert(key.into(), crate::spec::model::AdoptTarget { id: Some(id.into()), ..Default::default() });
        env
    }

    #[tokio::test]
    async fn a_missing_adopt_id_stops_the_pass_unless_the_kind_is_stateless() {
        let kinds: Vec<Box<dyn Kind>> = vec![Box::new(Fake::new(None, false))];
        let counter = CallCounter::default();
        let report = reconcile(&adopting("fake/b", "gone-1"), &kinds, &counter, Mode::Apply, &RetryPolicy::default(), &Narrowing::default()).await;
        assert!(report.errors.iter().any(|e| e.contains("adopt.fake/b: gone-1 does not exist")), "{:?}", report.errors);
        assert!(report.resources.iter().all(|s| s.outcome.is_none()), "nothing is written: {:?}", report.resources);

        let report = reconcile(&adopting("fake/z", "x"), &kinds, &counter, Mode::Plan, &RetryPolicy::default(), &Narrowing::default()).await;
        assert!(report.errors.iter().any(|e| e.contains("adopt.fake/z: names no resource of the spec")), "{:?}", report.errors);
        let report = reconcile(&adopting("sqs.queue/orders", "x"), &kinds, &counter, Mode::Plan, &RetryPolicy::default(), &Narrowing::default()).await;
        assert!(report.errors.is_empty(), "a pass over other kinds (the daemon's fast loop) leaves the entry to theirs: {:?}", report.errors);

        let kinds: Vec<Box<dyn Kind>> = vec![Box::new(Variant {
            fake: Fake::new(None, false),
            rules: Rules { on_immutable_change: OnImmutableChange::Replace, ..Rules::new("fake", Layer::Compute) },
            only: None,
        })];
        let report = reconcile(&adopting("fake/b", "gone-1"), &kinds, &counter, Mode::Apply, &RetryPolicy::default(), &Narrowing::default()).await;
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        let b = report.resources.iter().find(|s| s.key.id == "b").expect("b");
        assert_eq!((b.action, b.outcome.clone()), (Action::Create, Some(Outcome::Applied)));
        assert!(b.note.as_deref().unwrap_or("").contains("no longer exists: created anew"), "{:?}", b.note);
    }

    async fn pass(kind: Fake, mode: Mode) -> Report {
        let kinds: Vec<Box<dyn Kind>> = vec![Box::new(kind)];
        reconcile(&env(), &kinds, &CallCounter::default(), mode, &RetryPolicy::default(), &Narrowing::default()).await
    }

    #[tokio::test]
    async fn creates_in_dependency_order_then_converges() {
        let kind = Fake::new(None, false);
        let kinds: Vec<Box<dyn Kind>> = vec![Box::new(kind)];
        let first = reconcile(&env(), &kinds, &CallCounter::default(), Mode::Apply, &RetryPolicy::default(), &Narrowing::default()).await;
        assert_eq!(first.exit_code(), 2);
        assert_eq!(first.summary.create, 3);
        let second = reconcile(&env(), &kinds, &CallCounter::default(), Mode::Apply, &RetryPolicy::default(), &Narrowing::default()).await;
        assert_eq!((second.exit_code(), second.summary.unchanged), (0, 3));
    }

    /// A create whose reply was lost (transient), one refused because the
    /// resource exists already (an earlier run's create still in flight when
    /// it died, as the crash test found), or one whose later call was
    /// throttled after the first made the resource (a KMS key, then its
    /// alias: the fault test once found two keys): found by its tags, not repeated.
    #[tokio::test(start_paused = true)]
    async fn a_create_whose_reply_was_lost_or_that_exists_already_is_found_not_repeated() {
        for class in [ErrorClass::Transient, ErrorClass::Conflict, ErrorClass::Throttled] {
            let kind = Fake::new(None, false);
            *kind.lose_reply.lock().expect("lock") = Some(("b", class));
            let creates = kind.creates.clone();
            let kinds: Vec<Box<dyn Kind>> = vec![Box::new(kind)];
            let report = reconcile(&env(), &kinds, &CallCounter::default(), Mode::Apply, &RetryPolicy::default(), &Narrowing::default()).await;
            assert!(
                report.resources.iter().filter(|s| s.action == Action::Create).all(|s| s.outcome == Some(Outcome::Applied)),
                "{class:?}: {:?}",
                report.resources
            );
            let report = reconcile(&env(), &kinds, &CallCounter::default(), Mode::Apply, &RetryPolicy::default(), &Narrowing::default()).await;
            assert_eq!((report.exit_code(), report.summary.unchanged, report.summary.orphaned), (0, 3, 0));
            assert_eq!(creates.load(Ordering::SeqCst), 3, "{class:?}: b was created once");
        }
    }

    #[test]
    fn idempotency_tokens_are_unique_and_fit_every_api() {
        let tokens: BTreeSet<String> = (0..1000).map(|_| idempotency_token()).collect();
        assert_eq!(tokens.len(), 1000);
        assert!(tokens.iter().all(|t| t.len() == 32 && t.chars().all(|c| c.is_ascii_hexdigit())));
    }

    #[tokio::test]
    async fn a_failed_dependency_stops_its_dependents_only() {
        let report = pass(Fake::new(Some(("b", ErrorClass::Invalid)), false), Mode::Apply).await;
        let outcome = |id: &str| report.resources.iter().find(|s| s.key.id == id).and_then(|s| s.outcome.clone());
        assert!(matches!(outcome("b"), Some(Outcome::Failed(_))));
        assert_eq!(outcome("a"), Some(Outcome::DependencyFailed("fake b".into())));
        assert_eq!(outcome("c"), Some(Outcome::Applied));
        assert_eq!(report.exit_code(), 1);
    }

    #[tokio::test]
    async fn a_broken_invariant_exits_3() {
        let report = pass(Fake::new(Some(("c", ErrorClass::Invariant)), false), Mode::Apply).await;
        assert_eq!(report.invariant_violations, vec!["fake c: c refused".to_string()]);
        assert_eq!(report.exit_code(), 3);
    }

    #[tokio::test]
    async fn a_refused_review_applies_nothing() {
        let report = pass(Fake::new(None, true), Mode::Apply).await;
        assert!(report.resources.iter().all(|s| s.outcome.is_none()));
        assert!(report.errors.iter().any(|e| e == "nothing was applied"));
        assert_eq!(report.exit_code(), 1);
    }

    #[tokio::test]
    async fn kinds_left_to_another_pass_are_observed_not_written() {
        let kind = Fake::new(None, false);
        let creates = kind.creates.clone();
        let kinds: Vec<Box<dyn Kind>> = vec![Box::new(kind)];
        let report =
            reconcile(&env(), &kinds, &CallCounter::default(), Mode::Apply, &RetryPolicy::default(), &Narrowing::writing(Writes::UpTo(Scope::Fast))).await;
        assert_eq!(creates.load(Ordering::SeqCst), 0, "nothing written");
        assert_eq!(report.summary.create, 3, "the drift is still reported");
        assert!(report.resources.iter().all(|s| s.outcome == Some(Outcome::Deferred)), "{:?}", report.resources);
        assert_eq!(report.summary.failed, 0);
    }

    /// `a` depends on `fake b`, which a kind this pass leaves to another pass
    /// also plans to create (the same key, as when the daemon's full pass
    /// observes networking): `a` waits for it.
    #[tokio::test]
    async fn what_depends_on_a_resource_left_to_another_pass_waits_for_it() {
        let others = Fake::new(None, false);
        let creates = others.creates.clone();
        let kinds: Vec<Box<dyn Kind>> = vec![
            Box::new(Variant { fake: Fake::new(None, false), rules: Rules { scope: Scope::Fast, ..Rules::new("fake-b", Layer::Compute) }, only: Some("b") }),
            Box::new(others),
        ];
        let report =
            reconcile(&env(), &kinds, &CallCounter::default(), Mode::Apply, &RetryPolicy::default(), &Narrowing::writing(Writes::Above(Scope::Fast))).await;
        assert!(report.resources.iter().any(|s| s.key.id == "b" && s.outcome == Some(Outcome::Deferred)), "the other pass's b is left to it");
        let a = report.resources.iter().find(|s| s.key.id == "a").and_then(|s| s.outcome.clone());
        assert_eq!(a, Some(Outcome::Deferred), "a waits for b: {:?}", report.resources);
        assert_eq!(creates.load(Ordering::SeqCst), 2, "b and c of the written kind are created, a is not");
        assert_eq!(report.summary.failed, 0);
    }

    #[tokio::test]
    async fn plan_mode_never_writes() {
        let report = pass(Fake::new(None, false), Mode::Plan).await;
        assert_eq!((report.summary.create, report.exit_code()), (3, 2));
        assert!(report.resources.iter().all(|s| s.outcome.is_none()));
    }

    fn err(class: ErrorClass) -> AwsError {
        AwsError { operation: "SQS.CreateQueue", class, code: None, message: "x".into() }
    }

    #[tokio::test(start_paused = true)]
    async fn retryable_errors_are_retried_until_success() {
        let calls = AtomicU32::new(0);
        let policy = RetryPolicy::default();
        let result: Result<(), AwsError> = with_retries(&policy, || {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 3 {
                    Err(err(ErrorClass::Throttled))
                } else {
                    Ok(())
                }
            }
        })
        .await;
        assert!(result.is_ok());
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn invalid_errors_are_not_retried() {
        let calls = AtomicU32::new(0);
        let result: Result<(), AwsError> = with_retries(&RetryPolicy::default(), || {
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
        let result: Result<(), AwsError> = with_retries(&policy, || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(err(ErrorClass::Conflict)) }
        })
        .await;
        assert!(result.is_err());
        let n = calls.load(Ordering::SeqCst);
        assert!((3..40).contains(&n), "{n} attempts");
    }

    /// A narrowed pass's two kinds: parents (`x`, a new handle per create) and
    /// one child whose `Target` refers to parent `x`.
    #[derive(Default)]
    struct Linked {
        parents: Mutex<Vec<Live>>,
        child: Mutex<Option<Live>>,
        created: AtomicU32,
        parent_reads: AtomicU32,
    }

    struct Parents(std::sync::Arc<Linked>);
    struct Children(std::sync::Arc<Linked>);

    #[async_trait]
    impl Kind for Parents {
        fn rules(&self) -> Rules {
            Rules::new("parent", Layer::Compute)
        }
        fn desired(&self, env: &EnvSpec) -> Vec<Desired> {
            vec![Desired::new("parent", "x", "x", ownership_tags(env, "x", DeletionPolicy::Retain, &Tags::new()))]
        }
        async fn observe(&self, _env: &EnvSpec, _desired: &[Desired], _reads: &ReadCache) -> Result<Vec<Live>, AwsError> {
            self.0.parent_reads.fetch_add(1, Ordering::SeqCst);
            Ok(self.0.parents.lock().map(|l| l.clone()).unwrap_or_default())
        }
        async fn create(&self, desired: &Desired, _token: &str, _reads: &ReadCache) -> Result<String, AwsError> {
            let handle = format!("p-{}", self.0.created.fetch_add(1, Ordering::SeqCst) + 1);
            let live = Live { name: desired.name.clone(), handle: handle.clone(), tags: desired.tags.clone(), ..Live::default() };
            self.0.parents.lock().expect("lock").push(live);
            Ok(handle)
        }
        async fn update(&self, _d: &Desired, _l: &Live, _delta: &Delta) -> Result<(), AwsError> {
            Ok(())
        }
        async fn delete(&self, _l: &Live, _reads: &ReadCache) -> Result<(), AwsError> {
            Ok(())
        }
    }

    #[async_trait]
    impl Kind for Children {
        fn rules(&self) -> Rules {
            Rules::new("child", Layer::Compute)
        }
        fn desired(&self, env: &EnvSpec) -> Vec<Desired> {
            vec![Desired::new("child", "c", "c", ownership_tags(env, "c", DeletionPolicy::Retain, &Tags::new())).with_reference("Target", "parent", "x")]
        }
        async fn observe(&self, _env: &EnvSpec, _desired: &[Desired], _reads: &ReadCache) -> Result<Vec<Live>, AwsError> {
            Ok(self.0.child.lock().map(|c| c.clone().into_iter().collect()).unwrap_or_default())
        }
        async fn create(&self, desired: &Desired, _token: &str, _reads: &ReadCache) -> Result<String, AwsError> {
            let live = Live { name: "c".into(), handle: "c".into(), fields: desired.fields.clone(), tags: desired.tags.clone(), ..Live::default() };
            *self.0.child.lock().expect("lock") = Some(live);
            Ok("c".into())
        }
        async fn update(&self, desired: &Desired, _l: &Live, _delta: &Delta) -> Result<(), AwsError> {
            if let Some(c) = self.0.child.lock().expect("lock").as_mut() {
                c.fields = desired.fields.clone();
            }
            Ok(())
        }
        async fn delete(&self, _l: &Live, _reads: &ReadCache) -> Result<(), AwsError> {
            Ok(())
        }
    }

    fn cause(call: &str) -> crate::engine::focus::Attribution {
        crate::engine::focus::Attribution {
            actor: "arn:aws:iam::1:user/alice".into(),
            principal_type: "IAMUser".into(),
            call: call.into(),
            at: "2026-11-29T00:00:00Z".into(),
            source_ip: "203.0.113.7".into(),
        }
    }

    #[tokio::test]
    async fn a_narrowed_pass_resolves_references_through_known_handles_but_never_through_a_deleted_ones() {
        let state = std::sync::Arc::new(Linked::default());
        let kinds: Vec<Box<dyn Kind>> = vec![Box::new(Parents(state.clone())), Box::new(Children(state.clone()))];
        let known = crate::engine::references::KnownHandles::default();
        let full = Narrowing { known: Some(known.clone()), ..Narrowing::default() };
        let pass = |narrowing: Narrowing| {
            let kinds = &kinds;
            async move { reconcile(&env(), kinds, &CallCounter::default(), Mode::Apply, &RetryPolicy::default(), &narrowing).await }
        };
        assert_eq!(pass(full.clone()).await.summary.create, 2);
        let child_target = || state.child.lock().expect("lock").as_ref().map(|c| c.field("Target").to_string());
        assert_eq!(child_target().as_deref(), Some("p-1"));

        // Only the child: the parent is not read, its handle comes from the earlier pass; no false drift.
        let reads = state.parent_reads.load(Ordering::SeqCst);
        let only = |kinds: &[&'static str], causes: &[(&'static str, &str, &str)]| {
            let mut focus = crate::engine::focus::Focus { kinds: Some(kinds.iter().copied().collect()), ..Default::default() };
            for (kind, id, call) in causes {
                focus.causes.entry(*kind).or_default().insert(id.to_string(), cause(call));
            }
            Narrowing { focus, known: Some(known.clone()), ..Narrowing::default() }
        };
        let report = pass(only(&["child"], &[])).await;
        assert_eq!((report.resources.len(), report.resources[0].action), (1, Action::Noop), "{:?}", report.resources);
        assert_eq!(state.parent_reads.load(Ordering::SeqCst), reads, "the parent kind was not read");

        // The parent deleted: the pass that re-creates it must not take the child's
        // reference to the old handle as in sync.
        state.parents.lock().expect("lock").clear();
        let report = pass(only(&["parent", "child"], &[("parent", "p-1", "DeleteParent")])).await;
        let step = |id: &str| report.resources.iter().find(|s| s.key.id == id).expect("step").clone();
        assert_eq!((step("x").action, step("x").outcome), (Action::Create, Some(Outcome::Applied)));
        assert_eq!(step("x").cause.map(|c| c.call), Some("DeleteParent".to_string()), "named by its old handle");
        assert_eq!(step("c").action, Action::Update, "{:?}", report.resources);
        assert_eq!(child_target().as_deref(), Some("p-2"), "the child follows the new parent");
        assert!(known.lock().expect("lock").handle_of(&ResourceKey::new("parent", "x")).as_deref() == Some("p-2"));

        // Again, the pass narrowed to the parent its event named (by its old handle): that handle is not trusted either.
        state.parents.lock().expect("lock").clear();
        let mut narrowing = only(&["parent", "child"], &[]);
        narrowing.focus.resources.insert("parent", ["p-2".to_string()].into());
        let report = pass(narrowing).await;
        assert_eq!(report.resources.iter().map(|s| s.action).collect::<Vec<_>>(), [Action::Create, Action::Update], "{:?}", report.resources);
        assert_eq!(child_target().as_deref(), Some("p-3"));

        // Narrowed to other resources of a kind: its steps are left out.
        let mut narrowing = only(&["child"], &[]);
        narrowing.focus.resources.insert("child", ["someone-else".to_string()].into());
        assert!(pass(narrowing).await.resources.is_empty());
    }
}

//! The runtime of one environment: its SDK configuration (credentials, STS
//! sessions included, cached across passes), the kind registry with one
//! client per service, and the counter of every request, built once and
//! reused for every pass. `plan`, `reconcile --once` and each of the daemon's
//! loops run their passes through it.

use crate::aws::{env_config, CallCounter, Timeouts};
use crate::engine::apply::{reconcile, RetryPolicy};
use crate::engine::report::Report;
use crate::engine::{Kind, Mode, Scope};
use crate::kinds;
use crate::spec::model::Account;
use crate::spec::EnvSpec;

/// One environment's configuration, clients and request counter.
pub struct Runtime {
    region: Option<String>,
    account: Option<Account>,
    counter: CallCounter,
    kinds: Vec<Box<dyn Kind>>,
}

impl Runtime {
    /// The runtime of `env` (`region` overrides the spec's), with the kinds of
    /// `only` that scope, or all of them.
    pub async fn new(env: &EnvSpec, region: Option<&str>, timeouts: Timeouts, only: Option<Scope>) -> Self {
        let region = region.map(str::to_string).or_else(|| env.spec.region.clone());
        let config = env_config(region.clone(), env.spec.account.as_ref(), timeouts).await;
        let counter = CallCounter::default();
        let kinds = kinds::registry(&config, &counter).into_iter().filter(|k| only.map_or(true, |scope| k.rules().scope == scope)).collect();
        Runtime { region, account: env.spec.account.clone(), counter, kinds }
    }

    /// Whether this runtime still serves `env` (same region and account), after a spec reload.
    pub fn fits(&self, env: &EnvSpec, region: Option<&str>) -> bool {
        self.region == region.map(str::to_string).or_else(|| env.spec.region.clone()) && self.account == env.spec.account
    }

    /// The counter of every request this runtime sends (and every reply it gets).
    pub fn counter(&self) -> &CallCounter {
        &self.counter
    }

    /// One pass over the runtime's kinds. With `leave_fast_kinds`, the kinds
    /// of [`Scope::Fast`] are observed (their resources resolve references)
    /// but left to the fast pass to write.
    pub async fn pass(&self, env: &EnvSpec, mode: Mode, leave_fast_kinds: bool) -> Report {
        let defer = leave_fast_kinds.then_some(Scope::Fast);
        let mut report = reconcile(env, &self.kinds, &self.counter, mode, &RetryPolicy::default(), defer).await;
        report.not_reconciled = kinds::unreconciled_sections(&env.spec);
        report
    }
}

//! The runtime of one environment: its SDK configuration (credentials, STS
//! sessions included, cached across passes), the kind registry with one
//! client per service, and the counter of every request, built once and
//! reused for every pass. `plan`, `reconcile --once` and each of the daemon's
//! loops run their passes through it.

use std::borrow::Cow;
use std::time::Instant;

use crate::aws::{env_config, AwsResult, CallCounter, Timeouts};
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
    /// Resolves `adopt` entries that name a stack's resource.
    cloudformation: aws_sdk_cloudformation::Client,
}

impl Runtime {
    /// The runtime of `env` (`region` overrides the spec's), with the kinds of
    /// `only` that scope, or all of them.
    pub async fn new(env: &EnvSpec, region: Option<&str>, timeouts: Timeouts, only: Option<Scope>) -> Self {
        let region = region.map(str::to_string).or_else(|| env.spec.region.clone());
        let config = env_config(region.clone(), env.spec.account.as_ref(), timeouts).await;
        let counter = CallCounter::default();
        let kinds = kinds::registry(&config, &counter).into_iter().filter(|k| only.map_or(true, |scope| k.rules().scope == scope)).collect();
        let cloudformation = crate::sdk_client!(aws_sdk_cloudformation, &config, &counter);
        Runtime { region, account: env.spec.account.clone(), counter, kinds, cloudformation }
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
        let started = Instant::now();
        let env = match self.resolve_adoptions(env).await {
            Ok(resolved) => resolved,
            Err(errors) => return Report::new(env, mode, Vec::new(), errors, self.counter.stats(), started.elapsed()),
        };
        let defer = leave_fast_kinds.then_some(Scope::Fast);
        let mut report = reconcile(&env, &self.kinds, &self.counter, mode, &RetryPolicy::default(), defer).await;
        report.not_reconciled = kinds::unreconciled_sections(&env.spec);
        report
    }

    /// `env` with every `adopt` entry that names a CloudFormation stack's
    /// resource turned into that resource's id; the problems otherwise (a
    /// missing stack or logical id), which stop the pass before any write.
    async fn resolve_adoptions<'a>(&self, env: &'a EnvSpec) -> Result<Cow<'a, EnvSpec>, Vec<String>> {
        if env.spec.adopt.values().all(|t| t.stack.is_none()) {
            return Ok(Cow::Borrowed(env));
        }
        let mut resolved = env.clone();
        let mut errors = Vec::new();
        for (key, target) in resolved.spec.adopt.iter_mut() {
            let (Some(stack), Some(logical_id)) = (target.stack.take(), target.logical_id.take()) else { continue };
            let stack = stack.replace("${env}", &env.env);
            let found = self.cloudformation.describe_stack_resource().stack_name(&stack).logical_resource_id(&logical_id).send().await;
            match found.aws("CloudFormation.DescribeStackResource") {
                Ok(out) => match out.stack_resource_detail().and_then(|d| d.physical_resource_id()) {
                    Some(id) => target.id = Some(id.to_string()),
                    None => errors.push(format!("adopt.{key}: {logical_id} of stack {stack} has no physical id yet")),
                },
                Err(e) => errors.push(format!("adopt.{key}: cannot find {logical_id} in stack {stack}: {e}")),
            }
        }
        if errors.is_empty() {
            Ok(Cow::Owned(resolved))
        } else {
            Err(errors)
        }
    }
}

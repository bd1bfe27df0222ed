//! The runtime of one environment: its SDK configuration (credentials, STS
//! sessions included, cached across passes), the kind registry with one
//! client per service, and the counter of every request, built once and
//! reused for every pass. `plan`, `reconcile --once` and each of the daemon's
//! loops run their passes through it.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use aws_config::SdkConfig;

use crate::aws::{env_config, required, AwsResult, CallCounter, Timeouts};
use crate::engine::apply::{reconcile, Narrowing, RetryPolicy};
use crate::engine::permissions::{Grant, Permissions};
use crate::engine::report::Report;
use crate::engine::{Kind, Mode, Scope};
use crate::kinds;
use crate::kinds::read::TagReads;
use crate::spec::model::Account;
use crate::spec::{AwsContext, EnvSpec};

/// What this module's calls need of IAM (`sentry-operator iam-policy` gathers it).
#[rustfmt::skip]
pub const PERMISSIONS: Permissions = Permissions {
    reads: &["sts:GetCallerIdentity"],
    grants: &[
        Grant::allow("ReadCloudFormationStacksForAdoptionAndImport", &["cloudformation:DescribeStackResource"], &["*"]),
        Grant::allow("ReadTheEcsOptimizedAmiParameter", &["ssm:GetParameters"], &["arn:aws:ssm:*::parameter/aws/service/ecs/optimized-ami/*"]),
    ],
};

/// One environment's configuration, clients and request counter.
pub struct Runtime {
    region: Option<String>,
    /// The region the clients send to (the spec's, the flag's or the environment's).
    config_region: String,
    account: Option<Account>,
    counter: CallCounter,
    kinds: Vec<Box<dyn Kind>>,
    /// Resolves `adopt` entries that name a stack's resource.
    cloudformation: aws_sdk_cloudformation::Client,
    /// Tells the account, once per runtime.
    sts: aws_sdk_sts::Client,
    /// Resolves the public parameters the kinds read, once per pass.
    ssm: aws_sdk_ssm::Client,
    /// The environment's SDK configuration (its account, when it has one).
    config: SdkConfig,
    /// The account id, once learnt.
    account_id: tokio::sync::OnceCell<String>,
}

impl Runtime {
    /// The runtime of `env` (`region` overrides the spec's), reading tags as `tag_reads` says.
    pub async fn new(env: &EnvSpec, region: Option<&str>, timeouts: Timeouts, tag_reads: TagReads) -> Self {
        let region = region.map(str::to_string).or_else(|| env.spec.region.clone());
        let config = env_config(region.clone(), env.spec.account.as_ref(), timeouts).await;
        let counter = CallCounter::default();
        let kinds = kinds::registry(&config, &counter, tag_reads);
        let cloudformation = crate::sdk_client!(aws_sdk_cloudformation, &config, &counter);
        let sts = crate::sdk_client!(aws_sdk_sts, &config, &counter);
        let ssm = crate::sdk_client!(aws_sdk_ssm, &config, &counter);
        let config_region = config.region().map(|r| r.to_string()).unwrap_or_default();
        Runtime {
            config: config.clone(),
            region,
            config_region,
            account: env.spec.account.clone(),
            counter,
            kinds,
            cloudformation,
            sts,
            ssm,
            account_id: Default::default(),
        }
    }

    /// The kinds of `scope` and narrower scopes.
    pub fn kinds_up_to(&self, scope: Scope) -> std::collections::BTreeSet<&'static str> {
        self.kinds.iter().map(|k| k.rules()).filter(|r| r.scope <= scope).map(|r| r.kind).collect()
    }

    /// Whether this runtime still serves `env` (same region and account), after a spec reload.
    pub fn fits(&self, env: &EnvSpec, region: Option<&str>) -> bool {
        self.region == region.map(str::to_string).or_else(|| env.spec.region.clone()) && self.account == env.spec.account
    }

    /// The kinds, in dependency order.
    pub fn kinds(&self) -> &[Box<dyn Kind>] {
        &self.kinds
    }

    /// The environment's SDK configuration.
    pub fn config(&self) -> &SdkConfig {
        &self.config
    }

    /// The counter of every request this runtime sends (and every reply it gets).
    pub fn counter(&self) -> &CallCounter {
        &self.counter
    }

    /// One pass over the kinds `narrowing` covers, writing those it writes.
    /// A pass over networking kinds only learns no [`AwsContext`] (they need
    /// none), so the whitelist guard never waits on STS or SSM.
    pub async fn pass(&self, env: &EnvSpec, mode: Mode, narrowing: &Narrowing) -> Report {
        let started = Instant::now();
        let calls_before = self.counter.stats();
        let needs_context = self.kinds.iter().any(|k| k.rules().scope == Scope::Full && narrowing.focus.covers_kind(k.name()));
        let resolved = match self.resolve_adoptions(env).await {
            Ok(resolved) if needs_context => self.learn_context(resolved).await,
            Ok(resolved) => Ok(resolved),
            Err(errors) => Err(errors),
        };
        let env = match resolved {
            Ok(env) => env,
            Err(errors) => return Report::new(env, mode, Vec::new(), errors, self.counter.stats().since(&calls_before), started.elapsed()),
        };
        let mut report = reconcile(&env, &self.kinds, &self.counter, mode, &RetryPolicy::default(), narrowing).await;
        // The pass's calls include those made before planning (account, parameters, adoptions).
        report.calls = self.counter.stats().since(&calls_before);
        report
    }

    /// `env` with the pass's [`AwsContext`]: the account (asked once per
    /// runtime), the region and the public parameters the kinds read; a failed
    /// lookup stops the pass before any write.
    async fn learn_context<'a>(&self, env: Cow<'a, EnvSpec>) -> Result<Cow<'a, EnvSpec>, Vec<String>> {
        let account = self
            .account_id
            .get_or_try_init(|| async {
                let me = self.sts.get_caller_identity().send().await.aws("STS.GetCallerIdentity")?;
                required("STS.GetCallerIdentity", "account", me.account())
            })
            .await
            .map_err(|e| vec![format!("cannot tell the account: {e}")])?
            .clone();
        let names: BTreeSet<&str> = self.kinds.iter().flat_map(|k| k.parameters().iter().copied()).collect();
        let mut parameters = BTreeMap::new();
        if !names.is_empty() {
            let out = self.ssm.get_parameters().set_names(Some(names.iter().map(|n| n.to_string()).collect())).send().await;
            let out = out.aws("SSM.GetParameters").map_err(|e| vec![format!("cannot read the public parameters {names:?}: {e}")])?;
            for p in out.parameters() {
                if let (Some(name), Some(value)) = (p.name(), p.value()) {
                    parameters.insert(name.to_string(), value.to_string());
                }
            }
            if let Some(missing) = names.iter().find(|n| !parameters.contains_key(**n)) {
                return Err(vec![format!("the public parameter {missing} does not exist in this region")]);
            }
        }
        if self.config_region.is_empty() {
            return Err(vec!["no region: give one in the spec (`region:`), with --region or in AWS_REGION".into()]);
        }
        let mut env = env.into_owned();
        env.aws = Some(AwsContext { account, region: self.config_region.clone(), parameters });
        Ok(Cow::Owned(env))
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

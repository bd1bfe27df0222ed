//! AWS plumbing shared by every kind: SDK configuration from the standard
//! chain, an interceptor that counts every request sent, and the one place
//! where SDK errors are classified.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{BeforeTransmitInterceptorContextMut, BeforeTransmitInterceptorContextRef};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use serde::Serialize;

/// Attempts per AWS request (the SDK retries throttling, 5xx and connection
/// errors with jittered exponential backoff). Above the SDK's default of 3:
/// the operator shares throttling buckets with every other tool of the account.
pub const MAX_ATTEMPTS: u32 = 5;

/// Time limits of every AWS request, so that a black-holed connection or a
/// hung endpoint fails the call instead of freezing the operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Establishing a connection.
    pub connect: Duration,
    /// One attempt (sending the request and reading the whole reply).
    pub attempt: Duration,
    /// A whole operation, all its attempts and backoff included.
    pub operation: Duration,
}

impl Default for Timeouts {
    /// 5 s to connect, 30 s per attempt, 120 s per operation (five attempts
    /// with backoff): far above a healthy AWS reply, far below "forever".
    fn default() -> Self {
        Timeouts { connect: Duration::from_secs(5), attempt: Duration::from_secs(30), operation: Duration::from_secs(120) }
    }
}

/// Loads the SDK configuration from the standard chain (environment,
/// profiles, `AWS_ENDPOINT_URL`, IMDS) with `timeouts` on every request;
/// `region` overrides the chain's region.
pub async fn load_config(region: Option<String>, timeouts: Timeouts) -> SdkConfig {
    let retry = aws_config::retry::RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS);
    let limits = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(timeouts.connect)
        .read_timeout(timeouts.attempt)
        .operation_attempt_timeout(timeouts.attempt)
        .operation_timeout(timeouts.operation)
        .build();
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).retry_config(retry).timeout_config(limits);
    if let Some(region) = region {
        loader = loader.region(Region::new(region));
    }
    loader.load().await
}

/// The SDK configuration of one environment: the standard chain, and when the
/// spec names an account role, credentials from STS AssumeRole on top of it
/// (the SDK's identity cache refreshes them before they expire).
pub async fn env_config(region: Option<String>, account: Option<&crate::spec::model::Account>, timeouts: Timeouts) -> SdkConfig {
    let base = load_config(region, timeouts).await;
    let Some(account) = account else { return base };
    let mut builder = aws_config::sts::AssumeRoleProvider::builder(&account.role_arn).session_name("sentry-operator").configure(&base);
    if let Some(external_id) = &account.external_id {
        builder = builder.external_id(external_id);
    }
    let provider = builder.build().await;
    base.into_builder().credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(provider)).build()
}

/// Counts of AWS requests sent, per service and operation (retries included),
/// and of replies received (any status), which shows whether AWS answers at all.
#[derive(Clone, Debug, Default)]
pub struct CallCounter {
    counts: Arc<Mutex<BTreeMap<(String, String), u64>>>,
    replies: Arc<std::sync::atomic::AtomicU64>,
}

/// Whether an operation only reads (Get / List / Describe).
pub fn is_read(operation: &str) -> bool {
    ["Get", "List", "Describe"].iter().any(|p| operation.starts_with(p))
}

/// A summary of the requests a pass sent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CallStats {
    /// Read requests (Get / List / Describe).
    pub reads: u64,
    /// Every other request.
    pub writes: u64,
    /// Requests per `Service.Operation`.
    pub by_operation: BTreeMap<String, u64>,
}

impl CallStats {
    /// The requests counted since `before` (an earlier reading of the same counter).
    pub fn since(&self, before: &CallStats) -> CallStats {
        let by_operation: BTreeMap<String, u64> = self
            .by_operation
            .iter()
            .map(|(op, n)| (op.clone(), n - before.by_operation.get(op).copied().unwrap_or(0).min(*n)))
            .filter(|(_, n)| *n > 0)
            .collect();
        CallStats { reads: self.reads.saturating_sub(before.reads), writes: self.writes.saturating_sub(before.writes), by_operation }
    }
}

impl CallCounter {
    /// Records one request.
    fn record(&self, service: &str, operation: &str) {
        if let Ok(mut counts) = self.counts.lock() {
            *counts.entry((service.to_string(), operation.to_string())).or_insert(0) += 1;
        }
    }

    /// Records one reply received.
    pub(crate) fn record_reply(&self) {
        self.replies.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// Replies received so far (errors included; timeouts and dropped connections are not replies).
    pub fn replies(&self) -> u64 {
        self.replies.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The requests recorded so far.
    pub fn stats(&self) -> CallStats {
        let mut stats = CallStats::default();
        if let Ok(counts) = self.counts.lock() {
            for ((service, operation), n) in counts.iter() {
                if is_read(operation) {
                    stats.reads += n;
                } else {
                    stats.writes += n;
                }
                stats.by_operation.insert(format!("{service}.{operation}"), *n);
            }
        }
        stats
    }
}

impl Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "CallCounter"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(meta) = cfg.load::<Metadata>() {
            self.record(meta.service(), meta.name());
        }
        Ok(())
    }

    fn read_after_transmit(
        &self,
        _context: &aws_smithy_runtime_api::client::interceptors::context::BeforeDeserializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.record_reply();
        Ok(())
    }
}

/// A client of SDK crate `$sdk` (e.g. `aws_sdk_ec2`) on `$config`, counting
/// every request in `$counter` and sending creates once ([`CreatesSentOnce`]):
/// every client the operator makes is made by this macro, so none can miss
/// either interceptor.
#[macro_export]
macro_rules! sdk_client {
    ($sdk:ident, $config:expr, $counter:expr) => {
        $sdk::Client::from_conf($sdk::config::Builder::from($config).interceptor($counter.clone()).interceptor($crate::aws::CreatesSentOnce).build())
    };
}

/// Whether `operation` brings a new resource into being, so that sending it
/// twice could make two (`CreateVpc`, `AllocateAddress`, `CreateUserPool`,
/// `RegisterTaskDefinition`, ...). Tagging (`CreateTags`) is not a creation.
pub fn creates_resource(operation: &str) -> bool {
    operation != "CreateTags" && ["Create", "Allocate", "Register", "Run"].iter().any(|p| operation.starts_with(p))
}

/// Sends every resource-creating request ([`creates_resource`]) exactly once:
/// the SDK would retry a create whose reply was lost after AWS had acted,
/// making a duplicate (CreateVpc takes no idempotency token). The engine
/// retries creates itself, after looking the resource up by its ownership tags.
#[derive(Clone, Copy, Debug, Default)]
pub struct CreatesSentOnce;

impl Intercept for CreatesSentOnce {
    fn name(&self) -> &'static str {
        "CreatesSentOnce"
    }

    fn modify_before_retry_loop(
        &self,
        _context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if cfg.load::<Metadata>().is_some_and(|m| creates_resource(m.name())) {
            cfg.interceptor_state().store_put(aws_config::retry::RetryConfig::disabled());
        }
        Ok(())
    }
}

/// The identifier a reply must carry (`value`, named `what`): a create that
/// cannot name what it made is an error, never an empty handle.
pub fn required(operation: &'static str, what: &str, value: Option<&str>) -> Result<String, AwsError> {
    value.filter(|v| !v.is_empty()).map(str::to_string).ok_or_else(|| AwsError::unexpected(operation, format!("the reply names no {what}")))
}

/// What kind of failure an AWS error is; decides whether to retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ErrorClass {
    /// The resource does not exist.
    NotFound,
    /// Rate limited: retry with backoff.
    Throttled,
    /// The resource is in a state that forbids the call right now: retry later.
    Conflict,
    /// The request is wrong: retrying will not help.
    Invalid,
    /// Network trouble, timeouts, 5xx: retry.
    Transient,
    /// Credentials or permissions.
    Denied,
    /// A safety invariant is broken and a human must act (exit 3).
    Invariant,
}

impl ErrorClass {
    /// Whether retrying the same call can succeed.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorClass::Throttled | ErrorClass::Conflict | ErrorClass::Transient)
    }
}

/// Error-code fragments (lower case) that name a class, checked in this order.
const CODE_CLASSES: &[(ErrorClass, &[&str])] = &[
    (ErrorClass::NotFound, &["notfound", "nonexistent", "doesnotexist", "nosuchentity"]),
    (ErrorClass::Throttled, &["throttl", "requestlimitexceeded", "toomanyrequests", "slowdown"]),
    (ErrorClass::Conflict, &["deletedrecently", "inuse", "conflict", "incorrectstate", "dependencyviolation"]),
    (ErrorClass::Denied, &["accessdenied", "unauthorized", "signature", "expiredtoken", "invalidclienttokenid"]),
    (ErrorClass::Transient, &["serviceunavailable", "internalerror", "internalfailure"]),
];

/// Classifies an AWS error code (and HTTP status, when known).
pub fn classify(code: Option<&str>, status: Option<u16>) -> ErrorClass {
    let lower = code.unwrap_or_default().to_ascii_lowercase();
    if let Some((class, _)) = CODE_CLASSES.iter().find(|(_, fragments)| fragments.iter().any(|f| lower.contains(f))) {
        return *class;
    }
    match status {
        Some(429) => ErrorClass::Throttled,
        Some(403) => ErrorClass::Denied,
        Some(s) if s >= 500 => ErrorClass::Transient,
        // No answer at all: connection refused, timeout, dropped connection.
        None if lower.is_empty() => ErrorClass::Transient,
        _ => ErrorClass::Invalid,
    }
}

/// A failed AWS call, classified.
#[derive(Debug, Clone, thiserror::Error)]
pub struct AwsError {
    /// `Service.Operation`, e.g. `SQS.CreateQueue`.
    pub operation: &'static str,
    /// The class, deciding retries.
    pub class: ErrorClass,
    /// The AWS error code, when the service sent one.
    pub code: Option<String>,
    /// Human-readable detail.
    pub message: String,
}

impl fmt::Display for AwsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.code {
            Some(code) => write!(f, "{} failed: {code}: {}", self.operation, self.message),
            None => write!(f, "{} failed: {}", self.operation, self.message),
        }
    }
}

impl AwsError {
    /// Wraps an SDK error from `operation`.
    pub fn from_sdk<E, R>(operation: &'static str, err: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: fmt::Debug + HttpStatus,
    {
        let status = err.raw_response().map(HttpStatus::status);
        let code = err.code().map(str::to_string);
        let message = match err.message() {
            Some(m) => m.to_string(),
            None => {
                // Walk the source chain for the most specific detail (dispatch failures, timeouts).
                let mut detail = err.to_string();
                let mut source = std::error::Error::source(&err);
                while let Some(s) = source {
                    detail = s.to_string();
                    source = s.source();
                }
                detail
            }
        };
        AwsError { operation, class: classify(code.as_deref(), status), code, message }
    }

    /// An error the operator itself raises about a response it cannot use.
    pub fn unexpected(operation: &'static str, message: impl Into<String>) -> Self {
        AwsError { operation, class: ErrorClass::Invalid, code: None, message: message.into() }
    }
}

/// Access to an HTTP response's status code.
pub trait HttpStatus {
    /// The status code.
    fn status(&self) -> u16;
}

impl HttpStatus for aws_smithy_runtime_api::http::Response {
    fn status(&self) -> u16 {
        self.status().as_u16()
    }
}

/// SDK results as [`AwsError`]s named by their operation:
/// `client.create_vpc().send().await.aws("EC2.CreateVpc")?`.
pub trait AwsResult<T> {
    /// Converts an SDK error, naming `operation` (`Service.Operation`, as IAM
    /// policies and reports name it).
    fn aws(self, operation: &'static str) -> Result<T, AwsError>;
}

impl<T, E, R> AwsResult<T> for Result<T, SdkError<E, R>>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: fmt::Debug + HttpStatus,
{
    fn aws(self, operation: &'static str) -> Result<T, AwsError> {
        self.map_err(|e| AwsError::from_sdk(operation, e))
    }
}

/// Request shapes that failed to build (a required member missing), as
/// errors naming the operation they were for.
pub trait Built<T> {
    /// Converts the build error, naming `operation`.
    fn built(self, operation: &'static str) -> Result<T, AwsError>;
}

impl<T> Built<T> for Result<T, aws_smithy_types::error::operation::BuildError> {
    fn built(self, operation: &'static str) -> Result<T, AwsError> {
        self.map_err(|e| AwsError::unexpected(operation, e.to_string()))
    }
}

/// Maps a "not found" error to success (deletes of things already gone).
pub fn gone_is_ok(result: Result<(), AwsError>) -> Result<(), AwsError> {
    match result {
        Err(e) if e.class == ErrorClass::NotFound => Ok(()),
        other => other,
    }
}

/// Maps a "not found" error to `None` (reads of things that may not exist).
pub fn found<T>(result: Result<T, AwsError>) -> Result<Option<T>, AwsError> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.class == ErrorClass::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Polls `check` (every 5 s, up to `limit`) until it returns `Some`.
pub async fn wait_for<T, F, Fut>(what: &'static str, limit: Duration, mut check: F) -> Result<T, AwsError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, AwsError>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await? {
            return Ok(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(AwsError { operation: what, class: ErrorClass::Transient, code: None, message: format!("still not ready after {limit:?}") });
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_without_the_id_is_an_error_not_an_empty_handle() {
        assert_eq!(required("EC2.CreateVpc", "VPC id", Some("vpc-1")).ok().as_deref(), Some("vpc-1"));
        for missing in [None, Some("")] {
            let e = required("EC2.CreateVpc", "VPC id", missing).expect_err("no id");
            assert_eq!((e.operation, e.message.as_str()), ("EC2.CreateVpc", "the reply names no VPC id"));
        }
    }

    #[test]
    fn classification() {
        assert_eq!(classify(Some("AWS.SimpleQueueService.NonExistentQueue"), Some(400)), ErrorClass::NotFound);
        assert_eq!(classify(Some("QueueDoesNotExist"), Some(400)), ErrorClass::NotFound);
        assert_eq!(classify(Some("ThrottlingException"), Some(400)), ErrorClass::Throttled);
        assert_eq!(classify(Some("RequestLimitExceeded"), Some(503)), ErrorClass::Throttled);
        assert_eq!(classify(Some("AWS.SimpleQueueService.QueueDeletedRecently"), Some(400)), ErrorClass::Conflict);
        assert_eq!(classify(Some("InvalidAttributeValue"), Some(400)), ErrorClass::Invalid);
        assert_eq!(classify(Some("AccessDenied"), Some(403)), ErrorClass::Denied);
        assert_eq!(classify(None, Some(503)), ErrorClass::Transient);
        assert_eq!(classify(None, None), ErrorClass::Transient);
        assert!(ErrorClass::Throttled.is_retryable() && !ErrorClass::Invalid.is_retryable());
    }

    #[test]
    fn reads_and_writes() {
        let c = CallCounter::default();
        c.record("SQS", "ListQueues");
        c.record("SQS", "GetQueueAttributes");
        c.record("SQS", "CreateQueue");
        let s = c.stats();
        assert_eq!((s.reads, s.writes), (2, 1));
        assert_eq!(s.by_operation.get("SQS.CreateQueue"), Some(&1));
    }

    #[test]
    fn creations() {
        for op in ["CreateVpc", "AllocateAddress", "CreateUserPoolClient", "RegisterTaskDefinition", "CreateQueue"] {
            assert!(creates_resource(op), "{op}");
        }
        for op in ["CreateTags", "ModifyVpcAttribute", "DescribeVpcs", "AssociateAddress", "UpdateService"] {
            assert!(!creates_resource(op), "{op}");
        }
    }
}

//! sentry-operator keeps the Sentry trading platform's AWS estate converged
//! with its YAML desired-state spec.
//!
//! - [`spec`]: loading `base.yaml` + `<env>.yaml`, structural and semantic validation.
//! - [`engine`]: the generic observe → diff → plan → apply loop and its report.
//! - [`kinds`]: one module per AWS resource kind.
//! - [`aws`]: SDK configuration, request counting, error classification.
//! - [`import`]: `import`, a spec that adopts an estate built with CloudFormation.
//! - [`lease`]: per-environment leases, spec revisions, fair sharing between replicas.
//! - [`source`]: where specs come from: a directory or an S3 prefix.
//! - [`status`]: `status`, each environment's lease, revision, last pass, drift and whitelist.
//! - [`graph`]: `graph`, the environment's resources and references as Mermaid or Graphviz.
//! - [`runtime`]: one environment's configuration, clients and request counter, reused across passes.
//! - [`daemon`]: `run`, the controller: intervals, lease, health and metrics endpoint.
//! - [`events`]: `run --events`, event-driven repair: the event plumbing, the queue feed, coalescing.
//! - [`alerts`]: drift alerts to CloudWatch Logs in Embedded Metric Format.
//! - [`cli`]: the command line.
#![forbid(unsafe_code)]

pub mod alerts;
pub mod aws;
pub mod cli;
pub mod daemon;
pub mod engine;
pub mod events;
pub mod graph;
pub mod iam_policy;
pub mod import;
pub mod kinds;
pub mod lease;
pub mod runtime;
pub mod source;
pub mod spec;
pub mod status;

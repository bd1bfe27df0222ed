//! sentry-operator keeps the Sentry trading platform's AWS estate converged
//! with its YAML desired-state spec.
//!
//! - [`spec`]: loading `base.yaml` + `<env>.yaml`, structural and semantic validation.
//! - [`engine`]: the generic observe → diff → plan → apply loop and its report.
//! - [`kinds`]: one module per AWS resource kind.
//! - [`aws`]: SDK configuration, request counting, error classification.
//! - [`cli`]: the command line.
#![forbid(unsafe_code)]

pub mod aws;
pub mod cli;
pub mod engine;
pub mod kinds;
pub mod spec;

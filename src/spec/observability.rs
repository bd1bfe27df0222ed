//! The `observability` section: the services' log groups; their types and their checks.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::validate::Checker;

/// CloudWatch Logs.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Observability {
    /// Retention of every log group, in days (7 dev, 14 staging, 30 prod).
    pub log_retention_days: u32,
    /// Log groups by logical id.
    #[serde(default)]
    pub log_groups: BTreeMap<String, LogGroup>,
}

/// A CloudWatch Logs group.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LogGroup {
    /// Physical name, e.g. `/ecs/sentry-oms-${env}`.
    pub name: String,
    /// Overrides `logRetentionDays`.
    pub retention_days: Option<u32>,
}

impl Checker {
    pub(super) fn observability(&mut self, o: &Observability) {
        let allowed = |c: &mut Checker, p: &[&str], days: u32| {
            if !LOG_RETENTION_DAYS.contains(&days) {
                c.err(p, format!("{days} is not a CloudWatch Logs retention period (1, 3, 5, 7, 14, 30, 60, 90, ... days)"));
            }
        };
        allowed(self, &["observability", "logRetentionDays"], o.log_retention_days);
        for (id, g) in &o.log_groups {
            if let Some(days) = g.retention_days {
                allowed(self, &["observability", "logGroups", id, "retentionDays"], days);
            }
        }
    }
}

/// CloudWatch Logs accepts only these retention periods (days).
pub const LOG_RETENTION_DAYS: &[u32] = &[1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653];

//! `iam-policy`: the least-privilege IAM policy of the operator's role in an
//! environment's account, put together from what each kind and each part of
//! the runtime declares beside its calls ([`Permissions`]). `deploy/iam-policy.json`
//! is this command's output, checked in and compared by the tests.

use crate::engine::permissions::{policy, Permissions, PolicyDocument, PolicyError};
use crate::engine::Rules;

/// The parts of the runtime besides the kinds that call AWS in an
/// environment's account: the pass's own reads (STS, the SSM parameters,
/// the CloudFormation stack a pin names) and `import`'s reads.
const RUNTIME: [Permissions; 2] = [crate::runtime::PERMISSIONS, crate::import::PERMISSIONS];

/// The event feed (`run --events`) and the drift alerts.
const DAEMON: [Permissions; 2] = [crate::events::feed::PERMISSIONS, crate::alerts::PERMISSIONS];

/// The policy granting the runtime, the kinds `used` (in registry order) and,
/// with `daemon`, the event feed and the alerts in full, and of the kinds
/// `observed` only their reads: every pass reads every kind (to find what a
/// spec no longer names), so a narrowed policy keeps those reads.
pub fn environment_policy(used: &[Rules], observed: &[Rules], daemon: bool) -> Result<PolicyDocument, PolicyError> {
    let mut sources: Vec<Permissions> = RUNTIME.to_vec();
    sources.extend(used.iter().map(|k| k.permissions));
    if daemon {
        sources.extend(DAEMON);
    }
    let reads: Vec<Permissions> = observed.iter().map(|k| k.permissions).collect();
    policy(&sources, &reads)
}

/// The policy as `deploy/iam-policy.json` holds it: pretty JSON, two spaces, a final newline.
pub fn render(policy: &PolicyDocument) -> Result<String, serde_json::Error> {
    Ok(serde_json::to_string_pretty(policy)? + "\n")
}

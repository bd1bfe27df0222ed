//! `sentry-operator status`: per environment, who holds its lease, the
//! revision last applied and when, the last pass, and — from a read-only
//! observe — the drift open now and the state of the whitelist.

use serde::Serialize;
use serde_json::{json, Value};

use crate::engine::plan::Action;
use crate::engine::report::Report;
use crate::engine::FindingClass;
use std::time::Duration;

use tokio::time::Instant;

use crate::aws::AwsError;
use crate::lease::revision::{judge, Applied, Revision, Verdict};
use crate::lease::{now_ms, utc, EnvRecord, LeaseTable};

/// One environment's status.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvStatus {
    /// The environment.
    pub env: String,
    /// Its lease, revision and last pass, as the lease table shows them (`null` without a table).
    pub lease: Option<Value>,
    /// The spec here: its revision, and how it compares with the one applied.
    pub spec: Value,
    /// Drift open now: one entry per resource the observe would change.
    pub drift: Vec<Value>,
    /// The whitelist entries: each one's state, and whether it is violated.
    pub whitelist: Vec<Value>,
    /// What could not be read.
    pub errors: Vec<String>,
}

impl EnvStatus {
    /// The status of `env`: its spec's revision `mine`, its lease item (if a
    /// table was read), what an observe found (unless skipped), and `errors`.
    pub fn new(env: &str, mine: &Revision, record: Option<&EnvRecord>, observed: Option<&Report>, mut errors: Vec<String>) -> EnvStatus {
        let (drift, whitelist) = observed.map(self::observed).unwrap_or_default();
        errors.extend(observed.iter().flat_map(|r| r.errors.iter().cloned()));
        EnvStatus { env: env.to_string(), lease: record.map(lease_json), spec: spec_json(mine, record), drift, whitelist, errors }
    }

    /// The status of an environment whose spec does not load.
    pub fn invalid(env: &str, error: &dyn std::fmt::Display) -> EnvStatus {
        EnvStatus {
            env: env.to_string(),
            lease: None,
            spec: Value::Null,
            drift: Vec::new(),
            whitelist: Vec::new(),
            errors: vec![format!("spec invalid: {error}")],
        }
    }
}

/// Whether `applied` is the revision `wanted`: under that label, by hash (7
/// digits at least), or — when the spec set here carries that label — as the
/// same content as `mine` (an environment the commit did not change keeps the
/// label of the commit that last changed it).
pub fn is_applied(applied: &Applied, wanted: &str, mine: &Revision, set_label: Option<&str>) -> bool {
    applied.revision.label.as_deref() == Some(wanted)
        || (wanted.len() >= 7 && applied.revision.hash.starts_with(wanted))
        || (set_label == Some(wanted) && applied.revision.hash == mine.hash)
}

/// Reads `env`'s lease item; with `wait_for`, again every 2 s until that
/// revision is applied or `deadline` passes. The item, and whether the
/// revision waited for is applied (`true` when none is).
pub async fn read_lease(
    table: &LeaseTable,
    env: &str,
    wait_for: Option<&str>,
    mine: &Revision,
    set_label: Option<&str>,
    deadline: Instant,
) -> Result<(EnvRecord, bool), AwsError> {
    loop {
        let record = table.get(env).await?;
        let applied = match wait_for {
            None => true,
            Some(wanted) => record.applied.as_ref().is_some_and(|a| is_applied(a, wanted, mine, set_label)),
        };
        if applied || Instant::now() >= deadline {
            return Ok((record, applied));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// What the lease table's item says, as JSON.
fn lease_json(record: &EnvRecord) -> Value {
    let now = now_ms();
    let holder = record
        .live_holder(now)
        .map(|(id, host, since)| json!({ "id": id, "host": host, "since": utc(since), "until": record.holder.as_ref().map(|h| utc(h.3)) }));
    let applied = record
        .applied
        .as_ref()
        .map(|a| json!({ "generation": a.generation, "hash": a.revision.hash, "label": a.revision.label, "at": utc(a.at_ms), "by": a.by }));
    let request = record.request.as_ref().filter(|(_, until)| *until > now).map(|(by, until)| json!({ "by": by, "until": utc(*until) }));
    let last_pass = record.last_pass.as_ref().map(|(at, by, result)| json!({ "at": utc(*at), "by": by, "result": result }));
    json!({ "holder": holder, "requested": request, "applied": applied, "lastPass": last_pass })
}

/// The spec's revision against the table's record.
fn spec_json(mine: &Revision, record: Option<&EnvRecord>) -> Value {
    let verdict = record.map(|r| match judge(mine, r.applied.as_ref(), &r.history) {
        Verdict::Current => "applied",
        Verdict::New => "newer (not applied yet)",
        Verdict::Stale { .. } => "STALE (superseded)",
    });
    json!({ "hash": mine.hash, "label": mine.label, "comparedWithApplied": verdict })
}

/// The drift and whitelist a read-only observe found.
fn observed(report: &Report) -> (Vec<Value>, Vec<Value>) {
    let drift = report
        .resources
        .iter()
        .filter(|s| !matches!(s.action, Action::Noop | Action::Skip | Action::Orphan))
        .map(|s| {
            let fields: Vec<&str> = s.changes.iter().map(|c| c.field.as_str()).collect();
            json!({ "resource": s.key.to_string(), "action": format!("{:?}", s.action).to_lowercase(), "fields": fields })
        })
        .collect();
    let whitelist = report
        .findings
        .iter()
        .filter(|f| f.class == FindingClass::Whitelist)
        .map(|f| json!({ "entry": f.resource.id, "state": f.message, "violated": f.violation }))
        .collect();
    (drift, whitelist)
}

/// The status as text.
pub fn to_text(statuses: &[EnvStatus]) -> String {
    let mut out = String::new();
    for s in statuses {
        out.push_str(&format!("{}\n", s.env));
        match &s.lease {
            None => out.push_str("  lease:     no lease table (--lease-table, or leaseTable: in the spec)\n"),
            Some(lease) => {
                let holder = match &lease["holder"] {
                    Value::Null => "free".to_string(),
                    h => format!("held by {} on {} since {} (until {})", text(&h["id"]), text(&h["host"]), text(&h["since"]), text(&h["until"])),
                };
                out.push_str(&format!("  lease:     {holder}\n"));
                if let Value::Object(r) = &lease["requested"] {
                    out.push_str(&format!("  requested: by {} until {}\n", text(&r["by"]), text(&r["until"])));
                }
                let applied = match &lease["applied"] {
                    Value::Null => "none recorded".to_string(),
                    a => format!("generation {}: {}{}, at {} by {}", a["generation"], text(&a["hash"]), label(&a["label"]), text(&a["at"]), text(&a["by"])),
                };
                out.push_str(&format!("  applied:   {applied}\n"));
                let last = match &lease["lastPass"] {
                    Value::Null => "none recorded".to_string(),
                    p => format!("{} by {}: {}", text(&p["at"]), text(&p["by"]), text(&p["result"])),
                };
                out.push_str(&format!("  last pass: {last}\n"));
            }
        }
        let compared = match &s.spec["comparedWithApplied"] {
            Value::Null => String::new(),
            v => format!(" — {}", text(v)),
        };
        out.push_str(&format!("  spec:      {}{}{compared}\n", text(&s.spec["hash"]), label(&s.spec["label"])));
        if s.drift.is_empty() {
            out.push_str("  drift:     none\n");
        } else {
            out.push_str(&format!("  drift:     {} open\n", s.drift.len()));
            for d in &s.drift {
                let fields: Vec<String> = d["fields"].as_array().map(|f| f.iter().map(text).collect()).unwrap_or_default();
                out.push_str(&format!("    {} {} {}\n", text(&d["action"]), text(&d["resource"]), fields.join(", ")));
            }
        }
        out.push_str("  whitelist:\n");
        for w in &s.whitelist {
            out.push_str(&format!("    {} {}\n", if w["violated"] == Value::Bool(true) { "VIOLATED" } else { "ok      " }, text(&w["state"])));
        }
        for e in &s.errors {
            out.push_str(&format!("  error:     {e}\n"));
        }
    }
    out
}

fn text(v: &Value) -> String {
    v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())
}

fn label(v: &Value) -> String {
    v.as_str().map(|l| format!(" ({l})")).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revision_is_applied_by_label_by_hash_or_as_unchanged_content() {
        let mine = Revision { hash: "0123456789abcdef".into(), label: Some("c9".into()) };
        let applied = Applied { generation: 3, revision: Revision { hash: "0123456789abcdef".into(), label: Some("c7".into()) }, at_ms: 0, by: "ci".into() };
        assert!(is_applied(&applied, "c7", &mine, None), "its label");
        assert!(is_applied(&applied, "0123456", &mine, None), "its hash");
        assert!(!is_applied(&applied, "0", &mine, None), "too short a hash prefix");
        assert!(is_applied(&applied, "c9", &mine, Some("c9")), "c9 left this environment unchanged since c7");
        assert!(!is_applied(&applied, "c9", &mine, None));
        let other = Revision { hash: "fedcba9876543210".into(), ..mine.clone() };
        assert!(!is_applied(&applied, "c9", &other, Some("c9")), "c9 changed it, and that is not applied yet");
    }
}

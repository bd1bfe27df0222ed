//! `sentry-operator status`: per environment, who holds its lease, the
//! revision last applied and when, the last pass, and — from a read-only
//! observe — the drift open now and the state of the whitelist.

use serde::Serialize;
use serde_json::{json, Value};

use crate::engine::plan::Action;
use crate::engine::report::Report;
use crate::engine::FindingClass;
use crate::lease::revision::{judge, Revision, Verdict};
use crate::lease::{now_ms, utc, EnvRecord};

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

/// What the lease table's item says, as JSON.
pub fn lease_json(record: &EnvRecord) -> Value {
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
pub fn spec_json(mine: &Revision, record: Option<&EnvRecord>) -> Value {
    let verdict = record.map(|r| match judge(mine, r.applied.as_ref(), &r.history) {
        Verdict::Current => "applied",
        Verdict::New => "newer (not applied yet)",
        Verdict::Stale { .. } => "STALE (superseded)",
    });
    json!({ "hash": mine.hash, "label": mine.label, "comparedWithApplied": verdict })
}

/// The drift and whitelist a read-only observe found.
pub fn observed(report: &Report) -> (Vec<Value>, Vec<Value>) {
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

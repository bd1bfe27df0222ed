//! The status page at `/` of the daemon's `--listen` address and the same
//! data at `/api/status` (JSON, schema 1, documented in the README): per
//! environment, who leads it, its last pass, the drift open now (with who
//! made it, when an event said), recent repairs and alerts, and the
//! whitelist. The page is one self-contained document — no script, font or
//! stylesheet from elsewhere, so it works in an air-gapped account — that
//! reloads itself, and it escapes everything it shows: names and tags come
//! from AWS and from people.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;

use serde_json::{json, Value};

use crate::engine::plan::{Action, Outcome, Step};
use crate::engine::report::{Report, EXIT_CHANGED, EXIT_INVARIANT, EXIT_IN_SYNC};
use crate::engine::{FindingClass, Mode};
use crate::lease::utc;

/// The version of `/api/status`'s document: bumped only when a field changes
/// meaning or goes away (fields may be added).
pub const SCHEMA: u32 = 1;
/// Recent repairs and alerts kept per environment.
pub const RECENT: usize = 20;
/// Seconds between the page's reloads.
pub const REFRESH_SECONDS: u32 = 10;

/// What the page shows of one environment, kept up to date by its passes.
#[derive(Clone, Debug, Default)]
pub struct EnvView {
    last_pass: Option<Value>,
    last_full_pass: Option<Value>,
    /// By resource (`kind id`): drift the passes found and did not repair.
    open_drift: BTreeMap<String, Value>,
    repairs: VecDeque<Value>,
    alerts: VecDeque<Value>,
    whitelist: Vec<Value>,
}

impl EnvView {
    /// Records a finished pass of the loop `scope` (`full` or `network`), at
    /// `at_ms`; `whole` when it read every kind of its loop (not narrowed to
    /// what events named).
    ///
    /// Open drift is kept by resource: a pass opens or closes the entries of
    /// the resources it decided on (those it left to the other loop are that
    /// loop's to say), keeping when each was first seen and who made it, once
    /// an event said. A whole full pass without errors saw everything, so
    /// what it did not find open is closed (a resource gone from the spec too).
    pub fn record(&mut self, report: &Report, scope: &str, whole: bool, at_ms: i64) {
        let at = utc(at_ms);
        let pass = pass_json(report, scope, whole, &at);
        if scope == "full" && whole {
            self.last_full_pass = Some(pass.clone());
        }
        self.last_pass = Some(pass);
        let replaces = scope == "full" && whole && report.errors.is_empty();
        let before = if replaces { std::mem::take(&mut self.open_drift) } else { self.open_drift.clone() };
        for step in &report.resources {
            let resource = step.key.to_string();
            let earlier = before.get(&resource);
            if step.outcome == Some(Outcome::Deferred) {
                if let Some(entry) = earlier {
                    self.open_drift.insert(resource, entry.clone());
                }
            } else if is_open(step) {
                let since = earlier.and_then(|d| d["since"].as_str()).map_or_else(|| at.clone(), str::to_string);
                let mut entry = drift_json(step, &since);
                if let Some(cause) = earlier.map(|d| &d["cause"]).filter(|c| entry["cause"].is_null() && !c.is_null()) {
                    entry["cause"] = cause.clone();
                }
                self.open_drift.insert(resource, entry);
            } else {
                self.open_drift.remove(&resource);
            }
            if step.outcome == Some(Outcome::Applied) {
                push_recent(&mut self.repairs, json!({ "at": at, "scope": scope, "drift": drift_json(step, &at) }));
            }
        }
        let findings = report.findings.iter();
        let violations = report.invariant_violations.iter().map(|m| ("violation", m.clone()));
        let security = findings.filter(|f| f.violation && f.class != FindingClass::Whitelist).map(|f| ("violation", f.message.clone()));
        let errors = report.errors.iter().map(|m| ("error", m.clone()));
        for (level, message) in violations.chain(security).chain(errors) {
            self.alert(level, message, &at);
        }
        let whitelist: Vec<Value> = report.findings.iter().filter(|f| f.class == FindingClass::Whitelist).map(|f| whitelist_json(f, &at)).collect();
        if !whitelist.is_empty() {
            self.whitelist = whitelist;
        }
    }

    /// Records an alert; one already among the recent ones is counted and moved up, not repeated.
    fn alert(&mut self, level: &str, message: String, at: &str) {
        let count = match self.alerts.iter().position(|a| a["level"] == level && a["message"] == message.as_str()) {
            Some(i) => self.alerts.remove(i).map_or(1, |a| a["count"].as_u64().unwrap_or(1) + 1),
            None => 1,
        };
        push_recent(&mut self.alerts, json!({ "at": at, "level": level, "message": message, "count": count }));
    }

    /// This environment in `/api/status`: `leading` (this replica writes it),
    /// the lease's `holder`, why it is `stale` and why its spec is.
    pub fn to_json(&self, env: &str, leading: bool, holder: Option<&Value>, stale: Option<String>, stale_spec: Option<&String>) -> Value {
        json!({
            "env": env,
            "leader": { "thisReplica": leading, "holder": holder.cloned() },
            "stale": stale,
            "staleSpec": stale_spec,
            "lastPass": self.last_pass,
            "lastFullPass": self.last_full_pass,
            "openDrift": self.open_drift.values().collect::<Vec<_>>(),
            "recentRepairs": self.repairs,
            "recentAlerts": self.alerts,
            "whitelist": self.whitelist,
        })
    }
}

/// Whether a step leaves drift open: the resource differs from the spec and the pass did not make it so.
fn is_open(step: &Step) -> bool {
    let drift = matches!(step.action, Action::Create | Action::Adopt | Action::Update | Action::Replace | Action::Delete | Action::Alert | Action::Blocked);
    drift && step.outcome != Some(Outcome::Applied)
}

fn push_recent(list: &mut VecDeque<Value>, entry: Value) {
    list.push_front(entry);
    list.truncate(RECENT);
}

fn pass_json(report: &Report, scope: &str, whole: bool, at: &str) -> Value {
    let applied = report.resources.iter().any(|s| s.outcome == Some(Outcome::Applied));
    let result = match report.exit_code() {
        EXIT_INVARIANT => "invariant violated",
        EXIT_IN_SYNC | EXIT_CHANGED if applied => "repaired",
        EXIT_CHANGED if report.mode == Mode::Plan => "drift found (observing only)",
        EXIT_CHANGED => "changes left to the other loop",
        EXIT_IN_SYNC if report.summary.alerted > 0 => "drift reported only (policy)",
        EXIT_IN_SYNC => "in sync",
        _ => "error",
    };
    json!({
        "at": at,
        "scope": scope,
        "narrowed": !whole,
        "mode": report.mode,
        "result": result,
        "durationMs": report.duration_ms,
        "calls": { "reads": report.calls.reads, "writes": report.calls.writes },
        "summary": report.summary,
    })
}

fn drift_json(step: &Step, since: &str) -> Value {
    let changes: Vec<Value> = step.changes.iter().map(|c| json!({ "field": c.field, "live": c.live, "desired": c.desired })).collect();
    json!({
        "resource": step.key.to_string(),
        "kind": step.key.kind,
        "id": step.key.id,
        "name": step.name,
        "action": format!("{:?}", step.action).to_lowercase(),
        "note": step.note,
        "changes": changes,
        "cause": step.cause,
        "since": since,
        "failed": match &step.outcome { Some(Outcome::Failed(e)) => Some(e.clone()), _ => None },
    })
}

/// A whitelist entry as the pass at `at` read it (a later pass that cannot read addresses leaves it as it was).
fn whitelist_json(f: &crate::engine::Finding, at: &str) -> Value {
    let fact = |name: &str| f.facts.get(name).cloned();
    json!({
        "at": at,
        "entry": f.resource.id,
        "address": fact("address"),
        "attachedTo": fact("attachedTo"),
        "state": if f.violation { "VIOLATED" } else { "OK" },
        "message": f.message,
    })
}

/// Text made safe inside HTML elements and quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A JSON value as escaped text (`-` when absent).
fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => escape(s),
        other => escape(&other.to_string()),
    }
}

const STYLE: &str = "body{font:14px/1.4 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;background:#f6f7f9;color:#1d232b}\
header{background:#1d232b;color:#fff;padding:12px 24px}header h1{font-size:18px;margin:0}header p{margin:4px 0 0;color:#c5ccd6;font-size:12px}\
main{padding:16px 24px}section.env{background:#fff;border:1px solid #dde1e6;border-radius:6px;margin:0 0 20px;padding:12px 16px}\
h2{margin:0 0 8px;font-size:20px}h3{margin:14px 0 6px;font-size:14px;text-transform:uppercase;letter-spacing:.04em;color:#59636e}\
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eceff2;vertical-align:top}\
th{font-weight:600;color:#59636e;font-size:12px}.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600}\
.ok{background:#d4edda;color:#155724}.bad{background:#f8d7da;color:#721c24}.warn{background:#fff3cd;color:#856404}.muted{color:#7b8691}\
code{font:12px ui-monospace,Menlo,Consolas,monospace}";

/// The page of the `/api/status` document `status`.
pub fn html(status: &Value) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>sentry-operator status</title><style>{STYLE}</style></head>\n<body>\
         <header><h1>sentry-operator</h1><p>Updated <span id=\"generated\">{}</span> · reloads every {REFRESH_SECONDS} s · \
         <a style=\"color:#c5ccd6\" href=\"/api/status\">/api/status</a> · <a style=\"color:#c5ccd6\" href=\"/metrics\">/metrics</a></p></header>\n<main>\n",
        text(&status["generatedAt"])
    );
    for env in status["environments"].as_array().into_iter().flatten() {
        env_section(&mut out, env);
    }
    out.push_str("</main></body></html>\n");
    out
}

fn env_section(out: &mut String, env: &Value) {
    let name = text(&env["env"]);
    let leader = &env["leader"];
    let leading = if leader["thisReplica"] == Value::Bool(true) {
        "<span class=\"badge ok\">this replica leads</span>".to_string()
    } else {
        match &leader["holder"] {
            Value::Null => "<span class=\"badge warn\">no leader</span>".to_string(),
            h => format!("<span class=\"badge warn\">led by {} on {}</span>", text(&h["id"]), text(&h["host"])),
        }
    };
    let _ = write!(out, "<section class=\"env\" id=\"env-{name}\" data-env=\"{name}\"><h2>{name} {leading}");
    for (key, what) in [("stale", "stale"), ("staleSpec", "stale spec")] {
        if !env[key].is_null() {
            let _ = write!(out, " <span class=\"badge bad\" title=\"{}\">{what}</span>", text(&env[key]));
        }
    }
    out.push_str("</h2>\n");

    out.push_str("<h3>Last pass</h3>");
    let passes: Vec<(&str, &Value)> = [("latest", &env["lastPass"]), ("last full", &env["lastFullPass"])].into_iter().filter(|(_, p)| !p.is_null()).collect();
    if passes.is_empty() {
        out.push_str("<p class=\"muted\">none yet</p>\n");
    } else {
        out.push_str("<table class=\"passes\"><tr><th></th><th>at</th><th>loop</th><th>result</th><th>duration</th><th>AWS calls</th></tr>");
        for (which, p) in passes {
            let class = match p["result"].as_str() {
                Some("in sync" | "repaired") => "ok",
                Some("drift found (observing only)" | "drift reported only (policy)" | "changes left to the other loop") => "warn",
                _ => "bad",
            };
            let _ = write!(
                out,
                "<tr><td>{which}</td><td>{}</td><td>{} ({})</td><td><span class=\"badge {class}\">{}</span></td><td>{} ms</td><td>{} reads, {} writes</td></tr>",
                text(&p["at"]),
                text(&p["scope"]),
                text(&p["mode"]),
                text(&p["result"]),
                text(&p["durationMs"]),
                text(&p["calls"]["reads"]),
                text(&p["calls"]["writes"])
            );
        }
        out.push_str("</table>\n");
    }

    out.push_str("<h3>Elastic IP whitelist</h3>");
    let whitelist = env["whitelist"].as_array().cloned().unwrap_or_default();
    if whitelist.is_empty() {
        out.push_str("<p class=\"muted\">not read yet</p>\n");
    } else {
        out.push_str("<table class=\"whitelist\"><tr><th>entry</th><th>address</th><th>attached to</th><th>state</th><th>read at</th><th>detail</th></tr>");
        for w in &whitelist {
            let class = if w["state"] == "OK" { "ok" } else { "bad" };
            let _ = write!(
                out,
                "<tr><td>{}</td><td class=\"address\"><code>{}</code></td><td>{}</td><td><span class=\"badge {class}\">{}</span></td><td>{}</td><td class=\"muted\">{}</td></tr>",
                text(&w["entry"]),
                text(&w["address"]),
                text(&w["attachedTo"]),
                text(&w["state"]),
                text(&w["at"]),
                text(&w["message"])
            );
        }
        out.push_str("</table>\n");
    }

    out.push_str("<h3>Open drift</h3>");
    drift_table(out, env["openDrift"].as_array().map(|a| a.iter().collect()).unwrap_or_default(), "drift", "since", "none");

    out.push_str("<h3>Recent repairs</h3>");
    let repairs: Vec<&Value> = env["recentRepairs"].as_array().map(|a| a.iter().map(|r| &r["drift"]).collect()).unwrap_or_default();
    drift_table(out, repairs, "repairs", "repaired at", "none since the daemon started");

    out.push_str("<h3>Recent alerts</h3>");
    let alerts = env["recentAlerts"].as_array().cloned().unwrap_or_default();
    if alerts.is_empty() {
        out.push_str("<p class=\"muted\">none since the daemon started</p>\n");
    } else {
        out.push_str("<table class=\"alerts\"><tr><th>at</th><th>level</th><th>message</th><th>times</th></tr>");
        for a in &alerts {
            let _ = write!(
                out,
                "<tr><td>{}</td><td><span class=\"badge bad\">{}</span></td><td>{}</td><td>{}</td></tr>",
                text(&a["at"]),
                text(&a["level"]),
                text(&a["message"]),
                text(&a["count"])
            );
        }
        out.push_str("</table>\n");
    }
    out.push_str("</section>\n");
}

/// A table of drift entries (open, or repaired): resource, what differs, who changed it.
fn drift_table(out: &mut String, entries: Vec<&Value>, class: &str, when: &str, empty: &str) {
    if entries.is_empty() {
        let _ = writeln!(out, "<p class=\"muted\">{empty}</p>");
        return;
    }
    let _ = write!(out, "<table class=\"{class}\"><tr><th>{when}</th><th>resource</th><th>action</th><th>what differs</th><th>changed by</th></tr>");
    for d in entries {
        let changes: Vec<String> = d["changes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| format!("<code>{}</code>: {} → {}", text(&c["field"]), text(&c["live"]), text(&c["desired"])))
            .collect();
        let note = if d["note"].is_null() { String::new() } else { format!("<br><span class=\"muted\">{}</span>", text(&d["note"])) };
        let cause = match &d["cause"] {
            Value::Null => "<span class=\"muted\">unknown (no event)</span>".to_string(),
            c => format!(
                "{} ({}) via <code>{}</code> at {} from {}",
                text(&c["actor"]),
                text(&c["principalType"]),
                text(&c["call"]),
                text(&c["at"]),
                text(&c["sourceIp"])
            ),
        };
        let _ = write!(
            out,
            "<tr><td>{}</td><td><code>{}</code><br><span class=\"muted\">{}</span></td><td>{}</td><td>{}{note}</td><td>{cause}</td></tr>",
            text(&d["since"]),
            text(&d["resource"]),
            text(&d["name"]),
            text(&d["action"]),
            changes.join("<br>")
        );
    }
    out.push_str("</table>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::plan::Step;
    use crate::engine::{Desired, FieldChange, Finding, ResourceKey};

    fn hostile_report() -> Report {
        let env = crate::spec::EnvSpec::new("dev", Default::default());
        let mut step = Step::of(Desired::new("sqs.queue", "orders", "sentry-orders-dev", Default::default()), Action::Alert);
        step.changes = vec![FieldChange::of("tags.team", Some("<script>alert(1)</script>".into()), Some("oms\"'&".into()))];
        step.note = Some("drift reported only (policy: alert)".into());
        let mut report = Report::new(&env, Mode::Apply, vec![step], vec!["<img src=x onerror=alert(2)>".into()], Default::default(), Default::default());
        report.set_findings(vec![Finding {
            class: FindingClass::Whitelist,
            resource: ResourceKey::new("ec2.elastic-ip", "whitelist-1"),
            field: None,
            desired: None,
            live: None,
            violation: true,
            message: "whitelist-1: VIOLATED".into(),
            facts: [("address", "203.0.113.7".to_string()), ("attachedTo", "<b>eni</b>".to_string())].into(),
        }]);
        report
    }

    fn document(view: &EnvView) -> Value {
        json!({ "schema": SCHEMA, "generatedAt": utc(0), "environments": [view.to_json("dev", true, None, None, None)] })
    }

    #[test]
    fn everything_shown_is_escaped() {
        let mut view = EnvView::default();
        view.record(&hostile_report(), "full", true, 0);
        let page = html(&document(&view));
        assert!(!page.contains("<script>alert"), "a tag value must not become a script: {page}");
        assert!(!page.contains("<img src=x"), "nor an error message an element");
        assert!(!page.contains("<b>eni</b>"));
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "shown as text");
        assert!(page.contains("oms&quot;&#39;&amp;"));
        assert!(!page.contains("<script"), "the page has no script at all");
        assert!(!page.contains("http://") && !page.contains("https://"), "nothing fetched from elsewhere");
        assert!(page.contains("203.0.113.7") && page.contains("VIOLATED"));
    }

    #[test]
    fn drift_stays_open_until_a_pass_finds_it_gone_and_alerts_are_counted_not_repeated() {
        let mut view = EnvView::default();
        view.record(&hostile_report(), "full", true, 0);
        view.record(&hostile_report(), "full", true, 60_000);
        let doc = view.to_json("dev", true, None, None, None);
        assert_eq!(doc["openDrift"][0]["since"], utc(0), "open since it was first seen");
        assert_eq!(doc["recentAlerts"].as_array().map(Vec::len), Some(1));
        assert_eq!(doc["recentAlerts"][0]["count"], 2);
        let env = crate::spec::EnvSpec::new("dev", Default::default());
        let mut fixed = hostile_report().resources;
        fixed[0].action = Action::Update;
        fixed[0].outcome = Some(Outcome::Applied);
        view.record(&Report::new(&env, Mode::Apply, fixed, Vec::new(), Default::default(), Default::default()), "full", true, 120_000);
        let doc = view.to_json("dev", true, None, None, None);
        assert_eq!(doc["openDrift"].as_array().map(Vec::len), Some(0), "repaired");
        assert_eq!(doc["recentRepairs"][0]["drift"]["resource"], "sqs.queue orders");
        assert_eq!(doc["lastPass"]["result"], "repaired");
        assert_eq!(doc["whitelist"][0]["address"], "203.0.113.7", "kept from the last pass that read it");
        assert_eq!(doc["whitelist"][0]["at"], utc(60_000), "and says when that was");
    }

    fn queue_drift(outcome: Option<Outcome>, cause: bool) -> Report {
        let env = crate::spec::EnvSpec::new("dev", Default::default());
        let mut step = Step::of(Desired::new("sqs.queue", "orders", "sentry-orders-dev", Default::default()), Action::Update);
        step.outcome = outcome;
        step.cause = cause.then(|| crate::engine::focus::Attribution {
            actor: "arn:aws:iam::123456789012:user/alice".into(),
            principal_type: "IAMUser".into(),
            call: "SetQueueAttributes".into(),
            at: "2026-11-29T03:00:00Z".into(),
            source_ip: "198.51.100.7".into(),
        });
        Report::new(&env, Mode::Apply, vec![step], Vec::new(), Default::default(), Default::default())
    }

    #[test]
    fn who_made_a_drift_is_kept_while_it_stays_open_and_the_other_loops_deferral_changes_nothing() {
        let mut view = EnvView::default();
        // Observe-only (no outcome): the event's pass names alice; the next whole pass knows no event.
        view.record(&queue_drift(None, true), "full", false, 0);
        view.record(&queue_drift(None, false), "full", true, 60_000);
        let doc = view.to_json("dev", true, None, None, None);
        assert_eq!(doc["openDrift"][0]["cause"]["actor"], "arn:aws:iam::123456789012:user/alice", "still attributed");
        assert_eq!(doc["openDrift"][0]["since"], utc(0));
        assert_eq!(doc["lastFullPass"]["at"], utc(60_000), "an event's narrowed pass is not the last full pass");
        assert_eq!(doc["lastPass"]["narrowed"], false);
        // The other loop writes it: this pass's deferral neither closes nor re-opens it.
        view.record(&queue_drift(Some(Outcome::Deferred), false), "full", true, 120_000);
        let doc = view.to_json("dev", true, None, None, None);
        assert_eq!(doc["openDrift"][0]["since"], utc(0), "kept as it was");
        assert_eq!(doc["lastPass"]["result"], "changes left to the other loop", "nothing was repaired by this pass");
        view.record(&queue_drift(Some(Outcome::Applied), false), "network", true, 130_000);
        assert_eq!(view.to_json("dev", true, None, None, None)["openDrift"].as_array().map(Vec::len), Some(0));
        view.record(&queue_drift(Some(Outcome::Deferred), false), "full", true, 140_000);
        assert_eq!(view.to_json("dev", true, None, None, None)["openDrift"].as_array().map(Vec::len), Some(0), "not re-opened by a deferral");
    }

    #[test]
    fn a_whole_full_pass_closes_drift_of_resources_it_no_longer_sees() {
        let mut view = EnvView::default();
        view.record(&queue_drift(None, false), "full", true, 0);
        let env = crate::spec::EnvSpec::new("dev", Default::default());
        let empty = Report::new(&env, Mode::Apply, Vec::new(), Vec::new(), Default::default(), Default::default());
        view.record(&empty, "network", true, 10_000);
        assert_eq!(view.to_json("dev", true, None, None, None)["openDrift"].as_array().map(Vec::len), Some(1), "the network loop does not read queues");
        view.record(&empty, "full", false, 20_000);
        assert_eq!(view.to_json("dev", true, None, None, None)["openDrift"].as_array().map(Vec::len), Some(1), "nor does an event's pass elsewhere");
        view.record(&empty, "full", true, 30_000);
        assert_eq!(view.to_json("dev", true, None, None, None)["openDrift"].as_array().map(Vec::len), Some(0), "removed from the spec, say");
    }
}

//! The result of a pass: terraform-like text or a stable JSON document, the
//! summary counts, the AWS calls made, and the exit status.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use super::plan::{Action, Outcome, Step};
use super::{Finding, Layer, Mode};
use crate::aws::CallStats;
use crate::spec::EnvSpec;

/// Exit status: in sync, nothing written.
pub const EXIT_IN_SYNC: u8 = 0;
/// Exit status: an error, or not converged.
pub const EXIT_ERROR: u8 = 1;
/// Exit status: changes pending (plan) or drift found and repaired (reconcile).
pub const EXIT_CHANGED: u8 = 2;
/// Exit status: an invariant is broken and cannot be repaired automatically.
pub const EXIT_INVARIANT: u8 = 3;
/// Exit status: another writer holds the environment's lease; nothing written.
pub const EXIT_LEASE_HELD: u8 = 4;
/// Exit status: the spec is older than the revision applied; nothing written.
pub const EXIT_STALE_SPEC: u8 = 5;
/// Exit status of `status --wait-for-revision`: the revision was not applied in time.
pub const EXIT_REVISION_NOT_APPLIED: u8 = 4;

/// Counts per action.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Resources to create.
    pub create: usize,
    /// Existing resources to adopt.
    pub adopt: usize,
    /// Resources to update.
    pub update: usize,
    /// Resources to delete.
    pub delete: usize,
    /// Resources in sync.
    pub unchanged: usize,
    /// Resources skipped (not the operator's).
    pub skipped: usize,
    /// Resources removed from the spec and retained.
    pub orphaned: usize,
    /// Changes that need a replacement and were not made.
    pub blocked: usize,
    /// Drift reported but not repaired, by policy.
    pub alerted: usize,
    /// Writes that failed (apply mode).
    pub failed: usize,
}

/// A titled block of lines a kind adds to the report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Section {
    /// Title, e.g. `Elastic IP whitelist`.
    pub title: String,
    /// One line per entry.
    pub lines: Vec<String>,
}

/// The result of one pass over one environment.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Environment.
    pub env: String,
    /// `plan` or `apply`.
    pub mode: Mode,
    /// One entry per resource, in kind order.
    pub resources: Vec<Step>,
    /// Counts per action.
    pub summary: Summary,
    /// Problems that stopped part of the pass (e.g. a kind that could not be observed).
    pub errors: Vec<String>,
    /// Broken invariants that need a human (exit 3).
    pub invariant_violations: Vec<String>,
    /// What the kinds' reviews found (the whitelist's state, security drift).
    pub findings: Vec<Finding>,
    /// The findings as titled blocks of lines, one per class.
    pub sections: Vec<Section>,
    /// AWS requests made by the pass.
    pub calls: CallStats,
    /// Wall time of the pass, in milliseconds.
    pub duration_ms: u64,
    /// The layer of each kind the pass covered, for the text's summary table
    /// (not part of the JSON document, which stays as it was).
    #[serde(skip)]
    pub layers: BTreeMap<&'static str, Layer>,
}

impl Report {
    /// Builds the report of a pass.
    pub fn new(env: &EnvSpec, mode: Mode, resources: Vec<Step>, errors: Vec<String>, calls: CallStats, elapsed: Duration) -> Self {
        let mut summary = Summary::default();
        for s in &resources {
            match s.action {
                Action::Create => summary.create += 1,
                Action::Adopt => summary.adopt += 1,
                Action::Update | Action::Replace => summary.update += 1,
                Action::Delete => summary.delete += 1,
                Action::Noop => summary.unchanged += 1,
                Action::Skip => summary.skipped += 1,
                Action::Orphan => summary.orphaned += 1,
                Action::Blocked => summary.blocked += 1,
                Action::Alert => summary.alerted += 1,
            }
            if matches!(s.outcome, Some(Outcome::Failed(_) | Outcome::DependencyFailed(_))) {
                summary.failed += 1;
            }
        }
        Report {
            env: env.env.clone(),
            mode,
            resources,
            summary,
            errors,
            invariant_violations: Vec::new(),
            findings: Vec::new(),
            sections: Vec::new(),
            calls,
            duration_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            layers: BTreeMap::new(),
        }
    }

    /// Records the reviews' findings, and their sections (one per class, in order of first appearance).
    pub fn set_findings(&mut self, findings: Vec<Finding>) {
        let mut sections: Vec<(super::FindingClass, Section)> = Vec::new();
        for f in &findings {
            match sections.iter_mut().find(|(class, _)| *class == f.class) {
                Some((_, section)) => section.lines.push(f.message.clone()),
                None => sections.push((f.class, Section { title: f.class.title().into(), lines: vec![f.message.clone()] })),
            }
        }
        self.sections = sections.into_iter().map(|(_, s)| s).collect();
        self.findings = findings;
    }

    /// Whether the spec asks for changes (creates, updates or deletes).
    pub fn has_changes(&self) -> bool {
        self.summary.create + self.summary.adopt + self.summary.update + self.summary.delete > 0
    }

    /// The exit status: plan 0 in sync / 2 changes pending / 1 error;
    /// apply 0 no writes / 2 repaired / 1 error or not converged / 3 invariant broken.
    pub fn exit_code(&self) -> u8 {
        if !self.invariant_violations.is_empty() {
            EXIT_INVARIANT
        } else if !self.errors.is_empty() || self.summary.failed > 0 || self.summary.blocked > 0 {
            EXIT_ERROR
        } else if self.has_changes() {
            EXIT_CHANGED
        } else {
            EXIT_IN_SYNC
        }
    }

    /// Renders the report as plain text.
    pub fn to_text(&self) -> String {
        self.to_text_styled(false)
    }

    /// Renders the report for a terminal: with `colour`, the summary table's
    /// counts are coloured (the caller decides: a terminal, and no `NO_COLOR`).
    pub fn to_text_styled(&self, colour: bool) -> String {
        let mut out = String::new();
        let verb = if self.mode == Mode::Plan { "Plan" } else { "Reconcile" };
        let _ = writeln!(out, "{verb} for environment {}:\n", self.env);
        out.push_str(&self.summary_table(colour));
        // Unchanged resources are left out, unless the plan has something to say of them.
        for s in self.resources.iter().filter(|s| s.action != Action::Noop || s.note.is_some()) {
            let sigil = match s.action {
                Action::Create => "+",
                Action::Adopt => "<=",
                Action::Update => "~",
                Action::Replace => "-/+",
                Action::Delete => "-",
                Action::Noop => "=",
                Action::Skip => "!",
                Action::Orphan => "?",
                Action::Blocked => "x",
                Action::Alert => "!~",
            };
            let _ = write!(out, "  {sigil} {} {} ({})", s.key.kind, s.key.id, s.name);
            if let Some(note) = &s.note {
                let _ = write!(out, ": {note}");
            }
            match &s.outcome {
                Some(Outcome::Applied) => out.push_str("  [done]"),
                Some(Outcome::Failed(e)) => {
                    let _ = write!(out, "  [FAILED: {e}]");
                }
                Some(Outcome::DependencyFailed(d)) => {
                    let _ = write!(out, "  [not attempted: {d} failed]");
                }
                Some(Outcome::Deferred) => out.push_str("  [left to another pass]"),
                None => {}
            }
            out.push('\n');
            if let Some(cause) = &s.cause {
                let _ = writeln!(out, "      ({cause})");
            }
            for c in &s.changes {
                let line = match (&c.live, &c.desired) {
                    (None, Some(d)) => format!("      + {} = {d}", c.field),
                    (Some(l), Some(d)) => format!("      ~ {}: {l} -> {d}", c.field),
                    (Some(l), None) => format!("      - {} = {l}", c.field),
                    (None, None) => continue,
                };
                out.push_str(&line);
                out.push('\n');
            }
        }
        if self.resources.iter().all(|s| s.action == Action::Noop) {
            out.push_str("  No changes: every managed resource matches the spec.\n");
        }
        for section in &self.sections {
            let _ = writeln!(out, "\n{}:", section.title);
            for line in &section.lines {
                let _ = writeln!(out, "  {line}");
            }
        }
        for e in &self.errors {
            let _ = writeln!(out, "\nerror: {e}");
        }
        for v in &self.invariant_violations {
            let _ = writeln!(out, "\nINVARIANT VIOLATED: {v}");
        }
        let s = &self.summary;
        if self.mode == Mode::Plan {
            let _ =
                write!(out, "\nPlan: {} to create, {} to adopt, {} to update, {} to delete, {} unchanged", s.create, s.adopt, s.update, s.delete, s.unchanged);
        } else {
            let _ = write!(out, "\nApplied: {} created, {} adopted, {} updated, {} deleted, {} unchanged", s.create, s.adopt, s.update, s.delete, s.unchanged);
        }
        for (n, what) in [
            (s.skipped, "skipped (unmanaged)"),
            (s.orphaned, "orphaned (retained)"),
            (s.alerted, "drifted (alert only)"),
            (s.blocked, "blocked"),
            (s.failed, "failed"),
        ] {
            if n > 0 {
                let _ = write!(out, ", {n} {what}");
            }
        }
        let _ = writeln!(out, ".");
        let _ = writeln!(out, "AWS calls: {} reads, {} writes ({} ms).", self.calls.reads, self.calls.writes, self.duration_ms);
        out
    }

    /// The table at the top of the text: per layer, one row per kind the pass
    /// does something to, its resources counted by what (`other`: skipped,
    /// orphaned, alerted or blocked), then one row for the layer's kinds in
    /// sync. Zeros show as `-`.
    fn summary_table(&self, colour: bool) -> String {
        const COLUMNS: [(&str, &str); 6] = [("create", "32"), ("adopt", "36"), ("update", "33"), ("delete", "31"), ("unchanged", ""), ("other", "35")];
        let mut rows: Vec<(Option<Layer>, &'static str, [usize; 6])> = Vec::new();
        for step in &self.resources {
            let column = match step.action {
                Action::Create => 0,
                Action::Adopt => 1,
                Action::Update | Action::Replace => 2,
                Action::Delete => 3,
                Action::Noop => 4,
                Action::Skip | Action::Orphan | Action::Alert | Action::Blocked => 5,
            };
            let layer = self.layers.get(step.key.kind).copied();
            let index = match rows.iter().position(|(_, kind, _)| *kind == step.key.kind) {
                Some(i) => i,
                None => {
                    rows.push((layer, step.key.kind, [0; 6]));
                    rows.len() - 1
                }
            };
            rows[index].2[column] += 1;
        }
        if rows.is_empty() {
            return String::new();
        }
        // Stable: by layer (kinds of no known layer last), then in the pass's (dependency) order.
        rows.sort_by_key(|(layer, _, _)| layer.map_or(Layer::ALL.len(), |l| l as usize));
        // Compact: a layer's kinds with nothing to do share one row, after those with something.
        let mut compact: Vec<(Option<Layer>, String, [usize; 6])> = Vec::new();
        for (layer, group) in rows.chunk_by(|a, b| a.0 == b.0).map(|g| (g[0].0, g)) {
            let (quiet, busy): (Vec<_>, Vec<_>) = group.iter().partition(|(_, _, c)| c.iter().enumerate().all(|(i, n)| i == 4 || *n == 0));
            compact.extend(busy.into_iter().map(|&(l, kind, c)| (l, kind.to_string(), c)));
            if !quiet.is_empty() {
                let unchanged = quiet.iter().map(|(_, _, c)| c[4]).sum();
                let label = format!("{} kind{} in sync", quiet.len(), if quiet.len() == 1 { "" } else { "s" });
                compact.push((layer, label, [0, 0, 0, 0, unchanged, 0]));
            }
        }
        let width = compact.iter().map(|(_, kind, _)| kind.len() + 4).max().unwrap_or(0).max(24);
        let paint = |code: &str, text: String| if colour && !code.is_empty() { format!("\x1b[{code}m{text}\x1b[0m") } else { text };
        let mut out = format!("  {:width$}", "Summary", width = width - 2);
        for (name, _) in COLUMNS {
            let _ = write!(out, " {name:>9}");
        }
        out.push('\n');
        let mut current: Option<Option<Layer>> = None;
        for (layer, kind, counts) in &compact {
            if current != Some(*layer) {
                let _ = writeln!(out, "  {}", layer.map_or("Other kinds", Layer::title));
                current = Some(*layer);
            }
            let _ = write!(out, "    {kind:width$}", width = width - 4);
            for ((_, code), n) in COLUMNS.iter().zip(counts) {
                let cell = if *n == 0 { format!("{:>9}", "-") } else { format!("{n:>9}") };
                out.push(' ');
                out.push_str(&if *n == 0 { cell } else { paint(code, cell) });
            }
            out.push('\n');
        }
        out.push('\n');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Desired;

    fn step(kind: &'static str, id: &str, action: Action) -> Step {
        Step::of(Desired::new(kind, id, id, Default::default()), action)
    }

    #[test]
    fn the_text_opens_with_a_table_of_kinds_by_layer_coloured_only_when_asked() {
        let spec = crate::spec::load(std::path::Path::new("specs"), "dev").expect("dev loads");
        let steps = vec![
            step("sqs.queue", "a", Action::Create),
            step("sqs.queue", "b", Action::Noop),
            step("ec2.vpc", "vpc", Action::Update),
            step("ec2.subnet", "a", Action::Noop),
            step("ec2.subnet", "b", Action::Noop),
            step("ec2.internet-gateway", "igw", Action::Noop),
            step("sqs.queue", "c", Action::Orphan),
            step("dynamodb.table", "t", Action::Noop),
        ];
        let mut report = Report::new(&spec, Mode::Plan, steps, Vec::new(), CallStats::default(), Duration::ZERO);
        report.layers = [
            ("sqs.queue", Layer::DataMessaging),
            ("dynamodb.table", Layer::DataMessaging),
            ("ec2.vpc", Layer::Networking),
            ("ec2.subnet", Layer::Networking),
            ("ec2.internet-gateway", Layer::Networking),
        ]
        .into();
        let text = report.to_text();
        let table: Vec<&str> = text.lines().skip(2).take(8).collect();
        assert_eq!(
            table,
            [
                "  Summary                   create     adopt    update    delete unchanged     other",
                "  Layer 1: Networking",
                "    ec2.vpc                      -         -         1         -         -         -",
                "    2 kinds in sync              -         -         -         -         3         -",
                "  Layer 3: Data & Messaging",
                "    sqs.queue                    1         -         -         -         1         1",
                "    1 kind in sync               -         -         -         -         1         -",
                "",
            ],
            "{text}"
        );
        assert!(!text.contains('\x1b'), "plain unless asked");
        let coloured = report.to_text_styled(true);
        assert!(coloured.contains("\x1b[32m        1\x1b[0m"), "creates in green: {coloured:?}");
        assert_eq!(coloured.replace("\x1b[32m", "").replace("\x1b[33m", "").replace("\x1b[35m", "").replace("\x1b[0m", ""), text);
        report.set_findings(vec![crate::engine::Finding {
            class: crate::engine::FindingClass::Whitelist,
            resource: crate::engine::ResourceKey::new("ec2.elastic-ip", "whitelist-1"),
            field: None,
            desired: None,
            live: None,
            violation: false,
            message: "whitelist-1: OK".into(),
            facts: [("address", "203.0.113.7".to_string())].into(),
        }]);
        let json = serde_json::to_value(&report).expect("serializes");
        let keys = |v: &serde_json::Value| v.as_object().map(|o| o.keys().cloned().collect::<std::collections::BTreeSet<_>>()).unwrap_or_default();
        assert_eq!(
            keys(&json),
            ["calls", "durationMs", "env", "errors", "findings", "invariantViolations", "mode", "resources", "sections", "summary"].map(String::from).into(),
            "the JSON document is unchanged"
        );
        assert_eq!(keys(&json["findings"][0]), ["class", "desired", "field", "live", "message", "resource", "violation"].map(String::from).into());
    }
}

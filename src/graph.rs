//! `sentry-operator graph`: an environment's resources and the references
//! between them (the dependencies the engine resolves), grouped by layer like
//! the seeds' diagrams, as a Mermaid flowchart or a Graphviz digraph; with
//! each resource's live status when a read-only pass could see AWS.
//!
//! The output is stable: nodes in layer, kind (dependency) and id order,
//! edges sorted, identifiers derived from the spec's keys, never from AWS; so
//! it diffs well in a pull request.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::engine::plan::Action;
use crate::engine::report::Report;
use crate::engine::{reference, FindingClass, Kind, Layer, ResourceKey};
use crate::spec::EnvSpec;

/// What a resource looks like live, as the graph colours it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum NodeStatus {
    /// Matches the spec.
    InSync,
    /// Differs from the spec (repairable, or reported only by policy).
    Drift,
    /// Does not exist: the next pass creates it.
    Missing,
    /// Exists but is not the operator's (not adopted yet, or someone else's).
    Unmanaged,
    /// Needs a change AWS makes only by replacement: left alone.
    Blocked,
    /// Its kind could not be read.
    Unknown,
}

impl NodeStatus {
    /// Every status, in the legend's order.
    pub const ALL: [NodeStatus; 6] =
        [NodeStatus::InSync, NodeStatus::Drift, NodeStatus::Missing, NodeStatus::Unmanaged, NodeStatus::Blocked, NodeStatus::Unknown];

    /// The status a pass's decision on a resource shows (`None`: not a spec resource).
    pub fn of(action: Action) -> Option<NodeStatus> {
        match action {
            Action::Noop => Some(NodeStatus::InSync),
            Action::Update | Action::Replace | Action::Alert => Some(NodeStatus::Drift),
            Action::Create => Some(NodeStatus::Missing),
            Action::Adopt | Action::Skip => Some(NodeStatus::Unmanaged),
            Action::Blocked => Some(NodeStatus::Blocked),
            Action::Delete | Action::Orphan => None,
        }
    }

    /// Its class name in Mermaid.
    pub fn class(self) -> &'static str {
        match self {
            NodeStatus::InSync => "inSync",
            NodeStatus::Drift => "drift",
            NodeStatus::Missing => "missing",
            NodeStatus::Unmanaged => "unmanaged",
            NodeStatus::Blocked => "blocked",
            NodeStatus::Unknown => "unknown",
        }
    }

    /// Its words in the legend and on a node.
    pub fn label(self) -> &'static str {
        match self {
            NodeStatus::InSync => "in sync",
            NodeStatus::Drift => "drift",
            NodeStatus::Missing => "missing",
            NodeStatus::Unmanaged => "unmanaged",
            NodeStatus::Blocked => "blocked",
            NodeStatus::Unknown => "not read",
        }
    }

    /// Fill, stroke and text colours.
    fn colours(self) -> (&'static str, &'static str, &'static str) {
        match self {
            NodeStatus::InSync => ("#d4edda", "#28a745", "#155724"),
            NodeStatus::Drift => ("#fff3cd", "#e0a800", "#856404"),
            NodeStatus::Missing => ("#f8d7da", "#dc3545", "#721c24"),
            NodeStatus::Unmanaged => ("#e2e3e5", "#6c757d", "#383d41"),
            NodeStatus::Blocked => ("#f5c6cb", "#8b0000", "#5a0000"),
            NodeStatus::Unknown => ("#ffffff", "#adb5bd", "#6c757d"),
        }
    }
}

/// One resource of the spec.
#[derive(Clone, Debug)]
pub struct Node {
    /// Kind and logical id.
    pub key: ResourceKey,
    /// Its kind's layer.
    pub layer: Layer,
    /// Its live status (`None`: spec only).
    pub status: Option<NodeStatus>,
    /// What to say of it besides its key: the whitelist address, the drifted fields.
    pub detail: Option<String>,
}

/// A reference: `from` names `to` in the fields `label` (or must follow it).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Edge {
    /// The resource that refers.
    pub from: ResourceKey,
    /// The resource referred to, which exists first.
    pub to: ResourceKey,
    /// The fields that hold the reference, comma-separated (empty: an ordering only).
    pub label: String,
}

/// The graph of one environment.
#[derive(Clone, Debug)]
pub struct Graph {
    /// The environment.
    pub env: String,
    /// Its resources, in layer, kind and id order.
    pub nodes: Vec<Node>,
    /// The references between them, sorted.
    pub edges: Vec<Edge>,
    /// Whether statuses were read (a live graph rather than the spec's).
    pub live: bool,
    /// What could not be read, when live.
    pub errors: Vec<String>,
}

/// A Mermaid or Graphviz rendering.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A Mermaid `flowchart`.
    Mermaid,
    /// A Graphviz `digraph`.
    Dot,
}

impl Graph {
    /// The spec's graph of `env`: every resource the kinds want, and the references between them.
    pub fn of(env: &EnvSpec, kinds: &[Box<dyn Kind>]) -> Graph {
        let mut nodes = Vec::new();
        let mut edges = BTreeSet::new();
        let desired: Vec<(Layer, usize, Vec<crate::engine::Desired>)> =
            kinds.iter().enumerate().map(|(order, kind)| (kind.rules().layer, order, kind.desired(env))).collect();
        let names: BTreeMap<&ResourceKey, &str> = desired.iter().flat_map(|(_, _, ds)| ds.iter().map(|d| (&d.key, d.name.as_str()))).collect();
        for (layer, order, resources) in &desired {
            for d in resources {
                nodes.push((*layer, *order, Node { key: d.key.clone(), layer: *layer, status: None, detail: None }));
                for to in &d.depends_on {
                    // The fields that name it: by reference anywhere in their value (a security-group
                    // rule's source), or by its physical name (a redrive policy's queue).
                    let wanted = reference(to.kind, &to.id);
                    let name = names.get(to).copied().filter(|n| !n.is_empty());
                    let fields: Vec<&str> = d
                        .fields
                        .iter()
                        .filter(|(_, v)| v.refers_to(&wanted) || name.is_some_and(|n| refers(&v.to_string(), n)))
                        .map(|(f, _)| f.trim_end())
                        .collect::<BTreeSet<&str>>()
                        .into_iter()
                        .collect();
                    edges.insert(Edge { from: d.key.clone(), to: to.clone(), label: fields.join(", ") });
                }
            }
        }
        nodes.sort_by(|a, b| (a.0, a.1, &a.2.key.id).cmp(&(b.0, b.1, &b.2.key.id)));
        let keys: BTreeSet<&ResourceKey> = nodes.iter().map(|(_, _, n)| &n.key).collect();
        let edges = edges.into_iter().filter(|e| keys.contains(&e.to)).collect();
        Graph { env: env.env.clone(), nodes: nodes.into_iter().map(|(_, _, n)| n).collect(), edges, live: false, errors: Vec::new() }
    }

    /// The graph with each resource's status from a read-only pass's `report`
    /// (a resource of a kind the pass could not read is `not read`), and each
    /// whitelist address on its Elastic IP.
    pub fn with_status(mut self, report: &Report) -> Graph {
        let steps: BTreeMap<&ResourceKey, _> = report.resources.iter().filter(|s| s.desired.is_some()).map(|s| (&s.key, s)).collect();
        let addresses: BTreeMap<&ResourceKey, &String> = report
            .findings
            .iter()
            .filter(|f| f.class == FindingClass::Whitelist)
            .filter_map(|f| f.facts.get("address").filter(|a| *a != "-").map(|a| (&f.resource, a)))
            .collect();
        for node in &mut self.nodes {
            let step = steps.get(&node.key);
            node.status = Some(step.and_then(|s| NodeStatus::of(s.action)).unwrap_or(NodeStatus::Unknown));
            let drifted = step.filter(|_| node.status == Some(NodeStatus::Drift)).map(|s| fields_summary(s.changes.iter().map(|c| c.field.as_str())));
            node.detail = addresses.get(&node.key).map(|a| a.to_string()).into_iter().chain(drifted).reduce(|a, b| format!("{a}; {b}"));
        }
        self.live = true;
        self.errors = report.errors.clone();
        self
    }

    /// The graph in `format`.
    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Mermaid => self.to_mermaid(),
            Format::Dot => self.to_dot(),
        }
    }

    /// A Mermaid flowchart: one subgraph per layer, a class per status and its legend.
    pub fn to_mermaid(&self) -> String {
        let ids = self.node_ids();
        let mut out = String::new();
        let _ = writeln!(out, "%% sentry-operator graph --env {}: {}", self.env, self.kind_of_graph());
        out.push_str("flowchart LR\n");
        for (layer, nodes) in self.layers() {
            let _ = writeln!(out, "  subgraph {}[\"{}\"]", layer_id(layer), mermaid_text(layer.title()));
            out.push_str("    direction TB\n");
            for n in nodes {
                let mut label = format!("{}<br/><b>{}</b>", mermaid_text(n.key.kind), mermaid_text(&n.key.id));
                if let Some(status) = n.status {
                    let _ = write!(label, "<br/><i>{}</i>", mermaid_text(status.label()));
                }
                if let Some(detail) = &n.detail {
                    let _ = write!(label, "<br/>{}", mermaid_text(detail));
                }
                let _ = writeln!(out, "    {}[\"{label}\"]", ids[&n.key]);
            }
            out.push_str("  end\n");
        }
        for e in &self.edges {
            let arrow = if e.label.is_empty() { "-.->".to_string() } else { format!("-->|\"{}\"|", mermaid_text(&e.label)) };
            let _ = writeln!(out, "  {} {arrow} {}", ids[&e.from], ids[&e.to]);
        }
        if self.live {
            out.push_str("  subgraph legend[\"Legend\"]\n    direction LR\n");
            for status in NodeStatus::ALL {
                let _ = writeln!(out, "    legend_{}[\"{}\"]", status.class(), status.label());
            }
            out.push_str("  end\n");
            for status in NodeStatus::ALL {
                let (fill, stroke, text) = status.colours();
                let _ = writeln!(out, "  classDef {} fill:{fill},stroke:{stroke},color:{text}", status.class());
            }
            for status in NodeStatus::ALL {
                let members: Vec<&str> = self.nodes.iter().filter(|n| n.status == Some(status)).map(|n| ids[&n.key].as_str()).collect();
                let legend = format!("legend_{}", status.class());
                let _ = writeln!(out, "  class {} {}", members.into_iter().chain([legend.as_str()]).collect::<Vec<_>>().join(","), status.class());
            }
        }
        out
    }

    /// A Graphviz digraph: one cluster per layer, nodes filled by status, and a legend.
    pub fn to_dot(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "// sentry-operator graph --env {}: {}", self.env, self.kind_of_graph());
        let _ = writeln!(out, "digraph {} {{", dot_string(&format!("sentry-{}", self.env)));
        out.push_str("  rankdir=LR;\n  node [shape=box, style=\"rounded,filled\", fillcolor=\"#ffffff\", fontname=\"Helvetica\"];\n");
        for (layer, nodes) in self.layers() {
            let _ = writeln!(out, "  subgraph cluster_{} {{\n    label={};", layer_id(layer), dot_string(layer.title()));
            for n in nodes {
                let mut label = format!("{}\n{}", n.key.kind, n.key.id);
                for line in n.status.map(NodeStatus::label).into_iter().chain(n.detail.as_deref()) {
                    let _ = write!(label, "\n{line}");
                }
                let colour = n.status.map(|s| format!(", fillcolor=\"{}\", color=\"{}\"", s.colours().0, s.colours().1)).unwrap_or_default();
                let _ = writeln!(out, "    {} [label={}{colour}];", dot_string(&n.key.to_string()), dot_string(&label));
            }
            out.push_str("  }\n");
        }
        for e in &self.edges {
            let style = if e.label.is_empty() { " [style=dashed]".to_string() } else { format!(" [label={}]", dot_string(&e.label)) };
            let _ = writeln!(out, "  {} -> {}{style};", dot_string(&e.from.to_string()), dot_string(&e.to.to_string()));
        }
        if self.live {
            out.push_str("  subgraph cluster_legend {\n    label=\"Legend\";\n");
            for status in NodeStatus::ALL {
                let (fill, stroke, _) = status.colours();
                let _ = writeln!(out, "    legend_{} [label=\"{}\", fillcolor=\"{fill}\", color=\"{stroke}\"];", status.class(), status.label());
            }
            out.push_str("  }\n");
        }
        out.push_str("}\n");
        out
    }

    /// Each layer that has resources, with them, in the seeds' order.
    fn layers(&self) -> impl Iterator<Item = (Layer, Vec<&Node>)> {
        Layer::ALL.into_iter().map(|l| (l, self.nodes.iter().filter(|n| n.layer == l).collect::<Vec<_>>())).filter(|(_, nodes)| !nodes.is_empty())
    }

    /// `spec only` or `live status`, with what could not be read.
    fn kind_of_graph(&self) -> String {
        match (self.live, self.errors.len()) {
            (false, _) => "the spec's resources and references (--offline: no status)".into(),
            (true, 0) => "live status from a read-only pass".into(),
            (true, n) => format!("live status from a read-only pass ({n} errors: some kinds not read)"),
        }
    }

    /// Each node's Mermaid identifier: its key with every other character an
    /// underscore, numbered when two keys would collide (in node order, so stable).
    fn node_ids(&self) -> BTreeMap<ResourceKey, String> {
        let mut taken = BTreeSet::new();
        let mut ids = BTreeMap::new();
        for n in &self.nodes {
            let base: String = format!("{}__{}", n.key.kind, n.key.id).chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
            let mut id = base.clone();
            let mut suffix = 2;
            while !taken.insert(id.clone()) {
                id = format!("{base}_{suffix}");
                suffix += 1;
            }
            ids.insert(n.key.clone(), id);
        }
        ids
    }
}

/// Whether field value `value` holds the reference `wanted`: alone, in a
/// list, or within text (a rule's source, JSON), not as the start of a longer id.
fn refers(value: &str, wanted: &str) -> bool {
    value.match_indices(wanted).any(|(at, _)| !value[at + wanted.len()..].starts_with(|c: char| c.is_ascii_alphanumeric() || "-_./".contains(c)))
}

/// `drift: a, b, c` (at most three fields named, then how many more).
fn fields_summary<'a>(fields: impl Iterator<Item = &'a str>) -> String {
    let fields: BTreeSet<&str> = fields.collect();
    let shown: Vec<&str> = fields.iter().take(3).copied().collect();
    let more = fields.len().saturating_sub(shown.len());
    format!("drift: {}{}", shown.join(", "), if more > 0 { format!(" +{more}") } else { String::new() })
}

fn layer_id(layer: Layer) -> &'static str {
    match layer {
        Layer::Networking => "networking",
        Layer::Compute => "compute",
        Layer::DataMessaging => "data_messaging",
        Layer::SecurityMonitoring => "security_monitoring",
    }
}

/// Text inside a quoted Mermaid label: its markup characters as entity codes.
fn mermaid_text(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '"' | '#' | '<' | '>' | '&' | '|' | '`' => format!("#{};", u32::from(c)),
            c => c.to_string(),
        })
        .collect()
}

/// A quoted DOT string.
fn dot_string(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n"))
}

#[cfg(test)]
mod tests;

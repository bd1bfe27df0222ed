//! The graph: snapshots of dev's and prod's (spec only; no AWS identifier
//! appears in them), statuses from a pass, escaping and stable identifiers.

use std::path::Path;

use aws_config::SdkConfig;

use super::*;
use crate::aws::CallCounter;
use crate::engine::plan::Step;
use crate::engine::{Desired, FieldChange, Finding, Mode};
use crate::kinds::read::TagReads;

fn graph_of(env: &str) -> Graph {
    let spec = crate::spec::load(Path::new("specs"), env).expect("the repository's spec loads");
    let kinds = crate::kinds::registry(&SdkConfig::builder().build(), &CallCounter::default(), TagReads::Batched);
    Graph::of(&spec, &kinds)
}

#[test]
fn dev_as_mermaid() {
    insta::assert_snapshot!(graph_of("dev").to_mermaid());
}

#[test]
fn prod_as_mermaid() {
    insta::assert_snapshot!(graph_of("prod").to_mermaid());
}

#[test]
fn prod_as_dot() {
    insta::assert_snapshot!(graph_of("prod").to_dot());
}

#[test]
fn the_graph_shows_the_references_the_engine_resolves() {
    let graph = graph_of("prod");
    let edge = |from: &str, to: &str| graph.edges.iter().find(|e| e.from.to_string() == from && e.to.to_string() == to).map(|e| e.label.clone());
    assert!(edge("ec2.subnet public-a", "ec2.vpc vpc").is_some(), "subnets in the VPC");
    assert!(graph.edges.iter().any(|e| e.from.kind == "ec2.nat-gateway" && e.to.kind == "ec2.elastic-ip"), "NAT gateways on whitelist EIPs");
    assert!(graph.edges.iter().any(|e| e.from.kind == "ec2.nat-gateway" && e.to.kind == "ec2.subnet"), "in public subnets");
    assert!(graph.edges.iter().any(|e| e.from.kind == "ecs.service" && e.to.kind == "ecs.cluster"), "services on clusters");
    assert!(graph.edges.iter().any(|e| e.from.kind == "sqs.queue" && e.to.kind == "sqs.queue"), "queues to their DLQs");
    let layers: Vec<Layer> = graph.nodes.iter().map(|n| n.layer).collect();
    assert!(layers.windows(2).all(|w| w[0] <= w[1]), "nodes grouped by layer");
    assert_eq!(graph_of("prod").to_mermaid(), graph.to_mermaid(), "stable");
}

fn step(kind: &'static str, id: &str, action: Action) -> Step {
    let mut step = Step::of(Desired::new(kind, id, id, Default::default()), action);
    step.changes = vec![FieldChange::of("DelaySeconds", Some("9".into()), Some("0".into()))];
    step
}

#[test]
fn a_live_graph_colours_each_resource_by_what_the_pass_found_and_has_a_legend() {
    let spec = crate::spec::load(Path::new("specs"), "dev").expect("dev loads");
    let graph = graph_of("dev");
    let queues: Vec<String> = graph.nodes.iter().filter(|n| n.key.kind == "sqs.queue").map(|n| n.key.id.clone()).collect();
    let eip = graph.nodes.iter().find(|n| n.key.kind == "ec2.elastic-ip").map(|n| n.key.clone()).expect("dev has a whitelist");
    let mut steps = vec![step("sqs.queue", &queues[0], Action::Update), step("sqs.queue", &queues[1], Action::Create), step(eip.kind, &eip.id, Action::Noop)];
    steps.push(step("sqs.queue", &queues[2], Action::Skip));
    let mut report = Report::new(&spec, Mode::Plan, steps, vec!["observe dynamodb.table: throttled".into()], Default::default(), Default::default());
    report.set_findings(vec![Finding {
        class: FindingClass::Whitelist,
        resource: eip.clone(),
        field: None,
        desired: None,
        live: None,
        violation: false,
        message: "OK".into(),
        facts: [("address", "203.0.113.7".to_string())].into(),
    }]);
    let graph = graph.with_status(&report);
    let status = |id: &str| graph.nodes.iter().find(|n| n.key.id == id).and_then(|n| n.status);
    assert_eq!(status(&queues[0]), Some(NodeStatus::Drift));
    assert_eq!(status(&queues[1]), Some(NodeStatus::Missing));
    assert_eq!(status(&queues[2]), Some(NodeStatus::Unmanaged));
    assert_eq!(status(&eip.id), Some(NodeStatus::InSync));
    assert!(graph.nodes.iter().filter(|n| n.key.kind == "dynamodb.table").all(|n| n.status == Some(NodeStatus::Unknown)), "a kind not read");
    let text = graph.to_mermaid();
    assert!(text.contains("203.0.113.7"), "the whitelist address on its EIP");
    assert!(text.contains("drift: DelaySeconds"), "the drifted field");
    for status in NodeStatus::ALL {
        assert!(text.contains(&format!("classDef {} ", status.class())), "{status:?} styled");
        assert!(text.contains(&format!("legend_{}[\"{}\"]", status.class(), status.label())), "{status:?} in the legend");
    }
    let drift_id = format!("sqs_queue__{}", queues[0].replace(|c: char| !c.is_ascii_alphanumeric(), "_"));
    assert!(text.lines().any(|l| l.starts_with("  class ") && l.ends_with(" drift") && l.contains(&drift_id)), "{text}");
    assert!(text.contains("1 errors"), "says what was not read");
    assert!(graph.to_dot().contains("fillcolor=\"#fff3cd\""), "dot colours drift too");
}

#[test]
fn prods_live_graph_at_its_wordiest_fits_mermaids_default_text_limit() {
    let spec = crate::spec::load(Path::new("specs"), "prod").expect("prod loads");
    let graph = graph_of("prod");
    let steps = graph
        .nodes
        .iter()
        .map(|n| {
            let mut s = Step::of(Desired::new(n.key.kind, &n.key.id, &n.key.id, Default::default()), Action::Update);
            s.changes = ["FieldNumberOne", "FieldNumberTwo", "FieldNumberThree", "FieldNumberFour"].iter().map(|f| FieldChange::of(f, None, None)).collect();
            s
        })
        .collect();
    let report = Report::new(&spec, Mode::Plan, steps, Vec::new(), Default::default(), Default::default());
    let text = graph.with_status(&report).to_mermaid();
    // Mermaid refuses larger diagrams unless its maxTextSize is raised (GitHub's renderer included).
    assert!(text.len() < 50_000, "{} characters", text.len());
}

#[test]
fn labels_cannot_break_out_of_their_quotes_and_ids_never_collide() {
    let node = |id: &str| Node { key: ResourceKey::new("sqs.queue", id), layer: Layer::DataMessaging, status: None, detail: Some("a\"b<script>|c".into()) };
    let graph = Graph { env: "dev".into(), nodes: vec![node("a-b"), node("a_b"), node("a.b")], edges: Vec::new(), live: false, errors: Vec::new() };
    let text = graph.to_mermaid();
    assert!(!text.contains("<script>") && !text.contains("a\"b"), "{text}");
    assert!(text.contains("#34;") && text.contains("#60;script#62;"));
    let ids: BTreeSet<String> = graph.node_ids().into_values().collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    let dot = graph.to_dot();
    assert!(dot.contains("a\\\"b<script>|c"), "quoted in DOT: {dot}");
}

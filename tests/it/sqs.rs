//! SQS end to end against the emulator: converge, idempotency, drift repair,
//! ownership, adoption and deletion policy.

use std::collections::HashMap;

use aws_sdk_sqs::types::QueueAttributeName;
use aws_sdk_sqs::Client;

use crate::harness::{is_write, operator, repo_specs, sdk_config, spec_dir, Moto};

const DEV_QUEUES: [&str; 18] = [
    "sentry-bingx-filled-orders-dev.fifo",
    "sentry-bingx-filled-orders-dlq-dev.fifo",
    "sentry-bingx-orders-dev.fifo",
    "sentry-bingx-orders-dlq-dev.fifo",
    "sentry-bitget-filled-orders-dev.fifo",
    "sentry-bitget-filled-orders-dlq-dev.fifo",
    "sentry-bitget-orders-dev.fifo",
    "sentry-bitget-orders-dlq-dev.fifo",
    "sentry-clients-events-dev",
    "sentry-clients-events-dlq-dev",
    "sentry-master-order-dev.fifo",
    "sentry-master-order-dlq-dev.fifo",
    "sentry-okx-filled-orders-dev.fifo",
    "sentry-okx-filled-orders-dlq-dev.fifo",
    "sentry-okx-orders-dev.fifo",
    "sentry-okx-orders-dlq-dev.fifo",
    "sentry-order-execution-polling-dev.fifo",
    "sentry-order-execution-polling-dlq-dev.fifo",
];

async fn client(moto: &Moto) -> Client {
    Client::new(&sdk_config(&moto.endpoint).await)
}

async fn queue_names(sqs: &Client) -> Vec<String> {
    let urls = sqs.list_queues().send().await.expect("list").queue_urls.unwrap_or_default();
    let mut names: Vec<String> = urls.iter().filter_map(|u| u.rsplit('/').next().map(str::to_string)).collect();
    names.sort();
    names
}

async fn url(sqs: &Client, name: &str) -> String {
    sqs.get_queue_url().queue_name(name).send().await.expect("queue url").queue_url.expect("url")
}

async fn attributes(sqs: &Client, name: &str) -> HashMap<String, String> {
    let url = url(sqs, name).await;
    let out = sqs.get_queue_attributes().queue_url(url).attribute_names(QueueAttributeName::All).send().await.expect("attributes");
    out.attributes.unwrap_or_default().into_iter().map(|(k, v)| (k.as_str().to_string(), v)).collect()
}

async fn tags(sqs: &Client, name: &str) -> HashMap<String, String> {
    let url = url(sqs, name).await;
    sqs.list_queue_tags().queue_url(url).send().await.expect("tags").tags.unwrap_or_default()
}

fn reconcile_dev(moto: &Moto) -> crate::harness::Run {
    let specs = repo_specs();
    operator(&moto.endpoint, &["--specs", specs.to_str().expect("utf-8 path"), "--output", "json", "reconcile", "--once", "--env", "dev"])
}

#[tokio::test]
async fn dev_queues_converge_from_empty() {
    let moto = Moto::start();
    let run = reconcile_dev(&moto);
    assert_eq!(run.code, 2, "first pass repairs drift (creates): {}", run.stderr);
    assert_eq!(run.count("sqs.queue", "create"), 18);
    assert_eq!(run.json()["summary"]["failed"], 0);

    let sqs = client(&moto).await;
    assert_eq!(queue_names(&sqs).await, DEV_QUEUES);

    let master = attributes(&sqs, "sentry-master-order-dev.fifo").await;
    assert_eq!(master["FifoQueue"], "true");
    assert_eq!(master["ContentBasedDeduplication"], "true");
    assert_eq!(master["VisibilityTimeout"], "30");
    assert_eq!(master["ReceiveMessageWaitTimeSeconds"], "20");
    let dlq = attributes(&sqs, "sentry-master-order-dlq-dev.fifo").await;
    assert_eq!(dlq["MessageRetentionPeriod"], "1209600");
    let redrive: serde_json::Value = serde_json::from_str(&master["RedrivePolicy"]).expect("redrive json");
    assert_eq!(redrive["deadLetterTargetArn"], dlq["QueueArn"].as_str());
    assert_eq!(redrive["maxReceiveCount"].to_string().trim_matches('"'), "5");

    let standard = attributes(&sqs, "sentry-clients-events-dev").await;
    assert!(!standard.contains_key("FifoQueue") || standard["FifoQueue"] == "false");

    let t = tags(&sqs, "sentry-okx-orders-dev.fifo").await;
    assert_eq!(t["sentry:managed-by"], "sentry-operator");
    assert_eq!(t["sentry:env"], "dev");
    assert_eq!(t["sentry:id"], "okx-orders");
    assert_eq!(t["Project"], "sentry");
}

#[tokio::test]
async fn second_pass_makes_zero_writes() {
    let moto = Moto::start();
    assert_eq!(reconcile_dev(&moto).code, 2);

    moto.start_recording();
    let run = reconcile_dev(&moto);
    let recorded = moto.stop_recording();
    assert_eq!(run.code, 0, "converged pass exits 0: {}{}", run.stdout, run.stderr);
    let report = run.json();
    assert_eq!(run.count("sqs.queue", "noop"), 18);
    assert_eq!(report["summary"]["unchanged"], report["resources"].as_array().map(Vec::len).unwrap_or(0), "everything is unchanged");
    assert_eq!(report["calls"]["writes"], 0, "operator's own count");
    let writes: Vec<&String> = recorded.iter().filter(|op| is_write(op)).collect();
    assert!(writes.is_empty(), "emulator saw writes: {writes:?}");
    assert!(!recorded.is_empty(), "the recorder saw the pass");
    assert_eq!(report["calls"]["reads"].as_u64(), Some(recorded.len() as u64), "both counts agree");
}

#[tokio::test]
async fn drift_is_repaired() {
    let moto = Moto::start();
    assert_eq!(reconcile_dev(&moto).code, 2);
    let sqs = client(&moto).await;

    // Out of band: an attribute changed, a queue deleted, a tag removed, a redrive dropped.
    let okx = url(&sqs, "sentry-okx-orders-dev.fifo").await;
    sqs.set_queue_attributes().queue_url(&okx).attributes(QueueAttributeName::VisibilityTimeout, "999").send().await.expect("drift");
    let events = url(&sqs, "sentry-clients-events-dev").await;
    sqs.delete_queue().queue_url(&events).send().await.expect("delete");
    let bingx = url(&sqs, "sentry-bingx-orders-dev.fifo").await;
    sqs.untag_queue().queue_url(&bingx).tag_keys("Project").send().await.expect("untag");
    let polling = url(&sqs, "sentry-order-execution-polling-dev.fifo").await;
    sqs.set_queue_attributes().queue_url(&polling).attributes(QueueAttributeName::RedrivePolicy, "").send().await.expect("drop redrive");

    let specs = repo_specs();
    let plan = operator(&moto.endpoint, &["--specs", specs.to_str().expect("utf-8"), "--output", "json", "plan", "--env", "dev"]);
    assert_eq!(plan.code, 2, "plan reports pending changes");
    assert_eq!(plan.resource("sqs.queue", "okx-orders")["action"], "update");
    assert_eq!(plan.resource("sqs.queue", "okx-orders")["changes"][0]["live"], "999");
    assert_eq!(plan.resource("sqs.queue", "clients-events")["action"], "create");
    assert_eq!(plan.resource("sqs.queue", "bingx-orders")["action"], "update");
    assert_eq!(plan.resource("sqs.queue", "order-execution-polling")["action"], "update");
    assert_eq!(plan.json()["calls"]["writes"], 0, "plan never writes");

    let run = reconcile_dev(&moto);
    assert_eq!(run.code, 2, "drift found and repaired: {}", run.stderr);
    assert_eq!(attributes(&sqs, "sentry-okx-orders-dev.fifo").await["VisibilityTimeout"], "30");
    assert_eq!(queue_names(&sqs).await, DEV_QUEUES);
    assert_eq!(attributes(&sqs, "sentry-clients-events-dev").await["ReceiveMessageWaitTimeSeconds"], "20");
    assert_eq!(tags(&sqs, "sentry-bingx-orders-dev.fifo").await["Project"], "sentry");
    let redrive = attributes(&sqs, "sentry-order-execution-polling-dev.fifo").await["RedrivePolicy"].clone();
    assert!(redrive.contains("sentry-order-execution-polling-dlq-dev.fifo"), "{redrive}");

    assert_eq!(reconcile_dev(&moto).code, 0, "converged after the repair");
}

const SMALL_BASE: &str = "region: us-east-1\nmessaging:\n  queues:\n    jobs: { visibilityTimeoutSeconds: 45 }\n";

#[tokio::test]
async fn unmanaged_queue_with_colliding_name_is_untouched() {
    let moto = Moto::start();
    let sqs = client(&moto).await;
    sqs.create_queue().queue_name("sentry-jobs-dev").attributes(QueueAttributeName::VisibilityTimeout, "99").send().await.expect("foreign queue");
    let dir = spec_dir(&[("base.yaml", SMALL_BASE), ("dev.yaml", "")]);
    let specs = dir.path().to_str().expect("utf-8");

    let run = operator(&moto.endpoint, &["--specs", specs, "--output", "json", "reconcile", "--once", "--env", "dev"]);
    assert_eq!(run.code, 0, "nothing of ours to change: {}", run.stderr);
    let step = run.resource("sqs.queue", "jobs");
    assert_eq!(step["action"], "skip");
    assert!(step["note"].as_str().unwrap_or("").contains("unmanaged, skipped"), "{step}");
    assert_eq!(run.json()["calls"]["writes"], 0);
    assert_eq!(attributes(&sqs, "sentry-jobs-dev").await["VisibilityTimeout"], "99");
    assert!(tags(&sqs, "sentry-jobs-dev").await.is_empty());

    let text = operator(&moto.endpoint, &["--specs", specs, "plan", "--env", "dev"]);
    assert!(text.stdout.contains("! sqs.queue jobs (sentry-jobs-dev): unmanaged, skipped"), "{}", text.stdout);

    // Adoption is explicit: then the operator tags and converges it.
    let dir = spec_dir(&[("base.yaml", &SMALL_BASE.replace("45 }", "45, adopt: true }")), ("dev.yaml", "")]);
    let run = operator(&moto.endpoint, &["--specs", dir.path().to_str().expect("utf-8"), "--output", "json", "reconcile", "--once", "--env", "dev"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(attributes(&sqs, "sentry-jobs-dev").await["VisibilityTimeout"], "45");
    assert_eq!(tags(&sqs, "sentry-jobs-dev").await["sentry:id"], "jobs");
}

#[tokio::test]
async fn removed_queues_follow_their_deletion_policy() {
    let moto = Moto::start();
    let sqs = client(&moto).await;
    let full = "messaging:\n  queues:\n    keep: {}\n    scratch: { deletionPolicy: delete }\n    stays: {}\n";
    let dir = spec_dir(&[("base.yaml", full), ("dev.yaml", "")]);
    let run = operator(&moto.endpoint, &["--specs", dir.path().to_str().expect("utf-8"), "reconcile", "--once", "--env", "dev"]);
    assert_eq!(run.code, 2, "{}", run.stderr);

    let dir = spec_dir(&[("base.yaml", "messaging:\n  queues:\n    stays: {}\n"), ("dev.yaml", "")]);
    let specs = dir.path().to_str().expect("utf-8");
    let plan = operator(&moto.endpoint, &["--specs", specs, "--output", "json", "plan", "--env", "dev"]);
    assert_eq!(plan.code, 2);
    assert_eq!(plan.resource("sqs.queue", "keep")["action"], "orphan");
    assert_eq!(plan.resource("sqs.queue", "scratch")["action"], "delete");

    let run = operator(&moto.endpoint, &["--specs", specs, "reconcile", "--once", "--env", "dev"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(queue_names(&sqs).await, ["sentry-keep-dev", "sentry-stays-dev"]);
}

#[tokio::test]
async fn unreachable_aws_is_an_error() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = format!("http://{}", dead.local_addr().expect("addr"));
    drop(dead);
    let specs = repo_specs();
    let run = operator(&endpoint, &["--specs", specs.to_str().expect("utf-8"), "plan", "--env", "dev"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    // The first call of a pass asks STS which account it is in.
    assert!(run.stdout.contains("error: cannot tell the account: STS.GetCallerIdentity failed"), "{}", run.stdout);
}

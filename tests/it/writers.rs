//! One writer per environment: CI (`reconcile --once`) and the daemon share
//! per-environment leases; spec revisions never go backwards; replicas split
//! the environments and take over a killed one's; specs come from S3;
//! `status` shows it all; the daemon's ECS deployment is accepted as written.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::daemon::Daemon;
use crate::harness::{is_write, json_args, operator, sdk_config, spec_dir, Moto};

/// An environment with one queue whose visibility timeout is `seconds`.
fn queue_spec(seconds: u32) -> String {
    format!("messaging:\n  queues:\n    orders:\n      visibilityTimeoutSeconds: {seconds}\n")
}

/// The live visibility timeout of `sentry-orders-<env>`, if the queue exists.
async fn visibility(sqs: &aws_sdk_sqs::Client, env: &str) -> Option<String> {
    let url = sqs.get_queue_url().queue_name(format!("sentry-orders-{env}")).send().await.ok()?.queue_url()?.to_string();
    let attributes = sqs.get_queue_attributes().queue_url(url).attribute_names(aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout).send().await.ok()?;
    attributes.attributes()?.get(&aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout).cloned()
}

/// `reconcile --once --env dev` over `specs` under the lease table `leases`, plus `extra`.
fn once(moto: &Moto, specs: &std::path::Path, extra: &[&str]) -> crate::harness::Run {
    let mut args = json_args(specs, &["reconcile", "--once", "--env", "dev", "--lease-table", "leases", "--lease-seconds", "20"]);
    args.extend_from_slice(extra);
    operator(&moto.endpoint, &args)
}

#[tokio::test]
async fn ci_and_the_daemon_never_fight_over_an_environment() {
    let moto = Moto::start();
    let sqs = aws_sdk_sqs::Client::new(&sdk_config(&moto.endpoint).await);
    let daemon_specs = spec_dir(&[("dev.yaml", &queue_spec(30))]);
    let ci_specs = spec_dir(&[("dev.yaml", &queue_spec(60))]);
    let daemon = Daemon::run(
        &moto.endpoint,
        daemon_specs.path().to_str().expect("utf-8"),
        &["dev"],
        &["--interval", "2", "--fast-interval", "1", "--lease-table", "leases", "--lease-seconds", "6"],
    );
    daemon.wait_ready();
    // Ready counts a pass that only observed (its first turn may not have won the lease yet, on a slow machine).
    let applied = Instant::now();
    while visibility(&sqs, "dev").await.as_deref() != Some("30") && applied.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(visibility(&sqs, "dev").await.as_deref(), Some("30"), "the daemon applied spec A: {}", daemon.log());

    // Asked for, the lease is not given at once: without a wait, CI exits 4 naming the holder.
    moto.start_recording();
    let held = once(&moto, ci_specs.path(), &["--wait", "0"]);
    let requests = moto.stop_recording_requests();
    assert_eq!(held.code, 4, "{}\n{}", held.stdout, held.stderr);
    assert!(held.stderr.contains("the lease of dev is held by ") && held.stderr.contains(" on ") && held.stderr.contains(" since 20"), "{}", held.stderr);
    let estate_writes: Vec<&(String, String)> = requests.iter().filter(|(op, text)| is_write(op) && !text.contains("\"leases\"")).collect();
    assert!(estate_writes.is_empty(), "only the lease table is written: {estate_writes:?}");

    // CI applies spec B while the daemon, still on A, runs: the value changes once.
    let sampler = {
        let sqs = sqs.clone();
        tokio::spawn(async move {
            let mut values = Vec::new();
            for _ in 0..60 {
                values.push(visibility(&sqs, "dev").await);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            values
        })
    };
    let (endpoint, dir) = (moto.endpoint.clone(), ci_specs.path().to_path_buf());
    let ci = tokio::task::spawn_blocking(move || {
        let args =
            json_args(&dir, &["reconcile", "--once", "--env", "dev", "--lease-table", "leases", "--lease-seconds", "15", "--wait", "30", "--revision", "c2"]);
        operator(&endpoint, &args)
    })
    .await
    .expect("CI run");
    assert_eq!(ci.code, 2, "CI repaired to B under the lease:\n{}\n{}", ci.stdout, ci.stderr);
    let values = sampler.await.expect("sampler");
    let changes = values.windows(2).filter(|w| w[0] != w[1]).count();
    assert!(changes <= 1, "the value flapped: {values:?}");
    assert_eq!(values.last().cloned().flatten().as_deref(), Some("60"), "{values:?}");

    // The daemon holds the lease again, finds its spec stale and writes nothing.
    daemon.wait_until("the daemon to report its spec stale", Duration::from_secs(20), |d| d.metric("sentry_operator_stale_spec{env=\"dev\"}") == Some(1.0));
    assert_eq!(daemon.metric("sentry_operator_leader{env=\"dev\"}"), Some(1.0), "it leads, observing");
    assert!(daemon.log().contains("stale spec: "), "{}", daemon.log());
    let logs = aws_sdk_cloudwatchlogs::Client::new(&sdk_config(&moto.endpoint).await);
    let mut stale_event = None;
    for _ in 0..50 {
        if let Ok(out) = logs.filter_log_events().log_group_name("/sentry-operator/dev").send().await {
            stale_event = out.events().iter().filter_map(|e| e.message()).find(|m| m.contains("\"StaleSpec\":1")).map(str::to_string);
        }
        if stale_event.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let event: serde_json::Value = serde_json::from_str(&stale_event.expect("a StaleSpec alert event")).expect("json");
    assert!(event["appliedRevision"].as_str().is_some_and(|r| r.ends_with("(c2)")) && event["appliedGeneration"] == 2, "{event}");

    // Its source catches up: it writes again, and B stays.
    std::fs::write(daemon_specs.path().join("dev.yaml"), queue_spec(60)).expect("update");
    daemon.wait_until("the daemon to catch up", Duration::from_secs(20), |d| d.metric("sentry_operator_stale_spec{env=\"dev\"}") == Some(0.0));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(visibility(&sqs, "dev").await.as_deref(), Some("60"));

    // status: the daemon holds the lease; B, applied by CI as generation 2, is what the spec here holds.
    let status = operator(&moto.endpoint, &json_args(ci_specs.path(), &["status", "--env", "dev", "--lease-table", "leases"]));
    assert_eq!(status.code, 0, "{}\n{}", status.stdout, status.stderr);
    let env = &status.json()["environments"][0];
    let lease = &env["lease"];
    assert!(lease["holder"]["id"].as_str().is_some_and(|id| !id.starts_with("once:")), "the daemon holds it: {lease}");
    assert_eq!((lease["applied"]["generation"].as_u64(), lease["applied"]["label"].as_str()), (Some(2), Some("c2")), "{lease}");
    assert!(lease["applied"]["by"].as_str().is_some_and(|by| by.starts_with("once:")), "{lease}");
    assert!(lease["lastPass"]["result"].as_str().is_some_and(|r| r.starts_with("ok: ")), "{lease}");
    assert_eq!(env["spec"]["comparedWithApplied"], "applied", "{env}");
    assert_eq!(env["drift"].as_array().map(Vec::len), Some(0), "{env}");
    let text = operator(&moto.endpoint, &["--specs", ci_specs.path().to_str().expect("utf-8"), "status", "--env", "dev", "--lease-table", "leases"]);
    assert!(
        text.stdout.contains("lease:     held by ") && text.stdout.contains("applied:   generation 2: ") && text.stdout.contains("drift:     none"),
        "{}",
        text.stdout
    );
}

#[tokio::test]
async fn a_stale_writer_never_writes_and_a_forced_one_says_so() {
    let moto = Moto::start();
    let a = spec_dir(&[("dev.yaml", &queue_spec(30))]);
    let b = spec_dir(&[("dev.yaml", &queue_spec(60))]);
    for (specs, label) in [(&a, "c1"), (&b, "c2")] {
        let run = once(&moto, specs.path(), &["--revision", label]);
        assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    }

    // A again (its label, or none): superseded, so nothing is written.
    for label in [&["--revision", "c1"][..], &[]] {
        moto.start_recording();
        let stale = once(&moto, a.path(), label);
        let requests = moto.stop_recording_requests();
        assert_eq!(stale.code, 5, "{}\n{}", stale.stdout, stale.stderr);
        assert!(
            stale.stderr.contains("stale spec, not written") && stale.stderr.contains("superseded by") && stale.stderr.contains("(c2)"),
            "{}",
            stale.stderr
        );
        let estate_writes: Vec<&(String, String)> = requests.iter().filter(|(op, text)| is_write(op) && !text.contains("\"leases\"")).collect();
        assert!(estate_writes.is_empty(), "a stale writer wrote: {estate_writes:?}");
    }
    let sqs = aws_sdk_sqs::Client::new(&sdk_config(&moto.endpoint).await);
    assert_eq!(visibility(&sqs, "dev").await.as_deref(), Some("60"));

    // A revert committed anew (a label never seen with A) is a new revision.
    let revert = once(&moto, a.path(), &["--revision", "c3"]);
    assert_eq!(revert.code, 2, "{}\n{}", revert.stdout, revert.stderr);
    assert_eq!(visibility(&sqs, "dev").await.as_deref(), Some("30"));
    // B under its old label is stale now; --force applies it, loudly.
    assert_eq!(once(&moto, b.path(), &["--revision", "c2"]).code, 5);
    let forced = once(&moto, b.path(), &["--revision", "c2", "--force"]);
    assert_eq!(forced.code, 2, "{}\n{}", forced.stdout, forced.stderr);
    assert!(forced.stderr.contains("--force: applying") && forced.stderr.contains("over the newer revision"), "{}", forced.stderr);
    let status = operator(&moto.endpoint, &json_args(b.path(), &["status", "--env", "dev", "--lease-table", "leases", "--no-observe"])).json();
    assert_eq!(status["environments"][0]["lease"]["applied"]["generation"], 4, "{status}");

    // Bad input: nothing written, a clear error.
    for (args, expected) in [
        (vec!["--revision", "bad\u{1b}[31m"], "--revision: a revision label may not hold control characters"),
        (vec!["--lease-table", "arn:aws:dynamodb:eu-west-1:123456789012:table/leases"], "is in region eu-west-1, the operator runs in us-east-1"),
    ] {
        let mut all = json_args(a.path(), &["reconcile", "--once", "--env", "dev"]);
        all.extend(args);
        let (run, writes) = moto.writes_of(|| operator(&moto.endpoint, &all));
        assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
        assert!(run.stderr.contains(expected), "{}", run.stderr);
        assert!(writes.is_empty(), "{writes:?}");
    }
}

/// Each environment's leader among `daemons` (their indexes), from their gauges.
fn leaders(daemons: &[&Daemon], envs: &[&str]) -> BTreeMap<String, Vec<usize>> {
    envs.iter()
        .map(|env| {
            let line = format!("sentry_operator_leader{{env=\"{env}\"}}");
            (env.to_string(), daemons.iter().enumerate().filter(|(_, d)| d.metric(&line) == Some(1.0)).map(|(i, _)| i).collect())
        })
        .collect()
}

/// Waits until every environment has exactly one leader among `daemons` and
/// the number each leads, sorted, is `split`; returns who leads what.
fn wait_for_split(daemons: &[&Daemon], envs: &[&str], split: &[usize], limit: Duration) -> BTreeMap<String, Vec<usize>> {
    let deadline = Instant::now() + limit;
    loop {
        let now = leaders(daemons, envs);
        let mut counts: Vec<usize> = (0..daemons.len()).map(|i| now.values().filter(|l| l.contains(&i)).count()).collect();
        counts.sort();
        if now.values().all(|l| l.len() == 1) && counts == split {
            return now;
        }
        assert!(Instant::now() < deadline, "no {split:?} split within {limit:?}: {now:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn replica(moto: &Moto, specs: &std::path::Path, envs: &[&str]) -> Daemon {
    let args = ["--interval", "5", "--fast-interval", "5", "--lease-table", "leases", "--lease-seconds", "3", "--no-alerts"];
    Daemon::run(&moto.endpoint, specs.to_str().expect("utf-8"), envs, &args)
}

#[tokio::test]
async fn replicas_split_the_environments_and_take_over_a_killed_ones() {
    let moto = Moto::start();
    let envs = ["dev", "staging", "prod"];
    let specs = spec_dir(&[("dev.yaml", &queue_spec(30)), ("staging.yaml", &queue_spec(30)), ("prod.yaml", &queue_spec(30))]);
    let first = replica(&moto, specs.path(), &envs);
    let second = replica(&moto, specs.path(), &envs);
    wait_for_split(&[&first, &second], &envs, &[1, 2], Duration::from_secs(30));
    let mut third = replica(&moto, specs.path(), &envs);
    let split = wait_for_split(&[&first, &second, &third], &envs, &[1, 1, 1], Duration::from_secs(30));
    third.wait_ready();
    assert!(third.get("/readyz").is_some_and(|r| r.contains("leading: ")), "readyz names what it leads");

    third.child.kill().expect("kill -9");
    let _ = third.child.wait();
    let orphaned = split.iter().find(|(_, l)| l == &&vec![2]).map(|(e, _)| e.clone()).expect("the third led one");
    let killed = Instant::now();
    let after = wait_for_split(&[&first, &second], &envs, &[1, 2], Duration::from_secs(30));
    assert!(killed.elapsed() >= Duration::from_secs(1), "not before the dead replica's lease ran out");
    assert_eq!(after[&orphaned].len(), 1, "{orphaned} taken over: {after:?}");
}

#[tokio::test]
async fn three_replicas_over_two_environments_keep_one_in_reserve() {
    let moto = Moto::start();
    let envs = ["dev", "prod"];
    let specs = spec_dir(&[("dev.yaml", &queue_spec(30)), ("prod.yaml", &queue_spec(30))]);
    let mut daemons = vec![replica(&moto, specs.path(), &envs), replica(&moto, specs.path(), &envs), replica(&moto, specs.path(), &envs)];
    let split = wait_for_split(&daemons.iter().collect::<Vec<_>>(), &envs, &[0, 1, 1], Duration::from_secs(30));
    let dev_leader = split["dev"][0];
    daemons[dev_leader].child.kill().expect("kill -9");
    let _ = daemons[dev_leader].child.wait();
    let dead = daemons.remove(dev_leader);
    let after = wait_for_split(&daemons.iter().collect::<Vec<_>>(), &envs, &[1, 1], Duration::from_secs(30));
    assert_eq!(after["dev"].len(), 1, "{after:?}");
    drop(dead);
}

/// Puts `text` at `key` in `bucket`.
async fn publish(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, text: &str) {
    s3.put_object().bucket(bucket).key(key).body(text.as_bytes().to_vec().into()).send().await.expect("put object");
}

#[tokio::test]
async fn specs_come_from_s3_and_a_broken_set_is_kept_out() {
    let moto = Moto::start();
    let config = sdk_config(&moto.endpoint).await;
    let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&config).force_path_style(true).build());
    let sqs = aws_sdk_sqs::Client::new(&config);
    let bucket = "sentry-operator-specs";
    s3.create_bucket().bucket(bucket).send().await.expect("bucket");
    let versioning = aws_sdk_s3::types::VersioningConfiguration::builder().status(aws_sdk_s3::types::BucketVersioningStatus::Enabled).build();
    s3.put_bucket_versioning().bucket(bucket).versioning_configuration(versioning).send().await.expect("versioning");
    publish(&s3, bucket, "specs/dev.yaml", &queue_spec(30)).await;
    publish(&s3, bucket, "specs/REVISION", "c1\n").await;
    let url = format!("s3://{bucket}/specs/");

    let validate = operator(&moto.endpoint, &["--specs", &url, "validate"]);
    assert_eq!(validate.code, 0, "{}\n{}", validate.stdout, validate.stderr);
    assert!(validate.stdout.contains("dev: valid"));

    let daemon = Daemon::run(
        &moto.endpoint,
        &url,
        &["dev"],
        &["--interval", "2", "--fast-interval", "1", "--spec-poll-seconds", "1", "--single-replica", "--no-alerts"],
    );
    daemon.wait_ready();
    assert_eq!(visibility(&sqs, "dev").await.as_deref(), Some("30"));
    let version = s3.head_object().bucket(bucket).key("specs/dev.yaml").send().await.expect("head").version_id().map(str::to_string).expect("a version id");
    assert!(daemon.log().contains(&version), "the log names the version in use:\n{}", daemon.log());

    // A change is picked up.
    publish(&s3, bucket, "specs/dev.yaml", &queue_spec(60)).await;
    daemon.wait_until("spec B to be applied", Duration::from_secs(20), |_| futures_visible(&sqs, "60"));

    // Unchanged files are not read again: listings only.
    let gets = moto_s3_gets(&moto, || std::thread::sleep(Duration::from_secs(3)));
    assert_eq!(gets, (0, true), "no GetObject while nothing changes, and the prefix is listed");

    // A broken set is kept out; so is one missing the environment's file.
    let errors_before = daemon.metric("sentry_operator_spec_errors_total{env=\"dev\"}").unwrap_or(0.0);
    publish(&s3, bucket, "specs/dev.yaml", "messaging:\n  queues:\n    orders:\n      visibilityTimeoutSeconds: [\n").await;
    daemon.wait_until("the broken set to be refused", Duration::from_secs(20), |d| {
        d.metric("sentry_operator_spec_errors_total{env=\"dev\"}").unwrap_or(0.0) > errors_before
    });
    assert!(daemon.log().contains(&format!("{url}dev.yaml:")), "located in S3:\n{}", daemon.log());
    s3.delete_object().bucket(bucket).key("specs/dev.yaml").send().await.expect("delete");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(daemon.log().contains("no spec for environment \"dev\""), "{}", daemon.log());
    assert_eq!(visibility(&sqs, "dev").await.as_deref(), Some("60"), "the last valid set stays in use");
    publish(&s3, bucket, "specs/dev.yaml", &queue_spec(90)).await;
    daemon.wait_until("the repaired set to be applied", Duration::from_secs(20), |_| futures_visible(&sqs, "90"));

    // With a manifest, a set caught half-published is not taken up until it is whole.
    let manifest = |label: &str, text: &str| {
        use sha2::Digest as _;
        let hash: String = sha2::Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
        format!("{label}\n{hash}  dev.yaml\n")
    };
    publish(&s3, bucket, "specs/REVISION", &manifest("c4", &queue_spec(90))).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    publish(&s3, bucket, "specs/dev.yaml", &queue_spec(120)).await;
    daemon.wait_until("the half-published set to be noticed", Duration::from_secs(20), |d| d.log().contains("dev.yaml differs from the manifest"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(visibility(&sqs, "dev").await.as_deref(), Some("90"), "not taken up half-published");
    publish(&s3, bucket, "specs/REVISION", &manifest("c5", &queue_spec(120))).await;
    daemon.wait_until("the whole set to be applied", Duration::from_secs(20), |_| futures_visible(&sqs, "120"));

    // Bad sources: clear errors, nothing written.
    drop(daemon);
    for (source, expected) in [("s3://", "is not an S3 spec source"), ("s3://no-such-bucket-here/specs/", "the spec bucket no-such-bucket-here does not exist")]
    {
        moto.start_recording();
        let run = operator(&moto.endpoint, &["--specs", source, "reconcile", "--once", "--env", "dev"]);
        let requests = moto.stop_recording_requests();
        assert_eq!(run.code, 1, "{source}: {}\n{}", run.stdout, run.stderr);
        assert!(run.stderr.contains(expected), "{source}: {}", run.stderr);
        let others: Vec<&(String, String)> = requests.iter().filter(|(_, text)| !text.contains("/no-such-bucket-here/?list-type=2")).collect();
        assert!(others.is_empty(), "{source}: only the listing that failed: {others:?}");
    }
}

/// Whether the queue's visibility timeout is `expected` now (blocking, for `wait_until`).
fn futures_visible(sqs: &aws_sdk_sqs::Client, expected: &str) -> bool {
    let sqs = sqs.clone();
    let expected = expected.to_string();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(visibility(&sqs, "dev")).as_deref() == Some(expected.as_str())
    })
    .join()
    .unwrap_or(false)
}

/// While `wait` runs: the S3 object reads recorded, and whether the prefix was listed.
fn moto_s3_gets(moto: &Moto, wait: impl FnOnce()) -> (usize, bool) {
    moto.start_recording();
    wait();
    let requests = moto.stop_recording_requests();
    let s3: Vec<&String> = requests.iter().map(|(_, text)| text).filter(|t| t.contains("/sentry-operator-specs")).collect();
    let gets = s3.iter().filter(|t| t.contains("/specs/") && !t.contains("list-type")).count();
    (gets, s3.iter().any(|t| t.contains("list-type=2")))
}

#[tokio::test]
async fn the_daemons_ecs_deployment_is_accepted_as_written() {
    let moto = Moto::start();
    let deploy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let script = r#"
import boto3, json, sys
endpoint, deploy = sys.argv[1], sys.argv[2]
ecs = boto3.client("ecs", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
definition = ecs.register_task_definition(**json.load(open(deploy + "/ecs/task-definition.json")))["taskDefinition"]
ecs.create_cluster(clusterName="sentry-operator")
# The service names the management account's subnets and security group: placeholders, filled in per account.
ec2 = boto3.client("ec2", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.9.{i}.0/24")["Subnet"]["SubnetId"] for i in (1, 2)]
group = ec2.create_security_group(VpcId=vpc, GroupName="sentry-operator", Description="daemon")["GroupId"]
service = json.load(open(deploy + "/ecs/service.json"))
network = service["networkConfiguration"]["awsvpcConfiguration"]
assert network["subnets"] == ["subnet-0management0a", "subnet-0management0b"] and network["securityGroups"] == ["sg-0sentryoperator"]
network["subnets"], network["securityGroups"] = subnets, [group]
service = ecs.create_service(**service)["service"]
print(json.dumps({"definition": definition["taskDefinitionArn"], "container": definition["containerDefinitions"][0], "desired": service["desiredCount"]}, default=str))
"#;
    let out = std::process::Command::new("python3").args(["-c", script, &moto.endpoint, deploy.to_str().expect("utf-8")]).output().expect("python3");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let registered: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(registered["definition"].as_str().is_some_and(|a| a.ends_with(":task-definition/sentry-operator:1")), "{registered}");
    assert_eq!(registered["desired"], 2, "two replicas");
    let container = &registered["container"];
    assert_eq!(container["user"], "65532:65532", "non-root");
    assert_eq!(container["healthCheck"]["command"][1], "/sentry-operator");
    let command: Vec<&str> = container["command"].as_array().expect("command").iter().filter_map(|c| c.as_str()).collect();
    for expected in ["run", "--lease-table", "s3://sentry-operator-specs-111122223333/specs/", "0.0.0.0:9464", "--events"] {
        assert!(command.contains(&expected), "{command:?}");
    }
    // The command line the task runs parses (its flags exist), and the health probe is a real subcommand.
    let mut parse = command.clone();
    parse.push("--help");
    let parsed = operator(&moto.endpoint, &parse);
    assert_eq!(parsed.code, 0, "{}", parsed.stderr);
    assert_eq!(operator(&moto.endpoint, &["health", "--listen", "127.0.0.1:9"]).code, 1, "no daemon there: unhealthy");
    let dockerfile = std::fs::read_to_string(deploy.join("Dockerfile")).expect("Dockerfile");
    assert_eq!(dockerfile.matches("\nFROM ").count() + usize::from(dockerfile.starts_with("FROM ")), 2, "multi-stage");
    assert!(dockerfile.contains("USER 65532:65532") && dockerfile.contains("COPY --from=build /src/target/release/sentry-operator /sentry-operator"));
}

#[tokio::test]
async fn replicas_running_different_environments_leave_none_unled() {
    let moto = Moto::start();
    let specs = spec_dir(&[("dev.yaml", &queue_spec(30)), ("prod.yaml", &queue_spec(30))]);
    let both = replica(&moto, specs.path(), &["dev", "prod"]);
    wait_for_split(&[&both], &["dev", "prod"], &[2], Duration::from_secs(30));
    // A replica running dev only joins: dev moves to it, prod (which only the first runs) stays.
    let dev_only = replica(&moto, specs.path(), &["dev"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(dev_only.metric("sentry_operator_leader{env=\"dev\"}") == Some(1.0)
        && both.metric("sentry_operator_leader{env=\"dev\"}") == Some(0.0)
        && both.metric("sentry_operator_leader{env=\"prod\"}") == Some(1.0))
    {
        assert!(Instant::now() < deadline, "no dev/prod split: {:?} {:?}", leaders(&[&both], &["dev", "prod"]), leaders(&[&dev_only], &["dev"]));
        std::thread::sleep(Duration::from_millis(250));
    }
}

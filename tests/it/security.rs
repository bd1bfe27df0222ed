//! Security checks: the IAM policies in deploy/ match the AWS operations the
//! code calls, and credentials never reach the operator's output.

use std::collections::BTreeSet;
use std::path::Path;

use crate::harness::{repo_specs, Moto};

/// Every `Service.Operation` the code names in an AWS call (`.aws("…")` on its result).
fn operations_in_code() -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut dirs = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("src").flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            // Every call names its operation once: `.aws("EC2.CreateVpc")`.
            for part in text.split(".aws(\"").skip(1) {
                if let Some(op) = part.split('"').next() {
                    found.insert(op.to_string());
                }
            }
        }
    }
    found
}

/// The IAM action of each `Service.Operation` the code calls, with no hand
/// map of services: a service's IAM prefix is the one under which `granted`
/// holds the most of its operations (S3 names its listing permission after
/// the bucket, not the call). An operation whose action is not granted under
/// its service's prefix comes back as that action, and shows as missing.
fn iam_actions(operations: &BTreeSet<String>, granted: &BTreeSet<String>) -> BTreeSet<String> {
    let mut by_service: std::collections::BTreeMap<&str, Vec<&str>> = std::collections::BTreeMap::new();
    for op in operations.iter().filter(|op| *op != "S3.ListObjectsV2") {
        let (service, action) = op.split_once('.').expect("Service.Operation");
        by_service.entry(service).or_default().push(action);
    }
    let mut actions: BTreeSet<String> = operations.iter().filter(|op| *op == "S3.ListObjectsV2").map(|_| "s3:ListBucket".to_string()).collect();
    let mut prefixes = BTreeSet::new();
    for (service, ops) in by_service {
        let candidates: BTreeSet<&str> = granted.iter().filter_map(|g| g.split_once(':')).filter(|(_, a)| ops.contains(a)).map(|(p, _)| p).collect();
        let prefix = candidates
            .into_iter()
            .max_by_key(|p| ops.iter().filter(|a| granted.contains(&format!("{p}:{a}"))).count())
            .unwrap_or_else(|| panic!("no policy grants any operation of {service}: {ops:?}"));
        assert!(prefixes.insert(prefix), "two services of the code map to the IAM prefix {prefix}");
        actions.extend(ops.iter().map(|a| format!("{prefix}:{a}")));
    }
    actions
}

/// The policy `sentry-operator iam-policy` prints: every kind's and every
/// part of the runtime's declared permissions.
fn generated_policy() -> String {
    let policy = sentry_operator::iam_policy::environment_policy(&sentry_operator::kinds::rules(), &[], true).expect("the kinds' grants make one policy");
    sentry_operator::iam_policy::render(&policy).expect("JSON")
}

fn policy_actions(file: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy").join(file)).expect("policy");
    let policy: serde_json::Value = serde_json::from_str(&text).expect("policy JSON");
    let mut actions = BTreeSet::new();
    for statement in policy["Statement"].as_array().expect("statements").iter().filter(|s| s["Effect"] == "Allow") {
        match &statement["Action"] {
            serde_json::Value::String(a) => {
                actions.insert(a.clone());
            }
            serde_json::Value::Array(list) => actions.extend(list.iter().filter_map(|a| a.as_str().map(str::to_string))),
            other => panic!("unexpected Action {other}"),
        }
    }
    actions
}

#[test]
fn the_iam_policies_grant_exactly_what_the_code_calls() {
    let checked_in = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/iam-policy.json")).expect("policy");
    assert!(
        checked_in == generated_policy(),
        "deploy/iam-policy.json is not what the kinds declare: run `sentry-operator iam-policy > deploy/iam-policy.json`"
    );
    let environment = policy_actions("iam-policy.json");
    let management = policy_actions("management-account-policy.json");
    let granted: BTreeSet<String> = environment.union(&management).cloned().collect();
    let needed = iam_actions(&operations_in_code(), &granted);
    assert!(needed.len() > 60, "the scan found the calls: {needed:?}");
    let missing: Vec<&String> = needed.iter().filter(|a| !granted.contains(*a)).collect();
    assert!(missing.is_empty(), "operations the code calls but no policy grants: {missing:?}");
    // Checked by AWS on the operator's behalf, never called: assuming the
    // environment's role, passing roles, launching what an Auto Scaling group
    // launches, the service-linked roles Auto Scaling and ECS create on first
    // use, tags given in a registration, what Secrets Manager and DynamoDB do
    // with a customer-managed key when they encrypt with it, and the rotation
    // function a RotateSecret invokes.
    let implied = [
        "sts:AssumeRole",
        "iam:PassRole",
        "ec2:RunInstances",
        "iam:CreateServiceLinkedRole",
        "application-autoscaling:TagResource",
        "kms:GenerateDataKey",
        "kms:Encrypt",
        "kms:Decrypt",
        "kms:CreateGrant",
        "lambda:InvokeFunction",
    ];
    let extra: Vec<&String> = granted.iter().filter(|a| !needed.contains(*a) && !implied.contains(&a.as_str())).collect();
    assert!(extra.is_empty(), "actions granted but never called: {extra:?}");
    assert!(granted.iter().all(|a| !a.contains('*')), "no wildcard actions");
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy").join("iam-policy.json")).expect("policy");
    let policy: serde_json::Value = serde_json::from_str(&text).expect("policy JSON");
    let never_values = policy["Statement"].as_array().into_iter().flatten().find(|s| s["Sid"] == "NeverASecretsValue").expect("the deny on values");
    assert_eq!(never_values["Effect"], "Deny");
    assert!(!needed.contains("secretsmanager:GetSecretValue") && !needed.contains("secretsmanager:PutSecretValue"), "the code never reads or writes a value");
    // Nor through another door: a value is given once, to CreateSecret (the placeholder), and never read.
    let code = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/kinds/secretsmanager.rs")).expect("secrets kind");
    assert_eq!(code.matches(".secret_string(").count(), 1, "only the create sends a value");
    assert!(code.contains(".create_secret()") && !code.contains("secret_binary") && !code.contains("get_secret_value"));
    for lease_or_alert in [
        "dynamodb:Scan",
        "dynamodb:GetItem",
        "dynamodb:UpdateItem",
        "dynamodb:PutItem",
        "dynamodb:DeleteItem",
        "s3:ListBucket",
        "s3:GetObject",
        "logs:PutLogEvents",
        "logs:CreateLogStream",
        "sts:AssumeRole",
    ] {
        assert!(management.contains(lease_or_alert), "the management account needs {lease_or_alert}");
    }
}

#[tokio::test]
async fn credentials_never_reach_the_output() {
    let moto = Moto::start();
    let secret = "bench-SECRET-do-not-print-4f7a9c";
    let specs = repo_specs();
    for args in [&["--output", "json", "reconcile", "--once", "--env", "dev"][..], &["plan", "--env", "dev"][..]] {
        let mut all = vec!["--specs", specs.to_str().expect("utf-8")];
        all.extend_from_slice(args);
        let run = crate::harness::operator_with_env(&moto.endpoint, &all, &[("AWS_SECRET_ACCESS_KEY", secret), ("RUST_LOG", "debug")]);
        assert!(run.code == 0 || run.code == 2, "{}", run.stderr);
        assert!(!run.stdout.contains(secret) && !run.stderr.contains(secret), "the secret key leaked");
        assert!(!run.stdout.contains("SECRET-do-not-print") && !run.stderr.contains("SECRET-do-not-print"));
    }
}

/// The working directory of a running process.
fn cwd_of(pid: u32) -> std::path::PathBuf {
    std::fs::read_link(format!("/proc/{pid}/cwd")).expect("the process is running")
}

/// Every emulator the tests and the demo start runs in a temporary working
/// directory: its request recorder writes `./moto_recording`, which once
/// ended up committed at the repository root.
#[test]
fn emulators_never_run_in_the_checkout() {
    let checkout = std::fs::canonicalize(env!("CARGO_MANIFEST_DIR")).expect("checkout");
    let moto = Moto::start();
    let harness_dir = cwd_of(moto.pid());
    assert!(!harness_dir.starts_with(&checkout), "the harness's emulator runs in {}", harness_dir.display());

    let script =
        "source deploy/lib/moto.sh; ensure_moto >/dev/null; start_moto; readlink /proc/$MOTO_PID/cwd; stop_moto; test ! -e \"$MOTO_DIR\" && echo removed";
    let out = std::process::Command::new("bash").arg("-c").arg(script).current_dir(&checkout).output().expect("bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "start_moto failed: {}", String::from_utf8_lossy(&out.stderr));
    let demo_dir = stdout.lines().next().unwrap_or_default();
    assert!(!demo_dir.is_empty() && !Path::new(demo_dir).starts_with(&checkout), "the demo's emulator runs in {demo_dir:?}");
    assert!(stdout.contains("removed"), "stop_moto must remove the emulator's directory: {stdout}");
    assert!(!checkout.join("moto_recording").exists(), "moto_recording appeared in the checkout");

    // A recording saved by hand (a download of the recorder, JSON lines) cannot be committed by accident either.
    if checkout.join(".git").exists() {
        for name in ["moto_recording", "rec.jsonl", "bench/recording", "requests.jsonl"] {
            let ignored = std::process::Command::new("git").args(["check-ignore", "-q", name]).current_dir(&checkout).status().expect("git");
            assert!(ignored.success(), "git does not ignore {name}");
        }
        let tracked = std::process::Command::new("git").args(["ls-files", "*.jsonl", "*moto_recording*"]).current_dir(&checkout).output().expect("git");
        assert!(tracked.stdout.is_empty(), "recordings are tracked: {}", String::from_utf8_lossy(&tracked.stdout));
    }
}

#[test]
fn iam_policy_prints_the_checked_in_policy_and_narrows_it_to_an_environment() {
    // Nothing listens on port 9: the command must not call AWS.
    let unreachable = "http://127.0.0.1:9";
    let all = crate::harness::operator(unreachable, &["iam-policy"]);
    assert_eq!(all.code, 0, "{}", all.stderr);
    assert!(all.stdout == generated_policy(), "the command prints what the kinds declare");

    let specs = repo_specs();
    let dev = crate::harness::operator(unreachable, &["--specs", specs.to_str().expect("utf-8"), "iam-policy", "--env", "dev"]);
    assert_eq!(dev.code, 0, "{}", dev.stderr);
    let statements = |text: &str| -> Vec<(String, BTreeSet<String>)> {
        let policy: serde_json::Value = serde_json::from_str(text).expect("JSON");
        let list = policy["Statement"].as_array().expect("statements").clone();
        list.iter()
            .map(|s| {
                let actions = s["Action"].as_array().map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect()).unwrap_or_default();
                (s["Sid"].as_str().unwrap_or_default().to_string(), actions)
            })
            .collect()
    };
    let (every, narrowed) = (statements(&all.stdout), statements(&dev.stdout));
    for (sid, actions) in &narrowed {
        let whole = every.iter().find(|(s, _)| s == sid).map(|(_, a)| a).expect("a statement of the whole policy");
        assert!(actions.is_subset(whole), "{sid}: {actions:?}");
    }
    let sids: BTreeSet<&str> = narrowed.iter().map(|(s, _)| s.as_str()).collect();
    // dev runs no service scaling; the daemon's event rule is always there.
    assert!(!sids.contains("ServiceAutoScalingWrites") && sids.contains("TheOperatorsEventRule") && sids.contains("NetworkWrites"), "{sids:?}");
    // Every pass reads every kind, the unused ones too (else it could not run, nor see what a spec no longer names).
    let reads = &narrowed.iter().find(|(s, _)| s == "ReadTheEstate").expect("reads").1;
    let every_read = &every.iter().find(|(s, _)| s == "ReadTheEstate").expect("reads").1;
    assert_eq!(reads, every_read, "the narrowed policy keeps every read");
    assert!(reads.contains("application-autoscaling:DescribeScalableTargets"));

    let invalid = tempfile::tempdir().expect("tempdir");
    std::fs::write(invalid.path().join("dev.yaml"), "region: eu-west-1\nnot-a-section: 1\n").expect("spec");
    let refused = crate::harness::operator(unreachable, &["--specs", invalid.path().to_str().expect("utf-8"), "iam-policy", "--env", "dev"]);
    assert_eq!((refused.code, refused.stdout.as_str()), (1, ""), "an invalid spec prints no policy: {}", refused.stderr);
}

//! The daemon against the emulator: fast whitelist repair, alerts in
//! CloudWatch Logs (EMF), health and metrics, invalid spec reloads, graceful
//! stop, leader election between replicas (a killed leader's lease expires),
//! observe-only mode, and
//! cross-account roles (an environment's alerts in its own account).

use std::net::TcpListener;
use std::process::Child;
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::Filter;

use crate::faults::{FaultProxy, Hang};
use crate::harness::{http, is_write, json_args, operator, repo_specs, sdk_config, spawn_operator, specs_with, Moto};

/// The gauge saying whether a replica holds dev's lease.
const LEADS_DEV: &str = "sentry_operator_leader{env=\"dev\"}";

/// A daemon process, stopped with SIGKILL on drop if still running.
pub struct Daemon {
    /// The process.
    pub child: Child,
    http: String,
    _logs: tempfile::TempDir,
    log: std::path::PathBuf,
}

impl Daemon {
    /// `run --env dev --interval 30 --fast-interval 1 <extra>` against the emulator.
    pub fn start(moto: &Moto, specs: &std::path::Path, extra: &[&str]) -> Daemon {
        let mut args = vec!["--interval", "30", "--fast-interval", "1"];
        args.extend_from_slice(extra);
        Daemon::start_at(&moto.endpoint, specs, &args)
    }

    /// `run --env dev <args>` against `endpoint`, with a health endpoint on a free port.
    fn start_at(endpoint: &str, specs: &std::path::Path, extra: &[&str]) -> Daemon {
        Daemon::run(endpoint, specs.to_str().expect("utf-8"), &["dev"], extra)
    }

    /// `--specs <specs> run --env <each of envs> <args>` against `endpoint`, with a health endpoint on a free port.
    pub fn run(endpoint: &str, specs: &str, envs: &[&str], extra: &[&str]) -> Daemon {
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("port");
        let listen = format!("127.0.0.1:{port}");
        let logs = tempfile::tempdir().expect("tempdir");
        let log = logs.path().join("daemon.log");
        let mut args = vec!["--specs", specs, "run", "--listen", &listen];
        for env in envs {
            args.extend(["--env", env]);
        }
        args.extend_from_slice(extra);
        let child = spawn_operator(endpoint, &args, &log);
        Daemon { child, http: format!("http://{listen}"), _logs: logs, log }
    }

    /// The base URL of its endpoint (`http://127.0.0.1:PORT`).
    pub fn http(&self) -> &str {
        &self.http
    }

    /// What the daemon logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The body of `GET path` from the health endpoint.
    pub fn get(&self, path: &str) -> Option<String> {
        http(&self.http, "GET", path)
    }

    /// The value of the metric line starting with `line_start`.
    pub fn metric(&self, line_start: &str) -> Option<f64> {
        self.get("/metrics")?.lines().find(|l| l.starts_with(line_start)).and_then(|l| l.rsplit(' ').next()?.parse().ok())
    }

    /// Waits up to `limit` for `check` to hold; fails naming `what`, with the daemon's log.
    pub fn wait_until(&self, what: &str, limit: Duration, mut check: impl FnMut(&Daemon) -> bool) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if check(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("timed out waiting for {what}; daemon log:\n{}", std::fs::read_to_string(&self.log).unwrap_or_default());
    }

    /// Waits for `/readyz`.
    pub fn wait_ready(&self) {
        self.wait_until("readiness", Duration::from_secs(60), |d| d.get("/readyz").is_some_and(|b| b.starts_with("ready")));
    }

    /// SIGTERM, then the exit status (within `limit`).
    fn terminate(&mut self, limit: Duration) -> Option<i32> {
        let pid = self.child.id().to_string();
        let _ = std::process::Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn whitelist_association(ec2: &aws_sdk_ec2::Client) -> Option<String> {
    let filters = vec![Filter::builder().name("tag:sentry:env").values("dev").build(), Filter::builder().name("tag:sentry:id").values("whitelist-1").build()];
    let out = ec2.describe_addresses().set_filters(Some(filters)).send().await.expect("addresses");
    out.addresses().first().and_then(|a| a.association_id()).filter(|s| !s.is_empty()).map(str::to_string)
}

#[tokio::test]
async fn the_daemon_repairs_a_detached_whitelist_eip_fast_alerts_and_stops_cleanly() {
    let moto = Moto::start();
    let dir = specs_with(&[]);
    let mut daemon = Daemon::start(&moto, dir.path(), &["--lease-table", "sentry-operator-leases"]);
    daemon.wait_ready();
    assert_eq!(daemon.get("/healthz").as_deref(), Some("ok\n"));
    assert_eq!(daemon.metric(LEADS_DEV), Some(1.0), "the only replica leads");

    let ec2 = aws_sdk_ec2::Client::new(&sdk_config(&moto.endpoint).await);
    let association = whitelist_association(&ec2).await.expect("attached");
    let detached = Instant::now();
    ec2.disassociate_address().association_id(association).send().await.expect("detach");
    let deadline = Instant::now() + Duration::from_secs(15);
    while whitelist_association(&ec2).await.is_none() {
        assert!(Instant::now() < deadline, "not repaired within 15 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("whitelist EIP re-attached {:?} after the drift", detached.elapsed());

    // The drift and the violation are in CloudWatch Logs, as EMF.
    let logs = aws_sdk_cloudwatchlogs::Client::new(&sdk_config(&moto.endpoint).await);
    let mut messages = Vec::new();
    for _ in 0..50 {
        let out = logs.filter_log_events().log_group_name("/sentry-operator/dev").send().await.expect("events");
        messages = out.events().iter().filter_map(|e| e.message().map(str::to_string)).collect();
        if messages.iter().any(|m| m.contains("\"DriftRepaired\"") && m.contains("ec2.elastic-ip")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let violation = messages.iter().find(|m| m.contains("\"WhitelistViolation\":1")).expect("a whitelist violation event");
    let v: serde_json::Value = serde_json::from_str(violation).expect("json");
    assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Namespace"], "SentryOperator");
    assert_eq!(v["Environment"], "dev");
    let repaired = messages.iter().find(|m| m.contains("\"DriftRepaired\"") && m.contains("ec2.elastic-ip")).expect("a repair event");
    let r: serde_json::Value = serde_json::from_str(repaired).expect("json");
    assert_eq!(r["field"], "AttachedTo");
    assert_eq!(r["action"], "repaired");

    // An invalid spec is reported and never applied; the last valid one stays in use.
    std::fs::write(dir.path().join("dev.yaml"), "network:\n  vpc:\n    cidr: 10.0.0.0/33\n").expect("break the spec");
    daemon.wait_until("the spec error", Duration::from_secs(20), |d| d.metric("sentry_operator_spec_errors_total{env=\"dev\"}").is_some_and(|n| n >= 1.0));
    let passes = daemon.metric("sentry_operator_passes_total{env=\"dev\",outcome=\"ok\"}").unwrap_or(0.0);
    daemon.wait_until("passes to go on", Duration::from_secs(20), |d| {
        d.metric("sentry_operator_passes_total{env=\"dev\",outcome=\"ok\"}").unwrap_or(0.0) > passes
    });
    assert!(whitelist_association(&ec2).await.is_some());

    assert_eq!(daemon.terminate(Duration::from_secs(20)), Some(0), "SIGTERM exits 0");
}

/// Two replicas sharing a 3-second lease, both ready: the first one leads.
fn leader_and_follower(moto: &Moto, specs: &std::path::Path) -> (Daemon, Daemon) {
    let lease = ["--lease-table", "leases", "--lease-seconds", "3"];
    let first = Daemon::start(moto, specs, &lease);
    first.wait_ready();
    let second = Daemon::start(moto, specs, &lease);
    second.wait_ready();
    assert_eq!(first.metric(LEADS_DEV), Some(1.0));
    assert_eq!(second.metric(LEADS_DEV), Some(0.0), "one leader at a time");
    (first, second)
}

#[tokio::test]
async fn a_second_replica_observes_until_the_leader_stops() {
    let moto = Moto::start();
    let dir = specs_with(&[]);
    let (mut first, second) = leader_and_follower(&moto, dir.path());
    let follower_writes = |d: &Daemon| {
        let metrics = d.get("/metrics").unwrap_or_default();
        metrics.lines().filter(|l| l.starts_with("sentry_operator_repairs_total")).count()
    };
    assert_eq!(follower_writes(&second), 0, "the follower repairs nothing");

    assert_eq!(first.terminate(Duration::from_secs(20)), Some(0));
    second.wait_until("the follower to take over", Duration::from_secs(15), |d| d.metric(LEADS_DEV) == Some(1.0));
}

#[tokio::test]
async fn a_killed_leader_is_replaced_once_its_lease_expires() {
    let moto = Moto::start();
    let dir = specs_with(&[]);
    let (mut first, second) = leader_and_follower(&moto, dir.path());
    first.child.kill().expect("SIGKILL: the lease is not released");
    let _ = first.child.wait();
    let killed = Instant::now();
    second.wait_until("the follower to take over", Duration::from_secs(20), |d| d.metric(LEADS_DEV) == Some(1.0));
    assert!(killed.elapsed() >= Duration::from_secs(1), "not before the dead leader's lease runs out");
}

#[tokio::test]
async fn observe_only_reports_drift_and_never_writes() {
    let moto = Moto::start();
    let dir = specs_with(&[]);
    moto.start_recording();
    let daemon = Daemon::start(&moto, dir.path(), &["--observe-only", "--single-replica", "--no-alerts"]);
    daemon.wait_until("a few passes", Duration::from_secs(30), |d| d.metric("sentry_operator_passes_total{env=\"dev\",outcome=\"ok\"}").unwrap_or(0.0) >= 3.0);
    let writes: Vec<String> = moto.stop_recording().into_iter().filter(|op| is_write(op)).collect();
    assert!(writes.is_empty(), "observe-only wrote: {writes:?}");
    let vpc_drift = daemon.metric("sentry_operator_drift_total{env=\"dev\",kind=\"ec2.vpc\",call=\"unknown\"}");
    assert!(vpc_drift.unwrap_or(0.0) >= 1.0, "drift is reported: {:?}", daemon.get("/metrics"));
}

/// The repository's specs with dev in `account`, reached through its
/// `sentry-operator` role.
fn dev_in_account(account: &str) -> tempfile::TempDir {
    let dev = std::fs::read_to_string(repo_specs().join("dev.yaml")).expect("dev");
    specs_with(&[("dev.yaml", &format!("{dev}account:\n  roleArn: arn:aws:iam::{account}:role/sentry-operator\n"))])
}

#[tokio::test]
async fn an_environment_in_another_account_is_reached_through_its_role() {
    let moto = Moto::start();
    let dir = dev_in_account("123456789012");
    moto.start_recording();
    let run = operator(&moto.endpoint, &json_args(dir.path(), &["plan", "--env", "dev"]));
    let recorded = moto.stop_recording();
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(recorded.iter().any(|op| op == "AssumeRole"), "credentials came from STS: {recorded:?}");
}

/// An environment in an account of its own gets its alert events there,
/// next to the alarms its spec puts on the operator's metrics; none land in
/// the operator's own account.
#[tokio::test]
async fn an_environment_in_another_account_gets_its_alerts_there() {
    let moto = Moto::start();
    let dir = dev_in_account("111111111111");
    let daemon = Daemon::start(&moto, dir.path(), &["--single-replica"]);
    let own = sdk_config(&moto.endpoint).await;
    let role =
        aws_config::sts::AssumeRoleProvider::builder("arn:aws:iam::111111111111:role/sentry-operator").session_name("test").configure(&own).build().await;
    let env_account = own.clone().into_builder().credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(role)).build();
    let env_logs = aws_sdk_cloudwatchlogs::Client::new(&env_account);
    let mut messages = Vec::new();
    for _ in 0..300 {
        if let Ok(out) = env_logs.filter_log_events().log_group_name("/sentry-operator/dev").send().await {
            messages = out.events().iter().filter_map(|e| e.message().map(str::to_string)).collect();
        }
        if messages.iter().any(|m| m.contains("\"ReconcileDurationMs\"")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(messages.iter().any(|m| m.contains("\"ReconcileDurationMs\"")), "the pass's events are in the environment's account:\n{}", daemon.log());
    let alarms = aws_sdk_cloudwatch::Client::new(&env_account).describe_alarms().alarm_names("sentry-operator-heartbeat-dev").send().await.expect("alarms");
    assert_eq!(alarms.metric_alarms().len(), 1, "the heartbeat alarm watches them in the same account");
    let own_groups = aws_sdk_cloudwatchlogs::Client::new(&own).describe_log_groups().log_group_name_prefix("/sentry-operator/").send().await.expect("groups");
    assert!(own_groups.log_groups().is_empty(), "nothing in the operator's own account");
}

/// A hung endpoint (a proxy that accepts requests and never answers) for
/// everything but EC2: the full pass is abandoned at its deadline, counted,
/// alerted and logged, `/readyz` turns 503, and meanwhile the network loop
/// still repairs the whitelist within seconds. When the endpoint answers
/// again, passes resume and `/readyz` is 200 again.
#[tokio::test]
async fn a_hung_endpoint_abandons_the_pass_at_its_deadline_and_never_blocks_the_whitelist_guard() {
    let moto = Moto::start();
    let specs = repo_specs();
    assert_eq!(operator(&moto.endpoint, &json_args(&specs, &["reconcile", "--once", "--env", "dev"])).code, 2, "converged first");
    let proxy = FaultProxy::start(&moto.endpoint, 0, 1);
    // Short request timeouts, so that the alerts sent into the hang fail soon
    // and are delivered once the endpoint is back.
    let args = ["--interval", "4", "--fast-interval", "1", "--pass-deadline", "3", "--single-replica", "--attempt-timeout", "2", "--operation-timeout", "5"];
    let daemon = Daemon::start_at(&proxy.endpoint, &specs, &args);
    daemon.wait_ready();
    assert_eq!(daemon.metric("sentry_operator_env_stale{env=\"dev\"}"), Some(0.0));

    proxy.set_hang(Hang::AllButEc2);
    daemon.wait_until("a full pass abandoned at its deadline", Duration::from_secs(30), |d| {
        d.metric("sentry_operator_pass_timeouts_total{env=\"dev\",scope=\"full\"}").is_some_and(|n| n >= 1.0)
    });
    assert_eq!(daemon.metric("sentry_operator_env_stale{env=\"dev\"}"), Some(1.0));
    let readiness = daemon.get("/readyz").unwrap_or_default();
    assert!(readiness.contains("abandoned at its deadline"), "/readyz must be 503 and say why: {readiness:?}");
    assert!(daemon.log().contains("pass abandoned at its deadline"), "{}", daemon.log());

    // The whitelist guard is not behind the hung full pass.
    let ec2 = aws_sdk_ec2::Client::new(&sdk_config(&moto.endpoint).await);
    let association = whitelist_association(&ec2).await.expect("attached");
    ec2.disassociate_address().association_id(association).send().await.expect("detach");
    let deadline = Instant::now() + Duration::from_secs(10);
    while whitelist_association(&ec2).await.is_none() {
        assert!(Instant::now() < deadline, "the network loop did not repair the whitelist while the full pass hung:\n{}", daemon.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    proxy.set_hang(Hang::Nothing);
    daemon.wait_until("readiness after the endpoint came back", Duration::from_secs(60), |d| d.get("/readyz").is_some_and(|b| b.starts_with("ready")));
    assert_eq!(daemon.metric("sentry_operator_env_stale{env=\"dev\"}"), Some(0.0));

    // The stale alert reached CloudWatch Logs once it answered again.
    let logs = aws_sdk_cloudwatchlogs::Client::new(&sdk_config(&moto.endpoint).await);
    let mut stale = None;
    for _ in 0..150 {
        let out = logs.filter_log_events().log_group_name("/sentry-operator/dev").send().await;
        let messages: Vec<String> = out.map(|o| o.events().iter().filter_map(|e| e.message().map(str::to_string)).collect()).unwrap_or_default();
        stale = messages.into_iter().find(|m| m.contains("\"EnvironmentStale\":1"));
        if stale.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stale: serde_json::Value = serde_json::from_str(&stale.expect("an EnvironmentStale event")).expect("json");
    assert_eq!(stale["scope"], "full");
    assert_eq!(stale["Environment"], "dev");
}

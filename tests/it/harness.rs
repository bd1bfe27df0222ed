//! Test harness: a private moto server per test, the operator binary run
//! against it, and an independent SDK client to inject drift and check state.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A moto server on a free loopback port, killed on drop.
pub struct Moto {
    child: Child,
    /// The server's working directory, holding its request recording (moto
    /// writes it to a file, by default in the working directory, which would
    /// be the checkout, shared by parallel tests).
    _recording: tempfile::TempDir,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
}

impl Moto {
    /// Starts `moto_server` (or `$MOTO_SERVER`) on a port the OS picks (`-p 0`),
    /// learns the port from its banner, and waits until it answers. Each test
    /// owns its server, so tests cannot see each other's resources.
    pub fn start() -> Moto {
        use std::io::{BufRead, BufReader};
        let program = std::env::var("MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
        let recording = tempfile::tempdir().expect("tempdir");
        let mut child = Command::new(&program)
            .args(["-H", "127.0.0.1", "-p", "0"])
            .env("MOTO_RECORDER_FILEPATH", recording.path().join("recording"))
            .current_dir(recording.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program} (pip install 'moto[server]'): {e}"));
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !sent {
                    if let Some(port) = line.split("http://127.0.0.1:").nth(1).and_then(|p| p.trim().parse::<u16>().ok()) {
                        let _ = tx.send(port);
                        sent = true;
                    }
                }
            }
        });
        let port = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| panic!("{program} did not report its port"));
        let moto = Moto { child, _recording: recording, endpoint: format!("http://127.0.0.1:{port}") };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if http(&moto.endpoint, "GET", "/moto-api/data.json").is_some() {
                return moto;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("moto_server on port {port} does not answer");
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Starts recording requests (clearing earlier ones).
    pub fn start_recording(&self) {
        http(&self.endpoint, "POST", "/moto-api/recorder/reset-recording");
        http(&self.endpoint, "POST", "/moto-api/recorder/start-recording");
    }

    /// Stops recording and returns the operation of every request recorded.
    pub fn stop_recording(&self) -> Vec<String> {
        self.stop_recording_requests().into_iter().map(|(operation, _)| operation).collect()
    }

    /// `reconcile --once --env <env>` over `specs`, with JSON output.
    pub fn reconcile(&self, specs: &Path, env: &str) -> Run {
        operator(&self.endpoint, &json_args(specs, &["reconcile", "--once", "--env", env]))
    }

    /// Runs `pass` while recording; returns it with the write operations seen.
    pub fn writes_of(&self, pass: impl FnOnce() -> Run) -> (Run, Vec<String>) {
        self.start_recording();
        let run = pass();
        (run, self.stop_recording().into_iter().filter(|op| is_write(op)).collect())
    }

    /// Asserts that `env` is converged: a pass over it exits 0 and writes nothing.
    pub fn assert_converged(&self, specs: &Path, env: &str) {
        let (run, writes) = self.writes_of(|| self.reconcile(specs, env));
        assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
        assert!(writes.is_empty(), "a converged pass wrote: {writes:?}");
        assert_eq!(run.json()["calls"]["writes"], 0);
    }

    /// A fresh emulator on which `env` of the repository's specs was just
    /// built from empty (exit 2, nothing failed); returns it and the specs.
    pub fn built(env: &str) -> (Moto, PathBuf) {
        let moto = Moto::start();
        let specs = repo_specs();
        let run = moto.reconcile(&specs, env);
        assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
        assert_eq!(run.json()["summary"]["failed"], 0, "{}", run.stdout);
        (moto, specs)
    }

    /// Stops recording and returns every request recorded: its operation, and
    /// its target, URL and decoded body as one text.
    pub fn stop_recording_requests(&self) -> Vec<(String, String)> {
        http(&self.endpoint, "POST", "/moto-api/recorder/stop-recording");
        let body = http(&self.endpoint, "GET", "/moto-api/recorder/download-recording").unwrap_or_default();
        body.lines().filter(|l| !l.trim().is_empty()).map(recorded_request).collect()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The AWS operation of one recorded request (JSON protocols name it in
/// X-Amz-Target, query protocols in `Action`), and the request as text.
fn recorded_request(line: &str) -> (String, String) {
    let v: Value = serde_json::from_str(line).unwrap_or(Value::Null);
    let body = v["body"].as_str().unwrap_or("");
    let body = if v["body_encoded"] == true {
        use base64::Engine as _;
        String::from_utf8_lossy(&base64::engine::general_purpose::STANDARD.decode(body).unwrap_or_default()).into_owned()
    } else {
        body.to_string()
    };
    let target = v["headers"]["X-Amz-Target"].as_str().unwrap_or("");
    let text = format!("{target} {} {body}", v["url"].as_str().unwrap_or(""));
    let operation = match target.rsplit('.').next().filter(|t| !t.is_empty()) {
        Some(operation) => operation.to_string(),
        None => text.split(['?', '&', ' ']).find_map(|kv| kv.strip_prefix("Action=")).map(str::to_string).unwrap_or_else(|| "unknown".into()),
    };
    (operation, text)
}

/// Whether a recorded operation writes.
pub fn is_write(operation: &str) -> bool {
    !["Get", "List", "Describe"].iter().any(|p| operation.starts_with(p))
}

/// A minimal HTTP/1.0 request over std, so the harness needs no HTTP client crate.
pub fn http(endpoint: &str, method: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let addr = endpoint.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(stream, "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.").then(|| body.to_string())
}

/// The result of one operator run.
pub struct Run {
    /// Exit status.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// Standard output parsed as JSON (for `--output json`).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}\nstderr:\n{}", self.stdout, self.stderr))
    }

    /// How many report entries of `kind` have `action`.
    pub fn count(&self, kind: &str, action: &str) -> usize {
        self.json()["resources"].as_array().map_or(0, |rs| rs.iter().filter(|r| r["kind"] == kind && r["action"] == action).count())
    }

    /// The report entry of resource `id` of `kind`.
    pub fn resource(&self, kind: &str, id: &str) -> Value {
        self.json()["resources"]
            .as_array()
            .and_then(|rs| rs.iter().find(|r| r["kind"] == kind && r["id"] == id).cloned())
            .unwrap_or_else(|| panic!("no {kind} {id} in report:\n{}", self.stdout))
    }
}

/// The environment every operator process gets: the emulator and dummy credentials.
fn aws_env(command: &mut Command, endpoint: &str) {
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true");
}

/// Starts the operator in the background (the daemon), output to `log`.
pub fn spawn_operator(endpoint: &str, args: &[&str], log: &Path) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sentry-operator"));
    aws_env(&mut command, endpoint);
    let out = std::fs::File::create(log).expect("log file");
    let err = out.try_clone().expect("log file");
    command.args(args).stdout(out).stderr(err).spawn().expect("spawn operator")
}

/// Waits for `child` to exit; kills it and fails the test after `limit`, saying `what` was still running.
pub fn exit_within(child: &mut Child, limit: Duration, what: &str) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs the operator binary with `args` against `endpoint`, with extra environment variables.
pub fn operator_with_env(endpoint: &str, args: &[&str], vars: &[(&str, &str)]) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sentry-operator"));
    aws_env(&mut command, endpoint);
    command.envs(vars.iter().copied());
    let out = command.args(args).output().expect("run operator");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs the operator binary with `args` against `endpoint`.
pub fn operator(endpoint: &str, args: &[&str]) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sentry-operator"));
    aws_env(&mut command, endpoint);
    let out = command.args(args).output().expect("run operator");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The repository's own spec directory.
pub fn repo_specs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("specs")
}

/// A temporary spec directory holding `files` (name, contents).
pub fn spec_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).expect("write spec");
    }
    dir
}

/// A temporary copy of the repository's specs with some files replaced.
pub fn specs_with(overrides: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for entry in std::fs::read_dir(repo_specs()).expect("specs").flatten() {
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).expect("copy spec");
    }
    for (name, text) in overrides {
        std::fs::write(dir.path().join(name), text).expect("write spec");
    }
    dir
}

/// `--specs DIR --output json <args>`.
pub fn json_args<'a>(dir: &'a Path, args: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["--specs", dir.to_str().expect("utf-8 path"), "--output", "json"];
    all.extend_from_slice(args);
    all
}

/// An SDK config for an independent client against `endpoint`.
pub async fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new("testing", "testing", None, None, "test"))
        .load()
        .await
}

/// Someone else's network, untagged: VPC 10.9.0.0/16 and one subnet per
/// zone (`10.9.<n>.0/24` in the n-th zone given); the VPC's and the subnets' ids.
pub async fn foreign_network(ec2: &aws_sdk_ec2::Client, zones: &[&str]) -> (String, Vec<String>) {
    let vpc = ec2.create_vpc().cidr_block("10.9.0.0/16").send().await.expect("their vpc");
    let vpc = vpc.vpc().and_then(|v| v.vpc_id()).expect("vpc id").to_string();
    let mut subnets = Vec::new();
    for (n, zone) in zones.iter().enumerate() {
        let subnet = ec2.create_subnet().vpc_id(&vpc).cidr_block(format!("10.9.{}.0/24", n + 1)).availability_zone(*zone).send().await.expect("their subnet");
        subnets.push(subnet.subnet().and_then(|s| s.subnet_id()).expect("subnet id").to_string());
    }
    (vpc, subnets)
}

/// Reads one HTTP request (head and body) from `stream`; for test proxies.
pub fn read_request(stream: &mut std::net::TcpStream) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut data = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
            let length: usize = head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
            if data.len() >= end + 4 + length {
                return Some(data);
            }
        }
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&chunk[..n]);
    }
}

/// Sends a raw HTTP request to `upstream` (`host:port`) and returns what came
/// back (`None` when it cannot be sent); for test proxies.
pub fn forward(upstream: &str, request: &[u8]) -> Option<Vec<u8>> {
    use std::io::{Read, Write};
    let mut server = std::net::TcpStream::connect(upstream).ok()?;
    server.write_all(request).ok()?;
    let mut response = Vec::new();
    let _ = server.read_to_end(&mut response);
    Some(response)
}

/// The AWS operation of a raw HTTP request (X-Amz-Target for JSON protocols, `Action` for query ones).
pub fn request_operation(request: &[u8]) -> String {
    let text = String::from_utf8_lossy(request);
    for line in text.lines() {
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("x-amz-target") {
                return value.trim().rsplit('.').next().unwrap_or_default().to_string();
            }
        }
    }
    text.split(['?', '&', ' ', '\n', '\r']).find_map(|kv| kv.strip_prefix("Action=")).unwrap_or("unknown").to_string()
}

/// Every resource in the emulator's account, counted by type whoever owns it
/// (tagged or not; the default VPC excluded): a duplicate or an orphan of
/// any kind the operator manages changes a count.
pub async fn account_inventory(moto: &Moto) -> Vec<(&'static str, usize)> {
    let config = sdk_config(&moto.endpoint).await;
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let vpcs: Vec<String> = ec2
        .describe_vpcs()
        .send()
        .await
        .expect("vpcs")
        .vpcs()
        .iter()
        .filter(|v| v.is_default() != Some(true))
        .filter_map(|v| v.vpc_id().map(str::to_string))
        .collect();
    let in_vpcs = || vec![aws_sdk_ec2::types::Filter::builder().name("vpc-id").set_values(Some(vpcs.clone())).build()];
    let (mut subnets, mut groups, mut route_tables) = (0, 0, 0);
    if !vpcs.is_empty() {
        subnets = ec2.describe_subnets().set_filters(Some(in_vpcs())).send().await.expect("subnets").subnets().len();
        groups = ec2.describe_security_groups().set_filters(Some(in_vpcs())).send().await.expect("groups").security_groups().len();
        route_tables = ec2.describe_route_tables().set_filters(Some(in_vpcs())).send().await.expect("route tables").route_tables().len();
    }
    let igws = ec2.describe_internet_gateways().send().await.expect("igws").internet_gateways().len();
    let eips = ec2.describe_addresses().send().await.expect("eips").addresses().len();
    let nats = ec2.describe_nat_gateways().send().await.expect("nats");
    let nats = nats.nat_gateways().iter().filter(|n| !matches!(n.state().map(|s| s.as_str()), Some("deleted" | "deleting"))).count();
    let endpoints = ec2.describe_vpc_endpoints().send().await.expect("endpoints").vpc_endpoints().len();
    let flow_logs = ec2.describe_flow_logs().send().await.expect("flow logs").flow_logs().len();
    let acls = ec2.describe_network_acls().send().await.expect("network ACLs");
    let acls = acls.network_acls().iter().filter(|a| a.is_default() != Some(true)).count();
    let queues = aws_sdk_sqs::Client::new(&config).list_queues().send().await.expect("queues").queue_urls().len();
    let tables = aws_sdk_dynamodb::Client::new(&config).list_tables().send().await.expect("tables").table_names().len();
    let cache = aws_sdk_elasticache::Client::new(&config);
    let redis = cache.describe_replication_groups().send().await.expect("replication groups").replication_groups().len();
    let cache_subnets = cache.describe_cache_subnet_groups().send().await.expect("cache subnet groups").cache_subnet_groups().len();
    let cognito = aws_sdk_cognitoidentityprovider::Client::new(&config);
    let pools: Vec<String> =
        cognito.list_user_pools().max_results(60).send().await.expect("pools").user_pools().iter().filter_map(|p| p.id().map(str::to_string)).collect();
    let (mut user_groups, mut app_clients) = (0, 0);
    for pool in &pools {
        user_groups += cognito.list_groups().user_pool_id(pool).send().await.expect("groups").groups().len();
        app_clients += cognito.list_user_pool_clients().user_pool_id(pool).max_results(60).send().await.expect("clients").user_pool_clients().len();
    }
    let ecs = aws_sdk_ecs::Client::new(&config);
    let clusters = ecs.list_clusters().send().await.expect("clusters").cluster_arns().to_vec();
    let mut services = 0;
    for cluster in &clusters {
        services += ecs.list_services().cluster(cluster).send().await.expect("services").service_arns().len();
    }
    let revisions = ecs.list_task_definitions().send().await.expect("task definitions").task_definition_arns().len();
    let log_groups = aws_sdk_cloudwatchlogs::Client::new(&config).describe_log_groups().send().await.expect("log groups").log_groups().len();
    let iam = aws_sdk_iam::Client::new(&config);
    let roles = iam.list_roles().send().await.expect("roles").roles().len();
    let role_policies = iam.get_account_authorization_details().send().await.expect("authorization details");
    let role_policies: usize = role_policies.role_detail_list().iter().map(|r| r.role_policy_list().len()).sum();
    let profiles = iam.list_instance_profiles().send().await.expect("instance profiles").instance_profiles().len();
    let templates = ec2.describe_launch_templates().send().await.expect("launch templates");
    let template_versions: i64 = templates.launch_templates().iter().filter_map(|t| t.latest_version_number()).sum();
    let auto_scaling_groups =
        aws_sdk_autoscaling::Client::new(&config).describe_auto_scaling_groups().send().await.expect("groups").auto_scaling_groups().len();
    let scaling = aws_sdk_applicationautoscaling::Client::new(&config);
    let ecs_namespace = aws_sdk_applicationautoscaling::types::ServiceNamespace::Ecs;
    let targets = scaling.describe_scalable_targets().service_namespace(ecs_namespace.clone()).send().await.expect("targets").scalable_targets().len();
    let policies = scaling.describe_scaling_policies().service_namespace(ecs_namespace).send().await.expect("policies").scaling_policies().len();
    let kms = aws_sdk_kms::Client::new(&config);
    let listed_aliases = kms.list_aliases().send().await.expect("aliases");
    // The emulator makes the AWS-managed keys (aws/dynamodb, aws/ebs) as customer keys, on first use.
    // Two requests racing to make the same one (Auto Scaling launching encrypted volumes for two
    // groups at once) leave a second, untagged key behind without the alias: it is known by
    // moto's description for these keys, and is not the operator's (whose keys are tagged at creation).
    let aws_managed: Vec<&str> =
        listed_aliases.aliases().iter().filter(|a| a.alias_name().unwrap_or_default().starts_with("alias/aws/")).filter_map(|a| a.target_key_id()).collect();
    let aliases = listed_aliases.aliases().len() - aws_managed.len();
    let mut keys = 0;
    for key in kms.list_keys().send().await.expect("keys").keys().iter().filter(|k| !aws_managed.contains(&k.key_id().unwrap_or_default())) {
        let described = kms.describe_key().key_id(key.key_id().unwrap_or_default()).send().await.expect("key");
        let meta = described.key_metadata();
        let emulators_default = meta.and_then(|m| m.description()).is_some_and(|d| d.starts_with("Default master key that protects my "));
        let customer = meta.and_then(|m| m.key_manager()).map(|m| m.as_str()) == Some("CUSTOMER") && !emulators_default;
        keys += usize::from(customer && meta.and_then(|m| m.key_state()).map(|s| s.as_str()) != Some("PendingDeletion"));
    }
    let secrets = aws_sdk_secretsmanager::Client::new(&config).list_secrets().send().await.expect("secrets").secret_list().len();
    let sns = aws_sdk_sns::Client::new(&config);
    let topics = sns.list_topics().send().await.expect("topics").topics().len();
    let subscriptions = sns.list_subscriptions().send().await.expect("subscriptions").subscriptions().len();
    // Target-tracking policies' own alarms are counted with the policies (the
    // emulator makes new ones each time a policy is put again, where AWS updates them).
    let alarms = aws_sdk_cloudwatch::Client::new(&config).describe_alarms().send().await.expect("alarms");
    let alarms = alarms.metric_alarms().iter().filter(|a| !a.alarm_name().unwrap_or_default().starts_with("TargetTracking-")).count();
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&config);
    let balancers = elb.describe_load_balancers().send().await.expect("load balancers");
    let balancers: Vec<&str> = balancers.load_balancers().iter().filter_map(|l| l.load_balancer_arn()).collect();
    let target_groups = elb.describe_target_groups().send().await.expect("target groups").target_groups().len();
    let (mut listeners, mut rules) = (0, 0);
    for balancer in &balancers {
        let described = elb.describe_listeners().load_balancer_arn(*balancer).send().await.expect("listeners");
        for listener in described.listeners().iter().filter_map(|l| l.listener_arn()) {
            listeners += 1;
            let described = elb.describe_rules().listener_arn(listener).send().await.expect("rules");
            rules += described.rules().iter().filter(|r| r.is_default() != Some(true)).count();
        }
    }
    vec![
        ("vpcs", vpcs.len()),
        ("subnets", subnets),
        ("security groups", groups),
        ("route tables", route_tables),
        ("internet gateways", igws),
        ("elastic ips", eips),
        ("nat gateways", nats),
        ("vpc endpoints", endpoints),
        ("flow logs", flow_logs),
        ("network acls", acls),
        ("queues", queues),
        ("tables", tables),
        ("redis groups", redis),
        ("cache subnet groups", cache_subnets),
        ("user pools", pools.len()),
        ("user groups", user_groups),
        ("app clients", app_clients),
        ("clusters", clusters.len()),
        ("services", services),
        ("task definition revisions", revisions),
        ("log groups", log_groups),
        ("roles", roles),
        ("inline role policies", role_policies),
        ("instance profiles", profiles),
        ("launch templates", templates.launch_templates().len()),
        ("launch template versions", usize::try_from(template_versions).unwrap_or_default()),
        ("auto scaling groups", auto_scaling_groups),
        ("scalable targets", targets),
        ("scaling policies", policies),
        ("kms keys", keys),
        ("kms aliases", aliases),
        ("secrets", secrets),
        ("topics", topics),
        ("subscriptions", subscriptions),
        ("alarms", alarms),
        ("load balancers", balancers.len()),
        ("target groups", target_groups),
        ("listeners", listeners),
        ("listener rules", rules),
    ]
}

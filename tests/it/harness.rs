//! Test harness: a private moto server per test, the operator binary run
//! against it, and an independent SDK client to inject drift and check state.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A moto server on a free loopback port, killed on drop.
pub struct Moto {
    child: Child,
    /// Holds the server's request recording (moto writes it to a file, by
    /// default in the working directory, which parallel tests would share).
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

    /// Starts recording requests (clearing earlier ones).
    pub fn start_recording(&self) {
        http(&self.endpoint, "POST", "/moto-api/recorder/reset-recording");
        http(&self.endpoint, "POST", "/moto-api/recorder/start-recording");
    }

    /// Stops recording and returns the operation of every request recorded.
    pub fn stop_recording(&self) -> Vec<String> {
        http(&self.endpoint, "POST", "/moto-api/recorder/stop-recording");
        let body = http(&self.endpoint, "GET", "/moto-api/recorder/download-recording").unwrap_or_default();
        body.lines().filter(|l| !l.trim().is_empty()).map(operation_of).collect()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The AWS operation of one recorded request (JSON protocols name it in
/// X-Amz-Target, query protocols in `Action`).
fn operation_of(line: &str) -> String {
    let v: Value = serde_json::from_str(line).unwrap_or(Value::Null);
    if let Some(target) = v["headers"]["X-Amz-Target"].as_str() {
        return target.rsplit('.').next().unwrap_or(target).to_string();
    }
    let body = v["body"].as_str().unwrap_or("");
    let body = if v["body_encoded"] == true {
        use base64::Engine as _;
        String::from_utf8_lossy(&base64::engine::general_purpose::STANDARD.decode(body).unwrap_or_default()).into_owned()
    } else {
        body.to_string()
    };
    let text = format!("{} {body}", v["url"].as_str().unwrap_or(""));
    text.split(['?', '&', ' ']).find_map(|kv| kv.strip_prefix("Action=")).map(str::to_string).unwrap_or_else(|| "unknown".into())
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

/// The repository's specs with prod's Redis cut to one node: the emulator
/// always reports a single member cluster, so a two-node group would never
/// look converged there (the multi-node path is tested with mocks).
pub fn specs_for_emulator() -> tempfile::TempDir {
    let prod = std::fs::read_to_string(repo_specs().join("prod.yaml")).expect("prod.yaml");
    let prod = prod
        .replace("numCacheClusters: 2", "numCacheClusters: 1")
        .replace("automaticFailover: true", "automaticFailover: false")
        .replace("multiAz: true", "multiAz: false");
    assert!(prod.contains("numCacheClusters: 1"), "prod.yaml changed shape; update specs_for_emulator");
    specs_with(&[("prod.yaml", &prod)])
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

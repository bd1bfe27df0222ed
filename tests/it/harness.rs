//! Test harness: a private moto server per test, the operator binary run
//! against it, and an independent SDK client to inject drift and check state.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A moto server on a free loopback port, killed on drop.
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
}

impl Moto {
    /// Starts `moto_server` (or `$MOTO_SERVER`) and waits until it answers.
    pub fn start() -> Moto {
        let program = std::env::var("MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port");
            let child = Command::new(&program)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {program} (pip install 'moto[server]'): {e}"));
            let mut moto = Moto { child, endpoint: format!("http://127.0.0.1:{port}") };
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = moto.child.try_wait() {
                    break; // port taken, or moto failed: try another port
                }
                if http(&moto.endpoint, "GET", "/moto-api/data.json").is_some() {
                    return moto;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = moto.child.kill();
        }
        panic!("moto_server did not start");
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
    let text = format!("{} {}", v["url"].as_str().unwrap_or(""), v["body"].as_str().unwrap_or(""));
    text.split(['?', '&', ' '])
        .find_map(|kv| kv.strip_prefix("Action="))
        .map(str::to_string)
        .unwrap_or_else(|| "unknown".into())
}

/// Whether a recorded operation writes.
pub fn is_write(operation: &str) -> bool {
    !["Get", "List", "Describe"].iter().any(|p| operation.starts_with(p))
}

/// A minimal HTTP/1.0 request over std, so the harness needs no HTTP client crate.
fn http(endpoint: &str, method: &str, path: &str) -> Option<String> {
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

    /// The report entry of resource `id` of `kind`.
    pub fn resource(&self, kind: &str, id: &str) -> Value {
        self.json()["resources"]
            .as_array()
            .and_then(|rs| rs.iter().find(|r| r["kind"] == kind && r["id"] == id).cloned())
            .unwrap_or_else(|| panic!("no {kind} {id} in report:\n{}", self.stdout))
    }
}

/// Runs the operator binary with `args` against `endpoint`.
pub fn operator(endpoint: &str, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_sentry-operator"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("run operator");
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

/// An SDK config for an independent client against `endpoint`.
pub async fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new("testing", "testing", None, None, "test"))
        .load()
        .await
}

//! Fault injection: a loopback proxy between the operator and the emulator
//! answers a share of the requests with throttling errors (in each protocol's
//! own format), HTTP 503, a 1.5 s delay, a connection dropped before the
//! request reaches the emulator, or a reply lost after the emulator acted
//! (the case where a blind retry of CreateVpc would make a second VPC). A
//! converge of the dev and prod specs must complete through them with the
//! same result as without faults and no duplicate resource. The proxy can
//! also hang: accept requests and never answer (a stopped or black-holed
//! endpoint), for the daemon's deadline tests.

use std::io::Write;
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::harness::{account_inventory, exit_within, forward, json_args, operator, read_request, repo_specs, spawn_operator, Moto};

/// Faults injected, by type.
#[derive(Default)]
struct Injected {
    throttled: AtomicUsize,
    unavailable: AtomicUsize,
    slow: AtomicUsize,
    dropped: AtomicUsize,
    lost_replies: AtomicUsize,
    forwarded: AtomicUsize,
}

/// What the proxy does with requests it does not fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hang {
    /// Forward them.
    Nothing,
    /// Keep every connection open and never answer.
    Everything,
    /// Never answer anything but EC2 (query protocol, API version 2016-11-15).
    AllButEc2,
}

/// A loopback proxy in front of the emulator that faults or hangs requests.
pub struct FaultProxy {
    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL`.
    pub endpoint: String,
    injected: Arc<Injected>,
    hang: Arc<std::sync::Mutex<Hang>>,
}

/// A throttling error in the request's protocol.
fn throttling(request: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(request).to_ascii_lowercase();
    let (headers, body) = if text.contains("x-amz-target:") {
        (
            "Content-Type: application/x-amz-json-1.0\r\nx-amzn-ErrorType: ThrottlingException\r\n",
            r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#.to_string(),
        )
    } else if text.contains("version=2016-11-15") {
        ("Content-Type: text/xml\r\n", "<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message></Error></Errors><RequestID>fault</RequestID></Response>".to_string())
    } else {
        ("Content-Type: text/xml\r\n", "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>fault</RequestId></ErrorResponse>".to_string())
    };
    format!("HTTP/1.1 400 Bad Request\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).into_bytes()
}

impl FaultProxy {
    /// Proxies to `upstream`, faulting `percent` % of requests (seeded, so runs repeat).
    pub fn start(upstream: &str, percent: u64, seed: u64) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let upstream = upstream.trim_start_matches("http://").to_string();
        let injected = Arc::new(Injected::default());
        let state = Arc::new(AtomicU64::new(seed));
        let counts = injected.clone();
        let hang = Arc::new(std::sync::Mutex::new(Hang::Nothing));
        let hanging = hang.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (upstream, counts, state, hanging) = (upstream.clone(), counts.clone(), state.clone(), hanging.clone());
                std::thread::spawn(move || {
                    let mut client = client;
                    let Some(request) = read_request(&mut client) else { return };
                    let ec2 = String::from_utf8_lossy(&request).contains("Version=2016-11-15");
                    let mode = *hanging.lock().expect("hang mode");
                    if mode == Hang::Everything || (mode == Hang::AllButEc2 && !ec2) {
                        // Hold the connection open, never answering, until the test ends.
                        std::thread::sleep(Duration::from_secs(3600));
                        drop(client);
                        return;
                    }
                    // xorshift64: a deterministic stream of decisions.
                    let mut x = state.load(Ordering::SeqCst);
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    state.store(x, Ordering::SeqCst);
                    let roll = x % 100;
                    let mut lose_reply = false;
                    if roll < percent {
                        match roll % 5 {
                            0 => {
                                counts.throttled.fetch_add(1, Ordering::SeqCst);
                                let _ = client.write_all(&throttling(&request));
                                return;
                            }
                            1 => {
                                counts.unavailable.fetch_add(1, Ordering::SeqCst);
                                let body = "Service Unavailable";
                                let _ = client.write_all(
                                    format!("HTTP/1.1 503 Service Unavailable\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).as_bytes(),
                                );
                                return;
                            }
                            2 => {
                                counts.slow.fetch_add(1, Ordering::SeqCst);
                                std::thread::sleep(Duration::from_millis(1500));
                            }
                            3 => {
                                counts.dropped.fetch_add(1, Ordering::SeqCst);
                                return; // the connection closes without an answer
                            }
                            _ => {
                                counts.lost_replies.fetch_add(1, Ordering::SeqCst);
                                lose_reply = true;
                            }
                        }
                    }
                    counts.forwarded.fetch_add(1, Ordering::SeqCst);
                    let Some(response) = forward(&upstream, &request) else { return };
                    if !lose_reply {
                        let _ = client.write_all(&response);
                    }
                });
            }
        });
        FaultProxy { endpoint, injected, hang }
    }

    /// Switches the hang mode for requests that arrive from now on.
    pub fn set_hang(&self, mode: Hang) {
        *self.hang.lock().expect("hang mode") = mode;
    }
}

async fn converge_under_faults(env: &str, seed: u64) {
    let clean = Moto::start();
    let specs = repo_specs();
    assert_eq!(operator(&clean.endpoint, &json_args(&specs, &["reconcile", "--once", "--env", env])).code, 2);
    let expected = account_inventory(&clean).await;

    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.endpoint, 30, seed);
    let mut passes = 0;
    let mut attempts = 0u64;
    loop {
        passes += 1;
        let run = operator(&proxy.endpoint, &json_args(&specs, &["reconcile", "--once", "--env", env]));
        attempts += run.json()["calls"]["reads"].as_u64().unwrap_or(0) + run.json()["calls"]["writes"].as_u64().unwrap_or(0);
        if run.code == 0 {
            break;
        }
        for step in run.json()["resources"].as_array().into_iter().flatten().filter(|s| s["outcome"]["status"] == "failed") {
            eprintln!("{env} pass {passes}: {} {} failed: {}", step["kind"], step["id"], step["outcome"]["detail"]);
        }
        assert!(run.code == 2 || run.code == 1, "{}\n{}", run.stdout, run.stderr);
        assert!(passes < 4, "not converged after {passes} passes under faults:\n{}", run.stdout);
    }
    let i = &proxy.injected;
    let n = |c: &AtomicUsize| c.load(Ordering::SeqCst);
    let faults = n(&i.throttled) + n(&i.unavailable) + n(&i.slow) + n(&i.dropped) + n(&i.lost_replies);
    eprintln!(
        "{env} under 30% faults: converged in {passes} passes; {faults} faults injected (throttled {}, 503 {}, slow {}, dropped {}, reply lost after the write {}); {} requests reached the emulator; the operator made {attempts} attempts (retries included)",
        n(&i.throttled),
        n(&i.unavailable),
        n(&i.slow),
        n(&i.dropped),
        n(&i.lost_replies),
        n(&i.forwarded),
    );
    assert!(faults > 20, "faults were injected");
    assert_eq!(account_inventory(&moto).await, expected, "same resources as without faults, no duplicates");
    let plan = operator(&moto.endpoint, &json_args(&specs, &["plan", "--env", env]));
    assert_eq!(plan.code, 0, "in sync once the faults stop:\n{}", plan.stdout);
}

#[tokio::test]
async fn dev_converges_under_30_percent_faults() {
    converge_under_faults("dev", 0x9e37_79b9_7f4a_7c15).await;
}

#[tokio::test]
async fn prod_converges_under_30_percent_faults() {
    converge_under_faults("prod", 0x2545_f491_4f6c_dd1d).await;
}

/// Every AWS request has a deadline: against an endpoint that accepts
/// connections and never answers, `reconcile --once` fails (exit 1, naming
/// the timeout) instead of waiting forever. Without request timeouts the SDK
/// waits indefinitely and this test runs into its own 60 s limit.
#[test]
fn reconcile_once_against_a_hung_endpoint_fails_within_its_timeouts() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.endpoint, 0, 1);
    proxy.set_hang(Hang::Everything);
    let logs = tempfile::tempdir().expect("tempdir");
    let log = logs.path().join("operator.log");
    let specs = repo_specs();
    let args = ["--specs", specs.to_str().expect("utf-8"), "--attempt-timeout", "1", "--operation-timeout", "3", "reconcile", "--once", "--env", "dev"];
    let mut child = spawn_operator(&proxy.endpoint, &args, &log);
    let started = std::time::Instant::now();
    let status = exit_within(&mut child, Duration::from_secs(60), "reconcile --once against a hung endpoint");
    let output = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(output.to_lowercase().contains("timeout") || output.to_lowercase().contains("timed out"), "the error names the timeout: {output}");
    eprintln!("reconcile --once gave up on a hung endpoint after {:?}", started.elapsed());
}

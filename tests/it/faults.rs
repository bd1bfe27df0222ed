//! Fault injection: a loopback proxy between the operator and the emulator
//! answers a share of the requests with throttling errors (in each protocol's
//! own format), HTTP 503, a 1.5 s delay, a connection dropped before the
//! request reaches the emulator, or a reply lost after the emulator acted
//! (the case where a blind retry of CreateVpc would make a second VPC). A
//! converge of the dev and prod specs must complete through them with the
//! same result as without faults and no duplicate resource.

use std::io::Write;
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::harness::{account_inventory, forward, json_args, operator, read_request, specs_for_emulator, Moto};

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

struct FaultProxy {
    endpoint: String,
    injected: Arc<Injected>,
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
    fn start(upstream: &str, percent: u64, seed: u64) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let upstream = upstream.trim_start_matches("http://").to_string();
        let injected = Arc::new(Injected::default());
        let state = Arc::new(AtomicU64::new(seed));
        let counts = injected.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (upstream, counts, state) = (upstream.clone(), counts.clone(), state.clone());
                std::thread::spawn(move || {
                    let mut client = client;
                    let Some(request) = read_request(&mut client) else { return };
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
        FaultProxy { endpoint, injected }
    }
}

async fn converge_under_faults(env: &str, seed: u64) {
    let clean = Moto::start();
    let dir = specs_for_emulator();
    assert_eq!(operator(&clean.endpoint, &json_args(dir.path(), &["reconcile", "--once", "--env", env])).code, 2);
    let expected = account_inventory(&clean).await;

    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.endpoint, 30, seed);
    let mut passes = 0;
    let mut attempts = 0u64;
    loop {
        passes += 1;
        let run = operator(&proxy.endpoint, &json_args(dir.path(), &["reconcile", "--once", "--env", env]));
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
    let plan = operator(&moto.endpoint, &json_args(dir.path(), &["plan", "--env", env]));
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

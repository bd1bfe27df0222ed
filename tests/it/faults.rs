//! Fault injection: a loopback proxy between the operator and the emulator
//! answers a share of the requests with throttling errors (in each protocol's
//! own format), HTTP 503, a 1.5 s delay, or a dropped connection. A converge
//! of the dev and prod specs must complete through them with the same result
//! as without faults and no duplicate resource.
//!
//! Connections are dropped before the request reaches the emulator; a reply
//! lost after the write happened is the crash-safety case, not covered here.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_ec2::types::Filter;

use crate::harness::{json_args, operator, sdk_config, specs_for_emulator, Moto};

/// Faults injected, by type.
#[derive(Default)]
struct Injected {
    throttled: AtomicUsize,
    unavailable: AtomicUsize,
    slow: AtomicUsize,
    dropped: AtomicUsize,
    forwarded: AtomicUsize,
}

struct FaultProxy {
    endpoint: String,
    injected: Arc<Injected>,
}

/// Reads one HTTP request (head and body) from `stream`.
fn read_request(stream: &mut TcpStream) -> Option<Vec<u8>> {
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
                    if roll < percent {
                        match roll % 4 {
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
                            _ => {
                                counts.dropped.fetch_add(1, Ordering::SeqCst);
                                return; // the connection closes without an answer
                            }
                        }
                    }
                    counts.forwarded.fetch_add(1, Ordering::SeqCst);
                    let Ok(mut server) = TcpStream::connect(&upstream) else { return };
                    if server.write_all(&request).is_err() {
                        return;
                    }
                    let mut response = Vec::new();
                    let _ = server.read_to_end(&mut response);
                    let _ = client.write_all(&response);
                });
            }
        });
        FaultProxy { endpoint, injected }
    }
}

/// Counts of the resources a converge creates, read directly from the emulator.
async fn inventory(moto: &Moto, env: &str) -> Vec<(&'static str, usize)> {
    let config = sdk_config(&moto.endpoint).await;
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let mine = || vec![Filter::builder().name("tag:sentry:env").values(env).build()];
    let vpcs = ec2.describe_vpcs().set_filters(Some(mine())).send().await.expect("vpcs").vpcs().len();
    let subnets = ec2.describe_subnets().set_filters(Some(mine())).send().await.expect("subnets").subnets().len();
    let groups = ec2.describe_security_groups().set_filters(Some(mine())).send().await.expect("groups").security_groups().len();
    let tables = ec2.describe_route_tables().set_filters(Some(mine())).send().await.expect("rts").route_tables().len();
    let eips = ec2.describe_addresses().set_filters(Some(mine())).send().await.expect("eips").addresses().len();
    let nats = ec2.describe_nat_gateways().send().await.expect("nats");
    let nats = nats
        .nat_gateways()
        .iter()
        .filter(|n| n.state().map(|s| s.as_str()) == Some("available") && n.tags().iter().any(|t| t.key() == Some("sentry:env") && t.value() == Some(env)))
        .count();
    let sqs = aws_sdk_sqs::Client::new(&config);
    let queues = sqs.list_queues().send().await.expect("queues").queue_urls().len();
    let ddb = aws_sdk_dynamodb::Client::new(&config);
    let ddb_tables = ddb.list_tables().send().await.expect("tables").table_names().len();
    let cognito = aws_sdk_cognitoidentityprovider::Client::new(&config);
    let pools = cognito.list_user_pools().max_results(60).send().await.expect("pools").user_pools().len();
    let ecs = aws_sdk_ecs::Client::new(&config);
    let clusters = ecs.list_clusters().send().await.expect("clusters").cluster_arns().len();
    vec![
        ("vpcs", vpcs),
        ("subnets", subnets),
        ("security groups", groups),
        ("route tables", tables),
        ("elastic ips", eips),
        ("nat gateways", nats),
        ("queues", queues),
        ("tables", ddb_tables),
        ("user pools", pools),
        ("clusters", clusters),
    ]
}

async fn converge_under_faults(env: &str, seed: u64) {
    let clean = Moto::start();
    let dir = specs_for_emulator();
    assert_eq!(operator(&clean.endpoint, &json_args(dir.path(), &["reconcile", "--once", "--env", env])).code, 2);
    let expected = inventory(&clean, env).await;

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
        assert!(run.code == 2 || run.code == 1, "{}\n{}", run.stdout, run.stderr);
        assert!(passes < 4, "not converged after {passes} passes under faults:\n{}", run.stdout);
    }
    let i = &proxy.injected;
    let faults = i.throttled.load(Ordering::SeqCst) + i.unavailable.load(Ordering::SeqCst) + i.slow.load(Ordering::SeqCst) + i.dropped.load(Ordering::SeqCst);
    eprintln!(
        "{env} under 30% faults: converged in {passes} passes; {faults} faults injected (throttled {}, 503 {}, slow {}, dropped {}); {} requests reached the emulator; the operator made {attempts} attempts (retries included)",
        i.throttled.load(Ordering::SeqCst),
        i.unavailable.load(Ordering::SeqCst),
        i.slow.load(Ordering::SeqCst),
        i.dropped.load(Ordering::SeqCst),
        i.forwarded.load(Ordering::SeqCst),
    );
    assert!(faults > 20, "faults were injected");
    assert_eq!(inventory(&moto, env).await, expected, "same resources as without faults, no duplicates");
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

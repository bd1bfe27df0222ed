//! Crash safety: the operator is killed with SIGKILL during a from-empty
//! apply of the prod spec, then restarted, at every kind of write the apply
//! makes (each distinct operation, killed right after the emulator acted on
//! it and before the reply: the case a blind re-create would duplicate) and
//! at points spread evenly over the apply where the write never arrives. A
//! loopback proxy catches the write and tells the test to kill. After each
//! restart the estate must match a crash-free apply, counted over the whole
//! account (no duplicate, no orphan), and a further pass must make no write.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::harness::{account_inventory, forward, http, is_write, json_args, operator, read_request, repo_specs, request_operation, spawn_operator, Moto};

/// Where the operator dies relative to the write it is killed at.
#[derive(Clone, Copy, Debug)]
enum CrashPoint {
    /// The write never reaches AWS.
    BeforeWrite,
    /// AWS acts on the write; the reply never arrives.
    AfterWrite,
}

/// Which write to die at: the `nth` write request (counting from 1), or the
/// `nth` request of `operation` when one is named.
#[derive(Clone, Debug)]
struct Target {
    operation: Option<String>,
    nth: usize,
    point: CrashPoint,
}

/// A proxy that forwards everything until the target write, then reports
/// which operation that was and answers nothing more. It records the
/// operation of every write it sees.
struct CrashProxy {
    endpoint: String,
    writes: Arc<Mutex<Vec<String>>>,
    tripped: Receiver<String>,
}

impl CrashProxy {
    fn start(upstream: &str, target: Option<Target>) -> CrashProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let upstream = upstream.trim_start_matches("http://").to_string();
        let writes = Arc::new(Mutex::new(Vec::new()));
        let halted = Arc::new(AtomicBool::new(false));
        let (tx, tripped) = mpsc::channel();
        let seen = writes.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (upstream, seen, halted, tx, target) = (upstream.clone(), seen.clone(), halted.clone(), tx.clone(), target.clone());
                std::thread::spawn(move || {
                    let mut client = client;
                    let Some(request) = read_request(&mut client) else { return };
                    if halted.load(Ordering::SeqCst) {
                        return; // the process is being killed: nothing more gets through
                    }
                    let operation = request_operation(&request);
                    let crash_here = is_write(&operation) && {
                        let mut seen = seen.lock().expect("lock");
                        seen.push(operation.clone());
                        target.as_ref().is_some_and(|t| match &t.operation {
                            Some(op) => *op == operation && seen.iter().filter(|o| *o == op).count() == t.nth,
                            None => seen.len() == t.nth,
                        }) && !halted.swap(true, Ordering::SeqCst)
                    };
                    let before = target.as_ref().is_some_and(|t| matches!(t.point, CrashPoint::BeforeWrite));
                    let response = if crash_here && before { None } else { forward(&upstream, &request) };
                    if crash_here {
                        let _ = tx.send(operation);
                    } else if let Some(response) = response {
                        let _ = client.write_all(&response);
                    }
                });
            }
        });
        CrashProxy { endpoint, writes, tripped }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prod_apply_survives_kill_9_at_every_kind_of_write() {
    let moto = Moto::start();
    let specs = repo_specs();
    let args = json_args(&specs, &["reconcile", "--once", "--env", "prod"]);

    // A crash-free apply through the proxy: which writes, and what results.
    let counting = CrashProxy::start(&moto.endpoint, None);
    assert_eq!(operator(&counting.endpoint, &args).code, 2);
    let writes = counting.writes.lock().expect("lock").clone();
    let expected = account_inventory(&moto).await;
    assert!(writes.len() >= 48, "a prod apply makes many writes ({})", writes.len());

    // Every distinct write, killed after AWS acted (at its middle occurrence),
    // and 12 points spread over the apply where the write never arrives.
    let distinct: BTreeSet<&String> = writes.iter().collect();
    let mut targets: Vec<Target> = distinct
        .into_iter()
        .map(|op| Target { operation: Some(op.clone()), nth: writes.iter().filter(|o| *o == op).count().div_ceil(2), point: CrashPoint::AfterWrite })
        .collect();
    let spread = 12;
    targets.extend((0..spread).map(|p| Target { operation: None, nth: 1 + p * (writes.len() - 1) / (spread - 1), point: CrashPoint::BeforeWrite }));
    assert!(targets.len() >= 24, "{} crash points", targets.len());

    let log_dir = tempfile::tempdir().expect("tempdir");
    let mut killed_at = Vec::new();
    for (p, target) in targets.iter().enumerate() {
        http(&moto.endpoint, "POST", "/moto-api/reset").expect("reset the emulator");
        let proxy = CrashProxy::start(&moto.endpoint, Some(target.clone()));
        let log = log_dir.path().join(format!("crash-{p}.log"));
        let mut child = spawn_operator(&proxy.endpoint, &args, &log);
        let deadline = Instant::now() + Duration::from_secs(120);
        let operation = loop {
            if let Ok(operation) = proxy.tripped.try_recv() {
                break operation;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("the operator exited ({status}) before {target:?}:\n{}", std::fs::read_to_string(&log).unwrap_or_default());
            }
            assert!(Instant::now() < deadline, "{target:?} never came");
            std::thread::sleep(Duration::from_millis(5));
        };
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        let at = format!("{operation} #{} of the apply ({:?})", proxy.writes.lock().expect("lock").len(), target.point);

        let restart = operator(&moto.endpoint, &args);
        assert!(matches!(restart.code, 0 | 2), "restart after a kill at {at} failed:\n{}\n{}", restart.stdout, restart.stderr);
        let again = operator(&moto.endpoint, &args);
        assert_eq!(again.code, 0, "not converged after a kill at {at} and one restart:\n{}", again.stdout);
        assert_eq!(again.json()["calls"]["writes"], 0, "writes after convergence (kill at {at})");
        assert_eq!(account_inventory(&moto).await, expected, "kill at {at}: duplicates or orphans");
        killed_at.push(at);
    }
    eprintln!("prod apply ({} writes) killed and restarted at {} points: {}", writes.len(), killed_at.len(), killed_at.join("; "));
}

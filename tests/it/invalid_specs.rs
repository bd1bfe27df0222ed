//! The invalid-spec corpus (tests/fixtures/invalid): each file is used as
//! `dev.yaml` (over the repository's base.yaml unless it says `# base: none`)
//! and must be rejected with exactly the errors its `# expect:` lines name,
//! exit 1, and make no AWS call at all.

use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::harness::{exit_within, operator, repo_specs, spec_dir};

/// A loopback listener that counts every connection: any AWS call would open one.
struct CallTrap {
    endpoint: String,
    connections: Arc<AtomicUsize>,
}

impl CallTrap {
    fn start() -> CallTrap {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let connections = Arc::new(AtomicUsize::new(0));
        let seen = connections.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                seen.fetch_add(1, Ordering::SeqCst);
                let mut stream = stream;
                let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
                let _ = stream.read(&mut [0u8; 1024]);
            }
        });
        CallTrap { endpoint, connections }
    }
}

#[test]
fn every_invalid_spec_is_rejected_with_its_errors_and_no_aws_call() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/invalid");
    let base = std::fs::read_to_string(repo_specs().join("base.yaml")).expect("base.yaml");
    let trap = CallTrap::start();
    let mut cases = 0;
    let mut entries: Vec<_> = std::fs::read_dir(&corpus).expect("corpus").flatten().map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        let text = std::fs::read_to_string(&path).expect("fixture");
        let expected: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("# expect: ")).collect();
        assert!(!expected.is_empty(), "{name} has no `# expect:` line");
        let files: Vec<(&str, &str)> =
            if text.lines().any(|l| l == "# base: none") { vec![("dev.yaml", &text)] } else { vec![("base.yaml", &base), ("dev.yaml", &text)] };
        let dir = spec_dir(&files);
        let prefix = format!("{}/", dir.path().display());

        for command in [&["plan", "--env", "dev"][..], &["reconcile", "--once", "--env", "dev"][..], &["validate", "--env", "dev"][..]] {
            let mut args = vec!["--specs", dir.path().to_str().expect("utf-8")];
            args.extend_from_slice(command);
            let run = operator(&trap.endpoint, &args);
            assert_eq!(run.code, 1, "{name}: `{}` must exit 1\n{}", command[0], run.stderr);
            let stderr = run.stderr.replace(&prefix, "");
            let reported: Vec<&str> = stderr.lines().filter(|l| l.contains(": ") && !l.starts_with("spec for") && !l.starts_with("dev: ")).collect();
            for e in &expected {
                assert!(reported.iter().any(|r| r.ends_with(e)), "{name}: expected error\n  {e}\nnot in\n{stderr}");
            }
            assert_eq!(reported.len(), expected.len(), "{name}: every error, and only those, is reported:\n{stderr}");
            assert!(!stderr.contains("panicked"), "{name}: {stderr}");
        }
        cases += 1;
    }
    assert!(cases >= 20, "the corpus holds {cases} cases");
    assert_eq!(trap.connections.load(Ordering::SeqCst), 0, "an invalid spec made an AWS call");
}

/// Runs the operator with `args` and no AWS endpoint, killing it (and failing) after 30 s.
fn operator_within_30s(args: &[&str]) -> (i32, String) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sentry-operator"))
        .args(args)
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn operator");
    let status = exit_within(&mut child, Duration::from_secs(30), &format!("`{}` (a spec file blocked the loader)", args.join(" ")));
    let mut stderr = String::new();
    child.stderr.take().expect("stderr").read_to_string(&mut stderr).expect("read stderr");
    (status.code().unwrap_or(-1), stderr)
}

#[test]
fn spec_files_that_never_end_are_refused_not_read_forever() {
    let base = std::fs::read_to_string(repo_specs().join("base.yaml")).expect("base.yaml");
    let dir = spec_dir(&[("base.yaml", &base), ("staging.yaml", "")]);
    std::os::unix::fs::symlink("/dev/zero", dir.path().join("dev.yaml")).expect("symlink");
    let fifo = dir.path().join("prod.yaml");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo").success());
    let specs = dir.path().to_str().expect("utf-8");
    let dev = format!("{specs}/dev.yaml:1:1: a character device, not a regular file; a spec must be a regular file");
    let prod = format!("{specs}/prod.yaml:1:1: a named pipe (FIFO), not a regular file; a spec must be a regular file");

    let (code, stderr) = operator_within_30s(&["--specs", specs, "validate"]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(stderr.lines().collect::<Vec<_>>(), vec![dev.as_str(), "dev: 1 error", prod.as_str(), "prod: 1 error"], "staging is valid");
    for env in ["dev", "prod"] {
        for command in [&["validate", "--env", env][..], &["plan", "--env", env][..]] {
            let mut args = vec!["--specs", specs];
            args.extend_from_slice(command);
            let (code, stderr) = operator_within_30s(&args);
            assert_eq!(code, 1, "{}: {stderr}", args.join(" "));
            assert!(stderr.contains(if env == "dev" { &dev } else { &prod }), "{stderr}");
        }
    }
}

#[test]
fn repository_specs_are_valid() {
    let specs = repo_specs();
    let run = operator("http://127.0.0.1:9", &["--specs", specs.to_str().expect("utf-8"), "validate"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout, "dev: valid\nprod: valid\nstaging: valid\n");
}

#[test]
fn schema_describes_every_section() {
    let run = operator("http://127.0.0.1:9", &["schema"]);
    assert_eq!(run.code, 0);
    let schema = run.json();
    for section in ["region", "network", "messaging", "data", "compute", "identity", "observability"] {
        assert!(schema["properties"].get(section).is_some(), "schema lacks {section}");
    }
    assert_eq!(schema["additionalProperties"], false, "unknown top-level keys are rejected by editors too");
}

#[test]
fn unknown_environment_is_a_clear_error() {
    let specs = repo_specs();
    let run = operator("http://127.0.0.1:9", &["--specs", specs.to_str().expect("utf-8"), "plan", "--env", "qa"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("no spec for environment \"qa\"") && run.stderr.contains("dev, prod, staging"), "{}", run.stderr);
}

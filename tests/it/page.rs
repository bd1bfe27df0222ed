//! What people look at: the daemon's status page rendered by a real browser
//! (headless Chromium) with a hostile tag value in it, `/api/status`'s
//! schema, and `graph` against the emulator, checked by Mermaid's own parser
//! and by Graphviz.
//!
//! Chromium (Debian's `chromium`), Mermaid (npm's `mermaid`, its
//! `dist/mermaid.min.js` named by `SENTRY_MERMAID_JS`) and Graphviz's `dot`
//! are installed by `.ci/run`, which sets `SENTRY_BROWSER_TESTS=1`: then a
//! missing tool fails the test. Elsewhere a test whose tool is missing says
//! so and stops early.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::daemon::Daemon;
use crate::harness::{operator, sdk_config, specs_with, Moto};

/// A tag value that would run if the page did not escape it.
const HOSTILE: &str = "<script>document.title='pwned'</script>";

/// The tool at `path` (or named by the variable `var`), if present; fails
/// when `.ci/run` asked for the browser tests and it is missing.
fn tool(var: &str, default: &str) -> Option<PathBuf> {
    let path = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| PathBuf::from(default));
    if path.exists() {
        return Some(path);
    }
    assert!(std::env::var_os("SENTRY_BROWSER_TESTS").is_none(), "SENTRY_BROWSER_TESTS is set but {} is missing (${var})", path.display());
    eprintln!("skipped: {} is not installed (.ci/run installs it)", path.display());
    None
}

/// Runs headless Chromium with `args` (a fresh profile, no network of its own), at most 90 s.
fn chromium(browser: &Path, profile: &Path, args: &[&str]) -> String {
    let out = Command::new("timeout")
        .arg("90")
        .arg(browser)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking"])
        .args(["--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .expect("run chromium");
    assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The dev spec, with master-order's drift reported only (so that drift stays open on the page).
fn alert_only_specs() -> tempfile::TempDir {
    let dev = std::fs::read_to_string(crate::harness::repo_specs().join("dev.yaml")).expect("dev.yaml");
    specs_with(&[("dev.yaml", &format!("{dev}\npolicies:\n  sqs.queue/master-order: alert\n"))])
}

/// Dev's whitelist addresses, read by an independent client.
async fn whitelist_addresses(config: &aws_config::SdkConfig) -> Vec<String> {
    let addresses: Vec<String> = aws_sdk_ec2::Client::new(config)
        .describe_addresses()
        .filters(aws_sdk_ec2::types::Filter::builder().name("tag:sentry:env").values("dev").build())
        .send()
        .await
        .expect("DescribeAddresses")
        .addresses()
        .iter()
        .filter_map(|a| a.public_ip().map(str::to_string))
        .collect();
    assert_eq!(addresses.len(), 2, "dev's whitelist");
    addresses
}

/// The URL of dev's master-order queue.
async fn master_order(sqs: &aws_sdk_sqs::Client) -> String {
    let queues = sqs.list_queues().queue_name_prefix("sentry-master-order-dev").send().await.expect("ListQueues");
    queues.queue_urls().iter().find(|u| !u.contains("dlq")).cloned().expect("master-order exists")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_status_page_shows_each_environment_its_whitelist_and_open_drift_in_a_real_browser_escaped() {
    let Some(browser) = tool("CHROMIUM", "/usr/bin/chromium") else { return };
    let (moto, _) = Moto::built("dev");
    let specs = alert_only_specs();
    let config = sdk_config(&moto.endpoint).await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let queue = master_order(&sqs).await;
    sqs.tag_queue().queue_url(&queue).tags("Project", HOSTILE).send().await.expect("TagQueue");
    let addresses = whitelist_addresses(&config).await;

    let daemon = Daemon::start(&moto, specs.path(), &["--single-replica"]);
    daemon.wait_until("the open drift and the whitelist in /api/status", Duration::from_secs(120), |d| {
        let status: Value = d.get("/api/status").and_then(|s| serde_json::from_str(&s).ok()).unwrap_or_default();
        let env = &status["environments"][0];
        env["openDrift"].as_array().is_some_and(|d| d.iter().any(|d| d["resource"] == "sqs.queue master-order"))
            && env["whitelist"].as_array().is_some_and(|w| w.len() == 2)
    });

    // /api/status: its documented schema (a query string is ignored).
    let status: Value = serde_json::from_str(&daemon.get("/api/status?from=browser").expect("/api/status")).expect("JSON");
    assert_eq!(status["schema"], 1);
    assert!(status["generatedAt"].as_str().is_some_and(|t| t.ends_with('Z')));
    let env = &status["environments"][0];
    let keys = |v: &Value| {
        let mut keys: Vec<String> = v.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
        keys.sort();
        keys
    };
    assert_eq!(
        keys(env),
        ["env", "lastFullPass", "lastPass", "leader", "openDrift", "recentAlerts", "recentRepairs", "stale", "staleSpec", "whitelist"],
        "{env:#}"
    );
    assert_eq!(env["env"], "dev");
    assert_eq!(env["leader"]["thisReplica"], true);
    assert_eq!(keys(&env["lastPass"]), ["at", "calls", "durationMs", "mode", "narrowed", "result", "scope", "summary"]);
    assert!(env["lastPass"]["calls"]["reads"].as_u64().is_some_and(|n| n > 0));
    let drift = env["openDrift"].as_array().and_then(|d| d.iter().find(|d| d["resource"] == "sqs.queue master-order")).expect("open drift");
    assert_eq!(keys(drift), ["action", "cause", "changes", "failed", "id", "kind", "name", "note", "resource", "since"]);
    assert_eq!(drift["action"], "alert");
    assert_eq!(drift["changes"][0]["field"], "tags.Project");
    assert_eq!(drift["changes"][0]["live"], HOSTILE);
    assert_eq!(drift["cause"], Value::Null, "no event announced it");
    let whitelist = env["whitelist"].as_array().expect("whitelist");
    for w in whitelist {
        assert_eq!(keys(w), ["address", "at", "attachedTo", "entry", "message", "state"]);
        assert_eq!(w["state"], "OK", "{w}");
    }
    let mut listed: Vec<String> = whitelist.iter().filter_map(|w| w["address"].as_str().map(str::to_string)).collect();
    listed.sort();
    let mut expected = addresses.clone();
    expected.sort();
    assert_eq!(listed, expected, "each pool entry with its live address");

    // The page, as a browser builds it.
    let profile = tempfile::tempdir().expect("profile");
    let url = format!("{}/", daemon.http());
    let dom = chromium(&browser, profile.path(), &["--dump-dom", &url]);
    assert!(dom.contains("data-env=\"dev\""), "the environment: {dom}");
    for address in &addresses {
        assert!(dom.contains(address.as_str()), "whitelist address {address} on the page");
    }
    assert!(dom.contains("sqs.queue master-order") && dom.contains("tags.Project"), "the open drift");
    assert!(dom.contains("&lt;script&gt;document.title='pwned'&lt;/script&gt;"), "the hostile value shown as text");
    assert!(!dom.contains("<script"), "no script element made it into the DOM");
    assert!(dom.contains("<title>sentry-operator status</title>"), "nothing ran to change the title");
    let shot = profile.path().join("status.png");
    chromium(&browser, profile.path(), &["--window-size=1280,1800", &format!("--screenshot={}", shot.display()), &url]);
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "a real screenshot ({} bytes)", png.len());
    eprintln!("status page screenshot: {} ({} bytes)", shot.display(), png.len());
    if let Some(keep) = std::env::var_os("SENTRY_KEEP_SCREENSHOT") {
        std::fs::copy(&shot, keep).expect("copy the screenshot where SENTRY_KEEP_SCREENSHOT says");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn graph_shows_live_status_and_parses_as_mermaid_and_graphviz() {
    let (moto, specs) = Moto::built("dev");
    let config = sdk_config(&moto.endpoint).await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let queue = master_order(&sqs).await;
    sqs.set_queue_attributes().queue_url(&queue).attributes(aws_sdk_sqs::types::QueueAttributeName::DelaySeconds, "7").send().await.expect("drift");
    let dir = specs.to_str().expect("utf-8");
    let live = operator(&moto.endpoint, &["--specs", dir, "graph", "--env", "dev"]);
    assert_eq!(live.code, 0, "{}", live.stderr);
    let class_of = |text: &str, id: &str| {
        text.lines()
            .filter(|l| l.starts_with("  class "))
            .find(|l| l.split(' ').nth(3).is_some_and(|m| m.split(',').any(|n| n == id)))
            .map(|l| l.rsplit(' ').next().unwrap_or_default().to_string())
    };
    assert_eq!(class_of(&live.stdout, "sqs_queue__master_order").as_deref(), Some("drift"), "{}", live.stdout);
    assert_eq!(class_of(&live.stdout, "sqs_queue__master_order_dlq").as_deref(), Some("inSync"));
    assert_eq!(class_of(&live.stdout, "ec2_vpc__vpc").as_deref(), Some("inSync"));
    assert!(live.stdout.contains("drift: DelaySeconds"));
    // The whole live graph, its addresses (the emulator's, new each run) redacted.
    let addresses = whitelist_addresses(&config).await;
    assert!(addresses.iter().all(|a| live.stdout.contains(a.as_str())), "each whitelist address on its EIP");
    let redacted = addresses.iter().fold(live.stdout.clone(), |text, a| text.replace(a.as_str(), "<address>"));
    insta::assert_snapshot!("dev_live_after_a_queue_drifted", redacted);
    let offline = operator(&moto.endpoint, &["--specs", dir, "graph", "--env", "prod", "--offline"]);
    assert_eq!(offline.code, 0, "{}", offline.stderr);
    assert!(!offline.stdout.contains("classDef"), "no status offline");
    let dot = operator(&moto.endpoint, &["--specs", dir, "graph", "--env", "dev", "--format", "dot"]);
    assert_eq!(dot.code, 0, "{}", dot.stderr);

    if let Some(graphviz) = tool("GRAPHVIZ_DOT", "/usr/bin/dot") {
        let scratch = tempfile::tempdir().expect("tempdir");
        let file = scratch.path().join("dev.dot");
        std::fs::write(&file, &dot.stdout).expect("write");
        let svg = Command::new(graphviz).arg("-Tsvg").arg(&file).output().expect("run dot");
        assert!(svg.status.success() && String::from_utf8_lossy(&svg.stdout).contains("<svg"), "dot: {}", String::from_utf8_lossy(&svg.stderr));
    }

    let (Some(browser), Some(mermaid)) = (tool("CHROMIUM", "/usr/bin/chromium"), tool("SENTRY_MERMAID_JS", "/nonexistent/mermaid.min.js")) else { return };
    // Mermaid's own parser and renderer, in the browser, over both graphs.
    let scratch = tempfile::tempdir().expect("tempdir");
    let graphs = serde_json::to_string(&[&live.stdout, &offline.stdout]).expect("json");
    let page = format!(
        "<!DOCTYPE html><html><body><pre id=\"result\">pending</pre><script src=\"file://{}\"></script><script>\
         mermaid.initialize({{ startOnLoad: false }});\
         (async () => {{ const out = []; let i = 0;\
           for (const g of {graphs}) {{ try {{ await mermaid.parse(g); const r = await mermaid.render('g' + (i++), g); out.push(r.svg.includes('<svg') ? 'rendered' : 'empty'); }}\
             catch (e) {{ out.push('error: ' + (e && e.message ? e.message : e)); }} }}\
           document.getElementById('result').textContent = out.join(' | '); }})();</script></body></html>",
        mermaid.display()
    );
    let file = scratch.path().join("parse.html");
    std::fs::write(&file, page).expect("write");
    let dom = chromium(
        &browser,
        scratch.path(),
        &["--allow-file-access-from-files", "--virtual-time-budget=30000", "--dump-dom", &format!("file://{}", file.display())],
    );
    let result = dom.split("<pre id=\"result\">").nth(1).and_then(|r| r.split("</pre>").next()).unwrap_or_default();
    assert_eq!(result, "rendered | rendered", "Mermaid parsed and rendered both graphs");
}

#[test]
fn the_plans_summary_is_coloured_on_a_terminal_and_never_with_no_color_or_off_one() {
    let Some(script) = tool("SCRIPT", "/usr/bin/script") else { return };
    let moto = Moto::start();
    let specs = crate::harness::repo_specs();
    let command = format!("{} --specs {} plan --env dev", env!("CARGO_BIN_EXE_sentry-operator"), specs.display());
    // `script` runs the plan on a pseudo-terminal, as a person at a terminal would.
    let on_a_terminal = |extra: &[(&str, &str)]| {
        let out = Command::new(&script)
            .args(["-qec", &command, "/dev/null"])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AWS_ENDPOINT_URL", &moto.endpoint)
            .envs([("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"), ("AWS_REGION", "us-east-1"), ("AWS_EC2_METADATA_DISABLED", "true")])
            .envs(extra.iter().copied())
            .output()
            .expect("run script");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let coloured = on_a_terminal(&[]);
    assert!(coloured.contains("Summary") && coloured.contains("Layer 1: Networking"), "{coloured}");
    assert!(coloured.contains("\x1b[32m"), "creates in green on a terminal: {coloured}");
    let no_color = on_a_terminal(&[("NO_COLOR", "1")]);
    assert!(no_color.contains("Summary") && !no_color.contains('\x1b'), "NO_COLOR: {no_color}");
    let piped = operator(&moto.endpoint, &["--specs", specs.to_str().expect("utf-8"), "plan", "--env", "dev"]);
    assert!(piped.stdout.contains("Summary") && !piped.stdout.contains('\x1b'), "off a terminal: {}", piped.stdout);
    let json = operator(&moto.endpoint, &["--specs", specs.to_str().expect("utf-8"), "--output", "json", "plan", "--env", "dev"]);
    assert!(json.stdout.trim_start().starts_with('{') && !json.stdout.contains("Summary"), "the JSON has no table");
}

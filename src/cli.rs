//! The command line: `validate`, `schema`, `plan`, `reconcile --once`, `run`.
//! Each subcommand is one function returning the process exit status.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand, ValueEnum};

use crate::aws::{load_config, CallCounter};
use crate::engine::apply::{reconcile, Mode, RetryPolicy};
use crate::engine::report::{Report, EXIT_ERROR, EXIT_IN_SYNC};
use crate::kinds;
use crate::spec::{self, EnvSpec, LoadError};

/// Keeps the Sentry trading platform's AWS estate converged with its YAML spec.
#[derive(Debug, Parser)]
#[command(name = "sentry-operator", version, about)]
pub struct Cli {
    /// Directory holding base.yaml and one <env>.yaml per environment.
    #[arg(long, global = true, default_value = "specs", env = "SENTRY_SPECS")]
    pub specs: PathBuf,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// AWS region (overrides the spec's region and the AWS config chain).
    #[arg(long, global = true)]
    pub region: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Human-readable.
    Text,
    /// A stable JSON document.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check specs without calling AWS (all environments unless --env). Exit 0 valid, 1 invalid.
    Validate {
        /// Only this environment.
        #[arg(long)]
        env: Option<String>,
    },
    /// Print the JSON Schema of a spec file (for editors).
    Schema,
    /// Show what reconcile would change. Exit 0 in sync, 2 changes pending, 1 error.
    Plan {
        /// Environment.
        #[arg(long)]
        env: String,
    },
    /// Converge the estate once. Exit 0 in sync (no writes), 2 drift repaired, 1 error, 3 invariant broken.
    Reconcile {
        /// Run one pass and exit (the only mode of this subcommand; `run` is the daemon).
        #[arg(long)]
        once: bool,
        /// Environment.
        #[arg(long)]
        env: String,
    },
    /// Reconcile continuously on an interval (the daemon).
    Run {
        /// Environment.
        #[arg(long)]
        env: String,
        /// Seconds between passes (jittered by up to 10%).
        #[arg(long, default_value_t = 60)]
        interval: u64,
    },
}

/// Runs the parsed command line; returns the process exit status.
pub async fn run(cli: Cli) -> anyhow::Result<u8> {
    match &cli.command {
        Command::Validate { env } => validate(&cli, env.as_deref()),
        Command::Schema => {
            println!("{}", serde_json::to_string_pretty(&spec::json_schema())?);
            Ok(EXIT_IN_SYNC)
        }
        Command::Plan { env } => pass(&cli, env, Mode::Plan).await,
        Command::Reconcile { once, env } => {
            if !once {
                bail!("reconcile needs --once (use `run` for the long-running daemon)");
            }
            pass(&cli, env, Mode::Apply).await
        }
        Command::Run { env, interval } => daemon(&cli, env, Duration::from_secs((*interval).max(1))).await,
    }
}

fn validate(cli: &Cli, env: Option<&str>) -> anyhow::Result<u8> {
    let envs = match env {
        Some(e) => vec![e.to_string()],
        None => spec::environments(&cli.specs)?,
    };
    if envs.is_empty() {
        bail!("no environment specs (*.yaml besides base.yaml) in {}", cli.specs.display());
    }
    let mut results = Vec::new();
    let mut ok = true;
    for env in &envs {
        let errors: Vec<String> = match spec::load(&cli.specs, env) {
            Ok(_) => Vec::new(),
            Err(LoadError::Invalid(errors)) => errors.iter().map(ToString::to_string).collect(),
            Err(e) => vec![e.to_string()],
        };
        ok &= errors.is_empty();
        results.push(serde_json::json!({ "env": env, "valid": errors.is_empty(), "errors": errors }));
    }
    match cli.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "environments": results }))?),
        Output::Text => {
            for r in &results {
                let env = r["env"].as_str().unwrap_or_default();
                let errors = r["errors"].as_array().cloned().unwrap_or_default();
                if errors.is_empty() {
                    println!("{env}: valid");
                } else {
                    for e in &errors {
                        eprintln!("{}", e.as_str().unwrap_or_default());
                    }
                    eprintln!("{env}: {} error{}", errors.len(), if errors.len() == 1 { "" } else { "s" });
                }
            }
        }
    }
    Ok(if ok { EXIT_IN_SYNC } else { EXIT_ERROR })
}

/// Loads a spec, printing every error; `None` when it is invalid.
fn load_or_report(dir: &Path, env: &str, output: Output) -> anyhow::Result<Option<EnvSpec>> {
    match spec::load(dir, env) {
        Ok(s) => Ok(Some(s)),
        Err(LoadError::Invalid(errors)) => {
            let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "env": env, "valid": false, "errors": lines }))?),
                Output::Text => {
                    for l in &lines {
                        eprintln!("{l}");
                    }
                    eprintln!("spec for {env} is invalid ({} errors); nothing was applied", lines.len());
                }
            }
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

async fn one_pass(cli: &Cli, env: &EnvSpec, mode: Mode) -> Report {
    let region = cli.region.clone().or_else(|| env.spec.region.clone());
    let config = load_config(region).await;
    let counter = CallCounter::default();
    let registry = kinds::registry(&config, &counter);
    reconcile(env, &registry, &counter, mode, &RetryPolicy::default()).await
}

fn print_report(report: &Report, output: Output) -> anyhow::Result<()> {
    match output {
        Output::Text => print!("{}", report.to_text()),
        Output::Json => println!("{}", serde_json::to_string_pretty(report).context("rendering the report")?),
    }
    Ok(())
}

async fn pass(cli: &Cli, env: &str, mode: Mode) -> anyhow::Result<u8> {
    let Some(env) = load_or_report(&cli.specs, env, cli.output)? else { return Ok(EXIT_ERROR) };
    let report = one_pass(cli, &env, mode).await;
    print_report(&report, cli.output)?;
    Ok(report.exit_code())
}

/// Reconciles every `interval` (with jitter) until SIGINT / SIGTERM. An
/// invalid spec is never applied: the last valid one is kept.
async fn daemon(cli: &Cli, env: &str, interval: Duration) -> anyhow::Result<u8> {
    let mut last_valid: Option<EnvSpec> = None;
    let mut shutdown = Box::pin(shutdown_signal());
    loop {
        match spec::load(&cli.specs, env) {
            Ok(s) => last_valid = Some(s),
            Err(e) => tracing::error!(error = %e, "spec invalid; keeping the last valid spec"),
        }
        if let Some(spec) = &last_valid {
            let report = tokio::select! {
                r = one_pass(cli, spec, Mode::Apply) => r,
                _ = &mut shutdown => return Ok(EXIT_IN_SYNC),
            };
            let s = &report.summary;
            tracing::info!(
                env = %report.env, created = s.create, updated = s.update, deleted = s.delete, unchanged = s.unchanged,
                failed = s.failed, reads = report.calls.reads, writes = report.calls.writes, ms = report.duration_ms, "pass done"
            );
            for e in &report.errors {
                tracing::error!(env = %report.env, error = %e, "pass error");
            }
        }
        let jitter = interval.mul_f64(0.1 * jitter_fraction());
        tokio::select! {
            _ = tokio::time::sleep(interval + jitter) => {}
            _ = &mut shutdown => return Ok(EXIT_IN_SYNC),
        }
    }
}

/// A number in [0, 1) that differs between passes and replicas.
fn jitter_fraction() -> f64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    f64::from((nanos ^ std::process::id()) % 1000) / 1000.0
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

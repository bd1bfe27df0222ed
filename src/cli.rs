//! The command line: `validate`, `schema`, `plan`, `reconcile --once`, `status`, `graph`, `import`, `run`.
//! Each subcommand is one function returning the process exit status.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand, ValueEnum};

use crate::aws::{load_config, CallCounter, Timeouts};
use crate::daemon;
use crate::engine::apply::Narrowing;
use crate::engine::report::{Report, EXIT_ERROR, EXIT_IN_SYNC, EXIT_LEASE_HELD, EXIT_REVISION_NOT_APPLIED, EXIT_STALE_SPEC};
use crate::engine::Mode;
use crate::graph::Graph;
use crate::kinds::read::TagReads;
use crate::lease::once::{under_lease, Once};
use crate::lease::revision::{check_label, Revision};
use crate::lease::{LeaseTable, Writer};
use crate::runtime::Runtime;
use crate::source::{Location, Snapshot, Source};
use crate::spec::{self, EnvSpec, LoadError};

/// Keeps the Sentry trading platform's AWS estate converged with its YAML spec.
#[derive(Debug, Parser)]
#[command(name = "sentry-operator", version, about)]
pub struct Cli {
    /// Where the specs are: a directory, or an S3 prefix (s3://bucket/prefix/), holding
    /// base.yaml, one <env>.yaml per environment and optionally a REVISION file (the set's label, then
    /// optionally `sha256sum *.yaml`: the set is used only when it matches).
    #[arg(long, global = true, default_value = "specs", env = "SENTRY_SPECS")]
    pub specs: PathBuf,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// AWS region (overrides the spec's region and the AWS config chain).
    #[arg(long, global = true)]
    pub region: Option<String>,
    /// Seconds to establish a connection to AWS.
    #[arg(long, global = true, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..), env = "SENTRY_CONNECT_TIMEOUT")]
    pub connect_timeout: u64,
    /// Seconds one attempt of an AWS request may take (reply read in full).
    #[arg(long, global = true, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..), env = "SENTRY_ATTEMPT_TIMEOUT")]
    pub attempt_timeout: u64,
    /// Seconds one AWS operation may take, all its attempts and backoff included.
    #[arg(long, global = true, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..), env = "SENTRY_OPERATION_TIMEOUT")]
    pub operation_timeout: u64,
    /// How tags are read: `batched`, one Resource Groups Tagging API read per pass for the whole
    /// environment (queues, tables, alarms, log groups, topics, Redis); `per-resource`, one read each.
    #[arg(long, global = true, value_enum, default_value_t = TagReads::Batched, env = "SENTRY_TAG_READS")]
    pub tag_reads: TagReads,
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
        /// Whitelist pool entry whose lost address may be replaced by a NEW address in this run
        /// (only for an unpinned entry whose recorded address is gone); repeat for several.
        #[arg(long = "reallocate-whitelist", value_name = "ENTRY")]
        reallocate_whitelist: Vec<String>,
    },
    /// Converge the estate once. Exit 0 in sync (no writes), 2 drift repaired, 1 error, 3 invariant broken,
    /// 4 another writer holds the environment's lease, 5 the spec is older than the revision applied.
    Reconcile {
        /// Run one pass and exit (the only mode of this subcommand; `run` is the daemon).
        #[arg(long)]
        once: bool,
        /// Environment.
        #[arg(long)]
        env: String,
        /// Whitelist pool entry whose lost address may be replaced by a NEW address in this run
        /// (only for an unpinned entry whose recorded address is gone); repeat for several.
        #[arg(long = "reallocate-whitelist", value_name = "ENTRY")]
        reallocate_whitelist: Vec<String>,
        /// How the pass shares the environment with other writers.
        #[command(flatten)]
        lease: OnceLease,
    },
    /// Per environment: the lease holder, the revision last applied and when, the last pass, and
    /// (from a read-only observe) open drift and the whitelist. Exit 0, 1 error, 4 revision not applied in time.
    Status {
        /// Only this environment.
        #[arg(long)]
        env: Option<String>,
        /// The lease table (else the spec's `leaseTable`).
        #[arg(long, env = "SENTRY_LEASE_TABLE")]
        lease_table: Option<String>,
        /// First wait until this revision (a label or content hash) is the one applied.
        #[arg(long, value_name = "REVISION")]
        wait_for_revision: Option<String>,
        /// Seconds --wait-for-revision waits.
        #[arg(long, default_value_t = 300)]
        wait: u64,
        /// Only the lease table: no observe (no call to the estate).
        #[arg(long)]
        no_observe: bool,
    },
    /// Write the spec that adopts an environment's existing estate in place: its CloudFormation stacks'
    /// resources (or a Terraform state's, a VPC's, or a tag's), plus queues, tables, clusters, log groups,
    /// Redis and the user pool found by name (`*-<env>`). Reads only; exit 0 written, 1 error.
    Import {
        /// Environment.
        #[arg(long)]
        env: String,
        /// Stacks to read: `*` matches any text, `${env}` is the environment.
        #[arg(long, default_value = "sentry-*-${env}")]
        stacks: String,
        /// Read the resources from this Terraform state (format version 4, `terraform state pull`)
        /// instead of CloudFormation stacks.
        #[arg(long, value_name = "FILE", conflicts_with_all = ["stacks", "vpc"])]
        from_terraform: Option<PathBuf>,
        /// Read what lies in this VPC (an estate made by hand: subnets, gateways, route tables,
        /// security groups, endpoints, flow logs) instead of CloudFormation stacks.
        #[arg(long, value_name = "ID", conflicts_with_all = ["stacks", "tag"])]
        vpc: Option<String>,
        /// Read what carries this tag (`KEY=VALUE`, through the Resource Groups Tagging API)
        /// instead of CloudFormation stacks.
        #[arg(long, value_name = "KEY=VALUE", conflicts_with_all = ["stacks", "from_terraform"])]
        tag: Option<String>,
        /// Directory to write `<env>.yaml` into (a spec that validates on its own,
        /// without a base.yaml); without it the YAML goes to stdout.
        #[arg(long, conflicts_with = "write")]
        out: Option<PathBuf>,
        /// Bind what is found to the spec in --specs instead: append the `adopt`
        /// entries its resources need to `<env>.yaml` (never two entries for one resource).
        #[arg(long)]
        write: bool,
    },
    /// Draw the environment: its resources and the references between them, grouped by layer, as a
    /// Mermaid flowchart (or Graphviz), each resource coloured by its live status from a read-only pass.
    /// Exit 0; 1 when AWS could not be read in full (the graph is printed, those resources `not read`).
    Graph {
        /// Environment.
        #[arg(long)]
        env: String,
        /// The spec's graph only: no AWS call, no status.
        #[arg(long)]
        offline: bool,
        /// `mermaid` (a flowchart) or `dot` (Graphviz).
        #[arg(long, value_enum, default_value_t = crate::graph::Format::Mermaid)]
        format: crate::graph::Format,
    },
    /// Print the least-privilege IAM policy of the operator's role in an environment's account, made
    /// from what each kind declares beside its calls (`deploy/iam-policy.json` is its output for every
    /// kind). With --env, writes only for the kinds that environment's spec uses (and the daemon's event
    /// plumbing); every kind's reads stay, as every pass reads every kind. Exit 0; 1 invalid spec.
    IamPolicy {
        /// Only what this environment's spec needs.
        #[arg(long)]
        env: Option<String>,
    },
    /// Ask a running daemon's /healthz (a container health check needs no shell or curl).
    /// Exit 0 healthy, 1 not.
    Health {
        /// The daemon's --listen address.
        #[arg(long, default_value = "127.0.0.1:9464")]
        listen: SocketAddr,
    },
    /// Reconcile continuously (the daemon). Stops on SIGTERM / SIGINT; SIGHUP re-reads the specs.
    Run {
        /// Environment; repeat for several.
        #[arg(long = "env", required = true)]
        envs: Vec<String>,
        /// Seconds between full passes (jittered by up to 10%) [default: 60; 600 with --events].
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        interval: Option<u64>,
        /// Seconds between passes over the networking kinds (whitelist EIPs, NAT gateways, routes, security groups;
        /// with --events, only the whitelist's EIPs, NAT gateways and routes) [default: 4; 30 with --events].
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        fast_interval: Option<u64>,
        /// Event-driven repair: provision an EventBridge rule and SQS queue in each environment's account
        /// (CloudTrail's records of write calls to the estate), read the queue, and repair what each call
        /// touched within seconds, saying who made the change. Needs a CloudTrail trail logging management
        /// events (checked, never created).
        #[arg(long)]
        events: bool,
        /// AWS requests a minute the event-driven passes of an environment's loop may spend (bursts of as
        /// many first): a storm of events costs at most this, however many events it brings.
        #[arg(long, default_value_t = daemon::EVENT_BUDGET, value_parser = clap::value_parser!(u32).range(1..))]
        event_budget: u32,
        /// Report drift, never write (works with read-only IAM).
        #[arg(long)]
        observe_only: bool,
        /// Address of /healthz, /readyz and /metrics.
        #[arg(long, default_value = "127.0.0.1:9464")]
        listen: SocketAddr,
        /// DynamoDB table of the per-environment leases (created if missing; a name or an ARN in the
        /// operator's region); several replicas share the environments.
        #[arg(long, default_value = "sentry-operator-leases", env = "SENTRY_LEASE_TABLE", conflicts_with = "single_replica")]
        lease_table: String,
        /// Run without a lease: this is the only replica.
        #[arg(long)]
        single_replica: bool,
        /// Seconds a lease lasts without renewal.
        #[arg(long, default_value_t = 30)]
        lease_seconds: u64,
        /// Environments reconciled at the same time.
        #[arg(long, default_value_t = 4)]
        parallel_envs: usize,
        /// Seconds passes in flight may take to finish after a stop signal.
        #[arg(long, default_value_t = 60)]
        grace_seconds: u64,
        /// Do not publish drift alerts to CloudWatch Logs.
        #[arg(long)]
        no_alerts: bool,
        /// Seconds a pass may take before it is abandoned and counted as failed
        /// (default: its interval, at least 30).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        pass_deadline: Option<u64>,
        /// Seconds between listings of an S3 spec source (a directory is checked at every pass).
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
        spec_poll_seconds: u64,
    },
}

/// How `reconcile --once` shares an environment with the daemon and other writers.
#[derive(Debug, Clone, clap::Args)]
pub struct OnceLease {
    /// The lease table: the pass takes the environment's lease (the spec's `leaseTable` otherwise).
    #[arg(long, env = "SENTRY_LEASE_TABLE", conflicts_with = "no_lease")]
    pub lease_table: Option<String>,
    /// Write without taking the lease, even when the spec names a table (only where no other writer runs).
    #[arg(long)]
    pub no_lease: bool,
    /// Seconds to wait for the lease while another writer holds it (asked for, a daemon gives it up
    /// at its next turn); then exit 4.
    #[arg(long, default_value_t = 60)]
    pub wait: u64,
    /// Seconds the lease lasts without renewal.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(3..))]
    pub lease_seconds: u64,
    /// A label for the revision applied, such as a git SHA (else the specs' REVISION file).
    #[arg(long)]
    pub revision: Option<String>,
    /// Apply even a spec older than the revision applied (loudly).
    #[arg(long)]
    pub force: bool,
}

impl Cli {
    /// The time limits of every AWS request.
    pub fn timeouts(&self) -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(self.connect_timeout),
            attempt: Duration::from_secs(self.attempt_timeout),
            operation: Duration::from_secs(self.operation_timeout),
        }
    }
}

/// Runs the parsed command line; returns the process exit status.
pub async fn run(cli: Cli) -> anyhow::Result<u8> {
    if cli.attempt_timeout > cli.operation_timeout {
        bail!("--attempt-timeout ({} s) must not exceed --operation-timeout ({} s)", cli.attempt_timeout, cli.operation_timeout);
    }
    match &cli.command {
        Command::Validate { env } => validate(&cli, env.as_deref()).await,
        Command::Health { listen } => Ok(if daemon::http::healthy(*listen).await { EXIT_IN_SYNC } else { EXIT_ERROR }),
        Command::IamPolicy { env } => iam_policy(&cli, env.as_deref()).await,
        Command::Schema => {
            println!("{}", serde_json::to_string_pretty(&spec::json_schema())?);
            Ok(EXIT_IN_SYNC)
        }
        Command::Plan { env, reallocate_whitelist } => pass(&cli, env, reallocate_whitelist, Mode::Plan, None).await,
        Command::Status { env, lease_table, wait_for_revision, wait, no_observe } => {
            status(&cli, env.as_deref(), lease_table.as_deref(), wait_for_revision.as_deref(), Duration::from_secs(*wait), *no_observe).await
        }
        Command::Graph { env, offline, format } => graph(&cli, env, *offline, *format).await,
        Command::Import { env, stacks, from_terraform, vpc, tag, out, write } => {
            let source = match (from_terraform, vpc, tag.as_deref().map(|t| t.split_once('='))) {
                (Some(state), _, _) => crate::import::Source::TerraformState(state.clone()),
                (None, Some(vpc), _) => crate::import::Source::Vpc(vpc.clone()),
                (None, None, Some(Some((key, value)))) if !key.is_empty() => crate::import::Source::Tag(key.into(), value.into()),
                (None, None, Some(_)) => {
                    eprintln!("import: --tag takes KEY=VALUE");
                    return Ok(EXIT_ERROR);
                }
                (None, None, None) => crate::import::Source::Stacks(stacks.clone()),
            };
            if *write {
                bind(&cli, env, &source).await
            } else {
                import(&cli, env, &source, out.as_deref()).await
            }
        }
        Command::Reconcile { once, env, reallocate_whitelist, lease } => {
            if !once {
                bail!("reconcile needs --once (use `run` for the long-running daemon)");
            }
            pass(&cli, env, reallocate_whitelist, Mode::Apply, Some(lease)).await
        }
        Command::Run {
            envs,
            interval,
            fast_interval,
            observe_only,
            listen,
            lease_table,
            single_replica,
            lease_seconds,
            parallel_envs,
            grace_seconds,
            no_alerts,
            pass_deadline,
            spec_poll_seconds,
            events,
            event_budget,
        } => {
            let location = Location::parse(&cli.specs)?;
            let snapshot = snapshot(&cli, &location, envs).await?;
            for env in envs {
                snapshot.load(env).map_err(|e| anyhow::anyhow!("{e}")).with_context(|| format!("the spec of {env} must be valid to start"))?;
            }
            let options = daemon::Options {
                specs: location,
                spec_poll: Duration::from_secs(*spec_poll_seconds),
                envs: envs.clone(),
                region: cli.region.clone(),
                interval: Duration::from_secs(interval.unwrap_or(if *events { daemon::EVENTS_INTERVAL } else { daemon::INTERVAL })),
                fast_interval: Duration::from_secs(fast_interval.unwrap_or(if *events { daemon::EVENTS_FAST_INTERVAL } else { daemon::FAST_INTERVAL })),
                events: *events,
                tag_reads: cli.tag_reads,
                event_budget: *event_budget,
                observe_only: *observe_only,
                listen: Some(*listen),
                lease_table: (!*single_replica).then(|| lease_table.clone()),
                lease_duration: Duration::from_secs((*lease_seconds).max(3)),
                max_parallel_envs: *parallel_envs,
                grace: Duration::from_secs(*grace_seconds),
                alerts: !*no_alerts,
                timeouts: cli.timeouts(),
                pass_deadline: pass_deadline.map(Duration::from_secs),
            };
            daemon::run(options).await
        }
    }
}

async fn validate(cli: &Cli, env: Option<&str>) -> anyhow::Result<u8> {
    let location = Location::parse(&cli.specs)?;
    let s3 = match &location {
        Location::Dir(_) => None,
        Location::S3 { .. } => Some(snapshot(cli, &location, &[]).await?),
    };
    let envs = match (env, &s3) {
        (Some(e), _) => vec![e.to_string()],
        (None, Some(snapshot)) => snapshot.environments(),
        (None, None) => spec::environments(&cli.specs)?,
    };
    if envs.is_empty() {
        bail!("no environment specs (*.yaml besides base.yaml) in {}", location.url());
    }
    let mut results = Vec::new();
    let mut ok = true;
    for env in &envs {
        let loaded = match &s3 {
            Some(snapshot) => snapshot.load(env),
            None => spec::load(&cli.specs, env),
        };
        let errors: Vec<String> = match loaded {
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

/// `graph`: the spec's graph of `env`, with live statuses unless `offline`.
async fn graph(cli: &Cli, env: &str, offline: bool, format: crate::graph::Format) -> anyhow::Result<u8> {
    let (loaded, _) = read_spec(cli, env).await?;
    let Some(env) = report_invalid(loaded, env, cli.output)? else { return Ok(EXIT_ERROR) };
    if offline {
        // No request is sent: the clients only carry the kinds' rules and desired state.
        let kinds = crate::kinds::registry(&aws_config::SdkConfig::builder().build(), &CallCounter::default(), cli.tag_reads);
        print!("{}", Graph::of(&env, &kinds).render(format));
        return Ok(EXIT_IN_SYNC);
    }
    let runtime = Runtime::new(&env, cli.region.as_deref(), cli.timeouts(), cli.tag_reads).await;
    let report = runtime.pass(&env, Mode::Plan, &Narrowing::default()).await;
    print!("{}", Graph::of(&env, runtime.kinds()).with_status(&report).render(format));
    for e in &report.errors {
        eprintln!("graph: {e}");
    }
    if report.errors.is_empty() {
        Ok(EXIT_IN_SYNC)
    } else {
        eprintln!("graph: the read-only pass had errors (above): resources of kinds it could not read are `not read` (--offline draws the spec alone)");
        Ok(EXIT_ERROR)
    }
}

/// `iam-policy`: the policy for every kind, or for those `env`'s spec (with
/// the daemon's event plumbing) has resources of. Calls no AWS API.
async fn iam_policy(cli: &Cli, env: Option<&str>) -> anyhow::Result<u8> {
    // No request is sent: the clients only carry the kinds' rules and desired state.
    let kinds = crate::kinds::registry(&aws_config::SdkConfig::builder().build(), &CallCounter::default(), cli.tag_reads);
    let rules: Vec<crate::engine::Rules> = kinds.iter().map(|k| k.rules()).collect();
    let (used, observed) = match env {
        None => (rules, Vec::new()),
        Some(name) => {
            let (loaded, _) = read_spec(cli, name).await?;
            let Some(mut env) = report_invalid(loaded, name, cli.output)? else { return Ok(EXIT_ERROR) };
            crate::events::plumbing::install(&mut env, &rules);
            // The event rule's desired state needs the account a pass resolves: it is the daemon's, always included.
            let (used, observed): (Vec<_>, Vec<_>) = kinds.iter().partition(|k| k.name() == crate::kinds::events::KIND || !k.desired(&env).is_empty());
            (used.iter().map(|k| k.rules()).collect(), observed.iter().map(|k| k.rules()).collect())
        }
    };
    print!("{}", crate::iam_policy::render(&crate::iam_policy::environment_policy(&used, &observed, true)?)?);
    Ok(EXIT_IN_SYNC)
}

/// Reads the live estate of `env` (prints why not, and returns `None`, when it cannot).
async fn read_estate(cli: &Cli, env: &str, source: &crate::import::Source) -> Option<crate::import::Imported> {
    let config = crate::aws::env_config(cli.region.clone(), None, cli.timeouts()).await;
    crate::import::import(&config, env, source).await.map_err(|e| import_failed(&e)).ok()
}

/// Prints why `import` failed; returns the exit status.
fn import_failed(e: &dyn std::fmt::Display) -> u8 {
    eprintln!("import: {e}");
    EXIT_ERROR
}

/// `import`: writes the adopting spec of `env` to `out` (or stdout), checked
/// by loading it back, and prints the summary.
async fn import(cli: &Cli, env: &str, source: &crate::import::Source, out: Option<&Path>) -> anyhow::Result<u8> {
    let Some(imported) = read_estate(cli, env, source).await else { return Ok(EXIT_ERROR) };
    let header = format!(
        "Imported by `sentry-operator import --env {env}` from: {}.\nReview it, then `plan`: it must show adoptions only (nothing created, replaced or deleted).",
        imported.summary.stacks.join(", ")
    );
    let text = spec::emit::to_yaml(&serde_json::to_value(&imported.spec)?, &header);
    let scratch = tempfile_dir()?;
    let dir = out.unwrap_or(scratch.path());
    let file = dir.join(format!("{env}.yaml"));
    if out.is_some() && file.exists() {
        bail!("{} exists; import writes a new spec: choose an empty --out directory", file.display());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(&file, &text).with_context(|| format!("writing {}", file.display()))?;
    let checked = spec::load(dir, env);
    match cli.output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "env": env, "file": out.map(|_| file.display().to_string()), "summary": imported.summary }))?
        ),
        Output::Text => {
            if out.is_none() {
                print!("{text}");
            }
            let s = &imported.summary;
            eprintln!("import {env}: {} stacks, {} resources found, {} mapped to the spec", s.stacks.len(), s.found, s.mapped.len());
            for (title, lines) in [("mapped", &s.mapped), ("not representable", &s.not_representable), ("skipped", &s.skipped)] {
                if !lines.is_empty() {
                    eprintln!("{title}:");
                    for line in lines.iter() {
                        eprintln!("  {line}");
                    }
                }
            }
            if out.is_some() {
                eprintln!("wrote {}", file.display());
            }
        }
    }
    if let Err(e) = checked {
        eprintln!("import: the written spec does not load back (a bug of import; please report it):\n{e}");
        return Ok(EXIT_ERROR);
    }
    Ok(EXIT_IN_SYNC)
}

/// `import --write`: binds the estate found to the spec in `--specs` and
/// appends the adopt entries to `<env>.yaml`, checked by loading it back
/// (restored when it does not load).
async fn bind(cli: &Cli, env: &str, source: &crate::import::Source) -> anyhow::Result<u8> {
    if !matches!(Location::parse(&cli.specs)?, Location::Dir(_)) {
        bail!("import --write appends to a spec file: give --specs a directory (a checkout), then publish it");
    }
    let Some(existing) = report_invalid(spec::load(&cli.specs, env), env, cli.output)? else { return Ok(EXIT_ERROR) };
    let file = cli.specs.join(format!("{env}.yaml"));
    let original = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    if original.lines().any(|l| l.starts_with("adopt:")) {
        bail!("{} has an adopt section already; merge by hand (import --out writes a separate spec to compare with)", file.display());
    }
    let Some(imported) = read_estate(cli, env, source).await else { return Ok(EXIT_ERROR) };
    let binding = match crate::import::bind::bind(&existing, &imported.spec) {
        Ok(binding) => binding,
        Err(e) => return Ok(import_failed(&e)),
    };
    let block = spec::emit::to_yaml(
        &serde_json::json!({ "adopt": binding.adopt }),
        &format!("Bound by `sentry-operator import --env {env} --write` to the live estate of: {}", imported.summary.stacks.join(", ")),
    );
    let separator = if original.ends_with('\n') || original.is_empty() { "\n" } else { "\n\n" };
    std::fs::write(&file, format!("{original}{separator}{block}")).with_context(|| format!("writing {}", file.display()))?;
    if let Err(e) = spec::load(&cli.specs, env) {
        std::fs::write(&file, &original).with_context(|| format!("restoring {}", file.display()))?;
        eprintln!("import: the bound spec does not load (restored {}):\n{e}", file.display());
        return Ok(EXIT_ERROR);
    }
    match cli.output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({ "env": env, "file": file.display().to_string(), "bound": binding.adopt.keys().collect::<Vec<_>>(), "unbound": binding.unbound, "summary": imported.summary })
            )?
        ),
        Output::Text => {
            eprintln!("import {env}: {} resources bound to the spec, appended to {}", binding.adopt.len(), file.display());
            for line in binding.unbound.iter().chain(&imported.summary.not_representable) {
                eprintln!("  not in the spec: {line}");
            }
        }
    }
    Ok(EXIT_IN_SYNC)
}

/// A scratch directory, removed when dropped.
fn tempfile_dir() -> anyhow::Result<ScratchDir> {
    let path = std::env::temp_dir().join(format!(
        "sentry-operator-import-{}-{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
    ));
    std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
    Ok(ScratchDir(path))
}

/// A directory removed on drop.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The spec set at `location` (for S3, fetched now), with `envs`' files.
async fn snapshot(cli: &Cli, location: &Location, envs: &[String]) -> anyhow::Result<Snapshot> {
    // A directory needs no AWS configuration.
    let config = match location {
        Location::Dir(_) => aws_config::SdkConfig::builder().build(),
        Location::S3 { .. } => load_config(cli.region.clone(), cli.timeouts()).await,
    };
    let source = Source::new(location.clone(), &config, &CallCounter::default());
    source.snapshot(envs).await.with_context(|| format!("reading the specs in {}", location.url()))
}

/// Loads `env` from --specs; the set's label (its REVISION file) too.
async fn read_spec(cli: &Cli, env: &str) -> anyhow::Result<(Result<EnvSpec, LoadError>, Option<String>)> {
    let location = Location::parse(&cli.specs)?;
    let snapshot = snapshot(cli, &location, &[env.to_string()]).await?;
    let loaded = match &location {
        // A directory keeps its own messages (which environments it holds).
        Location::Dir(dir) => spec::load(dir, env),
        Location::S3 { .. } => snapshot.load(env),
    };
    Ok((loaded, snapshot.label))
}

/// A loaded spec, or every error printed; `None` when it is invalid.
fn report_invalid(loaded: Result<EnvSpec, LoadError>, env: &str, output: Output) -> anyhow::Result<Option<EnvSpec>> {
    match loaded {
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
    Runtime::new(env, cli.region.as_deref(), cli.timeouts(), cli.tag_reads).await.pass(env, mode, &Narrowing::default()).await
}

/// Whether text for `stream` may be coloured: it is a terminal, and `NO_COLOR` is not set.
pub fn colour_on(stream: &impl std::io::IsTerminal) -> bool {
    stream.is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

fn print_report(report: &Report, output: Output) -> anyhow::Result<()> {
    match output {
        Output::Text => print!("{}", report.to_text_styled(colour_on(&std::io::stdout()))),
        Output::Json => println!("{}", serde_json::to_string_pretty(report).context("rendering the report")?),
    }
    Ok(())
}

async fn pass(cli: &Cli, env: &str, reallocate_whitelist: &[String], mode: Mode, lease: Option<&OnceLease>) -> anyhow::Result<u8> {
    if let Some(label) = lease.and_then(|l| l.revision.as_deref()) {
        check_label(label).map_err(|e| anyhow::anyhow!("--revision: {e}"))?;
    }
    let (loaded, label) = read_spec(cli, env).await?;
    let Some(mut env) = report_invalid(loaded, env, cli.output)? else { return Ok(EXIT_ERROR) };
    env.reallocate_whitelist = reallocate_whitelist.iter().cloned().collect();
    let table = match lease {
        Some(l) if !l.no_lease => l.lease_table.clone().or_else(|| env.spec.lease_table.clone()),
        _ => None,
    };
    let (Some(table), Some(lease)) = (table, lease) else {
        let report = one_pass(cli, &env, mode).await;
        print_report(&report, cli.output)?;
        return Ok(report.exit_code());
    };
    let revision = Revision::of(&env, lease.revision.as_deref().or(label.as_deref()))?;
    let config = load_config(cli.region.clone(), cli.timeouts()).await;
    let table = LeaseTable::new(&config, &CallCounter::default(), &table, Writer::this_process(true), Duration::from_secs(lease.lease_seconds))?;
    table.ensure_table(true).await?;
    let outcome = under_lease(&table, &env.env, &revision, Duration::from_secs(lease.wait), lease.force, one_pass(cli, &env, mode)).await?;
    match outcome {
        Once::Ran(report) => {
            print_report(&report, cli.output)?;
            Ok(report.exit_code())
        }
        Once::Held(why) => {
            eprintln!("not written: {why}");
            Ok(EXIT_LEASE_HELD)
        }
        Once::Stale(current) => {
            eprintln!(
                "stale spec, not written: {} of {} was superseded by {} (generation {}, applied by {} at {}); update the specs, or --force",
                revision,
                env.env,
                current.revision,
                current.generation,
                current.by,
                crate::lease::utc(current.at_ms)
            );
            Ok(EXIT_STALE_SPEC)
        }
        Once::Lost(why) => {
            eprintln!("{why}");
            Ok(EXIT_ERROR)
        }
    }
}

/// `status`: each environment's lease item and, unless `no_observe`, a read-only observe.
async fn status(cli: &Cli, env: Option<&str>, lease_table: Option<&str>, wait_for: Option<&str>, wait: Duration, no_observe: bool) -> anyhow::Result<u8> {
    let location = Location::parse(&cli.specs)?;
    let envs = match env {
        Some(e) => vec![e.to_string()],
        None => match &location {
            Location::Dir(dir) => spec::environments(dir)?,
            Location::S3 { .. } => snapshot(cli, &location, &[]).await?.environments(),
        },
    };
    let set = snapshot(cli, &location, &envs).await?;
    let config = load_config(cli.region.clone(), cli.timeouts()).await;
    if let Some(w) = wait_for {
        check_label(w).map_err(|e| anyhow::anyhow!("--wait-for-revision: {e}"))?;
    }
    // One deadline for every environment waited on.
    let started = tokio::time::Instant::now();
    let mut statuses = Vec::new();
    let mut code = EXIT_IN_SYNC;
    for name in &envs {
        let loaded = match &location {
            Location::Dir(dir) => spec::load(dir, name),
            Location::S3 { .. } => set.load(name),
        };
        let env = match loaded {
            Ok(env) => env,
            Err(e) => {
                code = EXIT_ERROR;
                statuses.push(crate::status::EnvStatus::invalid(name, &e));
                continue;
            }
        };
        let mine = Revision::of(&env, set.label.as_deref())?;
        let mut errors = Vec::new();
        let mut record = None;
        if let Some(reference) = lease_table.map(str::to_string).or_else(|| env.spec.lease_table.clone()) {
            let table = LeaseTable::new(&config, &CallCounter::default(), &reference, Writer::this_process(true), Duration::from_secs(30))?;
            table.ensure_table(false).await?;
            let (read, applied) = crate::status::read_lease(&table, name, wait_for, &mine, set.label.as_deref(), started + wait).await?;
            if !applied {
                errors.push(format!("revision {} not applied within {}s", wait_for.unwrap_or_default(), wait.as_secs()));
                code = EXIT_REVISION_NOT_APPLIED;
            }
            record = Some(read);
        } else if wait_for.is_some() {
            bail!("--wait-for-revision needs a lease table (--lease-table, or leaseTable: in the spec)");
        }
        let observed = if no_observe { None } else { Some(one_pass(cli, &env, Mode::Plan).await) };
        let status = crate::status::EnvStatus::new(name, &mine, record.as_ref(), observed.as_ref(), errors);
        if !status.errors.is_empty() && code == EXIT_IN_SYNC {
            code = EXIT_ERROR;
        }
        statuses.push(status);
    }
    match cli.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "environments": statuses }))?),
        Output::Text => print!("{}", crate::status::to_text(&statuses)),
    }
    Ok(code)
}

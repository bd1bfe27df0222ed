//! Entry point: parse arguments, set up logging, run, exit with the status.

use std::process::ExitCode;

use clap::Parser;
use sentry_operator::cli::{run, Cli, Command};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = if matches!(cli.command, Command::Run { .. }) { "info" } else { "warn" };
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level)))
        .with_writer(std::io::stderr)
        // Colours only on a terminal (and never with NO_COLOR): a log file or CloudWatch gets plain text.
        .with_ansi(sentry_operator::cli::colour_on(&std::io::stderr()))
        .init();
    match run(cli).await {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

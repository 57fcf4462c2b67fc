//! `orchestrate`: drives zero-downtime rollouts of an ECS-on-EC2 service behind an ALB.
//!
//! - `rehearse` ([`rehearse`]): the whole thing offline: `localaws` in-process, rollouts under
//!   load, every verdict checked against its expectation, a report directory;
//! - `refresh` ([`refresh`]): an Auto Scaling instance refresh gated by live traffic (real AWS,
//!   or `localaws` through `--endpoint-url`: one code path, [`aws`]);
//! - `deploy` ([`deploy`]): a CodeDeploy blue/green release gated by live traffic, with
//!   test-traffic validation before production sees it;
//! - `preflight` ([`preflight`]): a static check of the Terraform configuration, the ECS task
//!   definition and the CodeDeploy AppSpec for every known way a rollout drops requests, on the
//!   `tfstack` crate's reader of Terraform, which needs no Terraform binary.

pub mod aws;
pub mod cli;
pub mod deploy;
pub mod gate;
pub mod preflight;
pub mod refresh;
pub mod rehearse;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Exit code: nothing wrong.
pub const EXIT_OK: i32 = 0;
/// Exit code: the check failed (an error-level hazard).
pub const EXIT_FAILED: i32 = 1;
/// Exit code: bad input (flags, unreadable or invalid files).
pub const EXIT_USAGE: i32 = 2;

/// Zero-downtime rollouts of ECS on EC2 behind an Application Load Balancer.
#[derive(Debug, Parser)]
#[command(name = "orchestrate", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The offline rehearsal: localaws in-process, rollouts under load, each verdict checked
    /// against its expectation (negative controls must fail), a report directory. Exit 0 iff
    /// every verdict matches.
    Rehearse(rehearse::RehearseArgs),
    /// Start (or follow) an Auto Scaling instance refresh and gate it on live traffic: the first
    /// failed request rolls it back. Exit 0 only when it succeeded and the probe passed.
    Refresh(Box<cli::RefreshArgs>),
    /// Release through CodeDeploy blue/green and gate it on live traffic: render and register
    /// the task definition, create the deployment with the AppSpec, follow it; the first failed
    /// request stops it with rollback; test traffic is validated before production sees it.
    /// Exit 0 only when it succeeded and the probe passed.
    Deploy(Box<cli::DeployArgs>),
    /// Report every known zero-downtime hazard in the Terraform, the task definition and the
    /// AppSpec, with file, line, resource, reason and fix. Exit 1 on an error-level hazard.
    Preflight(preflight::PreflightArgs),
    /// Run the application (`crates/server`, linked in): what image `server` runs as a task in
    /// the rehearsal. Arguments go to `server`.
    #[command(hide = true)]
    Server {
        /// Arguments for `server`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

/// What a run decided: the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exit 0.
    Clean,
    /// Exit 1: the check found an error-level problem.
    Failed,
}

impl Outcome {
    /// The process exit code.
    pub fn exit_code(self) -> i32 {
        match self {
            Outcome::Clean => EXIT_OK,
            Outcome::Failed => EXIT_FAILED,
        }
    }
}

/// Why a run could not do its job.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The preflight inputs could not be read (exit 2).
    #[error(transparent)]
    Preflight(#[from] preflight::PreflightError),
    /// Bad input to `refresh` or `rehearse`: an unknown group or scenario, a refused request
    /// (exit 2).
    #[error("{0}")]
    Input(String),
    /// Something failed along the way (exit 1).
    #[error("{0}")]
    Run(String),
}

impl Error {
    /// The process exit code.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Run(_) => EXIT_FAILED,
            Error::Preflight(_) | Error::Input(_) => EXIT_USAGE,
        }
    }
}

/// Runs a parsed command line, writing the human report to `out`. `refresh` and `rehearse`
/// need a tokio runtime.
pub async fn run(cli: Cli, out: &mut (dyn std::io::Write + Send)) -> Result<Outcome, Error> {
    match cli.command {
        Command::Preflight(args) => Ok(preflight::run(&args, out)?),
        Command::Refresh(args) => cli::refresh(&args, out).await,
        Command::Deploy(args) => cli::deploy(&args, out).await,
        Command::Rehearse(args) if args.print_stack => {
            rehearse::print_stack(&args, out).map_err(|e| match e {
                rehearse::RehearseError::Input(m) => Error::Input(m),
                rehearse::RehearseError::Run(m) => Error::Run(m),
            })?;
            Ok(Outcome::Clean)
        }
        Command::Rehearse(args) => {
            let rows = rehearse::run(&args, out).await.map_err(|e| match e {
                rehearse::RehearseError::Input(m) => Error::Input(m),
                rehearse::RehearseError::Run(m) => Error::Run(m),
            })?;
            let _ = writeln!(out, "\n{}", rehearse::table(&rows));
            let _ = writeln!(
                out,
                "report: {}",
                args.report_dir.join("index.html").display()
            );
            let all = rows.iter().all(|r| r.as_expected);
            let _ = writeln!(
                out,
                "verdict: {}",
                if all {
                    "every scenario as expected"
                } else {
                    "NOT every scenario as expected"
                }
            );
            Ok(if all { Outcome::Clean } else { Outcome::Failed })
        }
        Command::Server { args } => server::run(server_cli(args))
            .await
            .map(|()| Outcome::Clean)
            .map_err(|e| Error::Run(e.to_string())),
    }
}

/// The application's command line from the arguments of `orchestrate server`.
pub fn server_cli(args: Vec<String>) -> server::Cli {
    server::Cli::parse_from(std::iter::once("server".to_owned()).chain(args))
}

/// The repository root: the nearest directory at or above `start` whose `Cargo.toml` declares a
/// `[workspace]`.
pub fn find_repo_root(start: &std::path::Path) -> Option<PathBuf> {
    start.ancestors().find_map(|dir| {
        let manifest = dir.join("Cargo.toml");
        let text = std::fs::read_to_string(&manifest).ok()?;
        text.lines()
            .any(|l| l.trim() == "[workspace]")
            .then(|| dir.to_path_buf())
    })
}

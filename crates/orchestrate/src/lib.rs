//! `orchestrate`: drives zero-downtime rollouts of an ECS-on-EC2 service behind an ALB.
//!
//! Today it has one subcommand, `preflight`: a static check of the Terraform configuration, the
//! ECS task definition and the CodeDeploy AppSpec for every known way a rollout drops requests
//! ([`preflight`]), on a reader of Terraform that needs no Terraform binary ([`terraform`]).
//! `refresh`, `deploy` and `rehearse` join [`Command`] later.

pub mod preflight;
pub mod terraform;

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
    /// Report every known zero-downtime hazard in the Terraform, the task definition and the
    /// AppSpec, with file, line, resource, reason and fix. Exit 1 on an error-level hazard.
    Preflight(preflight::PreflightArgs),
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

/// Why a run could not do its job: every variant is bad input (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The preflight inputs could not be read.
    #[error(transparent)]
    Preflight(#[from] preflight::PreflightError),
}

/// Runs a parsed command line, writing the human report to `out`.
pub fn run(cli: Cli, out: &mut dyn std::io::Write) -> Result<Outcome, Error> {
    match cli.command {
        Command::Preflight(args) => Ok(preflight::run(&args, out)?),
    }
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

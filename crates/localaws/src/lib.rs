//! `localaws`: the offline stand-in for the AWS services of an ECS-on-EC2 pipeline, whose data
//! plane is real.
//!
//! Nothing offline provides this: LocalStack's free edition has no ELBv2, ECS, Auto Scaling or
//! CodeDeploy, and moto stores listener weights without routing a request. Here:
//!
//! - a [stack file](stack) (TOML; one is embedded) describes load balancers, target groups, task
//!   definitions and services the way Terraform would;
//! - [tasks](runtime) are real processes (the workspace's `server`), each bound to its instance's
//!   own loopback address (127.0.x.y) on a dynamic host port, stopped with SIGTERM, `stopTimeout`,
//!   SIGKILL;
//! - [listeners](proxy) are real reverse proxies forwarding by weight to [target groups](targets)
//!   with health checks, fail-open, and draining on deregistration;
//! - AWS machinery runs on a [scaled clock](clock) so a 5-minute canary takes seconds.
//!
//! The AWS APIs (Auto Scaling, ELBv2, ECS, CodeDeploy) and their control planes build on
//! [`DataPlane`].

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

pub mod clock;
pub mod dataplane;
pub mod events;
pub mod health;
pub mod proxy;
pub mod runtime;
pub mod stack;
pub mod targets;

pub use clock::Clock;
pub use dataplane::{DataPlane, DataPlaneError, Instance, Options, TaskInfo};
pub use events::{Event, EventKind, Events};
pub use runtime::{ProcessRuntime, RunningTask, StopOutcome, TaskExit, TaskRuntime};
pub use stack::{Stack, StackError};
pub use targets::{TargetGroup, TargetHealth, TargetInfo};

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "localaws",
    version,
    about = "Offline stand-in for AWS (ALB, target groups, ECS tasks) with a real data plane",
    after_help = "\
Examples:
  localaws                          run the embedded default stack until Ctrl-C
  localaws up --stack my.toml       run a stack file
  localaws up --time-scale 60       simulated AWS time 60x faster than real time
  localaws check my.toml            validate a stack file and exit
  localaws default-stack            print the embedded default stack

Exit codes: 0 ok; 1 runtime failure; 2 bad input (stack file, flags)"
)]
pub struct Cli {
    /// What to do; `up` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Stand the stack up and serve until Ctrl-C or SIGTERM, then stop every task gracefully.
    Up(UpArgs),
    /// Validate a stack file.
    Check {
        /// The stack file.
        stack: PathBuf,
    },
    /// Print the embedded default stack.
    DefaultStack,
    /// Run the application (`crates/server`, linked in): what image `server` runs as a task, so
    /// `cargo run -p localaws` needs no separately built binary. Arguments go to `server`.
    #[command(hide = true)]
    Server {
        /// Arguments for `server`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

/// Arguments of `up`.
#[derive(Debug, Default, clap::Args)]
pub struct UpArgs {
    /// Stack file (TOML); the embedded default when omitted.
    #[arg(long, value_name = "FILE")]
    pub stack: Option<PathBuf>,
    /// Simulated seconds per real second, overriding the stack's `time_scale`.
    #[arg(long, value_name = "N")]
    pub time_scale: Option<f64>,
    /// Where task logs go.
    #[arg(long, value_name = "DIR", default_value = "target/localaws")]
    pub state_dir: PathBuf,
    /// Proxy worker threads [default: one per core, at most 8].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub proxy_threads: Option<u16>,
}

/// Why `run` failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad stack file or flag (exit 2).
    #[error(transparent)]
    Stack(#[from] StackError),
    /// Bad flag value (exit 2).
    #[error("{0}")]
    Usage(String),
    /// Anything else (exit 1).
    #[error(transparent)]
    Runtime(#[from] anyhow::Error),
}

impl Error {
    /// 2 for bad input, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Stack(_) | Self::Usage(_) => 2,
            Self::Runtime(_) => 1,
        }
    }
}

/// The application's command line from the arguments of `localaws server`.
pub fn server_cli(args: Vec<String>) -> server::Cli {
    use clap::Parser as _;
    server::Cli::parse_from(std::iter::once("server".to_owned()).chain(args))
}

/// Runs the command; must be called inside a tokio runtime.
pub async fn run(cli: Cli) -> Result<(), Error> {
    match cli.command.unwrap_or(Command::Up(UpArgs::default())) {
        Command::DefaultStack => {
            use std::io::Write as _;
            std::io::stdout()
                .write_all(stack::DEFAULT_STACK.as_bytes())
                .context("writing to stdout")?;
            Ok(())
        }
        Command::Check { stack } => {
            let s = Stack::load(&stack)?;
            eprintln!(
                "{}: ok ({} target groups, {} listeners, {} services)",
                stack.display(),
                s.target_groups.len(),
                s.load_balancers
                    .iter()
                    .map(|l| l.listeners.len())
                    .sum::<usize>(),
                s.services.len()
            );
            Ok(())
        }
        Command::Up(args) => up(args).await,
        // The binary runs this before its own logging starts (see main.rs); here for callers
        // of the library.
        Command::Server { args } => server::run(server_cli(args))
            .await
            .map_err(|e| Error::Runtime(e.into())),
    }
}

async fn up(args: UpArgs) -> Result<(), Error> {
    if let Some(scale) = args.time_scale
        && !(scale.is_finite() && (0.01..=1000.0).contains(&scale))
    {
        return Err(Error::Usage(format!(
            "invalid --time-scale {scale}: expected a number from 0.01 to 1000"
        )));
    }
    let stack = match &args.stack {
        Some(path) => Stack::load(path)?,
        None => Stack::embedded()?,
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let mut options = Options::new(&args.state_dir);
    options.time_scale = args.time_scale;
    options.proxy_threads = args.proxy_threads.map(usize::from);
    // Image `server` runs this very binary as the application: always the code it was built with.
    options.server = std::env::current_exe()
        .ok()
        .map(|exe| (exe, vec!["server".to_owned()]));
    let plane = DataPlane::start(stack, Arc::new(ProcessRuntime::new()), options)
        .await
        .context("starting the data plane")?;
    tracing::info!(
        time_scale = plane.clock().scale(),
        instances = plane.instances().len(),
        logs = %plane.log_dir().display(),
        "data plane up"
    );
    let started = tokio::select! {
        started = plane.start_services() => started,
        _ = tokio::signal::ctrl_c() => {
            plane.shutdown().await;
            return Ok(());
        }
    };
    if let Err(err) = started {
        plane.shutdown().await;
        return Err(anyhow::Error::new(err).context("starting services").into());
    }
    for l in plane.listeners() {
        eprintln!(
            "{}/{}: http://{}/  -> {}",
            l.load_balancer,
            l.name,
            l.addr(),
            l.forward().describe()
        );
    }
    eprintln!("Ctrl-C stops every task gracefully and exits.");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("stopping: every task gets SIGTERM");
    plane.shutdown().await;
    Ok(())
}

//! `localaws`: the offline stand-in for the AWS services of an ECS-on-EC2 pipeline, whose data
//! plane is real.
//!
//! Nothing offline provides this: LocalStack's free edition has no ELBv2, ECS, Auto Scaling or
//! CodeDeploy, and moto stores listener weights without routing a request. Here:
//!
//! - a [stack file](stack) (TOML, the `stack` crate; one is embedded) describes load balancers, target groups, task
//!   definitions and services the way Terraform would;
//! - [tasks](dataplane::runtime) are real processes (the workspace's `server`), each bound to its instance's
//!   own loopback address (127.0.x.y) on a dynamic host port, stopped with SIGTERM, `stopTimeout`,
//!   SIGKILL;
//! - [listeners](dataplane::proxy) are real reverse proxies forwarding by weight to [target groups](dataplane::targets)
//!   with health checks, fail-open, and draining on deregistration;
//! - AWS machinery runs on a [scaled clock](clock) so a 5-minute canary takes seconds.
//!
//! The AWS APIs (Auto Scaling, ELBv2, ECS, CodeDeploy) and their control planes build on
//! [`DataPlane`].

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

pub mod api;
pub mod arn;
pub mod clock;
pub mod control;
pub mod dataplane;
pub mod events;
pub mod ids;
pub mod running;

pub use clock::Clock;
pub use control::{Control, ControlError};
pub use dataplane::{DataPlane, DataPlaneError, Instance, Options, TaskInfo};
pub use dataplane::{ProcessRuntime, RunningTask, StopOutcome, TaskExit, TaskRuntime};
pub use dataplane::{RuntimeError, image_labels};
pub use dataplane::{TargetGroup, TargetHealth, TargetInfo};
pub use events::{Event, EventKind, Events};
pub use running::{Localaws, ReadyInfo, StartError};
pub use stack::{Stack, StackError};

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "localaws",
    version,
    about = "Offline stand-in for AWS (Auto Scaling, EC2 launch templates, ELBv2, ECS) with a real data plane",
    args_conflicts_with_subcommands = true,
    after_help = "\
Examples:
  localaws                                   serve the embedded default stack until Ctrl-C
  localaws --stack my.toml --time-scale 60   a stack file, simulated AWS time 60x real time
  localaws --ready-file ready.json           write the endpoints once the fleet is healthy
  localaws --terraform terraform/envs/dev    serve the stack a Terraform configuration describes
  localaws check my.toml                     validate a stack file and exit
  localaws default-stack                     print the embedded default stack

Then, from another terminal (any credentials work; signatures are not checked):
  export AWS_ENDPOINT_URL=http://127.0.0.1:4566 AWS_REGION=us-east-1 \\
         AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
  aws autoscaling describe-auto-scaling-groups --auto-scaling-group-names demo-asg
  aws ec2 create-launch-template-version --launch-template-name demo-lt \\
      --source-version 1 --launch-template-data '{\"ImageId\":\"ami-0ecs000000000002\"}'
  aws autoscaling start-instance-refresh --auto-scaling-group-name demo-asg \\
      --desired-configuration '{\"LaunchTemplate\":{\"LaunchTemplateName\":\"demo-lt\",\"Version\":\"2\"}}'

Exit codes: 0 ok; 1 runtime failure; 2 bad input (stack file, flags)"
)]
pub struct Cli {
    /// What to do; `serve` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// `serve`'s arguments, when no subcommand is given.
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the AWS API, the listeners and the fleet until Ctrl-C or SIGTERM, then stop every
    /// task gracefully (the default).
    #[command(visible_alias = "up")]
    Serve(ServeArgs),
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

/// Arguments of `serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Stack file (TOML); the embedded default when omitted.
    #[arg(long, value_name = "FILE", conflicts_with = "terraform")]
    pub stack: Option<PathBuf>,
    /// Derive the stack from this Terraform configuration (the root module's directory: local
    /// modules, variables, tfvars followed; no Terraform binary). Every value not known before
    /// apply is listed with file:line and the value used instead. `orchestrate rehearse
    /// --terraform DIR --print-stack` writes the same stack as a file.
    #[arg(long, value_name = "DIR")]
    pub terraform: Option<PathBuf>,
    /// With --terraform: containers whose image repository is NAME run COMMAND instead of the
    /// project's `server`, or, as `NAME=docker:IMAGE`, run as containers of the local Docker
    /// image IMAGE, as the ECS agent runs them (repeatable; e.g. `web=docker:my/web:1.2`).
    #[arg(
        long,
        value_name = "NAME=COMMAND|NAME=docker:IMAGE",
        requires = "terraform"
    )]
    pub image: Vec<String>,
    /// Simulated seconds per real second, overriding the stack's `time_scale`.
    #[arg(long, value_name = "N")]
    pub time_scale: Option<f64>,
    /// Port of the AWS API on 127.0.0.1 (0 picks a free one).
    #[arg(long, value_name = "PORT", default_value_t = running::DEFAULT_API_PORT)]
    pub port: u16,
    /// Where task logs go [default: a new directory under the system's temporary directory].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Write the endpoints (JSON: API endpoint, listener URLs) here once the fleet is healthy.
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,
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
    match cli.command {
        None => serve(cli.serve).await,
        Some(Command::Serve(args)) => serve(args).await,
        Some(Command::DefaultStack) => {
            use std::io::Write as _;
            std::io::stdout()
                .write_all(stack::DEFAULT_STACK.as_bytes())
                .context("writing to stdout")?;
            Ok(())
        }
        Some(Command::Check { stack }) => {
            let s = Stack::load(&stack)?;
            eprintln!(
                "{}: ok ({} target groups, {} listeners, {} services{})",
                stack.display(),
                s.target_groups.len(),
                s.load_balancers
                    .iter()
                    .map(|l| l.listeners.len())
                    .sum::<usize>(),
                s.services.len(),
                s.auto_scaling_group
                    .as_ref()
                    .map(|a| format!(", auto scaling group {} of {}", a.name, a.desired_capacity))
                    .unwrap_or_default()
            );
            Ok(())
        }
        // The binary runs this before its own logging starts (see main.rs); here for callers
        // of the library.
        Some(Command::Server { args }) => server::run(server_cli(args))
            .await
            .map_err(|e| Error::Runtime(e.into())),
    }
}

/// The stack of a Terraform configuration, its assumptions listed on stderr.
fn derived_stack(dir: &std::path::Path, args: &ServeArgs) -> Result<Stack, Error> {
    let mut options = tfstack::derive::DeriveOptions {
        time_scale: args.time_scale,
        ..tfstack::derive::DeriveOptions::default()
    };
    for flag in &args.image {
        options.images.push(
            tfstack::derive::DeriveOptions::parse_image(flag)
                .map_err(|e| Error::Usage(e.to_string()))?,
        );
    }
    let started = std::time::Instant::now();
    let d = tfstack::derive::derive_dir(dir, &options).map_err(|e| Error::Usage(e.to_string()))?;
    let n = d.assumptions.len();
    eprintln!(
        "stack derived from {} in {} ms; {n} value{} not known before apply{}",
        dir.display(),
        started.elapsed().as_millis(),
        if n == 1 { "" } else { "s" },
        if n == 0 { "" } else { ":" }
    );
    for a in &d.assumptions {
        eprintln!("  {a}");
    }
    Ok(d.stack)
}

async fn serve(args: ServeArgs) -> Result<(), Error> {
    if let Some(scale) = args.time_scale
        && !(scale.is_finite() && (0.01..=1000.0).contains(&scale))
    {
        return Err(Error::Usage(format!(
            "invalid --time-scale {scale}: expected a number from 0.01 to 1000"
        )));
    }
    let stack = match (&args.stack, &args.terraform) {
        (Some(path), _) => Stack::load(path)?,
        (None, Some(dir)) => derived_stack(dir, &args)?,
        (None, None) => Stack::embedded()?,
    };
    let state_dir = match args.state_dir {
        Some(dir) => dir,
        None => std::env::temp_dir().join(format!("localaws-{}", std::process::id())),
    };
    std::fs::create_dir_all(&state_dir).map_err(|e| {
        Error::Usage(format!(
            "cannot create --state-dir {}: {e}",
            state_dir.display()
        ))
    })?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    // Both listeners exist before anything is printed: a `tokio::signal::ctrl_c()` future only
    // hears a SIGINT sent after its first poll, so one made in the `select!` after "Ctrl-C stops
    // every task" missed a SIGINT sent the moment that line appeared (the flake hunt's starved
    // machine: localaws never exited).
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("installing the SIGINT handler")?;
    let mut options = Options::new(&state_dir);
    options.time_scale = args.time_scale;
    options.proxy_threads = args.proxy_threads.map(usize::from);
    // Image `server` runs this very binary as the application: always the code it was built with.
    options.server = std::env::current_exe()
        .ok()
        .map(|exe| (exe, vec!["server".to_owned()]));
    let la = match Localaws::start(stack, options, args.port).await {
        Ok(la) => la,
        Err(e) if e.is_bad_input() => return Err(Error::Usage(e.to_string())),
        Err(e) => return Err(anyhow::Error::from(e).context("starting localaws").into()),
    };
    tracing::info!(
        endpoint = %la.endpoint(),
        time_scale = la.plane().clock().scale(),
        logs = %la.plane().log_dir().display(),
        "localaws up; waiting for the fleet to turn healthy"
    );
    let ready = tokio::select! {
        ready = la.wait_ready(la.ready_timeout()) => ready,
        _ = int.recv() => {
            la.shutdown().await;
            return Ok(());
        }
        _ = term.recv() => {
            la.shutdown().await;
            return Ok(());
        }
    };
    if !ready {
        la.shutdown().await;
        return Err(Error::Runtime(anyhow::anyhow!(
            "the fleet did not turn healthy in time: see the task logs"
        )));
    }
    let info = la.ready_info();
    eprintln!(
        "AWS API: {}  (region {}, any credentials)",
        info.endpoint, info.region
    );
    for (name, url) in &info.listeners {
        let forward = la
            .plane()
            .listeners()
            .iter()
            .find(|l| format!("{}/{}", l.load_balancer, l.name) == *name)
            .map(|l| l.forward().describe())
            .unwrap_or_default();
        eprintln!("{name}: {url}  -> {forward}");
    }
    if let Some(ca) = &info.ca_file {
        eprintln!(
            "HTTPS listeners' CA certificate: {}  (loadprobe --ca-file, curl --cacert)",
            ca.display()
        );
    }
    eprintln!("task logs: {}", la.plane().log_dir().display());
    if let Some(path) = &args.ready_file {
        let text = serde_json::to_string_pretty(&info).context("rendering the ready file")?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("writing --ready-file {}", path.display()))?;
    }
    eprintln!("Ctrl-C stops every task gracefully and exits.");
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
    tracing::info!("stopping: every task gets SIGTERM");
    la.shutdown().await;
    Ok(())
}

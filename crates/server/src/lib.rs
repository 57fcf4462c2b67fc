//! `server`: the application behind the load balancer, built to be replaced without dropping a
//! request.
//!
//! It answers a small set of routes (see [`routes`]) and stamps every response with
//! `x-app-version` and `x-served-by` so a probe can tell which release and which task answered.
//! On SIGTERM or SIGINT it drains instead of dying (see [`serve`]): readiness turns 503 at once,
//! it keeps serving for `DRAIN_DELAY_SECONDS` while the load balancer stops routing to it, then
//! closes the listener, finishes in-flight requests and exits 0 before `SHUTDOWN_TIMEOUT_SECONDS`.
//!
//! Configuration comes from the environment and is validated before anything is bound
//! ([`Config::from_env`]); a bad value exits with code 2 and names the variable.
//!
//! Where things are: this file owns the CLI, [`run`] and [`main_with`] (builds the runtime,
//! runs, maps errors to exit codes), which both `main.rs` and `localaws server` call. State
//! shared by all connections lives for the process (`AppState::leak`), so the per-request
//! service clone is a pointer copy; the page for `/` is rendered once. [`config`] validates the
//! environment; [`routes`] is a `tower::Service` whose futures allocate nothing; [`stamp`] is the
//! layer that adds `x-app-version` / `x-served-by`, counts requests in flight and adds
//! `Connection: close` while draining; [`serve`] is the accept loop and the three-phase shutdown
//! (drain delay → close listener → finish in flight, all under one deadline counted from the
//! signal); [`signals`] turns SIGTERM/SIGINT into a channel; [`healthcheck`] is `server
//! healthcheck` for container health checks.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

pub mod config;
pub mod healthcheck;
pub mod logging;
pub mod routes;
pub mod serve;
pub mod signals;
pub mod stamp;
pub mod state;

pub use config::{Config, ConfigError};
pub use serve::{Bound, Drained, ServeError};
pub use state::AppState;

const ENVIRONMENT: &str = "\
Environment (validated at start; a bad value exits 2 naming the variable):
  PORT                      port to listen on [default: 8080; 0 picks a free port]
  BIND                      address to bind [default: 0.0.0.0]
  APP_MSG                   message shown on the page [default: Hello from ECS]
  APP_VERSION               release id, sent as x-app-version [default: dev]
  TASK_ID                   task id, sent as x-served-by [default: hostname-pid]
  DRAIN_DELAY_SECONDS       keep serving this long after SIGTERM, readiness 503 [default: 5]
  SHUTDOWN_TIMEOUT_SECONDS  deadline for the whole shutdown, from the signal [default: 25]
                            (set the ECS stopTimeout above it)
  IDLE_TIMEOUT_SECONDS      keep-alive idle and request-head timeout [default: 75]
                            (keep it above the ALB idle timeout of 60 s)
  MAX_HEADER_BYTES          largest request head [default: 16384]
  MAX_DELAY_MS              cap for /delay/{ms} [default: 60000]
  PAGE_STATUS               status of the page / [default: 200]; 500 models a broken
                            release whose /ready still passes
  STARTUP_DELAY_SECONDS     wait this long before binding the port [default: 0]; models
                            an application's warm-up (connections refused meanwhile)
  ON_SIGTERM                drain|unhandled [default: drain]; unhandled installs no
                            handler: SIGTERM kills at once, or, as a container's PID 1
                            without an init, is ignored until SIGKILL
  ACCESS_LOG                on: one log line per request [default: off]
  LOG_LEVEL                 error|warn|info|debug|trace or directives [default: info]
  LOG_FORMAT                auto|json|text; auto is JSON unless stderr is a terminal

Routes: / (page), /health (liveness), /ready (readiness), /version (JSON),
        /delay/{ms}, /status/{code}

Exit codes: 0 drained cleanly; 1 shutdown deadline exceeded or runtime failure;
            2 bad configuration";

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "server",
    version,
    about = "Web service that drains gracefully on SIGTERM (zero-downtime behind an ALB)",
    after_help = ENVIRONMENT
)]
pub struct Cli {
    /// What to do; serves when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve HTTP until SIGTERM or SIGINT, then drain (the default).
    Serve,
    /// Probe this instance's /health (same PORT and BIND); exit 0 if it answers 200, else 1.
    ///
    /// For container health checks: the image has no curl.
    Healthcheck {
        /// How long to wait for the answer.
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
}

/// Why `run` failed; [`Error::exit_code`] maps it to the process exit code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad configuration (exit 2).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Serving failed or the drain missed its deadline (exit 1).
    #[error(transparent)]
    Serve(#[from] ServeError),
    /// The health check failed (exit 1).
    #[error(transparent)]
    Health(#[from] healthcheck::HealthError),
    /// Signal handlers could not be installed (exit 1).
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
}

impl Error {
    /// 2 for configuration errors, 1 for everything else.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::Config(_) => ExitCode::from(2),
            _ => ExitCode::FAILURE,
        }
    }
}

/// Runs the command on a new runtime and returns the process exit code: what `main` does, also
/// for programs that link the application in (localaws runs its tasks this way).
pub fn main_with(cli: Cli) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("server: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Logged for the log shipper, printed for a human (logging may not be up yet).
            tracing::error!(error = %err, "exiting");
            eprintln!("server: {err}");
            err.exit_code()
        }
    }
}

/// Runs the command; must be called inside a tokio runtime.
pub async fn run(cli: Cli) -> Result<(), Error> {
    let config = Config::from_env()?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            logging::init(&config.log_level, config.log_format)?;
            // With ON_SIGTERM=unhandled no handler is installed: the channel never fires (its
            // sender lives as long as the server) and the OS default decides.
            let (mut signals, _unheard) = match config.on_sigterm {
                config::OnSigterm::Drain => (signals::listen().map_err(Error::Signals)?, None),
                config::OnSigterm::Unhandled => {
                    tracing::warn!(
                        "ON_SIGTERM=unhandled: no signal handler, SIGTERM ends the process \
                         without draining (and as PID 1 of a container without an init, only \
                         SIGKILL does)"
                    );
                    let (tx, rx) = tokio::sync::mpsc::channel(1);
                    (rx, Some(tx))
                }
            };
            if !config.startup_delay.is_zero() {
                // Warming up: running, not listening yet. A stop signal now ends the process at
                // once; there is nothing to drain.
                tracing::info!(
                    startup_delay_s = config.startup_delay.as_secs_f64(),
                    "starting: the port is bound after STARTUP_DELAY_SECONDS"
                );
                tokio::select! {
                    () = tokio::time::sleep(config.startup_delay) => {}
                    signal = signals.recv() => {
                        let signal = signal.map_or_else(|| "closed".to_owned(), |s| s.to_string());
                        tracing::info!(%signal, "stopped during start-up, before listening");
                        return Ok(());
                    }
                }
            }
            let state = AppState::leak(config);
            let bound = Bound::bind(state)?;
            let addr = bound.local_addr().map_err(|source| ServeError::Bind {
                addr: std::net::SocketAddr::new(state.config.bind, state.config.port),
                source,
            })?;
            tracing::info!(
                %addr,
                version = %state.config.version,
                task = %state.config.task_id,
                "listening"
            );
            if state.config.idle_timeout <= config::ALB_IDLE_TIMEOUT {
                tracing::warn!(
                    idle_timeout_s = state.config.idle_timeout.as_secs_f64(),
                    "IDLE_TIMEOUT_SECONDS is not above the ALB idle timeout (60 s): the load \
                     balancer may reuse a connection this server just closed (intermittent 502)"
                );
            }
            bound.serve(signals).await?;
            Ok(())
        }
        Command::Healthcheck { timeout } => {
            healthcheck::check(healthcheck::local_addr(&config), timeout).await?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_parses() {
        assert!(Cli::parse_from(["server"]).command.is_none());
        let cli = Cli::parse_from(["server", "healthcheck", "--timeout", "250ms"]);
        assert!(matches!(
            cli.command,
            Some(Command::Healthcheck { timeout }) if timeout == Duration::from_millis(250)
        ));
    }
}

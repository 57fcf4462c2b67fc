//! The `orchestrate` binary: parses the command line, runs, maps the outcome to an exit code
//! (0 clean, 1 a failed check or rollout, 2 bad input).

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

fn code(c: i32) -> ExitCode {
    ExitCode::from(u8::try_from(c).unwrap_or(1))
}

fn main() -> ExitCode {
    let cli = orchestrate::Cli::parse();
    // A task of image `server` in the rehearsal: the application, with its own logging and
    // exit codes.
    if let orchestrate::Command::Server { args } = cli.command {
        return server::main_with(orchestrate::server_cli(args));
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::io::stderr().is_terminal() {
        builder.init();
    } else {
        builder.json().flatten_event(true).init();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return code(orchestrate::EXIT_FAILED);
        }
    };
    let mut stdout = std::io::stdout();
    match runtime.block_on(orchestrate::run(cli, &mut stdout)) {
        Ok(outcome) => code(outcome.exit_code()),
        Err(e) => {
            eprintln!("error: {e}");
            code(e.exit_code())
        }
    }
}

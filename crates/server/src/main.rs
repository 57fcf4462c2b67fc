use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = server::Cli::parse();
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
    match runtime.block_on(server::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Logged for the log shipper, printed for a human (logging may not be up yet).
            tracing::error!(error = %err, "exiting");
            eprintln!("server: {err}");
            err.exit_code()
        }
    }
}

//! `loadprobe`: see the library documentation and `loadprobe --help`.

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    // Usage errors exit 2 (clap's convention too).
    let cli = loadprobe::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadprobe: error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(loadprobe::run_cli(cli));
    // A FIFO reader or a stuck connect must not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    match result {
        Ok(verdict) => ExitCode::from(verdict.exit_code()),
        Err(e) => {
            eprintln!("loadprobe: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    server::main_with(server::Cli::parse())
}

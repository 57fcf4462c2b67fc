//! The `orchestrate` binary: parses the command line, runs, maps the outcome to an exit code
//! (0 clean, 1 an error-level finding, 2 bad input).

use clap::Parser;

fn main() {
    let cli = orchestrate::Cli::parse();
    let mut stdout = std::io::stdout().lock();
    let code = match orchestrate::run(cli, &mut stdout) {
        Ok(outcome) => outcome.exit_code(),
        Err(e) => {
            eprintln!("error: {e}");
            orchestrate::EXIT_USAGE
        }
    };
    std::process::exit(code);
}

//! `tracing` set-up: JSON lines for log shippers, human lines on a terminal.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::{ConfigError, LogFormat};

/// Installs the global subscriber. `RUST_LOG` wins over `level` when set.
pub fn init(level: &str, format: LogFormat) -> Result<(), ConfigError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => EnvFilter::try_new(&directives)
            .map_err(|_| ConfigError::Invalid {
                var: "RUST_LOG",
                value: directives,
                expected: "tracing filter directives such as info or server=debug",
            })?,
        _ => EnvFilter::try_new(level).map_err(|_| ConfigError::Invalid {
            var: "LOG_LEVEL",
            value: level.to_owned(),
            expected: "a level (error, warn, info, debug, trace) or filter directives",
        })?,
    };
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (tests running `run` twice in one process) keeps the first subscriber.
    let _ = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init()
    } else {
        builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init()
    };
    Ok(())
}

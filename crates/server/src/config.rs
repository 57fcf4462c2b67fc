//! Configuration from the environment, validated once at start.
//!
//! Every variable has a default except the ones that identify a deployment; a bad value stops the
//! process with exit code 2 and a message naming the variable and the expected form.

use std::net::IpAddr;
use std::time::Duration;

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A variable holds a value of the wrong form.
    #[error("invalid {var}={value:?}: expected {expected}")]
    Invalid {
        /// The environment variable.
        var: &'static str,
        /// What it held.
        value: String,
        /// What it should hold.
        expected: &'static str,
    },
    /// Two variables contradict each other.
    #[error("{0}")]
    Conflict(String),
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// JSON lines unless stderr is a terminal.
    Auto,
    /// One JSON object per line (what log shippers want).
    Json,
    /// Human-readable lines.
    Text,
}

/// What the server does with SIGTERM and SIGINT (`ON_SIGTERM`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnSigterm {
    /// Drain, then exit (`drain`, the default): docs/failure-modes.md#fm-5.
    Drain,
    /// Install no handler (`unhandled`): models an application that never heard of SIGTERM.
    /// The OS default applies: the process dies at once, cutting what it was serving; as PID 1
    /// of a container without an init, the kernel drops the signal and only the SIGKILL at
    /// `stopTimeout` stops it (docs/failure-modes.md#fm-16).
    Unhandled,
}

/// Validated server configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to bind (`BIND`, default `0.0.0.0`).
    pub bind: IpAddr,
    /// Port to bind (`PORT`, default 8080; 0 picks a free port and logs it).
    pub port: u16,
    /// Message shown on the page (`APP_MSG`).
    pub message: String,
    /// Release identifier sent in `x-app-version` (`APP_VERSION`).
    pub version: String,
    /// Task identifier sent in `x-served-by` (`TASK_ID`, default hostname-pid).
    pub task_id: String,
    /// How long to keep serving after SIGTERM before closing the listener (`DRAIN_DELAY_SECONDS`).
    pub drain_delay: Duration,
    /// Hard deadline for the whole shutdown, counted from the signal (`SHUTDOWN_TIMEOUT_SECONDS`).
    pub shutdown_timeout: Duration,
    /// How long a connection may sit without delivering a complete request head: the keep-alive
    /// idle timeout and the header read timeout at once (`IDLE_TIMEOUT_SECONDS`, default 75).
    pub idle_timeout: Duration,
    /// Largest request head accepted, in bytes (`MAX_HEADER_BYTES`, default 16384).
    pub max_header_bytes: usize,
    /// Longest `/delay/{ms}` honoured (`MAX_DELAY_MS`, default 60000).
    pub max_delay: Duration,
    /// Log one line per request (`ACCESS_LOG`, default off).
    pub access_log: bool,
    /// Log filter (`LOG_LEVEL`, default `info`; `RUST_LOG` wins when set).
    pub log_level: String,
    /// Log format (`LOG_FORMAT`: `auto`, `json`, `text`).
    pub log_format: LogFormat,
    /// How long the process waits before it binds its port (`STARTUP_DELAY_SECONDS`, default 0):
    /// models an application's warm-up (caches, connections, a JIT) during which connections
    /// are refused while the process is already running.
    pub startup_delay: Duration,
    /// Status of the page (`PAGE_STATUS`, default 200): 500 models a broken release whose
    /// `/ready` still passes, so only real traffic finds it.
    pub page_status: http::StatusCode,
    /// What SIGTERM does (`ON_SIGTERM`: `drain`, the default, or `unhandled`).
    pub on_sigterm: OnSigterm,
}

/// The ALB's default idle timeout; the server's must be longer (docs/failure-modes.md#fm-6).
pub const ALB_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads configuration through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let bind = parse(
            &get,
            "BIND",
            "0.0.0.0",
            "an IP address such as 0.0.0.0 or 127.0.0.1",
        )?;
        let port = parse(&get, "PORT", "8080", "a port number from 0 to 65535")?;
        let drain_delay = seconds(&get, "DRAIN_DELAY_SECONDS", "5")?;
        let shutdown_timeout = seconds(&get, "SHUTDOWN_TIMEOUT_SECONDS", "25")?;
        let idle_timeout = seconds(&get, "IDLE_TIMEOUT_SECONDS", "75")?;
        let startup_delay = seconds(&get, "STARTUP_DELAY_SECONDS", "0")?;
        if idle_timeout.is_zero() {
            return Err(ConfigError::Invalid {
                var: "IDLE_TIMEOUT_SECONDS",
                value: "0".into(),
                expected: "a positive number of seconds (above the load balancer's idle timeout)",
            });
        }
        if shutdown_timeout < drain_delay {
            return Err(ConfigError::Conflict(format!(
                "SHUTDOWN_TIMEOUT_SECONDS ({}) must be at least DRAIN_DELAY_SECONDS ({}): the \
                 deadline counts from the signal and includes the drain delay",
                shutdown_timeout.as_secs_f64(),
                drain_delay.as_secs_f64()
            )));
        }
        let max_header_bytes: usize = parse(
            &get,
            "MAX_HEADER_BYTES",
            "16384",
            "a number of bytes from 8192 to 1048576",
        )?;
        if !(8192..=1 << 20).contains(&max_header_bytes) {
            return Err(ConfigError::Invalid {
                var: "MAX_HEADER_BYTES",
                value: max_header_bytes.to_string(),
                expected: "a number of bytes from 8192 to 1048576",
            });
        }
        const MAX_DELAY_EXPECTED: &str = "a whole number of milliseconds from 0 to 86400000";
        let max_delay_ms: u64 = parse(&get, "MAX_DELAY_MS", "60000", MAX_DELAY_EXPECTED)?;
        if max_delay_ms > 86_400_000 {
            return Err(ConfigError::Invalid {
                var: "MAX_DELAY_MS",
                value: max_delay_ms.to_string(),
                expected: MAX_DELAY_EXPECTED,
            });
        }
        let access_log = match get("ACCESS_LOG").as_deref().map(str::to_ascii_lowercase) {
            None => false,
            Some(v) if matches!(v.as_str(), "1" | "true" | "on" | "yes") => true,
            Some(v) if matches!(v.as_str(), "0" | "false" | "off" | "no") => false,
            Some(v) => {
                return Err(ConfigError::Invalid {
                    var: "ACCESS_LOG",
                    value: v,
                    expected: "on or off",
                });
            }
        };
        let log_format = match get("LOG_FORMAT").as_deref().map(str::to_ascii_lowercase) {
            None => LogFormat::Auto,
            Some(v) if v == "auto" => LogFormat::Auto,
            Some(v) if v == "json" => LogFormat::Json,
            Some(v) if v == "text" => LogFormat::Text,
            Some(v) => {
                return Err(ConfigError::Invalid {
                    var: "LOG_FORMAT",
                    value: v,
                    expected: "auto, json or text",
                });
            }
        };
        const PAGE_STATUS_EXPECTED: &str = "an HTTP status code from 200 to 599";
        let page_status: u16 = parse(&get, "PAGE_STATUS", "200", PAGE_STATUS_EXPECTED)?;
        let page_status = http::StatusCode::from_u16(page_status)
            .ok()
            .filter(|_| (200..=599).contains(&page_status))
            .ok_or_else(|| ConfigError::Invalid {
                var: "PAGE_STATUS",
                value: page_status.to_string(),
                expected: PAGE_STATUS_EXPECTED,
            })?;
        let on_sigterm = on_sigterm(&get)?;
        let task_id = match get("TASK_ID") {
            Some(id) => header_safe("TASK_ID", id)?,
            None => default_task_id(),
        };
        Ok(Self {
            bind,
            port,
            message: get("APP_MSG").unwrap_or_else(|| "Hello from ECS".to_owned()),
            version: header_safe(
                "APP_VERSION",
                get("APP_VERSION").unwrap_or_else(|| "dev".into()),
            )?,
            task_id,
            drain_delay,
            shutdown_timeout,
            idle_timeout,
            max_header_bytes,
            max_delay: Duration::from_millis(max_delay_ms),
            access_log,
            log_level: get("LOG_LEVEL").unwrap_or_else(|| "info".to_owned()),
            log_format,
            startup_delay,
            page_status,
            on_sigterm,
        })
    }
}

fn on_sigterm(get: &impl Fn(&str) -> Option<String>) -> Result<OnSigterm, ConfigError> {
    match get("ON_SIGTERM").as_deref().map(str::to_ascii_lowercase) {
        None => Ok(OnSigterm::Drain),
        Some(v) if v == "drain" => Ok(OnSigterm::Drain),
        Some(v) if v == "unhandled" => Ok(OnSigterm::Unhandled),
        Some(v) => Err(ConfigError::Invalid {
            var: "ON_SIGTERM",
            value: v,
            expected: "drain or unhandled",
        }),
    }
}

fn parse<T: std::str::FromStr>(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    default: &str,
    expected: &'static str,
) -> Result<T, ConfigError> {
    let value = get(var).unwrap_or_else(|| default.to_owned());
    value.trim().parse().map_err(|_| ConfigError::Invalid {
        var,
        value,
        expected,
    })
}

/// Longest duration any variable may hold: a day. Far above any sensible drain or timeout, and
/// far below what `Instant + Duration` can hold, so deadlines computed from the signal never
/// overflow (`1e19` seconds used to pass validation and panic on SIGTERM).
pub const MAX_SECONDS: f64 = 86_400.0;

/// A duration in (possibly fractional) seconds, from zero to [`MAX_SECONDS`].
fn seconds(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    default: &str,
) -> Result<Duration, ConfigError> {
    const EXPECTED: &str = "a number of seconds from 0 to 86400 (for example 5 or 0.5)";
    let raw = get(var).unwrap_or_else(|| default.to_owned());
    let bad = || ConfigError::Invalid {
        var,
        value: raw.clone(),
        expected: EXPECTED,
    };
    let value: f64 = raw.trim().parse().map_err(|_| bad())?;
    if !(0.0..=MAX_SECONDS).contains(&value) {
        return Err(bad());
    }
    Duration::try_from_secs_f64(value).map_err(|_| bad())
}

/// Values that go into response headers must be visible ASCII.
fn header_safe(var: &'static str, value: String) -> Result<String, ConfigError> {
    if value.len() <= 128 && value.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(value)
    } else {
        Err(ConfigError::Invalid {
            var,
            value,
            expected: "up to 128 visible ASCII characters without spaces",
        })
    }
}

fn default_task_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{host}-{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_are_safe_behind_an_alb() {
        let c = config(&[]).unwrap();
        assert_eq!(c.port, 8080);
        assert_eq!(c.bind.to_string(), "0.0.0.0");
        assert_eq!(c.drain_delay, Duration::from_secs(5));
        assert_eq!(c.shutdown_timeout, Duration::from_secs(25));
        assert!(c.idle_timeout > ALB_IDLE_TIMEOUT);
        assert!(!c.access_log);
        assert_eq!(c.on_sigterm, OnSigterm::Drain);
        assert_eq!(
            config(&[("ON_SIGTERM", "Unhandled")]).unwrap().on_sigterm,
            OnSigterm::Unhandled
        );
        assert!(c.task_id.ends_with(&std::process::id().to_string()));
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (var, value) in [
            ("PORT", "abc"),
            ("PORT", "70000"),
            ("BIND", "localhost:1"),
            ("DRAIN_DELAY_SECONDS", "-1"),
            ("SHUTDOWN_TIMEOUT_SECONDS", "soon"),
            ("IDLE_TIMEOUT_SECONDS", "0"),
            ("MAX_HEADER_BYTES", "10"),
            ("ACCESS_LOG", "maybe"),
            ("LOG_FORMAT", "xml"),
            ("ON_SIGTERM", "ignore"),
            ("APP_VERSION", "v 1"),
            ("TASK_ID", "a\u{7f}b"),
            // Beyond a day: would overflow `Instant + Duration` at the signal.
            ("SHUTDOWN_TIMEOUT_SECONDS", "1e19"),
            ("DRAIN_DELAY_SECONDS", "1e19"),
            ("IDLE_TIMEOUT_SECONDS", "1e19"),
            ("SHUTDOWN_TIMEOUT_SECONDS", "86400.5"),
            ("DRAIN_DELAY_SECONDS", "inf"),
            ("IDLE_TIMEOUT_SECONDS", "NaN"),
            ("MAX_DELAY_MS", "18446744073709551615"),
        ] {
            let err = config(&[(var, value)]).unwrap_err().to_string();
            assert!(err.contains(var), "{var}={value}: {err}");
            assert!(err.contains("expected"), "{var}={value}: {err}");
        }
    }

    #[test]
    fn deadline_must_cover_the_drain_delay() {
        let err = config(&[
            ("DRAIN_DELAY_SECONDS", "10"),
            ("SHUTDOWN_TIMEOUT_SECONDS", "5"),
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("SHUTDOWN_TIMEOUT_SECONDS"), "{err}");
        assert!(err.contains("DRAIN_DELAY_SECONDS"), "{err}");
        let c = config(&[
            ("DRAIN_DELAY_SECONDS", "0"),
            ("SHUTDOWN_TIMEOUT_SECONDS", "0"),
        ])
        .unwrap();
        assert!(c.drain_delay.is_zero() && c.shutdown_timeout.is_zero());
    }

    #[test]
    fn a_day_is_the_longest_duration() {
        let c = config(&[
            ("DRAIN_DELAY_SECONDS", "86400"),
            ("SHUTDOWN_TIMEOUT_SECONDS", "86400"),
            ("IDLE_TIMEOUT_SECONDS", "86400"),
            ("MAX_DELAY_MS", "86400000"),
        ])
        .unwrap();
        assert_eq!(c.shutdown_timeout, Duration::from_secs(86_400));
        // The deadline the server computes at the signal fits an Instant.
        assert!(
            std::time::Instant::now()
                .checked_add(c.shutdown_timeout)
                .is_some()
        );
        let err = config(&[("SHUTDOWN_TIMEOUT_SECONDS", "1e19")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"1e19\"") && err.contains("86400"), "{err}");
    }

    #[test]
    fn fractional_seconds_and_blank_values() {
        let c = config(&[("DRAIN_DELAY_SECONDS", "0.25"), ("APP_MSG", "  ")]).unwrap();
        assert_eq!(c.drain_delay, Duration::from_millis(250));
        assert_eq!(c.message, "Hello from ECS");
    }
}

//! State shared by every connection: configuration, the pre-rendered page, and the lifecycle
//! (serving → draining) with the count of requests in flight.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use http::HeaderValue;

use crate::config::Config;
use crate::routes::escape_html;

/// Everything a request handler reads.
#[derive(Debug)]
pub struct AppState {
    /// The validated configuration.
    pub config: Config,
    /// When the process started serving (for `/version` uptime).
    pub started: Instant,
    /// Serving or draining, and requests in flight.
    pub lifecycle: Lifecycle,
    /// `x-app-version` value.
    pub version_header: HeaderValue,
    /// `x-served-by` value.
    pub served_by_header: HeaderValue,
    /// The HTML page around the request path.
    pub page: Page,
}

/// The HTML page, rendered once at start; only the request path is filled in per request.
#[derive(Debug)]
pub struct Page {
    /// Everything before the path.
    pub head: String,
    /// Everything after the path.
    pub tail: String,
    /// The whole page for the path `/`, the one a load balancer and a probe request most.
    pub root: bytes::Bytes,
}

impl AppState {
    /// Builds the state and gives it the lifetime of the process: every connection and request
    /// refers to it without reference counting (one allocation, made once at start).
    pub fn leak(config: Config) -> &'static Self {
        Box::leak(Box::new(Self::new(config)))
    }

    /// Builds the state (renders the page, prepares header values).
    pub fn new(config: Config) -> Self {
        let msg = escape_html(&config.message);
        let version = escape_html(&config.version);
        let task = escape_html(&config.task_id);
        let head = format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{msg}</title></head>\n\
             <body><h1>{msg}</h1>\n<p>version <b>{version}</b> &middot; task <b>{task}</b></p>\n\
             <p>path <code>"
        );
        let tail = "</code></p>\n</body></html>\n".to_owned();
        let root = bytes::Bytes::from(format!("{head}/{tail}"));
        // Config validation guarantees visible ASCII; fall back rather than panic if that changes.
        let header = |v: &str| {
            HeaderValue::from_str(v).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
        };
        Self {
            version_header: header(&config.version),
            served_by_header: header(&config.task_id),
            started: Instant::now(),
            lifecycle: Lifecycle::default(),
            page: Page { head, tail, root },
            config,
        }
    }
}

/// Serving → draining, and how many requests are being answered.
#[derive(Debug, Default)]
pub struct Lifecycle {
    draining: AtomicBool,
    in_flight: AtomicUsize,
    connections: AtomicUsize,
}

impl Lifecycle {
    /// Whether a shutdown signal has been received.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Turns readiness off and makes every further response close its connection.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Requests accepted and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Connections accepted and not yet closed.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }
}

/// One request in flight; dropping it counts the request as done.
#[derive(Debug)]
pub struct InFlight(&'static AppState);

impl InFlight {
    /// Counts a request until the guard drops.
    pub fn enter(state: &'static AppState) -> Self {
        state.lifecycle.in_flight.fetch_add(1, Ordering::Relaxed);
        Self(state)
    }

    /// The shared state.
    pub fn state(&self) -> &'static AppState {
        self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.lifecycle.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One open connection; dropping it counts the connection as closed.
#[derive(Debug)]
pub struct OpenConnection(&'static AppState);

impl OpenConnection {
    /// Counts a connection until the guard drops.
    pub fn open(state: &'static AppState) -> Self {
        state.lifecycle.connections.fetch_add(1, Ordering::Relaxed);
        Self(state)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.lifecycle.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

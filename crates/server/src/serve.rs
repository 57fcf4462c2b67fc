//! The listener, the accept loop and the drain.
//!
//! Shutdown, from the first signal:
//! 1. readiness turns 503 and every response carries `Connection: close`;
//! 2. the listener keeps accepting and serving for the drain delay (the load balancer keeps
//!    routing for a few seconds after deregistration starts);
//! 3. the listener closes; idle connections close; in-flight requests finish;
//! 4. the process exits 0, or, when the deadline (counted from the signal) passes first, returns
//!    [`ServeError::DeadlineExceeded`] naming how much was cut off.

use std::net::SocketAddr;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tower::Layer;

use crate::routes::Routes;
use crate::signals::Signal;
use crate::stamp::StampLayer;
use crate::state::{AppState, OpenConnection};

/// Why serving ended badly.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address from `BIND` and `PORT`.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// In-flight work outlived `SHUTDOWN_TIMEOUT_SECONDS`.
    #[error(
        "shutdown deadline of {deadline:?} exceeded: {requests} request(s) in flight on \
         {connections} connection(s) were cut off"
    )]
    DeadlineExceeded {
        /// The configured deadline.
        deadline: Duration,
        /// Requests still being answered.
        requests: usize,
        /// Connections still open.
        connections: usize,
    },
}

/// A bound listener, ready to serve.
#[derive(Debug)]
pub struct Bound {
    listener: TcpListener,
    state: &'static AppState,
}

/// How a clean shutdown went.
#[derive(Debug, Clone, Copy)]
pub struct Drained {
    /// The signal that started it.
    pub signal: Signal,
    /// From the signal to the last connection closed.
    pub took: Duration,
}

impl Bound {
    /// Binds `BIND:PORT` (port 0 picks a free one; see [`Bound::local_addr`]).
    pub fn bind(state: &'static AppState) -> Result<Self, ServeError> {
        let addr = SocketAddr::new(state.config.bind, state.config.port);
        let bind = || -> std::io::Result<TcpListener> {
            let socket = if addr.is_ipv4() {
                TcpSocket::new_v4()?
            } else {
                TcpSocket::new_v6()?
            };
            socket.set_reuseaddr(true)?;
            socket.bind(addr)?;
            socket.listen(1024)
        };
        let listener = bind().map_err(|source| ServeError::Bind { addr, source })?;
        Ok(Self { listener, state })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until a signal arrives on `signals`, then drains (see the module docs).
    pub async fn serve(self, mut signals: mpsc::Receiver<Signal>) -> Result<Drained, ServeError> {
        let Self { listener, state } = self;
        let config = &state.config;
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            // hyper runs one timer from the moment a connection waits for a request head until the
            // head is complete: it is the keep-alive idle timeout and the slow-header timeout at
            // once, and it must outlast the load balancer's idle timeout (docs/failure-modes.md#fm-6).
            .header_read_timeout(config.idle_timeout)
            .max_buf_size(config.max_header_bytes)
            .keep_alive(true);
        let service = StampLayer::new(state).layer(Routes::new(state));
        let graceful = GracefulShutdown::new();

        let accept = |stream: tokio::net::TcpStream, peer: SocketAddr| {
            if let Err(err) = stream.set_nodelay(true) {
                tracing::debug!(%peer, %err, "cannot set TCP_NODELAY");
            }
            let conn = http.serve_connection(
                TokioIo::new(stream),
                TowerToHyperService::new(service.clone()),
            );
            let conn = graceful.watch(conn);
            let open = OpenConnection::open(state);
            tokio::spawn(async move {
                let _open = open;
                if let Err(err) = conn.await {
                    tracing::debug!(%peer, %err, "connection ended with an error");
                }
            });
        };

        // Serving.
        let signal = loop {
            tokio::select! {
                biased;
                signal = signals.recv() => break signal.unwrap_or(Signal::Closed),
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => accept(stream, peer),
                    Err(err) => accept_error(&err).await,
                },
            }
        };
        let since = Instant::now();
        // Configuration bounds both durations (a day at most), so these cannot overflow; stay
        // total anyway rather than panic in the middle of a drain.
        let deadline = later(since, config.shutdown_timeout);
        state.lifecycle.start_draining();
        tracing::info!(
            %signal,
            drain_delay_s = config.drain_delay.as_secs_f64(),
            deadline_s = config.shutdown_timeout.as_secs_f64(),
            connections = state.lifecycle.connections(),
            "draining: readiness is now 503, still serving until the drain delay ends"
        );

        // Draining: keep accepting so that requests the load balancer still routes here succeed.
        let drain_end = later(since, config.drain_delay);
        let mut signals_open = true;
        loop {
            tokio::select! {
                biased;
                () = tokio::time::sleep_until(drain_end) => break,
                again = signals.recv(), if signals_open => match again {
                    Some(again) => {
                        tracing::warn!(signal = %again, "second signal: ending the drain delay now");
                        break;
                    }
                    None => signals_open = false,
                },
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => accept(stream, peer),
                    Err(err) => accept_error(&err).await,
                },
            }
        }
        drop(listener);
        tracing::info!(
            connections = state.lifecycle.connections(),
            in_flight = state.lifecycle.in_flight(),
            "listener closed: finishing in-flight requests"
        );

        // Closing: idle connections close now, busy ones after their current response.
        match tokio::time::timeout_at(deadline, graceful.shutdown()).await {
            Ok(()) => {
                let took = since.elapsed();
                tracing::info!(took_ms = took.as_millis() as u64, "drained: exiting");
                Ok(Drained { signal, took })
            }
            Err(_) => Err(ServeError::DeadlineExceeded {
                deadline: config.shutdown_timeout,
                requests: state.lifecycle.in_flight(),
                connections: state.lifecycle.connections(),
            }),
        }
    }
}

/// `at + d`, saturating at a year from `at` (never reached: durations are bounded to a day).
fn later(at: Instant, d: Duration) -> Instant {
    at.checked_add(d)
        .or_else(|| at.checked_add(Duration::from_secs(365 * 86_400)))
        .unwrap_or(at)
}

/// Accept errors are the client's or the machine's (EMFILE), never a reason to stop serving.
async fn accept_error(err: &std::io::Error) {
    tracing::warn!(%err, "accept failed");
    tokio::time::sleep(Duration::from_millis(20)).await;
}

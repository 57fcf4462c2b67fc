//! SIGTERM and SIGINT, in one small unit, delivered as a channel of [`Signal`]s.

use std::fmt;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

/// What asked the server to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM: ECS, Docker and Kubernetes stop a task with it.
    Terminate,
    /// SIGINT: Ctrl-C in a terminal.
    Interrupt,
    /// The signal source went away (only in tests that drop the sender).
    Closed,
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Terminate => "SIGTERM",
            Self::Interrupt => "SIGINT",
            Self::Closed => "closed",
        })
    }
}

/// Installs the handlers and forwards every SIGTERM and SIGINT into the returned channel.
pub fn listen() -> std::io::Result<mpsc::Receiver<Signal>> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        loop {
            let received = tokio::select! {
                Some(()) = term.recv() => Signal::Terminate,
                Some(()) = int.recv() => Signal::Interrupt,
                else => break,
            };
            if tx.send(received).await.is_err() {
                break;
            }
        }
    });
    Ok(rx)
}

//! What the data plane did, as a stream of events: logged, broadcast to subscribers (the
//! orchestrator, tests), and easy to turn into probe markers so a report lines failures up with
//! the change that caused them.
//!
//! Every event is stamped with the wall clock, to put it on a probe's timeline, and with the
//! monotonic instant the control plane's timers use ([`Event::instant`]), so a duration between
//! two events is measured on the clock that made them.

use std::fmt;
use std::net::SocketAddr;
use std::time::SystemTime;

use serde::Serialize;
use tokio::sync::broadcast;

/// ELBv2 target health states (here, the lowest module that needs them: events carry them;
/// the data plane's health checks, the control plane and the API read them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetHealth {
    /// Registered, not yet checked enough to be healthy.
    Initial,
    /// Passing health checks: receives traffic.
    Healthy,
    /// Failing health checks: no traffic unless the whole group fails open.
    Unhealthy,
    /// Deregistered, finishing in-flight requests.
    Draining,
    /// Deregistered and drained.
    Unused,
}

impl fmt::Display for TargetHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Initial => "initial",
            Self::Healthy => "healthy",
            Self::Unhealthy => "unhealthy",
            Self::Draining => "draining",
            Self::Unused => "unused",
        })
    }
}

/// One thing that happened.
#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    /// A task's process started.
    TaskStarted {
        /// Task id.
        task: String,
        /// Where its container port answers.
        endpoint: SocketAddr,
    },
    /// A task's process exited.
    TaskStopped {
        /// Task id.
        task: String,
        /// How it ended (`exit 0`, `signal 9`).
        how: String,
    },
    /// A target was registered with a target group.
    TargetRegistered {
        /// Target group.
        target_group: String,
        /// Target address.
        target: SocketAddr,
    },
    /// A target's health state changed.
    TargetHealth {
        /// Target group.
        target_group: String,
        /// Target address.
        target: SocketAddr,
        /// New state.
        state: TargetHealth,
        /// ELBv2 reason code, when there is one.
        reason: Option<&'static str>,
    },
    /// A target finished draining and was removed.
    TargetDeregistered {
        /// Target group.
        target_group: String,
        /// Target address.
        target: SocketAddr,
        /// Requests still in flight when the delay ended (they were cut off).
        cut_off: usize,
    },
    /// A control-plane transition: an instance launched or terminating, a container instance
    /// draining, an instance refresh moving on, a service placing or stopping a task.
    Control {
        /// `autoscaling`, `ecs`, `ec2`, `elbv2`.
        service: &'static str,
        /// What happened, in AWS's words where AWS has some.
        message: String,
    },
    /// A listener's forward weights changed.
    WeightsChanged {
        /// Listener name.
        listener: String,
        /// `target group=weight` pairs.
        weights: String,
    },
}

/// An event with its time, on the wall clock (for reports) and on the monotonic clock.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// When it happened.
    pub at: SystemTime,
    /// When it happened, on the monotonic clock the control plane's timers run on: measure
    /// durations between events with this (the wall clock may be stepped or slewed).
    pub instant: tokio::time::Instant,
    /// What happened.
    pub kind: EventKind,
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TaskStarted { task, endpoint } => write!(f, "task {task} started on {endpoint}"),
            Self::TaskStopped { task, how } => write!(f, "task {task} stopped ({how})"),
            Self::TargetRegistered {
                target_group,
                target,
            } => {
                write!(f, "{target} registered in {target_group}")
            }
            Self::TargetHealth {
                target_group,
                target,
                state,
                reason,
            } => {
                write!(f, "{target} {state} in {target_group}")?;
                match reason {
                    Some(r) => write!(f, " ({r})"),
                    None => Ok(()),
                }
            }
            Self::TargetDeregistered {
                target_group,
                target,
                cut_off,
            } => write!(
                f,
                "{target} deregistered from {target_group} ({cut_off} request(s) cut off)"
            ),
            Self::WeightsChanged { listener, weights } => {
                write!(f, "listener {listener} weights {weights}")
            }
            Self::Control { service, message } => write!(f, "{service}: {message}"),
        }
    }
}

/// Publishes events; cheap to clone.
#[derive(Debug, Clone)]
pub struct Events {
    tx: broadcast::Sender<Event>,
}

impl Default for Events {
    fn default() -> Self {
        Self::new()
    }
}

impl Events {
    /// A new bus (subscribers that fall 1024 events behind lose the oldest).
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(1024);
        Self { tx }
    }

    /// Logs and broadcasts `kind`, stamped now.
    pub fn emit(&self, kind: EventKind) {
        tracing::info!(target: "localaws::event", "{kind}");
        let _ = self.tx.send(Event {
            at: SystemTime::now(),
            instant: tokio::time::Instant::now(),
            kind,
        });
    }

    /// Receives every event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}

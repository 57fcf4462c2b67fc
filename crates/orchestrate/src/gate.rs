//! The gate every rollout shares: the first failed request of any of its probes, as one
//! stream ([`Failures`]), and what the gate did about it ([`Gate`]: the call it made and how long
//! after the first failed request). `refresh` rolls an instance refresh back, `deploy` stops a
//! deployment with rollback; both time the reaction the same way.

use std::time::{Duration, SystemTime};

use loadprobe::Probe;

/// What the gate did.
#[derive(Debug, Clone)]
pub struct Gate {
    /// Why it fired (`first failed request`, `interrupted`).
    pub why: String,
    /// Intended start of the first failed request (wall clock), when a failure fired it.
    pub first_failure: Option<SystemTime>,
    /// When the rollback (or cancel) call was made.
    pub called_at: SystemTime,
    /// `rollback` or `cancel`.
    pub action: &'static str,
    /// From the first failed request to the call.
    pub reaction: Option<Duration>,
}

impl Gate {
    /// The gate fired for `why` at `called_at` with `action`; the reaction is measured from
    /// the first failed request, when one fired it.
    pub fn new(
        why: &str,
        first_failure: Option<SystemTime>,
        called_at: SystemTime,
        action: &'static str,
    ) -> Gate {
        Gate {
            why: why.to_owned(),
            first_failure,
            called_at,
            action,
            reaction: first_failure.and_then(|f| called_at.duration_since(f).ok()),
        }
    }
}

/// The first failed request of each of a rollout's probes, as one stream: the gate watches them
/// all. One watcher task per probe, stopped when this is dropped.
pub(crate) struct Failures {
    rx: tokio::sync::mpsc::Receiver<Failure>,
    _watchers: tokio::task::JoinSet<()>,
}

/// A probe's first failed request.
pub(crate) struct Failure {
    /// Which probe (index into the slice given to [`Failures::watch`]).
    pub probe: usize,
    /// When the failed request was sent (wall clock): the outage's start.
    pub at: Option<SystemTime>,
}

impl Failure {
    /// What fired the gate, naming the probe when there are several.
    pub(crate) fn describe(&self, probes: usize) -> String {
        if probes > 1 {
            format!(
                "first failed request (probe {} of {probes})",
                self.probe + 1
            )
        } else {
            "first failed request".to_owned()
        }
    }
}

impl Failures {
    pub(crate) fn watch(probes: &[&Probe]) -> Failures {
        let (tx, rx) = tokio::sync::mpsc::channel(probes.len().max(1));
        let mut watchers = tokio::task::JoinSet::new();
        for (i, p) in probes.iter().enumerate() {
            let mut live = p.watch();
            let started = p.started_at();
            let tx = tx.clone();
            watchers.spawn(async move {
                while live.changed().await.is_ok() {
                    let state = live.borrow_and_update().clone();
                    if state.errors > 0 {
                        let at = Some(failure_time(started, &state));
                        let _ = tx.send(Failure { probe: i, at }).await;
                        return;
                    }
                }
            });
        }
        Failures {
            rx,
            _watchers: watchers,
        }
    }

    /// The next probe's first failure; never resolves without probes (nor after each has
    /// reported).
    pub(crate) async fn next(&mut self) -> Failure {
        match self.rx.recv().await {
            Some(f) => f,
            None => std::future::pending().await,
        }
    }
}

/// When the first failed request was sent (wall clock): the outage's start on the probe's
/// timeline.
fn failure_time(started_at: SystemTime, state: &loadprobe::LiveState) -> SystemTime {
    started_at
        + Duration::from_millis(
            state
                .outage
                .map_or(state.elapsed.as_millis() as u64, |o| o.start_ms),
        )
}

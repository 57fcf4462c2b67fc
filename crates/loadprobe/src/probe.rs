//! The handle of a running probe: start, mark events, watch, stop, finish.
//!
//! [`Probe::start`] starts the schedule thread and the sender threads, each a single-threaded
//! runtime with its share of the connections: closed loop, one per core, as wrk; open loop, one
//! per 10,000 requests/s with the recorder on the first, since at 1,000 requests/s a request's
//! cost is mostly thread wake-ups and a result handed to another thread was one more per
//! request.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use tokio::sync::{Mutex, mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::config::{ProbeConfig, Rate, RequestHeader};
use crate::error::ProbeError;
use crate::hdrlog::HdrLog;
use crate::live::LiveState;
use crate::recorder::{self, Ended, Setup};
use crate::report::{ConfigSummary, Event, Report, TlsSummary};
use crate::schedule::{self, Idle, Schedule, Stop};
use crate::sender::{self, Jobs, SenderConfig};
use crate::target::Target;
use crate::verdict::SloSummary;

/// A cloneable handle that puts event markers on a probe's timeline.
#[derive(Debug, Clone)]
pub struct Marker {
    start: std::time::Instant,
    start_wall: SystemTime,
    tx: mpsc::UnboundedSender<Event>,
}

impl Marker {
    /// Marks `label` now.
    pub fn mark(&self, label: impl Into<String>) {
        let at_ms = self.start.elapsed().as_millis() as i64;
        self.push(at_ms, label.into());
    }

    /// Marks `label` at wall-clock time `at` (which may be before the probe started).
    pub fn mark_at(&self, at: SystemTime, label: impl Into<String>) {
        let at_ms = match at.duration_since(self.start_wall) {
            Ok(d) => d.as_millis() as i64,
            Err(e) => -(e.duration().as_millis() as i64),
        };
        self.push(at_ms, label.into());
    }

    fn push(&self, at_ms: i64, label: String) {
        // After the probe finished nobody listens; a late marker is simply not recorded.
        let _ = self.tx.send(Event {
            at_ms,
            label,
            source: String::new(),
        });
    }
}

/// A cloneable handle that stops a probe early (for a Ctrl-C handler or an abort decision).
#[derive(Debug, Clone)]
pub struct StopHandle(Arc<Stop>);

impl StopHandle {
    /// Stops sending; see [`Probe::stop`].
    pub fn stop(&self) {
        self.0.stop();
    }
}

/// Stops the schedule if the handle is dropped without [`Probe::finish`].
#[derive(Debug)]
struct StopOnDrop(Arc<Stop>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// A running probe. See the crate documentation for an example.
#[derive(Debug)]
pub struct Probe {
    stop: StopOnDrop,
    marker: Marker,
    live: watch::Receiver<LiveState>,
    report: oneshot::Receiver<Report>,
    start_wall: SystemTime,
}

impl Probe {
    /// Validates `cfg`, creates the HDR log, builds the TLS client, and starts sending. Must be
    /// called within a tokio runtime; the senders run on threads of their own (single-threaded
    /// runtimes, connections shared out), the open loop's recorder on the first of them.
    /// Returns at once; the first request is due now.
    #[expect(
        clippy::too_many_lines,
        reason = "setup in the order it must happen: validate, HDR log, TLS, threads, schedule"
    )]
    pub fn start(cfg: ProbeConfig) -> Result<Probe, ProbeError> {
        cfg.validate()?;
        let target = Target::from_uri(&cfg.target, &cfg.headers)?.with_tls(&cfg.tls)?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| ProbeError::NoRuntime)?;
        let hdr_log = cfg.hdr_log.as_deref().map(HdrLog::create).transpose()?;

        let start_std = std::time::Instant::now();
        let start_wall = SystemTime::now();
        let start = Instant::from_std(start_std);
        let stop = Arc::new(Stop::default());
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let (live_tx, live_rx) = watch::channel(LiveState::default());
        let (results_tx, results_rx) = mpsc::unbounded_channel();

        let config = ConfigSummary {
            rate: cfg.rate.to_string(),
            rate_per_s: cfg.rate.per_second(),
            duration_ms: cfg.duration.as_millis() as u64,
            connections: cfg.connections,
            mode: cfg.mode,
            timeout_ms: cfg.timeout.as_millis() as u64,
            slo: SloSummary::from(&cfg.slo),
            ok_status: cfg.ok_status.to_string(),
            lb_marker: cfg.lb_marker.to_string(),
            merge_gap_ms: cfg.incident_gap().as_millis() as u64,
            tls: target
                .is_tls()
                .then(|| TlsSummary::new(&cfg.tls, target.host())),
            headers: cfg.headers.iter().map(RequestHeader::for_report).collect(),
        };
        let setup = Setup {
            start,
            start_wall,
            interval: cfg.interval,
            incident_gap: cfg.incident_gap(),
            // Late completions overshoot the deadline a little; keep them distinguishable.
            high_us: (cfg.timeout.as_micros() as u64)
                .saturating_mul(2)
                .max(1_000_000),
            schedule_us: match cfg.rate {
                Rate::PerSecond(_) => Some(cfg.duration.as_micros() as u64),
                Rate::Max => None,
            },
            target: cfg.target.to_string(),
            config,
            hdr_log,
            live: live_tx,
        };
        // Closed loop counts what it hands out in `next`, the scheduler in `stop`.
        let next = Arc::new(AtomicU64::new(0));
        let record = {
            let (stop, next) = (stop.clone(), next.clone());
            let closed_loop = cfg.rate == Rate::Max;
            recorder::record(setup, results_rx, events_rx, move || Ended {
                stopped_early: stop.was_cut_short(),
                dispatched: if closed_loop {
                    next.load(Ordering::SeqCst)
                } else {
                    stop.dispatched()
                },
            })
        };
        let (report_tx, report_rx) = oneshot::channel();

        let jobs = match cfg.rate {
            Rate::PerSecond(rate) => {
                let (jobs_tx, jobs_rx) = mpsc::unbounded_channel();
                let idle = Arc::new(Idle::new(cfg.connections));
                let schedule = Schedule::new(rate, cfg.duration);
                let (stop, idle_s) = (stop.clone(), idle.clone());
                let spawned = std::thread::Builder::new()
                    .name("loadprobe-schedule".into())
                    .spawn(move || {
                        schedule::dispatch(schedule, start_std, &jobs_tx, &stop, &idle_s)
                    });
                if let Err(e) = spawned {
                    return Err(ProbeError::Internal(format!(
                        "cannot start the scheduler thread: {e}"
                    )));
                }
                Jobs::Scheduled {
                    queue: Arc::new(Mutex::new(jobs_rx)),
                    idle,
                }
            }
            Rate::Max => Jobs::Max {
                next,
                end: start + cfg.duration,
                stop: stop.clone(),
            },
        };
        let sender_cfg = Arc::new(SenderConfig {
            target,
            mode: cfg.mode,
            timeout: cfg.timeout,
            start,
            ok_status: cfg.ok_status,
            lb_marker: cfg.lb_marker,
        });
        let record_on_first = match cfg.rate {
            // Open loop hands over every result at once: on the senders' own thread that
            // wakes no other thread, which is most of what a request costs at 1,000/s.
            Rate::PerSecond(_) => Some((record, report_tx)),
            // Closed loop batches its results; its sender threads have no time to spare.
            Rate::Max => {
                runtime.spawn(async move {
                    let _ = report_tx.send(record.await);
                });
                None
            }
        };
        spawn_senders(
            sender_threads(cfg.rate, cfg.connections),
            cfg.connections,
            &sender_cfg,
            &jobs,
            &results_tx,
            record_on_first,
        )?;

        Ok(Probe {
            stop: StopOnDrop(stop),
            marker: Marker {
                start: start_std,
                start_wall,
                tx: events_tx,
            },
            live: live_rx,
            report: report_rx,
            start_wall,
        })
    }

    /// Puts an event marker on the timeline, stamped now.
    pub fn mark(&self, label: impl Into<String>) {
        self.marker.mark(label);
    }

    /// A cloneable marker handle to pass to whatever drives the deployment.
    pub fn marker(&self) -> Marker {
        self.marker.clone()
    }

    /// The latest live snapshot.
    pub fn live(&self) -> LiveState {
        self.live.borrow().clone()
    }

    /// A receiver updated at least once per interval, and at once when an outage opens.
    pub fn watch(&self) -> watch::Receiver<LiveState> {
        self.live.clone()
    }

    /// Wall-clock time of the probe's start (the first intended send).
    pub fn started_at(&self) -> SystemTime {
        self.start_wall
    }

    /// A cloneable handle that stops this probe, usable while [`Probe::finish`] is awaited.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle(self.stop.0.clone())
    }

    /// Stops sending. Requests in flight (or already due) finish, each within its timeout.
    pub fn stop(&self) {
        self.stop.0.stop();
    }

    /// Waits until the schedule ends (or [`Probe::stop`]) and every request has a result, then
    /// returns the report.
    pub async fn finish(self) -> Result<Report, ProbeError> {
        let Probe { stop, report, .. } = self;
        let report = report
            .await
            .map_err(|_| ProbeError::Internal("the recorder ended without a report".into()));
        drop(stop);
        report
    }
}

/// Open-loop requests per second one sender thread takes; a higher rate gets more threads.
const OPEN_LOOP_RATE_PER_THREAD: f64 = 10_000.0;

/// How many sender threads: one per core for the closed loop (as wrk), one per
/// [`OPEN_LOOP_RATE_PER_THREAD`] for the open loop; never more than cores or connections.
fn sender_threads(rate: Rate, connections: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let wanted = match rate {
        Rate::Max => cores,
        Rate::PerSecond(r) => (r / OPEN_LOOP_RATE_PER_THREAD).ceil() as usize,
    };
    wanted.clamp(1, cores).min(connections)
}

/// Sender threads, each with its own single-threaded runtime and its share of the
/// connections, as wrk does: no work stealing, no cross-thread wake-up per request. The first
/// also runs the recorder when given one, and sends its report.
fn spawn_senders<R>(
    threads: usize,
    connections: usize,
    sender_cfg: &Arc<SenderConfig>,
    jobs: &Jobs,
    results: &mpsc::UnboundedSender<sender::Batch>,
    mut record: Option<(R, oneshot::Sender<Report>)>,
) -> Result<(), ProbeError>
where
    R: Future<Output = Report> + Send + 'static,
{
    for t in 0..threads {
        let share = connections / threads + usize::from(t < connections % threads);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ProbeError::Internal(format!("cannot start a sender runtime: {e}")))?;
        let (cfg, jobs, results) = (sender_cfg.clone(), jobs.clone(), results.clone());
        let record = record.take();
        std::thread::Builder::new()
            .name(format!("loadprobe-send-{t}"))
            .spawn(move || {
                runtime.block_on(async move {
                    let mut set = tokio::task::JoinSet::new();
                    for _ in 0..share {
                        set.spawn(sender::run(cfg.clone(), jobs.clone(), results.clone()));
                    }
                    // The recorder ends once every sender has dropped its results handle.
                    drop(results);
                    if let Some((record, report)) = record {
                        let _ = report.send(record.await);
                    }
                    while set.join_next().await.is_some() {}
                });
            })
            .map_err(|e| ProbeError::Internal(format!("cannot start a sender thread: {e}")))?;
    }
    Ok(())
}

/// Runs a probe to the end: [`Probe::start`] then [`Probe::finish`].
pub async fn run(cfg: ProbeConfig) -> Result<Report, ProbeError> {
    Probe::start(cfg)?.finish().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sender_threads_follow_cores_and_the_open_loop_rate() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(sender_threads(Rate::Max, 64), cores);
        assert_eq!(sender_threads(Rate::Max, 1), 1);
        assert_eq!(
            sender_threads(Rate::PerSecond(1000.0), 16),
            1,
            "one thread at 1,000/s"
        );
        assert_eq!(sender_threads(Rate::PerSecond(0.5), 16), 1);
        assert_eq!(sender_threads(Rate::PerSecond(25_000.0), 64), cores.min(3));
        assert_eq!(sender_threads(Rate::PerSecond(1e9), 2), cores.min(2));
    }
}

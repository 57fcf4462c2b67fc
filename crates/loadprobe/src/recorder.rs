//! The recorder: the one task that turns request results into figures.
//!
//! Senders hand it a [`Sample`] per request over a channel and share nothing else with it. Work
//! per sample is O(1) and nothing per request is kept: whole-run histograms, per-interval
//! accumulators (one small row per closed interval, full histograms go to the HDR log on disk),
//! and a reorder window of 16 bytes per request in flight that feeds the outage detector in
//! intended-start order. An interval closes once every request intended to start in it has a
//! result.
//!
//! Errors are counted by kind (`connect_refused` … `http_502_lb` / `http_500_target`, the load
//! balancer told from the target by `server: awselb/2.0`); task ids are interned to a `u16`, at
//! most [`MAX_TASKS`](crate::MAX_TASKS) per run and `(other)`, so a task's count is an index
//! into a small `Vec`; the run histogram's percentile distribution follows HdrHistogram's 5
//! ticks per half distance, at most 300 points.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::Hash;
use std::time::{Duration, SystemTime};

use hdrhistogram::Histogram;
use http::HeaderValue;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};

use crate::error::ErrorKind;
use crate::hdrlog::HdrLog;
use crate::histo::{self, Percentiles};
use crate::incident::{Incident, IncidentDetector, Seen};
use crate::live::{LiveOutage, LiveState};
use crate::outage::{GapTracker, OutageDetector};
use crate::report::{
    ConfigSummary, ErrorSummary, Event, Interval, MAX_TASKS, Report, TaskSummary, order_and_bound,
};
use crate::verdict::{self, Measured};

/// Distinct versions / error kinds kept; more are counted as `(other)` (task ids: [`MAX_TASKS`]).
const MAX_NAMES: usize = 1024;
/// Distinct versions kept per task; a task's responses from any further version are counted
/// under `(other)` in its summary.
const MAX_TASK_VERSIONS: usize = 8;
/// Events kept.
const MAX_EVENTS: usize = 10_000;

/// The result of one request.
#[derive(Debug)]
pub(crate) struct Sample {
    /// Position in the schedule (0, 1, 2, ...; each exactly once).
    pub(crate) seq: u64,
    /// Intended start, µs since the probe's start.
    pub(crate) intended_us: u64,
    /// Completion (response read, error, or deadline), µs since the probe's start.
    pub(crate) done_us: u64,
    /// How late the scheduler dispatched it, µs.
    pub(crate) lag_us: u64,
    /// When a connection took it and began the exchange, µs since the probe's start: after the
    /// scheduler's lag and any wait for a free connection.
    pub(crate) sent_us: u64,
    /// It found every connection busy.
    pub(crate) pool_wait: bool,
    /// The success status, or why it failed.
    pub(crate) result: Result<u16, ErrorKind>,
    /// `x-app-version` of the response.
    pub(crate) version: Option<HeaderValue>,
    /// `x-served-by` of the response.
    pub(crate) served_by: Option<HeaderValue>,
    /// On a load balancer's error: the target it was forwarding to.
    pub(crate) lb_target: Option<HeaderValue>,
}

/// How the sending ended, read when the last sender is gone.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ended {
    /// Stopped before the schedule ended.
    pub(crate) stopped_early: bool,
    /// Requests handed out to senders: each must have exactly one result.
    pub(crate) dispatched: u64,
}

/// What the recorder needs to know besides the samples.
pub(crate) struct Setup {
    pub(crate) start: Instant,
    pub(crate) start_wall: SystemTime,
    pub(crate) interval: Duration,
    /// Failures at most this far apart belong to one incident.
    pub(crate) incident_gap: Duration,
    /// Latencies above this are clamped (the timeout plus slack).
    pub(crate) high_us: u64,
    /// End of the schedule, µs; `None` for `--rate max`.
    pub(crate) schedule_us: Option<u64>,
    pub(crate) target: String,
    pub(crate) config: ConfigSummary,
    pub(crate) hdr_log: Option<HdrLog>,
    pub(crate) live: watch::Sender<LiveState>,
}

/// Names seen in responses (or error kinds), interned to small ids with whole-run totals.
struct Names<K> {
    ids: HashMap<K, u16>,
    names: Vec<String>,
    totals: Vec<u64>,
    other: Option<u16>,
    /// Distinct names kept (at most `u16::MAX`); ids run from 0 in order of first sight.
    cap: usize,
}

impl<K: Hash + Eq> Names<K> {
    fn new(cap: usize) -> Self {
        Names {
            ids: HashMap::new(),
            names: Vec::new(),
            totals: Vec::new(),
            other: None,
            cap: cap.min(usize::from(u16::MAX) - 1),
        }
    }

    fn push(&mut self, name: String) -> u16 {
        self.names.push(name);
        self.totals.push(0);
        (self.names.len() - 1) as u16
    }

    /// The id of `key`, counted once more in the totals.
    fn count(&mut self, key: K, name: impl FnOnce(&K) -> String) -> u16 {
        let id = match self.ids.get(&key) {
            Some(&id) => id,
            None if self.ids.len() < self.cap => {
                let id = self.push(name(&key));
                self.ids.insert(key, id);
                id
            }
            None => match self.other {
                Some(id) => id,
                None => {
                    let id = self.push("(other)".to_owned());
                    self.other = Some(id);
                    id
                }
            },
        };
        self.totals[id as usize] += 1;
        id
    }

    fn totals(&self) -> BTreeMap<String, u64> {
        self.names
            .iter()
            .cloned()
            .zip(self.totals.iter().copied())
            .collect()
    }

    fn map(&self, counts: &[(u16, u32)]) -> BTreeMap<String, u64> {
        counts
            .iter()
            .map(|&(id, n)| (self.names[id as usize].clone(), u64::from(n)))
            .collect()
    }

    fn map64(&self, counts: &[(u16, u64)]) -> BTreeMap<String, u64> {
        counts
            .iter()
            .map(|&(id, n)| (self.names[id as usize].clone(), n))
            .collect()
    }
}

fn header_name(v: &Option<HeaderValue>) -> String {
    match v {
        Some(v) => String::from_utf8_lossy(v.as_bytes()).into_owned(),
        None => "(none)".to_owned(),
    }
}

fn culprit_name(v: &Option<HeaderValue>) -> String {
    match v {
        Some(v) => String::from_utf8_lossy(v.as_bytes()).into_owned(),
        None => crate::incident::UNKNOWN.to_owned(),
    }
}

fn bump(counts: &mut Vec<(u16, u32)>, id: u16) {
    match counts.iter_mut().find(|(i, _)| *i == id) {
        Some((_, n)) => *n += 1,
        None => counts.push((id, 1)),
    }
}

/// One task (by its `served_by` id) over the run.
struct TaskStats {
    /// Its first and last response, µs since the start.
    first_us: u64,
    last_us: u64,
    /// Its responses by version id (one, normally), at most [`MAX_TASK_VERSIONS`].
    versions: Vec<(u16, u64)>,
    /// Its responses from versions past that.
    other_versions: u64,
}

/// An interval still collecting results.
struct Acc {
    hist: Histogram<u32>,
    requests: u32,
    ok: u32,
    errors: Vec<(u16, u32)>,
    versions: Vec<(u16, u32)>,
    served_by: Vec<(u16, u32)>,
}

/// A closed interval: a few dozen bytes.
struct Row {
    requests: u32,
    ok: u32,
    p50_us: u32,
    p99_us: u32,
    max_us: u32,
    errors: Box<[(u16, u32)]>,
    versions: Box<[(u16, u32)]>,
    served_by: Box<[(u16, u32)]>,
}

/// A result waiting in the reorder window.
type Slot = Option<Seen>;

pub(crate) struct Recorder {
    setup: Setup,
    interval_us: u64,
    // whole run
    requests: u64,
    ok: u64,
    errors: u64,
    pool_exhausted: u64,
    max_intended_us: u64,
    latency: Histogram<u64>,
    lag: Histogram<u64>,
    /// Intended start to the exchange's start: the lag plus any wait for a free connection.
    send_delay: Histogram<u64>,
    kinds: Names<ErrorKind>,
    versions: Names<Option<HeaderValue>>,
    served_by: Names<Option<HeaderValue>>,
    /// Per `served_by` id: when it answered, which versions.
    tasks: Vec<TaskStats>,
    /// Tasks failures are attributed to.
    culprits: Names<Option<HeaderValue>>,
    duplicates: u64,
    gap: GapTracker,
    // intended-order stream
    window: VecDeque<Slot>,
    window_base: u64,
    outages: OutageDetector,
    incidents: IncidentDetector,
    // timeline
    open: VecDeque<Acc>,
    first_open: u64,
    spare: Vec<Histogram<u32>>,
    rows: Vec<Row>,
    events: Vec<Event>,
    warnings: Vec<String>,
    // live view
    live_outage: Option<(u64, u64, u64)>,
    last_error: Option<ErrorKind>,
    tick_requests: u64,
    tick_errors: u64,
}

/// Runs the recorder until every sender is gone, then builds the report.
pub(crate) async fn record(
    setup: Setup,
    mut samples: mpsc::UnboundedReceiver<crate::sender::Batch>,
    mut events: mpsc::UnboundedReceiver<Event>,
    stopped: impl Fn() -> Ended,
) -> Report {
    let mut r = Recorder::new(setup);
    if let Some(log) = r.setup.hdr_log.as_mut()
        && let Err(e) = log.begin(r.setup.start_wall, &r.setup.target)
    {
        r.hdr_log_failed(&e);
    }
    let mut tick = tokio::time::interval_at(r.setup.start + r.setup.interval, r.setup.interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut batches = Vec::with_capacity(64);
    loop {
        tokio::select! {
            n = samples.recv_many(&mut batches, 64) => {
                if n == 0 {
                    break;
                }
                for s in batches.drain(..).flatten() {
                    r.on_sample(s);
                }
            }
            Some(e) = events.recv() => r.on_event(e),
            _ = tick.tick() => {
                r.publish(false);
                r.tick_requests = 0;
                r.tick_errors = 0;
            }
        }
    }
    while let Ok(e) = events.try_recv() {
        r.on_event(e);
    }
    r.finish(stopped())
}

impl Recorder {
    /// A recorder fed by hand, outside a probe (unit tests, micro-benchmarks): intervals of
    /// `interval`, a 1 s schedule, no HDR log, nobody watching the live state.
    pub(crate) fn standalone(interval: Duration) -> Self {
        let (live, _) = watch::channel(LiveState::default());
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Recorder::new(Setup {
            start: Instant::now(),
            start_wall: SystemTime::now(),
            interval,
            incident_gap: interval,
            high_us: 2_000_000,
            schedule_us: Some(1_000_000),
            target: "http://t/".into(),
            config: ConfigSummary {
                rate: "10/s".into(),
                rate_per_s: Some(10.0),
                duration_ms: 1000,
                connections: 1,
                mode: crate::config::ConnectionMode::KeepAlive,
                timeout_ms: 2000,
                slo: verdict::SloSummary::default(),
                ok_status: "200-399".into(),
                lb_marker: "server: awselb/2.0".into(),
                merge_gap_ms: ms(interval),
                tls: None,
                headers: Vec::new(),
            },
            hdr_log: None,
            live,
        })
    }

    fn new(setup: Setup) -> Self {
        let interval_us = (setup.interval.as_micros() as u64).max(1);
        let latency = histo::new_histogram(setup.high_us);
        let lag = histo::new_histogram(3_600_000_000);
        let send_delay = histo::new_histogram(3_600_000_000);
        Recorder {
            interval_us,
            requests: 0,
            ok: 0,
            errors: 0,
            pool_exhausted: 0,
            max_intended_us: 0,
            latency,
            lag,
            send_delay,
            kinds: Names::new(MAX_NAMES),
            versions: Names::new(MAX_NAMES),
            served_by: Names::new(MAX_TASKS),
            tasks: Vec::new(),
            culprits: Names::new(MAX_TASKS),
            duplicates: 0,
            gap: GapTracker::default(),
            window: VecDeque::new(),
            window_base: 0,
            outages: OutageDetector::default(),
            incidents: IncidentDetector::new(setup.incident_gap.as_micros() as u64),
            open: VecDeque::new(),
            first_open: 0,
            spare: Vec::new(),
            rows: Vec::new(),
            events: Vec::new(),
            warnings: Vec::new(),
            live_outage: None,
            last_error: None,
            tick_requests: 0,
            tick_errors: 0,
            setup,
        }
    }

    pub(crate) fn on_sample(&mut self, s: Sample) {
        let latency_us = s.done_us.saturating_sub(s.intended_us);
        self.requests += 1;
        self.tick_requests += 1;
        self.max_intended_us = self.max_intended_us.max(s.intended_us);
        self.latency.saturating_record(latency_us.max(1));
        if self.setup.schedule_us.is_some() {
            // Closed loop has no schedule to lag behind.
            self.lag.saturating_record(s.lag_us.max(1));
            self.send_delay
                .saturating_record(s.sent_us.saturating_sub(s.intended_us).max(1));
        }
        if s.pool_wait {
            self.pool_exhausted += 1;
        }
        self.gap.observe(s.done_us, s.result.is_ok());

        let failure = s.result.err();
        let kind_id = failure.map(|k| self.kinds.count(k, |k| k.key().into_owned()));
        // Whom a failure is attributed to: the target that answered with an error, or the one
        // the load balancer names on its own error; nobody for a transport failure.
        let culprit = match failure {
            None => 0,
            Some(ErrorKind::Http { by_lb: true, .. }) => {
                self.culprits.count(s.lb_target, culprit_name)
            }
            Some(ErrorKind::Http { by_lb: false, .. }) => {
                self.culprits.count(s.served_by.clone(), culprit_name)
            }
            Some(_) => self.culprits.count(None, culprit_name),
        };
        let responded = !matches!(s.result, Err(k) if !matches!(k, ErrorKind::Http { .. }));
        let ids = responded.then(|| {
            let version = self.versions.count(s.version, header_name);
            let task = self.served_by.count(s.served_by, header_name);
            self.task_answered(task, version, s.done_us);
            (version, task)
        });

        // Live view, in arrival order.
        match failure {
            Some(kind) => {
                self.errors += 1;
                self.tick_errors += 1;
                self.last_error = Some(kind);
                match &mut self.live_outage {
                    Some((_, last, n)) => {
                        *last = (*last).max(s.intended_us);
                        *n += 1;
                    }
                    None => {
                        self.live_outage = Some((s.intended_us, s.intended_us, 1));
                        self.publish(false);
                    }
                }
            }
            None => {
                self.ok += 1;
                if matches!(self.live_outage, Some((_, last, _)) if s.intended_us > last) {
                    self.live_outage = None;
                }
            }
        }

        // Timeline, by intended start.
        let idx = (s.intended_us / self.interval_us).max(self.first_open);
        let acc = self.acc(idx);
        acc.hist.saturating_record(latency_us.max(1));
        acc.requests += 1;
        match kind_id {
            Some(id) => bump(&mut acc.errors, id),
            None => acc.ok += 1,
        }
        if let Some((v, t)) = ids {
            bump(&mut acc.versions, v);
            bump(&mut acc.served_by, t);
        }

        // Intended-order stream: outages, and closing complete intervals.
        let seen = Seen {
            intended_us: s.intended_us,
            failure,
            // A load balancer's own error was not answered by any version or task.
            answered: ids.filter(|_| !matches!(failure, Some(ErrorKind::Http { by_lb: true, .. }))),
            culprit,
        };
        let Some(pos) = s.seq.checked_sub(self.window_base) else {
            self.duplicate(s.seq);
            return;
        };
        let pos = pos as usize;
        if self.window.len() <= pos {
            self.window.resize(pos + 1, None);
        }
        if self.window[pos].is_some() {
            self.duplicate(s.seq);
            return;
        }
        self.window[pos] = Some(seen);
        while let Some(Some(seen)) = self.window.front().copied() {
            self.window.pop_front();
            self.window_base += 1;
            self.outages.observe(seen.intended_us, seen.failure);
            self.incidents.observe(seen);
            self.close_before(seen.intended_us / self.interval_us);
        }
    }

    /// Task `task` (a `served_by` id) answered with version `version` at `at_us`: an index into
    /// a Vec of at most [`MAX_TASKS`] + 1 entries and, normally, one comparison.
    fn task_answered(&mut self, task: u16, version: u16, at_us: u64) {
        let i = usize::from(task);
        if i == self.tasks.len() {
            // Ids are handed out in order: this is the task's first response.
            self.tasks.push(TaskStats {
                first_us: at_us,
                last_us: at_us,
                versions: Vec::new(),
                other_versions: 0,
            });
        }
        let Some(t) = self.tasks.get_mut(i) else {
            return;
        };
        t.first_us = t.first_us.min(at_us);
        t.last_us = t.last_us.max(at_us);
        if let Some((_, n)) = t.versions.iter_mut().find(|(v, _)| *v == version) {
            *n += 1;
        } else if t.versions.len() < MAX_TASK_VERSIONS {
            t.versions.push((version, 1));
        } else {
            t.other_versions += 1;
        }
    }

    /// Every task over the run, with the failures attributed to each (`by_task`).
    fn task_summaries(&self, by_task: &BTreeMap<String, u64>) -> Vec<TaskSummary> {
        let mut tasks: Vec<TaskSummary> = self
            .tasks
            .iter()
            .zip(&self.served_by.names)
            .zip(&self.served_by.totals)
            .map(|((t, name), &responses)| {
                let mut versions = self.versions.map64(&t.versions);
                if t.other_versions > 0 {
                    *versions.entry("(other)".to_owned()).or_default() += t.other_versions;
                }
                TaskSummary {
                    task: name.clone(),
                    versions,
                    first_ms: Some(t.first_us / 1000),
                    last_ms: Some(t.last_us / 1000),
                    responses,
                    errors: by_task.get(name).copied().unwrap_or(0),
                }
            })
            .collect();
        // Tasks that never answered but were named by the load balancer's errors.
        for (name, &errors) in by_task {
            if name != crate::incident::UNKNOWN && !self.served_by.names.contains(name) {
                tasks.push(TaskSummary {
                    task: name.clone(),
                    errors,
                    ..TaskSummary::default()
                });
            }
        }
        order_and_bound(tasks)
    }

    /// The accumulator of interval `idx` (≥ `first_open`), opening intervals up to it.
    fn acc(&mut self, idx: u64) -> &mut Acc {
        let pos = (idx - self.first_open) as usize;
        while self.open.len() <= pos {
            let acc = self.empty_acc();
            self.open.push_back(acc);
        }
        &mut self.open[pos]
    }

    /// An empty interval accumulator, reusing a spare histogram when there is one.
    fn empty_acc(&mut self) -> Acc {
        let hist = self
            .spare
            .pop()
            .unwrap_or_else(|| histo::new_histogram(self.setup.high_us));
        Acc {
            hist,
            requests: 0,
            ok: 0,
            errors: Vec::new(),
            versions: Vec::new(),
            served_by: Vec::new(),
        }
    }

    /// Closes every interval before `idx`: all their requests have results.
    fn close_before(&mut self, idx: u64) {
        while self.first_open < idx {
            let mut acc = match self.open.pop_front() {
                Some(acc) => acc,
                // Nothing was intended in it; keep the timeline continuous.
                None => self.empty_acc(),
            };
            let start = Duration::from_micros(self.first_open * self.interval_us);
            if let Some(log) = self.setup.hdr_log.as_mut()
                && let Err(e) = log.write(&acc.hist, start, self.setup.interval)
            {
                self.hdr_log_failed(&e);
            }
            let p = Percentiles::of(&acc.hist);
            let small = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
            self.rows.push(Row {
                requests: acc.requests,
                ok: acc.ok,
                p50_us: small(p.p50),
                p99_us: small(p.p99),
                max_us: small(p.max),
                errors: std::mem::take(&mut acc.errors).into_boxed_slice(),
                versions: std::mem::take(&mut acc.versions).into_boxed_slice(),
                served_by: std::mem::take(&mut acc.served_by).into_boxed_slice(),
            });
            acc.hist.reset();
            self.spare.push(acc.hist);
            self.first_open += 1;
        }
    }

    fn duplicate(&mut self, seq: u64) {
        self.duplicates += 1;
        self.warn(format!("duplicate result for request {seq}"));
    }

    fn hdr_log_failed(&mut self, e: &std::io::Error) {
        self.warn(format!("hdr log write failed, log stopped: {e}"));
        self.setup.hdr_log = None;
    }

    fn warn(&mut self, w: String) {
        if self.warnings.len() < 100 {
            self.warnings.push(w);
        }
    }

    fn on_event(&mut self, e: Event) {
        if self.events.len() < MAX_EVENTS {
            self.events.push(e);
        } else if self.events.len() == MAX_EVENTS {
            self.warn(format!("more than {MAX_EVENTS} events: later ones dropped"));
        }
    }

    fn live_state(&self, finished: bool) -> LiveState {
        LiveState {
            elapsed: self.setup.start.elapsed(),
            requests: self.requests,
            ok: self.ok,
            errors: self.errors,
            requests_last_interval: self.tick_requests,
            errors_last_interval: self.tick_errors,
            outage: self.live_outage.map(|(start_us, _, errors)| LiveOutage {
                start_ms: start_us / 1000,
                errors,
            }),
            last_error: self.last_error,
            finished,
        }
    }

    /// Publishes the live view.
    fn publish(&mut self, finished: bool) {
        self.setup.live.send_replace(self.live_state(finished));
    }

    #[expect(
        clippy::too_many_lines,
        reason = "assembles the final Report field by field from the recorder's state"
    )]
    fn finish(mut self, ended: Ended) -> Report {
        let stopped_early = ended.stopped_early;
        // Every request handed out has exactly one result unless a sender died. A hole is a
        // hole in the proof: the run is a probe fault (exit 2), whatever the figures say. Skip
        // holes in the stream rather than lose the rest of the report.
        let recorded = self.requests - self.duplicates;
        let missing = ended.dispatched.saturating_sub(recorded);
        if missing > 0 {
            self.warn(format!(
                "{missing} of {} requests sent have no recorded result",
                ended.dispatched
            ));
        }
        for seen in std::mem::take(&mut self.window).into_iter().flatten() {
            self.outages.observe(seen.intended_us, seen.failure);
            self.incidents.observe(seen);
        }
        let span_us = match self.setup.schedule_us {
            Some(end) if !stopped_early => end,
            _ => self.max_intended_us + 1,
        };
        let last = span_us
            .div_ceil(self.interval_us)
            .max(self.first_open + self.open.len() as u64);
        self.close_before(last);
        self.publish(true);

        let (outages, outage_total) = std::mem::take(&mut self.outages).finish();
        let (raw, incident_total) =
            std::mem::replace(&mut self.incidents, IncidentDetector::new(0)).finish();
        let incidents: Vec<Incident> = raw
            .into_iter()
            .map(|i| {
                let (start_ms, end_ms) = (i.start_us / 1000, i.end_us / 1000);
                Incident {
                    start_ms,
                    end_ms,
                    duration_ms: end_ms - start_ms,
                    requests: i.requests,
                    errors: i.errors,
                    error_rate: i.errors as f64 / i.requests.max(1) as f64,
                    kinds: i
                        .kinds
                        .iter()
                        .map(|(k, n)| (k.key().into_owned(), *n))
                        .collect(),
                    failed_on: self.culprits.map64(&i.failed_on),
                    versions: self.versions.map64(&i.versions),
                    served_by: self.served_by.map64(&i.served_by),
                    outages: i.outages,
                    recovered: i.recovered,
                    source: String::new(),
                }
            })
            .collect();
        let latency_us = Percentiles::of(&self.latency);
        let latency_percentiles = histo::percentile_points(&self.latency);
        let longest_gap_ms = self.gap.longest_us() / 1000;
        let errors = ErrorSummary {
            total: self.errors,
            by_kind: self.kinds.totals(),
            by_task: self.culprits.totals(),
        };
        let tasks = self.task_summaries(&errors.by_task);
        let (verdict, reasons) = verdict::evaluate(
            &self.setup.config.slo,
            &Measured {
                requests: self.requests,
                errors: self.errors,
                latency_us,
                longest_gap_ms,
                incidents: &incidents,
                incident_total,
                missing_results: missing,
                duplicate_results: self.duplicates,
            },
        );
        let intervals = self
            .rows
            .iter()
            .enumerate()
            .map(|(i, row)| Interval {
                start_ms: i as u64 * self.interval_us / 1000,
                requests: u64::from(row.requests),
                ok: u64::from(row.ok),
                errors: u64::from(row.requests - row.ok),
                errors_by_kind: self.kinds.map(&row.errors),
                p50_us: u64::from(row.p50_us),
                p99_us: u64::from(row.p99_us),
                max_us: u64::from(row.max_us),
                versions: self.versions.map(&row.versions),
                served_by: self.served_by.map(&row.served_by),
            })
            .collect();
        let mut events = std::mem::take(&mut self.events);
        events.sort_by_key(|e| e.at_ms);
        let unix_ms = self
            .setup
            .start_wall
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let span_s = span_us as f64 / 1e6;
        Report {
            verdict,
            reasons,
            incidents,
            incident_total,
            missing_results: missing,
            target: self.setup.target.clone(),
            started_at: humantime::format_rfc3339_millis(self.setup.start_wall).to_string(),
            started_at_unix_ms: unix_ms,
            elapsed_ms: span_us / 1000,
            stopped_early,
            config: self.setup.config.clone(),
            requests: self.requests,
            ok: self.ok,
            errors,
            latency_us,
            latency_percentiles,
            schedule_lag_us: Percentiles::of(&self.lag),
            send_delay_us: Percentiles::of(&self.send_delay),
            pool_exhausted: self.pool_exhausted,
            achieved_rate: if span_s > 0.0 {
                self.requests as f64 / span_s
            } else {
                0.0
            },
            outages,
            outage_total,
            longest_gap_ms,
            versions: self.versions.totals(),
            served_by: self.served_by.totals(),
            tasks,
            interval_ms: self.interval_us / 1000,
            intervals,
            events,
            latency_histogram: histo::encode(&self.latency),
            sources: Vec::new(),
            warnings: self.warnings,
        }
    }
}

/// A report of nothing, for the renderers' unit tests to fill in.
#[cfg(test)]
pub(crate) fn empty_report() -> Report {
    Recorder::standalone(Duration::from_millis(100)).finish(Ended {
        stopped_early: false,
        dispatched: 0,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::verdict::Verdict;

    fn recorder() -> Recorder {
        Recorder::standalone(Duration::from_millis(100))
    }

    fn ok(seq: u64) -> Sample {
        Sample {
            seq,
            intended_us: seq * 100_000,
            done_us: seq * 100_000 + 500,
            lag_us: 0,
            sent_us: seq * 100_000,
            pool_wait: false,
            result: Ok(200),
            version: Some(HeaderValue::from_static("v1")),
            served_by: Some(HeaderValue::from_static("task-1")),
            lb_target: None,
        }
    }

    #[test]
    fn a_request_without_a_result_is_a_probe_fault() {
        let mut r = recorder();
        for seq in [0, 1, 3, 4, 5] {
            r.on_sample(ok(seq));
        }
        // Seven handed out: 2 is a hole in the stream, 6 never came back at all.
        let report = r.finish(Ended {
            stopped_early: false,
            dispatched: 7,
        });
        assert_eq!(report.verdict, Verdict::Fault);
        assert_eq!(report.verdict.exit_code(), 2);
        assert_eq!(report.missing_results, 2);
        assert_eq!(
            report.reasons[0],
            "probe fault: 2 requests sent without a recorded result"
        );
        assert!(report.summary().contains("PROBE FAULT: 2 requests"));
        assert_eq!(report.errors.total, 0, "the figures themselves look fine");
    }

    #[test]
    fn a_result_recorded_twice_is_a_probe_fault() {
        let mut r = recorder();
        for seq in [0, 1, 1, 2] {
            r.on_sample(ok(seq));
        }
        let report = r.finish(Ended {
            stopped_early: false,
            dispatched: 3,
        });
        assert_eq!(report.verdict, Verdict::Fault, "{:?}", report.reasons);
        assert!(report.reasons.iter().any(|x| x.contains("recorded twice")));
    }

    fn answered(seq: u64, version: &str, task: &str) -> Sample {
        Sample {
            version: Some(HeaderValue::from_str(version).unwrap()),
            served_by: Some(HeaderValue::from_str(task).unwrap()),
            ..ok(seq)
        }
    }

    fn finish(r: Recorder, dispatched: u64) -> Report {
        r.finish(Ended {
            stopped_early: false,
            dispatched,
        })
    }

    #[test]
    fn tasks_are_summarized_in_order_of_first_response() {
        let mut r = recorder();
        // task-2 (v2) joins at request 4 and task-1 (v1) stops after request 6; request 8 is
        // the load balancer's 502 naming task-3, which never answered.
        for seq in 0..10 {
            let s = match seq {
                0..=3 => answered(seq, "v1", "task-1"),
                4..=6 if seq % 2 == 0 => answered(seq, "v1", "task-1"),
                8 => Sample {
                    result: Err(ErrorKind::Http {
                        status: 502,
                        by_lb: true,
                    }),
                    version: None,
                    served_by: None,
                    lb_target: Some(HeaderValue::from_static("task-3")),
                    ..ok(seq)
                },
                _ => answered(seq, "v2", "task-2"),
            };
            r.on_sample(s);
        }
        let report = finish(r, 10);
        let names: Vec<&str> = report.tasks.iter().map(|t| t.task.as_str()).collect();
        assert_eq!(names, ["task-1", "task-2", "(none)", "task-3"]);
        let t1 = &report.tasks[0];
        assert_eq!(t1.versions, BTreeMap::from([("v1".to_owned(), 6)]));
        // Times are when the responses arrived (intended + 0.5 ms).
        assert_eq!(
            (t1.first_ms, t1.last_ms, t1.responses),
            (Some(0), Some(600), 6)
        );
        let t2 = &report.tasks[1];
        assert_eq!(t2.versions, BTreeMap::from([("v2".to_owned(), 3)]));
        assert_eq!((t2.first_ms, t2.last_ms), (Some(500), Some(900)));
        assert_eq!(
            report.tasks[2].responses, 1,
            "the 502 carried no x-served-by"
        );
        let t3 = &report.tasks[3];
        assert_eq!((t3.first_ms, t3.responses, t3.errors), (None, 0, 1));
        assert_eq!(t3.version_label(), "?");
        // Per interval (100 ms, one request each): who answered.
        let who: Vec<Vec<&str>> = report
            .intervals
            .iter()
            .map(|iv| iv.served_by.keys().map(String::as_str).collect())
            .collect();
        assert_eq!(who[3], ["task-1"]);
        assert_eq!(who[5], ["task-2"]);
        assert_eq!(who[8], ["(none)"]);
    }

    #[test]
    fn distinct_task_ids_past_the_cap_count_as_other() {
        let mut r = Recorder::standalone(Duration::from_millis(1));
        let n = 3 * MAX_TASKS as u64;
        for seq in 0..n {
            let s = Sample {
                intended_us: seq * 100,
                done_us: seq * 100 + 50,
                ..answered(seq, "v1", &format!("task-{seq}"))
            };
            r.on_sample(s);
        }
        assert!(r.tasks.len() <= MAX_TASKS + 1 && r.served_by.names.len() <= MAX_TASKS + 1);
        let report = finish(r, n);
        assert_eq!(report.tasks.len(), MAX_TASKS + 1);
        assert_eq!(report.served_by.len(), MAX_TASKS + 1);
        let other = report.tasks.last().unwrap();
        assert_eq!(other.task, crate::report::OTHER_TASKS);
        assert_eq!(other.responses, n - MAX_TASKS as u64);
        assert_eq!(report.tasks[0].task, "task-0");
        assert_eq!(report.tasks.iter().map(|t| t.responses).sum::<u64>(), n);
        for iv in &report.intervals {
            assert!(iv.served_by.len() <= MAX_TASKS + 1);
            assert_eq!(iv.served_by.values().sum::<u64>(), iv.requests);
        }
        // One version per task is the rule; a task naming a new one per response is bounded too.
        let mut r = recorder();
        for seq in 0..20 {
            r.on_sample(answered(seq, &format!("v{seq}"), "task-1"));
        }
        let report = finish(r, 20);
        let versions = &report.tasks[0].versions;
        assert_eq!(versions.len(), MAX_TASK_VERSIONS + 1);
        assert_eq!(versions["(other)"], 20 - MAX_TASK_VERSIONS as u64);
    }

    #[test]
    fn the_report_carries_the_percentile_distribution() {
        let mut r = recorder();
        for seq in 0..100 {
            r.on_sample(Sample {
                done_us: seq * 100_000 + 1000 * (seq + 1),
                ..ok(seq)
            });
        }
        let report = finish(r, 100);
        let points = &report.latency_percentiles;
        assert!(points.len() > 10, "{points:?}");
        let last = points.last().unwrap();
        assert_eq!(
            (last.percentile, last.latency_us),
            (100.0, report.latency_us.max)
        );
        assert!(
            points
                .windows(2)
                .all(|w| w[0].latency_us <= w[1].latency_us)
        );
    }

    #[test]
    fn every_result_recorded_passes() {
        let mut r = recorder();
        for seq in 0..10 {
            r.on_sample(ok(seq));
        }
        let report = r.finish(Ended {
            stopped_early: false,
            dispatched: 10,
        });
        assert_eq!(report.verdict, Verdict::Pass, "{:?}", report.reasons);
        assert_eq!(report.missing_results, 0);
    }
}

//! The final [`Report`]: what the JSON holds, and the terminal summary.
//!
//! Every `*_ms` field is milliseconds since the probe's start (the first intended send), except
//! `started_at_unix_ms`, the wall-clock start that `merge` aligns probes with.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Write};

use serde::{Deserialize, Serialize};

use crate::config::{ConnectionMode, TlsOptions};
use crate::histo::{PercentilePoint, Percentiles};
use crate::incident::{Incident, UNKNOWN};
use crate::outage::Outage;
use crate::verdict::{SloSummary, Verdict};

/// The result of a probe (or of several, merged).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// `"pass"` or `"fail"`.
    pub verdict: Verdict,
    /// One line per breached SLO (and per incident behind a breach, or per probe fault); empty
    /// on pass.
    pub reasons: Vec<String>,
    /// Failures grouped by time: what happened, when, to whom (at most 10 000 kept, see
    /// `incident_total`).
    #[serde(default)]
    pub incidents: Vec<Incident>,
    /// Number of incidents, including any not kept.
    #[serde(default)]
    pub incident_total: u64,
    /// Requests sent without a recorded result (a probe fault when not zero).
    #[serde(default)]
    pub missing_results: u64,
    /// The probed URL.
    pub target: String,
    /// Wall-clock time of the probe's start, RFC 3339 (UTC).
    pub started_at: String,
    /// The same as Unix milliseconds.
    pub started_at_unix_ms: u64,
    /// Length of the schedule that ran: the duration, or (stopped early, or `--rate max`) up
    /// to the intended start of the last request.
    pub elapsed_ms: u64,
    /// Stopped before the schedule ended (Ctrl-C or [`crate::Probe::stop`]).
    pub stopped_early: bool,
    /// How the probe ran.
    pub config: ConfigSummary,
    /// Requests sent (each has exactly one result).
    pub requests: u64,
    /// Requests that got a success status.
    pub ok: u64,
    /// Failed requests.
    pub errors: ErrorSummary,
    /// Latency from the intended start to the end of the response (every request, failed ones
    /// included: a timeout counts as its deadline).
    pub latency_us: Percentiles,
    /// The same histogram's percentile distribution, as HdrHistogram prints it (quantiles
    /// iterated with 5 ticks per half distance to 100 %, the last point the maximum; a few dozen
    /// to at most 300 points), for plotting latency against percentile. Empty in reports from
    /// before it was recorded; [`Report::percentile_points`] then computes it.
    #[serde(default)]
    pub latency_percentiles: Vec<PercentilePoint>,
    /// How late the probe's own scheduler dispatched requests (timer precision, CPU starvation);
    /// all zero for `--rate max`, which has no schedule.
    pub schedule_lag_us: Percentiles,
    /// How long after its intended start each request began its exchange: the scheduler's lag
    /// plus any wait for a free connection (all zero for `--rate max`). A request is placed on the
    /// timeline at its intended start, so a failure it met can be caused by an event up to this
    /// much later: locating an outage against the events must allow for it. Zero in reports from
    /// before it was recorded.
    #[serde(default)]
    pub send_delay_us: Percentiles,
    /// Requests that found every connection busy when due (their wait is part of their latency).
    pub pool_exhausted: u64,
    /// Requests per second actually sent.
    pub achieved_rate: f64,
    /// Outage windows (at most 10 000 kept, see `outage_total`).
    pub outages: Vec<Outage>,
    /// Number of outages, including any not kept.
    pub outage_total: u64,
    /// Longest time without a successful response, ms.
    pub longest_gap_ms: u64,
    /// Responses by `x-app-version` (`(none)` when absent).
    pub versions: BTreeMap<String, u64>,
    /// Responses by `x-served-by` (`(none)` when absent). A run tracks at most [`MAX_TASKS`]
    /// distinct task ids; responses from any further one count as `(other)`.
    pub served_by: BTreeMap<String, u64>,
    /// Every task that answered (or had failures attributed to it), in order of its first
    /// response: which version it served, when it answered first and last, how much, and the
    /// failures attributed to it. At most [`MAX_TASKS`] tasks and `(other)`. Empty in reports
    /// from before it was recorded; [`Report::task_summaries`] then derives it from the
    /// intervals.
    #[serde(default)]
    pub tasks: Vec<TaskSummary>,
    /// Width of an interval, ms.
    pub interval_ms: u64,
    /// The timeline, one entry per interval, by intended start time.
    pub intervals: Vec<Interval>,
    /// Event markers on the timeline.
    pub events: Vec<Event>,
    /// The whole-run latency histogram (HdrHistogram V2 deflate, base64), for exact merging.
    pub latency_histogram: String,
    /// Names of the merged reports (empty for a single probe).
    #[serde(default)]
    pub sources: Vec<String>,
    /// Things that went wrong in the probe itself but did not stop it.
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// How the probe was configured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigSummary {
    /// `"500/s"` or `"max"`.
    pub rate: String,
    /// Requests per second, `null` for `max`.
    pub rate_per_s: Option<f64>,
    /// Scheduled duration, ms.
    pub duration_ms: u64,
    /// Connections (in flight at most).
    pub connections: usize,
    /// `keep-alive` or `new-connection`.
    pub mode: ConnectionMode,
    /// Per-request timeout, ms.
    pub timeout_ms: u64,
    /// The SLO checked.
    pub slo: SloSummary,
    /// Statuses counted as success.
    pub ok_status: String,
    /// Header marking load-balancer-generated responses.
    pub lb_marker: String,
    /// Failures at most this far apart (ms) belong to one incident.
    #[serde(default)]
    pub merge_gap_ms: u64,
    /// How an `https://` target's certificate was checked; absent for `http://`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSummary>,
    /// Extra request headers (`-H`), as sent; credentials (`Authorization`, `Cookie`, API keys,
    /// tokens) as `name: (redacted)`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<String>,
}

/// How an `https://` target's certificate was checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsSummary {
    /// The name sent as SNI and verified against the certificate.
    pub server_name: String,
    /// The PEM file whose certificates were the only trust anchors (`--ca-file`); `null`:
    /// the system's roots.
    pub ca_file: Option<String>,
    /// `--insecure`: the certificate was NOT verified.
    pub insecure: bool,
}

impl TlsSummary {
    pub(crate) fn new(opts: &TlsOptions, host: &str) -> TlsSummary {
        TlsSummary {
            server_name: opts.sni.clone().unwrap_or_else(|| host.to_owned()),
            ca_file: opts.ca_file.as_ref().map(|p| p.display().to_string()),
            insecure: opts.insecure,
        }
    }

    /// One line: the server name and what its certificate was checked against.
    pub fn describe(&self) -> String {
        match (&self.ca_file, self.insecure) {
            (_, true) => format!(
                "TLS to {}: certificate NOT VERIFIED (--insecure): this run proves nothing about it",
                self.server_name
            ),
            (Some(ca), false) => format!(
                "TLS to {}: certificate verified against --ca-file {ca}",
                self.server_name
            ),
            (None, false) => format!(
                "TLS to {}: certificate verified against the system roots",
                self.server_name
            ),
        }
    }
}

/// Failed requests, in total and by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorSummary {
    /// All failed requests.
    pub total: u64,
    /// By stable kind key (`connect_refused`, `http_502_lb`, ...).
    pub by_kind: BTreeMap<String, u64>,
    /// By the task they are attributed to (see [`Incident::failed_on`]).
    #[serde(default)]
    pub by_task: BTreeMap<String, u64>,
}

/// One interval of the timeline (requests by intended start time).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interval {
    /// Start of the interval, ms since the probe's start.
    pub start_ms: u64,
    /// Requests intended to start in it.
    pub requests: u64,
    /// Of which succeeded.
    pub ok: u64,
    /// Of which failed.
    pub errors: u64,
    /// Failed by kind.
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Median latency, µs.
    pub p50_us: u64,
    /// 99th percentile latency, µs.
    pub p99_us: u64,
    /// Highest latency, µs.
    pub max_us: u64,
    /// Responses by `x-app-version`.
    pub versions: BTreeMap<String, u64>,
    /// Responses by `x-served-by`: which tasks served in this interval (at most [`MAX_TASKS`]
    /// distinct ids per run, any further one as `(other)`).
    pub served_by: BTreeMap<String, u64>,
}

/// Most distinct task ids (`x-served-by`, and the tasks failures are attributed to) a run
/// tracks; the responses or failures of any further task count as `(other)`. An instance
/// refresh of a large service meets a few dozen; the bound keeps a run whose server names
/// itself anew per request (a bug, or a hostile target) at a few kilobytes per interval.
pub const MAX_TASKS: usize = 256;

/// The name standing for every task past [`MAX_TASKS`].
pub const OTHER_TASKS: &str = "(other)";

/// One task over the run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSummary {
    /// Its id as it answered (`x-served-by`; `(none)` for responses without one, such as a load
    /// balancer's own errors; [`OTHER_TASKS`] for tasks past the bound).
    pub task: String,
    /// Its responses by `x-app-version` (a task serves one version; empty when not known, in a
    /// summary derived from an older report).
    pub versions: BTreeMap<String, u64>,
    /// When its first response arrived, ms since the probe's start (`None`: it never answered,
    /// only failures were attributed to it).
    pub first_ms: Option<u64>,
    /// When its last response arrived, ms since the probe's start.
    pub last_ms: Option<u64>,
    /// Responses it gave (failed ones included, such as its own 500s).
    pub responses: u64,
    /// Failed requests attributed to it (see [`ErrorSummary::by_task`]).
    pub errors: u64,
}

impl TaskSummary {
    /// The versions it served, most served first, `/`-separated (`?` when unknown).
    pub fn version_label(&self) -> String {
        if self.versions.is_empty() {
            return "?".to_owned();
        }
        let mut v: Vec<(&String, &u64)> = self.versions.iter().collect();
        v.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
        v.iter()
            .map(|(k, _)| k.as_str())
            .collect::<Vec<_>>()
            .join("/")
    }

    /// Adds `other`'s figures (the same task seen by another probe, `offset_ms` later).
    pub(crate) fn absorb(&mut self, other: &TaskSummary, offset_ms: u64) {
        let shift = |t: Option<u64>| t.map(|t| t.saturating_add(offset_ms));
        self.first_ms = match (self.first_ms, shift(other.first_ms)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last_ms = self.last_ms.max(shift(other.last_ms));
        for (v, n) in &other.versions {
            *self.versions.entry(v.clone()).or_default() += n;
        }
        self.responses += other.responses;
        self.errors += other.errors;
    }
}

/// Tasks in order of their first response (those that never answered last, by name), at most
/// [`MAX_TASKS`] of them: the ones past the bound are added up as [`OTHER_TASKS`].
pub(crate) fn order_and_bound(mut tasks: Vec<TaskSummary>) -> Vec<TaskSummary> {
    tasks.sort_by(|a, b| {
        (
            a.first_ms.is_none(),
            a.first_ms,
            a.task == OTHER_TASKS,
            &a.task,
        )
            .cmp(&(
                b.first_ms.is_none(),
                b.first_ms,
                b.task == OTHER_TASKS,
                &b.task,
            ))
    });
    let other_at = tasks.iter().position(|t| t.task == OTHER_TASKS);
    let mut other = other_at.map(|i| tasks.remove(i));
    if tasks.len() > MAX_TASKS {
        let rest = tasks.split_off(MAX_TASKS);
        let o = other.get_or_insert_with(|| TaskSummary {
            task: OTHER_TASKS.to_owned(),
            ..TaskSummary::default()
        });
        for t in &rest {
            o.absorb(t, 0);
        }
    }
    tasks.extend(other);
    tasks
}

/// A marker on the timeline ("instance i-1 draining").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// When, ms since the probe's start (negative: before it).
    pub at_ms: i64,
    /// What happened.
    pub label: String,
    /// The probe that recorded it (set by `merge`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
}

impl Report {
    /// The tasks over the run ([`Report::tasks`]); for an older report without them, derived
    /// from the intervals (first and last response to the interval, versions unknown).
    pub fn task_summaries(&self) -> Vec<TaskSummary> {
        if !self.tasks.is_empty() {
            return self.tasks.clone();
        }
        let mut by_name: BTreeMap<&str, TaskSummary> = BTreeMap::new();
        for iv in &self.intervals {
            for (task, &n) in iv.served_by.iter().filter(|(_, n)| **n > 0) {
                let t = by_name.entry(task).or_insert_with(|| TaskSummary {
                    task: task.clone(),
                    first_ms: Some(iv.start_ms),
                    ..TaskSummary::default()
                });
                t.last_ms = Some(iv.start_ms + self.interval_ms);
                t.responses += n;
            }
        }
        for (task, &n) in &self.errors.by_task {
            if task != UNKNOWN {
                by_name
                    .entry(task)
                    .or_insert_with(|| TaskSummary {
                        task: task.clone(),
                        ..TaskSummary::default()
                    })
                    .errors = n;
            }
        }
        order_and_bound(by_name.into_values().collect())
    }

    /// The latency percentile distribution ([`Report::latency_percentiles`]); for an older
    /// report without it, computed from its histogram (empty if that cannot be decoded).
    pub fn percentile_points(&self) -> Vec<PercentilePoint> {
        if !self.latency_percentiles.is_empty() {
            return self.latency_percentiles.clone();
        }
        crate::histo::decode(&self.latency_histogram)
            .map(|h| crate::histo::percentile_points(&h))
            .unwrap_or_default()
    }

    /// Number of outage windows.
    pub fn outage_count(&self) -> u64 {
        self.outage_total
    }

    /// Whether the verdict is pass.
    pub fn passed(&self) -> bool {
        self.verdict == Verdict::Pass
    }

    /// Writes the report as pretty JSON.
    pub fn write_json(&self, mut w: impl Write) -> io::Result<()> {
        serde_json::to_writer_pretty(&mut w, self)?;
        writeln!(w)?;
        w.flush()
    }

    /// Reads a report written by [`Report::write_json`].
    pub fn from_json(r: impl io::Read) -> Result<Report, serde_json::Error> {
        serde_json::from_reader(r)
    }

    /// Writes the Markdown summary (fits a CI job summary).
    pub fn write_markdown(&self, mut w: impl Write) -> io::Result<()> {
        w.write_all(crate::report_md::render(self).as_bytes())?;
        w.flush()
    }

    /// Writes the self-contained HTML page with charts.
    pub fn write_html(&self, mut w: impl Write) -> io::Result<()> {
        w.write_all(crate::report_html::render(self).as_bytes())?;
        w.flush()
    }

    /// The plain-text summary printed at the end of a run.
    #[expect(
        clippy::too_many_lines,
        reason = "the terminal summary, written line by line in the order it is printed"
    )]
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let ms = |us: u64| us as f64 / 1000.0;
        let _ = writeln!(
            s,
            "{} {} ({} {} connections, {}){}",
            self.target,
            self.config.rate,
            self.config.connections,
            self.config.mode,
            humantime::format_duration(std::time::Duration::from_millis(self.elapsed_ms)),
            if self.stopped_early {
                ", stopped early"
            } else {
                ""
            }
        );
        if !self.sources.is_empty() {
            let _ = writeln!(s, "merged from: {}", self.sources.join(", "));
        }
        if let Some(tls) = &self.config.tls {
            let loud = if tls.insecure { "WARNING: " } else { "" };
            let _ = writeln!(s, "{loud}{}", tls.describe());
        }
        if !self.config.headers.is_empty() {
            let _ = writeln!(s, "headers    {}", self.config.headers.join(" | "));
        }
        let _ = writeln!(
            s,
            "incidents  {}  longest gap between successes {} ms",
            self.incident_total, self.longest_gap_ms
        );
        for i in self.incidents.iter().take(20) {
            let _ = writeln!(s, "  {}", i.describe());
        }
        if self.incidents.len() > 20 {
            let _ = writeln!(s, "  ... {} more in the reports", self.incidents.len() - 20);
        }
        let _ = writeln!(
            s,
            "requests {}  ok {}  errors {}  achieved {:.1}/s",
            self.requests, self.ok, self.errors.total, self.achieved_rate
        );
        let l = &self.latency_us;
        let _ = writeln!(
            s,
            "latency ms  p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
            ms(l.p50),
            ms(l.p90),
            ms(l.p99),
            ms(l.p999),
            ms(l.max)
        );
        if self.config.rate_per_s.is_some() {
            let g = &self.schedule_lag_us;
            let _ = writeln!(
                s,
                "probe      schedule lag p99 {:.3} ms, max {:.3} ms; pool exhausted {} times; send delay max {:.3} ms",
                ms(g.p99),
                ms(g.max),
                self.pool_exhausted,
                ms(self.send_delay_us.max)
            );
        }
        for (kind, n) in &self.errors.by_kind {
            let _ = writeln!(s, "error      {kind}: {n}");
        }
        if self
            .errors
            .by_task
            .keys()
            .any(|k| k != crate::incident::UNKNOWN)
        {
            let _ = writeln!(s, "errors on  {}", map_line(&self.errors.by_task));
        }
        let _ = writeln!(
            s,
            "outages    {} (runs of consecutive failures)",
            self.outage_total
        );
        for o in self.outages.iter().take(20) {
            let _ = writeln!(
                s,
                "  {}{:>8} ms .. {:>8} ms  {:>6} ms  {} errors  {}{}",
                if o.source.is_empty() {
                    String::new()
                } else {
                    format!("[{}] ", o.source)
                },
                o.start_ms,
                o.end_ms,
                o.duration_ms,
                o.errors,
                o.kinds
                    .iter()
                    .map(|(k, n)| format!("{k}={n}"))
                    .collect::<Vec<_>>()
                    .join(" "),
                if o.recovered { "" } else { " (not recovered)" }
            );
        }
        if self.outages.len() > 20 {
            let _ = writeln!(s, "  ... {} more in the reports", self.outages.len() - 20);
        }
        let map = |m: &BTreeMap<String, u64>| {
            m.iter()
                .map(|(k, n)| format!("{k}={n}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        if !self.versions.is_empty() {
            let _ = writeln!(s, "versions   {}", map(&self.versions));
        }
        if !self.served_by.is_empty() && self.served_by.len() <= 20 {
            let _ = writeln!(s, "served by  {}", map(&self.served_by));
        }
        for e in &self.events {
            let _ = writeln!(s, "event {:>8} ms  {}", e.at_ms, e.label);
        }
        for w in &self.warnings {
            let _ = writeln!(s, "warning: {w}");
        }
        if self.missing_results > 0 {
            let _ = writeln!(
                s,
                "PROBE FAULT: {} requests sent without a recorded result",
                self.missing_results
            );
        }
        let _ = write!(s, "verdict: {}", self.verdict.to_string().to_uppercase());
        for r in &self.reasons {
            let _ = write!(s, "\n  - {r}");
        }
        s.push('\n');
        s
    }
}

fn map_line(m: &BTreeMap<String, u64>) -> String {
    m.iter()
        .map(|(k, n)| format!("{k}={n}"))
        .collect::<Vec<_>>()
        .join(" ")
}

//! Self-contained HTML report: inline CSS and SVG, no script, nothing fetched to view it.
//!
//! Charts over the timeline: requests per second (ok and failed), errors per interval, p99
//! latency per interval, the version mix, and the tasks serving (one lane per task, shaded by
//! its share of each interval's responses); incidents are shaded orange, the outage windows
//! inside them red, and event markers drawn as labelled vertical lines on every chart. Long runs
//! are bucketed to at most [`MAX_BARS`] bars (counts add up, latency takes the highest). Then
//! the latency percentile distribution, as HdrHistogram plots it (x = 1/(1-p), log scale).
//!
//! Task lanes: one row per task in order of first response, at most 600 columns and 24,000
//! cells, incidents outlined on the lanes of the tasks they are attributed to. A report from
//! before `tasks` or `latency_percentiles` were recorded gets them derived from its intervals and
//! histogram.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use crate::histo::PercentilePoint;
use crate::report::{Interval, Report, TaskSummary};

const MAX_BARS: usize = 600;
const W: f64 = 960.0;
const H: f64 = 170.0;
/// Room for the y labels, and the task lanes' labels (task id and version).
const LEFT: f64 = 120.0;
const RIGHT: f64 = 30.0;
/// Rows of event labels above each chart.
const LABEL_ROWS: usize = 4;
const TOP: f64 = 10.0 * LABEL_ROWS as f64 + 6.0;
const BOTTOM: f64 = 22.0;
const PALETTE: [&str; 8] = [
    "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#7f7f7f",
];
/// Task lanes drawn; tasks past the last but one share the last lane.
const MAX_LANES: usize = 64;
/// Height of one task lane.
const LANE_H: f64 = 12.0;
/// Lanes × columns of the task chart at most: fewer columns when there are many lanes, so the
/// page stays small whatever the run (cells of equal shade are drawn as one rectangle besides).
const MAX_CELLS: usize = 24_000;
/// Steps of shade for a task's share of responses (a share above zero is at least one step).
const SHADES: f64 = 10.0;
/// Height of the percentile plot.
const PCT_H: f64 = 240.0;

/// Escapes text for HTML content and attributes.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Intervals merged into at most `MAX_BARS` buckets.
fn buckets(r: &Report) -> (Vec<Interval>, u64) {
    let per = r.intervals.len().div_ceil(MAX_BARS).max(1);
    let width_ms = r.interval_ms.max(1) * per as u64;
    let mut out = Vec::new();
    for chunk in r.intervals.chunks(per) {
        let mut b = Interval {
            start_ms: chunk[0].start_ms,
            ..Interval::default()
        };
        for i in chunk {
            b.requests += i.requests;
            b.ok += i.ok;
            b.errors += i.errors;
            b.p99_us = b.p99_us.max(i.p99_us);
            b.max_us = b.max_us.max(i.max_us);
            for (k, n) in &i.versions {
                *b.versions.entry(k.clone()).or_default() += n;
            }
        }
        out.push(b);
    }
    (out, width_ms)
}

struct Chart<'a> {
    report: &'a Report,
    span_ms: f64,
    width_ms: f64,
}

impl Chart<'_> {
    fn x(&self, ms: f64) -> f64 {
        LEFT + (W - LEFT - RIGHT) * (ms / self.span_ms).clamp(0.0, 1.0)
    }

    /// The chart's heading and the opening of its SVG, `h` high.
    fn open(out: &mut String, title: &str, h: f64) {
        let _ = writeln!(out, "<h3>{}</h3>", esc(title));
        let _ = writeln!(
            out,
            "<svg viewBox=\"0 0 {W} {h}\" width=\"100%\" role=\"img\" aria-label=\"{}\">",
            esc(title)
        );
    }

    /// Stacked bars: per bucket, (value, colour) from the bottom up.
    fn render(&self, out: &mut String, title: &str, unit: &str, bars: &[(u64, Vec<(f64, &str)>)]) {
        let top = bars
            .iter()
            .map(|(_, stack)| stack.iter().map(|(v, _)| v).sum::<f64>())
            .fold(0.0, f64::max);
        let scale = if top > 0.0 { top } else { 1.0 };
        let plot_h = H - TOP - BOTTOM;
        let y = |v: f64| TOP + plot_h * (1.0 - v / scale);
        Self::open(out, title, H);
        self.windows(out, plot_h);
        let bw = ((W - LEFT - RIGHT) * self.width_ms / self.span_ms).max(0.5);
        for (start_ms, stack) in bars {
            let mut base = 0.0;
            for (v, color) in stack {
                if *v <= 0.0 {
                    continue;
                }
                let (y1, y0) = (y(base + v), y(base));
                let _ = writeln!(
                    out,
                    "<rect x=\"{:.1}\" y=\"{y1:.1}\" width=\"{bw:.2}\" height=\"{:.1}\" fill=\"{color}\"><title>{start_ms} ms: {v:.1} {}</title></rect>",
                    self.x(*start_ms as f64),
                    (y0 - y1).max(0.5),
                    esc(unit)
                );
                base += v;
            }
        }
        let bottom = TOP + plot_h;
        self.time_axis(out, bottom, H);
        let _ = writeln!(
            out,
            "<text x=\"{:.0}\" y=\"{:.0}\" text-anchor=\"end\">{} {}</text><text x=\"{:.0}\" y=\"{bottom}\" text-anchor=\"end\">0</text>",
            LEFT - 4.0,
            TOP + 8.0,
            if top >= 100.0 {
                format!("{top:.0}")
            } else {
                format!("{top:.1}")
            },
            esc(unit),
            LEFT - 4.0
        );
        self.events(out, bottom);
        out.push_str("</svg>\n");
    }

    /// Incidents, then the outage windows inside them, behind everything (`plot_h` from `TOP`).
    fn windows(&self, out: &mut String, plot_h: f64) {
        for i in &self.report.incidents {
            let (x0, x1) = (self.x(i.start_ms as f64), self.x(i.end_ms as f64));
            let _ = writeln!(
                out,
                "<rect class=\"incident\" x=\"{x0:.1}\" y=\"{TOP}\" width=\"{:.1}\" height=\"{plot_h}\"><title>incident {}</title></rect>",
                (x1 - x0).max(1.5),
                esc(&i.describe())
            );
        }
        for o in &self.report.outages {
            let (x0, x1) = (self.x(o.start_ms as f64), self.x(o.end_ms as f64));
            let _ = writeln!(
                out,
                "<rect class=\"outage\" x=\"{x0:.1}\" y=\"{TOP}\" width=\"{:.1}\" height=\"{plot_h}\"><title>outage {} ms .. {} ms, {} errors</title></rect>",
                (x1 - x0).max(1.5),
                o.start_ms,
                o.end_ms,
                o.errors
            );
        }
    }

    /// The axes (the plot from `TOP` to `bottom`) and the time labels at the foot (`h`).
    fn time_axis(&self, out: &mut String, bottom: f64, h: f64) {
        let _ = writeln!(
            out,
            "<line class=\"axis\" x1=\"{LEFT}\" y1=\"{bottom}\" x2=\"{}\" y2=\"{bottom}\"/><line class=\"axis\" x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{bottom}\"/>",
            W - RIGHT
        );
        for i in 0..=5 {
            let ms = self.span_ms * i as f64 / 5.0;
            let _ = writeln!(
                out,
                "<text x=\"{:.1}\" y=\"{h}\" text-anchor=\"middle\">{:.1} s</text>",
                self.x(ms),
                ms / 1000.0
            );
        }
    }

    /// The event markers, as lines from `TOP` to `bottom` with their labels above.
    fn events(&self, out: &mut String, bottom: f64) {
        // An event far enough from the next one gets its label; one in a cluster gets its number
        // (the Events table below has it in full), in the first row where it does not overlap;
        // where even that would overlap, the line alone (its tooltip has the label).
        let xs: Vec<f64> = self
            .report
            .events
            .iter()
            .map(|e| self.x(e.at_ms.max(0) as f64))
            .collect();
        let mut row_end = [f64::MIN; LABEL_ROWS];
        for (n, e) in self.report.events.iter().enumerate() {
            let x = xs[n];
            let label = if e.source.is_empty() {
                format!("{} {}", n + 1, e.label)
            } else {
                format!("{} {} ({})", n + 1, e.label, e.source)
            };
            let width = |t: &str| 2.0 + 6.0 * t.chars().count() as f64;
            let crowded = xs.get(n + 1).is_some_and(|next| next - x < width(&label));
            let text = if crowded {
                (n + 1).to_string()
            } else {
                label.clone()
            };
            let _ = writeln!(
                out,
                "<line class=\"event\" x1=\"{x:.1}\" y1=\"{TOP}\" x2=\"{x:.1}\" y2=\"{bottom}\"><title>{} ms: {}</title></line>",
                e.at_ms,
                esc(&label),
            );
            if let Some(row) = (0..LABEL_ROWS).find(|&r| row_end[r] < x) {
                row_end[row] = x + width(&text);
                let _ = writeln!(
                    out,
                    "<text class=\"event\" x=\"{:.1}\" y=\"{:.0}\">{}</text>",
                    x + 2.0,
                    10.0 + 10.0 * row as f64,
                    esc(&text)
                );
            }
        }
    }

    /// One lane per task (rows in order of first response), time across; a cell's shade is the
    /// task's share of the responses in its column, its colour the version the task served; a
    /// red outline marks an incident's window on the lanes of the tasks its failures are
    /// attributed to.
    fn lanes(&self, out: &mut String, title: &str, lanes: &Lanes) {
        let plot_h = LANE_H * lanes.lanes.len() as f64;
        let bottom = TOP + plot_h;
        let h = bottom + BOTTOM;
        Self::open(out, title, h);
        self.windows(out, plot_h);
        let width_ms = lanes.width_ms as f64;
        let end_ms = |col: usize| ((lanes.starts_ms[col] as f64) + width_ms).min(self.span_ms);
        for (row, lane) in lanes.lanes.iter().enumerate() {
            let y = TOP + LANE_H * row as f64;
            let _ = writeln!(
                out,
                "<g class=\"lane\" data-task=\"{}\" data-version=\"{}\">",
                esc(&lane.task),
                esc(&lane.version)
            );
            let _ = writeln!(
                out,
                "<text x=\"{:.0}\" y=\"{:.1}\" text-anchor=\"end\">{}<title>{} ({})</title></text>",
                LEFT - 4.0,
                y + LANE_H - 2.5,
                esc(&lane_label(&lane.task, &lane.version)),
                esc(&lane.task),
                esc(&lane.version)
            );
            for run in lanes.runs(row) {
                let (x0, x1) = (
                    self.x(lanes.starts_ms[run.first] as f64),
                    self.x(end_ms(run.last)),
                );
                let share = |pct: f64| format!("{pct:.0}%");
                let range = if run.min_pct.round() == run.max_pct.round() {
                    share(run.min_pct)
                } else {
                    format!("{}-{}", share(run.min_pct), share(run.max_pct))
                };
                let _ = writeln!(
                    out,
                    "<rect x=\"{x0:.1}\" y=\"{:.1}\" width=\"{:.2}\" height=\"{:.1}\" fill=\"{}\" fill-opacity=\"{:.1}\"><title>{}: {}-{} ms, {range} of responses ({} of {})</title></rect>",
                    y + 1.0,
                    (x1 - x0).max(0.5),
                    LANE_H - 2.0,
                    lane.color,
                    (f64::from(run.shade) / SHADES).max(0.15),
                    esc(&lane.task),
                    lanes.starts_ms[run.first],
                    end_ms(run.last) as u64,
                    run.responses,
                    run.total
                );
            }
            out.push_str("</g>\n");
        }
        for i in &self.report.incidents {
            let (x0, x1) = (self.x(i.start_ms as f64), self.x(i.end_ms as f64));
            for (task, n) in &i.failed_on {
                let Some(&row) = lanes.row.get(task.as_str()) else {
                    continue;
                };
                let _ = writeln!(
                    out,
                    "<rect class=\"failed\" x=\"{x0:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{LANE_H}\"><title>{n} failed on {}: incident {}</title></rect>",
                    TOP + LANE_H * row as f64,
                    (x1 - x0).max(1.5),
                    esc(task),
                    esc(&i.describe())
                );
            }
        }
        self.time_axis(out, bottom, h);
        self.events(out, bottom);
        out.push_str("</svg>\n");
    }
}

/// A lane's label: the task id and the version, shortened to fit left of the plot (the
/// tooltip and the Tasks table have them in full).
fn lane_label(task: &str, version: &str) -> String {
    let short = |s: &str, n: usize| {
        if s.chars().count() > n {
            let mut t: String = s.chars().take(n - 1).collect();
            t.push('…');
            t
        } else {
            s.to_owned()
        }
    };
    // Responses without `x-served-by` have no version of their own either.
    if version == task || version == "(none)" {
        return short(task, 18);
    }
    format!("{} {}", short(task, 12), short(version, 5))
}

/// One task lane.
struct Lane {
    task: String,
    version: String,
    color: &'static str,
    /// Responses per column.
    counts: Vec<u64>,
}

/// Cells of one lane with the same shade, side by side.
struct Run {
    first: usize,
    last: usize,
    shade: u8,
    min_pct: f64,
    max_pct: f64,
    responses: u64,
    total: u64,
}

/// The task chart's data: lanes × columns of response counts.
struct Lanes {
    lanes: Vec<Lane>,
    /// Lane of each task drawn in its own lane.
    row: HashMap<String, usize>,
    /// Each column's start, ms, and its width.
    starts_ms: Vec<u64>,
    width_ms: u64,
    /// Responses per column, all tasks.
    totals: Vec<u64>,
}

impl Lanes {
    /// Lanes for `r`'s tasks: in order of first response (from [`Report::task_summaries`],
    /// then any other task the intervals name, by first interval), at most [`MAX_LANES`] (the
    /// rest share the last), over at most [`MAX_BARS`] columns and [`MAX_CELLS`] cells.
    fn of(r: &Report, color: impl Fn(&str) -> &'static str) -> Lanes {
        let tasks = r.task_summaries();
        let mut order: Vec<(String, String)> = tasks
            .iter()
            .filter(|t| t.responses > 0 || t.errors > 0)
            .map(|t: &TaskSummary| (t.task.clone(), t.version_label()))
            .collect();
        let mut known: HashMap<String, usize> = order
            .iter()
            .enumerate()
            .map(|(i, (t, _))| (t.clone(), i))
            .collect();
        for iv in &r.intervals {
            for (task, n) in &iv.served_by {
                if *n > 0 && !known.contains_key(task) {
                    known.insert(task.clone(), order.len());
                    order.push((task.clone(), "?".to_owned()));
                }
            }
        }
        // Past MAX_LANES tasks, the first MAX_LANES - 1 have a lane each and the rest share one.
        let n_lanes = order.len().min(MAX_LANES);
        let own = if order.len() > MAX_LANES {
            MAX_LANES - 1
        } else {
            order.len()
        };
        let columns = (MAX_CELLS / n_lanes.max(1)).clamp(1, MAX_BARS);
        let per = r.intervals.len().div_ceil(columns).max(1);
        let starts_ms: Vec<u64> = r.intervals.chunks(per).map(|c| c[0].start_ms).collect();
        let cols = starts_ms.len();
        let mut lanes: Vec<Lane> = order
            .iter()
            .take(n_lanes)
            .map(|(task, version)| Lane {
                task: task.clone(),
                version: version.clone(),
                color: color(version.split('/').next().unwrap_or_default()),
                counts: vec![0; cols],
            })
            .collect();
        if own < n_lanes
            && let Some(last) = lanes.last_mut()
        {
            last.task = format!("{} more tasks", order.len() - own);
            last.version = "various".to_owned();
            last.color = "#7f7f7f";
        }
        let mut totals = vec![0u64; cols];
        for (i, iv) in r.intervals.iter().enumerate() {
            let col = i / per;
            for (task, &n) in &iv.served_by {
                let Some(&lane) = known.get(task) else {
                    continue;
                };
                let lane = lane.min(own);
                if let (Some(l), Some(t)) = (lanes.get_mut(lane), totals.get_mut(col)) {
                    l.counts[col] += n;
                    *t += n;
                }
            }
        }
        let row = known.into_iter().filter(|(_, i)| *i < own).collect();
        Lanes {
            lanes,
            row,
            starts_ms,
            width_ms: r.interval_ms.max(1) * per as u64,
            totals,
        }
    }

    /// Lane `row`'s cells with a response, runs of equal shade merged.
    fn runs(&self, row: usize) -> Vec<Run> {
        let mut runs: Vec<Run> = Vec::new();
        let Some(lane) = self.lanes.get(row) else {
            return runs;
        };
        for (col, (&n, &total)) in lane.counts.iter().zip(&self.totals).enumerate() {
            if n == 0 {
                continue;
            }
            let pct = 100.0 * n as f64 / total.max(1) as f64;
            let shade = ((pct / 100.0 * SHADES).ceil()).clamp(1.0, SHADES) as u8;
            match runs.last_mut() {
                Some(run) if run.last + 1 == col && run.shade == shade => {
                    run.last = col;
                    run.min_pct = run.min_pct.min(pct);
                    run.max_pct = run.max_pct.max(pct);
                    run.responses += n;
                    run.total += total;
                }
                _ => runs.push(Run {
                    first: col,
                    last: col,
                    shade,
                    min_pct: pct,
                    max_pct: pct,
                    responses: n,
                    total,
                }),
            }
        }
        runs
    }
}

fn table(out: &mut String, head: &[&str], rows: impl Iterator<Item = Vec<String>>) {
    out.push_str("<table><tr>");
    for h in head {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr>\n");
    for row in rows {
        out.push_str("<tr>");
        for c in row {
            let _ = write!(out, "<td>{}</td>", esc(&c));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
}

/// The whole document, top to bottom: the verdict, the incidents, the figures and charts, then
/// tasks, outages, errors and events.
#[expect(
    clippy::too_many_lines,
    reason = "one HTML document written top to bottom in the order a reader sees it"
)]
pub(crate) fn render(r: &Report) -> String {
    let (bars, width_ms) = buckets(r);
    let span_ms = (r.intervals.len() as u64 * r.interval_ms)
        .max(r.elapsed_ms)
        .max(1) as f64;
    let chart = Chart {
        report: r,
        span_ms,
        width_ms: width_ms as f64,
    };
    let per_s = 1000.0 / width_ms as f64;
    let ms = |us: u64| format!("{:.1} ms", us as f64 / 1000.0);
    let mut s = String::new();
    let verdict = match r.verdict {
        crate::Verdict::Pass => "PASS",
        crate::Verdict::Fail => "FAIL",
        crate::Verdict::Fault => "PROBE FAULT",
    };
    let _ = write!(
        s,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<title>loadprobe {verdict}: {}</title>\n<style>\
body{{font:14px/1.4 system-ui,sans-serif;margin:1.5em auto;max-width:1000px;color:#222}}\
.pass{{color:#0a7d28}}.fail{{color:#c0162b}}\
table{{border-collapse:collapse;margin:.5em 0}}td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right}}\
svg text{{font-size:11px;fill:#444}}svg text.event{{fill:#6a3d9a}}\
line.axis{{stroke:#888}}line.event{{stroke:#6a3d9a;stroke-dasharray:4 3}}rect.outage{{fill:#f4c7cc}}rect.incident{{fill:#fbe3d0}}\
rect.failed{{fill:none;stroke:#c0162b;stroke-width:1.5}}line.grid{{stroke:#e4e4e4}}\
polyline.pct{{fill:none;stroke:#1f77b4;stroke-width:1.5}}circle.pct{{fill:#1f77b4}}\
.legend span{{display:inline-block;margin-right:1em}}.legend i{{display:inline-block;width:10px;height:10px;margin-right:4px}}\
</style></head><body>\n",
        esc(&r.target)
    );
    let _ = writeln!(
        s,
        "<h1 class=\"{}\">{verdict}</h1><p><b>{}</b> at {} {} over {} connections, {} ms from {}{}</p>",
        if r.passed() { "pass" } else { "fail" },
        esc(&r.target),
        esc(&r.config.rate),
        r.config.mode,
        r.config.connections,
        r.elapsed_ms,
        esc(&r.started_at),
        if r.sources.is_empty() {
            String::new()
        } else {
            format!(", merged from {}", esc(&r.sources.join(", ")))
        }
    );
    if let Some(tls) = &r.config.tls {
        let class = if tls.insecure { " class=\"fail\"" } else { "" };
        let _ = writeln!(s, "<p{class}><b>{}</b></p>", esc(&tls.describe()));
    }
    if !r.config.headers.is_empty() {
        let _ = writeln!(s, "<p>headers: {}</p>", esc(&r.config.headers.join(" | ")));
    }
    if !r.reasons.is_empty() {
        s.push_str("<ul>");
        for reason in &r.reasons {
            let _ = write!(s, "<li class=\"fail\">{}</li>", esc(reason));
        }
        s.push_str("</ul>\n");
    }
    let _ = writeln!(
        s,
        "<h2>Incidents: {}</h2><p>longest gap between successes {} ms</p>",
        r.incident_total, r.longest_gap_ms
    );
    if !r.incidents.is_empty() {
        table(
            &mut s,
            &[
                "start",
                "end",
                "requests",
                "failed",
                "rate",
                "kinds",
                "failed on",
                "versions",
                "served by",
                "probe",
            ],
            r.incidents.iter().take(200).map(|i| {
                vec![
                    format!("{} ms", i.start_ms),
                    format!(
                        "{} ms{}",
                        i.end_ms,
                        if i.recovered { "" } else { " (not recovered)" }
                    ),
                    i.requests.to_string(),
                    i.errors.to_string(),
                    format!("{:.1}%", 100.0 * i.error_rate),
                    join(&i.kinds),
                    join(&i.failed_on),
                    join(&i.versions),
                    join(&i.served_by),
                    i.source.clone(),
                ]
            }),
        );
    }
    let l = &r.latency_us;
    table(
        &mut s,
        &[
            "requests",
            "ok",
            "errors",
            "rate",
            "p50",
            "p90",
            "p99",
            "p99.9",
            "max",
            "longest gap",
            "outages",
        ],
        std::iter::once(vec![
            r.requests.to_string(),
            r.ok.to_string(),
            r.errors.total.to_string(),
            format!("{:.1}/s", r.achieved_rate),
            ms(l.p50),
            ms(l.p90),
            ms(l.p99),
            ms(l.p999),
            ms(l.max),
            format!("{} ms", r.longest_gap_ms),
            r.outage_total.to_string(),
        ]),
    );

    let rate: Vec<_> = bars
        .iter()
        .map(|b| {
            (
                b.start_ms,
                vec![
                    (b.ok as f64 * per_s, "#2ca02c"),
                    (b.errors as f64 * per_s, "#d62728"),
                ],
            )
        })
        .collect();
    chart.render(
        &mut s,
        "Requests per second (green ok, red failed)",
        "req/s",
        &rate,
    );
    let errors: Vec<_> = bars
        .iter()
        .map(|b| (b.start_ms, vec![(b.errors as f64, "#d62728")]))
        .collect();
    chart.render(
        &mut s,
        &format!("Errors per {width_ms} ms"),
        "errors",
        &errors,
    );
    let p99: Vec<_> = bars
        .iter()
        .map(|b| (b.start_ms, vec![(b.p99_us as f64 / 1000.0, "#1f77b4")]))
        .collect();
    chart.render(&mut s, "p99 latency per interval", "ms", &p99);
    let names: Vec<&String> = r.versions.keys().collect();
    let color = |v: &str| {
        names
            .iter()
            .position(|n| n.as_str() == v)
            .map_or("#7f7f7f", |i| PALETTE[i % PALETTE.len()])
    };
    let mix: Vec<_> = bars
        .iter()
        .map(|b| {
            let total = b.versions.values().sum::<u64>().max(1) as f64;
            (
                b.start_ms,
                b.versions
                    .iter()
                    .map(|(v, n)| (100.0 * *n as f64 / total, color(v)))
                    .collect(),
            )
        })
        .collect();
    chart.render(&mut s, "Version mix (x-app-version)", "%", &mix);
    s.push_str("<p class=\"legend\">");
    for v in &names {
        let _ = write!(
            s,
            "<span><i style=\"background:{}\"></i>{} ({})</span>",
            color(v),
            esc(v),
            r.versions.get(*v).copied().unwrap_or(0)
        );
    }
    s.push_str("</p>\n");

    let lanes = Lanes::of(r, color);
    if !lanes.lanes.is_empty() {
        chart.lanes(
            &mut s,
            "Tasks serving (x-served-by): each task's share of the responses",
            &lanes,
        );
        s.push_str(
            "<p class=\"legend\">One lane per task, in order of its first response, labelled with \
its id and the version it served (colour as in the version mix); darker: a larger share of the \
responses in that column. A red outline: an incident's failures attributed to that task.</p>\n",
        );
    }
    tasks_table(&mut s, r);
    let points = r.percentile_points();
    if !points.is_empty() {
        percentile_plot(&mut s, &points, r.latency_us.max);
    }

    if !r.outages.is_empty() {
        s.push_str("<h2>Outages</h2>\n");
        table(
            &mut s,
            &["start", "end", "duration", "errors", "kinds", "probe"],
            r.outages.iter().take(200).map(|o| {
                vec![
                    format!("{} ms", o.start_ms),
                    format!(
                        "{} ms{}",
                        o.end_ms,
                        if o.recovered { "" } else { " (not recovered)" }
                    ),
                    format!("{} ms", o.duration_ms),
                    o.errors.to_string(),
                    join(&o.kinds),
                    o.source.clone(),
                ]
            }),
        );
    }
    if !r.errors.by_kind.is_empty() {
        s.push_str("<h2>Errors by kind</h2>\n");
        table(
            &mut s,
            &["kind", "count"],
            r.errors
                .by_kind
                .iter()
                .map(|(k, n)| vec![k.clone(), n.to_string()]),
        );
    }
    if !r.events.is_empty() {
        s.push_str("<h2>Events</h2>\n");
        table(
            &mut s,
            &["#", "at", "event", "probe"],
            r.events.iter().take(500).enumerate().map(|(n, e)| {
                vec![
                    (n + 1).to_string(),
                    format!("{} ms", e.at_ms),
                    e.label.clone(),
                    e.source.clone(),
                ]
            }),
        );
    }
    let g = &r.schedule_lag_us;
    let _ = writeln!(
        s,
        "<p><small>probe health: schedule lag p99 {}, max {}; pool exhausted {} times. {}</small></p>",
        ms(g.p99),
        ms(g.max),
        r.pool_exhausted,
        esc(&r.warnings.join("; "))
    );
    s.push_str("</body></html>\n");
    s
}

/// Rows of the Tasks table at most (the JSON has every task).
const MAX_TASK_ROWS: usize = 100;

/// Every task: id, version, first and last response, responses, failures attributed to it.
fn tasks_table(out: &mut String, r: &Report) {
    let tasks = r.task_summaries();
    if tasks.is_empty() {
        return;
    }
    let _ = writeln!(out, "<h3>Tasks: {}</h3>", tasks.len());
    let at = |t: Option<u64>| t.map_or_else(|| "-".to_owned(), |t| format!("{t} ms"));
    table(
        out,
        &[
            "task",
            "version",
            "first response",
            "last response",
            "responses",
            "errors",
        ],
        tasks.iter().take(MAX_TASK_ROWS).map(|t| {
            vec![
                t.task.clone(),
                t.version_label(),
                at(t.first_ms),
                at(t.last_ms),
                t.responses.to_string(),
                t.errors.to_string(),
            ]
        }),
    );
    if tasks.len() > MAX_TASK_ROWS {
        let _ = writeln!(
            out,
            "<p>{} more tasks in the JSON report.</p>",
            tasks.len() - MAX_TASK_ROWS
        );
    }
}

/// The smallest of 1, 2, 5 × 10^k at or above `v` (> 0).
fn nice_ceil(v: f64) -> f64 {
    if !v.is_finite() || v <= 0.0 {
        return 1.0;
    }
    let e = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * e)
        .find(|&c| c >= v * (1.0 - 1e-12))
        .unwrap_or(10.0 * e)
}

/// A percentile as HdrHistogram labels its plot's axis: `90%`, `99.9%`, `99.999%`.
fn percentile_label(decade: u32) -> String {
    if decade == 0 {
        return "0%".to_owned();
    }
    let decimals = decade.saturating_sub(2) as usize;
    format!(
        "{:.*}%",
        decimals,
        100.0 * (1.0 - 10f64.powi(-(decade as i32)))
    )
}

/// A percentile without float noise: `99.9`, `99.99219`.
fn percentile_text(p: f64) -> String {
    let s = format!("{p:.5}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// Latency in ms with the digits that matter at its size.
fn ms_label(ms: f64) -> String {
    if ms < 10.0 {
        format!("{ms:.2}")
    } else if ms < 100.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.0}")
    }
}

/// The latency percentile distribution: latency (linear) against percentile on a log scale
/// (x = 1/(1-p): 0%, 90%, 99%, 99.9%, ... a decade each), the maximum at the right edge.
fn percentile_plot(out: &mut String, points: &[PercentilePoint], max_us: u64) {
    let title = "Latency by percentile (HdrHistogram percentile distribution)";
    let (top, bottom) = (14.0, PCT_H - 34.0);
    // 1/(1-p) of the finite points, the last point (100 %) is the maximum.
    let finite: Vec<(f64, &PercentilePoint)> = points
        .iter()
        .filter(|p| p.percentile < 100.0)
        .map(|p| ((1.0 / (1.0 - p.percentile / 100.0)).max(1.0).log10(), p))
        .collect();
    let last_x = finite.last().map_or(0.0, |(x, _)| *x);
    // Decades on the axis: past the last finite point, at least 0% .. 99%, at most 16 (f64).
    let decades = ((last_x.floor() as u32) + 1).clamp(2, 16);
    let max_ms = points
        .iter()
        .map(|p| p.latency_us)
        .max()
        .unwrap_or(0)
        .max(max_us) as f64
        / 1000.0;
    let y_top = nice_ceil(max_ms);
    let plot_w = W - LEFT - RIGHT;
    let px = |x: f64| LEFT + plot_w * (x / f64::from(decades)).clamp(0.0, 1.0);
    let py = |ms: f64| bottom - (bottom - top) * (ms / y_top).clamp(0.0, 1.0);
    Chart::open(out, title, PCT_H);
    for d in 0..=decades {
        let x = px(f64::from(d));
        let _ = writeln!(
            out,
            "<line class=\"grid\" x1=\"{x:.1}\" y1=\"{top}\" x2=\"{x:.1}\" y2=\"{bottom}\"/><text x=\"{x:.1}\" y=\"{:.0}\" text-anchor=\"middle\">{}</text>",
            bottom + 14.0,
            percentile_label(d)
        );
    }
    // As many decimals as the step between ticks needs: 0, 2, 4 or 0.0, 0.2, 0.4.
    let step = y_top / 5.0;
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    for k in 0..=5 {
        let ms = step * f64::from(k);
        let y = py(ms);
        let _ = writeln!(
            out,
            "<line class=\"grid\" x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\"/><text x=\"{:.0}\" y=\"{:.1}\" text-anchor=\"end\">{ms:.decimals$}</text>",
            W - RIGHT,
            LEFT - 4.0,
            y + 4.0,
        );
    }
    let _ = writeln!(
        out,
        "<line class=\"axis\" x1=\"{LEFT}\" y1=\"{bottom}\" x2=\"{}\" y2=\"{bottom}\"/><line class=\"axis\" x1=\"{LEFT}\" y1=\"{top}\" x2=\"{LEFT}\" y2=\"{bottom}\"/>",
        W - RIGHT
    );
    let _ = writeln!(
        out,
        "<text x=\"{:.0}\" y=\"{:.0}\" text-anchor=\"middle\">percentile (log scale of 1/(1-p))</text><text x=\"{:.0}\" y=\"{:.0}\" text-anchor=\"middle\" transform=\"rotate(-90 {:.0} {:.0})\">latency (ms)</text>",
        LEFT + plot_w / 2.0,
        PCT_H - 2.0,
        LEFT - 56.0,
        (top + bottom) / 2.0,
        LEFT - 56.0,
        (top + bottom) / 2.0
    );
    let mut xy: Vec<(f64, f64, String)> = finite
        .iter()
        .map(|(x, p)| {
            (
                px(*x),
                py(p.latency_us as f64 / 1000.0),
                format!(
                    "p{}: {} ms ({} requests at or below)",
                    percentile_text(p.percentile),
                    ms_label(p.latency_us as f64 / 1000.0),
                    p.count
                ),
            )
        })
        .collect();
    if let Some(last) = points.last().filter(|p| p.percentile >= 100.0) {
        xy.push((
            px(f64::from(decades)),
            py(last.latency_us as f64 / 1000.0),
            format!(
                "max: {} ms ({} requests)",
                ms_label(last.latency_us as f64 / 1000.0),
                last.count
            ),
        ));
    }
    let line: Vec<String> = xy
        .iter()
        .map(|(x, y, _)| format!("{x:.1},{y:.1}"))
        .collect();
    let _ = writeln!(
        out,
        "<polyline class=\"pct\" points=\"{}\"/>",
        line.join(" ")
    );
    for (x, y, label) in &xy {
        let _ = writeln!(
            out,
            "<circle class=\"pct\" cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"2\"><title>{}</title></circle>",
            esc(label)
        );
    }
    // The maximum has no finite 1/(1-p): it ends the line at the right edge, named.
    if let Some(last) = points.last().filter(|p| p.percentile >= 100.0) {
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">max {} ms</text>",
            W - RIGHT - 4.0,
            (py(last.latency_us as f64 / 1000.0) - 6.0).max(top + 8.0),
            ms_label(last.latency_us as f64 / 1000.0)
        );
    }
    out.push_str("</svg>\n");
}

fn join(m: &BTreeMap<String, u64>) -> String {
    m.iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::report::{MAX_TASKS, TaskSummary};

    /// A report of `intervals` intervals of 100 ms in which task `t` answers from interval
    /// `t * step` for `span` intervals, 3 responses an interval.
    fn report_with_tasks(intervals: usize, tasks: usize, step: usize, span: usize) -> Report {
        let serves = |t: usize, i: usize| t * step <= i && i < t * step + span;
        let mut r = crate::recorder::empty_report();
        r.interval_ms = 100;
        r.elapsed_ms = 100 * intervals as u64;
        r.intervals = (0..intervals)
            .map(|i| {
                let served_by: BTreeMap<String, u64> = (0..tasks)
                    .filter(|&t| serves(t, i))
                    .map(|t| (format!("task-{t:03}"), 3))
                    .collect();
                let n = served_by.values().sum();
                Interval {
                    start_ms: 100 * i as u64,
                    requests: n,
                    ok: n,
                    served_by,
                    ..Interval::default()
                }
            })
            .collect();
        r.tasks = (0..tasks)
            .map(|t| TaskSummary {
                task: format!("task-{t:03}"),
                versions: BTreeMap::from([("v1".to_owned(), 1)]),
                first_ms: Some(100 * (t * step) as u64),
                last_ms: Some(100 * (t * step + span) as u64),
                responses: 1,
                errors: 0,
            })
            .collect();
        r
    }

    #[test]
    fn task_lanes_stay_bounded_however_many_tasks_and_intervals() {
        // 257 tasks (the cap and `(other)`), replaced one by one over two hours of 100 ms
        // intervals.
        let r = report_with_tasks(78_000, MAX_TASKS + 1, 300, 600);
        let lanes = Lanes::of(&r, |_| "#000");
        assert_eq!(lanes.lanes.len(), MAX_LANES);
        assert!(lanes.starts_ms.len() * lanes.lanes.len() <= MAX_CELLS);
        assert_eq!(
            lanes.lanes.last().unwrap().task,
            format!("{} more tasks", MAX_TASKS + 1 - (MAX_LANES - 1))
        );
        let html = render(&r);
        assert_eq!(html.matches("<g class=\"lane\"").count(), MAX_LANES);
        assert!(html.len() < 2_000_000, "{} bytes", html.len());
        // Lanes in order of first response: task-000 on top.
        let first = html.find("data-task=\"task-000\"").unwrap();
        assert!(first < html.find("data-task=\"task-001\"").unwrap());
    }

    #[test]
    fn a_steady_share_is_one_cell_and_a_new_task_starts_where_it_appears() {
        let r = report_with_tasks(1000, 2, 500, 1000);
        let lanes = Lanes::of(&r, |_| "#000");
        assert_eq!(
            lanes.starts_ms.len(),
            500,
            "1000 intervals in at most 600 columns"
        );
        // task-000 alone (100 %), then half of the responses: two cells, not five hundred.
        let runs = lanes.runs(0);
        assert_eq!(runs.len(), 2);
        assert_eq!((runs[0].shade, runs[1].shade), (10, 5));
        let runs = lanes.runs(1);
        assert_eq!(runs.len(), 1);
        assert_eq!(lanes.starts_ms[runs[0].first], 50_000);
    }

    #[test]
    fn lane_labels_fit_left_of_the_plot() {
        assert_eq!(
            lane_label("4f3c2a1b9e8d7c6b5a4f3e2d1c0b9a88", "v1"),
            "4f3c2a1b9e8… v1"
        );
        assert_eq!(lane_label("task-b", "2025.11.28-1"), "task-b 2025…");
        assert_eq!(lane_label("(none)", "(none)"), "(none)");
    }

    #[test]
    fn percentile_axis_labels_and_nice_bounds() {
        let labels: Vec<String> = (0..=5).map(percentile_label).collect();
        assert_eq!(labels, ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"]);
        assert_eq!(nice_ceil(3.2), 5.0);
        assert_eq!(nice_ceil(0.013), 0.02);
        assert_eq!(nice_ceil(100.0), 100.0);
        assert_eq!(nice_ceil(0.0), 1.0);
        assert_eq!(percentile_text(100.0 * 0.999), "99.9");
        assert_eq!(percentile_text(50.0), "50");
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(
            esc("<b>\"x\" & 'y'</b>"),
            "&lt;b&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/b&gt;"
        );
    }
}

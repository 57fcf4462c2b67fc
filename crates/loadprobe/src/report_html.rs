//! Self-contained HTML report: inline CSS and SVG, no script, nothing fetched to view it.
//!
//! Charts over the timeline: requests per second (ok and failed), errors per interval, p99
//! latency per interval, and the version mix; incidents are shaded orange, the outage windows
//! inside them red, and event markers drawn as labelled vertical lines on every chart. Long runs
//! are bucketed to at most [`MAX_BARS`] bars (counts add up, latency takes the highest).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::report::{Interval, Report};

const MAX_BARS: usize = 600;
const W: f64 = 960.0;
const H: f64 = 170.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 30.0;
/// Rows of event labels above each chart.
const LABEL_ROWS: usize = 4;
const TOP: f64 = 10.0 * LABEL_ROWS as f64 + 6.0;
const BOTTOM: f64 = 22.0;
const PALETTE: [&str; 8] = [
    "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#7f7f7f",
];

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

    /// Stacked bars: per bucket, (value, colour) from the bottom up.
    fn render(&self, out: &mut String, title: &str, unit: &str, bars: &[(u64, Vec<(f64, &str)>)]) {
        let top = bars
            .iter()
            .map(|(_, stack)| stack.iter().map(|(v, _)| v).sum::<f64>())
            .fold(0.0, f64::max);
        let scale = if top > 0.0 { top } else { 1.0 };
        let plot_h = H - TOP - BOTTOM;
        let y = |v: f64| TOP + plot_h * (1.0 - v / scale);
        let _ = writeln!(out, "<h3>{}</h3>", esc(title));
        let _ = writeln!(
            out,
            "<svg viewBox=\"0 0 {W} {H}\" width=\"100%\" role=\"img\" aria-label=\"{}\">",
            esc(title)
        );
        // Incidents, then the outage windows inside them, behind everything.
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
        // Axes and labels.
        let bottom = TOP + plot_h;
        let _ = writeln!(
            out,
            "<line class=\"axis\" x1=\"{LEFT}\" y1=\"{bottom}\" x2=\"{}\" y2=\"{bottom}\"/><line class=\"axis\" x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{bottom}\"/>",
            W - RIGHT
        );
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
        for i in 0..=5 {
            let ms = self.span_ms * i as f64 / 5.0;
            let _ = writeln!(
                out,
                "<text x=\"{:.1}\" y=\"{H}\" text-anchor=\"middle\">{:.1} s</text>",
                self.x(ms),
                ms / 1000.0
            );
        }
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
        out.push_str("</svg>\n");
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
    if !r.served_by.is_empty() && r.served_by.len() <= 100 {
        s.push_str("<h2>Served by</h2>\n");
        table(
            &mut s,
            &["x-served-by", "responses"],
            r.served_by
                .iter()
                .map(|(k, n)| vec![k.clone(), n.to_string()]),
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

fn join(m: &BTreeMap<String, u64>) -> String {
    m.iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            esc("<b>\"x\" & 'y'</b>"),
            "&lt;b&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/b&gt;"
        );
    }
}

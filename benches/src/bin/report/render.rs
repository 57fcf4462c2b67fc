//! The report as Markdown (fits a CI job summary) and as one self-contained HTML page with
//! inline SVG bar charts (no script, no network).

use std::fmt::Write as _;

use crate::model::{Check, Kind, Report, Row, Section};

fn value(v: f64, unit: &str) -> String {
    match unit {
        "req/s" | "µs" => format!("{v:.0} {unit}"),
        _ => format!("{v:.1} {unit}"),
    }
}

fn times(x: f64) -> String {
    if x < 0.1 {
        format!("{x:.3}×")
    } else {
        format!("{x:.2}×")
    }
}

fn row_value(r: &Row) -> String {
    r.value
        .map_or_else(|| "—".to_owned(), |v| value(v, &r.unit))
}

fn mark(c: &Check) -> &'static str {
    match c.met {
        Some(true) => "✅ met",
        Some(false) if c.kind == Kind::Sanity => "❌ FAILED",
        Some(false) => "❌ not met",
        None => "— not measured",
    }
}

fn duration(s: f64) -> String {
    if s >= 60.0 {
        format!("{} min {:02.0} s", (s / 60.0).floor(), s % 60.0)
    } else {
        format!("{s:.0} s")
    }
}

/// One paragraph: when, how long, where, with what.
fn preamble(r: &Report) -> String {
    let m = &r.machine;
    let tools: Vec<String> = r.tools.iter().map(|(t, v)| format!("{t}: {v}")).collect();
    format!(
        "Run {}{} ({}), {} wall time. Machine: {} cores, {}, Linux {}, {}, {} MiB RAM, load average {:.2} at the start. Peers: {}.",
        r.started_at,
        r.commit
            .as_deref()
            .map_or_else(String::new, |c| format!(" at commit {c}")),
        if r.quick { "`--quick`" } else { "full" },
        duration(r.wall_s),
        m.cores,
        m.cpu,
        m.kernel,
        m.os,
        m.memory_mib,
        m.load_at_start,
        tools.join("; ")
    )
}

/// The report in Markdown.
pub(crate) fn markdown(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Benchmark report\n\n{}\n", preamble(r));
    let _ = writeln!(
        out,
        "## Targets\n\n| target | measured | |\n| --- | --- | --- |"
    );
    for s in &r.sections {
        for c in &s.checks {
            let _ = writeln!(out, "| {} | {} | {} |", c.target, c.measured, mark(c));
        }
    }
    let _ = writeln!(out, "\n## Ratios, measured in the same run\n");
    match &r.baseline {
        Some(b) => {
            let _ = writeln!(
                out,
                "Against the baseline of {} (a ratio more than {:.0} % worse is a regression).\n\n| ratio | now | baseline | worse by | |\n| --- | ---: | ---: | ---: | --- |",
                b.baseline_started_at,
                b.tolerance * 100.0
            );
            for s in &r.sections {
                for ratio in &s.ratios {
                    match b.ratios.iter().find(|c| c.id == ratio.id) {
                        Some(c) => {
                            let _ = writeln!(
                                out,
                                "| {} | {:.2} | {:.2} | {:+.1} % | {} |",
                                ratio.name,
                                c.now,
                                c.baseline,
                                c.worse_by * 100.0,
                                if c.regressed { "❌ regression" } else { "ok" }
                            );
                        }
                        None => {
                            let _ = writeln!(
                                out,
                                "| {} | {:.2} | — | | new |",
                                ratio.name, ratio.value
                            );
                        }
                    }
                }
            }
            for id in &b.missing {
                let _ = writeln!(out, "| {id} | not measured in this run | | | — |");
            }
        }
        None if r.sections.iter().all(|s| s.ratios.is_empty()) => {
            let _ = writeln!(out, "None measured in this run.");
        }
        None => {
            let _ = writeln!(out, "| ratio | value |\n| --- | ---: |");
            for s in &r.sections {
                for ratio in &s.ratios {
                    let _ = writeln!(out, "| {} | {} |", ratio.name, times(ratio.value));
                }
            }
        }
    }
    for s in &r.sections {
        section_md(&mut out, s);
    }
    out
}

fn section_md(out: &mut String, s: &Section) {
    let _ = writeln!(out, "\n## {}\n\n{}\n", s.title, s.method);
    if !s.rows.is_empty() {
        match &s.reference {
            Some(reference) => {
                let _ = writeln!(
                    out,
                    "| | measured | vs {reference} | details |\n| --- | ---: | ---: | --- |"
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "| | measured | | details |\n| --- | ---: | --- | --- |"
                );
            }
        }
        for row in &s.rows {
            let ratio = row.ratio.map_or_else(String::new, times);
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                row.label,
                row_value(row),
                ratio,
                row.detail
            );
        }
    }
    if !s.notes.is_empty() {
        let _ = writeln!(out);
        for n in &s.notes {
            let _ = writeln!(out, "- {n}");
        }
    }
}

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '`' => {}
            c => out.push(c),
        }
    }
    out
}

/// A horizontal bar chart of the rows of one unit.
fn chart(out: &mut String, rows: &[&Row]) {
    let max = rows
        .iter()
        .filter_map(|r| r.value)
        .fold(0.0_f64, f64::max)
        .max(f64::MIN_POSITIVE);
    let (label_w, bar_w, row_h) = (300.0, 420.0, 26.0);
    let height = row_h * rows.len() as f64 + 8.0;
    let _ = write!(
        out,
        r#"<svg class="chart" viewBox="0 0 900 {height}" width="900" height="{height}" role="img">"#
    );
    for (i, r) in rows.iter().enumerate() {
        let y = 4.0 + row_h * i as f64;
        let w = r.value.map_or(0.0, |v| (v / max * bar_w).max(1.0));
        let text = match (r.value, r.ratio) {
            (Some(v), Some(x)) => format!("{} ({})", value(v, &r.unit), times(x)),
            (Some(v), None) => value(v, &r.unit),
            (None, _) => "not measured".into(),
        };
        let _ = write!(
            out,
            r#"<text x="{tx}" y="{ty}" text-anchor="end">{label}</text><rect x="{label_w}" y="{y}" width="{w:.1}" height="{bh}" rx="2"/><text x="{vx:.1}" y="{ty}">{text}</text>"#,
            tx = label_w - 8.0,
            ty = y + 15.0,
            label = esc(&r.label),
            bh = row_h - 8.0,
            vx = label_w + w + 6.0,
            text = esc(&text),
        );
    }
    out.push_str("</svg>");
}

/// The report as one HTML page.
pub(crate) fn html(r: &Report) -> String {
    let mut out = String::from(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Benchmark report</title><style>
body{font:14px/1.45 system-ui,sans-serif;max-width:960px;margin:2em auto;padding:0 1em;color:#1b1f24}
table{border-collapse:collapse;margin:.5em 0 1em}td,th{border:1px solid #d0d7de;padding:.25em .6em;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}.met{color:#1a7f37}.not{color:#cf222e;font-weight:600}.na{color:#6e7781}
.chart rect{fill:#4c8bf5}.chart text{font:12px system-ui,sans-serif;fill:#1b1f24}p.method{color:#424a53}
</style></head><body><h1>Benchmark report</h1>"#,
    );
    let _ = write!(
        out,
        "<p>{}</p><h2>Targets</h2><table><tr><th>target</th><th>measured</th><th></th></tr>",
        esc(&preamble(r))
    );
    for s in &r.sections {
        for c in &s.checks {
            let class = match c.met {
                Some(true) => "met",
                Some(false) => "not",
                None => "na",
            };
            let _ = write!(
                out,
                r#"<tr><td>{}</td><td>{}</td><td class="{class}">{}</td></tr>"#,
                esc(&c.target),
                esc(&c.measured),
                mark(c)
            );
        }
    }
    out.push_str("</table><h2>Ratios, measured in the same run</h2><table><tr><th>ratio</th><th>now</th><th>baseline</th><th>worse by</th></tr>");
    for s in &r.sections {
        for ratio in &s.ratios {
            let change = r
                .baseline
                .as_ref()
                .and_then(|b| b.ratios.iter().find(|c| c.id == ratio.id));
            let (base, worse, class) = match change {
                Some(c) => (
                    format!("{:.2}", c.baseline),
                    format!("{:+.1} %", c.worse_by * 100.0),
                    if c.regressed { "not" } else { "met" },
                ),
                None => (String::new(), String::new(), "na"),
            };
            let _ = write!(
                out,
                r#"<tr><td>{}</td><td class="n">{:.2}×</td><td class="n">{base}</td><td class="n {class}">{worse}</td></tr>"#,
                esc(&ratio.name),
                ratio.value
            );
        }
    }
    out.push_str("</table>");
    for s in &r.sections {
        let _ = write!(
            out,
            r#"<h2>{}</h2><p class="method">{}</p>"#,
            esc(&s.title),
            esc(&s.method)
        );
        let mut units: Vec<&str> = Vec::new();
        for row in &s.rows {
            if !units.contains(&row.unit.as_str()) {
                units.push(&row.unit);
            }
        }
        for unit in units {
            let rows: Vec<&Row> = s.rows.iter().filter(|r| r.unit == unit).collect();
            chart(&mut out, &rows);
        }
        out.push_str("<table><tr><th></th><th>measured</th><th>details</th></tr>");
        for row in &s.rows {
            let _ = write!(
                out,
                r#"<tr><td>{}</td><td class="n">{}</td><td>{}</td></tr>"#,
                esc(&row.label),
                esc(&row_value(row)),
                esc(&row.detail)
            );
        }
        out.push_str("</table>");
        if !s.notes.is_empty() {
            out.push_str("<ul>");
            for n in &s.notes {
                let _ = write!(out, "<li>{}</li>", esc(n));
            }
            out.push_str("</ul>");
        }
    }
    out.push_str("</body></html>\n");
    out
}

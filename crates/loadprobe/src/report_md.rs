//! Markdown report, sized for a CI job summary (`$GITHUB_STEP_SUMMARY`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::report::Report;

/// Rows kept in the long tables; the JSON has everything.
const MAX_ROWS: usize = 50;

fn ms(us: u64) -> String {
    format!("{:.1} ms", us as f64 / 1000.0)
}

/// Escapes what would break a table cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

fn shares(out: &mut String, title: &str, m: &BTreeMap<String, u64>) {
    if m.is_empty() {
        return;
    }
    let total: u64 = m.values().sum();
    let _ = writeln!(
        out,
        "\n### {title}\n\n| {title} | responses | share |\n|---|---:|---:|"
    );
    for (k, n) in m.iter().take(MAX_ROWS) {
        let _ = writeln!(
            out,
            "| `{}` | {n} | {:.1}% |",
            cell(k),
            100.0 * *n as f64 / total.max(1) as f64
        );
    }
}

/// Which tasks served when: one row per task, in order of its first response.
fn tasks(s: &mut String, r: &Report) {
    let tasks = r.task_summaries();
    if tasks.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "\n### Tasks\n\n| task | version | first response | last response | responses | errors |\n|---|---|---:|---:|---:|---:|"
    );
    let at = |t: Option<u64>| t.map_or_else(|| "-".to_owned(), |t| format!("{t} ms"));
    for t in tasks.iter().take(MAX_ROWS) {
        let _ = writeln!(
            s,
            "| `{}` | {} | {} | {} | {} | {} |",
            cell(&t.task),
            cell(&t.version_label()),
            at(t.first_ms),
            at(t.last_ms),
            t.responses,
            t.errors
        );
    }
    if tasks.len() > MAX_ROWS {
        let _ = writeln!(
            s,
            "\n{} more tasks in the JSON report.",
            tasks.len() - MAX_ROWS
        );
    }
}

/// The incidents table: what a reader looks at first.
fn incidents(s: &mut String, r: &Report) {
    let _ = writeln!(
        s,
        "### Incidents: {} (longest gap between successes {} ms)\n",
        r.incident_total, r.longest_gap_ms
    );
    if r.incidents.is_empty() {
        return;
    }
    let probe = !r.sources.is_empty();
    let _ = writeln!(
        s,
        "| start | end | requests | failed | rate | kinds | failed on | answering |{}\n|---:|---:|---:|---:|---:|---|---|---|{}",
        if probe { " probe |" } else { "" },
        if probe { "---|" } else { "" }
    );
    let list = |m: &BTreeMap<String, u64>| {
        m.iter()
            .map(|(k, n)| format!("`{}` {n}", cell(k)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for i in r.incidents.iter().take(MAX_ROWS) {
        let answering = format!("{}; {}", list(&i.versions), list(&i.served_by));
        let _ = writeln!(
            s,
            "| {} ms | {} ms{} | {} | {} | {:.1}% | {} | {} | {answering} |{}",
            i.start_ms,
            i.end_ms,
            if i.recovered { "" } else { " (not recovered)" },
            i.requests,
            i.errors,
            100.0 * i.error_rate,
            list(&i.kinds),
            list(&i.failed_on),
            if probe {
                format!(" {} |", cell(&i.source))
            } else {
                String::new()
            }
        );
    }
    if r.incidents.len() > MAX_ROWS {
        let _ = writeln!(
            s,
            "\n{} more incidents in the JSON report.",
            r.incidents.len() - MAX_ROWS
        );
    }
    s.push('\n');
}

/// The whole Markdown report, top to bottom.
#[expect(
    clippy::too_many_lines,
    reason = "one Markdown document written top to bottom in the order a CI summary shows it"
)]
pub(crate) fn render(r: &Report) -> String {
    let mut s = String::new();
    let badge = match r.verdict {
        crate::Verdict::Pass => "✅ PASS",
        crate::Verdict::Fail => "❌ FAIL",
        crate::Verdict::Fault => "⚠️ PROBE FAULT",
    };
    let _ = writeln!(s, "## loadprobe {badge}: `{}`\n", cell(&r.target));
    if let Some(tls) = r.config.tls.as_ref().filter(|t| t.insecure) {
        let _ = writeln!(s, "> ⚠️ **{}**\n", cell(&tls.describe()));
    }
    for reason in &r.reasons {
        let _ = writeln!(s, "- {}", cell(reason));
    }
    if !r.reasons.is_empty() {
        s.push('\n');
    }
    incidents(&mut s, r);
    let _ = writeln!(
        s,
        "{} {} over {} connections for {} ms from {}{}{}.\n",
        r.config.rate,
        r.config.mode,
        r.config.connections,
        r.elapsed_ms,
        r.started_at,
        if r.stopped_early {
            " (stopped early)"
        } else {
            ""
        },
        if r.sources.is_empty() {
            String::new()
        } else {
            format!(", merged from {}", r.sources.join(", "))
        }
    );
    let l = &r.latency_us;
    let _ = writeln!(
        s,
        "| requests | ok | errors | rate | p50 | p90 | p99 | p99.9 | max | longest gap | outages |"
    );
    let _ = writeln!(
        s,
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let _ = writeln!(
        s,
        "| {} | {} | {} | {:.1}/s | {} | {} | {} | {} | {} | {} ms | {} |",
        r.requests,
        r.ok,
        r.errors.total,
        r.achieved_rate,
        ms(l.p50),
        ms(l.p90),
        ms(l.p99),
        ms(l.p999),
        ms(l.max),
        r.longest_gap_ms,
        r.outage_total
    );
    if !r.errors.by_kind.is_empty() {
        let _ = writeln!(s, "\n### Errors\n\n| kind | count |\n|---|---:|");
        for (k, n) in &r.errors.by_kind {
            let _ = writeln!(s, "| `{k}` | {n} |");
        }
    }
    if !r.outages.is_empty() {
        let _ = writeln!(
            s,
            "\n### Outages\n\n| start | end | duration | errors | kinds |{}\n|---:|---:|---:|---:|---|{}",
            if r.sources.is_empty() { "" } else { " probe |" },
            if r.sources.is_empty() { "" } else { "---|" }
        );
        for o in r.outages.iter().take(MAX_ROWS) {
            let kinds = o
                .kinds
                .iter()
                .map(|(k, n)| format!("`{k}` {n}"))
                .collect::<Vec<_>>()
                .join(", ");
            let _ = writeln!(
                s,
                "| {} ms | {} ms{} | {} ms | {} | {kinds} |{}",
                o.start_ms,
                o.end_ms,
                if o.recovered { "" } else { " (not recovered)" },
                o.duration_ms,
                o.errors,
                if r.sources.is_empty() {
                    String::new()
                } else {
                    format!(" {} |", cell(&o.source))
                }
            );
        }
        if r.outages.len() > MAX_ROWS {
            let _ = writeln!(
                s,
                "\n{} more outages in the JSON report.",
                r.outages.len() - MAX_ROWS
            );
        }
    }
    shares(&mut s, "version", &r.versions);
    tasks(&mut s, r);
    if !r.events.is_empty() {
        let _ = writeln!(s, "\n### Events\n\n| at | event |\n|---:|---|");
        for e in r.events.iter().take(MAX_ROWS) {
            let src = if e.source.is_empty() {
                String::new()
            } else {
                format!(" ({})", cell(&e.source))
            };
            let _ = writeln!(s, "| {} ms | {}{src} |", e.at_ms, cell(&e.label));
        }
    }
    let bad: Vec<_> = r.intervals.iter().filter(|i| i.errors > 0).collect();
    if !bad.is_empty() {
        let _ = writeln!(
            s,
            "\n### Intervals with errors ({} ms each)\n\n| start | requests | errors | p99 | versions |\n|---:|---:|---:|---:|---|",
            r.interval_ms
        );
        for i in bad.iter().take(MAX_ROWS) {
            let versions = i
                .versions
                .iter()
                .map(|(k, n)| format!("{} {n}", cell(k)))
                .collect::<Vec<_>>()
                .join(", ");
            let _ = writeln!(
                s,
                "| {} ms | {} | {} | {} | {versions} |",
                i.start_ms,
                i.requests,
                i.errors,
                ms(i.p99_us)
            );
        }
        if bad.len() > MAX_ROWS {
            let _ = writeln!(s, "\n{} more in the JSON report.", bad.len() - MAX_ROWS);
        }
    }
    let g = &r.schedule_lag_us;
    let _ = writeln!(
        s,
        "\n<sub>probe health: schedule lag p99 {}, max {}; pool exhausted {} times{}</sub>",
        ms(g.p99),
        ms(g.max),
        r.pool_exhausted,
        if r.warnings.is_empty() {
            String::new()
        } else {
            format!("; warnings: {}", cell(&r.warnings.join("; ")))
        }
    );
    s
}

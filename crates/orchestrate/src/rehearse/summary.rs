//! What a scenario came to: its row of the summary, the configuration's hazards its failure
//! points at, the printed table and the report directory's index.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use loadprobe::{Report, Verdict};
use localaws::Stack;
use serde::Serialize;

use super::{Kind, Scenario};
use crate::preflight::{Hazard, Severity};

/// One row of the summary.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Scenario name.
    pub scenario: String,
    /// `pass` or `fail`.
    pub expected: &'static str,
    /// The probe's verdict.
    pub verdict: String,
    /// Whether it matched the expectation.
    pub as_expected: bool,
    /// Requests sent.
    pub requests: u64,
    /// Requests failed.
    pub errors: u64,
    /// Longest time without a success, ms.
    pub longest_outage_ms: u64,
    /// p99 latency, ms.
    pub p99_ms: f64,
    /// The rollout's final status (`refresh Successful`, `deploy Failed, rolled back`).
    pub rollout: String,
    /// The gate's action (`rollback`, `cancel`), if it fired.
    pub gate: Option<String>,
    /// From the first failed request to the rollback call, ms.
    pub rollback_ms: Option<u64>,
    /// The first incident, located and attributed.
    pub incident: Option<String>,
    /// Wall time of the scenario, seconds.
    pub wall_s: f64,
    /// The scenario's report directory.
    pub report: PathBuf,
    /// On a derived stack, when the scenario is not as expected: the preflight hazards of the
    /// configuration that cause it (id, file:line, resource, fix).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub causes: Vec<String>,
}

/// How long after the first error the deployment group's fastest alarm would fire on AWS, in
/// seconds: `evaluation_periods` full breaching periods at least, one period more when the error
/// lands at the start of one (CloudWatch's own publishing delay comes on top). `None` without
/// alarms.
pub fn alarm_window(stack: &Stack) -> Option<(u32, u32)> {
    let group = stack
        .codedeploy
        .as_ref()?
        .applications
        .iter()
        .flat_map(|a| &a.deployment_groups)
        .next()?;
    group
        .alarms
        .iter()
        .filter_map(|name| stack.alarms.iter().find(|a| &a.name == name))
        .map(|a| {
            let lo = a.period.saturating_mul(a.evaluation_periods);
            (lo, lo.saturating_add(a.period))
        })
        .min()
}

/// The hazards a scenario's failure points at: the preflight errors of the configuration that
/// match what happened (requests failed during a refresh: nothing drained the instances; a
/// release that could not finish: its task set could not be placed, ...); when none matches,
/// every error relevant to the scenario's kind of rollout.
pub fn causes(s: &Scenario, row: &Row, hazards: &[Hazard]) -> Vec<String> {
    let refresh = s.kind == Kind::Refresh;
    let relevant: &[&str] = if refresh {
        &[
            "desired-count-zero",
            "no-managed-draining",
            "refresh-no-headroom",
            "scale-in-protection-blocks-refresh",
            "launch-template-unpinned",
            "static-host-port",
            "asg-health-check-ec2",
            "no-health-check-grace-period",
            "drain-timing",
            "slow-deregistration",
            "health-check-defaults",
            "keepalive-below-idle-timeout",
        ]
    } else {
        &[
            "desired-count-zero",
            "static-host-port",
            "ready-wait-forever",
            "no-test-listener",
            "no-validation-hook",
            "codedeploy-no-auto-rollback",
            "all-at-once",
            "appspec-container-mismatch",
            "no-health-check-grace-period",
            "drain-timing",
            "slow-deregistration",
            "health-check-defaults",
            "keepalive-below-idle-timeout",
        ]
    };
    let nothing_served = row.requests > 0 && row.errors * 10 >= row.requests * 9;
    let dropped = row.errors > 0;
    let finished = row.rollout.contains("Successful") || row.rollout.contains("Succeeded");
    // What happened, most telling first: nothing served at all masks everything else.
    let symptoms: &[&str] = if nothing_served {
        &["desired-count-zero"]
    } else if refresh && dropped {
        &["no-managed-draining", "drain-timing", "slow-deregistration"]
    } else if refresh {
        &[
            "refresh-no-headroom",
            "scale-in-protection-blocks-refresh",
            "static-host-port",
            "launch-template-unpinned",
        ]
    } else if !finished {
        &[
            "static-host-port",
            "ready-wait-forever",
            "appspec-container-mismatch",
            "no-health-check-grace-period",
        ]
    } else {
        &[
            "no-validation-hook",
            "no-test-listener",
            "codedeploy-no-auto-rollback",
            "all-at-once",
        ]
    };
    let errors: Vec<&Hazard> = hazards
        .iter()
        .filter(|h| h.severity == Severity::Error && relevant.contains(&h.id))
        .collect();
    let mut picked: Vec<&Hazard> = Vec::new();
    for id in symptoms {
        for h in errors.iter().filter(|h| h.id == *id) {
            if !picked.iter().any(|p| std::ptr::eq(*p, *h)) {
                picked.push(h);
            }
        }
    }
    if picked.is_empty() {
        picked = errors;
    }
    picked
        .iter()
        .map(|h| {
            format!(
                "{} at {}:{} ({}): {} Fix: {}",
                h.id,
                h.file.display(),
                h.line,
                h.resource,
                h.reason,
                h.fix
            )
        })
        .collect()
}

pub(super) fn row(
    s: &Scenario,
    report: &Report,
    slow: Option<&Report>,
    rollout: &str,
    gate: Option<&crate::gate::Gate>,
    rollout_ok: bool,
    dir: &Path,
) -> Row {
    // Both probes (the production stream and, where there is one, the slow requests) must pass.
    let reports: Vec<&Report> = std::iter::once(report).chain(slow).collect();
    let passed = reports.iter().all(|r| r.verdict == Verdict::Pass);
    let failing = reports.iter().find(|r| r.verdict != Verdict::Pass).copied();
    // A passing scenario must also have refreshed; a negative control must have been detected
    // (failed), located (an incident) and attributed (a task named for its failures).
    let detected = !passed
        && failing
            .and_then(|r| r.incidents.first())
            .is_some_and(|i| i.failed_on.keys().any(|t| t != "(unknown)"));
    let as_expected = if s.expect_pass {
        passed && rollout_ok
    } else {
        detected
    };
    Row {
        scenario: s.name.to_owned(),
        expected: if s.expect_pass { "pass" } else { "fail" },
        verdict: if passed {
            "pass".into()
        } else {
            format!("{:?}", failing.map_or(report.verdict, |r| r.verdict)).to_lowercase()
        },
        as_expected,
        requests: reports.iter().map(|r| r.requests).sum(),
        errors: reports.iter().map(|r| r.errors.total).sum(),
        longest_outage_ms: report.longest_gap_ms,
        p99_ms: report.latency_us.p99 as f64 / 1000.0,
        rollout: rollout.to_owned(),
        gate: gate.map(|g| g.action.to_owned()),
        rollback_ms: gate.and_then(|g| g.reaction).map(|d| d.as_millis() as u64),
        incident: failing.unwrap_or(report).incidents.first().map(|i| {
            if failing.is_some_and(|f| !std::ptr::eq(f, report)) {
                format!("slow requests: {}", i.describe())
            } else {
                i.describe()
            }
        }),
        wall_s: 0.0,
        report: dir.to_path_buf(),
        causes: Vec::new(),
    }
}

/// The summary table, as printed.
pub fn table(rows: &[Row]) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "{:<35} {:<8} {:<8} {:<4} {:>8} {:>7} {:>12} {:>8} {:<28} {:>11}",
        "scenario",
        "expected",
        "verdict",
        "ok",
        "requests",
        "errors",
        "longest gap",
        "p99 ms",
        "rollout",
        "rollback"
    );
    for r in rows {
        let _ = writeln!(
            t,
            "{:<35} {:<8} {:<8} {:<4} {:>8} {:>7} {:>9} ms {:>8.2} {:<28} {:>11}",
            r.scenario,
            r.expected,
            r.verdict,
            if r.as_expected { "yes" } else { "NO" },
            r.requests,
            r.errors,
            r.longest_outage_ms,
            r.p99_ms,
            r.rollout,
            r.rollback_text()
        );
    }
    for r in rows {
        if let Some(i) = &r.incident {
            let _ = writeln!(t, "  {}: {i}", r.scenario);
        }
    }
    t
}

impl Row {
    /// The gate's reaction as the table and the index show it: `<1 ms`, `240 ms`, or `-`.
    fn rollback_text(&self) -> String {
        self.rollback_ms.map_or_else(|| "-".into(), ms_text)
    }
}

fn ms_text(ms: u64) -> String {
    if ms == 0 {
        "<1 ms".into()
    } else {
        format!("{ms} ms")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub(super) fn write_index(dir: &Path, rows: &[Row]) -> std::io::Result<()> {
    let mut h = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Rehearsal</title><style>\
         body{font:14px system-ui,sans-serif;margin:2em}table{border-collapse:collapse}\
         td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}\
         .yes{background:#e6f4ea}.no{background:#fce8e6}\
         iframe{width:100%;height:900px;border:1px solid #ccc;margin-top:1em}</style></head><body>\
         <h1>Zero-downtime rehearsal</h1><table><tr><th>scenario</th><th>expected</th>\
         <th>verdict</th><th>as expected</th><th>requests</th><th>errors</th>\
         <th>longest gap</th><th>p99</th><th>rollout</th><th>rollback</th><th>first incident</th></tr>",
    );
    for r in rows {
        let _ = write!(
            h,
            "<tr class=\"{}\"><td><a href=\"{name}/probe.html\">{name}</a></td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{} ms</td><td>{:.2} ms</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            if r.as_expected { "yes" } else { "no" },
            r.expected,
            r.verdict,
            if r.as_expected { "yes" } else { "NO" },
            r.requests,
            r.errors,
            r.longest_outage_ms,
            r.p99_ms,
            escape(&r.rollout),
            escape(&r.rollback_text()),
            escape(r.incident.as_deref().unwrap_or("-")),
            name = escape(&r.scenario),
        );
    }
    h.push_str("</table>");
    for r in rows {
        let _ = write!(
            h,
            "<h2>{name}</h2><iframe src=\"{name}/probe.html\" loading=\"lazy\"></iframe>",
            name = escape(&r.scenario)
        );
    }
    h.push_str("</body></html>\n");
    std::fs::write(dir.join("index.html"), h)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_embedded_groups_fastest_alarm_takes_one_to_two_minutes() {
        let stack = Stack::embedded().unwrap();
        assert_eq!(alarm_window(&stack), Some((60, 120)));
        let mut slow = stack;
        for a in &mut slow.alarms {
            a.evaluation_periods = 3;
        }
        assert_eq!(alarm_window(&slow), Some((180, 240)));
        slow.alarms.clear();
        if let Some(cd) = slow.codedeploy.as_mut() {
            for app in &mut cd.applications {
                for g in &mut app.deployment_groups {
                    g.alarms.clear();
                }
            }
        }
        assert_eq!(alarm_window(&slow), None);
    }
}

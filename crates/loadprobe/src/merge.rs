//! `merge`: several probes (several hosts, or several runs side by side) as one report.
//!
//! Probes are aligned on their wall-clock start (`started_at_unix_ms`); the merged timeline
//! starts with the earliest. Counts add up; whole-run latency percentiles are exact (the
//! histograms are merged); per-interval percentiles cannot be merged and are the highest of the
//! probes' (an upper bound). Tasks seen by several probes are one task (first and last response
//! over all of them, counts added; at most [`MAX_TASKS`](crate::MAX_TASKS) and `(other)`). Outages and events keep
//! the name of the probe that saw them. The
//! merged verdict applies the strictest of the probes' SLOs to the merged figures, and fails too
//! when any probe failed on its own.

use std::collections::BTreeMap;

use crate::histo::{self, Percentiles};
use crate::report::{ErrorSummary, Interval, Report, TaskSummary, order_and_bound};
use crate::verdict::{self, Measured, Verdict};

/// Why reports cannot be merged.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// Nothing to merge.
    #[error("no report to merge")]
    Empty,
    /// Timelines with different interval widths cannot be added up.
    #[error("cannot merge '{name}' (interval {got} ms) with '{first}' (interval {want} ms)")]
    IntervalMismatch {
        /// The odd one.
        name: String,
        /// Its interval.
        got: u64,
        /// The first report.
        first: String,
        /// Its interval.
        want: u64,
    },
    /// The merged timeline would be too long: reports far apart in time (or a damaged
    /// `started_at_unix_ms`).
    #[error(
        "cannot merge '{name}': it ends {span_ms} ms after '{first}' starts, the merged timeline \
         would need {intervals} intervals of {interval_ms} ms (at most {max}); merge reports of \
         runs that overlap in time"
    )]
    TooFarApart {
        /// The report that ends last.
        name: String,
        /// The report that starts first.
        first: String,
        /// From the earliest start to that report's end, ms.
        span_ms: u64,
        /// Intervals that would take.
        intervals: u64,
        /// Interval width, ms.
        interval_ms: u64,
        /// The bound.
        max: u64,
    },
    /// A report's histogram is damaged.
    #[error("report '{name}': {reason}")]
    BadHistogram {
        /// The report.
        name: String,
        /// What is wrong.
        reason: String,
    },
}

/// Most intervals on a merged timeline: about 28 hours at 100 ms, a few hundred MB at worst.
pub(crate) const MAX_MERGED_INTERVALS: u64 = 1_000_000;

fn add_map(into: &mut BTreeMap<String, u64>, from: &BTreeMap<String, u64>) {
    for (k, n) in from {
        *into.entry(k.clone()).or_default() += n;
    }
}

fn max_percentiles(a: Percentiles, b: Percentiles) -> Percentiles {
    Percentiles {
        p50: a.p50.max(b.p50),
        p90: a.p90.max(b.p90),
        p99: a.p99.max(b.p99),
        p999: a.p999.max(b.p999),
        max: a.max.max(b.max),
    }
}

/// Merges named reports into one.
#[expect(
    clippy::too_many_lines,
    reason = "one field of the merged report after another, each combined as its doc comment says; split when a field grows logic of its own"
)]
pub fn merge(reports: &[(String, Report)]) -> Result<Report, MergeError> {
    let Some((first_name, first)) = reports.first() else {
        return Err(MergeError::Empty);
    };
    let interval_ms = first.interval_ms.max(1);
    for (name, r) in reports {
        if r.interval_ms.max(1) != interval_ms {
            return Err(MergeError::IntervalMismatch {
                name: name.clone(),
                got: r.interval_ms,
                first: first_name.clone(),
                want: interval_ms,
            });
        }
    }
    let base = reports
        .iter()
        .map(|(_, r)| r.started_at_unix_ms)
        .min()
        .unwrap_or(first.started_at_unix_ms);

    let Some((earliest, _)) = reports.iter().find(|(_, r)| r.started_at_unix_ms == base) else {
        return Err(MergeError::Empty);
    };
    for (name, r) in reports {
        let offset = r.started_at_unix_ms - base;
        let end_ms = r
            .intervals
            .last()
            .map_or(0, |iv| iv.start_ms.saturating_add(interval_ms))
            .max(r.elapsed_ms);
        let span_ms = offset.saturating_add(end_ms);
        let intervals = span_ms.div_ceil(interval_ms);
        if intervals > MAX_MERGED_INTERVALS
            || r.intervals.len() as u64 > MAX_MERGED_INTERVALS
            || r.events
                .iter()
                .any(|e| e.at_ms.unsigned_abs() > i64::MAX as u64 / 2)
        {
            return Err(MergeError::TooFarApart {
                name: name.clone(),
                first: earliest.clone(),
                span_ms,
                intervals,
                interval_ms,
                max: MAX_MERGED_INTERVALS,
            });
        }
    }

    let mut m = first.clone();
    m.started_at_unix_ms = base;
    m.started_at = humantime::format_rfc3339_millis(
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(base),
    )
    .to_string();
    m.requests = 0;
    m.ok = 0;
    m.errors = ErrorSummary::default();
    m.schedule_lag_us = Percentiles::default();
    m.send_delay_us = Percentiles::default();
    m.pool_exhausted = 0;
    m.achieved_rate = 0.0;
    m.outages.clear();
    m.outage_total = 0;
    m.incidents.clear();
    m.incident_total = 0;
    m.missing_results = 0;
    m.longest_gap_ms = 0;
    m.versions.clear();
    m.served_by.clear();
    m.tasks.clear();
    m.intervals.clear();
    m.events.clear();
    m.sources.clear();
    m.warnings.clear();
    m.elapsed_ms = 0;
    m.stopped_early = false;
    m.config.connections = 0;
    let mut targets: Vec<&str> = Vec::new();
    let mut latency = histo::new_histogram::<u64>(1_000_000);
    latency.auto(true);
    let mut slo = first.config.slo.clone();
    let mut failed = Vec::new();
    let mut faulted = false;
    let mut tasks: BTreeMap<String, TaskSummary> = BTreeMap::new();

    for (name, r) in reports {
        let offset = r.started_at_unix_ms - base;
        m.sources.push(name.clone());
        if !targets.contains(&r.target.as_str()) {
            targets.push(&r.target);
        }
        m.requests += r.requests;
        m.ok += r.ok;
        m.errors.total += r.errors.total;
        add_map(&mut m.errors.by_kind, &r.errors.by_kind);
        add_map(&mut m.versions, &r.versions);
        add_map(&mut m.served_by, &r.served_by);
        // Older reports have no task list: derived from their intervals.
        for t in r.task_summaries() {
            tasks
                .entry(t.task.clone())
                .or_insert_with(|| TaskSummary {
                    task: t.task.clone(),
                    ..TaskSummary::default()
                })
                .absorb(&t, offset);
        }
        m.schedule_lag_us = max_percentiles(m.schedule_lag_us, r.schedule_lag_us);
        m.send_delay_us = max_percentiles(m.send_delay_us, r.send_delay_us);
        m.pool_exhausted += r.pool_exhausted;
        m.achieved_rate += r.achieved_rate;
        m.outage_total += r.outage_total;
        m.incident_total += r.incident_total;
        m.missing_results += r.missing_results;
        add_map(&mut m.errors.by_task, &r.errors.by_task);
        m.longest_gap_ms = m.longest_gap_ms.max(r.longest_gap_ms);
        m.elapsed_ms = m.elapsed_ms.max(offset + r.elapsed_ms);
        m.stopped_early |= r.stopped_early;
        m.config.connections += r.config.connections;
        // One probe that did not verify its certificate taints the whole: say so.
        if let Some(tls) = r.config.tls.as_ref().filter(|t| t.insecure) {
            m.config.tls = Some(tls.clone());
        }
        slo = slo.strictest(&r.config.slo);
        let h = histo::decode(&r.latency_histogram).map_err(|reason| MergeError::BadHistogram {
            name: name.clone(),
            reason,
        })?;
        latency.add(&h).map_err(|e| MergeError::BadHistogram {
            name: name.clone(),
            reason: format!("histogram cannot be added: {e:?}"),
        })?;
        for o in &r.outages {
            let mut o = o.clone();
            o.start_ms += offset;
            o.end_ms += offset;
            o.source = name.clone();
            m.outages.push(o);
        }
        for i in &r.incidents {
            let mut i = i.clone();
            i.start_ms += offset;
            i.end_ms += offset;
            i.source = name.clone();
            m.incidents.push(i);
        }
        for e in &r.events {
            let mut e = e.clone();
            e.at_ms += offset as i64;
            e.source = name.clone();
            m.events.push(e);
        }
        for iv in &r.intervals {
            let idx = ((offset + iv.start_ms) / interval_ms) as usize;
            if m.intervals.len() <= idx {
                m.intervals.resize_with(idx + 1, Interval::default);
            }
            let t = &mut m.intervals[idx];
            t.requests += iv.requests;
            t.ok += iv.ok;
            t.errors += iv.errors;
            add_map(&mut t.errors_by_kind, &iv.errors_by_kind);
            add_map(&mut t.versions, &iv.versions);
            add_map(&mut t.served_by, &iv.served_by);
            t.p50_us = t.p50_us.max(iv.p50_us);
            t.p99_us = t.p99_us.max(iv.p99_us);
            t.max_us = t.max_us.max(iv.max_us);
        }
        for w in &r.warnings {
            m.warnings.push(format!("{name}: {w}"));
        }
        if r.verdict != Verdict::Pass {
            failed.extend(r.reasons.iter().map(|reason| format!("{name}: {reason}")));
        }
        faulted |= r.verdict == Verdict::Fault;
    }
    for (i, iv) in m.intervals.iter_mut().enumerate() {
        iv.start_ms = i as u64 * interval_ms;
    }
    m.outages.sort_by_key(|o| o.start_ms);
    m.incidents.sort_by_key(|i| i.start_ms);
    m.events.sort_by_key(|e| e.at_ms);
    m.target = targets.join(", ");
    m.latency_us = Percentiles::of(&latency);
    m.latency_percentiles = histo::percentile_points(&latency);
    // Each probe kept at most MAX_TASKS; several may together name more.
    m.tasks = order_and_bound(tasks.into_values().collect());
    m.latency_histogram = histo::encode(&latency);
    m.config.slo = slo;
    let (mut verdict, mut reasons) = verdict::evaluate(
        &m.config.slo,
        &Measured {
            requests: m.requests,
            errors: m.errors.total,
            latency_us: m.latency_us,
            longest_gap_ms: m.longest_gap_ms,
            incidents: &m.incidents,
            incident_total: m.incident_total,
            missing_results: m.missing_results,
            duplicate_results: 0,
        },
    );
    if !failed.is_empty() {
        if verdict == Verdict::Pass {
            verdict = Verdict::Fail;
        }
        reasons.extend(failed);
    }
    if faulted {
        verdict = Verdict::Fault;
    }
    m.verdict = verdict;
    m.reasons = reasons;
    Ok(m)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::ConnectionMode;
    use crate::outage::Outage;
    use crate::report::{ConfigSummary, Event};
    use crate::verdict::SloSummary;

    fn report(start_unix_ms: u64, latencies_ms: &[u64], errors: u64) -> Report {
        let mut h = histo::new_histogram::<u64>(10_000_000);
        for l in latencies_ms {
            h.record(l * 1000).unwrap();
        }
        let requests = latencies_ms.len() as u64;
        let interval = |start_ms: u64, n: u64| Interval {
            start_ms,
            requests: n,
            ok: n,
            p99_us: 1000 * start_ms,
            versions: BTreeMap::from([("v1".to_owned(), n)]),
            ..Interval::default()
        };
        Report {
            verdict: if errors == 0 {
                Verdict::Pass
            } else {
                Verdict::Fail
            },
            incidents: vec![],
            incident_total: 0,
            missing_results: 0,
            reasons: if errors == 0 {
                vec![]
            } else {
                vec!["errors".into()]
            },
            target: "http://t/".into(),
            started_at: String::new(),
            started_at_unix_ms: start_unix_ms,
            elapsed_ms: 200,
            stopped_early: false,
            config: ConfigSummary {
                rate: "10/s".into(),
                rate_per_s: Some(10.0),
                duration_ms: 200,
                connections: 2,
                mode: ConnectionMode::KeepAlive,
                timeout_ms: 2000,
                slo: SloSummary::default(),
                ok_status: "200-399".into(),
                lb_marker: "server: awselb/2.0".into(),
                merge_gap_ms: 100,
                tls: None,
                headers: Vec::new(),
            },
            requests,
            ok: requests - errors,
            errors: ErrorSummary {
                total: errors,
                by_kind: if errors == 0 {
                    BTreeMap::new()
                } else {
                    BTreeMap::from([("http_502_lb".to_owned(), errors)])
                },
                by_task: BTreeMap::new(),
            },
            latency_us: Percentiles::of(&h),
            latency_percentiles: histo::percentile_points(&h),
            schedule_lag_us: Percentiles::default(),
            send_delay_us: Percentiles::default(),
            pool_exhausted: 0,
            achieved_rate: 10.0,
            outages: if errors == 0 {
                vec![]
            } else {
                vec![Outage {
                    start_ms: 100,
                    end_ms: 150,
                    duration_ms: 50,
                    errors,
                    kinds: BTreeMap::new(),
                    recovered: true,
                    source: String::new(),
                }]
            },
            outage_total: u64::from(errors > 0),
            longest_gap_ms: 40,
            versions: BTreeMap::from([("v1".to_owned(), requests)]),
            served_by: BTreeMap::new(),
            tasks: vec![],
            interval_ms: 100,
            intervals: vec![interval(0, 1), interval(100, requests - 1)],
            events: vec![Event {
                at_ms: 50,
                label: "x".into(),
                source: String::new(),
            }],
            latency_histogram: histo::encode(&h),
            sources: vec![],
            warnings: vec![],
        }
    }

    #[test]
    fn merge_adds_counts_and_aligns_timelines() {
        let a = report(1_000_000, &[1, 2, 3, 4], 0);
        let b = report(1_000_100, &[100, 200], 1);
        let m = merge(&[("a".into(), a), ("b".into(), b)]).unwrap();
        assert_eq!((m.requests, m.ok, m.errors.total), (6, 5, 1));
        assert_eq!(m.errors.by_kind["http_502_lb"], 1);
        assert_eq!(m.versions["v1"], 6);
        assert_eq!(m.sources, ["a", "b"]);
        assert_eq!(m.config.connections, 4);
        // b started 100 ms later: its intervals land one slot later.
        let counts: Vec<u64> = m.intervals.iter().map(|i| i.requests).collect();
        assert_eq!(counts, [1, 4, 1]);
        assert_eq!(m.intervals[2].start_ms, 200);
        // Outages and events move onto the merged timeline and keep their source.
        assert_eq!(
            (m.outages[0].start_ms, m.outages[0].source.as_str()),
            (200, "b")
        );
        assert_eq!(
            m.events.iter().map(|e| e.at_ms).collect::<Vec<_>>(),
            [50, 150]
        );
        assert_eq!(m.elapsed_ms, 300);
        assert_eq!(m.verdict, Verdict::Fail);
        assert!(
            m.reasons.iter().any(|r| r == "b: errors"),
            "{:?}",
            m.reasons
        );
    }

    #[test]
    fn merged_percentiles_come_from_the_merged_histogram() {
        let a = report(0, &[1; 98], 0);
        let b = report(0, &[500, 500], 0);
        let m = merge(&[("a".into(), a), ("b".into(), b)]).unwrap();
        // Neither probe's own p99 is the merged p99: 2 of 100 requests took 500 ms.
        assert!(m.latency_us.p99 >= 500_000, "{:?}", m.latency_us);
        assert!(m.latency_us.p50 < 2_000);
        assert_eq!(m.verdict, Verdict::Pass);
    }

    #[test]
    fn merge_refuses_mismatched_intervals_and_bad_histograms() {
        let a = report(0, &[1], 0);
        let mut b = report(0, &[1], 0);
        b.interval_ms = 250;
        let err = merge(&[("a".into(), a.clone()), ("b".into(), b)]).unwrap_err();
        assert!(err.to_string().contains("'b' (interval 250 ms)"), "{err}");
        let mut c = report(0, &[1], 0);
        c.latency_histogram = "AAAA".into();
        assert!(merge(&[("a".into(), a), ("c".into(), c)]).is_err());
        assert!(matches!(merge(&[]), Err(MergeError::Empty)));
    }

    #[test]
    fn reports_far_apart_in_time_are_refused_not_allocated() {
        let a = report(0, &[1], 0);
        let b = report(u64::MAX / 2, &[1], 0); // ~292 million years later
        let err = merge(&[("a".into(), a.clone()), ("b".into(), b)]).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, MergeError::TooFarApart { .. }), "{msg}");
        assert!(msg.contains("'b'") && msg.contains("'a'"), "{msg}");
        assert!(msg.contains("at most 1000000"), "{msg}");
        // Runs some minutes apart still merge, on one timeline.
        let c = report(1_000_000, &[1], 0);
        let m = merge(&[("a".into(), a), ("c".into(), c)]).unwrap();
        assert_eq!(m.intervals.len(), 10_002);
    }

    fn task(name: &str, first_ms: u64, responses: u64) -> TaskSummary {
        TaskSummary {
            task: name.to_owned(),
            versions: BTreeMap::from([("v1".to_owned(), responses)]),
            first_ms: Some(first_ms),
            last_ms: Some(first_ms + 50),
            responses,
            errors: 0,
        }
    }

    #[test]
    fn tasks_seen_by_several_probes_are_one_task_on_the_merged_timeline() {
        let mut a = report(1_000_000, &[1, 2], 0);
        a.tasks = vec![task("t-1", 0, 2)];
        let mut b = report(1_000_100, &[1, 2, 3], 0);
        b.tasks = vec![task("t-2", 10, 1), task("t-1", 20, 2)];
        let m = merge(&[("a".into(), a), ("b".into(), b)]).unwrap();
        let names: Vec<&str> = m.tasks.iter().map(|t| t.task.as_str()).collect();
        assert_eq!(names, ["t-1", "t-2"]);
        // b started 100 ms after a: its times move by 100 ms.
        let t1 = &m.tasks[0];
        assert_eq!(
            (t1.first_ms, t1.last_ms, t1.responses),
            (Some(0), Some(170), 4)
        );
        assert_eq!(t1.versions["v1"], 4);
        assert_eq!(m.tasks[1].first_ms, Some(110));
        // Probes that together name more tasks than a run keeps: the latest become (other).
        let many = |start: u64, from: usize| {
            let mut r = report(start, &[1], 0);
            r.tasks = (from..from + 200)
                .map(|i| task(&format!("t{i:03}"), i as u64, 1))
                .collect();
            r
        };
        let m = merge(&[("a".into(), many(0, 0)), ("b".into(), many(0, 200))]).unwrap();
        assert_eq!(m.tasks.len(), crate::MAX_TASKS + 1);
        let other = m.tasks.last().unwrap();
        assert_eq!(other.task, crate::OTHER_TASKS);
        assert_eq!(other.responses, 400 - crate::MAX_TASKS as u64);
        assert_eq!(other.first_ms, Some(crate::MAX_TASKS as u64));
    }

    #[test]
    fn merge_applies_the_strictest_slo() {
        let a = report(0, &[300], 0);
        let mut b = report(0, &[1], 0);
        b.config.slo.max_p99_ms = Some(100);
        let m = merge(&[("a".into(), a), ("b".into(), b)]).unwrap();
        assert_eq!(m.verdict, Verdict::Fail);
        assert!(m.reasons[0].starts_with("p99 latency"), "{:?}", m.reasons);
    }
}

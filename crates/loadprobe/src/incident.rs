//! Incidents: what a reader needs instead of a list of tiny outages.
//!
//! One task of three killed behind a round-robin load balancer makes every third request fail
//! for a second: dozens of one-request outages, one cause. An **incident** groups failures whose
//! intended starts are at most the merge gap apart (default: one interval), whatever succeeded
//! in between. It starts at the intended start of its first failure and ends at that of its last;
//! it counts every request intended in that window, the failures by kind and by the task they
//! are attributed to (`x-served-by` on a target's own error, the load balancer's
//! `x-localaws-target-id` on its errors, `(unknown)` for transport errors), the outage windows
//! inside it, and the versions and tasks that answered during it and within the merge gap after
//! it.
//!
//! The detector runs on the recorder's intended-order stream; its state is O(names), never
//! O(requests).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::error::ErrorKind;

/// Keep at most this many incidents; the count of all of them is kept regardless.
pub(crate) const MAX_INCIDENTS: usize = 10_000;

/// Failures close together in time, with what was going on around them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// Intended start of the first failed request, ms since the probe's start.
    pub start_ms: u64,
    /// Intended start of the last failed request, ms since the probe's start.
    pub end_ms: u64,
    /// `end_ms - start_ms`.
    pub duration_ms: u64,
    /// Requests intended to start from `start_ms` to `end_ms`, failed or not.
    pub requests: u64,
    /// Of which failed.
    pub errors: u64,
    /// `errors / requests`.
    pub error_rate: f64,
    /// Failed requests by kind.
    pub kinds: BTreeMap<String, u64>,
    /// Failed requests by the task they are attributed to: `x-served-by` of a target's error,
    /// the load balancer's `x-localaws-target-id` (or `x-localaws-target`) on its own error,
    /// `(unknown)` when nothing names one (refused or reset connections).
    pub failed_on: BTreeMap<String, u64>,
    /// Responses by `x-app-version` during the incident and within the merge gap after it.
    pub versions: BTreeMap<String, u64>,
    /// Responses by `x-served-by` during the incident and within the merge gap after it.
    pub served_by: BTreeMap<String, u64>,
    /// Outage windows (runs of consecutive failures) inside it.
    pub outages: u64,
    /// Whether a request succeeded after its last failure.
    pub recovered: bool,
    /// The probe that saw it (set by `merge`, empty for a single probe).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
}

impl Incident {
    /// One line: `2006-2940 ms: 96 of 281 requests failed (34.2%), all http_502_lb, on task-a`.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        if !self.source.is_empty() {
            let _ = write!(s, "[{}] ", self.source);
        }
        let _ = write!(
            s,
            "{}-{} ms: {} of {} requests failed ({:.1}%), ",
            self.start_ms,
            self.end_ms,
            self.errors,
            self.requests,
            100.0 * self.error_rate
        );
        s.push_str(&counted("all ", &self.kinds));
        let named: BTreeMap<String, u64> = self
            .failed_on
            .iter()
            .filter(|(k, _)| k.as_str() != UNKNOWN)
            .map(|(k, n)| (k.clone(), *n))
            .collect();
        if !named.is_empty() {
            s.push_str(", on ");
            s.push_str(&counted("", &named));
            if named.len() < self.failed_on.len() {
                let _ = write!(s, ", {UNKNOWN} {}", self.failed_on[UNKNOWN]);
            }
        }
        if !self.recovered {
            s.push_str(", not recovered");
        }
        s
    }
}

/// `all k` for one key, `k1 3, k2 5` for several.
fn counted(all: &str, m: &BTreeMap<String, u64>) -> String {
    if m.len() == 1
        && let Some(k) = m.keys().next()
    {
        return format!("{all}{k}");
    }
    m.iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The name of failures no task is named for.
pub(crate) const UNKNOWN: &str = "(unknown)";

/// One request of the intended-order stream, with interned names (ids of the recorder's
/// tables).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Seen {
    pub(crate) intended_us: u64,
    pub(crate) failure: Option<ErrorKind>,
    /// Version and task ids of the response, if there was one.
    pub(crate) answered: Option<(u16, u16)>,
    /// Id of the task a failure is attributed to.
    pub(crate) culprit: u16,
}

/// An incident with ids instead of names; the recorder names it at the end.
#[derive(Debug, Clone, Default)]
pub(crate) struct RawIncident {
    pub(crate) start_us: u64,
    pub(crate) end_us: u64,
    pub(crate) requests: u64,
    pub(crate) errors: u64,
    pub(crate) kinds: Vec<(ErrorKind, u64)>,
    pub(crate) failed_on: Vec<(u16, u64)>,
    pub(crate) versions: Vec<(u16, u64)>,
    pub(crate) served_by: Vec<(u16, u64)>,
    pub(crate) outages: u64,
    pub(crate) recovered: bool,
}

fn bump<K: PartialEq>(v: &mut Vec<(K, u64)>, k: K) {
    match v.iter_mut().find(|(x, _)| *x == k) {
        Some((_, n)) => *n += 1,
        None => v.push((k, 1)),
    }
}

#[derive(Debug)]
struct Open {
    raw: RawIncident,
    /// Requests since the last failure: inside the incident if another failure follows.
    pending: u64,
    in_outage: bool,
}

/// Groups the stream of results (in intended-start order) into incidents.
#[derive(Debug)]
pub(crate) struct IncidentDetector {
    gap_us: u64,
    open: Option<Open>,
    closed: Vec<RawIncident>,
    total: u64,
}

impl IncidentDetector {
    /// Failures at most `gap_us` apart belong to one incident.
    pub(crate) fn new(gap_us: u64) -> Self {
        IncidentDetector {
            gap_us,
            open: None,
            closed: Vec::new(),
            total: 0,
        }
    }

    /// Feeds the next request by intended start.
    pub(crate) fn observe(&mut self, s: Seen) {
        if self
            .open
            .as_ref()
            .is_some_and(|o| s.intended_us > o.raw.end_us.saturating_add(self.gap_us))
        {
            self.close();
        }
        match (s.failure, &mut self.open) {
            (Some(kind), Some(open)) => {
                let raw = &mut open.raw;
                raw.requests += open.pending + 1;
                open.pending = 0;
                raw.errors += 1;
                raw.end_us = s.intended_us;
                bump(&mut raw.kinds, kind);
                bump(&mut raw.failed_on, s.culprit);
                if !open.in_outage {
                    raw.outages += 1;
                    open.in_outage = true;
                }
            }
            (Some(kind), None) => {
                self.open = Some(Open {
                    raw: RawIncident {
                        start_us: s.intended_us,
                        end_us: s.intended_us,
                        requests: 1,
                        errors: 1,
                        kinds: vec![(kind, 1)],
                        failed_on: vec![(s.culprit, 1)],
                        outages: 1,
                        ..RawIncident::default()
                    },
                    pending: 0,
                    in_outage: true,
                });
            }
            (None, Some(open)) => {
                open.pending += 1;
                open.in_outage = false;
            }
            (None, None) => {}
        }
        if let (Some(open), Some((version, task))) = (&mut self.open, s.answered) {
            bump(&mut open.raw.versions, version);
            bump(&mut open.raw.served_by, task);
        }
    }

    fn close(&mut self) {
        let Some(open) = self.open.take() else {
            return;
        };
        self.total += 1;
        if self.closed.len() < MAX_INCIDENTS {
            let mut raw = open.raw;
            raw.recovered = open.pending > 0;
            self.closed.push(raw);
        }
    }

    /// Ends the stream: the incidents (at most [`MAX_INCIDENTS`]) and how many there were.
    pub(crate) fn finish(mut self) -> (Vec<RawIncident>, u64) {
        self.close();
        (self.closed, self.total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LB_502: Option<ErrorKind> = Some(ErrorKind::Http {
        status: 502,
        by_lb: true,
    });

    fn seen(ms: u64, failure: Option<ErrorKind>, task: u16) -> Seen {
        Seen {
            intended_us: ms * 1000,
            failure,
            answered: Some((0, task)),
            culprit: task,
        }
    }

    #[test]
    fn round_robin_failures_are_one_incident() {
        // Every third request fails for ~1 s at 300/s: 100 outages, one incident.
        let mut d = IncidentDetector::new(100_000);
        for i in 0..300u64 {
            d.observe(seen(i * 10 / 3, None, (i % 3) as u16));
        }
        for i in 300..600u64 {
            let fail = i % 3 == 0;
            d.observe(seen(
                i * 10 / 3,
                fail.then_some(LB_502.unwrap()),
                (i % 3) as u16,
            ));
        }
        for i in 600..900u64 {
            d.observe(seen(i * 10 / 3, None, (i % 3) as u16));
        }
        let (incidents, total) = d.finish();
        assert_eq!(total, 1);
        let inc = &incidents[0];
        assert_eq!(inc.errors, 100);
        assert_eq!(inc.outages, 100);
        assert_eq!(inc.start_us, 1_000_000);
        assert_eq!(inc.end_us, 1_990_000, "the last failure, request 897");
        assert_eq!(inc.requests, 298, "requests 300..=597, failed or not");
        assert_eq!(inc.failed_on, [(0, 100)], "all on the task with id 0");
        assert!(inc.recovered);
        // Tasks answering: all three, during and just after.
        assert_eq!(inc.served_by.len(), 3);
    }

    #[test]
    fn failures_further_apart_than_the_gap_are_separate() {
        let mut d = IncidentDetector::new(50_000);
        d.observe(seen(0, LB_502, 1));
        d.observe(seen(40, LB_502, 1)); // 40 ms later: same incident
        d.observe(seen(60, None, 1));
        d.observe(seen(200, LB_502, 2)); // 160 ms after the last failure: a new one
        let (incidents, total) = d.finish();
        assert_eq!(total, 2);
        assert_eq!(
            (
                incidents[0].start_us,
                incidents[0].end_us,
                incidents[0].requests
            ),
            (0, 40_000, 2)
        );
        assert!(incidents[0].recovered);
        assert_eq!(incidents[0].outages, 1);
        assert!(!incidents[1].recovered, "the run ended inside it");
    }

    #[test]
    fn describe_names_kinds_and_tasks() {
        let inc = Incident {
            start_ms: 2006,
            end_ms: 2940,
            duration_ms: 934,
            requests: 281,
            errors: 96,
            error_rate: 96.0 / 281.0,
            kinds: BTreeMap::from([("http_502_lb".to_owned(), 96)]),
            failed_on: BTreeMap::from([("task-a".to_owned(), 96)]),
            versions: BTreeMap::new(),
            served_by: BTreeMap::new(),
            outages: 94,
            recovered: true,
            source: String::new(),
        };
        assert_eq!(
            inc.describe(),
            "2006-2940 ms: 96 of 281 requests failed (34.2%), all http_502_lb, on task-a"
        );
        let mut two = inc;
        two.kinds.insert("connect_refused".to_owned(), 3);
        two.failed_on.insert(UNKNOWN.to_owned(), 3);
        two.recovered = false;
        assert!(
            two.describe().ends_with(
                "connect_refused 3, http_502_lb 96, on task-a, (unknown) 3, not recovered"
            ),
            "{}",
            two.describe()
        );
    }
}

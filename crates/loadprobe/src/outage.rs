//! Outage windows and the longest gap between successful responses.
//!
//! An **outage** is a maximal run of consecutive failed requests, ordered by intended start time.
//! It starts at the intended start of its first failed request and ends at the intended start of
//! the first request that succeeded after it (`recovered`), or, when the run ended inside it, at
//! the intended start of its last failed request.
//!
//! The **gap** is measured on completion times: the longest time without a successful response,
//! from the probe's start to the last completion. A stalled target that answers everything late
//! shows a long gap and no outage.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::ErrorKind;

/// Keep at most this many outages (a flapping target at a high rate would otherwise grow memory
/// without bound); the count of all of them is kept regardless.
pub(crate) const MAX_OUTAGES: usize = 10_000;

/// One window of consecutive failed requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outage {
    /// Intended start of the first failed request, ms since the probe's start.
    pub start_ms: u64,
    /// Intended start of the first request that succeeded again (or of the last failed request
    /// when the run ended inside the outage), ms since the probe's start.
    pub end_ms: u64,
    /// `end_ms - start_ms`.
    pub duration_ms: u64,
    /// Failed requests in the window.
    pub errors: u64,
    /// Failed requests by kind.
    pub kinds: BTreeMap<String, u64>,
    /// Whether a request succeeded after it (false: the run ended inside the outage).
    pub recovered: bool,
    /// The probe that saw it (set by `merge`, empty for a single probe).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
}

#[derive(Debug)]
struct Open {
    start_us: u64,
    last_us: u64,
    errors: u64,
    kinds: Vec<(ErrorKind, u64)>,
}

/// Finds outages in a stream of request results given in intended-start order.
#[derive(Debug, Default)]
pub(crate) struct OutageDetector {
    open: Option<Open>,
    closed: Vec<Outage>,
    total: u64,
}

impl OutageDetector {
    /// Feeds the next request by intended start (µs since start); `failure` is `None` on success.
    pub(crate) fn observe(&mut self, intended_us: u64, failure: Option<ErrorKind>) {
        match (failure, &mut self.open) {
            (Some(kind), Some(open)) => {
                open.last_us = intended_us;
                open.errors += 1;
                match open.kinds.iter_mut().find(|(k, _)| *k == kind) {
                    Some((_, n)) => *n += 1,
                    None => open.kinds.push((kind, 1)),
                }
            }
            (Some(kind), None) => {
                self.open = Some(Open {
                    start_us: intended_us,
                    last_us: intended_us,
                    errors: 1,
                    kinds: vec![(kind, 1)],
                });
            }
            (None, Some(_)) => self.close(intended_us, true),
            (None, None) => {}
        }
    }

    fn close(&mut self, end_us: u64, recovered: bool) {
        let Some(open) = self.open.take() else {
            return;
        };
        self.total += 1;
        if self.closed.len() >= MAX_OUTAGES {
            return;
        }
        let start_ms = open.start_us / 1000;
        let end_ms = end_us.max(open.start_us) / 1000;
        self.closed.push(Outage {
            start_ms,
            end_ms,
            duration_ms: end_ms - start_ms,
            errors: open.errors,
            kinds: open
                .kinds
                .into_iter()
                .map(|(k, n)| (k.key().into_owned(), n))
                .collect(),
            recovered,
            source: String::new(),
        });
    }

    /// Ends the stream: returns the outages (at most [`MAX_OUTAGES`]) and how many there were.
    pub(crate) fn finish(mut self) -> (Vec<Outage>, u64) {
        if let Some(last) = self.open.as_ref().map(|o| o.last_us) {
            self.close(last, false);
        }
        (self.closed, self.total)
    }
}

/// Tracks the longest time without a successful response, on completion times.
#[derive(Debug, Default)]
pub(crate) struct GapTracker {
    last_ok_us: u64,
    last_done_us: u64,
    longest_us: u64,
}

impl GapTracker {
    /// A request completed at `done_us` (µs since start).
    pub(crate) fn observe(&mut self, done_us: u64, ok: bool) {
        if ok && done_us > self.last_ok_us {
            self.longest_us = self.longest_us.max(done_us - self.last_ok_us);
            self.last_ok_us = done_us;
        }
        self.last_done_us = self.last_done_us.max(done_us);
    }

    /// The longest gap, including the tail from the last success to the last completion.
    pub(crate) fn longest_us(&self) -> u64 {
        self.longest_us
            .max(self.last_done_us.saturating_sub(self.last_ok_us))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REFUSED: Option<ErrorKind> = Some(ErrorKind::ConnectRefused);

    fn detect(results: &[(u64, Option<ErrorKind>)]) -> (Vec<Outage>, u64) {
        let mut d = OutageDetector::default();
        for &(t, r) in results {
            d.observe(t * 1000, r);
        }
        d.finish()
    }

    #[test]
    fn clean_stream_has_no_outage() {
        let (o, n) = detect(&[(0, None), (10, None), (20, None)]);
        assert!(o.is_empty());
        assert_eq!(n, 0);
    }

    #[test]
    fn one_run_of_failures_is_one_outage_ending_at_the_next_success() {
        let reset = Some(ErrorKind::ConnectionReset);
        let (o, n) = detect(&[
            (0, None),
            (10, reset),
            (20, REFUSED),
            (30, REFUSED),
            (40, None),
            (50, None),
        ]);
        assert_eq!(n, 1);
        assert_eq!(o.len(), 1);
        let o = &o[0];
        assert_eq!((o.start_ms, o.end_ms, o.duration_ms), (10, 40, 30));
        assert_eq!(o.errors, 3);
        assert!(o.recovered);
        assert_eq!(o.kinds["connect_refused"], 2);
        assert_eq!(o.kinds["connection_reset"], 1);
    }

    #[test]
    fn a_success_in_between_splits_outages() {
        let (o, _) = detect(&[(0, REFUSED), (10, None), (20, REFUSED), (30, None)]);
        assert_eq!(o.len(), 2);
        assert_eq!((o[0].start_ms, o[0].end_ms), (0, 10));
        assert_eq!((o[1].start_ms, o[1].end_ms), (20, 30));
    }

    #[test]
    fn an_outage_open_at_the_end_is_not_recovered() {
        let mut d = OutageDetector::default();
        d.observe(0, None);
        d.observe(5_000, REFUSED);
        d.observe(9_000, REFUSED);
        let (o, _) = d.finish();
        assert_eq!(o.len(), 1);
        assert!(!o[0].recovered);
        assert_eq!((o[0].start_ms, o[0].end_ms, o[0].errors), (5, 9, 2));
    }

    #[test]
    fn outage_list_is_bounded_but_counted() {
        let mut d = OutageDetector::default();
        let n = MAX_OUTAGES as u64 + 5;
        for i in 0..n {
            d.observe(i * 20, REFUSED);
            d.observe(i * 20 + 10, None);
        }
        let (o, total) = d.finish();
        assert_eq!(o.len(), MAX_OUTAGES);
        assert_eq!(total, n);
    }

    #[test]
    fn gap_counts_stalls_and_the_tail() {
        let mut g = GapTracker::default();
        g.observe(1_000, true);
        g.observe(2_000, true);
        g.observe(900_000, true); // a stall: 898 ms without an answer
        g.observe(901_000, true);
        assert_eq!(g.longest_us(), 898_000);
        g.observe(2_000_000, false); // failures until the end
        assert_eq!(g.longest_us(), 2_000_000 - 901_000);
        let mut g = GapTracker::default();
        g.observe(5_000, false);
        assert_eq!(
            g.longest_us(),
            5_000,
            "no success at all: the whole run is a gap"
        );
    }

    #[test]
    fn gap_ignores_out_of_order_completions() {
        let mut g = GapTracker::default();
        g.observe(10_000, true);
        g.observe(9_000, true);
        g.observe(20_000, true);
        assert_eq!(g.longest_us(), 10_000);
    }
}

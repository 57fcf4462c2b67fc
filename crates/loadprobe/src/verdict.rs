//! The verdict: does the run meet its [`Slo`]? Every breach is named with its figure.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::Slo;
use crate::histo::Percentiles;
use crate::incident::Incident;

/// Pass, fail or fault; serialized as `"pass"` / `"fail"` / `"fault"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Every SLO held.
    Pass,
    /// At least one SLO was breached (see the report's `reasons`).
    Fail,
    /// The probe itself lost evidence (a request sent without a recorded result): the figures
    /// prove nothing either way. Distinct from an SLO breach.
    Fault,
}

impl Verdict {
    /// The process exit code for this verdict: 0 pass, 1 fail, 2 probe fault.
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Pass => 0,
            Verdict::Fail => 1,
            Verdict::Fault => 2,
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Fault => "fault",
        })
    }
}

/// The SLO as it appears in a report (milliseconds, `null` when unchecked).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SloSummary {
    /// Most failed requests allowed.
    pub max_errors: u64,
    /// Highest allowed p99, ms.
    pub max_p99_ms: Option<u64>,
    /// Highest allowed p99.9, ms.
    pub max_p999_ms: Option<u64>,
    /// Highest allowed latency, ms.
    pub max_latency_ms: Option<u64>,
    /// Longest allowed gap between successful responses, ms.
    pub max_gap_ms: Option<u64>,
}

impl From<&Slo> for SloSummary {
    fn from(s: &Slo) -> Self {
        let ms = |d: Option<Duration>| d.map(|d| d.as_millis() as u64);
        SloSummary {
            max_errors: s.max_errors,
            max_p99_ms: ms(s.max_p99),
            max_p999_ms: ms(s.max_p999),
            max_latency_ms: ms(s.max_latency),
            max_gap_ms: ms(s.max_gap),
        }
    }
}

impl SloSummary {
    /// The strictest of two SLOs (used when merging probes).
    pub(crate) fn strictest(&self, other: &SloSummary) -> SloSummary {
        let min = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        SloSummary {
            max_errors: self.max_errors.min(other.max_errors),
            max_p99_ms: min(self.max_p99_ms, other.max_p99_ms),
            max_p999_ms: min(self.max_p999_ms, other.max_p999_ms),
            max_latency_ms: min(self.max_latency_ms, other.max_latency_ms),
            max_gap_ms: min(self.max_gap_ms, other.max_gap_ms),
        }
    }
}

/// What the verdict looks at.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Measured<'a> {
    pub(crate) requests: u64,
    pub(crate) errors: u64,
    pub(crate) latency_us: Percentiles,
    pub(crate) longest_gap_ms: u64,
    /// Incidents kept (the reasons name them) and how many there were.
    pub(crate) incidents: &'a [Incident],
    pub(crate) incident_total: u64,
    /// Requests sent without a recorded result, and results recorded twice: probe faults.
    pub(crate) missing_results: u64,
    pub(crate) duplicate_results: u64,
}

/// Incidents named one by one in the reasons; the reports list them all.
const NAMED_INCIDENTS: usize = 5;

/// Judges `m` against `slo`: the verdict and one reason per breach.
pub(crate) fn evaluate(slo: &SloSummary, m: &Measured<'_>) -> (Verdict, Vec<String>) {
    let mut reasons = Vec::new();
    if m.requests == 0 {
        reasons.push("no request completed: nothing was proven".to_owned());
    }
    if m.errors > slo.max_errors {
        reasons.push(format!(
            "{} failed requests, at most {} allowed",
            m.errors, slo.max_errors
        ));
        for i in m.incidents.iter().take(NAMED_INCIDENTS) {
            reasons.push(format!("incident {}", i.describe()));
        }
        let unnamed = m.incident_total.saturating_sub(NAMED_INCIDENTS as u64);
        if unnamed > 0 {
            reasons.push(format!("{unnamed} more incidents in the report"));
        }
    }
    let mut latency = |name: &str, got_us: u64, max_ms: Option<u64>| {
        if let Some(max_ms) = max_ms
            && got_us > max_ms * 1000
        {
            reasons.push(format!(
                "{name} latency {:.1} ms, at most {max_ms} ms allowed",
                got_us as f64 / 1000.0
            ));
        }
    };
    latency("p99", m.latency_us.p99, slo.max_p99_ms);
    latency("p99.9", m.latency_us.p999, slo.max_p999_ms);
    latency("max", m.latency_us.max, slo.max_latency_ms);
    if let Some(max) = slo.max_gap_ms
        && m.longest_gap_ms > max
    {
        reasons.push(format!(
            "{} ms without a successful response, at most {max} ms allowed",
            m.longest_gap_ms
        ));
    }
    // A probe fault overrides pass and fail: evidence is missing.
    let mut faults = Vec::new();
    if m.missing_results > 0 {
        faults.push(format!(
            "probe fault: {} requests sent without a recorded result",
            m.missing_results
        ));
    }
    if m.duplicate_results > 0 {
        faults.push(format!(
            "probe fault: {} results recorded twice",
            m.duplicate_results
        ));
    }
    let verdict = if !faults.is_empty() {
        Verdict::Fault
    } else if reasons.is_empty() {
        Verdict::Pass
    } else {
        Verdict::Fail
    };
    faults.extend(reasons);
    (verdict, faults)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured(errors: u64, p99_ms: u64, gap_ms: u64) -> Measured<'static> {
        Measured {
            incidents: &[],
            incident_total: 0,
            missing_results: 0,
            duplicate_results: 0,
            requests: 1000,
            errors,
            latency_us: Percentiles {
                p50: 1000,
                p90: 2000,
                p99: p99_ms * 1000,
                p999: p99_ms * 1000,
                max: p99_ms * 1000,
            },
            longest_gap_ms: gap_ms,
        }
    }

    #[test]
    fn default_slo_is_zero_errors() {
        let slo = SloSummary::from(&Slo::default());
        assert_eq!(evaluate(&slo, &measured(0, 900, 900)).0, Verdict::Pass);
        let (v, reasons) = evaluate(&slo, &measured(1, 1, 10));
        assert_eq!(v, Verdict::Fail);
        assert_eq!(reasons, ["1 failed requests, at most 0 allowed"]);
    }

    #[test]
    fn every_breach_is_named() {
        let slo = SloSummary {
            max_errors: 5,
            max_p99_ms: Some(250),
            max_p999_ms: Some(300),
            max_latency_ms: Some(1000),
            max_gap_ms: Some(500),
        };
        assert_eq!(evaluate(&slo, &measured(5, 250, 500)).0, Verdict::Pass);
        let (v, reasons) = evaluate(&slo, &measured(6, 1200, 501));
        assert_eq!(v, Verdict::Fail);
        assert_eq!(reasons.len(), 5, "{reasons:?}");
        assert!(
            reasons[1].starts_with("p99 latency 1200.0 ms"),
            "{reasons:?}"
        );
        assert!(reasons[4].contains("501 ms without a successful response"));
    }

    #[test]
    fn an_empty_run_fails() {
        let mut m = measured(0, 1, 1);
        m.requests = 0;
        let (v, reasons) = evaluate(&SloSummary::default(), &m);
        assert_eq!(v, Verdict::Fail);
        assert!(reasons[0].contains("no request"));
    }

    #[test]
    fn a_lost_result_is_a_probe_fault_not_a_pass() {
        let mut m = measured(0, 1, 1);
        m.missing_results = 3;
        let (v, reasons) = evaluate(&SloSummary::default(), &m);
        assert_eq!(v, Verdict::Fault);
        assert_eq!(v.exit_code(), 2, "distinct from an SLO breach (1)");
        assert_eq!(
            reasons,
            ["probe fault: 3 requests sent without a recorded result"]
        );
        let mut m = measured(1, 1, 1);
        m.duplicate_results = 1;
        let (v, reasons) = evaluate(&SloSummary::default(), &m);
        assert_eq!(v, Verdict::Fault, "a fault wins over a breach");
        assert_eq!(reasons.len(), 2, "{reasons:?}");
    }

    #[test]
    fn strictest_takes_the_minimum() {
        let a = SloSummary {
            max_errors: 3,
            max_p99_ms: Some(100),
            ..SloSummary::default()
        };
        let b = SloSummary {
            max_errors: 1,
            max_p99_ms: None,
            max_gap_ms: Some(50),
            ..SloSummary::default()
        };
        let s = a.strictest(&b);
        assert_eq!(
            (s.max_errors, s.max_p99_ms, s.max_gap_ms),
            (1, Some(100), Some(50))
        );
    }
}

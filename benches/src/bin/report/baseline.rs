//! `--baseline OLD.json`: every watched ratio compared with the same ratio in an older report;
//! one that got more than the tolerance worse is flagged.

use serde::{Deserialize, Serialize};

use crate::model::{Better, Report};

/// More than 10 % worse is a regression.
pub(crate) const TOLERANCE: f64 = 0.10;

/// The comparison with a baseline report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Comparison {
    /// The baseline's start time.
    pub(crate) baseline_started_at: String,
    pub(crate) tolerance: f64,
    pub(crate) ratios: Vec<Change>,
    /// Ratios in the baseline that this run did not measure (a peer missing now).
    pub(crate) missing: Vec<String>,
}

/// One ratio then and now.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Change {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) baseline: f64,
    pub(crate) now: f64,
    /// How much worse (positive) or better (negative), as a fraction of the baseline.
    pub(crate) worse_by: f64,
    /// Worse by more than the tolerance.
    pub(crate) regressed: bool,
}

impl Comparison {
    /// Ratios flagged as regressions.
    pub(crate) fn regressions(&self) -> impl Iterator<Item = &Change> {
        self.ratios.iter().filter(|c| c.regressed)
    }
}

/// How much worse `now` is than `baseline`, as a fraction of the baseline (negative: better).
pub(crate) fn worse_by(baseline: f64, now: f64, better: Better) -> f64 {
    if baseline <= 0.0 {
        return 0.0;
    }
    match better {
        Better::Higher => (baseline - now) / baseline,
        Better::Lower => (now - baseline) / baseline,
    }
}

/// Compares every ratio of `now` with the same ratio of `baseline`.
pub(crate) fn compare(baseline: &Report, now: &Report, tolerance: f64) -> Comparison {
    let old = |id: &str| {
        baseline
            .sections
            .iter()
            .flat_map(|s| &s.ratios)
            .find(|r| r.id == id)
    };
    let mut ratios = Vec::new();
    for r in now.sections.iter().flat_map(|s| &s.ratios) {
        if let Some(b) = old(&r.id) {
            let worse = worse_by(b.value, r.value, r.better);
            ratios.push(Change {
                id: r.id.clone(),
                name: r.name.clone(),
                baseline: b.value,
                now: r.value,
                worse_by: worse,
                regressed: worse > tolerance,
            });
        }
    }
    let measured = |id: &str| {
        now.sections
            .iter()
            .flat_map(|s| &s.ratios)
            .any(|r| r.id == id)
    };
    let missing = baseline
        .sections
        .iter()
        .flat_map(|s| &s.ratios)
        .filter(|r| !measured(&r.id))
        .map(|r| r.id.clone())
        .collect();
    Comparison {
        baseline_started_at: baseline.started_at.clone(),
        tolerance,
        ratios,
        missing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Machine, Ratio, Section};

    fn report(ratios: &[(&str, f64, Better)]) -> Report {
        let mut s = Section::new("s", "S", String::new());
        s.ratios = ratios
            .iter()
            .map(|(id, value, better)| Ratio {
                id: (*id).into(),
                name: (*id).into(),
                value: *value,
                better: *better,
            })
            .collect();
        Report {
            schema: crate::model::SCHEMA,
            started_at: "then".into(),
            commit: None,
            quick: false,
            wall_s: 1.0,
            machine: Machine::default(),
            tools: Vec::new(),
            sections: vec![s],
            baseline: None,
        }
    }

    fn flagged(c: &Comparison) -> Vec<&str> {
        c.regressions().map(|r| r.id.as_str()).collect()
    }

    #[test]
    fn a_ratio_more_than_ten_percent_worse_is_flagged() {
        use Better::{Higher, Lower};
        let old = report(&[
            ("throughput_drop", 1.00, Higher),
            ("throughput_small_drop", 1.00, Higher),
            ("throughput_gain", 1.00, Higher),
            ("latency_rise", 1.00, Lower),
            ("latency_small_rise", 1.00, Lower),
            ("latency_fall", 2.00, Lower),
        ]);
        let new = report(&[
            ("throughput_drop", 0.89, Higher),
            ("throughput_small_drop", 0.91, Higher),
            ("throughput_gain", 1.50, Higher),
            ("latency_rise", 1.11, Lower),
            ("latency_small_rise", 1.09, Lower),
            ("latency_fall", 1.00, Lower),
            ("new_ratio", 0.10, Higher),
        ]);
        let c = compare(&old, &new, TOLERANCE);
        assert_eq!(flagged(&c), ["throughput_drop", "latency_rise"]);
        assert_eq!(
            c.ratios.len(),
            6,
            "a ratio the baseline lacks is not compared"
        );
        assert!(c.missing.is_empty());
        let gain = c.ratios.iter().find(|r| r.id == "throughput_gain");
        assert!(
            gain.is_some_and(|g| (g.worse_by + 0.5).abs() < 1e-9),
            "{gain:?}"
        );
    }

    #[test]
    fn exactly_ten_percent_worse_is_not_flagged_and_lost_ratios_are_listed() {
        let old = report(&[("a", 2.0, Better::Higher), ("gone", 1.0, Better::Higher)]);
        let new = report(&[("a", 1.8, Better::Higher)]);
        let c = compare(&old, &new, TOLERANCE);
        assert!(flagged(&c).is_empty(), "{c:?}");
        assert_eq!(c.missing, ["gone"]);
    }

    #[test]
    fn a_zero_baseline_compares_as_unchanged() {
        assert_eq!(worse_by(0.0, 5.0, Better::Lower), 0.0);
    }
}

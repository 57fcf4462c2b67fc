//! What a report holds: the JSON `--json` writes and `--baseline` reads back.

use serde::{Deserialize, Serialize};

/// Bumped when a field changes meaning; a baseline of another schema is refused.
pub(crate) const SCHEMA: u32 = 1;

/// One run of every comparison.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Report {
    pub(crate) schema: u32,
    /// When the run started, RFC 3339 (UTC).
    pub(crate) started_at: String,
    /// The commit measured (`git rev-parse --short HEAD` where the report ran), if known.
    #[serde(default)]
    pub(crate) commit: Option<String>,
    /// `--quick`: one short round of everything.
    pub(crate) quick: bool,
    /// Wall time of the whole run, seconds.
    pub(crate) wall_s: f64,
    pub(crate) machine: Machine,
    /// Peer tools and their versions, or `not installed`.
    pub(crate) tools: Vec<(String, String)>,
    pub(crate) sections: Vec<Section>,
    /// Filled when `--baseline` was given.
    #[serde(default)]
    pub(crate) baseline: Option<crate::baseline::Comparison>,
}

/// Where it ran.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Machine {
    pub(crate) cores: usize,
    pub(crate) cpu: String,
    pub(crate) kernel: String,
    pub(crate) os: String,
    pub(crate) memory_mib: u64,
    /// 1-minute load average when the run started (other work on a shared machine).
    pub(crate) load_at_start: f64,
}

/// One comparison: how it was measured, the figures, the ratios, the targets.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Section {
    /// Stable key (`server`, `probe`, `proxy`, `fixed_rate`, `rehearsal`).
    pub(crate) id: String,
    pub(crate) title: String,
    /// How it was measured, in one or two sentences.
    pub(crate) method: String,
    /// What `ratio` in the rows is relative to (`hello-hyper`), if anything.
    pub(crate) reference: Option<String>,
    /// Absolute figures, one row each; the chart draws `value`.
    pub(crate) rows: Vec<Row>,
    /// Ratios watched by `--baseline`.
    pub(crate) ratios: Vec<Ratio>,
    /// The targets, and correctness checks, met or not.
    pub(crate) checks: Vec<Check>,
    /// Why something was not measured (a peer not installed), or what to keep in mind.
    pub(crate) notes: Vec<String>,
}

/// One measured thing.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Row {
    pub(crate) label: String,
    /// `None`: not measured (see the notes).
    pub(crate) value: Option<f64>,
    pub(crate) unit: String,
    /// Further absolute figures (`p50 210 µs, p99 1.2 ms`).
    pub(crate) detail: String,
    /// `value` over the reference row's.
    pub(crate) ratio: Option<f64>,
}

/// Which way is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Better {
    Higher,
    Lower,
}

/// A ratio of ours over a peer's figure, measured in the same run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Ratio {
    /// Stable key, compared with the baseline's (`server_vs_hyper`).
    pub(crate) id: String,
    /// `server / hello-hyper (req/s)`.
    pub(crate) name: String,
    pub(crate) value: f64,
    pub(crate) better: Better,
}

/// A target of the issue, or a sanity check of the run itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Kind {
    /// A performance target: shown met or not; fails the run only with `--strict`.
    Target,
    /// The figures mean something only if it holds (no failed request, every result
    /// recorded): a failure fails the run.
    Sanity,
}

/// A target or a sanity check.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Check {
    pub(crate) kind: Kind,
    /// `server ≥ 0.9× minimal hyper`.
    pub(crate) target: String,
    /// What was measured (`0.93×`).
    pub(crate) measured: String,
    /// `None`: could not be measured (a peer not installed).
    pub(crate) met: Option<bool>,
}

impl Section {
    pub(crate) fn new(id: &str, title: &str, method: String) -> Self {
        Self {
            id: id.into(),
            title: title.into(),
            method,
            reference: None,
            rows: Vec::new(),
            ratios: Vec::new(),
            checks: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Adds a row; `ratio` is its value over the reference row's, measured in the same run.
    pub(crate) fn row(
        &mut self,
        label: impl Into<String>,
        value: Option<f64>,
        unit: &str,
        detail: impl Into<String>,
        ratio: Option<f64>,
    ) {
        self.rows.push(Row {
            label: label.into(),
            value,
            unit: unit.into(),
            detail: detail.into(),
            ratio,
        });
    }

    /// Adds a watched ratio (ours over a peer's) when it was measured, and returns it.
    pub(crate) fn ratio(
        &mut self,
        id: &str,
        name: &str,
        value: Option<f64>,
        better: Better,
    ) -> Option<f64> {
        let value = value.filter(|v| v.is_finite())?;
        self.ratios.push(Ratio {
            id: id.into(),
            name: name.into(),
            value,
            better,
        });
        Some(value)
    }

    /// Adds a target: `met` is `None` when it could not be measured.
    pub(crate) fn target(&mut self, target: &str, measured: String, met: Option<bool>) {
        self.checks.push(Check {
            kind: Kind::Target,
            target: target.into(),
            measured,
            met,
        });
    }

    /// Adds a sanity check of the run.
    pub(crate) fn sanity(&mut self, target: &str, measured: String, ok: bool) {
        self.checks.push(Check {
            kind: Kind::Sanity,
            target: target.into(),
            measured,
            met: Some(ok),
        });
    }

    /// A target on a ratio: at least `min`.
    pub(crate) fn at_least(&mut self, target: &str, ratio: Option<f64>, min: f64) {
        let measured = ratio.map_or_else(|| "not measured".to_owned(), |r| format!("{r:.2}×"));
        self.target(target, measured, ratio.map(|r| r >= min));
    }
}

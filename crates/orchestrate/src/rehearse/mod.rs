//! `orchestrate rehearse`: the whole thing, offline. Starts `localaws` in-process with its
//! embedded default stack (the dev environment's names) for each scenario, runs the rollout
//! under load through the same code `orchestrate refresh` runs against AWS, and checks every
//! verdict against its expectation: the passing scenarios must drop nothing, and each negative
//! control (one protection removed) must fail, with its outage located and attributed.
//!
//! Scenarios: instance refreshes (`orchestrate refresh`'s code) and CodeDeploy blue/green
//! releases (`orchestrate deploy`'s code, rendering the repository's own `codedeploy/`
//! templates), each with its negative control.
//!
//! The modules, in the order a rehearsal runs:
//!
//! - `scenarios`: the matrix, each negative control written as its passing twin with the one
//!   field it changes;
//! - `setup`: what the scenarios run on: the embedded demo stack, or the stack derived from a
//!   Terraform configuration with its assumptions and preflight hazards;
//! - `drive`: one scenario on its own `localaws` and probes: the rollout through
//!   `orchestrate refresh`'s or `orchestrate deploy`'s code, the gate, the reports;
//! - `release`: what a blue/green scenario releases;
//! - `summary`: each scenario's row, the causes a failure points at, the table and the index.

use std::path::PathBuf;
use std::time::{Duration, Instant};

mod drive;
mod release;
mod scenarios;
mod setup;
mod summary;

pub use scenarios::{KNOBS_LABEL, Kind, SCENARIOS, Scenario};
pub use setup::{DerivedSetup, Setup, print_stack, stack};
pub use summary::{Row, alarm_window, causes, table};

/// Arguments of `rehearse`.
#[derive(Debug, Clone, clap::Args)]
pub struct RehearseArgs {
    /// Run only these scenarios (see the list in `--help`); all when omitted.
    #[arg(long = "scenario", value_name = "NAME")]
    pub scenarios: Vec<String>,
    /// Where the reports go: one directory per scenario and an index.html.
    #[arg(long, value_name = "DIR", default_value = "rehearsal")]
    pub report_dir: PathBuf,
    /// Write the summary table as JSON here.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
    /// Probe rate against the production listener, requests per second.
    #[arg(long, value_name = "N", default_value_t = 1000.0)]
    pub rate: f64,
    /// Simulated AWS seconds per real second.
    #[arg(long, value_name = "N", default_value_t = 60.0)]
    pub time_scale: f64,
    /// Repeat the matrix for this long (e.g. 30m), sampling this process's memory (localaws and
    /// the probe run in it) after every round; fails on any verdict not as expected and on
    /// memory growth above 20 % of the first round's.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub soak: Option<Duration>,
    /// Rehearse this Terraform configuration (root module; local modules are followed): the
    /// stack is derived from it instead of the embedded demo stack, every value not known before
    /// apply is listed with the value used, and failing scenarios name the preflight hazards
    /// that cause them.
    #[arg(long, value_name = "DIR")]
    pub terraform: Option<PathBuf>,
    /// With --terraform: write the derived stack as TOML to standard output and exit (a stack
    /// file `localaws --stack` takes).
    #[arg(long, requires = "terraform")]
    pub print_stack: bool,
    /// With --terraform: containers whose image repository is NAME run COMMAND (split on
    /// whitespace) instead of the project's server, or, as `NAME=docker:IMAGE`, run as
    /// containers of the local Docker image IMAGE, as the ECS agent runs them. Repeatable.
    #[arg(
        long = "image",
        value_name = "NAME=COMMAND|NAME=docker:IMAGE",
        requires = "terraform"
    )]
    pub images: Vec<String>,
    /// With --terraform: the task definition your deploys register (ECS JSON, `{{NAME}}`
    /// placeholders allowed, e.g. codedeploy/taskdef.template.json) when the service's
    /// task definition moves on outside Terraform: the blue/green scenarios release it, and
    /// preflight checks it too. Without it they release the Terraform's own.
    #[arg(long, value_name = "FILE", requires = "terraform")]
    pub task_definition: Option<PathBuf>,
}

/// Resident memory of this process, KiB (Linux; 0 elsewhere).
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Why the rehearsal could not run (exit 2 for input, 1 otherwise).
#[derive(Debug, thiserror::Error)]
pub enum RehearseError {
    /// Unknown scenario or bad flag.
    #[error("{0}")]
    Input(String),
    /// Something failed while running.
    #[error("{0}")]
    Run(String),
}

/// Runs the matrix; returns the rows (the caller prints and decides the exit code).
pub async fn run(
    args: &RehearseArgs,
    out: &mut (dyn std::io::Write + Send),
) -> Result<Vec<Row>, RehearseError> {
    check(args)?;
    let mut chosen = chosen(&args.scenarios)?;
    let mut setup = Setup::from_args(args)?;
    setup.inspect_images().await?;
    if let Some(d) = &setup.derived {
        let _ = writeln!(
            out,
            "stack derived from {} in {} ms; {} value{} not known before apply:",
            d.dir.display(),
            d.elapsed.as_millis(),
            d.assumptions.len(),
            if d.assumptions.len() == 1 { "" } else { "s" }
        );
        for a in &d.assumptions {
            let _ = writeln!(out, "  {a}");
        }
    }
    let asked = chosen.len();
    chosen.retain(|s| match setup.unsupported(s) {
        Some(why) => {
            let _ = writeln!(out, "not run {}: {why}", s.name);
            false
        }
        None => true,
    });
    if chosen.is_empty() {
        // Nothing rehearsed is no verdict: never a pass.
        return Err(RehearseError::Input(format!(
            "none of the {asked} scenario{} chosen can run on this stack (reasons above)",
            if asked == 1 { "" } else { "s" }
        )));
    }
    std::fs::create_dir_all(&args.report_dir).map_err(|e| {
        RehearseError::Input(format!(
            "cannot create --report-dir {}: {e}",
            args.report_dir.display()
        ))
    })?;
    let rows = rounds(&chosen, &setup, args, out).await?;
    summary::write_index(&args.report_dir, &rows)
        .map_err(|e| RehearseError::Run(format!("writing the index: {e}")))?;
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&rows).unwrap_or_default();
        std::fs::write(path, text + "\n")
            .map_err(|e| RehearseError::Run(format!("writing {}: {e}", path.display())))?;
    }
    Ok(rows)
}

/// The flags' values, checked before anything starts.
fn check(args: &RehearseArgs) -> Result<(), RehearseError> {
    if !(args.rate.is_finite() && (1.0..=20_000.0).contains(&args.rate)) {
        return Err(RehearseError::Input(format!(
            "invalid --rate {}: expected 1 to 20000 requests per second",
            args.rate
        )));
    }
    if !(args.time_scale.is_finite() && (1.0..=1000.0).contains(&args.time_scale)) {
        return Err(RehearseError::Input(format!(
            "invalid --time-scale {}: expected 1 to 1000",
            args.time_scale
        )));
    }
    if let Some(soak) = args.soak
        && !(Duration::from_secs(1)..=Duration::from_secs(7 * 24 * 3600)).contains(&soak)
    {
        return Err(RehearseError::Input(format!(
            "invalid --soak {}: expected 1s to 7 days",
            humantime::format_duration(soak)
        )));
    }
    Ok(())
}

/// The scenarios `--scenario` names, in the order given; all of them when
/// none is named.
fn chosen(names: &[String]) -> Result<Vec<Scenario>, RehearseError> {
    if names.is_empty() {
        return Ok(SCENARIOS.to_vec());
    }
    names
        .iter()
        .map(|n| {
            SCENARIOS
                .iter()
                .find(|s| s.name == n)
                .copied()
                .ok_or_else(|| {
                    RehearseError::Input(format!(
                        "unknown scenario {n:?}; known: {}",
                        SCENARIOS
                            .iter()
                            .map(|s| s.name)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })
        })
        .collect()
}

/// The matrix once, or with `--soak` round after round until the soak's time is up or a verdict
/// is not as expected, this process's memory sampled after each round: the last round's rows.
async fn rounds(
    chosen: &[Scenario],
    setup: &Setup,
    args: &RehearseArgs,
    out: &mut (dyn std::io::Write + Send),
) -> Result<Vec<Row>, RehearseError> {
    let began = Instant::now();
    let mut round = 0;
    let mut rss: Vec<u64> = Vec::new();
    let mut all_as_expected = true;
    let rows = loop {
        round += 1;
        let rows = matrix(chosen, setup, args, out).await?;
        all_as_expected &= rows.iter().all(|r| r.as_expected);
        let Some(soak) = args.soak else {
            break rows;
        };
        rss.push(rss_kib());
        let _ = writeln!(
            out,
            "soak round {round}: {} s elapsed, RSS {} KiB{}",
            began.elapsed().as_secs(),
            rss[rss.len() - 1],
            if all_as_expected {
                ""
            } else {
                ", a verdict NOT as expected"
            }
        );
        if began.elapsed() >= soak || !all_as_expected {
            break rows;
        }
    };
    if let (Some(first), Some(last)) = (rss.first(), rss.last())
        && rss.len() > 1
    {
        let grew = *last > first + first / 5;
        let _ = writeln!(
            out,
            "soak: {round} rounds in {} s; RSS after round 1 {first} KiB, after round {round} {last} KiB, max {} KiB: {}",
            began.elapsed().as_secs(),
            rss.iter().max().copied().unwrap_or(0),
            if grew { "GREW more than 20 %" } else { "flat" }
        );
        if grew {
            return Err(RehearseError::Run(format!(
                "memory grew during the soak: {first} KiB after round 1, {last} KiB after round {round}"
            )));
        }
    }
    if !all_as_expected && args.soak.is_some() {
        let _ = writeln!(out, "soak: a verdict was not as expected in round {round}");
    }
    Ok(rows)
}

/// One pass over the chosen scenarios.
async fn matrix(
    chosen: &[Scenario],
    setup: &Setup,
    args: &RehearseArgs,
    out: &mut (dyn std::io::Write + Send),
) -> Result<Vec<Row>, RehearseError> {
    let mut rows = Vec::new();
    for (i, s) in chosen.iter().enumerate() {
        let _ = writeln!(
            out,
            "[{}/{}] {}: {} (expect {})",
            i + 1,
            chosen.len(),
            s.name,
            s.about,
            if s.expect_pass { "pass" } else { "fail" }
        );
        let mut row = drive::scenario(s, setup, args, out).await?;
        if let Some(d) = &setup.derived
            && !row.as_expected
        {
            row.causes = causes(s, &row, &d.hazards);
            for c in &row.causes {
                let _ = writeln!(out, "      cause: {c}");
            }
        }
        let _ = writeln!(
            out,
            "      -> {} ({}), {} requests, {} errors, {}{}",
            row.verdict,
            if row.as_expected {
                "as expected"
            } else {
                "NOT AS EXPECTED"
            },
            row.requests,
            row.errors,
            row.rollout,
            row.rollback_ms
                .map(|ms| {
                    let alarm = match (&s.kind, alarm_window(&setup.stack)) {
                        (Kind::Deploy { .. }, Some((lo, hi))) => format!(
                            " (the deployment group's fastest CloudWatch alarm: {lo}-{hi} s on AWS)"
                        ),
                        _ => String::new(),
                    };
                    format!(", rollback called {ms} ms after the first failure{alarm}")
                })
                .unwrap_or_default()
        );
        rows.push(row);
    }
    Ok(rows)
}

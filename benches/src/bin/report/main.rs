//! `report`: every side-by-side comparison of the project against its peers in one run on one
//! machine — `server` vs a minimal hyper hello and a Python `http.server` service, `loadprobe
//! --rate max` vs wrk and oha, the `localaws` listener vs nginx (throughput and added latency),
//! the probe's schedule lag and memory at 5,000 req/s — each as a ratio measured in the same run
//! with the absolute figures beside it; the rehearsal's wall time and rollback latency when
//! `orchestrate` is built; the targets shown met or not, and the machine described.
//! Markdown on stdout (or `--md`), `--json`, `--html`; `--baseline OLD.json` flags every ratio
//! more than 10 % worse and exits 1.
//!
//! Needs the release binaries beside it: `cargo build --release -p server -p loadprobe -p
//! benches`. Peers missing from the machine are reported as not installed, never a failure.

mod baseline;
mod machine;
mod measure;
mod model;
mod render;
mod sections;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Instant, SystemTime};

use clap::{Parser, ValueEnum};

use crate::measure::{Bins, Proc};
use crate::model::{Kind, Report, Section};
use crate::sections::{Bench, Plan};

/// Runs every benchmark comparison and reports ratios against the peers.
#[derive(Debug, Parser)]
#[command(
    name = "report",
    about,
    long_about = None,
    after_help = "Exit codes: 0 done; 1 a ratio more than 10 % worse than the baseline, a sanity check failed \
                  (a failed request, a request without a result, a comparison that could not run), or with \
                  --strict a target not met; 2 bad input (a missing binary, an unreadable baseline)."
)]
struct Args {
    /// A short run: one round of 2 s per measurement, 15 s at 5,000 req/s (about a minute).
    #[arg(long)]
    quick: bool,
    /// Write the Markdown report here instead of standard output.
    #[arg(long, value_name = "FILE")]
    md: Option<PathBuf>,
    /// Write the report as JSON (what --baseline reads).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write a self-contained HTML page with bar charts.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// A previous --json report: every ratio more than 10 % worse is flagged, exit 1.
    #[arg(long, value_name = "OLD.json")]
    baseline: Option<PathBuf>,
    /// Exit 1 also when one of the targets is not met.
    #[arg(long)]
    strict: bool,
    /// Rounds of every comparison [default: 3, --quick 1].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=100))]
    rounds: Option<u16>,
    /// Seconds of every throughput and latency measurement [default: 5, --quick 2].
    #[arg(long, value_name = "S", value_parser = clap::value_parser!(u64).range(1..=3600))]
    seconds: Option<u64>,
    /// Seconds of the 5,000 req/s run, at least 15 (RSS is compared at 10 s and at the end)
    /// [default: 30, --quick 15].
    #[arg(long, value_name = "S", value_parser = clap::value_parser!(u64).range(15..=86400))]
    fixed_seconds: Option<u64>,
    /// Run only these comparisons.
    #[arg(long, value_delimiter = ',', value_name = "NAME,...")]
    only: Vec<Only>,
    /// Where the release binaries are [default: beside this one].
    #[arg(long, value_name = "DIR")]
    bin_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Only {
    Server,
    Probe,
    Proxy,
    FixedRate,
    Rehearsal,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("report: {e}");
            ExitCode::from(2)
        }
    }
}

fn read_baseline(path: &Path) -> Result<Report, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the baseline {}: {e}", path.display()))?;
    let report: Report = serde_json::from_str(&text)
        .map_err(|e| format!("the baseline {} is not a report: {e}", path.display()))?;
    if report.schema != model::SCHEMA {
        return Err(format!(
            "the baseline {} has schema {}, this report writes {}",
            path.display(),
            report.schema,
            model::SCHEMA
        ));
    }
    Ok(report)
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[expect(
    clippy::too_many_lines,
    reason = "the report's driver: each section in the order the report prints them"
)]
fn run(args: &Args) -> Result<ExitCode, String> {
    if cfg!(debug_assertions) {
        return Err("a debug build measures nothing worth comparing: build with --release".into());
    }
    let dir = match &args.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(Path::to_path_buf))
            .ok_or("cannot tell where this binary is: pass --bin-dir")?,
    };
    for bin in ["server", "loadprobe", "hello-hyper"] {
        if !dir.join(bin).is_file() {
            return Err(format!(
                "no {bin} in {}: cargo build --release -p server -p loadprobe -p benches",
                dir.display()
            ));
        }
    }
    let old = args.baseline.as_deref().map(read_baseline).transpose()?;
    let work = tempfile::tempdir().map_err(|e| format!("no scratch directory: {e}"))?;
    let bins = Bins {
        dir,
        work: work.path().to_path_buf(),
    };
    let started = Instant::now();
    let started_at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let machine = machine::describe();
    let tools = machine::Tools::find();
    let mut plan = if args.quick {
        Plan::quick()
    } else {
        Plan::full()
    };
    if let Some(n) = args.rounds {
        plan.rounds = usize::from(n);
    }
    plan.secs = args.seconds.unwrap_or(plan.secs);
    plan.fixed_secs = args.fixed_seconds.unwrap_or(plan.fixed_secs);

    let port = measure::free_port()?;
    let _hello = Proc::spawn(
        "hello-hyper",
        Command::new(bins.path("hello-hyper"))
            .arg(format!("127.0.0.1:{port}"))
            .stdout(Stdio::null()),
    )?;
    measure::wait_up("hello-hyper", port)?;
    let bench = Bench {
        bins: &bins,
        tools: &tools,
        plan,
        hello: format!("http://127.0.0.1:{port}/"),
    };

    type Run<'a> = fn(&Bench<'a>) -> Result<Section, String>;
    let all: [(Only, &str, Run<'_>); 5] = [
        (
            Only::Server,
            "server vs hello-hyper vs Python",
            Bench::server,
        ),
        (
            Only::Probe,
            "loadprobe --rate max vs wrk and oha",
            Bench::probe,
        ),
        (Only::Proxy, "localaws listener vs nginx", Bench::proxy),
        (
            Only::FixedRate,
            "loadprobe at 5,000 req/s",
            Bench::fixed_rate,
        ),
        (Only::Rehearsal, "orchestrate rehearse", Bench::rehearsal),
    ];
    let mut sections = Vec::new();
    for (which, title, f) in all {
        if !args.only.is_empty() && !args.only.contains(&which) {
            continue;
        }
        eprintln!(
            "report: {title} (t={:.0}s)",
            started.elapsed().as_secs_f64()
        );
        sections.push(f(&bench).unwrap_or_else(|e| {
            eprintln!("report: {title}: {e}");
            let mut s = Section::new(&format!("{which:?}"), title, String::new());
            s.sanity("the comparison ran", e, false);
            s
        }));
    }
    let wall_s = started.elapsed().as_secs_f64();
    let mut run = Section::new(
        "run",
        "The run",
        "Wall time of the whole report, tool start to last measurement.".into(),
    );
    run.row("wall time", Some(wall_s), "s", "", None);
    run.target(
        "whole report under 10 minutes",
        format!(
            "{:.0} s{}",
            wall_s,
            if args.quick { " (--quick)" } else { "" }
        ),
        Some(wall_s < 600.0),
    );
    sections.push(run);

    let mut report = Report {
        schema: model::SCHEMA,
        started_at,
        commit: machine::commit(),
        quick: args.quick,
        wall_s,
        machine,
        tools: tools.list(),
        sections,
        baseline: None,
    };
    if let Some(old) = &old {
        report.baseline = Some(baseline::compare(old, &report, baseline::TOLERANCE));
    }

    let md = render::markdown(&report);
    match &args.md {
        Some(path) => write(path, &md)?,
        None => print!("{md}"),
    }
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        write(path, &json)?;
    }
    if let Some(path) = &args.html {
        write(path, &render::html(&report))?;
    }

    let checks = || report.sections.iter().flat_map(|s| &s.checks);
    let failed_sanity: Vec<&str> = checks()
        .filter(|c| c.kind == Kind::Sanity && c.met == Some(false))
        .map(|c| c.target.as_str())
        .collect();
    let missed: Vec<&str> = checks()
        .filter(|c| c.kind == Kind::Target && c.met == Some(false))
        .map(|c| c.target.as_str())
        .collect();
    let regressed: Vec<&str> = report
        .baseline
        .iter()
        .flat_map(|b| b.regressions())
        .map(|c| c.id.as_str())
        .collect();
    for (what, list) in [
        ("failed", &failed_sanity),
        ("target not met", &missed),
        ("regression vs the baseline", &regressed),
    ] {
        for item in list {
            eprintln!("report: {what}: {item}");
        }
    }
    let failed =
        !failed_sanity.is_empty() || !regressed.is_empty() || (args.strict && !missed.is_empty());
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

//! `orchestrate rehearse`: the whole thing, offline. Starts `localaws` in-process with its
//! embedded default stack (the dev environment's names) for each scenario, runs the rollout
//! under load through the same code `orchestrate refresh` runs against AWS, and checks every
//! verdict against its expectation: the passing scenarios must drop nothing, and each negative
//! control (one protection removed) must fail, with its outage located and attributed.
//!
//! Scenarios: instance refreshes (`orchestrate refresh`'s code) and CodeDeploy blue/green
//! releases (`orchestrate deploy`'s code, rendering the repository's own `codedeploy/`
//! templates), each with its negative control.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aws_sdk_autoscaling::types::RefreshPreferences;
use loadprobe::{ConnectionMode, Probe, ProbeConfig, Rate, Report, TlsOptions, Verdict};
use localaws::control::ec2::{NewVersion, TemplateRef};
use localaws::{Localaws, Options, Stack};
use serde::Serialize;

use crate::aws::{Clients, Target};
use crate::deploy;
use tfstack::derive::{self, Assumption, DeriveOptions, RefreshPrefs};
use crate::preflight::{Hazard, Severity};
use crate::refresh::{self, Follow, Plan};

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
    /// whitespace) instead of the project's server. Repeatable.
    #[arg(long = "image", value_name = "NAME=COMMAND", requires = "terraform")]
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

/// One scenario of the matrix.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    /// Name (`--scenario`).
    pub name: &'static str,
    /// What it shows.
    pub about: &'static str,
    /// Whether the probe must pass.
    pub expect_pass: bool,
    /// Capacity provider managed draining.
    pub managed_draining: bool,
    /// `MinHealthyPercentage`.
    pub min_healthy: i32,
    /// `MaxHealthyPercentage`.
    pub max_healthy: i32,
    /// The rollout.
    pub kind: Kind,
    /// Target groups' deregistration delay (simulated seconds) instead of the stack's.
    pub deregistration_delay: Option<u32>,
    /// Slow requests (`/delay/200`, 50/s) in flight the whole time, measured by a second probe.
    pub slow_requests: bool,
    /// The application's drain delay (`DRAIN_DELAY_SECONDS`) instead of the rehearsal's 1 s.
    pub drain_delay: Option<&'static str>,
}

/// What a scenario rolls out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An instance refresh to a new launch template version (a new AMI).
    Refresh,
    /// A CodeDeploy blue/green release of a new task definition revision.
    Deploy {
        /// The release answers 500 on `/` while its `/ready` passes.
        broken: bool,
        /// The AppSpec's `AfterAllowTestTraffic` hook validates the test listener.
        validate: bool,
    },
}

/// The first refresh, as production runs it: managed draining on, minimum healthy 90 %, the
/// stack's deregistration delay, an application that drains. Every other scenario is written
/// as a twin of one before it with its changed fields named, so a negative control shows the one
/// protection it removes (and `expect_pass: false`).
const REFRESH: Scenario = Scenario {
    name: "refresh",
    about: "instance refresh to a new launch template version, managed draining on",
    expect_pass: true,
    managed_draining: true,
    min_healthy: 90,
    max_healthy: 100,
    kind: Kind::Refresh,
    deregistration_delay: None,
    slow_requests: false,
    drain_delay: None,
};

const SLOW_REQUESTS: Scenario = Scenario {
    name: "refresh-slow-requests",
    about: "the first refresh with slow requests (200 ms) in flight the whole time: the deregistration delay lets them finish",
    slow_requests: true,
    ..REFRESH
};

const SHORT_DEREG_DELAY: Scenario = Scenario {
    name: "refresh-short-dereg-delay",
    about: "the first refresh with a deregistration delay (2 s) shorter than the load balancer's propagation lag (5 s): the application's drain delay covers the rest",
    deregistration_delay: Some(2),
    ..REFRESH
};

const CANARY: Scenario = Scenario {
    name: "bluegreen-canary",
    about: "blue/green release v1 -> v2 through CodeDeploy: canary 10 %, then the rest; test traffic validated first",
    kind: Kind::Deploy {
        broken: false,
        validate: true,
    },
    ..REFRESH
};

const BROKEN_VALIDATED: Scenario = Scenario {
    name: "bluegreen-broken-validated",
    about: "broken release v3 (/ready passes, / answers 500) caught on the test listener: rolled back before production sees it",
    kind: Kind::Deploy {
        broken: true,
        validate: true,
    },
    ..CANARY
};

/// The matrix.
pub const SCENARIOS: &[Scenario] = &[
    REFRESH,
    Scenario {
        name: "refresh-max-healthy-200",
        about: "the same refresh launching every replacement first (min healthy 100 %, max healthy 200 %)",
        min_healthy: 100,
        max_healthy: 200,
        ..REFRESH
    },
    Scenario {
        name: "refresh-no-managed-draining",
        about: "negative control: the first refresh with managed draining off (instances die with their tasks)",
        expect_pass: false,
        managed_draining: false,
        ..REFRESH
    },
    SLOW_REQUESTS,
    Scenario {
        name: "refresh-zero-dereg-delay",
        about: "negative control: the same with a deregistration delay of 0 (the load balancer cuts requests in flight)",
        expect_pass: false,
        deregistration_delay: Some(0),
        ..SLOW_REQUESTS
    },
    SHORT_DEREG_DELAY,
    Scenario {
        name: "refresh-short-dereg-delay-no-drain",
        about: "negative control: the same with an application that does not drain (DRAIN_DELAY_SECONDS=0): it stops listening while the load balancer still routes to it",
        expect_pass: false,
        drain_delay: Some("0"),
        ..SHORT_DEREG_DELAY
    },
    CANARY,
    BROKEN_VALIDATED,
    Scenario {
        name: "bluegreen-broken-no-validation",
        about: "negative control: the same broken release without test-traffic validation (production sees v3 until the gate stops it)",
        expect_pass: false,
        kind: Kind::Deploy {
            broken: true,
            validate: false,
        },
        ..BROKEN_VALIDATED
    },
];

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

/// The rehearsal's stack: `localaws`'s embedded default (the dev environment's names) at
/// `time_scale`, with an application that drains for 1 s, managed draining as given.
pub fn stack(managed_draining: bool, time_scale: f64) -> Result<Stack, RehearseError> {
    Stack::rehearsal(managed_draining, time_scale).map_err(|e| RehearseError::Run(e.to_string()))
}

/// What a rehearsal runs on: the embedded demo stack, or the stack derived from a Terraform
/// configuration.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The stack (at the rehearsal's time scale; managed draining as configured).
    pub stack: Stack,
    /// Set when the stack was derived with `--terraform`.
    pub derived: Option<DerivedSetup>,
}

/// A stack derived from Terraform, with what the rehearsal reports beside it.
#[derive(Debug, Clone)]
pub struct DerivedSetup {
    /// The configuration's root module.
    pub dir: PathBuf,
    /// Its instance refresh preferences (the `refresh` scenario starts refreshes with them).
    pub refresh: RefreshPrefs,
    /// Values not known before apply and what was used instead.
    pub assumptions: Vec<Assumption>,
    /// The configuration's preflight hazards (errors and warnings).
    pub hazards: Vec<Hazard>,
    /// How long reading the configuration and deriving the stack took.
    pub elapsed: Duration,
    /// `--task-definition`, rendered for localaws: what the blue/green scenarios release.
    pub release: Option<serde_json::Value>,
}

impl Setup {
    /// The embedded demo stack, tuned for rehearsals.
    pub fn embedded(time_scale: f64) -> Result<Setup, RehearseError> {
        Ok(Setup {
            stack: stack(true, time_scale)?,
            derived: None,
        })
    }

    /// The stack `dir`'s Terraform describes (`--image NAME=COMMAND` flags in `images`), and
    /// the task definition file deploys register, if given.
    pub fn terraform(
        dir: &Path,
        images: &[String],
        task_definition: Option<&Path>,
        time_scale: f64,
    ) -> Result<Setup, RehearseError> {
        let began = Instant::now();
        let mut options = DeriveOptions {
            time_scale: Some(time_scale),
            ..DeriveOptions::default()
        };
        for flag in images {
            options.images.push(
                DeriveOptions::parse_image(flag)
                    .map_err(|e| RehearseError::Input(e.to_string()))?,
            );
        }
        let cfg = tfstack::terraform::Config::load(dir)
            .map_err(|e| RehearseError::Input(format!("--terraform: {e}")))?;
        let mut derived = derive::derive(&cfg, &options)
            .map_err(|e| RehearseError::Input(format!("--terraform {}: {e}", dir.display())))?;
        let (release, checked) = match task_definition {
            Some(file) => {
                let (json, assumed) = release_template(file, &derived.stack)?;
                derived.assumptions.extend(assumed);
                let checked = crate::preflight::TaskDefinition::from_file(file)
                    .map_err(|e| RehearseError::Input(format!("--task-definition: {e}")))?;
                (Some(json), Some(checked))
            }
            None => (None, None),
        };
        let hazards = crate::preflight::check(&crate::preflight::Inputs {
            terraform: Some(cfg),
            task_definition: checked,
            appspec: None,
        });
        Ok(Setup {
            stack: derived.stack,
            derived: Some(DerivedSetup {
                dir: dir.to_path_buf(),
                refresh: derived.refresh,
                assumptions: derived.assumptions,
                hazards,
                elapsed: began.elapsed(),
                release,
            }),
        })
    }

    fn from_args(args: &RehearseArgs) -> Result<Setup, RehearseError> {
        match &args.terraform {
            Some(dir) => Setup::terraform(
                dir,
                &args.images,
                args.task_definition.as_deref(),
                args.time_scale,
            ),
            None => Setup::embedded(args.time_scale),
        }
    }

    /// Why a scenario cannot run on this stack (no Auto Scaling group to refresh, no
    /// deployment group to deploy through).
    pub fn unsupported(&self, s: &Scenario) -> Option<&'static str> {
        match s.kind {
            Kind::Refresh if self.stack.auto_scaling_group.is_none() => {
                Some("no Auto Scaling group to refresh")
            }
            Kind::Deploy { .. } if self.deployment_group().is_none() => {
                Some("no CodeDeploy deployment group")
            }
            _ => None,
        }
    }

    /// The first CodeDeploy application and deployment group.
    fn deployment_group(&self) -> Option<(&str, &stack::DeploymentGroupConfig)> {
        self.stack
            .codedeploy
            .as_ref()?
            .applications
            .iter()
            .find_map(|a| a.deployment_groups.first().map(|g| (a.name.as_str(), g)))
    }
}

/// `--print-stack`: the derived stack as TOML, its assumptions as comments on top.
pub fn print_stack(args: &RehearseArgs, out: &mut dyn std::io::Write) -> Result<(), RehearseError> {
    let setup = Setup::from_args(args)?;
    let Some(d) = &setup.derived else {
        return Err(RehearseError::Input(
            "--print-stack needs --terraform DIR".into(),
        ));
    };
    let mut text = format!(
        "# localaws stack derived from the Terraform configuration in {} by orchestrate rehearse\n# ({} ms). Values not known before apply, and what this stack uses instead:\n",
        d.dir.display(),
        d.elapsed.as_millis()
    );
    if d.assumptions.is_empty() {
        text.push_str("#   none\n");
    }
    for a in &d.assumptions {
        let _ = writeln!(text, "#   {a}");
    }
    text.push('\n');
    text.push_str(
        &toml::to_string(&setup.stack)
            .map_err(|e| RehearseError::Run(format!("writing the stack as TOML: {e}")))?,
    );
    out.write_all(text.as_bytes())
        .map_err(|e| RehearseError::Run(format!("writing the stack: {e}")))
}

/// Runs the matrix; returns the rows (the caller prints and decides the exit code).
pub async fn run(
    args: &RehearseArgs,
    out: &mut (dyn std::io::Write + Send),
) -> Result<Vec<Row>, RehearseError> {
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
    let chosen: Vec<Scenario> = if args.scenarios.is_empty() {
        SCENARIOS.to_vec()
    } else {
        args.scenarios
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
            .collect::<Result<_, _>>()?
    };
    let setup = Setup::from_args(args)?;
    let mut chosen = chosen;
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
        chosen.retain(|s| match setup.unsupported(s) {
            Some(why) => {
                let _ = writeln!(out, "skipped {}: {why}", s.name);
                false
            }
            None => true,
        });
    }
    std::fs::create_dir_all(&args.report_dir).map_err(|e| {
        RehearseError::Input(format!(
            "cannot create --report-dir {}: {e}",
            args.report_dir.display()
        ))
    })?;
    let began = Instant::now();
    let mut round = 0;
    let mut rss: Vec<u64> = Vec::new();
    let mut all_as_expected = true;
    let rows = loop {
        round += 1;
        let rows = matrix(&chosen, &setup, args, out).await?;
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
    write_index(&args.report_dir, &rows)
        .map_err(|e| RehearseError::Run(format!("writing the index: {e}")))?;
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&rows).unwrap_or_default();
        std::fs::write(path, text + "\n")
            .map_err(|e| RehearseError::Run(format!("writing {}: {e}", path.display())))?;
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
        let mut row = scenario(s, setup, args, out).await?;
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

async fn scenario(
    s: &Scenario,
    setup: &Setup,
    args: &RehearseArgs,
    out: &mut (dyn std::io::Write + Send),
) -> Result<Row, RehearseError> {
    let began = Instant::now();
    let dir = args.report_dir.join(s.name);
    let _ = std::fs::remove_dir_all(&dir);
    let mut options = Options::new(dir.join("localaws"));
    options.ephemeral_ports = true;
    // Image `server` runs this very binary as the application (`orchestrate server`).
    options.server = std::env::current_exe()
        .ok()
        .map(|exe| (exe, vec!["server".to_owned()]));
    let mut stack = setup.stack.clone();
    stack.time_scale = args.time_scale;
    // The embedded stack takes the scenario's managed draining; a derived one keeps the
    // configuration's, except in the negative control, which turns it off.
    if let Some(asg) = stack.auto_scaling_group.as_mut()
        && (setup.derived.is_none() || !s.managed_draining)
    {
        asg.capacity_provider.managed_draining = s.managed_draining;
    }
    if let Some(d) = s.deregistration_delay {
        for tg in &mut stack.target_groups {
            tg.deregistration_delay = d;
        }
    }
    if let Some(drain) = s.drain_delay {
        for td in &mut stack.task_definitions {
            for c in &mut td.container_definitions {
                for kv in &mut c.environment {
                    if kv.name == "DRAIN_DELAY_SECONDS" {
                        kv.value = drain.into();
                    }
                }
            }
        }
    }
    // The AppSpec's validation hook names function `validate`: this process serves it (on a
    // derived stack only when it has a test listener to validate through).
    let has_test = setup.derived.is_none()
        || setup
            .deployment_group()
            .is_some_and(|(_, g)| g.test_listener.is_some());
    let hook = if matches!(s.kind, Kind::Deploy { validate: true, .. }) && has_test {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| RehearseError::Run(format!("hook endpoint: {e}")))?;
        let addr = l
            .local_addr()
            .map_err(|e| RehearseError::Run(format!("hook endpoint: {e}")))?;
        if let Some(cd) = stack.codedeploy.as_mut() {
            cd.functions.insert(
                "validate".into(),
                stack::HookFunction {
                    url: Some(format!("http://{addr}/")),
                    command: None,
                },
            );
        }
        Some(l)
    } else {
        None
    };
    let la = Localaws::start(stack, options, 0)
        .await
        .map_err(|e| RehearseError::Run(format!("starting localaws: {e}")))?;
    let result = drive(s, setup, args, &la, &dir, hook, out).await;
    la.shutdown().await;
    let mut row = result?;
    row.wall_s = began.elapsed().as_secs_f64();
    Ok(row)
}

/// How a probe of `url` on `la` checks certificates: an `https://` listener of localaws is
/// trusted through localaws's own CA, nothing else is.
fn trust(la: &Localaws, url: &str) -> TlsOptions {
    TlsOptions {
        ca_file: la
            .ca_file()
            .filter(|_| url.starts_with("https://"))
            .map(Path::to_path_buf),
        ..TlsOptions::default()
    }
}

async fn drive(
    s: &Scenario,
    setup: &Setup,
    args: &RehearseArgs,
    la: &Localaws,
    dir: &Path,
    hook: Option<tokio::net::TcpListener>,
    out: &mut (dyn std::io::Write + Send),
) -> Result<Row, RehearseError> {
    if !la.wait_ready(la.ready_timeout()).await {
        return Err(RehearseError::Run(format!(
            "{}: the fleet did not turn healthy (task logs in {})",
            s.name,
            la.plane().log_dir().display()
        )));
    }
    let url = la
        .listener_url("production")
        .ok_or_else(|| RehearseError::Run("no production listener".into()))?;
    let mut cfg = ProbeConfig::new(
        url.parse()
            .map_err(|e| RehearseError::Run(format!("listener url {url}: {e}")))?,
    );
    cfg.rate = Rate::PerSecond(args.rate);
    cfg.duration = Duration::from_secs(600);
    cfg.connections = 32;
    cfg.mode = ConnectionMode::KeepAlive;
    cfg.interval = Duration::from_millis(100);
    cfg.tls = trust(la, &url);
    let probe = Probe::start(cfg).map_err(|e| RehearseError::Run(format!("probe: {e}")))?;
    let slow = if s.slow_requests {
        let slow_url = format!("{}/delay/200", url.trim_end_matches('/'));
        let mut cfg = ProbeConfig::new(
            slow_url
                .parse()
                .map_err(|e| RehearseError::Run(format!("slow url {slow_url}: {e}")))?,
        );
        cfg.rate = Rate::PerSecond(50.0);
        cfg.duration = Duration::from_secs(600);
        cfg.connections = 32;
        cfg.mode = ConnectionMode::KeepAlive;
        cfg.interval = Duration::from_millis(100);
        cfg.tls = trust(la, &slow_url);
        Some(Probe::start(cfg).map_err(|e| RehearseError::Run(format!("slow probe: {e}")))?)
    } else {
        None
    };
    // localaws's control-plane transitions and targets leaving rotation on the probe's
    // timeline, at the time they happened (the rest is in the task logs).
    let mut events = la.plane().events().subscribe();
    let marker = probe.marker();
    let bridge = tokio::spawn(async move {
        while let Ok(e) = events.recv().await {
            let keep = match &e.kind {
                localaws::EventKind::Control { message, .. } => {
                    !message.contains(" RUNNING on ") && !message.contains("registered (ACTIVE)")
                }
                localaws::EventKind::TargetHealth { state, .. } => {
                    *state != localaws::TargetHealth::Healthy
                }
                _ => false,
            };
            if keep {
                marker.mark_at(e.at, e.kind.to_string());
            }
        }
    });
    // A second of steady traffic first, so the timeline shows the fleet before the change.
    let mut live = probe.watch();
    let baseline = tokio::time::timeout(Duration::from_secs(10), async {
        while live.borrow_and_update().elapsed < Duration::from_secs(1) {
            if live.changed().await.is_err() {
                break;
            }
        }
    })
    .await;
    if baseline.is_err() {
        return Err(RehearseError::Run("the probe did not start".into()));
    }
    let clients = Clients::new(&Target {
        endpoint_url: Some(la.endpoint()),
        region: Some("us-east-1".into()),
        static_credentials: true,
    })
    .await;
    let mut lines = Vec::new();
    // The gate watches every probe of the scenario: the production stream and the slow requests.
    let probes: Vec<&Probe> = std::iter::once(&probe).chain(slow.as_ref()).collect();
    let (rollout, gate, ok) = match s.kind {
        Kind::Refresh => {
            // What `terraform apply` would do: a new launch template version (a new AMI).
            let asg = setup
                .stack
                .auto_scaling_group
                .as_ref()
                .ok_or_else(|| RehearseError::Run("no Auto Scaling group".into()))?;
            let (_, version) = la
                .control()
                .create_launch_template_version(
                    &TemplateRef::Name(asg.launch_template.name.clone()),
                    NewVersion {
                        source_version: Some("1".into()),
                        image_id: Some("ami-0ecs000000000002".into()),
                        description: Some("rehearsal: new AMI".into()),
                        ..NewVersion::default()
                    },
                )
                .map_err(|e| RehearseError::Run(e.to_string()))?;
            // On a derived stack every refresh starts with the configuration's own preferences
            // (scale-in protected instances, checkpoints, warmup: without them a refresh may
            // replace nothing and prove nothing); only the scenario about the healthy range
            // sets its own range. The negative controls change one thing, as on the embedded
            // stack: managed draining, the deregistration delay.
            let prefs = match &setup.derived {
                Some(d) => {
                    let mut p = d.refresh.clone();
                    if s.name == "refresh-max-healthy-200" {
                        p.min_healthy = s.min_healthy;
                        p.max_healthy = s.max_healthy;
                    }
                    refresh_preferences(&p)
                }
                None => RefreshPreferences::builder()
                    .min_healthy_percentage(s.min_healthy)
                    .max_healthy_percentage(s.max_healthy)
                    .auto_rollback(true)
                    .build(),
            };
            let plan = Plan {
                group: asg.name.clone(),
                launch_template: Some(asg.launch_template.name.clone()),
                version: Some(version.number.to_string()),
                prefs,
                follow: false,
            };
            let outcome = refresh::run(
                &clients,
                &plan,
                &probes,
                Follow {
                    poll: Duration::from_millis(50),
                    timeout: Duration::from_secs(300),
                },
                &mut |l: &str| lines.push(l.to_owned()),
            )
            .await;
            for l in &lines {
                let _ = writeln!(out, "      {l}");
            }
            match outcome {
                Ok(outcome) => (
                    format!("refresh {}", outcome.status),
                    outcome.gate.clone(),
                    outcome.succeeded(),
                ),
                // A derived configuration may be refused (no headroom, bad preferences): that
                // is the configuration's result, not the rehearsal's failure.
                Err(e) if setup.derived.is_some() => (format!("refresh refused: {e}"), None, false),
                Err(e) => return Err(RehearseError::Run(format!("{}: {e}", s.name))),
            }
        }
        Kind::Deploy { broken, validate } => {
            let plan = match &setup.derived {
                Some(_) => derived_release_plan(setup, broken, validate && hook.is_some())?,
                None => release_plan(broken, validate)?,
            };
            let validation = hook.map(|l| {
                let test_url = la.listener_url("test").unwrap_or_default();
                deploy::Validation {
                    tls: trust(la, &test_url),
                    test_url,
                    requests: 20,
                    headers: Vec::new(),
                    hook: Some(l),
                }
            });
            let outcome = deploy::run(
                &clients,
                &plan,
                &probes,
                validation,
                deploy::Follow {
                    poll: Duration::from_millis(50),
                    timeout: Duration::from_secs(300),
                },
                &mut |l: &str| lines.push(l.to_owned()),
            )
            .await;
            for l in &lines {
                let _ = writeln!(out, "      {l}");
            }
            match outcome {
                Ok(outcome) => {
                    let rolled_back = outcome.rolled_back();
                    // A good release must succeed; a broken one must end rolled back.
                    let ok = if broken {
                        !outcome.succeeded() && rolled_back
                    } else {
                        outcome.succeeded()
                    };
                    (
                        format!(
                            "deploy {}{}",
                            outcome.status,
                            if rolled_back { ", rolled back" } else { "" }
                        ),
                        outcome.gate,
                        ok,
                    )
                }
                Err(e) if setup.derived.is_some() => (format!("deploy refused: {e}"), None, false),
                Err(e) => return Err(RehearseError::Run(format!("{}: {e}", s.name))),
            }
        }
    };
    // The last replacement's old tasks have stopped once the fleet is steady again.
    la.wait_ready(la.ready_timeout()).await;
    probe.stop();
    let report = probe
        .finish()
        .await
        .map_err(|e| RehearseError::Run(format!("probe: {e}")))?;
    bridge.abort();
    refresh::write_reports(&report, dir)
        .map_err(|e| RehearseError::Run(format!("writing reports in {}: {e}", dir.display())))?;
    let slow = match slow {
        Some(p) => {
            p.stop();
            let r = p
                .finish()
                .await
                .map_err(|e| RehearseError::Run(format!("slow probe: {e}")))?;
            let slow_dir = dir.join("slow");
            refresh::write_reports(&r, &slow_dir).map_err(|e| {
                RehearseError::Run(format!("writing reports in {}: {e}", slow_dir.display()))
            })?;
            Some(r)
        }
        None => None,
    };
    Ok(row(
        s,
        &report,
        slow.as_ref(),
        &rollout,
        gate.as_ref(),
        ok,
        dir,
    ))
}

/// The release a blue/green scenario deploys: the repository's own `codedeploy/` templates
/// rendered for localaws (image `server`), with the rehearsal's drain timings; v3 is broken
/// (`PAGE_STATUS=500`: `/ready` passes, `/` fails); without validation the AppSpec has no hook.
fn release_plan(broken: bool, validate: bool) -> Result<deploy::Plan, RehearseError> {
    const TASKDEF: &str = include_str!("../../../codedeploy/taskdef.template.json");
    const APPSPEC: &str = include_str!("../../../codedeploy/appspec.yaml");
    let version = if broken { "v3" } else { "v2" };
    let vars: std::collections::BTreeMap<String, String> = [
        ("IMAGE", "server"),
        ("APP_VERSION", version),
        (
            "EXECUTION_ROLE_ARN",
            "arn:aws:iam::000000000000:role/demo-exec",
        ),
        ("TASK_ROLE_ARN", "arn:aws:iam::000000000000:role/demo-task"),
        ("AWS_REGION", "us-east-1"),
        ("CAPACITY_PROVIDER", "demo-cluster-cp"),
        ("VALIDATION_HOOK", "validate"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let mut env: Vec<(String, String)> = [
        ("DRAIN_DELAY_SECONDS", "1"),
        ("SHUTDOWN_TIMEOUT_SECONDS", "5"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    if broken {
        env.push(("PAGE_STATUS".into(), "500".into()));
    }
    let bad = |e: String| RehearseError::Run(format!("codedeploy templates: {e}"));
    let mut td = deploy::render_task_definition(TASKDEF, &vars, &env).map_err(bad)?;
    let mut appspec = deploy::render_appspec(APPSPEC, &vars).map_err(bad)?;
    td["containerDefinitions"][0]["stopTimeout"] = serde_json::Value::from(10);
    if !validate && let Some(i) = appspec.find("\nHooks:") {
        appspec.truncate(i + 1);
    }
    Ok(deploy::Plan {
        application: "demo-cd-app".into(),
        group: "demo-dg".into(),
        config: None,
        task_definition: td,
        appspec,
        description: Some(format!("rehearsal release {version}")),
    })
}

/// The SDK's refresh preferences from the configuration's.
fn refresh_preferences(p: &RefreshPrefs) -> RefreshPreferences {
    use aws_sdk_autoscaling::types::ScaleInProtectedInstances;
    let mut b = RefreshPreferences::builder()
        .min_healthy_percentage(p.min_healthy)
        .max_healthy_percentage(p.max_healthy)
        .auto_rollback(p.auto_rollback)
        .skip_matching(p.skip_matching)
        .scale_in_protected_instances(ScaleInProtectedInstances::from(
            p.scale_in_protected.as_str(),
        ));
    if let Some(w) = p.instance_warmup {
        b = b.instance_warmup(w);
    }
    if let Some(d) = p.checkpoint_delay {
        b = b.checkpoint_delay(d);
    }
    for c in &p.checkpoints {
        b = b.checkpoint_percentages(*c);
    }
    b.build()
}

/// The release a blue/green scenario deploys on a derived stack: the service's own task
/// definition (as the configuration writes it) at version v2, or v3 broken; an AppSpec naming
/// the service's container and port, with the validation hook when there is a test listener.
fn derived_release_plan(
    setup: &Setup,
    broken: bool,
    validate: bool,
) -> Result<deploy::Plan, RehearseError> {
    let bad = |m: String| RehearseError::Run(format!("release: {m}"));
    let (app, group) = setup
        .deployment_group()
        .ok_or_else(|| bad("no deployment group".into()))?;
    let svc = setup
        .stack
        .services
        .iter()
        .find(|s| s.name == group.service)
        .ok_or_else(|| bad(format!("no service {:?}", group.service)))?;
    let td = setup
        .stack
        .task_definition(&svc.task_definition)
        .ok_or_else(|| bad(format!("no task definition {:?}", svc.task_definition)))?;
    let mut json = match setup.derived.as_ref().and_then(|d| d.release.clone()) {
        Some(release) => release,
        None => serde_json::to_value(td).map_err(|e| bad(e.to_string()))?,
    };
    let version = if broken { "v3" } else { "v2" };
    deploy::set_env(&mut json, "APP_VERSION", version).map_err(bad)?;
    if broken {
        deploy::set_env(&mut json, "PAGE_STATUS", "500").map_err(bad)?;
    }
    let (container, port) = svc
        .load_balancer
        .as_ref()
        .map(|l| (l.container_name.clone(), l.container_port))
        .ok_or_else(|| bad(format!("service {:?} has no load balancer", svc.name)))?;
    let mut appspec = format!(
        "version: 0.0\nResources:\n  - TargetService:\n      Type: AWS::ECS::Service\n      Properties:\n        TaskDefinition: \"{{{{TASK_DEFINITION_ARN}}}}\"\n        LoadBalancerInfo:\n          ContainerName: {container:?}\n          ContainerPort: {port}\n"
    );
    if validate {
        appspec.push_str("Hooks:\n  - AfterAllowTestTraffic: \"validate\"\n");
    }
    Ok(deploy::Plan {
        application: app.to_owned(),
        group: group.name.clone(),
        config: None,
        task_definition: json,
        appspec,
        description: Some(format!("rehearsal release {version}")),
    })
}

/// `--task-definition FILE` rendered for localaws: the placeholders a deploy fills in get the
/// rehearsal's values (`{{APP_VERSION}}` is set per release), any other placeholder
/// `"rehearsal"`, and an image localaws does not know runs as the project's `server`; each such
/// choice is an assumption.
fn release_template(
    file: &Path,
    stack: &Stack,
) -> Result<(serde_json::Value, Vec<Assumption>), RehearseError> {
    let bad =
        |m: String| RehearseError::Input(format!("--task-definition {}: {m}", file.display()));
    let text = std::fs::read_to_string(file).map_err(|e| bad(e.to_string()))?;
    let at = |needle: &str| tfstack::terraform::Location {
        file: file.to_path_buf(),
        line: text
            .lines()
            .position(|l| l.contains(needle))
            .map_or(1, |i| i + 1),
    };
    let mut vars: std::collections::BTreeMap<String, String> = [
        ("IMAGE", "server"),
        ("APP_VERSION", "v2"),
        (
            "EXECUTION_ROLE_ARN",
            "arn:aws:iam::000000000000:role/rehearsal-exec",
        ),
        (
            "TASK_ROLE_ARN",
            "arn:aws:iam::000000000000:role/rehearsal-task",
        ),
        ("AWS_REGION", "us-east-1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let mut assumptions = Vec::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        let name = after[..end].trim().to_owned();
        if let std::collections::btree_map::Entry::Vacant(slot) = vars.entry(name) {
            let name = slot.key().clone();
            assumptions.push(Assumption {
                location: at(&format!("{{{{{name}}}}}")),
                setting: format!("placeholder {{{{{name}}}}}"),
                reason: "filled in by the deploy pipeline".into(),
                used: "\"rehearsal\"".into(),
            });
            slot.insert("rehearsal".into());
        }
        rest = &after[end + 2..];
    }
    let rendered = deploy::render(&text, &vars).map_err(bad)?;
    let mut json: serde_json::Value =
        serde_json::from_str(&rendered).map_err(|e| bad(e.to_string()))?;
    let containers = json
        .get_mut("containerDefinitions")
        .and_then(|c| c.as_array_mut())
        .ok_or_else(|| bad("expected containerDefinitions: a list of containers".into()))?;
    for c in containers {
        let image = c
            .get("image")
            .and_then(|i| i.as_str())
            .unwrap_or_default()
            .to_owned();
        if stack.image(&image).is_none() {
            assumptions.push(Assumption {
                location: at("\"image\""),
                setting: "containerDefinitions image".into(),
                reason: format!(
                    "image {image:?} runs locally as the project's server (--image NAME=COMMAND runs your own)"
                ),
                used: "\"server\"".into(),
            });
            c["image"] = serde_json::Value::from("server");
        }
    }
    Ok((json, assumptions))
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

fn row(
    s: &Scenario,
    report: &Report,
    slow: Option<&Report>,
    rollout: &str,
    gate: Option<&refresh::Gate>,
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
            r.rollback_ms.map(ms_text).unwrap_or_else(|| "-".into())
        );
    }
    for r in rows {
        if let Some(i) = &r.incident {
            let _ = writeln!(t, "  {}: {i}", r.scenario);
        }
    }
    t
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

fn write_index(dir: &Path, rows: &[Row]) -> std::io::Result<()> {
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
            escape(&r.rollback_ms.map(ms_text).unwrap_or_else(|| "-".into())),
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

    /// How many of the fields that set a scenario up (all but its name, text and expectation)
    /// differ between two scenarios.
    fn fields_changed(a: &Scenario, b: &Scenario) -> usize {
        [
            a.managed_draining != b.managed_draining,
            a.min_healthy != b.min_healthy,
            a.max_healthy != b.max_healthy,
            a.kind != b.kind,
            a.deregistration_delay != b.deregistration_delay,
            a.slow_requests != b.slow_requests,
            a.drain_delay != b.drain_delay,
        ]
        .into_iter()
        .filter(|changed| *changed)
        .count()
    }

    #[test]
    fn every_negative_control_is_a_passing_scenario_with_exactly_one_field_changed() {
        let negatives: Vec<&Scenario> = SCENARIOS.iter().filter(|s| !s.expect_pass).collect();
        assert!(negatives.len() >= 4, "{negatives:?}");
        for neg in negatives {
            let twins: Vec<&str> = SCENARIOS
                .iter()
                .filter(|p| p.expect_pass)
                .filter(|p| fields_changed(p, neg) == 1)
                .map(|p| p.name)
                .collect();
            assert!(
                !twins.is_empty(),
                "negative control {} is no passing scenario with one field changed",
                neg.name
            );
        }
        let mut names: Vec<&str> = SCENARIOS.iter().map(|s| s.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), SCENARIOS.len(), "scenario names repeat");
    }

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

//! The command lines of `refresh` and `deploy`: flags, the probe, progress lines, reports, exit
//! code. Their shared flags (probe URL and rate, timeout, poll, reports, endpoint, region, and
//! loadprobe's own `RequestArgs`: `-H`, `--ca-file`, `--insecure`, `--sni`) are one flattened
//! `Watch`, checked as loadprobe checks them before any AWS call.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use aws_sdk_autoscaling::types::{RefreshPreferences, ScaleInProtectedInstances};
use loadprobe::{ConnectionMode, Probe, ProbeConfig, Rate, Verdict};

use crate::aws::{Clients, Target};
use crate::refresh::{self, Follow, Plan, RefreshError};
use crate::{Error, Outcome};

/// Progress on a terminal: the rollout's latest status lines (those starting with one of
/// `status`) as one live line (indicatif) with the probe's counts, everything else scrolling
/// above it; plain lines when stdout is not a terminal.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    live: Option<tokio::sync::watch::Receiver<loadprobe::LiveState>>,
    status: &'static [&'static str],
    latest: Vec<String>,
}

impl Progress {
    fn new(probe: Option<&Probe>, status: &'static [&'static str]) -> Self {
        let bar = std::io::IsTerminal::is_terminal(&std::io::stdout()).then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Self {
            bar,
            live: probe.map(Probe::watch),
            status,
            latest: vec![String::new(); status.len()],
        }
    }

    fn line(&mut self, l: &str) {
        let Some(bar) = &self.bar else {
            let _ = writeln!(std::io::stdout(), "{l}");
            return;
        };
        let Some(i) = self.status.iter().position(|p| l.starts_with(p)) else {
            bar.println(l);
            return;
        };
        self.latest[i] = l.to_owned();
        let counts = self
            .live
            .as_ref()
            .map(|w| {
                let s = w.borrow();
                format!(" | probe {} requests, {} errors", s.requests, s.errors)
            })
            .unwrap_or_default();
        let status: Vec<&str> = self
            .latest
            .iter()
            .filter(|s| !s.is_empty())
            .map(String::as_str)
            .collect();
        bar.set_message(format!("{}{counts}", status.join(" | ")));
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Arguments of `refresh`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "\
Examples:
  orchestrate refresh --asg demo-asg --launch-template-version 7 --url https://app.example.com/
  orchestrate refresh --asg demo-asg --follow --url https://app.example.com/ --report-dir reports
  AWS_ENDPOINT_URL=http://127.0.0.1:4566 AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x \\
    orchestrate refresh --asg demo-asg --launch-template-version 2 --url http://127.0.0.1:8000/

Exit codes: 0 refresh Successful and probe passed; 1 refresh not Successful or probe failed
(the gate rolled it back); 2 bad input (unknown group, refused request, bad flag)")]
pub struct RefreshArgs {
    /// The Auto Scaling group.
    #[arg(long, value_name = "NAME")]
    pub asg: String,
    /// Desired configuration: this launch template version (a number: rollback is refused for
    /// $Latest/$Default). Without it the refresh has no desired configuration.
    #[arg(long, value_name = "VERSION")]
    pub launch_template_version: Option<String>,
    /// Launch template of the desired configuration [default: the group's].
    #[arg(long, value_name = "NAME")]
    pub launch_template: Option<String>,
    /// MinHealthyPercentage.
    #[arg(long, value_name = "PERCENT", default_value_t = 90, value_parser = clap::value_parser!(i32).range(0..=100))]
    pub min_healthy: i32,
    /// MaxHealthyPercentage (above 100 launches replacements before terminating).
    #[arg(long, value_name = "PERCENT", value_parser = clap::value_parser!(i32).range(100..=200))]
    pub max_healthy: Option<i32>,
    /// InstanceWarmup (e.g. 5m) [default: the group's].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub warmup: Option<Duration>,
    /// SkipMatching: leave instances already on the desired configuration.
    #[arg(long)]
    pub skip_matching: bool,
    /// CheckpointPercentages, comma-separated (e.g. 33,66,100).
    #[arg(long, value_name = "PERCENT,...", value_delimiter = ',')]
    pub checkpoints: Vec<i32>,
    /// CheckpointDelay (e.g. 10m).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub checkpoint_delay: Option<Duration>,
    /// Leave AutoRollback off (on by default: a refresh that fails rolls back).
    #[arg(long)]
    pub no_auto_rollback: bool,
    /// ScaleInProtectedInstances: what the refresh does with instances protected from scale in
    /// (ECS managed termination protection protects every instance that runs tasks). Refresh
    /// replaces them (with managed draining, safely); Ignore skips them and still ends
    /// Successful; Wait waits one hour for the protection to be removed, then fails the refresh.
    /// [default: not sent, so AWS's own default applies: Wait]
    #[arg(
        long = "scale-in-protected-instances",
        alias = "scale-in-protected",
        value_name = "Refresh|Ignore|Wait",
        value_parser = ["Refresh", "Ignore", "Wait"]
    )]
    pub scale_in_protected: Option<String>,
    /// Follow the refresh already running instead of starting one.
    #[arg(long)]
    pub follow: bool,
    /// Keep probing this long after the refresh ended (old tasks draining).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    pub settle: Duration,
    #[command(flatten)]
    pub watch: Watch,
}

/// Runs `orchestrate refresh`.
pub async fn refresh(
    args: &RefreshArgs,
    out: &mut (dyn std::io::Write + Send),
) -> Result<Outcome, Error> {
    if let Some(what) = args
        .scale_in_protected
        .as_deref()
        .filter(|w| !matches!(*w, "Refresh" | "Ignore" | "Wait"))
    {
        return Err(Error::Input(format!(
            "invalid --scale-in-protected-instances {what:?}: expected Refresh, Ignore or Wait"
        )));
    }
    if args.follow && args.launch_template_version.is_some() {
        return Err(Error::Input(
            "--follow follows the running refresh: it takes no --launch-template-version".into(),
        ));
    }
    args.watch.check(None)?;
    let secs = |d: Duration| i32::try_from(d.as_secs()).unwrap_or(i32::MAX);
    let mut prefs = RefreshPreferences::builder()
        .min_healthy_percentage(args.min_healthy)
        .skip_matching(args.skip_matching)
        .auto_rollback(!args.no_auto_rollback)
        .set_scale_in_protected_instances(
            args.scale_in_protected
                .as_deref()
                .map(ScaleInProtectedInstances::from),
        )
        .set_max_healthy_percentage(args.max_healthy)
        .set_instance_warmup(args.warmup.map(secs))
        .set_checkpoint_delay(args.checkpoint_delay.map(secs));
    for c in &args.checkpoints {
        prefs = prefs.checkpoint_percentages(*c);
    }
    let plan = Plan {
        group: args.asg.clone(),
        launch_template: args.launch_template.clone(),
        version: args.launch_template_version.clone(),
        prefs: prefs.build(),
        follow: args.follow,
    };
    let probe = args.watch.start_probe(args.settle, "refresh", None, out)?;
    let clients = args.watch.clients().await;
    let mut progress = Progress::new(probe.as_ref(), &["refresh "]);
    let mut log = |l: &str| progress.line(l);
    let result = refresh::run(
        &clients,
        &plan,
        &probe.iter().collect::<Vec<_>>(),
        Follow {
            poll: args.watch.poll,
            timeout: args.watch.timeout,
        },
        &mut log,
    )
    .await;
    progress.finish();
    let outcome = match result {
        Ok(o) => o,
        Err(e) => {
            if let Some(p) = probe {
                p.stop();
                let _ = p.finish().await;
            }
            return Err(match e {
                RefreshError::Input(m) => Error::Input(m),
                RefreshError::Aws(m) => Error::Run(m),
            });
        }
    };
    let _ = writeln!(
        out,
        "instance refresh {}: {}{}",
        outcome.id,
        outcome.status,
        outcome
            .reason
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default()
    );
    gate_line(outcome.gate.as_ref(), "requested ", out);
    let passed = finish_probe(probe, args.settle, args.watch.report_dir.as_deref(), out).await?;
    Ok(if outcome.succeeded() && passed {
        Outcome::Clean
    } else {
        Outcome::Failed
    })
}

/// Arguments of `deploy`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "\
Examples:
  orchestrate deploy --application demo-cd-app --deployment-group demo-dg \\
    --image 123456789012.dkr.ecr.eu-west-1.amazonaws.com/demo:1.4.2 --app-version 1.4.2 \\
    --var EXECUTION_ROLE_ARN=arn:aws:iam::123456789012:role/exec --var TASK_ROLE_ARN=... \\
    --url https://app.example.com/ --test-url https://app.example.com:8443/
  AWS_ENDPOINT_URL=http://127.0.0.1:4566 orchestrate deploy --application demo-cd-app \\
    --deployment-group demo-dg --image server --app-version v2 --url http://127.0.0.1:8000/

The task definition and the AppSpec are templates: {{NAME}} is replaced by --var NAME=VALUE
(--image sets IMAGE, --app-version APP_VERSION; {{TASK_DEFINITION_ARN}} is the revision
registered); a placeholder without a value is an error. Test-traffic validation (--test-url)
runs as the AppSpec's AfterAllowTestTraffic hook when --hook-listen serves the hook function,
and during a ready wait (STOP_DEPLOYMENT) otherwise.

Exit codes: 0 deployment Succeeded and probe passed; 1 not Succeeded or probe failed (the gate
stopped it with rollback); 2 bad input (template, placeholder, refused request, bad flag)")]
pub struct DeployArgs {
    /// CodeDeploy application.
    #[arg(long, value_name = "NAME")]
    pub application: String,
    /// Deployment group.
    #[arg(long, value_name = "NAME")]
    pub deployment_group: String,
    /// Deployment config [default: the group's].
    #[arg(long, value_name = "NAME")]
    pub config: Option<String>,
    /// Task definition template (ECS JSON).
    #[arg(
        long,
        value_name = "PATH",
        default_value = "codedeploy/taskdef.template.json"
    )]
    pub taskdef: PathBuf,
    /// AppSpec template (YAML or JSON).
    #[arg(long, value_name = "PATH", default_value = "codedeploy/appspec.yaml")]
    pub appspec: PathBuf,
    /// The container image ({{IMAGE}}).
    #[arg(long, value_name = "IMAGE")]
    pub image: Option<String>,
    /// The release id ({{APP_VERSION}}).
    #[arg(long, value_name = "VERSION")]
    pub app_version: Option<String>,
    /// A template value, NAME=VALUE (repeatable).
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
    /// Set an environment variable of the container, NAME=VALUE (repeatable).
    #[arg(long = "env", value_name = "NAME=VALUE")]
    pub env: Vec<String>,
    /// The test listener's URL, for test-traffic validation (with the probe's -H headers, and
    /// its --ca-file, --insecure and --sni when this URL is https://).
    #[arg(long, value_name = "URL")]
    pub test_url: Option<String>,
    /// Requests sent to the test listener; every one must succeed.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub validate_requests: u32,
    /// Serve the AfterAllowTestTraffic hook function here (its URL in the hook's configuration).
    #[arg(long, value_name = "ADDR")]
    pub hook_listen: Option<std::net::SocketAddr>,
    /// Keep probing this long after the deployment ended.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    pub settle: Duration,
    #[command(flatten)]
    pub watch: Watch,
}

fn pairs(list: &[String], flag: &str) -> Result<Vec<(String, String)>, Error> {
    list.iter()
        .map(|p| {
            p.split_once('=')
                .filter(|(k, _)| !k.trim().is_empty())
                .map(|(k, v)| (k.trim().to_owned(), v.to_owned()))
                .ok_or_else(|| Error::Input(format!("invalid {flag} {p:?}: expected NAME=VALUE")))
        })
        .collect()
}

/// Builds the deployment plan from the templates and the flags.
pub fn deploy_plan(args: &DeployArgs) -> Result<crate::deploy::Plan, Error> {
    let read = |p: &PathBuf, what: &str| {
        std::fs::read_to_string(p)
            .map_err(|e| Error::Input(format!("cannot read the {what} {}: {e}", p.display())))
    };
    let mut vars: std::collections::BTreeMap<String, String> =
        pairs(&args.vars, "--var")?.into_iter().collect();
    if let Some(i) = &args.image {
        vars.insert("IMAGE".into(), i.clone());
    }
    if let Some(v) = &args.app_version {
        vars.insert("APP_VERSION".into(), v.clone());
    }
    let taskdef = read(&args.taskdef, "task definition")?;
    let env = pairs(&args.env, "--env")?;
    let task_definition = crate::deploy::render_task_definition(&taskdef, &vars, &env)
        .map_err(|e| Error::Input(format!("{}: {e}", args.taskdef.display())))?;
    let appspec = crate::deploy::render_appspec(&read(&args.appspec, "AppSpec")?, &vars)
        .map_err(|e| Error::Input(format!("{}: {e}", args.appspec.display())))?;
    Ok(crate::deploy::Plan {
        application: args.application.clone(),
        group: args.deployment_group.clone(),
        config: args.config.clone(),
        task_definition,
        appspec,
        description: args
            .app_version
            .as_ref()
            .map(|v| format!("orchestrate deploy {v}")),
    })
}

/// Runs `orchestrate deploy`.
pub async fn deploy(
    args: &DeployArgs,
    out: &mut (dyn std::io::Write + Send),
) -> Result<Outcome, Error> {
    args.watch.check(args.test_url.as_deref())?;
    if args.hook_listen.is_some() && args.test_url.is_none() {
        return Err(Error::Input(
            "--hook-listen validates the test listener: give --test-url".into(),
        ));
    }
    let plan = deploy_plan(args)?;
    let validation = match &args.test_url {
        Some(url) => Some(crate::deploy::Validation {
            test_url: url.clone(),
            requests: args.validate_requests.max(1),
            headers: args.watch.request.headers.clone(),
            tls: args.watch.tls_for(url, args.watch.url.as_deref()),
            hook: match args.hook_listen {
                Some(addr) => Some(tokio::net::TcpListener::bind(addr).await.map_err(|e| {
                    Error::Input(format!("cannot listen on --hook-listen {addr}: {e}"))
                })?),
                None => None,
            },
        }),
        None => None,
    };
    let probe = args
        .watch
        .start_probe(args.settle, "deployment", args.test_url.as_deref(), out)?;
    let clients = args.watch.clients().await;
    let mut progress = Progress::new(probe.as_ref(), &["deploy ", "traffic "]);
    let mut log = |l: &str| progress.line(l);
    let result = crate::deploy::run(
        &clients,
        &plan,
        &probe.iter().collect::<Vec<_>>(),
        validation,
        crate::deploy::Follow {
            poll: args.watch.poll,
            timeout: args.watch.timeout,
        },
        &mut log,
    )
    .await;
    progress.finish();
    let outcome = match result {
        Ok(o) => o,
        Err(e) => {
            if let Some(p) = probe {
                p.stop();
                let _ = p.finish().await;
            }
            return Err(match e {
                crate::deploy::DeployError::Input(m) => Error::Input(m),
                crate::deploy::DeployError::Aws(m) => Error::Run(m),
            });
        }
    };
    let _ = writeln!(
        out,
        "deployment {}: {}{}{}",
        outcome.id,
        outcome.status,
        outcome
            .error
            .as_deref()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default(),
        outcome
            .rollback
            .as_ref()
            .map(|(id, s)| format!(", rolled back by {id}: {s}"))
            .unwrap_or_default()
    );
    gate_line(outcome.gate.as_ref(), "", out);
    let passed = finish_probe(probe, args.settle, args.watch.report_dir.as_deref(), out).await?;
    Ok(if outcome.succeeded() && passed {
        Outcome::Clean
    } else {
        Outcome::Failed
    })
}

/// Says what the gate did, if it fired.
fn gate_line(gate: Option<&crate::gate::Gate>, verb: &str, out: &mut (dyn std::io::Write + Send)) {
    if let Some(g) = gate {
        let _ = writeln!(
            out,
            "gate: {} {verb}({}){}",
            g.action,
            g.why,
            g.reaction
                .map(|r| format!(", {} ms after the first failed request", r.as_millis()))
                .unwrap_or_default()
        );
    }
}

/// Probes for `settle` more, stops the probe, prints its summary, writes its reports; returns
/// whether it passed (true without a probe).
async fn finish_probe(
    probe: Option<Probe>,
    settle: Duration,
    report_dir: Option<&std::path::Path>,
    out: &mut (dyn std::io::Write + Send),
) -> Result<bool, Error> {
    let Some(p) = probe else {
        return Ok(true);
    };
    tokio::time::sleep(settle).await;
    p.stop();
    let report = p
        .finish()
        .await
        .map_err(|e| Error::Run(format!("probe: {e}")))?;
    let _ = writeln!(out, "{}", report.summary());
    if let Some(dir) = report_dir {
        let written = refresh::write_reports(&report, dir)
            .map_err(|e| Error::Run(format!("writing reports in {}: {e}", dir.display())))?;
        for w in written {
            let _ = writeln!(out, "wrote {}", w.display());
        }
    }
    Ok(report.verdict == Verdict::Pass)
}

/// How `refresh` and `deploy` watch a rollout, and where AWS is.
#[derive(Debug, Clone, clap::Args)]
pub struct Watch {
    /// The production URL to probe while the rollout runs; without it there is no gate.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// Probe rate, requests per second.
    #[arg(long, value_name = "N", default_value_t = 200.0)]
    pub rate: f64,
    /// Give up (roll back, or stop with rollback) after this long.
    #[arg(long, value_name = "DURATION", default_value = "2h", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Between two status polls.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = humantime::parse_duration)]
    pub poll: Duration,
    /// Write the probe's report (JSON, Markdown, HTML) here.
    #[arg(long, value_name = "DIR")]
    pub report_dir: Option<PathBuf>,
    /// AWS endpoint for every service (localaws: http://127.0.0.1:4566).
    #[arg(long, value_name = "URL", env = "AWS_ENDPOINT_URL")]
    pub endpoint_url: Option<String>,
    /// AWS region [default: the default chain's].
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,
    /// The probe's request headers and certificate checks, as loadprobe's own flags.
    #[command(flatten)]
    pub request: loadprobe::RequestArgs,
}

impl Watch {
    /// Refuses a rate the probe cannot keep, and request flags the probe (of `--url`) or the
    /// test-traffic validation (of `test_url`) would refuse, as loadprobe refuses them, before
    /// anything is sent: a malformed header, a `--ca-file` that cannot be read, TLS options for
    /// no `https://` URL.
    fn check(&self, test_url: Option<&str>) -> Result<(), Error> {
        if !(self.rate.is_finite() && self.rate > 0.0 && self.rate <= 100_000.0) {
            return Err(Error::Input(format!(
                "invalid --rate {}: expected more than 0 and at most 100000",
                self.rate
            )));
        }
        let r = &self.request;
        if (!r.headers.is_empty() || r.tls().is_set()) && self.url.is_none() && test_url.is_none() {
            return Err(Error::Input(
                "-H/--header, --ca-file, --insecure and --sni shape the probe's requests: give --url (or deploy's --test-url)".into(),
            ));
        }
        if let Some(url) = &self.url {
            self.probe_config(url, test_url)?
                .check()
                .map_err(|e| Error::Input(format!("--url: {e}")))?;
        }
        if let Some(url) = test_url {
            let traffic = crate::deploy::TestTraffic {
                url: url.to_owned(),
                requests: 1,
                headers: r.headers.clone(),
                tls: self.tls_for(url, self.url.as_deref()),
            };
            traffic
                .config()
                .map_err(Error::Input)?
                .check()
                .map_err(|e| Error::Input(format!("--test-url: {e}")))?;
        }
        Ok(())
    }

    /// The probe of `url` (`--url`) with the request flags (`-H`, `--ca-file`, `--insecure`,
    /// `--sni`; see [`Watch::tls_for`]).
    fn probe_config(&self, url: &str, test_url: Option<&str>) -> Result<ProbeConfig, Error> {
        let uri = url
            .parse()
            .map_err(|e| Error::Input(format!("invalid --url {url:?}: {e}")))?;
        let mut cfg = ProbeConfig::new(uri);
        self.request.apply(&mut cfg);
        cfg.tls = self.tls_for(url, test_url);
        Ok(cfg)
    }

    /// The certificate checks for `url`: the TLS flags when it is `https://`, or when `other`
    /// (the other URL they could be meant for, `--url` or `--test-url`) is not (then loadprobe
    /// refuses them for this `http://` one). Production and the test listener may differ: one
    /// HTTPS, the other plain HTTP.
    pub fn tls_for(&self, url: &str, other: Option<&str>) -> loadprobe::TlsOptions {
        let https = |u: &str| {
            u.get(..8)
                .is_some_and(|p| p.eq_ignore_ascii_case("https://"))
        };
        if https(url) || !other.is_some_and(https) {
            self.request.tls()
        } else {
            loadprobe::TlsOptions::default()
        }
    }

    /// The keep-alive probe on `--url` for the timeout plus `settle`; without a URL, says there
    /// is no gate.
    fn start_probe(
        &self,
        settle: Duration,
        what: &str,
        test_url: Option<&str>,
        out: &mut (dyn std::io::Write + Send),
    ) -> Result<Option<Probe>, Error> {
        let Some(url) = &self.url else {
            let _ = writeln!(
                out,
                "no --url: following the {what} without a probe (no gate)"
            );
            return Ok(None);
        };
        let mut cfg = self.probe_config(url, test_url)?;
        if cfg.tls.insecure {
            let _ = writeln!(
                out,
                "warning: --insecure: the certificate of {url} is NOT verified"
            );
        }
        cfg.rate = Rate::PerSecond(self.rate);
        cfg.duration = self.timeout + settle;
        cfg.mode = ConnectionMode::KeepAlive;
        Ok(Some(
            Probe::start(cfg).map_err(|e| Error::Input(format!("probe: {e}")))?,
        ))
    }

    /// The SDK clients for the endpoint and region given (the default chain's credentials).
    async fn clients(&self) -> Clients {
        Clients::new(&Target {
            endpoint_url: self.endpoint_url.clone(),
            region: self.region.clone(),
            static_credentials: false,
        })
        .await
    }
}

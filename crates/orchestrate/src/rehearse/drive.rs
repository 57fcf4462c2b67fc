//! One scenario: its own `localaws` and probes, the rollout through the same code `orchestrate
//! refresh` and `orchestrate deploy` run against AWS, gated by the probes, then the reports.
//!
//! The tasks are run by `orchestrate server` (the application linked in); the probe hits the
//! production listener (trusting localaws's CA when it is HTTPS); localaws's control-plane
//! events are bridged onto the probe's timeline; a blue/green scenario with validation serves
//! the hook's function from this process.

use std::path::Path;
use std::time::{Duration, Instant};

use aws_sdk_autoscaling::types::RefreshPreferences;
use loadprobe::{ConnectionMode, Probe, ProbeConfig, Rate, TlsOptions};
use localaws::control::ec2::{NewVersion, TemplateRef};
use localaws::{Localaws, Options};
use tfstack::derive::RefreshPrefs;

use super::release::{derived_release_plan, release_plan};
use super::summary::row;
use super::{Kind, RehearseArgs, RehearseError, Row, Scenario, Setup};
use crate::aws::{Clients, Target};
use crate::deploy;
use crate::refresh::{self, Follow, Plan};

/// Runs one scenario on a `localaws` of its own, stopped however the scenario ends.
pub(super) async fn scenario(
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
    let la = Localaws::start(stack, options, 0).await.map_err(|e| {
        if e.is_bad_input() {
            RehearseError::Input(e.to_string())
        } else {
            RehearseError::Run(format!("starting localaws: {e}"))
        }
    })?;
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

/// Waits for the fleet, starts the probes, runs the rollout under their gate, then writes the
/// reports and the row.
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
    let probe = start_probe(la, &url, args.rate, ("listener url", "probe"))?;
    let slow = if s.slow_requests {
        let slow_url = format!("{}/delay/200", url.trim_end_matches('/'));
        Some(start_probe(
            la,
            &slow_url,
            50.0,
            ("slow url", "slow probe"),
        )?)
    } else {
        None
    };
    let bridge = bridge_events(la, &probe);
    baseline(&probe).await?;
    let clients = Clients::new(&Target {
        endpoint_url: Some(la.endpoint()),
        region: Some("us-east-1".into()),
        static_credentials: true,
    })
    .await;
    let mut lines = Vec::new();
    // The gate watches every probe of the scenario: the production stream and the slow requests.
    let probes: Vec<&Probe> = std::iter::once(&probe).chain(slow.as_ref()).collect();
    let rollout = match s.kind {
        Kind::Refresh => refresh_rollout(s, setup, la, &clients, &probes, &mut lines).await,
        Kind::Deploy { broken, validate } => {
            let release = Release {
                broken,
                validate,
                hook,
            };
            deploy_rollout(s, setup, la, &clients, &probes, release, &mut lines).await
        }
    };
    for l in &lines {
        let _ = writeln!(out, "      {l}");
    }
    let (rollout, gate, ok) = rollout?;
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

/// A scenario's probe: `rate` requests per second to `url` on 32 keep-alive connections, 100 ms
/// intervals, for at most 10 minutes (stopped when the rollout is over). `what` names the URL
/// and the probe in errors.
fn start_probe(
    la: &Localaws,
    url: &str,
    rate: f64,
    what: (&str, &str),
) -> Result<Probe, RehearseError> {
    let mut cfg = ProbeConfig::new(
        url.parse()
            .map_err(|e| RehearseError::Run(format!("{} {url}: {e}", what.0)))?,
    );
    cfg.rate = Rate::PerSecond(rate);
    cfg.duration = Duration::from_secs(600);
    cfg.connections = 32;
    cfg.mode = ConnectionMode::KeepAlive;
    cfg.interval = Duration::from_millis(100);
    cfg.tls = trust(la, url);
    Probe::start(cfg).map_err(|e| RehearseError::Run(format!("{}: {e}", what.1)))
}

/// localaws's control-plane transitions and targets leaving rotation on the probe's timeline,
/// at the time they happened (the rest is in the task logs), until the task is aborted.
fn bridge_events(la: &Localaws, probe: &Probe) -> tokio::task::JoinHandle<()> {
    let mut events = la.plane().events().subscribe();
    let marker = probe.marker();
    tokio::spawn(async move {
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
    })
}

/// A second of steady traffic first, so the timeline shows the fleet before the change.
async fn baseline(probe: &Probe) -> Result<(), RehearseError> {
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
    Ok(())
}

/// How a rollout ended: its status (`refresh Successful`, `deploy Failed, rolled back`), the
/// gate's action if it fired, and whether it did what the scenario needs.
type Rollout = (String, Option<crate::gate::Gate>, bool);

/// An instance refresh to a new launch template version, as `terraform apply` and then
/// `orchestrate refresh` run it; its lines go to `lines`.
async fn refresh_rollout(
    s: &Scenario,
    setup: &Setup,
    la: &Localaws,
    clients: &Clients,
    probes: &[&Probe],
    lines: &mut Vec<String>,
) -> Result<Rollout, RehearseError> {
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
    // (scale-in protected instances, checkpoints, warmup: without them a refresh may replace
    // nothing and prove nothing); only the scenario about the healthy range sets its own range.
    // The negative controls change one thing, as on the embedded stack: managed draining, the
    // deregistration delay.
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
        clients,
        &plan,
        probes,
        Follow {
            poll: Duration::from_millis(50),
            timeout: Duration::from_secs(300),
        },
        &mut |l: &str| lines.push(l.to_owned()),
    )
    .await;
    match outcome {
        Ok(outcome) => Ok((
            format!("refresh {}", outcome.status),
            outcome.gate.clone(),
            outcome.succeeded(),
        )),
        // A derived configuration may be refused (no headroom, bad preferences): that is the
        // configuration's result, not the rehearsal's failure.
        Err(e) if setup.derived.is_some() => Ok((format!("refresh refused: {e}"), None, false)),
        Err(e) => Err(RehearseError::Run(format!("{}: {e}", s.name))),
    }
}

/// What a blue/green scenario releases: a broken release or not, validated or not, and the
/// listener this process serves the validation hook's function on.
struct Release {
    broken: bool,
    validate: bool,
    hook: Option<tokio::net::TcpListener>,
}

/// A CodeDeploy blue/green release, as `orchestrate deploy` runs it, validating test traffic as
/// the hook's function when there is a hook; its lines go to `lines`. A good release must
/// succeed; a broken one must end rolled back.
async fn deploy_rollout(
    s: &Scenario,
    setup: &Setup,
    la: &Localaws,
    clients: &Clients,
    probes: &[&Probe],
    release: Release,
    lines: &mut Vec<String>,
) -> Result<Rollout, RehearseError> {
    let Release {
        broken,
        validate,
        hook,
    } = release;
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
        clients,
        &plan,
        probes,
        validation,
        deploy::Follow {
            poll: Duration::from_millis(50),
            timeout: Duration::from_secs(300),
        },
        &mut |l: &str| lines.push(l.to_owned()),
    )
    .await;
    match outcome {
        Ok(outcome) => {
            let rolled_back = outcome.rolled_back();
            let ok = if broken {
                !outcome.succeeded() && rolled_back
            } else {
                outcome.succeeded()
            };
            Ok((
                format!(
                    "deploy {}{}",
                    outcome.status,
                    if rolled_back { ", rolled back" } else { "" }
                ),
                outcome.gate,
                ok,
            ))
        }
        Err(e) if setup.derived.is_some() => Ok((format!("deploy refused: {e}"), None, false)),
        Err(e) => Err(RehearseError::Run(format!("{}: {e}", s.name))),
    }
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

//! `orchestrate preflight`: every known way the configuration drops requests during an instance
//! refresh or a blue/green deployment, found statically, with where it is and how to fix it.
//!
//! Inputs: the Terraform configuration (read by [`tfstack::terraform`], local modules followed),
//! the task definition that `orchestrate deploy` registers (ECS JSON, `{{PLACEHOLDER}}` strings
//! allowed) and the CodeDeploy AppSpec (YAML or JSON). Each check knows the AWS and provider
//! defaults, so an attribute left out is judged by what AWS will actually do (capacity provider
//! managed draining defaults to `ENABLED`, a target group's deregistration delay to 300 s, an ALB's
//! idle timeout to 60 s, `stopTimeout` to 30 s, a service's `desired_count` to 0), and a value that
//! is only known after apply is never reported. The defaults are `stack::defaults`, the table
//! `tfstack`'s derivation reads too.
//!
//! Each hazard has an id, a severity, the file and line (in a task definition, found by a scan
//! for the key), the resource, the reason and the fix; errors come first.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use stack::defaults;
use tfstack::terraform::{Config, Location, Resource, Setting, TerraformError};

/// The server's defaults (`crates/server/src/config.rs`), used when the task definition does not
/// set the variable.
pub const APP_DRAIN_DELAY_SECONDS: f64 = 5.0;
/// `SHUTDOWN_TIMEOUT_SECONDS` default.
pub const APP_SHUTDOWN_TIMEOUT_SECONDS: f64 = 25.0;
/// `IDLE_TIMEOUT_SECONDS` default.
pub const APP_IDLE_TIMEOUT_SECONDS: f64 = 75.0;

/// Every hazard id preflight can report.
pub const HAZARD_IDS: &[&str] = &[
    "no-managed-draining",
    "scale-in-protection-blocks-refresh",
    "refresh-no-headroom",
    "warmup-below-target-health",
    "launch-template-unpinned",
    "asg-health-check-ec2",
    "no-health-check-grace-period",
    "static-host-port",
    "drain-timing",
    "slow-deregistration",
    "health-check-defaults",
    "keepalive-below-idle-timeout",
    "desired-count-zero",
    "service-min-healthy-below-100",
    "codedeploy-no-auto-rollback",
    "no-test-listener",
    "no-validation-hook",
    "ready-wait-forever",
    "all-at-once",
    "appspec-container-mismatch",
];

/// `orchestrate preflight` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct PreflightArgs {
    /// Terraform root module to read (local module sources are followed).
    /// Default: terraform/envs/dev of the repository.
    #[arg(long, value_name = "DIR")]
    pub terraform: Option<PathBuf>,
    /// Task definition JSON that `orchestrate deploy` renders and registers.
    /// Default: codedeploy/taskdef.template.json of the repository.
    #[arg(long, value_name = "FILE")]
    pub task_definition: Option<PathBuf>,
    /// CodeDeploy AppSpec (YAML or JSON). Default: codedeploy/appspec.yaml of the repository.
    #[arg(long, value_name = "FILE")]
    pub appspec: Option<PathBuf>,
    /// Also write the hazards as JSON to this file.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
}

/// Why preflight could not run (bad input: exit 2).
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    /// The Terraform configuration could not be read.
    #[error(transparent)]
    Terraform(#[from] TerraformError),
    /// A default input was asked for outside the repository.
    #[error(
        "no repository found above {} (a Cargo.toml with [workspace]): pass --terraform, --task-definition and --appspec",
        cwd.display()
    )]
    NoRepository {
        /// Where the search started.
        cwd: PathBuf,
    },
    /// A file could not be read or written.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// "read" or "write".
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The task definition is not the expected JSON.
    #[error("invalid task definition {}: {message}", path.display())]
    TaskDefinition {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The AppSpec is not the expected YAML/JSON.
    #[error("invalid appspec {}: {message}", path.display())]
    AppSpec {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// How bad a hazard is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Requests will be dropped (or a rollout cannot complete or roll back): exit 1.
    Error,
    /// A rollout is slow or fragile; reported, exit 0.
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Hazard {
    /// Stable identifier (`static-host-port`).
    pub id: &'static str,
    /// Error or warning.
    pub severity: Severity,
    /// The file.
    pub file: PathBuf,
    /// The line (1-based; the enclosing block's line when the setting is missing).
    pub line: usize,
    /// The resource address, or the file and container for JSON/YAML inputs.
    pub resource: String,
    /// What goes wrong, with the values found.
    pub reason: String,
    /// What to change.
    pub fix: String,
}

impl fmt::Display for Hazard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}[{}] {}:{}",
            self.severity,
            self.id,
            self.file.display(),
            self.line
        )?;
        writeln!(f, "  resource: {}", self.resource)?;
        writeln!(f, "  reason:   {}", self.reason)?;
        writeln!(f, "  fix:      {}", self.fix)
    }
}

/// A container's settings that matter, from a task definition file or a Terraform resource.
#[derive(Debug, Clone)]
pub struct Container {
    /// Container name.
    pub name: String,
    /// `(containerPort, hostPort)`; `None` where not written.
    pub port_mappings: Vec<(Option<f64>, Option<f64>)>,
    /// `stopTimeout`.
    pub stop_timeout: Option<f64>,
    /// Environment variables.
    pub environment: BTreeMap<String, String>,
    /// Where to point for each setting (`hostPort`, `stopTimeout`, `environment`, the container).
    pub lines: BTreeMap<&'static str, usize>,
}

impl Container {
    fn env_seconds(&self, var: &str, default: f64) -> f64 {
        self.environment
            .get(var)
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(default)
    }

    fn line(&self, key: &'static str, fallback: usize) -> usize {
        self.lines
            .get(key)
            .or_else(|| self.lines.get("container"))
            .copied()
            .unwrap_or(fallback)
    }
}

/// A task definition: the file `orchestrate deploy` registers, or an `aws_ecs_task_definition`.
#[derive(Debug, Clone)]
pub struct TaskDefinition {
    /// Where it is (the file, or the resource's `container_definitions` attribute).
    pub location: Location,
    /// The file name or resource address.
    pub name: String,
    /// `networkMode` (`None`: not written, `bridge` on EC2).
    pub network_mode: Option<String>,
    /// Its containers.
    pub containers: Vec<Container>,
}

impl TaskDefinition {
    /// Reads an ECS task definition JSON file (placeholders inside strings are fine).
    pub fn from_file(path: &Path) -> Result<TaskDefinition, PreflightError> {
        let text = read(path)?;
        TaskDefinition::parse(&text, path)
    }

    /// Parses task definition JSON text; `path` is used for locations and errors.
    pub fn parse(text: &str, path: &Path) -> Result<TaskDefinition, PreflightError> {
        let bad = |message: String| PreflightError::TaskDefinition {
            path: path.to_path_buf(),
            message,
        };
        let json: serde_json::Value = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        let mut td = TaskDefinition::from_json(
            &json,
            Location {
                file: path.to_path_buf(),
                line: 1,
            },
            file_label(path),
        )
        .map_err(bad)?;
        // Lines: a scan of the text for each container's keys, from its name on.
        for c in &mut td.containers {
            let start = find_line(text, &format!("\"{}\"", c.name), 1).unwrap_or(1);
            c.lines.insert("container", start);
            for key in ["hostPort", "stopTimeout", "environment"] {
                if let Some(l) = find_line(text, &format!("\"{key}\""), start) {
                    c.lines.insert(key, l);
                }
            }
            for var in [
                "DRAIN_DELAY_SECONDS",
                "SHUTDOWN_TIMEOUT_SECONDS",
                "IDLE_TIMEOUT_SECONDS",
            ] {
                if let Some(l) = find_line(text, &format!("\"{var}\""), start) {
                    c.lines.insert(var, l);
                }
            }
        }
        if let Some(l) = find_line(text, "\"networkMode\"", 1) {
            td.location.line = l;
        }
        Ok(td)
    }

    /// Reads the ECS JSON shape (`containerDefinitions`, or a bare list of containers).
    pub fn from_json(
        json: &serde_json::Value,
        location: Location,
        name: String,
    ) -> Result<TaskDefinition, String> {
        let (network_mode, containers) = match json {
            serde_json::Value::Array(list) => (None, list.as_slice()),
            serde_json::Value::Object(map) => (
                map.get("networkMode")
                    .and_then(|v| v.as_str())
                    .map(str::to_owned),
                map.get("containerDefinitions")
                    .and_then(|v| v.as_array())
                    .map(Vec::as_slice)
                    .ok_or("expected containerDefinitions: a list of containers")?,
            ),
            _ => return Err("expected a JSON object with containerDefinitions".to_owned()),
        };
        let num = |v: Option<&serde_json::Value>| -> Option<f64> {
            match v? {
                serde_json::Value::Number(n) => n.as_f64(),
                serde_json::Value::String(s) => s.trim().parse().ok(),
                _ => None,
            }
        };
        let mut out = Vec::new();
        for (i, c) in containers.iter().enumerate() {
            let name = c
                .get("name")
                .and_then(|v| v.as_str())
                .map(str::to_owned)
                .ok_or_else(|| format!("containerDefinitions[{i}].name: expected a string"))?;
            let port_mappings = c
                .get("portMappings")
                .and_then(|v| v.as_array())
                .map(|pms| {
                    pms.iter()
                        .map(|pm| (num(pm.get("containerPort")), num(pm.get("hostPort"))))
                        .collect()
                })
                .unwrap_or_default();
            let environment = c
                .get("environment")
                .and_then(|v| v.as_array())
                .map(|env| {
                    env.iter()
                        .filter_map(|e| {
                            let k = e.get("name")?.as_str()?.to_owned();
                            let v = match e.get("value")? {
                                serde_json::Value::String(s) => s.clone(),
                                other => other.to_string(),
                            };
                            Some((k, v))
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.push(Container {
                name,
                port_mappings,
                stop_timeout: num(c.get("stopTimeout")),
                environment,
                lines: BTreeMap::new(),
            });
        }
        Ok(TaskDefinition {
            location,
            name,
            network_mode,
            containers: out,
        })
    }

    /// From an `aws_ecs_task_definition` whose `container_definitions` is known (partly known is
    /// enough); `None` when it is not.
    fn from_resource(r: &Resource<'_>) -> Option<TaskDefinition> {
        let (setting, location) = r.get("container_definitions");
        let text = setting.string()?;
        let json: serde_json::Value = serde_json::from_str(&text).ok()?;
        let mut td = TaskDefinition::from_json(&json, location.clone(), r.address()).ok()?;
        td.network_mode = r.get("network_mode").0.string();
        for c in &mut td.containers {
            c.lines.insert("container", location.line);
        }
        Some(td)
    }

    fn is_bridge_or_host(&self) -> bool {
        matches!(
            self.network_mode.as_deref(),
            None | Some("bridge") | Some("host")
        )
    }
}

/// The first line at or after `from` (1-based) that contains `needle`.
fn find_line(text: &str, needle: &str, from: usize) -> Option<usize> {
    text.lines()
        .enumerate()
        .skip(from.saturating_sub(1))
        .find(|(_, l)| l.contains(needle))
        .map(|(i, _)| i + 1)
}

/// The parts of an ECS AppSpec that matter.
#[derive(Debug, Clone)]
pub struct AppSpec {
    /// The file.
    pub file: PathBuf,
    /// `LoadBalancerInfo.ContainerName` and its line.
    pub container_name: Option<(String, usize)>,
    /// `LoadBalancerInfo.ContainerPort` and its line.
    pub container_port: Option<(f64, usize)>,
    /// Lifecycle hooks, by event name.
    pub hooks: Vec<String>,
    /// Line of `Hooks`, or 1.
    pub hooks_line: usize,
}

impl AppSpec {
    /// Reads an AppSpec (YAML; JSON is YAML too).
    pub fn from_file(path: &Path) -> Result<AppSpec, PreflightError> {
        let text = read(path)?;
        AppSpec::parse(&text, path)
    }

    /// Parses AppSpec text as written (`stack`'s reader, the one `localaws` takes deployments
    /// with); `path` is used for locations and errors.
    pub fn parse(text: &str, path: &Path) -> Result<AppSpec, PreflightError> {
        let doc = stack::AppSpecFile::read(text).map_err(|message| PreflightError::AppSpec {
            path: path.to_path_buf(),
            message,
        })?;
        Ok(AppSpec {
            file: path.to_path_buf(),
            container_name: doc.container_name.map(|c| (c.value, c.line)),
            container_port: doc.container_port.map(|p| (p.value, p.line)),
            hooks: doc.hooks.into_iter().map(|(event, _)| event).collect(),
            hooks_line: doc.hooks_line,
        })
    }
}

/// What preflight looks at; each part is optional so a check can be run on part of a setup.
#[derive(Debug, Default)]
pub struct Inputs {
    /// The Terraform configuration.
    pub terraform: Option<Config>,
    /// The task definition file `orchestrate deploy` registers.
    pub task_definition: Option<TaskDefinition>,
    /// The AppSpec.
    pub appspec: Option<AppSpec>,
}

/// Runs every check. Hazards come sorted: errors first, then by file and line.
pub fn check(inputs: &Inputs) -> Vec<Hazard> {
    let mut found = Findings::default();
    let tds = task_definitions(inputs);
    if let Some(cfg) = &inputs.terraform {
        draining(cfg, &mut found);
        asg(cfg, &mut found);
        load_balancers(cfg, &tds, &mut found);
        services(cfg, &mut found);
        codedeploy(cfg, &mut found);
    }
    let blue_green = inputs.appspec.is_some()
        || inputs.terraform.as_ref().is_some_and(|cfg| {
            cfg.resources_of("aws_ecs_service").iter().any(|s| {
                s.get("deployment_controller.type").0.string().as_deref() == Some("CODE_DEPLOY")
            })
        });
    for td in &tds {
        task_definition(td, blue_green, &mut found);
    }
    if let Some(spec) = &inputs.appspec {
        appspec(spec, inputs.task_definition.as_ref(), &mut found);
    }
    let mut hazards = found.0;
    hazards.sort_by(|a, b| {
        (a.severity, &a.file, a.line, a.id).cmp(&(b.severity, &b.file, b.line, b.id))
    });
    hazards.dedup();
    hazards
}

#[derive(Default)]
struct Findings(Vec<Hazard>);

impl Findings {
    fn add(
        &mut self,
        id: &'static str,
        severity: Severity,
        at: &Location,
        resource: String,
        reason: String,
        fix: &str,
    ) {
        debug_assert!(HAZARD_IDS.contains(&id), "{id} is not in HAZARD_IDS");
        self.0.push(Hazard {
            id,
            severity,
            file: at.file.clone(),
            line: at.line,
            resource,
            reason,
            fix: fix.to_owned(),
        });
    }
}

fn task_definitions(inputs: &Inputs) -> Vec<TaskDefinition> {
    let mut tds = Vec::new();
    if let Some(cfg) = &inputs.terraform {
        tds.extend(
            cfg.resources_of("aws_ecs_task_definition")
                .iter()
                .filter_map(TaskDefinition::from_resource),
        );
    }
    tds.extend(inputs.task_definition.clone());
    tds
}

fn fmt_num(n: f64) -> String {
    if n.fract() == 0.0 {
        format!("{n:.0}")
    } else {
        n.to_string()
    }
}

/// Failure mode 1: nothing drains an instance before Auto Scaling terminates it.
fn draining(cfg: &Config, found: &mut Findings) {
    let hooked = cfg
        .resources_of("aws_autoscaling_lifecycle_hook")
        .iter()
        .any(|h| {
            h.get("lifecycle_transition").0.string().as_deref()
                == Some("autoscaling:EC2_INSTANCE_TERMINATING")
        })
        || cfg.resources_of("aws_autoscaling_group").iter().any(|g| {
            g.block.blocks("initial_lifecycle_hook").any(|b| {
                b.attribute("lifecycle_transition")
                    .map(|a| g.module.eval_setting(&a.expr).string())
                    .is_some_and(|t| t.as_deref() == Some("autoscaling:EC2_INSTANCE_TERMINATING"))
            })
        });
    if hooked {
        return;
    }
    let providers = cfg.resources_of("aws_ecs_capacity_provider");
    for cp in &providers {
        let (setting, at) = cp.get("auto_scaling_group_provider.managed_draining");
        // Absent: ENABLED, the default for new capacity providers.
        if setting.string().as_deref() == Some("DISABLED") {
            found.add(
                "no-managed-draining",
                Severity::Error,
                &at,
                cp.address(),
                "managed_draining = \"DISABLED\" and no EC2_INSTANCE_TERMINATING lifecycle hook: an instance refresh or scale-in terminates instances under running tasks".to_owned(),
                "set managed_draining = \"ENABLED\" (the default for new capacity providers), or add a termination lifecycle hook that drains the container instance",
            );
        }
    }
    if providers.is_empty() && !cfg.resources_of("aws_ecs_service").is_empty() {
        for g in cfg.resources_of("aws_autoscaling_group") {
            found.add(
                "no-managed-draining",
                Severity::Error,
                &g.block.location,
                g.address(),
                "no ECS capacity provider with managed draining and no EC2_INSTANCE_TERMINATING lifecycle hook: an instance refresh terminates instances under running tasks".to_owned(),
                "attach the group to an aws_ecs_capacity_provider (managed_draining defaults to ENABLED), or add a termination lifecycle hook that drains the container instance",
            );
        }
    }
}

/// Failure modes 2, 3, 13, 14: the Auto Scaling group and its instance refresh.
fn asg(cfg: &Config, found: &mut Findings) {
    let termination_protection = cfg
        .resources_of("aws_ecs_capacity_provider")
        .iter()
        .any(|cp| {
            cp.get("auto_scaling_group_provider.managed_termination_protection")
                .0
                .string()
                .as_deref()
                == Some("ENABLED")
        });
    for g in cfg.resources_of("aws_autoscaling_group") {
        asg_health(&g, found);
        asg_warmup(cfg, &g, found);
        asg_launch_template(&g, found);
        asg_refresh(&g, termination_protection, found);
    }
}

/// The group's health check type and grace period (failure mode 13).
fn asg_health(g: &Resource<'_>, found: &mut Findings) {
    let (hc_type, at) = g.get("health_check_type");
    match &hc_type {
        Setting::Absent => found.add(
            "asg-health-check-ec2",
            Severity::Error,
            &at,
            g.address(),
            "health_check_type is not set (EC2, the default): an instance whose load balancer health checks fail is never replaced, and a refresh counts it healthy".to_owned(),
            "set health_check_type = \"ELB\" with a health_check_grace_period",
        ),
        s if s.string().as_deref() == Some("EC2") => found.add(
            "asg-health-check-ec2",
            Severity::Error,
            &at,
            g.address(),
            "health_check_type = \"EC2\": an instance whose load balancer health checks fail is never replaced, and a refresh counts it healthy".to_owned(),
            "set health_check_type = \"ELB\" with a health_check_grace_period",
        ),
        _ => {}
    }
    if hc_type.string().as_deref() == Some("ELB") {
        let (grace, at) = g.get("health_check_grace_period");
        if grace.number() == Some(0.0) {
            found.add(
                "no-health-check-grace-period",
                Severity::Error,
                &at,
                g.address(),
                "health_check_grace_period = 0 with ELB health checks: new instances are replaced before they boot and register".to_owned(),
                "set health_check_grace_period to the boot + agent registration + first task time (e.g. 300)",
            );
        }
    }
}

/// The warm-up a refresh waits per new instance against what its tasks need (failure mode 4).
fn asg_warmup(cfg: &Config, g: &Resource<'_>, found: &mut Findings) {
    // docs/failure-modes.md#fm-4: the warm-up a refresh waits per new instance (the
    // refresh's instance_warmup, else the group's default_instance_warmup, else its health
    // check grace period, 300 s when unset) against the least a task on it needs before the
    // load balancer sends it anything: healthy threshold x interval of the slowest target
    // group, before boot, agent registration and the task's own start are even counted.
    let warmup = [
        "instance_refresh.preferences.instance_warmup",
        "default_instance_warmup",
        "health_check_grace_period",
    ]
    .iter()
    .map(|p| g.get(p))
    .find(|(v, _)| v.is_set());
    let (warmup, warmup_at) = match warmup {
        Some((v, at)) => (v.number(), at),
        None => (
            Some(f64::from(defaults::PROVIDER_ASG_HEALTH_CHECK_GRACE_PERIOD)),
            g.block.location.clone(),
        ),
    };
    let slowest = cfg
        .resources_of("aws_lb_target_group")
        .iter()
        .chain(cfg.resources_of("aws_alb_target_group").iter())
        .filter_map(|tg| {
            let n = |p: &str, default: f64| match tg.get(&format!("health_check.{p}")).0 {
                Setting::Absent => Some(default),
                v => v.number(),
            };
            Some((
                n("healthy_threshold", f64::from(defaults::HEALTHY_THRESHOLD))?
                    * n("interval", f64::from(defaults::HEALTH_CHECK_INTERVAL))?,
                tg.address(),
            ))
        })
        .max_by(|a, b| a.0.total_cmp(&b.0));
    if let (Some(w), Some((needed, tg))) = (warmup, slowest)
        && w < needed
    {
        found.add(
            "warmup-below-target-health",
            Severity::Error,
            &warmup_at,
            g.address(),
            format!("instance warm-up {} s is shorter than a task on a new instance needs to pass its load balancer checks alone ({} s: healthy threshold x interval of {tg}), before boot, agent registration and task start: an instance refresh moves on to the next instance while the new one serves nothing", fmt_num(w), fmt_num(needed)),
            "set instance_refresh.preferences.instance_warmup (or default_instance_warmup) to boot + agent registration + task start + healthy threshold x interval (e.g. 300)",
        );
    }
}

/// The launch template version the group launches: pinned, or a refresh cannot roll back.
fn asg_launch_template(g: &Resource<'_>, found: &mut Findings) {
    let (version, at) = g.get("launch_template.version");
    let unpinned = match &version {
        Setting::Absent if g.block.block("launch_template").is_some() => {
            Some("$Default".to_owned())
        }
        s => s.string().filter(|v| v == "$Latest" || v == "$Default"),
    };
    if let Some(v) = unpinned {
        let with_rollback =
            g.get("instance_refresh.preferences.auto_rollback").0.bool() == Some(true);
        if with_rollback {
            found.add(
                "launch-template-unpinned",
                Severity::Error,
                &at,
                g.address(),
                format!("launch template version {v} with instance refresh auto_rollback: Auto Scaling refuses to roll back a refresh whose configuration uses $Latest or $Default"),
                "pin the version: version = aws_launch_template.<name>.latest_version",
            );
        } else {
            found.add(
                "launch-template-unpinned",
                Severity::Warning,
                &at,
                g.address(),
                format!("launch template version {v}: a refresh of it cannot be rolled back, and every new template version silently changes what the group launches"),
                "pin the version (aws_launch_template.<name>.latest_version) and enable auto_rollback on the instance refresh",
            );
        }
    }
}

/// The instance refresh's preferences: headroom, and scale-in protected instances (failure
/// modes 2, 3, 14).
fn asg_refresh(g: &Resource<'_>, termination_protection: bool, found: &mut Findings) {
    if g.block.block("instance_refresh").is_none() {
        // Without refresh preferences there is nothing more to judge here: orchestrate
        // refresh passes its own.
        return;
    }
    let pref = |p: &str| g.get(&format!("instance_refresh.preferences.{p}"));
    let (min, min_at) = pref("min_healthy_percentage");
    let (max, _) = pref("max_healthy_percentage");
    let min_v = match min {
        Setting::Absent => Some(f64::from(defaults::REFRESH_MIN_HEALTHY_PERCENTAGE)),
        ref s => s.number(),
    };
    let max_v = match max {
        Setting::Absent => Some(f64::from(defaults::REFRESH_MAX_HEALTHY_PERCENTAGE)),
        ref s => s.number(),
    };
    if min_v == Some(100.0) && max_v == Some(100.0) {
        found.add(
            "refresh-no-headroom",
            Severity::Error,
            &min_at,
            g.address(),
            "instance refresh with min_healthy_percentage 100 and max_healthy_percentage 100: Auto Scaling replaces one instance at a time and, with no room above 100 %, terminates each before launching its replacement, so the group runs one instance short (and the tasks drained off it need room on the others) during every replacement".to_owned(),
            "set max_healthy_percentage above 100 (e.g. 200, with max_size room) so each replacement launches before its old instance terminates; or accept the dip: spare task capacity on the other instances for one instance's tasks",
        );
    } else if let (Some(lo), Some(hi)) = (min_v, max_v)
        && hi - lo > 100.0
    {
        found.add(
            "refresh-no-headroom",
            Severity::Error,
            &min_at,
            g.address(),
            format!("instance refresh with min_healthy_percentage {} and max_healthy_percentage {}: Auto Scaling refuses a range wider than 100 (ValidationError), so no refresh starts", fmt_num(lo), fmt_num(hi)),
            "keep max_healthy_percentage - min_healthy_percentage at most 100 (min 100, max 200 launches every replacement first)",
        );
    }

    let protected = termination_protection || g.get("protect_from_scale_in").0.bool() == Some(true);
    if protected {
        let (sip, at) = pref("scale_in_protected_instances");
        let value = match &sip {
            Setting::Absent => Some("Ignore".to_owned()),
            s => s.string(),
        };
        match value.as_deref() {
            Some("Ignore") | Some("Wait") => {
                let what = if value.as_deref() == Some("Wait") {
                    "Wait: the refresh replaces nothing protected, waits one hour for the protection to be removed, then fails"
                } else {
                    "Ignore (the default): the refresh skips the protected instances, so the instances that run tasks are never replaced"
                };
                found.add(
                    "scale-in-protection-blocks-refresh",
                    Severity::Error,
                    &at,
                    g.address(),
                    format!("instances are scale-in protected (managed termination protection / protect_from_scale_in) and scale_in_protected_instances is {what}"),
                    "set instance_refresh.preferences.scale_in_protected_instances = \"Refresh\"",
                );
            }
            _ => {}
        }
    }
}

/// Failure modes 6 and 7 on the load balancer side: idle timeout and deregistration delay.
fn load_balancers(cfg: &Config, tds: &[TaskDefinition], found: &mut Findings) {
    let containers: Vec<(&TaskDefinition, &Container)> = tds
        .iter()
        .flat_map(|td| td.containers.iter().map(move |c| (td, c)))
        .filter(|(_, c)| !c.port_mappings.is_empty())
        .collect();
    let idle_app = containers
        .iter()
        .map(|(_, c)| c.env_seconds("IDLE_TIMEOUT_SECONDS", APP_IDLE_TIMEOUT_SECONDS))
        .reduce(f64::min)
        .unwrap_or(APP_IDLE_TIMEOUT_SECONDS);
    let drain_app = containers
        .iter()
        .map(|(_, c)| c.env_seconds("DRAIN_DELAY_SECONDS", APP_DRAIN_DELAY_SECONDS))
        .reduce(f64::max)
        .unwrap_or(APP_DRAIN_DELAY_SECONDS);

    for lb in cfg
        .resources_of("aws_lb")
        .iter()
        .chain(cfg.resources_of("aws_alb").iter())
    {
        if lb
            .get("load_balancer_type")
            .0
            .string()
            .is_some_and(|t| t != "application")
        {
            continue;
        }
        let (idle, at) = lb.get("idle_timeout");
        let idle_v = match idle {
            Setting::Absent => Some(f64::from(defaults::LB_IDLE_TIMEOUT)),
            ref s => s.number(),
        };
        if let Some(idle_v) = idle_v
            && idle_v >= idle_app
        {
            found.add(
                "keepalive-below-idle-timeout",
                Severity::Error,
                &at,
                lb.address(),
                format!("load balancer idle timeout {} s is not below the application's keep-alive idle timeout {} s (IDLE_TIMEOUT_SECONDS): the ALB reuses connections the application just closed, intermittent 502", fmt_num(idle_v), fmt_num(idle_app)),
                "keep the ALB idle_timeout below the application's keep-alive timeout (60 < 75), or raise IDLE_TIMEOUT_SECONDS",
            );
        }
    }

    for tg in cfg
        .resources_of("aws_lb_target_group")
        .iter()
        .chain(cfg.resources_of("aws_alb_target_group").iter())
    {
        let hc = |p: &str| tg.get(&format!("health_check.{p}"));
        let mut left = Vec::new();
        for (name, default) in [
            ("path", defaults::HEALTH_CHECK_PATH.to_owned()),
            ("interval", format!("{} s", defaults::HEALTH_CHECK_INTERVAL)),
            ("healthy_threshold", defaults::HEALTHY_THRESHOLD.to_string()),
        ] {
            if !hc(name).0.is_set() {
                left.push(format!("{name} {default}"));
            }
        }
        if !left.is_empty() {
            found.add(
                "health-check-defaults",
                Severity::Warning,
                &tg.location_of("health_check"),
                tg.address(),
                format!("health check left at the defaults ({}): a new target needs interval x healthy threshold ({} s by default) before it takes traffic, and \"/\" answers 200 while a task drains", left.join(", "), defaults::HEALTH_CHECK_INTERVAL * defaults::HEALTHY_THRESHOLD),
                "set health_check { path = \"/ready\", interval, timeout, healthy_threshold, unhealthy_threshold } explicitly (e.g. 5 s, 3 s, 2, 2)",
            );
        }
        let (delay, at) = tg.get("deregistration_delay");
        match delay {
            Setting::Absent => found.add(
                "slow-deregistration",
                Severity::Warning,
                &at,
                tg.address(),
                format!("deregistration_delay is not set ({} s, the default): every task stop waits five minutes, rollouts and refreshes crawl", defaults::DEREGISTRATION_DELAY),
                "set deregistration_delay just above the longest request and at least the application's DRAIN_DELAY_SECONDS (e.g. 30)",
            ),
            ref s => {
                if let Some(d) = s.number()
                    && d < drain_app
                {
                    found.add(
                        "drain-timing",
                        Severity::Error,
                        &at,
                        tg.address(),
                        format!("deregistration_delay {} s is shorter than the application's drain delay {} s (DRAIN_DELAY_SECONDS): the load balancer cuts requests still in flight", fmt_num(d), fmt_num(drain_app)),
                        "set deregistration_delay to at least DRAIN_DELAY_SECONDS plus the longest request",
                    );
                }
            }
        }
    }
}

/// Failure modes 5, 8, 9 in the task definition.
fn task_definition(td: &TaskDefinition, blue_green: bool, found: &mut Findings) {
    for c in &td.containers {
        let at = |key: &'static str| Location {
            file: td.location.file.clone(),
            line: c.line(key, td.location.line),
        };
        let resource = format!("{} container {}", td.name, c.name);
        if td.is_bridge_or_host() {
            for (container_port, host_port) in &c.port_mappings {
                let static_port = if td.network_mode.as_deref() == Some("host") {
                    host_port.or(*container_port)
                } else {
                    host_port.filter(|p| *p != 0.0)
                };
                if let Some(p) = static_port {
                    let (severity, why) = if blue_green {
                        (
                            Severity::Error,
                            "CodeDeploy cannot place the green task set next to blue on the same instances",
                        )
                    } else {
                        (
                            Severity::Warning,
                            "a rolling deployment above 100% cannot place a second copy on the same instance",
                        )
                    };
                    found.add(
                        "static-host-port",
                        severity,
                        &at("hostPort"),
                        resource.clone(),
                        format!("static host port {} in {} network mode: {why} (\"already using a port required by your task\")", fmt_num(p), td.network_mode.as_deref().unwrap_or("bridge")),
                        "set hostPort to 0 (dynamic host ports; allow the ephemeral range 32768-65535 from the load balancer's security group) or use awsvpc networking",
                    );
                }
            }
        }
        if c.port_mappings.is_empty() {
            continue;
        }
        let drain = c.env_seconds("DRAIN_DELAY_SECONDS", APP_DRAIN_DELAY_SECONDS);
        let shutdown = c.env_seconds("SHUTDOWN_TIMEOUT_SECONDS", APP_SHUTDOWN_TIMEOUT_SECONDS);
        let stop = c.stop_timeout.unwrap_or(f64::from(defaults::STOP_TIMEOUT));
        if stop < shutdown {
            found.add(
                "drain-timing",
                Severity::Error,
                &at("stopTimeout"),
                resource.clone(),
                format!("stopTimeout {} s is shorter than the application's shutdown timeout {} s (SHUTDOWN_TIMEOUT_SECONDS): ECS sends SIGKILL in the middle of the graceful shutdown", fmt_num(stop), fmt_num(shutdown)),
                "set stopTimeout at least SHUTDOWN_TIMEOUT_SECONDS (and that at least DRAIN_DELAY_SECONDS plus the longest request); at most 120 on EC2",
            );
        }
        if shutdown < drain {
            found.add(
                "drain-timing",
                Severity::Error,
                &at("SHUTDOWN_TIMEOUT_SECONDS"),
                resource.clone(),
                format!("SHUTDOWN_TIMEOUT_SECONDS {} is shorter than DRAIN_DELAY_SECONDS {}: the server refuses to start", fmt_num(shutdown), fmt_num(drain)),
                "set SHUTDOWN_TIMEOUT_SECONDS to at least DRAIN_DELAY_SECONDS plus the longest request",
            );
        }
    }
}

/// Failure modes 9 and 15: the ECS service.
fn services(cfg: &Config, found: &mut Findings) {
    for s in cfg.resources_of("aws_ecs_service") {
        if s.get("scheduling_strategy").0.string().as_deref() == Some("DAEMON") {
            continue;
        }
        if s.block.block("load_balancer").is_some() {
            let (grace, at) = s.get("health_check_grace_period_seconds");
            let missing = match grace {
                Setting::Absent => true,
                ref g => g.number() == Some(0.0),
            };
            if missing {
                found.add(
                    "no-health-check-grace-period",
                    Severity::Error,
                    &at,
                    s.address(),
                    "health_check_grace_period_seconds is 0 (the default): ECS stops a task that fails its first load balancer checks while still starting".to_owned(),
                    "set health_check_grace_period_seconds at least the cold start (start + healthy threshold x interval)",
                );
            }
        }
        // docs/failure-modes.md#fm-3: the service's minimum healthy percent bounds what ECS may
        // stop before replacements are healthy, in rolling deployments and whenever an instance
        // drains (every instance refresh), under either deployment controller.
        let (min, at) = s.get("deployment_minimum_healthy_percent");
        let desired = s.get("desired_count").0.number();
        // ECS rounds the floor up: 50 % of one task is still that task.
        let floor = |min: f64| desired.map(|d| (d * min / 100.0).ceil());
        if let Some(min) = min
            .number()
            .filter(|m| *m < 100.0 && floor(*m).zip(desired).is_none_or(|(f, d)| f < d))
        {
            let floor = floor(min);
            let all = floor == Some(0.0) || (desired.is_none() && min == 0.0);
            let (severity, what) = if all {
                (
                    Severity::Error,
                    "ECS may stop every task before its replacement is healthy: nothing answers meanwhile".to_owned(),
                )
            } else {
                (
                    Severity::Warning,
                    match (desired, floor) {
                        (Some(d), Some(f)) => format!(
                            "ECS may stop tasks before their replacements are healthy: the service runs {} of {} tasks meanwhile",
                            fmt_num(f),
                            fmt_num(d)
                        ),
                        _ => "ECS may stop tasks before their replacements are healthy: the service runs below its size meanwhile".to_owned(),
                    },
                )
            };
            found.add(
                "service-min-healthy-below-100",
                severity,
                &at,
                s.address(),
                format!(
                    "deployment_minimum_healthy_percent = {}: when an instance drains (every instance refresh) or a rolling deployment replaces tasks, {what}",
                    fmt_num(min)
                ),
                "set deployment_minimum_healthy_percent = 100 and deployment_maximum_percent = 200, so each replacement starts and turns healthy first",
            );
        }
        let code_deploy =
            s.get("deployment_controller.type").0.string().as_deref() == Some("CODE_DEPLOY");
        if code_deploy {
            let (count, at) = s.get("desired_count");
            let zero = match count {
                Setting::Absent => true,
                ref c => c.number() == Some(0.0),
            };
            if zero {
                found.add(
                    "desired-count-zero",
                    Severity::Error,
                    &at,
                    s.address(),
                    "desired_count is 0 under the CODE_DEPLOY deployment controller: CodeDeploy does not manage the desired count, nothing runs".to_owned(),
                    "set desired_count on the service (at least 2)",
                );
            }
        }
    }
}

/// Failure modes 10-12: the CodeDeploy deployment group.
fn codedeploy(cfg: &Config, found: &mut Findings) {
    for dg in cfg.resources_of("aws_codedeploy_deployment_group") {
        let is_ecs = dg.block.block("ecs_service").is_some();
        let (enabled, at) = dg.get("auto_rollback_configuration.enabled");
        let block_at = dg.location_of("auto_rollback_configuration");
        if dg.block.block("auto_rollback_configuration").is_none() {
            found.add(
                "codedeploy-no-auto-rollback",
                Severity::Error,
                &block_at,
                dg.address(),
                "no auto_rollback_configuration: a failed or stopped deployment leaves the failed release in place".to_owned(),
                "add auto_rollback_configuration { enabled = true, events = [\"DEPLOYMENT_FAILURE\", \"DEPLOYMENT_STOP_ON_ALARM\", \"DEPLOYMENT_STOP_ON_REQUEST\"] }",
            );
        } else if enabled.bool() == Some(false) || !enabled.is_set() {
            found.add(
                "codedeploy-no-auto-rollback",
                Severity::Error,
                &at,
                dg.address(),
                "auto rollback is not enabled: a failed or stopped deployment leaves the failed release in place".to_owned(),
                "set auto_rollback_configuration.enabled = true with the DEPLOYMENT_FAILURE, DEPLOYMENT_STOP_ON_ALARM and DEPLOYMENT_STOP_ON_REQUEST events",
            );
        } else if let (Setting::Known(hcl::Value::Array(events)), at) =
            dg.get("auto_rollback_configuration.events")
        {
            let has = |e: &str| events.iter().any(|v| v.as_str() == Some(e));
            if !has("DEPLOYMENT_FAILURE") {
                found.add(
                    "codedeploy-no-auto-rollback",
                    Severity::Error,
                    &at,
                    dg.address(),
                    "auto rollback does not include DEPLOYMENT_FAILURE: a failed deployment is not rolled back".to_owned(),
                    "add DEPLOYMENT_FAILURE (and DEPLOYMENT_STOP_ON_ALARM, DEPLOYMENT_STOP_ON_REQUEST) to auto_rollback_configuration.events",
                );
            }
            let missing: Vec<&str> = ["DEPLOYMENT_STOP_ON_REQUEST", "DEPLOYMENT_STOP_ON_ALARM"]
                .into_iter()
                .filter(|e| !has(e))
                .collect();
            if has("DEPLOYMENT_FAILURE") && !missing.is_empty() {
                found.add(
                    "codedeploy-no-auto-rollback",
                    Severity::Warning,
                    &at,
                    dg.address(),
                    format!("auto rollback leaves out {}: a deployment stopped by the probe or by an alarm stays half shifted", missing.join(" and ")),
                    "add DEPLOYMENT_STOP_ON_REQUEST and DEPLOYMENT_STOP_ON_ALARM to auto_rollback_configuration.events",
                );
            }
        }

        if is_ecs {
            let (config, at) = dg.get("deployment_config_name");
            if config.string().is_some_and(|c| c.contains("AllAtOnce")) {
                found.add(
                    "all-at-once",
                    Severity::Warning,
                    &at,
                    dg.address(),
                    format!("deployment_config_name = {:?}: every request moves to the new release at once; the probe and the alarms can only roll back after the damage", config.string().unwrap_or_default()),
                    "use a canary or linear configuration (CodeDeployDefault.ECSCanary10Percent5Minutes, CodeDeployDefault.ECSLinear10PercentEvery1Minutes)",
                );
            }
            let pair = dg
                .block
                .block("load_balancer_info")
                .and_then(|l| l.block("target_group_pair_info"));
            if pair.is_none_or(|p| p.block("test_traffic_route").is_none()) {
                found.add(
                    "no-test-listener",
                    Severity::Error,
                    &dg.location_of("load_balancer_info.target_group_pair_info"),
                    dg.address(),
                    "no test_traffic_route: the green task set takes production traffic without ever being tested through the load balancer".to_owned(),
                    "add a test listener (e.g. port 8080) and target_group_pair_info.test_traffic_route { listener_arns = [...] }; validate green in the AppSpec's AfterAllowTestTraffic hook",
                );
            }

            let (action, at) =
                dg.get("blue_green_deployment_config.deployment_ready_option.action_on_timeout");
            if action.string().as_deref() == Some("STOP_DEPLOYMENT") {
                let (wait, _) = dg.get(
                    "blue_green_deployment_config.deployment_ready_option.wait_time_in_minutes",
                );
                let wait_v = match wait {
                    Setting::Absent => Some(0.0),
                    ref w => w.number(),
                };
                if wait_v == Some(0.0) {
                    found.add(
                        "ready-wait-forever",
                        Severity::Error,
                        &at,
                        dg.address(),
                        "action_on_timeout = STOP_DEPLOYMENT with wait_time_in_minutes 0: the deployment waits for a manual ContinueDeployment that has no time to come, and stops".to_owned(),
                        "use action_on_timeout = \"CONTINUE_DEPLOYMENT\" (validate in the AfterAllowTestTraffic hook), or give the ready wait a wait_time_in_minutes and have the pipeline call ContinueDeployment",
                    );
                } else {
                    found.add(
                        "ready-wait-forever",
                        Severity::Warning,
                        &at,
                        dg.address(),
                        format!("action_on_timeout = STOP_DEPLOYMENT: every deployment waits up to {} min for a manual ContinueDeployment; a pipeline that only waits hangs until then", wait_v.map_or("?".to_owned(), fmt_num)),
                        "use action_on_timeout = \"CONTINUE_DEPLOYMENT\", or make sure the pipeline follows the deployment and calls ContinueDeployment when it is Ready",
                    );
                }
            }
        }
    }
}

/// The AppSpec: a validation hook, and a container that exists.
fn appspec(spec: &AppSpec, td: Option<&TaskDefinition>, found: &mut Findings) {
    let has_validation = spec
        .hooks
        .iter()
        .any(|h| h == "AfterAllowTestTraffic" || h == "BeforeAllowTraffic");
    if !has_validation {
        found.add(
            "no-validation-hook",
            Severity::Error,
            &Location {
                file: spec.file.clone(),
                line: spec.hooks_line,
            },
            format!("{} Hooks", file_label(&spec.file)),
            "no AfterAllowTestTraffic (or BeforeAllowTraffic) hook: nothing checks the green task set before it takes production traffic".to_owned(),
            "add Hooks: - AfterAllowTestTraffic: <validation function>, which tests green through the test listener and reports Succeeded or Failed",
        );
    }
    let Some(td) = td else { return };
    if let Some((name, line)) = &spec.container_name {
        let at = Location {
            file: spec.file.clone(),
            line: *line,
        };
        match td.containers.iter().find(|c| &c.name == name) {
            None => found.add(
                "appspec-container-mismatch",
                Severity::Error,
                &at,
                format!("{} TargetService", file_label(&spec.file)),
                format!("ContainerName {name:?} is not a container of {}", td.name),
                "make LoadBalancerInfo.ContainerName the task definition's container that serves traffic",
            ),
            Some(c) => {
                if let Some((port, pline)) = spec.container_port
                    && !c.port_mappings.iter().any(|(cp, _)| *cp == Some(port))
                {
                    found.add(
                        "appspec-container-mismatch",
                        Severity::Error,
                        &Location {
                            file: spec.file.clone(),
                            line: pline,
                        },
                        format!("{} TargetService", file_label(&spec.file)),
                        format!("ContainerPort {} is not a containerPort of container {name:?} in {}", fmt_num(port), td.name),
                        "make LoadBalancerInfo.ContainerPort the container's containerPort",
                    );
                }
            }
        }
    }
}

/// How a JSON/YAML input is named in the resource column: its file name.
fn file_label(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

fn read(path: &Path) -> Result<String, PreflightError> {
    std::fs::read_to_string(path).map_err(|source| PreflightError::Io {
        action: "read",
        path: path.to_path_buf(),
        source,
    })
}

/// The JSON report `--json` writes.
#[derive(Debug, serde::Serialize)]
pub struct Report<'a> {
    /// The Terraform directory read.
    pub terraform: &'a Path,
    /// The task definition file read.
    pub task_definition: &'a Path,
    /// The AppSpec read.
    pub appspec: &'a Path,
    /// Error-level hazards.
    pub errors: usize,
    /// Warnings.
    pub warnings: usize,
    /// Every hazard, errors first.
    pub hazards: &'a [Hazard],
}

/// `orchestrate preflight`: reads the inputs, prints one block per hazard and a summary, writes
/// `--json`. [`crate::Outcome::Failed`] when any hazard is an error.
pub fn run(
    args: &PreflightArgs,
    out: &mut dyn std::io::Write,
) -> Result<crate::Outcome, PreflightError> {
    let root = || -> Result<PathBuf, PreflightError> {
        let cwd = std::env::current_dir().map_err(|source| PreflightError::Io {
            action: "read",
            path: PathBuf::from("."),
            source,
        })?;
        crate::find_repo_root(&cwd).ok_or(PreflightError::NoRepository { cwd })
    };
    let pick = |given: &Option<PathBuf>, default: &str| -> Result<PathBuf, PreflightError> {
        match given {
            Some(p) => Ok(p.clone()),
            None => Ok(root()?.join(default)),
        }
    };
    let tf_dir = pick(&args.terraform, "terraform/envs/dev")?;
    let td_file = pick(&args.task_definition, "codedeploy/taskdef.template.json")?;
    let spec_file = pick(&args.appspec, "codedeploy/appspec.yaml")?;

    let inputs = Inputs {
        terraform: Some(Config::load(&tf_dir)?),
        task_definition: Some(TaskDefinition::from_file(&td_file)?),
        appspec: Some(AppSpec::from_file(&spec_file)?),
    };
    let mut hazards = check(&inputs);
    // Paths under the current directory print relative to it.
    if let Ok(cwd) = std::env::current_dir() {
        for h in &mut hazards {
            if let Ok(rel) = h.file.strip_prefix(&cwd) {
                h.file = rel.to_path_buf();
            }
        }
    }
    let errors = hazards
        .iter()
        .filter(|h| h.severity == Severity::Error)
        .count();
    let warnings = hazards.len() - errors;

    let write_err = |source| PreflightError::Io {
        action: "write",
        path: PathBuf::from("<stdout>"),
        source,
    };
    for h in &hazards {
        writeln!(out, "{h}").map_err(write_err)?;
    }
    writeln!(
        out,
        "preflight: {errors} error{}, {warnings} warning{} in {}, {}, {}",
        if errors == 1 { "" } else { "s" },
        if warnings == 1 { "" } else { "s" },
        tf_dir.display(),
        td_file.display(),
        spec_file.display()
    )
    .map_err(write_err)?;

    if let Some(path) = &args.json {
        let report = Report {
            terraform: &tf_dir,
            task_definition: &td_file,
            appspec: &spec_file,
            errors,
            warnings,
            hazards: &hazards,
        };
        let text = serde_json::to_string_pretty(&report).map_err(|e| PreflightError::Io {
            action: "write",
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        std::fs::write(path, text + "\n").map_err(|source| PreflightError::Io {
            action: "write",
            path: path.clone(),
            source,
        })?;
    }
    Ok(if errors > 0 {
        crate::Outcome::Failed
    } else {
        crate::Outcome::Clean
    })
}

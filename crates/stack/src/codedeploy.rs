//! The stack file's CodeDeploy and CloudWatch parts: applications with their deployment groups
//! (Terraform's `aws_codedeploy_deployment_group`, flattened), custom deployment configs, the
//! functions lifecycle hooks name, and the alarms that stop a deployment.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Stack, name, unique};

/// CodeDeploy's predefined ECS deployment configs (an AWS fact, so the stack's validation and
/// the control plane read one table): name, type, percentage, interval (minutes).
pub const PREDEFINED: [(&str, &str, u32, u32); 5] = [
    ("CodeDeployDefault.ECSAllAtOnce", "AllAtOnce", 0, 0),
    (
        "CodeDeployDefault.ECSCanary10Percent5Minutes",
        "TimeBasedCanary",
        10,
        5,
    ),
    (
        "CodeDeployDefault.ECSCanary10Percent15Minutes",
        "TimeBasedCanary",
        10,
        15,
    ),
    (
        "CodeDeployDefault.ECSLinear10PercentEvery1Minutes",
        "TimeBasedLinear",
        10,
        1,
    ),
    (
        "CodeDeployDefault.ECSLinear10PercentEvery3Minutes",
        "TimeBasedLinear",
        10,
        3,
    ),
];

/// CodeDeploy for ECS.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeDeployConfig {
    /// Applications (compute platform ECS) with their deployment groups.
    #[serde(default)]
    pub applications: Vec<ApplicationConfig>,
    /// Custom deployment configs, beside the predefined `CodeDeployDefault.ECS*` ones.
    #[serde(default)]
    pub deployment_configs: Vec<DeploymentConfigConfig>,
    /// Function name → what runs when a hook invokes it (the stand-in for a Lambda function).
    #[serde(default)]
    pub functions: BTreeMap<String, HookFunction>,
}

/// A CodeDeploy application.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplicationConfig {
    /// Name (`demo-cd-app`).
    pub name: String,
    /// Its deployment groups.
    #[serde(default)]
    pub deployment_groups: Vec<DeploymentGroupConfig>,
}

/// A blue/green deployment group over an ECS service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentGroupConfig {
    /// Name (`demo-dg`).
    pub name: String,
    /// The ECS service (deployment controller `CODE_DEPLOY`).
    pub service: String,
    /// The listener production traffic arrives on.
    pub production_listener: String,
    /// The listener test traffic arrives on (AllowTestTraffic points it at the replacement).
    #[serde(default)]
    pub test_listener: Option<String>,
    /// The two target groups, blue first; they swap roles with every deployment.
    pub target_groups: Vec<String>,
    /// The deployment config used when a deployment names none.
    #[serde(default = "default_config")]
    pub deployment_config: String,
    /// What happens when the replacement is ready: reroute at once, or wait for
    /// `ContinueDeployment`.
    #[serde(default)]
    pub deployment_ready: DeploymentReady,
    /// Minutes (simulated) the original task set stays after traffic moved (0–2880).
    #[serde(default)]
    pub termination_wait_minutes: u32,
    /// Automatic rollback.
    #[serde(default)]
    pub auto_rollback: AutoRollback,
    /// Alarms (names from `[[alarms]]`) that stop the deployment when they fire.
    #[serde(default)]
    pub alarms: Vec<String>,
}

fn default_config() -> String {
    "CodeDeployDefault.ECSAllAtOnce".to_owned()
}

/// `blue_green_deployment_config.deployment_ready_option`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentReady {
    /// `CONTINUE_DEPLOYMENT` (reroute at once) or `STOP_DEPLOYMENT` (wait for
    /// `ContinueDeployment`, stop when the wait runs out).
    #[serde(default = "continue_deployment")]
    pub action_on_timeout: String,
    /// Minutes (simulated) to wait with `STOP_DEPLOYMENT`.
    #[serde(default)]
    pub wait_time_in_minutes: u32,
}

impl Default for DeploymentReady {
    fn default() -> Self {
        Self {
            action_on_timeout: continue_deployment(),
            wait_time_in_minutes: 0,
        }
    }
}

fn continue_deployment() -> String {
    "CONTINUE_DEPLOYMENT".to_owned()
}

/// `auto_rollback_configuration`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoRollback {
    /// Whether it is on.
    #[serde(default)]
    pub enabled: bool,
    /// `DEPLOYMENT_FAILURE`, `DEPLOYMENT_STOP_ON_ALARM`, `DEPLOYMENT_STOP_ON_REQUEST`.
    #[serde(default)]
    pub events: Vec<String>,
}

/// The rollback events AWS knows.
pub const ROLLBACK_EVENTS: [&str; 3] = [
    "DEPLOYMENT_FAILURE",
    "DEPLOYMENT_STOP_ON_ALARM",
    "DEPLOYMENT_STOP_ON_REQUEST",
];

/// A custom deployment config (`CreateDeploymentConfig` can add more at run time).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentConfigConfig {
    /// Name.
    pub name: String,
    /// `AllAtOnce`, `TimeBasedCanary` or `TimeBasedLinear`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Canary: the first step's percentage; linear: every step's.
    #[serde(default)]
    pub percentage: u32,
    /// Minutes (simulated) between steps.
    #[serde(default)]
    pub interval: u32,
}

/// What a hook's function runs: a local HTTP endpoint (`POST` of the Lambda-style event) or a
/// command (the event on standard input).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookFunction {
    /// `http://127.0.0.1:PORT/path` (loopback only).
    #[serde(default)]
    pub url: Option<String>,
    /// Program and arguments.
    #[serde(default)]
    pub command: Option<Vec<String>>,
}

/// A CloudWatch-like metric alarm on a target group, evaluated every `period` simulated seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlarmConfig {
    /// Name.
    pub name: String,
    /// `HTTPCode_Target_5XX_Count` (Sum), `HTTPCode_ELB_5XX_Count` (Sum) or
    /// `UnHealthyHostCount` (Maximum).
    pub metric: String,
    /// The target group (its `TargetGroup` dimension).
    pub target_group: String,
    /// `GreaterThanThreshold`.
    #[serde(default)]
    pub threshold: f64,
    /// Seconds (simulated), a multiple of 60 as for standard-resolution metrics.
    #[serde(default = "sixty")]
    pub period: u32,
    /// Consecutive breaching periods before `ALARM`.
    #[serde(default = "one")]
    pub evaluation_periods: u32,
}

fn sixty() -> u32 {
    60
}

fn one() -> u32 {
    1
}

/// The alarm metrics localaws measures.
pub const ALARM_METRICS: [&str; 3] = [
    "HTTPCode_Target_5XX_Count",
    "HTTPCode_ELB_5XX_Count",
    "UnHealthyHostCount",
];

impl Stack {
    #[expect(
        clippy::too_many_lines,
        reason = "one check after another over each application and deployment group, in field order"
    )]
    pub(super) fn validate_codedeploy(&self) -> Result<(), (String, String)> {
        let err = |field: String, message: &str| Err((field, message.to_owned()));
        self.validate_alarms()?;
        let Some(cd) = &self.codedeploy else {
            return Ok(());
        };
        validate_deployment_configs(cd)?;
        let configs: Vec<&str> = PREDEFINED
            .iter()
            .map(|(n, ..)| *n)
            .chain(cd.deployment_configs.iter().map(|c| c.name.as_str()))
            .collect();
        validate_functions(cd)?;
        let mut services = Vec::new();
        for (i, app) in cd.applications.iter().enumerate() {
            let at = format!("codedeploy.applications[{i}]");
            name(&format!("{at}.name"), &app.name)?;
            unique(
                app.deployment_groups.iter().map(|g| g.name.as_str()),
                &format!("{at}.deployment_groups"),
            )?;
            for (j, g) in app.deployment_groups.iter().enumerate() {
                let at = format!("{at}.deployment_groups[{j}]");
                name(&format!("{at}.name"), &g.name)?;
                let Some(svc) = self.services.iter().find(|s| s.name == g.service) else {
                    return err(format!("{at}.service"), "no service of that name");
                };
                if svc.deployment_controller != "CODE_DEPLOY" {
                    return err(
                        format!("{at}.service"),
                        "the service's deployment_controller must be CODE_DEPLOY",
                    );
                }
                if services.contains(&g.service) {
                    return err(
                        format!("{at}.service"),
                        "another deployment group already deploys this service",
                    );
                }
                services.push(g.service.clone());
                let listener = |n: &str| {
                    self.load_balancers
                        .iter()
                        .flat_map(|l| &l.listeners)
                        .any(|l| l.name == n)
                };
                if !listener(&g.production_listener) {
                    return err(
                        format!("{at}.production_listener"),
                        "no listener of that name",
                    );
                }
                if let Some(t) = &g.test_listener
                    && (!listener(t) || *t == g.production_listener)
                {
                    return err(
                        format!("{at}.test_listener"),
                        "expected another listener's name",
                    );
                }
                if g.target_groups.len() != 2
                    || g.target_groups[0] == g.target_groups[1]
                    || g.target_groups
                        .iter()
                        .any(|t| self.target_group(t).is_none())
                {
                    return err(
                        format!("{at}.target_groups"),
                        "expected two different target groups' names, blue first",
                    );
                }
                if svc
                    .load_balancer
                    .as_ref()
                    .is_none_or(|lb| !g.target_groups.contains(&lb.target_group))
                {
                    return err(
                        format!("{at}.target_groups"),
                        "the service's load_balancer.target_group must be one of them",
                    );
                }
                if !configs.contains(&g.deployment_config.as_str()) {
                    return err(
                        format!("{at}.deployment_config"),
                        "no deployment config of that name (predefined CodeDeployDefault.ECS* or codedeploy.deployment_configs)",
                    );
                }
                match g.deployment_ready.action_on_timeout.as_str() {
                    "CONTINUE_DEPLOYMENT" | "STOP_DEPLOYMENT" => {}
                    _ => {
                        return err(
                            format!("{at}.deployment_ready.action_on_timeout"),
                            "expected CONTINUE_DEPLOYMENT or STOP_DEPLOYMENT",
                        );
                    }
                }
                if g.deployment_ready.wait_time_in_minutes > 2880 {
                    return err(
                        format!("{at}.deployment_ready.wait_time_in_minutes"),
                        "expected 0 to 2880 minutes",
                    );
                }
                if g.termination_wait_minutes > 2880 {
                    return err(
                        format!("{at}.termination_wait_minutes"),
                        "expected 0 to 2880 minutes",
                    );
                }
                for (k, e) in g.auto_rollback.events.iter().enumerate() {
                    if !ROLLBACK_EVENTS.contains(&e.as_str()) {
                        return err(
                            format!("{at}.auto_rollback.events[{k}]"),
                            "expected DEPLOYMENT_FAILURE, DEPLOYMENT_STOP_ON_ALARM or DEPLOYMENT_STOP_ON_REQUEST",
                        );
                    }
                }
                for (k, a) in g.alarms.iter().enumerate() {
                    if !self.alarms.iter().any(|x| &x.name == a) {
                        return err(
                            format!("{at}.alarms[{k}]"),
                            "no alarm of that name in [[alarms]]",
                        );
                    }
                }
            }
        }
        Ok(())
    }

    /// The alarms: unique names, a metric localaws measures, an existing target group,
    /// CloudWatch's ranges.
    fn validate_alarms(&self) -> Result<(), (String, String)> {
        let err = |field: String, message: &str| Err((field, message.to_owned()));
        unique(self.alarms.iter().map(|a| a.name.as_str()), "alarms")?;
        for (i, a) in self.alarms.iter().enumerate() {
            let at = format!("alarms[{i}]");
            name(&format!("{at}.name"), &a.name)?;
            if !ALARM_METRICS.contains(&a.metric.as_str()) {
                return err(
                    format!("{at}.metric"),
                    "expected HTTPCode_Target_5XX_Count, HTTPCode_ELB_5XX_Count or UnHealthyHostCount",
                );
            }
            if self.target_group(&a.target_group).is_none() {
                return err(format!("{at}.target_group"), "no target group of that name");
            }
            if !(a.threshold.is_finite() && a.threshold >= 0.0) {
                return err(format!("{at}.threshold"), "expected a number from 0");
            }
            if a.period == 0 || a.period % 60 != 0 || a.period > 86_400 {
                return err(
                    format!("{at}.period"),
                    "expected a multiple of 60 seconds up to 86400",
                );
            }
            if !(1..=100).contains(&a.evaluation_periods) {
                return err(format!("{at}.evaluation_periods"), "expected 1 to 100");
            }
        }
        Ok(())
    }
}

/// Checks a traffic-routing config as `CreateDeploymentConfig` does.
pub fn validate_traffic(kind: &str, percentage: u32, interval: u32) -> Result<(), String> {
    match kind {
        "AllAtOnce" => Ok(()),
        "TimeBasedCanary" | "TimeBasedLinear" => {
            if !(1..=99).contains(&percentage) {
                return Err(format!("{kind}: percentage {percentage} must be 1 to 99"));
            }
            if !(1..=2880).contains(&interval) {
                return Err(format!(
                    "{kind}: interval {interval} must be 1 to 2880 minutes"
                ));
            }
            Ok(())
        }
        other => Err(format!(
            "unknown traffic routing type {other:?}: expected AllAtOnce, TimeBasedCanary or TimeBasedLinear"
        )),
    }
}

/// Accepts `http://<loopback>:<port>/...` only: localaws never leaves the machine.
pub fn loopback_url(url: &str) -> Result<(), String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("invalid URL {url:?}: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!("{url:?}: expected an http:// URL"));
    }
    let host = uri.host().unwrap_or_default();
    let ip: Option<std::net::IpAddr> = host.trim_matches(['[', ']']).parse().ok();
    if !(host == "localhost" || ip.is_some_and(|ip| ip.is_loopback())) {
        return Err(format!(
            "{url:?}: expected a loopback host (127.0.0.0/8, ::1 or localhost)"
        ));
    }
    Ok(())
}

/// Unique application and config names; custom configs not under CodeDeploy's reserved prefix,
/// with valid traffic.
fn validate_deployment_configs(cd: &CodeDeployConfig) -> Result<(), (String, String)> {
    let err = |field: String, message: &str| Err((field, message.to_owned()));
    unique(
        cd.applications.iter().map(|a| a.name.as_str()),
        "codedeploy.applications",
    )?;
    unique(
        cd.deployment_configs.iter().map(|c| c.name.as_str()),
        "codedeploy.deployment_configs",
    )?;
    for (i, c) in cd.deployment_configs.iter().enumerate() {
        let at = format!("codedeploy.deployment_configs[{i}]");
        name(&format!("{at}.name"), &c.name)?;
        if c.name.starts_with("CodeDeployDefault.") {
            return err(
                format!("{at}.name"),
                "the CodeDeployDefault. prefix is reserved for predefined configs",
            );
        }
        validate_traffic(&c.kind, c.percentage, c.interval)
            .map_err(|m| (format!("{at}.type"), m))?;
    }
    Ok(())
}

/// Hook functions: exactly one of a loopback URL or a command.
fn validate_functions(cd: &CodeDeployConfig) -> Result<(), (String, String)> {
    let err = |field: String, message: &str| Err((field, message.to_owned()));
    for (f, func) in &cd.functions {
        let at = format!("codedeploy.functions.{f}");
        name(&at, f)?;
        match (&func.url, &func.command) {
            (Some(url), None) => {
                loopback_url(url).map_err(|m| (format!("{at}.url"), m))?;
            }
            (None, Some(cmd)) if !cmd.is_empty() && cmd.iter().all(|a| !a.contains('\0')) => {}
            _ => {
                return err(
                    at,
                    "expected exactly one of url = \"http://127.0.0.1:PORT/path\" or command = [program, args...]",
                );
            }
        }
    }
    Ok(())
}

//! CodeDeploy's and CloudWatch's state: applications, deployment groups and configs, deployments
//! with their lifecycle events and hook runs, the AppSpec.

use std::collections::BTreeMap;
use std::time::SystemTime;

use tokio::time::Instant;

use super::alarms::Alarm;
use crate::control::ControlError;
use stack::DeploymentGroupConfig;

/// The ECS lifecycle events, in order.
pub const LIFECYCLE: [&str; 8] = [
    "BeforeInstall",
    "Install",
    "AfterInstall",
    "AllowTestTraffic",
    "AfterAllowTestTraffic",
    "BeforeAllowTraffic",
    "AllowTraffic",
    "AfterAllowTraffic",
];

/// The events an AppSpec may hook.
pub const HOOKABLE: [&str; 5] = [
    "BeforeInstall",
    "AfterInstall",
    "AfterAllowTestTraffic",
    "BeforeAllowTraffic",
    "AfterAllowTraffic",
];

/// How long a hook may take before its event fails (simulated, as AWS: one hour).
pub const HOOK_TIMEOUT_SECS: u32 = 3600;
/// How long the replacement task set may take to become healthy (simulated).
pub const INSTALL_TIMEOUT_SECS: u32 = 3600;

/// A deployment config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentConfig {
    /// Name.
    pub name: String,
    /// Id (UUID).
    pub id: String,
    /// How traffic moves.
    pub traffic: Traffic,
    /// Creation time.
    pub created: SystemTime,
}

/// How production traffic moves to the replacement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Traffic {
    /// All at once.
    AllAtOnce,
    /// `percent`, then the rest after `minutes`.
    Canary {
        /// First step.
        percent: u32,
        /// Minutes (simulated) before the rest.
        minutes: u32,
    },
    /// `percent` more every `minutes`.
    Linear {
        /// Every step.
        percent: u32,
        /// Minutes (simulated) between steps.
        minutes: u32,
    },
}

impl Traffic {
    /// From the API's/stack's type name, percentage and interval.
    pub fn parse(kind: &str, percent: u32, minutes: u32) -> Result<Self, String> {
        stack::validate_traffic(kind, percent, minutes)?;
        Ok(match kind {
            "TimeBasedCanary" => Self::Canary { percent, minutes },
            "TimeBasedLinear" => Self::Linear { percent, minutes },
            _ => Self::AllAtOnce,
        })
    }

    /// The type name.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::AllAtOnce => "AllAtOnce",
            Self::Canary { .. } => "TimeBasedCanary",
            Self::Linear { .. } => "TimeBasedLinear",
        }
    }

    /// The replacement's weight after `current` once a step is due (the first step from 0).
    pub fn next(&self, current: u32) -> u32 {
        match *self {
            Self::AllAtOnce => 100,
            Self::Canary { percent, .. } => {
                if current == 0 {
                    percent
                } else {
                    100
                }
            }
            Self::Linear { percent, .. } => (current + percent).min(100),
        }
    }

    /// Minutes between steps.
    pub fn interval(&self) -> u32 {
        match *self {
            Self::AllAtOnce => 0,
            Self::Canary { minutes, .. } | Self::Linear { minutes, .. } => minutes,
        }
    }
}

/// A CodeDeploy application.
#[derive(Debug, Clone)]
pub struct Application {
    /// Name.
    pub name: String,
    /// Id (UUID).
    pub id: String,
    /// Creation time.
    pub created: SystemTime,
    /// Deployment groups by name.
    pub groups: BTreeMap<String, DeploymentGroup>,
}

/// A deployment group.
#[derive(Debug, Clone)]
pub struct DeploymentGroup {
    /// Id (UUID).
    pub id: String,
    /// The stack's settings.
    pub config: DeploymentGroupConfig,
    /// The last deployment attempted: id, status, creation time.
    pub last_attempted: Option<(String, &'static str, SystemTime)>,
    /// The last deployment that succeeded.
    pub last_succeeded: Option<(String, &'static str, SystemTime)>,
}

/// What the AppSpec asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSpec {
    /// `TargetService.Properties.TaskDefinition`.
    pub task_definition: String,
    /// `LoadBalancerInfo.ContainerName`.
    pub container_name: String,
    /// `LoadBalancerInfo.ContainerPort`.
    pub container_port: u16,
    /// `Hooks`: event name → function name.
    pub hooks: Vec<(String, String)>,
}

impl AppSpec {
    /// Parses an AppSpec (YAML or JSON).
    pub fn parse(content: &str) -> Result<Self, String> {
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(content)
            .map_err(|e| format!("the AppSpec is not valid YAML or JSON: {e}"))?;
        let resources = v
            .get("Resources")
            .and_then(|r| r.as_sequence())
            .ok_or("the AppSpec has no Resources list")?;
        let service = resources
            .iter()
            .filter_map(|r| r.as_mapping())
            .flat_map(|m| m.values())
            .find(|r| r.get("Type").and_then(|t| t.as_str()) == Some("AWS::ECS::Service"))
            .ok_or("the AppSpec's Resources name no AWS::ECS::Service")?;
        let props = service
            .get("Properties")
            .ok_or("the ECS service resource has no Properties")?;
        let task_definition = props
            .get("TaskDefinition")
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .ok_or("Properties.TaskDefinition is required")?
            .to_owned();
        let lb = props
            .get("LoadBalancerInfo")
            .ok_or("Properties.LoadBalancerInfo is required")?;
        let container_name = lb
            .get("ContainerName")
            .and_then(|t| t.as_str())
            .ok_or("LoadBalancerInfo.ContainerName is required")?
            .to_owned();
        let container_port = lb
            .get("ContainerPort")
            .and_then(|p| {
                p.as_u64()
                    .or_else(|| p.as_str().and_then(|s| s.parse().ok()))
            })
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p > 0)
            .ok_or("LoadBalancerInfo.ContainerPort must be a port number")?;
        let mut hooks = Vec::new();
        if let Some(list) = v.get("Hooks") {
            let list = list.as_sequence().ok_or("Hooks must be a list")?;
            for h in list {
                let m = h
                    .as_mapping()
                    .ok_or("each hook must be `Event: function`")?;
                for (k, f) in m {
                    let (Some(k), Some(f)) = (k.as_str(), f.as_str()) else {
                        return Err("each hook must be `Event: function`".into());
                    };
                    if !HOOKABLE.contains(&k) {
                        return Err(format!(
                            "unknown hook event {k:?}: expected one of {}",
                            HOOKABLE.join(", ")
                        ));
                    }
                    if hooks.iter().any(|(e, _)| e == k) {
                        return Err(format!("hook event {k} is listed twice"));
                    }
                    hooks.push((k.to_owned(), f.to_owned()));
                }
            }
        }
        Ok(Self {
            task_definition,
            container_name,
            container_port,
            hooks,
        })
    }
}

/// One lifecycle event of a deployment.
#[derive(Debug, Clone)]
pub struct LifecycleEvent {
    /// `BeforeInstall`, `Install`, ...
    pub name: &'static str,
    /// `Pending`, `InProgress`, `Succeeded`, `Failed`, `Skipped`.
    pub status: &'static str,
    /// Started.
    pub start: Option<SystemTime>,
    /// Ended.
    pub end: Option<SystemTime>,
    /// Error code and message when it failed.
    pub diagnostics: Option<(String, String)>,
}

/// A hook invocation waiting for its status.
#[derive(Debug, Clone)]
pub struct HookRun {
    /// `LifecycleEventHookExecutionId`.
    pub execution_id: String,
    /// The function invoked.
    pub function: String,
    /// `Pending` until reported, then `Succeeded` or `Failed`.
    pub status: &'static str,
    /// Why it failed, when the invocation itself did.
    pub error: Option<String>,
    /// When it times out (real).
    pub deadline: Instant,
}

/// Where a deployment is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Working on lifecycle event `i`.
    Event(usize),
    /// Waiting for `ContinueDeployment` (status `Ready`).
    ReadyWait,
    /// Traffic moved; the original task set stays for the termination wait (status `Baking`).
    TerminationWait,
    /// The original task set is being stopped.
    Terminating,
    /// Rolling back: the replacement task set is being removed.
    RollingBack,
    /// Finished.
    Done,
}

/// Information about a rollback, as `rollbackInfo` reports it.
#[derive(Debug, Clone)]
pub struct RollbackInfo {
    /// The rollback deployment, on the deployment rolled back.
    pub rollback_deployment_id: Option<String>,
    /// The deployment rolled back, on the rollback deployment.
    pub rollback_triggering_deployment_id: Option<String>,
    /// What happened.
    pub message: String,
}

/// A deployment.
#[derive(Debug, Clone)]
pub struct Deployment {
    /// `d-` and 9 characters.
    pub id: String,
    /// Application name.
    pub application: String,
    /// Deployment group name.
    pub group: String,
    /// Deployment config name.
    pub config: String,
    /// How traffic moves.
    pub traffic: Traffic,
    /// `Created`, `InProgress`, `Ready`, `Baking`, `Succeeded`, `Failed`, `Stopped`.
    pub status: &'static str,
    /// `user` or `autoRollback`.
    pub creator: &'static str,
    /// Description.
    pub description: Option<String>,
    /// The AppSpec as given, and as parsed.
    pub appspec_content: String,
    /// The parsed AppSpec.
    pub appspec: AppSpec,
    /// Created.
    pub created: SystemTime,
    /// Completed.
    pub completed: Option<SystemTime>,
    /// Error code and message.
    pub error: Option<(String, String)>,
    /// Lifecycle events.
    pub events: Vec<LifecycleEvent>,
    /// Where it is.
    pub phase: Phase,
    /// Since when (real).
    pub phase_since: Instant,
    /// The hook running for the current event.
    pub hook: Option<HookRun>,
    /// The service.
    pub service: String,
    /// The original (blue) task set and its target group.
    pub original: Option<(String, String)>,
    /// The replacement (green) task set and its target group.
    pub replacement: Option<(String, String)>,
    /// The replacement's share of production traffic, 0–100.
    pub weight: u32,
    /// Rollback information.
    pub rollback: Option<RollbackInfo>,
    /// `ContinueDeployment` skipped the termination wait.
    pub skip_termination_wait: bool,
    /// The status to end in after a rollback (`Stopped` or `Failed`).
    pub ends_as: &'static str,
    /// Last change.
    pub updated: SystemTime,
}

impl Deployment {
    /// Still running: blocks another deployment to its group.
    pub fn is_active(&self) -> bool {
        matches!(
            self.status,
            "Created" | "Queued" | "InProgress" | "Ready" | "Baking"
        )
    }

    /// The ECS target id CodeDeploy reports: `cluster:service`.
    pub fn target_id(&self, cluster: &str) -> String {
        format!("{cluster}:{}", self.service)
    }
}
/// Everything CodeDeploy and CloudWatch know.
#[derive(Debug, Default)]
pub struct CodeDeployState {
    /// Applications by name.
    pub applications: BTreeMap<String, Application>,
    /// Deployment configs by name (predefined and custom).
    pub configs: BTreeMap<String, DeploymentConfig>,
    /// Deployments, oldest first (the most recent [`KEEP_DEPLOYMENTS`]).
    pub deployments: Vec<Deployment>,
    /// Alarms, in stack order.
    pub alarms: Vec<Alarm>,
}

/// Deployments kept for `GetDeployment`/`ListDeployments`.
pub const KEEP_DEPLOYMENTS: usize = 500;

impl CodeDeployState {
    /// The deployment with `id`.
    pub fn deployment(&self, id: &str) -> Result<&Deployment, ControlError> {
        self.deployments
            .iter()
            .find(|d| d.id == id)
            .ok_or_else(|| ControlError::not_found("deployment", id))
    }

    pub(super) fn deployment_mut(&mut self, id: &str) -> Result<&mut Deployment, ControlError> {
        self.deployments
            .iter_mut()
            .find(|d| d.id == id)
            .ok_or_else(|| ControlError::not_found("deployment", id))
    }

    /// The application called `name`.
    pub fn application(&self, name: &str) -> Result<&Application, ControlError> {
        self.applications
            .get(name)
            .ok_or_else(|| ControlError::not_found("application", name))
    }

    /// The deployment group `group` of `app`.
    pub fn group(&self, app: &str, group: &str) -> Result<&DeploymentGroup, ControlError> {
        self.application(app)?
            .groups
            .get(group)
            .ok_or_else(|| ControlError::not_found("deployment group", group))
    }

    /// The deployment config called `name`.
    pub fn config(&self, name: &str) -> Result<&DeploymentConfig, ControlError> {
        self.configs
            .get(name)
            .ok_or_else(|| ControlError::not_found("deployment config", name))
    }
}
/// What `CreateDeployment` asks.
#[derive(Debug, Clone)]
pub struct NewDeployment {
    /// Application name.
    pub application: String,
    /// Deployment group name.
    pub group: String,
    /// Deployment config (the group's when `None`).
    pub config: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// The AppSpec text.
    pub appspec: String,
}

/// Why a deployment stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopCause {
    /// A lifecycle event failed.
    Failure,
    /// `StopDeployment`.
    Request,
    /// An alarm fired.
    Alarm,
    /// The ready wait ran out with `STOP_DEPLOYMENT`.
    ReadyTimeout,
}

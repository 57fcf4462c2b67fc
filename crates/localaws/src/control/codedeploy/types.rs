//! CodeDeploy's and CloudWatch's state: applications, deployment groups and configs, deployments
//! with their lifecycle events and hook runs (the AppSpec is `stack`'s).

use std::collections::BTreeMap;
use std::fmt;
use std::time::SystemTime;

use tokio::time::Instant;

use super::alarms::Alarm;
use crate::control::ControlError;
use stack::{AppSpec, DeploymentGroupConfig, LifecycleEventName};

/// A deployment's status (`DeploymentStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeploymentStatus {
    /// Accepted, not started.
    Created,
    /// Waiting behind another deployment (never entered here: a second deployment to a group
    /// is refused instead, as CodeDeploy does for ECS).
    Queued,
    /// Working through the lifecycle events.
    InProgress,
    /// Traffic moved; the original task set waits out the termination wait.
    Baking,
    /// Waiting for `ContinueDeployment`.
    Ready,
    /// Done.
    Succeeded,
    /// A lifecycle event failed.
    Failed,
    /// Stopped by a user, an alarm or the ready wait.
    Stopped,
}

impl DeploymentStatus {
    /// Every status.
    pub(crate) const ALL: [Self; 8] = [
        Self::Created,
        Self::Queued,
        Self::InProgress,
        Self::Baking,
        Self::Ready,
        Self::Succeeded,
        Self::Failed,
        Self::Stopped,
    ];

    /// As CodeDeploy writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "Created",
            Self::Queued => "Queued",
            Self::InProgress => "InProgress",
            Self::Baking => "Baking",
            Self::Ready => "Ready",
            Self::Succeeded => "Succeeded",
            Self::Failed => "Failed",
            Self::Stopped => "Stopped",
        }
    }

    /// The status called `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Still running: blocks another deployment to its group.
    pub(crate) fn is_active(self) -> bool {
        !self.is_final()
    }

    /// Over for good.
    pub(crate) fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Stopped)
    }

    /// The status of the deployment's ECS target (`ECSTarget.status`, a `TargetStatus`).
    pub(crate) fn target_status(self) -> &'static str {
        match self {
            Self::Created | Self::Queued => "Pending",
            Self::InProgress | Self::Baking => "InProgress",
            Self::Ready => "Ready",
            Self::Succeeded => "Succeeded",
            Self::Failed => "Failed",
            Self::Stopped => "Skipped",
        }
    }
}

impl fmt::Display for DeploymentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A lifecycle event's status, and a hook run's (`LifecycleEventStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventStatus {
    /// Not started (a hook: not reported yet).
    Pending,
    /// Running.
    InProgress,
    /// Done.
    Succeeded,
    /// Failed.
    Failed,
    /// Not run: the deployment stopped first.
    Skipped,
}

impl EventStatus {
    /// As CodeDeploy writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::InProgress => "InProgress",
            Self::Succeeded => "Succeeded",
            Self::Failed => "Failed",
            Self::Skipped => "Skipped",
        }
    }
}

impl fmt::Display for EventStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a hook function reports (`PutLifecycleEventHookExecutionStatus`): of the lifecycle
/// statuses, the only two the call takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookOutcome {
    /// `Succeeded`.
    Succeeded,
    /// `Failed`.
    Failed,
}

impl HookOutcome {
    /// The status the hook run takes.
    pub fn status(self) -> EventStatus {
        match self {
            Self::Succeeded => EventStatus::Succeeded,
            Self::Failed => EventStatus::Failed,
        }
    }
}

/// Who created a deployment (`DeploymentCreator`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Creator {
    /// `CreateDeployment` (`user`).
    User,
    /// An automatic rollback (`codeDeployRollback`).
    Rollback,
}

impl Creator {
    /// As CodeDeploy writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Rollback => "codeDeployRollback",
        }
    }
}

/// Which wait `ContinueDeployment` ends (`deploymentWaitType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitType {
    /// `READY_WAIT`: the wait for `ContinueDeployment` before production traffic moves.
    Ready,
    /// `TERMINATION_WAIT`: the original task set's wait before it is stopped.
    Termination,
}

impl WaitType {
    /// From the API's name.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "READY_WAIT" => Some(Self::Ready),
            "TERMINATION_WAIT" => Some(Self::Termination),
            _ => None,
        }
    }

    /// As the API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "READY_WAIT",
            Self::Termination => "TERMINATION_WAIT",
        }
    }
}

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
    pub last_attempted: Option<(String, DeploymentStatus, SystemTime)>,
    /// The last deployment that succeeded.
    pub last_succeeded: Option<(String, DeploymentStatus, SystemTime)>,
}

/// One lifecycle event of a deployment.
#[derive(Debug, Clone)]
pub struct LifecycleEvent {
    /// Which.
    pub name: LifecycleEventName,
    /// Where it is.
    pub status: EventStatus,
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
    pub status: EventStatus,
    /// Why it failed, when the invocation itself did.
    pub error: Option<String>,
    /// When it times out (real).
    pub deadline: Instant,
}

/// Where a deployment is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Working on a lifecycle event.
    Event(LifecycleEventName),
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
    /// Where it is.
    pub status: DeploymentStatus,
    /// Who created it.
    pub creator: Creator,
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
    pub ends_as: DeploymentStatus,
    /// Last change.
    pub updated: SystemTime,
}

impl Deployment {
    /// Still running: blocks another deployment to its group.
    pub fn is_active(&self) -> bool {
        self.status.is_active()
    }

    /// The lifecycle event `step`.
    pub(crate) fn event(&self, step: LifecycleEventName) -> Option<&LifecycleEvent> {
        self.events.iter().find(|e| e.name == step)
    }

    pub(super) fn event_mut(&mut self, step: LifecycleEventName) -> Option<&mut LifecycleEvent> {
        self.events.iter_mut().find(|e| e.name == step)
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

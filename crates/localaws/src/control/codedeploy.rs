//! CodeDeploy for ECS: blue/green deployments of a `CODE_DEPLOY` service with real effects.
//!
//! A deployment walks ECS's lifecycle: `BeforeInstall` → `Install` (a replacement task set in the
//! other target group, until all its tasks are healthy) → `AfterInstall` → `AllowTestTraffic`
//! (the test listener to the replacement) → `AfterAllowTestTraffic` → (the ready wait, status
//! `Ready`, when the group waits for `ContinueDeployment`) → `BeforeAllowTraffic` →
//! `AllowTraffic` (the production listener's weights moved by the deployment config's steps on
//! the scaled clock) → `AfterAllowTraffic` → the termination wait (status `Baking`; the
//! replacement is the service's primary task set now) → the original task set stopped the ECS
//! way → `Succeeded`. Blue and green swap roles for the next deployment.
//!
//! Hooks invoke the function the stack maps their name to (a local URL or a command) with a
//! Lambda-style event, then wait for `PutLifecycleEventHookExecutionStatus` or one simulated hour.
//! A failure, a stop request or an alarm rolls back when the group says so: production back to
//! the original target group at once, the replacement task set removed, and a rollback
//! deployment (creator `autoRollback`) recorded, as AWS does.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::ecs::new_task_set;
use super::{Action, Control, ControlError, Ctx, State, uuid, wall};
use stack::{
    AlarmConfig, DeploymentGroupConfig, HookFunction, PREDEFINED, ServiceLoadBalancer,
    WeightedTargetGroup,
};

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

/// A CloudWatch-like alarm.
#[derive(Debug, Clone)]
pub struct Alarm {
    /// Its settings.
    pub config: AlarmConfig,
    /// `INSUFFICIENT_DATA`, `OK` or `ALARM`.
    pub state: &'static str,
    /// Why.
    pub reason: String,
    /// When the state last changed.
    pub updated: SystemTime,
    /// Consecutive breaching periods.
    breaching: u32,
    /// Current period's start (real).
    period_start: Instant,
    /// The counter's value when the period started.
    counter_start: u64,
    /// Largest sample this period (gauges).
    gauge_max: u64,
    /// Whether the period under way already breaches the threshold (it will be evaluated at
    /// its end).
    pending: bool,
}

impl Alarm {
    /// Neither in `ALARM` nor about to be: a deployment created now is not stopped by an
    /// earlier breach (a target that was unhealthy for a moment while the fleet came up).
    pub fn quiet(&self) -> bool {
        self.state != "ALARM" && !self.pending
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

    fn deployment_mut(&mut self, id: &str) -> Result<&mut Deployment, ControlError> {
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

pub(super) fn load(state: &mut State, stack: &stack::Stack) {
    let cd = &mut state.codedeploy;
    for (name, kind, percent, minutes) in PREDEFINED {
        if let Ok(traffic) = Traffic::parse(kind, percent, minutes) {
            cd.configs.insert(
                name.to_owned(),
                DeploymentConfig {
                    name: name.to_owned(),
                    id: uuid(),
                    traffic,
                    created: SystemTime::UNIX_EPOCH,
                },
            );
        }
    }
    let now = Instant::now();
    for a in &stack.alarms {
        cd.alarms.push(Alarm {
            config: a.clone(),
            state: "INSUFFICIENT_DATA",
            reason: "Unchecked: Initial alarm creation".into(),
            updated: wall(),
            breaching: 0,
            period_start: now,
            counter_start: 0,
            gauge_max: 0,
            pending: false,
        });
    }
    let Some(c) = &stack.codedeploy else {
        return;
    };
    for dc in &c.deployment_configs {
        if let Ok(traffic) = Traffic::parse(&dc.kind, dc.percentage, dc.interval) {
            cd.configs.insert(
                dc.name.clone(),
                DeploymentConfig {
                    name: dc.name.clone(),
                    id: uuid(),
                    traffic,
                    created: wall(),
                },
            );
        }
    }
    for app in &c.applications {
        cd.applications.insert(
            app.name.clone(),
            Application {
                name: app.name.clone(),
                id: uuid(),
                created: wall(),
                groups: app
                    .deployment_groups
                    .iter()
                    .map(|g| {
                        (
                            g.name.clone(),
                            DeploymentGroup {
                                id: uuid(),
                                config: g.clone(),
                                last_attempted: None,
                                last_succeeded: None,
                            },
                        )
                    })
                    .collect(),
            },
        );
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

impl Control {
    /// `CreateDeploymentConfig`.
    pub fn create_deployment_config(
        &self,
        name: &str,
        traffic: Traffic,
    ) -> Result<DeploymentConfig, ControlError> {
        self.write(|st, _| {
            if st.codedeploy.configs.contains_key(name) {
                return Err(ControlError::Conflict {
                    code: "DeploymentConfigAlreadyExistsException",
                    message: format!("Deployment config {name} already exists"),
                });
            }
            let dc = DeploymentConfig {
                name: name.to_owned(),
                id: uuid(),
                traffic,
                created: wall(),
            };
            st.codedeploy.configs.insert(name.to_owned(), dc.clone());
            Ok(dc)
        })
    }

    /// `CreateDeployment`: refused while the group has an active deployment.
    pub fn create_deployment(&self, req: &NewDeployment) -> Result<String, ControlError> {
        let appspec = AppSpec::parse(&req.appspec).map_err(|m| ControlError::Conflict {
            code: "InvalidRevisionException",
            message: m,
        })?;
        self.write(|st, c| {
            let group = st.codedeploy.group(&req.application, &req.group)?.clone();
            let config = req
                .config
                .clone()
                .unwrap_or_else(|| group.config.deployment_config.clone());
            let traffic = st.codedeploy.config(&config)?.traffic;
            if let Some(active) =
                st.codedeploy.deployments.iter().find(|d| {
                    d.application == req.application && d.group == req.group && d.is_active()
                })
            {
                return Err(ControlError::Conflict {
                    code: "DeploymentLimitExceededException",
                    message: format!(
                        "The Deployment Group '{}' already has an active Deployment '{}'",
                        req.group, active.id
                    ),
                });
            }
            let id = deployment_id();
            let d = Deployment {
                id: id.clone(),
                application: req.application.clone(),
                group: req.group.clone(),
                config,
                traffic,
                status: "Created",
                creator: "user",
                description: req.description.clone(),
                appspec_content: req.appspec.clone(),
                appspec,
                created: wall(),
                completed: None,
                error: None,
                events: fresh_events(),
                phase: Phase::Event(0),
                phase_since: Instant::now(),
                hook: None,
                service: group.config.service,
                original: None,
                replacement: None,
                weight: 0,
                rollback: None,
                skip_termination_wait: false,
                ends_as: "Stopped",
                updated: wall(),
            };
            c.events().emit(
                "codedeploy",
                format!(
                    "deployment {id} created ({}, {}) in {}/{}",
                    d.config, d.appspec.task_definition, req.application, req.group
                ),
            );
            record_attempt(st, &d);
            st.codedeploy.deployments.push(d);
            if st.codedeploy.deployments.len() > KEEP_DEPLOYMENTS
                && let Some(i) = st
                    .codedeploy
                    .deployments
                    .iter()
                    .position(|d| !d.is_active())
            {
                st.codedeploy.deployments.remove(i);
            }
            Ok(id)
        })
    }

    /// `StopDeployment`: stops an active deployment; rolls back when asked (and the group's
    /// rollback on stop request allows it). Returns the status and its message.
    pub fn stop_deployment(
        &self,
        id: &str,
        auto_rollback: Option<bool>,
    ) -> Result<(&'static str, String), ControlError> {
        self.write(|st, c| {
            let d = st.codedeploy.deployment(id)?;
            if !d.is_active() || d.phase == Phase::RollingBack {
                return Err(ControlError::Conflict {
                    code: "DeploymentAlreadyCompletedException",
                    message: format!("The deployment {id} has already completed"),
                });
            }
            let group = st
                .codedeploy
                .group(&d.application, &d.group)?
                .config
                .clone();
            let rollback = auto_rollback.unwrap_or_else(|| {
                group.auto_rollback.enabled
                    && group
                        .auto_rollback
                        .events
                        .iter()
                        .any(|e| e == "DEPLOYMENT_STOP_ON_REQUEST")
            });
            let now = Instant::now();
            stop(
                st,
                c,
                id,
                StopCause::Request,
                rollback,
                now,
                "A user stopped the deployment",
            );
            Ok(("Pending", "Stopping the deployment".to_owned()))
        })
    }

    /// `ContinueDeployment`: ends the ready wait (`READY_WAIT`) or the termination wait
    /// (`TERMINATION_WAIT`).
    pub fn continue_deployment(&self, id: &str, wait: &str) -> Result<(), ControlError> {
        self.write(|st, c| {
            let d = st.codedeploy.deployment_mut(id)?;
            match (wait, d.phase) {
                ("READY_WAIT", Phase::ReadyWait) => {
                    d.phase = Phase::Event(5);
                    d.phase_since = Instant::now();
                    d.status = "InProgress";
                }
                ("TERMINATION_WAIT", Phase::TerminationWait | Phase::Terminating) => {
                    d.skip_termination_wait = true;
                }
                ("READY_WAIT" | "TERMINATION_WAIT", _) => {
                    return Err(ControlError::Conflict {
                        code: "DeploymentIsNotInReadyStateException",
                        message: format!(
                            "The deployment {id} is not waiting ({wait}); it is {}",
                            d.status
                        ),
                    });
                }
                (other, _) => {
                    return Err(ControlError::Conflict {
                        code: "InvalidDeploymentWaitTypeException",
                        message: format!(
                            "invalid deploymentWaitType {other:?}: expected READY_WAIT or TERMINATION_WAIT"
                        ),
                    });
                }
            }
            d.updated = wall();
            c.events()
                .emit("codedeploy", format!("deployment {id} continued ({wait})"));
            Ok(())
        })
    }

    /// `PutLifecycleEventHookExecutionStatus`.
    pub fn put_hook_status(
        &self,
        id: &str,
        execution_id: &str,
        status: &str,
    ) -> Result<(), ControlError> {
        let status: &'static str = match status {
            "Succeeded" => "Succeeded",
            "Failed" => "Failed",
            other => {
                return Err(ControlError::Conflict {
                    code: "InvalidLifecycleEventHookExecutionStatusException",
                    message: format!("invalid status {other:?}: expected Succeeded or Failed"),
                });
            }
        };
        self.write(|st, c| {
            let d = st.codedeploy.deployment_mut(id)?;
            let Some(hook) = d.hook.as_mut().filter(|h| h.execution_id == execution_id) else {
                return Err(ControlError::Conflict {
                    code: "InvalidLifecycleEventHookExecutionIdException",
                    message: format!(
                        "the lifecycle event hook execution id {execution_id} does not belong to a running hook of deployment {id}"
                    ),
                });
            };
            if hook.status != "Pending" {
                return Err(ControlError::Conflict {
                    code: "LifecycleEventAlreadyCompletedException",
                    message: format!("the lifecycle event {execution_id} has already completed"),
                });
            }
            hook.status = status;
            c.events().emit(
                "codedeploy",
                format!("deployment {id}: hook {} reported {status}", hook.function),
            );
            Ok(())
        })
    }
}

fn deployment_id() -> String {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let h = crate::ids::hex(18);
    let mut id = String::from("d-");
    for pair in h.as_bytes().chunks(2) {
        let v = pair.iter().fold(0usize, |acc, b| {
            acc * 16 + char::from(*b).to_digit(16).unwrap_or(0) as usize
        });
        id.push(char::from(CHARS[v % CHARS.len()]));
    }
    id
}

fn fresh_events() -> Vec<LifecycleEvent> {
    LIFECYCLE
        .iter()
        .map(|name| LifecycleEvent {
            name,
            status: "Pending",
            start: None,
            end: None,
            diagnostics: None,
        })
        .collect()
}

fn record_attempt(st: &mut State, d: &Deployment) {
    if let Some(g) = st
        .codedeploy
        .applications
        .get_mut(&d.application)
        .and_then(|a| a.groups.get_mut(&d.group))
    {
        g.last_attempted = Some((d.id.clone(), d.status, d.created));
        if d.status == "Succeeded" {
            g.last_succeeded = Some((d.id.clone(), d.status, d.created));
        }
    }
}

fn set_status(st: &mut State, c: &Emitter2<'_>, id: &str, status: &'static str) {
    let Ok(d) = st.codedeploy.deployment_mut(id) else {
        return;
    };
    if d.status == status {
        return;
    }
    d.status = status;
    d.updated = wall();
    if matches!(status, "Succeeded" | "Failed" | "Stopped") {
        d.completed = Some(wall());
        d.phase = if d.phase == Phase::RollingBack {
            Phase::RollingBack
        } else {
            Phase::Done
        };
    }
    c.emit(format!("deployment {id} {status}"));
    let d = d.clone();
    record_attempt(st, &d);
}

/// Emits CodeDeploy events from either a step or a call.
struct Emitter2<'a>(super::Emitter<'a>);

impl Emitter2<'_> {
    fn emit(&self, message: String) {
        self.0.emit("codedeploy", message);
    }
}

/// Stops deployment `id` for `cause`, rolling back when `rollback`.
fn stop(
    st: &mut State,
    c: &Control,
    id: &str,
    cause: StopCause,
    rollback: bool,
    now: Instant,
    message: &str,
) {
    stop_with(
        st,
        c.plane(),
        &Emitter2(c.events()),
        id,
        cause,
        rollback,
        now,
        message,
    );
}

#[allow(clippy::too_many_arguments)]
fn stop_with(
    st: &mut State,
    plane: &crate::dataplane::DataPlane,
    ev: &Emitter2<'_>,
    id: &str,
    cause: StopCause,
    rollback: bool,
    now: Instant,
    message: &str,
) {
    let ends_as = match cause {
        StopCause::Failure => "Failed",
        _ => "Stopped",
    };
    let cluster = st.cluster.clone();
    let Ok(d) = st.codedeploy.deployment_mut(id) else {
        return;
    };
    let failed_event = d
        .events
        .iter()
        .find(|e| e.status == "Failed")
        .map(|e| e.name);
    let code = match (cause, failed_event) {
        (StopCause::Failure, Some(e)) if HOOKABLE.contains(&e) => "HOOK_EXECUTION_FAILURE",
        (StopCause::Failure, _) => "ECS_UPDATE_ERROR",
        (StopCause::Request, _) => "MANUAL_STOP",
        (StopCause::Alarm, _) => "ALARM_ACTIVE",
        (StopCause::ReadyTimeout, _) => "TIMEOUT",
    }
    .to_owned();
    d.error = Some((code, message.to_owned()));
    d.hook = None;
    for e in &mut d.events {
        if e.status == "InProgress" {
            e.status = if cause == StopCause::Failure {
                "Failed"
            } else {
                "Skipped"
            };
            e.end = Some(wall());
        } else if e.status == "Pending" {
            e.status = "Skipped";
        }
    }
    let d = d.clone();
    ev.emit(format!(
        "deployment {id} stopping ({message}){}",
        if rollback { ", rolling back" } else { "" }
    ));
    if !rollback {
        set_status(st, ev, id, ends_as);
        return;
    }
    // Production (and test) traffic back to the original at once.
    let group = st
        .codedeploy
        .group(&d.application, &d.group)
        .map(|g| g.config.clone());
    if let (Ok(group), Some((orig_set, orig_tg))) = (group, d.original.clone()) {
        let repl_tg = d.replacement.as_ref().map(|(_, tg)| tg.as_str());
        route(plane, ev, &group.production_listener, &orig_tg, repl_tg, 0);
        if let Some(test) = &group.test_listener {
            route(plane, ev, test, &orig_tg, None, 0);
        }
        if let Some(svc) = st.services.get_mut(&d.service) {
            // The original is the primary again (a rollback during the termination wait).
            for ts in &mut svc.task_sets {
                if ts.id == orig_set {
                    ts.status = "PRIMARY";
                    svc.task_definition = ts.task_definition.clone();
                    svc.load_balancer = ts.load_balancer.clone();
                } else if d.replacement.as_ref().is_some_and(|(r, _)| *r == ts.id) {
                    ts.status = "DRAINING";
                    ts.updated = wall();
                }
            }
            svc.task_sets.sort_by_key(|t| t.status != "PRIMARY");
            svc.steady = false;
        }
    }
    let rollback_id = deployment_id();
    let rb = Deployment {
        id: rollback_id.clone(),
        creator: "autoRollback",
        status: "InProgress",
        created: wall(),
        completed: None,
        error: None,
        events: fresh_events(),
        phase: Phase::RollingBack,
        phase_since: now,
        hook: None,
        weight: 0,
        rollback: Some(RollbackInfo {
            rollback_deployment_id: None,
            rollback_triggering_deployment_id: Some(id.to_owned()),
            message: format!("Rollback of deployment {id}"),
        }),
        skip_termination_wait: false,
        ends_as: "Succeeded",
        updated: wall(),
        description: Some(format!("Rollback of {id}")),
        ..d.clone()
    };
    if let Ok(orig) = st.codedeploy.deployment_mut(id) {
        orig.rollback = Some(RollbackInfo {
            rollback_deployment_id: Some(rollback_id.clone()),
            rollback_triggering_deployment_id: None,
            message: format!(
                "Deployment {ends_as}. Automatic rollback to the original task set: deployment {rollback_id}"
            ),
        });
    }
    set_status(st, ev, id, ends_as);
    ev.emit(format!(
        "rollback deployment {rollback_id} started for {id} on {}",
        d.target_id(&cluster)
    ));
    st.codedeploy.deployments.push(rb);
}

/// Points `listener` at `tg` (or splits it `100 - weight`/`weight` with `other`).
fn route(
    plane: &crate::dataplane::DataPlane,
    ev: &Emitter2<'_>,
    listener: &str,
    tg: &str,
    other: Option<&str>,
    weight: u32,
) {
    let mut w = vec![WeightedTargetGroup {
        target_group: tg.to_owned(),
        weight: 100 - weight.min(100),
    }];
    if let Some(o) = other {
        w.push(WeightedTargetGroup {
            target_group: o.to_owned(),
            weight: weight.min(100),
        });
    }
    if w.iter().all(|x| x.weight == 0) {
        return;
    }
    if let Err(e) = plane.set_weights(listener, &w) {
        ev.emit(format!("cannot change listener {listener}: {e}"));
    }
}

/// One reconcile step: alarms, then every active deployment.
pub(super) fn step(state: &mut State, ctx: &Ctx<'_>, actions: &mut Vec<Action>) {
    alarms(state, ctx);
    let ev = Emitter2(ctx.events);
    let ids: Vec<String> = state
        .codedeploy
        .deployments
        .iter()
        .filter(|d| d.is_active())
        .map(|d| d.id.clone())
        .collect();
    for id in ids {
        advance(state, ctx, &ev, &id, actions);
    }
}

fn alarms(state: &mut State, ctx: &Ctx<'_>) {
    for a in &mut state.codedeploy.alarms {
        let Ok(tg) = ctx.plane.target_group(&a.config.target_group) else {
            continue;
        };
        let metrics = tg.metrics();
        let counter = match a.config.metric.as_str() {
            "HTTPCode_Target_5XX_Count" => Some(metrics.target_5xx),
            "HTTPCode_ELB_5XX_Count" => Some(metrics.elb_5xx),
            _ => None,
        };
        if counter.is_none() {
            let unhealthy = tg
                .describe()
                .iter()
                .filter(|t| t.health == crate::dataplane::TargetHealth::Unhealthy)
                .count() as u64;
            a.gauge_max = a.gauge_max.max(unhealthy);
        }
        #[allow(clippy::cast_precision_loss)]
        let so_far = match counter {
            Some(now) => now.saturating_sub(a.counter_start),
            None => a.gauge_max,
        } as f64;
        a.pending = so_far > a.config.threshold;
        if !ctx.elapsed(a.period_start, a.config.period) {
            continue;
        }
        a.pending = false;
        let value = match counter {
            Some(now) => {
                let v = now.saturating_sub(a.counter_start);
                a.counter_start = now;
                v
            }
            None => std::mem::take(&mut a.gauge_max),
        };
        a.period_start = ctx.now;
        #[allow(clippy::cast_precision_loss)]
        let breach = value as f64 > a.config.threshold;
        a.breaching = if breach { a.breaching + 1 } else { 0 };
        let state = if a.breaching >= a.config.evaluation_periods {
            "ALARM"
        } else {
            "OK"
        };
        if state != a.state {
            a.reason = format!(
                "Threshold Crossed: {} datapoint(s) [{value}] {} the threshold ({})",
                a.config.evaluation_periods.min(a.breaching.max(1)),
                if breach {
                    "were greater than"
                } else {
                    "were not greater than"
                },
                a.config.threshold
            );
            a.state = state;
            a.updated = wall();
            ctx.events.emit(
                "cloudwatch",
                format!(
                    "alarm {} {state}: {} = {value} in the last {} s",
                    a.config.name, a.config.metric, a.config.period
                ),
            );
        }
    }
}

fn function_of<'a>(stack: &'a stack::Stack, name: &str) -> Option<&'a HookFunction> {
    // A hook may name the function or its ARN (`arn:aws:lambda:...:function:NAME[:alias]`).
    let short = name
        .split_once(":function:")
        .map_or(name, |(_, rest)| rest.split(':').next().unwrap_or(rest));
    stack.codedeploy.as_ref()?.functions.get(short)
}

#[allow(clippy::too_many_lines)]
fn advance(
    state: &mut State,
    ctx: &Ctx<'_>,
    ev: &Emitter2<'_>,
    id: &str,
    actions: &mut Vec<Action>,
) {
    let Ok(d) = state.codedeploy.deployment(id).cloned() else {
        return;
    };
    let Ok(group) = state
        .codedeploy
        .group(&d.application, &d.group)
        .map(|g| g.config.clone())
    else {
        return;
    };
    let rollback_on = |event: &str| {
        group.auto_rollback.enabled && group.auto_rollback.events.iter().any(|e| e == event)
    };
    // Alarms stop any deployment that has not finished moving traffic.
    if !matches!(
        d.phase,
        Phase::RollingBack | Phase::Terminating | Phase::Done
    ) && let Some(a) = state
        .codedeploy
        .alarms
        .iter()
        .find(|a| a.state == "ALARM" && group.alarms.contains(&a.config.name))
    {
        let message = format!(
            "The deployment was stopped because alarm {} is in ALARM ({})",
            a.config.name, a.reason
        );
        stop_with(
            state,
            ctx.plane,
            ev,
            id,
            StopCause::Alarm,
            rollback_on("DEPLOYMENT_STOP_ON_ALARM"),
            ctx.now,
            &message,
        );
        return;
    }
    let fail = |state: &mut State, code: &str, message: String| {
        if let Ok(d) = state.codedeploy.deployment_mut(id)
            && let Phase::Event(i) = d.phase
        {
            let e = &mut d.events[i];
            e.status = "Failed";
            e.end = Some(wall());
            e.diagnostics = Some((code.to_owned(), message.clone()));
        }
        stop_with(
            state,
            ctx.plane,
            ev,
            id,
            StopCause::Failure,
            rollback_on("DEPLOYMENT_FAILURE"),
            ctx.now,
            &message,
        );
    };
    match d.phase {
        Phase::Done => {}
        Phase::RollingBack => {
            // The rollback deployment ends when the replacement task set is gone.
            let gone = d.replacement.as_ref().is_none_or(|(set, _)| {
                state
                    .services
                    .get(&d.service)
                    .is_none_or(|s| !s.task_sets.iter().any(|t| &t.id == set))
            });
            if gone {
                if let Ok(x) = state.codedeploy.deployment_mut(id) {
                    x.phase = Phase::Done;
                }
                set_status(state, ev, id, d.ends_as);
            }
        }
        Phase::ReadyWait => {
            let wait = group
                .deployment_ready
                .wait_time_in_minutes
                .saturating_mul(60);
            if ctx.elapsed(d.phase_since, wait) {
                stop_with(
                    state,
                    ctx.plane,
                    ev,
                    id,
                    StopCause::ReadyTimeout,
                    true,
                    ctx.now,
                    "The deployment timed out waiting for ContinueDeployment (STOP_DEPLOYMENT)",
                );
            }
        }
        Phase::TerminationWait => {
            let wait = group.termination_wait_minutes.saturating_mul(60);
            if d.skip_termination_wait || ctx.elapsed(d.phase_since, wait) {
                if let Some((orig, _)) = &d.original
                    && let Some(svc) = state.services.get_mut(&d.service)
                    && let Some(ts) = svc.task_sets.iter_mut().find(|t| &t.id == orig)
                {
                    ts.status = "DRAINING";
                    ts.updated = wall();
                    svc.steady = false;
                }
                ev.emit(format!(
                    "deployment {id}: termination wait over, stopping the original task set"
                ));
                if let Ok(x) = state.codedeploy.deployment_mut(id) {
                    x.phase = Phase::Terminating;
                    x.phase_since = ctx.now;
                }
            }
        }
        Phase::Terminating => {
            let gone = d.original.as_ref().is_none_or(|(set, _)| {
                state
                    .services
                    .get(&d.service)
                    .is_none_or(|s| !s.task_sets.iter().any(|t| &t.id == set))
            });
            if gone {
                set_status(state, ev, id, "Succeeded");
            }
        }
        Phase::Event(i) => {
            let name = LIFECYCLE[i];
            // Entering the event.
            if d.events[i].status == "Pending" {
                if let Ok(x) = state.codedeploy.deployment_mut(id) {
                    x.events[i].status = "InProgress";
                    x.events[i].start = Some(wall());
                    x.phase_since = ctx.now;
                    x.updated = wall();
                }
                if d.status == "Created" {
                    set_status(state, ev, id, "InProgress");
                }
                ev.emit(format!("deployment {id}: {name} started"));
                if let Err((code, message)) = enter(state, ctx, ev, id, i, &group, actions) {
                    fail(state, code, message);
                }
                return;
            }
            match progress(state, ctx, ev, id, i, &group) {
                Progress::Wait => {}
                Progress::Failed(code, message) => fail(state, code, message),
                Progress::Done => {
                    if let Ok(x) = state.codedeploy.deployment_mut(id) {
                        x.events[i].status = "Succeeded";
                        x.events[i].end = Some(wall());
                        x.hook = None;
                        x.phase_since = ctx.now;
                        x.updated = wall();
                        ev.emit(format!("deployment {id}: {name} succeeded"));
                        let ready_wait = name == "AfterAllowTestTraffic"
                            && group.deployment_ready.action_on_timeout == "STOP_DEPLOYMENT";
                        x.phase = if ready_wait {
                            Phase::ReadyWait
                        } else if i + 1 < LIFECYCLE.len() {
                            Phase::Event(i + 1)
                        } else {
                            Phase::TerminationWait
                        };
                    }
                    if name == "AfterAllowTestTraffic"
                        && group.deployment_ready.action_on_timeout == "STOP_DEPLOYMENT"
                    {
                        set_status(state, ev, id, "Ready");
                        ev.emit(format!(
                            "deployment {id} Ready: waiting up to {} min for ContinueDeployment",
                            group.deployment_ready.wait_time_in_minutes
                        ));
                    }
                    if i + 1 == LIFECYCLE.len() {
                        swap(state, ev, &d);
                        set_status(state, ev, id, "Baking");
                    }
                }
            }
        }
    }
}

enum Progress {
    Wait,
    Done,
    Failed(&'static str, String),
}

/// Starts lifecycle event `i`.
fn enter(
    state: &mut State,
    ctx: &Ctx<'_>,
    ev: &Emitter2<'_>,
    id: &str,
    i: usize,
    group: &DeploymentGroupConfig,
    actions: &mut Vec<Action>,
) -> Result<(), (&'static str, String)> {
    let Ok(d) = state.codedeploy.deployment(id).cloned() else {
        return Ok(());
    };
    let name = LIFECYCLE[i];
    if let Some((_, function)) = d.appspec.hooks.iter().find(|(e, _)| e == name) {
        let execution_id = uuid();
        let Some(f) = function_of(ctx.plane.stack(), function).cloned() else {
            return Err((
                "ScriptMissing",
                format!(
                    "The hook function {function} does not exist (no [codedeploy.functions] entry of that name)"
                ),
            ));
        };
        if let Ok(x) = state.codedeploy.deployment_mut(id) {
            x.hook = Some(HookRun {
                execution_id: execution_id.clone(),
                function: function.clone(),
                status: "Pending",
                error: None,
                deadline: ctx.now + ctx.clock.secs(HOOK_TIMEOUT_SECS),
            });
        }
        ev.emit(format!("deployment {id}: {name} invokes hook {function}"));
        actions.push(Action::InvokeHook {
            deployment: id.to_owned(),
            execution_id,
            function: f,
        });
        return Ok(());
    }
    match name {
        "Install" => {
            let svc = state
                .services
                .get(&d.service)
                .ok_or(("UnknownError", format!("service {} not found", d.service)))?
                .clone();
            let td = state
                .task_definition(&d.appspec.task_definition)
                .map_err(|e| {
                    (
                        "UnknownError",
                        format!("The task definition in the AppSpec: {e}"),
                    )
                })?
                .clone();
            let container = td
                .definition
                .container_definitions
                .iter()
                .find(|c| c.name == d.appspec.container_name)
                .ok_or((
                    "UnknownError",
                    format!(
                        "The AppSpec's container {} is not in task definition {}",
                        d.appspec.container_name, td.arn
                    ),
                ))?;
            if !container
                .port_mappings
                .iter()
                .any(|p| p.container_port == d.appspec.container_port)
            {
                return Err((
                    "UnknownError",
                    format!(
                        "The AppSpec's container port {} is not mapped by container {}",
                        d.appspec.container_port, d.appspec.container_name
                    ),
                ));
            }
            let primary = svc
                .task_sets
                .iter()
                .find(|t| t.status == "PRIMARY")
                .ok_or((
                    "UnknownError",
                    "the service has no primary task set".to_owned(),
                ))?;
            let orig_tg = primary
                .load_balancer
                .as_ref()
                .map(|l| l.target_group.clone())
                .ok_or((
                    "UnknownError",
                    "the primary task set has no target group".to_owned(),
                ))?;
            let repl_tg = group
                .target_groups
                .iter()
                .find(|t| **t != orig_tg)
                .cloned()
                .ok_or((
                    "UnknownError",
                    "the deployment group has one target group".to_owned(),
                ))?;
            let set = new_task_set(
                &state.cluster,
                &d.service,
                (td.family.clone(), td.revision),
                Some(ServiceLoadBalancer {
                    target_group: repl_tg.clone(),
                    container_name: d.appspec.container_name.clone(),
                    container_port: d.appspec.container_port,
                }),
                "ACTIVE",
                Some(id.to_owned()),
            );
            let (orig_id, repl_id) = (primary.id.clone(), set.id.clone());
            if let Some(s) = state.services.get_mut(&d.service) {
                // A replacement left behind by a deployment stopped without rollback goes.
                for ts in &mut s.task_sets {
                    if ts.status == "ACTIVE" {
                        ts.status = "DRAINING";
                    }
                }
                s.task_sets.push(set);
                // A new task definition ends ECS's launch throttling at once.
                s.throttle = super::ecs::Throttle::default();
                s.steady = false;
            }
            ev.emit(format!(
                "deployment {id}: replacement task set {repl_id} ({}:{}) in {repl_tg}",
                td.family, td.revision
            ));
            if let Ok(x) = state.codedeploy.deployment_mut(id) {
                x.original = Some((orig_id, orig_tg));
                x.replacement = Some((repl_id, repl_tg));
            }
        }
        "AllowTestTraffic" => {
            if let (Some(test), Some((_, repl_tg))) = (&group.test_listener, &d.replacement) {
                route(ctx.plane, ev, test, repl_tg, None, 0);
            }
        }
        "AllowTraffic" => {
            shift(state, ctx, ev, id, group);
        }
        _ => {}
    }
    Ok(())
}

/// Moves production traffic one step.
fn shift(
    state: &mut State,
    ctx: &Ctx<'_>,
    ev: &Emitter2<'_>,
    id: &str,
    group: &DeploymentGroupConfig,
) {
    let Ok(d) = state.codedeploy.deployment_mut(id) else {
        return;
    };
    let (Some((_, orig_tg)), Some((_, repl_tg))) = (d.original.clone(), d.replacement.clone())
    else {
        return;
    };
    d.weight = d.traffic.next(d.weight);
    d.phase_since = ctx.now;
    d.updated = wall();
    let w = d.weight;
    route(
        ctx.plane,
        ev,
        &group.production_listener,
        &orig_tg,
        Some(&repl_tg),
        w,
    );
    ev.emit(format!(
        "deployment {id}: production traffic {orig_tg}={} {repl_tg}={w}",
        100 - w
    ));
}

/// Checks lifecycle event `i` for completion.
fn progress(
    state: &mut State,
    ctx: &Ctx<'_>,
    ev: &Emitter2<'_>,
    id: &str,
    i: usize,
    group: &DeploymentGroupConfig,
) -> Progress {
    let Ok(d) = state.codedeploy.deployment(id).cloned() else {
        return Progress::Wait;
    };
    if let Some(h) = &d.hook {
        return match h.status {
            "Succeeded" => Progress::Done,
            "Failed" => Progress::Failed(
                "ScriptFailed",
                h.error.clone().unwrap_or_else(|| {
                    format!("The {} hook {} reported Failed", LIFECYCLE[i], h.function)
                }),
            ),
            _ if ctx.now >= h.deadline => Progress::Failed(
                "ScriptTimedOut",
                format!(
                    "The {} hook {} did not report a status within {} minutes",
                    LIFECYCLE[i],
                    h.function,
                    HOOK_TIMEOUT_SECS / 60
                ),
            ),
            _ => Progress::Wait,
        };
    }
    match LIFECYCLE[i] {
        "Install" => {
            let steady = d.replacement.as_ref().is_some_and(|(set, _)| {
                state
                    .services
                    .get(&d.service)
                    .is_some_and(|s| s.task_sets.iter().any(|t| &t.id == set && t.steady))
            });
            if steady {
                Progress::Done
            } else if ctx.elapsed(d.phase_since, INSTALL_TIMEOUT_SECS) {
                Progress::Failed(
                    "UnknownError",
                    "The replacement task set did not become healthy in time".into(),
                )
            } else {
                Progress::Wait
            }
        }
        "AllowTraffic" => {
            if d.weight >= 100 {
                Progress::Done
            } else {
                if ctx.elapsed(d.phase_since, d.traffic.interval().saturating_mul(60)) {
                    shift(state, ctx, ev, id, group);
                }
                Progress::Wait
            }
        }
        _ => Progress::Done,
    }
}

/// Traffic moved: the replacement becomes the service's primary task set.
fn swap(state: &mut State, ev: &Emitter2<'_>, d: &Deployment) {
    let (Some((orig, _)), Some((repl, _))) = (&d.original, &d.replacement) else {
        return;
    };
    if let Some(svc) = state.services.get_mut(&d.service) {
        for ts in &mut svc.task_sets {
            if &ts.id == repl {
                ts.status = "PRIMARY";
                ts.updated = wall();
                svc.task_definition = ts.task_definition.clone();
                svc.load_balancer = ts.load_balancer.clone();
            } else if &ts.id == orig {
                ts.status = "ACTIVE";
                ts.updated = wall();
            }
        }
        svc.task_sets.sort_by_key(|t| t.status != "PRIMARY");
    }
    ev.emit(format!(
        "deployment {}: task set {repl} is primary; {orig} stays for the termination wait",
        d.id
    ));
}

/// Invokes a hook's function the way Lambda would: the event as JSON. A failed invocation fails
/// the hook at once; a successful one waits for `PutLifecycleEventHookExecutionStatus`.
pub(super) async fn invoke(c: &Control, deployment: String, execution_id: String, f: HookFunction) {
    let event = serde_json::json!({
        "DeploymentId": deployment,
        "LifecycleEventHookExecutionId": execution_id,
    })
    .to_string();
    let timeout = c
        .clock()
        .timeout(Duration::from_secs(u64::from(HOOK_TIMEOUT_SECS)));
    let outcome = match (&f.url, &f.command) {
        (Some(url), _) => post(url, event, timeout).await,
        (None, Some(cmd)) => run(cmd, event, timeout).await,
        (None, None) => Err("the function has neither url nor command".to_owned()),
    };
    if let Err(e) = outcome {
        c.write(|st, c| {
            if let Ok(d) = st.codedeploy.deployment_mut(&deployment)
                && let Some(h) = d.hook.as_mut().filter(|h| h.execution_id == execution_id)
                && h.status == "Pending"
            {
                h.status = "Failed";
                h.error = Some(format!("The hook function {} failed: {e}", h.function));
                c.events().emit(
                    "codedeploy",
                    format!("deployment {deployment}: hook {} failed: {e}", h.function),
                );
            }
        });
    }
}

async fn post(url: &str, event: String, timeout: Duration) -> Result<(), String> {
    use http_body_util::{BodyExt, Full};
    stack::loopback_url(url)?;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<bytes::Bytes>>();
    let req = http::Request::post(url)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(bytes::Bytes::from(event)))
        .map_err(|e| e.to_string())?;
    let res = tokio::time::timeout(timeout, client.request(req))
        .await
        .map_err(|_| "no answer in time".to_owned())?
        .map_err(|e| format!("POST {url}: {e}"))?;
    let status = res.status();
    let _ = res.into_body().collect().await;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("POST {url} answered {status}"))
    }
}

async fn run(cmd: &[String], event: String, timeout: Duration) -> Result<(), String> {
    use tokio::io::AsyncWriteExt;
    let (program, args) = cmd.split_first().ok_or("empty command")?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(event.as_bytes()).await;
    }
    let status = tokio::time::timeout(timeout, child.wait())
        .await
        .map_err(|_| format!("{program} did not finish in time"))?
        .map_err(|e| e.to_string())?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{program} exited with {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traffic_steps() {
        let canary = Traffic::Canary {
            percent: 10,
            minutes: 5,
        };
        assert_eq!(canary.next(0), 10);
        assert_eq!(canary.next(10), 100);
        let linear = Traffic::Linear {
            percent: 30,
            minutes: 1,
        };
        let mut w = 0;
        let mut steps = Vec::new();
        while w < 100 {
            w = linear.next(w);
            steps.push(w);
        }
        assert_eq!(steps, vec![30, 60, 90, 100]);
        assert_eq!(Traffic::AllAtOnce.next(0), 100);
        assert!(Traffic::parse("TimeBasedCanary", 0, 5).is_err());
        assert!(Traffic::parse("Weird", 10, 5).is_err());
    }

    #[test]
    fn appspec_yaml_and_json() {
        let yaml = "version: 0.0\nResources:\n  - TargetService:\n      Type: AWS::ECS::Service\n      Properties:\n        TaskDefinition: \"arn:aws:ecs:us-east-1:000000000000:task-definition/demo-web:2\"\n        LoadBalancerInfo:\n          ContainerName: \"web\"\n          ContainerPort: 8080\nHooks:\n  - AfterAllowTestTraffic: \"validate\"\n";
        let a = AppSpec::parse(yaml).unwrap();
        assert_eq!(a.container_port, 8080);
        assert_eq!(
            a.hooks,
            vec![("AfterAllowTestTraffic".into(), "validate".into())]
        );
        let json = r#"{"version":0.0,"Resources":[{"TargetService":{"Type":"AWS::ECS::Service","Properties":{"TaskDefinition":"demo-web:2","LoadBalancerInfo":{"ContainerName":"web","ContainerPort":"8080"}}}}]}"#;
        assert_eq!(AppSpec::parse(json).unwrap().task_definition, "demo-web:2");
        for bad in [
            "",
            "Resources: 3",
            "Resources:\n  - X:\n      Type: AWS::Lambda::Function\n",
            "Resources:\n  - X:\n      Type: AWS::ECS::Service\n      Properties:\n        TaskDefinition: t\n        LoadBalancerInfo: {ContainerName: web, ContainerPort: 0}\n",
            "Resources:\n  - X:\n      Type: AWS::ECS::Service\n      Properties:\n        TaskDefinition: t\n        LoadBalancerInfo: {ContainerName: web, ContainerPort: 80}\nHooks:\n  - Install: f\n",
        ] {
            assert!(AppSpec::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn deployment_ids_look_like_aws() {
        let id = deployment_id();
        assert_eq!(id.len(), 11, "{id}");
        assert!(id.starts_with("d-"));
        assert!(
            id[2..]
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        );
    }
}

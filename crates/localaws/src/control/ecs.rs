//! ECS on EC2: container instances, task definitions, services and their tasks.
//!
//! The service scheduler keeps `desiredCount` tasks running, spread over `ACTIVE` container
//! instances, each registered in the service's target group. Tasks that must go (on a `DRAINING`
//! container instance, of an old task definition, or failing load balancer health checks) are
//! replaced first: new ones start within `maximumPercent`, and old ones stop only while
//! `minimumHealthyPercent` of the desired count stays healthy. Stopping a task is ECS's sequence:
//! deregister from the target group, wait out the deregistration delay, SIGTERM, `stopTimeout`,
//! SIGKILL.
//!
//! A task whose instance is terminated under it dies with it; ECS only notices after the agent's
//! disconnect timeout, so until then the load balancer's health checks are all that protects
//! clients: the outage that managed draining prevents.
//!
//! ECS's throttle logic: launches of a service whose tasks keep failing to start wait 5
//! simulated seconds, doubling up to AWS's 27 minutes, until a task runs or a new task
//! definition resets it. A `CODE_DEPLOY` service is scheduled per task set, each with its task
//! definition, target group and scale.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::SystemTime;

use tokio::time::Instant;

use super::ec2::Lifecycle;
use super::rolling::{RollingDeployment, RolloutState, ServiceDeployment, Tripped};
use super::{Action, Control, ControlError, Ctx, Emitter, KEEP_STOPPED, State, hex_id, wall};
use crate::clock::{MIN_REAL_CHECK_INTERVAL, MIN_REAL_START};
use crate::dataplane::{TargetHealth, TaskEnd};
use stack::{CircuitBreakerConfig, ServiceLoadBalancer, Stack, TaskDefinition};

/// An ECS task's `lastStatus` or `desiredStatus` (the states localaws's tasks pass through).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskStatus {
    /// Placed, its containers starting (`PROVISIONING`).
    Provisioning,
    /// Waiting to be placed (`PENDING`; a desired status only in `ListTasks` filters here).
    Pending,
    /// Running (`RUNNING`).
    Running,
    /// Deregistering from its target groups before it stops (`DEACTIVATING`).
    Deactivating,
    /// Its containers getting their stop signal (`STOPPING`).
    Stopping,
    /// Stopped (`STOPPED`).
    Stopped,
}

impl TaskStatus {
    /// As ECS writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provisioning => "PROVISIONING",
            Self::Pending => "PENDING",
            Self::Running => "RUNNING",
            Self::Deactivating => "DEACTIVATING",
            Self::Stopping => "STOPPING",
            Self::Stopped => "STOPPED",
        }
    }
}

impl std::fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a task stopped (`stopCode`): the codes localaws's tasks stop with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopCode {
    /// It never ran: its containers did not start, or it could not join its target groups
    /// (`TaskFailedToStart`).
    TaskFailedToStart,
    /// An essential container exited (`EssentialContainerExited`).
    EssentialContainerExited,
    /// The service stopped it: a scale-in, a deployment, a failed health check
    /// (`ServiceSchedulerInitiated`).
    ServiceSchedulerInitiated,
    /// Its container instance went away (`TerminationNotice`).
    TerminationNotice,
}

impl StopCode {
    /// As ECS writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TaskFailedToStart => "TaskFailedToStart",
            Self::EssentialContainerExited => "EssentialContainerExited",
            Self::ServiceSchedulerInitiated => "ServiceSchedulerInitiated",
            Self::TerminationNotice => "TerminationNotice",
        }
    }
}

/// A container's or a task's `healthStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthStatus {
    /// No verdict yet, or nothing checks it (`UNKNOWN`).
    Unknown,
    /// `HEALTHY`.
    Healthy,
    /// `UNHEALTHY`.
    Unhealthy,
}

impl HealthStatus {
    /// As ECS writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "UNKNOWN",
            Self::Healthy => "HEALTHY",
            Self::Unhealthy => "UNHEALTHY",
        }
    }
}

impl std::fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A container instance's `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceStatus {
    /// Takes tasks (`ACTIVE`).
    Active,
    /// Its service tasks are being replaced elsewhere; no new ones (`DRAINING`).
    Draining,
    /// Deregistered (`INACTIVE`).
    Inactive,
}

impl InstanceStatus {
    /// As ECS writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Draining => "DRAINING",
            Self::Inactive => "INACTIVE",
        }
    }

    /// A status `UpdateContainerInstancesState` sets: `ACTIVE` or `DRAINING`.
    pub(crate) fn settable(s: &str) -> Option<Self> {
        match s {
            "ACTIVE" => Some(Self::Active),
            "DRAINING" => Some(Self::Draining),
            _ => None,
        }
    }
}

impl std::fmt::Display for InstanceStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A task set's `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskSetStatus {
    /// Serves the service (`PRIMARY`).
    Primary,
    /// A replacement, not yet primary (`ACTIVE`).
    Active,
    /// Going away (`DRAINING`).
    Draining,
}

impl TaskSetStatus {
    /// As ECS writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Primary => "PRIMARY",
            Self::Active => "ACTIVE",
            Self::Draining => "DRAINING",
        }
    }
}

/// A container instance: an EC2 instance whose ECS agent registered it with the cluster.
#[derive(Debug, Clone)]
pub struct ContainerInstance {
    /// 32 hex digits (the ARN's last segment).
    pub id: String,
    /// ARN.
    pub arn: String,
    /// EC2 instance id.
    pub ec2_instance: String,
    /// Taking tasks, draining, or gone.
    pub status: InstanceStatus,
    /// Whether its agent is connected.
    pub agent_connected: bool,
    /// Registration time.
    pub registered_at: SystemTime,
}

/// One registered revision of a task definition.
#[derive(Debug, Clone)]
pub struct TaskDefinitionRevision {
    /// Family.
    pub family: String,
    /// Revision, from 1.
    pub revision: u32,
    /// ARN.
    pub arn: String,
    /// What runs.
    pub definition: TaskDefinition,
    /// The JSON as registered (echoed by `DescribeTaskDefinition`).
    pub raw: serde_json::Value,
    /// Registration time.
    pub registered_at: SystemTime,
}

/// An ECS service.
#[derive(Debug, Clone)]
pub struct Service {
    /// Name.
    pub name: String,
    /// ARN.
    pub arn: String,
    /// Task definition: family and revision.
    pub task_definition: (String, u32),
    /// Desired count.
    pub desired: u32,
    /// `minimumHealthyPercent`.
    pub min_healthy: u32,
    /// `maximumPercent`.
    pub max_percent: u32,
    /// Simulated seconds.
    pub grace: u32,
    /// Target group registration.
    pub load_balancer: Option<ServiceLoadBalancer>,
    /// `ECS` or `CODE_DEPLOY`.
    pub controller: String,
    /// Creation time.
    pub created: SystemTime,
    /// Service events, newest last.
    pub events: VecDeque<(SystemTime, String, String)>,
    /// Whether the last event was "reached a steady state".
    pub steady: bool,
    /// When placement last failed (to say it once, not on every step).
    pub unplaceable_since: Option<Instant>,
    /// ECS's service throttle logic: how many of its tasks in a row went from `PENDING` to
    /// `STOPPED` without ever running, and the soonest the scheduler launches another.
    pub throttle: Throttle,
    /// Task sets, for a `CODE_DEPLOY` service (the `PRIMARY` one first); empty otherwise.
    pub task_sets: Vec<TaskSet>,
    /// Deployments, for an `ECS` service (the `PRIMARY` one first); empty otherwise.
    pub deployments: Vec<RollingDeployment>,
    /// Service deployments, for an `ECS` service (oldest first); empty otherwise.
    pub service_deployments: Vec<ServiceDeployment>,
    /// The deployment circuit breaker (an `ECS` service's).
    pub circuit_breaker: Option<CircuitBreakerConfig>,
}

/// A task set: the tasks of one task definition registered in one target group, as a
/// `CODE_DEPLOY` service runs them (blue is one task set, green another).
#[derive(Debug, Clone)]
pub struct TaskSet {
    /// `ecs-svc/` and 19 digits.
    pub id: String,
    /// ARN.
    pub arn: String,
    /// Task definition: family and revision.
    pub task_definition: (String, u32),
    /// Where its tasks are registered.
    pub load_balancer: Option<ServiceLoadBalancer>,
    /// Percentage of the service's desired count it runs.
    pub scale: f64,
    /// Serving the service, a replacement, or going away.
    pub status: TaskSetStatus,
    /// Whether its tasks all run and are healthy.
    pub steady: bool,
    /// The CodeDeploy deployment that created it.
    pub external_id: Option<String>,
    /// Creation time.
    pub created: SystemTime,
    /// Last change.
    pub updated: SystemTime,
}

impl TaskSet {
    /// Tasks it should run for a service's desired count (rounded up, as ECS does).
    pub fn computed_desired(&self, service_desired: u32) -> u32 {
        let n = (f64::from(service_desired) * self.scale / 100.0).ceil();
        if n <= 0.0 { 0 } else { n as u32 }
    }
}

/// An ECS task.
#[derive(Debug, Clone)]
pub struct Task {
    /// 32 hex digits.
    pub id: String,
    /// ARN.
    pub arn: String,
    /// Task definition: family and revision.
    pub task_definition: (String, u32),
    /// What it runs.
    pub definition: TaskDefinition,
    /// The service that started it.
    pub service: Option<String>,
    /// EC2 instance id it was placed on.
    pub instance: String,
    /// Host endpoint of its container port, once running.
    pub endpoint: Option<SocketAddr>,
    /// Target group it is registered in.
    pub target_group: Option<String>,
    /// The container the load balancer reaches (the service's `containerName`), when it has one.
    pub serving: Option<String>,
    /// Where it is in its lifecycle.
    pub last_status: TaskStatus,
    /// `RUNNING` or `STOPPED`.
    pub desired_status: TaskStatus,
    /// Created (wall clock).
    pub created_at: SystemTime,
    /// Started (wall clock).
    pub started_at: Option<SystemTime>,
    /// Started (real instant), for the grace period.
    pub started: Option<Instant>,
    /// When the stop began (wall clock).
    pub stopping_at: Option<SystemTime>,
    /// Stopped (wall clock).
    pub stopped_at: Option<SystemTime>,
    /// Why it stopped.
    pub stopped_reason: Option<String>,
    /// Why, in ECS's code.
    pub stop_code: Option<StopCode>,
    /// Each container's exit code, once known (by container name).
    pub exit_codes: BTreeMap<String, i32>,
    /// When its instance vanished under it (ECS notices after the disconnect timeout).
    pub lost: Option<Instant>,
    /// The health check state of each container that has one.
    pub health: Vec<ContainerHealth>,
    /// The task set it belongs to (services under `CODE_DEPLOY`).
    pub task_set: Option<String>,
    /// The rolling deployment that started it (services under `ECS`; its `startedBy`).
    pub deployment: Option<String>,
}

/// A container health check's state, as the ECS agent tracks it.
#[derive(Debug, Clone)]
pub struct ContainerHealth {
    /// The container checked.
    pub container: String,
    /// It is essential: only essential containers' health makes the task's.
    pub essential: bool,
    /// No verdict yet, healthy or unhealthy.
    pub status: HealthStatus,
    /// Consecutive failures counted (failures inside the start period are not).
    pub failures: u32,
    /// When the next check is due (real).
    pub next: Instant,
    /// A check is running.
    pub running: bool,
}

/// Container `container`'s health check settings with ECS's defaults (interval 30 s, timeout
/// 5 s, retries 3, start period 0; simulated seconds).
fn health_settings(t: &Task, container: &str) -> Option<(Vec<String>, u32, u32, u32, u32)> {
    let hc = t
        .definition
        .container_definitions
        .iter()
        .find(|c| c.name == container)?
        .health_check
        .as_ref()?;
    Some((
        hc.command.clone(),
        hc.interval.unwrap_or(30),
        hc.timeout.unwrap_or(5),
        hc.retries.unwrap_or(3),
        hc.start_period.unwrap_or(0),
    ))
}

impl Task {
    /// Not stopped yet.
    pub fn is_live(&self) -> bool {
        self.last_status != TaskStatus::Stopped
    }

    /// Asked to stop, not stopped yet.
    pub fn is_stopping(&self) -> bool {
        self.desired_status == TaskStatus::Stopped && self.is_live()
    }

    /// Whether ECS waits for container health checks to count the task healthy: an essential
    /// container has one.
    pub(crate) fn checked(&self) -> bool {
        self.health.iter().any(|h| h.essential)
    }

    /// The task's `healthStatus` as ECS derives it from its essential containers' (a
    /// non-essential container's health does not count): `UNHEALTHY` if one is, `HEALTHY` if all
    /// are, else `UNKNOWN` (no verdict yet, or no essential container has a check).
    pub fn health_status(&self) -> HealthStatus {
        let essential: Vec<HealthStatus> = self
            .health
            .iter()
            .filter(|h| h.essential)
            .map(|h| h.status)
            .collect();
        if essential.contains(&HealthStatus::Unhealthy) {
            HealthStatus::Unhealthy
        } else if !essential.is_empty() && essential.iter().all(|s| *s == HealthStatus::Healthy) {
            HealthStatus::Healthy
        } else {
            HealthStatus::Unknown
        }
    }

    /// Container `name`'s `healthStatus` (`UNKNOWN` without a check).
    pub(crate) fn container_health(&self, name: &str) -> HealthStatus {
        self.health
            .iter()
            .find(|h| h.container == name)
            .map_or(HealthStatus::Unknown, |h| h.status)
    }
}

fn task_definition_arn(family: &str, revision: u32) -> String {
    crate::arn::regional("ecs", &format!("task-definition/{family}:{revision}"))
}

pub(super) fn load(state: &mut State, stack: &Stack) {
    for td in &stack.task_definitions {
        let raw = serde_json::to_value(td).unwrap_or_default();
        state.task_definitions.insert(
            td.family.clone(),
            vec![TaskDefinitionRevision {
                family: td.family.clone(),
                revision: 1,
                arn: task_definition_arn(&td.family, 1),
                definition: td.clone(),
                raw,
                registered_at: wall(),
            }],
        );
    }
    for s in &stack.services {
        let task_sets = if s.deployment_controller == "CODE_DEPLOY" {
            vec![new_task_set(
                &stack.cluster.name,
                &s.name,
                (s.task_definition.clone(), 1),
                s.load_balancer.clone(),
                TaskSetStatus::Primary,
                None,
            )]
        } else {
            Vec::new()
        };
        let mut service = Service {
            task_sets,
            deployments: Vec::new(),
            service_deployments: Vec::new(),
            circuit_breaker: s.deployment_circuit_breaker,
            name: s.name.clone(),
            arn: crate::arn::regional("ecs", &format!("service/{}/{}", stack.cluster.name, s.name)),
            task_definition: (s.task_definition.clone(), 1),
            desired: s.desired_count,
            min_healthy: s.minimum_healthy_percent,
            max_percent: s.maximum_percent,
            grace: s.health_check_grace_period,
            load_balancer: s.load_balancer.clone(),
            controller: s.deployment_controller.clone(),
            created: wall(),
            events: VecDeque::new(),
            steady: false,
            unplaceable_since: None,
            throttle: Throttle::default(),
        };
        if service.controller == "ECS" {
            service.first_deployment();
        }
        state.services.insert(s.name.clone(), service);
    }
}

/// A new task set at scale 100.
pub(super) fn new_task_set(
    cluster: &str,
    service: &str,
    task_definition: (String, u32),
    load_balancer: Option<ServiceLoadBalancer>,
    status: TaskSetStatus,
    external_id: Option<String>,
) -> TaskSet {
    let digits: String = crate::ids::hex(19)
        .bytes()
        .map(|b| char::from(b'0' + b % 10))
        .collect();
    let id = format!("ecs-svc/{digits}");
    TaskSet {
        arn: crate::arn::regional("ecs", &format!("task-set/{cluster}/{service}/{id}")),
        id,
        task_definition,
        load_balancer,
        scale: 100.0,
        status,
        steady: false,
        external_id,
        created: wall(),
        updated: wall(),
    }
}

impl State {
    /// How many tasks of task set `id` run, and how many are starting (of those it wants).
    pub(crate) fn task_set_counts(&self, id: &str) -> (usize, usize) {
        let tasks = self.tasks.values().filter(|t| {
            t.task_set.as_deref() == Some(id) && t.desired_status == TaskStatus::Running
        });
        let running = tasks
            .clone()
            .filter(|t| t.last_status == TaskStatus::Running)
            .count();
        let pending = tasks
            .filter(|t| t.last_status == TaskStatus::Provisioning)
            .count();
        (running, pending)
    }

    /// The cluster's ARN.
    pub fn cluster_arn(&self) -> String {
        crate::arn::regional("ecs", &format!("cluster/{}", self.cluster))
    }

    /// Checks that `name` (a name or an ARN) is this cluster.
    pub fn check_cluster(&self, name: Option<&str>) -> Result<(), ControlError> {
        // As on AWS, a request that names no cluster means the cluster called `default`.
        let n = name.unwrap_or("default");
        if n == self.cluster || n == self.cluster_arn() {
            Ok(())
        } else {
            Err(ControlError::not_found("cluster", n))
        }
    }

    /// The service named (or with the ARN) `name`.
    pub fn service(&self, name: &str) -> Result<&Service, ControlError> {
        self.services
            .get(name)
            .or_else(|| self.services.values().find(|s| s.arn == name))
            .ok_or_else(|| ControlError::not_found("service", name))
    }

    /// A task definition by `family`, `family:revision` or ARN (the latest active revision for a
    /// bare family).
    pub fn task_definition(
        &self,
        reference: &str,
    ) -> Result<&TaskDefinitionRevision, ControlError> {
        let short = reference
            .rsplit_once(":task-definition/")
            .map_or(reference, |(_, rest)| rest);
        let (family, revision) = match short.split_once(':') {
            Some((f, r)) => {
                let r: u32 = r.parse().map_err(|_| {
                    ControlError::Validation(format!(
                        "invalid task definition {reference:?}: expected family, family:revision or an ARN"
                    ))
                })?;
                (f, Some(r))
            }
            None => (short, None),
        };
        let revisions = self
            .task_definitions
            .get(family)
            .ok_or_else(|| ControlError::not_found("task definition", reference))?;
        let found = match revision {
            Some(r) => revisions.iter().find(|t| t.revision == r),
            None => revisions.last(),
        };
        found.ok_or_else(|| ControlError::not_found("task definition", reference))
    }

    /// A task by id or ARN.
    pub fn task(&self, reference: &str) -> Option<&Task> {
        let id = reference.rsplit('/').next().unwrap_or(reference);
        self.tasks.get(id)
    }

    /// The container instance by id or ARN.
    pub fn container_instance(&self, reference: &str) -> Option<&ContainerInstance> {
        let id = reference.rsplit('/').next().unwrap_or(reference);
        self.container_instances
            .values()
            .find(|c| c.id == id || c.ec2_instance == id)
    }
}

/// The ECS agent on `ec2` registers its container instance.
pub(super) fn register_container_instance(state: &mut State, ec2: &str, events: Emitter<'_>) {
    let id = hex_id(32);
    let arn = crate::arn::regional("ecs", &format!("container-instance/{}/{id}", state.cluster));
    state.container_instances.insert(
        ec2.to_owned(),
        ContainerInstance {
            id,
            arn,
            ec2_instance: ec2.to_owned(),
            status: InstanceStatus::Active,
            agent_connected: true,
            registered_at: wall(),
        },
    );
    events.emit(
        "ecs",
        format!("container instance on {ec2} registered (ACTIVE)"),
    );
}

/// Sets the container instance on `ec2` to `DRAINING`.
pub(super) fn drain_container_instance(state: &mut State, ec2: &str, events: Emitter<'_>) {
    if let Some(ci) = state.container_instances.get_mut(ec2)
        && ci.status == InstanceStatus::Active
    {
        ci.status = InstanceStatus::Draining;
        events.emit("ecs", format!("container instance on {ec2} DRAINING"));
    }
}

/// The instance `ec2` was terminated: its container instance goes, and ECS will find its tasks
/// gone once the agent's disconnect timeout passes.
pub(super) fn instance_gone(state: &mut State, ec2: &str, ctx: &Ctx<'_>) {
    if let Some(ci) = state.container_instances.get_mut(ec2) {
        ci.status = InstanceStatus::Inactive;
        ci.agent_connected = false;
    }
    for t in state.tasks.values_mut() {
        if t.instance == ec2 && t.is_live() && t.lost.is_none() {
            t.lost = Some(ctx.now);
        }
    }
}

/// Says in the service's events what the circuit breaker did; returns localaws's own line.
fn tripped(svc: &mut Service, what: &Tripped) -> String {
    let name = svc.name.clone();
    match what {
        Tripped::Failed { deployment } => {
            add_event(
                svc,
                format!(
                    "(service {name}) (deployment {deployment}) deployment failed: tasks failed to start."
                ),
            );
            format!(
                "service {name}: deployment {deployment} FAILED by the circuit breaker; it launches no more tasks"
            )
        }
        Tripped::NothingToRollBackTo { deployment } => {
            add_event(
                svc,
                format!(
                    "(service {name}) (deployment {deployment}) deployment failed: tasks failed to start."
                ),
            );
            format!(
                "service {name}: deployment {deployment} FAILED by the circuit breaker, and no completed deployment to roll back to; it launches no more tasks"
            )
        }
        Tripped::RolledBack { deployment, to } => {
            add_event(
                svc,
                format!(
                    "(service {name}) (deployment {deployment}) deployment failed: tasks failed to start."
                ),
            );
            add_event(
                svc,
                format!("(service {name}) rolling back to deployment {to}."),
            );
            format!(
                "service {name}: deployment {deployment} FAILED by the circuit breaker, rolling back to {to}"
            )
        }
    }
}

pub(super) fn add_event(svc: &mut Service, message: String) {
    svc.events.push_back((wall(), message, hex_id(8)));
    while svc.events.len() > 100 {
        svc.events.pop_front();
    }
}

/// Starts stopping a running task the ECS way, for `reason`: it deregisters (DEACTIVATING), then
/// its containers get their stop signal ([`Action::StopTask`]).
fn begin_stop(t: &mut Task, reason: String, code: StopCode, actions: &mut Vec<Action>) {
    t.desired_status = TaskStatus::Stopped;
    t.last_status = TaskStatus::Deactivating;
    t.stopping_at = Some(wall());
    t.stopped_reason = Some(reason);
    t.stop_code = Some(code);
    actions.push(Action::StopTask(t.id.clone()));
}

fn mark_stopped(t: &mut Task, reason: String, code: StopCode) {
    t.last_status = TaskStatus::Stopped;
    t.desired_status = TaskStatus::Stopped;
    t.stopped_at = Some(wall());
    t.stopped_reason.get_or_insert(reason);
    t.stop_code.get_or_insert(code);
}

/// The longest ECS waits between launches of a service whose tasks keep failing to start
/// (AWS: "incrementally increased up to a maximum of 27 minutes").
pub const THROTTLE_MAX_SECS: u32 = 27 * 60;
/// The wait after the first failed start; each further failure in a row doubles it. AWS does not
/// document the steps, only the maximum: this is localaws's choice.
pub const THROTTLE_FIRST_SECS: u32 = 5;

/// ECS's service throttle logic (developer guide, "Amazon ECS service throttle logic"): when a
/// service's tasks repeatedly fail to start (`PENDING` straight to `STOPPED`), the time between
/// launches grows, up to [`THROTTLE_MAX_SECS`]; the service never stops retrying, a task that
/// reaches `RUNNING` or a new task definition ends the throttling at once, and tasks stopped after
/// running (failed health checks, an exiting container) never start it.
#[derive(Debug, Clone, Default)]
pub struct Throttle {
    /// Tasks in a row that failed to start.
    pub failures: u32,
    /// No launch before this.
    pub until: Option<Instant>,
}

impl Throttle {
    /// A task of the service failed to start at `now`: the next launch waits.
    fn failed(&mut self, now: Instant, clock: crate::clock::Clock) -> bool {
        self.failures = self.failures.saturating_add(1);
        let secs = THROTTLE_FIRST_SECS
            .saturating_mul(1u32 << (self.failures - 1).min(16))
            .min(THROTTLE_MAX_SECS);
        self.until = Some(now + clock.secs(secs));
        // "Repeatedly": said once, at the second failure in a row.
        self.failures == 2
    }

    /// A task reached `RUNNING`, or the service got a new task definition.
    fn reset(&mut self) {
        *self = Throttle::default();
    }

    fn holds(&self, now: Instant) -> bool {
        self.until.is_some_and(|u| now < u)
    }
}

/// One reconcile step: notice dead tasks, then run every service's scheduler.
pub(super) fn step(state: &mut State, ctx: &Ctx<'_>, actions: &mut Vec<Action>) {
    let disconnect = ctx.plane.stack().cluster.agent_disconnect_timeout;
    // Tasks whose process died.
    for t in state.tasks.values_mut() {
        if t.last_status != TaskStatus::Running || t.desired_status != TaskStatus::Running {
            continue;
        }
        match t.lost {
            Some(since) if ctx.elapsed(since, disconnect) => {
                mark_stopped(
                    t,
                    "Task stopped because its container instance was terminated".into(),
                    StopCode::TerminationNotice,
                );
                ctx.events.emit(
                        "ecs",
                        format!(
                            "task {} STOPPED: its instance {} was terminated (noticed after the agent disconnect timeout)",
                            t.id, t.instance
                        ),
                    );
                actions.push(Action::CleanUpTask(t.id.clone()));
            }
            Some(_) => {}
            None => {
                // One look at the data plane per task and step (it takes the tasks' lock).
                let exit = match ctx.plane.task_end(&t.id) {
                    TaskEnd::Running => continue,
                    TaskEnd::Ending => {
                        // An essential container of a task of several exited and the agent is
                        // stopping the others: the task is stopping now, for that reason (not
                        // replaced later for the failed health checks of a draining container);
                        // it leaves its target groups as any stopping task does.
                        begin_stop(
                            t,
                            "Essential container in task exited".into(),
                            StopCode::EssentialContainerExited,
                            actions,
                        );
                        ctx.events.emit(
                            "ecs",
                            format!("task {} stopping: essential container exited", t.id),
                        );
                        continue;
                    }
                    TaskEnd::Exited(exit) => exit,
                };
                if exit.is_some() {
                    t.exit_codes = exit_codes(ctx.plane.container_exits(&t.id));
                }
                mark_stopped(
                    t,
                    "Essential container in task exited".into(),
                    StopCode::EssentialContainerExited,
                );
                ctx.events.emit(
                    "ecs",
                    format!("task {} STOPPED: essential container exited", t.id),
                );
                actions.push(Action::CleanUpTask(t.id.clone()));
            }
        }
    }
    // Container health checks that are due.
    for t in state.tasks.values_mut() {
        if t.last_status != TaskStatus::Running || t.is_stopping() || t.lost.is_some() {
            continue;
        }
        for h in &mut t.health {
            if !h.running && ctx.now >= h.next {
                h.running = true;
                actions.push(Action::HealthCheck(t.id.clone(), h.container.clone()));
            }
        }
    }
    let names: Vec<String> = state.services.keys().cloned().collect();
    for name in names {
        schedule_service(state, ctx, &name, actions);
    }
    // Keep the most recent stopped tasks only.
    let stopped = state.tasks.values().filter(|t| !t.is_live()).count();
    if stopped > KEEP_STOPPED {
        let mut old: Vec<(SystemTime, String)> = state
            .tasks
            .values()
            .filter(|t| !t.is_live())
            .map(|t| (t.stopped_at.unwrap_or(t.created_at), t.id.clone()))
            .collect();
        old.sort();
        for (_, id) in old.iter().take(stopped - KEEP_STOPPED) {
            state.tasks.remove(id);
        }
    }
}

fn healthy(t: &Task, ctx: &Ctx<'_>) -> bool {
    if t.last_status != TaskStatus::Running || t.lost.is_some() {
        return false;
    }
    // With a container health check, ECS counts the task healthy only once it passes.
    if t.checked() && t.health_status() != HealthStatus::Healthy {
        return false;
    }
    match (&t.target_group, t.endpoint) {
        (Some(tg), Some(addr)) => {
            ctx.plane
                .target_group(tg)
                .ok()
                .and_then(|g| g.health_of(addr))
                == Some(TargetHealth::Healthy)
        }
        (None, _) => true,
        (Some(_), None) => false,
    }
}

fn elb_unhealthy(t: &Task, ctx: &Ctx<'_>) -> bool {
    match (&t.target_group, t.endpoint) {
        (Some(tg), Some(addr)) => {
            ctx.plane
                .target_group(tg)
                .ok()
                .and_then(|g| g.health_of(addr))
                == Some(TargetHealth::Unhealthy)
        }
        _ => false,
    }
}

/// What the scheduler keeps running: a whole service (controller `ECS`) or one task set.
struct Unit {
    set: Option<String>,
    /// The rolling deployment the unit is (an `ECS` service's primary).
    deployment: Option<String>,
    task_definition: (String, u32),
    desired: u32,
    target_group: Option<String>,
    /// The container the load balancer reaches.
    serving: Option<String>,
}

impl Unit {
    /// Whether `t` is one of the unit's own tasks, not one it replaces: of its deployment (an
    /// `ECS` service), else of its task definition.
    fn owns(&self, t: &Task) -> bool {
        match &self.deployment {
            Some(d) => t.deployment.as_ref() == Some(d),
            None => t.task_definition == self.task_definition,
        }
    }
}

/// Runs the scheduler for a service: the service itself, or each of its task sets; then says
/// whether it reached a steady state and drops task sets that finished draining.
fn schedule_service(state: &mut State, ctx: &Ctx<'_>, name: &str, actions: &mut Vec<Action>) {
    let Some(svc) = state.services.get(name) else {
        return;
    };
    let units: Vec<Unit> = if svc.controller == "CODE_DEPLOY" {
        svc.task_sets
            .iter()
            .map(|ts| Unit {
                set: Some(ts.id.clone()),
                deployment: None,
                task_definition: ts.task_definition.clone(),
                desired: if ts.status == TaskSetStatus::Draining {
                    0
                } else {
                    ts.computed_desired(svc.desired)
                },
                target_group: ts.load_balancer.as_ref().map(|l| l.target_group.clone()),
                serving: ts.load_balancer.as_ref().map(|l| l.container_name.clone()),
            })
            .collect()
    } else {
        vec![Unit {
            set: None,
            deployment: svc.primary().map(|d| d.id.clone()),
            task_definition: svc.task_definition.clone(),
            desired: svc.desired,
            target_group: svc.load_balancer.as_ref().map(|l| l.target_group.clone()),
            serving: svc.load_balancer.as_ref().map(|l| l.container_name.clone()),
        }]
    };
    let mut steady = true;
    for unit in &units {
        let unit_steady = schedule(state, ctx, name, unit, actions);
        steady &= unit_steady;
        if let (Some(set), Some(s)) = (&unit.set, state.services.get_mut(name))
            && let Some(ts) = s.task_sets.iter_mut().find(|t| &t.id == set)
            && ts.steady != unit_steady
        {
            ts.steady = unit_steady;
            ts.updated = wall();
        }
    }
    // A draining task set goes once its last task stopped.
    let live_sets: std::collections::BTreeSet<String> = state
        .tasks
        .values()
        .filter(|t| t.is_live() && t.service.as_deref() == Some(name))
        .filter_map(|t| t.task_set.clone())
        .collect();
    let live_deployments: std::collections::BTreeSet<String> = state
        .tasks
        .values()
        .filter(|t| t.is_live() && t.service.as_deref() == Some(name))
        .filter_map(|t| t.deployment.clone())
        .collect();
    if let Some(s) = state.services.get_mut(name) {
        let before = s.task_sets.len();
        s.task_sets
            .retain(|ts| ts.status != TaskSetStatus::Draining || live_sets.contains(&ts.id));
        if s.task_sets.len() != before {
            ctx.events.emit(
                "ecs",
                format!("service {name}: a draining task set is gone"),
            );
        }
        if steady && !s.steady {
            add_event(s, format!("(service {name}) has reached a steady state."));
        }
        if steady
            && let Some(d) = s.primary()
            && d.rollout == RolloutState::InProgress
        {
            let id = d.id.clone();
            s.rollout_steady(&|d| live_deployments.contains(d));
            add_event(
                s,
                format!("(service {name}) (deployment {id}) deployment completed."),
            );
            ctx.events
                .emit("ecs", format!("service {name}: deployment {id} COMPLETED"));
        }
        s.steady = steady;
    }
}

/// Why a service's task has no instance: ECS's sentence about the closest match (after its
/// "unable to place a task" event), and localaws's own words for its log.
struct Unplaced {
    closest: String,
    why: String,
}

/// Where the next task of service `name` goes: among the ACTIVE, in-service instances that do
/// not already hold its static host port (ECS: "already using a port required by your task"),
/// the one with the fewest of the service's tasks, then the fewest tasks.
fn placement(
    state: &State,
    name: &str,
    td: &TaskDefinition,
    instance_ok: &dyn Fn(&State, &str) -> bool,
) -> Result<String, Unplaced> {
    // The host ports a task of `td` holds on its instance whatever runs there.
    let ports = td.static_host_ports();
    let held = |ec2: &str| -> Option<u16> {
        ports.iter().copied().find(|p| {
            state.tasks.values().any(|t| {
                t.instance == ec2 && t.is_live() && t.definition.static_host_ports().contains(p)
            })
        })
    };
    let holds_port = |ec2: &str| held(ec2).is_some();
    let active: Vec<&String> = state
        .container_instances
        .keys()
        .filter(|ec2| instance_ok(state, ec2))
        .collect();
    let load = |ec2: &str| {
        let live = state
            .tasks
            .values()
            .filter(|t| t.instance == ec2 && t.is_live());
        let of_service = live
            .clone()
            .filter(|t| t.service.as_deref() == Some(name))
            .count();
        (of_service, live.count())
    };
    if let Some(instance) = active
        .iter()
        .filter(|ec2| !holds_port(ec2))
        .min_by_key(|ec2| load(ec2))
    {
        return Ok((*instance).clone());
    }
    let port = active.first().and_then(|ec2| held(ec2));
    Err(match (active.first(), port) {
        (Some(closest), Some(port)) => Unplaced {
            closest: format!(
                " The closest matching container-instance {} is already using a port required by your task.",
                state
                    .container_instances
                    .get(*closest)
                    .map_or(closest.as_str(), |c| c.arn.as_str())
            ),
            why: format!(
                "every ACTIVE container instance already holds host port {port}, which its task definition maps statically"
            ),
        },
        _ => Unplaced {
            closest: String::new(),
            why: "no ACTIVE container instance".to_owned(),
        },
    })
}

/// One scheduler pass over `unit` of service `name`; returns whether it is steady.
#[expect(
    clippy::too_many_lines,
    reason = "one pass of ECS's service scheduler in its order (unhealthy tasks, replacements within min healthy, scale in, launches within max percent), sharing the counts it updates; to be split with the ECS-native deployments"
)]
fn schedule(
    state: &mut State,
    ctx: &Ctx<'_>,
    name: &str,
    unit: &Unit,
    actions: &mut Vec<Action>,
) -> bool {
    let Some(svc) = state.services.get(name).cloned() else {
        return false;
    };
    let instance_ok = |state: &State, ec2: &str| {
        state
            .container_instances
            .get(ec2)
            .is_some_and(|c| c.status == InstanceStatus::Active)
            && state
                .instances
                .get(ec2)
                .is_some_and(|i| i.lifecycle == Lifecycle::InService)
    };
    let mine: Vec<Task> = state
        .tasks
        .values()
        .filter(|t| t.service.as_deref() == Some(name) && t.task_set == unit.set && t.is_live())
        .cloned()
        .collect();
    // Tasks failing load balancer health checks past the grace period are replaced.
    let mut stop: Vec<(String, String)> = Vec::new();
    for t in &mine {
        if !t.is_stopping()
            && t.last_status == TaskStatus::Running
            && t.lost.is_none()
            && t.started.is_some_and(|s| ctx.elapsed(s, svc.grace))
            && elb_unhealthy(t, ctx)
        {
            stop.push((
                t.id.clone(),
                format!(
                    "Task failed ELB health checks in (target-group {})",
                    t.target_group.as_deref().unwrap_or("")
                ),
            ));
        }
    }
    // A container failing its health check: ECS stops the task and the scheduler replaces it.
    for t in &mine {
        if !t.is_stopping()
            && t.last_status == TaskStatus::Running
            && t.health_status() == HealthStatus::Unhealthy
            && !stop.iter().any(|(id, _)| id == &t.id)
        {
            stop.push((t.id.clone(), "Task failed container health checks".into()));
        }
    }
    let failing: std::collections::BTreeSet<&str> =
        stop.iter().map(|(id, _)| id.as_str()).collect();
    // The circuit breaker's stage 2: tasks replaced for failing their health checks.
    let failed_checks: Vec<String> = mine
        .iter()
        .filter(|t| failing.contains(t.id.as_str()))
        .filter_map(|t| t.deployment.clone())
        .collect();
    let (keep, replace): (Vec<&Task>, Vec<&Task>) = mine
        .iter()
        .filter(|t| !t.is_stopping() && !failing.contains(t.id.as_str()) && t.lost.is_none())
        .partition(|t| instance_ok(state, &t.instance) && unit.owns(t));
    let total = mine.len() as u32;
    let desired = unit.desired;
    let ceiling = (desired * svc.max_percent / 100).max(desired);
    let floor = (desired * svc.min_healthy).div_ceil(100);
    let mut healthy_count = keep
        .iter()
        .chain(replace.iter())
        .filter(|t| healthy(t, ctx))
        .count() as u32;
    // Stop tasks that must go while the healthy floor allows (unhealthy ones at once), oldest
    // first.
    let mut replace_sorted = replace.clone();
    replace_sorted.sort_by_key(|t| t.created_at);
    for t in &replace_sorted {
        if t.last_status != TaskStatus::Running {
            continue;
        }
        if healthy(t, ctx) {
            if healthy_count.saturating_sub(1) < floor {
                continue;
            }
            healthy_count -= 1;
        }
        let why = if !unit.owns(t) {
            "Task replaced by a deployment of a new task definition"
        } else {
            "Container instance is DRAINING: task moved to another instance"
        };
        stop.push((t.id.clone(), why.into()));
    }
    // Scale in.
    let keep_n = keep.len() as u32;
    if replace.is_empty() && keep_n > desired {
        let mut extra: Vec<&&Task> = keep.iter().collect();
        extra.sort_by_key(|t| (healthy(t, ctx), std::cmp::Reverse(t.created_at)));
        for t in extra.iter().take((keep_n - desired) as usize) {
            stop.push((t.id.clone(), "Service scaled in".into()));
        }
    }
    for (id, reason) in &stop {
        if let Some(t) = state.tasks.get_mut(id)
            && t.last_status == TaskStatus::Running
            && !t.is_stopping()
        {
            begin_stop(
                t,
                reason.clone(),
                StopCode::ServiceSchedulerInitiated,
                actions,
            );
        }
    }
    if let Some(s) = state.services.get_mut(name) {
        for (id, reason) in &stop {
            add_event(
                s,
                format!("(service {name}) has stopped 1 running tasks: (task {id}). {reason}."),
            );
        }
        if let Some(deployment) = &unit.deployment {
            for d in &failed_checks {
                if let Some(what) = s.task_failed(d) {
                    ctx.events.emit("ecs", tripped(s, &what));
                }
            }
            // A healthy task of the primary deployment starts its count over.
            if keep.iter().any(|t| healthy(t, ctx)) {
                s.task_healthy(deployment);
            }
        }
    }
    // Start what is missing, within maximumPercent, unless the throttle logic holds launches.
    let want = desired.saturating_sub(keep_n);
    let room = ceiling.saturating_sub(total);
    // A deployment the circuit breaker failed launches nothing more; nor does one that stopped
    // being the primary during this pass (a rollback).
    let failed = unit.set.is_none()
        && state.services.get(name).is_some_and(|s| {
            !s.launches() || s.primary().map(|d| &d.id) != unit.deployment.as_ref()
        });
    let start = if svc.throttle.holds(ctx.now) || failed {
        0
    } else {
        want.min(room)
    };
    let Ok(td) = state
        .task_definition(&format!(
            "{}:{}",
            unit.task_definition.0, unit.task_definition.1
        ))
        .cloned()
    else {
        return false;
    };
    let mut started = Vec::new();
    for _ in 0..start {
        let instance = match placement(state, name, &td.definition, &instance_ok) {
            Ok(instance) => instance,
            Err(unplaced) => {
                if let Some(s) = state.services.get_mut(name)
                    && s.unplaceable_since.is_none()
                {
                    s.unplaceable_since = Some(ctx.now);
                    add_event(
                        s,
                        format!(
                            "(service {name}) was unable to place a task because no container instance met all of its requirements.{}",
                            unplaced.closest
                        ),
                    );
                    ctx.events.emit(
                        "ecs",
                        format!("service {name} cannot place a task: {}", unplaced.why),
                    );
                }
                break;
            }
        };
        let id = ctx.plane.new_task_id();
        state.tasks.insert(
            id.clone(),
            Task {
                id: id.clone(),
                arn: crate::arn::regional("ecs", &format!("task/{}/{id}", state.cluster)),
                task_definition: (td.family.clone(), td.revision),
                definition: td.definition.clone(),
                service: Some(name.to_owned()),
                instance,
                endpoint: None,
                target_group: unit.target_group.clone(),
                serving: unit.serving.clone(),
                last_status: TaskStatus::Provisioning,
                desired_status: TaskStatus::Running,
                created_at: wall(),
                started_at: None,
                started: None,
                stopping_at: None,
                stopped_at: None,
                stopped_reason: None,
                stop_code: None,
                exit_codes: BTreeMap::new(),
                lost: None,
                health: Vec::new(),
                task_set: unit.set.clone(),
                deployment: unit.deployment.clone(),
            },
        );
        actions.push(Action::StartTask(id.clone()));
        started.push(id);
    }
    let running = mine
        .iter()
        .filter(|t| t.last_status == TaskStatus::Running)
        .count() as u32;
    let steady = stop.is_empty()
        && started.is_empty()
        && replace.is_empty()
        && keep_n == desired
        && running == desired
        && keep.iter().all(|t| healthy(t, ctx))
        && !mine.iter().any(|t| t.is_stopping());
    if !started.is_empty()
        && let Some(s) = state.services.get_mut(name)
    {
        {
            s.unplaceable_since = None;
            add_event(
                s,
                format!(
                    "(service {name}) has started {} tasks: {}.",
                    started.len(),
                    started
                        .iter()
                        .map(|id| format!("(task {id})"))
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
            );
        }
    }
    steady
}

/// Starts a task recorded as `PROVISIONING` and registers it in its target group.
pub(super) async fn start_task(c: &Control, id: String) {
    let Some((td, arn, revision, instance, tg, serving)) = c.read(|st| {
        st.tasks.get(&id).map(|t| {
            (
                t.definition.clone(),
                t.arn.clone(),
                t.task_definition.1,
                t.instance.clone(),
                t.target_group.clone(),
                t.serving.clone(),
            )
        })
    }) else {
        return;
    };
    let result = c
        .plane()
        .run_task_as(
            id.clone(),
            &td,
            Some((&arn, revision)),
            serving.as_deref(),
            Some(&instance),
            &[],
        )
        .await;
    let registered = match (&result, &tg) {
        (Ok(_), Some(tg)) => c.plane().register_task(&id, tg).map_err(|e| e.to_string()),
        _ => Ok(()),
    };
    c.write(|st, c| {
        let Some(t) = st.tasks.get_mut(&id) else {
            return;
        };
        match (&result, registered) {
            (Ok(info), Ok(())) => {
                t.last_status = TaskStatus::Running;
                t.endpoint = Some(info.endpoint);
                t.started_at = Some(wall());
                t.started = Some(Instant::now());
                let checked: &Task = t;
                let health: Vec<ContainerHealth> = checked
                    .definition
                    .container_definitions
                    .iter()
                    .filter_map(|k| {
                        let (_, interval, ..) = health_settings(checked, &k.name)?;
                        Some(ContainerHealth {
                            container: k.name.clone(),
                            essential: k.is_essential(),
                            status: HealthStatus::Unknown,
                            failures: 0,
                            next: Instant::now() + c.clock().secs(interval),
                            running: false,
                        })
                    })
                    .collect();
                t.health = health;
                c.events().emit(
                    "ecs",
                    format!(
                        "task {id} RUNNING on {} at {}{}",
                        t.instance,
                        info.endpoint,
                        tg.as_ref()
                            .map(|g| format!(", registered in {g}"))
                            .unwrap_or_default()
                    ),
                );
            }
            (Err(e), _) => {
                mark_stopped(
                    t,
                    format!("Task failed to start: {e}"),
                    StopCode::TaskFailedToStart,
                );
                c.events()
                    .emit("ecs", format!("task {id} failed to start: {e}"));
            }
            (Ok(_), Err(e)) => {
                mark_stopped(
                    t,
                    format!("Task failed to register in its target group: {e}"),
                    StopCode::TaskFailedToStart,
                );
            }
        }
        let running = t.last_status == TaskStatus::Running;
        let deployment = t.deployment.clone();
        let Some(svc) = t.service.clone().and_then(|n| st.services.get_mut(&n)) else {
            return;
        };
        // The circuit breaker's stage 1: a task that never reached RUNNING.
        if !running
            && let Some(d) = &deployment
            && let Some(what) = svc.task_failed(d)
        {
            c.events().emit("ecs", tripped(svc, &what));
        }
        if running {
            svc.throttle.reset();
        } else if svc.throttle.failed(Instant::now(), c.clock()) {
            let name = svc.name.clone();
            add_event(
                svc,
                format!("(service {name}) is unable to consistently start tasks successfully."),
            );
            c.events().emit(
                "ecs",
                format!(
                    "service {name} is unable to consistently start tasks successfully: launches throttled"
                ),
            );
        }
    });
}

/// Stops a task the ECS way: deregister, wait for the deregistration delay, SIGTERM,
/// `stopTimeout`, SIGKILL.
pub(super) async fn stop_task(c: &Control, id: String) {
    let drains = c.plane().deregister_task(&id).unwrap_or_default();
    for gone in drains {
        gone.cancelled().await;
    }
    c.write(|st, _| {
        if let Some(t) = st.tasks.get_mut(&id)
            && t.is_live()
        {
            t.last_status = TaskStatus::Stopping;
        }
    });
    let outcome = c.plane().stop_task_containers(&id).await;
    c.write(|st, c| {
        if let Some(t) = st.tasks.get_mut(&id) {
            if let Ok((_, exits)) = &outcome {
                t.exit_codes = exit_codes(exits.clone());
            }
            let reason = t.stopped_reason.clone().unwrap_or_default();
            mark_stopped(t, reason, StopCode::ServiceSchedulerInitiated);
            c.events().emit(
                "ecs",
                format!(
                    "task {id} STOPPED ({})",
                    match &outcome {
                        Ok((o, _)) => o.to_string(),
                        Err(e) => e.to_string(),
                    }
                ),
            );
        }
    });
}

/// Each container's exit code by name, as `DescribeTasks` reports them.
fn exit_codes(exits: Vec<(String, crate::dataplane::TaskExit)>) -> BTreeMap<String, i32> {
    exits
        .into_iter()
        .map(|(name, exit)| (name, exit.code()))
        .collect()
}

/// Runs one health check of container `container` and records its result.
pub(super) async fn health_check(c: &Control, id: String, container: String) {
    let Some((command, interval, timeout, retries, start_period, started)) = c.read(|st| {
        let t = st.tasks.get(&id)?;
        let (command, interval, timeout, retries, start_period) = health_settings(t, &container)?;
        Some((
            command,
            interval,
            timeout,
            retries,
            start_period,
            t.started?,
        ))
    }) else {
        return;
    };
    let clock = c.clock();
    let check = c
        .plane()
        .exec_in_task(
            &id,
            &container,
            &command,
            clock.timeout(std::time::Duration::from_secs(u64::from(timeout))),
        )
        .await
        .unwrap_or_else(|e| crate::dataplane::Check::failed(e.to_string()));
    let passed = check.passed;
    let every = clock.secs(interval).max(MIN_REAL_CHECK_INTERVAL);
    c.write(|st, c| {
        let Some(t) = st.tasks.get_mut(&id) else {
            return;
        };
        let Some(h) = t.health.iter_mut().find(|h| h.container == container) else {
            return;
        };
        let now = Instant::now();
        h.running = false;
        h.next = now + every;
        let before = h.status;
        if passed {
            h.failures = 0;
            h.status = HealthStatus::Healthy;
        } else if now >= started + clock.secs(start_period).max(MIN_REAL_START) {
            h.failures = h.failures.saturating_add(1);
            if h.failures >= retries {
                h.status = HealthStatus::Unhealthy;
            }
        }
        if h.status != before {
            let why = if passed {
                String::new()
            } else {
                format!(" (the check: {})", check.said)
            };
            c.events().emit(
                "ecs",
                format!(
                    "task {id} container health {} (container {container}){why}",
                    h.status
                ),
            );
        }
    });
}

/// What `RegisterTaskDefinition` and `UpdateService` need from a request.
impl Control {
    /// `RegisterTaskDefinition`: a new revision of the family.
    pub fn register_task_definition(
        &self,
        definition: TaskDefinition,
        raw: serde_json::Value,
    ) -> Result<TaskDefinitionRevision, ControlError> {
        let stack = self.plane().stack();
        if definition.family.is_empty() {
            return Err(ControlError::Validation("family is required".into()));
        }
        definition
            .check_containers()
            .map_err(|(field, message)| ControlError::Validation(format!("{field}: {message}")))?;
        for c in &definition.container_definitions {
            if stack.image(&c.image).is_none() {
                return Err(ControlError::Validation(format!(
                    "containerDefinitions.image {:?} maps to no local image; known: {}",
                    c.image,
                    stack.images.keys().cloned().collect::<Vec<_>>().join(", ")
                )));
            }
        }
        self.write(|st, _| {
            let revisions = st
                .task_definitions
                .entry(definition.family.clone())
                .or_default();
            let revision = revisions.last().map_or(1, |r| r.revision + 1);
            let rev = TaskDefinitionRevision {
                family: definition.family.clone(),
                revision,
                arn: task_definition_arn(&definition.family, revision),
                definition,
                raw,
                registered_at: wall(),
            };
            revisions.push(rev.clone());
            Ok(rev)
        })
    }

    /// `UpdateService`.
    pub fn update_service(
        &self,
        name: &str,
        update: &ServiceUpdate,
    ) -> Result<Service, ControlError> {
        self.write(|st, _| {
            let svc = st.service(name)?.clone();
            let td = match &update.task_definition {
                Some(r) => {
                    if svc.controller == "CODE_DEPLOY" {
                        return Err(ControlError::Validation(
                            "Unable to update task definition on services with a CODE_DEPLOY deployment controller. Use AWS CodeDeploy to trigger a new deployment.".into(),
                        ));
                    }
                    let t = st.task_definition(r)?;
                    Some((t.family.clone(), t.revision))
                }
                None => None,
            };
            if update.circuit_breaker.is_some() && svc.controller != "ECS" {
                return Err(ControlError::Validation(
                    "The deployment circuit breaker can only be used for services using the rolling update (ECS) deployment type.".into(),
                ));
            }
            let s = st
                .services
                .get_mut(&svc.name)
                .ok_or_else(|| ControlError::not_found("service", name))?;
            if let Some(cb) = update.circuit_breaker {
                s.circuit_breaker = Some(cb);
            }
            let mut redeploy = update.force_new_deployment;
            if let Some(td) = td {
                if s.task_definition != td {
                    s.throttle.reset();
                    redeploy = true;
                }
                s.task_definition = td;
                s.steady = false;
            }
            if redeploy && s.controller == "ECS" {
                s.deploy();
                s.steady = false;
            }
            if let Some(d) = update.desired {
                s.desired = d;
                s.steady = false;
            }
            if let Some(p) = update.min_healthy {
                s.min_healthy = p;
            }
            if let Some(p) = update.max_percent {
                s.max_percent = p;
            }
            if let Some(g) = update.grace {
                s.grace = g;
            }
            Ok(s.clone())
        })
    }

    /// `UpdateContainerInstancesState`: `ACTIVE` or `DRAINING`. Returns the ones changed and
    /// the references that matched nothing.
    pub fn update_container_instances_state(
        &self,
        references: &[String],
        status: InstanceStatus,
    ) -> Result<(Vec<ContainerInstance>, Vec<String>), ControlError> {
        self.write(|st, c| {
            let mut changed = Vec::new();
            let mut missing = Vec::new();
            for r in references {
                let Some(ec2) = st.container_instance(r).map(|ci| ci.ec2_instance.clone()) else {
                    missing.push(r.clone());
                    continue;
                };
                if let Some(ci) = st.container_instances.get_mut(&ec2) {
                    if ci.status != InstanceStatus::Inactive && ci.status != status {
                        ci.status = status;
                        c.events()
                            .emit("ecs", format!("container instance on {ec2} {status}"));
                    }
                    changed.push(ci.clone());
                }
            }
            Ok((changed, missing))
        })
    }
}

/// What `UpdateService` may change, each value already within the range the API takes
/// (checked once, where the request is read).
#[derive(Debug, Clone, Default)]
pub struct ServiceUpdate {
    /// `desiredCount`.
    pub desired: Option<u32>,
    /// `taskDefinition`.
    pub task_definition: Option<String>,
    /// `deploymentConfiguration.minimumHealthyPercent`.
    pub min_healthy: Option<u32>,
    /// `deploymentConfiguration.maximumPercent`.
    pub max_percent: Option<u32>,
    /// `healthCheckGracePeriodSeconds`.
    pub grace: Option<u32>,
    /// `deploymentConfiguration.deploymentCircuitBreaker`.
    pub circuit_breaker: Option<CircuitBreakerConfig>,
    /// `forceNewDeployment`: a new deployment even of the same task definition.
    pub force_new_deployment: bool,
}

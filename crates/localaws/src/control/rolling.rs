//! A rolling service's deployments (deployment controller `ECS`, strategy `ROLLING`), in the two
//! views ECS gives of them:
//!
//! - `DescribeServices`' `deployments[]` ([`RollingDeployment`]): a `PRIMARY` deployment per
//!   change of task definition (or `forceNewDeployment`), the earlier ones `ACTIVE` until their
//!   last task is gone; each with its rollout state (`IN_PROGRESS` → `COMPLETED` at the service's
//!   steady state, or `FAILED`) and `failedTasks`. A task belongs to the deployment that started
//!   it (its `startedBy`), so `forceNewDeployment` of the same task definition replaces every
//!   task.
//! - The service deployments of `ListServiceDeployments` / `DescribeServiceDeployments`
//!   ([`ServiceDeployment`]): the move to one deployment's revision, `IN_PROGRESS` →
//!   `SUCCESSFUL`, or `STOPPED` (a newer one started, or it failed without rollback), or
//!   `ROLLBACK_IN_PROGRESS` → `ROLLBACK_SUCCESSFUL`. A revision's ARN ends in its deployment's
//!   number (`ecs-svc/N` ↔ `service-revision/.../N`), the coupling Terraform relies on.
//!
//! The deployment circuit breaker, as the developer guide describes it ("Deployment circuit
//! breaker"): stage 1 counts the deployment's tasks that fail to reach `RUNNING` (localaws: a task
//! stopped with `TaskFailedToStart`); stage 2 counts its tasks replaced for failing their health
//! checks (load balancer or container). A healthy task of the deployment resets the count
//! (`resetOnHealthyTask`, default true). At the threshold (`BOUNDED_PERCENT` 50 of the desired
//! count, within 3 to 200: [`CircuitBreakerConfig::threshold`]) the deployment is `FAILED`, its
//! reason "ECS deployment circuit breaker: tasks failed to start.", and it launches no more
//! tasks; with `rollback` the most recent `COMPLETED` deployment becomes `PRIMARY` again
//! (`IN_PROGRESS`) and the service's task definition is its own. `StopServiceDeployment` with
//! `ROLLBACK` rolls back the same way, breaker or not.
//!
//! Where the guide is silent, localaws's choices: a task that reached `RUNNING` and whose
//! essential container then exited is not counted (AWS re:Post: "If a task successfully starts
//! [...] but then stops, then the circuit breaker might not activate"); the rollback keeps the
//! completed deployment's own tasks that still run (with `minimumHealthyPercent` 100 that is all
//! of them) rather than launching new ones; a rollback with no completed deployment to go back to
//! ends `ROLLBACK_FAILED` and the failed deployment launches nothing more; the words of a service
//! deployment's `statusReason` where AWS documents none are localaws's own.

use std::time::SystemTime;

use super::ecs::Service;
use super::wall;
use stack::CircuitBreakerConfig;

/// Service deployments kept per service (ECS keeps 90 days of them).
const KEEP_SERVICE_DEPLOYMENTS: usize = 100;

/// A deployment's place in its service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeploymentRole {
    /// The one the service runs toward (`PRIMARY`).
    Primary,
    /// An earlier one whose tasks are being replaced (`ACTIVE`).
    Active,
}

impl DeploymentRole {
    /// As ECS writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Primary => "PRIMARY",
            Self::Active => "ACTIVE",
        }
    }
}

/// A deployment's `rolloutState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolloutState {
    /// Started, the service not yet steady on it.
    InProgress,
    /// The service reached a steady state on it.
    Completed,
    /// It failed (the circuit breaker, or a requested rollback): it launches no more tasks.
    Failed,
}

impl RolloutState {
    /// As ECS writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InProgress => "IN_PROGRESS",
            Self::Completed => "COMPLETED",
            Self::Failed => "FAILED",
        }
    }
}

/// One deployment of a rolling service, as `DescribeServices` lists it.
#[derive(Debug, Clone)]
pub struct RollingDeployment {
    /// `ecs-svc/` and 19 digits.
    pub id: String,
    /// The task definition it runs: family and revision.
    pub task_definition: (String, u32),
    /// `PRIMARY` or `ACTIVE`.
    pub role: DeploymentRole,
    /// Where its rollout is.
    pub rollout: RolloutState,
    /// Why it is where it is (`rolloutStateReason`).
    pub reason: String,
    /// Tasks counted by the circuit breaker (`failedTasks`).
    pub failed_tasks: u32,
    /// Created (wall clock).
    pub created: SystemTime,
    /// Last change (wall clock).
    pub updated: SystemTime,
}

/// A service deployment's `status`, the ones localaws's rolling deployments pass through (the
/// API's filters take all of ECS's, [`SERVICE_DEPLOYMENT_STATUSES`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceDeploymentStatus {
    /// Moving the service to its revision.
    InProgress,
    /// The service is steady on its revision.
    Successful,
    /// A newer deployment started, or it failed with rollback off.
    Stopped,
    /// It failed (or a rollback was requested): the last completed revision is coming back.
    RollbackInProgress,
    /// The last completed revision is back.
    RollbackSuccessful,
    /// A rollback was asked for and there was nothing completed to go back to.
    RollbackFailed,
}

/// Every `ServiceDeploymentStatus` ECS has.
pub(crate) const SERVICE_DEPLOYMENT_STATUSES: [&str; 9] = [
    "PENDING",
    "SUCCESSFUL",
    "STOPPED",
    "STOP_REQUESTED",
    "IN_PROGRESS",
    "ROLLBACK_REQUESTED",
    "ROLLBACK_IN_PROGRESS",
    "ROLLBACK_SUCCESSFUL",
    "ROLLBACK_FAILED",
];

impl ServiceDeploymentStatus {
    /// As ECS writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InProgress => "IN_PROGRESS",
            Self::Successful => "SUCCESSFUL",
            Self::Stopped => "STOPPED",
            Self::RollbackInProgress => "ROLLBACK_IN_PROGRESS",
            Self::RollbackSuccessful => "ROLLBACK_SUCCESSFUL",
            Self::RollbackFailed => "ROLLBACK_FAILED",
        }
    }

    /// Still going (a rollback may still be asked for).
    pub(crate) fn is_ongoing(self) -> bool {
        matches!(self, Self::InProgress | Self::RollbackInProgress)
    }
}

/// A rollback, as a service deployment reports it (`rollback`).
#[derive(Debug, Clone)]
pub struct ServiceRollback {
    /// Why.
    pub reason: String,
    /// When it started.
    pub started: SystemTime,
    /// The deployment rolled back to (its revision is the one deployed).
    pub to: String,
}

/// A service deployment: the move of a service to one deployment's revision.
#[derive(Debug, Clone)]
pub struct ServiceDeployment {
    /// The ARN's last segment.
    pub id: String,
    /// The deployment it moves to (`ecs-svc/N`).
    pub target: String,
    /// The deployments that ran when it started.
    pub sources: Vec<String>,
    /// Where it is.
    pub status: ServiceDeploymentStatus,
    /// Why, when it ended other than by succeeding.
    pub reason: Option<String>,
    /// Created (wall clock).
    pub created: SystemTime,
    /// Finished (succeeded, or rolled back).
    pub finished: Option<SystemTime>,
    /// Stopped.
    pub stopped: Option<SystemTime>,
    /// Last change.
    pub updated: SystemTime,
    /// Its rollback, once one started.
    pub rollback: Option<ServiceRollback>,
    /// Its target deployment's failures, as the circuit breaker counted them.
    pub failures: u32,
    /// Whether the circuit breaker failed it.
    pub breaker_triggered: bool,
}

/// A deployment id: `ecs-svc/` and 19 digits.
pub(super) fn deployment_id() -> String {
    let digits: String = crate::ids::hex(19)
        .chars()
        .take(19)
        .map(|c| char::from(b'0' + (c.to_digit(16).unwrap_or(0) % 10) as u8))
        .collect();
    format!("ecs-svc/{digits}")
}

/// A new deployment of `task_definition`, `PRIMARY` and `IN_PROGRESS`.
pub(super) fn new_deployment(task_definition: (String, u32)) -> RollingDeployment {
    let id = deployment_id();
    RollingDeployment {
        reason: format!("ECS deployment {id} in progress."),
        id,
        task_definition,
        role: DeploymentRole::Primary,
        rollout: RolloutState::InProgress,
        failed_tasks: 0,
        created: wall(),
        updated: wall(),
    }
}

/// A new service deployment to `target`, `IN_PROGRESS`.
pub(super) fn new_service_deployment(target: &str, sources: Vec<String>) -> ServiceDeployment {
    ServiceDeployment {
        id: crate::ids::hex(21),
        target: target.to_owned(),
        sources,
        status: ServiceDeploymentStatus::InProgress,
        reason: None,
        created: wall(),
        finished: None,
        stopped: None,
        updated: wall(),
        rollback: None,
        failures: 0,
        breaker_triggered: false,
    }
}

/// What a failure did to a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Tripped {
    /// The primary deployment failed; rollback is off.
    Failed {
        /// The failed deployment.
        deployment: String,
    },
    /// The primary deployment failed and there is no completed deployment to roll back to.
    NothingToRollBackTo {
        /// The failed deployment.
        deployment: String,
    },
    /// The primary deployment failed and the service rolled back.
    RolledBack {
        /// The failed deployment.
        deployment: String,
        /// The completed deployment that is primary again.
        to: String,
    },
}

/// The reason the circuit breaker gives.
const BREAKER_REASON: &str = "ECS deployment circuit breaker: tasks failed to start.";

impl Service {
    /// The deployment the service runs toward.
    pub fn primary(&self) -> Option<&RollingDeployment> {
        self.deployments
            .iter()
            .find(|d| d.role == DeploymentRole::Primary)
    }

    /// The service deployment whose last segment is `id`.
    pub(crate) fn service_deployment(&self, id: &str) -> Option<&ServiceDeployment> {
        self.service_deployments.iter().find(|d| d.id == id)
    }

    /// Whether the primary deployment may launch tasks (a failed one may not).
    pub(super) fn launches(&self) -> bool {
        self.primary()
            .is_none_or(|d| d.rollout != RolloutState::Failed)
    }

    /// The first deployment of a new service, and its service deployment.
    pub(super) fn first_deployment(&mut self) {
        let d = new_deployment(self.task_definition.clone());
        self.service_deployments
            .push(new_service_deployment(&d.id, Vec::new()));
        self.deployments.push(d);
    }

    /// A new primary deployment of the service's task definition; the one before is `ACTIVE`,
    /// and a service deployment still in progress is `STOPPED` by this newer one.
    pub(super) fn deploy(&mut self) {
        let sources: Vec<String> = self.deployments.iter().map(|d| d.id.clone()).collect();
        for d in &mut self.deployments {
            if d.role == DeploymentRole::Primary {
                d.role = DeploymentRole::Active;
                d.updated = wall();
            }
        }
        let d = new_deployment(self.task_definition.clone());
        for sd in &mut self.service_deployments {
            if sd.status.is_ongoing() {
                sd.status = ServiceDeploymentStatus::Stopped;
                sd.reason = Some(format!("A newer deployment started: {}.", d.id));
                sd.stopped = Some(wall());
                sd.updated = wall();
            }
        }
        self.service_deployments
            .push(new_service_deployment(&d.id, sources));
        if self.service_deployments.len() > KEEP_SERVICE_DEPLOYMENTS {
            self.service_deployments.remove(0);
        }
        self.deployments.insert(0, d);
    }

    /// The primary deployment reached a steady state: `COMPLETED`, and its service deployment
    /// (or the rollback that brought it back) succeeded; the `ACTIVE` deployments whose tasks are
    /// all gone (`live` says which deployments still have one) leave the list.
    pub(super) fn rollout_steady(&mut self, live: &dyn Fn(&str) -> bool) {
        let Some(primary) = self
            .deployments
            .iter_mut()
            .find(|d| d.role == DeploymentRole::Primary)
        else {
            return;
        };
        if primary.rollout != RolloutState::InProgress {
            return;
        }
        primary.rollout = RolloutState::Completed;
        primary.reason = format!("ECS deployment {} completed.", primary.id);
        primary.updated = wall();
        let id = primary.id.clone();
        for sd in &mut self.service_deployments {
            let done = match sd.status {
                ServiceDeploymentStatus::InProgress if sd.target == id => {
                    Some(ServiceDeploymentStatus::Successful)
                }
                ServiceDeploymentStatus::RollbackInProgress
                    if sd.rollback.as_ref().is_some_and(|r| r.to == id) =>
                {
                    Some(ServiceDeploymentStatus::RollbackSuccessful)
                }
                _ => None,
            };
            if let Some(status) = done {
                sd.status = status;
                sd.finished = Some(wall());
                sd.updated = wall();
            }
        }
        self.deployments
            .retain(|d| d.role == DeploymentRole::Primary || live(&d.id));
    }

    /// A task of deployment `deployment` failed as the circuit breaker counts failures
    /// (`failedTasks`, counted with or without a breaker). Returns what the breaker did when
    /// this failure reached its threshold.
    pub(super) fn task_failed(&mut self, deployment: &str) -> Option<Tripped> {
        let threshold = CircuitBreakerConfig::threshold(self.desired);
        let primary = self
            .deployments
            .iter_mut()
            .find(|d| d.role == DeploymentRole::Primary)?;
        if primary.id != deployment || primary.rollout != RolloutState::InProgress {
            return None;
        }
        // `failedTasks` counts whether or not a breaker acts on it.
        primary.failed_tasks += 1;
        primary.updated = wall();
        let failures = primary.failed_tasks;
        if let Some(sd) = self
            .service_deployments
            .iter_mut()
            .find(|sd| sd.target == deployment && sd.status.is_ongoing())
        {
            sd.failures = failures;
        }
        let breaker = self.circuit_breaker.filter(|b| b.enable)?;
        if failures < threshold {
            return None;
        }
        if let Some(sd) = self
            .service_deployments
            .iter_mut()
            .find(|sd| sd.target == deployment && sd.status.is_ongoing())
        {
            sd.breaker_triggered = true;
        }
        Some(self.fail(BREAKER_REASON, breaker.rollback))
    }

    /// Fails the primary deployment for `reason`: it launches no more tasks; with `rollback`,
    /// the most recent completed deployment is primary again.
    pub(super) fn fail(&mut self, reason: &str, rollback: bool) -> Tripped {
        let Some(primary) = self
            .deployments
            .iter_mut()
            .find(|d| d.role == DeploymentRole::Primary)
        else {
            return Tripped::Failed {
                deployment: String::new(),
            };
        };
        primary.rollout = RolloutState::Failed;
        primary.reason = reason.to_owned();
        primary.updated = wall();
        let failed = primary.id.clone();
        let back = self
            .deployments
            .iter()
            .filter(|d| d.rollout == RolloutState::Completed)
            .max_by_key(|d| d.created)
            .map(|d| d.id.clone());
        let ongoing = self
            .service_deployments
            .iter_mut()
            .find(|sd| sd.target == failed && sd.status.is_ongoing());
        let outcome = match (rollback, back) {
            (false, _) => {
                if let Some(sd) = ongoing {
                    sd.status = ServiceDeploymentStatus::Stopped;
                    sd.reason = Some(reason.to_owned());
                    sd.stopped = Some(wall());
                    sd.updated = wall();
                }
                return Tripped::Failed { deployment: failed };
            }
            (true, None) => {
                if let Some(sd) = ongoing {
                    sd.status = ServiceDeploymentStatus::RollbackFailed;
                    sd.reason = Some(format!(
                        "{reason} There is no completed deployment to roll back to."
                    ));
                    sd.finished = Some(wall());
                    sd.updated = wall();
                }
                return Tripped::NothingToRollBackTo { deployment: failed };
            }
            (true, Some(back)) => {
                if let Some(sd) = ongoing {
                    sd.status = ServiceDeploymentStatus::RollbackInProgress;
                    sd.reason = Some(reason.to_owned());
                    sd.rollback = Some(ServiceRollback {
                        reason: reason.to_owned(),
                        started: wall(),
                        to: back.clone(),
                    });
                    sd.updated = wall();
                }
                back
            }
        };
        for d in &mut self.deployments {
            if d.id == failed {
                d.role = DeploymentRole::Active;
                d.updated = wall();
            } else if d.id == outcome {
                d.role = DeploymentRole::Primary;
                d.rollout = RolloutState::InProgress;
                d.reason = format!(
                    "ECS deployment circuit breaker: rolling back to deploymentId {outcome}."
                );
                d.failed_tasks = 0;
                d.updated = wall();
                self.task_definition = d.task_definition.clone();
            }
        }
        self.deployments
            .sort_by_key(|d| d.role != DeploymentRole::Primary);
        self.steady = false;
        Tripped::RolledBack {
            deployment: failed,
            to: outcome,
        }
    }

    /// A task of deployment `deployment` is healthy: the primary's count starts over
    /// (`resetOnHealthyTask`).
    pub(super) fn task_healthy(&mut self, deployment: &str) {
        for d in &mut self.deployments {
            if d.role == DeploymentRole::Primary && d.id == deployment && d.failed_tasks > 0 {
                d.failed_tasks = 0;
                d.updated = wall();
            }
        }
    }
}

impl super::Control {
    /// `StopServiceDeployment` with `ROLLBACK`: the service deployment whose ARN ends in `id`,
    /// while in progress, fails and the service rolls back to its last completed deployment
    /// (with or without a circuit breaker). Returns the service's name.
    pub fn stop_service_deployment(&self, id: &str) -> Result<String, super::ControlError> {
        self.write(|st, c| {
            let Some(svc) = st
                .services
                .values_mut()
                .find(|s| s.service_deployment(id).is_some())
            else {
                return Err(super::ControlError::not_found("service deployment", id));
            };
            let status = svc
                .service_deployment(id)
                .map_or(ServiceDeploymentStatus::Stopped, |sd| sd.status);
            if status != ServiceDeploymentStatus::InProgress {
                return Err(super::ControlError::Conflict {
                    code: "ConflictException",
                    message: format!(
                        "The service deployment {id} is {}: only one in progress can be stopped.",
                        status.as_str()
                    ),
                });
            }
            let name = svc.name.clone();
            let line = match svc.fail("Rollback requested by StopServiceDeployment.", true) {
                Tripped::RolledBack { deployment, to } => {
                    super::ecs::add_event(
                        svc,
                        format!("(service {name}) (deployment {deployment}) rollback requested: rolling back to deployment {to}."),
                    );
                    format!("service {name}: deployment {deployment} stopped by request, rolling back to {to}")
                }
                Tripped::Failed { deployment } | Tripped::NothingToRollBackTo { deployment } => {
                    format!("service {name}: deployment {deployment} stopped by request; no completed deployment to roll back to")
                }
            };
            c.events().emit("ecs", line);
            Ok(name)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_ids_look_like_ecs() {
        let id = deployment_id();
        let digits = id.strip_prefix("ecs-svc/").expect("prefix");
        assert_eq!(digits.len(), 19, "{id}");
        assert!(digits.chars().all(|c| c.is_ascii_digit()), "{id}");
    }

    #[test]
    fn the_threshold_is_half_the_desired_count_within_3_and_200() {
        assert_eq!(CircuitBreakerConfig::threshold(1), 3);
        assert_eq!(CircuitBreakerConfig::threshold(6), 3);
        assert_eq!(CircuitBreakerConfig::threshold(7), 4);
        assert_eq!(CircuitBreakerConfig::threshold(25), 13);
        assert_eq!(CircuitBreakerConfig::threshold(400), 200);
    }
}

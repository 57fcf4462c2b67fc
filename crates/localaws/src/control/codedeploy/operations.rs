//! The operations the API calls: configs, deployments created, stopped, continued, hook
//! statuses put; and the bookkeeping every transition shares.

use tokio::time::Instant;

use super::effects::{deployment_id, fresh_events, record_attempt};
use super::rollback::stop;
use super::types::{
    Creator, Deployment, DeploymentConfig, DeploymentStatus, EventStatus, HookOutcome,
    KEEP_DEPLOYMENTS, NewDeployment, Phase, StopCause, Traffic, WaitType,
};
use crate::control::{Control, ControlError, uuid, wall};
use stack::{AppSpec, LifecycleEventName};

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
                status: DeploymentStatus::Created,
                creator: Creator::User,
                description: req.description.clone(),
                appspec_content: req.appspec.clone(),
                appspec,
                created: wall(),
                completed: None,
                error: None,
                events: fresh_events(),
                phase: Phase::Event(LifecycleEventName::BeforeInstall),
                phase_since: Instant::now(),
                hook: None,
                service: group.config.service,
                original: None,
                replacement: None,
                weight: 0,
                rollback: None,
                skip_termination_wait: false,
                ends_as: DeploymentStatus::Stopped,
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
    pub fn continue_deployment(&self, id: &str, wait: WaitType) -> Result<(), ControlError> {
        self.write(|st, c| {
            let d = st.codedeploy.deployment_mut(id)?;
            match (wait, d.phase) {
                (WaitType::Ready, Phase::ReadyWait) => {
                    d.phase = Phase::Event(LifecycleEventName::BeforeAllowTraffic);
                    d.phase_since = Instant::now();
                    d.status = DeploymentStatus::InProgress;
                }
                (WaitType::Termination, Phase::TerminationWait | Phase::Terminating) => {
                    d.skip_termination_wait = true;
                }
                _ => {
                    return Err(ControlError::Conflict {
                        code: "DeploymentIsNotInReadyStateException",
                        message: format!(
                            "The deployment {id} is not waiting ({}); it is {}",
                            wait.as_str(),
                            d.status
                        ),
                    });
                }
            }
            d.updated = wall();
            c.events().emit(
                "codedeploy",
                format!("deployment {id} continued ({})", wait.as_str()),
            );
            Ok(())
        })
    }

    /// `PutLifecycleEventHookExecutionStatus`.
    pub fn put_hook_status(
        &self,
        id: &str,
        execution_id: &str,
        outcome: HookOutcome,
    ) -> Result<(), ControlError> {
        let status = outcome.status();
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
            if hook.status != EventStatus::Pending {
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

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
//! deployment (creator `codeDeployRollback`) recorded, as AWS does.
//!
//! - `types`: the state (applications, groups, configs, deployments, their statuses);
//! - `operations`: what the API calls;
//! - `lifecycle`: a deployment stepped by the reconcile loop;
//! - `rollback`: stopping and rolling back;
//! - `effects`: what every transition shares (status changes, ids, routing);
//! - `alarms`: CloudWatch-like alarms that stop deployments;
//! - `hooks`: lifecycle hooks invoked as Lambda would invoke them.

mod alarms;
mod effects;
mod hooks;
mod lifecycle;
mod operations;
mod rollback;
mod types;

pub use alarms::{Alarm, AlarmState};
pub(super) use hooks::invoke;
pub use types::{
    Application, CodeDeployState, Creator, Deployment, DeploymentConfig, DeploymentGroup,
    DeploymentStatus, EventStatus, HOOK_TIMEOUT_SECS, HookOutcome, HookRun, INSTALL_TIMEOUT_SECS,
    KEEP_DEPLOYMENTS, LifecycleEvent, NewDeployment, Phase, RollbackInfo, StopCause, Traffic,
    WaitType,
};

use std::time::SystemTime;

use tokio::time::Instant;

use crate::control::{Action, Ctx, State, uuid, wall};
use alarms::alarms;
use effects::Emitter2;
use lifecycle::advance;
use stack::PREDEFINED;

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
            state: AlarmState::InsufficientData,
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

#[cfg(test)]
mod tests {
    use super::effects::deployment_id;
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

//! Stopping a deployment: production back to the original target group at once, the
//! replacement task set removed, and a rollback deployment recorded, as AWS does.

use tokio::time::Instant;

use super::effects::{Emitter2, deployment_id, fresh_events, route, set_status};
use super::types::{
    Creator, Deployment, DeploymentStatus, EventStatus, Phase, RollbackInfo, StopCause,
};
use crate::control::ecs::TaskSetStatus;
use crate::control::{Control, State, wall};

/// Stops deployment `id` for `cause`, rolling back when `rollback`.
pub(super) fn stop(
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
pub(super) fn stop_with(
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
        StopCause::Failure => DeploymentStatus::Failed,
        _ => DeploymentStatus::Stopped,
    };
    let cluster = st.cluster.clone();
    let Ok(d) = st.codedeploy.deployment_mut(id) else {
        return;
    };
    let failed_event = d
        .events
        .iter()
        .find(|e| e.status == EventStatus::Failed)
        .map(|e| e.name);
    let code = match (cause, failed_event) {
        (StopCause::Failure, Some(e)) if e.is_hookable() => "HOOK_EXECUTION_FAILURE",
        (StopCause::Failure, _) => "ECS_UPDATE_ERROR",
        (StopCause::Request, _) => "MANUAL_STOP",
        (StopCause::Alarm, _) => "ALARM_ACTIVE",
        (StopCause::ReadyTimeout, _) => "TIMEOUT",
    }
    .to_owned();
    d.error = Some((code, message.to_owned()));
    d.hook = None;
    for e in &mut d.events {
        if e.status == EventStatus::InProgress {
            e.status = if cause == StopCause::Failure {
                EventStatus::Failed
            } else {
                EventStatus::Skipped
            };
            e.end = Some(wall());
        } else if e.status == EventStatus::Pending {
            e.status = EventStatus::Skipped;
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
                    ts.status = TaskSetStatus::Primary;
                    svc.task_definition = ts.task_definition.clone();
                    svc.load_balancer = ts.load_balancer.clone();
                } else if d.replacement.as_ref().is_some_and(|(r, _)| *r == ts.id) {
                    ts.status = TaskSetStatus::Draining;
                    ts.updated = wall();
                }
            }
            svc.task_sets
                .sort_by_key(|t| t.status != TaskSetStatus::Primary);
            svc.steady = false;
        }
    }
    let rollback_id = deployment_id();
    let rb = Deployment {
        id: rollback_id.clone(),
        creator: Creator::Rollback,
        status: DeploymentStatus::InProgress,
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
        ends_as: DeploymentStatus::Succeeded,
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

//! A deployment stepped through ECS's lifecycle by the reconcile loop: the replacement task
//! set, test traffic, the production weights moved step by step, the termination wait, the swap.

use super::alarms::AlarmState;
use super::effects::{Emitter2, route, set_status};
use super::hooks::function_of;
use super::rollback::stop_with;
use super::types::{
    Deployment, DeploymentStatus, EventStatus, HOOK_TIMEOUT_SECS, HookRun, INSTALL_TIMEOUT_SECS,
    Phase, StopCause,
};
use crate::control::ecs::{TaskSetStatus, new_task_set};
use crate::control::{Action, Ctx, State, uuid, wall};
use stack::{DeploymentGroupConfig, LifecycleEventName, ServiceLoadBalancer};

#[expect(
    clippy::too_many_lines,
    reason = "one step of a deployment: the current lifecycle event's progress, the ready wait, the shift, the termination wait, in CodeDeploy's order"
)]
pub(super) fn advance(
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
        .find(|a| a.state == AlarmState::Alarm && group.alarms.contains(&a.config.name))
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
            && let Phase::Event(step) = d.phase
            && let Some(e) = d.event_mut(step)
        {
            e.status = EventStatus::Failed;
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
                    ts.status = TaskSetStatus::Draining;
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
                set_status(state, ev, id, DeploymentStatus::Succeeded);
            }
        }
        Phase::Event(name) => {
            // Entering the event.
            if d.event(name)
                .is_some_and(|e| e.status == EventStatus::Pending)
            {
                if let Ok(x) = state.codedeploy.deployment_mut(id) {
                    if let Some(e) = x.event_mut(name) {
                        e.status = EventStatus::InProgress;
                        e.start = Some(wall());
                    }
                    x.phase_since = ctx.now;
                    x.updated = wall();
                }
                if d.status == DeploymentStatus::Created {
                    set_status(state, ev, id, DeploymentStatus::InProgress);
                }
                ev.emit(format!("deployment {id}: {name} started"));
                if let Err((code, message)) = enter(state, ctx, ev, id, name, &group, actions) {
                    fail(state, code, message);
                }
                return;
            }
            match progress(state, ctx, ev, id, name, &group) {
                Progress::Wait => {}
                Progress::Failed(code, message) => fail(state, code, message),
                Progress::Done => {
                    let ready_wait = name == LifecycleEventName::AfterAllowTestTraffic
                        && group.deployment_ready.action_on_timeout == "STOP_DEPLOYMENT";
                    if let Ok(x) = state.codedeploy.deployment_mut(id) {
                        if let Some(e) = x.event_mut(name) {
                            e.status = EventStatus::Succeeded;
                            e.end = Some(wall());
                        }
                        x.hook = None;
                        x.phase_since = ctx.now;
                        x.updated = wall();
                        ev.emit(format!("deployment {id}: {name} succeeded"));
                        x.phase = if ready_wait {
                            Phase::ReadyWait
                        } else {
                            name.next().map_or(Phase::TerminationWait, Phase::Event)
                        };
                    }
                    if ready_wait {
                        set_status(state, ev, id, DeploymentStatus::Ready);
                        ev.emit(format!(
                            "deployment {id} Ready: waiting up to {} min for ContinueDeployment",
                            group.deployment_ready.wait_time_in_minutes
                        ));
                    }
                    if name.next().is_none() {
                        swap(state, ev, &d);
                        set_status(state, ev, id, DeploymentStatus::Baking);
                    }
                }
            }
        }
    }
}

pub(super) enum Progress {
    Wait,
    Done,
    Failed(&'static str, String),
}

/// Starts lifecycle event `name`.
#[expect(
    clippy::too_many_lines,
    reason = "one arm per ECS lifecycle event, in CodeDeploy's order"
)]
pub(super) fn enter(
    state: &mut State,
    ctx: &Ctx<'_>,
    ev: &Emitter2<'_>,
    id: &str,
    name: LifecycleEventName,
    group: &DeploymentGroupConfig,
    actions: &mut Vec<Action>,
) -> Result<(), (&'static str, String)> {
    let Ok(d) = state.codedeploy.deployment(id).cloned() else {
        return Ok(());
    };
    if let Some((_, function)) = d.appspec.hooks.iter().find(|(e, _)| *e == name) {
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
                status: EventStatus::Pending,
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
        LifecycleEventName::Install => {
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
                .find(|t| t.status == TaskSetStatus::Primary)
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
                TaskSetStatus::Active,
                Some(id.to_owned()),
            );
            let (orig_id, repl_id) = (primary.id.clone(), set.id.clone());
            if let Some(s) = state.services.get_mut(&d.service) {
                // A replacement left behind by a deployment stopped without rollback goes.
                for ts in &mut s.task_sets {
                    if ts.status == TaskSetStatus::Active {
                        ts.status = TaskSetStatus::Draining;
                    }
                }
                s.task_sets.push(set);
                // A new task definition ends ECS's launch throttling at once.
                s.throttle = crate::control::ecs::Throttle::default();
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
        LifecycleEventName::AllowTestTraffic => {
            if let (Some(test), Some((_, repl_tg))) = (&group.test_listener, &d.replacement) {
                route(ctx.plane, ev, test, repl_tg, None, 0);
            }
        }
        LifecycleEventName::AllowTraffic => {
            shift(state, ctx, ev, id, group);
        }
        _ => {}
    }
    Ok(())
}

/// Moves production traffic one step.
pub(super) fn shift(
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

/// Checks lifecycle event `name` for completion.
pub(super) fn progress(
    state: &mut State,
    ctx: &Ctx<'_>,
    ev: &Emitter2<'_>,
    id: &str,
    name: LifecycleEventName,
    group: &DeploymentGroupConfig,
) -> Progress {
    let Ok(d) = state.codedeploy.deployment(id).cloned() else {
        return Progress::Wait;
    };
    if let Some(h) = &d.hook {
        return match h.status {
            EventStatus::Succeeded => Progress::Done,
            EventStatus::Failed => Progress::Failed(
                "ScriptFailed",
                h.error
                    .clone()
                    .unwrap_or_else(|| format!("The {name} hook {} reported Failed", h.function)),
            ),
            _ if ctx.now >= h.deadline => Progress::Failed(
                "ScriptTimedOut",
                format!(
                    "The {name} hook {} did not report a status within {} minutes",
                    h.function,
                    HOOK_TIMEOUT_SECS / 60
                ),
            ),
            _ => Progress::Wait,
        };
    }
    match name {
        LifecycleEventName::Install => {
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
        LifecycleEventName::AllowTraffic => {
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
pub(super) fn swap(state: &mut State, ev: &Emitter2<'_>, d: &Deployment) {
    let (Some((orig, _)), Some((repl, _))) = (&d.original, &d.replacement) else {
        return;
    };
    if let Some(svc) = state.services.get_mut(&d.service) {
        for ts in &mut svc.task_sets {
            if &ts.id == repl {
                ts.status = TaskSetStatus::Primary;
                ts.updated = wall();
                svc.task_definition = ts.task_definition.clone();
                svc.load_balancer = ts.load_balancer.clone();
            } else if &ts.id == orig {
                ts.status = TaskSetStatus::Active;
                ts.updated = wall();
            }
        }
        svc.task_sets
            .sort_by_key(|t| t.status != TaskSetStatus::Primary);
    }
    ev.emit(format!(
        "deployment {}: task set {repl} is primary; {orig} stays for the termination wait",
        d.id
    ));
}

//! What every transition shares: deployment ids, fresh lifecycle events, a status set,
//! recorded and emitted, a listener pointed at a target group.

use super::types::{Deployment, DeploymentStatus, EventStatus, LifecycleEvent, Phase};
use crate::control::{Emitter, State, wall};
use stack::{LifecycleEventName, WeightedTargetGroup};

pub(super) fn deployment_id() -> String {
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

pub(super) fn fresh_events() -> Vec<LifecycleEvent> {
    LifecycleEventName::ALL
        .into_iter()
        .map(|name| LifecycleEvent {
            name,
            status: EventStatus::Pending,
            start: None,
            end: None,
            diagnostics: None,
        })
        .collect()
}

pub(super) fn record_attempt(st: &mut State, d: &Deployment) {
    if let Some(g) = st
        .codedeploy
        .applications
        .get_mut(&d.application)
        .and_then(|a| a.groups.get_mut(&d.group))
    {
        g.last_attempted = Some((d.id.clone(), d.status, d.created));
        if d.status == DeploymentStatus::Succeeded {
            g.last_succeeded = Some((d.id.clone(), d.status, d.created));
        }
    }
}

pub(super) fn set_status(st: &mut State, c: &Emitter2<'_>, id: &str, status: DeploymentStatus) {
    let Ok(d) = st.codedeploy.deployment_mut(id) else {
        return;
    };
    if d.status == status {
        return;
    }
    d.status = status;
    d.updated = wall();
    if status.is_final() {
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
pub(super) struct Emitter2<'a>(pub(super) Emitter<'a>);

impl Emitter2<'_> {
    pub(super) fn emit(&self, message: String) {
        self.0.emit("codedeploy", message);
    }
}
/// Points `listener` at `tg` (or splits it `100 - weight`/`weight` with `other`).
pub(super) fn route(
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

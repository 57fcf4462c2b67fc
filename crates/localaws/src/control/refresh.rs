//! Instance refresh: replace the group's instances with ones of a new configuration, in batches,
//! keeping `MinHealthyPercentage` of the desired capacity healthy and at most
//! `MaxHealthyPercentage` running.
//!
//! Batches follow the rules of the Auto Scaling API reference (`RefreshPreferences`,
//! `InstanceMaintenancePolicy`): the healthy floor is the desired capacity × min healthy %,
//! **rounded up**; the ceiling is desired × max healthy %, rounded down here (AWS states no
//! rounding; rounding down never exceeds the percentage); and **at least one instance is replaced
//! at a time**, even when the floor leaves no room (min healthy 100 % replaces one at a time).
//! With max healthy above 100 % new instances are launched before old ones are terminated. A new
//! instance counts as replaced (and toward `PercentageComplete`) once it is `InService`, healthy
//! and its warmup has passed. A new instance that fails its health checks fails the refresh,
//! which then rolls back when `AutoRollback` is set.
//!
//! Instances protected from scale in are replaced, skipped or waited for as
//! `ScaleInProtectedInstances` says (`Refresh`, `Ignore`, `Wait`). `Wait` is the API's default, as
//! on AWS (the console and the Terraform provider default to `Ignore`): the refresh replaces what
//! it may, then waits one simulated hour for the protection to be removed and fails otherwise
//! (rolling back when `AutoRollback` is set), as the `RefreshPreferences` reference says.

use std::collections::BTreeSet;
use std::fmt;
use std::time::SystemTime;

use tokio::time::Instant;

use super::autoscaling;
use super::ec2::{Ec2Instance, InstanceHealth, Lifecycle};
use super::{Control, ControlError, Ctx, State, uuid, wall};

/// An instance refresh's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshStatus {
    /// Accepted, not started.
    Pending,
    /// Replacing instances.
    InProgress,
    /// All replaced; waiting out the bake time.
    Baking,
    /// Done.
    Successful,
    /// Gave up.
    Failed,
    /// Finishing the replacements in flight after a cancel.
    Cancelling,
    /// Cancelled.
    Cancelled,
    /// Going back to the previous configuration.
    RollbackInProgress,
    /// Back on the previous configuration.
    RollbackSuccessful,
    /// The rollback itself failed.
    RollbackFailed,
}

impl fmt::Display for RefreshStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Pending => "Pending",
            Self::InProgress => "InProgress",
            Self::Baking => "Baking",
            Self::Successful => "Successful",
            Self::Failed => "Failed",
            Self::Cancelling => "Cancelling",
            Self::Cancelled => "Cancelled",
            Self::RollbackInProgress => "RollbackInProgress",
            Self::RollbackSuccessful => "RollbackSuccessful",
            Self::RollbackFailed => "RollbackFailed",
        })
    }
}

impl RefreshStatus {
    /// Still running (only one may be, per group).
    pub fn is_active(self) -> bool {
        matches!(
            self,
            Self::Pending
                | Self::InProgress
                | Self::Baking
                | Self::Cancelling
                | Self::RollbackInProgress
        )
    }
}

/// `RefreshPreferences`, with AWS's defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshPreferences {
    /// 0–100, default 90.
    pub min_healthy: u32,
    /// 100–200, default 100.
    pub max_healthy: u32,
    /// Simulated seconds, 0 to [`MAX_INSTANCE_WARMUP`]; default: the group's default instance
    /// warmup, else its health check grace period.
    pub warmup: Option<u32>,
    /// Skip instances already on the desired configuration.
    pub skip_matching: bool,
    /// Percentages at which to pause.
    pub checkpoints: Vec<u32>,
    /// Simulated seconds to pause at each checkpoint, 0 to [`MAX_DELAY`] (default 3600).
    pub checkpoint_delay: u32,
    /// Roll back on failure.
    pub auto_rollback: bool,
    /// Simulated seconds to wait after the last replacement before `Successful`, 0 to
    /// [`MAX_DELAY`].
    pub bake_time: u32,
    /// What to do with scale-in protected instances.
    pub scale_in_protected: ScaleInProtected,
    /// What to do with `Standby` instances; kept and echoed only: localaws has none.
    pub standby: Standby,
}

/// `ScaleInProtectedInstances`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScaleInProtected {
    /// Replace them too.
    Refresh,
    /// Skip them.
    Ignore,
    /// Wait (an hour) for the protection to be removed: the API's default.
    #[default]
    Wait,
}

/// `StandbyInstances`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Standby {
    /// Terminate them.
    Terminate,
    /// Skip them.
    Ignore,
    /// Wait for them to return to service: the API's default.
    #[default]
    Wait,
}

impl ScaleInProtected {
    /// Every value, in the API reference's order.
    pub(crate) const ALL: [Self; 3] = [Self::Refresh, Self::Ignore, Self::Wait];

    /// The API's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Refresh => "Refresh",
            Self::Ignore => "Ignore",
            Self::Wait => "Wait",
        }
    }
}

impl Standby {
    /// Every value, in the API reference's order.
    pub(crate) const ALL: [Self; 3] = [Self::Terminate, Self::Ignore, Self::Wait];

    /// The API's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Terminate => "Terminate",
            Self::Ignore => "Ignore",
            Self::Wait => "Wait",
        }
    }
}

/// The longest `BakeTime` and `CheckpointDelay` AWS takes, in seconds (two days).
pub const MAX_DELAY: u32 = 172_800;

/// The longest `InstanceWarmup`: the API reference sets only a minimum (0) on this integer, so
/// the largest 32-bit one.
pub const MAX_INSTANCE_WARMUP: u32 = i32::MAX as u32;

/// How long a refresh with `ScaleInProtectedInstances` `Wait` waits for the protection to be
/// removed before it fails: one hour (simulated seconds).
pub const PROTECTED_WAIT: u32 = 3600;

impl Default for RefreshPreferences {
    fn default() -> Self {
        Self {
            min_healthy: 90,
            max_healthy: 100,
            warmup: None,
            skip_matching: false,
            checkpoints: Vec::new(),
            checkpoint_delay: 3600,
            auto_rollback: false,
            bake_time: 0,
            scale_in_protected: ScaleInProtected::Wait,
            standby: Standby::Wait,
        }
    }
}

impl RefreshPreferences {
    /// Checks what relates two preferences, as AWS does when the refresh starts. Each value on
    /// its own (ranges, the enums) is the API's to check, once, at the edge
    /// (`api/autoscaling.rs`), with AWS's wording.
    pub fn validate(&self) -> Result<(), ControlError> {
        let bad = |m: String| Err(ControlError::Validation(m));
        if self.max_healthy.saturating_sub(self.min_healthy) > 100 {
            return bad(format!(
                "the difference between MaxHealthyPercentage ({}) and MinHealthyPercentage ({}) cannot be greater than 100",
                self.max_healthy, self.min_healthy
            ));
        }
        let mut last = 0;
        for &c in &self.checkpoints {
            if c == 0 || c > 100 || c <= last {
                return bad(format!(
                    "CheckpointPercentages must be ascending values from 1 to 100, got {:?}",
                    self.checkpoints
                ));
            }
            last = c;
        }
        Ok(())
    }
}

/// One instance refresh.
#[derive(Debug, Clone)]
pub struct InstanceRefresh {
    /// UUID.
    pub id: String,
    /// Group.
    pub group: String,
    /// Status.
    pub status: RefreshStatus,
    /// Why it is in that status.
    pub reason: Option<String>,
    /// Start (wall clock).
    pub start: SystemTime,
    /// End (wall clock).
    pub end: Option<SystemTime>,
    /// Preferences.
    pub prefs: RefreshPreferences,
    /// `DesiredConfiguration` as given (launch template name, version string), if any.
    pub desired: Option<(String, String)>,
    /// The configuration instances are moved to: launch template and version number.
    pub target: (String, u32),
    /// The group's configuration before the refresh (launch template, version string), for
    /// rollback.
    pub previous: (String, String),
    /// Instances still to replace.
    pub to_replace: BTreeSet<String>,
    /// How many instances the refresh set out to replace.
    pub total: usize,
    /// Instances launched ahead of terminations (max healthy above 100 %).
    pub extra: u32,
    /// Percentage complete.
    pub percentage: u32,
    /// Next checkpoint index.
    pub next_checkpoint: usize,
    /// Paused at a checkpoint until (real).
    pub paused_until: Option<Instant>,
    /// Baking until (real).
    pub bake_until: Option<Instant>,
    /// Since when (real) nothing but instances protected from scale in is left to replace
    /// (`ScaleInProtectedInstances` `Wait`); the refresh fails [`PROTECTED_WAIT`] later.
    pub protected_since: Option<Instant>,
    /// New-configuration instances already found unhealthy.
    pub failed_instances: BTreeSet<String>,
    /// Whether this refresh is now a rollback.
    pub rolling_back: bool,
    /// The status it had when a rollback took over (for `RollbackDetails`).
    pub rollback_reason: Option<String>,
}

impl InstanceRefresh {
    /// Instances still to replace (`InstancesToUpdate`).
    pub fn instances_to_update(&self) -> usize {
        self.to_replace.len()
    }
}

/// What `StartInstanceRefresh` asks.
#[derive(Debug, Clone, Default)]
pub struct StartRefresh {
    /// `DesiredConfiguration.LaunchTemplate`: name or id, and version.
    pub desired: Option<(super::ec2::TemplateRef, Option<String>)>,
    /// `Preferences`.
    pub prefs: RefreshPreferences,
}

/// How many instances may be terminated now, and how many launched ahead, for a group of
/// `desired` with `healthy` instances healthy and `live` instances running or pending.
///
/// Returns `(launch, terminate)`.
pub fn batch(
    desired: u32,
    healthy: u32,
    live: u32,
    remaining: u32,
    prefs: &RefreshPreferences,
) -> (u32, u32) {
    if remaining == 0 {
        return (0, 0);
    }
    let floor = (desired * prefs.min_healthy).div_ceil(100);
    let ceiling = (desired * prefs.max_healthy / 100).max(desired);
    if prefs.max_healthy > 100 && live < ceiling {
        // Launch ahead, up to the ceiling, never more than still need replacing.
        return ((ceiling - live).min(remaining), 0);
    }
    // Terminate what the floor allows; at least one.
    let room = healthy.saturating_sub(floor).max(1);
    (0, room.min(remaining))
}

fn warmup(state: &State, r: &InstanceRefresh) -> u32 {
    r.prefs.warmup.unwrap_or_else(|| {
        state.asg.as_ref().map_or(0, |a| {
            a.default_instance_warmup
                .unwrap_or(a.health_check_grace_period)
        })
    })
}

/// One reconcile step of the active refresh.
pub(super) fn step(state: &mut State, ctx: &Ctx<'_>) {
    let Some(idx) = state.refreshes.iter().rposition(|r| r.status.is_active()) else {
        return;
    };
    let mut r = state.refreshes[idx].clone();
    advance(state, &mut r, ctx);
    state.refreshes[idx] = r;
}

fn set_status(r: &mut InstanceRefresh, ctx: &Ctx<'_>, status: RefreshStatus, reason: String) {
    if r.status != status {
        ctx.events.emit(
            "autoscaling",
            format!(
                "instance refresh {} {status} ({}%): {reason}",
                r.id, r.percentage
            ),
        );
    }
    r.status = status;
    r.reason = Some(reason);
    if !status.is_active() {
        r.end = Some(wall());
    }
}

#[expect(
    clippy::too_many_lines,
    reason = "one step of the instance refresh state machine in AWS's order (checkpoint, bake, protected instances, batch, warmup), sharing the counts it updates"
)]
fn advance(state: &mut State, r: &mut InstanceRefresh, ctx: &Ctx<'_>) {
    let Some(asg) = state.asg.clone() else {
        return;
    };
    if r.status == RefreshStatus::Pending {
        set_status(
            r,
            ctx,
            RefreshStatus::InProgress,
            format!("Replacing {} instance(s).", r.to_replace.len()),
        );
    }
    let warm = warmup(state, r);
    // Drop instances that went away on their own.
    r.to_replace.retain(|id| {
        state
            .instances
            .get(id)
            .is_some_and(|i| i.lifecycle.is_live())
    });
    let target = r.target.clone();
    let is_target = |i: &Ec2Instance| i.launch_template.as_ref() == Some(&target);
    // A new instance failing its health checks fails the refresh.
    let failing: Vec<String> = state
        .instances
        .values()
        .filter(|i| {
            is_target(i)
                && i.lifecycle == Lifecycle::InService
                && i.health == InstanceHealth::Unhealthy
                && !r.failed_instances.contains(&i.id)
        })
        .map(|i| i.id.clone())
        .collect();
    if let Some(bad) = failing.first() {
        r.failed_instances.extend(failing.iter().cloned());
        let reason =
            format!("Instance refresh failed: new instance {bad} failed its health checks.");
        if r.rolling_back {
            set_status(r, ctx, RefreshStatus::RollbackFailed, reason);
            r.extra = 0;
            return;
        }
        if r.prefs.auto_rollback && r.status != RefreshStatus::Cancelling {
            begin_rollback(state, r, ctx, &reason);
            return;
        } else {
            r.extra = 0;
            set_status(r, ctx, RefreshStatus::Failed, reason);
            return;
        }
    }
    // Replacements in flight: new instances booting or warming up, old ones terminating.
    let warming = state.instances.values().any(|i| {
        is_target(i)
            && (i.lifecycle == Lifecycle::Pending
                || (i.lifecycle == Lifecycle::InService
                    && i.health == InstanceHealth::Healthy
                    && !i.in_service.is_some_and(|t| ctx.elapsed(t, warm))))
    });
    let terminating = state
        .instances
        .values()
        .any(|i| i.lifecycle.is_terminating());
    let in_flight = warming || terminating;
    let remaining = u32::try_from(r.to_replace.len()).unwrap_or(u32::MAX);
    if in_flight {
        return;
    }
    // A replacement counts once nothing is in flight: old instance gone, new one warmed up.
    let done = r.total.saturating_sub(r.to_replace.len());
    r.percentage = (done * 100)
        .checked_div(r.total)
        .map_or(100, |p| u32::try_from(p).unwrap_or(100));
    match r.status {
        RefreshStatus::Cancelling => {
            r.extra = 0;
            set_status(
                r,
                ctx,
                RefreshStatus::Cancelled,
                "Instance refresh cancelled; replacements in flight finished.".into(),
            );
            return;
        }
        RefreshStatus::Baking => {
            if r.bake_until.is_some_and(|t| ctx.now >= t) {
                finish(state, r, ctx);
            }
            return;
        }
        _ => {}
    }
    if let Some(until) = r.paused_until {
        if ctx.now < until {
            return;
        }
        r.paused_until = None;
    }
    // Checkpoints (not during a rollback).
    if !r.rolling_back
        && let Some(&cp) = r.prefs.checkpoints.get(r.next_checkpoint)
        && r.percentage >= cp
    {
        r.next_checkpoint += 1;
        let reason = format!(
            "Waiting for checkpoint delay: {}% complete, checkpoint {cp}% reached, pausing {} s.",
            r.percentage, r.prefs.checkpoint_delay
        );
        ctx.events.emit(
            "autoscaling",
            format!("instance refresh {}: {reason}", r.id),
        );
        // The pause runs from the event that says it began, not from the start of this pass
        // (`ctx.now`): on a starved machine the pass takes long enough that a pause counted from
        // its start looked shorter than the delay (the flake hunt saw 1.99988 s of 2 s).
        r.paused_until = Some(Instant::now() + ctx.clock.secs(r.prefs.checkpoint_delay));
        r.reason = Some(reason);
        return;
    }
    if remaining == 0 {
        if r.prefs.bake_time > 0 && !r.rolling_back {
            r.bake_until = Some(ctx.now + ctx.clock.secs(r.prefs.bake_time));
            set_status(
                r,
                ctx,
                RefreshStatus::Baking,
                format!("Baking for {} s.", r.prefs.bake_time),
            );
        } else {
            finish(state, r, ctx);
        }
        return;
    }
    let live: Vec<&Ec2Instance> = state
        .instances
        .values()
        .filter(|i| i.lifecycle.is_live())
        .collect();
    let healthy = live
        .iter()
        .filter(|i| {
            i.lifecycle == Lifecycle::InService
                && i.health == InstanceHealth::Healthy
                && i.in_service.is_some_and(|t| ctx.elapsed(t, warm))
        })
        .count();
    let (launch, terminate) = batch(
        asg.desired,
        u32::try_from(healthy).unwrap_or(0),
        u32::try_from(live.len()).unwrap_or(0),
        remaining,
        &r.prefs,
    );
    if launch > 0 {
        r.extra += launch;
        for _ in 0..launch {
            autoscaling::launch(
                state,
                ctx,
                &format!(
                    "an instance was launched in response to instance refresh {} (launching before terminating: MaxHealthyPercentage {})",
                    r.id, r.prefs.max_healthy
                ),
            );
        }
        return;
    }
    // Protected instances: replaced, skipped or waited for, as the preference says.
    let candidates: Vec<String> = r
        .to_replace
        .iter()
        .filter(|id| {
            let protected = state.instances.get(*id).is_some_and(|i| i.protected);
            !protected || r.prefs.scale_in_protected == ScaleInProtected::Refresh
        })
        .cloned()
        .collect();
    if candidates.is_empty() {
        match r.prefs.scale_in_protected {
            ScaleInProtected::Ignore => {
                r.to_replace.clear();
                finish(state, r, ctx);
            }
            _ => wait_for_protection(state, r, ctx),
        }
        return;
    }
    r.protected_since = None;
    for id in candidates.into_iter().take(terminate as usize) {
        r.to_replace.remove(&id);
        r.extra = r.extra.saturating_sub(1);
        autoscaling::terminate(
            state,
            ctx,
            &id,
            &format!(
                "an instance was taken out of service in response to instance refresh {}",
                r.id
            ),
        );
    }
}

/// `ScaleInProtectedInstances` `Wait` with nothing but protected instances left: wait up to
/// [`PROTECTED_WAIT`] for the protection to go, then fail (and roll back with `AutoRollback`).
fn wait_for_protection(state: &mut State, r: &mut InstanceRefresh, ctx: &Ctx<'_>) {
    let ids = r.to_replace.iter().cloned().collect::<Vec<_>>().join(", ");
    let since = *r.protected_since.get_or_insert(ctx.now);
    if !ctx.elapsed(since, PROTECTED_WAIT) {
        r.reason = Some(format!(
            "Waiting for {} instance(s) protected from scale in: {ids}. The instance refresh fails unless their scale-in protection is removed within one hour.",
            r.to_replace.len()
        ));
        return;
    }
    r.protected_since = None;
    let reason = format!(
        "Instance refresh failed: {} instance(s) still protected from scale in after waiting one hour (ScaleInProtectedInstances is Wait): {ids}.",
        r.to_replace.len()
    );
    if r.rolling_back {
        r.extra = 0;
        set_status(r, ctx, RefreshStatus::RollbackFailed, reason);
    } else if r.prefs.auto_rollback {
        begin_rollback(state, r, ctx, &reason);
    } else {
        r.extra = 0;
        set_status(r, ctx, RefreshStatus::Failed, reason);
    }
}

fn finish(state: &mut State, r: &mut InstanceRefresh, ctx: &Ctx<'_>) {
    r.extra = 0;
    r.percentage = 100;
    if r.rolling_back {
        // The group never left its previous configuration.
        set_status(
            r,
            ctx,
            RefreshStatus::RollbackSuccessful,
            "Rolled back to the previous configuration.".into(),
        );
        return;
    }
    if let (Some(asg), Some((lt, version))) = (state.asg.as_mut(), r.desired.clone()) {
        asg.launch_template = lt;
        asg.version = version;
    }
    set_status(
        r,
        ctx,
        RefreshStatus::Successful,
        "Instance refresh succeeded.".into(),
    );
}

fn begin_rollback(state: &mut State, r: &mut InstanceRefresh, ctx: &Ctx<'_>, reason: &str) {
    let previous = state
        .launch_templates
        .get(&r.previous.0)
        .and_then(|lt| lt.resolve(&r.previous.1));
    let Some(previous) = previous else {
        set_status(
            r,
            ctx,
            RefreshStatus::RollbackFailed,
            "the previous launch template version no longer exists".into(),
        );
        return;
    };
    let target = (r.previous.0.clone(), previous);
    r.rolling_back = true;
    r.rollback_reason = Some(reason.to_owned());
    r.target = target.clone();
    r.extra = 0;
    r.paused_until = None;
    r.bake_until = None;
    r.protected_since = None;
    r.to_replace = state
        .instances
        .values()
        .filter(|i| i.lifecycle.is_live() && i.launch_template.as_ref() != Some(&target))
        .map(|i| i.id.clone())
        .collect();
    r.total = r.to_replace.len();
    set_status(
        r,
        ctx,
        RefreshStatus::RollbackInProgress,
        format!("{reason} Rolling back to the previous configuration."),
    );
}

/// The group's refresh that can still be cancelled or rolled back (pending, in progress, baking).
fn cancellable(st: &State, group: &str) -> Result<usize, ControlError> {
    st.asg(group)?;
    st.refreshes
        .iter()
        .rposition(|r| {
            matches!(
                r.status,
                RefreshStatus::Pending | RefreshStatus::InProgress | RefreshStatus::Baking
            )
        })
        .ok_or_else(|| ControlError::Conflict {
            code: "ActiveInstanceRefreshNotFound",
            message: format!(
                "No in progress or pending Instance Refresh found for Auto Scaling group {group}"
            ),
        })
}

fn is_pinned(version: &str) -> bool {
    !matches!(version, "$Latest" | "$Default")
}

impl Control {
    /// `StartInstanceRefresh`: returns the refresh id.
    pub fn start_instance_refresh(
        &self,
        group: &str,
        start: StartRefresh,
    ) -> Result<String, ControlError> {
        start.prefs.validate()?;
        self.write(|st, _| {
            let asg = st.asg(group)?.clone();
            if let Some(active) = st.refreshes.iter().find(|r| r.status.is_active()) {
                return Err(ControlError::Conflict {
                    code: "InstanceRefreshInProgress",
                    message: format!(
                        "An Instance Refresh is already in progress and blocks the execution of this Instance Refresh ({})",
                        active.id
                    ),
                });
            }
            let (lt_name, version) = match &start.desired {
                Some((r, v)) => (
                    st.launch_template(r)?.name.clone(),
                    v.clone().unwrap_or_else(|| "$Default".into()),
                ),
                None => (asg.launch_template.clone(), asg.version.clone()),
            };
            let lt = st
                .launch_templates
                .get(&lt_name)
                .ok_or_else(|| ControlError::not_found("launch template", lt_name.clone()))?;
            let number = lt.resolve(&version).ok_or_else(|| {
                ControlError::Validation(format!(
                    "the launch template version {version} does not exist for {lt_name}"
                ))
            })?;
            let target = (lt_name.clone(), number);
            let to_replace: BTreeSet<String> = st
                .instances
                .values()
                .filter(|i| i.lifecycle.is_live())
                .filter(|i| !start.prefs.skip_matching || i.launch_template.as_ref() != Some(&target))
                .map(|i| i.id.clone())
                .collect();
            let id = uuid();
            let refresh = InstanceRefresh {
                id: id.clone(),
                group: group.to_owned(),
                status: RefreshStatus::Pending,
                reason: None,
                start: wall(),
                end: None,
                prefs: start.prefs,
                desired: start.desired.as_ref().map(|_| (lt_name, version)),
                target,
                previous: (asg.launch_template.clone(), asg.version),
                total: to_replace.len(),
                to_replace,
                extra: 0,
                percentage: 0,
                next_checkpoint: 0,
                paused_until: None,
                bake_until: None,
                protected_since: None,
                failed_instances: BTreeSet::new(),
                rolling_back: false,
                rollback_reason: None,
            };
            st.refreshes.push(refresh);
            if st.refreshes.len() > 50 {
                st.refreshes.remove(0);
            }
            Ok(id)
        })
    }

    /// `CancelInstanceRefresh`: finishes the replacements in flight, undoes nothing.
    pub fn cancel_instance_refresh(&self, group: &str) -> Result<String, ControlError> {
        self.write(|st, c| {
            let idx = cancellable(st, group)?;
            let r = &mut st.refreshes[idx];
            r.status = RefreshStatus::Cancelling;
            r.reason = Some("Cancelling: finishing the replacements in flight.".into());
            c.events().emit(
                "autoscaling",
                format!("instance refresh {} Cancelling", r.id),
            );
            Ok(r.id.clone())
        })
    }

    /// `RollbackInstanceRefresh`: back to the configuration the group had before.
    pub fn rollback_instance_refresh(&self, group: &str) -> Result<String, ControlError> {
        self.write(|st, c| {
            let idx = cancellable(st, group)?;
            let r = &st.refreshes[idx];
            let versions = [
                r.desired.as_ref().map(|d| d.1.as_str()),
                Some(r.previous.1.as_str()),
            ];
            if r.desired.is_none() {
                return Err(ControlError::Conflict {
                    code: "IrreversibleInstanceRefresh",
                    message: "The instance refresh was started without a desired configuration and cannot be rolled back".into(),
                });
            }
            if versions.iter().flatten().any(|v| !is_pinned(v)) {
                return Err(ControlError::Conflict {
                    code: "IrreversibleInstanceRefresh",
                    message: "Rollback is not supported for a launch template version of $Latest or $Default: specify a version number".into(),
                });
            }
            let mut r = st.refreshes[idx].clone();
            let now = st.now.unwrap_or_else(Instant::now);
            let ctx = Ctx {
                plane: c.plane(),
                clock: c.clock(),
                now,
                events: c.events(),
            };
            begin_rollback(st, &mut r, &ctx, "Rollback requested.");
            let id = r.id.clone();
            st.refreshes[idx] = r;
            Ok(id)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefs(min: u32, max: u32) -> RefreshPreferences {
        RefreshPreferences {
            min_healthy: min,
            max_healthy: max,
            ..RefreshPreferences::default()
        }
    }

    /// Instances terminated in the first batch of a fully healthy group of `n`, max healthy 100.
    fn first_batch(n: u32, min: u32) -> u32 {
        batch(n, n, n, n, &prefs(min, 100)).1
    }

    #[test]
    fn batch_sizes_for_small_groups() {
        // Rows: group size 1..=10; columns: min healthy 100, 90, 50, 0 (max healthy 100).
        // The floor is ceil(n * min / 100); at least one instance is replaced at a time.
        let expected: [[u32; 4]; 10] = [
            [1, 1, 1, 1],
            [1, 1, 1, 2],
            [1, 1, 1, 3],
            [1, 1, 2, 4],
            [1, 1, 2, 5],
            [1, 1, 3, 6],
            [1, 1, 3, 7],
            [1, 1, 4, 8],
            [1, 1, 4, 9],
            [1, 1, 5, 10],
        ];
        for n in 1..=10u32 {
            let row: Vec<u32> = [100, 90, 50, 0]
                .iter()
                .map(|&m| first_batch(n, m))
                .collect();
            assert_eq!(row, expected[(n - 1) as usize], "group of {n}");
        }
    }

    #[test]
    fn max_healthy_above_100_launches_before_terminating() {
        let p = prefs(90, 200);
        // 3 healthy of 3: launch 3 ahead.
        assert_eq!(batch(3, 3, 3, 3, &p), (3, 0));
        // 6 live, 6 healthy: terminate down to the floor of 3.
        assert_eq!(batch(3, 6, 6, 3, &p), (0, 3));
        // 110 % of 10 = 11: one ahead, then two old ones (floor 9 of 11 healthy).
        let p = prefs(90, 110);
        assert_eq!(batch(10, 10, 10, 10, &p), (1, 0));
        assert_eq!(batch(10, 11, 11, 10, &p), (0, 2));
        // Never launches more than still need replacing.
        assert_eq!(batch(10, 10, 10, 1, &prefs(50, 150)), (1, 0));
    }

    #[test]
    fn preferences_are_checked_as_aws_checks_them() {
        // Each value's own range is the API's check (api/autoscaling.rs,
        // `refresh_preferences_take_the_api_ranges_and_refuse_one_past_them`); what relates two
        // is checked here.
        assert!(prefs(90, 100).validate().is_ok());
        assert!(prefs(0, 150).validate().is_err(), "difference above 100");
        // Allowed, and replaces one instance at a time below full capacity (a preflight hazard).
        assert!(prefs(100, 100).validate().is_ok());
        let mut p = prefs(90, 100);
        p.checkpoints = vec![50, 20];
        assert!(p.validate().is_err());
        p.checkpoints = vec![20, 50, 100];
        assert!(p.validate().is_ok());
    }

    #[test]
    fn defaults_are_the_api_references() {
        // API_RefreshPreferences: Wait for both (the console and Terraform default to Ignore).
        // The ranges (BakeTime and CheckpointDelay 0 to 172,800 s, InstanceWarmup a 32-bit
        // integer from 0) are checked once, by the API: api/autoscaling.rs.
        let d = RefreshPreferences::default();
        assert_eq!(d.scale_in_protected, ScaleInProtected::Wait);
        assert_eq!(d.standby, Standby::Wait);
        assert!(d.validate().is_ok());
    }
}

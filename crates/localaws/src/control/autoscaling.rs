//! The Auto Scaling group: capacity, instance lifecycle, health, lifecycle hooks, activities.
//!
//! Lifecycle (AWS's states): `Pending` (booting, `boot` simulated seconds) → `InService` →
//! `Terminating` → `Terminating:Wait` (while a terminating lifecycle hook holds it: ECS managed
//! draining, or a hook from the stack until `CompleteLifecycleAction` or its heartbeat timeout) →
//! `Terminating:Proceed` → `Terminated`. Termination removes the instance from the data plane:
//! whatever still runs on it dies at once.
//!
//! Health, as the group's health check type says: `EC2` judges an instance by its EC2 status
//! checks only; `ELB` also by the target groups attached to the group, in which every instance
//! is registered while in service (its own address, the group's port; what answers there is the
//! ECS agent's introspection endpoint, see `dataplane::agent`). An instance `unhealthy` in any of
//! them once the grace period has passed is marked `Unhealthy` and replaced
//! (docs/failure-modes.md#fm-13).

use std::net::SocketAddr;
use std::time::SystemTime;

use tokio::time::Instant;

use super::ec2::{Ec2Instance, HookWait, InstanceHealth, Lifecycle};
use super::{Control, ControlError, Ctx, KEEP_TERMINATED, State, ecs, uuid, wall};
use crate::dataplane::{DataPlane, Instance, TargetHealth};
use stack::{AutoScalingGroupConfig, LifecycleHookConfig};

/// The name of the hook ECS managed draining adds to the group.
pub const MANAGED_DRAINING_HOOK: &str = "ecs-managed-draining-termination-hook";

/// The cause of the termination of an instance that failed its EC2 status checks, as AWS words
/// it.
pub const EC2_HEALTH_CAUSE: &str =
    "an instance was taken out of service in response to an EC2 instance status checks failure";

/// The cause of the termination of an instance that failed its load balancer health checks
/// (health check type `ELB`), as AWS words it.
pub const ELB_HEALTH_CAUSE: &str =
    "an instance was taken out of service in response to an ELB system health check failure";

/// A scaling activity (`DescribeScalingActivities`).
#[derive(Debug, Clone)]
pub struct Activity {
    /// UUID.
    pub id: String,
    /// `Launching a new EC2 instance: i-...`.
    pub description: String,
    /// Why.
    pub cause: String,
    /// Start.
    pub start: SystemTime,
    /// End, once done.
    pub end: Option<SystemTime>,
    /// `Successful`, `InProgress`, `Failed`, `Cancelled`.
    pub status: &'static str,
    /// The instance it is about.
    pub instance: String,
}

/// The Auto Scaling group.
#[derive(Debug, Clone)]
pub struct Asg {
    /// Name.
    pub name: String,
    /// ARN.
    pub arn: String,
    /// Minimum size.
    pub min: u32,
    /// Maximum size.
    pub max: u32,
    /// Desired capacity.
    pub desired: u32,
    /// Launch template name.
    pub launch_template: String,
    /// Its version as configured (`1`, `$Latest`, `$Default`).
    pub version: String,
    /// `EC2` or `ELB`.
    pub health_check_type: String,
    /// Simulated seconds.
    pub health_check_grace_period: u32,
    /// Target groups attached to the group, with the port instances are registered on.
    pub target_groups: Vec<(String, u16)>,
    /// Simulated seconds.
    pub default_instance_warmup: Option<u32>,
    /// Lifecycle hooks, ECS managed draining's included.
    pub hooks: Vec<LifecycleHookConfig>,
    /// Whether the capacity provider drains instances (managed draining).
    pub managed_draining: bool,
    /// Whether the capacity provider protects instances running tasks from scale-in.
    pub managed_termination_protection: bool,
    /// Capacity provider name.
    pub capacity_provider: String,
    /// Creation time.
    pub created: SystemTime,
}

pub(super) fn load(state: &mut State, config: &AutoScalingGroupConfig, plane: &DataPlane) {
    let mut hooks = config.lifecycle_hooks.clone();
    if config.capacity_provider.managed_draining {
        hooks.push(LifecycleHookConfig {
            name: MANAGED_DRAINING_HOOK.into(),
            transition: "autoscaling:EC2_INSTANCE_TERMINATING".into(),
            heartbeat_timeout: 3600,
            default_result: "CONTINUE".into(),
        });
    }
    let asg = Asg {
        name: config.name.clone(),
        arn: crate::arn::regional(
            "autoscaling",
            &format!(
                "autoScalingGroup:{}:autoScalingGroupName/{}",
                uuid(),
                config.name
            ),
        ),
        min: config.min_size,
        max: config.max_size,
        desired: config.desired_capacity,
        launch_template: config.launch_template.name.clone(),
        version: config.launch_template.version.clone(),
        health_check_type: config.health_check_type.clone(),
        health_check_grace_period: config.health_check_grace_period,
        target_groups: config
            .target_groups
            .iter()
            .filter_map(|name| {
                let port = plane.stack().target_group(name)?.port?;
                Some((name.clone(), port))
            })
            .collect(),
        default_instance_warmup: config.default_instance_warmup,
        hooks,
        managed_draining: config.capacity_provider.managed_draining,
        managed_termination_protection: config.capacity_provider.managed_termination_protection,
        capacity_provider: config.capacity_provider.name.clone(),
        created: wall(),
    };
    state.asg = Some(asg);
}

/// Records an instance the data plane already has (a fixed fleet, no Auto Scaling group).
pub(super) fn adopt(state: &mut State, instance: &Instance) {
    let now = state.now.unwrap_or_else(Instant::now);
    state.instances.insert(
        instance.id.clone(),
        Ec2Instance {
            id: instance.id.clone(),
            ip: instance.ip,
            launch_template: None,
            image_id: "ami-00000000000000000".into(),
            instance_type: "t3.small".into(),
            zone: "us-east-1a",
            lifecycle: Lifecycle::InService,
            health: InstanceHealth::Healthy,
            launched: now,
            launch_time: wall(),
            in_service: Some(now),
            protected: false,
            hook_wait: None,
            agent_registers: true,
            agent_start: 0,
            boot: 0,
            status_checks_pass: true,
            unhealthy_cause: None,
        },
    );
}

impl State {
    /// The Auto Scaling group called `name`.
    pub fn asg(&self, name: &str) -> Result<&Asg, ControlError> {
        self.asg
            .as_ref()
            .filter(|a| a.name == name)
            .ok_or_else(|| ControlError::not_found("auto scaling group", name))
    }

    /// Instances of the group that are not terminated, oldest first.
    pub fn group_instances(&self) -> Vec<&Ec2Instance> {
        let mut v: Vec<_> = self
            .instances
            .values()
            .filter(|i| i.lifecycle != Lifecycle::Terminated)
            .collect();
        v.sort_by_key(|i| i.launched);
        v
    }

    /// The launch template version number new instances get now: the active refresh's target
    /// while one runs, else the group's own configuration.
    pub fn launch_version(&self) -> Option<(String, u32)> {
        let asg = self.asg.as_ref()?;
        if let Some(r) = self.refreshes.iter().rev().find(|r| r.status.is_active()) {
            return Some((r.target.0.clone(), r.target.1));
        }
        let lt = self.launch_templates.get(&asg.launch_template)?;
        Some((lt.name.clone(), lt.resolve(&asg.version)?))
    }

    fn activity(&mut self, description: String, cause: String, instance: &str) {
        let now = wall();
        self.activities.push_back(Activity {
            id: uuid(),
            description,
            cause,
            start: now,
            end: Some(now),
            status: "Successful",
            instance: instance.to_owned(),
        });
        while self.activities.len() > 200 {
            self.activities.pop_front();
        }
    }
}

/// Launches one instance from the current launch configuration.
pub(super) fn launch(state: &mut State, ctx: &Ctx<'_>, cause: &str) {
    let Some((lt_name, version)) = state.launch_version() else {
        return;
    };
    let Some(data) = state
        .launch_templates
        .get(&lt_name)
        .and_then(|lt| lt.version(version))
        .map(|v| v.data.clone())
    else {
        return;
    };
    let ami = ctx.plane.stack().ami(&data.image_id);
    let instance = ctx.plane.add_instance();
    state.instances.insert(
        instance.id.clone(),
        Ec2Instance {
            id: instance.id.clone(),
            ip: instance.ip,
            launch_template: Some((lt_name.clone(), version)),
            image_id: data.image_id.clone(),
            instance_type: data.instance_type.clone(),
            zone: ["us-east-1a", "us-east-1b", "us-east-1c"][state.instances.len() % 3],
            lifecycle: Lifecycle::Pending,
            health: InstanceHealth::Healthy,
            launched: ctx.now,
            launch_time: wall(),
            in_service: None,
            protected: false,
            hook_wait: None,
            agent_registers: ami.ecs_agent_registers,
            agent_start: ami.agent_start,
            boot: ami.boot,
            status_checks_pass: ami.status_checks_pass,
            unhealthy_cause: None,
        },
    );
    ctx.events.emit(
        "autoscaling",
        format!(
            "launching {} ({} version {version}, {}) on {}",
            instance.id, lt_name, data.image_id, instance.ip
        ),
    );
    state.activity(
        format!("Launching a new EC2 instance: {}", instance.id),
        cause.to_owned(),
        &instance.id,
    );
}

/// Starts terminating an instance.
pub(super) fn terminate(state: &mut State, ctx: &Ctx<'_>, id: &str, cause: &str) {
    let Some(i) = state.instances.get_mut(id) else {
        return;
    };
    if !i.lifecycle.is_live() {
        return;
    }
    i.lifecycle = Lifecycle::Terminating;
    let ip = i.ip;
    ctx.events
        .emit("autoscaling", format!("terminating {id}: {cause}"));
    // Auto Scaling deregisters it from the attached target groups first; the termination goes
    // on once the deregistration delay has passed.
    for (name, port) in state.asg.iter().flat_map(|a| a.target_groups.iter()) {
        if let Ok(tg) = ctx.plane.target_group(name) {
            tg.deregister(SocketAddr::new(ip, *port));
        }
    }
    state.activity(
        format!("Terminating EC2 instance: {id}"),
        cause.to_owned(),
        id,
    );
}

/// One reconcile step of the group.
pub(super) fn step(state: &mut State, ctx: &Ctx<'_>) {
    boot(state, ctx);
    lifecycle(state, ctx);
    let Some(asg) = state.asg.clone() else {
        return;
    };
    // Replace instances that failed health checks, once their grace period has passed.
    let unhealthy: Vec<(String, &'static str)> = state
        .instances
        .values()
        .filter(|i| {
            i.lifecycle == Lifecycle::InService
                && i.health == InstanceHealth::Unhealthy
                && ctx.elapsed(i.launched, asg.health_check_grace_period)
        })
        .map(|i| (i.id.clone(), i.unhealthy_cause.unwrap_or(EC2_HEALTH_CAUSE)))
        .collect();
    for (id, cause) in unhealthy {
        terminate(state, ctx, &id, cause);
    }
    // ELB health: found here, replaced at the next step (an instance refresh sees it first).
    elb_health(state, ctx, &asg);
    // Capacity: the desired capacity, plus what an instance refresh launched ahead.
    let extra = state
        .refreshes
        .iter()
        .rev()
        .find(|r| r.status.is_active())
        .map_or(0, |r| r.extra);
    let target = asg.desired + extra;
    let live = state
        .instances
        .values()
        .filter(|i| i.lifecycle.is_live())
        .count();
    let live = u32::try_from(live).unwrap_or(u32::MAX);
    if live < target {
        for _ in live..target {
            launch(
                state,
                ctx,
                &format!(
                    "an instance was started in response to a difference between desired and actual capacity, increasing the capacity from {live} to {target}"
                ),
            );
        }
    } else if live > target && !state.refreshes.iter().any(|r| r.status.is_active()) {
        // Scale in: instances from other launch template versions first, then the oldest;
        // never a protected one.
        let current = state.launch_version();
        let mut candidates: Vec<&Ec2Instance> = state
            .instances
            .values()
            .filter(|i| i.lifecycle.is_live() && !i.protected)
            .collect();
        candidates.sort_by_key(|i| (i.launch_template == current, i.launched));
        let victims: Vec<String> = candidates
            .iter()
            .take((live - target) as usize)
            .map(|i| i.id.clone())
            .collect();
        for id in victims {
            terminate(
                state,
                ctx,
                &id,
                &format!(
                    "an instance was taken out of service in response to a difference between desired and actual capacity, shrinking the capacity from {live} to {target}"
                ),
            );
        }
    }
    // Managed termination protection: instances running tasks are protected from scale-in.
    if asg.managed_termination_protection {
        let busy: std::collections::BTreeSet<String> = state
            .tasks
            .values()
            .filter(|t| t.is_live())
            .map(|t| t.instance.clone())
            .collect();
        for i in state.instances.values_mut() {
            i.protected = busy.contains(&i.id);
        }
    }
}

/// `Pending` → `InService` after boot (registered in the attached target groups); status
/// checks; ECS agent registration.
fn boot(state: &mut State, ctx: &Ctx<'_>) {
    let groups = state
        .asg
        .as_ref()
        .map(|a| a.target_groups.clone())
        .unwrap_or_default();
    let mut registered = Vec::new();
    for i in state.instances.values_mut() {
        if i.lifecycle == Lifecycle::Pending && ctx.elapsed(i.launched, i.boot) {
            i.lifecycle = Lifecycle::InService;
            i.in_service = Some(ctx.now);
            if !i.status_checks_pass {
                i.health = InstanceHealth::Unhealthy;
                i.unhealthy_cause = Some(EC2_HEALTH_CAUSE);
            }
            register_targets(ctx, &i.id, i.ip, &groups);
            ctx.events.emit(
                "autoscaling",
                format!(
                    "{} InService{}",
                    i.id,
                    if i.status_checks_pass {
                        ""
                    } else {
                        ", failing EC2 status checks (Unhealthy)"
                    }
                ),
            );
        }
        if i.lifecycle == Lifecycle::InService
            && i.agent_registers
            && i.in_service.is_some_and(|t| ctx.elapsed(t, i.agent_start))
        {
            registered.push(i.id.clone());
        }
    }
    for id in registered {
        if !state.container_instances.contains_key(&id) {
            ecs::register_container_instance(state, &id, ctx.events);
            if let Some(ci) = state.container_instances.get(&id) {
                ctx.plane.agent_registered(&id, &state.cluster, &ci.arn);
            }
        }
    }
}

/// An instance went `InService`: what answers on it starts (the ECS agent's introspection
/// endpoint, on each attached group's port) and it is registered in each attached group.
fn register_targets(ctx: &Ctx<'_>, id: &str, ip: std::net::IpAddr, groups: &[(String, u16)]) {
    if groups.is_empty() {
        return;
    }
    let mut ports: Vec<u16> = groups.iter().map(|(_, port)| *port).collect();
    ports.sort_unstable();
    ports.dedup();
    match ctx.plane.start_instance_endpoint(id, &ports) {
        Ok(failed) => {
            for (addr, e) in failed {
                tracing::warn!(instance = %id, %addr, error = %e, "nothing answers on the instance");
                ctx.events
                    .emit("ec2", format!("{id}: nothing answers on {addr}: {e}"));
            }
        }
        Err(e) => tracing::warn!(instance = %id, error = %e, "no instance endpoint"),
    }
    for (name, port) in groups {
        let addr = SocketAddr::new(ip, *port);
        let registered = ctx
            .plane
            .target_group(name)
            .map_err(|e| e.to_string())
            .and_then(|tg| tg.register(id, addr));
        if let Err(e) = registered {
            tracing::warn!(instance = %id, target_group = %name, error = %e, "cannot register");
        }
    }
}

/// The state of the instance's target in each attached group.
fn target_states<'a>(
    ctx: &'a Ctx<'_>,
    asg: &'a Asg,
    ip: std::net::IpAddr,
) -> impl Iterator<Item = (&'a str, Option<TargetHealth>)> + 'a {
    asg.target_groups.iter().map(move |(name, port)| {
        let health = ctx
            .plane
            .target_group(name)
            .ok()
            .and_then(|g| g.health_of(SocketAddr::new(ip, *port)));
        (name.as_str(), health)
    })
}

/// Health check type `ELB`: an instance in service past its grace period whose target is
/// `unhealthy` in an attached group turns `Unhealthy`.
fn elb_health(state: &mut State, ctx: &Ctx<'_>, asg: &Asg) {
    if asg.health_check_type != "ELB" || asg.target_groups.is_empty() {
        return;
    }
    let failing: Vec<(String, String)> = state
        .instances
        .values()
        .filter(|i| {
            i.lifecycle == Lifecycle::InService
                && i.health == InstanceHealth::Healthy
                && ctx.elapsed(i.launched, asg.health_check_grace_period)
        })
        .filter_map(|i| {
            let (tg, _) =
                target_states(ctx, asg, i.ip).find(|(_, h)| *h == Some(TargetHealth::Unhealthy))?;
            Some((i.id.clone(), tg.to_owned()))
        })
        .collect();
    for (id, tg) in failing {
        if let Some(i) = state.instances.get_mut(&id) {
            i.health = InstanceHealth::Unhealthy;
            i.unhealthy_cause = Some(ELB_HEALTH_CAUSE);
            ctx.events.emit(
                "autoscaling",
                format!("{id} Unhealthy: its target in {tg} is unhealthy (ELB health check)"),
            );
        }
    }
}

/// Terminating instances through hooks to `Terminated`.
fn lifecycle(state: &mut State, ctx: &Ctx<'_>) {
    let hooks: Vec<LifecycleHookConfig> = state
        .asg
        .as_ref()
        .map(|a| {
            a.hooks
                .iter()
                .filter(|h| h.transition == "autoscaling:EC2_INSTANCE_TERMINATING")
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let ids: Vec<String> = state
        .instances
        .values()
        .filter(|i| i.lifecycle.is_terminating())
        .map(|i| i.id.clone())
        .collect();
    for id in ids {
        let Some((lifecycle, ip)) = state.instances.get(&id).map(|i| (i.lifecycle, i.ip)) else {
            continue;
        };
        let deregistering = state.asg.as_ref().is_some_and(|asg| {
            target_states(ctx, asg, ip).any(|(_, h)| h == Some(TargetHealth::Draining))
        });
        match lifecycle {
            // Deregistered from the attached target groups first, for their deregistration
            // delay.
            Lifecycle::Terminating if deregistering => {}
            Lifecycle::Terminating if hooks.is_empty() => {
                finish_termination(state, ctx, &id);
            }
            Lifecycle::Terminating => {
                let pending = hooks
                    .iter()
                    .map(|h| {
                        (
                            h.name.clone(),
                            ctx.now + ctx.clock.secs(h.heartbeat_timeout),
                            h.default_result.clone(),
                        )
                    })
                    .collect();
                if let Some(i) = state.instances.get_mut(&id) {
                    i.lifecycle = Lifecycle::TerminatingWait;
                    i.hook_wait = Some(HookWait {
                        pending,
                        abandoned: false,
                    });
                }
                ctx.events
                    .emit("autoscaling", format!("{id} Terminating:Wait"));
                if hooks.iter().any(|h| h.name == MANAGED_DRAINING_HOOK) {
                    ecs::drain_container_instance(state, &id, ctx.events);
                }
            }
            Lifecycle::TerminatingWait => {
                // ECS completes the managed draining hook once no task runs on the instance.
                let drained = !state
                    .tasks
                    .values()
                    .any(|t| t.instance == id && t.is_live());
                let Some(i) = state.instances.get_mut(&id) else {
                    continue;
                };
                let Some(wait) = i.hook_wait.as_mut() else {
                    i.lifecycle = Lifecycle::TerminatingProceed;
                    continue;
                };
                wait.pending.retain(|(name, deadline, result)| {
                    if name == MANAGED_DRAINING_HOOK && drained {
                        return false;
                    }
                    if ctx.now >= *deadline {
                        tracing::info!(instance = %id, hook = %name, %result, "lifecycle hook timed out");
                        return false;
                    }
                    true
                });
                if wait.pending.is_empty() {
                    i.lifecycle = Lifecycle::TerminatingProceed;
                    ctx.events
                        .emit("autoscaling", format!("{id} Terminating:Proceed"));
                }
            }
            Lifecycle::TerminatingProceed => finish_termination(state, ctx, &id),
            _ => {}
        }
    }
}

fn finish_termination(state: &mut State, ctx: &Ctx<'_>, id: &str) {
    let killed = ctx.plane.remove_instance(id);
    if let Some(i) = state.instances.get_mut(id) {
        i.lifecycle = Lifecycle::Terminated;
        i.hook_wait = None;
    }
    ecs::instance_gone(state, id, ctx);
    ctx.events.emit(
        "autoscaling",
        if killed.is_empty() {
            format!("{id} Terminated")
        } else {
            format!(
                "{id} Terminated with {} task(s) still running: {}",
                killed.len(),
                killed.join(", ")
            )
        },
    );
    // Keep the most recent terminated instances only.
    let mut gone: Vec<(Instant, String)> = state
        .instances
        .values()
        .filter(|i| i.lifecycle == Lifecycle::Terminated)
        .map(|i| (i.launched, i.id.clone()))
        .collect();
    if gone.len() > KEEP_TERMINATED {
        gone.sort();
        for (_, id) in gone.iter().take(gone.len() - KEEP_TERMINATED) {
            state.instances.remove(id);
        }
    }
}

/// Changes to the group (`UpdateAutoScalingGroup`, `SetDesiredCapacity`).
#[derive(Debug, Clone, Default)]
pub struct GroupUpdate {
    /// `MinSize`.
    pub min: Option<u32>,
    /// `MaxSize`.
    pub max: Option<u32>,
    /// `DesiredCapacity`.
    pub desired: Option<u32>,
    /// `LaunchTemplate.LaunchTemplateName` / `LaunchTemplateId`.
    pub launch_template: Option<super::ec2::TemplateRef>,
    /// `LaunchTemplate.Version`.
    pub version: Option<String>,
    /// `HealthCheckType`.
    pub health_check_type: Option<String>,
    /// `HealthCheckGracePeriod`.
    pub health_check_grace_period: Option<u32>,
    /// `DefaultInstanceWarmup`.
    pub default_instance_warmup: Option<u32>,
}

impl Control {
    /// `UpdateAutoScalingGroup` / `SetDesiredCapacity`.
    pub fn update_group(&self, name: &str, u: GroupUpdate) -> Result<(), ControlError> {
        self.write(|st, _| {
            let current = st.asg(name)?.clone();
            let lt_name = match &u.launch_template {
                Some(r) => st.launch_template(r)?.name.clone(),
                None => current.launch_template.clone(),
            };
            let version = u.version.clone().unwrap_or_else(|| {
                if u.launch_template.is_some() {
                    "$Default".into()
                } else {
                    current.version.clone()
                }
            });
            let lt = st
                .launch_templates
                .get(&lt_name)
                .ok_or_else(|| ControlError::not_found("launch template", lt_name.clone()))?;
            if lt.resolve(&version).is_none() {
                return Err(ControlError::Validation(format!(
                    "the launch template version {version} does not exist for {lt_name}"
                )));
            }
            let min = u.min.unwrap_or(current.min);
            let max = u.max.unwrap_or(current.max);
            let desired = u.desired.unwrap_or(current.desired.clamp(min, max.max(min)));
            if min > max {
                return Err(ControlError::Validation(format!(
                    "min size {min} is greater than max size {max}"
                )));
            }
            if !(min..=max).contains(&desired) {
                return Err(ControlError::Validation(format!(
                    "desired capacity {desired} must be between the min ({min}) and max ({max}) size"
                )));
            }
            if let Some(t) = &u.health_check_type
                && !matches!(t.as_str(), "EC2" | "ELB")
            {
                return Err(ControlError::Validation(format!(
                    "invalid health check type {t:?}: expected EC2 or ELB"
                )));
            }
            let Some(asg) = st.asg.as_mut() else {
                return Err(ControlError::not_found("auto scaling group", name));
            };
            asg.min = min;
            asg.max = max;
            asg.desired = desired;
            asg.launch_template = lt_name;
            asg.version = version;
            if let Some(t) = u.health_check_type {
                asg.health_check_type = t;
            }
            if let Some(g) = u.health_check_grace_period {
                asg.health_check_grace_period = g;
            }
            if let Some(w) = u.default_instance_warmup {
                asg.default_instance_warmup = Some(w);
            }
            Ok(())
        })
    }

    /// `CompleteLifecycleAction`.
    pub fn complete_lifecycle_action(
        &self,
        group: &str,
        hook: &str,
        instance: &str,
        result: &str,
    ) -> Result<(), ControlError> {
        if !matches!(result, "CONTINUE" | "ABANDON") {
            return Err(ControlError::Validation(format!(
                "invalid LifecycleActionResult {result:?}: expected CONTINUE or ABANDON"
            )));
        }
        self.write(|st, _| {
            let asg = st.asg(group)?;
            if !asg.hooks.iter().any(|h| h.name == hook) {
                return Err(ControlError::Validation(format!(
                    "no lifecycle hook named {hook} on group {group}"
                )));
            }
            let i = st
                .instances
                .get_mut(instance)
                .filter(|i| i.lifecycle == Lifecycle::TerminatingWait)
                .ok_or_else(|| {
                    ControlError::Validation(format!(
                        "no active lifecycle action found with instance ID {instance}"
                    ))
                })?;
            if let Some(wait) = i.hook_wait.as_mut() {
                let before = wait.pending.len();
                wait.pending.retain(|(name, _, _)| name != hook);
                if wait.pending.len() == before {
                    return Err(ControlError::Validation(format!(
                        "no active lifecycle action found for hook {hook} on instance {instance}"
                    )));
                }
                wait.abandoned |= result == "ABANDON";
            }
            Ok(())
        })
    }
}

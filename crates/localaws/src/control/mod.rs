//! The control plane: AWS semantics over the data plane, no wire formats.
//!
//! One [`Control`] holds the state of every emulated service behind one lock and runs one
//! reconcile loop, as AWS's own controllers do: each step compares what is asked (desired
//! capacity, desired count, an instance refresh's target) with what runs, and acts. Steps are
//! quick and synchronous under the lock; what takes time (starting a process, draining a task)
//! runs in spawned tasks that write their outcome back and wake the loop.
//!
//! - [`ec2`]: launch templates and their versions;
//! - [`autoscaling`]: the Auto Scaling group, instance lifecycle (`Pending` → `InService` →
//!   `Terminating` → `Terminating:Wait` → `Terminated`), lifecycle hooks, scaling activities;
//! - [`refresh`]: instance refreshes (batches, warmup, checkpoints, cancel, rollback);
//! - [`ecs`]: the cluster, container instances (`ACTIVE`/`DRAINING`), task definitions, services
//!   and their tasks, managed draining;
//! - [`elbv2`]: the data plane's load balancers, listeners and target groups as the API sees
//!   them (plain views), target registration, listener weights.
//!
//! Simulated durations (boot, warmup, grace periods, checkpoint delays) are compared against
//! real instants through the [`Clock`], so a whole refresh runs `time_scale` times faster.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::dataplane::DataPlane;
use crate::events::EventKind;

pub mod autoscaling;
pub mod codedeploy;
pub mod ec2;
pub mod ecs;
pub mod elbv2;
pub mod refresh;
pub mod rolling;

pub use autoscaling::{Activity, Asg};
pub use codedeploy::{CodeDeployState, Deployment};
pub use ec2::{Ec2Instance, InstanceHealth, LaunchTemplate, LaunchTemplateVersion, Lifecycle};
pub use ecs::{
    ContainerInstance, HealthStatus, Service, Task, TaskDefinitionRevision, TaskSet, TaskStatus,
};
pub use refresh::{InstanceRefresh, RefreshPreferences, RefreshStatus};

pub use crate::ids::{hex as hex_id, uuid};

/// Why a control-plane call was refused. The API layer maps each to its service's error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// A parameter is missing or invalid (`ValidationError`, `InvalidParameterException`).
    #[error("{0}")]
    Validation(String),
    /// A named resource does not exist.
    #[error("{kind} {name} not found")]
    NotFound {
        /// What kind of resource (`auto scaling group`, `cluster`, `service`, ...).
        kind: &'static str,
        /// The name asked for.
        name: String,
    },
    /// The request conflicts with the current state; `code` is AWS's error code for it.
    #[error("{message}")]
    Conflict {
        /// AWS's error code (`InstanceRefreshInProgress`, `ActiveInstanceRefreshNotFound`, ...).
        code: &'static str,
        /// What AWS would say.
        message: String,
    },
}

impl ControlError {
    pub(crate) fn not_found(kind: &'static str, name: impl Into<String>) -> Self {
        Self::NotFound {
            kind,
            name: name.into(),
        }
    }
}

/// Everything the control plane knows.
#[derive(Debug, Default)]
pub struct State {
    /// Launch templates by name.
    pub launch_templates: BTreeMap<String, LaunchTemplate>,
    /// The Auto Scaling group, if the stack has one.
    pub asg: Option<Asg>,
    /// EC2 instances by id, terminated ones included (the most recent [`KEEP_TERMINATED`]).
    pub instances: BTreeMap<String, Ec2Instance>,
    /// Scaling activities, newest last.
    pub activities: VecDeque<Activity>,
    /// Instance refreshes, oldest first.
    pub refreshes: Vec<InstanceRefresh>,
    /// ECS cluster name.
    pub cluster: String,
    /// Container instances by EC2 instance id.
    pub container_instances: BTreeMap<String, ContainerInstance>,
    /// Task definitions by family, revision 1 first.
    pub task_definitions: BTreeMap<String, Vec<TaskDefinitionRevision>>,
    /// ECS services by name.
    pub services: BTreeMap<String, Service>,
    /// ECS tasks by id, stopped ones included (the most recent [`KEEP_STOPPED`]).
    pub tasks: BTreeMap<String, Task>,
    /// CodeDeploy applications, configs and deployments, and the alarms they watch.
    pub codedeploy: CodeDeployState,
    /// When the loop last ran (real).
    pub(crate) now: Option<Instant>,
}

/// Terminated instances kept for `Describe*` calls.
pub const KEEP_TERMINATED: usize = 100;
/// Stopped tasks kept for `DescribeTasks`.
pub const KEEP_STOPPED: usize = 200;

/// What a reconcile step asks to be done outside the lock.
#[derive(Debug)]
#[allow(clippy::enum_variant_names)]
pub(crate) enum Action {
    /// Start the task recorded under this id.
    StartTask(String),
    /// Stop the task the ECS way: deregister, wait for the delay, SIGTERM, stopTimeout, SIGKILL.
    StopTask(String),
    /// Deregister a task that died and forget its process.
    CleanUpTask(String),
    /// Run one container's health check: the task, the container.
    HealthCheck(String, String),
    /// Invoke a CodeDeploy hook's function.
    InvokeHook {
        /// Deployment id.
        deployment: String,
        /// `LifecycleEventHookExecutionId`.
        execution_id: String,
        /// What to run.
        function: stack::HookFunction,
    },
}

#[derive(Debug)]
struct Shared {
    plane: DataPlane,
    clock: Clock,
    state: Mutex<State>,
    wake: Notify,
    stop: CancellationToken,
}

/// The control plane. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Control {
    inner: Arc<Shared>,
}

impl Control {
    /// Builds the control plane from the data plane's stack and starts its loop: the Auto
    /// Scaling group launches its instances, and services place their tasks as container
    /// instances register.
    pub fn start(plane: DataPlane) -> Self {
        let stack = plane.stack().clone();
        let mut state = State {
            cluster: stack.cluster.name.clone(),
            ..State::default()
        };
        ec2::load(&mut state, &stack);
        ecs::load(&mut state, &stack);
        codedeploy::load(&mut state, &stack);
        let control = Self {
            inner: Arc::new(Shared {
                clock: plane.clock(),
                plane,
                state: Mutex::new(state),
                wake: Notify::new(),
                stop: CancellationToken::new(),
            }),
        };
        {
            let mut st = control.lock();
            st.now = Some(Instant::now());
            match &stack.auto_scaling_group {
                Some(asg) => autoscaling::load(&mut st, asg, &control.inner.plane),
                // A fixed fleet: the data plane's instances, registered with ECS at once.
                None => {
                    for i in control.inner.plane.instances() {
                        autoscaling::adopt(&mut st, &i);
                        ecs::register_container_instance(&mut st, &i.id, control.events());
                    }
                }
            }
        }
        tokio::spawn(control.clone().run());
        control
    }

    /// The data plane underneath.
    pub fn plane(&self) -> &DataPlane {
        &self.inner.plane
    }

    /// The stack this control plane runs (what the API reads rather than the data plane).
    pub fn stack(&self) -> &stack::Stack {
        self.inner.plane.stack()
    }

    /// The simulated clock.
    pub fn clock(&self) -> Clock {
        self.inner.clock
    }

    pub(crate) fn events(&self) -> Emitter<'_> {
        Emitter(self.inner.plane.events())
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads the state.
    pub fn read<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&self.lock())
    }

    /// Changes the state and runs the loop at once.
    pub(crate) fn write<R>(&self, f: impl FnOnce(&mut State, &Self) -> R) -> R {
        let r = f(&mut self.lock(), self);
        self.inner.wake.notify_one();
        r
    }

    /// Stops the loop, then every task (gracefully) and the listeners.
    pub async fn shutdown(&self) {
        self.inner.stop.cancel();
        self.inner.plane.shutdown().await;
    }

    /// Waits until `done` holds for the state, or `within` (real) passes. Returns whether it held.
    pub async fn wait_until(&self, within: Duration, done: impl Fn(&State) -> bool) -> bool {
        let deadline = Instant::now() + within;
        let mut events = self.inner.plane.events().subscribe();
        loop {
            if self.read(&done) {
                return true;
            }
            // Re-check on every event, and at least every 20 ms (state also moves on timers).
            let wake = Instant::now() + Duration::from_millis(20);
            let until = wake.min(deadline);
            let _ = tokio::time::timeout_at(until, events.recv()).await;
            if Instant::now() >= deadline {
                return self.read(&done);
            }
        }
    }

    /// How often the loop runs without being woken: one simulated second, between 5 and 50 ms.
    fn tick(&self) -> Duration {
        self.inner
            .clock
            .to_real(Duration::from_secs(1))
            .clamp(Duration::from_millis(5), Duration::from_millis(50))
    }

    async fn run(self) {
        let tick = self.tick();
        loop {
            let actions = {
                let mut st = self.lock();
                let now = Instant::now();
                st.now = Some(now);
                let mut actions = Vec::new();
                let ctx = Ctx {
                    plane: &self.inner.plane,
                    clock: self.inner.clock,
                    now,
                    events: self.events(),
                };
                autoscaling::step(&mut st, &ctx);
                refresh::step(&mut st, &ctx);
                codedeploy::step(&mut st, &ctx, &mut actions);
                ecs::step(&mut st, &ctx, &mut actions);
                actions
            };
            for action in actions {
                self.execute(action);
            }
            tokio::select! {
                _ = self.inner.stop.cancelled() => return,
                _ = self.inner.wake.notified() => {}
                _ = tokio::time::sleep(tick) => {}
            }
        }
    }

    fn execute(&self, action: Action) {
        let me = self.clone();
        match action {
            Action::StartTask(id) => {
                tokio::spawn(async move { ecs::start_task(&me, id).await });
            }
            Action::StopTask(id) => {
                tokio::spawn(async move { ecs::stop_task(&me, id).await });
            }
            Action::HealthCheck(id, container) => {
                tokio::spawn(async move { ecs::health_check(&me, id, container).await });
            }
            Action::InvokeHook {
                deployment,
                execution_id,
                function,
            } => {
                tokio::spawn(async move {
                    codedeploy::invoke(&me, deployment, execution_id, function).await;
                });
            }
            Action::CleanUpTask(id) => {
                if let Ok(drains) = me.inner.plane.deregister_task(&id) {
                    drop(drains);
                }
                me.inner.plane.forget_task(&id);
            }
        }
    }
}

/// What a reconcile step may use besides the state.
pub(crate) struct Ctx<'a> {
    pub(crate) plane: &'a DataPlane,
    pub(crate) clock: Clock,
    pub(crate) now: Instant,
    pub(crate) events: Emitter<'a>,
}

impl Ctx<'_> {
    /// Whether the simulated `secs` have passed since `since`.
    pub(crate) fn elapsed(&self, since: Instant, secs: u32) -> bool {
        self.now >= since + self.clock.secs(secs)
    }
}

/// Emits control-plane events.
#[derive(Clone, Copy)]
pub(crate) struct Emitter<'a>(&'a crate::events::Events);

impl Emitter<'_> {
    pub(crate) fn emit(&self, service: &'static str, message: String) {
        self.0.emit(EventKind::Control { service, message });
    }
}

/// Wall-clock time now, for AWS timestamps.
pub fn wall() -> SystemTime {
    SystemTime::now()
}

//! The data plane, assembled from a stack: container instances (loopback addresses), target groups,
//! listeners, and tasks as real processes.
//!
//! This is the layer the control plane (ECS services, instance refresh, CodeDeploy) drives, and
//! what tests drive directly: run and stop tasks, register and deregister targets, change weights.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::events::{EventKind, Events};
mod addresses;
mod agent;
pub(crate) mod docker;
mod group;
pub mod health;
pub mod proxy;
pub mod runtime;
pub mod targets;
pub mod tls;

pub use crate::events::TargetHealth;
pub use addresses::AddressBlock;
pub(crate) use docker::DockerRuntime;
pub use docker::image_labels;
pub use runtime::{
    Check, ProcessRuntime, RunningTask, RuntimeError, StopOutcome, TaskExit, TaskRuntime,
};
pub use targets::{Metrics, TargetGroup, TargetInfo};
pub use tls::ListenerTls;

use proxy::{Forward, Listener};
use runtime::TaskSpec;
use stack::{Stack, TaskDefinition, WeightedTargetGroup, defaults};
use targets::TargetGroupSettings;

/// Why a data-plane operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DataPlaneError {
    /// A listener could not bind its port.
    #[error("listener {listener} cannot bind {addr}: {source}")]
    Bind {
        /// Listener name.
        listener: String,
        /// Address.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// Something named does not exist.
    #[error("no {kind} named {name:?}")]
    NotFound {
        /// `task definition`, `target group`, `listener`, `instance`, `task`.
        kind: &'static str,
        /// The name.
        name: String,
    },
    /// Bad input.
    #[error("{0}")]
    Invalid(String),
    /// The task runtime failed.
    #[error(transparent)]
    Runtime(#[from] runtime::RuntimeError),
    /// The proxy's worker threads could not be started.
    #[error("cannot start {threads} proxy worker thread(s): {source}")]
    Workers {
        /// How many.
        threads: usize,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The HTTPS listeners' certificate could not be made or written.
    #[error("HTTPS listeners: {0}")]
    Tls(String),
    /// The state directory could not be created.
    #[error("cannot create state directory {path}: {source}")]
    StateDir {
        /// Directory.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// A container instance: an id and its own loopback address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// `i-` and 17 hex digits.
    pub id: String,
    /// 127.0.x.y.
    pub ip: IpAddr,
}

/// A running (or stopped) task as seen from outside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskInfo {
    /// 32 hex digits, like an ECS task id.
    pub id: String,
    /// Task definition family.
    pub family: String,
    /// Instance it runs on.
    pub instance_id: String,
    /// Where its container port answers.
    pub endpoint: SocketAddr,
}

#[derive(Debug)]
struct TaskRecord {
    info: TaskInfo,
    /// The task as a whole: its one container, or the group of them.
    handle: Arc<dyn RunningTask>,
    /// The longest of its containers' stop timeouts.
    stop_timeout: Duration,
    /// Each container, in the task definition's order.
    containers: Vec<ContainerRecord>,
    /// Reports the exit as an event whenever it happens.
    watcher: JoinHandle<()>,
}

/// One container of a running task.
#[derive(Debug)]
struct ContainerRecord {
    name: String,
    handle: Arc<dyn RunningTask>,
    essential: bool,
    stop_timeout: Duration,
    /// Its environment, as it got it (its health checks run with it).
    env: Vec<(String, String)>,
}

/// What starting one container of a task takes.
struct Start<'a> {
    id: &'a str,
    td: &'a TaskDefinition,
    container: &'a stack::ContainerDefinition,
    image: &'a stack::Image,
    registered: Option<(&'a str, u32)>,
    sidecar: Option<String>,
    instance: &'a Instance,
    env: &'a [(&'a str, &'a str)],
}

/// How far a task has got to its end, as the data plane sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TaskEnd {
    /// It runs (a container that is not essential may have exited).
    Running,
    /// An essential container exited; the others are being stopped.
    Ending,
    /// Every container has exited (`None`: a task the data plane does not know).
    Exited(Option<TaskExit>),
}

/// Options beyond the stack.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where task logs go (`<dir>/tasks/<task>.stdout.log`).
    pub state_dir: PathBuf,
    /// Overrides the stack's `time_scale`.
    pub time_scale: Option<f64>,
    /// Binds every listener on port 0 (tests: no fixed ports).
    pub ephemeral_ports: bool,
    /// Proxy worker threads (default: one per core, at most 8).
    pub proxy_threads: Option<usize>,
    /// How image `server` runs: a program and the arguments before the image's own. Default:
    /// `$LOCALAWS_SERVER_BIN`, else a `server` binary beside the current executable, else `server`
    /// on `PATH`. The `localaws` binary sets itself with `server` (the application is linked in).
    pub server: Option<(PathBuf, Vec<String>)>,
}

impl Options {
    /// Defaults with state under `state_dir`.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        Self {
            state_dir: state_dir.into(),
            time_scale: None,
            ephemeral_ports: false,
            proxy_threads: None,
            server: None,
        }
    }
}

/// The running data plane. Cheap to clone.
#[derive(Debug, Clone)]
pub struct DataPlane {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    stack: Stack,
    clock: Clock,
    events: Events,
    runtime: Arc<dyn TaskRuntime>,
    server: Option<(PathBuf, Vec<String>)>,
    log_dir: PathBuf,
    instances: Mutex<Vec<Instance>>,
    /// The loopback addresses this plane's instances get, claimed for its lifetime.
    addresses: addresses::AddressBlock,
    /// Instances ever added: addresses are never reused.
    launched: AtomicU64,
    target_groups: BTreeMap<String, Arc<TargetGroup>>,
    listeners: Vec<Arc<Listener>>,
    /// The HTTPS listeners' CA and certificate, when there is one.
    tls: Option<ListenerTls>,
    workers: proxy::Workers,
    serving: Mutex<Vec<JoinHandle<()>>>,
    tasks: Mutex<BTreeMap<String, TaskRecord>>,
    /// Each instance's own endpoint (the ECS agent's introspection port), by instance id: only
    /// for instances of an Auto Scaling group with target groups attached.
    agents: Mutex<BTreeMap<String, agent::AgentEndpoint>>,
    placed: AtomicU64,
    stop: CancellationToken,
    /// Set (under the tasks lock) when shutdown takes the tasks: a task whose start was still
    /// under way then is stopped by its starter, not left running (a container, unlike a
    /// process, does not end with localaws).
    closing: std::sync::atomic::AtomicBool,
}

impl DataPlane {
    /// Stands up instances, target groups and listeners (no tasks yet: see
    /// [`DataPlane::start_services`]).
    pub async fn start(
        stack: Stack,
        runtime: Arc<dyn TaskRuntime>,
        options: Options,
    ) -> Result<Self, DataPlaneError> {
        // localaws never leaves loopback, whoever built the stack (the parser checks this too,
        // but a `Stack` can be built in code).
        for lb in &stack.load_balancers {
            if !lb.address.is_loopback() {
                return Err(DataPlaneError::Invalid(format!(
                    "load balancer {}: address {} is not a loopback address (127.0.0.0/8 or ::1)",
                    lb.name, lb.address
                )));
            }
        }
        let clock = Clock::new(options.time_scale.unwrap_or(stack.time_scale));
        let events = Events::new();
        let log_dir = options.state_dir.join("tasks");
        std::fs::create_dir_all(&log_dir).map_err(|source| DataPlaneError::StateDir {
            path: log_dir.clone(),
            source,
        })?;
        let idle = stack
            .load_balancers
            .iter()
            .map(|lb| lb.idle_timeout)
            .max()
            .unwrap_or(60);
        let idle = Duration::from_secs(u64::from(idle));
        let threads = options
            .proxy_threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get().min(8)));
        let workers = proxy::Workers::start(threads)
            .map_err(|source| DataPlaneError::Workers { threads, source })?;
        let target_groups = target_groups(&stack, idle, workers.len(), clock, &events)?;
        // One CA and one certificate for every HTTPS listener of the run.
        let https: Vec<IpAddr> = stack
            .load_balancers
            .iter()
            .filter(|lb| lb.listeners.iter().any(|l| l.is_https()))
            .map(|lb| lb.address)
            .collect();
        let tls = if https.is_empty() {
            None
        } else {
            Some(ListenerTls::new(&https, &options.state_dir).map_err(DataPlaneError::Tls)?)
        };
        let stop = CancellationToken::new();
        let (listeners, serving) = bind_listeners(
            &stack,
            &target_groups,
            tls.as_ref(),
            options.ephemeral_ports,
            &workers,
            &stop,
        )?;
        let plane = Self {
            inner: Arc::new(Inner {
                clock,
                events,
                runtime,
                server: options.server,
                log_dir,
                instances: Mutex::new(Vec::new()),
                addresses: addresses::AddressBlock::claim(),
                launched: AtomicU64::new(0),
                target_groups,
                listeners,
                tls,
                workers,
                serving: Mutex::new(serving),
                tasks: Mutex::new(BTreeMap::new()),
                agents: Mutex::new(BTreeMap::new()),
                placed: AtomicU64::new(0),
                stop,
                closing: std::sync::atomic::AtomicBool::new(false),
                stack,
            }),
        };
        tracing::info!(
            addresses = %format!("127.{}.0.0/16", plane.inner.addresses.octet()),
            "container instances' block"
        );
        // With an Auto Scaling group, the control plane launches the instances.
        if plane.inner.stack.auto_scaling_group.is_none() {
            for _ in 0..plane.inner.stack.cluster.instances {
                plane.add_instance();
            }
        }
        Ok(plane)
    }

    /// The stack this plane was built from.
    pub fn stack(&self) -> &Stack {
        &self.inner.stack
    }

    /// The simulated clock.
    pub fn clock(&self) -> Clock {
        self.inner.clock
    }

    /// The event bus.
    pub fn events(&self) -> &Events {
        &self.inner.events
    }

    /// Where task logs are written.
    pub fn log_dir(&self) -> &Path {
        &self.inner.log_dir
    }

    /// Adds a container instance on the next loopback address of the plane's block (see the
    /// `addresses` module). An address is never given twice, so nothing still talking to a
    /// terminated instance can reach its successor.
    pub fn add_instance(&self) -> Instance {
        let n = self.inner.launched.fetch_add(1, Ordering::Relaxed);
        let instance = Instance {
            id: format!("i-{}", crate::ids::hex(17)),
            ip: IpAddr::V4(self.inner.addresses.ip(n)),
        };
        self.inner
            .instances
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(instance.clone());
        instance
    }

    /// Starts the instance's own endpoint: the ECS agent's introspection server, on the
    /// instance's loopback address at each of `ports`, answering 503 until
    /// [`DataPlane::agent_registered`] (see the `agent` module). Returns the addresses that
    /// could not be bound, with the OS's error.
    pub fn start_instance_endpoint(
        &self,
        instance_id: &str,
        ports: &[u16],
    ) -> Result<Vec<(SocketAddr, std::io::Error)>, DataPlaneError> {
        let ip = self
            .instances()
            .into_iter()
            .find(|i| i.id == instance_id)
            .ok_or_else(|| not_found("instance", instance_id))?
            .ip;
        let (endpoint, failed) = agent::AgentEndpoint::start(ip, ports);
        if let Some(old) = self.agents().insert(instance_id.to_owned(), endpoint) {
            old.stop();
        }
        Ok(failed)
    }

    /// The ECS agent on `instance_id` registered its container instance: the instance's own
    /// endpoint answers 200 with the agent's metadata from now on.
    pub fn agent_registered(&self, instance_id: &str, cluster: &str, container_instance_arn: &str) {
        if let Some(a) = self.agents().get(instance_id) {
            a.registered(agent::metadata(cluster, container_instance_arn));
        }
    }

    fn agents(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, agent::AgentEndpoint>> {
        self.inner.agents.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Removes an instance as its termination does: every task still running on it dies at
    /// once (SIGKILL), without deregistration, and its own endpoint stops. Returns the ids of
    /// the tasks that were running.
    pub fn remove_instance(&self, instance_id: &str) -> Vec<String> {
        self.inner
            .instances
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|i| i.id != instance_id);
        if let Some(a) = self.agents().remove(instance_id) {
            a.stop();
        }
        let victims: Vec<(String, Arc<dyn RunningTask>)> = self
            .tasks()
            .values()
            .filter(|r| r.info.instance_id == instance_id)
            .map(|r| (r.info.id.clone(), Arc::clone(&r.handle)))
            .collect();
        for (_, handle) in &victims {
            handle.signal(runtime::StopSignal::Kill);
        }
        victims.into_iter().map(|(id, _)| id).collect()
    }

    /// How far the task has got to its end (one look, under the tasks' lock).
    pub(crate) fn task_end(&self, task_id: &str) -> TaskEnd {
        match self.tasks().get(task_id) {
            None => TaskEnd::Exited(None),
            Some(r) => match r.handle.exit() {
                Some(exit) => TaskEnd::Exited(Some(exit)),
                None if r.handle.ending() => TaskEnd::Ending,
                None => TaskEnd::Running,
            },
        }
    }

    /// Forgets a task whose process has exited (or kills it first if it has not).
    pub fn forget_task(&self, task_id: &str) {
        if let Some(r) = self.tasks().remove(task_id) {
            r.handle.signal(runtime::StopSignal::Kill);
        }
    }

    /// Tasks known to the data plane (running, or exited and not yet forgotten).
    pub fn task_list(&self) -> Vec<TaskInfo> {
        self.tasks().values().map(|r| r.info.clone()).collect()
    }

    /// Deregisters the task's endpoint from every target group it is registered with (draining
    /// starts at once). Returns tokens that fire when each deregistration delay has passed.
    pub fn deregister_task(&self, task_id: &str) -> Result<Vec<CancellationToken>, DataPlaneError> {
        let (info, _, _) = self.task(task_id)?;
        Ok(self
            .inner
            .target_groups
            .values()
            .filter_map(|tg| tg.deregister(info.endpoint))
            .collect())
    }

    /// Every target group.
    pub fn target_groups(&self) -> impl Iterator<Item = &Arc<TargetGroup>> {
        self.inner.target_groups.values()
    }

    /// The container instances.
    pub fn instances(&self) -> Vec<Instance> {
        self.inner
            .instances
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The target group called `name`.
    pub fn target_group(&self, name: &str) -> Result<Arc<TargetGroup>, DataPlaneError> {
        self.inner
            .target_groups
            .get(name)
            .cloned()
            .ok_or_else(|| not_found("target group", name))
    }

    /// Every listener.
    pub fn listeners(&self) -> &[Arc<Listener>] {
        &self.inner.listeners
    }

    /// The CA and certificate of the HTTPS listeners (`None` when every listener is HTTP).
    pub fn tls(&self) -> Option<&ListenerTls> {
        self.inner.tls.as_ref()
    }

    /// The listener called `name` (of any load balancer).
    pub fn listener(&self, name: &str) -> Result<Arc<Listener>, DataPlaneError> {
        self.inner
            .listeners
            .iter()
            .find(|l| l.name == name)
            .cloned()
            .ok_or_else(|| not_found("listener", name))
    }

    /// Changes a listener's weighted forward while traffic flows.
    pub fn set_weights(
        &self,
        listener: &str,
        weights: &[WeightedTargetGroup],
    ) -> Result<(), DataPlaneError> {
        let l = self.listener(listener)?;
        let f = forward(&self.inner.target_groups, weights)?;
        let describe = f.describe();
        l.set_forward(f);
        self.inner.events.emit(EventKind::WeightsChanged {
            listener: listener.to_owned(),
            weights: describe,
        });
        Ok(())
    }

    /// Starts a task of `family` on `instance` (or the instance with the fewest tasks), with
    /// `env` added on top of the task definition's environment.
    pub async fn run_task(
        &self,
        family: &str,
        instance: Option<&str>,
        env: &[(&str, &str)],
    ) -> Result<TaskInfo, DataPlaneError> {
        let td = self
            .inner
            .stack
            .task_definition(family)
            .ok_or_else(|| not_found("task definition", family))?
            .clone();
        self.run_task_definition(&td, instance, env).await
    }

    /// Starts a task from a task definition (registered or not).
    pub async fn run_task_definition(
        &self,
        td: &TaskDefinition,
        instance: Option<&str>,
        env: &[(&str, &str)],
    ) -> Result<TaskInfo, DataPlaneError> {
        let id = self.new_task_id();
        self.run_task_as(id, td, None, None, instance, env).await
    }

    /// What a task of a Docker image runs: the image, its container's port and init, and the
    /// ECS agent's labels (the task ARN ECS gave it, else the one it would give).
    fn container_spec(
        &self,
        reference: &str,
        id: &str,
        td: &TaskDefinition,
        container: &stack::ContainerDefinition,
        registered: Option<(&str, u32)>,
    ) -> runtime::ContainerSpec {
        let cluster = &self.inner.stack.cluster.name;
        let arn = registered.map_or_else(
            || crate::arn::regional("ecs", &format!("task/{cluster}/{id}")),
            |(arn, _)| arn.to_owned(),
        );
        let mut labels = BTreeMap::from([
            ("com.amazonaws.ecs.task-arn".to_owned(), arn),
            (
                "com.amazonaws.ecs.container-name".to_owned(),
                container.name.clone(),
            ),
            (
                "com.amazonaws.ecs.task-definition-family".to_owned(),
                td.family.clone(),
            ),
            ("com.amazonaws.ecs.cluster".to_owned(), cluster.clone()),
        ]);
        if let Some((_, revision)) = registered {
            labels.insert(
                "com.amazonaws.ecs.task-definition-version".to_owned(),
                revision.to_string(),
            );
        }
        runtime::ContainerSpec {
            image: reference.to_owned(),
            container_port: container.port_mappings.first().map(|p| p.container_port),
            init: container
                .linux_parameters
                .as_ref()
                .and_then(|l| l.init_process_enabled)
                .unwrap_or(false),
            entrypoint: container.entry_point.clone(),
            cmd: container.command.clone(),
            working_dir: container.working_directory.clone(),
            user: container.user.clone(),
            checked: container.health_check.is_some(),
            labels,
        }
    }

    /// A fresh task id (32 hex digits), for callers that record a task before it starts.
    pub fn new_task_id(&self) -> String {
        crate::ids::hex(32)
    }

    /// Starts a task under the id `id` (from [`DataPlane::new_task_id`]); `registered` is its
    /// ARN and its task definition's revision, when ECS knows them (a container's labels);
    /// `serving` names the container the load balancer reaches (else the first with a port
    /// mapping). Every container of the task starts, in the task definition's order; if one
    /// cannot, those already started are killed and the task does not start.
    pub async fn run_task_as(
        &self,
        id: String,
        td: &TaskDefinition,
        registered: Option<(&str, u32)>,
        serving: Option<&str>,
        instance: Option<&str>,
        env: &[(&str, &str)],
    ) -> Result<TaskInfo, DataPlaneError> {
        if self.inner.closing.load(Ordering::SeqCst) {
            return Err(DataPlaneError::Invalid(
                "localaws is shutting down: no new task starts".to_owned(),
            ));
        }
        let main = td
            .serving_container(serving)
            .ok_or_else(|| {
                DataPlaneError::Invalid(format!("task definition {} has no container", td.family))
            })?
            .name
            .clone();
        // Every image is known, and can run here, before anything starts.
        let mut images = Vec::new();
        for container in &td.container_definitions {
            let image = self
                .inner
                .stack
                .image(&container.image)
                .ok_or_else(|| not_found("image", &container.image))?;
            if image.docker.is_some() && td.network_mode.as_deref() == Some("host") {
                return Err(DataPlaneError::Invalid(format!(
                    "task definition {}: networkMode host is not run as a container here (every \
                     instance shares this machine's network): use bridge",
                    td.family
                )));
            }
            images.push(image);
        }
        let instance = self.place(instance)?;
        let mut started: Vec<ContainerRecord> = Vec::new();
        for (container, image) in td.container_definitions.iter().zip(images) {
            let sidecar = (container.name != main).then(|| container.name.clone());
            let one = Start {
                id: &id,
                td,
                container,
                image,
                registered,
                sidecar,
                instance: &instance,
                env,
            };
            match self.start_container(one).await {
                Ok(record) => started.push(record),
                Err(e) => {
                    for r in &started {
                        r.handle.signal(runtime::StopSignal::Kill);
                    }
                    for r in &started {
                        r.handle.wait().await;
                    }
                    return Err(e);
                }
            }
        }
        let stop_timeout = started
            .iter()
            .map(|r| r.stop_timeout)
            .max()
            .unwrap_or(Duration::from_secs(u64::from(defaults::STOP_TIMEOUT)));
        let handle = whole_task(&id, td, &started, &main)?;
        let info = TaskInfo {
            id: id.clone(),
            family: td.family.clone(),
            instance_id: instance.id.clone(),
            endpoint: handle.endpoint(),
        };
        self.inner.events.emit(EventKind::TaskStarted {
            task: id.clone(),
            endpoint: info.endpoint,
        });
        // Report the exit whenever it happens (crash, kill, or stop).
        let events = self.inner.events.clone();
        let watched = Arc::clone(&handle);
        let watcher = tokio::spawn(async move {
            let exit = watched.wait().await;
            events.emit(EventKind::TaskStopped {
                task: watched.id().to_owned(),
                how: exit.to_string(),
            });
        });
        let record = TaskRecord {
            info: info.clone(),
            handle,
            stop_timeout,
            containers: started,
            watcher,
        };
        let late = {
            let mut tasks = self.tasks();
            if self.inner.closing.load(Ordering::SeqCst) {
                Some(record)
            } else {
                tasks.insert(id, record);
                None
            }
        };
        if let Some(record) = late {
            record.handle.signal(runtime::StopSignal::Kill);
            record.handle.wait().await;
            return Err(DataPlaneError::Invalid(format!(
                "task {} started while localaws was shutting down: stopped",
                info.id
            )));
        }
        Ok(info)
    }

    /// Starts one container of a task: as a process, or as a Docker container for an image with
    /// a `docker` reference.
    async fn start_container(&self, one: Start<'_>) -> Result<ContainerRecord, DataPlaneError> {
        let Start {
            id,
            td,
            container,
            image,
            registered,
            sidecar,
            instance,
            env,
        } = one;
        let (command, mut args) = self.resolve(&image.command);
        args.extend(image.args.iter().cloned());
        let mut vars: Vec<(String, String)> = image
            .environment
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        vars.extend(
            container
                .environment
                .iter()
                .map(|kv| (kv.name.clone(), kv.value.clone())),
        );
        vars.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let host_port = container
            .port_mappings
            .first()
            .and_then(|p| p.host_port)
            .filter(|p| *p != 0);
        let host_port = match td.network_mode.as_deref() {
            Some("host") => container.port_mappings.first().map(|p| p.container_port),
            _ => host_port,
        };
        let container_spec = image
            .docker
            .as_ref()
            .map(|reference| self.container_spec(reference, id, td, container, registered));
        let spec = TaskSpec {
            task_id: id.to_owned(),
            ip: instance.ip,
            host_port,
            command,
            args,
            env: vars.clone(),
            log_dir: self.inner.log_dir.clone(),
            sidecar,
            container: container_spec,
        };
        let handle = self.inner.runtime.start(spec).await?;
        let endpoint = handle.endpoint();
        vars.extend([
            ("TASK_ID".to_owned(), id.to_owned()),
            ("PORT".to_owned(), endpoint.port().to_string()),
            ("BIND".to_owned(), endpoint.ip().to_string()),
        ]);
        Ok(ContainerRecord {
            name: container.name.clone(),
            handle,
            essential: container.is_essential(),
            stop_timeout: Duration::from_secs(u64::from(
                container.stop_timeout.unwrap_or(defaults::STOP_TIMEOUT),
            )),
            env: vars,
        })
    }

    /// Each container's exit, for those that have exited (by container name).
    pub(crate) fn container_exits(&self, task_id: &str) -> Vec<(String, TaskExit)> {
        self.tasks()
            .get(task_id)
            .map(|r| {
                r.containers
                    .iter()
                    .filter_map(|c| c.handle.exit().map(|e| (c.name.clone(), e)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Runs a health check (`["CMD", prog, args...]` or `["CMD-SHELL", "..."]`) of the running
    /// task's container `container`, with that container's environment, as the ECS agent has
    /// Docker run it inside the container: inside it for a container (`CMD-SHELL` through the image's `/bin/sh`, which a
    /// FROM scratch image lacks: the check fails, as on ECS); beside it for a process, where a
    /// program named `server` is the image's application (so `/server healthcheck` works as in
    /// the container image). Whether it exited 0 within `timeout` (real), and what it said.
    pub async fn exec_in_task(
        &self,
        task_id: &str,
        container: &str,
        command: &[String],
        timeout: Duration,
    ) -> Result<Check, DataPlaneError> {
        let (env, handle) = {
            let tasks = self.tasks();
            let record = tasks
                .get(task_id)
                .ok_or_else(|| not_found("task", task_id))?;
            let c = record
                .containers
                .iter()
                .find(|c| c.name == container)
                .ok_or_else(|| not_found("container", container))?;
            (c.env.clone(), Arc::clone(&c.handle))
        };
        let inside = match command {
            [kind, line] if kind == "CMD-SHELL" => {
                Some(vec!["/bin/sh".into(), "-c".into(), line.clone()])
            }
            [kind, rest @ ..] if kind == "CMD" && !rest.is_empty() => Some(rest.to_vec()),
            _ => None,
        };
        if let Some(argv) = inside
            && let Some(ran) = handle.exec(argv, timeout)
        {
            return Ok(ran.await);
        }
        let (program, args): (PathBuf, Vec<String>) = match command {
            [kind, line] if kind == "CMD-SHELL" => {
                (PathBuf::from("/bin/sh"), vec!["-c".into(), line.clone()])
            }
            [kind, prog, rest @ ..] if kind == "CMD" => {
                let is_server = Path::new(prog).file_name().is_some_and(|n| n == "server");
                if is_server {
                    let (p, mut a) = self.resolve("server");
                    a.extend(rest.iter().cloned());
                    (p, a)
                } else {
                    (PathBuf::from(prog), rest.to_vec())
                }
            }
            _ => {
                return Err(DataPlaneError::Invalid(format!(
                    "health check command {command:?}: expected [\"CMD\", program, args...] or [\"CMD-SHELL\", line]"
                )));
            }
        };
        let mut cmd = tokio::process::Command::new(&program);
        cmd.args(&args)
            .env_clear()
            .envs(std::env::vars_os().filter(|(k, _)| k == "PATH" || k == "HOME"))
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true);
        let mut child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) => {
                return Ok(Check::failed(format!(
                    "cannot run {}: {e}",
                    program.display()
                )));
            }
        };
        Ok(match tokio::time::timeout(timeout, child.wait()).await {
            Ok(Ok(status)) if status.success() => Check::passed(),
            Ok(Ok(status)) => Check::failed(status.to_string()),
            Ok(Err(e)) => Check::failed(format!("cannot wait for the check: {e}")),
            Err(_) => Check::failed(format!("timed out after {timeout:?}")),
        })
    }

    fn tasks(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, TaskRecord>> {
        self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn task(&self, id: &str) -> Result<(TaskInfo, Arc<dyn RunningTask>, Duration), DataPlaneError> {
        self.tasks()
            .get(id)
            .map(|r| (r.info.clone(), Arc::clone(&r.handle), r.stop_timeout))
            .ok_or_else(|| not_found("task", id))
    }

    fn place(&self, wanted: Option<&str>) -> Result<Instance, DataPlaneError> {
        let instances = self.instances();
        if let Some(id) = wanted {
            return instances
                .into_iter()
                .find(|i| i.id == id)
                .ok_or_else(|| not_found("instance", id));
        }
        if instances.is_empty() {
            return Err(DataPlaneError::Invalid(
                "the cluster has no instances".into(),
            ));
        }
        let tasks = self.tasks();
        let load = |i: &Instance| {
            tasks
                .values()
                .filter(|t| t.info.instance_id == i.id)
                .count()
        };
        // Fewest tasks first; ties rotate so placement spreads.
        let start = usize::try_from(self.inner.placed.fetch_add(1, Ordering::Relaxed)).unwrap_or(0);
        let n = instances.len();
        (0..n)
            .map(|k| &instances[(start + k) % n])
            .min_by_key(|i| load(i))
            .cloned()
            .ok_or_else(|| DataPlaneError::Invalid("the cluster has no instances".into()))
    }

    /// The program and leading arguments an image command runs as.
    fn resolve(&self, command: &str) -> (PathBuf, Vec<String>) {
        if command != "server" {
            return (PathBuf::from(command), Vec::new());
        }
        if let Some(bin) = std::env::var_os("LOCALAWS_SERVER_BIN") {
            return (PathBuf::from(bin), Vec::new());
        }
        if let Some(server) = &self.inner.server {
            return server.clone();
        }
        if let Ok(exe) = std::env::current_exe() {
            for dir in exe.ancestors().skip(1).take(2) {
                let candidate = dir.join("server");
                if candidate.is_file() {
                    return (candidate, Vec::new());
                }
            }
        }
        (PathBuf::from("server"), Vec::new())
    }

    /// Registers a task's endpoint with a target group (ECS does this for service tasks).
    pub fn register_task(&self, task_id: &str, target_group: &str) -> Result<(), DataPlaneError> {
        let (info, _, _) = self.task(task_id)?;
        self.target_group(target_group)?
            .register(info.id, info.endpoint)
            .map_err(DataPlaneError::Invalid)
    }

    /// Stops a task the ECS way, without touching the load balancer: SIGTERM, wait `stopTimeout`
    /// (real), SIGKILL.
    pub async fn stop_task(&self, task_id: &str) -> Result<StopOutcome, DataPlaneError> {
        Ok(self.stop_task_containers(task_id).await?.0)
    }

    /// [`DataPlane::stop_task`], with how each container ended (by container name).
    pub(crate) async fn stop_task_containers(
        &self,
        task_id: &str,
    ) -> Result<(StopOutcome, Vec<(String, TaskExit)>), DataPlaneError> {
        let (_, handle, stop_timeout) = self.task(task_id)?;
        let outcome = runtime::stop(handle.as_ref(), stop_timeout).await;
        let exits = self.container_exits(task_id);
        self.tasks().remove(task_id);
        Ok((outcome, exits))
    }

    /// Stops a task as an ECS service does: deregister it from every target group, wait for the
    /// deregistration delay to pass, then SIGTERM, `stopTimeout`, SIGKILL.
    pub async fn drain_and_stop_task(&self, task_id: &str) -> Result<StopOutcome, DataPlaneError> {
        let drains = self.deregister_task(task_id)?;
        for gone in drains {
            gone.cancelled().await;
        }
        self.stop_task(task_id).await
    }

    /// Kills a task at once with SIGKILL, leaving the load balancer to find out by health checks
    /// (an instance dying, or a stop without deregistration).
    pub fn kill_task(&self, task_id: &str) -> Result<(), DataPlaneError> {
        let (_, handle, _) = self.task(task_id)?;
        handle.signal(runtime::StopSignal::Kill);
        Ok(())
    }

    /// Runs every service's desired count, spread over the instances, and registers the tasks
    /// with the service's target group.
    pub async fn start_services(&self) -> Result<Vec<TaskInfo>, DataPlaneError> {
        let mut started = Vec::new();
        for svc in self.inner.stack.services.clone() {
            for _ in 0..svc.desired_count {
                let info = self.run_task(&svc.task_definition, None, &[]).await?;
                if let Some(lb) = &svc.load_balancer {
                    self.register_task(&info.id, &lb.target_group)?;
                }
                started.push(info);
            }
        }
        Ok(started)
    }

    /// Waits until the target at `addr` in `target_group` is in `state`, or `within` passes.
    pub async fn wait_for_target(
        &self,
        target_group: &str,
        addr: SocketAddr,
        state: TargetHealth,
        within: Duration,
    ) -> Result<bool, DataPlaneError> {
        let tg = self.target_group(target_group)?;
        let mut events = self.inner.events.subscribe();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let now = tg.health_of(addr);
            if now == Some(state) || (state == TargetHealth::Unused && now.is_none()) {
                return Ok(true);
            }
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Err(_) => return Ok(false),
                Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => return Ok(false),
                Ok(_) => {}
            }
        }
    }

    /// Stops everything: tasks get SIGTERM together (SIGKILL after their stop timeout), then the
    /// listeners close.
    pub async fn shutdown(&self) {
        let records: Vec<TaskRecord> = {
            let mut tasks = self.tasks();
            self.inner.closing.store(true, Ordering::SeqCst);
            std::mem::take(&mut *tasks).into_values().collect()
        };
        for tg in self.inner.target_groups.values() {
            tg.clear();
        }
        let mut stops = tokio::task::JoinSet::new();
        for record in records {
            stops.spawn(async move {
                runtime::stop(record.handle.as_ref(), record.stop_timeout).await;
                // The exit event is out before shutdown returns.
                let _ = record.watcher.await;
            });
        }
        while stops.join_next().await.is_some() {}
        let agents: Vec<agent::AgentEndpoint> =
            std::mem::take(&mut *self.agents()).into_values().collect();
        for a in agents {
            a.stopped().await;
        }
        self.inner.stop.cancel();
        let serving: Vec<_> = self
            .inner
            .serving
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect();
        for s in serving {
            let _ = s.await;
        }
        self.inner.workers.stop();
    }
}

/// The task as a whole: its one container, or a [`group::Group`] of them (`main` is the one the
/// load balancer reaches).
fn whole_task(
    id: &str,
    td: &TaskDefinition,
    started: &[ContainerRecord],
    main: &str,
) -> Result<Arc<dyn RunningTask>, DataPlaneError> {
    Ok(match started {
        [one] => Arc::clone(&one.handle),
        many => {
            let members = many
                .iter()
                .map(|r| group::Member {
                    handle: Arc::clone(&r.handle),
                    essential: r.essential,
                    stop_timeout: r.stop_timeout,
                })
                .collect();
            let serving = many.iter().position(|r| r.name == main).unwrap_or(0);
            let group = group::Group::start(id.to_owned(), members, serving).ok_or_else(|| {
                DataPlaneError::Invalid(format!("task definition {} has no container", td.family))
            })?;
            Arc::new(group)
        }
    })
}

fn not_found(kind: &'static str, name: &str) -> DataPlaneError {
    DataPlaneError::NotFound {
        kind,
        name: name.to_owned(),
    }
}

/// The stack's target groups, each with the deregistration propagation lag of the load balancers
/// that forward to it.
fn target_groups(
    stack: &Stack,
    idle: Duration,
    workers: usize,
    clock: Clock,
    events: &Events,
) -> Result<BTreeMap<String, Arc<TargetGroup>>, DataPlaneError> {
    let mut target_groups = BTreeMap::new();
    for tg in &stack.target_groups {
        let mut settings = TargetGroupSettings::from_config(tg).map_err(DataPlaneError::Invalid)?;
        // The propagation lag of the load balancers that forward to it.
        settings.propagation = Duration::from_secs(u64::from(
            stack
                .load_balancers_forwarding_to(&tg.name)
                .map(|lb| lb.deregistration_propagation)
                .max()
                .unwrap_or(0),
        ));
        let group = TargetGroup::new(&tg.name, settings, idle, workers, clock, events.clone());
        target_groups.insert(tg.name.clone(), group);
    }
    Ok(target_groups)
}

/// The listeners bound, and the tasks serving them.
type Bound = (Vec<Arc<Listener>>, Vec<JoinHandle<()>>);

/// Binds every listener of the stack (on port 0 with `ephemeral_ports`) and starts serving it on
/// the proxy's workers until `stop`.
fn bind_listeners(
    stack: &Stack,
    target_groups: &BTreeMap<String, Arc<TargetGroup>>,
    tls: Option<&ListenerTls>,
    ephemeral_ports: bool,
    workers: &proxy::Workers,
    stop: &CancellationToken,
) -> Result<Bound, DataPlaneError> {
    let mut listeners = Vec::new();
    let mut serving = Vec::new();
    for lb in &stack.load_balancers {
        let idle_timeout = Duration::from_secs(u64::from(lb.idle_timeout));
        for l in &lb.listeners {
            let forward = forward(target_groups, &l.forward)?;
            let port = if ephemeral_ports { 0 } else { l.port };
            let addr = SocketAddr::new(lb.address, port);
            let server_config = tls.filter(|_| l.is_https()).map(ListenerTls::config);
            let (listener, tcp) = proxy::bind(
                &lb.name,
                &l.name,
                addr,
                forward,
                idle_timeout,
                server_config,
            )
            .map_err(|source| DataPlaneError::Bind {
                listener: format!("{}/{}", lb.name, l.name),
                addr,
                source,
            })?;
            tracing::info!(
                load_balancer = %lb.name,
                listener = %l.name,
                url = %listener.url(),
                forward = %listener.forward().describe(),
                "listener up"
            );
            serving.push(proxy::serve(
                Arc::clone(&listener),
                tcp,
                workers,
                stop.clone(),
                Duration::from_secs(5),
            ));
            listeners.push(listener);
        }
    }
    Ok((listeners, serving))
}

fn forward(
    groups: &BTreeMap<String, Arc<TargetGroup>>,
    weights: &[WeightedTargetGroup],
) -> Result<Forward, DataPlaneError> {
    stack::validate_forward(weights, "forward", |n| groups.contains_key(n))
        .map_err(|(field, message)| DataPlaneError::Invalid(format!("{field}: {message}")))?;
    let resolved = weights
        .iter()
        .map(|w| {
            groups
                .get(&w.target_group)
                .map(|g| (Arc::clone(g), w.weight))
                .ok_or_else(|| not_found("target group", &w.target_group))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Forward::new(resolved).map_err(DataPlaneError::Invalid)
}

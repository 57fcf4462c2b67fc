//! How tasks run: the [`TaskRuntime`] trait, and [`ProcessRuntime`], which runs each task as a
//! local process on its instance's loopback address.
//!
//! A process task is bound to its instance's loopback address on a host port reserved from its
//! start; it is stopped with SIGTERM, then SIGKILL at its `stopTimeout`. It runs in a process
//! group of its own under `setpriv --pdeathsig KILL` and `kill_on_drop`, so no task outlives
//! localaws. Image `server` runs the application linked into the very binary that runs localaws
//! (`$LOCALAWS_SERVER_BIN` overrides it).
//!
//! `DockerRuntime` (`docker.rs`) runs tasks of Docker images as containers behind the same
//! trait.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::sync::watch;

/// A boxed future, for dyn-compatible async trait methods.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a task could not be started or signalled.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The static host port is taken on that instance (ECS: "already using a port required by
    /// your task").
    #[error(
        "port {port} on {ip} is already in use: the task needs a static host port another task holds (use hostPort 0)"
    )]
    PortInUse {
        /// Instance address.
        ip: IpAddr,
        /// The port.
        port: u16,
    },
    /// The program could not be started.
    #[error("cannot start {command:?}: {source}")]
    Spawn {
        /// The program.
        command: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// Log files could not be created.
    #[error("cannot create task log {path}: {source}")]
    Log {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The Docker engine cannot be reached.
    #[error(
        "cannot reach the Docker engine at {socket}: {message}: start the engine, or point DOCKER_HOST at one"
    )]
    Engine {
        /// `DOCKER_HOST`, or the default socket.
        socket: String,
        /// What the client said.
        message: String,
    },
    /// The image is not on the engine (localaws never pulls).
    #[error(
        "image {image} is not on the Docker engine: build it (scripts/build-image.sh builds the project's) or pull it first; localaws never pulls"
    )]
    ImageMissing {
        /// The image reference.
        image: String,
    },
    /// The engine refused a call.
    #[error("Docker: {what}: {message}")]
    Docker {
        /// The call.
        what: String,
        /// What the engine said.
        message: String,
    },
    /// The task needs what this runtime cannot give it.
    #[error("{0}")]
    Unsupported(String),
    /// No free port could be found.
    #[error("no free port on {ip}: {source}")]
    NoPort {
        /// Instance address.
        ip: IpAddr,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// Everything needed to start one task.
#[derive(Debug, Clone)]
pub struct TaskSpec {
    /// Task id (also `TASK_ID` in its environment).
    pub task_id: String,
    /// The instance's address; the task binds it.
    pub ip: IpAddr,
    /// Static host port, or `None` for a dynamic one.
    pub host_port: Option<u16>,
    /// Program and arguments.
    pub command: PathBuf,
    /// Arguments.
    pub args: Vec<String>,
    /// Environment (image, then task definition); `TASK_ID`, `PORT`, `BIND` are added.
    pub env: Vec<(String, String)>,
    /// Where `<task>.stdout.log` and `<task>.stderr.log` go (`<task>.<container>.*.log` for
    /// a sidecar).
    pub log_dir: PathBuf,
    /// The container's name when it is not the one the load balancer reaches (a sidecar): its
    /// logs and its Docker container are named after it too.
    pub(crate) sidecar: Option<String>,
    /// Run as a container of a local Docker image instead of `command` (only
    /// `DockerRuntime` does).
    pub(crate) container: Option<ContainerSpec>,
}

impl TaskSpec {
    /// What the container's log files and Docker container are named after: the task id, and a
    /// sidecar's name after it.
    pub(crate) fn stem(&self, separator: char) -> String {
        match &self.sidecar {
            Some(name) => format!("{}{separator}{name}", self.task_id),
            None => self.task_id.clone(),
        }
    }
}

/// What a task runs as a container.
#[derive(Debug, Clone)]
pub(crate) struct ContainerSpec {
    /// The local image.
    pub(crate) image: String,
    /// The port the application listens on inside the container, if it has a port mapping.
    pub(crate) container_port: Option<u16>,
    /// `linuxParameters.initProcessEnabled`.
    pub(crate) init: bool,
    /// `entryPoint`, replacing the image's `ENTRYPOINT` (and, as Docker does, its `CMD`).
    pub(crate) entrypoint: Option<Vec<String>>,
    /// `command`, replacing the image's `CMD`.
    pub(crate) cmd: Option<Vec<String>>,
    /// `workingDirectory`.
    pub(crate) working_dir: Option<String>,
    /// `user`.
    pub(crate) user: Option<String>,
    /// The task definition has a container `healthCheck` (localaws runs it inside the
    /// container itself, so the image's own `HEALTHCHECK` is turned off, as the agent's
    /// replaces it).
    pub(crate) checked: bool,
    /// The ECS agent's labels (task ARN, container name, family, revision, cluster).
    pub(crate) labels: BTreeMap<String, String>,
}

/// How a task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskExit {
    /// Exited with a code.
    Code(i32),
    /// Killed by a signal.
    Signal(i32),
}

impl TaskExit {
    /// The exit code as a container reports it: a process killed by signal N is 128 + N, as
    /// Docker (and so `DescribeTasks`) reports a container's (137 after SIGKILL).
    pub fn code(self) -> i32 {
        match self {
            Self::Code(code) => code,
            Self::Signal(signal) => 128 + signal,
        }
    }
}

impl fmt::Display for TaskExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Code(c) => write!(f, "exit {c}"),
            Self::Signal(s) => write!(f, "signal {s}"),
        }
    }
}

/// What the runtime sends to stop a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSignal {
    /// Graceful: SIGTERM.
    Term,
    /// Immediate: SIGKILL.
    Kill,
}

/// A started task.
pub trait RunningTask: Send + Sync + fmt::Debug {
    /// Task id.
    fn id(&self) -> &str;
    /// Where the task's port answers.
    fn endpoint(&self) -> SocketAddr;
    /// Sends a signal; a task that already exited is left alone.
    fn signal(&self, signal: StopSignal);
    /// How it ended, once it has.
    fn exit(&self) -> Option<TaskExit>;
    /// Resolves when the task has exited.
    fn wait(&self) -> BoxFuture<'_, TaskExit>;
    /// An essential container of the task exited and the others are being stopped: the task is
    /// ending though it has not exited yet. Never for a task of one container (its exit is the
    /// task's).
    fn ending(&self) -> bool {
        false
    }
    /// Runs `argv` inside the task, as Docker runs a container's health check there (with the
    /// container's environment), within `timeout`. `None` for a task that is a process: the
    /// caller runs the command beside it.
    fn exec(&self, _argv: Vec<String>, _timeout: Duration) -> Option<BoxFuture<'_, Check>> {
        None
    }
}

/// One health check's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// It exited 0 within its timeout.
    pub passed: bool,
    /// What it said when it failed: the exit code and the tail of its output, a timeout, or why
    /// it could not run.
    pub said: String,
}

impl Check {
    /// A check that passed.
    pub fn passed() -> Self {
        Self {
            passed: true,
            said: String::new(),
        }
    }

    /// A check that failed, saying why.
    pub fn failed(said: impl Into<String>) -> Self {
        Self {
            passed: false,
            said: said.into(),
        }
    }
}

/// Starts tasks.
pub trait TaskRuntime: Send + Sync + fmt::Debug {
    /// Starts a task; returns once its process runs (not once it is ready: health checks say that).
    fn start(&self, spec: TaskSpec) -> BoxFuture<'_, Result<Arc<dyn RunningTask>, RuntimeError>>;
}

/// How a graceful stop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopOutcome {
    /// Exited on its own after SIGTERM.
    Exited(TaskExit),
    /// Still running at the stop timeout: SIGKILLed.
    Killed(TaskExit),
}

impl fmt::Display for StopOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exited(exit) => write!(f, "{exit} after SIGTERM"),
            Self::Killed(exit) => write!(f, "SIGKILL at stopTimeout, {exit}"),
        }
    }
}

/// Resolves with the exit `rx` reports, once it does (exit -1 if its sender goes without one):
/// how both runtimes' tasks implement [`RunningTask::wait`].
pub(super) fn exit_of(rx: &watch::Receiver<Option<TaskExit>>) -> BoxFuture<'static, TaskExit> {
    let mut rx = rx.clone();
    Box::pin(async move {
        loop {
            if let Some(exit) = *rx.borrow_and_update() {
                return exit;
            }
            if rx.changed().await.is_err() {
                return (*rx.borrow()).unwrap_or(TaskExit::Code(-1));
            }
        }
    })
}

/// Stops a task the ECS way: SIGTERM, wait up to `stop_timeout`, then SIGKILL.
pub async fn stop(task: &dyn RunningTask, stop_timeout: Duration) -> StopOutcome {
    if let Some(exit) = task.exit() {
        return StopOutcome::Exited(exit);
    }
    task.signal(StopSignal::Term);
    match tokio::time::timeout(stop_timeout, task.wait()).await {
        Ok(exit) => StopOutcome::Exited(exit),
        Err(_) => {
            task.signal(StopSignal::Kill);
            StopOutcome::Killed(task.wait().await)
        }
    }
}

/// Runs tasks as local processes.
///
/// Each task is one process bound to its instance's loopback address (`BIND`) and its host port
/// (`PORT`). It runs in its own process group (a Ctrl-C at the terminal reaches `localaws`, which
/// then stops tasks in order) and, where `setpriv` exists, with a parent-death signal, so no task
/// outlives `localaws` even if it is killed outright.
#[derive(Debug, Clone)]
pub struct ProcessRuntime {
    setpriv: Option<PathBuf>,
    /// Host ports held by live tasks, as Docker holds them from container creation: a port is
    /// taken from the moment its task is started, not from when the process gets to bind it.
    reserved: Arc<Mutex<HashSet<(IpAddr, u16)>>>,
}

impl Default for ProcessRuntime {
    fn default() -> Self {
        Self::new()
    }
}

impl ProcessRuntime {
    /// A runtime; finds `setpriv` (util-linux) for the parent-death signal.
    pub fn new() -> Self {
        let setpriv = ["/usr/bin/setpriv", "/bin/setpriv"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file());
        if setpriv.is_none() {
            tracing::warn!(
                "setpriv not found: tasks cannot be tied to localaws's lifetime if it is SIGKILLed"
            );
        }
        Self {
            setpriv,
            reserved: Arc::default(),
        }
    }

    /// Reserves the host port: the static one if free, or a free one.
    pub(super) fn reserve(
        &self,
        ip: IpAddr,
        wanted: Option<u16>,
    ) -> Result<Reservation, RuntimeError> {
        let mut reserved = self.reserved.lock().unwrap_or_else(|p| p.into_inner());
        let port = match wanted {
            Some(port) if port != 0 => {
                if reserved.contains(&(ip, port))
                    || std::net::TcpListener::bind((ip, port)).is_err()
                {
                    return Err(RuntimeError::PortInUse { ip, port });
                }
                port
            }
            _ => {
                let mut found = None;
                for _ in 0..64 {
                    let port = std::net::TcpListener::bind((ip, 0))
                        .and_then(|l| l.local_addr())
                        .map(|a| a.port())
                        .map_err(|source| RuntimeError::NoPort { ip, source })?;
                    if !reserved.contains(&(ip, port)) {
                        found = Some(port);
                        break;
                    }
                }
                found.ok_or_else(|| RuntimeError::NoPort {
                    ip,
                    source: std::io::Error::other("every port offered is reserved"),
                })?
            }
        };
        reserved.insert((ip, port));
        Ok(Reservation {
            key: (ip, port),
            reserved: Arc::clone(&self.reserved),
        })
    }
}

/// A host port held for a task; released when dropped (when the task has exited).
#[derive(Debug)]
pub(super) struct Reservation {
    key: (IpAddr, u16),
    reserved: Arc<Mutex<HashSet<(IpAddr, u16)>>>,
}

impl Reservation {
    /// The port held.
    pub(super) fn port(&self) -> u16 {
        self.key.1
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.reserved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
    }
}

impl TaskRuntime for ProcessRuntime {
    fn start(&self, spec: TaskSpec) -> BoxFuture<'_, Result<Arc<dyn RunningTask>, RuntimeError>> {
        Box::pin(async move {
            if let Some(container) = &spec.container {
                return Err(RuntimeError::Unsupported(format!(
                    "image {} is a Docker image: this localaws runs tasks as processes only",
                    container.image
                )));
            }
            let reservation = self.reserve(spec.ip, spec.host_port)?;
            let port = reservation.key.1;
            let log = |stream: &str| {
                let path = spec
                    .log_dir
                    .join(format!("{}.{stream}.log", spec.stem('.')));
                std::fs::File::create(&path).map_err(|source| RuntimeError::Log { path, source })
            };
            let (stdout, stderr) = (log("stdout")?, log("stderr")?);
            let mut cmd = match &self.setpriv {
                Some(setpriv) => {
                    let mut c = tokio::process::Command::new(setpriv);
                    c.args(["--pdeathsig", "KILL", "--"]).arg(&spec.command);
                    c
                }
                None => tokio::process::Command::new(&spec.command),
            };
            cmd.args(&spec.args)
                .env_clear()
                .envs(std::env::vars_os().filter(|(k, _)| k == "PATH" || k == "HOME"))
                .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .env("TASK_ID", &spec.task_id)
                .env("PORT", port.to_string())
                .env("BIND", spec.ip.to_string())
                .stdin(Stdio::null())
                .stdout(stdout)
                .stderr(stderr)
                .process_group(0)
                .kill_on_drop(true);
            let mut child = cmd.spawn().map_err(|source| RuntimeError::Spawn {
                command: spec.command.display().to_string(),
                source,
            })?;
            let pid = child.id();
            let (tx, rx) = watch::channel(None);
            // The waiter owns the child: if the runtime goes away, kill_on_drop ends the process.
            tokio::spawn(async move {
                let _reservation = reservation;
                let exit = match child.wait().await {
                    Ok(status) => {
                        use std::os::unix::process::ExitStatusExt;
                        match (status.code(), status.signal()) {
                            (Some(code), _) => TaskExit::Code(code),
                            (None, Some(sig)) => TaskExit::Signal(sig),
                            (None, None) => TaskExit::Code(-1),
                        }
                    }
                    Err(_) => TaskExit::Code(-1),
                };
                let _ = tx.send(Some(exit));
            });
            let task: Arc<dyn RunningTask> = Arc::new(Process {
                id: spec.task_id,
                endpoint: SocketAddr::new(spec.ip, port),
                pid,
                exit: rx,
            });
            Ok(task)
        })
    }
}

#[derive(Debug)]
struct Process {
    id: String,
    endpoint: SocketAddr,
    pid: Option<u32>,
    exit: watch::Receiver<Option<TaskExit>>,
}

impl RunningTask for Process {
    fn id(&self) -> &str {
        &self.id
    }

    fn endpoint(&self) -> SocketAddr {
        self.endpoint
    }

    fn signal(&self, signal: StopSignal) {
        // Never signal a pid after its exit was reaped: it may belong to someone else by now.
        if self.exit.borrow().is_some() {
            return;
        }
        let Some(pid) = self.pid.and_then(|p| i32::try_from(p).ok()) else {
            return;
        };
        let sig = match signal {
            StopSignal::Term => Signal::SIGTERM,
            StopSignal::Kill => Signal::SIGKILL,
        };
        if let Err(err) = kill(Pid::from_raw(pid), sig) {
            tracing::debug!(task = %self.id, %err, "signal not delivered");
        }
    }

    fn exit(&self) -> Option<TaskExit> {
        *self.exit.borrow()
    }

    fn wait(&self) -> BoxFuture<'_, TaskExit> {
        exit_of(&self.exit)
    }
}

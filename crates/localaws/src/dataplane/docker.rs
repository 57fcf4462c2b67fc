//! [`DockerRuntime`]: tasks as containers of a local Docker image, run as the ECS agent runs
//! them on an EC2 instance in `bridge` mode. Tasks of a program image still run as processes
//! (the runtime holds a [`ProcessRuntime`] for them).
//!
//! What the ECS agent does and this runtime does too:
//! - **Ports**: the container's port is published on the instance's address, on the task's
//!   static `hostPort` or on one the runtime picks (agent 1.70 and later choose the host port
//!   themselves, probing with a listen, and ask Docker for exactly that one). A static host port
//!   another task holds fails the placement ("already using a port required by your task").
//! - **Environment**: the image's `environment` from the stack, then the task definition's, then
//!   the caller's; plus `TASK_ID` (localaws's choice: ECS gives a container its task ARN through
//!   `ECS_CONTAINER_METADATA_URI_V4`, which localaws does not serve, and the project's server
//!   stamps `TASK_ID` on every response).
//! - **What runs**: the task definition's `entryPoint`, `command`, `workingDirectory` and
//!   `user` replace the image's `ENTRYPOINT`, `CMD`, `WORKDIR` and `USER`, as `docker run`'s
//!   flags would (an `entryPoint` also drops the image's `CMD`: Docker's rule). A program image
//!   ignores them: it runs its stack command as localaws's user, in localaws's directory.
//! - **Health checks**: a container's `healthCheck` runs inside it (a Docker exec with the
//!   container's environment), as Docker runs it for the agent: `CMD` as given, `CMD-SHELL`
//!   through the image's `/bin/sh` (a FROM scratch image has none: the check fails, saying so).
//!   Never more often than [`crate::clock::MIN_REAL_CHECK_INTERVAL`] of real time.
//! - **Stopping**: the image's `STOPSIGNAL` (SIGTERM when it has none), then SIGKILL at the
//!   `stopTimeout` ([`super::runtime::stop`] keeps that order for both runtimes); the exit code
//!   as Docker reports it (137 after SIGKILL). On a local engine the signal goes straight to the
//!   container's first process (what `docker kill` does, without the engine's latency, which
//!   the scaled clock would magnify). `linuxParameters.initProcessEnabled` runs
//!   Docker's init as PID 1 (a process that is PID 1 and sets no handler never sees SIGTERM).
//! - **Several containers**: each container of the task definition is a Docker container of
//!   its own (`localaws-<task>` for the one the load balancer reaches, `localaws-<task>-<name>`
//!   for the others), with its own ports, labels and logs; `group.rs` ends the task as the
//!   agent does when an essential one exits.
//! - **Labels**: the agent's own (`com.amazonaws.ecs.task-arn`, `...container-name`,
//!   `...task-definition-family`, `...task-definition-version`, `...cluster`) and this
//!   localaws's ([`OWNER_PID`], [`OWNER_START`] under [`MANAGED`]).
//!
//! Where localaws differs, and why: a container is removed as soon as its task has stopped and
//! its output is copied to `<state dir>/tasks/<task>.{stdout,stderr}.log` (the agent keeps
//! stopped containers 3 hours); and **no container outlives its localaws**: on start, the runtime
//! removes every container labelled [`MANAGED`] whose owner process (pid and start time) no
//! longer runs, after a SIGKILL or a crash, and never touches another container on the engine.
//! Images are never pulled: an image that is not on the engine is an error before anything
//! starts. The engine's API version is negotiated (Docker 20.10 speaks 1.41 at most).

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{ContainerCreateBody, HealthConfig, HostConfig, PortBinding};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, KillContainerOptionsBuilder, ListContainersOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder, WaitContainerOptionsBuilder,
};
use futures_util::StreamExt;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::sync::watch;

use super::runtime::{
    BoxFuture, Check, ContainerSpec, ProcessRuntime, RunningTask, RuntimeError, StopSignal,
    TaskExit, TaskRuntime, TaskSpec, exit_of,
};

/// The label every container this runtime makes carries (value `true`).
const MANAGED: &str = "dev.localaws.managed";
/// The owning localaws's pid.
const OWNER_PID: &str = "dev.localaws.owner-pid";
/// The owning localaws's start time (clock ticks since boot, `/proc/PID/stat` field 22): with
/// the pid, it names one process even after pids are reused.
const OWNER_START: &str = "dev.localaws.owner-start";

/// Runs tasks of Docker images as containers, and every other task as a process.
#[derive(Debug, Clone)]
pub(crate) struct DockerRuntime {
    docker: Docker,
    processes: ProcessRuntime,
    owner: (String, String),
    /// Image → its `STOPSIGNAL` (SIGTERM when it has none), read when connecting.
    stop_signals: Arc<HashMap<String, String>>,
}

/// Where the engine is, as the error messages name it.
fn socket() -> String {
    std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".to_owned())
}

fn engine_error(err: &bollard::errors::Error) -> RuntimeError {
    RuntimeError::Engine {
        socket: socket(),
        message: err.to_string(),
    }
}

fn docker_error(what: &str, err: &bollard::errors::Error) -> RuntimeError {
    RuntimeError::Docker {
        what: what.to_owned(),
        message: err.to_string(),
    }
}

/// A process's start time in clock ticks since boot (`/proc/PID/stat` field 22).
fn start_time(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count after its end.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19).map(str::to_owned)
}

/// The image's stop signal (`STOPSIGNAL`, SIGTERM when it has none); an image not on the engine
/// is [`RuntimeError::ImageMissing`].
async fn stop_signal(docker: &Docker, image: &str) -> Result<String, RuntimeError> {
    match docker.inspect_image(image).await {
        Ok(inspect) => Ok(inspect
            .config
            .and_then(|c| c.stop_signal)
            .unwrap_or_else(|| "SIGTERM".to_owned())),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Err(RuntimeError::ImageMissing {
            image: image.to_owned(),
        }),
        Err(e) => Err(docker_error(&format!("inspect image {image}"), &e)),
    }
}

/// The engine at `DOCKER_HOST`, else the default socket, at the API version both speak.
async fn engine() -> Result<Docker, RuntimeError> {
    let docker = Docker::connect_with_local_defaults().map_err(|e| engine_error(&e))?;
    docker
        .negotiate_version()
        .await
        .map_err(|e| engine_error(&e))
}

/// The labels of the local Docker image `image`, read from the engine the Docker runtime uses:
/// what a caller checks before it relies on an image's behaviour. An image not on the engine is
/// [`RuntimeError::ImageMissing`].
pub async fn image_labels(image: &str) -> Result<HashMap<String, String>, RuntimeError> {
    let docker = engine().await?;
    match docker.inspect_image(image).await {
        Ok(inspect) => Ok(inspect.config.and_then(|c| c.labels).unwrap_or_default()),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Err(RuntimeError::ImageMissing {
            image: image.to_owned(),
        }),
        Err(e) => Err(docker_error(&format!("inspect image {image}"), &e)),
    }
}

impl DockerRuntime {
    /// Connects to the engine (`DOCKER_HOST`, else the default socket), negotiates the API
    /// version, checks that every image in `images` is on the engine, and removes the containers
    /// a localaws that no longer runs left behind.
    pub(crate) async fn connect(images: &[String]) -> Result<Self, RuntimeError> {
        let docker = engine().await?;
        // Each image is inspected once, here: present (or exit 2 before anything starts), and
        // the signal that stops it.
        let mut stop_signals = HashMap::new();
        for image in images {
            stop_signals.insert(image.clone(), stop_signal(&docker, image).await?);
        }
        let pid = std::process::id();
        let owner = (
            pid.to_string(),
            start_time(pid).unwrap_or_else(|| "0".to_owned()),
        );
        let runtime = Self {
            docker,
            processes: ProcessRuntime::new(),
            owner,
            stop_signals: Arc::new(stop_signals),
        };
        let removed = runtime.sweep().await?;
        if removed > 0 {
            tracing::warn!(
                removed,
                "removed containers a localaws that no longer runs left behind"
            );
        }
        Ok(runtime)
    }

    /// Removes every container labelled [`MANAGED`] whose owner no longer runs; returns how many.
    async fn sweep(&self) -> Result<usize, RuntimeError> {
        let filters = HashMap::from([("label", vec![format!("{MANAGED}=true")])]);
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let containers = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|e| docker_error("list containers", &e))?;
        let mut removed = 0;
        for c in containers {
            let labels = c.labels.unwrap_or_default();
            let (Some(pid), Some(start)) = (labels.get(OWNER_PID), labels.get(OWNER_START)) else {
                continue;
            };
            let alive = pid
                .parse::<u32>()
                .ok()
                .and_then(start_time)
                .is_some_and(|t| &t == start);
            if alive {
                continue;
            }
            if let Some(id) = c.id {
                self.remove(&id).await;
                removed += 1;
            }
        }
        Ok(removed)
    }

    async fn remove(&self, id: &str) {
        let options = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        if let Err(err) = self.docker.remove_container(id, Some(options)).await {
            tracing::warn!(container = id, %err, "cannot remove container");
        }
    }

    async fn start_container(
        &self,
        spec: TaskSpec,
        container: ContainerSpec,
    ) -> Result<Arc<dyn RunningTask>, RuntimeError> {
        let stop_signal = match self.stop_signals.get(&container.image) {
            Some(signal) => signal.clone(),
            None => stop_signal(&self.docker, &container.image).await?,
        };
        let reservation = match container.container_port {
            Some(_) => Some(self.processes.reserve(spec.ip, spec.host_port)?),
            None => None,
        };
        let host_port = reservation.as_ref().map_or(0, |r| r.port());
        let mut labels: HashMap<String, String> = container.labels.clone().into_iter().collect();
        labels.insert(MANAGED.to_owned(), "true".to_owned());
        labels.insert(OWNER_PID.to_owned(), self.owner.0.clone());
        labels.insert(OWNER_START.to_owned(), self.owner.1.clone());
        let mut env: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        env.push(format!("TASK_ID={}", spec.task_id));
        let exposed = container.container_port.map(|p| format!("{p}/tcp"));
        let port_bindings = exposed.as_ref().map(|key| {
            HashMap::from([(
                key.clone(),
                Some(vec![PortBinding {
                    host_ip: Some(spec.ip.to_string()),
                    host_port: Some(host_port.to_string()),
                }]),
            )])
        });
        let body = ContainerCreateBody {
            image: Some(container.image.clone()),
            entrypoint: container.entrypoint.clone(),
            cmd: container.cmd.clone(),
            working_dir: container.working_dir.clone(),
            user: container.user.clone(),
            // The task definition's check replaces the image's HEALTHCHECK (localaws runs it);
            // without one, Docker runs the image's, whose status ECS ignores.
            healthcheck: container.checked.then(|| HealthConfig {
                test: Some(vec!["NONE".to_owned()]),
                ..HealthConfig::default()
            }),
            env: Some(env),
            labels: Some(labels),
            exposed_ports: exposed.map(|e| vec![e]),
            host_config: Some(HostConfig {
                port_bindings,
                init: container.init.then_some(true),
                ..HostConfig::default()
            }),
            ..ContainerCreateBody::default()
        };
        let name = format!("localaws-{}", spec.stem('-'));
        let options = CreateContainerOptionsBuilder::default().name(&name).build();
        let id = self
            .docker
            .create_container(Some(options), body)
            .await
            .map_err(|e| docker_error(&format!("create container {name}"), &e))?
            .id;
        if let Err(err) = self.docker.start_container(&id, None).await {
            self.remove(&id).await;
            let text = err.to_string();
            return Err(
                if text.contains("port is already allocated")
                    || text.contains("address already in use")
                {
                    RuntimeError::PortInUse {
                        ip: spec.ip,
                        port: host_port,
                    }
                } else {
                    docker_error(&format!("start container {name}"), &err)
                },
            );
        }
        let (tx, rx) = watch::channel(None);
        let logs = self.copy_logs(&id, &spec)?;
        let runtime = self.clone();
        let waited = id.clone();
        tokio::spawn(async move {
            let _reservation = reservation;
            let exit = runtime.wait_exit(&waited).await;
            // The log stream ends with the container; its output is on disk before the
            // container goes.
            let _ = logs.await;
            runtime.remove(&waited).await;
            let _ = tx.send(Some(exit));
        });
        let pid = self.host_pid(&id).await;
        let task: Arc<dyn RunningTask> = Arc::new(Container {
            task_id: spec.task_id,
            pid,
            term: parse_signal(&stop_signal),
            container_id: id,
            endpoint: SocketAddr::new(spec.ip, host_port),
            stop_signal,
            docker: self.docker.clone(),
            exit: rx,
        });
        Ok(task)
    }

    /// The host pid of the container's first process, when the engine runs on this machine (the
    /// pid's cgroup names the container): the runtime then signals it directly. Through the
    /// engine's API a signal takes tens of milliseconds, hundreds on a loaded machine, and at 60x
    /// the window a negative control needs the application to close its port in (the load
    /// balancer's 5 s propagation lag less a 2 s deregistration delay) is 50 ms of real time:
    /// the signal arrived after it and the control passed (docs/testing.md). On AWS the agent's
    /// latency is as small beside the seconds it works in. `None` for a remote engine.
    async fn host_pid(&self, id: &str) -> Option<i32> {
        let state = self.docker.inspect_container(id, None).await.ok()?.state?;
        let pid = i32::try_from(state.pid?).ok().filter(|p| *p > 0)?;
        let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        cgroup.contains(id).then_some(pid)
    }

    /// Copies the container's output to the task's log files until the container stops.
    fn copy_logs(
        &self,
        id: &str,
        spec: &TaskSpec,
    ) -> Result<tokio::task::JoinHandle<()>, RuntimeError> {
        let file = |stream: &str| {
            let path = spec
                .log_dir
                .join(format!("{}.{stream}.log", spec.stem('.')));
            std::fs::File::create(&path).map_err(|source| RuntimeError::Log { path, source })
        };
        let (mut stdout, mut stderr) = (file("stdout")?, file("stderr")?);
        let options = LogsOptionsBuilder::default()
            .follow(true)
            .stdout(true)
            .stderr(true)
            .build();
        let mut stream = self.docker.logs(id, Some(options));
        Ok(tokio::spawn(async move {
            while let Some(Ok(chunk)) = stream.next().await {
                let written = match chunk {
                    LogOutput::StdErr { message } => stderr.write_all(&message),
                    LogOutput::StdOut { message } | LogOutput::Console { message } => {
                        stdout.write_all(&message)
                    }
                    LogOutput::StdIn { .. } => Ok(()),
                };
                if written.is_err() {
                    break;
                }
            }
        }))
    }

    /// Waits until the container is not running; its exit code as Docker reports it.
    async fn wait_exit(&self, id: &str) -> TaskExit {
        let options = WaitContainerOptionsBuilder::default()
            .condition("not-running")
            .build();
        let mut wait = self.docker.wait_container(id, Some(options));
        let code = match wait.next().await {
            Some(Ok(r)) => Some(r.status_code),
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Some(code),
            _ => None,
        };
        let code = match code {
            Some(code) => code,
            None => self
                .docker
                .inspect_container(id, None)
                .await
                .ok()
                .and_then(|c| c.state)
                .and_then(|s| s.exit_code)
                .unwrap_or(-1),
        };
        TaskExit::Code(i32::try_from(code).unwrap_or(-1))
    }
}

impl TaskRuntime for DockerRuntime {
    fn start(&self, spec: TaskSpec) -> BoxFuture<'_, Result<Arc<dyn RunningTask>, RuntimeError>> {
        Box::pin(async move {
            match spec.container.clone() {
                Some(container) => self.start_container(spec, container).await,
                None => self.processes.start(spec).await,
            }
        })
    }
}

#[derive(Debug)]
struct Container {
    task_id: String,
    /// The host pid of its first process, when signals can go to it directly.
    pid: Option<i32>,
    /// `stop_signal`, read once, for sending it directly.
    term: Option<Signal>,
    container_id: String,
    endpoint: SocketAddr,
    stop_signal: String,
    docker: Docker,
    exit: watch::Receiver<Option<TaskExit>>,
}

/// A stop signal as an image names it (`SIGTERM`, `TERM`, `15`).
fn parse_signal(name: &str) -> Option<Signal> {
    let name = name.trim();
    if let Ok(n) = name.parse::<i32>() {
        return Signal::try_from(n).ok();
    }
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    full.parse().ok()
}

impl RunningTask for Container {
    fn id(&self) -> &str {
        &self.task_id
    }

    fn endpoint(&self) -> SocketAddr {
        self.endpoint
    }

    fn signal(&self, signal: StopSignal) {
        if self.exit.borrow().is_some() {
            return;
        }
        // Straight to the container's first process when it runs here, as `docker kill` would
        // send it; through the engine otherwise, or if that fails.
        let direct = match signal {
            StopSignal::Term => self.term,
            StopSignal::Kill => Some(Signal::SIGKILL),
        };
        if let (Some(pid), Some(sig)) = (self.pid, direct)
            && kill(Pid::from_raw(pid), sig).is_ok()
        {
            return;
        }
        let signal = match signal {
            StopSignal::Term => self.stop_signal.clone(),
            StopSignal::Kill => "SIGKILL".to_owned(),
        };
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (docker, id, task) = (
            self.docker.clone(),
            self.container_id.clone(),
            self.task_id.clone(),
        );
        handle.spawn(async move {
            let options = KillContainerOptionsBuilder::default()
                .signal(&signal)
                .build();
            if let Err(err) = docker.kill_container(&id, Some(options)).await {
                tracing::debug!(%task, %err, "signal not delivered");
            }
        });
    }

    fn exit(&self) -> Option<TaskExit> {
        *self.exit.borrow()
    }

    fn wait(&self) -> BoxFuture<'_, TaskExit> {
        exit_of(&self.exit)
    }

    fn exec(&self, argv: Vec<String>, timeout: Duration) -> Option<BoxFuture<'_, Check>> {
        Some(Box::pin(async move {
            let run = async {
                let options = CreateExecOptions {
                    cmd: Some(argv),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    ..CreateExecOptions::default()
                };
                let created = self
                    .docker
                    .create_exec(&self.container_id, options)
                    .await
                    .map_err(|e| format!("cannot run the check: {e}"))?;
                // Attached: the output ends when the command does (a program the image lacks,
                // such as /bin/sh in a FROM scratch image, ends it at once with exit 126 or 127
                // and the runtime's message).
                let mut said = Vec::new();
                if let Ok(StartExecResults::Attached { mut output, .. }) =
                    self.docker.start_exec(&created.id, None).await
                {
                    while let Some(chunk) = output.next().await {
                        if let Ok(chunk) = chunk {
                            said.extend_from_slice(&chunk.into_bytes());
                        }
                    }
                }
                let inspect = self
                    .docker
                    .inspect_exec(&created.id)
                    .await
                    .map_err(|e| format!("cannot read the check's exit: {e}"))?;
                Ok::<_, String>((inspect.exit_code, said))
            };
            match tokio::time::timeout(timeout, run).await {
                Ok(Ok((Some(0), _))) => Check::passed(),
                Ok(Ok((code, said))) => {
                    let said = String::from_utf8_lossy(&said);
                    let tail: String = said.trim().chars().rev().take(200).collect();
                    let tail: String = tail.chars().rev().collect();
                    Check::failed(format!(
                        "exit {}{}",
                        code.map_or_else(|| "unknown".to_owned(), |c| c.to_string()),
                        if tail.is_empty() {
                            String::new()
                        } else {
                            format!(": {tail}")
                        }
                    ))
                }
                Ok(Err(why)) => Check::failed(why),
                Err(_) => Check::failed(format!("timed out after {timeout:?}")),
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_signals_are_read_as_docker_reads_them() {
        assert_eq!(parse_signal("SIGTERM"), Some(Signal::SIGTERM));
        assert_eq!(parse_signal("TERM"), Some(Signal::SIGTERM));
        assert_eq!(parse_signal("sigquit"), Some(Signal::SIGQUIT));
        assert_eq!(parse_signal("9"), Some(Signal::SIGKILL));
        assert_eq!(parse_signal("SIGNOPE"), None);
        assert_eq!(parse_signal("99"), None);
    }
}

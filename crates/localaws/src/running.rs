//! A whole `localaws` in one handle: data plane, control plane and the API endpoint. What the
//! binary runs, and what tests and `orchestrate rehearse` start in-process on port 0.
//!
//! Listener URLs carry their scheme; `ca_file()` / `ca_pem()` give what a client of an HTTPS
//! listener trusts, and the ready file says both. Ready means the group in service, every service
//! steady and every alarm quiet, so a health-check blip while the tasks started cannot stop the
//! first deployment.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::api::Api;
use crate::control::{Control, Lifecycle};
use crate::dataplane::runtime::RuntimeError;
use crate::dataplane::{
    DataPlane, DataPlaneError, DockerRuntime, Options, ProcessRuntime, TaskRuntime,
};
use stack::Stack;

/// The API's default port, as LocalStack's edge port.
pub const DEFAULT_API_PORT: u16 = 4566;

/// Why `localaws` could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data plane failed (a listener port taken, the state directory...).
    #[error(transparent)]
    DataPlane(#[from] DataPlaneError),
    /// The stack's Docker images cannot run: no engine, or an image not on it.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The API port could not be bound.
    #[error("cannot bind the API on {addr}: {source}")]
    Api {
        /// Address.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
}

impl StartError {
    /// Whether the user fixes this before starting again (an engine to start, an image to
    /// build): bad input, exit 2.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            Self::Runtime(RuntimeError::Engine { .. } | RuntimeError::ImageMissing { .. })
        )
    }
}

/// A running `localaws`.
#[derive(Debug)]
pub struct Localaws {
    control: Control,
    api: Api,
    stop: CancellationToken,
}

/// What `--ready-file` holds: where everything answers.
#[derive(Debug, Clone, Serialize)]
pub struct ReadyInfo {
    /// The AWS API endpoint (`AWS_ENDPOINT_URL`).
    pub endpoint: String,
    /// The region ARNs carry.
    pub region: &'static str,
    /// `load balancer/listener` → URL (`https://` for an HTTPS listener).
    pub listeners: std::collections::BTreeMap<String, String>,
    /// The CA certificate (PEM) an HTTPS listener's certificate is signed by: what a client
    /// trusts (`loadprobe --ca-file`, `curl --cacert`). Absent when every listener is HTTP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Where task logs are written.
    pub state_dir: PathBuf,
}

/// Processes, or, when the stack has Docker images, the Docker runtime (which checks the engine
/// and the images before anything starts, and runs process images too).
async fn runtime_for(stack: &Stack) -> Result<Arc<dyn TaskRuntime>, RuntimeError> {
    let images: Vec<String> = stack
        .images
        .values()
        .filter_map(|i| i.docker.clone())
        .collect();
    if images.is_empty() {
        return Ok(Arc::new(ProcessRuntime::new()));
    }
    Ok(Arc::new(DockerRuntime::connect(&images).await?))
}

impl Localaws {
    /// Starts the data plane, the control plane (which launches instances and places tasks) and
    /// the API on `api_port` (0 picks one), all on loopback.
    pub async fn start(stack: Stack, options: Options, api_port: u16) -> Result<Self, StartError> {
        let runtime = runtime_for(&stack).await?;
        let plane = DataPlane::start(stack, runtime, options).await?;
        let control = Control::start(plane);
        let stop = CancellationToken::new();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, api_port));
        let api = match Api::start(addr, control.clone(), stop.clone()).await {
            Ok(api) => api,
            Err(source) => {
                control.shutdown().await;
                return Err(StartError::Api { addr, source });
            }
        };
        Ok(Self { control, api, stop })
    }

    /// The control plane (and through it the data plane).
    pub fn control(&self) -> &Control {
        &self.control
    }

    /// The data plane.
    pub fn plane(&self) -> &DataPlane {
        self.control.plane()
    }

    /// The AWS API endpoint, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        self.api.endpoint()
    }

    /// `http://ADDR/` (`https://ADDR/` for an HTTPS listener) of the listener called `name`.
    pub fn listener_url(&self, name: &str) -> Option<String> {
        self.plane().listener(name).ok().map(|l| l.url())
    }

    /// Where the CA certificate (PEM) of the HTTPS listeners is, if any listener is HTTPS.
    pub fn ca_file(&self) -> Option<&Path> {
        self.plane().tls().map(|t| t.ca_file())
    }

    /// The CA certificate (PEM) of the HTTPS listeners, if any listener is HTTPS.
    pub fn ca_pem(&self) -> Option<&str> {
        self.plane().tls().map(|t| t.ca_pem())
    }

    /// Endpoints for scripts.
    pub fn ready_info(&self) -> ReadyInfo {
        ReadyInfo {
            endpoint: self.endpoint(),
            region: crate::arn::REGION,
            listeners: self
                .plane()
                .listeners()
                .iter()
                .map(|l| (format!("{}/{}", l.load_balancer, l.name), l.url()))
                .collect(),
            ca_file: self.ca_file().map(Path::to_path_buf),
            state_dir: self
                .plane()
                .log_dir()
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default(),
        }
    }

    /// Whether the fleet is up: every instance of the group in service, every service at its
    /// desired count with all tasks healthy, and every alarm quiet (not in `ALARM`, and the
    /// period under way not breaching: a target unhealthy for a moment while the fleet came up
    /// would otherwise stop the first deployment at once).
    pub fn is_ready(&self) -> bool {
        self.control.read(ready)
    }

    /// Waits until [`Localaws::is_ready`], at most `within` (real time).
    pub async fn wait_ready(&self, within: Duration) -> bool {
        self.control.wait_until(within, ready).await
    }

    /// How long the fleet may take to come up: boot, agent start, task start and health checks
    /// of the slowest image, in real time, with generous slack for a loaded machine.
    pub fn ready_timeout(&self) -> Duration {
        let stack = self.plane().stack();
        let clock = self.plane().clock();
        let ami = stack
            .amis
            .values()
            .map(|a| a.boot + a.agent_start)
            .max()
            .unwrap_or(40)
            .max(40);
        let health = stack
            .target_groups
            .iter()
            .map(|t| t.health_check.interval * (t.health_check.healthy_threshold + 1))
            .max()
            .unwrap_or(30);
        clock.secs(ami + health) * 3 + Duration::from_secs(20)
    }

    /// Stops the API, the control loop, every task (gracefully) and the listeners.
    pub async fn shutdown(self) {
        self.stop.cancel();
        self.control.shutdown().await;
        self.api.stopped().await;
    }
}

fn ready(st: &crate::control::State) -> bool {
    let fleet = match &st.asg {
        Some(asg) => {
            let in_service = st
                .instances
                .values()
                .filter(|i| i.lifecycle == Lifecycle::InService)
                .count();
            in_service == asg.desired as usize
        }
        None => true,
    };
    fleet
        && st.services.values().all(|s| s.steady)
        && st
            .codedeploy
            .alarms
            .iter()
            .all(crate::control::codedeploy::Alarm::quiet)
}

//! `stack`: the stack file, the environment `localaws` stands up, described the way Terraform
//! and the ECS task definition describe it, and the AWS facts its validation needs (the
//! predefined CodeDeploy deployment configurations, the health-check matcher grammar), and
//! CodeDeploy's AppSpec (`appspec`), read once for `localaws` and `orchestrate preflight`.
//!
//! The ground floor of the workspace's AWS model: it depends on nothing of the workspace, and
//! `tfstack` (the Terraform reader), `localaws` and `orchestrate` build on it.
//!
//! TOML. Load balancers, target groups and services use the Terraform provider's snake_case names;
//! task definitions use the ECS JSON field names (`containerDefinitions`, `portMappings`,
//! `hostPort`, `stopTimeout`, ...) so a real task definition translates line for line. A default
//! stack is embedded ([`Stack::embedded`]), so `localaws` runs with no file at all.
//!
//! Durations are seconds. The ones that belong to AWS machinery (health-check interval and timeout,
//! deregistration delay) are *simulated* and run `time_scale` times faster; the ones a real process
//! lives through (`stopTimeout`, the load balancer idle timeout) are real (`localaws`'s `clock`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

mod appspec;
mod codedeploy;
pub mod defaults;
mod matcher;

pub use appspec::{AppSpec, AppSpecFile, LifecycleEventName, Located};

pub use codedeploy::{
    ALARM_METRICS, AlarmConfig, ApplicationConfig, AutoRollback, CodeDeployConfig,
    DeploymentConfigConfig, DeploymentGroupConfig, DeploymentReady, HookFunction, PREDEFINED,
    ROLLBACK_EVENTS, loopback_url, validate_traffic,
};

pub use matcher::Matcher;

/// The embedded default stack (`default-stack.toml`).
pub const DEFAULT_STACK: &str = include_str!("../default-stack.toml");

/// A stack file that cannot be used, with where and why.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    /// The file could not be read.
    #[error("cannot read stack file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// Not valid TOML, or a field of the wrong type or name.
    #[error("stack file {origin}: {message}")]
    Parse {
        /// The file, or `embedded default`.
        origin: String,
        /// The parser's message, with line and column.
        message: String,
    },
    /// Well-formed, but a value is out of range or a reference does not resolve.
    #[error("stack file {origin}: {field}: {message}")]
    Invalid {
        /// The file, or `embedded default`.
        origin: String,
        /// The field, as a path (`target_groups[1].health_check.interval`).
        field: String,
        /// What was expected.
        message: String,
    },
}

/// The whole environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stack {
    /// Simulated seconds per real second for AWS machinery (1 = real time).
    #[serde(default = "default_time_scale")]
    pub time_scale: f64,
    /// The ECS cluster: how many container instances, each on its own loopback address.
    #[serde(default)]
    pub cluster: ClusterConfig,
    /// Image name → local command that runs it.
    #[serde(default)]
    pub images: BTreeMap<String, Image>,
    /// ECS task definitions.
    #[serde(default)]
    pub task_definitions: Vec<TaskDefinition>,
    /// ALB target groups.
    #[serde(default)]
    pub target_groups: Vec<TargetGroupConfig>,
    /// Application load balancers with their listeners.
    #[serde(default)]
    pub load_balancers: Vec<LoadBalancerConfig>,
    /// ECS services: tasks started at boot and registered with a target group.
    #[serde(default)]
    pub services: Vec<ServiceConfig>,
    /// EC2 launch templates (with the Auto Scaling group).
    #[serde(default)]
    pub launch_templates: Vec<LaunchTemplateConfig>,
    /// How instances booted from an image id behave (boot time, injected faults); an image id
    /// not listed here boots normally.
    #[serde(default)]
    pub amis: BTreeMap<String, AmiConfig>,
    /// The Auto Scaling group that provides the cluster's instances. Without one, the cluster
    /// has `cluster.instances` fixed instances and no control plane launches or terminates any.
    #[serde(default)]
    pub auto_scaling_group: Option<AutoScalingGroupConfig>,
    /// CodeDeploy blue/green deployments of `CODE_DEPLOY` services.
    #[serde(default)]
    pub codedeploy: Option<CodeDeployConfig>,
    /// CloudWatch-like alarms on target group metrics (what deployment groups stop on).
    #[serde(default)]
    pub alarms: Vec<AlarmConfig>,
    /// Injected API faults: calls of an operation answer as AWS does for a missing permission
    /// or a throttled account, so clients' error paths can be tested.
    #[serde(default)]
    pub api_faults: Vec<ApiFault>,
}

/// An injected API fault.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiFault {
    /// The operation as an IAM action: `autoscaling:StartInstanceRefresh`,
    /// `ecs:RegisterTaskDefinition`, `codedeploy:CreateDeployment`, `elasticloadbalancing:...`,
    /// `ec2:...`.
    pub action: String,
    /// What the call answers.
    pub fault: FaultKind,
    /// How many calls get it, after which the operation works again; every call when omitted.
    #[serde(default)]
    pub times: Option<u32>,
}

/// What an injected fault answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// The caller lacks the permission: `AccessDenied` (query, 403), `AccessDeniedException`
    /// (JSON), `UnauthorizedOperation` (EC2).
    AccessDenied,
    /// The account is throttled: `Throttling` (query), `ThrottlingException` (JSON),
    /// `RequestLimitExceeded` (EC2); SDKs retry these with backoff.
    Throttling,
}

/// The services an [`ApiFault`]'s action may name (IAM prefixes).
pub const FAULT_SERVICES: &[&str] = &[
    "autoscaling",
    "codedeploy",
    "ec2",
    "ecs",
    "elasticloadbalancing",
];

/// An EC2 launch template: numbered versions (1, 2, ...) of launch data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaunchTemplateConfig {
    /// Name (`demo-lt`).
    pub name: String,
    /// Versions, from version 1.
    pub versions: Vec<LaunchTemplateData>,
    /// The `$Default` version.
    #[serde(default = "one")]
    pub default_version: u32,
}

fn one() -> u32 {
    1
}

/// One launch template version's data (the fields that matter here).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaunchTemplateData {
    /// AMI id; see `[amis]` for how it boots.
    pub image_id: String,
    /// Instance type (informational).
    #[serde(default = "default_instance_type")]
    pub instance_type: String,
}

fn default_instance_type() -> String {
    "t3.small".to_owned()
}

/// How an instance booted from an AMI behaves. Times are simulated seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmiConfig {
    /// From launch to `InService`.
    #[serde(default = "default_boot")]
    pub boot: u32,
    /// From `InService` until the ECS agent registers the container instance.
    #[serde(default = "default_agent_start")]
    pub agent_start: u32,
    /// `false` injects failed EC2 status checks: the instance turns unhealthy after boot.
    #[serde(default = "yes")]
    pub status_checks_pass: bool,
    /// `false` injects an ECS agent that never registers the container instance.
    #[serde(default = "yes")]
    pub ecs_agent_registers: bool,
}

fn default_boot() -> u32 {
    30
}
fn default_agent_start() -> u32 {
    10
}
fn yes() -> bool {
    true
}

impl Default for AmiConfig {
    fn default() -> Self {
        Self {
            boot: default_boot(),
            agent_start: default_agent_start(),
            status_checks_pass: true,
            ecs_agent_registers: true,
        }
    }
}

/// The Auto Scaling group, with the ECS capacity provider attached to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoScalingGroupConfig {
    /// Name (`demo-asg`).
    pub name: String,
    /// Minimum size.
    pub min_size: u32,
    /// Maximum size.
    pub max_size: u32,
    /// Desired capacity.
    pub desired_capacity: u32,
    /// Launch template and version (`1`, `$Latest`, `$Default`).
    pub launch_template: LaunchTemplateSpec,
    /// `EC2` or `ELB`. `EC2` judges instances by their EC2 status checks only (an AMI with
    /// `status_checks_pass = false`); `ELB` also marks an instance `Unhealthy`, once the grace
    /// period has passed since its launch, while its target is `unhealthy` in any of
    /// `target_groups`, and replaces it (docs/failure-modes.md#fm-13).
    #[serde(default = "default_health_check_type")]
    pub health_check_type: String,
    /// Seconds after launch before health checks count (simulated).
    #[serde(default)]
    pub health_check_grace_period: u32,
    /// Target groups attached to the group (Terraform's `target_group_arns`), by name: each
    /// instance is registered in each of them (target id its instance id, its loopback address
    /// and the group's `port`) when it goes `InService`, and deregistered when its termination
    /// starts; the termination waits for the deregistration delay. On that port of its own
    /// address the instance answers as the ECS agent's introspection endpoint does: 200 on any
    /// path once its ECS agent has registered the container instance, 503 before (and always on
    /// an AMI with `ecs_agent_registers = false`). Each group needs a `port`.
    #[serde(default)]
    pub target_groups: Vec<String>,
    /// Seconds a new instance needs before it counts toward capacity (simulated).
    #[serde(default)]
    pub default_instance_warmup: Option<u32>,
    /// The ECS capacity provider over this group.
    #[serde(default)]
    pub capacity_provider: CapacityProviderConfig,
    /// Lifecycle hooks (`autoscaling:EC2_INSTANCE_TERMINATING` holds a terminating instance in
    /// `Terminating:Wait` until `CompleteLifecycleAction` or the heartbeat timeout).
    #[serde(default)]
    pub lifecycle_hooks: Vec<LifecycleHookConfig>,
}

fn default_health_check_type() -> String {
    defaults::ASG_HEALTH_CHECK_TYPE.to_owned()
}

/// A launch template reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaunchTemplateSpec {
    /// Launch template name.
    pub name: String,
    /// `1`, `2`, ..., `$Latest` or `$Default`.
    #[serde(default = "default_lt_version")]
    pub version: String,
}

fn default_lt_version() -> String {
    "$Default".to_owned()
}

/// The ECS capacity provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapacityProviderConfig {
    /// Name.
    #[serde(default = "default_capacity_provider")]
    pub name: String,
    /// Managed draining (AWS's default for new capacity providers): a terminating instance waits
    /// in `Terminating:Wait` until ECS has moved its tasks away.
    #[serde(default = "yes")]
    pub managed_draining: bool,
    /// Managed termination protection: instances running tasks are protected from scale-in.
    #[serde(default)]
    pub managed_termination_protection: bool,
}

fn default_capacity_provider() -> String {
    "default-cp".to_owned()
}

impl Default for CapacityProviderConfig {
    fn default() -> Self {
        Self {
            name: default_capacity_provider(),
            managed_draining: true,
            managed_termination_protection: false,
        }
    }
}

/// An Auto Scaling lifecycle hook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifecycleHookConfig {
    /// Hook name.
    pub name: String,
    /// `autoscaling:EC2_INSTANCE_TERMINATING` or `autoscaling:EC2_INSTANCE_LAUNCHING`.
    pub transition: String,
    /// Seconds the instance waits for `CompleteLifecycleAction` (simulated; AWS default 3600).
    #[serde(default = "default_heartbeat")]
    pub heartbeat_timeout: u32,
    /// `CONTINUE` or `ABANDON` when the timeout passes.
    #[serde(default = "default_hook_result")]
    pub default_result: String,
}

fn default_heartbeat() -> u32 {
    3600
}
fn default_hook_result() -> String {
    "ABANDON".to_owned()
}

fn default_time_scale() -> f64 {
    1.0
}

/// The ECS cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Cluster name.
    #[serde(default = "default_cluster_name")]
    pub name: String,
    /// Container instances at boot (each gets 127.0.x.y) when there is no Auto Scaling group.
    #[serde(default = "default_instances")]
    pub instances: u32,
    /// Seconds (simulated) before ECS notices that an instance vanished and marks its tasks
    /// stopped; the load balancer's health checks usually notice first.
    #[serde(default = "default_agent_disconnect")]
    pub agent_disconnect_timeout: u32,
}

fn default_agent_disconnect() -> u32 {
    60
}

fn default_cluster_name() -> String {
    "default".to_owned()
}

fn default_instances() -> u32 {
    2
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            name: default_cluster_name(),
            instances: default_instances(),
            agent_disconnect_timeout: default_agent_disconnect(),
        }
    }
}

/// How to run an image locally: a program (`command`) or a container of a local Docker image
/// (`docker`), exactly one of the two.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Image {
    /// The program. `server` means the workspace's `server` binary (found beside `localaws`, in
    /// `$LOCALAWS_SERVER_BIN`, or on `PATH`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub command: String,
    /// A local Docker image (`ecs-zdt/server:dev`): each task is a container of it, run as the
    /// ECS agent runs one in `bridge` mode. `args` do not apply; `environment` does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker: Option<String>,
    /// Arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Environment added before the task definition's own.
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
}

/// The prefix of `--image NAME=docker:REF`.
pub const DOCKER_PREFIX: &str = "docker:";

impl Image {
    /// The image a `--image NAME=...` flag names: `docker:REF` is a local Docker image, anything
    /// else a program and its arguments (split on whitespace).
    pub fn from_flag(command: &[String]) -> Image {
        if let [only] = command
            && let Some(reference) = only.strip_prefix(DOCKER_PREFIX)
        {
            return Image {
                command: String::new(),
                docker: Some(reference.to_owned()),
                args: Vec::new(),
                environment: BTreeMap::new(),
            };
        }
        let mut it = command.iter().cloned();
        Image {
            command: it.next().unwrap_or_default(),
            docker: None,
            args: it.collect(),
            environment: BTreeMap::new(),
        }
    }
}

/// An ECS task definition (the fields that matter here), with ECS JSON names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TaskDefinition {
    /// Family name.
    pub family: String,
    /// `bridge` (the default here: dynamic host ports) or `host`.
    #[serde(default)]
    pub network_mode: Option<String>,
    /// The containers (1 to 10, as ECS allows), each run as a process or, for an image with a
    /// `docker` reference, as a container; at least one is essential.
    pub container_definitions: Vec<ContainerDefinition>,
}

/// The most containers ECS allows in one task definition.
const MAX_CONTAINERS: usize = 10;

impl TaskDefinition {
    /// The container a load balancer reaches: the one named `name` (a service's
    /// `load_balancer.container_name`), else the first with a port mapping, else the first.
    pub fn serving_container(&self, name: Option<&str>) -> Option<&ContainerDefinition> {
        let named = name.and_then(|n| self.container_definitions.iter().find(|c| c.name == n));
        named
            .or_else(|| {
                self.container_definitions
                    .iter()
                    .find(|c| !c.port_mappings.is_empty())
            })
            .or_else(|| self.container_definitions.first())
    }

    /// What ECS checks of a task definition's containers as a whole: 1 to 10 of them, names
    /// unique, at least one essential, no host port mapped twice. The field (from
    /// `containerDefinitions`) and what is wrong.
    pub fn check_containers(&self) -> Result<(), (String, String)> {
        let containers = &self.container_definitions;
        let whole = "containerDefinitions".to_owned();
        if !(1..=MAX_CONTAINERS).contains(&containers.len()) {
            return Err((
                whole,
                format!(
                    "expected 1 to {MAX_CONTAINERS} containers (ECS's limit), got {}",
                    containers.len()
                ),
            ));
        }
        if !containers.iter().any(ContainerDefinition::is_essential) {
            return Err((
                whole,
                "expected at least one essential container (essential is true unless set to false)"
                    .to_owned(),
            ));
        }
        for (j, c) in containers.iter().enumerate() {
            let valid = (1..=255).contains(&c.name.len())
                && c.name
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-');
            if !valid {
                return Err((
                    format!("containerDefinitions[{j}].name"),
                    format!(
                        "invalid container name {:?}: up to 255 letters, numbers, underscores and hyphens (ECS's rule)",
                        c.name
                    ),
                ));
            }
            if containers[..j].iter().any(|o| o.name == c.name) {
                return Err((
                    format!("containerDefinitions[{j}].name"),
                    format!(
                        "container name {:?} is used twice in the task definition",
                        c.name
                    ),
                ));
            }
        }
        let ports = self.static_host_ports();
        for (k, port) in ports.iter().enumerate() {
            if ports[..k].contains(port) {
                return Err((
                    whole,
                    format!(
                        "host port {port} is mapped twice: two containers of one task cannot hold one host port"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The host ports a task of this definition holds on its instance whatever runs there: each
    /// container's static `hostPort`, or in `host` network mode its container port.
    pub fn static_host_ports(&self) -> Vec<u16> {
        self.container_definitions
            .iter()
            .flat_map(|c| c.port_mappings.iter())
            .filter_map(|p| match self.network_mode.as_deref() {
                Some("host") => Some(p.container_port),
                _ => p.host_port.filter(|h| *h != 0),
            })
            .collect()
    }
}

impl ContainerDefinition {
    /// Whether the task stops when this container does (ECS's default: it does).
    pub fn is_essential(&self) -> bool {
        self.essential.unwrap_or(true)
    }
}

/// One container of a task definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerDefinition {
    /// Container name (services refer to it).
    pub name: String,
    /// Image name, looked up in `[images]`.
    pub image: String,
    /// Whether the task stops when this container stops (default `true`, as on ECS).
    #[serde(default)]
    pub essential: Option<bool>,
    /// Port mappings; `hostPort` 0 or absent is dynamic, as in bridge mode.
    #[serde(default)]
    pub port_mappings: Vec<PortMapping>,
    /// Environment variables.
    #[serde(default)]
    pub environment: Vec<KeyValue>,
    /// Seconds between SIGTERM and SIGKILL (real time; ECS default 30).
    #[serde(default)]
    pub stop_timeout: Option<u32>,
    /// Container health check (kept for the control plane).
    #[serde(default)]
    pub health_check: Option<ContainerHealthCheck>,
    /// Linux settings; `initProcessEnabled` runs an init as the container's PID 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linux_parameters: Option<LinuxParameters>,
    /// Replaces the image's `ENTRYPOINT` (Docker images only: a program image's command is
    /// the stack's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry_point: Option<Vec<String>>,
    /// Replaces the image's `CMD` (Docker images only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// The directory the container's command runs in (Docker images only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_directory: Option<String>,
    /// `user`, `user:group`, `uid` or `uid:gid` to run as (Docker images only; a program image
    /// runs as localaws's user).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// CPU units (informational).
    #[serde(default)]
    pub cpu: Option<u32>,
    /// Memory in MiB (informational).
    #[serde(default)]
    pub memory: Option<u32>,
}

/// ECS `linuxParameters` (the one member that changes how a container stops).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LinuxParameters {
    /// An init process (Docker's `--init`) as PID 1: it forwards signals to the application
    /// and reaps children, so an application that sets no SIGTERM handler still stops on one.
    #[serde(default)]
    pub init_process_enabled: Option<bool>,
}

/// `containerPort` → `hostPort`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortMapping {
    /// The port the process listens on inside its container.
    pub container_port: u16,
    /// The port on the instance; 0 or absent picks a free one.
    #[serde(default)]
    pub host_port: Option<u16>,
    /// `tcp`.
    #[serde(default)]
    pub protocol: Option<String>,
}

/// `{ name, value }`, as in ECS `environment`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyValue {
    /// Variable name.
    pub name: String,
    /// Its value.
    pub value: String,
}

/// ECS container health check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerHealthCheck {
    /// `["CMD", ...]` or `["CMD-SHELL", "..."]`.
    pub command: Vec<String>,
    /// Seconds between checks.
    #[serde(default)]
    pub interval: Option<u32>,
    /// Seconds a check may take.
    #[serde(default)]
    pub timeout: Option<u32>,
    /// Failures before unhealthy.
    #[serde(default)]
    pub retries: Option<u32>,
    /// Grace period in seconds.
    #[serde(default)]
    pub start_period: Option<u32>,
}

/// An ALB target group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetGroupConfig {
    /// Name.
    pub name: String,
    /// Seconds a deregistered target drains (simulated; AWS default 300).
    #[serde(default = "default_deregistration_delay")]
    pub deregistration_delay: u32,
    /// Health checks.
    #[serde(default)]
    pub health_check: HealthCheckConfig,
    /// The port instance targets are registered on (1–65535): required for a group attached to
    /// the Auto Scaling group (`auto_scaling_group.target_groups`), unused otherwise (ECS
    /// registers each task on its own host port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

fn default_deregistration_delay() -> u32 {
    defaults::DEREGISTRATION_DELAY
}

/// Target group health checks, with the ALB defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckConfig {
    /// Path requested.
    #[serde(default = "default_hc_path")]
    pub path: String,
    /// Seconds between checks (simulated, 5–300).
    #[serde(default = "default_hc_interval")]
    pub interval: u32,
    /// Seconds a check may take (simulated, 2–120, less than the interval).
    #[serde(default = "default_hc_timeout")]
    pub timeout: u32,
    /// Consecutive successes to become healthy (2–10).
    #[serde(default = "default_hc_healthy")]
    pub healthy_threshold: u32,
    /// Consecutive failures to become unhealthy (2–10).
    #[serde(default = "default_hc_unhealthy")]
    pub unhealthy_threshold: u32,
    /// Success codes: `200`, `200,202`, `200-299`.
    #[serde(default = "default_hc_matcher")]
    pub matcher: String,
}

fn default_hc_path() -> String {
    defaults::HEALTH_CHECK_PATH.to_owned()
}
fn default_hc_interval() -> u32 {
    defaults::HEALTH_CHECK_INTERVAL
}
fn default_hc_timeout() -> u32 {
    defaults::HEALTH_CHECK_TIMEOUT
}
fn default_hc_healthy() -> u32 {
    defaults::HEALTHY_THRESHOLD
}
fn default_hc_unhealthy() -> u32 {
    defaults::UNHEALTHY_THRESHOLD
}
fn default_hc_matcher() -> String {
    defaults::HEALTH_CHECK_MATCHER.to_owned()
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        Self {
            path: default_hc_path(),
            interval: default_hc_interval(),
            timeout: default_hc_timeout(),
            healthy_threshold: default_hc_healthy(),
            unhealthy_threshold: default_hc_unhealthy(),
            matcher: default_hc_matcher(),
        }
    }
}

/// An application load balancer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadBalancerConfig {
    /// Name.
    pub name: String,
    /// Address the listeners bind (loopback only).
    #[serde(default = "default_lb_address")]
    pub address: std::net::IpAddr,
    /// Client idle timeout in seconds (real; ALB default 60).
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: u32,
    /// Simulated seconds the load balancer's nodes go on routing new requests to a target after
    /// its deregistration starts (AWS: a few seconds; what the application's drain delay covers
    /// when the deregistration delay is shorter).
    #[serde(default = "default_propagation")]
    pub deregistration_propagation: u32,
    /// Listeners.
    pub listeners: Vec<ListenerConfig>,
}

fn default_lb_address() -> std::net::IpAddr {
    std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
}

fn default_idle_timeout() -> u32 {
    defaults::LB_IDLE_TIMEOUT
}

fn default_propagation() -> u32 {
    5
}

/// A listener and its default action: a weighted forward.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Name (`production`, `test`).
    pub name: String,
    /// Port; 0 picks a free one.
    #[serde(default)]
    pub port: u16,
    /// `HTTP` (the default) or `HTTPS`: TLS terminated by the listener with a certificate
    /// localaws makes at start, signed by a CA of its own whose PEM it writes to the state
    /// directory (`ca.pem`).
    #[serde(default = "default_listener_protocol")]
    pub protocol: String,
    /// Target groups with weights (0–999), like an ALB weighted forward action.
    pub forward: Vec<WeightedTargetGroup>,
}

fn default_listener_protocol() -> String {
    "HTTP".to_owned()
}

impl ListenerConfig {
    /// Whether the listener terminates TLS.
    pub fn is_https(&self) -> bool {
        self.protocol == "HTTPS"
    }
}

/// One target group of a weighted forward.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightedTargetGroup {
    /// Target group name.
    pub target_group: String,
    /// Weight, 0–999.
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_weight() -> u32 {
    1
}

/// An ECS service: tasks placed at boot across the instances and registered with its target group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Name.
    pub name: String,
    /// Task definition family.
    pub task_definition: String,
    /// Tasks to run.
    pub desired_count: u32,
    /// Target group registration.
    #[serde(default)]
    pub load_balancer: Option<ServiceLoadBalancer>,
    /// Healthy tasks kept during deployments and draining, as a percentage of the desired count.
    #[serde(default = "default_min_healthy")]
    pub minimum_healthy_percent: u32,
    /// Tasks allowed during deployments and draining, as a percentage of the desired count.
    #[serde(default = "default_max_percent")]
    pub maximum_percent: u32,
    /// Seconds after start before failed load balancer health checks stop a task (simulated).
    #[serde(default)]
    pub health_check_grace_period: u32,
    /// `ECS` (rolling) or `CODE_DEPLOY` (blue/green).
    #[serde(default = "default_controller")]
    pub deployment_controller: String,
    /// The deployment circuit breaker (`deploymentConfiguration.deploymentCircuitBreaker`;
    /// Terraform's `deployment_circuit_breaker` block): rolling services only.
    #[serde(default)]
    pub deployment_circuit_breaker: Option<CircuitBreakerConfig>,
}

/// A rolling deployment's circuit breaker: a deployment whose new tasks keep failing (to start,
/// or their health checks) fails, and rolls back to the last completed one when `rollback`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CircuitBreakerConfig {
    /// Whether the breaker watches deployments at all.
    pub enable: bool,
    /// Whether a failed deployment rolls back.
    pub rollback: bool,
}

impl CircuitBreakerConfig {
    /// ECS's failure threshold for `desired` tasks (the default `BOUNDED_PERCENT` of 50): half the
    /// desired count rounded up, at least 3 and at most 200.
    pub fn threshold(desired: u32) -> u32 {
        desired.div_ceil(2).clamp(3, 200)
    }
}

fn default_min_healthy() -> u32 {
    defaults::MINIMUM_HEALTHY_PERCENT
}
fn default_max_percent() -> u32 {
    defaults::MAXIMUM_PERCENT
}
fn default_controller() -> String {
    "ECS".to_owned()
}

/// Where a service's tasks are registered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceLoadBalancer {
    /// Target group name.
    pub target_group: String,
    /// Container whose port is registered.
    pub container_name: String,
    /// That container's port.
    pub container_port: u16,
}

impl Stack {
    /// The embedded default stack.
    pub fn embedded() -> Result<Self, StackError> {
        Self::parse(DEFAULT_STACK, "embedded default")
    }

    /// The embedded default tuned for rehearsals, tests and benchmarks: AWS machinery
    /// `time_scale` times faster, an application that drains for 1 s within a 5 s shutdown
    /// (`stopTimeout` 10 s), capacity provider managed draining as given.
    pub fn rehearsal(managed_draining: bool, time_scale: f64) -> Result<Self, StackError> {
        let mut stack = Self::embedded()?;
        stack.time_scale = time_scale;
        if let Some(asg) = stack.auto_scaling_group.as_mut() {
            asg.capacity_provider.managed_draining = managed_draining;
        }
        for td in &mut stack.task_definitions {
            for c in &mut td.container_definitions {
                c.stop_timeout = Some(10);
                for kv in &mut c.environment {
                    match kv.name.as_str() {
                        "DRAIN_DELAY_SECONDS" => kv.value = "1".into(),
                        "SHUTDOWN_TIMEOUT_SECONDS" => kv.value = "5".into(),
                        _ => {}
                    }
                }
            }
        }
        stack
            .validate()
            .map_err(|(field, message)| StackError::Invalid {
                origin: "rehearsal".into(),
                field,
                message,
            })?;
        Ok(stack)
    }

    /// Reads and validates a stack file.
    pub fn load(path: &Path) -> Result<Self, StackError> {
        let text = std::fs::read_to_string(path).map_err(|source| StackError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses and validates stack text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, StackError> {
        let stack: Stack = toml::from_str(text).map_err(|e| StackError::Parse {
            origin: origin.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        stack
            .validate()
            .map_err(|(field, message)| StackError::Invalid {
                origin: origin.to_owned(),
                field,
                message,
            })?;
        Ok(stack)
    }

    /// The load balancers whose listeners forward to target group `tg`.
    pub fn load_balancers_forwarding_to<'a>(
        &'a self,
        tg: &'a str,
    ) -> impl Iterator<Item = &'a LoadBalancerConfig> + 'a {
        self.load_balancers.iter().filter(move |lb| {
            lb.listeners
                .iter()
                .any(|l| l.forward.iter().any(|f| f.target_group == tg))
        })
    }

    /// The target group called `name`.
    pub fn target_group(&self, name: &str) -> Option<&TargetGroupConfig> {
        self.target_groups.iter().find(|t| t.name == name)
    }

    /// The task definition of family `family`.
    pub fn task_definition(&self, family: &str) -> Option<&TaskDefinition> {
        self.task_definitions.iter().find(|t| t.family == family)
    }

    /// Every check, section by section in a fixed order; the first that fails is the error,
    /// with its field path.
    fn validate(&self) -> Result<(), (String, String)> {
        let err = |field: String, message: &str| Err((field, message.to_owned()));
        if !(self.time_scale.is_finite() && (0.01..=1000.0).contains(&self.time_scale)) {
            return err("time_scale".into(), "expected a number from 0.01 to 1000");
        }
        if !(1..=250).contains(&self.cluster.instances) {
            return err("cluster.instances".into(), "expected 1 to 250 instances");
        }
        self.validate_names()?;
        self.validate_images()?;
        self.validate_task_definitions()?;
        self.validate_target_groups()?;
        self.validate_load_balancers()?;
        self.validate_auto_scaling()?;
        self.validate_codedeploy()?;
        self.validate_services()
    }

    /// Names (AWS's characters and lengths), unique where AWS requires it; injected API faults.
    fn validate_names(&self) -> Result<(), (String, String)> {
        let err = |field: String, message: &str| Err((field, message.to_owned()));
        name("cluster.name", &self.cluster.name)?;
        for (i, f) in self.api_faults.iter().enumerate() {
            let ok = f.action.split_once(':').is_some_and(|(svc, op)| {
                FAULT_SERVICES.contains(&svc)
                    && op.starts_with(|c: char| c.is_ascii_uppercase())
                    && op.chars().all(|c| c.is_ascii_alphanumeric())
            });
            if !ok {
                return err(
                    format!("api_faults[{i}].action"),
                    "expected SERVICE:Operation with SERVICE one of autoscaling, codedeploy, ec2, ecs, elasticloadbalancing (e.g. autoscaling:StartInstanceRefresh)",
                );
            }
        }
        for (i, tg) in self.target_groups.iter().enumerate() {
            name(&format!("target_groups[{i}].name"), &tg.name)?;
        }
        for (i, lb) in self.load_balancers.iter().enumerate() {
            name(&format!("load_balancers[{i}].name"), &lb.name)?;
            for (j, l) in lb.listeners.iter().enumerate() {
                name(&format!("load_balancers[{i}].listeners[{j}].name"), &l.name)?;
            }
        }
        for (i, svc) in self.services.iter().enumerate() {
            name(&format!("services[{i}].name"), &svc.name)?;
        }
        for (i, td) in self.task_definitions.iter().enumerate() {
            name(&format!("task_definitions[{i}].family"), &td.family)?;
        }
        for (i, lt) in self.launch_templates.iter().enumerate() {
            name(&format!("launch_templates[{i}].name"), &lt.name)?;
        }
        if let Some(asg) = &self.auto_scaling_group {
            name("auto_scaling_group.name", &asg.name)?;
            name(
                "auto_scaling_group.capacity_provider.name",
                &asg.capacity_provider.name,
            )?;
            for (i, h) in asg.lifecycle_hooks.iter().enumerate() {
                name(
                    &format!("auto_scaling_group.lifecycle_hooks[{i}].name"),
                    &h.name,
                )?;
            }
        }
        unique(
            self.target_groups.iter().map(|t| t.name.as_str()),
            "target_groups",
        )?;
        unique(
            self.task_definitions.iter().map(|t| t.family.as_str()),
            "task_definitions",
        )?;
        unique(
            self.load_balancers.iter().map(|l| l.name.as_str()),
            "load_balancers",
        )?;
        unique(self.services.iter().map(|s| s.name.as_str()), "services")?;
        Ok(())
    }

    /// The images tasks run: a program, no NUL byte, valid environment.
    fn validate_images(&self) -> Result<(), (String, String)> {
        let err = |field: String, message: &str| Err((field, message.to_owned()));
        for (image_name, image) in &self.images {
            name(&format!("images.{image_name:?}"), image_name)?;
            match &image.docker {
                Some(_) if !image.command.is_empty() => {
                    return err(
                        format!("images.{image_name}"),
                        "expected either command (a program) or docker (a local image), not both",
                    );
                }
                Some(reference) => {
                    if !docker_reference(reference) {
                        return err(
                            format!("images.{image_name}.docker"),
                            "expected a Docker image reference (repository[:tag][@digest], no whitespace)",
                        );
                    }
                }
                None => {
                    if image.command.trim().is_empty() || image.command.contains('\0') {
                        return err(
                            format!("images.{image_name}.command"),
                            "expected a program to run (no NUL byte)",
                        );
                    }
                }
            }
            for (k, arg) in image.args.iter().enumerate() {
                if arg.contains('\0') {
                    return err(
                        format!("images.{image_name}.args[{k}]"),
                        "NUL byte in an argument",
                    );
                }
            }
            for (key, value) in &image.environment {
                env_var(
                    &format!("images.{image_name}.environment.{key:?}"),
                    key,
                    value,
                )?;
            }
        }
        Ok(())
    }

    /// Task definitions: network mode, containers (names, essential ones, host ports), their images, ports, `stopTimeout`, container health checks, environment.
    fn validate_task_definitions(&self) -> Result<(), (String, String)> {
        let err = |field: String, message: &str| Err((field, message.to_owned()));
        for (i, td) in self.task_definitions.iter().enumerate() {
            let at = format!("task_definitions[{i}]");
            if td.family.is_empty() {
                return err(format!("{at}.family"), "expected a name");
            }
            match td.network_mode.as_deref() {
                None | Some("bridge") | Some("host") => {}
                Some(_) => return err(format!("{at}.networkMode"), "expected bridge or host"),
            }
            td.check_containers()
                .map_err(|(field, message)| (format!("{at}.{field}"), message))?;
            for (j, c) in td.container_definitions.iter().enumerate() {
                let at = format!("{at}.containerDefinitions[{j}]");
                if !self.images.contains_key(&c.image) {
                    return Err((
                        format!("{at}.image"),
                        format!(
                            "unknown image {:?}; known: {}",
                            c.image,
                            self.images.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    ));
                }
                if c.port_mappings.len() > 1 {
                    return err(
                        format!("{at}.portMappings"),
                        "expected at most one port mapping",
                    );
                }
                if c.stop_timeout.is_some_and(|t| !(2..=120).contains(&t)) {
                    return err(format!("{at}.stopTimeout"), "expected 2 to 120 seconds");
                }
                name(&format!("{at}.name"), &c.name)?;
                if let Some(hc) = &c.health_check {
                    let at = format!("{at}.healthCheck");
                    let kind_ok = match hc.command.first().map(String::as_str) {
                        Some("CMD") => hc.command.len() >= 2,
                        Some("CMD-SHELL") => hc.command.len() == 2,
                        _ => false,
                    };
                    if !kind_ok {
                        return err(
                            format!("{at}.command"),
                            "expected [\"CMD\", program, args...] or [\"CMD-SHELL\", command line]",
                        );
                    }
                    if hc.interval.is_some_and(|v| !(5..=300).contains(&v)) {
                        return err(format!("{at}.interval"), "expected 5 to 300 seconds");
                    }
                    if hc.timeout.is_some_and(|v| !(2..=60).contains(&v)) {
                        return err(format!("{at}.timeout"), "expected 2 to 60 seconds");
                    }
                    if hc.retries.is_some_and(|v| !(1..=10).contains(&v)) {
                        return err(format!("{at}.retries"), "expected 1 to 10");
                    }
                    if hc.start_period.is_some_and(|v| v > 300) {
                        return err(format!("{at}.startPeriod"), "expected 0 to 300 seconds");
                    }
                }
                for (k, kv) in c.environment.iter().enumerate() {
                    env_var(&format!("{at}.environment[{k}].name"), &kv.name, &kv.value)?;
                }
            }
        }
        Ok(())
    }

    /// Target groups: deregistration delay, port, health check within ELBv2's ranges.
    fn validate_target_groups(&self) -> Result<(), (String, String)> {
        let err = |field: String, message: &str| Err((field, message.to_owned()));
        for (i, tg) in self.target_groups.iter().enumerate() {
            let at = format!("target_groups[{i}]");
            if tg.deregistration_delay > 3600 {
                return err(
                    format!("{at}.deregistration_delay"),
                    "expected 0 to 3600 seconds",
                );
            }
            if tg.port == Some(0) {
                return err(format!("{at}.port"), "expected 1 to 65535");
            }
            let hc = &tg.health_check;
            if let Err(message) = health_check_path(&hc.path) {
                return err(format!("{at}.health_check.path"), message);
            }
            if !(5..=300).contains(&hc.interval) {
                return err(
                    format!("{at}.health_check.interval"),
                    "expected 5 to 300 seconds",
                );
            }
            if !(2..=120).contains(&hc.timeout) || hc.timeout >= hc.interval {
                return err(
                    format!("{at}.health_check.timeout"),
                    "expected 2 to 120 seconds, less than the interval",
                );
            }
            if !(2..=10).contains(&hc.healthy_threshold) {
                return err(
                    format!("{at}.health_check.healthy_threshold"),
                    "expected 2 to 10",
                );
            }
            if !(2..=10).contains(&hc.unhealthy_threshold) {
                return err(
                    format!("{at}.health_check.unhealthy_threshold"),
                    "expected 2 to 10",
                );
            }
            if let Err(message) = Matcher::parse(&hc.matcher) {
                return Err((format!("{at}.health_check.matcher"), message));
            }
        }
        Ok(())
    }

    /// Load balancers: loopback addresses, idle timeout, listeners (ports, protocols, forwards).
    fn validate_load_balancers(&self) -> Result<(), (String, String)> {
        let err = |field: String, message: &str| Err((field, message.to_owned()));
        let mut ports = BTreeSet::new();
        for (i, lb) in self.load_balancers.iter().enumerate() {
            let at = format!("load_balancers[{i}]");
            if !lb.address.is_loopback() {
                return err(
                    format!("{at}.address"),
                    "expected a loopback address (127.0.0.0/8 or ::1)",
                );
            }
            if !(1..=4000).contains(&lb.idle_timeout) {
                return err(format!("{at}.idle_timeout"), "expected 1 to 4000 seconds");
            }
            if lb.deregistration_propagation > 300 {
                return err(
                    format!("{at}.deregistration_propagation"),
                    "expected 0 to 300 seconds",
                );
            }
            unique(
                lb.listeners.iter().map(|l| l.name.as_str()),
                &format!("{at}.listeners"),
            )?;
            for (j, l) in lb.listeners.iter().enumerate() {
                let at = format!("{at}.listeners[{j}]");
                if l.port != 0 && !ports.insert((lb.address, l.port)) {
                    return err(
                        format!("{at}.port"),
                        "port already used by another listener",
                    );
                }
                if !matches!(l.protocol.as_str(), "HTTP" | "HTTPS") {
                    return err(format!("{at}.protocol"), "expected HTTP or HTTPS");
                }
                validate_forward(&l.forward, &at, |name| self.target_group(name).is_some())?;
            }
        }
        Ok(())
    }

    /// Services: percentages, controller, task definition, load balancer container and port.
    fn validate_services(&self) -> Result<(), (String, String)> {
        let err = |field: String, message: &str| Err((field, message.to_owned()));
        for (i, svc) in self.services.iter().enumerate() {
            let at = format!("services[{i}]");
            if svc.name.is_empty() {
                return err(format!("{at}.name"), "expected a name");
            }
            if svc.minimum_healthy_percent > 100 {
                return err(format!("{at}.minimum_healthy_percent"), "expected 0 to 100");
            }
            if !(100..=200).contains(&svc.maximum_percent) {
                return err(format!("{at}.maximum_percent"), "expected 100 to 200");
            }
            if !matches!(svc.deployment_controller.as_str(), "ECS" | "CODE_DEPLOY") {
                return err(
                    format!("{at}.deployment_controller"),
                    "expected ECS or CODE_DEPLOY",
                );
            }
            if svc.deployment_circuit_breaker.is_some() && svc.deployment_controller != "ECS" {
                return err(
                    format!("{at}.deployment_circuit_breaker"),
                    "the deployment circuit breaker can only be used for services using the rolling update (ECS) deployment type",
                );
            }
            let Some(td) = self.task_definition(&svc.task_definition) else {
                return err(
                    format!("{at}.task_definition"),
                    "no task definition of that family",
                );
            };
            if svc.desired_count > 100 {
                return err(format!("{at}.desired_count"), "expected 0 to 100 tasks");
            }
            if let Some(lb) = &svc.load_balancer {
                if self.target_group(&lb.target_group).is_none() {
                    return err(
                        format!("{at}.load_balancer.target_group"),
                        "no target group of that name",
                    );
                }
                let container = td
                    .container_definitions
                    .iter()
                    .find(|c| c.name == lb.container_name);
                let Some(container) = container else {
                    return err(
                        format!("{at}.load_balancer.container_name"),
                        "no container of that name in the task definition",
                    );
                };
                if !container
                    .port_mappings
                    .iter()
                    .any(|p| p.container_port == lb.container_port)
                {
                    return err(
                        format!("{at}.load_balancer.container_port"),
                        "the container has no port mapping for that port",
                    );
                }
            }
        }
        Ok(())
    }
}

impl Stack {
    /// Launch templates and AMIs, then the Auto Scaling group: sizes, its launch template, health
    /// check type, attached target groups, lifecycle hooks.
    fn validate_auto_scaling(&self) -> Result<(), (String, String)> {
        self.validate_launch_templates()?;
        let Some(asg) = &self.auto_scaling_group else {
            return Ok(());
        };
        let err = |field: String, message: &str| Err((field, message.to_owned()));
        let at = "auto_scaling_group";
        if asg.name.is_empty() {
            return err(format!("{at}.name"), "expected a name");
        }
        if asg.max_size > 250 || asg.min_size > asg.max_size {
            return err(
                format!("{at}.max_size"),
                "expected min_size <= max_size <= 250",
            );
        }
        if !(asg.min_size..=asg.max_size).contains(&asg.desired_capacity) {
            return err(
                format!("{at}.desired_capacity"),
                "expected a value from min_size to max_size",
            );
        }
        let Some(lt) = self
            .launch_templates
            .iter()
            .find(|t| t.name == asg.launch_template.name)
        else {
            return err(
                format!("{at}.launch_template.name"),
                "no launch template of that name",
            );
        };
        match asg.launch_template.version.as_str() {
            "$Latest" | "$Default" => {}
            v => match v.parse::<usize>() {
                Ok(n) if (1..=lt.versions.len()).contains(&n) => {}
                _ => {
                    return err(
                        format!("{at}.launch_template.version"),
                        "expected $Latest, $Default or an existing version number",
                    );
                }
            },
        }
        if !matches!(asg.health_check_type.as_str(), "EC2" | "ELB") {
            return err(format!("{at}.health_check_type"), "expected EC2 or ELB");
        }
        self.validate_attached_target_groups(asg)?;
        validate_lifecycle_hooks(asg)
    }

    /// Launch templates (versions, the default one, AMI ids) and the AMIs' timings.
    fn validate_launch_templates(&self) -> Result<(), (String, String)> {
        let err = |field: String, message: &str| Err((field, message.to_owned()));
        unique(
            self.launch_templates.iter().map(|t| t.name.as_str()),
            "launch_templates",
        )?;
        for (i, lt) in self.launch_templates.iter().enumerate() {
            let at = format!("launch_templates[{i}]");
            if lt.name.is_empty() {
                return err(format!("{at}.name"), "expected a name");
            }
            if lt.versions.is_empty() {
                return err(format!("{at}.versions"), "expected at least one version");
            }
            if lt.default_version == 0 || lt.default_version as usize > lt.versions.len() {
                return err(
                    format!("{at}.default_version"),
                    "expected the number of one of the versions (from 1)",
                );
            }
            for (j, v) in lt.versions.iter().enumerate() {
                if !v.image_id.starts_with("ami-") {
                    return err(
                        format!("{at}.versions[{j}].image_id"),
                        "expected an AMI id (ami-...)",
                    );
                }
            }
        }
        for (name, ami) in &self.amis {
            if ami.boot > 3600 || ami.agent_start > 3600 {
                return err(
                    format!("amis.{name}"),
                    "expected boot and agent_start up to 3600 s",
                );
            }
        }
        Ok(())
    }

    /// The target groups attached to the group: each with a port no task holds statically.
    fn validate_attached_target_groups(
        &self,
        asg: &AutoScalingGroupConfig,
    ) -> Result<(), (String, String)> {
        let at = "auto_scaling_group";
        unique(
            asg.target_groups.iter().map(String::as_str),
            &format!("{at}.target_groups"),
        )?;
        for (i, name) in asg.target_groups.iter().enumerate() {
            let field = format!("{at}.target_groups[{i}]");
            let Some(tg) = self.target_group(name) else {
                return Err((field, format!("no target group named {name:?}")));
            };
            let Some(port) = tg.port else {
                return Err((
                    field,
                    format!(
                        "target group {name:?} has no port: a group attached to the Auto \
                         Scaling group registers its instances on the group's port (set its \
                         port, e.g. 51678)"
                    ),
                ));
            };
            // The instance's own endpoint holds that port on every instance: a task whose
            // host port it is could never start.
            let static_port = self.task_definitions.iter().find(|td| {
                td.container_definitions.iter().any(|c| {
                    c.port_mappings.iter().any(|p| {
                        let host = match td.network_mode.as_deref() {
                            Some("host") => Some(p.container_port),
                            _ => p.host_port.filter(|h| *h != 0),
                        };
                        host == Some(port)
                    })
                })
            });
            if let Some(td) = static_port {
                return Err((
                    field,
                    format!(
                        "target group {name:?} registers instances on port {port}, the static \
                         host port of task definition {:?}: the instance's own endpoint (the \
                         ECS agent's introspection port) answers there",
                        td.family
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The local image an ECS image reference runs as: the name itself (`server`), or the
    /// repository's last path segment without tag or digest, so a registry URI such as
    /// `123456789012.dkr.ecr.us-east-1.amazonaws.com/ecs-zdt/server:3f2a` runs image `server`.
    pub fn image(&self, reference: &str) -> Option<&Image> {
        if let Some(image) = self.images.get(reference) {
            return Some(image);
        }
        let repo = reference.split('@').next().unwrap_or(reference);
        let last = repo.rsplit('/').next().unwrap_or(repo);
        let name = last.split(':').next().unwrap_or(last);
        self.images.get(name)
    }

    /// How instances of `image_id` boot.
    pub fn ami(&self, image_id: &str) -> AmiConfig {
        self.amis.get(image_id).cloned().unwrap_or_default()
    }
}

/// Checks a weighted forward: known target groups, weights 0–999, at least one above 0.
pub fn validate_forward(
    forward: &[WeightedTargetGroup],
    at: &str,
    exists: impl Fn(&str) -> bool,
) -> Result<(), (String, String)> {
    if forward.is_empty() || forward.len() > 5 {
        return Err((
            format!("{at}.forward"),
            "expected 1 to 5 target groups".into(),
        ));
    }
    unique(
        forward.iter().map(|f| f.target_group.as_str()),
        &format!("{at}.forward"),
    )?;
    for (k, f) in forward.iter().enumerate() {
        if !exists(&f.target_group) {
            return Err((
                format!("{at}.forward[{k}].target_group"),
                format!("no target group named {:?}", f.target_group),
            ));
        }
        if f.weight > 999 {
            return Err((
                format!("{at}.forward[{k}].weight"),
                "expected 0 to 999".into(),
            ));
        }
    }
    if forward.iter().all(|f| f.weight == 0) {
        return Err((
            format!("{at}.forward"),
            "every weight is 0: the listener forwards nowhere".into(),
        ));
    }
    Ok(())
}

/// The longest name accepted for a cluster, group, listener, service, container or image.
const MAX_NAME: usize = 255;

/// A name: 1 to 255 characters, none of them whitespace or control characters (names end up in
/// ARNs, URLs, log lines and event labels).
fn name(field: &str, value: &str) -> Result<(), (String, String)> {
    if value.is_empty()
        || value.chars().count() > MAX_NAME
        || value.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err((
            field.to_owned(),
            format!(
                "invalid name {value:?}: expected 1 to {MAX_NAME} characters, no whitespace or \
                 control characters"
            ),
        ));
    }
    Ok(())
}

/// An environment variable a task gets: a name that is not empty and holds no `=` or NUL (the
/// OS could not pass it), and a value without NUL.
/// A Docker image reference as the engine takes it: not empty, no whitespace or control
/// character, not starting with `-` or `/`, at most 255 bytes before any digest.
fn docker_reference(reference: &str) -> bool {
    let name = reference.split('@').next().unwrap_or(reference);
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with(['-', '/', ':'])
        && !reference
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
}

fn env_var(field: &str, key: &str, value: &str) -> Result<(), (String, String)> {
    if key.is_empty() || key.contains('=') || key.contains('\0') {
        return Err((
            field.to_owned(),
            format!("invalid variable name {key:?}: expected a name without = or NUL"),
        ));
    }
    if value.contains('\0') {
        return Err((
            field.to_owned(),
            format!("the value of {key:?} holds a NUL byte"),
        ));
    }
    Ok(())
}

/// Checks a health-check path as ALB does: starts with `/`, at most 1,024 characters, no
/// whitespace or control characters, and a valid URI path (and query).
pub fn health_check_path(path: &str) -> Result<(), &'static str> {
    if !path.starts_with('/') {
        return Err("expected a path starting with /");
    }
    if path.len() > 1024 {
        return Err("expected a path of at most 1024 characters");
    }
    if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("expected a path without whitespace or control characters");
    }
    // RFC 3986 path and query characters; anything else must be percent-encoded.
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&b);
    let bytes = path.as_bytes();
    let escapes_ok = bytes.iter().enumerate().all(|(i, &b)| {
        b != b'%'
            || bytes
                .get(i + 1..i + 3)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
    });
    if !bytes.iter().all(|&b| allowed(b)) || !escapes_ok {
        return Err("expected a valid URI path (e.g. /health; percent-encode other characters)");
    }
    match path.parse::<http::uri::PathAndQuery>() {
        Ok(pq) if pq.as_str() == path => Ok(()),
        _ => Err("expected a valid URI path (e.g. /health)"),
    }
}

fn unique<'a>(names: impl Iterator<Item = &'a str>, at: &str) -> Result<(), (String, String)> {
    let mut seen = BTreeSet::new();
    for name in names {
        if !seen.insert(name) {
            return Err((at.to_owned(), format!("duplicate name {name:?}")));
        }
    }
    Ok(())
}

/// The group's lifecycle hooks: transition, heartbeat timeout, default result.
fn validate_lifecycle_hooks(asg: &AutoScalingGroupConfig) -> Result<(), (String, String)> {
    let err = |field: String, message: &str| Err((field, message.to_owned()));
    let at = "auto_scaling_group";
    for (i, h) in asg.lifecycle_hooks.iter().enumerate() {
        let at = format!("{at}.lifecycle_hooks[{i}]");
        if !matches!(
            h.transition.as_str(),
            "autoscaling:EC2_INSTANCE_TERMINATING" | "autoscaling:EC2_INSTANCE_LAUNCHING"
        ) {
            return err(
                format!("{at}.transition"),
                "expected autoscaling:EC2_INSTANCE_TERMINATING or autoscaling:EC2_INSTANCE_LAUNCHING",
            );
        }
        if !(30..=7200).contains(&h.heartbeat_timeout) {
            return err(
                format!("{at}.heartbeat_timeout"),
                "expected 30 to 7200 seconds",
            );
        }
        if !matches!(h.default_result.as_str(), "CONTINUE" | "ABANDON") {
            return err(
                format!("{at}.default_result"),
                "expected CONTINUE or ABANDON",
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A task of several containers: up to ten, names unique, one essential at least, no host
    /// port held twice; the load balancer reaches the container it names.
    #[test]
    fn a_task_of_several_containers_is_checked_as_ecs_checks_it() {
        let mut s = Stack::embedded().unwrap();
        let web = s.task_definitions[0].container_definitions[0].clone();
        let sidecar = ContainerDefinition {
            name: "sidecar".into(),
            essential: Some(false),
            port_mappings: Vec::new(),
            health_check: None,
            ..web.clone()
        };
        s.task_definitions[0]
            .container_definitions
            .insert(0, sidecar.clone());
        assert_eq!(s.validate(), Ok(()));
        let td = &s.task_definitions[0];
        assert_eq!(td.serving_container(None).unwrap().name, web.name);
        assert_eq!(
            td.serving_container(Some("sidecar")).unwrap().name,
            "sidecar"
        );
        assert_eq!(
            td.serving_container(Some("nope")).unwrap().name,
            web.name,
            "an unknown name falls back to the first container with a port"
        );

        let mut twice = s.clone();
        twice.task_definitions[0].container_definitions[0].name = web.name;
        let (field, message) = twice.validate().unwrap_err();
        assert_eq!(field, "task_definitions[0].containerDefinitions[1].name");
        assert!(message.contains("used twice"), "{message}");

        let mut none_essential = s.clone();
        for c in &mut none_essential.task_definitions[0].container_definitions {
            c.essential = Some(false);
        }
        let (field, message) = none_essential.validate().unwrap_err();
        assert_eq!(field, "task_definitions[0].containerDefinitions");
        assert!(message.contains("essential"), "{message}");

        let mut port = s.clone();
        for c in &mut port.task_definitions[0].container_definitions {
            c.port_mappings = vec![PortMapping {
                container_port: 8080,
                host_port: Some(9000),
                protocol: None,
            }];
        }
        let (_, message) = port.validate().unwrap_err();
        assert!(
            message.contains("host port 9000 is mapped twice"),
            "{message}"
        );
        assert_eq!(
            port.task_definitions[0].static_host_ports(),
            vec![9000, 9000]
        );

        let mut slash = s.clone();
        slash.task_definitions[0].container_definitions[0].name = "log/router".into();
        let (field, message) = slash.validate().unwrap_err();
        assert_eq!(field, "task_definitions[0].containerDefinitions[0].name");
        assert!(message.contains("underscores and hyphens"), "{message}");

        let mut eleven = s.clone();
        eleven.task_definitions[0].container_definitions = (0..11)
            .map(|i| ContainerDefinition {
                name: format!("c{i}"),
                ..sidecar.clone()
            })
            .collect();
        eleven.task_definitions[0].container_definitions[0].essential = None;
        let (field, message) = eleven.validate().unwrap_err();
        assert_eq!(field, "task_definitions[0].containerDefinitions");
        assert!(message.contains("1 to 10"), "{message}");
    }

    #[test]
    fn embedded_default_is_valid_and_complete() {
        let s = Stack::embedded().unwrap();
        assert!(
            s.time_scale > 1.0,
            "the default stack runs simulated time faster"
        );
        assert!(s.images.contains_key("server"));
        assert!(s.target_groups.len() >= 2, "blue and green");
        let lb = &s.load_balancers[0];
        let names: Vec<_> = lb.listeners.iter().map(|l| l.name.as_str()).collect();
        assert!(
            names.contains(&"production") && names.contains(&"test"),
            "{names:?}"
        );
        let c = &s.task_definitions[0].container_definitions[0];
        assert_eq!(
            c.port_mappings[0].host_port.unwrap_or(0),
            0,
            "dynamic host port"
        );
        assert!(!s.services.is_empty());
    }

    fn invalid(text: &str) -> String {
        Stack::parse(text, "t.toml").unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_field() {
        let base = |tg: &str| {
            format!(
                "[[target_groups]]\nname = \"a\"\n{tg}\n[[load_balancers]]\nname = \"lb\"\n\
                 [[load_balancers.listeners]]\nname = \"p\"\nforward = [{{ target_group = \"a\" }}]\n"
            )
        };
        assert!(Stack::parse(&base(""), "t").is_ok());
        let e = invalid(&base("health_check = { interval = 1 }"));
        assert!(e.contains("target_groups[0].health_check.interval"), "{e}");
        let e = invalid(&base("health_check = { interval = 10, timeout = 10 }"));
        assert!(e.contains("health_check.timeout"), "{e}");
        let e = invalid(&base("health_check = { matcher = \"abc\" }"));
        assert!(e.contains("health_check.matcher"), "{e}");
        let e = invalid(&base("deregistration_delay = 4000"));
        assert!(e.contains("deregistration_delay"), "{e}");
        let e = invalid(&base("colour = \"blue\""));
        assert!(e.contains("colour") && e.contains("t.toml"), "{e}");
        let e = invalid(
            "[[target_groups]]\nname = \"a\"\n[[load_balancers]]\nname = \"lb\"\n\
             [[load_balancers.listeners]]\nname = \"p\"\nforward = [{ target_group = \"b\" }]\n",
        );
        assert!(
            e.contains("load_balancers[0].listeners[0].forward[0].target_group"),
            "{e}"
        );
        let e = invalid(
            "[[target_groups]]\nname = \"a\"\n[[load_balancers]]\nname = \"lb\"\naddress = \"10.0.0.1\"\n\
             [[load_balancers.listeners]]\nname = \"p\"\nforward = [{ target_group = \"a\" }]\n",
        );
        assert!(e.contains("address") && e.contains("loopback"), "{e}");
        let listener = |protocol: &str| {
            format!(
                "[[target_groups]]\nname = \"a\"\n[[load_balancers]]\nname = \"lb\"\n\
                 [[load_balancers.listeners]]\nname = \"p\"\nprotocol = \"{protocol}\"\n\
                 forward = [{{ target_group = \"a\" }}]\n"
            )
        };
        let https = Stack::parse(&listener("HTTPS"), "t").unwrap();
        assert!(https.load_balancers[0].listeners[0].is_https());
        assert!(!Stack::parse(&base(""), "t").unwrap().load_balancers[0].listeners[0].is_https());
        let e = invalid(&listener("https"));
        assert!(
            e.contains("load_balancers[0].listeners[0].protocol") && e.contains("HTTP or HTTPS"),
            "{e}"
        );
        let e = invalid("time_scale = 0");
        assert!(e.contains("time_scale"), "{e}");
    }

    /// A valid stack with one image, task definition, target group and listener, in which
    /// `from` is replaced by `to` (exactly once).
    fn with(from: &str, to: &str) -> Result<Stack, StackError> {
        let text = r#"
            [cluster]
            name = "demo"
            [images.app]
            command = "/bin/true"
            args = ["-x"]
            environment = { GOOD = "1" }
            [[task_definitions]]
            family = "web"
            [[task_definitions.containerDefinitions]]
            name = "web"
            image = "app"
            portMappings = [{ containerPort = 8080 }]
            environment = [{ name = "APP_VERSION", value = "v2" }]
            [[target_groups]]
            name = "blue"
            health_check = { path = "/ready" }
            [[load_balancers]]
            name = "lb"
            [[load_balancers.listeners]]
            name = "production"
            forward = [{ target_group = "blue" }]
            [[services]]
            name = "svc"
            task_definition = "web"
            desired_count = 1
        "#;
        if from.is_empty() {
            return Stack::parse(text, "t.toml");
        }
        assert_eq!(text.matches(from).count(), 1, "{from:?} must occur once");
        Stack::parse(&text.replace(from, to), "t.toml")
    }

    #[test]
    #[expect(clippy::too_many_lines, reason = "a table of bad inputs, one row each")]
    fn bad_names_paths_and_environments_are_refused_with_the_field() {
        assert!(with("", "").is_ok());
        let cases: &[(&str, &str, &str)] = &[
            // Empty or unprintable names.
            (r#"name = "demo""#, r#"name = """#, "cluster.name"),
            (r#"name = "blue""#, r#"name = """#, "target_groups[0].name"),
            (r#"name = "lb""#, r#"name = """#, "load_balancers[0].name"),
            (
                r#"name = "production""#,
                r#"name = """#,
                "load_balancers[0].listeners[0].name",
            ),
            (
                r#"name = "production""#,
                r#"name = "prod uction""#,
                "load_balancers[0].listeners[0].name",
            ),
            (r#"name = "svc""#, r#"name = "\u0007""#, "services[0].name"),
            (
                r#"name = "web""#,
                r#"name = """#,
                "task_definitions[0].containerDefinitions[0].name",
            ),
            // Health-check paths that are not HTTP paths.
            (
                r#"path = "/ready""#,
                r#"path = "ready""#,
                "health_check.path",
            ),
            (
                r#"path = "/ready""#,
                r#"path = "/re ady""#,
                "health_check.path",
            ),
            (
                r#"path = "/ready""#,
                r#"path = "/re\nady""#,
                "health_check.path",
            ),
            (
                r#"path = "/ready""#,
                r#"path = "/re\u0000""#,
                "health_check.path",
            ),
            (r#"path = "/ready""#, r#"path = "/é""#, "health_check.path"),
            (
                r#"path = "/ready""#,
                r#"path = "/a#b""#,
                "health_check.path",
            ),
            (r#"path = "/ready""#, r#"path = "/<>""#, "health_check.path"),
            // Environment keys the OS cannot pass.
            (
                r#"environment = { GOOD = "1" }"#,
                r#"environment = { "" = "1" }"#,
                "images.app.environment",
            ),
            (
                r#"environment = { GOOD = "1" }"#,
                r#"environment = { "A=B" = "1" }"#,
                "images.app.environment",
            ),
            (
                r#"environment = { GOOD = "1" }"#,
                r#"environment = { "A\u0000" = "1" }"#,
                "images.app.environment",
            ),
            (
                r#"environment = { GOOD = "1" }"#,
                r#"environment = { GOOD = "\u0000" }"#,
                "images.app.environment",
            ),
            (
                r#"name = "APP_VERSION""#,
                r#"name = "A\u0000""#,
                "containerDefinitions[0].environment[0].name",
            ),
            (
                r#"value = "v2""#,
                r#"value = "v\u0000""#,
                "containerDefinitions[0].environment[0].name",
            ),
            // Programs and arguments the OS cannot pass.
            (
                r#"command = "/bin/true""#,
                r#"command = "/bin\u0000""#,
                "images.app.command",
            ),
            (
                r#"args = ["-x"]"#,
                r#"args = ["\u0000"]"#,
                "images.app.args[0]",
            ),
            (r#"[images.app]"#, r#"[images.""]"#, "images"),
            (
                r#"command = "/bin/true""#,
                r#"command = "/bin/true"
            docker = "my/web:1""#,
                "not both",
            ),
            (
                r#"command = "/bin/true""#,
                r#"docker = "my web""#,
                "images.app.docker",
            ),
            (
                r#"command = "/bin/true""#,
                r#"docker = "-x""#,
                "images.app.docker",
            ),
            (
                r#"family = "web""#,
                r#"family = "w eb""#,
                "task_definitions[0].family",
            ),
        ];
        for (from, to, field) in cases {
            let e = with(from, to)
                .expect_err(&format!("{to:?} was accepted"))
                .to_string();
            assert!(e.contains(field) && e.contains("t.toml"), "{to:?}: {e}");
        }
        // Valid paths with a query are accepted (ALB sends them as written).
        for ok in ["/", "/health?deep=1", "/a/b-c_d.e~f/%20"] {
            assert!(
                with(r#"path = "/ready""#, &format!("path = {ok:?}")).is_ok(),
                "{ok}"
            );
        }
    }

    #[test]
    fn an_image_is_a_program_or_a_docker_image() {
        let docker = with(
            r#"command = "/bin/true""#,
            r#"docker = "ecs-zdt/server:dev""#,
        )
        .unwrap();
        let app = &docker.images["app"];
        assert_eq!(app.docker.as_deref(), Some("ecs-zdt/server:dev"));
        assert!(app.command.is_empty());
        let words = |s: &str| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
        let flag = Image::from_flag(&words("docker:my/web:1.2"));
        assert_eq!(flag.docker.as_deref(), Some("my/web:1.2"));
        assert!(flag.command.is_empty() && flag.args.is_empty());
        let flag = Image::from_flag(&words("/usr/bin/web --port 1"));
        assert_eq!(flag.docker, None);
        assert_eq!(flag.command, "/usr/bin/web");
        assert_eq!(flag.args, ["--port", "1"]);
        // A program image prints as before: no `docker` key.
        let text = toml::to_string(&with("-x", "-y").unwrap()).unwrap();
        assert!(!text.contains("docker"), "{text}");
    }

    #[test]
    fn attached_target_groups_must_exist_and_have_a_port() {
        let mut s = Stack::embedded().unwrap();
        assert!(
            s.auto_scaling_group
                .as_ref()
                .unwrap()
                .target_groups
                .is_empty(),
            "the default stack attaches no target group"
        );
        let attach = |s: &mut Stack, names: &[&str]| {
            s.auto_scaling_group.as_mut().unwrap().target_groups =
                names.iter().map(|n| (*n).to_owned()).collect();
        };
        attach(&mut s, &["demo-tg-agent"]);
        let (field, message) = s.validate().unwrap_err();
        assert_eq!(field, "auto_scaling_group.target_groups[0]");
        assert!(message.contains("no target group"), "{message}");
        s.target_groups.push(TargetGroupConfig {
            name: "demo-tg-agent".into(),
            deregistration_delay: 5,
            health_check: HealthCheckConfig {
                path: "/v1/metadata".into(),
                ..HealthCheckConfig::default()
            },
            port: None,
        });
        let (field, message) = s.validate().unwrap_err();
        assert_eq!(field, "auto_scaling_group.target_groups[0]");
        assert!(message.contains("has no port"), "{message}");
        s.target_groups[2].port = Some(0);
        let (field, _) = s.validate().unwrap_err();
        assert_eq!(field, "target_groups[2].port");
        s.target_groups[2].port = Some(51678);
        assert_eq!(s.validate(), Ok(()));
        attach(&mut s, &["demo-tg-agent", "demo-tg-agent"]);
        let (field, _) = s.validate().unwrap_err();
        assert_eq!(field, "auto_scaling_group.target_groups");
        // From TOML, as a stack file writes it.
        attach(&mut s, &["demo-tg-agent"]);
        let text = toml::to_string(&s).unwrap();
        assert_eq!(Stack::parse(&text, "t").unwrap(), s);
    }

    #[test]
    fn task_definitions_use_ecs_names() {
        let text = r#"
            [images.app]
            command = "/bin/true"
            [[task_definitions]]
            family = "web"
            [[task_definitions.containerDefinitions]]
            name = "web"
            image = "app"
            stopTimeout = 20
            portMappings = [{ containerPort = 8080, hostPort = 0 }]
            environment = [{ name = "APP_VERSION", value = "v2" }]
        "#;
        let s = Stack::parse(text, "t").unwrap();
        let c = &s.task_definitions[0].container_definitions[0];
        assert_eq!(c.stop_timeout, Some(20));
        assert_eq!(c.environment[0].value, "v2");
        let e = invalid(&text.replace("image = \"app\"", "image = \"nope\""));
        assert!(
            e.contains("containerDefinitions[0].image") && e.contains("app"),
            "{e}"
        );
    }
}

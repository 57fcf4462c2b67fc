//! EC2: launch templates (numbered versions, `$Latest` and `$Default`) and the instances Auto
//! Scaling launches from them, with their lifecycle and health. ECS and Auto Scaling both read
//! instances; they live here, below both.

use std::fmt;
use std::time::SystemTime;

use tokio::time::Instant;

use super::{Control, ControlError, State, hex_id, wall};
use stack::{LaunchTemplateData, Stack};

/// A launch template.
#[derive(Debug, Clone)]
pub struct LaunchTemplate {
    /// `lt-` and 17 hex digits.
    pub id: String,
    /// Name.
    pub name: String,
    /// Versions; version `n` is `versions[n - 1]`.
    pub versions: Vec<LaunchTemplateVersion>,
    /// The `$Default` version number.
    pub default_version: u32,
    /// Creation time.
    pub created: SystemTime,
}

/// One version of a launch template.
#[derive(Debug, Clone)]
pub struct LaunchTemplateVersion {
    /// Version number, from 1.
    pub number: u32,
    /// Launch data.
    pub data: LaunchTemplateData,
    /// Description given at creation.
    pub description: Option<String>,
    /// Creation time.
    pub created: SystemTime,
}

impl LaunchTemplate {
    /// The `$Latest` version number.
    pub fn latest(&self) -> u32 {
        u32::try_from(self.versions.len()).unwrap_or(u32::MAX)
    }

    /// Resolves `1`, `$Latest` or `$Default` to a version number that exists.
    pub fn resolve(&self, version: &str) -> Option<u32> {
        let n = match version {
            "$Latest" => self.latest(),
            "$Default" => self.default_version,
            v => v.parse().ok()?,
        };
        (1..=self.latest()).contains(&n).then_some(n)
    }

    /// Version `n`.
    pub fn version(&self, n: u32) -> Option<&LaunchTemplateVersion> {
        let i = usize::try_from(n).ok()?.checked_sub(1)?;
        self.versions.get(i)
    }
}

pub(super) fn load(state: &mut State, stack: &Stack) {
    for lt in &stack.launch_templates {
        let created = wall();
        let versions = lt
            .versions
            .iter()
            .zip(1..)
            .map(|(data, number)| LaunchTemplateVersion {
                number,
                data: data.clone(),
                description: None,
                created,
            })
            .collect();
        state.launch_templates.insert(
            lt.name.clone(),
            LaunchTemplate {
                id: format!("lt-{}", hex_id(17)),
                name: lt.name.clone(),
                versions,
                default_version: lt.default_version,
                created,
            },
        );
    }
}

/// Which launch template a call names: by name or by id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateRef {
    /// `LaunchTemplateName`.
    Name(String),
    /// `LaunchTemplateId`.
    Id(String),
}

impl State {
    /// The launch template named or identified by `r`.
    pub fn launch_template(&self, r: &TemplateRef) -> Result<&LaunchTemplate, ControlError> {
        let found = match r {
            TemplateRef::Name(n) => self.launch_templates.get(n),
            TemplateRef::Id(id) => self.launch_templates.values().find(|t| &t.id == id),
        };
        found.ok_or_else(|| {
            let name = match r {
                TemplateRef::Name(n) | TemplateRef::Id(n) => n.clone(),
            };
            ControlError::not_found("launch template", name)
        })
    }
}

/// What `CreateLaunchTemplateVersion` may change; unset fields come from the source version.
#[derive(Debug, Clone, Default)]
pub struct NewVersion {
    /// Version to copy (default `$Latest`... AWS copies nothing without `SourceVersion`; here
    /// the image id is required then).
    pub source_version: Option<String>,
    /// New AMI.
    pub image_id: Option<String>,
    /// New instance type.
    pub instance_type: Option<String>,
    /// `VersionDescription`.
    pub description: Option<String>,
}

impl Control {
    /// `CreateLaunchTemplateVersion`: appends a version and returns it.
    pub fn create_launch_template_version(
        &self,
        template: &TemplateRef,
        new: NewVersion,
    ) -> Result<(LaunchTemplate, LaunchTemplateVersion), ControlError> {
        self.write(|st, _| {
            let name = st.launch_template(template)?.name.clone();
            let lt = st
                .launch_templates
                .get_mut(&name)
                .ok_or_else(|| ControlError::not_found("launch template", name.clone()))?;
            let base = match &new.source_version {
                Some(v) => {
                    let n = lt.resolve(v).ok_or_else(|| {
                        ControlError::Validation(format!(
                            "source version {v} does not exist for launch template {name}"
                        ))
                    })?;
                    lt.version(n).map(|v| v.data.clone())
                }
                None => None,
            };
            let image_id = match (new.image_id, &base) {
                (Some(id), _) => id,
                (None, Some(b)) => b.image_id.clone(),
                (None, None) => {
                    return Err(ControlError::Validation(
                        "LaunchTemplateData.ImageId is required without SourceVersion".into(),
                    ));
                }
            };
            if !image_id.starts_with("ami-") {
                return Err(ControlError::Validation(format!(
                    "invalid AMI id {image_id:?}: expected ami-..."
                )));
            }
            let instance_type = new
                .instance_type
                .or_else(|| base.as_ref().map(|b| b.instance_type.clone()))
                .unwrap_or_else(|| "t3.small".into());
            let version = LaunchTemplateVersion {
                number: lt.latest() + 1,
                data: LaunchTemplateData {
                    image_id,
                    instance_type,
                },
                description: new.description,
                created: wall(),
            };
            lt.versions.push(version.clone());
            Ok((lt.clone(), version))
        })
    }
}

/// An instance's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    /// Booting.
    Pending,
    /// Running.
    InService,
    /// Termination started.
    Terminating,
    /// Held by a terminating lifecycle hook.
    TerminatingWait,
    /// The hook completed; termination goes on.
    TerminatingProceed,
    /// Gone.
    Terminated,
}

impl fmt::Display for Lifecycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Pending => "Pending",
            Self::InService => "InService",
            Self::Terminating => "Terminating",
            Self::TerminatingWait => "Terminating:Wait",
            Self::TerminatingProceed => "Terminating:Proceed",
            Self::Terminated => "Terminated",
        })
    }
}

impl Lifecycle {
    /// Pending or in service: counts toward capacity.
    pub fn is_live(self) -> bool {
        matches!(self, Self::Pending | Self::InService)
    }

    /// On its way out.
    pub fn is_terminating(self) -> bool {
        matches!(
            self,
            Self::Terminating | Self::TerminatingWait | Self::TerminatingProceed
        )
    }
}

/// An instance's health status as Auto Scaling sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceHealth {
    /// `Healthy`.
    Healthy,
    /// `Unhealthy`: failed status checks.
    Unhealthy,
}

impl fmt::Display for InstanceHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Healthy => "Healthy",
            Self::Unhealthy => "Unhealthy",
        })
    }
}

/// An EC2 instance.
#[derive(Debug, Clone)]
pub struct Ec2Instance {
    /// `i-` and 17 hex digits.
    pub id: String,
    /// Its loopback address.
    pub ip: std::net::IpAddr,
    /// Launch template name and the version number it was launched from.
    pub launch_template: Option<(String, u32)>,
    /// AMI.
    pub image_id: String,
    /// Instance type.
    pub instance_type: String,
    /// Availability zone (informational).
    pub zone: &'static str,
    /// Lifecycle state.
    pub lifecycle: Lifecycle,
    /// Health status.
    pub health: InstanceHealth,
    /// Launched (real instant, and wall clock).
    pub launched: Instant,
    /// Launch time for the API.
    pub launch_time: SystemTime,
    /// When it went `InService`.
    pub in_service: Option<Instant>,
    /// Protected from scale-in.
    pub protected: bool,
    /// While held by a terminating hook: until when, and which hooks are still pending.
    pub hook_wait: Option<HookWait>,
    /// Whether the ECS agent will register this instance (an injected fault can say no).
    pub agent_registers: bool,
    /// Simulated seconds from `InService` until the ECS agent registers.
    pub agent_start: u32,
    /// Simulated seconds from launch to `InService`.
    pub boot: u32,
    /// Whether EC2 status checks pass once it runs.
    pub status_checks_pass: bool,
    /// Why it is `Unhealthy` (`autoscaling::EC2_HEALTH_CAUSE` or `ELB_HEALTH_CAUSE`): the cause
    /// its replacement gives.
    pub unhealthy_cause: Option<&'static str>,
}

/// A terminating instance held by lifecycle hooks.
#[derive(Debug, Clone)]
pub struct HookWait {
    /// Hooks not completed yet: name, deadline (real), result at the deadline.
    pub pending: Vec<(String, Instant, String)>,
    /// Whether a hook completed with `ABANDON` (the instance terminates either way).
    pub abandoned: bool,
}

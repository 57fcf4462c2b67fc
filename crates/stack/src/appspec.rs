//! CodeDeploy's AppSpec for an ECS service (YAML; JSON is YAML too), read by one parser for its
//! two readers:
//!
//! - [`AppSpecFile::read`] takes the file as written: each part found where it is, with its line,
//!   and absent when it is not there. `orchestrate preflight` reads it so, to report each problem
//!   at its line (a template's `{{PLACEHOLDERS}}` are text like any other).
//! - [`AppSpec::parse`] takes it as CodeDeploy does, or refuses it saying why: `localaws`'s
//!   `CreateDeployment` reads it so (`InvalidRevisionException`).
//!
//! The ECS service is the resource whose `Type` is `AWS::ECS::Service` (AWS's examples call it
//! `TargetService`; the name is not what CodeDeploy looks for).

use std::fmt;

use serde_yaml_ng::Value;

/// An ECS deployment's lifecycle events (`lifecycleEventName`), in CodeDeploy's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LifecycleEventName {
    /// Hookable; before the replacement task set exists.
    BeforeInstall,
    /// The replacement task set created and made healthy.
    Install,
    /// Hookable.
    AfterInstall,
    /// The test listener to the replacement.
    AllowTestTraffic,
    /// Hookable: where a validation hook tests the replacement through the test listener.
    AfterAllowTestTraffic,
    /// Hookable.
    BeforeAllowTraffic,
    /// Production traffic moved, step by step.
    AllowTraffic,
    /// Hookable.
    AfterAllowTraffic,
}

impl LifecycleEventName {
    /// Every event, in order.
    pub const ALL: [Self; 8] = [
        Self::BeforeInstall,
        Self::Install,
        Self::AfterInstall,
        Self::AllowTestTraffic,
        Self::AfterAllowTestTraffic,
        Self::BeforeAllowTraffic,
        Self::AllowTraffic,
        Self::AfterAllowTraffic,
    ];

    /// As CodeDeploy writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BeforeInstall => "BeforeInstall",
            Self::Install => "Install",
            Self::AfterInstall => "AfterInstall",
            Self::AllowTestTraffic => "AllowTestTraffic",
            Self::AfterAllowTestTraffic => "AfterAllowTestTraffic",
            Self::BeforeAllowTraffic => "BeforeAllowTraffic",
            Self::AllowTraffic => "AllowTraffic",
            Self::AfterAllowTraffic => "AfterAllowTraffic",
        }
    }

    /// Whether an AppSpec may hook it: not the three events CodeDeploy runs itself.
    pub fn is_hookable(self) -> bool {
        !matches!(
            self,
            Self::Install | Self::AllowTestTraffic | Self::AllowTraffic
        )
    }

    /// The hookable event called `name`.
    pub fn hookable(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|e| e.is_hookable() && e.as_str() == name)
    }

    /// The event after this one.
    pub fn next(self) -> Option<Self> {
        Self::ALL.into_iter().find(|e| *e > self)
    }
}

impl fmt::Display for LifecycleEventName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A part of the file and the line it is on (1-based: the first line that names it, 1 when none
/// does, as in a one-line JSON document).
#[derive(Debug, Clone, PartialEq)]
pub struct Located<T> {
    /// What is written.
    pub value: T,
    /// Where.
    pub line: usize,
}

/// An AppSpec as written.
#[derive(Debug, Clone, PartialEq)]
pub struct AppSpecFile {
    /// `Properties.TaskDefinition`, when it is a string.
    pub task_definition: Option<Located<String>>,
    /// `LoadBalancerInfo.ContainerName`, when it is a string.
    pub container_name: Option<Located<String>>,
    /// `LoadBalancerInfo.ContainerPort`, a number or a string of one; not checked to be a port.
    pub container_port: Option<Located<f64>>,
    /// `Hooks`: each event as written with its function, in order.
    pub hooks: Vec<(String, String)>,
    /// The line of `Hooks` (1 when there is none).
    pub hooks_line: usize,
    /// What is wrong with `Hooks`' shape, when something is: not a list, or an entry that is not
    /// `Event: function`.
    pub hooks_shape: Option<String>,
}

/// What `CreateDeployment` takes from an AppSpec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSpec {
    /// `Properties.TaskDefinition`.
    pub task_definition: String,
    /// `LoadBalancerInfo.ContainerName`.
    pub container_name: String,
    /// `LoadBalancerInfo.ContainerPort`.
    pub container_port: u16,
    /// `Hooks`: event → function name, each event once.
    pub hooks: Vec<(LifecycleEventName, String)>,
}

/// The first line that contains `needle`, or 1.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .map_or(1, |i| i + 1)
}

impl AppSpecFile {
    /// Reads an AppSpec's text. Refuses only what leaves nothing to read: text that is not YAML,
    /// no `Resources` list, no ECS service among them.
    pub fn read(text: &str) -> Result<Self, String> {
        let doc: Value = serde_yaml_ng::from_str(text)
            .map_err(|e| format!("the AppSpec is not valid YAML or JSON: {e}"))?;
        let resources = doc
            .get("Resources")
            .and_then(Value::as_sequence)
            .ok_or("the AppSpec has no Resources list")?;
        let service = resources
            .iter()
            .filter_map(Value::as_mapping)
            .flat_map(|m| m.values())
            .find(|r| r.get("Type").and_then(Value::as_str) == Some("AWS::ECS::Service"))
            .ok_or("the AppSpec's Resources name no AWS::ECS::Service")?;
        let props = service.get("Properties");
        let lb = props.and_then(|p| p.get("LoadBalancerInfo"));
        let string = |v: Option<&Value>, key: &str| {
            v.and_then(|v| v.get(key))
                .and_then(Value::as_str)
                .map(|s| Located {
                    value: s.to_owned(),
                    line: line_of(text, key),
                })
        };
        let container_port = lb
            .and_then(|l| l.get("ContainerPort"))
            .and_then(|v| v.as_f64().or_else(|| v.as_str()?.trim().parse().ok()))
            .map(|value| Located {
                value,
                line: line_of(text, "ContainerPort"),
            });
        let mut hooks = Vec::new();
        let mut hooks_shape = None;
        match doc.get("Hooks") {
            None => {}
            Some(Value::Sequence(list)) => {
                for entry in list {
                    let pairs = entry.as_mapping().map(|m| {
                        m.iter()
                            .map(|(k, f)| Some((k.as_str()?.to_owned(), f.as_str()?.to_owned())))
                            .collect::<Option<Vec<_>>>()
                    });
                    match pairs {
                        Some(Some(pairs)) => hooks.extend(pairs),
                        _ => {
                            if hooks_shape.is_none() {
                                hooks_shape =
                                    Some("each hook must be `Event: function`".to_owned());
                            }
                        }
                    }
                }
            }
            Some(_) => hooks_shape = Some("Hooks must be a list".to_owned()),
        }
        Ok(Self {
            task_definition: string(props, "TaskDefinition"),
            container_name: string(lb, "ContainerName"),
            container_port,
            hooks,
            hooks_line: line_of(text, "Hooks"),
            hooks_shape,
        })
    }

    /// The AppSpec as CodeDeploy takes it, or what it refuses first.
    pub fn strict(self) -> Result<AppSpec, String> {
        let task_definition = self
            .task_definition
            .map(|t| t.value)
            .filter(|t| !t.is_empty())
            .ok_or("Properties.TaskDefinition is required")?;
        let container_name = self
            .container_name
            .map(|c| c.value)
            .ok_or("LoadBalancerInfo.ContainerName is required")?;
        let container_port = self
            .container_port
            .map(|p| p.value)
            .filter(|p| p.fract() == 0.0 && (1.0..=65535.0).contains(p))
            .and_then(|p| format!("{p:.0}").parse::<u16>().ok())
            .ok_or("LoadBalancerInfo.ContainerPort must be a port number")?;
        if let Some(shape) = self.hooks_shape {
            return Err(shape);
        }
        let mut hooks = Vec::new();
        for (event, function) in self.hooks {
            let Some(e) = LifecycleEventName::hookable(&event) else {
                let hookable: Vec<&str> = LifecycleEventName::ALL
                    .into_iter()
                    .filter(|e| e.is_hookable())
                    .map(LifecycleEventName::as_str)
                    .collect();
                return Err(format!(
                    "unknown hook event {event:?}: expected one of {}",
                    hookable.join(", ")
                ));
            };
            if hooks.iter().any(|(x, _)| *x == e) {
                return Err(format!("hook event {event} is listed twice"));
            }
            hooks.push((e, function));
        }
        Ok(AppSpec {
            task_definition,
            container_name,
            container_port,
            hooks,
        })
    }
}

impl AppSpec {
    /// Parses an AppSpec as CodeDeploy takes it.
    pub fn parse(text: &str) -> Result<Self, String> {
        AppSpecFile::read(text)?.strict()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = "version: 0.0\nResources:\n  - TargetService:\n      Type: AWS::ECS::Service\n      Properties:\n        TaskDefinition: \"arn:aws:ecs:us-east-1:000000000000:task-definition/demo-web:2\"\n        LoadBalancerInfo:\n          ContainerName: \"web\"\n          ContainerPort: 8080\nHooks:\n  - AfterAllowTestTraffic: \"validate\"\n";

    #[test]
    fn appspec_yaml_and_json() {
        let a = AppSpec::parse(YAML).unwrap();
        assert_eq!(a.container_port, 8080);
        assert_eq!(
            a.hooks,
            vec![(LifecycleEventName::AfterAllowTestTraffic, "validate".into())]
        );
        let json = r#"{"version":0.0,"Resources":[{"TargetService":{"Type":"AWS::ECS::Service","Properties":{"TaskDefinition":"demo-web:2","LoadBalancerInfo":{"ContainerName":"web","ContainerPort":"8080"}}}}]}"#;
        assert_eq!(AppSpec::parse(json).unwrap().task_definition, "demo-web:2");
        for bad in [
            "",
            "Resources: 3",
            "Resources:\n  - X:\n      Type: AWS::Lambda::Function\n",
            "Resources:\n  - X:\n      Type: AWS::ECS::Service\n      Properties:\n        TaskDefinition: t\n        LoadBalancerInfo: {ContainerName: web, ContainerPort: 0}\n",
            "Resources:\n  - X:\n      Type: AWS::ECS::Service\n      Properties:\n        TaskDefinition: t\n        LoadBalancerInfo: {ContainerName: web, ContainerPort: 80}\nHooks:\n  - Install: f\n",
        ] {
            assert!(AppSpec::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    /// The file as written: every part with its line; what CodeDeploy refuses is still read,
    /// and refused only when asked strictly, each with its own words.
    #[test]
    fn the_file_as_written_keeps_lines_and_what_strict_refuses() {
        let f = AppSpecFile::read(YAML).unwrap();
        assert_eq!(
            f.container_name,
            Some(Located {
                value: "web".to_owned(),
                line: 8
            })
        );
        assert_eq!(
            f.container_port.map(|p| (p.value, p.line)),
            Some((8080.0, 9))
        );
        assert_eq!(f.task_definition.map(|t| t.line), Some(6));
        assert_eq!(f.hooks_line, 10);
        let partial = "Resources:\n  - TargetService:\n      Type: AWS::ECS::Service\n      Properties:\n        TaskDefinition: \"{{TASK_DEFINITION_ARN}}\"\n        LoadBalancerInfo:\n          ContainerPort: 80.5\nHooks:\n  - Install: f\n  - AfterInstall: f\n  - AfterInstall: g\n";
        let f = AppSpecFile::read(partial).unwrap();
        assert_eq!(f.container_name, None);
        assert_eq!(f.container_port.as_ref().map(|p| p.value), Some(80.5));
        assert_eq!(f.hooks.len(), 3);
        assert_eq!(f.hooks_shape, None);
        assert_eq!(
            f.strict().unwrap_err(),
            "LoadBalancerInfo.ContainerName is required"
        );
        let named = partial.replace(
            "ContainerPort: 80.5",
            "ContainerName: web\n          ContainerPort: 80.5",
        );
        assert_eq!(
            AppSpec::parse(&named).unwrap_err(),
            "LoadBalancerInfo.ContainerPort must be a port number"
        );
        let port = named.replace("80.5", "80");
        assert!(
            AppSpec::parse(&port)
                .unwrap_err()
                .starts_with("unknown hook event \"Install\": expected one of BeforeInstall, AfterInstall, AfterAllowTestTraffic, BeforeAllowTraffic, AfterAllowTraffic"),
        );
        let twice = port.replace("  - Install: f\n", "");
        assert_eq!(
            AppSpec::parse(&twice).unwrap_err(),
            "hook event AfterInstall is listed twice"
        );
        let shape = port.replace("  - Install: f\n", "  - [f]\n");
        assert_eq!(
            AppSpecFile::read(&shape).unwrap().hooks_shape.as_deref(),
            Some("each hook must be `Event: function`")
        );
        assert_eq!(
            AppSpecFile::read(
                "Resources:\n  - TargetService:\n      Type: AWS::ECS::Service\nHooks: f\n"
            )
            .unwrap()
            .hooks_shape
            .as_deref(),
            Some("Hooks must be a list")
        );
    }

    #[test]
    fn lifecycle_events_in_order_and_which_may_be_hooked() {
        let names: Vec<&str> = LifecycleEventName::ALL
            .into_iter()
            .map(LifecycleEventName::as_str)
            .collect();
        assert_eq!(names.len(), 8);
        assert_eq!(
            LifecycleEventName::AfterAllowTestTraffic.next(),
            Some(LifecycleEventName::BeforeAllowTraffic)
        );
        assert_eq!(LifecycleEventName::AfterAllowTraffic.next(), None);
        assert_eq!(LifecycleEventName::hookable("Install"), None);
        assert_eq!(
            LifecycleEventName::hookable("AfterInstall"),
            Some(LifecycleEventName::AfterInstall)
        );
        assert_eq!(
            LifecycleEventName::ALL
                .into_iter()
                .filter(|e| e.is_hookable())
                .count(),
            5
        );
    }
}

//! What a blue/green scenario releases: the repository's own `codedeploy/` templates on the
//! embedded stack; on a derived one, the service's own task definition or `--task-definition`.

use std::path::Path;

use localaws::Stack;
use tfstack::derive::Assumption;

use super::{RehearseError, Setup};
use crate::deploy;

/// The release a blue/green scenario deploys: the repository's own `codedeploy/` templates
/// rendered for localaws (image `server`), with the rehearsal's drain timings; v3 is broken
/// (`PAGE_STATUS=500`: `/ready` passes, `/` fails); without validation the AppSpec has no hook.
pub(super) fn release_plan(broken: bool, validate: bool) -> Result<deploy::Plan, RehearseError> {
    const TASKDEF: &str = include_str!("../../../../codedeploy/taskdef.template.json");
    const APPSPEC: &str = include_str!("../../../../codedeploy/appspec.yaml");
    let version = if broken { "v3" } else { "v2" };
    let vars: std::collections::BTreeMap<String, String> = [
        ("IMAGE", "server"),
        ("APP_VERSION", version),
        (
            "EXECUTION_ROLE_ARN",
            "arn:aws:iam::000000000000:role/demo-exec",
        ),
        ("TASK_ROLE_ARN", "arn:aws:iam::000000000000:role/demo-task"),
        ("AWS_REGION", "us-east-1"),
        ("CAPACITY_PROVIDER", "demo-cluster-cp"),
        ("VALIDATION_HOOK", "validate"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let mut env: Vec<(String, String)> = [
        ("DRAIN_DELAY_SECONDS", "1"),
        ("SHUTDOWN_TIMEOUT_SECONDS", "5"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    if broken {
        env.push(("PAGE_STATUS".into(), "500".into()));
    }
    let bad = |e: String| RehearseError::Run(format!("codedeploy templates: {e}"));
    let mut td = deploy::render_task_definition(TASKDEF, &vars, &env).map_err(bad)?;
    let mut appspec = deploy::render_appspec(APPSPEC, &vars).map_err(bad)?;
    td["containerDefinitions"][0]["stopTimeout"] = serde_json::Value::from(10);
    if !validate && let Some(i) = appspec.find("\nHooks:") {
        appspec.truncate(i + 1);
    }
    Ok(deploy::Plan {
        application: "demo-cd-app".into(),
        group: "demo-dg".into(),
        config: None,
        task_definition: td,
        appspec,
        description: Some(format!("rehearsal release {version}")),
    })
}

/// The release a blue/green scenario deploys on a derived stack: the service's own task
/// definition (as the configuration writes it) at version v2, or v3 broken; an AppSpec naming
/// the service's container and port, with the validation hook when there is a test listener.
pub(super) fn derived_release_plan(
    setup: &Setup,
    broken: bool,
    validate: bool,
) -> Result<deploy::Plan, RehearseError> {
    let bad = |m: String| RehearseError::Run(format!("release: {m}"));
    let (app, group) = setup
        .deployment_group()
        .ok_or_else(|| bad("no deployment group".into()))?;
    let svc = setup
        .stack
        .services
        .iter()
        .find(|s| s.name == group.service)
        .ok_or_else(|| bad(format!("no service {:?}", group.service)))?;
    let td = setup
        .stack
        .task_definition(&svc.task_definition)
        .ok_or_else(|| bad(format!("no task definition {:?}", svc.task_definition)))?;
    let mut json = match setup.derived.as_ref().and_then(|d| d.release.clone()) {
        Some(release) => release,
        None => serde_json::to_value(td).map_err(|e| bad(e.to_string()))?,
    };
    let version = if broken { "v3" } else { "v2" };
    deploy::set_env(&mut json, "APP_VERSION", version).map_err(bad)?;
    if broken {
        deploy::set_env(&mut json, "PAGE_STATUS", "500").map_err(bad)?;
    }
    let (container, port) = svc
        .load_balancer
        .as_ref()
        .map(|l| (l.container_name.clone(), l.container_port))
        .ok_or_else(|| bad(format!("service {:?} has no load balancer", svc.name)))?;
    let mut appspec = format!(
        "version: 0.0\nResources:\n  - TargetService:\n      Type: AWS::ECS::Service\n      Properties:\n        TaskDefinition: \"{{{{TASK_DEFINITION_ARN}}}}\"\n        LoadBalancerInfo:\n          ContainerName: {container:?}\n          ContainerPort: {port}\n"
    );
    if validate {
        appspec.push_str("Hooks:\n  - AfterAllowTestTraffic: \"validate\"\n");
    }
    Ok(deploy::Plan {
        application: app.to_owned(),
        group: group.name.clone(),
        config: None,
        task_definition: json,
        appspec,
        description: Some(format!("rehearsal release {version}")),
    })
}

/// `--task-definition FILE` rendered for localaws: the placeholders a deploy fills in get the
/// rehearsal's values (`{{APP_VERSION}}` is set per release), any other placeholder
/// `"rehearsal"`, and each container runs the image the configuration's container of the same
/// name runs (else its own if localaws knows it, else the project's `server`); each such choice
/// is an assumption.
pub(super) fn release_template(
    file: &Path,
    stack: &Stack,
) -> Result<(serde_json::Value, Vec<Assumption>), RehearseError> {
    let bad =
        |m: String| RehearseError::Input(format!("--task-definition {}: {m}", file.display()));
    let text = std::fs::read_to_string(file).map_err(|e| bad(e.to_string()))?;
    let at = |needle: &str| tfstack::terraform::Location {
        file: file.to_path_buf(),
        line: text
            .lines()
            .position(|l| l.contains(needle))
            .map_or(1, |i| i + 1),
    };
    let mut vars: std::collections::BTreeMap<String, String> = [
        ("IMAGE", "server"),
        ("APP_VERSION", "v2"),
        (
            "EXECUTION_ROLE_ARN",
            "arn:aws:iam::000000000000:role/rehearsal-exec",
        ),
        (
            "TASK_ROLE_ARN",
            "arn:aws:iam::000000000000:role/rehearsal-task",
        ),
        ("AWS_REGION", "us-east-1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let mut assumptions = Vec::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        let name = after[..end].trim().to_owned();
        if let std::collections::btree_map::Entry::Vacant(slot) = vars.entry(name) {
            let name = slot.key().clone();
            assumptions.push(Assumption {
                location: at(&format!("{{{{{name}}}}}")),
                setting: format!("placeholder {{{{{name}}}}}"),
                reason: "filled in by the deploy pipeline".into(),
                used: "\"rehearsal\"".into(),
            });
            slot.insert("rehearsal".into());
        }
        rest = &after[end + 2..];
    }
    let rendered = deploy::render(&text, &vars).map_err(bad)?;
    let mut json: serde_json::Value =
        serde_json::from_str(&rendered).map_err(|e| bad(e.to_string()))?;
    let containers = json
        .get_mut("containerDefinitions")
        .and_then(|c| c.as_array_mut())
        .ok_or_else(|| bad("expected containerDefinitions: a list of containers".into()))?;
    for c in containers {
        let image = c
            .get("image")
            .and_then(|i| i.as_str())
            .unwrap_or_default()
            .to_owned();
        // A release is a new revision of the configuration's container of the same name: it
        // runs the image that container runs here (what --image NAME=... chose for it); a
        // container the configuration does not have runs its own image if localaws knows it,
        // else the project's server.
        let name = c
            .get("name")
            .and_then(|n| n.as_str())
            .unwrap_or_default()
            .to_owned();
        let same = stack
            .task_definitions
            .iter()
            .flat_map(|t| &t.container_definitions)
            .find(|d| d.name == name)
            .map(|d| d.image.clone());
        let chosen = match same {
            Some(local) if local != image => Some((
                format!(
                    "image {image:?} runs as container {name:?} runs in the configuration (image {local:?})"
                ),
                local,
            )),
            None if stack.image(&image).is_none() => Some((
                format!(
                    "image {image:?} runs locally as the project's server (--image NAME=COMMAND or NAME=docker:IMAGE runs your own)"
                ),
                "server".to_owned(),
            )),
            _ => None,
        };
        if let Some((reason, used)) = chosen {
            assumptions.push(Assumption {
                location: at("\"image\""),
                setting: "containerDefinitions image".into(),
                reason,
                used: format!("{used:?}"),
            });
            c["image"] = serde_json::Value::from(used);
        }
    }
    Ok((json, assumptions))
}

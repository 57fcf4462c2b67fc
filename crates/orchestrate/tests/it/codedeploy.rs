//! The CodeDeploy templates: valid JSON/YAML as they are, every placeholder `{{NAME}}` inside a
//! string and documented in codedeploy/README.md, and rendered they still read as the ECS task
//! definition and AppSpec the deployment group expects.

use std::collections::BTreeSet;

use orchestrate::preflight::{AppSpec, TaskDefinition};

use crate::util::repo;

/// Every `{{NAME}}` in a text, checking the name's form.
fn placeholders(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let end = after.find("}}").unwrap();
        let name = &after[..end];
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'),
            "placeholder {{{{{name}}}}} is not {{{{CAPITALS_DIGITS_UNDERSCORES}}}}"
        );
        out.insert(name.to_owned());
        rest = &after[end + 2..];
    }
    out
}

fn render(text: &str) -> String {
    let mut out = text.to_owned();
    for name in placeholders(text) {
        out = out.replace(
            &format!("{{{{{name}}}}}"),
            &format!("rendered-{}", name.to_lowercase()),
        );
    }
    out
}

#[test]
fn templates_are_valid_and_every_placeholder_is_documented() {
    let dir = repo().join("codedeploy");
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    let taskdef = std::fs::read_to_string(dir.join("taskdef.template.json")).unwrap();
    let appspec = std::fs::read_to_string(dir.join("appspec.yaml")).unwrap();
    let mut all = placeholders(&taskdef);
    all.extend(placeholders(&appspec));
    for name in ["IMAGE", "APP_VERSION", "TASK_DEFINITION_ARN"] {
        assert!(all.contains(name), "{name} missing");
    }
    for name in &all {
        assert!(
            readme.contains(&format!("`{{{{{name}}}}}`")),
            "{name} not documented in codedeploy/README.md"
        );
    }

    // Valid before rendering (placeholders sit inside strings) and after.
    for text in [taskdef.clone(), render(&taskdef)] {
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        let web = &json["containerDefinitions"][0];
        assert_eq!(web["name"], "web");
        assert_eq!(web["portMappings"][0]["hostPort"], 0);
    }
    let rendered: serde_json::Value = serde_json::from_str(&render(&taskdef)).unwrap();
    assert_eq!(
        rendered["containerDefinitions"][0]["image"],
        "rendered-image"
    );
    assert!(!render(&taskdef).contains("{{") && !render(&appspec).contains("{{"));

    let td = TaskDefinition::parse(&render(&taskdef), &dir.join("taskdef.json")).unwrap();
    for text in [appspec.clone(), render(&appspec)] {
        let spec = AppSpec::parse(&text, &dir.join("appspec.yaml")).unwrap();
        let (name, _) = spec.container_name.clone().unwrap();
        let (port, _) = spec.container_port.unwrap();
        let container = td.containers.iter().find(|c| c.name == name).unwrap();
        assert!(
            container
                .port_mappings
                .iter()
                .any(|(cp, _)| *cp == Some(port))
        );
        assert!(spec.hooks.iter().any(|h| h == "AfterAllowTestTraffic"));
    }
    let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(&appspec).unwrap();
    assert_eq!(
        yaml["Resources"][0]["TargetService"]["Type"].as_str(),
        Some("AWS::ECS::Service")
    );
}

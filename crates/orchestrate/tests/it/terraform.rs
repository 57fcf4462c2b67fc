//! The project's Terraform, read without Terraform: every file parses, every module is complete,
//! and `envs/dev` with its modules resolved holds the zero-downtime invariants.

use std::path::{Path, PathBuf};

use hcl::Value;
use serde_json::json;
use tfstack::terraform::{self, Config, Resource, Setting};

use crate::util::{project_inputs, repo};

fn dev() -> Config {
    Config::load(&repo().join("terraform/envs/dev")).unwrap()
}

/// The only resource of a type in a module (`module.compute`).
fn one<'a>(cfg: &'a Config, module: &str, kind: &str) -> Resource<'a> {
    let found: Vec<_> = cfg
        .resources_of(kind)
        .into_iter()
        .filter(|r| r.module.address == module)
        .collect();
    assert_eq!(found.len(), 1, "{module} {kind}: {found:?}");
    found[0]
}

fn known(r: &Resource<'_>, path: &str) -> Value {
    match r.get(path).0 {
        Setting::Known(v) => v,
        other => panic!("{}.{path} is not known statically: {other:?}", r.address()),
    }
}

fn num(r: &Resource<'_>, path: &str) -> f64 {
    terraform::number(&known(r, path))
        .unwrap_or_else(|| panic!("{}.{path} not a number", r.address()))
}

fn string(r: &Resource<'_>, path: &str) -> String {
    r.get(path)
        .0
        .string()
        .unwrap_or_else(|| panic!("{}.{path} is not a known string", r.address()))
}

fn dirs_with_tf(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut has_tf = false;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            dirs_with_tf(&path, out);
        } else if path.extension().is_some_and(|e| e == "tf") {
            has_tf = true;
        }
    }
    if has_tf {
        out.push(dir.to_path_buf());
    }
}

#[test]
fn every_tf_file_parses_and_every_module_has_the_standard_layout() {
    let mut dirs = Vec::new();
    dirs_with_tf(&repo().join("terraform"), &mut dirs);
    assert!(dirs.len() >= 8, "{dirs:?}");
    let mut files = 0;
    for dir in &dirs {
        for file in terraform::tf_files(dir).unwrap() {
            terraform::parse_file(&file).unwrap();
            files += 1;
        }
        let blocks = terraform::parse_dir(dir).unwrap();
        // versions.tf: required_version and an aws provider with a lower bound.
        let tf = blocks
            .iter()
            .find(|b| b.kind == "terraform")
            .unwrap_or_else(|| panic!("{dir:?}: no terraform block"));
        let required = tf.attribute("required_version").unwrap();
        let hcl::Expression::String(v) = &required.expr else {
            panic!("{dir:?}")
        };
        assert!(v.starts_with(">="), "{dir:?}: required_version {v}");
        let providers = tf.block("required_providers").unwrap();
        let aws = providers.attribute("aws").unwrap();
        let text = format!("{:?}", aws.expr);
        assert!(
            text.contains("hashicorp/aws") && text.contains(">="),
            "{dir:?}: {text}"
        );
        assert_eq!(required.location.file.file_name().unwrap(), "versions.tf");

        let is_module = dir.parent().unwrap().ends_with("modules");
        let names: Vec<String> = terraform::tf_files(dir)
            .unwrap()
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        for required in ["main.tf", "variables.tf", "outputs.tf", "versions.tf"] {
            assert!(
                names.iter().any(|n| n == required),
                "{dir:?} lacks {required}"
            );
        }
        // A description and a type on every variable; a description on every output.
        for b in &blocks {
            if b.kind == "variable" {
                assert!(
                    b.attribute("description").is_some(),
                    "{}: variable without description",
                    b.location
                );
                assert!(
                    b.attribute("type").is_some(),
                    "{}: variable without type",
                    b.location
                );
            }
            if b.kind == "output" {
                assert!(
                    b.attribute("description").is_some(),
                    "{}: output without description",
                    b.location
                );
            }
        }
        if is_module {
            assert!(
                blocks
                    .iter()
                    .any(|b| b.kind == "variable" && b.block("validation").is_some()),
                "{dir:?}: no validation block"
            );
        }
    }
    assert!(files >= 29, "{files} files");
}

#[test]
fn dev_resolves_every_local_module_with_the_stand_in_names() {
    let cfg = dev();
    let modules: Vec<&str> = cfg.modules().iter().map(|m| m.address.as_str()).collect();
    for m in [
        "",
        "module.network",
        "module.ecr",
        "module.traffic",
        "module.compute",
        "module.cluster",
        "module.ecs_service",
        "module.codedeploy",
    ] {
        assert!(modules.contains(&m), "{m} not loaded: {modules:?}");
    }
    assert!(cfg.root.skipped_modules.is_empty());
    assert_eq!(
        string(&one(&cfg, "module.cluster", "aws_ecs_cluster"), "name"),
        "demo-cluster"
    );
    assert_eq!(
        string(
            &one(&cfg, "module.compute", "aws_autoscaling_group"),
            "name"
        ),
        "demo-asg"
    );
    assert_eq!(
        string(&one(&cfg, "module.compute", "aws_launch_template"), "name"),
        "demo-lt"
    );
    assert_eq!(
        string(&one(&cfg, "module.ecs_service", "aws_ecs_service"), "name"),
        "demo-svc"
    );
    assert_eq!(
        string(
            &one(&cfg, "module.ecs_service", "aws_ecs_task_definition"),
            "family"
        ),
        "demo-web"
    );
    assert_eq!(
        string(&one(&cfg, "module.traffic", "aws_lb"), "name"),
        "demo-alb"
    );
    let tgs: Vec<String> = cfg
        .resources_of("aws_lb_target_group")
        .iter()
        .map(|r| string(r, "name"))
        .collect();
    assert_eq!(tgs, ["demo-tg-blue", "demo-tg-green"]);
    assert_eq!(
        string(
            &one(&cfg, "module.codedeploy", "aws_codedeploy_app"),
            "name"
        ),
        "demo-cd-app"
    );
    let dg = one(&cfg, "module.codedeploy", "aws_codedeploy_deployment_group");
    assert_eq!(string(&dg, "deployment_group_name"), "demo-dg");
    // Locations point into the module's own file.
    let asg = one(&cfg, "module.compute", "aws_autoscaling_group");
    assert!(
        asg.block
            .location
            .file
            .ends_with("terraform/modules/compute/main.tf"),
        "{}",
        asg.block.location
    );
    let text = std::fs::read_to_string(&asg.block.location.file).unwrap();
    let line = text.lines().nth(asg.block.location.line - 1).unwrap();
    assert_eq!(line, "resource \"aws_autoscaling_group\" \"this\" {");
}

#[test]
fn dev_instances_drain_and_the_refresh_replaces_them_safely() {
    let cfg = dev();
    let cp = one(&cfg, "module.cluster", "aws_ecs_capacity_provider");
    assert_eq!(
        string(&cp, "auto_scaling_group_provider.managed_draining"),
        "ENABLED"
    );
    assert_eq!(
        string(
            &cp,
            "auto_scaling_group_provider.managed_termination_protection"
        ),
        "ENABLED"
    );

    let asg = one(&cfg, "module.compute", "aws_autoscaling_group");
    assert_eq!(string(&asg, "health_check_type"), "ELB");
    assert!(num(&asg, "health_check_grace_period") >= 60.0);
    assert_eq!(known(&asg, "protect_from_scale_in"), Value::Bool(true));
    let pref = |p: &str| format!("instance_refresh.preferences.{p}");
    assert_eq!(num(&asg, &pref("min_healthy_percentage")), 100.0);
    assert!(num(&asg, &pref("max_healthy_percentage")) > 100.0);
    // Auto Scaling refuses a range wider than 100.
    assert!(
        num(&asg, &pref("max_healthy_percentage")) - num(&asg, &pref("min_healthy_percentage"))
            <= 100.0
    );
    assert!(
        num(&asg, "max_size")
            >= num(&asg, "desired_capacity") * num(&asg, &pref("max_healthy_percentage")) / 100.0
    );
    assert!(num(&asg, &pref("instance_warmup")) >= 60.0);
    assert_eq!(known(&asg, &pref("auto_rollback")), Value::Bool(true));
    assert_eq!(
        string(&asg, &pref("scale_in_protected_instances")),
        "Refresh"
    );
    let Value::Array(checkpoints) = known(&asg, &pref("checkpoint_percentages")) else {
        panic!()
    };
    assert_eq!(checkpoints.last().and_then(terraform::number), Some(100.0));
    assert!(num(&asg, &pref("checkpoint_delay")) > 0.0);

    // A pinned version: the latest version number, never "$Latest"/"$Default".
    let version = asg.block.find("launch_template.version");
    let tfstack::terraform::Found::Attribute(version) = version else {
        panic!("no version")
    };
    assert_eq!(
        format!("{}", hcl::format::to_string(&version.expr).unwrap()),
        "aws_launch_template.this.latest_version"
    );

    let lt = one(&cfg, "module.compute", "aws_launch_template");
    assert_eq!(string(&lt, "metadata_options.http_tokens"), "required");
    assert_eq!(
        num(&lt, "metadata_options.http_put_response_hop_limit"),
        1.0
    );
}

#[test]
fn dev_task_definition_and_service_keep_the_shutdown_timing() {
    let cfg = dev();
    let td = one(&cfg, "module.ecs_service", "aws_ecs_task_definition");
    assert_eq!(string(&td, "network_mode"), "bridge");
    let defs: serde_json::Value =
        serde_json::from_str(&string(&td, "container_definitions")).unwrap();
    let web = &defs[0];
    assert_eq!(web["name"], "web");
    assert_eq!(web["portMappings"][0]["containerPort"], 8080);
    assert_eq!(web["portMappings"][0]["hostPort"], 0);
    assert_eq!(
        web["healthCheck"]["command"],
        json!(["CMD", "/server", "healthcheck"])
    );
    assert_eq!(web["logConfiguration"]["logDriver"], "awslogs");
    let env = |name: &str| -> f64 {
        web["environment"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .unwrap()["value"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    let (drain, shutdown, idle) = (
        env("DRAIN_DELAY_SECONDS"),
        env("SHUTDOWN_TIMEOUT_SECONDS"),
        env("IDLE_TIMEOUT_SECONDS"),
    );
    let stop = web["stopTimeout"].as_f64().unwrap();
    let longest_request = 15.0;
    assert!(
        stop >= shutdown && shutdown >= drain + longest_request,
        "stop {stop} shutdown {shutdown} drain {drain}"
    );

    for tg in cfg.resources_of("aws_lb_target_group") {
        assert_eq!(string(&tg, "health_check.path"), "/ready");
        assert_eq!(string(&tg, "health_check.matcher"), "200");
        for explicit in [
            "interval",
            "timeout",
            "healthy_threshold",
            "unhealthy_threshold",
        ] {
            assert!(num(&tg, &format!("health_check.{explicit}")) > 0.0);
        }
        let delay = num(&tg, "deregistration_delay");
        assert!(delay >= drain && delay < 300.0, "{}: {delay}", tg.address());
    }
    let alb = one(&cfg, "module.traffic", "aws_lb");
    assert!(num(&alb, "idle_timeout") < idle);
    assert_eq!(known(&alb, "drop_invalid_header_fields"), Value::Bool(true));

    let svc = one(&cfg, "module.ecs_service", "aws_ecs_service");
    assert_eq!(string(&svc, "deployment_controller.type"), "CODE_DEPLOY");
    assert!(num(&svc, "desired_count") >= 2.0);
    assert!(num(&svc, "health_check_grace_period_seconds") > 0.0);
    assert_eq!(num(&svc, "deployment_minimum_healthy_percent"), 100.0);
    assert_eq!(num(&svc, "deployment_maximum_percent"), 200.0);

    // The template orchestrate deploy registers agrees with the first revision.
    let file: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("codedeploy/taskdef.template.json")).unwrap(),
    )
    .unwrap();
    let fweb = &file["containerDefinitions"][0];
    for key in [
        "name",
        "portMappings",
        "stopTimeout",
        "healthCheck",
        "user",
        "readonlyRootFilesystem",
    ] {
        assert_eq!(fweb[key], web[key], "{key}");
    }
    for name in [
        "DRAIN_DELAY_SECONDS",
        "SHUTDOWN_TIMEOUT_SECONDS",
        "IDLE_TIMEOUT_SECONDS",
        "LOG_FORMAT",
    ] {
        let pick = |c: &serde_json::Value| {
            c["environment"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["name"] == name)
                .cloned()
        };
        assert_eq!(pick(fweb), pick(web), "{name}");
    }
    assert_eq!(file["family"], "demo-web");
    assert_eq!(file["networkMode"], "bridge");
}

#[test]
fn dev_codedeploy_is_canary_blue_green_with_rollback_alarms_and_a_test_listener() {
    let cfg = dev();
    let dg = one(&cfg, "module.codedeploy", "aws_codedeploy_deployment_group");
    assert!(string(&dg, "deployment_config_name").starts_with("CodeDeployDefault.ECSCanary"));
    assert_eq!(
        string(&dg, "deployment_style.deployment_type"),
        "BLUE_GREEN"
    );
    assert_eq!(
        known(&dg, "auto_rollback_configuration.enabled"),
        Value::Bool(true)
    );
    let Value::Array(events) = known(&dg, "auto_rollback_configuration.events") else {
        panic!()
    };
    for e in [
        "DEPLOYMENT_FAILURE",
        "DEPLOYMENT_STOP_ON_ALARM",
        "DEPLOYMENT_STOP_ON_REQUEST",
    ] {
        assert!(events.contains(&Value::from(e)), "{e}");
    }
    assert_eq!(known(&dg, "alarm_configuration.enabled"), Value::Bool(true));
    assert_eq!(
        string(
            &dg,
            "blue_green_deployment_config.deployment_ready_option.action_on_timeout"
        ),
        "CONTINUE_DEPLOYMENT"
    );
    assert_eq!(
        string(
            &dg,
            "blue_green_deployment_config.terminate_blue_instances_on_deployment_success.action"
        ),
        "TERMINATE"
    );
    assert!(
        num(
            &dg,
            "blue_green_deployment_config.terminate_blue_instances_on_deployment_success.termination_wait_time_in_minutes"
        ) >= 5.0
    );
    let pair = dg
        .block
        .block("load_balancer_info")
        .unwrap()
        .block("target_group_pair_info")
        .unwrap();
    assert!(pair.block("test_traffic_route").is_some());
    assert_eq!(pair.blocks("target_group").count(), 2);

    let metrics: Vec<String> = cfg
        .resources_of("aws_cloudwatch_metric_alarm")
        .iter()
        .map(|a| string(a, "metric_name"))
        .collect();
    assert!(
        metrics.contains(&"HTTPCode_Target_5XX_Count".to_owned()),
        "{metrics:?}"
    );
    assert!(
        metrics.contains(&"UnHealthyHostCount".to_owned()),
        "{metrics:?}"
    );

    let listeners: Vec<_> = cfg.resources_of("aws_lb_listener");
    let ports: Vec<f64> = listeners
        .iter()
        .filter_map(|l| l.get("port").0.number())
        .collect();
    for port in [80.0, 443.0, 8080.0] {
        assert!(ports.contains(&port), "no listener on {port}: {ports:?}");
    }
    let https = listeners.iter().find(|l| l.name() == "https").unwrap();
    assert_eq!(string(https, "protocol"), "HTTPS");
}

#[test]
fn dev_security_settings() {
    let cfg = dev();
    let ecr = one(&cfg, "module.ecr", "aws_ecr_repository");
    assert_eq!(string(&ecr, "image_tag_mutability"), "IMMUTABLE");
    assert_eq!(
        known(&ecr, "image_scanning_configuration.scan_on_push"),
        Value::Bool(true)
    );
    for lg in cfg.resources_of("aws_cloudwatch_log_group") {
        assert!(
            lg.get("kms_key_id").0.is_set(),
            "{} unencrypted",
            lg.address()
        );
    }
    // Instances accept traffic only from the load balancer's security group.
    let ingress: Vec<_> = cfg
        .resources_of("aws_vpc_security_group_ingress_rule")
        .into_iter()
        .filter(|r| r.module.address == "module.compute")
        .collect();
    assert_eq!(ingress.len(), 1);
    assert!(
        ingress[0]
            .block
            .attribute("referenced_security_group_id")
            .is_some()
    );
    assert!(ingress[0].block.attribute("cidr_ipv4").is_none());
    // GitHub OIDC, no stored keys; the orchestrate policy is attached to the deploy role.
    let oidc = one(&cfg, "", "aws_iam_openid_connect_provider");
    assert_eq!(
        string(&oidc, "url"),
        "https://token.actions.githubusercontent.com"
    );
    assert!(cfg.resources_of("aws_iam_access_key").is_empty());
    let policy = one(&cfg, "", "aws_iam_policy");
    assert_eq!(string(&policy, "name"), "demo-orchestrate");
    assert!(
        cfg.root
            .blocks
            .iter()
            .any(|b| b.kind == "output" && b.labels == ["orchestrate_policy_json"])
    );
}

#[test]
fn the_projects_own_configuration_is_clean() {
    let hazards = orchestrate::preflight::check(&project_inputs());
    assert!(hazards.is_empty(), "{}", crate::util::show(&hazards));
}

/// `terraform fmt` cannot run here; this holds the files to its alignment rule (hclwrite's
/// `formatCells`): consecutive lines whose assignment is a whole single-line expression align
/// their `=` one space after the longest key; a line that opens a multi-line expression, a
/// comment, a blank line or any other line ends the run and keeps one space before its `=`.
#[test]
fn terraform_files_align_like_terraform_fmt() {
    fn net_brackets(rest: &str) -> i32 {
        let mut net = 0;
        let mut in_string = false;
        let mut prev = ' ';
        for c in rest.chars() {
            match c {
                '"' if prev != '\\' => in_string = !in_string,
                '#' if !in_string => break,
                '(' | '[' | '{' if !in_string => net += 1,
                ')' | ']' | '}' if !in_string => net -= 1,
                _ => {}
            }
            prev = c;
        }
        net
    }
    let mut dirs = Vec::new();
    dirs_with_tf(&repo().join("terraform"), &mut dirs);
    let mut problems = Vec::new();
    for dir in dirs {
        let mut files = terraform::tf_files(&dir).unwrap();
        files.extend(
            std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "tfvars")),
        );
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            // (line number, key end column, '=' column)
            let mut chain: Vec<(usize, usize, usize)> = Vec::new();
            let mut heredoc: Option<String> = None;
            let close = |chain: &mut Vec<(usize, usize, usize)>, problems: &mut Vec<String>| {
                if let Some(width) = chain.iter().map(|c| c.1).max() {
                    for (line, _, eq) in chain.iter() {
                        if *eq != width + 1 {
                            problems.push(format!(
                                "{}:{line}: '=' at column {eq}, terraform fmt puts it at {}",
                                file.display(),
                                width + 1
                            ));
                        }
                    }
                }
                chain.clear();
            };
            for (i, line) in text.lines().enumerate() {
                if let Some(end) = &heredoc {
                    close(&mut chain, &mut problems);
                    if line.trim() == end {
                        heredoc = None;
                    }
                    continue;
                }
                let trimmed = line.trim_start();
                let key_len = trimmed
                    .find(|c: char| {
                        !(c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '"')
                    })
                    .unwrap_or(0);
                let after_key = &trimmed[key_len..];
                let spaces = after_key.len() - after_key.trim_start().len();
                let is_assign = key_len > 0
                    && after_key.trim_start().starts_with('=')
                    && !after_key.trim_start().starts_with("==")
                    && !trimmed.starts_with('#');
                if !is_assign {
                    close(&mut chain, &mut problems);
                    continue;
                }
                let indent = line.len() - trimmed.len();
                let key_end = indent + key_len;
                let rest = &after_key.trim_start()[1..];
                if let Some(pos) = rest.find("<<") {
                    heredoc = Some(rest[pos + 2..].trim_start_matches('-').trim().to_owned());
                }
                if net_brackets(rest) == 0 {
                    chain.push((i + 1, key_end, key_end + spaces));
                } else {
                    close(&mut chain, &mut problems);
                    if spaces != 1 {
                        problems.push(format!(
                            "{}:{}: one space before '=' expected",
                            file.display(),
                            i + 1
                        ));
                    }
                }
            }
            close(&mut chain, &mut problems);
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The reader is fed what users write, broken included: every prefix of every file either parses
/// or is refused with an error naming the file, never a panic.
#[test]
fn truncated_files_are_refused_not_panicked_on() {
    let mut dirs = Vec::new();
    dirs_with_tf(&repo().join("terraform"), &mut dirs);
    let path = Path::new("cut.tf");
    let mut refused = 0;
    for dir in dirs {
        for file in terraform::tf_files(&dir).unwrap() {
            let text = std::fs::read_to_string(&file).unwrap();
            let cuts: Vec<usize> = (0..text.len())
                .step_by(101)
                .filter(|i| text.is_char_boundary(*i))
                .collect();
            for cut in cuts {
                if let Err(e) = terraform::parse_str(&text[..cut], path) {
                    assert!(e.to_string().contains("cut.tf"), "{e}");
                    refused += 1;
                }
            }
        }
    }
    assert!(refused > 50, "{refused}");
}

/// The part of `terraform validate` that needs no provider: every `var.*`, `local.*`,
/// `module.*.*`, `data.*.*` and `aws_*.*` reference names something declared, every module call
/// passes only declared variables and every variable without a default.
#[test]
fn every_reference_resolves_and_every_module_call_matches_its_module() {
    /// Dotted names (`var.x`, `module.a.b`) in the text, comments left out.
    fn references(text: &str) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        for line in text.lines() {
            let code = match line.trim_start() {
                l if l.starts_with('#') || l.starts_with("//") => continue,
                _ => line.split(" # ").next().unwrap_or(line),
            };
            let chars: Vec<char> = code.chars().collect();
            let mut i = 0;
            while i < chars.len() {
                let starts = (chars[i].is_ascii_alphabetic() || chars[i] == '_')
                    && (i == 0
                        || !(chars[i - 1].is_ascii_alphanumeric()
                            || matches!(chars[i - 1], '_' | '.' | '-' | ':' | '/')));
                if !starts {
                    i += 1;
                    continue;
                }
                let mut parts = vec![String::new()];
                while i < chars.len() {
                    let c = chars[i];
                    if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                        parts.last_mut().unwrap().push(c);
                    } else if c == '.'
                        && i + 1 < chars.len()
                        && (chars[i + 1].is_ascii_alphabetic() || chars[i + 1] == '_')
                    {
                        parts.push(String::new());
                    } else {
                        break;
                    }
                    i += 1;
                }
                if parts.len() > 1 {
                    out.push(parts);
                }
            }
        }
        out
    }

    let mut dirs = Vec::new();
    dirs_with_tf(&repo().join("terraform"), &mut dirs);
    let mut problems = Vec::new();
    let mut checked = 0;
    for dir in &dirs {
        let blocks = terraform::parse_dir(dir).unwrap();
        let labels = |kind: &str| -> Vec<Vec<String>> {
            blocks
                .iter()
                .filter(|b| b.kind == kind)
                .map(|b| b.labels.clone())
                .collect()
        };
        let variables: Vec<String> = labels("variable")
            .into_iter()
            .map(|l| l[0].clone())
            .collect();
        let locals: Vec<String> = blocks
            .iter()
            .filter(|b| b.kind == "locals")
            .flat_map(|b| b.attributes.iter().map(|a| a.name.clone()))
            .collect();
        let resources = labels("resource");
        let data = labels("data");
        let calls: Vec<&tfstack::terraform::Block> =
            blocks.iter().filter(|b| b.kind == "module").collect();
        let module_outputs = |name: &str| -> Option<Vec<String>> {
            let call = calls.iter().find(|c| c.labels[0] == name)?;
            let hcl::Expression::String(source) = &call.attribute("source")?.expr else {
                return None;
            };
            let child = terraform::parse_dir(&dir.join(source)).ok()?;
            Some(
                child
                    .iter()
                    .filter(|b| b.kind == "output")
                    .map(|b| b.labels[0].clone())
                    .collect(),
            )
        };
        for file in terraform::tf_files(dir).unwrap() {
            let text = std::fs::read_to_string(&file).unwrap();
            for parts in references(&text) {
                checked += 1;
                let at = format!("{}: {}", file.display(), parts.join("."));
                let ok = match parts[0].as_str() {
                    "var" => variables.contains(&parts[1]),
                    "local" => locals.contains(&parts[1]),
                    "module" => {
                        parts.len() > 2
                            && module_outputs(&parts[1]).is_some_and(|o| o.contains(&parts[2]))
                    }
                    "data" => {
                        parts.len() > 2 && data.contains(&vec![parts[1].clone(), parts[2].clone()])
                    }
                    t if t.starts_with("aws_") => {
                        resources.contains(&vec![parts[0].clone(), parts[1].clone()])
                    }
                    _ => true,
                };
                if !ok {
                    problems.push(format!("{at} does not resolve"));
                }
            }
        }
        for call in &calls {
            let hcl::Expression::String(source) = &call.attribute("source").unwrap().expr else {
                panic!()
            };
            let child = terraform::parse_dir(&dir.join(source)).unwrap();
            let declared: Vec<&tfstack::terraform::Block> =
                child.iter().filter(|b| b.kind == "variable").collect();
            for a in &call.attributes {
                if a.name != "source" && !declared.iter().any(|v| v.labels[0] == a.name) {
                    problems.push(format!(
                        "{}: module {} has no variable {}",
                        a.location, call.labels[0], a.name
                    ));
                }
            }
            for v in declared {
                if v.attribute("default").is_none() && call.attribute(&v.labels[0]).is_none() {
                    problems.push(format!(
                        "{}: module {} needs {}",
                        call.location, call.labels[0], v.labels[0]
                    ));
                }
            }
        }
    }
    assert!(checked > 300, "{checked} references");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

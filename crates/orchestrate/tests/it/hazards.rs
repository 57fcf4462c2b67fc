//! Every hazard: a minimal fixture that raises it beside a fixed twin that differs in that one
//! setting and does not; the original project's configuration raises each of its hazards; AWS
//! defaults and values unknown before apply raise nothing.

use orchestrate::preflight::{self, AppSpec, Inputs, Severity, TaskDefinition};
use tfstack::terraform::Config;

use crate::util::{Setup, errors, fixture, show, with_id};

/// One hazard: the id, the severity the bad twin raises, and the two setups.
struct Case {
    id: &'static str,
    severity: Severity,
    bad: Setup<'static>,
    good: Setup<'static>,
}

const APPSPEC_OK: &str = "version: 0.0\nResources:\n  - TargetService:\n      Type: AWS::ECS::Service\n      Properties:\n        TaskDefinition: x\n        LoadBalancerInfo:\n          ContainerName: web\n          ContainerPort: 8080\nHooks:\n  - AfterAllowTestTraffic: validate\n";

fn taskdef(host_port: u16, stop_timeout: u16, drain: u16, shutdown: u16) -> String {
    format!(
        r#"{{"family": "demo-web", "networkMode": "bridge", "containerDefinitions": [{{"name": "web", "image": "{{{{IMAGE}}}}",
  "stopTimeout": {stop_timeout},
  "portMappings": [{{"containerPort": 8080, "hostPort": {host_port}}}],
  "environment": [{{"name": "DRAIN_DELAY_SECONDS", "value": "{drain}"}}, {{"name": "SHUTDOWN_TIMEOUT_SECONDS", "value": "{shutdown}"}}]}}]}}"#
    )
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn cases() -> Vec<Case> {
    let tf = |s: &str| Setup {
        tf: Some(leak(s.to_owned())),
        ..Setup::default()
    };
    let asg = |body: &str| {
        tf(&format!(
            "resource \"aws_autoscaling_group\" \"g\" {{\n  health_check_type = \"ELB\"\n{body}\n}}\n"
        ))
    };
    let service = |body: &str| {
        tf(&format!(
            "resource \"aws_ecs_service\" \"s\" {{\n  health_check_grace_period_seconds = 30\n  deployment_controller {{\n    type = \"CODE_DEPLOY\"\n  }}\n  load_balancer {{\n    container_name = \"web\"\n  }}\n{body}\n}}\n"
        ))
    };
    let dg = |body: &str| {
        tf(&format!(
            "resource \"aws_codedeploy_deployment_group\" \"d\" {{\n  ecs_service {{\n    service_name = \"demo-svc\"\n  }}\n{body}\n}}\n"
        ))
    };
    let rollback = "  auto_rollback_configuration {\n    enabled = true\n    events  = [\"DEPLOYMENT_FAILURE\", \"DEPLOYMENT_STOP_ON_ALARM\", \"DEPLOYMENT_STOP_ON_REQUEST\"]\n  }\n  load_balancer_info {\n    target_group_pair_info {\n      prod_traffic_route {\n        listener_arns = [\"p\"]\n      }\n      test_traffic_route {\n        listener_arns = [\"t\"]\n      }\n    }\n  }\n";
    let with_td = |s: Setup<'static>, td: String| Setup {
        taskdef: Some(leak(td)),
        ..s
    };
    let appspec = |hooks: &str, container: &str| Setup {
        taskdef: Some(leak(taskdef(0, 30, 5, 25))),
        appspec: Some(leak(
            APPSPEC_OK
                .replace("AfterAllowTestTraffic", hooks)
                .replace("ContainerName: web", &format!("ContainerName: {container}")),
        )),
        ..Setup::default()
    };
    let cp = |body: &str| {
        format!(
            "resource \"aws_ecs_service\" \"s\" {{\n  desired_count = 2\n}}\nresource \"aws_ecs_capacity_provider\" \"cp\" {{\n  auto_scaling_group_provider {{\n    auto_scaling_group_arn = \"arn\"\n{body}\n  }}\n}}\n"
        )
    };

    let protected_refresh = |preference: &str| {
        format!(
            "{}resource \"aws_autoscaling_group\" \"g\" {{\n  health_check_type = \"ELB\"\n  instance_refresh {{\n    strategy = \"Rolling\"\n    preferences {{\n      min_healthy_percentage = 90{preference}\n    }}\n  }}\n}}\n",
            cp("    managed_termination_protection = \"ENABLED\"")
        )
    };

    vec![
        Case {
            id: "no-managed-draining",
            severity: Severity::Error,
            bad: tf(&cp("    managed_draining = \"DISABLED\"")),
            good: tf(&cp("    managed_draining = \"ENABLED\"")),
        },
        Case {
            // No capacity provider at all: a termination lifecycle hook drains instead.
            id: "no-managed-draining",
            severity: Severity::Error,
            bad: tf(
                "resource \"aws_ecs_service\" \"s\" {\n  desired_count = 2\n}\nresource \"aws_autoscaling_group\" \"g\" {\n  health_check_type = \"ELB\"\n}\n",
            ),
            good: tf(
                "resource \"aws_ecs_service\" \"s\" {\n  desired_count = 2\n}\nresource \"aws_autoscaling_group\" \"g\" {\n  health_check_type = \"ELB\"\n}\nresource \"aws_autoscaling_lifecycle_hook\" \"drain\" {\n  lifecycle_transition = \"autoscaling:EC2_INSTANCE_TERMINATING\"\n}\n",
            ),
        },
        Case {
            id: "static-host-port",
            severity: Severity::Error,
            bad: Setup {
                appspec: Some(APPSPEC_OK),
                ..with_td(Setup::default(), taskdef(8080, 30, 5, 25))
            },
            good: Setup {
                appspec: Some(APPSPEC_OK),
                ..with_td(Setup::default(), taskdef(0, 30, 5, 25))
            },
        },
        Case {
            // In Terraform, with the CODE_DEPLOY controller making it blue/green.
            id: "static-host-port",
            severity: Severity::Error,
            bad: tf(
                "resource \"aws_ecs_service\" \"s\" {\n  desired_count = 2\n  deployment_controller {\n    type = \"CODE_DEPLOY\"\n  }\n}\nresource \"aws_ecs_task_definition\" \"t\" {\n  network_mode = \"host\"\n  container_definitions = jsonencode([{ name = \"web\", image = var.image, portMappings = [{ containerPort = 8080 }] }])\n}\n",
            ),
            good: tf(
                "resource \"aws_ecs_service\" \"s\" {\n  desired_count = 2\n  deployment_controller {\n    type = \"CODE_DEPLOY\"\n  }\n}\nresource \"aws_ecs_task_definition\" \"t\" {\n  network_mode = \"bridge\"\n  container_definitions = jsonencode([{ name = \"web\", image = var.image, portMappings = [{ containerPort = 8080, hostPort = 0 }] }])\n}\n",
            ),
        },
        Case {
            // Without blue/green a static port only blocks rolling deployments above 100 %.
            id: "static-host-port",
            severity: Severity::Warning,
            bad: with_td(Setup::default(), taskdef(8080, 30, 5, 25)),
            good: with_td(Setup::default(), taskdef(0, 30, 5, 25)),
        },
        Case {
            id: "drain-timing",
            severity: Severity::Error,
            bad: with_td(Setup::default(), taskdef(0, 20, 5, 25)),
            good: with_td(Setup::default(), taskdef(0, 25, 5, 25)),
        },
        Case {
            id: "drain-timing",
            severity: Severity::Error,
            bad: with_td(Setup::default(), taskdef(0, 30, 10, 5)),
            good: with_td(Setup::default(), taskdef(0, 30, 5, 10)),
        },
        Case {
            id: "drain-timing",
            severity: Severity::Error,
            bad: with_td(
                tf("resource \"aws_lb_target_group\" \"b\" {\n  deregistration_delay = 3\n}\n"),
                taskdef(0, 30, 5, 25),
            ),
            good: with_td(
                tf("resource \"aws_lb_target_group\" \"b\" {\n  deregistration_delay = 5\n}\n"),
                taskdef(0, 30, 5, 25),
            ),
        },
        Case {
            id: "slow-deregistration",
            severity: Severity::Warning,
            bad: tf("resource \"aws_lb_target_group\" \"b\" {\n  port = 8080\n}\n"),
            good: tf(
                "resource \"aws_lb_target_group\" \"b\" {\n  port = 8080\n  deregistration_delay = 30\n}\n",
            ),
        },
        Case {
            id: "health-check-defaults",
            severity: Severity::Warning,
            bad: tf(
                "resource \"aws_lb_target_group\" \"b\" {\n  deregistration_delay = 30\n  health_check {\n    path = \"/ready\"\n  }\n}\n",
            ),
            good: tf(
                "resource \"aws_lb_target_group\" \"b\" {\n  deregistration_delay = 30\n  health_check {\n    path                = \"/ready\"\n    interval            = 5\n    healthy_threshold   = 2\n    unhealthy_threshold = 2\n  }\n}\n",
            ),
        },
        Case {
            id: "keepalive-below-idle-timeout",
            severity: Severity::Error,
            bad: tf("resource \"aws_lb\" \"a\" {\n  idle_timeout = 120\n}\n"),
            good: tf("resource \"aws_lb\" \"a\" {\n  idle_timeout = 60\n}\n"),
        },
        Case {
            id: "no-health-check-grace-period",
            severity: Severity::Error,
            bad: tf(
                "resource \"aws_ecs_service\" \"s\" {\n  desired_count = 2\n  load_balancer {\n    container_name = \"web\"\n  }\n}\n",
            ),
            good: tf(
                "resource \"aws_ecs_service\" \"s\" {\n  desired_count = 2\n  health_check_grace_period_seconds = 30\n  load_balancer {\n    container_name = \"web\"\n  }\n}\n",
            ),
        },
        Case {
            id: "no-health-check-grace-period",
            severity: Severity::Error,
            bad: asg("  health_check_grace_period = 0"),
            good: asg("  health_check_grace_period = 300"),
        },
        Case {
            id: "asg-health-check-ec2",
            severity: Severity::Error,
            bad: tf(
                "resource \"aws_autoscaling_group\" \"g\" {\n  health_check_type = \"EC2\"\n}\n",
            ),
            good: tf(
                "resource \"aws_autoscaling_group\" \"g\" {\n  health_check_type = \"ELB\"\n}\n",
            ),
        },
        Case {
            id: "refresh-no-headroom",
            severity: Severity::Error,
            bad: asg(
                "  instance_refresh {\n    strategy = \"Rolling\"\n    preferences {\n      min_healthy_percentage = 100\n      max_healthy_percentage = 100\n    }\n  }",
            ),
            good: asg(
                "  instance_refresh {\n    strategy = \"Rolling\"\n    preferences {\n      min_healthy_percentage = 100\n      max_healthy_percentage = 200\n    }\n  }",
            ),
        },
        Case {
            id: "scale-in-protection-blocks-refresh",
            severity: Severity::Error,
            bad: asg(
                "  protect_from_scale_in = true\n  instance_refresh {\n    strategy = \"Rolling\"\n    preferences {\n      scale_in_protected_instances = \"Wait\"\n    }\n  }",
            ),
            good: asg(
                "  protect_from_scale_in = true\n  instance_refresh {\n    strategy = \"Rolling\"\n    preferences {\n      scale_in_protected_instances = \"Refresh\"\n    }\n  }",
            ),
        },
        Case {
            // A range wider than 100, which Auto Scaling refuses: no refresh starts.
            id: "refresh-no-headroom",
            severity: Severity::Error,
            bad: asg(
                "  instance_refresh {\n    strategy = \"Rolling\"\n    preferences {\n      min_healthy_percentage = 90\n      max_healthy_percentage = 200\n    }\n  }",
            ),
            good: asg(
                "  instance_refresh {\n    strategy = \"Rolling\"\n    preferences {\n      min_healthy_percentage = 100\n      max_healthy_percentage = 200\n    }\n  }",
            ),
        },
        Case {
            // Managed termination protection protects every instance that runs tasks; the
            // provider's default for the preference is Ignore (those instances are skipped).
            id: "scale-in-protection-blocks-refresh",
            severity: Severity::Error,
            bad: tf(&protected_refresh("")),
            good: tf(&protected_refresh(
                "\n      scale_in_protected_instances = \"Refresh\"",
            )),
        },
        Case {
            id: "launch-template-unpinned",
            severity: Severity::Error,
            bad: asg(
                "  launch_template {\n    id      = aws_launch_template.lt.id\n    version = \"$Latest\"\n  }\n  instance_refresh {\n    strategy = \"Rolling\"\n    preferences {\n      auto_rollback = true\n    }\n  }",
            ),
            good: asg(
                "  launch_template {\n    id      = aws_launch_template.lt.id\n    version = aws_launch_template.lt.latest_version\n  }\n  instance_refresh {\n    strategy = \"Rolling\"\n    preferences {\n      auto_rollback = true\n    }\n  }",
            ),
        },
        Case {
            // No version at all is $Default.
            id: "launch-template-unpinned",
            severity: Severity::Warning,
            bad: asg(
                "  launch_template {\n    id = aws_launch_template.lt.id\n  }\n  instance_refresh {\n    strategy = \"Rolling\"\n  }",
            ),
            good: asg(
                "  launch_template {\n    id      = aws_launch_template.lt.id\n    version = \"3\"\n  }\n  instance_refresh {\n    strategy = \"Rolling\"\n  }",
            ),
        },
        Case {
            id: "codedeploy-no-auto-rollback",
            severity: Severity::Error,
            bad: dg(&rollback.replace("enabled = true", "enabled = false")),
            good: dg(rollback),
        },
        Case {
            id: "codedeploy-no-auto-rollback",
            severity: Severity::Warning,
            bad: dg(&rollback.replace(", \"DEPLOYMENT_STOP_ON_REQUEST\"", "")),
            good: dg(rollback),
        },
        Case {
            id: "no-test-listener",
            severity: Severity::Error,
            bad: dg(&rollback.replace("test_traffic_route", "other_route")),
            good: dg(rollback),
        },
        Case {
            id: "ready-wait-forever",
            severity: Severity::Error,
            bad: dg(&format!(
                "{rollback}  blue_green_deployment_config {{\n    deployment_ready_option {{\n      action_on_timeout    = \"STOP_DEPLOYMENT\"\n      wait_time_in_minutes = 0\n    }}\n  }}"
            )),
            good: dg(&format!(
                "{rollback}  blue_green_deployment_config {{\n    deployment_ready_option {{\n      action_on_timeout = \"CONTINUE_DEPLOYMENT\"\n    }}\n  }}"
            )),
        },
        Case {
            id: "ready-wait-forever",
            severity: Severity::Warning,
            bad: dg(&format!(
                "{rollback}  blue_green_deployment_config {{\n    deployment_ready_option {{\n      action_on_timeout    = \"STOP_DEPLOYMENT\"\n      wait_time_in_minutes = 60\n    }}\n  }}"
            )),
            good: dg(&format!(
                "{rollback}  blue_green_deployment_config {{\n    deployment_ready_option {{\n      action_on_timeout = \"CONTINUE_DEPLOYMENT\"\n    }}\n  }}"
            )),
        },
        Case {
            id: "all-at-once",
            severity: Severity::Warning,
            bad: dg(&format!(
                "{rollback}  deployment_config_name = \"CodeDeployDefault.ECSAllAtOnce\""
            )),
            good: dg(&format!(
                "{rollback}  deployment_config_name = \"CodeDeployDefault.ECSCanary10Percent5Minutes\""
            )),
        },
        Case {
            id: "desired-count-zero",
            severity: Severity::Error,
            bad: service("  desired_count = 0"),
            good: service("  desired_count = 3"),
        },
        Case {
            // Not written: the provider's default is 0.
            id: "desired-count-zero",
            severity: Severity::Error,
            bad: service(""),
            good: service("  desired_count = 2"),
        },
        Case {
            // The group's warm-up against 3 x 10 s of target health checks.
            id: "warmup-below-target-health",
            severity: Severity::Error,
            bad: tf(
                "resource \"aws_autoscaling_group\" \"g\" {\n  health_check_type = \"ELB\"\n  default_instance_warmup = 20\n}\nresource \"aws_lb_target_group\" \"t\" {\n  health_check {\n    path = \"/ready\"\n    interval = 10\n    healthy_threshold = 3\n  }\n}\n",
            ),
            good: tf(
                "resource \"aws_autoscaling_group\" \"g\" {\n  health_check_type = \"ELB\"\n  default_instance_warmup = 120\n}\nresource \"aws_lb_target_group\" \"t\" {\n  health_check {\n    path = \"/ready\"\n    interval = 10\n    healthy_threshold = 3\n  }\n}\n",
            ),
        },
        Case {
            // Every task may stop at once. (50 % of one task rounds up to that task: no hazard.)
            id: "service-min-healthy-below-100",
            severity: Severity::Error,
            bad: service("  desired_count = 1\n  deployment_minimum_healthy_percent = 0"),
            good: service("  desired_count = 1\n  deployment_minimum_healthy_percent = 50"),
        },
        Case {
            id: "service-min-healthy-below-100",
            severity: Severity::Warning,
            bad: service("  desired_count = 4\n  deployment_minimum_healthy_percent = 50"),
            good: service("  desired_count = 4"),
        },
        Case {
            id: "no-validation-hook",
            severity: Severity::Error,
            bad: appspec("BeforeInstall", "web"),
            good: appspec("AfterAllowTestTraffic", "web"),
        },
        Case {
            id: "appspec-container-mismatch",
            severity: Severity::Error,
            bad: appspec("AfterAllowTestTraffic", "app"),
            good: appspec("AfterAllowTestTraffic", "web"),
        },
    ]
}

#[test]
fn every_hazard_is_raised_by_its_fixture_and_not_by_the_fixed_twin() {
    let cases = cases();
    for (i, case) in cases.iter().enumerate() {
        let bad = case.bad.check();
        let raised = with_id(&bad, case.id);
        assert!(
            raised.iter().any(|h| h.severity == case.severity),
            "case {i} {}: expected a {:?}, got:\n{}",
            case.id,
            case.severity,
            show(&bad)
        );
        for h in &raised {
            let file = h.file.file_name().unwrap().to_str().unwrap();
            assert!(
                h.line > 0 && ["main.tf", "taskdef.json", "appspec.yaml"].contains(&file),
                "case {i}: {h}"
            );
            assert!(!h.reason.is_empty() && !h.fix.is_empty());
        }
        let good = case.good.check();
        assert!(
            with_id(&good, case.id).is_empty(),
            "case {i} {}: the fixed twin still raises:\n{}",
            case.id,
            show(&good)
        );
    }
    // Every id the checks know has a case.
    let ids: std::collections::BTreeSet<&str> = cases.iter().map(|c| c.id).collect();
    let known: std::collections::BTreeSet<&str> = preflight::HAZARD_IDS.iter().copied().collect();
    assert_eq!(ids, known);
}

/// docs/failure-modes.md#fm-3: a 100/100 refresh does replace instances, one at a time
/// ("Setting the minimum healthy percentage to 100 percent limits the rate of replacement to one
/// instance at a time", RefreshPreferences), terminating each before its replacement launches
/// (as localaws's `batch` rule does): the hazard says so, and its fix is launching first.
#[test]
fn refresh_no_headroom_at_100_100_says_one_at_a_time_terminate_first() {
    let hazards = Setup {
        tf: Some("resource \"aws_autoscaling_group\" \"g\" {\n  health_check_type = \"ELB\"\n  instance_refresh {\n    strategy = \"Rolling\"\n    preferences {\n      min_healthy_percentage = 100\n    }\n  }\n}\n"),
        ..Setup::default()
    }
    .check();
    let found = with_id(&hazards, "refresh-no-headroom");
    assert_eq!(found.len(), 1, "{}", show(&hazards));
    let h = found[0];
    assert_eq!(h.line, 6, "the min_healthy_percentage attribute");
    for claim in [
        "one instance at a time",
        "terminates each before",
        "one instance short",
    ] {
        assert!(h.reason.contains(claim), "{claim:?} not in {:?}", h.reason);
    }
    assert!(!h.reason.contains("cannot replace"), "{}", h.reason);
    assert!(
        h.fix.contains("max_healthy_percentage above 100") && h.fix.contains("accept the dip"),
        "{}",
        h.fix
    );
}

#[test]
fn a_hazard_points_at_the_attribute_line_or_its_block() {
    let hazards = Setup {
        tf: Some("# the load balancer\nresource \"aws_lb\" \"a\" {\n  name = \"demo-alb\"\n\n  idle_timeout = 90\n}\nresource \"aws_ecs_service\" \"s\" {\n  desired_count = 2\n  load_balancer {\n    container_name = \"web\"\n  }\n}\n"),
        ..Setup::default()
    }
    .check();
    let idle = with_id(&hazards, "keepalive-below-idle-timeout");
    assert_eq!(idle.len(), 1);
    assert_eq!(idle[0].line, 5, "the idle_timeout attribute");
    assert_eq!(idle[0].resource, "aws_lb.a");
    assert!(
        idle[0].reason.contains("90 s") && idle[0].reason.contains("75 s"),
        "{}",
        idle[0].reason
    );
    let grace = with_id(&hazards, "no-health-check-grace-period");
    assert_eq!(
        grace[0].line, 7,
        "the service block, where the attribute is missing"
    );
}

#[test]
fn aws_defaults_and_unknown_values_raise_nothing() {
    // Capacity provider without managed_draining: ENABLED by default. Values only known after
    // apply (a variable without default, a resource attribute) are not guessed.
    let hazards = Setup {
        tf: Some(concat!(
            "variable \"hc\" {\n  type = string\n}\n",
            "resource \"aws_ecs_service\" \"s\" {\n  desired_count = var.count\n  health_check_grace_period_seconds = var.grace\n  deployment_controller {\n    type = \"CODE_DEPLOY\"\n  }\n  load_balancer {\n    container_name = \"web\"\n  }\n}\n",
            "resource \"aws_ecs_capacity_provider\" \"cp\" {\n  auto_scaling_group_provider {\n    auto_scaling_group_arn = aws_autoscaling_group.g.arn\n  }\n}\n",
            "resource \"aws_autoscaling_group\" \"g\" {\n  health_check_type = var.hc\n  launch_template {\n    id = \"lt\"\n    version = aws_launch_template.lt.latest_version\n  }\n}\n",
            "resource \"aws_lb\" \"a\" {\n  idle_timeout = aws_x.y.z\n}\n",
            "resource \"aws_lb_target_group\" \"b\" {\n  deregistration_delay = data.x.y\n  health_check {\n    path              = var.path\n    interval          = var.interval\n    healthy_threshold = var.threshold\n  }\n}\n",
        )),
        ..Setup::default()
    }
    .check();
    assert!(hazards.is_empty(), "{}", show(&hazards));
}

#[test]
fn values_flow_through_variables_tfvars_locals_and_modules() {
    // A bad idle timeout set in terraform.tfvars, passed through a local and a module input,
    // is reported at the module's attribute; the same with a good value is not.
    for (idle, expect) in [(90, true), (50, false)] {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("envs/dev");
        let module = dir.path().join("modules/lb");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&module).unwrap();
        std::fs::write(root.join("main.tf"), "variable \"idle\" {\n  type    = number\n  default = 30\n}\nlocals {\n  lb = { idle = var.idle, name = \"demo\" }\n}\nmodule \"lb\" {\n  source = \"../../modules/lb\"\n  idle   = local.lb.idle\n  name   = \"${local.lb.name}-alb\"\n}\n").unwrap();
        std::fs::write(root.join("terraform.tfvars"), format!("idle = {idle}\n")).unwrap();
        std::fs::write(module.join("main.tf"), "variable \"idle\" {\n  type = number\n}\nvariable \"name\" {\n  type = string\n}\nresource \"aws_lb\" \"this\" {\n  name         = var.name\n  idle_timeout = var.idle\n}\noutput \"name\" {\n  value = aws_lb.this.name\n}\n").unwrap();
        let cfg = Config::load(&root).unwrap();
        let lb = cfg.resources_of("aws_lb");
        assert_eq!(lb[0].address(), "module.lb.aws_lb.this");
        assert_eq!(lb[0].get("name").0.string().as_deref(), Some("demo-alb"));
        assert_eq!(lb[0].block.location.file, module.join("main.tf"));
        let hazards = preflight::check(&Inputs {
            terraform: Some(cfg),
            ..Inputs::default()
        });
        let found = with_id(&hazards, "keepalive-below-idle-timeout");
        assert_eq!(!found.is_empty(), expect, "idle {idle}: {}", show(&hazards));
        if expect {
            assert_eq!(found[0].file, module.join("main.tf"));
            assert_eq!(found[0].line, 9);
            assert_eq!(found[0].resource, "module.lb.aws_lb.this");
        }
    }
}

#[test]
fn the_original_projects_configuration_raises_each_of_its_hazards() {
    let dir = fixture("original");
    let inputs = Inputs {
        terraform: Some(Config::load(&dir.join("terraform")).unwrap()),
        task_definition: Some(TaskDefinition::from_file(&dir.join("taskdef.json")).unwrap()),
        appspec: Some(AppSpec::from_file(&dir.join("appspec.yaml")).unwrap()),
    };
    let hazards = preflight::check(&inputs);
    for id in [
        "no-managed-draining",
        "static-host-port",
        "drain-timing",
        "keepalive-below-idle-timeout",
        "no-health-check-grace-period",
        "asg-health-check-ec2",
        "refresh-no-headroom",
        "scale-in-protection-blocks-refresh",
        "codedeploy-no-auto-rollback",
        "no-test-listener",
        "no-validation-hook",
        "ready-wait-forever",
        "desired-count-zero",
    ] {
        assert!(
            with_id(&hazards, id)
                .iter()
                .any(|h| h.severity == Severity::Error),
            "{id} not raised as an error:\n{}",
            show(&hazards)
        );
    }
    for id in [
        "launch-template-unpinned",
        "slow-deregistration",
        "all-at-once",
    ] {
        assert!(
            !with_id(&hazards, id).is_empty(),
            "{id} not raised:\n{}",
            show(&hazards)
        );
    }
    // The static port is found both in Terraform and in the task definition file.
    let ports = with_id(&hazards, "static-host-port");
    assert!(
        ports
            .iter()
            .any(|h| h.file.ends_with("taskdef.json") && h.line == 10),
        "{}",
        show(&hazards)
    );
    assert!(
        ports
            .iter()
            .any(|h| h.resource == "aws_ecs_task_definition.web container web")
    );
    // Errors come first.
    let first_warning = hazards
        .iter()
        .position(|h| h.severity == Severity::Warning)
        .unwrap();
    assert_eq!(errors(&hazards).len(), first_warning);
}

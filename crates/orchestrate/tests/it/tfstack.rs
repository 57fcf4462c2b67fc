//! `orchestrate rehearse --terraform DIR`: the stack derived from a Terraform configuration.
//! The project's own `terraform/envs/dev` derives the embedded demo stack and rehearses clean; the
//! original project's flawed configuration fails its scenarios for the reasons preflight names;
//! one flaw put into a copy of the project's configuration fails exactly the scenario it breaks,
//! and one flaw fixed in the original flips exactly the scenario it caused;
//! data sources and remote state become a list of assumptions, and the rehearsal still runs.

use std::path::{Path, PathBuf};

use localaws::Stack;
use orchestrate::preflight::{self, Inputs};
use tfstack::derive::{DeriveOptions, derive_dir};
use tfstack::terraform::Config;
use tokio::process::Command;

use crate::util::{fixture, repo};

const BIN: &str = env!("CARGO_BIN_EXE_orchestrate");

/// `orchestrate rehearse --terraform DIR --scenario ... --time-scale 240`: the exit code,
/// stdout, and the summary rows.
async fn rehearse(
    dir: &Path,
    scenarios: &[&str],
    extra: &[&str],
) -> (Option<i32>, String, Vec<serde_json::Value>) {
    let reports = crate::util::ReportDir::new();
    let summary = reports.path().join("summary.json");
    let mut cmd = Command::new(BIN);
    cmd.arg("rehearse")
        .arg("--terraform")
        .arg(dir)
        .arg("--report-dir")
        .arg(reports.path())
        .arg("--json")
        .arg(&summary)
        .args(["--time-scale", TIME_SCALE])
        .args(extra);
    for s in scenarios {
        cmd.arg("--scenario").arg(s);
    }
    let out = cmd.output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let rows = match std::fs::read(&summary) {
        Ok(bytes) => serde_json::from_slice::<serde_json::Value>(&bytes)
            .unwrap()
            .as_array()
            .cloned()
            .unwrap(),
        Err(_) => panic!(
            "no summary\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        ),
    };
    (out.status.code(), stdout, rows)
}

/// The clock of every rehearsal here. These tests judge what a derived stack does, not how long
/// AWS takes: at 240x the original fixture's release fails when CodeDeploy's install timeout (an
/// hour) runs out after 15 s of real time, and the dev environment's refresh and canary take 31 s
/// instead of 55 s (`orchestrate rehearse --terraform terraform/envs/dev --time-scale 240`),
/// still with thousands of requests each; process starts, health checks and drains stay real
/// (localaws's clock floors), so a refresh without managed draining still drops most of the
/// requests around a terminated instance. The embedded matrix keeps the command's default (60x):
/// at 240x its zero-deregistration-delay control cuts a single slow request.
const TIME_SCALE: &str = "240";

fn row<'a>(rows: &'a [serde_json::Value], name: &str) -> &'a serde_json::Value {
    rows.iter()
        .find(|r| r["scenario"] == name)
        .unwrap_or_else(|| panic!("no row {name}: {rows:?}"))
}

/// The first cause of a failed row: `id at file:line (resource): ...`.
fn first_cause(r: &serde_json::Value) -> String {
    r["causes"][0]
        .as_str()
        .unwrap_or_else(|| panic!("no cause: {r}"))
        .to_owned()
}

/// A copy of a directory tree.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Replaces `from` (which must occur exactly once) in a file.
/// A test that expects zero errors from a configuration first asks preflight whether it holds a
/// flaw that drops a request only now and then: `keepalive-below-idle-timeout`
/// (docs/failure-modes.md#fm-6) fails one request in a rare run, so such a test would too
/// (docs/testing.md, run 9 of the hunt on `dabd397`).
fn assert_no_intermittent_flaw(dir: &Path) {
    let hazards = preflight::check(&Inputs {
        terraform: Some(Config::load(dir).unwrap()),
        ..Inputs::default()
    });
    let found: Vec<_> = hazards
        .iter()
        .filter(|h| h.id == "keepalive-below-idle-timeout")
        .map(|h| format!("{}:{} {}", h.file.display(), h.line, h.reason))
        .collect();
    assert!(found.is_empty(), "{found:#?}");
}

fn edit(file: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(file).unwrap();
    assert_eq!(
        text.matches(from).count(),
        1,
        "{from:?} in {}",
        file.display()
    );
    std::fs::write(file, text.replace(from, to)).unwrap();
}

#[test]
fn the_dev_environment_derives_the_embedded_default_stack() {
    let began = std::time::Instant::now();
    let d = derive_dir(
        &repo().join("terraform/envs/dev"),
        &DeriveOptions::default(),
    )
    .unwrap();
    let took = began.elapsed();
    let s = &d.stack;
    let e = Stack::embedded().unwrap();

    // Names everywhere, and the settings a rollout depends on. Left out on purpose: time_scale
    // and listener ports (localaws's), the ASG health check grace period (the demo's 60 s keeps
    // localaws quick; Terraform's 300 s covers a real boot), the target groups' health check
    // timeout and the application's own timings (the demo drains faster than production).
    assert_eq!(s.cluster.name, e.cluster.name);
    let (sa, ea) = (
        s.auto_scaling_group.as_ref().unwrap(),
        e.auto_scaling_group.as_ref().unwrap(),
    );
    assert_eq!(
        (&sa.name, sa.min_size, sa.max_size, sa.desired_capacity),
        (&ea.name, ea.min_size, ea.max_size, ea.desired_capacity)
    );
    assert_eq!(sa.health_check_type, ea.health_check_type);
    assert_eq!(sa.launch_template, ea.launch_template);
    assert_eq!(sa.capacity_provider.name, ea.capacity_provider.name);
    assert!(sa.capacity_provider.managed_draining && ea.capacity_provider.managed_draining);
    let names = |s: &Stack| {
        s.launch_templates
            .iter()
            .map(|l| l.name.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(s), names(&e));

    assert_eq!(s.target_groups.len(), e.target_groups.len());
    for (a, b) in s.target_groups.iter().zip(&e.target_groups) {
        assert_eq!(a.name, b.name);
        assert_eq!(a.deregistration_delay, b.deregistration_delay, "{}", a.name);
        let (x, y) = (&a.health_check, &b.health_check);
        assert_eq!(
            (
                &x.path,
                x.interval,
                x.healthy_threshold,
                x.unhealthy_threshold,
                &x.matcher
            ),
            (
                &y.path,
                y.interval,
                y.healthy_threshold,
                y.unhealthy_threshold,
                &y.matcher
            ),
            "{}",
            a.name
        );
    }

    assert_eq!(s.load_balancers.len(), 1);
    let (sl, el) = (&s.load_balancers[0], &e.load_balancers[0]);
    assert_eq!((&sl.name, sl.idle_timeout), (&el.name, el.idle_timeout));
    let serving = |l: &stack::ListenerConfig| {
        let mut v: Vec<String> = l
            .forward
            .iter()
            .filter(|f| f.weight > 0)
            .map(|f| f.target_group.clone())
            .collect();
        v.sort();
        (l.name.clone(), v)
    };
    assert_eq!(
        sl.listeners.iter().map(serving).collect::<Vec<_>>(),
        el.listeners.iter().map(serving).collect::<Vec<_>>()
    );

    assert_eq!(s.services, e.services);

    assert_eq!(s.task_definitions.len(), 1);
    let (st, et) = (&s.task_definitions[0], &e.task_definitions[0]);
    assert_eq!(
        (&st.family, &st.network_mode),
        (&et.family, &et.network_mode)
    );
    let (sc, ec) = (&st.container_definitions[0], &et.container_definitions[0]);
    assert_eq!((&sc.name, &sc.image), (&ec.name, &ec.image));
    assert_eq!(sc.port_mappings[0].container_port, 8080);
    assert_eq!(sc.port_mappings[0].host_port, Some(0), "dynamic host port");
    assert_eq!(
        sc.health_check.as_ref().map(|h| &h.command),
        ec.health_check.as_ref().map(|h| &h.command)
    );
    let env = |c: &stack::ContainerDefinition, k: &str| {
        c.environment
            .iter()
            .find(|kv| kv.name == k)
            .map(|kv| kv.value.clone())
    };
    // Production's timings: stopTimeout above the shutdown timeout, above the drain delay.
    assert_eq!(env(sc, "DRAIN_DELAY_SECONDS").as_deref(), Some("5"));
    assert_eq!(env(sc, "SHUTDOWN_TIMEOUT_SECONDS").as_deref(), Some("25"));
    assert_eq!(sc.stop_timeout, Some(30));

    assert_eq!(s.codedeploy, e.codedeploy);
    assert_eq!(s.alarms, e.alarms);

    // The configuration's refresh preferences: replacements launch first.
    assert_eq!((d.refresh.min_healthy, d.refresh.max_healthy), (100, 200));
    // Only what really is unknown before apply: the SSM parameter's AMI, the launch template
    // version, the ECR image, and the listener ports.
    let unknown: Vec<String> = d.assumptions.iter().map(|a| a.setting.clone()).collect();
    assert_eq!(d.assumptions.len(), 5, "{unknown:#?}");
    let ami = d
        .assumptions
        .iter()
        .find(|a| a.setting.ends_with("image_id"))
        .unwrap();
    assert!(
        ami.reason.contains("data.aws_ssm_parameter.ecs_ami"),
        "{ami}"
    );
    assert!(
        ami.location
            .file
            .ends_with("terraform/modules/compute/main.tf"),
        "{ami}"
    );
    assert!(took.as_millis() < 2000, "derivation took {took:?}");
}

#[test]
fn the_original_fixture_derives_its_flaws() {
    let d = derive_dir(
        &fixture("original").join("terraform"),
        &DeriveOptions::default(),
    )
    .unwrap();
    let s = &d.stack;
    let asg = s.auto_scaling_group.as_ref().unwrap();
    assert!(
        !asg.capacity_provider.managed_draining,
        "no capacity provider"
    );
    assert_eq!(asg.launch_template.version, "$Latest");
    assert_eq!(asg.health_check_type, "EC2");
    assert_eq!((asg.min_size, asg.max_size), (2, 2));
    let c = &s.task_definitions[0].container_definitions[0];
    assert_eq!(c.port_mappings[0].host_port, Some(8080), "static host port");
    assert_eq!(c.stop_timeout, None, "the ECS default 30 s");
    let tg = &s.target_groups[0];
    assert_eq!(tg.deregistration_delay, 300);
    assert_eq!(tg.health_check.path, "/");
    let svc = &s.services[0];
    assert_eq!(svc.desired_count, 0);
    assert_eq!(svc.health_check_grace_period, 0);
    let g = &s.codedeploy.as_ref().unwrap().applications[0].deployment_groups[0];
    assert_eq!(g.test_listener, None);
    assert_eq!(g.deployment_ready.action_on_timeout, "STOP_DEPLOYMENT");
    assert!(!g.auto_rollback.enabled);
    assert_eq!(d.refresh.min_healthy, 100);
    assert_eq!(d.refresh.max_healthy, 100);
    // Assumptions name the file and line.
    let text: Vec<String> = d.assumptions.iter().map(ToString::to_string).collect();
    for (setting, line) in [
        ("aws_launch_template.ecs name", 23),
        ("aws_autoscaling_group.ecs capacity provider", 29),
    ] {
        let a = d
            .assumptions
            .iter()
            .find(|a| a.setting == setting)
            .unwrap_or_else(|| panic!("{setting}: {text:#?}"));
        assert_eq!(a.location.line, line, "{a}");
    }
}

/// A configuration with data sources, remote state and a function the reader does not know.
const PARTLY_KNOWN: &str = r#"
data "terraform_remote_state" "net" {
  backend = "s3"
  config = {
    bucket = "state"
    key    = "net.tfstate"
  }
}

data "aws_ami" "ecs" {
  most_recent = true
  owners      = ["amazon"]
}

variable "desired" {
  default = 2
}

resource "aws_ecs_cluster" "c" {
  name = "rs-cluster"
}

resource "aws_launch_template" "lt" {
  name     = "rs-lt"
  image_id = data.aws_ami.ecs.id
}

resource "aws_autoscaling_group" "g" {
  name                = "rs-asg"
  min_size            = 2
  max_size            = 4
  desired_capacity    = 2
  vpc_zone_identifier = data.terraform_remote_state.net.outputs.private_subnets
  health_check_type   = "ELB"

  launch_template {
    id      = aws_launch_template.lt.id
    version = aws_launch_template.lt.latest_version
  }

  instance_refresh {
    strategy = "Rolling"
    preferences {
      min_healthy_percentage = 100
      max_healthy_percentage = 200
    }
  }
}

resource "aws_ecs_capacity_provider" "cp" {
  name = "rs-cp"
  auto_scaling_group_provider {
    auto_scaling_group_arn = aws_autoscaling_group.g.arn
  }
}

resource "aws_lb" "lb" {
  name         = "rs-alb"
  idle_timeout = data.terraform_remote_state.net.outputs.idle_timeout
}

resource "aws_lb_target_group" "tg" {
  name                 = "rs-tg"
  deregistration_delay = 10
  health_check {
    path              = "/ready"
    interval          = 5
    timeout           = 2
    healthy_threshold = 2
  }
}

resource "aws_lb_listener" "l" {
  load_balancer_arn = aws_lb.lb.arn
  port              = 80
  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.tg.arn
  }
}

resource "aws_ecs_task_definition" "td" {
  family = "rs-web"
  container_definitions = jsonencode([{
    name         = "web"
    image        = "${data.terraform_remote_state.net.outputs.registry}/web:1"
    stopTimeout  = 10
    portMappings = [{ containerPort = 8080, hostPort = 0 }]
    environment = [
      { name = "DRAIN_DELAY_SECONDS", value = "1" },
      { name = "SHUTDOWN_TIMEOUT_SECONDS", value = "5" },
      { name = "APP_MSG", value = file("${path.module}/message.txt") },
    ]
  }])
}

resource "aws_ecs_service" "svc" {
  name                              = "rs-svc"
  cluster                           = aws_ecs_cluster.c.id
  task_definition                   = aws_ecs_task_definition.td.arn
  desired_count                     = var.desired
  health_check_grace_period_seconds = 30
  load_balancer {
    target_group_arn = aws_lb_target_group.tg.arn
    container_name   = "web"
    container_port   = 8080
  }
}
"#;

/// The original fixture's task definitions, as derived.
fn original_task_definitions() -> Vec<stack::TaskDefinition> {
    derive_dir(
        &fixture("original").join("terraform"),
        &DeriveOptions::default(),
    )
    .unwrap()
    .stack
    .task_definitions
}

/// A copy of the original fixture whose task definition's `container_definitions = jsonencode(
/// [...])` is `call` (one line of HCL) instead, with `files` written beside its `main.tf`.
fn original_with_containers(call: &str, files: &[(&str, &str)]) -> tempfile::TempDir {
    let original = fixture("original").join("terraform");
    let main = std::fs::read_to_string(original.join("main.tf")).unwrap();
    let start = main.find("  container_definitions = jsonencode([").unwrap();
    let end = start + main[start..].find("\n  ])\n").unwrap() + "\n  ])\n".len();
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&original, dir.path());
    std::fs::write(
        dir.path().join("main.tf"),
        format!("{}{call}{}", &main[..start], &main[end..]),
    )
    .unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

/// Container definitions from `templatefile()` (variables partly known after apply) and from
/// `file()` derive the same task definition as the `jsonencode(...)` they replace.
#[test]
fn container_definitions_from_templatefile_and_file_derive_like_jsonencode() {
    let expected = original_task_definitions();
    let template = r#"[{"name": "web", "image": "${image}", "essential": true, "memory": 256,
  "portMappings": [{"containerPort": ${port}, "hostPort": ${port}}],
  "environment": [{"name": "SHUTDOWN_TIMEOUT_SECONDS", "value": "45"},
                  {"name": "IDLE_TIMEOUT_SECONDS", "value": "${keepalive}"}]}]"#;
    let rendered = template
        .replace("${image}", "demo/web:latest")
        .replace("${port}", "8080")
        .replace("${keepalive}", "5");
    for (call, files) in [
        (
            "  container_definitions = templatefile(\"${path.module}/web.json.tftpl\", { image = \"demo/web:latest\", port = var.app_port, keepalive = local.keepalive })\n",
            [("web.json.tftpl", template)],
        ),
        (
            // Relative to the root module, as Terraform resolves it.
            "  container_definitions = file(\"web.json\")\n",
            [("web.json", rendered.as_str())],
        ),
    ] {
        let dir = original_with_containers(call, &files);
        let d = derive_dir(dir.path(), &DeriveOptions::default()).unwrap();
        assert_eq!(d.stack.task_definitions, expected, "{call}");
    }
    // A template whose file is missing is not guessed: the derivation says where and why.
    let dir = original_with_containers("  container_definitions = file(\"missing.json\")\n", &[]);
    let e = derive_dir(dir.path(), &DeriveOptions::default()).unwrap_err();
    assert!(
        e.to_string()
            .contains("container_definitions cannot be evaluated statically"),
        "{e}"
    );
}

/// A task definition of several containers derives every container that can run here: a
/// sidecar of a local image runs beside the application; a log router whose image is not local
/// is left out, saying so (the project's server in its place would rehearse something else),
/// while the container the load balancer reaches always runs.
#[test]
fn every_container_derives_and_a_sidecar_without_a_local_image_is_left_out_saying_so() {
    let expected = original_task_definitions();
    let json = r#"[
  {"name": "log_router", "essential": false,
   "image": "public.ecr.aws/aws-observability/aws-for-fluent-bit:stable"},
  {"name": "web", "image": "demo/web:latest", "essential": true, "memory": 256,
   "portMappings": [{"containerPort": 8080, "hostPort": 8080}],
   "environment": [{"name": "SHUTDOWN_TIMEOUT_SECONDS", "value": "45"},
                   {"name": "IDLE_TIMEOUT_SECONDS", "value": "5"}]},
  {"name": "warmer", "image": "server", "essential": false}]"#;
    let dir = original_with_containers(
        "  container_definitions = file(\"web.json\")\n",
        &[("web.json", json)],
    );
    let d = derive_dir(dir.path(), &DeriveOptions::default()).unwrap();
    let containers = &d.stack.task_definitions[0].container_definitions;
    let names: Vec<&str> = containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["web", "warmer"]);
    assert_eq!(containers[0], expected[0].container_definitions[0]);
    assert_eq!(containers[1].image, "server");
    assert_eq!(containers[1].essential, Some(false));
    let left_out: Vec<String> = d
        .assumptions
        .iter()
        .filter(|a| a.used.contains("container left out"))
        .map(|a| a.setting.clone())
        .collect();
    assert_eq!(left_out.len(), 1, "{:#?}", d.assumptions);
    assert!(
        left_out[0].ends_with("container_definitions[0].image"),
        "{left_out:?}"
    );
}

fn partly_known() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let tf = dir.path().join("tf");
    std::fs::create_dir_all(&tf).unwrap();
    std::fs::write(tf.join("main.tf"), PARTLY_KNOWN).unwrap();
    (dir, tf)
}

#[test]
fn data_sources_and_remote_state_become_assumptions_with_file_and_line() {
    let (_dir, tf) = partly_known();
    let d = derive_dir(&tf, &DeriveOptions::default()).unwrap();
    let find = |setting: &str| {
        d.assumptions
            .iter()
            .find(|a| a.setting.ends_with(setting))
            .unwrap_or_else(|| panic!("{setting}: {:#?}", d.assumptions))
    };
    let ami = find("aws_launch_template.lt image_id");
    assert!(ami.reason.contains("data source data.aws_ami.ecs"), "{ami}");
    assert_eq!(ami.location.line, 25, "{ami}");
    assert_eq!(ami.used, tfstack::derive::ASSUMED_AMI);
    let idle = find("aws_lb.lb idle_timeout");
    assert!(
        idle.reason
            .contains("remote state data.terraform_remote_state.net"),
        "{idle}"
    );
    assert_eq!(idle.used, "60", "the ALB default");
    assert_eq!(d.stack.load_balancers[0].idle_timeout, 60);
    assert!(
        find("container_definitions[0].environment APP_MSG")
            .used
            .contains("unset")
    );
    assert!(
        find("container_definitions[0].image")
            .used
            .contains("server")
    );
    assert!(
        find("launch_template.version")
            .reason
            .contains("latest_version")
    );
    // The known parts are kept.
    let c = &d.stack.task_definitions[0].container_definitions[0];
    assert_eq!(c.stop_timeout, Some(10));
    assert!(
        c.environment
            .iter()
            .any(|kv| kv.name == "DRAIN_DELAY_SECONDS")
    );
    assert_eq!(d.stack.services[0].desired_count, 2);
    assert!(
        d.stack
            .auto_scaling_group
            .as_ref()
            .unwrap()
            .capacity_provider
            .managed_draining,
        "managed draining defaults to ENABLED"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn print_stack_writes_a_stack_localaws_reads_and_lists_the_assumptions() {
    let (_dir, tf) = partly_known();
    let out = Command::new(BIN)
        .args(["rehearse", "--print-stack", "--terraform"])
        .arg(&tf)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("#   ") && l.contains("main.tf:25")),
        "{text}"
    );
    let stack = Stack::parse(&text, "printed").unwrap();
    assert_eq!(stack.services[0].name, "rs-svc");
    // A directory without Terraform is bad input.
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["rehearse", "--print-stack", "--terraform"])
        .arg(empty.path())
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no .tf files"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partly_known_configuration_still_rehearses() {
    let _slot = crate::util::slot().await;
    let (_dir, tf) = partly_known();
    assert_no_intermittent_flaw(&tf);
    let (code, stdout, rows) = rehearse(&tf, &["refresh"], &[]).await;
    assert!(
        stdout.contains("values not known before apply") && stdout.contains("main.tf:25"),
        "{stdout}"
    );
    assert_eq!(code, Some(0), "{stdout}");
    assert_eq!(row(&rows, "refresh")["errors"], 0, "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dev_environment_rehearses_clean() {
    let _slot = crate::util::slot().await;
    // The release is what deploys register: codedeploy/taskdef.template.json.
    let template = repo().join("codedeploy/taskdef.template.json");
    assert_no_intermittent_flaw(&repo().join("terraform/envs/dev"));
    let (code, stdout, rows) = rehearse(
        &repo().join("terraform/envs/dev"),
        &["refresh", "bluegreen-canary"],
        &["--task-definition", template.to_str().unwrap()],
    )
    .await;
    assert_eq!(code, Some(0), "{stdout}");
    // Its placeholders are all the deploy's own: nothing assumed about them.
    assert!(!stdout.contains("placeholder {{"), "{stdout}");
    for name in ["refresh", "bluegreen-canary"] {
        let r = row(&rows, name);
        assert_eq!(r["as_expected"], true, "{r}");
        assert_eq!(r["errors"], 0, "{r}");
        assert!(r["requests"].as_u64().unwrap() > 1000, "{r}");
    }
    assert!(
        row(&rows, "refresh")["rollout"]
            .as_str()
            .unwrap()
            .contains("Successful")
    );
    assert!(
        row(&rows, "bluegreen-canary")["rollout"]
            .as_str()
            .unwrap()
            .contains("Succeeded")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_original_fixture_fails_its_scenarios_for_the_reasons_preflight_names() {
    let _slot = crate::util::slot().await;
    let original = fixture("original").join("terraform");
    // As written: desired_count 0 runs nothing, which masks every other flaw.
    let (code, stdout, rows) = rehearse(&original, &["refresh", "bluegreen-canary"], &[]).await;
    assert_eq!(code, Some(1), "{stdout}");
    for name in ["refresh", "bluegreen-canary"] {
        let r = row(&rows, name);
        assert_eq!(r["as_expected"], false, "{r}");
        let cause = first_cause(r);
        assert!(
            cause.starts_with("desired-count-zero at ")
                && cause.contains("main.tf:103 (aws_ecs_service.web)"),
            "{cause}"
        );
    }

    // With a desired count, the flaws beneath: the refresh drops requests because nothing
    // drains the instances; the green task set cannot take the static host port beside blue.
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&original, dir.path());
    edit(
        &dir.path().join("main.tf"),
        "desired_count = 0",
        "desired_count = 2",
    );
    let (code, stdout, rows) = rehearse(dir.path(), &["refresh", "bluegreen-canary"], &[]).await;
    assert_eq!(code, Some(1), "{stdout}");
    let refresh = row(&rows, "refresh");
    assert!(refresh["errors"].as_u64().unwrap() > 0, "{refresh}");
    assert!(
        refresh["incident"]
            .as_str()
            .unwrap()
            .contains("http_502_lb"),
        "{refresh}"
    );
    let cause = first_cause(refresh);
    assert!(
        cause.starts_with("no-managed-draining at ")
            && cause.contains("main.tf:29 (aws_autoscaling_group.ecs)"),
        "{cause}"
    );
    let bg = row(&rows, "bluegreen-canary");
    assert_eq!(bg["as_expected"], false, "{bg}");
    assert!(
        !bg["rollout"].as_str().unwrap().contains("Succeeded"),
        "{bg}"
    );
    let cause = first_cause(bg);
    assert!(
        cause.starts_with("static-host-port at ")
            && cause.contains("main.tf:83 (aws_ecs_task_definition.web container web)"),
        "{cause}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_flaw_fails_exactly_the_scenario_it_breaks() {
    let _slot = crate::util::slot().await;
    // The project's configuration with managed draining turned off: the refresh now fails,
    // pointing at the capacity provider; the blue/green release still passes.
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&repo().join("terraform"), dir.path());
    edit(
        &dir.path().join("envs/dev/main.tf"),
        "managed_draining               = \"ENABLED\"",
        "managed_draining               = \"DISABLED\"",
    );
    assert_no_intermittent_flaw(&dir.path().join("envs/dev"));
    let (code, stdout, rows) = rehearse(
        &dir.path().join("envs/dev"),
        &["refresh", "bluegreen-canary"],
        &[],
    )
    .await;
    assert_eq!(code, Some(1), "{stdout}");
    let refresh = row(&rows, "refresh");
    assert_eq!(refresh["as_expected"], false, "{refresh}");
    assert!(refresh["errors"].as_u64().unwrap() > 0, "{refresh}");
    let cause = first_cause(refresh);
    assert!(
        cause.starts_with("no-managed-draining at ")
            && cause.contains("modules/cluster/main.tf")
            && cause.contains("module.cluster.aws_ecs_capacity_provider.this"),
        "{cause}"
    );
    let bg = row(&rows, "bluegreen-canary");
    assert_eq!(bg["as_expected"], true, "{bg}");
    assert_eq!(bg["errors"], 0, "{bg}");
}

/// The original fixture's twin with one flaw fixed (a capacity provider with managed draining
/// over its group): the refresh that failed with `no-managed-draining` in
/// `the_original_fixture_fails_its_scenarios_for_the_reasons_preflight_names` (same desired
/// count, same time scale) now passes with zero errors; the blue/green release still fails,
/// for the static host port it failed for before.
///
/// The twin also keeps its application's connections open longer than the load balancer's
/// (`keepalive = 75`): the fixture's 5 s is `keepalive-below-idle-timeout`, a flaw that drops a
/// request only when the load balancer reuses a connection at the instant the application
/// closes it (docs/failure-modes.md#fm-6). No scenario here is built to catch it, and a refresh
/// that shifts traffic between tasks now and then does: one `http_502_lb` in a refresh that
/// otherwise passed (docs/testing.md, run 9 of the hunt on `dabd397`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixing_one_flaw_of_the_original_flips_exactly_its_scenario() {
    let _slot = crate::util::slot().await;
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&fixture("original").join("terraform"), dir.path());
    let main = dir.path().join("main.tf");
    edit(&main, "desired_count = 0", "desired_count = 2");
    edit(&main, "keepalive = 5", "keepalive = 75");
    let mut text = std::fs::read_to_string(&main).unwrap();
    text.push_str(
        "\nresource \"aws_ecs_capacity_provider\" \"ecs\" {\n  name = \"demo-cp\"\n\n  \
         auto_scaling_group_provider {\n    auto_scaling_group_arn = aws_autoscaling_group.ecs.arn\n    \
         managed_draining       = \"ENABLED\"\n  }\n}\n",
    );
    std::fs::write(&main, text).unwrap();
    assert_no_intermittent_flaw(dir.path());
    let (code, stdout, rows) = rehearse(dir.path(), &["refresh", "bluegreen-canary"], &[]).await;
    assert_eq!(code, Some(1), "{stdout}");
    let refresh = row(&rows, "refresh");
    assert_eq!(refresh["as_expected"], true, "{refresh}");
    assert_eq!(refresh["errors"], 0, "{refresh}");
    assert!(refresh["requests"].as_u64().unwrap() > 1000, "{refresh}");
    assert!(
        refresh["rollout"].as_str().unwrap().contains("Successful"),
        "{refresh}"
    );
    let bg = row(&rows, "bluegreen-canary");
    assert_eq!(bg["as_expected"], false, "{bg}");
    let cause = first_cause(bg);
    assert!(cause.starts_with("static-host-port at "), "{cause}");
}

/// `--image NAME=...` names a container by its image's repository or, where the image is known
/// only after apply (the dev environment's comes from a variable), by the container's name; a
/// NAME no container answers to is exit 2, listing the containers and their images, never a
/// flag that silently changes nothing.
#[tokio::test]
async fn an_image_flag_names_a_repository_or_a_container_or_is_refused() {
    let dev = repo().join("terraform/envs/dev");
    let print = |flag: &str| {
        let mut cmd = Command::new(BIN);
        cmd.args(["rehearse", "--print-stack", "--terraform"])
            .arg(&dev)
            .args(["--image", flag]);
        cmd
    };
    let out = print("web=docker:ecs-zdt/server:dev")
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stack = Stack::parse(&text, "printed").unwrap();
    assert_eq!(
        stack.images["web"].docker.as_deref(),
        Some("ecs-zdt/server:dev")
    );
    assert_eq!(
        stack.task_definitions[0].container_definitions[0].image,
        "web"
    );

    let out = print("nope=docker:ecs-zdt/server:dev")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("\"nope\"") && stderr.contains("web (image known after apply)"),
        "{stderr}"
    );

    // The original fixture names its image (demo/web:latest): repository `web` matches, a name
    // no container answers to is refused.
    let original = fixture("original").join("terraform");
    for (flag, code) in [("web=/bin/true", 0), ("web-app=/bin/true", 2)] {
        let out = Command::new(BIN)
            .args(["rehearse", "--print-stack", "--terraform"])
            .arg(&original)
            .args(["--image", flag])
            .output()
            .await
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(code),
            "{flag}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

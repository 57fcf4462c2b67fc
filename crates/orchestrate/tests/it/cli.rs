//! The `orchestrate` binary: exit codes 0/1/2, the human report, `--json`, and the defaults
//! found by walking up to the workspace.

use std::path::Path;
use std::process::{Command, Output};

use clap::Parser;
use orchestrate::{Cli, Outcome};

use crate::util::{fixture, repo};

fn orchestrate(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_orchestrate"))
        .current_dir(cwd)
        .args(args)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn defaults_are_found_from_a_subdirectory_and_the_project_is_clean() {
    let out = orchestrate(&repo().join("crates/orchestrate/src"), &["preflight"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("preflight: 0 errors, 0 warnings"),
        "{stdout}"
    );
    assert!(stdout.contains("terraform/envs/dev"), "{stdout}");
}

#[test]
fn the_original_configuration_exits_1_with_a_block_per_hazard_and_json() {
    let dir = fixture("original");
    let json = tempfile::NamedTempFile::new().unwrap();
    let out = orchestrate(
        &repo(),
        &[
            "preflight",
            "--terraform",
            dir.join("terraform").to_str().unwrap(),
            "--task-definition",
            dir.join("taskdef.json").to_str().unwrap(),
            "--appspec",
            dir.join("appspec.yaml").to_str().unwrap(),
            "--json",
            json.path().to_str().unwrap(),
        ],
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    // One block per hazard: header with file:line, then resource, reason, fix.
    let headers: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("error[") || l.starts_with("warning["))
        .collect();
    assert_eq!(stdout.matches("\n  resource: ").count(), headers.len());
    assert_eq!(stdout.matches("\n  fix:      ").count(), headers.len());
    assert!(
        stdout.contains("error[static-host-port] crates/orchestrate/tests/fixtures/original/taskdef.json:10\n  resource: taskdef.json container web"),
        "{stdout}"
    );

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(json.path()).unwrap()).unwrap();
    let hazards = report["hazards"].as_array().unwrap();
    assert_eq!(hazards.len(), headers.len());
    let errors = hazards.iter().filter(|h| h["severity"] == "error").count();
    assert_eq!(report["errors"], errors);
    assert_eq!(report["warnings"], hazards.len() - errors);
    assert!(
        stdout.contains(&format!(
            "preflight: {errors} errors, {} warnings",
            hazards.len() - errors
        )),
        "{stdout}"
    );
    for h in hazards {
        for key in [
            "id", "severity", "file", "line", "resource", "reason", "fix",
        ] {
            assert!(!h[key].is_null(), "{key} missing in {h}");
        }
    }
    let asg = hazards
        .iter()
        .find(|h| h["id"] == "asg-health-check-ec2")
        .unwrap();
    assert_eq!(asg["resource"], "aws_autoscaling_group.ecs");
    assert_eq!(asg["line"], 29);
    assert!(
        asg["file"]
            .as_str()
            .unwrap()
            .ends_with("original/terraform/main.tf")
    );
}

#[test]
fn bad_input_exits_2_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nowhere");
    let out = orchestrate(
        &repo(),
        &["preflight", "--terraform", missing.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("nowhere"),
        "{}",
        text(&out.stderr)
    );

    std::fs::write(dir.path().join("main.tf"), "resource \"aws_lb\" {{ = \n").unwrap();
    let out = orchestrate(
        &repo(),
        &["preflight", "--terraform", dir.path().to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("cannot parse") && text(&out.stderr).contains("main.tf"),
        "{}",
        text(&out.stderr)
    );

    let bad_td = dir.path().join("taskdef.json");
    std::fs::write(&bad_td, "{\"family\": \"x\"}").unwrap();
    let out = orchestrate(
        &repo(),
        &["preflight", "--task-definition", bad_td.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("containerDefinitions"),
        "{}",
        text(&out.stderr)
    );

    // Outside any workspace the defaults cannot be found.
    let out = orchestrate(dir.path(), &["preflight"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no repository found"),
        "{}",
        text(&out.stderr)
    );

    let out = orchestrate(&repo(), &["preflight", "--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test]
async fn run_in_process_returns_the_outcome() {
    let dir = fixture("original");
    let cli = Cli::parse_from([
        "orchestrate",
        "preflight",
        "--terraform",
        dir.join("terraform").to_str().unwrap(),
        "--task-definition",
        dir.join("taskdef.json").to_str().unwrap(),
        "--appspec",
        dir.join("appspec.yaml").to_str().unwrap(),
    ]);
    let mut out = Vec::new();
    assert_eq!(
        orchestrate::run(cli, &mut out).await.unwrap(),
        Outcome::Failed
    );
    assert!(text(&out).contains("error[desired-count-zero]"));

    let root = repo();
    let cli = Cli::parse_from([
        "orchestrate",
        "preflight",
        "--terraform",
        root.join("terraform/envs/dev").to_str().unwrap(),
        "--task-definition",
        root.join("codedeploy/taskdef.template.json")
            .to_str()
            .unwrap(),
        "--appspec",
        root.join("codedeploy/appspec.yaml").to_str().unwrap(),
    ]);
    let mut out = Vec::new();
    assert_eq!(
        orchestrate::run(cli, &mut out).await.unwrap(),
        Outcome::Clean
    );
    assert_eq!(Outcome::Clean.exit_code(), 0);
    assert_eq!(Outcome::Failed.exit_code(), 1);
}

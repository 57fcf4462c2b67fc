//! `orchestrate rehearse --terraform DIR --image NAME=docker:IMAGE`: the dev environment's refresh
//! and canary release with every task a container of the project's image (built FROM scratch by
//! `scripts/build-image.sh`), under the probe's 1,000 requests a second: no error, every response
//! from a container, and no container left once the rehearsal is over. Its negative control is
//! the matrix's own, one knob flipped inside the image: a deregistration delay shorter than the
//! load balancer's propagation lag drops nothing while the application drains, and fails,
//! located and attributed to a task that ran in a container, with `DRAIN_DELAY_SECONDS=0`.
//! An image that does not declare that knob (its label) gets those scenarios listed as not run.
//!
//! Needs a Docker engine (`.ci/run` starts one); without one this test fails, saying so.

use std::path::Path;

use tokio::process::Command;

use crate::util::repo;

const BIN: &str = env!("CARGO_BIN_EXE_orchestrate");
const TAG: &str = "ecs-zdt/server:orchestrate-it";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dev_environment_rehearses_clean_with_container_tasks() {
    let _slot = crate::util::exclusive().await;
    let out = Command::new("bash")
        .arg(repo().join("scripts/build-image.sh"))
        .arg(TAG)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "scripts/build-image.sh failed (this test needs a Docker engine):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    foreign_images_do_not_run_what_they_cannot_flip().await;
    let reports = crate::util::ReportDir::new();
    // The zero-error claims at the dev environment's usual 240x; the negative control and its
    // passing twin at 60x: their variable is the load balancer's 5 s propagation lag, 21 ms of
    // real time at 240x, which a container's stop signal (a call to the engine, then the
    // application's reaction) can outlast, so that a listener closing at once meets no request.
    let mut rows = rehearse(
        &["refresh", "bluegreen-canary"],
        "240",
        &reports.path().join("fast"),
    )
    .await;
    rows.extend(
        rehearse(
            &[
                "refresh-short-dereg-delay",
                "refresh-short-dereg-delay-no-drain",
            ],
            "60",
            &reports.path().join("lag"),
        )
        .await,
    );
    // Whether `task` ran in a container: the application listened on the container's own
    // 0.0.0.0:8080 (a process task binds its instance's 127.B.x.y).
    let in_container = |dir: &Path, task: &str| {
        std::fs::read_to_string(
            dir.join("localaws/tasks")
                .join(format!("{task}.stderr.log")),
        )
        .unwrap_or_default()
        .contains("\"addr\":\"0.0.0.0:8080\"")
    };
    for name in [
        "refresh",
        "bluegreen-canary",
        "refresh-short-dereg-delay",
        "refresh-short-dereg-delay-no-drain",
    ] {
        let row = rows.iter().find(|r| r["scenario"] == name).unwrap();
        assert_eq!(row["as_expected"], true, "{row}");
        assert!(row["requests"].as_u64().unwrap() > 1000, "{row}");
        let dir = Path::new(row["report"].as_str().unwrap());
        let probe: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("probe.json")).unwrap()).unwrap();
        let served = probe["served_by"].as_object().unwrap();
        assert!(!served.is_empty(), "{name}: nothing served");
        // `(none)`: failed requests no task answered.
        for task in served.keys().filter(|t| !t.starts_with('(')) {
            assert!(
                in_container(dir, task),
                "{name}: task {task} did not run in a container"
            );
        }
        if name == "refresh-short-dereg-delay-no-drain" {
            // Detected, located and attributed (what `as_expected` means for a negative
            // control), to tasks that ran in containers.
            assert!(row["errors"].as_u64().unwrap() > 0, "{row}");
            let incident = &probe["incidents"][0];
            let named: Vec<&String> = incident["failed_on"]
                .as_object()
                .unwrap()
                .keys()
                .filter(|t| !t.starts_with('('))
                .collect();
            assert!(!named.is_empty(), "{incident}");
            for task in named {
                assert!(
                    in_container(dir, task),
                    "{name}: failures on {task}, not a container"
                );
            }
        } else {
            assert_eq!(row["errors"], 0, "{row}");
        }
    }
}

/// `orchestrate rehearse` of the dev environment with every task a container of [`TAG`]: the
/// summary's rows, once the run exited 0 and left no container.
async fn rehearse(scenarios: &[&str], time_scale: &str, reports: &Path) -> Vec<serde_json::Value> {
    let summary = reports.join("summary.json");
    let mut cmd = Command::new(BIN);
    cmd.arg("rehearse")
        .arg("--terraform")
        .arg(repo().join("terraform/envs/dev"))
        .args(["--image", &format!("web=docker:{TAG}")])
        .args(["--time-scale", time_scale])
        .arg("--report-dir")
        .arg(reports)
        .arg("--json")
        .arg(&summary)
        .stdout(std::process::Stdio::piped());
    for s in scenarios {
        cmd.args(["--scenario", s]);
    }
    let child = cmd.spawn().unwrap();
    let pid = child.id().unwrap();
    let out = child.wait_with_output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    // No container of that rehearsal is left.
    let ps = std::process::Command::new("docker")
        .args(["ps", "-a", "-q", "--filter"])
        .arg(format!("label=dev.localaws.owner-pid={pid}"))
        .output()
        .unwrap();
    assert!(ps.status.success());
    assert_eq!(
        String::from_utf8_lossy(&ps.stdout).trim(),
        "",
        "containers left after the rehearsal"
    );
    serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap()
}

/// The project's image with its knobs label emptied (as another team's image would have none):
/// the scenarios whose variable is one of the project server's knobs are listed as not run, with
/// the reason; when nothing is left to run, that is exit 2, never a pass.
async fn foreign_images_do_not_run_what_they_cannot_flip() {
    const FOREIGN: &str = "ecs-zdt/foreign:orchestrate-it";
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!("FROM {TAG}\nLABEL dev.ecs-zdt.rehearsal-knobs=\"\"\n"),
    )
    .unwrap();
    let built = Command::new("docker")
        .args(["build", "--quiet", "-t", FOREIGN])
        .arg(ctx.path())
        .output()
        .await
        .unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let reports = crate::util::ReportDir::new();
    let out = Command::new(BIN)
        .arg("rehearse")
        .arg("--terraform")
        .arg(repo().join("terraform/envs/dev"))
        .args(["--image", &format!("web=docker:{FOREIGN}")])
        .args(["--scenario", "refresh-short-dereg-delay-no-drain"])
        .args(["--scenario", "bluegreen-broken-validated"])
        .arg("--report-dir")
        .arg(reports.path())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    for (scenario, knob) in [
        ("refresh-short-dereg-delay-no-drain", "DRAIN_DELAY_SECONDS"),
        ("bluegreen-broken-validated", "PAGE_STATUS"),
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(&format!("not run {scenario}: "))
                    && l.contains(knob)
                    && l.contains(FOREIGN)),
            "{scenario}: {stdout}"
        );
    }
    assert!(stderr.contains("none of the 2 scenarios"), "{stderr}");
    let _ = std::process::Command::new("docker")
        .args(["rmi", FOREIGN])
        .output();
}

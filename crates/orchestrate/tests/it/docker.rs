//! `orchestrate rehearse --terraform DIR --image NAME=docker:IMAGE`: the dev environment's refresh
//! and canary release with every task a container of the project's image (built FROM scratch by
//! `scripts/build-image.sh`), under the probe's 1,000 requests a second: no error, every response
//! from a container, and no container left once the rehearsal is over. Its negative control is
//! the matrix's own: the same refresh with managed draining off fails, located and attributed
//! to a task that ran in a container.
//!
//! Needs a Docker engine (`.ci/run` starts one); without one this test fails, saying so.

use std::path::Path;

use tokio::process::Command;

use crate::util::repo;

const BIN: &str = env!("CARGO_BIN_EXE_orchestrate");
const TAG: &str = "ecs-zdt/server:orchestrate-it";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dev_environment_rehearses_clean_with_container_tasks() {
    let _slot = crate::util::slot().await;
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
    let reports = tempfile::tempdir().unwrap();
    let summary = reports.path().join("summary.json");
    let child = Command::new(BIN)
        .arg("rehearse")
        .arg("--terraform")
        .arg(repo().join("terraform/envs/dev"))
        .args(["--image", &format!("web=docker:{TAG}")])
        .args(["--scenario", "refresh", "--scenario", "bluegreen-canary"])
        .args(["--scenario", "refresh-no-managed-draining"])
        .args(["--time-scale", "240"])
        .arg("--report-dir")
        .arg(reports.path())
        .arg("--json")
        .arg(&summary)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let out = child.wait_with_output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let rows: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
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
    for name in ["refresh", "bluegreen-canary", "refresh-no-managed-draining"] {
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
        if name == "refresh-no-managed-draining" {
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
}

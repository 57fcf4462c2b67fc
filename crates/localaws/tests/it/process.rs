//! The `localaws` binary: its CLI, and that no task outlives it — not on Ctrl-C, not on SIGKILL.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::util::{get, server_bin, service_stack, test_stack};

/// The test stack with two service tasks in `blue`, written to a file; `command` is what image
/// `server` runs.
fn stack_file(dir: &std::path::Path, command: &str) -> std::path::PathBuf {
    let mut stack = service_stack();
    if let Some(image) = stack.images.get_mut("server") {
        image.command = command.to_owned();
    }
    let path = dir.join("stack.toml");
    std::fs::write(&path, toml::to_string(&stack).unwrap()).unwrap();
    path
}

/// Starts `localaws up` and waits until both service tasks run; returns their endpoints and a
/// channel of the remaining log lines.
async fn start_localaws(
    dir: &std::path::Path,
    command: &str,
) -> (
    Child,
    Vec<SocketAddr>,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_localaws"))
        .env_remove("LOCALAWS_SERVER_BIN")
        .arg("up")
        .args(["--port", "0"])
        .arg("--stack")
        .arg(stack_file(dir, command))
        .arg("--state-dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut endpoints = Vec::new();
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(rest) = line.split(" started on ").nth(1) {
                let addr: String = rest.chars().take_while(|c| *c != '"').collect();
                endpoints.push(addr.parse::<SocketAddr>().unwrap());
            }
            if line.contains("Ctrl-C stops every task") {
                return;
            }
        }
    })
    .await;
    assert!(found.is_ok(), "localaws did not come up");
    assert_eq!(endpoints.len(), 2, "{endpoints:?}");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = tx.send(line);
        }
    });
    for e in &endpoints {
        let up = tokio::time::timeout(Duration::from_secs(5), async {
            while get(&format!("http://{e}/health")).await.map(|r| r.0) != Ok(200) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(up.is_ok(), "task at {e} never answered");
    }
    (child, endpoints, rx)
}

async fn all_gone(endpoints: &[SocketAddr], within: Duration) -> bool {
    tokio::time::timeout(within, async {
        loop {
            let mut alive = false;
            for e in endpoints {
                if tokio::net::TcpStream::connect(e).await.is_ok() {
                    alive = true;
                }
            }
            if !alive {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .is_ok()
}

#[tokio::test]
async fn sigkill_of_localaws_leaves_no_task_behind() {
    let _slot = crate::util::slot().await;
    let dir = tempfile::tempdir().unwrap();
    let bin = server_bin().display().to_string();
    let (mut child, endpoints, _) = start_localaws(dir.path(), &bin).await;
    let pid = Pid::from_raw(child.id().unwrap() as i32);
    kill(pid, Signal::SIGKILL).unwrap();
    let _ = child.wait().await;
    assert!(
        all_gone(&endpoints, Duration::from_secs(5)).await,
        "tasks outlived a SIGKILLed localaws (orphans)"
    );
}

#[tokio::test]
async fn ctrl_c_stops_every_task_gracefully() {
    let _slot = crate::util::slot().await;
    let dir = tempfile::tempdir().unwrap();
    let bin = server_bin().display().to_string();
    let (mut child, endpoints, mut logs) = start_localaws(dir.path(), &bin).await;
    kill(Pid::from_raw(child.id().unwrap() as i32), Signal::SIGINT).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("localaws did not exit after SIGINT")
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(all_gone(&endpoints, Duration::from_secs(1)).await);
    let mut clean = 0;
    // Every line up to the end of its output (the reader ends at EOF).
    while let Ok(Some(line)) = tokio::time::timeout(Duration::from_secs(5), logs.recv()).await {
        if line.contains("stopped (exit 0)") {
            clean += 1;
        }
    }
    assert_eq!(clean, 2, "every task should drain and exit 0");
    // Each task's output went to its own log files.
    let logs: Vec<_> = std::fs::read_dir(dir.path().join("tasks"))
        .unwrap()
        .collect();
    assert_eq!(logs.len(), 4, "stdout and stderr per task");
}

#[tokio::test]
async fn cli_validates_stack_files() {
    let dir = tempfile::tempdir().unwrap();
    let good = stack_file(dir.path(), "server");
    let out = Command::new(env!("CARGO_BIN_EXE_localaws"))
        .arg("check")
        .arg(&good)
        .output()
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let bad = dir.path().join("bad.toml");
    let text = std::fs::read_to_string(&good)
        .unwrap()
        .replace("interval = 5", "interval = 1");
    std::fs::write(&bad, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_localaws"))
        .arg("check")
        .arg(&bad)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("target_groups[0].health_check.interval"),
        "{stderr}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_localaws"))
        .args(["up", "--time-scale", "0"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--time-scale"));

    let out = Command::new(env!("CARGO_BIN_EXE_localaws"))
        .arg("default-stack")
        .output()
        .await
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(localaws::Stack::parse(&text, "printed").is_ok());
}

#[tokio::test]
async fn image_server_runs_the_application_linked_into_localaws() {
    let _slot = crate::util::slot().await;
    // `cargo run -p localaws` builds no `server` binary: image `server` runs localaws itself as
    // the application, so the default stack works from one command.
    let dir = tempfile::tempdir().unwrap();
    let (mut child, endpoints, _) = start_localaws(dir.path(), "server").await;
    for e in &endpoints {
        let (status, _, _) = get(&format!("http://{e}/ready")).await.unwrap();
        assert_eq!(status, 200);
    }
    kill(Pid::from_raw(child.id().unwrap() as i32), Signal::SIGINT).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(all_gone(&endpoints, Duration::from_secs(1)).await);
}

/// The test stack whose image `server` runs `sh -c <script>` with `$0` = `marker`; stopTimeout
/// 2 s (the smallest ECS allows).
fn shell_stack(script: &str, marker: &std::path::Path) -> localaws::Stack {
    let mut stack = test_stack();
    let image = stack.images.get_mut("server").unwrap();
    image.command = "sh".into();
    image.args = vec!["-c".into(), script.into(), marker.display().to_string()];
    stack.task_definitions[0].container_definitions[0].stop_timeout = Some(2);
    stack
}

/// Stops one task of `shell_stack(script)` once it wrote its marker; returns the outcome and
/// how long the stop took.
async fn stop_shell_task(script: &str) -> (localaws::StopOutcome, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ready");
    let stand = crate::util::Stand::start(shell_stack(script, &marker)).await;
    let task = stand.plane.run_task("web", None, &[]).await.unwrap();
    let started = tokio::time::timeout(Duration::from_secs(10), async {
        while !marker.exists() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(started.is_ok(), "the task never wrote its marker");
    let t0 = std::time::Instant::now();
    let outcome = stand.plane.stop_task(&task.id).await.unwrap();
    let took = t0.elapsed();
    stand.stop().await;
    (outcome, took)
}

#[tokio::test]
async fn a_task_that_ignores_sigterm_is_killed_at_stop_timeout() {
    // SIGTERM → stopTimeout (2 s, real) → SIGKILL, as the ECS agent does.
    let (outcome, took) =
        stop_shell_task("trap '' TERM; : > \"$0\"; while :; do sleep 0.05; done").await;
    assert_eq!(
        outcome,
        localaws::StopOutcome::Killed(localaws::TaskExit::Signal(9)),
        "took {took:?}"
    );
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(6),
        "SIGKILL after {took:?}, stopTimeout is 2 s"
    );

    // Positive twin, one thing flipped: the same task honouring SIGTERM exits at once.
    let (outcome, took) =
        stop_shell_task("trap 'exit 0' TERM; : > \"$0\"; while :; do sleep 0.05; done").await;
    assert_eq!(
        outcome,
        localaws::StopOutcome::Exited(localaws::TaskExit::Code(0)),
        "took {took:?}"
    );
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[tokio::test]
async fn sigterm_to_localaws_stops_every_task_and_leaves_no_orphan() {
    let _slot = crate::util::slot().await;
    let dir = tempfile::tempdir().unwrap();
    let bin = server_bin().display().to_string();
    let (mut child, endpoints, mut logs) = start_localaws(dir.path(), &bin).await;
    kill(Pid::from_raw(child.id().unwrap() as i32), Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("localaws did not exit after SIGTERM")
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(
        all_gone(&endpoints, Duration::from_secs(1)).await,
        "tasks outlived localaws after SIGTERM (orphans)"
    );
    let mut clean = 0;
    while let Ok(Some(line)) = tokio::time::timeout(Duration::from_secs(5), logs.recv()).await {
        if line.contains("stopped (exit 0)") {
            clean += 1;
        }
    }
    assert_eq!(clean, 2, "every task should drain and exit 0");
}

#[tokio::test]
async fn localaws_server_bin_overrides_the_server_binary() {
    let _slot = crate::util::slot().await;
    // `$LOCALAWS_SERVER_BIN` names a wrapper that records each start, then runs the server.
    let dir = tempfile::tempdir().unwrap();
    let starts = dir.path().join("starts");
    let wrapper = dir.path().join("server-wrapper");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho \"$$\" >> '{}'\nexec '{}' \"$@\"\n",
            starts.display(),
            server_bin().display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_localaws"))
        .env("LOCALAWS_SERVER_BIN", &wrapper)
        .arg("up")
        .args(["--port", "0"])
        .arg("--stack")
        .arg(stack_file(dir.path(), "server"))
        .arg("--state-dir")
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let up = tokio::time::timeout(Duration::from_secs(20), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("Ctrl-C stops every task") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(up, Ok(true), "localaws did not come up");
    // Keep reading its output, so that it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let recorded = std::fs::read_to_string(&starts).unwrap_or_default();
    assert_eq!(
        recorded.lines().count(),
        2,
        "both service tasks ran through $LOCALAWS_SERVER_BIN: {recorded:?}"
    );
    kill(Pid::from_raw(child.id().unwrap() as i32), Signal::SIGINT).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

/// `localaws --terraform DIR` serves the stack the project's own Terraform describes: the
/// assumptions listed with file and line, the group the configuration names answering the API,
/// the production listener serving the application; Ctrl-C stops it cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terraform_flag_serves_the_stack_the_configuration_describes() {
    let _slot = crate::util::slot().await;
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready.json");
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut child = Command::new(env!("CARGO_BIN_EXE_localaws"))
        .env("LOCALAWS_SERVER_BIN", server_bin())
        .args(["--port", "0", "--time-scale", "60", "--terraform"])
        .arg(repo.join("terraform/envs/dev"))
        .arg("--ready-file")
        .arg(&ready)
        .arg("--state-dir")
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut said = String::new();
    // The fleet boots in simulated time (instances, agents, tasks, health checks) at 60x.
    let up = tokio::time::timeout(Duration::from_secs(120), async {
        while let Ok(Some(line)) = lines.next_line().await {
            said.push_str(&line);
            said.push('\n');
            if line.contains("Ctrl-C stops every task") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(up, Ok(true), "localaws did not come up:\n{said}");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    assert!(said.contains("stack derived from "), "{said}");
    assert!(
        said.contains("modules/compute/main.tf:") && said.contains("data.aws_ssm_parameter"),
        "the AMI from SSM is an assumption with its file and line:\n{said}"
    );
    let info: serde_json::Value = serde_json::from_slice(&std::fs::read(&ready).unwrap()).unwrap();
    let aws = crate::util::Aws::new(info["endpoint"].as_str().unwrap());
    let groups = aws
        .asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names("demo-asg")
        .send()
        .await
        .unwrap();
    assert_eq!(groups.auto_scaling_groups()[0].desired_capacity(), Some(3));
    let production = info["listeners"]
        .as_object()
        .unwrap()
        .iter()
        .find(|(name, _)| name.ends_with("/production"))
        .map(|(_, url)| url.as_str().unwrap().to_owned())
        .expect("a production listener");
    let (status, _, _) = get(&production).await.unwrap();
    assert_eq!(status, 200);
    kill(Pid::from_raw(child.id().unwrap() as i32), Signal::SIGINT).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn terraform_flag_refuses_bad_input_with_exit_2() {
    for (args, says) in [
        (vec!["--terraform", "/nonexistent-zdt"], "/nonexistent-zdt"),
        (vec!["--image", "web=true"], "--terraform"),
        (
            vec!["--terraform", ".", "--stack", "x.toml"],
            "cannot be used with",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_localaws"))
            .args(["--port", "0"])
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

//! Tasks as containers of the project's own image (`[images.NAME] docker = "IMAGE"`), built
//! FROM scratch by `scripts/build-image.sh`: they serve behind the load balancer, carry the ECS
//! agent's labels, and none outlives its localaws, also after a SIGKILL (the next localaws
//! removes what the dead one left, and only that). A missing image or an unreachable engine is
//! exit 2 before anything starts.
//!
//! Needs a Docker engine (`.ci/run` starts one); without one these tests fail, saying so.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use crate::util::{probe, service_stack};

/// The project's image, as this test binary builds it.
const TAG: &str = "ecs-zdt/server:localaws-it";

/// Builds the project's image once per test binary; its tag.
async fn image() -> &'static str {
    static BUILT: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    BUILT
        .get_or_init(|| async {
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/build-image.sh");
            let out = Command::new("bash")
                .arg(&script)
                .arg(TAG)
                .output()
                .await
                .unwrap();
            assert!(
                out.status.success(),
                "{} failed (the Docker tests need an engine):\n{}",
                script.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        })
        .await;
    TAG
}

/// `docker ps -a` of the containers whose labels include every `label=value` of `filters`:
/// each container's labels.
fn containers(filters: &[String]) -> Vec<BTreeMap<String, String>> {
    let mut cmd = std::process::Command::new("docker");
    cmd.args(["ps", "-a", "--no-trunc", "--format", "{{json .Labels}}"]);
    for f in filters {
        cmd.args(["--filter", &format!("label={f}")]);
    }
    let out = cmd.output().expect("docker ps");
    assert!(
        out.status.success(),
        "docker ps: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| {
            // `{{json .Labels}}` is one string "k=v,k=v".
            let text: String = serde_json::from_str(line).expect("labels");
            text.split(',')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        })
        .collect()
}

/// The containers the localaws with `pid` owns.
fn owned_by(pid: u32) -> Vec<BTreeMap<String, String>> {
    containers(&[
        "dev.localaws.managed=true".to_owned(),
        format!("dev.localaws.owner-pid={pid}"),
    ])
}

/// The test stack with two instances, a service of two tasks behind `blue`, and image `server`
/// a Docker image.
fn stack_file(dir: &Path, docker: &str) -> PathBuf {
    let mut stack = service_stack();
    let image = stack.images.get_mut("server").unwrap();
    image.command = String::new();
    image.args.clear();
    image.docker = Some(docker.to_owned());
    let path = dir.join("stack.toml");
    std::fs::write(&path, toml::to_string(&stack).unwrap()).unwrap();
    path
}

fn localaws(stack: &Path, state: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_localaws"));
    cmd.arg("up")
        .args(["--port", "0"])
        .arg("--stack")
        .arg(stack)
        .arg("--state-dir")
        .arg(state)
        .arg("--ready-file")
        .arg(state.join("ready.json"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Starts `localaws up` and waits for its ready file: the process and the ready file's JSON.
async fn up(stack: &Path, state: &Path) -> (Child, serde_json::Value) {
    let mut child = localaws(stack, state).spawn().unwrap();
    let ready = state.join("ready.json");
    // Two containers to start and turn healthy (2 checks 5 s apart at the stack's 60x).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        if let Ok(text) = std::fs::read_to_string(&ready)
            && let Ok(info) = serde_json::from_str::<serde_json::Value>(&text)
        {
            return (child, info);
        }
        if let Ok(Some(status)) = child.try_wait() {
            let mut stderr = String::new();
            if let Some(mut e) = child.stderr.take() {
                use tokio::io::AsyncReadExt as _;
                let _ = e.read_to_string(&mut stderr).await;
            }
            panic!("localaws exited ({status}) before it was ready:\n{stderr}");
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "localaws not ready in 90 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_tasks_serve_behind_the_load_balancer_and_none_outlives_localaws() {
    let _slot = crate::util::slot().await;
    let image = image().await;
    let dir = tempfile::tempdir().unwrap();
    let stack = stack_file(dir.path(), image);
    let first = dir.path().join("first");
    std::fs::create_dir_all(&first).unwrap();
    let (mut child, info) = up(&stack, &first).await;
    let pid = child.id().unwrap();

    // Two containers, labelled as the ECS agent labels its own.
    let mine = owned_by(pid);
    assert_eq!(mine.len(), 2, "{mine:#?}");
    let mut tasks = BTreeSet::new();
    for labels in &mine {
        let arn = &labels["com.amazonaws.ecs.task-arn"];
        assert!(arn.starts_with("arn:aws:ecs:"), "{arn}");
        tasks.insert(arn.rsplit('/').next().unwrap().to_owned());
        assert_eq!(labels["com.amazonaws.ecs.container-name"], "web");
        assert_eq!(labels["com.amazonaws.ecs.task-definition-family"], "web");
        assert_eq!(labels["com.amazonaws.ecs.task-definition-version"], "1");
        assert!(
            labels.contains_key("com.amazonaws.ecs.cluster"),
            "{labels:?}"
        );
    }

    // Every response through the load balancer comes from one of those containers.
    let url = info["listeners"]["lb/production"]
        .as_str()
        .unwrap()
        .to_owned();
    let report = probe(&url, 200.0, 2.0).finish().await.unwrap();
    assert_eq!(report.errors.total, 0, "{}", report.summary());
    let served: BTreeSet<String> = report.served_by.keys().cloned().collect();
    assert_eq!(served, tasks, "{}", report.summary());

    // SIGKILL: nothing stops the containers...
    kill(Pid::from_raw(i32::try_from(pid).unwrap()), Signal::SIGKILL).unwrap();
    let _ = child.wait().await;
    assert_eq!(
        owned_by(pid).len(),
        2,
        "containers outlive a SIGKILLed localaws"
    );
    // ...until the next localaws starts, which removes them, and only them: a container of the
    // same image that no localaws made, and one whose owner still runs (this test), stay.
    let bystander = |labels: &[&str]| -> String {
        let mut cmd = std::process::Command::new("docker");
        cmd.arg("create");
        for l in labels {
            cmd.args(["--label", l]);
        }
        let out = cmd.arg(image).output().expect("docker create");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let me = std::process::id();
    let start = std::fs::read_to_string(format!("/proc/{me}/stat")).unwrap();
    let start = start[start.rfind(')').unwrap() + 1..]
        .split_whitespace()
        .nth(19)
        .unwrap()
        .to_owned();
    /// Removes the bystanders however the test ends.
    struct Remove(Vec<String>);
    impl Drop for Remove {
        fn drop(&mut self) {
            for id in &self.0 {
                let _ = std::process::Command::new("docker")
                    .args(["rm", "-f", id])
                    .output();
            }
        }
    }
    let foreign = bystander(&[]);
    let living = bystander(&[
        "dev.localaws.managed=true",
        &format!("dev.localaws.owner-pid={me}"),
        &format!("dev.localaws.owner-start={start}"),
    ]);
    let _remove = Remove(vec![foreign.clone(), living.clone()]);
    let second = dir.path().join("second");
    std::fs::create_dir_all(&second).unwrap();
    let (mut child, _) = up(&stack, &second).await;
    let pid2 = child.id().unwrap();
    assert!(owned_by(pid).is_empty(), "{:#?}", owned_by(pid));
    assert_eq!(owned_by(pid2).len(), 2);
    for id in [&foreign, &living] {
        let out = std::process::Command::new("docker")
            .args(["rm", id])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "a container localaws does not own was removed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // Ctrl-C stops every container and removes it; each one's output is in its task's logs.
    kill(Pid::from_raw(i32::try_from(pid2).unwrap()), Signal::SIGINT).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("localaws did not exit after SIGINT")
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(owned_by(pid2).is_empty(), "{:#?}", owned_by(pid2));
    let logs: Vec<String> = std::fs::read_dir(second.join("tasks"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(logs.len(), 4, "stdout and stderr per task: {logs:?}");
    let stderr: String = std::fs::read_dir(second.join("tasks"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".stderr.log"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    assert!(
        stderr.matches("drained: exiting").count() == 2,
        "each container drained on the stop signal:\n{stderr}"
    );
}

#[tokio::test]
async fn a_missing_image_or_an_unreachable_engine_is_exit_2_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let stack = stack_file(dir.path(), "ecs-zdt/no-such-image:never");
    let out = localaws(&stack, dir.path()).output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("ecs-zdt/no-such-image:never") && stderr.contains("build it"),
        "{stderr}"
    );

    let out = localaws(&stack, dir.path())
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("unix:///nonexistent/docker.sock") && stderr.contains("start the engine"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("tasks").exists()
            || std::fs::read_dir(dir.path().join("tasks")).unwrap().count() == 0,
        "nothing started"
    );
}

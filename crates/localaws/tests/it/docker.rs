//! Tasks as containers of the project's own image (`[images.NAME] docker = "IMAGE"`), built
//! FROM scratch by `scripts/build-image.sh`: they serve behind the load balancer, carry the ECS
//! agent's labels, and none outlives its localaws, also after a SIGKILL mid-rollout (the next localaws
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

use stack::{ContainerDefinition, ContainerHealthCheck, KeyValue, LinuxParameters, Stack};

use crate::util::{Aws, probe, service_stack, web_container};

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
    write_stack(dir, service_stack(), docker)
}

/// Writes `stack` with image `server` the Docker image `docker`.
fn write_stack(dir: &Path, mut stack: Stack, docker: &str) -> PathBuf {
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

    // A rollout under way: the service moves to a new revision and localaws is SIGKILLed as
    // soon as the new revision's first container exists (created, maybe not yet started),
    // beside the old ones, which wait for it to turn healthy.
    let aws = Aws::new(info["endpoint"].as_str().unwrap());
    let cluster = service_stack().cluster.name;
    roll_web_to(&aws, &cluster, web_container().stop_timeout(10).build()).await;
    let second_revision = |labels: &BTreeMap<String, String>| {
        labels
            .get("com.amazonaws.ecs.task-definition-version")
            .map(String::as_str)
            == Some("2")
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !owned_by(pid).iter().any(second_revision) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no container of revision 2 in 60 s: {:#?}",
            owned_by(pid)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // SIGKILL mid-rollout: nothing stops the containers...
    kill(Pid::from_raw(i32::try_from(pid).unwrap()), Signal::SIGKILL).unwrap();
    let _ = child.wait().await;
    let left = owned_by(pid);
    assert!(
        left.iter().any(second_revision),
        "containers outlive a SIGKILLed localaws, the new revision's among them: {left:#?}"
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

/// Reads `child`'s stderr (piped) until a line holds `needle`, within `within`: that line, or
/// every line read before giving up. The rest of stderr is read on in the background, so
/// localaws never blocks on a full pipe.
async fn log_line(child: &mut Child, needle: &str, within: Duration) -> Result<String, String> {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut lines = BufReader::new(child.stderr.take().expect("stderr piped")).lines();
    let mut seen = Vec::new();
    let found = tokio::time::timeout(within, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains(needle) {
                return Some(line);
            }
            seen.push(line);
        }
        None
    })
    .await;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    found.ok().flatten().ok_or_else(|| seen.join("\n"))
}

/// Registers the next revision of family `web` with `container` alone and rolls service `web`
/// to it.
async fn roll_web_to(aws: &Aws, cluster: &str, container: aws_sdk_ecs::types::ContainerDefinition) {
    let revision = aws
        .ecs
        .register_task_definition()
        .family("web")
        .container_definitions(container)
        .send()
        .await
        .expect("RegisterTaskDefinition")
        .task_definition()
        .and_then(|t| t.task_definition_arn())
        .expect("task definition arn")
        .to_owned();
    aws.ecs
        .update_service()
        .cluster(cluster)
        .service("web")
        .task_definition(&revision)
        .send()
        .await
        .expect("UpdateService");
}

/// The task, from `DescribeTasks`.
async fn describe_task(aws: &Aws, cluster: &str, arn: &str) -> aws_sdk_ecs::types::Task {
    let out = aws
        .ecs
        .describe_tasks()
        .cluster(cluster)
        .tasks(arn)
        .send()
        .await
        .expect("DescribeTasks");
    out.tasks().first().expect("the task").clone()
}

/// A task's `lastStatus` and its container's `exitCode`, from `DescribeTasks`.
async fn task_status(aws: &Aws, cluster: &str, arn: &str) -> (String, Option<i32>) {
    let task = describe_task(aws, cluster, arn).await;
    (
        task.last_status().unwrap_or_default().to_owned(),
        task.containers().first().and_then(|c| c.exit_code()),
    )
}

/// Waits until the task is `STOPPED`: the time from the stop signal (sent as the task turns
/// `STOPPING`, once deregistered) as polled, and the exit code `DescribeTasks` reports. A stop
/// too quick for a poll to see `STOPPING` counts from the last poll that saw it deregistering.
async fn watch_stop(aws: &Aws, cluster: &str, arn: &str, within: Duration) -> (Duration, i32) {
    let deadline = tokio::time::Instant::now() + within;
    let mut stopping = None;
    let mut deregistering = None;
    loop {
        let (status, code) = task_status(aws, cluster, arn).await;
        let now = tokio::time::Instant::now();
        match status.as_str() {
            "DEACTIVATING" => deregistering = Some(now),
            "STOPPING" if stopping.is_none() => stopping = Some(now),
            "STOPPED" => {
                let since = stopping
                    .or(deregistering)
                    .expect("the task was stopping before it was STOPPED");
                return (now - since, code.expect("a stopped container's exit code"));
            }
            _ => {}
        }
        assert!(
            now < deadline,
            "task {arn} not stopped in {within:?}: {status}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The one live task of service `web`.
async fn service_task(aws: &Aws, cluster: &str, not: Option<&str>) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let out = aws
            .ecs
            .list_tasks()
            .cluster(cluster)
            .service_name("web")
            .send()
            .await
            .expect("ListTasks");
        if let Some(arn) = out.task_arns().iter().find(|a| Some(a.as_str()) != not) {
            return arn.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "service web has no new task in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An application that installs no SIGTERM handler (`ON_SIGTERM=unhandled`) is PID 1 of its
/// container, where the kernel drops a signal with no handler: it runs on until the SIGKILL at
/// `stopTimeout` (2 s here), exit 137 in `DescribeTasks`. One thing flipped, the next revision
/// sets `linuxParameters.initProcessEnabled`: Docker's init is PID 1, forwards the SIGTERM, and
/// the same image stops at once, killed by it (143).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_without_a_sigterm_handler_is_killed_at_stop_timeout_unless_an_init_runs_it() {
    let _slot = crate::util::slot().await;
    let image = image().await;
    let dir = tempfile::tempdir().unwrap();
    let mut stack = service_stack();
    stack.services[0].desired_count = 1;
    let cluster = stack.cluster.name.clone();
    let stop_timeout = Duration::from_secs(2);
    {
        let c = &mut stack.task_definitions[0].container_definitions[0];
        c.stop_timeout = Some(2);
        c.environment.push(KeyValue {
            name: "ON_SIGTERM".into(),
            value: "unhandled".into(),
        });
    }
    let mut next = stack.task_definitions[0].clone();
    next.container_definitions[0].linux_parameters = Some(LinuxParameters {
        init_process_enabled: Some(true),
    });
    let path = write_stack(dir.path(), stack, image);
    let (mut child, info) = up(&path, dir.path()).await;
    let aws = Aws::new(info["endpoint"].as_str().unwrap());
    let first = service_task(&aws, &cluster, None).await;

    // The next revision, with an init; the service rolls to it and stops the first task.
    let body = serde_json::to_value(&next).unwrap();
    let c = &body["containerDefinitions"][0];
    let env: Vec<aws_sdk_ecs::types::KeyValuePair> = c["environment"]
        .as_array()
        .unwrap()
        .iter()
        .map(|kv| {
            aws_sdk_ecs::types::KeyValuePair::builder()
                .name(kv["name"].as_str().unwrap())
                .value(kv["value"].as_str().unwrap())
                .build()
        })
        .collect();
    roll_web_to(
        &aws,
        &cluster,
        web_container()
            .stop_timeout(2)
            .set_environment(Some(env))
            .linux_parameters(
                aws_sdk_ecs::types::LinuxParameters::builder()
                    .init_process_enabled(true)
                    .build(),
            )
            .build(),
    )
    .await;
    // Start, health and the deregistration delay come first: a minute is ample at 10x.
    let (took, code) = watch_stop(&aws, &cluster, &first, Duration::from_secs(60)).await;
    assert_eq!(code, 137, "SIGKILLed at stopTimeout (took {took:?})");
    assert!(
        took + Duration::from_millis(100) >= stop_timeout,
        "the stop signal was not ignored: stopped {took:?} after STOPPING"
    );

    // The same image under an init: SIGTERM reaches it and ends it at once.
    let second = service_task(&aws, &cluster, Some(&first)).await;
    assert_eq!(
        owned_by(child.id().unwrap())
            .iter()
            .filter(|l| {
                l.get("com.amazonaws.ecs.task-definition-version")
                    .map(String::as_str)
                    == Some("2")
            })
            .count(),
        1,
        "the second revision runs in a container"
    );
    aws.ecs
        .update_service()
        .cluster(&cluster)
        .service("web")
        .desired_count(0)
        .send()
        .await
        .expect("UpdateService");
    let (took, code) = watch_stop(&aws, &cluster, &second, Duration::from_secs(60)).await;
    assert_eq!(
        code, 143,
        "killed by SIGTERM, through the init (took {took:?})"
    );
    assert!(took < stop_timeout, "stopped {took:?} after STOPPING");

    kill(
        Pid::from_raw(i32::try_from(child.id().unwrap()).unwrap()),
        Signal::SIGINT,
    )
    .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("localaws did not exit after SIGINT")
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

/// A container's `healthCheck` runs inside the container, as Docker runs it for the ECS agent:
/// `CMD /server healthcheck` (the image's own probe) passes; `CMD-SHELL` needs the image's
/// `/bin/sh`, which a FROM scratch image does not have, so even `exit 0` (which passes beside the
/// task, on this machine) fails, and the task turns UNHEALTHY saying why, as it would on ECS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_health_checks_run_inside_the_container() {
    let _slot = crate::util::slot().await;
    let image = image().await;
    for (check, expect, reason) in [
        (
            &["CMD", "/server", "healthcheck"][..],
            "container health HEALTHY",
            None,
        ),
        (
            &["CMD-SHELL", "exit 0"][..],
            "container health UNHEALTHY",
            Some("/bin/sh"),
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut stack = service_stack();
        stack.task_definitions[0].container_definitions[0].health_check =
            Some(ContainerHealthCheck {
                command: check.iter().map(|s| (*s).to_owned()).collect(),
                interval: Some(5),
                timeout: Some(2),
                retries: Some(1),
                start_period: None,
            });
        let path = write_stack(dir.path(), stack, image);
        let mut child = localaws(&path, dir.path()).spawn().unwrap();
        // A check every second at most (the container floor), one failure enough.
        let found = log_line(&mut child, expect, Duration::from_secs(60)).await;
        let pid = child.id().unwrap();
        kill(Pid::from_raw(i32::try_from(pid).unwrap()), Signal::SIGINT).unwrap();
        let _ = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
        let line = found.unwrap_or_else(|seen| panic!("{check:?}: no {expect:?} in\n{seen}"));
        if let Some(reason) = reason {
            assert!(
                line.contains("the check: ") && line.contains(reason),
                "{check:?}: the reason is missing: {line}"
            );
        }
        assert!(owned_by(pid).is_empty(), "{:#?}", owned_by(pid));
    }
}

/// A static `hostPort` holds its port on the instance: with two instances, a third task of the
/// service cannot be placed, and the service says why in ECS's words ("already using a port
/// required by your task"), while the two placed containers serve on that very port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_host_port_places_one_container_per_instance_and_says_why_not_more() {
    let _slot = crate::util::slot().await;
    let image = image().await;
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut stack = service_stack();
    stack.services[0].desired_count = 3;
    stack.task_definitions[0].container_definitions[0].port_mappings[0].host_port = Some(port);
    let path = write_stack(dir.path(), stack, image);
    let mut child = localaws(&path, dir.path()).spawn().unwrap();
    let pid = child.id().unwrap();
    let expect = format!("already holds host port {port}");
    let found = log_line(&mut child, &expect, Duration::from_secs(60)).await;
    assert!(found.is_ok(), "no {expect:?} in\n{}", found.unwrap_err());
    // The two placed tasks' containers start meanwhile (placement comes first).
    let running = || -> BTreeSet<String> {
        std::process::Command::new("docker")
            .args(["ps", "--format", "{{.Ports}}", "--filter"])
            .arg(format!("label=dev.localaws.owner-pid={pid}"))
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut ports = running();
    while ports.len() < 2 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        ports = running();
    }
    assert_eq!(ports.len(), 2, "one container per instance: {ports:?}");
    assert!(
        ports
            .iter()
            .all(|p| p.contains(&format!(":{port}->8080/tcp"))),
        "{ports:?}"
    );
    kill(Pid::from_raw(i32::try_from(pid).unwrap()), Signal::SIGINT).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("localaws did not exit after SIGINT")
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(owned_by(pid).is_empty(), "{:#?}", owned_by(pid));
}

/// A task's `lastStatus`, `stoppedReason`, and each container's `exitCode` by name, from
/// `DescribeTasks`.
async fn task_containers(
    aws: &Aws,
    cluster: &str,
    arn: &str,
) -> (String, Option<String>, BTreeMap<String, Option<i32>>) {
    let task = describe_task(aws, cluster, arn).await;
    (
        task.last_status().unwrap_or_default().to_owned(),
        task.stopped_reason().map(str::to_owned),
        task.containers()
            .iter()
            .map(|c| (c.name().unwrap_or_default().to_owned(), c.exit_code()))
            .collect(),
    )
}

/// Whether a container of that name exists on the engine (running or not).
fn exists(name: &str) -> bool {
    std::process::Command::new("docker")
        .args(["inspect", "--format", "{{.Id}}", name])
        .output()
        .expect("docker inspect")
        .status
        .success()
}

/// `docker kill NAME` (SIGKILL): what a crash does to a container.
fn docker_kill(name: &str) {
    let out = std::process::Command::new("docker")
        .args(["kill", name])
        .output()
        .expect("docker kill");
    assert!(
        out.status.success(),
        "docker kill {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A task of three containers, run as the ECS agent runs one: every container from the image
/// with its own labels, the load balancer reaching the one the service names (`web`, listed
/// last; its Docker container is `localaws-<task>`, the others `localaws-<task>-<name>`). A
/// container that is not essential (`logs`) may die and the task serves on; an essential one
/// (`guard`) that dies ends the task: the others get their stop signal (web drains and exits 0),
/// and `DescribeTasks` says which container exited how.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_essential_container_that_dies_stops_its_task_and_one_that_is_not_essential_does_not() {
    let _slot = crate::util::slot().await;
    let image = image().await;
    let dir = tempfile::tempdir().unwrap();
    let mut stack = service_stack();
    stack.services[0].desired_count = 1;
    let cluster = stack.cluster.name.clone();
    {
        let td = &mut stack.task_definitions[0];
        let web = td.container_definitions[0].clone();
        let sidecar = |name: &str, essential: bool| ContainerDefinition {
            name: name.into(),
            essential: Some(essential),
            port_mappings: Vec::new(),
            health_check: None,
            ..web.clone()
        };
        td.container_definitions = vec![sidecar("logs", false), sidecar("guard", true), web];
    }
    let path = write_stack(dir.path(), stack, image);
    let (mut child, info) = up(&path, dir.path()).await;
    let pid = child.id().unwrap();
    let aws = Aws::new(info["endpoint"].as_str().unwrap());
    let task = service_task(&aws, &cluster, None).await;
    let id = task.rsplit('/').next().unwrap().to_owned();

    // Three containers of the one task, each labelled with its own name and the task's ARN.
    let mine = owned_by(pid);
    let names: BTreeSet<&str> = mine
        .iter()
        .filter(|l| l["com.amazonaws.ecs.task-arn"] == task)
        .map(|l| l["com.amazonaws.ecs.container-name"].as_str())
        .collect();
    assert_eq!(names, BTreeSet::from(["logs", "guard", "web"]), "{mine:#?}");
    let url = info["listeners"]["lb/production"]
        .as_str()
        .unwrap()
        .to_owned();

    // The log container dies: it is not essential, the task serves on.
    let logs = format!("localaws-{id}-logs");
    docker_kill(&logs);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while exists(&logs) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{logs} not removed 30 s after it died"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let report = probe(&url, 200.0, 1.0).finish().await.unwrap();
    assert_eq!(report.errors.total, 0, "{}", report.summary());
    let (status, _, _) = task_containers(&aws, &cluster, &task).await;
    assert_eq!(
        status, "RUNNING",
        "a non-essential container's exit ended the task"
    );
    assert!(exists(&format!("localaws-{id}")) && exists(&format!("localaws-{id}-guard")));

    // The guard dies: it is essential, so the task stops, and each container's exit is told.
    docker_kill(&format!("localaws-{id}-guard"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let (reason, exits) = loop {
        let (status, reason, exits) = task_containers(&aws, &cluster, &task).await;
        if status == "STOPPED" {
            break (reason, exits);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "task {task} not STOPPED 60 s after its essential container died: {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        reason.as_deref(),
        Some("Essential container in task exited")
    );
    assert_eq!(
        exits,
        BTreeMap::from([
            ("logs".to_owned(), Some(137)),
            ("guard".to_owned(), Some(137)),
            ("web".to_owned(), Some(0)),
        ]),
        "killed, killed, drained on its stop signal"
    );
    assert!(!exists(&format!("localaws-{id}")));

    kill(Pid::from_raw(i32::try_from(pid).unwrap()), Signal::SIGINT).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("localaws did not exit after SIGINT")
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(owned_by(pid).is_empty(), "{:#?}", owned_by(pid));
}

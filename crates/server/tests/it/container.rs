//! The container image: built FROM scratch by `scripts/build-image.sh`, run with Docker.
//! `docker stop` must drain (in-flight request completes, exit code 0) and the image must be
//! small; the negative control is the same stop with one input flipped (a shutdown deadline
//! too short for the request in flight) and must show the request cut off, at the deadline.
//!
//! Needs a Docker engine. Without one the test fails, saying so: it never reports a pass it
//! did not earn. To leave it out, filter it (`cargo test -- --skip container`), which the
//! harness reports as filtered out.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::util::{eventually, get, wait_for_in_flight};

const TAG: &str = "ecs-zdt/server:test";

fn docker(args: &[&str]) -> Result<String, String> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run docker: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(format!(
            "docker {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Container output, both streams (the server logs to stderr).
fn logs(name: &str) -> String {
    match Command::new("docker").args(["logs", name]).output() {
        Ok(out) => format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => format!("cannot read logs: {e}"),
    }
}

/// Fails the test, with the reason, when no Docker engine is reachable.
fn require_docker() {
    if let Err(e) = docker(&["info", "--format", "{{.ServerVersion}}"]) {
        panic!(
            "the container test needs a Docker engine ({e}); leave it out with \
             `cargo test -- --skip container`"
        );
    }
}

/// Drain delay in both runs, seconds.
const DRAIN_DELAY_S: u64 = 1;
/// The request held in flight across `docker stop`.
const SLOW_MS: u64 = 3000;
/// The shutdown deadline the negative control flips to: shorter than the request in flight.
const SHORT_DEADLINE_S: u64 = 1;

/// A running container, removed when dropped.
struct Container {
    name: String,
}

impl Container {
    fn run(name: &str, env: &[(&str, &str)]) -> Container {
        let _ = docker(&["rm", "-f", name]);
        let mut args = vec![
            "run",
            "-d",
            "--name",
            name,
            "-p",
            "127.0.0.1::8080",
            "--health-interval",
            "500ms",
            "--health-start-period",
            "0s",
            "--health-retries",
            "3",
        ];
        let envs: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        for e in &envs {
            args.extend(["-e", e.as_str()]);
        }
        args.push(TAG);
        docker(&args).unwrap();
        Container {
            name: name.to_owned(),
        }
    }

    fn addr(&self) -> std::net::SocketAddr {
        let port = docker(&["port", &self.name, "8080/tcp"]).unwrap();
        let first = port.lines().next().unwrap();
        first.parse().unwrap()
    }

    fn inspect(&self, format: &str) -> String {
        docker(&["inspect", "--format", format, &self.name]).unwrap()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.name]);
    }
}

fn build_image() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new(root.join("scripts/build-image.sh"))
        .arg(TAG)
        .env("VERSION", "v-image")
        .output()
        .expect("run scripts/build-image.sh");
    assert!(
        out.status.success(),
        "scripts/build-image.sh failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts a container, holds a slow request in flight, runs `docker stop`, reports
/// (slow request result, exit code, how long docker stop took, logs). The one input a negative
/// control flips: `short_deadline` sets `SHUTDOWN_TIMEOUT_SECONDS` below the request's time.
async fn stop_with_request_in_flight(
    name: &str,
    short_deadline: bool,
) -> (Result<crate::util::Answer, String>, i64, Duration, String) {
    let drain = DRAIN_DELAY_S.to_string();
    let deadline = SHORT_DEADLINE_S.to_string();
    let mut env = vec![("DRAIN_DELAY_SECONDS", drain.as_str())];
    if short_deadline {
        env.push(("SHUTDOWN_TIMEOUT_SECONDS", deadline.as_str()));
    }
    let c = Container::run(name, &env);
    let addr = c.addr();
    let up = eventually(Duration::from_secs(10), || async move {
        matches!(get(addr, "/ready").await, Ok(r) if r.status == 200)
    })
    .await;
    assert!(up.is_some(), "container never became ready: {}", logs(name));
    let healthy = eventually(Duration::from_secs(15), || {
        std::future::ready(c.inspect("{{.State.Health.Status}}") == "healthy")
    })
    .await;
    assert!(
        healthy.is_some(),
        "HEALTHCHECK (`server healthcheck`) never reported healthy"
    );

    let slow = tokio::spawn(async move { get(addr, &format!("/delay/{SLOW_MS}")).await });
    assert!(
        wait_for_in_flight(addr, 1).await,
        "slow request never got in flight"
    );

    let stopped = Instant::now();
    let name_owned = name.to_owned();
    tokio::task::spawn_blocking(move || docker(&["stop", "--time", "20", &name_owned]))
        .await
        .unwrap()
        .unwrap();
    let stop_took = stopped.elapsed();
    let slow = slow.await.unwrap();
    let code: i64 = c.inspect("{{.State.ExitCode}}").parse().unwrap();
    let logs = logs(name);
    (slow, code, stop_took, logs)
}

#[tokio::test]
async fn image_is_small_and_docker_stop_drains() {
    require_docker();
    build_image();

    // The image: tiny, non-root, exec-form entrypoint, health check through the binary.
    let size: u64 = docker(&["image", "inspect", "--format", "{{.Size}}", TAG])
        .unwrap()
        .parse()
        .unwrap();
    assert!(size < 10 * 1024 * 1024, "image is {size} bytes");
    let config = |f: &str| docker(&["image", "inspect", "--format", f, TAG]).unwrap();
    assert_eq!(config("{{.Config.User}}"), "65532:65532");
    assert_eq!(config("{{json .Config.Entrypoint}}"), r#"["/server"]"#);
    assert_eq!(
        config("{{json .Config.Healthcheck.Test}}"),
        r#"["CMD","/server","healthcheck"]"#
    );

    let name = format!("zdt-test-drain-{}", std::process::id());
    let (slow, code, took, logs) = stop_with_request_in_flight(&name, false).await;
    let slow =
        slow.unwrap_or_else(|e| panic!("in-flight request cut off by docker stop: {e}\n{logs}"));
    assert_eq!(slow.status, 200);
    assert_eq!(slow.header("x-app-version"), "v-image");
    assert_eq!(code, 0, "docker stop must end in a clean exit:\n{logs}");
    assert!(
        took >= Duration::from_secs(DRAIN_DELAY_S),
        "stopped before the drain delay: {took:?}"
    );
    assert!(
        took < Duration::from_secs(15),
        "docker had to SIGKILL: {took:?}"
    );
    assert!(logs.contains("drained"), "{logs}");

    // Negative control: the same stop, only the deadline too short for the request in flight.
    let name = format!("zdt-test-nodrain-{}", std::process::id());
    let (slow, code, took, logs) = stop_with_request_in_flight(&name, true).await;
    // Detected: the request is cut off and the exit code says so.
    assert!(
        slow.is_err(),
        "with a deadline shorter than the request it should fail: {slow:?}"
    );
    assert_eq!(code, 1, "exit code {code}:\n{logs}");
    // Located: the stop ended at the deadline, before the request could have finished (and
    // not by docker's SIGKILL).
    assert!(
        took >= Duration::from_secs(SHORT_DEADLINE_S) && took < Duration::from_millis(SLOW_MS),
        "docker stop took {took:?}"
    );
    // Attributed: the server names the deadline and what it cut.
    assert!(logs.contains("deadline"), "{logs}");
    assert!(logs.contains("1 request(s) in flight"), "{logs}");
}

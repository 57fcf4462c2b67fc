//! How long a task takes from the start request to its application answering `/ready` 200 on
//! the endpoint the load balancer would register (what its first passing target health check
//! needs), on `localaws` in-process: as a process, or as a container of a local Docker image.
//!
//! `task-start [RUNS] [DOCKER_IMAGE]` (default 20 runs, processes). Needs the `server` binary
//! beside this one (`cargo build --release -p server`) for processes. Prints one line per start
//! and the median and max; exits 1 when a task does not answer within 30 s or a container is
//! left behind.

use std::time::{Duration, Instant};

use localaws::Stack;

use benches::{arg, start_fleet, stop_fleet, use_docker_image};

/// Whether `GET /ready` on `addr` answers 200 (a fresh connection each time).
async fn ready(addr: std::net::SocketAddr) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(Ok(mut s)) = tokio::time::timeout(
        Duration::from_millis(200),
        tokio::net::TcpStream::connect(addr),
    )
    .await
    else {
        return false;
    };
    if s.write_all(b"GET /ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    matches!(
        tokio::time::timeout(Duration::from_millis(500), s.read_exact(&mut head)).await,
        Ok(Ok(_))
    ) && &head == b"HTTP/1.1 200"
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::process::ExitCode {
    let runs: usize = arg(1, 20);
    let docker = std::env::args().nth(2);
    let mut stack = match Stack::rehearsal(true, 60.0) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("task-start: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    // Only the tasks this benchmark starts: no service places any.
    for s in &mut stack.services {
        s.desired_count = 0;
    }
    if let Some(image) = &docker {
        use_docker_image(&mut stack, image);
    }
    let Some(family) = stack.task_definitions.first().map(|t| t.family.clone()) else {
        eprintln!("task-start: the stack has no task definition");
        return std::process::ExitCode::from(2);
    };
    let Some((la, dir)) = start_fleet("task-start", stack).await else {
        return std::process::ExitCode::FAILURE;
    };
    let what = docker
        .as_deref()
        .map_or_else(|| "process".to_owned(), |i| format!("container of {i}"));
    let mut times = Vec::new();
    let mut failed = false;
    for run in 1..=runs {
        let t = Instant::now();
        let task = match la.plane().run_task(&family, None, &[]).await {
            Ok(task) => task,
            Err(e) => {
                eprintln!("task-start: run {run}: {e}");
                failed = true;
                break;
            }
        };
        let mut answered = false;
        while t.elapsed() < Duration::from_secs(30) {
            if ready(task.endpoint).await {
                answered = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let took = t.elapsed();
        let _ = la.plane().stop_task(&task.id).await;
        if !answered {
            eprintln!(
                "task-start: run {run}: no /ready 200 from {} in 30 s",
                task.endpoint
            );
            failed = true;
            break;
        }
        println!(
            "start {run:>2}: {what} answering /ready in {:.1} ms",
            took.as_secs_f64() * 1e3
        );
        times.push(took);
    }
    failed |= !stop_fleet(la, &dir, docker.is_some()).await;
    if failed || times.is_empty() {
        return std::process::ExitCode::FAILURE;
    }
    times.sort();
    println!(
        "task start -> /ready 200 ({what}): median {:.1} ms, max {:.1} ms over {} starts",
        times[times.len() / 2].as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3,
        times.len()
    );
    std::process::ExitCode::SUCCESS
}

//! What the benchmark binaries share.
//!
//! Two kinds of benchmark live in this crate (figures and how to reproduce each:
//! `docs/benchmarks.md`):
//!
//! - `benches/*.rs`: criterion micro-benchmarks of the per-request hot paths, without sockets
//!   (`cargo bench -p benches`; 1 s warm-up, 2 s measurement each): the server's
//!   `Stamp(Routes)` call, the probe's recorder and `wire.rs` parser (through `loadprobe::bench`,
//!   a `#[doc(hidden)]` module that is not an API), localaws's weighted pick, routing snapshot,
//!   health matcher, awsQuery form and XML, JSON-1.1 dispatch.
//! - `src/bin/report/`: `report`, every comparison with a peer in one run: `sections.rs` (one
//!   function per comparison; rounds alternate the contenders, medians), `measure.rs`
//!   (processes, wrk/oha/`loadprobe` runs), `model.rs` (the JSON), `baseline.rs` (a ratio more
//!   than 10 % worse than in `--baseline` is flagged, exit 1), `render.rs` (Markdown, HTML with
//!   inline SVG). The scripts `server-throughput.sh` and `localaws-proxy.sh` call `report --only
//!   … --strict`; `loadprobe-max-rate.sh` and `loadprobe-fixed-rate.sh` keep their own loop
//!   because they also run over HTTPS (`TLS=1`), which the report does not;
//!   `loadprobe-soak.sh`, `localaws-refresh.sh` and `localaws-deploy.sh` are the long runs.
//! - the binaries they drive: `hello-hyper` (the minimal hyper baseline, `--tls` for HTTPS),
//!   `startup` (exec → `/ready` time, idle RSS), `refresh` and `deploy` (localaws in-process
//!   driven through the SDK: wall time, the listener's latency, RSS across rounds), `task-start`
//!   (a task's start → its application answering, as a process or as a container). Each exits
//!   non-zero when its own criterion fails. `localaws-containers.sh` sets the Docker runtime
//!   beside the process runtime (`refresh` and `task-start` take a local image).

/// Resident memory of this process, KiB (Linux; 0 elsewhere).
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Positional argument `i` parsed, or `default` when absent or not parseable.
pub fn arg<T: std::str::FromStr>(i: usize, default: T) -> T {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

/// Runs the stack's image `server` as containers of the local Docker image `image` (the
/// runtime the ECS agent's `bridge` mode is rehearsed with) instead of as processes.
pub fn use_docker_image(stack: &mut localaws::Stack, image: &str) {
    if let Some(server) = stack.images.get_mut("server") {
        server.command = String::new();
        server.args.clear();
        server.docker = Some(image.to_owned());
    }
}

/// Starts `stack` on an in-process localaws (state in a temporary directory named after
/// `bench`, every listener on a free port) and waits until its fleet is healthy; says why on
/// standard error and returns `None` when it cannot.
pub async fn start_fleet(
    bench: &str,
    stack: localaws::Stack,
) -> Option<(localaws::Localaws, std::path::PathBuf)> {
    let dir = std::env::temp_dir().join(format!("{bench}-bench-{}", std::process::id()));
    let mut options = localaws::Options::new(&dir);
    options.ephemeral_ports = true;
    let la = match localaws::Localaws::start(stack, options, 0).await {
        Ok(la) => la,
        Err(e) => {
            eprintln!("{bench}: {e}");
            return None;
        }
    };
    if !la.wait_ready(la.ready_timeout()).await {
        eprintln!("{bench}: the fleet did not come up (is the server binary beside this one?)");
        la.shutdown().await;
        return None;
    }
    Some((la, dir))
}

/// Shuts the fleet down and removes its directory; with containers, prints how many it left
/// and returns whether that is none.
pub async fn stop_fleet(la: localaws::Localaws, dir: &std::path::Path, containers: bool) -> bool {
    la.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
    if !containers {
        return true;
    }
    let left = containers_left(std::process::id());
    println!(
        "containers left: {}",
        left.map_or_else(
            || "unknown (docker ps failed)".to_owned(),
            |n| n.to_string()
        )
    );
    left == Some(0)
}

/// How many containers the localaws of process `pid` left on the Docker engine (`None` when
/// `docker ps` cannot run).
fn containers_left(pid: u32) -> Option<usize> {
    let out = std::process::Command::new("docker")
        .args(["ps", "-a", "-q", "--filter"])
        .arg(format!("label=dev.localaws.owner-pid={pid}"))
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).lines().count())
}

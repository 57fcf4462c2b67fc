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

/// How many containers the localaws of process `pid` left on the Docker engine (`None` when
/// `docker ps` cannot run).
pub fn containers_left(pid: u32) -> Option<usize> {
    let out = std::process::Command::new("docker")
        .args(["ps", "-a", "-q", "--filter"])
        .arg(format!("label=dev.localaws.owner-pid={pid}"))
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).lines().count())
}

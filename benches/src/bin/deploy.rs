//! Blue/green benchmark: wall time of CodeDeploy canary deployments on `localaws` (the default
//! stack's `demo-dg`: canary 10 % for 5 minutes, a 15-minute termination wait, all simulated),
//! the production listener's latency during the shift against the same fleet before it, and the
//! RSS of the process (localaws and the probe in-process) across consecutive deployments.
//!
//! `deploy [TIME_SCALE] [ROUNDS] [RATE]` (defaults 60, 20, 1000). Needs the `server` binary beside
//! this one (`cargo build --release -p server`). Exits 1 when a deployment does not succeed, the
//! probe sees an error, a deployment takes 30 s or more, or RSS after the last round exceeds RSS
//! after the first by more than 20 %.

use std::time::{Duration, Instant};

use aws_sdk_codedeploy::types::{
    AppSpecContent, DeploymentStatus, RevisionLocation, RevisionLocationType,
};
use aws_sdk_ecs::types::{ContainerDefinition, KeyValuePair, PortMapping};
use loadprobe::{ConnectionMode, Probe, ProbeConfig, Rate};
use localaws::{Localaws, Options, Stack};

use benches::{arg, rss_kib};

/// A probe of the production listener at `rate` for `secs`.
fn probe(url: &str, rate: f64, secs: u64) -> Result<Probe, String> {
    let mut cfg = ProbeConfig::new(url.parse().map_err(|e| format!("{url}: {e}"))?);
    cfg.rate = Rate::PerSecond(rate);
    cfg.duration = Duration::from_secs(secs);
    cfg.connections = 32;
    cfg.mode = ConnectionMode::KeepAlive;
    Probe::start(cfg).map_err(|e| e.to_string())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
#[expect(
    clippy::too_many_lines,
    reason = "one benchmark script: stand up, deploy in rounds, measure, judge"
)]
async fn main() -> std::process::ExitCode {
    let scale: f64 = arg(1, 60.0);
    let rounds: u32 = arg(2, 20);
    let rate: f64 = arg(3, 1000.0);
    let stack = match Stack::rehearsal(true, scale) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("deploy: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let dir = std::env::temp_dir().join(format!("deploy-bench-{}", std::process::id()));
    let mut options = Options::new(&dir);
    options.ephemeral_ports = true;
    let la = match Localaws::start(stack, options, 0).await {
        Ok(la) => la,
        Err(e) => {
            eprintln!("deploy: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    if !la.wait_ready(la.ready_timeout()).await {
        eprintln!("deploy: the fleet did not come up (is the server binary beside this one?)");
        la.shutdown().await;
        return std::process::ExitCode::FAILURE;
    }
    let http = aws_smithy_http_client::Builder::new().build_http();
    let region = aws_sdk_codedeploy::config::Region::new("us-east-1");
    let creds = aws_sdk_codedeploy::config::Credentials::new("test", "test", None, None, "bench");
    let cd = aws_sdk_codedeploy::Client::from_conf(
        aws_sdk_codedeploy::Config::builder()
            .behavior_version(aws_sdk_codedeploy::config::BehaviorVersion::latest())
            .region(region.clone())
            .credentials_provider(creds.clone())
            .endpoint_url(la.endpoint())
            .http_client(http.clone())
            .build(),
    );
    let ecs = aws_sdk_ecs::Client::from_conf(
        aws_sdk_ecs::Config::builder()
            .behavior_version(aws_sdk_ecs::config::BehaviorVersion::latest())
            .region(region)
            .credentials_provider(creds)
            .endpoint_url(la.endpoint())
            .http_client(http)
            .build(),
    );
    let Some(url) = la.listener_url("production") else {
        eprintln!("deploy: no production listener");
        return std::process::ExitCode::FAILURE;
    };

    // The listener's latency on a steady fleet, for comparison.
    let baseline = match probe(&url, rate, 5) {
        Ok(p) => p.finish().await,
        Err(e) => {
            eprintln!("deploy: probe: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let Ok(baseline) = baseline else {
        eprintln!("deploy: the baseline probe failed");
        return std::process::ExitCode::FAILURE;
    };
    println!(
        "steady fleet: p50 {} µs, p99 {} µs ({} requests, {} errors)",
        baseline.latency_us.p50, baseline.latency_us.p99, baseline.requests, baseline.errors.total
    );

    let mut failed = false;
    let mut times = Vec::new();
    let mut rss = Vec::new();
    let mut shift_p50 = Vec::new();
    for round in 1..=rounds {
        let version = format!("v{}", round + 1);
        let container = ContainerDefinition::builder()
            .name("web")
            .image("server")
            .essential(true)
            .stop_timeout(10)
            .port_mappings(
                PortMapping::builder()
                    .container_port(8080)
                    .host_port(0)
                    .build(),
            )
            .environment(
                KeyValuePair::builder()
                    .name("APP_VERSION")
                    .value(&version)
                    .build(),
            )
            .environment(
                KeyValuePair::builder()
                    .name("DRAIN_DELAY_SECONDS")
                    .value("1")
                    .build(),
            )
            .environment(
                KeyValuePair::builder()
                    .name("SHUTDOWN_TIMEOUT_SECONDS")
                    .value("5")
                    .build(),
            )
            .build();
        let arn = match ecs
            .register_task_definition()
            .family("demo-web")
            .network_mode(aws_sdk_ecs::types::NetworkMode::Bridge)
            .container_definitions(container)
            .send()
            .await
        {
            Ok(o) => o
                .task_definition
                .and_then(|t| t.task_definition_arn)
                .unwrap_or_default(),
            Err(e) => {
                eprintln!("deploy: register task definition: {e:?}");
                failed = true;
                break;
            }
        };
        let appspec = format!(
            "Resources:\n  - TargetService:\n      Type: AWS::ECS::Service\n      Properties:\n        TaskDefinition: \"{arn}\"\n        LoadBalancerInfo:\n          ContainerName: web\n          ContainerPort: 8080\n"
        );
        let p = match probe(&url, rate, 120) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("deploy: probe: {e}");
                failed = true;
                break;
            }
        };
        let t = Instant::now();
        let id = match cd
            .create_deployment()
            .application_name("demo-cd-app")
            .deployment_group_name("demo-dg")
            .revision(
                RevisionLocation::builder()
                    .revision_type(RevisionLocationType::AppSpecContent)
                    .app_spec_content(AppSpecContent::builder().content(appspec).build())
                    .build(),
            )
            .send()
            .await
        {
            Ok(o) => o.deployment_id.unwrap_or_default(),
            Err(e) => {
                eprintln!("deploy: create deployment: {e:?}");
                failed = true;
                break;
            }
        };
        let mut why = String::new();
        let status = loop {
            let info = cd
                .get_deployment()
                .deployment_id(&id)
                .send()
                .await
                .ok()
                .and_then(|d| d.deployment_info);
            if let Some(e) = info.as_ref().and_then(|d| d.error_information()) {
                why = format!(
                    " ({}: {})",
                    e.code().map_or("", |c| c.as_str()),
                    e.message().unwrap_or("")
                );
            }
            match info.and_then(|d| d.status) {
                Some(
                    s @ (DeploymentStatus::Succeeded
                    | DeploymentStatus::Failed
                    | DeploymentStatus::Stopped),
                ) => break s,
                _ if t.elapsed() > Duration::from_secs(110) => {
                    break DeploymentStatus::Stopped;
                }
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        let took = t.elapsed();
        p.stop();
        let report = match p.finish().await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("deploy: probe: {e}");
                failed = true;
                break;
            }
        };
        times.push(took);
        rss.push(rss_kib());
        shift_p50.push(report.latency_us.p50);
        println!(
            "deployment {round} ({id}, {version}): {}{why} in {:.2} s; probe {} requests, {} errors, p50 {} µs, p99 {} µs; RSS {} KiB",
            status.as_str(),
            took.as_secs_f64(),
            report.requests,
            report.errors.total,
            report.latency_us.p50,
            report.latency_us.p99,
            rss[rss.len() - 1]
        );
        if status != DeploymentStatus::Succeeded || report.errors.total > 0 {
            failed = true;
            break;
        }
    }
    la.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    if times.is_empty() {
        return std::process::ExitCode::FAILURE;
    }
    let mut sorted = times.clone();
    sorted.sort();
    let median = sorted[sorted.len() / 2];
    let max = sorted[sorted.len() - 1];
    let mut p50s = shift_p50.clone();
    p50s.sort_unstable();
    let shift = p50s[p50s.len() / 2];
    println!(
        "canary deployments of 3 tasks at {scale}x: median {:.2} s, max {:.2} s over {} rounds; \
         production p50 during deployments {shift} µs vs {} µs steady ({:+} µs)",
        median.as_secs_f64(),
        max.as_secs_f64(),
        times.len(),
        baseline.latency_us.p50,
        i64::try_from(shift).unwrap_or(0) - i64::try_from(baseline.latency_us.p50).unwrap_or(0)
    );
    let (first, last) = (rss[0], rss[rss.len() - 1]);
    let flat = last <= first + first / 5;
    println!(
        "RSS after deployment 1: {first} KiB, after {}: {last} KiB, max {} KiB: {}",
        rss.len(),
        rss.iter().max().copied().unwrap_or(0),
        if flat { "flat" } else { "GREW more than 20 %" }
    );
    if failed || !flat || max >= Duration::from_secs(30) {
        return std::process::ExitCode::FAILURE;
    }
    std::process::ExitCode::SUCCESS
}

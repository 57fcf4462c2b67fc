//! Instance refresh benchmark: wall time of whole-group refreshes on `localaws` at a time scale,
//! the API's describe latency, and the RSS of the process (localaws in-process) across
//! consecutive refreshes.
//!
//! `refresh [INSTANCES] [TIME_SCALE] [ROUNDS] [DOCKER_IMAGE]` (defaults 3, 60, 20, none). Needs
//! the `server` binary beside this one (`cargo build --release -p server`); with a local Docker
//! image, every task is a container of it instead. Exits 1 when a refresh fails, when RSS after
//! the last round exceeds RSS after the first by more than 20 %, or when a container is left.

use std::time::{Duration, Instant};

use aws_sdk_autoscaling::types::{
    DesiredConfiguration, InstanceRefreshStatus, LaunchTemplateSpecification, RefreshPreferences,
};
use localaws::Stack;
use localaws::control::ec2::{NewVersion, TemplateRef};

use benches::{arg, rss_kib, start_fleet, stop_fleet, use_docker_image};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
#[expect(
    clippy::too_many_lines,
    reason = "one benchmark script: stand up, refresh in rounds, measure, judge"
)]
async fn main() -> std::process::ExitCode {
    let instances: u32 = arg(1, 3);
    let scale: f64 = arg(2, 60.0);
    let rounds: u32 = arg(3, 20);
    let mut stack = match Stack::rehearsal(true, scale) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("refresh: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    if let Some(asg) = stack.auto_scaling_group.as_mut() {
        asg.desired_capacity = instances;
        asg.min_size = instances;
        asg.max_size = instances * 2;
    }
    for s in &mut stack.services {
        s.desired_count = instances;
    }
    let docker = std::env::args().nth(4);
    if let Some(image) = &docker {
        use_docker_image(&mut stack, image);
    }
    let Some((la, dir)) = start_fleet("refresh", stack).await else {
        return std::process::ExitCode::FAILURE;
    };
    let http = aws_smithy_http_client::Builder::new().build_http();
    let conf = aws_sdk_autoscaling::Config::builder()
        .behavior_version(aws_sdk_autoscaling::config::BehaviorVersion::latest())
        .region(aws_sdk_autoscaling::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_autoscaling::config::Credentials::new(
            "test", "test", None, None, "bench",
        ))
        .endpoint_url(la.endpoint())
        .http_client(http)
        .build();
    let asg = aws_sdk_autoscaling::Client::from_conf(conf);

    // Describe latency (SDK round trip on loopback), 1,000 calls after 100 of warm-up.
    let mut lat = Vec::new();
    for i in 0..1100 {
        let t = Instant::now();
        if asg
            .describe_auto_scaling_groups()
            .auto_scaling_group_names("demo-asg")
            .send()
            .await
            .is_err()
        {
            eprintln!("refresh: describe failed");
            la.shutdown().await;
            return std::process::ExitCode::FAILURE;
        }
        if i >= 100 {
            lat.push(t.elapsed());
        }
    }
    lat.sort();
    println!(
        "DescribeAutoScalingGroups via the SDK: p50 {:.3} ms, p99 {:.3} ms ({} calls)",
        percentile(&lat, 0.5).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
        lat.len()
    );

    let mut failed = false;
    let mut times = Vec::new();
    let mut rss = Vec::new();
    for round in 1..=rounds {
        let Ok((_, v)) = la.control().create_launch_template_version(
            &TemplateRef::Name("demo-lt".into()),
            NewVersion {
                source_version: Some("1".into()),
                image_id: Some(format!("ami-0ecs{round:012}")),
                ..NewVersion::default()
            },
        ) else {
            eprintln!("refresh: cannot create a launch template version");
            failed = true;
            break;
        };
        let t = Instant::now();
        let started = asg
            .start_instance_refresh()
            .auto_scaling_group_name("demo-asg")
            .desired_configuration(
                DesiredConfiguration::builder()
                    .launch_template(
                        LaunchTemplateSpecification::builder()
                            .launch_template_name("demo-lt")
                            .version(v.number.to_string())
                            .build(),
                    )
                    .build(),
            )
            .preferences(
                RefreshPreferences::builder()
                    .min_healthy_percentage(90)
                    .build(),
            )
            .send()
            .await;
        let Some(id) = started.ok().and_then(|o| o.instance_refresh_id) else {
            eprintln!("refresh: round {round}: start failed");
            failed = true;
            break;
        };
        let status = loop {
            let out = asg
                .describe_instance_refreshes()
                .auto_scaling_group_name("demo-asg")
                .instance_refresh_ids(&id)
                .send()
                .await;
            let status = out
                .ok()
                .and_then(|o| o.instance_refreshes.unwrap_or_default().into_iter().next())
                .and_then(|r| r.status);
            match status {
                Some(
                    s @ (InstanceRefreshStatus::Successful
                    | InstanceRefreshStatus::Failed
                    | InstanceRefreshStatus::Cancelled),
                ) => break s,
                _ if t.elapsed() > Duration::from_secs(600) => break InstanceRefreshStatus::Failed,
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        let took = t.elapsed();
        if status != InstanceRefreshStatus::Successful {
            eprintln!("refresh: round {round}: {status:?}");
            failed = true;
            break;
        }
        // Settled: old tasks stopped, service steady.
        la.wait_ready(la.ready_timeout()).await;
        times.push(took);
        rss.push(rss_kib());
        println!(
            "round {round:>2}: {instances} instances refreshed in {:.2} s (time scale {scale}), RSS {} KiB",
            took.as_secs_f64(),
            rss_kib()
        );
    }
    failed |= !stop_fleet(la, &dir, docker.is_some()).await;
    if failed || times.is_empty() {
        return std::process::ExitCode::FAILURE;
    }
    let mut sorted = times.clone();
    sorted.sort();
    println!(
        "refresh of {instances} instances at time scale {scale}{}: median {:.2} s, max {:.2} s over {} rounds",
        docker
            .as_deref()
            .map(|i| format!(" (container tasks of {i})"))
            .unwrap_or_default(),
        percentile(&sorted, 0.5).as_secs_f64(),
        sorted.last().copied().unwrap_or_default().as_secs_f64(),
        sorted.len()
    );
    let (first, last) = (rss[0], rss[rss.len() - 1]);
    println!(
        "RSS after round 1: {first} KiB, after round {}: {last} KiB",
        rss.len()
    );
    if last > first + first / 5 {
        println!("RSS grew more than 20 %: not flat");
        return std::process::ExitCode::FAILURE;
    }
    std::process::ExitCode::SUCCESS
}

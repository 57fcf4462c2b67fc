//! CodeDeploy blue/green end to end: the default stack's `demo-cd-app`/`demo-dg`, deployments
//! created and followed through the official SDK, real task sets behind the two target groups,
//! the production listener measured by the probe at 1,000 req/s.
//!
//! A canary v1 → v2 drops nothing and shows ~10 % v2 during the canary; a broken release v3
//! (`/ready` passes, `/` answers 500) is caught by an `AfterAllowTestTraffic` hook on the test
//! listener before production sees it. The negative control changes one thing, the hook is
//! gone: production sees v3's errors until a `StopDeployment` with rollback (what
//! `orchestrate deploy` does at the first failed request) or, relying on the alarm alone, until
//! the alarm fires a simulated minute later.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_codedeploy::types::{
    AppSpecContent, DeploymentCreator, DeploymentInfo, DeploymentStatus, DeploymentWaitType,
    LifecycleEventStatus, RevisionLocation, RevisionLocationType, TimeBasedCanary,
    TrafficRoutingConfig, TrafficRoutingType,
};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use loadprobe::{Report, Verdict};
use localaws::Stack;
use stack::{DeploymentGroupConfig, HookFunction};

use crate::util::{
    Aws, Fleet, assert_complete, bridge_events, event_ms, fleet_stack, get, probe, register,
    register_with,
};

const RATE: f64 = 1000.0;

/// The default stack at 60x with `edit` applied to `demo-dg` and a termination wait of one
/// simulated minute (one real second) unless `edit` says otherwise.
fn bg_stack(edit: impl FnOnce(&mut DeploymentGroupConfig, &mut Stack)) -> Stack {
    let mut stack = fleet_stack(true);
    let mut group = stack
        .codedeploy
        .as_ref()
        .and_then(|c| c.applications.first())
        .and_then(|a| a.deployment_groups.first())
        .cloned()
        .expect("demo-dg");
    group.termination_wait_minutes = 1;
    edit(&mut group, &mut stack);
    if let Some(g) = stack
        .codedeploy
        .as_mut()
        .and_then(|c| c.applications.first_mut())
        .and_then(|a| a.deployment_groups.first_mut())
    {
        *g = group;
    }
    stack
}

/// How long a deployment may take, from the stack's own timings: the replacement's health
/// checks, the slowest predefined config's steps, the ready and termination waits, the
/// deregistration delay and the application's stop, with slack for a loaded machine.
fn deadline(fleet: &Fleet) -> Duration {
    let stack = fleet.la.plane().stack();
    let clock = fleet.la.plane().clock();
    let tg = &stack.target_groups[0];
    let g = &stack.codedeploy.as_ref().expect("codedeploy").applications[0].deployment_groups[0];
    let simulated = tg.health_check.interval * (tg.health_check.healthy_threshold + 2)
        + 15 * 60
        + g.deployment_ready.wait_time_in_minutes * 60
        + g.termination_wait_minutes * 60
        + tg.deregistration_delay;
    (clock.secs(simulated) + Duration::from_secs(10)) * 2
}

fn appspec(task_definition: &str, hook: Option<&str>) -> String {
    let mut s = format!(
        "version: 0.0\nResources:\n  - TargetService:\n      Type: AWS::ECS::Service\n      Properties:\n        TaskDefinition: \"{task_definition}\"\n        LoadBalancerInfo:\n          ContainerName: \"web\"\n          ContainerPort: 8080\n"
    );
    if let Some(f) = hook {
        s.push_str(&format!("Hooks:\n  - AfterAllowTestTraffic: \"{f}\"\n"));
    }
    s
}

async fn create(aws: &Aws, appspec: &str, config: Option<&str>) -> String {
    aws.cd
        .create_deployment()
        .application_name("demo-cd-app")
        .deployment_group_name("demo-dg")
        .set_deployment_config_name(config.map(str::to_owned))
        .revision(
            RevisionLocation::builder()
                .revision_type(RevisionLocationType::AppSpecContent)
                .app_spec_content(AppSpecContent::builder().content(appspec).build())
                .build(),
        )
        .send()
        .await
        .expect("create deployment")
        .deployment_id
        .expect("deployment id")
}

async fn deployment(aws: &Aws, id: &str) -> DeploymentInfo {
    aws.cd
        .get_deployment()
        .deployment_id(id)
        .send()
        .await
        .expect("get deployment")
        .deployment_info
        .expect("deployment info")
}

/// Polls the deployment through the SDK until `done` holds for its status; panics at `within`.
async fn wait_status(
    aws: &Aws,
    id: &str,
    within: Duration,
    done: impl Fn(&DeploymentStatus) -> bool,
) -> DeploymentInfo {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let d = deployment(aws, id).await;
        if d.status.as_ref().is_some_and(&done) {
            return d;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "deployment {id} still {:?} ({:?}) after {within:?}",
            d.status,
            d.error_information
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn finished(s: &DeploymentStatus) -> bool {
    matches!(
        s,
        DeploymentStatus::Succeeded | DeploymentStatus::Failed | DeploymentStatus::Stopped
    )
}

/// The production listener's weights, by target group.
fn weights(fleet: &Fleet) -> Vec<(String, u32)> {
    fleet
        .la
        .plane()
        .listener("production")
        .expect("production")
        .forward()
        .weights()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codedeploy_operations_and_errors() {
    let fleet = Fleet::start(bg_stack(|_, _| {})).await;
    let cd = &fleet.aws.cd;

    let apps = cd.list_applications().send().await.unwrap();
    assert_eq!(apps.applications(), ["demo-cd-app"]);
    let app = cd
        .get_application()
        .application_name("demo-cd-app")
        .send()
        .await
        .unwrap();
    assert_eq!(
        app.application()
            .unwrap()
            .compute_platform()
            .map(|p| p.as_str()),
        Some("ECS")
    );
    let e = cd
        .get_application()
        .application_name("nope")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_application_does_not_exist_exception(), "{e:?}");

    let groups = cd
        .list_deployment_groups()
        .application_name("demo-cd-app")
        .send()
        .await
        .unwrap();
    assert_eq!(groups.deployment_groups(), ["demo-dg"]);
    let g = cd
        .get_deployment_group()
        .application_name("demo-cd-app")
        .deployment_group_name("demo-dg")
        .send()
        .await
        .unwrap()
        .deployment_group_info
        .unwrap();
    assert_eq!(
        g.deployment_config_name(),
        Some("CodeDeployDefault.ECSCanary10Percent5Minutes")
    );
    assert_eq!(g.ecs_services()[0].service_name(), Some("demo-svc"));
    let pair = &g
        .load_balancer_info()
        .unwrap()
        .target_group_pair_info_list()[0];
    let tgs: Vec<_> = pair
        .target_groups()
        .iter()
        .filter_map(|t| t.name())
        .collect();
    assert_eq!(tgs, ["demo-tg-blue", "demo-tg-green"]);
    assert_eq!(pair.prod_traffic_route().unwrap().listener_arns().len(), 1);
    assert!(g.auto_rollback_configuration().unwrap().enabled());
    assert_eq!(g.alarm_configuration().unwrap().alarms().len(), 4);
    let e = cd
        .get_deployment_group()
        .application_name("demo-cd-app")
        .deployment_group_name("nope")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_deployment_group_does_not_exist_exception(), "{e:?}");

    // Deployment configs: predefined, custom, and their errors.
    let canary = cd
        .get_deployment_config()
        .deployment_config_name("CodeDeployDefault.ECSCanary10Percent15Minutes")
        .send()
        .await
        .unwrap()
        .deployment_config_info
        .unwrap();
    let routing = canary.traffic_routing_config().unwrap();
    assert_eq!(routing.r#type(), Some(&TrafficRoutingType::TimeBasedCanary));
    assert_eq!(routing.time_based_canary().unwrap().canary_interval(), 15);
    cd.create_deployment_config()
        .deployment_config_name("canary-50-1")
        .compute_platform(aws_sdk_codedeploy::types::ComputePlatform::Ecs)
        .traffic_routing_config(
            TrafficRoutingConfig::builder()
                .r#type(TrafficRoutingType::TimeBasedCanary)
                .time_based_canary(
                    TimeBasedCanary::builder()
                        .canary_percentage(50)
                        .canary_interval(1)
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let e = cd
        .create_deployment_config()
        .deployment_config_name("canary-50-1")
        .traffic_routing_config(
            TrafficRoutingConfig::builder()
                .r#type(TrafficRoutingType::AllAtOnce)
                .build(),
        )
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_deployment_config_already_exists_exception(), "{e:?}");
    let e = cd
        .get_deployment_config()
        .deployment_config_name("nope")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_deployment_config_does_not_exist_exception(), "{e:?}");

    // Deployments: bad ids, a missing one, an AppSpec that is not one.
    let e = cd
        .get_deployment()
        .deployment_id("nope")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_invalid_deployment_id_exception(), "{e:?}");
    let e = cd
        .get_deployment()
        .deployment_id("d-ABCDEFGHI")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_deployment_does_not_exist_exception(), "{e:?}");
    let e = cd
        .create_deployment()
        .application_name("demo-cd-app")
        .deployment_group_name("demo-dg")
        .revision(
            RevisionLocation::builder()
                .revision_type(RevisionLocationType::AppSpecContent)
                .app_spec_content(AppSpecContent::builder().content("Resources: 3").build())
                .build(),
        )
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_invalid_revision_exception(), "{e:?}");

    // A deployment with the custom config; a second one is refused while it runs.
    let v2 = register(&fleet.aws, "v2", false).await;
    let id = create(&fleet.aws, &appspec(&v2, None), Some("canary-50-1")).await;
    let e = cd
        .create_deployment()
        .application_name("demo-cd-app")
        .deployment_group_name("demo-dg")
        .revision(
            RevisionLocation::builder()
                .revision_type(RevisionLocationType::AppSpecContent)
                .app_spec_content(
                    AppSpecContent::builder()
                        .content(appspec(&v2, None))
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_deployment_limit_exceeded_exception(), "{e:?}");
    // A wait type and a hook status the calls do not take, refused by name.
    let e = cd
        .continue_deployment()
        .deployment_id(&id)
        .deployment_wait_type(DeploymentWaitType::from("SOON"))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_invalid_deployment_wait_type_exception(), "{e:?}");
    let e = cd
        .put_lifecycle_event_hook_execution_status()
        .deployment_id(&id)
        .lifecycle_event_hook_execution_id("00000000-0000-0000-0000-000000000000")
        .status(LifecycleEventStatus::InProgress)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        e.is_invalid_lifecycle_event_hook_execution_status_exception(),
        "{e:?}"
    );
    let within = deadline(&fleet);
    // Half the traffic on green during the canary, as the listener says and as GetDeploymentTarget
    // reports it.
    assert!(
        fleet
            .la
            .control()
            .wait_until(within, |_| weights(&fleet)
                .iter()
                .any(|(tg, w)| tg == "demo-tg-green" && *w == 50))
            .await,
        "the canary never moved 50% to green: {:?}",
        weights(&fleet)
    );
    let targets = cd
        .list_deployment_targets()
        .deployment_id(&id)
        .send()
        .await
        .unwrap();
    assert_eq!(targets.target_ids(), ["demo-cluster:demo-svc"]);
    let target = cd
        .get_deployment_target()
        .deployment_id(&id)
        .target_id("demo-cluster:demo-svc")
        .send()
        .await
        .unwrap()
        .deployment_target
        .unwrap()
        .ecs_target
        .unwrap();
    let green = target
        .task_sets_info()
        .iter()
        .find(|t| t.task_set_label() == Some(&aws_sdk_codedeploy::types::TargetLabel::Green))
        .expect("green task set");
    assert!(green.traffic_weight() >= 50.0, "{green:?}");
    assert_eq!(green.running_count(), 3);
    let e = cd
        .get_deployment_target()
        .deployment_id(&id)
        .target_id("x:y")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_deployment_target_does_not_exist_exception(), "{e:?}");
    // ECS's view: two task sets while both run.
    let sets = fleet
        .aws
        .ecs
        .describe_task_sets()
        .cluster("demo-cluster")
        .service("demo-svc")
        .send()
        .await
        .unwrap();
    assert_eq!(sets.task_sets().len(), 2, "{sets:?}");
    let done = wait_status(&fleet.aws, &id, within, finished).await;
    assert_eq!(done.status, Some(DeploymentStatus::Succeeded), "{done:?}");
    let events: Vec<_> = cd
        .get_deployment_target()
        .deployment_id(&id)
        .target_id("demo-cluster:demo-svc")
        .send()
        .await
        .unwrap()
        .deployment_target
        .unwrap()
        .ecs_target
        .unwrap()
        .lifecycle_events()
        .iter()
        .map(|e| {
            (
                e.lifecycle_event_name().unwrap_or("").to_owned(),
                e.status().map(|s| s.as_str().to_owned()),
            )
        })
        .collect();
    assert_eq!(events.len(), 8, "{events:?}");
    assert!(
        events
            .iter()
            .all(|(_, s)| s.as_deref() == Some("Succeeded")),
        "{events:?}"
    );
    // Stopping a finished deployment, continuing one that does not wait.
    let e = cd
        .stop_deployment()
        .deployment_id(&id)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_deployment_already_completed_exception(), "{e:?}");
    let e = cd
        .continue_deployment()
        .deployment_id(&id)
        .deployment_wait_type(DeploymentWaitType::ReadyWait)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_deployment_is_not_in_ready_state_exception(), "{e:?}");
    let e = cd
        .put_lifecycle_event_hook_execution_status()
        .deployment_id(&id)
        .lifecycle_event_hook_execution_id("nope")
        .status(aws_sdk_codedeploy::types::LifecycleEventStatus::Succeeded)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        e.is_invalid_lifecycle_event_hook_execution_id_exception(),
        "{e:?}"
    );
    let listed = cd
        .list_deployments()
        .application_name("demo-cd-app")
        .deployment_group_name("demo-dg")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.deployments(), std::slice::from_ref(&id));
    // Blue and green swapped: production on green only, one task set left, of revision 2.
    assert_eq!(
        weights(&fleet),
        [
            ("demo-tg-blue".to_owned(), 0),
            ("demo-tg-green".to_owned(), 100)
        ]
    );
    let sets = fleet
        .aws
        .ecs
        .describe_task_sets()
        .cluster("demo-cluster")
        .service("demo-svc")
        .send()
        .await
        .unwrap();
    assert_eq!(sets.task_sets().len(), 1, "{sets:?}");
    assert_eq!(sets.task_sets()[0].task_definition(), Some(v2.as_str()));
    fleet.stop().await;
}

/// A canary of a good release under load: zero errors, ~10 % v2 during the canary, 100 % after,
/// and v1's task set gone after the termination wait.
/// What one canary release v1 → v2 under the probe left behind.
struct Canary {
    report: Report,
    done: DeploymentInfo,
    /// The service's task sets after the deployment.
    task_sets: Vec<aws_sdk_ecs::types::TaskSet>,
    /// v1 tasks still running after the deployment.
    live_v1: usize,
    /// The service's `runningCount` after the deployment.
    running: i32,
}

/// One scenario: the default canary (10 %, then the rest five simulated minutes later) of v2
/// under the probe, with the service's desired count `desired` (the stack's is 3), followed
/// until the deployment finishes and a second of traffic after it.
async fn canary(desired: u32) -> Canary {
    let fleet = Fleet::start(bg_stack(|_, stack| {
        for s in &mut stack.services {
            s.desired_count = desired;
        }
    }))
    .await;
    let within = deadline(&fleet);
    let v2 = register(&fleet.aws, "v2", false).await;
    let probe = probe(&fleet.url("production"), RATE, 300.0);
    bridge_events(fleet.la.plane(), &probe);
    let id = create(&fleet.aws, &appspec(&v2, None), None).await;
    let done = wait_status(&fleet.aws, &id, within, finished).await;
    let task_sets = fleet
        .aws
        .ecs
        .describe_task_sets()
        .cluster("demo-cluster")
        .service("demo-svc")
        .send()
        .await
        .expect("describe task sets")
        .task_sets
        .unwrap_or_default();
    let running = fleet
        .aws
        .ecs
        .describe_services()
        .cluster("demo-cluster")
        .services("demo-svc")
        .send()
        .await
        .expect("describe services")
        .services()
        .first()
        .map_or(-1, |s| s.running_count);
    let live_v1 = fleet.la.control().read(|st| {
        st.tasks
            .values()
            .filter(|t| t.is_live() && t.task_definition.1 == 1)
            .count()
    });
    // A second after the deployment.
    let after = probe.live().requests;
    crate::util::wait_probe(&probe, within, |l| l.requests >= after + RATE as u64).await;
    probe.stop();
    let report = probe.finish().await.expect("report");
    fleet.stop().await;
    // Both twins run v2 in the end, whatever they serve.
    assert_eq!(task_sets.len(), 1, "{task_sets:?}");
    assert_eq!(task_sets[0].task_definition(), Some(v2.as_str()));
    Canary {
        report,
        done,
        task_sets,
        live_v1,
        running,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_release_under_load_drops_nothing() {
    let Canary {
        report,
        done,
        task_sets,
        live_v1,
        running,
    } = canary(3).await;
    assert_eq!(done.status, Some(DeploymentStatus::Succeeded), "{done:?}");
    // The v1 task set is gone after the termination wait: one task set (v2, checked by
    // `canary`), no v1 task running, three v2 tasks.
    assert_eq!(task_sets[0].running_count, 3, "{task_sets:?}");
    assert_eq!(live_v1, 0);
    assert_eq!(running, 3);

    assert_eq!(report.verdict, Verdict::Pass, "{:?}", report.reasons);
    assert_eq!(report.errors.total, 0);
    assert_complete(&report, RATE);
    // During the canary (between the 10 % shift and the 100 % one), about a tenth is v2.
    let canary_at = event_ms(
        &report,
        "production weights demo-tg-blue=90,demo-tg-green=10",
    );
    let full_at = event_ms(
        &report,
        "production weights demo-tg-blue=0,demo-tg-green=100",
    );
    let (mut v1, mut v2n) = (0u64, 0u64);
    for i in report.intervals.iter().filter(|i| {
        let t = i.start_ms as i64;
        t > canary_at + 200 && t + (report.interval_ms as i64) < full_at - 200
    }) {
        v1 += i.versions.get("v1").copied().unwrap_or(0);
        v2n += i.versions.get("v2").copied().unwrap_or(0);
    }
    #[allow(clippy::cast_precision_loss)]
    let share = v2n as f64 / (v1 + v2n).max(1) as f64;
    assert!(
        (0.07..=0.13).contains(&share),
        "v2 share during the canary {share:.3} ({v2n} of {}); canary at {canary_at} ms, all at {full_at} ms",
        v1 + v2n,
    );
    // After the shift: v2 only.
    let last = report.intervals.last().expect("intervals");
    assert_eq!(last.versions.get("v1"), None, "{:?}", last.versions);
    assert!(last.versions.get("v2").copied().unwrap_or(0) > 0);
}

/// docs/failure-modes.md#fm-15 reproduced: the same canary with the service's desired count 0,
/// the one change (what Terraform's `aws_ecs_service` leaves when `desired_count` is unset).
/// CodeDeploy reports `Succeeded` and no task ever served: every request is the load
/// balancer's own 503 (no target registered in the group it forwards to), one incident from the
/// first request to the last, naming no task and no version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn desired_count_zero_deploys_successfully_and_serves_nothing() {
    let Canary {
        report: r,
        done,
        task_sets,
        running,
        ..
    } = canary(0).await;
    // The deployment's own verdict is a pass.
    assert_eq!(done.status, Some(DeploymentStatus::Succeeded), "{done:?}");
    assert_eq!(running, 0);
    assert_eq!(task_sets[0].running_count, 0, "{task_sets:?}");
    // Detected.
    assert_eq!(r.verdict, Verdict::Fail);
    assert_complete(&r, RATE);
    assert_eq!(r.ok, 0, "{:?}", r.versions);
    // Attributed: the load balancer answered every request itself, no task did.
    assert_eq!(
        r.errors.by_kind.keys().collect::<Vec<_>>(),
        ["http_503_lb"],
        "{:?}",
        r.errors.by_kind
    );
    assert_eq!(r.incidents.len(), 1, "{:?}", r.incidents);
    let incident = &r.incidents[0];
    assert!(incident.versions.is_empty(), "{:?}", incident.versions);
    assert!(incident.served_by.is_empty(), "{:?}", incident.served_by);
    assert_eq!(
        incident.failed_on.keys().collect::<Vec<_>>(),
        ["(unknown)"],
        "{:?}",
        incident.failed_on
    );
    // Located: from the first request to the last, never recovered.
    assert!(
        incident.start_ms <= r.interval_ms,
        "first error at {} ms",
        incident.start_ms
    );
    assert!(
        incident.end_ms + 2 * r.interval_ms >= r.elapsed_ms,
        "last error at {} ms of {} ms",
        incident.end_ms,
        r.elapsed_ms
    );
    assert!(!incident.recovered);
}

/// Found by the flake hunt (a deploy stopped at once with `ALARM_ACTIVE` on a loaded machine):
/// a task slow to start fails its first load balancer checks, so the unhealthy-host alarm
/// breaches while the fleet comes up. localaws is ready only once every alarm is quiet again,
/// so the first deployment is not stopped by that blip. Here the blip is provoked: the
/// application listens 2 s (120 simulated s) after it starts, longer than a new target may refuse
/// connections before its failed checks count (`localaws::clock::MIN_REAL_START`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unhealthy_blip_while_the_fleet_came_up_does_not_stop_the_first_deployment() {
    let (fleet, events) = Fleet::start_watching(bg_stack(|_, stack| {
        let c = &mut stack.task_definitions[0].container_definitions[0];
        c.environment.push(stack::KeyValue {
            name: "STARTUP_DELAY_SECONDS".into(),
            value: "2".into(),
        });
        if let Some(hc) = c.health_check.as_mut() {
            hc.start_period = Some(180);
        }
        for s in &mut stack.services {
            s.health_check_grace_period = 180;
        }
    }))
    .await;
    // The blip happened, and the alarm saw it, before the fleet was ready.
    assert!(
        events
            .iter()
            .any(|e| e.contains("unhealthy in demo-tg-blue")),
        "no target was unhealthy while the fleet came up: {events:#?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e.contains("alarm demo-cd-app-blue-unhealthy-hosts ALARM")),
        "{events:#?}"
    );
    let quiet = fleet
        .la
        .control()
        .read(|st| st.codedeploy.alarms.iter().all(|a| a.quiet()));
    assert!(quiet, "ready with an alarm breaching");
    let within = deadline(&fleet);
    let v2 = register(&fleet.aws, "v2", false).await;
    let id = create(&fleet.aws, &appspec(&v2, None), None).await;
    let done = wait_status(&fleet.aws, &id, within, finished).await;
    fleet.stop().await;
    assert_eq!(done.status, Some(DeploymentStatus::Succeeded), "{done:?}");
}

/// An all-at-once deployment of a v2 that listens `startup_delay` seconds after its process
/// starts: how it ended, and the data plane's events while it ran.
async fn slow_release(startup_delay: &str) -> (DeploymentInfo, Vec<String>) {
    let fleet = Fleet::start(bg_stack(|_, _| {})).await;
    let within = deadline(&fleet);
    let v2 = register_with(
        &fleet.aws,
        "v2",
        &[("STARTUP_DELAY_SECONDS", startup_delay)],
    )
    .await;
    let mut events = fleet.la.plane().events().subscribe();
    let id = create(
        &fleet.aws,
        &appspec(&v2, None),
        Some("CodeDeployDefault.ECSAllAtOnce"),
    )
    .await;
    let done = wait_status(&fleet.aws, &id, within, finished).await;
    let mut seen = Vec::new();
    loop {
        match events.try_recv() {
            Ok(e) => seen.push(e.kind.to_string()),
            Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => {}
            Err(_) => break,
        }
    }
    fleet.stop().await;
    (done, seen)
}

/// Found by the flake hunt (a good release `Stopped` by the green unhealthy-host alarm on a
/// loaded machine, no request failed): at 60x the stack's unhealthy threshold is two checks
/// 83 ms apart, less than a starved machine can take to start a process, so a replacement task
/// that had not bound its port yet went `initial -> unhealthy`. A new target's refused
/// connections count only after `localaws::clock::MIN_REAL_START` (1 s) of real time; an
/// application listening 0.3 s after it starts (18 simulated seconds, the start of a small web
/// service) is deployed without a blip.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replacement_that_takes_longer_than_two_checks_to_listen_is_not_found_unhealthy() {
    let (done, events) = slow_release("0.3").await;
    assert_eq!(done.status, Some(DeploymentStatus::Succeeded), "{done:?}");
    assert!(
        !events.iter().any(|e| e.contains("unhealthy in")),
        "{events:#?}"
    );
}

/// The twin: the same release listening 2 s after it starts, past the floor, is found unhealthy,
/// and the unhealthy-host alarm stops the deployment: the floor hides a process's start, not an
/// application that does not answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replacement_that_refuses_connections_past_the_floor_is_found_unhealthy_and_stops_the_deployment()
 {
    let (done, events) = slow_release("2").await;
    assert_eq!(done.status, Some(DeploymentStatus::Stopped), "{done:?}");
    let code = done.error_information.as_ref().and_then(|e| e.code.clone());
    assert_eq!(
        code,
        Some(aws_sdk_codedeploy::types::ErrorCode::AlarmActive),
        "{done:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e.contains("unhealthy in demo-tg-green")),
        "{events:#?}"
    );
}

/// An HTTP endpoint standing in for the `validate` Lambda: on each event it checks the test
/// listener with a few requests and reports the result through the SDK.
struct Validator {
    calls: Arc<std::sync::atomic::AtomicU64>,
}

impl Validator {
    fn serve(listener: tokio::net::TcpListener, aws: Arc<Aws>, test_url: String) -> Validator {
        let calls = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = calls.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let aws = aws.clone();
                let test_url = test_url.clone();
                let counted = counted.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        move |req: http::Request<hyper::body::Incoming>| {
                            let aws = aws.clone();
                            let test_url = test_url.clone();
                            let counted = counted.clone();
                            async move {
                                counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                let body = req
                                    .into_body()
                                    .collect()
                                    .await
                                    .map(|b| b.to_bytes())
                                    .unwrap_or_default();
                                let event: serde_json::Value =
                                    serde_json::from_slice(&body).unwrap_or_default();
                                let id = event["DeploymentId"]
                                    .as_str()
                                    .unwrap_or_default()
                                    .to_owned();
                                let exec = event["LifecycleEventHookExecutionId"]
                                    .as_str()
                                    .unwrap_or_default()
                                    .to_owned();
                                // Answer the invocation at once, validate in the background (as an
                                // asynchronous Lambda would).
                                tokio::spawn(async move {
                                    let mut ok = true;
                                    for _ in 0..20 {
                                        ok &= matches!(get(&test_url).await, Ok((200, _, _)));
                                    }
                                    let status = if ok {
                                        aws_sdk_codedeploy::types::LifecycleEventStatus::Succeeded
                                    } else {
                                        aws_sdk_codedeploy::types::LifecycleEventStatus::Failed
                                    };
                                    aws.cd
                                        .put_lifecycle_event_hook_execution_status()
                                        .deployment_id(id)
                                        .lifecycle_event_hook_execution_id(exec)
                                        .status(status)
                                        .send()
                                        .await
                                        .expect("put hook status");
                                });
                                Ok::<_, Infallible>(http::Response::new(Full::new(
                                    Bytes::from_static(b"{}"),
                                )))
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Validator { calls }
    }
}

struct Broken {
    report: Report,
    done: DeploymentInfo,
    rollback: DeploymentInfo,
    hook_calls: u64,
    stopped_at_ms: Option<i64>,
}

/// One scenario: a canary of broken release v3 under load, with the validation hook in the
/// AppSpec or without it (the stack is the same: the function exists either way);
/// `stop_on_error` stops the deployment with rollback at the probe's first failed request, as
/// `orchestrate deploy` does.
async fn broken_release(hook: bool, stop_on_error: bool) -> Broken {
    // The function's endpoint is bound first, so the stack can name it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_addr = listener.local_addr().unwrap();
    let stack = bg_stack(|_, stack| {
        if let Some(cd) = stack.codedeploy.as_mut() {
            cd.functions.insert(
                "validate".into(),
                HookFunction {
                    url: Some(format!("http://{hook_addr}/")),
                    command: None,
                },
            );
        }
    });
    let fleet = Fleet::start(stack).await;
    let within = deadline(&fleet);
    let aws = Arc::new(Aws::new(&fleet.la.endpoint()));
    let validator = Validator::serve(listener, aws, fleet.url("test"));
    let v3 = register(&fleet.aws, "v3", true).await;
    let probe = probe(&fleet.url("production"), RATE, 300.0);
    bridge_events(fleet.la.plane(), &probe);
    let marker = probe.marker();
    let id = create(&fleet.aws, &appspec(&v3, hook.then_some("validate")), None).await;
    let mut stopped_at_ms = None;
    if stop_on_error {
        crate::util::wait_probe(&probe, within, |l| l.errors > 0).await;
        fleet
            .aws
            .cd
            .stop_deployment()
            .deployment_id(&id)
            .auto_rollback_enabled(true)
            .send()
            .await
            .expect("stop deployment");
        marker.mark("StopDeployment sent");
        stopped_at_ms = Some(0);
    }
    let done = wait_status(&fleet.aws, &id, within, finished).await;
    let rollback_id = done
        .rollback_info
        .as_ref()
        .and_then(|r| r.rollback_deployment_id.clone())
        .expect("a rollback deployment");
    let rollback = wait_status(&fleet.aws, &rollback_id, within, finished).await;
    // A second of blue only after the rollback.
    let after = probe.live().requests;
    crate::util::wait_probe(&probe, within, |l| l.requests >= after + RATE as u64).await;
    probe.stop();
    let report = probe.finish().await.expect("report");
    if stopped_at_ms.is_some() {
        stopped_at_ms = Some(event_ms(&report, "StopDeployment sent"));
    }
    assert_eq!(
        weights(&fleet),
        [
            ("demo-tg-blue".to_owned(), 100),
            ("demo-tg-green".to_owned(), 0)
        ],
        "production is not back on blue"
    );
    let hook_calls = validator.calls.load(std::sync::atomic::Ordering::Relaxed);
    fleet.stop().await;
    Broken {
        report,
        done,
        rollback,
        hook_calls,
        stopped_at_ms,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_release_is_caught_on_the_test_listener_before_production() {
    let run = broken_release(true, false).await;
    assert_eq!(
        run.done.status,
        Some(DeploymentStatus::Failed),
        "{:?}",
        run.done
    );
    let err = run
        .done
        .error_information
        .as_ref()
        .expect("error information");
    assert_eq!(
        err.code.as_ref().map(|c| c.as_str()),
        Some("HOOK_EXECUTION_FAILURE"),
        "{err:?}"
    );
    assert_eq!(run.rollback.status, Some(DeploymentStatus::Succeeded));
    // Who created each, in CodeDeploy's words (an SDK reads any other word as unknown).
    assert_eq!(run.done.creator, Some(DeploymentCreator::User));
    assert_eq!(
        run.rollback.creator,
        Some(DeploymentCreator::CodeDeployRollback)
    );
    assert_eq!(run.hook_calls, 1);
    // Production never saw v3: zero errors, zero v3 responses.
    assert_eq!(
        run.report.verdict,
        Verdict::Pass,
        "{:?}",
        run.report.reasons
    );
    assert_eq!(run.report.errors.total, 0);
    assert_eq!(
        run.report.versions.get("v3"),
        None,
        "{:?}",
        run.report.versions
    );
    assert_complete(&run.report, RATE);
}

/// The negative control: the identical broken release without the hook. Production sees v3's
/// errors once the canary starts, all attributed to v3; the stop with rollback returns every
/// request to blue within one health-check interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_hook_production_sees_the_broken_release_until_stopped() {
    let run = broken_release(false, true).await;
    let r = &run.report;
    assert_eq!(r.verdict, Verdict::Fail);
    assert_eq!(
        run.done.status,
        Some(DeploymentStatus::Stopped),
        "{:?}",
        run.done
    );
    assert_eq!(run.rollback.status, Some(DeploymentStatus::Succeeded));
    // Detected and attributed: target 500s, all from v3.
    assert!(r.errors.total > 0);
    assert_eq!(
        r.errors.by_kind.keys().collect::<Vec<_>>(),
        ["http_500_target"],
        "{:?}",
        r.errors.by_kind
    );
    let incident = r.incidents.first().expect("an incident");
    assert_eq!(
        incident
            .versions
            .keys()
            .filter(|v| *v != "v1")
            .collect::<Vec<_>>(),
        ["v3"],
        "{:?}",
        incident.versions
    );
    // Located: the first error after the canary shift, the last within one health-check
    // interval (5 s simulated = 83 ms at 60x) plus one probe interval of the stop.
    let canary_at = event_ms(r, "production weights demo-tg-blue=90,demo-tg-green=10");
    let stopped = run.stopped_at_ms.expect("stop time");
    assert!(
        incident.start_ms as i64
            >= canary_at - r.interval_ms as i64 - crate::util::send_slack_ms(r),
        "first error at {} ms, canary at {canary_at} ms (send delay max {} µs)",
        incident.start_ms,
        r.send_delay_us.max
    );
    let last_error_ms = r.incidents.iter().map(|i| i.end_ms).max().unwrap_or(0) as i64;
    assert!(
        last_error_ms <= stopped + 83 + r.interval_ms as i64,
        "errors until {last_error_ms} ms, stop sent at {stopped} ms"
    );
    assert_complete(r, RATE);
}

/// The same broken release relying on the alarm alone: errors until the 5xx alarm fires, one
/// simulated minute of CloudWatch resolution later, then the rollback. Measured, not assumed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relying_on_the_alarm_alone_errors_last_until_it_fires() {
    let run = broken_release(false, false).await;
    let r = &run.report;
    assert_eq!(r.verdict, Verdict::Fail);
    assert_eq!(
        run.done.status,
        Some(DeploymentStatus::Stopped),
        "{:?}",
        run.done
    );
    let err = run
        .done
        .error_information
        .as_ref()
        .expect("error information");
    assert_eq!(
        err.code.as_ref().map(|c| c.as_str()),
        Some("ALARM_ACTIVE"),
        "{err:?}"
    );
    let first = r.incidents.first().expect("an incident").start_ms as i64;
    let alarm = event_ms(r, "target-5xx ALARM");
    let last_error_ms = r.incidents.iter().map(|i| i.end_ms).max().unwrap_or(0) as i64;
    eprintln!(
        "alarm-only: first error at {first} ms, alarm at {alarm} ms, last error at {last_error_ms} ms, {} errors",
        r.errors.total
    );
    assert!(alarm > first, "the alarm fired before any error");
    assert!(last_error_ms >= alarm - r.interval_ms as i64);
    assert_complete(r, RATE);
}

/// The ready wait: `STOP_DEPLOYMENT` holds the deployment in `Ready` until ContinueDeployment;
/// without it, the wait runs out and the deployment stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_wait_holds_until_continue_and_stops_on_timeout() {
    let fleet = Fleet::start(bg_stack(|g, _| {
        g.deployment_ready.action_on_timeout = "STOP_DEPLOYMENT".into();
        g.deployment_ready.wait_time_in_minutes = 5;
        g.deployment_config = "CodeDeployDefault.ECSAllAtOnce".into();
    }))
    .await;
    let within = deadline(&fleet);
    let v2 = register(&fleet.aws, "v2", false).await;
    let id = create(&fleet.aws, &appspec(&v2, None), None).await;
    wait_status(&fleet.aws, &id, within, |s| *s == DeploymentStatus::Ready).await;
    // Waiting: production is still on blue, the test listener on green.
    assert_eq!(
        weights(&fleet),
        [
            ("demo-tg-blue".to_owned(), 100),
            ("demo-tg-green".to_owned(), 0)
        ]
    );
    fleet
        .aws
        .cd
        .continue_deployment()
        .deployment_id(&id)
        .deployment_wait_type(DeploymentWaitType::ReadyWait)
        .send()
        .await
        .unwrap();
    let done = wait_status(&fleet.aws, &id, within, finished).await;
    assert_eq!(done.status, Some(DeploymentStatus::Succeeded), "{done:?}");

    // v3 waits too, and nobody continues it.
    let v3 = register(&fleet.aws, "v3", false).await;
    let id = create(&fleet.aws, &appspec(&v3, None), None).await;
    wait_status(&fleet.aws, &id, within, |s| *s == DeploymentStatus::Ready).await;
    let done = wait_status(&fleet.aws, &id, within, finished).await;
    assert_eq!(done.status, Some(DeploymentStatus::Stopped), "{done:?}");
    assert_eq!(
        done.error_information
            .and_then(|e| e.code)
            .map(|c| c.as_str().to_owned()),
        Some("TIMEOUT".to_owned())
    );
    // Production stayed on v2's target group (green, after the first deployment).
    assert_eq!(
        weights(&fleet),
        [
            ("demo-tg-green".to_owned(), 100),
            ("demo-tg-blue".to_owned(), 0)
        ]
    );
    fleet.stop().await;
}

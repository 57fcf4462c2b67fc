//! ECS rolling deployments (deployment controller `ECS`): the deployments `DescribeServices`
//! lists, and the deployment circuit breaker: a release that never turns healthy fails and rolls
//! back to the last completed deployment; its negative control, the same release without the
//! breaker, never completes and never rolls back.

use aws_sdk_ecs::types::{
    Deployment, HealthCheck, KeyValuePair, ServiceDeployment, ServiceDeploymentStatus,
};
use loadprobe::{Report, Verdict};
use localaws::control::rolling::RolloutState;
use stack::CircuitBreakerConfig;

use crate::util::{Fleet, assert_complete, bridge_events, probe, rolling_stack, web_container};

const RATE: f64 = 200.0;

/// `demo-svc` as `DescribeServices` describes it.
async fn service(fleet: &Fleet) -> aws_sdk_ecs::types::Service {
    fleet
        .aws
        .ecs
        .describe_services()
        .cluster("demo-cluster")
        .services("demo-svc")
        .send()
        .await
        .unwrap()
        .services()[0]
        .clone()
}

/// `demo-svc`'s deployments (the primary first).
async fn deployments(fleet: &Fleet) -> Vec<Deployment> {
    service(fleet).await.deployments().to_vec()
}

/// The service's events, newest first.
async fn events(fleet: &Fleet) -> Vec<String> {
    service(fleet)
        .await
        .events()
        .iter()
        .filter_map(|e| e.message().map(str::to_owned))
        .collect()
}

/// `demo-svc`'s service deployments, newest first: ListServiceDeployments, then
/// DescribeServiceDeployments.
async fn service_deployments(fleet: &Fleet) -> Vec<ServiceDeployment> {
    let ecs = &fleet.aws.ecs;
    let briefs = ecs
        .list_service_deployments()
        .cluster("demo-cluster")
        .service("demo-svc")
        .send()
        .await
        .unwrap();
    let arns: Vec<String> = briefs
        .service_deployments()
        .iter()
        .filter_map(|b| b.service_deployment_arn().map(str::to_owned))
        .collect();
    let described = ecs
        .describe_service_deployments()
        .set_service_deployment_arns(Some(arns.clone()))
        .send()
        .await
        .unwrap();
    assert!(
        described.failures().is_empty(),
        "{:?}",
        described.failures()
    );
    // In the list's order.
    arns.iter()
        .filter_map(|a| {
            described
                .service_deployments()
                .iter()
                .find(|d| d.service_deployment_arn() == Some(a.as_str()))
                .cloned()
        })
        .collect()
}

/// Registers revision 2 of `demo-web`, whose container health check always fails (the
/// application itself serves).
async fn register_broken(fleet: &Fleet) {
    fleet
        .aws
        .ecs
        .register_task_definition()
        .family("demo-web")
        .container_definitions(
            web_container()
                .environment(
                    KeyValuePair::builder()
                        .name("APP_VERSION")
                        .value("v2")
                        .build(),
                )
                .health_check(
                    HealthCheck::builder()
                        .command("CMD-SHELL")
                        .command("exit 1")
                        .interval(5)
                        .retries(2)
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
}

/// Waits until the service's first deployment completed (its steady state), or panics at
/// `within`.
async fn first_deployment_completed(fleet: &Fleet, within: std::time::Duration) {
    assert!(
        fleet
            .la
            .control()
            .wait_until(within, |st| st.services["demo-svc"]
                .primary()
                .is_some_and(|d| d.rollout == RolloutState::Completed))
            .await,
        "the first deployment never completed"
    );
}

/// How many tasks of revision 2 the scheduler stopped for failing their container health check.
fn failed_checks(fleet: &Fleet) -> usize {
    fleet.la.control().read(|st| {
        st.tasks
            .values()
            .filter(|t| {
                t.task_definition.1 == 2
                    && t.stopped_reason.as_deref() == Some("Task failed container health checks")
            })
            .count()
    })
}

struct Broken {
    report: Report,
    /// The deployments once the outcome was reached.
    deployments: Vec<Deployment>,
    events: Vec<String>,
    /// Revision 2's tasks stopped for failing their check by then.
    failed: usize,
    /// The service deployments then, newest first.
    service_deployments: Vec<ServiceDeployment>,
}

/// Revision 2 of `demo-web` whose container health check always fails (the application itself
/// serves), rolled out under load on a service with `breaker`; returns once the breaker rolled
/// back (with one) or once twice the breaker's threshold of tasks failed (without).
async fn broken_release(breaker: Option<CircuitBreakerConfig>) -> Broken {
    let mut stack = rolling_stack();
    stack.services[0].deployment_circuit_breaker = breaker;
    let fleet = Fleet::start(stack).await;
    let ecs = &fleet.aws.ecs;
    let within = fleet.refresh_deadline();
    first_deployment_completed(&fleet, within).await;
    let before = deployments(&fleet).await;
    assert_eq!(before.len(), 1, "{before:?}");
    assert_eq!(
        before[0].rollout_state().map(|s| s.as_str()),
        Some("COMPLETED"),
        "the first deployment completes when the service is steady: {before:?}"
    );
    let probe = probe(&fleet.url("production"), RATE, 600.0);
    bridge_events(fleet.la.plane(), &probe);
    register_broken(&fleet).await;
    ecs.update_service()
        .cluster("demo-cluster")
        .service("demo-svc")
        .task_definition("demo-web:2")
        .send()
        .await
        .unwrap();
    let threshold = CircuitBreakerConfig::threshold(3) as usize;
    let reached = match breaker {
        Some(b) if b.enable && b.rollback => {
            fleet
                .la
                .control()
                .wait_until(within, |st| {
                    let s = &st.services["demo-svc"];
                    s.task_definition.1 == 1
                        && s.steady
                        && s.primary()
                            .is_some_and(|d| d.rollout == RolloutState::Completed)
                })
                .await
        }
        _ => {
            fleet
                .la
                .control()
                .wait_until(within, |st| {
                    st.tasks
                        .values()
                        .filter(|t| {
                            t.task_definition.1 == 2
                                && t.stopped_reason.as_deref()
                                    == Some("Task failed container health checks")
                        })
                        .count()
                        >= 2 * threshold
                })
                .await
        }
    };
    assert!(reached, "{:#?}", deployments(&fleet).await);
    let deployments = deployments(&fleet).await;
    let events = events(&fleet).await;
    let failed = failed_checks(&fleet);
    let service_deployments = service_deployments(&fleet).await;
    // One more second of traffic on whatever serves now.
    let after = probe.live().requests;
    crate::util::wait_probe(&probe, within, |l| l.requests >= after + RATE as u64).await;
    probe.stop();
    let report = probe.finish().await.expect("report");
    fleet.stop().await;
    Broken {
        report,
        deployments,
        events,
        failed,
        service_deployments,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_circuit_breaker_fails_a_release_that_never_turns_healthy_and_rolls_back() {
    let run = broken_release(Some(CircuitBreakerConfig {
        enable: true,
        rollback: true,
    }))
    .await;
    // Rolled back: the completed deployment of revision 1 is primary again and completed; the
    // failed one says why (and leaves the list once its last task is gone).
    let primary = &run.deployments[0];
    assert_eq!(primary.status(), Some("PRIMARY"));
    assert!(
        primary
            .task_definition()
            .is_some_and(|t| t.ends_with("demo-web:1")),
        "{primary:?}"
    );
    assert_eq!(
        primary.rollout_state().map(|s| s.as_str()),
        Some("COMPLETED")
    );
    assert!(
        run.events
            .iter()
            .any(|e| e.contains("deployment failed: tasks failed to start.")),
        "{:#?}",
        run.events
    );
    assert!(
        run.events.iter().any(|e| e.contains(&format!(
            "rolling back to deployment {}",
            primary.id().unwrap_or_default()
        ))),
        "{:#?}",
        run.events
    );
    // The service deployment to revision 2 rolled back, the breaker triggered at its threshold;
    // the first one had succeeded.
    let [newest, first] = run.service_deployments.as_slice() else {
        panic!("{:#?}", run.service_deployments);
    };
    assert_eq!(
        newest.status(),
        Some(&ServiceDeploymentStatus::RollbackSuccessful),
        "{newest:?}"
    );
    assert_eq!(first.status(), Some(&ServiceDeploymentStatus::Successful));
    let number = primary
        .id()
        .and_then(|id| id.strip_prefix("ecs-svc/"))
        .expect("a deployment number");
    assert!(
        newest
            .rollback()
            .and_then(|r| r.service_revision_arn())
            .is_some_and(|a| a.ends_with(&format!("/{number}"))),
        "rolled back to the first deployment's revision: {newest:?}"
    );
    let breaker = newest.deployment_circuit_breaker().expect("breaker");
    assert_eq!(breaker.status().map(|s| s.as_str()), Some("TRIGGERED"));
    assert_eq!(breaker.threshold(), 3);
    assert!(breaker.failure_count() >= 3, "{breaker:?}");
    // It took the threshold's failures (3 for 3 tasks), and not many more.
    assert!(
        (3..=5).contains(&run.failed),
        "{} tasks failed their checks",
        run.failed
    );
    // Not one request failed: revision 2's application serves (its load balancer check passes,
    // only its container check fails), so it answered some requests until it was stopped; the
    // old tasks served throughout.
    assert_eq!(
        run.report.verdict,
        Verdict::Pass,
        "{:?}",
        run.report.reasons
    );
    assert_eq!(run.report.errors.total, 0);
    assert!(
        run.report.versions.get("v1").is_some_and(|n| *n > 0),
        "{:?}",
        run.report.versions
    );
    assert_complete(&run.report, RATE);
}

/// The negative control: the same release without the circuit breaker. Twice the breaker's
/// threshold of tasks fail, and the deployment is still in progress on revision 2: the failures
/// are counted, nothing acts on them (ECS keeps replacing the failing tasks for as long as it
/// runs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_circuit_breaker_the_same_release_never_completes_nor_rolls_back() {
    let run = broken_release(None).await;
    let primary = &run.deployments[0];
    assert_eq!(primary.status(), Some("PRIMARY"));
    assert!(
        primary
            .task_definition()
            .is_some_and(|t| t.ends_with("demo-web:2")),
        "{primary:?}"
    );
    assert_eq!(
        primary.rollout_state().map(|s| s.as_str()),
        Some("IN_PROGRESS"),
        "{primary:?}"
    );
    // ECS counts the failures all the same; nothing acts on them.
    assert!(run.failed >= 6, "{}", run.failed);
    assert!(primary.failed_tasks() >= 6, "{primary:?}");
    assert!(
        !run.events.iter().any(|e| e.contains("rolling back")),
        "{:#?}",
        run.events
    );
    // The old tasks kept serving throughout (minimum healthy 100 %).
    assert_eq!(run.report.errors.total, 0, "{:?}", run.report.errors);
    assert_complete(&run.report, RATE);
}

/// `StopServiceDeployment` rolls back a service deployment in progress, breaker or not: the
/// release that never turns healthy, stopped by request, ends `ROLLBACK_SUCCESSFUL` on revision 1;
/// a second stop is a conflict, an unknown ARN is not found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_service_deployment_rolls_back_the_deployment_in_progress() {
    let fleet = Fleet::start(rolling_stack()).await;
    let ecs = &fleet.aws.ecs;
    let within = fleet.refresh_deadline();
    first_deployment_completed(&fleet, within).await;
    register_broken(&fleet).await;
    ecs.update_service()
        .cluster("demo-cluster")
        .service("demo-svc")
        .task_definition("demo-web:2")
        .send()
        .await
        .unwrap();
    let newest = service_deployments(&fleet).await[0].clone();
    assert_eq!(newest.status(), Some(&ServiceDeploymentStatus::InProgress));
    let arn = newest.service_deployment_arn().expect("arn").to_owned();
    ecs.stop_service_deployment()
        .service_deployment_arn(&arn)
        .stop_type(aws_sdk_ecs::types::StopServiceDeploymentStopType::Rollback)
        .send()
        .await
        .unwrap();
    assert!(
        fleet
            .la
            .control()
            .wait_until(within, |st| {
                let s = &st.services["demo-svc"];
                s.task_definition.1 == 1
                    && s.steady
                    && s.primary()
                        .is_some_and(|d| d.rollout == RolloutState::Completed)
            })
            .await,
        "the service did not roll back to revision 1"
    );
    let after = service_deployments(&fleet).await;
    assert_eq!(
        after[0].status(),
        Some(&ServiceDeploymentStatus::RollbackSuccessful),
        "{:?}",
        after[0]
    );
    let e = ecs
        .stop_service_deployment()
        .service_deployment_arn(&arn)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_conflict_exception(), "{e:?}");
    let e = ecs
        .stop_service_deployment()
        .service_deployment_arn(format!("{arn}x"))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_service_deployment_not_found_exception(), "{e:?}");
    fleet.stop().await;
}

//! An application slow to start (it listens two seconds after its process starts,
//! `STARTUP_DELAY_SECONDS`), and three ways a rollout loses requests to it, each one scenario run
//! twice with one input flipped.
//!
//! A hand-rolled blue/green cutover (docs/failure-modes.md#fm-12): two ECS services, `demo-svc`
//! (v1) behind `demo-tg-blue` and `demo-svc-green` behind `demo-tg-green`, and the production
//! listener's weights moved through ELBv2 `ModifyListener`, as a script or a Terraform apply does
//! without CodeDeploy. One scenario run twice with one input flipped: whether the cutover waits
//! until `DescribeTargetHealth` shows every green target healthy before it moves the weights.
//!
//! v2 takes two seconds to start listening (`STARTUP_DELAY_SECONDS`, an application warming
//! up): longer than localaws lets a new target refuse connections before its failed checks count
//! (`localaws::clock::MIN_REAL_START`, 1 s), so its targets do turn unhealthy while it starts.
//! Without the wait, the green group has no healthy target when it gets the traffic: the load
//! balancer answers 503 itself while no green task is registered, and once ECS has registered
//! them (a task is registered as soon as it is RUNNING) it fails open to targets still in their
//! initial health checks, whose application does not listen yet: 502.
//!
//! The service's health check grace period (docs/failure-modes.md#fm-9): shorter than the start,
//! ECS stops every green task for failing its load balancer checks before it listens.
//!
//! A service's `minimumHealthyPercent` (docs/failure-modes.md#fm-3): one task, its instance
//! drained; at 0 ECS stops the task before its replacement listens, at 100 it starts the
//! replacement first.

use std::time::Duration;

use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, ForwardActionConfig, TargetGroupTuple, TargetHealthStateEnum,
};
use loadprobe::{Report, Verdict};
use localaws::Stack;
use stack::KeyValue;

use crate::util::{
    Fleet, assert_complete, bridge_events, event_ms, probe, register_with, rolling_stack,
    wait_probe,
};

const RATE: f64 = 1000.0;
/// Green tasks started for the cutover.
const GREEN: i32 = 3;
/// How long v2 takes to start listening (real seconds, not scaled).
const STARTUP_DELAY_SECONDS: &str = "2";

/// The rolling fleet with a second service, `demo-svc-green`, of the same task definition behind
/// `demo-tg-green`, scaled to zero, with a health check grace period that covers v2's start.
fn two_services() -> Stack {
    with_green_grace(GRACE)
}

/// Green's health check grace period that covers v2's start (simulated seconds).
const GRACE: u32 = 180;

/// [`two_services`] with green's health check grace period `grace` (simulated seconds).
fn with_green_grace(grace: u32) -> Stack {
    let mut stack = rolling_stack();
    let mut green = stack.services[0].clone();
    green.name = "demo-svc-green".into();
    green.desired_count = 0;
    // Three simulated minutes (3 s real at 60x) of grace for v2's two-second (120 s simulated)
    // start: without it ECS would stop the green tasks for failing health checks before they
    // listen (docs/failure-modes.md#fm-9).
    green.health_check_grace_period = grace;
    if let Some(lb) = green.load_balancer.as_mut() {
        lb.target_group = "demo-tg-green".into();
    }
    stack.services.push(green);
    stack
}

/// Registers v2, which listens two seconds after it starts (an application warming up), and
/// updates `demo-svc-green` to three tasks of it.
async fn scale_green_to_slow_v2(fleet: &Fleet) {
    let v2 = register_with(
        &fleet.aws,
        "v2",
        &[("STARTUP_DELAY_SECONDS", STARTUP_DELAY_SECONDS)],
    )
    .await;
    fleet
        .aws
        .ecs
        .update_service()
        .cluster("demo-cluster")
        .service("demo-svc-green")
        .task_definition(&v2)
        .desired_count(GREEN)
        .send()
        .await
        .expect("update green service");
}

/// What one cutover saw.
struct Cutover {
    report: Report,
    /// The green service's tasks.
    green: Vec<String>,
}

/// One cutover under the probe: after a second of v1, `demo-svc-green` is updated to v2 (which
/// listens two seconds after it starts) and three tasks; with `wait_for_health`, the cutover waits until all three are healthy in
/// `demo-tg-green`; then production moves to green at once (0/100), and the probe runs a second
/// of traffic after green is healthy.
async fn cutover(wait_for_health: bool) -> Cutover {
    let fleet = Fleet::start(two_services()).await;
    let (within, green_arn, prod_arn, blue_arn) = {
        let stack = fleet.la.plane().stack();
        let clock = fleet.la.plane().clock();
        let hc = &stack.target_groups[1].health_check;
        // Placement and start, then the healthy threshold's checks, with slack for a loaded
        // machine.
        let within =
            (clock.secs(hc.interval * (hc.healthy_threshold + 2)) + Duration::from_secs(10)) * 2;
        let elb = &fleet.aws.elb;
        let tgs = elb
            .describe_target_groups()
            .send()
            .await
            .expect("describe target groups");
        let arn = |name: &str| {
            tgs.target_groups()
                .iter()
                .find(|t| t.target_group_name() == Some(name))
                .and_then(|t| t.target_group_arn())
                .map(str::to_owned)
                .unwrap_or_else(|| panic!("target group {name}"))
        };
        let lb_arn = elb
            .describe_load_balancers()
            .names("demo-alb")
            .send()
            .await
            .expect("describe load balancers")
            .load_balancers()[0]
            .load_balancer_arn()
            .map(str::to_owned)
            .expect("load balancer arn");
        let port = fleet
            .la
            .plane()
            .listener("production")
            .expect("production")
            .addr()
            .port();
        let prod_arn = elb
            .describe_listeners()
            .load_balancer_arn(lb_arn)
            .send()
            .await
            .expect("describe listeners")
            .listeners()
            .iter()
            .find(|l| l.port() == Some(i32::from(port)))
            .and_then(|l| l.listener_arn())
            .map(str::to_owned)
            .expect("production listener");
        (within, arn("demo-tg-green"), prod_arn, arn("demo-tg-blue"))
    };
    let probe = probe(&fleet.url("production"), RATE, 300.0);
    bridge_events(fleet.la.plane(), &probe);
    let marker = probe.marker();
    wait_probe(&probe, within, |l| l.requests >= RATE as u64).await;

    scale_green_to_slow_v2(&fleet).await;
    marker.mark("green scaled up");
    let green_healthy = || async {
        fleet
            .aws
            .elb
            .describe_target_health()
            .target_group_arn(&green_arn)
            .send()
            .await
            .expect("describe target health")
            .target_health_descriptions()
            .iter()
            .filter(|d| {
                d.target_health().and_then(|h| h.state()) == Some(&TargetHealthStateEnum::Healthy)
            })
            .count()
    };
    let wait_green = || async {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if green_healthy().await >= GREEN as usize {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "green not healthy within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    if wait_for_health {
        wait_green().await;
    }
    let forward = |arn: &str, weight: i32| {
        TargetGroupTuple::builder()
            .target_group_arn(arn)
            .weight(weight)
            .build()
    };
    fleet
        .aws
        .elb
        .modify_listener()
        .listener_arn(&prod_arn)
        .default_actions(
            Action::builder()
                .r#type(ActionTypeEnum::Forward)
                .forward_config(
                    ForwardActionConfig::builder()
                        .target_groups(forward(&blue_arn, 0))
                        .target_groups(forward(&green_arn, 100))
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .expect("modify listener");
    wait_green().await;
    let after = probe.live().requests;
    wait_probe(&probe, within, |l| l.requests >= after + RATE as u64).await;
    probe.stop();
    let report = probe.finish().await.expect("report");
    let green = fleet.la.control().read(|st| {
        st.tasks
            .values()
            .filter(|t| t.service.as_deref() == Some("demo-svc-green"))
            .map(|t| t.id.clone())
            .collect::<Vec<_>>()
    });
    fleet.stop().await;

    // Both twins: every request has a result, as many as the schedule asked, and production
    // ends on v2 only.
    assert_complete(&report, RATE);
    let last = report.intervals.last().expect("intervals");
    assert_eq!(last.versions.get("v1"), None, "{:?}", last.versions);
    assert_eq!(green.len(), GREEN as usize, "{green:?}");
    Cutover { report, green }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cutover_after_green_is_healthy_drops_nothing() {
    let r = cutover(true).await.report;
    assert_eq!(r.verdict, Verdict::Pass, "{:?}", r.reasons);
    assert_eq!(r.errors.total, 0);
    let shift = event_ms(&r, "weights demo-tg-blue=0,demo-tg-green=100");
    assert!(
        r.intervals
            .iter()
            .filter(|i| i.start_ms as i64 > shift + r.interval_ms as i64)
            .all(|i| !i.versions.contains_key("v1")),
        "v1 answered after the cutover"
    );
}

/// The negative control: the identical cutover without the health wait. Detected (the verdict
/// fails), located (the errors start at the weight change and end by the time every green target
/// is healthy) and attributed (the load balancer's own errors: 503 naming no task while green has
/// no registered target, 502 naming the green task it forwarded to while that task's
/// application did not listen yet).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cutover_before_green_is_healthy_drops_requests() {
    let Cutover { report: r, green } = cutover(false).await;
    assert_eq!(r.verdict, Verdict::Fail, "{}", r.summary());
    assert!(r.errors.total > 0);
    let shift = event_ms(&r, "weights demo-tg-blue=0,demo-tg-green=100");
    let healthy = r
        .events
        .iter()
        .filter(|e| e.label.contains("healthy in demo-tg-green") && !e.label.contains("unhealthy"))
        .map(|e| e.at_ms)
        .max()
        .expect("green targets healthy");
    let slack = r.interval_ms as i64;
    assert!(
        r.errors
            .by_kind
            .keys()
            .all(|k| k == "http_502_lb" || k == "http_503_lb"),
        "{:?}",
        r.errors.by_kind
    );
    assert_eq!(r.incidents.len(), 1, "{}", r.summary());
    let incident = &r.incidents[0];
    eprintln!(
        "cutover before green is healthy: weights moved at {shift} ms, green healthy at {healthy} ms; {}",
        incident.describe()
    );
    assert!(
        (incident.start_ms as i64) >= shift - slack - crate::util::send_slack_ms(&r)
            && (incident.start_ms as i64) <= shift + slack,
        "first error at {} ms, weights moved at {shift} ms (send delay max {} µs)",
        incident.start_ms,
        r.send_delay_us.max
    );
    assert!(
        (incident.end_ms as i64) <= healthy + slack,
        "last error at {} ms, every green target healthy at {healthy} ms",
        incident.end_ms
    );
    assert!(incident.recovered);
    // A 503 names no task; a 502 names the green task the load balancer forwarded to.
    let unknown = incident.failed_on.get("(unknown)").copied().unwrap_or(0);
    assert_eq!(
        unknown,
        incident.kinds.get("http_503_lb").copied().unwrap_or(0),
        "{:?} {:?}",
        incident.kinds,
        incident.failed_on
    );
    for task in incident.failed_on.keys().filter(|t| *t != "(unknown)") {
        assert!(
            green.contains(task),
            "{task} is not a green task: {green:?}"
        );
    }
    // Around it, green's v2 answered (and v1 only for requests that reached blue just before
    // the change).
    assert!(
        incident.versions.contains_key("v2"),
        "{:?}",
        incident.versions
    );
    assert!(
        incident.versions.keys().all(|v| v == "v1" || v == "v2"),
        "{:?}",
        incident.versions
    );
}

/// What scaling green up to v2 led to.
struct ScaleUp {
    /// Green targets healthy at the end.
    healthy: usize,
    /// Green tasks ECS stopped for failing their load balancer health checks.
    stopped_by_elb: usize,
}

/// docs/failure-modes.md#fm-9, the grace period: `demo-svc-green` scaled to three tasks of v2,
/// which listens two seconds (120 simulated seconds) after it starts, with green's health check
/// grace period `grace`; waits until the three are healthy or ECS has stopped three for failing
/// their health checks.
async fn scale_green(grace: u32) -> ScaleUp {
    let fleet = Fleet::start(with_green_grace(grace)).await;
    let within = {
        let stack = fleet.la.plane().stack();
        let clock = fleet.la.plane().clock();
        let hc = &stack.target_groups[1].health_check;
        (clock.secs(GRACE + hc.interval * (hc.healthy_threshold + hc.unhealthy_threshold + 2))
            + Duration::from_secs(10))
            * 2
    };
    scale_green_to_slow_v2(&fleet).await;
    let green = fleet
        .la
        .plane()
        .target_group("demo-tg-green")
        .expect("green");
    let count = || {
        let healthy = green
            .describe()
            .iter()
            .filter(|t| t.health == localaws::TargetHealth::Healthy)
            .count();
        let stopped_by_elb = fleet.la.control().read(|st| {
            st.tasks
                .values()
                .filter(|t| {
                    t.service.as_deref() == Some("demo-svc-green")
                        && t.stopped_reason
                            .as_deref()
                            .is_some_and(|r| r.contains("failed ELB health checks"))
                })
                .count()
        });
        ScaleUp {
            healthy,
            stopped_by_elb,
        }
    };
    let deadline = tokio::time::Instant::now() + within;
    let seen = loop {
        let now = count();
        if now.healthy >= GREEN as usize || now.stopped_by_elb >= GREEN as usize {
            break now;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "neither healthy nor stopped within {within:?}: {} healthy, {} stopped",
            now.healthy,
            now.stopped_by_elb
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    fleet.stop().await;
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grace_period_covering_the_start_lets_slow_starters_turn_healthy() {
    let up = scale_green(GRACE).await;
    assert_eq!(up.healthy, GREEN as usize);
    assert_eq!(up.stopped_by_elb, 0);
}

/// The negative control: the stack's grace period of 30 simulated seconds, shorter than v2's
/// 120-second start. ECS stops each green task for failing its load balancer health checks before
/// it ever listens, and starts another that meets the same end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grace_period_shorter_than_the_start_kills_slow_starters() {
    let up = scale_green(30).await;
    assert_eq!(up.healthy, 0);
    assert!(up.stopped_by_elb >= GREEN as usize);
}

/// What draining the only task's instance did.
struct Drain {
    report: Report,
    /// The task that ran on the drained instance.
    old: String,
    /// Its replacement.
    new: String,
}

/// docs/failure-modes.md#fm-3: `demo-svc` runs one task of a slow starter (it listens two
/// seconds, 120 simulated seconds, after it starts; grace period and container health check start period
/// cover that) at `minimumHealthyPercent` `min_healthy` and `maximumPercent` 200. Under the
/// probe, its instance is set to `DRAINING` through the ECS API; the scenario waits until the
/// replacement is healthy and the old task stopped, then for a second more of traffic.
async fn drain_the_only_task(min_healthy: u32) -> Drain {
    let mut stack = rolling_stack();
    let svc = &mut stack.services[0];
    svc.desired_count = 1;
    svc.minimum_healthy_percent = min_healthy;
    svc.maximum_percent = 200;
    svc.health_check_grace_period = GRACE;
    let container = &mut stack.task_definitions[0].container_definitions[0];
    container.environment.push(KeyValue {
        name: "STARTUP_DELAY_SECONDS".into(),
        value: STARTUP_DELAY_SECONDS.into(),
    });
    if let Some(hc) = container.health_check.as_mut() {
        hc.start_period = Some(GRACE);
    }
    let fleet = Fleet::start(stack).await;
    let within = {
        let stack = fleet.la.plane().stack();
        let clock = fleet.la.plane().clock();
        let tg = &stack.target_groups[0];
        let hc = &tg.health_check;
        (clock.secs(GRACE + hc.interval * (hc.healthy_threshold + 2) + tg.deregistration_delay)
            + Duration::from_secs(15))
            * 2
    };
    let live = |fleet: &Fleet| {
        fleet.la.control().read(|st| {
            st.tasks
                .values()
                .filter(|t| t.is_live())
                .map(|t| (t.id.clone(), t.instance.clone()))
                .collect::<Vec<_>>()
        })
    };
    let tasks = live(&fleet);
    let [(old, instance)] = <[_; 1]>::try_from(tasks.clone()).unwrap_or_else(|_| {
        panic!("not one task: {tasks:?}");
    });
    let ecs = &fleet.aws.ecs;
    let arns = ecs
        .list_container_instances()
        .cluster("demo-cluster")
        .send()
        .await
        .expect("list container instances");
    let arn = ecs
        .describe_container_instances()
        .cluster("demo-cluster")
        .set_container_instances(Some(arns.container_instance_arns().to_vec()))
        .send()
        .await
        .expect("describe container instances")
        .container_instances()
        .iter()
        .find(|c| c.ec2_instance_id() == Some(instance.as_str()))
        .and_then(|c| c.container_instance_arn())
        .map(str::to_owned)
        .expect("the task's container instance");

    let probe = probe(&fleet.url("production"), RATE, 300.0);
    bridge_events(fleet.la.plane(), &probe);
    let marker = probe.marker();
    wait_probe(&probe, within, |l| l.requests >= RATE as u64).await;
    ecs.update_container_instances_state()
        .cluster("demo-cluster")
        .container_instances(&arn)
        .status(aws_sdk_ecs::types::ContainerInstanceStatus::Draining)
        .send()
        .await
        .expect("drain the instance");
    marker.mark("instance set to DRAINING");
    let blue = fleet.la.plane().target_group("demo-tg-blue").expect("blue");
    let moved = fleet
        .la
        .control()
        .wait_until(within, |st| {
            st.tasks.get(&old).is_some_and(|t| !t.is_live())
                && st.tasks.values().any(|t| {
                    t.is_live()
                        && t.id != old
                        && t.endpoint.is_some_and(|e| {
                            blue.health_of(e) == Some(localaws::TargetHealth::Healthy)
                        })
                })
        })
        .await;
    assert!(
        moved,
        "the task did not move within {within:?}: {:?}",
        live(&fleet)
    );
    let after = probe.live().requests;
    wait_probe(&probe, within, |l| l.requests >= after + RATE as u64).await;
    probe.stop();
    let report = probe.finish().await.expect("report");
    let new = live(&fleet)
        .into_iter()
        .map(|(id, _)| id)
        .find(|id| *id != old)
        .expect("the replacement");
    fleet.stop().await;
    assert_complete(&report, RATE);
    Drain { report, old, new }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_the_only_task_at_min_healthy_100_drops_nothing() {
    let Drain {
        report: r,
        old,
        new,
    } = drain_the_only_task(100).await;
    assert_eq!(r.verdict, Verdict::Pass, "{}", r.summary());
    assert_eq!(r.errors.total, 0);
    // Both served: the old task until the new one was healthy.
    assert!(
        r.served_by.get(&old).copied().unwrap_or(0) > 0,
        "{:?}",
        r.served_by
    );
    assert!(
        r.served_by.get(&new).copied().unwrap_or(0) > 0,
        "{:?}",
        r.served_by
    );
}

/// The negative control: `minimumHealthyPercent` 0, the one change. ECS stops the only task at
/// once and nothing answers until the replacement listens: detected (verdict fails), located
/// (from the drain to the replacement turning healthy) and attributed (the load balancer's own
/// errors: 503 naming no task while no target is registered, 502 naming the replacement while
/// it does not listen yet).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_the_only_task_at_min_healthy_0_drops_requests_until_the_replacement_listens() {
    let Drain {
        report: r,
        old,
        new,
    } = drain_the_only_task(0).await;
    assert_eq!(r.verdict, Verdict::Fail, "{}", r.summary());
    let drained = event_ms(&r, "instance set to DRAINING");
    let healthy = r
        .events
        .iter()
        .filter(|e| e.label.contains("healthy in demo-tg-blue") && !e.label.contains("unhealthy"))
        .map(|e| e.at_ms)
        .max()
        .expect("the replacement healthy");
    let slack = r.interval_ms as i64;
    assert_eq!(r.incidents.len(), 1, "{}", r.summary());
    let incident = &r.incidents[0];
    eprintln!(
        "min healthy 0: drained at {drained} ms, replacement healthy at {healthy} ms; {}",
        incident.describe()
    );
    assert!(
        (incident.start_ms as i64) >= drained - slack - crate::util::send_slack_ms(&r),
        "first error at {} ms, drained at {drained} ms (send delay max {} µs)",
        incident.start_ms,
        r.send_delay_us.max
    );
    assert!(
        (incident.end_ms as i64) <= healthy + slack,
        "last error at {} ms, replacement healthy at {healthy} ms",
        incident.end_ms
    );
    assert!(
        r.errors
            .by_kind
            .keys()
            .all(|k| k == "http_502_lb" || k == "http_503_lb"),
        "{:?}",
        r.errors.by_kind
    );
    let unknown = incident.failed_on.get("(unknown)").copied().unwrap_or(0);
    assert_eq!(
        unknown,
        incident.kinds.get("http_503_lb").copied().unwrap_or(0),
        "{:?} {:?}",
        incident.kinds,
        incident.failed_on
    );
    for task in incident.failed_on.keys().filter(|t| *t != "(unknown)") {
        assert_eq!(
            task, &new,
            "a 502 named {task}, not the replacement (old {old})"
        );
    }
}

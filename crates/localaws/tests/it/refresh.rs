//! Instance refresh end to end: real tasks on a 3-instance Auto Scaling group, the refresh
//! started and followed through the official SDK, the production listener measured by the
//! probe at 1,000 req/s. Zero errors with managed draining; the identical refresh without it
//! (one flag flipped) drops requests between each instance's termination and the health checks
//! noticing its dead tasks. The same for health check type `ELB` against `EC2` with new
//! instances whose ECS agent never registers (docs/failure-modes.md#fm-13).

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_autoscaling::types::{
    InstanceRefreshStatus, RefreshPreferences, ScaleInProtectedInstances,
};
use loadprobe::{Report, Verdict};
use localaws::Stack;
use stack::{AmiConfig, HealthCheckConfig, TargetGroupConfig};

use crate::util::{
    Fleet, assert_complete, bridge_events, event_ms, fleet_stack, probe, wait_probe,
};

const RATE: f64 = 1000.0;

struct Run {
    report: Report,
    status: InstanceRefreshStatus,
    versions: Vec<u32>,
    /// Task id → its endpoint, for every task the run saw (stopped ones included).
    endpoints: BTreeMap<String, String>,
}

fn terminal(s: &InstanceRefreshStatus) -> bool {
    matches!(
        s,
        InstanceRefreshStatus::Successful
            | InstanceRefreshStatus::Failed
            | InstanceRefreshStatus::Cancelled
            | InstanceRefreshStatus::RollbackSuccessful
            | InstanceRefreshStatus::RollbackFailed
    )
}

/// One scenario, one flag: a refresh of the whole group to launch template version 2 (booting
/// `image`) with `prefs`, under load, with managed draining as given; the probe stops once the
/// fleet has settled.
async fn under_load(managed_draining: bool, image: &str, prefs: RefreshPreferences) -> Run {
    let fleet = Fleet::start(fleet_stack(managed_draining)).await;
    let v2 = fleet.new_version(image);
    let probe = probe(&fleet.url("production"), RATE, 300.0);
    bridge_events(fleet.la.plane(), &probe);
    let id = fleet.start_refresh(v2, prefs).await;
    let refresh = fleet.wait_refresh(&id, terminal).await;
    // The last replacement's old tasks are gone once the fleet is steady again.
    assert_fleet_healthy(&fleet).await;
    probe.stop();
    let report = probe.finish().await.expect("probe report");
    let versions = fleet.versions_in_service();
    let endpoints = fleet.la.control().read(|st| {
        st.tasks
            .values()
            .filter_map(|t| Some((t.id.clone(), t.endpoint?.to_string())))
            .collect()
    });
    fleet.stop().await;
    Run {
        report,
        status: refresh.status.expect("status"),
        versions,
        endpoints,
    }
}

/// The refresh to a good AMI, min healthy 90 %, max healthy `max_healthy`.
async fn refresh_under_load(managed_draining: bool, max_healthy: i32) -> Run {
    under_load(
        managed_draining,
        "ami-0ecs000000000002",
        RefreshPreferences::builder()
            .min_healthy_percentage(90)
            .max_healthy_percentage(max_healthy)
            .build(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_refresh_with_managed_draining_drops_nothing() {
    let run = refresh_under_load(true, 100).await;
    let r = &run.report;
    assert_eq!(run.status, InstanceRefreshStatus::Successful);
    assert_eq!(run.versions, vec![2, 2, 2], "every instance replaced");
    assert_complete(r, RATE);
    assert_eq!(
        r.errors.total, 0,
        "errors {:?}, outages {:?}",
        r.errors.by_kind, r.outages
    );
    assert_eq!(r.verdict, Verdict::Pass, "{:?}", r.reasons);
    // Tasks really moved: more tasks served than the three there were at any time.
    assert!(r.served_by.len() >= 6, "{:?}", r.served_by);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_control_refresh_without_managed_draining_drops_requests() {
    let run = refresh_under_load(false, 100).await;
    let r = &run.report;
    // AWS calls this refresh a success too: only the probe sees what it cost.
    assert_eq!(run.status, InstanceRefreshStatus::Successful);
    assert_eq!(run.versions, vec![2, 2, 2]);
    assert_complete(r, RATE);
    // Detected.
    assert_eq!(r.verdict, Verdict::Fail);
    assert!(r.errors.total > 0);
    // Attributed: every failure is the load balancer's 502 for a target that went away.
    assert_eq!(
        r.errors.by_kind.keys().collect::<Vec<_>>(),
        vec!["http_502_lb"],
        "{:?}",
        r.errors.by_kind
    );
    // Located: each outage starts after an instance was terminated with tasks still running,
    // and ends once the load balancer stopped routing to those tasks (health checks marked
    // them unhealthy; a task already draining took no new requests), with one probe interval of
    // slack on each side.
    let interval = r.interval_ms as i64;
    let kills: Vec<(i64, Vec<String>)> = r
        .events
        .iter()
        .filter(|e| e.label.contains("Terminated with"))
        .map(|e| {
            let tasks = e
                .label
                .rsplit(": ")
                .next()
                .unwrap_or("")
                .split(", ")
                .map(str::to_owned)
                .collect();
            (e.at_ms, tasks)
        })
        .collect();
    assert!(!kills.is_empty(), "{:#?}", r.events);
    let endpoint_of = &run.endpoints;
    let slack = crate::util::send_slack_ms(r);
    for o in &r.outages {
        let start = o.start_ms as i64;
        let (killed_at, tasks) = kills
            .iter()
            .rev()
            .find(|(at, _)| *at <= start + interval + slack)
            .unwrap_or_else(|| panic!("outage at {start} ms before any kill: {:#?}", r.events));
        let unhealthy_at = tasks
            .iter()
            .filter_map(|t| endpoint_of.get(t))
            .filter_map(|ep| {
                r.events
                    .iter()
                    .find(|e| {
                        e.at_ms >= *killed_at
                            && ["unhealthy", "draining", "deregistered"]
                                .iter()
                                .any(|s| e.label.starts_with(&format!("{ep} {s}")))
                    })
                    .map(|e| e.at_ms)
            })
            .max()
            .unwrap_or_else(|| {
                panic!(
                    "tasks {tasks:?} never left the load balancer: {:#?}",
                    r.events
                )
            });
        assert!(
            (o.end_ms as i64) <= unhealthy_at + 2 * interval,
            "outage {start}-{} ms outlasts the health checks ({unhealthy_at} ms) of the tasks \
             killed at {killed_at} ms ({tasks:?}); outage {o:?}; incidents {:#?}; events around \
             it: {:#?}",
            o.end_ms,
            r.incidents,
            r.events
                .iter()
                .filter(|e| (e.at_ms - start).abs() <= 1000)
                .collect::<Vec<_>>()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_healthy_200_launches_first_and_never_has_fewer_healthy_targets() {
    let fleet = Fleet::start(fleet_stack(true)).await;
    let v2 = fleet.new_version("ami-0ecs000000000002");
    let tg = fleet.la.plane().target_group("demo-tg-blue").expect("tg");
    let healthy = || {
        tg.describe()
            .iter()
            .filter(|t| t.health == localaws::TargetHealth::Healthy)
            .count()
    };
    let before = healthy();
    let id = fleet
        .start_refresh(
            v2,
            RefreshPreferences::builder()
                .min_healthy_percentage(100)
                .max_healthy_percentage(200)
                .build(),
        )
        .await;
    // Watch the healthy count on every data-plane event until the refresh ends.
    let mut events = fleet.la.plane().events().subscribe();
    let deadline = tokio::time::Instant::now() + fleet.refresh_deadline();
    let mut lowest = before;
    let mut most_instances = 0;
    loop {
        lowest = lowest.min(healthy());
        most_instances = most_instances.max(fleet.la.control().read(|st| {
            st.instances
                .values()
                .filter(|i| i.lifecycle.is_live())
                .count()
        }));
        let done = fleet.la.control().read(|st| {
            st.refreshes
                .iter()
                .find(|r| r.id == id)
                .is_some_and(|r| !r.status.is_active())
        });
        if done {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "refresh did not finish"
        );
        let _ = tokio::time::timeout(Duration::from_millis(20), events.recv()).await;
    }
    let r = fleet.wait_refresh(&id, terminal).await;
    assert_eq!(r.status, Some(InstanceRefreshStatus::Successful));
    assert_eq!(before, 3);
    assert!(
        lowest >= before,
        "healthy targets fell to {lowest} of {before}"
    );
    assert_eq!(
        most_instances, 6,
        "all three replacements launched before any termination"
    );
    fleet.stop().await;
}

/// Waits until the refresh has replaced at least `percent` of the group.
async fn wait_percentage(fleet: &Fleet, id: &str, percent: i32) {
    let deadline = tokio::time::Instant::now() + fleet.refresh_deadline();
    loop {
        let r = fleet.refresh(id).await;
        if r.percentage_complete.unwrap_or(0) >= percent {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "refresh stuck at {:?}% ({:?})",
            r.percentage_complete,
            r.status_reason
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every service task healthy and the group back to its desired capacity.
async fn assert_fleet_healthy(fleet: &Fleet) {
    assert!(
        fleet.la.wait_ready(fleet.la.ready_timeout()).await,
        "the fleet is not healthy"
    );
    let tg = fleet.la.plane().target_group("demo-tg-blue").expect("tg");
    let healthy = tg
        .describe()
        .iter()
        .filter(|t| t.health == localaws::TargetHealth::Healthy)
        .count();
    assert_eq!(healthy, 3, "{:?}", tg.describe());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_pause_the_refresh_for_the_checkpoint_delay() {
    let fleet = Fleet::start(fleet_stack(true)).await;
    let v2 = fleet.new_version("ami-0ecs000000000002");
    let delay = 120; // simulated seconds
    let mut events = fleet.la.plane().events().subscribe();
    let id = fleet
        .start_refresh(
            v2,
            RefreshPreferences::builder()
                .min_healthy_percentage(90)
                .checkpoint_percentages(30)
                .checkpoint_percentages(100)
                .checkpoint_delay(delay)
                .build(),
        )
        .await;
    let r = fleet.wait_refresh(&id, terminal).await;
    assert_eq!(r.status, Some(InstanceRefreshStatus::Successful));
    // The pause: from the checkpoint to the next termination, at least the delay (real time, on
    // the monotonic clock the control plane's timers use, not the events' wall-clock stamps).
    let mut checkpoint = None;
    let mut after = None;
    while let Ok(e) = events.try_recv() {
        let label = e.kind.to_string();
        if checkpoint.is_none() && label.contains("checkpoint 30% reached") {
            checkpoint = Some(e.instant);
        } else if checkpoint.is_some()
            && after.is_none()
            && label.contains("autoscaling: terminating")
        {
            after = Some(e.instant);
        }
    }
    let (Some(cp), Some(next)) = (checkpoint, after) else {
        panic!("no checkpoint pause seen (checkpoint {checkpoint:?}, next {after:?})");
    };
    let paused = next.duration_since(cp);
    let expected = fleet.la.plane().clock().secs(delay as u32);
    assert!(
        paused >= expected,
        "paused {paused:?}, checkpoint delay is {expected:?}"
    );
    fleet.stop().await;
}

/// A fleet whose refresh to version 2 has replaced its first instance.
async fn refresh_one_third_done(prefs: RefreshPreferences) -> (Fleet, String) {
    let fleet = Fleet::start(fleet_stack(true)).await;
    let v2 = fleet.new_version("ami-0ecs000000000002");
    let id = fleet.start_refresh(v2, prefs).await;
    wait_percentage(&fleet, &id, 33).await;
    (fleet, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_leaves_a_mixed_but_healthy_fleet() {
    let (fleet, id) = refresh_one_third_done(
        RefreshPreferences::builder()
            .min_healthy_percentage(100)
            .max_healthy_percentage(100)
            .build(),
    )
    .await;
    let cancelled = fleet
        .aws
        .asg
        .cancel_instance_refresh()
        .auto_scaling_group_name("demo-asg")
        .send()
        .await
        .expect("cancel");
    assert_eq!(cancelled.instance_refresh_id.as_deref(), Some(id.as_str()));
    let r = fleet.wait_refresh(&id, terminal).await;
    assert_eq!(r.status, Some(InstanceRefreshStatus::Cancelled));
    assert_fleet_healthy(&fleet).await;
    let mut versions = fleet.versions_in_service();
    versions.sort_unstable();
    assert!(
        versions.contains(&1) && versions.contains(&2) && versions.len() == 3,
        "{versions:?}"
    );
    // Nothing left to cancel or roll back.
    let e = fleet
        .aws
        .asg
        .cancel_instance_refresh()
        .auto_scaling_group_name("demo-asg")
        .send()
        .await
        .expect_err("no active refresh");
    assert!(
        e.into_service_error()
            .is_active_instance_refresh_not_found_fault()
    );
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_restores_the_previous_version() {
    let (fleet, id) = refresh_one_third_done(
        RefreshPreferences::builder()
            .min_healthy_percentage(90)
            .build(),
    )
    .await;
    let rolled = fleet
        .aws
        .asg
        .rollback_instance_refresh()
        .auto_scaling_group_name("demo-asg")
        .send()
        .await
        .expect("rollback");
    assert_eq!(rolled.instance_refresh_id.as_deref(), Some(id.as_str()));
    let r = fleet.wait_refresh(&id, terminal).await;
    assert_eq!(
        r.status,
        Some(InstanceRefreshStatus::RollbackSuccessful),
        "{:?}",
        r.status_reason
    );
    assert_fleet_healthy(&fleet).await;
    assert_eq!(fleet.versions_in_service(), vec![1, 1, 1]);
    let group = fleet
        .aws
        .asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names("demo-asg")
        .send()
        .await
        .expect("describe");
    let lt = group.auto_scaling_groups()[0]
        .launch_template()
        .expect("lt");
    assert_eq!(
        lt.version(),
        Some("1"),
        "the group keeps its previous configuration"
    );
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_is_refused_for_latest() {
    let fleet = Fleet::start(fleet_stack(true)).await;
    fleet.new_version("ami-0ecs000000000002");
    use aws_sdk_autoscaling::types::{DesiredConfiguration, LaunchTemplateSpecification};
    let id = fleet
        .aws
        .asg
        .start_instance_refresh()
        .auto_scaling_group_name("demo-asg")
        .desired_configuration(
            DesiredConfiguration::builder()
                .launch_template(
                    LaunchTemplateSpecification::builder()
                        .launch_template_name("demo-lt")
                        .version("$Latest")
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .expect("start")
        .instance_refresh_id
        .expect("id");
    let e = fleet
        .aws
        .asg
        .rollback_instance_refresh()
        .auto_scaling_group_name("demo-asg")
        .send()
        .await
        .expect_err("rollback of $Latest");
    assert!(
        e.into_service_error()
            .is_irreversible_instance_refresh_fault(),
        "AWS refuses to roll back $Latest"
    );
    let r = fleet.wait_refresh(&id, terminal).await;
    assert_eq!(r.status, Some(InstanceRefreshStatus::Successful));
    fleet.stop().await;
}

/// A launch template version whose instances fail their status checks, refreshed under load.
async fn bad_version_under_load(auto_rollback: bool) -> (Report, InstanceRefreshStatus, Vec<u32>) {
    let run = under_load(
        true,
        "ami-0bad000000000000",
        RefreshPreferences::builder()
            .min_healthy_percentage(90)
            .auto_rollback(auto_rollback)
            .build(),
    )
    .await;
    (run.report, run.status, run.versions)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unhealthy_new_instances_fail_the_refresh_and_auto_rollback_drops_nothing() {
    let (report, status, versions) = bad_version_under_load(true).await;
    assert_eq!(status, InstanceRefreshStatus::RollbackSuccessful);
    assert_eq!(versions, vec![1, 1, 1], "back on the old version");
    assert_complete(&report, RATE);
    assert_eq!(report.errors.total, 0, "{:?}", report.errors.by_kind);
    assert_eq!(report.verdict, Verdict::Pass);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unhealthy_new_instances_fail_the_refresh_without_auto_rollback() {
    let (report, status, versions) = bad_version_under_load(false).await;
    assert_eq!(status, InstanceRefreshStatus::Failed);
    // The group replaced the unhealthy instance from its own (old) configuration.
    assert_eq!(versions, vec![1, 1, 1]);
    assert_eq!(report.errors.total, 0, "{:?}", report.errors.by_kind);
}

/// Waits until every one of the group's `n` live instances is protected from scale-in.
async fn wait_protected(fleet: &Fleet, n: usize) {
    let deadline = tokio::time::Instant::now() + fleet.refresh_deadline();
    loop {
        let protected = fleet.la.control().read(|st| {
            st.instances
                .values()
                .filter(|i| i.lifecycle.is_live() && i.protected)
                .count()
        });
        if protected == n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{protected} of {n} instances protected from scale-in"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A fleet under ECS managed termination protection, at `time_scale`, refreshing to launch
/// template version 2: every instance runs a task, so every instance is protected from scale-in
/// (docs/failure-modes.md#fm-2). Returns the fleet, the version and the protected instances.
async fn protected_fleet(time_scale: f64) -> (Fleet, u32, Vec<String>) {
    let mut stack = fleet_stack(true);
    stack.time_scale = time_scale;
    stack
        .auto_scaling_group
        .as_mut()
        .expect("asg")
        .capacity_provider
        .managed_termination_protection = true;
    let fleet = Fleet::start(stack).await;
    let v2 = fleet.new_version("ami-0ecs000000000002");
    // Three tasks spread over three instances: every instance is protected.
    wait_protected(&fleet, 3).await;
    let protected: Vec<String> = fleet.la.control().read(|st| {
        st.instances
            .values()
            .filter(|i| i.lifecycle.is_live())
            .map(|i| i.id.clone())
            .collect()
    });
    (fleet, v2, protected)
}

fn protected_prefs(what: &str) -> RefreshPreferences {
    RefreshPreferences::builder()
        .min_healthy_percentage(90)
        .scale_in_protected_instances(ScaleInProtectedInstances::from(what))
        .build()
}

/// The clock of the scenarios that wait out one of AWS's hours: 15 s of real time at 240x rather
/// than a minute at the fleet tests' 60x.
const PROTECTED_WAIT_SCALE: f64 = 240.0;

/// The hour `Wait` waits, in real time, and the longest it may take to notice it.
fn protected_wait(fleet: &Fleet) -> (Duration, Duration) {
    use localaws::control::refresh::PROTECTED_WAIT;
    let hour = fleet.la.plane().clock().secs(PROTECTED_WAIT);
    (hour, hour + fleet.refresh_deadline())
}

/// docs/failure-modes.md#fm-2: with managed termination protection every instance that runs a
/// task is protected from scale-in, so what the refresh does with protected instances is what it
/// does with the whole fleet. `Wait` (the API's default) stalls with nothing replaced and fails
/// the refresh after one simulated hour.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_in_protected_instances_stall_the_refresh_under_wait_until_it_fails_an_hour_later() {
    let (fleet, v2, protected) = protected_fleet(PROTECTED_WAIT_SCALE).await;
    let (hour, within) = protected_wait(&fleet);

    // Wait, as the API defaults to (the preference left out): the refresh stalls on the
    // protected instances and replaces none of them, then fails once they are still protected
    // an hour later.
    let started = tokio::time::Instant::now();
    let id = fleet
        .start_refresh(
            v2,
            RefreshPreferences::builder()
                .min_healthy_percentage(90)
                .build(),
        )
        .await;
    let deadline = tokio::time::Instant::now() + fleet.refresh_deadline();
    let stalled = loop {
        let r = fleet.refresh(&id).await;
        if r.status_reason
            .as_deref()
            .is_some_and(|s| s.contains("protected from scale in"))
        {
            break r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the refresh never waited on protected instances: {:?} ({:?})",
            r.status,
            r.status_reason
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        stalled
            .preferences()
            .and_then(|p| p.scale_in_protected_instances()),
        Some(&ScaleInProtectedInstances::Wait),
        "the API's default"
    );
    assert_eq!(stalled.status, Some(InstanceRefreshStatus::InProgress));
    assert_eq!(stalled.percentage_complete, Some(0));
    assert_eq!(fleet.versions_in_service(), vec![1, 1, 1]);
    let r = fleet.wait_refresh_within(&id, terminal, within).await;
    assert_eq!(
        r.status,
        Some(InstanceRefreshStatus::Failed),
        "{:?}",
        r.status_reason
    );
    assert!(
        started.elapsed() >= hour,
        "failed after {:?}, before the simulated hour ({hour:?})",
        started.elapsed()
    );
    let reason = r.status_reason.unwrap_or_default();
    assert!(reason.contains("protected from scale in"), "{reason}");
    for i in &protected {
        assert!(reason.contains(i.as_str()), "{i} not named in {reason:?}");
    }
    assert_eq!(r.percentage_complete, Some(0));
    assert_eq!(fleet.versions_in_service(), vec![1, 1, 1]);
    fleet.stop().await;
}

/// fm-2 with `Wait` and `AutoRollback`: the same failure an hour later rolls the refresh back, as
/// any failure does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_in_protected_instances_under_wait_with_auto_rollback_roll_the_refresh_back_an_hour_later()
 {
    let (fleet, v2, _) = protected_fleet(PROTECTED_WAIT_SCALE).await;
    let (hour, within) = protected_wait(&fleet);
    let started = tokio::time::Instant::now();
    let id = fleet
        .start_refresh(
            v2,
            RefreshPreferences::builder()
                .min_healthy_percentage(90)
                .scale_in_protected_instances(ScaleInProtectedInstances::Wait)
                .auto_rollback(true)
                .build(),
        )
        .await;
    let r = fleet.wait_refresh_within(&id, terminal, within).await;
    assert_eq!(
        r.status,
        Some(InstanceRefreshStatus::RollbackSuccessful),
        "{:?}",
        r.status_reason
    );
    assert!(
        started.elapsed() >= hour,
        "rolled back after {:?}",
        started.elapsed()
    );
    let why = r
        .rollback_details()
        .and_then(|d| d.rollback_reason())
        .unwrap_or_default();
    assert!(why.contains("protected from scale in"), "{why:?}");
    assert_eq!(fleet.versions_in_service(), vec![1, 1, 1]);
    fleet.stop().await;
}

/// fm-2 with `Ignore` and `Refresh`: `Ignore` is a success in AWS's words with not one instance
/// replaced; `Refresh` replaces every instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_in_protected_instances_are_skipped_under_ignore_and_replaced_under_refresh() {
    let (fleet, v2, _) = protected_fleet(fleet_stack(true).time_scale).await;

    // Ignore: AWS calls it a success, and not one instance was replaced.
    let id = fleet.start_refresh(v2, protected_prefs("Ignore")).await;
    let r = fleet.wait_refresh(&id, terminal).await;
    assert_eq!(r.status, Some(InstanceRefreshStatus::Successful));
    assert_eq!(
        fleet.versions_in_service(),
        vec![1, 1, 1],
        "the protected instances were skipped"
    );

    // Refresh: every instance replaced.
    let id = fleet.start_refresh(v2, protected_prefs("Refresh")).await;
    let r = fleet.wait_refresh(&id, terminal).await;
    assert_eq!(
        r.status,
        Some(InstanceRefreshStatus::Successful),
        "{:?}",
        r.status_reason
    );
    assert_fleet_healthy(&fleet).await;
    assert_eq!(fleet.versions_in_service(), vec![2, 2, 2]);
    fleet.stop().await;
}

/// The target group attached to the Auto Scaling group in the fm-13 scenario: it registers the
/// instances themselves on the ECS agent's introspection port.
const AGENT_TG: &str = "demo-tg-agent";
const AGENT_PORT: u16 = 51678;
/// An AMI whose instances pass their EC2 status checks but whose ECS agent never registers.
const AGENTLESS_AMI: &str = "ami-0a9e17000000000";

/// The default fleet stack with `demo-tg-agent` attached to the group (health check
/// `/v1/metadata` on port 51678 of each instance), the group's health check type as given, and
/// an AMI whose agent never registers. The grace period (90 s) covers boot (30 s), agent start
/// (10 s) and two passing checks (10 s) with room for a loaded machine; the instance warmup
/// (90 s after `InService`) ends after it, so the refresh knows a new instance's ELB health
/// before it counts it.
fn agentless_stack(health_check_type: &str) -> Stack {
    let mut stack = fleet_stack(true);
    // The EC2 twin waits out managed draining's hour-long heartbeat timeout; both twins run
    // their clock as fast as the protected-instance waits do (the real-time floors keep process
    // starts, checks and drains real).
    stack.time_scale = PROTECTED_WAIT_SCALE;
    stack.target_groups.push(TargetGroupConfig {
        name: AGENT_TG.into(),
        deregistration_delay: 5,
        health_check: HealthCheckConfig {
            path: "/v1/metadata".into(),
            interval: 5,
            timeout: 2,
            healthy_threshold: 2,
            unhealthy_threshold: 2,
            matcher: "200".into(),
        },
        port: Some(AGENT_PORT),
    });
    stack.amis.insert(
        AGENTLESS_AMI.into(),
        AmiConfig {
            ecs_agent_registers: false,
            ..AmiConfig::default()
        },
    );
    let asg = stack.auto_scaling_group.as_mut().expect("asg");
    asg.health_check_type = health_check_type.into();
    asg.target_groups = vec![AGENT_TG.into()];
    asg.health_check_grace_period = 90;
    asg.default_instance_warmup = Some(90);
    stack
}

/// What an fm-13 run saw.
struct AgentlessRun {
    report: Report,
    refresh: aws_sdk_autoscaling::types::InstanceRefresh,
    /// The instances launched from the agent-less version.
    agentless: Vec<String>,
    /// `HealthStatus` by instance id (DescribeAutoScalingInstances), when the probe stopped.
    health: BTreeMap<String, String>,
    /// The attached group's targets by instance id: (state, reason) (DescribeTargetHealth),
    /// when the probe stopped.
    agent_targets: BTreeMap<String, (String, String)>,
    /// `TargetGroupARNs` of DescribeAutoScalingGroups.
    attached: Vec<String>,
    /// (description, cause) of every scaling activity, oldest first.
    activities: Vec<(String, String)>,
    versions: Vec<u32>,
    /// Whether the fleet was healthy again when the probe stopped.
    ready: bool,
    /// Container instances `ACTIVE` when the probe stopped.
    active_container_instances: usize,
}

/// docs/failure-modes.md#fm-13, one scenario, one input: an instance refresh (min healthy 90 %,
/// `AutoRollback`) to a launch template version whose instances pass their EC2 status checks but
/// never register with ECS, under load, with managed draining, the group's health check type as
/// given. The probe stops once the fleet has settled: healthy again, or with no task left and
/// nothing registered behind the production listener.
async fn agentless_refresh_under_load(health_check_type: &str) -> AgentlessRun {
    use localaws::control::autoscaling::MANAGED_DRAINING_HOOK;

    let fleet = Fleet::start(agentless_stack(health_check_type)).await;
    let clock = fleet.la.plane().clock();
    let stack = fleet.la.plane().stack().clone();
    let v2 = fleet.new_version(AGENTLESS_AMI);
    // A termination may wait out managed draining's heartbeat timeout (tasks with nowhere to go).
    let heartbeat = fleet.la.control().read(|st| {
        st.asg
            .as_ref()
            .and_then(|a| a.hooks.iter().find(|h| h.name == MANAGED_DRAINING_HOOK))
            .map_or(0, |h| h.heartbeat_timeout)
    });
    let within = fleet.refresh_deadline() + clock.secs(heartbeat);
    let probe = probe(
        &fleet.url("production"),
        RATE,
        (within + fleet.la.ready_timeout()).as_secs_f64() * 2.0,
    );
    bridge_events(fleet.la.plane(), &probe);
    let id = fleet
        .start_refresh(
            v2,
            RefreshPreferences::builder()
                .min_healthy_percentage(90)
                .auto_rollback(true)
                .build(),
        )
        .await;
    let refresh = fleet.wait_refresh_within(&id, terminal, within).await;
    // Settled: healthy again, or nothing left to serve (ECS gave up the tasks of a terminated
    // instance after the agent disconnect timeout, and their targets' deregistration delay
    // passed).
    let production: Vec<_> = stack
        .load_balancers
        .iter()
        .flat_map(|lb| &lb.listeners)
        .filter(|l| l.name == "production")
        .flat_map(|l| &l.forward)
        .map(|f| fleet.la.plane().target_group(&f.target_group).expect("tg"))
        .collect();
    let blue = &stack.target_groups[0];
    let settle_within = fleet.la.ready_timeout()
        + clock.secs(
            stack.cluster.agent_disconnect_timeout
                + blue.deregistration_delay
                + blue.health_check.interval * blue.health_check.unhealthy_threshold,
        );
    let settled = fleet
        .la
        .control()
        .wait_until(settle_within, |st| {
            let ready = st.services.values().all(|s| s.steady)
                && st
                    .instances
                    .values()
                    .filter(|i| i.lifecycle == localaws::control::Lifecycle::InService)
                    .count()
                    == 3;
            let nothing_serves = !st.tasks.values().any(|t| t.is_live())
                && production.iter().all(|tg| tg.describe().is_empty());
            ready || nothing_serves
        })
        .await;
    assert!(settled, "the fleet never settled within {settle_within:?}");
    // Let the probe see the settled fleet for one health-check interval and a few of its own.
    let seen = probe.live().elapsed
        + clock.secs(blue.health_check.interval)
        + 3 * Duration::from_millis(100);
    wait_probe(&probe, settle_within, |l| l.elapsed >= seen).await;
    let ready = fleet.la.is_ready();
    // What the APIs say now.
    let health = fleet
        .aws
        .asg
        .describe_auto_scaling_instances()
        .send()
        .await
        .expect("describe auto scaling instances")
        .auto_scaling_instances
        .unwrap_or_default()
        .into_iter()
        .filter(|i| i.lifecycle_state.as_deref() == Some("InService"))
        .map(|i| {
            (
                i.instance_id.unwrap_or_default(),
                i.health_status.unwrap_or_default(),
            )
        })
        .collect();
    let agent_tg_arn = fleet
        .aws
        .elb
        .describe_target_groups()
        .names(AGENT_TG)
        .send()
        .await
        .expect("describe target groups")
        .target_groups
        .unwrap_or_default()
        .into_iter()
        .next()
        .and_then(|t| t.target_group_arn)
        .expect("the attached target group");
    let agent_targets = fleet
        .aws
        .elb
        .describe_target_health()
        .target_group_arn(&agent_tg_arn)
        .send()
        .await
        .expect("describe target health")
        .target_health_descriptions
        .unwrap_or_default()
        .into_iter()
        .map(|d| {
            let target = d.target.expect("target");
            assert_eq!(target.port, Some(i32::from(AGENT_PORT)));
            let h = d.target_health.expect("target health");
            (
                target.id.unwrap_or_default(),
                (
                    h.state.map(|s| s.as_str().to_owned()).unwrap_or_default(),
                    h.reason.map(|r| r.as_str().to_owned()).unwrap_or_default(),
                ),
            )
        })
        .collect();
    let attached = fleet
        .aws
        .asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names("demo-asg")
        .send()
        .await
        .expect("describe auto scaling groups")
        .auto_scaling_groups
        .unwrap_or_default()
        .into_iter()
        .next()
        .and_then(|g| g.target_group_arns)
        .unwrap_or_default();
    let activities = fleet
        .aws
        .asg
        .describe_scaling_activities()
        .auto_scaling_group_name("demo-asg")
        .send()
        .await
        .expect("describe scaling activities")
        .activities
        .unwrap_or_default()
        .into_iter()
        .rev()
        .map(|a| {
            (
                a.description.unwrap_or_default(),
                a.cause.unwrap_or_default(),
            )
        })
        .collect();
    let (agentless, active_container_instances) = fleet.la.control().read(|st| {
        let agentless = st
            .instances
            .values()
            .filter(|i| i.launch_template == Some(("demo-lt".into(), v2)))
            .map(|i| i.id.clone())
            .collect();
        let active = st
            .container_instances
            .values()
            .filter(|c| c.status.as_str() == "ACTIVE")
            .count();
        (agentless, active)
    });
    let versions = fleet.versions_in_service();
    probe.stop();
    let report = probe.finish().await.expect("probe report");
    fleet.stop().await;
    AgentlessRun {
        report,
        refresh,
        agentless,
        health,
        agent_targets,
        attached,
        activities,
        versions,
        ready,
        active_container_instances,
    }
}

/// docs/failure-modes.md#fm-13, the fix: with health check type `ELB`, the new instance whose
/// agent never registers fails its load balancer checks in the attached group, Auto Scaling
/// marks it `Unhealthy` once the grace period has passed and replaces it, and the refresh counts
/// it as a failed new instance and rolls back. Nothing is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elb_health_check_fails_an_agentless_instance_and_the_refresh_rolls_back_dropping_nothing()
{
    let run = agentless_refresh_under_load("ELB").await;
    let r = &run.report;
    let status = run.refresh.status.clone().expect("status");
    assert_eq!(
        status,
        InstanceRefreshStatus::RollbackSuccessful,
        "{:?}",
        run.refresh.status_reason
    );
    let why = run
        .refresh
        .rollback_details()
        .and_then(|d| d.rollback_reason())
        .unwrap_or_default();
    assert!(why.contains("failed its health checks"), "{why:?}");
    // The first agent-less instance failed, and was the only one launched.
    assert_eq!(run.agentless.len(), 1, "{:?}", run.agentless);
    let bad = &run.agentless[0];
    assert!(why.contains(bad.as_str()), "{why:?} does not name {bad}");
    // Its target turned unhealthy in the attached group, then Auto Scaling marked it
    // Unhealthy (no other instance), in that order, and replaced it with the ELB cause.
    let launched = r
        .events
        .iter()
        .find(|e| e.label.contains(&format!("launching {bad} ")))
        .expect("its launch");
    let ip = launched.label.rsplit(" on ").next().unwrap_or_default();
    let unhealthy_target = event_ms(r, &format!("{ip}:{AGENT_PORT} unhealthy in {AGENT_TG}"));
    let marked = event_ms(r, &format!("{bad} Unhealthy"));
    assert!(unhealthy_target <= marked, "{unhealthy_target} > {marked}");
    let marked_unhealthy: Vec<&str> = r
        .events
        .iter()
        .filter(|e| e.label.contains("Unhealthy: its target"))
        .map(|e| e.label.as_str())
        .collect();
    assert_eq!(marked_unhealthy.len(), 1, "{marked_unhealthy:#?}");
    assert!(
        run.activities.iter().any(|(d, c)| {
            d == &format!("Terminating EC2 instance: {bad}")
                && c == localaws::control::autoscaling::ELB_HEALTH_CAUSE
        }),
        "{:#?}",
        run.activities
    );
    // Back on the old version, every instance healthy in the attached group.
    assert!(run.ready, "the fleet is not healthy again");
    assert_eq!(run.versions, vec![1, 1, 1]);
    assert_eq!(run.active_container_instances, 3);
    assert_eq!(run.health.len(), 3, "{:?}", run.health);
    assert!(
        run.health.values().all(|h| h == "Healthy"),
        "{:?}",
        run.health
    );
    assert_eq!(run.agent_targets.len(), 3, "{:?}", run.agent_targets);
    assert!(
        run.agent_targets.values().all(|(s, _)| s == "healthy"),
        "{:?}",
        run.agent_targets
    );
    assert!(run.health.keys().all(|i| run.agent_targets.contains_key(i)));
    assert_eq!(run.attached.len(), 1, "{:?}", run.attached);
    assert!(run.attached[0].contains(&format!(":targetgroup/{AGENT_TG}/")));
    // The probe: nothing dropped.
    assert_complete(r, RATE);
    assert_eq!(
        r.errors.total, 0,
        "errors {:?}, incidents {:#?}",
        r.errors.by_kind, r.incidents
    );
    assert_eq!(r.verdict, Verdict::Pass, "{:?}", r.reasons);
}

/// docs/failure-modes.md#fm-13, the negative control: the identical refresh with health check
/// type `EC2`. The agent-less instances pass their EC2 status checks, so Auto Scaling keeps them
/// `Healthy` while their targets fail every check, and the refresh counts each as healthy
/// capacity and goes on. Managed draining moves the tasks off each old instance onto the old
/// instances left; the last one's tasks have nowhere to go (no new instance has a container
/// instance), so its draining hook waits out its heartbeat timeout and the instance is
/// terminated with every task on it. From then on every request fails, and the refresh reports
/// `Successful`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_control_ec2_health_check_counts_agentless_instances_healthy_and_the_refresh_kills_every_task()
 {
    let run = agentless_refresh_under_load("EC2").await;
    let r = &run.report;
    // What Auto Scaling says: a successful refresh, three healthy instances of the new version.
    assert_eq!(
        run.refresh.status,
        Some(InstanceRefreshStatus::Successful),
        "{:?}",
        run.refresh.status_reason
    );
    assert_eq!(run.versions, vec![2, 2, 2]);
    assert_eq!(run.agentless.len(), 3, "{:?}", run.agentless);
    assert_eq!(run.health.len(), 3, "{:?}", run.health);
    assert!(
        run.health.values().all(|h| h == "Healthy"),
        "{:?}",
        run.health
    );
    assert!(
        !r.events.iter().any(|e| e.label.contains(" Unhealthy")),
        "no instance was marked Unhealthy"
    );
    // What the load balancer says: every one of them fails its checks in the attached group.
    assert_eq!(run.agent_targets.len(), 3, "{:?}", run.agent_targets);
    for i in &run.agentless {
        assert_eq!(
            run.agent_targets
                .get(i)
                .map(|(s, r)| (s.as_str(), r.as_str())),
            Some(("unhealthy", "Target.ResponseCodeMismatch")),
            "{i}: {:?}",
            run.agent_targets
        );
    }
    // And ECS: no container instance to run a task on.
    assert_eq!(run.active_container_instances, 0);
    assert!(!run.ready);
    // Detected.
    assert_complete(r, RATE);
    assert_eq!(r.verdict, Verdict::Fail);
    assert!(r.errors.total > 0);
    // Located: the last old instance was terminated once with its tasks still running, after its
    // draining hook's heartbeat timeout; the first failure is within one probe interval of it,
    // and from the next interval on every request fails.
    let interval = r.interval_ms as i64;
    let kills: Vec<&loadprobe::Event> = r
        .events
        .iter()
        .filter(|e| e.label.contains("Terminated with"))
        .collect();
    assert_eq!(kills.len(), 1, "{kills:#?}");
    let killed_at = kills[0].at_ms;
    let killed: Vec<&str> = kills[0]
        .label
        .rsplit(": ")
        .next()
        .unwrap_or_default()
        .split(", ")
        .collect();
    assert_eq!(killed.len(), 3, "every task was on it: {killed:?}");
    let first = r.incidents.first().expect("an incident");
    assert!(
        (killed_at - interval - crate::util::send_slack_ms(r)..=killed_at + interval)
            .contains(&(first.start_ms as i64)),
        "first failure at {} ms, the instance was terminated at {killed_at} ms (send delay max \
         {} µs)",
        first.start_ms,
        r.send_delay_us.max
    );
    let after: Vec<_> = r
        .intervals
        .iter()
        .filter(|i| i.start_ms as i64 > killed_at + interval)
        .collect();
    assert!(!after.is_empty());
    for i in &after {
        assert_eq!(i.ok, 0, "a request succeeded after every task died: {i:?}");
    }
    assert!(!r.incidents.last().expect("an incident").recovered);
    // Attributed: the load balancer's 502s for the killed tasks, then its 503s once ECS had
    // stopped them and nothing was registered.
    let kinds: Vec<&String> = r.errors.by_kind.keys().collect();
    assert_eq!(
        kinds,
        ["http_502_lb", "http_503_lb"],
        "{:?}",
        r.errors.by_kind
    );
    let named: Vec<&String> = first
        .failed_on
        .keys()
        .filter(|t| t.as_str() != "(unknown)")
        .collect();
    assert!(!named.is_empty(), "{:?}", first.failed_on);
    for t in &named {
        assert!(
            killed.contains(&t.as_str()),
            "{t} was not on the terminated instance"
        );
    }
    // The refresh reported success once the last old instance was gone, tasks and all: its
    // replacement had launched and warmed up while the instance waited on its draining hook,
    // so nothing was left in flight (the same control-loop step).
    let id = run
        .refresh
        .instance_refresh_id
        .as_deref()
        .unwrap_or_default();
    let succeeded = event_ms(r, &format!("instance refresh {id} Successful"));
    assert!(
        succeeded >= killed_at,
        "Successful at {succeeded} ms, before the tasks died at {killed_at} ms"
    );
    eprintln!(
        "fm-13 EC2: terminated with {} tasks at {killed_at} ms, first failure at {} ms, \
         Successful at {succeeded} ms; {} of {} requests failed {:?}",
        killed.len(),
        first.start_ms,
        r.errors.total,
        r.requests,
        r.errors.by_kind
    );
}

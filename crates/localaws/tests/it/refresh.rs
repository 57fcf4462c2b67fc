//! Instance refresh end to end: real tasks on a 3-instance Auto Scaling group, the refresh
//! started and followed through the official SDK, the production listener measured by the
//! probe at 1,000 req/s. Zero errors with managed draining; the identical refresh without it
//! (one flag flipped) drops requests between each instance's termination and the health checks
//! noticing its dead tasks.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_autoscaling::types::{
    InstanceRefreshStatus, RefreshPreferences, ScaleInProtectedInstances,
};
use loadprobe::{Report, Verdict};

use crate::util::{Fleet, bridge_events, fleet_stack, probe};

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

/// Every request sent has exactly one result, and as many were sent as the schedule asked.
fn assert_complete(report: &Report) {
    assert_eq!(report.requests, report.ok + report.errors.total);
    let scheduled = RATE * report.elapsed_ms as f64 / 1000.0;
    assert!(
        (report.requests as f64 - scheduled).abs() <= RATE * 0.05 + 1.0,
        "{} requests for {scheduled:.0} scheduled",
        report.requests
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_refresh_with_managed_draining_drops_nothing() {
    let run = refresh_under_load(true, 100).await;
    let r = &run.report;
    assert_eq!(run.status, InstanceRefreshStatus::Successful);
    assert_eq!(run.versions, vec![2, 2, 2], "every instance replaced");
    assert_complete(r);
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
    assert_complete(r);
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
    for o in &r.outages {
        let start = o.start_ms as i64;
        let (killed_at, tasks) = kills
            .iter()
            .rev()
            .find(|(at, _)| *at <= start + interval)
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
            "outage {start}-{} ms outlasts the health checks ({unhealthy_at} ms)",
            o.end_ms
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
    // The pause: from the checkpoint to the next termination, at least the delay (real time).
    let mut checkpoint = None;
    let mut after = None;
    while let Ok(e) = events.try_recv() {
        let label = e.kind.to_string();
        if checkpoint.is_none() && label.contains("checkpoint 30% reached") {
            checkpoint = Some(e.at);
        } else if checkpoint.is_some()
            && after.is_none()
            && label.contains("autoscaling: terminating")
        {
            after = Some(e.at);
        }
    }
    let (Some(cp), Some(next)) = (checkpoint, after) else {
        panic!("no checkpoint pause seen (checkpoint {checkpoint:?}, next {after:?})");
    };
    let paused = next.duration_since(cp).unwrap_or_default();
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
    assert_complete(&report);
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

/// docs/failure-modes.md#fm-2: with managed termination protection every instance that runs a
/// task is protected from scale-in, so what the refresh does with protected instances is what it
/// does with the whole fleet. `Wait` (the API's default) stalls with nothing replaced and fails
/// the refresh after one simulated hour, or rolls it back with `AutoRollback`; `Ignore` ends
/// `Successful` with nothing replaced; `Refresh` replaces every instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_in_protected_instances_stall_or_skip_the_refresh_unless_refreshed() {
    use localaws::control::refresh::PROTECTED_WAIT;

    let mut stack = fleet_stack(true);
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
    let prefs = |what: &str| {
        RefreshPreferences::builder()
            .min_healthy_percentage(90)
            .scale_in_protected_instances(ScaleInProtectedInstances::from(what))
            .build()
    };
    // The hour `Wait` waits, in real time, and the longest it may take to notice it.
    let hour = fleet.la.plane().clock().secs(PROTECTED_WAIT);
    let within = hour + fleet.refresh_deadline();

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

    // Wait with AutoRollback: the same failure rolls the refresh back, as any failure does.
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

    // Ignore: AWS calls it a success, and not one instance was replaced.
    let id = fleet.start_refresh(v2, prefs("Ignore")).await;
    let r = fleet.wait_refresh(&id, terminal).await;
    assert_eq!(r.status, Some(InstanceRefreshStatus::Successful));
    assert_eq!(
        fleet.versions_in_service(),
        vec![1, 1, 1],
        "the protected instances were skipped"
    );

    // Refresh: every instance replaced.
    let id = fleet.start_refresh(v2, prefs("Refresh")).await;
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

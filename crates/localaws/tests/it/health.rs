//! Health checks decide who gets traffic: thresholds, fail-open, and new targets waiting their
//! turn.

use std::time::{Duration, Instant};

use localaws::TargetHealth;

use crate::util::{Stand, TestTarget, bridge_events, event_ms, probe, test_stack, wait_probe};

#[tokio::test]
async fn target_failing_health_checks_becomes_unhealthy_and_stops_receiving_traffic() {
    let stand = Stand::start(test_stack()).await;
    stand.healthy_tasks(2, "blue", &[]).await;
    let flaky = TestTarget::start([127, 0, 2, 1], "flaky", false).await;
    let tg = stand.plane.target_group("blue").unwrap();
    tg.register("flaky", flaky.addr).unwrap();
    stand
        .expect_state("blue", flaky.addr, TargetHealth::Healthy)
        .await;

    let probe = probe(&stand.url("production", "/"), 300.0, 3.0);
    bridge_events(&stand.plane, &probe);
    // 0.8 s of answered traffic before the target starts failing.
    wait_probe(&probe, Duration::from_secs(30), |l| l.requests >= 240).await;
    probe.mark("flaky starts failing");
    flaky.set_failing(true);
    let failing_since = Instant::now();
    stand
        .expect_state("blue", flaky.addr, TargetHealth::Unhealthy)
        .await;
    // Two consecutive failures at a 0.5 s (real) interval: at least one interval, at most three.
    let took = failing_since.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took <= Duration::from_millis(1600),
        "{took:?}"
    );
    let info = tg
        .describe()
        .into_iter()
        .find(|t| t.addr == flaky.addr)
        .unwrap();
    assert_eq!(info.reason, Some("Target.ResponseCodeMismatch"));
    let report = probe.finish().await.unwrap();

    // It never answered an error itself, so the switch is invisible to clients...
    assert_eq!(report.errors.total, 0, "{}", report.summary());
    // ...but it served before and nothing once out of rotation.
    let out = event_ms(&report, &format!("{} unhealthy", flaky.addr));
    let served = |keep: &dyn Fn(i64) -> bool| -> u64 {
        report
            .intervals
            .iter()
            .filter(|i| keep(i.start_ms as i64))
            .map(|i| i.served_by.get("flaky").copied().unwrap_or(0))
            .sum()
    };
    assert!(
        served(&|s| s < out - 100) > 0,
        "flaky served nothing while healthy"
    );
    assert_eq!(
        served(&|s| s > out + 100),
        0,
        "an unhealthy target got traffic"
    );
    stand.stop().await;
}

#[tokio::test]
async fn all_targets_unhealthy_fails_open() {
    let stand = Stand::start(test_stack()).await;
    let a = TestTarget::start([127, 0, 2, 2], "sick-a", true).await;
    let b = TestTarget::start([127, 0, 2, 3], "sick-b", true).await;
    let tg = stand.plane.target_group("green").unwrap();
    for t in [&a, &b] {
        tg.register(t.name, t.addr).unwrap();
    }
    for t in [&a, &b] {
        stand
            .expect_state("green", t.addr, TargetHealth::Unhealthy)
            .await;
    }
    assert!(tg.routing().fail_open());

    let report = probe(&stand.url("test", "/"), 200.0, 1.0)
        .finish()
        .await
        .unwrap();
    assert_eq!(
        report.errors.total, 0,
        "fail open: requests still reach the targets"
    );
    assert_eq!(report.served_by.get("sick-a"), Some(&100));
    assert_eq!(report.served_by.get("sick-b"), Some(&100));

    // One recovers: the group stops failing open and routes only to it.
    b.set_failing(false);
    stand
        .expect_state("green", b.addr, TargetHealth::Healthy)
        .await;
    assert!(!tg.routing().fail_open());
    let before = a.served();
    let report = probe(&stand.url("test", "/"), 200.0, 0.5)
        .finish()
        .await
        .unwrap();
    assert_eq!(report.errors.total, 0);
    assert_eq!(
        a.served(),
        before,
        "the unhealthy target got traffic after another recovered"
    );
    assert_eq!(report.served_by.get("sick-b"), Some(&100));
    stand.stop().await;
}

#[tokio::test]
async fn new_target_gets_traffic_only_once_healthy() {
    let stand = Stand::start(test_stack()).await;
    stand.healthy_tasks(1, "blue", &[]).await;
    let probe = probe(&stand.url("production", "/"), 300.0, 2.5);
    bridge_events(&stand.plane, &probe);
    // Half a second of traffic on the one task before the newcomer registers.
    wait_probe(&probe, Duration::from_secs(30), |l| l.requests >= 150).await;
    let newcomer = TestTarget::start([127, 0, 2, 4], "newcomer", false).await;
    stand
        .plane
        .target_group("blue")
        .unwrap()
        .register("newcomer", newcomer.addr)
        .unwrap();
    let report = probe.finish().await.unwrap();

    assert_eq!(report.errors.total, 0, "{}", report.summary());
    let registered = event_ms(&report, &format!("{} registered", newcomer.addr));
    let healthy = event_ms(&report, &format!("{} healthy", newcomer.addr));
    assert!(
        healthy > registered,
        "healthy only after the threshold of checks"
    );
    let served = |keep: &dyn Fn(i64) -> bool| -> u64 {
        report
            .intervals
            .iter()
            .filter(|i| keep(i.start_ms as i64))
            .map(|i| i.served_by.get("newcomer").copied().unwrap_or(0))
            .sum()
    };
    // A request belongs to the interval of its intended start, and reaches the wire when the
    // probe's scheduler and a free connection let it (`send_slack_ms`): on a starved machine one
    // intended well before the newcomer was healthy may be sent after, and served by it.
    let interval = i64::try_from(report.interval_ms).unwrap_or(i64::MAX);
    let slack = crate::util::send_slack_ms(&report);
    assert_eq!(
        served(&|s| s + interval + slack <= healthy),
        0,
        "traffic before the target was healthy (healthy at {healthy} ms, send slack {slack} ms)\n{}",
        report.summary()
    );
    assert!(
        served(&|s| s > healthy + 100) > 0,
        "no traffic once healthy"
    );
    stand.stop().await;
}

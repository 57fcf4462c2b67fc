//! End-to-end tests of the probe against real servers on loopback that the tests start, break
//! and mend themselves. Every "pass" has a "fail" beside it.

#![allow(clippy::unwrap_used)]

mod util;

use std::collections::BTreeMap;
use std::time::Duration;

use loadprobe::{ConnectionMode, Probe, ProbeConfig, Rate, Report, Verdict};
use tokio::time::Instant;
use util::{IdleCloser, RoundRobin, TestServer, wait_live};

const INTERVAL_MS: u64 = 100;

fn config(url: &str, rate: f64, duration_ms: u64) -> ProbeConfig {
    let mut cfg = ProbeConfig::new(url.parse().unwrap());
    cfg.rate = Rate::PerSecond(rate);
    cfg.duration = Duration::from_millis(duration_ms);
    cfg.interval = Duration::from_millis(INTERVAL_MS);
    cfg
}

fn sum_intervals(r: &Report, f: impl Fn(&loadprobe::Interval) -> u64) -> u64 {
    r.intervals.iter().map(f).sum()
}

/// The invariants every report must keep, whatever happened.
fn assert_consistent(r: &Report) {
    assert_eq!(r.ok + r.errors.total, r.requests, "ok + errors = requests");
    assert_eq!(r.errors.by_kind.values().sum::<u64>(), r.errors.total);
    assert_eq!(sum_intervals(r, |i| i.requests), r.requests);
    assert_eq!(sum_intervals(r, |i| i.errors), r.errors.total);
    for (i, iv) in r.intervals.iter().enumerate() {
        assert_eq!(iv.start_ms, i as u64 * r.interval_ms);
        assert_eq!(iv.ok + iv.errors, iv.requests);
        assert_eq!(iv.errors_by_kind.values().sum::<u64>(), iv.errors);
    }
    let outage_errors: u64 = r.outages.iter().map(|o| o.errors).sum();
    assert_eq!(
        outage_errors, r.errors.total,
        "every failure is in an outage"
    );
    assert_eq!(r.passed(), r.reasons.is_empty());
}

#[tokio::test]
async fn clean_run_passes_with_the_exact_request_count() {
    let server = TestServer::start("v1", "task-1").await;
    let mut cfg = config(&server.url(), 200.0, 1000);
    cfg.slo.max_p99 = Some(Duration::from_millis(250));
    let r = loadprobe::run(cfg).await.unwrap();

    assert_consistent(&r);
    assert_eq!(r.verdict, Verdict::Pass, "{}", r.summary());
    assert_eq!(r.requests, 200, "rate × duration, exactly");
    assert_eq!(r.ok, 200);
    assert_eq!(r.errors.total, 0);
    assert_eq!(server.requests(), 200, "the server saw every request once");
    assert!(r.outages.is_empty());
    assert_eq!(r.intervals.len(), 10);
    for iv in &r.intervals {
        assert_eq!(iv.requests, 20, "open loop: 20 per 100 ms, {iv:?}");
    }
    assert_eq!(r.versions, BTreeMap::from([("v1".to_owned(), 200)]));
    assert_eq!(r.served_by, BTreeMap::from([("task-1".to_owned(), 200)]));
    assert!(server.connections() <= 16, "keep-alive reuses connections");
    assert!(!r.stopped_early);
    assert!(r.latency_us.p50 > 0 && r.latency_us.p50 < 50_000);
}

#[tokio::test]
async fn outage_is_located_in_time_and_fails_the_verdict() {
    let server = TestServer::start("v1", "task-1").await;
    let probe = Probe::start(config(&server.url(), 500.0, 2500)).unwrap();
    let mut live = probe.watch();
    wait_live(&mut live, Duration::from_secs(5), "a healthy second", |s| {
        s.requests >= 500
    })
    .await;

    let outage = Duration::from_millis(300);
    probe.mark("target down");
    let down = Instant::now();
    server.go_down();
    let seen = wait_live(&mut live, Duration::from_secs(2), "live outage", |s| {
        s.outage.is_some()
    })
    .await;
    let noticed = down.elapsed();
    tokio::time::sleep_until(down + outage).await; // the outage itself, not a settling wait
    probe.mark("target up");
    server.come_up();
    let r = probe.finish().await.unwrap();
    eprintln!("{}", r.summary());

    assert_consistent(&r);
    assert_eq!(r.verdict, Verdict::Fail);
    assert_eq!(r.outages.len(), 1, "exactly one outage: {:#?}", r.outages);
    let o = &r.outages[0];
    let (down_ms, up_ms) = (r.events[0].at_ms as u64, r.events[1].at_ms as u64);
    assert!(
        o.start_ms.abs_diff(down_ms) <= INTERVAL_MS,
        "outage starts at {} ms, target went down at {down_ms} ms",
        o.start_ms
    );
    assert!(
        o.duration_ms.abs_diff(up_ms - down_ms) <= INTERVAL_MS,
        "outage lasted {} ms, target was down {} ms",
        o.duration_ms,
        up_ms - down_ms
    );
    assert!(o.recovered);
    assert!(
        o.errors >= 100,
        "≈150 requests fall into 300 ms at 500/s: {o:?}"
    );
    assert!(
        r.errors.by_kind.contains_key("connect_refused"),
        "{:?}",
        r.errors.by_kind
    );
    assert!(r.reasons[0].contains("failed requests"));
    // Live state: the outage was visible within about one interval.
    let live_outage = seen.outage.unwrap();
    assert!(live_outage.start_ms.abs_diff(down_ms) <= INTERVAL_MS);
    assert!(
        noticed < Duration::from_millis(2 * INTERVAL_MS),
        "live outage seen {noticed:?} after the target went down"
    );
    assert!(r.longest_gap_ms >= 250, "gap {} ms", r.longest_gap_ms);
}

#[tokio::test]
async fn a_stall_shows_in_p99_not_as_fewer_requests() {
    let server = TestServer::start("v1", "task-1").await;
    let mut cfg = config(&server.url(), 1000.0, 3000);
    cfg.slo.max_p99 = Some(Duration::from_millis(250));
    let probe = Probe::start(cfg).unwrap();
    let mut live = probe.watch();
    wait_live(&mut live, Duration::from_secs(5), "a healthy second", |s| {
        s.requests >= 1000
    })
    .await;
    server.stall_for(Duration::from_secs(1));
    let r = probe.finish().await.unwrap();
    eprintln!("{}", r.summary());

    assert_consistent(&r);
    assert_eq!(
        r.requests, 3000,
        "the stall did not make the probe send less"
    );
    assert_eq!(r.errors.total, 0, "{:?}", r.errors.by_kind);
    let p = r.latency_us;
    assert!(
        p.p99 >= 500_000,
        "p99 {} µs must show the 1 s stall (a closed-loop tool reports a few ms)",
        p.p99
    );
    assert!(p.max >= 900_000, "max {} µs", p.max);
    assert!(p.p50 < 50_000, "p50 {} µs is the service time", p.p50);
    assert!(r.longest_gap_ms >= 900, "gap {} ms", r.longest_gap_ms);
    assert!(
        r.pool_exhausted > 0,
        "every connection was stuck in the stall"
    );
    assert_eq!(r.verdict, Verdict::Fail);
    assert!(r.reasons[0].starts_with("p99 latency"), "{:?}", r.reasons);
    let worst = r.intervals.iter().map(|i| i.p99_us).max().unwrap();
    assert!(
        worst >= 900_000,
        "the stall shows in an interval: {worst} µs"
    );
}

#[tokio::test]
async fn responses_are_attributed_to_version_and_task_per_interval() {
    let blue = TestServer::start("1.0", "task-blue").await;
    let green = TestServer::start("2.0", "task-green").await;
    let lb = RoundRobin::start(vec![blue.addr, green.addr]).await;
    let mut cfg = config(&lb.url(), 200.0, 1000);
    cfg.mode = ConnectionMode::NewConnection; // one connection, one backend pick per request
    let r = loadprobe::run(cfg).await.unwrap();

    assert_consistent(&r);
    assert_eq!(r.verdict, Verdict::Pass, "{}", r.summary());
    assert_eq!(r.requests, 200);
    assert_eq!(
        r.versions,
        BTreeMap::from([
            ("1.0".to_owned(), blue.requests()),
            ("2.0".to_owned(), green.requests())
        ]),
        "versions match what each backend served"
    );
    assert_eq!(
        r.served_by,
        BTreeMap::from([
            ("task-blue".to_owned(), blue.requests()),
            ("task-green".to_owned(), green.requests())
        ])
    );
    assert!(
        blue.requests().abs_diff(green.requests()) <= 1,
        "round robin"
    );
    for iv in &r.intervals {
        assert_eq!(iv.versions.values().sum::<u64>(), iv.requests, "{iv:?}");
        assert_eq!(
            iv.versions.len(),
            2,
            "both versions in every interval: {iv:?}"
        );
        assert!(
            iv.versions["1.0"].abs_diff(iv.versions["2.0"]) <= 2,
            "{iv:?}"
        );
    }
}

#[tokio::test]
async fn a_version_switch_is_placed_on_the_timeline() {
    let server = TestServer::start("1.0", "task-1").await;
    let probe = Probe::start(config(&server.url(), 200.0, 1500)).unwrap();
    let mut live = probe.watch();
    wait_live(&mut live, Duration::from_secs(5), "half the run", |s| {
        s.requests >= 150
    })
    .await;
    server.set_version("2.0");
    probe.mark("traffic 100% green");
    let r = probe.finish().await.unwrap();

    assert_consistent(&r);
    let switch = r.events[0].at_ms as u64;
    assert_eq!(r.events[0].label, "traffic 100% green");
    let (mut before, mut after) = (0, 0);
    for iv in &r.intervals {
        assert_eq!(iv.versions.values().sum::<u64>(), iv.requests);
        if iv.start_ms + INTERVAL_MS + 50 <= switch {
            assert_eq!(iv.versions.keys().collect::<Vec<_>>(), ["1.0"], "{iv:?}");
            before += 1;
        } else if iv.start_ms >= switch + 10 {
            assert_eq!(iv.versions.keys().collect::<Vec<_>>(), ["2.0"], "{iv:?}");
            after += 1;
        }
    }
    assert!(
        before >= 5 && after >= 5,
        "{before} intervals before, {after} after"
    );
    assert_eq!(r.versions.values().sum::<u64>(), 300);
}

#[tokio::test]
async fn idle_keepalive_close_fails_keepalive_but_not_new_connections() {
    let server = IdleCloser::start(Duration::from_millis(20)).await;
    // One connection, a request every 50 ms: every reuse finds the connection idle too long.
    let mut cfg = config(&server.url(), 20.0, 1000);
    cfg.connections = 1;
    let keep = loadprobe::run(cfg.clone()).await.unwrap();
    eprintln!("{}", keep.summary());
    assert_consistent(&keep);
    assert_eq!(keep.verdict, Verdict::Fail);
    assert_eq!(keep.requests, 20);
    assert_eq!(
        keep.errors.by_kind,
        BTreeMap::from([(
            "connection_reset".to_owned(),
            server.resets.load(std::sync::atomic::Ordering::SeqCst)
        )]),
        "every abrupt close is one connection_reset, nothing else"
    );
    assert_eq!(keep.errors.total, 10, "ok, reset, ok, reset, ...");

    cfg.mode = ConnectionMode::NewConnection;
    let fresh = loadprobe::run(cfg).await.unwrap();
    assert_consistent(&fresh);
    assert_eq!(fresh.verdict, Verdict::Pass, "{}", fresh.summary());
    assert_eq!(fresh.errors.total, 0);
}

#[tokio::test]
async fn load_balancer_errors_are_told_apart_from_target_errors() {
    let alb = TestServer::start("v1", "task-1").await;
    alb.ctl
        .status
        .store(502, std::sync::atomic::Ordering::SeqCst);
    alb.ctl
        .as_lb
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let app = TestServer::start("v1", "task-1").await;
    app.ctl
        .status
        .store(500, std::sync::atomic::Ordering::SeqCst);

    let r = loadprobe::run(config(&alb.url(), 100.0, 200))
        .await
        .unwrap();
    assert_consistent(&r);
    assert_eq!(
        r.errors.by_kind,
        BTreeMap::from([("http_502_lb".to_owned(), 20)])
    );
    let r = loadprobe::run(config(&app.url(), 100.0, 200))
        .await
        .unwrap();
    assert_eq!(
        r.errors.by_kind,
        BTreeMap::from([("http_500_target".to_owned(), 20)])
    );
    assert_eq!(r.outages.len(), 1);
    assert!(!r.outages[0].recovered);
    assert_eq!(r.versions["v1"], 20, "error responses are still attributed");
}

#[tokio::test]
async fn refused_connects_and_timeouts_are_classified() {
    let port = util::bind(0).local_addr().unwrap().port(); // bound, then closed: refuses
    let r = loadprobe::run(config(&format!("http://127.0.0.1:{port}/"), 100.0, 200))
        .await
        .unwrap();
    assert_consistent(&r);
    assert_eq!(
        r.errors.by_kind,
        BTreeMap::from([("connect_refused".to_owned(), 20)])
    );
    assert_eq!(r.verdict, Verdict::Fail);

    let server = TestServer::start("v1", "task-1").await;
    server.stall_for(Duration::from_secs(3));
    let mut cfg = config(&server.url(), 100.0, 200);
    cfg.timeout = Duration::from_millis(100);
    let t0 = Instant::now();
    let r = loadprobe::run(cfg).await.unwrap();
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "bounded by the timeout"
    );
    assert_consistent(&r);
    assert_eq!(
        r.errors.by_kind,
        BTreeMap::from([("request_timeout".to_owned(), 20)])
    );
    assert!(r.latency_us.max >= 100_000 && r.latency_us.max < 1_000_000);
}

#[tokio::test]
async fn stop_ends_early_and_keeps_what_was_measured() {
    let server = TestServer::start("v1", "task-1").await;
    let dir = std::env::temp_dir().join(format!("loadprobe-stop-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("run.hlog");
    let mut cfg = config(&server.url(), 100.0, 60_000);
    cfg.hdr_log = Some(log.clone());
    let probe = Probe::start(cfg).unwrap();
    let mut live = probe.watch();
    wait_live(&mut live, Duration::from_secs(5), "some requests", |s| {
        s.requests >= 30
    })
    .await;
    // The log is streamed: closed intervals are on disk before the run ends.
    let partial = std::fs::read(&log).unwrap();
    assert!(
        hdrhistogram::serialization::interval_log::IntervalLogIterator::new(&partial)
            .filter(|e| matches!(
                e,
                Ok(hdrhistogram::serialization::interval_log::LogEntry::Interval(_))
            ))
            .count()
            >= 1
    );
    let t0 = Instant::now();
    probe.stop();
    let r = probe.finish().await.unwrap();
    assert!(t0.elapsed() < Duration::from_secs(3));
    assert_consistent(&r);
    assert!(r.stopped_early);
    assert!(r.requests >= 30 && r.requests < 200, "{}", r.requests);
    assert_eq!(r.errors.total, 0);

    let text = std::fs::read(&log).unwrap();
    let intervals = hdrhistogram::serialization::interval_log::IntervalLogIterator::new(&text)
        .filter_map(|e| match e.unwrap() {
            hdrhistogram::serialization::interval_log::LogEntry::Interval(i) => Some(i),
            _ => None,
        })
        .collect::<Vec<_>>();
    assert_eq!(
        intervals.len(),
        r.intervals.len(),
        "one log line per interval"
    );
    let mut total = 0;
    for i in &intervals {
        let bytes = base64_decode(i.encoded_histogram());
        let h: hdrhistogram::Histogram<u64> = hdrhistogram::serialization::Deserializer::new()
            .deserialize(&mut bytes.as_slice())
            .unwrap();
        total += h.len();
    }
    assert_eq!(total, r.requests, "the log holds every request");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

//! The drain on SIGTERM, with its negative control beside it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tokio::sync::OnceCell;

use crate::util::{Answer, Conn, Server, base_env, eventually, get, wait_for_in_flight};

/// What a client population saw around a SIGTERM.
struct Drain {
    /// From the signal to `/ready` answering 503 (None: never seen).
    ready_503_after: Option<Duration>,
    /// New-connection requests sent after the signal, within the window.
    fresh: Vec<Result<Answer, String>>,
    /// Keep-alive requests sent after the signal, within the window.
    kept: Vec<Result<Answer, String>>,
    /// The `/delay` request started before the signal.
    slow: Result<Answer, String>,
    exit_code: i32,
    exited_after: Duration,
    logs: String,
}

/// Starts a server, keeps two request streams going (fresh connections and one keep-alive
/// connection), holds a slow request in flight, sends SIGTERM, and records what happened.
async fn drain(drain_delay: &str, deadline: &str, window: Duration, slow_ms: u64) -> Drain {
    let env = [
        base_env(),
        vec![
            ("DRAIN_DELAY_SECONDS", drain_delay.into()),
            ("SHUTDOWN_TIMEOUT_SECONDS", deadline.into()),
        ],
    ]
    .concat();
    let mut server = Server::start(&env).await;
    let a = server.addr;

    let slow = tokio::spawn(async move { get(a, &format!("/delay/{slow_ms}")).await });
    assert!(
        wait_for_in_flight(a, 1).await,
        "the slow request never got in flight"
    );

    let signal_at = Arc::new(OnceCell::<Instant>::new());
    let fresh = tokio::spawn(stream(a, false, Arc::clone(&signal_at), window));
    let kept = tokio::spawn(stream(a, true, Arc::clone(&signal_at), window));

    // Some traffic before the signal, so both streams are warm.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t0 = Instant::now();
    server.signal(Signal::SIGTERM);
    signal_at.set(t0).unwrap();
    let exit = tokio::spawn(async move {
        let code = server.wait_exit(Duration::from_secs(30)).await;
        (code, t0.elapsed(), server.logs())
    });
    let ready_503_after = eventually(Duration::from_secs(1), || async move {
        matches!(get(a, "/ready").await, Ok(r) if r.status == 503)
    })
    .await;

    let fresh = fresh.await.unwrap();
    let kept = kept.await.unwrap();
    let slow = slow.await.unwrap();
    let (exit_code, exited_after, logs) = exit.await.unwrap();
    Drain {
        ready_503_after,
        fresh,
        kept,
        slow,
        exit_code,
        exited_after,
        logs,
    }
}

/// `GET /` every 10 ms, over one keep-alive connection (reopened when it closes) or a fresh
/// connection each time, until `window` after the signal; returns the results of the requests
/// sent after the signal.
async fn stream(
    a: SocketAddr,
    keep_alive: bool,
    signal_at: Arc<OnceCell<Instant>>,
    window: Duration,
) -> Vec<Result<Answer, String>> {
    let mut seen = Vec::new();
    let mut conn: Option<Conn> = None;
    loop {
        if signal_at
            .get()
            .is_some_and(|t| Instant::now() >= *t + window)
        {
            return seen;
        }
        let counted = signal_at.get().is_some();
        let reuse = conn.as_ref().is_some_and(|c| keep_alive && !c.is_closed());
        if !reuse {
            conn = Conn::open(a).await.ok();
        }
        let result = match conn.as_mut() {
            Some(c) => c.get("/").await,
            None => Err("connect failed".to_owned()),
        };
        if result.is_err() {
            conn = None;
        }
        if counted {
            seen.push(result);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn failures(results: &[Result<Answer, String>]) -> Vec<String> {
    results
        .iter()
        .filter_map(|r| match r {
            Ok(a) if a.status == 200 => None,
            Ok(a) => Some(format!("status {}", a.status)),
            Err(e) => Some(e.clone()),
        })
        .collect()
}

#[tokio::test]
async fn sigterm_drains_without_dropping_a_request() {
    let d = drain("1.5", "10", Duration::from_millis(1200), 2000).await;

    let ready = d
        .ready_503_after
        .expect("/ready never answered 503 after SIGTERM");
    assert!(
        ready < Duration::from_millis(300),
        "/ready turned 503 only after {ready:?}"
    );
    assert!(
        d.fresh.len() >= 20 && d.kept.len() >= 20,
        "{} {}",
        d.fresh.len(),
        d.kept.len()
    );
    assert_eq!(
        failures(&d.fresh),
        Vec::<String>::new(),
        "fresh connections failed during the drain"
    );
    assert_eq!(
        failures(&d.kept),
        Vec::<String>::new(),
        "keep-alive requests failed during the drain"
    );
    // During the drain every response tells keep-alive clients to reconnect: from the moment
    // the server handled the signal (a few ms after it was sent), all of them do.
    let close: Vec<bool> = d
        .kept
        .iter()
        .map(|r| matches!(r, Ok(a) if a.header("connection") == "close"))
        .collect();
    let first = close
        .iter()
        .position(|c| *c)
        .expect("no Connection: close during the drain");
    assert!(
        first <= 3,
        "Connection: close only from response {first} on"
    );
    assert!(
        close[first..].iter().all(|c| *c),
        "a drain-time response without Connection: close"
    );
    let slow = d.slow.expect("the in-flight /delay request was cut off");
    assert_eq!(
        (slow.status.as_u16(), slow.body.as_str()),
        (200, "waited 2000ms\n")
    );
    assert_eq!(d.exit_code, 0, "{}", d.logs);
    assert!(
        d.exited_after >= Duration::from_millis(1500),
        "exited before the drain delay: {:?}",
        d.exited_after
    );
    assert!(
        d.exited_after < Duration::from_secs(10),
        "{:?}",
        d.exited_after
    );
    assert!(d.logs.contains("drained"), "{}", d.logs);
}

#[tokio::test]
async fn negative_control_no_drain_delay_and_no_deadline_drop_requests() {
    // The same scenario with the protections turned off must visibly fail.
    let d = drain("0", "0", Duration::from_millis(500), 2000).await;

    assert!(
        !failures(&d.fresh).is_empty(),
        "new connections after SIGTERM should be refused"
    );
    assert!(
        !failures(&d.kept).is_empty(),
        "keep-alive requests after SIGTERM should fail"
    );
    let slow = d
        .slow
        .expect_err("the in-flight /delay request should be cut off");
    assert!(!slow.is_empty());
    assert_eq!(
        d.exit_code, 1,
        "cutting requests off must not exit 0: {}",
        d.logs
    );
    assert!(
        d.exited_after < Duration::from_secs(1),
        "{:?}",
        d.exited_after
    );
    assert!(d.logs.contains("deadline"), "{}", d.logs);
}

#[tokio::test]
async fn second_signal_ends_the_drain_delay() {
    let env = [
        base_env(),
        vec![
            ("DRAIN_DELAY_SECONDS", "30".into()),
            ("SHUTDOWN_TIMEOUT_SECONDS", "40".into()),
        ],
    ]
    .concat();
    let mut server = Server::start(&env).await;
    let a = server.addr;
    server.signal(Signal::SIGTERM);
    assert!(
        eventually(Duration::from_secs(2), || async move {
            matches!(get(a, "/ready").await, Ok(r) if r.status == 503)
        })
        .await
        .is_some()
    );
    let t = Instant::now();
    server.signal(Signal::SIGINT);
    assert_eq!(server.wait_exit(Duration::from_secs(5)).await, 0);
    assert!(t.elapsed() < Duration::from_secs(5));
}

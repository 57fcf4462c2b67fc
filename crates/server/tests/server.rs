//! The `server` binary over real sockets: routes, headers, robustness, configuration, and the
//! drain on SIGTERM — with its negative control beside it.

#![allow(clippy::unwrap_used)]

mod util;

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tokio::io::AsyncWriteExt;
use util::{Answer, Conn, Server, base_env, eventually, get, raw};

#[tokio::test]
async fn routes_headers_and_escaping() {
    let env = [base_env(), vec![("APP_MSG", "<b>hi</b>".into())]].concat();
    let server = Server::start(&env).await;
    let a = server.addr;

    let page = get(a, "/?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E")
        .await
        .unwrap();
    assert_eq!(page.status, 200);
    assert_eq!(page.header("x-app-version"), "v-test");
    assert_eq!(page.header("x-served-by"), "task-test");
    assert!(page.header("content-type").starts_with("text/html"));
    assert!(page.body.contains("&lt;b&gt;hi&lt;/b&gt;"), "{}", page.body);
    assert!(
        page.body
            .contains("/?q=&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("<script>") && !page.body.contains("<b>hi"));

    let missing = get(a, "/%3Cscript%3E").await.unwrap();
    assert_eq!(missing.status, 404);
    assert!(missing.body.contains("/&lt;script&gt;"), "{}", missing.body);
    assert!(!missing.body.contains("<script>"));
    assert_eq!(missing.header("x-served-by"), "task-test");

    for (path, status) in [
        ("/health", 200),
        ("/ready", 200),
        ("/status/503", 503),
        ("/status/418", 418),
    ] {
        let answer = get(a, path).await.unwrap();
        assert_eq!(answer.status, status, "{path}");
        assert_eq!(answer.header("x-app-version"), "v-test", "{path}");
    }

    let version: serde_json::Value =
        serde_json::from_str(&get(a, "/version").await.unwrap().body).unwrap();
    assert_eq!(version["version"], "v-test");
    assert_eq!(version["task"], "task-test");
    assert_eq!(version["draining"], false);

    let mut conn = Conn::open(a).await.unwrap();
    let post = conn.request("POST", "/").await.unwrap();
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), "GET, HEAD");
    let head = conn.request("HEAD", "/").await.unwrap();
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    // The same connection carried three requests: keep-alive works when not draining.
    assert!(
        conn.get("/health")
            .await
            .unwrap()
            .header("connection")
            .is_empty()
    );
}

#[tokio::test]
async fn malformed_requests_get_400_not_a_crash() {
    let server = Server::start(&base_env()).await;
    let a = server.addr;
    for bad in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
        b"GET /<script> HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n",
        b"\x00\x01\x02\x03\r\n\r\n",
    ] {
        let answer = raw(a, bad).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{bad:?} -> {answer:?}");
    }
    let huge = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(40_000)
    );
    let answer = raw(a, huge.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");
    // Still serving.
    assert_eq!(get(a, "/health").await.unwrap().status, 200);
}

#[tokio::test]
async fn bad_configuration_exits_2_naming_the_variable() {
    for (var, value) in [
        ("PORT", "abc"),
        ("PORT", "65536"),
        ("DRAIN_DELAY_SECONDS", "-1"),
        ("SHUTDOWN_TIMEOUT_SECONDS", "ten"),
        ("BIND", "not-an-ip"),
        ("LOG_LEVEL", "loud=[["),
    ] {
        let out = util::command(&[(var, value.to_owned())])
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{var}={value}: {stderr}");
        assert!(stderr.contains(var), "{var}={value}: {stderr}");
    }
    let out = util::command(&[
        ("DRAIN_DELAY_SECONDS", "30".into()),
        ("SHUTDOWN_TIMEOUT_SECONDS", "10".into()),
    ])
    .output()
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("SHUTDOWN_TIMEOUT_SECONDS"));

    // A port already taken is not a configuration error: exit 1, saying where.
    let server = Server::start(&base_env()).await;
    let env = [base_env(), vec![("PORT", server.addr.port().to_string())]].concat();
    let out = util::command(&env).output().await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&server.addr.to_string()), "{stderr}");
}

#[tokio::test]
async fn healthcheck_subcommand() {
    let server = Server::start(&base_env()).await;
    let env = [base_env(), vec![("PORT", server.addr.port().to_string())]].concat();
    let ok = util::command(&env)
        .arg("healthcheck")
        .output()
        .await
        .unwrap();
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    drop(server);
    // Negative: nothing listens there any more.
    let env = [base_env(), vec![("PORT", "1".into())]].concat();
    let down = util::command(&env)
        .arg("healthcheck")
        .output()
        .await
        .unwrap();
    assert_eq!(down.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&down.stderr).contains("/health"));
}

#[tokio::test]
async fn idle_and_slow_header_connections_are_closed() {
    let env = [base_env(), vec![("IDLE_TIMEOUT_SECONDS", "0.5".into())]].concat();
    let server = Server::start(&env).await;
    let mut conn = Conn::open(server.addr).await.unwrap();
    assert_eq!(conn.get("/health").await.unwrap().status, 200);
    let closed = eventually(Duration::from_secs(5), || {
        std::future::ready(conn.is_closed())
    })
    .await;
    let closed = closed.expect("idle keep-alive connection was never closed");
    assert!(
        closed >= Duration::from_millis(400),
        "closed too early: {closed:?}"
    );

    // Slowloris: a request head that never completes is cut off by the same timer.
    let mut slow = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut cut = false;
    while started.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if slow.write_all(b"X-Drip: 1\r\n").await.is_err() {
            cut = true;
            break;
        }
    }
    assert!(cut, "a dripping request head was never cut off");
}

#[tokio::test]
async fn default_idle_timeout_keeps_connections_open() {
    // Positive twin of the test above: with the default (75 s) an idle connection stays open.
    let server = Server::start(&base_env()).await;
    let mut conn = Conn::open(server.addr).await.unwrap();
    assert_eq!(conn.get("/health").await.unwrap().status, 200);
    let closed = eventually(Duration::from_millis(1500), || {
        std::future::ready(conn.is_closed())
    })
    .await;
    assert!(closed.is_none(), "closed after {closed:?}");
    assert_eq!(conn.get("/health").await.unwrap().status, 200);
}

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
    // Wait until the server counts the slow request in flight (plus the /version asking).
    let in_flight = eventually(Duration::from_secs(5), || async move {
        let v = get(a, "/version").await.unwrap();
        let v: serde_json::Value = serde_json::from_str(&v.body).unwrap();
        v["in_flight"].as_u64() == Some(2)
    })
    .await;
    assert!(in_flight.is_some(), "the slow request never got in flight");

    let signal_at = std::sync::Arc::new(tokio::sync::OnceCell::<Instant>::new());
    let stop_at = {
        let signal_at = signal_at.clone();
        move || signal_at.get().map(|t| *t + window)
    };
    let after_signal = {
        let signal_at = signal_at.clone();
        move || signal_at.get().is_some()
    };

    let fresh = tokio::spawn({
        let (stop_at, after_signal) = (stop_at.clone(), after_signal.clone());
        async move {
            let mut seen = Vec::new();
            loop {
                if stop_at().is_some_and(|t| Instant::now() >= t) {
                    return seen;
                }
                let counted = after_signal();
                let result = get(a, "/").await;
                if counted {
                    seen.push(result);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    });
    let kept = tokio::spawn(async move {
        let mut seen = Vec::new();
        let mut conn = Conn::open(a).await.ok();
        loop {
            if stop_at().is_some_and(|t| Instant::now() >= t) {
                return seen;
            }
            let counted = after_signal();
            let result = match conn.as_mut() {
                Some(c) if !c.is_closed() => c.get("/").await,
                _ => match Conn::open(a).await {
                    Ok(mut c) => {
                        let r = c.get("/").await;
                        conn = Some(c);
                        r
                    }
                    Err(e) => Err(e.to_string()),
                },
            };
            if result.is_err() {
                conn = None;
            }
            if counted {
                seen.push(result);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });

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
    // During the drain every response tells keep-alive clients to reconnect.
    let closes = d
        .kept
        .iter()
        .filter(|r| matches!(r, Ok(a) if a.header("connection") == "close"))
        .count();
    assert_eq!(
        closes,
        d.kept.len(),
        "every drain-time response carries Connection: close"
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

//! Routes, headers, escaping, malformed input, configuration errors, timeouts.

use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

use crate::util::{self, Conn, Server, base_env, eventually, get, raw};

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
        // Each duration is bounded (a day): 1e19 s used to pass and panic on SIGTERM.
        ("SHUTDOWN_TIMEOUT_SECONDS", "1e19"),
        ("DRAIN_DELAY_SECONDS", "1e19"),
        ("IDLE_TIMEOUT_SECONDS", "1e19"),
        ("MAX_DELAY_MS", "99999999999999"),
        ("STARTUP_DELAY_SECONDS", "-1"),
        ("STARTUP_DELAY_SECONDS", "1e19"),
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

#[tokio::test]
async fn the_longest_deadline_allowed_drains_without_a_panic() {
    // The upper bound of every duration is usable: SIGTERM computes its deadlines from it.
    let env = [
        base_env(),
        vec![
            ("DRAIN_DELAY_SECONDS", "0".into()),
            ("SHUTDOWN_TIMEOUT_SECONDS", "86400".into()),
            ("IDLE_TIMEOUT_SECONDS", "86400".into()),
        ],
    ]
    .concat();
    let mut server = Server::start(&env).await;
    assert_eq!(get(server.addr, "/health").await.unwrap().status, 200);
    server.signal(nix::sys::signal::Signal::SIGTERM);
    let code = server.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(code, 0, "{}", server.logs());
    assert!(!server.logs().contains("panicked"), "{}", server.logs());
}

#[tokio::test]
async fn slow_clients_neither_slow_normal_requests_nor_outlive_the_header_timeout() {
    // 1,000 idle connections, 20 slowloris clients dripping a request head, 20 oversized heads,
    // all at once: normal requests still get answered promptly, and the header read timeout
    // (IDLE_TIMEOUT_SECONDS) closes every connection that never completes a request head.
    use tokio::io::AsyncReadExt;
    let idle_timeout = Duration::from_secs(1);
    let env = [
        base_env(),
        vec![(
            "IDLE_TIMEOUT_SECONDS",
            idle_timeout.as_secs_f64().to_string(),
        )],
    ]
    .concat();
    let server = Server::start(&env).await;
    let a = server.addr;

    let opened = Instant::now();
    let mut idle = Vec::new();
    for _ in 0..1000 {
        idle.push(tokio::net::TcpStream::connect(a).await.unwrap());
    }
    let idle_closed: Vec<_> = idle
        .into_iter()
        .map(|mut s| {
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                // Closed by the server: end of stream (or a reset).
                let _ = tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf)).await;
                opened.elapsed()
            })
        })
        .collect();
    let drips: Vec<_> = (0..20)
        .map(|_| {
            tokio::spawn(async move {
                let mut s = tokio::net::TcpStream::connect(a).await.unwrap();
                let start = Instant::now();
                s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
                while start.elapsed() < Duration::from_secs(30) {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    if s.write_all(b"X-Drip: 1\r\n").await.is_err() {
                        break;
                    }
                }
                start.elapsed()
            })
        })
        .collect();
    let big = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(40_000)
    );
    let oversized: Vec<_> = (0..20)
        .map(|_| {
            let big = big.clone();
            tokio::spawn(async move { raw(a, big.as_bytes()).await })
        })
        .collect();

    // Normal requests, on fresh connections, while all of that is going on.
    let mut latencies = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        let answer = get(a, "/").await.unwrap();
        latencies.push(t.elapsed());
        assert_eq!(answer.status, 200);
    }
    latencies.sort();
    let (median, max) = (
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1],
    );
    assert!(
        median < Duration::from_millis(50) && max < Duration::from_secs(1),
        "normal requests slowed down: median {median:?}, max {max:?}"
    );

    for o in oversized {
        let answer = o.await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");
    }
    // The header read timeout holds for every slow client: closed after the timeout, well
    // before the 30 s the clients would have gone on for.
    let bound = idle_timeout * 5;
    for d in drips {
        let cut = d.await.unwrap();
        assert!(
            cut >= idle_timeout / 2 && cut < bound,
            "slowloris cut after {cut:?}"
        );
    }
    for c in idle_closed {
        let closed = c.await.unwrap();
        assert!(closed < bound, "idle connection closed after {closed:?}");
    }
    assert_eq!(
        get(a, "/health").await.unwrap().status,
        200,
        "still serving"
    );
}

/// `STARTUP_DELAY_SECONDS`: the process runs and refuses connections until the delay has passed,
/// then listens; a SIGTERM during the delay ends it at once with exit 0.
#[tokio::test]
async fn startup_delay_refuses_connections_until_it_has_passed() {
    use tokio::io::AsyncBufReadExt;
    // A port to name up front (the server cannot pick one before it binds).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let delay = Duration::from_secs(2);
    let env = [
        base_env(),
        vec![
            ("PORT", port.to_string()),
            ("STARTUP_DELAY_SECONDS", delay.as_secs_f64().to_string()),
        ],
    ]
    .concat();
    let spawned = Instant::now();
    let mut child = util::command(&env).spawn().unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut next_message = async || {
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("a log line within 10 s")
            .unwrap()
            .expect("the server exited");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        v["message"].as_str().unwrap_or_default().to_owned()
    };
    assert!(next_message().await.starts_with("starting"));
    // Running, not listening: refused, unless the delay (which started before that log line)
    // is already over.
    let connected = tokio::net::TcpStream::connect(addr).await.is_ok();
    let at = spawned.elapsed();
    assert!(
        !connected || at >= delay,
        "connected {at:?} after start, within the {delay:?} start-up delay"
    );
    assert_eq!(next_message().await, "listening");
    assert!(
        spawned.elapsed() >= delay,
        "listening after {:?}",
        spawned.elapsed()
    );
    assert_eq!(get(addr, "/").await.unwrap().status, 200);
    child.kill().await.unwrap();

    // Stopped during the delay: exit 0 at once, nothing to drain.
    let env = [
        base_env(),
        vec![("STARTUP_DELAY_SECONDS", "3600".to_owned())],
    ]
    .concat();
    let mut child = util::command(&env).spawn().unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .expect("a log line within 10 s")
        .unwrap()
        .expect("the server exited");
    assert!(line.contains("starting"), "{line}");
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id().unwrap()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exit within 10 s of SIGTERM")
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

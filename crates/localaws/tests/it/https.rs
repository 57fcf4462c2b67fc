//! HTTPS listeners: TLS terminated with the certificate localaws makes at start, trusted
//! through the CA PEM it writes. The probe trusting that CA gets every request answered, in
//! keep-alive and new-connection mode; the same probe without it gets every request refused as
//! `tls_cert` (the negative control). Behind TLS the listener is the same: its own errors mark
//! themselves and name no target they did not forward to, an oversized head is 431, targets see
//! `x-forwarded-proto: https`, and a client that connects and never finishes a handshake is
//! dropped after the idle timeout.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use loadprobe::{ConnectionMode, Probe, Report};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::util::{Stand, TestTarget, probe_config, test_stack};

/// The test stack with both listeners HTTPS, on the load balancer address `address` and with
/// the idle timeout `idle` (seconds).
fn https_stack(address: &str, idle: u32) -> localaws::Stack {
    let mut stack = test_stack();
    let lb = &mut stack.load_balancers[0];
    lb.address = address.parse().unwrap();
    lb.idle_timeout = idle;
    for l in &mut lb.listeners {
        l.protocol = "HTTPS".into();
    }
    stack
}

fn ca_file(stand: &Stand) -> PathBuf {
    stand
        .plane
        .tls()
        .expect("an HTTPS listener has a CA")
        .ca_file()
        .to_path_buf()
}

/// Runs a probe of `url` at `rate` for `secs`, `mode`, trusting `ca` (the system's roots when
/// `None`).
async fn run(url: &str, rate: f64, secs: f64, mode: ConnectionMode, ca: Option<PathBuf>) -> Report {
    let mut cfg = probe_config(url, rate, secs);
    cfg.mode = mode;
    cfg.tls.ca_file = ca;
    Probe::start(cfg).unwrap().finish().await.unwrap()
}

/// A TLS connection to `addr` trusting only `ca_pem`, verifying the address as the name.
async fn tls_connect(addr: SocketAddr, ca_pem: &str) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::IpAddress(addr.ip().into()), tcp)
        .await
        .unwrap()
}

/// Reads until the peer closes (or fails the stream), at most `within`: what was read, or
/// `None` when the connection was still open.
async fn read_to_close<S: AsyncRead + Unpin>(s: &mut S, within: Duration) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(within, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .ok()?;
    Some(got)
}

#[tokio::test]
async fn https_listener_answers_the_probe_that_trusts_its_ca_and_only_that_one() {
    let stand = Stand::start(https_stack("127.0.0.1", 60)).await;
    stand.healthy_tasks(2, "blue", &[]).await;
    let url = stand.url("production", "/");
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let ca = ca_file(&stand);
    assert!(
        std::fs::read_to_string(&ca)
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----"),
        "{}",
        ca.display()
    );

    // Keep-alive: one handshake per connection.
    let r = run(
        &url,
        400.0,
        2.0,
        ConnectionMode::KeepAlive,
        Some(ca.clone()),
    )
    .await;
    assert_eq!(r.errors.total, 0, "{}", r.summary());
    assert_eq!((r.requests, r.ok), (800, 800), "open loop: rate x duration");
    let tls = r.config.tls.as_ref().expect("the report says TLS");
    assert!(!tls.insecure);
    assert_eq!(r.served_by.len(), 2, "{:?}", r.served_by);

    // A new connection, and so a handshake, per request.
    let r = run(&url, 100.0, 2.0, ConnectionMode::NewConnection, Some(ca)).await;
    assert_eq!(r.errors.total, 0, "{}", r.summary());
    assert_eq!((r.requests, r.ok), (200, 200));

    // Negative control, one variable changed: the same probe without localaws's CA (the
    // system's roots) has every request refused for its certificate.
    for mode in [ConnectionMode::KeepAlive, ConnectionMode::NewConnection] {
        let r = run(&url, 50.0, 1.0, mode, None).await;
        assert_eq!(r.requests, 50);
        assert_eq!(r.ok, 0, "{mode:?}: {}", r.summary());
        assert_eq!(
            r.errors.by_kind.get("tls_cert").copied(),
            Some(50),
            "{mode:?}: {:?}",
            r.errors.by_kind
        );
    }
    stand.stop().await;
}

#[tokio::test]
async fn behind_tls_the_listener_marks_its_errors_refuses_oversized_heads_and_says_https() {
    // A load balancer on an address of its own: the certificate names it too.
    let stand = Stand::start(https_stack("127.0.0.5", 60)).await;
    let ca = ca_file(&stand);
    let ca_pem = stand.plane.tls().unwrap().ca_pem().to_owned();

    // The load balancer's own error (no registered targets) over TLS, as over HTTP.
    let test_url = stand.url("test", "/");
    assert!(test_url.starts_with("https://127.0.0.5:"), "{test_url}");
    let r = run(&test_url, 50.0, 1.0, ConnectionMode::KeepAlive, Some(ca)).await;
    assert_eq!(
        r.errors.by_kind.get("http_503_lb").copied(),
        Some(50),
        "{:?}",
        r.errors.by_kind
    );
    assert!(
        r.incidents[0].failed_on.keys().all(|t| t == "(unknown)"),
        "a 503 names no target: {:?}",
        r.incidents[0].failed_on
    );
    let tg = stand.plane.target_group("green").unwrap();
    assert_eq!(
        tg.metrics().elb_5xx,
        50,
        "the listener counts its 5xx over TLS"
    );

    // A target sees the client's scheme.
    let target = TestTarget::start([127, 0, 2, 5], "echo", false).await;
    tg.register("echo", target.addr).unwrap();
    stand
        .expect_state("green", target.addr, localaws::TargetHealth::Healthy)
        .await;
    let addr = stand.plane.listener("test").unwrap().addr();
    let mut s = tls_connect(addr, &ca_pem).await;
    s.write_all(b"GET / HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let got = read_to_close(&mut s, Duration::from_secs(10))
        .await
        .expect("the response ends with the connection");
    let text = String::from_utf8_lossy(&got).to_lowercase();
    assert!(text.starts_with("http/1.1 200"), "{text}");
    assert!(text.contains("x-echo-forwarded-proto: https"), "{text}");

    // A request head over 64 KiB: 431 and closed, over TLS too.
    let mut s = tls_connect(addr, &ca_pem).await;
    let mut req = b"GET / HTTP/1.1\r\nHost: app\r\n".to_vec();
    for k in 0..100 {
        req.extend(format!("X-Big-{k}: {}\r\n", "b".repeat(1000)).bytes());
    }
    req.extend(b"\r\n");
    // The listener may close before it read everything: a failed write is fine.
    let _ = s.write_all(&req).await;
    let _ = s.flush().await;
    let got = read_to_close(&mut s, Duration::from_secs(10))
        .await
        .expect("an oversized head kept its connection");
    let text = String::from_utf8_lossy(&got);
    assert!(
        got.is_empty() || text.starts_with("HTTP/1.1 431"),
        "oversized head answered {text:?}"
    );
    stand.stop().await;
}

#[tokio::test]
async fn a_client_that_never_finishes_its_handshake_is_dropped_after_the_idle_timeout() {
    let idle = Duration::from_secs(1);
    let stand = Stand::start(https_stack("127.0.0.1", 1)).await;
    stand.healthy_tasks(1, "blue", &[]).await;
    let addr = stand.plane.listener("production").unwrap().addr();
    let opened = Instant::now();
    // One sends nothing at all; one the first bytes of a TLS record and then nothing.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let mut partial = TcpStream::connect(addr).await.unwrap();
    partial.write_all(&[0x16, 0x03, 0x01, 0x02]).await.unwrap();
    for (name, s) in [("silent", &mut silent), ("partial", &mut partial)] {
        let got = read_to_close(s, idle * 10).await;
        let lasted = opened.elapsed();
        assert!(
            got.is_some_and(|g| g.is_empty()),
            "the {name} client was not dropped within {:?}",
            idle * 10
        );
        assert!(
            lasted >= idle / 2,
            "the {name} client was dropped after {lasted:?}, before the idle timeout"
        );
    }
    // The listener serves on: a keep-alive connection that served a request and then sits
    // idle is closed by the same timeout.
    let ca_pem = stand.plane.tls().unwrap().ca_pem().to_owned();
    let mut used = tls_connect(addr, &ca_pem).await;
    used.write_all(b"GET / HTTP/1.1\r\nHost: app\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 12];
    used.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    assert!(
        read_to_close(&mut used, idle * 10).await.is_some(),
        "an idle keep-alive TLS connection outlived the idle timeout"
    );
    stand.stop().await;
}

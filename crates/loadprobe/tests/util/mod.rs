//! Test targets: real servers on 127.0.0.1:0 whose misbehaviour the tests switch on and off.
//! HTTPS ones are in [`tls`].

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

pub mod tls;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Waits for `cond` on a probe's live state, failing the test at the deadline.
pub async fn wait_live(
    rx: &mut watch::Receiver<loadprobe::LiveState>,
    within: Duration,
    what: &str,
    cond: impl Fn(&loadprobe::LiveState) -> bool,
) -> loadprobe::LiveState {
    let state = tokio::time::timeout(within, rx.wait_for(|s| cond(s)))
        .await
        .unwrap_or_else(|_| panic!("timed out after {within:?} waiting for {what}"))
        .unwrap_or_else(|_| panic!("probe ended while waiting for {what}"));
    state.clone()
}

/// Binds 127.0.0.1:`port` (0: any) with SO_REUSEADDR, so that a port can be re-bound after a
/// simulated outage.
pub fn bind(port: u16) -> TcpListener {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_reuseaddr(true).unwrap();
    socket
        .bind(SocketAddr::from(([127, 0, 0, 1], port)))
        .unwrap();
    socket.listen(1024).unwrap()
}

/// What the hyper test server does; shared with the test that drives it.
#[derive(Debug)]
pub struct Control {
    /// `x-app-version` of the next responses.
    pub version: Mutex<String>,
    /// `x-served-by` of the next responses.
    pub served_by: Mutex<String>,
    /// Name each response's task anew (`x-served-by` + `-` + its number): a server behind a
    /// load balancer of endless tasks.
    pub task_per_request: std::sync::atomic::AtomicBool,
    /// Status of the next responses.
    pub status: AtomicU16,
    /// Add `server: awselb/2.0` to non-2xx responses, as an ALB does on its own errors.
    pub as_lb: std::sync::atomic::AtomicBool,
    /// Responses wait until then.
    pub stall_until: Mutex<Option<Instant>>,
    /// Requests answered.
    pub requests: AtomicU64,
    /// Connections accepted.
    pub connections: AtomicU64,
    /// While true, nothing listens and every connection is closed.
    down: watch::Sender<bool>,
}

/// A minimal hyper HTTP/1.1 server that can be stalled, taken down and brought back.
pub struct TestServer {
    pub addr: SocketAddr,
    pub ctl: Arc<Control>,
    task: JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    pub async fn start(version: &str, served_by: &str) -> TestServer {
        let listener = bind(0);
        let addr = listener.local_addr().unwrap();
        let ctl = Arc::new(Control {
            version: Mutex::new(version.to_owned()),
            served_by: Mutex::new(served_by.to_owned()),
            task_per_request: false.into(),
            status: AtomicU16::new(200),
            as_lb: false.into(),
            stall_until: Mutex::new(None),
            requests: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            down: watch::Sender::new(false),
        });
        let task = tokio::spawn(serve(listener, ctl.clone()));
        TestServer { addr, ctl, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    pub fn requests(&self) -> u64 {
        self.ctl.requests.load(Ordering::SeqCst)
    }

    pub fn connections(&self) -> u64 {
        self.ctl.connections.load(Ordering::SeqCst)
    }

    /// Stops listening and closes every connection: connects are refused from now on, and no
    /// request gets an answer once this returns (not even one already waiting on an open
    /// connection).
    pub fn go_down(&self) {
        self.ctl.down.send_replace(true);
    }

    /// Listens again on the same port.
    pub fn come_up(&self) {
        self.ctl.down.send_replace(false);
    }

    /// Holds every response until `now + d`.
    pub fn stall_for(&self, d: Duration) {
        *self.ctl.stall_until.lock().unwrap() = Some(Instant::now() + d);
    }

    pub fn set_version(&self, v: &str) {
        *self.ctl.version.lock().unwrap() = v.to_owned();
    }

    /// Answers as another task from the next response on.
    pub fn set_served_by(&self, task: &str) {
        *self.ctl.served_by.lock().unwrap() = task.to_owned();
    }
}

async fn serve(listener: TcpListener, ctl: Arc<Control>) {
    let port = listener.local_addr().unwrap().port();
    let mut listener = Some(listener);
    let mut down = ctl.down.subscribe();
    loop {
        match listener.as_ref() {
            Some(l) => {
                tokio::select! {
                    // Down first: once the server is down it accepts nothing more.
                    biased;
                    _ = down.wait_for(|d| *d) => listener = None,
                    accepted = l.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        ctl.connections.fetch_add(1, Ordering::SeqCst);
                        tokio::spawn(serve_conn(stream, ctl.clone()));
                    }
                }
            }
            None => {
                if down.wait_for(|d| !*d).await.is_err() {
                    return;
                }
                listener = Some(bind(port));
            }
        }
    }
}

async fn serve_conn(stream: TcpStream, ctl: Arc<Control>) {
    let _ = stream.set_nodelay(true);
    let mut down = ctl.down.subscribe();
    let svc_ctl = ctl.clone();
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let ctl = svc_ctl.clone();
        async move { Ok::<_, Infallible>(respond(req, &ctl).await) }
    });
    let conn =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
    tokio::select! {
        // Going down drops the connection mid-flight, like a killed process. Checked before the
        // connection is served any further: with both ready, an unbiased `select!` picks either,
        // and a request already waiting on a keep-alive connection was answered after
        // `go_down` one time in two (the flake hunt: an outage split in two by one success).
        biased;
        _ = down.wait_for(|d| *d) => {}
        _ = conn => {}
    }
}

async fn respond(_req: Request<Incoming>, ctl: &Control) -> Response<Full<Bytes>> {
    let stall = *ctl.stall_until.lock().unwrap();
    if let Some(until) = stall {
        tokio::time::sleep_until(until).await;
    }
    let n = ctl.requests.fetch_add(1, Ordering::SeqCst);
    let status = ctl.status.load(Ordering::SeqCst);
    let version = ctl.version.lock().unwrap().clone();
    let mut served_by = ctl.served_by.lock().unwrap().clone();
    if ctl.task_per_request.load(Ordering::SeqCst) {
        served_by = format!("{served_by}-{n}");
    }
    let mut resp = Response::builder()
        .status(status)
        .header("x-app-version", version)
        .header("x-served-by", served_by);
    if status >= 400 && ctl.as_lb.load(Ordering::SeqCst) {
        resp = resp.header("server", "awselb/2.0");
    }
    resp.body(Full::new(Bytes::from_static(b"ok"))).unwrap()
}

/// An L4 round-robin balancer: each accepted connection goes to the next backend.
pub struct RoundRobin {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for RoundRobin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RoundRobin {
    pub async fn start(backends: Vec<SocketAddr>) -> RoundRobin {
        let listener = bind(0);
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut next = 0usize;
            loop {
                let Ok((mut front, _)) = listener.accept().await else {
                    continue;
                };
                let backend = backends[next % backends.len()];
                next += 1;
                tokio::spawn(async move {
                    if let Ok(mut back) = TcpStream::connect(backend).await {
                        let _ = front.set_nodelay(true);
                        let _ = back.set_nodelay(true);
                        let _ = tokio::io::copy_bidirectional(&mut front, &mut back).await;
                    }
                });
            }
        });
        RoundRobin { addr, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }
}

/// A raw HTTP/1.1 server that keeps connections alive but drops a connection abruptly (RST) when
/// a request arrives after it sat idle longer than `idle_limit`: the race in which a backend's
/// keep-alive timeout fires just as a client (or an ALB) reuses the connection.
pub struct IdleCloser {
    pub addr: SocketAddr,
    pub requests: Arc<AtomicU64>,
    pub resets: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Drop for IdleCloser {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl IdleCloser {
    pub async fn start(idle_limit: Duration) -> IdleCloser {
        let listener = bind(0);
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicU64::new(0));
        let resets = Arc::new(AtomicU64::new(0));
        let (rq, rs) = (requests.clone(), resets.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(idle_conn(stream, idle_limit, rq.clone(), rs.clone()));
            }
        });
        IdleCloser {
            addr,
            requests,
            resets,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }
}

async fn idle_conn(
    mut stream: TcpStream,
    idle_limit: Duration,
    requests: Arc<AtomicU64>,
    resets: Arc<AtomicU64>,
) {
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::with_capacity(1024);
    let mut last_response: Option<Instant> = None;
    loop {
        // Read one request head (GET: no body).
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let mut chunk = [0u8; 1024];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.clear();
        if last_response.is_some_and(|t| t.elapsed() > idle_limit) {
            resets.fetch_add(1, Ordering::SeqCst);
            let _ = stream.set_zero_linger();
            return; // dropped with SO_LINGER 0: RST
        }
        requests.fetch_add(1, Ordering::SeqCst);
        let resp = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-app-version: idle\r\n\r\nok";
        if stream.write_all(resp).await.is_err() {
            return;
        }
        last_response = Some(Instant::now());
    }
}

/// A raw HTTP/1.1 stand-in for a load balancer in front of three tasks, round robin by request.
/// While the request counter is in `failing` (0-based, in arrival order) the task with index 1
/// is "dead": requests routed to it get the load balancer's own `502` naming the target, as
/// `localaws` does (`server: awselb/2.0`, `x-localaws-target-id`, `x-localaws-target`).
pub struct FakeAlb {
    pub addr: SocketAddr,
    pub requests: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Drop for FakeAlb {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub const ALB_TASKS: [&str; 3] = ["task-a", "task-b", "task-c"];

impl FakeAlb {
    pub async fn start(failing: std::ops::Range<u64>) -> FakeAlb {
        let listener = bind(0);
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicU64::new(0));
        let counter = requests.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(alb_conn(stream, counter.clone(), failing.clone()));
            }
        });
        FakeAlb {
            addr,
            requests,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }
}

async fn alb_conn(mut stream: TcpStream, counter: Arc<AtomicU64>, failing: std::ops::Range<u64>) {
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::with_capacity(1024);
    loop {
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let mut chunk = [0u8; 1024];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.clear();
        let n = counter.fetch_add(1, Ordering::SeqCst);
        let task = (n % 3) as usize;
        let resp = if task == 1 && failing.contains(&n) {
            format!(
                "HTTP/1.1 502 Bad Gateway\r\nserver: awselb/2.0\r\nx-localaws-target: 127.0.1.{}:4000\r\nx-localaws-target-id: {}\r\ncontent-length: 0\r\n\r\n",
                task + 1,
                ALB_TASKS[task]
            )
        } else {
            format!(
                "HTTP/1.1 200 OK\r\nx-app-version: v1\r\nx-served-by: {}\r\ncontent-length: 2\r\n\r\nok",
                ALB_TASKS[task]
            )
        };
        if stream.write_all(resp.as_bytes()).await.is_err() {
            return;
        }
    }
}

//! The load balancer's listeners: real HTTP/1.1 reverse proxies.
//!
//! Each listener forwards to one or more target groups by weight (an ALB weighted forward action,
//! spread with smooth weighted round-robin so a 90/10 split is exact over every ten requests), then
//! round-robin among the group's routable targets, over a keep-alive connection pool per target
//! and proxy worker thread (one worker per core, so a request never crosses threads).
//! Requests get `x-forwarded-for`, `x-forwarded-proto` and `x-forwarded-port`; hop-by-hop headers
//! are not forwarded in either direction.
//!
//! Errors the load balancer itself generates carry `server: awselb/2.0` (so a probe can tell them
//! from the target's) and an `x-localaws-error` header naming the cause:
//! - 502 when the target refuses or resets the connection, or the deregistration delay ends with
//!   the request still in flight;
//! - 503 when the target group has no registered targets;
//! - 504 when the target does not answer within the idle timeout.
//!
//! Slow and oversized clients: a request head must arrive within the idle timeout (which also
//! closes idle keep-alive connections) and fit in [`MAX_REQUEST_HEAD`] (64 KiB, else 431).
//!
//! An HTTPS listener terminates TLS (rustls, see [`super::tls`]) and then serves exactly as an
//! HTTP one, with `x-forwarded-proto: https`; the handshake must finish within the idle timeout
//! too, so a client that connects and sends nothing holds no connection for longer.
//!
//! An error about one target also names it, as an ALB access log records `target:port` for every
//! request: `x-localaws-target: 127.0.1.2:40077` and `x-localaws-target-id: <registration id>`
//! (the task id for an ECS task, the same value the task sends as `x-served-by`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::targets::TargetGroup;

/// The largest request head (request line and headers) a listener reads, as ALB's 64 KiB; a
/// larger one is answered 431 and the connection closed.
pub const MAX_REQUEST_HEAD: usize = 64 * 1024;

/// Response body: the target's, streamed, or the load balancer's own.
pub type ProxyBody = Either<Incoming, Full<Bytes>>;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
static X_LOCALAWS_ERROR: HeaderName = HeaderName::from_static("x-localaws-error");
static X_LOCALAWS_TARGET: HeaderName = HeaderName::from_static("x-localaws-target");
static X_LOCALAWS_TARGET_ID: HeaderName = HeaderName::from_static("x-localaws-target-id");
const AWSELB: HeaderValue = HeaderValue::from_static("awselb/2.0");
const HTTP: HeaderValue = HeaderValue::from_static("http");
const HTTPS: HeaderValue = HeaderValue::from_static("https");

/// A weighted forward: target groups and the smooth round-robin schedule of their weights.
#[derive(Debug)]
pub struct Forward {
    groups: Vec<(Arc<TargetGroup>, u32)>,
    schedule: Vec<u8>,
}

impl Forward {
    /// A forward over `groups` (1–5 groups, weights 0–999, not all 0).
    pub fn new(groups: Vec<(Arc<TargetGroup>, u32)>) -> Result<Self, String> {
        if groups.is_empty() || groups.len() > 5 {
            return Err("expected 1 to 5 target groups".into());
        }
        let weights: Vec<u32> = groups.iter().map(|(_, w)| *w).collect();
        if weights.iter().any(|w| *w > 999) || weights.iter().all(|w| *w == 0) {
            return Err("expected weights from 0 to 999, not all 0".into());
        }
        Ok(Self {
            schedule: smooth_schedule(&weights),
            groups,
        })
    }

    /// The group for the `n`-th request (public for the micro-benchmarks).
    #[doc(hidden)]
    pub fn pick(&self, n: usize) -> &Arc<TargetGroup> {
        let slot = self.schedule[n % self.schedule.len()];
        &self.groups[usize::from(slot)].0
    }

    /// Target group names with their weights, in order.
    pub fn weights(&self) -> Vec<(String, u32)> {
        self.groups
            .iter()
            .map(|(g, w)| (g.name.clone(), *w))
            .collect()
    }

    /// `name=weight` pairs.
    pub fn describe(&self) -> String {
        self.groups
            .iter()
            .map(|(g, w)| format!("{}={w}", g.name))
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// nginx's smooth weighted round-robin over weights reduced by their gcd: every group appears in
/// proportion, spread evenly (90/10 → nine of one, then one of the other, every ten).
fn smooth_schedule(weights: &[u32]) -> Vec<u8> {
    let g = weights
        .iter()
        .copied()
        .filter(|w| *w > 0)
        .fold(0, gcd)
        .max(1);
    let w: Vec<i64> = weights.iter().map(|x| i64::from(x / g)).collect();
    let total: i64 = w.iter().sum();
    let mut current = vec![0i64; w.len()];
    let mut schedule = Vec::with_capacity(usize::try_from(total).unwrap_or(1));
    for _ in 0..total {
        for (c, wi) in current.iter_mut().zip(&w) {
            *c += wi;
        }
        let (best, _) = current
            .iter()
            .enumerate()
            .max_by_key(|(i, c)| (**c, std::cmp::Reverse(*i)))
            .unwrap_or((0, &0));
        current[best] -= total;
        schedule.push(u8::try_from(best).unwrap_or(0));
    }
    schedule
}

/// One listener of a load balancer.
#[derive(Debug)]
pub struct Listener {
    /// Load balancer name.
    pub load_balancer: String,
    /// Listener name.
    pub name: String,
    addr: SocketAddr,
    forward: ArcSwap<Forward>,
    next: AtomicUsize,
    idle_timeout: Duration,
    port_value: HeaderValue,
    /// HTTPS: the TLS acceptor.
    tls: Option<Acceptor>,
}

/// The TLS acceptor of an HTTPS listener (`TlsAcceptor` is not `Debug`).
#[derive(Clone)]
struct Acceptor(TlsAcceptor);

impl std::fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Acceptor")
    }
}

impl Listener {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `HTTP` or `HTTPS`, as ELBv2 names a listener's protocol.
    pub fn protocol(&self) -> &'static str {
        if self.tls.is_some() { "HTTPS" } else { "HTTP" }
    }

    /// Whether the listener terminates TLS.
    pub fn is_https(&self) -> bool {
        self.tls.is_some()
    }

    /// `http://ADDR/` or `https://ADDR/`.
    pub fn url(&self) -> String {
        let scheme = if self.is_https() { "https" } else { "http" };
        format!("{scheme}://{}/", self.addr)
    }

    /// The forward action now in force.
    pub fn forward(&self) -> arc_swap::Guard<Arc<Forward>> {
        self.forward.load()
    }

    /// Replaces the forward action; takes effect on the next request.
    pub fn set_forward(&self, forward: Forward) {
        self.forward.store(Arc::new(forward));
    }
}

thread_local! {
    static WORKER: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The proxy worker this thread is (0 outside the workers).
pub(crate) fn worker_index() -> usize {
    WORKER.with(std::cell::Cell::get)
}

/// The proxy's threads: one single-threaded runtime per thread, like nginx's worker processes.
///
/// A connection lives on one worker from accept to close, and every target has one connection
/// pool per worker, so a request never hops between threads: no cross-thread wake-ups, which on
/// a small machine cost more than the proxying itself.
#[derive(Debug)]
pub struct Workers {
    handles: Vec<tokio::runtime::Handle>,
    stop: CancellationToken,
}

impl Workers {
    /// Starts `n` worker threads (at least one).
    pub fn start(n: usize) -> std::io::Result<Self> {
        let stop = CancellationToken::new();
        let mut handles = Vec::new();
        for i in 0..n.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            handles.push(runtime.handle().clone());
            let stop = stop.clone();
            std::thread::Builder::new()
                .name(format!("proxy-{i}"))
                .spawn(move || {
                    WORKER.with(|w| w.set(i));
                    runtime.block_on(stop.cancelled());
                })?;
        }
        Ok(Self { handles, stop })
    }

    /// How many workers run.
    pub fn len(&self) -> usize {
        self.handles.len()
    }

    /// Whether there are none (never: at least one is started).
    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// Ends the worker threads; connections still open on them are dropped.
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Binds a listener on `addr` (port 0 picks one); with `tls`, an HTTPS one.
pub fn bind(
    load_balancer: &str,
    name: &str,
    addr: SocketAddr,
    forward: Forward,
    idle_timeout: Duration,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> std::io::Result<(Arc<Listener>, std::net::TcpListener)> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    let tcp = std::net::TcpListener::from(socket);
    let addr = tcp.local_addr()?;
    let listener = Arc::new(Listener {
        load_balancer: load_balancer.to_owned(),
        name: name.to_owned(),
        addr,
        forward: ArcSwap::from_pointee(forward),
        next: AtomicUsize::new(0),
        idle_timeout,
        port_value: HeaderValue::from(addr.port()),
        tls: tls.map(|config| Acceptor(TlsAcceptor::from(config))),
    });
    Ok((listener, tcp))
}

/// Serves `tcp` for `listener` on `workers` until `stop` fires, then lets open connections
/// finish their requests for up to `grace`. Connections are handed to the workers in turn.
pub fn serve(
    listener: Arc<Listener>,
    tcp: std::net::TcpListener,
    workers: &Workers,
    stop: CancellationToken,
    grace: Duration,
) -> tokio::task::JoinHandle<()> {
    let handles = workers.handles.clone();
    workers.handles[0].spawn(accept_loop(listener, tcp, handles, stop, grace))
}

async fn accept_loop(
    listener: Arc<Listener>,
    tcp: std::net::TcpListener,
    workers: Vec<tokio::runtime::Handle>,
    stop: CancellationToken,
    grace: Duration,
) {
    let tcp = match TcpListener::from_std(tcp) {
        Ok(tcp) => tcp,
        Err(err) => {
            tracing::error!(listener = %listener.name, %err, "cannot serve the listener");
            return;
        }
    };
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        // The client idle timeout (ALB: 60 s), also bounding how long a request head may take:
        // an idle keep-alive connection or a slowloris client is closed when it runs out.
        .header_read_timeout(listener.idle_timeout)
        // ALB refuses a request head over 64 KiB; so does the proxy (431), without buffering it.
        .max_buf_size(MAX_REQUEST_HEAD)
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    let mut turn = 0usize;
    loop {
        let (stream, peer) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = tcp.accept() => match accepted {
                Ok(a) => a,
                Err(err) => {
                    tracing::warn!(listener = %listener.name, %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        // Hand the connection to the next worker; it lives there until it closes.
        let Ok(stream) = stream.into_std() else {
            continue;
        };
        let worker = &workers[turn % workers.len()];
        turn = turn.wrapping_add(1);
        let (l, http, watcher) = (Arc::clone(&listener), http.clone(), graceful.watcher());
        worker.spawn(async move {
            let Ok(stream) = tokio::net::TcpStream::from_std(stream) else {
                return;
            };
            let _ = stream.set_nodelay(true);
            // The client address goes into every request's x-forwarded-for: render it once.
            let client = client_ip(peer);
            let tls = l.tls.clone();
            let idle_timeout = l.idle_timeout;
            let svc = service_fn(move |req| handle(Arc::clone(&l), client.clone(), req));
            match tls {
                None => {
                    let _ = watcher
                        .watch(http.serve_connection(TokioIo::new(stream), svc))
                        .await;
                }
                Some(Acceptor(acceptor)) => {
                    // A handshake that does not finish within the idle timeout (a client that
                    // connects and sends nothing, or too little) is dropped, as a request head
                    // that does not arrive in time.
                    let Ok(Ok(stream)) =
                        tokio::time::timeout(idle_timeout, acceptor.accept(stream)).await
                    else {
                        return;
                    };
                    let _ = watcher
                        .watch(http.serve_connection(TokioIo::new(stream), svc))
                        .await;
                }
            }
        });
    }
    drop(tcp);
    let _ = tokio::time::timeout(grace, graceful.shutdown()).await;
}

async fn handle(
    listener: Arc<Listener>,
    client: HeaderValue,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let group = {
        let forward = listener.forward.load();
        Arc::clone(forward.pick(listener.next.fetch_add(1, Ordering::Relaxed)))
    };
    let (res, from_target) = handle_counted(&listener, &group, client, req).await;
    group.count_response(res.status(), from_target);
    Ok(res)
}

async fn handle_counted(
    listener: &Listener,
    group: &TargetGroup,
    client: HeaderValue,
    req: Request<Incoming>,
) -> (Response<ProxyBody>, bool) {
    let Some(target) = group.pick() else {
        return (
            lb_error(StatusCode::SERVICE_UNAVAILABLE, "no-registered-targets"),
            false,
        );
    };

    let (mut parts, body) = req.into_parts();
    let mut uri = std::mem::take(&mut parts.uri).into_parts();
    uri.scheme = Some(http::uri::Scheme::HTTP);
    uri.authority = Some(target.authority.clone());
    if uri.path_and_query.is_none() {
        uri.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    }
    parts.uri = match Uri::from_parts(uri) {
        Ok(uri) => uri,
        Err(_) => {
            return (
                lb_error(StatusCode::BAD_REQUEST, "bad-request-target"),
                false,
            );
        }
    };
    strip_hop_by_hop(&mut parts.headers);
    forwarded_for(&mut parts.headers, &client);
    parts.headers.insert(
        X_FORWARDED_PROTO.clone(),
        if listener.is_https() { HTTPS } else { HTTP },
    );
    parts
        .headers
        .insert(X_FORWARDED_PORT.clone(), listener.port_value.clone());
    parts.version = http::Version::HTTP_11;

    let _in_flight = target.enter();
    let request = target.client().request(Request::from_parts(parts, body));
    // The deregistration delay's cut applies to what was in flight when the deregistration
    // began. A request that reaches a deregistering target later comes from a load balancer node
    // that has not learnt of it yet (the propagation lag), and that node cuts nothing.
    let node_knows = !target.deregistering.load(Ordering::Relaxed);
    let cut_off = async {
        if !node_knows {
            std::future::pending::<()>().await;
        }
        target.cut_off.cancelled().await;
    };
    let answer = tokio::select! {
        biased;
        () = cut_off => {
            return (target_error(&target, StatusCode::BAD_GATEWAY, "deregistration-delay-ended"), false);
        }
        answer = tokio::time::timeout(listener.idle_timeout, request) => answer,
    };
    match answer {
        Err(_) => (
            target_error(&target, StatusCode::GATEWAY_TIMEOUT, "target-timeout"),
            false,
        ),
        Ok(Err(err)) => {
            let (status, cause) = classify(&err);
            tracing::debug!(target_addr = %target.addr, %err, cause, "proxy error");
            (target_error(&target, status, cause), false)
        }
        Ok(Ok(mut res)) => {
            strip_hop_by_hop(res.headers_mut());
            (res.map(Either::Left), true)
        }
    }
}

/// Maps a client error to the ALB status and a cause.
fn classify(err: &hyper_util::client::legacy::Error) -> (StatusCode, &'static str) {
    use std::error::Error as _;
    let mut source = err.source();
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::ConnectionRefused => {
                    (StatusCode::BAD_GATEWAY, "target-refused")
                }
                std::io::ErrorKind::TimedOut => {
                    (StatusCode::GATEWAY_TIMEOUT, "target-connect-timeout")
                }
                std::io::ErrorKind::ConnectionReset => (StatusCode::BAD_GATEWAY, "target-reset"),
                _ => (StatusCode::BAD_GATEWAY, "target-io-error"),
            };
        }
        source = e.source();
    }
    if err.is_connect() {
        (StatusCode::BAD_GATEWAY, "target-connect-failed")
    } else {
        (StatusCode::BAD_GATEWAY, "target-closed")
    }
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Headers named in Connection are hop-by-hop too.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::PROXY_AUTHORIZATION,
        header::PROXY_AUTHENTICATE,
    ] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
}

/// The client's IP as a header value.
fn client_ip(peer: SocketAddr) -> HeaderValue {
    HeaderValue::from_str(&peer.ip().to_string()).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

/// Appends the client to `x-forwarded-for` (sets it when the client sent none).
fn forwarded_for(headers: &mut HeaderMap, client: &HeaderValue) {
    let appended = headers
        .get(&X_FORWARDED_FOR)
        .and_then(|prior| prior.to_str().ok())
        .and_then(|prior| {
            let ip = client.to_str().ok()?;
            HeaderValue::from_str(&format!("{prior}, {ip}")).ok()
        });
    headers.insert(
        X_FORWARDED_FOR.clone(),
        appended.unwrap_or_else(|| client.clone()),
    );
}

/// A load-balancer error about one target: names it as an ALB access log does (`target:port`),
/// and by its registration id (the task id for ECS tasks), so a probe can attribute the failure.
fn target_error(
    target: &super::targets::Target,
    status: StatusCode,
    cause: &'static str,
) -> Response<ProxyBody> {
    let mut res = lb_error(status, cause);
    let h = res.headers_mut();
    h.insert(X_LOCALAWS_TARGET.clone(), target.addr_value.clone());
    if let Some(id) = &target.id_value {
        h.insert(X_LOCALAWS_TARGET_ID.clone(), id.clone());
    }
    res
}

/// A response the load balancer generates, shaped like ALB's.
pub fn lb_error(status: StatusCode, cause: &'static str) -> Response<ProxyBody> {
    let line = format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error")
    );
    let body = format!(
        "<html>\r\n<head><title>{line}</title></head>\r\n<body>\r\n<center><h1>{line}</h1></center>\r\n</body>\r\n</html>\r\n"
    );
    let mut res = Response::new(Either::Right(Full::new(Bytes::from(body))));
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(header::SERVER, AWSELB);
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    h.insert(X_LOCALAWS_ERROR.clone(), HeaderValue::from_static(cause));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(weights: &[u32], n: usize) -> Vec<usize> {
        let s = smooth_schedule(weights);
        let mut c = vec![0; weights.len()];
        for i in 0..n {
            c[usize::from(s[i % s.len()])] += 1;
        }
        c
    }

    #[test]
    fn weighted_schedule_is_exact_and_smooth() {
        assert_eq!(smooth_schedule(&[90, 10]).len(), 10);
        assert_eq!(counts(&[90, 10], 1000), vec![900, 100]);
        assert_eq!(counts(&[100, 0], 50), vec![50, 0]);
        assert_eq!(counts(&[0, 100], 50), vec![0, 50]);
        assert_eq!(counts(&[1, 1, 1], 300), vec![100, 100, 100]);
        assert_eq!(counts(&[999, 1], 1000), vec![999, 1]);
        // Smooth: 50/50 alternates instead of bursting.
        assert_eq!(smooth_schedule(&[50, 50]), vec![0, 1]);
        let s = smooth_schedule(&[2, 1]);
        assert_eq!(s, vec![0, 1, 0]);
    }

    #[test]
    fn hop_by_hop_headers_are_dropped() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-app-version", HeaderValue::from_static("v1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-app-version"));
    }

    #[test]
    fn forwarded_for_appends() {
        let mut h = HeaderMap::new();
        forwarded_for(&mut h, &client_ip("127.0.0.9:1".parse().unwrap()));
        assert_eq!(h[&X_FORWARDED_FOR], "127.0.0.9");
        forwarded_for(&mut h, &client_ip("127.0.0.8:1".parse().unwrap()));
        assert_eq!(h[&X_FORWARDED_FOR], "127.0.0.9, 127.0.0.8");
    }

    #[test]
    fn lb_errors_mark_themselves() {
        let r = lb_error(StatusCode::BAD_GATEWAY, "target-reset");
        assert_eq!(r.headers()[header::SERVER], "awselb/2.0");
        assert_eq!(r.headers()[&X_LOCALAWS_ERROR], "target-reset");
    }
}

//! What answers on an instance itself: the ECS agent's introspection endpoint (on AWS
//! `http://INSTANCE:51678/v1/metadata`), which a target group attached to the Auto Scaling group
//! health-checks when it registers the instances rather than their tasks.
//!
//! One small HTTP server per instance, bound to the instance's own loopback address on each
//! attached group's port. Any path answers 503 until the ECS agent has registered the container
//! instance, then 200 with the agent's metadata (`Cluster`, `ContainerInstanceArn`, `Version`),
//! as the agent does once it is connected. An AMI whose agent never registers
//! (`ecs_agent_registers = false`) thus yields an instance that passes its EC2 status checks and
//! fails its load balancer checks (docs/failure-modes.md#fm-13). The server stops when the
//! instance terminates and when localaws stops.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The introspection endpoint of one instance.
#[derive(Debug)]
pub(crate) struct AgentEndpoint {
    /// The metadata served once the agent has registered; `None` before (503).
    metadata: Arc<ArcSwapOption<Bytes>>,
    stop: CancellationToken,
    accept: Vec<JoinHandle<()>>,
}

impl AgentEndpoint {
    /// Binds `ip:port` for each of `ports` and serves them. Ports that cannot be bound are
    /// returned with the OS's error (the instance's checks on them fail, as on an instance whose
    /// agent does not listen).
    pub(crate) fn start(ip: IpAddr, ports: &[u16]) -> (Self, Vec<(SocketAddr, std::io::Error)>) {
        let metadata = Arc::new(ArcSwapOption::empty());
        let stop = CancellationToken::new();
        let mut accept = Vec::new();
        let mut failed = Vec::new();
        for &port in ports {
            let addr = SocketAddr::new(ip, port);
            match bind(addr) {
                Ok(listener) => accept.push(tokio::spawn(serve(
                    listener,
                    Arc::clone(&metadata),
                    stop.clone(),
                ))),
                Err(e) => failed.push((addr, e)),
            }
        }
        (
            Self {
                metadata,
                stop,
                accept,
            },
            failed,
        )
    }

    /// The agent registered the container instance: every path answers 200 with `metadata`.
    pub(crate) fn registered(&self, metadata: Bytes) {
        self.metadata.store(Some(Arc::new(metadata)));
    }

    /// Stops serving: the listeners close and open connections are dropped.
    pub(crate) fn stop(&self) {
        self.stop.cancel();
    }

    /// Stops serving and waits until every listener is closed.
    pub(crate) async fn stopped(self) {
        self.stop.cancel();
        for a in self.accept {
            let _ = a.await;
        }
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(128)
}

async fn serve(
    listener: tokio::net::TcpListener,
    metadata: Arc<ArcSwapOption<Bytes>>,
    stop: CancellationToken,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .keep_alive(true);
    loop {
        let stream = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    tracing::warn!(%err, "instance endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let (metadata, stop, http) = (Arc::clone(&metadata), stop.clone(), http.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |_req: Request<Incoming>| {
                std::future::ready(Ok::<_, Infallible>(answer(metadata.load_full())))
            });
            tokio::select! {
                () = stop.cancelled() => {}
                _ = http.serve_connection(TokioIo::new(stream), svc) => {}
            }
        });
    }
}

fn answer(metadata: Option<Arc<Bytes>>) -> Response<Full<Bytes>> {
    let (status, body) = match metadata {
        Some(m) => (StatusCode::OK, Bytes::clone(&m)),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            Bytes::from_static(
                b"{\"error\":\"the ECS agent has not registered the container instance\"}\n",
            ),
        ),
    };
    let mut res = Response::new(Full::new(body));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    res
}

/// The agent's `/v1/metadata` document.
pub(crate) fn metadata(cluster: &str, container_instance_arn: &str) -> Bytes {
    let doc = serde_json::json!({
        "Cluster": cluster,
        "ContainerInstanceArn": container_instance_arn,
        "Version": "Amazon ECS Agent - localaws",
    });
    Bytes::from(format!("{doc}\n"))
}

//! `server healthcheck`: probes the local instance's `/health` (container images have no curl).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::config::Config;

/// Why the health check failed.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    /// Nothing answered in time.
    #[error("no answer from {addr} within {timeout:?}")]
    Timeout {
        /// Where it looked.
        addr: SocketAddr,
        /// How long it waited.
        timeout: Duration,
    },
    /// Connecting or talking failed.
    #[error("GET http://{addr}/health failed: {message}")]
    Transport {
        /// Where it looked.
        addr: SocketAddr,
        /// What went wrong.
        message: String,
    },
    /// The server answered, but not 200.
    #[error("GET http://{addr}/health answered {status}")]
    Status {
        /// Where it looked.
        addr: SocketAddr,
        /// What it answered.
        status: StatusCode,
    },
}

/// The address the server of `config` answers on, from inside its own container.
pub fn local_addr(config: &Config) -> SocketAddr {
    let ip = match config.bind {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, config.port)
}

/// GET `/health` on `addr`; Ok only for 200.
pub async fn check(addr: SocketAddr, timeout: Duration) -> Result<(), HealthError> {
    match tokio::time::timeout(timeout, get_health(addr)).await {
        Err(_) => Err(HealthError::Timeout { addr, timeout }),
        Ok(Err(err)) => Err(HealthError::Transport {
            addr,
            message: err.to_string(),
        }),
        Ok(Ok(StatusCode::OK)) => Ok(()),
        Ok(Ok(status)) => Err(HealthError::Status { addr, status }),
    }
}

async fn get_health(
    addr: SocketAddr,
) -> Result<StatusCode, Box<dyn std::error::Error + Send + Sync>> {
    let stream = TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = Request::get("/health")
        .header(header::HOST, addr.to_string())
        .header(header::USER_AGENT, "server-healthcheck")
        .body(Empty::<Bytes>::new())?;
    Ok(sender.send_request(req).await?.status())
}

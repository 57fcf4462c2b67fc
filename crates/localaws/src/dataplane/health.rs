//! Target group health checks: the threshold state machine and the HTTP check (the matcher's
//! grammar is the stack model's, [`stack::Matcher`]).
//!
//! Like ALB: each check opens a fresh connection and sends `GET <path>` with
//! `User-Agent: ELB-HealthChecker/2.0`; a check passes when the status matches within the timeout.
//! `healthy_threshold` consecutive passes make a target healthy, `unhealthy_threshold` consecutive
//! failures make it unhealthy; a new target starts in `initial` and gets no traffic until healthy.
//! A new target's refused connections count only after `clock::MIN_REAL_START` of real time: its
//! process may still be starting.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, header};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::events::TargetHealth;
use stack::Matcher;

/// Why a check failed, as ELBv2 reason codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckFailure {
    /// No answer within the timeout (`Target.Timeout`).
    Timeout,
    /// Answered with a status the matcher rejects (`Target.ResponseCodeMismatch`).
    ResponseCodeMismatch(u16),
    /// Could not connect or the connection broke (`Target.FailedHealthChecks`).
    Failed,
}

impl CheckFailure {
    /// The ELBv2 reason code.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Timeout => "Target.Timeout",
            Self::ResponseCodeMismatch(_) => "Target.ResponseCodeMismatch",
            Self::Failed => "Target.FailedHealthChecks",
        }
    }
}

/// One health check over a fresh connection.
pub async fn check(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
    matcher: &Matcher,
) -> Result<(), CheckFailure> {
    let status = match tokio::time::timeout(timeout, get(addr, path)).await {
        Err(_) => return Err(CheckFailure::Timeout),
        Ok(Err(())) => return Err(CheckFailure::Failed),
        Ok(Ok(status)) => status,
    };
    if matcher.matches(status) {
        Ok(())
    } else {
        Err(CheckFailure::ResponseCodeMismatch(status))
    }
}

async fn get(addr: SocketAddr, path: &str) -> Result<u16, ()> {
    let stream = TcpStream::connect(addr).await.map_err(|_| ())?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|_| ())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = Request::get(path)
        .header(header::HOST, addr.to_string())
        .header(header::USER_AGENT, "ELB-HealthChecker/2.0")
        .header(header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|_| ())?;
    let res = sender.send_request(req).await.map_err(|_| ())?;
    Ok(res.status().as_u16())
}

/// The threshold state machine of one target in one target group.
#[derive(Debug, Clone)]
pub struct HealthTracker {
    state: TargetHealth,
    passes: u32,
    failures: u32,
    healthy_threshold: u32,
    unhealthy_threshold: u32,
}

impl HealthTracker {
    /// A tracker in `initial`.
    pub fn new(healthy_threshold: u32, unhealthy_threshold: u32) -> Self {
        Self {
            state: TargetHealth::Initial,
            passes: 0,
            failures: 0,
            healthy_threshold: healthy_threshold.max(1),
            unhealthy_threshold: unhealthy_threshold.max(1),
        }
    }

    /// The current state.
    pub fn state(&self) -> TargetHealth {
        self.state
    }

    /// Records one check; returns the new state if it changed.
    pub fn record(&mut self, passed: bool) -> Option<TargetHealth> {
        let next = if passed {
            self.passes += 1;
            self.failures = 0;
            (self.state != TargetHealth::Healthy && self.passes >= self.healthy_threshold)
                .then_some(TargetHealth::Healthy)
        } else {
            self.failures += 1;
            self.passes = 0;
            (self.state != TargetHealth::Unhealthy && self.failures >= self.unhealthy_threshold)
                .then_some(TargetHealth::Unhealthy)
        };
        if let Some(next) = next {
            self.state = next;
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds() {
        let mut t = HealthTracker::new(2, 3);
        assert_eq!(t.record(true), None);
        assert_eq!(t.record(true), Some(TargetHealth::Healthy));
        assert_eq!(t.record(true), None);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(true), None, "a pass resets the failure count");
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), Some(TargetHealth::Unhealthy));
        assert_eq!(t.record(true), None);
        assert_eq!(t.record(true), Some(TargetHealth::Healthy));
        // initial -> unhealthy after the unhealthy threshold
        let mut t = HealthTracker::new(5, 2);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), Some(TargetHealth::Unhealthy));
        assert_eq!(t.state(), TargetHealth::Unhealthy);
    }
}

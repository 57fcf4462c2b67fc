//! Senders: one task per connection, each taking requests from the schedule (or, with
//! `--rate max`, as fast as it can), sending them with hyper's HTTP/1.1 connection API and
//! handing each result to the recorder. They share nothing with the recorder but that channel.
//!
//! Every request's deadline is its intended start plus the timeout, so a request that waited
//! for a connection has less time left, and one whose deadline passed in the queue is a
//! `request_timeout` without being sent. That bounds both the queue and the wait for in-flight
//! requests at the end of a run.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderValue;
use http::header::HeaderName;
use http_body_util::{BodyExt as _, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::sync::{Mutex, mpsc};
use tokio::time::{Instant, timeout_at};

use crate::config::{ConnectionMode, LbMarker, StatusSet};
use crate::error::ErrorKind;
use crate::recorder::Sample;
use crate::schedule::{Idle, Job, Stop};
use crate::target::Target;

const X_APP_VERSION: HeaderName = HeaderName::from_static("x-app-version");
const X_SERVED_BY: HeaderName = HeaderName::from_static("x-served-by");

/// What every sender needs.
pub(crate) struct SenderConfig {
    pub(crate) target: Target,
    pub(crate) mode: ConnectionMode,
    pub(crate) timeout: Duration,
    pub(crate) start: Instant,
    pub(crate) ok_status: StatusSet,
    pub(crate) lb_marker: LbMarker,
}

/// Where a sender gets its next request.
#[derive(Clone)]
pub(crate) enum Jobs {
    /// From the fixed-rate scheduler.
    Scheduled {
        queue: Arc<Mutex<mpsc::UnboundedReceiver<Job>>>,
        idle: Arc<Idle>,
    },
    /// Closed loop: the next sequence number, now.
    Max {
        next: Arc<AtomicU64>,
        end: Instant,
        stop: Arc<Stop>,
    },
}

impl Jobs {
    async fn next(&self) -> Option<Job> {
        match self {
            Jobs::Scheduled { queue, idle } => {
                let job = queue.lock().await.recv().await?;
                if job.pool_wait {
                    idle.busy();
                }
                Some(job)
            }
            Jobs::Max { next, end, stop } => {
                let now = Instant::now();
                if now >= *end {
                    return None;
                }
                if stop.is_stopped() {
                    stop.mark_cut_short();
                    return None;
                }
                Some(Job {
                    seq: next.fetch_add(1, Ordering::Relaxed),
                    intended: now.into_std(),
                    lag_us: 0,
                    pool_wait: false,
                })
            }
        }
    }

    fn done(&self) {
        if let Jobs::Scheduled { idle, .. } = self {
            idle.release();
        }
    }
}

/// A finished exchange: success status or failure, and the attribution headers.
struct Exchange {
    result: Result<u16, ErrorKind>,
    version: Option<HeaderValue>,
    served_by: Option<HeaderValue>,
}

impl From<ErrorKind> for Exchange {
    fn from(kind: ErrorKind) -> Self {
        Exchange {
            result: Err(kind),
            version: None,
            served_by: None,
        }
    }
}

/// One connection's loop: until the jobs run out or the recorder is gone.
pub(crate) async fn run(cfg: Arc<SenderConfig>, jobs: Jobs, results: mpsc::Sender<Sample>) {
    let mut conn = None;
    while let Some(job) = jobs.next().await {
        let intended = Instant::from_std(job.intended);
        let deadline = intended + cfg.timeout;
        let ex = if Instant::now() >= deadline {
            ErrorKind::RequestTimeout.into()
        } else {
            cfg.exchange(&mut conn, deadline).await
        };
        let done = Instant::now();
        let us = |t: Instant| t.saturating_duration_since(cfg.start).as_micros() as u64;
        let sample = Sample {
            seq: job.seq,
            intended_us: us(intended),
            done_us: us(done),
            lag_us: job.lag_us,
            pool_wait: job.pool_wait,
            result: ex.result,
            version: ex.version,
            served_by: ex.served_by,
        };
        jobs.done();
        if results.send(sample).await.is_err() {
            return;
        }
    }
}

impl SenderConfig {
    async fn connect(&self, deadline: Instant) -> Result<SendRequest<Empty<Bytes>>, ErrorKind> {
        let stream = timeout_at(deadline, self.target.connect())
            .await
            .map_err(|_| ErrorKind::ConnectTimeout)??;
        let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ErrorKind::from_hyper(&e))?;
        tokio::spawn(async move {
            // Its errors reach the request that was in flight; nothing to do here.
            let _ = conn.await;
        });
        Ok(tx)
    }

    /// Sends one request on the kept connection (or a new one) and reads the whole response.
    async fn exchange(
        &self,
        conn: &mut Option<SendRequest<Empty<Bytes>>>,
        deadline: Instant,
    ) -> Exchange {
        let keep_alive = self.mode == ConnectionMode::KeepAlive;
        let reused = match conn.take() {
            // A connection the server closed while idle is replaced before sending: only a
            // request that was actually sent can fail.
            Some(mut tx) if keep_alive => match timeout_at(deadline, tx.ready()).await {
                Ok(Ok(())) => Some(tx),
                Ok(Err(_)) => None,
                Err(_) => return ErrorKind::RequestTimeout.into(),
            },
            _ => None,
        };
        let mut tx = match reused {
            Some(tx) => tx,
            None => match self.connect(deadline).await {
                Ok(tx) => tx,
                Err(kind) => return kind.into(),
            },
        };
        let req = self.target.request(!keep_alive);
        let response = async {
            let resp = tx.send_request(req).await?;
            let (parts, mut body) = resp.into_parts();
            while let Some(frame) = body.frame().await {
                frame?;
            }
            Ok::<_, hyper::Error>(parts)
        };
        let mut parts = match timeout_at(deadline, response).await {
            Ok(Ok(parts)) => parts,
            Ok(Err(e)) => return ErrorKind::from_hyper(&e).into(),
            // The connection is dropped with the request: HTTP/1.1 cannot cancel one.
            Err(_) => return ErrorKind::RequestTimeout.into(),
        };
        if keep_alive {
            *conn = Some(tx);
        }
        let status = parts.status.as_u16();
        let result = if self.ok_status.contains(status) {
            Ok(status)
        } else {
            let by_lb = parts.headers.get(&self.lb_marker.header).is_some_and(|v| {
                v.as_bytes()
                    .eq_ignore_ascii_case(self.lb_marker.value.as_bytes())
            });
            Err(ErrorKind::Http { status, by_lb })
        };
        Exchange {
            result,
            version: parts.headers.remove(X_APP_VERSION),
            served_by: parts.headers.remove(X_SERVED_BY),
        }
    }
}

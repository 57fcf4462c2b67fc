//! Senders: one task per connection, each taking requests from the schedule (or, with
//! `--rate max`, as fast as it can), sending them over a lean HTTP/1.1 connection
//! ([`crate::wire`]) and handing each result to the recorder. They share nothing with the recorder but that channel.
//!
//! Every request's deadline is its intended start plus the timeout, so a request that waited
//! for a connection has less time left, and one whose deadline passed in the queue is a
//! `request_timeout` without being sent. That bounds both the queue and the wait for in-flight
//! requests at the end of a run.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::HeaderValue;
use tokio::sync::{Mutex, mpsc};
use tokio::time::{Instant, timeout_at};

use crate::config::{ConnectionMode, LbMarker, StatusSet};
use crate::error::ErrorKind;
use crate::recorder::Sample;
use crate::schedule::{Idle, Job, Stop};
use crate::target::Target;
use crate::wire::Wire;

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
    lb_target: Option<HeaderValue>,
}

impl From<ErrorKind> for Exchange {
    fn from(kind: ErrorKind) -> Self {
        Exchange {
            result: Err(kind),
            version: None,
            served_by: None,
            lb_target: None,
        }
    }
}

/// Samples are handed over in batches of up to this many (closed loop only) ...
const BATCH: usize = 64;
/// ... and at least this often, so the live view stays fresh.
const BATCH_AGE: Duration = Duration::from_millis(5);

/// A batch of results on its way to the recorder.
pub(crate) type Batch = Vec<Sample>;

/// One connection's loop: until the jobs run out or the recorder is gone.
pub(crate) async fn run(cfg: Arc<SenderConfig>, jobs: Jobs, results: mpsc::UnboundedSender<Batch>) {
    // Open loop sends every result at once (the rate is bounded); closed loop batches them to
    // spare the recorder a wake-up per request.
    let batch_max = match jobs {
        Jobs::Scheduled { .. } => 1,
        Jobs::Max { .. } => BATCH,
    };
    let mut batch = Vec::with_capacity(batch_max);
    let mut batch_start = Instant::now();
    let mut conn = None;
    while let Some(job) = jobs.next().await {
        let intended = Instant::from_std(job.intended);
        let deadline = intended + cfg.timeout;
        let sent = Instant::now();
        let ex = if sent >= deadline {
            ErrorKind::RequestTimeout.into()
        } else {
            cfg.exchange(&mut conn, deadline).await
        };
        let done = Instant::now();
        let us = |t: Instant| t.saturating_duration_since(cfg.start).as_micros() as u64;
        if batch.is_empty() {
            batch_start = done;
        }
        batch.push(Sample {
            seq: job.seq,
            intended_us: us(intended),
            done_us: us(done),
            lag_us: job.lag_us,
            sent_us: us(sent),
            pool_wait: job.pool_wait,
            result: ex.result,
            version: ex.version,
            served_by: ex.served_by,
            lb_target: ex.lb_target,
        });
        jobs.done();
        if (batch.len() >= batch_max || done - batch_start >= BATCH_AGE)
            && results
                .send(std::mem::replace(&mut batch, Vec::with_capacity(batch_max)))
                .is_err()
        {
            return;
        }
    }
    if !batch.is_empty() {
        let _ = results.send(batch);
    }
}

impl SenderConfig {
    /// Sends one request on the kept connection (or a new one) and reads the whole response.
    async fn exchange(&self, kept: &mut Option<Wire>, deadline: Instant) -> Exchange {
        let keep_alive = self.mode == ConnectionMode::KeepAlive;
        // A connection the server closed while idle is replaced before sending: only a request
        // that was actually sent can fail.
        let reused = kept
            .take()
            .filter(|_| keep_alive)
            .and_then(|mut wire| (!wire.closed()).then_some(wire));
        let mut wire = match reused {
            Some(wire) => wire,
            None => match self.target.connect(deadline).await {
                Ok(stream) => Wire::new(stream),
                Err(kind) => return kind.into(),
            },
        };
        let request = self.target.request(!keep_alive);
        let head = match timeout_at(deadline, wire.exchange(request, &self.lb_marker)).await {
            Ok(Ok(head)) => head,
            Ok(Err(kind)) => return kind.into(),
            // The connection is dropped with the request: HTTP/1.1 cannot cancel one.
            Err(_) => return ErrorKind::RequestTimeout.into(),
        };
        if keep_alive && head.reusable {
            *kept = Some(wire);
        }
        let result = if self.ok_status.contains(head.status) {
            Ok(head.status)
        } else {
            Err(ErrorKind::Http {
                status: head.status,
                by_lb: head.by_lb,
            })
        };
        Exchange {
            result,
            version: head.version,
            served_by: head.served_by,
            lb_target: head.lb_target,
        }
    }
}

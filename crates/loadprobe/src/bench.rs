//! The probe's hot paths, reachable from the criterion benchmarks in `benches/benches/` and from
//! nothing else: not an API, hidden from the documentation, free to change.

use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use http::HeaderValue;

use crate::config::LbMarker;
use crate::recorder::{Recorder as Inner, Sample};
use crate::wire::Reader;

/// A recorder fed by hand with successful samples.
pub struct Recorder {
    inner: Inner,
    version: HeaderValue,
    served_by: HeaderValue,
}

impl Recorder {
    /// A recorder with intervals of `interval` and nothing recorded.
    pub fn new(interval: Duration) -> Self {
        Self {
            inner: Inner::standalone(interval),
            version: HeaderValue::from_static("v1"),
            served_by: HeaderValue::from_static("task-1"),
        }
    }

    /// Records request `seq` (results in order), intended at `intended_us`, answered 200 by the
    /// same version and task as every other, 500 µs later: what a sender hands over per request.
    pub fn record_ok(&mut self, seq: u64, intended_us: u64) {
        self.inner.on_sample(Sample {
            seq,
            intended_us,
            done_us: intended_us + 500,
            lag_us: 3,
            sent_us: intended_us + 3,
            pool_wait: false,
            result: Ok(200),
            version: Some(self.version.clone()),
            served_by: Some(self.served_by.clone()),
            lb_target: None,
        });
    }
}

/// The response parser of one keep-alive connection.
#[derive(Debug, Default)]
pub struct ResponseParser {
    reader: Reader,
    lb: LbMarker,
}

impl ResponseParser {
    /// Reads one whole response (head parsed, body skipped) from `bytes` as if the socket had
    /// delivered them in one read: its status, or `None` if it failed or needs more bytes.
    pub fn parse(&mut self, mut bytes: &[u8]) -> Option<u16> {
        let response = pin!(self.reader.response(&mut bytes, &self.lb));
        // A byte slice never makes a read wait: the first poll finishes the exchange.
        match response.poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(Ok(head)) => Some(head.status),
            Poll::Ready(Err(_)) | Poll::Pending => None,
        }
    }
}

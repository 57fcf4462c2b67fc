//! Shared by the micro-benchmarks: one short configuration, so `cargo bench -p benches` runs
//! every bench in a few minutes on 2 cores, and a way to run a future that never waits.

use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::Criterion;

/// 1 s of warm-up, 2 s of measurement, 50 samples.
pub(crate) fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50)
}

/// The output of a future that completes on its first poll (no runtime, no timer involved).
#[allow(dead_code, reason = "not every bench runs a future")]
pub(crate) fn now<F: Future>(future: F) -> F::Output {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the benchmarked future waited: it needs a runtime"),
    }
}

//! The open-loop schedule: request `i` is due at `start + i / rate`, whatever the target does.
//!
//! One dedicated thread sleeps until each due time (the tokio timer has 1 ms granularity; a
//! thread sleeping on a condvar wakes within tens of µs) and hands the request, stamped with its
//! intended start, to whichever connection is free. A busy or stalled connection never delays
//! the dispatch of later requests; when every connection is busy the request waits in the queue
//! and the wait is part of its latency.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

/// A request to send.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Job {
    /// Position in the schedule.
    pub(crate) seq: u64,
    /// When it should start; its latency is counted from here.
    pub(crate) intended: Instant,
    /// How late the scheduler handed it out, µs.
    pub(crate) lag_us: u64,
    /// No connection was idle when it was due.
    pub(crate) pool_wait: bool,
}

/// Fixed-rate due times.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Schedule {
    rate: f64,
    count: u64,
}

impl Schedule {
    /// `rate` requests per second for `duration`: exactly `floor(rate × duration)` requests.
    pub(crate) fn new(rate: f64, duration: Duration) -> Schedule {
        // The epsilon keeps 100/s × 0.3 s at 30 despite 0.3 not being exact in binary.
        let count = (rate * duration.as_secs_f64() + 1e-6).floor() as u64;
        Schedule { rate, count }
    }

    /// Number of requests.
    pub(crate) fn count(&self) -> u64 {
        self.count
    }

    /// Due time of request `seq`, relative to the start.
    pub(crate) fn offset(&self, seq: u64) -> Duration {
        Duration::from_secs_f64(seq as f64 / self.rate)
    }
}

/// The stop signal shared by the probe handle, the scheduler and the senders.
#[derive(Debug, Default)]
pub(crate) struct Stop {
    stopped: Mutex<bool>,
    wake: Condvar,
    flag: AtomicBool,
    cut_short: AtomicBool,
    /// Requests handed out by the scheduler.
    dispatched: AtomicU64,
}

impl Stop {
    /// Stops sending: no request is handed out after this.
    pub(crate) fn stop(&self) {
        *self.stopped.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.flag.store(true, Ordering::SeqCst);
        self.wake.notify_all();
    }

    pub(crate) fn is_stopped(&self) -> bool {
        self.flag.load(Ordering::Relaxed)
    }

    /// Records that the stop left part of the schedule unsent.
    pub(crate) fn mark_cut_short(&self) {
        self.cut_short.store(true, Ordering::SeqCst);
    }

    /// Whether the stop left part of the schedule unsent.
    pub(crate) fn was_cut_short(&self) -> bool {
        self.cut_short.load(Ordering::SeqCst)
    }

    /// Requests the scheduler handed out (each must get exactly one result).
    pub(crate) fn dispatched(&self) -> u64 {
        self.dispatched.load(Ordering::SeqCst)
    }

    /// Sleeps until `deadline`; `false` when stopped first.
    fn sleep_until(&self, deadline: Instant) -> bool {
        let mut stopped = self.stopped.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if *stopped {
                return false;
            }
            let now = Instant::now();
            if now >= deadline {
                return true;
            }
            stopped = self
                .wake
                .wait_timeout(stopped, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

/// Idle connections, so that the scheduler can count requests that had to wait for one.
#[derive(Debug)]
pub(crate) struct Idle(AtomicUsize);

impl Idle {
    pub(crate) fn new(connections: usize) -> Idle {
        Idle(AtomicUsize::new(connections))
    }

    /// Claims an idle connection for a request being dispatched; `false` when none is idle.
    fn claim(&self) -> bool {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
    }

    /// A connection took a request that had claimed nothing: it is busy now.
    pub(crate) fn busy(&self) {
        let _ = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    /// A connection finished a request.
    pub(crate) fn release(&self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }
}

/// Dispatches the schedule (blocking; run it on its own thread). Returns when every request was
/// handed out, when stopped, or when nobody takes requests any more.
pub(crate) fn dispatch(
    schedule: Schedule,
    start: Instant,
    jobs: &mpsc::UnboundedSender<Job>,
    stop: &Stop,
    idle: &Idle,
) {
    for seq in 0..schedule.count() {
        let intended = start + schedule.offset(seq);
        if !stop.sleep_until(intended) {
            stop.mark_cut_short();
            return;
        }
        let lag = Instant::now().saturating_duration_since(intended);
        let job = Job {
            seq,
            intended,
            lag_us: lag.as_micros() as u64,
            pool_wait: !idle.claim(),
        };
        if jobs.send(job).is_err() {
            return;
        }
        stop.dispatched.store(seq + 1, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::Arc;

    #[test]
    fn count_is_rate_times_duration() {
        assert_eq!(Schedule::new(100.0, Duration::from_secs(10)).count(), 1000);
        assert_eq!(Schedule::new(100.0, Duration::from_millis(300)).count(), 30);
        assert_eq!(Schedule::new(3.0, Duration::from_millis(999)).count(), 2);
        let s = Schedule::new(1000.0, Duration::from_secs(1));
        assert_eq!(s.offset(0), Duration::ZERO);
        assert_eq!(s.offset(500), Duration::from_millis(500));
        assert!(s.offset(s.count() - 1) < Duration::from_secs(1));
    }

    #[test]
    fn dispatch_is_on_time_and_counts_pool_waits() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let stop = Stop::default();
        let idle = Idle::new(3);
        let start = Instant::now();
        dispatch(
            Schedule::new(200.0, Duration::from_millis(50)),
            start,
            &tx,
            &stop,
            &idle,
        );
        let mut jobs = Vec::new();
        while let Ok(j) = rx.try_recv() {
            jobs.push(j);
        }
        assert_eq!(jobs.len(), 10);
        for (i, j) in jobs.iter().enumerate() {
            assert_eq!(j.seq, i as u64);
            assert_eq!(j.intended, start + Duration::from_millis(5 * i as u64));
        }
        // Nobody released a connection: the first three claimed one, the rest waited.
        assert_eq!(jobs.iter().filter(|j| j.pool_wait).count(), 7);
        assert_eq!(stop.dispatched(), 10);
        assert!(!stop.was_cut_short());
    }

    #[test]
    fn stop_interrupts_a_long_sleep() {
        let (tx, _rx) = mpsc::unbounded_channel();
        let stop = Arc::new(Stop::default());
        let idle = Idle::new(1);
        let stopper = {
            let stop = stop.clone();
            std::thread::spawn(move || stop.stop())
        };
        let t0 = Instant::now();
        // One request per 100 s: only the stop can end this quickly.
        dispatch(
            Schedule::new(0.01, Duration::from_secs(1000)),
            t0 + Duration::from_secs(1),
            &tx,
            &stop,
            &idle,
        );
        stopper.join().unwrap();
        assert!(t0.elapsed() < Duration::from_secs(5));
        assert!(stop.was_cut_short());
    }
}

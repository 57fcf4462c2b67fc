//! Simulated time for AWS machinery.
//!
//! Health-check intervals, deregistration delays (and, with the control plane, warmups, checkpoint
//! delays and canary intervals) are *simulated* durations: they run `scale` times faster than real
//! time so a 5-minute canary takes 30 s at scale 10. Processes and sockets stay real, and so do the
//! durations a process lives through (stop timeouts, idle timeouts).
//!
//! The clock sits on `tokio::time`, so a test can pause and advance time deterministically
//! (`#[tokio::test(start_paused = true)]`) for logic that needs no real process.
//!
//! Three real-time floors keep a loaded machine from looking like a broken one, each found by
//! the flake hunt: a health check's timeout is never below [`MIN_REAL_TIMEOUT`]; a new target's
//! refused connections, like a container health check's failures, count only after
//! [`MIN_REAL_START`] (starting a process is real time, and at 60x two checks are 83 ms apart);
//! a non-zero deregistration delay cuts no request sooner than [`MIN_REAL_DRAIN`] after the
//! deregistration began (a request's duration is real, and at 60x a 2 s delay is 33 ms). A delay
//! of 0 still cuts at once.

use std::time::Duration;

/// Converts simulated durations to real ones and sleeps for them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Clock {
    scale: f64,
}

/// The shortest real timeout a scaled one becomes (target health checks, container health-check
/// commands): a loopback process that answers at all answers within it, so scaling never turns a
/// slow machine into an unhealthy target. 100 ms was not enough on a loaded 2-core machine: a
/// check that took longer than that turned a healthy target unhealthy, which fired the
/// deployment's `UnHealthyHostCount` alarm and rolled a good release back; forking a container
/// health-check command takes longer still. Only a target that hangs is detected later.
pub const MIN_REAL_TIMEOUT: Duration = Duration::from_secs(1);

/// How long a newly registered target may refuse connections before its failed health checks
/// count, and the shortest start period of a container health check (real time, never scaled).
/// Starting a process is real time: at 60x the stack's unhealthy threshold (2 checks, the first
/// at registration, 5 s apart) is 83 ms of real time, less than a loaded 2-core machine can take
/// to start a server and bind its port, so a good release's targets would go
/// `initial -> unhealthy` and fire the deployment's unhealthy-host alarm. On AWS a process starts
/// in a small fraction of that window; this floor keeps the proportion. A target that answers
/// with a wrong status, times out, or never listens at all is still found unhealthy (the last
/// at most this much later).
pub const MIN_REAL_START: Duration = Duration::from_secs(1);

/// The least real time between two container health checks of a task (real time, never
/// scaled). A check starts a process: a `docker exec` in a container (tens of milliseconds of the
/// engine's CPU), or the command beside a process task (the project's `server healthcheck`, a
/// 60 MB debug binary in the tests). At 240x a 10 s interval is 42 ms: containers checked back to
/// back stalled the engine and the machine (the dev environment's container rehearsal: 97 % of
/// the probe's requests timed out), and process tasks did the same under the flake hunt's hog
/// (two rehearsals side by side, ~180 checks a second: every task's check timed out at once and
/// the whole fleet was stopped as unhealthy, docs/testing.md). ECS's own least interval is 5 s.
pub(crate) const MIN_REAL_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The soonest a non-zero deregistration delay cuts off a request that was in flight when the
/// deregistration began (real time, never scaled). A request's duration is real: at 60x a 2 s
/// delay is 33 ms of real time, less than a loaded machine can take to answer an ordinary
/// request, which AWS's 2 s would never cut. Below this floor a request counts as instant, as it
/// would next to AWS's seconds; a delay of 0 still cuts at once, and a request longer than this
/// is still cut when the delay ends. The target leaves the group when the delay ends either way.
pub const MIN_REAL_DRAIN: Duration = Duration::from_secs(1);

impl Clock {
    /// A clock running `scale` simulated seconds per real second (clamped to 0.01–1000).
    pub fn new(scale: f64) -> Self {
        let scale = if scale.is_finite() {
            scale.clamp(0.01, 1000.0)
        } else {
            1.0
        };
        Self { scale }
    }

    /// Real time.
    pub fn real() -> Self {
        Self { scale: 1.0 }
    }

    /// Simulated seconds per real second.
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// The real duration of a simulated one.
    pub fn to_real(&self, simulated: Duration) -> Duration {
        simulated.div_f64(self.scale)
    }

    /// The simulated duration of a real one.
    pub fn to_simulated(&self, real: Duration) -> Duration {
        real.mul_f64(self.scale)
    }

    /// A simulated network timeout as a real one, never below [`MIN_REAL_TIMEOUT`].
    pub fn timeout(&self, simulated: Duration) -> Duration {
        self.to_real(simulated).max(MIN_REAL_TIMEOUT)
    }

    /// Sleeps for a simulated duration.
    pub async fn sleep(&self, simulated: Duration) {
        tokio::time::sleep(self.to_real(simulated)).await;
    }

    /// Simulated seconds as a real duration.
    pub fn secs(&self, simulated_secs: u32) -> Duration {
        self.to_real(Duration::from_secs(u64::from(simulated_secs)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_both_ways() {
        let c = Clock::new(10.0);
        assert_eq!(c.to_real(Duration::from_secs(300)), Duration::from_secs(30));
        assert_eq!(
            c.to_simulated(Duration::from_secs(3)),
            Duration::from_secs(30)
        );
        assert_eq!(c.secs(5), Duration::from_millis(500));
        assert_eq!(c.timeout(Duration::from_secs(5)), MIN_REAL_TIMEOUT);
        assert_eq!(c.timeout(Duration::from_secs(50)), Duration::from_secs(5));
        assert_eq!(Clock::new(f64::NAN).scale(), 1.0);
        assert_eq!(Clock::new(1e9).scale(), 1000.0);
    }

    #[tokio::test(start_paused = true)]
    async fn sleeps_scaled_time() {
        let c = Clock::new(60.0);
        let t = tokio::time::Instant::now();
        c.sleep(Duration::from_secs(300)).await;
        assert_eq!(t.elapsed(), Duration::from_secs(5));
    }
}

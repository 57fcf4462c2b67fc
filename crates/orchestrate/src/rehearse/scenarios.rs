//! The scenario matrix: what each scenario rolls out and what it must show.

/// One scenario of the matrix.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    /// Name (`--scenario`).
    pub name: &'static str,
    /// What it shows.
    pub about: &'static str,
    /// Whether the probe must pass.
    pub expect_pass: bool,
    /// Capacity provider managed draining.
    pub managed_draining: bool,
    /// `MinHealthyPercentage`.
    pub min_healthy: i32,
    /// `MaxHealthyPercentage`.
    pub max_healthy: i32,
    /// The rollout.
    pub kind: Kind,
    /// Target groups' deregistration delay (simulated seconds) instead of the stack's.
    pub deregistration_delay: Option<u32>,
    /// Slow requests (`/delay/200`, 50/s) in flight the whole time, measured by a second probe.
    pub slow_requests: bool,
    /// The application's drain delay (`DRAIN_DELAY_SECONDS`) instead of the rehearsal's 1 s.
    pub drain_delay: Option<&'static str>,
}

/// The image label through which an image says which of the project server's rehearsal knobs
/// it honours, space-separated (the project's `Dockerfile` sets it): a scenario whose one
/// variable is such a knob runs on a Docker image only when the image lists it.
pub const KNOBS_LABEL: &str = "dev.ecs-zdt.rehearsal-knobs";

/// The drain delay knob (`refresh-short-dereg-delay-no-drain` sets it to 0).
pub(super) const KNOB_DRAIN_DELAY: &str = "DRAIN_DELAY_SECONDS";
/// The broken release's knob (`PAGE_STATUS=500`: `/` fails while `/ready` passes).
pub(super) const KNOB_PAGE_STATUS: &str = "PAGE_STATUS";
/// The slow requests' route (`/delay/{ms}`).
pub(super) const KNOB_DELAY_ROUTE: &str = "/delay/{ms}";

impl Scenario {
    /// What of the project's server this scenario relies on beyond the infrastructure: the
    /// knobs its variable (or its load) needs, which another application may not have.
    pub fn knobs(&self) -> Vec<&'static str> {
        let mut knobs = Vec::new();
        if self.drain_delay.is_some() {
            knobs.push(KNOB_DRAIN_DELAY);
        }
        if self.slow_requests {
            knobs.push(KNOB_DELAY_ROUTE);
        }
        if matches!(self.kind, Kind::Deploy { broken: true, .. }) {
            knobs.push(KNOB_PAGE_STATUS);
        }
        knobs
    }
}

/// What a scenario rolls out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An instance refresh to a new launch template version (a new AMI).
    Refresh,
    /// A CodeDeploy blue/green release of a new task definition revision.
    Deploy {
        /// The release answers 500 on `/` while its `/ready` passes.
        broken: bool,
        /// The AppSpec's `AfterAllowTestTraffic` hook validates the test listener.
        validate: bool,
    },
}

/// The first refresh, as production runs it: managed draining on, minimum healthy 90 %, the
/// stack's deregistration delay, an application that drains. Every other scenario is written
/// as a twin of one before it with its changed fields named, so a negative control shows the one
/// protection it removes (and `expect_pass: false`).
const REFRESH: Scenario = Scenario {
    name: "refresh",
    about: "instance refresh to a new launch template version, managed draining on",
    expect_pass: true,
    managed_draining: true,
    min_healthy: 90,
    max_healthy: 100,
    kind: Kind::Refresh,
    deregistration_delay: None,
    slow_requests: false,
    drain_delay: None,
};

const SLOW_REQUESTS: Scenario = Scenario {
    name: "refresh-slow-requests",
    about: "the first refresh with slow requests (200 ms) in flight the whole time: the deregistration delay lets them finish",
    slow_requests: true,
    ..REFRESH
};

const SHORT_DEREG_DELAY: Scenario = Scenario {
    name: "refresh-short-dereg-delay",
    about: "the first refresh with a deregistration delay (2 s) shorter than the load balancer's propagation lag (5 s): the application's drain delay covers the rest",
    deregistration_delay: Some(2),
    ..REFRESH
};

const CANARY: Scenario = Scenario {
    name: "bluegreen-canary",
    about: "blue/green release v1 -> v2 through CodeDeploy: canary 10 %, then the rest; test traffic validated first",
    kind: Kind::Deploy {
        broken: false,
        validate: true,
    },
    ..REFRESH
};

const BROKEN_VALIDATED: Scenario = Scenario {
    name: "bluegreen-broken-validated",
    about: "broken release v3 (/ready passes, / answers 500) caught on the test listener: rolled back before production sees it",
    kind: Kind::Deploy {
        broken: true,
        validate: true,
    },
    ..CANARY
};

/// The matrix.
pub const SCENARIOS: &[Scenario] = &[
    REFRESH,
    Scenario {
        name: "refresh-max-healthy-200",
        about: "the same refresh launching every replacement first (min healthy 100 %, max healthy 200 %)",
        min_healthy: 100,
        max_healthy: 200,
        ..REFRESH
    },
    Scenario {
        name: "refresh-no-managed-draining",
        about: "negative control: the first refresh with managed draining off (instances die with their tasks)",
        expect_pass: false,
        managed_draining: false,
        ..REFRESH
    },
    SLOW_REQUESTS,
    Scenario {
        name: "refresh-zero-dereg-delay",
        about: "negative control: the same with a deregistration delay of 0 (the load balancer cuts requests in flight)",
        expect_pass: false,
        deregistration_delay: Some(0),
        ..SLOW_REQUESTS
    },
    SHORT_DEREG_DELAY,
    Scenario {
        name: "refresh-short-dereg-delay-no-drain",
        about: "negative control: the same with an application that does not drain (DRAIN_DELAY_SECONDS=0): it stops listening while the load balancer still routes to it",
        expect_pass: false,
        drain_delay: Some("0"),
        ..SHORT_DEREG_DELAY
    },
    CANARY,
    BROKEN_VALIDATED,
    Scenario {
        name: "bluegreen-broken-no-validation",
        about: "negative control: the same broken release without test-traffic validation (production sees v3 until the gate stops it)",
        expect_pass: false,
        kind: Kind::Deploy {
            broken: true,
            validate: false,
        },
        ..BROKEN_VALIDATED
    },
];

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// How many of the fields that set a scenario up (all but its name, text and expectation)
    /// differ between two scenarios.
    fn fields_changed(a: &Scenario, b: &Scenario) -> usize {
        [
            a.managed_draining != b.managed_draining,
            a.min_healthy != b.min_healthy,
            a.max_healthy != b.max_healthy,
            a.kind != b.kind,
            a.deregistration_delay != b.deregistration_delay,
            a.slow_requests != b.slow_requests,
            a.drain_delay != b.drain_delay,
        ]
        .into_iter()
        .filter(|changed| *changed)
        .count()
    }

    #[test]
    fn every_negative_control_is_a_passing_scenario_with_exactly_one_field_changed() {
        let negatives: Vec<&Scenario> = SCENARIOS.iter().filter(|s| !s.expect_pass).collect();
        assert!(negatives.len() >= 4, "{negatives:?}");
        for neg in negatives {
            let twins: Vec<&str> = SCENARIOS
                .iter()
                .filter(|p| p.expect_pass)
                .filter(|p| fields_changed(p, neg) == 1)
                .map(|p| p.name)
                .collect();
            assert!(
                !twins.is_empty(),
                "negative control {} is no passing scenario with one field changed",
                neg.name
            );
        }
        let mut names: Vec<&str> = SCENARIOS.iter().map(|s| s.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), SCENARIOS.len(), "scenario names repeat");
    }
}

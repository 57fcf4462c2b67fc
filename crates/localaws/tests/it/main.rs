//! localaws over real processes and real traffic, measured by the probe: spreading load,
//! draining (with its negative controls), weighted shifts, health checks and fail-open, the
//! load balancer's own errors, a cutover before the new targets are healthy, HTTPS listeners,
//! and never leaving an orphan process.

#![allow(clippy::unwrap_used)]
// Tests read as scripts of one behaviour; their length is not a function to split.
#![allow(clippy::too_many_lines)]

mod architecture; // the layer rules, read from src/
mod codedeploy; // CodeDeploy blue/green end to end, rollbacks, alarms, hooks
mod conformance; // the API against localaws and, where it runs, LocalStack
mod docker; // tasks as containers of the project's image; none outlives localaws
mod health; // health checks: thresholds, fail-open, new targets waiting their turn
mod https; // HTTPS listeners and the CA localaws writes
mod input; // bad input: a clear error, never a panic
mod process; // the binary's CLI; no task outlives it
mod props; // property tests of every parser of untrusted input
mod refresh; // instance refresh end to end, with its negative controls
mod rolling; // ECS rolling deployments: the circuit breaker, with its negative control
mod sdk; // every operation through the official SDK clients
mod slow; // slow and idle clients against a listener
mod slowstart; // an application slow to start, three ways a rollout loses requests to it
mod traffic; // traffic while the data plane changes underneath it
mod util; // a small stack on real processes, the probe, misbehaving targets

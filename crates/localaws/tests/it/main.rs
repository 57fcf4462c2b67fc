//! localaws over real processes and real traffic, measured by the probe: spreading load,
//! draining (with its negative controls), weighted shifts, health checks and fail-open, the
//! load balancer's own errors, a cutover before the new targets are healthy, HTTPS listeners,
//! and never leaving an orphan process.

#![allow(clippy::unwrap_used)]

mod codedeploy;
mod conformance;
mod health;
mod https;
mod input;
mod process;
mod props;
mod refresh;
mod sdk;
mod slow;
mod slowstart;
mod traffic;
mod util;

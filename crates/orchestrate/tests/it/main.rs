//! orchestrate preflight: the project's own Terraform, task definition and AppSpec read with
//! their modules resolved and held to the zero-downtime invariants; the original project's flawed
//! configuration and a minimal fixture per hazard, each beside its fixed twin; the CLI's exit
//! codes and JSON report.

#![allow(clippy::unwrap_used)]

mod cli;
mod codedeploy;
mod hazards;
mod iam;
mod rollout;
mod terraform;
mod tfstack;
mod util;

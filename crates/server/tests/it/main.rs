//! The `server` binary over real sockets and real processes: routes, headers, robustness,
//! configuration, the drain on SIGTERM (with its negative control), and the container image.

#![allow(clippy::unwrap_used)]

mod container;
mod drain;
mod http;
mod util;

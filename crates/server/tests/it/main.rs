//! The `server` binary over real sockets and real processes: routes, headers, robustness,
//! configuration, the drain on SIGTERM (with its negative control), and the container image.

#![allow(clippy::unwrap_used)]

mod container; // the container image: small, and `docker stop` drains
mod drain; // the drain on SIGTERM, with its negative controls
mod http; // routes, headers, robustness, configuration
mod util; // the real `server` binary spawned, HTTP/1.1 over real sockets

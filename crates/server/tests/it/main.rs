//! The `server` binary over real sockets and real processes: routes, headers, robustness,
//! configuration, the drain on SIGTERM (with its negative control), and the container image.

#![allow(clippy::unwrap_used)]
// Tests read as scripts of one behaviour; their length is not a function to split.
#![allow(clippy::too_many_lines)]

mod container; // the container image: small, and `docker stop` drains
mod drain; // the drain on SIGTERM, with its negative controls
mod http; // routes, headers, robustness, configuration
mod util; // the real `server` binary spawned, HTTP/1.1 over real sockets

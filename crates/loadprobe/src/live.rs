//! The live view of a running probe, for progress lines and abort decisions.

use std::time::Duration;

use serde::Serialize;

use crate::error::ErrorKind;

/// A cheap snapshot of a running probe, published at least once per interval and at once when
/// an outage opens.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LiveState {
    /// Time since the probe's start.
    pub elapsed: Duration,
    /// Requests completed so far.
    pub requests: u64,
    /// Of which succeeded.
    pub ok: u64,
    /// Of which failed.
    pub errors: u64,
    /// Requests completed in the last interval (wall clock).
    pub requests_last_interval: u64,
    /// Failures completed in the last interval (wall clock).
    pub errors_last_interval: u64,
    /// The outage going on now, if any.
    pub outage: Option<LiveOutage>,
    /// The kind of the most recent failure.
    #[serde(serialize_with = "kind_key")]
    pub last_error: Option<ErrorKind>,
    /// The probe has finished; this is the final state.
    pub finished: bool,
}

/// An outage that has not ended yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LiveOutage {
    /// Intended start of its first failed request, ms since the probe's start.
    pub start_ms: u64,
    /// Failed requests so far.
    pub errors: u64,
}

fn kind_key<S: serde::Serializer>(k: &Option<ErrorKind>, s: S) -> Result<S::Ok, S::Error> {
    match k {
        Some(k) => s.serialize_some(&k.key()),
        None => s.serialize_none(),
    }
}

//! # loadprobe: prove zero downtime request by request
//!
//! An open-loop HTTP load probe. It sends requests on a fixed schedule, whatever the target
//! does, measures each request's latency from its *intended* start (so a stalled target shows up
//! as latency, not as silently fewer requests: no coordinated omission), and records every
//! result on a timeline:
//!
//! ```text
//! schedule ──jobs──> senders (one task per connection) ──samples──> recorder ──> Report
//! (thread, i/rate)   keep-alive or new connection     (channel)   HdrHistograms, intervals,
//!                    deadline = intended + timeout                outages, versions, events
//! ```
//!
//! - **schedule** ([`Rate::PerSecond`]): request `i` is due at `start + i / rate`; a dedicated
//!   thread dispatches it to whichever connection is idle. A busy connection never delays the
//!   others; when all are busy the request waits and the wait is part of its latency
//!   (`pool_exhausted` counts how often). [`Rate::Max`] is closed loop, for benchmarks only.
//! - **senders**: lean HTTP/1.1 connections (pre-serialized `GET` with any extra
//!   [`RequestHeader`]s, `httparse`), `TCP_NODELAY`, bounded by `connections`; `https://` over
//!   rustls ([`TlsOptions`]: system roots, a private CA, SNI, or no verification, reported
//!   loudly); in [`ConnectionMode::NewConnection`] each request opens (and closes) its own
//!   connection, with its own handshake. They run on threads of their own, each a
//!   single-threaded runtime with its share of the connections (closed loop: one per core, as
//!   wrk; open loop: one per 10,000 requests/s, the recorder on the first, so that handing over
//!   a result wakes no other thread).
//! - **recorder**: the only consumer of results. HdrHistograms (µs, 3 significant digits) for
//!   the run and per interval, errors by [`ErrorKind`] (load balancer vs target for HTTP
//!   errors), counts by `x-app-version` / `x-served-by` per interval, [`Outage`] windows (maximal
//!   runs of failed requests by intended start), [`Incident`]s (failures closer than the merge
//!   gap, default one interval, with their requests, error rate, kinds, the task they are
//!   attributed to and the versions and tasks answering around them) and the longest gap
//!   between successful responses. A request handed out without exactly one result is a probe
//!   fault ([`Verdict::Fault`], exit 2), never a pass. Memory stays flat: nothing per request
//!   is kept, full per-interval histograms go to the HDR interval log on disk.
//! - **verdict**: [`Slo`] (zero errors by default, latency bounds, longest gap); its reasons
//!   name the incidents behind a breach.
//! - **reports**: [`Report`] as text, JSON, Markdown, self-contained HTML, each leading with the
//!   incidents; which tasks served when ([`TaskSummary`], per-interval `served_by`, lanes in the
//!   HTML) and the latency percentile distribution ([`PercentilePoint`], plotted in the HTML);
//!   [`merge`] combines several probes.
//!
//! ## Library use
//!
//! ```no_run
//! # async fn demo() -> Result<(), loadprobe::ProbeError> {
//! use std::time::Duration;
//! use loadprobe::{Probe, ProbeConfig, Rate};
//!
//! let mut cfg = ProbeConfig::new("http://127.0.0.1:8080/".parse().expect("valid URL"));
//! cfg.rate = Rate::PerSecond(200.0);
//! cfg.duration = Duration::from_secs(60);
//! cfg.slo.max_p99 = Some(Duration::from_millis(250));
//! let probe = Probe::start(cfg)?;
//! probe.mark("instance i-1 draining");
//! let mut live = probe.watch();
//! // abort decisions: the state is published at least once per interval
//! if live.wait_for(|s| s.outage.is_some() || s.finished).await.is_ok() {
//!     probe.stop();
//! }
//! let report = probe.finish().await?;
//! println!("{}", report.summary());
//! # Ok(())
//! # }
//! ```
//!
//! Timeline convention: every `*_ms` in a report is milliseconds since the probe's start (the
//! first intended send); `started_at` / `started_at_unix_ms` anchor it to the wall clock.

#[doc(hidden)]
pub mod bench;
mod cli;
mod config;
mod error;
mod events;
mod hdrlog;
mod histo;
mod incident;
mod live;
mod merge;
mod outage;
mod probe;
mod progress;
mod recorder;
mod report;
mod report_html;
mod report_md;
mod schedule;
mod sender;
mod target;
mod tls;
mod verdict;
mod wire;

pub use cli::{Cli, Command, MergeArgs, Outputs, RequestArgs, RunArgs, run_cli};
pub use config::{
    ConnectionMode, LbMarker, ProbeConfig, Rate, RequestHeader, Slo, StatusSet, TlsOptions,
};
pub use error::{ErrorKind, ProbeError};
pub use histo::{PercentilePoint, Percentiles};
pub use incident::Incident;
pub use live::{LiveOutage, LiveState};
pub use merge::{MergeError, merge};
pub use outage::Outage;
pub use probe::{Marker, Probe, StopHandle, run};
pub use report::{
    ConfigSummary, ErrorSummary, Event, Interval, MAX_TASKS, OTHER_TASKS, Report, TaskSummary,
    TlsSummary,
};
pub use verdict::{SloSummary, Verdict};

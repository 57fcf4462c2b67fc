//! loadprobe
mod config;
mod error;
mod hdrlog;
mod histo;
mod live;
mod outage;
mod probe;
mod recorder;
mod report;
mod report_html;
mod report_md;
mod schedule;
mod sender;
mod target;
mod verdict;

pub use config::{ConnectionMode, LbMarker, ProbeConfig, Rate, Slo, StatusSet};
pub use error::{ErrorKind, ProbeError};
pub use histo::Percentiles;
pub use live::{LiveOutage, LiveState};
pub use outage::Outage;
pub use probe::{Marker, Probe, run};
pub use report::{ConfigSummary, ErrorSummary, Event, Interval, Report};
pub use verdict::{SloSummary, Verdict};

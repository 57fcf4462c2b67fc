//! The HdrHistogram interval log (the format of Java's `HistogramLogWriter`), streamed to disk
//! as intervals close so that an interrupted run still leaves its measurements behind.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

use hdrhistogram::Histogram;
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder;

use crate::error::ProbeError;

/// An open interval log. Values (and the max column) are microseconds.
pub(crate) struct HdrLog {
    out: BufWriter<File>,
    serializer: V2DeflateSerializer,
}

impl HdrLog {
    /// Creates (truncates) the file; fails before any traffic when the path is not writable.
    pub(crate) fn create(path: &Path) -> Result<HdrLog, ProbeError> {
        let file = File::create(path).map_err(|source| ProbeError::HdrLog {
            path: path.to_owned(),
            source,
        })?;
        Ok(HdrLog {
            out: BufWriter::new(file),
            serializer: V2DeflateSerializer::new(),
        })
    }

    /// Writes the header: StartTime and BaseTime are the probe's start, so interval timestamps
    /// are seconds on the probe's timeline.
    pub(crate) fn begin(&mut self, start: SystemTime, target: &str) -> io::Result<()> {
        IntervalLogWriterBuilder::new()
            .add_comment(&format!(
                "[loadprobe {} interval log of {target}]",
                env!("CARGO_PKG_VERSION")
            ))
            .add_comment(
                "[Histogram values are latencies in microseconds, from the intended start]",
            )
            .with_start_time(start)
            .with_base_time(start)
            .begin_log_with(&mut self.out, &mut self.serializer)?;
        writeln!(
            self.out,
            "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\""
        )?;
        self.out.flush()
    }

    /// Appends one interval and flushes it to the file.
    pub(crate) fn write(
        &mut self,
        hist: &Histogram<u32>,
        start: Duration,
        length: Duration,
    ) -> io::Result<()> {
        // A builder without headers writes nothing but the histogram line.
        let mut w =
            IntervalLogWriterBuilder::new().begin_log_with(&mut self.out, &mut self.serializer)?;
        w.write_histogram(hist, start, length, None)
            .map_err(|e| io::Error::other(e.to_string()))?;
        self.out.flush()
    }
}

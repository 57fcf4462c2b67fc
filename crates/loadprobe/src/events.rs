//! Event markers read line by line from a file or a FIFO (`--events PATH`).
//!
//! Each non-empty line is one event, stamped when it is read: `instance i-1 draining`. A line may
//! carry its own time as a leading RFC 3339 timestamp: `2025-01-31T10:00:00.250Z traffic 10%
//! green`. Lines starting with `#` are ignored. A regular file is followed like `tail -f` (lines
//! appended during the run are picked up); a FIFO is read as writers come and go.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncRead, BufReader};

use crate::probe::Marker;

/// How often a regular file is polled for new lines once its end was reached.
const FOLLOW_POLL: Duration = Duration::from_millis(20);

/// An opened source of events.
pub(crate) struct EventSource {
    path: PathBuf,
    reader: Box<dyn AsyncRead + Send + Unpin>,
}

impl EventSource {
    /// Opens `path` without blocking (a FIFO without a writer is fine).
    pub(crate) fn open(path: &Path) -> io::Result<EventSource> {
        use std::os::unix::fs::FileTypeExt as _;
        let meta = std::fs::metadata(path)?;
        let reader: Box<dyn AsyncRead + Send + Unpin> = if meta.file_type().is_fifo() {
            // Read-write keeps the FIFO open across writers: no end-of-file when one closes.
            Box::new(
                tokio::net::unix::pipe::OpenOptions::new()
                    .read_write(true)
                    .open_receiver(path)?,
            )
        } else if meta.is_file() {
            Box::new(tokio::fs::File::from_std(std::fs::File::open(path)?))
        } else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file or a FIFO",
            ));
        };
        Ok(EventSource {
            path: path.to_owned(),
            reader,
        })
    }

    /// Marks every line as an event until the task is dropped.
    pub(crate) async fn follow(self, marker: Marker) {
        let mut reader = BufReader::new(self.reader);
        let mut line = String::new();
        loop {
            match reader.read_line(&mut line).await {
                Ok(0) => tokio::time::sleep(FOLLOW_POLL).await,
                Ok(_) if line.ends_with('\n') => {
                    mark_line(&marker, &line);
                    line.clear();
                }
                Ok(_) => {} // a partial line at the end: wait for the rest
                Err(e) => {
                    marker.mark(format!("events source {} failed: {e}", self.path.display()));
                    return;
                }
            }
        }
    }
}

/// Marks one line: an optional leading RFC 3339 time, then the label.
pub(crate) fn mark_line(marker: &Marker, line: &str) {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return;
    }
    if let Some((first, rest)) = line.split_once(char::is_whitespace)
        && let Ok(at) = humantime::parse_rfc3339_weak(first)
        && !rest.trim().is_empty()
    {
        marker.mark_at(at, rest.trim());
        return;
    }
    marker.mark(line);
}

//! The live progress line: an indicatif bar when stderr is a terminal, a plain line every few
//! seconds otherwise, nothing with `--quiet`.

use std::io::IsTerminal as _;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::live::LiveState;

/// Plain log lines (not a terminal) come this often.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

fn describe(s: &LiveState) -> String {
    let mut line = format!(
        "req {} ok {} err {} | last interval {} req {} err",
        s.requests, s.ok, s.errors, s.requests_last_interval, s.errors_last_interval
    );
    if let Some(o) = s.outage {
        line.push_str(&format!(
            " | OUTAGE since {:.1} s, {} errors",
            o.start_ms as f64 / 1000.0,
            o.errors
        ));
    } else if let Some(k) = s.last_error {
        line.push_str(&format!(" | last error {}", k.key()));
    }
    line
}

/// Shows progress until the probe's live state says it finished (or the task is aborted).
pub(crate) fn spawn(
    mut rx: watch::Receiver<LiveState>,
    duration: Duration,
    quiet: bool,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        if quiet {
            return;
        }
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(
                Some(duration.as_millis() as u64),
                ProgressDrawTarget::stderr_with_hz(10),
            );
            let style = ProgressStyle::with_template("{spinner} {elapsed:>4} [{bar:24}] {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
            bar.set_style(style);
            while rx.changed().await.is_ok() {
                let s = rx.borrow_and_update().clone();
                bar.set_position(s.elapsed.as_millis() as u64);
                bar.set_message(describe(&s));
                if s.finished {
                    break;
                }
            }
            bar.finish_and_clear();
        } else {
            let mut next = PLAIN_EVERY;
            while rx.changed().await.is_ok() {
                let s = rx.borrow_and_update().clone();
                if s.finished {
                    break;
                }
                if s.elapsed >= next {
                    next = s.elapsed + PLAIN_EVERY;
                    eprintln!(
                        "loadprobe: {:.0} s {}",
                        s.elapsed.as_secs_f64(),
                        describe(&s)
                    );
                }
            }
        }
    })
}

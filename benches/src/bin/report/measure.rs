//! The plumbing of a measurement: processes started and stopped, ports waited on, and the load
//! generators (wrk, oha, `loadprobe`) run and read.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A child process, stopped (SIGTERM, then SIGKILL after 3 s) when dropped.
#[derive(Debug)]
pub(crate) struct Proc {
    name: String,
    child: Child,
}

impl Proc {
    /// Starts `cmd` with its output discarded unless `cmd` says otherwise.
    pub(crate) fn spawn(name: &str, cmd: &mut Command) -> Result<Self, String> {
        let child = cmd
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        Ok(Self {
            name: name.into(),
            child,
        })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Still running.
    pub(crate) fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for it to exit by itself.
    pub(crate) fn wait(mut self) -> Result<std::process::ExitStatus, String> {
        self.child
            .wait()
            .map_err(|e| format!("{}: cannot wait: {e}", self.name))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if !self.running() {
            return;
        }
        // SIGTERM first: nginx's master stops its workers only then.
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while self.running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port.
pub(crate) fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// Waits until something accepts connections on 127.0.0.1:`port`.
pub(crate) fn wait_up(name: &str, port: u16) -> Result<(), String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!("{name} never listened on {addr}"))
}

/// Resident set size of a process, KiB.
pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Median of the measured values (`None` when there is none).
pub(crate) fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[(v.len() - 1) / 2])
}

/// What a closed-loop load generator achieved.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Load {
    pub(crate) rps: f64,
    /// Socket errors and non-2xx/3xx responses it reported.
    pub(crate) errors: u64,
}

fn run(tool: &str, cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {tool}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{tool} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The number after `key` on the line that starts with it (`Requests/sec:   1234.5`).
fn after(text: &str, key: &str) -> Option<f64> {
    text.lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.trim_end_matches('%').parse().ok())
}

/// Reads wrk's summary.
pub(crate) fn parse_wrk(out: &str) -> Option<Load> {
    let rps = after(out, "Requests/sec:")?;
    let non_2xx = after(out, "Non-2xx or 3xx responses:").unwrap_or(0.0);
    // Socket errors: connect 0, read 0, write 0, timeout 0
    let socket: u64 = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Socket errors:"))
        .map(|rest| {
            rest.split(',')
                .filter_map(|part| part.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    Some(Load {
        rps,
        errors: socket + non_2xx as u64,
    })
}

/// `wrk -tT -cC -dDs URL`.
pub(crate) fn wrk(threads: usize, conns: usize, secs: u64, url: &str) -> Result<Load, String> {
    let out = run(
        "wrk",
        Command::new("wrk")
            .arg(format!("-t{threads}"))
            .arg(format!("-c{conns}"))
            .arg(format!("-d{secs}s"))
            .arg(url),
    )?;
    parse_wrk(&out).ok_or_else(|| format!("wrk printed no Requests/sec: {out}"))
}

/// Reads oha's text summary.
pub(crate) fn parse_oha(out: &str) -> Option<Load> {
    let rps = after(out, "Requests/sec:")?;
    let success = after(out, "Success rate:").unwrap_or(100.0);
    Some(Load {
        rps,
        // The summary gives a rate, not a count: any failure counts as one.
        errors: u64::from(success < 100.0),
    })
}

/// `oha -z Ds -c C --no-tui URL` (keep-alive).
pub(crate) fn oha(conns: usize, secs: u64, url: &str) -> Result<Load, String> {
    let out = run(
        "oha",
        Command::new("oha")
            .arg("-z")
            .arg(format!("{secs}s"))
            .arg("-c")
            .arg(conns.to_string())
            .arg("--no-tui")
            .arg(url),
    )?;
    parse_oha(&out).ok_or_else(|| format!("oha printed no Requests/sec: {out}"))
}

/// A `loadprobe` run: its report, and its RSS sampled once a second when asked.
#[derive(Debug)]
pub(crate) struct ProbeRun {
    pub(crate) report: loadprobe::Report,
    pub(crate) rss_kib: Vec<u64>,
}

/// Where the release binaries are, and a scratch directory.
#[derive(Debug)]
pub(crate) struct Bins {
    pub(crate) dir: PathBuf,
    pub(crate) work: PathBuf,
}

impl Bins {
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Runs `loadprobe URL --rate RATE --connections C --duration Ds --json ...`.
    pub(crate) fn probe(
        &self,
        url: &str,
        rate: &str,
        conns: usize,
        secs: u64,
        sample_rss: bool,
    ) -> Result<ProbeRun, String> {
        let json = self.work.join("probe.json");
        let _ = std::fs::remove_file(&json);
        let errors = self.work.join("probe.stderr");
        let stderr = std::fs::File::create(&errors)
            .map_err(|e| format!("cannot create {}: {e}", errors.display()))?;
        let mut p = Proc::spawn(
            "loadprobe",
            Command::new(self.path("loadprobe"))
                .arg(url)
                .args(["--quiet", "--rate", rate])
                .arg("--connections")
                .arg(conns.to_string())
                .arg("--duration")
                .arg(format!("{secs}s"))
                .arg("--json")
                .arg(&json)
                .stdout(Stdio::null())
                .stderr(stderr),
        )?;
        let mut rss = Vec::new();
        if sample_rss {
            let pid = p.pid();
            let started = Instant::now();
            let mut next = started + Duration::from_secs(1);
            while p.running() {
                let now = Instant::now();
                if now >= next {
                    if let Some(kib) = rss_kib(pid) {
                        rss.push(kib);
                    }
                    next += Duration::from_secs(1);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let status = p.wait()?;
        read_report(&json, status)
            .map(|report| ProbeRun {
                report,
                rss_kib: rss,
            })
            .map_err(|e| {
                let said = std::fs::read_to_string(&errors).unwrap_or_default();
                format!("{e}; it said: {}", said.trim())
            })
    }
}

/// The probe's JSON report: exit 0 (pass) and 1 (an SLO breached: failed requests are shown,
/// not hidden) both wrote one; a fault (2) writes one too, the checks judge it.
fn read_report(json: &Path, status: std::process::ExitStatus) -> Result<loadprobe::Report, String> {
    let text = std::fs::read_to_string(json).map_err(|e| {
        format!(
            "loadprobe ({status}) wrote no report {}: {e}",
            json.display()
        )
    })?;
    serde_json::from_str(&text).map_err(|e| format!("loadprobe's report does not parse: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_and_oha_summaries() {
        let wrk = "Running 2s test @ http://127.0.0.1:1/\n  1 threads and 32 connections\n  Socket errors: connect 0, read 2, write 0, timeout 1\n  Non-2xx or 3xx responses: 4\nRequests/sec:  51234.56\nTransfer/sec:      4.10MB\n";
        let l = parse_wrk(wrk).expect("parsed");
        assert!((l.rps - 51234.56).abs() < 1e-6);
        assert_eq!(l.errors, 7);
        let oha = "Summary:\n  Success rate:\t100.00%\n  Total:\t2.0003 secs\n  Requests/sec:\t40000.5000\n";
        let l = parse_oha(oha).expect("parsed");
        assert_eq!((l.rps, l.errors), (40000.5, 0));
        assert!(parse_wrk("nothing").is_none());
    }

    #[test]
    fn median_of_rounds() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(
            median(&[4.0, 1.0]),
            Some(1.0),
            "the lower middle of an even count"
        );
        assert_eq!(median(&[]), None);
    }
}

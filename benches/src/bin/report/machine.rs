//! The machine the figures come from, and the peer tools found on it.

use std::process::Command;

use crate::model::Machine;

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Cores, CPU model, kernel, OS, memory and the load when the run started.
pub(crate) fn describe() -> Machine {
    let cpuinfo = read("/proc/cpuinfo");
    let field = |text: &str, key: &str| {
        text.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_once([':', '=']))
            .map(|(_, v)| v.trim().trim_matches('"').to_owned())
    };
    let memory_kib: u64 = field(&read("/proc/meminfo"), "MemTotal")
        .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0);
    Machine {
        cores: std::thread::available_parallelism().map_or(1, usize::from),
        cpu: field(&cpuinfo, "model name").unwrap_or_else(|| "unknown".into()),
        kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
        os: field(&read("/etc/os-release"), "PRETTY_NAME").unwrap_or_else(|| "unknown".into()),
        memory_mib: memory_kib / 1024,
        load_at_start: read("/proc/loadavg")
            .split_whitespace()
            .next()
            .and_then(|l| l.parse().ok())
            .unwrap_or(0.0),
    }
}

/// The first line a tool prints about its version (stdout or stderr), or `None` when it is
/// not installed.
pub(crate) fn version(tool: &str, flag: &str) -> Option<String> {
    let out = Command::new(tool).arg(flag).output().ok()?;
    let text = if out.stdout.is_empty() {
        out.stderr
    } else {
        out.stdout
    };
    let text = String::from_utf8_lossy(&text);
    let first = text.lines().next().unwrap_or("");
    // `wrk 4.1.0 [epoll] Copyright ...`, `nginx version: nginx/1.22.1`: the version only.
    let line = first
        .split(" [")
        .next()
        .unwrap_or("")
        .trim_start_matches("nginx version: ")
        .trim()
        .to_owned();
    Some(if line.is_empty() {
        tool.to_owned()
    } else {
        line
    })
}

/// The commit checked out where the report runs, if it runs in a git checkout.
pub(crate) fn commit() -> Option<String> {
    let out = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !id.is_empty()).then_some(id)
}

/// The peers: wrk, oha, nginx, python3.
#[derive(Debug, Clone)]
pub(crate) struct Tools {
    pub(crate) wrk: Option<String>,
    pub(crate) oha: Option<String>,
    pub(crate) nginx: Option<String>,
    pub(crate) python: Option<String>,
}

impl Tools {
    pub(crate) fn find() -> Self {
        Self {
            // `wrk -v` prints its version and exits 1; the line is what matters.
            wrk: version("wrk", "-v"),
            oha: version("oha", "--version"),
            nginx: version("nginx", "-v"),
            python: version("python3", "--version"),
        }
    }

    pub(crate) fn list(&self) -> Vec<(String, String)> {
        let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "not installed".into());
        vec![
            ("wrk".into(), show(&self.wrk)),
            ("oha".into(), show(&self.oha)),
            ("nginx".into(), show(&self.nginx)),
            ("python3".into(), show(&self.python)),
        ]
    }
}

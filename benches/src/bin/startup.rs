//! Measures how long `server` takes from exec to `/ready` answering 200, and its idle RSS.
//!
//! Usage: `startup PATH_TO_SERVER [RUNS]` (default 20 runs). Polls `/ready` every 0.5 ms over a
//! fresh connection; prints one line per run and a summary (median, max), then the idle RSS of
//! the last run after it served one request and sat idle for a second.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn ready(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(50)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    if s.write_all(b"GET /ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 12];
    s.read_exact(&mut buf).is_ok() && &buf == b"HTTP/1.1 200"
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let server = args.next().ok_or("usage: startup PATH_TO_SERVER [RUNS]")?;
    let runs: usize = args.next().map_or(Ok(20), |r| r.parse())?;
    if runs == 0 {
        return Err("RUNS must be at least 1".into());
    }
    let mut times = Vec::with_capacity(runs);
    let mut last_rss = None;
    for run in 0..runs {
        let port = free_port()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let started = Instant::now();
        let mut child = Command::new(&server)
            .env("PORT", port.to_string())
            .env("BIND", "127.0.0.1")
            .env("LOG_FORMAT", "json")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let took = loop {
            if ready(addr) {
                break started.elapsed();
            }
            if started.elapsed() > Duration::from_secs(5) {
                let _ = child.kill();
                return Err("server not ready within 5 s".into());
            }
            std::thread::sleep(Duration::from_micros(500));
        };
        if run + 1 == runs {
            std::thread::sleep(Duration::from_secs(1));
            last_rss = rss_kib(child.id());
        }
        let _ = child.kill();
        let _ = child.wait();
        println!(
            "run {run:>2}: ready after {:.2} ms",
            took.as_secs_f64() * 1e3
        );
        times.push(took);
    }
    times.sort();
    let median = times[times.len() / 2];
    let max = times[times.len() - 1];
    println!(
        "exec -> /ready 200: median {:.2} ms, max {:.2} ms over {runs} runs",
        median.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3
    );
    if let Some(kib) = last_rss {
        println!("idle RSS: {:.1} MiB ({kib} KiB)", kib as f64 / 1024.0);
    }
    Ok(())
}

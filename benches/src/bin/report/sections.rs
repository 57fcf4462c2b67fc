//! The comparisons, one function each. Every one alternates its contenders round by round
//! against the same server processes, so drift on a shared machine hits all alike, and reports
//! medians over the rounds.

use std::fmt::Write as _;
use std::process::{Command, Stdio};

use crate::machine::Tools;
use crate::measure::{self, Bins, Load, Proc, median};
use crate::model::{Better, Section};

/// How long and how often.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    pub(crate) rounds: usize,
    /// Seconds per throughput or latency measurement.
    pub(crate) secs: u64,
    /// Seconds of the 5,000 req/s run (RSS compared at 10 s and at the end).
    pub(crate) fixed_secs: u64,
    /// Connections of every client.
    pub(crate) conns: usize,
}

impl Plan {
    pub(crate) fn full() -> Self {
        Self {
            rounds: 3,
            secs: 5,
            fixed_secs: 30,
            conns: 32,
        }
    }

    pub(crate) fn quick() -> Self {
        Self {
            rounds: 1,
            secs: 2,
            fixed_secs: 15,
            conns: 32,
        }
    }
}

/// What every comparison shares.
pub(crate) struct Bench<'a> {
    pub(crate) bins: &'a Bins,
    pub(crate) tools: &'a Tools,
    pub(crate) plan: Plan,
    /// `hello-hyper`, the minimal hyper server, serving for the whole run.
    pub(crate) hello: String,
}

fn rps_detail(l: &[Load]) -> String {
    let errors: u64 = l.iter().map(|l| l.errors).sum();
    let rounds: Vec<String> = l.iter().map(|l| format!("{:.0}", l.rps)).collect();
    format!("rounds {}; errors {errors}", rounds.join(" / "))
}

fn series(l: &[Load]) -> Vec<f64> {
    l.iter().map(|l| l.rps).collect()
}

fn rps(l: &[Load]) -> Option<f64> {
    median(&series(l))
}

/// The median over the rounds of `ours / peer` within each round: the two were measured a few
/// seconds apart, so the machine's drift cancels out of each ratio.
fn paired(ours: &[f64], peer: &[f64]) -> Option<f64> {
    if ours.len() != peer.len() {
        return None;
    }
    let ratios: Vec<f64> = ours
        .iter()
        .zip(peer)
        .filter(|(_, p)| **p > 0.0)
        .map(|(o, p)| o / p)
        .collect();
    median(&ratios)
}

/// The median over the rounds of `ours - base` within each round.
fn added(ours: &[f64], base: &[f64]) -> Option<f64> {
    if ours.len() != base.len() {
        return None;
    }
    median(
        &ours
            .iter()
            .zip(base)
            .map(|(o, b)| o - b)
            .collect::<Vec<_>>(),
    )
}

fn errors(l: &[Load]) -> u64 {
    l.iter().map(|l| l.errors).sum()
}

fn us(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.2} ms", v / 1000.0)
    } else {
        format!("{v:.0} µs")
    }
}

impl Bench<'_> {
    /// The closed-loop client for throughput comparisons: `wrk -t1` when installed, else the
    /// probe at `--rate max`.
    fn client(&self) -> &'static str {
        if self.tools.wrk.is_some() {
            "wrk -t1"
        } else {
            "loadprobe --rate max"
        }
    }

    fn throughput(&self, url: &str) -> Result<Load, String> {
        let p = self.plan;
        if self.tools.wrk.is_some() {
            measure::wrk(1, p.conns, p.secs, url)
        } else {
            let r = self.bins.probe(url, "max", p.conns, p.secs, false)?.report;
            Ok(Load {
                rps: r.achieved_rate,
                errors: r.errors.total,
            })
        }
    }

    /// `server` vs `hello-hyper` vs a Python `http.server` service.
    #[expect(
        clippy::too_many_lines,
        reason = "one benchmark section: setup, rounds alternating the contenders, the table"
    )]
    pub(crate) fn server(&self) -> Result<Section, String> {
        let p = self.plan;
        let port = measure::free_port()?;
        let _server = Proc::spawn(
            "server",
            Command::new(self.bins.path("server"))
                .env("PORT", port.to_string())
                .env("BIND", "127.0.0.1")
                .env("LOG_FORMAT", "json")
                .env("APP_VERSION", "bench")
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )?;
        measure::wait_up("server", port)?;
        let server = format!("http://127.0.0.1:{port}");
        let python = match self.tools.python {
            Some(_) => {
                let port = measure::free_port()?;
                let script = self.bins.work.join("python_service.py");
                std::fs::write(&script, PYTHON_SERVICE)
                    .map_err(|e| format!("cannot write {}: {e}", script.display()))?;
                let proc = Proc::spawn(
                    "python3",
                    Command::new("python3")
                        .arg(&script)
                        .arg(port.to_string())
                        .stdout(Stdio::null())
                        .stderr(Stdio::null()),
                )?;
                measure::wait_up("python3 http.server", port)?;
                Some((proc, format!("http://127.0.0.1:{port}/")))
            }
            None => None,
        };

        let (mut hello, mut page, mut health, mut py) = (vec![], vec![], vec![], vec![]);
        for round in 1..=p.rounds {
            hello.push(self.throughput(&self.hello)?);
            page.push(self.throughput(&format!("{server}/"))?);
            health.push(self.throughput(&format!("{server}/health"))?);
            if let Some((_, url)) = &python {
                py.push(self.throughput(url)?);
            }
            eprintln!(
                "  server round {round}: hello-hyper {:.0}, server / {:.0}, server /health {:.0}, python {} req/s",
                hello[round - 1].rps,
                page[round - 1].rps,
                health[round - 1].rps,
                py.last()
                    .map_or("-".into(), |l: &Load| format!("{:.0}", l.rps)),
            );
        }

        let mut s = Section::new(
            "server",
            "Server: `server` vs a minimal hyper hello vs Python `http.server`",
            format!(
                "{} -c{} for {} s against each, keep-alive, {} round(s) alternating the servers; median req/s, ratios the median of each round's ratio. `hello-hyper` answers 13 bytes from the same hyper 1 + tokio; `server` answers its HTML page (and `/health`) through its middleware; the Python service is `http.server.ThreadingHTTPServer` answering the same page with the same headers, as the original project's service ran.",
                self.client(),
                p.conns,
                p.secs,
                p.rounds
            ),
        );
        s.reference = Some("hello-hyper".into());
        let hs = series(&hello);
        let vs_hello = |l: &[Load]| paired(&series(l), &hs);
        s.row(
            "hello-hyper GET /",
            rps(&hello),
            "req/s",
            rps_detail(&hello),
            vs_hello(&hello),
        );
        s.row(
            "server GET / (page)",
            rps(&page),
            "req/s",
            rps_detail(&page),
            vs_hello(&page),
        );
        s.row(
            "server GET /health",
            rps(&health),
            "req/s",
            rps_detail(&health),
            vs_hello(&health),
        );
        if python.is_some() {
            s.row(
                "Python http.server GET /",
                rps(&py),
                "req/s",
                rps_detail(&py),
                vs_hello(&py),
            );
        } else {
            s.row(
                "Python http.server GET /",
                None,
                "req/s",
                "python3 not installed",
                None,
            );
            s.notes
                .push("python3 not installed: no Python comparison".into());
        }
        let page_ratio = s.ratio(
            "server_vs_hyper",
            "server GET / over hello-hyper (req/s)",
            vs_hello(&page),
            Better::Higher,
        );
        s.ratio(
            "server_health_vs_hyper",
            "server GET /health over hello-hyper (req/s)",
            vs_hello(&health),
            Better::Higher,
        );
        s.ratio(
            "server_vs_python",
            "server GET / over Python http.server (req/s)",
            paired(&series(&page), &series(&py)),
            Better::Higher,
        );
        s.at_least(
            "server ≥ 0.9× minimal hyper (GET /, the page)",
            page_ratio,
            0.9,
        );
        let failed = errors(&hello) + errors(&page) + errors(&health) + errors(&py);
        s.sanity(
            "no failed request (server comparison)",
            format!("{failed} failed"),
            failed == 0,
        );
        Ok(s)
    }

    /// `loadprobe --rate max` vs wrk -t1, wrk -t2 and oha, against `hello-hyper`.
    pub(crate) fn probe(&self) -> Result<Section, String> {
        let p = self.plan;
        let (mut w1, mut w2, mut oha, mut probe) = (vec![], vec![], vec![], vec![]);
        let (mut requests, mut missing, mut failed, mut faults) = (0u64, 0u64, 0u64, 0usize);
        for round in 1..=p.rounds {
            if self.tools.wrk.is_some() {
                w1.push(measure::wrk(1, p.conns, p.secs, &self.hello)?);
                w2.push(measure::wrk(2, p.conns, p.secs, &self.hello)?);
            }
            if self.tools.oha.is_some() {
                oha.push(measure::oha(p.conns, p.secs, &self.hello)?);
            }
            let r = self
                .bins
                .probe(&self.hello, "max", p.conns, p.secs, false)?
                .report;
            requests += r.requests;
            missing += r.missing_results;
            failed += r.errors.total;
            faults += usize::from(r.verdict == loadprobe::Verdict::Fault);
            probe.push(Load {
                rps: r.achieved_rate,
                errors: r.errors.total,
            });
            eprintln!(
                "  probe round {round}: wrk -t1 {}, wrk -t2 {}, oha {}, loadprobe {:.0} req/s ({} recorded)",
                w1.last()
                    .map_or("-".into(), |l: &Load| format!("{:.0}", l.rps)),
                w2.last()
                    .map_or("-".into(), |l: &Load| format!("{:.0}", l.rps)),
                oha.last()
                    .map_or("-".into(), |l: &Load| format!("{:.0}", l.rps)),
                r.achieved_rate,
                r.requests,
            );
        }
        let mut s = Section::new(
            "probe",
            "Probe: `loadprobe --rate max` vs wrk and oha",
            format!(
                "Each client -c{} keep-alive for {} s against `hello-hyper`, {} round(s) alternating the clients; median req/s, ratios the median of each round's ratio (\"the best wrk\" is the better of -t1 and -t2 in that round). The probe records every request (histograms, timeline, attribution); wrk and oha only count. Client and server share the machine's cores.",
                p.conns, p.secs, p.rounds
            ),
        );
        // The better wrk of each round.
        let best: Vec<f64> = w1.iter().zip(&w2).map(|(a, b)| a.rps.max(b.rps)).collect();
        let vs_best = |l: &[f64]| paired(l, &best);
        let ps = series(&probe);
        s.reference = Some("the better wrk of the round".into());
        if self.tools.wrk.is_some() {
            s.row(
                "wrk -t1",
                rps(&w1),
                "req/s",
                rps_detail(&w1),
                vs_best(&series(&w1)),
            );
            s.row(
                "wrk -t2",
                rps(&w2),
                "req/s",
                rps_detail(&w2),
                vs_best(&series(&w2)),
            );
        } else {
            s.row("wrk", None, "req/s", "not installed", None);
            s.notes
                .push("wrk not installed (apt-get install wrk): no wrk comparison".into());
        }
        if self.tools.oha.is_some() {
            s.row(
                "oha",
                rps(&oha),
                "req/s",
                rps_detail(&oha),
                vs_best(&series(&oha)),
            );
        } else {
            s.row("oha", None, "req/s", "not installed", None);
            s.notes
                .push("oha not installed (cargo install oha --locked): no oha comparison".into());
        }
        s.row(
            "loadprobe --rate max (records every request)",
            rps(&probe),
            "req/s",
            format!("{}; {requests} requests recorded", rps_detail(&probe)),
            vs_best(&ps),
        );
        let r1 = s.ratio(
            "probe_vs_wrk_t1",
            "loadprobe over wrk -t1 (req/s)",
            paired(&ps, &series(&w1)),
            Better::Higher,
        );
        let rb = s.ratio(
            "probe_vs_best_wrk",
            "loadprobe over the better wrk (req/s)",
            vs_best(&ps),
            Better::Higher,
        );
        s.ratio(
            "probe_vs_oha",
            "loadprobe over oha (req/s)",
            paired(&ps, &series(&oha)),
            Better::Higher,
        );
        s.at_least("probe ≥ 1.0× wrk -t1", r1, 1.0);
        s.at_least("probe ≥ 0.9× the best wrk", rb, 0.9);
        s.sanity(
            "every sample recorded at --rate max",
            format!("{requests} requests, {missing} without a result, {failed} failed, {faults} probe faults"),
            missing == 0 && failed == 0 && faults == 0,
        );
        Ok(s)
    }

    /// The `localaws` listener vs nginx as a keep-alive reverse proxy, in front of one `server`
    /// task; and the latency each adds at 1,000 req/s.
    #[expect(
        clippy::too_many_lines,
        reason = "one benchmark section: setup, rounds alternating the contenders, the table"
    )]
    pub(crate) fn proxy(&self) -> Result<Section, String> {
        let p = self.plan;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start a runtime: {e}"))?;
        let stack = localaws::Stack::parse(PROXY_STACK, "the proxy benchmark's stack")
            .map_err(|e| e.to_string())?;
        let mut options = localaws::Options::new(self.bins.work.join("localaws"));
        options.ephemeral_ports = true;
        options.server = Some((self.bins.path("server"), Vec::new()));
        let la = rt
            .block_on(localaws::Localaws::start(stack, options, 0))
            .map_err(|e| format!("localaws: {e}"))?;
        let within = la.ready_timeout();
        if !rt.block_on(la.wait_ready(within)) {
            return Err(format!("localaws's fleet was not ready within {within:?}"));
        }
        let listener = la
            .listener_url("production")
            .ok_or("localaws has no production listener")?;
        let task = la
            .plane()
            .task_list()
            .first()
            .map(|t| t.endpoint)
            .ok_or("localaws started no task")?;
        let direct = format!("http://{task}/");

        let nginx = match self.tools.nginx {
            Some(_) => {
                let port = measure::free_port()?;
                let dir = self.bins.work.join("nginx");
                std::fs::create_dir_all(dir.join("logs"))
                    .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                let conf = dir.join("nginx.conf");
                std::fs::write(&conf, nginx_conf(&dir, port, task))
                    .map_err(|e| format!("cannot write {}: {e}", conf.display()))?;
                let proc = Proc::spawn(
                    "nginx",
                    Command::new("nginx")
                        .arg("-p")
                        .arg(&dir)
                        .arg("-c")
                        .arg(&conf)
                        .stdout(Stdio::null())
                        .stderr(Stdio::null()),
                )?;
                measure::wait_up("nginx", port)?;
                Some((proc, format!("http://127.0.0.1:{port}/")))
            }
            None => None,
        };
        let nginx_url = nginx.as_ref().map(|(_, u)| u.as_str());

        let (mut t_direct, mut t_nginx, mut t_lb) = (vec![], vec![], vec![]);
        let mut lat: [Vec<(f64, f64)>; 3] = Default::default();
        let mut failed = 0u64;
        let rate = "1000";
        for round in 1..=p.rounds {
            t_direct.push(self.throughput(&direct)?);
            if let Some(u) = nginx_url {
                t_nginx.push(self.throughput(u)?);
            }
            t_lb.push(self.throughput(&listener)?);
            for (i, url) in [Some(direct.as_str()), nginx_url, Some(listener.as_str())]
                .into_iter()
                .enumerate()
            {
                let Some(url) = url else { continue };
                let r = self.bins.probe(url, rate, p.conns, p.secs, false)?.report;
                failed += r.errors.total + r.missing_results;
                lat[i].push((r.latency_us.p50 as f64, r.latency_us.p99 as f64));
            }
            eprintln!(
                "  proxy round {round}: direct {:.0}, nginx {}, listener {:.0} req/s",
                t_direct[round - 1].rps,
                t_nginx
                    .last()
                    .map_or("-".into(), |l: &Load| format!("{:.0}", l.rps)),
                t_lb[round - 1].rps,
            );
        }
        let had_nginx = nginx.is_some();
        drop(nginx);
        rt.block_on(la.shutdown());

        let p50s = |i: usize| lat[i].iter().map(|l| l.0).collect::<Vec<_>>();
        let p99s = |i: usize| lat[i].iter().map(|l| l.1).collect::<Vec<_>>();
        let latency = |i: usize| match (median(&p50s(i)), median(&p99s(i))) {
            (Some(a), Some(b)) => format!("at {rate} req/s: p50 {}, p99 {}", us(a), us(b)),
            _ => String::new(),
        };
        let mut s = Section::new(
            "proxy",
            "Proxy: the `localaws` listener vs nginx (keep-alive reverse proxy)",
            format!(
                "One `server` task started by localaws. Throughput: {} -c{} for {} s straight to the task, through nginx (`proxy_pass` with an upstream `keepalive 64`, `worker_processes auto`) and through the listener; added latency: `loadprobe --rate {rate} --connections {}` for {} s each way, median p50/p99 over {} round(s).",
                self.client(),
                p.conns,
                p.secs,
                p.conns,
                p.secs,
                p.rounds
            ),
        );
        s.reference = Some("nginx".into());
        let ns = series(&t_nginx);
        let vs_nginx = |l: &[Load]| paired(&series(l), &ns);
        s.row(
            "straight to the task",
            rps(&t_direct),
            "req/s",
            format!("{}; {}", rps_detail(&t_direct), latency(0)),
            vs_nginx(&t_direct),
        );
        if had_nginx {
            s.row(
                "through nginx",
                rps(&t_nginx),
                "req/s",
                format!("{}; {}", rps_detail(&t_nginx), latency(1)),
                vs_nginx(&t_nginx),
            );
        } else {
            s.row("through nginx", None, "req/s", "not installed", None);
            s.notes
                .push("nginx not installed (apt-get install nginx): no nginx comparison".into());
        }
        s.row(
            "through the localaws listener",
            rps(&t_lb),
            "req/s",
            format!("{}; {}", rps_detail(&t_lb), latency(2)),
            vs_nginx(&t_lb),
        );
        let (lb50, lb99) = (added(&p50s(2), &p50s(0)), added(&p99s(2), &p99s(0)));
        let (ng50, ng99) = (added(&p50s(1), &p50s(0)), added(&p99s(1), &p99s(0)));
        for (label, a50, a99) in [
            ("the listener adds", lb50, lb99),
            ("nginx adds", ng50, ng99),
        ] {
            if let (Some(a), Some(b)) = (a50, a99) {
                s.notes.push(format!(
                    "{label} p50 {a:+.0} µs, p99 {b:+.0} µs at {rate} req/s (median over the rounds of its figure minus the direct one's)"
                ));
            }
        }
        let ratio = s.ratio(
            "listener_vs_nginx",
            "listener over nginx (req/s)",
            vs_nginx(&t_lb),
            Better::Higher,
        );
        s.ratio(
            "listener_vs_nginx_p50",
            "listener's p50 over nginx's at 1,000 req/s",
            paired(&p50s(2), &p50s(1)),
            Better::Lower,
        );
        s.ratio(
            "listener_vs_nginx_p99",
            "listener's p99 over nginx's at 1,000 req/s",
            paired(&p99s(2), &p99s(1)),
            Better::Lower,
        );
        s.at_least("listener ≥ 0.9× nginx", ratio, 0.9);
        s.target(
            "listener's added p50 < 150 µs",
            match (lb50, lb99) {
                (Some(a), Some(b)) => format!("{a:+.0} µs (p99 {b:+.0} µs)"),
                _ => "not measured".into(),
            },
            lb50.map(|a| a < 150.0),
        );
        let failed = failed + errors(&t_direct) + errors(&t_nginx) + errors(&t_lb);
        s.sanity(
            "no failed request (proxy comparison)",
            format!("{failed} failed"),
            failed == 0,
        );
        Ok(s)
    }

    /// The probe at 5,000 req/s: its own schedule lag, and its RSS over the run.
    pub(crate) fn fixed_rate(&self) -> Result<Section, String> {
        let p = self.plan;
        let rate = 5000;
        let run = self
            .bins
            .probe(&self.hello, &rate.to_string(), p.conns, p.fixed_secs, true)?;
        let r = &run.report;
        let mib = |k: u64| k as f64 / 1024.0;
        let at10 = run.rss_kib.get(9).copied();
        let last = run.rss_kib.last().copied();
        let peak = run.rss_kib.iter().copied().max();
        let mut s = Section::new(
            "fixed_rate",
            "Probe at 5,000 req/s: schedule lag and memory",
            format!(
                "`loadprobe --rate {rate} --connections {} --duration {}s` against `hello-hyper`; RSS read from /proc once a second. Lag is how late the probe's own scheduler handed out requests; memory is flat when the RSS at the end is within 10 % of the RSS at 10 s.",
                p.conns, p.fixed_secs
            ),
        );
        let lag = &r.schedule_lag_us;
        let latency = &r.latency_us;
        s.row("schedule lag p50", Some(lag.p50 as f64), "µs", "", None);
        s.row(
            "schedule lag p99",
            Some(lag.p99 as f64),
            "µs",
            format!("max {}", us(lag.max as f64)),
            None,
        );
        s.row("latency p50", Some(latency.p50 as f64), "µs", "", None);
        s.row(
            "latency p99",
            Some(latency.p99 as f64),
            "µs",
            format!("max {}", us(latency.max as f64)),
            None,
        );
        s.row("RSS at 10 s", at10.map(mib), "MiB", "", None);
        s.row(
            "RSS at the end",
            last.map(mib),
            "MiB",
            format!(
                "peak {:.1} MiB over {} samples",
                peak.map_or(0.0, mib),
                run.rss_kib.len()
            ),
            None,
        );
        let growth = s.ratio(
            "rss_end_vs_10s",
            "probe RSS at the end over at 10 s, 5,000 req/s",
            paired(
                &last.map(|k| k as f64).into_iter().collect::<Vec<_>>(),
                &at10.map(|k| k as f64).into_iter().collect::<Vec<_>>(),
            ),
            Better::Lower,
        );
        s.target(
            "probe schedule lag p99 < 1 ms at 5,000 req/s",
            us(lag.p99 as f64),
            Some(lag.p99 < 1000),
        );
        s.target(
            "probe RSS flat at 5,000 req/s (end within 10 % of 10 s)",
            match (at10, last) {
                (Some(a), Some(b)) => format!("{:.1} → {:.1} MiB", mib(a), mib(b)),
                _ => "too few samples".into(),
            },
            growth.map(|g| (g - 1.0).abs() <= 0.10),
        );
        s.target(
            "probe RSS under 64 MiB at 5,000 req/s",
            format!("peak {:.1} MiB", peak.map_or(0.0, mib)),
            peak.map(|k| k < 64 * 1024),
        );
        let intended = u64::try_from(rate).unwrap_or(0) * p.fixed_secs;
        let mut measured = String::new();
        let _ = write!(
            measured,
            "{} of {intended} requests, {} failed, {} without a result, {:.0} req/s achieved",
            r.requests, r.errors.total, r.missing_results, r.achieved_rate
        );
        s.sanity(
            "every sample recorded at 5,000 req/s, none failed",
            measured,
            r.errors.total == 0 && r.missing_results == 0 && r.verdict != loadprobe::Verdict::Fault,
        );
        Ok(s)
    }
}

/// A scenario of `orchestrate rehearse --json`, the fields the report reads.
#[derive(Debug, serde::Deserialize)]
struct Scenario {
    scenario: String,
    expected: String,
    verdict: String,
    as_expected: bool,
    requests: u64,
    errors: u64,
    rollback_ms: Option<u64>,
    wall_s: f64,
}

impl Bench<'_> {
    /// `orchestrate rehearse`: the wall time of each scenario and the gate's rollback latency.
    /// Only when `orchestrate` was built beside the others (it pulls in the AWS SDK).
    pub(crate) fn rehearsal(&self) -> Result<Section, String> {
        let orchestrate = self.bins.path("orchestrate");
        let mut s = Section::new(
            "rehearsal",
            "Rehearsal: `orchestrate rehearse` wall time and rollback latency",
            "The offline rehearsal as shipped (default stack, 1,000 req/s on the production listener, every scenario); wall time per scenario, and how long after the first failed request the gate called RollbackInstanceRefresh. No peer: absolute figures.".into(),
        );
        if !orchestrate.is_file() {
            s.notes.push(
                "orchestrate not built: cargo build --release -p orchestrate to include the rehearsal"
                    .into(),
            );
            return Ok(s);
        }
        let json = self.bins.work.join("rehearsal.json");
        let out = Command::new(&orchestrate)
            .arg("rehearse")
            .arg("--json")
            .arg(&json)
            .arg("--report-dir")
            .arg(self.bins.work.join("rehearsal"))
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run orchestrate: {e}"))?;
        let text = std::fs::read_to_string(&json).map_err(|e| {
            format!(
                "orchestrate rehearse ({}) wrote no summary: {e}; it said: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )
        })?;
        let rows: Vec<Scenario> = serde_json::from_str(&text)
            .map_err(|e| format!("the rehearsal summary does not parse: {e}"))?;
        let total: f64 = rows.iter().map(|r| r.wall_s).sum();
        for r in &rows {
            s.row(
                format!("{} wall time", r.scenario),
                Some(r.wall_s),
                "s",
                format!(
                    "{} requests, {} failed; verdict {}, expected {}",
                    r.requests, r.errors, r.verdict, r.expected
                ),
                None,
            );
        }
        for r in rows.iter().filter(|r| r.rollback_ms.is_some()) {
            let ms = r.rollback_ms.map(|m| m as f64);
            s.row(
                format!("{} rollback latency", r.scenario),
                ms,
                "ms",
                "first failure to the rollback call",
                None,
            );
        }
        s.notes
            .push(format!("{} scenarios in {total:.1} s", rows.len()));
        let unexpected: Vec<&str> = rows
            .iter()
            .filter(|r| !r.as_expected)
            .map(|r| r.scenario.as_str())
            .collect();
        s.sanity(
            "every rehearsal verdict as expected",
            if unexpected.is_empty() {
                format!("{} scenarios as expected", rows.len())
            } else {
                format!("not as expected: {}", unexpected.join(", "))
            },
            unexpected.is_empty() && out.status.success(),
        );
        Ok(s)
    }
}

/// The proxy benchmark's stack: one instance, one `server` task behind one listener.
const PROXY_STACK: &str = r#"
time_scale = 10.0
[cluster]
instances = 1
[images.server]
command = "server"
environment = { LOG_FORMAT = "json" }
[[task_definitions]]
family = "web"
[[task_definitions.containerDefinitions]]
name = "web"
image = "server"
portMappings = [{ containerPort = 8080 }]
[[target_groups]]
name = "tg"
health_check = { path = "/ready", interval = 5, timeout = 2, healthy_threshold = 2 }
[[load_balancers]]
name = "lb"
[[load_balancers.listeners]]
name = "production"
port = 0
forward = [{ target_group = "tg" }]
[[services]]
name = "web"
task_definition = "web"
desired_count = 1
load_balancer = { target_group = "tg", container_name = "web", container_port = 8080 }
"#;

/// nginx as a keep-alive reverse proxy to `task`, on 127.0.0.1:`port`.
fn nginx_conf(dir: &std::path::Path, port: u16, task: std::net::SocketAddr) -> String {
    format!(
        "worker_processes auto;
daemon off;
pid {pid};
error_log stderr warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  upstream app {{ server {task}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
      proxy_set_header X-Forwarded-For $remote_addr;
    }}
  }}
}}
",
        pid = dir.join("nginx.pid").display()
    )
}

/// A Python `http.server` service answering like `server`: the page with its headers, HTTP/1.1
/// keep-alive, one thread per connection.
const PYTHON_SERVICE: &str = r#"import http.server, sys, html

PAGE = ("<!doctype html><html><head><meta charset=\"utf-8\"><title>Hello from ECS</title></head>"
        "<body><h1>Hello from ECS</h1><p>version bench, task python</p></body></html>\n")

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # as hello-hyper and server set TCP_NODELAY

    def do_GET(self):
        body = PAGE.replace("</body>", "<p>" + html.escape(self.path) + "</p></body>").encode()
        self.send_response(200)
        self.send_header("content-type", "text/html; charset=utf-8")
        self.send_header("content-length", str(len(body)))
        self.send_header("x-app-version", "bench")
        self.send_header("x-served-by", "python")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_are_taken_within_each_round() {
        // The machine got twice as fast in round 2: the ratio of medians would say 1.5, the
        // rounds say 1.0 twice and 2.0 once.
        let ours = [10.0, 20.0, 20.0];
        let peer = [10.0, 20.0, 10.0];
        assert_eq!(paired(&ours, &peer), Some(1.0));
        assert_eq!(paired(&ours, &peer[..2]), None, "rounds must pair up");
        assert_eq!(
            added(&[150.0, 200.0, 900.0], &[100.0, 100.0, 100.0]),
            Some(100.0)
        );
    }
}

//! The command line: `loadprobe [OPTIONS] <URL>` and `loadprobe merge <REPORT>...`.
//!
//! Everything is validated, and every output file created, before the first request goes out.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};

use crate::config::{
    ConnectionMode, LbMarker, ProbeConfig, Rate, RequestHeader, Slo, StatusSet, TlsOptions,
};
use crate::events::EventSource;
use crate::probe::Probe;
use crate::report::Report;
use crate::verdict::Verdict;

const EXAMPLES: &str = "\
Examples:
  # 200 requests/s for 5 minutes through the load balancer; fail on any error
  loadprobe --rate 200 --duration 5m http://my-alb-123.eu-west-1.elb.amazonaws.com/

  # a rollout gate: allow no error, p99 under 250 ms, never 1 s without a success,
  # deployment events from a FIFO, reports for CI
  mkfifo /tmp/events
  loadprobe --duration 10m --max-p99 250ms --max-gap 1s --events /tmp/events \\
      --json probe.json --markdown \"$GITHUB_STEP_SUMMARY\" --html probe.html http://alb/
  echo 'instance i-0abc draining' > /tmp/events        # from the deployment script

  # one connection per request, as curl in a loop would do
  loadprobe --new-connection --rate 50 --duration 1m http://alb/

  # the HTTPS listener: system roots by default; a private CA; a host-based routing rule
  loadprobe --duration 5m https://app.example.com/
  loadprobe --ca-file internal-ca.pem https://app.internal/
  loadprobe -H 'Host: api.example.com' --sni api.example.com \\
      https://my-alb-123.eu-west-1.elb.amazonaws.com/

  # a self-signed test listener: the certificate is NOT verified, and every report says so
  loadprobe --insecure https://127.0.0.1:8443/

  # benchmark only: closed loop, as fast as 32 connections go
  loadprobe --rate max --connections 32 --duration 10s http://127.0.0.1:8080/

  # several probes (several hosts) as one report
  loadprobe merge eu-west-1a.json eu-west-1b.json --html all.html

Exit status: 0 pass, 1 fail (an SLO was breached), 2 usage or runtime error, or
a probe fault (a request sent without a recorded result: the run proves nothing).
Incidents: failures closer than --merge-gap (default: one --interval) are one incident, named
in the verdict with its time, error rate, kinds and the task it is attributed to.
Error kinds: connect_refused, connect_timeout, connect_error, tls_handshake (failed or
not finished in time), tls_cert (certificate refused: unknown issuer, wrong name, expired),
connection_reset, connection_closed, request_timeout, protocol_error, http_<status>_lb (the
load balancer generated it, see --lb-marker), http_<status>_target.";

/// Open-loop HTTP load probe that proves (or disproves) zero downtime request by request.
///
/// Requests go out on a fixed schedule whatever the target does; latency is measured from each
/// request's intended start, so a stall shows up as latency instead of fewer requests. Every
/// failure is classified, placed on a timeline of intervals, grouped into outage windows and
/// attributed to the x-app-version / x-served-by that answered around it.
#[derive(Debug, Parser)]
#[command(
    name = "loadprobe",
    version,
    after_help = EXAMPLES,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    /// `merge`, or nothing to run a probe.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options of a probe run.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Combine the JSON reports of several probes into one report.
    Merge(MergeArgs),
}

/// Report outputs, shared by a run and `merge`.
#[derive(Debug, Args)]
pub struct Outputs {
    /// Write the full report as JSON.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
    /// Write a Markdown summary (fits a CI job summary).
    #[arg(long, value_name = "PATH")]
    pub markdown: Option<PathBuf>,
    /// Write a self-contained HTML page with charts.
    #[arg(long, value_name = "PATH")]
    pub html: Option<PathBuf>,
    /// Print nothing but errors: no progress line, no summary.
    #[arg(long, short)]
    pub quiet: bool,
}

/// A probe run.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// URL to probe (http:// or https://host[:port]/path), requested with GET.
    #[arg(value_name = "URL", required = true)]
    pub url: Option<String>,
    /// Requests per second (open loop), or `max` (closed loop, for benchmarks only).
    #[arg(long, default_value = "100", value_name = "N|max", value_parser = parse_rate)]
    pub rate: Rate,
    /// How long to send (30s, 5m, 1h).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Most connections (and requests in flight) at once.
    #[arg(long, default_value_t = 16)]
    pub connections: usize,
    /// Open a new TCP connection (and TLS session) for every request instead of keep-alive.
    #[arg(long)]
    pub new_connection: bool,
    /// Request headers and certificate checks.
    #[command(flatten)]
    pub request: RequestArgs,
    /// Per-request deadline, counted from the request's intended start.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Width of a timeline interval.
    #[arg(long, default_value = "100ms", value_parser = parse_duration)]
    pub interval: Duration,
    /// Failures closer than this (by intended start) belong to one incident [default: the
    /// interval].
    #[arg(long, value_parser = parse_duration)]
    pub merge_gap: Option<Duration>,
    /// Fail when more requests than this fail.
    #[arg(long, default_value_t = 0)]
    pub max_errors: u64,
    /// Fail when the 99th percentile latency exceeds this (e.g. 250ms).
    #[arg(long, value_parser = parse_duration)]
    pub max_p99: Option<Duration>,
    /// Fail when the 99.9th percentile latency exceeds this.
    #[arg(long, value_parser = parse_duration)]
    pub max_p999: Option<Duration>,
    /// Fail when any request takes longer than this.
    #[arg(long, value_parser = parse_duration)]
    pub max_latency: Option<Duration>,
    /// Fail when the longest time without a successful response exceeds this.
    #[arg(long, value_parser = parse_duration)]
    pub max_gap: Option<Duration>,
    /// Statuses that count as success.
    #[arg(long, default_value = "200-399", value_parser = parse_status_set)]
    pub ok_status: StatusSet,
    /// Response header that marks errors generated by the load balancer.
    #[arg(long, default_value = "server: awselb/2.0", value_parser = parse_lb_marker)]
    pub lb_marker: LbMarker,
    /// Read event markers line by line from this file or FIFO while the probe runs.
    #[arg(long, value_name = "PATH")]
    pub events: Option<PathBuf>,
    /// Stream the HdrHistogram interval log (one histogram per interval) to this file.
    #[arg(long, value_name = "PATH")]
    pub hdr_log: Option<PathBuf>,
    /// Report outputs.
    #[command(flatten)]
    pub out: Outputs,
}

/// How each request looks and how an `https://` target is trusted: `-H`, `--ca-file`,
/// `--insecure`, `--sni`. Part of a probe run; other command lines that start a probe (as
/// `orchestrate refresh` and `deploy`) flatten it too, so the flags parse the same everywhere.
#[derive(Debug, Clone, Default, Args)]
pub struct RequestArgs {
    /// Extra request header, 'Name: value' (repeatable). A Host, User-Agent or Accept
    /// replaces the probe's own; Connection, Content-Length and the other framing headers are
    /// the probe's. Reports show a credential's value (Authorization, Cookie, API keys,
    /// tokens) as (redacted).
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE", value_parser = parse_header)]
    pub headers: Vec<RequestHeader>,
    /// https: trust only the certificates in this PEM file (a private CA) instead of the
    /// system's roots.
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// https: accept any certificate (self-signed test listeners). The handshake still runs;
    /// every report says loudly that the certificate was not verified.
    #[arg(long)]
    pub insecure: bool,
    /// https: the name sent as SNI and verified against the certificate [default: the URL's
    /// host]. Probing a load balancer by its own DNS name with -H 'Host: app.example.com'
    /// usually needs --sni app.example.com too.
    #[arg(long, value_name = "NAME")]
    pub sni: Option<String>,
}

impl RequestArgs {
    /// The certificate checks these flags ask for.
    pub fn tls(&self) -> TlsOptions {
        TlsOptions {
            ca_file: self.ca_file.clone(),
            insecure: self.insecure,
            sni: self.sni.clone(),
        }
    }

    /// Sets `cfg`'s request headers and certificate checks; [`ProbeConfig::validate`] then
    /// judges them with the URL.
    pub fn apply(&self, cfg: &mut ProbeConfig) {
        cfg.headers.clone_from(&self.headers);
        cfg.tls = self.tls();
    }
}

/// `loadprobe merge`.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// JSON reports written by `loadprobe --json`.
    #[arg(required = true, value_name = "REPORT")]
    pub inputs: Vec<PathBuf>,
    /// Report outputs.
    #[command(flatten)]
    pub out: Outputs,
}

fn parse_rate(s: &str) -> Result<Rate, String> {
    s.parse::<Rate>()
        .map_err(|_| "expected a positive number of requests per second or 'max'".to_owned())
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (try 500ms, 30s, 5m)"))?;
    if d.is_zero() {
        return Err("must be longer than zero".to_owned());
    }
    Ok(d)
}

fn parse_status_set(s: &str) -> Result<StatusSet, String> {
    s.parse()
        .map_err(|_| "expected codes or ranges between 100 and 599, like 200-299,404".to_owned())
}

fn parse_header(s: &str) -> Result<RequestHeader, String> {
    s.parse::<RequestHeader>().map_err(|e| match e {
        crate::error::ProbeError::InvalidConfig { reason, .. } => reason.to_owned(),
        other => other.to_string(),
    })
}

fn parse_lb_marker(s: &str) -> Result<LbMarker, String> {
    s.parse()
        .map_err(|_| "expected 'header-name: value', like 'server: awselb/2.0'".to_owned())
}

/// Report files, created before any traffic so that a bad path fails early.
struct OpenOutputs {
    json: Option<File>,
    markdown: Option<File>,
    html: Option<File>,
    quiet: bool,
}

fn create(flag: &str, path: &Option<PathBuf>) -> anyhow::Result<Option<File>> {
    path.as_deref()
        .map(|p: &Path| {
            File::create(p).with_context(|| format!("cannot create {flag} file '{}'", p.display()))
        })
        .transpose()
}

impl OpenOutputs {
    fn open(o: &Outputs) -> anyhow::Result<OpenOutputs> {
        Ok(OpenOutputs {
            json: create("--json", &o.json)?,
            markdown: create("--markdown", &o.markdown)?,
            html: create("--html", &o.html)?,
            quiet: o.quiet,
        })
    }

    fn write(self, report: &Report) -> anyhow::Result<()> {
        if let Some(f) = self.json {
            report
                .write_json(BufWriter::new(f))
                .context("cannot write the --json report")?;
        }
        if let Some(f) = self.markdown {
            report
                .write_markdown(BufWriter::new(f))
                .context("cannot write the --markdown report")?;
        }
        if let Some(f) = self.html {
            report
                .write_html(BufWriter::new(f))
                .context("cannot write the --html report")?;
        }
        if !self.quiet {
            print!("{}", report.summary());
        }
        Ok(())
    }
}

impl RunArgs {
    /// The probe configuration these arguments describe (validated).
    pub fn config(&self) -> anyhow::Result<ProbeConfig> {
        let url = self.url.as_deref().unwrap_or_default();
        let target = url
            .parse::<http::Uri>()
            .map_err(|e| anyhow::anyhow!("invalid target URL '{url}': {e}"))?;
        let mut cfg = ProbeConfig::new(target);
        cfg.rate = self.rate;
        cfg.duration = self.duration;
        cfg.connections = self.connections;
        cfg.mode = if self.new_connection {
            ConnectionMode::NewConnection
        } else {
            ConnectionMode::KeepAlive
        };
        cfg.timeout = self.timeout;
        cfg.interval = self.interval;
        cfg.slo = Slo {
            max_errors: self.max_errors,
            max_p99: self.max_p99,
            max_p999: self.max_p999,
            max_latency: self.max_latency,
            max_gap: self.max_gap,
        };
        cfg.hdr_log = self.hdr_log.clone();
        cfg.ok_status = self.ok_status.clone();
        cfg.lb_marker = self.lb_marker.clone();
        cfg.merge_gap = self.merge_gap;
        self.request.apply(&mut cfg);
        cfg.validate()?;
        Ok(cfg)
    }
}

/// Runs the command line: a probe or `merge`. The verdict decides the exit code (0 pass,
/// 1 fail, 2 probe fault); an error means a usage or runtime error (exit 2).
pub async fn run_cli(cli: Cli) -> anyhow::Result<Verdict> {
    match cli.command {
        Some(Command::Merge(args)) => merge(&args),
        None => probe(cli.run).await,
    }
}

async fn probe(args: RunArgs) -> anyhow::Result<Verdict> {
    let cfg = args.config()?;
    if cfg.tls.insecure && !args.out.quiet {
        eprintln!("loadprobe: warning: --insecure: the server's certificate is NOT verified");
    }
    let outputs = OpenOutputs::open(&args.out)?;
    let events = args
        .events
        .as_deref()
        .map(|p| {
            EventSource::open(p)
                .with_context(|| format!("cannot read --events source '{}'", p.display()))
        })
        .transpose()?;

    let probe = Probe::start(cfg)?;
    let events = events.map(|src| tokio::spawn(src.follow(probe.marker())));
    let progress = crate::progress::spawn(probe.watch(), args.duration, args.out.quiet);
    let report = finish_with_ctrl_c(probe, args.out.quiet).await?;
    if let Some(task) = events {
        task.abort();
    }
    let _ = progress.await;
    outputs.write(&report)?;
    Ok(report.verdict)
}

/// Finishes the probe; Ctrl-C stops sending early and still returns the report.
async fn finish_with_ctrl_c(probe: Probe, quiet: bool) -> anyhow::Result<Report> {
    let stop = probe.stop_handle();
    let marker = probe.marker();
    let signal = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            if !quiet {
                eprintln!("\nloadprobe: interrupted, waiting for the requests in flight");
            }
            marker.mark("interrupted (Ctrl-C)");
            stop.stop();
        }
    });
    let report = probe.finish().await;
    signal.abort();
    Ok(report?)
}

fn merge(args: &MergeArgs) -> anyhow::Result<Verdict> {
    let outputs = OpenOutputs::open(&args.out)?;
    let mut reports = Vec::new();
    for path in &args.inputs {
        let file =
            File::open(path).with_context(|| format!("cannot read report '{}'", path.display()))?;
        let report = Report::from_json(std::io::BufReader::new(file))
            .with_context(|| format!("'{}' is not a loadprobe JSON report", path.display()))?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        reports.push((name, report));
    }
    if reports.is_empty() {
        bail!("merge needs at least one report");
    }
    let merged = crate::merge::merge(&reports)?;
    outputs.write(&merged)?;
    Ok(merged.verdict)
}

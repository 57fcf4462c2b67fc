//! What to probe and how: [`ProbeConfig`] and its parts, validated before any traffic.

use std::fmt;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use http::Uri;
use http::header::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

use crate::error::ProbeError;

/// How fast to send.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    /// Open loop: request `i` is due at `start + i / rate`, whatever the target does.
    PerSecond(f64),
    /// Closed loop, as fast as the connections go. For benchmarking only: a stalled target
    /// slows the probe down instead of showing up as latency.
    Max,
}

impl Rate {
    /// Requests per second, `None` for [`Rate::Max`].
    pub fn per_second(self) -> Option<f64> {
        match self {
            Rate::PerSecond(r) => Some(r),
            Rate::Max => None,
        }
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rate::PerSecond(r) => write!(f, "{r}/s"),
            Rate::Max => f.write_str("max"),
        }
    }
}

impl FromStr for Rate {
    type Err = ProbeError;

    /// `max`, or a positive number of requests per second (`500`, `0.5`, `2000/s`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("max") {
            return Ok(Rate::Max);
        }
        let num = t.strip_suffix("/s").unwrap_or(t);
        match num.parse::<f64>() {
            Ok(r) if r.is_finite() && r > 0.0 => Ok(Rate::PerSecond(r)),
            _ => Err(ProbeError::InvalidRate(s.to_owned())),
        }
    }
}

/// How requests use connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConnectionMode {
    /// HTTP/1.1 keep-alive: each connection is reused until it breaks (what browsers and
    /// load balancers do; fails on a connection the server closed under it).
    KeepAlive,
    /// A fresh TCP connection per request, sent with `connection: close` (what `curl` in a
    /// loop does; fails on refused connects).
    NewConnection,
}

impl fmt::Display for ConnectionMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConnectionMode::KeepAlive => "keep-alive",
            ConnectionMode::NewConnection => "new-connection",
        })
    }
}

/// The service level the verdict checks. The default is the zero-downtime one: no error at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Slo {
    /// Most failed requests allowed (default 0).
    pub max_errors: u64,
    /// Highest allowed 99th percentile latency.
    pub max_p99: Option<Duration>,
    /// Highest allowed 99.9th percentile latency.
    pub max_p999: Option<Duration>,
    /// Highest allowed single latency.
    pub max_latency: Option<Duration>,
    /// Longest allowed time without a successful response.
    pub max_gap: Option<Duration>,
}

/// The set of HTTP statuses that count as success (default `200-399`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusSet(Vec<RangeInclusive<u16>>);

impl StatusSet {
    /// Whether `status` counts as success.
    pub fn contains(&self, status: u16) -> bool {
        self.0.iter().any(|r| r.contains(&status))
    }
}

impl Default for StatusSet {
    fn default() -> Self {
        StatusSet(vec![200..=399])
    }
}

impl FromStr for StatusSet {
    type Err = ProbeError;

    /// A comma-separated list of codes and ranges: `200-299,404`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ProbeError::InvalidConfig {
            flag: "--ok-status",
            value: s.to_owned(),
            reason: "expected codes or ranges between 100 and 599, like 200-299,404",
        };
        let code = |t: &str| -> Result<u16, ProbeError> {
            match t.trim().parse::<u16>() {
                Ok(c) if (100..=599).contains(&c) => Ok(c),
                _ => Err(bad()),
            }
        };
        let mut ranges = Vec::new();
        for part in s.split(',') {
            let r = match part.split_once('-') {
                Some((a, b)) => code(a)?..=code(b)?,
                None => {
                    let c = code(part)?;
                    c..=c
                }
            };
            if r.is_empty() {
                return Err(bad());
            }
            ranges.push(r);
        }
        Ok(StatusSet(ranges))
    }
}

impl fmt::Display for StatusSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if r.start() == r.end() {
                write!(f, "{}", r.start())?;
            } else {
                write!(f, "{}-{}", r.start(), r.end())?;
            }
        }
        Ok(())
    }
}

/// The response header that marks an error generated by the load balancer rather than by the
/// target (default `server: awselb/2.0`, what an ALB sends on its own 502/503/504).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LbMarker {
    /// Header name.
    pub header: HeaderName,
    /// Header value, compared ignoring ASCII case.
    pub value: String,
}

impl Default for LbMarker {
    fn default() -> Self {
        LbMarker {
            header: http::header::SERVER,
            value: "awselb/2.0".to_owned(),
        }
    }
}

impl FromStr for LbMarker {
    type Err = ProbeError;

    /// `name: value`, e.g. `server: awselb/2.0`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ProbeError::InvalidConfig {
            flag: "--lb-marker",
            value: s.to_owned(),
            reason: "expected 'header-name: value', like 'server: awselb/2.0'",
        };
        let (name, value) = s.split_once(':').ok_or_else(bad)?;
        let header = HeaderName::from_str(name.trim()).map_err(|_| bad())?;
        let value = value.trim();
        if value.is_empty() {
            return Err(bad());
        }
        Ok(LbMarker {
            header,
            value: value.to_owned(),
        })
    }
}

impl fmt::Display for LbMarker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.header, self.value)
    }
}

/// An extra request header (`-H 'Name: value'`). A `host`, `user-agent` or `accept` replaces
/// the probe's own; the headers that frame the exchange are the probe's and cannot be set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHeader {
    /// Header name (lower case).
    pub name: HeaderName,
    /// Header value: visible ASCII, spaces and tabs; no line breaks.
    pub value: HeaderValue,
}

/// Headers the probe sets itself: they decide how a response is framed or whether the
/// connection is kept, which `--new-connection` and keep-alive decide.
const MANAGED_HEADERS: [&str; 7] = [
    "connection",
    "keep-alive",
    "content-length",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
];

impl FromStr for RequestHeader {
    type Err = ProbeError;

    /// `Name: value`, e.g. `Host: app.example.com`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &'static str| ProbeError::InvalidConfig {
            flag: "-H/--header",
            value: s.to_owned(),
            reason,
        };
        let (name, value) = s
            .split_once(':')
            .ok_or_else(|| bad("expected 'Name: value', like 'Host: app.example.com'"))?;
        let name = HeaderName::from_str(name.trim()).map_err(|_| {
            bad("the name must be a header token (letters, digits, -), like 'Host'")
        })?;
        if MANAGED_HEADERS.contains(&name.as_str()) {
            return Err(bad(
                "the probe sets this header itself (keep-alive or --new-connection decide it)",
            ));
        }
        let value = value.trim_matches([' ', '\t']);
        let value = HeaderValue::from_str(value)
            .map_err(|_| bad("the value must be one line without control characters"))?;
        if name == http::header::HOST && value.is_empty() {
            return Err(bad("an empty Host cannot be routed"));
        }
        Ok(RequestHeader { name, value })
    }
}

impl RequestHeader {
    /// Whether the value is a credential (`Authorization`, `Cookie`, an API key or token):
    /// reports show the name only.
    pub fn is_secret(&self) -> bool {
        let name = self.name.as_str();
        matches!(
            name,
            "authorization" | "proxy-authorization" | "cookie" | "x-api-key"
        ) || name.contains("token")
            || name.contains("secret")
    }

    /// As reports show it: `name: value`, or `name: (redacted)` for a credential.
    pub fn for_report(&self) -> String {
        if self.is_secret() {
            format!("{}: (redacted)", self.name)
        } else {
            self.to_string()
        }
    }
}

impl fmt::Display for RequestHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}",
            self.name,
            String::from_utf8_lossy(self.value.as_bytes())
        )
    }
}

/// How an `https://` target's certificate is checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// Trust only the certificates in this PEM file (a private CA) instead of the system's
    /// roots.
    pub ca_file: Option<PathBuf>,
    /// Accept any certificate (self-signed test listeners). Every report says so.
    pub insecure: bool,
    /// The name sent as SNI and verified against the certificate, instead of the URL's host.
    pub sni: Option<String>,
}

impl TlsOptions {
    /// Whether anything differs from the default (system roots, the URL's host).
    pub fn is_set(&self) -> bool {
        self != &TlsOptions::default()
    }
}

/// Everything a probe needs. Build it with [`ProbeConfig::new`] and adjust the fields.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    /// `http://host[:port]/path?query`, requested with `GET`.
    pub target: Uri,
    /// Sending rate.
    pub rate: Rate,
    /// How long the schedule runs.
    pub duration: Duration,
    /// Most connections (and so requests) in flight at once.
    pub connections: usize,
    /// Keep-alive or a new connection per request.
    pub mode: ConnectionMode,
    /// Per-request deadline, counted from the request's intended start.
    pub timeout: Duration,
    /// Width of a timeline interval.
    pub interval: Duration,
    /// What the verdict checks.
    pub slo: Slo,
    /// Where to stream the HdrHistogram interval log while the run goes on.
    pub hdr_log: Option<PathBuf>,
    /// Statuses that count as success.
    pub ok_status: StatusSet,
    /// Header that marks load-balancer-generated responses.
    pub lb_marker: LbMarker,
    /// Failures closer than this (by intended start) belong to one incident; `None`: one
    /// interval.
    pub merge_gap: Option<Duration>,
    /// Extra request headers, in order.
    pub headers: Vec<RequestHeader>,
    /// Certificate checks for `https://` targets.
    pub tls: TlsOptions,
}

/// Longest run: a month. A soak lasts hours; the bound keeps `start + duration` representable.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(31 * 86_400);
/// Longest interval and merge gap.
pub(crate) const MAX_INTERVAL: Duration = Duration::from_secs(3600);

impl ProbeConfig {
    /// Sane defaults: 100 requests/s for 10 s over up to 16 keep-alive connections, 2 s timeout,
    /// 100 ms intervals, zero errors allowed.
    pub fn new(target: Uri) -> Self {
        ProbeConfig {
            target,
            rate: Rate::PerSecond(100.0),
            duration: Duration::from_secs(10),
            connections: 16,
            mode: ConnectionMode::KeepAlive,
            timeout: Duration::from_secs(2),
            interval: Duration::from_millis(100),
            slo: Slo::default(),
            hdr_log: None,
            ok_status: StatusSet::default(),
            lb_marker: LbMarker::default(),
            merge_gap: None,
            headers: Vec::new(),
            tls: TlsOptions::default(),
        }
    }

    /// The gap that still joins two failures into one incident.
    pub fn incident_gap(&self) -> Duration {
        self.merge_gap.unwrap_or(self.interval)
    }

    /// [`ProbeConfig::validate`], then what [`crate::Probe::start`] reads before the first
    /// request: the `--ca-file` (or the system's roots) of an `https://` target. Sends nothing:
    /// for a caller that starts the probe later and must refuse bad input now.
    pub fn check(&self) -> Result<(), ProbeError> {
        self.validate()?;
        crate::target::Target::from_uri(&self.target, &self.headers)?.with_tls(&self.tls)?;
        Ok(())
    }

    /// Checks every field; the error names the bad value. Files (`--ca-file`) are read by
    /// [`crate::Probe::start`] (and [`ProbeConfig::check`]).
    pub fn validate(&self) -> Result<(), ProbeError> {
        let target = crate::target::Target::from_uri(&self.target, &self.headers)?;
        if let Rate::PerSecond(r) = self.rate
            && !(r.is_finite() && r > 0.0)
        {
            return Err(ProbeError::InvalidRate(r.to_string()));
        }
        let bad = |flag: &'static str, value: String, reason: &'static str| {
            Err(ProbeError::InvalidConfig {
                flag,
                value,
                reason,
            })
        };
        let human = |d: Duration| humantime::format_duration(d).to_string();
        if self.duration.is_zero() {
            return bad("--duration", "0s".into(), "must be longer than zero");
        }
        if self.duration > MAX_DURATION {
            return bad("--duration", human(self.duration), "must be at most 31days");
        }
        if let Rate::PerSecond(r) = self.rate
            && r * self.duration.as_secs_f64() + 1e-6 < 1.0
        {
            return bad(
                "--rate",
                format!("{} over {}", self.rate, human(self.duration)),
                "rate x duration is less than one request: nothing would be proven",
            );
        }
        if let Rate::PerSecond(r) = self.rate
            && r * self.duration.as_secs_f64() > u32::MAX as f64
        {
            return bad(
                "--rate",
                self.rate.to_string(),
                "rate x duration exceeds 4 billion requests",
            );
        }
        if self.connections == 0 || self.connections > 65_535 {
            return bad(
                "--connections",
                self.connections.to_string(),
                "must be between 1 and 65535",
            );
        }
        if self.timeout < Duration::from_millis(1) || self.timeout > Duration::from_secs(3600) {
            return bad(
                "--timeout",
                humantime::format_duration(self.timeout).to_string(),
                "must be between 1ms and 1h",
            );
        }
        if self.interval < Duration::from_millis(10) || self.interval > MAX_INTERVAL {
            return bad(
                "--interval",
                human(self.interval),
                "must be between 10ms and 1h",
            );
        }
        if let Some(gap) = self.merge_gap
            && (gap < Duration::from_millis(1) || gap > MAX_INTERVAL)
        {
            return bad("--merge-gap", human(gap), "must be between 1ms and 1h");
        }
        if target.is_tls() {
            crate::tls::server_name(&self.tls, target.host())?;
            if self.tls.insecure && self.tls.ca_file.is_some() {
                return bad(
                    "--insecure",
                    "with --ca-file".into(),
                    "verifies nothing, so a --ca-file would be ignored: pick one",
                );
            }
        } else if self.tls.is_set() {
            let flag = if self.tls.ca_file.is_some() {
                "--ca-file"
            } else if self.tls.insecure {
                "--insecure"
            } else {
                "--sni"
            };
            return bad(
                flag,
                self.target.to_string(),
                "applies to https:// URLs only",
            );
        }
        let mut hosts = self.headers.iter().filter(|h| h.name == http::header::HOST);
        if let (Some(_), Some(second)) = (hosts.next(), hosts.next()) {
            return bad(
                "-H/--header",
                second.to_string(),
                "a second Host header: a request has exactly one",
            );
        }
        if self.interval > self.duration && self.rate != Rate::Max {
            // Harmless, but almost always a mistake (`--interval 10s --duration 1s`).
            return bad(
                "--interval",
                humantime::format_duration(self.interval).to_string(),
                "must not be longer than --duration",
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn rate_parses_numbers_and_max() {
        assert_eq!("max".parse::<Rate>().unwrap(), Rate::Max);
        assert_eq!("250".parse::<Rate>().unwrap(), Rate::PerSecond(250.0));
        assert_eq!("0.5/s".parse::<Rate>().unwrap(), Rate::PerSecond(0.5));
        for bad in ["0", "-1", "nan", "inf", "fast", ""] {
            let err = bad.parse::<Rate>().unwrap_err().to_string();
            assert!(err.contains(&format!("'{bad}'")), "{err}");
        }
    }

    #[test]
    fn status_set_parses_ranges() {
        let s: StatusSet = "200-299,404".parse().unwrap();
        assert!(s.contains(200) && s.contains(299) && s.contains(404));
        assert!(!s.contains(302) && !s.contains(500));
        assert_eq!(s.to_string(), "200-299,404");
        assert!("299-200".parse::<StatusSet>().is_err());
        assert!("600".parse::<StatusSet>().is_err());
        assert!(StatusSet::default().contains(304));
    }

    #[test]
    fn lb_marker_parses() {
        let m: LbMarker = "Via: my-proxy".parse().unwrap();
        assert_eq!(m.header, "via");
        assert_eq!(m.value, "my-proxy");
        assert!("no-colon".parse::<LbMarker>().is_err());
        assert!("server:".parse::<LbMarker>().is_err());
    }

    #[test]
    fn validate_names_the_bad_value() {
        let base = ProbeConfig::new(Uri::from_static("http://127.0.0.1:1/"));
        assert!(base.validate().is_ok());
        let mut c = base.clone();
        c.connections = 0;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("--connections")
        );
        let mut c = base.clone();
        c.rate = Rate::PerSecond(0.0);
        assert!(c.validate().unwrap_err().to_string().contains("rate"));
        let mut c = base.clone();
        c.duration = Duration::ZERO;
        assert!(c.validate().unwrap_err().to_string().contains("--duration"));
        let mut c = base.clone();
        c.rate = Rate::Max;
        c.duration = Duration::from_secs(u64::MAX / 4);
        let err = c.validate().unwrap_err().to_string();
        assert!(
            err.contains("--duration") && err.contains("31days"),
            "{err}"
        );
        let mut c = base.clone();
        c.rate = Rate::PerSecond(0.5);
        c.duration = Duration::from_secs(1);
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("less than one request"), "{err}");
        assert!(err.contains("0.5/s over 1s"), "{err}");
        c.duration = Duration::from_secs(2);
        assert!(c.validate().is_ok(), "exactly one request is enough");
        let mut c = base.clone();
        c.rate = Rate::Max;
        c.interval = Duration::from_secs(1 << 40);
        assert!(c.validate().unwrap_err().to_string().contains("--interval"));
        let mut c = base.clone();
        c.merge_gap = Some(Duration::from_secs(7200));
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("--merge-gap")
        );
        let mut c = base.clone();
        c.tls.insecure = true;
        let err = c.validate().unwrap_err().to_string();
        assert!(
            err.contains("--insecure") && err.contains("https:// URLs only"),
            "{err}"
        );
        c.target = Uri::from_static("https://example.com/");
        assert!(c.validate().is_ok());
        c.tls.ca_file = Some("ca.pem".into());
        assert!(c.validate().unwrap_err().to_string().contains("pick one"));
        let mut c = base;
        c.headers = vec!["Host: a".parse().unwrap(), "host: b".parse().unwrap()];
        let err = c.validate().unwrap_err().to_string();
        assert!(
            err.contains("second Host") && err.contains("host: b"),
            "{err}"
        );
    }

    #[test]
    fn request_headers_are_validated() {
        let h: RequestHeader = "X-Probe-Run:  42 ".parse().unwrap();
        assert_eq!(
            (h.name.as_str(), h.value.to_str().unwrap()),
            ("x-probe-run", "42")
        );
        assert_eq!(h.to_string(), "x-probe-run: 42");
        let auth: RequestHeader = "Authorization: Bearer s3cret".parse().unwrap();
        assert_eq!(auth.for_report(), "authorization: (redacted)");
        let token: RequestHeader = "X-Auth-Token: s3cret".parse().unwrap();
        assert_eq!(token.for_report(), "x-auth-token: (redacted)");
        assert_eq!(h.for_report(), "x-probe-run: 42");
        let empty: RequestHeader = "X-Empty:".parse().unwrap();
        assert!(empty.value.is_empty());
        for (bad, needle) in [
            ("no colon", "expected 'Name: value'"),
            ("bad name: x", "header token"),
            (": x", "header token"),
            ("X-A: one\ntwo", "one line"),
            ("Connection: close", "sets this header itself"),
            ("Content-Length: 5", "sets this header itself"),
            ("Host:  ", "empty Host"),
        ] {
            let err = bad.parse::<RequestHeader>().unwrap_err().to_string();
            assert!(
                err.contains(needle) && err.contains("-H/--header"),
                "{bad}: {err}"
            );
        }
    }
}

//! The probed URL, taken apart once so that each request costs no parsing.
//!
//! The request (with `-H` headers) is serialized once; a connection is TCP connect then, for
//! `https://`, the TLS handshake, each under the deadline of the request that opens it.

use std::net::{IpAddr, SocketAddr};

use http::Uri;
use http::header::HeaderValue;
use http::uri::PathAndQuery;
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};

use crate::config::{RequestHeader, TlsOptions};
use crate::error::{ErrorKind, ProbeError};
use crate::tls::{Stream, Tls};

/// Where requests go and what they look like.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    host: String,
    port: u16,
    /// Set when the host is an IP literal: no name resolution per connection.
    addr: Option<SocketAddr>,
    /// `https://`.
    https: bool,
    /// The TLS client, once built ([`Target::with_tls`]).
    tls: Option<Tls>,
    /// The request, serialized once: keep-alive, and with `connection: close`.
    keep_alive: Vec<u8>,
    close: Vec<u8>,
}

impl Target {
    /// Takes the URL apart and serializes the request with the extra `headers`. Reads no file:
    /// an `https://` target needs [`Target::with_tls`] before it can connect.
    pub(crate) fn from_uri(uri: &Uri, headers: &[RequestHeader]) -> Result<Target, ProbeError> {
        let bad = |reason: &str| ProbeError::InvalidTarget {
            url: uri.to_string(),
            reason: reason.to_owned(),
        };
        let (https, default_port) = match uri.scheme_str() {
            Some("http") => (false, 80),
            Some("https") => (true, 443),
            Some(other) => {
                return Err(bad(&format!(
                    "unsupported scheme {other}: expected http or https"
                )));
            }
            None => return Err(bad("missing scheme: expected http(s)://host[:port]/path")),
        };
        let authority = uri
            .authority()
            .ok_or_else(|| bad("missing host: expected http(s)://host[:port]/path"))?;
        if authority.as_str().contains('@') {
            return Err(bad("user info in the URL is not supported"));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if host.is_empty() {
            return Err(bad("missing host"));
        }
        let port = authority.port_u16().unwrap_or(default_port);
        if port == 0 {
            return Err(bad("port 0 cannot be connected to"));
        }
        let addr = host
            .parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, port));
        if HeaderValue::from_str(authority.as_str()).is_err() {
            return Err(bad("host is not a valid header value"));
        }
        let path = uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        // The probe's own headers, each replaced by an extra header of the same name.
        let user_agent = concat!("loadprobe/", env!("CARGO_PKG_VERSION"));
        let own = [
            (http::header::HOST, authority.as_str()),
            (http::header::USER_AGENT, user_agent),
            (http::header::ACCEPT, "*/*"),
        ];
        let mut head = format!("GET {path} HTTP/1.1\r\n").into_bytes();
        let mut line = |name: &str, value: &[u8]| {
            head.extend_from_slice(name.as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value);
            head.extend_from_slice(b"\r\n");
        };
        for (name, value) in &own {
            match headers.iter().find(|h| h.name == name) {
                Some(h) => line(h.name.as_str(), h.value.as_bytes()),
                None => line(name.as_str(), value.as_bytes()),
            }
        }
        for h in headers {
            if !own.iter().any(|(name, _)| h.name == name) {
                line(h.name.as_str(), h.value.as_bytes());
            }
        }
        let mut close = head.clone();
        close.extend_from_slice(b"connection: close\r\n\r\n");
        head.extend_from_slice(b"\r\n");
        Ok(Target {
            host: host.to_owned(),
            port,
            addr,
            https,
            tls: None,
            keep_alive: head,
            close,
        })
    }

    /// Builds the TLS client of an `https://` target (reads `--ca-file` or the system's
    /// roots); a plain target is returned as it is.
    pub(crate) fn with_tls(mut self, opts: &TlsOptions) -> Result<Target, ProbeError> {
        if self.https {
            self.tls = Some(Tls::new(opts, &self.host)?);
        }
        Ok(self)
    }

    pub(crate) fn is_tls(&self) -> bool {
        self.https
    }

    /// The URL's host, without brackets around an IPv6 literal.
    pub(crate) fn host(&self) -> &str {
        &self.host
    }

    /// Connects before `deadline`: TCP with `TCP_NODELAY`, then the TLS handshake for
    /// `https://`. Resolves the host name on every connect (as a browser would, so a load
    /// balancer's changing addresses are followed). A TCP connect that does not finish in time
    /// is `connect_timeout`, a handshake that does not is `tls_handshake`.
    pub(crate) async fn connect(&self, deadline: Instant) -> Result<Stream, ErrorKind> {
        let tcp = match timeout_at(deadline, self.connect_tcp()).await {
            Ok(tcp) => tcp?,
            Err(_) => return Err(ErrorKind::ConnectTimeout),
        };
        match &self.tls {
            Some(tls) => match timeout_at(deadline, tls.handshake(tcp)).await {
                Ok(stream) => stream,
                Err(_) => Err(ErrorKind::TlsHandshake),
            },
            // `Probe::start` builds the client of every https target: never plain by mistake.
            None if self.https => Err(ErrorKind::TlsHandshake),
            None => Ok(Stream::Plain(tcp)),
        }
    }

    async fn connect_tcp(&self) -> Result<TcpStream, ErrorKind> {
        let stream = match self.addr {
            Some(addr) => TcpStream::connect(addr).await,
            None => TcpStream::connect((self.host.as_str(), self.port)).await,
        }
        .map_err(|e| ErrorKind::from_connect(&e))?;
        // Latency figures are meaningless with Nagle on; failure to set it is not worth a request.
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    /// The serialized `GET`; with `connection: close` for one-shot connections.
    pub(crate) fn request(&self, close: bool) -> &[u8] {
        if close { &self.close } else { &self.keep_alive }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_host_port_and_path() {
        let t = Target::from_uri(&Uri::from_static("http://127.0.0.1:8080/a?b=1"), &[]).unwrap();
        assert_eq!(t.addr, Some("127.0.0.1:8080".parse().unwrap()));
        let req = std::str::from_utf8(t.request(false)).unwrap();
        assert!(
            req.starts_with("GET /a?b=1 HTTP/1.1\r\nhost: 127.0.0.1:8080\r\n"),
            "{req}"
        );
        assert!(req.ends_with("\r\n\r\n") && !req.contains("close"));
        assert!(
            std::str::from_utf8(t.request(true))
                .unwrap()
                .contains("connection: close\r\n")
        );
        let t = Target::from_uri(&Uri::from_static("http://example.com"), &[]).unwrap();
        assert_eq!((t.port, t.addr), (80, None));
        assert!(
            t.request(false)
                .starts_with(b"GET / HTTP/1.1\r\nhost: example.com\r\n")
        );
        let t = Target::from_uri(&Uri::from_static("http://[::1]:9/"), &[]).unwrap();
        assert_eq!(t.addr, Some("[::1]:9".parse().unwrap()));
        let t = Target::from_uri(&Uri::from_static("https://example.com/x"), &[]).unwrap();
        assert_eq!((t.port, t.is_tls(), t.host()), (443, true, "example.com"));
        let t = Target::from_uri(&Uri::from_static("https://[::1]:8443/"), &[]).unwrap();
        assert_eq!((t.port, t.host()), (8443, "::1"));
    }

    #[test]
    fn extra_headers_replace_the_probes_own_or_follow_them() {
        let headers: Vec<RequestHeader> =
            ["Host: app.example.com", "X-Probe: a b", "Accept: text/html"]
                .iter()
                .map(|h| h.parse().unwrap())
                .collect();
        let t = Target::from_uri(&Uri::from_static("https://10.0.0.1/health"), &headers).unwrap();
        let req = std::str::from_utf8(t.request(false)).unwrap();
        assert_eq!(
            req,
            concat!(
                "GET /health HTTP/1.1\r\nhost: app.example.com\r\nuser-agent: loadprobe/",
                env!("CARGO_PKG_VERSION"),
                "\r\naccept: text/html\r\nx-probe: a b\r\n\r\n"
            )
        );
        let close = std::str::from_utf8(t.request(true)).unwrap();
        assert!(
            close.ends_with("x-probe: a b\r\nconnection: close\r\n\r\n"),
            "{close}"
        );
    }

    #[test]
    fn rejects_what_it_cannot_probe() {
        for (url, needle) in [
            ("ftp://example.com/", "ftp"),
            ("/just/a/path", "scheme"),
            ("http://u:p@example.com/", "user info"),
            ("http://example.com:0/", "port 0"),
        ] {
            let err = Target::from_uri(&url.parse().unwrap(), &[])
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle) && err.contains(url), "{url}: {err}");
        }
    }
}

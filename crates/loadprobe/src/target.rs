//! The probed URL, taken apart once so that each request costs no parsing.

use std::net::{IpAddr, SocketAddr};

use http::Uri;
use http::header::HeaderValue;
use http::uri::PathAndQuery;

use crate::error::{ErrorKind, ProbeError};

/// Where requests go and what they look like.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    host: String,
    port: u16,
    /// Set when the host is an IP literal: no name resolution per connection.
    addr: Option<SocketAddr>,
    /// The request, serialized once: keep-alive, and with `connection: close`.
    keep_alive: Vec<u8>,
    close: Vec<u8>,
}

impl Target {
    pub(crate) fn from_uri(uri: &Uri) -> Result<Target, ProbeError> {
        let bad = |reason: &str| ProbeError::InvalidTarget {
            url: uri.to_string(),
            reason: reason.to_owned(),
        };
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(bad("https is not supported: probe the plain http listener"));
            }
            Some(other) => return Err(bad(&format!("unsupported scheme {other}: expected http"))),
            None => return Err(bad("missing scheme: expected http://host[:port]/path")),
        }
        let authority = uri
            .authority()
            .ok_or_else(|| bad("missing host: expected http://host[:port]/path"))?;
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
        let port = authority.port_u16().unwrap_or(80);
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
        let request = |extra: &str| {
            format!(
                "GET {path} HTTP/1.1\r\nhost: {}\r\nuser-agent: loadprobe/{}\r\naccept: */*\r\n{extra}\r\n",
                authority.as_str(),
                env!("CARGO_PKG_VERSION")
            )
            .into_bytes()
        };
        Ok(Target {
            host: host.to_owned(),
            port,
            addr,
            keep_alive: request(""),
            close: request("connection: close\r\n"),
        })
    }

    /// Opens a TCP connection with `TCP_NODELAY`; resolves the host name on every connect (as a
    /// browser would, so a load balancer's changing addresses are followed).
    pub(crate) async fn connect(&self) -> Result<tokio::net::TcpStream, ErrorKind> {
        let stream = match self.addr {
            Some(addr) => tokio::net::TcpStream::connect(addr).await,
            None => tokio::net::TcpStream::connect((self.host.as_str(), self.port)).await,
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
        let t = Target::from_uri(&Uri::from_static("http://127.0.0.1:8080/a?b=1")).unwrap();
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
        let t = Target::from_uri(&Uri::from_static("http://example.com")).unwrap();
        assert_eq!((t.port, t.addr), (80, None));
        assert!(
            t.request(false)
                .starts_with(b"GET / HTTP/1.1\r\nhost: example.com\r\n")
        );
        let t = Target::from_uri(&Uri::from_static("http://[::1]:9/")).unwrap();
        assert_eq!(t.addr, Some("[::1]:9".parse().unwrap()));
    }

    #[test]
    fn rejects_what_it_cannot_probe() {
        for (url, needle) in [
            ("https://example.com/", "https"),
            ("ftp://example.com/", "ftp"),
            ("/just/a/path", "scheme"),
            ("http://u:p@example.com/", "user info"),
            ("http://example.com:0/", "port 0"),
        ] {
            let err = Target::from_uri(&url.parse().unwrap())
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle) && err.contains(url), "{url}: {err}");
        }
    }
}

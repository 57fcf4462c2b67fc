//! The probed URL, taken apart once so that each request costs no parsing.

use std::net::{IpAddr, SocketAddr};

use http::header::HeaderValue;
use http::uri::PathAndQuery;
use http::{Request, Uri};
use http_body_util::Empty;

use crate::error::{ErrorKind, ProbeError};

/// Where requests go and what they look like.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    host: String,
    port: u16,
    /// Set when the host is an IP literal: no name resolution per connection.
    addr: Option<SocketAddr>,
    host_header: HeaderValue,
    path: PathAndQuery,
}

const USER_AGENT: HeaderValue =
    HeaderValue::from_static(concat!("loadprobe/", env!("CARGO_PKG_VERSION")));
const CLOSE: HeaderValue = HeaderValue::from_static("close");

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
        let host_header = HeaderValue::from_str(authority.as_str())
            .map_err(|_| bad("host is not a valid header value"))?;
        let path = uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        Ok(Target {
            host: host.to_owned(),
            port,
            addr,
            host_header,
            path,
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

    /// A `GET` for the target; cheap (shared buffers, one header map).
    pub(crate) fn request(&self, close: bool) -> Request<Empty<bytes::Bytes>> {
        let mut req = Request::new(Empty::new());
        *req.uri_mut() = Uri::from(self.path.clone());
        let h = req.headers_mut();
        h.insert(http::header::HOST, self.host_header.clone());
        h.insert(http::header::USER_AGENT, USER_AGENT);
        if close {
            h.insert(http::header::CONNECTION, CLOSE);
        }
        req
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
        assert_eq!(t.host_header, "127.0.0.1:8080");
        assert_eq!(t.path.as_str(), "/a?b=1");
        let t = Target::from_uri(&Uri::from_static("http://example.com")).unwrap();
        assert_eq!((t.port, t.addr, t.path.as_str()), (80, None, "/"));
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

//! HTTPS test targets: private CAs and certificates made at test start (rcgen), and a raw
//! HTTP/1.1 server behind rustls that records what it was sent, can present another
//! certificate to a range of connections (by accept order, so that where it happens does not
//! depend on when the test's thread runs) and can close keep-alive connections unannounced.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use super::bind;

/// A private certificate authority.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    /// Its certificate, PEM: what `--ca-file` is given.
    pub pem: String,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// Writes the CA certificate into `dir`; the path.
    pub fn write(&self, dir: &Path) -> PathBuf {
        let path = dir.join("ca.pem");
        std::fs::write(&path, &self.pem).unwrap();
        path
    }

    /// A server configuration with a certificate for `names` (DNS names or IP addresses)
    /// signed by this CA.
    pub fn server_config(&self, names: &[&str]) -> Arc<ServerConfig> {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let chain: Vec<CertificateDer<'static>> = vec![cert.der().clone()];
        let mut config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

/// What the HTTPS server saw; shared with the test.
#[derive(Debug, Default)]
pub struct Seen {
    /// TCP connections accepted.
    pub connections: AtomicU64,
    /// Handshakes completed.
    pub handshakes: AtomicU64,
    /// Requests answered.
    pub requests: AtomicU64,
    /// Keep-alive connections the server closed after a response without saying so.
    pub closed_unannounced: AtomicU64,
    /// SNI names sent by clients (`-` when none was).
    pub server_names: Mutex<BTreeSet<String>>,
    /// The header lines of the last request, `name: value`, lower-case names.
    pub last_headers: Mutex<Vec<String>>,
}

/// How the HTTPS server behaves.
#[derive(Default)]
pub struct Behaviour {
    /// Connections (0-based, in accept order) in this range get this configuration instead.
    pub other_cert: Option<(Range<u64>, Arc<ServerConfig>)>,
    /// Close every keep-alive connection (close_notify, FIN) right after its response, without
    /// `connection: close`: as a server whose idle timeout fires between two requests.
    pub close_after_response: bool,
}

/// An HTTPS/1.1 server on 127.0.0.1 answering `200 ok` with `x-app-version: v1` and
/// `x-served-by: tls-1`.
pub struct TlsServer {
    pub addr: SocketAddr,
    pub seen: Arc<Seen>,
    task: JoinHandle<()>,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TlsServer {
    pub async fn start(config: Arc<ServerConfig>, behaviour: Behaviour) -> TlsServer {
        let listener = bind(0);
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Seen::default());
        let s = seen.clone();
        let close = behaviour.close_after_response;
        let task = tokio::spawn(async move {
            let mut n = 0u64;
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                s.connections.fetch_add(1, Ordering::SeqCst);
                let config = match &behaviour.other_cert {
                    Some((range, other)) if range.contains(&n) => other.clone(),
                    _ => config.clone(),
                };
                n += 1;
                let acceptor = tokio_rustls::TlsAcceptor::from(config);
                tokio::spawn(serve_conn(stream, acceptor, s.clone(), close));
            }
        });
        TlsServer { addr, seen, task }
    }

    pub fn url(&self) -> String {
        format!("https://{}/", self.addr)
    }

    pub fn requests(&self) -> u64 {
        self.seen.requests.load(Ordering::SeqCst)
    }

    pub fn connections(&self) -> u64 {
        self.seen.connections.load(Ordering::SeqCst)
    }

    pub fn handshakes(&self) -> u64 {
        self.seen.handshakes.load(Ordering::SeqCst)
    }

    pub fn last_headers(&self) -> Vec<String> {
        self.seen.last_headers.lock().unwrap().clone()
    }

    pub fn server_names(&self) -> BTreeSet<String> {
        self.seen.server_names.lock().unwrap().clone()
    }
}

async fn serve_conn(
    stream: TcpStream,
    acceptor: tokio_rustls::TlsAcceptor,
    seen: Arc<Seen>,
    close_after_response: bool,
) {
    let _ = stream.set_nodelay(true);
    let Ok(mut tls) = acceptor.accept(stream).await else {
        return; // the client refused the certificate, or spoke no TLS
    };
    seen.handshakes.fetch_add(1, Ordering::SeqCst);
    let sni = tls.get_ref().1.server_name().unwrap_or("-").to_owned();
    seen.server_names.lock().unwrap().insert(sni);
    let mut buf = Vec::with_capacity(4096);
    loop {
        // One request head (GET: no body).
        let end = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            let mut chunk = [0u8; 4096];
            match tls.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        if !matches!(req.parse(&buf[..end]), Ok(httparse::Status::Complete(_))) {
            return;
        }
        let lines: Vec<String> = req
            .headers
            .iter()
            .map(|h| {
                format!(
                    "{}: {}",
                    h.name.to_ascii_lowercase(),
                    String::from_utf8_lossy(h.value)
                )
            })
            .collect();
        let close = lines.iter().any(|l| l == "connection: close");
        *seen.last_headers.lock().unwrap() = lines;
        buf.drain(..end);
        seen.requests.fetch_add(1, Ordering::SeqCst);
        let resp: &[u8] = if close {
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-app-version: v1\r\nx-served-by: tls-1\r\nconnection: close\r\n\r\nok"
        } else {
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-app-version: v1\r\nx-served-by: tls-1\r\n\r\nok"
        };
        if tls.write_all(resp).await.is_err() || tls.flush().await.is_err() {
            return;
        }
        if close || close_after_response {
            if !close {
                seen.closed_unannounced.fetch_add(1, Ordering::SeqCst);
            }
            let _ = tls.shutdown().await;
            return;
        }
    }
}

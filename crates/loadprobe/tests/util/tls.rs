//! HTTPS test targets: private CAs and certificates made at test start (rcgen), and a raw
//! HTTP/1.1 server behind rustls that records what it was sent, whose certificate can be
//! replaced while it runs and which can close idle keep-alive connections.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
    /// Idle keep-alive connections the server closed.
    pub idle_closed: AtomicU64,
    /// SNI names sent by clients (`-` when none was).
    pub server_names: Mutex<BTreeSet<String>>,
    /// The header lines of the last request, `name: value`, lower-case names.
    pub last_headers: Mutex<Vec<String>>,
}

/// An HTTPS/1.1 server on 127.0.0.1 answering `200 ok` with `x-app-version: v1` and
/// `x-served-by: tls-1`.
pub struct TlsServer {
    pub addr: SocketAddr,
    pub seen: Arc<Seen>,
    config: Arc<Mutex<Arc<ServerConfig>>>,
    task: JoinHandle<()>,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TlsServer {
    /// Serves with `config`; closes a keep-alive connection idle for `idle_close` (after a
    /// TLS close_notify, as servers do).
    pub async fn start(config: Arc<ServerConfig>, idle_close: Option<Duration>) -> TlsServer {
        let listener = bind(0);
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Seen::default());
        let config = Arc::new(Mutex::new(config));
        let (s, c) = (seen.clone(), config.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                s.connections.fetch_add(1, Ordering::SeqCst);
                let acceptor = tokio_rustls::TlsAcceptor::from(c.lock().unwrap().clone());
                tokio::spawn(serve_conn(stream, acceptor, s.clone(), idle_close));
            }
        });
        TlsServer {
            addr,
            seen,
            config,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("https://{}/", self.addr)
    }

    /// New connections get this configuration (its certificate) from now on.
    pub fn set_config(&self, config: Arc<ServerConfig>) {
        *self.config.lock().unwrap() = config;
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
    idle_close: Option<Duration>,
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
            let read = match idle_close {
                Some(idle) if buf.is_empty() => {
                    match tokio::time::timeout(idle, tls.read(&mut chunk)).await {
                        Ok(r) => r,
                        Err(_) => {
                            seen.idle_closed.fetch_add(1, Ordering::SeqCst);
                            let _ = tls.shutdown().await;
                            return;
                        }
                    }
                }
                _ => tls.read(&mut chunk).await,
            };
            match read {
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
        if close {
            let _ = tls.shutdown().await;
            return;
        }
    }
}

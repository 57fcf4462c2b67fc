//! HTTPS: a rustls client (ring provider, TLS 1.2 and 1.3, ALPN `http/1.1`) built once per
//! probe, the stream the connections read and write, and how TLS failures are classified.
//!
//! Trust: the system's root certificates (`rustls-native-certs`: the same store curl and
//! OpenSSL use, `SSL_CERT_FILE` / `SSL_CERT_DIR` honoured), or only the certificates of
//! `--ca-file` (a private CA), or nothing at all with `--insecure` (handshake signatures are
//! still checked, the certificate is not). The name sent as SNI and verified is the URL's host
//! unless `--sni` names another.
//!
//! Failures: a refused certificate is `tls_cert`, any other handshake failure `tls_handshake`,
//! a TLS error after the handshake a `protocol_error`. An idle keep-alive connection is checked
//! before reuse by one poll of the TLS layer, so a TLS 1.3 session ticket is consumed and not
//! taken for a close.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::config::TlsOptions;
use crate::error::{ErrorKind, ProbeError};

/// Everything a connection needs to speak TLS to the target, built once.
#[derive(Clone)]
pub(crate) struct Tls {
    connector: TlsConnector,
    server_name: ServerName<'static>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

/// The name to send as SNI and verify: `--sni`, else the URL's host.
pub(crate) fn server_name(
    opts: &TlsOptions,
    host: &str,
) -> Result<ServerName<'static>, ProbeError> {
    let (name, flag) = match &opts.sni {
        Some(sni) => (sni.as_str(), "--sni"),
        None => (host, "URL host"),
    };
    ServerName::try_from(name.to_owned()).map_err(|_| ProbeError::InvalidConfig {
        flag,
        value: name.to_owned(),
        reason: "not a DNS name or IP address a TLS server name can be",
    })
}

impl Tls {
    /// Loads the trust anchors (system roots or `--ca-file`) and builds the client.
    pub(crate) fn new(opts: &TlsOptions, host: &str) -> Result<Tls, ProbeError> {
        let server_name = server_name(opts, host)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| ProbeError::Internal(format!("TLS setup: {e}")))?;
        let mut config = if opts.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(
                    provider.signature_verification_algorithms,
                )))
                .with_no_client_auth()
        } else {
            let roots = match &opts.ca_file {
                Some(path) => ca_file_roots(path)?,
                None => system_roots()?,
            };
            builder.with_root_certificates(roots).with_no_client_auth()
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls {
            connector: TlsConnector::from(Arc::new(config)),
            server_name,
        })
    }

    /// The TLS handshake over a connected socket. Failures are `tls_cert` (the certificate was
    /// refused) or `tls_handshake` (anything else, the peer closing included), except a reset,
    /// which is `connection_reset` as at any other moment.
    pub(crate) async fn handshake(&self, tcp: TcpStream) -> Result<Stream, ErrorKind> {
        match self.connector.connect(self.server_name.clone(), tcp).await {
            Ok(tls) => Ok(Stream::Tls(Box::new(tls))),
            Err(e) => Err(handshake_error(&e)),
        }
    }
}

fn ca_file_roots(path: &Path) -> Result<RootCertStore, ProbeError> {
    let bad = |reason: String| ProbeError::CaFile {
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(pem_error(&e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(pem_error(&e)))?;
    if certs.is_empty() {
        return Err(bad("no PEM certificate in it".to_owned()));
    }
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| bad(format!("a certificate in it cannot be a trust anchor: {e}")))?;
    }
    Ok(roots)
}

fn pem_error(e: &rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(io) => io.to_string(),
        other => format!("not a PEM file: {other:?}"),
    }
}

fn system_roots() -> Result<RootCertStore, ProbeError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        let why = found
            .errors
            .first()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default();
        return Err(ProbeError::NoSystemRoots(why));
    }
    Ok(roots)
}

/// `--insecure`: any certificate is accepted; the handshake's signatures are still verified,
/// so the session is encrypted with the key of whoever presented the certificate.
#[derive(Debug)]
struct NoVerification(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// The rustls error inside an I/O error from tokio-rustls, if that is what it is.
fn rustls_error(e: &io::Error) -> Option<&rustls::Error> {
    e.get_ref()?.downcast_ref::<rustls::Error>()
}

/// Classifies a failed handshake.
pub(crate) fn handshake_error(e: &io::Error) -> ErrorKind {
    match rustls_error(e) {
        Some(rustls::Error::InvalidCertificate(_)) => ErrorKind::TlsCert,
        Some(_) => ErrorKind::TlsHandshake,
        None => match e.kind() {
            io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => {
                ErrorKind::ConnectionReset
            }
            _ => ErrorKind::TlsHandshake,
        },
    }
}

/// A TLS failure after the handshake (a bad record, an alert): the exchange broke below
/// HTTP, `protocol_error`. `None` for plain I/O errors.
pub(crate) fn stream_error(e: &io::Error) -> Option<ErrorKind> {
    rustls_error(e).map(|_| ErrorKind::Protocol)
}

/// A connection's byte stream: plain TCP or TLS over it.
#[derive(Debug)]
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    /// Whether the peer closed this idle connection (or sent something unasked, or broke the
    /// TLS session): then it must not carry a request. Uses what the runtime already knows
    /// about the socket; never waits.
    pub(crate) fn closed(&mut self) -> bool {
        match self {
            // Readiness already known to the runtime: no system call when nothing arrived.
            Stream::Plain(tcp) => {
                let mut probe = [0u8; 1];
                !matches!(tcp.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
            // The TLS layer must see whatever arrived (a TLS 1.3 session ticket is not a
            // close), so it is polled once; a session ticket is consumed and yields nothing.
            Stream::Tls(tls) => {
                let mut probe = [0u8; 1];
                let mut buf = ReadBuf::new(&mut probe);
                let mut cx = Context::from_waker(std::task::Waker::noop());
                !matches!(
                    Pin::new(tls.as_mut()).poll_read(&mut cx, &mut buf),
                    Poll::Pending
                )
            }
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn certificate_errors_are_told_from_handshake_errors() {
        let cert = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        assert_eq!(handshake_error(&cert), ErrorKind::TlsCert);
        let alert = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(rustls::AlertDescription::HandshakeFailure),
        );
        assert_eq!(handshake_error(&alert), ErrorKind::TlsHandshake);
        let eof = io::Error::new(io::ErrorKind::UnexpectedEof, "tls handshake eof");
        assert_eq!(handshake_error(&eof), ErrorKind::TlsHandshake);
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert_eq!(handshake_error(&reset), ErrorKind::ConnectionReset);
        assert_eq!(stream_error(&alert), Some(ErrorKind::Protocol));
        assert_eq!(stream_error(&reset), None);
    }

    #[test]
    fn server_names_come_from_sni_or_the_host() {
        let none = TlsOptions::default();
        assert_eq!(
            server_name(&none, "example.com").unwrap(),
            ServerName::try_from("example.com").unwrap()
        );
        assert!(matches!(
            server_name(&none, "127.0.0.1").unwrap(),
            ServerName::IpAddress(_)
        ));
        let sni = TlsOptions {
            sni: Some("app.example.com".into()),
            ..TlsOptions::default()
        };
        assert_eq!(
            server_name(&sni, "127.0.0.1").unwrap(),
            ServerName::try_from("app.example.com").unwrap()
        );
        let bad = TlsOptions {
            sni: Some("bad name!".into()),
            ..TlsOptions::default()
        };
        assert!(
            server_name(&bad, "x")
                .unwrap_err()
                .to_string()
                .contains("--sni")
        );
    }
}

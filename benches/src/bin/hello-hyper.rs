//! The baseline: the smallest reasonable hyper 1 + tokio HTTP/1.1 server, built with the same
//! profile as `server`, so benchmarks can say how much the application costs on top of hyper.
//!
//! Usage: `hello-hyper [ADDR] [--tls CERT_PEM]` (default 127.0.0.1:8081). Prints the bound
//! address on stdout. With `--tls` it serves HTTPS (rustls on ring, the TLS stack loadprobe
//! uses) with a self-signed certificate for 127.0.0.1 and localhost made at start, written to
//! CERT_PEM for clients to trust (`loadprobe --ca-file CERT_PEM`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

async fn hello(_: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(
        b"Hello, World!",
    ))))
}

/// A self-signed certificate for the loopback names, its PEM written to `cert_out`.
fn tls_acceptor(cert_out: &str) -> std::io::Result<TlsAcceptor> {
    let fail =
        |what: &str, e: &dyn std::fmt::Display| std::io::Error::other(format!("{what}: {e}"));
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
        .map_err(|e| fail("certificate", &e))?;
    std::fs::write(cert_out, cert.cert.pem())?;
    let key = rustls::pki_types::PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der());
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| fail("TLS versions", &e))?
    .with_no_client_auth()
    .with_single_cert(vec![cert.cert.der().clone()], key.into())
    .map_err(|e| fail("TLS certificate", &e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

async fn serve(stream: TcpStream, tls: Option<TlsAcceptor>) {
    let conn = http1::Builder::new();
    let _ = match tls {
        None => {
            conn.serve_connection(TokioIo::new(stream), service_fn(hello))
                .await
        }
        Some(acceptor) => match acceptor.accept(stream).await {
            Ok(stream) => {
                conn.serve_connection(TokioIo::new(stream), service_fn(hello))
                    .await
            }
            Err(_) => return,
        },
    };
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut addr = SocketAddr::from(([127, 0, 0, 1], 8081));
    let mut tls = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--tls" {
            let out = args
                .next()
                .ok_or_else(|| std::io::Error::other("--tls needs a path for the certificate"))?;
            tls = Some(tls_acceptor(&out)?);
        } else {
            addr = arg
                .parse()
                .map_err(|e| std::io::Error::other(format!("bad address {arg:?}: {e}")))?;
        }
    }
    let listener = TcpListener::bind(addr).await?;
    println!("{}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        tokio::spawn(serve(stream, tls.clone()));
    }
}

//! A minimal hyper HTTP/1.1 server for trying the probe and for benchmarks.
//!
//! `cargo run --release -p loadprobe --example hello -- 127.0.0.1:8080` prints the address it
//! listens on; every response is `200 Hello, World!` with `x-app-version` and `x-served-by`.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".to_owned())
        .parse()?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(|_req: Request<hyper::body::Incoming>| async {
                let mut resp = Response::new(Full::new(Bytes::from_static(b"Hello, World!")));
                let h = resp.headers_mut();
                h.insert("x-app-version", http::HeaderValue::from_static("hello"));
                h.insert("x-served-by", http::HeaderValue::from_static("hello-1"));
                Ok::<_, Infallible>(resp)
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

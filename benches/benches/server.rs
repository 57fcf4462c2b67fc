//! The server's request handling as a `tower::Service` call, no sockets: what hyper calls per
//! request, from a parsed request to a response ready to write.

mod common;

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::{Method, Request};
use server::routes::Routes;
use server::stamp::StampLayer;
use server::{AppState, Config};
use tower::{Layer, Service};

fn service() -> impl Service<Request<()>, Response = http::Response<server::routes::Body>> + Clone {
    let config = Config::from_lookup(|name| match name {
        "APP_VERSION" => Some("v1".into()),
        "TASK_ID" => Some("task-1".into()),
        _ => None,
    })
    .expect("the defaults are a valid configuration");
    let state = AppState::leak(config);
    StampLayer::new(state).layer(Routes::new(state))
}

fn get(path: &'static str) -> Request<()> {
    Request::builder()
        .method(Method::GET)
        .uri(path)
        .body(())
        .expect("a valid request")
}

fn bench(c: &mut Criterion) {
    // server/call/{page,health,version}: one Stamp(Routes) call and its future polled to the response (request built
    // outside the measurement).
    let mut g = c.benchmark_group("server/call");
    let mut svc = service();
    for (name, path) in [
        ("page", "/"),
        ("health", "/health"),
        ("version", "/version"),
    ] {
        g.bench_function(name, |b| {
            b.iter_batched(
                || get(path),
                |req| black_box(common::now(svc.call(req))),
                BatchSize::SmallInput,
            );
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = bench
}
criterion_main!(benches);

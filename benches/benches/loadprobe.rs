//! The probe's per-request work, no sockets: the recorder taking one result, an interval
//! closing, and `wire.rs` reading one response.

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use loadprobe::bench::{Recorder, ResponseParser};

/// What `server` answers to `GET /` (headers as sent, a 260-byte page).
fn page_response() -> Vec<u8> {
    let body = "x".repeat(260);
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {}\r\nx-app-version: v1\r\nx-served-by: 4f3c2a1b9e8d7c6b5a4f3e2d1c0b9a88\r\ndate: Tue, 01 Jul 2025 12:00:00 GMT\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// What the load balancer answers when a target is gone (headers the probe attributes by).
const LB_502: &[u8] = b"HTTP/1.1 502 Bad Gateway\r\nserver: awselb/2.0\r\ncontent-type: text/plain\r\nx-localaws-error: connection-refused\r\nx-localaws-target: 127.0.1.2:32768\r\nx-localaws-target-id: 4f3c2a1b9e8d7c6b5a4f3e2d1c0b9a88\r\ncontent-length: 12\r\n\r\n502 bad gw\r\n";

fn recorder(c: &mut Criterion) {
    let mut g = c.benchmark_group("loadprobe/recorder");
    // loadprobe/recorder/record_sample: one successful result into an open 1 s interval.
    g.bench_function("record_sample", |b| {
        b.iter_custom(|iters| {
            let mut r = Recorder::new(Duration::from_secs(1));
            let start = Instant::now();
            for seq in 0..iters {
                // 1 µs apart: an interval closes once per million samples.
                r.record_ok(seq, seq);
            }
            start.elapsed()
        });
    });
    // loadprobe/recorder/interval_rollover: one result that closes the interval before it
    // (percentiles of its histogram, one timeline row, histogram recycled).
    g.bench_function("interval_rollover", |b| {
        b.iter_custom(|iters| {
            let mut r = Recorder::new(Duration::from_millis(1));
            let start = Instant::now();
            for seq in 0..iters {
                r.record_ok(seq, seq * 1000);
            }
            start.elapsed()
        });
    });
    g.finish();
}

fn wire(c: &mut Criterion) {
    let mut g = c.benchmark_group("loadprobe/wire");
    let page = page_response();
    let mut parser = ResponseParser::default();
    assert_eq!(parser.parse(&page), Some(200), "the page parses");
    assert_eq!(parser.parse(LB_502), Some(502), "the 502 parses");
    // loadprobe/wire/parse_200_page: one server page response, head parsed, body skipped.
    g.bench_function("parse_200_page", |b| {
        b.iter(|| black_box(parser.parse(black_box(&page))));
    });
    // loadprobe/wire/parse_502_lb: one load balancer error, attribution headers read.
    g.bench_function("parse_502_lb", |b| {
        b.iter(|| black_box(parser.parse(black_box(LB_502))));
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = recorder, wire
}
criterion_main!(benches);

//! Latency histograms: percentiles and a portable encoding (HdrHistogram V2 + deflate, base64)
//! so that `merge` can combine several probes exactly.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2DeflateSerializer};
use hdrhistogram::{Counter, Histogram};
use serde::{Deserialize, Serialize};

/// Significant digits of every histogram.
pub(crate) const SIGFIG: u8 = 3;

/// A histogram for latencies in µs up to `high_us` (larger values are clamped to it).
pub(crate) fn new_histogram<T: Counter>(high_us: u64) -> Histogram<T> {
    // Bounds are constants and validated config values, so this cannot fail; fall back to an
    // auto-resizing histogram rather than panic.
    Histogram::new_with_bounds(1, high_us.max(2), SIGFIG).unwrap_or_else(|_| {
        let mut h = Histogram::new(SIGFIG).unwrap_or_else(|_| unreachable!("3 digits is valid"));
        h.auto(true);
        h
    })
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest value.
    pub max: u64,
}

impl Percentiles {
    /// Percentiles of `h` (all zero when it is empty). Values are the highest equivalent value
    /// of their bucket, so they never understate.
    pub fn of<T: Counter>(h: &Histogram<T>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        let q = |q: f64| h.highest_equivalent(h.value_at_quantile(q));
        Percentiles {
            p50: q(0.50),
            p90: q(0.90),
            p99: q(0.99),
            p999: q(0.999),
            max: h.max(),
        }
    }
}

/// Encodes a histogram as base64 of its V2-deflate serialization.
pub(crate) fn encode<T: Counter>(h: &Histogram<T>) -> String {
    let mut buf = Vec::new();
    match V2DeflateSerializer::new().serialize(h, &mut buf) {
        Ok(_) => STANDARD.encode(buf),
        Err(_) => String::new(),
    }
}

/// Decodes what [`encode`] produced.
pub(crate) fn decode(s: &str) -> Result<Histogram<u64>, String> {
    let bytes = STANDARD
        .decode(s.trim())
        .map_err(|e| format!("histogram is not base64: {e}"))?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| format!("histogram cannot be decoded: {e:?}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut h = new_histogram::<u64>(10_000_000);
        for v in 1..=1000u64 {
            h.record(v * 1000).unwrap(); // 1 ms .. 1000 ms
        }
        let p = Percentiles::of(&h);
        // 3 significant digits: within 0.1 % of the exact values, never below them.
        let close = |got: u64, want: u64| got >= want && got <= want + want / 1000 + 1;
        assert!(close(p.p50, 500_000), "{p:?}");
        assert!(close(p.p90, 900_000), "{p:?}");
        assert!(close(p.p99, 990_000), "{p:?}");
        assert!(close(p.p999, 999_000), "{p:?}");
        assert!(close(p.max, 1_000_000), "{p:?}");
        assert_eq!(
            Percentiles::of(&new_histogram::<u64>(1000)),
            Percentiles::default()
        );
    }

    #[test]
    fn values_above_the_bound_are_clamped_not_lost() {
        let mut h = new_histogram::<u32>(1_000);
        h.saturating_record(5_000_000);
        assert_eq!(h.len(), 1);
        assert!(Percentiles::of(&h).max >= 1_000);
    }

    #[test]
    fn encoding_round_trips() {
        let mut h = new_histogram::<u64>(10_000_000);
        for v in [1u64, 10, 100, 1000, 250_000] {
            h.record(v).unwrap();
        }
        let back = decode(&encode(&h)).unwrap();
        assert_eq!(back.len(), 5);
        assert_eq!(Percentiles::of(&back), Percentiles::of(&h));
        assert!(decode("not base64!").is_err());
    }
}

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

/// Ticks per half distance to 100 % in [`percentile_points`]: HdrHistogram's own percentile
/// distribution output uses 5.
pub(crate) const TICKS_PER_HALF_DISTANCE: u32 = 5;

/// Most points [`percentile_points`] returns. Five ticks per halving of the distance to 100 %
/// make about 5 × log2(count) points (some 170 for ten billion requests); this bound only guards
/// it.
pub(crate) const MAX_PERCENTILE_POINTS: usize = 300;

/// One point of a percentile distribution: HdrHistogram's `Value  Percentile  TotalCount` line.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PercentilePoint {
    /// Percentile, 0 to 100 (the last point, 100, is the maximum).
    pub percentile: f64,
    /// Latency at that percentile, µs (the highest equivalent value of its bucket, as in
    /// [`Percentiles`]).
    pub latency_us: u64,
    /// Requests at or below that latency.
    pub count: u64,
}

/// The percentile distribution of `h` at the quantiles HdrHistogram prints (its
/// `iter_quantiles` with [`TICKS_PER_HALF_DISTANCE`]: 0, 10, 20, 30, 40, 50, 55, ... 75, 77.5,
/// ... 87.5, 88.75, 90, ... ), up to the last quantile below the maximum, then the maximum at
/// 100 %. The quantiles are computed, not accumulated, and each value is found as
/// [`Percentiles::of`] finds it, so the 50 and 90 % points equal `p50` and `p90`. At most
/// [`MAX_PERCENTILE_POINTS`] points, increasing in percentile and non-decreasing in latency and
/// count; empty for an empty histogram. One pass over the histogram.
pub(crate) fn percentile_points<T: Counter>(h: &Histogram<T>) -> Vec<PercentilePoint> {
    let n = h.len();
    if n == 0 {
        return Vec::new();
    }
    // Past this quantile every value is the maximum.
    let below_max = (n - 1) as f64 / n as f64;
    let mut quantiles: Vec<f64> = Vec::new();
    let ticks = TICKS_PER_HALF_DISTANCE;
    'halvings: for halving in 0..53 {
        let from = 1.0 - 0.5f64.powi(halving);
        let step = 0.5f64.powi(halving + 1) / f64::from(ticks);
        for tick in 0..ticks {
            // Rounded to 12 decimals: 0.9 is the 0.9 that `Percentiles` asks for.
            let q = ((from + f64::from(tick) * step) * 1e12).round() / 1e12;
            if q > below_max || quantiles.len() + 1 >= MAX_PERCENTILE_POINTS {
                break 'halvings;
            }
            if quantiles.last().is_none_or(|&last| q > last) {
                quantiles.push(q);
            }
        }
    }
    let mut points = Vec::with_capacity(quantiles.len() + 1);
    let mut recorded = h.iter_recorded();
    let (mut count, mut value) = (0u64, 0u64);
    for q in quantiles {
        // As `value_at_quantile`: the first bucket holding the ceil(q × n)th value.
        let target = ((q * n as f64).ceil() as u64).max(1);
        while count < target {
            let Some(v) = recorded.next() else {
                break;
            };
            count = count.saturating_add(v.count_at_value().as_u64());
            value = v.value_iterated_to();
        }
        points.push(PercentilePoint {
            // 90, not 90.00000000000001.
            percentile: (100.0 * q * 1e10).round() / 1e10,
            latency_us: h.highest_equivalent(value),
            count,
        });
    }
    points.push(PercentilePoint {
        percentile: 100.0,
        latency_us: h.max(),
        count: n,
    });
    points
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
    fn percentile_points_are_hdrhistograms_distribution_bounded_and_monotone() {
        assert!(percentile_points(&new_histogram::<u64>(1000)).is_empty());
        let mut h = new_histogram::<u64>(100_000_000);
        // 1 ms .. 100 ms, a long tail: 10 000 values.
        for v in 1..=10_000u64 {
            h.record(v * 10).unwrap();
        }
        h.record(90_000_000).unwrap(); // one 90 s outlier
        let points = percentile_points(&h);
        assert!(points.len() > 20 && points.len() <= MAX_PERCENTILE_POINTS);
        assert_eq!(points[0].percentile, 0.0);
        let last = points.last().unwrap();
        assert_eq!(
            (last.percentile, last.latency_us, last.count),
            (100.0, h.max(), 10_001)
        );
        for w in points.windows(2) {
            assert!(w[0].percentile < w[1].percentile, "{w:?}");
            assert!(w[0].latency_us <= w[1].latency_us, "{w:?}");
            assert!(w[0].count <= w[1].count, "{w:?}");
        }
        // The points agree with the headline percentiles of the same histogram.
        let p = Percentiles::of(&h);
        let at = |pct: f64| {
            points
                .iter()
                .find(|x| x.percentile == pct)
                .unwrap()
                .latency_us
        };
        assert_eq!(at(50.0), p.p50);
        assert_eq!(at(90.0), p.p90);
        // HdrHistogram's ticks: 5 per half distance to 100 %.
        let first: Vec<f64> = points.iter().take(13).map(|x| x.percentile).collect();
        assert_eq!(
            first,
            [
                0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 55.0, 60.0, 65.0, 70.0, 75.0, 77.5, 80.0
            ]
        );
        // A billion requests at one value still make a short list.
        let mut big = new_histogram::<u64>(1000);
        big.record_n(500, 1_000_000_000).unwrap();
        big.record(900).unwrap();
        let points = percentile_points(&big);
        assert!(points.len() <= MAX_PERCENTILE_POINTS, "{}", points.len());
        assert_eq!(points.last().unwrap().latency_us, big.max());
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

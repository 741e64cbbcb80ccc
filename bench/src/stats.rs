//! Latencies in HdrHistograms (microseconds, three significant digits), merged from every
//! client of a stack: QuickChat's clients record into shards here, the peer's workers send
//! theirs as `[value, count]` pairs.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use hdrhistogram::Histogram;

/// Longest latency a histogram holds (10 minutes); longer ones are clamped to it.
const MAX_US: u64 = 600_000_000;

pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, 3).expect("valid histogram bounds")
}

pub fn record(h: &mut Histogram<u64>, us: u64) {
    h.saturating_record(us.clamp(1, MAX_US));
}

/// Adds `[value, count]` pairs (as the peer's workers report them).
pub fn record_pairs(h: &mut Histogram<u64>, pairs: &[(u64, u64)]) {
    for &(value, count) in pairs {
        let _ = h.record_n(value.clamp(1, MAX_US), count);
    }
}

/// Histograms many tasks record into at once: a record locks one of several shards.
pub struct Sharded {
    shards: Vec<Mutex<Histogram<u64>>>,
}

impl Sharded {
    pub fn new(shards: usize) -> Self {
        Self {
            shards: (0..shards.max(1))
                .map(|_| Mutex::new(histogram()))
                .collect(),
        }
    }

    pub fn record(&self, shard: usize, us: u64) {
        let mut h = self.shards[shard % self.shards.len()]
            .lock()
            .expect("histogram lock");
        record(&mut h, us);
    }

    /// Everything recorded so far, merged; the shards start over.
    pub fn take(&self) -> Histogram<u64> {
        let mut all = histogram();
        for shard in &self.shards {
            let mut h = shard.lock().expect("histogram lock");
            all.add(&*h).expect("same bounds");
            h.reset();
        }
        all
    }
}

/// What clients counted, and since when.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Messages received from others.
    pub delivered: u64,
    /// Own sends acknowledged.
    pub acked: u64,
    /// Own sends refused (or not acknowledged as stored).
    pub failed: u64,
    /// Sends made.
    pub sent: u64,
    /// Streams the server ended while the benchmark still needed them.
    pub disconnects: u64,
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, o: Self) {
        self.delivered += o.delivered;
        self.acked += o.acked;
        self.failed += o.failed;
        self.sent += o.sent;
        self.disconnects += o.disconnects;
    }
}

/// Atomic counters behind [`Counts`].
#[derive(Default)]
pub struct Counters {
    pub delivered: AtomicU64,
    pub acked: AtomicU64,
    pub failed: AtomicU64,
    pub sent: AtomicU64,
    pub disconnects: AtomicU64,
}

impl Counters {
    pub fn get(&self) -> Counts {
        Counts {
            delivered: self.delivered.load(Ordering::Relaxed),
            acked: self.acked.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            sent: self.sent.load(Ordering::Relaxed),
            disconnects: self.disconnects.load(Ordering::Relaxed),
        }
    }

    pub fn reset(&self) {
        for c in [
            &self.delivered,
            &self.acked,
            &self.failed,
            &self.sent,
            &self.disconnects,
        ] {
            c.store(0, Ordering::Relaxed);
        }
    }
}

/// One phase's counts and latencies.
pub struct Stats {
    pub counts: Counts,
    pub latency: Histogram<u64>,
    pub ack_latency: Histogram<u64>,
}

/// p50 / p99 / p99.9 of a histogram, in milliseconds (`None` when it is empty).
pub fn percentiles_ms(h: &Histogram<u64>) -> Option<(f64, f64, f64)> {
    if h.is_empty() {
        return None;
    }
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    Some((ms(0.5), ms(0.99), ms(0.999)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_and_shards_merge_into_one_histogram() {
        let sharded = Sharded::new(4);
        for i in 0..100u64 {
            sharded.record(i as usize, 1_000 + i);
        }
        let mut h = sharded.take();
        record_pairs(&mut h, &[(50_000, 100)]);
        assert_eq!(h.len(), 200);
        let (p50, p99, _) = percentiles_ms(&h).unwrap();
        assert!((1.0..1.2).contains(&p50), "{p50}");
        assert!((49.0..51.0).contains(&p99), "{p99}");
        assert!(sharded.take().is_empty(), "taking starts over");
    }
}

//! Counters and histograms for the request path that each worker thread updates in its own
//! cache lines (one shard per worker, plus one for every other thread), summed when scraped.
//! A metric shared by all workers would otherwise bounce its cache line between cores on
//! every request. They encode exactly like prometheus-client's `Counter` and `Histogram`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Shards per metric: workers plus one; raised by [`reserve_shards`] before metrics are made.
static SHARDS: AtomicUsize = AtomicUsize::new(0);

/// Makes metrics created from now on have room for `workers` worker shards.
pub fn reserve_shards(workers: usize) {
    SHARDS.fetch_max(workers + 1, Ordering::AcqRel);
}

fn shard_count() -> usize {
    match SHARDS.load(Ordering::Acquire) {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get() + 1),
        n => n,
    }
}

/// This thread's shard among `shards`.
fn shard(shards: usize) -> usize {
    let last = shards - 1;
    crate::workers::current().map_or(last, |w| w % last.max(1))
}

const WORDS_PER_LINE: usize = 8;

/// One cache line of counters.
#[repr(align(64))]
#[derive(Default)]
struct Line([AtomicU64; WORDS_PER_LINE]);

/// `words` atomic words per shard, each shard starting on its own cache line.
struct Slots {
    lines: Box<[Line]>,
    lines_per_shard: usize,
    shards: usize,
}

impl Slots {
    fn new(words: usize) -> Self {
        let shards = shard_count();
        let lines_per_shard = words.div_ceil(WORDS_PER_LINE).max(1);
        Slots {
            lines: (0..shards * lines_per_shard)
                .map(|_| Line::default())
                .collect(),
            lines_per_shard,
            shards,
        }
    }

    fn word(&self, shard: usize, index: usize) -> &AtomicU64 {
        let line = shard * self.lines_per_shard + index / WORDS_PER_LINE;
        &self.lines[line].0[index % WORDS_PER_LINE]
    }

    fn mine(&self, index: usize) -> &AtomicU64 {
        self.word(shard(self.shards), index)
    }

    fn sum(&self, index: usize) -> u64 {
        (0..self.shards)
            .map(|s| self.word(s, index).load(Ordering::Relaxed))
            .fold(0u64, u64::wrapping_add)
    }
}

/// A monotonic counter.
#[derive(Clone)]
pub struct ShardedCounter {
    slots: Arc<Slots>,
}

impl Default for ShardedCounter {
    fn default() -> Self {
        ShardedCounter {
            slots: Arc::new(Slots::new(1)),
        }
    }
}

impl std::fmt::Debug for ShardedCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ShardedCounter({})", self.get())
    }
}

impl ShardedCounter {
    pub fn inc(&self) {
        self.slots.mine(0).fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.slots.sum(0)
    }
}

impl TypedMetric for ShardedCounter {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for ShardedCounter {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_counter::<NoLabelSet, _, u64>(&self.get(), None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// A histogram with fixed upper bounds (the last bucket is +Inf).
#[derive(Clone)]
pub struct ShardedHistogram {
    bounds: Arc<[f64]>,
    /// Per shard: count, sum (f64 bits), then one word per bound and one for +Inf.
    slots: Arc<Slots>,
}

impl std::fmt::Debug for ShardedHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (sum, count, _) = self.get();
        write!(f, "ShardedHistogram(count {count}, sum {sum})")
    }
}

const COUNT: usize = 0;
const SUM: usize = 1;
const FIRST_BUCKET: usize = 2;

impl ShardedHistogram {
    pub fn new(bounds: impl IntoIterator<Item = f64>) -> Self {
        let bounds: Arc<[f64]> = bounds.into_iter().collect();
        let words = FIRST_BUCKET + bounds.len() + 1;
        ShardedHistogram {
            slots: Arc::new(Slots::new(words)),
            bounds,
        }
    }

    pub fn observe(&self, value: f64) {
        let bucket = self
            .bounds
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(self.bounds.len());
        let shard = shard(self.slots.shards);
        let slots = &self.slots;
        slots
            .word(shard, FIRST_BUCKET + bucket)
            .fetch_add(1, Ordering::Relaxed);
        let sum = slots.word(shard, SUM);
        // Only threads off the data plane share a shard, so this rarely loops.
        let mut current = sum.load(Ordering::Relaxed);
        loop {
            let next = (f64::from_bits(current) + value).to_bits();
            match sum.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => break,
                Err(actual) => current = actual,
            }
        }
        slots.word(shard, COUNT).fetch_add(1, Ordering::Relaxed);
    }

    /// Sum, count and per-bucket counts (not cumulative), as prometheus-client reports them.
    pub fn get(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let slots = &self.slots;
        let sum = (0..slots.shards)
            .map(|s| f64::from_bits(slots.word(s, SUM).load(Ordering::Relaxed)))
            .sum();
        let buckets = self
            .bounds
            .iter()
            .copied()
            .chain([f64::MAX])
            .enumerate()
            .map(|(i, bound)| (bound, slots.sum(FIRST_BUCKET + i)))
            .collect::<Vec<_>>();
        // The count is the buckets' total, so a scrape during an update stays consistent.
        let count = buckets.iter().map(|(_, n)| n).sum();
        (sum, count, buckets)
    }
}

impl TypedMetric for ShardedHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for ShardedHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let (sum, count, buckets) = self.get();
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_sum_up() {
        reserve_shards(3);
        let c = ShardedCounter::default();
        let h = ShardedHistogram::new([0.1, 1.0]);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for i in 0..1000 {
                        c.inc();
                        h.observe(if i % 2 == 0 { 0.05 } else { 5.0 });
                    }
                });
            }
        });
        assert_eq!(c.get(), 4000);
        let (sum, count, buckets) = h.get();
        assert_eq!(count, 4000);
        assert!((sum - (2000.0 * 0.05 + 2000.0 * 5.0)).abs() < 1e-6);
        assert_eq!(buckets[0], (0.1, 2000));
        assert_eq!(buckets[1], (1.0, 0));
        assert_eq!(buckets[2].1, 2000);
    }

    #[test]
    fn encodes_like_prometheus_client() {
        let mut registry = prometheus_client::registry::Registry::default();
        let c = ShardedCounter::default();
        c.inc();
        let h = ShardedHistogram::new([1.0]);
        h.observe(0.5);
        registry.register("c", "a counter", c);
        registry.register("h", "a histogram", h);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("c_total 1"), "{text}");
        assert!(text.contains("h_bucket{le=\"1.0\"} 1"), "{text}");
        assert!(text.contains("h_bucket{le=\"+Inf\"} 1"), "{text}");
        assert!(text.contains("h_count 1"), "{text}");
    }
}

//! GCRA rate limits and keyed tables of bounded size.
//!
//! The generic cell rate algorithm keeps one number per key, the theoretical arrival time
//! (TAT). A limit of `count` requests per `period` with `burst` has an emission interval
//! `T = period / count` and a tolerance `τ = (burst − 1) · T`: a request at `now` passes when
//! `max(TAT, now) − now ≤ τ`, and then moves the TAT on by `T`. A fresh key therefore admits
//! `burst` requests back to back, then one every `T`.
//!
//! The key table is sharded and bounded: a key whose TAT has passed carries no information (it
//! behaves as a fresh key) and is dropped first; when a shard is still full, the half of its
//! keys closest to fresh are dropped.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const SHARDS: usize = 64;

/// One limit's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    interval_ns: u64,
    tolerance_ns: u64,
    count: u32,
    period: Duration,
    burst: u32,
}

/// A limit's decision for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    /// Admitted; `remaining` more requests would be admitted right now, and the key is back
    /// to a full burst after `reset`.
    Allow { remaining: u32, reset: Duration },
    /// Refused; the next request is admitted after `retry_after`.
    Deny {
        retry_after: Duration,
        reset: Duration,
    },
}

impl RateDecision {
    pub fn allowed(&self) -> bool {
        matches!(self, RateDecision::Allow { .. })
    }
}

impl Gcra {
    /// `count` requests per `period`, `burst` at once from a fresh key. `count`, `burst` and
    /// `period` must be non-zero; the emission interval is at least 1 ns.
    pub fn new(count: u32, period: Duration, burst: u32) -> Gcra {
        let count = count.max(1);
        let burst = burst.max(1);
        let period_ns = u64::try_from(period.as_nanos()).unwrap_or(u64::MAX).max(1);
        let interval_ns = (period_ns / u64::from(count)).max(1);
        Gcra {
            interval_ns,
            tolerance_ns: interval_ns.saturating_mul(u64::from(burst - 1)),
            count,
            period,
            burst,
        }
    }

    pub fn count(&self) -> u32 {
        self.count
    }
    pub fn period(&self) -> Duration {
        self.period
    }
    pub fn burst(&self) -> u32 {
        self.burst
    }
    /// Time between two admitted requests at the sustained rate.
    pub fn interval(&self) -> Duration {
        Duration::from_nanos(self.interval_ns)
    }

    /// Decides a request at `now` for a key whose TAT is `tat` (`None`: a fresh key); returns
    /// the decision and the key's new TAT (unchanged when refused).
    pub fn check(&self, tat: Option<u64>, now: u64) -> (RateDecision, u64) {
        let tat = tat.unwrap_or(now).max(now);
        let ahead = tat - now;
        if ahead > self.tolerance_ns {
            let decision = RateDecision::Deny {
                retry_after: Duration::from_nanos(ahead - self.tolerance_ns),
                reset: Duration::from_nanos(ahead),
            };
            return (decision, tat);
        }
        let new_tat = tat.saturating_add(self.interval_ns);
        let used = new_tat - now;
        let capacity = self.tolerance_ns.saturating_add(self.interval_ns);
        let remaining = capacity.saturating_sub(used) / self.interval_ns;
        let decision = RateDecision::Allow {
            remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
            reset: Duration::from_nanos(used),
        };
        (decision, new_tat)
    }
}

/// A limit applied per key, with at most `max_keys` keys remembered.
#[derive(Debug)]
pub struct KeyedLimiter {
    gcra: Gcra,
    epoch: Instant,
    hasher: RandomState,
    per_shard: usize,
    shards: Box<[Mutex<HashMap<u64, u64>>]>,
}

impl KeyedLimiter {
    pub fn new(gcra: Gcra, max_keys: usize, epoch: Instant) -> Self {
        KeyedLimiter {
            gcra,
            epoch,
            hasher: RandomState::new(),
            per_shard: max_keys.div_ceil(SHARDS).max(1),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    pub fn gcra(&self) -> &Gcra {
        &self.gcra
    }

    /// Decides a request for `key` at `now`. Keys are remembered by a 64-bit keyed hash.
    pub fn check<K: Hash + ?Sized>(&self, key: &K, now: Instant) -> RateDecision {
        let hash = self.hasher.hash_one(key);
        let now_ns =
            u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX);
        let shard = &self.shards[(hash as usize) % SHARDS];
        let mut table = shard
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (decision, new_tat) = self.gcra.check(table.get(&hash).copied(), now_ns);
        if decision.allowed() {
            if !table.contains_key(&hash) && table.len() >= self.per_shard {
                evict(&mut table, now_ns, self.per_shard);
            }
            table.insert(hash, new_tat);
        }
        decision
    }

    /// Keys currently remembered.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Makes room in a full shard: keys already back to a full burst go first, then the half
/// closest to it.
fn evict(table: &mut HashMap<u64, u64>, now_ns: u64, limit: usize) {
    table.retain(|_, tat| *tat > now_ns);
    if table.len() < limit {
        return;
    }
    let mut tats: Vec<u64> = table.values().copied().collect();
    let middle = tats.len() / 2;
    let (_, &mut cut, _) = tats.select_nth_unstable(middle);
    table.retain(|_, tat| *tat > cut);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn burst_then_rate() {
        // 10/s, burst 5: five at once, then one every 100 ms.
        let g = Gcra::new(10, Duration::from_secs(1), 5);
        let mut tat = None;
        for expected_remaining in [4, 3, 2, 1, 0] {
            let (d, t) = g.check(tat, 0);
            assert_eq!(
                d,
                RateDecision::Allow {
                    remaining: expected_remaining,
                    reset: Duration::from_millis(100 * (5 - u64::from(expected_remaining)))
                }
            );
            tat = Some(t);
        }
        let (d, t) = g.check(tat, 0);
        assert_eq!(
            d,
            RateDecision::Deny {
                retry_after: Duration::from_millis(100),
                reset: Duration::from_millis(500)
            }
        );
        assert_eq!(Some(t), tat, "a refusal does not move the TAT");
        let (d, _) = g.check(tat, 99 * MS);
        assert!(!d.allowed());
        let (d, t) = g.check(tat, 100 * MS);
        assert_eq!(
            d,
            RateDecision::Allow {
                remaining: 0,
                reset: Duration::from_millis(500)
            }
        );
        // After a full second of quiet the burst is back.
        let (d, _) = g.check(Some(t), 1_100 * MS);
        assert_eq!(
            d,
            RateDecision::Allow {
                remaining: 4,
                reset: Duration::from_millis(100)
            }
        );
    }

    #[test]
    fn keys_are_independent() {
        let epoch = Instant::now();
        let limiter = KeyedLimiter::new(Gcra::new(1, Duration::from_secs(60), 1), 1000, epoch);
        assert!(limiter.check("alice", epoch).allowed());
        assert!(!limiter.check("alice", epoch).allowed());
        assert!(limiter.check("bob", epoch).allowed());
        assert_eq!(limiter.len(), 2);
    }

    #[test]
    fn key_table_stays_bounded() {
        let epoch = Instant::now();
        let limiter = KeyedLimiter::new(Gcra::new(1, Duration::from_secs(60), 1), 640, epoch);
        for i in 0..100_000u32 {
            limiter.check(&i, epoch + Duration::from_micros(u64::from(i)));
        }
        assert!(limiter.len() <= 640, "{}", limiter.len());
        // The most recent keys are still limited.
        assert!(
            !limiter
                .check(&99_999u32, epoch + Duration::from_millis(200))
                .allowed()
        );
    }

    proptest! {
        /// Over any arrival pattern, admissions never exceed burst + elapsed / interval, and a
        /// request is refused only when that bound would be broken for some window ending now
        /// (the GCRA is exactly a leaky bucket of capacity `burst`).
        #[test]
        fn admissions_match_the_leaky_bucket(
            count in 1u32..50,
            burst in 1u32..10,
            gaps in prop::collection::vec(0u64..300, 1..200),
        ) {
            let g = Gcra::new(count, Duration::from_secs(1), burst);
            let interval = 1_000_000_000 / u64::from(count);
            let mut tat = None;
            let mut now = 0u64;
            // Leaky bucket: level in ns of work, drained at 1 ns/ns, capacity burst * interval.
            let mut level: u64 = 0;
            let mut last = 0u64;
            for gap in gaps {
                now += gap * MS;
                level = level.saturating_sub(now - last);
                last = now;
                let (d, t) = g.check(tat, now);
                let fits = level + interval <= u64::from(burst) * interval;
                prop_assert_eq!(d.allowed(), fits);
                if fits {
                    level += interval;
                }
                tat = Some(t);
            }
        }
    }
}

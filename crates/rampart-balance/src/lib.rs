//! Backend selection for Rampart: load-balancing algorithms, backend health
//! state (active-check rise/fall state machine), passive outlier ejection,
//! slow start, drain, and signing of session-persistence cookies.
//!
//! Everything here is pure decision logic: no IO, no async runtime and no clock
//! reads. Every time-dependent method takes `now: Instant` from the caller, which
//! keeps behaviour deterministic and testable. [`Pool`] is `Send + Sync`; its
//! hot path (`pick`, `start_request`) uses atomics, with short `std::sync::Mutex`
//! sections only for weighted round robin and per-backend bookkeeping.
//!
//! Typical use by a proxy:
//!
//! ```
//! use std::time::{Duration, Instant};
//! use rampart_balance::{Algorithm, BackendSpec, Pool, PoolSpec};
//!
//! let now = Instant::now();
//! let pool = Pool::new(
//!     PoolSpec::new(Algorithm::LeastConnections, vec![
//!         BackendSpec::new("a", 1),
//!         BackendSpec::new("b", 1),
//!     ]),
//!     now,
//! );
//! let idx = pool.pick(None, &[], now).expect("a backend is available");
//! let guard = pool.start_request(idx); // counts as outstanding until dropped
//! // ... forward the request ...
//! drop(guard);
//! pool.record_outcome(idx, Duration::from_millis(3), true, now);
//! ```

#![forbid(unsafe_code)]

mod pool;
mod ring;
mod spec;
mod sticky;

pub use pool::{DEFAULT_LATENCY, EWMA_HALF_LIFE, FAILURE_LATENCY_PENALTY, InFlight, Pool};
pub use spec::{
    AdminState, Algorithm, BackendSpec, BackendView, HealthParams, HealthTransition, OutlierParams,
    PoolSpec,
};
pub use sticky::{MAX_STICKY_VALUE_LEN, StickySigner};

/// Stable 64-bit hash for hash keys (client address, header value, ...).
///
/// FNV-1a (64-bit) followed by the MurmurHash3 `fmix64` finaliser for good
/// avalanche. The result depends only on the bytes, so it is identical across
/// processes, platforms and releases.
pub fn hash_bytes(data: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(PRIME);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_stable() {
        // Pinned values: changing the function would remap every sticky/hash key.
        assert_eq!(hash_bytes(b""), {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            h ^= h >> 33;
            h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
            h ^= h >> 33;
            h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
            h ^ (h >> 33)
        });
        assert_eq!(hash_bytes(b"10.0.0.1"), hash_bytes(b"10.0.0.1"));
        assert_ne!(hash_bytes(b"10.0.0.1"), hash_bytes(b"10.0.0.2"));
    }

    #[test]
    fn hash_spreads_bits() {
        // keys differing in one byte should land far apart in the top bits
        let mut buckets = [0u32; 16];
        for i in 0..16_000u32 {
            buckets[(hash_bytes(format!("client-{i}").as_bytes()) >> 60) as usize] += 1;
        }
        for b in buckets {
            assert!((800..1200).contains(&b), "{buckets:?}");
        }
    }

    #[test]
    fn pool_is_send_sync() {
        fn check<T: Send + Sync>() {}
        fn check_static<T: Send + 'static>() {}
        check::<Pool>();
        check::<StickySigner>();
        check_static::<InFlight>();
    }
}

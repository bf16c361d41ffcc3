use std::collections::HashMap;
use std::time::{Duration, Instant};

use rampart_balance::{
    AdminState, Algorithm, BackendSpec, HealthParams, HealthTransition, OutlierParams, Pool,
    PoolSpec, hash_bytes,
};

const SEC: Duration = Duration::from_secs(1);
const MS: Duration = Duration::from_millis(1);

fn spec(algorithm: Algorithm, backends: &[(&str, u32, bool)]) -> PoolSpec {
    PoolSpec {
        algorithm,
        backends: backends
            .iter()
            .map(|&(id, weight, backup)| BackendSpec {
                id: id.to_string(),
                weight,
                backup,
            })
            .collect(),
        health: HealthParams { rise: 2, fall: 3 },
        outlier: None,
        slow_start: None,
    }
}

fn primaries(algorithm: Algorithm, weights: &[u32]) -> PoolSpec {
    let names: Vec<String> = (0..weights.len()).map(|i| format!("b{i}")).collect();
    let list: Vec<(&str, u32, bool)> = names
        .iter()
        .zip(weights)
        .map(|(n, &w)| (n.as_str(), w, false))
        .collect();
    spec(algorithm, &list)
}

fn count(pool: &Pool, picks: usize, now: Instant) -> Vec<usize> {
    let mut c = vec![0; pool.len()];
    for _ in 0..picks {
        c[pool.pick(None, &[], now).expect("available")] += 1;
    }
    c
}

fn take_down(pool: &Pool, i: usize, now: Instant) {
    let fall = pool.spec().health.fall;
    for _ in 0..fall {
        pool.record_health_check(i, false, now);
    }
    assert!(!pool.backend(i).healthy);
}

const ALL: [Algorithm; 6] = [
    Algorithm::RoundRobin,
    Algorithm::WeightedRoundRobin,
    Algorithm::LeastConnections,
    Algorithm::PowerOfTwoEwma,
    Algorithm::ConsistentHash,
    Algorithm::Random,
];

// ---------------------------------------------------------------- algorithms

#[test]
fn round_robin_ignores_weights() {
    let now = Instant::now();
    let pool = Pool::new(primaries(Algorithm::RoundRobin, &[5, 1, 1]), now);
    assert_eq!(count(&pool, 300, now), vec![100, 100, 100]);
    // strictly cyclic
    let seq: Vec<usize> = (0..6).map(|_| pool.pick(None, &[], now).unwrap()).collect();
    for w in seq.windows(4) {
        assert_eq!(w[0], w[3]);
        assert_ne!(w[0], w[1]);
    }
}

#[test]
fn weighted_round_robin_exact_per_cycle() {
    let now = Instant::now();
    let pool = Pool::new(primaries(Algorithm::WeightedRoundRobin, &[5, 3, 2]), now);
    for _cycle in 0..50 {
        assert_eq!(count(&pool, 10, now), vec![5, 3, 2]);
    }
    let c = count(&pool, 10_000, now);
    for (got, want) in c.iter().zip([5000, 3000, 2000]) {
        assert!(got.abs_diff(want) <= 200, "{c:?}");
    }
}

#[test]
fn weighted_round_robin_is_smooth() {
    let now = Instant::now();
    let pool = Pool::new(primaries(Algorithm::WeightedRoundRobin, &[5, 1, 1]), now);
    let seq: Vec<usize> = (0..7).map(|_| pool.pick(None, &[], now).unwrap()).collect();
    // nginx smooth WRR interleaves instead of sending 5 in a row
    assert_eq!(seq, vec![0, 0, 1, 0, 2, 0, 0]);
}

#[test]
fn least_connections_prefers_fewer_outstanding() {
    let now = Instant::now();
    let pool = Pool::new(primaries(Algorithm::LeastConnections, &[1, 1, 1]), now);
    let _g0 = [pool.start_request(0), pool.start_request(0)];
    let g1 = pool.start_request(1);
    assert_eq!(pool.backend(0).outstanding, 2);
    for _ in 0..20 {
        assert_eq!(pool.pick(None, &[], now), Some(2));
    }
    let _g2 = [pool.start_request(2), pool.start_request(2)];
    for _ in 0..20 {
        assert_eq!(pool.pick(None, &[], now), Some(1));
    }
    drop(g1);
    assert_eq!(pool.backend(1).outstanding, 0);
    assert_eq!(pool.pick(None, &[], now), Some(1));
}

#[test]
fn least_connections_uses_weight_and_rotates_ties() {
    let now = Instant::now();
    let pool = Pool::new(primaries(Algorithm::LeastConnections, &[2, 1]), now);
    let _a = pool.start_request(0);
    let _b = pool.start_request(1);
    // 1/2 < 1/1
    for _ in 0..10 {
        assert_eq!(pool.pick(None, &[], now), Some(0));
    }
    let _a2 = pool.start_request(0);
    // 2/2 == 1/1: ties rotate between both
    let c = count(&pool, 100, now);
    assert_eq!(c, vec![50, 50]);
}

#[test]
fn p2c_prefers_lower_latency() {
    let now = Instant::now();
    let pool = Pool::new(primaries(Algorithm::PowerOfTwoEwma, &[1, 1, 1]), now);
    for _ in 0..5 {
        pool.record_outcome(0, 50 * MS, true, now);
        pool.record_outcome(1, 2 * MS, true, now);
        pool.record_outcome(2, 20 * MS, true, now);
    }
    assert_eq!(pool.backend(0).ewma_latency, 50 * MS);
    let c = count(&pool, 3000, now);
    // the slowest backend can never win a comparison of two distinct backends
    assert_eq!(c[0], 0, "{c:?}");
    // the fastest wins every comparison it takes part in: ~2/3 of picks
    assert!(c[1] > 1800 && c[1] < 2200, "{c:?}");
}

#[test]
fn p2c_prefers_fewer_outstanding() {
    let now = Instant::now();
    let pool = Pool::new(primaries(Algorithm::PowerOfTwoEwma, &[1, 1]), now);
    pool.record_outcome(0, 5 * MS, true, now);
    pool.record_outcome(1, 5 * MS, true, now);
    let _g = [pool.start_request(0), pool.start_request(0)];
    assert_eq!(count(&pool, 100, now), vec![0, 100]);
    // weight counts as well: 3 outstanding on weight 10 beats 0 on weight 1
    let pool = Pool::new(primaries(Algorithm::PowerOfTwoEwma, &[10, 1]), now);
    let _g = [
        pool.start_request(0),
        pool.start_request(0),
        pool.start_request(0),
    ];
    assert_eq!(count(&pool, 100, now), vec![100, 0]);
}

#[test]
fn p2c_unknown_latency_default_and_decay() {
    let now = Instant::now();
    let pool = Pool::new(primaries(Algorithm::PowerOfTwoEwma, &[1, 1]), now);
    assert_eq!(
        pool.backend(0).ewma_latency,
        rampart_balance::DEFAULT_LATENCY
    );
    pool.record_outcome(0, 100 * MS, true, now);
    // peak: a slower sample is taken immediately
    pool.record_outcome(0, 400 * MS, true, now);
    assert_eq!(pool.backend_at_time(0, now).ewma_latency, 400 * MS);
    // one half-life later the estimate has halved
    let later = now + 10 * SEC;
    let v = pool.backend_at_time(0, later).ewma_latency;
    assert!(v > 195 * MS && v < 205 * MS, "{v:?}");
    // a fast sample after a long pause pulls the estimate down
    pool.record_outcome(0, MS, true, now + 60 * SEC);
    assert!(pool.backend_at_time(0, now + 60 * SEC).ewma_latency < 10 * MS);
    // failures are recorded with a latency penalty
    pool.record_outcome(1, MS, false, now);
    assert!(pool.backend_at_time(1, now).ewma_latency >= SEC);
}

#[test]
fn random_is_weighted() {
    let now = Instant::now();
    let pool = Pool::new(primaries(Algorithm::Random, &[3, 1, 0]), now);
    let c = count(&pool, 8000, now);
    assert_eq!(c[2], 0);
    assert!(c[0].abs_diff(6000) < 300, "{c:?}");
}

fn ring_map(pool: &Pool, now: Instant) -> Vec<usize> {
    (0..10_000u32)
        .map(|k| {
            pool.pick(Some(hash_bytes(format!("key-{k}").as_bytes())), &[], now)
                .unwrap()
        })
        .collect()
}

#[test]
fn consistent_hash_minimal_movement() {
    let now = Instant::now();
    let four = Pool::new(primaries(Algorithm::ConsistentHash, &[1, 1, 1, 1]), now);
    let five = Pool::new(primaries(Algorithm::ConsistentHash, &[1, 1, 1, 1, 1]), now);
    let before = ring_map(&four, now);
    let after = ring_map(&five, now);
    let mut moved = 0;
    for (b, a) in before.iter().zip(&after) {
        if b != a {
            moved += 1;
            assert_eq!(*a, 4, "key moved between old backends");
        }
    }
    assert!(moved > 1000 && moved <= 2600, "moved {moved}");
    // reasonably balanced
    let mut per = [0; 5];
    for a in &after {
        per[*a] += 1;
    }
    for p in per {
        assert!((1300..2700).contains(&p), "{per:?}");
    }
    // deterministic
    assert_eq!(after, ring_map(&five, now));
}

#[test]
fn consistent_hash_failover_moves_only_affected_keys() {
    let now = Instant::now();
    let pool = Pool::new(primaries(Algorithm::ConsistentHash, &[1, 1, 1, 1]), now);
    let before = ring_map(&pool, now);
    pool.set_admin_state(2, AdminState::Disabled);
    let after = ring_map(&pool, now);
    for (b, a) in before.iter().zip(&after) {
        assert_ne!(*a, 2);
        if *b != 2 {
            assert_eq!(a, b);
        }
    }
    // exclude: retry goes elsewhere, deterministically
    pool.set_admin_state(2, AdminState::Enabled);
    let key = hash_bytes(b"some-client");
    let first = pool.pick(Some(key), &[], now).unwrap();
    let second = pool.pick(Some(key), &[first], now).unwrap();
    assert_ne!(first, second);
    assert_eq!(pool.pick(Some(key), &[first], now), Some(second));
    // without a key: round robin
    assert_eq!(count(&pool, 400, now), vec![100; 4]);
}

#[test]
fn consistent_hash_respects_weights() {
    let now = Instant::now();
    let pool = Pool::new(primaries(Algorithm::ConsistentHash, &[300, 100]), now);
    let m = ring_map(&pool, now);
    let zero = m.iter().filter(|&&x| x == 0).count();
    assert!(zero.abs_diff(7500) < 700, "{zero}");
}

// ------------------------------------------------------------ availability

#[test]
fn backup_only_when_primaries_unavailable() {
    let t0 = Instant::now();
    for algo in ALL {
        let mut s = spec(algo, &[("p0", 1, false), ("p1", 1, false), ("bk", 1, true)]);
        s.outlier = Some(OutlierParams {
            consecutive_failures: 1,
            base_ejection: 10 * SEC,
            max_ejection: 60 * SEC,
            max_ejected_percent: 100,
        });
        let pool = Pool::new(s, t0);
        let key = Some(7);
        for _ in 0..50 {
            assert_ne!(pool.pick(key, &[], t0), Some(2), "{algo:?}");
            assert_ne!(pool.pick(None, &[], t0), Some(2), "{algo:?}");
        }
        take_down(&pool, 0, t0);
        for _ in 0..20 {
            assert_eq!(pool.pick(key, &[], t0), Some(1), "{algo:?}");
        }
        // p1 ejected by outlier detection
        pool.record_outcome(1, MS, false, t0);
        assert!(!pool.is_available(1, t0));
        assert_eq!(pool.pick(key, &[], t0), Some(2), "{algo:?}");
        // ejection over: back to the primary
        let t1 = t0 + 11 * SEC;
        assert_eq!(pool.pick(key, &[], t1), Some(1), "{algo:?}");
        // p1 disabled
        pool.set_admin_state(1, AdminState::Disabled);
        assert_eq!(pool.pick(key, &[], t1), Some(2), "{algo:?}");
        // p1 drained
        pool.set_admin_state(1, AdminState::Drain);
        assert_eq!(pool.pick(key, &[], t1), Some(2), "{algo:?}");
        // backup down too: nothing
        take_down(&pool, 2, t1);
        assert_eq!(pool.pick(key, &[], t1), None, "{algo:?}");
    }
}

#[test]
fn exclude_list_honoured() {
    let now = Instant::now();
    for algo in ALL {
        let pool = Pool::new(
            spec(
                algo,
                &[
                    ("a", 1, false),
                    ("b", 1, false),
                    ("c", 1, false),
                    ("bk", 1, true),
                ],
            ),
            now,
        );
        for k in 0..30u64 {
            let key = Some(hash_bytes(&k.to_le_bytes()));
            assert_eq!(pool.pick(key, &[0, 1], now), Some(2), "{algo:?}");
            let p = pool.pick(key, &[1], now).unwrap();
            assert!(p == 0 || p == 2, "{algo:?}");
            // all primaries tried: a retry may use the backup
            assert_eq!(pool.pick(key, &[0, 1, 2], now), Some(3), "{algo:?}");
            assert_eq!(pool.pick(key, &[0, 1, 2, 3], now), None, "{algo:?}");
        }
    }
}

#[test]
fn weight_zero_only_sticky() {
    let now = Instant::now();
    for algo in ALL {
        let pool = Pool::new(primaries(algo, &[0, 1]), now);
        for k in 0..50 {
            assert_eq!(pool.pick(Some(k), &[], now), Some(1), "{algo:?}");
        }
        assert!(pool.accepts_sticky(0, now));
        assert_eq!(pool.pick(None, &[1], now), None, "{algo:?}");
        assert_eq!(pool.backend(0).effective_weight, 0);
    }
}

#[test]
fn drain_and_disable() {
    let now = Instant::now();
    let pool = Pool::new(primaries(Algorithm::RoundRobin, &[1, 1]), now);
    let g = pool.start_request(0);
    pool.set_admin_state(0, AdminState::Drain);
    assert_eq!(pool.backend(0).admin, AdminState::Drain);
    assert!(!pool.is_available(0, now));
    assert!(!pool.accepts_sticky(0, now));
    assert!(pool.accepts_sticky(1, now));
    assert_eq!(count(&pool, 10, now), vec![0, 10]);
    // in-flight requests keep being tracked while draining
    assert_eq!(pool.backend(0).outstanding, 1);
    drop(g);
    assert_eq!(pool.backend(0).outstanding, 0);
    pool.set_admin_state(0, AdminState::Disabled);
    assert!(!pool.accepts_sticky(0, now));
    assert_eq!(count(&pool, 10, now), vec![0, 10]);
    pool.set_admin_state(0, AdminState::Enabled);
    assert!(pool.accepts_sticky(0, now));
    assert_eq!(count(&pool, 10, now), vec![5, 5]);
    // out-of-range indices are harmless
    assert!(!pool.is_available(9, now));
    assert!(!pool.accepts_sticky(9, now));
    pool.set_admin_state(9, AdminState::Drain);
    assert_eq!(pool.record_health_check(9, false, now), None);
    pool.record_outcome(9, MS, false, now);
    drop(pool.start_request(9));
}

#[test]
fn empty_pool() {
    let now = Instant::now();
    let pool = Pool::new(primaries(Algorithm::WeightedRoundRobin, &[]), now);
    assert!(pool.is_empty());
    assert_eq!(pool.len(), 0);
    assert_eq!(pool.pick(Some(1), &[], now), None);
}

// ------------------------------------------------------------------ health

#[test]
fn rise_fall_state_machine() {
    let now = Instant::now();
    let pool = Pool::new(primaries(Algorithm::RoundRobin, &[1, 1]), now);
    assert!(pool.backend(0).healthy);
    assert_eq!(pool.record_health_check(0, false, now), None);
    assert_eq!(pool.record_health_check(0, false, now), None);
    // a success resets the failure streak
    assert_eq!(pool.record_health_check(0, true, now), None);
    assert_eq!(pool.record_health_check(0, false, now), None);
    assert_eq!(pool.record_health_check(0, false, now), None);
    assert!(pool.is_available(0, now));
    assert_eq!(
        pool.record_health_check(0, false, now),
        Some(HealthTransition::WentDown)
    );
    assert!(!pool.is_available(0, now));
    assert!(!pool.accepts_sticky(0, now));
    assert_eq!(pool.record_health_check(0, false, now), None);
    assert_eq!(pool.record_health_check(0, true, now), None);
    // a failure resets the success streak
    assert_eq!(pool.record_health_check(0, false, now), None);
    assert_eq!(pool.record_health_check(0, true, now), None);
    assert!(!pool.is_available(0, now));
    assert_eq!(
        pool.record_health_check(0, true, now),
        Some(HealthTransition::WentUp)
    );
    assert!(pool.is_available(0, now));
    assert_eq!(pool.record_health_check(0, true, now), None);
    // the other backend was never affected
    assert!(pool.backend(1).healthy);
}

#[test]
fn rise_fall_one() {
    let now = Instant::now();
    let mut s = primaries(Algorithm::RoundRobin, &[1]);
    s.health = HealthParams { rise: 1, fall: 1 };
    let pool = Pool::new(s, now);
    assert_eq!(
        pool.record_health_check(0, false, now),
        Some(HealthTransition::WentDown)
    );
    assert_eq!(
        pool.record_health_check(0, true, now),
        Some(HealthTransition::WentUp)
    );
}

// ----------------------------------------------------------------- outlier

fn outlier_pool(n: usize, pct: u8, now: Instant) -> Pool {
    let mut s = primaries(Algorithm::RoundRobin, &vec![1; n]);
    s.outlier = Some(OutlierParams {
        consecutive_failures: 3,
        base_ejection: 10 * SEC,
        max_ejection: 60 * SEC,
        max_ejected_percent: pct,
    });
    Pool::new(s, now)
}

fn fail(pool: &Pool, i: usize, times: u32, now: Instant) {
    for _ in 0..times {
        pool.record_outcome(i, MS, false, now);
    }
}

#[test]
fn outlier_ejection_doubles_and_caps() {
    let t0 = Instant::now();
    let pool = outlier_pool(4, 50, t0);
    fail(&pool, 0, 2, t0);
    pool.record_outcome(0, MS, true, t0); // resets the streak
    fail(&pool, 0, 2, t0);
    assert!(pool.is_available(0, t0));
    fail(&pool, 0, 1, t0);
    assert!(!pool.is_available(0, t0));
    assert_eq!(pool.backend(0).ejected_until, Some(t0 + 10 * SEC));
    assert!(pool.backend(0).healthy, "ejection is separate from health");

    let mut t = t0;
    for expected in [20, 40, 60, 60] {
        t += 61 * SEC; // past any previous ejection
        assert!(pool.is_available(0, t));
        fail(&pool, 0, 3, t);
        assert_eq!(pool.backend(0).ejected_until, Some(t + expected * SEC));
        assert!(pool.is_available(0, t + expected * SEC));
    }
    let v = pool.backend(0);
    assert_eq!(v.total_requests, 6 + 4 * 3);
    assert_eq!(v.total_failures, 5 + 4 * 3);
}

#[test]
fn outlier_doubling_resets_after_clean_period() {
    let t0 = Instant::now();
    let pool = outlier_pool(2, 50, t0);
    fail(&pool, 0, 3, t0);
    let t1 = t0 + 11 * SEC;
    fail(&pool, 0, 3, t1);
    assert_eq!(pool.backend(0).ejected_until, Some(t1 + 20 * SEC));
    // un-ejected at t1+20s, then successes for a full max_ejection (60s)
    let t2 = t1 + 21 * SEC;
    pool.record_outcome(0, MS, true, t2);
    pool.record_outcome(0, MS, true, t2 + 30 * SEC);
    // not long enough yet: next ejection would still double
    pool.record_outcome(0, MS, true, t2 + 60 * SEC);
    let t3 = t2 + 61 * SEC;
    fail(&pool, 0, 3, t3);
    assert_eq!(pool.backend(0).ejected_until, Some(t3 + 10 * SEC));

    // a failure in the clean period restarts it
    let pool = outlier_pool(2, 50, t0);
    fail(&pool, 0, 3, t0);
    let t1 = t0 + 11 * SEC;
    pool.record_outcome(0, MS, true, t1);
    pool.record_outcome(0, MS, false, t1 + 30 * SEC);
    pool.record_outcome(0, MS, true, t1 + 40 * SEC);
    pool.record_outcome(0, MS, true, t1 + 80 * SEC);
    let t2 = t1 + 90 * SEC;
    fail(&pool, 0, 3, t2);
    assert_eq!(pool.backend(0).ejected_until, Some(t2 + 20 * SEC));
}

#[test]
fn outlier_max_percent() {
    let t0 = Instant::now();
    let pool = outlier_pool(4, 50, t0);
    for i in 0..4 {
        fail(&pool, i, 3, t0);
    }
    let ejected: Vec<bool> = (0..4).map(|i| !pool.is_available(i, t0)).collect();
    assert_eq!(ejected, vec![true, true, false, false]);
    // once capacity frees up, the still-failing backend is ejected on its next failure
    let t1 = t0 + 11 * SEC;
    fail(&pool, 2, 1, t1);
    assert!(!pool.is_available(2, t1));

    // at least one may be ejected when the pool has >= 2 primaries
    let pool = outlier_pool(2, 10, t0);
    fail(&pool, 0, 3, t0);
    fail(&pool, 1, 3, t0);
    assert!(!pool.is_available(0, t0));
    assert!(pool.is_available(1, t0));

    // single backend: only with 100%
    let pool = outlier_pool(1, 99, t0);
    fail(&pool, 0, 10, t0);
    assert!(pool.is_available(0, t0));
    let pool = outlier_pool(1, 100, t0);
    fail(&pool, 0, 3, t0);
    assert!(!pool.is_available(0, t0));

    // 0% disables ejection
    let pool = outlier_pool(4, 0, t0);
    fail(&pool, 0, 10, t0);
    assert!(pool.is_available(0, t0));

    // backups don't count against the primaries' budget
    let mut s = spec(
        Algorithm::RoundRobin,
        &[
            ("p0", 1, false),
            ("p1", 1, false),
            ("b0", 1, true),
            ("b1", 1, true),
        ],
    );
    s.outlier = outlier_pool(1, 50, t0).spec().outlier;
    let pool = Pool::new(s, t0);
    fail(&pool, 0, 3, t0);
    fail(&pool, 2, 3, t0);
    fail(&pool, 1, 3, t0);
    assert!(!pool.is_available(0, t0));
    assert!(pool.is_available(1, t0));
    assert!(!pool.is_available(2, t0));
}

#[test]
fn no_outlier_detection_without_params() {
    let t0 = Instant::now();
    let pool = Pool::new(primaries(Algorithm::RoundRobin, &[1, 1]), t0);
    fail(&pool, 0, 100, t0);
    assert!(pool.is_available(0, t0));
    assert_eq!(pool.backend(0).total_failures, 100);
}

// -------------------------------------------------------------- slow start

#[test]
fn slow_start_ramp_after_went_up() {
    let t0 = Instant::now();
    let mut s = primaries(Algorithm::WeightedRoundRobin, &[100, 100]);
    s.health = HealthParams { rise: 1, fall: 1 };
    s.slow_start = Some(10 * SEC);
    let pool = Pool::new(s, t0);
    // no slow start at creation
    assert_eq!(pool.backend_at_time(0, t0).effective_weight, 100);
    assert_eq!(pool.backend_at_time(0, t0).slow_start_factor, 1.0);
    pool.record_health_check(0, false, t0);
    let up = t0 + 5 * SEC;
    assert_eq!(
        pool.record_health_check(0, true, up),
        Some(HealthTransition::WentUp)
    );
    assert_eq!(pool.backend_at_time(0, up).effective_weight, 10);
    assert_eq!(pool.backend_at_time(0, up + 5 * SEC).effective_weight, 55);
    assert_eq!(pool.backend_at_time(0, up + 10 * SEC).effective_weight, 100);
    assert_eq!(
        pool.backend_at_time(0, up + 100 * SEC).effective_weight,
        100
    );
    assert_eq!(pool.backend_at_time(1, up).effective_weight, 100);
    // traffic share follows the effective weight: 10 : 100 at the start
    let c = count(&pool, 1100, up);
    assert_eq!(c, vec![100, 1000]);
    let c = count(&pool, 1550, up + 5 * SEC);
    assert_eq!(c, vec![550, 1000]);
}

#[test]
fn slow_start_never_zero_and_after_ejection() {
    let t0 = Instant::now();
    let mut s = primaries(Algorithm::Random, &[1, 1]);
    s.slow_start = Some(30 * SEC);
    s.outlier = Some(OutlierParams {
        consecutive_failures: 1,
        base_ejection: 10 * SEC,
        max_ejection: 10 * SEC,
        max_ejected_percent: 50,
    });
    let pool = Pool::new(s, t0);
    pool.record_outcome(0, MS, false, t0);
    assert!(!pool.is_available(0, t0 + 9 * SEC));
    let end = t0 + 10 * SEC;
    assert!(pool.is_available(0, end));
    // weight 1 at 10%: still at least 1, and the ramp starts when the ejection ends
    assert_eq!(pool.backend_at_time(0, end).effective_weight, 1);
    assert!((pool.backend_at_time(0, end).slow_start_factor - 0.1).abs() < 1e-9);
    let f = pool.backend_at_time(0, end + 15 * SEC).slow_start_factor;
    assert!((f - 0.55).abs() < 1e-9, "{f}");
    // random picks honour the ramp: ~10 / 110
    let c = count(&pool, 11_000, end);
    assert!(c[0].abs_diff(1000) < 250, "{c:?}");
}

// ------------------------------------------------------------ reload state

#[test]
fn inherit_state_copies_by_id() {
    let t0 = Instant::now();
    let mut s = spec(
        Algorithm::LeastConnections,
        &[
            ("a", 1, false),
            ("b", 1, false),
            ("c", 1, false),
            ("gone", 1, false),
        ],
    );
    s.health = HealthParams { rise: 2, fall: 1 };
    s.slow_start = Some(100 * SEC);
    s.outlier = Some(OutlierParams {
        consecutive_failures: 1,
        base_ejection: 30 * SEC,
        max_ejection: 60 * SEC,
        max_ejected_percent: 100,
    });
    let old = Pool::new(s.clone(), t0);
    old.record_health_check(0, false, t0); // a down
    old.record_health_check(0, true, t0); // ... with one success towards rise
    old.set_admin_state(1, AdminState::Drain); // b drained
    old.record_outcome(2, 40 * MS, true, t0);
    old.record_outcome(2, MS, false, t0); // c ejected until t0+30s
    old.record_health_check(3, false, t0);
    let _inflight = old.start_request(2);

    // reload 20s later with a different order and a new backend
    let t1 = t0 + 20 * SEC;
    let mut s2 = s.clone();
    s2.backends = vec![
        BackendSpec::new("new", 1),
        BackendSpec::new("c", 1),
        BackendSpec::new("b", 1),
        BackendSpec::new("a", 1),
    ];
    let new = Pool::new(s2, t1);
    new.inherit_state(&old);

    let a = new.backend_at_time(3, t1);
    assert!(!a.healthy);
    // one more success completes rise=2 because the streak was inherited
    assert_eq!(
        new.record_health_check(3, true, t1),
        Some(HealthTransition::WentUp)
    );
    assert_eq!(new.backend(2).admin, AdminState::Drain);
    let c = new.backend_at_time(1, t1);
    assert_eq!(c.ejected_until, Some(t0 + 30 * SEC));
    assert_eq!(c.total_requests, 2);
    assert_eq!(c.total_failures, 1);
    assert_eq!(c.outstanding, 0, "outstanding is not inherited");
    assert!(!new.is_available(1, t1));
    assert!(new.is_available(1, t0 + 30 * SEC));
    // slow start clock (began when the ejection ends, t0+30s) is preserved
    let f = new.backend_at_time(1, t0 + 80 * SEC).slow_start_factor;
    assert!((f - 0.55).abs() < 1e-6, "{f}");
    // latency estimate preserved (40 ms peak replaced by 1 s failure penalty)
    assert!(new.backend_at_time(1, t0).ewma_latency >= SEC);
    // new backend starts fresh
    let n = new.backend(0);
    assert!(n.healthy && n.admin == AdminState::Enabled && n.total_requests == 0);
    // the old pool is untouched
    assert!(!old.backend(0).healthy);
    assert_eq!(old.backend(2).outstanding, 1);
}

#[test]
fn inherit_state_keeps_slow_start_from_before_reload() {
    let t0 = Instant::now();
    let mut s = primaries(Algorithm::WeightedRoundRobin, &[10, 10]);
    s.health = HealthParams { rise: 1, fall: 1 };
    s.slow_start = Some(10 * SEC);
    let old = Pool::new(s.clone(), t0);
    old.record_health_check(0, false, t0);
    old.record_health_check(0, true, t0 + SEC); // ramp starts at t0+1s
    let new = Pool::new(s, t0 + 6 * SEC);
    new.inherit_state(&old);
    // half-way through the ramp: 0.1 + 0.9 * 0.5
    let f = new.backend_at_time(0, t0 + 6 * SEC).slow_start_factor;
    assert!((f - 0.55).abs() < 1e-6, "{f}");
    assert_eq!(new.backend_at_time(1, t0 + 6 * SEC).slow_start_factor, 1.0);
}

// --------------------------------------------------------------- threading

#[test]
fn concurrent_use() {
    let now = Instant::now();
    for algo in ALL {
        let pool = Pool::new(primaries(algo, &[3, 2, 1]), now);
        std::thread::scope(|scope| {
            for t in 0..4u64 {
                let pool = &pool;
                scope.spawn(move || {
                    let mut guards = Vec::new();
                    for k in 0..2000u64 {
                        let i = pool.pick(Some(k * 31 + t), &[], now).unwrap();
                        guards.push(pool.start_request(i));
                        if guards.len() > 8 {
                            drop(guards.remove(0));
                        }
                        pool.record_outcome(i, MS, k % 7 != 0, now);
                    }
                });
            }
        });
        let total: u64 = (0..3).map(|i| pool.backend(i).total_requests).sum();
        assert_eq!(total, 8000);
        for i in 0..3 {
            assert_eq!(pool.backend(i).outstanding, 0, "{algo:?}");
        }
    }
}

#[test]
fn inflight_guard_is_static_and_movable() {
    let now = Instant::now();
    let pool = Pool::new(primaries(Algorithm::LeastConnections, &[1]), now);
    let g = pool.start_request(0);
    assert_eq!(g.index(), 0);
    let view = pool.clone();
    drop(pool); // guard and clones keep the state alive
    assert_eq!(view.backend(0).outstanding, 1);
    std::thread::spawn(move || drop(g)).join().unwrap();
    assert_eq!(view.backend(0).outstanding, 0);
    let ids: HashMap<_, _> = (0..view.len()).map(|i| (view.backend(i).id, i)).collect();
    assert_eq!(view.find("b0"), ids.get("b0").copied());
    assert_eq!(view.find("nope"), None);
}

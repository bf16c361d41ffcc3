use std::time::{Duration, Instant};

use proptest::prelude::*;
use rampart_balance::{
    AdminState, Algorithm, BackendSpec, HealthParams, OutlierParams, Pool, PoolSpec, StickySigner,
};

fn algorithm() -> impl Strategy<Value = Algorithm> {
    prop_oneof![
        Just(Algorithm::RoundRobin),
        Just(Algorithm::WeightedRoundRobin),
        Just(Algorithm::LeastConnections),
        Just(Algorithm::PowerOfTwoEwma),
        Just(Algorithm::ConsistentHash),
        Just(Algorithm::Random),
    ]
}

#[derive(Debug, Clone)]
struct BackendCase {
    weight: u32,
    backup: bool,
    down: bool,
    admin: u8,
    ejected: bool,
    outstanding: u8,
    latency_ms: u16,
}

fn backend_case() -> impl Strategy<Value = BackendCase> {
    (
        0u32..4,
        any::<bool>(),
        any::<bool>(),
        0u8..3,
        any::<bool>(),
        0u8..4,
        0u16..200,
    )
        .prop_map(
            |(weight, backup, down, admin, ejected, outstanding, latency_ms)| BackendCase {
                weight,
                backup,
                down,
                admin,
                ejected,
                outstanding,
                latency_ms,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn verify_never_panics(value in ".{0,300}", pool in ".{0,20}") {
        let s = StickySigner::new(b"k");
        let _ = s.verify(&pool, &value);
    }

    #[test]
    fn verify_never_panics_on_near_valid(
        id in "[A-Za-z0-9%._~-]{0,40}",
        mac in "[A-Za-z0-9_=+/-]{0,30}",
    ) {
        let s = StickySigner::new(b"k");
        let v = format!("{id}.{mac}");
        prop_assert_eq!(s.verify("p", &v), None);
    }

    #[test]
    fn sign_verify_round_trip(id in "\\PC{0,60}", pool in "[a-z]{0,10}") {
        let s = StickySigner::new(b"secret");
        let v = s.sign(&pool, &id);
        if v.len() <= 256 {
            prop_assert_eq!(s.verify(&pool, &v), Some(id.clone()));
            let other = format!("{pool}x");
            prop_assert_eq!(s.verify(&other, &v), None);
        } else {
            prop_assert_eq!(s.verify(&pool, &v), None);
        }
    }

    #[test]
    fn pick_only_returns_eligible(
        algo in algorithm(),
        cases in prop::collection::vec(backend_case(), 0..8),
        exclude in prop::collection::vec(0usize..9, 0..4),
        key in prop::option::of(any::<u64>()),
        picks in 1usize..8,
    ) {
        let t0 = Instant::now();
        let spec = PoolSpec {
            algorithm: algo,
            backends: cases
                .iter()
                .enumerate()
                .map(|(i, c)| BackendSpec { id: format!("b{i}"), weight: c.weight, backup: c.backup })
                .collect(),
            health: HealthParams { rise: 1, fall: 1 },
            outlier: Some(OutlierParams {
                consecutive_failures: 1,
                base_ejection: Duration::from_secs(5),
                max_ejection: Duration::from_secs(5),
                max_ejected_percent: 100,
            }),
            slow_start: Some(Duration::from_secs(10)),
        };
        let pool = Pool::new(spec, t0);
        let mut guards = Vec::new();
        for (i, c) in cases.iter().enumerate() {
            if c.latency_ms > 0 {
                pool.record_outcome(i, Duration::from_millis(c.latency_ms.into()), true, t0);
            }
            if c.down {
                pool.record_health_check(i, false, t0);
            }
            pool.set_admin_state(i, match c.admin { 0 => AdminState::Enabled, 1 => AdminState::Drain, _ => AdminState::Disabled });
            if c.ejected {
                pool.record_outcome(i, Duration::from_millis(1), false, t0);
            }
            for _ in 0..c.outstanding {
                guards.push(pool.start_request(i));
            }
        }
        let now = t0 + Duration::from_secs(1);
        let eligible = |i: usize| pool.is_available(i, now) && cases[i].weight > 0 && !exclude.contains(&i);
        let primary_eligible = (0..cases.len()).any(|i| !cases[i].backup && eligible(i));
        let any_eligible = (0..cases.len()).any(eligible);
        for _ in 0..picks {
            match pool.pick(key, &exclude, now) {
                Some(i) => {
                    prop_assert!(i < cases.len());
                    prop_assert!(!exclude.contains(&i));
                    prop_assert!(pool.is_available(i, now));
                    prop_assert!(cases[i].weight > 0);
                    prop_assert_eq!(cases[i].down, false);
                    prop_assert_eq!(cases[i].admin, 0);
                    prop_assert!(!(cases[i].backup && primary_eligible), "backup picked while a primary is eligible");
                }
                None => prop_assert!(!any_eligible, "None although a backend is eligible"),
            }
        }
    }
}

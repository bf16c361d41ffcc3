//! Balancing algorithms against real backends on 127.0.0.1: weighted round robin shares,
//! least connections and p2c_ewma under uneven latency, consistent hashing across a reload.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use tokio::task::JoinSet;

fn values(backends: &[(&'static str, &Arc<TestBackend>)]) -> HashMap<&'static str, String> {
    backends
        .iter()
        .map(|(k, b)| (*k, b.addr.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_round_robin_follows_weights() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let c = TestBackend::start("c").await;
    let config = fill(
        &one_pool_config(
            r#"
algorithm = "weighted_round_robin"
backends = [
  { id = "a", address = "{a}", weight = 5 },
  { id = "b", address = "{b}", weight = 3 },
  { id = "c", address = "{c}", weight = 2 },
]
"#,
            "",
        ),
        &values(&[("a", &a), ("b", &b), ("c", &c)]),
    );
    let (_proxy, addr) = start_proxy(&config).await;
    const TOTAL: usize = 10_000;
    let counts = spread(addr, "/wrr", TOTAL, 8).await;
    eprintln!("weighted round robin over {TOTAL} requests: {counts:?}");
    let total: u64 = counts.values().sum();
    assert_eq!(total, TOTAL as u64);
    for (id, weight) in [("a", 5.0), ("b", 3.0), ("c", 2.0)] {
        let share = *counts.get(id).unwrap_or(&0) as f64 / TOTAL as f64 * 100.0;
        let expected = weight * 10.0;
        assert!(
            (share - expected).abs() <= 2.0,
            "{id}: {share:.2}% vs {expected}% ({counts:?})"
        );
    }
    // The backends saw exactly what the client saw.
    assert_eq!(a.requests() + b.requests() + c.requests(), TOTAL as u64);
    assert_eq!(a.requests(), counts["a"]);
}

/// Runs `tasks` request loops for `duration` against a pool where backend `slow` answers after
/// 300 ms and `fast` at once; returns (requests to slow, requests to fast).
async fn slow_vs_fast(algorithm: &str) -> (u64, u64) {
    let slow = TestBackend::start("slow").await;
    let fast = TestBackend::start("fast").await;
    slow.state.delay_ms.store(300, Ordering::SeqCst);
    let config = fill(
        &one_pool_config(
            r#"
algorithm = "ALGO"
backends = [{ id = "slow", address = "{slow}" }, { id = "fast", address = "{fast}" }]
"#,
            "",
        )
        .replace("ALGO", algorithm),
        &values(&[("slow", &slow), ("fast", &fast)]),
    );
    let (_proxy, addr) = start_proxy(&config).await;
    let c = client();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    let mut tasks = JoinSet::new();
    for _ in 0..8 {
        let c = c.clone();
        tasks.spawn(async move {
            let mut errors = 0u32;
            while tokio::time::Instant::now() < deadline {
                match get(&c, addr, "/work").await {
                    Ok(r) if r.status == 200 => {}
                    _ => errors += 1,
                }
            }
            errors
        });
    }
    let mut errors = 0;
    while let Some(r) = tasks.join_next().await {
        errors += r.unwrap();
    }
    assert_eq!(errors, 0, "{algorithm}: failed requests");
    (slow.requests(), fast.requests())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_connections_prefers_backend_with_fewer_outstanding() {
    let (slow, fast) = slow_vs_fast("least_connections").await;
    eprintln!("least_connections: slow={slow} fast={fast}");
    assert!(slow >= 1, "the slow backend is still used when it is idle");
    assert!(
        fast >= 5 * slow,
        "least_connections: slow={slow} fast={fast}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2c_ewma_prefers_faster_backend() {
    let (slow, fast) = slow_vs_fast("p2c_ewma").await;
    eprintln!("p2c_ewma: slow={slow} fast={fast}");
    assert!(fast >= 5 * slow.max(1), "p2c_ewma: slow={slow} fast={fast}");
}

/// Maps every key to the backend that answered it (requests carry `x-user: <key>`).
async fn assign(addr: std::net::SocketAddr, keys: &[String]) -> HashMap<String, String> {
    let c = client();
    let mut tasks = JoinSet::new();
    for chunk in keys.chunks(keys.len().div_ceil(8)) {
        let c = c.clone();
        let chunk = chunk.to_vec();
        tasks.spawn(async move {
            let mut out = Vec::with_capacity(chunk.len());
            for k in chunk {
                let r = send(&c, addr, "GET", "/h", &[("x-user", &k)], b"")
                    .await
                    .unwrap();
                assert_eq!(r.status, 200);
                out.push((k, r.backend().unwrap()));
            }
            out
        });
    }
    let mut map = HashMap::new();
    while let Some(r) = tasks.join_next().await {
        map.extend(r.unwrap());
    }
    map
}

fn hash_config() -> String {
    one_pool_config(
        r#"
algorithm = "consistent_hash"
hash_key = { source = "header", name = "x-user" }
backends = [
  { id = "b1", address = "{b1}" },
  { id = "b2", address = "{b2}" },
  { id = "b3", address = "{b3}" },
  { id = "b4", address = "{b4}" },
  EXTRA
]
"#,
        "",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_hash_moves_only_keys_of_new_backend() {
    let mut backends = Vec::new();
    for name in ["b1", "b2", "b3", "b4", "b5"] {
        backends.push((name, TestBackend::start(name).await));
    }
    let vals: HashMap<&str, String> = backends
        .iter()
        .map(|(n, b)| (*n, b.addr.to_string()))
        .collect();
    let four = fill(&hash_config().replace("EXTRA", ""), &vals);
    let five = fill(
        &hash_config().replace("EXTRA", r#"{ id = "b5", address = "{b5}" },"#),
        &vals,
    );
    let (proxy, addr) = start_proxy(&four).await;

    let keys: Vec<String> = (0..10_000).map(|i| format!("user-{i}")).collect();
    let before = assign(addr, &keys).await;
    let mut per_backend: HashMap<&str, usize> = HashMap::new();
    for v in before.values() {
        *per_backend.entry(v.as_str()).or_default() += 1;
    }
    eprintln!("consistent_hash, 4 backends: {per_backend:?}");
    assert_eq!(per_backend.len(), 4, "{per_backend:?}");
    for (id, n) in &per_backend {
        assert!(*n >= 1_000, "{id} got only {n} of 10000 keys");
    }
    // Same key, same backend.
    let again = assign(addr, &keys[..500]).await;
    for (k, v) in &again {
        assert_eq!(&before[k], v, "key {k} moved without a config change");
    }

    let generation = proxy
        .apply(rampart_config::load_str(&five, "five.toml", std::path::Path::new(".")).unwrap())
        .await
        .unwrap();
    assert_eq!(generation, 2);
    let after = assign(addr, &keys).await;
    let moved: Vec<&String> = keys.iter().filter(|k| before[*k] != after[*k]).collect();
    let share = moved.len() as f64 / keys.len() as f64 * 100.0;
    eprintln!(
        "consistent_hash, 5th backend added: {} keys moved ({share:.1}%)",
        moved.len()
    );
    assert!(share <= 26.0, "{share:.1}% of keys moved");
    assert!(
        share >= 10.0,
        "the new backend takes a fair share; only {share:.1}% moved"
    );
    for k in &moved {
        assert_eq!(
            after[*k], "b5",
            "key {k} moved from {} to {} instead of the new backend",
            before[*k], after[*k]
        );
    }
}

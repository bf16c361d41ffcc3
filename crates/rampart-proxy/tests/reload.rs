//! Hot reload from the config file under constant load: valid versions bump the generation,
//! invalid ones are rejected and leave the running config alone, and no request fails.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use rampart_balance::AdminState;
use rampart_proxy::ReloadError;
use tokio::task::JoinSet;

fn values(backends: &[(&'static str, &Arc<TestBackend>)]) -> HashMap<&'static str, String> {
    backends
        .iter()
        .map(|(k, b)| (*k, b.addr.to_string()))
        .collect()
}

/// A valid config: pool "main" (a, b with weights `wa`/`wb`), pool "canary" (c), and when
/// `canary_route` a route sending requests with `x-canary` to the canary pool.
fn valid(vals: &HashMap<&str, String>, wa: u32, wb: u32, canary_route: bool) -> String {
    let route = if canary_route {
        "[[routes]]\nname = \"canary\"\nmatch = { headers = [{ name = \"x-canary\" }] }\npool = \"canary\"\n"
    } else {
        ""
    };
    fill(
        &format!(
            r#"
[[listeners]]
name = "web"
address = "127.0.0.1:0"
[[pools]]
name = "main"
algorithm = "weighted_round_robin"
backends = [{{ id = "a", address = "{{a}}", weight = {wa} }}, {{ id = "b", address = "{{b}}", weight = {wb} }}]
health_check = {{ path = "/healthz", interval = "200ms", timeout = "150ms", fall = 2, rise = 2 }}
[[pools]]
name = "canary"
backends = [{{ id = "c", address = "{{c}}" }}]
{route}
[[routes]]
name = "default"
pool = "main"
[observability]
access_log = "off"
"#
        ),
        vals,
    )
}

fn failures(proxy: &rampart_proxy::Proxy) -> f64 {
    metric_value(proxy, r#"rampart_config_reloads_total{outcome="failure"}"#)
}

fn successes(proxy: &rampart_proxy::Proxy) -> f64 {
    metric_value(proxy, r#"rampart_config_reloads_total{outcome="success"}"#)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_valid_and_invalid_versions() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let c = TestBackend::start("c").await;
    let vals = values(&[("a", &a), ("b", &b), ("c", &c)]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rampart.toml");
    std::fs::write(&path, valid(&vals, 1, 1, false)).unwrap();
    let (proxy, addr) = start_proxy_file(&path).await;
    assert_eq!(proxy.generation(), 1);

    // Constant load: keep-alive GETs and POSTs with small bodies; every answer is checked.
    let stop = Arc::new(AtomicBool::new(false));
    let http = client();
    let mut load = JoinSet::new();
    for t in 0..6 {
        let http = http.clone();
        let stop = stop.clone();
        load.spawn(async move {
            let mut ok = 0u64;
            let mut failed = Vec::new();
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                let result = if t % 3 == 2 {
                    let body = format!("task {t} request {i}");
                    send(
                        &http,
                        addr,
                        "POST",
                        "/echo",
                        &[("content-type", "text/plain")],
                        body.as_bytes(),
                    )
                    .await
                    .and_then(|r| {
                        if r.status == 200 && r.text() == body {
                            Ok(())
                        } else {
                            Err(format!("POST: {} {:?}", r.status, r.text()))
                        }
                    })
                } else {
                    get(&http, addr, "/load").await.and_then(|r| {
                        if r.status == 200 {
                            Ok(())
                        } else {
                            Err(format!("GET: {} {}", r.status, r.text()))
                        }
                    })
                };
                match result {
                    Ok(()) => ok += 1,
                    Err(e) => failed.push(e),
                }
            }
            (ok, failed)
        });
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let probe = client();
    let mut valid_count = 0;
    let mut invalid_count = 0;
    for round in 0..20u32 {
        if round % 2 == 0 {
            let (wa, wb) = (1 + round % 3, 1 + (round / 2) % 2);
            let canary = round % 4 == 0;
            std::fs::write(&path, valid(&vals, wa, wb, canary)).unwrap();
            let before = proxy.generation();
            let generation = proxy
                .reload_from_file()
                .await
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
            valid_count += 1;
            assert!(
                generation > before,
                "round {round}: generation {generation} after {before}"
            );
            assert!(proxy.generation() >= generation);
            let rt = proxy.runtime();
            let main = rt.snapshot.pool("main").unwrap();
            assert_eq!(
                (main.backends[0].weight, main.backends[1].weight),
                (wa, wb),
                "round {round}"
            );
            // The routes of the new version are in force.
            let r = send(&probe, addr, "GET", "/x", &[("x-canary", "1")], b"")
                .await
                .unwrap();
            assert_eq!(r.status, 200);
            assert_eq!(
                r.backend().as_deref() == Some("c"),
                canary,
                "round {round}: canary route {canary}, served by {:?}",
                r.backend()
            );
        } else {
            let text = valid(&vals, 2, 2, true);
            let broken = if round % 4 == 1 {
                text.replace(
                    "name = \"canary\"\nbackends",
                    "name = \"canary\"\nbogus_key = 1\nbackends",
                )
            } else {
                text.replace(
                    &format!("address = \"{}\"", vals["b"]),
                    "address = \"not-an-address\"",
                )
            };
            assert_ne!(broken, text);
            std::fs::write(&path, &broken).unwrap();
            let generation = proxy.generation();
            let hash = proxy.runtime().snapshot.source_hash;
            let failed_before = failures(&proxy);
            match proxy.reload_from_file().await {
                Err(ReloadError::Invalid(errors)) => {
                    let text = errors.to_string();
                    assert!(
                        text.contains("bogus_key") || text.contains("not-an-address"),
                        "round {round}: {text}"
                    );
                }
                other => panic!("round {round}: invalid config gave {other:?}"),
            }
            invalid_count += 1;
            assert_eq!(
                proxy.generation(),
                generation,
                "round {round}: a rejected config changed the generation"
            );
            assert_eq!(
                proxy.runtime().snapshot.source_hash,
                hash,
                "round {round}: running config changed"
            );
            assert!(
                failures(&proxy) >= failed_before + 1.0,
                "round {round}: failure not counted"
            );
        }
        // Let any reload started by the file watcher for the same content finish.
        tokio::time::sleep(Duration::from_millis(120)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    let mut ok = 0;
    let mut failed = Vec::new();
    while let Some(r) = load.join_next().await {
        let (n, f) = r.unwrap();
        ok += n;
        failed.extend(f);
    }
    let metrics_failures = failures(&proxy);
    let metrics_successes = successes(&proxy);
    eprintln!(
        "reload under load: {ok} requests ok, {} failed; generation {}; reload metrics: {metrics_successes} success, {metrics_failures} failure",
        failed.len(),
        proxy.generation()
    );
    assert!(
        failed.is_empty(),
        "{} failed requests, first: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(ok >= 500, "too little load: {ok}");
    assert_eq!((valid_count, invalid_count), (10, 10));
    assert!(proxy.generation() >= 11);
    assert!(metrics_failures >= 10.0, "{metrics_failures}");
    assert!(metrics_successes >= 10.0, "{metrics_successes}");
    assert_eq!(
        metric_value(&proxy, "rampart_config_generation"),
        proxy.generation() as f64
    );
    assert!(a.requests() > 0 && b.requests() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_keeps_operator_state_and_applies_new_weights() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let c = TestBackend::start("c").await;
    let vals = values(&[("a", &a), ("b", &b), ("c", &c)]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rampart.toml");
    std::fs::write(&path, valid(&vals, 1, 1, false)).unwrap();
    let (proxy, addr) = start_proxy_file(&path).await;
    proxy
        .set_backend_state("main", "a", AdminState::Drain)
        .unwrap();
    // A changed config: different weights and the canary route.
    std::fs::write(&path, valid(&vals, 3, 1, true)).unwrap();
    // (The file watcher may apply the same change first; either way it is in force.)
    assert!(proxy.reload_from_file().await.unwrap() >= 2);
    assert_eq!(
        backend_status(&proxy, "main", "a").admin_state,
        "drain",
        "operator state survives a reload"
    );
    let counts = spread(addr, "/", 20, 2).await;
    assert_eq!(counts.get("b"), Some(&20), "{counts:?}");
    proxy
        .set_backend_state("main", "a", AdminState::Enabled)
        .unwrap();
    let counts = spread(addr, "/", 40, 1).await;
    assert_eq!(
        (counts.get("a"), counts.get("b")),
        (Some(&30), Some(&10)),
        "new weights 3:1: {counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_watcher_applies_changes_and_ignores_broken_files() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let c = TestBackend::start("c").await;
    let vals = values(&[("a", &a), ("b", &b), ("c", &c)]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rampart.toml");
    std::fs::write(&path, valid(&vals, 1, 1, false)).unwrap();
    let (proxy, _addr) = start_proxy_file(&path).await;
    std::fs::write(&path, "[[listeners]]\nname = \"web\"\naddress = 5\n").unwrap();
    assert!(
        wait_for(Duration::from_secs(4), || failures(&proxy) >= 1.0).await,
        "watcher did not try the broken file"
    );
    assert_eq!(proxy.generation(), 1);
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(failures(&proxy), 1.0, "the same broken file is tried once");
    std::fs::write(&path, valid(&vals, 2, 1, false)).unwrap();
    assert!(
        wait_for(Duration::from_secs(4), || proxy.generation() == 2).await,
        "watcher did not apply the fixed file"
    );
    assert_eq!(
        proxy.runtime().snapshot.pool("main").unwrap().backends[0].weight,
        2
    );
}

//! Health checks (HTTP and TCP), backup tier, passive ejection, failover and retries against real
//! backends on 127.0.0.1.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;
use tokio::task::JoinSet;

const INTERVAL: Duration = Duration::from_millis(200);
const FALL: u32 = 2;
const RISE: u32 = 2;
/// Extra time allowed on top of `fall`/`rise` × interval on a loaded machine.
const MARGIN: Duration = Duration::from_millis(1_200);

const CHECK: &str =
    r#"{ path = "/healthz", interval = "200ms", timeout = "150ms", fall = 2, rise = 2 }"#;

fn values(backends: &[(&'static str, &Arc<TestBackend>)]) -> HashMap<&'static str, String> {
    backends
        .iter()
        .map(|(k, b)| (*k, b.addr.to_string()))
        .collect()
}

fn healthy(proxy: &rampart_proxy::Proxy, pool: &str, id: &str) -> bool {
    backend_status(proxy, pool, id).healthy
}

/// Waits until the backend's health is `want`; returns how long that took.
async fn wait_health(
    proxy: &rampart_proxy::Proxy,
    pool: &str,
    id: &str,
    want: bool,
    bound: Duration,
) -> Duration {
    let start = Instant::now();
    let ok = wait_for(bound + Duration::from_secs(3), || {
        healthy(proxy, pool, id) == want
    })
    .await;
    let took = start.elapsed();
    assert!(
        ok,
        "{pool}/{id} did not become healthy={want} within {:?}",
        bound + Duration::from_secs(3)
    );
    assert!(
        took <= bound,
        "{pool}/{id} became healthy={want} only after {took:?} (bound {bound:?})"
    );
    took
}

/// Sends `n` GETs one after another; every answer must be 200. Returns counts per backend.
async fn all_ok(c: &Client, addr: SocketAddr, path: &str, n: usize) -> HashMap<String, u64> {
    let mut counts = HashMap::new();
    for i in 0..n {
        let r = get(c, addr, path)
            .await
            .unwrap_or_else(|e| panic!("request {i}: {e}"));
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
        *counts.entry(r.backend().unwrap()).or_default() += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_backend_leaves_after_fall_and_returns_after_rise() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let config = fill(
        &one_pool_config(
            r#"
backends = [{ id = "a", address = "{a}" }, { id = "b", address = "{b}" }]
health_check = CHECK
"#,
            "",
        )
        .replace("CHECK", CHECK),
        &values(&[("a", &a), ("b", &b)]),
    );
    let (proxy, addr) = start_proxy(&config).await;
    let c = client();
    let counts = all_ok(&c, addr, "/", 10).await;
    assert_eq!(counts.get("a"), Some(&5), "{counts:?}");

    a.kill().await;
    let down = wait_health(&proxy, "p", "a", false, INTERVAL * FALL + MARGIN).await;
    eprintln!("killed backend marked down after {down:?}");
    // One failed check is not enough.
    assert!(
        down >= INTERVAL * (FALL - 1) - Duration::from_millis(50),
        "marked down after only {down:?}"
    );
    let attempts_before = backend_status(&proxy, "p", "a").total_requests;
    let b_before = b.requests();
    let counts = all_ok(&c, addr, "/", 40).await;
    assert_eq!(counts.get("b"), Some(&40), "{counts:?}");
    assert_eq!(b.requests() - b_before, 40);
    assert_eq!(
        backend_status(&proxy, "p", "a").total_requests,
        attempts_before,
        "the down backend was still tried"
    );
    assert!(!backend_status(&proxy, "p", "a").available);

    a.restart().await;
    let up = wait_health(&proxy, "p", "a", true, INTERVAL * RISE + MARGIN).await;
    eprintln!("restarted backend marked up after {up:?}");
    assert!(
        up >= INTERVAL * (RISE - 1) - Duration::from_millis(50),
        "marked up after only {up:?}"
    );
    let a_before = a.requests();
    let counts = all_ok(&c, addr, "/", 20).await;
    assert_eq!(counts.get("a"), Some(&10), "{counts:?}");
    assert_eq!(a.requests() - a_before, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_check_expect_status_and_body_mismatch_marks_down() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    // The same two backends in four pools that differ only in what the check expects.
    let pool = |name: &str, check: &str| {
        format!(
            "[[pools]]\nname = \"{name}\"\nbackends = [{{ id = \"a\", address = \"{{a}}\" }}, {{ id = \"b\", address = \"{{b}}\" }}]\n\
             health_check = {{ interval = \"200ms\", timeout = \"150ms\", fall = 2, rise = 2, {check} }}\n\
             [[routes]]\nname = \"{name}\"\nmatch = {{ path_prefix = \"/{name}\" }}\npool = \"{name}\"\n"
        )
    };
    let config = fill(
        &format!(
            "[[listeners]]\nname = \"web\"\naddress = \"127.0.0.1:0\"\n[observability]\naccess_log = \"off\"\n{}{}{}{}",
            pool(
                "status_ok",
                r#"path = "/status/204", expect_status = "204""#
            ),
            pool("status_bad", r#"path = "/healthz", expect_status = "204""#),
            pool("body_ok", r#"path = "/healthz", expect_body = "ok""#),
            pool(
                "body_bad",
                r#"path = "/", expect_status = "200", expect_body = "healthy-marker""#
            ),
        ),
        &values(&[("a", &a), ("b", &b)]),
    );
    let (proxy, addr) = start_proxy(&config).await;
    for id in ["a", "b"] {
        wait_health(&proxy, "status_bad", id, false, INTERVAL * FALL + MARGIN).await;
        wait_health(&proxy, "body_bad", id, false, INTERVAL * FALL + MARGIN).await;
    }
    // Checks that match keep their backends up.
    for pool in ["status_ok", "body_ok"] {
        for id in ["a", "b"] {
            assert!(healthy(&proxy, pool, id), "{pool}/{id} should be up");
        }
    }
    let c = client();
    for path in ["/status_bad", "/body_bad"] {
        let r = get(&c, addr, path).await.unwrap();
        assert_eq!(r.status, 503, "{path}: every backend is down");
    }
    for path in ["/status_ok", "/body_ok"] {
        let r = get(&c, addr, path).await.unwrap();
        assert_eq!(r.status, 200, "{path}");
    }

    // A body mismatch alone (status still accepted) takes one backend down: "down" != "ok".
    let config2 = fill(
        &format!(
            "[[listeners]]\nname = \"web\"\naddress = \"127.0.0.1:0\"\n[observability]\naccess_log = \"off\"\n{}",
            pool(
                "body_only",
                r#"path = "/healthz", expect_status = "200-599", expect_body = "ok""#
            ),
        ),
        &values(&[("a", &a), ("b", &b)]),
    );
    let (proxy2, addr2) = start_proxy(&config2).await;
    a.set_healthy(false);
    wait_health(&proxy2, "body_only", "a", false, INTERVAL * FALL + MARGIN).await;
    assert!(healthy(&proxy2, "body_only", "b"));
    let counts = all_ok(&c, addr2, "/body_only", 10).await;
    assert_eq!(counts.get("b"), Some(&10), "{counts:?}");
    a.set_healthy(true);
    wait_health(&proxy2, "body_only", "a", true, INTERVAL * RISE + MARGIN).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_check_detects_killed_and_restarted_backend() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let config = fill(
        &one_pool_config(
            r#"
backends = [{ id = "a", address = "{a}" }, { id = "b", address = "{b}" }]
health_check = { kind = "tcp", interval = "200ms", timeout = "150ms", fall = 2, rise = 2 }
"#,
            "",
        ),
        &values(&[("a", &a), ("b", &b)]),
    );
    let (proxy, addr) = start_proxy(&config).await;
    // A TCP check does not look at HTTP: an HTTP-unhealthy backend that accepts stays up.
    a.set_healthy(false);
    tokio::time::sleep(INTERVAL * (FALL + 2)).await;
    assert!(healthy(&proxy, "p", "a"));
    a.set_healthy(true);

    a.kill().await;
    wait_health(&proxy, "p", "a", false, INTERVAL * FALL + MARGIN).await;
    let c = client();
    let counts = all_ok(&c, addr, "/", 20).await;
    assert_eq!(counts.get("b"), Some(&20), "{counts:?}");
    a.restart().await;
    wait_health(&proxy, "p", "a", true, INTERVAL * RISE + MARGIN).await;
    let counts = all_ok(&c, addr, "/", 20).await;
    assert_eq!(counts.get("a"), Some(&10), "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_serves_only_while_all_primaries_are_down() {
    let p1 = TestBackend::start("p1").await;
    let p2 = TestBackend::start("p2").await;
    let bk = TestBackend::start("bk").await;
    let config = fill(
        &one_pool_config(
            r#"
backends = [
  { id = "p1", address = "{p1}" },
  { id = "p2", address = "{p2}" },
  { id = "bk", address = "{bk}", backup = true },
]
health_check = CHECK
"#,
            "",
        )
        .replace("CHECK", CHECK),
        &values(&[("p1", &p1), ("p2", &p2), ("bk", &bk)]),
    );
    let (proxy, addr) = start_proxy(&config).await;
    let c = client();
    let counts = all_ok(&c, addr, "/", 30).await;
    assert_eq!(counts.get("bk"), None, "{counts:?}");

    // One primary down: the other primary serves, the backup stays idle.
    p1.kill().await;
    wait_health(&proxy, "p", "p1", false, INTERVAL * FALL + MARGIN).await;
    let counts = all_ok(&c, addr, "/", 30).await;
    assert_eq!(counts.get("p2"), Some(&30), "{counts:?}");
    assert_eq!(bk.requests(), 0);

    // All primaries down: the backup serves, also before the checks notice (retries).
    p2.kill().await;
    let counts = all_ok(&c, addr, "/", 10).await;
    assert_eq!(counts.get("bk"), Some(&10), "{counts:?}");
    wait_health(&proxy, "p", "p2", false, INTERVAL * FALL + MARGIN).await;
    let counts = all_ok(&c, addr, "/", 30).await;
    assert_eq!(counts.get("bk"), Some(&30), "{counts:?}");

    // Primaries back: traffic returns to them once rise checks passed.
    p1.restart().await;
    p2.restart().await;
    wait_health(&proxy, "p", "p1", true, INTERVAL * RISE + MARGIN).await;
    wait_health(&proxy, "p", "p2", true, INTERVAL * RISE + MARGIN).await;
    let bk_before = bk.requests();
    let counts = all_ok(&c, addr, "/", 30).await;
    assert_eq!(
        bk.requests(),
        bk_before,
        "backup used while primaries are up: {counts:?}"
    );
    assert_eq!(counts.get("p1"), Some(&15), "{counts:?}");
    assert_eq!(counts.get("p2"), Some(&15), "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_ejection_without_active_checks() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let config = fill(
        &one_pool_config(
            r#"
backends = [{ id = "a", address = "{a}" }, { id = "b", address = "{b}" }]
outlier = { consecutive_failures = 3, base_ejection = "2s" }
retries = { attempts = 1 }
"#,
            "",
        ),
        &values(&[("a", &a), ("b", &b)]),
    );
    let (proxy, addr) = start_proxy(&config).await;
    let c = client();
    a.state.status.store(500, Ordering::SeqCst);
    let mut errors = 0;
    for _ in 0..20 {
        let r = get(&c, addr, "/").await.unwrap();
        if r.status == 500 {
            errors += 1;
        }
        if backend_status(&proxy, "p", "a").ejected_for_ms.is_some() {
            break;
        }
    }
    assert!(
        backend_status(&proxy, "p", "a").ejected_for_ms.is_some(),
        "a was not ejected"
    );
    assert_eq!(errors, 3, "ejected after exactly consecutive_failures 500s");
    assert_eq!(
        metric_value(
            &proxy,
            r#"rampart_outlier_ejections_total{pool="p",backend="a"}"#
        ),
        1.0
    );
    assert!(
        healthy(&proxy, "p", "a"),
        "ejection is not an active-health verdict"
    );

    // The backend recovers, but stays out until the ejection ends.
    a.state.status.store(0, Ordering::SeqCst);
    let a_before = a.requests();
    let counts = all_ok(&c, addr, "/", 20).await;
    assert!(
        backend_status(&proxy, "p", "a").ejected_for_ms.is_some(),
        "ejection ended too early for this check"
    );
    assert_eq!(a.requests(), a_before, "an ejected backend got traffic");
    assert_eq!(counts.get("b"), Some(&20));

    assert!(
        wait_for(Duration::from_secs(5), || backend_status(&proxy, "p", "a")
            .available)
        .await
    );
    let counts = all_ok(&c, addr, "/", 20).await;
    assert_eq!(counts.get("a"), Some(&10), "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_ejection_of_killed_backend_is_invisible_to_clients() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let config = fill(
        &one_pool_config(
            r#"
backends = [{ id = "a", address = "{a}" }, { id = "b", address = "{b}" }]
outlier = { consecutive_failures = 2, base_ejection = "1s" }
"#,
            "",
        ),
        &values(&[("a", &a), ("b", &b)]),
    );
    let (proxy, addr) = start_proxy(&config).await;
    let c = client();
    all_ok(&c, addr, "/", 4).await;
    a.kill().await;
    let counts = all_ok(&c, addr, "/", 10).await;
    assert_eq!(counts.get("b"), Some(&10));
    let st = backend_status(&proxy, "p", "a");
    assert!(
        st.ejected_for_ms.is_some(),
        "killed backend not ejected: {st:?}"
    );
    let tried = st.total_requests;
    all_ok(&c, addr, "/", 10).await;
    if backend_status(&proxy, "p", "a").ejected_for_ms.is_some() {
        assert_eq!(
            backend_status(&proxy, "p", "a").total_requests,
            tried,
            "an ejected backend was tried"
        );
    }
    a.restart().await;
    assert!(
        wait_for(Duration::from_secs(6), || backend_status(&proxy, "p", "a")
            .available)
        .await
    );
    let a_before = a.requests();
    all_ok(&c, addr, "/", 10).await;
    assert!(
        a.requests() > a_before,
        "backend did not return after its ejection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_backend_under_load_causes_no_client_errors() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let c3 = TestBackend::start("c").await;
    let config = fill(
        &one_pool_config(
            r#"
backends = [{ id = "a", address = "{a}" }, { id = "b", address = "{b}" }, { id = "c", address = "{c}" }]
health_check = CHECK
retries = { attempts = 3 }
"#,
            "",
        )
        .replace("CHECK", CHECK),
        &values(&[("a", &a), ("b", &b), ("c", &c3)]),
    );
    let (proxy, addr) = start_proxy(&config).await;
    let c = client();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    let mut tasks = JoinSet::new();
    for _ in 0..4 {
        let c = c.clone();
        tasks.spawn(async move {
            let mut ok = 0u64;
            let mut failures = Vec::new();
            while tokio::time::Instant::now() < deadline {
                match get(&c, addr, "/").await {
                    Ok(r) if r.status == 200 => ok += 1,
                    Ok(r) => failures.push(format!("{} {}", r.status, r.text())),
                    Err(e) => failures.push(e),
                }
            }
            (ok, failures)
        });
    }
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let b_at_kill = b.requests();
    b.kill().await;
    let mut ok = 0;
    let mut failures = Vec::new();
    while let Some(r) = tasks.join_next().await {
        let (n, f) = r.unwrap();
        ok += n;
        failures.extend(f);
    }
    let retries: f64 = ["a", "b", "c"]
        .iter()
        .map(|id| {
            metric_value(
                &proxy,
                &format!(r#"rampart_upstream_retries_total{{pool="p",backend="{id}"}}"#),
            )
        })
        .sum();
    eprintln!(
        "under load: {ok} ok, {} failed, {retries} retries; b served {b_at_kill} before the kill",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} client-visible failures, first: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(ok >= 200, "too little load to mean anything: {ok}");
    assert!(b_at_kill > 0);
    assert!(
        retries > 0.0,
        "requests to the killed backend should have been retried"
    );
    assert!(!healthy(&proxy, "p", "b"));
}

fn retry_config() -> String {
    one_pool_config(
        r#"
backends = [{ id = "a", address = "{a}" }, { id = "b", address = "{b}" }]
retries = RETRIES
"#,
        "",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_with_body_is_not_retried_get_is() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    a.state.status.store(503, Ordering::SeqCst);
    let config = fill(
        &retry_config().replace("RETRIES", "{ attempts = 3, on_status = [503] }"),
        &values(&[("a", &a), ("b", &b)]),
    );
    let (_proxy, addr) = start_proxy(&config).await;
    let c = client();
    let mut statuses = HashMap::new();
    for i in 0..10 {
        let body = format!("payload-{i}");
        let r = send(&c, addr, "POST", "/echo", &[], body.as_bytes())
            .await
            .unwrap();
        assert_eq!(r.text(), body, "the backend that answered got the body");
        *statuses.entry(r.status.as_u16()).or_insert(0u64) += 1;
    }
    eprintln!("POST statuses: {statuses:?}");
    assert_eq!(a.requests() + b.requests(), 10, "a POST was sent twice");
    assert_eq!(
        statuses.get(&503).copied().unwrap_or(0),
        a.requests(),
        "every POST that reached a saw its 503"
    );
    assert!(a.requests() >= 3, "round robin sends POSTs to a too");

    let (a0, b0) = (a.requests(), b.requests());
    for i in 0..10 {
        let r = get(&c, addr, "/").await.unwrap();
        assert_eq!(r.status, 200, "GET {i} was not retried");
        assert_eq!(r.backend().as_deref(), Some("b"));
    }
    assert_eq!(b.requests() - b0, 10);
    assert!(
        a.requests() - a0 >= 3,
        "GETs should have reached a and been retried on b"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_retry_budget_means_no_retries() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    a.state.status.store(503, Ordering::SeqCst);
    let config = fill(
        &retry_config().replace(
            "RETRIES",
            "{ attempts = 3, on_status = [503], budget_percent = 0, min_per_second = 0 }",
        ),
        &values(&[("a", &a), ("b", &b)]),
    );
    let (proxy, addr) = start_proxy(&config).await;
    let c = client();
    let mut unavailable = 0;
    for _ in 0..10 {
        let r = get(&c, addr, "/").await.unwrap();
        if r.status == 503 {
            unavailable += 1;
        }
    }
    assert_eq!(
        a.requests() + b.requests(),
        10,
        "a request was retried without budget"
    );
    assert_eq!(unavailable, a.requests());
    assert!(unavailable >= 3, "round robin sends some GETs to a");
    assert_eq!(
        metric_value(
            &proxy,
            r#"rampart_upstream_retries_total{pool="p",backend="b"}"#
        ),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_on_status_without_another_backend_returns_the_upstream_answer() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    a.state.status.store(503, Ordering::SeqCst);
    b.state.status.store(503, Ordering::SeqCst);
    let config = fill(
        &retry_config().replace("RETRIES", "{ attempts = 3, on_status = [503] }"),
        &values(&[("a", &a), ("b", &b)]),
    );
    let (_proxy, addr) = start_proxy(&config).await;
    let c = client();
    for i in 0..6 {
        let r = get(&c, addr, "/").await.unwrap();
        // Both backends were tried once; the last answer is passed on as it is.
        assert_eq!(r.status, 503, "GET {i}: {}", r.text());
        assert!(
            r.backend().is_some(),
            "GET {i}: the backend's own answer, not a proxy error"
        );
    }
    assert_eq!(
        a.requests() + b.requests(),
        12,
        "each GET tries each backend exactly once"
    );
}

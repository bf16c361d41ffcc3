//! Per-backend request caps with a bounded queue (HAProxy `maxconn`, `maxqueue`,
//! `timeout queue`): a full queue and a queue timeout both answer 503.
mod common;

use std::time::{Duration, Instant};

use common::*;

async fn capped_proxy(
    backend: std::net::SocketAddr,
    queue: &str,
) -> (std::sync::Arc<rampart_proxy::Proxy>, std::net::SocketAddr) {
    start_proxy(&one_pool_config(
        &format!(
            "backends = [{{ id = \"only\", address = \"{backend}\" }}]\n\
             max_connections_per_backend = 1\n{queue}\n\
             retries = {{ attempts = 1 }}"
        ),
        "",
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_queue_and_a_queue_timeout_answer_503() {
    let b = TestBackend::start("b").await;
    let (_proxy, addr) =
        capped_proxy(b.addr, "max_queue = 1\ntimeouts = { queue = \"300ms\" }").await;
    let client = client();
    // Holds the only slot for 1.5 s.
    let busy = {
        let client = client.clone();
        tokio::spawn(async move { get(&client, addr, "/slow/1500").await })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    // Takes the only queue place and times out.
    let queued = {
        let client = client.clone();
        tokio::spawn(async move {
            let start = Instant::now();
            let a = get(&client, addr, "/").await;
            (a, start.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The queue is full: refused at once.
    let start = Instant::now();
    let full = get(&client, addr, "/").await.unwrap();
    assert_eq!(full.status, 503);
    assert!(full.headers.contains_key("retry-after"));
    assert!(
        start.elapsed() < Duration::from_millis(200),
        "{:?}",
        start.elapsed()
    );

    let (timed_out, waited) = queued.await.unwrap();
    let timed_out = timed_out.unwrap();
    assert_eq!(timed_out.status, 503);
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_millis(800),
        "503 after {waited:?}, queue timeout 300 ms"
    );
    assert_eq!(busy.await.unwrap().unwrap().status, 200);
    // The slot is free again.
    assert_eq!(get(&client, addr, "/").await.unwrap().status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queued_requests_are_served_when_a_slot_frees() {
    let b = TestBackend::start("b").await;
    let (_proxy, addr) = capped_proxy(b.addr, "timeouts = { queue = \"5s\" }").await;
    let client = client();
    let start = Instant::now();
    let tasks: Vec<_> = (0..5)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { get(&client, addr, "/slow/100").await })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().status, 200);
    }
    // One at a time: five 100 ms requests take at least 500 ms.
    assert!(
        start.elapsed() >= Duration::from_millis(500),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(b.requests(), 5);
}

#[tokio::test]
async fn queue_settings_are_checked() {
    for (extra, expected) in [
        (
            "max_connections_per_backend = -1",
            "max_connections_per_backend",
        ),
        ("max_queue = -5", "max_queue"),
        ("timeouts = { queue = \"soon\" }", "timeouts.queue"),
    ] {
        let config = one_pool_config(
            &format!("backends = [{{ address = \"127.0.0.1:9\" }}]\n{extra}"),
            "",
        );
        let err = rampart_config::load_str(&config, "t.toml", std::path::Path::new("."))
            .map(|_| ())
            .expect_err(extra)
            .to_string();
        assert!(err.contains(expected), "{err}");
    }
}

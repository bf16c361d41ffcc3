//! Reloads that move listeners: a port that cannot be bound rejects the reload and leaves
//! every running listener serving; a free port moves the listener.
mod common;

use std::collections::HashMap;

use common::*;
use rampart_proxy::ReloadError;

fn config(backend: &str, address: &str) -> String {
    fill(
        r#"
[[listeners]]
name = "web"
address = "{addr}"
[[pools]]
name = "p"
backends = [{ address = "{b}" }]
[[routes]]
name = "all"
pool = "p"
[observability]
access_log = "off"
"#,
        &HashMap::from([("addr", address.to_string()), ("b", backend.to_string())]),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_bind_keeps_running_listeners() {
    let b = TestBackend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rampart.toml");
    let port = free_port();
    std::fs::write(
        &path,
        config(&b.addr.to_string(), &format!("127.0.0.1:{port}")),
    )
    .unwrap();
    let (proxy, addr) = start_proxy_file(&path).await;
    let c = client();
    assert_eq!(get(&c, addr, "/").await.unwrap().status, 200);

    // Move the listener to a port something else holds: the reload fails as a whole.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap();
    std::fs::write(&path, config(&b.addr.to_string(), &taken_addr.to_string())).unwrap();
    let generation = proxy.generation();
    match proxy.reload_from_file().await {
        Err(ReloadError::Bind { listener, .. }) => assert_eq!(listener, "web"),
        other => panic!("expected a bind error, got {other:?}"),
    }
    assert_eq!(proxy.generation(), generation);
    assert_eq!(proxy.listener_addr("web"), Some(addr));
    let fresh = client();
    assert_eq!(
        get(&fresh, addr, "/").await.unwrap().status,
        200,
        "old listener must still serve"
    );

    // A free port moves it.
    drop(taken);
    let new_port = free_port();
    std::fs::write(
        &path,
        config(&b.addr.to_string(), &format!("127.0.0.1:{new_port}")),
    )
    .unwrap();
    proxy.reload_from_file().await.unwrap();
    let moved = proxy.listener_addr("web").unwrap();
    assert_eq!(moved.port(), new_port);
    assert_eq!(get(&client(), moved, "/").await.unwrap().status, 200);
    assert!(
        get(&client(), addr, "/").await.is_err(),
        "the old port must be closed"
    );
}

/// A process that is shutting down (or has handed its sockets to a new one) never listens
/// again: neither a reload nor its config-file watcher opens a listener, since connections
/// queued on it would be reset when the process exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_reload_once_shutdown_began() {
    let b = TestBackend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rampart.toml");
    let port = free_port();
    let text = config(&b.addr.to_string(), &format!("127.0.0.1:{port}"));
    std::fs::write(&path, &text).unwrap();
    let (proxy, addr) = start_proxy_file(&path).await;
    assert_eq!(get(&client(), addr, "/").await.unwrap().status, 200);

    assert_eq!(proxy.shutdown(std::time::Duration::from_secs(2)).await, 0);
    assert!(proxy.is_shutting_down());
    let generation = proxy.generation();
    match proxy.reload_from_file().await {
        Err(ReloadError::ShuttingDown) => {}
        other => panic!("expected a refusal, got {other:?}"),
    }
    // The watcher sees a changed file within a second; it must leave it alone too.
    std::fs::write(&path, format!("{text}\n# changed\n")).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(proxy.generation(), generation);
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "a shut-down proxy listens on {addr} again"
    );
}

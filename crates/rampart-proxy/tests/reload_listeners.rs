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

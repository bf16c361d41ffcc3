//! Passive outlier detection counts only failures the backend caused: clients that send
//! oversized chunked bodies must not get a healthy backend ejected.
mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_body_errors_do_not_eject_backends() {
    let b = TestBackend::start("b").await;
    let config = one_pool_config(
        &format!(
            "backends = [{{ id = \"only\", address = \"{}\" }}]\n\
             outlier = {{ consecutive_failures = 2, base_ejection = \"30s\", max_ejected_percent = 100 }}",
            b.addr
        ),
        "max_body = \"1KiB\"",
    );
    let (proxy, addr) = start_proxy(&config).await;
    let chunk = "x".repeat(1500);
    let request = format!(
        "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len()
    );
    for _ in 0..4 {
        let r = raw_exchange(addr, request.as_bytes()).await;
        if let Ok(r) = r {
            assert_ne!(r.status, 200, "an oversized body must not succeed");
        }
    }
    let status = backend_status(&proxy, "p", "only");
    assert!(
        status.available && status.ejected_for_ms.is_none(),
        "{status:?}"
    );
    assert_eq!(get(&client(), addr, "/").await.unwrap().status, 200);
}

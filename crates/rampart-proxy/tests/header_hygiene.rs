//! Headers a client must not be able to smuggle upstream: a forged X-Forwarded-Host, userinfo
//! in an absolute-form target, and upgrade tokens other than websocket.
mod common;

use common::*;

async fn setup() -> (
    std::sync::Arc<TestBackend>,
    std::net::SocketAddr,
    std::sync::Arc<rampart_proxy::Proxy>,
) {
    let b = TestBackend::start("b").await;
    let config = one_pool_config(&format!("backends = [{{ address = \"{}\" }}]", b.addr), "");
    let (proxy, addr) = start_proxy(&config).await;
    (b, addr, proxy)
}

fn seen(b: &TestBackend) -> http::HeaderMap {
    b.state
        .last_headers
        .lock()
        .unwrap()
        .clone()
        .expect("backend saw a request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_forwarded_host_is_dropped_without_host() {
    let (b, addr, _p) = setup().await;
    let r = raw_exchange(
        addr,
        b"GET /x HTTP/1.0\r\nX-Forwarded-Host: evil.example\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    let h = seen(&b);
    assert!(h.get("x-forwarded-host").is_none(), "{h:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_host_is_replaced_not_kept() {
    let (b, addr, _p) = setup().await;
    let r = raw_exchange(
        addr,
        b"GET /x HTTP/1.1\r\nHost: api.example\r\nX-Forwarded-Host: evil.example\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    let h = seen(&b);
    assert_eq!(
        h.get_all("x-forwarded-host").iter().collect::<Vec<_>>(),
        vec!["api.example"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn userinfo_never_becomes_host() {
    let (b, addr, _p) = setup().await;
    let r = raw_exchange(
        addr,
        b"GET http://user:secret@api.example:8080/x HTTP/1.1\r\nHost: api.example:8080\r\n\r\n",
    )
    .await
    .unwrap();
    // hyper may refuse userinfo outright; if it is forwarded, the credentials must not be.
    if r.status == 200 {
        let h = seen(&b);
        assert_eq!(h["host"], "api.example:8080");
        assert!(!format!("{h:?}").contains("secret"), "{h:?}");
    } else {
        assert_eq!(r.status, 400);
        assert_eq!(b.requests(), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_websocket_upgrades_are_tunnelled() {
    let (b, addr, _p) = setup().await;
    let r = raw_exchange(addr, b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n").await.unwrap();
    assert_eq!(r.status, 200, "served as a plain request");
    let h = seen(&b);
    assert!(
        h.get("upgrade").is_none()
            && h.get("http2-settings").is_none()
            && h.get("connection").is_none(),
        "{h:?}"
    );
}

//! HTTP/2 (h2c with prior knowledge from clients, HTTP/2 to upstreams) and WebSocket pass-through.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use futures_util::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rampart_proxy::Proxy;
use tokio_tungstenite::tungstenite::Message;

async fn proxy_to(
    backend: SocketAddr,
    listener_extra: &str,
    pool_protocol: &str,
) -> (Arc<Proxy>, SocketAddr) {
    let values = HashMap::from([
        ("b", backend.to_string()),
        ("extra", listener_extra.to_string()),
        ("protocol", pool_protocol.to_string()),
    ]);
    let config = fill(
        r#"
[[listeners]]
name = "web"
address = "127.0.0.1:0"
{extra}
[[pools]]
name = "p"
protocol = "{protocol}"
backends = [{ address = "{b}" }]
[[routes]]
name = "all"
pool = "p"
[observability]
access_log = "off"
"#,
        &values,
    );
    start_proxy(&config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_prior_knowledge_works() {
    let backend = TestBackend::start("app").await;
    let (_proxy, addr) = proxy_to(backend.addr, "", "http1").await;
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut h2 = h2_over(tcp).await.unwrap();
    let r = h2_get(&mut h2, &format!("http://{addr}/x")).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "app");
    // A body both ways.
    let req = http::Request::post(format!("http://{addr}/echo"))
        .body(Full::new(Bytes::from(vec![7u8; 200_000])))
        .unwrap();
    let resp = h2.send_request(req).await.unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let a = collect_answer(resp).await.unwrap();
    assert_eq!(a.status, 200);
    assert!(a.body.len() == 200_000 && a.body.iter().all(|b| *b == 7));
    let h = backend.state.last_headers.lock().unwrap().clone().unwrap();
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["host"], addr.to_string().as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_can_be_turned_off() {
    let backend = TestBackend::start("app").await;
    let (_proxy, addr) = proxy_to(backend.addr, "h2c = false", "http1").await;
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let outcome = match h2_over(tcp).await {
        Err(e) => Err(e),
        Ok(mut h2) => h2_get(&mut h2, &format!("http://{addr}/x"))
            .await
            .map(|a| a.status),
    };
    assert!(
        outcome.is_err(),
        "h2c answered on a listener with h2c = false: {outcome:?}"
    );
    // HTTP/1.1 still works there.
    assert_eq!(get(&client(), addr, "/x").await.unwrap().status, 200);
    assert_eq!(backend.requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_streams_on_one_connection() {
    let backend = TestBackend::start("app").await;
    let (_proxy, addr) = proxy_to(backend.addr, "", "http1").await;
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let h2 = h2_over(tcp).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let mut h2 = h2.clone();
        // Every fourth request waits a little on the backend so streams really overlap.
        let path = if i % 4 == 0 {
            "/slow/50".to_string()
        } else {
            format!("/n/{i}")
        };
        let url = format!("http://{addr}{path}");
        tasks.spawn(async move { h2_get(&mut h2, &url).await });
    }
    let mut ok = 0;
    while let Some(r) = tasks.join_next().await {
        let a = r.unwrap().unwrap();
        assert_eq!(a.status, 200);
        assert_eq!(a.text(), "app");
        ok += 1;
    }
    assert_eq!(ok, 200);
    assert_eq!(backend.requests(), 200);
}

/// An HTTP/2-only (prior knowledge) backend that answers with the request's version.
async fn h2_only_backend() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                    let text = format!("{:?} {}", req.version(), req.uri().path());
                    Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from(
                        text,
                    ))))
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_http2_pool() {
    // The test backend serves h2c next to HTTP/1.1.
    let backend = TestBackend::start("app").await;
    let (_proxy, addr) = proxy_to(backend.addr, "", "http2").await;
    let c = client();
    let r = get(&c, addr, "/x").await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "app");
    let r = send(&c, addr, "POST", "/echo", &[], b"over h2")
        .await
        .unwrap();
    assert_eq!(r.text(), "over h2");

    // A backend that speaks only HTTP/2 proves the pool really uses it, and concurrent client
    // requests share the upstream connection.
    let (h2_backend, task) = h2_only_backend().await;
    let (_proxy2, addr2) = proxy_to(h2_backend, "", "http2").await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..50 {
        let c = c.clone();
        tasks.spawn(async move { get(&c, addr2, &format!("/p/{i}")).await });
    }
    while let Some(r) = tasks.join_next().await {
        let a = r.unwrap().unwrap();
        assert_eq!(a.status, 200);
        assert!(a.text().starts_with("HTTP/2.0 /p/"), "{}", a.text());
    }
    task.abort();
}

/// A WebSocket echo server on 127.0.0.1.
async fn ws_echo_server() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_close() {
                        return;
                    }
                    if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_echo_passes_through() {
    // Both listener modes: HTTP/1.1 + h2c detection, and HTTP/1.1 only.
    for listener in ["", "h2c = false"] {
        websocket_echo(listener).await;
    }
}

async fn websocket_echo(listener: &str) {
    let (backend, task) = ws_echo_server().await;
    let (_proxy, addr) = proxy_to(backend, listener, "http1").await;
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut ws, resp) = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::client_async(format!("ws://{addr}/ws"), tcp),
    )
    .await
    .expect("WebSocket handshake timed out")
    .expect("WebSocket handshake through the proxy");
    assert_eq!(resp.status(), 101);
    let mut big = vec![0u8; 200_000];
    for (i, b) in big.iter_mut().enumerate() {
        *b = (i % 253) as u8;
    }
    let messages = vec![
        Message::Text("hello".into()),
        Message::Binary(vec![0, 1, 2, 255]),
        Message::Text("ünïcödé ✓".into()),
        Message::Binary(big),
        Message::Text("last".into()),
    ];
    for m in &messages {
        ws.send(m.clone()).await.unwrap();
        let echoed = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("echo timed out")
            .expect("stream ended")
            .expect("echo");
        assert_eq!(&echoed, m, "listener {listener:?}");
    }
    ws.close(None).await.unwrap();
    // The close handshake completes through the proxy.
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(m) = ws.next().await {
            if m.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(end.is_ok(), "connection did not end after close");
    task.abort();
}

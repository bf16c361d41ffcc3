//! Rampart's own HTTP/1.1 server, byte by byte: pipelining, `Expect: 100-continue`, HTTP/1.0
//! keep-alive, chunked request bodies, keep-alive idle timeout versus header-read timeout,
//! and heads that never complete.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn proxy_with(backend: SocketAddr, limits: &str) -> (Arc<rampart_proxy::Proxy>, SocketAddr) {
    let values = HashMap::from([("b", backend.to_string()), ("limits", limits.to_string())]);
    let config = fill(
        r#"
[[listeners]]
name = "web"
address = "127.0.0.1:0"
h2c = false
limits = { {limits} }
[[pools]]
name = "p"
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

/// Reads whatever arrives within `limit` (until the peer closes or goes quiet).
async fn read_for(s: &mut TcpStream, limit: Duration) -> Vec<u8> {
    let mut out = Vec::new();
    let mut chunk = [0u8; 16384];
    let deadline = tokio::time::Instant::now() + limit;
    while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&chunk[..n]);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    let backend = TestBackend::start("b").await;
    let (_proxy, addr) = proxy_with(backend.addr, "").await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        b"GET /status/201 HTTP/1.1\r\nHost: x\r\n\r\nPOST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET /status/202 HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await
    .unwrap();
    // The responses arrive in order on the one connection, possibly several in one read: read
    // them all and look for them in sequence.
    let rest =
        String::from_utf8_lossy(&read_for(&mut s, Duration::from_millis(1500)).await).into_owned();
    let first = rest.find("HTTP/1.1 201").expect(&rest);
    let second = rest.find("HTTP/1.1 200").expect(&rest);
    assert!(first < second, "{rest}");
    let hello = rest.find("\r\n\r\nhello").expect(&rest);
    let third = rest.find("HTTP/1.1 202").expect(&rest);
    assert!(second < hello && hello < third, "{rest}");
    assert_eq!(backend.requests(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_continue_is_answered_before_the_body_is_sent() {
    let backend = TestBackend::start("b").await;
    let (_proxy, addr) = proxy_with(backend.addr, "").await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n",
    )
    .await
    .unwrap();
    let interim = read_for(&mut s, Duration::from_millis(500)).await;
    assert_eq!(
        String::from_utf8_lossy(&interim),
        "HTTP/1.1 100 Continue\r\n\r\n",
        "the client must be told to go on before it sends the body"
    );
    s.write_all(b"hello world").await.unwrap();
    let r = read_raw_response(&mut s, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(r.body, b"hello world");

    // Refused before the body is read (over the route's limit): no 100, and the connection
    // closes, since the body the client may still send cannot be told from a next request.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\nExpect: 100-continue\r\n\r\n")
        .await
        .unwrap();
    let r = read_raw_response(&mut s, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(r.status, 413, "{}", r.head);
    assert!(wait_closed(&mut s, Duration::from_secs(3)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http10_closes_unless_asked_to_keep_alive() {
    let backend = TestBackend::start("b").await;
    let (_proxy, addr) = proxy_with(backend.addr, "").await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let r = read_raw_response(&mut s, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert!(r.head.starts_with("HTTP/1.1 200"), "{}", r.head);
    assert!(wait_closed(&mut s, Duration::from_secs(3)).await);

    let mut s = TcpStream::connect(addr).await.unwrap();
    for _ in 0..2 {
        s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n")
            .await
            .unwrap();
        let r = read_raw_response(&mut s, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("connection").as_deref(),
            Some("keep-alive"),
            "{}",
            r.head
        );
        assert_eq!(r.body, b"b");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_request_bodies_with_trailers_arrive_whole() {
    let backend = RecordingBackend::start().await;
    let (_proxy, addr) = proxy_with(backend.addr, "").await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    // Sent in pieces, splitting chunk-size lines and data.
    let pieces: [&[u8]; 5] = [
        b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5",
        b"\r\nhel",
        b"lo\r\n6;ext=1\r\n wor",
        b"ld\r\n0\r\nx-check: ok\r\n",
        b"\r\n",
    ];
    for piece in pieces {
        s.write_all(piece).await.unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let r = read_raw_response(&mut s, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.head);
    let seen = backend.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].body.as_deref().ok(),
        Some(&b"hello world"[..]),
        "{seen:?}"
    );
    // The connection carries the next request.
    s.write_all(b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let r = read_raw_response(&mut s, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(r.status, 200);

    // A broken chunk: never forwarded as complete, the connection closes.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST /broken HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
        .await
        .unwrap();
    let r = read_raw_response(&mut s, Duration::from_secs(5)).await;
    assert!(
        r.as_ref().map_or(true, |r| r.status >= 400),
        "a broken body must not succeed: {r:?}"
    );
    assert!(wait_closed(&mut s, Duration::from_secs(3)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_connections_wait_for_idle_timeout_not_header_timeout() {
    let backend = TestBackend::start("b").await;
    let (_proxy, addr) = proxy_with(
        backend.addr,
        r#"header_read_timeout = "300ms", idle_timeout = "1500ms""#,
    )
    .await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(
        read_raw_response(&mut s, Duration::from_secs(5))
            .await
            .unwrap()
            .status,
        200
    );
    // Quiet for longer than the header timeout, shorter than the idle timeout: still open.
    tokio::time::sleep(Duration::from_millis(700)).await;
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(
        read_raw_response(&mut s, Duration::from_secs(5))
            .await
            .unwrap()
            .status,
        200
    );
    // Quiet past the idle timeout: closed.
    let start = Instant::now();
    assert!(wait_closed(&mut s, Duration::from_secs(4)).await);
    let idle = start.elapsed();
    assert!(
        idle >= Duration::from_millis(1300) && idle < Duration::from_millis(2500),
        "closed after {idle:?}"
    );

    // A new connection must start its request within the header timeout.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let start = Instant::now();
    assert!(wait_closed(&mut s, Duration::from_secs(3)).await);
    assert!(
        start.elapsed() < Duration::from_millis(1000),
        "{:?}",
        start.elapsed()
    );

    // A head started but never finished: 408, then closed.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let r = read_raw_response(&mut s, Duration::from_secs(3))
        .await
        .unwrap();
    assert_eq!(r.status, 408, "{}", r.head);
    assert!(wait_closed(&mut s, Duration::from_secs(3)).await);
    assert_eq!(backend.requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_of_unknown_length_are_chunked_for_http11_and_closed_for_http10() {
    // A backend that streams without Content-Length (close-delimited).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut c, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = c.read(&mut buf).await;
                let _ = c
                    .write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nstreamed body")
                    .await;
            });
        }
    });
    let (_proxy, addr) = proxy_with(backend, "").await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let r = read_raw_response(&mut s, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        r.header("transfer-encoding").as_deref(),
        Some("chunked"),
        "{}",
        r.head
    );
    assert!(String::from_utf8_lossy(&r.body).contains("streamed body"));
    // Still usable: the chunked framing ended the answer, not the connection.
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(
        read_raw_response(&mut s, Duration::from_secs(5))
            .await
            .unwrap()
            .status,
        200
    );

    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n")
        .await
        .unwrap();
    let r = read_raw_response(&mut s, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        r.header("transfer-encoding"),
        None,
        "HTTP/1.0 has no chunked: {}",
        r.head
    );
    assert_eq!(r.header("connection").as_deref(), Some("close"));
    assert_eq!(r.body, b"streamed body");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_encoding_in_http10_is_refused_and_closes() {
    let backend = RecordingBackend::start().await;
    let (_proxy, addr) = proxy_with(backend.addr, "").await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        b"POST / HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await
    .unwrap();
    let r = read_raw_response(&mut s, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(r.status, 400, "{}", r.head);
    assert!(wait_closed(&mut s, Duration::from_secs(3)).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(backend.seen().is_empty(), "{:?}", backend.heads());
}

/// An HTTP/2 upstream sends the request body from its own connection task. When it answers
/// before the body is complete, the rest of the body is read and dropped and the connection
/// carries the next request (no byte of it taken as body).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_answer_from_an_http2_upstream_leaves_the_connection_usable() {
    let backend = TestBackend::start("h2").await;
    let config = fill(
        r#"
[[listeners]]
name = "web"
address = "127.0.0.1:0"
h2c = false
[[pools]]
name = "p"
protocol = "http2"
backends = [{ address = "{b}" }]
[[routes]]
name = "all"
pool = "p"
[observability]
access_log = "off"
"#,
        &HashMap::from([("b", backend.addr.to_string())]),
    );
    let (_proxy, addr) = start_proxy(&config).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST /status/200 HTTP/1.1\r\nHost: x\r\nContent-Length: 50000\r\n\r\n")
        .await
        .unwrap();
    s.write_all(&[b'a'; 10_000]).await.unwrap();
    let r = read_raw_response(&mut s, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.head);
    // The rest of the body, then the next request on the same connection.
    s.write_all(&[b'a'; 40_000]).await.unwrap();
    s.write_all(b"GET /status/202 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let r = read_raw_response(&mut s, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(r.status, 202, "{}", r.head);
    assert_eq!(backend.requests(), 2);
}

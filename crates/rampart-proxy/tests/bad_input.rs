//! Malformed and hostile HTTP/1.1 input, limits, timeouts and upstream failures, exercised over
//! raw TCP against a proxy in front of real backends.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::AsyncWriteExt;

/// A proxy with listener `limits` in front of `backend`: `/small` allows 1 KiB bodies, `/slow`
/// waits 300 ms for a response head, everything else uses the defaults.
async fn proxy_for(backend: SocketAddr, limits: &str) -> (Arc<rampart_proxy::Proxy>, SocketAddr) {
    let values = HashMap::from([("b", backend.to_string()), ("limits", limits.to_string())]);
    let config = fill(
        r#"
[[listeners]]
name = "web"
address = "127.0.0.1:0"
limits = { {limits} }
[[pools]]
name = "p"
backends = [{ address = "{b}" }]
retries = { attempts = 1 }
[[routes]]
name = "slow"
match = { path_prefix = "/slow" }
pool = "p"
timeout = "300ms"
[[routes]]
name = "small"
match = { path_prefix = "/small" }
pool = "p"
max_body = "1KiB"
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

const LIMITS: &str = r#"max_header_bytes = "16KiB", max_headers = 20, max_uri_bytes = "1KiB""#;

async fn settle() {
    // Gives a forwarded request time to reach the backend before asserting it did not.
    tokio::time::sleep(Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_request_lines_get_400() {
    let backend = TestBackend::start("b").await;
    let (_proxy, addr) = proxy_for(backend.addr, LIMITS).await;
    let cases: [&[u8]; 4] = [
        b"GET / HTTP/1.1 extra\r\nHost: x\r\n\r\n",
        b"\x00\x01\x02garbage\xff\xfe\r\n\r\n",
        b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
    ];
    for case in cases {
        let r = raw_exchange(addr, case)
            .await
            .unwrap_or_else(|e| panic!("{:?}: {e}", String::from_utf8_lossy(case)));
        assert_eq!(
            r.status,
            400,
            "{:?} → {}",
            String::from_utf8_lossy(case),
            r.head
        );
    }
    // The same connection setup with a well-formed request works (the 400s are not blanket).
    let ok = raw_exchange(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(ok.status, 200);
    settle().await;
    assert_eq!(
        backend.requests(),
        1,
        "only the well-formed request may reach the backend"
    );
}

/// Both Content-Length and Transfer-Encoding. hyper parses the head before the proxy sees it and
/// applies RFC 9112 §6.1: Transfer-Encoding wins, Content-Length is dropped and the connection is
/// closed after the answer. So the request is either refused (400) or forwarded as chunked
/// without Content-Length; either way nothing after the chunked body is ever read as a request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_with_transfer_encoding_cannot_smuggle() {
    let backend = RecordingBackend::start().await;
    let (_proxy, addr) = proxy_for(backend.addr, LIMITS).await;
    // CL.TE and TE.CL: a front end trusting Content-Length would see one request, a back end
    // trusting Transfer-Encoding a second one (/smuggled), or the other way round.
    let attacks: [&[u8]; 2] = [
        b"POST /cl-te HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /te-cl HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    ];
    for attack in attacks {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(attack).await.unwrap();
        let r = read_raw_response(&mut s, Duration::from_secs(5))
            .await
            .unwrap();
        // RFC 9112 §6.1 lets a server refuse such a request; Rampart does.
        assert_eq!(r.status, 400, "{}", r.head);
        assert_eq!(
            r.header("connection").as_deref(),
            Some("close"),
            "{}",
            r.head
        );
        assert!(
            wait_closed(&mut s, Duration::from_secs(3)).await,
            "connection must close after an ambiguous request"
        );
    }
    settle().await;
    assert!(
        !backend.heads().iter().any(|h| h.contains("smuggled")),
        "smuggled request reached the backend: {:?}",
        backend.heads()
    );
    for seen in backend.seen() {
        assert!(
            !seen.headers.contains_key("content-length"),
            "Content-Length forwarded next to chunked: {seen:?}"
        );
        assert_eq!(
            seen.body.as_deref().ok(),
            Some(&b""[..]),
            "body must be the (empty) chunked body: {seen:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_content_lengths_and_bad_transfer_encodings_are_rejected() {
    let backend = RecordingBackend::start().await;
    let (_proxy, addr) = proxy_for(backend.addr, LIMITS).await;
    let cases: [&[u8]; 4] = [
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 5\r\n\r\nabcde",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -3\r\n\r\nabc",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nabc",
    ];
    for case in cases {
        let r = raw_exchange(addr, case)
            .await
            .unwrap_or_else(|e| panic!("{:?}: {e}", String::from_utf8_lossy(case)));
        assert_eq!(
            r.status,
            400,
            "{:?} → {}",
            String::from_utf8_lossy(case),
            r.head
        );
    }
    settle().await;
    assert!(
        backend.heads().is_empty(),
        "forwarded: {:?}",
        backend.heads()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_chunk_size_is_never_forwarded_as_a_complete_request() {
    let backend = RecordingBackend::start().await;
    let (_proxy, addr) = proxy_for(backend.addr, LIMITS).await;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST /chunk HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n")
        .await
        .unwrap();
    match read_raw_response(&mut s, Duration::from_secs(5)).await {
        Ok(r) => assert_eq!(r.status, 400, "{}", r.head),
        Err(e) => assert!(e.contains("closed"), "neither an answer nor a close: {e}"),
    }
    settle().await;
    let complete: Vec<_> = backend
        .seen()
        .into_iter()
        .filter(|s| s.body.is_ok())
        .collect();
    assert!(
        complete.is_empty(),
        "backend got a complete request: {complete:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn obs_fold_and_missing_host_are_400() {
    let backend = TestBackend::start("b").await;
    let (_proxy, addr) = proxy_for(backend.addr, LIMITS).await;
    let r = raw_exchange(
        addr,
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 400, "obs-fold: {}", r.head);
    let r = raw_exchange(addr, b"GET / HTTP/1.1\r\nX-A: b\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(r.status, 400, "missing Host: {}", r.head);
    let r = raw_exchange(addr, b"GET / HTTP/1.1\r\nHost: bad host\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(r.status, 400, "invalid Host: {}", r.head);
    settle().await;
    assert_eq!(backend.requests(), 0);
}

fn request_with_headers(count: usize, value_len: usize) -> Vec<u8> {
    let mut req = b"GET /h HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..count {
        req.extend_from_slice(format!("X-H{i}: {}\r\n", "v".repeat(value_len)).as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_block_over_the_limit_is_431() {
    let backend = TestBackend::start("b").await;
    let (_proxy, addr) = proxy_for(backend.addr, LIMITS).await;
    // 10 headers of 1000 bytes: under 16 KiB.
    let ok = raw_exchange(addr, &request_with_headers(10, 1000))
        .await
        .unwrap();
    assert_eq!(ok.status, 200, "{}", ok.head);
    // 10 headers of 2000 bytes: over 16 KiB.
    let r = raw_exchange(addr, &request_with_headers(10, 2000))
        .await
        .unwrap();
    assert_eq!(r.status, 431, "{}", r.head);
    settle().await;
    assert_eq!(backend.requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_header_limit_is_enforced_too() {
    // Below hyper's minimum buffer (8 KiB) the proxy itself must enforce the limit.
    let backend = TestBackend::start("b").await;
    let (_proxy, addr) = proxy_for(backend.addr, r#"max_header_bytes = "4KiB""#).await;
    let ok = raw_exchange(addr, &request_with_headers(3, 1000))
        .await
        .unwrap();
    assert_eq!(ok.status, 200, "{}", ok.head);
    let r = raw_exchange(addr, &request_with_headers(6, 1000))
        .await
        .unwrap();
    assert_eq!(
        r.status, 431,
        "6 KiB of headers with a 4 KiB limit: {}",
        r.head
    );
    settle().await;
    assert_eq!(backend.requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_headers_is_431() {
    let backend = TestBackend::start("b").await;
    let (_proxy, addr) = proxy_for(backend.addr, LIMITS).await;
    let ok = raw_exchange(addr, &request_with_headers(15, 10))
        .await
        .unwrap();
    assert_eq!(ok.status, 200, "{}", ok.head);
    let r = raw_exchange(addr, &request_with_headers(30, 10))
        .await
        .unwrap();
    assert_eq!(r.status, 431, "{}", r.head);
    settle().await;
    assert_eq!(backend.requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uri_over_the_limit_is_414() {
    let backend = TestBackend::start("b").await;
    let (_proxy, addr) = proxy_for(backend.addr, LIMITS).await;
    let ok = raw_exchange(
        addr,
        format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(900)).as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(ok.status, 200, "{}", ok.head);
    let r = raw_exchange(
        addr,
        format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(2000)).as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 414, "{}", r.head);
    let r = raw_exchange(
        addr,
        format!("GET /?q={} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(2000)).as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 414, "long query: {}", r.head);
    settle().await;
    assert_eq!(backend.requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_body_over_route_limit_is_413_before_forwarding() {
    let backend = TestBackend::start("b").await;
    let (_proxy, addr) = proxy_for(backend.addr, LIMITS).await;
    // Only the head is sent: the proxy must answer from the declared length alone.
    let r = raw_exchange(
        addr,
        b"POST /small/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 413, "{}", r.head);
    // The same size is fine on a route with the default limit.
    let body = "z".repeat(5000);
    let ok = raw_exchange(
        addr,
        format!("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n{body}").as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(ok.status, 200);
    assert_eq!(ok.body, body.as_bytes());
    settle().await;
    assert_eq!(
        backend.requests(),
        1,
        "the 413 request must not reach the backend"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_body_over_route_limit_is_cut_off() {
    let backend = RecordingBackend::start().await;
    let (_proxy, addr) = proxy_for(backend.addr, LIMITS).await;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req =
        b"POST /small/upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..4 {
        req.extend_from_slice(b"3e8\r\n");
        req.extend_from_slice(&[b'q'; 1000]);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    // The proxy may answer and close before everything is written.
    let _ = s.write_all(&req).await;
    match read_raw_response(&mut s, Duration::from_secs(5)).await {
        Ok(r) => assert_eq!(r.status, 413, "{}", r.head),
        Err(e) => assert!(e.contains("closed"), "neither an answer nor a close: {e}"),
    }
    settle().await;
    let complete: Vec<_> = backend
        .seen()
        .into_iter()
        .filter(|s| s.body.as_ref().is_ok_and(|b| b.len() > 1024))
        .collect();
    assert!(
        complete.is_empty(),
        "backend got the whole oversized body: {complete:?}"
    );
    // A chunked body under the limit goes through whole.
    let ok = raw_exchange(addr, b"POST /small/ok HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n").await.unwrap();
    assert_eq!(ok.status, 200, "{}", ok.head);
    assert_eq!(ok.body, b"len=5");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_header_sender_is_cut_off() {
    let backend = TestBackend::start("b").await;
    let (_proxy, addr) = proxy_for(backend.addr, r#"header_read_timeout = "1s""#).await;
    let s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    let start = Instant::now();
    let writer = tokio::spawn(async move {
        if wr
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
            .await
            .is_err()
        {
            return;
        }
        // One header byte every 100 ms, for at most 6 s: never a complete head.
        for _ in 0..60 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if wr.write_all(b"X").await.is_err() {
                return;
            }
        }
    });
    let closed = {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 1024];
        loop {
            match tokio::time::timeout(Duration::from_secs(6), rd.read(&mut buf)).await {
                Err(_) => break false,
                Ok(Ok(0)) | Ok(Err(_)) => break true,
                Ok(Ok(_)) => {}
            }
        }
    };
    let elapsed = start.elapsed();
    writer.abort();
    assert!(closed, "connection still open after {elapsed:?}");
    assert!(
        elapsed >= Duration::from_millis(800),
        "closed too early: {elapsed:?}"
    );
    assert!(
        elapsed <= Duration::from_secs(3),
        "closed too late: {elapsed:?}"
    );
    assert_eq!(backend.requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_backends_give_502() {
    let config = fill(
        &one_pool_config(
            r#"
backends = [{ address = "127.0.0.1:{p1}" }, { address = "127.0.0.1:{p2}" }]
"#,
            "",
        ),
        &HashMap::from([
            ("p1", free_port().to_string()),
            ("p2", free_port().to_string()),
        ]),
    );
    let (_proxy, addr) = start_proxy(&config).await;
    let c = client();
    for _ in 0..3 {
        let r = get(&c, addr, "/x").await.unwrap();
        assert_eq!(r.status, 502, "{}", r.text());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_without_healthy_backend_gives_503_with_retry_after() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let config = fill(
        &one_pool_config(
            r#"
backends = [{ address = "{a}" }, { address = "{b}" }]
health_check = { path = "/healthz", interval = "100ms", timeout = "100ms", rise = 1, fall = 1 }
"#,
            "",
        ),
        &HashMap::from([("a", a.addr.to_string()), ("b", b.addr.to_string())]),
    );
    let (proxy, addr) = start_proxy(&config).await;
    let c = client();
    assert_eq!(get(&c, addr, "/x").await.unwrap().status, 200);
    a.set_healthy(false);
    b.set_healthy(false);
    let down = wait_for(Duration::from_secs(5), || {
        proxy.status()[0].backends.iter().all(|b| !b.healthy)
    })
    .await;
    assert!(
        down,
        "health checks did not mark the backends down: {:?}",
        proxy.status()
    );
    let before = a.requests() + b.requests();
    let r = get(&c, addr, "/x").await.unwrap();
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.headers.contains_key("retry-after"), "{:?}", r.headers);
    assert_eq!(
        a.requests() + b.requests(),
        before,
        "no request may reach an unhealthy backend"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_upstream_gives_504() {
    let backend = TestBackend::start("b").await;
    let (_proxy, addr) = proxy_for(backend.addr, LIMITS).await;
    let c = client();
    let start = Instant::now();
    let r = get(&c, addr, "/slow/3000").await.unwrap();
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "took {:?}",
        start.elapsed()
    );
    // A fast answer on the same pool is fine.
    assert_eq!(get(&c, addr, "/slow/10").await.unwrap().status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmatched_request_is_404() {
    let backend = TestBackend::start("b").await;
    let config = fill(
        r#"
[[listeners]]
name = "web"
address = "127.0.0.1:0"
[[pools]]
name = "p"
backends = [{ address = "{b}" }]
[[routes]]
name = "only"
match = { path_prefix = "/only", hosts = ["app.test"] }
pool = "p"
[observability]
access_log = "off"
"#,
        &HashMap::from([("b", backend.addr.to_string())]),
    );
    let (_proxy, addr) = start_proxy(&config).await;
    let r = raw_exchange(addr, b"GET /other HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(r.status, 404);
    let r = raw_exchange(addr, b"GET /only HTTP/1.1\r\nHost: other.test\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(r.status, 404);
    let r = raw_exchange(addr, b"GET /only/x HTTP/1.1\r\nHost: APP.test:80\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(backend.requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_are_dropped_and_forwarding_headers_set() {
    let backend = TestBackend::start("b").await;
    let (_proxy, addr) = proxy_for(backend.addr, LIMITS).await;
    let req = b"GET /hdr HTTP/1.1\r\nHost: app.example:8080\r\nConnection: x-foo, keep-alive\r\nX-Foo: secret\r\n\
Keep-Alive: timeout=5\r\nTE: deflate, trailers\r\nProxy-Authorization: Basic Zm9vOmJhcg==\r\nProxy-Connection: keep-alive\r\n\
X-Forwarded-For: 203.0.113.7\r\nX-Keep: yes\r\n\r\n";
    let r = raw_exchange(addr, req).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.head);
    let h = backend
        .state
        .last_headers
        .lock()
        .unwrap()
        .clone()
        .expect("backend got the request");
    // TE is hop-by-hop: only Rampart's own `trailers` (it passes trailers on) goes upstream.
    assert_eq!(h["te"], "trailers", "{h:?}");
    for gone in [
        "x-foo",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
    ] {
        assert!(!h.contains_key(gone), "{gone} was forwarded: {h:?}");
    }
    if let Some(c) = h.get("connection") {
        assert!(!c.to_str().unwrap().contains("x-foo"), "{c:?}");
    }
    assert_eq!(h["x-keep"], "yes");
    assert_eq!(h["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "app.example:8080");
    // RFC 7239: a host with a port is not a token, so it must be quoted.
    assert_eq!(
        h["forwarded"],
        "for=127.0.0.1;proto=http;host=\"app.example:8080\""
    );
    assert!(h.contains_key("x-request-id"));
    assert!(r.header("x-request-id").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_stream_through_intact() {
    let backend = TestBackend::start("b").await;
    let (_proxy, addr) = proxy_for(backend.addr, LIMITS).await;
    let body: Vec<u8> = (0..5 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let r = send(&client(), addr, "POST", "/echo", &[], &body)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), body.len());
    assert!(r.body == body, "echoed body differs");
}

//! The upstream HTTP/1.1 client against scripted raw backends: response framing (chunked with
//! trailers, until-close, HEAD/204), interim responses, early answers to uploads, malformed
//! responses, and keep-alive connections the backend closes while they sit idle.
mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the scripted backend does after writing an answer.
#[derive(Clone, Copy)]
enum After {
    KeepOpen,
    Close,
    /// Keep the connection for another request, but close it if it sits idle this long.
    CloseWhenIdle(Duration),
}

type Script = dyn Fn(&str) -> (Vec<u8>, After) + Send + Sync;

struct Scripted {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
}

/// A backend that reads each request (head and Content-Length body) and writes what `script`
/// returns for its head. With `read_body = false` it answers right after the head.
async fn scripted(script: Arc<Script>, read_body: bool) -> Scripted {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(AtomicUsize::new(0));
    let (c, r) = (connections.clone(), requests.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            c.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(stream, script.clone(), r.clone(), read_body));
        }
    });
    Scripted {
        addr,
        connections,
        requests,
    }
}

async fn serve(
    mut stream: TcpStream,
    script: Arc<Script>,
    requests: Arc<AtomicUsize>,
    read_body: bool,
) {
    let mut buf = Vec::new();
    let mut after = After::KeepOpen;
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 8192];
            let read = match after {
                After::CloseWhenIdle(idle) => {
                    match tokio::time::timeout(idle, stream.read(&mut chunk)).await {
                        Ok(r) => r,
                        Err(_) => return,
                    }
                }
                _ => stream.read(&mut chunk).await,
            };
            match read {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        buf.drain(..head_end);
        if read_body {
            let len = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            while buf.len() < len {
                let mut chunk = [0u8; 8192];
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            buf.drain(..len);
        }
        requests.fetch_add(1, Ordering::SeqCst);
        let (answer, next) = script(&head);
        if stream.write_all(&answer).await.is_err() {
            return;
        }
        after = next;
        if let After::Close = after {
            // Lingering close, as real servers do: unread request bytes would otherwise turn
            // the close into a reset that destroys the answer before the proxy reads it.
            let _ = stream.shutdown().await;
            let mut sink = [0u8; 8192];
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                while let Ok(n) = stream.read(&mut sink).await {
                    if n == 0 {
                        break;
                    }
                }
            })
            .await;
            return;
        }
    }
}

async fn proxy_to(backend: SocketAddr) -> (Arc<rampart_proxy::Proxy>, SocketAddr) {
    start_proxy(&one_pool_config(
        &format!(
            "backends = [{{ id = \"only\", address = \"{backend}\" }}]\n\
             retries = {{ attempts = 1 }}"
        ),
        "",
    ))
    .await
}

/// Sends `requests` one after another on one client connection and reads each answer.
async fn exchange_on_one_connection(
    addr: SocketAddr,
    requests: &[&str],
) -> Vec<Result<RawResponse, String>> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut out = Vec::new();
    for r in requests {
        if let Err(e) = stream.write_all(r.as_bytes()).await {
            out.push(Err(e.to_string()));
            break;
        }
        out.push(read_raw_response(&mut stream, Duration::from_secs(5)).await);
    }
    out
}

/// The data of a chunked body (no extensions or trailers expected).
fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("size line");
        let size = usize::from_str_radix(std::str::from_utf8(&body[..line_end]).unwrap(), 16)
            .expect("hex size");
        body = &body[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

const GET: &str = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";

#[tokio::test]
async fn chunked_responses_with_trailers_reuse_the_connection() {
    let b = scripted(
        Arc::new(|_: &str| {
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=1\r\n world\r\n0\r\nx-sum: abc\r\n\r\n".to_vec(),
                After::KeepOpen,
            )
        }),
        true,
    )
    .await;
    let (_proxy, addr) = proxy_to(b.addr).await;
    let answers = exchange_on_one_connection(addr, &[GET, GET, GET]).await;
    for a in answers {
        let a = a.unwrap();
        assert_eq!(a.status, 200);
        let body = String::from_utf8_lossy(&a.body).into_owned();
        assert!(
            body.contains("hello") && body.contains(" world"),
            "{body:?}"
        );
    }
    assert_eq!(b.requests.load(Ordering::SeqCst), 3);
    assert_eq!(
        b.connections.load(Ordering::SeqCst),
        1,
        "one upstream connection, reused"
    );
}

#[tokio::test]
async fn bodies_delimited_by_close_are_forwarded_whole() {
    let b = scripted(
        Arc::new(|_: &str| {
            (
                b"HTTP/1.1 200 OK\r\n\r\nstreamed until close".to_vec(),
                After::Close,
            )
        }),
        true,
    )
    .await;
    let (_proxy, addr) = proxy_to(b.addr).await;
    for a in exchange_on_one_connection(addr, &[GET, GET]).await {
        let a = a.unwrap();
        assert_eq!(a.status, 200);
        assert_eq!(a.header("transfer-encoding").as_deref(), Some("chunked"));
        assert_eq!(dechunk(&a.body), b"streamed until close");
    }
    assert_eq!(
        b.connections.load(Ordering::SeqCst),
        2,
        "such a connection is never reused"
    );
}

#[tokio::test]
async fn head_and_no_content_answers_carry_no_body() {
    let b = scripted(
        Arc::new(|head: &str| {
            let answer: &[u8] = if head.starts_with("HEAD") {
                b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"
            } else if head.contains("/empty") {
                b"HTTP/1.1 204 No Content\r\n\r\n"
            } else {
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
            };
            (answer.to_vec(), After::KeepOpen)
        }),
        true,
    )
    .await;
    let (_proxy, addr) = proxy_to(b.addr).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk))
            .await
            .expect("HEAD answered")
            .unwrap();
        assert!(n > 0);
        head.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("content-length: 100"),
        "{head}"
    );
    for (path, status, body) in [("/empty", 204, &b""[..]), ("/", 200, b"ok")] {
        stream
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let a = read_raw_response(&mut stream, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(a.status, status);
        assert_eq!(a.body, body);
    }
    assert_eq!(b.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn interim_responses_are_skipped() {
    let b = scripted(
        Arc::new(|_: &str| {
            (
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
                After::KeepOpen,
            )
        }),
        true,
    )
    .await;
    let (_proxy, addr) = proxy_to(b.addr).await;
    let a = raw_exchange(
        addr,
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
    )
    .await
    .unwrap();
    assert_eq!(a.status, 200);
    assert_eq!(a.body, b"ok");
}

#[tokio::test]
async fn an_early_answer_to_an_upload_reaches_the_client() {
    let b = scripted(
        Arc::new(|_: &str| {
            (
                b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbig!".to_vec(),
                After::Close,
            )
        }),
        false,
    )
    .await;
    let (_proxy, addr) = proxy_to(b.addr).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // Declares 4 MiB but sends only the first 64 KiB: the answer must not wait for the rest.
    stream
        .write_all(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 4194304\r\n\r\n")
        .await
        .unwrap();
    stream.write_all(&vec![b'x'; 64 * 1024]).await.unwrap();
    let a = read_raw_response(&mut stream, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(a.status, 413);
    assert_eq!(a.body, b"big!");
}

#[tokio::test]
async fn malformed_upstream_answers_are_502() {
    let mut big_head = b"HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..2000 {
        big_head.extend_from_slice(format!("x-filler-{i}: {}\r\n", "v".repeat(30)).as_bytes());
    }
    big_head.extend_from_slice(b"\r\n");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", b"FOO BAR\r\n\r\n".to_vec()),
        (
            "bad status",
            b"HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n".to_vec(),
        ),
        (
            "bad length",
            b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n".to_vec(),
        ),
        (
            "conflicting lengths",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok".to_vec(),
        ),
        ("huge head", big_head),
        ("closed without answer", Vec::new()),
    ];
    for (what, answer) in cases {
        let answer = Arc::new(answer);
        let b = scripted(
            Arc::new(move |_: &str| (answer.to_vec(), After::Close)),
            true,
        )
        .await;
        let (_proxy, addr) = proxy_to(b.addr).await;
        let a = raw_exchange(addr, GET.as_bytes()).await.unwrap();
        assert_eq!(a.status, 502, "{what}: {a:?}");
    }
}

#[tokio::test]
async fn a_broken_chunked_body_cuts_the_client_response() {
    let b = scripted(
        Arc::new(|_: &str| {
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\nmore\r\n0\r\n\r\n".to_vec(),
                After::Close,
            )
        }),
        true,
    )
    .await;
    let (_proxy, addr) = proxy_to(b.addr).await;
    let r = raw_exchange(addr, GET.as_bytes()).await;
    // The head went out before the error: the client sees an incomplete body, never a
    // well-formed end of it.
    match r {
        Err(e) => assert!(e.contains("closed"), "{e}"),
        Ok(a) => panic!("a broken upstream body must not look complete: {a:?}"),
    }
}

#[tokio::test]
async fn keep_alive_connections_closed_by_the_backend_cause_no_errors() {
    // The backend closes a connection after 30 ms idle; requests come every 60 ms.
    let b = scripted(
        Arc::new(|_: &str| {
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
                After::CloseWhenIdle(Duration::from_millis(30)),
            )
        }),
        true,
    )
    .await;
    let (_proxy, addr) = proxy_to(b.addr).await;
    let client = client();
    for i in 0..15 {
        let a = get(&client, addr, "/").await.unwrap();
        assert_eq!(a.status, 200, "request {i}");
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    assert!(b.connections.load(Ordering::SeqCst) >= 10);

    // The backend closes right after each answer without saying so: the close races the next
    // request on the pooled connection.
    let b = scripted(
        Arc::new(|_: &str| {
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
                After::Close,
            )
        }),
        true,
    )
    .await;
    let (_proxy, addr) = proxy_to(b.addr).await;
    let mut failures = 0;
    for _ in 0..200 {
        match get(&client, addr, "/").await {
            Ok(a) if a.status == 200 => {}
            _ => failures += 1,
        }
    }
    assert_eq!(failures, 0);
    assert_eq!(b.requests.load(Ordering::SeqCst), 200);
}

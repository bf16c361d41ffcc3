//! PROXY protocol on listeners (v1 and v2 from trusted sources only) and towards upstreams.
mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const GET: &[u8] = b"GET /pp HTTP/1.1\r\nHost: a\r\n\r\n";

fn v2_header(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let (SocketAddr::V4(s), SocketAddr::V4(d)) = (source, destination) else {
        panic!("IPv4 only here");
    };
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0, 12]);
    h.extend_from_slice(&s.ip().octets());
    h.extend_from_slice(&d.ip().octets());
    h.extend_from_slice(&s.port().to_be_bytes());
    h.extend_from_slice(&d.port().to_be_bytes());
    h
}

async fn proxy_with_listener_setting(
    backend: SocketAddr,
    setting: &str,
) -> (Arc<rampart_proxy::Proxy>, SocketAddr) {
    let config = format!(
        "[[listeners]]\nname = \"web\"\naddress = \"127.0.0.1:0\"\nproxy_protocol = {setting}\n\
         [[pools]]\nname = \"p\"\nbackends = [{{ address = \"{backend}\" }}]\n\
         [[routes]]\nname = \"all\"\npool = \"p\"\n\
         [observability]\naccess_log = \"off\"\n"
    );
    start_proxy(&config).await
}

/// Sends `prefix` then one GET; the answer, or `Err` when the proxy closed the connection.
async fn exchange(addr: SocketAddr, prefix: &[u8]) -> Result<RawResponse, String> {
    let mut data = prefix.to_vec();
    data.extend_from_slice(GET);
    raw_exchange(addr, &data).await
}

/// All PROXY protocol refusals, whatever the reason.
fn rejected(proxy: &rampart_proxy::Proxy) -> f64 {
    proxy
        .metrics()
        .encode()
        .lines()
        .filter(|l| l.starts_with("rampart_proxy_protocol_rejected_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn forwarded_for(backend: &RecordingBackend) -> Vec<String> {
    backend
        .seen()
        .iter()
        .map(|s| {
            s.headers
                .get("x-forwarded-for")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default()
        })
        .collect()
}

#[tokio::test]
async fn trusted_sources_give_the_client_address_in_v1_and_v2() {
    let backend = RecordingBackend::start().await;
    let (proxy, addr) =
        proxy_with_listener_setting(backend.addr, "{ trusted = [\"127.0.0.0/8\"] }").await;
    let a = exchange(addr, b"PROXY TCP4 203.0.113.7 192.0.2.1 51000 80\r\n")
        .await
        .unwrap();
    assert_eq!(a.status, 200);
    let v2 = v2_header(
        "198.51.100.9:40000".parse().unwrap(),
        "192.0.2.1:80".parse().unwrap(),
    );
    let a = exchange(addr, &v2).await.unwrap();
    assert_eq!(a.status, 200);
    // v1 UNKNOWN: the connection's own address stands.
    let a = exchange(addr, b"PROXY UNKNOWN\r\n").await.unwrap();
    assert_eq!(a.status, 200);
    assert_eq!(
        forwarded_for(&backend),
        ["203.0.113.7", "198.51.100.9", "127.0.0.1"]
    );
    // Required from a trusted source: a plain request is refused, as are broken headers.
    for (what, prefix) in [
        ("missing", &b""[..]),
        ("malformed v1", b"PROXY TCP4 203.0.113.7 nonsense\r\n"),
        (
            "v1 without CRLF",
            &[b'P', b'R', b'O', b'X', b'Y', b' '].repeat(20),
        ),
        ("bad v2 family", b"\r\n\r\n\0\r\nQUIT\n\x21\x71\x00\x00"),
        ("huge v2", b"\r\n\r\n\0\r\nQUIT\n\x21\x11\xff\xff"),
    ] {
        let r = exchange(addr, prefix).await;
        assert!(r.is_err(), "{what}: {r:?}");
    }
    assert_eq!(
        backend.seen().len(),
        3,
        "refused connections reach no backend"
    );
    assert!(rejected(&proxy) >= 5.0);
}

#[tokio::test]
async fn untrusted_sources_are_refused_when_they_send_a_header() {
    let backend = RecordingBackend::start().await;
    let (proxy, addr) =
        proxy_with_listener_setting(backend.addr, "{ trusted = [\"10.0.0.0/8\"] }").await;
    let r = exchange(addr, b"PROXY TCP4 203.0.113.7 192.0.2.1 51000 80\r\n").await;
    assert!(r.is_err(), "spoofed v1 header accepted: {r:?}");
    let v2 = v2_header(
        "198.51.100.9:40000".parse().unwrap(),
        "192.0.2.1:80".parse().unwrap(),
    );
    assert!(exchange(addr, &v2).await.is_err());
    // Without a header an untrusted client is served as itself.
    let a = exchange(addr, b"").await.unwrap();
    assert_eq!(a.status, 200);
    assert_eq!(forwarded_for(&backend), ["127.0.0.1"]);
    assert!(rejected(&proxy) >= 2.0);
}

#[tokio::test]
async fn an_optional_header_may_be_left_out_by_trusted_sources() {
    let backend = RecordingBackend::start().await;
    let (_proxy, addr) = proxy_with_listener_setting(
        backend.addr,
        "{ trusted = [\"127.0.0.1\"], required = false }",
    )
    .await;
    assert_eq!(exchange(addr, b"").await.unwrap().status, 200);
    assert_eq!(
        exchange(addr, b"PROXY TCP4 203.0.113.7 192.0.2.1 51000 80\r\n")
            .await
            .unwrap()
            .status,
        200
    );
    assert_eq!(forwarded_for(&backend), ["127.0.0.1", "203.0.113.7"]);
}

#[tokio::test]
async fn a_slow_header_is_read_in_pieces() {
    let backend = RecordingBackend::start().await;
    let (_proxy, addr) =
        proxy_with_listener_setting(backend.addr, "{ trusted = [\"127.0.0.0/8\"] }").await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    for piece in [
        &b"PRO"[..],
        b"XY TCP4 203.0.113.",
        b"7 192.0.2.1 51000 80\r",
        b"\n",
    ] {
        s.write_all(piece).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.write_all(GET).await.unwrap();
    let a = read_raw_response(&mut s, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(a.status, 200);
    assert_eq!(forwarded_for(&backend), ["203.0.113.7"]);
}

/// A backend behind `send-proxy`: reads the PROXY header, records it, answers one request.
async fn header_recording_backend() -> (SocketAddr, Arc<Mutex<Vec<Vec<u8>>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let record = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let record = record.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // The v2 signature itself contains CRLF CRLF: wait for the end of the request
                // head that follows the header.
                let http_start = loop {
                    if let Some(start) = buf.windows(4).position(|w| w == b"GET ")
                        && buf[start..].windows(4).any(|w| w == b"\r\n\r\n")
                    {
                        break start;
                    }
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                };
                record.lock().unwrap().push(buf[..http_start].to_vec());
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn upstreams_get_the_original_client_in_v1_or_v2() {
    for (version, check) in [
        ("v1", b"PROXY TCP4 198.51.100.9 " as &[u8]),
        (
            "v2",
            b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c\xc6\x33\x64\x09",
        ),
    ] {
        let (backend, headers) = header_recording_backend().await;
        let config = format!(
            "[[listeners]]\nname = \"web\"\naddress = \"127.0.0.1:0\"\n\
             proxy_protocol = {{ trusted = [\"127.0.0.0/8\"] }}\n\
             [[pools]]\nname = \"p\"\nproxy_protocol = \"{version}\"\n\
             backends = [{{ address = \"{backend}\" }}]\n\
             [[routes]]\nname = \"all\"\npool = \"p\"\n\
             [observability]\naccess_log = \"off\"\n"
        );
        let (_proxy, addr) = start_proxy(&config).await;
        let prefix = b"PROXY TCP4 198.51.100.9 192.0.2.1 40000 80\r\n";
        for _ in 0..2 {
            let a = exchange(addr, prefix).await.unwrap();
            assert_eq!(a.status, 200, "{version}");
        }
        let seen = headers.lock().unwrap().clone();
        assert_eq!(
            seen.len(),
            2,
            "{version}: one upstream connection per client"
        );
        for h in seen {
            assert!(
                h.starts_with(check),
                "{version}: {:?}",
                String::from_utf8_lossy(&h)
            );
        }
    }
}

#[tokio::test]
async fn proxy_protocol_config_errors_are_located() {
    for (setting, pool_extra, expected) in [
        ("{ trusted = [] }", "", "name the sources"),
        ("{ trusted = [\"10.0.0.1/8\"] }", "", "host bits set"),
        ("{ trusted = [\"ten\"] }", "", "not an IP network"),
        (
            "{ trusted = [\"10.0.0.0/8\"] }",
            "proxy_protocol = \"v3\"",
            "proxy_protocol",
        ),
        (
            "{ trusted = [\"10.0.0.0/8\"] }",
            "proxy_protocol = \"v2\"\nprotocol = \"http2\"",
            "needs protocol = \"http1\"",
        ),
    ] {
        let config = format!(
            "[[listeners]]\nname = \"web\"\naddress = \"127.0.0.1:0\"\nproxy_protocol = {setting}\n\
             [[pools]]\nname = \"p\"\n{pool_extra}\nbackends = [{{ address = \"127.0.0.1:9\" }}]\n\
             [[routes]]\nname = \"all\"\npool = \"p\"\n"
        );
        let err = rampart_config::load_str(&config, "t.toml", std::path::Path::new("."))
            .err()
            .unwrap_or_else(|| panic!("accepted: {setting} {pool_extra}"))
            .to_string();
        assert!(err.contains(expected), "{err}");
        assert!(err.contains("t.toml:"), "{err}");
    }
}

//! Connection limits per client address (`limits.max_connections_per_ip`), counted on the
//! address the PROXY protocol gives when the listener uses it.
mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

const GET: &[u8] = b"GET /limit HTTP/1.1\r\nHost: a\r\n\r\n";

async fn connect_from(source: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(to).await.unwrap()
}

/// One request on an open connection: `Ok` with the status, `Err` when the proxy closed it.
async fn request(stream: &mut TcpStream, prefix: &[u8]) -> Result<u16, String> {
    let mut data = prefix.to_vec();
    data.extend_from_slice(GET);
    stream.write_all(&data).await.map_err(|e| e.to_string())?;
    read_raw_response(stream, Duration::from_secs(5))
        .await
        .map(|r| r.status)
}

fn rejected(proxy: &rampart_proxy::Proxy, reason: &str) -> f64 {
    metric_value(
        proxy,
        &format!("rampart_connections_rejected_total{{listener=\"web\",reason=\"{reason}\"}}"),
    )
}

#[tokio::test]
async fn each_address_gets_exactly_its_limit() {
    let backend = TestBackend::start("b").await;
    let config = format!(
        "[[listeners]]\nname = \"web\"\naddress = \"127.0.0.1:0\"\n\
         limits = {{ max_connections_per_ip = 3 }}\n\
         [[pools]]\nname = \"p\"\nbackends = [{{ address = \"{}\" }}]\n\
         [[routes]]\nname = \"all\"\npool = \"p\"\n\
         [observability]\naccess_log = \"off\"\n",
        backend.addr
    );
    let (proxy, addr) = start_proxy(&config).await;
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut s = connect_from("127.0.0.1", addr).await;
        assert_eq!(request(&mut s, b"").await, Ok(200));
        open.push(s);
    }
    // The fourth from the same address is closed without an answer.
    let mut fourth = connect_from("127.0.0.1", addr).await;
    assert!(request(&mut fourth, b"").await.is_err());
    assert_eq!(rejected(&proxy, "max_connections_per_ip"), 1.0);
    // Another address has a limit of its own.
    let mut others = Vec::new();
    for _ in 0..3 {
        let mut s = connect_from("127.0.0.2", addr).await;
        assert_eq!(request(&mut s, b"").await, Ok(200));
        others.push(s);
    }
    assert!(
        request(&mut connect_from("127.0.0.2", addr).await, b"")
            .await
            .is_err()
    );
    // Closing one connection frees exactly one place.
    drop(open.pop());
    let mut freed = None;
    for _ in 0..50 {
        let mut s = connect_from("127.0.0.1", addr).await;
        if request(&mut s, b"").await == Ok(200) {
            freed = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(freed.is_some(), "a closed connection frees its place");
    assert!(
        request(&mut connect_from("127.0.0.1", addr).await, b"")
            .await
            .is_err()
    );
    // The connections within the limit kept working throughout.
    for s in open.iter_mut().chain(others.iter_mut()) {
        assert_eq!(request(s, b"").await, Ok(200));
    }
}

#[tokio::test]
async fn the_limit_counts_the_address_from_the_proxy_protocol() {
    let backend = TestBackend::start("b").await;
    let config = format!(
        "[[listeners]]\nname = \"web\"\naddress = \"127.0.0.1:0\"\n\
         proxy_protocol = {{ trusted = [\"127.0.0.1\"] }}\n\
         limits = {{ max_connections_per_ip = 2 }}\n\
         [[pools]]\nname = \"p\"\nbackends = [{{ address = \"{}\" }}]\n\
         [[routes]]\nname = \"all\"\npool = \"p\"\n\
         [observability]\naccess_log = \"off\"\n",
        backend.addr
    );
    let (proxy, addr) = start_proxy(&config).await;
    let from = |ip: &str| format!("PROXY TCP4 {ip} 192.0.2.1 40000 80\r\n").into_bytes();
    let mut open = Vec::new();
    for _ in 0..2 {
        let mut s = connect_from("127.0.0.1", addr).await;
        assert_eq!(request(&mut s, &from("203.0.113.7")).await, Ok(200));
        open.push(s);
    }
    let mut third = connect_from("127.0.0.1", addr).await;
    assert!(request(&mut third, &from("203.0.113.7")).await.is_err());
    // The load balancer's own address is not what counts.
    for _ in 0..2 {
        let mut s = connect_from("127.0.0.1", addr).await;
        assert_eq!(request(&mut s, &from("203.0.113.8")).await, Ok(200));
        open.push(s);
    }
    assert_eq!(rejected(&proxy, "max_connections_per_ip"), 1.0);
}

#[tokio::test]
async fn out_of_range_limits_are_config_errors() {
    let config = "[[listeners]]\nname = \"web\"\naddress = \"127.0.0.1:0\"\n\
                  limits = { max_connections_per_ip = -1 }\n\
                  [[pools]]\nname = \"p\"\nbackends = [{ address = \"127.0.0.1:9\" }]\n\
                  [[routes]]\nname = \"all\"\npool = \"p\"\n";
    let err = rampart_config::load_str(config, "t.toml", std::path::Path::new("."))
        .map(|_| ())
        .expect_err("rejected")
        .to_string();
    assert!(err.contains("max_connections_per_ip"), "{err}");
    assert!(err.contains("out of range"), "{err}");
}

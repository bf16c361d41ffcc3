//! Layer 4 (`protocol = "tcp"`) listeners: connections relayed to a pool's backends with its
//! balancing, affinity and failover; a real Redis behind Rampart.
mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A TCP backend that answers every read with `<name>:` and the bytes it got.
async fn echo_backend(name: &'static str) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    let mut out = format!("{name}:").into_bytes();
                    out.extend_from_slice(&buf[..n]);
                    if s.write_all(&out).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, task)
}

fn tcp_config(pool: &str) -> String {
    format!(
        "[[listeners]]\nname = \"web\"\naddress = \"127.0.0.1:0\"\nprotocol = \"tcp\"\npool = \"p\"\n\
         [[pools]]\nname = \"p\"\n{pool}\n\
         [observability]\naccess_log = \"off\"\n"
    )
}

/// Sends `line` on a new connection; the answer, or `Err` when the connection closed.
async fn talk(addr: SocketAddr, line: &str) -> Result<String, String> {
    let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    s.write_all(line.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| e.to_string())?;
    if n == 0 {
        return Err("closed".into());
    }
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[tokio::test]
async fn connections_are_balanced_and_fail_over() {
    let (a, a_task) = echo_backend("a").await;
    let (b, _b_task) = echo_backend("b").await;
    let (_proxy, addr) = start_proxy(&tcp_config(&format!(
        "backends = [{{ id = \"a\", address = \"{a}\" }}, {{ id = \"b\", address = \"{b}\" }}]"
    )))
    .await;
    let mut seen = std::collections::HashMap::new();
    for _ in 0..10 {
        let answer = talk(addr, "ping").await.unwrap();
        assert!(answer.ends_with(":ping"), "{answer}");
        *seen.entry(answer).or_insert(0) += 1;
    }
    assert_eq!(seen.get("a:ping"), Some(&5), "{seen:?}");
    assert_eq!(seen.get("b:ping"), Some(&5), "{seen:?}");
    // Backend a goes away: every new connection still gets through, to b.
    a_task.abort();
    let _ = a_task.await;
    for _ in 0..10 {
        assert_eq!(talk(addr, "again").await.unwrap(), "b:again");
    }
}

#[tokio::test]
async fn source_ip_affinity_keeps_a_client_on_one_backend() {
    let (a, _a) = echo_backend("a").await;
    let (b, _b) = echo_backend("b").await;
    let (_proxy, addr) = start_proxy(&tcp_config(&format!(
        "backends = [{{ address = \"{a}\" }}, {{ address = \"{b}\" }}]\nsticky = {{ mode = \"source_ip\" }}"
    )))
    .await;
    let first = talk(addr, "x").await.unwrap();
    for _ in 0..10 {
        assert_eq!(talk(addr, "x").await.unwrap(), first);
    }
}

#[tokio::test]
async fn no_reachable_backend_closes_the_connection() {
    let port = free_port();
    let (_proxy, addr) = start_proxy(&tcp_config(&format!(
        "backends = [{{ address = \"127.0.0.1:{port}\" }}]"
    )))
    .await;
    assert!(talk(addr, "anyone?").await.is_err());
}

#[tokio::test]
async fn tcp_listener_settings_are_checked() {
    let pool = "[[pools]]\nname = \"p\"\nbackends = [{ address = \"127.0.0.1:9\" }]\n";
    for (listener, expected) in [
        ("protocol = \"tcp\"", "needs a \"pool\""),
        (
            "protocol = \"tcp\"\nsni = [{ names = [\"a..b\"], pool = \"p\" }]",
            "is not a host name",
        ),
        (
            "protocol = \"tcp\"\nsni = [{ names = [], pool = \"p\" }]",
            "name at least one",
        ),
        (
            "protocol = \"tcp\"\nsni = [{ names = [\"a.test\"], pool = \"q\" }]",
            "no pool named \"q\"",
        ),
        (
            "sni = [{ names = [\"a.test\"], pool = \"p\" }]",
            "sni routes pass TLS through",
        ),
        (
            "protocol = \"tcp\"\npool = \"nope\"",
            "no pool named \"nope\"",
        ),
        ("pool = \"p\"", "only tcp listeners name a pool"),
        (
            "protocol = \"tcp\"\npool = \"p\"\ntls = { certificates = [\"x\"] }",
            "use protocol = \"https\"",
        ),
    ] {
        let config =
            format!("[[listeners]]\nname = \"web\"\naddress = \"127.0.0.1:0\"\n{listener}\n{pool}");
        let err = rampart_config::load_str(&config, "t.toml", std::path::Path::new("."))
            .map(|_| ())
            .expect_err(listener)
            .to_string();
        assert!(err.contains(expected), "{listener}: {err}");
    }
}

/// A redis-server child on 127.0.0.1, stopped when dropped.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    fn start() -> Redis {
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("`redis-server` is not installed: apt-get install -y redis-server");
        Redis { child, port }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One RESP command on a new connection through `addr`; the first reply line.
async fn redis(addr: SocketAddr, args: &[&str]) -> Result<String, String> {
    let mut cmd = format!("*{}\r\n", args.len());
    for a in args {
        cmd.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    let reply = talk(addr, &cmd).await?;
    Ok(reply.lines().next().unwrap_or_default().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (Debian package)"]
async fn redis_behind_a_tcp_listener_survives_losing_a_server() {
    let mut one = Redis::start();
    let two = Redis::start();
    let (proxy, addr) = start_proxy(&tcp_config(&format!(
        "backends = [{{ id = \"one\", address = \"127.0.0.1:{}\" }}, {{ id = \"two\", address = \"127.0.0.1:{}\" }}]\n\
         health_check = {{ kind = \"tcp\", interval = \"500ms\", timeout = \"500ms\", rise = 1, fall = 2 }}",
        one.port, two.port
    )))
    .await;
    let up = wait_for(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", one.port)).is_ok()
            && std::net::TcpStream::connect(("127.0.0.1", two.port)).is_ok()
    })
    .await;
    assert!(up, "redis servers did not start");
    for _ in 0..10 {
        assert_eq!(redis(addr, &["PING"]).await.unwrap(), "+PONG");
    }
    one.stop();
    // Every new connection reaches the remaining server, before and after the health check
    // notices.
    let mut failures = 0;
    for i in 0..40 {
        match redis(addr, &["SET", "k", &i.to_string()]).await {
            Ok(r) if r == "+OK" => {}
            other => {
                eprintln!("SET {i}: {other:?}");
                failures += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if failures > 0 {
        eprintln!("one: {:?}", backend_status(&proxy, "p", "one"));
        eprintln!("two: {:?}", backend_status(&proxy, "p", "two"));
    }
    assert_eq!(failures, 0);
    assert_eq!(redis(addr, &["GET", "k"]).await.unwrap(), "$2");
}

/// A TLS server answering `<name>:` plus what it read, with the certificate in `leaf`.
async fn tls_echo_backend(name: &'static str, leaf: &TestLeaf) -> SocketAddr {
    let certs = rampart_tls::load_certs(&leaf.cert_path).unwrap();
    let key = rampart_tls::load_key(&leaf.key_path).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(rampart_tls::crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = [0u8; 1024];
                while let Ok(n) = tls.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    let mut out = format!("{name}:").into_bytes();
                    out.extend_from_slice(&buf[..n]);
                    if tls.write_all(&out).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_routes_pass_tls_through_to_each_names_backend() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "l4");
    let a_leaf = ca.issue(dir.path(), "a", &["a.test"]);
    let b_leaf = ca.issue(dir.path(), "b", &["*.b.test"]);
    let a = tls_echo_backend("a", &a_leaf).await;
    let b = tls_echo_backend("b", &b_leaf).await;
    let config = format!(
        "[[listeners]]\nname = \"web\"\naddress = \"127.0.0.1:0\"\nprotocol = \"tcp\"\n\
         sni = [{{ names = [\"A.test\"], pool = \"a\" }}, {{ names = [\"*.b.test\"], pool = \"b\" }}]\n\
         [[pools]]\nname = \"a\"\nbackends = [{{ address = \"{a}\" }}]\n\
         [[pools]]\nname = \"b\"\nbackends = [{{ address = \"{b}\" }}]\n\
         [observability]\naccess_log = \"off\"\n"
    );
    let (_proxy, addr) = start_proxy(&config).await;
    let client = tls_client_config(&ca.pem_path, &[], None);
    for (name, leaf, tag) in [
        ("a.test", &a_leaf, "a"),
        ("x.b.test", &b_leaf, "b"),
        ("y.b.test", &b_leaf, "b"),
    ] {
        let mut tls = tls_connect(addr, name, client.clone()).await.unwrap();
        // The backend's own certificate arrives: TLS is end to end.
        assert_eq!(peer_leaf(&tls), leaf.der, "{name}");
        tls.write_all(b"hello").await.unwrap();
        let mut buf = [0u8; 64];
        let n = tls.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], format!("{tag}:hello").as_bytes(), "{name}");
    }
    // A name no route takes (and no default pool), and plain bytes: closed.
    assert!(tls_connect(addr, "c.test", client.clone()).await.is_err());
    assert!(talk(addr, "GET / HTTP/1.1\r\n\r\n").await.is_err());
}

#[tokio::test]
async fn idle_sessions_are_closed_and_busy_ones_kept() {
    let (a, _a) = echo_backend("a").await;
    let config = format!(
        "[[listeners]]\nname = \"web\"\naddress = \"127.0.0.1:0\"\nprotocol = \"tcp\"\npool = \"p\"\n\
         limits = {{ idle_timeout = \"300ms\" }}\n\
         [[pools]]\nname = \"p\"\nbackends = [{{ address = \"{a}\" }}]\n\
         [observability]\naccess_log = \"off\"\n"
    );
    let (_proxy, addr) = start_proxy(&config).await;
    let mut buf = [0u8; 64];
    // Busy for 1 s, a message every 100 ms: never idle long enough to be closed.
    let mut busy = TcpStream::connect(addr).await.unwrap();
    for i in 0..10 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        busy.write_all(format!("m{i}").as_bytes()).await.unwrap();
        let n = busy.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], format!("a:m{i}").as_bytes());
    }
    // Then quiet: closed about 300 ms after the last byte.
    let start = std::time::Instant::now();
    let n = tokio::time::timeout(Duration::from_secs(3), busy.read(&mut buf))
        .await
        .expect("closed within 3 s")
        .unwrap_or(0);
    assert_eq!(n, 0, "the idle session is closed");
    assert!(
        start.elapsed() >= Duration::from_millis(250),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn broken_or_stalled_client_hellos_are_closed() {
    let (a, _a) = echo_backend("a").await;
    let config = format!(
        "[[listeners]]\nname = \"web\"\naddress = \"127.0.0.1:0\"\nprotocol = \"tcp\"\n\
         sni = [{{ names = [\"a.test\"], pool = \"p\" }}]\n\
         limits = {{ header_read_timeout = \"300ms\" }}\n\
         [[pools]]\nname = \"p\"\nbackends = [{{ address = \"{a}\" }}]\n\
         [observability]\naccess_log = \"off\"\n"
    );
    let (_proxy, addr) = start_proxy(&config).await;
    // A TLS record header followed by garbage, and a huge declared record.
    for bytes in [
        &b"\x16\x03\x01\x00\x10garbage-garbage!"[..],
        b"\x16\x03\x01\xff\xff\x01\x00\xff\xfb\x03\x03",
        &[0u8; 64][..],
    ] {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(bytes).await.unwrap();
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
            .await
            .expect("closed within 3 s")
            .unwrap_or(0);
        assert_eq!(n, 0, "{bytes:?} must not reach a backend");
    }
    // A ClientHello that never completes is cut off after header_read_timeout.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"\x16\x03\x01").await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
        .await
        .expect("closed within 3 s")
        .unwrap_or(0);
    assert_eq!(n, 0);
}

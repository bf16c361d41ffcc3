//! Rampart behind a real HAProxy (`send-proxy-v2`): the client address HAProxy saw is the one
//! Rampart logs and forwards. Needs the Debian package `haproxy`; `scripts/test` installs it.
mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpSocket;

/// Stops the HAProxy child process when the test ends, however it ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn haproxy_binary() -> std::path::PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([std::path::PathBuf::from("/usr/sbin")])
        .map(|d| d.join("haproxy"))
        .find(|p| p.is_file())
        .expect("`haproxy` is not installed: apt-get install -y haproxy")
}

#[tokio::test]
#[ignore = "needs haproxy (Debian package)"]
async fn the_real_client_address_arrives_through_haproxy_send_proxy_v2() {
    let dir = tempfile::tempdir().unwrap();
    let backend = RecordingBackend::start().await;
    let log_path = dir.path().join("access.log");
    let config = format!(
        "[[listeners]]\nname = \"web\"\naddress = \"127.0.0.1:0\"\n\
         proxy_protocol = {{ trusted = [\"127.0.0.1\"] }}\n\
         [[pools]]\nname = \"p\"\nbackends = [{{ address = \"{}\" }}]\n\
         [[routes]]\nname = \"all\"\npool = \"p\"\n\
         [observability]\naccess_log = {:?}\n",
        backend.addr,
        log_path.display().to_string()
    );
    let (_proxy, rampart) = start_proxy(&config).await;

    let front: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let cfg = dir.path().join("haproxy.cfg");
    std::fs::write(
        &cfg,
        format!(
            "global\n  maxconn 100\n\
             defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\
             frontend f\n  bind {front}\n  default_backend b\n\
             backend b\n  server rampart {rampart} send-proxy-v2\n"
        ),
    )
    .unwrap();
    let child = Command::new(haproxy_binary())
        .arg("-db")
        .arg("-f")
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start haproxy");
    let _haproxy = KillOnDrop(child);
    let up = wait_for(Duration::from_secs(10), || {
        std::net::TcpStream::connect(front).is_ok()
    })
    .await;
    assert!(up, "haproxy did not start listening on {front}");

    // The client comes from 127.0.0.2, so its address differs from HAProxy's own.
    for _ in 0..3 {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let mut stream = socket.connect(front).await.unwrap();
        stream
            .write_all(b"GET /through-haproxy HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let answer = read_raw_response(&mut stream, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(answer.status, 200);
    }
    let seen = backend.seen();
    assert_eq!(seen.len(), 3);
    for s in &seen {
        assert_eq!(s.headers["x-forwarded-for"], "127.0.0.2");
    }
    let logged = wait_for(Duration::from_secs(5), || {
        std::fs::read_to_string(&log_path)
            .map(|t| t.lines().filter(|l| l.contains("through-haproxy")).count() == 3)
            .unwrap_or(false)
    })
    .await;
    assert!(logged, "three access-log lines");
    let text = std::fs::read_to_string(&log_path).unwrap();
    for line in text.lines().filter(|l| l.contains("through-haproxy")) {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(record["client"], "127.0.0.2", "{line}");
    }
}

//! Checks with real client tools (Debian packages nghttp2-client, testssl.sh and curl), run as
//! subprocesses against a proxy on 127.0.0.1. Ignored by default; `cargo test -- --ignored` runs
//! them. A missing tool fails the test.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use rampart_proxy::Proxy;

const NEEDS: &str = "needs h2load, testssl.sh, curl (Debian packages)";

/// Path of `name` on PATH; panics with a clear message when it is not installed.
fn tool(name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("`{name}` is not installed: apt-get install -y {package}"))
}

/// Runs a command off the async runtime, killing it after `timeout`.
async fn run(mut cmd: Command, timeout: Duration) -> Output {
    let shown = format!("{cmd:?}");
    tokio::task::spawn_blocking(move || {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{shown}: {e}"));
        // Drain the pipes in threads so a chatty tool cannot block on a full pipe.
        let mut out = child.stdout.take().unwrap();
        let mut err = child.stderr.take().unwrap();
        let out_reader = std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = std::io::Read::read_to_end(&mut out, &mut v);
            v
        });
        let err_reader = std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = std::io::Read::read_to_end(&mut err, &mut v);
            v
        });
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{shown} did not finish within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        Output {
            status,
            stdout: out_reader.join().unwrap(),
            stderr: err_reader.join().unwrap(),
        }
    })
    .await
    .unwrap()
}

struct Setup {
    dir: tempfile::TempDir,
    ca: TestCa,
    a: TestLeaf,
    b: TestLeaf,
    proxy: Arc<Proxy>,
    https: SocketAddr,
    _backend: Arc<TestBackend>,
}

/// A proxy with an https listener `web` (certificates for a.test and b.test) in front of a
/// test backend.
async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "root");
    let a = ca.issue(dir.path(), "a", &["a.test"]);
    let b = ca.issue(dir.path(), "b", &["b.test"]);
    let backend = TestBackend::start("app").await;
    let p = |x: &Path| x.display().to_string();
    let values = HashMap::from([
        ("backend", backend.addr.to_string()),
        ("a_crt", p(&a.cert_path)),
        ("a_key", p(&a.key_path)),
        ("b_crt", p(&b.cert_path)),
        ("b_key", p(&b.key_path)),
    ]);
    let config = fill(
        r#"
[[listeners]]
name = "web"
address = "127.0.0.1:0"
protocol = "https"
tls = { certificates = ["a", "b"] }
[[certificates]]
name = "a"
cert = "{a_crt}"
key = "{a_key}"
[[certificates]]
name = "b"
cert = "{b_crt}"
key = "{b_key}"
[[pools]]
name = "p"
backends = [{ address = "{backend}" }]
[[routes]]
name = "all"
pool = "p"
[observability]
access_log = "off"
"#,
        &values,
    );
    let (proxy, https) = start_proxy(&config).await;
    Setup {
        dir,
        ca,
        a,
        b,
        proxy,
        https,
        _backend: backend,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs h2load, testssl.sh, curl (Debian packages)"]
async fn h2load_over_tls_all_succeed() {
    let _ = NEEDS;
    let h2load = tool("h2load", "nghttp2-client");
    let s = setup().await;
    let mut cmd = Command::new(h2load);
    cmd.args(["-n", "10000", "-c", "10", "-m", "10", "-T", "10"])
        .arg(format!("https://127.0.0.1:{}/", s.https.port()));
    let out = run(cmd, Duration::from_secs(60)).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "h2load failed: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("Application protocol: h2"),
        "h2 was not negotiated:\n{text}"
    );
    let line = text
        .lines()
        .find(|l| l.starts_with("requests:"))
        .unwrap_or_else(|| panic!("no requests line:\n{text}"));
    assert!(
        line.contains("10000 succeeded, 0 failed, 0 errored"),
        "{line}"
    );
    let codes = text
        .lines()
        .find(|l| l.starts_with("status codes:"))
        .unwrap_or_default();
    assert!(codes.contains("10000 2xx"), "{codes}");
    drop(s.proxy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs h2load, testssl.sh, curl (Debian packages)"]
async fn h2load_h2c_all_succeed() {
    let h2load = tool("h2load", "nghttp2-client");
    let backend = TestBackend::start("app").await;
    let config = fill(
        r#"
[[listeners]]
name = "web"
address = "127.0.0.1:0"
[[pools]]
name = "p"
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
    let mut cmd = Command::new(h2load);
    cmd.args(["-n", "10000", "-c", "10", "-m", "10", "-T", "10"])
        .arg(format!("http://{addr}/"));
    let out = run(cmd, Duration::from_secs(60)).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "h2load failed: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = text
        .lines()
        .find(|l| l.starts_with("requests:"))
        .unwrap_or_else(|| panic!("no requests line:\n{text}"));
    assert!(
        line.contains("10000 succeeded, 0 failed, 0 errored"),
        "{line}"
    );
    assert_eq!(backend.requests(), 10000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs h2load, testssl.sh, curl (Debian packages)"]
async fn testssl_finds_only_modern_tls() {
    let testssl = ["testssl", "testssl.sh"]
        .iter()
        .find_map(|n| {
            let path = std::env::var_os("PATH").unwrap_or_default();
            std::env::split_paths(&path)
                .map(|d| d.join(n))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| panic!("`testssl` is not installed: apt-get install -y testssl.sh"));
    let s = setup().await;
    let json = s.dir.path().join("testssl.json");
    let mut cmd = Command::new(testssl);
    cmd.args([
        "--protocols",
        "--std",
        "--fast",
        "--quiet",
        "--color",
        "0",
        "--warnings",
        "off",
        "--nodns",
        "none",
    ])
    .arg("--jsonfile")
    .arg(&json)
    .arg(format!("127.0.0.1:{}", s.https.port()));
    let out = run(cmd, Duration::from_secs(120)).await;
    let text = std::fs::read_to_string(&json).unwrap_or_else(|e| {
        panic!(
            "no JSON from testssl ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let findings: Vec<serde_json::Value> =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad testssl JSON ({e}): {text}"));
    // Ids differ between testssl versions (3.0: cipherlist_AVERAGE / _STRONG; 3.2:
    // cipherlist_OBSOLETED / _STRONG_FS): the first one present counts.
    let finding = |ids: &[&str]| -> String {
        ids.iter()
            .find_map(|id| findings.iter().find(|f| f["id"] == *id))
            .and_then(|f| f["finding"].as_str())
            .unwrap_or_else(|| panic!("testssl reported none of {ids:?}: {text}"))
            .to_string()
    };
    for old in ["SSLv2", "SSLv3", "TLS1", "TLS1_1"] {
        assert!(
            finding(&[old]).starts_with("not offered"),
            "{old}: {}",
            finding(&[old])
        );
    }
    for new in ["TLS1_2", "TLS1_3"] {
        assert!(
            finding(&[new]).starts_with("offered"),
            "{new}: {}",
            finding(&[new])
        );
    }
    for weak in [
        "cipherlist_NULL",
        "cipherlist_aNULL",
        "cipherlist_EXPORT",
        "cipherlist_LOW",
        "cipherlist_3DES_IDEA",
    ] {
        assert!(
            finding(&[weak]).starts_with("not offered"),
            "{weak}: {}",
            finding(&[weak])
        );
    }
    // Obsolete CBC suites ("AVERAGE" in testssl 3.0) must not be offered either.
    let obsolete = finding(&["cipherlist_OBSOLETED", "cipherlist_AVERAGE"]);
    assert!(
        obsolete.starts_with("not offered"),
        "obsolete CBC suites: {obsolete}"
    );
    let strong = finding(&["cipherlist_STRONG_FS", "cipherlist_STRONG"]);
    assert!(strong.starts_with("offered"), "strong suites: {strong}");
    let alpn = finding(&["ALPN_HTTP2", "ALPN"]);
    assert!(alpn.contains("h2"), "ALPN: {alpn}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs h2load, testssl.sh, curl (Debian packages)"]
async fn curl_verifies_each_name() {
    let curl = tool("curl", "curl");
    let s = setup().await;
    let port = s.https.port();
    for (name, other) in [("a.test", "b.test"), ("b.test", "a.test")] {
        let mut cmd = Command::new(&curl);
        cmd.args([
            "-sS",
            "-v",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{ssl_verify_result} %{http_code}",
        ])
        .arg("--resolve")
        .arg(format!("{name}:{port}:127.0.0.1"))
        .arg("--cacert")
        .arg(&s.ca.pem_path)
        .arg(format!("https://{name}:{port}/"));
        let out = run(cmd, Duration::from_secs(15)).await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "curl {name}: {stdout}\n{stderr}");
        assert_eq!(stdout.trim(), "0 200", "curl {name}:\n{stderr}");
        assert!(
            stderr.contains(&format!("subject: CN={name}")),
            "{name} got another certificate:\n{stderr}"
        );
        assert!(
            !stderr.contains(&format!("subject: CN={other}")),
            "{stderr}"
        );
    }
    let _ = (&s.a, &s.b);
}

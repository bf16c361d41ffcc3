//! The firewall across a real network: a public client, a management client, Rampart and a
//! backend, each in a network namespace of the test's own, joined by veth pairs. Zones and
//! the zone policy, kernel segmentation seen by nmap and of routed traffic between zones,
//! bans enforced by nftables (SYNs
//! dropped), ban expiry and escalation, the allow-list, reconciliation of a deleted table,
//! and Rampart's table removed on exit with another table left untouched.

mod support;

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use support::Proc;

/// Runs `f` on a thread that has entered network namespace `ns`; sockets it creates stay in
/// that namespace.
fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/var/run/netns/{ns}");
    thread::spawn(move || {
        let file = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
    .join()
    .expect("thread in namespace")
}

fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{} not found ({e}); scripts/test installs it", args[0]));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Four namespaces, deleted on drop. `tag` keeps tests in one process apart.
struct Topology {
    tag: char,
    names: Vec<String>,
}

impl Topology {
    fn ns(&self, role: &str) -> String {
        format!("rp{}{}{role}", self.tag, std::process::id() % 100_000)
    }

    fn create(tag: char) -> Topology {
        let t = Topology {
            tag,
            names: Vec::new(),
        };
        let names: Vec<String> = ["fw", "pub", "mgmt", "be"]
            .iter()
            .map(|r| t.ns(r))
            .collect();
        let t = Topology { tag, names };
        for n in &t.names {
            sh(&["ip", "netns", "add", n]);
            sh(&["ip", "-n", n, "link", "set", "lo", "up"]);
        }
        let fw = t.ns("fw");
        for (i, role) in ["pub", "mgmt", "be"].iter().enumerate() {
            let subnet = i + 1;
            let ns = t.ns(role);
            let outer = format!("v{tag}{role}{}", std::process::id() % 1_000);
            let inner = format!("{outer}x");
            sh(&[
                "ip", "link", "add", &outer, "netns", &fw, "type", "veth", "peer", "name", &inner,
                "netns", &ns,
            ]);
            sh(&[
                "ip",
                "-n",
                &fw,
                "addr",
                "add",
                &format!("10.77.{subnet}.1/24"),
                "dev",
                &outer,
            ]);
            sh(&[
                "ip",
                "-n",
                &ns,
                "addr",
                "add",
                &format!("10.77.{subnet}.2/24"),
                "dev",
                &inner,
            ]);
            sh(&["ip", "-n", &fw, "link", "set", &outer, "up"]);
            sh(&["ip", "-n", &ns, "link", "set", &inner, "up"]);
        }
        t
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
        }
    }
}

/// A backend in its namespace: 404 for paths starting with /missing, 200 otherwise. It
/// reads a request's whole body (Content-Length) before answering, as form handlers do.
fn start_backend(ns: &str, addr: &'static str) {
    let listener = in_netns(ns, move || TcpListener::bind(addr).expect("bind backend"));
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                        let length = head
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse::<usize>().ok())?
                            })
                            .unwrap_or(0);
                        if buf.len() < end + 4 + length {
                            break;
                        }
                        buf.drain(..end + 4 + length);
                        let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                        let (status, body) = if path.starts_with("/missing") {
                            ("404 Not Found", "missing\n")
                        } else {
                            ("200 OK", "ok\n")
                        };
                        let answer = format!(
                            "HTTP/1.1 {status}\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        let close = head.to_ascii_lowercase().contains("connection: close");
                        if stream.write_all(answer.as_bytes()).is_err() || close {
                            return;
                        }
                    }
                    match stream.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
}

#[derive(Debug, PartialEq)]
enum Reply {
    Status(u16),
    /// Connected, then closed without an answer (refused in-process).
    Closed,
    /// The connection attempt timed out (SYN dropped).
    TimedOut,
    Refused,
}

/// One GET from namespace `ns`.
fn get(ns: &str, to: &str, path: &str) -> Reply {
    let to: SocketAddr = to.parse().unwrap();
    let path = path.to_string();
    in_netns(ns, move || {
        let mut s = match TcpStream::connect_timeout(&to, Duration::from_millis(1500)) {
            Ok(s) => s,
            Err(e) if e.kind() == ErrorKind::TimedOut || e.kind() == ErrorKind::WouldBlock => {
                return Reply::TimedOut;
            }
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => return Reply::Refused,
            Err(e) => panic!("connect {to}: {e}"),
        };
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: fw.test\r\nConnection: close\r\n\r\n");
        if s.write_all(request.as_bytes()).is_err() {
            return Reply::Closed;
        }
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw);
        let text = String::from_utf8_lossy(&raw);
        match text.split_whitespace().nth(1).and_then(|c| c.parse().ok()) {
            Some(code) => Reply::Status(code),
            None => Reply::Closed,
        }
    })
}

fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return true;
        }
        thread::sleep(Duration::from_millis(50));
    }
    done()
}

/// Runs Rampart with `cfg` in namespace `fw` and waits until `probe_ns` gets a 200 from it at
/// `address`.
fn start_rampart(fw: &str, cfg: &std::path::Path, probe_ns: &str, address: &str) -> Proc {
    let mut cmd = Command::new("ip");
    cmd.args([
        "netns",
        "exec",
        fw,
        env!("CARGO_BIN_EXE_rampart"),
        "run",
        "--config",
    ])
    .arg(cfg)
    .env_remove("RAMPART_CONFIG");
    let proc = Proc::spawn(cmd);
    let up = wait_for(Duration::from_secs(15), || {
        get(probe_ns, address, "/hello") == Reply::Status(200)
    });
    assert!(up, "not serving; stderr:\n{}", proc.stderr());
    proc
}

/// Rampart's IPv4 ban set as nft lists it in namespace `ns`.
fn kernel_bans(ns: &str) -> String {
    sh(&[
        "ip",
        "netns",
        "exec",
        ns,
        "nft",
        "list",
        "set",
        "inet",
        "rampart_test",
        "banned4",
    ])
}

/// nmap's state for each port, scanned from namespace `ns`.
fn nmap(ns: &str, target: &str, ports: &str) -> String {
    sh(&[
        "ip",
        "netns",
        "exec",
        ns,
        "nmap",
        "-Pn",
        "-n",
        "-sT",
        "--max-retries",
        "1",
        "--host-timeout",
        "60s",
        "-p",
        ports,
        target,
    ])
}

fn port_state(scan: &str, port: u16) -> String {
    scan.lines()
        .find(|l| l.starts_with(&format!("{port}/tcp")))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("absent")
        .to_string()
}

fn config(security_log: &std::path::Path) -> String {
    format!(
        r#"
[[listeners]]
name = "web"
address = "0.0.0.0:8080"
zone = "public"

[[listeners]]
name = "ops"
address = "0.0.0.0:9090"
zone = "mgmt"

[[pools]]
name = "app"
backends = [{{ address = "10.77.3.2:8000" }}]

[[routes]]
name = "internal"
pool = "app"
match = {{ path_prefix = "/internal" }}

[[routes]]
name = "public"
pool = "app"

[[firewall.zones]]
name = "mgmt"
sources = ["10.77.2.0/24"]

[[firewall.zones]]
name = "internal"
sources = ["10.77.3.0/24"]

[[firewall.forward]]
from = ["mgmt"]
to = ["internal"]

[[firewall.policy]]
zones = ["public"]
routes = ["public"]

[[firewall.policy]]
zones = ["mgmt"]
routes = ["*"]

[firewall.ips]
allow = ["10.77.2.0/24"]

[[firewall.ips.scenarios]]
name = "http-404-scan"
events = ["not_found"]
capacity = 5
leak = "30s"
ban = "3s"

[firewall.nftables]
enabled = true
table = "rampart_test"
reconcile_interval = "1s"

[observability]
access_log = "off"
security_log = "{}"
"#,
        security_log.display()
    )
}

#[test]
#[ignore = "needs root, iproute2, nftables and nmap: network namespaces of its own"]
fn zones_bans_and_kernel_segmentation_across_namespaces() {
    let topo = Topology::create('z');
    let (fw, public, mgmt, be) = (
        topo.ns("fw"),
        topo.ns("pub"),
        topo.ns("mgmt"),
        topo.ns("be"),
    );
    start_backend(&be, "10.77.3.2:8000");
    // Rampart's namespace also routes between the others.
    sh(&[
        "ip",
        "netns",
        "exec",
        &fw,
        "sysctl",
        "-qw",
        "net.ipv4.ip_forward=1",
    ]);
    for (ns, gw) in [
        (&public, "10.77.1.1"),
        (&mgmt, "10.77.2.1"),
        (&be, "10.77.3.1"),
    ] {
        sh(&["ip", "-n", ns, "route", "add", "10.77.0.0/16", "via", gw]);
    }
    // Before Rampart, the public network reaches the backend network directly.
    assert_eq!(
        get(&public, "10.77.3.2:8000", "/direct"),
        Reply::Status(200)
    );

    // Another table in Rampart's namespace, which Rampart must never touch.
    sh(&[
        "ip", "netns", "exec", &fw, "nft", "add", "table", "inet", "other",
    ]);
    sh(&[
        "ip",
        "netns",
        "exec",
        &fw,
        "nft",
        "add",
        "set",
        "inet",
        "other",
        "keep",
        "{ type ipv4_addr; }",
    ]);
    sh(&[
        "ip",
        "netns",
        "exec",
        &fw,
        "nft",
        "add",
        "element",
        "inet",
        "other",
        "keep",
        "{ 192.0.2.1 }",
    ]);
    let other_before = sh(&[
        "ip", "netns", "exec", &fw, "nft", "list", "table", "inet", "other",
    ]);

    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("security.log");
    let cfg = dir.path().join("rampart.toml");
    std::fs::write(&cfg, config(&log)).unwrap();
    let mut proc = start_rampart(&fw, &cfg, &public, "10.77.1.1:8080");

    // Zones: the public client reaches the public route only; the mgmt network reaches both.
    assert_eq!(
        get(&public, "10.77.1.1:8080", "/internal/x"),
        Reply::Status(403)
    );
    assert_eq!(get(&mgmt, "10.77.2.1:8080", "/hello"), Reply::Status(200));
    assert_eq!(
        get(&mgmt, "10.77.2.1:8080", "/internal/x"),
        Reply::Status(200)
    );
    assert_eq!(
        get(&mgmt, "10.77.2.1:9090", "/internal/x"),
        Reply::Status(200)
    );

    // Kernel segmentation: from the public network only the public listener is open.
    let scan = nmap(&public, "10.77.1.1", "8080,9090");
    assert_eq!(port_state(&scan, 8080), "open", "{scan}");
    assert_eq!(port_state(&scan, 9090), "filtered", "{scan}");
    let scan = nmap(&mgmt, "10.77.2.1", "8080,9090");
    assert_eq!(
        (port_state(&scan, 8080), port_state(&scan, 9090)),
        ("open".into(), "open".into()),
        "{scan}"
    );

    // Forward segmentation: only mgmt may reach the internal network through this host.
    assert_eq!(get(&mgmt, "10.77.3.2:8000", "/direct"), Reply::Status(200));
    assert_eq!(get(&public, "10.77.3.2:8000", "/direct"), Reply::TimedOut);

    // A 404 scan: five fill the bucket, the sixth bans; from then on SYNs are dropped.
    for _ in 0..5 {
        assert_eq!(
            get(&public, "10.77.1.1:8080", "/missing/x"),
            Reply::Status(404)
        );
    }
    assert_eq!(
        get(&public, "10.77.1.1:8080", "/missing/y"),
        Reply::Status(404)
    );
    let banned_at = Instant::now();
    // The kernel gets the ban from the reconciler task, asynchronously: within a second.
    let mut set = String::new();
    let in_kernel = wait_for(Duration::from_secs(1), || {
        set = kernel_bans(&fw);
        set.contains("10.77.1.2")
    });
    assert!(in_kernel, "{set}");
    assert!(
        banned_at.elapsed() < Duration::from_secs(1),
        "ban took {:?}",
        banned_at.elapsed()
    );
    assert_eq!(get(&public, "10.77.1.1:8080", "/hello"), Reply::TimedOut);
    // Others are still served.
    assert_eq!(get(&mgmt, "10.77.2.1:8080", "/hello"), Reply::Status(200));

    // The ban expires after its TTL (3 s).
    let back = wait_for(Duration::from_secs(6), || {
        get(&public, "10.77.1.1:8080", "/hello") == Reply::Status(200)
    });
    assert!(back, "still banned after the TTL");
    let expired_after = banned_at.elapsed();
    assert!(
        expired_after >= Duration::from_millis(2500),
        "ban ended early: {expired_after:?}"
    );

    // A second offence (the bucket has not leaked yet): banned for twice as long.
    assert_eq!(
        get(&public, "10.77.1.1:8080", "/missing/z"),
        Reply::Status(404)
    );
    let second_at = Instant::now();
    let in_kernel = wait_for(Duration::from_secs(1), || {
        set = kernel_bans(&fw);
        set.contains("10.77.1.2 timeout 6s")
    });
    assert!(in_kernel, "{set}");
    assert_eq!(get(&public, "10.77.1.1:8080", "/hello"), Reply::TimedOut);

    // The allow-listed management network is never banned.
    for _ in 0..20 {
        assert_eq!(
            get(&mgmt, "10.77.2.1:8080", "/missing/a"),
            Reply::Status(404)
        );
    }
    assert_eq!(get(&mgmt, "10.77.2.1:8080", "/hello"), Reply::Status(200));

    // Someone deletes Rampart's table: the reconciler puts it back, bans included.
    sh(&[
        "ip",
        "netns",
        "exec",
        &fw,
        "nft",
        "delete",
        "table",
        "inet",
        "rampart_test",
    ]);
    let restored = wait_for(Duration::from_secs(5), || {
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &fw,
                "nft",
                "list",
                "set",
                "inet",
                "rampart_test",
                "banned4",
            ])
            .output()
            .is_ok_and(|o| {
                o.status.success() && String::from_utf8_lossy(&o.stdout).contains("10.77.1.2")
            })
    });
    assert!(restored, "table not reconciled; stderr:\n{}", proc.stderr());
    if second_at.elapsed() < Duration::from_secs(5) {
        assert_eq!(get(&public, "10.77.1.1:8080", "/hello"), Reply::TimedOut);
    }

    // The security log has both bans.
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let bans: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["decision"] == "banned")
        .collect();
    assert_eq!(bans.len(), 2, "{text}");
    assert_eq!(
        (
            bans[0]["ban_seconds"].as_u64(),
            bans[1]["ban_seconds"].as_u64()
        ),
        (Some(3), Some(6))
    );

    // Clean exit: Rampart's table is gone, the other one is exactly as it was.
    proc.signal("TERM");
    let status = proc
        .wait_exit(Duration::from_secs(15))
        .expect("exits on SIGTERM");
    assert!(
        status.success(),
        "exit {status:?}; stderr:\n{}",
        proc.stderr()
    );
    let tables = sh(&["ip", "netns", "exec", &fw, "nft", "list", "tables"]);
    assert_eq!(tables.trim(), "table inet other", "{tables}");
    let other_after = sh(&[
        "ip", "netns", "exec", &fw, "nft", "list", "table", "inet", "other",
    ]);
    assert_eq!(other_before, other_after);
}

#[test]
fn kernel_enforcement_without_nft_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("rampart.toml");
    let base = "[[listeners]]\nname = \"web\"\naddress = \"127.0.0.1:0\"\n\
                [[pools]]\nname = \"p\"\nbackends = [{ address = \"127.0.0.1:9\" }]\n\
                [[routes]]\nname = \"all\"\npool = \"p\"\n";
    std::fs::write(
        &cfg,
        format!("{base}[firewall.nftables]\nenabled = true\nnft = \"/nonexistent/nft\"\n"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args(["run", "--config"])
        .arg(&cfg)
        .env_remove("RAMPART_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("firewall.nftables.enabled is true but nftables cannot be used")
            && err.contains("/nonexistent/nft"),
        "{err}"
    );
    // The same config with kernel enforcement off starts (and is stopped).
    std::fs::write(
        &cfg,
        format!("{base}[firewall.nftables]\nenabled = false\nnft = \"/nonexistent/nft\"\n"),
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rampart"));
    cmd.args(["run", "--config"])
        .arg(&cfg)
        .env_remove("RAMPART_CONFIG");
    let mut proc = Proc::spawn(cmd);
    let started = wait_for(Duration::from_secs(10), || {
        proc.stderr().contains("listening")
    });
    assert!(started, "{}", proc.stderr());
    proc.signal("TERM");
    assert!(
        proc.wait_exit(Duration::from_secs(10))
            .is_some_and(|s| s.success())
    );
}

/// Runs slowhttptest from namespace `ns` against `url` with `mode` (-H slow headers, -B slow
/// body) for `seconds`.
fn slowhttptest(ns: &str, mode: &str, url: &str, seconds: u32) -> std::process::Child {
    Command::new("ip")
        .args(["netns", "exec", ns, "slowhttptest", mode])
        .args(["-c", "300", "-r", "100", "-i", "5", "-x", "10", "-p", "3"])
        .args(["-l", &seconds.to_string(), "-u", url])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("slowhttptest; scripts/test installs it")
}

/// Latencies of GETs from `ns`, one every 50 ms for `duration`; panics on any non-200.
fn steady_client(ns: &str, to: &str, duration: Duration) -> Vec<Duration> {
    let start = Instant::now();
    let mut latencies = Vec::new();
    while start.elapsed() < duration {
        let sent = Instant::now();
        let reply = get(ns, to, "/hello");
        assert_eq!(
            reply,
            Reply::Status(200),
            "normal client at {:?}",
            start.elapsed()
        );
        latencies.push(sent.elapsed());
        thread::sleep(Duration::from_millis(50));
    }
    latencies.sort();
    latencies
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn slow_config(security_log: &std::path::Path) -> String {
    format!(
        r#"
[[listeners]]
name = "web"
address = "0.0.0.0:8080"
limits = {{ header_read_timeout = "3s", body_read_timeout = "3s" }}

[[listeners]]
name = "ops"
address = "0.0.0.0:9090"
zone = "mgmt"

[[firewall.zones]]
name = "mgmt"
sources = ["10.77.2.0/24"]

[admin]
address = "0.0.0.0:9091"
allow_remote = true
token_file = "admin.token"

[[pools]]
name = "app"
backends = [{{ address = "10.77.3.2:8000" }}]

[[routes]]
name = "all"
pool = "app"

[firewall.ips]

[[firewall.ips.scenarios]]
name = "slow-clients"
events = ["slow_client"]
capacity = 3
leak = "1m"
ban = "10m"

[observability]
access_log = "off"
security_log = "{}"
metrics_address = "0.0.0.0:9100"
"#,
        security_log.display()
    )
}

#[test]
#[ignore = "needs root, iproute2 and slowhttptest: network namespaces of its own"]
fn slowloris_and_slow_bodies_get_the_attacker_banned_while_others_are_served() {
    let topo = Topology::create('s');
    let (fw, public, mgmt, be) = (
        topo.ns("fw"),
        topo.ns("pub"),
        topo.ns("mgmt"),
        topo.ns("be"),
    );
    start_backend(&be, "10.77.3.2:8000");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("security.log");
    let cfg = dir.path().join("rampart.toml");
    std::fs::write(&cfg, slow_config(&log)).unwrap();
    std::fs::write(
        dir.path().join("admin.token"),
        "netns-admin-token-0123456789\n",
    )
    .unwrap();
    let mut proc = start_rampart(&fw, &cfg, &mgmt, "10.77.2.1:8080");

    // The admin API and the metrics endpoint belong to the mgmt zone, also without nftables:
    // other sources are closed unanswered.
    assert_eq!(get(&mgmt, "10.77.2.1:9100", "/metrics"), Reply::Status(200));
    assert_eq!(get(&public, "10.77.1.1:9100", "/metrics"), Reply::Closed);
    assert_eq!(
        get(&mgmt, "10.77.2.1:9091", "/api/v1/bans"),
        Reply::Status(401)
    );
    assert_eq!(
        get(&public, "10.77.1.1:9091", "/api/v1/bans"),
        Reply::Closed
    );
    // So does a listener of the mgmt zone, in-process.
    assert_eq!(get(&mgmt, "10.77.2.1:9090", "/hello"), Reply::Status(200));
    assert_eq!(get(&public, "10.77.1.1:9090", "/hello"), Reply::Closed);

    // The normal client's usual latency.
    let baseline = steady_client(&mgmt, "10.77.2.1:8080", Duration::from_secs(2));
    let (base_p50, base_max) = (percentile(&baseline, 0.5), *baseline.last().unwrap());

    // Slowloris from the public network, then slow bodies from the backend's network.
    for (mode, attacker, target) in [
        ("-H", &public, "http://10.77.1.1:8080/"),
        ("-B", &be, "http://10.77.3.1:8080/"),
    ] {
        let mut attack = slowhttptest(attacker, mode, target, 12);
        let during = steady_client(&mgmt, "10.77.2.1:8080", Duration::from_secs(10));
        let _ = attack.kill();
        let _ = attack.wait();
        let (p50, p99) = (percentile(&during, 0.5), percentile(&during, 0.99));
        assert!(
            p50 <= base_p50 * 5 + Duration::from_millis(5)
                && p99 <= base_max * 5 + Duration::from_millis(50),
            "{mode}: normal client p50 {p50:?} p99 {p99:?}; before the attack p50 {base_p50:?} max {base_max:?}"
        );
    }

    // Both attacking sources were banned as slow clients and are refused now.
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let banned: Vec<String> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["decision"] == "banned" && v["scenario"] == "slow-clients")
        .filter_map(|v| v["client"].as_str().map(str::to_string))
        .collect();
    assert!(
        banned.contains(&"10.77.1.2".to_string()),
        "slowloris source not banned: {banned:?}"
    );
    assert!(
        banned.contains(&"10.77.3.2".to_string()),
        "slow-body source not banned: {banned:?}"
    );
    assert_eq!(get(&public, "10.77.1.1:8080", "/hello"), Reply::Closed);
    assert_eq!(get(&mgmt, "10.77.2.1:8080", "/hello"), Reply::Status(200));
    proc.signal("TERM");
    assert!(proc.wait_exit(Duration::from_secs(15)).is_some());
}

//! Two Rampart processes share a port (SO_REUSEPORT); SIGTERM to one of them loses no request
//! and no connection of a constant load. The kernel moves the connections queued on the
//! stopping process's sockets to the other one (`net.ipv4.tcp_migrate_req = 1`, set in a
//! network namespace of the test's own).

mod support;

use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use support::{Load, Proc};

fn config(listen: u16, metrics: u16, backend: u16) -> String {
    format!(
        r#"[runtime]
threads = 2
shutdown_grace = "5s"

[[listeners]]
name = "web"
address = "127.0.0.1:{listen}"

[[routes]]
name = "all"
pool = "app"

[[pools]]
name = "app"
backends = [{{ address = "127.0.0.1:{backend}" }}]

[observability]
access_log = "off"
metrics_address = "127.0.0.1:{metrics}"
"#
    )
}

fn sh(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} not found ({e}); scripts/test installs it"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Requests a process has answered, from its own metrics.
fn requests_served(metrics: u16) -> u64 {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", metrics)) else {
        return 0;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
    let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.lines()
        .filter(|l| l.starts_with("rampart_http_requests_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

fn start(cfg: &std::path::Path) -> Proc {
    Proc::spawn({
        let mut c = Command::new(env!("CARGO_BIN_EXE_rampart"));
        c.args(["run", "--config"]).arg(cfg);
        c
    })
}

fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return true;
        }
        thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
#[ignore = "needs root, iproute2 and procps: a network namespace of its own with net.ipv4.tcp_migrate_req"]
fn sigterm_to_one_of_two_processes_on_a_port_loses_nothing() {
    // This thread, the threads it starts and the processes it spawns live in a new network
    // namespace: nothing here touches the machine's own network settings.
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
        .expect("unshare(CLONE_NEWNET): run as root");
    sh("ip", &["link", "set", "lo", "up"]);
    sh("sysctl", &["-q", "-w", "net.ipv4.tcp_migrate_req=1"]);

    let backend = support::start_echo_backend();
    let dir = tempfile::tempdir().unwrap();
    let listen = support::free_port();
    let configs: Vec<_> = (0..3)
        .map(|i| {
            let metrics = support::free_port();
            let path = dir.path().join(format!("rampart-{i}.toml"));
            std::fs::write(&path, config(listen, metrics, backend)).unwrap();
            (path, metrics)
        })
        .collect();
    let serving = |metrics: u16| std::net::TcpStream::connect(("127.0.0.1", metrics)).is_ok();
    let mut a = start(&configs[0].0);
    assert!(wait_until(Duration::from_secs(10), || serving(
        configs[0].1
    )));
    let mut b = start(&configs[1].0);
    assert!(wait_until(Duration::from_secs(10), || serving(
        configs[1].1
    )));

    // Many new connections: each one may be waiting in a queue when its socket closes.
    let load = Load::start(listen, 4, 4, Duration::from_millis(1));
    // Both processes take part before one of them stops.
    assert!(
        wait_until(Duration::from_secs(10), || requests_served(configs[0].1)
            > 50
            && requests_served(configs[1].1) > 50),
        "the kernel did not spread connections over both processes\n{}\n{}",
        a.stderr(),
        b.stderr()
    );
    support::signal(a.pid(), "TERM");
    let status = a.wait_exit(Duration::from_secs(8));
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{}",
        a.stderr()
    );

    // A third process joins, then the second one stops too.
    let c = start(&configs[2].0);
    assert!(
        wait_until(Duration::from_secs(10), || requests_served(configs[2].1)
            > 50),
        "{}",
        c.stderr()
    );
    support::signal(b.pid(), "TERM");
    let status = b.wait_exit(Duration::from_secs(8));
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{}",
        b.stderr()
    );
    thread::sleep(Duration::from_millis(500));

    let tally = load.finish();
    println!("{tally:?}");
    assert_eq!(tally.failed, 0, "failed requests: {:#?}", tally.errors);
    assert_eq!(
        tally.connect_errors, 0,
        "connection errors: {:#?}",
        tally.errors
    );
    assert!(
        tally.ok > 500,
        "too little load to mean anything: {tally:?}"
    );
    drop(c);
}

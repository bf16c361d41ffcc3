//! Binary upgrade: `rampart upgrade` replaces the running process, which hands its listening
//! sockets over (SCM_RIGHTS) and drains, while a constant load runs with no failed request.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use support::{Load, Proc, Reaper};

fn config(dir: &Path, listen: u16, metrics: u16, backend: u16) -> String {
    format!(
        r#"[runtime]
threads = 2
shutdown_grace = "5s"
upgrade_socket = "{socket}"

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
"#,
        socket = dir.join("upgrade.sock").display()
    )
}

/// Installs the freshly built binary at `path` the way a package upgrade does: a new file
/// renamed over the old one (the running process keeps its deleted copy).
fn install_binary(path: &Path) {
    let staged = path.with_extension("new");
    std::fs::copy(env!("CARGO_BIN_EXE_rampart"), &staged).unwrap();
    std::fs::rename(&staged, path).unwrap();
}

/// Runs `rampart upgrade`; returns the new server's pid. Its output goes to a file: the new
/// server inherits it and keeps it open.
fn upgrade(binary: &Path, cfg: &Path, log: &Path) -> Result<u32, String> {
    let out = std::fs::File::create(log).unwrap();
    let status = Command::new(binary)
        .args(["upgrade", "--config"])
        .arg(cfg)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .status()
        .unwrap();
    let text = std::fs::read_to_string(log).unwrap_or_default();
    if !status.success() {
        return Err(format!("rampart upgrade failed ({status}):\n{text}"));
    }
    text.lines()
        .find_map(|l| l.strip_prefix("upgraded: pid "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|pid| pid.parse().ok())
        .ok_or_else(|| format!("no new pid in:\n{text}"))
}

fn wait_serving(port: u16) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listens on {port}");
}

fn metrics_text(port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    Some(text)
}

#[test]
fn five_upgrades_under_load_lose_nothing() {
    let backend = support::start_echo_backend();
    let dir = tempfile::tempdir().unwrap();
    let listen = support::free_port();
    let metrics = support::free_port();
    let cfg = dir.path().join("rampart.toml");
    std::fs::write(&cfg, config(dir.path(), listen, metrics, backend)).unwrap();
    let binary: PathBuf = dir.path().join("rampart");
    install_binary(&binary);
    let mut first = Proc::spawn({
        let mut c = Command::new(&binary);
        c.args(["run", "--config"]).arg(&cfg);
        c
    });
    let mut reaper = Reaper::default();
    wait_serving(listen);

    let load = Load::start(listen, 6, 2, Duration::from_millis(2));
    let mut old = first.pid();
    // Worker counts change across upgrades: a new process serves every socket it receives,
    // whether it has more workers than the old one had sockets or fewer.
    let threads = [3, 1, 2, 4, 2];
    for round in 1..=5 {
        thread::sleep(Duration::from_millis(500));
        install_binary(&binary);
        std::fs::write(
            &cfg,
            config(dir.path(), listen, metrics, backend)
                .replace("threads = 2", &format!("threads = {}", threads[round - 1])),
        )
        .unwrap();
        let log = dir.path().join(format!("upgrade-{round}.log"));
        let new = upgrade(&binary, &cfg, &log)
            .unwrap_or_else(|e| panic!("round {round}: {e}\nfirst process:\n{}", first.stderr()));
        reaper.0.push(new);
        assert_ne!(new, old);
        // The old process drains and exits on its own.
        if round == 1 {
            let status = first.wait_exit(Duration::from_secs(8));
            assert!(
                status.is_some_and(|s| s.success()),
                "first process did not exit cleanly after the upgrade: {status:?}\n{}",
                first.stderr()
            );
        } else {
            assert!(
                support::wait_gone(old, Duration::from_secs(8)),
                "round {round}: old process {old} still running"
            );
        }
        old = new;
    }
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
    // Keep-alive clients were moved by `Connection: close`, not by closing under them.
    assert!(tally.closed_by_server >= 5, "{tally:?}");
    // The metrics endpoint moved along too.
    let text = metrics_text(metrics).expect("metrics answer after the upgrades");
    assert!(text.contains("rampart_config_generation"), "{text}");
    support::signal(old, "TERM");
    assert!(support::wait_gone(old, Duration::from_secs(8)));
}

#[test]
fn failed_upgrades_leave_the_running_process_serving() {
    let backend = support::start_echo_backend();
    let dir = tempfile::tempdir().unwrap();
    let listen = support::free_port();
    let metrics = support::free_port();
    let cfg = dir.path().join("rampart.toml");
    let good = config(dir.path(), listen, metrics, backend);
    std::fs::write(&cfg, &good).unwrap();
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_rampart"));
    let mut running = Proc::spawn({
        let mut c = Command::new(&binary);
        c.args(["run", "--config"]).arg(&cfg);
        c
    });
    wait_serving(listen);

    // A second plain `run` with the same upgrade socket refuses to start.
    let second = Command::new(&binary)
        .args(["run", "--config"])
        .arg(&cfg)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("rampart upgrade"), "{stderr}");

    // An invalid config: `rampart upgrade` says why and starts nothing.
    std::fs::write(&cfg, good.replace("[[routes]]", "[[routes]]\nbogus = 1")).unwrap();
    let log = dir.path().join("bad-config.log");
    let err = upgrade(&binary, &cfg, &log).unwrap_err();
    assert!(err.contains("bogus"), "{err}");

    // A config the new process cannot start with (a new listener on a port another program
    // holds): it exits, the running process keeps serving.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let broken = good.replace(
        "[[routes]]",
        &format!(
            "[[listeners]]\nname = \"extra\"\naddress = \"{}\"\n\n[[routes]]",
            taken.local_addr().unwrap()
        ),
    );
    std::fs::write(&cfg, broken).unwrap();
    let log = dir.path().join("bad-start.log");
    let err = upgrade(&binary, &cfg, &log).unwrap_err();
    assert!(err.contains("keeps serving"), "{err}");

    // Without an upgrade socket there is nothing to find.
    std::fs::write(
        &cfg,
        good.lines()
            .filter(|l| !l.starts_with("upgrade_socket"))
            .collect::<Vec<_>>()
            .join("\n"),
    )
    .unwrap();
    let log = dir.path().join("no-socket.log");
    let err = upgrade(&binary, &cfg, &log).unwrap_err();
    assert!(err.contains("upgrade_socket is not set"), "{err}");

    // Still the same process, still serving.
    assert!(
        running.child.try_wait().unwrap().is_none(),
        "{}",
        running.stderr()
    );
    let load = Load::start(listen, 1, 1, Duration::from_millis(5));
    thread::sleep(Duration::from_millis(300));
    let tally = load.finish();
    assert!(tally.ok > 10 && tally.failed == 0, "{tally:?}");
    support::signal(running.pid(), "TERM");
    assert!(
        running
            .wait_exit(Duration::from_secs(8))
            .is_some_and(|s| s.success())
    );
}

//! Binary upgrade: `rampart upgrade`, the running process's answers on its upgrade socket,
//! and readiness notifications to systemd.

use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rampart_handover::{Operation, Request};
use rampart_proxy::{Proxy, SocketRole};

/// How long a new process may take between receiving the sockets and serving them.
const TAKEOVER_PATIENCE: Duration = Duration::from_secs(60);

/// `rampart upgrade`: starts this binary with `run --takeover` and waits until it serves.
pub(crate) fn run(config: &Path, timeout: Duration) -> ExitCode {
    let snapshot = match rampart_config::load_file(config) {
        Ok(s) => s,
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!(
                "{}: {} error(s); the running process is left alone",
                config.display(),
                errors.len()
            );
            return ExitCode::from(1);
        }
    };
    let Some(socket) = snapshot.runtime.upgrade_socket else {
        eprintln!(
            "{}: runtime.upgrade_socket is not set; `rampart upgrade` finds the running process through it",
            config.display()
        );
        return ExitCode::from(1);
    };
    let old = match rampart_handover::query_pid(&socket, Duration::from_secs(5)) {
        Ok(pid) => pid,
        Err(e) => {
            eprintln!("no running Rampart answers on {}: {e}", socket.display());
            return ExitCode::from(1);
        }
    };
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("cannot find this program's own path: {e}");
            return ExitCode::from(1);
        }
    };
    use std::os::unix::process::CommandExt;
    let mut child = match Command::new(&exe)
        .arg("run")
        .arg("--config")
        .arg(config)
        .arg("--takeover")
        .stdin(Stdio::null())
        // Its own process group: a Ctrl-C meant for this command must not stop the server.
        .process_group(0)
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            eprintln!("cannot start {}: {e}", exe.display());
            return ExitCode::from(1);
        }
    };
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                eprintln!(
                    "the new process exited ({status}) before taking over; pid {old} keeps serving"
                );
                return ExitCode::from(1);
            }
            Ok(None) => {}
            Err(e) => {
                eprintln!("cannot watch the new process: {e}");
                return ExitCode::from(1);
            }
        }
        if rampart_handover::query_pid(&socket, Duration::from_millis(500))
            .is_ok_and(|pid| pid == child.id())
        {
            println!("upgraded: pid {} serves, pid {old} drains", child.id());
            return ExitCode::SUCCESS;
        }
        if Instant::now() > deadline {
            // Stop the new process only while the old one still answers: once the old one
            // has handed over, the new one is all that serves.
            if rampart_handover::query_pid(&socket, Duration::from_millis(500))
                .is_ok_and(|pid| pid == old)
            {
                let _ = child.kill();
                let _ = child.wait();
                eprintln!(
                    "the new process did not take over within {timeout:?}; stopped it, pid {old} keeps serving"
                );
            } else {
                eprintln!(
                    "pid {} did not answer on {} within {timeout:?} and pid {old} no longer does; left pid {} running: check its log",
                    child.id(),
                    socket.display(),
                    child.id()
                );
            }
            return ExitCode::from(1);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Answers one client of the upgrade socket. A completed takeover sends the new process's id
/// on `upgraded`, which makes this process stop accepting and drain.
pub(crate) async fn answer(
    request: Request,
    proxy: Arc<Proxy>,
    busy: Arc<AtomicBool>,
    upgraded: tokio::sync::mpsc::Sender<u32>,
) {
    let read = tokio::task::spawn_blocking(move || {
        let mut request = request;
        let operation = request.operation();
        (request, operation)
    })
    .await;
    let (mut request, operation) = match read {
        Ok((request, Ok(operation))) => (request, operation),
        Ok((_, Err(e))) => {
            tracing::warn!(error = %e, "upgrade socket: bad request");
            return;
        }
        Err(_) => return,
    };
    match operation {
        Operation::Status => {
            let _ = tokio::task::spawn_blocking(move || request.send_status()).await;
        }
        Operation::Takeover => {
            if busy.swap(true, Ordering::AcqRel) {
                tracing::warn!("upgrade socket: a takeover is already in progress; refused");
                return;
            }
            let peer = request.peer_pid();
            let sockets: Vec<(SocketRole, OwnedFd)> = proxy
                .handover_sockets()
                .await
                .into_iter()
                .map(|(role, socket)| (role, OwnedFd::from(socket)))
                .collect();
            tracing::info!(
                new_pid = peer.unwrap_or_default(),
                sockets = sockets.len(),
                "handing the listening sockets to a new process"
            );
            let outcome = tokio::task::spawn_blocking(move || {
                request.send_sockets(&sockets)?;
                request.wait_for_drain(TAKEOVER_PATIENCE)
            })
            .await;
            match outcome {
                Ok(Ok(true)) => {
                    let _ = upgraded.send(peer.unwrap_or(0)).await;
                    return;
                }
                Ok(Ok(false)) => {
                    tracing::warn!("the new process gave up before serving; still serving")
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "takeover failed; still serving")
                }
                Err(_) => {}
            }
            busy.store(false, Ordering::Release);
        }
    }
}

/// Sends `state` to systemd's notification socket when started by a `Type=notify` unit.
pub(crate) fn notify_systemd(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sent = (|| -> std::io::Result<()> {
        use std::os::unix::ffi::OsStrExt;
        let socket = std::os::unix::net::UnixDatagram::unbound()?;
        match path.as_bytes().strip_prefix(b"@") {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                let address = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                socket.send_to_addr(state.as_bytes(), &address)?;
            }
            None => {
                socket.send_to(state.as_bytes(), &path)?;
            }
        }
        Ok(())
    })();
    if let Err(e) = sent {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

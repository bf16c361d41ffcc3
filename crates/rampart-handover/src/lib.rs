//! Hand-off of listening sockets from a running Rampart process to the one replacing it
//! (binary upgrade without closing a listening socket, like HAProxy's `-x` or Envoy's hot
//! restart).
//!
//! The running process serves a Unix stream socket ([`HandoverSocket`], mode 0600). A new
//! process connects ([`Takeover::connect`]) and receives every listening socket with a
//! description of what it is for: the very same sockets, passed with `SCM_RIGHTS`, so
//! connections queued in the kernel are never lost. Once the new process serves them it
//! says so ([`Takeover::finish`]); only then does the old one stop accepting and drain. If
//! the new process fails before that, the old one simply keeps running.
//!
//! Wire protocol (one exchange per connection):
//! - `status\n` → `pid N\n`: which process serves the socket ([`query_pid`]).
//! - The takeover:
//! 1. new → old: `takeover\n`
//! 2. old → new: a 4-byte big-endian length and that many bytes of JSON
//!    `{"pid": .., "sockets": [role, ..]}`, then the descriptors in order, at most
//!    [`FDS_PER_MESSAGE`] per message, each message carrying one byte of data.
//! 3. new → old: `drain\n`; old → new: `draining\n`, and the old process drains and exits.

use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Descriptors per message; the kernel accepts at most 253 (`SCM_MAX_FD`).
pub const FDS_PER_MESSAGE: usize = 200;
/// Upper bound on the JSON description, so a broken peer cannot make us allocate much.
const MAX_HEADER: usize = 1 << 20;
/// How long either side waits for the other's next step of the exchange.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(serde::Serialize, serde::Deserialize)]
struct Header<R> {
    pid: u32,
    sockets: Vec<R>,
}

fn protocol_error(what: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.into())
}

/// Reads one `\n`-terminated line of at most 64 bytes, one byte at a time so that nothing
/// after it (such as a message carrying descriptors) is consumed.
fn read_line(stream: &mut UnixStream) -> std::io::Result<String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        if stream.read(&mut byte)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the other process closed the hand-off connection",
            ));
        }
        if byte[0] == b'\n' {
            break;
        }
        line.push(byte[0]);
        if line.len() > 64 {
            return Err(protocol_error("hand-off message too long"));
        }
    }
    String::from_utf8(line).map_err(|_| protocol_error("hand-off message is not UTF-8"))
}

/// The listening side, in the running process.
pub struct HandoverSocket {
    listener: tokio::net::UnixListener,
    path: PathBuf,
    /// Device and inode of the file this process created, so that it removes only its own.
    identity: (u64, u64),
    /// Cleared once the sockets went to a new process: the path is the new process's then.
    remove_file: bool,
}

impl HandoverSocket {
    /// Listens on `path`. A socket file nobody answers on is stale and replaced; one another
    /// process answers on is an error (two Rampart processes must not fight over it).
    pub fn bind(path: &Path) -> std::io::Result<HandoverSocket> {
        if path.exists() {
            if UnixStream::connect(path).is_ok() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    format!(
                        "another process serves the upgrade socket {}; use `rampart upgrade` to replace it",
                        path.display()
                    ),
                ));
            }
            std::fs::remove_file(path)?;
        }
        Self::bind_fresh(path)
    }

    /// Listens on `path`, atomically replacing a socket file another process may still serve
    /// (the process this one took over from).
    pub fn bind_replacing(path: &Path) -> std::io::Result<HandoverSocket> {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(format!(".{}.new", std::process::id()));
        let temporary = path.with_file_name(name);
        let _ = std::fs::remove_file(&temporary);
        let mut socket = Self::bind_fresh(&temporary)?;
        std::fs::rename(&temporary, path)?;
        socket.path = path.to_path_buf();
        Ok(socket)
    }

    fn bind_fresh(path: &Path) -> std::io::Result<HandoverSocket> {
        let listener = tokio::net::UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        let meta = std::fs::metadata(path)?;
        Ok(HandoverSocket {
            listener,
            path: path.to_path_buf(),
            identity: (meta.dev(), meta.ino()),
            remove_file: true,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops listening and leaves the socket file alone: after a takeover the new process
    /// binds its own socket on the same path, possibly at this very moment, and checking the
    /// file's identity before removing it would race with that rename.
    pub fn close_after_takeover(mut self) {
        self.remove_file = false;
    }

    /// Waits for a new process to ask for the sockets.
    pub async fn accept(&self) -> std::io::Result<Request> {
        let (stream, _) = self.listener.accept().await?;
        let stream = stream.into_std()?;
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(STEP_TIMEOUT))?;
        stream.set_write_timeout(Some(STEP_TIMEOUT))?;
        Ok(Request { stream })
    }
}

impl Drop for HandoverSocket {
    fn drop(&mut self) {
        // After an upgrade the path belongs to the new process: leave its file alone.
        if self.remove_file
            && let Ok(meta) = std::fs::metadata(&self.path)
            && (meta.dev(), meta.ino()) == self.identity
        {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// What a client of the upgrade socket asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Which process serves the socket.
    Status,
    /// The listening sockets.
    Takeover,
}

/// A client's request, on the running process's side. Its methods block (each step bounded
/// by a timeout): call them off the async runtime's threads.
pub struct Request {
    stream: UnixStream,
}

impl Request {
    /// Reads what the client asks for.
    pub fn operation(&mut self) -> std::io::Result<Operation> {
        match read_line(&mut self.stream)?.as_str() {
            "status" => Ok(Operation::Status),
            "takeover" => Ok(Operation::Takeover),
            other => Err(protocol_error(format!(
                "expected \"status\" or \"takeover\", got {other:?}"
            ))),
        }
    }

    /// The client's process id (from the kernel, `SO_PEERCRED`).
    pub fn peer_pid(&self) -> Option<u32> {
        nix::sys::socket::getsockopt(&self.stream, nix::sys::socket::sockopt::PeerCredentials)
            .ok()
            .and_then(|c| u32::try_from(c.pid()).ok())
    }

    /// Answers [`Operation::Status`].
    pub fn send_status(&mut self) -> std::io::Result<()> {
        writeln!(self.stream, "pid {}", std::process::id())
    }

    /// Answers [`Operation::Takeover`]: every socket with its role.
    pub fn send_sockets<R: Serialize>(&mut self, sockets: &[(R, OwnedFd)]) -> std::io::Result<()> {
        let header = Header {
            pid: std::process::id(),
            sockets: sockets.iter().map(|(role, _)| role).collect::<Vec<_>>(),
        };
        let json = serde_json::to_vec(&header).map_err(std::io::Error::other)?;
        self.stream.write_all(&(json.len() as u32).to_be_bytes())?;
        self.stream.write_all(&json)?;
        let fds: Vec<RawFd> = sockets.iter().map(|(_, fd)| fd.as_raw_fd()).collect();
        for chunk in fds.chunks(FDS_PER_MESSAGE) {
            sendmsg::<()>(
                self.stream.as_raw_fd(),
                &[IoSlice::new(b"F")],
                &[ControlMessage::ScmRights(chunk)],
                MsgFlags::MSG_NOSIGNAL,
                None,
            )
            .map_err(std::io::Error::from)?;
        }
        Ok(())
    }

    /// Waits until the new process serves the sockets (`Ok(true)`: stop accepting and
    /// drain now) or gives up (`Ok(false)` or an error: keep running). `patience` bounds how
    /// long the new process may take to start.
    pub fn wait_for_drain(&mut self, patience: Duration) -> std::io::Result<bool> {
        self.stream.set_read_timeout(Some(patience))?;
        let line = match read_line(&mut self.stream) {
            Ok(line) => line,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(false),
            Err(e) => return Err(e),
        };
        if line != "drain" {
            return Err(protocol_error(format!("expected \"drain\", got {line:?}")));
        }
        self.stream.write_all(b"draining\n")?;
        Ok(true)
    }
}

/// The id of the process serving the upgrade socket at `path`.
pub fn query_pid(path: &Path, timeout: Duration) -> std::io::Result<u32> {
    let mut stream = UnixStream::connect(path)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(b"status\n")?;
    let line = read_line(&mut stream)?;
    line.strip_prefix("pid ")
        .and_then(|pid| pid.parse().ok())
        .ok_or_else(|| protocol_error(format!("expected \"pid N\", got {line:?}")))
}

/// The new process's side of a hand-off.
pub struct Takeover {
    stream: UnixStream,
    /// Process id of the process handing over.
    pub pid: u32,
}

impl Takeover {
    /// Connects to the running process and receives its listening sockets with their roles.
    pub fn connect<R: DeserializeOwned>(
        path: &Path,
    ) -> std::io::Result<(Takeover, Vec<(R, OwnedFd)>)> {
        let mut stream = UnixStream::connect(path).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot reach a running Rampart on {}: {e}", path.display()),
            )
        })?;
        stream.set_read_timeout(Some(STEP_TIMEOUT))?;
        stream.set_write_timeout(Some(STEP_TIMEOUT))?;
        stream.write_all(b"takeover\n")?;
        let mut length = [0u8; 4];
        stream.read_exact(&mut length)?;
        let length = u32::from_be_bytes(length) as usize;
        if length > MAX_HEADER {
            return Err(protocol_error(format!(
                "hand-off description of {length} bytes is larger than {MAX_HEADER}"
            )));
        }
        // Exactly `length` bytes: the next bytes carry descriptors and must go to recvmsg.
        let mut json = vec![0u8; length];
        stream.read_exact(&mut json)?;
        let header: Header<R> = serde_json::from_slice(&json)
            .map_err(|e| protocol_error(format!("hand-off description: {e}")))?;
        let mut fds = Vec::with_capacity(header.sockets.len());
        while fds.len() < header.sockets.len() {
            let received = receive_fds(&stream)?;
            if received.is_empty() {
                return Err(protocol_error("hand-off message without descriptors"));
            }
            fds.extend(received);
        }
        if fds.len() != header.sockets.len() {
            return Err(protocol_error(format!(
                "{} descriptors for {} sockets",
                fds.len(),
                header.sockets.len()
            )));
        }
        let sockets = header.sockets.into_iter().zip(fds).collect();
        Ok((
            Takeover {
                stream,
                pid: header.pid,
            },
            sockets,
        ))
    }

    /// Tells the old process that this one serves the sockets now; it stops accepting and
    /// drains. Returns once it has confirmed.
    pub fn finish(mut self) -> std::io::Result<u32> {
        self.stream.write_all(b"drain\n")?;
        let reply = read_line(&mut self.stream)?;
        if reply != "draining" {
            return Err(protocol_error(format!(
                "expected \"draining\", got {reply:?}"
            )));
        }
        Ok(self.pid)
    }
}

/// One message's descriptors, owned (close-on-exec).
fn receive_fds(stream: &UnixStream) -> std::io::Result<Vec<OwnedFd>> {
    let mut data = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut data)];
    let mut space = nix::cmsg_space!([RawFd; FDS_PER_MESSAGE]);
    let msg = recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(std::io::Error::from)?;
    if msg.bytes == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the running process closed the hand-off connection",
        ));
    }
    let mut fds = Vec::new();
    for cmsg in msg
        .cmsgs()
        .map_err(|_| protocol_error("hand-off descriptors truncated"))?
    {
        if let ControlMessageOwned::ScmRights(raw) = cmsg {
            for fd in raw {
                // SAFETY: the kernel has just installed `fd` in this process's table for
                // this message; nothing else refers to it, so taking ownership is sound.
                fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    Ok(fds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Role {
        name: String,
    }

    fn listeners(count: usize) -> Vec<(Role, OwnedFd)> {
        (0..count)
            .map(|i| {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                (
                    Role {
                        name: format!("l{i}"),
                    },
                    OwnedFd::from(l),
                )
            })
            .collect()
    }

    /// More sockets than fit one message arrive intact, each the very same socket.
    #[tokio::test]
    async fn hands_over_sockets_in_several_messages() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("upgrade.sock");
        let server = HandoverSocket::bind(&path).unwrap();
        let sockets = listeners(FDS_PER_MESSAGE + 5);
        let addresses: Vec<_> = sockets
            .iter()
            .map(|(_, fd)| {
                std::net::TcpListener::from(fd.try_clone().unwrap())
                    .local_addr()
                    .unwrap()
            })
            .collect();
        let client_path = path.clone();
        let client = std::thread::spawn(move || {
            let (takeover, got) = Takeover::connect::<Role>(&client_path).unwrap();
            let got: Vec<_> = got
                .into_iter()
                .map(|(r, fd)| (r, std::net::TcpListener::from(fd).local_addr().unwrap()))
                .collect();
            (takeover.finish().unwrap(), got)
        });
        let mut request = server.accept().await.unwrap();
        let drained = tokio::task::spawn_blocking(move || {
            assert_eq!(request.operation().unwrap(), Operation::Takeover);
            request.send_sockets(&sockets).unwrap();
            request.wait_for_drain(Duration::from_secs(5)).unwrap()
        })
        .await
        .unwrap();
        assert!(drained);
        let (pid, got) = client.join().unwrap();
        assert_eq!(pid, std::process::id());
        assert_eq!(got.len(), addresses.len());
        for (i, (role, address)) in got.iter().enumerate() {
            assert_eq!(role.name, format!("l{i}"));
            assert_eq!(*address, addresses[i]);
        }
    }

    /// A new process that goes away before saying it serves the sockets leaves the old one
    /// running.
    #[tokio::test]
    async fn abandoned_takeover_keeps_the_old_process() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("upgrade.sock");
        let server = HandoverSocket::bind(&path).unwrap();
        let client_path = path.clone();
        let client = std::thread::spawn(move || {
            let (takeover, got) = Takeover::connect::<Role>(&client_path).unwrap();
            drop(takeover);
            got.len()
        });
        let mut request = server.accept().await.unwrap();
        let sockets = listeners(2);
        let drained = tokio::task::spawn_blocking(move || {
            assert_eq!(request.operation().unwrap(), Operation::Takeover);
            request.send_sockets(&sockets).unwrap();
            request.wait_for_drain(Duration::from_secs(5)).unwrap()
        })
        .await
        .unwrap();
        assert!(!drained);
        assert_eq!(client.join().unwrap(), 2);
    }

    /// Garbage on the socket is an error that names the problem, in both directions.
    #[tokio::test]
    async fn broken_peers_are_named_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("upgrade.sock");
        let server = HandoverSocket::bind(&path).unwrap();
        let client_path = path.clone();
        let client = std::thread::spawn(move || {
            let mut s = UnixStream::connect(&client_path).unwrap();
            s.write_all(b"give me everything please, all of it, now, and more\n")
                .unwrap();
        });
        let mut request = server.accept().await.unwrap();
        let err = tokio::task::spawn_blocking(move || request.operation())
            .await
            .unwrap()
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("expected \"status\" or \"takeover\""),
            "{err}"
        );
        client.join().unwrap();

        // A "running process" that answers with an absurd length.
        let fake = dir.path().join("fake.sock");
        let listener = std::os::unix::net::UnixListener::bind(&fake).unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut line = [0u8; 9];
            s.read_exact(&mut line).unwrap();
            s.write_all(&u32::MAX.to_be_bytes()).unwrap();
        });
        let err = Takeover::connect::<Role>(&fake).err().unwrap();
        assert!(err.to_string().contains("larger than"), "{err}");
        server.join().unwrap();
    }

    #[tokio::test]
    async fn status_names_the_serving_process() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("upgrade.sock");
        let server = HandoverSocket::bind(&path).unwrap();
        let client_path = path.clone();
        let client =
            std::thread::spawn(move || query_pid(&client_path, Duration::from_secs(5)).unwrap());
        let mut request = server.accept().await.unwrap();
        tokio::task::spawn_blocking(move || {
            assert_eq!(request.operation().unwrap(), Operation::Status);
            request.send_status().unwrap();
        })
        .await
        .unwrap();
        assert_eq!(client.join().unwrap(), std::process::id());
    }

    /// A live socket file is not stolen; a stale one is replaced; the owner removes only
    /// its own file.
    #[tokio::test]
    async fn socket_file_ownership() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("upgrade.sock");
        let first = HandoverSocket::bind(&path).unwrap();
        let err = HandoverSocket::bind(&path).err().unwrap();
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
        assert!(err.to_string().contains("rampart upgrade"), "{err}");
        let second = HandoverSocket::bind_replacing(&path).unwrap();
        drop(first);
        assert!(
            path.exists(),
            "the old process removed the new one's socket"
        );
        drop(second);
        assert!(!path.exists());
        // After a takeover the file is left alone even when it is still this process's own
        // (the new process replaces it right after).
        let fourth = HandoverSocket::bind(&path).unwrap();
        fourth.close_after_takeover();
        assert!(path.exists());
        std::fs::remove_file(&path).unwrap();
        // Stale file (nobody listening).
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let _third = HandoverSocket::bind(&path).unwrap();
    }
}

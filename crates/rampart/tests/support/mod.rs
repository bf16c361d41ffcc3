//! Test support for whole-process tests: child processes that never outlive a test, an echo
//! backend, and a load generator that counts every request and connection it makes.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// A child process killed on drop, so a failing assertion never leaves one behind.
pub struct Proc {
    pub child: Child,
    stderr: Arc<Mutex<String>>,
}

impl Proc {
    pub fn spawn(mut cmd: Command) -> Proc {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start rampart");
        let stderr = Arc::new(Mutex::new(String::new()));
        let pipe = child.stderr.take().expect("stderr pipe");
        let sink = stderr.clone();
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Proc { child, stderr }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends `name` (e.g. "HUP") to the process.
    pub fn signal(&self, name: &str) {
        signal(self.pid(), name);
    }

    /// Waits up to `limit` for the process to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Sends `signal` (e.g. "TERM") to `pid`.
pub fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid} failed");
}

/// Whether `pid` is still running (not gone and not a zombie), for processes that are not
/// this one's children.
pub fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Waits up to `limit` for `pid` to stop running.
pub fn wait_gone(pid: u32, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if !running(pid) {
            return true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Kills every process whose id it holds on drop (processes started by others, such as the
/// server `rampart upgrade` leaves running).
#[derive(Default)]
pub struct Reaper(pub Vec<u32>);

impl Drop for Reaper {
    fn drop(&mut self) {
        for &pid in &self.0 {
            if running(pid) {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One parsed HTTP/1.1 message head.
struct Head {
    first_line: String,
    content_length: Option<usize>,
    close: bool,
}

/// Reads a message head; `Ok(None)` when the peer closed before sending a byte.
fn read_head(stream: &mut impl Read, buf: &mut Vec<u8>) -> std::io::Result<Option<Head>> {
    let mut chunk = [0u8; 8192];
    let end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        if buf.len() > 64 * 1024 {
            return Err(std::io::Error::other("head larger than 64 KiB"));
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            if buf.is_empty() {
                return Ok(None);
            }
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed inside a message head",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let text = String::from_utf8_lossy(&buf[..end]).into_owned();
    buf.drain(..end + 4);
    let mut lines = text.split("\r\n");
    let first_line = lines.next().unwrap_or_default().to_string();
    let mut head = Head {
        first_line,
        content_length: None,
        close: false,
    };
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            head.content_length = value.parse().ok();
        } else if name.eq_ignore_ascii_case("connection") {
            head.close = value.eq_ignore_ascii_case("close");
        }
    }
    Ok(Some(head))
}

fn read_body(stream: &mut impl Read, buf: &mut Vec<u8>, length: usize) -> std::io::Result<Vec<u8>> {
    let mut chunk = [0u8; 16384];
    while buf.len() < length {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed inside a body",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(buf.drain(..length).collect())
}

/// A keep-alive HTTP/1.1 backend: `POST` echoes the body, anything else answers `ok\n`.
pub fn start_echo_backend() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            thread::spawn(move || {
                let _ = echo_connection(stream);
            });
        }
    });
    port
}

fn echo_connection(mut stream: TcpStream) -> std::io::Result<()> {
    let mut buf = Vec::new();
    while let Some(head) = read_head(&mut stream, &mut buf)? {
        let body = read_body(&mut stream, &mut buf, head.content_length.unwrap_or(0))?;
        let body = if head.first_line.starts_with("POST") {
            body
        } else {
            b"ok\n".to_vec()
        };
        let mut response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        response.extend_from_slice(&body);
        stream.write_all(&response)?;
    }
    Ok(())
}

/// What one load client saw.
#[derive(Debug, Default)]
pub struct Tally {
    /// Requests answered 200 with the right body.
    pub ok: u64,
    /// Requests sent that got no answer, a broken one, or a wrong one.
    pub failed: u64,
    /// Connection attempts refused or timed out.
    pub connect_errors: u64,
    /// Connections the server closed with `Connection: close` after an answer.
    pub closed_by_server: u64,
    /// The first few failures, with what went wrong.
    pub errors: Vec<String>,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.ok += other.ok;
        self.failed += other.failed;
        self.connect_errors += other.connect_errors;
        self.closed_by_server += other.closed_by_server;
        for e in other.errors {
            if self.errors.len() < 20 {
                self.errors.push(e);
            }
        }
    }

    fn fail(&mut self, what: String) {
        self.failed += 1;
        if self.errors.len() < 20 {
            self.errors.push(what);
        }
    }
}

/// A constant load on `127.0.0.1:port`: `keep_alive` clients that reuse their connection
/// until the server closes it, and `fresh` clients that open a connection per request. Each
/// request is a GET or a POST with a body of up to 48 KiB that must come back intact. Every
/// client pauses `pause` between requests, which bounds the load.
pub struct Load {
    stop: Arc<AtomicBool>,
    clients: Vec<JoinHandle<Tally>>,
}

impl Load {
    pub fn start(port: u16, keep_alive: usize, fresh: usize, pause: Duration) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let clients = (0..keep_alive + fresh)
            .map(|i| {
                let stop = stop.clone();
                let reuse = i < keep_alive;
                thread::spawn(move || client(port, reuse, i, pause, &stop))
            })
            .collect();
        Load { stop, clients }
    }

    /// Stops the clients after their current request and adds up what they saw.
    pub fn finish(self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = Tally::default();
        for c in self.clients {
            total.add(c.join().expect("load client panicked"));
        }
        total
    }
}

fn client(port: u16, reuse: bool, seed: usize, pause: Duration, stop: &AtomicBool) -> Tally {
    let mut tally = Tally::default();
    let mut connection: Option<(TcpStream, Vec<u8>, u64)> = None;
    let mut n = seed as u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        if connection.is_none() {
            match TcpStream::connect_timeout(
                &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
                Duration::from_secs(5),
            ) {
                Ok(s) => {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                    let _ = s.set_nodelay(true);
                    connection = Some((s, Vec::new(), 0));
                }
                Err(e) => {
                    tally.connect_errors += 1;
                    if tally.errors.len() < 20 {
                        tally.errors.push(format!("connect: {e}"));
                    }
                    thread::sleep(Duration::from_millis(50));
                    continue;
                }
            }
        }
        let Some((stream, buf, used)) = connection.as_mut() else {
            continue;
        };
        let post = n.is_multiple_of(2);
        let body: Vec<u8> = if post {
            let len = 1 + (n * 7919 % (48 * 1024)) as usize;
            (0..len).map(|i| (i as u64 ^ n) as u8).collect()
        } else {
            Vec::new()
        };
        let mut request = if post {
            format!(
                "POST /echo/{n} HTTP/1.1\r\nHost: load.test\r\nContent-Length: {}\r\n",
                body.len()
            )
        } else {
            format!("GET /get/{n} HTTP/1.1\r\nHost: load.test\r\n")
        }
        .into_bytes();
        if !reuse {
            request.extend_from_slice(b"Connection: close\r\n");
        }
        request.extend_from_slice(b"\r\n");
        request.extend_from_slice(&body);
        let reused = *used > 0;
        let outcome = (|| -> Result<bool, String> {
            stream
                .write_all(&request)
                .map_err(|e| format!("write: {e}"))?;
            let head = read_head(stream, buf)
                .map_err(|e| format!("read head: {e}"))?
                .ok_or("closed without an answer")?;
            let length = head.content_length.ok_or("answer without Content-Length")?;
            let got = read_body(stream, buf, length).map_err(|e| format!("read body: {e}"))?;
            if !head.first_line.starts_with("HTTP/1.1 200") {
                return Err(format!("status line {:?}", head.first_line));
            }
            let want: &[u8] = if post { &body } else { b"ok\n" };
            if got != want {
                return Err(format!(
                    "wrong body ({} bytes, wanted {})",
                    got.len(),
                    want.len()
                ));
            }
            Ok(head.close)
        })();
        *used += 1;
        match outcome {
            Ok(close) => {
                tally.ok += 1;
                if close && reuse {
                    tally.closed_by_server += 1;
                }
                if close || !reuse {
                    connection = None;
                }
            }
            Err(e) => {
                tally.fail(format!(
                    "{} #{n} on a {} connection: {e}",
                    if post { "POST" } else { "GET" },
                    if reused { "reused" } else { "new" }
                ));
                connection = None;
            }
        }
        thread::sleep(pause);
    }
    tally
}

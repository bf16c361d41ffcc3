//! Test support: real HTTP backends on 127.0.0.1 that can be killed and restarted, a proxy
//! started from config text, and a small client.
#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rampart_proxy::{Phases, Proxy};
use tokio::task::JoinSet;

/// What a backend saw and how it behaves.
pub struct BackendState {
    pub name: String,
    pub healthy: AtomicBool,
    pub requests: AtomicU64,
    /// Extra delay before every non-health answer.
    pub delay_ms: AtomicU64,
    /// Status for every non-health request (0 = 200).
    pub status: AtomicU64,
    pub last_headers: Mutex<Option<HeaderMap>>,
}

/// A real HTTP/1.1 + h2c backend on 127.0.0.1.
///
/// Paths: `/healthz` (200 or 503), `/echo` (echoes the request body), `/slow/<ms>`, `/status/<code>`,
/// anything else answers `<name>` with headers `x-backend: <name>`.
pub struct TestBackend {
    pub addr: SocketAddr,
    pub state: Arc<BackendState>,
    tasks: Mutex<Option<JoinSet<()>>>,
}

impl TestBackend {
    pub async fn start(name: &str) -> Arc<TestBackend> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(BackendState {
            name: name.to_string(),
            healthy: AtomicBool::new(true),
            requests: AtomicU64::new(0),
            delay_ms: AtomicU64::new(0),
            status: AtomicU64::new(0),
            last_headers: Mutex::new(None),
        });
        let backend = Arc::new(TestBackend {
            addr,
            state,
            tasks: Mutex::new(None),
        });
        backend.serve(listener);
        backend
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let mut set = JoinSet::new();
        let state = self.state.clone();
        set.spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = state.clone();
                conns.spawn(async move {
                    let svc = service_fn(move |req| answer(state.clone(), req));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        *self.tasks.lock().unwrap() = Some(set);
    }

    /// Stops listening and drops every open connection (like a crashed process).
    pub async fn kill(&self) {
        let set = self.tasks.lock().unwrap().take();
        if let Some(mut set) = set {
            set.abort_all();
            while set.join_next().await.is_some() {}
        }
    }

    /// Listens again on the same port.
    pub async fn restart(&self) {
        let mut tries = 0;
        let listener = loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if tries < 50 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("rebind {}: {e}", self.addr),
            }
        };
        self.serve(listener);
    }

    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::SeqCst)
    }

    pub fn set_healthy(&self, healthy: bool) {
        self.state.healthy.store(healthy, Ordering::SeqCst);
    }
}

async fn answer(
    state: Arc<BackendState>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    if path == "/healthz" {
        let ok = state.healthy.load(Ordering::SeqCst);
        let mut r = Response::new(Full::new(Bytes::from_static(if ok {
            b"ok"
        } else {
            b"down"
        })));
        *r.status_mut() = if ok {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        return Ok(r);
    }
    state.requests.fetch_add(1, Ordering::SeqCst);
    *state.last_headers.lock().unwrap() = Some(req.headers().clone());
    let delay = state.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    if let Some(ms) = path
        .strip_prefix("/slow/")
        .and_then(|m| m.parse::<u64>().ok())
    {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let mut status = match state.status.load(Ordering::SeqCst) {
        0 => StatusCode::OK,
        s => StatusCode::from_u16(s as u16).unwrap(),
    };
    if let Some(code) = path
        .strip_prefix("/status/")
        .and_then(|c| c.parse::<u16>().ok())
    {
        status = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    }
    let reply_type = req.headers().get("x-reply-type").cloned();
    let body = if path == "/echo" {
        req.into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default()
    } else {
        Bytes::from(state.name.clone())
    };
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert("x-backend", state.name.parse().unwrap());
    if let Some(t) = reply_type {
        r.headers_mut().insert("content-type", t);
    }
    if path == "/powered" {
        // What application servers announce and a firewall may scrub.
        r.headers_mut()
            .insert("server", "Apache/2.4.57".parse().unwrap());
        r.headers_mut()
            .insert("x-powered-by", "PHP/8.2".parse().unwrap());
    }
    Ok(r)
}

/// Replaces `{name}` placeholders in `template` (e.g. `{b1}` → `127.0.0.1:PORT`).
pub fn fill(template: &str, values: &HashMap<&str, String>) -> String {
    let mut out = template.to_string();
    for (k, v) in values {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

/// Starts a proxy from config text (listeners should use port 0). Returns the proxy and the
/// bound address of the listener named `web`.
pub async fn start_proxy(config: &str) -> (Arc<Proxy>, SocketAddr) {
    let snapshot = rampart_config::load_str(config, "test.toml", Path::new("."))
        .unwrap_or_else(|e| panic!("{e}"));
    let proxy = Proxy::start(snapshot, None, Phases::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = proxy.listener_addr("web").expect("listener named web");
    (proxy, addr)
}

/// Starts a proxy whose config lives in a file (for reload tests).
pub async fn start_proxy_file(path: &Path) -> (Arc<Proxy>, SocketAddr) {
    let snapshot = rampart_config::load_file(path).unwrap_or_else(|e| panic!("{e}"));
    let proxy = Proxy::start(snapshot, Some(path.to_path_buf()), Phases::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = proxy.listener_addr("web").expect("listener named web");
    (proxy, addr)
}

pub type Client = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
>;

/// A pooled HTTP/1.1 client.
pub fn client() -> Client {
    hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http()
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn backend(&self) -> Option<String> {
        self.headers
            .get("x-backend")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
}

/// Sends a request through `client` and reads the whole answer.
pub async fn send(
    client: &Client,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Answer, String> {
    let mut builder = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let req = builder
        .body(Full::new(Bytes::copy_from_slice(body)))
        .map_err(|e| e.to_string())?;
    let resp = client.request(req).await.map_err(|e| format!("{e:?}"))?;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

pub async fn get(client: &Client, addr: SocketAddr, path: &str) -> Result<Answer, String> {
    send(client, addr, "GET", path, &[], b"").await
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes.
pub async fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond()
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP/1.1 over TCP, a backend that records what reached it, TLS test certificates and
// HTTP clients over an arbitrary stream.
// ---------------------------------------------------------------------------------------------

/// One HTTP/1.1 response read off a raw connection.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

fn find_bytes(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Reads one response (head plus a Content-Length or chunked body, or up to EOF) within
/// `timeout`. `Err` says whether the peer closed without a (complete) answer or time ran out.
pub async fn read_raw_response(
    stream: &mut tokio::net::TcpStream,
    timeout: Duration,
) -> Result<RawResponse, String> {
    use tokio::io::AsyncReadExt;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let mut eof = false;
    loop {
        if let Some(end) = find_bytes(&buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let status = head
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse::<u16>().ok())
                .ok_or_else(|| format!("bad status line in {head:?}"))?;
            let resp = RawResponse {
                status,
                head,
                body: Vec::new(),
            };
            let rest = &buf[end + 4..];
            let te_chunked = resp
                .header("transfer-encoding")
                .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
            let complete = if let Some(len) = resp
                .header("content-length")
                .and_then(|v| v.parse::<usize>().ok())
            {
                (rest.len() >= len).then(|| rest[..len].to_vec())
            } else if te_chunked {
                find_bytes(rest, b"0\r\n\r\n").map(|_| rest.to_vec())
            } else if status == 101
                || status == 204
                || status == 304
                || (100..200).contains(&status)
            {
                Some(Vec::new())
            } else {
                eof.then(|| rest.to_vec())
            };
            if let Some(body) = complete {
                return Ok(RawResponse { body, ..resp });
            }
        }
        if eof {
            return Err(format!(
                "connection closed after {} bytes: {:?}",
                buf.len(),
                String::from_utf8_lossy(&buf)
            ));
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Err(format!(
                "timed out after {} bytes: {:?}",
                buf.len(),
                String::from_utf8_lossy(&buf)
            ));
        }
        match tokio::time::timeout(deadline - now, stream.read(&mut chunk)).await {
            Err(_) => {
                return Err(format!(
                    "timed out after {} bytes: {:?}",
                    buf.len(),
                    String::from_utf8_lossy(&buf)
                ));
            }
            Ok(Ok(0)) | Ok(Err(_)) => eof = true,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Opens a connection, writes `data` and reads one response.
pub async fn raw_exchange(addr: SocketAddr, data: &[u8]) -> Result<RawResponse, String> {
    use tokio::io::AsyncWriteExt;
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    s.write_all(data).await.map_err(|e| e.to_string())?;
    read_raw_response(&mut s, Duration::from_secs(5)).await
}

/// Reads and discards until the peer closes (EOF or reset). True when that happened within `timeout`.
pub async fn wait_closed(stream: &mut tokio::net::TcpStream, timeout: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut chunk = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return false;
        }
        match tokio::time::timeout(deadline - now, stream.read(&mut chunk)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// What a [`RecordingBackend`] saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    /// The whole body, or the error that ended it early.
    pub body: Result<Bytes, String>,
}

/// An HTTP/1.1 + h2c backend that records every request head as it arrives (`heads`) and every
/// request once its body ended or failed (`seen`). Answers 200 with the body length.
pub struct RecordingBackend {
    pub addr: SocketAddr,
    pub heads: Arc<Mutex<Vec<String>>>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RecordingBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RecordingBackend {
    pub async fn start() -> RecordingBackend {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let heads: Arc<Mutex<Vec<String>>> = Arc::default();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let (h, s) = (heads.clone(), seen.clone());
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (h, s) = (h.clone(), s.clone());
                conns.spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (h, s) = (h.clone(), s.clone());
                        async move {
                            let path = req
                                .uri()
                                .path_and_query()
                                .map_or("/".to_string(), |p| p.to_string());
                            h.lock().unwrap().push(path.clone());
                            let (parts, body) = req.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .map_err(|e| e.to_string());
                            let len = body.as_ref().map_or(0, |b| b.len());
                            s.lock().unwrap().push(Seen {
                                method: parts.method.to_string(),
                                path,
                                headers: parts.headers,
                                body,
                            });
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(format!(
                                "len={len}"
                            )))))
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        RecordingBackend {
            addr,
            heads,
            seen,
            task,
        }
    }

    pub fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// A throw-away certificate authority writing PEM files into a directory.
pub struct TestCa {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
    pub pem_path: std::path::PathBuf,
}

/// A certificate issued by a [`TestCa`]: PEM files on disk and the leaf in DER.
pub struct TestLeaf {
    pub cert_path: std::path::PathBuf,
    pub key_path: std::path::PathBuf,
    pub der: Vec<u8>,
}

impl TestCa {
    pub fn new(dir: &Path, name: &str) -> TestCa {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        let pem_path = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&pem_path, cert.pem()).unwrap();
        TestCa {
            cert,
            key,
            pem_path,
        }
    }

    /// Issues a server certificate for `sans` into `<dir>/<stem>.crt` and `<stem>.key`
    /// (overwriting them: the key is written before the certificate).
    pub fn issue(&self, dir: &Path, stem: &str, sans: &[&str]) -> TestLeaf {
        self.issue_with(dir, stem, sans, rcgen::ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// Issues a client certificate (for mTLS).
    pub fn issue_client(&self, dir: &Path, stem: &str, cn: &str) -> TestLeaf {
        self.issue_with(dir, stem, &[cn], rcgen::ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn issue_with(
        &self,
        dir: &Path,
        stem: &str,
        sans: &[&str],
        usage: rcgen::ExtendedKeyUsagePurpose,
    ) -> TestLeaf {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            sans.first().copied().unwrap_or("leaf"),
        );
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        let cert_path = dir.join(format!("{stem}.crt"));
        let key_path = dir.join(format!("{stem}.key"));
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        std::fs::write(&cert_path, cert.pem()).unwrap();
        TestLeaf {
            cert_path,
            key_path,
            der: cert.der().to_vec(),
        }
    }
}

/// A rustls client config trusting `ca_pem`, offering `alpn`, optionally with a client certificate.
pub fn tls_client_config(
    ca_pem: &Path,
    alpn: &[&[u8]],
    client_cert: Option<&TestLeaf>,
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rampart_tls::load_certs(ca_pem).unwrap() {
        roots.add(c).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(rampart_tls::crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match client_cert {
        None => builder.with_no_client_auth(),
        Some(leaf) => builder
            .with_client_auth_cert(
                rampart_tls::load_certs(&leaf.cert_path).unwrap(),
                rampart_tls::load_key(&leaf.key_path).unwrap(),
            )
            .unwrap(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

pub type TlsClientStream = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// TCP connect plus TLS handshake with SNI `server_name`.
pub async fn tls_connect(
    addr: SocketAddr,
    server_name: &str,
    config: Arc<rustls::ClientConfig>,
) -> Result<TlsClientStream, String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::try_from(server_name.to_string())
        .map_err(|e| e.to_string())?;
    let connect = tokio_rustls::TlsConnector::from(config).connect(name, tcp);
    match tokio::time::timeout(Duration::from_secs(5), connect).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err("TLS handshake timed out".into()),
    }
}

/// The leaf certificate (DER) the server presented.
pub fn peer_leaf(stream: &TlsClientStream) -> Vec<u8> {
    stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .unwrap_or_default()
}

pub fn negotiated_alpn(stream: &TlsClientStream) -> Option<Vec<u8>> {
    stream.get_ref().1.alpn_protocol().map(|p| p.to_vec())
}

/// An HTTP/1.1 client connection over `io` (its connection task runs in the background).
pub async fn h1_over<I>(
    io: I,
) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>, String>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    Ok(sender)
}

/// An HTTP/2 client connection over `io` (prior knowledge or after ALPN).
pub async fn h2_over<I>(
    io: I,
) -> Result<hyper::client::conn::http2::SendRequest<Full<Bytes>>, String>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// Collects a response into an [`Answer`] within 10 s.
pub async fn collect_answer(resp: Response<Incoming>) -> Result<Answer, String> {
    let (parts, body) = resp.into_parts();
    let body = tokio::time::timeout(Duration::from_secs(10), body.collect())
        .await
        .map_err(|_| "body timed out".to_string())?
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok(Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// GET `path` on an HTTP/1.1 connection.
pub async fn h1_get(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    host: &str,
    path: &str,
) -> Result<Answer, String> {
    sender.ready().await.map_err(|e| e.to_string())?;
    let req = Request::builder()
        .uri(path)
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), sender.send_request(req))
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| e.to_string())?;
    collect_answer(resp).await
}

/// GET `https?://authority/path` on an HTTP/2 connection.
pub async fn h2_get(
    sender: &mut hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    url: &str,
) -> Result<Answer, String> {
    sender.ready().await.map_err(|e| e.to_string())?;
    let req = Request::builder()
        .uri(url)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), sender.send_request(req))
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| e.to_string())?;
    collect_answer(resp).await
}

/// A port on 127.0.0.1 with nothing listening (bound once, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Status of one backend as the proxy reports it (admin view).
pub fn backend_status(proxy: &Proxy, pool: &str, id: &str) -> rampart_proxy::BackendStatus {
    proxy
        .status()
        .into_iter()
        .find(|p| p.name == pool)
        .and_then(|p| p.backends.into_iter().find(|b| b.id == id))
        .unwrap_or_else(|| panic!("no backend {pool}/{id}"))
}

/// Value of one sample in the metrics text, e.g. `rampart_config_reloads_total{outcome="failure"}`;
/// 0 when the series is absent.
pub fn metric_value(proxy: &Proxy, series: &str) -> f64 {
    let text = proxy.metrics().encode();
    text.lines()
        .filter_map(|l| l.strip_prefix(series))
        .filter_map(|rest| rest.strip_prefix(' '))
        .find_map(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0)
}

/// Sends `total` GETs for `path` from `concurrency` tasks sharing one pooled client and counts
/// answers by the `x-backend` header. Errors count under `"error"`, other statuses under
/// `"status <code>"`.
pub async fn spread(
    addr: SocketAddr,
    path: &str,
    total: usize,
    concurrency: usize,
) -> HashMap<String, u64> {
    let c = client();
    let mut tasks = JoinSet::new();
    for t in 0..concurrency {
        let c = c.clone();
        let path = path.to_string();
        let n = total / concurrency + usize::from(t < total % concurrency);
        tasks.spawn(async move {
            let mut counts: HashMap<String, u64> = HashMap::new();
            for _ in 0..n {
                let key = match get(&c, addr, &path).await {
                    Ok(a) if a.status == StatusCode::OK => {
                        a.backend().unwrap_or_else(|| "no x-backend".into())
                    }
                    Ok(a) => format!("status {}", a.status.as_u16()),
                    Err(_) => "error".to_string(),
                };
                *counts.entry(key).or_default() += 1;
            }
            counts
        });
    }
    let mut all: HashMap<String, u64> = HashMap::new();
    while let Some(r) = tasks.join_next().await {
        for (k, v) in r.unwrap() {
            *all.entry(k).or_default() += v;
        }
    }
    all
}

/// A config with one listener `web` on 127.0.0.1:0, one catch-all route `all` to pool `p`
/// and no access log; `pool` is the body of the `[[pools]]` table after `name = "p"`, and
/// `route` extra keys of the route (e.g. `max_body = "1KiB"`).
pub fn one_pool_config(pool: &str, route: &str) -> String {
    format!(
        "[[listeners]]\nname = \"web\"\naddress = \"127.0.0.1:0\"\n\
         [[pools]]\nname = \"p\"\n{pool}\n\
         [[routes]]\nname = \"all\"\npool = \"p\"\n{route}\n\
         [observability]\naccess_log = \"off\"\n"
    )
}

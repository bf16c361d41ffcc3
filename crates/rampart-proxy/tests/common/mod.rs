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
        let backend = Arc::new(TestBackend { addr, state, tasks: Mutex::new(None) });
        backend.serve(listener);
        backend
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let mut set = JoinSet::new();
        let state = self.state.clone();
        set.spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
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

async fn answer(state: Arc<BackendState>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    if path == "/healthz" {
        let ok = state.healthy.load(Ordering::SeqCst);
        let mut r = Response::new(Full::new(Bytes::from_static(if ok { b"ok" } else { b"down" })));
        *r.status_mut() = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
        return Ok(r);
    }
    state.requests.fetch_add(1, Ordering::SeqCst);
    *state.last_headers.lock().unwrap() = Some(req.headers().clone());
    let delay = state.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    if let Some(ms) = path.strip_prefix("/slow/").and_then(|m| m.parse::<u64>().ok()) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let mut status = match state.status.load(Ordering::SeqCst) {
        0 => StatusCode::OK,
        s => StatusCode::from_u16(s as u16).unwrap(),
    };
    if let Some(code) = path.strip_prefix("/status/").and_then(|c| c.parse::<u16>().ok()) {
        status = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    }
    let body = if path == "/echo" {
        req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default()
    } else {
        Bytes::from(state.name.clone())
    };
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    r.headers_mut().insert("x-backend", state.name.parse().unwrap());
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
    let snapshot = rampart_config::load_str(config, "test.toml", Path::new(".")).unwrap_or_else(|e| panic!("{e}"));
    let proxy = Proxy::start(snapshot, None, Phases::default()).await.unwrap_or_else(|e| panic!("{e}"));
    let addr = proxy.listener_addr("web").expect("listener named web");
    (proxy, addr)
}

/// Starts a proxy whose config lives in a file (for reload tests).
pub async fn start_proxy_file(path: &Path) -> (Arc<Proxy>, SocketAddr) {
    let snapshot = rampart_config::load_file(path).unwrap_or_else(|e| panic!("{e}"));
    let proxy = Proxy::start(snapshot, Some(path.to_path_buf()), Phases::default()).await.unwrap_or_else(|e| panic!("{e}"));
    let addr = proxy.listener_addr("web").expect("listener named web");
    (proxy, addr)
}

pub type Client = hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

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
        self.headers.get("x-backend").and_then(|v| v.to_str().ok()).map(str::to_string)
    }
}

/// Sends a request through `client` and reads the whole answer.
pub async fn send(client: &Client, addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Result<Answer, String> {
    let mut builder = Request::builder().method(method).uri(format!("http://{addr}{path}"));
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let req = builder.body(Full::new(Bytes::copy_from_slice(body))).map_err(|e| e.to_string())?;
    let resp = client.request(req).await.map_err(|e| format!("{e:?}"))?;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(Answer { status: parts.status, headers: parts.headers, body })
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

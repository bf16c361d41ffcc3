//! `rampart demo`: three small HTTP backends in this process and Rampart in front of them, so a
//! new user sees balancing, stickiness and health checks at once.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

const TEMPLATE: &str = include_str!("demo.toml");

struct DemoBackend {
    name: &'static str,
    healthy: AtomicBool,
    served: AtomicU64,
}

/// Starts one demo backend on an ephemeral 127.0.0.1 port.
async fn start_backend(name: &'static str) -> std::io::Result<(SocketAddr, Arc<DemoBackend>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let state = Arc::new(DemoBackend {
        name,
        healthy: AtomicBool::new(true),
        served: AtomicU64::new(0),
    });
    let s = state.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let s = s.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| answer(s.clone(), req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok((addr, state))
}

async fn answer(
    b: Arc<DemoBackend>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path();
    let (status, body) = match path {
        "/healthz" if b.healthy.load(Ordering::Relaxed) => (StatusCode::OK, "ok\n".to_string()),
        "/healthz" => (StatusCode::SERVICE_UNAVAILABLE, "down\n".to_string()),
        "/_demo/down" => {
            b.healthy.store(false, Ordering::Relaxed);
            (
                StatusCode::OK,
                format!("{} now fails its health checks\n", b.name),
            )
        }
        "/_demo/up" => {
            b.healthy.store(true, Ordering::Relaxed);
            (
                StatusCode::OK,
                format!("{} passes its health checks again\n", b.name),
            )
        }
        _ => {
            let n = b.served.fetch_add(1, Ordering::Relaxed) + 1;
            let rid = req
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            (
                StatusCode::OK,
                format!(
                    "hello from {} (request #{n} here, path {path}, request id {rid})\n",
                    b.name
                ),
            )
        }
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert("x-demo-backend", http::HeaderValue::from_static(b.name));
    Ok(resp)
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub fn run(port: u16) -> ExitCode {
    // Backends need a runtime of their own so they keep serving while Rampart's runtime runs.
    let backends_rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start demo backends: {e}");
            return ExitCode::from(1);
        }
    };
    let started = backends_rt.block_on(async {
        let mut out = Vec::new();
        for name in ["alpha", "beta", "gamma"] {
            out.push(start_backend(name).await?);
        }
        std::io::Result::Ok(out)
    });
    let backends = match started {
        Ok(b) => b,
        Err(e) => {
            eprintln!("cannot start demo backends: {e}");
            return ExitCode::from(1);
        }
    };
    let (metrics_port, admin_port) = match (free_port(), free_port()) {
        (Ok(m), Ok(a)) => (m, a),
        _ => {
            eprintln!("no free port on 127.0.0.1");
            return ExitCode::from(1);
        }
    };
    let token: String = (0..32)
        .map(|_| char::from(b"abcdefghijkmnpqrstuvwxyz23456789"[rand::random_range(0..32)]))
        .collect();
    let token_file = match write_token(&token) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("cannot write the demo admin token: {e}");
            return ExitCode::from(1);
        }
    };
    let text = TEMPLATE
        .replace("{PORT}", &port.to_string())
        .replace("{B1}", &backends[0].0.port().to_string())
        .replace("{B2}", &backends[1].0.port().to_string())
        .replace("{B3}", &backends[2].0.port().to_string())
        .replace("{METRICS}", &metrics_port.to_string())
        .replace("{ADMIN}", &admin_port.to_string())
        .replace("{TOKEN_FILE}", &token_file.display().to_string());
    let snapshot = match rampart_config::load_str(&text, "<demo>", std::path::Path::new(".")) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    let b = backends.iter().map(|(a, s)| format!("  {:<6} http://{a}   (make it fail: curl {a}/_demo/down, recover: curl {a}/_demo/up)", s.name)).collect::<Vec<_>>().join("\n");
    let banner = format!(
        "\nRampart demo is running.\n\n\
         Proxy:    http://127.0.0.1:{port}/          weighted round robin 2:1:1 over alpha, beta, gamma\n\
         Sticky:   http://127.0.0.1:{port}/sticky    cookie stickiness (try: curl -c jar -b jar ...)\n\
         Metrics:  http://127.0.0.1:{metrics_port}/metrics\n\
         Admin:    http://127.0.0.1:{admin_port}/api/v1/pools   (header: Authorization: Bearer {token})\n\n\
         Backends:\n{b}\n\n\
         Try:  for i in $(seq 8); do curl -s http://127.0.0.1:{port}/; done\n\
         Ctrl-C stops everything.\n"
    );
    let on_start: crate::OnStart = Box::new(move |_| println!("{banner}"));
    let code = crate::run_blocking(snapshot, None, Some(on_start), false);
    drop(backends_rt);
    code
}

/// Writes the demo's admin token to a private file for the config to read.
fn write_token(token: &str) -> std::io::Result<std::path::PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = std::env::temp_dir().join(format!("rampart-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("admin.token");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)?;
    f.write_all(token.as_bytes())?;
    Ok(path)
}

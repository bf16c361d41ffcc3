//! Admin API: bearer-token authorization on every endpoint, pool listing, drain/enable against
//! live traffic, reload and config generation. Backends are tiny HTTP/1.1 servers on 127.0.0.1.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use rampart_config::Secret;
use rampart_proxy::{Phases, Proxy};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

const TOKEN: &str = "test-admin-token-0123456789";

/// A minimal keep-alive HTTP/1.1 backend answering every request (without body) with its name.
struct Backend {
    addr: SocketAddr,
    requests: Arc<AtomicU64>,
}

async fn backend(name: &'static str) -> Backend {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicU64::new(0));
    let counter = requests.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        counter.fetch_add(1, Ordering::SeqCst);
                        let answer = format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nx-backend: {name}\r\n\r\n{name}",
                            name.len()
                        );
                        if stream.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    Backend { addr, requests }
}

/// One GET through the proxy on a fresh connection; returns the status and `x-backend`
/// (status 0 when the connection was closed unanswered).
async fn proxied_get(addr: SocketAddr) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    // A connection the proxy refuses (a ban) may fail either way: status 0.
    let mut out = Vec::new();
    if s.write_all(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await
        .is_err()
        || s.read_to_end(&mut out).await.is_err()
    {
        return (0, String::new());
    }
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let backend = text
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("x-backend: ")
                .map(str::to_string)
        })
        .unwrap_or_default();
    (status, backend)
}

fn config(a: &Backend, b: &Backend) -> String {
    format!(
        r#"
[[listeners]]
name = "web"
address = "127.0.0.1:0"
[[pools]]
name = "p"
backends = [{{ id = "a", address = "{}" }}, {{ id = "b", address = "{}" }}]
[[routes]]
name = "all"
pool = "p"
[observability]
access_log = "off"
"#,
        a.addr, b.addr
    )
}

struct Setup {
    proxy: Arc<Proxy>,
    app: axum::Router,
    a: Backend,
    b: Backend,
    path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

/// A proxy started from a config file (so reload works) and its admin router.
async fn setup() -> Setup {
    let a = backend("a").await;
    let b = backend("b").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rampart.toml");
    std::fs::write(&path, config(&a, &b)).unwrap();
    let snapshot = rampart_config::load_file(&path).unwrap();
    let proxy = Proxy::start(snapshot, Some(path.clone()), Phases::default())
        .await
        .unwrap();
    let app = rampart_admin::router(proxy.clone(), Secret::new(TOKEN.to_string()));
    Setup {
        proxy,
        app,
        a,
        b,
        path,
        _dir: dir,
    }
}

/// Sends one request to the admin router; `auth` is the whole Authorization header value.
async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    auth: Option<&str>,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, json)
}

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_requires_the_token() {
    let s = setup().await;
    let endpoints = [
        ("GET", "/api/v1/pools"),
        ("GET", "/api/v1/config"),
        ("POST", "/api/v1/reload"),
        ("POST", "/api/v1/pools/p/backends/a/drain"),
        ("POST", "/api/v1/pools/p/backends/a/disable"),
        ("POST", "/api/v1/pools/p/backends/a/enable"),
    ];
    let wrong = [
        None,
        Some("Bearer wrong-token-0123456789".to_string()),
        Some(format!("Bearer {TOKEN}x")),
        Some(format!("Bearer {}", &TOKEN[..TOKEN.len() - 1])),
        Some(format!("Basic {TOKEN}")),
        Some(TOKEN.to_string()),
        Some("Bearer ".to_string()),
    ];
    for (method, uri) in endpoints {
        for auth in &wrong {
            let (status, body) = call(&s.app, method, uri, auth.as_deref()).await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{method} {uri} with {auth:?}"
            );
            assert!(
                !body.to_string().contains(TOKEN),
                "the token is never echoed"
            );
        }
        let (status, body) = call(&s.app, method, uri, Some(&bearer())).await;
        assert_eq!(status, StatusCode::OK, "{method} {uri}: {body}");
    }
    // Unknown paths are not revealed without the token either.
    assert_eq!(
        call(&s.app, "GET", "/api/v1/nothing", None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(&s.app, "GET", "/api/v1/nothing", Some(&bearer()))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    // Only the authorized reload took effect.
    assert_eq!(s.proxy.generation(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthorized_requests_change_nothing() {
    let s = setup().await;
    for _ in 0..3 {
        assert_eq!(
            call(
                &s.app,
                "POST",
                "/api/v1/pools/p/backends/a/drain",
                Some("Bearer nope-nope-nope-nope")
            )
            .await
            .0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            call(&s.app, "POST", "/api/v1/reload", None).await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(s.proxy.generation(), 1);
    let (_, pools) = call(&s.app, "GET", "/api/v1/pools", Some(&bearer())).await;
    assert_eq!(pools["pools"][0]["backends"][0]["admin_state"], "enabled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_list_backends_with_health() {
    let s = setup().await;
    let web = s.proxy.listener_addr("web").unwrap();
    for _ in 0..4 {
        assert_eq!(proxied_get(web).await.0, 200);
    }
    let (status, body) = call(&s.app, "GET", "/api/v1/pools", Some(&bearer())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["generation"], 1);
    let pools = body["pools"].as_array().unwrap();
    assert_eq!(pools.len(), 1);
    assert_eq!(pools[0]["name"], "p");
    let backends = pools[0]["backends"].as_array().unwrap();
    let ids: Vec<&str> = backends.iter().map(|b| b["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["a", "b"]);
    for (b, addr) in backends.iter().zip([s.a.addr, s.b.addr]) {
        assert_eq!(b["address"], addr.to_string());
        assert_eq!(b["healthy"], true);
        assert_eq!(b["available"], true);
        assert_eq!(b["admin_state"], "enabled");
        assert_eq!(b["total_requests"], 2);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_steers_traffic_away_and_enable_restores_it() {
    let s = setup().await;
    let web = s.proxy.listener_addr("web").unwrap();
    let (status, body) = call(
        &s.app,
        "POST",
        "/api/v1/pools/p/backends/a/drain",
        Some(&bearer()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["state"], "drain");
    let (_, pools) = call(&s.app, "GET", "/api/v1/pools", Some(&bearer())).await;
    assert_eq!(pools["pools"][0]["backends"][0]["admin_state"], "drain");
    assert_eq!(pools["pools"][0]["backends"][0]["available"], false);

    let a_before = s.a.requests.load(Ordering::SeqCst);
    for _ in 0..20 {
        assert_eq!(proxied_get(web).await, (200, "b".to_string()));
    }
    assert_eq!(
        s.a.requests.load(Ordering::SeqCst),
        a_before,
        "a drained backend got traffic"
    );

    let (status, _) = call(
        &s.app,
        "POST",
        "/api/v1/pools/p/backends/a/enable",
        Some(&bearer()),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let mut to_a = 0;
    for _ in 0..20 {
        let (status, backend) = proxied_get(web).await;
        assert_eq!(status, 200);
        to_a += usize::from(backend == "a");
    }
    assert_eq!(to_a, 10, "round robin over both backends again");

    // Disable takes it out as well.
    assert_eq!(
        call(
            &s.app,
            "POST",
            "/api/v1/pools/p/backends/a/disable",
            Some(&bearer())
        )
        .await
        .0,
        StatusCode::OK
    );
    for _ in 0..6 {
        assert_eq!(proxied_get(web).await.1, "b");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_pool_backend_or_action_is_404() {
    let s = setup().await;
    for uri in [
        "/api/v1/pools/nope/backends/a/drain",
        "/api/v1/pools/p/backends/nope/drain",
        "/api/v1/pools/p/backends/a/explode",
        "/api/v1/pools/p/backends/a",
    ] {
        let (status, body) = call(&s.app, "POST", uri, Some(&bearer())).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}: {body}");
    }
    let (_, pools) = call(&s.app, "GET", "/api/v1/pools", Some(&bearer())).await;
    assert_eq!(pools["pools"][0]["backends"][0]["admin_state"], "enabled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_and_config_generation() {
    let s = setup().await;
    let (status, body) = call(&s.app, "GET", "/api/v1/config", Some(&bearer())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["generation"], 1);
    assert_eq!(body["origin"], s.path.display().to_string());
    assert!(
        body["summary"]
            .as_str()
            .unwrap()
            .contains("1 pools, 2 backends"),
        "{body}"
    );

    let (status, body) = call(&s.app, "POST", "/api/v1/reload", Some(&bearer())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["generation"], 2);
    assert_eq!(
        call(&s.app, "GET", "/api/v1/config", Some(&bearer()))
            .await
            .1["generation"],
        2
    );

    // A broken file is rejected with its errors; the generation stays.
    let broken = config(&s.a, &s.b).replace("name = \"p\"", "name = \"p\"\nunknown_field = true");
    std::fs::write(&s.path, broken).unwrap();
    let (status, body) = call(&s.app, "POST", "/api/v1/reload", Some(&bearer())).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["errors"].to_string().contains("unknown_field"),
        "{body}"
    );
    let (_, cfg) = call(&s.app, "GET", "/api/v1/config", Some(&bearer())).await;
    assert_eq!(cfg["generation"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_without_config_file_is_409() {
    let a = backend("a").await;
    let b = backend("b").await;
    let snapshot = rampart_config::load_str(&config(&a, &b), "<built-in>", Path::new(".")).unwrap();
    let proxy = Proxy::start(snapshot, None, Phases::default())
        .await
        .unwrap();
    let app = rampart_admin::router(proxy.clone(), Secret::new(TOKEN.to_string()));
    assert_eq!(
        call(&app, "POST", "/api/v1/reload", None).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, body) = call(&app, "POST", "/api/v1/reload", Some(&bearer())).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(proxy.generation(), 1);
    let (status, body) = call(&app, "GET", "/api/v1/config", Some(&bearer())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["generation"], 1);
    assert_eq!(body["origin"], "<built-in>");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_on_loopback_socket() {
    let s = setup().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(rampart_admin::serve(
        listener,
        s.proxy.clone(),
        Secret::new(TOKEN.to_string()),
    ));
    let raw = |auth: &str| {
        format!("GET /api/v1/config HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n{auth}\r\n")
    };
    for (request, expected) in [
        (raw(""), "401"),
        (raw("Authorization: Bearer wrong-token-xyz\r\n"), "401"),
        (raw(&format!("Authorization: Bearer {TOKEN}\r\n")), "200"),
    ] {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with(&format!("HTTP/1.1 {expected}")), "{out}");
        if expected == "401" {
            assert!(
                out.to_ascii_lowercase()
                    .contains("www-authenticate: bearer"),
                "{out}"
            );
        }
    }
}

/// Sends one request with a body to the admin router.
async fn call_body(app: &axum::Router, method: &str, uri: &str, body: &str) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", bearer())
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bans_are_placed_listed_and_lifted() {
    let s = setup().await;
    let addr = s.proxy.listener_addr("web").unwrap();
    // The token guards the ban endpoints too.
    for (method, uri) in [
        ("GET", "/api/v1/bans"),
        ("POST", "/api/v1/bans"),
        ("DELETE", "/api/v1/bans/127.0.0.1"),
    ] {
        assert_eq!(
            call(&s.app, method, uri, None).await.0,
            StatusCode::UNAUTHORIZED,
            "{method} {uri}"
        );
    }
    let (status, body) = call(&s.app, "GET", "/api/v1/bans", Some(&bearer())).await;
    assert_eq!(
        (status, body["bans"].as_array().map(Vec::len)),
        (StatusCode::OK, Some(0))
    );
    assert_eq!(proxied_get(addr).await.0, 200);

    let (status, body) = call_body(
        &s.app,
        "POST",
        "/api/v1/bans",
        r#"{"ip": "127.0.0.1", "ttl": "10m"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["ban"]["reason"], "manual");
    assert_eq!(body["ban"]["ttl_seconds"], 600);
    // A banned client is closed at accept, unanswered.
    assert_eq!(proxied_get(addr).await.0, 0);
    let (_, body) = call(&s.app, "GET", "/api/v1/bans", Some(&bearer())).await;
    assert_eq!(body["bans"][0]["ip"], "127.0.0.1");

    let (status, body) = call(&s.app, "DELETE", "/api/v1/bans/127.0.0.1", Some(&bearer())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(proxied_get(addr).await.0, 200);
    let (status, body) = call(&s.app, "DELETE", "/api/v1/bans/127.0.0.1", Some(&bearer())).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    // Broken requests are refused with the field named; nothing is banned.
    for (request, expect) in [
        (
            r#"{"ip": "nope"}"#,
            "ip: \"nope\" is not an IPv4 or IPv6 address",
        ),
        (r#"{"ip": "10.0.0.1", "ttl": "forever"}"#, "ttl:"),
        (
            r#"{"ip": "10.0.0.1", "ttl": "0s"}"#,
            "ttl: must be greater than zero",
        ),
        (
            r#"{"ip": "10.0.0.1", "ttl": "400d"}"#,
            "ttl: at most 366 days",
        ),
        (
            r#"{"ip": "10.0.0.1", "colour": "red"}"#,
            "expected a JSON body",
        ),
        (r#"{"ip": "10.0.0.1""#, "expected a JSON body"),
        ("", "expected a JSON body"),
    ] {
        let (status, body) = call_body(&s.app, "POST", "/api/v1/bans", request).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{request}: {body}");
        let message = body["error"].as_str().unwrap_or_default();
        assert!(message.contains(expect), "{request}: {message}");
    }
    let (status, _) = call(&s.app, "DELETE", "/api/v1/bans/not-an-ip", Some(&bearer())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(s.proxy.bans().is_empty());
}

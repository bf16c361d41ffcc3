//! TLS termination (SNI certificate selection, ALPN, hot reload, client certificates) and TLS to
//! upstreams, with certificates made by a throw-away CA.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rampart_proxy::Proxy;

struct Pki {
    dir: tempfile::TempDir,
    ca: TestCa,
    a: TestLeaf,
    b: TestLeaf,
    w: TestLeaf,
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "root");
    let a = ca.issue(dir.path(), "a", &["a.test"]);
    let b = ca.issue(dir.path(), "b", &["b.test"]);
    let w = ca.issue(dir.path(), "w", &["*.w.test"]);
    Pki { dir, ca, a, b, w }
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

/// An https listener named `web` serving certificates a, b and w; `tls_extra` is added to its
/// tls table (e.g. client auth).
async fn https_proxy(pki: &Pki, backend: SocketAddr, tls_extra: &str) -> (Arc<Proxy>, SocketAddr) {
    let values = HashMap::from([
        ("backend", backend.to_string()),
        ("a_crt", p(&pki.a.cert_path)),
        ("a_key", p(&pki.a.key_path)),
        ("b_crt", p(&pki.b.cert_path)),
        ("b_key", p(&pki.b.key_path)),
        ("w_crt", p(&pki.w.cert_path)),
        ("w_key", p(&pki.w.key_path)),
        ("extra", tls_extra.to_string()),
    ]);
    let config = fill(
        r#"
[[listeners]]
name = "web"
address = "127.0.0.1:0"
protocol = "https"
tls = { certificates = ["a", "b", "w"] {extra} }
[[certificates]]
name = "a"
cert = "{a_crt}"
key = "{a_key}"
[[certificates]]
name = "b"
cert = "{b_crt}"
key = "{b_key}"
[[certificates]]
name = "w"
cert = "{w_crt}"
key = "{w_key}"
[[pools]]
name = "p"
backends = [{ address = "{backend}" }]
[[routes]]
name = "all"
pool = "p"
[observability]
access_log = "off"
"#,
        &values,
    );
    start_proxy(&config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_selects_the_matching_certificate() {
    let pki = pki();
    let backend = TestBackend::start("app").await;
    let (_proxy, addr) = https_proxy(&pki, backend.addr, "").await;
    let config = tls_client_config(&pki.ca.pem_path, &[], None);
    for (sni, leaf) in [
        ("a.test", &pki.a),
        ("b.test", &pki.b),
        ("x.w.test", &pki.w),
        ("other.w.test", &pki.w),
    ] {
        let tls = tls_connect(addr, sni, config.clone())
            .await
            .unwrap_or_else(|e| panic!("{sni}: {e}"));
        assert!(
            peer_leaf(&tls) == leaf.der,
            "{sni} got the wrong certificate"
        );
        let mut h1 = h1_over(tls).await.unwrap();
        let r = h1_get(&mut h1, sni, "/").await.unwrap();
        assert_eq!(r.status, 200, "{sni}");
        assert_eq!(r.text(), "app");
    }
    let h = backend.state.last_headers.lock().unwrap().clone().unwrap();
    assert_eq!(h["x-forwarded-proto"], "https");
    // A name no certificate covers gets the default (first) one, which the client rejects.
    let err = match tls_connect(addr, "nobody.test", config.clone()).await {
        Ok(_) => panic!("handshake with an uncovered name must fail verification"),
        Err(e) => e,
    };
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    // A wildcard covers exactly one label.
    assert!(tls_connect(addr, "a.b.w.test", config).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpn_picks_h2_or_http1() {
    let pki = pki();
    let backend = TestBackend::start("app").await;
    let (_proxy, addr) = https_proxy(&pki, backend.addr, "").await;

    let tls = tls_connect(
        addr,
        "a.test",
        tls_client_config(&pki.ca.pem_path, &[b"h2", b"http/1.1"], None),
    )
    .await
    .unwrap();
    assert_eq!(negotiated_alpn(&tls).as_deref(), Some(&b"h2"[..]));
    let mut h2 = h2_over(tls).await.unwrap();
    let r = h2_get(&mut h2, "https://a.test/x").await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "app");

    let tls = tls_connect(
        addr,
        "b.test",
        tls_client_config(&pki.ca.pem_path, &[b"http/1.1"], None),
    )
    .await
    .unwrap();
    assert_eq!(negotiated_alpn(&tls).as_deref(), Some(&b"http/1.1"[..]));
    let mut h1 = h1_over(tls).await.unwrap();
    assert_eq!(h1_get(&mut h1, "b.test", "/y").await.unwrap().status, 200);

    // After ALPN chose http/1.1, an HTTP/2 preface is not served.
    let tls = tls_connect(
        addr,
        "b.test",
        tls_client_config(&pki.ca.pem_path, &[b"http/1.1"], None),
    )
    .await
    .unwrap();
    let outcome = match h2_over(tls).await {
        Err(e) => Err(e),
        Ok(mut h2) => h2_get(&mut h2, "https://b.test/h2").await.map(|a| a.status),
    };
    assert!(
        outcome.is_err(),
        "HTTP/2 served after ALPN chose http/1.1: {outcome:?}"
    );

    // No ALPN at all: HTTP/1.1.
    let tls = tls_connect(
        addr,
        "b.test",
        tls_client_config(&pki.ca.pem_path, &[], None),
    )
    .await
    .unwrap();
    assert_eq!(negotiated_alpn(&tls), None);
    let mut h1 = h1_over(tls).await.unwrap();
    let r = h1_get(&mut h1, "b.test", "/z").await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(backend.requests(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_reload_without_restart() {
    let pki = pki();
    let backend = TestBackend::start("app").await;
    let (_proxy, addr) = https_proxy(&pki, backend.addr, "").await;
    let config = tls_client_config(&pki.ca.pem_path, &[], None);

    let old = tls_connect(addr, "a.test", config.clone()).await.unwrap();
    assert!(peer_leaf(&old) == pki.a.der);
    let mut old_conn = h1_over(old).await.unwrap();
    assert_eq!(
        h1_get(&mut old_conn, "a.test", "/").await.unwrap().status,
        200
    );

    // New key and certificate at the same paths.
    let renewed = pki.ca.issue(pki.dir.path(), "a", &["a.test"]);
    assert!(renewed.der != pki.a.der);
    let mut seen_new = false;
    for _ in 0..40 {
        let tls = tls_connect(addr, "a.test", config.clone()).await.unwrap();
        let leaf = peer_leaf(&tls);
        if leaf == renewed.der {
            seen_new = true;
            let mut h1 = h1_over(tls).await.unwrap();
            assert_eq!(h1_get(&mut h1, "a.test", "/").await.unwrap().status, 200);
            break;
        }
        assert!(leaf == pki.a.der, "neither the old nor the new certificate");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        seen_new,
        "new connections still get the old certificate after 10 s"
    );
    // The connection opened before the reload keeps working.
    let r = h1_get(&mut old_conn, "a.test", "/again").await.unwrap();
    assert_eq!(r.status, 200);
    // Other certificates are untouched.
    let tls = tls_connect(addr, "b.test", config).await.unwrap();
    assert!(peer_leaf(&tls) == pki.b.der);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_are_required_when_configured() {
    let pki = pki();
    let backend = TestBackend::start("app").await;
    let extra = format!(
        ", client_ca = \"{}\", client_auth = \"required\"",
        p(&pki.ca.pem_path)
    );
    let (_proxy, addr) = https_proxy(&pki, backend.addr, &extra).await;

    // Without a certificate: the handshake or the first request fails.
    let no_cert = tls_client_config(&pki.ca.pem_path, &[], None);
    let outcome = match tls_connect(addr, "a.test", no_cert).await {
        Err(e) => Err(e),
        Ok(tls) => match h1_over(tls).await {
            Err(e) => Err(e),
            Ok(mut h1) => h1_get(&mut h1, "a.test", "/").await.map(|a| a.status),
        },
    };
    assert!(
        outcome.is_err(),
        "request without a client certificate answered: {outcome:?}"
    );

    // A certificate from another CA is refused too.
    let other_dir = tempfile::tempdir().unwrap();
    let other_ca = TestCa::new(other_dir.path(), "other");
    let stranger = other_ca.issue_client(other_dir.path(), "stranger", "stranger");
    let outcome = match tls_connect(
        addr,
        "a.test",
        tls_client_config(&pki.ca.pem_path, &[], Some(&stranger)),
    )
    .await
    {
        Err(e) => Err(e),
        Ok(tls) => match h1_over(tls).await {
            Err(e) => Err(e),
            Ok(mut h1) => h1_get(&mut h1, "a.test", "/").await.map(|a| a.status),
        },
    };
    assert!(
        outcome.is_err(),
        "request with a foreign client certificate answered: {outcome:?}"
    );
    assert_eq!(backend.requests(), 0);

    // A certificate signed by the configured CA is accepted.
    let client = pki.ca.issue_client(pki.dir.path(), "client", "client");
    let tls = tls_connect(
        addr,
        "a.test",
        tls_client_config(&pki.ca.pem_path, &[], Some(&client)),
    )
    .await
    .unwrap();
    let mut h1 = h1_over(tls).await.unwrap();
    let r = h1_get(&mut h1, "a.test", "/").await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(backend.requests(), 1);
}

/// An HTTP/1.1 + HTTP/2 backend behind TLS answering "tls-backend".
async fn tls_backend(leaf: &TestLeaf) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let certs = rampart_tls::load_certs(&leaf.cert_path).unwrap();
    let key = rampart_tls::load_key(&leaf.key_path).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(rampart_tls::crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                        Bytes::from_static(b"tls-backend"),
                    )))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (addr, task)
}

async fn proxy_to_tls_backend(
    backend: SocketAddr,
    ca: &Path,
    protocol: &str,
) -> (Arc<Proxy>, SocketAddr) {
    let values = HashMap::from([
        ("b", backend.to_string()),
        ("ca", p(ca)),
        ("protocol", protocol.to_string()),
    ]);
    let config = fill(
        &one_pool_config(
            r#"
protocol = "{protocol}"
backends = [{ address = "{b}" }]
tls = { ca = "{ca}", server_name = "backend.test" }
retries = { attempts = 1 }
"#,
            "",
        ),
        &values,
    );
    start_proxy(&config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_tls_is_verified() {
    let pki = pki();
    let leaf = pki.ca.issue(pki.dir.path(), "backend", &["backend.test"]);
    let (backend, task) = tls_backend(&leaf).await;
    let c = client();

    for protocol in ["http1", "http2"] {
        let (_proxy, addr) = proxy_to_tls_backend(backend, &pki.ca.pem_path, protocol).await;
        let r = get(&c, addr, "/").await.unwrap();
        assert_eq!(r.status, 200, "{protocol}: {}", r.text());
        assert_eq!(r.text(), "tls-backend", "{protocol}");
    }

    // Trusting another CA: the backend's certificate does not verify.
    let other_dir = tempfile::tempdir().unwrap();
    let other_ca = TestCa::new(other_dir.path(), "other");
    let (_proxy, addr) = proxy_to_tls_backend(backend, &other_ca.pem_path, "http1").await;
    let r = get(&c, addr, "/").await.unwrap();
    assert_eq!(r.status, 502, "{}", r.text());
    task.abort();
}

//! End-to-end handshakes against configs built by this crate.

mod common;

use std::sync::Arc;

use common::{Ca, connect_ok, handshake, insecure, overwrite, trusting};
use rampart_tls::{
    CIPHER_SUITES, CertStore, ClientAuth, PROTOCOL_VERSIONS, ServerTlsSpec, TlsError,
    UpstreamTlsSpec, client_config, server_config,
};
use rustls::{ClientConfig, ProtocolVersion, RootCertStore, ServerConfig};

fn plain_server(store: Arc<CertStore>) -> Arc<ServerConfig> {
    server_config(&ServerTlsSpec::default(), store).unwrap()
}

#[tokio::test]
async fn each_sni_name_gets_its_own_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "test");
    let a = ca.issue(dir.path(), "a", &["a.example.com"]);
    let b = ca.issue(dir.path(), "b", &["b.example.com", "b2.example.com"]);
    // Server names come from the certificates' SANs.
    let store = CertStore::load(&[a.spec("a", &[]), b.spec("b", &[])], None).unwrap();
    let server = plain_server(store.clone());

    let seen = connect_ok(&server, trusting(&ca, &[]), "a.example.com").await;
    assert_eq!(seen.peer_leaf, a.der);
    let seen = connect_ok(&server, trusting(&ca, &[]), "b.example.com").await;
    assert_eq!(seen.peer_leaf, b.der);
    let seen = connect_ok(&server, trusting(&ca, &[]), "B2.Example.COM").await;
    assert_eq!(seen.peer_leaf, b.der);

    let infos = store.certificates();
    assert_eq!(infos[1].server_names, ["b.example.com", "b2.example.com"]);
    assert!(infos[0].is_default && !infos[1].is_default);
}

#[tokio::test]
async fn wildcard_matches_exactly_one_label() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "test");
    let fallback = ca.issue(dir.path(), "default", &["default.test"]);
    let wild = ca.issue(dir.path(), "wild", &["*.wild.test"]);
    let exact = ca.issue(dir.path(), "exact", &["x.wild.test"]);
    let store = CertStore::load(
        &[
            fallback.spec("default", &[]),
            wild.spec("wild", &["*.WILD.test"]),
            exact.spec("exact", &["x.wild.test"]),
        ],
        Some("default"),
    )
    .unwrap();
    let server = plain_server(store.clone());

    let seen = connect_ok(&server, trusting(&ca, &[]), "foo.wild.test").await;
    assert_eq!(seen.peer_leaf, wild.der);
    // An exact name beats the wildcard.
    let seen = connect_ok(&server, trusting(&ca, &[]), "x.wild.test").await;
    assert_eq!(seen.peer_leaf, exact.der);
    // Two labels in front, or none, do not match the wildcard.
    let seen = connect_ok(&server, insecure(), "a.b.wild.test").await;
    assert_eq!(seen.peer_leaf, fallback.der);
    assert_eq!(store.certificate_for(Some("wild.test")).name, "default");
    assert_eq!(store.certificate_for(Some("a.b.wild.test")).name, "default");
    assert_eq!(store.certificate_for(Some("Y.Wild.Test.")).name, "wild");
}

#[tokio::test]
async fn unknown_name_and_missing_sni_get_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "test");
    let a = ca.issue(dir.path(), "a", &["a.example.com"]);
    let fallback = ca.issue(
        dir.path(),
        "fallback",
        &["fallback.example.com", "127.0.0.1"],
    );
    let store = CertStore::load(
        &[a.spec("a", &[]), fallback.spec("fallback", &[])],
        Some("fallback"),
    )
    .unwrap();
    assert_eq!(store.default_name(), "fallback");
    // The IP SAN is not taken as a server name.
    assert_eq!(
        store.certificates()[1].server_names,
        ["fallback.example.com"]
    );
    let server = plain_server(store);

    let seen = connect_ok(&server, insecure(), "unknown.example.org").await;
    assert_eq!(seen.peer_leaf, fallback.der);

    // Connecting to an IP address sends no SNI.
    let (s, c) = handshake(server.clone(), trusting(&ca, &[]), "127.0.0.1").await;
    assert_eq!(s.unwrap().sni, None);
    assert_eq!(c.unwrap().peer_leaf, fallback.der);

    // A client with SNI switched off, for a name that would otherwise match `a`.
    let mut no_sni = (*trusting(&ca, &[])).clone();
    no_sni.enable_sni = false;
    let (s, c) = handshake(server.clone(), Arc::new(no_sni), "127.0.0.1").await;
    assert_eq!(s.unwrap().sni, None);
    assert_eq!(c.unwrap().peer_leaf, fallback.der);
}

#[tokio::test]
async fn only_tls12_and_tls13_with_aead_suites() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "test");
    let a = ca.issue(dir.path(), "a", &["a.example.com"]);
    let store = CertStore::load(&[a.spec("a", &[])], None).unwrap();
    let server = plain_server(store);

    let versions: Vec<_> = PROTOCOL_VERSIONS.iter().map(|v| v.version).collect();
    assert_eq!(
        versions,
        [ProtocolVersion::TLSv1_3, ProtocolVersion::TLSv1_2]
    );
    for config_suites in [
        &server.crypto_provider().cipher_suites,
        &insecure().crypto_provider().cipher_suites,
    ] {
        assert_eq!(config_suites.as_slice(), CIPHER_SUITES);
        for suite in config_suites.iter() {
            let v = suite.version().version;
            assert!(v == ProtocolVersion::TLSv1_2 || v == ProtocolVersion::TLSv1_3);
            let name = format!("{:?}", suite.suite());
            assert!(
                name.contains("GCM") || name.contains("CHACHA20_POLY1305"),
                "{name}"
            );
            assert!(!name.contains("CBC"), "{name}");
            if v == ProtocolVersion::TLSv1_2 {
                assert!(name.starts_with("TLS_ECDHE_"), "{name}");
            }
        }
    }

    let mut roots = RootCertStore::empty();
    roots.add(ca_der(&ca)).unwrap();
    let roots = Arc::new(roots);
    for (version, expect) in [
        (&rustls::version::TLS12, ProtocolVersion::TLSv1_2),
        (&rustls::version::TLS13, ProtocolVersion::TLSv1_3),
    ] {
        let client =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_protocol_versions(&[version])
                .unwrap()
                .with_root_certificates(roots.clone())
                .with_no_client_auth();
        let seen = connect_ok(&server, Arc::new(client), "a.example.com").await;
        assert_eq!(seen.version, expect);
        assert!(CIPHER_SUITES.iter().any(|s| s.suite() == seen.suite));
    }
}

fn ca_der(ca: &Ca) -> rustls::pki_types::CertificateDer<'static> {
    rampart_tls::load_certs(&ca.pem_path).unwrap().remove(0)
}

#[tokio::test]
async fn alpn_prefers_h2_when_offered() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "test");
    let a = ca.issue(dir.path(), "a", &["a.example.com"]);
    let store = CertStore::load(&[a.spec("a", &[])], None).unwrap();
    let spec = ServerTlsSpec {
        alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        ..Default::default()
    };
    let server = server_config(&spec, store).unwrap();

    let seen = connect_ok(
        &server,
        trusting(&ca, &[b"http/1.1", b"h2"]),
        "a.example.com",
    )
    .await;
    assert_eq!(seen.alpn.as_deref(), Some(&b"h2"[..]));
    let seen = connect_ok(&server, trusting(&ca, &[b"http/1.1"]), "a.example.com").await;
    assert_eq!(seen.alpn.as_deref(), Some(&b"http/1.1"[..]));
    let seen = connect_ok(&server, trusting(&ca, &[]), "a.example.com").await;
    assert_eq!(seen.alpn, None);
}

#[tokio::test]
async fn hot_reload_serves_new_certificate_and_survives_broken_files() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "test");
    let old = ca.issue(dir.path(), "site", &["site.example.com"]);
    let other = ca.issue(dir.path(), "other", &["other.example.com"]);
    let store = CertStore::load(&[old.spec("site", &[]), other.spec("other", &[])], None).unwrap();
    let server = plain_server(store.clone());
    assert!(!store.reload_if_changed().unwrap());

    let seen = connect_ok(&server, trusting(&ca, &[]), "site.example.com").await;
    assert_eq!(seen.peer_leaf, old.der);
    let old_fp = store.certificates()[0].fingerprint_sha256.clone();

    // Replace certificate and key; the new certificate also adds a name.
    let new = ca.make(&["site.example.com", "www.site.example.com"]);
    overwrite(&old.key_path, new.key_pem.as_bytes());
    overwrite(&old.cert_path, new.cert_pem.as_bytes());
    assert!(store.reload_if_changed().unwrap());
    assert!(!store.reload_if_changed().unwrap());
    let infos = store.certificates();
    assert_ne!(infos[0].fingerprint_sha256, old_fp);
    assert_eq!(
        infos[0].server_names,
        ["site.example.com", "www.site.example.com"]
    );
    let seen = connect_ok(&server, trusting(&ca, &[]), "site.example.com").await;
    assert_eq!(seen.peer_leaf, new.der);
    let seen = connect_ok(&server, trusting(&ca, &[]), "www.site.example.com").await;
    assert_eq!(seen.peer_leaf, new.der);

    // A garbage certificate file: error naming it, old certificate kept.
    overwrite(&old.cert_path, b"this is not PEM\n");
    let err = store.reload_if_changed().unwrap_err();
    assert!(
        err.to_string().contains(&*old.cert_path.to_string_lossy()),
        "{err}"
    );
    let seen = connect_ok(&server, trusting(&ca, &[]), "site.example.com").await;
    assert_eq!(seen.peer_leaf, new.der);
    // Still broken: still an error (nothing was recorded).
    assert!(store.reload_if_changed().is_err());

    // A certificate whose key was not replaced yet: mismatch, old certificate kept.
    let newer = ca.make(&["site.example.com"]);
    overwrite(&old.cert_path, newer.cert_pem.as_bytes());
    let err = store.reload_if_changed().unwrap_err();
    assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err:?}");
    let seen = connect_ok(&server, trusting(&ca, &[]), "site.example.com").await;
    assert_eq!(seen.peer_leaf, new.der);

    // The key arrives: the pair is complete and is swapped in.
    overwrite(&old.key_path, newer.key_pem.as_bytes());
    assert!(store.reload_if_changed().unwrap());
    let seen = connect_ok(&server, trusting(&ca, &[]), "site.example.com").await;
    assert_eq!(seen.peer_leaf, newer.der);

    // A deleted file is an error too, and the other certificate was never disturbed.
    std::fs::remove_file(&old.key_path).unwrap();
    let err = store.reload_if_changed().unwrap_err();
    assert!(matches!(err, TlsError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains(&*old.key_path.to_string_lossy()));
    let seen = connect_ok(&server, trusting(&ca, &[]), "site.example.com").await;
    assert_eq!(seen.peer_leaf, newer.der);
    let seen = connect_ok(&server, trusting(&ca, &[]), "other.example.com").await;
    assert_eq!(seen.peer_leaf, other.der);
}

fn client_with_cert(ca: &Ca, cert: Option<&common::Leaf>) -> Arc<ClientConfig> {
    client_config(&UpstreamTlsSpec {
        verify: true,
        ca_path: Some(ca.pem_path.clone()),
        client_cert: cert.map(|l| (l.cert_path.clone(), l.key_path.clone())),
        alpn: vec![],
    })
    .unwrap()
}

#[tokio::test]
async fn mtls_required_and_optional() {
    let dir = tempfile::tempdir().unwrap();
    let server_ca = Ca::new(dir.path(), "server");
    let client_ca = Ca::new(dir.path(), "clients");
    let rogue_ca = Ca::new(dir.path(), "rogue");
    let site = server_ca.issue(dir.path(), "site", &["site.example.com"]);
    let good = client_ca.issue(dir.path(), "good-client", &["client.example.com"]);
    let rogue = rogue_ca.issue(dir.path(), "rogue-client", &["client.example.com"]);
    let store = CertStore::load(&[site.spec("site", &[])], None).unwrap();

    let required = server_config(
        &ServerTlsSpec {
            client_auth: ClientAuth::Required {
                ca_path: client_ca.pem_path.clone(),
            },
            ..Default::default()
        },
        store.clone(),
    )
    .unwrap();
    let optional = server_config(
        &ServerTlsSpec {
            client_auth: ClientAuth::Optional {
                ca_path: client_ca.pem_path.clone(),
            },
            ..Default::default()
        },
        store.clone(),
    )
    .unwrap();
    let name = "site.example.com";

    // Required: no certificate or a foreign certificate is refused, a CA-signed one accepted.
    let (s, c) = handshake(required.clone(), client_with_cert(&server_ca, None), name).await;
    assert!(s.is_err() && c.is_err(), "{s:?} {c:?}");
    let (s, c) = handshake(
        required.clone(),
        client_with_cert(&server_ca, Some(&rogue)),
        name,
    )
    .await;
    assert!(s.is_err() && c.is_err(), "{s:?} {c:?}");
    let (s, c) = handshake(
        required.clone(),
        client_with_cert(&server_ca, Some(&good)),
        name,
    )
    .await;
    assert!(s.unwrap().client_cert_presented);
    c.unwrap();

    // Optional: both anonymous and CA-signed clients get in, foreign certificates do not.
    let (s, c) = handshake(optional.clone(), client_with_cert(&server_ca, None), name).await;
    assert!(!s.unwrap().client_cert_presented);
    c.unwrap();
    let (s, c) = handshake(
        optional.clone(),
        client_with_cert(&server_ca, Some(&good)),
        name,
    )
    .await;
    assert!(s.unwrap().client_cert_presented);
    c.unwrap();
    let (s, _) = handshake(
        optional.clone(),
        client_with_cert(&server_ca, Some(&rogue)),
        name,
    )
    .await;
    assert!(s.is_err());

    // A broken CA file is reported with its path.
    let bad_ca = dir.path().join("bad-ca.pem");
    std::fs::write(&bad_ca, "").unwrap();
    let err = server_config(
        &ServerTlsSpec {
            client_auth: ClientAuth::Required {
                ca_path: bad_ca.clone(),
            },
            ..Default::default()
        },
        store,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains(&*bad_ca.to_string_lossy()),
        "{err}"
    );
}

#[tokio::test]
async fn upstream_config_verifies_against_its_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "upstream");
    let wrong = Ca::new(dir.path(), "wrong");
    let site = ca.issue(dir.path(), "site", &["backend.internal"]);
    let store = CertStore::load(&[site.spec("site", &[])], None).unwrap();
    let server = plain_server(store);

    let seen = connect_ok(&server, trusting(&ca, &[]), "backend.internal").await;
    assert_eq!(seen.peer_leaf, site.der);

    let (_, c) = handshake(server.clone(), trusting(&wrong, &[]), "backend.internal").await;
    let err = c.unwrap_err().to_string();
    assert!(
        err.contains("UnknownIssuer") || err.contains("issuer"),
        "{err}"
    );

    // Right CA, wrong host name.
    let (_, c) = handshake(server.clone(), trusting(&ca, &[]), "other.internal").await;
    assert!(c.is_err());

    // verify = false accepts anything.
    let seen = connect_ok(&server, insecure(), "other.internal").await;
    assert_eq!(seen.peer_leaf, site.der);
}

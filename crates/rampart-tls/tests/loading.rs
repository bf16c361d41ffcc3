//! Loading certificates and keys, and the errors for broken inputs.

mod common;

use std::time::{Duration, SystemTime};

use common::Ca;
use rampart_tls::{
    CertSpec, CertStore, TlsError, UpstreamTlsSpec, client_config, load_certs, load_key,
};

fn contains_path(err: &TlsError, path: &std::path::Path) -> bool {
    err.to_string().contains(&*path.to_string_lossy())
}

#[test]
fn certificate_info_reports_expiry_names_and_fingerprint() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "test");
    let leaf = ca.issue(dir.path(), "a", &["a.example.com", "*.a.example.com"]);
    let store = CertStore::load(&[leaf.spec("a", &[])], None).unwrap();
    let info = &store.certificates()[0];
    assert_eq!(info.name, "a");
    assert_eq!(info.server_names, ["a.example.com", "*.a.example.com"]);
    assert_eq!(
        info.not_after,
        Some(SystemTime::UNIX_EPOCH + Duration::from_secs(leaf.not_after_unix as u64))
    );
    let digest = ring::digest::digest(&ring::digest::SHA256, &leaf.der);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(info.fingerprint_sha256, hex);
    assert_eq!(info.cert_path, leaf.cert_path);

    // Configured names replace the SANs.
    let store = CertStore::load(&[leaf.spec("a", &["Other.Example.com."])], None).unwrap();
    assert_eq!(store.certificates()[0].server_names, ["other.example.com"]);
}

#[test]
fn chain_files_keep_every_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "test");
    let leaf = ca.issue(dir.path(), "a", &["a.example.com"]);
    let chain = dir.path().join("chain.pem");
    let ca_pem = std::fs::read_to_string(&ca.pem_path).unwrap();
    std::fs::write(&chain, format!("{}{}", leaf.cert_pem, ca_pem)).unwrap();
    let certs = load_certs(&chain).unwrap();
    assert_eq!(certs.len(), 2);
    assert_eq!(certs[0], leaf.der);
    // A combined file (certificate then key) works for both.
    let combined = dir.path().join("combined.pem");
    std::fs::write(&combined, format!("{}{}", leaf.cert_pem, leaf.key_pem)).unwrap();
    assert_eq!(load_certs(&combined).unwrap().len(), 1);
    assert!(matches!(
        load_key(&combined).unwrap(),
        rampart_tls::PrivateKeyDer::Pkcs8(_)
    ));
}

#[test]
fn file_errors_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "test");
    let leaf = ca.issue(dir.path(), "a", &["a.example.com"]);

    let missing = dir.path().join("missing.pem");
    let err = load_certs(&missing).unwrap_err();
    assert!(
        matches!(err, TlsError::Io { .. }) && contains_path(&err, &missing),
        "{err}"
    );
    let err = load_key(&missing).unwrap_err();
    assert!(
        matches!(err, TlsError::Io { .. }) && contains_path(&err, &missing),
        "{err}"
    );

    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let err = load_certs(&empty).unwrap_err();
    assert!(matches!(err, TlsError::NoCertificates { .. }) && contains_path(&err, &empty));

    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, [0u8, 159, 146, 150, 1, 2, 3]).unwrap();
    let err = load_certs(&garbage).unwrap_err();
    assert!(contains_path(&err, &garbage), "{err}");
    let err = load_key(&garbage).unwrap_err();
    assert!(matches!(err, TlsError::NoPrivateKey { .. }) && contains_path(&err, &garbage));

    // A certificate file given as key and vice versa.
    let err = load_key(&leaf.cert_path).unwrap_err();
    assert!(matches!(err, TlsError::NoPrivateKey { .. }) && contains_path(&err, &leaf.cert_path));
    let err = load_certs(&leaf.key_path).unwrap_err();
    assert!(matches!(err, TlsError::NoCertificates { .. }) && contains_path(&err, &leaf.key_path));

    // A key section whose contents are not a key.
    let bad_key = dir.path().join("bad.key");
    std::fs::write(
        &bad_key,
        "-----BEGIN PRIVATE KEY-----\nAQIDBA==\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let spec = CertSpec {
        name: "a".into(),
        cert_path: leaf.cert_path.clone(),
        key_path: bad_key.clone(),
        server_names: vec![],
    };
    let err = CertStore::load(&[spec], None).unwrap_err();
    assert!(
        matches!(err, TlsError::InvalidKey { .. }) && contains_path(&err, &bad_key),
        "{err}"
    );
}

#[test]
fn key_mismatch_is_detected_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "test");
    let a = ca.issue(dir.path(), "a", &["a.example.com"]);
    let b = ca.issue(dir.path(), "b", &["b.example.com"]);
    let spec = CertSpec {
        name: "mixed".into(),
        cert_path: a.cert_path.clone(),
        key_path: b.key_path.clone(),
        server_names: vec![],
    };
    let err = CertStore::load(&[spec], None).unwrap_err();
    assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err:?}");
    assert!(
        contains_path(&err, &a.cert_path) && contains_path(&err, &b.key_path),
        "{err}"
    );

    // Same for an upstream client certificate.
    let err = client_config(&UpstreamTlsSpec {
        client_cert: Some((a.cert_path.clone(), b.key_path.clone())),
        ca_path: Some(ca.pem_path.clone()),
        ..Default::default()
    })
    .unwrap_err();
    assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err:?}");
}

#[test]
fn all_errors_are_collected() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "test");
    let good = ca.issue(dir.path(), "good", &["good.example.com"]);
    let missing_cert = dir.path().join("nope.crt");
    let missing_key = dir.path().join("nope.key");
    let garbage = dir.path().join("garbage.crt");
    std::fs::write(&garbage, "garbage").unwrap();
    let specs = [
        good.spec("good", &[]),
        CertSpec {
            name: "missing".into(),
            cert_path: missing_cert.clone(),
            key_path: missing_key.clone(),
            server_names: vec![],
        },
        CertSpec {
            name: "garbage".into(),
            cert_path: garbage.clone(),
            key_path: good.key_path.clone(),
            server_names: vec!["bad*name.example.com".into()],
        },
        good.spec("good", &[]),
    ];
    let err = CertStore::load(&specs, Some("absent")).unwrap_err();
    let errors = err.errors();
    let text = err.to_string();
    assert!(contains_path(&err, &missing_cert), "{text}");
    assert!(contains_path(&err, &missing_key), "{text}");
    assert!(contains_path(&err, &garbage), "{text}");
    assert!(
        errors
            .iter()
            .any(|e| matches!(e, TlsError::DuplicateName { name } if name == "good"))
    );
    assert!(
        errors
            .iter()
            .any(|e| matches!(e, TlsError::UnknownDefault { name } if name == "absent"))
    );
    assert!(
        errors
            .iter()
            .any(|e| matches!(e, TlsError::InvalidServerName { .. }))
    );
    assert_eq!(errors.len(), 6, "{text}");

    assert!(matches!(
        CertStore::load(&[], None).unwrap_err(),
        TlsError::NoCertificatesConfigured
    ));
}

#[test]
fn upstream_ca_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("ca.pem");
    let err = client_config(&UpstreamTlsSpec {
        ca_path: Some(missing.clone()),
        ..Default::default()
    })
    .unwrap_err();
    assert!(contains_path(&err, &missing), "{err}");

    // verify = false needs no CA at all.
    client_config(&UpstreamTlsSpec {
        verify: false,
        ca_path: Some(missing),
        ..Default::default()
    })
    .unwrap();
}

//! Shared helpers: a throw-away CA issuing leaf certificates into a temp dir,
//! and an in-memory TLS handshake.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rampart_tls::{CertSpec, CertificateDer};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
    pub pem_path: PathBuf,
}

pub struct Leaf {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
    pub not_after_unix: i64,
}

impl Leaf {
    pub fn spec(&self, name: &str, server_names: &[&str]) -> CertSpec {
        CertSpec {
            name: name.to_string(),
            cert_path: self.cert_path.clone(),
            key_path: self.key_path.clone(),
            server_names: server_names.iter().map(|s| s.to_string()).collect(),
        }
    }
}

impl Ca {
    pub fn new(dir: &Path, name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        let pem_path = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&pem_path, cert.pem()).unwrap();
        Ca {
            cert,
            key,
            pem_path,
        }
    }

    /// Issues a leaf for `sans` and writes `<stem>.crt` / `<stem>.key` in `dir`.
    pub fn issue(&self, dir: &Path, stem: &str, sans: &[&str]) -> Leaf {
        let leaf = self.make(sans);
        let cert_path = dir.join(format!("{stem}.crt"));
        let key_path = dir.join(format!("{stem}.key"));
        std::fs::write(&cert_path, &leaf.cert_pem).unwrap();
        std::fs::write(&key_path, &leaf.key_pem).unwrap();
        Leaf {
            cert_path,
            key_path,
            ..leaf
        }
    }

    /// Issues a leaf without writing it anywhere (paths are empty).
    pub fn make(&self, sans: &[&str]) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, sans.first().copied().unwrap_or("leaf"));
        params.not_after = rcgen::date_time_ymd(2031, 5, 6);
        let not_after_unix = params.not_after.unix_timestamp();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Leaf {
            cert_path: PathBuf::new(),
            key_path: PathBuf::new(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
            not_after_unix,
        }
    }
}

/// Writes `contents` to `path` and moves its modification time forward, so
/// the change is visible even on file systems with coarse timestamps.
pub fn overwrite(path: &Path, contents: &[u8]) {
    let before = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    std::fs::write(path, contents).unwrap();
    if let Some(before) = before {
        let file = std::fs::File::options().write(true).open(path).unwrap();
        file.set_modified(before + Duration::from_secs(3)).unwrap();
    }
}

/// A client config trusting only `ca` (built by the crate under test).
pub fn trusting(ca: &Ca, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    rampart_tls::client_config(&rampart_tls::UpstreamTlsSpec {
        verify: true,
        ca_path: Some(ca.pem_path.clone()),
        client_cert: None,
        alpn: alpn.iter().map(|p| p.to_vec()).collect(),
    })
    .unwrap()
}

/// A client config that accepts any server certificate.
pub fn insecure() -> Arc<ClientConfig> {
    rampart_tls::client_config(&rampart_tls::UpstreamTlsSpec {
        verify: false,
        ..Default::default()
    })
    .unwrap()
}

/// What the client saw.
#[derive(Debug)]
pub struct ClientView {
    pub peer_leaf: CertificateDer<'static>,
    pub alpn: Option<Vec<u8>>,
    pub version: rustls::ProtocolVersion,
    pub suite: rustls::CipherSuite,
}

/// What the server saw.
#[derive(Debug)]
pub struct ServerView {
    pub sni: Option<String>,
    pub client_cert_presented: bool,
}

/// Runs a full handshake plus one request/response exchange over an in-memory pipe.
pub async fn handshake(
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    name: &str,
) -> (std::io::Result<ServerView>, std::io::Result<ClientView>) {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let acceptor = tokio_rustls::TlsAcceptor::from(server);
    let connector = tokio_rustls::TlsConnector::from(client);
    let server_name = ServerName::try_from(name.to_string()).unwrap();

    let server_side = async move {
        let mut tls = acceptor.accept(server_io).await?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await?;
        assert_eq!(&buf, b"ping");
        tls.write_all(b"pong").await?;
        tls.shutdown().await?;
        let (_, conn) = tls.get_ref();
        Ok(ServerView {
            sni: conn.server_name().map(str::to_string),
            client_cert_presented: conn.peer_certificates().is_some_and(|c| !c.is_empty()),
        })
    };
    let client_side = async move {
        let mut tls = connector.connect(server_name, client_io).await?;
        tls.write_all(b"ping").await?;
        tls.flush().await?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await?;
        assert_eq!(&buf, b"pong");
        let (_, conn) = tls.get_ref();
        Ok(ClientView {
            peer_leaf: conn.peer_certificates().expect("server certificate")[0].clone(),
            alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
            version: conn.protocol_version().expect("version"),
            suite: conn.negotiated_cipher_suite().expect("suite").suite(),
        })
    };
    let both = async { tokio::join!(server_side, client_side) };
    tokio::time::timeout(Duration::from_secs(20), both)
        .await
        .expect("handshake timed out")
}

/// Handshake that must succeed; returns the client's view.
pub async fn connect_ok(
    server: &Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    name: &str,
) -> ClientView {
    let (s, c) = handshake(Arc::clone(server), client, name).await;
    s.expect("server side of handshake");
    c.expect("client side of handshake")
}

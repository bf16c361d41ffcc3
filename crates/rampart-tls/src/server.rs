//! Server-side (TLS termination) configuration.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;

use crate::client::load_root_store;
use crate::error::TlsError;
use crate::provider::{PROTOCOL_VERSIONS, crypto_provider};
use crate::store::{CertSpec, CertStore};

/// Client-certificate (mTLS) policy of a listener.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ClientAuth {
    /// Do not ask clients for a certificate.
    #[default]
    None,
    /// Ask for a certificate; clients without one are accepted, clients with
    /// one must present a certificate chaining to a CA in `ca_path`.
    Optional {
        /// PEM bundle of trusted client CAs.
        ca_path: PathBuf,
    },
    /// Every client must present a certificate chaining to a CA in `ca_path`.
    Required {
        /// PEM bundle of trusted client CAs.
        ca_path: PathBuf,
    },
}

/// TLS settings of a listener.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerTlsSpec {
    /// Certificates to serve, selected by SNI.
    pub certificates: Vec<CertSpec>,
    /// Name of the certificate used without SNI or when nothing matches;
    /// `None` means the first certificate.
    pub default_certificate: Option<String>,
    /// Client-certificate policy.
    pub client_auth: ClientAuth,
    /// ALPN protocols in server preference order, e.g. `[b"h2", b"http/1.1"]`.
    /// Empty: no ALPN.
    pub alpn: Vec<Vec<u8>>,
}

impl ServerTlsSpec {
    /// Loads this spec's certificates into a new [`CertStore`].
    pub fn load_store(&self) -> Result<Arc<CertStore>, TlsError> {
        CertStore::load(&self.certificates, self.default_certificate.as_deref())
    }
}

/// Builds the rustls server config of a listener around a live [`CertStore`].
///
/// The returned config keeps a reference to `store`, so certificates swapped
/// in by [`CertStore::reload_if_changed`] are used by later handshakes without
/// rebuilding the config. The client CA bundle (for [`ClientAuth`]) is read
/// here, once; to pick up a changed CA bundle, build a new config.
///
/// `spec.certificates` and `spec.default_certificate` are not used here; see
/// [`ServerTlsSpec::load_store`].
pub fn server_config(
    spec: &ServerTlsSpec,
    store: Arc<CertStore>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = crypto_provider();
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(PROTOCOL_VERSIONS)?;
    let builder = match &spec.client_auth {
        ClientAuth::None => builder.with_no_client_auth(),
        ClientAuth::Optional { ca_path } => {
            builder.with_client_cert_verifier(client_verifier(ca_path, false)?)
        }
        ClientAuth::Required { ca_path } => {
            builder.with_client_cert_verifier(client_verifier(ca_path, true)?)
        }
    };
    let mut config = builder.with_cert_resolver(store);
    config.alpn_protocols = spec.alpn.clone();
    Ok(Arc::new(config))
}

fn client_verifier(
    ca_path: &Path,
    required: bool,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let roots = Arc::new(load_root_store(ca_path)?);
    let mut builder = WebPkiClientVerifier::builder_with_provider(roots, crypto_provider());
    if !required {
        builder = builder.allow_unauthenticated();
    }
    builder.build().map_err(|e| TlsError::InvalidCa {
        path: ca_path.to_path_buf(),
        reason: e.to_string(),
    })
}

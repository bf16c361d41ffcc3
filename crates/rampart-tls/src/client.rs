//! Client-side configuration for TLS to upstream servers.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::SingleCertAndKey;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::error::TlsError;
use crate::pem;
use crate::provider::{PROTOCOL_VERSIONS, crypto_provider};
use crate::store::load_certified_key;

/// TLS settings for connections to an upstream server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTlsSpec {
    /// Verify the upstream's certificate chain and host name.
    ///
    /// **Danger:** `false` accepts *any* certificate for *any* name (only the
    /// handshake signature is still checked against the presented key), so
    /// the connection is encrypted but not authenticated and anyone on the
    /// network path can impersonate the upstream. Use only for testing or on
    /// links that are otherwise trusted. `ca_path` is ignored in that case.
    pub verify: bool,
    /// PEM bundle of CAs to trust. `None`: the operating system's trust store
    /// (read once per process and then shared).
    pub ca_path: Option<PathBuf>,
    /// Client certificate chain and key files to present (mTLS), if any.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// ALPN protocols to offer, e.g. `[b"h2", b"http/1.1"]`. Empty: no ALPN.
    pub alpn: Vec<Vec<u8>>,
}

impl Default for UpstreamTlsSpec {
    fn default() -> Self {
        UpstreamTlsSpec {
            verify: true,
            ca_path: None,
            client_cert: None,
            alpn: Vec::new(),
        }
    }
}

/// Builds the rustls client config for connecting to an upstream.
///
/// The caller picks the [`ServerName`] per connection; it is used for SNI
/// and, when verifying, for the host name check.
pub fn client_config(spec: &UpstreamTlsSpec) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = crypto_provider();
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(PROTOCOL_VERSIONS)?;
    let builder = if spec.verify {
        let roots = match &spec.ca_path {
            Some(path) => Arc::new(load_root_store(path)?),
            None => system_roots()?,
        };
        let verifier = WebPkiServerVerifier::builder_with_provider(roots, Arc::clone(&provider))
            .build()
            .map_err(|e| match &spec.ca_path {
                Some(path) => TlsError::InvalidCa {
                    path: path.clone(),
                    reason: e.to_string(),
                },
                None => TlsError::SystemRoots {
                    reason: e.to_string(),
                },
            })?;
        builder.with_webpki_verifier(verifier)
    } else {
        tracing::warn!("upstream TLS certificate verification is disabled");
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert { provider }))
    };
    let mut config = match &spec.client_cert {
        None => builder.with_no_client_auth(),
        Some((cert_path, key_path)) => {
            let certified = load_certified_key(cert_path, key_path, &crypto_provider())
                .map_err(TlsError::combine)?;
            builder.with_client_cert_resolver(Arc::new(SingleCertAndKey::from(certified)))
        }
    };
    config.alpn_protocols = spec.alpn.clone();
    Ok(Arc::new(config))
}

/// Reads a PEM CA bundle into a trust store; every certificate must be usable.
pub(crate) fn load_root_store(path: &Path) -> Result<RootCertStore, TlsError> {
    let certs = pem::load_certs(path)?;
    let total = certs.len();
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(certs);
    if ignored > 0 || added == 0 {
        return Err(TlsError::InvalidCa {
            path: path.to_path_buf(),
            reason: format!("{ignored} of {total} certificates cannot be used as trust anchors"),
        });
    }
    Ok(roots)
}

/// The operating system's trust store, loaded on first use.
fn system_roots() -> Result<Arc<RootCertStore>, TlsError> {
    static ROOTS: OnceLock<Result<Arc<RootCertStore>, String>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let result = rustls_native_certs::load_native_certs();
            for err in &result.errors {
                tracing::warn!(error = %err, "problem reading system root certificates");
            }
            let mut roots = RootCertStore::empty();
            let (added, ignored) = roots.add_parsable_certificates(result.certs);
            if ignored > 0 {
                tracing::warn!(ignored, "some system root certificates are unusable");
            }
            if added == 0 {
                let detail = result
                    .errors
                    .first()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default();
                return Err(format!("no usable root certificates found{detail}"));
            }
            tracing::debug!(count = added, "loaded system root certificates");
            Ok(Arc::new(roots))
        })
        .clone()
        .map_err(|reason| TlsError::SystemRoots { reason })
}

/// Accepts any server certificate; see [`UpstreamTlsSpec::verify`].
#[derive(Debug)]
struct AcceptAnyServerCert {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

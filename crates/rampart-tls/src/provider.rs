//! The crypto provider and protocol parameters shared by server and client configs.

use std::sync::{Arc, OnceLock};

use rustls::SupportedCipherSuite;
use rustls::SupportedProtocolVersion;
use rustls::crypto::CryptoProvider;
use rustls::crypto::ring::cipher_suite as cs;

/// Protocol versions enabled for every config built by this crate: TLS 1.3 and TLS 1.2.
pub static PROTOCOL_VERSIONS: &[&SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// Cipher suites enabled for every config built by this crate, in preference order.
///
/// TLS 1.3 suites, then TLS 1.2 ECDHE suites with AES-GCM or CHACHA20-POLY1305.
/// No CBC suites and no static-RSA key exchange.
pub static CIPHER_SUITES: &[SupportedCipherSuite] = &[
    cs::TLS13_AES_256_GCM_SHA384,
    cs::TLS13_AES_128_GCM_SHA256,
    cs::TLS13_CHACHA20_POLY1305_SHA256,
    cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
];

/// The *ring* crypto provider restricted to [`CIPHER_SUITES`].
///
/// Built once and shared; this crate never installs or relies on a
/// process-wide default provider.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| {
            let mut provider = rustls::crypto::ring::default_provider();
            provider.cipher_suites = CIPHER_SUITES.to_vec();
            Arc::new(provider)
        })
        .clone()
}

//! TLS support for Rampart: certificate loading and rustls configuration.
//!
//! This crate covers everything Rampart needs to terminate and originate TLS:
//!
//! * **Server side** — [`CertStore`] holds several certificates and picks one
//!   per connection by SNI: an exact (case-insensitive) name first, then a
//!   wildcard such as `*.example.com` (which matches exactly one extra label),
//!   then the default certificate. Clients that send no SNI (for example
//!   because they connect to an IP address) get the default certificate.
//!   [`server_config`] builds a [`rustls::ServerConfig`] around a store, with
//!   ALPN and optional client-certificate verification (mTLS, see
//!   [`ClientAuth`]).
//! * **Hot reload** — [`CertStore::reload_if_changed`] re-reads certificate
//!   and key files whose modification time, size (or inode) changed and swaps
//!   the new set in atomically. Connections already established keep the
//!   certificate they negotiated; new handshakes see the new one. If any file
//!   is broken the old set stays in place.
//! * **Client side** — [`client_config`] builds a [`rustls::ClientConfig`] for
//!   TLS to upstream servers, trusting a CA file or the system roots, with an
//!   optional client certificate.
//!
//! Only TLS 1.2 and TLS 1.3 are enabled, with AEAD suites only (the TLS 1.3
//! suites plus TLS 1.2 ECDHE with AES-GCM or CHACHA20-POLY1305). The *ring*
//! crypto provider is always passed explicitly (see [`crypto_provider`]); the
//! process-wide default provider is never consulted.
//!
//! The crate does not watch files by itself: the caller decides when to call
//! [`CertStore::reload_if_changed`] (a timer, `SIGHUP`, an admin endpoint).
//! Resumed TLS sessions keep the certificate of their original handshake.
//!
//! ```no_run
//! use std::path::PathBuf;
//! use rampart_tls::{CertSpec, ClientAuth, ServerTlsSpec, server_config};
//!
//! let spec = ServerTlsSpec {
//!     certificates: vec![CertSpec {
//!         name: "main".into(),
//!         cert_path: PathBuf::from("/etc/rampart/main.crt"),
//!         key_path: PathBuf::from("/etc/rampart/main.key"),
//!         server_names: vec![], // take the DNS names from the certificate
//!     }],
//!     default_certificate: None,
//!     client_auth: ClientAuth::None,
//!     alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
//! };
//! let store = spec.load_store()?;
//! let config = server_config(&spec, store.clone())?; // hand to tokio_rustls::TlsAcceptor
//! // Later, e.g. every few seconds:
//! match store.reload_if_changed() {
//!     Ok(true) => println!("certificates reloaded"),
//!     Ok(false) => {}
//!     Err(e) => eprintln!("reload failed, keeping old certificates: {e}"),
//! }
//! # let _ = config;
//! # Ok::<(), rampart_tls::TlsError>(())
//! ```
//!
//! PEM helpers [`load_certs`] and [`load_key`] read certificate chains and
//! private keys (PKCS#8, PKCS#1 and SEC1). Every error is a [`TlsError`] that
//! names the file involved.
#![forbid(unsafe_code)]

mod client;
mod der;
mod error;
mod pem;
mod provider;
mod server;
mod store;

pub use client::{UpstreamTlsSpec, client_config};
pub use error::TlsError;
pub use pem::{load_certs, load_key};
pub use provider::{CIPHER_SUITES, PROTOCOL_VERSIONS, crypto_provider};
pub use server::{ClientAuth, ServerTlsSpec, server_config};
pub use store::{CertInfo, CertSpec, CertStore};

/// Re-exported so users need not depend on `rustls-pki-types` themselves.
pub use rustls::pki_types::{CertificateDer, PrivateKeyDer};

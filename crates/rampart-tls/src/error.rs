//! The crate's error type.

use std::fmt;
use std::path::PathBuf;

/// Everything that can go wrong while loading certificates or building TLS configs.
///
/// Variants about files always carry the path so the message can be shown to
/// an operator as is.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The file could not be opened, read or inspected.
    #[error("{}: cannot read file: {source}", path.display())]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid PEM (bad base64, unterminated section, ...).
    #[error("{}: invalid PEM: {reason}", path.display())]
    Pem {
        /// The file involved.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The file holds no `CERTIFICATE` PEM section (empty, not PEM, or only other sections).
    #[error("{}: no PEM certificate found (file is empty, not PEM, or has no CERTIFICATE section)", path.display())]
    NoCertificates {
        /// The file involved.
        path: PathBuf,
    },
    /// The file holds no private key PEM section (PKCS#8, PKCS#1 or SEC1).
    #[error("{}: no PEM private key found (expected PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)", path.display())]
    NoPrivateKey {
        /// The file involved.
        path: PathBuf,
    },
    /// A certificate in the file is not a well-formed X.509 certificate.
    #[error("{}: invalid certificate: {reason}", path.display())]
    InvalidCertificate {
        /// The file involved.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The private key is malformed or of an unsupported type.
    #[error("{}: unusable private key: {reason}", path.display())]
    InvalidKey {
        /// The file involved.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The private key does not belong to the leaf certificate.
    #[error("{}: private key does not match the certificate in {}", key_path.display(), cert_path.display())]
    KeyMismatch {
        /// The certificate file.
        cert_path: PathBuf,
        /// The key file.
        key_path: PathBuf,
    },
    /// A CA bundle used for verification could not be used.
    #[error("{}: unusable CA bundle: {reason}", path.display())]
    InvalidCa {
        /// The file involved.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The system trust store could not be loaded.
    #[error("cannot load system root certificates: {reason}")]
    SystemRoots {
        /// What is wrong.
        reason: String,
    },
    /// A configured server name is not a valid host name or wildcard.
    #[error("certificate '{certificate}': invalid server name '{server_name}': {reason}")]
    InvalidServerName {
        /// The certificate's configured name.
        certificate: String,
        /// The offending server name.
        server_name: String,
        /// What is wrong.
        reason: String,
    },
    /// Two certificates were given the same name.
    #[error("certificate name '{name}' is used more than once")]
    DuplicateName {
        /// The duplicated name.
        name: String,
    },
    /// The default certificate names no configured certificate.
    #[error("default certificate '{name}' is not among the configured certificates")]
    UnknownDefault {
        /// The requested default.
        name: String,
    },
    /// No certificates were configured for a server.
    #[error("no certificates configured")]
    NoCertificatesConfigured,
    /// rustls rejected the configuration.
    #[error("TLS configuration rejected: {0}")]
    Rustls(#[from] rustls::Error),
    /// Several errors at once (e.g. every broken file of a certificate set).
    #[error("{}", Multiple(.0))]
    Multiple(Vec<TlsError>),
}

impl TlsError {
    /// Combines a non-empty list of errors: one error stays as it is, more become [`TlsError::Multiple`].
    pub(crate) fn combine(mut errors: Vec<TlsError>) -> TlsError {
        if errors.len() == 1 {
            errors.pop().expect("one error")
        } else {
            TlsError::Multiple(errors)
        }
    }

    /// The individual errors: the members of [`TlsError::Multiple`], or just this error.
    pub fn errors(&self) -> Vec<&TlsError> {
        match self {
            TlsError::Multiple(list) => list.iter().flat_map(TlsError::errors).collect(),
            other => vec![other],
        }
    }
}

/// Display helper listing several errors, one per line.
struct Multiple<'a>(&'a [TlsError]);

impl fmt::Display for Multiple<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} TLS errors:", self.0.len())?;
        for e in self.0 {
            write!(f, "\n  - {e}")?;
        }
        Ok(())
    }
}

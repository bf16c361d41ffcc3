//! PEM file loading.

use std::path::Path;

use rustls::pki_types::pem::{self, PemObject, SectionKind};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::der;
use crate::error::TlsError;

/// Reads a whole file, naming it in the error.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn pem_error(path: &Path, err: pem::Error) -> TlsError {
    TlsError::Pem {
        path: path.to_path_buf(),
        reason: err.to_string(),
    }
}

/// Loads every `CERTIFICATE` section of a PEM file, leaf first.
///
/// Each certificate is checked to be a structurally valid X.509 certificate.
/// Other PEM sections (keys, parameters) are skipped. An empty result is an
/// error.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    parse_certs(path, &read_file(path)?)
}

pub(crate) fn parse_certs(
    path: &Path,
    data: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(data)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificates {
            path: path.to_path_buf(),
        });
    }
    for (i, cert) in certs.iter().enumerate() {
        der::parse_certificate(cert).map_err(|reason| TlsError::InvalidCertificate {
            path: path.to_path_buf(),
            reason: format!("certificate #{} in file: {reason}", i + 1),
        })?;
    }
    Ok(certs)
}

/// Loads the first private key of a PEM file: PKCS#8 (`PRIVATE KEY`),
/// PKCS#1 (`RSA PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`).
///
/// Whether the key is usable (supported algorithm, well formed) is checked
/// when it is paired with a certificate.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    parse_key(path, &read_file(path)?)
}

pub(crate) fn parse_key(path: &Path, data: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    for item in pem::SliceIter::<'_, (SectionKind, Vec<u8>)>::new(data) {
        let (kind, der) = item.map_err(|e| pem_error(path, e))?;
        if let Some(key) = PrivateKeyDer::from_pem(kind, der) {
            return Ok(key);
        }
    }
    Err(TlsError::NoPrivateKey {
        path: path.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_formats_are_recognised() {
        let path = Path::new("k.pem");
        let body = "AQIDBA==";
        for (label, expect) in [
            ("PRIVATE KEY", "pkcs8"),
            ("RSA PRIVATE KEY", "pkcs1"),
            ("EC PRIVATE KEY", "sec1"),
        ] {
            let text = format!(
                "junk line\n-----BEGIN CERTIFICATE-----\nAQID\n-----END CERTIFICATE-----\n\
                 -----BEGIN {label}-----\n{body}\n-----END {label}-----\n"
            );
            let key = parse_key(path, text.as_bytes()).unwrap();
            let got = match key {
                PrivateKeyDer::Pkcs8(_) => "pkcs8",
                PrivateKeyDer::Pkcs1(_) => "pkcs1",
                PrivateKeyDer::Sec1(_) => "sec1",
                _ => "other",
            };
            assert_eq!(got, expect);
            assert_eq!(key.secret_der(), &[1, 2, 3, 4]);
        }
    }

    #[test]
    fn missing_key_and_cert_name_the_file() {
        let path = Path::new("/etc/some/file.pem");
        let err = parse_key(path, b"").unwrap_err();
        assert!(matches!(err, TlsError::NoPrivateKey { .. }));
        assert!(err.to_string().contains("/etc/some/file.pem"));
        let err = parse_certs(path, b"hello world").unwrap_err();
        assert!(matches!(err, TlsError::NoCertificates { .. }));
        assert!(err.to_string().contains("/etc/some/file.pem"));
    }

    #[test]
    fn bad_base64_and_bad_der_are_errors() {
        let path = Path::new("c.pem");
        let text = "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        let err = parse_certs(path, text.as_bytes()).unwrap_err();
        assert!(matches!(err, TlsError::Pem { .. }), "{err:?}");
        let text = "-----BEGIN CERTIFICATE-----\nAQIDBA==\n-----END CERTIFICATE-----\n";
        let err = parse_certs(path, text.as_bytes()).unwrap_err();
        assert!(
            matches!(err, TlsError::InvalidCertificate { .. }),
            "{err:?}"
        );
        assert!(err.to_string().starts_with("c.pem: "));
    }
}

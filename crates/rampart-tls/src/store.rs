//! The live, hot-reloadable certificate set and its SNI resolver.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::SystemTime;

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::error::TlsError;
use crate::{der, pem, provider};

/// One certificate to serve: a PEM chain (leaf first) and its private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSpec {
    /// Unique name of this certificate (used for the default and in logs).
    pub name: String,
    /// PEM file with the leaf certificate followed by any intermediates.
    pub cert_path: PathBuf,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key_path: PathBuf,
    /// Host names this certificate answers for; `*.example.com` matches exactly
    /// one label in front of `example.com`. Empty: use the DNS names from the
    /// leaf certificate's subjectAltName extension (re-read on every reload).
    pub server_names: Vec<String>,
}

/// Facts about one loaded certificate, for status pages and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The certificate's configured name.
    pub name: String,
    /// Where the chain was read from.
    pub cert_path: PathBuf,
    /// Where the key was read from.
    pub key_path: PathBuf,
    /// Normalised (lower-case) names this certificate is selected for.
    pub server_names: Vec<String>,
    /// The leaf certificate's notAfter.
    pub not_after: Option<SystemTime>,
    /// SHA-256 of the leaf certificate's DER, lower-case hex without separators.
    pub fingerprint_sha256: String,
    /// Whether this is the default certificate (no SNI or no match).
    pub is_default: bool,
}

/// What identifies a version of a file on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    dev: u64,
    ino: u64,
}

fn stamp(path: &Path) -> Result<FileStamp, TlsError> {
    let meta = std::fs::metadata(path).map_err(|source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    #[cfg(unix)]
    let (dev, ino) = {
        use std::os::unix::fs::MetadataExt;
        (meta.dev(), meta.ino())
    };
    #[cfg(not(unix))]
    let (dev, ino) = (0, 0);
    Ok(FileStamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        dev,
        ino,
    })
}

/// One loaded certificate.
struct Entry {
    key: Arc<CertifiedKey>,
    info: CertInfo,
    cert_stamp: FileStamp,
    key_stamp: FileStamp,
}

/// An immutable certificate set; swapped as a whole on reload.
struct Snapshot {
    entries: Vec<Arc<Entry>>,
    by_name: HashMap<String, usize>,
    default: usize,
}

impl Snapshot {
    fn new(entries: Vec<Arc<Entry>>, default: usize) -> Snapshot {
        let mut by_name = HashMap::new();
        for (i, entry) in entries.iter().enumerate() {
            for name in &entry.info.server_names {
                if let Some(&first) = by_name.get(name) {
                    if first != i {
                        let first: &Arc<Entry> = &entries[first];
                        tracing::warn!(
                            server_name = %name,
                            used = %first.info.name,
                            ignored = %entry.info.name,
                            "server name claimed by two certificates; the first one wins"
                        );
                    }
                } else {
                    by_name.insert(name.clone(), i);
                }
            }
        }
        Snapshot {
            entries,
            by_name,
            default,
        }
    }

    fn select(&self, server_name: Option<&str>) -> &Arc<Entry> {
        let index = server_name
            .map(|n| n.trim_end_matches('.').to_ascii_lowercase())
            .and_then(|name| {
                self.by_name.get(&name).copied().or_else(|| {
                    let (_, parent) = name.split_once('.')?;
                    if parent.is_empty() {
                        return None;
                    }
                    self.by_name.get(&format!("*.{parent}")).copied()
                })
            })
            .unwrap_or(self.default);
        &self.entries[index]
    }
}

/// The live certificate set of a TLS listener.
///
/// It implements [`ResolvesServerCert`], choosing a certificate per handshake
/// by SNI: exact name, then wildcard (first label replaced by `*`), then the
/// default certificate. [`CertStore::reload_if_changed`] atomically replaces
/// the set; handshakes in progress keep the certificate they already chose.
pub struct CertStore {
    specs: Vec<CertSpec>,
    default: usize,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<Snapshot>>,
    reload_lock: Mutex<()>,
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertStore")
            .field(
                "certificates",
                &self
                    .specs
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("default", &self.specs[self.default].name)
            .finish()
    }
}

impl CertStore {
    /// Loads every certificate in `specs`.
    ///
    /// `default` names the certificate served when SNI is missing or matches
    /// nothing; `None` means the first one. All problems are collected and
    /// returned together (as [`TlsError::Multiple`] when there are several),
    /// each naming the file or certificate at fault.
    pub fn load(specs: &[CertSpec], default: Option<&str>) -> Result<Arc<CertStore>, TlsError> {
        if specs.is_empty() {
            return Err(TlsError::NoCertificatesConfigured);
        }
        let mut errors = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut reported = std::collections::HashSet::new();
        for spec in specs {
            if !seen.insert(spec.name.as_str()) && reported.insert(spec.name.as_str()) {
                errors.push(TlsError::DuplicateName {
                    name: spec.name.clone(),
                });
            }
        }
        let default_index = match default {
            None => 0,
            Some(name) => specs
                .iter()
                .position(|s| s.name == name)
                .unwrap_or_else(|| {
                    errors.push(TlsError::UnknownDefault {
                        name: name.to_string(),
                    });
                    0
                }),
        };
        let provider = provider::crypto_provider();
        let mut entries = Vec::with_capacity(specs.len());
        for (i, spec) in specs.iter().enumerate() {
            match load_entry(spec, &provider, i == default_index) {
                Ok(entry) => entries.push(Arc::new(entry)),
                Err(errs) => errors.extend(errs),
            }
        }
        if !errors.is_empty() {
            return Err(TlsError::combine(errors));
        }
        for entry in &entries {
            tracing::info!(
                certificate = %entry.info.name,
                server_names = ?entry.info.server_names,
                fingerprint = %entry.info.fingerprint_sha256,
                "loaded TLS certificate"
            );
        }
        Ok(Arc::new(CertStore {
            specs: specs.to_vec(),
            default: default_index,
            provider,
            current: RwLock::new(Arc::new(Snapshot::new(entries, default_index))),
            reload_lock: Mutex::new(()),
        }))
    }

    /// Re-reads the certificates whose certificate or key file changed
    /// (modification time, size or inode) since they were last loaded.
    ///
    /// * `Ok(false)`: nothing changed.
    /// * `Ok(true)`: every changed certificate parsed and matched its key; the
    ///   new set is now served to new handshakes.
    /// * `Err(_)`: some file is missing or broken (the error names it); the
    ///   previous set stays in use unchanged. Because nothing is recorded on
    ///   failure, the next call tries again, so a half-written pair of files is
    ///   picked up once both are complete.
    ///
    /// Calls are serialised; it is safe to call from several threads.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let _guard = self
            .reload_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let current = self.snapshot();
        let mut errors = Vec::new();
        let mut entries = Vec::with_capacity(self.specs.len());
        let mut reloaded = Vec::new();
        for (i, (spec, old)) in self.specs.iter().zip(&current.entries).enumerate() {
            match (stamp(&spec.cert_path), stamp(&spec.key_path)) {
                (Ok(c), Ok(k)) if c == old.cert_stamp && k == old.key_stamp => {
                    entries.push(Arc::clone(old));
                }
                (Ok(_), Ok(_)) => match load_entry(spec, &self.provider, i == self.default) {
                    Ok(entry) => {
                        reloaded.push(entry.info.clone());
                        entries.push(Arc::new(entry));
                    }
                    Err(errs) => errors.extend(errs),
                },
                (c, k) => errors.extend(c.err().into_iter().chain(k.err())),
            }
        }
        if !errors.is_empty() {
            let err = TlsError::combine(errors);
            tracing::warn!(error = %err, "TLS certificate reload failed; keeping the previous certificates");
            return Err(err);
        }
        if reloaded.is_empty() {
            return Ok(false);
        }
        for info in &reloaded {
            tracing::info!(
                certificate = %info.name,
                server_names = ?info.server_names,
                fingerprint = %info.fingerprint_sha256,
                "reloaded TLS certificate"
            );
        }
        let next = Arc::new(Snapshot::new(entries, self.default));
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = next;
        Ok(true)
    }

    /// Facts about every loaded certificate, in configuration order.
    pub fn certificates(&self) -> Vec<CertInfo> {
        self.snapshot()
            .entries
            .iter()
            .map(|e| e.info.clone())
            .collect()
    }

    /// The certificate that a handshake with this SNI value (or none) would get.
    pub fn certificate_for(&self, server_name: Option<&str>) -> CertInfo {
        self.snapshot().select(server_name).info.clone()
    }

    /// The name of the default certificate.
    pub fn default_name(&self) -> &str {
        &self.specs[self.default].name
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let snapshot = self.snapshot();
        let entry = snapshot.select(client_hello.server_name());
        tracing::trace!(
            sni = client_hello.server_name().unwrap_or("-"),
            certificate = %entry.info.name,
            "selected TLS certificate"
        );
        Some(Arc::clone(&entry.key))
    }
}

/// Loads a certificate chain and key and checks they belong together.
pub(crate) fn load_certified_key(
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, Vec<TlsError>> {
    let certs = pem::load_certs(cert_path);
    let key = pem::load_key(key_path);
    let (certs, key) = match (certs, key) {
        (Ok(c), Ok(k)) => (c, k),
        (c, k) => return Err(c.err().into_iter().chain(k.err()).collect()),
    };
    let signing_key = provider.key_provider.load_private_key(key).map_err(|e| {
        vec![TlsError::InvalidKey {
            path: key_path.to_path_buf(),
            reason: e.to_string(),
        }]
    })?;
    let certified = CertifiedKey::new(certs, signing_key);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(certified)
        }
        Err(rustls::Error::InconsistentKeys(_)) => Err(vec![TlsError::KeyMismatch {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
        }]),
        Err(e) => Err(vec![TlsError::InvalidCertificate {
            path: cert_path.to_path_buf(),
            reason: e.to_string(),
        }]),
    }
}

fn load_entry(
    spec: &CertSpec,
    provider: &CryptoProvider,
    is_default: bool,
) -> Result<Entry, Vec<TlsError>> {
    let mut errors = Vec::new();
    let mut configured_names = Vec::new();
    for raw in &spec.server_names {
        match normalize_server_name(raw) {
            Ok(name) => configured_names.push(name),
            Err(reason) => errors.push(TlsError::InvalidServerName {
                certificate: spec.name.clone(),
                server_name: raw.clone(),
                reason,
            }),
        }
    }
    // Stamps are taken before reading so that a write racing with the read
    // shows up as a change on the next reload.
    let stamps = (stamp(&spec.cert_path), stamp(&spec.key_path));
    let certified = load_certified_key(&spec.cert_path, &spec.key_path, provider);
    let (cert_stamp, key_stamp, certified) = match (stamps, certified) {
        ((Ok(c), Ok(k)), Ok(certified)) if errors.is_empty() => (c, k, certified),
        (_, Err(errs)) => {
            errors.extend(errs);
            return Err(errors);
        }
        ((c, k), _) => {
            errors.extend(c.err().into_iter().chain(k.err()));
            return Err(errors);
        }
    };
    let leaf = certified.end_entity_cert().map_err(|e| {
        vec![TlsError::InvalidCertificate {
            path: spec.cert_path.clone(),
            reason: e.to_string(),
        }]
    })?;
    let facts = der::parse_certificate(leaf).map_err(|reason| {
        vec![TlsError::InvalidCertificate {
            path: spec.cert_path.clone(),
            reason,
        }]
    })?;
    let server_names = if spec.server_names.is_empty() {
        let mut names = Vec::new();
        for raw in &facts.dns_names {
            match normalize_server_name(raw) {
                Ok(name) if !names.contains(&name) => names.push(name),
                Ok(_) => {}
                Err(reason) => tracing::warn!(
                    certificate = %spec.name,
                    server_name = %raw,
                    %reason,
                    "ignoring unusable DNS name in certificate"
                ),
            }
        }
        if names.is_empty() && !is_default {
            tracing::warn!(
                certificate = %spec.name,
                path = %spec.cert_path.display(),
                "certificate has no DNS names and no configured server names; it will never be selected"
            );
        }
        names
    } else {
        configured_names
    };
    if facts.not_after <= SystemTime::now() {
        tracing::warn!(
            certificate = %spec.name,
            path = %spec.cert_path.display(),
            "TLS certificate has expired"
        );
    }
    let fingerprint_sha256 = hex(ring::digest::digest(&ring::digest::SHA256, leaf).as_ref());
    Ok(Entry {
        key: Arc::new(certified),
        info: CertInfo {
            name: spec.name.clone(),
            cert_path: spec.cert_path.clone(),
            key_path: spec.key_path.clone(),
            server_names,
            not_after: Some(facts.not_after),
            fingerprint_sha256,
            is_default,
        },
        cert_stamp,
        key_stamp,
    })
}

fn hex(bytes: &[u8]) -> String {
    use fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Lower-cases a host name or `*.`-wildcard and checks its syntax.
pub(crate) fn normalize_server_name(raw: &str) -> Result<String, String> {
    let name = raw.trim().trim_end_matches('.').to_ascii_lowercase();
    if name.is_empty() {
        return Err("empty name".into());
    }
    if name.len() > 253 {
        return Err("longer than 253 characters".into());
    }
    let host = name.strip_prefix("*.").unwrap_or(&name);
    for label in host.split('.') {
        if label.is_empty() {
            return Err("empty label".into());
        }
        if label.len() > 63 {
            return Err("label longer than 63 characters".into());
        }
        if label.contains('*') {
            return Err("'*' is only allowed as the whole first label (*.example.com)".into());
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err("only letters, digits, '-' and '_' are allowed".into());
        }
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_name_normalisation() {
        assert_eq!(
            normalize_server_name(" WWW.Example.COM. ").unwrap(),
            "www.example.com"
        );
        assert_eq!(
            normalize_server_name("*.Example.com").unwrap(),
            "*.example.com"
        );
        assert_eq!(normalize_server_name("*.com").unwrap(), "*.com");
        assert!(normalize_server_name("").is_err());
        assert!(normalize_server_name("*").is_err());
        assert!(normalize_server_name("a.*.example.com").is_err());
        assert!(normalize_server_name("w*.example.com").is_err());
        assert!(normalize_server_name("a..b").is_err());
        assert!(normalize_server_name("a b.com").is_err());
    }

    #[test]
    fn hex_encoding() {
        assert_eq!(hex(&[0x00, 0xab, 0x10]), "00ab10");
    }
}

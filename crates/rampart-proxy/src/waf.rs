//! The WAF in the request path: rule sets compiled from the config's SecLang files (read here,
//! with `Include` globs and data files resolved on disk), one `rampart_waf::Transaction` per
//! request on a WAF route, and the audit log in ModSecurity v3's JSON shape.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rampart_config::{Snapshot, waf::WafMode};
use rampart_waf::{RequestHead, RuleSet, Transaction};

/// Rule files larger than this are refused.
const MAX_RULE_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// Rule files and data files on disk (`Include` globs in the last path component).
pub struct Disk;

fn read(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.len() > MAX_RULE_FILE_BYTES {
        return Err(format!(
            "{}: larger than {MAX_RULE_FILE_BYTES} bytes",
            path.display()
        ));
    }
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Files matching `pattern` (globs `*` and `?` in the last component only), sorted.
fn expand_glob(pattern: &Path) -> Result<Vec<PathBuf>, String> {
    let name = pattern
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !name.contains('*') && !name.contains('?') {
        return Ok(vec![pattern.to_path_buf()]);
    }
    let dir = pattern.parent().unwrap_or(Path::new("."));
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .is_some_and(|n| glob_match(name.as_bytes(), n.to_string_lossy().as_bytes()))
        })
        .collect();
    files.sort();
    Ok(files)
}

fn glob_match(pattern: &[u8], name: &[u8]) -> bool {
    match (pattern.first(), name.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            glob_match(&pattern[1..], name) || (!name.is_empty() && glob_match(pattern, &name[1..]))
        }
        (Some(b'?'), Some(_)) => glob_match(&pattern[1..], &name[1..]),
        (Some(p), Some(n)) if p == n => glob_match(&pattern[1..], &name[1..]),
        _ => false,
    }
}

impl rampart_waf::Sources for Disk {
    fn include(&self, pattern: &str, from: &str) -> Result<Vec<(String, String)>, String> {
        let base = Path::new(from).parent().unwrap_or(Path::new("."));
        let files = expand_glob(&base.join(pattern))?;
        if files.is_empty() {
            return Err("no file matches".into());
        }
        files
            .into_iter()
            .map(|p| read(&p).map(|text| (p.display().to_string(), text)))
            .collect()
    }

    fn data(&self, name: &str, from: &str) -> Result<String, String> {
        let base = Path::new(from).parent().unwrap_or(Path::new("."));
        read(&base.join(name))
    }
}

/// Compiles a rule set from SecLang files: the mode and paranoia level (when given) are set
/// first, then `before`, the files in order, and `after` (exclusions) last.
pub fn compile_files(
    name: &str,
    mode: Option<WafMode>,
    paranoia: Option<u8>,
    before: &str,
    files: &[PathBuf],
    after: &str,
) -> Result<RuleSet, String> {
    let mut main = String::new();
    match mode {
        Some(WafMode::Block) => main.push_str("SecRuleEngine On\n"),
        Some(WafMode::Detect) => main.push_str("SecRuleEngine DetectionOnly\n"),
        None => {}
    }
    if let Some(pl) = paranoia {
        main.push_str(&format!(
            "SecAction \"id:8900001,phase:1,pass,nolog,setvar:tx.blocking_paranoia_level={pl}\"\n"
        ));
    }
    main.push_str(before);
    for file in files {
        main.push_str(&format!("Include \"{}\"\n", file.display()));
    }
    main.push_str(after);
    let origin = format!("<waf rule set {name}>");
    rampart_waf::compile(&main, &origin, &Disk).map_err(|e| format!("waf rule set \"{name}\": {e}"))
}

/// The compiled rule sets of a runtime, per route.
#[derive(Default)]
pub struct WafRuntime {
    /// Indexed like the snapshot's routes.
    routes: Vec<Option<Arc<RuleSet>>>,
    pub audit: bool,
}

impl WafRuntime {
    pub fn build(snapshot: &Snapshot) -> Result<WafRuntime, Vec<String>> {
        let mut errors = Vec::new();
        let mut compiled: Vec<(String, Arc<RuleSet>)> = Vec::new();
        for set in &snapshot.waf.rulesets {
            if !snapshot
                .routes
                .iter()
                .any(|r| r.waf.as_deref() == Some(&set.name))
            {
                continue;
            }
            match compile_files(
                &set.name,
                set.mode,
                set.paranoia,
                "",
                &set.files,
                &set.exclusion_directives(),
            ) {
                Ok(rules) => compiled.push((set.name.clone(), Arc::new(rules))),
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let routes = snapshot
            .routes
            .iter()
            .map(|r| {
                r.waf.as_ref().and_then(|name| {
                    compiled
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, rules)| Arc::clone(rules))
                })
            })
            .collect();
        Ok(WafRuntime {
            routes,
            audit: snapshot.waf.audit_log.is_some(),
        })
    }

    /// The rule set of a route, if it has one.
    pub fn rules(&self, route: usize) -> Option<&Arc<RuleSet>> {
        self.routes.get(route).and_then(Option::as_ref)
    }
}

/// The request target as received, when it had to be escaped to be forwarded (raw `"`, `<`,
/// `{`, …): the WAF inspects what the client sent.
#[derive(Clone, Debug)]
pub struct RawTarget(pub bytes::Bytes);

/// A transaction for a request head.
pub fn begin(
    rules: &Arc<RuleSet>,
    parts: &http::request::Parts,
    client: std::net::SocketAddr,
    request_id: &http::HeaderValue,
) -> Transaction {
    let version = match parts.version {
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        _ => "HTTP/1.1",
    };
    let uri = match parts.extensions.get::<RawTarget>() {
        Some(raw) => String::from_utf8_lossy(&raw.0).into_owned(),
        None => parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.to_string(), |p| p.as_str().to_string()),
    };
    // HTTP/1.x names reach us lower-cased; rules and logs show them as clients write them
    // (`Referer`, `Content-Type`). HTTP/2 names are lower case on the wire.
    let title_case = parts.version != http::Version::HTTP_2;
    let mut headers: Vec<(String, Vec<u8>)> = parts
        .headers
        .iter()
        .map(|(k, v)| {
            let name = if title_case {
                title_cased(k.as_str())
            } else {
                k.as_str().to_string()
            };
            (name, v.as_bytes().to_vec())
        })
        .collect();
    if !parts.headers.contains_key(http::header::HOST)
        && let Some(authority) = parts.uri.authority()
    {
        headers.insert(0, ("host".into(), authority.as_str().as_bytes().to_vec()));
    }
    let head = RequestHead {
        method: parts.method.as_str().to_string(),
        uri,
        protocol: version.to_string(),
        headers,
        remote_addr: client.ip(),
        remote_port: client.port(),
        unique_id: String::from_utf8_lossy(request_id.as_bytes()).into_owned(),
    };
    Transaction::new(Arc::clone(rules), head)
}

/// `content-type` → `Content-Type`.
fn title_cased(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = true;
    for c in name.chars() {
        out.push(if upper { c.to_ascii_uppercase() } else { c });
        upper = c == '-';
    }
    out
}

/// The audit log line of a finished transaction (ModSecurity v3 `SecAuditLogFormat JSON`).
pub fn audit_record(tx: &Transaction, status: u16) -> serde_json::Value {
    let head = tx.head();
    let mut headers = serde_json::Map::new();
    for (k, v) in &head.headers {
        let value = serde_json::Value::String(String::from_utf8_lossy(v).into_owned());
        match headers.get_mut(k) {
            Some(serde_json::Value::Array(list)) => list.push(value),
            Some(existing) => {
                let first = existing.take();
                *existing = serde_json::Value::Array(vec![first, value]);
            }
            None => {
                headers.insert(k.clone(), value);
            }
        }
    }
    let messages: Vec<serde_json::Value> = tx
        .messages()
        .iter()
        .map(|m| {
            serde_json::json!({
                "message": m.msg,
                "details": {
                    "match": m.matched,
                    "reference": "",
                    "ruleId": m.rule_id.to_string(),
                    "file": m.file,
                    "lineNumber": m.line.to_string(),
                    "data": m.data,
                    "severity": m.severity.map(|s| s.to_string()).unwrap_or_default(),
                    "ver": m.ver,
                    "rev": m.rev,
                    "tags": m.tags,
                    "maturity": m.maturity,
                    "accuracy": m.accuracy,
                }
            })
        })
        .collect();
    serde_json::json!({
        "transaction": {
            "client_ip": head.remote_addr.to_string(),
            "time_stamp": crate::accesslog::now_rfc3339(),
            "client_port": head.remote_port,
            "unique_id": head.unique_id,
            "request": {
                "method": head.method,
                "uri": head.uri,
                "http_version": head.protocol.trim_start_matches("HTTP/"),
                "headers": headers,
            },
            "response": { "http_code": status },
            "producer": { "modsecurity": "rampart-waf", "components": tx.rules().settings.component_signatures },
            "messages": messages,
        }
    })
}

pub type AuditLogger = crate::accesslog::JsonLines<serde_json::Value>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match(b"*.conf", b"REQUEST-901.conf"));
        assert!(glob_match(b"REQUEST-9??-*.conf", b"REQUEST-901-INIT.conf"));
        assert!(!glob_match(b"*.conf", b"x.data"));
        assert!(glob_match(b"*", b""));
    }
}

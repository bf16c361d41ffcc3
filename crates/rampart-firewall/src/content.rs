//! Per-route content filtering of request heads.
//!
//! Paths are checked as the backend will most likely read them: percent-decoded, with `.`
//! and `..` segments resolved and repeated slashes collapsed, so `/a/%2e%2e/.git//config`
//! is `/.git/config`. Queries are checked percent-decoded (`+` as a space).

use http::{HeaderMap, Method, StatusCode};
use regex::{Regex, RegexSet, RegexSetBuilder};

/// Compiled size allowed for one target's combined deny patterns; beyond it they run one by
/// one.
const SET_SIZE_LIMIT: usize = 16 << 20;

/// What a deny pattern looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DenyTarget {
    Path,
    Query,
    /// Every value of one header.
    Header(http::HeaderName),
}

impl std::fmt::Display for DenyTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DenyTarget::Path => f.write_str("path"),
            DenyTarget::Query => f.write_str("query"),
            DenyTarget::Header(name) => write!(f, "header {name}"),
        }
    }
}

/// A deny pattern: a regex (a literal is given as an escaped regex).
#[derive(Debug, Clone)]
pub struct DenyPattern {
    pub target: DenyTarget,
    pub regex: Regex,
    /// Shown in logs: the pattern as configured.
    pub label: String,
}

/// A route's content rules, as validated from the config.
#[derive(Debug, Clone, Default)]
pub struct ContentFilterSpec {
    /// Allowed methods; empty allows any.
    pub methods: Vec<Method>,
    /// Allowed media types of request bodies (`type/subtype`, `type/*`), lower case; empty
    /// allows any.
    pub content_types: Vec<String>,
    pub max_query_bytes: Option<usize>,
    /// File extensions refused in the last path segment, lower case, without the dot
    /// (`php`, `tar.gz`).
    pub blocked_extensions: Vec<String>,
    pub deny: Vec<DenyPattern>,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    Method,
    ContentType,
    MissingContentType,
    QueryTooLong,
    Extension(String),
    Denied { target: String, pattern: String },
}

impl Violation {
    pub fn status(&self) -> StatusCode {
        match self {
            Violation::Method => StatusCode::METHOD_NOT_ALLOWED,
            Violation::ContentType | Violation::MissingContentType => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            Violation::QueryTooLong => StatusCode::URI_TOO_LONG,
            Violation::Extension(_) | Violation::Denied { .. } => StatusCode::FORBIDDEN,
        }
    }

    /// Short machine-readable reason for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Violation::Method => "method_not_allowed",
            Violation::ContentType => "content_type_not_allowed",
            Violation::MissingContentType => "content_type_missing",
            Violation::QueryTooLong => "query_too_long",
            Violation::Extension(_) => "blocked_extension",
            Violation::Denied { .. } => "deny_pattern",
        }
    }

    pub fn detail(&self) -> String {
        match self {
            Violation::Method => "method not allowed on this route".into(),
            Violation::ContentType => "request body media type not allowed on this route".into(),
            Violation::MissingContentType => "request body without Content-Type".into(),
            Violation::QueryTooLong => "query string longer than the route allows".into(),
            Violation::Extension(ext) => format!("file extension .{ext} is blocked"),
            Violation::Denied { target, pattern } => format!("{target} matches deny {pattern:?}"),
        }
    }
}

/// A compiled content filter.
#[derive(Debug, Clone)]
pub struct ContentFilter {
    spec: ContentFilterSpec,
    path_set: Option<RegexSet>,
    path_index: Vec<usize>,
    query_set: Option<RegexSet>,
    query_index: Vec<usize>,
}

impl ContentFilter {
    pub fn new(spec: ContentFilterSpec) -> ContentFilter {
        let compile = |want: &DenyTarget| {
            let index: Vec<usize> = spec
                .deny
                .iter()
                .enumerate()
                .filter(|(_, p)| &p.target == want)
                .map(|(i, _)| i)
                .collect();
            let set = (!index.is_empty())
                .then(|| {
                    RegexSetBuilder::new(index.iter().map(|&i| spec.deny[i].regex.as_str()))
                        .size_limit(SET_SIZE_LIMIT)
                        .build()
                        .ok()
                })
                .flatten();
            (set, index)
        };
        let (path_set, path_index) = compile(&DenyTarget::Path);
        let (query_set, query_index) = compile(&DenyTarget::Query);
        ContentFilter {
            spec,
            path_set,
            path_index,
            query_set,
            query_index,
        }
    }

    /// Allowed methods, for the `Allow` header of a 405.
    pub fn allowed_methods(&self) -> &[Method] {
        &self.spec.methods
    }

    /// Checks a request head.
    /// Checks a request head. `has_body`: the request carries a body (for HTTP/2 the stream
    /// did not end with the headers; for HTTP/1.1 a non-zero length or chunked framing).
    pub fn check(
        &self,
        method: &Method,
        uri: &http::Uri,
        headers: &HeaderMap,
        has_body: bool,
    ) -> Result<(), Violation> {
        let spec = &self.spec;
        if !spec.methods.is_empty() && !spec.methods.contains(method) {
            return Err(Violation::Method);
        }
        let raw_query = uri.query().unwrap_or("");
        if spec
            .max_query_bytes
            .is_some_and(|max| raw_query.len() > max)
        {
            return Err(Violation::QueryTooLong);
        }
        if !spec.content_types.is_empty() && has_body {
            let mut values = headers.get_all(http::header::CONTENT_TYPE).iter();
            let (first, second) = (values.next(), values.next());
            if second.is_some() {
                // Two media types: the backend might believe either.
                return Err(Violation::ContentType);
            }
            let Some(media) = first.and_then(|v| v.to_str().ok()).map(media_type) else {
                return Err(Violation::MissingContentType);
            };
            if !spec
                .content_types
                .iter()
                .any(|allowed| media_matches(allowed, &media))
            {
                return Err(Violation::ContentType);
            }
        }
        let path = normalize_path(uri.path());
        // A backend that decodes twice sees this form as well.
        let twice = path.contains('%').then(|| normalize_path(&path));
        for candidate in std::iter::once(&path).chain(twice.as_ref()) {
            if candidate.contains('\0') {
                return Err(Violation::Denied {
                    target: "path".into(),
                    pattern: "NUL byte".into(),
                });
            }
            if let Some(ext) = blocked_extension(&spec.blocked_extensions, candidate) {
                return Err(Violation::Extension(ext.to_string()));
            }
            self.match_patterns(&self.path_set, &self.path_index, candidate)?;
        }
        if !raw_query.is_empty() {
            let query = percent_decode(raw_query, true);
            self.match_patterns(&self.query_set, &self.query_index, &query)?;
        }
        for pattern in &spec.deny {
            if let DenyTarget::Header(name) = &pattern.target {
                for value in headers.get_all(name) {
                    let text = String::from_utf8_lossy(value.as_bytes());
                    if pattern.regex.is_match(&text) {
                        return Err(denied(pattern));
                    }
                }
            }
        }
        Ok(())
    }

    /// The deny patterns at `index` against `text`: in one pass through the set, or one by
    /// one when the patterns were too big to combine.
    fn match_patterns(
        &self,
        set: &Option<RegexSet>,
        index: &[usize],
        text: &str,
    ) -> Result<(), Violation> {
        match set {
            Some(set) => {
                if let Some(hit) = set.matches(text).into_iter().next() {
                    return Err(denied(&self.spec.deny[index[hit]]));
                }
            }
            None => {
                for &i in index {
                    if self.spec.deny[i].regex.is_match(text) {
                        return Err(denied(&self.spec.deny[i]));
                    }
                }
            }
        }
        Ok(())
    }
}

fn denied(pattern: &DenyPattern) -> Violation {
    Violation::Denied {
        target: pattern.target.to_string(),
        pattern: pattern.label.clone(),
    }
}

/// The first blocked extension any path segment ends with. Every segment counts (PATH_INFO:
/// `/shell.php/x` runs `shell.php`), and trailing dots and spaces are ignored as Windows
/// servers ignore them.
fn blocked_extension<'a>(blocked: &'a [String], path: &str) -> Option<&'a str> {
    if blocked.is_empty() {
        return None;
    }
    for segment in path.split('/') {
        let name = segment.trim_end_matches(['.', ' ']).to_ascii_lowercase();
        for ext in blocked {
            if name.len() > ext.len()
                && name.ends_with(ext.as_str())
                && name.as_bytes()[name.len() - ext.len() - 1] == b'.'
            {
                return Some(ext);
            }
        }
    }
    None
}

fn media_type(value: &str) -> String {
    value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

fn media_matches(allowed: &str, media: &str) -> bool {
    if allowed == "*/*" || allowed == media {
        return true;
    }
    match allowed.strip_suffix("/*") {
        Some(kind) => media
            .split_once('/')
            .is_some_and(|(k, sub)| k == kind && !sub.is_empty()),
        None => false,
    }
}

/// Percent-decodes (invalid escapes are kept as written); `plus` turns `+` into a space.
pub fn percent_decode(text: &str, plus: bool) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' if plus => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Whether [`normalize_path`] could change `path` (a fast test for the request path).
pub fn needs_normalizing(path: &str) -> bool {
    let b = path.as_bytes();
    b.first() != Some(&b'/')
        || b.iter().any(|&c| matches!(c, b'%' | b'\\' | b';'))
        || b.windows(2).any(|w| w == b"//" || w == b"/.")
}

/// The path as a backend most likely resolves it: percent-decoded once, backslashes read as
/// slashes, path parameters (`;…`) dropped from every segment (so `..;` is `..`), repeated
/// slashes collapsed, `.` and `..` segments resolved (never above the root).
pub fn normalize_path(path: &str) -> String {
    let decoded = percent_decode(path, false).replace('\\', "/");
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split('/') {
        let segment = segment.split(';').next().unwrap_or("");
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let trailing = decoded.ends_with('/') || decoded.ends_with("/.") || decoded.ends_with("/..");
    let mut out = String::with_capacity(decoded.len() + 1);
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() || (trailing && !segments.is_empty()) {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pattern(target: DenyTarget, regex: &str) -> DenyPattern {
        DenyPattern {
            target,
            regex: Regex::new(regex).unwrap(),
            label: regex.to_string(),
        }
    }

    fn filter() -> ContentFilter {
        ContentFilter::new(ContentFilterSpec {
            methods: vec![Method::GET, Method::POST],
            content_types: vec!["application/json".into(), "text/*".into()],
            max_query_bytes: Some(32),
            blocked_extensions: vec!["php".into(), "tar.gz".into()],
            deny: vec![
                pattern(DenyTarget::Path, r"(?i)^/\.git(/|$)"),
                pattern(DenyTarget::Query, r"(?i)union\s+select"),
                pattern(
                    DenyTarget::Header(http::HeaderName::from_static("user-agent")),
                    r"(?i)sqlmap",
                ),
            ],
        })
    }

    fn check(method: &str, uri: &str, headers: &[(&str, &str)]) -> Result<(), Violation> {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        let body = map.contains_key(http::header::TRANSFER_ENCODING)
            || map
                .get(http::header::CONTENT_LENGTH)
                .is_some_and(|v| v.to_str().unwrap() != "0");
        filter().check(&method.parse().unwrap(), &uri.parse().unwrap(), &map, body)
    }

    #[test]
    fn each_rule_refuses_with_its_status() {
        assert_eq!(check("GET", "/ok", &[]), Ok(()));
        assert_eq!(check("PUT", "/ok", &[]), Err(Violation::Method));
        assert_eq!(
            check("GET", "/x?aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", &[]),
            Err(Violation::QueryTooLong)
        );
        assert_eq!(
            check(
                "POST",
                "/x",
                &[("content-length", "5"), ("content-type", "application/xml")]
            ),
            Err(Violation::ContentType)
        );
        assert_eq!(
            check("POST", "/x", &[("content-length", "5")]),
            Err(Violation::MissingContentType)
        );
        assert_eq!(check("POST", "/x", &[("content-length", "0")]), Ok(()));
        assert_eq!(
            check(
                "POST",
                "/x",
                &[
                    ("transfer-encoding", "chunked"),
                    ("content-type", "Text/Plain; charset=utf-8")
                ]
            ),
            Ok(())
        );
        assert_eq!(
            check("GET", "/index.PHP", &[]),
            Err(Violation::Extension("php".into()))
        );
        assert_eq!(
            check("GET", "/a/b.php;x=1", &[]),
            Err(Violation::Extension("php".into()))
        );
        assert_eq!(
            check("GET", "/backup.tar.gz", &[]),
            Err(Violation::Extension("tar.gz".into()))
        );
        assert_eq!(check("GET", "/php", &[]), Ok(()));
        assert_eq!(
            check("GET", "/.php", &[]),
            Err(Violation::Extension("php".into()))
        );
        assert!(matches!(
            check("GET", "/.git/config", &[]),
            Err(Violation::Denied { .. })
        ));
        assert!(matches!(
            check("GET", "/a/%2e%2e/.GIT//config", &[]),
            Err(Violation::Denied { .. })
        ));
        assert!(matches!(
            check("GET", "/a/..%2f.git", &[]),
            Err(Violation::Denied { .. })
        ));
        assert_eq!(check("GET", "/.github", &[]), Ok(()));
        // Path parameters, PATH_INFO, trailing dots, NUL and double encoding.
        assert!(matches!(
            check("GET", "/.git;x/config", &[]),
            Err(Violation::Denied { .. })
        ));
        assert!(matches!(
            check("GET", "/p/..;/.git/config", &[]),
            Err(Violation::Denied { .. })
        ));
        assert!(matches!(
            check("GET", "/%252e%252e/.git", &[]),
            Err(Violation::Denied { .. })
        ));
        assert!(matches!(
            check("GET", "/a%2500/x", &[]),
            Err(Violation::Denied { .. })
        ));
        assert!(check("GET", "/a.php%00.jpg", &[]).is_err());
        assert_eq!(
            check("GET", "/shell.php/x", &[]),
            Err(Violation::Extension("php".into()))
        );
        assert_eq!(
            check("GET", "/a.php.", &[]),
            Err(Violation::Extension("php".into()))
        );
        assert_eq!(
            check("GET", "/a.php%20", &[]),
            Err(Violation::Extension("php".into()))
        );
        assert_eq!(
            check("GET", "/x/a.PhP%252e", &[]),
            Err(Violation::Extension("php".into()))
        );
        assert_eq!(
            check(
                "POST",
                "/x",
                &[
                    ("content-length", "2"),
                    ("content-type", "application/json"),
                    ("content-type", "text/xml")
                ]
            ),
            Err(Violation::ContentType)
        );
        assert!(matches!(
            check("GET", "/x?q=1+UNION%20SELECT+2", &[]),
            Err(Violation::Denied { .. })
        ));
        assert!(matches!(
            check(
                "GET",
                "/x",
                &[("user-agent", "curl"), ("user-agent", "sqlmap/1.7")]
            ),
            Err(Violation::Denied { .. })
        ));
        assert_eq!(Violation::Method.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(
            Violation::ContentType.status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
    }

    #[test]
    fn paths_normalize() {
        assert_eq!(normalize_path("/"), "/");
        assert_eq!(normalize_path(""), "/");
        assert_eq!(normalize_path("/a/./b/../c"), "/a/c");
        assert_eq!(normalize_path("/../../etc/passwd"), "/etc/passwd");
        assert_eq!(normalize_path("//a///b/"), "/a/b/");
        assert_eq!(normalize_path("/a/%2E%2e/b"), "/b");
        assert_eq!(normalize_path("/a\\..\\b"), "/b");
        assert_eq!(normalize_path("/a/b/.."), "/a/");
        assert_eq!(normalize_path("/a;v=1/b;jsessionid=x"), "/a/b");
        assert_eq!(normalize_path("/a/..;/b"), "/b");
        assert!(!needs_normalizing("/plain/path-1.txt"));
        for p in [
            "a", "/%41", "/a//b", "/a/./b", "/a/..", "/a;x", "/a\\b", "/.",
        ] {
            assert!(needs_normalizing(p), "{p}");
        }
        assert_eq!(percent_decode("%zz%4", false), "%zz%4");
        assert_eq!(percent_decode("a%20b+c", true), "a b c");
    }

    proptest! {
        #[test]
        fn normalized_paths_have_no_dot_segments(path in "[/a.%2eE\\\\]{0,40}") {
            let n = normalize_path(&path);
            prop_assert!(n.starts_with('/'));
            prop_assert!(!n.contains("//"));
            prop_assert!(!n.split('/').any(|s| s == "." || s == ".."));
            if !n.contains('%') {
                prop_assert_eq!(normalize_path(&n), n.clone());
            }
        }

        #[test]
        fn percent_decode_never_panics(text in ".{0,60}") {
            let _ = percent_decode(&text, true);
        }
    }
}

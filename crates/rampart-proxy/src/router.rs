//! Route matching: pure code over the request head and the snapshot's ordered routes.

use std::borrow::Cow;

use http::{HeaderMap, Method};
use rampart_config::{HeaderValueMatch, HostPattern, PathMatch, Route};

/// What the router looks at.
pub struct RouteInput<'a> {
    pub listener: &'a str,
    /// Lower-case host without port; empty when the request has none.
    pub host: &'a str,
    pub path: &'a str,
    pub method: &'a Method,
    pub headers: &'a HeaderMap,
}

/// Index of the first route that matches, in config order.
pub fn select(routes: &[Route], input: &RouteInput<'_>) -> Option<usize> {
    routes.iter().position(|r| matches(r, input))
}

fn matches(route: &Route, input: &RouteInput<'_>) -> bool {
    if !route.listeners.is_empty() && !route.listeners.iter().any(|l| l == input.listener) {
        return false;
    }
    let m = &route.matcher;
    if !m.hosts.is_empty() && !m.hosts.iter().any(|h| host_matches(h, input.host)) {
        return false;
    }
    if let Some(p) = &m.path {
        let ok = match p {
            PathMatch::Exact(e) => input.path == e,
            PathMatch::Prefix(prefix) => path_has_prefix(input.path, prefix),
            PathMatch::Regex(r) => r.is_match(input.path),
        };
        if !ok {
            return false;
        }
    }
    if !m.methods.is_empty() && !m.methods.contains(input.method) {
        return false;
    }
    m.headers.iter().all(|h| {
        let values = input.headers.get_all(&h.name);
        match &h.value {
            HeaderValueMatch::Present => values.iter().next().is_some(),
            HeaderValueMatch::Exact(v) => values.iter().any(|x| x.as_bytes() == v.as_bytes()),
            HeaderValueMatch::Regex(r) => values
                .iter()
                .any(|x| x.to_str().map(|s| r.is_match(s)).unwrap_or(false)),
        }
    })
}

/// `/api` matches `/api`, `/api/` and `/api/x`, not `/apix`; a prefix ending in `/` matches
/// anything below it.
fn path_has_prefix(path: &str, prefix: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => {
            prefix.ends_with('/')
                || rest.is_empty()
                || rest.starts_with('/')
                || rest.starts_with('?')
        }
        None => false,
    }
}

pub fn host_matches(pattern: &HostPattern, host: &str) -> bool {
    match pattern {
        HostPattern::Exact(e) => e == host,
        HostPattern::Wildcard(suffix) => {
            host.len() > suffix.len() && host.ends_with(suffix.as_str())
        }
    }
}

/// Host from the request: URI authority (HTTP/2, absolute-form) or the Host header, lower-cased,
/// port removed. `None` when the value is not a valid host.
pub fn request_host<'a>(uri: &'a http::Uri, headers: &'a HeaderMap) -> Option<Cow<'a, str>> {
    let raw = match uri.authority() {
        Some(a) => a.host(),
        None => {
            let value = headers.get(http::header::HOST)?.to_str().ok()?;
            host_of_authority(value)?
        }
    };
    let raw = raw.strip_suffix('.').unwrap_or(raw);
    if raw.is_empty() {
        return None;
    }
    Some(if raw.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(raw.to_ascii_lowercase())
    } else {
        Cow::Borrowed(raw)
    })
}

/// The host part of a Host header value (`name`, `name:port`, `[v6]`, `[v6]:port`), checked
/// for characters that cannot appear in a host; `None` when it is malformed.
fn host_of_authority(value: &str) -> Option<&str> {
    let (host, port) = if let Some(rest) = value.strip_prefix('[') {
        let close = rest.find(']')?;
        let after = &rest[close + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return None,
        };
        let inner = &rest[..close];
        if inner.is_empty()
            || !inner
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return None;
        }
        (&value[..close + 2], port)
    } else {
        match value.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (value, None),
        }
    };
    if let Some(p) = port
        && (p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let valid = host.starts_with('[')
        || (!host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')));
    valid.then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn routes() -> Vec<Route> {
        let text = r#"
[[listeners]]
name = "web"
address = "127.0.0.1:1"
[[listeners]]
name = "other"
address = "127.0.0.1:2"
[[pools]]
name = "p"
backends = [{ address = "127.0.0.1:3" }]
[[routes]]
name = "exact"
match = { hosts = ["api.example.com"], path = "/exact" }
pool = "p"
[[routes]]
name = "wild"
match = { hosts = ["*.example.com"], path_prefix = "/v1" }
pool = "p"
[[routes]]
name = "regex"
match = { path_regex = "^/items/[0-9]+$", methods = ["GET"] }
pool = "p"
[[routes]]
name = "header"
match = { headers = [{ name = "x-env", value = "canary" }] }
listeners = ["web"]
pool = "p"
[[routes]]
name = "fallback"
pool = "p"
listeners = ["other"]
"#;
        rampart_config::load_str(text, "t", Path::new("."))
            .unwrap()
            .routes
    }

    fn pick(
        listener: &str,
        host: &str,
        path: &str,
        method: Method,
        headers: &[(&str, &str)],
    ) -> Option<String> {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        let rs = routes();
        let input = RouteInput {
            listener,
            host,
            path,
            method: &method,
            headers: &map,
        };
        select(&rs, &input).map(|i| rs[i].name.clone())
    }

    #[test]
    fn selects_in_order() {
        assert_eq!(
            pick("web", "api.example.com", "/exact", Method::GET, &[]).as_deref(),
            Some("exact")
        );
        assert_eq!(
            pick("web", "api.example.com", "/v1/x", Method::GET, &[]).as_deref(),
            Some("wild")
        );
        assert_eq!(
            pick("web", "a.b.example.com", "/v1", Method::GET, &[]).as_deref(),
            Some("wild")
        );
        assert_eq!(pick("web", "example.com", "/v1", Method::GET, &[]), None);
        assert_eq!(pick("web", "x.example.com", "/v10", Method::GET, &[]), None);
        assert_eq!(
            pick("web", "h", "/items/12", Method::GET, &[]).as_deref(),
            Some("regex")
        );
        assert_eq!(pick("web", "h", "/items/12", Method::POST, &[]), None);
        assert_eq!(
            pick("web", "h", "/z", Method::GET, &[("x-env", "canary")]).as_deref(),
            Some("header")
        );
        assert_eq!(
            pick("other", "h", "/z", Method::GET, &[("x-env", "canary")]).as_deref(),
            Some("fallback")
        );
    }

    #[test]
    fn host_extraction() {
        let mut h = HeaderMap::new();
        h.insert("host", "API.Example.com:8080".parse().unwrap());
        assert_eq!(
            request_host(&"/x".parse().unwrap(), &h).as_deref(),
            Some("api.example.com")
        );
        assert_eq!(
            request_host(&"https://b.example/x".parse().unwrap(), &h).as_deref(),
            Some("b.example")
        );
        h.insert("host", "bad host".parse().unwrap());
        assert_eq!(request_host(&"/x".parse().unwrap(), &h), None);
        for bad in ["a:b", "a:", "[::1", "[zz]", "a/b", "a:123456", ""] {
            h.insert("host", bad.parse().unwrap());
            assert_eq!(request_host(&"/x".parse().unwrap(), &h), None, "{bad}");
        }
        h.insert("host", "[::1]:8443".parse().unwrap());
        assert_eq!(
            request_host(&"/x".parse().unwrap(), &h).as_deref(),
            Some("[::1]")
        );
        h.insert("host", "example.com.".parse().unwrap());
        assert_eq!(
            request_host(&"/x".parse().unwrap(), &h).as_deref(),
            Some("example.com")
        );
    }
}

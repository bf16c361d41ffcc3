//! Header rewriting between client and upstream: hop-by-hop removal, forwarding headers and the
//! request id.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
pub static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Is `name` hop-by-hop by definition (RFC 9110 §7.6.1, plus the legacy `Keep-Alive` and
/// `Proxy-Connection`)? `Upgrade` is handled separately.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == header::CONNECTION
        || name == KEEP_ALIVE
        || name == PROXY_CONNECTION
        || name == header::PROXY_AUTHORIZATION
        || name == header::PROXY_AUTHENTICATE
        || name == header::TE
        || name == header::TRAILER
        || name == header::TRANSFER_ENCODING
}

/// Removes hop-by-hop headers (RFC 9110 §7.6.1), including those named in `Connection`.
/// With `keep_upgrade`, `Connection: upgrade` and `Upgrade` survive (WebSocket hand-off).
pub fn remove_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // One pass over the (usually few) fields instead of a hashed lookup per hop-by-hop name;
    // the names to drop are kept on the stack unless there are unusually many.
    let mut doomed: [Option<HeaderName>; 12] = Default::default();
    let mut overflow: Vec<HeaderName> = Vec::new();
    let mut count = 0;
    let mut push = |name: HeaderName| {
        if count < doomed.len() {
            doomed[count] = Some(name);
            count += 1;
        } else {
            overflow.push(name);
        }
    };
    nominated_fields(headers, keep_upgrade).for_each(&mut push);
    for name in headers.keys() {
        if is_hop_by_hop(name) || (!keep_upgrade && name == header::UPGRADE) {
            push(name.clone());
        }
    }
    for name in doomed.iter().flatten().chain(overflow.iter()) {
        headers.remove(name);
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Field names the `Connection` header nominates as hop-by-hop (`close` and `keep-alive` are
/// options, not names). With `keep_upgrade`, `Upgrade` is not among them.
fn nominated_fields(
    headers: &HeaderMap,
    keep_upgrade: bool,
) -> impl Iterator<Item = HeaderName> + '_ {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| {
            !t.is_empty()
                && !t.eq_ignore_ascii_case("close")
                && !t.eq_ignore_ascii_case("keep-alive")
        })
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .filter(move |name| !(keep_upgrade && name == header::UPGRADE))
}

/// Does the client's `TE` header accept trailers?
pub(crate) fn accepts_trailers(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            t.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("trailers"))
        })
}

/// Is this an HTTP/1.1 WebSocket upgrade? Other upgrade tokens (e.g. `h2c`) are not tunnelled:
/// a raw tunnel would bypass routing and guards.
pub fn is_upgrade_request(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("websocket"))
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// The header changes for an upstream request, computed once per request and applied as the
/// head is written (HTTP/1.1) or to a copy of the fields (HTTP/2), so the client's parsed
/// header map is never edited on the request path. Fields named by the client's `Connection`
/// header and hop-by-hop fields are dropped; fields set here replace any of the same name.
pub struct Rewrite {
    set: [Option<(HeaderName, HeaderValue)>; 8],
    set_len: usize,
    /// Names the client's `Connection` header nominates (rarely any).
    nominated: Vec<HeaderName>,
    keep_upgrade: bool,
}

impl Rewrite {
    /// Starts from the client's fields; with `keep_upgrade`, `Upgrade` passes and
    /// `Connection: upgrade` is sent (WebSocket hand-off).
    pub fn new(headers: &HeaderMap, keep_upgrade: bool) -> Self {
        let nominated = nominated_fields(headers, keep_upgrade).collect();
        let mut rewrite = Rewrite {
            set: Default::default(),
            set_len: 0,
            nominated,
            keep_upgrade,
        };
        if keep_upgrade {
            rewrite.set(header::CONNECTION, HeaderValue::from_static("upgrade"));
        } else if accepts_trailers(headers) {
            // TE is hop-by-hop, but a client that takes trailers (gRPC requires it) gets them
            // passed through, so Rampart asks the upstream for them in its own name. HTTP/1.1
            // wants the option named in Connection too (RFC 9110 §10.1.4).
            rewrite.set(header::TE, HeaderValue::from_static("trailers"));
            rewrite.set(header::CONNECTION, HeaderValue::from_static("te"));
        }
        rewrite
    }

    /// Sends `name: value` in place of any client field of that name.
    pub fn set(&mut self, name: HeaderName, value: HeaderValue) {
        if let Some(slot) = self.set[..self.set_len]
            .iter_mut()
            .flatten()
            .find(|(n, _)| *n == name)
        {
            slot.1 = value;
            return;
        }
        assert!(self.set_len < self.set.len(), "too many rewritten fields");
        self.set[self.set_len] = Some((name, value));
        self.set_len += 1;
    }

    /// Drops every client field of this name.
    pub fn remove(&mut self, name: HeaderName) {
        self.nominated.push(name);
    }

    /// The value this rewrite sends for `name`, if it sets one.
    pub fn get(&self, name: &HeaderName) -> Option<&HeaderValue> {
        self.set[..self.set_len]
            .iter()
            .flatten()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }

    /// Whether a client field of this name is left out.
    pub fn drops(&self, name: &HeaderName) -> bool {
        is_hop_by_hop(name)
            || (!self.keep_upgrade && name == header::UPGRADE)
            || self.set[..self.set_len]
                .iter()
                .flatten()
                .any(|(n, _)| n == name)
            || self.nominated.iter().any(|n| n == name)
    }

    /// The fields to send: the client's that survive, then the ones set here.
    pub fn fields<'a>(
        &'a self,
        client: &'a HeaderMap,
    ) -> impl Iterator<Item = (&'a HeaderName, &'a HeaderValue)> + 'a {
        client.iter().filter(|(name, _)| !self.drops(name)).chain(
            self.set[..self.set_len]
                .iter()
                .flatten()
                .map(|(n, v)| (n, v)),
        )
    }

    /// Applies the rewrite to a header map.
    pub fn apply(&self, headers: &mut HeaderMap) {
        let mut doomed: Vec<HeaderName> = Vec::new();
        for name in headers.keys() {
            if self.drops(name) && !doomed.contains(name) {
                doomed.push(name.clone());
            }
        }
        for name in &doomed {
            headers.remove(name);
        }
        for (name, value) in self.set[..self.set_len].iter().flatten() {
            headers.insert(name.clone(), value.clone());
        }
    }
}

/// Sets `X-Forwarded-For` and `Forwarded` (appending the client to what came in),
/// `X-Forwarded-Proto` and `X-Forwarded-Host` (never passing on a client-chosen one).
/// `client_value` is the client address as a header value (made once per connection); `host`
/// the request's original Host.
pub fn forwarding(
    rewrite: &mut Rewrite,
    headers: &HeaderMap,
    client: IpAddr,
    client_value: &HeaderValue,
    tls: bool,
    host: Option<&HeaderValue>,
) {
    let proto = if tls { "https" } else { "http" };
    let client_text = client_value.to_str().unwrap_or("unknown");
    let xff = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prev) if !prev.is_empty() => owned_value(format!("{prev}, {client_text}")),
        _ => Some(client_value.clone()),
    };
    match xff {
        Some(v) => rewrite.set(X_FORWARDED_FOR.clone(), v),
        None => rewrite.remove(X_FORWARDED_FOR.clone()),
    }
    rewrite.set(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
    let mut element = String::with_capacity(64);
    let previous = headers.get(header::FORWARDED).and_then(|v| v.to_str().ok());
    if let Some(prev) = previous.filter(|p| !p.is_empty()) {
        element.push_str(prev);
        element.push_str(", ");
    }
    element.push_str("for=");
    match client {
        IpAddr::V4(_) => element.push_str(client_text),
        IpAddr::V6(_) => {
            element.push_str("\"[");
            element.push_str(client_text);
            element.push_str("]\"");
        }
    }
    element.push_str(";proto=");
    element.push_str(proto);
    match host {
        Some(v) => {
            rewrite.set(X_FORWARDED_HOST.clone(), v.clone());
            let h = v.as_bytes();
            if h.iter()
                .all(|b| b.is_ascii_alphanumeric() || b"-.".contains(b))
            {
                element.push_str(";host=");
                element.push_str(v.to_str().unwrap_or_default());
            } else if h
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(b))
            {
                // A port or an IPv6 literal is not a token (RFC 7239 §4): quote it.
                element.push_str(";host=\"");
                element.push_str(v.to_str().unwrap_or_default());
                element.push('"');
            }
        }
        None => rewrite.remove(X_FORWARDED_HOST.clone()),
    }
    match owned_value(element) {
        Some(v) => rewrite.set(header::FORWARDED, v),
        None => rewrite.remove(header::FORWARDED),
    }
}

/// [`forwarding`] applied to a header map directly.
#[cfg(test)]
fn add_forwarding(
    headers: &mut HeaderMap,
    client: IpAddr,
    client_value: &HeaderValue,
    tls: bool,
    host: Option<&HeaderValue>,
) {
    let mut rewrite = Rewrite::new(headers, false);
    forwarding(&mut rewrite, headers, client, client_value, tls, host);
    for (name, value) in rewrite.set[..rewrite.set_len].iter().flatten() {
        headers.insert(name.clone(), value.clone());
    }
    for name in &rewrite.nominated {
        headers.remove(name);
    }
}

/// A header value that takes ownership of `text` without copying it.
fn owned_value(text: String) -> Option<HeaderValue> {
    HeaderValue::from_maybe_shared(bytes::Bytes::from(text)).ok()
}

/// A client-supplied request id is kept when it is short and plain; otherwise a new one is made.
pub fn acceptable_request_id(value: &HeaderValue) -> bool {
    let b = value.as_bytes();
    !b.is_empty() && b.len() <= 128 && b.iter().all(|c| c.is_ascii_graphic())
}

/// Checks of the request head that guard against request smuggling and ambiguous framing.
/// hyper already rejects malformed request lines, obs-fold, invalid chunk sizes and conflicting
/// Content-Length values; these are the cases it accepts but a proxy must not forward.
pub fn framing_problem(headers: &HeaderMap) -> Option<&'static str> {
    let has_te = headers.contains_key(header::TRANSFER_ENCODING);
    if has_te && headers.contains_key(header::CONTENT_LENGTH) {
        return Some("both Content-Length and Transfer-Encoding");
    }
    if has_te {
        let mut codings = headers
            .get_all(header::TRANSFER_ENCODING)
            .iter()
            .flat_map(|v| v.as_bytes().split(|b| *b == b','))
            .map(|t| t.trim_ascii())
            .collect::<Vec<_>>();
        let last = codings.pop();
        if !matches!(last, Some(t) if t.eq_ignore_ascii_case(b"chunked"))
            || codings.iter().any(|t| t.eq_ignore_ascii_case(b"chunked"))
        {
            return Some("Transfer-Encoding must end with a single chunked");
        }
    }
    let mut lengths = headers.get_all(header::CONTENT_LENGTH).iter();
    if let Some(first) = lengths.next() {
        if lengths.any(|v| v != first) {
            return Some("conflicting Content-Length values");
        }
        let text = first.as_bytes();
        if text.is_empty() || !text.iter().all(u8::is_ascii_digit) || text.len() > 19 {
            return Some("invalid Content-Length");
        }
    }
    None
}

/// Size of an HTTP/1.1 request head as sent: request line, header lines and the blank line.
pub fn head_size(method: &http::Method, uri_len: usize, headers: &HeaderMap) -> usize {
    let line = method.as_str().len() + 1 + uri_len.max(1) + " HTTP/1.1\r\n".len();
    let fields: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + 2 + v.len() + 2)
        .sum();
    line + fields + 2
}

/// Declared body length, if any (after [`framing_problem`] passed).
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        m
    }

    #[test]
    fn hop_by_hop_removed() {
        let mut h = map(&[
            ("connection", "keep-alive, x-secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("x-keep", "yes"),
        ]);
        remove_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-keep"));
    }

    #[test]
    fn upgrade_kept_when_asked() {
        let mut h = map(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        assert!(is_upgrade_request(&h));
        remove_hop_by_hop(&mut h, true);
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "upgrade");
    }

    #[test]
    fn forwarding_appends() {
        let mut h = map(&[
            ("x-forwarded-for", "203.0.113.9"),
            ("forwarded", "for=203.0.113.9"),
        ]);
        add_forwarding(
            &mut h,
            "2001:db8::1".parse().unwrap(),
            &HeaderValue::from_static("2001:db8::1"),
            true,
            Some(&HeaderValue::from_static("api.example.com")),
        );
        assert_eq!(h["x-forwarded-for"], "203.0.113.9, 2001:db8::1");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "api.example.com");
        assert_eq!(
            h["forwarded"],
            "for=203.0.113.9, for=\"[2001:db8::1]\";proto=https;host=api.example.com"
        );
    }

    #[test]
    fn rewrite_drops_hop_by_hop_and_replaces_set_fields() {
        let h = map(&[
            ("connection", "keep-alive, x-secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "gzip"),
            ("upgrade", "websocket"),
            ("x-request-id", "client-chosen"),
            ("x-keep", "yes"),
            ("x-keep", "twice"),
        ]);
        let mut r = Rewrite::new(&h, false);
        r.set(X_REQUEST_ID.clone(), HeaderValue::from_static("ours"));
        r.set(X_REQUEST_ID.clone(), HeaderValue::from_static("ours-2"));
        let sent: Vec<(String, String)> = r
            .fields(&h)
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
            .collect();
        assert_eq!(
            sent,
            [
                ("x-keep".to_string(), "yes".to_string()),
                ("x-keep".into(), "twice".into()),
                ("x-request-id".into(), "ours-2".into()),
            ]
        );
        let mut applied = h.clone();
        r.apply(&mut applied);
        assert_eq!(applied.len(), 3);
        assert_eq!(applied["x-request-id"], "ours-2");

        let up = map(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        let r = Rewrite::new(&up, true);
        let sent: Vec<String> = r
            .fields(&up)
            .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap()))
            .collect();
        assert_eq!(sent, ["upgrade: websocket", "connection: upgrade"]);
    }

    #[test]
    fn te_trailers_is_asked_for_in_rampart_s_own_name() {
        let h = map(&[("te", "gzip;q=0.5, Trailers"), ("connection", "te")]);
        let r = Rewrite::new(&h, false);
        let sent: Vec<String> = r
            .fields(&h)
            .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap()))
            .collect();
        assert_eq!(sent, ["te: trailers", "connection: te"]);
        let none = map(&[("te", "gzip")]);
        assert_eq!(Rewrite::new(&none, false).fields(&none).count(), 0);
    }

    #[test]
    fn framing_checks() {
        assert!(
            framing_problem(&map(&[
                ("content-length", "5"),
                ("transfer-encoding", "chunked")
            ]))
            .is_some()
        );
        assert!(
            framing_problem(&map(&[("content-length", "5"), ("content-length", "6")])).is_some()
        );
        assert!(framing_problem(&map(&[("content-length", "-1")])).is_some());
        assert!(framing_problem(&map(&[("transfer-encoding", "gzip")])).is_some());
        assert!(framing_problem(&map(&[("transfer-encoding", "chunked, chunked")])).is_some());
        assert!(framing_problem(&map(&[("transfer-encoding", "gzip, chunked")])).is_none());
        assert!(
            framing_problem(&map(&[("content-length", "5"), ("content-length", "5")])).is_none()
        );
        assert_eq!(content_length(&map(&[("content-length", "42")])), Some(42));
    }
}

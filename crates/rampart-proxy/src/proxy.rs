//! The built-in phases of one request: request guard (limits, framing), route, balance
//! (stickiness, affinity), forward (timeouts, retries), response (header rewriting, sticky
//! cookie, WebSocket hand-off) and log.

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body as _;
use rampart_balance as balance;
use rampart_config::{HashKey, SameSite, Sticky};

use crate::Shared;
use crate::accesslog::{AccessRecord, now_rfc3339};
use crate::body::{BodyFinish, BodyTooLarge, ClientBody, RequestBody, ResponseBody, UpstreamBody};
use crate::error::{ErrorKind, ProxyError};
use crate::h1client::{self, SendError};
use crate::headers;
use crate::metrics::{BackendLabels, ErrorLabels};
use crate::phase::ConnInfo;
use crate::router::{self, RouteInput};
use crate::runtime::{BackendSlots, PoolRuntime, Runtime, Slot};
use crate::upstream::Sender;

/// Generates request ids: a random per-process prefix and a counter. Each thread counts in its
/// own block of ids (the top 16 bits of the counter name the block), so no counter is shared
/// between cores.
pub struct RequestIds {
    prefix: u64,
    blocks: AtomicU64,
}

impl RequestIds {
    pub fn new() -> Self {
        RequestIds {
            prefix: rand::random(),
            blocks: AtomicU64::new(0),
        }
    }
    fn next(&self) -> HeaderValue {
        thread_local! {
            static NEXT: std::cell::Cell<Option<u64>> = const { std::cell::Cell::new(None) };
        }
        let n = NEXT.with(|next| {
            let n = next
                .get()
                .unwrap_or_else(|| self.blocks.fetch_add(1, Ordering::Relaxed) << 48);
            next.set(Some(n + 1));
            n
        });
        let mut buf = [0u8; 32];
        hex_into(&mut buf[..16], self.prefix);
        hex_into(&mut buf[16..], n);
        HeaderValue::from_bytes(&buf).expect("hex digits are a valid header value")
    }
}

fn hex_into(out: &mut [u8], value: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in out.iter_mut().enumerate() {
        let shift = 4 * (15 - i);
        *b = DIGITS[((value >> shift) & 0xf) as usize];
    }
}

impl Default for RequestIds {
    fn default() -> Self {
        Self::new()
    }
}

/// What the log phase needs to know about a request.
struct Outcome {
    request_id: HeaderValue,
    method: Method,
    host: String,
    path: String,
    version: Version,
    route: Option<usize>,
    pool: Option<usize>,
    backend: Option<usize>,
    attempts: u32,
    upstream_time: Option<Duration>,
    error: Option<&'static str>,
    rate_headers: Option<crate::firewall::RateHeaders>,
    /// The firewall answered (its event is already recorded).
    firewall_refused: bool,
    /// The WAF transaction of a WAF route.
    waf: Option<Box<rampart_waf::Transaction>>,
}

/// What every request on one client connection shares. Requests clone this per-connection
/// handle, never the process-wide `Shared`, whose reference count would otherwise be written
/// by every core on every request.
pub struct Connection {
    pub shared: Arc<Shared>,
    pub info: Arc<ConnInfo>,
}

/// Entry point: one request on one client connection.
pub async fn handle(
    connection: Arc<Connection>,
    req: Request<ClientBody>,
) -> Result<Response<ResponseBody>, Infallible> {
    let start = Instant::now();
    let shared = &connection.shared;
    let conn = &connection.info;
    let rt = shared.request_runtime();
    // A source banned while this connection was open: no more answers on it.
    if shared.bans.banned(conn.client.ip(), start).is_some() {
        crate::firewall::count_block(shared, "banned");
        let mut refusal =
            crate::firewall::Refusal::new(StatusCode::FORBIDDEN, "banned", "", "source is banned")
                .into_response();
        refusal
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return Ok(refusal);
    }
    let request_id = match req.headers().get(&headers::X_REQUEST_ID) {
        Some(v) if headers::acceptable_request_id(v) => v.clone(),
        _ => shared.request_ids.next(),
    };
    // Strings only the access log needs are not made when it is off.
    let logging = shared.access_log.load().enabled();
    let mut outcome = Outcome {
        request_id,
        method: req.method().clone(),
        host: String::new(),
        path: if logging {
            req.uri().path().to_string()
        } else {
            String::new()
        },
        version: req.version(),
        route: None,
        pool: None,
        backend: None,
        attempts: 0,
        upstream_time: None,
        error: None,
        rate_headers: None,
        firewall_refused: false,
        waf: None,
    };
    if let Some(detector) = &rt.firewall.detector
        && detector.watches(rampart_firewall::EventKind::ScannerUserAgent)
        && let Some(agent) = req.headers().get(header::USER_AGENT)
        && rampart_firewall::is_scanner_agent(agent.as_bytes())
    {
        crate::firewall::security_event(
            shared,
            &rt.firewall,
            conn,
            crate::firewall::Event {
                kind: rampart_firewall::EventKind::ScannerUserAgent,
                reason: "",
                detail: &String::from_utf8_lossy(agent.as_bytes()),
                request_id: Some(&outcome.request_id),
            },
        );
    }
    let listener_limits = rt
        .listeners
        .get(&*conn.listener)
        .map(|l| l.config.limits.clone())
        .unwrap_or_default();
    // The total request timeout is enforced inside, as a deadline that bounds every connect
    // and response wait, so each request arms one timer at a time.
    let deadline = start + listener_limits.request_timeout;
    let result = proxy(shared, &rt, conn, req, &mut outcome, deadline).await;
    let mut response = match result {
        Ok(resp) => resp,
        Err(e) => {
            outcome.error = Some(e.label());
            shared
                .metrics
                .errors
                .get_or_create(&ErrorLabels {
                    listener: conn.listener.to_string(),
                    kind: e.label(),
                })
                .inc();
            tracing::debug!(request_id = ?outcome.request_id, error = %e, "request failed");
            error_response(&e)
        }
    };
    if let Some(mut tx) = outcome.waf.take() {
        // Phase 3 on the response head; an intervention there replaces the answer.
        if tx.intervention().is_none() {
            let head: Vec<(String, Vec<u8>)> = response
                .headers()
                .iter()
                .map(|(k, v)| (k.as_str().to_string(), v.as_bytes().to_vec()))
                .collect();
            tx.process_response_headers(response.status().as_u16(), &head);
            if let Some(i) = tx.intervention().cloned() {
                response = waf_refusal(shared, &rt, conn, &mut outcome, &i);
            } else if inspects_response_body(tx.rules(), &response) {
                // Phase 4 on the first SecResponseBodyLimit bytes; the body goes on whole.
                let limit =
                    usize::try_from(tx.rules().settings.response_body_limit).unwrap_or(usize::MAX);
                let (parts, mut body) = response.into_parts();
                let mut seen = bytes::BytesMut::new();
                while seen.len() < limit {
                    match http_body_util::BodyExt::frame(&mut body).await {
                        Some(Ok(frame)) => {
                            if let Ok(data) = frame.into_data() {
                                seen.extend_from_slice(&data);
                            }
                        }
                        Some(Err(_)) | None => break,
                    }
                }
                let seen = seen.freeze();
                tx.process_response_body(&seen[..seen.len().min(limit)]);
                body.prepend(seen);
                response = Response::from_parts(parts, body);
                if let Some(i) = tx.intervention().cloned() {
                    response = waf_refusal(shared, &rt, conn, &mut outcome, &i);
                }
            }
        }
        tx.process_logging();
        let log = shared.waf_audit.load();
        if log.enabled() {
            log.log(crate::waf::audit_record(&tx, response.status().as_u16()));
        }
    }
    let status = response.status().as_u16();
    if (400..500).contains(&status) && !outcome.firewall_refused {
        use rampart_firewall::EventKind;
        let kind = match (status, outcome.backend.is_some()) {
            (404, _) => EventKind::NotFound,
            (401 | 403, true) => EventKind::AuthFailure,
            (408, _) => EventKind::SlowClient,
            (400 | 413 | 414 | 431, false) => EventKind::ProtocolViolation,
            _ => EventKind::ClientError,
        };
        crate::firewall::security_event(
            shared,
            &rt.firewall,
            conn,
            crate::firewall::Event {
                kind,
                reason: outcome.error.unwrap_or(""),
                detail: "",
                request_id: Some(&outcome.request_id),
            },
        );
    }
    if let Some(route) = outcome.route {
        crate::firewall::apply_to_response(
            response.headers_mut(),
            rt.firewall.scrubbed(route),
            outcome.rate_headers.take(),
        );
    }
    response
        .headers_mut()
        .insert(&headers::X_REQUEST_ID, outcome.request_id.clone());
    if shared.draining.load(std::sync::atomic::Ordering::Relaxed)
        && outcome.version < Version::HTTP_2
        && response.status() != StatusCode::SWITCHING_PROTOCOLS
    {
        // The process is stopping: the client should take its next request elsewhere.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    record_metrics(&rt, &outcome, response.status(), start);
    Ok(attach_log(shared, &rt, conn, outcome, response, start))
}

/// Whether phase 4 reads this response's body: access on, a body to read, and a media type the
/// rule set lists.
fn inspects_response_body(rules: &rampart_waf::RuleSet, response: &Response<ResponseBody>) -> bool {
    let settings = &rules.settings;
    if !settings.response_body_access || response.body().is_end_stream() {
        return false;
    }
    let media = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    settings.response_body_mime_types.contains(&media)
}

/// The answer to a WAF intervention (its security event recorded).
fn waf_refusal(
    shared: &Arc<Shared>,
    rt: &Runtime,
    conn: &ConnInfo,
    outcome: &mut Outcome,
    intervention: &rampart_waf::Intervention,
) -> Response<ResponseBody> {
    crate::firewall::count_block(shared, "waf");
    crate::firewall::security_event(
        shared,
        &rt.firewall,
        conn,
        crate::firewall::Event {
            kind: rampart_firewall::EventKind::WafBlock,
            reason: "waf",
            detail: &format!("rule {}", intervention.rule_id),
            request_id: Some(&outcome.request_id),
        },
    );
    outcome.error = Some("waf");
    outcome.firewall_refused = true;
    let mut refusal = crate::firewall::Refusal::new(
        StatusCode::from_u16(intervention.status).unwrap_or(StatusCode::FORBIDDEN),
        "waf",
        "",
        format!("WAF rule {}", intervention.rule_id),
    );
    if let Some(to) = &intervention.redirect
        && let Ok(location) = HeaderValue::from_str(to)
    {
        refusal.headers.push((header::LOCATION, location));
    }
    let mut response = refusal.into_response();
    if intervention.drop {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

fn error_response(e: &ProxyError) -> Response<ResponseBody> {
    let status = e.status();
    let body = format!(
        "{} {}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    let mut resp = Response::new(ResponseBody::local(Bytes::from(body), None));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if status == StatusCode::SERVICE_UNAVAILABLE {
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    if e.blame() == crate::error::Blame::Client {
        // After a framing or limit error the rest of the connection cannot be trusted.
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

fn record_metrics(rt: &Runtime, o: &Outcome, status: StatusCode, start: Instant) {
    let route = match o.route {
        Some(i) => &rt.route_metrics[i],
        None => &rt.unrouted_metrics,
    };
    route.count(o.backend, status.as_u16());
    route.duration.observe(start.elapsed().as_secs_f64());
    if let (Some(t), Some(p), Some(b)) = (o.upstream_time, o.pool, o.backend) {
        rt.pools[p].upstream_duration[b].observe(t.as_secs_f64());
    }
}

/// Writes the access-log line when the response body ends (so bytes and total time are known).
struct LogOnFinish {
    shared: Arc<Shared>,
    record: AccessRecord,
    start: Instant,
}

impl BodyFinish for LogOnFinish {
    fn finish(self: Box<Self>, bytes: u64, complete: bool) {
        let mut record = self.record;
        record.bytes_sent = bytes;
        record.complete = complete;
        record.total_ms = self.start.elapsed().as_secs_f64() * 1000.0;
        self.shared.access_log.load().log(record);
    }
}

/// Ends the backend's in-flight count and frees its request slot when the response body is
/// done. (An HTTP/1.1 connection returns to its pool from the body itself, as soon as the last
/// byte is read.)
struct UpstreamFinish {
    _in_flight: balance::InFlight,
    _slot: Option<Slot>,
}

impl BodyFinish for UpstreamFinish {
    fn finish(self: Box<Self>, _bytes: u64, _complete: bool) {}
}

fn attach_log(
    shared: &Arc<Shared>,
    rt: &Runtime,
    conn: &ConnInfo,
    o: Outcome,
    mut response: Response<ResponseBody>,
    start: Instant,
) -> Response<ResponseBody> {
    let logger = shared.access_log.load();
    if !logger.enabled() {
        return response;
    }
    let pool = o.pool.map(|i| &rt.pools[i]);
    let record = AccessRecord {
        ts: now_rfc3339(),
        request_id: String::from_utf8_lossy(o.request_id.as_bytes()).into_owned(),
        client: conn.client.ip().to_string(),
        listener: conn.listener.to_string(),
        zone: conn.zone.to_string(),
        protocol: match o.version {
            Version::HTTP_2 => "HTTP/2",
            Version::HTTP_10 => "HTTP/1.0",
            _ => "HTTP/1.1",
        },
        method: o.method.to_string(),
        host: o.host,
        path: o.path,
        status: response.status().as_u16(),
        route: o.route.map(|i| rt.snapshot.routes[i].name.clone()),
        pool: pool.map(|p| p.config.name.clone()),
        backend: match (pool, o.backend) {
            (Some(p), Some(b)) => Some(p.config.backends[b].id.clone()),
            _ => None,
        },
        attempts: o.attempts,
        bytes_sent: 0,
        complete: false,
        duration_ms: start.elapsed().as_secs_f64() * 1000.0,
        total_ms: 0.0,
        upstream_ms: o.upstream_time.map(|t| t.as_secs_f64() * 1000.0),
        error: o.error,
    };
    let finisher = Box::new(LogOnFinish {
        shared: shared.clone(),
        record,
        start,
    });
    response.body_mut().chain_finish(finisher);
    response
}

async fn proxy(
    shared: &Arc<Shared>,
    rt: &Runtime,
    conn: &Arc<ConnInfo>,
    req: Request<ClientBody>,
    outcome: &mut Outcome,
    deadline: Instant,
) -> Result<Response<ResponseBody>, ProxyError> {
    let (parts, body) = req.into_parts();
    let limits = rt
        .listeners
        .get(&*conn.listener)
        .map(|l| l.config.limits.clone())
        .unwrap_or_default();

    // Request guard: limits and framing.
    let uri_len = parts.uri.path_and_query().map_or(0, |p| p.as_str().len());
    if uri_len > limits.max_uri_bytes {
        return Err(ProxyError::new(
            ErrorKind::UriTooLong,
            format!("URI of {uri_len} bytes"),
        ));
    }
    if parts.headers.len() > limits.max_headers {
        return Err(ProxyError::new(
            ErrorKind::HeadersTooLarge,
            format!("{} header fields", parts.headers.len()),
        ));
    }
    // hyper's HTTP/1.1 buffer cannot go below 8 KiB, so smaller limits are checked here.
    let head_len = headers::head_size(&parts.method, uri_len, &parts.headers);
    if head_len > limits.max_header_bytes {
        return Err(ProxyError::new(
            ErrorKind::HeadersTooLarge,
            format!("request head of {head_len} bytes"),
        ));
    }
    let framing_problem = headers::framing_problem(&parts.headers).or_else(|| {
        // RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 request is badly framed.
        (parts.version == Version::HTTP_10 && parts.headers.contains_key(header::TRANSFER_ENCODING))
            .then_some("Transfer-Encoding in an HTTP/1.0 request")
    });
    if let Some(problem) = framing_problem {
        return Err(ProxyError::new(ErrorKind::BadRequest, problem));
    }
    for guard in &shared.phases.request {
        if let Err(r) = guard.check(conn, &parts) {
            let mut resp = Response::new(ResponseBody::local(
                format!(
                    "{} {}\n",
                    r.status.as_u16(),
                    r.status.canonical_reason().unwrap_or("")
                ),
                None,
            ));
            *resp.status_mut() = r.status;
            outcome.error = Some(r.reason);
            return Ok(resp);
        }
    }
    let host = router::request_host(&parts.uri, &parts.headers);
    if host.is_none()
        && (parts.version == Version::HTTP_11 || parts.headers.contains_key(header::HOST))
    {
        return Err(ProxyError::new(
            ErrorKind::BadRequest,
            "missing or invalid Host",
        ));
    }
    let host = host.unwrap_or_default();
    if shared.access_log.load().enabled() {
        outcome.host = host.to_string();
    }

    // Route, on the path as the backend will resolve it, so `/x/../admin` or `/%61dmin` meet
    // the rules of the `/admin` route.
    let raw_path = parts.uri.path();
    let normalized = rampart_firewall::content::needs_normalizing(raw_path)
        .then(|| rampart_firewall::content::normalize_path(raw_path));
    let route_index = router::select(
        &rt.snapshot.routes,
        &RouteInput {
            listener: &conn.listener,
            host: &host,
            path: normalized.as_deref().unwrap_or(raw_path),
            method: &parts.method,
            headers: &parts.headers,
        },
    )
    .ok_or_else(|| ProxyError::new(ErrorKind::NoRoute, "no route matches"))?;
    outcome.route = Some(route_index);
    let route = &rt.snapshot.routes[route_index];
    let pool = &rt.pools[route.pool];
    outcome.pool = Some(route.pool);
    match rt.firewall.check_request(
        conn,
        crate::firewall::RouteRef {
            index: route_index,
            name: &route.name,
            pool: &pool.config.name,
        },
        &parts,
        !body.is_end_stream(),
        Instant::now(),
    ) {
        Ok(rate) => outcome.rate_headers = rate,
        Err(refusal) => {
            tracing::debug!(request_id = ?outcome.request_id, client = %conn.client, reason = refusal.reason, detail = %refusal.detail, "request refused by the firewall");
            crate::firewall::count_block(shared, refusal.reason);
            if refusal.reason == "rate_limit" {
                shared
                    .metrics
                    .rate_limited
                    .get_or_create(&crate::metrics::NameLabels {
                        name: refusal.rule.clone(),
                    })
                    .inc();
            }
            crate::firewall::security_event(
                shared,
                &rt.firewall,
                conn,
                crate::firewall::Event {
                    kind: crate::firewall::refusal_event(refusal.reason),
                    reason: &refusal.rule,
                    detail: &refusal.detail,
                    request_id: Some(&outcome.request_id),
                },
            );
            outcome.error = Some(refusal.reason);
            outcome.firewall_refused = true;
            return Ok(refusal.into_response());
        }
    }

    let body_limit = route.max_body.unwrap_or(limits.max_body);
    if let Some(len) = headers::content_length(&parts.headers)
        && len > body_limit
    {
        return Err(ProxyError::new(
            ErrorKind::BodyTooLarge,
            format!("Content-Length {len} > {body_limit}"),
        ));
    }

    // WAF: request headers, then the body read whole (up to the limits) and inspected.
    let mut body = body;
    if let Some(rules) = rt.waf.rules(route_index) {
        let mut tx = Box::new(crate::waf::begin(
            rules,
            &parts,
            conn.client,
            &outcome.request_id,
        ));
        tx.process_request_headers();
        if tx.intervention().is_none() {
            let settings = &rules.settings;
            if settings.request_body_access && !body.is_end_stream() {
                let limit = body_limit.max(settings.request_body_limit);
                let mut reader = RequestBody::new(body, limit, limits.body_read_timeout);
                let mut buffer = bytes::BytesMut::new();
                while let Some(frame) = http_body_util::BodyExt::frame(&mut reader).await {
                    let frame = frame.map_err(|e| crate::h1client::client_body_error(&*e))?;
                    if let Ok(data) = frame.into_data() {
                        buffer.extend_from_slice(&data);
                    }
                }
                let whole = buffer.freeze();
                let over = whole.len() as u64 > settings.request_body_limit;
                if over
                    && settings.request_body_limit_action == rampart_waf::rules::LimitAction::Reject
                {
                    outcome.waf = Some(tx);
                    return Err(ProxyError::new(
                        ErrorKind::BodyTooLarge,
                        format!(
                            "request body over the WAF limit of {} bytes",
                            settings.request_body_limit
                        ),
                    ));
                }
                let inspected = &whole[..whole.len().min(settings.request_body_limit as usize)];
                tx.process_request_body(inspected);
                body = ClientBody::Buffered(Some(whole));
            } else {
                tx.process_request_body(b"");
            }
        }
        let refusal = tx.intervention().cloned();
        outcome.waf = Some(tx);
        if let Some(i) = refusal {
            return Ok(waf_refusal(shared, rt, conn, outcome, &i));
        }
    }

    // Prepare the upstream head once; retries reuse it.
    let upgrade = parts.version == Version::HTTP_11 && headers::is_upgrade_request(&parts.headers);
    let client_upgrade = if upgrade {
        parts
            .extensions
            .get::<crate::h1server::OnUpgrade>()
            .and_then(|u| u.take())
    } else {
        None
    };
    // The Host the client asked for: the URI authority (HTTP/2, absolute-form) wins over the
    // Host header, as RFC 9112 §3.2.2 says.
    let original_host = match parts.uri.authority() {
        // host[:port] only: userinfo must never travel on as Host.
        Some(a) => match a.port() {
            Some(port) => HeaderValue::from_str(&format!("{}:{port}", a.host())).ok(),
            None => HeaderValue::from_str(a.host()).ok(),
        },
        None => parts.headers.get(header::HOST).cloned(),
    };
    let mut rewrite = headers::Rewrite::new(&parts.headers, upgrade);
    headers::forwarding(
        &mut rewrite,
        &parts.headers,
        conn.client.ip(),
        &conn.client_value,
        conn.tls,
        original_host.as_ref(),
    );
    rewrite.set(headers::X_REQUEST_ID.clone(), outcome.request_id.clone());
    if let Some(v) = original_host {
        rewrite.set(header::HOST, v);
    }

    let now = Instant::now();
    let (sticky_backend, affinity_key) = sticky_choice(shared, pool, conn.client.ip(), &parts, now);
    let hash_key = pool
        .config
        .hash_key
        .as_ref()
        .and_then(|k| hash_key_of(k, conn.client.ip(), &parts));

    let idempotent = matches!(
        parts.method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    );
    let mut body = Some(if body.is_end_stream() {
        RequestBody::empty()
    } else {
        RequestBody::new(body, body_limit, limits.body_read_timeout)
    });
    let replayable = body.as_ref().is_some_and(|b| b.is_end_stream());
    let route_timeout = route.timeout;

    pool.retry_budget.record_request(now);
    let first_now = now;
    // Backends tried so far (attempts are at most 10 by config validation).
    let mut tried_buf = [0usize; 10];
    let mut tried_len = 0;
    let max_attempts = if upgrade {
        1
    } else {
        pool.config.retries.attempts
    };
    let mut last_error: Option<ProxyError> = None;
    // Set when a retry was already taken from the budget (retry on status).
    let mut retry_reserved = false;
    for attempt in 0..max_attempts {
        let now = if attempt == 0 {
            first_now
        } else {
            Instant::now()
        };
        let tried = &tried_buf[..tried_len];
        if attempt > 0 && !std::mem::take(&mut retry_reserved) && !pool.retry_budget.try_retry(now)
        {
            break;
        }
        let first = attempt == 0;
        let choose = |exclude: &[usize], now: Instant| {
            sticky_backend
                .filter(|_| first)
                .or_else(|| affinity_key.and_then(|k| affinity_pick(pool, k, exclude, now)))
                .or_else(|| pool.balancer.pick(hash_key, exclude, now))
        };
        let (backend, slot) = match &pool.slots {
            None => match choose(tried, now) {
                Some(b) => (b, None),
                None => break,
            },
            Some(slots) => match queue_for_slot(pool, slots, &choose, tried, deadline).await? {
                Some((b, slot)) => (b, Some(slot)),
                None => break,
            },
        };
        if attempt > 0 {
            shared
                .metrics
                .retries
                .get_or_create(&BackendLabels {
                    pool: pool.config.name.clone(),
                    backend: pool.config.backends[backend].id.clone(),
                })
                .inc();
        }
        tried_buf[tried_len.min(9)] = backend;
        tried_len = (tried_len + 1).min(10);
        outcome.backend = Some(backend);
        outcome.attempts = attempt + 1;
        let in_flight = pool.balancer.start_request(backend);
        let endpoint = &pool.endpoints[backend];
        let attempt_start = now;

        let header_timeout = route_timeout.unwrap_or(pool.config.timeouts.response_header);
        // A connection that starts with a PROXY header belongs to this client connection.
        let private = endpoint.sends_proxy_protocol();
        let mut fresh = upgrade || private;
        let sent = loop {
            let connect_timeout = bounded(pool.config.timeouts.connect, deadline, Instant::now())?;
            let client = Some(crate::proxy_protocol::Addresses {
                source: conn.client,
                destination: conn.local,
            });
            let sender = match endpoint.checkout(connect_timeout, fresh, client).await {
                Ok(s) => s,
                Err(e) => break Err(SendError::unsent(e, body.take())),
            };
            let Some(this_body) = body.take() else {
                return Err(last_error.unwrap_or_else(|| {
                    ProxyError::new(ErrorKind::Internal, "request body already consumed")
                }));
            };
            let header_timeout = bounded(header_timeout, deadline, Instant::now())?;
            let result = send(
                sender,
                &parts,
                &rewrite,
                this_body,
                endpoint,
                !private,
                header_timeout,
            )
            .await;
            match result {
                // A reused connection the upstream had closed while idle: try once more on a
                // fresh connection to the same backend when the request can be sent again.
                Err(e)
                    if e.stale
                        && !fresh
                        && (e.returned.is_some() || (replayable && idempotent)) =>
                {
                    fresh = true;
                    body = Some(e.returned.unwrap_or_else(RequestBody::empty));
                    continue;
                }
                other => break other,
            }
        };
        let latency = attempt_start.elapsed();
        match sent {
            Ok(mut resp) => {
                let status = resp.status();
                let retry_status = pool.config.retries.on_status.contains(&status.as_u16());
                record_outcome(shared, pool, backend, latency, !status.is_server_error());
                // Only drop this answer when a retry can really follow; otherwise the client
                // gets the backend's own answer rather than a 502.
                if retry_status
                    && idempotent
                    && replayable
                    && attempt + 1 < max_attempts
                    && has_untried_backend(pool, &tried_buf[..tried_len], Instant::now())
                    && pool.retry_budget.try_retry(Instant::now())
                {
                    retry_reserved = true;
                    body = Some(RequestBody::empty());
                    last_error = Some(ProxyError::new(
                        ErrorKind::UpstreamProtocol,
                        format!("upstream answered {status}"),
                    ));
                    // Drop the response; its connection closes rather than draining an unread body.
                    continue;
                }
                outcome.upstream_time = Some(latency);
                if status == StatusCode::SWITCHING_PROTOCOLS {
                    headers::remove_hop_by_hop(resp.headers_mut(), true);
                    let (parts, upstream_body) = resp.into_parts();
                    if let (Some(client_upgrade), UpstreamBody::H1(b)) =
                        (client_upgrade, upstream_body)
                        && let Some((io, early)) = b.into_upgraded()
                    {
                        tokio::spawn(bridge_upgrade(client_upgrade, io, early, (in_flight, slot)));
                    }
                    return Ok(Response::from_parts(parts, ResponseBody::empty()));
                }
                let set_cookie = sticky_cookie(shared, pool, backend, sticky_backend);
                let (mut resp_parts, resp_body) = resp.into_parts();
                headers::remove_hop_by_hop(&mut resp_parts.headers, false);
                if let Some(c) = set_cookie {
                    resp_parts.headers.append(header::SET_COOKIE, c);
                }
                let finish = Box::new(UpstreamFinish {
                    _in_flight: in_flight,
                    _slot: slot,
                });
                return Ok(Response::from_parts(
                    resp_parts,
                    ResponseBody::upstream(resp_body, Some(finish)),
                ));
            }
            Err(SendError {
                error,
                returned,
                stale,
            }) => {
                // A client that aborts or oversends its body must not eject healthy backends,
                // nor does a keep-alive race on a reused connection.
                if error.blame() == crate::error::Blame::Upstream && !stale {
                    record_outcome(shared, pool, backend, latency, false);
                }
                if let Some(b) = returned {
                    body = Some(b);
                } else if replayable && idempotent {
                    body = Some(RequestBody::empty());
                } else {
                    return Err(error);
                }
                last_error = Some(error);
            }
        }
    }
    Err(last_error.unwrap_or_else(|| {
        ProxyError::new(
            ErrorKind::NoHealthyBackend,
            format!("pool \"{}\" has no available backend", pool.config.name),
        )
    }))
}

/// With per-backend request caps: a backend chosen by `choose` and one of its slots, waiting in
/// the pool's queue while every eligible backend is full. `Ok(None)` when no backend is
/// available at all.
async fn queue_for_slot(
    pool: &PoolRuntime,
    slots: &BackendSlots,
    choose: &(dyn Fn(&[usize], Instant) -> Option<usize> + Sync),
    tried: &[usize],
    deadline: Instant,
) -> Result<Option<(usize, Slot)>, ProxyError> {
    struct Waiting<'a>(&'a AtomicU64);
    impl Drop for Waiting<'_> {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::AcqRel);
        }
    }
    let started = Instant::now();
    let until = (started + pool.config.timeouts.queue).min(deadline);
    let mut waiting: Option<Waiting<'_>> = None;
    let mut exclude = Vec::with_capacity(tried.len() + slots.per_backend.len());
    loop {
        // Registered before looking, so a slot freed in between still wakes this request.
        let freed = slots.freed.notified();
        tokio::pin!(freed);
        freed.as_mut().enable();
        let now = Instant::now();
        exclude.clear();
        exclude.extend_from_slice(tried);
        exclude.extend((0..slots.per_backend.len()).filter(|&i| slots.is_full(i)));
        // A backend with room if there is one; else the one the request would wait for.
        let Some(backend) = choose(&exclude, now).or_else(|| choose(tried, now)) else {
            return Ok(None);
        };
        if let Some(slot) = slots.try_take(backend) {
            return Ok(Some((backend, slot)));
        }
        if waiting.is_none() {
            let ahead = slots.waiting.fetch_add(1, Ordering::AcqRel);
            let guard = Waiting(&slots.waiting);
            let max = pool.config.max_queue as u64;
            if max > 0 && ahead >= max {
                return Err(ProxyError::new(
                    ErrorKind::QueueFull,
                    format!(
                        "pool \"{}\": every backend at its request limit and {ahead} requests queued",
                        pool.config.name
                    ),
                ));
            }
            waiting = Some(guard);
        }
        let timed_out = || {
            ProxyError::new(
                ErrorKind::QueueTimeout,
                format!(
                    "pool \"{}\": no backend slot within {:?}",
                    pool.config.name,
                    started.elapsed()
                ),
            )
        };
        let left = until
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(timed_out)?;
        if tokio::time::timeout(left, freed).await.is_err() {
            return Err(timed_out());
        }
    }
}

/// `timeout`, cut to what is left before the request's deadline.
fn bounded(timeout: Duration, deadline: Instant, now: Instant) -> Result<Duration, ProxyError> {
    match deadline.checked_duration_since(now) {
        Some(left) if !left.is_zero() => Ok(timeout.min(left)),
        _ => Err(ProxyError::new(
            ErrorKind::RequestTimeout,
            "request timeout reached",
        )),
    }
}

/// Whether some backend not yet tried by this request could take a retry.
fn has_untried_backend(pool: &PoolRuntime, tried: &[usize], now: Instant) -> bool {
    (0..pool.balancer.len()).any(|i| {
        !tried.contains(&i)
            && pool.config.backends[i].weight > 0
            && pool.balancer.is_available(i, now)
    })
}

/// Feeds passive health (EWMA, outlier detection) and counts ejections it causes.
pub(crate) fn record_outcome(
    shared: &Shared,
    pool: &PoolRuntime,
    backend: usize,
    latency: Duration,
    success: bool,
) {
    let now = Instant::now();
    if success {
        pool.balancer.record_outcome(backend, latency, true, now);
        return;
    }
    let was_ejected = pool
        .balancer
        .backend_at_time(backend, now)
        .ejected_until
        .is_some();
    pool.balancer.record_outcome(backend, latency, false, now);
    if !was_ejected
        && pool
            .balancer
            .backend_at_time(backend, now)
            .ejected_until
            .is_some()
    {
        let id = &pool.config.backends[backend].id;
        tracing::warn!(pool = %pool.config.name, backend = %id, "backend ejected after consecutive failures");
        shared
            .metrics
            .ejections
            .get_or_create(&BackendLabels {
                pool: pool.config.name.clone(),
                backend: id.clone(),
            })
            .inc();
    }
}

/// The HTTP/2 form of the request: absolute URI from Host, no Host header.
fn h2_request(
    parts: &http::request::Parts,
    rewrite: &headers::Rewrite,
    body: RequestBody,
    tls: bool,
) -> Result<Request<RequestBody>, ProxyError> {
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .filter(|p| p.starts_with('/'))
        .ok_or_else(bad_target)?;
    let mut fields = parts.headers.clone();
    rewrite.apply(&mut fields);
    let authority = fields
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .ok_or_else(bad_target)?;
    let scheme = if tls { "https" } else { "http" };
    let uri = Uri::try_from(format!("{scheme}://{authority}{path_and_query}"))
        .map_err(|_| bad_target())?;
    let mut req = Request::new(body);
    *req.method_mut() = parts.method.clone();
    *req.headers_mut() = fields;
    *req.version_mut() = Version::HTTP_2;
    *req.uri_mut() = uri;
    req.headers_mut().remove(header::HOST);
    // HTTP/2 has no connection options; `TE: trailers` alone says it.
    req.headers_mut().remove(header::CONNECTION);
    Ok(req)
}

/// A target that cannot be sent as-is (CONNECT authority-form, `*` towards HTTP/2) is refused
/// rather than rewritten: a request must never reach another resource than it named.
fn bad_target() -> ProxyError {
    ProxyError::new(ErrorKind::BadRequest, "request target cannot be forwarded")
}

/// Sends the request on `sender` and waits (at most `header_timeout`) for the response head.
/// With `reuse`, an HTTP/1.1 connection returns to `endpoint`'s pool after the response.
async fn send(
    sender: Sender,
    parts: &http::request::Parts,
    rewrite: &headers::Rewrite,
    body: RequestBody,
    endpoint: &Arc<crate::upstream::Endpoint>,
    reuse: bool,
    header_timeout: Duration,
) -> Result<Response<UpstreamBody>, SendError> {
    match sender {
        Sender::H1(conn) => {
            let Some(target) = parts.uri.path_and_query().map(|p| p.as_str()) else {
                return Err(SendError::unsent(bad_target(), Some(body)));
            };
            let head = h1client::RequestHead {
                method: &parts.method,
                target,
                headers: &parts.headers,
                rewrite: Some(rewrite),
            };
            let body = (!body.is_end_stream()).then_some(body);
            let home = reuse.then(|| endpoint.clone());
            let exchange = h1client::send(conn, head, body, home);
            h1client::with_timeout(header_timeout, exchange)
                .await
                .map(|r| r.map(UpstreamBody::H1))
        }
        Sender::H2(mut s) => {
            let req = match h2_request(parts, rewrite, body, endpoint.is_tls()) {
                Ok(r) => r,
                Err(e) => return Err(SendError::unsent(e, None)),
            };
            if s.ready().await.is_err() {
                return Err(SendError::unsent(
                    ProxyError::new(ErrorKind::ConnectFailed, "HTTP/2 connection closed"),
                    Some(req.into_body()),
                ));
            }
            let fut = s.try_send_request(req);
            match tokio::time::timeout(header_timeout, fut).await {
                Err(_) => Err(SendError::unsent(
                    ProxyError::new(
                        ErrorKind::UpstreamTimeout,
                        format!("no response head within {header_timeout:?}"),
                    ),
                    None,
                )),
                Ok(Ok(resp)) => Ok(resp.map(UpstreamBody::H2)),
                Ok(Err(mut e)) => {
                    let returned = e.take_message().map(|r| r.into_body());
                    Err(SendError::unsent(
                        classify(e.into_error(), returned.is_some()),
                        returned,
                    ))
                }
            }
        }
    }
}

fn classify(e: hyper::Error, not_sent: bool) -> ProxyError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(s) = source {
        if let Some(t) = s.downcast_ref::<BodyTooLarge>() {
            return ProxyError::new(ErrorKind::BodyTooLarge, t.to_string());
        }
        if let Some(t) = s.downcast_ref::<crate::body::BodyStalled>() {
            return ProxyError::new(ErrorKind::ClientBodyTimeout, t.to_string());
        }
        source = s.source();
    }
    if not_sent {
        return ProxyError::new(
            ErrorKind::ConnectFailed,
            format!("connection unusable: {e}"),
        );
    }
    if e.is_user() {
        return ProxyError::new(ErrorKind::ClientBodyError, format!("client body: {e}"));
    }
    ProxyError::new(ErrorKind::UpstreamProtocol, format!("upstream: {e}"))
}

/// Copies bytes both ways after a 101; the backend counts the tunnel as in flight until it ends.
/// `early` holds bytes the upstream sent right after its 101 head.
async fn bridge_upgrade(
    client: tokio::sync::oneshot::Receiver<crate::h1server::Upgraded>,
    mut upstream: h1client::Io,
    early: Bytes,
    _held: (balance::InFlight, Option<Slot>),
) {
    use tokio::io::AsyncWriteExt;
    let Ok(client) = client.await else {
        return;
    };
    let mut io = client.io;
    if !early.is_empty() && io.write_all(&early).await.is_err() {
        return;
    }
    // Bytes the client sent right behind its request head belong to the tunnel.
    if !client.read_ahead.is_empty() && upstream.write_all(&client.read_ahead).await.is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut io, &mut upstream).await;
}

/// The backend an existing sticky session points to (if still usable) and the affinity key for
/// source-IP / header persistence.
fn sticky_choice(
    shared: &Shared,
    pool: &PoolRuntime,
    client: IpAddr,
    parts: &http::request::Parts,
    now: Instant,
) -> (Option<usize>, Option<u64>) {
    match &pool.config.sticky {
        None => (None, None),
        Some(Sticky::Cookie { name, .. }) => {
            let backend = cookie_value(&parts.headers, name)
                .and_then(|v| shared.sticky.verify(&pool.config.name, v))
                .and_then(|id| pool.balancer.find(&id))
                .filter(|i| pool.balancer.accepts_sticky(*i, now));
            (backend, None)
        }
        Some(Sticky::SourceIp) => (None, Some(ip_hash(client))),
        Some(Sticky::Header(name)) => (
            None,
            parts
                .headers
                .get(name)
                .map(|v| balance::hash_bytes(v.as_bytes())),
        ),
    }
}

pub(crate) fn ip_hash(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(v4) => balance::hash_bytes(&v4.octets()),
        IpAddr::V6(v6) => balance::hash_bytes(&v6.octets()),
    }
}

/// Rendezvous hashing over available backends: a key keeps its backend while that backend is
/// available, and only the keys of a failed backend move.
pub(crate) fn affinity_pick(
    pool: &PoolRuntime,
    key: u64,
    exclude: &[usize],
    now: Instant,
) -> Option<usize> {
    let mut best: Option<(u64, usize)> = None;
    let any_primary = (0..pool.balancer.len()).any(|i| {
        !pool.config.backends[i].backup
            && pool.balancer.is_available(i, now)
            && !exclude.contains(&i)
    });
    for i in 0..pool.balancer.len() {
        let b = &pool.config.backends[i];
        if b.backup == any_primary
            || b.weight == 0
            || exclude.contains(&i)
            || !pool.balancer.is_available(i, now)
        {
            continue;
        }
        let score = mix(key ^ pool.id_hashes[i]);
        if best.is_none_or(|(s, _)| score > s) {
            best = Some((score, i));
        }
    }
    best.map(|(_, i)| i)
}

fn mix(mut x: u64) -> u64 {
    // splitmix64 finaliser
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn hash_key_of(key: &HashKey, client: IpAddr, parts: &http::request::Parts) -> Option<u64> {
    match key {
        HashKey::ClientIp => Some(ip_hash(client)),
        HashKey::Header(name) => parts
            .headers
            .get(name)
            .map(|v| balance::hash_bytes(v.as_bytes())),
        HashKey::Cookie(name) => {
            cookie_value(&parts.headers, name).map(|v| balance::hash_bytes(v.as_bytes()))
        }
        HashKey::Path => Some(balance::hash_bytes(parts.uri.path().as_bytes())),
    }
}

/// Value of a cookie in the request's Cookie headers.
pub fn cookie_value<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

/// A Set-Cookie for cookie stickiness when the client has no valid cookie for `backend`.
fn sticky_cookie(
    shared: &Shared,
    pool: &PoolRuntime,
    backend: usize,
    current: Option<usize>,
) -> Option<HeaderValue> {
    let Some(Sticky::Cookie {
        name,
        ttl,
        secure,
        http_only,
        same_site,
        path,
    }) = &pool.config.sticky
    else {
        return None;
    };
    if current == Some(backend) {
        return None;
    }
    let value = shared
        .sticky
        .sign(&pool.config.name, &pool.config.backends[backend].id);
    let mut cookie = format!("{name}={value}; Path={path}");
    if let Some(ttl) = ttl {
        cookie.push_str(&format!("; Max-Age={}", ttl.as_secs()));
    }
    if *secure {
        cookie.push_str("; Secure");
    }
    if *http_only {
        cookie.push_str("; HttpOnly");
    }
    cookie.push_str(match same_site {
        SameSite::Strict => "; SameSite=Strict",
        SameSite::Lax => "; SameSite=Lax",
        SameSite::None => "; SameSite=None",
    });
    HeaderValue::from_str(&cookie).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_parsing() {
        let mut h = http::HeaderMap::new();
        h.append(header::COOKIE, "a=1; srv=abc.def".parse().unwrap());
        h.append(header::COOKIE, "b=\"2\"".parse().unwrap());
        assert_eq!(cookie_value(&h, "srv"), Some("abc.def"));
        assert_eq!(cookie_value(&h, "b"), Some("2"));
        assert_eq!(cookie_value(&h, "c"), None);
    }
}

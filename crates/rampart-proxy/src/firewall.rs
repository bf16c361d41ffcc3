//! The firewall in the request path: the config's `[firewall]` compiled against the
//! `rampart-firewall` engines, with IP set files loaded and rate-limit key tables carried
//! over from the previous runtime when their parameters did not change.
//!
//! At accept (before TLS): zone classification, the listener's and the zone's ACLs, the
//! listener's connection rate. Per request, after routing: the zone policy, the route's ACL,
//! its content filter, its rate limits. Responses lose the route's scrubbed headers and carry
//! the IETF `RateLimit-Policy` / `RateLimit` fields of the route's first rate limit.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode, header};
use rampart_config::{self as config, Snapshot};
use rampart_firewall as fw;

use crate::Shared;
use crate::body::ResponseBody;
use crate::phase::ConnInfo;

/// One line of the security log: an event and what was decided about it.
#[derive(Debug, serde::Serialize)]
pub struct SecurityRecord {
    pub ts: String,
    #[serde(rename = "type")]
    pub record_type: &'static str,
    /// The event kind (`not_found`, `acl_block`, …) or `ban` / `unban` / `ban_expired`.
    pub event: &'static str,
    pub client: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listener: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// `refused`, `counted`, `allow_listed`, `banned`, `already_banned`, `unbanned`, `expired`.
    pub decision: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scenario: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ban_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offence: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl SecurityRecord {
    pub fn new(event: &'static str, client: IpAddr, decision: &'static str) -> Self {
        SecurityRecord {
            ts: crate::accesslog::now_rfc3339(),
            record_type: "security",
            event,
            client: fw::canonical_ip(client).to_string(),
            listener: None,
            zone: None,
            decision,
            reason: None,
            detail: None,
            scenario: None,
            ban_seconds: None,
            offence: None,
            request_id: None,
        }
    }

    fn on(mut self, conn: &ConnInfo) -> Self {
        self.listener = Some(conn.listener.to_string());
        self.zone = Some(conn.zone.to_string());
        self
    }
}

pub type SecurityLogger = crate::accesslog::JsonLines<SecurityRecord>;

/// What a security event is about.
pub struct Event<'a> {
    pub kind: fw::EventKind,
    /// The rule or limit involved (ACL name, filter reason, …).
    pub reason: &'a str,
    pub detail: &'a str,
    pub request_id: Option<&'a HeaderValue>,
}

/// Counts, logs and feeds one security event to intrusion prevention; a triggered scenario
/// bans the source.
pub fn security_event(
    shared: &Shared,
    firewall: &FirewallRuntime,
    conn: &ConnInfo,
    event: Event<'_>,
) {
    let ip = conn.client.ip();
    let now = Instant::now();
    shared
        .metrics
        .security_events
        .get_or_create(&crate::metrics::KindLabels {
            kind: event.kind.name(),
        })
        .inc();
    let verdict = match &firewall.detector {
        Some(d) => d.record(&shared.bans, ip, event.kind, now),
        None => fw::Verdict::Counted,
    };
    let log = shared.security_log.load();
    let banned_now = matches!(verdict, fw::Verdict::Banned(_));
    let within_allowance = || {
        banned_now
            || shared
                .security_log_limit
                .check(&(fw::canonical_ip(ip), event.kind.name()), now)
                .allowed()
    };
    if log.enabled() && !within_allowance() {
        shared.metrics.security_log_suppressed.inc();
    } else if log.enabled() {
        let decision = match &verdict {
            fw::Verdict::Counted => "counted",
            fw::Verdict::AllowListed => "allow_listed",
            fw::Verdict::Banned(_) => "banned",
            fw::Verdict::AlreadyBanned(_) => "already_banned",
        };
        let mut record = SecurityRecord::new(event.kind.name(), ip, decision).on(conn);
        record.reason = (!event.reason.is_empty()).then(|| event.reason.to_string());
        record.detail = (!event.detail.is_empty()).then(|| truncated(event.detail));
        record.request_id = event
            .request_id
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        if let fw::Verdict::Banned(ban) = &verdict {
            record.scenario = Some(ban.reason.clone());
            record.ban_seconds = Some(ceil_secs(ban.ttl()));
            record.offence = Some(ban.offence);
        }
        log.log(record);
    }
    if let fw::Verdict::Banned(ban) = verdict {
        tracing::warn!(client = %ban.ip, scenario = %ban.reason, ttl_s = ceil_secs(ban.ttl()), offence = ban.offence, "source banned");
        shared
            .metrics
            .scenario_triggers
            .get_or_create(&crate::metrics::NameLabels {
                name: ban.reason.clone(),
            })
            .inc();
        shared.ban_placed(&ban);
    }
}

/// Security log lines per source and event kind: 20 at once, then 5 per second; the rest are
/// counted in `rampart_security_log_suppressed_total`. Bans are always written.
pub fn security_log_limiter() -> fw::KeyedLimiter {
    fw::KeyedLimiter::new(
        fw::Gcra::new(5, Duration::from_secs(1), 20),
        100_000,
        Instant::now(),
    )
}

/// Longest `detail` written to the security log.
const MAX_DETAIL: usize = 256;

fn truncated(text: &str) -> String {
    if text.len() <= MAX_DETAIL {
        return text.to_string();
    }
    let mut end = MAX_DETAIL;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Counts a block by reason.
pub fn count_block(shared: &Shared, reason: &'static str) {
    shared
        .metrics
        .firewall_blocks
        .get_or_create(&crate::metrics::ReasonLabels { reason })
        .inc();
}

/// The event kind for a refusal reason.
pub fn refusal_event(reason: &str) -> fw::EventKind {
    match reason {
        "acl" | "zone_acl" | "zone_policy" => fw::EventKind::AclBlock,
        "rate_limit" | "connection_rate" => fw::EventKind::RateLimited,
        _ => fw::EventKind::ContentBlock,
    }
}

/// Set files larger than this are refused (about 10 million entries).
const MAX_SET_FILE_BYTES: u64 = 256 * 1024 * 1024;

/// A compiled rate limit and its key table.
pub struct Limiter {
    pub spec: config::RateLimitSpec,
    pub table: Arc<fw::KeyedLimiter>,
    policy_header: HeaderValue,
}

impl Limiter {
    fn same_parameters(&self, spec: &config::RateLimitSpec) -> bool {
        let a = &self.spec;
        a.name == spec.name
            && a.count == spec.count
            && a.period == spec.period
            && a.burst == spec.burst
            && a.key == spec.key
            && a.max_keys == spec.max_keys
    }

    /// `RateLimit` field for a decision: remaining requests and seconds until the burst is
    /// whole again.
    fn state_header(&self, remaining: u32, reset: Duration) -> HeaderValue {
        let value = format!(
            "\"{}\";r={remaining};t={}",
            self.spec.name,
            ceil_secs(reset)
        );
        HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// A refusal by the firewall, answered in place of the upstream's response.
#[derive(Debug)]
pub struct Refusal {
    pub status: StatusCode,
    pub reason: &'static str,
    /// The rule that refused: ACL or rate limit name, route for the zone policy.
    pub rule: String,
    pub detail: String,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl Refusal {
    pub fn new(
        status: StatusCode,
        reason: &'static str,
        rule: &str,
        detail: impl Into<String>,
    ) -> Self {
        Refusal {
            status,
            reason,
            rule: rule.to_string(),
            detail: detail.into(),
            headers: Vec::new(),
        }
    }

    pub fn into_response(self) -> Response<ResponseBody> {
        let body = format!(
            "{} {}\n",
            self.status.as_u16(),
            self.status.canonical_reason().unwrap_or("")
        );
        let mut resp = Response::new(ResponseBody::local(Bytes::from(body), None));
        *resp.status_mut() = self.status;
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        for (name, value) in self.headers {
            h.append(name, value);
        }
        resp
    }
}

/// The route a request took, for the firewall's per-request checks.
#[derive(Debug, Clone, Copy)]
pub struct RouteRef<'a> {
    /// Index into the snapshot's routes.
    pub index: usize,
    pub name: &'a str,
    /// The route's pool.
    pub pool: &'a str,
}

/// Rate-limit fields to add to a response the limits admitted.
pub struct RateHeaders {
    pub policy: HeaderValue,
    pub state: HeaderValue,
}

/// Per-route firewall rules.
#[derive(Default)]
struct RouteRules {
    acl: Option<Arc<fw::Acl>>,
    filter: Option<fw::ContentFilter>,
    limits: Vec<Arc<Limiter>>,
    scrub: Vec<HeaderName>,
}

/// The firewall of one runtime.
pub struct FirewallRuntime {
    zones: fw::Zones,
    policy: fw::ZonePolicy,
    zone_acls: HashMap<String, Arc<fw::Acl>>,
    listener_acls: HashMap<String, Arc<fw::Acl>>,
    listener_rates: HashMap<String, Arc<Limiter>>,
    routes: Vec<RouteRules>,
    limiters: Vec<Arc<Limiter>>,
    /// Set files, watched for changes (a change rebuilds the runtime).
    pub set_files: Vec<PathBuf>,
    /// What the set files looked like just before they were read.
    pub set_stamps: Vec<FileStamp>,
    /// Loaded sets by name, with their sizes (for logs and the admin API).
    pub sets: Vec<(String, Arc<fw::IpSet>)>,
    /// Intrusion prevention, when configured.
    pub detector: Option<fw::Detector>,
}

impl FirewallRuntime {
    /// Compiles the firewall of `snapshot`: reads the set files, keeps the key tables of
    /// `previous` limits whose parameters are unchanged.
    pub fn build(
        snapshot: &Snapshot,
        previous: Option<&FirewallRuntime>,
    ) -> Result<Self, Vec<String>> {
        let fwc = &snapshot.firewall;
        let mut errors = Vec::new();
        let mut sets: HashMap<String, Arc<fw::IpSet>> = HashMap::new();
        let mut set_list = Vec::new();
        let set_files: Vec<PathBuf> = fwc.ip_sets.iter().filter_map(|s| s.file.clone()).collect();
        let set_stamps = file_stamps(&set_files);
        for spec in &fwc.ip_sets {
            let mut set = fw::IpSet::new();
            for net in &spec.entries {
                set.insert(*net);
            }
            if let Some(file) = &spec.file {
                match read_set_file(file) {
                    Ok(loaded) => {
                        for net in loaded.networks() {
                            set.insert(net);
                        }
                    }
                    Err(e) => errors.push(format!("firewall.ip_sets \"{}\": {e}", spec.name)),
                }
            }
            let set = Arc::new(set);
            sets.insert(spec.name.clone(), Arc::clone(&set));
            set_list.push((spec.name.clone(), set));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let compile_sources = |refs: &[config::SourceRef]| -> Vec<Arc<fw::IpSet>> {
            let mut inline = fw::IpSet::new();
            let mut out = Vec::new();
            for r in refs {
                match r {
                    config::SourceRef::Net(net) => inline.insert(*net),
                    config::SourceRef::Set(name) => {
                        if let Some(s) = sets.get(name) {
                            out.push(Arc::clone(s));
                        }
                    }
                }
            }
            if !inline.is_empty() {
                out.push(Arc::new(inline));
            }
            out
        };
        let acls: HashMap<String, Arc<fw::Acl>> = fwc
            .acls
            .iter()
            .map(|a| {
                let action = if a.default_allow {
                    fw::AclAction::Allow
                } else {
                    fw::AclAction::Deny
                };
                let acl = fw::Acl::new(
                    a.name.as_str(),
                    compile_sources(&a.allow),
                    compile_sources(&a.deny),
                    action,
                );
                (a.name.clone(), Arc::new(acl))
            })
            .collect();
        let mut zones = fw::Zones::new();
        let mut zone_acls = HashMap::new();
        for z in &fwc.zones {
            zones.add(
                z.name.as_str(),
                z.listeners.clone(),
                fw::ZoneSources {
                    sets: compile_sources(&z.sources),
                },
            );
            if let Some(acl) = z.acl.as_ref().and_then(|a| acls.get(a)) {
                zone_acls.insert(z.name.clone(), Arc::clone(acl));
            }
        }
        let policy = match &fwc.policy {
            None => fw::ZonePolicy::open(),
            Some(rules) => {
                let mut reach: HashMap<String, fw::Reach> = HashMap::new();
                for rule in rules {
                    for zone in &rule.zones {
                        let r = reach.entry(zone.clone()).or_default();
                        r.all |= rule.all;
                        r.routes.extend(rule.routes.iter().cloned());
                        r.pools.extend(rule.pools.iter().cloned());
                    }
                }
                fw::ZonePolicy::enforced(reach)
            }
        };
        let limiters: Vec<Arc<Limiter>> = fwc
            .rate_limits
            .iter()
            .map(|spec| {
                let kept = previous
                    .and_then(|p| p.limiters.iter().find(|l| l.same_parameters(spec)))
                    .map(|l| Arc::clone(&l.table));
                let table = kept.unwrap_or_else(|| {
                    Arc::new(fw::KeyedLimiter::new(
                        fw::Gcra::new(spec.count, spec.period, spec.burst),
                        spec.max_keys,
                        Instant::now(),
                    ))
                });
                let window = ceil_secs(spec.period).max(1);
                let policy_header = HeaderValue::from_str(&format!(
                    "\"{}\";q={};w={window}",
                    spec.name, spec.count
                ))
                .unwrap_or_else(|_| HeaderValue::from_static(""));
                Arc::new(Limiter {
                    spec: spec.clone(),
                    table,
                    policy_header,
                })
            })
            .collect();
        let limiter = |name: &str| limiters.iter().find(|l| l.spec.name == name).cloned();
        let mut listener_acls = HashMap::new();
        let mut listener_rates = HashMap::new();
        for l in &snapshot.listeners {
            if let Some(acl) = l.acl.as_ref().and_then(|a| acls.get(a)) {
                listener_acls.insert(l.name.clone(), Arc::clone(acl));
            }
            if let Some(rate) = l.connection_rate.as_ref().and_then(|r| limiter(r)) {
                listener_rates.insert(l.name.clone(), rate);
            }
        }
        let routes = snapshot
            .routes
            .iter()
            .map(|r| RouteRules {
                acl: r.acl.as_ref().and_then(|a| acls.get(a)).cloned(),
                filter: r.filter.as_ref().map(content_filter),
                limits: r.rate_limits.iter().filter_map(|n| limiter(n)).collect(),
                scrub: r
                    .filter
                    .as_ref()
                    .map(|f| f.scrub_response_headers.clone())
                    .unwrap_or_default(),
            })
            .collect();
        let detector = fwc.ips.as_ref().map(|ips| {
            let now = Instant::now();
            let old = previous.and_then(|p| p.detector.as_ref());
            let scenarios = ips
                .scenarios
                .iter()
                .map(|spec| {
                    let kept =
                        old.and_then(|d| d.scenarios.iter().find(|s| s.spec.name == spec.name));
                    fw::Scenario::new(spec.clone(), ips.max_sources, kept, now)
                })
                .collect();
            fw::Detector::new(
                scenarios,
                fw::BanPolicy {
                    factor: ips.ban_factor,
                    max_ban: ips.max_ban,
                    forget_after: ips.forget_after,
                },
                compile_sources(&ips.allow),
            )
        });
        Ok(FirewallRuntime {
            detector,
            zones,
            policy,
            zone_acls,
            listener_acls,
            listener_rates,
            routes,
            limiters,
            set_files,
            set_stamps,
            sets: set_list,
        })
    }

    /// The zone of a client of `listener`, whose configured zone is `listener_zone`.
    pub fn classify(&self, listener: &str, listener_zone: &Arc<str>, ip: IpAddr) -> Arc<str> {
        self.zones.classify(listener, listener_zone, ip)
    }

    /// At accept: may this connection proceed? `Err` carries the reason for metrics.
    pub fn admit_connection(
        &self,
        listener: &str,
        listener_zone: &str,
        zone: &str,
        ip: IpAddr,
        now: Instant,
    ) -> Result<(), &'static str> {
        // A listener whose zone has source networks serves only them (as the kernel rule
        // does when nftables is on).
        if let Some(sources) = self.zone_sources(listener_zone)
            && !fw::canonical_ip(ip).is_loopback()
            && sources.longest_match(ip).is_none()
        {
            return Err("zone_segmentation");
        }
        if self
            .listener_acls
            .get(listener)
            .is_some_and(|a| !a.allows(ip))
        {
            return Err("acl");
        }
        if self.zone_acls.get(zone).is_some_and(|a| !a.allows(ip)) {
            return Err("zone_acl");
        }
        if let Some(limiter) = self.listener_rates.get(listener) {
            let key = AcceptKey {
                parts: &limiter.spec.key,
                ip,
                zone,
                listener,
            };
            if !limiter.table.check(&key, now).allowed() {
                return Err("connection_rate");
            }
        }
        Ok(())
    }

    /// Source networks of a zone that has some (for kernel segmentation).
    pub fn zone_sources(&self, zone: &str) -> Option<&fw::ZoneSources> {
        self.zones.sources(zone).filter(|s| !s.is_empty())
    }

    /// May a connection from `zone` be relayed to `pool` (layer 4)?
    pub fn allows_pool(&self, zone: &str, pool: &str) -> bool {
        self.policy.allows_pool(zone, pool)
    }

    /// Per request, after routing. `Ok` carries the rate-limit fields for the response.
    pub fn check_request(
        &self,
        conn: &ConnInfo,
        route: RouteRef<'_>,
        head: &http::request::Parts,
        has_body: bool,
        now: Instant,
    ) -> Result<Option<RateHeaders>, Refusal> {
        let RouteRef {
            index: route_index,
            name: route_name,
            pool,
        } = route;
        if !self.policy.allows_route(&conn.zone, route_name, pool) {
            return Err(Refusal::new(
                StatusCode::FORBIDDEN,
                "zone_policy",
                route_name,
                format!(
                    "zone \"{}\" may not reach route \"{}\"",
                    conn.zone, route_name
                ),
            ));
        }
        let Some(rules) = self.routes.get(route_index) else {
            return Ok(None);
        };
        if let Some(acl) = &rules.acl
            && !acl.allows(conn.client.ip())
        {
            return Err(Refusal::new(
                StatusCode::FORBIDDEN,
                "acl",
                &acl.name,
                format!("ACL \"{}\" denies {}", acl.name, conn.client.ip()),
            ));
        }
        if let Some(filter) = &rules.filter
            && let Err(v) = filter.check(&head.method, &head.uri, &head.headers, has_body)
        {
            let mut refusal = Refusal::new(v.status(), v.reason(), route_name, v.detail());
            if v == fw::Violation::Method {
                let allow: Vec<&str> = filter
                    .allowed_methods()
                    .iter()
                    .map(|m| m.as_str())
                    .collect();
                if let Ok(value) = HeaderValue::from_str(&allow.join(", ")) {
                    refusal.headers.push((header::ALLOW, value));
                }
            }
            return Err(refusal);
        }
        let mut first: Option<RateHeaders> = None;
        for limiter in &rules.limits {
            let key = RequestKey {
                parts: &limiter.spec.key,
                conn,
                route: route_name,
                headers: &head.headers,
            };
            match limiter.table.check(&key, now) {
                fw::RateDecision::Allow { remaining, reset } => {
                    if first.is_none() {
                        first = Some(RateHeaders {
                            policy: limiter.policy_header.clone(),
                            state: limiter.state_header(remaining, reset),
                        });
                    }
                }
                fw::RateDecision::Deny { retry_after, reset } => {
                    let mut refusal = Refusal::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        "rate_limit",
                        &limiter.spec.name,
                        format!("rate limit \"{}\"", limiter.spec.name),
                    );
                    refusal.headers.push((
                        header::RETRY_AFTER,
                        HeaderValue::from(ceil_secs(retry_after).max(1)),
                    ));
                    refusal.headers.push((
                        HeaderName::from_static("ratelimit-policy"),
                        limiter.policy_header.clone(),
                    ));
                    refusal.headers.push((
                        HeaderName::from_static("ratelimit"),
                        limiter.state_header(0, reset),
                    ));
                    return Err(refusal);
                }
            }
        }
        Ok(first)
    }

    /// Headers the route removes from responses.
    pub fn scrubbed(&self, route_index: usize) -> &[HeaderName] {
        self.routes
            .get(route_index)
            .map_or(&[], |r| r.scrub.as_slice())
    }
}

/// Removes scrubbed headers and adds rate-limit fields.
pub fn apply_to_response(headers: &mut HeaderMap, scrub: &[HeaderName], rate: Option<RateHeaders>) {
    for name in scrub {
        headers.remove(name);
    }
    if let Some(rate) = rate {
        headers.insert(HeaderName::from_static("ratelimit-policy"), rate.policy);
        headers.insert(HeaderName::from_static("ratelimit"), rate.state);
    }
}

fn content_filter(f: &config::RouteFilter) -> fw::ContentFilter {
    fw::ContentFilter::new(fw::ContentFilterSpec {
        methods: f.methods.clone(),
        content_types: f.content_types.clone(),
        max_query_bytes: f.max_query_bytes,
        blocked_extensions: f.blocked_extensions.clone(),
        deny: f
            .deny
            .iter()
            .map(|d| fw::DenyPattern {
                target: match &d.on {
                    config::DenyOn::Path => fw::DenyTarget::Path,
                    config::DenyOn::Query => fw::DenyTarget::Query,
                    config::DenyOn::Header(h) => fw::DenyTarget::Header(h.clone()),
                },
                regex: d.regex.clone(),
                label: d.label.clone(),
            })
            .collect(),
    })
}

/// A file's modification time and size (`None` when it cannot be read).
pub type FileStamp = Option<(std::time::SystemTime, u64)>;

pub fn file_stamps(files: &[PathBuf]) -> Vec<FileStamp> {
    files
        .iter()
        .map(|f| {
            let meta = std::fs::metadata(f).ok()?;
            Some((meta.modified().ok()?, meta.len()))
        })
        .collect()
}

fn read_set_file(path: &std::path::Path) -> Result<fw::IpSet, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.len() > MAX_SET_FILE_BYTES {
        return Err(format!(
            "{}: {} bytes is more than the {MAX_SET_FILE_BYTES}-byte limit for set files",
            path.display(),
            meta.len()
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    fw::IpSet::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// A rate-limit key from what is known at accept.
struct AcceptKey<'a> {
    parts: &'a [config::RateKey],
    ip: IpAddr,
    zone: &'a str,
    listener: &'a str,
}

impl Hash for AcceptKey<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        for part in self.parts {
            match part {
                config::RateKey::ClientIp => fw::canonical_ip(self.ip).hash(state),
                config::RateKey::Zone => self.zone.hash(state),
                config::RateKey::Listener => self.listener.hash(state),
                // Validation keeps request-only parts off connection limits.
                config::RateKey::Route | config::RateKey::Header(_) => 0u8.hash(state),
            }
        }
    }
}

/// A rate-limit key from a request.
struct RequestKey<'a> {
    parts: &'a [config::RateKey],
    conn: &'a ConnInfo,
    route: &'a str,
    headers: &'a HeaderMap,
}

impl Hash for RequestKey<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        for part in self.parts {
            match part {
                config::RateKey::ClientIp => fw::canonical_ip(self.conn.client.ip()).hash(state),
                config::RateKey::Zone => self.conn.zone.hash(state),
                config::RateKey::Listener => self.conn.listener.hash(state),
                config::RateKey::Route => self.route.hash(state),
                config::RateKey::Header(name) => {
                    // Absent and present-but-empty are different keys.
                    match self.headers.get(name) {
                        None => 0u8.hash(state),
                        Some(v) => {
                            1u8.hash(state);
                            v.as_bytes().hash(state);
                        }
                    }
                }
            }
        }
    }
}

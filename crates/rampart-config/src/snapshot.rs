//! Phase two output: the validated, immutable configuration the data plane reads.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use regex::Regex;

pub use crate::firewall::{
    AclSpec, BUILTIN_ZONES, DenyOn, DenyRule, Firewall, IpSetSpec, Ips, Nftables, PolicyRule,
    RateKey, RateLimitSpec, RouteFilter, SourceRef, Zone,
};

/// A validated configuration. Built only by [`crate::load_str`] / [`crate::load_file`];
/// never changed afterwards. The control plane swaps whole snapshots.
#[derive(Debug)]
pub struct Snapshot {
    /// Where the config came from (file path or a label such as `<demo>`).
    pub origin: String,
    /// SHA-256-free cheap fingerprint of the source text, used to skip no-op reloads.
    pub source_hash: u64,
    pub runtime: Runtime,
    pub listeners: Vec<Listener>,
    pub certificates: Vec<Certificate>,
    pub routes: Vec<Route>,
    pub pools: Vec<Pool>,
    pub observability: Observability,
    pub admin: Option<Admin>,
    pub firewall: Firewall,
    pub waf: crate::waf::Waf,
}

impl Snapshot {
    pub fn pool(&self, name: &str) -> Option<&Pool> {
        self.pools.iter().find(|p| p.name == name)
    }
    pub fn listener(&self, name: &str) -> Option<&Listener> {
        self.listeners.iter().find(|l| l.name == name)
    }
    pub fn certificate(&self, name: &str) -> Option<&Certificate> {
        self.certificates.iter().find(|c| c.name == name)
    }
    /// One-line human summary, printed by `rampart check`.
    pub fn summary(&self) -> String {
        let backends: usize = self.pools.iter().map(|p| p.backends.len()).sum();
        format!(
            "{}: ok ({} listeners, {} routes, {} pools, {} backends, {} certificates)",
            self.origin,
            self.listeners.len(),
            self.routes.len(),
            self.pools.len(),
            backends,
            self.certificates.len()
        )
    }
}

#[derive(Debug, Clone)]
pub struct Runtime {
    /// Worker threads; 0 means one per CPU.
    pub threads: usize,
    pub sticky_secret_file: Option<PathBuf>,
    pub shutdown_grace: Duration,
    /// Unix socket on which the running process hands its listening sockets to a new one
    /// (`rampart upgrade`).
    pub upgrade_socket: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerProtocol {
    Http,
    Https,
    /// Layer 4: every connection is relayed to a backend of the listener's pool.
    Tcp,
}

#[derive(Debug, Clone)]
pub struct Listener {
    pub name: String,
    pub address: SocketAddr,
    pub protocol: ListenerProtocol,
    pub zone: String,
    /// Accept HTTP/2 with prior knowledge on a plain listener.
    pub h2c: bool,
    pub tls: Option<ListenerTls>,
    pub limits: ListenerLimits,
    /// Accept the PROXY protocol from these sources.
    pub proxy_protocol: Option<ProxyProtocolAccept>,
    /// For `protocol = "tcp"`: the pool whose backends take the connections (those matching
    /// no `sni` entry, when there are some).
    pub pool: Option<String>,
    /// For `protocol = "tcp"`: TLS pass-through routed by the ClientHello's server name.
    pub sni: Vec<SniRoute>,
    /// ACL checked when a connection is accepted, before TLS.
    pub acl: Option<String>,
    /// Rate limit (keyed by what is known at accept) on new connections.
    pub connection_rate: Option<String>,
}

/// Connections whose TLS server name matches `names` (exact, or `*.` for one label) go to
/// `pool`; TLS is not terminated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SniRoute {
    /// Lower case; a leading `*.` matches exactly one label.
    pub names: Vec<String>,
    pub pool: String,
}

impl SniRoute {
    pub fn matches(&self, server_name: &str) -> bool {
        let name = server_name.trim_end_matches('.').to_ascii_lowercase();
        self.names
            .iter()
            .any(|pattern| match pattern.strip_prefix("*.") {
                Some(suffix) => name
                    .split_once('.')
                    .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
                None => *pattern == name,
            })
    }
}

/// PROXY protocol (v1 or v2) on a listener: sources in `trusted` send a header naming the
/// real client (required unless `required` is false); a header from any other source gets the
/// connection closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyProtocolAccept {
    pub trusted: Vec<ipnet::IpNet>,
    pub required: bool,
}

impl ProxyProtocolAccept {
    pub fn trusts(&self, ip: std::net::IpAddr) -> bool {
        let ip = match ip {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
            v4 => v4,
        };
        self.trusted.iter().any(|net| net.contains(&ip))
    }
}

/// PROXY protocol version sent to upstreams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyProtocolVersion {
    V1,
    V2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuthMode {
    None,
    Optional,
    Required,
}

#[derive(Debug, Clone)]
pub struct ListenerTls {
    pub certificates: Vec<String>,
    pub default_certificate: Option<String>,
    pub client_auth: ClientAuthMode,
    pub client_ca: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct ListenerLimits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_uri_bytes: usize,
    pub max_connections: usize,
    /// Open connections per client address (after the PROXY protocol, when used); 0 = no limit.
    pub max_connections_per_ip: usize,
    /// Default body limit for routes that do not set their own.
    pub max_body: u64,
    /// Total time for one request, from headers received to response headers sent upstream-side.
    pub request_timeout: Duration,
    /// How long a request body may stall (no byte from the client while the upstream waits
    /// for more) before the request is answered 408.
    pub body_read_timeout: Duration,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        ListenerLimits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_header_bytes: 32 * 1024,
            max_headers: 100,
            max_uri_bytes: 8 * 1024,
            max_connections: 10_000,
            max_connections_per_ip: 0,
            max_body: 10 * 1024 * 1024,
            request_timeout: Duration::from_secs(60),
            body_read_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Certificate {
    pub name: String,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub server_names: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    /// Listener names this route applies to; empty = all.
    pub listeners: Vec<String>,
    pub matcher: RouteMatch,
    /// Index into [`Snapshot::pools`].
    pub pool: usize,
    pub max_body: Option<u64>,
    pub timeout: Option<Duration>,
    /// ACL checked on every request of this route.
    pub acl: Option<String>,
    /// Rate limits applied, in order, to every request of this route.
    pub rate_limits: Vec<String>,
    pub filter: Option<RouteFilter>,
    /// The WAF rule set inspecting this route's requests.
    pub waf: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct RouteMatch {
    /// Empty = any host.
    pub hosts: Vec<HostPattern>,
    pub path: Option<PathMatch>,
    /// Empty = any method.
    pub methods: Vec<http::Method>,
    pub headers: Vec<HeaderMatch>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// Lower-case exact host name (port stripped before matching).
    Exact(String),
    /// `*.example.com`, stored as `.example.com`: matches one or more labels before the suffix.
    Wildcard(String),
}

#[derive(Debug, Clone)]
pub enum PathMatch {
    Exact(String),
    Prefix(String),
    Regex(Regex),
}

#[derive(Debug, Clone)]
pub struct HeaderMatch {
    pub name: http::HeaderName,
    pub value: HeaderValueMatch,
}

#[derive(Debug, Clone)]
pub enum HeaderValueMatch {
    Present,
    Exact(String),
    Regex(Regex),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    RoundRobin,
    WeightedRoundRobin,
    LeastConnections,
    PowerOfTwoEwma,
    ConsistentHash,
    Random,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    ClientIp,
    Header(http::HeaderName),
    Cookie(String),
    Path,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamProtocol {
    Http1,
    Http2,
}

#[derive(Debug, Clone)]
pub struct UpstreamTls {
    pub server_name: Option<String>,
    pub verify: bool,
    pub ca: Option<PathBuf>,
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

#[derive(Debug, Clone)]
pub struct Backend {
    /// Stable id: used in sticky cookies, metrics and the admin API; never the address.
    pub id: String,
    /// Host (IP or DNS name) and port.
    pub host: String,
    pub port: u16,
    pub weight: u32,
    pub backup: bool,
}

impl Backend {
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthCheckKind {
    Http {
        method: http::Method,
        path: String,
        host: Option<String>,
        expect_status: (u16, u16),
        expect_body: Option<String>,
    },
    Tcp,
}

#[derive(Debug, Clone)]
pub struct HealthCheck {
    pub kind: HealthCheckKind,
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
}

#[derive(Debug, Clone)]
pub struct Outlier {
    pub consecutive_failures: u32,
    pub base_ejection: Duration,
    pub max_ejection: Duration,
    pub max_ejected_percent: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    Strict,
    Lax,
    None,
}

#[derive(Debug, Clone)]
pub enum Sticky {
    Cookie {
        name: String,
        ttl: Option<Duration>,
        secure: bool,
        http_only: bool,
        same_site: SameSite,
        path: String,
    },
    SourceIp,
    Header(http::HeaderName),
}

#[derive(Debug, Clone)]
pub struct PoolTimeouts {
    pub connect: Duration,
    pub response_header: Duration,
    pub idle: Duration,
    /// Longest wait for a free slot when every backend is at `max_connections_per_backend`.
    pub queue: Duration,
}

#[derive(Debug, Clone)]
pub struct Retries {
    /// Total tries including the first (1 = no retry).
    pub attempts: u32,
    /// Retries may be at most this share of requests (percent) over a 10 s window ...
    pub budget_percent: u32,
    /// ... plus this many retries per second regardless of the ratio.
    pub min_per_second: u32,
    /// Upstream statuses that are retried for idempotent requests without a body.
    pub on_status: Vec<u16>,
}

#[derive(Debug, Clone)]
pub struct Pool {
    pub name: String,
    pub algorithm: Algorithm,
    pub hash_key: Option<HashKey>,
    pub protocol: UpstreamProtocol,
    pub tls: Option<UpstreamTls>,
    pub backends: Vec<Backend>,
    pub health_check: Option<HealthCheck>,
    pub outlier: Option<Outlier>,
    pub slow_start: Option<Duration>,
    pub sticky: Option<Sticky>,
    pub timeouts: PoolTimeouts,
    pub retries: Retries,
    pub max_idle_per_backend: usize,
    /// Send a PROXY protocol header on every upstream connection (which then serves one client
    /// connection only).
    pub send_proxy_protocol: Option<ProxyProtocolVersion>,
    /// Requests in flight per backend (HAProxy `maxconn`); 0 = no limit. Requests beyond it
    /// wait in the pool's queue.
    pub max_connections_per_backend: usize,
    /// Requests waiting in the queue (HAProxy `maxqueue`); 0 = no limit but the queue timeout.
    pub max_queue: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLog {
    Off,
    Stdout,
    File(PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

/// Where and what the TSDB's Prometheus HTTP API serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryApi {
    /// A loopback address: the API has no authentication of its own.
    pub address: SocketAddr,
    /// `POST /api/v1/write` (Prometheus remote write) accepted.
    pub remote_write_receiver: bool,
    /// `/api/v1/admin/tsdb/*` (series deletion) served.
    pub admin_api: bool,
    /// Most series the head holds; samples of further series are refused.
    pub max_series: usize,
}

#[derive(Debug, Clone)]
pub struct Observability {
    pub metrics_address: Option<SocketAddr>,
    /// The embedded TSDB's Prometheus HTTP API (`/api/v1/query`, …), when served.
    pub query: Option<QueryApi>,
    pub access_log: AccessLog,
    /// One JSON line per security event and decision (firewall, intrusion prevention).
    pub security_log: AccessLog,
    pub log_format: LogFormat,
}

#[derive(Debug, Clone)]
pub struct Admin {
    pub address: SocketAddr,
    /// Bearer token (read from `token_file` or the `token_env` variable). Never logged.
    pub token: Secret,
}

/// A secret string whose Debug output is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(value)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[cfg(test)]
mod sni_tests {
    use super::SniRoute;

    #[test]
    fn sni_names_match_exactly_or_one_wildcard_label() {
        let route = SniRoute {
            names: vec!["api.example.com".into(), "*.apps.example.com".into()],
            pool: "p".into(),
        };
        assert!(route.matches("api.example.com"));
        assert!(route.matches("API.Example.com."));
        assert!(route.matches("x.apps.example.com"));
        assert!(!route.matches("apps.example.com"));
        assert!(!route.matches("x.y.apps.example.com"));
        assert!(!route.matches(".apps.example.com"));
        assert!(!route.matches("example.com"));
    }
}

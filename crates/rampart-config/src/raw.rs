//! Phase one: the config file as written. Every field is optional or a plain string here so
//! that phase two (`validate`) can check each value and report all problems at once.

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
pub struct RawConfig {
    pub runtime: Option<RawRuntime>,
    #[serde(default)]
    pub listeners: Vec<RawListener>,
    #[serde(default)]
    pub certificates: Vec<RawCertificate>,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    #[serde(default)]
    pub pools: Vec<RawPool>,
    pub observability: Option<RawObservability>,
    pub admin: Option<RawAdmin>,
    pub firewall: Option<RawFirewall>,
    pub waf: Option<RawWaf>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawWaf {
    pub audit_log: Option<String>,
    #[serde(default)]
    pub rulesets: Vec<RawWafRuleset>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawWafRuleset {
    pub name: Option<String>,
    #[serde(default)]
    pub files: Vec<String>,
    pub mode: Option<String>,
    pub paranoia: Option<i64>,
    #[serde(default)]
    pub exclude_rules: Vec<i64>,
    #[serde(default)]
    pub exclude_tags: Vec<String>,
    #[serde(default)]
    pub exclude_targets: Vec<RawWafTargetExclusion>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawWafTargetExclusion {
    #[serde(default)]
    pub rules: Vec<i64>,
    pub tag: Option<String>,
    #[serde(default)]
    pub targets: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawRuntime {
    pub threads: Option<i64>,
    pub sticky_secret_file: Option<String>,
    pub shutdown_grace: Option<String>,
    pub upgrade_socket: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawListener {
    pub name: Option<String>,
    pub address: Option<String>,
    pub protocol: Option<String>,
    pub zone: Option<String>,
    pub h2c: Option<bool>,
    pub tls: Option<RawListenerTls>,
    pub limits: Option<RawListenerLimits>,
    pub proxy_protocol: Option<RawProxyProtocolAccept>,
    pub pool: Option<String>,
    #[serde(default)]
    pub sni: Vec<RawSniRoute>,
    pub acl: Option<String>,
    pub connection_rate: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawSniRoute {
    #[serde(default)]
    pub names: Vec<String>,
    pub pool: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawProxyProtocolAccept {
    #[serde(default)]
    pub trusted: Vec<String>,
    pub required: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawListenerTls {
    #[serde(default)]
    pub certificates: Vec<String>,
    pub default_certificate: Option<String>,
    pub client_ca: Option<String>,
    pub client_auth: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawListenerLimits {
    pub header_read_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub max_header_bytes: Option<String>,
    pub max_headers: Option<i64>,
    pub max_uri_bytes: Option<String>,
    pub max_connections: Option<i64>,
    pub max_connections_per_ip: Option<i64>,
    pub max_body: Option<String>,
    pub request_timeout: Option<String>,
    pub body_read_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawCertificate {
    pub name: Option<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
    #[serde(default)]
    pub server_names: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawRoute {
    pub name: Option<String>,
    #[serde(default)]
    pub listeners: Vec<String>,
    #[serde(rename = "match")]
    pub matcher: Option<RawRouteMatch>,
    pub pool: Option<String>,
    pub max_body: Option<String>,
    pub timeout: Option<String>,
    pub acl: Option<String>,
    #[serde(default)]
    pub rate_limits: Vec<String>,
    pub filter: Option<RawRouteFilter>,
    pub waf: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawRouteFilter {
    #[serde(default)]
    pub methods: Vec<String>,
    #[serde(default)]
    pub content_types: Vec<String>,
    pub max_query_bytes: Option<String>,
    #[serde(default)]
    pub blocked_extensions: Vec<String>,
    #[serde(default)]
    pub deny: Vec<RawDenyPattern>,
    #[serde(default)]
    pub scrub_response_headers: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawDenyPattern {
    pub target: Option<String>,
    pub name: Option<String>,
    pub contains: Option<String>,
    pub regex: Option<String>,
    pub case_sensitive: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawFirewall {
    #[serde(default)]
    pub ip_sets: Vec<RawIpSet>,
    #[serde(default)]
    pub zones: Vec<RawZone>,
    pub policy: Option<Vec<RawPolicyRule>>,
    #[serde(default)]
    pub acls: Vec<RawAcl>,
    #[serde(default)]
    pub rate_limits: Vec<RawRateLimit>,
    pub ips: Option<RawIps>,
    pub nftables: Option<RawNftables>,
    #[serde(default)]
    pub forward: Vec<RawForwardRule>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawForwardRule {
    #[serde(default)]
    pub from: Vec<String>,
    #[serde(default)]
    pub to: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawNftables {
    pub enabled: Option<bool>,
    pub table: Option<String>,
    pub reconcile_interval: Option<String>,
    pub ban_all_traffic: Option<bool>,
    pub nft: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawIps {
    #[serde(default)]
    pub allow: Vec<String>,
    pub ban_factor: Option<i64>,
    pub max_ban: Option<String>,
    pub forget_after: Option<String>,
    pub max_sources: Option<i64>,
    pub max_bans: Option<i64>,
    pub scenarios: Option<Vec<RawScenario>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawScenario {
    pub name: Option<String>,
    #[serde(default)]
    pub events: Vec<String>,
    pub capacity: Option<i64>,
    pub leak: Option<String>,
    pub ban: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawIpSet {
    pub name: Option<String>,
    pub file: Option<String>,
    #[serde(default)]
    pub entries: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawZone {
    pub name: Option<String>,
    #[serde(default)]
    pub sources: Vec<String>,
    #[serde(default)]
    pub listeners: Vec<String>,
    pub acl: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawPolicyRule {
    #[serde(default)]
    pub zones: Vec<String>,
    #[serde(default)]
    pub routes: Vec<String>,
    #[serde(default)]
    pub pools: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawAcl {
    pub name: Option<String>,
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default)]
    pub deny: Vec<String>,
    pub default: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawRateLimit {
    pub name: Option<String>,
    pub rate: Option<String>,
    pub burst: Option<i64>,
    #[serde(default)]
    pub key: Vec<String>,
    pub max_keys: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawRouteMatch {
    #[serde(default)]
    pub hosts: Vec<String>,
    pub path: Option<String>,
    pub path_prefix: Option<String>,
    pub path_regex: Option<String>,
    #[serde(default)]
    pub methods: Vec<String>,
    #[serde(default)]
    pub headers: Vec<RawHeaderMatch>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawHeaderMatch {
    pub name: Option<String>,
    pub value: Option<String>,
    pub regex: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawPool {
    pub name: Option<String>,
    pub algorithm: Option<String>,
    pub hash_key: Option<RawHashKey>,
    pub protocol: Option<String>,
    pub tls: Option<RawUpstreamTls>,
    #[serde(default)]
    pub backends: Vec<RawBackend>,
    pub health_check: Option<RawHealthCheck>,
    pub outlier: Option<RawOutlier>,
    pub slow_start: Option<String>,
    pub sticky: Option<RawSticky>,
    pub timeouts: Option<RawPoolTimeouts>,
    pub retries: Option<RawRetries>,
    pub max_idle_per_backend: Option<i64>,
    pub proxy_protocol: Option<String>,
    pub max_connections_per_backend: Option<i64>,
    pub max_queue: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawHashKey {
    pub source: Option<String>,
    pub name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawUpstreamTls {
    pub server_name: Option<String>,
    pub verify: Option<bool>,
    pub ca: Option<String>,
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawBackend {
    pub id: Option<String>,
    pub address: Option<String>,
    pub weight: Option<i64>,
    pub backup: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawHealthCheck {
    pub kind: Option<String>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub rise: Option<i64>,
    pub fall: Option<i64>,
    pub method: Option<String>,
    pub path: Option<String>,
    pub host: Option<String>,
    pub expect_status: Option<String>,
    pub expect_body: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawOutlier {
    pub consecutive_failures: Option<i64>,
    pub base_ejection: Option<String>,
    pub max_ejection: Option<String>,
    pub max_ejected_percent: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawSticky {
    pub mode: Option<String>,
    pub cookie: Option<String>,
    pub header: Option<String>,
    pub ttl: Option<String>,
    pub secure: Option<bool>,
    pub http_only: Option<bool>,
    pub same_site: Option<String>,
    pub path: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawPoolTimeouts {
    pub connect: Option<String>,
    pub response_header: Option<String>,
    pub idle: Option<String>,
    pub queue: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawRetries {
    pub attempts: Option<i64>,
    pub budget_percent: Option<i64>,
    pub min_per_second: Option<i64>,
    #[serde(default)]
    pub on_status: Vec<i64>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawObservability {
    pub metrics_address: Option<String>,
    pub query_address: Option<String>,
    pub remote_write_receiver: Option<bool>,
    pub tsdb_admin_api: Option<bool>,
    pub tsdb_max_series: Option<i64>,
    pub access_log: Option<String>,
    pub security_log: Option<String>,
    pub log_format: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawAdmin {
    pub address: Option<String>,
    pub token_file: Option<String>,
    pub token_env: Option<String>,
    pub allow_remote: Option<bool>,
}

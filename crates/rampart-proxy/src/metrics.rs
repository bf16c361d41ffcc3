//! Prometheus metrics of the data plane (`rampart_<subsystem>_<what>_<unit>`), and the
//! `/metrics` endpoint that serves them on their own listener.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::exponential_buckets;
use prometheus_client::registry::Registry;

use crate::sharded::{ShardedCounter, ShardedHistogram};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: String,
    pub pool: String,
    pub backend: String,
    pub class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
    pub pool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    pub listener: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NameLabels {
    pub name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerReasonLabels {
    pub listener: String,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabels {
    pub pool: String,
    pub backend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendOutcomeLabels {
    pub pool: String,
    pub backend: String,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub listener: String,
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

type HistogramFamily<L> = Family<L, ShardedHistogram, fn() -> ShardedHistogram>;

fn latency_histogram() -> ShardedHistogram {
    // 0.5 ms .. ~65 s
    ShardedHistogram::new(exponential_buckets(0.0005, 2.0, 18))
}

/// Every metric the proxy records.
pub struct Metrics {
    pub registry: Registry,
    /// Updated on every request: sharded by worker thread.
    pub requests: Family<RequestLabels, ShardedCounter>,
    pub request_duration: HistogramFamily<RouteLabels>,
    pub upstream_duration: HistogramFamily<BackendLabels>,
    pub errors: Family<ErrorLabels, Counter>,
    pub connections_active: Family<ListenerLabels, Gauge>,
    pub connections_total: Family<ListenerLabels, Counter>,
    pub connections_rejected: Family<ListenerReasonLabels, Counter>,
    pub proxy_protocol_rejected: Family<ListenerReasonLabels, Counter>,
    pub tls_handshakes: Family<ListenerLabels, Counter>,
    pub tls_handshake_errors: Family<ListenerLabels, Counter>,
    pub backend_healthy: Family<BackendLabels, Gauge>,
    pub backend_available: Family<BackendLabels, Gauge>,
    pub backend_outstanding: Family<BackendLabels, Gauge>,
    pub health_checks: Family<BackendOutcomeLabels, Counter>,
    pub retries: Family<BackendLabels, Counter>,
    pub ejections: Family<BackendLabels, Counter>,
    pub config_generation: Gauge,
    pub config_reloads: Family<OutcomeLabels, Counter>,
    pub certificate_reloads: Family<OutcomeLabels, Counter>,
    pub access_log_dropped: Counter,
    pub firewall_blocks: Family<ReasonLabels, Counter>,
    pub rate_limited: Family<NameLabels, Counter>,
    pub security_events: Family<KindLabels, Counter>,
    pub scenario_triggers: Family<NameLabels, Counter>,
    pub bans_active: Gauge,
    pub security_log_dropped: Counter,
    pub security_log_suppressed: Counter,
    pub kernel_applies: Family<OutcomeLabels, Counter>,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::default();
        let m = Metrics {
            requests: Family::default(),
            request_duration: Family::new_with_constructor(latency_histogram),
            upstream_duration: Family::new_with_constructor(latency_histogram),
            errors: Family::default(),
            connections_active: Family::default(),
            connections_total: Family::default(),
            connections_rejected: Family::default(),
            proxy_protocol_rejected: Family::default(),
            tls_handshakes: Family::default(),
            tls_handshake_errors: Family::default(),
            backend_healthy: Family::default(),
            backend_available: Family::default(),
            backend_outstanding: Family::default(),
            health_checks: Family::default(),
            retries: Family::default(),
            ejections: Family::default(),
            config_generation: Gauge::default(),
            config_reloads: Family::default(),
            certificate_reloads: Family::default(),
            access_log_dropped: Counter::default(),
            firewall_blocks: Family::default(),
            rate_limited: Family::default(),
            security_events: Family::default(),
            scenario_triggers: Family::default(),
            bans_active: Gauge::default(),
            security_log_dropped: Counter::default(),
            security_log_suppressed: Counter::default(),
            kernel_applies: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "rampart_http_requests",
            "HTTP requests by route, pool, backend and status class",
            m.requests.clone(),
        );
        registry.register(
            "rampart_http_request_duration_seconds",
            "Time from request head to response head, per route and pool",
            m.request_duration.clone(),
        );
        registry.register(
            "rampart_upstream_response_duration_seconds",
            "Upstream time to response head, per backend",
            m.upstream_duration.clone(),
        );
        registry.register(
            "rampart_http_errors",
            "Requests answered by the proxy itself, by error kind",
            m.errors.clone(),
        );
        registry.register(
            "rampart_connections_active",
            "Open client connections per listener",
            m.connections_active.clone(),
        );
        registry.register(
            "rampart_connections",
            "Accepted client connections per listener",
            m.connections_total.clone(),
        );
        registry.register(
            "rampart_connections_rejected",
            "Client connections closed at accept by a connection limit (reason: max_connections, max_connections_per_ip)",
            m.connections_rejected.clone(),
        );
        registry.register(
            "rampart_proxy_protocol_rejected",
            "Client connections closed because of their PROXY protocol header (untrusted source, missing, malformed, timeout)",
            m.proxy_protocol_rejected.clone(),
        );
        registry.register(
            "rampart_tls_handshakes",
            "Completed TLS handshakes per listener",
            m.tls_handshakes.clone(),
        );
        registry.register(
            "rampart_tls_handshake_errors",
            "Failed TLS handshakes per listener",
            m.tls_handshake_errors.clone(),
        );
        registry.register(
            "rampart_backend_healthy",
            "1 when active health checks consider the backend up",
            m.backend_healthy.clone(),
        );
        registry.register(
            "rampart_backend_available",
            "1 when the backend can take new requests (healthy, enabled, not ejected)",
            m.backend_available.clone(),
        );
        registry.register(
            "rampart_backend_outstanding_requests",
            "Requests in flight per backend",
            m.backend_outstanding.clone(),
        );
        registry.register(
            "rampart_health_checks",
            "Active health check results",
            m.health_checks.clone(),
        );
        registry.register(
            "rampart_upstream_retries",
            "Retries sent to a backend",
            m.retries.clone(),
        );
        registry.register(
            "rampart_outlier_ejections",
            "Passive outlier ejections",
            m.ejections.clone(),
        );
        registry.register(
            "rampart_config_generation",
            "Generation number of the running config",
            m.config_generation.clone(),
        );
        registry.register(
            "rampart_config_reloads",
            "Config reload attempts by outcome",
            m.config_reloads.clone(),
        );
        registry.register(
            "rampart_certificate_reloads",
            "Certificate file reloads by outcome",
            m.certificate_reloads.clone(),
        );
        registry.register(
            "rampart_access_log_dropped",
            "Access log lines dropped because the writer fell behind",
            m.access_log_dropped.clone(),
        );
        registry.register(
            "rampart_firewall_blocks",
            "Connections and requests refused by the firewall, by reason (acl, zone_acl, banned, connection_rate, zone_policy, rate_limit, content filter reasons)",
            m.firewall_blocks.clone(),
        );
        registry.register(
            "rampart_firewall_rate_limited",
            "Requests refused with 429, by rate limit",
            m.rate_limited.clone(),
        );
        registry.register(
            "rampart_security_events",
            "Security events fed to intrusion prevention, by kind",
            m.security_events.clone(),
        );
        registry.register(
            "rampart_ips_scenario_triggers",
            "Intrusion-prevention scenarios that overflowed and banned a source, by scenario",
            m.scenario_triggers.clone(),
        );
        registry.register(
            "rampart_ips_bans_active",
            "Source addresses banned right now",
            m.bans_active.clone(),
        );
        registry.register(
            "rampart_security_log_dropped",
            "Security log lines dropped because the writer fell behind",
            m.security_log_dropped.clone(),
        );
        registry.register(
            "rampart_security_log_suppressed",
            "Security log lines not written because one source sent more than 5 per second of one kind (after a burst of 20)",
            m.security_log_suppressed.clone(),
        );
        registry.register(
            "rampart_firewall_kernel_applies",
            "Whole-table applications of Rampart's nftables table, by outcome",
            m.kernel_applies.clone(),
        );
        Arc::new(Metrics { registry, ..m })
    }

    /// Text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

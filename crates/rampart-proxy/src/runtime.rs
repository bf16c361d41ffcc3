//! Everything the data plane needs for one config generation, compiled from a [`Snapshot`]:
//! balancer state, upstream endpoints and TLS acceptors. A `Runtime` is immutable once built;
//! the control plane swaps whole runtimes (`arc-swap`), and a request keeps the one it started
//! with until it ends.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rampart_balance as balance;
use rampart_config::{self as config, Snapshot};
use rampart_tls::{CertSpec, CertStore, ClientAuth, ServerTlsSpec, UpstreamTlsSpec};
use rustls::pki_types::ServerName;

use crate::sharded::{ShardedCounter as Counter, ShardedHistogram as Histogram};

use crate::metrics::{BackendLabels, Metrics, RequestLabels, RouteLabels};
use crate::upstream::{Endpoint, EndpointSpec, Protocol, Registry, UpstreamTlsTarget};

/// Status classes in metric order: 1xx .. 5xx.
pub const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

fn class_index(status: u16) -> usize {
    ((status / 100).clamp(1, 5) - 1) as usize
}

/// Request counters resolved once per runtime, so the request path does no label lookups.
pub struct RouteMetrics {
    pub duration: Histogram,
    /// Per backend of the route's pool, then one extra row for "no backend"; per status class.
    counters: Vec<[Counter; 5]>,
}

impl RouteMetrics {
    fn new(metrics: &Metrics, route: &str, pool: &str, backends: &[String]) -> Self {
        let row = |backend: &str| {
            CLASSES.map(|class| {
                metrics
                    .requests
                    .get_or_create(&RequestLabels {
                        route: route.to_string(),
                        pool: pool.to_string(),
                        backend: backend.to_string(),
                        class,
                    })
                    .clone()
            })
        };
        let mut counters: Vec<[Counter; 5]> = backends.iter().map(|b| row(b)).collect();
        counters.push(row(""));
        RouteMetrics {
            duration: metrics
                .request_duration
                .get_or_create(&RouteLabels {
                    route: route.to_string(),
                    pool: pool.to_string(),
                })
                .clone(),
            counters,
        }
    }

    pub fn count(&self, backend: Option<usize>, status: u16) {
        let row = backend
            .unwrap_or(self.counters.len() - 1)
            .min(self.counters.len() - 1);
        self.counters[row][class_index(status)].inc();
    }
}

pub struct Runtime {
    pub generation: u64,
    pub snapshot: Arc<Snapshot>,
    pub pools: Vec<PoolRuntime>,
    pub listeners: HashMap<String, ListenerRuntime>,
    /// Indexed like `snapshot.routes`.
    pub route_metrics: Vec<RouteMetrics>,
    /// Requests that matched no route.
    pub unrouted_metrics: RouteMetrics,
    pub firewall: Arc<crate::firewall::FirewallRuntime>,
    pub waf: Arc<crate::waf::WafRuntime>,
}

pub struct ListenerRuntime {
    pub config: config::Listener,
    pub tls: Option<ListenerTlsRuntime>,
    /// For tcp listeners: index of the pool in `Runtime::pools` for connections no SNI route
    /// takes.
    pub tcp_pool: Option<usize>,
    /// For tcp listeners with SNI routes: each route and its pool's index.
    pub sni_pools: Vec<(config::SniRoute, usize)>,
}

impl ListenerRuntime {
    /// Whether connections are relayed at layer 4.
    pub fn is_tcp(&self) -> bool {
        self.config.protocol == config::ListenerProtocol::Tcp
    }
}

pub struct ListenerTlsRuntime {
    pub acceptor: tokio_rustls::TlsAcceptor,
    pub store: Arc<CertStore>,
}

pub struct PoolRuntime {
    pub config: config::Pool,
    pub balancer: balance::Pool,
    pub endpoints: Vec<Arc<Endpoint>>,
    /// Per-backend hash of its id, for source-IP and header affinity (rendezvous hashing).
    pub id_hashes: Vec<u64>,
    pub retry_budget: RetryBudget,
    /// Upstream response-head latency per backend.
    pub upstream_duration: Vec<Histogram>,
    /// Per-backend request slots and the queue for them, when the pool caps requests per
    /// backend.
    pub slots: Option<BackendSlots>,
}

/// `max_connections_per_backend` (HAProxy `maxconn`) and the pool's queue (`maxqueue`,
/// `timeout queue`): a request takes a slot of its backend for as long as it is in flight;
/// when every eligible backend is full it waits for a slot to free, up to the queue timeout.
pub struct BackendSlots {
    pub per_backend: Vec<Arc<tokio::sync::Semaphore>>,
    pub freed: Arc<tokio::sync::Notify>,
    pub waiting: AtomicU64,
}

impl BackendSlots {
    fn new(backends: usize, each: usize) -> Self {
        BackendSlots {
            per_backend: (0..backends)
                .map(|_| Arc::new(tokio::sync::Semaphore::new(each)))
                .collect(),
            freed: Arc::new(tokio::sync::Notify::new()),
            waiting: AtomicU64::new(0),
        }
    }

    pub fn is_full(&self, backend: usize) -> bool {
        self.per_backend[backend].available_permits() == 0
    }

    /// A slot of `backend`, if it has one free.
    pub fn try_take(&self, backend: usize) -> Option<Slot> {
        self.per_backend[backend]
            .clone()
            .try_acquire_owned()
            .ok()
            .map(|permit| Slot {
                permit: Some(permit),
                freed: self.freed.clone(),
            })
    }
}

/// A request's place on its backend; freeing it wakes the queue.
pub struct Slot {
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    freed: Arc<tokio::sync::Notify>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        drop(self.permit.take());
        self.freed.notify_waiters();
    }
}

impl Runtime {
    /// Compiles a snapshot. Fails (with every problem listed) when certificates or keys cannot
    /// be loaded. State of pools with the same name in `previous` carries over.
    pub fn build(
        snapshot: Arc<Snapshot>,
        generation: u64,
        previous: Option<&Runtime>,
        registry: &Registry,
        metrics: &Metrics,
    ) -> Result<Runtime, Vec<String>> {
        let mut errors = Vec::new();
        let now = Instant::now();
        let mut pools = Vec::with_capacity(snapshot.pools.len());
        for p in &snapshot.pools {
            let tls = match &p.tls {
                None => None,
                Some(t) => match upstream_tls(p, t) {
                    Ok(target) => Some(target),
                    Err(e) => {
                        errors.push(format!("pool \"{}\": {e}", p.name));
                        None
                    }
                },
            };
            let spec = balance::PoolSpec {
                algorithm: match p.algorithm {
                    config::Algorithm::RoundRobin => balance::Algorithm::RoundRobin,
                    config::Algorithm::WeightedRoundRobin => balance::Algorithm::WeightedRoundRobin,
                    config::Algorithm::LeastConnections => balance::Algorithm::LeastConnections,
                    config::Algorithm::PowerOfTwoEwma => balance::Algorithm::PowerOfTwoEwma,
                    config::Algorithm::ConsistentHash => balance::Algorithm::ConsistentHash,
                    config::Algorithm::Random => balance::Algorithm::Random,
                },
                backends: p
                    .backends
                    .iter()
                    .map(|b| balance::BackendSpec {
                        id: b.id.clone(),
                        weight: b.weight,
                        backup: b.backup,
                    })
                    .collect(),
                health: balance::HealthParams {
                    rise: p.health_check.as_ref().map_or(1, |h| h.rise),
                    fall: p.health_check.as_ref().map_or(1, |h| h.fall),
                },
                outlier: p.outlier.as_ref().map(|o| balance::OutlierParams {
                    consecutive_failures: o.consecutive_failures,
                    base_ejection: o.base_ejection,
                    max_ejection: o.max_ejection,
                    max_ejected_percent: o.max_ejected_percent,
                }),
                slow_start: p.slow_start,
            };
            let balancer = balance::Pool::new(spec, now);
            if let Some(old) =
                previous.and_then(|r| r.pools.iter().find(|o| o.config.name == p.name))
            {
                balancer.inherit_state(&old.balancer);
            }
            let endpoints = p
                .backends
                .iter()
                .map(|b| {
                    registry.endpoint(EndpointSpec {
                        host: b.host.clone(),
                        port: b.port,
                        protocol: match p.protocol {
                            config::UpstreamProtocol::Http1 => Protocol::Http1,
                            config::UpstreamProtocol::Http2 => Protocol::Http2,
                        },
                        tls: tls.clone(),
                        max_idle: p.max_idle_per_backend,
                        idle_timeout: p.timeouts.idle,
                        proxy_protocol: p.send_proxy_protocol,
                    })
                })
                .collect();
            let upstream_duration = p
                .backends
                .iter()
                .map(|b| {
                    metrics
                        .upstream_duration
                        .get_or_create(&BackendLabels {
                            pool: p.name.clone(),
                            backend: b.id.clone(),
                        })
                        .clone()
                })
                .collect();
            pools.push(PoolRuntime {
                upstream_duration,
                id_hashes: p
                    .backends
                    .iter()
                    .map(|b| balance::hash_bytes(b.id.as_bytes()))
                    .collect(),
                retry_budget: RetryBudget::new(p.retries.budget_percent, p.retries.min_per_second),
                slots: (p.max_connections_per_backend > 0)
                    .then(|| BackendSlots::new(p.backends.len(), p.max_connections_per_backend)),
                config: p.clone(),
                balancer,
                endpoints,
            });
        }

        let mut listeners = HashMap::new();
        for l in &snapshot.listeners {
            let tls = match &l.tls {
                None => None,
                Some(t) => match listener_tls(&snapshot, t) {
                    Ok(rt) => Some(rt),
                    Err(e) => {
                        errors.push(format!("listener \"{}\": {e}", l.name));
                        None
                    }
                },
            };
            listeners.insert(
                l.name.clone(),
                ListenerRuntime {
                    config: l.clone(),
                    tls,
                    tcp_pool: l
                        .pool
                        .as_ref()
                        .and_then(|name| snapshot.pools.iter().position(|p| &p.name == name)),
                    sni_pools: l
                        .sni
                        .iter()
                        .filter_map(|r| {
                            let pool = snapshot.pools.iter().position(|p| p.name == r.pool)?;
                            Some((r.clone(), pool))
                        })
                        .collect(),
                },
            );
        }
        let firewall = match crate::firewall::FirewallRuntime::build(
            &snapshot,
            previous.map(|p| &*p.firewall),
        ) {
            Ok(f) => Some(Arc::new(f)),
            Err(e) => {
                errors.extend(e);
                None
            }
        };
        let waf = match crate::waf::WafRuntime::build(&snapshot) {
            Ok(w) => Some(Arc::new(w)),
            Err(e) => {
                errors.extend(e);
                None
            }
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        let waf = waf.expect("WAF built when there are no errors");
        let firewall = firewall.expect("firewall built when there are no errors");
        let route_metrics = snapshot
            .routes
            .iter()
            .map(|r| {
                let pool = &snapshot.pools[r.pool];
                let ids: Vec<String> = pool.backends.iter().map(|b| b.id.clone()).collect();
                RouteMetrics::new(metrics, &r.name, &pool.name, &ids)
            })
            .collect();
        Ok(Runtime {
            generation,
            route_metrics,
            unrouted_metrics: RouteMetrics::new(metrics, "", "", &[]),
            snapshot,
            pools,
            listeners,
            firewall,
            waf,
        })
    }

    /// Every endpoint in use, to prune the registry after a swap.
    pub fn endpoints(&self) -> Vec<Arc<Endpoint>> {
        self.pools
            .iter()
            .flat_map(|p| p.endpoints.iter().cloned())
            .collect()
    }
}

fn listener_tls(
    snapshot: &Snapshot,
    t: &config::ListenerTls,
) -> Result<ListenerTlsRuntime, String> {
    let specs: Vec<CertSpec> = t
        .certificates
        .iter()
        .filter_map(|name| snapshot.certificate(name))
        .map(|c| CertSpec {
            name: c.name.clone(),
            cert_path: c.cert.clone(),
            key_path: c.key.clone(),
            server_names: c.server_names.clone(),
        })
        .collect();
    let store =
        CertStore::load(&specs, t.default_certificate.as_deref()).map_err(|e| e.to_string())?;
    let client_auth = match (t.client_auth, &t.client_ca) {
        (config::ClientAuthMode::Optional, Some(ca)) => ClientAuth::Optional {
            ca_path: ca.clone(),
        },
        (config::ClientAuthMode::Required, Some(ca)) => ClientAuth::Required {
            ca_path: ca.clone(),
        },
        _ => ClientAuth::None,
    };
    let spec = ServerTlsSpec {
        certificates: specs,
        default_certificate: t.default_certificate.clone(),
        client_auth,
        alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
    };
    let server = rampart_tls::server_config(&spec, store.clone()).map_err(|e| e.to_string())?;
    Ok(ListenerTlsRuntime {
        acceptor: tokio_rustls::TlsAcceptor::from(server),
        store,
    })
}

fn upstream_tls(pool: &config::Pool, t: &config::UpstreamTls) -> Result<UpstreamTlsTarget, String> {
    let alpn = match pool.protocol {
        config::UpstreamProtocol::Http1 => vec![b"http/1.1".to_vec()],
        config::UpstreamProtocol::Http2 => vec![b"h2".to_vec()],
    };
    let config = rampart_tls::client_config(&UpstreamTlsSpec {
        verify: t.verify,
        ca_path: t.ca.clone(),
        client_cert: t.client_cert.clone(),
        alpn,
    })
    .map_err(|e| e.to_string())?;
    let name = t
        .server_name
        .clone()
        .or_else(|| pool.backends.first().map(|b| b.host.clone()))
        .unwrap_or_default();
    let server_name = ServerName::try_from(name.clone())
        .map_err(|_| format!("invalid TLS server name \"{name}\""))?;
    Ok(UpstreamTlsTarget {
        config,
        server_name,
        identity: format!("{name}|{}|{:016x}", t.verify, tls_material_hash(t)),
    })
}

/// Hash of the upstream TLS files' paths and contents, so that a reload with a rotated CA or
/// client certificate gets new connections instead of reusing pooled ones.
fn tls_material_hash(t: &config::UpstreamTls) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let files =
        t.ca.iter()
            .chain(t.client_cert.iter().flat_map(|(c, k)| [c, k]));
    for path in files {
        path.hash(&mut h);
        std::fs::read(path).unwrap_or_default().hash(&mut h);
    }
    h.finish()
}

/// Limits retries to a share of requests over a sliding 10 s window, plus a floor per second,
/// so retries cannot multiply load on a struggling pool.
pub struct RetryBudget {
    percent: u64,
    min_per_second: u64,
    window_start: AtomicU64,
    /// Requests ever seen (per-worker shards: counted on every request).
    requests: Counter,
    /// `requests` when the current window started.
    window_base: AtomicU64,
    retries: AtomicU64,
    epoch: Instant,
}

const BUDGET_WINDOW: Duration = Duration::from_secs(10);

impl RetryBudget {
    pub fn new(percent: u32, min_per_second: u32) -> Self {
        RetryBudget {
            percent: percent as u64,
            min_per_second: min_per_second as u64,
            window_start: AtomicU64::new(0),
            requests: Counter::default(),
            window_base: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    fn roll(&self, now: Instant) {
        let secs = now.duration_since(self.epoch).as_secs();
        let start = self.window_start.load(Ordering::Relaxed);
        if secs >= start + BUDGET_WINDOW.as_secs()
            && self
                .window_start
                .compare_exchange(start, secs, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.window_base
                .store(self.requests.get(), Ordering::Relaxed);
            self.retries.store(0, Ordering::Relaxed);
        }
    }

    pub fn record_request(&self, now: Instant) {
        self.roll(now);
        self.requests.inc();
    }

    /// Takes one retry from the budget if there is one left.
    pub fn try_retry(&self, now: Instant) -> bool {
        self.roll(now);
        let requests = self
            .requests
            .get()
            .saturating_sub(self.window_base.load(Ordering::Relaxed));
        let allowed = requests * self.percent / 100 + self.min_per_second * BUDGET_WINDOW.as_secs();
        let used = self.retries.fetch_add(1, Ordering::Relaxed);
        if used < allowed {
            true
        } else {
            self.retries.fetch_sub(1, Ordering::Relaxed);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_budget_caps_share() {
        let b = RetryBudget::new(20, 0);
        let now = Instant::now();
        for _ in 0..100 {
            b.record_request(now);
        }
        let granted = (0..50).filter(|_| b.try_retry(now)).count();
        assert_eq!(granted, 20);
        let floor = RetryBudget::new(0, 1);
        assert_eq!((0..50).filter(|_| floor.try_retry(now)).count(), 10);
    }
}

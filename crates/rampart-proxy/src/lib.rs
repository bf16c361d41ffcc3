//! Rampart's data plane and the control loop around it.
//!
//! The data plane (listeners, [`proxy::handle`]) only reads the current [`Runtime`], an
//! immutable compilation of a config [`Snapshot`](rampart_config::Snapshot) held in an
//! `ArcSwap`. The control plane ([`Proxy`]) validates new configs, builds the next runtime off
//! the request path, swaps it in atomically, and reconciles listeners and health-check tasks.
//! A request keeps the runtime it started with, so a reload never disturbs requests in flight.

#![forbid(unsafe_code)]

pub mod accesslog;
pub mod body;
pub mod error;
pub mod firewall;
pub mod h1client;
pub mod h1server;
pub mod headers;
pub mod health;
pub mod kernel;
pub mod l4;
pub mod metrics;
pub mod phase;
pub mod proxy;
pub mod proxy_protocol;
pub mod router;
pub mod runtime;
pub mod server;
pub mod sharded;
pub mod upstream;
pub mod waf;
pub mod workers;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use rampart_balance::{AdminState, StickySigner};
use rampart_config::{AccessLog, ConfigErrors, Snapshot};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use crate::accesslog::AccessLogger;
pub use crate::metrics::Metrics;
pub use crate::phase::{ConnInfo, ConnectionGuard, Phases, Rejection, RequestGuard};
pub use crate::runtime::Runtime;

/// State shared by every connection task.
/// A ban, for the admin API and the CLI.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct BanView {
    pub ip: String,
    /// The scenario that triggered it, or `manual`.
    pub reason: String,
    pub offence: u32,
    pub ttl_seconds: u64,
    pub remaining_seconds: u64,
}

impl BanView {
    fn of(ban: &rampart_firewall::Ban, now: Instant) -> Self {
        let secs = |d: Duration| d.as_secs() + u64::from(d.subsec_nanos() > 0);
        BanView {
            ip: ban.ip.to_string(),
            reason: ban.reason.clone(),
            offence: ban.offence,
            ttl_seconds: secs(ban.ttl()),
            remaining_seconds: secs(ban.remaining(now)),
        }
    }
}

pub struct Shared {
    /// The current runtime, for the control plane and threads off the data plane.
    pub runtime: ArcSwap<Runtime>,
    /// The same runtime behind a handle of each worker's own, so that requests on different
    /// cores never write the same reference count.
    worker_runtimes: Box<[WorkerSlot]>,
    pub metrics: Arc<Metrics>,
    pub access_log: ArcSwap<AccessLogger>,
    pub security_log: ArcSwap<firewall::SecurityLogger>,
    /// The WAF audit log (one JSON line per transaction on a WAF route).
    pub waf_audit: ArcSwap<waf::AuditLogger>,
    /// Bans in force; outlive reloads.
    pub bans: Arc<rampart_firewall::BanTable>,
    /// Changes for the nftables reconciler, when kernel enforcement is on.
    kernel: std::sync::OnceLock<tokio::sync::mpsc::Sender<kernel::KernelOp>>,
    /// A change could not be queued: the reconciler applies the whole table.
    kernel_dirty: std::sync::atomic::AtomicBool,
    /// Security log lines allowed per source and event kind.
    pub security_log_limit: rampart_firewall::KeyedLimiter,
    pub registry: upstream::Registry,
    pub sticky: StickySigner,
    pub request_ids: proxy::RequestIds,
    pub phases: Phases,
    /// Set when the process stops: HTTP/1.1 responses then carry `Connection: close`.
    pub draining: std::sync::atomic::AtomicBool,
}

/// A worker's handle to the current runtime.
pub struct WorkerRuntime(Arc<Runtime>);

impl std::ops::Deref for WorkerRuntime {
    type Target = Runtime;
    fn deref(&self) -> &Runtime {
        &self.0
    }
}

#[repr(align(64))]
struct WorkerSlot(ArcSwap<WorkerRuntime>);

impl Shared {
    /// Called for every new ban: updates the gauge (and, with kernel enforcement, the
    /// nftables ban set).
    pub fn ban_placed(&self, ban: &rampart_firewall::Ban) {
        self.kernel_send(kernel::KernelOp::Ban(ban.ip, ban.remaining(Instant::now())));
        self.metrics.bans_active.set(self.bans.len() as i64);
    }

    /// Queues a change for the nftables reconciler; when the queue is full the next
    /// reconcile applies the whole table instead.
    fn kernel_send(&self, op: kernel::KernelOp) {
        if let Some(tx) = self.kernel.get()
            && tx.try_send(op).is_err()
        {
            self.kernel_dirty
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Whether a client may use the admin API or the metrics endpoint, which belong to the
    /// `mgmt` zone: loopback always, banned sources never, others only from the zone's source
    /// networks when it has any.
    pub fn admits_management(&self, ip: std::net::IpAddr) -> bool {
        let ip = rampart_firewall::canonical_ip(ip);
        if ip.is_loopback() {
            return true;
        }
        if self.bans.banned(ip, Instant::now()).is_some() {
            return false;
        }
        let rt = self.runtime.load();
        rt.firewall
            .zone_sources("mgmt")
            .is_none_or(|sources| sources.longest_match(ip).is_some())
    }

    /// Drops expired bans (logging each) and updates the gauge.
    pub fn expire_bans(&self) {
        let now = Instant::now();
        let rt = self.runtime.load();
        let policy = rt
            .firewall
            .detector
            .as_ref()
            .map(|d| d.policy)
            .unwrap_or_default();
        let expired = self.bans.expire(now, &policy);
        if !expired.is_empty() {
            let log = self.security_log.load();
            for ban in &expired {
                tracing::info!(client = %ban.ip, scenario = %ban.reason, "ban expired");
                if log.enabled() {
                    let mut record =
                        firewall::SecurityRecord::new("ban_expired", ban.ip, "expired");
                    record.scenario = Some(ban.reason.clone());
                    record.offence = Some(ban.offence);
                    log.log(record);
                }
            }
        }
        self.metrics.bans_active.set(self.bans.len() as i64);
    }

    /// The runtime a new request uses.
    pub fn request_runtime(&self) -> Arc<WorkerRuntime> {
        match workers::current().and_then(|w| self.worker_runtimes.get(w)) {
            Some(slot) => slot.0.load_full(),
            None => Arc::new(WorkerRuntime(self.runtime.load_full())),
        }
    }

    /// Makes `rt` the runtime of new requests everywhere.
    fn publish(&self, rt: Arc<Runtime>) {
        for slot in &self.worker_runtimes {
            slot.0.store(Arc::new(WorkerRuntime(rt.clone())));
        }
        self.runtime.store(rt);
    }
}

/// Why a start or reload failed. The running config (if any) is unchanged.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{0}")]
    Invalid(ConfigErrors),
    #[error("{}", .0.join("\n"))]
    Files(Vec<String>),
    #[error("cannot listen on {address} for listener \"{listener}\": {error}")]
    Bind {
        listener: String,
        address: SocketAddr,
        error: std::io::Error,
    },
    #[error("no config file to reload from")]
    NoConfigFile,
    #[error("cannot start the worker threads: {0}")]
    Workers(std::io::Error),
    #[error("{0}")]
    Kernel(String),
    /// The process is shutting down (or has handed its sockets to a new one): a reload now
    /// would open listeners again in a process about to exit, and the connections queued on
    /// them would be reset when it does.
    #[error("shutting down; config changes go to the process that takes over")]
    ShuttingDown,
}

/// Status of one backend, for the admin API.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BackendStatus {
    pub id: String,
    pub address: String,
    pub weight: u32,
    pub effective_weight: u32,
    pub backup: bool,
    pub healthy: bool,
    pub available: bool,
    pub admin_state: &'static str,
    pub ejected_for_ms: Option<u64>,
    pub outstanding: u32,
    pub ewma_latency_ms: f64,
    pub total_requests: u64,
    pub total_failures: u64,
    pub idle_connections: usize,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct PoolStatus {
    pub name: String,
    pub algorithm: String,
    pub backends: Vec<BackendStatus>,
}

struct ListenerHandle {
    address: SocketAddr,
    stop: watch::Sender<bool>,
    /// One accept loop per socket.
    tasks: Vec<JoinHandle<()>>,
    /// Duplicates of the listener's sockets, to hand over to a new process.
    sockets: Vec<std::net::TcpListener>,
}

/// What a listening socket is for, as the process that hands it over describes it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SocketRole {
    pub kind: SocketKind,
    /// The listener's name (empty for the admin and metrics sockets).
    pub name: String,
    /// The address as configured (port 0 included), not as bound.
    pub address: SocketAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SocketKind {
    Listener,
    Admin,
    Metrics,
    /// The embedded TSDB's Prometheus HTTP API.
    Query,
}

/// A listening socket this process did not bind: from systemd socket activation (no role)
/// or handed over by the process being upgraded.
pub struct InheritedSocket {
    pub role: Option<SocketRole>,
    pub socket: std::net::TcpListener,
}

/// Sockets bound for a new snapshot, not yet serving: one per worker for each listener.
struct PreparedListeners {
    stale: Vec<String>,
    bound: Vec<(String, SocketAddr, Vec<std::net::TcpListener>)>,
    deferred: Vec<(String, SocketAddr)>,
}

struct Control {
    listeners: HashMap<String, ListenerHandle>,
    health: Vec<JoinHandle<()>>,
    generation: u64,
    last_source_hash: u64,
    last_failed_hash: Option<u64>,
}

/// A running Rampart data plane and its control loop.
pub struct Proxy {
    shared: Arc<Shared>,
    config_path: Option<PathBuf>,
    control: tokio::sync::Mutex<Control>,
    addresses: Mutex<HashMap<String, SocketAddr>>,
    shutdown_tx: watch::Sender<bool>,
    tracker: Arc<server::ConnTracker>,
    background: Mutex<Vec<JoinHandle<()>>>,
    metrics_task: Mutex<Option<JoinHandle<()>>>,
    metrics_address: Mutex<Option<SocketAddr>>,
    workers: workers::Workers,
    /// Listening sockets handed over by systemd socket activation or an upgraded process,
    /// until a listener with their address takes them.
    inherited: Mutex<Vec<InheritedSocket>>,
    /// The admin and metrics sockets, to hand over to a new process.
    service_sockets: Mutex<Vec<(SocketRole, std::net::TcpListener)>>,
    /// Set after handing over to a new process: the nftables table is now its.
    kernel_handed_over: std::sync::atomic::AtomicBool,
}

impl Proxy {
    /// Builds the first runtime, binds every listener and starts health checks.
    /// `config_path` is where reloads read from.
    pub async fn start(
        snapshot: Snapshot,
        config_path: Option<PathBuf>,
        phases: Phases,
    ) -> Result<Arc<Proxy>, ReloadError> {
        Self::start_with_sockets(snapshot, config_path, phases, Vec::new()).await
    }

    /// [`Proxy::start`] that serves `handed_over` sockets (from the process being upgraded)
    /// where their role matches a listener, besides any systemd passed.
    pub async fn start_with_sockets(
        snapshot: Snapshot,
        config_path: Option<PathBuf>,
        phases: Phases,
        handed_over: Vec<InheritedSocket>,
    ) -> Result<Arc<Proxy>, ReloadError> {
        let mut inherited = handed_over;
        inherited.extend(inherited_sockets());
        let metrics = Metrics::new();
        let secret = match &snapshot.runtime.sticky_secret_file {
            Some(path) => std::fs::read(path).map_err(|e| {
                ReloadError::Files(vec![format!(
                    "cannot read sticky secret {}: {e}",
                    path.display()
                )])
            })?,
            None => rand::random::<[u8; 32]>().to_vec(),
        };
        let snapshot = Arc::new(snapshot);
        if let Some(k) = &snapshot.firewall.nftables {
            kernel::check_nft(k).map_err(ReloadError::Kernel)?;
        }
        let threads = match snapshot.runtime.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let workers = workers::Workers::start(threads).map_err(ReloadError::Workers)?;
        // One idle-connection shard per worker, plus one for callers off the data plane.
        let registry = upstream::Registry::new(workers.len() + 1);
        let runtime = Runtime::build(snapshot.clone(), 1, None, &registry, &metrics)
            .map_err(ReloadError::Files)?;
        let access_log = build_access_log(&snapshot.observability.access_log, &metrics)
            .map_err(|e| ReloadError::Files(vec![e]))?;
        let security_log = build_security_log(&snapshot.observability.security_log, &metrics)
            .map_err(|e| ReloadError::Files(vec![e]))?;
        let waf_audit =
            build_waf_audit(&snapshot, &metrics).map_err(|e| ReloadError::Files(vec![e]))?;
        let runtime = Arc::new(runtime);
        let shared = Arc::new(Shared {
            worker_runtimes: (0..workers.len())
                .map(|_| WorkerSlot(ArcSwap::from_pointee(WorkerRuntime(runtime.clone()))))
                .collect(),
            runtime: ArcSwap::new(runtime),
            metrics: metrics.clone(),
            access_log: ArcSwap::from_pointee(access_log),
            security_log: ArcSwap::from_pointee(security_log),
            waf_audit: ArcSwap::from_pointee(waf_audit),
            bans: Arc::new(rampart_firewall::BanTable::new(max_bans(&snapshot))),
            kernel: std::sync::OnceLock::new(),
            kernel_dirty: std::sync::atomic::AtomicBool::new(false),
            security_log_limit: firewall::security_log_limiter(),
            registry,
            sticky: StickySigner::new(&secret),
            request_ids: proxy::RequestIds::new(),
            phases,
            draining: std::sync::atomic::AtomicBool::new(false),
        });
        let (shutdown_tx, _) = watch::channel(false);
        let proxy = Arc::new(Proxy {
            shared,
            config_path,
            control: tokio::sync::Mutex::new(Control {
                listeners: HashMap::new(),
                health: Vec::new(),
                generation: 1,
                last_source_hash: snapshot.source_hash,
                last_failed_hash: None,
            }),
            addresses: Mutex::new(HashMap::new()),
            shutdown_tx,
            tracker: Arc::new(server::ConnTracker::default()),
            background: Mutex::new(Vec::new()),
            metrics_task: Mutex::new(None),
            metrics_address: Mutex::new(None),
            workers,
            inherited: Mutex::new(inherited),
            service_sockets: Mutex::new(Vec::new()),
            kernel_handed_over: std::sync::atomic::AtomicBool::new(false),
        });
        {
            let mut control = proxy.control.lock().await;
            let prepared = proxy.prepare_listeners(&control, &snapshot)?;
            proxy.commit_listeners(&mut control, prepared).await;
            proxy.close_unused_inherited(&[SocketKind::Listener]);
            let rt = proxy.shared.runtime.load_full();
            control.health = health::spawn_checks(&proxy.shared, &rt);
        }
        metrics.config_generation.set(1);
        if let Some(addr) = snapshot.observability.metrics_address {
            let listener = proxy
                .service_socket(SocketKind::Metrics, addr)
                .map_err(|error| ReloadError::Bind {
                    listener: "metrics".into(),
                    address: addr,
                    error,
                })?;
            *proxy
                .metrics_address
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = listener.local_addr().ok();
            let task = tokio::spawn(metrics_server(listener, proxy.shared.clone()));
            *proxy.metrics_task.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        }
        proxy.start_kernel().await?;
        proxy.spawn_background();
        Ok(proxy)
    }

    /// The nftables table this process wants now, when kernel enforcement is on.
    pub fn kernel_plan(&self) -> Option<rampart_firewall::nft::KernelPlan> {
        let rt = self.shared.runtime.load_full();
        let settings = rt.snapshot.firewall.nftables.as_ref()?;
        let bound = |name: &str| self.listener_addr(name);
        Some(kernel::plan(
            &rt.snapshot,
            &rt.firewall,
            settings,
            &bound,
            &kernel::ban_times(&self.shared.bans, Instant::now()),
        ))
    }

    /// Applies the whole table now.
    async fn kernel_apply(&self) -> Result<(), String> {
        let rt = self.shared.runtime.load_full();
        let Some((nft_bin, table, _)) = kernel::settings(&rt.snapshot) else {
            return Ok(());
        };
        let Some(plan) = self.kernel_plan() else {
            return Ok(());
        };
        let script = rampart_firewall::nft::render(&plan);
        let result = tokio::task::spawn_blocking(move || kernel::run_nft(&nft_bin, &script))
            .await
            .unwrap_or_else(|e| Err(e.to_string()))
            .map_err(|e| format!("applying nftables table \"{table}\": {e}"));
        let outcome = if result.is_ok() { "success" } else { "failure" };
        self.shared
            .metrics
            .kernel_applies
            .get_or_create(&metrics::OutcomeLabels { outcome })
            .inc();
        result
    }

    /// Kernel enforcement at start: takes over bans a replaced process left in the table,
    /// applies the table (an error stops the start), and runs the reconciler.
    async fn start_kernel(self: &Arc<Self>) -> Result<(), ReloadError> {
        let rt = self.shared.runtime.load_full();
        let Some((nft_bin, table, interval)) = kernel::settings(&rt.snapshot) else {
            return Ok(());
        };
        let kept = {
            let (bin, table) = (nft_bin.clone(), table.clone());
            tokio::task::spawn_blocking(move || kernel::existing_bans(&bin, &table))
                .await
                .unwrap_or_default()
        };
        let now = Instant::now();
        for (ip, left) in kept {
            self.shared.bans.set(ip, left, "inherited", now);
        }
        self.kernel_apply().await.map_err(ReloadError::Kernel)?;
        tracing::info!(table = %table, "nftables table applied");
        let (tx, mut rx) = tokio::sync::mpsc::channel(KERNEL_QUEUE);
        let _ = self.shared.kernel.set(tx);
        let weak = Arc::downgrade(self);
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.tick().await;
            loop {
                let mut ops = Vec::new();
                tokio::select! {
                    op = rx.recv() => match op {
                        Some(op) => ops.push(op),
                        None => return,
                    },
                    _ = tick.tick() => {}
                };
                // Everything queued meanwhile goes in the same script.
                while ops.len() < KERNEL_BATCH
                    && let Ok(op) = rx.try_recv()
                {
                    ops.push(op);
                }
                let Some(proxy) = weak.upgrade() else { return };
                let rt = proxy.shared.runtime.load_full();
                let Some((nft_bin, table, _)) = kernel::settings(&rt.snapshot) else {
                    continue;
                };
                let mut whole = proxy
                    .shared
                    .kernel_dirty
                    .swap(false, std::sync::atomic::Ordering::Relaxed)
                    || ops.iter().any(|op| matches!(op, kernel::KernelOp::Reapply));
                if !whole && !ops.is_empty() {
                    let script: String = ops
                        .iter()
                        .map(|op| match op {
                            kernel::KernelOp::Ban(ip, left) => {
                                rampart_firewall::nft::add_ban(&table, *ip, *left)
                            }
                            kernel::KernelOp::Unban(ip) => {
                                rampart_firewall::nft::remove_ban(&table, *ip)
                            }
                            kernel::KernelOp::Reapply => String::new(),
                        })
                        .collect();
                    let bin = nft_bin.clone();
                    let done = tokio::task::spawn_blocking(move || kernel::run_nft(&bin, &script))
                        .await
                        .unwrap_or_else(|e| Err(e.to_string()));
                    if let Err(e) = done {
                        tracing::warn!(error = %e, "nftables ban update failed; applying the whole table");
                        whole = true;
                    }
                } else if ops.is_empty() {
                    let Some(plan) = proxy.kernel_plan() else {
                        continue;
                    };
                    let bin = nft_bin.clone();
                    let matches =
                        tokio::task::spawn_blocking(move || kernel::table_matches(&bin, &plan))
                            .await
                            .unwrap_or(false);
                    if !matches {
                        tracing::warn!(table = %table, "nftables table missing or changed; applying it again");
                        whole = true;
                    }
                }
                if whole && let Err(e) = proxy.kernel_apply().await {
                    tracing::error!(error = %e, "nftables table not applied; retrying at the next reconcile");
                    proxy
                        .shared
                        .kernel_dirty
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                }
            }
        });
        self.background
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(task);
        Ok(())
    }

    /// After handing over to a new process: leave the nftables table to it on exit.
    pub fn hand_over_kernel_state(&self) {
        self.kernel_handed_over
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        self.shared.metrics.clone()
    }

    pub fn runtime(&self) -> Arc<Runtime> {
        self.shared.runtime.load_full()
    }

    pub fn generation(&self) -> u64 {
        self.shared.runtime.load().generation
    }

    /// Bound address of a listener (useful with port 0).
    pub fn listener_addr(&self, name: &str) -> Option<SocketAddr> {
        self.addresses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .copied()
    }

    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        *self
            .metrics_address
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Re-reads the config file and applies it.
    pub async fn reload_from_file(&self) -> Result<u64, ReloadError> {
        let path = self.config_path.clone().ok_or(ReloadError::NoConfigFile)?;
        let outcome = match rampart_config::load_file(&path) {
            Ok(snapshot) => self.apply(snapshot).await,
            Err(errors) => Err(ReloadError::Invalid(errors)),
        };
        self.note_reload(&outcome);
        outcome
    }

    fn note_reload(&self, outcome: &Result<u64, ReloadError>) {
        let label = if outcome.is_ok() {
            "success"
        } else {
            "failure"
        };
        self.shared
            .metrics
            .config_reloads
            .get_or_create(&metrics::OutcomeLabels { outcome: label })
            .inc();
        match outcome {
            Ok(generation) => tracing::info!(generation, "config reloaded"),
            Err(ReloadError::Invalid(errors)) => {
                for e in errors.iter() {
                    tracing::error!(error = %e, "config rejected");
                }
                tracing::error!(
                    count = errors.len(),
                    "config reload rejected; the running config stays"
                );
            }
            Err(e) => tracing::error!(error = %e, "config reload failed; the running config stays"),
        }
    }

    /// Validates runtime parts of `snapshot` (certificates, keys), reconciles listeners and
    /// swaps the new runtime in. On any error nothing changes.
    pub async fn apply(&self, snapshot: Snapshot) -> Result<u64, ReloadError> {
        self.apply_shared(Arc::new(snapshot)).await
    }

    async fn apply_shared(&self, snapshot: Arc<Snapshot>) -> Result<u64, ReloadError> {
        let mut control = self.control.lock().await;
        // `shutdown` sets the flag before it takes this lock to stop the listeners.
        if self.is_shutting_down() {
            return Err(ReloadError::ShuttingDown);
        }
        let previous = self.shared.runtime.load_full();
        let generation = control.generation + 1;
        let next = match Runtime::build(
            snapshot.clone(),
            generation,
            Some(&previous),
            &self.shared.registry,
            &self.shared.metrics,
        ) {
            Ok(rt) => rt,
            Err(errors) => {
                control.last_failed_hash = Some(snapshot.source_hash);
                return Err(ReloadError::Files(errors));
            }
        };
        let prepared = match self.prepare_listeners(&control, &snapshot) {
            Ok(p) => p,
            Err(e) => {
                control.last_failed_hash = Some(snapshot.source_hash);
                return Err(e);
            }
        };
        if snapshot.waf.audit_log != previous.snapshot.waf.audit_log {
            match build_waf_audit(&snapshot, &self.shared.metrics) {
                Ok(logger) => self.shared.waf_audit.store(Arc::new(logger)),
                Err(e) => tracing::error!(error = %e, "WAF audit log unchanged"),
            }
        }
        if snapshot.observability.security_log != previous.snapshot.observability.security_log {
            match build_security_log(&snapshot.observability.security_log, &self.shared.metrics) {
                Ok(logger) => self.shared.security_log.store(Arc::new(logger)),
                Err(e) => tracing::error!(error = %e, "security log unchanged"),
            }
        }
        if snapshot.observability.access_log != previous.snapshot.observability.access_log {
            match build_access_log(&snapshot.observability.access_log, &self.shared.metrics) {
                Ok(logger) => self.shared.access_log.store(Arc::new(logger)),
                Err(e) => tracing::error!(error = %e, "access log unchanged"),
            }
        }
        if snapshot.observability.metrics_address != previous.snapshot.observability.metrics_address
            || snapshot.runtime.threads != previous.snapshot.runtime.threads
            || snapshot.runtime.upgrade_socket != previous.snapshot.runtime.upgrade_socket
        {
            tracing::warn!(
                "metrics_address, runtime.threads and runtime.upgrade_socket changes take effect after a restart or upgrade"
            );
        }
        let next = Arc::new(next);
        self.shared.publish(next.clone());
        self.shared.bans.set_capacity(max_bans(&snapshot));
        self.shared.kernel_send(kernel::KernelOp::Reapply);
        self.commit_listeners(&mut control, prepared).await;
        self.shared.registry.retain(&next.endpoints());
        for task in control.health.drain(..) {
            task.abort();
        }
        control.health = health::spawn_checks(&self.shared, &next);
        control.generation = generation;
        control.last_source_hash = snapshot.source_hash;
        control.last_failed_hash = None;
        self.shared.metrics.config_generation.set(generation as i64);
        Ok(generation)
    }

    /// Binds the sockets a snapshot needs that are not open yet, without touching running
    /// listeners, so a bind failure leaves everything as it was.
    fn prepare_listeners(
        &self,
        control: &Control,
        snapshot: &Snapshot,
    ) -> Result<PreparedListeners, ReloadError> {
        let wanted: HashMap<&str, SocketAddr> = snapshot
            .listeners
            .iter()
            .map(|l| (l.name.as_str(), l.address))
            .collect();
        let stale: Vec<String> = control
            .listeners
            .iter()
            .filter(|(name, h)| wanted.get(name.as_str()) != Some(&h.address))
            .map(|(name, _)| name.clone())
            .collect();
        let mut prepared = PreparedListeners {
            stale,
            bound: Vec::new(),
            deferred: Vec::new(),
        };
        for l in &snapshot.listeners {
            if control.listeners.contains_key(&l.name) && !prepared.stale.contains(&l.name) {
                continue;
            }
            // An address still held by a listener that goes away (a rename) is bound after
            // that listener stops.
            let held_by_stale = prepared.stale.iter().any(|n| {
                control
                    .listeners
                    .get(n)
                    .is_some_and(|h| h.address == l.address)
            });
            if held_by_stale {
                prepared.deferred.push((l.name.clone(), l.address));
                continue;
            }
            let inherited = self.take_inherited(SocketKind::Listener, &l.name, l.address);
            let sockets = if inherited.is_empty() {
                server::bind_group(l.address, self.workers.len())
            } else {
                server::adopt_group(inherited, self.workers.len())
            }
            .map_err(|error| ReloadError::Bind {
                listener: l.name.clone(),
                address: l.address,
                error,
            })?;
            prepared.bound.push((l.name.clone(), l.address, sockets));
        }
        Ok(prepared)
    }

    /// Stops listeners that are gone and starts the prepared ones (after the runtime that
    /// names them has been stored).
    async fn commit_listeners(&self, control: &mut Control, prepared: PreparedListeners) {
        for name in prepared.stale {
            if let Some(h) = control.listeners.remove(&name) {
                let _ = h.stop.send(true);
                for task in h.tasks {
                    let _ = task.await;
                }
                self.addresses
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&name);
            }
        }
        let mut bound = prepared.bound;
        for (name, address) in prepared.deferred {
            match server::bind_group(address, self.workers.len()) {
                Ok(sockets) => bound.push((name, address, sockets)),
                Err(error) => tracing::error!(listener = %name, %address, %error, "cannot listen"),
            }
        }
        for (name, address, sockets) in bound {
            let local = sockets
                .first()
                .and_then(|s| s.local_addr().ok())
                .unwrap_or(address);
            let (stop, _) = watch::channel(false);
            let name: Arc<str> = Arc::from(name.as_str());
            let counts = server::ListenerCounts::default();
            let handoff = sockets.iter().filter_map(|s| s.try_clone().ok()).collect();
            let workers = self.workers.len();
            let tasks = sockets
                .into_iter()
                .enumerate()
                .map(|(index, socket)| {
                    let worker = index % workers;
                    let shared = self.shared.clone();
                    let name = name.clone();
                    let stop = stop.subscribe();
                    let shutdown = self.shutdown_tx.subscribe();
                    let tracker = self.tracker.clone();
                    let counts = counts.clone();
                    self.workers.spawn(worker, async move {
                        // Registered with this worker's I/O driver, so it must be made here.
                        match tokio::net::TcpListener::from_std(socket) {
                            Ok(listener) => {
                                server::accept_loop(
                                    shared, name, listener, counts, stop, shutdown, tracker,
                                )
                                .await
                            }
                            Err(error) => {
                                tracing::error!(listener = %name, %error, "cannot listen")
                            }
                        }
                    })
                })
                .collect();
            tracing::info!(listener = %name, address = %local, workers = self.workers.len(), "listening");
            self.addresses
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(name.to_string(), local);
            control.listeners.insert(
                name.to_string(),
                ListenerHandle {
                    address,
                    stop,
                    tasks,
                    sockets: handoff,
                },
            );
        }
    }

    /// The inherited sockets for a listener: those handed over for the same name and
    /// configured address, else those bound to `address` (systemd, or a renamed listener).
    fn take_inherited(
        &self,
        kind: SocketKind,
        name: &str,
        address: SocketAddr,
    ) -> Vec<std::net::TcpListener> {
        let mut inherited = self.inherited.lock().unwrap_or_else(|p| p.into_inner());
        let same_role = |s: &InheritedSocket| {
            s.role
                .as_ref()
                .is_some_and(|r| r.kind == kind && r.name == name && r.address == address)
        };
        let same_address = |s: &InheritedSocket| {
            address.port() != 0
                && s.role
                    .as_ref()
                    .is_none_or(|r| r.kind == kind && kind == SocketKind::Listener)
                && s.socket.local_addr().is_ok_and(|a| a == address)
        };
        let matches: &dyn Fn(&InheritedSocket) -> bool = if inherited.iter().any(same_role) {
            &same_role
        } else {
            &same_address
        };
        let (taken, rest): (Vec<_>, Vec<_>) = inherited.drain(..).partition(|s| matches(s));
        *inherited = rest;
        if !taken.is_empty() {
            tracing::info!(%address, sockets = taken.len(), "using inherited listening sockets");
        }
        taken.into_iter().map(|s| s.socket).collect()
    }

    /// Closes inherited sockets of these kinds that nothing took (an inherited socket left
    /// open would queue connections no one accepts).
    pub fn close_unused_inherited(&self, kinds: &[SocketKind]) {
        let mut inherited = self.inherited.lock().unwrap_or_else(|p| p.into_inner());
        inherited.retain(|s| {
            let kind = s.role.as_ref().map_or(SocketKind::Listener, |r| r.kind);
            if !kinds.contains(&kind) {
                return true;
            }
            tracing::warn!(address = ?s.socket.local_addr().ok(), ?kind, "an inherited socket matches nothing in the config; closing it");
            false
        });
    }

    /// The listening socket of the admin API or the metrics endpoint: inherited, or bound.
    pub fn service_socket(
        &self,
        kind: SocketKind,
        address: SocketAddr,
    ) -> std::io::Result<tokio::net::TcpListener> {
        let socket = match self.take_inherited(kind, "", address).into_iter().next() {
            Some(socket) => {
                socket.set_nonblocking(true)?;
                socket
            }
            None => server::bind_exclusive(address)?,
        };
        let role = SocketRole {
            kind,
            name: String::new(),
            address,
        };
        self.service_sockets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((role, socket.try_clone()?));
        tokio::net::TcpListener::from_std(socket)
    }

    /// Duplicates of every listening socket with its role, for a new process taking over.
    pub async fn handover_sockets(&self) -> Vec<(SocketRole, std::net::TcpListener)> {
        let control = self.control.lock().await;
        let mut out = Vec::new();
        for (name, h) in &control.listeners {
            for socket in &h.sockets {
                if let Ok(dup) = socket.try_clone() {
                    let role = SocketRole {
                        kind: SocketKind::Listener,
                        name: name.clone(),
                        address: h.address,
                    };
                    out.push((role, dup));
                }
            }
        }
        for (role, socket) in self
            .service_sockets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            if let Ok(dup) = socket.try_clone() {
                out.push((role.clone(), dup));
            }
        }
        out
    }

    fn spawn_background(self: &Arc<Self>) {
        let mut tasks = self.background.lock().unwrap_or_else(|p| p.into_inner());
        // Config file watcher: a changed file is reloaded like SIGHUP.
        if self.config_path.is_some() {
            let weak = Arc::downgrade(self);
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tick.tick().await;
                    let Some(proxy) = weak.upgrade() else { return };
                    proxy.check_config_file().await;
                }
            }));
        }
        // Bans: expire them on time.
        let weak = Arc::downgrade(self);
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                let Some(proxy) = weak.upgrade() else { return };
                proxy.shared.expire_bans();
            }
        }));
        // IP set files: a change rebuilds the runtime from the current snapshot.
        let weak = Arc::downgrade(self);
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let mut failed: Option<Vec<firewall::FileStamp>> = None;
            loop {
                tick.tick().await;
                let Some(proxy) = weak.upgrade() else { return };
                let rt = proxy.shared.runtime.load_full();
                if rt.firewall.set_files.is_empty() {
                    continue;
                }
                let stamps = firewall::file_stamps(&rt.firewall.set_files);
                if stamps == rt.firewall.set_stamps || failed.as_ref() == Some(&stamps) {
                    continue;
                }
                let outcome = proxy.apply_shared(rt.snapshot.clone()).await;
                match &outcome {
                    Ok(generation) => {
                        tracing::info!(generation, "IP set files changed; reloaded");
                        failed = None;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "IP set files changed but cannot be loaded; keeping the current sets");
                        failed = Some(stamps);
                    }
                }
                proxy.note_reload(&outcome);
            }
        }));
        // Certificate files: re-read when they change on disk.
        let weak = Arc::downgrade(self);
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(2));
            loop {
                tick.tick().await;
                let Some(proxy) = weak.upgrade() else { return };
                let rt = proxy.shared.runtime.load_full();
                for (name, l) in &rt.listeners {
                    let Some(tls) = &l.tls else { continue };
                    let outcome = match tls.store.reload_if_changed() {
                        Ok(false) => continue,
                        Ok(true) => {
                            tracing::info!(listener = %name, "certificates reloaded");
                            "success"
                        }
                        Err(e) => {
                            tracing::error!(listener = %name, error = %e, "certificate reload failed; keeping the current certificates");
                            "failure"
                        }
                    };
                    proxy.shared.metrics.certificate_reloads.get_or_create(&metrics::OutcomeLabels { outcome }).inc();
                }
            }
        }));
        // Backend gauges.
        let weak = Arc::downgrade(self);
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let Some(proxy) = weak.upgrade() else { return };
                let rt = proxy.shared.runtime.load_full();
                let now = Instant::now();
                for p in &rt.pools {
                    for (i, b) in p.config.backends.iter().enumerate() {
                        let labels = metrics::BackendLabels {
                            pool: p.config.name.clone(),
                            backend: b.id.clone(),
                        };
                        let view = p.balancer.backend_at_time(i, now);
                        let m = &proxy.shared.metrics;
                        m.backend_available
                            .get_or_create(&labels)
                            .set(i64::from(p.balancer.is_available(i, now)));
                        m.backend_healthy
                            .get_or_create(&labels)
                            .set(i64::from(view.healthy));
                        m.backend_outstanding
                            .get_or_create(&labels)
                            .set(i64::from(view.outstanding));
                    }
                }
            }
        }));
    }

    async fn check_config_file(&self) {
        let Some(path) = &self.config_path else {
            return;
        };
        if self.is_shutting_down() {
            return;
        }
        let Ok(text) = std::fs::read_to_string(path) else {
            return;
        };
        let hash = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            text.hash(&mut h);
            h.finish()
        };
        {
            let control = self.control.lock().await;
            if hash == control.last_source_hash || Some(hash) == control.last_failed_hash {
                return;
            }
        }
        tracing::info!(path = %path.display(), "config file changed");
        if self.reload_from_file().await.is_err() {
            self.control.lock().await.last_failed_hash = Some(hash);
        }
    }

    /// Bans in force.
    pub fn bans(&self) -> Vec<BanView> {
        let now = Instant::now();
        self.shared
            .bans
            .list(now)
            .iter()
            .map(|b| BanView::of(b, now))
            .collect()
    }

    /// Bans `ip` for `ttl` by hand; refused for allow-listed addresses.
    pub fn ban(&self, ip: std::net::IpAddr, ttl: Duration) -> Result<BanView, String> {
        let now = Instant::now();
        let rt = self.shared.runtime.load_full();
        let ban = match &rt.firewall.detector {
            Some(detector) => detector
                .manual_ban(&self.shared.bans, ip, ttl, now)
                .map_err(|e| e.to_string())?,
            None => self.shared.bans.set(ip, ttl, "manual", now),
        };
        tracing::warn!(client = %ban.ip, ttl_s = ttl.as_secs(), "source banned by hand");
        let log = self.shared.security_log.load();
        if log.enabled() {
            let mut record = firewall::SecurityRecord::new("ban", ban.ip, "banned");
            record.scenario = Some(ban.reason.clone());
            record.ban_seconds = Some(ban.ttl().as_secs());
            log.log(record);
        }
        self.shared.ban_placed(&ban);
        Ok(BanView::of(&ban, now))
    }

    /// Lifts the ban on `ip`; `None` when there was none.
    pub fn unban(&self, ip: std::net::IpAddr) -> Option<BanView> {
        let now = Instant::now();
        let ban = self.shared.bans.unban(ip)?;
        self.shared.kernel_send(kernel::KernelOp::Unban(ban.ip));
        tracing::warn!(client = %ban.ip, "ban lifted by hand");
        let log = self.shared.security_log.load();
        if log.enabled() {
            let mut record = firewall::SecurityRecord::new("unban", ban.ip, "unbanned");
            record.scenario = Some(ban.reason.clone());
            log.log(record);
        }
        self.shared.expire_bans();
        Some(BanView::of(&ban, now))
    }

    /// Pools and backends with health and counters.
    pub fn status(&self) -> Vec<PoolStatus> {
        let rt = self.shared.runtime.load_full();
        let now = Instant::now();
        rt.pools
            .iter()
            .map(|p| PoolStatus {
                name: p.config.name.clone(),
                algorithm: format!("{:?}", p.config.algorithm),
                backends: p
                    .config
                    .backends
                    .iter()
                    .enumerate()
                    .map(|(i, b)| {
                        let v = p.balancer.backend_at_time(i, now);
                        BackendStatus {
                            id: b.id.clone(),
                            address: b.authority(),
                            weight: v.weight,
                            effective_weight: v.effective_weight,
                            backup: v.backup,
                            healthy: v.healthy,
                            available: p.balancer.is_available(i, now),
                            admin_state: match v.admin {
                                AdminState::Enabled => "enabled",
                                AdminState::Drain => "drain",
                                AdminState::Disabled => "disabled",
                            },
                            ejected_for_ms: v
                                .ejected_until
                                .map(|t| t.saturating_duration_since(now).as_millis() as u64),
                            outstanding: v.outstanding,
                            ewma_latency_ms: v.ewma_latency.as_secs_f64() * 1000.0,
                            total_requests: v.total_requests,
                            total_failures: v.total_failures,
                            idle_connections: p.endpoints[i].idle_count(),
                        }
                    })
                    .collect(),
            })
            .collect()
    }

    /// Sets a backend's operator state (enable, drain, disable). The state survives reloads.
    pub fn set_backend_state(
        &self,
        pool: &str,
        backend: &str,
        state: AdminState,
    ) -> Result<(), String> {
        let rt = self.shared.runtime.load_full();
        let p = rt
            .pools
            .iter()
            .find(|p| p.config.name == pool)
            .ok_or_else(|| format!("no pool named \"{pool}\""))?;
        let i = p
            .balancer
            .find(backend)
            .ok_or_else(|| format!("pool \"{pool}\" has no backend \"{backend}\""))?;
        p.balancer.set_admin_state(i, state);
        tracing::info!(pool, backend, state = ?state, "backend state changed");
        Ok(())
    }

    /// Whether `shutdown` has begun; reloads are refused from then on.
    pub fn is_shutting_down(&self) -> bool {
        self.shared
            .draining
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Stops accepting, asks every connection to close gracefully (HTTP/2 GOAWAY, HTTP/1.1
    /// `Connection: close` after the current response) and waits up to `grace` for them.
    /// Returns the number of connections still open when the grace period ended.
    pub async fn shutdown(&self, grace: Duration) -> usize {
        self.shared
            .draining
            .store(true, std::sync::atomic::Ordering::Release);
        self.service_sockets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        if let Some(task) = self
            .metrics_task
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            task.abort();
        }
        {
            let mut control = self.control.lock().await;
            for (_, h) in control.listeners.drain() {
                let _ = h.stop.send(true);
                for task in h.tasks {
                    let _ = task.await;
                }
            }
            for t in control.health.drain(..) {
                t.abort();
            }
        }
        let _ = self.shutdown_tx.send(true);
        let _ = tokio::time::timeout(grace, self.tracker.drained()).await;
        for t in self
            .background
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            t.abort();
        }
        let rt = self.shared.runtime.load_full();
        if let Some((nft_bin, table, _)) = kernel::settings(&rt.snapshot)
            && !self
                .kernel_handed_over
                .load(std::sync::atomic::Ordering::Relaxed)
        {
            let script = rampart_firewall::nft::remove_table(&table);
            match tokio::task::spawn_blocking(move || kernel::run_nft(&nft_bin, &script)).await {
                Ok(Ok(())) => tracing::info!(table = %table, "nftables table removed"),
                Ok(Err(e)) => tracing::error!(error = %e, "nftables table not removed"),
                Err(e) => tracing::error!(error = %e, "nftables table not removed"),
            }
        }
        self.tracker.active()
    }
}

/// TCP listening sockets passed by systemd socket activation (`LISTEN_FDS`, `LISTEN_PID`).
fn inherited_sockets() -> Vec<InheritedSocket> {
    let mut fds = listenfd::ListenFd::from_env();
    let mut sockets = Vec::new();
    for index in 0..fds.len() {
        match fds.take_tcp_listener(index) {
            Ok(Some(socket)) => sockets.push(InheritedSocket { role: None, socket }),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(fd = index + 3, error = %e, "inherited file descriptor is not a TCP listening socket")
            }
        }
    }
    sockets
}

/// Ban changes queued for the nftables reconciler at most; beyond, it re-applies the table.
const KERNEL_QUEUE: usize = 4096;

/// Ops sent to nft in one script at most.
const KERNEL_BATCH: usize = 1024;

fn max_bans(snapshot: &Snapshot) -> usize {
    snapshot
        .firewall
        .ips
        .as_ref()
        .map_or(rampart_firewall::DEFAULT_MAX_BANS, |i| i.max_bans)
}

fn build_access_log(config: &AccessLog, metrics: &Arc<Metrics>) -> Result<AccessLogger, String> {
    build_json_log("access-log", config, metrics.access_log_dropped.clone())
}

fn build_waf_audit(
    snapshot: &Snapshot,
    metrics: &Arc<Metrics>,
) -> Result<waf::AuditLogger, String> {
    match &snapshot.waf.audit_log {
        None => Ok(accesslog::JsonLines::off(
            metrics.security_log_dropped.clone(),
        )),
        Some(sink) => build_json_log("waf-audit-log", sink, metrics.security_log_dropped.clone()),
    }
}

fn build_security_log(
    config: &AccessLog,
    metrics: &Arc<Metrics>,
) -> Result<firewall::SecurityLogger, String> {
    build_json_log("security-log", config, metrics.security_log_dropped.clone())
}

fn build_json_log<T: serde::Serialize + Send + 'static>(
    name: &str,
    config: &AccessLog,
    dropped: prometheus_client::metrics::counter::Counter,
) -> Result<accesslog::JsonLines<T>, String> {
    Ok(match config {
        AccessLog::Off => accesslog::JsonLines::off(dropped),
        AccessLog::Stdout => {
            accesslog::JsonLines::start(name, Box::new(std::io::stdout()), dropped)
        }
        AccessLog::File(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("cannot open {name} {}: {e}", path.display()))?;
            accesslog::JsonLines::start(name, Box::new(file), dropped)
        }
    })
}

/// Serves `GET /metrics` in the Prometheus text format.
async fn metrics_server(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    use http_body_util::Full;
    use hyper::service::service_fn;
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        if !shared.admits_management(peer.ip()) {
            tracing::debug!(client = %peer, "metrics: refused, not in the mgmt zone");
            firewall::count_block(&shared, "mgmt_zone");
            continue;
        }
        let metrics = shared.metrics.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let metrics = metrics.clone();
                async move {
                    let resp = if req.uri().path() == "/metrics" {
                        http::Response::builder()
                            .header(
                                "content-type",
                                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                            )
                            .body(Full::new(bytes::Bytes::from(metrics.encode())))
                    } else {
                        http::Response::builder()
                            .status(404)
                            .body(Full::new(bytes::Bytes::from_static(b"not found\n")))
                    };
                    Ok::<_, http::Error>(resp.unwrap_or_default())
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

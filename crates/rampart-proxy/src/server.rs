//! Client-facing listeners: bind, accept, connection guard, TLS handshake, and HTTP/1.1 or
//! HTTP/2 serving with graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rampart_config::ListenerLimits;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};

use crate::Shared;
use crate::metrics::ListenerLabels;
use crate::phase::ConnInfo;

/// Binds a listening socket with a deep backlog and SO_REUSEADDR.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::from_std(bind_std(addr, false)?)
}

/// Binds one listening socket without SO_REUSEPORT (admin and metrics endpoints).
pub fn bind_exclusive(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    bind_std(addr, false)
}

/// Binds `count` sockets on one address with SO_REUSEPORT, one per worker; the kernel spreads
/// new connections over them. With port 0 all take the port the first one got. SO_REUSEPORT is
/// set even for one socket (as HAProxy does), so a second Rampart process can share the port
/// while the first one drains.
pub fn bind_group(addr: SocketAddr, count: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    let first = bind_std(addr, true)?;
    let addr = first.local_addr()?;
    let mut sockets = vec![first];
    for _ in 1..count.max(1) {
        sockets.push(bind_std(addr, true)?);
    }
    Ok(sockets)
}

/// Serves inherited listening sockets (systemd socket activation, or handed over by the
/// process being upgraded) from `count` workers. Every socket keeps being served, since
/// connections already queued on it would be lost otherwise: with fewer sockets than workers,
/// workers share them; with more, some workers serve several.
pub fn adopt_group(
    sockets: Vec<std::net::TcpListener>,
    count: usize,
) -> std::io::Result<Vec<std::net::TcpListener>> {
    let mut adopted = Vec::with_capacity(sockets.len().max(count));
    for socket in &sockets {
        socket.set_nonblocking(true)?;
    }
    for i in sockets.len()..count {
        if let Some(socket) = sockets.get(i % sockets.len().max(1)) {
            adopted.push(socket.try_clone()?);
        }
    }
    adopted.splice(0..0, sockets);
    Ok(adopted)
}

fn bind_std(addr: SocketAddr, reuse_port: bool) -> std::io::Result<std::net::TcpListener> {
    let domain = if addr.is_ipv4() {
        socket2::Domain::IPV4
    } else {
        socket2::Domain::IPV6
    };
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}

/// Counts live client connections so shutdown can wait for them.
#[derive(Default)]
pub struct ConnTracker {
    active: AtomicUsize,
    idle: Notify,
}

impl ConnTracker {
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    /// Waits until no connection is left.
    pub async fn drained(&self) {
        loop {
            let notified = self.idle.notified();
            if self.active() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// Open connections per client address of one listener, for `max_connections_per_ip`. An
/// address has an entry only while it has open connections, so memory follows the open
/// connections (themselves bounded by `max_connections`).
#[derive(Default)]
pub struct PerIp {
    shards: [std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, u32>>; 16],
    /// Picks an address's shard; one for all threads, keyed at random per listener.
    hasher: std::hash::RandomState,
}

impl PerIp {
    /// Counts one more connection from `ip` unless it already has `limit`.
    fn try_acquire(self: &Arc<Self>, ip: std::net::IpAddr, limit: usize) -> Option<PerIpGuard> {
        let ip = ip.to_canonical();
        let mut map = self.shard(ip);
        let open = map.entry(ip).or_insert(0);
        if *open as usize >= limit {
            if *open == 0 {
                map.remove(&ip);
            }
            return None;
        }
        *open += 1;
        Some(PerIpGuard {
            map: self.clone(),
            ip,
        })
    }

    fn shard(
        &self,
        ip: std::net::IpAddr,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<std::net::IpAddr, u32>> {
        use std::hash::BuildHasher;
        let hash = self.hasher.hash_one(ip);
        self.shards[hash as usize % self.shards.len()]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Addresses with open connections (for tests and status).
    pub fn addresses(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }
}

/// Connection counts of one listener, shared by its accept loops on every worker.
#[derive(Clone, Default)]
pub struct ListenerCounts {
    pub open: Arc<AtomicUsize>,
    pub per_ip: Arc<PerIp>,
}

struct PerIpGuard {
    map: Arc<PerIp>,
    ip: std::net::IpAddr,
}

impl Drop for PerIpGuard {
    fn drop(&mut self) {
        let mut map = self.map.shard(self.ip);
        if let Some(open) = map.get_mut(&self.ip) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

struct ConnGuard {
    tracker: Arc<ConnTracker>,
    per_listener: Arc<AtomicUsize>,
    shared: Arc<Shared>,
    listener: Arc<str>,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.per_listener.fetch_sub(1, Ordering::AcqRel);
        self.shared
            .metrics
            .connections_active
            .get_or_create(&ListenerLabels {
                listener: self.listener.to_string(),
            })
            .dec();
        if self.tracker.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.tracker.idle.notify_waiters();
        }
    }
}

/// Accepts connections until `stop` turns true; each connection is served in its own task (on
/// this thread) and closed gracefully when `shutdown` turns true. `counts` are the listener's
/// open connections across all its workers.
pub async fn accept_loop(
    shared: Arc<Shared>,
    name: Arc<str>,
    listener: TcpListener,
    counts: ListenerCounts,
    mut stop: watch::Receiver<bool>,
    shutdown: watch::Receiver<bool>,
    tracker: Arc<ConnTracker>,
) {
    let labels = ListenerLabels {
        listener: name.to_string(),
    };
    let local = listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.changed() => return,
        };
        let (stream, client) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and similar: back off instead of spinning.
                tracing::warn!(listener = %name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let rt = shared.runtime.load();
        let Some(lrt) = rt.listeners.get(&*name) else {
            continue;
        };
        let limits = lrt.config.limits.clone();
        if counts.open.load(Ordering::Acquire) >= limits.max_connections {
            shared
                .metrics
                .connections_rejected
                .get_or_create(&crate::metrics::ListenerReasonLabels {
                    listener: name.to_string(),
                    reason: "max_connections",
                })
                .inc();
            continue;
        }
        let _ = stream.set_nodelay(true);
        counts.open.fetch_add(1, Ordering::AcqRel);
        tracker.active.fetch_add(1, Ordering::AcqRel);
        shared
            .metrics
            .connections_total
            .get_or_create(&labels)
            .inc();
        shared
            .metrics
            .connections_active
            .get_or_create(&labels)
            .inc();
        let guard = ConnGuard {
            tracker: tracker.clone(),
            per_listener: counts.open.clone(),
            shared: shared.clone(),
            listener: name.clone(),
        };
        let acceptor = lrt.tls.as_ref().map(|t| t.acceptor.clone());
        let h2c = lrt.config.h2c;
        let listener_zone: Arc<str> = Arc::from(lrt.config.zone.as_str());
        let firewall = Arc::clone(&rt.firewall);
        let proxy_protocol = lrt.config.proxy_protocol.clone();
        let tcp = lrt.is_tcp();
        drop(rt);
        let shared = shared.clone();
        let shutdown = shutdown.clone();
        let name = name.clone();
        let tls = acceptor.is_some();
        let per_ip = counts.per_ip.clone();
        tokio::spawn(async move {
            let mut stream = stream;
            let (client, local) = match &proxy_protocol {
                None => (client, local),
                Some(pp) => {
                    let read = tokio::time::timeout(
                        limits.header_read_timeout,
                        proxy_protocol_addresses(&mut stream, pp, client),
                    )
                    .await
                    .unwrap_or(Err(ProxyHeaderRefused::Timeout));
                    match read {
                        Ok(Some(a)) => (a.source, a.destination),
                        Ok(None) => (client, local),
                        Err(refused) => {
                            tracing::debug!(listener = %name, %client, reason = %refused, "connection refused: PROXY protocol");
                            shared
                                .metrics
                                .proxy_protocol_rejected
                                .get_or_create(&crate::metrics::ListenerReasonLabels {
                                    listener: name.to_string(),
                                    reason: refused.label(),
                                })
                                .inc();
                            drop(guard);
                            return;
                        }
                    }
                }
            };
            let _per_ip_guard = match limits.max_connections_per_ip {
                0 => None,
                limit => match per_ip.try_acquire(client.ip(), limit) {
                    Some(g) => Some(g),
                    None => {
                        tracing::debug!(listener = %name, %client, limit, "connection refused: max_connections_per_ip");
                        shared
                            .metrics
                            .connections_rejected
                            .get_or_create(&crate::metrics::ListenerReasonLabels {
                                listener: name.to_string(),
                                reason: "max_connections_per_ip",
                            })
                            .inc();
                        drop(guard);
                        return;
                    }
                },
            };
            let zone = firewall.classify(&name, &listener_zone, client.ip());
            let client_value = http::HeaderValue::from_str(&client.ip().to_string())
                .unwrap_or_else(|_| http::HeaderValue::from_static("unknown"));
            let info = Arc::new(ConnInfo {
                client_value,
                listener: name,
                zone,
                client,
                local,
                tls,
            });
            let now = std::time::Instant::now();
            let refused = if shared.bans.banned(client.ip(), now).is_some() {
                Some("banned")
            } else {
                firewall
                    .admit_connection(&info.listener, &listener_zone, &info.zone, client.ip(), now)
                    .err()
            };
            if let Some(reason) = refused {
                tracing::debug!(listener = %info.listener, %client, zone = %info.zone, reason, "connection refused by the firewall");
                shared
                    .metrics
                    .connections_rejected
                    .get_or_create(&crate::metrics::ListenerReasonLabels {
                        listener: info.listener.to_string(),
                        reason,
                    })
                    .inc();
                crate::firewall::count_block(&shared, reason);
                if reason != "banned" {
                    crate::firewall::security_event(
                        &shared,
                        &firewall,
                        &info,
                        crate::firewall::Event {
                            kind: crate::firewall::refusal_event(reason),
                            reason,
                            detail: "refused at accept",
                            request_id: None,
                        },
                    );
                }
                drop(guard);
                return;
            }
            drop(firewall);
            if shared
                .phases
                .connection
                .iter()
                .any(|g| g.check(&info).is_err())
            {
                drop(guard);
                return;
            }
            if tcp {
                crate::l4::relay(
                    shared,
                    info,
                    stream,
                    limits.header_read_timeout,
                    limits.idle_timeout,
                )
                .await
            } else {
                serve_connection(shared, info, stream, limits, acceptor, h2c, shutdown).await
            }
            drop(guard);
        });
    }
}

/// Why a connection on a PROXY protocol listener was refused.
#[derive(Debug)]
enum ProxyHeaderRefused {
    /// A header from a source outside the trusted networks.
    Untrusted,
    /// A trusted source sent no header, a broken one, or closed the connection.
    Header(crate::proxy_protocol::ReadError),
    Timeout,
}

impl ProxyHeaderRefused {
    fn label(&self) -> &'static str {
        match self {
            ProxyHeaderRefused::Untrusted => "untrusted",
            ProxyHeaderRefused::Header(e) => e.label(),
            ProxyHeaderRefused::Timeout => "timeout",
        }
    }
}

impl std::fmt::Display for ProxyHeaderRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProxyHeaderRefused::Untrusted => f.write_str("PROXY header from an untrusted source"),
            ProxyHeaderRefused::Header(e) => write!(f, "{e}"),
            ProxyHeaderRefused::Timeout => f.write_str("no complete PROXY header in time"),
        }
    }
}

/// The client addresses a PROXY header gives, `None` to keep the connection's own. A trusted
/// source must send a header (unless it is optional); any other source must not.
async fn proxy_protocol_addresses(
    stream: &mut TcpStream,
    accept: &rampart_config::ProxyProtocolAccept,
    peer: SocketAddr,
) -> Result<Option<crate::proxy_protocol::Addresses>, ProxyHeaderRefused> {
    use crate::proxy_protocol::{ReadError, read_header, starts_with_header};
    if !accept.trusts(peer.ip()) {
        return match starts_with_header(stream).await {
            Ok(true) => Err(ProxyHeaderRefused::Untrusted),
            Ok(false) => Ok(None),
            Err(e) => Err(ProxyHeaderRefused::Header(e)),
        };
    }
    match read_header(stream).await {
        Ok(addresses) => Ok(addresses),
        Err(ReadError::Missing) if !accept.required => Ok(None),
        Err(e) => Err(ProxyHeaderRefused::Header(e)),
    }
}

async fn serve_connection(
    shared: Arc<Shared>,
    info: Arc<ConnInfo>,
    mut stream: TcpStream,
    limits: ListenerLimits,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    h2c: bool,
    shutdown: watch::Receiver<bool>,
) {
    let connection = Arc::new(crate::proxy::Connection { shared, info });
    match acceptor {
        None if h2c => {
            // HTTP/2 with prior knowledge or HTTP/1.1: the first bytes tell.
            let Some((initial, h2)) =
                crate::h1server::sniff_h2(&mut stream, limits.header_read_timeout).await
            else {
                return;
            };
            if h2 {
                let io = crate::h1server::Prefixed::new(initial.freeze(), stream);
                serve_h2(connection, io, &limits, shutdown).await
            } else {
                crate::h1server::serve(stream, initial, connection, &limits, shutdown).await
            }
        }
        None => {
            crate::h1server::serve(stream, Default::default(), connection, &limits, shutdown).await
        }
        Some(acceptor) => {
            let shared = &connection.shared;
            let labels = ListenerLabels {
                listener: connection.info.listener.to_string(),
            };
            let tls = match tokio::time::timeout(
                limits.header_read_timeout,
                acceptor.accept(stream),
            )
            .await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    shared
                        .metrics
                        .tls_handshake_errors
                        .get_or_create(&labels)
                        .inc();
                    tracing::debug!(client = %connection.info.client, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    shared
                        .metrics
                        .tls_handshake_errors
                        .get_or_create(&labels)
                        .inc();
                    return;
                }
            };
            shared.metrics.tls_handshakes.get_or_create(&labels).inc();
            if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
                serve_h2(connection, tls, &limits, shutdown).await
            } else {
                crate::h1server::serve(tls, Default::default(), connection, &limits, shutdown).await
            }
        }
    }
}

/// Serves HTTP/2 (hyper). On shutdown the client gets GOAWAY at once: streams in flight
/// finish, new ones go elsewhere.
async fn serve_h2<I>(
    connection: Arc<crate::proxy::Connection>,
    io: I,
    limits: &ListenerLimits,
    mut shutdown: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_header_list_size(limits.max_header_bytes as u32)
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(limits.idle_timeout / 2))
        .keep_alive_timeout(Duration::from_secs(20));
    let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
        crate::proxy::handle(connection.clone(), req.map(crate::body::ClientBody::H2))
    });
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    if !*shutdown.borrow() {
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::trace!(error = %e, "client connection ended with an error");
                }
                return;
            }
            _ = shutdown.changed() => {}
        }
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}

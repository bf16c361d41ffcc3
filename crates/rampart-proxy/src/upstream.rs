//! Connections to backends: TCP (and TLS) connect with a timeout, HTTP/1.1 connection pooling
//! (idle connections kept per endpoint, last-in first-out; requests run on them with the
//! in-task client of `h1client`) and one shared HTTP/2 connection per endpoint. Endpoints live in a registry that outlives config reloads, so a reload keeps
//! warm connections.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

use crate::body::RequestBody;
use crate::error::{ErrorKind, ProxyError};
use crate::h1client::{H1Conn, Io};
use crate::proxy_protocol;

/// TLS settings for one upstream endpoint.
#[derive(Clone)]
pub struct UpstreamTlsTarget {
    pub config: Arc<rustls::ClientConfig>,
    pub server_name: ServerName<'static>,
    /// Distinguishes configs in the registry key (configs are rebuilt on reload).
    pub identity: String,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Protocol {
    Http1,
    Http2,
}

/// A ready connection to send one request on.
pub enum Sender {
    H1(H1Conn),
    H2(http2::SendRequest<RequestBody>),
}

/// One backend address with its pooled connections.
pub struct Endpoint {
    host: String,
    port: u16,
    protocol: Protocol,
    tls: Option<UpstreamTlsTarget>,
    /// Idle connections in shards by worker thread: a request reuses a connection registered
    /// with its own thread's I/O most of the time.
    idle: Vec<IdleShard>,
    h2: Mutex<Option<http2::SendRequest<RequestBody>>>,
    /// Serialises HTTP/2 connection establishment so concurrent requests share one connection.
    h2_connecting: tokio::sync::Mutex<()>,
    max_idle: usize,
    idle_timeout: Duration,
    /// PROXY protocol header sent first on every connection; such connections carry one
    /// client's requests only and are never pooled.
    proxy_protocol: Option<rampart_config::ProxyProtocolVersion>,
}

impl Endpoint {
    /// Whether every connection starts with a PROXY protocol header (and so serves one client).
    pub fn sends_proxy_protocol(&self) -> bool {
        self.proxy_protocol.is_some()
    }

    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// A connection ready for a request. `fresh` skips the idle pool (upgrades). `client` is
    /// the client connection a new connection is made for (for the PROXY protocol).
    pub async fn checkout(
        &self,
        connect_timeout: Duration,
        fresh: bool,
        client: Option<proxy_protocol::Addresses>,
    ) -> Result<Sender, ProxyError> {
        match self.protocol {
            Protocol::Http1 => {
                if !fresh && self.proxy_protocol.is_none() {
                    while let Some(mut conn) = self.pop_idle() {
                        if conn.idle_since.elapsed() <= self.idle_timeout && conn.idle_usable() {
                            return Ok(Sender::H1(conn));
                        }
                    }
                }
                // Boxed: connecting (TLS state included) is large and rare; the pooled path
                // above stays small in every request's future.
                bounded(
                    connect_timeout,
                    Box::pin(self.open_h1(connect_timeout, client)),
                )
                .await
                .map(Sender::H1)
            }
            Protocol::Http2 => {
                if let Some(s) = self.live_h2() {
                    return Ok(Sender::H2(s));
                }
                // Bounded as a whole: waiting behind another request's connect counts too.
                bounded(connect_timeout, Box::pin(self.open_h2(connect_timeout)))
                    .await
                    .map(Sender::H2)
            }
        }
    }

    async fn open_h1(
        &self,
        connect_timeout: Duration,
        client: Option<proxy_protocol::Addresses>,
    ) -> Result<H1Conn, ProxyError> {
        Ok(H1Conn::new(self.connect(connect_timeout, client).await?))
    }

    async fn open_h2(
        &self,
        connect_timeout: Duration,
    ) -> Result<http2::SendRequest<RequestBody>, ProxyError> {
        let _guard = self.h2_connecting.lock().await;
        if let Some(s) = self.live_h2() {
            return Ok(s);
        }
        let sender = match self.connect(connect_timeout, None).await? {
            Io::Plain(s) => self.handshake_h2(TokioIo::new(s)).await?,
            Io::Tls(s) => self.handshake_h2(TokioIo::new(*s)).await?,
        };
        *self.h2.lock().unwrap_or_else(|p| p.into_inner()) = Some(sender.clone());
        Ok(sender)
    }

    fn live_h2(&self) -> Option<http2::SendRequest<RequestBody>> {
        let mut slot = self.h2.lock().unwrap_or_else(|p| p.into_inner());
        match slot.as_ref() {
            Some(s) if !s.is_closed() => Some(s.clone()),
            Some(_) => {
                *slot = None;
                None
            }
            None => None,
        }
    }

    /// An idle connection of this thread's shard. Other shards' connections are registered
    /// with other threads' I/O drivers and are never borrowed.
    fn pop_idle(&self) -> Option<H1Conn> {
        self.idle[self.shard()]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop()
    }

    fn shard(&self) -> usize {
        let last = self.idle.len() - 1;
        crate::workers::current().map_or(last, |w| w.min(last))
    }

    /// Returns an HTTP/1.1 connection whose response has been read completely.
    pub fn checkin(&self, conn: H1Conn) {
        let mut idle = self.idle[self.shard()]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        // The pool's size is shared out among the worker shards.
        let workers = (self.idle.len() - 1).max(1);
        if idle.len() < self.max_idle.div_ceil(workers) {
            idle.push(conn);
        }
    }

    pub fn idle_count(&self) -> usize {
        self.idle
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }

    /// A new transport to this backend for a relayed (layer 4) client connection: TCP, the
    /// PROXY header when configured, then TLS when configured.
    pub async fn open_stream(
        &self,
        timeout: Duration,
        client: Option<proxy_protocol::Addresses>,
    ) -> Result<Io, ProxyError> {
        self.connect(timeout, client).await
    }

    /// TCP (and TLS) connect only, for TCP health checks.
    pub async fn probe_connect(&self, timeout: Duration) -> Result<(), ProxyError> {
        self.connect(timeout, None).await.map(drop)
    }

    /// TCP connect, the PROXY protocol header when configured, then TLS when configured.
    async fn connect(
        &self,
        timeout: Duration,
        client: Option<proxy_protocol::Addresses>,
    ) -> Result<Io, ProxyError> {
        let authority = format!("{}:{}", self.host, self.port);
        let attempt = async {
            let addrs: Vec<SocketAddr> = match self.host.parse::<std::net::IpAddr>() {
                Ok(ip) => vec![SocketAddr::new(ip, self.port)],
                Err(_) => tokio::net::lookup_host((self.host.as_str(), self.port))
                    .await
                    .map_err(|e| {
                        ProxyError::new(
                            ErrorKind::ConnectFailed,
                            format!("resolve {authority}: {e}"),
                        )
                    })?
                    .collect(),
            };
            let mut last = None;
            for addr in addrs {
                match TcpStream::connect(addr).await {
                    Ok(s) => {
                        let _ = s.set_nodelay(true);
                        return Ok(s);
                    }
                    Err(e) => last = Some(e),
                }
            }
            Err(ProxyError::new(
                ErrorKind::ConnectFailed,
                format!(
                    "connect {authority}: {}",
                    last.map_or_else(|| "no addresses".to_string(), |e| e.to_string())
                ),
            ))
        };
        let mut tcp = tokio::time::timeout(timeout, attempt).await.map_err(|_| {
            ProxyError::new(
                ErrorKind::ConnectTimeout,
                format!("connect {authority}: timed out after {timeout:?}"),
            )
        })??;
        if let Some(version) = self.proxy_protocol {
            use tokio::io::AsyncWriteExt;
            let header = proxy_protocol::encode(version, client);
            // A fresh socket's send buffer takes a header of at most a few hundred bytes.
            tcp.write_all(&header).await.map_err(|e| {
                ProxyError::new(
                    ErrorKind::ConnectFailed,
                    format!("sending the PROXY header to {authority}: {e}"),
                )
            })?;
        }
        match &self.tls {
            None => Ok(Io::Plain(tcp)),
            Some(t) => {
                let connector = tokio_rustls::TlsConnector::from(t.config.clone());
                let tls =
                    tokio::time::timeout(timeout, connector.connect(t.server_name.clone(), tcp))
                        .await
                        .map_err(|_| {
                            ProxyError::new(
                                ErrorKind::ConnectTimeout,
                                format!("TLS handshake with {authority}: timed out"),
                            )
                        })?
                        .map_err(|e| {
                            ProxyError::new(
                                ErrorKind::UpstreamTls,
                                format!("TLS handshake with {authority}: {e}"),
                            )
                        })?;
                Ok(Io::Tls(Box::new(tls)))
            }
        }
    }

    async fn handshake_h2<I>(&self, io: I) -> Result<http2::SendRequest<RequestBody>, ProxyError>
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(Duration::from_secs(30))
            .handshake(io)
            .await
            .map_err(|e| {
                ProxyError::new(
                    ErrorKind::UpstreamProtocol,
                    format!("HTTP/2 handshake: {e}"),
                )
            })?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream HTTP/2 connection ended with an error");
            }
        });
        Ok(sender)
    }
}

/// One worker's idle connections, on a cache line of its own so that workers never contend
/// for each other's pool locks.
#[repr(align(64))]
#[derive(Default)]
struct IdleShard(Mutex<Vec<H1Conn>>);

impl std::ops::Deref for IdleShard {
    type Target = Mutex<Vec<H1Conn>>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// Runs a connection attempt under `limit`.
async fn bounded<T>(
    limit: Duration,
    attempt: impl std::future::Future<Output = Result<T, ProxyError>>,
) -> Result<T, ProxyError> {
    tokio::time::timeout(limit, attempt)
        .await
        .unwrap_or_else(|_| {
            Err(ProxyError::new(
                ErrorKind::ConnectTimeout,
                format!("no upstream connection within {limit:?}"),
            ))
        })
}

/// Endpoints by (protocol, TLS identity, host, port), shared across config generations.
pub struct Registry {
    endpoints: Mutex<HashMap<String, Arc<Endpoint>>>,
    shards: usize,
}

pub struct EndpointSpec {
    pub host: String,
    pub port: u16,
    pub protocol: Protocol,
    pub tls: Option<UpstreamTlsTarget>,
    pub max_idle: usize,
    pub idle_timeout: Duration,
    pub proxy_protocol: Option<rampart_config::ProxyProtocolVersion>,
}

impl Registry {
    /// `shards`: idle-connection shards per endpoint, one per worker thread plus one for
    /// everything else.
    pub fn new(shards: usize) -> Self {
        Registry {
            endpoints: Mutex::new(HashMap::new()),
            shards: shards.max(1),
        }
    }

    pub fn endpoint(&self, spec: EndpointSpec) -> Arc<Endpoint> {
        let key = format!(
            "{:?}|{:?}|{}|{}|{}|{}|{:?}",
            spec.protocol,
            spec.proxy_protocol,
            spec.tls.as_ref().map_or("", |t| t.identity.as_str()),
            spec.host,
            spec.port,
            spec.max_idle,
            spec.idle_timeout
        );
        let mut map = self.endpoints.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(key)
            .or_insert_with(|| {
                Arc::new(Endpoint {
                    host: spec.host,
                    port: spec.port,
                    protocol: spec.protocol,
                    tls: spec.tls,
                    idle: (0..self.shards).map(|_| IdleShard::default()).collect(),
                    h2: Mutex::new(None),
                    h2_connecting: tokio::sync::Mutex::new(()),
                    max_idle: spec.max_idle,
                    idle_timeout: spec.idle_timeout,
                    proxy_protocol: spec.proxy_protocol,
                })
            })
            .clone()
    }

    /// Drops endpoints no current pool uses (called after a reload).
    pub fn retain(&self, keep: &[Arc<Endpoint>]) {
        let mut map = self.endpoints.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, e| keep.iter().any(|k| Arc::ptr_eq(k, e)));
    }
}

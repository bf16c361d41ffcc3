//! Layer 4 relaying for `protocol = "tcp"` listeners (databases, SMTP, any TCP protocol, TLS
//! passed through untouched). Each client connection goes to one backend of the listener's
//! pool, chosen like an HTTP request's: the pool's algorithm, source-IP affinity or client-IP
//! hashing, health checks, passive ejection and drain all apply. A backend that cannot be
//! reached within the connect timeout counts as a failure and the next one is tried (up to the
//! pool's retry attempts); then bytes pass both ways unchanged until either side closes.
//! With SNI routes the pool is chosen by the server name in the client's TLS ClientHello,
//! read without consuming it: TLS passes through end to end, never terminated here.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rampart_config::{HashKey, Sticky};
use tokio::net::TcpStream;

use crate::Shared;
use crate::metrics::ErrorLabels;
use crate::phase::ConnInfo;
use crate::proxy::{affinity_pick, ip_hash, record_outcome};
use crate::proxy_protocol::Addresses;

/// Relays `client` to a backend of its listener's pool (by SNI when the listener routes by
/// it; the ClientHello must arrive within `hello_timeout`). A session with no bytes either way
/// for `idle_timeout` is closed.
pub async fn relay(
    shared: Arc<Shared>,
    info: Arc<ConnInfo>,
    mut client: TcpStream,
    hello_timeout: Duration,
    idle_timeout: Duration,
) {
    let rt = shared.request_runtime();
    let Some(listener) = rt.listeners.get(&*info.listener) else {
        return;
    };
    let pool_index = if listener.sni_pools.is_empty() {
        listener.tcp_pool
    } else {
        match tokio::time::timeout(hello_timeout, peek_server_name(&client)).await {
            Ok(Ok(name)) => name
                .and_then(|n| {
                    listener
                        .sni_pools
                        .iter()
                        .find(|(route, _)| route.matches(&n))
                        .map(|(_, pool)| *pool)
                })
                .or(listener.tcp_pool),
            Ok(Err(e)) => {
                tracing::debug!(listener = %info.listener, client = %info.client, error = %e, "no TLS ClientHello");
                None
            }
            Err(_) => None,
        }
    };
    let Some(pool) = pool_index.and_then(|i| rt.pools.get(i)) else {
        shared
            .metrics
            .errors
            .get_or_create(&ErrorLabels {
                listener: info.listener.to_string(),
                kind: "no_route",
            })
            .inc();
        return;
    };
    if !rt.firewall.allows_pool(&info.zone, &pool.config.name) {
        tracing::debug!(listener = %info.listener, client = %info.client, zone = %info.zone, pool = %pool.config.name, "connection refused by the zone policy");
        crate::firewall::count_block(&shared, "zone_policy");
        crate::firewall::security_event(
            &shared,
            &rt.firewall,
            &info,
            crate::firewall::Event {
                kind: rampart_firewall::EventKind::AclBlock,
                reason: "zone_policy",
                detail: &pool.config.name,
                request_id: None,
            },
        );
        shared
            .metrics
            .errors
            .get_or_create(&ErrorLabels {
                listener: info.listener.to_string(),
                kind: "zone_policy",
            })
            .inc();
        return;
    }
    let ip = info.client.ip();
    let affinity = matches!(pool.config.sticky, Some(Sticky::SourceIp)).then(|| ip_hash(ip));
    let hash_key = match pool.config.hash_key {
        Some(HashKey::ClientIp) => Some(ip_hash(ip)),
        _ => None,
    };
    let addresses = Some(Addresses {
        source: info.client,
        destination: info.local,
    });
    let mut tried: Vec<usize> = Vec::new();
    let mut failure = "no_healthy_backend";
    for _ in 0..pool.config.retries.attempts.max(1) {
        let now = Instant::now();
        let Some(backend) = affinity
            .and_then(|k| affinity_pick(pool, k, &tried, now))
            .or_else(|| pool.balancer.pick(hash_key, &tried, now))
        else {
            break;
        };
        tried.push(backend);
        let in_flight = pool.balancer.start_request(backend);
        let endpoint = &pool.endpoints[backend];
        match endpoint
            .open_stream(pool.config.timeouts.connect, addresses)
            .await
        {
            Ok(mut upstream) => {
                record_outcome(&shared, pool, backend, now.elapsed(), true);
                let mut client = Watched::new(&mut client);
                let activity = client.activity.clone();
                let mut upstream = Watched::with_activity(&mut upstream, activity.clone());
                let copy = tokio::io::copy_bidirectional(&mut client, &mut upstream);
                tokio::select! {
                    copied = copy => {
                        if let Err(e) = copied {
                            tracing::trace!(client = %info.client, error = %e, "tcp relay ended with an error");
                        }
                    }
                    _ = idle(&activity, idle_timeout) => {
                        tracing::debug!(client = %info.client, ?idle_timeout, "tcp session idle; closed");
                    }
                }
                drop(in_flight);
                return;
            }
            Err(e) => {
                failure = e.label();
                tracing::debug!(
                    listener = %info.listener,
                    pool = %pool.config.name,
                    backend = %pool.config.backends[backend].id,
                    error = %e,
                    "tcp backend unreachable"
                );
                record_outcome(&shared, pool, backend, now.elapsed(), false);
            }
        }
    }
    shared
        .metrics
        .errors
        .get_or_create(&ErrorLabels {
            listener: info.listener.to_string(),
            kind: failure,
        })
        .inc();
    tracing::debug!(listener = %info.listener, client = %info.client, "no backend took the tcp connection");
}

/// Largest ClientHello read to find the server name.
const MAX_CLIENT_HELLO: usize = 32 * 1024;

/// The server name of the TLS ClientHello at the start of `stream`, without consuming it.
/// `Ok(None)`: a ClientHello without SNI.
async fn peek_server_name(stream: &TcpStream) -> Result<Option<String>, String> {
    let mut buf = vec![0u8; MAX_CLIENT_HELLO];
    loop {
        let n = stream.peek(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed before a ClientHello".into());
        }
        // A fresh parser over everything peeked so far: the hello may span several records.
        let mut acceptor = rustls::server::Acceptor::default();
        let mut bytes = &buf[..n];
        while !bytes.is_empty() {
            match acceptor.read_tls(&mut bytes) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => return Err(format!("not TLS: {e}")),
            }
        }
        match acceptor.accept() {
            Ok(Some(accepted)) => {
                return Ok(accepted.client_hello().server_name().map(str::to_owned));
            }
            Ok(None) if n < buf.len() => tokio::time::sleep(Duration::from_millis(2)).await,
            Ok(None) => return Err("ClientHello larger than 32 KiB".into()),
            Err((e, _)) => return Err(format!("not a TLS ClientHello: {e}")),
        }
    }
}

/// Milliseconds since `epoch` of the last byte relayed either way.
struct Activity {
    epoch: Instant,
    last_ms: std::sync::atomic::AtomicU64,
}

impl Activity {
    fn touch(&self) {
        let ms = self.epoch.elapsed().as_millis() as u64;
        self.last_ms.store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let last = self.last_ms.load(std::sync::atomic::Ordering::Relaxed);
        self.epoch
            .elapsed()
            .saturating_sub(Duration::from_millis(last))
    }
}

/// Completes once no byte has moved for `limit`; checks a few times per `limit`, so a busy
/// session costs no timer per read.
async fn idle(activity: &Activity, limit: Duration) {
    let step = (limit / 4).max(Duration::from_millis(10));
    loop {
        let idle = activity.idle_for();
        if idle >= limit {
            return;
        }
        tokio::time::sleep((limit - idle).min(step).max(Duration::from_millis(1))).await;
    }
}

/// A stream that notes the time of every successful read and write.
struct Watched<'a, S> {
    inner: &'a mut S,
    activity: Arc<Activity>,
}

impl<'a, S> Watched<'a, S> {
    fn new(inner: &'a mut S) -> Self {
        let activity = Arc::new(Activity {
            epoch: Instant::now(),
            last_ms: std::sync::atomic::AtomicU64::new(0),
        });
        Watched { inner, activity }
    }

    fn with_activity(inner: &'a mut S, activity: Arc<Activity>) -> Self {
        Watched { inner, activity }
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Watched<'_, S> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut *this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.touch();
        }
        polled
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Watched<'_, S> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = std::pin::Pin::new(&mut *this.inner).poll_write(cx, buf);
        if let std::task::Poll::Ready(Ok(n)) = &polled
            && *n > 0
        {
            this.activity.touch();
        }
        polled
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut *self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut *self.get_mut().inner).poll_shutdown(cx)
    }
}

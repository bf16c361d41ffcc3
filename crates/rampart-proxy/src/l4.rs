//! Layer 4 relaying for `protocol = "tcp"` listeners (databases, SMTP, any TCP protocol, TLS
//! passed through untouched). Each client connection goes to one backend of the listener's
//! pool, chosen like an HTTP request's: the pool's algorithm, source-IP affinity or client-IP
//! hashing, health checks, passive ejection and drain all apply. A backend that cannot be
//! reached within the connect timeout counts as a failure and the next one is tried (up to the
//! pool's retry attempts); then bytes pass both ways unchanged until either side closes.

use std::sync::Arc;
use std::time::Instant;

use rampart_config::{HashKey, Sticky};
use tokio::net::TcpStream;

use crate::Shared;
use crate::metrics::ErrorLabels;
use crate::phase::ConnInfo;
use crate::proxy::{affinity_pick, ip_hash, record_outcome};
use crate::proxy_protocol::Addresses;

/// Relays `client` to a backend of pool `pool_index`.
pub async fn relay(
    shared: Arc<Shared>,
    info: Arc<ConnInfo>,
    mut client: TcpStream,
    pool_index: usize,
) {
    let rt = shared.request_runtime();
    let Some(pool) = rt.pools.get(pool_index) else {
        return;
    };
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
                let copied = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                if let Err(e) = copied {
                    tracing::trace!(client = %info.client, error = %e, "tcp relay ended with an error");
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

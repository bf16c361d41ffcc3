//! Active health checks: one task per backend of every pool that configures a check. Results
//! feed the balancer's rise/fall state machine.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{Request, header};
use http_body_util::BodyExt;
use rampart_balance::HealthTransition;
use rampart_config::{HealthCheck, HealthCheckKind};
use tokio::task::JoinHandle;

use crate::Shared;
use crate::body::{RequestBody, UpstreamBody};
use crate::h1client;
use crate::metrics::{BackendLabels, BackendOutcomeLabels};
use crate::runtime::Runtime;
use crate::upstream::{Endpoint, Sender};

/// Largest response body read when matching `expect_body`.
const MAX_CHECK_BODY: usize = 64 * 1024;

const USER_AGENT: &str = "rampart-health-check";

/// Starts the check tasks for a runtime. The caller aborts them when the runtime is replaced.
pub fn spawn_checks(shared: &Arc<Shared>, rt: &Arc<Runtime>) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    for (pool_index, pool) in rt.pools.iter().enumerate() {
        let Some(check) = pool.config.health_check.clone() else {
            continue;
        };
        for backend in 0..pool.config.backends.len() {
            let shared = shared.clone();
            let rt = rt.clone();
            let check = check.clone();
            tasks.push(tokio::spawn(async move {
                run(shared, rt, pool_index, backend, check).await;
            }));
        }
    }
    tasks
}

async fn run(
    shared: Arc<Shared>,
    rt: Arc<Runtime>,
    pool_index: usize,
    backend: usize,
    check: HealthCheck,
) {
    let pool = &rt.pools[pool_index];
    let endpoint = pool.endpoints[backend].clone();
    let b = &pool.config.backends[backend];
    let labels = BackendLabels {
        pool: pool.config.name.clone(),
        backend: b.id.clone(),
    };
    // Spread the first checks over the interval so a big pool does not probe in lock-step.
    let jitter = check.interval.mul_f64(rand::random::<f64>() * 0.2);
    tokio::time::sleep(jitter).await;
    let mut ticker = tokio::time::interval(check.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let result =
            tokio::time::timeout(check.timeout, probe(&endpoint, &check, &b.authority())).await;
        let (ok, reason) = match result {
            Ok(Ok(())) => (true, String::new()),
            Ok(Err(e)) => (false, e),
            Err(_) => (false, format!("timed out after {:?}", check.timeout)),
        };
        shared
            .metrics
            .health_checks
            .get_or_create(&BackendOutcomeLabels {
                pool: labels.pool.clone(),
                backend: labels.backend.clone(),
                outcome: if ok { "success" } else { "failure" },
            })
            .inc();
        let transition = pool
            .balancer
            .record_health_check(backend, ok, Instant::now());
        let healthy = pool.balancer.backend(backend).healthy;
        shared
            .metrics
            .backend_healthy
            .get_or_create(&labels)
            .set(i64::from(healthy));
        match transition {
            Some(HealthTransition::WentDown) => {
                tracing::warn!(pool = %labels.pool, backend = %labels.backend, reason = %reason, "backend went down")
            }
            Some(HealthTransition::WentUp) => {
                tracing::info!(pool = %labels.pool, backend = %labels.backend, "backend is up again")
            }
            None => {}
        }
    }
}

async fn probe(endpoint: &Endpoint, check: &HealthCheck, authority: &str) -> Result<(), String> {
    let timeout = check.timeout;
    match &check.kind {
        HealthCheckKind::Tcp => endpoint.probe_connect(timeout).await.map_err(|e| e.detail),
        HealthCheckKind::Http {
            method,
            path,
            host,
            expect_status,
            expect_body,
        } => {
            let sender = endpoint
                .checkout(timeout, true, None)
                .await
                .map_err(|e| e.detail)?;
            let host = host.clone().unwrap_or_else(|| authority.to_string());
            let resp = match sender {
                Sender::H1(conn) => {
                    let mut headers = http::HeaderMap::new();
                    headers.insert(
                        header::HOST,
                        host.parse().map_err(|_| "invalid check host".to_string())?,
                    );
                    headers.insert(
                        header::USER_AGENT,
                        http::HeaderValue::from_static(USER_AGENT),
                    );
                    headers.insert(header::CONNECTION, http::HeaderValue::from_static("close"));
                    let head = h1client::RequestHead {
                        method,
                        target: path,
                        headers: &headers,
                        rewrite: None,
                    };
                    h1client::send(conn, head, None, None)
                        .await
                        .map_err(|e| e.error.detail)?
                        .map(UpstreamBody::H1)
                }
                Sender::H2(mut s) => {
                    let scheme = if endpoint.is_tls() { "https" } else { "http" };
                    let mut req = Request::builder()
                        .method(method.clone())
                        .uri(format!("{scheme}://{host}{path}"))
                        .header(header::USER_AGENT, USER_AGENT)
                        .body(RequestBody::empty())
                        .map_err(|_| "invalid check URL".to_string())?;
                    req.headers_mut().remove(header::HOST);
                    s.ready().await.map_err(|e| e.to_string())?;
                    s.send_request(req)
                        .await
                        .map_err(|e| e.to_string())?
                        .map(UpstreamBody::H2)
                }
            };
            let status = resp.status().as_u16();
            if status < expect_status.0 || status > expect_status.1 {
                return Err(format!(
                    "status {status} outside {}-{}",
                    expect_status.0, expect_status.1
                ));
            }
            if let Some(expected) = expect_body {
                let body = read_limited(resp.into_body()).await?;
                if !contains(&body, expected.as_bytes()) {
                    return Err(format!("body does not contain \"{expected}\""));
                }
            }
            Ok(())
        }
    }
}

async fn read_limited(mut body: UpstreamBody) -> Result<Bytes, String> {
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| e.to_string())?;
        if let Some(d) = frame.data_ref() {
            let room = MAX_CHECK_BODY - out.len();
            out.extend_from_slice(&d[..d.len().min(room)]);
            if out.len() >= MAX_CHECK_BODY {
                break;
            }
        }
    }
    Ok(Bytes::from(out))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

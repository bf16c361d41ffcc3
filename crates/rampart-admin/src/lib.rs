//! Rampart's admin API (minimal for now): list pools and backends with health and counters,
//! drain / enable / disable a backend, reload the config and show the running generation,
//! list, place and lift bans.
//!
//! Every endpoint requires `Authorization: Bearer <token>`; the token is compared in constant
//! time and never logged. The listener binds to loopback unless the config says otherwise.

#![forbid(unsafe_code)]

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use rampart_balance::AdminState;
use rampart_config::Secret;
use rampart_proxy::{Proxy, ReloadError};
use serde_json::json;
use sha2::{Digest, Sha256};

#[derive(Clone)]
struct AppState {
    proxy: Arc<Proxy>,
    token_digest: [u8; 32],
}

/// The admin router, for serving or for tests.
pub fn router(proxy: Arc<Proxy>, token: Secret) -> Router {
    let state = AppState {
        proxy,
        token_digest: Sha256::digest(token.expose().as_bytes()).into(),
    };
    Router::new()
        .route("/api/v1/pools", get(pools))
        .route(
            "/api/v1/pools/{pool}/backends/{backend}/{action}",
            post(backend_action),
        )
        .route("/api/v1/reload", post(reload))
        .route("/api/v1/config", get(config))
        .route("/api/v1/bans", get(list_bans).post(add_ban))
        .route("/api/v1/bans/{ip}", delete(remove_ban))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .layer(DefaultBodyLimit::max(64 * 1024))
        .with_state(state)
}

/// Serves the admin API until the task is dropped. Connections from outside the `mgmt` zone
/// (and from banned sources) are closed unanswered.
pub async fn serve(listener: tokio::net::TcpListener, proxy: Arc<Proxy>, token: Secret) {
    let listener = MgmtListener {
        inner: listener,
        proxy: proxy.clone(),
    };
    if let Err(e) = axum::serve(listener, router(proxy, token)).await {
        tracing::error!(error = %e, "admin API stopped");
    }
}

/// The admin socket, admitting only clients of the `mgmt` zone.
struct MgmtListener {
    inner: tokio::net::TcpListener,
    proxy: Arc<Proxy>,
}

impl axum::serve::Listener for MgmtListener {
    type Io = tokio::net::TcpStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (io, peer) = axum::serve::Listener::accept(&mut self.inner).await;
            if self.proxy.shared().admits_management(peer.ip()) {
                return (io, peer);
            }
            tracing::debug!(client = %peer, "admin API: refused, not in the mgmt zone");
            rampart_proxy::firewall::count_block(self.proxy.shared(), "mgmt_zone");
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// Constant-time comparison of SHA-256 digests, so neither length nor content leaks by timing.
fn token_matches(expected: &[u8; 32], presented: &str) -> bool {
    let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
    expected
        .iter()
        .zip(digest.iter())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

async fn authenticate(
    State(state): State<AppState>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Response {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        });
    match presented {
        Some(token) if token_matches(&state.token_digest, token.trim()) => next.run(request).await,
        Some(_) => {
            tracing::warn!(path = %request.uri().path(), "admin API: invalid bearer token");
            let mut r = error(StatusCode::UNAUTHORIZED, "invalid bearer token");
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                "Bearer".parse().expect("static header"),
            );
            r
        }
        None => {
            let mut r = error(
                StatusCode::UNAUTHORIZED,
                "missing Authorization: Bearer <token>",
            );
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                "Bearer".parse().expect("static header"),
            );
            r
        }
    }
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such endpoint")
}

async fn pools(State(state): State<AppState>) -> Response {
    Json(json!({ "generation": state.proxy.generation(), "pools": state.proxy.status() }))
        .into_response()
}

async fn backend_action(
    State(state): State<AppState>,
    Path((pool, backend, action)): Path<(String, String, String)>,
) -> Response {
    let admin_state = match action.as_str() {
        "drain" => AdminState::Drain,
        "enable" => AdminState::Enabled,
        "disable" => AdminState::Disabled,
        other => {
            return error(
                StatusCode::NOT_FOUND,
                format!("unknown action \"{other}\"; use drain, enable or disable"),
            );
        }
    };
    match state.proxy.set_backend_state(&pool, &backend, admin_state) {
        Ok(()) => {
            Json(json!({ "pool": pool, "backend": backend, "state": action })).into_response()
        }
        Err(e) => error(StatusCode::NOT_FOUND, e),
    }
}

async fn reload(State(state): State<AppState>) -> Response {
    match state.proxy.reload_from_file().await {
        Ok(generation) => Json(json!({ "generation": generation })).into_response(),
        Err(ReloadError::Invalid(errors)) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({
                "error": "config rejected; the running config stays",
                "errors": errors.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
            })),
        )
            .into_response(),
        Err(ReloadError::NoConfigFile) => error(
            StatusCode::CONFLICT,
            "this instance runs a built-in config; nothing to reload",
        ),
        Err(ReloadError::ShuttingDown) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting down; reload the process that takes over",
        ),
        Err(e) => error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
    }
}

/// Longest ban the API places by hand.
const MAX_MANUAL_BAN: std::time::Duration = std::time::Duration::from_secs(366 * 86_400);

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BanRequest {
    ip: String,
    /// Human duration, such as "10m"; default one hour.
    ttl: Option<String>,
}

async fn list_bans(State(state): State<AppState>) -> Response {
    Json(json!({ "bans": state.proxy.bans() })).into_response()
}

async fn add_ban(
    State(state): State<AppState>,
    body: Result<Json<BanRequest>, JsonRejection>,
) -> Response {
    let Json(request) = match body {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "expected a JSON body {{\"ip\": \"ADDRESS\", \"ttl\": \"DURATION\"}}: {}",
                    e.body_text()
                ),
            );
        }
    };
    let ip: std::net::IpAddr = match request.ip.trim().parse() {
        Ok(ip) => ip,
        Err(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("ip: \"{}\" is not an IPv4 or IPv6 address", request.ip),
            );
        }
    };
    let ttl = match request.ttl.as_deref() {
        None => std::time::Duration::from_secs(3600),
        Some(text) => match rampart_config::units::parse_duration(text) {
            Ok(d) if d.is_zero() => {
                return error(StatusCode::BAD_REQUEST, "ttl: must be greater than zero");
            }
            Ok(d) if d > MAX_MANUAL_BAN => {
                return error(StatusCode::BAD_REQUEST, "ttl: at most 366 days");
            }
            Ok(d) => d,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("ttl: {e}")),
        },
    };
    match state.proxy.ban(ip, ttl) {
        Ok(ban) => (StatusCode::CREATED, Json(json!({ "ban": ban }))).into_response(),
        Err(e) => error(StatusCode::CONFLICT, e),
    }
}

async fn remove_ban(State(state): State<AppState>, Path(ip): Path<String>) -> Response {
    let Ok(addr) = ip.trim().parse::<std::net::IpAddr>() else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("\"{ip}\" is not an IPv4 or IPv6 address"),
        );
    };
    match state.proxy.unban(addr) {
        Some(ban) => Json(json!({ "lifted": ban })).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("{addr} is not banned")),
    }
}

async fn config(State(state): State<AppState>) -> Response {
    let rt = state.proxy.runtime();
    Json(json!({
        "generation": rt.generation,
        "origin": rt.snapshot.origin,
        "source_hash": format!("{:016x}", rt.snapshot.source_hash),
        "summary": rt.snapshot.summary(),
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        let d: [u8; 32] = Sha256::digest(b"correct horse battery").into();
        assert!(token_matches(&d, "correct horse battery"));
        assert!(!token_matches(&d, "correct horse batterx"));
        assert!(!token_matches(&d, ""));
    }
}

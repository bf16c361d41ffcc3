//! The request path as a pipeline of phases:
//! accept → connection guard → request guard → route → balance → forward → response → log.
//!
//! Route, balance, forward and response are built in. The guard phases are open: the
//! firewall, WAF and authentication plug in here by implementing [`ConnectionGuard`] or
//! [`RequestGuard`]. Guards are pure decisions over what they are given; they never block.

use std::net::SocketAddr;
use std::sync::Arc;

use http::StatusCode;

/// What is known about a client connection when it is accepted.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub listener: Arc<str>,
    pub zone: Arc<str>,
    pub client: SocketAddr,
    /// The client's IP address as a header value, made once per connection.
    pub client_value: http::HeaderValue,
    pub local: SocketAddr,
    pub tls: bool,
}

/// A guard's refusal: the status to answer (request guards) and a reason for logs and metrics.
#[derive(Debug, Clone)]
pub struct Rejection {
    pub status: StatusCode,
    pub reason: &'static str,
    pub detail: String,
}

/// Runs at accept time, before TLS. A rejection closes the connection.
pub trait ConnectionGuard: Send + Sync + 'static {
    fn check(&self, conn: &ConnInfo) -> Result<(), Rejection>;
}

/// Runs on each request head before routing. A rejection answers with its status.
pub trait RequestGuard: Send + Sync + 'static {
    fn check(&self, conn: &ConnInfo, head: &http::request::Parts) -> Result<(), Rejection>;
}

/// The pluggable phases, fixed at start-up.
#[derive(Default, Clone)]
pub struct Phases {
    pub connection: Vec<Arc<dyn ConnectionGuard>>,
    pub request: Vec<Arc<dyn RequestGuard>>,
}

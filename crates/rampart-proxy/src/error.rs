//! The one classified error type of the request path. Its kind decides the status code, the
//! access-log `error` field, the metrics label and whether a retry is safe.

use http::StatusCode;

/// Who caused a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    Client,
    Upstream,
    Internal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    BadRequest,
    UriTooLong,
    HeadersTooLarge,
    BodyTooLarge,
    NoRoute,
    NoHealthyBackend,
    ConnectFailed,
    ConnectTimeout,
    UpstreamTls,
    UpstreamProtocol,
    UpstreamTimeout,
    RequestTimeout,
    ClientBodyError,
    /// The client's request body stalled for the body read timeout.
    ClientBodyTimeout,
    RetryBudgetExhausted,
    /// Every backend at its request cap and the pool's queue full.
    QueueFull,
    /// Every backend at its request cap for the whole queue timeout.
    QueueTimeout,
    Internal,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{kind:?}: {detail}")]
pub struct ProxyError {
    pub kind: ErrorKind,
    pub detail: String,
}

impl ProxyError {
    pub fn new(kind: ErrorKind, detail: impl Into<String>) -> Self {
        ProxyError {
            kind,
            detail: detail.into(),
        }
    }

    pub fn blame(&self) -> Blame {
        use ErrorKind::*;
        match self.kind {
            BadRequest | UriTooLong | HeadersTooLarge | BodyTooLarge | NoRoute
            | ClientBodyError | ClientBodyTimeout => Blame::Client,
            NoHealthyBackend | ConnectFailed | ConnectTimeout | UpstreamTls | UpstreamProtocol
            | UpstreamTimeout | RequestTimeout | RetryBudgetExhausted | QueueFull
            | QueueTimeout => Blame::Upstream,
            Internal => Blame::Internal,
        }
    }

    /// Nothing reached the upstream application, so any request may be sent elsewhere.
    pub fn nothing_sent(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::ConnectFailed | ErrorKind::ConnectTimeout | ErrorKind::UpstreamTls
        )
    }

    pub fn status(&self) -> StatusCode {
        use ErrorKind::*;
        match self.kind {
            BadRequest | ClientBodyError => StatusCode::BAD_REQUEST,
            ClientBodyTimeout => StatusCode::REQUEST_TIMEOUT,
            UriTooLong => StatusCode::URI_TOO_LONG,
            HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            NoRoute => StatusCode::NOT_FOUND,
            NoHealthyBackend | RetryBudgetExhausted | QueueFull | QueueTimeout => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ConnectFailed | UpstreamTls | UpstreamProtocol => StatusCode::BAD_GATEWAY,
            ConnectTimeout | UpstreamTimeout | RequestTimeout => StatusCode::GATEWAY_TIMEOUT,
            Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Short stable label for logs and metrics.
    pub fn label(&self) -> &'static str {
        use ErrorKind::*;
        match self.kind {
            BadRequest => "bad_request",
            UriTooLong => "uri_too_long",
            HeadersTooLarge => "headers_too_large",
            BodyTooLarge => "body_too_large",
            NoRoute => "no_route",
            NoHealthyBackend => "no_healthy_backend",
            ConnectFailed => "connect_failed",
            ConnectTimeout => "connect_timeout",
            UpstreamTls => "upstream_tls",
            UpstreamProtocol => "upstream_protocol",
            UpstreamTimeout => "upstream_timeout",
            RequestTimeout => "request_timeout",
            ClientBodyError => "client_body_error",
            ClientBodyTimeout => "client_body_timeout",
            RetryBudgetExhausted => "retry_budget_exhausted",
            QueueFull => "queue_full",
            QueueTimeout => "queue_timeout",
            Internal => "internal",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_kind() {
        assert_eq!(
            ProxyError::new(ErrorKind::NoHealthyBackend, "").status(),
            503
        );
        assert_eq!(ProxyError::new(ErrorKind::ConnectFailed, "").status(), 502);
        assert_eq!(
            ProxyError::new(ErrorKind::UpstreamTimeout, "").status(),
            504
        );
        assert_eq!(ProxyError::new(ErrorKind::BodyTooLarge, "").status(), 413);
        assert_eq!(ProxyError::new(ErrorKind::UriTooLong, "").status(), 414);
        assert_eq!(
            ProxyError::new(ErrorKind::HeadersTooLarge, "").status(),
            431
        );
        assert!(ProxyError::new(ErrorKind::ConnectFailed, "").nothing_sent());
        assert!(!ProxyError::new(ErrorKind::UpstreamTimeout, "").nothing_sent());
        assert_eq!(
            ProxyError::new(ErrorKind::BadRequest, "").blame(),
            Blame::Client
        );
    }
}

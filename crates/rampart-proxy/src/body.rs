//! Body types of the request path. Bodies stream frame by frame in both directions; nothing is
//! buffered whole.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::h1client::H1Body;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Error from a client body that went over its route's limit.
#[derive(Debug, thiserror::Error)]
#[error("request body exceeds the limit of {limit} bytes")]
pub struct BodyTooLarge {
    pub limit: u64,
}

/// The client sent no body byte for the body read timeout while the upstream waited.
#[derive(Debug, thiserror::Error)]
#[error("request body stalled: no data for {after:?}")]
pub struct BodyStalled {
    pub after: std::time::Duration,
}

/// A client's request body: from Rampart's own HTTP/1.1 server or from hyper's HTTP/2 one.
pub enum ClientBody {
    H1(crate::h1server::H1RequestBody),
    H2(Incoming),
    /// A body read whole before forwarding (the WAF inspects it first).
    Buffered(Option<Bytes>),
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            ClientBody::H1(b) => Pin::new(b).poll_frame(cx).map_err(|e| e.into()),
            ClientBody::H2(b) => Pin::new(b).poll_frame(cx).map_err(|e| e.into()),
            ClientBody::Buffered(b) => Poll::Ready(b.take().map(|data| Ok(Frame::data(data)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ClientBody::H1(b) => b.is_end_stream(),
            ClientBody::H2(b) => b.is_end_stream(),
            ClientBody::Buffered(b) => b.as_ref().is_none_or(|d| d.is_empty()),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ClientBody::H1(b) => b.size_hint(),
            ClientBody::H2(b) => b.size_hint(),
            ClientBody::Buffered(b) => {
                SizeHint::with_exact(b.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}

/// The client's request body on its way upstream, cut off with an error past `limit` bytes.
pub struct RequestBody {
    inner: Option<ClientBody>,
    limit: u64,
    seen: u64,
    /// Milliseconds (kept small: the body travels inside errors and retries).
    stall_after_ms: u32,
    stall_armed: bool,
    /// Armed when the client's body is waited for; made on the first wait only.
    stall: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl RequestBody {
    /// A client body counted against `limit` bytes, failing with [`BodyStalled`] when the
    /// client sends nothing for `stall_after` while it is being read.
    pub fn new(inner: ClientBody, limit: u64, stall_after: std::time::Duration) -> Self {
        RequestBody {
            inner: Some(inner),
            limit,
            seen: 0,
            stall_after_ms: u32::try_from(stall_after.as_millis()).unwrap_or(u32::MAX),
            stall: None,
            stall_armed: false,
        }
    }

    pub fn empty() -> Self {
        RequestBody {
            stall_after_ms: u32::MAX,
            stall: None,
            stall_armed: false,
            inner: None,
            limit: 0,
            seen: 0,
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.stall_armed = false;
                if let Some(data) = frame.data_ref() {
                    this.seen += data.len() as u64;
                    if this.seen > this.limit {
                        return Poll::Ready(Some(Err(Box::new(BodyTooLarge {
                            limit: this.limit,
                        }))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let after = std::time::Duration::from_millis(u64::from(this.stall_after_ms));
                let deadline = tokio::time::Instant::now() + after;
                if !this.stall_armed {
                    match &mut this.stall {
                        Some(sleep) => sleep.as_mut().reset(deadline),
                        None => this.stall = Some(Box::pin(tokio::time::sleep_until(deadline))),
                    }
                    this.stall_armed = true;
                }
                if let Some(sleep) = &mut this.stall
                    && sleep.as_mut().poll(cx).is_ready()
                {
                    return Poll::Ready(Some(Err(Box::new(BodyStalled { after }))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map(|b| b.size_hint())
            .unwrap_or_else(|| SizeHint::with_exact(0))
    }
}

/// Called once when a response body is finished or abandoned: bytes sent and whether the
/// body completed.
pub trait BodyFinish: Send + Sync + 'static {
    fn finish(self: Box<Self>, bytes: u64, complete: bool);
}

/// A response body streamed from an upstream: HTTP/1.1 (read in the request's task) or
/// HTTP/2 (a hyper stream).
// Not boxed: the body moves once, into the server connection; a box would cost an allocation
// per response.
#[allow(clippy::large_enum_variant)]
pub enum UpstreamBody {
    H1(H1Body),
    H2(Incoming),
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            UpstreamBody::H1(b) => Pin::new(b).poll_frame(cx).map_err(|e| e.into()),
            UpstreamBody::H2(b) => Pin::new(b).poll_frame(cx).map_err(|e| e.into()),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::H1(b) => b.is_end_stream(),
            UpstreamBody::H2(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::H1(b) => b.size_hint(),
            UpstreamBody::H2(b) => b.size_hint(),
        }
    }
}

pin_project_lite::pin_project! {
    /// A response on its way to the client: either streamed from an upstream or made locally.
    pub struct ResponseBody {
        #[pin]
        upstream: Option<UpstreamBody>,
        local: Option<Bytes>,
        bytes: u64,
        on_finish: Option<Box<dyn BodyFinish>>,
    }
    impl PinnedDrop for ResponseBody {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(f) = this.on_finish.take() {
                // An empty body may never be polled: it still counts as complete.
                let complete = match this.upstream.as_ref().get_ref() {
                    Some(b) => b.is_end_stream(),
                    None => this.local.is_none(),
                };
                f.finish(*this.bytes, complete);
            }
        }
    }
}

impl ResponseBody {
    pub fn upstream(body: UpstreamBody, on_finish: Option<Box<dyn BodyFinish>>) -> Self {
        ResponseBody {
            upstream: Some(body),
            local: None,
            bytes: 0,
            on_finish,
        }
    }

    pub fn local(data: impl Into<Bytes>, on_finish: Option<Box<dyn BodyFinish>>) -> Self {
        let data = data.into();
        ResponseBody {
            upstream: None,
            local: (!data.is_empty()).then_some(data),
            bytes: 0,
            on_finish,
        }
    }

    pub fn empty() -> Self {
        Self::local(Bytes::new(), None)
    }

    /// Puts `prefix` in front of what is left of the body (bytes already read out of it, for
    /// inspection, go back in front).
    pub fn prepend(&mut self, prefix: Bytes) {
        self.bytes = self.bytes.saturating_sub(prefix.len() as u64);
        self.local = (!prefix.is_empty()).then_some(prefix);
    }

    /// Adds a finisher that runs after the existing one.
    pub fn chain_finish(&mut self, next: Box<dyn BodyFinish>) {
        self.on_finish = Some(match self.on_finish.take() {
            Some(first) => Box::new(Chain(first, next)),
            None => next,
        });
    }
}

struct Chain(Box<dyn BodyFinish>, Box<dyn BodyFinish>);

impl BodyFinish for Chain {
    fn finish(self: Box<Self>, bytes: u64, complete: bool) {
        let Chain(first, second) = *self;
        first.finish(bytes, complete);
        second.finish(bytes, complete);
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        // Local bytes come first: the whole body of a local answer, or a prefix put back.
        let polled = match this.local.take() {
            Some(b) => Poll::Ready(Some(Ok(Frame::data(b)))),
            None => match this.upstream.as_pin_mut() {
                Some(inner) => inner.poll_frame(cx),
                None => Poll::Ready(None),
            },
        };
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    *this.bytes += d.len() as u64;
                }
            }
            Poll::Ready(None) => {
                if let Some(f) = this.on_finish.take() {
                    f.finish(*this.bytes, true);
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(f) = this.on_finish.take() {
                    f.finish(*this.bytes, false);
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.local.is_none() && self.upstream.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let local = self.local.as_ref().map_or(0, |b| b.len() as u64);
        match &self.upstream {
            Some(b) => {
                let inner = b.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(inner.lower() + local);
                if let Some(upper) = inner.upper() {
                    hint.set_upper(upper + local);
                }
                hint
            }
            None => SizeHint::with_exact(local),
        }
    }
}

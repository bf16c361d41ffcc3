//! The client-facing HTTP/1.1 server. Requests are parsed and answered in the connection's own
//! task, and the request body is read from the socket as the upstream side polls it: no
//! dispatcher, no channel between the connection and the request. An idle keep-alive
//! connection on plain TCP holds no read buffer at all (it waits for readiness, then reads),
//! which keeps memory per idle connection small. HTTP/2 stays with hyper.
//!
//! Framing follows RFC 9112: Content-Length or chunked request bodies (a request with both,
//! or with a broken length, is answered 400 and the connection closed), chunked responses
//! with trailers when the length is not known, `Expect: 100-continue` answered when the body
//! is first read, pipelined requests answered in order, HTTP/1.0 keep-alive on request, and
//! WebSocket upgrades handed over with the bytes already read.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use rampart_config::ListenerLimits;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, watch};

use crate::body::ResponseBody;
use crate::h1client::{Chunk, ChunkStep, step_chunked};
use crate::proxy::Connection;

/// How long a connection may stay without a request once shutdown has begun.
pub const DRAIN_QUIET: Duration = Duration::from_secs(1);
/// Read size for request heads and bodies.
const READ_SIZE: usize = 8 * 1024;
const MAX_BODY_READ: usize = 64 * 1024;
/// Body frames up to this size are copied next to the response head or chunk framing (one
/// write); larger ones are written from their own buffer.
const COALESCE: usize = 16 * 1024;
/// Most unread request body discarded after a response before the connection can be reused.
const MAX_DISCARD: u64 = 64 * 1024;
/// Most trailer fields accepted after a chunked request body.
const MAX_TRAILERS: usize = 100;
/// Header slots on the stack; more are only used when the listener allows more.
const STACK_HEADERS: usize = 128;

/// A client transport.
pub trait ServerIo: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Whether [`ServerIo::poll_read_ready`] tells readiness without a read buffer, so that an
    /// idle connection can hold none. Transports that buffer internally (TLS) cannot.
    const READY_WITHOUT_BUFFER: bool = false;

    fn poll_read_ready(&self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl ServerIo for TcpStream {
    const READY_WITHOUT_BUFFER: bool = true;

    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        TcpStream::poll_read_ready(self, cx)
    }
}

impl ServerIo for tokio_rustls::server::TlsStream<TcpStream> {}

/// A connection taken over by a tunnel after a 101 answer.
pub trait UpgradedIo: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> UpgradedIo for T {}

/// The client connection after a 101, with the bytes the client sent past its request head.
pub struct Upgraded {
    pub io: Box<dyn UpgradedIo>,
    pub read_ahead: Bytes,
}

/// Request extension: receives the client connection once the 101 answer has been written.
#[derive(Clone)]
pub struct OnUpgrade(Arc<Mutex<Option<oneshot::Receiver<Upgraded>>>>);

impl OnUpgrade {
    /// Takes the receiver (once).
    pub fn take(&self) -> Option<oneshot::Receiver<Upgraded>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// How the body of the request being served is delimited, and how far it has been read.
enum BodyState {
    Length(u64),
    Chunked(Chunk),
    Done,
    /// The body could not be read to its end (error, or the connection closed).
    Broken,
}

/// The connection's transport and read buffer, shared between the server loop and the body
/// of the request being served. Only one of them uses it at a time (they run in one task),
/// so the lock is never contended.
struct Wire<I> {
    io: Option<I>,
    rbuf: BytesMut,
    body: BodyState,
    trailers: Option<HeaderMap>,
    /// `Expect: 100-continue` not answered yet: bytes of the interim answer still to write.
    continue_left: usize,
    /// Body bytes read so far, against the listener's limits.
    body_read: u64,
    /// Which request of the connection the body state belongs to. A body object that
    /// outlives its request (held by an upstream connection task) must never read the next
    /// request's bytes.
    request_number: u64,
    /// The task last told to wait for request body bytes (it may not be the server's own:
    /// an HTTP/2 upstream sends the body from its connection task).
    body_waker: Option<std::task::Waker>,
}

const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// An error reading a request body from the client.
#[derive(Debug, thiserror::Error)]
#[error("client request body: {0}")]
pub struct ClientBodyError(String);

impl<I: ServerIo> Wire<I> {
    fn new(io: I, rbuf: BytesMut) -> Self {
        Wire {
            io: Some(io),
            rbuf,
            body: BodyState::Done,
            trailers: None,
            continue_left: 0,
            body_read: 0,
            request_number: 0,
            body_waker: None,
        }
    }

    fn io(&mut self) -> io::Result<&mut I> {
        self.io
            .as_mut()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "connection handed over"))
    }

    /// Reads more bytes into the buffer; `Ok(false)` at end of stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>, want: usize) -> Poll<io::Result<bool>> {
        let want = want.clamp(READ_SIZE, MAX_BODY_READ);
        if self.rbuf.capacity() - self.rbuf.len() < READ_SIZE {
            self.rbuf.reserve(want);
        }
        let Wire { io, rbuf, .. } = self;
        let io = io
            .as_mut()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "connection handed over"))?;
        match tokio_util::io::poll_read_buf(Pin::new(io), cx, rbuf) {
            Poll::Ready(Ok(0)) => Poll::Ready(Ok(false)),
            Poll::Ready(Ok(_)) => Poll::Ready(Ok(true)),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Writes what is left of the `100 Continue` answer.
    fn poll_continue(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.continue_left > 0 {
            let from = CONTINUE.len() - self.continue_left;
            let io = self.io()?;
            match Pin::new(io).poll_write(cx, &CONTINUE[from..]) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => self.continue_left -= n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }

    fn body_error(
        &mut self,
        detail: String,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientBodyError>>> {
        self.body = BodyState::Broken;
        Poll::Ready(Some(Err(ClientBodyError(detail))))
    }

    fn poll_body(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientBodyError>>> {
        loop {
            match self.body {
                BodyState::Done => {
                    return Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))));
                }
                BodyState::Broken => return Poll::Ready(None),
                BodyState::Length(0) => self.body = BodyState::Done,
                BodyState::Length(left) => {
                    if !self.rbuf.is_empty() {
                        let n = (self.rbuf.len() as u64).min(left);
                        let data = self.rbuf.split_to(n as usize).freeze();
                        self.body = BodyState::Length(left - n);
                        self.body_read += n;
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    if let Err(e) = std::task::ready!(self.poll_continue(cx)) {
                        return self.body_error(format!("writing 100 Continue: {e}"));
                    }
                    match std::task::ready!(
                        self.poll_fill(cx, left.min(usize::MAX as u64) as usize)
                    ) {
                        Ok(true) => {}
                        Ok(false) => {
                            return self.body_error(format!(
                                "connection closed {left} bytes before the end"
                            ));
                        }
                        Err(e) => return self.body_error(e.to_string()),
                    }
                }
                BodyState::Chunked(state) => match step_chunked(&mut self.rbuf, state) {
                    Ok(ChunkStep::Data(data, next)) => {
                        self.body = BodyState::Chunked(next);
                        self.body_read += data.len() as u64;
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    Ok(ChunkStep::Next(next)) => self.body = BodyState::Chunked(next),
                    Ok(ChunkStep::Trailer(name, value, seen)) => {
                        let trailers = self.trailers.get_or_insert_with(HeaderMap::new);
                        trailers.append(name, value);
                        if trailers.len() > MAX_TRAILERS {
                            return self.body_error("too many trailer fields".into());
                        }
                        self.body = BodyState::Chunked(Chunk::Trailers(seen));
                    }
                    Ok(ChunkStep::End) => self.body = BodyState::Done,
                    Ok(ChunkStep::NeedMore(want)) => {
                        if let Err(e) = std::task::ready!(self.poll_continue(cx)) {
                            return self.body_error(format!("writing 100 Continue: {e}"));
                        }
                        match std::task::ready!(
                            self.poll_fill(cx, want.min(usize::MAX as u64) as usize)
                        ) {
                            Ok(true) => {}
                            Ok(false) => {
                                return self
                                    .body_error("connection closed inside a chunked body".into());
                            }
                            Err(e) => return self.body_error(e.to_string()),
                        }
                    }
                    Err(detail) => return self.body_error(detail),
                },
            }
        }
    }
}

/// What the body of a request reads through: the connection's [`Wire`], type-erased.
trait BodySource: Send {
    fn poll_body(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientBodyError>>>;
    fn body_done(&self) -> bool;
    fn body_hint(&self) -> SizeHint;
    fn request_number(&self) -> u64;
    fn set_body_waker(&mut self, waker: &std::task::Waker);
}

impl<I: ServerIo> BodySource for Wire<I> {
    fn poll_body(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientBodyError>>> {
        Wire::poll_body(self, cx)
    }

    fn body_done(&self) -> bool {
        matches!(
            self.body,
            BodyState::Done | BodyState::Length(0) | BodyState::Broken
        ) && self.trailers.is_none()
    }

    fn body_hint(&self) -> SizeHint {
        match self.body {
            BodyState::Length(n) => SizeHint::with_exact(n),
            BodyState::Done | BodyState::Broken => SizeHint::with_exact(0),
            BodyState::Chunked(_) => SizeHint::default(),
        }
    }

    fn request_number(&self) -> u64 {
        self.request_number
    }

    fn set_body_waker(&mut self, waker: &std::task::Waker) {
        match &self.body_waker {
            Some(w) if w.will_wake(waker) => {}
            _ => self.body_waker = Some(waker.clone()),
        }
    }
}

/// The body of a request on an HTTP/1.1 client connection, read from the socket as polled.
pub struct H1RequestBody {
    wire: Arc<Mutex<dyn BodySource>>,
    request_number: u64,
}

impl H1RequestBody {
    fn lock(&self) -> MutexGuard<'_, dyn BodySource + 'static> {
        self.wire.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Body for H1RequestBody {
    type Data = Bytes;
    type Error = ClientBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let mut wire = self.lock();
        if wire.request_number() != self.request_number {
            return Poll::Ready(Some(Err(ClientBodyError(
                "the request is over; its body can no longer be read".into(),
            ))));
        }
        let polled = wire.poll_body(cx);
        if polled.is_pending() {
            wire.set_body_waker(cx.waker());
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        let wire = self.lock();
        wire.request_number() != self.request_number || wire.body_done()
    }

    fn size_hint(&self) -> SizeHint {
        let wire = self.lock();
        if wire.request_number() != self.request_number {
            return SizeHint::with_exact(0);
        }
        wire.body_hint()
    }
}

/// One parsed request head.
struct Head {
    request: Request<()>,
    /// Keep the connection after the answer, as far as the request is concerned.
    keep_alive: bool,
    body: BodyState,
    expect_continue: bool,
    /// The framing headers contradict each other: answer, then close.
    unframed: bool,
}

/// Why no request head could be read.
enum HeadError {
    /// Closed, timed out, or shut down while idle: close without an answer.
    Quiet,
    /// A broken head: answer with this status and close.
    Answer(StatusCode, &'static str),
}

/// Serves HTTP/1.1 on `io` until the client closes, an error, or shutdown. `initial` holds
/// bytes already read from the connection (protocol detection).
pub async fn serve<I: ServerIo>(
    io: I,
    initial: BytesMut,
    connection: Arc<Connection>,
    limits: &ListenerLimits,
    mut shutdown: watch::Receiver<bool>,
) {
    let wire = Arc::new(Mutex::new(Wire::new(io, initial)));
    let mut first = true;
    let mut quiet: QuietTimer = None;
    loop {
        let head = match read_head(&wire, limits, first, &mut shutdown, &mut quiet).await {
            Ok(head) => head,
            Err(HeadError::Quiet) => return,
            Err(HeadError::Answer(status, detail)) => {
                tracing::debug!(client = %connection.info.client, %status, detail, "malformed request head");
                let kind = if status == StatusCode::REQUEST_TIMEOUT {
                    rampart_firewall::EventKind::SlowClient
                } else {
                    rampart_firewall::EventKind::ProtocolViolation
                };
                let rt = connection.shared.runtime.load();
                crate::firewall::security_event(
                    &connection.shared,
                    &rt.firewall,
                    &connection.info,
                    crate::firewall::Event {
                        kind,
                        reason: status.as_str(),
                        detail,
                        request_id: None,
                    },
                );
                let _ = write_plain_error(&wire, status).await;
                lingering_close(&wire).await;
                return;
            }
        };
        first = false;
        let Head {
            request,
            keep_alive,
            body,
            expect_continue,
            unframed,
        } = head;
        let method_head = request.method() == Method::HEAD;
        let version = request.version();
        // Trailers only go to clients that said they take them (as hyper does).
        let trailers_wanted = crate::headers::accepts_trailers(request.headers());
        let upgrade_tx;
        let request = {
            let mut w = lock(&wire);
            w.body = body;
            w.trailers = None;
            w.body_read = 0;
            w.request_number += 1;
            let request_number = w.request_number;
            w.continue_left = if expect_continue && !w.body_done_state() {
                CONTINUE.len()
            } else {
                0
            };
            drop(w);
            let source: Arc<Mutex<dyn BodySource>> = wire.clone();
            let (mut parts, ()) = request.into_parts();
            let (tx, rx) = oneshot::channel();
            upgrade_tx = tx;
            parts
                .extensions
                .insert(OnUpgrade(Arc::new(Mutex::new(Some(rx)))));
            Request::from_parts(
                parts,
                crate::body::ClientBody::H1(H1RequestBody {
                    wire: source,
                    request_number,
                }),
            )
        };
        let response = match crate::proxy::handle(connection.clone(), request).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
        let status = response.status();
        let written = write_response(
            &wire,
            response,
            ResponseContext {
                method_head,
                version,
                keep_alive: keep_alive && !unframed,
                trailers_wanted,
                idle_timeout: limits.idle_timeout,
            },
        )
        .await;
        let keep = match written {
            Ok(keep) => keep,
            Err(e) => {
                tracing::trace!(error = %e, "writing the response failed");
                return;
            }
        };
        lock(&wire).retire_body();
        if status == StatusCode::SWITCHING_PROTOCOLS {
            let mut w = lock(&wire);
            if let Some(io) = w.io.take() {
                let read_ahead = w.rbuf.split().freeze();
                drop(w);
                let _ = upgrade_tx.send(Upgraded {
                    io: Box::new(io),
                    read_ahead,
                });
            }
            return;
        }
        drop(upgrade_tx);
        if !keep {
            // Everything the client sent has been read: a plain close resets nothing. Bytes
            // still unread (a body, pipelined requests) would make the close a reset that can
            // destroy the answer in flight, so then the close lingers.
            let clean = {
                let w = lock(&wire);
                w.rbuf.is_empty() && matches!(w.body, BodyState::Done | BodyState::Length(0))
            };
            if !clean {
                lingering_close(&wire).await;
            } else if !I::READY_WITHOUT_BUFFER {
                // TLS: close_notify, so the client can tell the end from a cut.
                let shut = std::future::poll_fn(|cx| match lock(&wire).io() {
                    Ok(io) => Pin::new(io).poll_shutdown(cx),
                    Err(e) => Poll::Ready(Err(e)),
                });
                let _ = tokio::time::timeout(Duration::from_secs(1), shut).await;
            }
            return;
        }
        if !finish_body(&wire).await {
            lingering_close(&wire).await;
            return;
        }
        // Between requests: nothing buffered means no buffer kept.
        let mut w = lock(&wire);
        if w.rbuf.is_empty() {
            w.rbuf = BytesMut::new();
        }
    }
}

impl<I: ServerIo> Wire<I> {
    /// Whether the rest of the request body can still be read and dropped so the connection
    /// carries another request.
    fn body_finishable(&self) -> bool {
        self.continue_left == 0
            && match self.body {
                BodyState::Done | BodyState::Length(0) => true,
                BodyState::Broken => false,
                BodyState::Length(n) => n <= MAX_DISCARD && self.body_read <= MAX_DISCARD,
                BodyState::Chunked(_) => self.body_read <= MAX_DISCARD,
            }
    }

    /// The request's body objects stop reading (a task still holding one is woken and gets an
    /// error), so only the server reads the connection from here on.
    fn retire_body(&mut self) {
        self.request_number += 1;
        if let Some(waker) = self.body_waker.take() {
            waker.wake();
        }
    }

    fn body_done_state(&self) -> bool {
        matches!(self.body, BodyState::Done | BodyState::Length(0))
    }
}

fn lock<I>(wire: &Arc<Mutex<Wire<I>>>) -> MutexGuard<'_, Wire<I>> {
    wire.lock().unwrap_or_else(|p| p.into_inner())
}

/// Reads what is left of the request body (up to [`MAX_DISCARD`] bytes, briefly) so the
/// connection can carry the next request. `false`: close it instead.
async fn finish_body<I: ServerIo>(wire: &Arc<Mutex<Wire<I>>>) -> bool {
    {
        let w = lock(wire);
        match w.body {
            BodyState::Done | BodyState::Length(0) => return true,
            BodyState::Broken => return false,
            BodyState::Length(n) if n > MAX_DISCARD => return false,
            _ => {}
        }
        // The client was told to wait for 100 Continue and never sent the body.
        if w.continue_left > 0 {
            return false;
        }
    }
    let drain = async {
        loop {
            let frame = std::future::poll_fn(|cx| {
                let mut w = lock(wire);
                if w.body_read > MAX_DISCARD {
                    return Poll::Ready(Some(Err(ClientBodyError("too much to discard".into()))));
                }
                w.poll_body(cx)
            })
            .await;
            match frame {
                None => return true,
                Some(Ok(_)) => {}
                Some(Err(_)) => return false,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(1), drain)
        .await
        .unwrap_or(false)
}

/// Closes the connection without resetting an answer the client has not read yet: the
/// write side is shut, then whatever the client still sends is read and dropped for a moment.
async fn lingering_close<I: ServerIo>(wire: &Arc<Mutex<Wire<I>>>) {
    let shut = std::future::poll_fn(|cx| {
        let mut w = lock(wire);
        match w.io() {
            Ok(io) => Pin::new(io).poll_shutdown(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    });
    if tokio::time::timeout(Duration::from_secs(1), shut)
        .await
        .is_err()
    {
        return;
    }
    let discard = async {
        let mut seen = 0usize;
        loop {
            let read = std::future::poll_fn(|cx| {
                let mut w = lock(wire);
                w.rbuf.clear();
                w.poll_fill(cx, READ_SIZE)
            })
            .await;
            match read {
                Ok(true) => {
                    seen += lock(wire).rbuf.len();
                    if seen > 1 << 20 {
                        return;
                    }
                }
                _ => return,
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_millis(500), discard).await;
}

/// The timer that bounds how long a connection may stay quiet. It is armed lazily: a request
/// does not touch it; when it fires early (the connection was busy meanwhile) it is pushed to
/// the real deadline. So a busy keep-alive connection costs no timer operation per request.
type QuietTimer = Option<Pin<Box<tokio::time::Sleep>>>;

/// Waits for and parses the next request head.
async fn read_head<I: ServerIo>(
    wire: &Arc<Mutex<Wire<I>>>,
    limits: &ListenerLimits,
    first: bool,
    shutdown: &mut watch::Receiver<bool>,
    quiet: &mut QuietTimer,
) -> Result<Head, HeadError> {
    // Idle: wait for the first byte without holding a buffer. A new connection must send its
    // head within header_read_timeout; a kept-alive one may stay quiet for idle_timeout.
    loop {
        if lock(wire).rbuf.is_empty() {
            let readable = std::future::poll_fn(|cx| {
                let mut w = lock(wire);
                if I::READY_WITHOUT_BUFFER {
                    return match w.io() {
                        Ok(io) => io.poll_read_ready(cx),
                        Err(e) => Poll::Ready(Err(e)),
                    };
                }
                match std::task::ready!(w.poll_fill(cx, READ_SIZE)) {
                    Ok(true) => Poll::Ready(Ok(())),
                    Ok(false) => Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into())),
                    Err(e) => Poll::Ready(Err(e)),
                }
            });
            tokio::pin!(readable);
            let ready_now = {
                let mut cx = Context::from_waker(std::task::Waker::noop());
                readable.as_mut().poll(&mut cx)
            };
            match ready_now {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(_)) => return Err(HeadError::Quiet),
                Poll::Pending => {
                    let quiet_limit = if first {
                        limits.header_read_timeout
                    } else {
                        limits.idle_timeout
                    };
                    let now = tokio::time::Instant::now();
                    let mut draining = *shutdown.borrow();
                    let mut due = now
                        + if draining {
                            DRAIN_QUIET.min(quiet_limit)
                        } else {
                            quiet_limit
                        };
                    let timer =
                        quiet.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
                    if timer.deadline() > due {
                        timer.as_mut().reset(due);
                    }
                    loop {
                        tokio::select! {
                            ready = &mut readable => {
                                if ready.is_err() {
                                    return Err(HeadError::Quiet);
                                }
                                break;
                            }
                            _ = timer.as_mut() => {
                                if tokio::time::Instant::now() >= due {
                                    return Err(HeadError::Quiet);
                                }
                                timer.as_mut().reset(due);
                            }
                            changed = shutdown.changed(), if !draining => {
                                draining = true;
                                if changed.is_err() || *shutdown.borrow() {
                                    due = due.min(tokio::time::Instant::now() + DRAIN_QUIET);
                                    if timer.deadline() > due {
                                        timer.as_mut().reset(due);
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        // Most heads arrive whole in one read: parsed without arming a timer.
        let fast = std::future::poll_fn(|cx| {
            let mut w = lock(wire);
            if w.rbuf.is_empty() {
                match w.poll_fill(cx, READ_SIZE) {
                    Poll::Ready(Ok(true)) => {}
                    Poll::Ready(Ok(false)) | Poll::Ready(Err(_)) => {
                        return Poll::Ready(Some(Err(HeadError::Quiet)));
                    }
                    // Readiness was spurious: the timed path waits.
                    Poll::Pending => return Poll::Ready(None),
                }
            }
            Poll::Ready(parse_head(&mut w.rbuf, limits).transpose())
        })
        .await;
        if let Some(result) = fast {
            return result;
        }
        // Part of a head: the rest must come within header_read_timeout. Nothing (the readiness
        // was spurious): idle again.
        if !lock(wire).rbuf.is_empty() {
            break;
        }
    }
    let deadline = Instant::now() + limits.header_read_timeout;
    let parse = async {
        loop {
            {
                let mut w = lock(wire);
                if !w.rbuf.is_empty()
                    && let Some(head) = parse_head(&mut w.rbuf, limits)?
                {
                    return Ok(head);
                }
            }
            let filled = std::future::poll_fn(|cx| lock(wire).poll_fill(cx, READ_SIZE)).await;
            match filled {
                Ok(true) => {}
                // Closed (before or inside a head) or failed: nothing to answer.
                Ok(false) | Err(_) => return Err(HeadError::Quiet),
            }
        }
    };
    match tokio::time::timeout_at(deadline.into(), parse).await {
        Ok(result) => result,
        Err(_) => {
            let partial = !lock(wire).rbuf.is_empty();
            if partial {
                Err(HeadError::Answer(
                    StatusCode::REQUEST_TIMEOUT,
                    "request head not complete within header_read_timeout",
                ))
            } else {
                Err(HeadError::Quiet)
            }
        }
    }
}

/// Parses a complete request head from the front of `buf` and removes it; `Ok(None)` when
/// more bytes are needed.
fn parse_head(buf: &mut BytesMut, limits: &ListenerLimits) -> Result<Option<Head>, HeadError> {
    let max_headers = limits.max_headers.max(1);
    let mut stack = [(0u32, 0u32, 0u32, 0u32); STACK_HEADERS];
    let mut heap = Vec::new();
    let spans: &mut [(u32, u32, u32, u32)] = if max_headers <= STACK_HEADERS {
        &mut stack[..max_headers]
    } else {
        heap.resize(max_headers, (0, 0, 0, 0));
        &mut heap
    };
    let parsed = {
        let mut slots_stack =
            [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; STACK_HEADERS];
        let mut slots_heap = Vec::new();
        let slots: &mut [std::mem::MaybeUninit<httparse::Header<'_>>] =
            if max_headers <= STACK_HEADERS {
                &mut slots_stack[..max_headers]
            } else {
                slots_heap.resize_with(max_headers, std::mem::MaybeUninit::uninit);
                &mut slots_heap
            };
        let mut req = httparse::Request::new(&mut []);
        let status = httparse::ParserConfig::default()
            .allow_multiple_spaces_in_request_line_delimiters(false)
            .parse_request_with_uninit_headers(&mut req, buf, slots);
        match status {
            Ok(httparse::Status::Complete(len)) => {
                if len > limits.max_header_bytes {
                    return Err(HeadError::Answer(
                        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                        "request head too large",
                    ));
                }
                let base = buf.as_ptr() as usize;
                let method = req.method.unwrap_or("");
                let path = req.path.unwrap_or("");
                let method_span = (method.as_ptr() as usize - base, method.len());
                let path_span = (path.as_ptr() as usize - base, path.len());
                for (span, h) in spans.iter_mut().zip(req.headers.iter()) {
                    *span = (
                        (h.name.as_ptr() as usize - base) as u32,
                        h.name.len() as u32,
                        (h.value.as_ptr() as usize - base) as u32,
                        h.value.len() as u32,
                    );
                }
                Some((
                    len,
                    req.headers.len(),
                    req.version.unwrap_or(1),
                    method_span,
                    path_span,
                ))
            }
            Ok(httparse::Status::Partial) => {
                if buf.len() > limits.max_header_bytes {
                    // No line end yet: the request line itself is too long.
                    let status = if !buf.contains(&b'\n') {
                        StatusCode::URI_TOO_LONG
                    } else {
                        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
                    };
                    return Err(HeadError::Answer(status, "request head too large"));
                }
                None
            }
            Err(httparse::Error::TooManyHeaders) => {
                return Err(HeadError::Answer(
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "too many header fields",
                ));
            }
            Err(_) => {
                return Err(HeadError::Answer(
                    StatusCode::BAD_REQUEST,
                    "malformed request head",
                ));
            }
        }
    };
    let Some((len, count, minor, method_span, path_span)) = parsed else {
        return Ok(None);
    };
    let head = buf.split_to(len).freeze();
    let bad = |detail| HeadError::Answer(StatusCode::BAD_REQUEST, detail);
    let method = Method::from_bytes(&head[method_span.0..method_span.0 + method_span.1])
        .map_err(|_| bad("invalid method"))?;
    let target = head.slice(path_span.0..path_span.0 + path_span.1);
    let mut raw_target = None;
    let uri = match http::Uri::from_maybe_shared(target.clone()) {
        Ok(uri) => uri,
        Err(_) => {
            // Characters that browsers escape but clients (and attackers) send raw, such as
            // `"`, `<`, `{`: accepted as NGINX does, escaped for the upstream, and the target
            // as received kept for the WAF.
            let escaped = escape_target(&target).ok_or_else(|| bad("invalid request target"))?;
            raw_target = Some(target);
            http::Uri::from_maybe_shared(Bytes::from(escaped))
                .map_err(|_| bad("invalid request target"))?
        }
    };
    let version = if minor == 0 {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    let mut headers = HeaderMap::with_capacity(count);
    let mut close = version == Version::HTTP_10;
    let mut expect_continue = false;
    for &(ns, nl, vs, vl) in &spans[..count] {
        let name = HeaderName::from_bytes(&head[ns as usize..(ns + nl) as usize])
            .map_err(|_| bad("invalid header name"))?;
        let value = HeaderValue::from_maybe_shared(head.slice(vs as usize..(vs + vl) as usize))
            .map_err(|_| bad("invalid header value"))?;
        if name == header::CONNECTION {
            for token in value
                .as_bytes()
                .split(|b| *b == b',')
                .map(|t| t.trim_ascii())
            {
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && version == Version::HTTP_10 {
                    close = false;
                }
            }
        } else if name == header::EXPECT && value.as_bytes().eq_ignore_ascii_case(b"100-continue") {
            expect_continue = version == Version::HTTP_11;
        }
        headers.append(name, value);
    }
    let framing_problem = crate::headers::framing_problem(&headers).or_else(|| {
        // RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 request is badly framed.
        (version == Version::HTTP_10 && headers.contains_key(header::TRANSFER_ENCODING))
            .then_some("Transfer-Encoding in an HTTP/1.0 request")
    });
    let (body, unframed) = match framing_problem {
        // The proxy answers 400 for it; the body cannot be delimited, so nothing is read.
        Some(_) => (BodyState::Done, true),
        None => {
            if headers.contains_key(header::TRANSFER_ENCODING) {
                (BodyState::Chunked(Chunk::Size), false)
            } else {
                let length = headers
                    .get(header::CONTENT_LENGTH)
                    .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
                (BodyState::Length(length), false)
            }
        }
    };
    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = version;
    *request.headers_mut() = headers;
    if let Some(raw) = raw_target {
        request.extensions_mut().insert(crate::waf::RawTarget(raw));
    }
    Ok(Some(Head {
        request,
        keep_alive: !close,
        body,
        expect_continue,
        unframed,
    }))
}

/// How a response body is delimited on the wire.
enum Framing {
    None,
    Length(u64),
    Chunked,
    /// Until the connection closes (HTTP/1.0 clients, unknown length).
    Close,
}

/// What writing a response needs to know about its request.
struct ResponseContext {
    method_head: bool,
    version: Version,
    keep_alive: bool,
    trailers_wanted: bool,
    idle_timeout: Duration,
}

/// Writes `response`; returns whether the connection may carry another request.
async fn write_response<I: ServerIo>(
    wire: &Arc<Mutex<Wire<I>>>,
    response: Response<ResponseBody>,
    context: ResponseContext,
) -> io::Result<bool> {
    let ResponseContext {
        method_head,
        version,
        mut keep_alive,
        trailers_wanted,
        idle_timeout,
    } = context;
    let (parts, body) = response.into_parts();
    let status = parts.status;
    let mut headers = parts.headers;
    // A `100 Continue` not begun is dropped (the final answer replaces it); one begun is
    // finished first, or the two answers would be interleaved.
    let continue_begun = {
        let mut w = lock(wire);
        if w.continue_left == CONTINUE.len() {
            w.continue_left = 0;
        }
        w.continue_left > 0
    };
    if continue_begun {
        let finish = std::future::poll_fn(|cx| lock(wire).poll_continue(cx));
        match tokio::time::timeout(idle_timeout, finish).await {
            Ok(result) => result?,
            Err(_) => return Err(io::ErrorKind::TimedOut.into()),
        }
    }
    // A request body that cannot be read to its end makes the connection unusable: say so in
    // this answer rather than closing after promising keep-alive.
    if status != StatusCode::SWITCHING_PROTOCOLS && !lock(wire).body_finishable() {
        keep_alive = false;
    }
    if headers.get_all(header::CONNECTION).iter().any(|v| {
        v.as_bytes()
            .split(|b| *b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"))
    }) {
        keep_alive = false;
    }
    let bodiless = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    headers.remove(header::TRANSFER_ENCODING);
    let framing = if bodiless {
        Framing::None
    } else if let Some(n) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if method_head {
            Framing::None
        } else {
            Framing::Length(n)
        }
    } else if let Some(n) = body.size_hint().exact() {
        if !method_head || n > 0 {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
        }
        if method_head {
            Framing::None
        } else {
            Framing::Length(n)
        }
    } else if method_head {
        Framing::None
    } else if version == Version::HTTP_11 {
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        Framing::Chunked
    } else {
        keep_alive = false;
        Framing::Close
    };
    if status != StatusCode::SWITCHING_PROTOCOLS {
        if !keep_alive {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        } else if version == Version::HTTP_10 {
            headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        }
    }
    if !headers.contains_key(header::DATE) {
        headers.insert(header::DATE, http_date());
    }

    let mut out = BytesMut::with_capacity(256 + headers.len() * 32);
    out.put_slice(b"HTTP/1.1 ");
    out.put_slice(status.as_str().as_bytes());
    out.put_u8(b' ');
    out.put_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
    out.put_slice(b"\r\n");
    for (name, value) in &headers {
        out.put_slice(name.as_str().as_bytes());
        out.put_slice(b": ");
        out.put_slice(value.as_bytes());
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"\r\n");

    let mut body = std::pin::pin!(body);
    if matches!(framing, Framing::None) {
        write_all(wire, &mut out, idle_timeout).await?;
        flush(wire, idle_timeout).await?;
        return Ok(keep_alive);
    }
    let mut sent: u64 = 0;
    let mut ended = false;
    loop {
        // Whatever the body has ready now goes out with what is queued; only when it has
        // nothing ready is the queue written and the body awaited.
        let frame = {
            let mut cx = Context::from_waker(std::task::Waker::noop());
            match body.as_mut().poll_frame(&mut cx) {
                Poll::Ready(frame) => Some(frame),
                Poll::Pending => None,
            }
        };
        let frame = match frame {
            Some(frame) => frame,
            None => {
                if !out.is_empty() {
                    write_all(wire, &mut out, idle_timeout).await?;
                }
                // No client-side limit on the upstream's pace: event streams and long polls
                // may be quiet for long; the route's timeouts govern the upstream.
                std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await
            }
        };
        match frame {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    if data.is_empty() {
                        continue;
                    }
                    sent += data.len() as u64;
                    match framing {
                        Framing::Length(n) if sent > n => {
                            return Err(io::Error::other("response body longer than its length"));
                        }
                        Framing::Chunked => {
                            out.put_slice(format!("{:x}\r\n", data.len()).as_bytes());
                            queue(wire, &mut out, data, idle_timeout).await?;
                            out.put_slice(b"\r\n");
                        }
                        _ => queue(wire, &mut out, data, idle_timeout).await?,
                    }
                }
                Err(frame) => {
                    if let (Framing::Chunked, true, Ok(trailers)) =
                        (&framing, trailers_wanted, frame.into_trailers())
                    {
                        out.put_slice(b"0\r\n");
                        for (name, value) in &trailers {
                            out.put_slice(name.as_str().as_bytes());
                            out.put_slice(b": ");
                            out.put_slice(value.as_bytes());
                            out.put_slice(b"\r\n");
                        }
                        out.put_slice(b"\r\n");
                        ended = true;
                    }
                }
            },
            Some(Err(e)) => {
                // The answer cannot be completed: the client must see it broken, not short.
                if !out.is_empty() {
                    let _ = write_all(wire, &mut out, idle_timeout).await;
                }
                return Err(io::Error::other(format!("response body: {e}")));
            }
            None => break,
        }
        if out.len() >= COALESCE {
            write_all(wire, &mut out, idle_timeout).await?;
        }
    }
    match framing {
        Framing::Chunked if !ended => out.put_slice(b"0\r\n\r\n"),
        Framing::Length(n) if sent != n => {
            if !out.is_empty() {
                write_all(wire, &mut out, idle_timeout).await?;
            }
            return Err(io::Error::other("response body shorter than its length"));
        }
        _ => {}
    }
    if !out.is_empty() {
        write_all(wire, &mut out, idle_timeout).await?;
    }
    flush(wire, idle_timeout).await?;
    Ok(keep_alive && !matches!(framing, Framing::Close))
}

/// Pushes out what the transport may still hold (TLS queues records inside rustls when the
/// socket is full; plain TCP holds nothing).
async fn flush<I: ServerIo>(wire: &Arc<Mutex<Wire<I>>>, idle_timeout: Duration) -> io::Result<()> {
    if I::READY_WITHOUT_BUFFER {
        return Ok(());
    }
    let flush = std::future::poll_fn(|cx| {
        let mut w = lock(wire);
        match w.io() {
            Ok(io) => Pin::new(io).poll_flush(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    });
    match tokio::time::timeout(idle_timeout, flush).await {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "client took no response bytes for idle_timeout",
        )),
    }
}

/// Adds `data` to the queue, or (when large) writes the queue and then `data` itself.
async fn queue<I: ServerIo>(
    wire: &Arc<Mutex<Wire<I>>>,
    out: &mut BytesMut,
    data: Bytes,
    idle_timeout: Duration,
) -> io::Result<()> {
    if data.len() <= COALESCE {
        out.put_slice(&data);
        return Ok(());
    }
    if !out.is_empty() {
        write_all(wire, out, idle_timeout).await?;
    }
    let mut data = data;
    write_all(wire, &mut data, idle_timeout).await
}

/// Writes all of `buf`; a client that takes nothing for `idle_timeout` is given up on.
async fn write_all<I: ServerIo, B: Buf>(
    wire: &Arc<Mutex<Wire<I>>>,
    buf: &mut B,
    idle_timeout: Duration,
) -> io::Result<()> {
    let mut write = std::future::poll_fn(|cx| {
        while buf.has_remaining() {
            let mut w = lock(wire);
            let io = w.io()?;
            match Pin::new(io).poll_write(cx, buf.chunk()) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => buf.advance(n),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    });
    // Most writes complete at once; the timer is only armed for a client that is slow.
    let first = {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        Pin::new(&mut write).poll(&mut cx)
    };
    if let Poll::Ready(result) = first {
        return result;
    }
    match tokio::time::timeout(idle_timeout, write).await {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "client took no response bytes for idle_timeout",
        )),
    }
}

use std::future::Future;

/// A minimal answer written by the server itself (the request never reached the proxy).
async fn write_plain_error<I: ServerIo>(
    wire: &Arc<Mutex<Wire<I>>>,
    status: StatusCode,
) -> io::Result<()> {
    let body = format!(
        "{} {}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    let mut out = BytesMut::new();
    out.put_slice(
        format!(
            "HTTP/1.1 {} {}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\ndate: ",
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            body.len()
        )
        .as_bytes(),
    );
    out.put_slice(http_date().as_bytes());
    out.put_slice(b"\r\n\r\n");
    out.put_slice(body.as_bytes());
    write_all(wire, &mut out, Duration::from_secs(5)).await
}

/// The `Date` header value, formatted once per second per thread.
fn http_date() -> HeaderValue {
    use std::cell::RefCell;
    thread_local! {
        static CACHE: RefCell<(u64, Option<HeaderValue>)> = const { RefCell::new((0, None)) };
    }
    let now = std::time::SystemTime::now();
    let secs = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.0 != secs || cache.1.is_none() {
            let text = httpdate::fmt_http_date(now);
            cache.1 = HeaderValue::from_str(&text).ok();
            cache.0 = secs;
        }
        cache
            .1
            .clone()
            .unwrap_or_else(|| HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"))
    })
}

/// Serves bytes already read before the transport's own.
pub struct Prefixed<I> {
    prefix: Bytes,
    io: I,
}

impl<I> Prefixed<I> {
    pub fn new(prefix: Bytes, io: I) -> Self {
        Prefixed { prefix, io }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Prefixed<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix.split_to(n));
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Prefixed<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// The HTTP/2 connection preface a client with prior knowledge starts with.
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Reads the first bytes of a plain connection to tell HTTP/2 with prior knowledge from
/// HTTP/1.1. Returns the bytes read and whether they start the HTTP/2 preface; `None` when
/// the client closed or sent nothing within `limit`.
pub async fn sniff_h2(io: &mut TcpStream, limit: Duration) -> Option<(BytesMut, bool)> {
    let mut buf = BytesMut::new();
    let read = async {
        loop {
            buf.reserve(READ_SIZE);
            match tokio_util::io::read_buf(io, &mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(_) => {}
            }
            let n = buf.len().min(H2_PREFACE.len());
            if buf[..n] != H2_PREFACE[..n] || n == H2_PREFACE.len() {
                return true;
            }
        }
    };
    match tokio::time::timeout(limit, read).await {
        Ok(true) => {
            let h2 = buf.starts_with(H2_PREFACE);
            Some((buf, h2))
        }
        _ => None,
    }
}

/// An origin-form target with every byte outside RFC 3986's path and query characters
/// percent-encoded; `None` unless it starts with `/` and holds only visible bytes.
fn escape_target(target: &[u8]) -> Option<Vec<u8>> {
    if target.first() != Some(&b'/') || target.iter().any(|&b| b <= b' ' || b == 0x7f) {
        return None;
    }
    let mut out = Vec::with_capacity(target.len() + 16);
    for &b in target {
        let plain = b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&b);
        if plain {
            out.push(b);
        } else {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(bytes: &[u8], limits: &ListenerLimits) -> Result<Option<Head>, HeadError> {
        parse_head(&mut BytesMut::from(bytes), limits)
    }

    fn status_of(result: Result<Option<Head>, HeadError>) -> Option<u16> {
        match result {
            Err(HeadError::Answer(status, _)) => Some(status.as_u16()),
            _ => None,
        }
    }

    #[test]
    fn raw_targets_are_escaped_and_kept() {
        let limits = ListenerLimits::default();
        let head = parse(
            b"GET /get?x=<script>\"a\"{1}|^`\\ HTTP/1.1\r\nHost: x\r\n\r\n",
            &limits,
        )
        .ok()
        .flatten()
        .expect("accepted as NGINX accepts it");
        assert_eq!(
            head.request.uri().to_string(),
            "/get?x=%3Cscript%3E%22a%22%7B1%7D%7C%5E%60%5C"
        );
        let raw = head
            .request
            .extensions()
            .get::<crate::waf::RawTarget>()
            .unwrap();
        assert_eq!(&raw.0[..], &b"/get?x=<script>\"a\"{1}|^`\\"[..]);
        let plain = parse(b"GET /a?b=c HTTP/1.1\r\nHost: x\r\n\r\n", &limits)
            .ok()
            .flatten()
            .unwrap();
        assert!(
            plain
                .request
                .extensions()
                .get::<crate::waf::RawTarget>()
                .is_none()
        );
        assert_eq!(escape_target(b"x<"), None, "only origin-form targets");
    }

    #[test]
    fn heads_frame_their_bodies() {
        let limits = ListenerLimits::default();
        let head = parse(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\nrest",
            &limits,
        )
        .ok()
        .flatten()
        .expect("complete head");
        assert!(matches!(head.body, BodyState::Length(12)) && head.keep_alive && !head.unframed);
        let head = parse(
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
            &limits,
        )
        .ok()
        .flatten()
        .unwrap();
        assert!(matches!(head.body, BodyState::Chunked(Chunk::Size)));
        // Both: nothing is read as a body and the connection ends after the answer.
        let head = parse(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            &limits,
        )
        .ok()
        .flatten()
        .unwrap();
        assert!(matches!(head.body, BodyState::Done) && head.unframed);
        // Transfer-Encoding has no meaning in HTTP/1.0: badly framed (RFC 9112 §6.1).
        let head = parse(
            b"POST / HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n",
            &limits,
        )
        .ok()
        .flatten()
        .unwrap();
        assert!(head.unframed);
        let head = parse(b"GET / HTTP/1.0\r\n\r\n", &limits)
            .ok()
            .flatten()
            .unwrap();
        assert!(!head.keep_alive);
        let head = parse(
            b"GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n",
            &limits,
        )
        .ok()
        .flatten()
        .unwrap();
        assert!(head.expect_continue);
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\nHost: x\r\n", &limits),
            Ok(None)
        ));
    }

    #[test]
    fn oversized_heads_get_414_or_431() {
        let limits = ListenerLimits {
            max_header_bytes: 1024,
            max_headers: 4,
            ..ListenerLimits::default()
        };
        let long_line = format!("GET /{} HTTP/1.1", "a".repeat(2000));
        assert_eq!(status_of(parse(long_line.as_bytes(), &limits)), Some(414));
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n", "b".repeat(2000));
        assert_eq!(status_of(parse(big.as_bytes(), &limits)), Some(431));
        let many = "GET / HTTP/1.1\r\nA: 1\r\nB: 1\r\nC: 1\r\nD: 1\r\nE: 1\r\n\r\n";
        assert_eq!(status_of(parse(many.as_bytes(), &limits)), Some(431));
        assert_eq!(
            status_of(parse(b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", &limits)),
            Some(400)
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = parse(&bytes, &ListenerLimits::default());
        }

        #[test]
        fn damaged_heads_never_panic(
            position in 0usize..120,
            byte in any::<u8>(),
            cut in 0usize..130,
        ) {
            let mut head = b"POST /a?b=c HTTP/1.1\r\nHost: example.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\nX-A: b\r\n\r\n".to_vec();
            let at = position % head.len();
            head[at] = byte;
            head.truncate(cut.min(head.len()));
            let _ = parse(&head, &ListenerLimits::default());
        }
    }
}

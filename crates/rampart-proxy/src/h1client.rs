//! The upstream HTTP/1.1 client. It runs inside the request's own task: the request head is
//! written straight from the client's parsed head, the response head is parsed into a
//! `Response`, and the response body is read from the socket as the client side polls it. No
//! connection task and no channel sit between the two sides, so a proxied request costs one
//! task and no cross-task wake-ups. A connection goes back to its endpoint's idle pool the
//! moment its response body has been read completely.

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::body::{BodyTooLarge, RequestBody};
use crate::error::{ErrorKind, ProxyError};
use crate::upstream::Endpoint;

/// Most response header fields accepted from an upstream.
const MAX_RESPONSE_HEADERS: usize = 100;
/// Largest response head accepted from an upstream.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Longest chunk-size line (with extensions) and most trailer bytes accepted.
const MAX_CHUNK_LINE: usize = 4096;
const MAX_TRAILER_BYTES: usize = 16 * 1024;
/// Request body frames up to this size are copied next to the head (one write); larger ones
/// are written from their own buffer.
const COALESCE: usize = 16 * 1024;
/// Smallest read from an upstream socket; bodies read in steps of up to `MAX_READ`.
const MIN_READ: usize = 8 * 1024;
const MAX_READ: usize = 64 * 1024;

/// A transport to an upstream: plain TCP or TLS.
pub enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// One HTTP/1.1 connection to an upstream, between requests or carrying one.
pub struct H1Conn {
    io: Io,
    /// Bytes read from the upstream and not consumed yet.
    buf: BytesMut,
    /// The request head being written (kept for its capacity between requests).
    out: Vec<u8>,
    /// When the connection went idle; set by the pool.
    pub(crate) idle_since: Instant,
    /// Has carried a request before: a failure without a response byte may be a keep-alive
    /// race (the upstream closed it while idle) rather than a broken backend.
    reused: bool,
}

impl H1Conn {
    pub fn new(io: Io) -> Self {
        H1Conn {
            io,
            buf: BytesMut::new(),
            out: Vec::new(),
            idle_since: Instant::now(),
            reused: false,
        }
    }

    /// Whether an idle connection still looks usable: nothing arrived while it was idle
    /// (neither end of stream nor stray bytes). Costs no system call unless the socket has
    /// become readable since its last read.
    pub fn idle_usable(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut probe = [MaybeUninit::<u8>::uninit(); 1];
        let mut probe = ReadBuf::uninit(&mut probe);
        // Ready means end of stream, stray bytes or an error: no request can go on it.
        Pin::new(&mut self.io)
            .poll_read(&mut cx, &mut probe)
            .is_pending()
    }
}

/// The request head to send, borrowed from the client's request.
pub struct RequestHead<'a> {
    pub method: &'a Method,
    /// Origin-form target (path and query).
    pub target: &'a str,
    /// The client's header fields.
    pub headers: &'a HeaderMap,
    /// Changes to them (hop-by-hop removal, forwarding headers); without one they are sent
    /// as they are.
    pub rewrite: Option<&'a crate::headers::Rewrite>,
}

/// A failed exchange.
pub struct SendError {
    pub error: ProxyError,
    /// The body when none of it was taken: the request can go elsewhere unchanged.
    pub returned: Option<RequestBody>,
    /// The connection was reused and closed before any response byte: most likely the
    /// upstream closed it while idle. Not the backend's fault; a fresh connection may retry.
    pub stale: bool,
}

impl SendError {
    /// A failure before the request left; `returned` goes back to the caller.
    pub fn unsent(error: ProxyError, returned: Option<RequestBody>) -> Self {
        SendError {
            error,
            returned,
            stale: false,
        }
    }
}

/// How the request body is framed towards the upstream.
enum RequestFraming {
    /// No body, or one whose length the client declared (`Content-Length` is forwarded).
    Length(u64),
    /// Length unknown in advance: chunked transfer coding.
    Chunked,
}

/// Sends one request on `conn` and reads the response head. The response body reads from the
/// connection; when it ends cleanly the connection is returned to `home`.
pub async fn send(
    conn: H1Conn,
    head: RequestHead<'_>,
    body: Option<RequestBody>,
    home: Option<Arc<Endpoint>>,
) -> Result<Response<H1Body>, SendError> {
    let mut exchange = Exchange::new(conn, head, body);
    std::future::poll_fn(|cx| exchange.poll(cx)).await?;
    exchange.into_response(home)
}

struct Exchange<'a> {
    conn: Option<H1Conn>,
    method: &'a Method,
    body: Option<RequestBody>,
    framing: RequestFraming,
    /// Trailers to send with the last chunk.
    trailers: Option<HeaderMap>,
    /// `conn.out[out_pos..]`, then `data`, then `tail` are queued for writing.
    out_pos: usize,
    data: Bytes,
    tail: &'static [u8],
    body_started: bool,
    write_done: bool,
    write_error: Option<io::Error>,
    /// The parsed response head, once complete.
    response: Option<ParsedHead>,
}

struct ParsedHead {
    status: StatusCode,
    headers: HeaderMap,
    keep_alive: bool,
}

impl<'a> Exchange<'a> {
    fn new(mut conn: H1Conn, head: RequestHead<'a>, body: Option<RequestBody>) -> Self {
        let declared = head
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let framing = match (&body, declared) {
            (_, Some(n)) => RequestFraming::Length(n),
            (None, None) => RequestFraming::Length(0),
            (Some(_), None) => RequestFraming::Chunked,
        };
        let out = &mut conn.out;
        out.clear();
        out.extend_from_slice(head.method.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(head.target.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        let mut field = |name: &HeaderName, value: &HeaderValue| {
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        };
        match head.rewrite {
            Some(rewrite) => rewrite.fields(head.headers).for_each(|(n, v)| field(n, v)),
            None => head.headers.iter().for_each(|(n, v)| field(n, v)),
        }
        if matches!(framing, RequestFraming::Chunked) {
            out.extend_from_slice(b"transfer-encoding: chunked\r\n");
        }
        out.extend_from_slice(b"\r\n");
        Exchange {
            conn: Some(conn),
            method: head.method,
            body,
            framing,
            trailers: None,
            out_pos: 0,
            data: Bytes::new(),
            tail: b"",
            body_started: false,
            write_done: false,
            write_error: None,
            response: None,
        }
    }

    fn queued(&self, conn: &H1Conn) -> usize {
        conn.out.len() - self.out_pos + self.data.len() + self.tail.len()
    }

    fn fail(&mut self, error: ProxyError) -> Poll<Result<(), SendError>> {
        let returned = if self.body_started {
            None
        } else {
            self.body.take()
        };
        Poll::Ready(Err(SendError {
            error,
            returned,
            stale: false,
        }))
    }

    /// Writes the request and reads the response head, both as far as the sockets allow. A
    /// response that arrives before the request body is sent ends the exchange (the upstream
    /// answered early, e.g. 413); the connection is then not reused.
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), SendError>> {
        if !self.write_done {
            match self.poll_write_side(cx) {
                Poll::Ready(Ok(())) => self.write_done = true,
                Poll::Ready(Err(WriteFailure::Client(e))) => return self.fail(e),
                Poll::Ready(Err(WriteFailure::Io(e))) => {
                    // The upstream may still have answered (an early 413 and a close): read on.
                    self.write_done = true;
                    self.write_error = Some(e);
                }
                Poll::Pending => {}
            }
        }
        self.poll_read_head(cx)
    }

    fn poll_write_side(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), WriteFailure>> {
        let mut conn = self.conn.take().expect("connection present while sending");
        let result = self.write_loop(&mut conn, cx);
        self.conn = Some(conn);
        result
    }

    fn write_loop(
        &mut self,
        conn: &mut H1Conn,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), WriteFailure>> {
        loop {
            // Gather body frames that are ready while the queue is small, so a small request
            // leaves in one write.
            if self.body.is_some() && self.data.is_empty() && self.queued(conn) < COALESCE {
                let body = self.body.as_mut().expect("checked above");
                match Pin::new(body).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        self.body_started = true;
                        self.queue_frame(conn, frame)?;
                        continue;
                    }
                    Poll::Ready(Some(Err(e))) => {
                        self.body_started = true;
                        return Poll::Ready(Err(WriteFailure::Client(client_body_error(&*e))));
                    }
                    Poll::Ready(None) => {
                        self.body = None;
                        self.queue_end(conn)?;
                        continue;
                    }
                    Poll::Pending => {}
                }
            }
            if self.queued(conn) > 0 {
                let n = {
                    let head = &conn.out[self.out_pos..];
                    let slices = [
                        io::IoSlice::new(head),
                        io::IoSlice::new(&self.data),
                        io::IoSlice::new(self.tail),
                    ];
                    match Pin::new(&mut conn.io).poll_write_vectored(cx, &slices) {
                        Poll::Ready(Ok(0)) => {
                            return Poll::Ready(Err(WriteFailure::Io(
                                io::ErrorKind::WriteZero.into(),
                            )));
                        }
                        Poll::Ready(Ok(n)) => n,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(WriteFailure::Io(e))),
                        Poll::Pending => return Poll::Pending,
                    }
                };
                self.advance(conn, n);
                continue;
            }
            if self.body.is_some() {
                // Nothing queued; the body's next frame is not ready yet.
                return Poll::Pending;
            }
            return match Pin::new(&mut conn.io).poll_flush(cx) {
                Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
                Poll::Ready(Err(e)) => Poll::Ready(Err(WriteFailure::Io(e))),
                Poll::Pending => Poll::Pending,
            };
        }
    }

    fn advance(&mut self, conn: &mut H1Conn, mut n: usize) {
        let head = conn.out.len() - self.out_pos;
        let step = n.min(head);
        self.out_pos += step;
        n -= step;
        if self.out_pos == conn.out.len() {
            conn.out.clear();
            self.out_pos = 0;
        }
        let step = n.min(self.data.len());
        self.data.advance(step);
        n -= step;
        self.tail = &self.tail[n.min(self.tail.len())..];
    }

    fn queue_frame(&mut self, conn: &mut H1Conn, frame: Frame<Bytes>) -> Result<(), WriteFailure> {
        let data = match frame.into_data() {
            Ok(d) => d,
            Err(frame) => {
                if let Ok(t) = frame.into_trailers() {
                    self.trailers = Some(t);
                }
                return Ok(());
            }
        };
        if data.is_empty() {
            return Ok(());
        }
        match &mut self.framing {
            RequestFraming::Length(left) => {
                let n = data.len() as u64;
                if n > *left {
                    return Err(WriteFailure::Client(ProxyError::new(
                        ErrorKind::ClientBodyError,
                        "request body longer than its Content-Length",
                    )));
                }
                *left -= n;
                self.queue_data(conn, data, b"");
            }
            RequestFraming::Chunked => {
                use std::io::Write;
                let _ = write!(conn.out, "{:x}\r\n", data.len());
                self.queue_data(conn, data, b"\r\n");
            }
        }
        Ok(())
    }

    fn queue_data(&mut self, conn: &mut H1Conn, data: Bytes, tail: &'static [u8]) {
        if data.len() <= COALESCE / 4 {
            conn.out.extend_from_slice(&data);
            conn.out.extend_from_slice(tail);
        } else {
            self.data = data;
            self.tail = tail;
        }
    }

    fn queue_end(&mut self, conn: &mut H1Conn) -> Result<(), WriteFailure> {
        match self.framing {
            RequestFraming::Length(0) => Ok(()),
            RequestFraming::Length(left) => Err(WriteFailure::Client(ProxyError::new(
                ErrorKind::ClientBodyError,
                format!("request body ended {left} bytes short of its Content-Length"),
            ))),
            RequestFraming::Chunked => {
                conn.out.extend_from_slice(b"0\r\n");
                if let Some(trailers) = self.trailers.take() {
                    for (name, value) in &trailers {
                        conn.out.extend_from_slice(name.as_str().as_bytes());
                        conn.out.extend_from_slice(b": ");
                        conn.out.extend_from_slice(value.as_bytes());
                        conn.out.extend_from_slice(b"\r\n");
                    }
                }
                conn.out.extend_from_slice(b"\r\n");
                Ok(())
            }
        }
    }

    fn poll_read_head(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), SendError>> {
        loop {
            let conn = self
                .conn
                .as_mut()
                .expect("connection present while sending");
            if !conn.buf.is_empty() {
                match parse_response_head(&mut conn.buf) {
                    Ok(Some(head)) => {
                        if head.status.is_informational()
                            && head.status != StatusCode::SWITCHING_PROTOCOLS
                        {
                            // 100 Continue and other interim responses are not forwarded.
                            continue;
                        }
                        self.response = Some(head);
                        return Poll::Ready(Ok(()));
                    }
                    Ok(None) => {}
                    Err(detail) => {
                        return self.fail(ProxyError::new(ErrorKind::UpstreamProtocol, detail));
                    }
                }
            }
            let conn = self
                .conn
                .as_mut()
                .expect("connection present while sending");
            let before = conn.buf.len();
            conn.buf.reserve(MIN_READ);
            match tokio_util::io::poll_read_buf(Pin::new(&mut conn.io), cx, &mut conn.buf) {
                Poll::Ready(Ok(0)) => {
                    let nothing_received = before == 0;
                    let stale = nothing_received && conn.reused;
                    let detail = match (&self.write_error, nothing_received) {
                        (Some(e), true) => format!("upstream connection failed: {e}"),
                        (_, true) => "upstream closed the connection without a response".into(),
                        (_, false) => "upstream closed the connection mid-head".into(),
                    };
                    return self.fail_read(detail, stale);
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => {
                    let stale = before == 0 && conn.reused;
                    return self.fail_read(format!("reading the response: {e}"), stale);
                }
                Poll::Pending => {
                    if let Some(e) = self.write_error.take() {
                        // The write failed and no answer is waiting: the request did not go out.
                        let stale = conn.reused;
                        return self.fail_read(format!("sending the request: {e}"), stale);
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    fn fail_read(&mut self, detail: String, stale: bool) -> Poll<Result<(), SendError>> {
        let returned = if self.body_started {
            None
        } else {
            self.body.take()
        };
        Poll::Ready(Err(SendError {
            error: ProxyError::new(ErrorKind::UpstreamProtocol, detail),
            returned,
            stale,
        }))
    }

    fn into_response(mut self, home: Option<Arc<Endpoint>>) -> Result<Response<H1Body>, SendError> {
        let head = self.response.take().expect("response head parsed");
        let mut conn = self.conn.take().expect("connection present after sending");
        conn.reused = true;
        // A request not sent completely leaves the connection unusable for another one.
        let request_complete = self.write_done && self.write_error.is_none() && self.body.is_none();
        let reusable = head.keep_alive && request_complete;
        let status = head.status;
        let decode = if status == StatusCode::SWITCHING_PROTOCOLS {
            Decode::Upgraded
        } else if *self.method == Method::HEAD
            || status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
        {
            Decode::Done
        } else {
            match response_framing(&head.headers) {
                Ok(d) => d,
                Err(detail) => {
                    return Err(SendError {
                        error: ProxyError::new(ErrorKind::UpstreamProtocol, detail),
                        returned: None,
                        stale: false,
                    });
                }
            }
        };
        let decode = match decode {
            Decode::Length(0) => Decode::Done,
            d => d,
        };
        let reusable = reusable && !matches!(decode, Decode::UntilClose | Decode::Upgraded);
        let mut headers = head.headers;
        if let Decode::Chunked(_) | Decode::UntilClose = decode {
            // The framing is re-done towards the client; a stray length must not survive.
            headers.remove(header::CONTENT_LENGTH);
        }
        let mut body = H1Body {
            conn: Some(conn),
            decode,
            reusable,
            home,
            trailers: None,
        };
        body.finish_if_done();
        let mut response = Response::new(body);
        *response.status_mut() = status;
        *response.version_mut() = Version::HTTP_11;
        *response.headers_mut() = headers;
        Ok(response)
    }
}

enum WriteFailure {
    /// The client's body failed (aborted, too large, wrong length).
    Client(ProxyError),
    Io(io::Error),
}

pub(crate) fn client_body_error(e: &(dyn std::error::Error + 'static)) -> ProxyError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(t) = s.downcast_ref::<BodyTooLarge>() {
            return ProxyError::new(ErrorKind::BodyTooLarge, t.to_string());
        }
        if let Some(t) = s.downcast_ref::<crate::body::BodyStalled>() {
            return ProxyError::new(ErrorKind::ClientBodyTimeout, t.to_string());
        }
        source = s.source();
    }
    ProxyError::new(ErrorKind::ClientBodyError, format!("client body: {e}"))
}

/// Parses a complete response head from the front of `buf` and removes it; `Ok(None)` when
/// more bytes are needed.
fn parse_response_head(buf: &mut BytesMut) -> Result<Option<ParsedHead>, String> {
    // Offsets of names and values, so that values can share the head's buffer once it is split
    // off (no copy per header).
    let mut spans = [(0u32, 0u32, 0u32, 0u32); MAX_RESPONSE_HEADERS];
    let (len, count, code, minor) = {
        let mut slots =
            [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_RESPONSE_HEADERS];
        let mut resp = httparse::Response::new(&mut []);
        let parsed = httparse::ParserConfig::default()
            .parse_response_with_uninit_headers(&mut resp, buf, &mut slots);
        let len = match parsed {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => {
                if buf.len() > MAX_RESPONSE_HEAD {
                    return Err(format!(
                        "response head larger than {MAX_RESPONSE_HEAD} bytes"
                    ));
                }
                return Ok(None);
            }
            Err(httparse::Error::TooManyHeaders) => {
                return Err(format!(
                    "more than {MAX_RESPONSE_HEADERS} response header fields"
                ));
            }
            Err(e) => return Err(format!("malformed response head: {e}")),
        };
        if len > MAX_RESPONSE_HEAD {
            return Err(format!(
                "response head larger than {MAX_RESPONSE_HEAD} bytes"
            ));
        }
        let base = buf.as_ptr() as usize;
        for (span, h) in spans.iter_mut().zip(resp.headers.iter()) {
            *span = (
                (h.name.as_ptr() as usize - base) as u32,
                h.name.len() as u32,
                (h.value.as_ptr() as usize - base) as u32,
                h.value.len() as u32,
            );
        }
        let code = resp.code.unwrap_or(0);
        (len, resp.headers.len(), code, resp.version.unwrap_or(1))
    };
    let head = buf.split_to(len).freeze();
    let status = StatusCode::from_u16(code).map_err(|_| format!("invalid status code {code}"))?;
    let mut headers = HeaderMap::with_capacity(count);
    let mut close = minor == 0;
    for &(ns, nl, vs, vl) in &spans[..count] {
        let name = &head[ns as usize..(ns + nl) as usize];
        let name = HeaderName::from_bytes(name).map_err(|_| {
            format!(
                "invalid response header name {:?}",
                String::from_utf8_lossy(name)
            )
        })?;
        let value = HeaderValue::from_maybe_shared(head.slice(vs as usize..(vs + vl) as usize))
            .map_err(|_| format!("invalid value of response header {name}"))?;
        if name == header::CONNECTION {
            for token in value
                .as_bytes()
                .split(|b| *b == b',')
                .map(|t| t.trim_ascii())
            {
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && minor == 0 {
                    close = false;
                }
            }
        }
        headers.append(name, value);
    }
    Ok(Some(ParsedHead {
        status,
        headers,
        keep_alive: !close,
    }))
}

/// How the response body is delimited (RFC 9112 §6.3), for responses that have one.
fn response_framing(headers: &HeaderMap) -> Result<Decode, String> {
    if headers.contains_key(header::TRANSFER_ENCODING) {
        let last = headers
            .get_all(header::TRANSFER_ENCODING)
            .iter()
            .flat_map(|v| v.as_bytes().split(|b| *b == b','))
            .map(|t| t.trim_ascii())
            .rfind(|t| !t.is_empty());
        return Ok(match last {
            Some(t) if t.eq_ignore_ascii_case(b"chunked") => Decode::Chunked(Chunk::Size),
            // Another final coding: the body runs until the upstream closes.
            _ => Decode::UntilClose,
        });
    }
    let mut lengths = headers.get_all(header::CONTENT_LENGTH).iter();
    match lengths.next() {
        None => Ok(Decode::UntilClose),
        Some(first) => {
            if lengths.any(|v| v != first) {
                return Err("conflicting Content-Length values in the response".into());
            }
            let text = first.as_bytes();
            if text.is_empty() || text.len() > 19 || !text.iter().all(u8::is_ascii_digit) {
                return Err("invalid Content-Length in the response".into());
            }
            let n = std::str::from_utf8(text)
                .ok()
                .and_then(|t| t.parse::<u64>().ok())
                .ok_or("invalid Content-Length in the response")?;
            Ok(Decode::Length(n))
        }
    }
}

/// Where the response body decoder stands.
enum Decode {
    Length(u64),
    Chunked(Chunk),
    UntilClose,
    Done,
    /// After a 101: the connection belongs to the tunnel.
    Upgraded,
}

#[derive(Clone, Copy)]
pub(crate) enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk's data.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer fields until an empty line; bytes seen so far.
    Trailers(usize),
}

/// A response body read from an upstream HTTP/1.1 connection.
pub struct H1Body {
    conn: Option<H1Conn>,
    decode: Decode,
    reusable: bool,
    home: Option<Arc<Endpoint>>,
    trailers: Option<HeaderMap>,
}

/// An error reading a response body from an upstream.
#[derive(Debug, thiserror::Error)]
#[error("upstream response body: {0}")]
pub struct UpstreamBodyError(String);

impl H1Body {
    /// After a 101: the upstream transport and the bytes already read past the head.
    pub fn into_upgraded(mut self) -> Option<(Io, Bytes)> {
        if !matches!(self.decode, Decode::Upgraded) {
            return None;
        }
        let conn = self.conn.take()?;
        Some((conn.io, conn.buf.freeze()))
    }

    /// When the body has been read completely: the connection goes back to its pool.
    fn finish_if_done(&mut self) {
        if !matches!(self.decode, Decode::Done) {
            return;
        }
        if let Some(mut conn) = self.conn.take()
            && self.reusable
            && conn.buf.is_empty()
            && let Some(home) = self.home.take()
        {
            conn.idle_since = Instant::now();
            home.checkin(conn);
        }
    }

    fn error(
        &mut self,
        detail: impl Into<String>,
    ) -> Poll<Option<Result<Frame<Bytes>, UpstreamBodyError>>> {
        self.conn = None;
        self.decode = Decode::Done;
        Poll::Ready(Some(Err(UpstreamBodyError(detail.into()))))
    }

    /// Reads more bytes into the buffer. `Ok(false)` at end of stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>, want: u64) -> Poll<io::Result<bool>> {
        let conn = self
            .conn
            .as_mut()
            .expect("connection present while reading");
        let want = (want.min(MAX_READ as u64) as usize).max(MIN_READ);
        conn.buf.reserve(want);
        match tokio_util::io::poll_read_buf(Pin::new(&mut conn.io), cx, &mut conn.buf) {
            Poll::Ready(Ok(0)) => Poll::Ready(Ok(false)),
            Poll::Ready(Ok(_)) => Poll::Ready(Ok(true)),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Body for H1Body {
    type Data = Bytes;
    type Error = UpstreamBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return match this.decode {
                    Decode::Done => {
                        Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))))
                    }
                    _ => Poll::Ready(None),
                };
            };
            match this.decode {
                // The tunnel owns the connection; the body itself is empty.
                Decode::Upgraded => return Poll::Ready(None),
                Decode::Done => {
                    this.finish_if_done();
                    this.conn = None;
                    continue;
                }
                Decode::Length(0) => {
                    this.decode = Decode::Done;
                    continue;
                }
                Decode::Length(left) => {
                    if !conn.buf.is_empty() {
                        let n = (conn.buf.len() as u64).min(left);
                        let data = conn.buf.split_to(n as usize).freeze();
                        this.decode = Decode::Length(left - n);
                        if left == n {
                            this.decode = Decode::Done;
                            this.finish_if_done();
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    match this.poll_fill(cx, left) {
                        Poll::Ready(Ok(true)) => continue,
                        Poll::Ready(Ok(false)) => {
                            return this
                                .error(format!("connection closed {left} bytes before the end"));
                        }
                        Poll::Ready(Err(e)) => return this.error(e.to_string()),
                        Poll::Pending => return Poll::Pending,
                    }
                }
                Decode::UntilClose => {
                    if !conn.buf.is_empty() {
                        let data = conn.buf.split().freeze();
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    match this.poll_fill(cx, MAX_READ as u64) {
                        Poll::Ready(Ok(true)) => continue,
                        Poll::Ready(Ok(false)) => {
                            this.decode = Decode::Done;
                            this.conn = None;
                            return Poll::Ready(None);
                        }
                        Poll::Ready(Err(e)) => return this.error(e.to_string()),
                        Poll::Pending => return Poll::Pending,
                    }
                }
                Decode::Chunked(state) => match step_chunked(&mut conn.buf, state) {
                    Ok(ChunkStep::Data(data, next)) => {
                        this.decode = Decode::Chunked(next);
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    Ok(ChunkStep::Next(next)) => {
                        this.decode = Decode::Chunked(next);
                        continue;
                    }
                    Ok(ChunkStep::Trailer(name, value, seen)) => {
                        this.trailers
                            .get_or_insert_with(HeaderMap::new)
                            .append(name, value);
                        if this
                            .trailers
                            .as_ref()
                            .is_some_and(|t| t.len() > MAX_RESPONSE_HEADERS)
                        {
                            return this.error("too many trailer fields");
                        }
                        this.decode = Decode::Chunked(Chunk::Trailers(seen));
                        continue;
                    }
                    Ok(ChunkStep::End) => {
                        this.decode = Decode::Done;
                        this.finish_if_done();
                        this.conn = None;
                        return Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))));
                    }
                    Ok(ChunkStep::NeedMore(want)) => match this.poll_fill(cx, want) {
                        Poll::Ready(Ok(true)) => continue,
                        Poll::Ready(Ok(false)) => {
                            return this.error("connection closed inside a chunked body");
                        }
                        Poll::Ready(Err(e)) => return this.error(e.to_string()),
                        Poll::Pending => return Poll::Pending,
                    },
                    Err(detail) => return this.error(detail),
                },
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(
            self.decode,
            Decode::Done | Decode::Length(0) | Decode::Upgraded
        ) && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match self.decode {
            Decode::Length(n) => SizeHint::with_exact(n),
            Decode::Done | Decode::Upgraded => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

pub(crate) enum ChunkStep {
    Data(Bytes, Chunk),
    Next(Chunk),
    Trailer(HeaderName, HeaderValue, usize),
    End,
    /// More bytes are needed (about this many would help).
    NeedMore(u64),
}

/// One step of chunked decoding over the buffered bytes.
pub(crate) fn step_chunked(buf: &mut BytesMut, state: Chunk) -> Result<ChunkStep, String> {
    match state {
        Chunk::Size => {
            let Some(end) = find_crlf(buf) else {
                if buf.len() > MAX_CHUNK_LINE {
                    return Err("chunk-size line too long".into());
                }
                return Ok(ChunkStep::NeedMore(MIN_READ as u64));
            };
            let line = &buf[..end];
            let digits_end = line
                .iter()
                .position(|b| !b.is_ascii_hexdigit())
                .unwrap_or(line.len());
            if digits_end == 0 || digits_end > 16 {
                return Err("invalid chunk size".into());
            }
            let rest = &line[digits_end..];
            // A bare LF or other control byte in the line would be read as a line end by
            // some parsers and not by others: refused.
            if rest
                .iter()
                .any(|b| (b.is_ascii_control() && *b != b'\t') || *b == 0x7f)
            {
                return Err("invalid chunk size line".into());
            }
            // Only whitespace before a chunk extension; extensions are skipped.
            let rest = rest.trim_ascii_start();
            if !rest.is_empty() && rest[0] != b';' {
                return Err("invalid chunk size".into());
            }
            let size = u64::from_str_radix(
                std::str::from_utf8(&line[..digits_end]).map_err(|_| "invalid chunk size")?,
                16,
            )
            .map_err(|_| "invalid chunk size")?;
            buf.advance(end + 2);
            Ok(ChunkStep::Next(if size == 0 {
                Chunk::Trailers(0)
            } else {
                Chunk::Data(size)
            }))
        }
        Chunk::Data(left) => {
            if buf.is_empty() {
                return Ok(ChunkStep::NeedMore(left));
            }
            let n = (buf.len() as u64).min(left);
            let data = buf.split_to(n as usize).freeze();
            let next = if n == left {
                Chunk::DataEnd
            } else {
                Chunk::Data(left - n)
            };
            Ok(ChunkStep::Data(data, next))
        }
        Chunk::DataEnd => {
            if buf.len() < 2 {
                return Ok(ChunkStep::NeedMore(2));
            }
            if &buf[..2] != b"\r\n" {
                return Err("missing CRLF after chunk data".into());
            }
            buf.advance(2);
            Ok(ChunkStep::Next(Chunk::Size))
        }
        Chunk::Trailers(seen) => {
            let Some(end) = find_crlf(buf) else {
                if seen + buf.len() > MAX_TRAILER_BYTES {
                    return Err("trailer section too large".into());
                }
                return Ok(ChunkStep::NeedMore(MIN_READ as u64));
            };
            if end == 0 {
                buf.advance(2);
                return Ok(ChunkStep::End);
            }
            let seen = seen + end + 2;
            if seen > MAX_TRAILER_BYTES {
                return Err("trailer section too large".into());
            }
            let line = buf.split_to(end).freeze();
            buf.advance(2);
            let colon = line
                .iter()
                .position(|b| *b == b':')
                .ok_or("malformed trailer field")?;
            let name =
                HeaderName::from_bytes(&line[..colon]).map_err(|_| "invalid trailer name")?;
            let value_start = colon + 1;
            let value = line.slice(value_start..);
            let trimmed_start = value_start
                + value
                    .iter()
                    .take_while(|b| **b == b' ' || **b == b'\t')
                    .count();
            let trimmed_end = line.len()
                - line[trimmed_start..]
                    .iter()
                    .rev()
                    .take_while(|b| **b == b' ' || **b == b'\t')
                    .count();
            let value = HeaderValue::from_maybe_shared(line.slice(trimmed_start..trimmed_end))
                .map_err(|_| "invalid trailer value")?;
            Ok(ChunkStep::Trailer(name, value, seen))
        }
    }
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

/// Upper bound on the time to wait for a response head, as a future wrapper.
pub async fn with_timeout<T>(
    limit: Duration,
    fut: impl std::future::Future<Output = Result<T, SendError>>,
) -> Result<T, SendError> {
    tokio::time::timeout(limit, fut).await.unwrap_or_else(|_| {
        Err(SendError {
            error: ProxyError::new(
                ErrorKind::UpstreamTimeout,
                format!("no response head within {limit:?}"),
            ),
            returned: None,
            stale: false,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8]) -> Result<(Vec<u8>, Option<HeaderMap>), String> {
        let mut buf = BytesMut::from(input);
        let mut state = Chunk::Size;
        let mut out = Vec::new();
        let mut trailers: Option<HeaderMap> = None;
        loop {
            match step_chunked(&mut buf, state)? {
                ChunkStep::Data(d, next) => {
                    out.extend_from_slice(&d);
                    state = next;
                }
                ChunkStep::Next(next) => state = next,
                ChunkStep::Trailer(n, v, seen) => {
                    trailers.get_or_insert_with(HeaderMap::new).append(n, v);
                    state = Chunk::Trailers(seen);
                }
                ChunkStep::End => return Ok((out, trailers)),
                ChunkStep::NeedMore(_) => return Err("incomplete".into()),
            }
        }
    }

    #[test]
    fn chunked_bodies_decode() {
        let (body, trailers) = decode_all(b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n").unwrap();
        assert_eq!(body, b"hello world");
        assert!(trailers.is_none());
        let (body, trailers) =
            decode_all(b"3\r\nabc\r\n0\r\ngrpc-status: 0\r\nx-t:  v \r\n\r\n").unwrap();
        assert_eq!(body, b"abc");
        let t = trailers.unwrap();
        assert_eq!(t["grpc-status"], "0");
        assert_eq!(t["x-t"], "v");
    }

    #[test]
    fn broken_chunked_bodies_are_errors() {
        for bad in [
            &b"zz\r\nabc\r\n0\r\n\r\n"[..],
            b"3\r\nabcX\r\n0\r\n\r\n",
            b"-1\r\n",
            b"11111111111111111\r\n",
            b"3 x\r\nabc\r\n",
            b"3\r\nabc\r\n0\r\nno colon\r\n\r\n",
            // A bare LF inside the size line (a line end to some parsers).
            b"3;a\nxyz\r\nabc\r\n0\r\n\r\n",
            b"3\x00\r\nabc\r\n0\r\n\r\n",
        ] {
            assert!(
                decode_all(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let mut long = vec![b'1'; MAX_CHUNK_LINE + 10];
        long.extend_from_slice(b"\r\n");
        let mut buf = BytesMut::from(&long[..MAX_CHUNK_LINE + 5]);
        assert!(step_chunked(&mut buf, Chunk::Size).is_err());
    }

    #[test]
    fn response_heads_parse() {
        let mut buf = BytesMut::from(
            &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\nx-a: 2\r\n\r\nhello"[..],
        );
        let head = parse_response_head(&mut buf).unwrap().unwrap();
        assert_eq!(head.status, 200);
        assert!(head.keep_alive);
        assert_eq!(head.headers.get_all("x-a").iter().count(), 2);
        assert_eq!(&buf[..], b"hello");
        assert!(matches!(
            response_framing(&head.headers),
            Ok(Decode::Length(5))
        ));

        let mut buf = BytesMut::from(&b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"[..]);
        assert!(!parse_response_head(&mut buf).unwrap().unwrap().keep_alive);
        let mut buf = BytesMut::from(&b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n"[..]);
        assert!(parse_response_head(&mut buf).unwrap().unwrap().keep_alive);
        let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"[..]);
        assert!(!parse_response_head(&mut buf).unwrap().unwrap().keep_alive);

        let mut partial = BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Le"[..]);
        assert!(parse_response_head(&mut partial).unwrap().is_none());
        let mut bad = BytesMut::from(&b"HTTP/1.1 2x0 OK\r\n\r\n"[..]);
        assert!(parse_response_head(&mut bad).is_err());
        let mut huge = BytesMut::from(&b"HTTP/1.1 200 OK\r\n"[..]);
        huge.extend_from_slice(&vec![b'a'; MAX_RESPONSE_HEAD + 1]);
        assert!(parse_response_head(&mut huge).is_err());
        let mut many = BytesMut::from(&b"HTTP/1.1 200 OK\r\n"[..]);
        for i in 0..=MAX_RESPONSE_HEADERS {
            many.extend_from_slice(format!("x-{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert!(parse_response_head(&mut many).is_err());
    }

    #[test]
    fn response_framing_follows_rfc_9112() {
        let mut h = HeaderMap::new();
        assert!(matches!(response_framing(&h), Ok(Decode::UntilClose)));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("gzip, chunked"),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("10"));
        assert!(matches!(response_framing(&h), Ok(Decode::Chunked(_))));
        h.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("gzip"));
        assert!(matches!(response_framing(&h), Ok(Decode::UntilClose)));
        let mut h = HeaderMap::new();
        h.append(header::CONTENT_LENGTH, HeaderValue::from_static("10"));
        h.append(header::CONTENT_LENGTH, HeaderValue::from_static("11"));
        assert!(response_framing(&h).is_err());
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("-1"));
        assert!(response_framing(&h).is_err());
    }
}

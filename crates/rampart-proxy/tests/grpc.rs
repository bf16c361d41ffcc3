//! gRPC through Rampart, with a real tonic server and client: unary and bidirectional
//! streaming calls over HTTP/2 (h2c from the client, HTTP/2 to the upstream), with the status,
//! message and custom metadata carried in trailers arriving intact.

mod common;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use rampart_proxy::Proxy;

use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

#[derive(Clone, PartialEq, prost::Message)]
struct Note {
    #[prost(string, tag = "1")]
    text: String,
    #[prost(uint32, tag = "2")]
    seq: u32,
    #[prost(bytes = "vec", tag = "3")]
    payload: Vec<u8>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type NoteStream = Pin<Box<dyn futures_util::Stream<Item = Result<Note, Status>> + Send>>;

/// `test.Notes/Echo` (unary) answers with the note and the metadata the request carried;
/// a note reading "fail" gets `INVALID_ARGUMENT` with metadata. `test.Notes/Chat`
/// (bidirectional) answers every note as it comes; a note reading "abort" ends the call with
/// `ABORTED` and metadata in the trailers after the answers so far.
#[derive(Clone)]
struct Notes;

impl tonic::server::NamedService for Notes {
    const NAME: &'static str = "test.Notes";
}

struct Echo;

impl tonic::server::UnaryService<Note> for Echo {
    type Response = Note;
    type Future = BoxFuture<Result<tonic::Response<Note>, Status>>;
    fn call(&mut self, request: tonic::Request<Note>) -> Self::Future {
        Box::pin(async move {
            let via = request
                .metadata()
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let te = request.metadata().get("te").cloned();
            let note = request.into_inner();
            if note.text == "fail" {
                let mut status = Status::invalid_argument("the note says fail");
                status
                    .metadata_mut()
                    .insert("x-reason", MetadataValue::from_static("asked-to"));
                return Err(status);
            }
            let mut response = tonic::Response::new(Note {
                text: format!("{} via {via}", note.text),
                seq: note.seq + 1,
                payload: note.payload,
            });
            response
                .metadata_mut()
                .insert("x-served-by", MetadataValue::from_static("notes"));
            if let Some(te) = te {
                response.metadata_mut().insert("x-te-seen", te);
            }
            Ok(response)
        })
    }
}

struct Chat;

impl tonic::server::StreamingService<Note> for Chat {
    type Response = Note;
    type ResponseStream = NoteStream;
    type Future = BoxFuture<Result<tonic::Response<NoteStream>, Status>>;
    fn call(&mut self, request: tonic::Request<tonic::Streaming<Note>>) -> Self::Future {
        Box::pin(async move {
            let mut incoming = request.into_inner();
            let (tx, rx) = tokio::sync::mpsc::channel(4);
            tokio::spawn(async move {
                while let Some(note) = incoming.next().await {
                    let reply = match note {
                        Ok(note) if note.text == "abort" => {
                            let mut status = Status::aborted("the client asked to abort");
                            status
                                .metadata_mut()
                                .insert("x-answered", MetadataValue::from(note.seq));
                            Err(status)
                        }
                        Ok(note) => Ok(Note {
                            text: note.text.to_uppercase(),
                            seq: note.seq,
                            payload: Vec::new(),
                        }),
                        Err(status) => Err(status),
                    };
                    let last = reply.is_err();
                    if tx.send(reply).await.is_err() || last {
                        return;
                    }
                }
            });
            let stream: NoteStream = Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx));
            Ok(tonic::Response::new(stream))
        })
    }
}

impl tower_service::Service<http::Request<tonic::body::Body>> for Notes {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(async move {
            let codec = tonic_prost::ProstCodec::<Note, Note>::default();
            let mut grpc = tonic::server::Grpc::new(codec);
            Ok(match request.uri().path() {
                "/test.Notes/Echo" => grpc.unary(Echo, request).await,
                "/test.Notes/Chat" => grpc.streaming(Chat, request).await,
                _ => Status::unimplemented("no such method").into_http(),
            })
        })
    }
}

async fn start_grpc_server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(tonic::transport::Server::builder().serve_with_incoming(
        Notes,
        tokio_stream::wrappers::TcpListenerStream::new(listener),
    ));
    addr
}

async fn proxy_to(backend: SocketAddr) -> (Arc<Proxy>, SocketAddr) {
    let config = fill(
        r#"
[[listeners]]
name = "web"
address = "127.0.0.1:0"

[[pools]]
name = "grpc"
protocol = "http2"
backends = [{ address = "{b}" }]

[[routes]]
name = "notes"
match = { path_prefix = "/test.Notes/" }
pool = "grpc"

[observability]
access_log = "off"
"#,
        &HashMap::from([("b", backend.to_string())]),
    );
    start_proxy(&config).await
}

async fn client(addr: SocketAddr) -> tonic::client::Grpc<tonic::transport::Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .expect("connect to Rampart");
    tonic::client::Grpc::new(channel)
}

fn codec() -> tonic_prost::ProstCodec<Note, Note> {
    tonic_prost::ProstCodec::default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_calls_pass_with_metadata_and_status() {
    let backend = start_grpc_server().await;
    let (_proxy, addr) = proxy_to(backend).await;
    let mut grpc = client(addr).await;

    // A call with a 1 MiB payload both ways.
    grpc.ready().await.unwrap();
    let payload: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    let response = grpc
        .unary(
            tonic::Request::new(Note {
                text: "hello".into(),
                seq: 41,
                payload: payload.clone(),
            }),
            http::uri::PathAndQuery::from_static("/test.Notes/Echo"),
            codec(),
        )
        .await
        .expect("unary call through Rampart");
    assert_eq!(
        response.metadata().get("x-served-by").unwrap(),
        "notes",
        "response metadata"
    );
    // `TE: trailers` reached the server (gRPC servers may insist on it).
    assert_eq!(response.metadata().get("x-te-seen").unwrap(), "trailers");
    let note = response.into_inner();
    assert_eq!(note.text, "hello via 127.0.0.1", "forwarded for the client");
    assert_eq!(note.seq, 42);
    assert!(note.payload == payload, "payload changed on the way");

    // An error status with metadata (a trailers-only response).
    grpc.ready().await.unwrap();
    let status = grpc
        .unary(
            tonic::Request::new(Note {
                text: "fail".into(),
                ..Default::default()
            }),
            http::uri::PathAndQuery::from_static("/test.Notes/Echo"),
            codec(),
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(status.message(), "the note says fail");
    assert_eq!(status.metadata().get("x-reason").unwrap(), "asked-to");

    // A method the server does not have.
    grpc.ready().await.unwrap();
    let status = grpc
        .unary::<Note, Note, _>(
            tonic::Request::new(Note::default()),
            http::uri::PathAndQuery::from_static("/test.Notes/Missing"),
            codec(),
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bidirectional_streams_interleave_and_end_with_trailers() {
    let backend = start_grpc_server().await;
    let (_proxy, addr) = proxy_to(backend).await;
    let mut grpc = client(addr).await;

    // Ping-pong: each answer arrives before the next note is sent, which only works if
    // neither direction is buffered.
    let (tx, rx) = tokio::sync::mpsc::channel::<Note>(1);
    grpc.ready().await.unwrap();
    let response = grpc
        .streaming(
            tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx)),
            http::uri::PathAndQuery::from_static("/test.Notes/Chat"),
            codec(),
        )
        .await;
    let mut answers = response
        .expect("stream opened through Rampart")
        .into_inner();
    for seq in 0..20u32 {
        tx.send(Note {
            text: format!("note {seq}"),
            seq,
            payload: Vec::new(),
        })
        .await
        .unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(5), answers.message())
            .await
            .expect("answer in time: a direction is buffered")
            .unwrap()
            .expect("an answer");
        assert_eq!(answer.text, format!("NOTE {seq}"));
        assert_eq!(answer.seq, seq);
    }
    // The client ends its side; the server ends the call with OK in the trailers.
    drop(tx);
    assert!(answers.message().await.unwrap().is_none());
    let trailers = answers.trailers().await.unwrap();
    assert!(trailers.is_some(), "no trailers");

    // A call that ends with an error status and metadata in the trailers, after answers.
    let (tx, rx) = tokio::sync::mpsc::channel::<Note>(4);
    grpc.ready().await.unwrap();
    let mut answers = grpc
        .streaming(
            tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx)),
            http::uri::PathAndQuery::from_static("/test.Notes/Chat"),
            codec(),
        )
        .await
        .unwrap()
        .into_inner();
    for (seq, text) in ["a", "b", "abort"].iter().enumerate() {
        tx.send(Note {
            text: text.to_string(),
            seq: seq as u32,
            payload: Vec::new(),
        })
        .await
        .unwrap();
    }
    assert_eq!(answers.message().await.unwrap().unwrap().text, "A");
    assert_eq!(answers.message().await.unwrap().unwrap().text, "B");
    let status = answers.message().await.unwrap_err();
    assert_eq!(status.code(), Code::Aborted, "{status:?}");
    assert_eq!(status.message(), "the client asked to abort");
    assert_eq!(status.metadata().get("x-answered").unwrap(), "2");
}

/// Many concurrent calls share one client connection and one upstream connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_multiplex() {
    let backend = start_grpc_server().await;
    let (_proxy, addr) = proxy_to(backend).await;
    let grpc = client(addr).await;
    let calls = (0..50u32).map(|seq| {
        let mut grpc = grpc.clone();
        async move {
            grpc.ready().await.unwrap();
            grpc.unary::<Note, Note, _>(
                tonic::Request::new(Note {
                    text: format!("c{seq}"),
                    seq,
                    payload: vec![seq as u8; 10_000],
                }),
                http::uri::PathAndQuery::from_static("/test.Notes/Echo"),
                codec(),
            )
            .await
            .map(|r| r.into_inner())
        }
    });
    let results = futures_util::future::join_all(calls).await;
    for (seq, result) in results.into_iter().enumerate() {
        let note = result.unwrap_or_else(|s| panic!("call {seq}: {s:?}"));
        assert_eq!(note.seq, seq as u32 + 1);
        assert_eq!(note.payload, vec![seq as u8; 10_000]);
    }
}

//! The PROXY protocol (HAProxy's v1 text and v2 binary headers): reading the header a trusted
//! load balancer puts before a client's bytes, and writing one towards upstreams that want it.
//! Only the header is consumed from a client connection; whatever follows (TLS, HTTP) is left
//! for the next layer.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ppp::v2;
use rampart_config::ProxyProtocolVersion;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

const V1_PREFIX: &[u8] = b"PROXY ";
/// Longest v1 header, CRLF included (the specification's worst case).
const V1_MAX: usize = 107;
const V2_PREFIX: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";
/// Largest v2 header accepted: the fixed part, addresses and a generous TLV section.
const V2_MAX: usize = 16 + 2048;
/// Pause before peeking again when a header has only partly arrived.
const PARTIAL_PAUSE: Duration = Duration::from_millis(2);

/// The original connection a header describes: the client and the address it connected to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addresses {
    pub source: SocketAddr,
    pub destination: SocketAddr,
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("no PROXY protocol header")]
    Missing,
    #[error("malformed PROXY protocol header: {0}")]
    Malformed(String),
    #[error("connection closed inside the PROXY protocol header")]
    Closed,
    #[error("reading the PROXY protocol header: {0}")]
    Io(std::io::Error),
}

impl ReadError {
    /// Short stable label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            ReadError::Missing => "missing",
            ReadError::Malformed(_) => "malformed",
            ReadError::Closed | ReadError::Io(_) => "closed",
        }
    }
}

/// What the first bytes of a connection can be.
#[derive(Debug, PartialEq, Eq)]
enum Start {
    V1,
    V2,
    Other,
    NeedMore,
}

fn classify(prefix: &[u8]) -> Start {
    for (signature, kind) in [(V1_PREFIX, Start::V1), (V2_PREFIX, Start::V2)] {
        let n = prefix.len().min(signature.len());
        if prefix[..n] == signature[..n] {
            return if n == signature.len() {
                kind
            } else {
                Start::NeedMore
            };
        }
    }
    Start::Other
}

/// Whether the connection starts with a PROXY header, without consuming anything. Waits until
/// enough bytes have arrived to tell; the caller bounds the wait.
pub async fn starts_with_header(stream: &TcpStream) -> Result<bool, ReadError> {
    let mut buf = [0u8; 16];
    loop {
        let n = stream.peek(&mut buf).await.map_err(ReadError::Io)?;
        if n == 0 {
            return Ok(false);
        }
        match classify(&buf[..n]) {
            Start::V1 | Start::V2 => return Ok(true),
            Start::Other => return Ok(false),
            Start::NeedMore => tokio::time::sleep(PARTIAL_PAUSE).await,
        }
    }
}

/// Reads the PROXY header at the start of `stream` and nothing after it. `Ok(None)` for a
/// header that carries no addresses (v1 `UNKNOWN`, v2 `LOCAL`: the sender's own check).
pub async fn read_header(stream: &mut TcpStream) -> Result<Option<Addresses>, ReadError> {
    let mut head = [0u8; 16];
    let kind = loop {
        let n = stream.peek(&mut head).await.map_err(ReadError::Io)?;
        if n == 0 {
            return Err(ReadError::Closed);
        }
        match classify(&head[..n]) {
            Start::NeedMore => tokio::time::sleep(PARTIAL_PAUSE).await,
            Start::Other => return Err(ReadError::Missing),
            kind => break kind,
        }
    };
    if kind == Start::V2 {
        read_v2(stream).await
    } else {
        read_v1(stream).await
    }
}

async fn read_v2(stream: &mut TcpStream) -> Result<Option<Addresses>, ReadError> {
    let mut fixed = [0u8; 16];
    stream.read_exact(&mut fixed).await.map_err(closed_or_io)?;
    let total = 16 + usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    if total > V2_MAX {
        return Err(ReadError::Malformed(format!(
            "v2 header of {total} bytes (at most {V2_MAX})"
        )));
    }
    let mut whole = vec![0u8; total];
    whole[..16].copy_from_slice(&fixed);
    stream
        .read_exact(&mut whole[16..])
        .await
        .map_err(closed_or_io)?;
    let header =
        v2::Header::try_from(&whole[..]).map_err(|e| ReadError::Malformed(e.to_string()))?;
    if header.command == v2::Command::Local {
        return Ok(None);
    }
    Ok(match header.addresses {
        v2::Addresses::IPv4(a) => Some(Addresses {
            source: SocketAddr::from((a.source_address, a.source_port)),
            destination: SocketAddr::from((a.destination_address, a.destination_port)),
        }),
        v2::Addresses::IPv6(a) => Some(Addresses {
            source: SocketAddr::from((a.source_address, a.source_port)),
            destination: SocketAddr::from((a.destination_address, a.destination_port)),
        }),
        // No address, or a UNIX socket: the connection's own addresses stand.
        v2::Addresses::Unspecified | v2::Addresses::Unix(_) => None,
    })
}

async fn read_v1(stream: &mut TcpStream) -> Result<Option<Addresses>, ReadError> {
    let mut buf = [0u8; V1_MAX];
    let end = loop {
        let n = stream.peek(&mut buf).await.map_err(ReadError::Io)?;
        if n == 0 {
            return Err(ReadError::Closed);
        }
        if let Some(i) = buf[..n].windows(2).position(|w| w == b"\r\n") {
            break i + 2;
        }
        if n >= V1_MAX {
            return Err(ReadError::Malformed(format!(
                "v1 header without CRLF in its first {V1_MAX} bytes"
            )));
        }
        tokio::time::sleep(PARTIAL_PAUSE).await;
    };
    let header =
        ppp::v1::Header::try_from(&buf[..end]).map_err(|e| ReadError::Malformed(e.to_string()))?;
    let addresses = match header.addresses {
        ppp::v1::Addresses::Tcp4(a) => Some(Addresses {
            source: SocketAddr::from((a.source_address, a.source_port)),
            destination: SocketAddr::from((a.destination_address, a.destination_port)),
        }),
        ppp::v1::Addresses::Tcp6(a) => Some(Addresses {
            source: SocketAddr::from((a.source_address, a.source_port)),
            destination: SocketAddr::from((a.destination_address, a.destination_port)),
        }),
        ppp::v1::Addresses::Unknown => None,
    };
    stream
        .read_exact(&mut buf[..end])
        .await
        .map_err(closed_or_io)?;
    Ok(addresses)
}

fn closed_or_io(e: std::io::Error) -> ReadError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        ReadError::Closed
    } else {
        ReadError::Io(e)
    }
}

/// The header that starts an upstream connection made for a client connection from
/// `addresses`; `None` for a connection Rampart makes for itself (a health check).
pub fn encode(version: ProxyProtocolVersion, addresses: Option<Addresses>) -> Vec<u8> {
    let pair = addresses.map(|a| same_family(a.source, a.destination));
    match version {
        ProxyProtocolVersion::V1 => match pair {
            Some(pair) => ppp::v1::Addresses::from(pair).to_string().into_bytes(),
            None => ppp::v1::Addresses::Unknown.to_string().into_bytes(),
        },
        ProxyProtocolVersion::V2 => {
            let builder = match pair {
                Some(pair) => v2::Builder::with_addresses(
                    v2::Version::Two | v2::Command::Proxy,
                    v2::Protocol::Stream,
                    pair,
                ),
                None => v2::Builder::with_addresses(
                    v2::Version::Two | v2::Command::Local,
                    v2::Protocol::Unspecified,
                    v2::Addresses::Unspecified,
                ),
            };
            builder
                .build()
                .expect("a header without TLVs always fits its buffer")
        }
    }
}

/// Both addresses in one family (a header has one): IPv4 ones become IPv4-mapped IPv6 when the
/// other side is IPv6.
fn same_family(source: SocketAddr, destination: SocketAddr) -> (SocketAddr, SocketAddr) {
    fn to_v6(a: SocketAddr) -> SocketAddr {
        match a.ip() {
            IpAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), a.port()),
            IpAddr::V6(_) => a,
        }
    }
    if source.is_ipv4() == destination.is_ipv4() {
        (source, destination)
    } else {
        (to_v6(source), to_v6(destination))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_classified() {
        assert_eq!(classify(b""), Start::NeedMore);
        assert_eq!(classify(b"PRO"), Start::NeedMore);
        assert_eq!(classify(b"PROXY TCP4"), Start::V1);
        assert_eq!(classify(b"POST / HTTP/1.1"), Start::Other);
        assert_eq!(classify(b"\r\n\r\n\0"), Start::NeedMore);
        assert_eq!(classify(b"\r\n\r\n\0\r\nQUIT\n\x21"), Start::V2);
        assert_eq!(classify(b"\x16\x03\x01"), Start::Other);
    }

    #[test]
    fn encoded_headers_parse_back() {
        let a = Addresses {
            source: "203.0.113.7:51000".parse().unwrap(),
            destination: "192.0.2.1:443".parse().unwrap(),
        };
        let v1 = encode(ProxyProtocolVersion::V1, Some(a));
        assert_eq!(v1, b"PROXY TCP4 203.0.113.7 192.0.2.1 51000 443\r\n");
        let v2 = encode(ProxyProtocolVersion::V2, Some(a));
        let parsed = v2::Header::try_from(&v2[..]).unwrap();
        assert_eq!(parsed.command, v2::Command::Proxy);
        assert_eq!(
            parsed.addresses,
            v2::Addresses::from((a.source, a.destination))
        );
        assert_eq!(encode(ProxyProtocolVersion::V1, None), b"PROXY UNKNOWN\r\n");
        let local = encode(ProxyProtocolVersion::V2, None);
        assert_eq!(
            v2::Header::try_from(&local[..]).unwrap().command,
            v2::Command::Local
        );
        let mixed = Addresses {
            source: "203.0.113.7:51000".parse().unwrap(),
            destination: "[2001:db8::1]:443".parse().unwrap(),
        };
        assert_eq!(
            encode(ProxyProtocolVersion::V1, Some(mixed)),
            b"PROXY TCP6 ::ffff:203.0.113.7 2001:db8::1 51000 443\r\n"
        );
    }
}

//! Client-side connections: TCP (frames back to back) or WebSocket (one
//! frame per binary message), each plain or over TLS (`tls://`, `wss://`;
//! feature `tls`, rustls with the platform's roots or a given CA).

use bytes::BytesMut;
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use imkit_proto::{Frame, FrameCodec, FrameLimits, ProtoError};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::codec::{FramedRead, FramedWrite};

use crate::ClientError;

type Ws = WebSocketStream<Stream>;

/// Where to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerAddr {
    /// `host:port` or `tcp://host:port`.
    Tcp(String),
    /// `tls://host:port`: TCP framing inside TLS.
    Tls(String),
    /// `ws://host:port/path` or `wss://host:port/path`.
    WebSocket(String),
}

impl ServerAddr {
    /// Parses an address.
    pub fn parse(s: &str) -> Result<ServerAddr, ClientError> {
        if s.starts_with("ws://") || s.starts_with("wss://") {
            Ok(ServerAddr::WebSocket(s.to_owned()))
        } else if let Some(rest) = s.strip_prefix("tls://") {
            Ok(ServerAddr::Tls(rest.to_owned()))
        } else if let Some(rest) = s.strip_prefix("tcp://") {
            Ok(ServerAddr::Tcp(rest.to_owned()))
        } else if s.contains(':') && !s.contains('/') {
            Ok(ServerAddr::Tcp(s.to_owned()))
        } else {
            Err(ClientError::InvalidAddress(s.to_owned()))
        }
    }
}

impl std::fmt::Display for ServerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServerAddr::Tcp(a) => write!(f, "tcp://{a}"),
            ServerAddr::Tls(a) => write!(f, "tls://{a}"),
            ServerAddr::WebSocket(a) => f.write_str(a),
        }
    }
}

impl ServerAddr {
    /// Whether connecting needs TLS.
    pub fn is_tls(&self) -> bool {
        match self {
            ServerAddr::Tcp(_) => false,
            ServerAddr::Tls(_) => true,
            ServerAddr::WebSocket(url) => url.starts_with("wss://"),
        }
    }

    /// The host name a TLS certificate must name.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    fn host(&self) -> &str {
        let rest = match self {
            ServerAddr::Tcp(a) | ServerAddr::Tls(a) => a.as_str(),
            ServerAddr::WebSocket(url) => url.split_once("://").map_or(url.as_str(), |(_, r)| r),
        };
        let authority = rest.split('/').next().unwrap_or(rest);
        match authority.strip_prefix('[') {
            // An IPv6 literal: [::1]:7400.
            Some(v6) => v6.split(']').next().unwrap_or(v6),
            None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
        }
    }

    /// `host:port` to open the TCP connection to.
    fn socket_addr(&self) -> String {
        match self {
            ServerAddr::Tcp(a) | ServerAddr::Tls(a) => a.clone(),
            ServerAddr::WebSocket(url) => {
                let (scheme, rest) = url.split_once("://").unwrap_or(("ws", url));
                let authority = rest.split('/').next().unwrap_or(rest);
                let has_port = authority
                    .rsplit_once(':')
                    .is_some_and(|(_, p)| p.parse::<u16>().is_ok() && !authority.ends_with(']'));
                if has_port {
                    authority.to_owned()
                } else if scheme == "wss" {
                    format!("{authority}:443")
                } else {
                    format!("{authority}:80")
                }
            }
        }
    }
}

/// A connection to the server, plain or TLS: what a WebSocket runs over.
pub(crate) enum Stream {
    Plain(TcpStream),
    #[cfg(feature = "tls")]
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

macro_rules! each_stream {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Stream::Plain($s) => {
                let $s = std::pin::Pin::new($s);
                $e
            }
            #[cfg(feature = "tls")]
            Stream::Tls($s) => {
                let $s = std::pin::Pin::new($s.as_mut());
                $e
            }
        }
    };
}

impl tokio::io::AsyncRead for Stream {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        each_stream!(self, s => s.poll_read(cx, buf))
    }
}

impl tokio::io::AsyncWrite for Stream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        each_stream!(self, s => s.poll_write(cx, buf))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        each_stream!(self, s => s.poll_flush(cx))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        each_stream!(self, s => s.poll_shutdown(cx))
    }
}

/// The halves of TCP framing inside TLS.
#[cfg(feature = "tls")]
type TlsRead = tokio::io::ReadHalf<tokio_rustls::client::TlsStream<TcpStream>>;
#[cfg(feature = "tls")]
type TlsWrite = tokio::io::WriteHalf<tokio_rustls::client::TlsStream<TcpStream>>;

pub(crate) enum Reader {
    Tcp(FramedRead<OwnedReadHalf, FrameCodec>),
    #[cfg(feature = "tls")]
    Tls(FramedRead<TlsRead, FrameCodec>),
    Ws(SplitStream<Ws>, usize),
}

pub(crate) enum Writer {
    Tcp(FramedWrite<OwnedWriteHalf, FrameCodec>),
    #[cfg(feature = "tls")]
    Tls(FramedWrite<TlsWrite, FrameCodec>),
    Ws(SplitSink<Ws, Message>, usize),
}

/// Where to connect and, for TLS, whom to trust.
#[derive(Clone)]
pub(crate) struct Endpoint {
    pub(crate) addr: ServerAddr,
    #[cfg(feature = "tls")]
    tls: Option<tokio_rustls::TlsConnector>,
}

impl Endpoint {
    /// Checks the address and, for a TLS one, loads the trusted roots.
    pub(crate) fn new(
        addr: ServerAddr,
        options: &crate::ClientOptions,
    ) -> Result<Endpoint, ClientError> {
        #[cfg(feature = "tls")]
        let tls = match addr.is_tls() {
            true => Some(crate::tls::connector(&options.tls_roots)?),
            false => None,
        };
        #[cfg(not(feature = "tls"))]
        if addr.is_tls() {
            let _ = options;
            return Err(ClientError::Tls(
                "this build has no tls feature; rebuild imkit-client with it".into(),
            ));
        }
        Ok(Endpoint {
            addr,
            #[cfg(feature = "tls")]
            tls,
        })
    }

    /// Opens the TCP connection and, for a TLS address, shakes hands.
    async fn open(&self) -> Result<Stream, ClientError> {
        let err = |e: &dyn std::fmt::Display| ClientError::Connect {
            addr: self.addr.to_string(),
            message: e.to_string(),
        };
        let stream = TcpStream::connect(self.addr.socket_addr())
            .await
            .map_err(|e| err(&e))?;
        let _ = stream.set_nodelay(true);
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            let name = rustls_pki_types::ServerName::try_from(self.addr.host().to_owned())
                .map_err(|e| err(&e))?;
            let s = tls.connect(name, stream).await.map_err(|e| {
                ClientError::Tls(format!("handshake with {} failed: {e}", self.addr))
            })?;
            return Ok(Stream::Tls(Box::new(s)));
        }
        Ok(Stream::Plain(stream))
    }
}

pub(crate) async fn connect(endpoint: &Endpoint) -> Result<(Reader, Writer), ClientError> {
    let limits = FrameLimits::client();
    let addr = &endpoint.addr;
    let err = |e: &dyn std::fmt::Display| ClientError::Connect {
        addr: addr.to_string(),
        message: e.to_string(),
    };
    let stream = endpoint.open().await?;
    match (addr, stream) {
        (ServerAddr::Tcp(_) | ServerAddr::Tls(_), Stream::Plain(stream)) => {
            let (rd, wr) = stream.into_split();
            Ok((
                Reader::Tcp(FramedRead::new(rd, FrameCodec::new(limits))),
                Writer::Tcp(FramedWrite::new(wr, FrameCodec::new(limits))),
            ))
        }
        #[cfg(feature = "tls")]
        (ServerAddr::Tcp(_) | ServerAddr::Tls(_), Stream::Tls(stream)) => {
            let (rd, wr) = tokio::io::split(*stream);
            Ok((
                Reader::Tls(FramedRead::new(rd, FrameCodec::new(limits))),
                Writer::Tls(FramedWrite::new(wr, FrameCodec::new(limits))),
            ))
        }
        (ServerAddr::WebSocket(url), stream) => {
            let (ws, _) = tokio_tungstenite::client_async(url.as_str(), stream)
                .await
                .map_err(|e| err(&e))?;
            let (wr, rd) = ws.split();
            Ok((
                Reader::Ws(rd, limits.max_inbound),
                Writer::Ws(wr, limits.max_outbound),
            ))
        }
    }
}

impl Reader {
    /// The next frame; `None` when the connection ended.
    pub(crate) async fn next(&mut self) -> Option<Result<Frame, String>> {
        match self {
            Reader::Tcp(r) => r
                .next()
                .await
                .map(|r| r.map_err(|e: ProtoError| e.to_string())),
            #[cfg(feature = "tls")]
            Reader::Tls(r) => r
                .next()
                .await
                .map(|r| r.map_err(|e: ProtoError| e.to_string())),
            Reader::Ws(r, max) => loop {
                match r.next().await? {
                    Err(e) => return Some(Err(e.to_string())),
                    Ok(Message::Binary(data)) => {
                        let mut buf = BytesMut::from(&data[..]);
                        return Some(match Frame::decode(&mut buf, *max) {
                            Ok(Some(f)) if buf.is_empty() => Ok(f),
                            Ok(_) => Err("websocket message is not exactly one frame".into()),
                            Err(e) => Err(e.to_string()),
                        });
                    }
                    Ok(Message::Close(_)) => return None,
                    Ok(_) => continue,
                }
            },
        }
    }
}

impl Writer {
    /// Sends one frame.
    pub(crate) async fn send(&mut self, frame: Frame) -> Result<(), String> {
        match self {
            Writer::Tcp(w) => w.send(frame).await.map_err(|e| e.to_string()),
            #[cfg(feature = "tls")]
            Writer::Tls(w) => w.send(frame).await.map_err(|e| e.to_string()),
            Writer::Ws(w, max) => {
                let bytes = frame.to_bytes(*max).map_err(|e| e.to_string())?;
                w.send(Message::Binary(bytes))
                    .await
                    .map_err(|e| e.to_string())
            }
        }
    }

    /// Closes the connection.
    pub(crate) async fn close(&mut self) {
        match self {
            Writer::Tcp(w) => {
                let _ = SinkExt::<&Frame>::close(w).await;
            }
            #[cfg(feature = "tls")]
            Writer::Tls(w) => {
                let _ = SinkExt::<&Frame>::close(w).await;
            }
            Writer::Ws(w, _) => {
                let _ = w.close().await;
            }
        }
    }
}

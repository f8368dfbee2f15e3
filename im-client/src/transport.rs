//! Client-side connections: TCP (frames back to back) or WebSocket (one
//! frame per binary message).

use bytes::BytesMut;
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use imkit_proto::{Frame, FrameCodec, FrameLimits, ProtoError};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::codec::{FramedRead, FramedWrite};

use crate::ClientError;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Where to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerAddr {
    /// `host:port` or `tcp://host:port`.
    Tcp(String),
    /// `ws://host:port/path`.
    WebSocket(String),
}

impl ServerAddr {
    /// Parses an address.
    pub fn parse(s: &str) -> Result<ServerAddr, ClientError> {
        if s.starts_with("ws://") {
            Ok(ServerAddr::WebSocket(s.to_owned()))
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
            ServerAddr::WebSocket(a) => f.write_str(a),
        }
    }
}

pub(crate) enum Reader {
    Tcp(FramedRead<OwnedReadHalf, FrameCodec>),
    Ws(SplitStream<Ws>, usize),
}

pub(crate) enum Writer {
    Tcp(FramedWrite<OwnedWriteHalf, FrameCodec>),
    Ws(SplitSink<Ws, Message>, usize),
}

pub(crate) async fn connect(addr: &ServerAddr) -> Result<(Reader, Writer), ClientError> {
    let limits = FrameLimits::client();
    let err = |e: &dyn std::fmt::Display| ClientError::Connect {
        addr: addr.to_string(),
        message: e.to_string(),
    };
    match addr {
        ServerAddr::Tcp(a) => {
            let stream = TcpStream::connect(a).await.map_err(|e| err(&e))?;
            let _ = stream.set_nodelay(true);
            let (rd, wr) = stream.into_split();
            Ok((
                Reader::Tcp(FramedRead::new(rd, FrameCodec::new(limits))),
                Writer::Tcp(FramedWrite::new(wr, FrameCodec::new(limits))),
            ))
        }
        ServerAddr::WebSocket(url) => {
            let (ws, _) = tokio_tungstenite::connect_async(url.as_str())
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
            Writer::Ws(w, _) => {
                let _ = w.close().await;
            }
        }
    }
}

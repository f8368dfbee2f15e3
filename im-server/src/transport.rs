//! One reader and one writer type over both transports. A TCP stream
//! carries frames back to back; a WebSocket carries exactly one frame per
//! binary message. Everything above this file sees only frames.

use std::io;

use bytes::{Bytes, BytesMut};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use imkit_proto::{Frame, ProtoError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

type Ws = WebSocketStream<TcpStream>;

/// Initial read buffer per TCP connection; it grows to the frame being read.
const INITIAL_READ_BUFFER: usize = 256;

/// Why reading stopped.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The peer broke the framing; answer with an error and close.
    Proto(ProtoError),
    /// A WebSocket text message or a message that is not exactly one frame.
    BadMessage(&'static str),
    /// The connection failed.
    Io(String),
}

/// Reads frames from a connection.
pub(crate) enum FrameReader {
    Tcp {
        rd: OwnedReadHalf,
        buf: BytesMut,
        max: usize,
    },
    Ws {
        rd: SplitStream<Ws>,
        max: usize,
    },
}

/// Writes batches of encoded frames to a connection.
pub(crate) enum FrameWriter {
    Tcp(OwnedWriteHalf),
    Ws(SplitSink<Ws, Message>),
}

/// Splits a TCP stream.
pub(crate) fn tcp(stream: TcpStream, max_inbound: usize) -> (FrameReader, FrameWriter) {
    let _ = stream.set_nodelay(true);
    let (rd, wr) = stream.into_split();
    (
        FrameReader::Tcp {
            rd,
            buf: BytesMut::with_capacity(INITIAL_READ_BUFFER),
            max: max_inbound,
        },
        FrameWriter::Tcp(wr),
    )
}

/// Splits an accepted WebSocket.
pub(crate) fn websocket(ws: Ws, max_inbound: usize) -> (FrameReader, FrameWriter) {
    let (wr, rd) = ws.split();
    (
        FrameReader::Ws {
            rd,
            max: max_inbound,
        },
        FrameWriter::Ws(wr),
    )
}

impl FrameReader {
    /// The next frame; `Ok(None)` when the peer closed cleanly.
    /// Cancel-safe: bytes already read stay buffered.
    pub(crate) async fn next(&mut self) -> Result<Option<Frame>, ReadError> {
        match self {
            FrameReader::Tcp { rd, buf, max } => loop {
                if let Some(frame) = Frame::decode(buf, *max).map_err(ReadError::Proto)? {
                    return Ok(Some(frame));
                }
                if buf.capacity() == buf.len() {
                    buf.reserve(INITIAL_READ_BUFFER);
                }
                match rd.read_buf(buf).await {
                    Ok(0) if buf.is_empty() => return Ok(None),
                    Ok(0) => return Err(ReadError::Io("connection closed mid-frame".into())),
                    Ok(_) => {}
                    Err(e) => return Err(ReadError::Io(e.to_string())),
                }
            },
            FrameReader::Ws { rd, max } => loop {
                match rd.next().await {
                    None | Some(Ok(Message::Close(_))) => return Ok(None),
                    Some(Err(e)) => return Err(ReadError::Io(e.to_string())),
                    Some(Ok(Message::Binary(data))) => {
                        let mut buf = BytesMut::from(&data[..]);
                        return match Frame::decode(&mut buf, *max).map_err(ReadError::Proto)? {
                            Some(frame) if buf.is_empty() => Ok(Some(frame)),
                            _ => Err(ReadError::BadMessage(
                                "a websocket message must hold exactly one whole frame",
                            )),
                        };
                    }
                    Some(Ok(Message::Text(_))) => {
                        return Err(ReadError::BadMessage("text messages are not accepted"));
                    }
                    Some(Ok(_)) => continue, // ping, pong, raw frames
                }
            },
        }
    }
}

impl FrameReader {
    /// A frame that is available without waiting: already buffered, or in
    /// the socket now (TCP). `None` when nothing whole is there (or on any
    /// error, which the next [`FrameReader::next`] reports).
    pub(crate) fn try_next(&mut self) -> Option<Frame> {
        match self {
            FrameReader::Tcp { rd, buf, max } => {
                if let Ok(Some(frame)) = Frame::decode(buf, *max) {
                    return Some(frame);
                }
                if buf.capacity() == buf.len() {
                    buf.reserve(INITIAL_READ_BUFFER);
                }
                match rd.try_read_buf(buf) {
                    Ok(n) if n > 0 => Frame::decode(buf, *max).ok().flatten(),
                    _ => None,
                }
            }
            // A WebSocket message taken here but not a frame (a close, a
            // text) would be lost to `next`, so WebSocket requests are
            // taken one at a time.
            FrameReader::Ws { .. } => None,
        }
    }
}

impl FrameWriter {
    /// Writes frames, coalesced into as few syscalls as possible.
    pub(crate) async fn write_batch(&mut self, frames: &[Bytes]) -> io::Result<()> {
        match self {
            FrameWriter::Tcp(wr) => {
                if let [one] = frames {
                    return wr.write_all(one).await;
                }
                let total = frames.iter().map(Bytes::len).sum();
                let mut buf = BytesMut::with_capacity(total);
                for f in frames {
                    buf.extend_from_slice(f);
                }
                wr.write_all(&buf).await
            }
            FrameWriter::Ws(wr) => {
                for f in frames {
                    wr.feed(Message::Binary(f.clone()))
                        .await
                        .map_err(io::Error::other)?;
                }
                wr.flush().await.map_err(io::Error::other)
            }
        }
    }

    /// Closes the connection politely.
    pub(crate) async fn close(&mut self) {
        match self {
            FrameWriter::Tcp(wr) => {
                let _ = wr.shutdown().await;
            }
            FrameWriter::Ws(wr) => {
                let _ = wr.close().await;
            }
        }
    }
}

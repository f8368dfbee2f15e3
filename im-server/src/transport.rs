//! One reader and one writer type over both transports, plain or TLS. A
//! TCP stream carries frames back to back; a WebSocket carries exactly one
//! frame per binary message. Everything above this file sees only frames.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use imkit_proto::{Frame, ProtoError};

use crate::inbuf::InBuf;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

/// Binds `addr` (the first address it resolves to) with `backlog`.
pub(crate) async fn listen(addr: &str, backlog: u32) -> std::io::Result<TcpListener> {
    let resolved = tokio::net::lookup_host(addr).await?.next().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotFound, "address resolves to nothing")
    })?;
    let socket = if resolved.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(resolved)?;
    socket.listen(backlog)
}

/// Which kind of listener a connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Tcp,
    Ws,
    Http,
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Tcp => "tcp",
            Kind::Ws => "websocket",
            Kind::Http => "http",
        }
    }
}

/// A TLS session over TCP (feature `tls`).
#[cfg(feature = "tls")]
pub(crate) type TlsTcp = tokio_rustls::server::TlsStream<TcpStream>;

/// An accepted connection, plain or TLS: what a WebSocket runs over.
pub(crate) enum Socket {
    Plain(TcpStream),
    #[cfg(feature = "tls")]
    Tls(Box<TlsTcp>),
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Plain(s) => Pin::new(s).poll_read(cx, buf),
            #[cfg(feature = "tls")]
            Socket::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Socket::Plain(s) => Pin::new(s).poll_write(cx, buf),
            #[cfg(feature = "tls")]
            Socket::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Socket::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            #[cfg(feature = "tls")]
            Socket::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Socket::Plain(s) => s.is_write_vectored(),
            #[cfg(feature = "tls")]
            Socket::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Plain(s) => Pin::new(s).poll_flush(cx),
            #[cfg(feature = "tls")]
            Socket::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Plain(s) => Pin::new(s).poll_shutdown(cx),
            #[cfg(feature = "tls")]
            Socket::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

pub(crate) type Ws = WebSocketStream<Socket>;

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
        buf: InBuf,
        max: usize,
    },
    /// TCP framing inside TLS: the same frames, decrypted by rustls.
    #[cfg(feature = "tls")]
    Tls {
        rd: tokio::io::ReadHalf<TlsTcp>,
        buf: InBuf,
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
    #[cfg(feature = "tls")]
    Tls(tokio::io::WriteHalf<TlsTcp>),
    Ws(SplitSink<Ws, Message>),
}

/// Splits a TCP stream (`TCP_NODELAY` is set once, at accept).
pub(crate) fn tcp(stream: TcpStream, max_inbound: usize) -> (FrameReader, FrameWriter) {
    let (rd, wr) = stream.into_split();
    (
        FrameReader::Tcp {
            rd,
            buf: InBuf::default(),
            max: max_inbound,
        },
        FrameWriter::Tcp(wr),
    )
}

/// Splits a TLS session carrying TCP framing.
#[cfg(feature = "tls")]
pub(crate) fn tls(stream: TlsTcp, max_inbound: usize) -> (FrameReader, FrameWriter) {
    let (rd, wr) = tokio::io::split(stream);
    (
        FrameReader::Tls {
            rd,
            buf: InBuf::default(),
            max: max_inbound,
        },
        FrameWriter::Tls(wr),
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
    /// Changes the largest frame accepted from here on (raised at login).
    pub(crate) fn set_max(&mut self, new_max: usize) {
        match self {
            FrameReader::Tcp { max, .. } | FrameReader::Ws { max, .. } => *max = new_max,
            #[cfg(feature = "tls")]
            FrameReader::Tls { max, .. } => *max = new_max,
        }
    }

    /// The next frame; `Ok(None)` when the peer closed cleanly.
    /// Cancel-safe: bytes already read stay buffered.
    pub(crate) async fn next(&mut self) -> Result<Option<Frame>, ReadError> {
        match self {
            FrameReader::Tcp { rd, buf, max } => read_tcp_frame(rd, buf, *max).await,
            #[cfg(feature = "tls")]
            FrameReader::Tls { rd, buf, max } => read_frame(rd, buf, *max).await,
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

/// The next frame of a TCP connection; `Ok(None)` when the peer closed
/// between frames. Reads only once the socket has bytes, letting an empty
/// buffer go while it waits. Cancel-safe: bytes already read stay in `buf`.
async fn read_tcp_frame(
    rd: &mut OwnedReadHalf,
    buf: &mut InBuf,
    max: usize,
) -> Result<Option<Frame>, ReadError> {
    loop {
        if let Some(frame) = Frame::decode(&mut buf.buf, max).map_err(ReadError::Proto)? {
            return Ok(Some(frame));
        }
        let offered = buf.make_room();
        match rd.try_read_buf(&mut buf.buf) {
            Ok(0) => return closed(buf),
            Ok(n) => buf.read_done(n, offered),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                buf.idle();
                // Polled in place rather than through `readable()`, whose
                // waiter would add to every idle connection's future.
                std::future::poll_fn(|cx| rd.as_ref().poll_read_ready(cx))
                    .await
                    .map_err(|e| ReadError::Io(e.to_string()))?;
            }
            Err(e) => return Err(ReadError::Io(e.to_string())),
        }
    }
}

/// [`read_tcp_frame`] for any byte stream (TLS), without letting the
/// buffer go.
#[cfg(feature = "tls")]
async fn read_frame(
    rd: &mut (impl AsyncRead + Unpin),
    buf: &mut InBuf,
    max: usize,
) -> Result<Option<Frame>, ReadError> {
    use tokio::io::AsyncReadExt;
    loop {
        if let Some(frame) = Frame::decode(&mut buf.buf, max).map_err(ReadError::Proto)? {
            return Ok(Some(frame));
        }
        let offered = buf.make_room();
        match rd.read_buf(&mut buf.buf).await {
            Ok(0) => return closed(buf),
            Ok(n) => buf.read_done(n, offered),
            Err(e) => return Err(ReadError::Io(e.to_string())),
        }
    }
}

/// The end of the stream: clean between frames, an error inside one.
fn closed(buf: &InBuf) -> Result<Option<Frame>, ReadError> {
    match buf.buf.is_empty() {
        true => Ok(None),
        false => Err(ReadError::Io("connection closed mid-frame".into())),
    }
}

/// Most buffers of a write that go on the stack.
const STACK_IOV: usize = 32;

/// Most buffers one `writev` takes (Linux's `IOV_MAX` is 1,024).
const MAX_IOV: usize = 1_024;

/// How far a batch of frames has been written: whole frames, then bytes
/// of the next one.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Written {
    frames: usize,
    bytes: usize,
}

impl Written {
    /// Moves past `n` written bytes.
    fn advance(&mut self, frames: &[Bytes], mut n: usize) {
        while n > 0 && self.frames < frames.len() {
            let left = frames[self.frames].len() - self.bytes;
            if n >= left {
                n -= left;
                self.frames += 1;
                self.bytes = 0;
            } else {
                self.bytes += n;
                n = 0;
            }
        }
    }

    fn done(&self, frames: &[Bytes]) -> bool {
        self.frames >= frames.len()
    }

    /// Puts what is left to write in `out`, as many buffers as fit;
    /// returns how many.
    fn fill<'a>(&self, frames: &'a [Bytes], out: &mut [io::IoSlice<'a>]) -> usize {
        let mut n = 0;
        if let Some(first) = frames.get(self.frames) {
            out[0] = io::IoSlice::new(&first[self.bytes..]);
            n = 1;
            for (slot, f) in out[1..].iter_mut().zip(&frames[self.frames + 1..]) {
                *slot = io::IoSlice::new(f);
                n += 1;
            }
        }
        n
    }

    /// What is left to write, as buffers for one `writev`.
    fn slices<'a>(&self, frames: &'a [Bytes], out: &mut Vec<io::IoSlice<'a>>) {
        out.clear();
        if let Some(first) = frames.get(self.frames) {
            out.push(io::IoSlice::new(&first[self.bytes..]));
            for f in frames[self.frames + 1..].iter().take(MAX_IOV - 1) {
                out.push(io::IoSlice::new(f));
            }
        }
    }
}

/// Writes what remains of `frames` with as few `writev` calls as the
/// socket allows, without copying them into one buffer first.
async fn write_all_vectored(
    wr: &mut (impl AsyncWrite + Unpin),
    frames: &[Bytes],
    written: &mut Written,
) -> io::Result<()> {
    let mut slices = Vec::with_capacity(frames.len().min(MAX_IOV));
    while !written.done(frames) {
        written.slices(frames, &mut slices);
        let n = wr.write_vectored(&slices).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        written.advance(frames, n);
    }
    Ok(())
}

impl FrameReader {
    /// A frame that is available without waiting: already buffered, or in
    /// the socket now (TCP). `None` when nothing whole is there (or on any
    /// error, which the next [`FrameReader::next`] reports).
    pub(crate) fn try_next(&mut self) -> Option<Frame> {
        match self {
            FrameReader::Tcp { rd, buf, max } => {
                if let Ok(Some(frame)) = Frame::decode(&mut buf.buf, *max) {
                    return Some(frame);
                }
                let offered = buf.make_room();
                match rd.try_read_buf(&mut buf.buf) {
                    Ok(n) if n > 0 => {
                        buf.read_done(n, offered);
                        Frame::decode(&mut buf.buf, *max).ok().flatten()
                    }
                    _ => None,
                }
            }
            // Already decrypted and buffered frames only: rustls has no
            // non-blocking read of its own.
            #[cfg(feature = "tls")]
            FrameReader::Tls { buf, max, .. } => Frame::decode(&mut buf.buf, *max).ok().flatten(),
            // A WebSocket message taken here but not a frame (a close, a
            // text) would be lost to `next`, so WebSocket requests are
            // taken one at a time.
            FrameReader::Ws { .. } => None,
        }
    }
}

impl FrameWriter {
    /// Writes what the socket takes now, without waiting (TCP; a
    /// WebSocket writes nothing here). Returns whether everything is
    /// written; `written` records the progress for
    /// [`FrameWriter::write_rest`].
    pub(crate) fn try_write_batch(
        &mut self,
        frames: &[Bytes],
        written: &mut Written,
    ) -> io::Result<bool> {
        let FrameWriter::Tcp(wr) = self else {
            return Ok(false);
        };
        // The usual batch is a few frames: their buffers go on the stack,
        // so a write allocates nothing.
        let mut stack = [io::IoSlice::new(&[]); STACK_IOV];
        let mut heap = Vec::new();
        while !written.done(frames) {
            let slices: &[io::IoSlice<'_>] = if frames.len() - written.frames <= STACK_IOV {
                let n = written.fill(frames, &mut stack);
                &stack[..n]
            } else {
                written.slices(frames, &mut heap);
                &heap
            };
            match wr.try_write_vectored(slices) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => written.advance(frames, n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Writes the rest of a batch, waiting for the socket as needed.
    pub(crate) async fn write_rest(
        &mut self,
        frames: &[Bytes],
        written: &mut Written,
    ) -> io::Result<()> {
        match self {
            FrameWriter::Tcp(wr) => write_all_vectored(wr, frames, written).await,
            #[cfg(feature = "tls")]
            FrameWriter::Tls(wr) => {
                write_all_vectored(wr, frames, written).await?;
                wr.flush().await
            }
            FrameWriter::Ws(wr) => {
                for f in &frames[written.frames..] {
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
            #[cfg(feature = "tls")]
            FrameWriter::Tls(wr) => {
                let _ = wr.shutdown().await;
            }
            FrameWriter::Ws(wr) => {
                let _ = wr.close().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    #[tokio::test]
    async fn vectored_writes_survive_partial_writes() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        // 3,000 frames of uneven sizes, about 6 MB: far more than one
        // writev takes or a socket buffer holds, so writes are partial.
        let frames: Vec<Bytes> = (0..3_000u32)
            .map(|i| Bytes::from(vec![(i % 251) as u8; 1 + (i as usize * 7919) % 4_000]))
            .collect();
        let expected: Vec<u8> = frames.iter().flat_map(|f| f.iter().copied()).collect();
        let reader = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut got = Vec::new();
            s.read_to_end(&mut got).await.expect("read");
            got
        });
        let stream = TcpStream::connect(addr).await.expect("connect");
        let (_, mut wr) = stream.into_split();
        write_all_vectored(&mut wr, &frames, &mut Written::default())
            .await
            .expect("write");
        wr.shutdown().await.expect("shutdown");
        let got = reader.await.expect("reader");
        assert_eq!(got.len(), expected.len());
        assert!(got == expected, "bytes arrive whole and in order");
    }

    /// Batches around the stack's size and far past what a socket takes
    /// at once, written as the writer task does: what the socket takes
    /// now, then the rest.
    #[tokio::test]
    async fn batches_of_every_size_arrive_whole_and_in_order() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let sizes = [
            1usize,
            2,
            STACK_IOV - 1,
            STACK_IOV,
            STACK_IOV + 1,
            700,
            2_000,
        ];
        let batches: Vec<Vec<Bytes>> = sizes
            .iter()
            .enumerate()
            .map(|(b, n)| {
                (0..*n)
                    .map(|i| Bytes::from(vec![(b * 31 + i) as u8; 1 + (i * 7919) % 3_000]))
                    .collect()
            })
            .collect();
        let expected: Vec<u8> = batches.iter().flatten().flat_map(|f| f.to_vec()).collect();
        let reader = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut got = Vec::new();
            s.read_to_end(&mut got).await.expect("read");
            got
        });
        let (_, mut w) = tcp(TcpStream::connect(addr).await.expect("connect"), 1 << 20);
        for batch in &batches {
            let mut written = Written::default();
            if !w.try_write_batch(batch, &mut written).expect("write") {
                w.write_rest(batch, &mut written).await.expect("rest");
            }
            assert!(written.done(batch));
        }
        w.close().await;
        let got = reader.await.expect("reader");
        assert_eq!(got.len(), expected.len());
        assert!(got == expected, "bytes arrive whole and in order");
    }
}

//! The imkit wire protocol, with no I/O.
//!
//! ```
//! use bytes::BytesMut;
//! use imkit_proto::{Frame, Packet, PacketId, pb};
//!
//! // A send request, as a client writes it...
//! let packet = Packet::Send(pb::SendRequest {
//!     client_msg_id: "m-1".into(),
//!     to: Some(pb::send_request::To::UserId("bob".into())),
//!     content: Some(pb::Content::text("hello")),
//! });
//! let bytes = packet.to_frame(PacketId::new()).to_bytes(64 * 1024)?;
//!
//! // ...and as the server reads it back, however the bytes arrive.
//! let mut buf = BytesMut::from(&bytes[..]);
//! let frame = Frame::decode(&mut buf, 64 * 1024)?.expect("one whole frame");
//! assert_eq!(Packet::from_frame(&frame)?, packet);
//! # Ok::<(), imkit_proto::ProtoError>(())
//! ```
//!
//! A connection carries frames: a 4-byte big-endian length that counts
//! itself, a 24-byte [`Header`] (type, version, flags, packet id) and a
//! protobuf payload defined in `proto/imkit.proto` (generated into [`pb`]).
//! Start with [`Frame::decode`] / [`Frame::encode`] for framing, then
//! [`Packet::from_frame`] / [`Packet::to_frame`] for typed packets.
//! [`FrameCodec`] wraps the same functions for `tokio_util::codec::Framed`.
//! `docs/protocol.md` in the repository is the full specification.

mod code;
#[cfg(feature = "codec")]
mod codec;
mod content;
mod error;
mod frame;
mod packet;

/// Protobuf messages generated from `proto/imkit.proto`.
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/imkit.v1.rs"));
}

pub use code::ErrorCode;
#[cfg(feature = "codec")]
pub use codec::FrameCodec;
pub use error::ProtoError;
pub use frame::{
    DECODE_GROW_MIN, DEFAULT_MAX_CLIENT_FRAME, DEFAULT_MAX_PRELOGIN_FRAME,
    DEFAULT_MAX_SERVER_FRAME, Flags, Frame, FrameLimits, HEADER_LEN, Header, LEN_PREFIX,
    MIN_FRAME_LEN, PROTOCOL_VERSION, PacketId,
};
pub use packet::{Packet, PacketKind, Sender};

/// The `.proto` source, for tools that want to ship or print it.
pub const PROTO_SOURCE: &str = include_str!("../proto/imkit.proto");

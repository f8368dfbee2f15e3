//! The binary frame: `length | header | payload`.
//!
//! ```text
//!  0       4       6       8              12                          28
//!  +-------+-------+-------+---------------+---------------------------+---------+
//!  | len   | type  | ver   | flags         | packet id (16 bytes)      | payload |
//!  +-------+-------+-------+---------------+---------------------------+---------+
//! ```
//!
//! All integers are big-endian. `len` counts the whole frame, itself included.
//! Parsing is incremental and checks the declared length against the
//! maximum before buffering anything, so a peer cannot make us reserve
//! memory by announcing a huge frame.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::ProtoError;

/// Size of the length prefix.
pub const LEN_PREFIX: usize = 4;
/// Size of the fixed header that follows the length prefix.
pub const HEADER_LEN: usize = 24;
/// The shortest legal frame: a length prefix and a header with no payload.
pub const MIN_FRAME_LEN: usize = LEN_PREFIX + HEADER_LEN;
/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u16 = 1;

/// Default maximum for frames a client sends to a server (256 KiB). Chat
/// messages carry file metadata, not file bytes, so this is generous.
pub const DEFAULT_MAX_CLIENT_FRAME: usize = 256 * 1024;
/// Default maximum for frames a server sends to a client (8 MiB); sync and
/// history responses can carry many messages.
pub const DEFAULT_MAX_SERVER_FRAME: usize = 8 * 1024 * 1024;
/// Default maximum for frames a client sends before its login succeeds
/// (4 KiB): room for a login request with a long token, and no more.
pub const DEFAULT_MAX_PRELOGIN_FRAME: usize = 4 * 1024;
/// The least [`Frame::decode`] grows a buffer by while a frame is
/// incomplete (1 KiB).
pub const DECODE_GROW_MIN: usize = 1024;

/// Inbound and outbound frame-size maxima for one side of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLimits {
    /// Largest frame accepted from the peer.
    pub max_inbound: usize,
    /// Largest frame this side will send.
    pub max_outbound: usize,
}

impl FrameLimits {
    /// Limits for a server: accepts client-sized frames, sends server-sized ones.
    pub const fn server() -> Self {
        FrameLimits {
            max_inbound: DEFAULT_MAX_CLIENT_FRAME,
            max_outbound: DEFAULT_MAX_SERVER_FRAME,
        }
    }

    /// Limits for a client: the mirror image of [`FrameLimits::server`].
    pub const fn client() -> Self {
        FrameLimits {
            max_inbound: DEFAULT_MAX_SERVER_FRAME,
            max_outbound: DEFAULT_MAX_CLIENT_FRAME,
        }
    }
}

/// The 16-byte packet id. Requests carry a fresh one (UUID v7); a response
/// repeats the id of its request.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct PacketId(pub [u8; 16]);

impl PacketId {
    /// The all-zero id, used by frames that answer nothing and need no id.
    pub const NIL: PacketId = PacketId([0; 16]);

    /// A fresh, time-ordered id (UUID v7).
    pub fn new() -> Self {
        PacketId(*uuid::Uuid::now_v7().as_bytes())
    }

    /// The id as a UUID.
    pub fn as_uuid(&self) -> uuid::Uuid {
        uuid::Uuid::from_bytes(self.0)
    }
}

impl std::fmt::Debug for PacketId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PacketId({})", self.as_uuid())
    }
}

impl std::fmt::Display for PacketId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_uuid().fmt(f)
    }
}

impl From<uuid::Uuid> for PacketId {
    fn from(u: uuid::Uuid) -> Self {
        PacketId(*u.as_bytes())
    }
}

/// The header's flags word.
///
/// | bits  | meaning                                         |
/// |-------|-------------------------------------------------|
/// | 0     | response: this frame answers the request with the same packet id |
/// | 1..=3 | payload encoding: 0 = protobuf; others reserved |
/// | 4..   | reserved, must be zero                          |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(pub u32);

impl Flags {
    /// Bit 0: the frame is a response.
    pub const RESPONSE: u32 = 1;
    /// Bits 1 to 3: the payload encoding.
    pub const ENCODING_MASK: u32 = 0b1110;
    /// Encoding value for protobuf, the only one defined.
    pub const ENCODING_PROTOBUF: u8 = 0;
    /// Every bit that has no meaning yet.
    pub const RESERVED_MASK: u32 = !(Self::RESPONSE | Self::ENCODING_MASK);

    /// Flags for a request or push (`false`) or a response (`true`), protobuf-encoded.
    pub const fn new(response: bool) -> Self {
        Flags(if response { Self::RESPONSE } else { 0 })
    }

    /// Whether bit 0 is set.
    pub const fn is_response(self) -> bool {
        self.0 & Self::RESPONSE != 0
    }

    /// The payload encoding field.
    pub const fn encoding(self) -> u8 {
        ((self.0 & Self::ENCODING_MASK) >> 1) as u8
    }

    /// Checks that no reserved bit is set and the encoding is supported.
    pub fn validate(self) -> Result<(), ProtoError> {
        if self.0 & Self::RESERVED_MASK != 0 {
            return Err(ProtoError::ReservedFlags { flags: self.0 });
        }
        if self.encoding() != Self::ENCODING_PROTOBUF {
            return Err(ProtoError::UnsupportedEncoding {
                encoding: self.encoding(),
            });
        }
        Ok(())
    }
}

/// The fixed 24-byte header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Packet type id (see [`crate::PacketKind`]).
    pub kind: u16,
    /// Protocol version, [`PROTOCOL_VERSION`] for this crate.
    pub version: u16,
    /// Flags word.
    pub flags: Flags,
    /// Packet id pairing requests with responses.
    pub packet_id: PacketId,
}

impl Header {
    fn read(mut buf: &[u8]) -> Header {
        let kind = buf.get_u16();
        let version = buf.get_u16();
        let flags = Flags(buf.get_u32());
        let mut id = [0u8; 16];
        buf.copy_to_slice(&mut id);
        Header {
            kind,
            version,
            flags,
            packet_id: PacketId(id),
        }
    }

    fn write(&self, dst: &mut BytesMut) {
        dst.put_u16(self.kind);
        dst.put_u16(self.version);
        dst.put_u32(self.flags.0);
        dst.put_slice(&self.packet_id.0);
    }
}

/// One frame: a header and an opaque payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The parsed header.
    pub header: Header,
    /// The payload bytes (a protobuf message for encoding 0).
    pub payload: Bytes,
}

impl Frame {
    /// The length this frame has on the wire, prefix included.
    pub fn encoded_len(&self) -> usize {
        MIN_FRAME_LEN + self.payload.len()
    }

    /// Parses one frame from the front of `buf`.
    ///
    /// Returns `Ok(None)` when `buf` does not yet hold a whole frame; the
    /// caller reads more and calls again. On success the frame's bytes are
    /// removed from `buf`. A declared length above `max_len` or below
    /// [`MIN_FRAME_LEN`] is an error before any memory is reserved for it,
    /// and a valid one is never reserved whole in advance: `buf` grows by at
    /// most its own length (or [`DECODE_GROW_MIN`]) per call.
    pub fn decode(buf: &mut BytesMut, max_len: usize) -> Result<Option<Frame>, ProtoError> {
        let Some(len) = Self::check(buf, max_len)? else {
            return Ok(None);
        };
        if buf.len() < len {
            // Grow toward the declared length as bytes arrive, at most
            // doubling what is here: a peer that declares a large frame and
            // sends little gets no large buffer on its word alone.
            buf.reserve((len - buf.len()).min(buf.len().max(DECODE_GROW_MIN)));
            return Ok(None);
        }
        let mut bytes = buf.split_to(len).freeze();
        bytes.advance(LEN_PREFIX);
        let header = Header::read(&bytes[..HEADER_LEN]);
        bytes.advance(HEADER_LEN);
        Ok(Some(Frame {
            header,
            payload: bytes,
        }))
    }

    /// Reads and validates the length prefix without consuming anything.
    /// `Ok(None)` means fewer than four bytes are buffered.
    pub fn check(buf: &[u8], max_len: usize) -> Result<Option<usize>, ProtoError> {
        let Some(prefix) = buf.get(..LEN_PREFIX) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
        if len < MIN_FRAME_LEN {
            return Err(ProtoError::FrameTooShort {
                len,
                min: MIN_FRAME_LEN,
            });
        }
        if len > max_len {
            return Err(ProtoError::FrameTooLarge { len, max: max_len });
        }
        Ok(Some(len))
    }

    /// Appends the frame's wire form to `dst`, refusing frames over `max_len`.
    pub fn encode(&self, dst: &mut BytesMut, max_len: usize) -> Result<(), ProtoError> {
        let len = self.encoded_len();
        if len > max_len || len > u32::MAX as usize {
            return Err(ProtoError::OutgoingFrameTooLarge { len, max: max_len });
        }
        dst.reserve(len);
        dst.put_u32(len as u32);
        self.header.write(dst);
        dst.put_slice(&self.payload);
        Ok(())
    }

    /// The frame's wire form as one shareable buffer (cheap to clone into
    /// many connection queues).
    pub fn to_bytes(&self, max_len: usize) -> Result<Bytes, ProtoError> {
        let mut dst = BytesMut::with_capacity(self.encoded_len());
        self.encode(&mut dst, max_len)?;
        Ok(dst.freeze())
    }
}

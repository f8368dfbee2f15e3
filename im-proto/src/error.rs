//! The protocol crate's error type.

/// Everything that can go wrong while framing, parsing or building packets.
#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    /// The peer declared a frame longer than this side accepts. Nothing was
    /// buffered for it; the connection should be closed.
    #[error("declared frame length {len} exceeds the inbound maximum of {max} bytes")]
    FrameTooLarge {
        /// Length declared by the frame's prefix.
        len: usize,
        /// The configured inbound maximum.
        max: usize,
    },
    /// A frame to be sent is longer than this side's outbound maximum.
    #[error("outgoing frame of {len} bytes exceeds the outbound maximum of {max} bytes")]
    OutgoingFrameTooLarge {
        /// Encoded length of the frame.
        len: usize,
        /// The configured outbound maximum.
        max: usize,
    },
    /// The declared length cannot even hold the length prefix and header.
    #[error("declared frame length {len} is shorter than the {min}-byte minimum (prefix + header)")]
    FrameTooShort {
        /// Length declared by the frame's prefix.
        len: usize,
        /// The minimum, [`crate::MIN_FRAME_LEN`].
        min: usize,
    },
    /// The header carries a protocol version this implementation does not speak.
    #[error("unsupported protocol version {version} (this side speaks {supported})")]
    UnsupportedVersion {
        /// The version in the header.
        version: u16,
        /// The version this side speaks.
        supported: u16,
    },
    /// The header sets flag bits that are reserved.
    #[error("reserved flag bits set: {flags:#010x}")]
    ReservedFlags {
        /// The flags word as received.
        flags: u32,
    },
    /// The header names a payload encoding this side does not support.
    #[error("unsupported payload encoding {encoding}")]
    UnsupportedEncoding {
        /// The encoding field of the flags.
        encoding: u8,
    },
    /// The header's type id is not a known packet type.
    #[error("unknown packet type {kind:#06x}")]
    UnknownType {
        /// The type id in the header.
        kind: u16,
    },
    /// The response flag disagrees with the packet type (a request marked as
    /// a response, or the other way round).
    #[error("packet type {kind:#06x} {}", if *is_response { "is a response but the response flag is clear" } else { "is not a response but the response flag is set" })]
    ResponseFlagMismatch {
        /// The type id in the header.
        kind: u16,
        /// Whether the type is a response type.
        is_response: bool,
    },
    /// The payload is not a valid protobuf encoding of the packet's message.
    #[error("bad payload for packet type {kind:#06x}: {source}")]
    BadPayload {
        /// The type id in the header.
        kind: u16,
        /// What prost reported.
        #[source]
        source: prost::DecodeError,
    },
    /// An I/O error surfaced through the tokio-util codec.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl ProtoError {
    /// True when the byte stream can no longer be trusted (the frame boundary
    /// is lost) and the connection must be closed. Other errors concern one
    /// well-delimited frame, which can be answered with an error and skipped.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            ProtoError::FrameTooLarge { .. } | ProtoError::FrameTooShort { .. } | ProtoError::Io(_)
        )
    }

    /// The protocol error code a peer should receive for this error.
    pub fn code(&self) -> crate::ErrorCode {
        use crate::ErrorCode;
        match self {
            ProtoError::FrameTooLarge { .. } | ProtoError::OutgoingFrameTooLarge { .. } => {
                ErrorCode::FrameTooLarge
            }
            ProtoError::FrameTooShort { .. } | ProtoError::Io(_) => ErrorCode::MalformedFrame,
            ProtoError::UnsupportedVersion { .. } => ErrorCode::UnsupportedVersion,
            ProtoError::ReservedFlags { .. } | ProtoError::UnsupportedEncoding { .. } => {
                ErrorCode::BadFlags
            }
            ProtoError::ResponseFlagMismatch { .. } => ErrorCode::BadFlags,
            ProtoError::UnknownType { .. } => ErrorCode::UnknownType,
            ProtoError::BadPayload { .. } => ErrorCode::BadPayload,
        }
    }
}

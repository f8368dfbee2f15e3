//! A `tokio_util::codec` adapter over [`Frame::decode`] and [`Frame::encode`].

use bytes::{Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::{Frame, FrameLimits, ProtoError};

/// Frames a byte stream with the configured [`FrameLimits`].
#[derive(Debug, Clone, Copy)]
pub struct FrameCodec {
    limits: FrameLimits,
}

impl FrameCodec {
    /// A codec with the given limits.
    pub fn new(limits: FrameLimits) -> Self {
        FrameCodec { limits }
    }

    /// The limits in force.
    pub fn limits(&self) -> FrameLimits {
        self.limits
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = ProtoError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, ProtoError> {
        Frame::decode(src, self.limits.max_inbound)
    }
}

impl Encoder<&Frame> for FrameCodec {
    type Error = ProtoError;

    fn encode(&mut self, frame: &Frame, dst: &mut BytesMut) -> Result<(), ProtoError> {
        frame.encode(dst, self.limits.max_outbound)
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = ProtoError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), ProtoError> {
        frame.encode(dst, self.limits.max_outbound)
    }
}

/// Pre-encoded frames (for example one group message shared by many
/// connections) pass through unchanged after a length check.
impl Encoder<Bytes> for FrameCodec {
    type Error = ProtoError;

    fn encode(&mut self, bytes: Bytes, dst: &mut BytesMut) -> Result<(), ProtoError> {
        if bytes.len() > self.limits.max_outbound {
            return Err(ProtoError::OutgoingFrameTooLarge {
                len: bytes.len(),
                max: self.limits.max_outbound,
            });
        }
        dst.extend_from_slice(&bytes);
        Ok(())
    }
}

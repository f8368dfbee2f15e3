//! The generator's cheap path for imkit: a `Send` (or `Signal`) frame
//! encoded once and patched in place per message (no protobuf encoding, no allocation), and
//! batched writes (many frames per `write`).

use bytes::BytesMut;
use imkit_proto::{Frame, Packet, PacketId, pb};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;

use crate::stats::now_ns;

/// Placeholders the template carries where the per-message values go: 16
/// hex digits each.
const CMID_MARK: &[u8; 16] = b"CCCCCCCCCCCCCCCC";
const TS_MARK: &[u8; 16] = b"TTTTTTTTTTTTTTTT";
const IX_MARK: &[u8; 16] = b"IIIIIIIIIIIIIIII";

/// Offset of the packet id in a frame (after length, type, version, flags).
const PACKET_ID_AT: usize = 12;

/// An encoded `Send` of a 100-byte text whose client message id, timestamp
/// and index (the text starts with the two, as [`crate::stats::payload`]
/// does) are written into the copy for each message.
#[derive(Debug, Clone)]
pub(crate) struct SendTemplate {
    bytes: Vec<u8>,
    /// Where the client message id goes (signals have none).
    cmid_at: Option<usize>,
    ts_at: usize,
    ix_at: usize,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn put_hex(dst: &mut [u8], v: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in dst.iter_mut().enumerate().take(16) {
        *b = HEX[((v >> ((15 - i) * 4)) & 0xf) as usize];
    }
}

impl SendTemplate {
    /// A template for sends to a user (`group` false) or a group.
    pub(crate) fn new(to: &str, group: bool) -> Result<Self, String> {
        use pb::send_request::To;
        let text = String::from_utf8(Self::text()).map_err(|e| e.to_string())?;
        let packet = Packet::Send(pb::SendRequest {
            client_msg_id: String::from_utf8_lossy(CMID_MARK).into_owned(),
            to: Some(if group {
                To::GroupId(to.into())
            } else {
                To::UserId(to.into())
            }),
            content: Some(pb::Content {
                body: Some(pb::content::Body::Text(pb::Text {
                    text,
                    mentions: vec![],
                })),
            }),
        });
        Self::of(&packet, true)
    }

    /// A template for live-only signals (kind `bench`) to a user, carrying
    /// the same 100 bytes a send's text does.
    pub(crate) fn signal(to: &str) -> Result<Self, String> {
        let packet = Packet::Signal(pb::Signal {
            to: Some(pb::signal::To::ToUserId(to.into())),
            kind: "bench".into(),
            data: Self::text().into(),
            ..Default::default()
        });
        Self::of(&packet, false)
    }

    /// The 100-byte body: timestamp and index placeholders, then filler.
    fn text() -> Vec<u8> {
        let mut text = Vec::with_capacity(100);
        text.extend_from_slice(TS_MARK);
        text.extend_from_slice(IX_MARK);
        text.resize(100, b'x');
        text
    }

    fn of(packet: &Packet, with_cmid: bool) -> Result<Self, String> {
        let bytes = packet
            .to_frame(PacketId::NIL)
            .to_bytes(usize::MAX)
            .map_err(|e| e.to_string())?
            .to_vec();
        let at = |m: &[u8]| find(&bytes, m).ok_or("placeholder not found in the template");
        Ok(SendTemplate {
            cmid_at: if with_cmid {
                Some(at(CMID_MARK)?)
            } else {
                None
            },
            ts_at: at(TS_MARK)?,
            ix_at: at(IX_MARK)?,
            bytes,
        })
    }

    /// Appends the frame of message `index` (also its client id), stamped
    /// with the time now, in the text and in the packet id's first eight
    /// bytes (the SENT answer repeats the packet id, so its latency needs no
    /// bookkeeping).
    pub(crate) fn write(&self, out: &mut BytesMut, index: u64) {
        let start = out.len();
        out.extend_from_slice(&self.bytes);
        let f = &mut out[start..];
        let now = now_ns();
        if let Some(at) = self.cmid_at {
            put_hex(&mut f[at..at + 16], index);
        }
        put_hex(&mut f[self.ix_at..self.ix_at + 16], index);
        put_hex(&mut f[self.ts_at..self.ts_at + 16], now);
        f[PACKET_ID_AT..PACKET_ID_AT + 8].copy_from_slice(&now.to_be_bytes());
        f[PACKET_ID_AT + 8..PACKET_ID_AT + 16].copy_from_slice(&index.to_be_bytes());
    }
}

/// Writes queued bytes in one call and keeps the buffer.
pub(crate) async fn flush(wr: &mut OwnedWriteHalf, buf: &mut BytesMut) -> Result<(), String> {
    if buf.is_empty() {
        return Ok(());
    }
    wr.write_all(buf).await.map_err(|e| e.to_string())?;
    buf.clear();
    Ok(())
}

/// Appends an encoded packet to a write buffer.
pub(crate) fn put_packet(out: &mut BytesMut, packet: &Packet) -> Result<(), String> {
    packet
        .to_frame(PacketId::new())
        .encode(out, usize::MAX)
        .map_err(|e| e.to_string())
}

/// The seq and payload of a pushed message, read straight from the frame
/// (no allocation); `None` for any other frame.
pub(crate) fn pushed(frame: &Frame) -> Option<(u64, &[u8])> {
    if frame.header.kind != imkit_proto::PacketKind::MessagePush as u16 {
        return None;
    }
    let m = field(&frame.payload, 1)?; // MessagePush.message
    let seq = varint_field(m, 3)?; // Message.seq
    let content = field(m, 8)?; // Message.content
    let text = field(field(content, 1)?, 1)?; // Content.text.text
    Some((seq, text))
}

/// The data of a pushed `Signal`; `None` for any other frame.
pub(crate) fn signalled(frame: &Frame) -> Option<&[u8]> {
    if frame.header.kind != imkit_proto::PacketKind::Signal as u16 {
        return None;
    }
    field(&frame.payload, 7) // Signal.data
}

/// The bytes of length-delimited field `number` in a protobuf message.
fn field(mut msg: &[u8], number: u32) -> Option<&[u8]> {
    while !msg.is_empty() {
        let (key, rest) = varint(msg)?;
        msg = rest;
        let (n, wire) = ((key >> 3) as u32, key & 7);
        match wire {
            0 => msg = varint(msg)?.1,
            1 => msg = msg.get(8..)?,
            5 => msg = msg.get(4..)?,
            2 => {
                let (len, rest) = varint(msg)?;
                let len = usize::try_from(len).ok()?;
                let (body, rest) = (rest.get(..len)?, rest.get(len..)?);
                if n == number {
                    return Some(body);
                }
                msg = rest;
            }
            _ => return None,
        }
    }
    None
}

/// The value of varint field `number` in a protobuf message.
fn varint_field(mut msg: &[u8], number: u32) -> Option<u64> {
    while !msg.is_empty() {
        let (key, rest) = varint(msg)?;
        msg = rest;
        let (n, wire) = ((key >> 3) as u32, key & 7);
        match wire {
            0 => {
                let (v, rest) = varint(msg)?;
                if n == number {
                    return Some(v);
                }
                msg = rest;
            }
            1 => msg = msg.get(8..)?,
            5 => msg = msg.get(4..)?,
            2 => {
                let (len, rest) = varint(msg)?;
                msg = rest.get(usize::try_from(len).ok()?..)?;
            }
            _ => return None,
        }
    }
    None
}

fn varint(b: &[u8]) -> Option<(u64, &[u8])> {
    let mut v = 0u64;
    for (i, byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, &b[i + 1..]));
        }
    }
    None
}

/// The seq a `SendResponse` (SENT) acknowledges.
pub(crate) fn sent_seq(frame: &Frame) -> Option<u64> {
    if frame.header.kind != imkit_proto::PacketKind::SendResponse as u16 {
        return None;
    }
    varint_field(&frame.payload, 3)
}

/// The seq of a DELIVERED `ReceiptPush`.
pub(crate) fn delivered_up_to(frame: &Frame) -> Option<u64> {
    if frame.header.kind != imkit_proto::PacketKind::ReceiptPush as u16 {
        return None;
    }
    let kind = varint_field(&frame.payload, 4)?;
    (kind == pb::ReceiptKind::Delivered as u64)
        .then(|| varint_field(&frame.payload, 5).unwrap_or(0))
}

/// A DELIVERED receipt up to `seq`.
pub(crate) fn put_delivered(
    out: &mut BytesMut,
    conversation: &str,
    seq: u64,
) -> Result<(), String> {
    put_packet(
        out,
        &Packet::Receipt(pb::ReceiptRequest {
            conversation_id: conversation.into(),
            kind: pb::ReceiptKind::Delivered as i32,
            seq,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_patched_template_decodes_as_the_send_it_stands_for() {
        let t = SendTemplate::new("bob", false).expect("template");
        let mut out = BytesMut::new();
        t.write(&mut out, 0x2a);
        let frame = Frame::decode(&mut out, usize::MAX)
            .expect("decodes")
            .expect("whole");
        let Ok(Packet::Send(s)) = Packet::from_frame(&frame) else {
            panic!("not a send");
        };
        assert_eq!(s.client_msg_id, format!("{:016x}", 0x2a));
        let Some(pb::content::Body::Text(text)) = s.content.and_then(|c| c.body) else {
            panic!("not text");
        };
        let (ts, ix) = crate::stats::parse_payload(text.text.as_bytes()).expect("payload");
        assert_eq!(ix, 0x2a);
        assert!(ts <= now_ns());
        assert_eq!(text.text.len(), 100);
    }

    #[test]
    fn pushed_messages_are_read_without_decoding() {
        let push = Packet::MessagePush(pb::MessagePush {
            message: Some(pb::Message {
                message_id: "m".into(),
                conversation_id: "d:a:b".into(),
                seq: 77,
                sender_id: "a".into(),
                content: Some(pb::Content {
                    body: Some(pb::content::Body::Text(pb::Text {
                        text: "hello".into(),
                        mentions: vec!["x".into()],
                    })),
                }),
                ..Default::default()
            }),
        });
        let frame = push.to_frame(PacketId::new());
        assert_eq!(pushed(&frame), Some((77, &b"hello"[..])));
        let other = Packet::Pong(pb::Pong::default()).to_frame(PacketId::new());
        assert_eq!(pushed(&other), None);
    }
}

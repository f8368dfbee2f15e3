//! Property tests for framing and packets.

use bytes::{BufMut, Bytes, BytesMut};
use imkit_proto::{
    DECODE_GROW_MIN, Flags, Frame, FrameLimits, HEADER_LEN, Header, MIN_FRAME_LEN,
    PROTOCOL_VERSION, Packet, PacketId, PacketKind, ProtoError, pb,
};
use proptest::prelude::*;

const MAX: usize = 1 << 20;

fn arb_frame() -> impl Strategy<Value = Frame> {
    (
        any::<u16>(),
        any::<u16>(),
        any::<u32>(),
        any::<[u8; 16]>(),
        proptest::collection::vec(any::<u8>(), 0..512),
    )
        .prop_map(|(kind, version, flags, id, payload)| Frame {
            header: Header {
                kind,
                version,
                flags: Flags(flags),
                packet_id: PacketId(id),
            },
            payload: Bytes::from(payload),
        })
}

fn arb_content() -> impl Strategy<Value = pb::Content> {
    use pb::content::Body;
    prop_oneof![
        (".{0,64}", proptest::collection::vec("[a-z]{1,8}", 0..3))
            .prop_map(|(text, mentions)| Body::Text(pb::Text { text, mentions })),
        (
            ".{0,32}",
            any::<u64>(),
            "[a-z]+/[a-z]+",
            ".{0,32}",
            any::<[u8; 32]>()
        )
            .prop_map(|(name, size, mime, blob, hash)| Body::File(pb::File {
                name,
                size,
                mime,
                sha256: Bytes::copy_from_slice(&hash),
                location: Some(pb::file::Location::BlobId(blob)),
            })),
        ("[a-z]{1,10}", proptest::collection::vec(any::<u8>(), 0..64)).prop_map(|(kind, data)| {
            Body::Custom(pb::Custom {
                kind,
                data: data.into(),
            })
        }),
        (".{0,36}", any::<u64>(), ".{0,8}").prop_map(|(t, s, by)| Body::Recall(pb::Recall {
            target_message_id: t,
            target_seq: s,
            recalled_by: by,
        })),
    ]
    .prop_map(|b| pb::Content { body: Some(b) })
}

fn arb_message() -> impl Strategy<Value = pb::Message> {
    (
        ".{0,36}",
        ".{0,40}",
        any::<u64>(),
        ".{0,16}",
        ".{0,16}",
        ".{0,36}",
        any::<u64>(),
        arb_content(),
        any::<bool>(),
    )
        .prop_map(
            |(id, conv, seq, sender, dev, cmid, ts, content, recalled)| pb::Message {
                message_id: id,
                conversation_id: conv,
                seq,
                sender_id: sender,
                sender_device: dev,
                client_msg_id: cmid,
                timestamp_ms: ts,
                content: Some(content),
                recalled,
            },
        )
}

fn arb_structured_packet() -> impl Strategy<Value = Packet> {
    prop_oneof![
        (".{0,200}", ".{0,40}", 0i32..6, ".{0,20}").prop_map(|(token, device_id, p, v)| {
            Packet::Login(pb::LoginRequest {
                token,
                device_id,
                platform: p,
                client_version: v,
            })
        }),
        (".{0,36}", any::<bool>(), ".{0,16}", arb_content()).prop_map(|(cmid, group, to, c)| {
            Packet::Send(pb::SendRequest {
                client_msg_id: cmid,
                to: Some(if group {
                    pb::send_request::To::GroupId(to)
                } else {
                    pb::send_request::To::UserId(to)
                }),
                content: Some(c),
            })
        }),
        arb_message().prop_map(|m| Packet::MessagePush(pb::MessagePush { message: Some(m) })),
        (
            proptest::collection::vec(arb_message(), 0..8),
            any::<bool>()
        )
            .prop_map(|(messages, more)| {
                Packet::SyncResponse(pb::SyncResponse {
                    conversations: vec![pb::ConversationMessages {
                        conversation_id: "d:a:b".into(),
                        max_seq: messages.len() as u64,
                        messages,
                        has_more: more,
                    }],
                    more,
                })
            }),
        (0u64..1_000_000, any::<bool>()).prop_map(|(seq, more)| {
            Packet::SyncNotice(pb::SyncNotice {
                reason: pb::SyncReason::Behind as i32,
                conversations: vec![pb::ConversationPosition {
                    conversation_id: "d:a:b".into(),
                    max_seq: seq + 3,
                    resume_seq: seq,
                    read_seq: seq,
                    unread: 3,
                }],
                more,
            })
        }),
        (any::<u32>(), ".{0,64}")
            .prop_map(|(code, message)| Packet::Error(pb::ErrorResponse { code, message })),
    ]
}

/// Encodes a frame the way a peer would, for feeding to the decoder.
fn wire(frame: &Frame) -> BytesMut {
    let mut b = BytesMut::new();
    frame.encode(&mut b, MAX).expect("test frame fits");
    b
}

proptest! {
    #[test]
    fn frame_roundtrip(frame in arb_frame()) {
        let mut buf = wire(&frame);
        prop_assert_eq!(buf.len(), frame.encoded_len());
        let decoded = Frame::decode(&mut buf, MAX).expect("valid").expect("complete");
        prop_assert_eq!(decoded, frame);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn frames_decode_one_byte_at_a_time(frames in proptest::collection::vec(arb_frame(), 1..5)) {
        let mut all = BytesMut::new();
        for f in &frames {
            all.extend_from_slice(&wire(f));
        }
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for byte in all.iter() {
            buf.put_u8(*byte);
            while let Some(f) = Frame::decode(&mut buf, MAX).expect("valid stream") {
                out.push(f);
            }
        }
        prop_assert_eq!(out, frames);
    }

    /// Every packet kind round-trips through a frame. Payloads come from
    /// arbitrary bytes that happen to decode as the kind's message.
    #[test]
    fn every_kind_roundtrips(kind_ix in 0..PacketKind::ALL.len(), raw in proptest::collection::vec(any::<u8>(), 0..64)) {
        let kind = PacketKind::ALL[kind_ix];
        if let Ok(packet) = Packet::decode_payload(kind, Bytes::from(raw)) {
            let id = PacketId::new();
            let frame = packet.to_frame(id);
            prop_assert_eq!(frame.header.kind, kind.id());
            prop_assert_eq!(frame.header.flags.is_response(), kind.is_response());
            let mut buf = wire(&frame);
            let back = Frame::decode(&mut buf, MAX).expect("valid").expect("complete");
            prop_assert_eq!(back.header.packet_id, id);
            prop_assert_eq!(Packet::from_frame(&back).expect("decodes"), packet);
        }
    }

    #[test]
    fn structured_packets_roundtrip(packet in arb_structured_packet()) {
        let frame = packet.to_frame(PacketId::new());
        let mut buf = wire(&frame);
        let back = Frame::decode(&mut buf, MAX).expect("valid").expect("complete");
        prop_assert_eq!(Packet::from_frame(&back).expect("decodes"), packet);
    }
}

#[test]
fn oversized_length_is_rejected_without_allocation() {
    let mut buf = BytesMut::with_capacity(8);
    buf.put_u32(u32::MAX);
    buf.put_u32(0);
    let capacity_before = buf.capacity();
    let err = Frame::decode(&mut buf, 64 * 1024).expect_err("too large");
    assert!(matches!(
        err,
        ProtoError::FrameTooLarge {
            len: 4_294_967_295,
            max: 65_536
        }
    ));
    assert!(err.is_fatal());
    assert_eq!(buf.capacity(), capacity_before, "no memory reserved");
    assert_eq!(buf.len(), 8, "nothing consumed");
}

#[test]
fn length_shorter_than_header_is_rejected() {
    let mut buf = BytesMut::new();
    buf.put_u32((MIN_FRAME_LEN - 1) as u32);
    let err = Frame::decode(&mut buf, MAX).expect_err("too short");
    assert!(matches!(
        err,
        ProtoError::FrameTooShort { len: 27, min: 28 }
    ));
}

#[test]
fn incomplete_frame_grows_toward_the_declared_length() {
    let frame = Packet::Ping(pb::Ping { client_time_ms: 7 }).to_frame(PacketId::new());
    let full = wire(&frame);
    let mut buf = BytesMut::from(&full[..10]);
    assert!(Frame::decode(&mut buf, MAX).expect("ok").is_none());
    assert!(buf.capacity() >= full.len(), "a small frame fits at once");
    buf.extend_from_slice(&full[10..]);
    assert_eq!(Frame::decode(&mut buf, MAX).expect("ok"), Some(frame));
}

#[test]
fn a_declared_length_is_not_reserved_on_the_peers_word() {
    // A peer declares a 256 KiB frame and sends its header only.
    let declared = 256 * 1024;
    let mut buf = BytesMut::new();
    buf.put_u32(declared as u32);
    buf.put_bytes(0, HEADER_LEN);
    assert!(Frame::decode(&mut buf, declared).expect("ok").is_none());
    assert!(
        buf.capacity() <= 4 * DECODE_GROW_MIN,
        "{} bytes reserved for {} received",
        buf.capacity(),
        buf.len()
    );
    // As bytes arrive the buffer grows with them, and the frame completes.
    let mut calls = 0;
    while buf.len() < declared {
        let room = (buf.capacity() - buf.len()).min(declared - buf.len());
        assert!(buf.capacity() <= 2 * buf.len() + 2 * DECODE_GROW_MIN);
        buf.put_bytes(0, room);
        calls += 1;
        if let Some(f) = Frame::decode(&mut buf, declared).expect("ok") {
            assert_eq!(f.payload.len(), declared - MIN_FRAME_LEN);
            return;
        }
    }
    panic!("no frame after {calls} reads");
}

#[test]
fn outbound_maximum_is_enforced() {
    let frame = Frame {
        header: Packet::Ping(pb::Ping::default())
            .to_frame(PacketId::NIL)
            .header,
        payload: Bytes::from(vec![0u8; 100]),
    };
    let err = frame.encode(&mut BytesMut::new(), 64).expect_err("too big");
    assert!(matches!(
        err,
        ProtoError::OutgoingFrameTooLarge { len: 128, max: 64 }
    ));
}

fn frame_with(kind: u16, version: u16, flags: u32) -> Frame {
    Frame {
        header: Header {
            kind,
            version,
            flags: Flags(flags),
            packet_id: PacketId::new(),
        },
        payload: Bytes::new(),
    }
}

#[test]
fn header_validation() {
    let ping = PacketKind::Ping.id();
    assert!(Packet::from_frame(&frame_with(ping, PROTOCOL_VERSION, 0)).is_ok());
    assert!(matches!(
        Packet::from_frame(&frame_with(ping, 2, 0)),
        Err(ProtoError::UnsupportedVersion {
            version: 2,
            supported: 1
        })
    ));
    assert!(matches!(
        Packet::from_frame(&frame_with(ping, 1, 1 << 4)),
        Err(ProtoError::ReservedFlags { flags: 16 })
    ));
    assert!(matches!(
        Packet::from_frame(&frame_with(ping, 1, 0b0010)),
        Err(ProtoError::UnsupportedEncoding { encoding: 1 })
    ));
    assert!(matches!(
        Packet::from_frame(&frame_with(ping, 1, Flags::RESPONSE)),
        Err(ProtoError::ResponseFlagMismatch {
            is_response: false,
            ..
        })
    ));
    assert!(matches!(
        Packet::from_frame(&frame_with(0x7777, 1, 0)),
        Err(ProtoError::UnknownType { kind: 0x7777 })
    ));
    let bad_payload = Frame {
        payload: Bytes::from_static(&[0xff, 0xff, 0xff]),
        ..frame_with(PacketKind::Send.id(), 1, 0)
    };
    assert!(matches!(
        Packet::from_frame(&bad_payload),
        Err(ProtoError::BadPayload { kind: 0x0010, .. })
    ));
}

#[test]
fn kinds_are_consistent() {
    let mut ids: Vec<u16> = PacketKind::ALL.iter().map(|k| k.id()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), PacketKind::ALL.len(), "type ids are unique");
    for kind in PacketKind::ALL {
        assert_eq!(PacketKind::from_u16(kind.id()), Some(*kind));
    }
}

#[test]
fn an_encoded_frame_names_its_kind() {
    let push = Packet::SyncNotice(imkit_proto::pb::SyncNotice::default());
    let bytes = push
        .to_frame(PacketId::new())
        .to_bytes(usize::MAX)
        .expect("encodes");
    assert_eq!(PacketKind::of_frame(&bytes), Some(PacketKind::SyncNotice));
    assert_eq!(PacketKind::of_frame(&bytes[..5]), None, "too short");
    let mut unknown = bytes.to_vec();
    unknown[4..6].copy_from_slice(&0xFFEEu16.to_be_bytes());
    assert_eq!(PacketKind::of_frame(&unknown), None);
}

#[test]
fn error_codes_roundtrip() {
    for code in imkit_proto::ErrorCode::ALL {
        assert_eq!(imkit_proto::ErrorCode::from_u32(code.as_u32()), *code);
    }
    assert_eq!(
        imkit_proto::ErrorCode::from_u32(424_242),
        imkit_proto::ErrorCode::Unknown
    );
}

#[tokio::test]
async fn codec_over_a_duplex_stream() {
    use futures::{SinkExt, StreamExt};
    use imkit_proto::FrameCodec;
    use tokio_util::codec::{FramedRead, FramedWrite};

    let (a, b) = tokio::io::duplex(64);
    let mut tx = FramedWrite::new(a, FrameCodec::new(FrameLimits::client()));
    let mut rx = FramedRead::new(b, FrameCodec::new(FrameLimits::server()));
    let sent: Vec<Frame> = (0..50)
        .map(|i| Packet::Ping(pb::Ping { client_time_ms: i }).to_frame(PacketId::new()))
        .collect();
    let writer = {
        let sent = sent.clone();
        tokio::spawn(async move {
            for f in sent {
                tx.send(f).await.expect("send");
            }
        })
    };
    for expected in &sent {
        let got = rx.next().await.expect("frame").expect("valid");
        assert_eq!(&got, expected);
    }
    writer.await.expect("writer");
}

/// The hex example in docs/protocol.md is this frame, byte for byte.
#[test]
fn documented_example_frame() {
    let packet = Packet::Ping(pb::Ping {
        client_time_ms: 1_700_000_000_000,
    });
    let id = PacketId([
        0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x00, 0x70, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x01,
    ]);
    let bytes = packet.to_frame(id).to_bytes(MAX).expect("fits");
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        hex,
        "00000023000500010000000001 8bcfe5680070008000000000000001 08 80d095ffbc31"
            .replace(' ', "")
    );
}

/// docs/protocol.md lists every type id with its message name.
#[test]
fn protocol_doc_lists_every_kind() {
    let doc = include_str!("../../docs/protocol.md");
    for kind in PacketKind::ALL {
        let id = format!("`{:#06x}`", kind.id())
            .replace("0x", "0x")
            .to_uppercase()
            .replace("0X", "0x");
        let name = kind.message_name().trim_start_matches("pb::");
        let row = doc
            .lines()
            .find(|l| l.starts_with(&format!("| {id} |")))
            .unwrap_or_else(|| panic!("no row for {id} in docs/protocol.md"));
        assert!(
            row.contains(&format!("`{name}`")),
            "row for {id} names {name}: {row}"
        );
    }
    for code in imkit_proto::ErrorCode::ALL {
        assert!(
            doc.contains(&format!("| {} |", code.as_u32())),
            "code {code:?} documented"
        );
    }
}

/// docs/protocol.md names every message and enum of the `.proto`, so a
/// team implementing a client from the document meets each of them.
#[test]
fn protocol_doc_names_every_message_and_enum() {
    let doc = include_str!("../../docs/protocol.md");
    let proto = include_str!("../proto/imkit.proto");
    let mut missing = Vec::new();
    for line in proto.lines() {
        let line = line.trim_start();
        let Some(rest) = line
            .strip_prefix("message ")
            .or_else(|| line.strip_prefix("enum "))
        else {
            continue;
        };
        let name = rest.split_whitespace().next().unwrap_or_default();
        let named = [
            format!("`{name}`"),
            format!("`{name} "),
            format!("`{name}."),
            format!(".{name} "),
        ];
        if !named.iter().any(|n| doc.contains(n.as_str())) {
            missing.push(name.to_owned());
        }
    }
    assert!(missing.is_empty(), "not in docs/protocol.md: {missing:?}");
}

/// Feeds `bytes` to the decoder in reads of `chunk` bytes; whatever decodes
/// as a packet must encode back to the same packet. Returns the frames.
fn decode_stream(bytes: &[u8], chunk: usize) -> usize {
    let mut buf = BytesMut::new();
    let mut frames = 0;
    for piece in bytes.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            match Frame::decode(&mut buf, 64 * 1024) {
                Ok(Some(frame)) => {
                    frames += 1;
                    if let Ok(packet) = Packet::from_frame(&frame) {
                        let mut again = wire(&packet.to_frame(frame.header.packet_id));
                        let back = Frame::decode(&mut again, MAX)
                            .expect("valid")
                            .expect("whole");
                        assert_eq!(Packet::from_frame(&back).expect("decodes"), packet);
                    }
                }
                Ok(None) => break,
                Err(_) => return frames,
            }
        }
    }
    frames
}

proptest! {
    // The bounded fuzz run of `.ci/run` (cargo test runs it): what
    // fuzz/fuzz_targets/decode.rs does without libFuzzer, 20,000 inputs.
    #![proptest_config(ProptestConfig::with_cases(20_000))]

    /// Arbitrary bytes in arbitrary reads: an error or frames, never a
    /// panic, and what decodes re-encodes to itself.
    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048),
        chunk in 1usize..64,
    ) {
        decode_stream(&bytes, chunk);
    }

    /// Valid headers of every kind over arbitrary payloads, so inputs reach
    /// payload decoding rather than failing at the header.
    #[test]
    fn arbitrary_payloads_behind_valid_headers(
        kind_ix in 0..PacketKind::ALL.len(),
        payload in proptest::collection::vec(any::<u8>(), 0..256),
        chunk in 1usize..64,
    ) {
        let kind = PacketKind::ALL[kind_ix];
        let mut bytes = BytesMut::new();
        bytes.put_u32((MIN_FRAME_LEN + payload.len()) as u32);
        bytes.put_u16(kind.id());
        bytes.put_u16(1);
        bytes.put_u32(if kind.is_response() { 1 } else { 0 });
        bytes.put_slice(&[7u8; 16]);
        bytes.put_slice(&payload);
        let frames = decode_stream(&bytes, chunk);
        prop_assert_eq!(frames, 1);
    }
}

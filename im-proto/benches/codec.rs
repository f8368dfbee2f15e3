//! Encoding and decoding a typical chat frame (a pushed message with about
//! 100 bytes of text). Run with `cargo bench -p imkit-proto --bench codec`.

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use imkit_proto::{Frame, Packet, PacketId, pb};

fn typical_push() -> Packet {
    Packet::MessagePush(pb::MessagePush {
        message: Some(pb::Message {
            message_id: "0193a5c2-7f3e-7c11-8a2b-4f6d2e9b1c0a".into(),
            conversation_id: "d:alice:bob".into(),
            seq: 123_456,
            sender_id: "alice".into(),
            sender_device: "phone".into(),
            client_msg_id: "c-42".into(),
            timestamp_ms: 1_700_000_000_000,
            content: Some(pb::Content {
                body: Some(pb::content::Body::Text(pb::Text {
                    text: "x".repeat(100),
                    mentions: vec![],
                })),
            }),
            recalled: false,
        }),
    })
}

fn bench(c: &mut Criterion) {
    let packet = typical_push();
    let frame = packet.to_frame(PacketId::new());
    let wire = frame.to_bytes(usize::MAX).expect("fits");
    let mut group = c.benchmark_group("chat_frame");
    group.throughput(Throughput::Elements(1));
    group.bench_function("encode", |b| {
        let mut buf = BytesMut::with_capacity(4096);
        b.iter(|| {
            buf.clear();
            let frame = black_box(&packet).to_frame(PacketId::NIL);
            frame.encode(&mut buf, usize::MAX).expect("fits");
            black_box(buf.len())
        })
    });
    group.bench_function("decode", |b| {
        b.iter(|| {
            let mut buf = BytesMut::from(black_box(&wire[..]));
            let frame = Frame::decode(&mut buf, usize::MAX)
                .expect("valid")
                .expect("complete");
            black_box(Packet::from_frame(&frame).expect("decodes"))
        })
    });
    group.finish();
    println!("frame size: {} bytes", wire.len());
}

criterion_group!(benches, bench);
criterion_main!(benches);

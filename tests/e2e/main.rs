//! End-to-end: real servers and clients on 127.0.0.1.
//!
//! This file holds the helpers the tests share (raw frames among them); the
//! tests are in `messaging.rs`, `connections.rs` and `stress.rs`.

#[path = "../common/mod.rs"]
mod common;

mod connections;
mod messaging;
mod stress;

use std::collections::HashSet;
use std::time::Duration;

use bytes::BufMut;
use common::*;
use imkit::client::{ClientOptions, Event, Peer};
use imkit::engine::model::UserId;
use imkit::proto::pb::{self, ReceiptKind};
use imkit::proto::{ErrorCode, Frame, Packet, PacketId};
use imkit::server::Limits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn receipt_of(
    kind: ReceiptKind,
    from: &'static str,
    seq: u64,
) -> impl FnMut(Event) -> Option<pb::ReceiptPush> {
    move |e| match e {
        Event::Receipt(r) if r.kind == kind as i32 && r.user_id == from && r.seq >= seq => Some(r),
        _ => None,
    }
}

async fn sent_delivered_read(addr: &str) {
    let (alice, mut alice_ev) = login(addr, "alice", "phone").await;
    let (bob, mut bob_ev) = login(addr, "bob", "phone").await;
    let ack = alice
        .send_text(Peer::user("bob"), "hello bob")
        .await
        .expect("SENT");
    assert_eq!((ack.seq, ack.duplicate), (1, false));
    let got = messages(&mut bob_ev, 1).await;
    assert_eq!(
        (text_of(&got[0]), got[0].seq, got[0].sender_id.as_str()),
        ("hello bob", 1, "alice")
    );
    // Bob's client acknowledges delivery by itself.
    wait_for(&mut alice_ev, receipt_of(ReceiptKind::Delivered, "bob", 1)).await;
    assert_eq!(
        bob.mark_read(&ack.conversation_id, 1).await.expect("read"),
        1
    );
    wait_for(&mut alice_ev, receipt_of(ReceiptKind::Read, "bob", 1)).await;
    let list = bob.conversations().await.expect("list");
    assert_eq!((list.conversations[0].unread, list.total_unread), (0, 0));
}

/// Writes a frame of raw parts on a socket.
async fn raw_frame(stream: &mut TcpStream, packet: &Packet) {
    let bytes = packet
        .to_frame(PacketId::new())
        .to_bytes(usize::MAX)
        .expect("encode");
    stream.write_all(&bytes).await.expect("write");
}

async fn read_frame(stream: &mut TcpStream) -> Option<Frame> {
    let mut buf = bytes::BytesMut::new();
    loop {
        if let Ok(Some(f)) = Frame::decode(&mut buf, 1 << 24) {
            return Some(f);
        }
        match tokio::time::timeout(WAIT, stream.read_buf(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
            Ok(Ok(_)) => {}
        }
    }
}

async fn raw_login(server: &TestServer, user: &str) -> TcpStream {
    let mut s = TcpStream::connect(server.tcp).await.expect("connect");
    raw_frame(
        &mut s,
        &Packet::Login(pb::LoginRequest {
            token: token(user),
            device_id: "raw".into(),
            ..Default::default()
        }),
    )
    .await;
    let f = read_frame(&mut s).await.expect("login answer");
    assert!(matches!(
        Packet::from_frame(&f),
        Ok(Packet::LoginResponse(_))
    ));
    s
}

async fn closed(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(WAIT, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

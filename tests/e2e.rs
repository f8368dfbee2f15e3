//! End-to-end: real servers and clients on 127.0.0.1.

mod common;

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

#[tokio::test]
async fn sent_then_delivered_then_read_over_tcp() {
    let server = TestServer::start().await;
    sent_delivered_read(&server.tcp.to_string()).await;
    server.stop().await;
}

#[tokio::test]
async fn sent_then_delivered_then_read_over_websocket() {
    let server = TestServer::start().await;
    sent_delivered_read(&server.ws_url()).await;
    server.stop().await;
}

#[tokio::test]
async fn websocket_and_tcp_clients_talk_to_each_other() {
    let server = TestServer::start().await;
    let (alice, _a) = login(&server.ws_url(), "alice", "web").await;
    let (_bob, mut bob_ev) = login(&server.tcp.to_string(), "bob", "phone").await;
    alice
        .send_text(Peer::user("bob"), "from the browser")
        .await
        .expect("SENT");
    assert_eq!(
        text_of(&messages(&mut bob_ev, 1).await[0]),
        "from the browser"
    );
    server.stop().await;
}

/// The server reads WebSocket messages through a 1 KiB buffer; a message
/// many times that size must still arrive whole, both ways.
#[tokio::test]
async fn large_messages_cross_the_websocket_read_buffer() {
    let server = TestServer::start().await;
    let (alice, mut alice_ev) = login(&server.ws_url(), "alice", "web").await;
    let (bob, mut bob_ev) = login(&server.ws_url(), "bob", "web").await;
    let data: Vec<u8> = (0..60_000u32).map(|i| (i % 253) as u8).collect();
    let custom = |data: Vec<u8>| imkit::proto::pb::Content {
        body: Some(imkit::proto::pb::content::Body::Custom(
            imkit::proto::pb::Custom {
                kind: "blob".into(),
                data: data.into(),
            },
        )),
    };
    alice
        .send(Peer::user("bob"), custom(data.clone()))
        .await
        .expect("SENT");
    let got = &messages(&mut bob_ev, 1).await[0];
    let Some(imkit::proto::pb::content::Body::Custom(c)) =
        got.content.as_ref().and_then(|c| c.body.as_ref())
    else {
        panic!("custom content")
    };
    assert_eq!(&c.data[..], &data[..]);
    bob.send(Peer::user("alice"), custom(data.clone()))
        .await
        .expect("SENT");
    assert_eq!(messages(&mut alice_ev, 1).await[0].seq, 2);
    server.stop().await;
}

#[tokio::test]
async fn offline_user_receives_in_order_once_at_login() {
    let server = TestServer::start().await;
    let addr = server.tcp.to_string();
    let (alice, _a) = login(&addr, "alice", "phone").await;
    // Bob has a known device that is offline, and a device he never used.
    let (bob, _b) = login(&addr, "bob", "phone").await;
    bob.close().await;
    for i in 1..=5 {
        alice
            .send_text(Peer::user("bob"), format!("m{i}"))
            .await
            .expect("SENT");
    }
    for device in ["phone", "tablet"] {
        let (_bob, mut ev) = login(&addr, "bob", device).await;
        let got = messages(&mut ev, 5).await;
        assert_eq!(
            got.iter().map(text_of).collect::<Vec<_>>(),
            ["m1", "m2", "m3", "m4", "m5"],
            "{device}"
        );
        assert!(
            drain_messages(&mut ev, Duration::from_millis(300))
                .await
                .is_empty(),
            "{device}: once"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn group_of_three_with_one_member_offline() {
    let server = TestServer::start().await;
    let addr = server.tcp.to_string();
    let (a, mut a_ev) = login(&addr, "a", "d").await;
    let (b, mut b_ev) = login(&addr, "b", "d").await;
    let (c, _c_ev) = login(&addr, "c", "d").await;
    c.close().await;
    let g = a.create_group("trio", &["b", "c"]).await.expect("group");
    assert_eq!(g.member_count, 3);
    let m1 = a.send_to_group(&g.group_id, "hi all").await.expect("SENT");
    let m2 = b.send_to_group(&g.group_id, "hi a").await.expect("SENT");
    assert_eq!((m1.seq, m2.seq), (2, 3), "seq 1 is the creation event");
    let got_b = messages(&mut b_ev, 2).await;
    assert_eq!(got_b.iter().map(|m| m.seq).collect::<Vec<_>>(), [1, 2]);
    let got_a = messages(&mut a_ev, 1).await;
    assert_eq!(text_of(&got_a[0]), "hi a");
    let (_c, mut c_ev) = login(&addr, "c", "d").await;
    let got_c = messages(&mut c_ev, 3).await;
    assert_eq!(got_c.iter().map(|m| m.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(text_of(&got_c[2]), "hi a");
    server.stop().await;
}

#[tokio::test]
async fn recall_reaches_online_and_offline_members() {
    let server = TestServer::start().await;
    let addr = server.tcp.to_string();
    let (a, _a_ev) = login(&addr, "a", "d").await;
    let (_b, mut b_ev) = login(&addr, "b", "d").await;
    let (c, _c_ev) = login(&addr, "c", "d").await;
    let g = a.create_group("g", &["b", "c"]).await.expect("group");
    c.close().await;
    let m = a.send_to_group(&g.group_id, "oops").await.expect("SENT");
    let ev = a
        .recall(&m.conversation_id, &m.message_id)
        .await
        .expect("recall");
    let is_recall_of = |m: &pb::Message, id: &str| {
        matches!(m.content.as_ref().and_then(|c| c.body.as_ref()),
            Some(pb::content::Body::Recall(r)) if r.target_message_id == id)
    };
    let got = messages(&mut b_ev, 3).await;
    assert!(
        is_recall_of(&got[2], &m.message_id) && got[2].seq == ev.seq,
        "online member: {got:?}"
    );
    let (_c, mut c_ev) = login(&addr, "c", "d").await;
    let got = messages(&mut c_ev, 3).await;
    assert!(
        got[1].recalled && text_of(&got[1]).is_empty(),
        "the target arrives recalled"
    );
    assert!(
        is_recall_of(&got[2], &m.message_id),
        "offline member gets the recall event"
    );
    server.stop().await;
}

#[tokio::test]
async fn second_device_sees_own_sends_and_read_cursor() {
    let server = TestServer::start().await;
    let addr = server.tcp.to_string();
    let (alice, _ev) = login(&addr, "alice", "phone").await;
    let (_laptop, mut laptop_ev) = login(&addr, "alice", "laptop").await;
    let (bob, _bob_ev) = login(&addr, "bob", "phone").await;
    alice
        .send_text(Peer::user("bob"), "mine")
        .await
        .expect("SENT");
    let got = messages(&mut laptop_ev, 1).await;
    assert_eq!(
        (text_of(&got[0]), got[0].sender_device.as_str()),
        ("mine", "phone")
    );
    let b = bob
        .send_text(Peer::user("alice"), "reply")
        .await
        .expect("SENT");
    messages(&mut laptop_ev, 1).await;
    alice
        .mark_read(&b.conversation_id, b.seq)
        .await
        .expect("read");
    let r = wait_for(
        &mut laptop_ev,
        receipt_of(ReceiptKind::Read, "alice", b.seq),
    )
    .await;
    assert_eq!(r.conversation_id, b.conversation_id);
    server.stop().await;
}

#[tokio::test]
async fn duplicate_device_login_kicks_the_old_connection() {
    let server = TestServer::start().await;
    let addr = server.tcp.to_string();
    let (old, mut old_ev) = login(&addr, "alice", "phone").await;
    let (_new, _new_ev) = login(&addr, "alice", "phone").await;
    let (reason, _) = wait_for(&mut old_ev, |e| match e {
        Event::Kicked { reason, message } => Some((reason, message)),
        _ => None,
    })
    .await;
    assert_eq!(reason, pb::KickReason::DuplicateLogin);
    // The kicked client does not fight back by reconnecting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        matches!(old.state(), imkit::client::ConnectionState::Closed),
        "{:?}",
        old.state()
    );
    assert_eq!(server.handle.connections(), 1);
    let located = server
        .handle
        .engine()
        .stores()
        .presence
        .locate(&UserId::from("alice"))
        .await
        .expect("locate");
    assert_eq!(
        located.len(),
        1,
        "the new login's presence survives the old one's exit"
    );
    server.stop().await;
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

#[tokio::test]
async fn heartbeat_timeout_closes_a_silent_connection() {
    let limits = Limits {
        heartbeat_interval: Duration::from_millis(200),
        ..Limits::default()
    };
    let server = TestServer::with_limits(limits).await;
    let mut s = raw_login(&server, "quiet").await;
    let online = server
        .handle
        .engine()
        .stores()
        .presence
        .locate(&UserId::from("quiet"))
        .await
        .expect("locate");
    assert_eq!(online.len(), 1);
    let started = std::time::Instant::now();
    assert!(closed(&mut s).await, "silent connection closed");
    assert!(
        started.elapsed() >= Duration::from_millis(350),
        "not before two intervals"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let online = server
        .handle
        .engine()
        .stores()
        .presence
        .locate(&UserId::from("quiet"))
        .await
        .expect("locate");
    assert!(online.is_empty(), "presence removed");
    // A client that pings stays connected past the timeout.
    let (client, _ev) = login(&server.tcp.to_string(), "chatty", "d").await;
    let mut state = client.watch_state();
    state.mark_unchanged();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(client.friends().await.is_ok(), "heartbeats kept it alive");
    // The same connection all along: the client never had to reconnect.
    assert!(
        !state.has_changed().expect("client alive"),
        "the connection dropped and came back: {:?}",
        client.state()
    );
    server.stop().await;
}

#[tokio::test]
async fn login_deadline_closes_with_an_error() {
    let limits = Limits {
        login_deadline: Duration::from_millis(300),
        ..Limits::default()
    };
    let server = TestServer::with_limits(limits).await;
    let mut s = TcpStream::connect(server.tcp).await.expect("connect");
    let f = read_frame(&mut s).await.expect("error frame");
    match Packet::from_frame(&f) {
        Ok(Packet::Error(e)) => assert_eq!(ErrorCode::from_u32(e.code), ErrorCode::LoginTimeout),
        other => panic!("{other:?}"),
    }
    assert!(closed(&mut s).await);
    // Requests before login are refused.
    let mut s = TcpStream::connect(server.tcp).await.expect("connect");
    raw_frame(&mut s, &Packet::FriendList(pb::FriendListRequest {})).await;
    match Packet::from_frame(&read_frame(&mut s).await.expect("answer")) {
        Ok(Packet::Error(e)) => assert_eq!(ErrorCode::from_u32(e.code), ErrorCode::NotLoggedIn),
        other => panic!("{other:?}"),
    }
    // A bad token is refused and the connection closed.
    raw_frame(
        &mut s,
        &Packet::Login(pb::LoginRequest {
            token: "v1.forged".into(),
            device_id: "d".into(),
            ..Default::default()
        }),
    )
    .await;
    match Packet::from_frame(&read_frame(&mut s).await.expect("answer")) {
        Ok(Packet::Error(e)) => assert_eq!(ErrorCode::from_u32(e.code), ErrorCode::InvalidToken),
        other => panic!("{other:?}"),
    }
    assert!(closed(&mut s).await);
    server.stop().await;
}

#[tokio::test]
async fn malformed_frames_get_errors_while_others_keep_working() {
    let server = TestServer::start().await;
    let addr = server.tcp.to_string();
    let (alice, _a) = login(&addr, "alice", "phone").await;
    let (_bob, mut bob_ev) = login(&addr, "bob", "phone").await;
    let mut s = raw_login(&server, "mallory").await;

    // A frame with a reserved flag bit: an error, and the connection stays.
    let mut bad = bytes::BytesMut::new();
    let id = PacketId::new();
    bad.put_u32(28);
    bad.put_u16(0x0005);
    bad.put_u16(1);
    bad.put_u32(1 << 9);
    bad.put_slice(&id.0);
    s.write_all(&bad).await.expect("write");
    let f = read_frame(&mut s).await.expect("error");
    assert_eq!(f.header.packet_id, id, "the error answers the bad frame");
    match Packet::from_frame(&f) {
        Ok(Packet::Error(e)) => assert_eq!(ErrorCode::from_u32(e.code), ErrorCode::BadFlags),
        other => panic!("{other:?}"),
    }
    // An unknown version and an undecodable payload: errors, still open.
    for (version, kind, payload, code) in [
        (2u16, 0x0005u16, &[][..], ErrorCode::UnsupportedVersion),
        (1, 0x0010, &[0xff, 0xff, 0xff][..], ErrorCode::BadPayload),
        (1, 0x7abc, &[][..], ErrorCode::UnknownType),
        (1, 0x0012, &[][..], ErrorCode::UnexpectedPacket),
    ] {
        let mut b = bytes::BytesMut::new();
        b.put_u32(28 + payload.len() as u32);
        b.put_u16(kind);
        b.put_u16(version);
        b.put_u32(0);
        b.put_slice(&PacketId::new().0);
        b.put_slice(payload);
        s.write_all(&b).await.expect("write");
        match Packet::from_frame(&read_frame(&mut s).await.expect("error")) {
            Ok(Packet::Error(e)) => assert_eq!(ErrorCode::from_u32(e.code), code),
            other => panic!("{other:?}"),
        }
    }
    raw_frame(&mut s, &Packet::Ping(pb::Ping { client_time_ms: 1 })).await;
    assert!(matches!(
        Packet::from_frame(&read_frame(&mut s).await.expect("pong")),
        Ok(Packet::Pong(_))
    ));

    // An oversized declared length: an error, then the connection closes.
    s.write_all(&(64u32 << 20).to_be_bytes())
        .await
        .expect("write");
    match Packet::from_frame(&read_frame(&mut s).await.expect("error")) {
        Ok(Packet::Error(e)) => assert_eq!(ErrorCode::from_u32(e.code), ErrorCode::FrameTooLarge),
        other => panic!("{other:?}"),
    }
    assert!(closed(&mut s).await);
    // A length shorter than a header.
    let mut s = raw_login(&server, "mallory2").await;
    s.write_all(&5u32.to_be_bytes()).await.expect("write");
    match Packet::from_frame(&read_frame(&mut s).await.expect("error")) {
        Ok(Packet::Error(e)) => assert_eq!(ErrorCode::from_u32(e.code), ErrorCode::MalformedFrame),
        other => panic!("{other:?}"),
    }
    assert!(closed(&mut s).await);

    // Everyone else is unaffected.
    alice
        .send_text(Peer::user("bob"), "still here")
        .await
        .expect("SENT");
    assert_eq!(text_of(&messages(&mut bob_ev, 1).await[0]), "still here");
    server.stop().await;
}

#[tokio::test]
async fn malformed_websocket_messages_close_only_that_connection() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let server = TestServer::start().await;
    let (alice, _a) = login(&server.tcp.to_string(), "alice", "phone").await;
    let (_bob, mut bob_ev) = login(&server.ws_url(), "bob", "web").await;
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url())
        .await
        .expect("ws");
    ws.send(Message::Text("hello?".into())).await.expect("send");
    let mut got_error = false;
    while let Some(Ok(msg)) = ws.next().await {
        if let Message::Binary(b) = msg {
            let mut buf = bytes::BytesMut::from(&b[..]);
            if let Ok(Some(f)) = Frame::decode(&mut buf, 1 << 20) {
                got_error |= matches!(Packet::from_frame(&f), Ok(Packet::Error(e)) if ErrorCode::from_u32(e.code) == ErrorCode::MalformedFrame);
            }
        }
    }
    assert!(
        got_error,
        "text message answered with an error before closing"
    );
    alice
        .send_text(Peer::user("bob"), "ws still fine")
        .await
        .expect("SENT");
    assert_eq!(text_of(&messages(&mut bob_ev, 1).await[0]), "ws still fine");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_cut_mid_stream_of_1000_sends_loses_and_duplicates_nothing() {
    let server = TestServer::start().await;
    let proxy = Proxy::start(server.tcp).await;
    let options = ClientOptions {
        reconnect_min: Duration::from_millis(50),
        ..ClientOptions::default()
    };
    let (alice, mut alice_ev) =
        login_with(&proxy.addr.to_string(), "alice", "phone", options).await;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (_bob, mut bob_ev) = login(&server.tcp.to_string(), "bob", "phone").await;

    let sends = (0..1000).map(|i| {
        let alice = alice.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let content = pb::Content {
                body: Some(pb::content::Body::Text(pb::Text {
                    text: format!("{i}"),
                    mentions: vec![],
                })),
            };
            let r = alice
                .send_with_id(Peer::user("bob"), content, format!("c{i:04}"))
                .await;
            done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            r
        })
    });
    let sends: Vec<_> = sends.collect();
    // Cut the connection once Bob has seen some of the stream.
    messages(&mut bob_ev, 200).await;
    proxy.cut();
    let acked_at_cut = done.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        acked_at_cut < 1000,
        "the cut came mid-stream ({acked_at_cut} acknowledged)"
    );
    wait_for(&mut alice_ev, |e| {
        matches!(e, Event::Disconnected { .. }).then_some(())
    })
    .await;
    wait_for(&mut alice_ev, |e| {
        matches!(e, Event::Connected { .. }).then_some(())
    })
    .await;
    let mut acked = HashSet::new();
    for s in sends {
        let ack = s.await.expect("task").expect("every send is acknowledged");
        acked.insert(ack.seq);
    }
    assert_eq!(acked.len(), 1000, "1000 distinct seqs");
    assert_eq!(acked.iter().max(), Some(&1000), "gap-free: 1..=1000");
    // Bob (who got the first 200 already) sees the rest, in order, once.
    let mut rest = messages(&mut bob_ev, 800).await;
    rest.extend(drain_messages(&mut bob_ev, Duration::from_millis(500)).await);
    assert_eq!(rest.len(), 800, "no duplicates");
    let seqs: Vec<u64> = rest.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (201..=1000).collect::<Vec<_>>(), "in order");
    let history = _bob
        .history("d:alice:bob", 0, false, 500)
        .await
        .expect("history");
    assert_eq!(history.messages.len(), 500);
    let mut texts: Vec<String> = Vec::new();
    let mut from = 0;
    loop {
        let page = _bob
            .history("d:alice:bob", from, false, 500)
            .await
            .expect("history");
        texts.extend(page.messages.iter().map(|m| text_of(m).to_owned()));
        from = page.messages.last().map_or(from, |m| m.seq);
        if !page.has_more {
            break;
        }
    }
    let unique: HashSet<&String> = texts.iter().collect();
    assert_eq!(
        (texts.len(), unique.len()),
        (1000, 1000),
        "each send stored exactly once"
    );
    drop(proxy);
    server.stop().await;
}

#[tokio::test]
async fn graceful_shutdown_tells_clients_and_clears_presence() {
    let server = TestServer::start().await;
    let (_c, mut ev) = login_with(
        &server.tcp.to_string(),
        "alice",
        "phone",
        ClientOptions {
            reconnect: false,
            ..Default::default()
        },
    )
    .await;
    let engine = server.handle.engine().clone();
    server.stop().await;
    let reason = wait_for(&mut ev, |e| match e {
        Event::Kicked { reason, .. } => Some(reason),
        _ => None,
    })
    .await;
    assert_eq!(reason, pb::KickReason::ServerShutdown);
    assert!(
        engine
            .stores()
            .presence
            .locate(&UserId::from("alice"))
            .await
            .expect("locate")
            .is_empty()
    );
}

#[tokio::test]
async fn rate_limit_answers_with_an_error_and_the_client_retries_sends() {
    let limits = Limits {
        rate_per_second: 20,
        rate_burst: 20,
        ..Limits::default()
    };
    let server = TestServer::with_limits(limits).await;
    let (alice, _a) = login(&server.tcp.to_string(), "alice", "phone").await;
    let (bob, mut bob_ev) = login(&server.tcp.to_string(), "bob", "phone").await;
    // Plain requests beyond the burst are refused with RateLimited.
    let mut limited = 0;
    for _ in 0..40 {
        if let Err(e) = bob.friends().await {
            assert_eq!(e.code(), Some(ErrorCode::RateLimited));
            limited += 1;
        }
    }
    assert!(limited > 0, "some requests were rate limited");
    // Sends are retried by the client until accepted: all 60 arrive.
    let sends: Vec<_> = (0..60)
        .map(|i| {
            let alice = alice.clone();
            tokio::spawn(async move { alice.send_text(Peer::user("bob"), format!("{i}")).await })
        })
        .collect();
    for s in sends {
        s.await.expect("task").expect("SENT eventually");
    }
    let got = messages(&mut bob_ev, 60).await;
    assert_eq!(
        got.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=60).collect::<Vec<_>>()
    );
    server.stop().await;
}

/// A sender whose frames arrive all at once must not starve the writers of
/// a group it fans out to: the members' queues stay short, nobody is kicked
/// as a slow consumer, and everyone gets every message in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_burst_to_a_large_group_reaches_everyone_without_kicks() {
    const MEMBERS: usize = 100;
    const BURST: usize = 300;
    let limits = Limits {
        queue_len: 128,
        rate_per_second: 1_000_000,
        rate_burst: 1_000_000,
        ..Limits::default()
    };
    let server = TestServer::with_limits(limits).await;
    let names: Vec<String> = (0..MEMBERS).map(|i| format!("m{i}")).collect();
    let mut readers = Vec::new();
    for name in &names {
        let mut s = raw_login(&server, name).await;
        readers.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            let mut buf = bytes::BytesMut::new();
            while seqs.len() < BURST {
                match Frame::decode(&mut buf, 1 << 20) {
                    Ok(Some(f)) => match Packet::from_frame(&f) {
                        Ok(Packet::MessagePush(p)) => {
                            seqs.push(p.message.map(|m| m.seq).unwrap_or(0));
                        }
                        Ok(Packet::Kicked(k)) => return Err(format!("kicked: {}", k.message)),
                        _ => {}
                    },
                    Ok(None) => match tokio::time::timeout(WAIT, s.read_buf(&mut buf)).await {
                        Ok(Ok(n)) if n > 0 => {}
                        _ => return Err(format!("closed or silent after {}", seqs.len())),
                    },
                    Err(e) => return Err(format!("bad frame: {e}")),
                }
            }
            Ok(seqs)
        }));
    }
    let (owner, mut owner_events) = login(&server.tcp.to_string(), "owner", "phone").await;
    tokio::spawn(async move { while owner_events.recv().await.is_some() {} });
    let members: Vec<&str> = names.iter().map(String::as_str).collect();
    let group = owner.create_group("big", &members).await.expect("group");
    // The whole burst in one write, so the server finds it all buffered.
    let mut burst = bytes::BytesMut::new();
    for i in 0..BURST {
        let send = Packet::Send(pb::SendRequest {
            client_msg_id: format!("burst-{i}"),
            to: Some(pb::send_request::To::GroupId(group.group_id.clone())),
            content: Some(pb::Content {
                body: Some(pb::content::Body::Text(pb::Text {
                    text: format!("message {i}"),
                    mentions: vec![],
                })),
            }),
        });
        burst.put(
            send.to_frame(PacketId::new())
                .to_bytes(usize::MAX)
                .expect("encode"),
        );
    }
    let mut sender = raw_login(&server, "owner").await;
    sender.write_all(&burst).await.expect("write burst");
    for (i, r) in readers.into_iter().enumerate() {
        let seqs = r
            .await
            .expect("reader task")
            .unwrap_or_else(|e| panic!("m{i}: {e}"));
        let first = seqs[0];
        assert!(
            seqs.iter().enumerate().all(|(k, s)| *s == first + k as u64),
            "m{i} got a gap or reordering"
        );
    }
    server.stop().await;
}

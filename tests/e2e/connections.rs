//! A connection's life: duplicate logins, heartbeats, the login deadline,
//! malformed frames and messages, and a graceful shutdown.

use super::*;

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

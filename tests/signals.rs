//! Application signals end to end: relayed to the other members' connected
//! devices with the sender named, never stored, never answered, refused
//! with the errors a send gets.

mod common;

use std::time::Duration;

use common::*;
use imkit::client::{Event, Peer};
use imkit::proto::{ErrorCode, Packet, pb};

fn signal_to_user(to: &str, kind: &str, data: &[u8]) -> Packet {
    Packet::Signal(pb::Signal {
        to: Some(pb::signal::To::ToUserId(to.into())),
        kind: kind.into(),
        data: data.to_vec().into(),
        ..Default::default()
    })
}

/// The next signal among `events`, skipping other events.
async fn next_signal(events: &mut imkit::client::Events) -> pb::Signal {
    wait_for(events, |e| match e {
        Event::Signal(s) => Some(s),
        _ => None,
    })
    .await
}

/// Every event up to and including the message whose text is `barrier`:
/// what arrived before it arrived before the barrier was sent.
async fn events_until(events: &mut imkit::client::Events, barrier: &str) -> Vec<Event> {
    let mut seen = Vec::new();
    loop {
        let ev = tokio::time::timeout(WAIT, events.recv())
            .await
            .expect("timed out before the barrier")
            .expect("event stream ended");
        let done = matches!(&ev, Event::Message(m) if text_of(m) == barrier);
        seen.push(ev);
        if done {
            return seen;
        }
    }
}

#[tokio::test]
async fn a_signal_reaches_every_connected_device_of_the_peer_and_is_not_stored() {
    let server = TestServer::start().await;
    let addr = server.tcp.to_string();
    let (alice, _alice_events) = login(&addr, "alice", "phone").await;
    let (bob_phone, mut phone) = login(&addr, "bob", "phone").await;
    let (_bob_tablet, mut tablet) = login(&addr, "bob", "tablet").await;

    alice
        .signal(Peer::user("bob"), "call.invite", &b"room-7"[..])
        .await
        .expect("signal");
    for events in [&mut phone, &mut tablet] {
        let s = next_signal(events).await;
        assert_eq!(s.kind, "call.invite");
        assert_eq!(&s.data[..], b"room-7");
        assert_eq!(s.user_id, "alice");
        assert_eq!(s.device_id, "phone");
        assert_eq!(s.conversation_id, "d:alice:bob");
        assert!(s.to.is_none(), "the push names the conversation, not `to`");
    }
    // Nothing was stored: no conversation, nothing to sync, no unread.
    assert!(
        alice
            .conversations()
            .await
            .expect("list")
            .conversations
            .is_empty()
    );
    assert!(
        bob_phone
            .conversations()
            .await
            .expect("list")
            .conversations
            .is_empty()
    );
    server.stop().await;
}

#[tokio::test]
async fn a_group_signal_reaches_the_other_members_and_not_the_senders_devices() {
    let server = TestServer::start().await;
    let addr = server.tcp.to_string();
    let (alice, _a) = login(&addr, "alice", "phone").await;
    let (_alice_tablet, mut alice_tablet) = login(&addr, "alice", "tablet").await;
    let (_carol, mut carol) = login(&addr, "carol", "phone").await;
    let (_dave, mut dave) = login(&addr, "dave", "phone").await;
    let group = alice
        .create_group("standup", &["carol", "dave"])
        .await
        .expect("group");

    alice
        .signal(Peer::group(&group.group_id), "reaction", &b"+1"[..])
        .await
        .expect("signal");
    alice
        .send_text(Peer::group(&group.group_id), "barrier")
        .await
        .expect("send");
    for events in [&mut carol, &mut dave] {
        let seen = events_until(events, "barrier").await;
        let signals: Vec<_> = seen
            .iter()
            .filter_map(|e| match e {
                Event::Signal(s) => Some(s),
                _ => None,
            })
            .collect();
        assert_eq!(signals.len(), 1, "{seen:?}");
        assert_eq!(signals[0].conversation_id, format!("g:{}", group.group_id));
        assert_eq!(signals[0].user_id, "alice");
    }
    // The sender's other device gets the message (its own send) but not
    // the signal.
    let seen = events_until(&mut alice_tablet, "barrier").await;
    assert!(
        !seen.iter().any(|e| matches!(e, Event::Signal(_))),
        "{seen:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_device_that_connects_later_never_gets_a_signal() {
    let server = TestServer::start().await;
    let addr = server.tcp.to_string();
    let (alice, _a) = login(&addr, "alice", "phone").await;
    alice
        .signal(Peer::user("bob"), "call.invite", &b"room-7"[..])
        .await
        .expect("signal");
    // Let the relay finish (there is no answer to wait for).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_bob, mut bob) = login(&addr, "bob", "phone").await;
    alice
        .send_text(Peer::user("bob"), "barrier")
        .await
        .expect("send");
    let seen = events_until(&mut bob, "barrier").await;
    assert!(
        !seen.iter().any(|e| matches!(e, Event::Signal(_))),
        "{seen:?}"
    );
    server.stop().await;
}

/// A signal that goes through is not answered; one the server refuses gets
/// an error with its packet id and the code a send would get.
#[tokio::test]
async fn refused_signals_get_an_error_and_accepted_ones_nothing() {
    let server = TestServer::start().await;
    let mut alice = RawConn::login(server.tcp, "alice", "phone").await;
    let mut bob = RawConn::login(server.tcp, "bob", "phone").await;

    // (request, the code it gets; None: relayed, no answer)
    let limit = imkit::engine::EngineConfig::default().max_signal_bytes;
    let cases: Vec<(Packet, Option<ErrorCode>)> = vec![
        (signal_to_user("bob", "ok", b"x"), None),
        (
            signal_to_user("bob", "", b"x"),
            Some(ErrorCode::InvalidArgument),
        ),
        (
            signal_to_user("bob", "big", &vec![7u8; limit - 2]),
            Some(ErrorCode::InvalidArgument),
        ),
        (signal_to_user("bob", "fits", &vec![7u8; limit - 4]), None),
        (
            signal_to_user("alice", "self", b"x"),
            Some(ErrorCode::InvalidArgument),
        ),
        (
            Packet::Signal(pb::Signal {
                to: Some(pb::signal::To::ToGroupId("nope".into())),
                kind: "k".into(),
                ..Default::default()
            }),
            Some(ErrorCode::NotFound),
        ),
        (
            Packet::Signal(pb::Signal {
                kind: "k".into(),
                ..Default::default()
            }),
            Some(ErrorCode::InvalidArgument),
        ),
    ];
    for (packet, want) in cases {
        let frame = packet.to_frame(imkit::proto::PacketId::new());
        let id = frame.header.packet_id;
        alice.send_frame(&frame).await;
        // A ping behind it: its Pong comes first when the signal is not
        // answered.
        alice
            .send(&Packet::Ping(pb::Ping { client_time_ms: 1 }))
            .await;
        let first = alice.next().await.expect("an answer");
        match want {
            None => assert!(
                matches!(Packet::from_frame(&first), Ok(Packet::Pong(_))),
                "{first:?}"
            ),
            Some(code) => {
                assert_eq!(first.header.packet_id, id);
                match Packet::from_frame(&first) {
                    Ok(Packet::Error(e)) => assert_eq!(e.code, code as u32, "{}", e.message),
                    other => panic!("{other:?}"),
                }
                assert!(matches!(alice.packet().await, Some(Packet::Pong(_))));
            }
        }
    }
    // Bob got exactly the two that went through, in order.
    for kind in ["ok", "fits"] {
        match bob.packet().await {
            Some(Packet::Signal(s)) => assert_eq!(s.kind, kind),
            other => panic!("{other:?}"),
        }
    }

    // A group alice is not in.
    bob.send(&Packet::GroupCreate(pb::GroupCreateRequest {
        name: "b-team".into(),
        member_ids: vec!["carol".into()],
        ..Default::default()
    }))
    .await;
    let group = match bob.packet().await {
        Some(Packet::GroupCreateResponse(r)) => r.group.expect("group").group_id,
        other => panic!("{other:?}"),
    };
    alice
        .send(&Packet::Signal(pb::Signal {
            to: Some(pb::signal::To::ToGroupId(group)),
            kind: "k".into(),
            ..Default::default()
        }))
        .await;
    match alice.packet().await {
        Some(Packet::Error(e)) => assert_eq!(e.code, ErrorCode::NotMember as u32),
        other => panic!("{other:?}"),
    }

    // Once bob blocks alice, her signals to him are refused as sends are.
    bob.send(&Packet::Block(pb::BlockRequest {
        user_id: "alice".into(),
    }))
    .await;
    assert!(matches!(bob.packet().await, Some(Packet::BlockResponse(_))));
    alice.send(&signal_to_user("bob", "ok", b"x")).await;
    match alice.packet().await {
        Some(Packet::Error(e)) => assert_eq!(e.code, ErrorCode::Blocked as u32),
        other => panic!("{other:?}"),
    }
    server.stop().await;
}

/// A large group's signals reuse the devices its messages were fanned out
/// to (kept while presence is unchanged), less the sender's other devices;
/// a member who reconnects or adds a device between two signals gets the
/// second on the new connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_group_s_signals_reach_every_member_and_follow_reconnects() {
    // Above the size whose audience the engine keeps (256).
    const MEMBERS: usize = 300;
    let server = TestServer::start().await;
    let addr = server.tcp.to_string();
    let (owner, _owner_events) = login(&addr, "owner", "phone").await;
    let (_owner_tablet, mut owner_tablet) = login(&addr, "owner", "tablet").await;
    let names: Vec<String> = (0..MEMBERS).map(|i| format!("m{i}")).collect();
    let mut members = Vec::new();
    for name in &names {
        members.push(login(&addr, name, "phone").await);
    }
    let list: Vec<&str> = names.iter().map(String::as_str).collect();
    let group = owner.create_group("town", &list).await.expect("group");
    let to = || Peer::group(&group.group_id);

    // A message first: its fan-out is what the signal reuses.
    owner.send_text(to(), "one").await.expect("send");
    owner.signal(to(), "wave", &b"1"[..]).await.expect("signal");
    owner.send_text(to(), "barrier").await.expect("send");
    for (i, (_, events)) in members.iter_mut().enumerate() {
        let s = next_signal(events).await;
        assert_eq!(
            (s.kind.as_str(), &s.data[..]),
            ("wave", &b"1"[..]),
            "{}",
            names[i]
        );
    }
    let seen = events_until(&mut owner_tablet, "barrier").await;
    assert!(
        !seen.iter().any(|e| matches!(e, Event::Signal(_))),
        "the sender's other device got its own signal: {seen:?}"
    );

    // m7 connects again as the same device; m9 adds a tablet.
    let (_m7, mut m7) = login(&addr, "m7", "phone").await;
    let (_m9_tablet, mut m9_tablet) = login(&addr, "m9", "tablet").await;
    owner.signal(to(), "wave", &b"2"[..]).await.expect("signal");
    for (who, events) in [("m7, again", &mut m7), ("m9's tablet", &mut m9_tablet)] {
        let s = next_signal(events).await;
        assert_eq!(&s.data[..], b"2", "{who}");
    }
    for (i, (_, events)) in members.iter_mut().enumerate() {
        if i != 7 {
            let s = next_signal(events).await;
            assert_eq!(&s.data[..], b"2", "{}", names[i]);
        }
    }
    server.stop().await;
}

//! Messages between clients: receipts over TCP and WebSocket, large bodies,
//! offline members, groups, recall and a second device.

use super::*;

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

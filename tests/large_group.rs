//! A group of 5,000 on two nodes sharing Redis: members online on either
//! node and offline. Every member gets every message once, in one order;
//! offline members catch up at login; and a message costs one history row,
//! not a write per member (read diffusion). And a large group's members
//! who reconnect between messages are reached on their new connection.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::BytesMut;
use common::*;
use imkit::client::Peer;
use imkit::engine::model::{ConversationId, DeviceId, UserId};
use imkit::engine::testing::redis_server::TestRedis;
use imkit::proto::{Frame, Packet, PacketId, pb};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MEMBERS: usize = 5_000;
/// Members connected while the messages are sent, per node.
const ONLINE_PER_NODE: usize = 300;
/// Offline members who log in afterwards, per node.
const LATE_PER_NODE: usize = 100;
/// Messages sent from each node.
const PER_SENDER: usize = 10;

/// Logs in over a raw socket (the login's answer is read, anything pushed
/// with it is kept in the buffer).
async fn raw_login(addr: std::net::SocketAddr, user: &str) -> (TcpStream, BytesMut) {
    raw_login_as(addr, user, "raw").await
}

/// [`raw_login`] as another device.
async fn raw_login_as(
    addr: std::net::SocketAddr,
    user: &str,
    device: &str,
) -> (TcpStream, BytesMut) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let login = Packet::Login(pb::LoginRequest {
        token: token(user),
        device_id: device.into(),
        ..Default::default()
    });
    let bytes = login
        .to_frame(PacketId::new())
        .to_bytes(usize::MAX)
        .expect("encode");
    s.write_all(&bytes).await.expect("write");
    let mut buf = BytesMut::new();
    loop {
        if let Some(f) = Frame::decode(&mut buf, 1 << 24).expect("frame") {
            match Packet::from_frame(&f) {
                Ok(Packet::LoginResponse(_)) => return (s, buf),
                other => panic!("{user}: expected the login answer, got {other:?}"),
            }
        }
        let n = tokio::time::timeout(WAIT, s.read_buf(&mut buf))
            .await
            .expect("login answer in time")
            .expect("read");
        assert!(n > 0, "{user}: closed during login");
    }
}

/// Reads pushed messages of `conv` until `want` of them, or until the
/// connection is silent for a while; returns seq → text (a repeat fails).
async fn collect(
    mut s: TcpStream,
    mut buf: BytesMut,
    conv: String,
    want: usize,
    who: String,
) -> BTreeMap<u64, String> {
    let mut got = BTreeMap::new();
    while got.len() < want {
        match Frame::decode(&mut buf, 1 << 24).expect("frame") {
            Some(f) => {
                if let Ok(Packet::MessagePush(p)) = Packet::from_frame(&f)
                    && let Some(m) = p.message
                    && m.conversation_id == conv
                {
                    let text = match m.content.and_then(|c| c.body) {
                        Some(pb::content::Body::Text(t)) => t.text,
                        _ => String::from("(event)"),
                    };
                    assert!(
                        got.insert(m.seq, text).is_none(),
                        "{who} got seq {} twice",
                        m.seq
                    );
                }
            }
            None => match tokio::time::timeout(Duration::from_secs(20), s.read_buf(&mut buf)).await
            {
                Ok(Ok(n)) if n > 0 => {}
                _ => break,
            },
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_of_5000_across_two_nodes_online_and_offline() {
    let Some(redis) = TestRedis::start() else {
        return;
    };
    let ns = redis.namespace();
    let nodes = [
        TestServer::cluster_node(&redis.url, &ns, "node-a").await,
        TestServer::cluster_node(&redis.url, &ns, "node-b").await,
    ];
    let names: Vec<String> = (0..MEMBERS).map(|i| format!("m{i}")).collect();
    let (owner, _owner_ev) = login(&nodes[0].tcp.to_string(), "owner", "phone").await;
    let members: Vec<&str> = names.iter().map(String::as_str).collect();
    let group = owner.create_group("big", &members).await.expect("group");
    let conv = format!("g:{}", group.group_id);
    assert_eq!(group.member_count as usize, MEMBERS + 1);

    // Members online on each node: the first ONLINE_PER_NODE on node a,
    // the next on node b.
    let mut online = Vec::new();
    for (n, node) in nodes.iter().enumerate() {
        for i in 0..ONLINE_PER_NODE {
            let name = &names[n * ONLINE_PER_NODE + i];
            let (s, buf) = raw_login(node.tcp, name).await;
            // The group's creation arrives at login (it happened before),
            // then every message live.
            online.push(tokio::spawn(collect(
                s,
                buf,
                conv.clone(),
                2 * PER_SENDER + 1,
                name.clone(),
            )));
        }
    }

    // Two senders at once, one on each node: the owner, and a member whose
    // SDK client is on node b.
    let sender_b_name = &names[MEMBERS - 1];
    let (sender_b, _b_ev) = login(&nodes[1].tcp.to_string(), sender_b_name, "phone").await;
    let group_id = group.group_id.clone();
    let a = {
        let owner = owner.clone();
        let g = group_id.clone();
        tokio::spawn(async move {
            for i in 0..PER_SENDER {
                owner
                    .send(Peer::group(g.clone()), text(&format!("a{i}")))
                    .await
                    .expect("SENT");
            }
        })
    };
    let b = tokio::spawn(async move {
        for i in 0..PER_SENDER {
            sender_b
                .send(Peer::group(group_id.clone()), text(&format!("b{i}")))
                .await
                .expect("SENT");
        }
        sender_b
    });
    a.await.expect("sender a");
    let _sender_b = b.await.expect("sender b");

    // Every online member has every message once, and all in one order.
    let mut order: Option<Vec<(u64, String)>> = None;
    for (i, r) in online.into_iter().enumerate() {
        let got = r.await.expect("reader");
        let texts: Vec<(u64, String)> = got.into_iter().filter(|(_, t)| t != "(event)").collect();
        assert_eq!(
            texts.len(),
            2 * PER_SENDER,
            "online member {i} has {} of {} messages",
            texts.len(),
            2 * PER_SENDER
        );
        match &order {
            None => order = Some(texts),
            Some(first) => assert_eq!(&texts, first, "online member {i} saw another order"),
        }
    }
    let order = order.expect("some member");
    for prefix in ["a", "b"] {
        let mine: Vec<&String> = order
            .iter()
            .map(|(_, t)| t)
            .filter(|t| t.starts_with(prefix))
            .collect();
        let expected: Vec<String> = (0..PER_SENDER).map(|i| format!("{prefix}{i}")).collect();
        assert_eq!(
            mine.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            expected.iter().map(String::as_str).collect::<Vec<_>>(),
            "each sender's messages in the order sent"
        );
    }

    // Offline members log in afterwards, on either node: each gets what it
    // missed (the group's creation and every message), once, in the same
    // order.
    let first_offline = 2 * ONLINE_PER_NODE;
    let mut late = Vec::new();
    for (n, node) in nodes.iter().enumerate() {
        for i in 0..LATE_PER_NODE {
            let name = names[first_offline + n * LATE_PER_NODE + i].clone();
            let (s, buf) = raw_login(node.tcp, &name).await;
            late.push(tokio::spawn(collect(
                s,
                buf,
                conv.clone(),
                2 * PER_SENDER + 1,
                name,
            )));
        }
    }
    for (i, r) in late.into_iter().enumerate() {
        let got = r.await.expect("late reader");
        let texts: Vec<(u64, String)> = got
            .iter()
            .filter(|(_, t)| *t != "(event)")
            .map(|(s, t)| (*s, t.clone()))
            .collect();
        assert_eq!(
            texts, order,
            "late member {i} caught up with everything, in order"
        );
        assert_eq!(got.keys().next(), Some(&1), "from the group's creation");
    }

    // Every other member is owed the same, from their cursors: nothing was
    // written for any of them.
    let stores = nodes[0].handle.engine().stores().clone();
    let conversation = ConversationId::new(conv.clone());
    let max_seq = order.last().map_or(0, |(s, _)| *s);
    for name in &names[first_offline + 2 * LATE_PER_NODE..MEMBERS - 1] {
        let p = stores
            .conversations
            .positions(
                &UserId::from(name.as_str()),
                &DeviceId::from("raw"),
                std::slice::from_ref(&conversation),
            )
            .await
            .expect("positions");
        assert_eq!(
            (p[0].max_seq, p[0].delivered, p[0].read, p[0].unread),
            (max_seq, None, 0, (2 * PER_SENDER) as u64),
            "{name} is owed every message and has read none"
        );
    }
    // Read diffusion: the only delivered cursors written in the whole
    // namespace are the few devices that acknowledged something.
    let client = redis::Client::open(redis.url.as_str()).expect("client");
    let mut c = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let cursors: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{ns}dl:*"))
        .query_async(&mut c)
        .await
        .expect("keys");
    assert!(
        cursors.len() <= 4,
        "per-member writes: {} delivered-cursor keys for a group of {MEMBERS}",
        cursors.len()
    );
    for n in nodes {
        n.stop().await;
    }
}

/// Reads pushes until a message of `conv` with text `want` arrives; fails
/// after [`WAIT`] without it.
async fn until_text(s: &mut TcpStream, buf: &mut BytesMut, conv: &str, want: &str, who: &str) {
    loop {
        while let Some(f) = Frame::decode(buf, 1 << 24).expect("frame") {
            if let Ok(Packet::MessagePush(p)) = Packet::from_frame(&f)
                && let Some(m) = p.message
                && m.conversation_id == conv
                && matches!(m.content.and_then(|c| c.body), Some(pb::content::Body::Text(t)) if t.text == want)
            {
                return;
            }
        }
        let n = tokio::time::timeout(WAIT, s.read_buf(buf))
            .await
            .unwrap_or_else(|_| panic!("{who}: no {want:?} in time"))
            .expect("read");
        assert!(n > 0, "{who}: closed before {want:?}");
    }
}

/// The engine keeps a large group's located devices between messages, and
/// the router their connections: a device that reconnects in between (same
/// user and device, a new connection) must get the next message live on its
/// new connection, not on the old one, and a member's new device must get
/// it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_who_reconnect_or_add_a_device_between_messages_of_a_large_group_get_the_next_live()
{
    const ONLINE: usize = 300;
    let server = TestServer::start().await;
    let names: Vec<String> = (0..ONLINE).map(|i| format!("m{i}")).collect();
    let (owner, _owner_ev) = login(&server.tcp.to_string(), "owner", "phone").await;
    let members: Vec<&str> = names.iter().map(String::as_str).collect();
    let group = owner.create_group("big", &members).await.expect("group");
    let conv = format!("g:{}", group.group_id);
    let mut conns = Vec::new();
    for name in &names {
        conns.push(raw_login(server.tcp, name).await);
    }
    let send = |t: &'static str| {
        let (owner, g) = (owner.clone(), group.group_id.clone());
        async move { owner.send(Peer::group(g), text(t)).await.expect("SENT") }
    };

    send("one").await;
    for (i, (s, buf)) in conns.iter_mut().enumerate() {
        until_text(s, buf, &conv, "one", &names[i]).await;
    }
    // m7 connects again as the same device: its old connection is kicked.
    let (mut s7, mut buf7) = raw_login(server.tcp, "m7").await;
    // Its new connection catches up with "one" (never acknowledged), so
    // what comes next can only come live.
    until_text(&mut s7, &mut buf7, &conv, "one", "m7, again").await;
    // m9 adds a tablet.
    let (mut s9, mut buf9) = raw_login_as(server.tcp, "m9", "tablet").await;
    until_text(&mut s9, &mut buf9, &conv, "one", "m9's tablet").await;
    send("two").await;
    until_text(&mut s7, &mut buf7, &conv, "two", "m7, again").await;
    until_text(&mut s9, &mut buf9, &conv, "two", "m9's tablet").await;
    for (i, (s, buf)) in conns.iter_mut().enumerate() {
        if i != 7 {
            until_text(s, buf, &conv, "two", &names[i]).await;
        }
    }
    server.stop().await;
}

fn text(s: &str) -> pb::Content {
    pb::Content {
        body: Some(pb::content::Body::Text(pb::Text {
            text: s.into(),
            mentions: vec![],
        })),
    }
}

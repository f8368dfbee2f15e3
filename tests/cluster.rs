//! Several server nodes sharing a real Redis: users on different nodes
//! talk, groups span nodes, offline messages follow a user to another node,
//! and a second login on another node kicks the first.

mod common;

use common::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use imkit::client::{ClientOptions, Event, Peer};
use imkit::engine::Target;
use imkit::engine::model::{NodeId, UserId};
use imkit::engine::testing::redis_server::TestRedis;
use imkit::proto::pb::{self, ReceiptKind};
use imkit::server::{ClusterBus, LocalNode};
use tokio_util::sync::CancellationToken;

async fn nodes(redis: &TestRedis, n: usize) -> Vec<TestServer> {
    let ns = redis.namespace();
    let mut out = Vec::new();
    for i in 0..n {
        out.push(TestServer::cluster_node(&redis.url, &ns, &format!("node-{i}")).await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_to_one_across_two_nodes_with_all_receipts() {
    let Some(redis) = TestRedis::start() else {
        return;
    };
    let nodes = nodes(&redis, 2).await;
    let (alice, mut alice_ev) = login(&nodes[0].tcp.to_string(), "alice", "phone").await;
    let (bob, mut bob_ev) = login(&nodes[1].ws_url(), "bob", "phone").await;
    let ack = alice
        .send_text(Peer::user("bob"), "across nodes")
        .await
        .expect("SENT");
    let got = messages(&mut bob_ev, 1).await;
    assert_eq!((text_of(&got[0]), got[0].seq), ("across nodes", 1));
    wait_for(&mut alice_ev, |e| {
        matches!(e, Event::Receipt(r) if r.kind == ReceiptKind::Delivered as i32 && r.seq == 1)
            .then_some(())
    })
    .await;
    bob.mark_read(&ack.conversation_id, 1).await.expect("read");
    wait_for(&mut alice_ev, |e| {
        matches!(e, Event::Receipt(r) if r.kind == ReceiptKind::Read as i32 && r.seq == 1)
            .then_some(())
    })
    .await;
    // And back.
    bob.send_text(Peer::user("alice"), "and back")
        .await
        .expect("SENT");
    assert_eq!(text_of(&messages(&mut alice_ev, 1).await[0]), "and back");
    for n in nodes {
        n.stop().await;
    }
}

/// A live-only signal crosses the bus like any push: bob on another node
/// gets it with alice's device named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_reaches_a_device_on_another_node() {
    let Some(redis) = TestRedis::start() else {
        return;
    };
    let nodes = nodes(&redis, 2).await;
    let (alice, _alice_ev) = login(&nodes[0].tcp.to_string(), "alice", "phone").await;
    let (_bob, mut bob_ev) = login(&nodes[1].tcp.to_string(), "bob", "laptop").await;
    alice
        .signal(Peer::user("bob"), "call.invite", &b"room-9"[..])
        .await
        .expect("signal");
    let s = wait_for(&mut bob_ev, |e| match e {
        Event::Signal(s) => Some(s),
        _ => None,
    })
    .await;
    assert_eq!(
        (
            s.kind.as_str(),
            &s.data[..],
            s.user_id.as_str(),
            s.device_id.as_str()
        ),
        ("call.invite", &b"room-9"[..], "alice", "phone")
    );
    for n in nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_spread_over_three_nodes() {
    let Some(redis) = TestRedis::start() else {
        return;
    };
    let nodes = nodes(&redis, 3).await;
    let mut clients = Vec::new();
    for (i, user) in ["a", "b", "c"].iter().enumerate() {
        clients.push(login(&nodes[i].tcp.to_string(), user, "d").await);
    }
    let g = clients[0]
        .0
        .create_group("spread", &["b", "c"])
        .await
        .expect("group");
    for (i, (client, _)) in clients.iter().enumerate() {
        client
            .send_to_group(&g.group_id, format!("from {i}"))
            .await
            .expect("SENT");
    }
    for (i, (_, events)) in clients.iter_mut().enumerate() {
        let got = messages(events, if i == 0 { 2 } else { 3 }).await;
        let texts: Vec<&str> = got
            .iter()
            .map(text_of)
            .filter(|t| t.starts_with("from"))
            .collect();
        let expected: Vec<String> = (0..3)
            .filter(|j| *j != i)
            .map(|j| format!("from {j}"))
            .collect();
        assert_eq!(
            texts, expected,
            "member {i} sees the others' messages in order"
        );
        let seqs: Vec<u64> = got.iter().map(|m| m.seq).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "one order: {seqs:?}");
    }
    for n in nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_messages_follow_the_user_to_another_node() {
    let Some(redis) = TestRedis::start() else {
        return;
    };
    let nodes = nodes(&redis, 2).await;
    let (alice, _a) = login(&nodes[0].tcp.to_string(), "alice", "phone").await;
    let (bob, _b) = login(&nodes[0].tcp.to_string(), "bob", "phone").await;
    bob.close().await;
    for i in 1..=3 {
        alice
            .send_text(Peer::user("bob"), format!("m{i}"))
            .await
            .expect("SENT");
    }
    let (_bob, mut bob_ev) = login(&nodes[1].tcp.to_string(), "bob", "phone").await;
    let got = messages(&mut bob_ev, 3).await;
    assert_eq!(
        got.iter().map(text_of).collect::<Vec<_>>(),
        ["m1", "m2", "m3"]
    );
    assert!(
        drain_messages(&mut bob_ev, std::time::Duration::from_millis(300))
            .await
            .is_empty(),
        "once"
    );
    for n in nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_on_another_node_kicks_the_first() {
    let Some(redis) = TestRedis::start() else {
        return;
    };
    let nodes = nodes(&redis, 2).await;
    let (_old, mut old_ev) = login(&nodes[0].tcp.to_string(), "alice", "phone").await;
    let (new, _new_ev) = login(&nodes[1].tcp.to_string(), "alice", "phone").await;
    let reason = wait_for(&mut old_ev, |e| match e {
        Event::Kicked { reason, .. } => Some(reason),
        _ => None,
    })
    .await;
    assert_eq!(reason, pb::KickReason::DuplicateLogin);
    // The new session works, and presence points at node 1 only.
    let (_bob, mut bob_ev) = login(&nodes[0].tcp.to_string(), "bob", "phone").await;
    new.send_text(Peer::user("bob"), "still me")
        .await
        .expect("SENT");
    assert_eq!(text_of(&messages(&mut bob_ev, 1).await[0]), "still me");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let located = nodes[0]
        .handle
        .engine()
        .stores()
        .presence
        .locate(&"alice".into())
        .await
        .expect("locate");
    assert_eq!(
        located.iter().map(|l| l.node.as_str()).collect::<Vec<_>>(),
        ["node-1"]
    );
    for n in nodes {
        n.stop().await;
    }
}

/// Revoking a token on one node closes the sessions that used it on the
/// others, and only those; disabling-style forced logouts reach every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_and_forced_logout_reach_other_nodes() {
    let Some(redis) = TestRedis::start() else {
        return;
    };
    let nodes = nodes(&redis, 2).await;
    let auth = imkit::engine::auth::HmacAuthenticator::new(SECRET);
    let user = imkit::engine::model::UserId::from("dana");
    let revoked = auth.mint(&user, 600);
    let kept = auth.mint(&user, 700);
    let addr = nodes[1].tcp.to_string();
    let (c1, mut phone) = imkit::client::Client::connect(&addr, Default::default())
        .await
        .expect("connect");
    c1.login(&revoked, "phone").await.expect("login");
    let (c2, mut laptop) = imkit::client::Client::connect(&addr, Default::default())
        .await
        .expect("connect");
    c2.login(&kept, "laptop").await.expect("login");

    // Node 0 records the revocation and asks node 1 to close its sessions.
    let id = imkit::engine::auth::token_id(&revoked);
    let stores = nodes[0].handle.engine().stores();
    stores
        .accounts
        .revoke_token(&id, u64::MAX / 2)
        .await
        .expect("revoke");
    let asked = nodes[0]
        .handle
        .revoke_sessions(&user, &id)
        .await
        .expect("revoke sessions");
    assert_eq!(asked, 1, "one other node holds dana's sessions");
    let reason = wait_for(&mut phone, |e| match e {
        Event::Kicked { reason, .. } => Some(reason),
        _ => None,
    })
    .await;
    assert_eq!(reason, pb::KickReason::TokenRevoked);
    // The laptop, on another token, stays until a forced logout from node 0.
    let closed = nodes[0]
        .handle
        .kick_user(&user, None, pb::KickReason::Admin)
        .await
        .expect("kick");
    assert!(closed >= 1);
    let reason = wait_for(&mut laptop, |e| match e {
        Event::Kicked { reason, .. } => Some(reason),
        _ => None,
    })
    .await;
    assert_eq!(reason, pb::KickReason::Admin);
    // A revoked token cannot log in on any node.
    let (c3, _e) = imkit::client::Client::connect(&nodes[0].tcp.to_string(), Default::default())
        .await
        .expect("connect");
    assert!(c3.login(&revoked, "phone").await.is_err());
}

/// A bus that loses the next `lose` wake-ups it is asked to forward.
struct Lossy {
    inner: Arc<dyn ClusterBus>,
    lose: Arc<AtomicUsize>,
}

#[async_trait::async_trait]
impl ClusterBus for Lossy {
    async fn forward(&self, node: &NodeId, frame: bytes::Bytes, targets: Vec<Target>) {
        let lost = self
            .lose
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok();
        if !lost {
            self.inner.forward(node, frame, targets).await;
        }
    }

    async fn kick(&self, node: &NodeId, target: Target, reason: pb::KickReason) {
        self.inner.kick(node, target, reason).await;
    }

    async fn revoke(&self, node: &NodeId, user: &UserId, token_id: &str) {
        self.inner.revoke(node, user, token_id).await;
    }

    async fn serve(&self, local: LocalNode, shutdown: CancellationToken) {
        self.inner.serve(local, shutdown).await;
    }
}

/// A wake-up lost between nodes strands nothing: the SDK's timed pull
/// finds the message within its interval, and a server can ask a device
/// to sync at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_wake_up_is_recovered_by_the_timed_pull_and_by_request_sync() {
    let Some(redis) = TestRedis::start() else {
        return;
    };
    let ns = redis.namespace();
    let lose = Arc::new(AtomicUsize::new(0));
    let lossy = lose.clone();
    let node0 = TestServer::cluster_node_with(&redis.url, &ns, "node-0", move |inner| {
        Arc::new(Lossy { inner, lose: lossy })
    })
    .await;
    let node1 = TestServer::cluster_node(&redis.url, &ns, "node-1").await;
    let (alice, _a) = login(&node0.tcp.to_string(), "alice", "phone").await;

    // Bob pulls after 1 s of quiet (±20%).
    let every = Duration::from_secs(1);
    let options = ClientOptions {
        idle_sync: Some(every),
        ..ClientOptions::default()
    };
    let (_bob, mut bob_ev) = login_with(&node1.tcp.to_string(), "bob", "phone", options).await;
    lose.store(1, Ordering::Release);
    let sent_at = Instant::now();
    alice
        .send_text(Peer::user("bob"), "lost wake-up")
        .await
        .expect("SENT");
    assert_eq!(lose.load(Ordering::Acquire), 0, "the wake-up was lost");
    let got = messages(&mut bob_ev, 1).await;
    let took = sent_at.elapsed();
    eprintln!(
        "a message whose wake-up was lost arrived after {took:?} (timed pull every {every:?} ±20%)"
    );
    assert_eq!(text_of(&got[0]), "lost wake-up");
    assert!(
        took <= every.mul_f64(1.2) + Duration::from_millis(500),
        "{took:?}"
    );

    // Carol does not pull on her own; the server asks her device to sync.
    let options = ClientOptions {
        idle_sync: None,
        ..ClientOptions::default()
    };
    let (_carol, mut carol_ev) =
        login_with(&node1.tcp.to_string(), "carol", "phone", options).await;
    lose.store(1, Ordering::Release);
    alice
        .send_text(Peer::user("carol"), "also lost")
        .await
        .expect("SENT");
    assert!(
        drain_messages(&mut carol_ev, Duration::from_millis(1_500))
            .await
            .is_empty(),
        "without a wake-up or a pull, nothing arrives"
    );
    let asked_at = Instant::now();
    let asked = node0
        .handle
        .request_sync(&UserId::from("carol"), None)
        .await
        .expect("request sync");
    assert_eq!(asked, 1);
    let got = messages(&mut carol_ev, 1).await;
    eprintln!(
        "after request_sync the message arrived in {:?}",
        asked_at.elapsed()
    );
    assert_eq!(text_of(&got[0]), "also lost");
    node0.stop().await;
    node1.stop().await;
}

/// The node id is set once: a bus that speaks for another node than the
/// server's is refused at bind, with both names in the message.
#[tokio::test]
async fn a_bus_for_another_node_is_refused() {
    let Some(redis) = TestRedis::start() else {
        return;
    };
    let (_, bus) = imkit::server::cluster::connect(
        &redis.url,
        &redis.namespace(),
        NodeId::from("node-b"),
        Default::default(),
        Some(imkit::engine::store::Stores::memory()),
    )
    .await
    .expect("connect");
    let err = imkit::server::Server::builder()
        .token_secret("s")
        .node("node-a")
        .cluster_bus(bus)
        .tcp("127.0.0.1:0")
        .bind()
        .await
        .expect_err("two node ids");
    let msg = err.to_string();
    assert!(msg.contains("node-a") && msg.contains("node-b"), "{msg}");
}

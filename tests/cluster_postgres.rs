//! The cluster topology that keeps its promise: the record in PostgreSQL,
//! presence and wake-ups in Redis. Nodes talk across it, and a cluster
//! with a record its nodes cannot share, or on a Redis that could lose
//! what it acknowledged, does not start.

mod common;

use common::*;

use imkit::client::{Event, Peer};
use imkit::engine::store::StoreConfig;
use imkit::engine::testing::postgres_server::TestPostgres;
use imkit::engine::testing::redis_server::TestRedis;
use imkit::proto::pb::ReceiptKind;
use imkit::server::Server;
use imkit::server::cluster::ClusterOptions;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_to_one_and_a_group_across_nodes_on_the_postgres_record() {
    let Some(redis) = TestRedis::start() else {
        return;
    };
    let Some(pg) = TestPostgres::start().await else {
        return;
    };
    let ns = redis.namespace();
    let a = TestServer::postgres_cluster_node(&pg.url, &pg.schema, &redis.url, &ns, "a").await;
    let b = TestServer::postgres_cluster_node(&pg.url, &pg.schema, &redis.url, &ns, "b").await;
    let (alice, mut alice_ev) = login(&a.tcp.to_string(), "alice", "phone").await;
    let (bob, mut bob_ev) = login(&b.ws_url(), "bob", "phone").await;
    let (_carol, mut carol_ev) = login(&b.tcp.to_string(), "carol", "phone").await;

    let ack = alice
        .send_text(Peer::user("bob"), "across nodes, on postgres")
        .await
        .expect("SENT");
    let got = messages(&mut bob_ev, 1).await;
    assert_eq!(
        (text_of(&got[0]), got[0].seq),
        ("across nodes, on postgres", 1)
    );
    bob.mark_read(&ack.conversation_id, 1).await.expect("read");
    wait_for(&mut alice_ev, |e| {
        matches!(e, Event::Receipt(r) if r.kind == ReceiptKind::Read as i32 && r.seq == 1)
            .then_some(())
    })
    .await;

    let group = alice
        .create_group("pg", &["bob", "carol"])
        .await
        .expect("group");
    for i in 0..20 {
        alice
            .send_text(Peer::group(&group.group_id), format!("g{i}"))
            .await
            .expect("SENT");
    }
    for events in [&mut bob_ev, &mut carol_ev] {
        let texts: Vec<String> = drain_until_text(events, "g19").await;
        let expected: Vec<String> = (0..20).map(|i| format!("g{i}")).collect();
        assert_eq!(texts, expected, "in order, once each");
    }
    // History comes from PostgreSQL on either node.
    let page = bob
        .history(&ack.conversation_id, 0, true, 10)
        .await
        .expect("history");
    assert_eq!(page.messages.len(), 1);
    a.stop().await;
    b.stop().await;
}

/// The user texts a member receives, up to and including `last`.
async fn drain_until_text(events: &mut imkit::client::Events, last: &str) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        let m = wait_for(events, |e| match e {
            Event::Message(m) => Some(m),
            _ => None,
        })
        .await;
        let t = text_of(&m).to_owned();
        if t.is_empty() {
            continue; // a group event
        }
        let done = t == last;
        out.push(t);
        if done {
            return out;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_refuses_a_record_it_cannot_share_or_trust() {
    let Some(volatile) = TestRedis::own(&[]) else {
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    // SQLite cannot be shared by nodes.
    let err = Server::builder()
        .token_secret(SECRET)
        .store(StoreConfig::sqlite(dir.path().join("x.db")))
        .redis_cluster(
            &volatile.url,
            volatile.namespace(),
            ClusterOptions::default(),
        )
        .tcp("127.0.0.1:0")
        .bind()
        .await
        .expect_err("sqlite in a cluster");
    assert!(err.to_string().contains("cannot be"), "{err}");
    // Redis as the record, with appendonly no: refused, saying what to do.
    let err = Server::builder()
        .token_secret(SECRET)
        .redis_cluster(
            &volatile.url,
            volatile.namespace(),
            ClusterOptions::default(),
        )
        .tcp("127.0.0.1:0")
        .bind()
        .await
        .expect_err("a Redis that forgets");
    let msg = err.to_string();
    assert!(
        msg.contains("appendonly no") && msg.contains("--store postgres"),
        "{msg}"
    );
    // Accepted explicitly, it starts.
    let mut options = ClusterOptions::default();
    options.accept_redis_data_loss = true;
    let server = Server::builder()
        .token_secret(SECRET)
        .redis_cluster(&volatile.url, volatile.namespace(), options)
        .tcp("127.0.0.1:0")
        .bind()
        .await
        .expect("accepted");
    drop(server);
}

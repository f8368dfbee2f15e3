//! The Redis backend against a real Redis: the conformance suite, node
//! liveness, and the engine on top of it.

use std::time::Duration;

use imkit_core::model::*;
use imkit_core::store::PresenceStore;
use imkit_core::store::redis::{RedisDb, RedisPresence, stores_on};
use imkit_core::testing::redis_server::TestRedis;

mod conformance {
    use imkit_core::testing::redis_server::TestRedis;

    imkit_core::conformance_tests!(async {
        let redis = TestRedis::start()?;
        let stores = imkit_core::store::redis::open_stores(&redis.url, &redis.namespace())
            .await
            .expect("connect");
        Some((redis, stores))
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_in_another_layout_is_refused() {
    let Some(redis) = TestRedis::start() else {
        return;
    };
    let ns = redis.namespace();
    RedisDb::connect(&redis.url, &ns)
        .await
        .expect("claims the namespace");
    RedisDb::connect(&redis.url, &ns)
        .await
        .expect("and opens it again");
    let client = redis::Client::open(redis.url.as_str()).expect("client");
    let mut c = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let _: () = redis::cmd("SET")
        .arg(format!("{ns}format"))
        .arg(1)
        .query_async(&mut c)
        .await
        .expect("set");
    let err = RedisDb::connect(&redis.url, &ns)
        .await
        .expect_err("an old layout is refused");
    assert!(err.to_string().contains("key layout"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_of_dead_nodes_are_ignored_and_removed() {
    let Some(redis) = TestRedis::start() else {
        return;
    };
    let db = RedisDb::connect(&redis.url, &redis.namespace())
        .await
        .expect("connect");
    let presence = RedisPresence::with_liveness(db.clone());
    let (alice, bob) = (UserId::from("alice"), UserId::from("bob"));
    let (a, b) = (NodeId::from("a"), NodeId::from("b"));
    let phone = DeviceId::from("phone");
    presence
        .heartbeat(&a, Duration::from_millis(300))
        .await
        .expect("hb");
    presence
        .heartbeat(&b, Duration::from_secs(30))
        .await
        .expect("hb");
    presence.online(&alice, &phone, &a).await.expect("online");
    presence.online(&bob, &phone, &b).await.expect("online");
    assert_eq!(presence.locate(&alice).await.expect("locate").len(), 1);
    // Node a stops refreshing its liveness key (it died).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!presence.is_alive(&a).await.expect("alive"));
    assert!(
        presence.locate(&alice).await.expect("locate").is_empty(),
        "dead node ignored"
    );
    let many = presence
        .locate_many(&[alice.clone(), bob.clone()])
        .await
        .expect("many");
    assert_eq!(
        many.iter().map(|l| l.user).collect::<Vec<_>>(),
        vec![1],
        "only bob, on the live node"
    );
    // The stale entry was removed, so a plain (liveness-free) view agrees.
    let plain = RedisPresence::new(db);
    assert!(
        plain.locate(&alice).await.expect("locate").is_empty(),
        "stale entry cleaned up"
    );
    assert_eq!(plain.locate(&bob).await.expect("locate").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_runs_on_redis() {
    use imkit_core::{Caller, Engine, EngineConfig};
    use imkit_proto::{Packet, pb};
    let Some(redis) = TestRedis::start() else {
        return;
    };
    let db = RedisDb::connect(&redis.url, &redis.namespace())
        .await
        .expect("connect");
    let engine = Engine::new(stores_on(db), EngineConfig::default());
    let alice = Caller::new("alice", "phone");
    let bob = Caller::new("bob", "phone");
    engine.login(&bob.user, &bob.device).await.expect("login");
    engine.logout(&bob.user, &bob.device).await.expect("logout");
    for i in 0..3 {
        let req = pb::SendRequest {
            client_msg_id: format!("c{i}"),
            to: Some(pb::send_request::To::UserId("bob".into())),
            content: Some(pb::Content {
                body: Some(pb::content::Body::Text(pb::Text {
                    text: format!("m{i}"),
                    mentions: vec![],
                })),
            }),
        };
        let _ = engine.send(&alice, req).await.expect("send");
    }
    // Bob was offline: his login brings what he missed, in order.
    let login = engine.login(&bob.user, &bob.device).await.expect("login");
    let seqs: Vec<u64> = login
        .pushes
        .iter()
        .filter_map(|p| match &p.packet {
            Packet::MessagePush(m) => m.message.as_ref().map(|m| m.seq),
            _ => None,
        })
        .collect();
    assert_eq!(seqs, [1, 2, 3]);
    let list = engine
        .conversations(
            &bob,
            pb::ConversationListRequest {
                limit: 0,
                after: String::new(),
            },
        )
        .await
        .expect("list");
    assert_eq!(list.total_unread, 3);
}

/// A Redis that could lose what it acknowledged is refused as the record,
/// with a reason and the settings to change; accepting the loss opens it;
/// `appendonly yes` with `appendfsync always` passes the check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_can_lose_acknowledged_writes_is_refused_as_the_record() {
    use imkit_core::store::StoreConfig;
    use imkit_core::store::redis::{Persistence, check_record};
    let Some(volatile) = TestRedis::own(&[]) else {
        return;
    };
    let db = RedisDb::connect(&volatile.url, &volatile.namespace())
        .await
        .expect("connect");
    let p = Persistence::of(&db).await.expect("settings");
    assert!(!p.appendonly);
    let err = check_record(&db, false).await.expect_err("refused");
    let msg = err.to_string();
    assert!(
        msg.contains("appendonly no") && msg.contains("appendfsync always"),
        "{msg}"
    );
    check_record(&db, true).await.expect("accepted explicitly");
    let refused = StoreConfig::redis(&volatile.url, volatile.namespace())
        .open()
        .await
        .expect_err("StoreConfig refuses it too");
    assert!(refused.to_string().contains("appendonly no"), "{refused}");

    let dir = tempfile::tempdir().expect("dir");
    let dir = dir.path().to_string_lossy().into_owned();
    let Some(durable) = TestRedis::own(&[
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
        "--dir",
        &dir,
    ]) else {
        return;
    };
    let db = RedisDb::connect(&durable.url, &durable.namespace())
        .await
        .expect("connect");
    assert_eq!(
        Persistence::of(&db).await.expect("settings"),
        Persistence {
            appendonly: true,
            appendfsync: "always".into()
        }
    );
    check_record(&db, false)
        .await
        .expect("a durable Redis passes");
    let everysec = Persistence {
        appendonly: true,
        appendfsync: "everysec".into(),
    };
    assert!(everysec.risk().is_some_and(|r| r.contains("a second")));
}

//! A cluster node killed with SIGKILL: its users' presence disappears
//! within the liveness TTL, they reconnect to another node, and nothing
//! that was acknowledged is lost. Real `imkit-server` processes, in both
//! topologies: the record in PostgreSQL with presence in Redis, and
//! everything in Redis.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use imkit_core::auth::HmacAuthenticator;
use imkit_core::model::UserId;
use imkit_core::store::PresenceStore;
use imkit_core::store::redis::{RedisDb, RedisPresence};
use imkit_core::testing::postgres_server::TestPostgres;
use imkit_core::testing::redis_server::TestRedis;
use imkit_proto::{Frame, FrameCodec, FrameLimits, Packet, PacketId, pb};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_util::codec::Framed;

const SECRET: &str = "cluster-kill-secret";
const LIVENESS_MS: u64 = 1_000;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

async fn node(redis: &TestRedis, ns: &str, name: &str, record: &[String]) -> (Child, u16) {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_imkit-server"))
        .args(["--redis-url", &redis.url, "--redis-namespace", ns])
        .args(record)
        .args([
            "--node",
            name,
            "--liveness-ttl-ms",
            &LIVENESS_MS.to_string(),
        ])
        .args([
            "--tcp",
            &format!("127.0.0.1:{port}"),
            "--ws",
            "off",
            "--secret",
            SECRET,
        ])
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .expect("spawn imkit-server");
    for _ in 0..200 {
        if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return (child, port);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("node {name} did not start");
}

/// A bare protocol client: requests wait for their answer; pushes are kept.
struct Raw {
    conn: Framed<TcpStream, FrameCodec>,
    pushes: Vec<Packet>,
}

impl Raw {
    async fn login(port: u16, user: &str) -> Raw {
        let tcp = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let mut raw = Raw {
            conn: Framed::new(tcp, FrameCodec::new(FrameLimits::client())),
            pushes: Vec::new(),
        };
        let token = HmacAuthenticator::new(SECRET).mint(&UserId::from(user), 600);
        let r = raw
            .call(Packet::Login(pb::LoginRequest {
                token,
                device_id: "phone".into(),
                ..Default::default()
            }))
            .await;
        assert!(matches!(r, Packet::LoginResponse(_)), "{r:?}");
        raw
    }

    async fn next(&mut self) -> Option<Frame> {
        match tokio::time::timeout(Duration::from_secs(10), self.conn.next()).await {
            Ok(Some(Ok(f))) => Some(f),
            _ => None,
        }
    }

    async fn call(&mut self, p: Packet) -> Packet {
        let id = PacketId::new();
        self.conn.send(p.to_frame(id)).await.expect("send");
        loop {
            let f = self.next().await.expect("answer");
            let packet = Packet::from_frame(&f).expect("valid");
            if f.header.packet_id == id {
                return packet;
            }
            self.pushes.push(packet);
        }
    }

    async fn send(&mut self, to: &str, text: &str) -> pb::SendResponse {
        let req = pb::SendRequest {
            client_msg_id: text.into(),
            to: Some(pb::send_request::To::UserId(to.into())),
            content: Some(pb::Content {
                body: Some(pb::content::Body::Text(pb::Text {
                    text: text.into(),
                    mentions: vec![],
                })),
            }),
        };
        match self.call(Packet::Send(req)).await {
            Packet::SendResponse(r) => r,
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_loses_nothing_acknowledged_on_redis() {
    let Some(redis) = TestRedis::start() else {
        return;
    };
    // The test Redis keeps nothing on disk: accepted, since only nodes die here.
    let record = ["--store", "redis", "--redis-accept-data-loss"].map(String::from);
    killed_node_case(&redis, &record).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_loses_nothing_acknowledged_on_postgres() {
    let Some(redis) = TestRedis::start() else {
        return;
    };
    let Some(pg) = TestPostgres::start().await else {
        return;
    };
    let record = [
        "--store",
        "postgres",
        "--presence",
        "redis",
        "--postgres-url",
        &pg.url,
        "--postgres-schema",
        &pg.schema,
    ]
    .map(String::from);
    killed_node_case(&redis, &record).await;
}

async fn killed_node_case(redis: &TestRedis, record: &[String]) {
    let ns = redis.namespace();
    let (mut a, port_a) = node(redis, &ns, "a", record).await;
    let (_b, port_b) = node(redis, &ns, "b", record).await;

    let mut bob = Raw::login(port_a, "bob").await;
    let mut alice = Raw::login(port_b, "alice").await;
    let mut acked: HashMap<u64, String> = HashMap::new();
    for i in 0..5 {
        let ack = alice.send("bob", &format!("before-{i}")).await;
        acked.insert(ack.seq, ack.message_id);
    }
    // Bob, on node a, gets them through the cluster bus.
    let mut seen = 0;
    while seen < 5 {
        let f = bob.next().await.expect("push via node a");
        if let Ok(Packet::MessagePush(_)) = Packet::from_frame(&f) {
            seen += 1;
        }
    }

    a.kill().await.expect("SIGKILL node a");
    let killed_at = Instant::now();
    // Alice keeps sending while node a is dead.
    for i in 0..5 {
        let ack = alice.send("bob", &format!("after-{i}")).await;
        acked.insert(ack.seq, ack.message_id);
    }
    // Bob's presence disappears within the liveness TTL (plus polling slack).
    let db = RedisDb::connect(&redis.url, &ns).await.expect("redis");
    let presence = RedisPresence::with_liveness(db);
    loop {
        if presence
            .locate(&UserId::from("bob"))
            .await
            .expect("locate")
            .is_empty()
        {
            break;
        }
        assert!(
            killed_at.elapsed() < Duration::from_millis(LIVENESS_MS + 1_500),
            "presence outlived the TTL"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Bob reconnects to node b and syncs: every acknowledged message is there.
    let mut bob = Raw::login(port_b, "bob").await;
    let sync = match bob
        .call(Packet::Sync(pb::SyncRequest {
            cursors: vec![pb::Cursor {
                conversation_id: "d:alice:bob".into(),
                seq: 0,
            }],
            limit: 100,
        }))
        .await
    {
        Packet::SyncResponse(r) => r,
        other => panic!("{other:?}"),
    };
    let conv = sync
        .conversations
        .iter()
        .find(|c| c.conversation_id == "d:alice:bob")
        .expect("conversation");
    let got: HashMap<u64, String> = conv
        .messages
        .iter()
        .map(|m| (m.seq, m.message_id.clone()))
        .collect();
    assert_eq!(got.len(), 10, "gap-free 1..=10");
    for (seq, id) in &acked {
        assert_eq!(got.get(seq), Some(id), "acknowledged message {seq} kept");
    }
    assert_eq!(conv.max_seq, 10);
}

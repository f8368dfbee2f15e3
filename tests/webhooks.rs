//! Webhooks against a local HTTP receiver: every request's signature
//! verifies and its body matches the event's JSON schema in
//! docs/webhooks/; a receiver that is down (connection refused, then
//! answering 503) across a server restart still gets every event, in order
//! per conversation; the before-send webhook rejects, rewrites, and fails
//! open or closed.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use bytes::Bytes;
use common::{TestServer, login, messages, text_of};
use imkit::client::Peer;
use imkit::engine::hooks::FailMode;
use imkit::engine::store::StoreConfig;
use imkit::proto::{ErrorCode, Packet, pb};
use imkit::server::webhooks::{BeforeSendWebhook, Endpoint, WebhookOptions, verify};
use parking_lot::Mutex;
use serde_json::{Value, json};

const HOOK_SECRET: &str = "whsec-test";

/// The JSON schemas of docs/webhooks, by name.
fn schemas() -> HashMap<String, jsonschema::Validator> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/webhooks");
    let mut out = HashMap::new();
    for entry in std::fs::read_dir(&dir).expect("docs/webhooks") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".schema.json"))
            .expect("a schema file")
            .to_owned();
        let schema: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
        let validator = jsonschema::validator_for(&schema).expect("a valid schema");
        out.insert(name, validator);
    }
    out
}

fn check(schemas: &HashMap<String, jsonschema::Validator>, name: &str, v: &Value) {
    let validator = schemas
        .get(name)
        .unwrap_or_else(|| panic!("no schema {name}"));
    let errors: Vec<String> = validator.iter_errors(v).map(|e| e.to_string()).collect();
    assert!(
        errors.is_empty(),
        "{name} body {v} breaks its schema: {errors:?}"
    );
}

#[derive(Default)]
struct Seen {
    /// Answer 503 while false.
    up: bool,
    posts: usize,
    bad_signatures: usize,
    events: Vec<Value>,
    asked: Vec<Value>,
}

struct Shared {
    seen: Mutex<Seen>,
    schemas: HashMap<String, jsonschema::Validator>,
}

fn verified(headers: &HeaderMap, body: &[u8]) -> bool {
    let header = headers
        .get("imkit-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    verify(HOOK_SECRET.as_bytes(), header, body, now, 300).is_ok()
}

async fn events(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let mut seen = s.seen.lock();
    seen.posts += 1;
    if !seen.up {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    if !verified(&headers, &body) {
        seen.bad_signatures += 1;
        return StatusCode::UNAUTHORIZED;
    }
    let v: Value = serde_json::from_slice(&body).expect("a JSON body");
    let kind = v["type"].as_str().expect("a type").to_owned();
    check(&s.schemas, &kind, &v);
    assert_eq!(
        headers.get("imkit-event-id").and_then(|h| h.to_str().ok()),
        v["id"].as_str(),
        "the id header names the event"
    );
    seen.events.push(v);
    StatusCode::OK
}

async fn moderate(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    if !verified(&headers, &body) {
        s.seen.lock().bad_signatures += 1;
        return (StatusCode::UNAUTHORIZED, String::new());
    }
    let v: Value = serde_json::from_slice(&body).expect("a JSON body");
    check(&s.schemas, "before_send", &v);
    let text = v["data"]["content"]["text"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    s.seen.lock().asked.push(v);
    let answer = if text.contains("spam") {
        json!({"action": "reject", "reason": "no spam here"})
    } else if text.contains("darn") {
        json!({"action": "rewrite", "content": {"type": "text", "text": text.replace("darn", "****")}})
    } else if text.contains("slow") {
        tokio::time::sleep(Duration::from_secs(5)).await;
        json!({"action": "accept"})
    } else if text.contains("garbage") {
        return (StatusCode::OK, "not a verdict".into());
    } else {
        json!({"action": "accept"})
    };
    check(&s.schemas, "before_send_answer", &answer);
    (StatusCode::OK, answer.to_string())
}

/// A local receiver: `POST /events` and `POST /moderate`.
struct Receiver {
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start(addr: SocketAddr, up: bool) -> Receiver {
        let shared = Arc::new(Shared {
            seen: Mutex::new(Seen {
                up,
                ..Seen::default()
            }),
            schemas: schemas(),
        });
        let app = axum::Router::new()
            .route("/events", post(events))
            .route("/moderate", post(moderate))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { shared, task }
    }

    /// Waits until `done` holds for what was received.
    async fn wait_until(&self, what: &str, done: impl Fn(&Seen) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if done(&self.shared.seen.lock()) {
                return;
            }
            let seen = self.shared.seen.lock();
            assert!(
                Instant::now() < deadline,
                "{what}: gave up after {} posts, {} events",
                seen.posts,
                seen.events.len()
            );
            drop(seen);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

fn options(receiver: SocketAddr) -> WebhookOptions {
    WebhookOptions::default()
        .endpoint(Endpoint::new(
            format!("http://{receiver}/events"),
            HOOK_SECRET,
        ))
        .retries(
            Duration::from_millis(50),
            Duration::from_millis(200),
            Duration::from_secs(3600),
        )
}

/// The events of `kind` with `key`, de-duplicated on id (first arrival).
fn of<'a>(events: &'a [Value], kind: &str, key: &str) -> Vec<&'a Value> {
    let mut ids = HashSet::new();
    events
        .iter()
        .filter(|e| e["type"] == kind && e["key"] == key)
        .filter(|e| ids.insert(e["id"].as_str().unwrap_or("").to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_event_arrives_in_order_across_an_outage_and_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("imkit.db");
    let receiver_addr = free_addr(); // nobody listens yet: connections are refused
    let start = || {
        let db = db.clone();
        TestServer::custom(move |b| {
            b.store(StoreConfig::sqlite(db))
                .webhooks(options(receiver_addr))
        })
    };

    let server = start().await;
    let addr = server.tcp.to_string();
    let (alice, _a) = login(&addr, "alice", "phone").await;
    let (bob, mut bob_events) = login(&addr, "bob", "phone").await;
    let (carol, _c) = login(&addr, "carol", "phone").await;
    let mut sent = Vec::new();
    for i in 0..15 {
        sent.push(
            alice
                .send_text(Peer::user("bob"), &format!("a{i}"))
                .await
                .expect("send"),
        );
    }
    let direct = sent[0].conversation_id.clone();
    messages(&mut bob_events, 15).await;
    bob.mark_read(&direct, 15).await.expect("read");
    for i in 0..5 {
        bob.send_text(Peer::user("alice"), &format!("b{i}"))
            .await
            .expect("send");
    }
    let group = carol
        .create_group("trio", &["alice", "bob"])
        .await
        .expect("group");
    for i in 0..10 {
        carol
            .send_text(Peer::group(&group.group_id), &format!("g{i}"))
            .await
            .expect("group send");
    }
    let recalled = &sent[14];
    alice
        .recall(&direct, &recalled.message_id)
        .await
        .expect("recall");
    server.stop().await;

    // Restarted on the same database, the receiver still down.
    let server = start().await;
    let addr = server.tcp.to_string();
    let (alice, _a) = login(&addr, "alice", "laptop").await;
    for i in 0..5 {
        alice
            .send_text(Peer::user("bob"), &format!("after{i}"))
            .await
            .expect("send");
    }
    // The receiver comes up answering 503, then recovers.
    let receiver = Receiver::start(receiver_addr, false).await;
    receiver.wait_until("503s seen", |s| s.posts >= 3).await;
    receiver.shared.seen.lock().up = true;
    let direct_key = direct.clone();
    let group_key = format!("g:{}", group.group_id);
    receiver
        .wait_until("every message", |s| {
            of(&s.events, "message", &direct_key).len() == 25
                && of(&s.events, "message", &group_key).len() == 10
                && of(&s.events, "recall", &direct_key).len() == 1
        })
        .await;
    server.stop().await;

    let seen = receiver.shared.seen.lock();
    assert_eq!(seen.bad_signatures, 0, "every signature verifies");
    for key in [&direct_key, &group_key] {
        // In order per conversation: ids and seqs grow with arrival.
        let ordered: Vec<&Value> = {
            let mut ids = HashSet::new();
            seen.events
                .iter()
                .filter(|e| e["key"] == key.as_str())
                .filter(|e| ids.insert(e["id"].as_str().unwrap_or("").to_owned()))
                .collect()
        };
        let ids: Vec<u64> = ordered
            .iter()
            .map(|e| e["id"].as_str().and_then(|s| s.parse().ok()).expect("id"))
            .collect();
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "{key}: ids in order: {ids:?}"
        );
        let seqs: Vec<u64> = ordered
            .iter()
            .filter(|e| e["type"] == "message")
            .map(|e| e["data"]["seq"].as_u64().expect("seq"))
            .collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "{key}: seqs in order: {seqs:?}"
        );
    }
    // Nothing lost: the direct conversation's 25 messages are its seqs but
    // the recall event's.
    let direct_msgs = of(&seen.events, "message", &direct_key);
    let seqs: Vec<u64> = direct_msgs
        .iter()
        .map(|e| e["data"]["seq"].as_u64().expect("seq"))
        .collect();
    let recall = of(&seen.events, "recall", &direct_key)[0];
    assert_eq!(recall["data"]["message_id"], recalled.message_id.as_str());
    assert_eq!(recall["data"]["recalled_by"], "alice");
    assert_eq!(seqs.len(), 25);
    assert_eq!(
        seqs.iter()
            .copied()
            .chain([21])
            .collect::<std::collections::BTreeSet<_>>(),
        (1..=26).collect(),
        "seq 21 is the recall event: {seqs:?}"
    );
    // A message recalled before it was posted is posted recalled.
    let posted_recalled = direct_msgs
        .iter()
        .find(|e| e["data"]["message_id"] == recalled.message_id.as_str())
        .expect("the recalled message's event");
    assert_eq!(posted_recalled["data"]["recalled"], true);
    assert_eq!(posted_recalled["data"]["content"], Value::Null);
    // Bob's read receipt, the group's creation, the logins.
    assert!(
        of(&seen.events, "receipt", &direct_key)
            .iter()
            .any(|e| e["data"]["user_id"] == "bob"
                && e["data"]["kind"] == "read"
                && e["data"]["seq"] == 15),
        "bob's read receipt"
    );
    let created = of(&seen.events, "group", &group_key);
    assert_eq!(created[0]["data"]["kind"], "created");
    assert_eq!(created[0]["data"]["by"], "carol");
    let logins: BTreeMap<String, usize> =
        seen.events
            .iter()
            .filter(|e| e["type"] == "login")
            .fold(BTreeMap::new(), |mut m, e| {
                *m.entry(e["data"]["user_id"].as_str().unwrap_or("").to_owned())
                    .or_default() += 1;
                m
            });
    assert_eq!(logins.get("alice"), Some(&2), "{logins:?}");
    assert_eq!(logins.get("carol"), Some(&1), "{logins:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_before_send_webhook_moderates() {
    let receiver_addr = free_addr();
    let receiver = Receiver::start(receiver_addr, true).await;
    let mut hook = BeforeSendWebhook::new(format!("http://{receiver_addr}/moderate"), HOOK_SECRET);
    hook.timeout = Duration::from_millis(300);
    let server =
        TestServer::custom(|b| b.webhooks(WebhookOptions::default().before_send(hook))).await;
    let addr = server.tcp.to_string();
    let (alice, _) = login(&addr, "alice", "phone").await;
    let (_bob, mut bob_events) = login(&addr, "bob", "phone").await;

    let err = alice
        .send_text(Peer::user("bob"), "buy spam")
        .await
        .expect_err("rejected");
    assert_eq!(err.code(), Some(ErrorCode::Rejected), "{err}");
    assert!(err.to_string().contains("no spam here"), "{err}");
    let sent = alice
        .send_text(Peer::user("bob"), "oh darn")
        .await
        .expect("rewritten");
    assert_eq!(sent.seq, 1, "the rejected send stored nothing");
    assert_eq!(text_of(&messages(&mut bob_events, 1).await[0]), "oh ****");
    // A slow or nonsensical service: the send goes through as it was.
    for (i, text) in ["slow down", "garbage in"].into_iter().enumerate() {
        let started = Instant::now();
        let sent = alice
            .send_text(Peer::user("bob"), text)
            .await
            .expect("fail open");
        assert_eq!(sent.seq, 2 + i as u64);
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(text_of(&messages(&mut bob_events, 1).await[0]), text);
    }
    assert_eq!(receiver.shared.seen.lock().bad_signatures, 0);
    assert_eq!(
        receiver.shared.seen.lock().asked.len(),
        4,
        "one question per send"
    );
    server.stop().await;

    // Failing closed, the sender is told to retry and nothing is stored.
    let mut hook = BeforeSendWebhook::new(format!("http://{receiver_addr}/moderate"), HOOK_SECRET);
    hook.timeout = Duration::from_millis(300);
    hook.on_failure = FailMode::Closed;
    let server =
        TestServer::custom(|b| b.webhooks(WebhookOptions::default().before_send(hook))).await;
    let addr = server.tcp.to_string();
    let (alice, _) = login(&addr, "alice", "phone").await;
    let request = pb::SendRequest {
        client_msg_id: "closed-1".into(),
        to: Some(pb::send_request::To::UserId("bob".into())),
        content: Some(pb::Content::text("slow again")),
    };
    let err = alice
        .request(Packet::Send(request))
        .await
        .expect_err("fail closed");
    assert!(err.code().is_some_and(ErrorCode::is_retryable), "{err}");
    let sent = alice
        .send_text(Peer::user("bob"), "fine")
        .await
        .expect("send");
    assert_eq!(sent.seq, 1, "the refused send stored nothing");
    server.stop().await;
}

/// Two nodes on one PostgreSQL record: both journal, one posts (each
/// event arrives once), and when that node stops the other takes over.
#[cfg(all(feature = "redis", feature = "postgres"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_a_cluster_one_node_posts_and_another_takes_over() {
    use imkit::engine::journal::{EventKind, EventKinds};
    use imkit::engine::store::postgres::PostgresOptions;
    use imkit::engine::testing::postgres_server::TestPostgres;
    use imkit::engine::testing::redis_server::TestRedis;

    let Some(redis) = TestRedis::start() else {
        return;
    };
    let Some(pg) = TestPostgres::start().await else {
        return;
    };
    let ns = redis.namespace();
    let receiver_addr = free_addr();
    let receiver = Receiver::start(receiver_addr, true).await;
    let node = |name: &'static str| {
        let record = StoreConfig::Postgres {
            url: pg.url.clone(),
            options: PostgresOptions::default().in_schema(&pg.schema),
        };
        let mut webhooks = WebhookOptions::default().endpoint(
            Endpoint::new(format!("http://{receiver_addr}/events"), HOOK_SECRET)
                .events(EventKinds::default().with(EventKind::Message)),
        );
        webhooks.lease_ttl = Duration::from_millis(900);
        let (url, ns) = (redis.url.clone(), ns.clone());
        TestServer::custom(move |b| {
            b.store(record)
                .redis_cluster(url, ns, common::test_cluster_options())
                .node(name)
                .webhooks(webhooks)
        })
    };
    let a = node("a").await;
    let b = node("b").await;
    let (alice, _ae) = login(&a.tcp.to_string(), "alice", "phone").await;
    let (bob, _be) = login(&b.tcp.to_string(), "bob", "phone").await;
    for i in 0..10 {
        alice
            .send_text(Peer::user("bob"), &format!("a{i}"))
            .await
            .expect("send");
        bob.send_text(Peer::user("alice"), &format!("b{i}"))
            .await
            .expect("send");
    }
    receiver
        .wait_until("20 events", |s| s.events.len() >= 20)
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    {
        let seen = receiver.shared.seen.lock();
        let ids: HashSet<&str> = seen
            .events
            .iter()
            .filter_map(|e| e["id"].as_str())
            .collect();
        assert_eq!(ids.len(), 20);
        assert_eq!(seen.events.len(), 20, "one node posts: no event twice");
        let seqs: Vec<u64> = seen
            .events
            .iter()
            .map(|e| e["data"]["seq"].as_u64().unwrap_or(0))
            .collect();
        assert_eq!(seqs, (1..=20).collect::<Vec<_>>(), "in order");
    }
    // Whichever node held the lease, stopping `a` leaves `b` to post.
    a.stop().await;
    for i in 0..5 {
        bob.send_text(Peer::user("alice"), &format!("late{i}"))
            .await
            .expect("send");
    }
    receiver
        .wait_until("25 events", |s| {
            s.events
                .iter()
                .filter_map(|e| e["id"].as_str())
                .collect::<HashSet<_>>()
                .len()
                == 25
        })
        .await;
    b.stop().await;
}

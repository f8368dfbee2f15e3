//! Catching up at the sizes users hit, over real sockets: a user comes back
//! to 100,000 messages over 200 conversations (1:1 and groups, bodies from
//! 10 bytes to 60 KiB) and the SDK brings every one to the application
//! once, in order per conversation, without a kick, while the server's
//! queue for the connection stays within its byte bound. The same for a
//! device never seen before (owed what the user has not read) and for two
//! devices at once; on the memory store and on SQLite.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use imkit::client::{Client, ClientOptions, Event, Events};
use imkit::engine::store::Stores;
use imkit::engine::store::sqlite::{self, SqliteOptions};
use imkit::engine::{Caller, EngineConfig};
use imkit::proto::pb;
use imkit::server::{Limits, ServerHandle};

const CONVERSATIONS: usize = 200;
const GROUPS: usize = 50;
const PER_CONVERSATION: usize = 500;

/// A body size from 10 bytes to 60 KiB, skewed the way chat is: mostly
/// short texts, some kilobytes, a few large payloads (mean about 1 KiB).
fn body_len(i: usize) -> usize {
    let r = (i.wrapping_mul(2_654_435_761) >> 7) % 1000;
    match r {
        0..900 => 10 + r % 190,
        900..990 => 1024 + (r - 900) * 34,
        _ => 30 * 1024 + (r - 990) * 3 * 1024,
    }
}

fn content(i: usize) -> Option<pb::Content> {
    let len = body_len(i);
    let body = if len <= 16 * 1024 {
        pb::content::Body::Text(pb::Text {
            text: "t".repeat(len),
            mentions: vec![],
        })
    } else {
        pb::content::Body::Custom(pb::Custom {
            kind: "blob".into(),
            data: vec![b'b'; len].into(),
        })
    };
    Some(pb::Content { body: Some(body) })
}

/// Fills the backlog through the engine (what clients would have sent):
/// every conversation's senders write concurrently, so SQLite commits
/// them in groups. Returns each conversation's highest seq.
async fn backlog(handle: &ServerHandle, user: &str) -> BTreeMap<String, u64> {
    let mut tasks = Vec::new();
    for c in 0..CONVERSATIONS {
        let handle = handle.clone();
        let user = user.to_owned();
        tasks.push(tokio::spawn(async move {
            let engine = handle.engine();
            let senders: Vec<Caller>;
            let to = if c < CONVERSATIONS - GROUPS {
                senders = vec![Caller::new(format!("sender-{c}"), "d")];
                pb::send_request::To::UserId(user)
            } else {
                let owner = Caller::new(format!("owner-{c}"), "d");
                let other = format!("member-{c}");
                let created = handle
                    .exec(engine.group_create(
                        &owner,
                        pb::GroupCreateRequest {
                            name: format!("group {c}"),
                            avatar: String::new(),
                            member_ids: vec![user, other.clone()],
                        },
                    ))
                    .await
                    .expect("group");
                senders = vec![owner, Caller::new(other, "d")];
                pb::send_request::To::GroupId(created.group.expect("group").group_id)
            };
            let mut last = (String::new(), 0);
            for i in 0..PER_CONVERSATION {
                let req = pb::SendRequest {
                    client_msg_id: format!("{c}-{i}"),
                    to: Some(to.clone()),
                    content: content(c * PER_CONVERSATION + i),
                };
                let sent = handle
                    .exec(engine.send(&senders[i % senders.len()], req))
                    .await
                    .expect("SENT");
                last = (sent.conversation_id, sent.seq);
            }
            last
        }));
    }
    let mut out = BTreeMap::new();
    for t in tasks {
        let (conv, seq) = t.await.expect("sender task");
        out.insert(conv, seq);
    }
    out
}

/// What a device must receive: per conversation, the first and last seq.
type Owed = BTreeMap<String, (u64, u64)>;

fn all_of(max: &BTreeMap<String, u64>) -> Owed {
    max.iter().map(|(c, m)| (c.clone(), (1, *m))).collect()
}

/// Logs a device in with the SDK and takes events until every owed message
/// has arrived, checking each arrives once and in order and that the
/// connection is never kicked or dropped. Returns the client (still
/// connected) and how long it took.
async fn drain(addr: &str, user: &str, device: &str, owed: &Owed) -> (Client, Events, Duration) {
    let started = Instant::now();
    let (client, mut events) = login_with(addr, user, device, ClientOptions::default()).await;
    let mut next: BTreeMap<&str, u64> = owed.iter().map(|(c, (f, _))| (c.as_str(), *f)).collect();
    let mut left: u64 = owed.values().map(|(f, l)| l + 1 - f).sum();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    while left > 0 {
        let ev = tokio::time::timeout_at(deadline, events.recv())
            .await
            .unwrap_or_else(|_| panic!("{device}: {left} messages still missing"))
            .expect("event stream");
        match ev {
            Event::Message(m) => {
                let want = next
                    .get_mut(m.conversation_id.as_str())
                    .unwrap_or_else(|| panic!("unexpected conversation {}", m.conversation_id));
                assert_eq!(
                    m.seq, *want,
                    "{device}: {} arrives in order, once",
                    m.conversation_id
                );
                *want += 1;
                left -= 1;
            }
            Event::Kicked { reason, message } => {
                panic!("{device} was kicked: {reason:?} {message}")
            }
            Event::Disconnected { reason } => panic!("{device} dropped: {reason}"),
            _ => {}
        }
    }
    for (conv, (_, last)) in owed {
        assert_eq!(next[conv.as_str()], last + 1, "{conv} complete");
    }
    (client, events, started.elapsed())
}

fn queue_bound() -> usize {
    // The queue's bound, plus control frames (notices) queued past it.
    Limits::default().queue_bytes + 4 * 1024
}

async fn a_backlog_of_100_000_arrives_once_in_order(server: TestServer, store: &str) {
    let addr = server.tcp.to_string();
    let user = "returning";
    // A device the server has seen before the backlog.
    let (seen, _ev) = login(&addr, user, "phone").await;
    seen.close().await;

    let started = Instant::now();
    let max = backlog(&server.handle, user).await;
    let total: u64 = max.values().sum();
    eprintln!(
        "{store}: backlog of {total} messages stored in {:?}",
        started.elapsed()
    );
    assert_eq!(max.len(), CONVERSATIONS);
    assert_eq!(
        total,
        (CONVERSATIONS * PER_CONVERSATION + GROUPS) as u64,
        "group creation events count"
    );

    // The device seen before.
    let (phone, _ev, took) = drain(&addr, user, "phone", &all_of(&max)).await;
    let peak = server
        .handle
        .peak_queued_bytes(&user.into(), &"phone".into())
        .expect("connected");
    eprintln!("{store}: phone drained {total} in {took:?}, peak queue {peak} bytes");
    assert!(peak <= queue_bound(), "peak queue {peak} bytes");
    // The user reads half of the first 20 conversations on the phone.
    let mut owed = all_of(&max);
    for (conv, (first, last)) in owed.iter_mut().take(20) {
        let half = *last / 2;
        phone.mark_read(conv, half).await.expect("read");
        *first = half + 1;
    }
    phone.close().await;

    // A device never seen: what the user has not read.
    let (laptop, _ev, took) = drain(&addr, user, "laptop", &owed).await;
    eprintln!("{store}: new device drained in {took:?}");
    laptop.close().await;

    // Two new devices at once.
    let (a, b) = tokio::join!(
        drain(&addr, user, "tablet", &owed),
        drain(&addr, user, "desktop", &owed)
    );
    eprintln!(
        "{store}: two devices at once drained in {:?} and {:?}",
        a.2, b.2
    );
    for device in ["tablet", "desktop"] {
        let peak = server
            .handle
            .peak_queued_bytes(&user.into(), &device.into())
            .expect("connected");
        assert!(peak <= queue_bound(), "{device}: peak queue {peak} bytes");
    }
    a.0.close().await;
    b.0.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_of_100_000_on_the_memory_store() {
    let server = TestServer::start().await;
    a_backlog_of_100_000_arrives_once_in_order(server, "memory").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_of_100_000_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stores: Stores =
        sqlite::open_stores(dir.path().join("imkit.db"), SqliteOptions::default()).expect("open");
    let server = TestServer::custom(|b| b.stores(stores)).await;
    a_backlog_of_100_000_arrives_once_in_order(server, "sqlite").await;
}

/// The login itself stays cheap with a backlog: it answers with a notice,
/// not the messages (EngineConfig::login_push_max).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_with_a_backlog_is_answered_with_a_notice() {
    let server = TestServer::start().await;
    let (alice, _ev) = login(&server.tcp.to_string(), "alice", "phone").await;
    let n = EngineConfig::default().login_push_max as usize + 1;
    for i in 0..n {
        alice
            .send_text(imkit::client::Peer::user("bob"), format!("m{i}"))
            .await
            .expect("SENT");
    }
    // A raw client sees the protocol: the login answer, then the notice.
    let mut raw = RawConn::login(server.tcp, "bob", "phone").await;
    match raw.packet().await.expect("a frame") {
        imkit::proto::Packet::SyncNotice(n) => {
            assert_eq!(n.reason, pb::SyncReason::Login as i32);
            assert_eq!(n.conversations.len(), 1);
            assert_eq!(n.conversations[0].unread as usize, 101);
        }
        other => panic!("expected a notice, got {:?}", other.kind()),
    }
    server.stop().await;
}

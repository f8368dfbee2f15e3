//! Crash safety with SQLite: the server binary is killed with SIGKILL at
//! random moments while clients stream messages, then restarted. Every
//! message a client saw acknowledged must be in history, seq must have no
//! gaps or duplicates, and resends of unacknowledged messages must not
//! create duplicates. Webhooks are on, their receiver down throughout: the
//! event journal must then hold exactly one record per stored message
//! (written in the same transaction, so no kill separates them), and once
//! a receiver is up, a restarted server posts every one of them.
#![cfg(feature = "webhooks")]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use imkit_core::auth::HmacAuthenticator;
use imkit_core::model::{ConversationId, UserId};
use imkit_core::store::Direction;
use imkit_core::store::sqlite::{SqliteOptions, open_stores};
use imkit_proto::{FrameCodec, FrameLimits, Packet, PacketId, pb};
use rand::Rng;
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_util::codec::Framed;

const SECRET: &str = "crash-test-secret";
const SENDERS: usize = 4;
const ROUNDS: usize = 6;
const WINDOW: usize = 32;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

async fn start(db: &std::path::Path, port: u16, hook_port: u16) -> Child {
    let child = Command::new(env!("CARGO_BIN_EXE_imkit-server"))
        .args([
            "--tcp",
            &format!("127.0.0.1:{port}"),
            "--ws",
            "off",
            "--secret",
            SECRET,
            "--webhook-url",
            &format!("http://127.0.0.1:{hook_port}/events"),
            "--webhook-secret",
            SECRET,
            "--webhook-events",
            "message",
        ])
        .arg("--db")
        .arg(db)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .expect("spawn imkit-server");
    for _ in 0..200 {
        if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return child;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("server did not start");
}

/// What one sender knows: acknowledged sends and sends not yet acknowledged.
#[derive(Default)]
struct Ledger {
    acked: HashMap<String, (u64, String)>,
    unacked: BTreeMap<u64, String>,
    next: u64,
}

/// Connects, logs in, resends everything unacknowledged, then keeps
/// sending new messages until the connection dies, or (with `stop_after`)
/// until everything up to that count is acknowledged.
async fn stream(port: u16, user: String, ledger: &mut Ledger, stop_after: Option<u64>) {
    let Ok(tcp) = TcpStream::connect(("127.0.0.1", port)).await else {
        return;
    };
    let mut conn = Framed::new(tcp, FrameCodec::new(FrameLimits::client()));
    let token = HmacAuthenticator::new(SECRET).mint(&UserId::from(user.as_str()), 600);
    let login = Packet::Login(pb::LoginRequest {
        token,
        device_id: "d".into(),
        ..Default::default()
    });
    if conn.send(login.to_frame(PacketId::new())).await.is_err() {
        return;
    }
    let mut in_flight: HashMap<PacketId, (u64, String)> = HashMap::new();
    let mut queue: Vec<(u64, String)> = ledger
        .unacked
        .iter()
        .map(|(n, c)| (*n, c.clone()))
        .collect();
    queue.reverse();
    loop {
        while in_flight.len() < WINDOW {
            let item = match queue.pop() {
                Some(i) => i,
                None if stop_after.is_some_and(|s| ledger.next >= s) => break,
                None => {
                    let n = ledger.next;
                    ledger.next += 1;
                    let cmid = format!("{user}-{n}");
                    ledger.unacked.insert(n, cmid.clone());
                    (n, cmid)
                }
            };
            let req = Packet::Send(pb::SendRequest {
                client_msg_id: item.1.clone(),
                to: Some(pb::send_request::To::UserId("sink".into())),
                content: Some(pb::Content {
                    body: Some(pb::content::Body::Text(pb::Text {
                        text: item.1.clone(),
                        mentions: vec![],
                    })),
                }),
            });
            let id = PacketId::new();
            if conn.send(req.to_frame(id)).await.is_err() {
                return;
            }
            in_flight.insert(id, item);
        }
        if in_flight.is_empty() {
            return;
        }
        let Some(Ok(frame)) = conn.next().await else {
            return;
        };
        let Some((n, cmid)) = in_flight.remove(&frame.header.packet_id) else {
            continue;
        };
        match Packet::from_frame(&frame) {
            Ok(Packet::SendResponse(ack)) => {
                assert_eq!(ack.client_msg_id, cmid);
                ledger.unacked.remove(&n);
                if let Some(prev) = ledger
                    .acked
                    .insert(cmid.clone(), (ack.seq, ack.message_id.clone()))
                {
                    assert_eq!(
                        prev,
                        (ack.seq, ack.message_id),
                        "a resend returns the original ack"
                    );
                }
            }
            // Rate limited or similar: resend later.
            _ => queue.push((n, cmid)),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("crash.db");
    let mut ledgers: Vec<Ledger> = (0..SENDERS).map(|_| Ledger::default()).collect();
    let mut rng = rand::rng();
    let hook_port = free_port(); // nobody listens until the end
    for round in 0..=ROUNDS {
        let port = free_port();
        let mut child = start(&db, port, hook_port).await;
        let last = round == ROUNDS;
        let mut tasks = Vec::new();
        for (i, mut ledger) in ledgers.drain(..).enumerate() {
            let stop = last.then_some(ledger.next);
            tasks.push(tokio::spawn(async move {
                stream(port, format!("u{i}"), &mut ledger, stop).await;
                ledger
            }));
        }
        if last {
            // No kill: every outstanding send must now be acknowledged.
            for t in tasks {
                ledgers.push(t.await.expect("sender"));
            }
            child.kill().await.expect("stop");
        } else {
            let delay = rng.random_range(150..700);
            tokio::time::sleep(Duration::from_millis(delay)).await;
            child.kill().await.expect("SIGKILL");
            for t in tasks {
                ledgers.push(t.await.expect("sender"));
            }
        }
    }

    let stores = open_stores(&db, SqliteOptions::default()).expect("open after crashes");
    let mut total = 0;
    for (i, ledger) in ledgers.iter().enumerate() {
        assert!(
            ledger.unacked.is_empty(),
            "u{i}: every send acknowledged in the end"
        );
        let conv = ConversationId::direct(&UserId::from(format!("u{i}")), &UserId::from("sink"));
        let all = stores
            .conversations
            .range(&conv, 0, Direction::Forward, usize::MAX)
            .await
            .expect("history");
        let seqs: Vec<u64> = all.iter().map(|m| m.seq).collect();
        assert_eq!(
            seqs,
            (1..=all.len() as u64).collect::<Vec<_>>(),
            "u{i}: gap-free seq"
        );
        let cmids: HashSet<&str> = all.iter().map(|m| m.client_msg_id.as_str()).collect();
        assert_eq!(cmids.len(), all.len(), "u{i}: no message stored twice");
        assert_eq!(
            all.len() as u64,
            ledger.next,
            "u{i}: every send stored exactly once"
        );
        for (cmid, (seq, id)) in &ledger.acked {
            let m = &all[(*seq - 1) as usize];
            assert_eq!(
                (&m.client_msg_id, &m.id.to_string()),
                (cmid, id),
                "u{i}: acknowledged message at its seq"
            );
        }
        total += all.len();
    }
    assert!(
        total > 200,
        "the test streamed a meaningful number of messages ({total})"
    );
    println!("crash test: {total} messages over {ROUNDS} kills");

    // One journal record per stored message, none missing, none extra.
    let records = stores
        .journal
        .read(0, usize::MAX)
        .await
        .expect("read the journal");
    let mut recorded: HashMap<String, Vec<u64>> = HashMap::new();
    for r in &records {
        recorded.entry(r.key.clone()).or_default().push(r.seq);
    }
    for (i, ledger) in ledgers.iter().enumerate() {
        let conv = ConversationId::direct(&UserId::from(format!("u{i}")), &UserId::from("sink"));
        let seqs = recorded.remove(conv.as_str()).unwrap_or_default();
        assert_eq!(
            seqs,
            (1..=ledger.next).collect::<Vec<_>>(),
            "u{i}: one record per message, in order"
        );
    }
    assert!(recorded.is_empty(), "no stray records: {recorded:?}");
    drop(stores);

    // With a receiver up, a restarted server posts every event.
    let received = Arc::new(parking_lot::Mutex::new(HashSet::new()));
    let app = axum::Router::new().route(
        "/events",
        axum::routing::post({
            let received = received.clone();
            move |body: bytes::Bytes| async move {
                let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
                let key = v["key"].as_str().unwrap_or("").to_owned();
                received
                    .lock()
                    .insert((key, v["data"]["seq"].as_u64().unwrap_or(0)));
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", hook_port))
        .await
        .expect("bind the receiver");
    let receiver = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let mut child = start(&db, free_port(), hook_port).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while received.lock().len() < total {
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {total} events posted",
            received.lock().len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().await.expect("stop");
    receiver.abort();
}

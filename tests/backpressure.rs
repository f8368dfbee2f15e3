//! Clients that do not read, over real sockets: a flood of pipelined
//! requests from a client that never reads keeps the server's memory
//! bounded while others chat; a receiver that stops reading falls behind
//! and catches up through sync; one whose socket stalls is kicked with the
//! `Kicked` frame, and catches up after reconnecting; resends are stored
//! and seen once.

mod common;

use std::time::{Duration, Instant};

use common::*;
use imkit::client::{ClientOptions, Event, Peer};
use imkit::proto::pb;
use imkit::proto::{Packet, PacketKind};
use imkit::server::Limits;
use tokio::io::AsyncWriteExt;

fn blob(len: usize) -> pb::Content {
    pb::Content {
        body: Some(pb::content::Body::Custom(pb::Custom {
            kind: "blob".into(),
            data: vec![b'b'; len].into(),
        })),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_history_requests_that_is_never_read_stays_bounded() {
    let limits = Limits {
        write_timeout: Duration::from_secs(2),
        ..Limits::default()
    };
    let queue_bound = limits.queue_bytes + 4 * 1024;
    let server = TestServer::with_limits(limits).await;
    let addr = server.tcp.to_string();
    // A conversation of large messages, so every answer is a full page.
    let (flooder_sdk, _ev) = login(&addr, "flooder", "sdk").await;
    let mut conversation = String::new();
    for _ in 0..60 {
        conversation = flooder_sdk
            .send(Peer::user("peer"), blob(60 * 1024))
            .await
            .expect("SENT")
            .conversation_id;
    }
    let before = rss_kib();

    // 100,000 pipelined History requests, never reading an answer.
    let mut flood = RawConn::login(server.tcp, "flooder", "raw").await;
    let request = RawConn::encode(&Packet::History(pb::HistoryRequest {
        conversation_id: conversation,
        from_seq: 0,
        backward: true,
        limit: 0,
    }));
    let writer = tokio::spawn(async move {
        let chunk: Vec<u8> = request
            .iter()
            .copied()
            .cycle()
            .take(request.len() * 1_000)
            .collect();
        let mut sent = 0;
        for _ in 0..100 {
            if flood.stream.write_all(&chunk).await.is_err() {
                break;
            }
            sent += 1_000;
        }
        sent
    });

    // Meanwhile a pair chats, and the flooder's queue is watched.
    let (alice, _a) = login(&addr, "alice", "phone").await;
    let (_bob, mut bob_ev) = login(&addr, "bob", "phone").await;
    let mut worst = Duration::ZERO;
    let mut peak_rss = before;
    let mut peak_queue = 0;
    for i in 0..100 {
        let t = Instant::now();
        alice
            .send_text(Peer::user("bob"), format!("m{i}"))
            .await
            .expect("SENT");
        let m = messages(&mut bob_ev, 1).await;
        assert_eq!(m[0].seq, i + 1);
        worst = worst.max(t.elapsed());
        peak_rss = peak_rss.max(rss_kib());
        if let Some(q) = server
            .handle
            .peak_queued_bytes(&"flooder".into(), &"raw".into())
        {
            peak_queue = peak_queue.max(q);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "chat beside the flood: worst send-to-receive {worst:?}; flooder's peak queue {peak_queue} B; RSS {before} KiB before, {peak_rss} KiB at most"
    );
    assert!(worst < Duration::from_secs(1), "chat latency {worst:?}");
    assert!(peak_queue <= queue_bound, "flooder's queue {peak_queue} B");
    assert!(
        peak_rss < before + 64 * 1024,
        "RSS grew from {before} to {peak_rss} KiB"
    );
    // The flooder's writes stalled: it was kicked, and its connection is gone.
    let deadline = Instant::now() + Duration::from_secs(15);
    while server
        .handle
        .peak_queued_bytes(&"flooder".into(), &"raw".into())
        .is_some()
    {
        assert!(Instant::now() < deadline, "the flooder is still connected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // After the kick the server reads and drops the rest for a grace
    // period (so its last frames are not lost to a reset), then closes.
    let sent = tokio::time::timeout(Duration::from_secs(15), writer)
        .await
        .expect("the flood's writer ends")
        .expect("writer");
    eprintln!("the flooder wrote {sent} requests before the server closed");
    server.stop().await;
}

/// A live receiver whose application stops taking events: the SDK stops
/// reading, the server stops pushing past its live-push limit and says so,
/// and when the application resumes every message arrives once, in order,
/// with no kick.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_stops_reading_falls_behind_and_catches_up() {
    let server = TestServer::start().await;
    let addr = server.tcp.to_string();
    let options = ClientOptions {
        event_capacity: 8,
        ..ClientOptions::default()
    };
    let (_bob, mut bob_ev) = login_with(&addr, "bob", "phone", options).await;
    let (alice, _a) = login(&addr, "alice", "phone").await;
    // 2,000 messages of 4 KiB: 8 MiB, far past the 256 KiB live-push limit
    // and the socket buffers, while bob's application takes nothing.
    const N: u64 = 2_000;
    let sends: Vec<_> = (0..N)
        .map(|_| alice.send(Peer::user("bob"), blob(4 * 1024)))
        .collect();
    for s in futures::future::join_all(sends).await {
        s.expect("SENT");
    }
    let peak = server
        .handle
        .peak_queued_bytes(&"bob".into(), &"phone".into())
        .expect("bob is connected");
    eprintln!("bob's peak queue while not reading: {peak} B");
    assert!(peak <= Limits::default().queue_bytes + 4 * 1024);
    // The application resumes.
    let mut next = 1;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while next <= N {
        match tokio::time::timeout_at(deadline, bob_ev.recv())
            .await
            .expect("catch-up in time")
            .expect("events")
        {
            Event::Message(m) => {
                assert_eq!(m.seq, next, "once, in order");
                next += 1;
            }
            Event::Kicked { reason, .. } => panic!("kicked: {reason:?}"),
            Event::Disconnected { reason } => panic!("dropped: {reason}"),
            _ => {}
        }
    }
    assert!(
        drain_messages(&mut bob_ev, Duration::from_millis(300))
            .await
            .is_empty()
    );
    server.stop().await;
}

/// A receiver whose socket stalls (its application stopped and the
/// kernel buffers are full) for longer than the write timeout is kicked:
/// the `Kicked` frame is its last, and after reconnecting it catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_receiver_gets_kicked_then_catches_up() {
    let limits = Limits {
        // Pushes never pause here, so the socket itself must stall.
        live_push_bytes: 64 * 1024 * 1024,
        queue_bytes: 64 * 1024 * 1024,
        queue_len: 1 << 20,
        write_timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    let server = TestServer::with_limits(limits).await;
    let addr = server.tcp.to_string();
    let options = ClientOptions {
        event_capacity: 8,
        reconnect_min: Duration::from_millis(50),
        ..ClientOptions::default()
    };
    let (_bob, mut bob_ev) = login_with(&addr, "bob", "phone", options).await;
    let (alice, _a) = login(&addr, "alice", "phone").await;
    const N: u64 = 1_000;
    let sends: Vec<_> = (0..N)
        .map(|_| alice.send(Peer::user("bob"), blob(32 * 1024)))
        .collect();
    for s in futures::future::join_all(sends).await {
        s.expect("SENT");
    }
    // Bob's application sleeps past the write timeout (and within the
    // grace that follows the kick).
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    // Once bob sees the kick, alice sends more: some reach the closing
    // connection and are dropped there, the rest arrive after bob is back;
    // all must reach bob's application, once and in order.
    const MORE: u64 = 300;
    let mut second_batch = None;
    let mut next = 1;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while next <= N + MORE {
        match tokio::time::timeout_at(deadline, bob_ev.recv())
            .await
            .unwrap_or_else(|_| panic!("message {next} did not arrive"))
            .expect("events")
        {
            Event::Message(m) => {
                assert_eq!(m.seq, next, "once, in order, across the reconnect");
                next += 1;
            }
            Event::Kicked { reason, .. } => {
                assert_eq!(reason, pb::KickReason::SlowConsumer);
                assert_eq!(next, N + 1, "the Kicked frame follows what was queued");
                let alice = alice.clone();
                second_batch = Some(tokio::spawn(async move {
                    for i in 0..MORE {
                        alice
                            .send_text(Peer::user("bob"), format!("after {i}"))
                            .await
                            .expect("SENT");
                    }
                }));
            }
            _ => {}
        }
    }
    second_batch
        .expect("the Kicked frame arrived before the close")
        .await
        .expect("second batch");
    server.stop().await;
}

/// Five resends of one send (same client message id, straight on the
/// wire): one stored message, five answers naming it, one push.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_resends_are_stored_and_seen_once() {
    let server = TestServer::start().await;
    let addr = server.tcp.to_string();
    let (bob, mut bob_ev) = login(&addr, "bob", "phone").await;
    let mut raw = RawConn::login(server.tcp, "alice", "raw").await;
    let send = Packet::Send(pb::SendRequest {
        client_msg_id: "only-once".into(),
        to: Some(pb::send_request::To::UserId("bob".into())),
        content: Some(blob(100)),
    });
    let mut answers = Vec::new();
    for _ in 0..5 {
        raw.send(&send).await;
    }
    while answers.len() < 5 {
        match raw.packet().await.expect("answer") {
            Packet::SendResponse(r) => answers.push(r),
            p if p.kind() == PacketKind::ReceiptPush => {}
            p => panic!("unexpected {:?}", p.kind()),
        }
    }
    let first = &answers[0];
    assert!(!first.duplicate);
    for again in &answers[1..] {
        assert_eq!(
            (&again.message_id, again.seq, again.duplicate),
            (&first.message_id, first.seq, true)
        );
    }
    let seen = drain_messages(&mut bob_ev, Duration::from_millis(500)).await;
    assert_eq!(seen.len(), 1, "bob sees it once");
    let history = bob
        .history(&first.conversation_id, 0, true, 0)
        .await
        .expect("history");
    assert_eq!(history.messages.len(), 1, "stored once");
    server.stop().await;
}

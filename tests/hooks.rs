//! In-process hooks on a real server: a rejecting hook's error reaches the
//! sender and nothing is stored; a rewriting hook changes what recipients
//! see; a panicking or slow hook is contained (fail open and fail closed)
//! and stalls no other conversation; events arrive after their commits, in
//! order per conversation.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{TestServer, drain_messages, login, messages, text_of};
use imkit::client::{ClientError, Peer};
use imkit::engine::hooks::{Event, FailMode, HookOptions, Hooks, PendingSend, Verdict};
use imkit::proto::ErrorCode;
use imkit::proto::pb;
use parking_lot::Mutex;

/// Moderation by keyword: "spam" is refused, "darn" is masked, "panic"
/// panics, "slow" takes 30 s. Every event is recorded.
#[derive(Default)]
struct Moderator {
    events: Mutex<Vec<Event>>,
}

fn text(content: &pb::Content) -> &str {
    match content.body.as_ref() {
        Some(pb::content::Body::Text(t)) => &t.text,
        _ => "",
    }
}

#[async_trait::async_trait]
impl Hooks for Moderator {
    async fn before_send(&self, send: &PendingSend) -> Verdict {
        let t = text(&send.content);
        if t.contains("spam") {
            Verdict::Reject("no spam here".into())
        } else if t.contains("darn") {
            Verdict::Rewrite(pb::Content::text(t.replace("darn", "****")))
        } else if t.contains("panic") {
            panic!("the moderation service crashed");
        } else if t.contains("slow") {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Verdict::Accept
        } else {
            Verdict::Accept
        }
    }

    async fn after(&self, event: &Event) {
        if let Event::Message(m) = event
            && text(&m.content).contains("stall")
        {
            // A slow observer: its lane waits, the others do not.
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        self.events.lock().push(event.clone());
    }
}

fn rejected(e: &ClientError) -> bool {
    e.code() == Some(ErrorCode::Rejected)
}

#[tokio::test]
async fn a_hook_rejects_rewrites_and_fails_open() {
    let hooks = Arc::new(Moderator::default());
    let options = HookOptions::default().before_send_timeout(Duration::from_millis(300));
    let server = TestServer::custom(|b| b.hooks(hooks.clone(), options)).await;
    let addr = server.tcp.to_string();
    let (alice, _) = login(&addr, "alice", "phone").await;
    let (bob, mut bob_events) = login(&addr, "bob", "phone").await;

    let err = alice
        .send_text(Peer::user("bob"), "buy spam now")
        .await
        .expect_err("a rejected send fails");
    assert!(rejected(&err), "{err}");
    assert!(
        err.to_string().contains("no spam here"),
        "the sender sees the reason: {err}"
    );

    let sent = alice
        .send_text(Peer::user("bob"), "well darn")
        .await
        .expect("a rewritten send is stored");
    assert_eq!(
        sent.seq, 1,
        "the rejected message took no seq: nothing was stored"
    );
    let got = messages(&mut bob_events, 1).await;
    assert_eq!(text_of(&got[0]), "well ****", "recipients see the rewrite");

    // A panicking hook fails open by default: the send goes through as it was.
    let sent = alice
        .send_text(Peer::user("bob"), "panic!")
        .await
        .expect("fail open");
    assert_eq!(sent.seq, 2);
    // So does one past its timeout; meanwhile other senders are not held up.
    let slow = {
        let alice = alice.clone();
        tokio::spawn(async move { alice.send_text(Peer::user("bob"), "slow one").await })
    };
    let started = Instant::now();
    bob.send_text(Peer::user("carol"), "quick")
        .await
        .expect("another conversation");
    assert!(
        started.elapsed() < Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    let sent = slow
        .await
        .expect("join")
        .expect("fail open after the timeout");
    assert_eq!(sent.seq, 3);
    let texts: Vec<String> = messages(&mut bob_events, 2)
        .await
        .iter()
        .map(|m| text_of(m).to_owned())
        .collect();
    assert_eq!(texts, ["panic!", "slow one"]);
    assert!(
        drain_messages(&mut bob_events, Duration::from_millis(200))
            .await
            .is_empty()
    );
    server.stop().await;
}

#[tokio::test]
async fn a_failing_hook_can_fail_closed() {
    let hooks = Arc::new(Moderator::default());
    let options = HookOptions::default()
        .before_send_timeout(Duration::from_millis(200))
        .on_failure(FailMode::Closed);
    let server = TestServer::custom(|b| b.hooks(hooks, options)).await;
    let addr = server.tcp.to_string();
    let (alice, _) = login(&addr, "alice", "phone").await;
    // The SDK's send() keeps a retryable failure in its outbox and tries
    // again; a raw request shows the answer itself.
    for (i, text) in ["panic", "slow"].into_iter().enumerate() {
        let request = pb::SendRequest {
            client_msg_id: format!("closed-{i}"),
            to: Some(pb::send_request::To::UserId("bob".into())),
            content: Some(pb::Content::text(text)),
        };
        let err = alice
            .request(imkit::proto::Packet::Send(request))
            .await
            .expect_err("fail closed");
        assert_eq!(err.code(), Some(ErrorCode::Overloaded), "{err}");
        assert!(err.code().is_some_and(ErrorCode::is_retryable));
    }
    let sent = alice
        .send_text(Peer::user("bob"), "fine")
        .await
        .expect("send");
    assert_eq!(sent.seq, 1, "the failed sends stored nothing");
    server.stop().await;
}

/// A moderation service that is down: it never decides, and counts asks.
#[derive(Default)]
struct Down {
    asked: Mutex<Vec<Instant>>,
}

#[async_trait::async_trait]
impl Hooks for Down {
    async fn before_send(&self, _: &PendingSend) -> Verdict {
        self.asked.lock().push(Instant::now());
        Verdict::Undecided("the moderation service is down".into())
    }
}

#[tokio::test]
async fn the_sdk_retries_a_refused_send_with_backoff_then_gives_up() {
    let hooks = Arc::new(Down::default());
    let options = HookOptions::default().on_failure(FailMode::Closed);
    let server = TestServer::custom(|b| b.hooks(hooks.clone(), options)).await;
    let client = imkit::client::ClientOptions {
        retry_delay: Duration::from_millis(20),
        retry_max_delay: Duration::from_millis(60),
        send_retries: 3,
        ..imkit::client::ClientOptions::default()
    };
    let (alice, _) = common::login_with(&server.tcp.to_string(), "alice", "phone", client).await;
    let err = alice
        .send_text(Peer::user("bob"), "hello")
        .await
        .expect_err("the service stays down");
    assert_eq!(err.code(), Some(ErrorCode::Overloaded), "{err}");
    let asked = hooks.asked.lock().clone();
    assert_eq!(asked.len(), 4, "the first try and three retries");
    // Each retry waited its delay (20, 40, then 60 ms capped; -20% jitter),
    // rather than following the refusal at once.
    for (i, least) in [16, 32, 48].into_iter().enumerate() {
        let gap = asked[i + 1] - asked[i];
        assert!(gap >= Duration::from_millis(least), "retry {i}: {gap:?}");
    }
    server.stop().await;
}

#[tokio::test]
async fn events_follow_commits_in_order_and_a_slow_observer_stalls_only_its_lane() {
    let hooks = Arc::new(Moderator::default());
    let server = TestServer::custom(|b| b.hooks(hooks.clone(), HookOptions::default())).await;
    let addr = server.tcp.to_string();
    let (alice, _) = login(&addr, "alice", "phone").await;
    let (bob, mut bob_events) = login(&addr, "bob", "phone").await;
    // A message whose observer stalls, in alice and dave's conversation.
    alice
        .send_text(Peer::user("dave"), "stall here")
        .await
        .expect("send");
    // Alice and bob's conversation goes on, and its events arrive.
    for i in 0..20 {
        alice
            .send_text(Peer::user("bob"), format!("m{i}"))
            .await
            .expect("send");
    }
    let got = messages(&mut bob_events, 20).await;
    let conversation = got[0].conversation_id.clone();
    bob.mark_read(&conversation, 20).await.expect("read");
    let recalled = alice
        .send_text(Peer::user("bob"), "oops")
        .await
        .expect("send");
    alice
        .recall(&recalled.conversation_id, &recalled.message_id)
        .await
        .expect("recall");

    bob.add_friend("alice", "hi").await.expect("friend request");
    let group = alice.create_group("hooked", &["bob"]).await.expect("group");
    let _ = group;

    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let done = hooks
            .events
            .lock()
            .iter()
            .any(|e| matches!(e, Event::Recall { .. }))
            && hooks
                .events
                .lock()
                .iter()
                .any(|e| matches!(e, Event::Group { .. }));
        if done {
            break;
        }
        assert!(Instant::now() < deadline, "the events never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let events = hooks.events.lock().clone();
    let seqs: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            Event::Message(m) if m.conversation.as_str() == conversation => Some(m.seq),
            _ => None,
        })
        .collect();
    assert_eq!(
        seqs,
        (1..=21).collect::<Vec<_>>(),
        "one event per message, in seq order"
    );
    let read = events.iter().position(|e| {
        matches!(e, Event::Receipt { kind: pb::ReceiptKind::Read, seq: 20, user, .. } if user.as_str() == "bob")
    });
    let recall = events
        .iter()
        .position(|e| matches!(e, Event::Recall { .. }));
    assert!(
        read.is_some() && recall.is_some() && read < recall,
        "receipt then recall"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Login { user, .. } if user.as_str() == "bob"))
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::Message(m) if text(&m.content).contains("stall"))),
        "the stalled observer has not finished, and held up nothing else"
    );
    server.stop().await;
}

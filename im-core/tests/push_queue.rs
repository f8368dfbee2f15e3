//! The push queue through the engine, with no network: a slow notifier
//! never holds up a sender, the queue stays within its bound (what does
//! not fit is dropped, not buffered), and a notice's badge and preview
//! follow the recipient's cursors and settings.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use imkit_core::push::{PushNotice, PushNotifier, PushOptions, PushReport};
use imkit_core::store::Stores;
use imkit_core::{Caller, Engine, EngineConfig};
use imkit_proto::pb;
use parking_lot::Mutex;
use tokio::sync::Semaphore;

/// Records notices; each call waits for a permit first.
struct Gate {
    open: Semaphore,
    seen: Mutex<Vec<PushNotice>>,
}

#[async_trait]
impl PushNotifier for Gate {
    async fn notify(&self, notices: &[PushNotice]) -> PushReport {
        if let Ok(p) = self.open.acquire().await {
            p.forget();
        }
        self.seen.lock().extend_from_slice(notices);
        PushReport::default()
    }
}

fn send(to: &str, text: &str, id: &str) -> pb::SendRequest {
    pb::SendRequest {
        client_msg_id: id.into(),
        to: Some(pb::send_request::To::UserId(to.into())),
        content: Some(pb::Content::text(text)),
    }
}

#[tokio::test]
async fn a_slow_notifier_never_holds_up_senders_and_the_queue_stays_bounded() {
    let gate = Arc::new(Gate {
        open: Semaphore::new(0),
        seen: Mutex::default(),
    });
    let mut push = PushOptions::default();
    push.max_queued = 2;
    push.concurrency = 1;
    let config = EngineConfig {
        push,
        ..EngineConfig::default()
    };
    let engine = Engine::with_notifier(Stores::memory(), config, gate.clone());
    let bob = Caller::new("bob", "phone");
    engine
        .push_token_set(
            &bob,
            pb::PushTokenSetRequest {
                provider: "fcm".into(),
                platform: "android".into(),
                token: "t".into(),
            },
        )
        .await
        .expect("token");
    let alice = Caller::new("alice", "phone");
    // The notifier is stuck: 20 sends still complete at once.
    for i in 0..20u64 {
        let sent = tokio::time::timeout(
            Duration::from_secs(2),
            engine.send(&alice, send("bob", &format!("m{i}"), &format!("c{i}"))),
        )
        .await
        .expect("a send does not wait for pushes")
        .expect("send");
        assert_eq!(sent.reply.seq, i + 1);
    }
    gate.open.add_permits(100);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = gate.seen.lock().clone();
    // One job at the notifier, two in the queue, one taken by the worker
    // while it waited for a turn: the other sends' pushes were dropped.
    assert!(
        (1..=4).contains(&seen.len()),
        "at most the queue's bound got through: {}",
        seen.len()
    );
    assert_eq!(seen[0].seq, 1);
    // The badge is the unread count when the notice was made: at least
    // the messages up to this one.
    assert!((1..=20).contains(&seen[0].badge), "{}", seen[0].badge);
    assert_eq!(
        seen[0]
            .preview
            .as_ref()
            .map(|p| (p.sender.as_str(), p.text.as_str())),
        Some(("alice", "m0"))
    );
    // Afterwards each push goes through, with the badge from the cursors.
    gate.seen.lock().clear();
    let later = engine
        .send(&alice, send("bob", "later", "c-later"))
        .await
        .expect("send");
    assert_eq!(later.reply.seq, 21);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let seen = gate.seen.lock().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].badge, 21);
    // Hidden content: no preview.
    engine
        .push_settings(
            &bob,
            pb::PushSettingsRequest {
                preview: pb::PushPreview::Hide as i32,
            },
        )
        .await
        .expect("settings");
    let secret = engine
        .send(&alice, send("bob", "secret", "c-secret"))
        .await
        .expect("send");
    assert_eq!(secret.reply.seq, 22);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let seen = gate.seen.lock().clone();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].preview, None);
    // Bad registrations are refused.
    let err = engine
        .push_token_set(
            &bob,
            pb::PushTokenSetRequest {
                provider: String::new(),
                platform: "ios".into(),
                token: "x".into(),
            },
        )
        .await
        .expect_err("no provider");
    assert!(err.to_string().contains("provider"), "{err}");
    let err = engine
        .push_token_set(
            &bob,
            pb::PushTokenSetRequest {
                provider: "fcm".into(),
                platform: String::new(),
                token: "x".repeat(5_000),
            },
        )
        .await
        .expect_err("too long");
    assert!(err.to_string().contains("4096"), "{err}");
    for (provider, platform, token) in [
        ("fcm push", "ios", "abc"),
        ("fcm", "i/os", "abc"),
        ("fcm", "ios", "ab c"),
        ("fcm", "ios", "jeton-é"),
    ] {
        let refused = engine
            .push_token_set(
                &bob,
                pb::PushTokenSetRequest {
                    provider: provider.into(),
                    platform: platform.into(),
                    token: token.into(),
                },
            )
            .await;
        assert!(refused.is_err(), "{provider:?} {platform:?} {token:?}");
    }
    engine
        .push_token_set(
            &bob,
            pb::PushTokenSetRequest {
                provider: "apns.sandbox".into(),
                platform: "ios_17".into(),
                token: "dQw4w9WgXcQ:APA91bH-x_y".into(),
            },
        )
        .await
        .expect("names of A-Z a-z 0-9 _ - . and a printable token");
}

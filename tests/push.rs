//! Offline push against a local HTTP receiver standing in for FCM and
//! APNs: devices register tokens over the wire and over HTTP; a user with
//! no device connected gets one request per registered device, with their
//! total unread as the badge and a preview unless they hide content; a
//! connected user gets none; a token the provider calls unregistered is
//! removed and never used again.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use common::{TestServer, login, messages, token};
use imkit::client::Peer;
use imkit::engine::model::UserId;
use imkit::server::push::{HttpPushNotifier, PushGateways};
use parking_lot::Mutex;
use serde_json::{Value, json};

/// What the receiver got: (provider, token, headers we check, body).
#[derive(Default)]
struct Got {
    requests: Vec<(String, String, Value)>,
    apns_topics: Vec<String>,
    bad_auth: usize,
}

type Shared = Arc<Mutex<Got>>;

async fn fcm(State(got): State<Shared>, headers: HeaderMap, body: String) -> (StatusCode, String) {
    let v: Value = serde_json::from_str(&body).expect("json");
    let token = v["message"]["token"].as_str().unwrap_or("").to_owned();
    let mut got = got.lock();
    if headers.get("authorization").and_then(|h| h.to_str().ok()) != Some("Bearer fcm-key") {
        got.bad_auth += 1;
    }
    got.requests.push(("fcm".into(), token.clone(), v));
    if token == "fcm-dead" {
        let answer = json!({"error": {"code": 404, "status": "NOT_FOUND",
            "details": [{"errorCode": "UNREGISTERED"}]}});
        return (StatusCode::NOT_FOUND, answer.to_string());
    }
    (
        StatusCode::OK,
        json!({"name": "projects/p/messages/1"}).to_string(),
    )
}

async fn apns(
    State(got): State<Shared>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: String,
) -> StatusCode {
    let v: Value = serde_json::from_str(&body).expect("json");
    let mut got = got.lock();
    let topic = headers
        .get("apns-topic")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_owned();
    got.apns_topics.push(topic);
    got.requests.push(("apns".into(), token, v));
    StatusCode::OK
}

async fn receiver() -> (String, Shared) {
    let got = Shared::default();
    let app = axum::Router::new()
        .route("/fcm", post(fcm))
        .route("/apns/3/device/{token}", post(apns))
        .with_state(got.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), got)
}

/// Waits until `n` requests arrived, then a little longer for strays.
async fn wait_for(got: &Shared, n: usize) -> Vec<(String, String, Value)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.lock().requests.len() < n {
        assert!(
            Instant::now() < deadline,
            "{} of {n} push requests: {:?}",
            got.lock().requests.len(),
            got.lock().requests
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    got.lock().requests.drain(..).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn offline_devices_get_pushes_with_badges_and_online_ones_do_not() {
    let (base, got) = receiver().await;
    let gateways = PushGateways::default()
        .fcm(format!("{base}/fcm"), Some("fcm-key".into()))
        .apns(format!("{base}/apns"), "com.example.chat", None);
    let notifier = Arc::new(HttpPushNotifier::new(gateways).expect("notifier"));
    let http = "127.0.0.1:0";
    let server = TestServer::custom(move |b| {
        b.push_notifier(notifier)
            .http(http, imkit::server::http::HttpOptions::default())
    })
    .await;
    let addr = server.tcp.to_string();
    let http_addr = server.handle.http_addr().expect("http addr");

    // Bob registers two devices (one over the wire, one over HTTP), then
    // goes offline. Erin hides content. Carol stays online. Dave's token
    // is dead.
    let (bob, _b) = login(&addr, "bob", "phone").await;
    bob.set_push_token("fcm", "android", "fcm-bob")
        .await
        .expect("token");
    let put = reqwest::Client::new()
        .put(format!(
            "http://{http_addr}/v1/me/devices/tablet/push-token"
        ))
        .bearer_auth(token("bob"))
        .json(&json!({"provider": "apns", "platform": "ios", "token": "apns-bob"}))
        .send()
        .await
        .expect("PUT push-token");
    assert_eq!(put.status(), 200, "{:?}", put.text().await);
    bob.close().await;
    let (erin, _e) = login(&addr, "erin", "phone").await;
    erin.set_push_token("fcm", "android", "fcm-erin")
        .await
        .expect("token");
    erin.hide_push_content(true).await.expect("hide");
    erin.close().await;
    let (carol, _c) = login(&addr, "carol", "phone").await;
    carol
        .set_push_token("fcm", "android", "fcm-carol")
        .await
        .expect("token");
    let (dave, _d) = login(&addr, "dave", "phone").await;
    dave.set_push_token("fcm", "android", "fcm-dead")
        .await
        .expect("token");
    dave.close().await;
    // Let the servers notice the closed connections.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let (alice, _a) = login(&addr, "alice", "phone").await;
    alice
        .send_text(Peer::user("bob"), "first")
        .await
        .expect("send");
    let first = wait_for(&got, 2).await;
    alice
        .send_text(Peer::user("bob"), "second message")
        .await
        .expect("send");
    let second = wait_for(&got, 2).await;
    for (batch, badge) in [(&first, 1), (&second, 2)] {
        let mut providers: Vec<&str> = batch.iter().map(|r| r.0.as_str()).collect();
        providers.sort_unstable();
        assert_eq!(
            providers,
            ["apns", "fcm"],
            "one request per registered device"
        );
        for (provider, token, body) in batch.iter() {
            match provider.as_str() {
                "fcm" => {
                    assert_eq!(token, "fcm-bob");
                    let m = &body["message"];
                    assert_eq!(m["notification"]["title"], "alice");
                    assert_eq!(
                        m["data"]["badge"],
                        badge.to_string(),
                        "badge = total unread"
                    );
                    assert_eq!(m["data"]["conversation_id"], "d:alice:bob");
                }
                _ => {
                    assert_eq!(token, "apns-bob");
                    assert_eq!(body["aps"]["badge"], badge);
                    assert_eq!(body["aps"]["alert"]["title"], "alice");
                }
            }
        }
    }
    assert_eq!(
        first[0]
            .2
            .pointer("/message/notification/body")
            .or(first[0].2.pointer("/aps/alert/body")),
        Some(&json!("first"))
    );
    assert_eq!(
        got.lock().apns_topics,
        ["com.example.chat", "com.example.chat"]
    );

    // A hidden preview, and no push at all for a connected user.
    alice
        .send_text(Peer::user("carol"), "you are online")
        .await
        .expect("send");
    alice
        .send_text(Peer::user("erin"), "secret plans")
        .await
        .expect("send");
    let hidden = wait_for(&got, 1).await;
    assert_eq!(hidden.len(), 1, "carol is online: no push for her");
    let m = &hidden[0].2["message"];
    assert_eq!(hidden[0].1, "fcm-erin");
    assert_eq!(
        m["notification"],
        json!({"title": "New message"}),
        "no sender, no content"
    );
    assert_eq!(m["data"]["badge"], "1");

    // A group: only the offline members.
    let group = alice
        .create_group("team", &["bob", "carol"])
        .await
        .expect("group");
    let group_pushes_before = got.lock().requests.len();
    assert_eq!(group_pushes_before, 0, "a group event is not pushed");
    alice
        .send_text(Peer::group(&group.group_id), "to the team")
        .await
        .expect("group send");
    let team = wait_for(&got, 2).await;
    assert_eq!(team.len(), 2, "bob's two devices, not carol: {team:?}");
    // Bob read nothing: 2 unread with alice, 1 in the group (the creation
    // event does not count).
    assert_eq!(
        team.iter().find(|r| r.0 == "fcm").expect("fcm").2["message"]["data"]["badge"],
        "3"
    );

    // Dave's dead token: tried once, then removed.
    alice
        .send_text(Peer::user("dave"), "hello?")
        .await
        .expect("send");
    let dead = wait_for(&got, 1).await;
    assert_eq!(dead[0].1, "fcm-dead");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let profiles = server
            .handle
            .engine()
            .stores()
            .push
            .profiles(&[UserId::from("dave")])
            .await
            .expect("profiles");
        if profiles.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "the dead token was not removed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    alice
        .send_text(Peer::user("dave"), "anyone?")
        .await
        .expect("send");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(got.lock().requests.is_empty(), "no push to a removed token");

    // Removing a token over the wire stops pushes to that device.
    let (bob, mut bob_events) = login(&addr, "bob", "phone").await;
    messages(&mut bob_events, 1).await;
    bob.remove_push_token().await.expect("remove");
    bob.close().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    alice
        .send_text(Peer::user("bob"), "third")
        .await
        .expect("send");
    let last = wait_for(&got, 1).await;
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].1, "apns-bob", "only the tablet is still registered");
    assert_eq!(got.lock().bad_auth, 0, "FCM requests carry the key");
    server.stop().await;
}

//! Tokens that expire during a session, over real sockets: the server ends
//! the session at the token's expiry with `Kicked { TOKEN_EXPIRED }`; an
//! SDK with a token-refresh callback reconnects with a fresh token and
//! loses nothing, and one without stops.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use imkit::client::{Client, ClientOptions, ConnectionState, Event, Peer, TokenRefresh};
use imkit::core::auth::HmacAuthenticator;
use imkit::core::model::UserId;
use imkit::proto::pb;

fn short_token(user: &str, secs: u64) -> String {
    HmacAuthenticator::new(SECRET).mint(&UserId::from(user), secs)
}

async fn kicked(events: &mut imkit::client::Events) -> pb::KickReason {
    wait_for(events, |e| match e {
        Event::Kicked { reason, .. } => Some(reason),
        _ => None,
    })
    .await
}

#[tokio::test]
async fn an_expired_token_ends_the_session_and_a_refresh_callback_reconnects() {
    let server = TestServer::start().await;
    let addr = server.tcp.to_string();
    let minted = Arc::new(AtomicUsize::new(0));
    let counter = minted.clone();
    let options = ClientOptions {
        token_refresh: Some(TokenRefresh::new(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                Some(short_token("alice", 3_600))
            }
        })),
        ..ClientOptions::default()
    };
    let (alice, mut alice_ev) = Client::connect(&addr, options).await.expect("connect");
    let started = Instant::now();
    alice
        .login(&short_token("alice", 2), "phone")
        .await
        .expect("login");
    assert_eq!(kicked(&mut alice_ev).await, pb::KickReason::TokenExpired);
    let after = started.elapsed();
    assert!(
        after <= Duration::from_millis(2_500),
        "kicked {after:?} after login"
    );
    wait_for(&mut alice_ev, |e| match e {
        Event::Connected { .. } => Some(()),
        _ => None,
    })
    .await;
    assert_eq!(minted.load(Ordering::SeqCst), 1, "one fresh token");
    // The new session works: a message both ways.
    let (bob, mut bob_ev) = login(&addr, "bob", "phone").await;
    alice
        .send_text(Peer::user("bob"), "after refresh")
        .await
        .expect("SENT");
    assert_eq!(text_of(&messages(&mut bob_ev, 1).await[0]), "after refresh");
    bob.send_text(Peer::user("alice"), "welcome back")
        .await
        .expect("SENT");
    assert_eq!(
        text_of(&messages(&mut alice_ev, 1).await[0]),
        "welcome back"
    );
    server.stop().await;
}

#[tokio::test]
async fn without_a_refresh_callback_the_client_stops_at_expiry() {
    let server = TestServer::start().await;
    let options = ClientOptions::default();
    let (alice, mut alice_ev) = Client::connect(&server.tcp.to_string(), options)
        .await
        .expect("connect");
    alice
        .login(&short_token("alice", 1), "phone")
        .await
        .expect("login");
    assert_eq!(kicked(&mut alice_ev).await, pb::KickReason::TokenExpired);
    let closed = tokio::time::timeout(WAIT, async {
        while alice.state() != ConnectionState::Closed {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(closed.is_ok(), "the client stopped");
    server.stop().await;
}

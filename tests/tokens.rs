//! Login tokens over real sockets: standard JWTs minted by "another
//! team's backend" with an ordinary JWT library (HS256 with the shared
//! secret; EdDSA with a private key while the server holds only the public
//! key); and tokens that expire during a session: the server ends it at the
//! token's expiry with `Kicked { TOKEN_EXPIRED }`; an SDK with a
//! token-refresh callback reconnects with a fresh token and loses nothing,
//! and one without stops.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use imkit::client::{Client, ClientOptions, ConnectionState, Event, Peer, TokenRefresh};
use imkit::engine::auth::HmacAuthenticator;
use imkit::engine::model::UserId;
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

/// What a backend in any language does: sign `{sub, exp, iat, nbf, jti}`.
fn backend_jwt(
    alg: jsonwebtoken::Algorithm,
    key: &jsonwebtoken::EncodingKey,
    user: &str,
) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let claims = serde_json::json!({
        "sub": user, "exp": now + 600, "iat": now, "nbf": now, "jti": format!("{user}-1"),
    });
    jsonwebtoken::encode(&jsonwebtoken::Header::new(alg), &claims, key).expect("sign")
}

async fn chat_with(addr: &str, alice_token: &str) {
    let (alice, _a) = Client::connect(addr, ClientOptions::default())
        .await
        .expect("connect");
    alice.login(alice_token, "phone").await.expect("JWT login");
    let (_bob, mut bob_ev) = login(addr, "bob", "phone").await;
    alice
        .send_text(Peer::user("bob"), "signed elsewhere")
        .await
        .expect("SENT");
    assert_eq!(
        text_of(&messages(&mut bob_ev, 1).await[0]),
        "signed elsewhere"
    );
}

#[tokio::test]
async fn a_backends_hs256_jwt_logs_in() {
    let server = TestServer::start().await;
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()).expect("key");
    let token = backend_jwt(jsonwebtoken::Algorithm::HS256, &key, "alice");
    chat_with(&server.tcp.to_string(), &token).await;
    // A token signed with another secret does not.
    let other = jsonwebtoken::EncodingKey::from_secret(b"not the secret").expect("key");
    let forged = backend_jwt(jsonwebtoken::Algorithm::HS256, &other, "alice");
    let (c, _e) = Client::connect(&server.tcp.to_string(), ClientOptions::default())
        .await
        .expect("connect");
    let err = c.login(&forged, "phone").await.expect_err("forged");
    assert_eq!(err.code(), Some(imkit::proto::ErrorCode::InvalidToken));
    server.stop().await;
}

#[tokio::test]
async fn an_eddsa_jwt_is_checked_with_the_public_key_alone() {
    // A key pair made with `openssl genpkey -algorithm ed25519`, for tests.
    const PRIVATE: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIKOnDN+cuhetJGDi+k0Lbq3gA2+UpuT6xnnkJat4zxBh\n-----END PRIVATE KEY-----\n";
    const PUBLIC: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAJoVx/QGhU1L89v0v7S7iK0eFklcrkeDtbhXQUu6grXg=\n-----END PUBLIC KEY-----\n";
    use imkit::engine::auth::{JwtAlgorithm, JwtAuthenticator};
    // Bob logs in with the same kind of token: the server has no secret.
    let verifier = JwtAuthenticator::public_key(
        JwtAlgorithm::EdDsa,
        PUBLIC.as_bytes(),
        imkit::engine::Clock::system(),
    )
    .expect("public key");
    let server = TestServer::custom(|b| b.jwt(verifier)).await;
    let key = jsonwebtoken::EncodingKey::from_ed_pem(PRIVATE.as_bytes()).expect("key");
    let alice = backend_jwt(jsonwebtoken::Algorithm::EdDSA, &key, "alice");
    let bob = backend_jwt(jsonwebtoken::Algorithm::EdDSA, &key, "bob");
    let addr = server.tcp.to_string();
    let (a, _a) = Client::connect(&addr, ClientOptions::default())
        .await
        .expect("connect");
    a.login(&alice, "phone").await.expect("alice");
    let (b, mut b_ev) = Client::connect(&addr, ClientOptions::default())
        .await
        .expect("connect");
    b.login(&bob, "phone").await.expect("bob");
    a.send_text(Peer::user("bob"), "hi").await.expect("SENT");
    assert_eq!(text_of(&messages(&mut b_ev, 1).await[0]), "hi");
    // The shared-secret tokens of other servers mean nothing here.
    let (c, _c) = Client::connect(&addr, ClientOptions::default())
        .await
        .expect("connect");
    assert!(c.login(&token("carol"), "phone").await.is_err());
    server.stop().await;
}

/// The builder's result does not depend on the order of its calls: a
/// token secret given before or after engine settings with a clock of
/// their own is checked on that clock, and `ServerHandle::mint_token`
/// mints on it too.
#[tokio::test]
async fn the_builder_gives_one_result_whatever_the_order_of_its_calls() {
    use imkit::engine::{Clock, EngineConfig};
    // 2001: a token minted on this clock has long expired by the system's.
    const THEN_MS: u64 = 1_000_000_000_000;
    for secret_first in [true, false] {
        let config = EngineConfig {
            clock: Clock::manual(THEN_MS),
            ..EngineConfig::default()
        };
        let builder = imkit::server::Server::builder();
        let builder = if secret_first {
            builder.token_secret("order").engine_config(config)
        } else {
            builder.engine_config(config).token_secret("order")
        };
        let server = builder
            .node("node-x")
            .tcp("127.0.0.1:0")
            .start()
            .await
            .expect("start");
        let token = server
            .mint_token("alice", Duration::from_secs(600))
            .expect("mint");
        let addr = server.tcp_addr().expect("tcp").to_string();
        let (c, _e) = Client::connect(&addr, ClientOptions::default())
            .await
            .expect("connect");
        let login = c.login(&token, "phone").await.expect("logs in");
        assert_eq!(login.node_id, "node-x", "the node set once");
        assert!(
            server
                .mint_token("not a user id!", Duration::from_secs(60))
                .is_err(),
            "a &str that is no user id is refused"
        );
        server.shutdown();
    }
}

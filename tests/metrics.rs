//! The Prometheus endpoint: after real traffic (TCP and WebSocket logins,
//! live and offline messages, a sync, a duplicate login, a client over its
//! rate, HTTP requests, SQLite commits) each series moved, and every series
//! the server exports is documented in docs/operations.md.
//!
//! The recorder is per process, so this file holds one test.

mod common;

use std::collections::BTreeSet;

use common::{RawConn, TestServer, login, messages};
use imkit::client::{Client, ClientOptions, Peer};
use imkit::engine::store::StoreConfig;
use imkit::proto::{Packet, pb};
use imkit::server::Limits;
use imkit::server::http::HttpOptions;

/// The sum of a series' samples whose labels contain every `want`.
fn value(scrape: &str, name: &str, want: &[&str]) -> f64 {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|l| want.iter().all(|w| l.contains(w)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn scrape(addr: std::net::SocketAddr) -> String {
    let response = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .expect("scrape");
    assert_eq!(response.status(), 200);
    response.text().await.expect("body")
}

#[tokio::test]
async fn counters_move_with_traffic_and_every_series_is_documented() {
    let dir = tempfile::tempdir().expect("tempdir");
    let limits = Limits {
        rate_per_second: 5,
        rate_burst: 5,
        ..Limits::default()
    };
    let server = TestServer::custom(|b| {
        b.store(StoreConfig::sqlite(dir.path().join("m.db")))
            .limits(limits)
            .http("127.0.0.1:0", HttpOptions::default())
            .metrics("127.0.0.1:0")
            // A backlog of more than one message is pulled by sync.
            .engine_config(imkit::engine::EngineConfig {
                login_push_max: 1,
                ..imkit::engine::EngineConfig::default()
            })
    })
    .await;
    let metrics = server.handle.metrics_addr().expect("metrics addr");
    let before = scrape(metrics).await;

    // Live over TCP and WebSocket, and to a user with no device online.
    let tcp = server.tcp.to_string();
    let (alice, _) = login(&tcp, "alice", "phone").await;
    let (_bob, mut bob_events) = login(&server.ws_url(), "bob", "web").await;
    for i in 0..3 {
        alice
            .send_text(Peer::user("bob"), format!("hi {i}"))
            .await
            .expect("send");
        alice
            .send_text(Peer::user("carol"), format!("offline {i}"))
            .await
            .expect("send");
    }
    messages(&mut bob_events, 3).await;
    // Carol catches up at login, by sync (the paced path).
    let (_carol, mut carol_events) = login(&tcp, "carol", "tablet").await;
    messages(&mut carol_events, 3).await;
    // A refused login and a duplicate login (a kick).
    let (stranger, _) = Client::connect(&tcp, ClientOptions::default())
        .await
        .expect("connect");
    assert!(stranger.login("not-a-token", "d").await.is_err());
    let (_again, _) = login(&tcp, "alice", "phone").await;
    // A client over its rate of 5 requests a second.
    let mut raw = RawConn::login(server.tcp, "dave", "d").await;
    for _ in 0..20 {
        raw.send(&Packet::Ping(pb::Ping::default())).await;
    }
    let mut limited = false;
    while let Some(p) = raw.packet().await {
        if matches!(&p, Packet::Error(e) if e.code == imkit::proto::ErrorCode::RateLimited as u32) {
            limited = true;
            break;
        }
    }
    assert!(limited, "the flood drew a RateLimited error");
    // HTTP requests.
    let http = server.handle.http_addr().expect("http addr");
    for path in ["/healthz", "/readyz", "/v1/no-such-route"] {
        let _ = reqwest::get(format!("http://{http}{path}"))
            .await
            .expect("get");
    }

    let after = scrape(metrics).await;
    let moved = |name: &str, want: &[&str]| {
        let (b, a) = (value(&before, name, want), value(&after, name, want));
        assert!(a > b, "{name} {want:?} did not move: {b} -> {a}\n{after}");
    };
    moved("imkit_connections_opened_total", &["transport=\"tcp\""]);
    moved(
        "imkit_connections_opened_total",
        &["transport=\"websocket\""],
    );
    moved(
        "imkit_logins_total",
        &["result=\"ok\"", "transport=\"tcp\""],
    );
    moved(
        "imkit_logins_total",
        &["result=\"ok\"", "transport=\"websocket\""],
    );
    moved("imkit_logins_total", &["result=\"refused\""]);
    moved("imkit_frames_in_total", &[]);
    moved("imkit_frames_out_total", &[]);
    moved("imkit_messages_sent_total", &["kind=\"direct\""]);
    moved("imkit_deliveries_total", &["path=\"live\""]);
    moved("imkit_deliveries_total", &["path=\"offline\""]);
    moved("imkit_deliveries_total", &["path=\"paced\""]);
    moved("imkit_kicks_total", &["reason=\"duplicate_login\""]);
    moved("imkit_rate_limited_total", &[]);
    moved(
        "imkit_http_requests_total",
        &["route=\"/healthz\"", "status=\"200\""],
    );
    moved(
        "imkit_http_requests_total",
        &["route=\"unmatched\"", "status=\"404\""],
    );
    moved("imkit_store_commit_seconds_count", &["backend=\"sqlite\""]);
    moved("imkit_store_batch_size_count", &["backend=\"sqlite\""]);
    moved("imkit_store_fsync_seconds_count", &[]);
    assert!(
        value(&after, "imkit_sessions", &[]) >= 4.0,
        "logged-in connections are sampled"
    );
    assert!(value(&after, "imkit_connections_open", &[]) >= 4.0);
    assert!(after.contains("imkit_outbox_bytes"));
    assert_eq!(
        value(&after, "imkit_messages_sent_total", &[])
            - value(&before, "imkit_messages_sent_total", &[]),
        6.0,
        "each stored message counted once"
    );

    // Every series exported is documented.
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operations.md"))
        .expect("docs/operations.md");
    let exported: BTreeSet<&str> = after
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .filter(|n| n.starts_with("imkit_"))
        .collect();
    assert!(exported.len() >= 15, "{exported:?}");
    for name in exported {
        assert!(
            docs.contains(&format!("`{name}`")),
            "docs/operations.md does not list {name}"
        );
    }
    server.stop().await;
}

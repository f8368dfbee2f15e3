//! The HTTP listener's limits against the attacks they answer, over real
//! sockets: a client that sends its headers a byte at a time, idle
//! kept-alive connections, a body that never finishes, stalled large
//! uploads (streamed to disk, not buffered), and more idle connections than
//! the HTTP share of the descriptor budget, while chat logins keep working.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use imkit::client::Peer;
use imkit::server::Server;
use imkit::server::http::HttpOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Api {
    http: SocketAddr,
    tcp: SocketAddr,
}

const ADMIN_KEY: &str = "limits-admin-key";

async fn start(options: HttpOptions) -> Api {
    start_with(options, |b| b).await
}

async fn start_with(
    options: HttpOptions,
    configure: impl FnOnce(imkit::server::ServerBuilder) -> imkit::server::ServerBuilder,
) -> Api {
    let server = configure(Server::builder())
        .token_secret(common::SECRET)
        .tcp("127.0.0.1:0")
        .http("127.0.0.1:0", options)
        .bind()
        .await
        .expect("bind");
    let api = Api {
        http: server.http_addr().expect("http"),
        tcp: server.tcp_addr().expect("tcp"),
    };
    tokio::spawn(async move { server.run().await.expect("run") });
    api
}

/// Reads until the server closes the connection; returns what it sent and
/// how long that took, or `None` if it is still open after `within`.
async fn closed_within(s: &mut TcpStream, within: Duration) -> Option<(String, Duration)> {
    let started = Instant::now();
    let mut got = Vec::new();
    let read = tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok().map(|()| {
        (
            String::from_utf8_lossy(&got).into_owned(),
            started.elapsed(),
        )
    })
}

fn options(header_timeout: Duration) -> HttpOptions {
    HttpOptions {
        header_timeout,
        body_timeout: Duration::from_secs(1),
        ..HttpOptions::default()
    }
}

#[tokio::test]
async fn headers_sent_a_byte_at_a_time_are_cut_off_at_the_header_timeout() {
    let api = start(options(Duration::from_secs(1))).await;
    let mut s = TcpStream::connect(api.http).await.expect("connect");
    let request =
        b"GET /health HTTP/1.1\r\nhost: x\r\nx-slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let started = Instant::now();
    let mut cut = false;
    for b in request {
        if s.write_all(&[*b]).await.is_err() {
            cut = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        if started.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    if !cut {
        cut = closed_within(&mut s, Duration::from_secs(1))
            .await
            .is_some();
    }
    let took = started.elapsed();
    assert!(cut, "a slowloris client is still connected after {took:?}");
    assert!(took < Duration::from_millis(2_500), "cut after {took:?}");
}

#[tokio::test]
async fn idle_kept_alive_connections_are_closed() {
    let api = start(options(Duration::from_secs(1))).await;
    // Never a byte.
    let mut silent = TcpStream::connect(api.http).await.expect("connect");
    // One request, then idle on a kept-alive connection.
    let mut kept = TcpStream::connect(api.http).await.expect("connect");
    kept.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    let mut first = [0u8; 15];
    kept.read_exact(&mut first).await.expect("answer");
    assert_eq!(&first, b"HTTP/1.1 200 OK");
    for s in [&mut silent, &mut kept] {
        let (_, after) = closed_within(s, Duration::from_secs(3))
            .await
            .expect("closed while idle");
        assert!(
            after < Duration::from_millis(2_500),
            "closed after {after:?}"
        );
    }
}

#[tokio::test]
async fn a_body_that_never_finishes_is_timed_out() {
    let api = start(options(Duration::from_secs(5))).await;
    let mut s = TcpStream::connect(api.http).await.expect("connect");
    s.write_all(
        b"POST /v1/files HTTP/1.1\r\nhost: x\r\nauthorization: Bearer nope\r\n\
content-length: 100000\r\n\r\npartial",
    )
    .await
    .expect("write");
    let (answer, after) = closed_within(&mut s, Duration::from_secs(4))
        .await
        .expect("the server gave up on the body");
    // Either refused at once (no valid token) or timed out reading: never
    // held for longer than the body timeout.
    assert!(
        answer.starts_with("HTTP/1.1 401")
            || answer.starts_with("HTTP/1.1 408")
            || answer.is_empty(),
        "{answer}"
    );
    assert!(after < Duration::from_secs(3), "held {after:?}");
}

/// More idle HTTP connections than the HTTP share: the rest are answered
/// 503 and closed, and chat logins are unaffected (before: 20,000 idle
/// HTTP connections used up the descriptors and chat logins failed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_connections_past_their_share_are_refused_and_chat_keeps_working() {
    const SHARE: usize = 200;
    let api = start(HttpOptions {
        max_connections: Some(SHARE),
        ..options(Duration::from_secs(30))
    })
    .await;
    let mut conns = Vec::new();
    for _ in 0..1_000 {
        conns.push(TcpStream::connect(api.http).await.expect("connect"));
    }
    // A refused connection is answered at once; an accepted one waits for
    // a request.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut held = Vec::new();
    let mut refused = 0;
    for s in conns {
        let mut head = [0u8; 12];
        match s.try_read(&mut head) {
            Ok(12) => {
                assert_eq!(&head, b"HTTP/1.1 503");
                refused += 1;
            }
            Ok(n) => panic!("{n} bytes: {:?}", &head[..n]),
            Err(_) => held.push(s),
        }
    }
    assert_eq!(held.len(), SHARE, "{refused} refused");
    assert_eq!(refused, 1_000 - SHARE);
    // Chat logins and messages still work.
    let addr = api.tcp.to_string();
    let (alice, _a) = common::login(&addr, "alice", "phone").await;
    let (_bob, mut bob_ev) = common::login(&addr, "bob", "phone").await;
    alice
        .send_text(Peer::user("bob"), "still here")
        .await
        .expect("SENT");
    assert_eq!(common::messages(&mut bob_ev, 1).await.len(), 1);
    // When held connections go, new ones are served again.
    held.truncate(SHARE - 1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut s = TcpStream::connect(api.http).await.expect("connect");
    s.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .expect("write");
    let (answer, _) = closed_within(&mut s, Duration::from_secs(5))
        .await
        .expect("answered");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// 24 uploads that declare 16 MiB, send 4 MiB and stall: the bytes go to
/// disk as they arrive, so the server holds about a chunk per upload
/// (before: each body was buffered whole in memory, 24 stalled 16 MiB
/// uploads took the server from 92 to 396 MiB). A whole 16 MiB upload
/// meanwhile arrives intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_uploads_cost_a_chunk_each_not_their_size() {
    const STALLED: usize = 24;
    const SENT: usize = 4 << 20;
    let files = tempfile::tempdir().expect("tempdir");
    let blobs =
        std::sync::Arc::new(imkit::engine::blob::DirBlobStore::open(files.path()).expect("blobs"));
    let api = start_with(
        HttpOptions {
            admin_key: Some(ADMIN_KEY.into()),
            body_timeout: Duration::from_secs(30),
            ..HttpOptions::default()
        },
        |b| b.blob_store(blobs),
    )
    .await;
    let before = common::rss_kib();
    let chunk = vec![b'x'; 64 * 1024];
    let mut stalled = Vec::new();
    for _ in 0..STALLED {
        let mut s = TcpStream::connect(api.http).await.expect("connect");
        let head = format!(
            "POST /v1/files?name=big.bin HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {ADMIN_KEY}\r\n\
             content-type: application/octet-stream\r\ncontent-length: {}\r\n\r\n",
            16 << 20
        );
        s.write_all(head.as_bytes()).await.expect("head");
        for _ in 0..SENT / chunk.len() {
            s.write_all(&chunk).await.expect("body");
        }
        stalled.push(s);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let grown_kib = common::rss_kib().saturating_sub(before);

    // A whole upload of the largest size arrives intact meanwhile.
    let data: Vec<u8> = (0..16u32 << 20).map(|i| (i % 251) as u8).collect();
    let resp = reqwest::Client::new()
        .post(format!("http://{}/v1/files?name=whole.bin", api.http))
        .bearer_auth(ADMIN_KEY)
        .body(data.clone())
        .send()
        .await
        .expect("upload");
    assert_eq!(resp.status(), reqwest::StatusCode::CREATED);
    let info: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(info["size"].as_u64(), Some(16 << 20));
    let id = info["file_id"].as_str().expect("id");
    let stored = std::fs::read(files.path().join(id)).expect("on disk");
    assert!(stored == data, "stored bytes equal the upload");
    eprintln!(
        "{STALLED} stalled uploads of {} MiB each: server grew {grown_kib} KiB",
        SENT >> 20
    );
    assert!(
        grown_kib < (STALLED * SENT / 1024 / 4) as u64,
        "grew {grown_kib} KiB holding {STALLED} stalled uploads of {} KiB",
        SENT / 1024
    );
    drop(stalled);
}

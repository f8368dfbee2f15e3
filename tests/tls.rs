//! TLS on every listener, with certificates made at test time: a client
//! that trusts the CA talks over `tls://`, `wss://` and `https://`; one
//! that does not is refused; plain connections to TLS ports fail cleanly;
//! a new certificate is picked up on request and when its files change.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::pki::TestPki;
use common::{TestServer, WAIT, messages, text_of, token};
use imkit::client::{Client, ClientError, ClientOptions, Peer, TrustedRoots};
use imkit::server::TlsOptions;
use imkit::server::http::HttpOptions;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn trusting(pki: &TestPki) -> ClientOptions {
    ClientOptions {
        tls_roots: TrustedRoots::CaPem(pki.ca_pem.clone().into_bytes()),
        reconnect: false,
        ..ClientOptions::default()
    }
}

async fn tls_server(dir: &std::path::Path, pki: &TestPki, watch: Option<Duration>) -> TestServer {
    let (cert, key) = pki.write(dir);
    let tls = TlsOptions::from_pem_files(cert, key).watch_interval(watch);
    TestServer::custom(|b| b.tls(tls).http("127.0.0.1:0", HttpOptions::default())).await
}

/// A raw HTTPS request (rustls, trusting `ca_pem`); the response's status line.
async fn https_status(
    addr: std::net::SocketAddr,
    ca_pem: &str,
    path: &str,
) -> Result<String, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(cert.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let request = format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n");
    tls.write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    let _ = tls.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response);
    Ok(text.lines().next().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn trusted_clients_chat_over_tls_and_wss_and_https_answers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new("main");
    let server = tls_server(dir.path(), &pki, None).await;
    let tls_addr = format!("tls://localhost:{}", server.tcp.port());
    let wss_addr = format!("wss://localhost:{}/", server.ws.port());

    let (alice, _) = Client::connect(&tls_addr, trusting(&pki))
        .await
        .expect("tls connect");
    alice
        .login(&token("alice"), "phone")
        .await
        .expect("login over tls");
    let (bob, mut bob_events) = Client::connect(&wss_addr, trusting(&pki))
        .await
        .expect("wss connect");
    bob.login(&token("bob"), "web")
        .await
        .expect("login over wss");
    for i in 0..20 {
        alice
            .send_text(Peer::user("bob"), format!("secret {i}"))
            .await
            .expect("send over tls");
    }
    let got = messages(&mut bob_events, 20).await;
    let texts: Vec<&str> = got.iter().map(text_of).collect();
    assert_eq!(texts.first(), Some(&"secret 0"));
    assert_eq!(texts.last(), Some(&"secret 19"));
    // A reply the other way, over wss, at the largest text body (16 KiB),
    // several TLS records long.
    let big = "x".repeat(16 * 1024);
    let (_laptop, mut alice_events) = {
        let (c, e) = Client::connect(&tls_addr, trusting(&pki))
            .await
            .expect("connect");
        c.login(&token("alice"), "laptop").await.expect("login");
        (c, e)
    };
    bob.send_text(Peer::user("alice"), big.clone())
        .await
        .expect("send over wss");
    let got = messages(&mut alice_events, 1).await;
    assert_eq!(
        text_of(&got[0]),
        big,
        "the 16 KiB body arrives whole over TLS"
    );

    let http = server.handle.http_addr().expect("http addr");
    let status = https_status(http, &pki.ca_pem, "/healthz")
        .await
        .expect("https");
    assert!(status.starts_with("HTTP/1.1 200"), "got {status:?}");
    server.stop().await;
}

#[tokio::test]
async fn untrusted_and_plain_clients_are_refused_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new("main");
    let server = tls_server(dir.path(), &pki, None).await;
    let tls_addr = format!("tls://localhost:{}", server.tcp.port());

    // Trusting another CA: the handshake fails with a TLS error.
    let stranger = TestPki::new("stranger");
    match Client::connect(&tls_addr, trusting(&stranger)).await {
        Err(ClientError::Tls(message)) => assert!(!message.is_empty()),
        Err(other) => panic!("expected a TLS error, got {other}"),
        Ok(_) => panic!("a client that does not trust the CA connected"),
    }
    let wss = format!("wss://localhost:{}/", server.ws.port());
    assert!(matches!(
        Client::connect(&wss, trusting(&stranger)).await,
        Err(ClientError::Tls(_))
    ));
    // Platform roots do not include a test CA.
    assert!(
        Client::connect(&tls_addr, ClientOptions::default())
            .await
            .is_err()
    );

    // Plain imkit framing to the TLS port: the login fails, it does not hang.
    let plain = format!("127.0.0.1:{}", server.tcp.port());
    let started = tokio::time::Instant::now();
    let outcome = tokio::time::timeout(WAIT, async {
        let (c, _) = Client::connect(
            &plain,
            ClientOptions {
                reconnect: false,
                ..ClientOptions::default()
            },
        )
        .await?;
        c.login(&token("mallory"), "d").await
    })
    .await
    .expect("a plain client gets an answer, not a hang");
    assert!(outcome.is_err(), "a plain login on a TLS port must fail");
    assert!(started.elapsed() < WAIT);
    // Plain WebSocket and plain HTTP: refused too.
    let ws = format!("ws://127.0.0.1:{}/", server.ws.port());
    assert!(
        Client::connect(&ws, ClientOptions::default())
            .await
            .is_err()
    );
    let http = server.handle.http_addr().expect("http addr");
    let mut raw = tokio::net::TcpStream::connect(http).await.expect("tcp");
    raw.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(WAIT, raw.read_to_end(&mut answer)).await;
    assert!(
        !answer.starts_with(b"HTTP/1.1 200"),
        "plain HTTP got a 200 from an https port"
    );

    // None of that disturbed the server.
    let (c, _) = Client::connect(&tls_addr, trusting(&pki))
        .await
        .expect("connect");
    c.login(&token("alice"), "phone")
        .await
        .expect("a trusted client still logs in");
    server.stop().await;
}

/// Whether a client trusting `pki` can log in now.
async fn can_log_in(addr: &str, pki: &TestPki) -> bool {
    match Client::connect(addr, trusting(pki)).await {
        Ok((c, _)) => c.login(&token("carol"), "d").await.is_ok(),
        Err(_) => false,
    }
}

#[tokio::test]
async fn certificates_reload_on_request_and_when_the_files_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = TestPki::new("first");
    let server = tls_server(dir.path(), &first, Some(Duration::from_millis(100))).await;
    let addr = format!("tls://localhost:{}", server.tcp.port());
    let (open, _) = Client::connect(&addr, trusting(&first))
        .await
        .expect("connect");
    open.login(&token("dave"), "d").await.expect("login");
    assert!(can_log_in(&addr, &first).await);

    // A broken file is refused and the old certificate stays.
    std::fs::write(dir.path().join("server.key"), "not a key").expect("write");
    assert!(server.handle.reload_tls().is_err());
    assert!(
        can_log_in(&addr, &first).await,
        "the old certificate still serves"
    );

    // Renewed files, picked up by the watch without being asked.
    let second = TestPki::new("second");
    second.write(dir.path());
    let deadline = tokio::time::Instant::now() + WAIT;
    while !can_log_in(&addr, &second).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !can_log_in(&addr, &first).await,
        "the old certificate is gone"
    );

    // And on request (what SIGHUP does in the binary).
    let third = TestPki::new("third");
    third.write(dir.path());
    assert!(server.handle.reload_tls().expect("reload"));
    assert!(can_log_in(&addr, &third).await);
    // The connection made before any of this still works.
    open.send_text(Peer::user("erin"), "still here")
        .await
        .expect("an open connection keeps its session");
    server.stop().await;
}

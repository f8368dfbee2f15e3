//! The `imkit-server` binary serves the HTTP API behind `--http`, with
//! files in the `--files` directory and SQLite accounts that survive a
//! restart.
#![cfg(feature = "http")]

use std::time::Duration;

use serde_json::{Value, json};
use tokio::process::{Child, Command};

const ADMIN_KEY: &str = "binary-admin-key";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

async fn start(dir: &std::path::Path, tcp: u16, http: u16) -> Child {
    let child = Command::new(env!("CARGO_BIN_EXE_imkit-server"))
        .args(["--tcp", &format!("127.0.0.1:{tcp}"), "--ws", "off"])
        .args(["--http", &format!("127.0.0.1:{http}"), "--secret", "s3cret"])
        .arg("--db")
        .arg(dir.join("imkit.db"))
        .arg("--files")
        .arg(dir.join("files"))
        .env("IMKIT_ADMIN_KEY", ADMIN_KEY)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .expect("spawn imkit-server");
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if let Ok(r) = client
            .get(format!("http://127.0.0.1:{http}/ready"))
            .send()
            .await
            && r.status().is_success()
        {
            return child;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the http api did not come up");
}

#[tokio::test]
async fn binary_serves_the_http_api_behind_a_flag() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (tcp, http) = (free_port(), free_port());
    let base = format!("http://127.0.0.1:{http}");
    let client = reqwest::Client::new();
    let mut server = start(dir.path(), tcp, http).await;
    let created = client
        .post(format!("{base}/v1/admin/users"))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"user_id": "dora", "name": "Dora"}))
        .send()
        .await
        .expect("create");
    assert_eq!(created.status(), 201);
    let upload = client
        .post(format!("{base}/v1/files?name=a.txt"))
        .bearer_auth(ADMIN_KEY)
        .body("hello")
        .send()
        .await
        .expect("upload");
    assert_eq!(upload.status(), 201);
    let file: Value = upload.json().await.expect("json");
    let id = file["file_id"].as_str().expect("id").to_owned();
    assert!(
        dir.path().join("files").join(&id).exists(),
        "stored in --files"
    );

    // Restart: the account and the file are still there.
    server.kill().await.expect("kill");
    let _server = start(dir.path(), tcp, http).await;
    let token: Value = client
        .post(format!("{base}/v1/admin/users/dora/tokens"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("json");
    let token = token["token"].as_str().expect("token");
    let me: Value = client
        .get(format!("{base}/v1/me"))
        .bearer_auth(token)
        .send()
        .await
        .expect("me")
        .json()
        .await
        .expect("json");
    assert_eq!(me, json!({"user_id": "dora", "name": "Dora"}));
    let bytes = client
        .get(format!("{base}/v1/files/{id}"))
        .bearer_auth(token)
        .send()
        .await
        .expect("download")
        .bytes()
        .await
        .expect("bytes");
    assert_eq!(&bytes[..], b"hello");
}

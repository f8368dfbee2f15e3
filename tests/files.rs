//! Files on the object store (feature `object-store`): two servers share
//! one folder, as cluster nodes would. A file uploaded to one streams
//! through a multipart upload and downloads whole, and by range, from the
//! other. Uploads of a type the server does not accept get 415.

mod common;

use std::sync::Arc;

use imkit::engine::blob::{ObjectBlobStore, PART_BYTES};
use imkit::server::Server;
use imkit::server::http::HttpOptions;
use reqwest::StatusCode;

const ADMIN_KEY: &str = "files-admin-key";

async fn node(shared: &std::path::Path) -> String {
    let options = HttpOptions {
        admin_key: Some(ADMIN_KEY.into()),
        max_file_bytes: 16 << 20,
        allowed_file_types: vec!["image/*".into(), "application/pdf".into()],
        ..HttpOptions::default()
    };
    let server = Server::builder()
        .token_secret(common::SECRET)
        .tcp("127.0.0.1:0")
        .blob_store(Arc::new(ObjectBlobStore::local(shared).expect("blobs")))
        .http("127.0.0.1:0", options)
        .bind()
        .await
        .expect("bind");
    let base = format!("http://{}", server.http_addr().expect("http addr"));
    tokio::spawn(async move { server.run().await.expect("run") });
    base
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_node_serves_what_the_first_stored() {
    let shared = tempfile::tempdir().expect("tempdir");
    let (a, b) = (node(shared.path()).await, node(shared.path()).await);
    let http = reqwest::Client::new();
    let data: Vec<u8> = (0..(PART_BYTES + 1_000_000) as u32)
        .map(|i| (i % 253) as u8)
        .collect();
    let up = http
        .post(format!("{a}/v1/files?name=photo.png"))
        .bearer_auth(ADMIN_KEY)
        .header("content-type", "image/png")
        .body(data.clone())
        .send()
        .await
        .expect("upload");
    assert_eq!(up.status(), StatusCode::CREATED);
    let info: serde_json::Value = up.json().await.expect("json");
    let id = info["file_id"].as_str().expect("id").to_owned();

    let whole = http
        .get(format!("{b}/v1/files/{id}"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .expect("download");
    assert_eq!(whole.status(), StatusCode::OK);
    assert_eq!(whole.headers()["content-type"], "image/png");
    assert!(
        whole.bytes().await.expect("bytes") == data,
        "the other node serves it whole"
    );
    let start = PART_BYTES - 10;
    let part = http
        .get(format!("{b}/v1/files/{id}"))
        .bearer_auth(ADMIN_KEY)
        .header("range", format!("bytes={start}-{}", start + 19))
        .send()
        .await
        .expect("range");
    assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        part.bytes().await.expect("bytes").to_vec(),
        data[start..start + 20].to_vec(),
        "a range across the parts' seam"
    );

    let refused = http
        .post(format!("{a}/v1/files?name=page.html"))
        .bearer_auth(ADMIN_KEY)
        .header("content-type", "text/html")
        .body("<script>")
        .send()
        .await
        .expect("upload");
    assert_eq!(refused.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let err: serde_json::Value = refused.json().await.expect("json");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("image/*"),
        "{err}"
    );
}

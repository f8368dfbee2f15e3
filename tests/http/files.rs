//! Files over HTTP: upload, download, and file messages that point at them.

use super::*;

#[tokio::test]
async fn files_upload_download_and_file_messages() {
    let api = Api::start(Some(ADMIN_KEY)).await;
    let alice = api.user("alice").await;
    let (_c, mut events) = api.connect(&alice, "phone").await;
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let resp = api
        .http
        .post(api.url("/v1/files?name=report.pdf"))
        .bearer_auth(&alice)
        .header("content-type", "application/pdf")
        .body(data.clone())
        .send()
        .await
        .expect("upload");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let info: Value = resp.json().await.expect("json");
    assert_eq!(info["size"].as_u64(), Some(100_000));
    let expected_sha = {
        use sha2::Digest;
        sha2::Sha256::digest(&data)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    assert_eq!(info["sha256"].as_str(), Some(expected_sha.as_str()));
    let id = info["file_id"].as_str().expect("id").to_owned();

    let got = api
        .http
        .get(api.url(&format!("/v1/files/{id}")))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .expect("download");
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(got.headers()["content-type"], "application/pdf");
    assert_eq!(
        got.headers()["content-disposition"],
        "inline; filename=\"report.pdf\""
    );
    assert_eq!(got.headers()["x-content-type-options"], "nosniff");
    assert_eq!(got.headers()["accept-ranges"], "bytes");
    let etag = got.headers()["etag"].to_str().expect("etag").to_owned();
    assert_eq!(got.bytes().await.expect("bytes").to_vec(), data);

    // Byte ranges: a player seeking, a download resumed.
    let ranged = |range: &'static str, if_range: Option<&str>| {
        let mut req = api
            .http
            .get(api.url(&format!("/v1/files/{id}")))
            .bearer_auth(&alice)
            .header("range", range);
        if let Some(v) = if_range {
            req = req.header("if-range", v.to_owned());
        }
        req.send()
    };
    let part = ranged("bytes=1000-1999", None).await.expect("range");
    assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.headers()["content-range"], "bytes 1000-1999/100000");
    assert_eq!(
        part.bytes().await.expect("bytes").to_vec(),
        data[1000..2000]
    );
    let tail = ranged("bytes=-10", Some(&etag)).await.expect("range");
    assert_eq!(tail.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(tail.bytes().await.expect("bytes").to_vec(), data[99_990..]);
    let outside = ranged("bytes=100000-", None).await.expect("range");
    assert_eq!(outside.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(outside.headers()["content-range"], "bytes */100000");
    let changed = ranged("bytes=0-9", Some("\"stale\"")).await.expect("range");
    assert_eq!(
        changed.status(),
        StatusCode::OK,
        "a stale If-Range gets the whole file"
    );
    assert_eq!(changed.bytes().await.expect("bytes").len(), 100_000);

    // A page or an SVG comes back as an attachment, sandboxed and
    // unsniffed, whatever type its uploader chose.
    for (name, mime) in [("x.html", "text/html"), ("x.svg", "image/svg+xml")] {
        let resp = api
            .http
            .post(api.url(&format!("/v1/files?name={name}")))
            .bearer_auth(&alice)
            .header("content-type", mime)
            .body("<script>alert(document.cookie)</script>")
            .send()
            .await
            .expect("upload");
        let info: Value = resp.json().await.expect("json");
        let fid = info["file_id"].as_str().expect("id");
        let got = api
            .http
            .get(api.url(&format!("/v1/files/{fid}")))
            .bearer_auth(&alice)
            .send()
            .await
            .expect("download");
        let h = got.headers();
        assert_eq!(h["content-type"], mime);
        let disposition = h["content-disposition"].to_str().expect("ascii");
        assert!(
            disposition.starts_with("attachment"),
            "{name}: {disposition}"
        );
        assert_eq!(h["x-content-type-options"], "nosniff");
        let csp = h["content-security-policy"].to_str().expect("ascii");
        assert!(
            csp.contains("sandbox") && csp.contains("default-src 'none'"),
            "{csp}"
        );
    }
    let (s, _) = api
        .call("GET", &format!("/v1/files/{id}"), None, None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = api
        .call(
            "GET",
            "/v1/files/f0123456789abcdef0123456789abcdef",
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = api
        .call("GET", "/v1/files/..%2Fetc%2Fpasswd", Some(&alice), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Too large, and empty.
    let big = api
        .http
        .post(api.url("/v1/files"))
        .bearer_auth(&alice)
        .body(vec![0u8; 1024 * 1024 + 1])
        .send()
        .await
        .expect("upload");
    assert_eq!(big.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let v: Value = big.json().await.expect("json error");
    assert_eq!(code(&v), 1005);
    let empty = api
        .http
        .post(api.url("/v1/files"))
        .bearer_auth(&alice)
        .send()
        .await
        .expect("upload");
    assert_eq!(empty.status(), StatusCode::BAD_REQUEST);

    // A file message carries the id; metadata comes from the upload.
    let (s, _) = api
        .admin(
            "POST",
            "/v1/admin/messages",
            Some(json!({"to_user": "alice", "content": {"type": "file", "blob_id": id}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let m = next_message(&mut events).await;
    let Some(pb::content::Body::File(f)) = m.content.and_then(|c| c.body) else {
        panic!("a file message")
    };
    assert_eq!(
        (f.name.as_str(), f.size, f.mime.as_str()),
        ("report.pdf", 100_000, "application/pdf")
    );
    assert_eq!(f.location, Some(pb::file::Location::BlobId(id)));
    assert_eq!(f.sha256.len(), 32);
    let (s, _) = api
        .admin(
            "POST",
            "/v1/admin/messages",
            Some(json!({"to_user": "alice", "content": {"type": "file", "blob_id": "fnope"}})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

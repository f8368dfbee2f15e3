//! The HTTP API at the edges its document (GET /openapi.json) states:
//! requests the document admits are taken, those it refuses are refused
//! with the status it lists. scripts/contract.sh checks the same with
//! generated requests; these are the cases it first found.

mod common;

use common::api::{ADMIN_KEY, Api};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn code(v: &Value) -> u64 {
    v["error"]["code"].as_u64().unwrap_or_default()
}

#[tokio::test]
async fn requests_the_document_admits_are_taken_and_others_refused() {
    let api = Api::start(Some(ADMIN_KEY)).await;
    let alice = api.user("alice").await;
    api.user("bob").await;

    // Optional bodies may be empty or null; whole numbers may be written 3600.0.
    for body in [None, Some(Value::Null), Some(json!({"ttl_secs": 3600.0}))] {
        let (s, t) = api
            .admin("POST", "/v1/admin/users/alice/tokens", body.clone())
            .await;
        assert_eq!(s, StatusCode::CREATED, "{body:?}: {t}");
    }
    for ttl in [json!(0), json!(2_592_001), json!(1.5), json!(-1)] {
        let (s, _) = api
            .admin(
                "POST",
                "/v1/admin/users/alice/tokens",
                Some(json!({ "ttl_secs": ttl })),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "ttl {ttl}");
    }
    // A body is an object, never the same fields as an array.
    for body in [json!([]), json!([3600]), json!("ttl")] {
        let (s, _) = api
            .admin("POST", "/v1/admin/users/alice/tokens", Some(body.clone()))
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    }
    let (s, _) = api
        .admin("POST", "/v1/admin/users", Some(json!(["erin", "Erin"])))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // Numbers past the document's int64 are refused, not taken.
    let (s, _) = api
        .admin(
            "POST",
            "/v1/admin/tokens/revoke",
            Some(json!({"jti": "j1", "user_id": "alice", "expires_at": 9_223_372_036_854_775_808_u64})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // Display names count characters.
    let (s, a) = api
        .admin(
            "POST",
            "/v1/admin/users",
            Some(json!({"user_id": "carol", "name": "é".repeat(128)})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{a}");
    let (s, _) = api
        .admin(
            "POST",
            "/v1/admin/users",
            Some(json!({"user_id": "dave", "name": "é".repeat(129)})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // A file names exactly one of blob_id or url; mentions are user ids.
    let send = |content: Value| json!({"from": "alice", "to_user": "bob", "content": content});
    for content in [
        json!({"type": "file", "url": "https://example.com/a.png", "blob_id": "f0190f1c2a3b47c8d9e0f1a2b3c4d5e6f", "name": "a.png"}),
        json!({"type": "file", "url": "", "name": "a.png"}),
        json!({"type": "file", "url": "https://example.com/a.png", "name": ""}),
        json!({"type": "text", "text": "hi", "mentions": ["not an id"]}),
        json!({"type": "text", "text": "hi", "extra": 1}),
    ] {
        let (s, e) = api
            .admin("POST", "/v1/admin/messages", Some(send(content.clone())))
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{content}: {e}");
        assert_eq!(code(&e), 3001, "{e}");
    }
    let (s, m) = api
        .admin(
            "POST",
            "/v1/admin/messages",
            Some(send(json!({"type": "file", "url": "https://example.com/a.png", "name": "a.png", "size": 10.0}))),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{m}");
    // To themselves: refused as not allowed (403), not as malformed.
    let (s, _) = api
        .admin(
            "POST",
            "/v1/admin/messages",
            Some(json!({"from": "alice", "to_user": "alice", "content": {"type": "text", "text": "me"}})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = api
        .admin(
            "POST",
            "/v1/admin/messages",
            Some(json!({"from": "alice", "to_user": "bob", "client_msg_id": "has space", "content": {"type": "text", "text": "x"}})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // Contact routes naming the caller: 403.
    let (s, _) = api
        .call(
            "POST",
            "/v1/contacts/blocks",
            Some(&alice),
            Some(json!({"user_id": "alice"})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = api
        .call("DELETE", "/v1/contacts/friends/alice", Some(&alice), None)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // Cursors have the shape `next` gives; a 1:1 id out of order names nothing.
    for path in [
        "/v1/groups?after=x1",
        "/v1/conversations?after=abc",
        "/v1/conversations?limit=2147483648",
    ] {
        let (s, _) = api.call("GET", path, Some(&alice), None).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{path}");
    }
    for path in [
        "/v1/groups?after=12",
        "/v1/conversations?after=17:d:alice:bob&limit=5",
    ] {
        let (s, v) = api.call("GET", path, Some(&alice), None).await;
        assert_eq!(s, StatusCode::OK, "{path}: {v}");
    }
    let (s, _) = api
        .call(
            "GET",
            "/v1/conversations/d:bob:alice/messages",
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, h) = api
        .call(
            "GET",
            "/v1/conversations/d:alice:bob/messages?from_seq=0&limit=10",
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{h}");
    assert_eq!(h["messages"].as_array().map(Vec::len), Some(1), "{h}");

    // A push registration names its provider and platform in plain words.
    for (provider, token) in [("fcm cloud", "t0k3n"), ("fcm", "has space")] {
        let (s, _) = api
            .call(
                "PUT",
                "/v1/me/devices/phone/push-token",
                Some(&alice),
                Some(json!({"provider": provider, "platform": "android", "token": token})),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{provider:?} {token:?}");
    }
}

#[tokio::test]
async fn the_document_is_the_generated_one_and_shares_its_shapes() {
    let api = Api::start(Some(ADMIN_KEY)).await;
    let (s, doc) = api.call("GET", "/openapi.json", None, None).await;
    assert_eq!(s, StatusCode::OK);
    let schemas = &doc["components"]["schemas"];
    // Ids carry their rule, request bodies refuse unknown fields, and a
    // JSON-body route lists 415.
    assert_eq!(schemas["UserId"]["pattern"], "^[A-Za-z0-9_.@-]{1,64}$");
    assert_eq!(schemas["UserId"]["maxLength"], 64);
    assert_eq!(schemas["CreateUser"]["additionalProperties"], false);
    let create = &doc["paths"]["/v1/admin/users"]["post"];
    for status in ["201", "400", "401", "403", "409", "413", "415"] {
        assert!(create["responses"].get(status).is_some(), "{status}");
    }
    assert!(
        doc["paths"]["/v1/files"]["post"]["responses"]
            .get("415")
            .is_some()
    );
    // Created users and groups link to the routes that take them.
    assert_eq!(
        create["responses"]["201"]["links"]["GetUser"]["operationId"],
        "get_user"
    );
}

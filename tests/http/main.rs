//! The HTTP API over real HTTP on 127.0.0.1, with real clients on the live
//! protocol where an HTTP action must reach them.
//!
//! This file holds the shared helpers and the checks of the API as a whole
//! (its OpenAPI document, health, the admin key, bad input); the rest are in
//! `accounts.rs`, `messages.rs` and `files.rs`.

#[path = "../common/mod.rs"]
mod common;

mod accounts;
mod files;
mod messages;

use std::collections::BTreeSet;

use common::api::{ADMIN_KEY, Api};
use common::wait_for;
use imkit::client::{Client, ClientOptions, Event, Events};
use imkit::proto::pb;
use imkit::server::http::{openapi_json, routes};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn code(v: &Value) -> u64 {
    v["error"]["code"]
        .as_u64()
        .unwrap_or_else(|| panic!("no error code in {v}"))
}

fn text_of(m: &pb::Message) -> String {
    match m.content.as_ref().and_then(|c| c.body.as_ref()) {
        Some(pb::content::Body::Text(t)) => t.text.clone(),
        other => panic!("not text: {other:?}"),
    }
}

async fn next_message(events: &mut Events) -> pb::Message {
    wait_for(events, |e| match e {
        Event::Message(m) => Some(m),
        _ => None,
    })
    .await
}

async fn kicked(events: &mut Events) -> pb::KickReason {
    wait_for(events, |e| match e {
        Event::Kicked { reason, .. } => Some(reason),
        _ => None,
    })
    .await
}

#[test]
fn openapi_document_lists_exactly_the_routes() {
    let doc: Value =
        serde_json::from_str(include_str!("../../docs/openapi.json")).expect("openapi.json parses");
    let mut documented = BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        for (method, op) in ops.as_object().expect("operations") {
            assert!(
                op["responses"].is_object(),
                "{method} {path} documents its responses"
            );
            documented.insert((method.to_uppercase(), path.clone()));
        }
    }
    let served: BTreeSet<(String, String)> = routes().into_iter().collect();
    let missing: Vec<_> = served.difference(&documented).collect();
    let stale: Vec<_> = documented.difference(&served).collect();
    assert!(
        missing.is_empty(),
        "served but not in docs/openapi.json: {missing:?}"
    );
    assert!(
        stale.is_empty(),
        "in docs/openapi.json but not served: {stale:?}"
    );
    assert!(served.len() >= 29);
}

#[tokio::test]
async fn health_and_readiness() {
    let api = Api::start(Some(ADMIN_KEY)).await;
    assert_eq!(
        api.call("GET", "/health", None, None).await,
        (StatusCode::OK, json!({"status": "ok"}))
    );
    assert_eq!(
        api.call("GET", "/ready", None, None).await,
        (StatusCode::OK, json!({"status": "ready"}))
    );
    // The server serves its own API document: the one in docs/ (made with
    // default options) but for the limits it states, which are this
    // server's (its uploads are capped at 1 MiB).
    let (s, doc) = api.call("GET", "/openapi.json", None, None).await;
    assert_eq!(s, StatusCode::OK);
    let expected: Value = serde_json::from_str(&openapi_json(&api.options)).expect("JSON");
    assert_eq!(doc, expected);
    let mut docs: Value =
        serde_json::from_str(include_str!("../../docs/openapi.json")).expect("openapi.json parses");
    let too_large = "/paths/~1v1~1files/post/responses/413/description";
    assert_eq!(
        docs.pointer(too_large),
        Some(&json!("Larger than 16777216 bytes"))
    );
    if let Some(d) = docs.pointer_mut(too_large) {
        *d = json!("Larger than 1048576 bytes");
    }
    assert_eq!(doc, docs);
}

#[tokio::test]
async fn admin_routes_need_the_admin_key() {
    let api = Api::start(Some(ADMIN_KEY)).await;
    let body = Some(json!({ "user_id": "x" }));
    let (s, v) = api
        .call("POST", "/v1/admin/users", None, body.clone())
        .await;
    assert_eq!((s, code(&v)), (StatusCode::UNAUTHORIZED, 2002));
    let (s, _) = api
        .call("POST", "/v1/admin/users", Some("wrong"), body.clone())
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // A user's token is not an admin key.
    let token = api.user("ann").await;
    let (s, _) = api
        .call("GET", "/v1/admin/users/ann", Some(&token), None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // A server with no admin key refuses every admin route.
    let closed = Api::start(None).await;
    let (s, v) = closed
        .call("POST", "/v1/admin/users", Some(ADMIN_KEY), body)
        .await;
    assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, 3002));
}

#[tokio::test]
async fn bad_input_gets_a_json_4xx() {
    let api = Api::start(Some(ADMIN_KEY)).await;
    let token = api.user("alice").await;
    let raw = |body: &'static str, ctype: &'static str| {
        api.http
            .post(api.url("/v1/admin/users"))
            .bearer_auth(ADMIN_KEY)
            .header("content-type", ctype)
            .body(body)
            .send()
    };
    for (body, ctype, status) in [
        ("{not json", "application/json", StatusCode::BAD_REQUEST),
        (
            r#"{"user_id": 7}"#,
            "application/json",
            StatusCode::BAD_REQUEST,
        ),
        (
            r#"{"name": "no id"}"#,
            "application/json",
            StatusCode::BAD_REQUEST,
        ),
        (
            r#"{"user_id": "x", "extra": 1}"#,
            "application/json",
            StatusCode::BAD_REQUEST,
        ),
        (
            r#"{"user_id": "x"}"#,
            "text/plain",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
    ] {
        let resp = raw(body, ctype).await.expect("request");
        assert_eq!(resp.status(), status, "{body} as {ctype}");
        let v: Value = resp.json().await.expect("a JSON error");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{v}"
        );
    }
    let huge = json!({ "user_id": "x", "name": "n".repeat(70_000) });
    let (s, v) = api.admin("POST", "/v1/admin/users", Some(huge)).await;
    assert_eq!((s, code(&v)), (StatusCode::PAYLOAD_TOO_LARGE, 1005));
    let (s, v) = api
        .call("GET", "/v1/nothing-here", Some(&token), None)
        .await;
    assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, 3003));
    let (s, _) = api.call("PUT", "/v1/contacts", Some(&token), None).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    let (s, _) = api
        .call("GET", "/v1/conversations?limit=lots", Some(&token), None)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = api
        .admin(
            "POST",
            "/v1/admin/messages",
            Some(json!({"to_user": "alice", "content": {"type": "video"}})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = api
        .admin("POST", "/v1/admin/messages", Some(json!({"to_user": "alice", "content": {"type": "custom", "kind": "k", "data": "%%%"}})))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = api
        .admin(
            "POST",
            "/v1/admin/groups/nope/members",
            Some(json!({"user_ids": ["a"]})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Nothing above took the server down.
    assert_eq!(
        api.call("GET", "/health", None, None).await.0,
        StatusCode::OK
    );
    assert!(api.handle.connections() == 0);
}

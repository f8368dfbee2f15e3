//! The HTTP API over real HTTP on 127.0.0.1, with real clients on the live
//! protocol where an HTTP action must reach them.

mod common;

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
        serde_json::from_str(include_str!("../docs/openapi.json")).expect("openapi.json parses");
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
        serde_json::from_str(include_str!("../docs/openapi.json")).expect("openapi.json parses");
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
async fn accounts_tokens_revocation_and_disabling() {
    let api = Api::start(Some(ADMIN_KEY)).await;
    let (s, v) = api
        .admin(
            "POST",
            "/v1/admin/users",
            Some(json!({"user_id": "alice", "name": "Alice"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(
        (v["user_id"].as_str(), v["disabled"].as_bool()),
        (Some("alice"), Some(false))
    );
    let (s, v) = api
        .admin("POST", "/v1/admin/users", Some(json!({"user_id": "alice"})))
        .await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, 3007));
    let (s, v) = api
        .admin(
            "POST",
            "/v1/admin/users",
            Some(json!({"user_id": "no spaces"})),
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, 3001));
    let (s, _) = api
        .admin(
            "POST",
            "/v1/admin/users",
            Some(json!({"user_id": "_system"})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "the system user is reserved");
    let (s, v) = api.admin("GET", "/v1/admin/users/alice", None).await;
    assert_eq!((s, v["name"].as_str()), (StatusCode::OK, Some("Alice")));
    let (s, v) = api.admin("GET", "/v1/admin/users/nobody", None).await;
    assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, 3003));
    let (s, _) = api
        .admin("POST", "/v1/admin/users/nobody/tokens", None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "tokens only for accounts");
    let (s, _) = api
        .admin(
            "POST",
            "/v1/admin/users/alice/tokens",
            Some(json!({"ttl_secs": 0})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // A token logs in; revoking it closes that session and stops new logins.
    let (s, t) = api
        .admin(
            "POST",
            "/v1/admin/users/alice/tokens",
            Some(json!({"ttl_secs": 600})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let token = t["token"].as_str().expect("token").to_owned();
    let (s, v) = api.call("GET", "/v1/me", Some(&token), None).await;
    assert_eq!((s, v["user_id"].as_str()), (StatusCode::OK, Some("alice")));
    let (_c1, mut e1) = api.connect(&token, "phone").await;
    let (_, t2) = api
        .admin("POST", "/v1/admin/users/alice/tokens", None)
        .await;
    let other = t2["token"].as_str().expect("token").to_owned();
    let (_c2, mut e2) = api.connect(&other, "laptop").await;
    let (s, v) = api
        .admin(
            "POST",
            "/v1/admin/tokens/revoke",
            Some(json!({"token": token})),
        )
        .await;
    assert_eq!(
        (s, v["sessions_closed"].as_u64()),
        (StatusCode::OK, Some(1)),
        "{v}"
    );
    assert_eq!(v["token_id"], t["token_id"]);
    assert_eq!(kicked(&mut e1).await, pb::KickReason::TokenRevoked);
    let (s, v) = api.call("GET", "/v1/me", Some(&token), None).await;
    assert_eq!((s, code(&v)), (StatusCode::UNAUTHORIZED, 2008));
    let (c, _e) = Client::connect(
        &api.tcp.to_string(),
        ClientOptions {
            reconnect: false,
            ..ClientOptions::default()
        },
    )
    .await
    .expect("connect");
    let refused = c
        .login(&token, "phone")
        .await
        .expect_err("a revoked token cannot log in");
    assert!(refused.to_string().contains("revoked"), "{refused}");
    // The other token's session is untouched.
    let (s, _) = api
        .admin(
            "POST",
            "/v1/admin/tokens/revoke",
            Some(json!({"token": "v1.junk"})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "not a token of this server");
    let (s, p) = api
        .admin("GET", "/v1/admin/users/alice/presence", None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(p["devices"][0]["device_id"], "laptop", "{p}");

    // A backend revokes a token by its jti and user alone.
    let jti = t2["jti"].as_str().expect("jti").to_owned();
    let (s, v) = api
        .admin(
            "POST",
            "/v1/admin/tokens/revoke",
            Some(json!({"jti": jti, "token": other})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "one or the other: {v}");
    let (s, v) = api
        .admin(
            "POST",
            "/v1/admin/tokens/revoke",
            Some(json!({"jti": jti, "user_id": "alice"})),
        )
        .await;
    assert_eq!(
        (s, v["sessions_closed"].as_u64()),
        (StatusCode::OK, Some(1)),
        "{v}"
    );
    assert_eq!(v["token_id"], t2["token_id"]);
    assert_eq!(kicked(&mut e2).await, pb::KickReason::TokenRevoked);
    let (s, v) = api.call("GET", "/v1/me", Some(&other), None).await;
    assert_eq!((s, code(&v)), (StatusCode::UNAUTHORIZED, 2008));
    let (_, t3) = api
        .admin("POST", "/v1/admin/users/alice/tokens", None)
        .await;
    let third = t3["token"].as_str().expect("token").to_owned();
    let (_c2, mut e2) = api.connect(&third, "laptop").await;

    // Disabling closes every session and stops logins and token issuing.
    let (s, v) = api
        .admin("POST", "/v1/admin/users/alice/disable", None)
        .await;
    assert_eq!(
        (s, v["disabled"].as_bool(), v["sessions_closed"].as_u64()),
        (StatusCode::OK, Some(true), Some(1))
    );
    assert_eq!(kicked(&mut e2).await, pb::KickReason::Admin);
    let (s, v) = api.call("GET", "/v1/me", Some(&third), None).await;
    assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, 2007));
    let (s, _) = api
        .admin("POST", "/v1/admin/users/alice/tokens", None)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = api
        .admin("POST", "/v1/admin/users/alice/enable", None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = api.call("GET", "/v1/me", Some(&third), None).await;
    assert_eq!(s, StatusCode::OK, "enabled again");
}

#[tokio::test]
async fn messages_sent_over_http_reach_connected_clients() {
    let api = Api::start(Some(ADMIN_KEY)).await;
    let alice = api.user("alice").await;
    let _bob = api.user("bob").await;
    let (_c, mut events) = api.connect(&alice, "phone").await;

    // On behalf of bob, to alice.
    let send = json!({"from": "bob", "to_user": "alice", "client_msg_id": "order-42",
                      "content": {"type": "text", "text": "your order shipped"}});
    let (s, sent) = api
        .admin("POST", "/v1/admin/messages", Some(send.clone()))
        .await;
    assert_eq!(s, StatusCode::OK, "{sent}");
    assert_eq!(
        (sent["seq"].as_u64(), sent["duplicate"].as_bool()),
        (Some(1), Some(false))
    );
    let m = next_message(&mut events).await;
    assert_eq!(
        (m.sender_id.as_str(), m.seq, text_of(&m)),
        ("bob", 1, "your order shipped".into())
    );
    assert_eq!(m.sender_device, "http");
    // A retried request with the same client_msg_id is stored once.
    let (_, again) = api.admin("POST", "/v1/admin/messages", Some(send)).await;
    assert_eq!(
        (again["seq"].as_u64(), again["duplicate"].as_bool()),
        (Some(1), Some(true))
    );

    // As the system.
    let (s, _) = api
        .admin(
            "POST",
            "/v1/admin/messages",
            Some(json!({"to_user": "alice", "content": {"type": "text", "text": "welcome"}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let m = next_message(&mut events).await;
    assert_eq!(
        (m.sender_id.as_str(), text_of(&m)),
        ("_system", "welcome".into())
    );

    // To a group the system is not in.
    let (s, g) = api
        .admin(
            "POST",
            "/v1/admin/groups",
            Some(json!({"owner_id": "bob", "name": "team", "member_ids": ["alice"]})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{g}");
    let group = g["group_id"].as_str().expect("group id").to_owned();
    let (s, _) = api
        .admin(
            "POST",
            "/v1/admin/messages",
            Some(json!({"to_group": group, "content": {"type": "text", "text": "standup"}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let m = wait_for(&mut events, |e| match e {
        Event::Message(m)
            if m.conversation_id == format!("g:{group}") && m.sender_id == "_system" =>
        {
            Some(m)
        }
        _ => None,
    })
    .await;
    assert_eq!(text_of(&m), "standup");
    // Group membership through the admin API.
    let (s, v) = api
        .admin(
            "POST",
            &format!("/v1/admin/groups/{group}/members"),
            Some(json!({"user_ids": ["carol"]})),
        )
        .await;
    assert_eq!((s, v["added"].clone()), (StatusCode::OK, json!(["carol"])));
    let (s, v) = api
        .admin(
            "DELETE",
            &format!("/v1/admin/groups/{group}/members/carol"),
            None,
        )
        .await;
    assert_eq!(
        (s, v["removed"].clone()),
        (StatusCode::OK, json!(["carol"]))
    );
    // Bad sends.
    let (s, _) = api
        .admin("POST", "/v1/admin/messages", Some(json!({"to_user": "alice", "to_group": group, "content": {"type": "text", "text": "x"}})))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, v) = api
        .admin("POST", "/v1/admin/messages", Some(json!({"from": "carol", "to_group": group, "content": {"type": "text", "text": "x"}})))
        .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::FORBIDDEN, 3005),
        "carol left the group"
    );

    // A notification is pushed, not stored.
    let (s, v) = api
        .admin(
            "POST",
            "/v1/admin/notifications",
            Some(json!({"user_ids": ["alice", "bob"], "kind": "promo", "data": "{\"x\":1}"})),
        )
        .await;
    assert_eq!((s, v["devices"].as_u64()), (StatusCode::OK, Some(1)));
    let n = wait_for(&mut events, |e| match e {
        Event::Notification(n) => Some(n),
        _ => None,
    })
    .await;
    assert_eq!((n.kind.as_str(), &n.data[..]), ("promo", &b"{\"x\":1}"[..]));

    // Forced logout.
    let (s, v) = api
        .admin(
            "POST",
            "/v1/admin/users/alice/logout",
            Some(json!({"device_id": "phone"})),
        )
        .await;
    assert_eq!(
        (s, v["sessions_closed"].as_u64()),
        (StatusCode::OK, Some(1))
    );
    assert_eq!(kicked(&mut events).await, pb::KickReason::Admin);
}

#[tokio::test]
async fn user_routes_act_only_for_the_caller() {
    let api = Api::start(Some(ADMIN_KEY)).await;
    let alice = api.user("alice").await;
    let bob = api.user("bob").await;
    let carol = api.user("carol").await;

    // Contacts.
    let (s, v) = api
        .call(
            "POST",
            "/v1/contacts/requests",
            Some(&alice),
            Some(json!({"user_id": "bob", "message": "hi"})),
        )
        .await;
    assert_eq!((s, v["accepted"].as_bool()), (StatusCode::OK, Some(false)));
    let (_, v) = api.call("GET", "/v1/contacts", Some(&bob), None).await;
    assert_eq!(v["incoming"], json!(["alice"]));
    let (s, _) = api
        .call(
            "POST",
            "/v1/contacts/requests/alice/accept",
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (_, v) = api.call("GET", "/v1/contacts", Some(&alice), None).await;
    assert_eq!(v["friends"], json!(["bob"]));
    let (s, _) = api
        .call(
            "POST",
            "/v1/contacts/requests/alice/accept",
            Some(&carol),
            None,
        )
        .await;
    assert!(s.is_client_error(), "carol has no request from alice: {s}");
    let (s, _) = api
        .call(
            "POST",
            "/v1/contacts/blocks",
            Some(&carol),
            Some(json!({"user_id": "alice"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = api
        .admin("POST", "/v1/admin/messages", Some(json!({"from": "alice", "to_user": "carol", "content": {"type": "text", "text": "x"}})))
        .await;
    assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, 3004), "blocked");
    let (s, _) = api
        .call("DELETE", "/v1/contacts/blocks/alice", Some(&carol), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = api
        .call("DELETE", "/v1/contacts/friends/bob", Some(&alice), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let (_, v) = api.call("GET", "/v1/contacts", Some(&bob), None).await;
    assert_eq!(v["friends"], json!([]));

    // Groups: members only.
    let (s, g) = api
        .call(
            "POST",
            "/v1/groups",
            Some(&alice),
            Some(json!({"name": "pair", "member_ids": ["bob"]})),
        )
        .await;
    assert_eq!(
        (s, g["owner_id"].as_str()),
        (StatusCode::CREATED, Some("alice"))
    );
    let group = g["group_id"].as_str().expect("id").to_owned();
    let (_, v) = api.call("GET", "/v1/groups", Some(&bob), None).await;
    assert_eq!(v["groups"][0]["group_id"].as_str(), Some(group.as_str()));
    let (s, v) = api
        .call(
            "GET",
            &format!("/v1/groups/{group}/members"),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(
        (s, v["members"].as_array().map(Vec::len)),
        (StatusCode::OK, Some(2))
    );
    let (s, v) = api
        .call(
            "GET",
            &format!("/v1/groups/{group}/members"),
            Some(&carol),
            None,
        )
        .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::FORBIDDEN, 3005),
        "carol is not in the group"
    );
    let (s, _) = api
        .call(
            "GET",
            &format!("/v1/conversations/g:{group}/messages"),
            Some(&carol),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "nor can she read its history");

    // Conversations and history.
    for text in ["one", "two", "three"] {
        let (s, _) = api
            .admin("POST", "/v1/admin/messages", Some(json!({"from": "alice", "to_user": "bob", "content": {"type": "text", "text": text}})))
            .await;
        assert_eq!(s, StatusCode::OK);
    }
    let (s, v) = api.call("GET", "/v1/conversations", Some(&bob), None).await;
    assert_eq!(s, StatusCode::OK);
    let direct = v["conversations"]
        .as_array()
        .expect("list")
        .iter()
        .find(|c| c["peer_id"] == "alice")
        .expect("the conversation with alice")
        .clone();
    assert_eq!(
        (direct["unread"].as_u64(), direct["max_seq"].as_u64()),
        (Some(3), Some(3))
    );
    assert_eq!(direct["last_message"]["content"]["text"], "three");
    let conv = direct["conversation_id"].as_str().expect("id").to_owned();
    let (s, page) = api
        .call(
            "GET",
            &format!("/v1/conversations/{conv}/messages?limit=2"),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let seqs: Vec<_> = page["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["seq"].as_u64())
        .collect();
    assert_eq!(
        (seqs, page["has_more"].as_bool()),
        (vec![Some(3), Some(2)], Some(true))
    );
    let (_, older) = api
        .call(
            "GET",
            &format!("/v1/conversations/{conv}/messages?from_seq=2"),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(older["messages"][0]["content"]["text"], "one");
    let (s, v) = api
        .call(
            "GET",
            &format!("/v1/conversations/{conv}/messages"),
            Some(&carol),
            None,
        )
        .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::FORBIDDEN, 3002),
        "carol cannot read alice and bob"
    );
    let (s, _) = api.call("GET", "/v1/conversations", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = api
        .call("GET", "/v1/conversations", Some("v1.forged.1.x"), None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

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

/// The device cap: 32 devices log in, the 33rd is refused with 2009 while
/// known devices still log in; the user lists their devices (oldest first)
/// and removes the oldest, whose connection is kicked, and the 33rd logs
/// in. An admin can do the same for any user.
#[tokio::test]
async fn a_user_past_the_device_cap_removes_the_oldest_device() {
    let api = Api::start(Some(ADMIN_KEY)).await;
    let alice = api.user("alice").await;
    let mut sessions = Vec::new();
    for i in 0..32 {
        sessions.push(api.connect(&alice, &format!("dev{i:02}")).await);
    }
    let options = ClientOptions {
        reconnect: false,
        ..ClientOptions::default()
    };
    let (extra, _e) = Client::connect(&api.tcp.to_string(), options.clone())
        .await
        .expect("connect");
    let err = extra
        .login(&alice, "dev32")
        .await
        .expect_err("past the cap");
    assert_eq!(
        err.code(),
        Some(imkit::proto::ErrorCode::TooManyDevices),
        "{err}"
    );
    // A known device still logs in (replacing its own session).
    drop(sessions.remove(5));
    sessions.insert(5, api.connect(&alice, "dev05").await);

    let (s, v) = api.call("GET", "/v1/me/devices", Some(&alice), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["max_devices"], 32);
    let listed: Vec<&str> = v["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .map(|d| d["device_id"].as_str().expect("id"))
        .collect();
    assert_eq!(listed.len(), 32);
    assert_eq!(listed[0], "dev00", "oldest first");

    let (s, v) = api
        .call("DELETE", "/v1/me/devices/dev00", Some(&alice), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["sessions_closed"], 1);
    let (_, events) = &mut sessions[0];
    let reason = wait_for(events, |e| match e {
        Event::Kicked { reason, .. } => Some(reason),
        _ => None,
    })
    .await;
    assert_eq!(reason, pb::KickReason::DeviceRemoved);
    let (s, _) = api
        .call("DELETE", "/v1/me/devices/dev00", Some(&alice), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "already gone");
    let (_new, _ne) = api.connect(&alice, "dev32").await;

    // The admin sees and removes devices of any user.
    let (s, v) = api
        .admin("GET", "/v1/admin/users/alice/devices", None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let listed = v["devices"].as_array().expect("devices");
    assert_eq!(listed.len(), 32);
    assert_eq!(listed[31]["device_id"], "dev32", "newest last");
    let (s, v) = api
        .admin("DELETE", "/v1/admin/users/alice/devices/dev01", None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, _) = api
        .call("GET", "/v1/admin/users/alice/devices", Some(&alice), None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "a user is not an admin");
}

/// The group-add privacy setting over HTTP: a user who accepts group adds
/// from friends only cannot be put in a stranger's group (403, 3002), and
/// one who blocked the actor cannot either (403, 3004).
#[tokio::test]
async fn privacy_setting_and_block_stop_group_adds() {
    let api = Api::start(Some(ADMIN_KEY)).await;
    let alice = api.user("alice").await;
    let bob = api.user("bob").await;
    let (s, v) = api.call("GET", "/v1/me/privacy", Some(&alice), None).await;
    assert_eq!(
        (s, v["group_adds"].as_str()),
        (StatusCode::OK, Some("anyone"))
    );
    let (s, v) = api
        .call(
            "PUT",
            "/v1/me/privacy",
            Some(&alice),
            Some(json!({"group_adds": "friends"})),
        )
        .await;
    assert_eq!(
        (s, v["group_adds"].as_str()),
        (StatusCode::OK, Some("friends"))
    );
    let (s, _) = api
        .call(
            "PUT",
            "/v1/me/privacy",
            Some(&alice),
            Some(json!({"group_adds": "everyone"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let group = json!({"name": "g", "member_ids": ["alice"]});
    let (s, v) = api
        .call("POST", "/v1/groups", Some(&bob), Some(group.clone()))
        .await;
    assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, 3002), "{v}");
    // Back to anyone, but alice blocks bob.
    api.call(
        "PUT",
        "/v1/me/privacy",
        Some(&alice),
        Some(json!({"group_adds": "anyone"})),
    )
    .await;
    let (s, _) = api
        .call(
            "POST",
            "/v1/contacts/blocks",
            Some(&alice),
            Some(json!({"user_id": "bob"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = api
        .call("POST", "/v1/groups", Some(&bob), Some(group))
        .await;
    assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, 3004), "{v}");
}

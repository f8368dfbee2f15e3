//! Messages over HTTP reach connected clients; a user's routes act only for
//! the caller; the group-add privacy setting and blocks hold over HTTP.

use super::*;

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

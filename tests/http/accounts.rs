//! Accounts over HTTP: tokens, revocation, disabling, and the device cap.

use super::*;

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

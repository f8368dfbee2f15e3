//! [`PushStore`] conformance: one token per device, removal that spares a
//! replaced token, and profiles for exactly the users with tokens.

use super::fresh;
use crate::model::*;
use crate::store::*;

fn token(t: &str) -> PushToken {
    PushToken {
        provider: "fcm".into(),
        platform: "android".into(),
        token: t.into(),
    }
}

/// Tokens, preferences and profiles.
pub async fn push_suite(store: std::sync::Arc<dyn PushStore>) {
    let p = fresh("p");
    let (alice, bob, carol) = (
        UserId::from(format!("{p}a")),
        UserId::from(format!("{p}b")),
        UserId::from(format!("{p}c")),
    );
    let (phone, tablet) = (DeviceId::from("phone"), DeviceId::from("tablet"));
    assert!(
        store
            .profiles(std::slice::from_ref(&alice))
            .await
            .expect("profiles")
            .is_empty(),
        "no token, no profile"
    );
    store
        .set_token(&alice, &phone, token("t1"))
        .await
        .expect("set");
    store
        .set_token(&alice, &tablet, token("t2"))
        .await
        .expect("set");
    // One token per device: a new one replaces the old.
    store
        .set_token(&alice, &phone, token("t3"))
        .await
        .expect("replace");
    store
        .set_token(&bob, &phone, token("t4"))
        .await
        .expect("set");
    store.set_hide_content(&bob, true).await.expect("hide");
    store
        .set_hide_content(&carol, true)
        .await
        .expect("hide, no token");

    let got = store
        .profiles(&[carol.clone(), bob.clone(), alice.clone()])
        .await
        .expect("profiles");
    let users: Vec<&UserId> = got.iter().map(|p| &p.user).collect();
    assert_eq!(
        users,
        vec![&bob, &alice],
        "users with tokens, in the order asked"
    );
    assert!(got[0].hide_content);
    assert!(!got[1].hide_content, "content shows by default");
    let alice_tokens: Vec<(&str, &str)> = got[1]
        .tokens
        .iter()
        .map(|t| (t.device.as_str(), t.token.token.as_str()))
        .collect();
    assert_eq!(alice_tokens, vec![("phone", "t3"), ("tablet", "t2")]);
    assert_eq!(got[1].tokens[0].token, token("t3"));

    // A token reported invalid spares its replacement.
    assert!(
        !store
            .remove_token(&alice, &phone, Some("t1"))
            .await
            .expect("remove stale")
    );
    assert!(
        store
            .remove_token(&alice, &phone, Some("t3"))
            .await
            .expect("remove")
    );
    assert!(
        store
            .remove_token(&alice, &tablet, None)
            .await
            .expect("remove any")
    );
    assert!(
        !store
            .remove_token(&alice, &tablet, None)
            .await
            .expect("gone")
    );
    store.set_hide_content(&bob, false).await.expect("show");
    let got = store
        .profiles(&[alice.clone(), bob.clone()])
        .await
        .expect("profiles");
    assert_eq!(got.len(), 1, "alice has no token left");
    assert!(!got[0].hide_content);
}

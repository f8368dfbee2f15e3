//! [`AccountStore`] conformance.

use std::sync::Arc;

use super::fresh;
use crate::model::*;
use crate::store::*;

/// Accounts: create once, read back, disable and enable, revoke tokens.
pub async fn account_suite(store: Arc<dyn AccountStore>) {
    let user = UserId::new(fresh("acct"));
    assert_eq!(store.get(&user).await.expect("get"), None, "no account yet");
    let account = Account {
        user: user.clone(),
        name: "Ada Lovelace".into(),
        disabled: false,
        created_ms: 1_700_000_000_123,
    };
    assert!(
        store.create(account.clone()).await.expect("create"),
        "created"
    );
    let again = Account {
        name: "someone else".into(),
        ..account.clone()
    };
    assert!(
        !store.create(again).await.expect("create twice"),
        "a second create reports the conflict"
    );
    assert_eq!(
        store.get(&user).await.expect("get"),
        Some(account.clone()),
        "the first create wins, every field read back"
    );
    let disabled = store
        .set_disabled(&user, true)
        .await
        .expect("disable")
        .expect("exists");
    assert!(disabled.disabled && disabled.name == account.name);
    assert!(
        store
            .get(&user)
            .await
            .expect("get")
            .expect("exists")
            .disabled
    );
    let enabled = store
        .set_disabled(&user, false)
        .await
        .expect("enable")
        .expect("exists");
    assert!(!enabled.disabled);
    let nobody = UserId::new(fresh("nobody"));
    assert_eq!(
        store.set_disabled(&nobody, true).await.expect("disable"),
        None,
        "disabling an unknown user changes nothing"
    );
    assert_eq!(store.get(&nobody).await.expect("get"), None);

    let token = fresh("tok");
    let other = fresh("tok");
    assert!(!store.is_revoked(&token).await.expect("is_revoked"));
    let far = 4_000_000_000; // year 2096
    store.revoke_token(&token, far).await.expect("revoke");
    store.revoke_token(&token, far).await.expect("revoke twice");
    assert!(store.is_revoked(&token).await.expect("is_revoked"));
    assert!(
        !store.is_revoked(&other).await.expect("is_revoked"),
        "only the revoked token"
    );
    // A token minted elsewhere may claim any expiry.
    let forever = fresh("tok");
    store
        .revoke_token(&forever, u64::MAX)
        .await
        .expect("revoke a token that never expires");
    assert!(store.is_revoked(&forever).await.expect("is_revoked"));
}

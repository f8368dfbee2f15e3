//! [`ContactStore`] conformance.

use std::sync::Arc;

use super::fresh;
use crate::model::*;
use crate::store::*;

/// [`ContactStore`] rules: requests, mutual requests, accept, removal both
/// ways, blocks; concurrent mutual requests end as friends.
pub async fn contact_suite(store: Arc<dyn ContactStore>) {
    let p = fresh("c");
    let u = |n: &str| UserId::from(format!("{p}{n}"));
    let (a, b, c) = (u("a"), u("b"), u("c"));

    assert_eq!(
        store.request(&a, &b).await.expect("req"),
        FriendRequestOutcome::Pending
    );
    let la = store.list(&a).await.expect("list");
    assert_eq!(la.outgoing, vec![b.clone()]);
    assert_eq!(
        store.list(&b).await.expect("list").incoming,
        vec![a.clone()]
    );
    assert!(!store.accept(&a, &b).await.expect("accept wrong way"));
    assert!(store.accept(&b, &a).await.expect("accept"));
    assert_eq!(store.list(&a).await.expect("list").friends, vec![b.clone()]);
    let lb = store.list(&b).await.expect("list");
    assert_eq!(lb.friends, vec![a.clone()]);
    assert!(lb.incoming.is_empty() && lb.outgoing.is_empty());
    assert_eq!(
        store.request(&a, &b).await.expect("req"),
        FriendRequestOutcome::AlreadyFriends
    );

    // A request answered by a request makes friends.
    assert_eq!(
        store.request(&c, &a).await.expect("req"),
        FriendRequestOutcome::Pending
    );
    assert_eq!(
        store.request(&a, &c).await.expect("req"),
        FriendRequestOutcome::BecameFriends
    );
    assert_eq!(store.list(&c).await.expect("list").friends, vec![a.clone()]);

    // Removal is two-sided.
    assert!(store.remove(&b, &a).await.expect("remove"));
    assert_eq!(store.list(&a).await.expect("list").friends, vec![c.clone()]);
    assert!(store.list(&b).await.expect("list").friends.is_empty());
    assert!(!store.remove(&b, &a).await.expect("remove again"));

    // Blocks are one-sided.
    assert!(!store.is_blocked(&a, &b).await.expect("blocked"));
    store.block(&a, &b).await.expect("block");
    store.block(&a, &b).await.expect("block twice");
    assert!(store.is_blocked(&a, &b).await.expect("blocked"));
    assert!(!store.is_blocked(&b, &a).await.expect("blocked"));
    assert_eq!(store.list(&a).await.expect("list").blocked, vec![b.clone()]);
    assert!(store.unblock(&a, &b).await.expect("unblock"));
    assert!(!store.unblock(&a, &b).await.expect("unblock twice"));

    // The group-add privacy setting: anyone until set, per user, and it
    // can be set back.
    assert_eq!(store.group_adds(&a).await.expect("get"), GroupAdds::Anyone);
    store
        .set_group_adds(&a, GroupAdds::FriendsOnly)
        .await
        .expect("set");
    assert_eq!(
        store.group_adds(&a).await.expect("get"),
        GroupAdds::FriendsOnly
    );
    assert_eq!(store.group_adds(&b).await.expect("get"), GroupAdds::Anyone);
    store
        .set_group_adds(&a, GroupAdds::Anyone)
        .await
        .expect("set");
    assert_eq!(store.group_adds(&a).await.expect("get"), GroupAdds::Anyone);
    assert!(!store.is_blocked(&a, &b).await.expect("blocked"));

    // Concurrent mutual requests: both end as friends, nothing dangling.
    for i in 0..20 {
        let (x, y) = (u(&format!("x{i}")), u(&format!("y{i}")));
        let (s1, s2) = (store.clone(), store.clone());
        let (x1, y1, x2, y2) = (x.clone(), y.clone(), x.clone(), y.clone());
        let t1 = tokio::spawn(async move { s1.request(&x1, &y1).await });
        let t2 = tokio::spawn(async move { s2.request(&y2, &x2).await });
        t1.await.expect("task").expect("req");
        t2.await.expect("task").expect("req");
        let lx = store.list(&x).await.expect("list");
        assert_eq!(lx.friends, vec![y.clone()], "pair {i} became friends");
        assert!(
            lx.incoming.is_empty() && lx.outgoing.is_empty(),
            "pair {i}: nothing pending"
        );
    }
}

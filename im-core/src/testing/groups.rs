//! [`GroupStore`] conformance.

use std::sync::Arc;

use super::fresh;
use crate::Error;
use crate::model::*;
use crate::store::*;

/// [`GroupStore`] rules: membership, roles, profiles, dismissal.
pub async fn group_suite(store: Arc<dyn GroupStore>) {
    let p = fresh("g");
    let gid = GroupId::from(format!("{p}grp"));
    let u = |n: &str| UserId::from(format!("{p}{n}"));
    let member = |n: &str, role| Member {
        user: u(n),
        role,
        joined_ms: 1,
    };
    let group = Group {
        id: gid.clone(),
        name: "team".into(),
        avatar: String::new(),
        owner: u("owner"),
        created_ms: 1,
    };
    store
        .create(
            group.clone(),
            vec![member("owner", Role::Owner), member("amy", Role::Member)],
        )
        .await
        .expect("create");
    assert!(matches!(
        store.create(group.clone(), vec![]).await,
        Err(Error::Conflict(_))
    ));
    assert_eq!(store.get(&gid).await.expect("get"), Some(group.clone()));
    assert_eq!(
        store
            .member(&gid, &u("amy"))
            .await
            .expect("member")
            .map(|m| m.role),
        Some(Role::Member)
    );
    assert!(
        store
            .member(&gid, &u("zed"))
            .await
            .expect("member")
            .is_none()
    );

    let added = store
        .add_members(
            &gid,
            vec![member("amy", Role::Member), member("ben", Role::Member)],
        )
        .await
        .expect("add");
    assert_eq!(added, vec![u("ben")], "only new members are reported");
    let names: Vec<UserId> = store
        .members(&gid)
        .await
        .expect("members")
        .into_iter()
        .map(|m| m.user)
        .collect();
    assert_eq!(names, vec![u("owner"), u("amy"), u("ben")], "join order");

    assert!(
        store
            .set_role(&gid, &u("ben"), Role::Admin)
            .await
            .expect("role")
    );
    assert!(
        !store
            .set_role(&gid, &u("zed"), Role::Admin)
            .await
            .expect("role")
    );
    assert_eq!(
        store
            .member(&gid, &u("ben"))
            .await
            .expect("m")
            .map(|m| m.role),
        Some(Role::Admin)
    );

    let updated = store
        .update(&gid, Some("renamed".into()), None)
        .await
        .expect("update")
        .expect("exists");
    assert_eq!(
        (updated.name.as_str(), updated.avatar.as_str()),
        ("renamed", "")
    );
    let updated = store
        .update(&gid, None, Some("a.png".into()))
        .await
        .expect("update")
        .expect("exists");
    assert_eq!(
        (updated.name.as_str(), updated.avatar.as_str()),
        ("renamed", "a.png")
    );
    assert!(
        store
            .update(&GroupId::from(format!("{p}none")), Some("x".into()), None)
            .await
            .expect("update")
            .is_none()
    );

    assert_eq!(
        store.groups_of(&u("amy")).await.expect("groups"),
        vec![gid.clone()]
    );
    let removed = store
        .remove_members(&gid, &[u("amy"), u("zed")])
        .await
        .expect("remove");
    assert_eq!(removed, vec![u("amy")]);
    assert!(store.groups_of(&u("amy")).await.expect("groups").is_empty());
    assert_eq!(store.members(&gid).await.expect("members").len(), 2);

    assert!(store.dismiss(&gid).await.expect("dismiss"));
    assert!(!store.dismiss(&gid).await.expect("dismiss twice"));
    assert!(store.get(&gid).await.expect("get").is_none());
    assert!(store.members(&gid).await.expect("members").is_empty());
    assert!(store.groups_of(&u("ben")).await.expect("groups").is_empty());
}

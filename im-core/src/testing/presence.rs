//! [`PresenceStore`] conformance.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::fresh;
use crate::model::*;
use crate::store::*;

/// [`PresenceStore`] rules: previous node on re-login, node-guarded
/// offline, per-node listing and clearing.
pub async fn presence_suite(store: Arc<dyn PresenceStore>) {
    let p = fresh("p");
    let (alice, bob) = (
        UserId::from(format!("{p}alice")),
        UserId::from(format!("{p}bob")),
    );
    let (phone, laptop) = (DeviceId::from("phone"), DeviceId::from("laptop"));
    let (n1, n2) = (
        NodeId::from(format!("{p}n1")),
        NodeId::from(format!("{p}n2")),
    );

    assert_eq!(
        store.online(&alice, &phone, &n1).await.expect("online"),
        None
    );
    assert_eq!(
        store.online(&alice, &laptop, &n2).await.expect("online"),
        None
    );
    assert_eq!(store.online(&bob, &phone, &n1).await.expect("online"), None);
    let mut located = store.locate(&alice).await.expect("locate");
    located.sort_by(|a, b| a.device.cmp(&b.device));
    assert_eq!(
        located,
        vec![
            DeviceLocation {
                device: laptop.clone(),
                node: n2.clone()
            },
            DeviceLocation {
                device: phone.clone(),
                node: n1.clone()
            },
        ]
    );
    // The same device logging in on another node reports the old node.
    assert_eq!(
        store.online(&alice, &phone, &n2).await.expect("online"),
        Some(n1.clone()),
        "re-login reports the previous node"
    );
    // The old node's late offline must not remove the new login.
    assert!(!store.offline(&alice, &phone, &n1).await.expect("offline"));
    assert_eq!(store.locate(&alice).await.expect("locate").len(), 2);
    assert!(store.offline(&alice, &phone, &n2).await.expect("offline"));
    assert!(
        !store
            .offline(&alice, &phone, &n2)
            .await
            .expect("offline twice")
    );
    assert_eq!(store.locate(&alice).await.expect("locate").len(), 1);

    let many = store
        .locate_many(&[
            bob.clone(),
            UserId::from(format!("{p}nobody")),
            alice.clone(),
        ])
        .await
        .expect("locate_many");
    assert_eq!(
        many,
        vec![
            Located {
                user: 0,
                device: phone.clone(),
                node: n1.clone()
            },
            Located {
                user: 2,
                device: laptop.clone(),
                node: n2.clone()
            },
        ],
        "one entry per connected device, by index, in the order asked"
    );

    let on_n1: BTreeSet<UserId> = store
        .users_on(&n1)
        .await
        .expect("users_on")
        .into_iter()
        .collect();
    assert_eq!(on_n1, BTreeSet::from([bob.clone()]));
    let on_n2: BTreeSet<UserId> = store
        .users_on(&n2)
        .await
        .expect("users_on")
        .into_iter()
        .collect();
    assert_eq!(on_n2, BTreeSet::from([alice.clone()]));

    assert_eq!(store.clear_node(&n1).await.expect("clear"), 1);
    assert!(store.locate(&bob).await.expect("locate").is_empty());
    assert!(store.users_on(&n1).await.expect("users_on").is_empty());
    assert_eq!(
        store.locate(&alice).await.expect("locate").len(),
        1,
        "other nodes untouched"
    );
    assert_eq!(store.clear_node(&n2).await.expect("clear"), 1);
}

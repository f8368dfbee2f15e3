//! [`DeviceStore`] conformance.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::fresh;
use crate::model::*;
use crate::store::*;

/// [`DeviceStore`] rules: registration is idempotent and says whether the
/// device was new; devices are per user.
pub async fn device_suite(store: Arc<dyn DeviceStore>) {
    let p = fresh("d");
    let (alice, bob) = (UserId::from(format!("{p}a")), UserId::from(format!("{p}b")));
    let (phone, laptop) = (DeviceId::from("phone"), DeviceId::from("laptop"));
    assert!(store.devices(&alice).await.expect("devices").is_empty());
    assert!(
        store.register(&alice, &phone).await.expect("register"),
        "new"
    );
    assert!(
        !store.register(&alice, &phone).await.expect("register"),
        "known"
    );
    assert!(store.register(&alice, &laptop).await.expect("register"));
    let devices: BTreeSet<DeviceId> = store
        .devices(&alice)
        .await
        .expect("devices")
        .into_iter()
        .collect();
    assert_eq!(devices, BTreeSet::from([phone.clone(), laptop]));
    assert!(
        store.devices(&bob).await.expect("devices").is_empty(),
        "per user"
    );
    assert!(
        store.register(&bob, &phone).await.expect("register"),
        "new for bob"
    );
}
